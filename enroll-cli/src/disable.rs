//! `pam-totp disable USER`: removes the record and the state (idempotent).

use crate::cli::DisableArgs;
use crate::ctx::{self, Ctx};
use crate::error::{CliError, Result};
use crate::output::{errout, outln, print_json};
use pam_totp::escape::terminal_safe;
use serde::Serialize;

/// `disable --json`: whether a record was removed (false: there was none).
#[derive(Serialize)]
pub struct DisableJson<'a> {
    pub user: &'a str,
    pub disabled: bool,
}

pub fn run(ctx: &Ctx, a: &DisableArgs) -> Result<()> {
    let user = &ctx::required_user(a.user.as_deref(), "disable")?;
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
    if a.json {
        return print_json(&DisableJson {
            user,
            disabled: removed,
        });
    }
    if removed {
        outln!("Disabled: removed {user}'s record and login state.")?;
    } else {
        outln!("{user} has no record; nothing to remove.")?;
    }
    // Say what the next login will look like if the policy still wants a code: the module's
    // own rule, for a user who now has no record.
    match ctx.policy().and_then(|p| ctx.next_login(&p, user, None)) {
        Ok((_, next)) => match next.required_by() {
            Some(by) => outln!(
                "Note: the policy still requires a second factor of {user} ({}): {user} {}.",
                terminal_safe(&by.to_string()),
                next.describe()
            )?,
            None if removed => outln!("{user} now logs in without a code.")?,
            None => {}
        },
        Err(e) => errout!("warning: {}", e),
    }
    Ok(())
}
