//! `pam-totp enroll USER`: a pending record with a fresh key, shown as QR code, key and URI,
//! with recovery codes; on a terminal, activation with a code from the app.

use crate::cli::{AlgorithmArg, EnrollArgs};
use crate::ctx::{self, Ctx};
use crate::error::{CliError, Result};
use crate::output::{erroutln, outln};
use crate::show_key::{self, Images};
use crate::tty;
use pam_totp::enroll::{self as core, ConfirmError, Enrolment};
use pam_totp::names::UserName;
use pam_totp::recovery;
use pam_totp::selfservice::protocol::NewKey;
use pam_totp::store::{Record, Status, Store, StoreError};
use pam_totp::totp::{Algorithm, Params};

pub fn algorithm(a: AlgorithmArg) -> Algorithm {
    match a {
        AlgorithmArg::Sha1 => Algorithm::Sha1,
        AlgorithmArg::Sha256 => Algorithm::Sha256,
        AlgorithmArg::Sha512 => Algorithm::Sha512,
    }
}

/// What was there before: decides whether the new record replaces an active one.
pub(crate) enum Previous {
    None,
    Pending { replaces_active: bool },
    Active,
    Unreadable(StoreError),
}

pub(crate) fn previous(r: std::result::Result<Option<Record>, StoreError>) -> Previous {
    match r {
        Ok(None) => Previous::None,
        Ok(Some(r)) if r.status == Status::Active => Previous::Active,
        Ok(Some(r)) => Previous::Pending {
            replaces_active: r.replaces_active,
        },
        Err(e) => Previous::Unreadable(e),
    }
}

/// Refuses what must not be replaced; else whether the new record replaces an active one.
pub(crate) fn replaces_active(prev: Previous, user: &str, force: bool) -> Result<bool> {
    match prev {
        Previous::None => Ok(false),
        // A pending record that itself replaced an active one keeps the user denied.
        Previous::Pending { replaces_active } => Ok(replaces_active),
        Previous::Active if force => Ok(true),
        Previous::Active => Err(CliError::new(format!(
            "{user} already has an active record; nothing was changed"
        ))
        .hint(format!(
            "to replace it (lost or new phone), run: pam-totp enroll {user} --force \
             (the old key stops working at once)"
        ))
        .hint(format!("to see it: pam-totp status {user}"))),
        // --force replaces a record that cannot be parsed (not one with bad permissions).
        Previous::Unreadable(StoreError::Parse { .. }) if force => Ok(true),
        Previous::Unreadable(e @ StoreError::Parse { .. }) => {
            Err(
                CliError::store(&format!("cannot read {user}'s record"), e).hint(format!(
                    "or replace it with a new key: pam-totp enroll {user} --force"
                )),
            )
        }
        Previous::Unreadable(e) => Err(CliError::store(&format!("cannot read {user}'s record"), e)),
    }
}

