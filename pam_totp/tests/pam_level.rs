//! PAM-level tests: the built `libpam_totp.so` loaded by the real libpam.
//!
//! Every login runs `tests/pam-harness/harness.c` (a tiny, independent PAM
//! application) through `tests/lib/sandbox.sh`, which gives it a private `/dev`
//! whose `/dev/log` is a unix datagram socket owned by the test, so the module's
//! syslog lines can be checked. The PAM stack lives in a private config dir
//! (`pam_start_confdir`), records are written here as plain TOML (SPEC §2.1) and
//! codes come only from `oathtool`, never from the crate under test.
//!
//! Needs root (records must be root-owned) — without root every test prints a
//! notice and passes. The module is `$PAM_TOTP_SO` (as `make test` sets it), else
//! the `.so` cargo built along with this test binary (same profile), else
//! `target/release/libpam_totp.so`.
//!
//! `PAM_TOTP_TEST_VERBOSE=1` prints every login (stdout, syslog) to stderr
//! (use with `-- --nocapture`); `PAM_TOTP_KEEP_TMP=1` keeps the test dirs, which
//! are also kept when a test fails.
//!
//! The helpers live in `common/` (`mod.rs` and its parts), shared with `pam_policy.rs`.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{chown, symlink, MetadataExt};
use std::path::PathBuf;
use std::process::Command;

const PERMISSION_WORDS: &[&str] = &[
    "permission",
    "mode",
    "owner",
    "owned",
    "symlink",
    "link",
    "regular",
    "directory",
    "untrusted",
    "insecure",
    "writable",
    "readable",
];

// ---------------------------------------------------------------------------
// The module as a shared object
// ---------------------------------------------------------------------------

#[test]
fn module_exports_pam_sm_authenticate_and_setcred() {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(module_so())
        .output()
        .expect("run nm (binutils)");
    assert!(out.status.success(), "nm failed");
    let syms = String::from_utf8_lossy(&out.stdout);
    for sym in ["pam_sm_authenticate", "pam_sm_setcred"] {
        assert!(
            syms.lines()
                .any(|l| l.split_whitespace().last() == Some(sym)),
            "{} does not export {sym}:\n{syms}",
            module_so().display()
        );
    }
}

// ---------------------------------------------------------------------------
// Accepting a code once
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_current_code_then_login_succeeds() {
    let env = test_env!("current_code");
    let rec = Record::new("alice");
    env.write_record(&rec);
    settle(rec.period);
    let o = env.login("alice", &[&code_offset(&rec, 0)]);
    o.expect_result("PAM_SUCCESS")
        .expect_logged(&["accepted"])
        .expect_logged(&["alice"])
        .expect_logged(&[RHOST]);
    assert_eq!(
        o.prompts(),
        vec!["Verification code: "],
        "default prompt, asked once, echo off\n{}",
        o.describe()
    );
    assert!(
        o.has_line("PROMPT_ECHO_OFF:Verification code: "),
        "{}",
        o.describe()
    );
    assert!(
        o.has_line("SETCRED:PAM_SUCCESS 0"),
        "pam_sm_setcred must return PAM_SUCCESS\n{}",
        o.describe()
    );
    assert!(
        o.stderr.trim().is_empty(),
        "nothing on stderr: {:?}",
        o.stderr
    );
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_replayed_code_then_login_fails() {
    let env = test_env!("replayed_code");
    let rec = Record::new("alice");
    env.write_record(&rec);
    settle(rec.period);
    let code = code_offset(&rec, 0);
    env.login("alice", &[&code]).expect_result("PAM_SUCCESS");
    env.login("alice", &[&code])
        .expect_result("PAM_AUTH_ERR")
        .expect_prompted()
        .expect_logged(&["replay"]);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_older_step_after_success_then_replay_denied() {
    // A code of an earlier step than the last accepted one is a replay too.
    let env = test_env!("older_step");
    let rec = Record::new("alice");
    env.write_record(&rec);
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 1)])
        .expect_result("PAM_SUCCESS");
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_AUTH_ERR")
        .expect_logged(&["replay"]);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_replayed_codes_then_they_are_not_counted_as_failures() {
    let env = test_env!("replays_not_counted");
    let rec = Record::new("alice");
    env.write_record(&rec);
    settle_margin(rec.period, 8.0);
    let step = now() / rec.period;
    env.write_state(
        "alice",
        &format!("version = 1\nlast_step = {step}\nfailures = 0\nlocked_until = 0\n"),
    );
    let current = code_offset(&rec, 0);
    for i in 0..6 {
        let o = env.login("alice", &[&current]);
        o.expect_result("PAM_AUTH_ERR").expect_logged(&["replay"]);
        assert!(!o.logged("locked"), "replay #{i} locked\n{}", o.describe());
    }
    env.login("alice", &[&code_offset(&rec, 1)])
        .expect_result("PAM_SUCCESS");
}

