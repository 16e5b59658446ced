//! `pam-totp VERB --conversation` (self-service driven by a program, e.g. a web page): JSON
//! events on stdout, JSON answers on stdin, against a scripted fake helper
//! (`PAM_TOTP_SELF_HELPER`) that logs every line the front-end sends it. Run by root, the CLI
//! runs as `nobody` (self-service is for ordinary users). And the admin verbs' `--json`.

mod common;

use common::{Run, TestDir, BIN};
use serde_json::{json, Value};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const NOBODY: u32 = 65534;

/// A fake helper: `body` is sh, with `hear` (read and log one line from the front-end; end of
/// input: log "EOF" and exit 1) and `say JSON` (one reply line).
fn fake_helper(t: &TestDir, body: &str) -> PathBuf {
    // nobody must reach the script and the log.
    fs::set_permissions(&t.root, fs::Permissions::from_mode(0o755)).unwrap();
    let log = t.path("heard.log");
    common::write_file(&log, b"", 0o666);
    let path = t.path("fake-helper");
    let script = format!(
        "#!/bin/sh\nLOG='{}'\nhear() {{ IFS= read -r l || {{ echo EOF >> \"$LOG\"; exit 1; }}; \
         printf '%s\\n' \"$l\" >> \"$LOG\"; }}\nsay() {{ printf '%s\\n' \"$1\"; }}\nhear\n{body}\n",
        log.display()
    );
    common::write_file(&path, script.as_bytes(), 0o755);
    path
}

/// What the fake helper heard after the opening line.
fn heard(t: &TestDir) -> Vec<Value> {
    fs::read_to_string(t.path("heard.log"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.into())))
        .collect()
}

/// The CLI as an ordinary user (no --dir/--policy: self-service), with `input` on stdin.
fn converse(helper: &Path, args: &[&str], input: &str) -> (Run, Vec<Value>) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("PAM_TOTP_DIR")
        .env_remove("PAM_TOTP_POLICY")
        .env("PAM_TOTP_SELF_HELPER", helper)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if common::is_root() {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let mut child = cmd.spawn().unwrap();
    // The CLI may stop reading early (a refusal): a broken pipe here is fine.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let run = Run::from_output(args, child.wait_with_output().unwrap());
    let events = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (run, events)
}

const PASSWORD_PROMPT: &str = r#"say '{"type":"prompt","text":"Password: ","echo":false}'"#;

fn status_object() -> Value {
    json!({"user": "nobody", "state": "active", "algorithm": "SHA1", "digits": 6,
        "period": 30, "created": "2026-01-02T03:04:05Z", "last_success": null,
        "locked_until": null, "recovery_codes_left": 9, "required": false, "required_by": null,
        "grace_until": null, "clock_ahead": null, "clock_offset_seconds": 0})
}

#[test]
fn a_status_conversation_is_a_status_event_and_done() {
    let t = TestDir::new("conv-status");
    let reply = json!({"type": "status", "status": status_object(), "extra": {"issuer": "h",
        "type_text": null, "failures": 0, "replaces_active": false, "period": 30,
        "self_service": true}});
    let helper = fake_helper(
        &t,
        &format!("say '{reply}'\nsay '{{\"type\":\"done\",\"message\":\"\"}}'"),
    );
    let (r, events) = converse(&helper, &["status", "--conversation"], "");
    assert_eq!(r.code, 0, "{}", r.transcript());
    assert_eq!(
        events,
        vec![
            json!({"event": "status", "status": status_object()}),
            json!({"event": "done", "message": ""}),
        ]
    );
    assert_eq!(r.stderr, "");
}

const URI: &str = "otpauth://totp/host:nobody?secret=JBSWY3DPEHPK3PXP&issuer=host&algorithm=SHA1&digits=6&period=30";

