//! PAM-level tests of the policy (SPEC §3 steps 3–5, §6; issue 5): every row of the
//! decision table that a login can show, through the real libpam.
//!
//! Each test runs its logins in a private mount namespace (`tests/lib/sandbox.sh`)
//! where copies of /etc/passwd and /etc/group, extended with the fixture users and
//! groups below, are bind-mounted over the real ones, so the module resolves users
//! and groups through NSS (`getpwnam` + `getgrouplist`) exactly as in production.
//! The host's files are never written; every test checks that their SHA-256 is the
//! same at its end as at its start.
//!
//! | user      | primary group | supplementary | role in the tests                    |
//! |-----------|---------------|---------------|--------------------------------------|
//! | `alice`   | `alice`       | `wheel`       | require_groups via supplementary     |
//! | `bob`     | `ops`         | —             | require_groups via primary           |
//! | `carol`   | `carol`       | —             | in no special group                  |
//! | `svc`     | `svc`         | `robots`      | exempt group                         |
//! | `mallory` | not in NSS    |               | unknown user                         |
//!
//! Every stack is `auth [success=done ignore=ignore default=die] pam_totp.so ...`
//! followed by `pam_echo MODULE-RETURNED-IGNORE` and `pam_permit`, so that a
//! `PAM_IGNORE` from the module is visible. Codes come from `oathtool` only.
//! Enrolment at login has its own file, `pam_policy_enrol.rs`; both share this fixture and
//! the assertions through `common/policy_fixture.rs`.
//! The enumeration test prints timing medians (`-- --show-output` shows them).
//!
//! Needs root; without it every test prints a notice and passes. See
//! `common/env.rs` for the module path and the `PAM_TOTP_TEST_VERBOSE` and
//! `PAM_TOTP_KEEP_TMP` switches.

mod common;

#[path = "common/policy_fixture.rs"]
mod policy_fixture;

use common::*;
use policy_fixture::*;
use std::fs;
use std::os::unix::fs::{chown, symlink};
use std::path::Path;
use std::thread;
use std::time::Duration;

/// The transcript with the value of `FAIL_DELAY:<usec> <result>` lines replaced:
/// libpam randomises the delay a module requests (by up to ±50 %), so only the
/// line's presence and result can be compared.
fn without_delay_jitter(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| match l.strip_prefix("FAIL_DELAY:") {
            Some(rest) => {
                let (usec, result) = rest.split_once(' ').unwrap_or((rest, ""));
                assert!(usec.parse::<u64>().is_ok(), "odd line {l:?}");
                format!("FAIL_DELAY:<randomised by libpam> {result}")
            }
            None => l.clone(),
        })
        .collect()
}

