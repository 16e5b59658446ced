//! `pam-totp activate USER [CODE]`: a code from the app makes a pending record active.

use crate::cli::ActivateArgs;
use crate::ctx::{self, Ctx};
use crate::error::{CliError, Result};
use crate::output::outln;
use crate::tty;
use pam_totp::enroll::{self as core, ConfirmError};
use pam_totp::store::Status;
use zeroize::Zeroizing;

pub fn run(ctx: &Ctx, a: &ActivateArgs) -> Result<()> {
    let user = &ctx::check_user(&a.user)?;
    let store = ctx.open_store()?.ok_or_else(|| no_record(ctx, user))?;
    // Check before asking for a code; the lock is not held while the user types.
    match store
        .record(user)
        .map_err(|e| CliError::store(&format!("cannot read {user}'s record"), e))?
    {
        None => return Err(no_record(ctx, user)),
        Some(r) if r.status == Status::Active => return Err(already_active(user)),
        Some(_) => {}
    }
    let code = code_from(
        a.code.as_deref(),
        user,
        &format!("pam-totp {}activate {user} CODE", ctx.dir_arg()),
    )?;

    let (lock, record) = ctx::lock_record(&store, user)?;
    let record = record.ok_or_else(|| no_record(ctx, user))?;
    match core::confirm(&lock, record, &code, ctx.now(), core::CONFIRM_WINDOW) {
        Ok(step) => {
            outln!(
                "Activated: {user} now logs in with a code from the app. The code just used \
                 (time step {step}) cannot be used again."
            )?;
            Ok(())
        }
        Err(ConfirmError::AlreadyActive) => Err(already_active(user)),
        Err(ConfirmError::WrongCode) => Err(CliError::new(format!(
            "the code does not match {user}'s key; the record stays pending"
        ))
        .hint("codes depend on the time: check that the phone's clock is set automatically")
        .hint(format!(
            "then run again with the code shown now: pam-totp {}activate {user} CODE",
            ctx.dir_arg()
        ))),
        Err(ConfirmError::Replayed) => Err(CliError::new(format!(
            "that code was already used; {user}'s record stays pending"
        ))
        .hint("wait until the app shows the next code and run the command again with it")),
        Err(ConfirmError::Store(e)) => Err(CliError::store(&format!("cannot activate {user}"), e)),
    }
}

/// The code to activate with: CODE as given, else asked on the terminal, else an error naming
/// `command` (the command to run with the code).
pub fn code_from(given: Option<&str>, user: &str, command: &str) -> Result<Zeroizing<String>> {
    match given {
        Some(c) => Ok(Zeroizing::new(c.to_string())),
        None if tty::stdin_is_terminal() => {
            match tty::read_hidden(&format!("Code from {user}'s app: "))
                .map_err(|e| CliError::new(format!("cannot read from the terminal: {e}")))?
            {
                Some(c) if !c.trim().is_empty() => Ok(c),
                _ => Err(CliError::new("no code given; nothing was changed")),
            }
        }
        None => Err(CliError::new(format!(
            "no code given and no terminal to ask for one; {user}'s record stays pending"
        ))
        .hint(format!("give the code the app shows now: {command}"))),
    }
}

fn no_record(ctx: &Ctx, user: &str) -> CliError {
    CliError::new(format!(
        "{user} has no record; there is nothing to activate"
    ))
    .hint(format!(
        "enrol {user} first: pam-totp {}enroll {user}",
        ctx.dir_arg()
    ))
}

fn already_active(user: &str) -> CliError {
    CliError::new(format!(
        "{user}'s record is already active; nothing was changed"
    ))
    .hint(format!(
        "to replace the key (lost or new phone): pam-totp enroll {user} --force"
    ))
}
