//! SPEC §11 in the pure flow: the decision over a fleet store — what is asked of the store and
//! when, what happens when it cannot answer, and that its outcomes read as file mode's.
use super::*;
use crate::fleet::{CheckResult, FleetEnrolment, FleetError, FleetStore, OfflineApplied, Outcome};
use crate::flow::{authenticate_fleet, split_fleet};
use crate::next_login::Enrolment;
use crate::store::OfflineReport;

/// A fleet store scripted per test; `judge_by_files` makes it judge like file mode over the
/// world's state directory (the conformance check: same outcomes, same reasons).
pub(super) struct FakeFleet<'w> {
    enrolment: Result<Enrolment, FleetError>,
    check: Result<Outcome, FleetError>,
    pub(super) report: Result<OfflineApplied, FleetError>,
    judge_by_files: Option<&'w World>,
    pub(super) calls: Vec<String>,
}

impl<'w> FakeFleet<'w> {
    pub(super) fn new(enrolment: Enrolment, check: Outcome) -> Self {
        FakeFleet {
            enrolment: Ok(enrolment),
            check: Ok(check),
            report: Ok(OfflineApplied {
                applied_step: Some(NOW / 30 + 1),
                burned: 1,
            }),
            judge_by_files: None,
            calls: Vec::new(),
        }
    }
    pub(super) fn down() -> Self {
        let e = FleetError("10.0.0.1:5432: connect timeout after 1000 ms".into());
        FakeFleet {
            enrolment: Err(e.clone()),
            check: Err(e.clone()),
            report: Err(e),
            judge_by_files: None,
            calls: Vec::new(),
        }
    }
}

fn result(outcome: Outcome) -> CheckResult {
    CheckResult {
        outcome,
        step: NOW / 30,
        clock_offset: 0,
        last_step: NOW / 30,
        failures: 1,
        locked_until: 0,
        recovery_left: 9,
        db_time: NOW,
    }
}

/// What the database returns for what file mode decided (fleet/README.md's table, read
/// backwards).
fn as_check_result(r: &Reason) -> CheckResult {
    let mut c = result(Outcome::Wrong);
    match *r {
        Reason::AcceptedStep { step, offset } => {
            c.outcome = Outcome::Accepted;
            c.step = step;
            c.clock_offset = offset;
        }
        Reason::Replay { step, last } => {
            c.outcome = Outcome::Replay;
            c.step = step;
            c.last_step = last;
        }
        Reason::AcceptedRecovery { left } => {
            c.outcome = Outcome::AcceptedRecovery;
            c.recovery_left = left as u32;
        }
        Reason::RecoveryReplay => c.outcome = Outcome::RecoveryReplay,
        Reason::Locked { until } => {
            c.outcome = Outcome::Locked;
            c.locked_until = until;
        }
        Reason::WrongCode {
            failures,
            locked_until,
        } => {
            c.failures = failures;
            c.locked_until = locked_until;
        }
        Reason::ReenrolmentPending => c.outcome = Outcome::PendingReplacement,
        _ => c.outcome = Outcome::NotEnrolled,
    }
    c
}

impl FleetStore for FakeFleet<'_> {
    fn enrolment(&mut self, user: &UserName) -> Result<FleetEnrolment, FleetError> {
        self.calls.push(format!("enrolment {user}"));
        let enrolment = match self.judge_by_files {
            Some(w) => Enrolment::of(w.t.store().record(user).unwrap().as_ref()),
            None => self.enrolment.clone()?,
        };
        Ok(FleetEnrolment {
            enrolment,
            digits: 6,
            db_time: NOW,
        })
    }
    fn check(
        &mut self,
        user: &UserName,
        answer: Option<&str>,
        _rhost: Option<&str>,
        _window: u32,
        shown_at: u64,
    ) -> Result<CheckResult, FleetError> {
        assert_eq!(shown_at, NOW, "the enrolment's db_time");
        self.calls
            .push(format!("check {user} {}", answer.unwrap_or("<none>")));
        if let Some(w) = self.judge_by_files {
            let (v, _) = w.login(user.as_str(), &[answer.unwrap_or("\u{0}")]);
            return Ok(as_check_result(&v.reason));
        }
        self.check.clone().map(result)
    }
    fn report_offline(
        &mut self,
        user: &UserName,
        report: &OfflineReport,
    ) -> Result<OfflineApplied, FleetError> {
        self.calls.push(format!(
            "report_offline {user} {:?} {}",
            report.last_step,
            report.burned.len()
        ));
        self.report.clone()
    }
}

