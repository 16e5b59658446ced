//! The caller's resource limits and signal dispositions (issue 12, F1/F2): `su` and `sudo` run
//! PAM with the invoking user's limits, and an ignored `SIGXFSZ` survives their setuid exec.
//! Every write the module makes (journal append, journal compaction, record rewrite when a
//! recovery code is burned, the state of a right code) is tried here with the harness started
//! under `prlimit --fsize=0` — with `SIGXFSZ` ignored and with it at its default — and, where
//! the limit cannot be lifted (no `CAP_SYS_RESOURCE`), over a sweep of limits around the state's
//! size: the outcome never tells a right code from a wrong one, and no limit lets guesses go
//! uncounted while a right code still gets in.
//!
//! Needs root, like the other PAM-level tests; without it each test says it was skipped.

mod common;

use common::*;
use std::fs;

/// As an unprivileged caller of a setuid program would have it: file size limit `soft` with
/// the hard limit left unlimited (`ulimit -S -f`), `SIGXFSZ` ignored or default. The module
/// lifts a soft limit up to the hard one without privilege.
fn caller_limit(env: &TestEnv, soft: u64, ignore_xfsz: bool) {
    let trap = if ignore_xfsz { "trap '' XFSZ;" } else { "" };
    *env.launcher.lock().expect("launcher lock") = vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("{trap} exec prlimit --fsize={soft}:unlimited -- \"$@\""),
        "sh".into(),
    ];
}

/// Soft and hard limit `limit` (`ulimit -f`), `SIGXFSZ` ignored, and no `CAP_SYS_RESOURCE`
/// (dropped from the bounding set, which is what root's capabilities are after exec): the
/// module cannot lift the limit.
fn caller_limit_unliftable(env: &TestEnv, limit: u64) {
    *env.launcher.lock().expect("launcher lock") = vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "trap '' XFSZ; exec prlimit --fsize={limit}:{limit} -- \
             setpriv --bounding-set=-sys_resource -- \"$@\""
        ),
        "sh".into(),
    ];
}

fn no_launcher(env: &TestEnv) {
    env.launcher.lock().expect("launcher lock").clear();
}

