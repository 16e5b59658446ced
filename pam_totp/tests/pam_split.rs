//! Services with one password field (SPEC §9), through the real libpam: a `split` line, the
//! real `pam_unix.so use_first_pass`, then the line that judges the code. Users and their
//! passwords live in a private /etc/passwd, /etc/shadow and /etc/group bound over the host's
//! inside the sandbox (the host's are not touched); codes come from `oathtool`.
//!
//! Needs root; `make test` runs these (`--include-ignored`).

mod common;

use common::*;
use std::process::Command;

const PASSWORD: &str = "hunter2";

/// A test env whose users alice, bob and carol have the password [`PASSWORD`], with the
/// stack of SPEC §9.
fn split_env(name: &str, extra_second_line: &str) -> TestEnv {
    let env = TestEnv::new(name).expect("root");
    let hash = Command::new("openssl")
        .args(["passwd", "-6", "-salt", "pamtotpsplit", PASSWORD])
        .output()
        .expect("run openssl (Debian package openssl)");
    assert!(hash.status.success(), "openssl passwd failed");
    let hash = String::from_utf8(hash.stdout).unwrap();
    let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
    let mut shadow = String::from("root:*:19000:0:99999:7:::\n");
    let mut group = String::from("root:x:0:\n");
    for (i, user) in ["alice", "bob", "carol"].iter().enumerate() {
        let id = 62001 + i;
        passwd.push_str(&format!(
            "{user}:x:{id}:{id}::/nonexistent:/usr/sbin/nologin\n"
        ));
        shadow.push_str(&format!("{user}:{}:19000:0:99999:7:::\n", hash.trim()));
        group.push_str(&format!("{user}:x:{id}:\n"));
    }
    for (file, text, mode) in [
        ("passwd", &passwd, 0o644),
        ("shadow", &shadow, 0o640),
        ("group", &group, 0o644),
    ] {
        let copy = env.root.join(file);
        write_file(&copy, text.as_bytes(), mode);
        env.bind(&copy, &format!("/etc/{file}"));
    }
    stack(&env, "", extra_second_line);
    env
}

/// `auth requisite pam_totp split` / `requisite pam_unix use_first_pass` / `required pam_totp`.
fn stack(env: &TestEnv, split_options: &str, second_options: &str) {
    let m = env.module();
    let base = env.base_options();
    env.pam_stack(&format!(
        "auth requisite {m} split {base} {split_options}\n\
         auth requisite pam_unix.so use_first_pass\n\
         auth required {m} {base} {second_options}\n",
        m = m.display()
    ));
}

fn enrolled(env: &TestEnv, user: &str) -> Record {
    let rec = Record::new(user);
    env.write_record(&rec);
    rec
}

