//! `pam-totp --store FILE activate|disable|unlock|recovery USER`: one admin function each
//! (SPEC §11: on every host at once), with the file-mode verbs' wording.

use super::status::FleetStatus;
use super::{required_user, Fleet};
use crate::cli::{ActivateArgs, DisableArgs, RecoveryArgs, UnlockArgs};
use crate::ctx;
use crate::disable::DisableJson;
use crate::error::{CliError, Result};
use crate::output::{erroutln, outln, print_json};
use pam_totp::names::UserName;
use pam_totp::recovery;
use pam_totp_store::{Activated, Admin, UserStatus};
use serde::Serialize;
use zeroize::Zeroizing;

pub fn no_record(f: &Fleet, user: &str, what: &str) -> CliError {
    CliError::new(format!(
        "{user} has no record in the fleet store; there is {what}"
    ))
    .hint(format!(
        "enrol {user} first: pam-totp {}enroll {user}",
        f.arg()
    ))
}

fn already_active(f: &Fleet, user: &str) -> CliError {
    CliError::new(format!(
        "{user}'s record is already active; nothing was changed"
    ))
    .hint(format!(
        "to replace the key (lost or new phone): pam-totp {}enroll {user} --force",
        f.arg()
    ))
}

/// The record, or the file-mode error for a missing one.
fn existing(f: &Fleet, admin: &mut Admin, user: &UserName, what: &str) -> Result<UserStatus> {
    f.row(admin, user)?.ok_or_else(|| no_record(f, user, what))
}

/// One activation attempt: `Ok(Some(step))` activated, `Ok(None)` a wrong or used code (may
/// be tried again), `Err` anything else.
pub fn try_activate(
    f: &Fleet,
    admin: &mut Admin,
    user: &UserName,
    code: &str,
) -> Result<Option<Activated>> {
    let a = admin
        .activate(user, code, None)
        .map_err(|e| f.fail(&format!("cannot activate {user}"), e))?;
    match a.outcome.as_str() {
        "activated" => Ok(Some(a)),
        "wrong" | "replay" => Ok(None),
        "already_active" => Err(already_active(f, user)),
        "not_enrolled" => Err(no_record(f, user, "nothing to activate")),
        other => Err(CliError::new(format!(
            "the store answered {other:?} to the activation of {user}"
        ))),
    }
}

pub fn activated_text(user: &str, a: &Activated) -> String {
    format!(
        "Activated: {user} now logs in with a code from the app, on every host of the fleet. \
         The code just used (time step {}) cannot be used again.",
        a.step.unwrap_or(0)
    )
}

pub fn activate(f: &Fleet, a: &ActivateArgs) -> Result<()> {
    let user = &ctx::check_user(&a.user)?;
    let mut admin = f.admin()?;
    // Check before asking for a code.
    if existing(f, &mut admin, user, "nothing to activate")?.status == "active" {
        return Err(already_active(f, user));
    }
    let command = format!("pam-totp {}activate {user} CODE", f.arg());
    let code = crate::activate::code_from(a.code.as_deref(), user, &command)?;
    match try_activate(f, &mut admin, user, &code)? {
        Some(done) => outln!("{}", activated_text(user, &done)),
        None => Err(CliError::new(format!(
            "the code does not match {user}'s key (or was already used); the record stays \
             pending"
        ))
        .hint("codes depend on the time: check that the phone's clock is set automatically")
        .hint(format!("then run again with the code shown now: {command}"))),
    }
}

pub fn disable(f: &Fleet, a: &DisableArgs) -> Result<()> {
    let user = &required_user(a.user.as_deref(), "disable")?;
    let removed = f
        .admin()?
        .disable(user)
        .map_err(|e| f.fail(&format!("cannot disable {user}"), e))?;
    if a.json {
        return print_json(&DisableJson {
            user,
            disabled: removed,
        });
    }
    if removed {
        outln!(
            "Disabled: removed {user}'s record and login state from the fleet store (every \
             host at once). Hosts whose policy requires a second factor of {user} deny or \
             enrol {user} as their policy says."
        )
    } else {
        outln!("{user} has no record in the fleet store; nothing to remove.")
    }
}

#[derive(Serialize)]
struct UnlockJson<'a> {
    user: &'a str,
    unlocked: bool,
    status: FleetStatus,
}

pub fn unlock(f: &Fleet, a: &UnlockArgs) -> Result<()> {
    let user = &ctx::check_user(&a.user)?;
    let mut admin = f.admin()?;
    let before = existing(f, &mut admin, user, "nothing to unlock")?;
    let u = admin
        .unlock(user, a.reset_clock)
        .map_err(|e| f.fail(&format!("cannot unlock {user}"), e))?;
    let after = f.row(&mut admin, user)?;
    let warn_future = || {
        erroutln!(
            "warning: {user}'s last used step {} lies in the future (the clock was ahead at a \
             login): every code is refused as a replay until then",
            u.previous_last_step.unwrap_or(0)
        );
    };
    if a.json {
        if u.was_future && !a.reset_clock {
            warn_future();
        }
        return print_json(&UnlockJson {
            user,
            unlocked: true,
            status: FleetStatus::of(user, after.as_ref()),
        });
    }
    let locked = before.locked.then_some(before.locked_until);
    outln!("{}", crate::unlock::cleared(user, locked, before.failures))?;
    match (u.was_future, a.reset_clock) {
        (true, true) => outln!(
            "Clock repaired: {user}'s last used step {} (in the future) is now the current \
             step {}. {user} logs in with the next code the app shows.",
            u.previous_last_step.unwrap_or(0),
            u.last_step
        ),
        (true, false) => {
            outln!("Codes up to the current one count as used; the last used step was kept.")?;
            warn_future();
            erroutln!(
                "hint: to repair it: pam-totp {}unlock --reset-clock {user}",
                f.arg()
            );
            Ok(())
        }
        (false, _) => outln!(
            "Codes up to the current one count as used: {user} logs in with the next code the \
             app shows."
        ),
    }
}

/// Fresh recovery codes and their SPEC §4 entries.
pub fn new_codes(count: usize) -> Result<(Vec<Zeroizing<String>>, Vec<String>)> {
    let rng = |e: std::io::Error| CliError::new(format!("cannot draw random numbers: {e}"));
    let codes = recovery::generate(count).map_err(rng)?;
    let entries = codes
        .iter()
        .map(|c| recovery::hash(c))
        .collect::<std::io::Result<Vec<String>>>()
        .map_err(rng)?;
    Ok((codes, entries))
}

pub fn recovery(f: &Fleet, a: &RecoveryArgs) -> Result<()> {
    let user = &required_user(a.user.as_deref(), "recovery")?;
    let mut admin = f.admin()?;
    let old = existing(f, &mut admin, user, "no recovery code to renew")?.recovery_left;
    let (codes, entries) = new_codes(usize::from(a.count))?;
    admin
        .renew_recovery(user, &entries)
        .map_err(|e| f.fail(&format!("cannot renew {user}'s recovery codes"), e))?;
    crate::recovery::show(user, &codes, old as usize, a.json)
}
