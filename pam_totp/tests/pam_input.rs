//! PAM-level tests, continued from `pam_level.rs`: user names, hostile input, concurrent
//! logins and what the module writes to syslog — the built `libpam_totp.so` through the real
//! libpam (see `pam_level.rs` and `common/` for how).
//!
//! Needs root; without it these tests are reported as ignored.

mod common;

use common::*;
use std::fs;
use std::io::{BufRead, BufReader, Write};

// ---------------------------------------------------------------------------
// User names
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_invalid_user_name_then_denied() {
    let env = test_env!("invalid_user");
    let rec = Record::new("alice");
    env.write_record(&rec);
    // users/x/../alice.toml would be alice's record if names became paths unchecked.
    fs::create_dir(env.users.join("x")).expect("mkdir");
    set_mode(&env.users.join("x"), 0o700);
    let long = "a".repeat(129);
    for user in [
        "./alice",
        "x/../alice",
        "../users/alice",
        "-alice",
        ".alice",
        "al ice",
        "alice\tx",
        "al/ice",
        "alice:",
        long.as_str(),
    ] {
        settle(rec.period);
        let o = env.login(user, &[&code_offset(&rec, 0)]);
        assert_eq!(
            o.result,
            "PAM_AUTH_ERR",
            "user name {user:?}\n{}",
            o.describe()
        );
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_unusual_but_valid_user_names_then_accepted() {
    let env = test_env!("valid_names");
    for user in ["_svc", "a.b@example-c", "9lives", &"b".repeat(128)] {
        let rec = Record::new(user);
        env.write_record(&rec);
        settle(rec.period);
        let o = env.login(user, &[&code_offset(&rec, 0)]);
        assert_eq!(
            o.result,
            "PAM_SUCCESS",
            "user name {user:?}\n{}",
            o.describe()
        );
    }
}

// ---------------------------------------------------------------------------
// Hostile or broken input
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_no_answer_then_denied() {
    let env = test_env!("no_answer");
    let rec = Record::new("alice");
    env.write_record(&rec);
    let o = env.login("alice", &[]);
    o.expect_denied().expect_prompted();
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_garbage_answers_then_denied_without_crash() {
    let env = test_env!("garbage");
    let rec = Record::new("alice");
    env.write_record(&rec);
    let huge = "9".repeat(100_000);
    let answers: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"   ".to_vec(),
        b"12345".to_vec(),
        b"1234567".to_vec(),
        b"abcdef".to_vec(),
        b"\xff\xfe\x80\x81\xc3\x28".to_vec(),
        huge.into_bytes(),
        b"0000-0000-0000".to_vec(),
    ];
    for a in answers {
        let mut input = a.clone();
        input.push(b'\n');
        let o = env.login_raw("alice", &input);
        assert_eq!(
            o.result,
            "PAM_AUTH_ERR",
            "answer {:?}\n{}",
            String::from_utf8_lossy(&a[..a.len().min(40)]),
            o.describe()
        );
    }
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

/// Sixteen logins of `user` reach the prompt, then all answer `answer` at once: each one's
/// result, and the syslog lines.
fn sixteen_parallel_answers(env: &TestEnv, user: &str, answer: &str) -> (Vec<String>, Vec<String>) {
    let mut started = Vec::new();
    for _ in 0..16 {
        let mut child = env.command(user).spawn().expect("spawn sandbox");
        let stdin = child.stdin.take().expect("stdin");
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).expect("read harness stdout");
            assert!(n > 0, "harness ended before prompting: {head:?}");
            let line = line.trim_end_matches('\n').to_string();
            let is_prompt = line.starts_with("PROMPT_");
            head.push(line);
            if is_prompt {
                break;
            }
        }
        child.stdout = Some(reader.into_inner());
        started.push((child, stdin, head));
    }
    let mut waiting = Vec::new();
    for (child, mut stdin, head) in started {
        stdin
            .write_all(format!("{answer}\n").as_bytes())
            .expect("answer");
        drop(stdin);
        waiting.push((child, head));
    }
    let results = waiting
        .into_iter()
        .map(|(child, head)| finish(child, head).result)
        .collect();
    (results, env.new_logs())
}

/// Exactly one success, the others denied as replays (never counted as failures).
#[track_caller]
fn expect_one_success_and_replays(env: &TestEnv, results: &[String], logs: &[String]) {
    let successes = results.iter().filter(|r| *r == "PAM_SUCCESS").count();
    assert_eq!(
        successes,
        1,
        "results: {results:?}\nsyslog:\n  {}",
        logs.join("\n  ")
    );
    assert!(
        results
            .iter()
            .all(|r| r == "PAM_SUCCESS" || r == "PAM_AUTH_ERR"),
        "{results:?}"
    );
    let replays = logs
        .iter()
        .filter(|l| l.to_lowercase().contains("replay"))
        .count();
    assert_eq!(
        replays,
        15,
        "the others are replays\n  {}",
        logs.join("\n  ")
    );
    let state = fs::read_to_string(env.state_path("alice")).expect("state");
    assert!(
        state.lines().last().is_some_and(|l| l.contains(" f=0 ")),
        "a double submit must not count as a failure:\n{state}"
    );
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_sixteen_parallel_logins_with_same_code_then_exactly_one_succeeds() {
    let env = test_env!("parallel");
    let rec = Record::new("alice");
    env.write_record(&rec);
    settle_margin(rec.period, 12.0);
    let (results, logs) = sixteen_parallel_answers(&env, "alice", &code_offset(&rec, 0));
    expect_one_success_and_replays(&env, &results, &logs);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_sixteen_parallel_logins_with_same_recovery_code_then_one_succeeds_and_none_counts() {
    let env = test_env!("parallel_recovery");
    let mut rec = Record::new("alice");
    let code = new_recovery_code();
    rec.recovery = vec![recovery_entry(&code), recovery_entry(&new_recovery_code())];
    env.write_record(&rec);
    let (results, logs) = sixteen_parallel_answers(&env, "alice", &code);
    expect_one_success_and_replays(&env, &results, &logs);
    // Not locked: the app's code still works.
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

// ---------------------------------------------------------------------------
// Syslog
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_any_login_then_syslog_holds_no_secret_or_code() {
    let env = test_env!("no_secrets_logged");
    let recovery = new_recovery_code();
    let mut rec = Record::new("alice");
    rec.recovery = vec![recovery_entry(&recovery)];
    env.write_record(&rec);
    env.pam("debug");
    let mut typed = Vec::new();

    settle(rec.period);
    let good = code_offset(&rec, 0);
    let wrong = wrong_code(&rec, 2);
    for answer in [&good, &good, &wrong, &recovery] {
        env.login("alice", &[answer]);
        typed.push(answer.clone());
    }
    // Also the untrusted-record and locked paths, which may log more detail.
    env.write_state(
        "alice",
        &format!(
            "version = 1\nfailures = 5\nlocked_until = {}\n",
            now() + 600
        ),
    );
    let next = code_offset(&rec, 1);
    env.login("alice", &[&next]);
    typed.push(next);
    set_mode(&env.record_path("alice"), 0o644);
    let prev = code_offset(&rec, -1);
    env.login("alice", &[&prev]);
    typed.push(prev);

    let logs = env.all_logs();
    assert!(
        logs.iter().filter(|l| l.contains("pam_totp")).count() >= 6,
        "expected a log line per decision, got:\n  {}",
        logs.join("\n  ")
    );
    let secret_lower = rec.secret.to_lowercase();
    let recovery_compact = recovery.replace('-', "");
    for line in &logs {
        let lower = line.to_lowercase();
        assert!(
            !lower.contains(&secret_lower) && !lower.contains(&secret_lower[..16]),
            "secret in syslog: {line}"
        );
        assert!(
            !lower.contains(&recovery) && !lower.contains(&recovery_compact),
            "recovery code in syslog: {line}"
        );
        for code in &typed {
            assert!(
                !line.contains(code.as_str()),
                "code {code} in syslog: {line}"
            );
        }
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_rhost_and_user_with_spaces_then_each_stays_one_quoted_log_field() {
    let mut env = test_env!("log_fields");
    env.rhost = Some("10.0.0.9 accepted step 1 user=bob".to_string());
    let rec = Record::new("alice");
    env.write_record(&rec);
    settle(rec.period);
    let o = env.login("alice", &[&wrong_code(&rec, 3)]);
    o.expect_denied();
    let line = o
        .logs
        .iter()
        .find(|l| l.contains("wrong code"))
        .unwrap_or_else(|| panic!("no wrong-code line\n{}", o.describe()));
    assert!(
        line.contains("user=alice rhost=\"10.0.0.9 accepted step 1 user=bob\" wrong code"),
        "{line}"
    );
    // A naive `rhost=(\S+) accepted step` parser finds no acceptance.
    assert!(!line.contains("rhost=10.0.0.9 accepted"), "{line}");
    // A user name with a space is invalid, and is logged quoted too.
    let o = env.login("eve accepted", &["123456"]);
    o.expect_result("PAM_AUTH_ERR");
    assert!(
        o.logs.iter().any(|l| l.contains("user=\"eve accepted\" ")),
        "{}",
        o.describe()
    );
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_the_self_service_pam_service_name_in_another_program_then_the_code_is_still_asked() {
    let env = test_env!("service_name_alone");
    let rec = Record::new("alice");
    env.write_record(&rec);
    // A program (not the setuid helper) that names the helper's PAM service.
    write_file(
        &env.pamd.join("pam-totp"),
        format!(
            "auth required {} {}\n",
            env.module().display(),
            env.base_options()
        )
        .as_bytes(),
        0o644,
    );
    for service in ["pam-totp", "PAM-Totp"] {
        let mut child = env
            .sandboxed(harness_bin())
            .arg(&env.pamd)
            .arg(service)
            .arg("alice")
            .env("HARNESS_SETCRED", "0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sandbox");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{}\n", wrong_code(&rec, 3)).as_bytes())
            .expect("answer");
        let o = finish(child, Vec::new());
        assert!(
            o.result == "PAM_AUTH_ERR" && o.lines.iter().any(|l| l.starts_with("PROMPT")),
            "service {service}: {}",
            o.describe()
        );
    }
}