impl World {
    /// A request for `user` with no remote host.
    fn request<'a>(&'a self, user: &'a str) -> Request<'a> {
        Request {
            user,
            rhost: None,
            options: &self.opts,
            owner: uid(),
            typed_ahead: None,
        }
    }

    pub(super) fn fleet_login(
        &self,
        user: &str,
        answers: &[&str],
        store: &mut FakeFleet,
    ) -> (Verdict, Script) {
        self.fleet_login_as(user, answers, store, false)
    }
    /// A login of a break-glass user (`[offline] users`) when `break_glass`.
    pub(super) fn fleet_login_as(
        &self,
        user: &str,
        answers: &[&str],
        store: &mut FakeFleet,
        break_glass: bool,
    ) -> (Verdict, Script) {
        let mut conv = Script::answering(answers);
        let req = Request {
            user,
            rhost: Some("192.0.2.9"),
            options: &self.opts,
            owner: uid(),
            typed_ahead: None,
        };
        (
            authenticate_fleet(&mut conv, &self.sys, &req, store, break_glass),
            conv,
        )
    }
}

#[test]
fn given_store_down_then_unavailable_without_a_prompt() {
    let w = World::new();
    let mut f = FakeFleet::down();
    let (v, conv) = w.fleet_login("alice", &["123456"], &mut f);
    assert_eq!(v.code, Code::AuthInfoUnavail);
    assert!(conv.prompts.is_empty());
    assert!(
        v.reason
            .to_string()
            .starts_with("fleet store: 10.0.0.1:5432"),
        "{}",
        v.reason
    );
}

#[test]
fn given_store_fails_after_the_answer_then_unavailable() {
    let w = World::new();
    let mut f = FakeFleet::new(Enrolment::Active, Outcome::Accepted);
    f.check = Err(FleetError("lost connection".into()));
    let (v, conv) = w.fleet_login("alice", &["123456"], &mut f);
    assert_eq!(v.code, Code::AuthInfoUnavail);
    assert_eq!(conv.prompts.len(), 1);
}

#[test]
fn given_answer_with_spaces_then_sent_compact_and_empty_never_sent() {
    let w = World::new();
    let mut f = FakeFleet::new(Enrolment::Active, Outcome::Accepted);
    let (v, _) = w.fleet_login("alice", &["123 456"], &mut f);
    assert_eq!(v.code, Code::Success);
    assert_eq!(f.calls, vec!["enrolment alice", "check alice 123456"]);
    let mut f = FakeFleet::new(Enrolment::Active, Outcome::Accepted);
    let (v, _) = w.fleet_login("alice", &["  "], &mut f);
    assert_eq!(v.reason, Reason::EmptyCode);
    assert_eq!(f.calls, vec!["enrolment alice"]);
}

#[test]
fn given_accepted_for_a_name_the_user_database_spells_otherwise_then_denied() {
    let w = World::new();
    let mut f = FakeFleet::new(Enrolment::Active, Outcome::Accepted);
    let (v, _) = w.fleet_login("ALICE", &["123456"], &mut f);
    assert_eq!(v.code, Code::AuthErr);
    assert!(matches!(v.reason, Reason::NotCanonicalName { .. }));
}

#[test]
fn given_pending_replacement_then_asked_and_denied_without_a_check() {
    let w = World::new();
    let mut f = FakeFleet::new(Enrolment::ReplacementPending, Outcome::Accepted);
    let (v, conv) = w.fleet_login("alice", &["123456"], &mut f);
    assert_eq!(v.reason, Reason::ReenrolmentPending);
    assert_eq!(conv.prompts.len(), 1);
    assert_eq!(f.calls, vec!["enrolment alice"]);
}

#[test]
fn given_not_enrolled_then_the_host_policy_decides_and_never_enrols_at_login() {
    let w = World::new();
    let mut f = FakeFleet::new(Enrolment::None, Outcome::NotEnrolled);
    assert_eq!(
        w.fleet_login("alice", &[], &mut f).0.reason,
        Reason::NotRequired
    );
    w.policy("version = 1\nrequire_all = true\nenroll_at_login = true\n");
    let mut f = FakeFleet::new(Enrolment::None, Outcome::NotEnrolled);
    let (v, conv) = w.fleet_login("alice", &["123456"], &mut f);
    assert!(matches!(v.reason, Reason::RequiredNotEnrolled(_)), "{v:?}");
    assert!(conv.infos.is_empty(), "no key shown: {:?}", conv.infos);
    // Asked and the answer sent like a wrong code's, so the time taken tells nothing.
    assert_eq!(f.calls, vec!["enrolment alice", "check alice 123456"]);
}

