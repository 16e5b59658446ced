//! The decision, with a scripted conversation and an injected clock.
use super::*;
use crate::reason::Reason;
use crate::secret::Secret;
use crate::store::State;
use crate::testutil::{record, save, u, uid, TempDir};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

const NOW: u64 = 1_800_000_015; // 15 s into a step

mod fleet;
mod offline;
mod split;

#[derive(Default)]
struct Script {
    answers: Vec<Vec<u8>>,
    prompts: Vec<String>,
    infos: Vec<String>,
}

impl Script {
    fn answering(answers: &[&str]) -> Self {
        Script {
            answers: answers
                .iter()
                .rev()
                .map(|a| a.as_bytes().to_vec())
                .collect(),
            ..Script::default()
        }
    }
}

impl Conversation for Script {
    fn prompt_hidden(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConvError> {
        self.prompts.push(prompt.to_string());
        self.answers.pop().map(Zeroizing::new).ok_or(ConvError)
    }
    fn info(&mut self, text: &str) -> Result<(), ConvError> {
        self.infos.push(text.to_string());
        Ok(())
    }
}

struct Fake {
    now: u64,
    groups: HashMap<String, Vec<String>>,
    /// When set: the state directory whose failure count each user-database lookup records
    /// (what a caller who interrupts the login at that moment would leave behind).
    probe: Option<(std::path::PathBuf, std::cell::RefCell<Vec<u32>>)>,
}

impl System for Fake {
    fn now(&self) -> u64 {
        self.now
    }
    fn groups_of(&self, user: &str) -> Result<Option<Vec<String>>, String> {
        Ok(self.groups.get(user).cloned())
    }
    /// Like a case-insensitive directory: "ALICE" is alice.
    fn canonical_name(&self, user: &str) -> Result<Option<String>, String> {
        if let Some((dir, seen)) = &self.probe {
            let store = Store::open(dir, uid()).unwrap();
            let failures = store.state(&u(user)).map(|s| s.failures).unwrap_or(0);
            seen.borrow_mut().push(failures);
        }
        let lower = user.to_lowercase();
        Ok(self.groups.contains_key(&lower).then_some(lower))
    }
    fn hostname(&self) -> String {
        "testhost".into()
    }
}

struct World {
    t: TempDir,
    opts: Options,
    sys: Fake,
}

impl World {
    fn new() -> World {
        let t = TempDir::new();
        let opts = Options {
            dir: t.state(),
            policy: t.path().join("policy.toml"),
            ..Options::default()
        };
        let mut groups = HashMap::new();
        groups.insert(
            "alice".to_string(),
            vec!["alice".to_string(), "wheel".to_string()],
        );
        groups.insert("bob".to_string(), vec!["bob".to_string()]);
        World {
            t,
            opts,
            sys: Fake {
                now: NOW,
                groups,
                probe: None,
            },
        }
    }
    fn enrol(&self, user: &str) -> Record {
        let r = record(user);
        save(&self.t.store(), &r);
        r
    }
    fn policy(&self, text: &str) {
        let p = self.t.path().join("policy.toml");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    fn code(&self, offset_steps: i64) -> String {
        let r = record("x");
        let g = Generator::new(&r.secret, r.params);
        let step = (r.params.step_at(self.sys.now) as i64 + offset_steps) as u64;
        g.code_at_step(step).to_string()
    }
    fn login(&self, user: &str, answers: &[&str]) -> (Verdict, Script) {
        let mut conv = Script::answering(answers);
        let req = Request {
            user,
            rhost: Some("192.0.2.9"),
            options: &self.opts,
            owner: uid(),
            typed_ahead: None,
        };
        let v = authenticate(&mut conv, &self.sys, &req);
        (v, conv)
    }
    fn state(&self, user: &str) -> State {
        self.t.store().state(&u(user)).unwrap()
    }
}

#[test]
fn given_current_code_then_login_succeeds_and_step_is_stored() {
    let w = World::new();
    w.enrol("alice");
    let (v, conv) = w.login("alice", &[&w.code(0)]);
    assert_eq!(v.code, Code::Success, "{v:?}");
    assert_eq!(conv.prompts, vec!["Verification code: "]);
    let step = NOW / 30;
    assert_eq!(v.reason, Reason::AcceptedStep { step, offset: 0 });
    let st = w.state(&u("alice"));
    assert_eq!(st.last_step, Some(step));
    assert_eq!(st.last_offset, Some(0));
    assert_eq!(st.last_success.unwrap().rhost.as_deref(), Some("192.0.2.9"));
}

#[test]
fn given_code_from_a_clock_behind_or_ahead_then_its_offset_is_stored_and_logged() {
    for offset in [-1i64, 1] {
        let w = World::new();
        w.enrol("alice");
        let (v, _) = w.login("alice", &[&w.code(offset)]);
        let step = (NOW / 30).wrapping_add_signed(offset);
        assert_eq!(v.reason, Reason::AcceptedStep { step, offset });
        assert!(v
            .reason
            .to_string()
            .ends_with(&format!("(offset {offset})")));
        assert_eq!(w.state(&u("alice")).last_offset, Some(offset));
    }
}

#[test]
fn given_recovery_code_then_the_last_offset_is_kept() {
    let w = World::new();
    let mut r = w.enrol("alice");
    assert_eq!(w.login("alice", &[&w.code(-1)]).0.code, Code::Success);
    let code = "4fh7-k2m9-xq3p";
    r.recovery = vec![crate::recovery::hash(code).unwrap()];
    save(&w.t.store(), &r);
    assert_eq!(w.login("alice", &[code]).0.code, Code::Success);
    assert_eq!(w.state(&u("alice")).last_offset, Some(-1));
}

#[test]
fn given_very_long_rhost_then_success_is_stored_and_the_next_login_still_works() {
    let w = World::new();
    w.enrol("alice");
    let long = format!("{}\u{e9}", "h".repeat(MAX_STORED_RHOST - 1)) + &"x".repeat(10_000);
    for (offset, rhost) in [(0, long.as_str()), (1, "192.0.2.9")] {
        let mut conv = Script::answering(&[&w.code(offset)]);
        let req = Request {
            user: "alice",
            rhost: Some(rhost),
            options: &w.opts,
            owner: uid(),
            typed_ahead: None,
        };
        let v = authenticate(&mut conv, &w.sys, &req);
        assert_eq!(v.code, Code::Success, "{v:?}");
        let kept = w.state(&u("alice")).last_success.unwrap().rhost.unwrap();
        assert!(
            kept.len() <= MAX_STORED_RHOST && rhost.starts_with(&kept),
            "{kept}"
        );
    }
}

#[test]
fn given_replayed_code_then_login_fails_without_counting_a_failure() {
    let w = World::new();
    w.enrol("alice");
    let code = w.code(0);
    assert_eq!(w.login("alice", &[&code]).0.code, Code::Success);
    let (v, _) = w.login("alice", &[&code]);
    assert_eq!(v.code, Code::AuthErr);
    assert!(matches!(v.reason, Reason::Replay { .. }), "{}", v.reason);
    assert_eq!(w.state(&u("alice")).failures, 0);
}

#[test]
fn given_older_step_after_newer_was_used_then_replay() {
    let w = World::new();
    w.enrol("alice");
    assert_eq!(w.login("alice", &[&w.code(1)]).0.code, Code::Success);
    let (v, _) = w.login("alice", &[&w.code(0)]);
    assert!(matches!(v.reason, Reason::Replay { .. }), "{}", v.reason);
    let (v, _) = w.login("alice", &[&w.code(-1)]);
    assert!(matches!(v.reason, Reason::Replay { .. }), "{}", v.reason);
}

#[test]
fn given_window_edges_then_only_inside_codes_pass() {
    for (offset, ok) in [(-2i64, false), (-1, true), (1, true), (2, false)] {
        let w = World::new();
        w.enrol("alice");
        let (v, _) = w.login("alice", &[&w.code(offset)]);
        assert_eq!(v.code == Code::Success, ok, "offset {offset}: {v:?}");
    }
}

#[test]
fn given_window_0_then_previous_step_denied() {
    let mut w = World::new();
    w.opts.window = 0;
    w.enrol("alice");
    assert_eq!(w.login("alice", &[&w.code(-1)]).0.code, Code::AuthErr);
    assert_eq!(w.login("alice", &[&w.code(0)]).0.code, Code::Success);
}

#[test]
fn given_code_with_spaces_then_accepted() {
    let w = World::new();
    w.enrol("alice");
    let c = w.code(0);
    let spaced = format!(" {} {} ", &c[..3], &c[3..]);
    assert_eq!(w.login("alice", &[&spaced]).0.code, Code::Success);
}

#[test]
fn given_five_wrong_codes_then_locked_even_for_a_right_code_until_the_lock_ends() {
    let mut w = World::new();
    w.enrol("alice");
    for i in 1..=5 {
        let (v, _) = w.login("alice", &["000000"]);
        assert_eq!(v.code, Code::AuthErr);
        assert!(
            matches!(v.reason, Reason::WrongCode { failures, .. } if failures == i),
            "{}",
            v.reason
        );
    }
    assert_eq!(w.state(&u("alice")).locked_until, NOW + 60);
    let (v, conv) = w.login("alice", &[&w.code(0)]);
    assert_eq!(v.code, Code::AuthErr);
    assert!(matches!(v.reason, Reason::Locked { .. }), "{}", v.reason);
    assert_eq!(conv.prompts.len(), 1, "a locked user is still asked");
    assert_eq!(
        w.state(&u("alice")).failures,
        5,
        "throttled attempts are not counted"
    );
    w.sys.now = NOW + 60;
    assert_eq!(w.login("alice", &[&w.code(0)]).0.code, Code::Success);
    assert_eq!(w.state(&u("alice")).failures, 0);
    assert_eq!(w.state(&u("alice")).locked_until, 0);
}

#[test]
fn given_failure_after_lock_expired_then_lock_doubles() {
    let mut w = World::new();
    w.enrol("alice");
    for _ in 0..5 {
        w.login("alice", &["000000"]);
    }
    w.sys.now = NOW + 60;
    w.login("alice", &["000000"]);
    assert_eq!(w.state(&u("alice")).locked_until, NOW + 60 + 120);
}

#[test]
fn given_throttle_policy_then_it_is_used() {
    let w = World::new();
    w.enrol("alice");
    w.policy("version = 1\n[throttle]\nattempts = 2\nlock_seconds = 10\nmax_lock_seconds = 20\n");
    w.login("alice", &["000000"]);
    assert_eq!(w.state(&u("alice")).locked_until, 0);
    w.login("alice", &["000000"]);
    assert_eq!(w.state(&u("alice")).locked_until, NOW + 10);
}

#[test]
fn given_recovery_code_then_accepted_once_and_burned() {
    let w = World::new();
    let mut r = record("alice");
    r.recovery = vec![
        recovery::hash("abcd-efgh-jkmn").unwrap(),
        recovery::hash("2345-6789-abcd").unwrap(),
    ];
    save(&w.t.store(), &r);
    let (v, _) = w.login("alice", &["ABCD-EFGH-JKMN"]);
    assert_eq!(v.code, Code::Success, "{v:?}");
    assert_eq!(v.reason, Reason::AcceptedRecovery { left: 1 });
    assert_eq!(
        w.t.store()
            .record(&u("alice"))
            .unwrap()
            .unwrap()
            .recovery
            .len(),
        1
    );
    let (v, _) = w.login("alice", &["abcdefghjkmn"]);
    assert_eq!(v.code, Code::AuthErr);
    assert!(matches!(v.reason, Reason::WrongCode { .. }), "{}", v.reason);
}

#[test]
fn given_bad_input_then_denied_as_wrong_code() {
    let w = World::new();
    w.enrol("alice");
    let long = "1".repeat(10_000);
    for bad in ["12345", "123456789", "abcdef", long.as_str(), "12\u{0}456"] {
        let (v, _) = w.login("alice", &[bad]);
        assert_eq!(v.code, Code::AuthErr, "{bad:?}");
    }
    let mut conv = Script {
        answers: vec![vec![0xff, 0xfe, b'1']],
        ..Script::default()
    };
    let req = Request {
        user: "alice",
        rhost: None,
        options: &w.opts,
        owner: uid(),
        typed_ahead: None,
    };
    assert_eq!(authenticate(&mut conv, &w.sys, &req).code, Code::AuthErr);
}

#[test]
fn given_empty_answer_then_denied_and_not_counted() {
    let w = World::new();
    w.enrol("alice");
    let (v, _) = w.login("alice", &[""]);
    assert_eq!(v.code, Code::AuthErr);
    assert_eq!(w.state(&u("alice")).failures, 0);
}

#[test]
fn given_conversation_failure_then_conv_error() {
    let w = World::new();
    w.enrol("alice");
    assert_eq!(w.login("alice", &[]).0.code, Code::ConvErr);
}

#[test]
fn given_unenrolled_user_and_no_policy_then_ignored_without_prompt() {
    let w = World::new();
    let (v, conv) = w.login("bob", &[]);
    assert_eq!(v.code, Code::Ignore);
    assert_eq!(v.reason, Reason::NotRequired);
    assert!(conv.prompts.is_empty());
}

#[test]
fn given_pending_record_then_treated_as_not_enrolled() {
    let w = World::new();
    let mut r = record("alice");
    r.status = Status::Pending;
    save(&w.t.store(), &r);
    assert_eq!(w.login("alice", &[]).0.code, Code::Ignore);
}

#[test]
fn given_forced_reenrolment_pending_then_prompted_and_denied() {
    let w = World::new();
    let mut r = record("alice");
    r.status = Status::Pending;
    r.replaces_active = true;
    save(&w.t.store(), &r);
    let (v, conv) = w.login("alice", &[&w.code(0)]);
    assert_eq!(v.code, Code::AuthErr);
    assert_eq!(v.reason, Reason::ReenrolmentPending);
    assert_eq!(conv.prompts.len(), 1);
}

#[test]
fn given_invalid_user_name_then_denied() {
    let w = World::new();
    let (v, conv) = w.login("../../etc/shadow", &[]);
    assert_eq!(v.code, Code::AuthErr);
    assert!(
        matches!(v.reason, Reason::InvalidUserName(_)),
        "{}",
        v.reason
    );
    assert!(conv.prompts.is_empty());
}

#[test]
fn given_corrupt_state_then_unavailable_and_never_reset() {
    let w = World::new();
    w.enrol("alice");
    let p = w.t.users().join("alice.state");
    std::fs::write(&p, "garbage").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (v, conv) = w.login("alice", &[&w.code(0)]);
    assert_eq!(v.code, Code::AuthInfoUnavail);
    assert!(conv.prompts.is_empty());
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "garbage");
}

#[test]
fn given_world_readable_record_then_unavailable_with_reason() {
    let w = World::new();
    w.enrol("alice");
    std::fs::set_permissions(
        w.t.users().join("alice.toml"),
        std::fs::Permissions::from_mode(0o604),
    )
    .unwrap();
    let (v, _) = w.login("alice", &[&w.code(0)]);
    assert_eq!(v.code, Code::AuthInfoUnavail);
    assert!(
        v.reason.to_string().contains("bad permissions on"),
        "{}",
        v.reason
    );
}

#[test]
fn given_corrupt_policy_then_everyone_denied_with_service_error() {
    let w = World::new();
    w.enrol("alice");
    w.policy("version = 1\nrequire_al = true\n");
    for user in ["alice", "bob"] {
        let (v, _) = w.login(user, &[&w.code(0)]);
        assert_eq!(v.code, Code::ServiceErr, "{user}");
        assert!(
            matches!(v.reason, Reason::PolicyUnusable(ref e) if e.contains("require_al")),
            "{}",
            v.reason
        );
    }
}

#[test]
fn given_required_user_not_enrolled_then_prompted_and_denied() {
    let w = World::new();
    w.policy("version = 1\nrequire_users = [\"bob\"]\n");
    let (v, conv) = w.login("bob", &["123456"]);
    assert_eq!(v.code, Code::AuthErr);
    assert_eq!(v.reason, Reason::RequiredNotEnrolled(RequiredBy::User));
    assert_eq!(conv.prompts, vec!["Verification code: "]);
}

#[test]
fn given_required_group_then_members_required_and_exempt_wins() {
    let w = World::new();
    w.policy("version = 1\nrequire_groups = [\"wheel\"]\n");
    assert_eq!(
        w.login("alice", &["1"]).0.reason,
        Reason::RequiredNotEnrolled(RequiredBy::Group("wheel".into()))
    );
    assert_eq!(w.login("bob", &[]).0.code, Code::Ignore);
    w.policy("version = 1\nrequire_groups = [\"wheel\"]\nexempt_users = [\"alice\"]\n");
    assert_eq!(w.login("alice", &[]).0.code, Code::Ignore);
}

#[test]
fn given_enrolled_exempt_user_then_still_asked() {
    let w = World::new();
    w.enrol("alice");
    w.policy("version = 1\nexempt_users = [\"alice\"]\n");
    let (v, conv) = w.login("alice", &["000000"]);
    assert_eq!(v.code, Code::AuthErr);
    assert_eq!(conv.prompts.len(), 1);
}

#[test]
fn given_grace_then_notice_names_the_date_and_login_continues() {
    let mut w = World::new();
    w.policy("version = 1\nrequire_all = true\ngrace_until = 2027-02-01\n");
    let (v, conv) = w.login("bob", &[]);
    assert_eq!(v.code, Code::Ignore);
    assert!(
        conv.infos[0].contains("mandatory on 2027-02-01"),
        "{:?}",
        conv.infos
    );
    assert!(conv.prompts.is_empty());
    w.sys.now = timefmt::parse("2027-02-01").unwrap();
    assert_eq!(w.login("bob", &["1"]).0.code, Code::AuthErr);
}

#[test]
fn given_require_all_then_unknown_user_sees_exactly_what_an_enrolled_user_sees() {
    let w = World::new();
    w.enrol("alice");
    w.policy("version = 1\nrequire_all = true\n");
    let (a, ca) = w.login("alice", &["000000"]);
    let (g, cg) = w.login("ghost", &["000000"]);
    assert_eq!((a.code, g.code), (Code::AuthErr, Code::AuthErr));
    assert_eq!(ca.prompts, cg.prompts);
    assert_eq!(ca.infos, cg.infos);
}

/// Reads the key from the setup text the way a person (or a test) would.
fn key_from(infos: &[String]) -> Secret {
    let text = infos.join("\n");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Key: "))
        .expect("a Key: line");
    Secret::from_base32(line).unwrap()
}

struct EnrolScript {
    infos: Vec<String>,
    prompts: Vec<String>,
    now: u64,
    answer: Option<&'static str>,
}

impl Conversation for EnrolScript {
    fn prompt_hidden(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConvError> {
        self.prompts.push(prompt.to_string());
        if let Some(a) = self.answer {
            return Ok(Zeroizing::new(a.as_bytes().to_vec()));
        }
        let g = Generator::new(&key_from(&self.infos), Params::default());
        Ok(Zeroizing::new(
            g.code_at_step(self.now / 30).as_bytes().to_vec(),
        ))
    }
    fn info(&mut self, text: &str) -> Result<(), ConvError> {
        self.infos.push(text.to_string());
        Ok(())
    }
}

fn enrol_login(w: &World, user: &str, answer: Option<&'static str>) -> (Verdict, EnrolScript) {
    let mut conv = EnrolScript {
        infos: vec![],
        prompts: vec![],
        now: w.sys.now,
        answer,
    };
    let req = Request {
        user,
        rhost: None,
        options: &w.opts,
        owner: uid(),
        typed_ahead: None,
    };
    (authenticate(&mut conv, &w.sys, &req), conv)
}

#[test]
fn given_enroll_at_login_then_key_is_shown_and_correct_code_enrols() {
    let w = World::new();
    w.policy("version = 1\nrequire_all = true\nenroll_at_login = true\n");
    let (v, conv) = enrol_login(&w, "bob", None);
    assert_eq!(v.code, Code::Success, "{v:?}");
    let text = conv.infos.join("\n");
    assert!(
        text.contains("otpauth://totp/testhost:bob?secret="),
        "{text}"
    );
    assert!(text.contains("Recovery codes"));
    assert!(text.contains('▀') || text.contains('█'));
    let r = w.t.store().record(&u("bob")).unwrap().unwrap();
    assert_eq!(r.status, Status::Active);
    assert_eq!(r.secret, key_from(&conv.infos));
    assert_eq!(r.recovery.len(), 10);
    assert_eq!(w.state(&u("bob")).last_step, Some(NOW / 30));
    // Next login asks for a code of the new key; the enrolment code is spent.
    let g = Generator::new(&r.secret, r.params);
    let (v, _) = w.login("bob", &[&g.code_at_step(NOW / 30)]);
    assert!(matches!(v.reason, Reason::Replay { .. }), "{v:?}");
}

#[test]
fn given_enroll_at_login_and_wrong_code_then_denied_and_nothing_stored() {
    let w = World::new();
    w.policy("version = 1\nrequire_all = true\nenroll_at_login = true\n");
    let (v, _) = enrol_login(&w, "bob", Some("000000"));
    assert_eq!(v.code, Code::AuthErr);
    assert_eq!(w.t.store().record(&u("bob")).unwrap(), None);
}

#[test]
fn given_enroll_at_login_during_grace_then_empty_answer_skips() {
    let w = World::new();
    w.policy("version = 1\nrequire_all = true\nenroll_at_login = true\ngrace_until = 2027-02-01\n");
    let (v, conv) = enrol_login(&w, "bob", Some(""));
    assert_eq!(v.code, Code::Ignore);
    assert!(conv
        .infos
        .last()
        .unwrap()
        .contains("mandatory on 2027-02-01"));
    assert_eq!(w.t.store().record(&u("bob")).unwrap(), None);
}

#[test]
fn given_enroll_at_login_after_grace_then_empty_answer_denied() {
    let w = World::new();
    w.policy("version = 1\nrequire_all = true\nenroll_at_login = true\ngrace_until = 2027-01-01\n");
    assert_eq!(enrol_login(&w, "bob", Some("")).0.code, Code::AuthErr);
}

#[test]
fn given_enroll_at_login_then_unknown_user_gets_the_plain_prompt_and_denial() {
    let w = World::new();
    w.policy("version = 1\nrequire_all = true\nenroll_at_login = true\n");
    let (v, conv) = enrol_login(&w, "ghost", Some("123456"));
    assert_eq!(v.code, Code::AuthErr);
    assert!(conv.infos.is_empty());
    assert_eq!(conv.prompts, vec!["Verification code: "]);
    assert!(w.t.store().users().unwrap().is_empty());
}

#[test]
fn given_enroll_at_login_then_pending_cli_record_is_replaced() {
    let w = World::new();
    w.policy("version = 1\nrequire_all = true\nenroll_at_login = true\n");
    let mut r = record("bob");
    r.status = Status::Pending;
    save(&w.t.store(), &r);
    let (v, conv) = enrol_login(&w, "bob", None);
    assert_eq!(v.code, Code::Success);
    assert_eq!(
        w.t.store().record(&u("bob")).unwrap().unwrap().secret,
        key_from(&conv.infos)
    );
}

#[test]
fn given_required_but_unenrolled_then_the_decoy_does_the_file_work_and_no_user_file_appears() {
    let w = World::new();
    w.policy("version = 1\nrequire_all = true\n");
    assert_eq!(w.login("ghost", &["123456"]).0.code, Code::AuthErr);
    let mut names: Vec<String> = std::fs::read_dir(w.t.users())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec![".decoy.lock", ".decoy.state"]);
    assert!(w.t.store().users().unwrap().is_empty());
}

#[test]
fn given_missing_state_or_users_directory_then_denied_fail_closed() {
    let mut w = World::new();
    w.opts.dir = w.t.path().join("no-such-dir");
    let (v, conv) = w.login("bob", &[]);
    assert_eq!(v.code, Code::AuthInfoUnavail);
    assert!(
        matches!(v.reason, Reason::Store(ref e) if e.contains("no-such-dir")),
        "{}",
        v.reason
    );
    assert!(conv.prompts.is_empty());
    let w = World::new();
    std::fs::remove_dir(w.t.users()).unwrap();
    assert_eq!(w.login("bob", &[]).0.code, Code::AuthInfoUnavail);
}

#[test]
fn given_a_spelling_the_user_database_maps_to_another_name_then_denied() {
    let w = World::new();
    w.enrol("alice");
    let (v, conv) = w.login("ALICE", &["123456"]);
    assert_eq!(v.code, Code::AuthErr);
    assert!(
        matches!(v.reason, Reason::NotCanonicalName { ref canonical, .. } if canonical == "alice"),
        "{}",
        v.reason
    );
    assert!(conv.prompts.is_empty());
}

#[test]
fn given_untrusted_state_directory_then_still_unavailable() {
    let w = World::new();
    std::fs::set_permissions(w.t.state(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(w.login("bob", &[]).0.code, Code::AuthInfoUnavail);
}

#[test]
fn given_a_record_under_another_spelling_of_a_user_then_even_its_right_code_is_denied() {
    // The user database maps "ALICE" to alice; a stale "ALICE" record (an import's spelling, a
    // typo) must not become a second way into alice's account, e.g. after her own record was
    // revoked and re-enrolled.
    let w = World::new();
    w.enrol("ALICE");
    let (v, conv) = w.login("ALICE", &[&w.code(0)]);
    assert_eq!(v.code, Code::AuthErr, "{v:?}");
    assert!(
        matches!(v.reason, Reason::NotCanonicalName { ref canonical, .. } if canonical == "alice"),
        "{}",
        v.reason
    );
    assert_eq!(conv.prompts.len(), 1);
    let code = w.code(1);
    assert_eq!(
        w.login("alice", &[&code]).0.code,
        Code::Ignore,
        "alice has no record"
    );
    // Nothing was used up by the denied login: the state has no accepted step.
    assert_eq!(w.state(&u("ALICE")).last_step, None);
}

#[test]
fn given_another_spelling_of_a_user_then_no_policy_path_lets_it_in() {
    let w = World::new();
    for policy in [
        "version = 1\n",
        "version = 1\nrequire_all = true\ngrace_until = 2027-02-01\n",
        "version = 1\nrequire_all = true\nenroll_at_login = true\n",
        "version = 1\nrequire_all = true\n",
    ] {
        w.policy(policy);
        let (v, _) = w.login("ALICE", &["123456"]);
        assert_eq!(v.code, Code::AuthErr, "{policy}: {v:?}");
    }
}

#[test]
fn given_a_right_code_then_the_attempt_is_counted_before_the_user_database_is_asked() {
    let mut w = World::new();
    w.enrol("alice");
    w.sys.probe = Some((w.t.state(), Default::default()));
    let (v, _) = w.login("alice", &[&w.code(0)]);
    assert_eq!(v.code, Code::Success, "{v:?}");
    let seen = w.sys.probe.as_ref().unwrap().1.borrow().clone();
    // Interrupted at the lookup, a right code leaves the same counted failure a wrong one does.
    assert_eq!(seen, vec![1]);
    assert_eq!(w.state("alice").failures, 0);
}
