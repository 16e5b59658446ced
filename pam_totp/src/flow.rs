//! The one decision function (SPEC §3): records, state, policy, the user's answer and the
//! clock in; a PAM outcome and one log line out. Generic over the conversation so that tests
//! script it; nothing here talks to PAM or reads the clock directly.
#![forbid(unsafe_code)]

use crate::enroll;
use crate::names::UserName;
use crate::next_login::{next_login, Enrolment, NextLogin};
use crate::options::Options;
use crate::policy::{Policy, RequiredBy};
use crate::reason::{Reason, Unstored};
use crate::recovery;
use crate::secret::Secret;
use crate::store::{
    self, HeldUser, LastSuccess, Record, RecordRead, Status, Store, StoreError, UserStore,
};
use crate::sys::System;
use crate::throttle::is_locked;
use crate::timefmt;
use crate::totp::{Generator, Params};
use zeroize::Zeroizing;

/// Longest answer looked at; longer ones are wrong codes.
const MAX_ANSWER: usize = 128;

/// Most bytes of `PAM_RHOST` kept in the state's `last_success` (a DNS name has at most 253).
/// The application sets the item; stored whole, a long one made the state file larger than the
/// store reads, and every later login of the user failed until an admin repaired it.
pub const MAX_STORED_RHOST: usize = 255;

/// `rhost` cut to at most [`MAX_STORED_RHOST`] bytes, on a character boundary.
fn stored_rhost(rhost: &str) -> String {
    crate::escape::prefix_within(rhost, MAX_STORED_RHOST).to_string()
}

/// The conversation with the user, as the module needs it.
pub trait Conversation {
    /// Asks with echo off; `Err` if the application could not ask or got no answer.
    fn prompt_hidden(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConvError>;
    /// Shows a text (`PAM_TEXT_INFO`).
    fn info(&mut self, text: &str) -> Result<(), ConvError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvError;

/// The PAM result, named for the module's meaning; `ffi` maps it to the C constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Success,
    AuthErr,
    Ignore,
    AuthInfoUnavail,
    ServiceErr,
    ConvErr,
}

/// syslog priority of the decision's log line, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Info,
    Notice,
    Warning,
    Err,
}

/// The decision: a PAM code and the one log line (reason) that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub code: Code,
    pub level: Level,
    pub reason: Reason,
}

impl From<Reason> for Verdict {
    /// The PAM code and log priority of each reason (SPEC §3's return codes).
    fn from(reason: Reason) -> Verdict {
        use Reason::*;
        let (code, level) = match &reason {
            AcceptedStep { .. } => (Code::Success, Level::Info),
            AcceptedRecovery { .. } | EnrolledAtLogin { .. } => (Code::Success, Level::Notice),
            NotRequired | SplitCodeKept | SplitWhole { .. } => (Code::Ignore, Level::Info),
            Grace { .. } | EnrolmentSkipped { .. } => (Code::Ignore, Level::Notice),
            Replay { .. } | RecoveryReplay => (Code::AuthErr, Level::Warning),
            NotCounted { .. } | NotStored { .. } => (Code::AuthErr, Level::Err),
            WrongCode { .. }
            | EmptyCode
            | NoCodeTyped
            | Locked { .. }
            | ReenrolmentPending
            | RecordChanged
            | RequiredNotEnrolled(_)
            | EnrolmentFailed(_)
            | InvalidUserName(_)
            | NotCanonicalName { .. } => (Code::AuthErr, Level::Notice),
            PolicyUnusable(_) => (Code::ServiceErr, Level::Err),
            Store(_) | UserLookup(_) | GroupLookup(_) | Enrolment(_) => {
                (Code::AuthInfoUnavail, Level::Err)
            }
            ConvFailed => (Code::ConvErr, Level::Notice),
            Offline { local, .. } => {
                let inner = Verdict::from((**local).clone());
                (inner.code, inner.level.max(Level::Warning))
            }
            OfflineReport { report, then } => {
                let inner = Verdict::from((**then).clone());
                let floor = if report.is_ok() {
                    Level::Notice
                } else {
                    Level::Warning
                };
                (inner.code, inner.level.max(floor))
            }
            OfflineNotRecorded(_) => (Code::AuthInfoUnavail, Level::Err),
        };
        Verdict {
            code,
            level,
            reason,
        }
    }
}

