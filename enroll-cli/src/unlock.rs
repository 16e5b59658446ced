//! `pam-totp unlock USER [--reset-clock]`: clears the throttle; marks every code up to now as
//! used; repairs a corrupt state file; with `--reset-clock`, a last used step that lies in the
//! future (stored while the clock was ahead) goes back to the current step.

use crate::cli::UnlockArgs;
use crate::ctx::{self, Ctx};
use crate::error::{CliError, Result};
use crate::output::{erroutln, outln, print_json, time};
use crate::status;
use pam_totp::clock;
use pam_totp::status::UserStatus;
use pam_totp::store::{State, StoreError};
use pam_totp::throttle::is_locked;
use serde::Serialize;

/// `unlock --json`: the user and their status after the unlock.
#[derive(Serialize)]
struct UnlockJson<'a> {
    user: &'a str,
    unlocked: bool,
    status: UserStatus,
}

pub fn run(ctx: &Ctx, a: &UnlockArgs) -> Result<()> {
    let user = &ctx::check_user(&a.user)?;
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
            let locked = is_locked(s.locked_until, now).then_some(s.locked_until);
            let msg = cleared(user, locked, s.failures);
            (s, msg)
        }
        // Unparsable: write a fresh state (that is what the admin runs after "corrupt state"),
        // keeping the highest step any intact journal line still shows: a repair must never
        // make an already used code valid again.
        Err(StoreError::Parse { path, msg, .. }) => {
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
    let old = state.last_step;
    let future = old.filter(|s| clock::step_is_future(*s, record.params, now));
    // Never lower the step (that would let a used code in again), except for --reset-clock on
    // a step from a clock that was ahead: that step blocks every code until its time.
    let new = match (old, future) {
        (_, Some(_)) if a.reset_clock => step,
        (Some(last), _) => last.max(step),
        (None, _) => step,
    };
    state.last_step = Some(new);
    lock.replace_state(&state)
        .map_err(|e| CliError::store(&format!("cannot write {user}'s login state"), e))?;
    drop(lock);
    let period = u64::from(record.params.period());
    let at = |s: u64| time(s.saturating_mul(period));
    if a.json {
        if let (Some(f), false) = (future, a.reset_clock) {
            erroutln!(
                "warning: {user}'s last used step {f} ({}) lies {} steps in the future (the clock \
                 was ahead at a login): every code is refused as a replay until then",
                at(f),
                f - step
            );
        }
        return print_json(&UnlockJson {
            user,
            unlocked: true,
            status: status::of(ctx, user)?,
        });
    }
    outln!("{message}")?;
    match (future, a.reset_clock) {
        (Some(f), true) => outln!(
            "Clock repaired: {user}'s last used step {f} ({}, {} steps in the future) is now the \
             current step {new} ({}). {user} logs in with the next code the app shows.",
            at(f),
            f - step,
            at(new)
        ),
        (Some(f), false) => {
            outln!(
                "Codes up to the current one count as used; the last used step was kept."
            )?;
            erroutln!(
                "warning: {user}'s last used step {f} ({}) lies {} steps in the future (the clock \
                 was ahead at a login): every code is refused as a replay until then",
                at(f),
                f - step
            );
            erroutln!("hint: to repair it: pam-totp {}unlock --reset-clock {user}", ctx.dir_arg());
            Ok(())
        }
        (None, true) => outln!(
            "Nothing to reset: {user}'s last used step ({}) does not lie in the future. Codes up \
             to the current one count as used: {user} logs in with the next code the app shows.",
            old.map_or_else(|| "none".to_string(), |o| o.to_string())
        ),
        (None, false) => outln!(
            "Codes up to the current one count as used: {user} logs in with the next code the app shows."
        ),
    }
}

/// What unlocking cleared: a lock (`locked_until`, when locked now), a count of failures, or
/// nothing.
pub fn cleared(user: &str, locked_until: Option<u64>, failures: u32) -> String {
    match locked_until {
        Some(t) => format!(
            "Unlocked {user}: the lock until {} after {failures} failed codes is cleared.",
            time(t)
        ),
        None if failures > 0 => format!(
            "{user} was not locked; the count of {failures} failed code{} is reset.",
            if failures == 1 { "" } else { "s" }
        ),
        None => format!("{user} was not locked; nothing to clear."),
    }
}
