//! Enrolment shared by the CLI (`enroll`, `activate`) and the module (`enroll_at_login`):
//! a new pending record with its recovery codes, the text that shows them, and confirmation
//! with a code from the app.
#![forbid(unsafe_code)]

use crate::qr;
use crate::recovery;
use crate::secret::Secret;
use crate::store::{HeldUser, Record, Status, StoreError};
use crate::totp::{otpauth_uri, Generator, Params};
use zeroize::Zeroizing;

/// Steps either side of now a code from the app may be from when it confirms a new key
/// (SPEC §5: `activate` accepts a code within ±1 step).
pub const CONFIRM_WINDOW: u32 = 1;

/// Wrong codes from the app accepted when confirming a new key before giving up.
pub const CONFIRM_TRIES: u32 = 3;

/// A pending record and the recovery codes in clear (shown once, stored hashed).
pub struct Enrolment {
    pub record: Record,
    pub recovery_codes: Vec<Zeroizing<String>>,
}

/// A fresh pending record: a random key as long as the hash output, `recovery_count` codes.
pub fn new_enrolment(
    user: &str,
    issuer: &str,
    params: Params,
    now: u64,
    recovery_count: usize,
) -> std::io::Result<Enrolment> {
    let secret = Secret::generate(params.algorithm().default_key_bytes())?;
    let recovery_codes = recovery::generate(recovery_count)?;
    let hashes = recovery_codes
        .iter()
        .map(|c| recovery::hash(c))
        .collect::<std::io::Result<Vec<String>>>()?;
    Ok(Enrolment {
        record: Record::new(
            user,
            Status::Pending,
            secret,
            params,
            issuer,
            Some(now),
            hashes,
        ),
        recovery_codes,
    })
}

/// The record's otpauth URI (account = user name).
pub fn uri(record: &Record) -> Zeroizing<String> {
    otpauth_uri(&record.secret, record.params, &record.issuer, &record.user)
}

/// What the user needs to set up the app: QR code, account, issuer, key, type, URI and the
/// recovery codes, as lines of text (used in the PAM conversation).
pub fn setup_text(e: &Enrolment, ansi: bool) -> Result<Zeroizing<String>, String> {
    let r = &e.record;
    let uri = uri(r);
    let mut t = Zeroizing::new(String::new());
    t.push_str("Scan this QR code with your authenticator app (Google Authenticator, Aegis, FreeOTP...):\n");
    t.push_str(&qr::half_blocks(&uri, ansi)?);
    t.push_str(&format!("Account: {}\nIssuer: {}\nKey: ", r.user, r.issuer));
    t.push_str(&r.secret.to_base32_grouped());
    t.push_str(&format!("\nType: {}\nURI: ", r.params.describe()));
    t.push_str(&uri);
    t.push_str(
        "\nRecovery codes (each works once; write them down now, they are not shown again):\n",
    );
    for c in &e.recovery_codes {
        t.push_str("  ");
        t.push_str(c);
        t.push('\n');
    }
    Ok(t)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("the record is already active")]
    AlreadyActive,
    #[error("the code does not match (check the phone's clock and the code's digits)")]
    WrongCode,
    #[error("that code was already used; wait for the next one")]
    Replayed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks `code` against a pending `record` (±`window` steps around `now`, step not yet used)
/// and makes it the user's active record, the step counting as consumed. The state is written
/// before the record, so a crash in between leaves a pending record and a consumed step.
pub fn confirm(
    lock: &impl HeldUser,
    mut record: Record,
    code: &str,
    now: u64,
    window: u32,
) -> Result<u64, ConfirmError> {
    if record.status == Status::Active {
        return Err(ConfirmError::AlreadyActive);
    }
    let compact: Zeroizing<String> =
        Zeroizing::new(code.chars().filter(|c| !c.is_whitespace()).collect());
    let mut state = lock.state()?;
    let step = Generator::new(&record.secret, record.params)
        .matching_step(&compact, now, window)
        .ok_or(ConfirmError::WrongCode)?;
    if state.is_replay(step) {
        return Err(ConfirmError::Replayed);
    }
    state.last_step = Some(step);
    state.last_offset = Some(record.params.offset_of(step, now));
    state.failures = 0;
    state.locked_until = 0;
    lock.accept(&state)?;
    record.status = Status::Active;
    record.replaces_active = false;
    lock.put_record(&record)?;
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{u, TempDir};

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn new_enrolment_is_pending_with_hashed_recovery_codes() {
        let e = new_enrolment("alice", "host", Params::default(), NOW, 10).unwrap();
        assert_eq!(e.record.status, Status::Pending);
        assert_eq!(e.record.secret.len_bits(), 160);
        assert_eq!(e.record.recovery.len(), 10);
        assert_eq!(
            recovery::find(&e.recovery_codes[3], &e.record.recovery),
            Some(3)
        );
        let text = setup_text(&e, false).unwrap();
        assert!(text.contains("Key: ") && text.contains("otpauth://totp/host:alice?"));
        assert!(text.contains(&*e.recovery_codes[9]));
    }

    #[test]
    fn given_right_code_then_active_and_step_consumed() {
        let t = TempDir::new();
        let s = t.store();
        let e = new_enrolment("alice", "host", Params::default(), NOW, 2).unwrap();
        let code = Generator::new(&e.record.secret, e.record.params).code_at_step(NOW / 30);
        let lock = s.lock(&u("alice")).unwrap();
        lock.write_record(&e.record).unwrap();
        assert!(matches!(
            confirm(&lock, e.record.clone(), "000000", NOW, 1),
            Err(ConfirmError::WrongCode)
        ));
        let rec = lock.record().unwrap().unwrap();
        assert_eq!(confirm(&lock, rec, &code, NOW, 1).unwrap(), NOW / 30);
        assert_eq!(lock.record().unwrap().unwrap().status, Status::Active);
        assert_eq!(lock.state().unwrap().last_step, Some(NOW / 30));
        let rec = lock.record().unwrap().unwrap();
        assert!(matches!(
            confirm(&lock, rec, &code, NOW, 1),
            Err(ConfirmError::AlreadyActive)
        ));
    }
}
