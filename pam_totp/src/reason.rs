//! Why a login ended as it did: the log wording of SPEC §3, one variant per case. The module
//! logs it (`Display`), tests match on the variant, and nothing parses the text back.
#![forbid(unsafe_code)]

use crate::names::log_safe;
use crate::policy::RequiredBy;
use crate::timefmt::rfc3339;
use std::fmt;

/// What could not be written after an answer was judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unstored {
    AcceptedStep,
    RecoveryBurn,
    /// The recovery code was burned, the state not written.
    RecoveryState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    // -- let in
    AcceptedStep {
        step: u64,
        /// Steps the code was ahead (+) or behind (−) the server's clock (SPEC §10).
        offset: i64,
    },
    AcceptedRecovery {
        left: usize,
    },
    EnrolledAtLogin {
        by: RequiredBy,
        step: u64,
    },
    NotRequired,
    Grace {
        by: RequiredBy,
        until: u64,
    },
    EnrolmentSkipped {
        until: u64,
    },
    /// A `split` line kept the code typed after the password for the line after the password.
    SplitCodeKept,
    /// A `split` line passed the answer on whole: no code is expected of the user, or (when
    /// `expected`) none was typed after the password, and the line after the password denies.
    SplitWhole {
        expected: bool,
    },
    // -- denied, counted
    WrongCode {
        failures: u32,
        locked_until: u64,
    },
    NotStored {
        what: Unstored,
        error: String,
        failures: u32,
    },
    // -- denied, not counted
    Replay {
        step: u64,
        last: u64,
    },
    RecoveryReplay,
    EmptyCode,
    /// One-field service: nothing was typed after the password (not counted).
    NoCodeTyped,
    Locked {
        until: u64,
    },
    NotCounted {
        error: String,
    },
    ReenrolmentPending,
    RecordChanged,
    RequiredNotEnrolled(RequiredBy),
    EnrolmentFailed(String),
    InvalidUserName(String),
    NotCanonicalName {
        typed: String,
        canonical: String,
    },
    // -- cannot decide
    PolicyUnusable(String),
    Store(String),
    UserLookup(String),
    GroupLookup(String),
    Enrolment(String),
    ConvFailed,
    /// Fleet mode, the store unreachable, a break-glass user (`[offline] users`) judged from
    /// the local record: `local` decides.
    Offline {
        store: String,
        local: Box<Reason>,
    },
    /// Fleet mode, a break-glass user's offline logins sent to the store before this login:
    /// `Ok` what the store applied, `Err` why not (the report is kept for the next login).
    OfflineReport {
        report: Result<String, String>,
        then: Box<Reason>,
    },
    /// An offline login let in from the local record that cannot be recorded for the report to
    /// the store: denied (the store would never learn of the step or the burned code).
    OfflineNotRecorded(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Reason::*;
        match self {
            AcceptedStep { step, offset } => write!(f, "accepted step {step} (offset {offset})"),
            AcceptedRecovery { left } => write!(f, "accepted recovery code ({left} left)"),
            EnrolledAtLogin { by, step } => {
                write!(f, "enrolled at login ({by}), accepted step {step}")
            }
            NotRequired => f.write_str("not enrolled, not required"),
            Grace { by, until } => write!(
                f,
                "not enrolled, required by {by}, grace until {}",
                rfc3339(*until)
            ),
            EnrolmentSkipped { until } => write!(
                f,
                "not enrolled, enrolment skipped, grace until {}",
                rfc3339(*until)
            ),
            SplitCodeKept => {
                f.write_str("split: password passed on, code kept for the check after the password")
            }
            SplitWhole { expected: false } => {
                f.write_str("split: answer passed on whole (no code expected of the user)")
            }
            SplitWhole { expected: true } => f.write_str(
                "split: no code at the end of the answer; passed on whole, the check after the \
                 password denies",
            ),
            WrongCode {
                failures,
                locked_until,
            } => {
                write!(f, "wrong code (failure {failures})")?;
                if *locked_until > 0 {
                    write!(f, "; locked until {}", rfc3339(*locked_until))?;
                }
                Ok(())
            }
            NotStored {
                what,
                error,
                failures,
            } => {
                let what = match what {
                    Unstored::AcceptedStep => "cannot record the accepted step",
                    Unstored::RecoveryBurn => "cannot burn the recovery code",
                    Unstored::RecoveryState => "recovery code burned but state not written",
                };
                write!(f, "denied: {what}: {error} (counted as failure {failures})")
            }
            Replay { step, last } => {
                write!(f, "replayed code (step {step}, last accepted {last})")
            }
            RecoveryReplay => {
                f.write_str("replayed recovery code (burned by a concurrent login; not counted)")
            }
            EmptyCode => f.write_str("empty code (not counted)"),
            NoCodeTyped => f.write_str("no code typed after the password (not counted)"),
            Locked { until } => write!(f, "locked until {}", rfc3339(*until)),
            NotCounted { error } => {
                write!(f, "code not checked: cannot count the attempt: {error}")
            }
            ReenrolmentPending => f.write_str("re-enrolment pending activation"),
            RecordChanged => f.write_str("record changed during login"),
            RequiredNotEnrolled(by) => write!(f, "not enrolled, required by {by}"),
            EnrolmentFailed(e) => write!(f, "enrolment at login failed: {e}"),
            InvalidUserName(name) => write!(f, "invalid user name {}", quoted(name)),
            NotCanonicalName { typed, canonical } => write!(
                f,
                "user name {} is not the user database's {}; log in with the latter",
                quoted(typed),
                quoted(canonical)
            ),
            PolicyUnusable(e) => write!(f, "policy unusable, denying: {e}"),
            Store(e) => f.write_str(e),
            UserLookup(e) => write!(f, "cannot look up the user: {e}"),
            GroupLookup(e) => write!(f, "cannot look up groups: {e}"),
            Enrolment(e) => write!(f, "enrolment at login: {e}"),
            ConvFailed => f.write_str("conversation failed (no answer)"),
            Offline { store, local } => write!(
                f,
                "fleet store unreachable ({store}); break-glass user, from the local record: \
                 {local}"
            ),
            OfflineReport {
                report: Ok(what),
                then,
            } => write!(f, "offline logins reported: {what}; {then}"),
            OfflineReport {
                report: Err(why),
                then,
            } => write!(
                f,
                "offline logins not reported (kept for the next login): {why}; {then}"
            ),
            OfflineNotRecorded(e) => write!(
                f,
                "denied: cannot record the offline login for the report to the fleet store: {e}"
            ),
        }
    }
}