#[test]
fn an_enrol_conversation_shows_the_key_with_a_qr_svg_and_the_codes() {
    let t = TestDir::new("conv-enroll");
    let key = json!({"type": "new_key", "user": "nobody", "issuer": "host", "account": "nobody",
        "secret": "JBSWY3DPEHPK3PXP", "algorithm": "SHA1", "digits": 6, "period": 30,
        "otpauth_uri": URI, "recovery_codes": ["abcd-efgh-ijkm", "npqr-stuv-wxyz"]});
    let helper = fake_helper(
        &t,
        &format!(
            "{PASSWORD_PROMPT}\nhear\nsay '{key}'\n\
             say '{{\"type\":\"prompt\",\"text\":\"Code from the app: \",\"echo\":false}}'\nhear\n\
             say '{{\"type\":\"info\",\"text\":\"almost\"}}'\n\
             say '{{\"type\":\"done\",\"message\":\"Two-factor login is on.\"}}'"
        ),
    );
    let (r, events) = converse(
        &helper,
        &["enroll", "--conversation"],
        "{\"answer\":\"hunter2\"}\n{\"answer\":\"123456\"}\n",
    );
    assert_eq!(r.code, 0, "{}", r.transcript());
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "prompt",
            "new_key",
            "recovery_codes",
            "prompt",
            "info",
            "done"
        ]
    );
    assert_eq!(
        events[0],
        json!({"event": "prompt", "text": "Password: ", "echo": false})
    );
    let k = &events[1];
    let svg = k["qr_svg"].as_str().unwrap();
    assert!(svg.contains("<svg"), "{svg}");
    let mut shown = k.clone();
    shown.as_object_mut().unwrap().remove("qr_svg");
    assert_eq!(
        shown,
        json!({"event": "new_key", "user": "nobody", "issuer": "host", "account": "nobody",
            "secret": "JBSWY3DPEHPK3PXP", "key_groups": "JBSW Y3DP EHPK 3PXP",
            "algorithm": "SHA1", "digits": 6, "period": 30, "type": "TOTP, SHA1, 6 digits, 30 s",
            "otpauth_uri": URI})
    );
    let file = t.path("key.svg");
    fs::write(&file, svg).unwrap();
    assert_eq!(common::zbarimg_svg(&t, &file), URI);
    assert_eq!(
        events[2],
        json!({"event": "recovery_codes", "codes": ["abcd-efgh-ijkm", "npqr-stuv-wxyz"]})
    );
    assert_eq!(
        events[5],
        json!({"event": "done", "message": "Two-factor login is on."})
    );
    assert_eq!(
        heard(&t),
        vec![
            json!({"type": "answer", "text": "hunter2"}),
            json!({"type": "answer", "text": "123456"})
        ]
    );
}

#[test]
fn recovery_codes_are_confirmed_to_the_helper_after_the_event() {
    let t = TestDir::new("conv-recovery");
    let helper = fake_helper(
        &t,
        "say '{\"type\":\"recovery_codes\",\"codes\":[\"abcd-efgh-ijkm\"]}'\nhear\n\
         say '{\"type\":\"done\",\"message\":\"The previous recovery codes no longer work.\"}'",
    );
    let (r, events) = converse(&helper, &["recovery", "--conversation"], "");
    assert_eq!(r.code, 0, "{}", r.transcript());
    assert_eq!(
        events[0],
        json!({"event": "recovery_codes", "codes": ["abcd-efgh-ijkm"]})
    );
    assert_eq!(heard(&t), vec![json!({"type": "answer", "text": "shown"})]);
}

#[test]
fn a_cancel_or_the_end_of_input_is_passed_on_as_a_cancel() {
    for input in ["{\"cancel\":true}\n", ""] {
        let t = TestDir::new("conv-cancel");
        let helper = fake_helper(
            &t,
            &format!(
                "{PASSWORD_PROMPT}\nhear\nsay '{{\"type\":\"refused\",\"message\":\"cancelled\"}}'"
            ),
        );
        let (r, events) = converse(&helper, &["disable", "--conversation"], input);
        assert_eq!(r.code, 1, "{}", r.transcript());
        assert_eq!(heard(&t), vec![json!({"type": "cancel"})], "{input:?}");
        assert_eq!(events.len(), 2);
        assert_eq!(events[1]["event"], "error");
        assert_eq!(events[1]["message"], "cancelled");
    }
}

#[test]
fn a_refusal_is_an_error_event_with_the_message_and_hint_and_exit_1() {
    let t = TestDir::new("conv-refused");
    let helper = fake_helper(
        &t,
        &format!(
            "{PASSWORD_PROMPT}\nhear\nsay '{{\"type\":\"refused\",\"message\":\"wrong password\"}}'"
        ),
    );
    let (r, events) = converse(
        &helper,
        &["recovery", "--conversation"],
        "{\"answer\":\"nope\"}\n",
    );
    assert_eq!(r.code, 1, "{}", r.transcript());
    let last = events.last().unwrap();
    assert_eq!(last["event"], "error");
    assert_eq!(last["message"], "wrong password");
    assert!(last["hint"]
        .as_str()
        .unwrap()
        .contains("manage your own second factor"));
    assert_eq!(r.stderr, "");
}

