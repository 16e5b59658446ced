//! `enroll` and `activate` on a pseudo-terminal: the QR code in black on white, a code asked
//! without echo, a wrong code then the right one (from `oathtool`), an empty answer.

mod common;

use common::{code, settle, TestDir};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::pty::openpty;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A child process whose stdin, stdout and stderr are a pseudo-terminal.
struct Pty {
    child: Child,
    master: File,
    output: Arc<Mutex<Vec<u8>>>,
    /// The thread that copies the master's output into `output` (ends with EIO at exit).
    reader: thread::JoinHandle<()>,
    /// How much of `output` earlier `expect`s consumed.
    seen: usize,
}

impl Pty {
    fn spawn(mut cmd: Command) -> Pty {
        let pty = openpty(None, None).expect("openpty");
        // Not inherited by a process another test thread spawns meanwhile (it would hold the
        // terminal open after our child exits); the child gets the slave as its 0, 1 and 2.
        for fd in [&pty.master, &pty.slave] {
            fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).expect("FD_CLOEXEC");
        }
        let slave: OwnedFd = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let child = cmd.spawn().expect("spawn pam-totp");
        // The parent's copies of the slave are closed now (moved into the Command, dropped with
        // it below), so reading the master ends with EIO once the child exits.
        drop(cmd);
        let master = File::from(pty.master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let out = Arc::clone(&output);
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            child,
            master,
            output,
            reader,
            seen: 0,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits until `needle` appears after what earlier calls consumed; returns the text up to
    /// and including it.
    #[track_caller]
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let all = self.output.lock().unwrap().clone();
            let fresh = String::from_utf8_lossy(&all[self.seen..]).into_owned();
            if let Some(i) = fresh.find(needle) {
                let upto = i + needle.len();
                self.seen += fresh[..upto].len();
                return fresh[..upto].to_string();
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {needle:?}; output so far:\n{}",
                    self.text()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, line: &str) {
        self.master.write_all(line.as_bytes()).unwrap();
        self.master.write_all(b"\n").unwrap();
    }

    fn wait(mut self) -> (i32, String) {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("pam-totp did not exit; output:\n{}", self.text());
            }
            thread::sleep(Duration::from_millis(20));
        };
        // Everything the child wrote is read once the reader meets the end (bounded: a
        // process that inherited the terminal could keep it open).
        while !self.reader.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        (status.code().unwrap_or(-1), self.text())
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn secret_in(text: &str) -> String {
    let plain = strip_ansi(text);
    let i = plain.find("secret=").expect("URI shown") + "secret=".len();
    plain[i..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

#[test]
fn enroll_on_a_terminal_asks_for_a_code_wrong_then_right() {
    let t = TestDir::new("pty-enroll");
    settle(30, 8);
    let mut p = Pty::spawn(t.cmd(&["enroll", "alice", "--issuer", "build-01"]));
    let shown = p.expect("Code from the app (empty: activate later): ");
    // Forced black on white on a terminal, one colour run per QR line.
    assert!(
        shown.contains("\x1b[30;107m") && shown.contains("\x1b[0m"),
        "{shown}"
    );
    let secret = secret_in(&shown);
    assert_eq!(secret, t.secret("alice"));
    assert!(t.record_text("alice").contains("state = \"pending\""));

    let wrong = code(&secret, 5);
    p.send(&wrong);
    p.expect("does not match");
    p.expect("2 tries left");
    p.expect("Code from the app (empty: activate later): ");
    let right = code(&secret, 0);
    p.send(&right);
    let after = p.expect("Activated:");
    assert!(
        !after.contains(&right) && !after.contains(&wrong),
        "codes are not echoed: {after:?}"
    );
    let (status, out) = p.wait();
    assert_eq!(status, 0, "{out}");
    assert!(t.record_text("alice").contains("state = \"active\""));
    let step = common::now() / 30;
    let last: u64 = common::toml_value(&t.state_text("alice").unwrap(), "last_step")
        .parse()
        .unwrap();
    assert!(
        last + 1 >= step && last <= step,
        "the step used is consumed"
    );
}

#[test]
fn enroll_on_a_terminal_empty_answer_leaves_it_pending() {
    let t = TestDir::new("pty-empty");
    let mut p = Pty::spawn(t.cmd(&["enroll", "bob", "--issuer", "build-01", "--qr", "none"]));
    p.expect("(empty: activate later): ");
    p.send("");
    p.expect("activate bob CODE");
    let (status, out) = p.wait();
    assert_eq!(status, 0, "{out}");
    assert!(!out.contains("\x1b[30;107m"), "--qr none draws nothing");
    assert!(t.record_text("bob").contains("state = \"pending\""));
}

#[test]
fn enroll_on_a_terminal_gives_up_after_three_wrong_codes() {
    let t = TestDir::new("pty-three");
    settle(30, 8);
    let mut p = Pty::spawn(t.cmd(&["enroll", "carol", "--issuer", "build-01", "--qr", "none"]));
    let shown = p.expect("(empty: activate later): ");
    let secret = secret_in(&shown);
    for _ in 0..3 {
        p.send(&code(&secret, 7));
    }
    p.expect("3 wrong codes: carol's record stays pending");
    let (status, out) = p.wait();
    assert_eq!(status, 1, "{out}");
    assert!(strip_ansi(&out).contains("activate carol CODE"), "{out}");
    assert!(t.record_text("carol").contains("state = \"pending\""));
}

#[test]
fn activate_asks_on_the_terminal_without_echo() {
    let t = TestDir::new("pty-activate");
    t.run(&["enroll", "dave", "--issuer", "build-01", "--qr", "none"])
        .ok();
    let secret = t.secret("dave");
    settle(30, 8);
    let mut p = Pty::spawn(t.cmd(&["activate", "dave"]));
    p.expect("Code from dave's app: ");
    let c = code(&secret, 0);
    p.send(&c);
    let after = p.expect("Activated:");
    assert!(!after.contains(&c), "not echoed: {after:?}");
    let (status, out) = p.wait();
    assert_eq!(status, 0, "{out}");
}

#[test]
fn ctrl_c_at_the_code_prompt_ends_with_the_terminal_restored() {
    use nix::sys::termios::{tcgetattr, LocalFlags};
    let t = TestDir::new("pty-ctrl-c");
    t.run(&["enroll", "erin", "--issuer", "build-01", "--qr", "none"])
        .ok();
    let mut p = Pty::spawn(t.cmd(&["activate", "erin"]));
    p.expect("Code from erin's app: ");
    p.master.write_all(b"12\x03").unwrap();
    p.expect("interrupted");
    let deadline = Instant::now() + TIMEOUT;
    while p.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    // On Linux the master reports the terminal's (the slave's) settings.
    let attrs = tcgetattr(&p.master).expect("tcgetattr");
    assert!(
        attrs.local_flags.contains(LocalFlags::ECHO),
        "echo is back on"
    );
    assert!(
        attrs.local_flags.contains(LocalFlags::ICANON),
        "line editing is back on"
    );
    let (status, out) = p.wait();
    assert_eq!(status, 1, "{out}");
    assert!(t.record_text("erin").contains("state = \"pending\""));
}
