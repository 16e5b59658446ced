//! `users/USER.toml`, format version 1 (SPEC §2.1): the public, admin-provisionable record.
#![forbid(unsafe_code)]

use crate::recovery;
use crate::secret::Secret;
use crate::timefmt;
use crate::totp::{Algorithm, Params};
use serde::Deserialize;
use zeroize::Zeroizing;

pub const RECORD_VERSION: i64 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Created, not yet confirmed with a code from the app.
    Pending,
    Active,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub user: String,
    pub status: Status,
    /// A pending record written by `enroll --force`: until activated the user is denied.
    pub replaces_active: bool,
    pub secret: Secret,
    pub params: Params,
    pub issuer: String,
    pub created: Option<u64>,
    /// `sha256:<salt-hex>:<hash-hex>` of each unused recovery code.
    pub recovery: Vec<String>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
#[serde(deny_unknown_fields)]
struct Raw {
    version: i64,
    user: String,
    state: String,
    #[serde(default)]
    replaces_active: bool,
    secret: Zeroizing<String>,
    algorithm: Option<String>,
    digits: Option<i64>,
    period: Option<i64>,
    issuer: Option<String>,
    created: Option<toml::value::Datetime>,
    #[serde(default)]
    recovery: Vec<String>,
}

#[derive(Deserialize)]
struct VersionProbe {
    version: Option<toml::Value>,
}

/// Parses a versioned document with a single TOML parse in the common case, reporting errors
/// exactly as if the `version` key had been checked first (with [`check_version`]): whenever the
/// document does not deserialize into `T`, or names another version, the version check runs
/// and its error, if any, wins. (Checking first cost a second full parse of every file on every
/// login.)
pub(crate) fn parse_versioned<T: serde::de::DeserializeOwned>(
    text: &str,
    supported: i64,
    version_of: impl Fn(&T) -> i64,
) -> Result<T, String> {
    match toml::from_str::<T>(text) {
        Ok(raw) if version_of(&raw) == supported => Ok(raw),
        Ok(raw) => {
            check_version(text, supported)?;
            Err(format!("unsupported `version` {}", version_of(&raw)))
        }
        Err(e) => {
            check_version(text, supported)?;
            Err(clean_toml_error(&e))
        }
    }
}

/// Checks the `version` key before anything else, so that a newer format is reported as such.
pub(crate) fn check_version(text: &str, supported: i64) -> Result<(), String> {
    let probe: VersionProbe = toml::from_str(text).map_err(|e| clean_toml_error(&e))?;
    match probe.version {
        None => Err("missing key `version`".into()),
        Some(toml::Value::Integer(v)) if v == supported => Ok(()),
        Some(toml::Value::Integer(v)) if v > supported => Err(format!(
            "format version {v} is newer than this pam_totp understands ({supported})"
        )),
        Some(v) => Err(format!("unsupported `version` {v}")),
    }
}

/// One line, no source excerpt and no quoted values (either could show a secret).
pub(crate) fn clean_toml_error(e: &toml::de::Error) -> String {
    let mut msg = String::new();
    let mut in_quotes = false;
    for c in e.message().trim().chars() {
        match c {
            '"' if !in_quotes => {
                in_quotes = true;
                msg.push_str("\"...");
            }
            '"' => {
                in_quotes = false;
                msg.push('"');
            }
            '\n' if !in_quotes => msg.push(' '),
            _ if !in_quotes => msg.push(c),
            _ => {}
        }
    }
    if in_quotes {
        msg.push('"');
    }
    match e.span() {
        Some(span) => format!("{msg} (at byte {})", span.start),
        None => msg,
    }
}

impl Record {
    /// A record for `user` as enrolment and imports make it (never one replacing an active
    /// record: `enroll --force` sets that itself).
    pub fn new(
        user: &str,
        status: Status,
        secret: Secret,
        params: Params,
        issuer: &str,
        created: Option<u64>,
        recovery: Vec<String>,
    ) -> Record {
        Record {
            user: user.to_string(),
            status,
            replaces_active: false,
            secret,
            params,
            issuer: issuer.to_string(),
            created,
            recovery,
        }
    }

    pub fn parse(text: &str) -> Result<Record, String> {
        Record::from_raw(plain_or_toml(
            text,
            RECORD_VERSION,
            parse_plain,
            |r: &Raw| r.version,
        )?)
    }

    /// [`Record::parse`] without the fast path: every document through the TOML parser. For
    /// the differential tests and the fuzz target (they must agree on every input).
    #[doc(hidden)]
    pub fn parse_with_toml(text: &str) -> Result<Record, String> {
        Record::from_raw(parse_versioned(text, RECORD_VERSION, |r: &Raw| r.version)?)
    }

