//! `pam-totp unlock USER`: clears the throttle; marks every code up to now as used; repairs a
//! corrupt state file.

use crate::cli::UserArg;
use crate::ctx::{self, Ctx};
use crate::error::{CliError, Result};
use crate::output::time;
use pam_totp::store::{State, StoreError};
use pam_totp::throttle::is_locked;

pub fn run(ctx: &Ctx, a: &UserArg) -> Result<()> {
    let user = &a.user;
    ctx::check_user(user)?;
    let no_record = || {
        CliError::new(format!("{user} has no record; there is nothing to unlock"))
            .hint(format!("see pam-totp {}list", ctx.dir_arg()))
    };
    let store = ctx.open_store()?.ok_or_else(no_record)?;
    let (lock, record) = ctx::lock_record(&store, user)?;
    let record = record.ok_or_else(no_record)?;
    let now = ctx.now();
    let step = record.params.step_at(now);
    let (mut state, message) = match lock.state() {
        Ok(s) => {
            let msg = if is_locked(s.locked_until, now) {
                format!(
                    "Unlocked {user}: the lock until {} after {} failed codes is cleared.",
                    time(s.locked_until),
                    s.failures
                )
            } else if s.failures > 0 {
                format!(
                    "{user} was not locked; the count of {} failed code{} is reset.",
                    s.failures,
                    if s.failures == 1 { "" } else { "s" }
                )
            } else {
                format!("{user} was not locked; nothing to clear.")
            };
            (s, msg)
        }
        // Unparsable: write a fresh state (that is what the admin runs after "corrupt state"),
        // keeping the highest step any intact journal line still shows: a repair must never
        // make an already used code valid again.
        Err(StoreError::Parse { path, msg }) => {
            let salvaged = lock
                .salvage_last_step()
                .map_err(|e| CliError::store(&format!("cannot read {user}'s login state"), e))?;
            let state = State {
                last_step: salvaged,
                ..State::default()
            };
            let message = format!(
                "Repaired {user}'s login state: {} could not be parsed ({msg}) and was replaced.",
                path.display()
            );
            (state, message)
        }
        Err(e) => {
            return Err(CliError::store(
                &format!("cannot read {user}'s login state"),
                e,
            ))
        }
    };
    state.failures = 0;
    state.locked_until = 0;
    state.last_step = Some(state.last_step.map_or(step, |last| last.max(step)));
    lock.replace_state(&state)
        .map_err(|e| CliError::store(&format!("cannot write {user}'s login state"), e))?;
    println!("{message}");
    println!("Codes up to the current one count as used: {user} logs in with the next code the app shows.");
    Ok(())
}
