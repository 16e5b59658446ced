//! `users/USER.state`: module-owned login state (SPEC §2.2), versioned, never reset silently.
//!
//! Written as a journal: the header line [`JOURNAL_HEADER`], then one line per update, each
//! holding the whole state and a checksum of it. An update is one appended line (and one
//! `fdatasync` when it records an accepted step); the journal is compacted by an atomic rewrite
//! (header + one line) when it grows past a limit, or when it does not end in a newline.
//!
//! Reading: the state is the **last complete line** (ending in `\n`). Bytes after it are an
//! append that never finished (a crash mid-write; never acknowledged, since an accepted step is
//! synced before success) and are ignored. A last complete line that fails its checksum is
//! refused, never skipped: skipping could bring back an older `last_step` and allow a replay.
//! The older TOML form (`version = 1` ...) is still read; the next write converts it.
#![forbid(unsafe_code)]

use super::record::{parse_versioned, quote};
use serde::Deserialize;

pub const STATE_VERSION: i64 = 1;

/// First line of the journal form of the state file (its version is the `1`).
pub const JOURNAL_HEADER: &str = "pam-totp state journal 1\n";

/// The first 8 bytes of SHA-256(`body`), in hex: catches a damaged or half-written line.
fn checksum(body: &str) -> String {
    use sha2::{Digest, Sha256};
    crate::hex::encode(&Sha256::digest(body.as_bytes())[..8])
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Highest accepted time step; codes of this step or earlier are replays.
    pub last_step: Option<u64>,
    /// Consecutive failures.
    pub failures: u32,
    /// Unix seconds; 0 = not locked.
    pub locked_until: u64,
    pub last_success: Option<LastSuccess>,
    /// Steps between the step of the last accepted code and the step of the server's clock
    /// then (SPEC §10): negative when the phone was behind. `None` before the first code.
    pub last_offset: Option<i64>,
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
    /// The state file, either form: the journal (see the module doc) or the older TOML form.
    pub fn parse_file(bytes: &[u8]) -> Result<State, String> {
        let Some(body) = bytes.strip_prefix(JOURNAL_HEADER.as_bytes()) else {
            let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
            return State::parse(text);
        };
        // Everything up to the last newline is complete; what follows is a torn append.
        let Some(end) = body.iter().rposition(|&b| b == b'\n') else {
            return Err("state journal without a complete entry".into());
        };
        let complete = &body[..end];
        let start = complete
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = std::str::from_utf8(&complete[start..])
            .map_err(|_| "the last state journal entry is damaged (not UTF-8)".to_string())?;
        State::parse_entry(line)
    }

    /// The highest `last_step` of any intact line (checksum verified) of a journal, whatever
    /// else it holds: what a repair of a state that does not parse must not go below.
    pub fn highest_intact_step(bytes: &[u8]) -> Option<u64> {
        let body = bytes.strip_prefix(JOURNAL_HEADER.as_bytes())?;
        body.split(|&b| b == b'\n')
            .filter_map(|line| std::str::from_utf8(line).ok())
            .filter_map(|line| State::parse_entry(line).ok())
            .filter_map(|s| s.last_step)
            .max()
    }

    /// One journal line, newline included: the whole state and its checksum.
    pub fn to_entry(&self) -> String {
        fn opt(v: Option<u64>) -> String {
            v.map_or_else(|| "-".to_string(), |v| v.to_string())
        }
        let last = self.last_success.as_ref();
        let rhost = last
            .and_then(|l| l.rhost.as_deref())
            .map_or_else(|| "-".to_string(), |r| crate::hex::encode(r.as_bytes()));
        let mut body = format!(
            "s={} f={} l={} t={} r={rhost}",
            opt(self.last_step),
            self.failures,
            self.locked_until,
            opt(last.map(|l| l.time)),
        );
        // Written only when known (entries without it read as before), and only within what
        // the reader takes: an offset it would refuse must not make the state unreadable.
        if let Some(o) = self
            .last_offset
            .filter(|o| o.unsigned_abs() <= MAX_OFFSET.unsigned_abs())
        {
            body.push_str(&format!(" o={o}"));
        }
        format!("{body} c={}\n", checksum(&body))
    }

    fn parse_entry(line: &str) -> Result<State, String> {
        let damaged = || "the last state journal entry is damaged".to_string();
        let (body, sum) = line.rsplit_once(" c=").ok_or_else(damaged)?;
        if !constant_time_eq::constant_time_eq(sum.as_bytes(), checksum(body).as_bytes()) {
            return Err("the last state journal entry fails its checksum".into());
        }
        let mut fields = body.split(' ');
        let mut field = |key: &str| {
            fields
                .next()
                .and_then(|kv| kv.strip_prefix(key))
                .and_then(|kv| kv.strip_prefix('='))
                .ok_or_else(damaged)
        };
        let (s, f, l, t, r) = (
            field("s")?,
            field("f")?,
            field("l")?,
            field("t")?,
            field("r")?,
        );
        let offset = match fields.next() {
            None => None,
            Some(kv) => Some(kv.strip_prefix("o=").and_then(signed).ok_or_else(damaged)?),
        };
        if fields.next().is_some() {
            return Err(damaged());
        }
        let num = |v: &str| digits(v).ok_or_else(damaged);
        let opt = |v: &str| if v == "-" { Ok(None) } else { num(v).map(Some) };
        let rhost = match r {
            "-" => None,
            hex => {
                let bytes = crate::hex::decode(hex).ok_or_else(damaged)?;
                Some(String::from_utf8(bytes).map_err(|_| damaged())?)
            }
        };
        let time = opt(t)?;
        if rhost.is_some() && time.is_none() {
            return Err(damaged());
        }
        Ok(State {
            last_step: opt(s)?,
            failures: u32::try_from(num(f)?).map_err(|_| damaged())?,
            locked_until: num(l)?,
            last_success: time.map(|time| LastSuccess { time, rhost }),
            last_offset: offset,
        })
    }

    /// The older TOML form of the state file.
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
            last_offset: None,
        })
    }

    /// The older TOML form (still read; written only by tests of the conversion).
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