fn unavailable(e: &StoreError) -> Verdict {
    Reason::Store(e.to_string()).into()
}

/// One login attempt.
pub struct Request<'a> {
    pub user: &'a str,
    pub rhost: Option<&'a str>,
    pub options: &'a Options,
    /// Owner that trusted files must have: 0 (root) in production.
    pub owner: u32,
    /// What a `split` line earlier in the stack left (SPEC §9): the code is taken from it, and
    /// the user is never prompted.
    pub typed_ahead: Option<&'a TypedAhead>,
}

/// One login once its user name is valid and its policy read: what every step below needs.
struct Login<'l, S, St> {
    sys: &'l S,
    req: &'l Request<'l>,
    user: &'l UserName,
    policy: &'l Policy,
    store: &'l St,
}

impl<S, St> Clone for Login<'_, S, St> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S, St> Copy for Login<'_, S, St> {}

impl<'l, S, St> Login<'l, S, St> {
    fn new(
        sys: &'l S,
        req: &'l Request<'l>,
        user: &'l UserName,
        policy: &'l Policy,
        store: &'l St,
    ) -> Self {
        Login {
            sys,
            req,
            user,
            policy,
            store,
        }
    }
}

/// What the user typed, classified.
enum Answer {
    Empty,
    Totp(u64),
    Replay(u64),
    Recovery(usize),
    /// A recovery code that matched before the lock and was burned meanwhile.
    RecoveryReplay,
    Wrong,
}

fn classify(answer: &[u8], record: &Record, state: &store::State, now: u64, window: u32) -> Answer {
    let Some(compact) = compact(answer) else {
        return Answer::Wrong;
    };
    if compact.is_empty() {
        return Answer::Empty;
    }
    let digits = usize::from(record.params.digits());
    if compact.len() == digits && compact.bytes().all(|b| b.is_ascii_digit()) {
        let g = Generator::new(&record.secret, record.params);
        match g.matching_step(&compact, now, window) {
            Some(step) if state.is_replay(step) => return Answer::Replay(step),
            Some(step) => return Answer::Totp(step),
            None => {}
        }
    }
    match recovery::find(&compact, &record.recovery) {
        Some(i) => Answer::Recovery(i),
        None => Answer::Wrong,
    }
}

/// The whole decision for one login (SPEC §3 steps 1–5).
pub fn authenticate<C: Conversation, S: System>(conv: &mut C, sys: &S, req: &Request) -> Verdict {
    #[cfg(feature = "fault-injection")]
    if req.options.fault_panic {
        panic!("fault injected by the module option fault=panic");
    }
    match open(req) {
        Ok((policy, user, store)) => decide(conv, sys, req, &user, &policy, &store),
        Err(v) => v,
    }
}

/// SPEC §3 step 1 for a request, in order: the policy read (else `PAM_SERVICE_ERR`), the user
/// name valid, the state directory trusted. For the judging line and the `split` line alike.
fn open(req: &Request) -> Result<(Policy, UserName, Store), Verdict> {
    let (policy, user) = open_policy_and_user(req)?;
    match Store::open(&req.options.dir, req.owner) {
        Ok(store) => Ok((policy, user, store)),
        Err(e) => Err(unavailable(&e)),
    }
}

/// The policy read (else `PAM_SERVICE_ERR`) and the user name valid: the start of every line,
/// in file and fleet mode.
fn open_policy_and_user(req: &Request) -> Result<(Policy, UserName), Verdict> {
    let policy = match store::load_policy(&req.options.policy, req.owner) {
        Ok(p) => p.unwrap_or_default(),
        Err(e) => return Err(Reason::PolicyUnusable(e.to_string()).into()),
    };
    let Ok(user) = UserName::new(req.user) else {
        return Err(Reason::InvalidUserName(req.user.to_string()).into());
    };
    Ok((policy, user))
}

