//! Self-service from a program (`--conversation`: a web page through `cockpit.spawn`), with no
//! terminal. stdout carries one JSON event per line, each flushed:
//!
//! - `{"event":"prompt","text":"Password: ","echo":false}`: one answer line follows on stdin,
//!   `{"answer":"..."}` or `{"cancel":true}` (end of input: cancel);
//! - `{"event":"info","text":"..."}`;
//! - `{"event":"status","status":{...}}`: the object `pam-totp status --json` prints;
//! - `{"event":"new_key", user, issuer, account, secret, key_groups, algorithm, digits, period,
//!   type, otpauth_uri, qr_svg}` and `{"event":"recovery_codes","codes":[...]}`;
//! - last: `{"event":"done","message":"..."}` (exit 0) or
//!   `{"event":"error","message":"...","hint":"..."|null}` (exit 1).
//!
//! Answer lines are checked strictly: at most [`MAX_ANSWER_LINE`] bytes, exactly one of the
//! two forms, no other field; anything else ends the run (an `error` event, exit status 1)
//! before anything is passed on. Answers live in memory that is wiped after use.

use super::Front;
use crate::error::{CliError, Result};
use crate::output::write_stdout;
use crate::show_key::{self, Images};
use pam_totp::secret::group4;
use pam_totp::selfservice::protocol::NewKey;
use pam_totp::status::UserStatus;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use zeroize::Zeroizing;

/// The longest answer line accepted (newline excluded).
pub const MAX_ANSWER_LINE: usize = 4096;

/// Bytes read from stdin at a time.
const CHUNK: usize = 512;

#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event<'a> {
    Prompt {
        text: &'a str,
        echo: bool,
    },
    Info {
        text: &'a str,
    },
    Status {
        status: &'a UserStatus,
    },
    NewKey {
        user: &'a str,
        issuer: &'a str,
        account: &'a str,
        secret: &'a str,
        key_groups: &'a str,
        algorithm: &'a str,
        digits: u8,
        period: u32,
        #[serde(rename = "type")]
        kind: String,
        otpauth_uri: &'a str,
        qr_svg: &'a str,
    },
    RecoveryCodes {
        codes: Vec<&'a str>,
    },
    Done {
        message: &'a str,
    },
    Error {
        message: &'a str,
        hint: Option<String>,
    },
}

/// One answer line: exactly one of `answer` and `cancel: true`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerLine {
    #[serde(default)]
    answer: Option<Zeroizing<String>>,
    #[serde(default)]
    cancel: Option<bool>,
}

pub struct Conversation {
    /// stdin, unbuffered (std's buffer would keep passwords): only `pending` holds them.
    input: Option<File>,
    /// Read but not yet used; capacity fixed up front so that it never moves (and leaves an
    /// unwiped copy behind).
    pending: Zeroizing<Vec<u8>>,
}

impl Conversation {
    pub fn new() -> Conversation {
        let input = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(File::from);
        Conversation {
            input,
            pending: Zeroizing::new(Vec::with_capacity(MAX_ANSWER_LINE + CHUNK + 1)),
        }
    }

    fn emit(&mut self, event: &Event) -> Result<()> {
        // Sized first, so that the buffer holding a new key never grows (a move would leave an
        // unwiped copy of the secret behind).
        let mut size = ByteCount(1);
        serde_json::to_writer(&mut size, event)
            .map_err(|e| CliError::new(format!("cannot format JSON: {e}")))?;
        let mut line = Zeroizing::new(Vec::with_capacity(size.0));
        serde_json::to_writer(&mut *line, event)
            .map_err(|e| CliError::new(format!("cannot format JSON: {e}")))?;
        line.push(b'\n');
        write_stdout(&line)
    }

    /// Ends the run with an `error` event carrying `e`'s message and hints (as a terminal
    /// would show them); what is handed back says nothing more (exit status 1).
    pub fn fail(&mut self, e: CliError) -> CliError {
        if e.message.is_empty() {
            // stdout is gone (closed pipe): nobody to tell.
            return e;
        }
        let hint = (!e.hints.is_empty()).then(|| e.hints.join("\n"));
        match self.emit(&Event::Error {
            message: &e.message,
            hint,
        }) {
            Ok(()) => CliError::silent(),
            Err(_) => e,
        }
    }

    /// The next line of stdin without its newline; `None` at the end of input.
    fn read_line(&mut self) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let Some(input) = &mut self.input else {
            return Ok(None);
        };
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                if i > MAX_ANSWER_LINE {
                    return Err(too_long());
                }
                let line = Zeroizing::new(self.pending[..i].to_vec());
                self.pending.drain(..=i);
                return Ok(Some(line));
            }
            if self.pending.len() > MAX_ANSWER_LINE {
                return Err(too_long());
            }
            let mut chunk = Zeroizing::new([0u8; CHUNK]);
            let n = match input.read(&mut chunk[..]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CliError::new(format!("cannot read an answer: {e}"))),
            };
            if n == 0 {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                // A last line without its newline.
                let line = Zeroizing::new(self.pending.to_vec());
                self.pending.clear();
                return Ok(Some(line));
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }
}

fn too_long() -> CliError {
    CliError::new(format!(
        "an answer line is longer than {MAX_ANSWER_LINE} bytes; nothing was passed on"
    ))
}

/// A writer that only counts what it is given.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn malformed() -> CliError {
    CliError::new(
        "an answer line is not {\"answer\":\"...\"} or {\"cancel\":true} (one JSON object per \
         line, no other field); nothing was passed on",
    )
}

impl Front for Conversation {
    fn prompt(&mut self, text: &str, echo: bool) -> Result<Option<Zeroizing<String>>> {
        self.emit(&Event::Prompt { text, echo })?;
        let Some(line) = self.read_line()? else {
            return Ok(None);
        };
        let parsed: AnswerLine = serde_json::from_slice(&line).map_err(|_| malformed())?;
        match parsed {
            AnswerLine {
                answer: Some(a),
                cancel: None,
            } => Ok(Some(a)),
            AnswerLine {
                answer: None,
                cancel: Some(true),
            } => Ok(None),
            _ => Err(malformed()),
        }
    }

    fn info(&mut self, text: &str) -> Result<()> {
        self.emit(&Event::Info { text })
    }

    fn status(&mut self, status: &UserStatus) -> Result<()> {
        self.emit(&Event::Status { status })
    }

    fn new_key(&mut self, k: &NewKey, _: &Images) -> Result<()> {
        let svg = show_key::svg(k)?;
        self.emit(&Event::NewKey {
            user: &k.user,
            issuer: &k.issuer,
            account: &k.account,
            secret: &k.secret,
            key_groups: &group4(&k.secret),
            algorithm: &k.algorithm,
            digits: k.digits,
            period: k.period,
            kind: show_key::kind(k),
            otpauth_uri: &k.otpauth_uri,
            qr_svg: &svg,
        })?;
        // An enrolment's recovery codes come with its key (a renewal's on their own).
        if k.recovery_codes.is_empty() {
            return Ok(());
        }
        self.recovery_codes(&k.recovery_codes)
    }

    fn recovery_codes(&mut self, codes: &[Zeroizing<String>]) -> Result<()> {
        self.emit(&Event::RecoveryCodes {
            codes: codes.iter().map(|c| c.as_str()).collect(),
        })
    }

    fn done(&mut self, _: Option<&NewKey>, message: &str) -> Result<()> {
        self.emit(&Event::Done { message })
    }
}
