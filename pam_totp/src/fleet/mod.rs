//! Fleet mode (SPEC §11): one identity on many hosts, kept in PostgreSQL. The database judges
//! the code (secrets never leave it); the module asks it two things per login — what the user's
//! enrolment is (before the prompt) and what an answer means (after it) — through
//! [`FleetStore`], and turns the answer into the same [`Reason`]s as file mode.
//!
//! [`config`] reads `store.toml`; [`wire`] is the call between the module and the client
//! library that talks to the database (crate `pam-totp-store`, loaded only when `store=` is
//! set); the decision over a fleet store is [`crate::flow::authenticate_fleet`].
#![forbid(unsafe_code)]

pub mod agent;
pub mod config;
pub mod wire;

pub use config::{Endpoint, Offline, StoreConfig, TlsFiles};

use crate::names::UserName;
use crate::next_login::Enrolment;
use crate::reason::Reason;
use crate::store::OfflineReport;

/// The store could not answer (unreachable, refused, timed out, not the read-write server...):
/// the login is `PAM_AUTHINFO_UNAVAIL`, and the text goes to the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("fleet store: {0}")]
pub struct FleetError(pub String);

/// `pam_totp.enrolment(user)`: what the user's next login is, as far as the store knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetEnrolment {
    pub enrolment: Enrolment,
    pub digits: u8,
    /// The database's clock (unix seconds).
    pub db_time: u64,
}

/// The outcome column of `pam_totp.outcome(ticket)` (fleet/README.md's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    NotEnrolled,
    PendingReplacement,
    Empty,
    Locked,
    Accepted,
    Replay,
    AcceptedRecovery,
    RecoveryReplay,
    Wrong,
}

const OUTCOMES: [(Outcome, &str); 9] = [
    (Outcome::NotEnrolled, "not_enrolled"),
    (Outcome::PendingReplacement, "pending_replacement"),
    (Outcome::Empty, "empty"),
    (Outcome::Locked, "locked"),
    (Outcome::Accepted, "accepted"),
    (Outcome::Replay, "replay"),
    (Outcome::AcceptedRecovery, "accepted_recovery"),
    (Outcome::RecoveryReplay, "recovery_replay"),
    (Outcome::Wrong, "wrong"),
];

impl Outcome {
    pub fn parse(s: &str) -> Option<Outcome> {
        OUTCOMES.iter().find(|(_, n)| *n == s).map(|(o, _)| *o)
    }
    pub fn as_str(self) -> &'static str {
        OUTCOMES
            .iter()
            .find(|(o, _)| *o == self)
            .map_or("", |(_, n)| n)
    }
}

/// What the store made of one answer (`pam_totp.check` + `pam_totp.outcome`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub outcome: Outcome,
    pub step: u64,
    pub clock_offset: i64,
    pub last_step: u64,
    pub failures: u32,
    pub locked_until: u64,
    pub recovery_left: u32,
    pub db_time: u64,
}

impl CheckResult {
    /// The same log reason file mode gives for the same outcome (fleet/README.md's table).
    pub fn reason(&self) -> Reason {
        match self.outcome {
            Outcome::NotEnrolled => Reason::RecordChanged,
            Outcome::PendingReplacement => Reason::ReenrolmentPending,
            Outcome::Empty => Reason::EmptyCode,
            Outcome::Locked => Reason::Locked {
                until: self.locked_until,
            },
            Outcome::Accepted => Reason::AcceptedStep {
                step: self.step,
                offset: self.clock_offset,
            },
            Outcome::Replay => Reason::Replay {
                step: self.step,
                last: self.last_step,
            },
            Outcome::AcceptedRecovery => Reason::AcceptedRecovery {
                left: self.recovery_left as usize,
            },
            Outcome::RecoveryReplay => Reason::RecoveryReplay,
            Outcome::Wrong => Reason::WrongCode {
                failures: self.failures,
                locked_until: self.locked_until,
            },
        }
    }

    /// Whether the outcome lets the user in.
    pub fn lets_in(&self) -> bool {
        matches!(self.outcome, Outcome::Accepted | Outcome::AcceptedRecovery)
    }
}

/// What `pam_totp.report_offline` made of a report: the user's `last_step` after it (`None`:
/// no record, or still no step) and how many recovery codes it burned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineApplied {
    pub applied_step: Option<u64>,
    pub burned: u32,
}

/// What a login needs of a fleet store. Each call is one contact with the database, within
/// what is left of the PAM call's time budget; none is held open while the user types.
pub trait FleetStore {
    fn enrolment(&mut self, user: &UserName) -> Result<FleetEnrolment, FleetError>;
    /// Judges `answer` (white space removed; `None` if not UTF-8 or too long) inside the
    /// database, which counts, consumes and burns in one committed transaction. `shown_at`:
    /// the `db_time` of the [`FleetStore::enrolment`] before the prompt (a recovery code burned
    /// since then was burned by a concurrent login: a replay, not counted).
    fn check(
        &mut self,
        user: &UserName,
        answer: Option<&str>,
        rhost: Option<&str>,
        window: u32,
        shown_at: u64,
    ) -> Result<CheckResult, FleetError>;
    /// Reports what a break-glass user was let in with offline (`pam_totp.report_offline`);
    /// `Ok` once the store has committed it.
    fn report_offline(
        &mut self,
        user: &UserName,
        report: &OfflineReport,
    ) -> Result<OfflineApplied, FleetError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_each_outcome_then_its_name_round_trips() {
        for (o, n) in OUTCOMES {
            assert_eq!(Outcome::parse(n), Some(o));
            assert_eq!(o.as_str(), n);
        }
        assert_eq!(Outcome::parse("ACCEPTED"), None);
    }
}