#[test]
fn given_grace_then_let_in_with_the_notice() {
    let w = World::new();
    w.policy("version = 1\nrequire_all = true\ngrace_until = 2099-01-01\n");
    let mut f = FakeFleet::new(Enrolment::None, Outcome::NotEnrolled);
    let (v, conv) = w.fleet_login("alice", &[], &mut f);
    assert_eq!(v.code, Code::Ignore, "{v:?}");
    assert_eq!(conv.infos.len(), 1);
}

#[test]
fn given_one_sequence_then_fleet_outcomes_read_as_file_mode() {
    // File mode decides; the fake store returns what the database would for that decision;
    // the fleet flow must come to the same verdict (code, log reason) at every step.
    let w = World::new();
    w.policy("version = 1\n[throttle]\nattempts = 2\nlock_seconds = 60\nmax_lock_seconds = 60\n");
    let mut r = w.enrol("alice");
    r.recovery = vec![crate::recovery::hash("4fh7-k2m9-xq3p").unwrap()];
    save(&w.t.store(), &r);
    let reference = World::new();
    reference.policy(
        "version = 1\n[throttle]\nattempts = 2\nlock_seconds = 60\nmax_lock_seconds = 60\n",
    );
    save(&reference.t.store(), &r);
    let code = w.code(0);
    let sequence = [
        code.as_str(),
        code.as_str(),
        "000000",
        "4fh7-k2m9-xq3p",
        "4fh7-k2m9-xq3p",
    ];
    let mut f = FakeFleet::new(Enrolment::Active, Outcome::Wrong);
    f.judge_by_files = Some(&w);
    for answer in sequence {
        let (want, _) = reference.login("alice", &[answer]);
        let (got, _) = w.fleet_login("alice", &[answer], &mut f);
        assert_eq!(
            (got.code, got.reason.to_string()),
            (want.code, want.reason.to_string())
        );
    }
}

#[test]
fn given_split_line_then_the_store_says_whether_a_code_is_expected() {
    let w = World::new();
    let req = w.request("alice");
    let mut f = FakeFleet::new(Enrolment::Active, Outcome::Accepted);
    let out = split_fleet(&w.sys, &req, &mut f, b"hunter2123456");
    assert_eq!(out.verdict.reason, Reason::SplitCodeKept);
    let out = split_fleet(&w.sys, &req, &mut FakeFleet::down(), b"hunter2123456");
    assert_eq!(out.verdict.code, Code::AuthInfoUnavail);
    assert!(out.split.is_none());
}

#[test]
fn given_store_down_and_a_break_glass_user_then_the_local_record_decides() {
    let w = World::new();
    w.enrol("alice");
    let req = w.request("alice");
    let code = w.code(0);
    let mut conv = Script::answering(&[&code]);
    let v = authenticate_fleet(&mut conv, &w.sys, &req, &mut FakeFleet::down(), true);
    assert_eq!(v.code, Code::Success, "{v:?}");
    assert!(v
        .reason
        .to_string()
        .contains("break-glass user, from the local record: accepted"));
    // Per-host replay protection: the same code again is refused locally.
    let mut conv = Script::answering(&[&code]);
    let v = authenticate_fleet(&mut conv, &w.sys, &req, &mut FakeFleet::down(), true);
    assert_eq!(v.code, Code::AuthErr, "{v:?}");
    // Not a break-glass user: unavailable, not asked.
    let (v, conv) = w.fleet_login("alice", &[&code], &mut FakeFleet::down());
    assert_eq!((v.code, conv.prompts.len()), (Code::AuthInfoUnavail, 0));
}

#[test]
fn given_store_down_and_a_break_glass_user_without_a_local_record_then_unavailable() {
    let w = World::new();
    // Whatever the host's policy would do for an unenrolled user (enrol at login, grace, not
    // required), the store may know the user as enrolled: no way in without a local record.
    for policy in [
        "version = 1\n",
        "version = 1\nrequire_all = true\nenroll_at_login = true\n",
        "version = 1\nrequire_all = true\ngrace_until = 2099-01-01\n",
    ] {
        w.policy(policy);
        let req = w.request("alice");
        let mut conv = Script::answering(&["123456"]);
        let v = authenticate_fleet(&mut conv, &w.sys, &req, &mut FakeFleet::down(), true);
        assert_eq!(v.code, Code::AuthInfoUnavail, "{policy}: {v:?}");
        assert!(conv.infos.is_empty() && conv.prompts.is_empty(), "{policy}");
        assert!(
            v.reason.to_string().contains("no active local record"),
            "{}",
            v.reason
        );
    }
}
