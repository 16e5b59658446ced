//! SPEC §9 in the pure flow: what a split line decides for each kind of user, and how the line
//! after the password judges what was typed ahead — never prompting.
use super::*;
use crate::flow::split::{split, Split, SplitOutcome, TypedAhead};

impl World {
    /// The split line for `user`'s one `answer`.
    fn split(&self, user: &str, answer: &str) -> SplitOutcome {
        let req = Request {
            user,
            rhost: None,
            options: &self.opts,
            owner: uid(),
            typed_ahead: None,
        };
        split(&self.sys, &req, answer.as_bytes())
    }

    /// The line after the password, given what the split line left.
    fn after_password(&self, user: &str, ahead: &TypedAhead) -> (Verdict, Script) {
        let mut conv = Script::default();
        let req = Request {
            user,
            rhost: None,
            options: &self.opts,
            owner: uid(),
            typed_ahead: Some(ahead),
        };
        (authenticate(&mut conv, &self.sys, &req), conv)
    }
}

fn code_of(out: &SplitOutcome) -> Option<(String, String)> {
    match &out.split {
        Some(Split::Code { password, code }) => Some((
            String::from_utf8(password.to_vec()).unwrap(),
            code.to_string(),
        )),
        _ => None,
    }
}

#[test]
fn given_enrolled_user_then_the_split_line_keeps_the_code_and_passes_the_password() {
    let w = World::new();
    w.enrol("alice");
    let out = w.split("alice", "hunter2492039");
    assert_eq!(out.verdict.code, Code::Ignore);
    assert_eq!(out.verdict.reason, Reason::SplitCodeKept);
    assert_eq!(code_of(&out), Some(("hunter2".into(), "492039".into())));
}

#[test]
fn given_user_without_record_or_in_grace_then_the_answer_passes_whole() {
    let w = World::new();
    let out = w.split("bob", "hunter2492039");
    assert!(matches!(out.split, Some(Split::Whole)));
    assert_eq!(out.verdict.reason, Reason::SplitWhole { expected: false });
    w.policy("version = 1\nrequire_all = true\ngrace_until = 2099-01-01T00:00:00Z\n");
    assert!(matches!(
        w.split("bob", "hunter2").split,
        Some(Split::Whole)
    ));
}

#[test]
fn given_required_unenrolled_user_then_split_like_an_enrolled_one() {
    let w = World::new();
    w.policy("version = 1\nrequire_all = true\n");
    for user in ["bob", "nobody-known"] {
        let out = w.split(user, "pw123456");
        assert_eq!(
            code_of(&out),
            Some(("pw".into(), "123456".into())),
            "{user}"
        );
    }
}

#[test]
fn given_no_code_at_the_end_then_passed_whole_and_the_later_line_denies_uncounted() {
    let w = World::new();
    w.enrol("alice");
    let out = w.split("alice", "hunter2");
    assert_eq!(out.verdict.reason, Reason::SplitWhole { expected: true });
    let (v, conv) = w.after_password("alice", &TypedAhead::Nothing);
    assert_eq!(v.reason, Reason::NoCodeTyped);
    assert!(conv.prompts.is_empty(), "prompted: {:?}", conv.prompts);
    assert_eq!(w.state("alice").failures, 0);
}

#[test]
fn given_code_typed_ahead_then_accepted_once_and_replay_denied() {
    let w = World::new();
    w.enrol("alice");
    let ahead = TypedAhead::Code(Zeroizing::new(w.code(0)));
    let (v, _) = w.after_password("alice", &ahead);
    assert_eq!(v.code, Code::Success, "{v:?}");
    let (v, _) = w.after_password("alice", &ahead);
    assert!(matches!(v.reason, Reason::Replay { .. }), "{}", v.reason);
}

#[test]
fn given_wrong_code_typed_ahead_then_counted_like_a_prompted_one() {
    let w = World::new();
    w.enrol("alice");
    let wrong = if w.code(0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (v, _) = w.after_password("alice", &TypedAhead::Code(Zeroizing::new(wrong.into())));
    assert!(
        matches!(v.reason, Reason::WrongCode { failures: 1, .. }),
        "{}",
        v.reason
    );
}

#[test]
fn given_enrol_at_login_over_one_field_then_no_key_is_shown() {
    let w = World::new();
    w.policy("version = 1\nrequire_all = true\nenroll_at_login = true\n");
    let ahead = TypedAhead::Code(Zeroizing::new("123456".into()));
    let (v, conv) = w.after_password("alice", &ahead);
    assert_eq!(v.code, Code::AuthErr);
    assert!(
        matches!(v.reason, Reason::EnrolmentFailed(_)),
        "{}",
        v.reason
    );
    assert!(conv.infos.is_empty(), "a key was shown: {:?}", conv.infos);
    assert!(w.t.store().record(&u("alice")).unwrap().is_none());
    w.policy(
        "version = 1\nrequire_all = true\nenroll_at_login = true\n\
         grace_until = 2099-01-01T00:00:00Z\n",
    );
    let (v, _) = w.after_password("alice", &TypedAhead::Nothing);
    assert_eq!(v.code, Code::Ignore);
    assert!(
        matches!(v.reason, Reason::EnrolmentSkipped { .. }),
        "{}",
        v.reason
    );
}
