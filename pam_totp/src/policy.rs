//! `policy.toml` (SPEC §6): who must use a second factor, grace, enrolment at login, throttle.
#![forbid(unsafe_code)]

use crate::store::record::{
    parse_versioned, plain_blank, plain_bool, plain_datetime, plain_integer, plain_key_value,
    plain_or_toml, plain_set, plain_string,
};
use crate::throttle::Throttle;
use crate::timefmt;
use serde::Deserialize;
use std::fmt;

pub const POLICY_VERSION: i64 = 1;
pub const MAX_THROTTLE_SECONDS: u64 = 86_400;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub require_all: bool,
    pub require_users: Vec<String>,
    pub require_groups: Vec<String>,
    pub exempt_users: Vec<String>,
    pub exempt_groups: Vec<String>,
    /// Unix seconds; until then required-but-unenrolled users get in with a notice.
    pub grace_until: Option<u64>,
    pub enroll_at_login: bool,
    pub issuer: Option<String>,
    /// Users may enrol, renew recovery codes and disable for themselves (SPEC §8).
    pub self_service: bool,
    pub throttle: Throttle,
}

/// No policy file: nobody is required, enrolled users are asked, self-service is on.
impl Default for Policy {
    fn default() -> Policy {
        Policy {
            require_all: false,
            require_users: Vec::new(),
            require_groups: Vec::new(),
            exempt_users: Vec::new(),
            exempt_groups: Vec::new(),
            grace_until: None,
            enroll_at_login: false,
            issuer: None,
            self_service: true,
            throttle: Throttle::default(),
        }
    }
}

/// Which rule makes a user need a second factor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequiredBy {
    All,
    User,
    Group(String),
}

impl fmt::Display for RequiredBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequiredBy::All => f.write_str("require_all"),
            RequiredBy::User => f.write_str("require_users"),
            RequiredBy::Group(g) => write!(f, "require_groups:{g}"),
        }
    }
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
#[serde(deny_unknown_fields)]
struct Raw {
    version: i64,
    #[serde(default)]
    require_all: bool,
    #[serde(default)]
    require_users: Vec<String>,
    #[serde(default)]
    require_groups: Vec<String>,
    #[serde(default)]
    exempt_users: Vec<String>,
    #[serde(default)]
    exempt_groups: Vec<String>,
    grace_until: Option<toml::value::Datetime>,
    #[serde(default)]
    enroll_at_login: bool,
    issuer: Option<String>,
    self_service: Option<bool>,
    throttle: Option<RawThrottle>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
#[serde(deny_unknown_fields)]
struct RawThrottle {
    attempts: Option<u32>,
    lock_seconds: Option<u64>,
    max_lock_seconds: Option<u64>,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, String> {
        Policy::from_raw(plain_or_toml(
            text,
            POLICY_VERSION,
            parse_plain,
            |r: &Raw| r.version,
        )?)
    }

    /// [`Policy::parse`] without the fast path: every document through the TOML parser. For
    /// the differential tests and the fuzz target (they must agree on every input).
    #[doc(hidden)]
    pub fn parse_with_toml(text: &str) -> Result<Policy, String> {
        Policy::from_raw(parse_versioned(text, POLICY_VERSION, |r: &Raw| r.version)?)
    }

    fn from_raw(raw: Raw) -> Result<Policy, String> {
        let grace_until = raw
            .grace_until
            .as_ref()
            .map(timefmt::from_toml)
            .transpose()
            .map_err(|e| format!("key `grace_until`: {e}"))?;
        let d = Throttle::default();
        let throttle = match raw.throttle {
            None => d,
            Some(t) => Throttle {
                attempts: t.attempts.unwrap_or(d.attempts),
                lock_seconds: t.lock_seconds.unwrap_or(d.lock_seconds),
                max_lock_seconds: t.max_lock_seconds.unwrap_or(d.max_lock_seconds),
            },
        };
        validate_throttle(&throttle)?;
        if let Some(issuer) = &raw.issuer {
            if issuer.is_empty() || issuer.contains(':') || issuer.chars().any(char::is_control) {
                return Err(
                    "key `issuer` must be non-empty, without ':' or control characters".into(),
                );
            }
        }
        Ok(Policy {
            require_all: raw.require_all,
            require_users: raw.require_users,
            require_groups: raw.require_groups,
            exempt_users: raw.exempt_users,
            exempt_groups: raw.exempt_groups,
            grace_until,
            enroll_at_login: raw.enroll_at_login,
            issuer: raw.issuer,
            self_service: raw.self_service.unwrap_or(true),
            throttle,
        })
    }