/// The decision for a valid user name once the policy is read, over any store: the
/// conformance tests run it against every store there is.
pub fn decide<C: Conversation, S: System, St: UserStore>(
    conv: &mut C,
    sys: &S,
    req: &Request,
    user: &UserName,
    policy: &Policy,
    store: &St,
) -> Verdict {
    let login = Login::new(sys, req, user, policy, store);
    match req.typed_ahead {
        Some(ahead) => decide_asking(&mut split::AheadConversation::new(conv, ahead), login),
        None => decide_asking(conv, login),
    }
}

/// [`decide`] over the conversation that answers the code prompt.
fn decide_asking<C: Conversation, S: System, St: UserStore>(
    conv: &mut C,
    login: Login<'_, S, St>,
) -> Verdict {
    let Login {
        req, user, store, ..
    } = login;
    match enrolment(store, user) {
        Err(v) => v,
        Ok(found) => match found {
            (Enrolment::Active, Some(r)) => verify_enrolled(conv, login, r),
            (Enrolment::ReplacementPending, _) => {
                if conv.prompt_hidden(&req.options.prompt).is_err() {
                    return Reason::ConvFailed.into();
                }
                Reason::ReenrolmentPending.into()
            }
            _ => unenrolled(conv, login),
        },
    }
}

/// The user's record as read, and what it makes of them (SPEC §3 step 2 or 3–5).
fn enrolment<St: UserStore>(
    store: &St,
    user: &UserName,
) -> Result<(Enrolment, Option<RecordRead>), Verdict> {
    let record = store.read_record(user).map_err(|e| unavailable(&e))?;
    Ok((
        Enrolment::of(record.as_ref().map(RecordRead::record)),
        record,
    ))
}

/// The proof of a code for self-service (SPEC §8): for an active record, the answer is judged
/// exactly as at login — window, replay, throttle; the step is consumed, a wrong code counts.
/// `None` when the user has no active record (nothing to prove); a forced re-enrolment
/// pending activation is denied as at login.
pub fn prove_code<C: Conversation, S: System, St: UserStore>(
    conv: &mut C,
    sys: &S,
    req: &Request,
    user: &UserName,
    policy: &Policy,
    store: &St,
) -> Option<Verdict> {
    let login = Login::new(sys, req, user, policy, store);
    match enrolment(store, user) {
        Err(v) => Some(v),
        Ok((Enrolment::Active, Some(r))) => Some(verify_enrolled(conv, login, r)),
        Ok((Enrolment::ReplacementPending, _)) => Some(Reason::ReenrolmentPending.into()),
        Ok(_) => None,
    }
}

/// Records are found by the exact name. A user database that also answers to other spellings
/// (case-insensitive LDAP/AD) would let "ALICE" in as alice without alice's record, or with
/// the code of a stale "ALICE" record (an import's spelling, a typo) after alice's was
/// revoked. So every outcome that lets a user in — a right code, a recovery code, PAM_IGNORE,
/// enrolment at login — first checks that the user database knows the user under exactly this
/// name (or not at all). Denials skip the lookup: they need no check, and a wrong code for an
/// enrolled user and a login of an unenrolled user that policy requires then do the same work.
fn check_canonical_name<S: System>(sys: &S, user: &str) -> Result<(), Verdict> {
    match sys.canonical_name(user) {
        Ok(Some(name)) if name != user => Err(Reason::NotCanonicalName {
            typed: user.to_string(),
            canonical: name,
        }
        .into()),
        Ok(_) => Ok(()),
        Err(e) => Err(Reason::UserLookup(e).into()),
    }
}

