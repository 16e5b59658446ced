//! `pam-totp --store FILE enroll USER`: the database draws the key (`enrol(user, NULL, ...)`,
//! SPEC §11: it is returned once and never stored outside it), the recovery codes are drawn and
//! hashed here (SPEC §4); shown exactly as file mode shows them, then activated on a terminal.

use super::local_record::LocalRecord;
use super::users::{activated_text, new_codes, try_activate};
use super::{required_user, Fleet};
use crate::cli::{Cli, EnrollArgs};
use crate::ctx;
use crate::error::{CliError, Result};
use crate::output::{erroutln, outln};
use crate::show_key::{self, Images};
use crate::tty;
use pam_totp::enroll::{Enrolment, CONFIRM_TRIES};
use pam_totp::names::UserName;
use pam_totp::secret::Secret;
use pam_totp::selfservice::protocol::NewKey;
use pam_totp::store::{self, Record, Status};
use pam_totp::totp::Params;
use pam_totp_store::Admin;
use zeroize::Zeroizing;

/// The key as file mode's display code wants it: a pending core record around the secret the
/// database returned.
pub fn new_key(
    user: &str,
    issuer: &str,
    params: Params,
    secret: Zeroizing<Vec<u8>>,
    recovery_codes: Vec<Zeroizing<String>>,
) -> Result<NewKey> {
    let secret = Secret::from_bytes(secret.to_vec())
        .map_err(|e| CliError::new(format!("the store returned an unusable key: {e}")))?;
    let e = Enrolment {
        record: Record::new(
            user,
            Status::Pending,
            secret,
            params,
            issuer,
            None,
            Vec::new(),
        ),
        recovery_codes,
    };
    Ok(NewKey::of(&e))
}

pub fn run(f: &Fleet, cli: &Cli, a: &EnrollArgs) -> Result<()> {
    let user = &required_user(a.user.as_deref(), "enroll")?;
    let digits: u8 = a.digits.parse().unwrap_or(6);
    let algorithm = crate::enroll::algorithm(a.algorithm);
    let params = Params::new(algorithm, i64::from(digits), i64::from(a.period))
        .map_err(|e| CliError::new(e.to_string()))?;
    let issuer = ctx::issuer_or(a.issuer.as_deref(), || {
        store::load_policy(&cli.policy, f.owner)
            .map(|p| p.and_then(|p| p.issuer))
            .map_err(|e| CliError::store("cannot use the policy", e))
    })?;
    // Root and the local record's place checked before anything is enrolled.
    let local = match a.local_record {
        true => Some(LocalRecord::prepare(cli, user, a.force)?),
        false => None,
    };
    let mut admin = f.admin()?;
    // Refuse early, with file mode's words (the database checks again).
    if let Some(r) = f.row(&mut admin, user)? {
        if r.status == "active" && !a.force {
            return Err(CliError::new(format!(
                "{user} already has an active record; nothing was changed"
            ))
            .hint(format!(
                "to replace it (lost or new phone), run: pam-totp {}enroll {user} --force \
                 (the old key stops working at once, on every host)",
                f.arg()
            ))
            .hint(format!("to see it: pam-totp {}status {user}", f.arg())));
        }
    }
    let (codes, entries) = new_codes(pam_totp::recovery::DEFAULT_COUNT)?;
    let enrolled = admin
        .enrol(
            user,
            None,
            algorithm.as_str(),
            digits,
            a.period,
            &issuer,
            &entries,
            a.force,
        )
        .map_err(|e| f.fail(&format!("cannot enrol {user}"), e))?;
    let secret = enrolled
        .secret
        .ok_or_else(|| CliError::new("the store returned no key for the new record"))?;
    if let Some(l) = &local {
        l.write(user, &secret, params, &issuer, &entries)?;
    }
    let key = new_key(user, &issuer, params, secret, codes)?;
    let images = Images::write(&key, a.qr_png.as_deref(), a.qr_svg.as_deref()).map_err(|e| {
        e.hint(format!(
            "{user}'s record is pending in the store with a key nobody has seen: fix the \
             image path and run the command again (a pending record is replaced)"
        ))
    })?;
    let heading = format!(
        "Enrolling {user} in the fleet store (pending until a code from the app is entered)."
    );
    show_key::show_pending(&key, a.json, a.qr, &heading, &images)?;
    if a.json {
        return Ok(());
    }
    if let Some(l) = &local {
        l.print_notes(user)?;
    }
    if enrolled.replaces_active {
        outln!(
            "The old key no longer works: {user} is asked for a code and denied on every host \
             until the new record is activated."
        )?;
    }
    if tty::interactive() {
        activate_interactively(f, &mut admin, user, enrolled.replaces_active)
    } else {
        print_pending(f, user, enrolled.replaces_active)
    }
}

fn print_pending(f: &Fleet, user: &str, replaces: bool) -> Result<()> {
    if !replaces {
        outln!(
            "The record is pending: {user} logs in as before (no code asked) until it is \
             activated."
        )?;
    }
    outln!("To activate it, run this with the code the app shows now:")?;
    outln!("  pam-totp {}activate {user} CODE", f.arg())
}

fn activate_interactively(
    f: &Fleet,
    admin: &mut Admin,
    user: &UserName,
    replaces: bool,
) -> Result<()> {
    for attempt in 1..=CONFIRM_TRIES {
        let code = tty::read_hidden("Code from the app (empty: activate later): ")
            .map_err(|err| CliError::new(format!("cannot read from the terminal: {err}")))?;
        let Some(code) = code.filter(|c| !c.trim().is_empty()) else {
            return print_pending(f, user, replaces);
        };
        if let Some(done) = try_activate(f, admin, user, &code)? {
            return outln!("{}", activated_text(user, &done));
        }
        let left = CONFIRM_TRIES - attempt;
        if left > 0 {
            erroutln!(
                "That code does not match (or was already used). Check that the phone's clock \
                 is right and type the code shown now ({left} {} left).",
                if left == 1 { "try" } else { "tries" }
            );
        }
    }
    Err(CliError::new(format!(
        "{CONFIRM_TRIES} wrong codes: {user}'s record stays pending"
    ))
    .hint("check that the phone's clock is set automatically (codes depend on the time)")
    .hint(format!(
        "then run: pam-totp {}activate {user} CODE",
        f.arg()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_databases_key_then_shown_as_file_mode_shows_a_key() {
        let key = new_key(
            "alice",
            "corp",
            Params::default(),
            Zeroizing::new((1..=20).collect()),
            vec![Zeroizing::new("abcd-efgh-jkmn".into())],
        )
        .unwrap();
        assert_eq!(key.secret.as_str(), "AEBAGBAFAYDQQCIKBMGA2DQPCAIREEYU");
        assert_eq!(
            key.otpauth_uri.as_str(),
            "otpauth://totp/corp:alice?secret=AEBAGBAFAYDQQCIKBMGA2DQPCAIREEYU&issuer=corp\
             &algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(key.recovery_codes.len(), 1);
        assert!(new_key("a", "c", Params::default(), Zeroizing::new(vec![1]), vec![]).is_err());
    }
}