/// An untrusted name in double quotes, escaped (`"` and `\` included) so that it cannot close
/// them: the wording these reasons had before they were typed.
fn quoted(name: &str) -> String {
    format!("\"{}\"", log_safe(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_reasons_then_the_wording_is_specs() {
        assert_eq!(
            Reason::AcceptedStep {
                step: 7,
                offset: -1
            }
            .to_string(),
            "accepted step 7 (offset -1)"
        );
        assert_eq!(
            Reason::WrongCode {
                failures: 5,
                locked_until: 1_800_000_060
            }
            .to_string(),
            "wrong code (failure 5); locked until 2027-01-15T08:01:00Z"
        );
        assert_eq!(
            Reason::Grace {
                by: RequiredBy::Group("wheel".into()),
                until: 1_800_000_000
            }
            .to_string(),
            "not enrolled, required by require_groups:wheel, grace until 2027-01-15T08:00:00Z"
        );
    }

    #[test]
    fn given_hostile_names_then_they_stay_inside_their_quotes() {
        let r = Reason::InvalidUserName("x\" accepted step 1 \"".into()).to_string();
        assert_eq!(r, "invalid user name \"x\\\" accepted step 1 \\\"\"");
        let r = Reason::InvalidUserName("a/b".into()).to_string();
        assert_eq!(r, "invalid user name \"a/b\"");
    }
}