// ---------------------------------------------------------------------------
// The window
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_code_one_step_ahead_then_accepted_at_window_1() {
    let env = test_env!("one_ahead");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam("window=1");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 1)])
        .expect_result("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_code_one_step_behind_then_accepted_at_window_1() {
    let env = test_env!("one_behind");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam("window=1");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, -1)])
        .expect_result("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_code_two_steps_away_then_denied() {
    // Default window (1): −2 and +2 are outside, and count as wrong codes.
    let env = test_env!("two_away");
    let rec = Record::new("alice");
    env.write_record(&rec);
    for steps in [-2, 2] {
        settle(rec.period);
        env.login("alice", &[&code_offset(&rec, steps)])
            .expect_result("PAM_AUTH_ERR")
            .expect_logged(&["wrong"]);
    }
    // Two failures do not lock: the current code still works.
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_window_0_then_previous_step_denied() {
    let env = test_env!("window_0");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam("window=0");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, -1)])
        .expect_result("PAM_AUTH_ERR");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 1)])
        .expect_result("PAM_AUTH_ERR");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_window_2_then_two_steps_ahead_accepted() {
    let env = test_env!("window_2");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam("window=2");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, -3)])
        .expect_result("PAM_AUTH_ERR");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 2)])
        .expect_result("PAM_SUCCESS");
}