fn one_field(env: &TestEnv, user: &str, answer: &str) -> Outcome {
    env.login(user, &[answer])
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`"]
fn given_password_and_code_in_one_answer_then_login_succeeds_and_a_replay_fails() {
    let env = split_env("split_ok", "");
    let rec = enrolled(&env, "alice");
    settle(30);
    let answer = format!("{PASSWORD}{}", code_offset(&rec, 0));
    let o = one_field(&env, "alice", &answer);
    o.expect_result("PAM_SUCCESS")
        .expect_logged(&["code kept for the check after the password"])
        .expect_logged(&["accepted step"]);
    assert_eq!(o.prompts().len(), 1, "one prompt only\n{}", o.describe());
    let o = one_field(&env, "alice", &answer);
    o.expect_denied().expect_logged(&["replayed code"]);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`"]
fn given_wrong_password_and_valid_code_then_refused_and_the_code_still_works_with_the_password() {
    let env = split_env("split_wrong_pw", "");
    let rec = enrolled(&env, "alice");
    settle(30);
    let code = code_offset(&rec, 0);
    let o = one_field(&env, "alice", &format!("not-the-password{code}"));
    o.expect_denied();
    assert!(
        !o.logged("accepted step") && !o.logged("wrong code"),
        "the code line ran after a wrong password\n{}",
        o.describe()
    );
    let state = env.state_path("alice");
    assert!(
        !state.exists() || fs_text(&state).contains(" f=0 "),
        "a wrong password counted a failure: {}",
        fs_text(&state)
    );
    one_field(&env, "alice", &format!("{PASSWORD}{code}"))
        .expect_result("PAM_SUCCESS")
        .expect_logged(&["accepted step"]);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`"]
fn given_password_alone_for_an_enrolled_user_then_refused_without_counting() {
    let env = split_env("split_pw_alone", "");
    enrolled(&env, "alice");
    let o = one_field(&env, "alice", PASSWORD);
    // The whole answer went to pam_unix (it is alice's password), then the code line denied.
    o.expect_denied()
        .expect_logged(&["no code at the end of the answer"])
        .expect_logged(&["no code typed after the password (not counted)"]);
    // Password + something that is not a code: pam_unix refuses the whole answer.
    let o = one_field(&env, "alice", &format!("{PASSWORD}12345x"));
    o.expect_denied();
    assert!(!o.logged("no code typed"), "{}", o.describe());
    assert!(
        !fs_text(&env.state_path("alice")).contains("f=1"),
        "counted as a failure"
    );
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`"]
fn given_unenrolled_user_then_the_answer_passes_through_whole() {
    let env = split_env("split_unenrolled", "");
    // bob's password ends in a digit; with no record nothing is taken off it.
    let o = one_field(&env, "bob", PASSWORD);
    o.expect_result("PAM_SUCCESS")
        .expect_logged(&["passed on whole (no code expected"])
        .expect_logged(&["not enrolled, not required"]);
    one_field(&env, "bob", &format!("{PASSWORD}123456")).expect_denied();
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`"]
fn given_recovery_code_appended_then_it_works_once_with_or_without_dashes() {
    let env = split_env("split_recovery", "");
    let mut rec = Record::new("alice");
    let (dashed, plain) = (new_recovery_code(), new_recovery_code());
    rec.recovery = vec![recovery_entry(&dashed), recovery_entry(&plain)];
    env.write_record(&rec);
    let with_dashes = format!("{PASSWORD}{}", dashed.to_uppercase());
    one_field(&env, "alice", &with_dashes)
        .expect_result("PAM_SUCCESS")
        .expect_logged(&["accepted recovery code (1 left)"]);
    one_field(&env, "alice", &with_dashes).expect_denied();
    let compact = plain.replace('-', "");
    if compact[compact.len() - 6..]
        .bytes()
        .all(|b| b.is_ascii_digit())
    {
        return; // reads as a TOTP code (SPEC §9): typed with dashes it is not ambiguous
    }
    one_field(&env, "alice", &format!("{PASSWORD}{compact}"))
        .expect_result("PAM_SUCCESS")
        .expect_logged(&["accepted recovery code (0 left)"]);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`"]
fn given_required_but_unenrolled_user_then_refused_like_a_wrong_code() {
    let env = split_env("split_required", "");
    let policy = env.root.join("policy.toml");
    write_file(
        &policy,
        b"version = 1\nrequire_all = true\nenroll_at_login = true\n",
        0o644,
    );
    env.use_policy(&policy);
    stack(&env, "", "");
    let o = one_field(&env, "carol", &format!("{PASSWORD}123456"));
    o.expect_denied()
        .expect_logged(&["code kept for the check after the password"])
        .expect_logged(&["cannot show a new key"]);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`"]
fn given_split_with_options_for_the_code_check_then_service_error() {
    let env = split_env("split_options", "");
    enrolled(&env, "alice");
    for bad in ["window=2", "prompt=Code:", "split"] {
        stack(&env, bad, "");
        one_field(&env, "alice", &format!("{PASSWORD}123456"))
            .expect_result("PAM_SERVICE_ERR")
            .expect_logged(&["split", "given twice"]);
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`"]
fn given_a_second_judging_line_then_it_denies_without_prompting_or_counting() {
    let env = split_env("split_twice_judged", "");
    let rec = enrolled(&env, "alice");
    let m = env.module();
    let base = env.base_options();
    env.pam_stack(&format!(
        "auth requisite {m} split {base}\n\
         auth requisite pam_unix.so use_first_pass\n\
         auth required {m} {base}\n\
         auth required {m} {base}\n",
        m = m.display()
    ));
    settle(30);
    let o = one_field(
        &env,
        "alice",
        &format!("{PASSWORD}{}", code_offset(&rec, 0)),
    );
    o.expect_denied()
        .expect_logged(&["accepted step"])
        .expect_logged(&["no code typed after the password (not counted)"]);
    assert_eq!(
        o.prompts().len(),
        1,
        "the second line prompted\n{}",
        o.describe()
    );
    assert!(fs_text(&env.state_path("alice"))
        .lines()
        .last()
        .unwrap()
        .contains(" f=0 "));
}

fn fs_text(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