    fn from_raw(raw: Raw) -> Result<Record, String> {
        let status = match raw.state.as_str() {
            "active" => Status::Active,
            "pending" => Status::Pending,
            other => {
                return Err(format!(
                    "key `state` must be \"active\" or \"pending\", not {other:?}"
                ))
            }
        };
        if raw.replaces_active && status != Status::Pending {
            return Err("key `replaces_active` is only allowed on a pending record".into());
        }
        let secret = Secret::from_base32(&raw.secret).map_err(|e| format!("key `secret`: {e}"))?;
        let algorithm = match raw.algorithm.as_deref() {
            None => Algorithm::Sha1,
            Some(a) => Algorithm::parse(a).ok_or_else(|| {
                format!("key `algorithm` must be SHA1, SHA256 or SHA512, not {a:?}")
            })?,
        };
        let params = Params::new(algorithm, raw.digits.unwrap_or(6), raw.period.unwrap_or(30))
            .map_err(|e| format!("key `digits`/`period`: {e}"))?;
        let created = raw
            .created
            .as_ref()
            .map(timefmt::from_toml)
            .transpose()
            .map_err(|e| format!("key `created`: {e}"))?;
        if let Some(bad) = raw
            .recovery
            .iter()
            .position(|r| !recovery::is_well_formed(r))
        {
            return Err(format!(
                "key `recovery`: entry {} is not of the form sha256:<salt-hex>:<hash-hex>",
                bad + 1
            ));
        }
        Ok(Record {
            user: raw.user,
            status,
            replaces_active: raw.replaces_active,
            secret,
            params,
            issuer: raw.issuer.unwrap_or_default(),
            created,
            recovery: raw.recovery,
        })
    }

    /// The TOML text of the record. Held in zeroizing memory: it holds the key.
    pub fn to_toml(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(512));
        s.push_str(
            "# pam-totp user record (format: pam_totp(8)). Keep this file root:root 0600.\n",
        );
        s.push_str(&format!("version = {RECORD_VERSION}\n"));
        s.push_str(&format!("user = {}\n", quote(&self.user)));
        s.push_str(&format!("state = \"{}\"\n", self.status.as_str()));
        if self.replaces_active {
            s.push_str("replaces_active = true\n");
        }
        s.push_str("secret = \"");
        s.push_str(&self.secret.to_base32());
        s.push_str("\"\n");
        s.push_str(&format!("algorithm = \"{}\"\n", self.params.algorithm()));
        s.push_str(&format!("digits = {}\n", self.params.digits()));
        s.push_str(&format!("period = {}\n", self.params.period()));
        s.push_str(&format!("issuer = {}\n", quote(&self.issuer)));
        if let Some(c) = self.created {
            s.push_str(&format!("created = {}\n", timefmt::rfc3339(c)));
        }
        s.push_str("recovery = [\n");
        for r in &self.recovery {
            s.push_str(&format!("  {},\n", quote(r)));
        }
        s.push_str("]\n");
        s
    }
}

/// A document read by its fast path `plain` when that takes it, else by the TOML parser (with
/// the version check of [`parse_versioned`]): the one rule for records and the policy.
pub(crate) fn plain_or_toml<R: serde::de::DeserializeOwned>(
    text: &str,
    version: i64,
    plain: fn(&str) -> Option<R>,
    version_of: fn(&R) -> i64,
) -> Result<R, String> {
    match plain(text) {
        Some(raw) => Ok(raw),
        None => parse_versioned(text, version, version_of),
    }
}

