//! Round trips through the real module: records written by the CLI, logins through libpam
//! (helper-1's harness, tests/pam-harness), codes from `oathtool`.
//!
//! Needs root (records must be root-owned), the harness and the built module (`$PAM_TOTP_SO`
//! as `make test` sets it, or the .so cargo built); without root every test prints a notice and
//! passes.

mod common;

use common::pam::{harness_available, module_so, Login, PamEnv};
use common::{code, now, settle, toml_value, write_file, TestDir};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The module, checked to export the PAM entry points.
fn module() -> Option<PathBuf> {
    // #[ignore]d without root; asked for anyway, they fail rather than pass having run nothing.
    assert!(
        common::is_root() && harness_available(),
        "these tests need root and tests/pam-harness (gcc, libpam0g-dev)"
    );
    let so = module_so().unwrap_or_else(|| {
        panic!(
            "the PAM module is not built: run `cargo build --release -p pam_totp` or set \
             PAM_TOTP_SO"
        )
    });
    assert!(
        common::pam::exports_pam(&so),
        "{} has no PAM entry points (not the PAM module?): rebuild it with \
         `cargo build --release -p pam_totp` and set PAM_TOTP_SO",
        so.display()
    );
    Some(so)
}

fn setup(name: &str) -> Option<(TestDir, PamEnv)> {
    let so = module()?;
    let t = TestDir::new(name);
    fs::set_permissions(&t.root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pam = PamEnv::totp(&t.root, &so, &t.state(), &t.policy());
    Some((t, pam))
}

#[track_caller]
fn accepted(l: &Login) {
    assert_eq!(l.result, "PAM_SUCCESS", "{}", l.describe());
    assert!(l.prompted() && !ignored(l), "{}", l.describe());
}

#[track_caller]
fn denied(l: &Login) {
    assert!(
        l.result != "PAM_SUCCESS" && !ignored(l),
        "expected a denial: {}",
        l.describe()
    );
}

fn ignored(l: &Login) -> bool {
    l.lines.iter().any(|x| x == "INFO:MODULE-RETURNED-IGNORE")
}

#[test]
#[ignore = "needs root, tests/pam-harness and the built module: run by `make test`, or `cargo test -- --include-ignored` as root"]
fn enroll_activate_login_recovery_disable() {
    let Some((t, pam)) = setup("rt") else { return };
    let j = t
        .run(&["enroll", "alice", "--json", "--issuer", "build-01"])
        .ok()
        .json();
    let secret = j["secret"].as_str().unwrap().to_string();
    let codes: Vec<String> = j["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();

    // Pending and not required: not asked.
    let l = pam.login("alice", &[]);
    assert!(ignored(&l) && !l.prompted(), "{}", l.describe());

    settle(30, 10);
    t.run(&["activate", "alice", &code(&secret, 0)]).ok();
    // The code used to activate cannot log in; the next step's code can, once.
    denied(&pam.login("alice", &[&code(&secret, 0)]));
    let next = code(&secret, 1);
    accepted(&pam.login("alice", &[&next]));
    denied(&pam.login("alice", &[&next]));

    // A recovery code works once (typed in upper case, without dashes).
    let typed = codes[0].replace('-', "").to_uppercase();
    accepted(&pam.login("alice", &[&typed]));
    denied(&pam.login("alice", &[&codes[0]]));
    let j = t.run(&["status", "alice", "--json"]).ok().json();
    assert_eq!(j["recovery_codes_left"], 9);
    assert_eq!(j["last_success"]["rhost"], "192.0.2.10");

    // A new set invalidates the old one.
    let new: Vec<String> = t
        .run(&["recovery", "alice", "--count", "2", "--json"])
        .ok()
        .json()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    denied(&pam.login("alice", &[&codes[1]]));
    accepted(&pam.login("alice", &[&new[1]]));

    // Disabled: no longer asked.
    t.run(&["disable", "alice"]).ok();
    let l = pam.login("alice", &[]);
    assert!(ignored(&l) && !l.prompted(), "{}", l.describe());
}

#[test]
#[ignore = "needs root, tests/pam-harness and the built module: run by `make test`, or `cargo test -- --include-ignored` as root"]
fn forced_re_enrolment_denies_until_activated() {
    let Some((t, pam)) = setup("rt-force") else {
        return;
    };
    let old = t
        .run(&["enroll", "bob", "--json", "--issuer", "x"])
        .ok()
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    settle(30, 10);
    t.run(&["activate", "bob", &code(&old, 0)]).ok();
    let new = t
        .run(&["enroll", "bob", "--force", "--json", "--issuer", "x"])
        .ok()
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    // Old key dead at once; new key not yet active; asked and denied either way.
    let l = pam.login("bob", &[&code(&old, 1)]);
    denied(&l);
    assert!(l.prompted(), "{}", l.describe());
    assert!(
        l.logs
            .iter()
            .any(|x| x.contains("re-enrolment pending activation")),
        "{}",
        l.describe()
    );
    denied(&pam.login("bob", &[&code(&new, 1)]));
    // The state still holds the step the old key used (now): activation needs a later one.
    t.run(&["activate", "bob", &code(&new, 1)]).ok();
    settle(30, 30); // into the next step, so that a step after the activation's is in the window
    accepted(&pam.login("bob", &[&code(&new, 1)]));
}

#[test]
#[ignore = "needs root, tests/pam-harness and the built module: run by `make test`, or `cargo test -- --include-ignored` as root"]
fn unlock_after_lockout_and_after_a_corrupt_state() {
    let Some((t, pam)) = setup("rt-unlock") else {
        return;
    };
    t.write_policy(
        "version = 1\n[throttle]\nattempts = 2\nlock_seconds = 600\nmax_lock_seconds = 600\n",
    );
    let secret = t
        .run(&["enroll", "carol", "--json", "--issuer", "x"])
        .ok()
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    settle(30, 12);
    t.run(&["activate", "carol", &code(&secret, 0)]).ok();
    denied(&pam.login("carol", &["000000x"]));
    denied(&pam.login("carol", &["000000y"]));
    assert_eq!(
        t.run(&["status", "carol", "--json"]).ok().json()["state"],
        "locked"
    );
    denied(&pam.login("carol", &[&code(&secret, 1)]));
    t.run(&["unlock", "carol"]).ok();
    accepted(&pam.login("carol", &[&code(&secret, 1)]));

    // A corrupt state refuses logins until `unlock` repairs it (in the next step, so that the
    // repaired state's "current step" is the one the last accepted code belonged to).
    settle(30, 30);
    write_file(&t.users().join("carol.state"), b"garbage", 0o600);
    let l = pam.login("carol", &[&code(&secret, 1)]);
    assert_eq!(l.result, "PAM_AUTHINFO_UNAVAIL", "{}", l.describe());
    t.run(&["unlock", "carol"]).ok();
    // The repaired state marks the current step used: an old code is refused, the next works.
    denied(&pam.login("carol", &[&code(&secret, 0)]));
    accepted(&pam.login("carol", &[&code(&secret, 1)]));
}

/// `google-authenticator` makes the file; pam_google_authenticator logs in once (recording the
/// step in DISALLOW_REUSE); after the import pam_totp refuses that code, accepts the next and
/// each scratch code once.
#[test]
#[ignore = "needs root, tests/pam-harness and the built module: run by `make test`, or `cargo test -- --include-ignored` as root"]
fn google_authenticator_import_logs_in() {
    let Some((t, pam)) = setup("rt-ga") else {
        return;
    };
    let ga_so = [
        "/lib/x86_64-linux-gnu/security/pam_google_authenticator.so",
        "/usr/lib/x86_64-linux-gnu/security/pam_google_authenticator.so",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    let src = t.path("ga");
    let out = Command::new("google-authenticator")
        .args([
            "-t", "-d", "-f", "-q", "-Q", "NONE", "-C", "-r", "3", "-R", "30", "-w", "3", "-e",
            "3", "-s",
        ])
        .arg(&src)
        .output()
        .expect("google-authenticator");
    assert!(out.status.success());
    let text = fs::read_to_string(&src).unwrap();
    let secret = text.lines().next().unwrap().to_string();
    let scratch: Vec<String> = text
        .lines()
        .filter(|l| l.len() == 8 && l.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
        .collect();
    assert_eq!(scratch.len(), 3);

    settle(30, 12);
    let used = code(&secret, 0);
    if let Some(ga_so) = ga_so {
        let ga = PamEnv::new(
            &t.root.join("ga-pam"),
            &format!("auth required {ga_so} secret={} user=root\n", src.display()),
        );
        let l = ga.login("dave", &[&used]);
        assert_eq!(l.result, "PAM_SUCCESS", "{}", l.describe());
        assert!(
            fs::read_to_string(&src)
                .unwrap()
                .contains("DISALLOW_REUSE "),
            "step recorded"
        );
    }
    t.run(&[
        "import",
        "google-authenticator",
        "dave",
        src.to_str().unwrap(),
        "--issuer",
        "x",
    ])
    .ok();
    if ga_so.is_some() {
        denied(&pam.login("dave", &[&used]));
    }
    accepted(&pam.login("dave", &[&code(&secret, 1)]));
    accepted(&pam.login("dave", &[&scratch[0]]));
    denied(&pam.login("dave", &[&scratch[0]]));
    accepted(&pam.login("dave", &[&scratch[2]]));
}

/// A pam_oath users file, after pam_oath itself logged the user in: the imported record logs in
/// with the next code, not with the one pam_oath accepted.
#[test]
#[ignore = "needs root, tests/pam-harness and the built module: run by `make test`, or `cargo test -- --include-ignored` as root"]
fn oath_import_logs_in() {
    let Some((t, pam)) = setup("rt-oath") else {
        return;
    };
    let file = t.path("users.oath");
    let key_hex = "3132333435363738393031323334353637383930";
    let b32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    write_file(
        &file,
        format!("HOTP/T30 erin - {key_hex}\nHOTP/T60/8 fred - {key_hex}\nHOTP gus - {key_hex}\n")
            .as_bytes(),
        0o600,
    );
    let oath = PamEnv::new(
        &t.root.join("oath-pam"),
        &format!(
            "auth required pam_oath.so usersfile={} window=3\n",
            file.display()
        ),
    );
    settle(30, 12);
    let used = code(b32, 0);
    let l = oath.login("erin", &[&used]);
    assert_eq!(l.result, "PAM_SUCCESS", "{}", l.describe());

    let r = t.run(&["import", "oath", file.to_str().unwrap(), "--issuer", "x"]);
    r.ok();
    assert!(r.stderr.contains("gus"), "HOTP line listed: {}", r.stderr);
    denied(&pam.login("erin", &[&used]));
    accepted(&pam.login("erin", &[&code(b32, 1)]));
    let fred = common::oathtool(b32, "SHA1", 8, 60, now());
    accepted(&pam.login("fred", &[&fred]));
    let l = pam.login("gus", &[]);
    assert!(ignored(&l), "HOTP user not imported: {}", l.describe());
    assert_eq!(toml_value(&t.record_text("fred"), "digits"), "8");
}

/// Issue 5's goal through the real module, with NSS users and groups from private copies of
/// /etc/passwd and /etc/group bind-mounted in the sandbox (the host's files untouched).
#[test]
#[ignore = "needs root, tests/pam-harness and the built module: run by `make test`, or `cargo test -- --include-ignored` as root"]
fn three_policy_commands_make_wheel_members_enrol() {
    let Some((t, pam)) = setup("rt-policy") else {
        return;
    };
    let mut passwd = fs::read_to_string("/etc/passwd").unwrap();
    passwd.push_str("wheelie:x:4242:4242::/nonexistent:/usr/sbin/nologin\n");
    passwd.push_str("plainuser:x:4243:4243::/nonexistent:/usr/sbin/nologin\n");
    let mut group = String::new();
    let mut had_wheel = false;
    for line in fs::read_to_string("/etc/group").unwrap().lines() {
        if line.starts_with("wheel:") {
            had_wheel = true;
            let sep = if line.ends_with(':') { "" } else { "," };
            group.push_str(&format!("{line}{sep}wheelie\n"));
        } else {
            group.push_str(line);
            group.push('\n');
        }
    }
    if !had_wheel {
        group.push_str("wheel:x:4244:wheelie\n");
    }
    group.push_str("wheelie:x:4242:\nplainuser:x:4243:\n");
    write_file(&t.path("passwd"), passwd.as_bytes(), 0o644);
    write_file(&t.path("group"), group.as_bytes(), 0o644);
    let binds = format!(
        "{}:/etc/passwd {}:/etc/group",
        t.path("passwd").display(),
        t.path("group").display()
    );
    let env = [("EXTRA_RO_BINDS", binds.as_str())];

    // Nobody uses 2FA: not asked.
    let l = pam.login_with("wheelie", &[], &env);
    assert!(ignored(&l) && !l.prompted(), "{}", l.describe());

    for args in [
        &["policy", "require", "--group", "wheel"][..],
        &["policy", "grace", "--days", "14"],
        &["policy", "enroll-at-login", "on"],
    ] {
        t.run(args).ok();
    }
    let date = {
        let j = t.run(&["policy", "show", "--json"]).ok().json();
        j["grace_until"].as_str().unwrap()[..10].to_string()
    };

    // A wheel member is told about the deadline (or offered enrolment, which an empty answer
    // skips during grace) and gets in; others are not concerned.
    let l = pam.login_with("wheelie", &["", ""], &env);
    if std::env::var_os("PAM_TOTP_TEST_VERBOSE").is_some() {
        eprintln!("{}", l.describe());
    }
    assert!(ignored(&l), "{}", l.describe());
    assert!(
        l.lines
            .iter()
            .any(|x| x.starts_with("INFO:") && x.contains(&date)),
        "the notice names {date}: {}",
        l.describe()
    );
    let l = pam.login_with("plainuser", &[], &env);
    assert!(ignored(&l) && !l.prompted(), "{}", l.describe());
    assert!(!l
        .lines
        .iter()
        .any(|x| x.starts_with("INFO:") && x.contains(&date)));

    // `status` in the same namespace reports the rule and the grace.
    let out = Command::new("bash")
        .arg(common::pam::workspace_root().join("tests/lib/sandbox.sh"))
        .arg(common::BIN)
        .args(["status", "wheelie", "--json"])
        .env("PAM_TOTP_DIR", t.state())
        .env("PAM_TOTP_POLICY", t.policy())
        .env("EXTRA_RO_BINDS", &binds)
        .output()
        .unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(j["required_by"], "require_groups:wheel");
    assert_eq!(j["grace_until"].as_str().unwrap()[..10], date);
}