fn median_ms(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------
// The fixture itself
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_nss_fixture_then_sandbox_resolves_primary_and_supplementary_groups() {
    let f = fixture!("nss_fixture");
    let id = |args: &[&str]| {
        let out = f
            .sandboxed(Path::new("/usr/bin/id"))
            .args(args)
            .output()
            .expect("run id in the sandbox");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    assert_eq!(id(&["-Gn", "alice"]), (true, "alice wheel".to_string()));
    assert_eq!(id(&["-Gn", "bob"]), (true, "ops".to_string()));
    assert_eq!(id(&["-Gn", "carol"]), (true, "carol".to_string()));
    assert_eq!(id(&["-Gn", "svc"]), (true, "svc robots".to_string()));
    assert!(!id(&["-u", UNKNOWN]).0, "{UNKNOWN} must be unknown to NSS");
    // Outside the namespace the host's files are what they were.
    let host = fs::read_to_string("/etc/group").expect("read /etc/group");
    assert!(
        !host.contains("robots:x:61103:svc"),
        "host /etc/group changed"
    );
}

// ---------------------------------------------------------------------------
// Not required (SPEC §3 step 3)
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_no_policy_file_then_unenrolled_user_is_ignored() {
    let f = fixture!("no_policy");
    for user in ["carol", "alice", UNKNOWN] {
        let o = f.login(user, &[]);
        expect_ignored_silently(&o);
        o.expect_logged(&["not enrolled, not required"]);
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_policy_requiring_nobody_then_unenrolled_users_are_ignored() {
    let f = fixture!("policy_nobody");
    f.policy("version = 1\n");
    for user in ["alice", "bob", "carol", "svc", UNKNOWN] {
        expect_ignored_silently(&f.login(user, &[]));
    }
}

// ---------------------------------------------------------------------------
// Required but not enrolled, no grace, no enrolment at login (step 4: deny)
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_require_all_then_unenrolled_user_denied_after_prompt() {
    let f = fixture!("require_all");
    f.policy("version = 1\nrequire_all = true\n");
    for user in ["carol", "alice", "bob"] {
        let o = f.login(user, &["123456"]);
        expect_denied_after_prompt(&o);
        o.expect_logged(&["not enrolled, required by require_all"]);
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_require_users_then_listed_user_denied_and_others_ignored() {
    let f = fixture!("require_users");
    f.policy("version = 1\nrequire_users = [\"carol\"]\n");
    let o = f.login("carol", &["123456"]);
    expect_denied_after_prompt(&o);
    o.expect_logged(&["required by require_users"]);
    for user in ["alice", "bob", UNKNOWN] {
        expect_ignored_silently(&f.login(user, &[]));
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_require_groups_and_supplementary_member_then_denied_without_enrolment() {
    let f = fixture!("require_groups_supplementary");
    f.policy("version = 1\nrequire_groups = [\"wheel\"]\n");
    let o = f.login("alice", &["123456"]);
    expect_denied_after_prompt(&o);
    o.expect_logged(&["required by require_groups:wheel"]);
    // Not members: ignored, and so is a user NSS does not know.
    for user in ["bob", "carol", UNKNOWN] {
        expect_ignored_silently(&f.login(user, &[]));
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_require_groups_and_primary_member_then_denied_without_enrolment() {
    let f = fixture!("require_groups_primary");
    f.policy("version = 1\nrequire_groups = [\"ops\"]\n");
    let o = f.login("bob", &["123456"]);
    expect_denied_after_prompt(&o);
    o.expect_logged(&["required by require_groups:ops"]);
    for user in ["alice", "carol", UNKNOWN] {
        expect_ignored_silently(&f.login(user, &[]));
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_pending_record_and_required_then_treated_as_not_enrolled() {
    let f = fixture!("pending_required");
    f.policy("version = 1\nrequire_users = [\"carol\"]\n");
    let mut rec = Record::new("carol");
    rec.state = "pending";
    f.write_record(&rec);
    settle(rec.period);
    // Even the pending key's current code does not let carol in.
    let o = f.login("carol", &[&code_offset(&rec, 0)]);
    expect_denied_after_prompt(&o);
    o.expect_logged(&["not enrolled, required by require_users"]);
}

// ---------------------------------------------------------------------------
// Exemptions
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_exempt_users_and_groups_then_exemption_wins_over_require_rules() {
    let f = fixture!("exemptions");
    // (policy, users that must be ignored, users that must be denied)
    let table: &[(&str, &[&str], &[&str])] = &[
        (
            "version = 1\nrequire_all = true\nexempt_users = [\"carol\"]\n\
             exempt_groups = [\"robots\"]\n",
            &["carol", "svc"],
            &["alice", "bob", UNKNOWN],
        ),
        (
            "version = 1\nrequire_users = [\"carol\", \"svc\"]\n\
             require_groups = [\"wheel\", \"ops\"]\n\
             exempt_users = [\"alice\", \"carol\"]\nexempt_groups = [\"robots\"]\n",
            &["alice", "carol", "svc"],
            &["bob"],
        ),
        (
            // Exempt through a supplementary and through a primary group.
            "version = 1\nrequire_groups = [\"wheel\", \"ops\"]\n\
             exempt_groups = [\"wheel\", \"ops\"]\n",
            &["alice", "bob"],
            &[],
        ),
    ];
    for (policy, ignored, denied) in table {
        f.policy(policy);
        for user in *ignored {
            let o = f.login(user, &["123456"]);
            assert!(
                o.has_line(&ignored_mark()) && o.prompts().is_empty(),
                "{user} under\n{policy}\nmust be ignored\n{}",
                o.describe()
            );
            o.expect_result("PAM_SUCCESS")
                .expect_logged(&["not enrolled, not required"]);
        }
        for user in *denied {
            let o = f.login(user, &["123456"]);
            assert_eq!(
                (o.result.as_str(), o.prompts()),
                ("PAM_AUTH_ERR", vec!["Verification code: "]),
                "{user} under\n{policy}\nmust be asked and denied\n{}",
                o.describe()
            );
        }
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_enrolled_exempt_user_then_still_asked_for_a_code() {
    let f = fixture!("enrolled_exempt");
    f.policy(
        "version = 1\nrequire_all = true\nexempt_users = [\"svc\"]\n\
         exempt_groups = [\"robots\"]\n",
    );
    let rec = f.enrol("svc");
    let o = f.login("svc", &[&wrong_code(&rec, 2)]);
    expect_denied_after_prompt(&o);
    o.expect_logged(&["wrong code"]);
    // Without an answer: asked, and not let through.
    let o = f.login("svc", &[]);
    o.expect_prompted().expect_denied();
    settle(rec.period);
    let o = f.login("svc", &[&code_offset(&rec, 0)]);
    o.expect_result("PAM_SUCCESS")
        .expect_prompted()
        .expect_logged(&["accepted step"]);
    assert!(!o.has_line(&ignored_mark()), "{}", o.describe());
}

// ---------------------------------------------------------------------------
// Grace
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_grace_before_deadline_then_notice_names_the_date_and_login_continues() {
    let f = fixture!("grace_ahead");
    let date = utc_date(now() + 14 * DAY);
    for grace in [date.clone(), format!("{date}T00:00:00Z")] {
        f.policy(&format!(
            "version = 1\nrequire_groups = [\"wheel\"]\ngrace_until = {grace}\n"
        ));
        let o = f.login("alice", &[]);
        expect_ignored(&o);
        assert!(o.prompts().is_empty(), "no prompt\n{}", o.describe());
        let shown = infos(&o);
        assert!(
            shown
                .iter()
                .any(|l| l.contains(&format!("becomes mandatory on {date}"))),
            "grace_until = {grace}: expected a notice naming {date}\n{}",
            o.describe()
        );
        o.expect_logged(&[&format!("grace until {date}")]);
        // Users not required see nothing.
        expect_ignored_silently(&f.login("carol", &[]));
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_grace_deadline_passed_then_denied_after_prompt() {
    let f = fixture!("grace_passed");
    let date = utc_date(now() - DAY);
    f.policy(&format!(
        "version = 1\nrequire_groups = [\"wheel\"]\ngrace_until = {date}\n"
    ));
    let o = f.login("alice", &["123456"]);
    expect_denied_after_prompt(&o);
    o.expect_logged(&["required by require_groups:wheel"]);
}

// ---------------------------------------------------------------------------
// A policy that cannot be used denies everyone (fail closed)
// ---------------------------------------------------------------------------

/// Every user, enrolled (with a correct code) or not, known to NSS or not, gets
/// PAM_SERVICE_ERR with a log line naming `path` (the file or directory at fault).
#[track_caller]
fn expect_everyone_refused(f: &Fixture, path: &Path, what: &str) {
    let alice = Record::new("alice");
    f.write_record(&alice);
    settle(alice.period);
    let code = code_offset(&alice, 0);
    for user in ["alice", "bob", "carol", "svc", UNKNOWN] {
        let o = f.login(user, &[&code]);
        assert_eq!(
            o.result,
            "PAM_SERVICE_ERR",
            "{what}: {user} must be refused\n{}",
            o.describe()
        );
        assert!(
            !o.has_line(&ignored_mark()) && o.prompts().is_empty(),
            "{what}: no prompt, no PAM_IGNORE\n{}",
            o.describe()
        );
        o.expect_logged(&[&path.display().to_string()]);
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_policy_with_unknown_key_then_service_error_for_every_user() {
    let f = fixture!("policy_unknown_key");
    for text in [
        "version = 1\nrequire_everyone = true\n",
        "version = 1\n[throttle]\nburst = 3\n",
    ] {
        let path = f.policy(text);
        expect_everyone_refused(&f, &path, text);
        let key = if text.contains("burst") {
            "burst"
        } else {
            "require_everyone"
        };
        assert!(
            f.all_logs().iter().any(|l| l.contains(key)),
            "the log should name the key {key}"
        );
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_policy_with_bad_grace_date_then_service_error_for_every_user() {
    let f = fixture!("policy_bad_date");
    for date in [
        "2026-02-30",
        "2026-12-31T00:00:00",
        "\"next monday\"",
        "31.12.2026",
    ] {
        let text = format!("version = 1\nrequire_all = true\ngrace_until = {date}\n");
        let path = f.policy(&text);
        expect_everyone_refused(&f, &path, &text);
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_policy_of_another_version_then_service_error_for_every_user() {
    let f = fixture!("policy_version");
    for text in ["version = 2\n", "require_all = true\n", "version = \"1\"\n"] {
        let path = f.policy(text);
        expect_everyone_refused(&f, &path, text);
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_policy_with_invalid_throttle_then_service_error_for_every_user() {
    let f = fixture!("policy_bad_throttle");
    for text in [
        "version = 1\n[throttle]\nattempts = 0\n",
        "version = 1\n[throttle]\nlock_seconds = 100\nmax_lock_seconds = 50\n",
    ] {
        let path = f.policy(text);
        expect_everyone_refused(&f, &path, text);
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_group_writable_policy_file_then_service_error_for_every_user() {
    let f = fixture!("policy_group_writable");
    let path = f.policy("version = 1\n");
    for mode in [0o664, 0o646] {
        set_mode(&path, mode);
        expect_everyone_refused(&f, &path, &format!("mode {mode:o}"));
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_symlinked_policy_file_then_service_error_for_every_user() {
    let f = fixture!("policy_symlink");
    let real = f.root.join("real-policy.toml");
    write_file(&real, b"version = 1\n", 0o644);
    let path = f.root.join("policy.toml");
    symlink(&real, &path).expect("symlink policy");
    f.use_policy(&path);
    f.pam_observe_ignore("");
    expect_everyone_refused(&f, &path, "symlinked policy");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_policy_in_group_writable_directory_then_service_error_for_every_user() {
    let f = fixture!("policy_dir_group_writable");
    let dir = f.root.join("etc-pam-totp");
    fs::create_dir(&dir).expect("mkdir");
    set_mode(&dir, 0o775);
    let path = dir.join("policy.toml");
    write_file(&path, b"version = 1\n", 0o644);
    f.use_policy(&path);
    f.pam_observe_ignore("");
    // The log names the directory at fault (and says it is the policy).
    expect_everyone_refused(&f, &dir, "policy in a group-writable directory");
    assert!(
        f.all_logs()
            .iter()
            .all(|l| !l.contains("user=") || l.contains("policy")),
        "every denial should say that the policy is unusable"
    );
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_policy_owned_by_another_user_or_not_a_file_then_service_error_for_every_user() {
    let f = fixture!("policy_foreign");
    let path = f.policy("version = 1\n");
    chown(&path, Some(65534), Some(65534)).expect("chown");
    expect_everyone_refused(&f, &path, "policy owned by nobody");
    fs::remove_file(&path).expect("rm policy");
    fs::create_dir(&path).expect("mkdir policy");
    expect_everyone_refused(&f, &path, "policy is a directory");
}

// ---------------------------------------------------------------------------
// Throttle settings from [throttle]
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_throttle_attempts_2_then_locked_after_two_wrong_codes() {
    let f = fixture!("throttle_policy");
    f.policy("version = 1\n\n[throttle]\nattempts = 2\nlock_seconds = 4\nmax_lock_seconds = 4\n");
    let rec = f.enrol("alice");
    settle(rec.period);
    let o = f.login("alice", &[&wrong_code(&rec, 2)]);
    o.expect_result("PAM_AUTH_ERR")
        .expect_logged(&["wrong code (failure 1)"]);
    assert!(
        !o.logged("locked"),
        "one failure must not lock\n{}",
        o.describe()
    );
    f.login("alice", &[&wrong_code(&rec, 2)])
        .expect_result("PAM_AUTH_ERR")
        .expect_logged(&["wrong code (failure 2); locked until"]);
    let locked_at = std::time::Instant::now();
    // Locked: asked, and the correct code is refused unchecked.
    let o = f.login("alice", &[&code_offset(&rec, 0)]);
    expect_denied_after_prompt(&o);
    o.expect_logged(&["locked until"]);
    assert!(
        locked_at.elapsed() < Duration::from_secs(2),
        "the locked login came too late to prove anything"
    );
    // lock_seconds = 4: afterwards the correct code is accepted.
    thread::sleep(Duration::from_millis(4_300).saturating_sub(locked_at.elapsed()));
    f.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

// ---------------------------------------------------------------------------
// No user enumeration under require_all (SPEC §3 step 5)
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_require_all_then_unknown_unenrolled_and_wrong_code_logins_look_identical() {
    let f = fixture!("enumeration");
    // Many attempts, so that the enrolled user's wrong codes never reach the lock.
    f.policy("version = 1\nrequire_all = true\n\n[throttle]\nattempts = 1000\n");
    let alice = f.enrol("alice");
    let wrong = wrong_code(&alice, 2);
    let cases = [
        ("unknown to NSS", UNKNOWN),
        ("required, not enrolled", "carol"),
        ("enrolled, wrong code", "alice"),
    ];
    const RUNS: usize = 5;
    // Per case: whole login, start to prompt, answer to RESULT.
    let mut times: Vec<[Vec<Duration>; 3]> = vec![Default::default(); cases.len()];
    let mut reference: Option<(&str, Vec<String>)> = None;
    for run in 0..RUNS {
        // A different order each run, so that no case always runs first or last.
        for k in 0..cases.len() {
            let i = (k + run) % cases.len();
            let (what, user) = cases[i];
            let mut s = f.start(user);
            s.read_until_prompt();
            s.answer(&wrong);
            let started = s.started;
            let (o, to_prompt, after_answer) = s.finish_timed(&f);
            times[i][0].push(started.elapsed());
            times[i][1].push(to_prompt.expect("prompted"));
            times[i][2].push(after_answer.expect("answered and got a RESULT"));
            o.expect_result("PAM_AUTH_ERR");
            let lines = without_delay_jitter(&o.lines);
            match &reference {
                None => reference = Some((what, lines)),
                Some((first, reference)) => assert_eq!(
                    &lines,
                    reference,
                    "the transcript for \"{what}\" differs from the one for \"{first}\"\n{}",
                    o.describe()
                ),
            }
        }
    }
    let (_, lines) = reference.expect("ran");
    assert_eq!(lines.first().map(String::as_str), Some(PROMPT), "{lines:?}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("RESULT:PAM_AUTH_ERR 7")
    );

    println!(
        "login timing under require_all (harness through sandbox.sh, libpam's fail delay \
         not slept), median of {RUNS} runs each:"
    );
    for (i, (what, user)) in cases.iter().enumerate() {
        let [whole, to_prompt, after_answer] = &mut times[i];
        println!(
            "  {what:<24} ({user:<7}): whole login {:7.2} ms, start to prompt {:7.2} ms, \
             answer to RESULT {:6.3} ms",
            median_ms(whole),
            median_ms(to_prompt),
            median_ms(after_answer)
        );
    }
}