/// Step 2: an active record. Prompt; then, under the user's lock, count the attempt before
/// anything depends on the answer, judge it, check the name of an answer that lets the user
/// in, and store the outcome.
///
/// The attempt is counted first — one entry, the same whatever the answer — so that nothing a
/// caller can observe or interrupt (the time the check takes, a kill at any moment, a write
/// that fails) can tell a right code from a wrong one while the failure is not yet on disk.
/// A replay is then uncounted again; a right code's success replaces the count. The user-name
/// lookup of an answer that lets the user in runs under the lock, after the count.
fn verify_enrolled<C: Conversation, S: System, St: UserStore>(
    conv: &mut C,
    l: Login<'_, S, St>,
    first_read: RecordRead,
) -> Verdict {
    let Login {
        sys,
        req,
        user,
        policy,
        store,
    } = l;
    // A corrupt or untrusted state denies before anything is asked.
    let first_state = match store.read_state(user) {
        Ok(s) => s,
        Err(e) => return unavailable(&e),
    };
    let Ok(answer) = conv.prompt_hidden(&req.options.prompt) else {
        return Reason::ConvFailed.into();
    };
    // Empty is a property of the answer alone (no key is involved): not counted.
    if compact(&answer).is_some_and(|c| c.is_empty()) {
        return match req.typed_ahead {
            Some(_) => Reason::NoCodeTyped.into(),
            None => Reason::EmptyCode.into(),
        };
    }
    let now = sys.now();
    // The recovery codes the prompt was shown for: a code burned meanwhile by a concurrent
    // login is a double submit, not a guess.
    let shown_recovery = first_read.record().recovery.clone();
    let lock = match store.hold(user) {
        Ok(l) => l,
        Err(e) => return unavailable(&e),
    };
    // Read again under the lock: the record may have changed while the user typed.
    let (record, state) = match (lock.record_again(first_read), lock.state_again(first_state)) {
        (Ok(Some((r, _))), Ok(s)) if r.status == Status::Active => (r, s),
        (Ok(_), Ok(_)) => return Reason::RecordChanged.into(),
        (Err(e), _) | (_, Err(e)) => return unavailable(&e),
    };
    if is_locked(state.locked_until, now) {
        return Reason::Locked {
            until: state.locked_until,
        }
        .into();
    }
    let mut failed = state.clone();
    failed.failures = failed.failures.saturating_add(1);
    failed.locked_until = policy.throttle.locked_until_after(failed.failures, now);
    if let Err(e) = lock.count_failure(&failed) {
        return Reason::NotCounted {
            error: e.to_string(),
        }
        .into();
    }
    let judged = match classify(&answer, &record, &state, now, req.options.window) {
        Answer::Wrong if recovery_matches(&answer, &shown_recovery) => Answer::RecoveryReplay,
        other => other,
    };
    if matches!(judged, Answer::Totp(_) | Answer::Recovery(_)) {
        if let Err(v) = check_canonical_name(sys, user) {
            return v;
        }
    }
    commit(&lock, record, state, failed, judged, now, req.rhost).into()
}

/// The answer without white space (`None`: not UTF-8, or longer than any code).
fn compact(answer: &[u8]) -> Option<Zeroizing<String>> {
    let text = std::str::from_utf8(answer).ok()?;
    (text.len() <= MAX_ANSWER)
        .then(|| Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect()))
}

/// Whether the answer is one of `entries`' recovery codes.
fn recovery_matches(answer: &[u8], entries: &[String]) -> bool {
    compact(answer).is_some_and(|c| recovery::find(&c, entries).is_some())
}