/// A clock offset in steps: a canonical decimal number, `-` before a negative one; at most
/// [`MAX_OFFSET`] either way (a window is at most 10 steps).
fn signed(v: &str) -> Option<i64> {
    let (negative, magnitude) = match v.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, v),
    };
    let m = i64::try_from(digits(magnitude)?).ok()?;
    if m > MAX_OFFSET || (negative && m == 0) {
        return None;
    }
    Some(if negative { -m } else { m })
}

/// Largest clock offset a state entry holds, in steps.
pub const MAX_OFFSET: i64 = 1000;

/// A decimal number in its one canonical spelling (no sign, no leading zeros).
fn digits(v: &str) -> Option<u64> {
    let canonical =
        !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && (v == "0" || !v.starts_with('0'));
    canonical.then(|| v.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(step: u64, failures: u32) -> State {
        State {
            last_step: Some(step),
            failures,
            locked_until: 7,
            last_success: Some(LastSuccess {
                time: 9,
                rhost: Some("host name\n\"x\"".into()),
            }),
            last_offset: Some(-1),
        }
    }

    fn journal(entries: &[&State]) -> String {
        let mut j = JOURNAL_HEADER.to_string();
        for e in entries {
            j.push_str(&e.to_entry());
        }
        j
    }

    #[test]
    fn given_journal_then_last_complete_entry_is_the_state() {
        let j = journal(&[&sample(1, 0), &sample(2, 3)]);
        assert_eq!(State::parse_file(j.as_bytes()).unwrap(), sample(2, 3));
        for s in [State::default(), sample(u64::MAX, u32::MAX)] {
            assert_eq!(State::parse_file(journal(&[&s]).as_bytes()).unwrap(), s);
        }
    }

    #[test]
    fn given_torn_append_then_previous_entry_is_the_state() {
        let j = journal(&[&sample(1, 0), &sample(2, 3)]);
        let next = sample(3, 0).to_entry();
        for cut in 0..next.len() {
            let torn = format!("{j}{}", &next[..cut]);
            assert_eq!(
                State::parse_file(torn.as_bytes()).unwrap(),
                sample(2, 3),
                "{cut}"
            );
        }
        let mut zeros = j.clone().into_bytes();
        zeros.extend_from_slice(&[0, 0, 0, 0, 0xff]);
        assert_eq!(State::parse_file(&zeros).unwrap(), sample(2, 3));
    }

    #[test]
    fn given_damaged_last_entry_then_refused() {
        let e = sample(5, 0).to_entry();
        for bad in [
            journal(&[]),
            format!("{JOURNAL_HEADER}{}", e.replace("s=5", "s=6")),
            format!("{JOURNAL_HEADER}{}", e.replace(" c=", " c=0")),
            format!("{JOURNAL_HEADER}garbage\n"),
            format!("{JOURNAL_HEADER}{e}\0\0\0\n"),
            format!("{JOURNAL_HEADER}{}\n", &e[..e.len() - 5]),
        ] {
            assert!(State::parse_file(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn given_entry_with_non_canonical_numbers_then_refused() {
        for body in [
            "s=01 f=0 l=0 t=- r=-",
            "s=1 f=+1 l=0 t=- r=-",
            "s=1 f=0 l=0 t=- r=6a x=1",
            "s=1 f=4294967296 l=0 t=- r=-",
            "s=1 f=0 l=0 t=- r=6a",
            "s=1 f=0 l=0 t=1 r=zz",
        ] {
            let j = format!("{JOURNAL_HEADER}{body} c={}\n", checksum(body));
            assert!(State::parse_file(j.as_bytes()).is_err(), "{body}");
        }
    }

    #[test]
    fn given_damaged_journal_then_highest_intact_step_is_found() {
        let e = sample(9, 0).to_entry();
        let j = format!(
            "{}{}{}",
            journal(&[&sample(3, 0)]),
            e,
            e.replace("s=9", "s=99")
        );
        assert!(State::parse_file(j.as_bytes()).is_err());
        assert_eq!(State::highest_intact_step(j.as_bytes()), Some(9));
        assert_eq!(
            State::highest_intact_step(b"version = 1\nlast_step = 5\n"),
            None
        );
    }

    #[test]
    fn given_toml_state_then_still_read() {
        // The older form has no clock offset.
        let s = State {
            last_offset: None,
            ..sample(4, 1)
        };
        assert_eq!(State::parse_file(s.to_toml().as_bytes()).unwrap(), s);
    }

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
            last_offset: None,
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

    #[test]
    fn given_clock_offset_then_kept_either_way_and_entries_without_it_read_as_none() {
        for o in [
            None,
            Some(0),
            Some(1),
            Some(-1),
            Some(10),
            Some(-MAX_OFFSET),
        ] {
            let s = State {
                last_offset: o,
                ..sample(3, 0)
            };
            assert_eq!(State::parse_file(journal(&[&s]).as_bytes()).unwrap(), s);
        }
        let far = State {
            last_offset: Some(MAX_OFFSET + 1),
            ..sample(3, 0)
        };
        let read = State::parse_file(journal(&[&far]).as_bytes()).unwrap();
        assert_eq!(
            read.last_offset, None,
            "written, it would make the state unreadable"
        );
        let old = "s=5 f=0 l=0 t=9 r=-";
        let line = format!("{JOURNAL_HEADER}{old} c={}\n", checksum(old));
        assert_eq!(
            State::parse_file(line.as_bytes()).unwrap().last_offset,
            None
        );
    }

    #[test]
    fn given_malformed_clock_offset_then_the_entry_is_damaged() {
        for o in [
            "o=", "o=-0", "o=+1", "o=01", "o=1001", "o=--1", "x=1", "o=1 o=1",
        ] {
            let body = format!("s=5 f=0 l=0 t=9 r=- {o}");
            let line = format!("{JOURNAL_HEADER}{body} c={}\n", checksum(&body));
            assert!(State::parse_file(line.as_bytes()).is_err(), "{o}");
        }
    }
}
