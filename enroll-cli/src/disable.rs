//! `pam-totp disable USER`: removes the record and the state (idempotent).

use crate::cli::UserArg;
use crate::ctx::{self, Ctx};
use crate::error::{CliError, Result};
use crate::output::{errout, outln};
use pam_totp::escape::terminal_safe;

pub fn run(ctx: &Ctx, a: &UserArg) -> Result<()> {
    let user = &a.user;
    ctx::check_user(user)?;
    let removed = match ctx.open_store()? {
        None => false,
        Some(store) => {
            let lock = store
                .lock(user)
                .map_err(|e| CliError::store(&format!("cannot lock {user}'s record"), e))?;
            lock.remove()
                .map_err(|e| CliError::store(&format!("cannot remove {user}'s record"), e))?
        }
    };
    if removed {
        outln!("Disabled: removed {user}'s record and login state.")?;
    } else {
        outln!("{user} has no record; nothing to remove.")?;
    }
    // Say what the next login will look like if the policy still wants a code.
    match ctx
        .policy()
        .and_then(|p| Ok((ctx.required_by(&p, user)?, p)))
    {
        Ok((Some(by), policy)) => {
            let next = if policy.grace_at(ctx.now()).is_some() {
                "is reminded to enrol (grace period)"
            } else if policy.enroll_at_login {
                "is asked to enrol at the next login"
            } else {
                "cannot log in until enrolled again"
            };
            outln!(
                "Note: the policy still requires a second factor of {user} ({}): {user} {next}.",
                terminal_safe(&by.to_string())
            )?;
        }
        Ok((None, _)) => {
            if removed {
                outln!("{user} now logs in without a code.")?;
            }
        }
        Err(e) => errout!("warning: {}", e),
    }
    Ok(())
}
