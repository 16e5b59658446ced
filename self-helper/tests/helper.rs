//! The built helper, run not setuid: what it does before it could act (fd checks, hostile
//! limits and signals, the uid-0 refusal, the opening line), and as `nobody` (its real and
//! effective uid then), the protocol up to the password. Setuid, PAM with real users and the
//! front-end are end-to-end tests elsewhere.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};

const HELPER: &str = env!("CARGO_BIN_EXE_pam-totp-self");
const NOBODY: u32 = 65534;
const SIGPIPE: u32 = 13;

/// Whether the test can run: it needs root (to run the helper as nobody, to read its /proc).
fn as_root() -> bool {
    let root = nix::unistd::geteuid().is_root();
    // #[ignore]d without root; asked for anyway, they fail rather than pass having run nothing.
    assert!(root, "this test needs root");
    root
}

/// The one reply of a refusal (exit status 1, exactly one line, `refused`): its message.
fn refusal(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let l = lines(out);
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(l[0]["type"], "refused");
    l[0]["message"].as_str().unwrap_or_default().to_string()
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `cmd` with `input` on stdin (pipes everywhere).
fn run(cmd: &mut Command, input: &str) -> Output {
    let mut child = spawn(cmd);
    // The helper may refuse before reading: a broken pipe here is fine.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn as_nobody() -> Command {
    let mut cmd = Command::new(HELPER);
    // std drops the supplementary groups when root sets a uid.
    cmd.uid(NOBODY).gid(NOBODY);
    cmd
}

const STATUS: &str = "{\"type\":\"hello\",\"version\":1,\"verb\":{\"verb\":\"status\"}}\n";

#[test]
#[ignore = "needs root (runs the helper as another user, reads its /proc): run by `make test`"]
fn given_root_as_caller_then_refused_with_exit_1_and_one_refused_line() {
    if !as_root() {
        return;
    }
    let out = run(&mut Command::new(HELPER), STATUS);
    assert!(refusal(&out).contains("pam-totp enroll USER"));
}

#[test]
#[ignore = "needs root (runs the helper as another user, reads its /proc): run by `make test`"]
fn given_a_garbage_or_foreign_first_line_then_refused_with_exit_1() {
    if !as_root() {
        return;
    }
    for first in [
        "garbage\n",
        "{\"type\":\"hello\",\"version\":99,\"verb\":{\"verb\":\"status\"}}\n",
        "{\"type\":\"hello\",\"version\":1,\"verb\":{\"verb\":\"status\"},\"dir\":\"/tmp\"}\n",
    ] {
        let out = run(&mut as_nobody(), first);
        assert!(refusal(&out).contains("differ in version"), "{first}");
    }
}

#[test]
#[ignore = "needs root (runs the helper as another user, reads its /proc): run by `make test`"]
fn given_an_oversize_first_line_then_refused_without_reading_it_all() {
    if !as_root() {
        return;
    }
    let mut child = spawn(&mut as_nobody());
    let mut stdin = child.stdin.take().unwrap();
    // Far more than MAX_LINE, never a newline: the helper must give up, not wait or grow.
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..16 {
        if stdin.write_all(&chunk).is_err() {
            break;
        }
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(refusal(&out).contains("over 16384 bytes"));
}

#[test]
fn given_stdin_or_stdout_closed_or_not_a_pipe_then_exit_1_with_a_message_on_stderr() {
    // Rust's runtime puts /dev/null on a closed fd before main: both are refused alike.
    for (redirect, says) in [
        (">&-", "standard output is not a pipe"),
        (">/dev/null", "standard output is not a pipe"),
        ("<&-", "standard input is not a pipe"),
        ("</etc/hostname", "standard input is not a pipe"),
    ] {
        let out = Command::new("sh")
            .args(["-c", &format!("exec \"$0\" {redirect}"), HELPER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{redirect}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{redirect}: {stderr}");
        assert!(out.stdout.is_empty(), "{redirect}");
    }
}

#[test]
#[ignore = "needs root (runs the helper as another user, reads its /proc): run by `make test`"]
fn given_stderr_closed_and_hostile_limits_and_signals_then_the_helper_still_answers() {
    if !as_root() {
        return;
    }
    // No file size, 16 descriptors, SIGALRM and SIGPIPE ignored, a leaked descriptor, an odd
    // working directory and environment: the helper still gets to its uid-0 refusal.
    let script = "ulimit -f 0; ulimit -c unlimited; ulimit -n 16; trap '' ALRM PIPE; cd /tmp; \
                  exec 7</etc/hostname; exec \"$0\" 2>&-";
    let out = run(
        Command::new("sh")
            .args(["-c", script, HELPER])
            .env("LD_DEBUG", "all")
            .env("PAM_TOTP_DIR", "/tmp"),
        STATUS,
    );
    refusal(&out);
}

#[test]
#[ignore = "needs root (runs the helper as another user, reads its /proc): run by `make test`"]
fn given_a_password_prompt_then_it_is_relayed_and_a_cancel_refuses() {
    if !as_root() {
        return;
    }
    let mut child = spawn(&mut as_nobody());
    let mut stdin = child.stdin.take().unwrap();
    let hello = "{\"type\":\"hello\",\"version\":1,\"verb\":{\"verb\":\"disable\"}}\n";
    stdin.write_all(hello.as_bytes()).unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = Vec::new();
    let mut byte = [0u8];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    let first: serde_json::Value = serde_json::from_slice(&first).unwrap();
    // Without /etc/pam.d/pam-totp the system's "other" stack decides: either it asks for a
    // password (relayed as a hidden prompt), or it refuses at once.
    if first["type"] == "prompt" {
        assert_eq!(first["echo"], false);
        stdin.write_all(b"{\"type\":\"cancel\"}\n").unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let last: serde_json::Value = serde_json::from_str(rest.trim_end()).unwrap();
        assert_eq!(last["type"], "refused");
        assert!(
            last["message"].as_str().unwrap().contains("cancelled"),
            "{last}"
        );
    } else {
        assert_eq!(first["type"], "refused");
    }
    assert_eq!(child.wait().unwrap().code(), Some(1));
}

#[test]
#[ignore = "needs root (runs the helper as another user, reads its /proc): run by `make test`"]
fn given_status_without_state_or_policy_then_a_status_and_done() {
    let installed = ["/var/lib/pam-totp", "/etc/pam-totp/policy.toml"];
    if installed.iter().any(|p| std::path::Path::new(p).exists()) {
        eprintln!("skipped: needs no installed state directory or policy");
        return;
    }
    if !as_root() {
        return;
    }
    let out = run(&mut as_nobody(), STATUS);
    assert_eq!(out.status.code(), Some(0));
    let l = lines(&out);
    assert_eq!(l.len(), 2, "{l:?}");
    assert_eq!(l[0]["type"], "status");
    assert_eq!(l[0]["status"]["user"], "nobody");
    assert_eq!(l[0]["status"]["state"], "none");
    assert_eq!(l[1]["type"], "done");
}

#[test]
#[ignore = "needs root (runs the helper as another user, reads its /proc): run by `make test`"]
fn given_a_leaked_fd_and_a_caller_cwd_then_the_waiting_helper_holds_neither_nor_a_core_limit() {
    if !as_root() {
        return;
    }
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "cd /tmp; ulimit -c unlimited; exec 7</etc/hostname; exec \"$0\"",
        HELPER,
    ])
    .uid(NOBODY)
    .gid(NOBODY);
    let mut child = spawn(&mut cmd);
    let proc = format!("/proc/{}", child.id());
    let hardened = || {
        let fds: Vec<String> = std::fs::read_dir(format!("{proc}/fd"))
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        let cwd = std::fs::read_link(format!("{proc}/cwd")).unwrap_or_default();
        let exe = std::fs::read_link(format!("{proc}/exe")).unwrap_or_default();
        let mut fds = fds;
        fds.sort();
        exe.ends_with("pam-totp-self") && cwd == std::path::Path::new("/") && fds == ["0", "1", "2"]
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !hardened() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(hardened(), "fds above 2 still open or cwd not /");
    let limits = std::fs::read_to_string(format!("{proc}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    let status = std::fs::read_to_string(format!("{proc}/status")).unwrap();
    let ignored = status.lines().find(|l| l.starts_with("SigIgn:")).unwrap();
    let mask = u64::from_str_radix(ignored.split_whitespace().nth(1).unwrap(), 16).unwrap();
    assert_ne!(
        mask & (1 << (SIGPIPE - 1)),
        0,
        "SIGPIPE not ignored: {ignored}"
    );
    drop(child.stdin.take());
    assert_eq!(child.wait().unwrap().code(), Some(1));
}
