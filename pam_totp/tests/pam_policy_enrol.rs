//! PAM-level tests of enrolment at login under a policy (SPEC §3 step 4, §6; issue 5),
//! through the real libpam, split from `pam_policy.rs`: the same NSS fixture
//! (`common/policy_fixture.rs`, users and groups as tabled in `pam_policy.rs`), the
//! same stacks, codes from `oathtool` only.
//!
//! Needs root; without it every test prints a notice and passes.

mod common;
#[path = "common/policy_fixture.rs"]
mod policy_fixture;

use common::*;
use policy_fixture::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

// Enrolment at login
// ---------------------------------------------------------------------------

/// What the enrolment text showed.
#[derive(Debug)]
struct Setup {
    qr: Vec<String>,
    key: String,
    uri: String,
    recovery: Vec<String>,
}

fn is_recovery_code(s: &str) -> bool {
    const ALPHABET: &str = "23456789abcdefghjkmnpqrstuvwxyz";
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 3
        && groups
            .iter()
            .all(|g| g.len() == 4 && g.chars().all(|c| ALPHABET.contains(c)))
}

/// Reads the QR code, key, URI and recovery codes from the INFO lines.
fn parse_setup(lines: &[String]) -> Setup {
    let info: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("INFO:"))
        .collect();
    let all = lines.join("\n  ");
    let qr: Vec<String> = info
        .iter()
        .skip_while(|l| !l.starts_with("Scan this QR code"))
        .skip(1)
        .take_while(|l| !l.is_empty() && l.chars().all(|c| " ▀▄█".contains(c)))
        .map(|l| l.to_string())
        .collect();
    assert!(
        qr.len() >= 10 && qr.iter().any(|l| l.contains('█')),
        "expected a QR code of half-block characters after the \"Scan this QR code\" line:\n  {all}"
    );
    let key_line = info
        .iter()
        .find_map(|l| l.strip_prefix("Key: "))
        .unwrap_or_else(|| panic!("no \"Key: \" line:\n  {all}"));
    let groups: Vec<&str> = key_line.split(' ').collect();
    assert!(
        groups.len() >= 8
            && groups[..groups.len() - 1].iter().all(|g| g.len() == 4)
            && groups.iter().all(|g| {
                !g.is_empty()
                    && g.len() <= 4
                    && g.chars()
                        .all(|c| "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".contains(c))
            }),
        "the key must be base32 in groups of 4: {key_line:?}"
    );
    let uri = info
        .iter()
        .find_map(|l| l.find("otpauth://").map(|i| l[i..].to_string()))
        .unwrap_or_else(|| panic!("no otpauth:// URI:\n  {all}"));
    let recovery: Vec<String> = info
        .iter()
        .skip_while(|l| !l.starts_with("Recovery codes"))
        .map(|l| l.trim())
        .filter(|l| is_recovery_code(l))
        .map(str::to_string)
        .collect();
    Setup {
        qr,
        key: groups.concat(),
        uri,
        recovery,
    }
}

