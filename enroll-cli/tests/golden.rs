//! Golden-output tests: every verb's human and JSON output and each error message, with the
//! random and time-dependent parts masked (see `common::filters`). Snapshots live in
//! tests/snapshots/; after an intended change, review them with `INSTA_UPDATE=always cargo test`
//! and `git diff`.

mod common;

use common::{code, now, settle, write_file, TestDir};
use std::fs;

const ISSUER: &str = "build-01";

fn enrolled(t: &TestDir, user: &str) -> String {
    t.enrolled(user, ISSUER)
}

fn write_state(t: &TestDir, user: &str, text: &str) {
    t.write_state(user, text)
}

#[test]
fn enroll_human_output() {
    let t = TestDir::new("enroll-human");
    let r = t.run(&["enroll", "alice", "--issuer", ISSUER]);
    golden!(t, "enroll_human", r);
    r.ok();
    let rec = t.record_text("alice");
    assert!(rec.contains("state = \"pending\"") && !rec.contains("replaces_active"));
    assert_eq!(rec.matches("sha256:").count(), 10, "{rec}");
    // No ANSI colours when stdout is not a terminal.
    assert!(!r.stdout.contains('\x1b'));
}

#[test]
fn enroll_json_output_is_one_document_with_the_spec_fields() {
    let t = TestDir::new("enroll-json");
    let r = t.run(&[
        "enroll",
        "alice",
        "--json",
        "--issuer",
        ISSUER,
        "--digits",
        "8",
        "--algorithm",
        "sha256",
        "--period",
        "60",
    ]);
    golden!(t, "enroll_json", r);
    let j = r.ok().json();
    let mut keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = [
        "user",
        "issuer",
        "account",
        "secret",
        "algorithm",
        "digits",
        "period",
        "otpauth_uri",
        "recovery_codes",
        "state",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    let secret = j["secret"].as_str().unwrap();
    assert_eq!(secret, t.secret("alice"));
    assert_eq!(secret.len(), 52, "SHA256 keys are 32 bytes");
    assert_eq!(
        j["otpauth_uri"],
        format!("otpauth://totp/build-01:alice?secret={secret}&issuer=build-01&algorithm=SHA256&digits=8&period=60")
    );
    assert_eq!(j["recovery_codes"].as_array().unwrap().len(), 10);
    assert_eq!(j["state"], "pending");
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

#[test]
fn enroll_key_lengths_follow_the_algorithm() {
    let t = TestDir::new("enroll-keylen");
    for (alg, len) in [("SHA1", 32), ("SHA256", 52), ("SHA512", 103)] {
        let j = t
            .run(&[
                "enroll",
                "bob",
                "--json",
                "--issuer",
                ISSUER,
                "--algorithm",
                alg,
            ])
            .ok()
            .json();
        assert_eq!(j["secret"].as_str().unwrap().len(), len, "{alg}");
    }
}

#[test]
fn enroll_json_with_terminal_qr_draws_it_on_stderr() {
    let t = TestDir::new("enroll-json-qr");
    let r = t.run(&[
        "enroll", "alice", "--json", "--qr", "terminal", "--issuer", ISSUER,
    ]);
    r.ok().json();
    assert!(r.stderr.contains('█'), "{}", r.stderr);
    assert!(!r.stdout.contains('█'));
}

#[test]
fn enroll_without_qr_and_issuer_from_policy() {
    let t = TestDir::new("enroll-noqr");
    t.write_policy("version = 1\nissuer = \"from-policy\"\n");
    let r = t.run(&["enroll", "carol", "--qr", "none"]);
    golden!(t, "enroll_qr_none_policy_issuer", r);
    r.ok();
    assert!(t.record_text("carol").contains("issuer = \"from-policy\""));
}

#[test]
fn enroll_issuer_defaults_to_the_host_name() {
    let t = TestDir::new("enroll-host");
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let j = t.run(&["enroll", "dave", "--json"]).ok().json();
    assert_eq!(j["issuer"], host);
}

#[test]
fn enroll_refuses_an_active_record_and_force_replaces_it() {
    let t = TestDir::new("enroll-force");
    let old = enrolled(&t, "alice");
    let r = t.run(&["enroll", "alice", "--issuer", ISSUER]);
    golden!(t, "enroll_active_refused", r);
    r.fails(1);
    assert_eq!(t.secret("alice"), old, "refused enrolment changed nothing");

    let r = t.run(&[
        "enroll", "alice", "--force", "--issuer", ISSUER, "--qr", "none",
    ]);
    golden!(t, "enroll_force", r);
    r.ok();
    let rec = t.record_text("alice");
    assert!(
        rec.contains("state = \"pending\"") && rec.contains("replaces_active = true"),
        "{rec}"
    );
    assert_ne!(t.secret("alice"), old);

    // Enrolling again over that pending record keeps the user denied until activation.
    t.run(&["enroll", "alice", "--issuer", ISSUER, "--qr", "none"])
        .ok();
    assert!(t.record_text("alice").contains("replaces_active = true"));
    let secret = t.secret("alice");
    settle(30, 10);
    t.run(&["activate", "alice", &code(&secret, 1)]).ok();
    let rec = t.record_text("alice");
    assert!(
        rec.contains("state = \"active\"") && !rec.contains("replaces_active"),
        "{rec}"
    );
}

#[test]
fn enroll_replaces_a_pending_record() {
    let t = TestDir::new("enroll-pending");
    t.run(&["enroll", "alice", "--issuer", ISSUER, "--qr", "none"])
        .ok();
    let first = t.secret("alice");
    t.run(&["enroll", "alice", "--issuer", ISSUER, "--qr", "none"])
        .ok();
    assert_ne!(t.secret("alice"), first);
    assert!(!t.record_text("alice").contains("replaces_active"));
}

#[test]
fn enroll_force_replaces_an_unparsable_record() {
    let t = TestDir::new("enroll-corrupt");
    write_file(
        &t.users().join("alice.toml"),
        b"version = 1\nuser = [\n",
        0o600,
    );
    let r = t.run(&["enroll", "alice", "--issuer", ISSUER, "--qr", "none"]);
    golden!(t, "enroll_corrupt_record", r);
    r.fails(1);
    t.run(&[
        "enroll", "alice", "--force", "--issuer", ISSUER, "--qr", "none",
    ])
    .ok();
    assert!(t.record_text("alice").contains("replaces_active = true"));
}

#[test]
fn enroll_errors() {
    let t = TestDir::new("enroll-errors");
    let cases: &[(&str, &[&str], i32)] = &[
        (
            "enroll_bad_user",
            &["enroll", "../etc/passwd", "--issuer", ISSUER],
            1,
        ),
        (
            "enroll_bad_issuer",
            &["enroll", "alice", "--issuer", "a:b"],
            1,
        ),
        ("enroll_digits_7", &["enroll", "alice", "--digits", "7"], 2),
        (
            "enroll_period_10",
            &["enroll", "alice", "--period", "10"],
            2,
        ),
        (
            "enroll_algorithm_md5",
            &["enroll", "alice", "--algorithm", "MD5"],
            2,
        ),
        ("enroll_no_user", &["enroll"], 2),
        (
            "enroll_bad_png_path",
            &[
                "enroll",
                "alice",
                "--issuer",
                ISSUER,
                "--qr-png",
                "/nonexistent/dir/q.png",
            ],
            1,
        ),
    ];
    for (name, args, code) in cases {
        let r = t.run(args);
        golden!(t, *name, r);
        r.fails(*code);
    }
    assert!(
        !t.users().join("alice.toml").exists(),
        "nothing stored after a failed enrolment"
    );
}

#[test]
fn enroll_with_an_invalid_policy_and_no_issuer_fails() {
    let t = TestDir::new("enroll-badpolicy");
    t.write_policy("version = 1\nrequire_everyone = true\n");
    let r = t.run(&["enroll", "alice"]);
    golden!(t, "enroll_bad_policy", r);
    r.fails(1);
}

#[test]
fn unknown_verb_is_a_usage_error() {
    let t = TestDir::new("usage");
    let r = t.run(&["frobnicate"]);
    golden!(t, "unknown_verb", r);
    r.fails(2);
}

#[test]
fn activate_paths() {
    let t = TestDir::new("activate");
    let r = t.run(&["activate", "alice", "123456"]);
    golden!(t, "activate_no_record", r);
    r.fails(1);

    t.run(&["enroll", "alice", "--issuer", ISSUER, "--qr", "none"])
        .ok();
    let secret = t.secret("alice");
    let r = t.run(&["activate", "alice"]);
    golden!(t, "activate_no_code_no_terminal", r);
    r.fails(1);

    settle(30, 10);
    // A code three steps away is outside the ±1 window.
    let r = t.run(&["activate", "alice", &code(&secret, 3)]);
    golden!(t, "activate_wrong_code", r);
    r.fails(1);
    assert!(t.record_text("alice").contains("state = \"pending\""));

    let r = t.run(&["activate", "alice", &code(&secret, -1)]);
    golden!(t, "activate_ok", r);
    r.ok();
    let step = now() / 30 - 1;
    assert!(t.record_text("alice").contains("state = \"active\""));
    assert!(t
        .state_text("alice")
        .unwrap()
        .contains(&format!("last_step = {step}")));

    let r = t.run(&["activate", "alice", &code(&secret, 0)]);
    golden!(t, "activate_already_active", r);
    r.fails(1);
}

#[test]
fn activate_refuses_a_used_step() {
    let t = TestDir::new("activate-replay");
    enrolled(&t, "alice");
    // The state now holds the current step; a new key's code of that step is refused.
    t.run(&[
        "enroll", "alice", "--force", "--issuer", ISSUER, "--qr", "none",
    ])
    .ok();
    let secret = t.secret("alice");
    let last: u64 = common::toml_value(&t.state_text("alice").unwrap(), "last_step")
        .parse()
        .unwrap();
    let c = common::oathtool(&secret, "SHA1", 6, 30, last * 30);
    if now() / 30 - last <= 1 {
        let r = t.run(&["activate", "alice", &c]);
        golden!(t, "activate_replayed", r);
        r.fails(1);
    }
}

#[test]
fn status_and_list_of_every_state() {
    let t = TestDir::new("status");
    let r = t.run(&["list"]);
    golden!(t, "list_empty", r);
    r.ok();
    let r = t.run(&["list", "--json"]);
    assert_eq!(r.ok().stdout, "[]\n");

    // none
    let r = t.run(&["status", "nobody-here"]);
    golden!(t, "status_none", r);
    let r = t.run(&["status", "nobody-here", "--json"]);
    golden!(t, "status_none_json", r);
    r.ok();

    // pending
    t.run(&["enroll", "pete", "--issuer", ISSUER, "--qr", "none"])
        .ok();
    let r = t.run(&["status", "pete"]);
    golden!(t, "status_pending", r);

    // active, with a last success and failures
    enrolled(&t, "alice");
    let last: u64 = common::toml_value(&t.state_text("alice").unwrap(), "last_step")
        .parse()
        .unwrap();
    write_state(
        &t,
        "alice",
        &format!("version = 1\nlast_step = {last}\nfailures = 2\nlocked_until = 0\nlast_success_time = 1790000000\nlast_success_rhost = \"192.0.2.7\"\n"),
    );
    let r = t.run(&["status", "alice"]);
    golden!(t, "status_active", r);
    let r = t.run(&["status", "alice", "--json"]);
    golden!(t, "status_active_json", r);
    let j = r.ok().json();
    assert_eq!(j["last_success"]["time"], "2026-09-21T14:13:20Z");
    assert_eq!(j["last_success"]["rhost"], "192.0.2.7");
    assert_eq!(j["recovery_codes_left"], 10);

    // locked
    enrolled(&t, "lock");
    write_state(
        &t,
        "lock",
        &format!(
            "version = 1\nlast_step = 1\nfailures = 5\nlocked_until = {}\n",
            now() + 600
        ),
    );
    let r = t.run(&["status", "lock"]);
    golden!(t, "status_locked", r);
    let j = t.run(&["status", "lock", "--json"]).ok().json();
    assert_eq!(j["state"], "locked");
    assert!(j["locked_until"].is_string());
    // an expired lock is no lock
    write_state(
        &t,
        "lock",
        "version = 1\nlast_step = 1\nfailures = 5\nlocked_until = 1000\n",
    );
    let j = t.run(&["status", "lock", "--json"]).ok().json();
    assert_eq!(j["state"], "active");
    assert!(j["locked_until"].is_null());

    let r = t.run(&["list"]);
    golden!(t, "list_three", r);
    let r = t.run(&["list", "--json"]);
    golden!(t, "list_json", r);
    let arr = r.ok().json();
    assert_eq!(arr.as_array().unwrap().len(), 3);
    // `status` without USER is `list`.
    assert_eq!(t.run(&["status", "--json"]).ok().json(), arr);
}

#[test]
fn status_reports_what_the_policy_requires() {
    let t = TestDir::new("status-policy");
    t.write_policy(
        "version = 1\nrequire_users = [\"carol\"]\nrequire_groups = [\"root\"]\nexempt_users = [\"backup\"]\ngrace_until = 2999-01-01\n",
    );
    let r = t.run(&["status", "carol", "--json"]);
    golden!(t, "status_required_user_grace_json", r);
    let j = r.ok().json();
    assert_eq!(j["required"], true);
    assert_eq!(j["required_by"], "require_users");
    assert_eq!(j["grace_until"], "2999-01-01T00:00:00Z");

    let j = t.run(&["status", "root", "--json"]).ok().json();
    assert_eq!(j["required_by"], "require_groups:root");
    let j = t.run(&["status", "backup", "--json"]).ok().json();
    assert_eq!(
        (j["required"].clone(), j["required_by"].clone()),
        (false.into(), serde_json::Value::Null)
    );
    assert!(
        j["grace_until"].is_null(),
        "grace applies only to required users"
    );

    // Enrolled and active: grace no longer applies.
    enrolled(&t, "carol");
    let r = t.run(&["status", "carol"]);
    golden!(t, "status_required_active", r);
    assert!(t.run(&["status", "carol", "--json"]).ok().json()["grace_until"].is_null());

    // Past the deadline: no grace.
    t.write_policy("version = 1\nrequire_all = true\ngrace_until = 2000-01-01\n");
    let j = t.run(&["status", "ghost-user", "--json"]).ok().json();
    assert_eq!(j["required_by"], "require_all");
    assert!(j["grace_until"].is_null());
}

#[test]
fn status_errors() {
    let t = TestDir::new("status-errors");
    enrolled(&t, "alice");
    write_state(&t, "alice", "this is not toml");
    let r = t.run(&["status", "alice"]);
    golden!(t, "status_corrupt_state", r);
    r.fails(1);

    write_file(&t.users().join("bob.toml"), b"version = 1\nuser = \"bob\"\nstate = \"active\"\nsecret = \"JBSWY3DPEHPK3PXP\"\nshoe_size = 44\n", 0o600);
    let r = t.run(&["list"]);
    golden!(t, "list_with_unreadable_records", r);
    r.fails(1);

    let bad = t.users().join("carol.toml");
    write_file(&bad, b"version = 1\n", 0o644);
    let r = t.run(&["status", "carol"]);
    golden!(t, "status_bad_permissions", r);
    r.fails(1);

    t.write_policy("version = 1\ngrace_until = 2026-12-31T00:00:00\n");
    let r = t.run(&["status", "dave"]);
    golden!(t, "status_bad_policy", r);
    r.fails(1);

    let r = t.run(&["status", "-bad-"]);
    r.fails(2); // looks like an option to the parser
    let r = t.run(&["status", "a/b"]);
    golden!(t, "status_bad_user", r);
    r.fails(1);
}

#[test]
fn disable_is_idempotent() {
    let t = TestDir::new("disable");
    enrolled(&t, "alice");
    let r = t.run(&["disable", "alice"]);
    golden!(t, "disable_ok", r);
    r.ok();
    assert!(!t.users().join("alice.toml").exists() && !t.users().join("alice.state").exists());
    let r = t.run(&["disable", "alice"]);
    golden!(t, "disable_nothing", r);
    r.ok();

    t.write_policy("version = 1\nrequire_users = [\"bob\"]\n");
    enrolled(&t, "bob");
    let r = t.run(&["disable", "bob"]);
    golden!(t, "disable_still_required", r);
    r.ok();

    let r = t.run(&["disable", ".."]);
    golden!(t, "disable_bad_user", r);
    r.fails(1);
}

#[test]
#[ignore = "needs root (without a state directory only root may act): run by `make test`"]
fn disable_without_a_state_directory_is_a_notice() {
    let t = TestDir::new("disable-nodir");
    fs::remove_dir_all(t.state()).unwrap();
    t.run(&["disable", "alice"]).ok();
    t.run(&["list"]).ok();
}

#[test]
fn recovery_replaces_the_set() {
    let t = TestDir::new("recovery");
    let r = t.run(&["recovery", "alice"]);
    golden!(t, "recovery_no_record", r);
    r.fails(1);

    enrolled(&t, "alice");
    let before = t.record_text("alice");
    let r = t.run(&["recovery", "alice", "--count", "3"]);
    golden!(t, "recovery_human", r);
    r.ok();
    let after = t.record_text("alice");
    assert_eq!(after.matches("sha256:").count(), 3);
    for line in before.lines().filter(|l| l.contains("sha256:")) {
        assert!(!after.contains(line), "old hash kept: {line}");
    }
    assert_eq!(
        common::toml_value(&after, "secret"),
        common::toml_value(&before, "secret")
    );

    let r = t.run(&["recovery", "alice", "--json"]);
    golden!(t, "recovery_json", r);
    assert_eq!(
        r.ok().json()["recovery_codes"].as_array().unwrap().len(),
        10
    );

    let r = t.run(&["recovery", "alice", "--count", "0"]);
    golden!(t, "recovery_count_0", r);
    r.fails(2);
}

#[test]
fn unlock_clears_the_lock_and_burns_steps_up_to_now() {
    let t = TestDir::new("unlock");
    let r = t.run(&["unlock", "alice"]);
    golden!(t, "unlock_no_record", r);
    r.fails(1);

    enrolled(&t, "alice");
    write_state(
        &t,
        "alice",
        &format!("version = 1\nlast_step = 5\nfailures = 7\nlocked_until = {}\nlast_success_time = 1800000000\n", now() + 900),
    );
    let r = t.run(&["unlock", "alice"]);
    golden!(t, "unlock_locked", r);
    r.ok();
    let st = t.state_text("alice").unwrap();
    assert_eq!(common::toml_value(&st, "failures"), "0");
    assert_eq!(common::toml_value(&st, "locked_until"), "0");
    let last: u64 = common::toml_value(&st, "last_step").parse().unwrap();
    assert!(last >= now() / 30 - 1 && last <= now() / 30, "{st}");
    assert!(
        st.contains("last_success_time = 1800000000"),
        "history kept: {st}"
    );

    // A last_step ahead of now is kept (max), never lowered.
    let ahead = now() / 30 + 5;
    write_state(
        &t,
        "alice",
        &format!("version = 1\nlast_step = {ahead}\nfailures = 1\nlocked_until = 0\n"),
    );
    let r = t.run(&["unlock", "alice"]);
    golden!(t, "unlock_failures_only", r);
    assert!(t
        .state_text("alice")
        .unwrap()
        .contains(&format!("last_step = {ahead}")));

    write_state(&t, "alice", "version = 1\nlast_step = \"x\"\n");
    let r = t.run(&["unlock", "alice"]);
    golden!(t, "unlock_repairs_corrupt_state", r);
    r.ok();
    let st = t.state_text("alice").unwrap();
    assert!(st.contains("last_step = "), "{st}");
    t.run(&["status", "alice"]).ok();

    // A journal whose last line is damaged (a power cut mid-append): the repair keeps the
    // highest step an intact line shows, even ahead of now, so no used code becomes valid.
    use pam_totp::store::{State, JOURNAL_HEADER};
    let ahead = now() / 30 + 7;
    let intact = State {
        last_step: Some(ahead),
        ..State::default()
    };
    let damaged = intact.to_entry().replace(&format!("s={ahead}"), "s=1");
    write_state(
        &t,
        "alice",
        &format!("{JOURNAL_HEADER}{}{damaged}", intact.to_entry()),
    );
    t.run(&["unlock", "alice"]).ok();
    assert!(t
        .state_text("alice")
        .unwrap()
        .contains(&format!("last_step = {ahead}")));
}

#[test]
fn generate_docs_writes_man_pages_and_completions() {
    let t = TestDir::new("docs");
    let out = t.path("docs");
    let r = t.run(&["generate-docs", out.to_str().unwrap()]);
    golden!(t, "generate_docs", r);
    r.ok();
    let page = fs::read_to_string(out.join("man/pam-totp.1")).unwrap();
    assert!(page.contains("Quick start"), "after_help is in the page");
    let enroll = fs::read_to_string(out.join("man/pam-totp-enroll.1")).unwrap();
    assert!(
        enroll.contains("\\-\\-qr\\-png") && enroll.contains("pam\\-totp enroll"),
        "{enroll}"
    );
    let bash = fs::read_to_string(out.join("completions/pam-totp.bash")).unwrap();
    assert!(bash.contains("google-authenticator"));
    assert!(
        !bash.contains("generate-docs"),
        "hidden verbs are not completed"
    );
    assert!(out.join("completions/_pam-totp").is_file());
    assert!(out.join("completions/pam-totp.fish").is_file());
    // The man page renders (groff is optional on the host).
    if std::process::Command::new("man")
        .arg("--version")
        .output()
        .is_ok()
    {
        let o = std::process::Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(out.join("man/pam-totp-enroll.1"))
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

#[test]
fn help_is_complete() {
    let t = TestDir::new("help");
    let r = t.run(&["--help"]);
    golden!(t, "help", r);
    r.ok();
    for verb in [
        "enroll", "activate", "status", "list", "disable", "recovery", "unlock", "import",
    ] {
        t.run(&[verb, "--help"]).ok();
    }
    let r = t.run(&["import", "--help"]);
    golden!(t, "help_import", r);
}

#[test]
fn non_root_callers_are_refused_unless_they_own_the_directory() {
    use std::os::unix::fs::chown;
    use std::os::unix::process::CommandExt;
    if !common::is_root() {
        // As an ordinary user: a directory we do not own is refused.
        let t = TestDir::new("nonroot");
        let r = common::Run::from_output(
            &["list"],
            std::process::Command::new(common::BIN)
                .args(["--dir", "/var/lib/pam-totp", "list"])
                .output()
                .unwrap(),
        );
        r.fails(1);
        assert!(r.stderr.contains("must run as root"), "{}", r.stderr);
        drop(t);
        return;
    }
    let t = TestDir::new("nonroot");
    let nobody = 65534;
    let run_as_nobody = |dir: &std::path::Path| {
        let o = std::process::Command::new(common::BIN)
            .args([
                "--dir",
                dir.to_str().unwrap(),
                "--policy",
                "/nonexistent/policy.toml",
                "list",
            ])
            .uid(nobody)
            .gid(nobody)
            .output()
            .unwrap();
        common::Run::from_output(&["list"], o)
    };
    let r = run_as_nobody(&t.state());
    golden!(t, "not_root_refused", r);
    r.fails(1);
    // A directory tree the caller owns is accepted (tests run like this).
    let own = std::path::PathBuf::from(format!(
        "/tmp/pam-totp-cli-test.nobody.{}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&own);
    fs::create_dir_all(own.join("users")).unwrap();
    for d in [own.clone(), own.join("users")] {
        fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        chown(&d, Some(nobody), Some(nobody)).unwrap();
    }
    let r = run_as_nobody(&own);
    let _ = fs::remove_dir_all(&own);
    r.ok();
}