    /// Whether deciding needs the user's groups (an NSS lookup): for group rules, and for
    /// enrolment at login, which is offered only to users the user database knows.
    pub fn needs_groups(&self) -> bool {
        !self.require_groups.is_empty() || !self.exempt_groups.is_empty() || self.enroll_at_login
    }

    /// The rule that requires a second factor of `user`, or `None` (not required or exempt).
    /// `groups` are the user's groups (primary and supplementary); `None` if unknown to NSS.
    pub fn required_by(&self, user: &str, groups: Option<&[String]>) -> Option<RequiredBy> {
        let groups = groups.unwrap_or(&[]);
        let has = |list: &[String], name: &str| list.iter().any(|x| x == name);
        if has(&self.exempt_users, user) || groups.iter().any(|g| has(&self.exempt_groups, g)) {
            return None;
        }
        if self.require_all {
            return Some(RequiredBy::All);
        }
        if has(&self.require_users, user) {
            return Some(RequiredBy::User);
        }
        self.require_groups
            .iter()
            .find(|g| has(groups, g))
            .map(|g| RequiredBy::Group(g.clone()))
    }

    /// The grace deadline while it still lies ahead of `now`.
    pub fn grace_at(&self, now: u64) -> Option<u64> {
        self.grace_until.filter(|&g| now < g)
    }
}

/// The fast path of [`Policy::parse`], as for records (`store::record::parse_plain`): the
/// policy is read on every login, and the TOML parser costs ~20 k instructions for three lines.
/// `None` for anything outside this subset of TOML 1.0, which then goes through the parser:
/// lines end in `\n`; a line is empty, a comment (`#` then tab or printable ASCII), `[throttle]`
/// (once; the keys after it are the throttle's), or `key = value` with one space either side of
/// `=` and nothing after the value; keys are the policy's own, each at most once, `version`
/// present and the supported one; values are `true`/`false`, plain strings, integers and
/// date-times as for records (the throttle's within their types' range), and string lists
/// written `[]` or `["a", "b"]` (one space after each comma, no trailing comma).
fn parse_plain(text: &str) -> Option<Raw> {
    fn list(v: &str) -> Option<Vec<String>> {
        let inner = v.strip_prefix('[')?.strip_suffix(']')?;
        if inner.is_empty() {
            return Some(Vec::new());
        }
        inner
            .split(", ")
            .map(|s| plain_string(s).map(str::to_string))
            .collect()
    }
    let mut version = None;
    let mut require_all = None;
    let mut require_users = None;
    let mut require_groups = None;
    let mut exempt_users = None;
    let mut exempt_groups = None;
    let mut grace_until = None;
    let mut enroll_at_login = None;
    let mut issuer = None;
    let mut self_service = None;
    let mut throttle: Option<RawThrottle> = None;
    for line in text.split('\n') {
        if plain_blank(line)? {
            continue;
        }
        if line == "[throttle]" {
            if throttle.is_some() {
                return None;
            }
            throttle = Some(RawThrottle {
                attempts: None,
                lock_seconds: None,
                max_lock_seconds: None,
            });
            continue;
        }
        let (key, value) = plain_key_value(line)?;
        if let Some(t) = throttle.as_mut() {
            let int = plain_integer(value);
            match key {
                "attempts" => plain_set(&mut t.attempts, int.and_then(|n| n.try_into().ok()))?,
                "lock_seconds" => {
                    plain_set(&mut t.lock_seconds, int.and_then(|n| n.try_into().ok()))?
                }
                "max_lock_seconds" => {
                    plain_set(&mut t.max_lock_seconds, int.and_then(|n| n.try_into().ok()))?
                }
                _ => return None,
            }
            continue;
        }
        match key {
            "version" => plain_set(&mut version, plain_integer(value))?,
            "require_all" => plain_set(&mut require_all, plain_bool(value))?,
            "require_users" => plain_set(&mut require_users, list(value))?,
            "require_groups" => plain_set(&mut require_groups, list(value))?,
            "exempt_users" => plain_set(&mut exempt_users, list(value))?,
            "exempt_groups" => plain_set(&mut exempt_groups, list(value))?,
            "grace_until" => plain_set(&mut grace_until, plain_datetime(value))?,
            "enroll_at_login" => plain_set(&mut enroll_at_login, plain_bool(value))?,
            "issuer" => plain_set(&mut issuer, plain_string(value).map(str::to_string))?,
            "self_service" => plain_set(&mut self_service, plain_bool(value))?,
            _ => return None,
        }
    }
    Some(Raw {
        version: version.filter(|&v| v == POLICY_VERSION)?,
        require_all: require_all.unwrap_or(false),
        require_users: require_users.unwrap_or_default(),
        require_groups: require_groups.unwrap_or_default(),
        exempt_users: exempt_users.unwrap_or_default(),
        exempt_groups: exempt_groups.unwrap_or_default(),
        grace_until,
        enroll_at_login: enroll_at_login.unwrap_or(false),
        issuer,
        self_service,
        throttle,
    })
}

pub fn validate_throttle(t: &Throttle) -> Result<(), String> {
    if t.attempts < 1 {
        return Err("[throttle] attempts must be at least 1".into());
    }
    if !(1 <= t.lock_seconds
        && t.lock_seconds <= t.max_lock_seconds
        && t.max_lock_seconds <= MAX_THROTTLE_SECONDS)
    {
        return Err("[throttle] needs 1 <= lock_seconds <= max_lock_seconds <= 86400".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
version = 1
require_all = false
require_users = ["carol"]
require_groups = ["wheel", "ops"]
exempt_users = ["backup"]
exempt_groups = ["robots"]
grace_until = 2026-12-31T00:00:00Z
enroll_at_login = true
issuer = "build-01"
self_service = true

[throttle]
attempts = 3
lock_seconds = 30
max_lock_seconds = 600
"#;

    fn groups(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn given_spec_policy_then_every_key_is_read() {
        let p = Policy::parse(FULL).unwrap();
        assert_eq!(p.require_users, vec!["carol"]);
        assert_eq!(p.grace_until, Some(timefmt::parse("2026-12-31").unwrap()));
        assert!(p.enroll_at_login);
        assert_eq!(p.issuer.as_deref(), Some("build-01"));
        assert!(p.self_service);
        assert_eq!(
            p.throttle,
            Throttle {
                attempts: 3,
                lock_seconds: 30,
                max_lock_seconds: 600
            }
        );
    }

    #[test]
    fn given_minimal_policy_then_nobody_is_required() {
        let p = Policy::parse("version = 1\n").unwrap();
        assert_eq!(p, Policy::default());
        assert_eq!(p.required_by("alice", None), None);
        assert!(
            p.self_service,
            "self-service is on unless the policy turns it off"
        );
        assert!(
            !Policy::parse("version = 1\nself_service = false\n")
                .unwrap()
                .self_service
        );
    }

    #[test]
    fn requirement_rules_and_exemptions() {
        let p = Policy::parse(FULL).unwrap();
        type Row<'a> = (&'a str, Option<&'a [&'a str]>, Option<RequiredBy>);
        let table: &[Row] = &[
            ("carol", None, Some(RequiredBy::User)),
            (
                "dave",
                Some(&["users", "ops"]),
                Some(RequiredBy::Group("ops".into())),
            ),
            (
                "erin",
                Some(&["wheel", "ops"]),
                Some(RequiredBy::Group("wheel".into())),
            ),
            ("frank", Some(&["users"]), None),
            ("ghost", None, None),
            ("backup", Some(&["wheel"]), None),
            ("carol", Some(&["robots"]), None),
        ];
        for (user, g, want) in table {
            let g = g.map(groups);
            assert_eq!(p.required_by(user, g.as_deref()), *want, "{user}");
        }
        let all = Policy {
            require_all: true,
            exempt_users: groups(&["root"]),
            ..Policy::default()
        };
        assert_eq!(all.required_by("ghost", None), Some(RequiredBy::All));
        assert_eq!(all.required_by("root", None), None);
    }

    #[test]
    fn grace_applies_strictly_before_the_deadline() {
        let p = Policy {
            grace_until: Some(1000),
            ..Policy::default()
        };
        assert_eq!(p.grace_at(999), Some(1000));
        assert_eq!(p.grace_at(1000), None);
    }

    #[test]
    fn given_bad_policy_then_refused_with_reason() {
        let cases = [
            ("", "version"),
            ("version = 2\n", "newer"),
            ("version = 1\nrequire_everyone = true\n", "require_everyone"),
            (
                "version = 1\ngrace_until = 2026-12-31T00:00:00\n",
                "grace_until",
            ),
            ("version = 1\ngrace_until = \"soon\"\n", ""),
            ("version = 1\n[throttle]\nattempts = 0\n", "attempts"),
            (
                "version = 1\n[throttle]\nlock_seconds = 100\nmax_lock_seconds = 50\n",
                "lock_seconds",
            ),
            (
                "version = 1\n[throttle]\nmax_lock_seconds = 86401\n",
                "86400",
            ),
            ("version = 1\n[throttle]\nburst = 1\n", "burst"),
            ("version = 1\nissuer = \"a:b\"\n", "issuer"),
        ];
        for (text, needle) in cases {
            let e = Policy::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    /// The fast path reads a policy exactly as the TOML parser does, or declines it.
    #[test]
    fn given_any_text_then_fast_path_agrees_with_toml() {
        let plain = [
            FULL.to_string(),
            "version = 1\n".to_string(),
            "version = 1\n\n[throttle]\nattempts = 4000000000\n".to_string(),
            "# site policy\nversion = 1\nrequire_users = []\n[throttle]\n".to_string(),
        ];
        for t in &plain {
            assert!(parse_plain(t).is_some(), "fast path declined:\n{t}");
        }
        let edge = [
            "0",
            "1",
            "01",
            "-1",
            "3",
            "30",
            "600",
            "86401",
            "4294967295",
            "4294967296",
            "999999999999999999",
            "1_0",
            "true",
            "false",
            "\"x\"",
            "\"\"",
            "\"a:b\"",
            "\"a\\tb\"",
            "'x'",
            "\"é\"",
            "[]",
            "[ ]",
            "[\"a\"]",
            "[\"a\", \"b\"]",
            "[\"a\",\"b\"]",
            "[\"a\",]",
            "[\"a, b\"]",
            "[\"a\", 1]",
            "[1]",
            "2026-12-31T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2028-02-29T00:00:00Z",
            "2026-12-31",
            "2026-12-31T00:00:00",
            "{}",
        ];
        let keys = [
            "version",
            "require_all",
            "require_users",
            "require_groups",
            "exempt_users",
            "exempt_groups",
            "grace_until",
            "enroll_at_login",
            "issuer",
            "self_service",
            "attempts",
            "lock_seconds",
            "max_lock_seconds",
            "other",
            "throttle",
        ];
        let mut texts = plain.to_vec();
        for key in keys {
            for v in edge {
                let t: String = FULL
                    .lines()
                    .filter(|l| !l.starts_with(key))
                    .collect::<Vec<_>>()
                    .join("\n");
                texts.push(format!("{t}\n{key} = {v}\n"));
                let (top, table) = t.split_once("[throttle]").unwrap();
                texts.push(format!("{top}{key} = {v}\n[throttle]{table}"));
            }
        }
        let lines: Vec<&str> = FULL.lines().collect();
        for i in 0..lines.len() {
            for bend in ["", "dup", " ", "\r", " # c"] {
                let mut l = lines.clone();
                let bent = match bend {
                    "" => String::new(),
                    "dup" => format!("{0}\n{0}", l[i]),
                    " " => format!(" {}", l[i]),
                    _ => format!("{}{bend}", l[i]),
                };
                l[i] = &bent;
                texts.push(l.join("\n"));
            }
        }
        texts.push("version = 1\n[throttle]\n[throttle]\n".into());
        texts.push("version = 1\n[throttle]\nversion = 1\n".into());
        texts.push("[throttle]\nattempts = 3\n".into());
        texts.push("version = 2\n".into());
        texts.push("version = 1\n[other]\n".into());
        let mut taken = 0;
        for t in &texts {
            let slow = parse_versioned::<Raw>(t, POLICY_VERSION, |r: &Raw| r.version);
            if let Some(fast) = parse_plain(t) {
                taken += 1;
                assert_eq!(Ok(&fast), slow.as_ref(), "fast path differs on:\n{t}");
            }
            assert_eq!(Policy::parse(t), Policy::parse_with_toml(t), "on:\n{t}");
        }
        assert!(
            taken > 40,
            "only {taken} of {} texts took the fast path",
            texts.len()
        );
    }

    #[test]
    fn a_local_date_means_midnight_utc() {
        let p = Policy::parse("version = 1\ngrace_until = 2027-01-01\n").unwrap();
        assert_eq!(p.grace_until, Some(1_798_761_600));
    }
}
