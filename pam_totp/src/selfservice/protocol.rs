//! The private protocol between `pam-totp` run by a user (the front-end: it draws QR codes and
//! talks to the terminal) and the setuid helper `pam-totp-self` (SPEC §8). One JSON object per
//! line, each at most [`MAX_LINE`] bytes, in both directions; the helper treats every line as
//! hostile input (unknown fields, oversize lines, wrong order: refused).
//!
//! The front-end opens with [`Request::Hello`]; the helper answers with [`Reply`]s. A
//! [`Reply::Prompt`] waits for one [`Request::Answer`]; the exchange ends with
//! [`Reply::Done`] or [`Reply::Refused`].
#![forbid(unsafe_code)]

use crate::status::{StatusExtra, UserStatus};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The protocol version both sides must speak.
pub const VERSION: u32 = 1;

/// The longest line either side accepts (a status or an enrolment is far below it).
pub const MAX_LINE: usize = 16 * 1024;

/// What the user asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case", deny_unknown_fields)]
pub enum Verb {
    // Empty struct variants, not unit ones: serde's deny_unknown_fields refuses extra fields
    // only on those (`{"verb":"disable","user":"root"}` must not decode).
    Status {},
    Enroll {
        algorithm: String,
        digits: u8,
        period: u32,
    },
    Recovery {},
    Disable {},
}

impl Verb {
    pub fn name(&self) -> &'static str {
        match self {
            Verb::Status {} => "status",
            Verb::Enroll { .. } => "enroll",
            Verb::Recovery {} => "recovery",
            Verb::Disable {} => "disable",
        }
    }
}

/// Front-end → helper.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Hello {
        version: u32,
        verb: Verb,
    },
    /// The answer to the last prompt (a password or a code: wiped after use).
    Answer {
        text: Zeroizing<String>,
    },
    /// The user gave up (Ctrl-C, an empty answer where none is allowed).
    Cancel {},
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Hello { version, verb } => write!(f, "Hello({version}, {verb:?})"),
            Request::Answer { .. } => f.write_str("Answer(<redacted>)"),
            Request::Cancel {} => f.write_str("Cancel"),
        }
    }
}

/// What a new key looks like to the front-end, which shows it (QR code, key, URI).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub user: String,
    pub issuer: String,
    pub account: String,
    pub secret: Zeroizing<String>,
    pub algorithm: String,
    pub digits: u8,
    pub period: u32,
    pub otpauth_uri: Zeroizing<String>,
    pub recovery_codes: Vec<Zeroizing<String>>,
}

impl NewKey {
    /// The key's parameters (`None` when the fields do not make a valid set).
    pub fn params(&self) -> Option<crate::totp::Params> {
        let algorithm = crate::totp::Algorithm::parse(&self.algorithm)?;
        crate::totp::Params::new(algorithm, i64::from(self.digits), i64::from(self.period)).ok()
    }

    /// What a fresh enrolment shows: the key, its parameters, the URI, the recovery codes.
    pub fn of(e: &crate::enroll::Enrolment) -> NewKey {
        let r = &e.record;
        NewKey {
            user: r.user.clone(),
            issuer: r.issuer.clone(),
            account: r.user.clone(),
            secret: r.secret.to_base32(),
            algorithm: r.params.algorithm().as_str().into(),
            digits: r.params.digits(),
            period: r.params.period(),
            otpauth_uri: crate::enroll::uri(r),
            recovery_codes: e.recovery_codes.clone(),
        }
    }
}

/// Helper → front-end.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// Ask the user; `echo` false for passwords and codes.
    Prompt { text: String, echo: bool },
    /// Show a line to the user.
    Info { text: String },
    Status {
        status: Box<UserStatus>,
        extra: StatusExtra,
    },
    /// The new key to show; a prompt for a code from the app follows.
    NewKey(Box<NewKey>),
    /// A fresh set of recovery codes (shown once).
    RecoveryCodes { codes: Vec<Zeroizing<String>> },
    /// The action is done (exit status 0).
    Done { message: String },
    /// Refused or failed, and why (exit status 1).
    Refused { message: String },
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reply::Prompt { text, echo } => write!(f, "Prompt({text:?}, echo {echo})"),
            Reply::Info { text } => write!(f, "Info({text:?})"),
            Reply::Status { status, .. } => write!(f, "Status({})", status.user),
            Reply::NewKey(k) => write!(f, "NewKey({}, <redacted>)", k.user),
            Reply::RecoveryCodes { codes } => {
                write!(f, "RecoveryCodes(<{} redacted>)", codes.len())
            }
            Reply::Done { message } => write!(f, "Done({message:?})"),
            Reply::Refused { message } => write!(f, "Refused({message:?})"),
        }
    }
}

/// One message as a line (newline included).
pub fn encode<T: Serialize>(message: &T) -> Zeroizing<String> {
    // Serialising these types cannot fail (no maps with non-string keys, no custom errors).
    let mut line = Zeroizing::new(serde_json::to_string(message).unwrap_or_default());
    line.push('\n');
    line
}

/// One line (without its newline) as a message; `None` for anything that is not exactly one
/// valid message of at most [`MAX_LINE`] bytes.
pub fn decode<T: for<'de> Deserialize<'de>>(line: &[u8]) -> Option<T> {
    if line.len() > MAX_LINE {
        return None;
    }
    serde_json::from_slice(line).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_messages_then_they_round_trip_and_answers_stay_out_of_debug() {
        let hello = Request::Hello {
            version: VERSION,
            verb: Verb::Enroll {
                algorithm: "SHA1".into(),
                digits: 6,
                period: 30,
            },
        };
        let line = encode(&hello);
        assert!(line.ends_with('\n'));
        let back: Request = decode(line.trim_end().as_bytes()).unwrap();
        assert!(matches!(
            back,
            Request::Hello {
                version: 1,
                verb: Verb::Enroll { digits: 6, .. }
            }
        ));
        let answer = Request::Answer {
            text: Zeroizing::new("hunter2".into()),
        };
        assert!(!format!("{answer:?}").contains("hunter2"));
    }

    #[test]
    fn given_hostile_lines_then_nothing_decodes() {
        for bad in [
            &b"{\"type\":\"hello\",\"version\":1,\"verb\":{\"verb\":\"status\"},\"dir\":\"/tmp\"}"
                [..],
            b"{\"type\":\"answer\"}",
            b"{\"type\":\"hello\",\"version\":1,\"verb\":{\"verb\":\"disable\",\"user\":\"root\"}}",
            b"{\"type\":\"cancel\",\"x\":1}",
            b"not json",
            b"",
            b"{\"type\":\"hello\",\"version\":1,\"verb\":{\"verb\":\"rm -rf\"}}",
        ] {
            assert!(
                decode::<Request>(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = format!(
            "{{\"type\":\"answer\",\"text\":\"{}\"}}",
            "x".repeat(MAX_LINE)
        );
        assert!(decode::<Request>(huge.as_bytes()).is_none());
        let ok = b"{\"type\":\"hello\",\"version\":1,\"verb\":{\"verb\":\"status\"}}";
        assert!(decode::<Request>(ok).is_some());
    }
}