// ---------------------------------------------------------------------------
// Algorithms, digits, period
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_sha256_8_digit_record_then_code_accepted() {
    let env = test_env!("sha256_8");
    let mut rec = Record::new("alice");
    rec.algorithm = "SHA256";
    rec.digits = 8;
    rec.secret = new_secret(32);
    env.write_record(&rec);
    settle(rec.period);
    let code = code_offset(&rec, 0);
    assert_eq!(code.len(), 8);
    env.login("alice", &[&code]).expect_result("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_sha512_8_digit_record_then_code_accepted() {
    let env = test_env!("sha512_8");
    let mut rec = Record::new("alice");
    rec.algorithm = "SHA512";
    rec.digits = 8;
    rec.secret = new_secret(64);
    env.write_record(&rec);
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_code_of_another_algorithm_then_denied() {
    let env = test_env!("other_algorithm");
    let mut rec = Record::new("alice");
    rec.algorithm = "SHA256";
    env.write_record(&rec);
    let mut sha1 = rec.clone();
    sha1.algorithm = "SHA1";
    settle(rec.period);
    let (right, wrong) = (code_offset(&rec, 0), code_offset(&sha1, 0));
    if right == wrong {
        eprintln!("SHA1 and SHA256 codes collide this step; nothing to test");
        return;
    }
    env.login("alice", &[&wrong]).expect_result("PAM_AUTH_ERR");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_period_60_record_then_code_accepted() {
    let env = test_env!("period_60");
    let mut rec = Record::new("alice");
    rec.period = 60;
    env.write_record(&rec);
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

// ---------------------------------------------------------------------------
// Files that must not be trusted (SPEC §2)
// ---------------------------------------------------------------------------

fn denied_for_bad_record(env: &TestEnv, rec: &Record) -> Outcome {
    settle(rec.period);
    let o = env.login("alice", &[&code_offset(rec, 0)]);
    o.expect_denied();
    o
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_world_readable_record_then_denied() {
    let env = test_env!("world_readable");
    let rec = Record::new("alice");
    let path = env.write_record(&rec);
    set_mode(&path, 0o644);
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(PERMISSION_WORDS);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_group_readable_record_then_denied() {
    let env = test_env!("group_readable");
    let rec = Record::new("alice");
    let path = env.write_record(&rec);
    set_mode(&path, 0o640);
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(PERMISSION_WORDS);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_symlinked_record_then_denied() {
    let env = test_env!("symlinked");
    let rec = Record::new("alice");
    let real = env.users.join("real-alice.toml");
    write_file(&real, rec.toml().as_bytes(), 0o600);
    symlink(&real, env.record_path("alice")).expect("symlink");
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(PERMISSION_WORDS);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_foreign_owned_record_then_denied() {
    let env = test_env!("foreign_owned");
    let rec = Record::new("alice");
    let path = env.write_record(&rec);
    chown(&path, Some(65534), Some(65534)).expect("chown");
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(PERMISSION_WORDS);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_record_is_a_directory_then_denied() {
    let env = test_env!("record_dir");
    let rec = Record::new("alice");
    let path = env.record_path("alice");
    fs::create_dir(&path).expect("mkdir");
    set_mode(&path, 0o700);
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(PERMISSION_WORDS);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_group_writable_state_dir_then_denied() {
    let env = test_env!("state_dir_gw");
    let rec = Record::new("alice");
    env.write_record(&rec);
    set_mode(&env.state, 0o770);
    denied_for_bad_record(&env, &rec).expect_logged(PERMISSION_WORDS);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_world_readable_users_dir_then_denied() {
    let env = test_env!("users_dir_wr");
    let rec = Record::new("alice");
    env.write_record(&rec);
    set_mode(&env.users, 0o755);
    denied_for_bad_record(&env, &rec).expect_logged(PERMISSION_WORDS);
}

/// Moves the state directory into a new `<root>/NAME` of the given mode and points the stack
/// at it (the policy path stays outside), so that NAME is an ancestor the module must judge.
fn move_state_under(env: &TestEnv, name: &str, mode: u32) -> PathBuf {
    let parent = env.root.join(name);
    fs::create_dir(&parent).expect("mkdir ancestor");
    let state = parent.join("state");
    fs::rename(&env.state, &state).expect("move state dir");
    set_mode(&parent, mode);
    env.pam_stack(&format!(
        "auth required {} dir={} policy={}\n",
        env.module().display(),
        state.display(),
        env.root.join("no-policy.toml").display()
    ));
    parent
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_world_writable_ancestor_dir_then_denied() {
    // <root>/ww/state with <root>/ww world-writable (not sticky); the policy path
    // stays outside ww, so it is the state dir's ancestor check that must refuse.
    let env = test_env!("ancestor_ww");
    let rec = Record::new("alice");
    env.write_record(&rec);
    let ww = move_state_under(&env, "ww", 0o777);
    let o = denied_for_bad_record(&env, &rec);
    set_mode(&ww, 0o755);
    o.expect_logged(PERMISSION_WORDS).expect_logged(&["ww"]);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_sticky_root_owned_ancestor_dir_then_accepted() {
    // Like /tmp: a root-owned sticky world-writable ancestor is accepted (SPEC §2).
    let env = test_env!("ancestor_sticky");
    let rec = Record::new("alice");
    env.write_record(&rec);
    move_state_under(&env, "sticky", 0o1777);
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_foreign_owned_state_file_then_denied() {
    let env = test_env!("state_foreign");
    let rec = Record::new("alice");
    env.write_record(&rec);
    let path = env.write_state("alice", "version = 1\nfailures = 0\nlocked_until = 0\n");
    chown(&path, Some(65534), Some(65534)).expect("chown");
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(PERMISSION_WORDS);
}

// ---------------------------------------------------------------------------
// Records and state that cannot be parsed (fail closed)
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_record_with_unknown_key_then_denied() {
    let env = test_env!("unknown_key");
    let mut rec = Record::new("alice");
    rec.extra = "colour = \"blue\"\n".to_string();
    env.write_record(&rec);
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(&["colour"]);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_record_of_newer_version_then_denied() {
    let env = test_env!("newer_version");
    let mut rec = Record::new("alice");
    rec.version = 2;
    env.write_record(&rec);
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(&["version"]);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_record_with_bad_base32_secret_then_denied() {
    let env = test_env!("bad_base32");
    let rec = Record::new("alice");
    let mut bad = rec.clone();
    bad.secret = format!("{}0189", &rec.secret[..28]);
    env.write_record(&bad);
    denied_for_bad_record(&env, &rec).expect_result("PAM_AUTHINFO_UNAVAIL");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_record_with_short_secret_then_denied() {
    // 40 bits: below the 80-bit floor for any record.
    let env = test_env!("short_secret");
    let mut rec = Record::new("alice");
    rec.secret = new_secret(5);
    env.write_record(&rec);
    denied_for_bad_record(&env, &rec).expect_result("PAM_AUTHINFO_UNAVAIL");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_record_whose_user_key_differs_then_denied() {
    let env = test_env!("user_mismatch");
    let rec = Record::new("bob");
    write_file(&env.record_path("alice"), rec.toml().as_bytes(), 0o600);
    denied_for_bad_record(&env, &rec).expect_result("PAM_AUTHINFO_UNAVAIL");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_corrupt_state_then_denied() {
    let env = test_env!("corrupt_state");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.write_state("alice", "this is = = not toml\n\0\0\0");
    denied_for_bad_record(&env, &rec).expect_result("PAM_AUTHINFO_UNAVAIL");
}

// ---------------------------------------------------------------------------
// Module options (SPEC §3)
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_unknown_module_option_then_denied() {
    let env = test_env!("unknown_option");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam("frobnicate=1");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SERVICE_ERR")
        .expect_logged(&["frobnicate"]);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_malformed_module_option_then_service_error() {
    let env = test_env!("malformed_option");
    let rec = Record::new("alice");
    env.write_record(&rec);
    for opt in [
        "window=11",
        "window=-1",
        "window=abc",
        "window=",
        "dir=",
        "debug=yes",
    ] {
        env.pam(opt);
        settle(rec.period);
        let o = env.login("alice", &[&code_offset(&rec, 0)]);
        assert_eq!(
            o.result,
            "PAM_SERVICE_ERR",
            "option {opt:?}\n{}",
            o.describe()
        );
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_prompt_option_then_prompt_text_is_used() {
    let env = test_env!("prompt_option");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam("[prompt=One-time code: ]");
    settle(rec.period);
    let o = env.login("alice", &[&code_offset(&rec, 0)]);
    o.expect_result("PAM_SUCCESS");
    assert_eq!(o.prompts(), vec!["One-time code: "], "\n{}", o.describe());
    assert!(
        o.has_line("PROMPT_ECHO_OFF:One-time code: "),
        "{}",
        o.describe()
    );
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_debug_option_then_login_still_works() {
    let env = test_env!("debug_option");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam("debug");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS")
        .expect_logged(&["accepted"]);
}

// ---------------------------------------------------------------------------
// Throttle
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_five_wrong_codes_then_user_is_locked() {
    let env = test_env!("five_wrong");
    let rec = Record::new("alice");
    env.write_record(&rec);
    for i in 1..=5 {
        let o = env.login("alice", &[&wrong_code(&rec, 2)]);
        o.expect_result("PAM_AUTH_ERR").expect_prompted();
        assert!(o.logged("wrong"), "failure #{i}\n{}", o.describe());
    }
    settle(rec.period);
    // Locked: still asked (the prompt reveals nothing), then denied unchecked.
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_AUTH_ERR")
        .expect_prompted()
        .expect_logged(&["lock"]);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_locked_state_then_correct_code_denied_after_prompt() {
    let env = test_env!("prelocked");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.write_state(
        "alice",
        &format!(
            "version = 1\nfailures = 5\nlocked_until = {}\n",
            now() + 600
        ),
    );
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_AUTH_ERR")
        .expect_prompted()
        .expect_logged(&["lock"]);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_expired_lock_then_correct_code_accepted() {
    let env = test_env!("expired_lock");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.write_state(
        "alice",
        &format!("version = 1\nfailures = 5\nlocked_until = {}\n", now() - 5),
    );
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_success_then_failures_are_reset() {
    let env = test_env!("success_resets");
    let rec = Record::new("alice");
    env.write_record(&rec);
    for _ in 0..4 {
        env.login("alice", &[&wrong_code(&rec, 2)])
            .expect_result("PAM_AUTH_ERR");
    }
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
    // Four more failures would lock if the counter had not been reset.
    for _ in 0..4 {
        env.login("alice", &[&wrong_code(&rec, 2)])
            .expect_result("PAM_AUTH_ERR");
    }
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 1)])
        .expect_result("PAM_SUCCESS");
}

// ---------------------------------------------------------------------------
// Recovery codes (SPEC §4)
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_recovery_code_then_accepted_once() {
    let env = test_env!("recovery");
    let (first, second) = (new_recovery_code(), new_recovery_code());
    let mut rec = Record::new("alice");
    rec.recovery = vec![recovery_entry(&first), recovery_entry(&second)];
    let path = env.write_record(&rec);

    env.login("alice", &[&first]).expect_result("PAM_SUCCESS");
    let text = fs::read_to_string(&path).expect("record still readable");
    assert!(
        !text.contains(&rec.recovery[0]),
        "used entry not burned:\n{text}"
    );
    assert!(
        text.contains(&rec.recovery[1]),
        "unused entry lost:\n{text}"
    );
    let meta = fs::symlink_metadata(&path).expect("stat record");
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid()),
        (0o600, 0),
        "rewritten record must stay root 0600"
    );

    env.login("alice", &[&first])
        .expect_result("PAM_AUTH_ERR")
        .expect_prompted();

    // The other code, typed in upper case without dashes, still works.
    let typed = second.replace('-', "").to_uppercase();
    env.login("alice", &[&typed]).expect_result("PAM_SUCCESS");
    env.login("alice", &[&typed]).expect_result("PAM_AUTH_ERR");

    // The TOTP code keeps working after recovery logins.
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

// ---------------------------------------------------------------------------
// Users without an active record (policy file missing: nobody required)
// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_unenrolled_user_then_module_ignores() {
    let env = test_env!("unenrolled");
    env.pam_observe_ignore("");
    let o = env.login("carol", &[]);
    o.expect_result("PAM_SUCCESS")
        .expect_logged(&["not enrolled"]);
    assert!(
        o.has_line(&format!("INFO:{IGNORED_MARK}")),
        "module should return PAM_IGNORE\n{}",
        o.describe()
    );
    assert!(o.prompts().is_empty(), "no prompt\n{}", o.describe());
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_pending_record_then_module_ignores() {
    let env = test_env!("pending");
    let mut rec = Record::new("alice");
    rec.state = "pending";
    env.write_record(&rec);
    env.pam_observe_ignore("");
    let o = env.login("alice", &[&code_offset(&rec, 0)]);
    o.expect_result("PAM_SUCCESS");
    assert!(
        o.has_line(&format!("INFO:{IGNORED_MARK}")),
        "a pending record counts as not enrolled → PAM_IGNORE\n{}",
        o.describe()
    );
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_pending_record_replacing_active_then_prompted_and_denied() {
    let env = test_env!("pending_replaces");
    let mut rec = Record::new("alice");
    rec.state = "pending";
    rec.extra = "replaces_active = true\n".to_string();
    env.write_record(&rec);
    env.pam_observe_ignore("");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_AUTH_ERR")
        .expect_prompted()
        .expect_logged(&["re-enrol", "reenrol"]);
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_enrolled_user_in_observe_stack_then_success_is_not_ignore() {
    // Guards the PAM_IGNORE detection itself: a success must not print the mark.
    let env = test_env!("observe_success");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam_observe_ignore("");
    settle(rec.period);
    let o = env.login("alice", &[&code_offset(&rec, 0)]);
    o.expect_result("PAM_SUCCESS");
    assert!(
        !o.has_line(&format!("INFO:{IGNORED_MARK}")),
        "{}",
        o.describe()
    );
}