/// The fast path of [`Record::parse`]: a record in the plain form that [`Record::to_toml`] and
/// the provisioning tools write is read without the TOML library, which costs ~60 k
/// instructions for a 10-line record, on every login (BENCHMARKS.md). `None` for anything
/// outside that form, which then goes through the TOML parser as before; so this must accept
/// only documents that the TOML parser reads to the same `Raw`, and it does, by accepting
/// only this subset of TOML 1.0:
///
/// - lines end in `\n` (no `\r`); a line is empty, or a comment (`#` then tab or printable
///   ASCII), or `key = value` with exactly one space either side of `=` and nothing after the
///   value; keys are the record's own, each at most once, `version`, `user`, `state` and
///   `secret` present, `version` the supported one (every error path stays the parser's);
/// - values: a basic string of printable ASCII without `"` or `\`; a decimal integer without
///   sign, leading zero or `_` (at most 18 digits); `true`/`false`; an offset date-time exactly
///   `YYYY-MM-DDTHH:MM:SSZ` with a valid date and time (no leap second); and for `recovery`
///   `[]`, or `[` alone on its line, then lines of two spaces, a string and `,`, then `]`.
fn parse_plain(text: &str) -> Option<Raw> {
    let mut version = None;
    let mut user = None;
    let mut state = None;
    let mut replaces_active = None;
    let mut secret: Option<Zeroizing<String>> = None;
    let mut algorithm = None;
    let mut digits = None;
    let mut period = None;
    let mut issuer = None;
    let mut created = None;
    let mut recovery = None;
    let mut lines = text.split('\n');
    while let Some(line) = lines.next() {
        if plain_blank(line)? {
            continue;
        }
        let (key, value) = plain_key_value(line)?;
        match key {
            "version" => plain_set(&mut version, plain_integer(value))?,
            "user" => plain_set(&mut user, plain_string(value).map(str::to_string))?,
            "state" => plain_set(&mut state, plain_string(value).map(str::to_string))?,
            "replaces_active" => plain_set(&mut replaces_active, plain_bool(value))?,
            "secret" => plain_set(
                &mut secret,
                plain_string(value).map(|s| Zeroizing::new(s.to_string())),
            )?,
            "algorithm" => plain_set(&mut algorithm, plain_string(value).map(str::to_string))?,
            "digits" => plain_set(&mut digits, plain_integer(value))?,
            "period" => plain_set(&mut period, plain_integer(value))?,
            "issuer" => plain_set(&mut issuer, plain_string(value).map(str::to_string))?,
            "created" => plain_set(&mut created, plain_datetime(value))?,
            "recovery" => {
                let list = match value {
                    "[]" => Vec::new(),
                    "[" => {
                        let mut list = Vec::new();
                        loop {
                            let item = lines.next()?;
                            if item == "]" {
                                break list;
                            }
                            let s = item.strip_prefix("  ")?.strip_suffix(',')?;
                            list.push(plain_string(s)?.to_string());
                        }
                    }
                    _ => return None,
                };
                plain_set(&mut recovery, Some(list))?
            }
            _ => return None,
        }
    }
    let version = version.filter(|&v| v == RECORD_VERSION)?;
    Some(Raw {
        version,
        user: user?,
        state: state?,
        replaces_active: replaces_active.unwrap_or(false),
        secret: secret?,
        algorithm,
        digits,
        period,
        issuer,
        created,
        recovery: recovery.unwrap_or_default(),
    })
}

/// A basic string of printable ASCII without `"` or `\` (its text is its value).
pub(crate) fn plain_string(v: &str) -> Option<&str> {
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    inner
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        .then_some(inner)
}
/// A decimal integer without sign, leading zero or `_`, at most 18 digits.
pub(crate) fn plain_integer(v: &str) -> Option<i64> {
    let b = v.as_bytes();
    let plain = !b.is_empty()
        && b.len() <= 18
        && b.iter().all(u8::is_ascii_digit)
        && (b[0] != b'0' || b.len() == 1);
    plain.then(|| v.parse().ok()).flatten()
}
/// Exactly `YYYY-MM-DDTHH:MM:SSZ`, a valid date and time (no leap second).
pub(crate) fn plain_datetime(v: &str) -> Option<toml::value::Datetime> {
    let b = v.as_bytes();
    let shape = b"dddd-dd-ddTdd:dd:ddZ";
    if b.len() != shape.len()
        || !b.iter().zip(shape).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            _ => c == s,
        })
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| v[r].parse::<u32>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    v.parse().ok()
}

/// Whether a line says nothing (empty, or a comment of tab or printable ASCII); `None` for a
/// comment the fast path leaves to the TOML parser.
pub(crate) fn plain_blank(line: &str) -> Option<bool> {
    match line.strip_prefix('#') {
        Some(comment) => comment
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
            .then_some(true),
        None => Some(line.is_empty()),
    }
}

/// `true` or `false`.
pub(crate) fn plain_bool(v: &str) -> Option<bool> {
    match v {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// `line.split_once(" = ")`, without the substring searcher's set-up (~300 instructions a line).
pub(crate) fn plain_key_value(line: &str) -> Option<(&str, &str)> {
    let at = line.as_bytes().windows(3).position(|w| w == b" = ")?;
    Some((&line[..at], &line[at + 3..]))
}

/// Fills an empty slot; `None` for a second value (a duplicate key) or no value.
pub(crate) fn plain_set<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value?);
            Some(())
        }
    }
}

