//! Break-glass users of a fleet (SPEC §11, `[offline] mode = "local"`): while the store is
//! unreachable they are judged by file mode over their local record (per-host replay protection
//! only), and what they were let in with — the step, the burned recovery codes — is recorded in
//! the local store (`users/USER.offline`). At the user's next login on this host that reaches
//! the store, the record is sent first (`pam_totp.report_offline`: the store's `last_step` is
//! raised, those codes burned fleet-wide) and removed once the store has acknowledged it; a
//! report that fails stays for the next login and does not block this one.
#![forbid(unsafe_code)]

use super::{Conversation, Request, Verdict};
use crate::fleet::{FleetError, FleetStore, OfflineApplied};
use crate::names::UserName;
use crate::next_login::Enrolment;
use crate::policy::Policy;
use crate::reason::Reason;
use crate::store::{OfflineReport, Store, StoreError};
use crate::sys::System;

/// The store unreachable, a break-glass user: file mode over the local record, and an accepted
/// login recorded for the report.
pub(super) fn local<C: Conversation, S: System>(
    conv: &mut C,
    sys: &S,
    req: &Request,
    user: &UserName,
    policy: &Policy,
    e: FleetError,
) -> Verdict {
    // Only a user with an active local record is judged locally: never enrolment at login,
    // grace or "not required" while the store (which may know the user as enrolled) is away.
    let local = match Store::open(&req.options.dir, req.owner) {
        Ok(files) => match super::enrolment(&files, user) {
            Ok((Enrolment::Active | Enrolment::ReplacementPending, _)) => {
                judged_and_recorded(conv, sys, req, user, policy, &files)
            }
            Ok(_) => Reason::Store("no active local record for the break-glass user".into()).into(),
            Err(v) => v,
        },
        Err(se) => super::unavailable(&se),
    };
    Reason::Offline {
        store: e.0,
        local: Box::new(local.reason),
    }
    .into()
}

/// File mode's verdict; one that lets the user in is recorded in `users/USER.offline` (the
/// highest step, the recovery entries present before and gone after), else denied.
fn judged_and_recorded<C: Conversation, S: System>(
    conv: &mut C,
    sys: &S,
    req: &Request,
    user: &UserName,
    policy: &Policy,
    files: &Store,
) -> Verdict {
    let before = files.record(user).map(|r| r.map(|r| r.recovery));
    let verdict = super::decide(conv, sys, req, user, policy, files);
    let recorded = match verdict.reason {
        Reason::AcceptedStep { step, .. } => record(files, user, Some(step), &[]),
        Reason::AcceptedRecovery { .. } => before.and_then(|before| {
            let after = files.record(user)?.map(|r| r.recovery).unwrap_or_default();
            let burned: Vec<String> = before
                .unwrap_or_default()
                .into_iter()
                .filter(|h| !after.contains(h))
                .collect();
            record(files, user, None, &burned)
        }),
        _ => return verdict,
    };
    match recorded {
        Ok(()) => verdict,
        Err(e) => Reason::OfflineNotRecorded(e.to_string()).into(),
    }
}

fn record(
    files: &Store,
    user: &UserName,
    step: Option<u64>,
    burned: &[String],
) -> Result<(), StoreError> {
    if step.is_none() && burned.is_empty() {
        return Ok(());
    }
    files.lock(user)?.add_offline(step, burned).map(|_| ())
}

/// Sends the user's unreported offline logins, if any: `None` when there were none, else what
/// the store applied (`Ok`) or why it was not sent (`Err`; the file stays for the next login).
pub(super) fn report_pending<F: FleetStore>(
    req: &Request,
    user: &UserName,
    store: &mut F,
) -> Option<Result<String, String>> {
    let files = match Store::open(&req.options.dir, req.owner) {
        Ok(f) => f,
        // No state directory on this host: no offline login was ever recorded here.
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return None
        }
        Err(e) => return Some(Err(format!("cannot open the local state: {e}"))),
    };
    let sent = match files.offline_report(user) {
        Ok(Some(r)) => r,
        Ok(None) => return None,
        Err(e) => return Some(Err(e.to_string())),
    };
    let applied = match store.report_offline(user, &sent) {
        Ok(a) => a,
        Err(e) => return Some(Err(e.to_string())),
    };
    let mut note = describe(&sent, &applied);
    if let Err(e) = files.lock(user).and_then(|l| l.settle_offline(&sent)) {
        note.push_str(&format!(" (the report stays, sent again next time: {e})"));
    }
    Some(Ok(note))
}

/// "step N (store's last step M), K of L recovery codes burned"
fn describe(sent: &OfflineReport, applied: &OfflineApplied) -> String {
    let step = match (sent.last_step, applied.applied_step) {
        (Some(s), Some(a)) => format!("step {s} (store's last step {a})"),
        (Some(s), None) => format!("step {s} (no record in the store)"),
        (None, _) => "no step".to_string(),
    };
    format!(
        "{step}, {} of {} recovery codes burned",
        applied.burned,
        sent.burned.len()
    )
}

/// The login's verdict, its log line noting the report sent before it.
pub(super) fn with_report(verdict: Verdict, report: Option<Result<String, String>>) -> Verdict {
    match report {
        None => verdict,
        Some(report) => Reason::OfflineReport {
            report,
            then: Box::new(verdict.reason),
        }
        .into(),
    }
}