pub fn run(ctx: &Ctx, a: &EnrollArgs) -> Result<()> {
    if a.local_record {
        return Err(CliError::new(
            "--local-record is for fleet mode: with --store FILE, it also writes the store's new \
             key as a local record here",
        )
        .hint("without --store, `pam-totp enroll USER` writes a local record anyway"));
    }
    let user = &ctx::required_user(a.user.as_deref(), "enroll")?;
    let digits: i64 = a.digits.parse().unwrap_or(6);
    let params = Params::new(algorithm(a.algorithm), digits, i64::from(a.period))
        .map_err(|e| CliError::new(e.to_string()))?;
    let issuer = ctx::issuer(ctx, a.issuer.as_deref())?;
    let store = ctx.create_store()?;
    // Refuse early, before anything is generated or written (checked again under the lock).
    replaces_active(previous(store.record(user)), user, a.force)?;

    let e = core::new_enrolment(user, &issuer, params, ctx.now(), recovery::DEFAULT_COUNT)
        .map_err(|e| CliError::new(format!("cannot draw random numbers: {e}")))?;
    let key = NewKey::of(&e);
    // Images first: a wrong path leaves the store untouched.
    let images = Images::write(&key, a.qr_png.as_deref(), a.qr_svg.as_deref()).map_err(|err| {
        err.hint("nothing was enrolled; fix the image path and run the command again")
    })?;

    let mut e = e;
    let stored = (|| -> Result<bool> {
        let lock = store
            .lock(user)
            .map_err(|err| CliError::store(&format!("cannot lock {user}'s record"), err))?;
        let replaces = replaces_active(previous(lock.record()), user, a.force)?;
        e.record.replaces_active = replaces;
        lock.write_record(&e.record)
            .map_err(|err| CliError::store(&format!("cannot write {user}'s record"), err))?;
        Ok(replaces)
    })();
    let replaces = match stored {
        Ok(r) => r,
        Err(err) => {
            images.remove();
            return Err(err);
        }
    };

    let heading = format!("Enrolling {user} (pending until a code from the app is entered).");
    show_key::show_pending(&key, a.json, a.qr, &heading, &images)?;
    if a.json {
        return Ok(());
    }
    if replaces {
        outln!(
            "The old key no longer works: {} is asked for a code and denied until the new record \
             is activated.",
            user
        )?;
    }
    if tty::interactive() {
        activate_interactively(ctx, &store, user, &e, replaces)
    } else {
        print_pending(ctx, user, replaces)
    }
}

fn print_pending(ctx: &Ctx, user: &str, replaces: bool) -> Result<()> {
    if !replaces {
        outln!("The record is pending: {user} logs in as before (no code asked) until it is activated.")?;
    }
    outln!("To activate it, run this with the code the app shows now:")?;
    outln!("  pam-totp {}activate {user} CODE", ctx.dir_arg())
}

fn activate_interactively(
    ctx: &Ctx,
    store: &Store,
    user: &UserName,
    e: &Enrolment,
    replaces: bool,
) -> Result<()> {
    for attempt in 1..=core::CONFIRM_TRIES {
        let code = tty::read_hidden("Code from the app (empty: activate later): ")
            .map_err(|err| CliError::new(format!("cannot read from the terminal: {err}")))?;
        let Some(code) = code.filter(|c| !c.trim().is_empty()) else {
            return print_pending(ctx, user, replaces);
        };
        let (lock, current) = ctx::lock_record(store, user)?;
        let record = match current {
            Some(r) if r.secret == e.record.secret && r.status == Status::Pending => r,
            _ => {
                return Err(CliError::new(format!(
                    "{user}'s record was changed by someone else meanwhile; it was not activated"
                ))
                .hint(format!("see pam-totp status {user}")))
            }
        };
        match core::confirm(&lock, record, &code, ctx.now(), core::CONFIRM_WINDOW) {
            Ok(_) => {
                outln!(
                    "Activated: {user} now logs in with a code from the app (this code cannot \
                     be used again)."
                )?;
                return Ok(());
            }
            Err(ConfirmError::WrongCode) | Err(ConfirmError::Replayed)
                if attempt < core::CONFIRM_TRIES =>
            {
                let left = core::CONFIRM_TRIES - attempt;
                erroutln!(
                    "That code does not match (or was already used). Check that the phone's clock \
                     is right and type the code shown now ({left} {} left).",
                    if left == 1 { "try" } else { "tries" }
                );
            }
            Err(ConfirmError::WrongCode) | Err(ConfirmError::Replayed) => {
                return Err(CliError::new(format!(
                    "{} wrong codes: {user}'s record stays pending",
                    core::CONFIRM_TRIES
                ))
                .hint(
                    "check that the phone's clock is set automatically (codes depend on the time)",
                )
                .hint(format!(
                    "then run: pam-totp {}activate {user} CODE",
                    ctx.dir_arg()
                )));
            }
            Err(ConfirmError::AlreadyActive) => {
                return Err(CliError::new(format!("{user}'s record is already active")))
            }
            Err(ConfirmError::Store(err)) => {
                return Err(CliError::store(&format!("cannot activate {user}"), err))
            }
        }
    }
    unreachable!("the loop returns on its last try")
}