/// Stores what a judged answer means, under the user's lock, its failure already counted
/// (`failed`): a success replaces the count; a replay is uncounted again (if that write fails,
/// the failure stays: the safe side); a wrong code stays counted.
fn commit(
    lock: &impl HeldUser,
    mut record: Record,
    mut state: store::State,
    failed: store::State,
    answer: Answer,
    now: u64,
    rhost: Option<&str>,
) -> Reason {
    let unstored = |what, e: StoreError| Reason::NotStored {
        what,
        error: e.to_string(),
        failures: failed.failures,
    };
    let success = |state: &mut store::State| {
        state.failures = 0;
        state.locked_until = 0;
        state.last_success = Some(LastSuccess {
            time: now,
            rhost: rhost.map(stored_rhost),
        });
    };
    match answer {
        Answer::Totp(step) => {
            let offset = record.params.offset_of(step, now);
            state.last_step = Some(step);
            state.last_offset = Some(offset);
            success(&mut state);
            match lock.accept(&state) {
                Ok(()) => Reason::AcceptedStep { step, offset },
                Err(e) => unstored(Unstored::AcceptedStep, e),
            }
        }
        Answer::Recovery(i) => {
            record.recovery.remove(i);
            if let Err(e) = lock.put_record(&record) {
                return unstored(Unstored::RecoveryBurn, e);
            }
            success(&mut state);
            match lock.accept(&state) {
                Ok(()) => Reason::AcceptedRecovery {
                    left: record.recovery.len(),
                },
                Err(e) => unstored(Unstored::RecoveryState, e),
            }
        }
        Answer::Replay(step) => {
            let _ = lock.count_failure(&state);
            Reason::Replay {
                step,
                last: state.last_step.unwrap_or(0),
            }
        }
        Answer::RecoveryReplay => {
            let _ = lock.count_failure(&state);
            Reason::RecoveryReplay
        }
        Answer::Empty | Answer::Wrong => Reason::WrongCode {
            failures: failed.failures,
            locked_until: failed.locked_until,
        },
    }
}

/// What the user's next login does ([`next_login`]), the groups looked up only where the
/// policy needs them for a user without a record.
fn next_login_of<S: System>(
    sys: &S,
    user: &UserName,
    found: Enrolment,
    policy: &Policy,
) -> Result<NextLogin, Verdict> {
    let groups = if found == Enrolment::None && policy.needs_groups() {
        sys.groups_of(user)
            .map_err(|e| Verdict::from(Reason::GroupLookup(e)))?
    } else {
        None
    };
    Ok(next_login(
        user,
        found,
        policy,
        groups.as_deref(),
        sys.now(),
    ))
}

/// Steps 3–5: no active record. What happens is [`next_login`]'s to say.
fn unenrolled<C: Conversation, S: System, St: UserStore>(
    conv: &mut C,
    l: Login<'_, S, St>,
) -> Verdict {
    let Login {
        sys, user, policy, ..
    } = l;
    let next = match next_login_of(sys, user, Enrolment::None, policy) {
        Ok(n) => n,
        Err(v) => return v,
    };
    if next.may_let_in_unenrolled() {
        if let Err(v) = check_canonical_name(sys, user) {
            return v;
        }
    }
    match next {
        NextLogin::NoCode => Reason::NotRequired.into(),
        NextLogin::EnrolAtLogin { by, grace } => enroll_at_login(conv, l, by, grace),
        NextLogin::Grace { by, until } => grace_notice(conv, user, by, until),
        NextLogin::Denied { by } => required_but_unenrolled(conv, l, by),
        // Not for a user without an active record; deny rather than trust that.
        NextLogin::AskCode | NextLogin::DeniedUntilActivated => Reason::RecordChanged.into(),
    }
}

/// Step 4 during grace: let in with a notice of the date.
fn grace_notice<C: Conversation>(
    conv: &mut C,
    user: &UserName,
    by: RequiredBy,
    until: u64,
) -> Verdict {
    let notice = format!(
        "Two-factor login becomes mandatory on {}. Ask your administrator to enrol you \
         (pam-totp enroll {}).",
        timefmt::date(until),
        user
    );
    if conv.info(&notice).is_err() {
        return Reason::ConvFailed.into();
    }
    Reason::Grace { by, until }.into()
}

