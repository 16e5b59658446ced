//! The one rule for "this stored time lies in the future" (a login while the system clock was
//! ahead: NTP glitch, VM restore) and for used-step values taken from other tools' files.
//!
//! A `last_step` ahead of the current step by more than the widest window the module accepts
//! ([`MAX_WINDOW`]) cannot have come from a code typed with a correct clock; until the clock
//! catches up, every code is a "replay". `pam-totp unlock --reset-clock` repairs it.
#![forbid(unsafe_code)]

use crate::options::MAX_WINDOW;
use crate::store::State;
use crate::totp::Params;

/// Seconds a `last_success` time may lie ahead of now before it counts as "in the future".
pub const SUCCESS_SLACK_SECONDS: u64 = 300;

/// What of a state lies in the future, as seen at `now`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ahead {
    /// `last_step` and by how many steps it is ahead of the current step.
    pub last_step: Option<(u64, u64)>,
    /// `last_success` time (unix seconds) when it is in the future.
    pub last_success: Option<u64>,
}

impl Ahead {
    pub fn any(&self) -> bool {
        self.last_step.is_some() || self.last_success.is_some()
    }
}

/// True when `step` is too far ahead of `now` to have been a code typed with a correct clock.
pub fn step_is_future(step: u64, params: Params, now: u64) -> bool {
    step > params.step_at(now).saturating_add(u64::from(MAX_WINDOW))
}

/// What of `state` lies in the future at `now` (nothing, in a healthy state).
pub fn ahead(state: &State, params: Params, now: u64) -> Ahead {
    let current = params.step_at(now);
    Ahead {
        last_step: state
            .last_step
            .filter(|s| step_is_future(*s, params, now))
            .map(|s| (s, s - current)),
        last_success: state
            .last_success
            .as_ref()
            .map(|l| l.time)
            .filter(|t| *t > now.saturating_add(SUCCESS_SLACK_SECONDS)),
    }
}

/// A used-step value read from another tool's file (google-authenticator `DISALLOW_REUSE`,
/// pam_oath's last OTP time): `Err(step)` when it lies in the future (an import refuses it:
/// stored, it would make every code a replay until that time).
pub fn imported_used_step(step: u64, params: Params, now: u64) -> Result<u64, u64> {
    if step_is_future(step, params, now) {
        Err(step)
    } else {
        Ok(step)
    }
}

/// The phone's clock at the last accepted code (SPEC §10), in seconds: `None` before the first
/// code, negative when the phone was behind.
pub fn phone_offset_seconds(state: &State, params: Params) -> Option<i64> {
    state
        .last_offset
        .map(|o| o.saturating_mul(i64::from(params.period())))
}

/// The words for a phone clock that was off at the last login, and what to do; `None` when it
/// was in step (or nothing is known yet).
pub fn phone_offset_words(user: &str, seconds: Option<i64>) -> Option<String> {
    let s = seconds.filter(|s| *s != 0)?;
    Some(format!(
        "{user}'s phone was {} at the last login; turn on automatic time on the phone",
        offset_text(s)
    ))
}

/// "30 s behind" (negative), "30 s ahead".
pub fn offset_text(seconds: i64) -> String {
    let direction = if seconds < 0 { "behind" } else { "ahead" };
    format!("{} s {direction}", seconds.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LastSuccess;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn given_step_within_the_widest_window_then_not_future() {
        let p = Params::default();
        let cur = p.step_at(NOW);
        assert!(!step_is_future(cur + u64::from(MAX_WINDOW), p, NOW));
        assert!(step_is_future(cur + u64::from(MAX_WINDOW) + 1, p, NOW));
    }

    #[test]
    fn given_state_from_a_clock_a_year_ahead_then_reported() {
        let p = Params::default();
        let later = NOW + 365 * 86_400;
        let s = State {
            last_step: Some(p.step_at(later)),
            last_success: Some(LastSuccess {
                time: later,
                rhost: None,
            }),
            ..State::default()
        };
        let a = ahead(&s, p, NOW);
        assert!(a.any());
        assert_eq!(a.last_step.map(|(_, by)| by), Some(365 * 2880));
        assert_eq!(a.last_success, Some(later));
        assert!(!ahead(&s, p, later).any());
    }

    #[test]
    fn given_google_authenticator_reuse_step_of_year_49503_then_refused() {
        let p = Params::default();
        assert_eq!(
            imported_used_step(99_999_999_999, p, NOW),
            Err(99_999_999_999)
        );
        assert_eq!(
            imported_used_step(p.step_at(NOW), p, NOW),
            Ok(p.step_at(NOW))
        );
    }

    #[test]
    fn given_last_offset_then_seconds_and_words_say_behind_or_ahead() {
        let p = Params::default();
        let at = |o| State {
            last_offset: o,
            ..State::default()
        };
        assert_eq!(phone_offset_seconds(&at(None), p), None);
        assert_eq!(phone_offset_seconds(&at(Some(-1)), p), Some(-30));
        assert_eq!(phone_offset_words("alice", Some(0)), None);
        assert_eq!(phone_offset_words("alice", None), None);
        assert_eq!(
            phone_offset_words("alice", Some(-30)).unwrap(),
            "alice's phone was 30 s behind at the last login; turn on automatic time on the phone"
        );
        assert!(phone_offset_words("bob", Some(60))
            .unwrap()
            .starts_with("bob's phone was 60 s ahead"));
    }
}