/// Decodes the half-block QR code with zbarimg (None when it is not installed).
fn decode_qr(rows: &[String], dir: &Path) -> Option<String> {
    if Command::new("zbarimg").arg("--version").output().is_err() {
        eprintln!("zbarimg not installed: the QR code is not decoded");
        return None;
    }
    const SCALE: usize = 6;
    let width = rows.iter().map(|r| r.chars().count()).max().unwrap_or(0);
    let mut modules: Vec<Vec<bool>> = Vec::new();
    for r in rows {
        let chars: Vec<char> = r.chars().collect();
        let row = |dark: &dyn Fn(char) -> bool| {
            (0..width)
                .map(|x| chars.get(x).is_some_and(|c| dark(*c)))
                .collect::<Vec<bool>>()
        };
        modules.push(row(&|c| c == '▀' || c == '█'));
        modules.push(row(&|c| c == '▄' || c == '█'));
    }
    let mut pbm = format!("P1\n{} {}\n", width * SCALE, modules.len() * SCALE);
    for m in &modules {
        let line: String = m
            .iter()
            .flat_map(|&d| std::iter::repeat_n(if d { "1 " } else { "0 " }, SCALE))
            .collect();
        for _ in 0..SCALE {
            pbm.push_str(&line);
            pbm.push('\n');
        }
    }
    let path = dir.join("qr.pbm");
    fs::write(&path, pbm).expect("write qr.pbm");
    let out = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(&path)
        .output()
        .expect("run zbarimg");
    assert!(
        out.status.success(),
        "zbarimg could not decode the QR code: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_enroll_at_login_then_setup_is_shown_and_a_correct_code_activates_the_record() {
    let f = fixture!("enroll_at_login");
    f.policy(
        "version = 1\nrequire_users = [\"carol\"]\nenroll_at_login = true\n\
         issuer = \"policy-test\"\n",
    );
    settle(30);
    let mut s = f.start("carol");
    let head = s.read_until_prompt();
    assert_eq!(head.last().map(String::as_str), Some(PROMPT), "{head:?}");
    let setup = parse_setup(&head);
    assert!(
        setup.uri.starts_with("otpauth://totp/policy-test:carol?")
            && setup.uri.contains(&format!("secret={}", setup.key))
            && setup.uri.contains("issuer=policy-test"),
        "URI {:?} vs key {:?}",
        setup.uri,
        setup.key
    );
    assert_eq!(setup.recovery.len(), 10, "recovery codes: {setup:?}");
    if let Some(decoded) = decode_qr(&setup.qr, &f.root) {
        assert_eq!(decoded, setup.uri, "the QR code must hold the URI");
    }
    assert!(
        !f.record_path("carol").exists(),
        "no record may exist before the code is confirmed"
    );

    let mut rec = Record::new("carol");
    rec.secret = setup.key.clone();
    let code = code_offset(&rec, 0);
    s.answer(&code);
    let o = s.finish(&f);
    o.expect_result("PAM_SUCCESS")
        .expect_logged(&["enrolled at login (require_users)"]);
    assert!(!o.has_line(&ignored_mark()), "{}", o.describe());

    let path = f.record_path("carol");
    let meta = fs::symlink_metadata(&path).expect("the record exists after enrolment");
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.is_file()),
        (0o600, 0, true),
        "record must be a root-owned 0600 file"
    );
    let text = fs::read_to_string(&path).expect("read record");
    for want in [
        "state = \"active\"".to_string(),
        "user = \"carol\"".to_string(),
        format!("secret = \"{}\"", setup.key),
    ] {
        assert!(text.contains(&want), "record lacks {want}:\n{text}");
    }
    assert!(
        !setup.recovery.iter().any(|c| text.contains(c.as_str())),
        "recovery codes must be stored hashed only:\n{text}"
    );

    // The next login asks for a code of that key; the enrolment's code is spent.
    let o = f.login("carol", &[&code]);
    expect_denied_after_prompt(&o);
    o.expect_logged(&["replay"]);
    let o = f.login("carol", &[&code_offset(&rec, 1)]);
    o.expect_result("PAM_SUCCESS").expect_prompted();
    assert!(infos(&o).is_empty(), "no more setup text\n{}", o.describe());
    // A recovery code shown at enrolment works once.
    f.login("carol", &[&setup.recovery[0]])
        .expect_result("PAM_SUCCESS")
        .expect_logged(&["recovery"]);
    f.login("carol", &[&setup.recovery[0]])
        .expect_result("PAM_AUTH_ERR");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_pending_record_and_enroll_at_login_then_a_correct_code_replaces_it() {
    let f = fixture!("enroll_over_pending");
    f.policy("version = 1\nrequire_all = true\nenroll_at_login = true\n");
    let mut pending = Record::new("carol");
    pending.state = "pending";
    f.write_record(&pending);
    settle(30);
    let mut s = f.start("carol");
    let setup = parse_setup(&s.read_until_prompt());
    let mut rec = Record::new("carol");
    rec.secret = setup.key.clone();
    s.answer(&code_offset(&rec, 0));
    s.finish(&f).expect_result("PAM_SUCCESS");
    let text = fs::read_to_string(f.record_path("carol")).expect("read record");
    assert!(
        text.contains("state = \"active\"")
            && text.contains(&format!("secret = \"{}\"", setup.key)),
        "the active record must hold the key shown at login:\n{text}"
    );
    // The pending key no longer matters.
    if pending.secret != setup.key {
        let o = f.login("carol", &[&code_offset(&pending, 1)]);
        o.expect_result("PAM_AUTH_ERR");
    }
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_enroll_at_login_and_wrong_code_then_denied_and_no_record() {
    let f = fixture!("enroll_wrong");
    f.policy("version = 1\nrequire_groups = [\"wheel\"]\nenroll_at_login = true\n");
    settle(30);
    let mut s = f.start("alice");
    let head = s.read_until_prompt();
    let setup = parse_setup(&head);
    let mut rec = Record::new("alice");
    rec.secret = setup.key.clone();
    s.answer(&wrong_code(&rec, 2));
    let o = s.finish(&f);
    o.expect_result("PAM_AUTH_ERR")
        .expect_denied()
        .expect_logged(&["enrolment at login failed"]);
    assert!(
        !f.record_path("alice").exists() && !f.state_path("alice").exists(),
        "a failed enrolment must leave no record or state"
    );
    // An empty answer outside grace denies too.
    let o = f.login("alice", &[""]);
    o.expect_result("PAM_AUTH_ERR").expect_denied();
    assert!(!f.record_path("alice").exists());
    // Still not enrolled: the next login offers enrolment again.
    let o = f.login("alice", &[]);
    o.expect_denied();
    assert!(
        infos(&o).iter().any(|l| l.starts_with("Key: ")),
        "{}",
        o.describe()
    );
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_enroll_at_login_during_grace_and_empty_answer_then_skipped_with_notice() {
    let f = fixture!("enroll_skip");
    let date = utc_date(now() + 14 * DAY);
    f.policy(&format!(
        "version = 1\nrequire_groups = [\"ops\"]\nenroll_at_login = true\ngrace_until = {date}\n"
    ));
    let mut s = f.start("bob");
    let head = s.read_until_prompt();
    parse_setup(&head);
    assert!(
        head.iter()
            .any(|l| l.starts_with("INFO:") && l.contains("skip") && l.contains(&date)),
        "the setup text should say how to skip, and until when:\n  {}",
        head.join("\n  ")
    );
    s.answer("");
    let o = s.finish(&f);
    expect_ignored(&o);
    let after: Vec<&String> = o
        .lines
        .iter()
        .skip_while(|l| !l.starts_with("PROMPT_"))
        .collect();
    assert!(
        after.iter().any(|l| l.starts_with("INFO:")
            && l.contains("skipped")
            && l.contains(&format!("becomes mandatory on {date}"))),
        "expected a skip notice naming {date}\n{}",
        o.describe()
    );
    o.expect_logged(&["enrolment skipped"]);
    assert!(!f.record_path("bob").exists(), "skipping creates no record");
}

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_enroll_at_login_and_require_all_then_unknown_user_gets_only_the_plain_prompt() {
    let f = fixture!("enroll_unknown");
    f.policy("version = 1\nrequire_all = true\nenroll_at_login = true\n");
    let o = f.login(UNKNOWN, &["123456"]);
    expect_denied_after_prompt(&o);
    assert!(!f.record_path(UNKNOWN).exists());
}

// ---------------------------------------------------------------------------

#[test]
#[ignore = "needs root (records must be root-owned): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn given_caller_file_size_limit_0_then_enrolment_at_login_still_stores_record_and_step() {
    let f = fixture!("enroll_fsize0");
    f.policy("version = 1\nrequire_all = true\nenroll_at_login = true\n");
    // As `su` run by a user who set `ulimit -S -f 0` and ignored SIGXFSZ (issue 12, F1).
    *f.launcher.lock().expect("launcher lock") = vec![
        "/bin/sh".into(),
        "-c".into(),
        "trap '' XFSZ; exec prlimit --fsize=0:unlimited -- \"$@\"".into(),
        "sh".into(),
    ];
    settle(30);
    let mut s = f.start("carol");
    let setup = parse_setup(&s.read_until_prompt());
    let mut rec = Record::new("carol");
    rec.secret = setup.key.clone();
    let code = code_offset(&rec, 0);
    s.answer(&code);
    s.finish(&f).expect_result("PAM_SUCCESS");
    let text = fs::read_to_string(f.record_path("carol")).expect("the record exists");
    assert!(text.contains("state = \"active\""), "{text}");
    f.launcher.lock().expect("launcher lock").clear();
    f.login("carol", &[&code]).expect_result("PAM_AUTH_ERR");
}
