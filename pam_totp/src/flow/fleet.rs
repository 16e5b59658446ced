//! The decision of one login over a fleet store (SPEC §11): the same steps as
//! [`super::decide`], with the database judging the code. Before the prompt the store says what
//! the user's enrolment is (unreachable: `PAM_AUTHINFO_UNAVAIL`, no prompt); after it, the
//! answer goes to the store, which counts, consumes or burns it in one committed transaction,
//! and its outcome becomes the same [`Reason`] as in file mode. The user-name check of
//! [`super::check_canonical_name`] runs after an outcome that lets the user in (the step is then
//! already consumed: a refused login spends it, the safe side). A break-glass user's offline
//! logins are [`super::offline`]'s.
#![forbid(unsafe_code)]

use super::offline;
use super::split::{self, SplitOutcome};
use super::{check_canonical_name, compact, next_login_of, Conversation, Login, Request, Verdict};
use crate::fleet::{FleetEnrolment, FleetError, FleetStore};
use crate::names::UserName;
use crate::next_login::{Enrolment, NextLogin};
use crate::policy::{Policy, RequiredBy};
use crate::reason::Reason;
use crate::sys::System;

fn unavailable(e: &FleetError) -> Verdict {
    Reason::Store(e.to_string()).into()
}

/// The whole decision for one login against a fleet store: policy and user name as in file
/// mode (SPEC §3 step 1), then [`decide_fleet`]. `break_glass`: the user is one of
/// `[offline] users` (SPEC §11), judged from the local record while the store is unreachable,
/// and whose offline logins are reported at the next contact.
pub fn authenticate_fleet<C: Conversation, S: System, F: FleetStore>(
    conv: &mut C,
    sys: &S,
    req: &Request,
    store: &mut F,
    break_glass: bool,
) -> Verdict {
    match super::open_policy_and_user(req) {
        Ok((policy, user)) => decide_fleet(conv, sys, req, &user, &policy, store, break_glass),
        Err(v) => v,
    }
}

/// [`authenticate_fleet`] once the user name is valid and the policy read.
pub fn decide_fleet<C: Conversation, S: System, F: FleetStore>(
    conv: &mut C,
    sys: &S,
    req: &Request,
    user: &UserName,
    policy: &Policy,
    store: &mut F,
    break_glass: bool,
) -> Verdict {
    let found = match store.enrolment(user) {
        Ok(f) => f,
        Err(e) if break_glass => return offline::local(conv, sys, req, user, policy, e),
        Err(e) => return unavailable(&e),
    };
    let report = if break_glass {
        offline::report_pending(req, user, store)
    } else {
        None
    };
    let login = Login::new(sys, req, user, policy, &());
    let verdict = match req.typed_ahead {
        Some(ahead) => asking(
            &mut split::AheadConversation::new(conv, ahead),
            login,
            store,
            found,
        ),
        None => asking(conv, login, store, found),
    };
    offline::with_report(verdict, report)
}

fn asking<C: Conversation, S: System, F: FleetStore>(
    conv: &mut C,
    l: Login<'_, S, ()>,
    store: &mut F,
    found: FleetEnrolment,
) -> Verdict {
    match found.enrolment {
        Enrolment::Active => verify(conv, l, store, found.db_time),
        Enrolment::ReplacementPending => {
            if conv.prompt_hidden(&l.req.options.prompt).is_err() {
                return Reason::ConvFailed.into();
            }
            Reason::ReenrolmentPending.into()
        }
        Enrolment::None => unenrolled(conv, l, store, found.db_time),
    }
}

/// An active record: prompt, send the answer, map the outcome. `shown_at`: the store's clock
/// before the prompt.
fn verify<C: Conversation, S: System, F: FleetStore>(
    conv: &mut C,
    l: Login<'_, S, ()>,
    store: &mut F,
    shown_at: u64,
) -> Verdict {
    let Ok(answer) = conv.prompt_hidden(&l.req.options.prompt) else {
        return Reason::ConvFailed.into();
    };
    let compacted = compact(&answer);
    if compacted.as_ref().is_some_and(|c| c.is_empty()) {
        return match l.req.typed_ahead {
            Some(_) => Reason::NoCodeTyped.into(),
            None => Reason::EmptyCode.into(),
        };
    }
    let result = match store.check(
        l.user,
        compacted.as_ref().map(|c| c.as_str()),
        l.req.rhost,
        l.req.options.window,
        shown_at,
    ) {
        Ok(r) => r,
        Err(e) => return unavailable(&e),
    };
    if result.lets_in() {
        if let Err(v) = check_canonical_name(l.sys, l.user) {
            return v;
        }
    }
    result.reason().into()
}

/// No active record in the store: the per-host policy decides (SPEC §3 steps 3–5). Enrolment
/// at login is not offered in fleet mode (a host could plant a key for every required user):
/// during its grace period the user is let in with the notice, after it denied.
fn unenrolled<C: Conversation, S: System, F: FleetStore>(
    conv: &mut C,
    l: Login<'_, S, ()>,
    store: &mut F,
    shown_at: u64,
) -> Verdict {
    let next = match next_login_of(l.sys, l.user, Enrolment::None, l.policy) {
        Ok(n) => n.without_enrolment_at_login(),
        Err(v) => return v,
    };
    if next.may_let_in_unenrolled() {
        if let Err(v) = check_canonical_name(l.sys, l.user) {
            return v;
        }
    }
    match next {
        NextLogin::NoCode => Reason::NotRequired.into(),
        NextLogin::Grace { by, until } => super::grace_notice(conv, l.user, by, until),
        NextLogin::Denied { by } => required_but_unenrolled(conv, l, store, by, shown_at),
        // Not for a user without an active record (and no enrolment at login here).
        NextLogin::AskCode | NextLogin::DeniedUntilActivated | NextLogin::EnrolAtLogin { .. } => {
            Reason::RecordChanged.into()
        }
    }
}

/// Denied the way a wrong code is: asked, and the answer sent to the store (which finds no
/// record and audits the attempt), so that the time taken does not tell which case it was.
fn required_but_unenrolled<C: Conversation, S: System, F: FleetStore>(
    conv: &mut C,
    l: Login<'_, S, ()>,
    store: &mut F,
    by: RequiredBy,
    shown_at: u64,
) -> Verdict {
    let Ok(answer) = conv.prompt_hidden(&l.req.options.prompt) else {
        return Reason::ConvFailed.into();
    };
    let compacted = compact(&answer);
    let _ = store.check(
        l.user,
        compacted.as_ref().map(|c| c.as_str()),
        l.req.rhost,
        l.req.options.window,
        shown_at,
    );
    Reason::RequiredNotEnrolled(by).into()
}

/// The `split` line (SPEC §9) against a fleet store: the store says whether a code is expected
/// and how many digits it has.
pub fn split_fleet<S: System, F: FleetStore>(
    sys: &S,
    req: &Request,
    store: &mut F,
    answer: &[u8],
) -> SplitOutcome {
    let (policy, user) = match super::open_policy_and_user(req) {
        Ok(x) => x,
        Err(v) => return SplitOutcome::denied(v),
    };
    match store.enrolment(&user) {
        Ok(found) => {
            // No record: the store has no digits for the user; file mode's default applies.
            let digits = match found.digits {
                0 => crate::totp::DEFAULT_DIGITS,
                d => d,
            };
            split::split_given(sys, &user, &policy, found.enrolment, digits, answer)
        }
        Err(e) => SplitOutcome::denied(unavailable(&e)),
    }
}
