//! The one call between the PAM module and the fleet client library (SPEC §11), which the
//! module loads only when `store=` is set so that file mode pays nothing for it:
//!
//! ```c
//! int pam_totp_store_v1(const uint8_t *req, size_t req_len,
//!                       uint8_t *resp, size_t resp_cap, size_t *resp_len);
//! ```
//!
//! Both sides are this crate's code: the module encodes a [`Request`], the library decodes
//! it, talks to the store and encodes a [`Response`]. A message is a sequence of fields, each a
//! little-endian `u32` length and that many bytes; numbers are decimal text. The function
//! returns 0 when it wrote a response; anything else (or a response that does not decode) is
//! an unusable store for the module: `PAM_AUTHINFO_UNAVAIL`.
#![forbid(unsafe_code)]

use super::{CheckResult, FleetEnrolment, FleetError, OfflineApplied, Outcome};
use crate::names::UserName;
use crate::next_login::Enrolment;
use crate::store::OfflineReport;
use std::path::PathBuf;
use std::time::Duration;
use zeroize::Zeroizing;

/// The exported symbol's name (NUL-terminated for `dlsym`).
pub const SYMBOL: &[u8] = b"pam_totp_store_v1\0";
/// Largest response the module accepts.
pub const MAX_RESPONSE: usize = 4096;
const MAX_FIELD: usize = 64 * 1024;
/// Longest failure text sent back (several addresses' errors can be long): cut with "…" so
/// that the response always fits [`MAX_RESPONSE`] and the log keeps the start.
const MAX_FAILURE_TEXT: usize = 1024;

/// `text` cut to at most `max` bytes on a character boundary, "…" marking the cut.
fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let kept = crate::escape::prefix_within(text, max - '…'.len_utf8());
    format!("{kept}…").into()
}
/// The message format (both sides ship together; 2: `check` with `shown_at`, `report_offline`).
const VERSION: &str = "2";
/// Most recovery entries one report carries.
const MAX_BURNED: usize = 256;

/// What the module asks of the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Enrolment {
        user: UserName,
    },
    Check {
        user: UserName,
        /// `None`: the answer was not UTF-8 or longer than any code (a wrong code).
        answer: Option<Zeroizing<String>>,
        rhost: Option<String>,
        window: u32,
        /// The `db_time` of the enrolment call before the prompt.
        shown_at: u64,
    },
    ReportOffline {
        user: UserName,
        report: OfflineReport,
    },
}

/// One call: which `store.toml` (the library reads it with the same trust rules), the owner
/// trusted files must have, and what is left of the call's time budget.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub config: PathBuf,
    pub owner: u32,
    pub remaining: Duration,
    pub call: Call,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Response {
    Enrolment(FleetEnrolment),
    Check(CheckResult),
    Reported(OfflineApplied),
    Failed(FleetError),
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_le_bytes());
    out.extend_from_slice(field);
}

/// An optional number: empty for `None`.
fn put_opt(out: &mut Vec<u8>, n: Option<u64>) {
    put(out, n.map(|n| n.to_string()).unwrap_or_default().as_bytes());
}

struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn next(&mut self) -> Result<&'a [u8], String> {
        let (len, rest) = self.0.split_first_chunk::<4>().ok_or("truncated message")?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > MAX_FIELD || len > rest.len() {
            return Err("field longer than the message".into());
        }
        let (field, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(field)
    }
    fn text(&mut self) -> Result<&'a str, String> {
        std::str::from_utf8(self.next()?).map_err(|_| "field is not UTF-8".to_string())
    }
    fn num<T: std::str::FromStr>(&mut self) -> Result<T, String> {
        let t = self.text()?;
        t.parse().map_err(|_| format!("{t:?} is not a number"))
    }
    fn opt(&mut self) -> Result<Option<u64>, String> {
        let t = self.text()?;
        if t.is_empty() {
            return Ok(None);
        }
        t.parse()
            .map(Some)
            .map_err(|_| format!("{t:?} is not a number"))
    }
    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes".into())
        }
    }
}