/// `failures` in the state's last journal line (0 without a state file).
fn failures(env: &TestEnv, user: &str) -> u32 {
    let Ok(text) = fs::read_to_string(env.state_path(user)) else {
        return 0;
    };
    let last = text.lines().last().unwrap_or("");
    last.split(' ')
        .find_map(|f| f.strip_prefix("f="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_caller_file_size_limit_0_then_a_right_code_logs_in_once_and_wrong_codes_count() {
    for ignore_xfsz in [true, false] {
        let env = test_env!("fsize0");
        let rec = Record::new("alice");
        env.write_record(&rec);
        caller_limit(&env, 0, ignore_xfsz);
        settle(rec.period);
        for n in 1..=2 {
            env.login("alice", &[&wrong_code(&rec, 3)])
                .expect_denied()
                .expect_logged(&[&format!("wrong code (failure {n})")]);
        }
        assert_eq!(failures(&env, "alice"), 2, "both failures must be on disk");
        let code = code_offset(&rec, 0);
        env.login("alice", &[&code])
            .expect_result("PAM_SUCCESS")
            .expect_logged(&["accepted step"]);
        // The step was stored under the caller's limit: the same code is now a replay, also
        // with ordinary limits.
        no_launcher(&env);
        env.login("alice", &[&code])
            .expect_denied()
            .expect_logged(&["replayed code"]);
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_caller_file_size_limit_0_then_the_journal_is_compacted_and_a_recovery_code_burned() {
    let env = test_env!("fsize0_rewrites");
    let mut rec = Record::new("alice");
    let recovery = new_recovery_code();
    rec.recovery = vec![recovery_entry(&recovery)];
    env.write_record(&rec);
    caller_limit(&env, 0, true);
    settle(rec.period);
    // Enough wrong codes to pass the journal's size limit: compaction rewrites the file.
    // (The throttle locks after 5; locked attempts are not counted and write nothing, so a
    // throttle of many attempts is used.)
    let policy = env.root.join("policy.toml");
    write_file(
        &policy,
        b"version = 1\n[throttle]\nattempts = 1000\nlock_seconds = 1\nmax_lock_seconds = 1\n",
        0o644,
    );
    env.use_policy(&policy);
    env.pam("");
    let (mut compacted, mut lines_before) = (false, 0);
    for n in 1..=60u32 {
        env.login("alice", &[&wrong_code(&rec, 3)]).expect_denied();
        assert_eq!(failures(&env, "alice"), n, "failure {n} must be on disk");
        let lines = fs::read_to_string(env.state_path("alice"))
            .unwrap()
            .lines()
            .count();
        compacted |= lines < lines_before;
        lines_before = lines;
    }
    assert!(
        compacted,
        "the journal was never compacted under the caller's limit"
    );
    env.login("alice", &[&recovery])
        .expect_result("PAM_SUCCESS")
        .expect_logged(&["accepted recovery code (0 left)"]);
    let text = fs::read_to_string(env.record_path("alice")).unwrap();
    assert!(
        !text.contains("sha256:"),
        "the code must be burned:\n{text}"
    );
    no_launcher(&env);
    env.login("alice", &[&recovery]).expect_denied();
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_a_limit_the_module_cannot_lift_then_a_right_code_is_denied_exactly_like_a_wrong_one() {
    let env = test_env!("fsize_unliftable");
    let rec = Record::new("alice");
    env.write_record(&rec);
    settle(rec.period);
    // A state file to append to.
    env.login("alice", &[&wrong_code(&rec, 3)]).expect_denied();
    caller_limit_unliftable(&env, 0);
    let right = env.login("alice", &[&code_offset(&rec, 0)]);
    let wrong = env.login("alice", &[&wrong_code(&rec, 3)]);
    for o in [&right, &wrong] {
        o.expect_result("PAM_AUTH_ERR")
            .expect_logged(&["code not checked: cannot count the attempt"]);
    }
    assert_eq!(
        right.prompts(),
        wrong.prompts(),
        "the conversation must not differ"
    );
    assert_eq!(
        right
            .lines
            .iter()
            .filter(|l| !l.starts_with("PROMPT"))
            .count(),
        wrong
            .lines
            .iter()
            .filter(|l| !l.starts_with("PROMPT"))
            .count(),
        "right:\n{}\nwrong:\n{}",
        right.describe(),
        wrong.describe()
    );
    // Nothing was judged, so nothing was consumed: with the caller's limits gone the same
    // code works (the attacker learnt nothing from either attempt).
    no_launcher(&env);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_any_limit_near_the_state_size_then_no_guess_goes_uncounted_while_a_right_code_gets_in() {
    let env = test_env!("fsize_sweep");
    let rec = Record::new("alice");
    env.write_record(&rec);
    settle(rec.period);
    // Four counted failures: the next one locks, so its entry is longer than a success entry.
    for _ in 0..4 {
        env.login("alice", &[&wrong_code(&rec, 3)]).expect_denied();
    }
    no_launcher(&env);
    let state = fs::read(env.state_path("alice")).unwrap();
    let size = state.len() as u64;
    for limit in (size..size + 260).step_by(13) {
        // A wrong code under this limit, from the same state.
        env.write_state("alice", std::str::from_utf8(&state).unwrap());
        caller_limit_unliftable(&env, limit);
        let wrong = env.login("alice", &[&wrong_code(&rec, 3)]);
        no_launcher(&env);
        let counted = failures(&env, "alice") == 5;
        // A right code under the same limit, from the same state.
        env.write_state("alice", std::str::from_utf8(&state).unwrap());
        caller_limit_unliftable(&env, limit);
        let right = env.login("alice", &[&code_offset(&rec, 0)]);
        no_launcher(&env);
        for o in [&wrong, &right] {
            assert!(
                matches!(o.result.as_str(), "PAM_AUTH_ERR" | "PAM_SUCCESS"),
                "limit {limit}: {}",
                o.describe()
            );
        }
        wrong.expect_result("PAM_AUTH_ERR");
        assert!(
            counted || right.result == "PAM_AUTH_ERR",
            "limit {limit}: a wrong code went uncounted but a right code got in\nwrong:\n{}\nright:\n{}",
            wrong.describe(),
            right.describe()
        );
        if right.result != "PAM_SUCCESS" {
            right.expect_logged(&["code not checked", "(counted as failure 5)"]);
        }
        // Move on to the next step's code for the next limit: this one may have been used.
        env.write_state("alice", std::str::from_utf8(&state).unwrap());
    }
}

/// Temp files of the user's state or record in `users/`.
fn temp_files(env: &TestEnv) -> Vec<String> {
    fs::read_dir(&env.users)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.contains(".tmp"))
        .collect()
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_torn_journal_and_a_tiny_limit_with_default_sigxfsz_then_each_attempt_is_logged_and_no_temp_file_stays(
) {
    let env = test_env!("torn_tiny_limit");
    let rec = Record::new("alice");
    env.write_record(&rec);
    settle(rec.period);
    env.login("alice", &[&wrong_code(&rec, 3)]).expect_denied();
    // A journal whose last append was torn: the next write must rewrite it (temp + rename).
    let mut text = fs::read_to_string(env.state_path("alice")).unwrap();
    text.push_str("s=- f=2 l=0");
    env.write_state("alice", &text);
    caller_limit(&env, 8, false);
    for n in 2..=4 {
        let o = env.login("alice", &[&wrong_code(&rec, 3)]);
        o.expect_denied()
            .expect_logged(&[&format!("wrong code (failure {n})")]);
    }
    assert_eq!(temp_files(&env), Vec::<String>::new());
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_a_temp_file_a_killed_writer_left_then_the_next_write_of_that_user_removes_it() {
    let env = test_env!("stale_temp");
    let rec = Record::new("alice");
    env.write_record(&rec);
    // What a writer killed between create and rename leaves: the user's fixed temp name.
    write_file(&env.users.join(".alice.state.tmp"), b"half a state", 0o600);
    settle(rec.period);
    // No state yet: the first write creates the journal through the temp file.
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
    assert_eq!(temp_files(&env), Vec::<String>::new());
}
