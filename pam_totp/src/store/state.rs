//! `users/USER.state`: module-owned login state (SPEC §2.2). TOML, versioned, never reset
//! silently.
#![forbid(unsafe_code)]

use super::record::{parse_versioned, quote};
use serde::Deserialize;

pub const STATE_VERSION: i64 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Highest accepted time step; codes of this step or earlier are replays.
    pub last_step: Option<u64>,
    /// Consecutive failures.
    pub failures: u32,
    /// Unix seconds; 0 = not locked.
    pub locked_until: u64,
    pub last_success: Option<LastSuccess>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastSuccess {
    pub time: u64,
    pub rhost: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: i64,
    last_step: Option<u64>,
    #[serde(default)]
    failures: u32,
    #[serde(default)]
    locked_until: u64,
    last_success_time: Option<u64>,
    last_success_rhost: Option<String>,
}

impl State {
    pub fn parse(text: &str) -> Result<State, String> {
        let raw: Raw = parse_versioned(text, STATE_VERSION, |r: &Raw| r.version)?;
        if raw.last_success_rhost.is_some() && raw.last_success_time.is_none() {
            return Err("key `last_success_rhost` without `last_success_time`".into());
        }
        Ok(State {
            last_step: raw.last_step,
            failures: raw.failures,
            locked_until: raw.locked_until,
            last_success: raw.last_success_time.map(|time| LastSuccess {
                time,
                rhost: raw.last_success_rhost,
            }),
        })
    }

    pub fn to_toml(&self) -> String {
        let mut s = format!("version = {STATE_VERSION}\n");
        if let Some(step) = self.last_step {
            s.push_str(&format!("last_step = {step}\n"));
        }
        s.push_str(&format!("failures = {}\n", self.failures));
        s.push_str(&format!("locked_until = {}\n", self.locked_until));
        if let Some(ls) = &self.last_success {
            s.push_str(&format!("last_success_time = {}\n", ls.time));
            if let Some(r) = &ls.rhost {
                s.push_str(&format!("last_success_rhost = {}\n", quote(r)));
            }
        }
        s
    }

    /// True iff a code of `step` would be a replay.
    pub fn is_replay(&self, step: u64) -> bool {
        self.last_step.is_some_and(|last| step <= last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_state_then_round_trips() {
        let s = State {
            last_step: Some(58_000_000),
            failures: 3,
            locked_until: 1_800_000_000,
            last_success: Some(LastSuccess {
                time: 1_700_000_000,
                rhost: Some("192.0.2.7".into()),
            }),
        };
        assert_eq!(State::parse(&s.to_toml()).unwrap(), s);
        assert_eq!(
            State::parse(&State::default().to_toml()).unwrap(),
            State::default()
        );
    }

    #[test]
    fn given_corrupt_state_then_refused() {
        for bad in [
            "",
            "version = 2\n",
            "version = 1\nlast_step = -1\n",
            "version = 1\nlast_step = \"x\"\n",
            "version = 1\nextra = 1\n",
            "version = 1\nfailures = 1\x00",
            "version = 1\nlast_success_rhost = \"h\"\n",
        ] {
            assert!(State::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn replay_means_same_or_older_step() {
        let s = State {
            last_step: Some(100),
            ..State::default()
        };
        assert!(s.is_replay(100) && s.is_replay(99) && !s.is_replay(101));
        assert!(!State::default().is_replay(0));
    }
}