/// A TOML basic string.
pub(crate) fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version = 1
user = "alice"
state = "active"
secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
algorithm = "SHA256"
digits = 8
period = 30
issuer = "build-01"
created = 2026-11-23T19:00:00Z
recovery = [
  "sha256:0102030405060708:0000000000000000000000000000000000000000000000000000000000000000",
]
"#;

    #[test]
    fn given_spec_example_then_parsed() {
        let r = Record::parse(GOOD).unwrap();
        assert_eq!(r.user, "alice");
        assert_eq!(r.status, Status::Active);
        assert_eq!(r.params.algorithm(), Algorithm::Sha256);
        assert_eq!(r.params.digits(), 8);
        assert_eq!(r.issuer, "build-01");
        assert_eq!(
            r.created,
            Some(timefmt::parse("2026-11-23T19:00:00Z").unwrap())
        );
        assert_eq!(r.recovery.len(), 1);
    }

    #[test]
    fn given_written_record_then_parses_back_equal() {
        let mut r = Record::parse(GOOD).unwrap();
        r.status = Status::Pending;
        r.replaces_active = true;
        r.issuer = "quote\"d \\ issuer".into();
        assert_eq!(Record::parse(&r.to_toml()).unwrap(), r);
    }

    #[test]
    fn given_minimal_record_then_defaults_apply() {
        let r = Record::parse(
            "version = 1\nuser = \"bob\"\nstate = \"pending\"\nsecret = \"JBSWY3DPEHPK3PXP\"\n",
        )
        .unwrap();
        assert_eq!(r.params, Params::default());
        assert!(r.recovery.is_empty() && r.created.is_none());
    }

    fn err_of(text: &str) -> String {
        Record::parse(text).unwrap_err()
    }

    #[test]
    fn given_unknown_key_then_refused_naming_the_key() {
        let e = err_of(&format!("{GOOD}\nshoe_size = 44\n"));
        assert!(e.contains("shoe_size"), "{e}");
    }

    #[test]
    fn given_newer_version_then_refused() {
        let e = err_of(&GOOD.replace("version = 1", "version = 2\nfuture = 1"));
        assert!(e.contains("newer"), "{e}");
        assert!(err_of(&GOOD.replace("version = 1\n", "")).contains("version"));
        assert!(err_of(&GOOD.replace("version = 1", "version = \"1\"")).contains("version"));
    }

    #[test]
    fn given_bad_values_then_refused() {
        let cases = [
            (
                GOOD.replace("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "JBSWY3DPEHPK3PX1"),
                "base32",
            ),
            (
                GOOD.replace("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "JBSWY3DP"),
                "too short",
            ),
            (GOOD.replace("\"active\"", "\"enabled\""), "state"),
            (GOOD.replace("digits = 8", "digits = 7"), "digits"),
            (GOOD.replace("period = 30", "period = 5"), "period"),
            (GOOD.replace("\"SHA256\"", "\"MD5\""), "algorithm"),
            (
                GOOD.replace("sha256:0102030405060708", "sha256:01"),
                "recovery",
            ),
            (
                GOOD.replace("2026-11-23T19:00:00Z", "2026-11-23T19:00:00"),
                "created",
            ),
            (
                GOOD.replace(
                    "state = \"active\"",
                    "state = \"active\"\nreplaces_active = true",
                ),
                "replaces_active",
            ),
            ("version = 1\nuser = [".to_string(), ""),
        ];
        for (text, needle) in cases {
            let e = err_of(&text);
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }

    /// The fast path reads a document exactly as the TOML parser does, or declines it: checked
    /// on the written forms and on every record key set to each of a list of edge values, and
    /// on lines bent out of the plain form.
    #[test]
    fn given_any_text_then_fast_path_agrees_with_toml() {
        let mut written = Record::parse(GOOD).unwrap();
        written
            .recovery
            .push(written.recovery[0].replace("01", "ff"));
        let plain = [
            GOOD.to_string(),
            written.to_toml().to_string(),
            "version = 1\nuser = \"u1\"\nstate = \"active\"\nsecret = \"7XLWDN4RU27P53YJYW4VBAVL5S6HG2IL\"\n\
             algorithm = \"SHA1\"\ndigits = 6\nperiod = 30\nissuer = \"bench\"\n\
             created = 2026-01-01T00:00:00Z\nrecovery = []\n"
                .to_string(),
            "version = 1\nuser = \"bob\"\nstate = \"pending\"\nsecret = \"JBSWY3DPEHPK3PXP\"".to_string(),
        ];
        for t in &plain {
            assert!(parse_plain(t).is_some(), "fast path declined:\n{t}");
        }
        let edge = [
            "0",
            "01",
            "-1",
            "+1",
            "1_0",
            "6",
            "30",
            "1",
            "2",
            "9223372036854775807",
            "999999999999999999",
            "1.0",
            "0x1",
            "true",
            "false",
            "True",
            "\"x\"",
            "\"\"",
            "\"a\\tb\"",
            "\"a\\\"b\"",
            "'lit'",
            "\"\"\"x\"\"\"",
            "\"é\"",
            "\"a\u{7f}\"",
            "\"a\tb\"",
            "\"x\" # c",
            "\"x\" ",
            "2026-11-23T19:00:00Z",
            "2024-02-29T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-00-10T00:00:00Z",
            "2026-01-00T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T23:60:00Z",
            "2026-12-31T23:59:60Z",
            "2026-01-01t00:00:00Z",
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00z",
            "2026-01-01T00:00:00.5Z",
            "2026-01-01T00:00:00+01:00",
            "2026-01-01T00:00:00",
            "2026-01-01",
            "00:00:00",
            "0000-01-01T00:00:00Z",
            "[]",
            "[ ]",
            "[",
            "[\"x\"]",
            "{}",
        ];
        let mut texts: Vec<String> = plain.to_vec();
        let keys = [
            "version",
            "user",
            "state",
            "replaces_active",
            "secret",
            "algorithm",
            "digits",
            "period",
            "issuer",
            "created",
            "recovery",
            "other",
        ];
        for key in keys {
            for v in edge {
                let mut t: String = GOOD
                    .lines()
                    .filter(|l| !l.starts_with(key))
                    .collect::<Vec<_>>()
                    .join("\n");
                if key == "recovery" {
                    t = t.replace("\n  \"sha256:0102030405060708:0000000000000000000000000000000000000000000000000000000000000000\",\n]", "");
                }
                texts.push(format!("{t}\n{key} = {v}\n"));
            }
        }
        let good_lines: Vec<&str> = GOOD.lines().collect();
        for i in 0..good_lines.len() {
            for bend in ["", "dup", " ", "\t", "\r", " # c", "x"] {
                let mut lines = good_lines.clone();
                let line = lines[i].to_string();
                let bent = match bend {
                    "" => String::new(),
                    "dup" => format!("{line}\n{line}"),
                    " " | "\t" => format!("{bend}{line}"),
                    _ => format!("{line}{bend}"),
                };
                lines[i] = &bent;
                texts.push(lines.join("\n"));
                texts.push(lines.join("\n").replacen(" = ", "=", 1));
            }
        }
        texts.push("# héllo\n".to_string() + &plain[2]);
        texts.push("# a\u{7f}\n".to_string() + &plain[2]);
        texts.push("\u{feff}".to_string() + &plain[2]);
        texts.push(plain[2].replace("\n", "\r\n"));
        texts.push(plain[2].replace("version = 1", "version = 2"));
        texts.push(plain[2].replace("recovery = []", "recovery = [\n]"));
        texts.push(plain[2].replace("recovery = []", "recovery = [\n  \"a\"\n]"));
        texts.push(plain[2].replace("recovery = []", "recovery = [\n   \"a\",\n]"));
        texts.push(plain[2].replace("recovery = []", "recovery = [\n  \"a\",\n ]"));
        texts.push(plain[2].replace("recovery = []", "recovery = [\n  \"a\",\n"));
        texts.push(plain[2].replace("recovery = []", "recovery = [\n  \"a\",\n  \"b\",\n]"));
        texts.push(plain[2].replace("recovery = []", "[throttle]\nx = 1"));
        let mut taken = 0;
        for t in &texts {
            let slow = parse_versioned::<Raw>(t, RECORD_VERSION, |r: &Raw| r.version);
            if let Some(fast) = parse_plain(t) {
                taken += 1;
                assert_eq!(Ok(&fast), slow.as_ref(), "fast path differs on:\n{t}");
            }
            assert_eq!(Record::parse(t), Record::parse_with_toml(t), "on:\n{t}");
        }
        assert!(
            taken > 30,
            "only {taken} of {} texts took the fast path",
            texts.len()
        );
    }

    #[test]
    fn parse_errors_never_echo_the_secret() {
        let e = err_of(&GOOD.replace("digits = 8", "digits = \"JBSWY3DPEHPK3PXP\""));
        assert!(!e.contains("JBSWY3DP"), "{e}");
    }
}