/// Step 4 with `enroll_at_login`: show a new key, ask for a code from the app, and only on a
/// correct code store the active record. During grace an empty answer skips for now.
fn enroll_at_login<C: Conversation, S: System, St: UserStore>(
    conv: &mut C,
    l: Login<'_, S, St>,
    by: RequiredBy,
    grace: Option<u64>,
) -> Verdict {
    let Login {
        sys,
        req,
        user,
        policy,
        store,
    } = l;
    // A one-field service cannot show a key: skip while grace allows it, else deny.
    if req.typed_ahead.is_some() {
        return match grace {
            Some(until) => Reason::EnrolmentSkipped { until }.into(),
            None => Reason::EnrolmentFailed(
                "a service with one password field cannot show a new key; enrol with \
                 `pam-totp enroll` or at an ssh login first"
                    .into(),
            )
            .into(),
        };
    }
    let issuer = policy.issuer.clone().unwrap_or_else(|| sys.hostname());
    let enrolment = match enroll::new_enrolment(
        user,
        &issuer,
        Params::default(),
        sys.now(),
        recovery::DEFAULT_COUNT,
    ) {
        Ok(e) => e,
        Err(e) => return Reason::Enrolment(format!("cannot make a key: {e}")).into(),
    };
    let setup = match enroll::setup_text(&enrolment, false) {
        Ok(t) => t,
        Err(e) => return Reason::Enrolment(e.to_string()).into(),
    };
    let mut intro = String::from(
        "Two-factor login is required for this account. Set up your authenticator app now.\n",
    );
    match grace {
        Some(g) => intro.push_str(&format!(
            "(Press Enter without a code to skip until {}.)\n",
            timefmt::date(g)
        )),
        None => intro.push_str("Then enter the code the app shows to finish.\n"),
    }
    if conv.info(&intro).is_err() || conv.info(&setup).is_err() {
        return Reason::ConvFailed.into();
    }
    let Ok(answer) = conv.prompt_hidden(&req.options.prompt) else {
        return Reason::ConvFailed.into();
    };
    let typed = String::from_utf8_lossy(&answer);
    if typed.trim().is_empty() {
        if let Some(until) = grace {
            let _ = conv.info(&format!(
                "Enrolment skipped. Two-factor login becomes mandatory on {}.",
                timefmt::date(until)
            ));
            return Reason::EnrolmentSkipped { until }.into();
        }
    }
    let lock = match store.hold(user) {
        Ok(l) => l,
        Err(e) => return unavailable(&e),
    };
    match lock.record() {
        Ok(Some(r)) if r.status == Status::Active || r.replaces_active => {
            return Reason::EnrolmentFailed("record changed during login".into()).into()
        }
        Ok(_) => {}
        Err(e) => return unavailable(&e),
    }
    let now = sys.now();
    let reason = match enroll::confirm(
        &lock,
        enrolment.record.clone(),
        &typed,
        now,
        req.options.window,
    ) {
        Ok(step) => Reason::EnrolledAtLogin { by, step },
        // After the code was judged, a failed write must look like a wrong code: it is one
        // of the EnrolmentFailed denials.
        Err(e) => Reason::EnrolmentFailed(e.to_string()),
    };
    reason.into()
}

/// Denies the way a wrong code for an enrolled user is denied: same prompt, same work (lock,
/// read, HMAC over the window, state rewrite — on the decoy), same answer, so that nothing
/// tells which case it was.
fn required_but_unenrolled<C: Conversation, S: System, St: UserStore>(
    conv: &mut C,
    l: Login<'_, S, St>,
    by: RequiredBy,
) -> Verdict {
    let Login {
        sys, req, store, ..
    } = l;
    let Ok(answer) = conv.prompt_hidden(&req.options.prompt) else {
        return Reason::ConvFailed.into();
    };
    if let (Ok(lock), Ok(dummy)) = (store.hold_decoy(), Secret::generate(20)) {
        let _ = lock.record();
        let mut state = lock.state().unwrap_or_default();
        let g = Generator::new(&dummy, Params::default());
        let typed = String::from_utf8_lossy(&answer);
        let _ = g.matching_step(typed.trim(), sys.now(), req.options.window);
        state.failures = state.failures.wrapping_add(1) % 1000;
        let _ = lock.count_failure(&state);
    }
    Reason::RequiredNotEnrolled(by).into()
}

pub mod fleet;
mod offline;
pub mod split;
pub use fleet::{authenticate_fleet, split_fleet};
pub use split::TypedAhead;

#[cfg(test)]
mod tests;
