//! Imports from files made by the real tools: `google-authenticator` (libpam-google-authenticator)
//! and a pam_oath users file, including a line that pam_oath itself rewrote after a login.
//! (Logging in through pam_totp after an import is in pam_roundtrip.rs.)

mod common;

use common::pam::{harness_available, PamEnv};
use common::{code, now, settle, toml_value, write_file, TestDir};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `google-authenticator` non-interactively, writing `file`.
pub fn google_authenticator(file: &Path, extra: &[&str]) {
    let _ = fs::remove_file(file);
    let out = Command::new("google-authenticator")
        .args(["-f", "-q", "-Q", "NONE", "-C", "-s"])
        .arg(file)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run google-authenticator (apt-get install libpam-google-authenticator)");
    assert!(
        out.status.success() && file.is_file(),
        "google-authenticator failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fingerprint(p: &Path) -> (Vec<u8>, u32, i64, i64) {
    let m = fs::metadata(p).unwrap();
    (fs::read(p).unwrap(), m.mode(), m.mtime(), m.mtime_nsec())
}

#[test]
fn google_authenticator_totp_file_becomes_an_active_record() {
    let t = TestDir::new("import-ga");
    let src = t.path("ga");
    google_authenticator(
        &src,
        &["-t", "-d", "-r", "3", "-R", "30", "-w", "3", "-e", "5"],
    );
    let before = fingerprint(&src);
    let text = String::from_utf8(before.0.clone()).unwrap();
    let key = text.lines().next().unwrap().to_string();

    let r = t.run(&[
        "import",
        "google-authenticator",
        "alice",
        src.to_str().unwrap(),
        "--issuer",
        "build-01",
    ]);
    golden!(t, "import_ga", r);
    r.ok();
    assert_eq!(fingerprint(&src), before, "the source file is untouched");
    let rec = t.record_text("alice");
    assert_eq!(toml_value(&rec, "state"), "active");
    assert_eq!(toml_value(&rec, "secret"), key);
    assert_eq!(
        rec.matches("sha256:").count(),
        5,
        "scratch codes became recovery codes"
    );
    // Nothing used yet: no last step.
    assert!(!t
        .state_text("alice")
        .unwrap_or_default()
        .contains("last_step"));

    let j = t.run(&["status", "alice", "--json"]).ok().json();
    assert_eq!(
        (j["state"].as_str(), j["recovery_codes_left"].as_u64()),
        (Some("active"), Some(5))
    );

    // An active record is refused without --force.
    let r = t.run(&[
        "import",
        "google-authenticator",
        "alice",
        src.to_str().unwrap(),
        "--issuer",
        "build-01",
    ]);
    golden!(t, "import_ga_active_refused", r);
    r.fails(1);
    t.run(&[
        "import",
        "google-authenticator",
        "alice",
        src.to_str().unwrap(),
        "--issuer",
        "build-01",
        "--force",
    ])
    .ok();
    assert_eq!(fingerprint(&src), before);
}

#[test]
fn google_authenticator_step_size_window_and_used_steps() {
    let t = TestDir::new("import-ga-opts");
    let src = t.path("ga");
    google_authenticator(&src, &["-t", "-D", "-u", "-S", "60", "-w", "17", "-e", "2"]);
    let r = t.run(&[
        "import",
        "google-authenticator",
        "bob",
        src.to_str().unwrap(),
        "--issuer",
        "build-01",
    ]);
    golden!(t, "import_ga_step60_window17", r);
    r.ok();
    assert_eq!(toml_value(&t.record_text("bob"), "period"), "60");

    // DISALLOW_REUSE steps (as pam_google_authenticator records them) become last_step.
    let mut text = fs::read_to_string(&src).unwrap();
    text = text.replacen(
        "\" TOTP_AUTH",
        "\" DISALLOW_REUSE 29000000 29000002 29000001\n\" TOTP_AUTH",
        1,
    );
    let copy = t.path("ga-used");
    write_file(&copy, text.as_bytes(), 0o400);
    t.run(&[
        "import",
        "google-authenticator",
        "bob",
        copy.to_str().unwrap(),
        "--force",
        "--issuer",
        "x",
    ])
    .ok();
    assert!(t
        .state_text("bob")
        .unwrap()
        .contains("last_step = 29000002"));
}

#[test]
fn google_authenticator_refusals() {
    let t = TestDir::new("import-ga-bad");
    let hotp = t.path("hotp");
    google_authenticator(&hotp, &["-c", "-u", "-w", "3"]);
    let r = t.run(&[
        "import",
        "google-authenticator",
        "alice",
        hotp.to_str().unwrap(),
        "--issuer",
        "x",
    ]);
    golden!(t, "import_ga_hotp", r);
    r.fails(1);

    let short = t.path("short-step");
    google_authenticator(&short, &["-t", "-D", "-u", "-S", "10", "-w", "3"]);
    let r = t.run(&[
        "import",
        "google-authenticator",
        "alice",
        short.to_str().unwrap(),
        "--issuer",
        "x",
    ]);
    golden!(t, "import_ga_step_10", r);
    r.fails(1);

    let garbage = t.path("garbage");
    write_file(
        &garbage,
        b"JBSWY3DPEHPK3PXP\n\" TOTP_AUTH\nnot a scratch code\n",
        0o600,
    );
    let r = t.run(&[
        "import",
        "google-authenticator",
        "alice",
        garbage.to_str().unwrap(),
        "--issuer",
        "x",
    ]);
    golden!(t, "import_ga_garbage", r);
    r.fails(1);

    let link = t.path("link");
    std::os::unix::fs::symlink(&garbage, &link).unwrap();
    let r = t.run(&[
        "import",
        "google-authenticator",
        "alice",
        link.to_str().unwrap(),
        "--issuer",
        "x",
    ]);
    golden!(t, "import_ga_symlink", r);
    r.fails(1);

    let r = t.run(&[
        "import",
        "google-authenticator",
        "alice",
        t.path("missing").to_str().unwrap(),
    ]);
    golden!(t, "import_ga_missing", r);
    r.fails(1);

    // Default file: ~USER/.google_authenticator through NSS (nobody's home does not exist).
    let r = t.run(&["import", "google-authenticator", "nobody", "--issuer", "x"]);
    r.fails(1);
    assert!(
        r.stderr.contains("/nonexistent/.google_authenticator"),
        "{}",
        r.stderr
    );
    let r = t.run(&[
        "import",
        "google-authenticator",
        "no_such_user_x",
        "--issuer",
        "x",
    ]);
    golden!(t, "import_ga_unknown_user", r);
    r.fails(1);
    assert!(!t.users().join("alice.toml").exists());
}

const KEY_A: &str = "3132333435363738393031323334353637383930";
const KEY_B: &str = "00112233445566778899aabbccddeeff00112233";

#[test]
fn oath_users_file_imports_totp_lines_and_lists_hotp() {
    let t = TestDir::new("import-oath");
    let file = t.path("users.oath");
    let text = format!(
        "# pam_oath users\n\
         HOTP/T30 alice - {KEY_A}\n\
         HOTP/T30/8\tbob\t-\t{KEY_B}\n\
         HOTP/T60/6 carol - {KEY_A}\n\
         HOTP dave - {KEY_A}\n\
         HOTP/E/8 erin - {KEY_A} 5\n\
         HOTP/T30 frank 1234 {KEY_A}\n\
         HOTP/T30/7 gina - {KEY_A}\n\
         HOTP/T30 alice - {KEY_B}\n"
    );
    write_file(&file, text.as_bytes(), 0o600);
    let before = fingerprint(&file);
    let r = t.run(&[
        "import",
        "oath",
        file.to_str().unwrap(),
        "--issuer",
        "build-01",
    ]);
    golden!(t, "import_oath_mixed", r);
    r.fails(1);
    assert_eq!(fingerprint(&file), before, "the source file is untouched");
    for (user, digits, period) in [
        ("alice", "6", "30"),
        ("bob", "8", "30"),
        ("carol", "6", "60"),
    ] {
        let rec = t.record_text(user);
        assert_eq!(toml_value(&rec, "state"), "active", "{user}");
        assert_eq!(toml_value(&rec, "digits"), digits, "{user}");
        assert_eq!(toml_value(&rec, "period"), period, "{user}");
    }
    assert_eq!(
        toml_value(&t.record_text("alice"), "secret"),
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    );
    for user in ["dave", "erin", "frank", "gina"] {
        assert!(!t.users().join(format!("{user}.toml")).exists(), "{user}");
    }

    // --user: just that line; already active → refused without --force.
    let r = t.run(&[
        "import",
        "oath",
        file.to_str().unwrap(),
        "--user",
        "bob",
        "--issuer",
        "build-01",
    ]);
    golden!(t, "import_oath_user_active", r);
    r.fails(1);
    let r = t.run(&[
        "import",
        "oath",
        file.to_str().unwrap(),
        "--user",
        "bob",
        "--force",
        "--issuer",
        "build-01",
    ]);
    golden!(t, "import_oath_user_force", r);
    r.ok();
    let r = t.run(&[
        "import",
        "oath",
        file.to_str().unwrap(),
        "--user",
        "dave",
        "--issuer",
        "build-01",
    ]);
    golden!(t, "import_oath_user_hotp", r);
    r.fails(1);
    let r = t.run(&[
        "import",
        "oath",
        file.to_str().unwrap(),
        "--user",
        "zoe",
        "--issuer",
        "build-01",
    ]);
    golden!(t, "import_oath_user_missing", r);
    r.fails(1);
}

#[test]
fn oath_file_with_only_totp_lines_exits_0() {
    let t = TestDir::new("import-oath-ok");
    let file = t.path("users.oath");
    write_file(
        &file,
        format!("HOTP/T30 alice - {KEY_A}\nHOTP dave - {KEY_A}\n").as_bytes(),
        0o600,
    );
    let r = t.run(&[
        "import",
        "oath",
        file.to_str().unwrap(),
        "--issuer",
        "build-01",
    ]);
    golden!(t, "import_oath_ok", r);
    r.ok();

    let only_hotp = t.path("hotp.oath");
    write_file(
        &only_hotp,
        format!("HOTP dave - {KEY_A}\n").as_bytes(),
        0o600,
    );
    let r = t.run(&[
        "import",
        "oath",
        only_hotp.to_str().unwrap(),
        "--issuer",
        "build-01",
    ]);
    golden!(t, "import_oath_nothing", r);
    r.fails(1);
}

/// pam_oath rewrites a user's line after a login with the code used and the local time; the
/// import keeps that step used.
#[test]
#[ignore = "needs root, tests/pam-harness and libpam-oath: run by `make test`"]
fn oath_line_rewritten_by_pam_oath_keeps_the_used_step() {
    assert!(
        harness_available()
            && (Path::new("/lib/x86_64-linux-gnu/security/pam_oath.so").exists()
                || Path::new("/usr/lib/x86_64-linux-gnu/security/pam_oath.so").exists()),
        "needs tests/pam-harness and libpam-oath (tests/deps.sh installs them)"
    );
    let t = TestDir::new("import-oath-real");
    let file = t.path("users.oath");
    write_file(
        &file,
        format!("HOTP/T30 alice - {KEY_A}\n").as_bytes(),
        0o600,
    );
    let pam = PamEnv::new(
        &t.root,
        &format!(
            "auth required pam_oath.so usersfile={} window=3\n",
            file.display()
        ),
    );
    settle(30, 8);
    let secret_b32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let used = code(secret_b32, 1);
    let login = pam.login_plain("alice", &[&used]);
    assert_eq!(login.result, "PAM_SUCCESS", "{}", login.describe());
    let rewritten = fs::read_to_string(&file).unwrap();
    assert!(
        rewritten.contains(&used) && rewritten.trim_end().ends_with('L'),
        "{rewritten}"
    );

    let r = t.run(&[
        "import",
        "oath",
        file.to_str().unwrap(),
        "--issuer",
        "build-01",
    ]);
    golden!(t, "import_oath_rewritten_by_pam_oath", r);
    r.ok();
    let step = now() / 30 + 1;
    assert!(
        t.state_text("alice")
            .unwrap()
            .contains(&format!("last_step = {step}")),
        "{:?}",
        t.state_text("alice")
    );
}

/// `" DISALLOW_REUSE 99999999999` would make every code a replay until the year 49503.
#[test]
fn given_a_disallow_reuse_step_from_the_future_then_the_import_is_refused() {
    let t = TestDir::new("import-ga-future");
    let src = t.path("ga");
    write_file(
        &src,
        b"E4S56IIG67OH36LFYVXARI3G2A\n\" DISALLOW_REUSE 58803330 99999999999\n\" TOTP_AUTH\n",
        0o600,
    );
    let r = t.run(&[
        "import",
        "google-authenticator",
        "alice",
        src.to_str().unwrap(),
    ]);
    r.fails(1);
    assert!(
        r.stderr
            .contains("DISALLOW_REUSE lists the time step 99999999999")
            && r.stderr.contains("in the future")
            && r.stderr
                .contains("remove that step from the DISALLOW_REUSE line"),
        "{}",
        r.transcript()
    );
    assert!(!t.users().join("alice.toml").exists(), "nothing imported");
}

#[test]
fn given_a_pam_oath_last_otp_time_in_the_future_then_the_line_is_refused() {
    let t = TestDir::new("import-oath-future");
    let file = t.path("users.oath");
    let text = format!("HOTP/T30 alice - {KEY_A} 0 755224 2100-01-01T00:00:00L\n");
    write_file(&file, text.as_bytes(), 0o600);
    let r = t.run(&["import", "oath", file.to_str().unwrap(), "--issuer", "b"]);
    r.fails(1);
    assert!(
        r.stderr
            .contains("the last-OTP time 2100-01-01T00:00:00L lies in the future"),
        "{}",
        r.transcript()
    );
    assert!(!t.users().join("alice.toml").exists(), "nothing imported");
}

/// Whoever can write a pam_oath users file chooses the keys of everyone in it.
#[test]
fn given_an_oath_file_others_could_write_then_refused_unless_force() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestDir::new("import-oath-trust");
    let line = format!("HOTP/T30 alice - {KEY_A}\n");
    let open_dir = t.path("open");
    fs::create_dir(&open_dir).unwrap();
    fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let mut cases = vec![
        (t.path("world.oath"), 0o666, "writable by group or others"),
        (
            open_dir.join("users.oath"),
            0o600,
            "writable by group or others",
        ),
    ];
    if common::is_root() {
        cases.push((t.path("mallory.oath"), 0o600, "owned by uid 1000"));
    }
    for (file, mode, why) in cases {
        write_file(&file, line.as_bytes(), mode);
        if file.ends_with("mallory.oath") {
            std::os::unix::fs::chown(&file, Some(1000), Some(1000)).unwrap();
        }
        let f = file.to_str().unwrap();
        let r = t.run(&["import", "oath", f, "--issuer", "b"]);
        r.fails(1);
        assert!(
            r.stderr.contains("refusing to import from") && r.stderr.contains(why),
            "{}",
            r.transcript()
        );
        assert!(!t.users().join("alice.toml").exists(), "nothing imported");

        let r = t.run(&["import", "oath", f, "--issuer", "b", "--force"]);
        r.ok();
        assert!(
            r.stderr.contains("warning:") && r.stderr.contains(why),
            "{}",
            r.transcript()
        );
        assert!(t.users().join("alice.toml").exists());
        t.run(&["disable", "alice"]).ok();
    }
}
