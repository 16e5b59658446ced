//! What a login showed (`Outcome`), logins driven line by line (`Session`), and the
//! harness output and syslog draining behind them.

use super::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, ChildStdin};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Everything one login showed.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The harness's stdout, line by line.
    pub lines: Vec<String>,
    pub stderr: String,
    /// The symbolic name of pam_authenticate's result, e.g. `PAM_SUCCESS`.
    pub result: String,
    /// Syslog datagrams received during this login.
    pub logs: Vec<String>,
}

impl Outcome {
    pub fn prompts(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| {
                l.strip_prefix("PROMPT_ECHO_OFF:")
                    .or_else(|| l.strip_prefix("PROMPT_ECHO_ON:"))
            })
            .collect()
    }

    pub fn has_line(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    pub fn logged(&self, needle: &str) -> bool {
        let needle = needle.to_lowercase();
        self.logs.iter().any(|l| l.to_lowercase().contains(&needle))
    }

    pub fn describe(&self) -> String {
        format!(
            "result: {}\nstdout:\n  {}\nstderr: {}\nsyslog:\n  {}",
            self.result,
            self.lines.join("\n  "),
            self.stderr.trim(),
            self.logs.join("\n  ")
        )
    }

    #[track_caller]
    pub fn expect_result(&self, want: &str) -> &Self {
        assert_eq!(self.result, want, "\n{}", self.describe());
        self
    }

    #[track_caller]
    pub fn expect_denied(&self) -> &Self {
        assert!(
            self.result != "PAM_SUCCESS" && self.result != "PAM_IGNORE",
            "expected a denial\n{}",
            self.describe()
        );
        assert!(
            !self.has_line(&format!("INFO:{IGNORED_MARK}")),
            "module returned PAM_IGNORE, expected a denial\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that some syslog line contains one of `words` (case-insensitive).
    #[track_caller]
    pub fn expect_logged(&self, words: &[&str]) -> &Self {
        assert!(
            words.iter().any(|w| self.logged(w)),
            "expected a syslog line containing one of {words:?}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn expect_prompted(&self) -> &Self {
        assert!(
            !self.prompts().is_empty(),
            "expected a prompt\n{}",
            self.describe()
        );
        self
    }
}

/// A login driven line by line: read the conversation up to a prompt, look at
/// it, answer, and so on; `finish` collects the rest. Every read is bounded by
/// `LOGIN_TIMEOUT`.
pub struct Session {
    pub user: String,
    pub(super) child: Child,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) rx: Receiver<(String, Instant)>,
    pub(super) out_reader: Option<thread::JoinHandle<()>>,
    pub(super) err_reader: Option<thread::JoinHandle<Vec<u8>>>,
    /// Every stdout line so far.
    pub lines: Vec<String>,
    pub started: Instant,
    /// When the first prompt arrived.
    pub prompted: Option<Instant>,
    /// When the last answer was written.
    pub answered: Option<Instant>,
    /// When the RESULT line arrived.
    pub result_at: Option<Instant>,
}

impl Session {
    /// Next stdout line, or None at the end of the output; panics after `LOGIN_TIMEOUT`.
    fn next_line(&mut self) -> Option<String> {
        match self.rx.recv_timeout(LOGIN_TIMEOUT) {
            Ok((line, at)) => {
                if line.starts_with("RESULT:") {
                    self.result_at = Some(at);
                }
                if line.starts_with("PROMPT_") && self.prompted.is_none() {
                    self.prompted = Some(at);
                }
                self.lines.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "login of {:?}: no output within {LOGIN_TIMEOUT:?}; so far:\n  {}",
                    self.user,
                    self.lines.join("\n  ")
                );
            }
        }
    }

    /// Reads lines up to and including the next `PROMPT_` line; returns them.
    /// Panics (showing the transcript) if the login ends first.
    pub fn read_until_prompt(&mut self) -> Vec<String> {
        let from = self.lines.len();
        loop {
            match self.next_line() {
                Some(line) if line.starts_with("PROMPT_") => return self.lines[from..].to_vec(),
                Some(_) => {}
                None => panic!(
                    "login of {:?} ended before a prompt:\n  {}",
                    self.user,
                    self.lines.join("\n  ")
                ),
            }
        }
    }

    /// Writes `text` and a newline as the answer to the prompt.
    pub fn answer(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{text}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .expect("answer the prompt");
        self.answered = Some(Instant::now());
    }

    /// Closes stdin (further prompts get EOF), reads the rest and waits for the end.
    pub fn finish(mut self, env: &TestEnv) -> Outcome {
        self.collect(env)
    }

    /// `finish`, and the times from the start to the first prompt and from the
    /// last answer to the RESULT line.
    pub fn finish_timed(mut self, env: &TestEnv) -> (Outcome, Option<Duration>, Option<Duration>) {
        let outcome = self.collect(env);
        let to_prompt = self
            .prompted
            .map(|p| p.saturating_duration_since(self.started));
        (outcome, to_prompt, self.answer_to_result())
    }

    fn collect(&mut self, env: &TestEnv) -> Outcome {
        drop(self.stdin.take());
        while self.next_line().is_some() {}
        let deadline = Instant::now() + LOGIN_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for harness") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("harness did not finish within {LOGIN_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(5));
        };
        if let Some(r) = self.out_reader.take() {
            let _ = r.join();
        }
        let err = self
            .err_reader
            .take()
            .map(|r| r.join().expect("stderr reader"))
            .unwrap_or_default();
        let stderr = String::from_utf8_lossy(&err).into_owned();
        let lines = std::mem::take(&mut self.lines);
        let result = result_of(&lines).unwrap_or_else(|| {
            panic!(
                "harness printed no RESULT line (crashed? exit status {status})\nstdout:\n  {}\nstderr:\n{stderr}",
                lines.join("\n  ")
            )
        });
        let outcome = Outcome {
            lines,
            stderr,
            result,
            logs: env.new_logs(),
        };
        if std::env::var_os("PAM_TOTP_TEST_VERBOSE").is_some() {
            eprintln!("--- login {:?}\n{}", self.user, outcome.describe());
        }
        outcome
    }

    /// From the last answer to the RESULT line (None if never answered).
    pub fn answer_to_result(&self) -> Option<Duration> {
        Some(self.result_at?.saturating_duration_since(self.answered?))
    }
}

/// The symbolic result name of the last `RESULT:` line.
pub fn result_of(lines: &[String]) -> Option<String> {
    lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT:"))
        .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
}

pub fn drain(sock: &UnixDatagram, logs: &Mutex<Vec<String>>) {
    let mut logs = logs.lock().expect("logs lock");
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = sock.recv(&mut buf) {
        logs.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
}

/// Waits (bounded) for a harness run and parses its output; `head` holds
/// stdout lines already read by the caller.
pub fn finish(mut child: Child, head: Vec<String>) -> Outcome {
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + LOGIN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for harness") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("harness did not finish within {LOGIN_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let out = out_reader.join().expect("stdout reader");
    let err = err_reader.join().expect("stderr reader");
    let mut lines = head;
    lines.extend(String::from_utf8_lossy(&out).lines().map(str::to_string));
    let stderr = String::from_utf8_lossy(&err).into_owned();
    let result = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT:"))
        .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_else(|| {
            panic!(
                "harness printed no RESULT line (crashed? exit status {status})\nstdout:\n  {}\nstderr:\n{stderr}",
                lines.join("\n  ")
            )
        });
    Outcome {
        lines,
        stderr,
        result,
        logs: Vec::new(),
    }
}