impl Request {
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        put(&mut out, VERSION.as_bytes());
        put(&mut out, self.config.as_os_str().as_encoded_bytes());
        put(&mut out, self.owner.to_string().as_bytes());
        put(&mut out, self.remaining.as_millis().to_string().as_bytes());
        match &self.call {
            Call::Enrolment { user } => {
                put(&mut out, b"enrolment");
                put(&mut out, user.as_str().as_bytes());
            }
            Call::Check {
                user,
                answer,
                rhost,
                window,
                shown_at,
            } => {
                put(&mut out, b"check");
                put(&mut out, user.as_str().as_bytes());
                match answer {
                    Some(a) => {
                        put(&mut out, b"1");
                        put(&mut out, a.as_bytes());
                    }
                    None => {
                        put(&mut out, b"0");
                        put(&mut out, b"");
                    }
                }
                put(&mut out, rhost.as_deref().unwrap_or("").as_bytes());
                put(&mut out, window.to_string().as_bytes());
                put(&mut out, shown_at.to_string().as_bytes());
            }
            Call::ReportOffline { user, report } => {
                put(&mut out, b"report_offline");
                put(&mut out, user.as_str().as_bytes());
                put_opt(&mut out, report.last_step);
                put(&mut out, report.burned.len().to_string().as_bytes());
                for b in &report.burned {
                    put(&mut out, b.as_bytes());
                }
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Request, String> {
        let mut f = Fields(bytes);
        if f.text()? != VERSION {
            return Err("unknown message version".into());
        }
        let config = PathBuf::from(f.text()?);
        let owner = f.num()?;
        let remaining = Duration::from_millis(f.num()?);
        let user = |t: &str| UserName::new(t).map_err(|e| e.to_string());
        let call = match f.text()? {
            "enrolment" => Call::Enrolment {
                user: user(f.text()?)?,
            },
            "check" => {
                let u = user(f.text()?)?;
                let has = f.text()? == "1";
                let a = Zeroizing::new(f.text()?.to_string());
                let rhost = f.text()?;
                Call::Check {
                    user: u,
                    answer: has.then_some(a),
                    rhost: (!rhost.is_empty()).then(|| rhost.to_string()),
                    window: f.num()?,
                    shown_at: f.num()?,
                }
            }
            "report_offline" => {
                let user = user(f.text()?)?;
                let last_step = f.opt()?;
                let n: usize = f.num()?;
                if n > MAX_BURNED {
                    return Err(format!("{n} recovery entries in one report"));
                }
                let burned = (0..n)
                    .map(|_| f.text().map(str::to_string))
                    .collect::<Result<_, _>>()?;
                Call::ReportOffline {
                    user,
                    report: OfflineReport { last_step, burned },
                }
            }
            other => return Err(format!("unknown call {other:?}")),
        };
        f.end()?;
        Ok(Request {
            config,
            owner,
            remaining,
            call,
        })
    }
}

fn enrolment_name(e: Enrolment) -> &'static str {
    match e {
        Enrolment::Active => "active",
        Enrolment::ReplacementPending => "pending_replacement",
        Enrolment::None => "none",
    }
}

/// The database's `enrolment` column as the module's [`Enrolment`].
pub fn enrolment_from_name(s: &str) -> Option<Enrolment> {
    match s {
        "active" => Some(Enrolment::Active),
        "pending_replacement" => Some(Enrolment::ReplacementPending),
        "none" => Some(Enrolment::None),
        _ => None,
    }
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put(&mut out, VERSION.as_bytes());
        match self {
            Response::Enrolment(e) => {
                put(&mut out, b"enrolment");
                put(&mut out, enrolment_name(e.enrolment).as_bytes());
                put(&mut out, e.digits.to_string().as_bytes());
                put(&mut out, e.db_time.to_string().as_bytes());
            }
            Response::Check(c) => {
                put(&mut out, b"check");
                put(&mut out, c.outcome.as_str().as_bytes());
                for n in [
                    c.step.to_string(),
                    c.clock_offset.to_string(),
                    c.last_step.to_string(),
                    c.failures.to_string(),
                    c.locked_until.to_string(),
                    c.recovery_left.to_string(),
                    c.db_time.to_string(),
                ] {
                    put(&mut out, n.as_bytes());
                }
            }
            Response::Reported(r) => {
                put(&mut out, b"reported");
                put_opt(&mut out, r.applied_step);
                put(&mut out, r.burned.to_string().as_bytes());
            }
            Response::Failed(e) => {
                put(&mut out, b"failed");
                put(&mut out, cut(&e.0, MAX_FAILURE_TEXT).as_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Response, String> {
        let mut f = Fields(bytes);
        if f.text()? != VERSION {
            return Err("unknown message version".into());
        }
        let r = match f.text()? {
            "enrolment" => {
                let e = f.text()?;
                Response::Enrolment(FleetEnrolment {
                    enrolment: enrolment_from_name(e).ok_or(format!("enrolment {e:?}"))?,
                    digits: f.num()?,
                    db_time: f.num()?,
                })
            }
            "check" => {
                let o = f.text()?;
                Response::Check(CheckResult {
                    outcome: Outcome::parse(o).ok_or(format!("outcome {o:?}"))?,
                    step: f.num()?,
                    clock_offset: f.num()?,
                    last_step: f.num()?,
                    failures: f.num()?,
                    locked_until: f.num()?,
                    recovery_left: f.num()?,
                    db_time: f.num()?,
                })
            }
            "reported" => Response::Reported(OfflineApplied {
                applied_step: f.opt()?,
                burned: f.num()?,
            }),
            "failed" => Response::Failed(FleetError(f.text()?.to_string())),
            other => return Err(format!("unknown response {other:?}")),
        };
        f.end()?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserName {
        UserName::new("alice").unwrap()
    }

    #[test]
    fn given_each_request_then_it_decodes_to_itself() {
        for call in [
            Call::Enrolment { user: user() },
            Call::Check {
                user: user(),
                answer: Some(Zeroizing::new("123456".into())),
                rhost: Some("192.0.2.1".into()),
                window: 1,
                shown_at: 1_700_000_000,
            },
            Call::Check {
                user: user(),
                answer: None,
                rhost: None,
                window: 0,
                shown_at: 0,
            },
            Call::ReportOffline {
                user: user(),
                report: OfflineReport {
                    last_step: Some(56_666_666),
                    burned: vec!["sha256:00:11".into(), "sha256:22:33".into()],
                },
            },
            Call::ReportOffline {
                user: user(),
                report: OfflineReport::default(),
            },
        ] {
            let r = Request {
                config: "/etc/pam-totp/store.toml".into(),
                owner: 0,
                remaining: Duration::from_millis(2500),
                call,
            };
            assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn given_each_response_then_it_decodes_to_itself() {
        for r in [
            Response::Enrolment(FleetEnrolment {
                enrolment: Enrolment::ReplacementPending,
                digits: 8,
                db_time: 1_700_000_000,
            }),
            Response::Check(CheckResult {
                outcome: Outcome::Accepted,
                step: 56_666_666,
                clock_offset: -1,
                last_step: 56_666_666,
                failures: 0,
                locked_until: 0,
                recovery_left: 10,
                db_time: 1_700_000_000,
            }),
            Response::Reported(OfflineApplied {
                applied_step: Some(56_666_667),
                burned: 1,
            }),
            Response::Reported(OfflineApplied {
                applied_step: None,
                burned: 0,
            }),
            Response::Failed(FleetError("connect timeout".into())),
        ] {
            assert_eq!(Response::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn given_a_long_failure_then_it_is_cut_to_fit() {
        let long = FleetError("é".repeat(5000));
        let bytes = Response::Failed(long).encode();
        assert!(bytes.len() < MAX_RESPONSE);
        let Response::Failed(e) = Response::decode(&bytes).unwrap() else {
            panic!()
        };
        assert!(
            e.0.ends_with('…') && e.0.len() <= MAX_FAILURE_TEXT,
            "{}",
            e.0.len()
        );
    }

    #[test]
    fn given_truncated_or_padded_messages_then_refused() {
        let bytes = Response::Failed(FleetError("x".into())).encode();
        for n in 0..bytes.len() {
            assert!(Response::decode(&bytes[..n]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Response::decode(&long).is_err());
        assert!(Request::decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