#[test]
fn malformed_answer_lines_end_the_run_and_nothing_is_passed_on() {
    let long = format!("{{\"answer\":\"{}\"}}\n", "x".repeat(5000));
    for input in [
        "not json\n",
        "{\"answer\":\"pw\",\"extra\":1}\n",
        "{\"answer\":\"pw\",\"cancel\":true}\n",
        "{\"cancel\":false}\n",
        "{\"answer\":42}\n",
        "{}\n",
        "\n",
        long.as_str(),
    ] {
        let t = TestDir::new("conv-malformed");
        let helper = fake_helper(
            &t,
            &format!("{PASSWORD_PROMPT}\nhear\nsay '{{\"type\":\"done\",\"message\":\"\"}}'"),
        );
        let (r, events) = converse(&helper, &["enroll", "--conversation"], input);
        assert_eq!(r.code, 1, "{input:?}: {}", r.transcript());
        assert_eq!(events.len(), 2, "{input:?}");
        assert_eq!(events[1]["event"], "error");
        assert_eq!(events[1]["hint"], Value::Null);
        // The helper heard only the end of its input.
        assert_eq!(heard(&t), vec![json!("EOF")], "{input:?}");
    }
}

#[test]
fn front_end_refusals_are_error_events_too() {
    let t = TestDir::new("conv-front");
    let helper = fake_helper(&t, "");
    let (r, events) = converse(&helper, &["enroll", "root", "--conversation"], "");
    assert_eq!(r.code, 1, "{}", r.transcript());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], "error");
    assert!(events[0]["message"]
        .as_str()
        .unwrap()
        .contains("only root can act on another account"));
    // --json and --conversation: a usage error (exit 2).
    let (r, events) = converse(&helper, &["status", "--conversation", "--json"], "");
    assert_eq!((r.code, events.len()), (2, 0));
}

#[test]
fn conversation_for_root_or_with_a_state_directory_is_an_error() {
    let t = TestDir::new("conv-admin");
    let r = t.run(&["status", "--conversation"]);
    assert_eq!(r.code, 1, "{}", r.transcript());
    assert_eq!(
        serde_json::from_str::<Value>(r.stdout.trim()).unwrap(),
        json!({"event": "error", "message": "--conversation is for self-service; as root use \
               the admin verbs with --json", "hint": null})
    );
}

// ---------------------------------------------------------------------------------------------
// admin --json
// ---------------------------------------------------------------------------------------------

#[test]
fn policy_edits_with_json_print_the_policy_as_show_does() {
    let t = TestDir::new("policy-json");
    let r = t.run(&["policy", "require", "--group", "wheel", "--json"]);
    r.ok();
    let after = r.json();
    assert_eq!(after["require_groups"], json!(["wheel"]));
    assert_eq!(after, t.run(&["policy", "show", "--json"]).json());
    for args in [
        &["policy", "unrequire", "--group", "wheel", "--json"][..],
        &["policy", "exempt", "--user", "root", "--json"],
        &["policy", "unexempt", "--user", "root", "--json"],
        &["policy", "grace", "--until", "2030-01-01", "--json"],
        &["policy", "enroll-at-login", "on", "--json"],
        &["policy", "self-service", "off", "--json"],
        &["policy", "throttle", "--attempts", "3", "--json"],
        &["policy", "issuer", "build-01", "--json"],
        &["policy", "set", "require_all", "true", "--json"],
        &["policy", "unset", "require_all", "--json"],
        // Nothing to change: still the document.
        &["policy", "unset", "require_all", "--json"],
    ] {
        let r = t.run(args);
        r.ok();
        assert_eq!(
            r.json(),
            t.run(&["policy", "show", "--json"]).json(),
            "{args:?}"
        );
    }
    let p = t.run(&["policy", "show", "--json"]).json();
    assert_eq!(
        (
            &p["grace_until"],
            &p["enroll_at_login"],
            &p["self_service"],
            &p["throttle"]["attempts"],
            &p["issuer"],
            &p["require_all"]
        ),
        (
            &json!("2030-01-01T00:00:00Z"),
            &json!(true),
            &json!(false),
            &json!(3),
            &json!("build-01"),
            &json!(false)
        )
    );
}

#[test]
fn unlock_and_disable_with_json() {
    let t = TestDir::new("admin-json");
    t.enrolled("alice", "host");
    let r = t.run(&["unlock", "alice", "--json"]);
    r.ok();
    let status = t.run(&["status", "alice", "--json"]).json();
    assert_eq!(
        r.json(),
        json!({"user": "alice", "unlocked": true, "status": status})
    );
    let r = t.run(&["unlock", "alice", "--reset-clock", "--json"]);
    r.ok();
    assert_eq!(r.json()["unlocked"], true);
    let r = t.run(&["disable", "alice", "--json"]);
    r.ok();
    assert_eq!(r.json(), json!({"user": "alice", "disabled": true}));
    let r = t.run(&["disable", "alice", "--json"]);
    r.ok();
    assert_eq!(r.json(), json!({"user": "alice", "disabled": false}));
    // Failures stay on stderr, exit 1.
    let r = t.run(&["unlock", "alice", "--json"]);
    assert_eq!((r.code, r.stdout.as_str()), (1, ""));
    assert!(r.stderr.contains("alice has no record"), "{}", r.stderr);
}
