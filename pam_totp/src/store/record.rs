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
    pub fn parse(text: &str) -> Result<Record, String> {
        let raw: Raw = parse_versioned(text, RECORD_VERSION, |r: &Raw| r.version)?;
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

    #[test]
    fn parse_errors_never_echo_the_secret() {
        let e = err_of(&GOOD.replace("digits = 8", "digits = \"JBSWY3DPEHPK3PXP\""));
        assert!(!e.contains("JBSWY3DP"), "{e}");
    }
}
