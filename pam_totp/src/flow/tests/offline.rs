//! SPEC §11 `[offline] mode = "local"` in the pure flow: a break-glass user let in from the
//! local record while the store is down is recorded in `users/USER.offline`; the next login
//! that reaches the store reports it first and removes the file only once the store took it.
use super::fleet::FakeFleet;
use super::*;
use crate::fleet::{FleetError, Outcome};
use crate::next_login::Enrolment;
use crate::store::OfflineReport;

const RECOVERY: &str = "4fh7-k2m9-xq3p";

fn offline(w: &World, user: &str) -> Option<OfflineReport> {
    w.t.store().offline_report(&u(user)).unwrap()
}

/// alice, enrolled locally with one recovery code; its stored entry.
fn alice(w: &World) -> String {
    let mut r = w.enrol("alice");
    let entry = crate::recovery::hash(RECOVERY).unwrap();
    r.recovery = vec![entry.clone()];
    save(&w.t.store(), &r);
    entry
}

#[test]
fn given_store_down_then_offline_logins_are_recorded_for_the_report() {
    let w = World::new();
    let entry = alice(&w);
    let code = w.code(0);
    let (v, _) = w.fleet_login_as("alice", &[&code], &mut FakeFleet::down(), true);
    assert_eq!(v.code, Code::Success, "{v:?}");
    let step = NOW / 30;
    assert_eq!(
        offline(&w, "alice"),
        Some(OfflineReport {
            last_step: Some(step),
            burned: vec![]
        })
    );
    let (v, _) = w.fleet_login_as("alice", &[RECOVERY], &mut FakeFleet::down(), true);
    assert!(
        matches!(*v.reason_local(), Reason::AcceptedRecovery { left: 0 }),
        "{v:?}"
    );
    assert_eq!(
        offline(&w, "alice"),
        Some(OfflineReport {
            last_step: Some(step),
            burned: vec![entry]
        })
    );
    // A refused offline login records nothing more.
    let (v, _) = w.fleet_login_as("alice", &["000000"], &mut FakeFleet::down(), true);
    assert_eq!(v.code, Code::AuthErr);
    assert_eq!(offline(&w, "alice").unwrap().last_step, Some(step));
}

#[test]
fn given_a_pending_report_then_sent_after_the_enrolment_call_and_removed() {
    let w = World::new();
    alice(&w);
    let (_, _) = w.fleet_login_as("alice", &[RECOVERY], &mut FakeFleet::down(), true);
    let mut f = FakeFleet::new(Enrolment::Active, Outcome::Accepted);
    let (v, _) = w.fleet_login_as("alice", &["123456"], &mut f, true);
    assert_eq!(
        f.calls,
        vec![
            "enrolment alice",
            "report_offline alice None 1",
            "check alice 123456"
        ]
    );
    assert_eq!(v.code, Code::Success);
    let line = v.reason.to_string();
    assert!(
        line.starts_with(
            "offline logins reported: no step, 1 of 1 recovery codes burned; accepted step"
        ),
        "{line}"
    );
    assert_eq!(offline(&w, "alice"), None);
    // Nothing left: the next login sends no report.
    let mut f = FakeFleet::new(Enrolment::Active, Outcome::Accepted);
    w.fleet_login_as("alice", &["123456"], &mut f, true);
    assert_eq!(f.calls, vec!["enrolment alice", "check alice 123456"]);
}

#[test]
fn given_the_report_fails_then_kept_and_the_login_goes_on() {
    let w = World::new();
    alice(&w);
    let code = w.code(0);
    w.fleet_login_as("alice", &[&code], &mut FakeFleet::down(), true);
    let kept = offline(&w, "alice");
    assert!(kept.is_some());
    let mut f = FakeFleet::new(Enrolment::Active, Outcome::Accepted);
    f.report = Err(FleetError("lost connection".into()));
    let (v, _) = w.fleet_login_as("alice", &["654321"], &mut f, true);
    assert_eq!(v.code, Code::Success, "{v:?}");
    assert_eq!(v.level, Level::Warning);
    assert!(v
        .reason
        .to_string()
        .starts_with("offline logins not reported (kept for the next login): fleet store: lost connection; accepted step"));
    assert_eq!(offline(&w, "alice"), kept);
    // The store down before the enrolment call: nothing is sent at all.
    let mut f = FakeFleet::down();
    w.fleet_login_as("alice", &[&w.code(1)], &mut f, true);
    assert_eq!(f.calls, vec!["enrolment alice"]);
    assert_eq!(offline(&w, "alice").unwrap().last_step, Some(NOW / 30 + 1));
}

#[test]
fn given_a_user_not_listed_then_no_report_is_sent() {
    let w = World::new();
    alice(&w);
    w.fleet_login_as("alice", &[RECOVERY], &mut FakeFleet::down(), true);
    let mut f = FakeFleet::new(Enrolment::Active, Outcome::Accepted);
    let (v, _) = w.fleet_login("alice", &["123456"], &mut f);
    assert_eq!(v.reason.to_string(), "accepted step 60000000 (offset 0)");
    assert_eq!(f.calls, vec!["enrolment alice", "check alice 123456"]);
    assert!(offline(&w, "alice").is_some());
}

impl Verdict {
    /// The local decision inside an offline verdict.
    fn reason_local(&self) -> &Reason {
        match &self.reason {
            Reason::Offline { local, .. } => local,
            other => other,
        }
    }
}

#[test]
fn given_no_local_state_directory_then_nothing_to_report() {
    let mut w = World::new();
    w.opts.dir = w.t.path().join("absent");
    let mut f = FakeFleet::new(Enrolment::Active, Outcome::Accepted);
    let (v, _) = w.fleet_login_as("alice", &["123456"], &mut f, true);
    assert_eq!(v.reason.to_string(), "accepted step 60000000 (offset 0)");
    assert_eq!(f.calls, vec!["enrolment alice", "check alice 123456"]);
}
