//! `pam-totp import oath FILE [--user U]`: the time-based lines of a pam_oath users file become
//! active records.
//!
//! A line is `TYPE USER PIN SECRET-HEX [COUNTER [LAST-OTP [TIME]]]`, separated by blanks or
//! tabs, as liboath reads and writes it (usersfile.c). TYPE is `HOTP`, `HOTP/E`, `HOTP/E/N`
//! (counter-based) or `HOTP/T30`, `HOTP/T30/N`, `HOTP/T60`, `HOTP/T60/N` (time-based, 30 or 60 s,
//! N digits, default 6). After a successful login pam_oath rewrites the user's line with COUNTER
//! (for TOTP: a window position, meaningless here), LAST-OTP (the code itself) and TIME, the
//! local time of the login as `2026-11-25T19:47:10L` (strftime `%Y-%m-%dT%H:%M:%SL`).
//!
//! The last used step: the highest step whose code is LAST-OTP among the steps the local TIME
//! can denote in any time zone (UTC-12 to UTC+14) widened by pam_oath's largest usual search
//! window, never beyond now plus that window. Matching the code itself finds the step actually
//! used (also when the code was from a step before or after TIME); taking the highest match
//! errs on the safe side (a code is never accepted twice), and random matches of a 6-digit code
//! within that span are rare and at worst hold back codes until now plus the window.

use crate::cli::ImportOathArgs;
use crate::ctx::{self, Ctx};
use crate::error::{CliError, Result};
use crate::import::{self, SaveError};
use crate::output::{erroutln, outln, time};
use pam_totp::clock;
use pam_totp::escape::terminal_safe;
use pam_totp::secret::{Secret, RECOMMENDED_SECRET_BYTES};
use pam_totp::store::{Record, Status, Store};
use pam_totp::timefmt;
use pam_totp::totp::{Algorithm, Generator, Params};
use std::collections::BTreeSet;

const MAX_FILE: u64 = 1024 * 1024;
/// Steps searched beyond TIME's possible range, and allowed beyond now (pam_oath `window=`).
const SEARCH_WINDOW: u64 = 20;
/// Time zones lie between UTC-12 and UTC+14.
const MAX_EAST: u64 = 14 * 3600;
const MAX_WEST: u64 = 12 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// Counter-based (HOTP): not supported.
    Hotp,
    /// Time-based: digits (6, 7 or 8) and period.
    Totp { digits: u8, period: u32 },
}

/// liboath's token types (usersfile.c `parse_type`).
pub fn parse_type(s: &str) -> Option<TokenType> {
    let digits = |d: Option<&str>| match d {
        None | Some("6") => Some(6),
        Some("7") => Some(7),
        Some("8") => Some(8),
        _ => None,
    };
    let mut parts = s.splitn(3, '/');
    if parts.next()? != "HOTP" {
        return None;
    }
    match parts.next() {
        None => Some(TokenType::Hotp),
        Some("E") => digits(parts.next()).map(|_| TokenType::Hotp),
        Some("T30") => digits(parts.next()).map(|digits| TokenType::Totp { digits, period: 30 }),
        Some("T60") => digits(parts.next()).map(|digits| TokenType::Totp { digits, period: 60 }),
        _ => None,
    }
}

/// One line of the users file, split into its fields. `Debug` hides the key and last code.
pub struct Line<'a> {
    pub number: usize,
    pub kind: TokenType,
    pub type_text: &'a str,
    pub user: &'a str,
    pub pin: &'a str,
    pub secret_hex: Option<&'a str>,
    pub last_otp: Option<&'a str>,
    pub time: Option<&'a str>,
}

impl std::fmt::Debug for Line<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |o: Option<&str>| o.map(|_| "<redacted>");
        f.debug_struct("Line")
            .field("number", &self.number)
            .field("kind", &self.kind)
            .field("type_text", &self.type_text)
            .field("user", &self.user)
            .field("pin", &hidden(Some(self.pin)))
            .field("secret_hex", &hidden(self.secret_hex))
            .field("last_otp", &hidden(self.last_otp))
            .field("time", &self.time)
            .finish()
    }
}

/// What a line of the file is.
#[derive(Debug)]
pub enum Parsed<'a> {
    Blank,
    /// A line whose first field is no token type; liboath skips these too.
    UnknownType {
        number: usize,
        type_text: &'a str,
    },
    Token(Line<'a>),
}

pub fn parse_line(number: usize, line: &str) -> Parsed<'_> {
    let mut f = line.split([' ', '\t', '\r']).filter(|w| !w.is_empty());
    let Some(type_text) = f.next() else {
        return Parsed::Blank;
    };
    if type_text.starts_with('#') {
        return Parsed::Blank;
    }
    let Some(kind) = parse_type(type_text) else {
        return Parsed::UnknownType { number, type_text };
    };
    let user = f.next().unwrap_or("");
    let pin = f.next().unwrap_or("-");
    let secret_hex = f.next();
    let _counter = f.next();
    Parsed::Token(Line {
        number,
        kind,
        type_text,
        user,
        pin,
        secret_hex,
        last_otp: f.next().filter(|o| *o != "-"),
        time: f.next(),
    })
}

/// liboath's TIME field, `YYYY-MM-DDTHH:MM:SSL`, read as if it were UTC.
pub fn parse_local_time(s: &str) -> Option<u64> {
    let s = s.strip_suffix('L')?;
    let b = s.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = &s[r];
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let days = timefmt::days_from_civil(i64::from(y), mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + se);
    u64::try_from(secs).ok()
}

/// The step to record as used, given the line's last code and its local TIME (see the module
/// comment). `Err` with the fallback step if the code matches no step in the span.
pub fn last_used_step(
    secret: &Secret,
    params: Params,
    last_otp: &str,
    local_time: u64,
    now: u64,
) -> std::result::Result<u64, u64> {
    let p = u64::from(params.period());
    let first = local_time.saturating_sub(MAX_EAST) / p;
    let first = first.saturating_sub(SEARCH_WINDOW);
    let cap = params.step_at(now) + SEARCH_WINDOW;
    let last = ((local_time + MAX_WEST) / p + SEARCH_WINDOW).min(cap);
    let g = Generator::new(secret, params);
    let mut found = None;
    for step in first..=last {
        if *g.code_at_step(step) == *last_otp {
            found = Some(step);
        }
    }
    found.ok_or(last)
}

/// Steps by which the local TIME lies in the future even when read in the easternmost time
/// zone (its earliest UTC meaning), if that is beyond what a code could be ahead
/// (`clock::imported_used_step`).
fn future_time(params: Params, local_time: u64, now: u64) -> Option<u64> {
    let earliest = params.step_at(local_time.saturating_sub(MAX_EAST));
    clock::imported_used_step(earliest, params, now)
        .err()
        .map(|s| s - params.step_at(now))
}

/// How one token line ended.
enum Outcome {
    Imported(String),
    Failed(String),
    Hotp(String),
}

pub fn run(ctx: &Ctx, a: &ImportOathArgs) -> Result<()> {
    if let Some(u) = &a.user {
        ctx::check_user(u)?;
    }
    let text = import::read_trusted_source(&a.file, MAX_FILE, ctx.owner, a.force)?;
    let issuer = ctx::issuer(ctx, a.issuer.as_deref())?;
    let store = ctx.create_store()?;
    let now = ctx.now();
    let file = a.file.display().to_string();

    let mut seen: BTreeSet<String> = BTreeSet::new();
    let (mut imported, mut failed, mut hotp, mut considered) = (0usize, 0usize, 0usize, 0usize);
    for (i, raw) in text.lines().enumerate() {
        let line = match parse_line(i + 1, raw) {
            Parsed::Blank => continue,
            Parsed::UnknownType { number, type_text } => {
                if a.user.is_none() {
                    erroutln!(
                        "line {number}: unknown token type \"{}\"; ignored (as pam_oath does)",
                        terminal_safe(&type_text.chars().take(32).collect::<String>())
                    );
                }
                continue;
            }
            Parsed::Token(l) => l,
        };
        if a.user.as_deref().is_some_and(|u| u != line.user) {
            continue;
        }
        considered += 1;
        match import_line(ctx, &store, &issuer, &line, &mut seen, a.force, now) {
            Outcome::Imported(msg) => {
                imported += 1;
                outln!("line {}: {}", line.number, terminal_safe(&msg))?;
            }
            Outcome::Failed(msg) => {
                failed += 1;
                erroutln!("line {}: {}", line.number, terminal_safe(&msg));
            }
            Outcome::Hotp(msg) => {
                hotp += 1;
                erroutln!("line {}: {}", line.number, terminal_safe(&msg));
            }
        }
    }

    let totp_lines = imported + failed;
    let mut summary = if totp_lines == 0 {
        format!("{file} has no time-based line")
    } else {
        format!(
            "Imported {imported} of {totp_lines} time-based line{} from {file}",
            if totp_lines == 1 { "" } else { "s" }
        )
    };
    if hotp > 0 {
        summary.push_str(&format!(
            "; {hotp} counter-based (HOTP) line{} not imported (unsupported)",
            if hotp == 1 { "" } else { "s" }
        ));
    }
    summary.push('.');
    if failed == 0 && imported > 0 {
        outln!("{summary}")?;
        outln!("The source file was only read, not changed.")?;
        return Ok(());
    }
    let err = if considered == 0 {
        match &a.user {
            Some(u) => CliError::new(format!("{file} has no line for {u}; nothing was imported")),
            None => CliError::new(format!("{file} has no token lines; nothing was imported"))
                .hint("lines look like: HOTP/T30 alice - 3132333435363738393031323334353637383930"),
        }
    } else if imported == 0 {
        CliError::new(format!("{summary} Nothing was imported."))
    } else {
        CliError::new(format!("{summary} {failed} failed (see above)."))
    };
    let err = if failed > 0 {
        err.hint("fix or remove the failed lines (or enrol those users afresh with pam-totp enroll); lines already imported stay imported")
    } else if hotp > 0 && imported == 0 {
        err.hint(
            "enrol the HOTP users afresh instead (a new key for the app): pam-totp enroll USER",
        )
    } else {
        err
    };
    Err(err)
}

fn import_line(
    ctx: &Ctx,
    store: &Store,
    issuer: &str,
    l: &Line,
    seen: &mut BTreeSet<String>,
    force: bool,
    now: u64,
) -> Outcome {
    let user = l.user;
    let name = if user.is_empty() { "(no user)" } else { user };
    let (digits, period) = match l.kind {
        TokenType::Hotp => {
            return Outcome::Hotp(format!(
                "{name}: {} is counter-based (HOTP), which pam_totp does not support; not imported",
                l.type_text
            ))
        }
        TokenType::Totp { digits, period } => (digits, period),
    };
    let fail = |why: String| Outcome::Failed(format!("{name}: {why}; not imported"));
    if !pam_totp::names::is_valid_user_name(user) {
        return fail("invalid user name".into());
    }
    if l.pin != "-" {
        return fail("has a PIN, which pam-totp does not support".into());
    }
    if !seen.insert(user.to_string()) {
        return fail("a second token line for this user (pam-totp keeps one key per user; the first line counts)".into());
    }
    let params = match Params::new(Algorithm::Sha1, i64::from(digits), i64::from(period)) {
        Ok(p) => p,
        Err(_) => return fail(format!("{digits}-digit codes are not supported (6 or 8)")),
    };
    let Some(hex) = l.secret_hex else {
        return fail("no secret".into());
    };
    let secret = match pam_totp::hex::decode(hex).map(Secret::from_bytes) {
        None => return fail("the secret is not hexadecimal".into()),
        Some(Err(e)) => return fail(e.to_string()),
        Some(Ok(s)) => s,
    };
    let mut notes: Vec<String> = Vec::new();
    let last_step = match (l.last_otp, l.time) {
        (Some(otp), Some(t)) => match parse_local_time(t).map(|l| (l, future_time(params, l, now)))
        {
            None => {
                return fail(format!(
                    "cannot read the time {t:?} (expected 2026-11-25T19:47:10L)"
                ))
            }
            Some((_, Some(ahead))) => {
                return fail(format!(
                    "the last-OTP time {t} lies in the future (in every time zone, at least \
                     {ahead} steps ahead of now); stored as used, it would make every code of \
                     {user} a replay until then. Fix the time in the line (or remove LAST-OTP \
                     and TIME from it; pam_totp never accepts a code twice anyway), or this \
                     server's clock if it is the one that is wrong, and import again"
                ))
            }
            Some((local, None)) => match last_used_step(&secret, params, otp, local, now) {
                Ok(step) if clock::imported_used_step(step, params, now).is_err() => {
                    return fail(format!(
                        "the last code ({t}) is the code of step {step}, {} steps in the future; \
                         stored as used, it would make every code of {user} a replay until then. \
                         Wait until {} and import again, or remove LAST-OTP and TIME from the line",
                        step - params.step_at(now),
                        time(step * u64::from(period))
                    ))
                }
                Ok(step) => {
                    notes.push(format!(
                        "the code used at {t} (step {step}, {}) stays used",
                        time(step * u64::from(period))
                    ));
                    Some(step)
                }
                Err(fallback) => {
                    notes.push(format!(
                        "the last code ({t}) matches no step near that time; codes up to step \
                         {fallback} count as used"
                    ));
                    Some(fallback)
                }
            },
        },
        (Some(_), None) => {
            notes.push("a last code without its time: cannot tell its step".into());
            None
        }
        _ => None,
    };
    if secret.expose().len() < RECOMMENDED_SECRET_BYTES {
        notes.push(format!(
            "the key has only {} bits (128 or more are recommended)",
            secret.len_bits()
        ));
    }
    let record = Record {
        user: user.to_string(),
        status: Status::Active,
        replaces_active: false,
        secret,
        params,
        issuer: issuer.to_string(),
        created: Some(ctx.now()),
        recovery: Vec::new(),
    };
    match import::save(store, &record, last_step, force) {
        Ok(()) => {
            let mut msg = format!("imported {user} ({})", params.describe());
            for n in notes {
                msg.push_str("; ");
                msg.push_str(&n);
            }
            Outcome::Imported(msg)
        }
        Err(SaveError::ActiveExists) => {
            fail("already has an active record (add --force to replace it)".into())
        }
        Err(SaveError::Other(e)) => {
            let hint = e
                .hints
                .first()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            fail(format!("{}{hint}", e.message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_types_are_liboaths() {
        use TokenType::*;
        for (s, want) in [
            ("HOTP", Some(Hotp)),
            ("HOTP/E", Some(Hotp)),
            ("HOTP/E/8", Some(Hotp)),
            (
                "HOTP/T30",
                Some(Totp {
                    digits: 6,
                    period: 30,
                }),
            ),
            (
                "HOTP/T30/6",
                Some(Totp {
                    digits: 6,
                    period: 30,
                }),
            ),
            (
                "HOTP/T30/8",
                Some(Totp {
                    digits: 8,
                    period: 30,
                }),
            ),
            (
                "HOTP/T60/7",
                Some(Totp {
                    digits: 7,
                    period: 60,
                }),
            ),
            (
                "HOTP/T60",
                Some(Totp {
                    digits: 6,
                    period: 60,
                }),
            ),
            ("HOTP/T45", None),
            ("HOTP/T30/9", None),
            ("TOTP", None),
            ("hotp/t30", None),
        ] {
            assert_eq!(parse_type(s), want, "{s}");
        }
    }

    #[test]
    fn a_line_written_by_pam_oath_is_split_into_its_fields() {
        let Parsed::Token(l) = parse_line(
            3,
            "HOTP/T30\talice\t-\t3132333435363738393031323334353637383930\t0\t048149\t2026-11-25T19:47:10L",
        ) else {
            panic!()
        };
        assert_eq!(l.number, 3);
        assert_eq!(l.user, "alice");
        assert_eq!(l.pin, "-");
        assert_eq!(l.last_otp, Some("048149"));
        assert_eq!(l.time, Some("2026-11-25T19:47:10L"));
        assert!(matches!(parse_line(1, "  \t"), Parsed::Blank));
        assert!(matches!(parse_line(1, "# HOTP/T30 x - 00"), Parsed::Blank));
        assert!(matches!(parse_line(1, "FOO x"), Parsed::UnknownType { .. }));
    }

    #[test]
    fn local_time_is_read_as_if_utc() {
        assert_eq!(
            parse_local_time("2026-11-25T19:47:10L"),
            Some(timefmt::parse("2026-11-25T19:47:10Z").unwrap())
        );
        for bad in [
            "2026-11-25T19:47:10",
            "2026-11-25 19:47:10L",
            "2026-13-25T19:47:10L",
            "x",
        ] {
            assert_eq!(parse_local_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn last_used_step_finds_the_code_in_any_time_zone() {
        let secret = Secret::from_bytes(b"12345678901234567890".to_vec()).unwrap();
        let p = Params::default();
        let g = Generator::new(&secret, p);
        let utc = 1_800_000_000u64;
        let step = p.step_at(utc) + 1; // a code one step ahead was accepted
        let code = g.code_at_step(step);
        let now = utc + 3600;
        for offset_h in [-12i64, -5, 0, 1, 9, 14] {
            let local = (utc as i64 + offset_h * 3600) as u64;
            let got = last_used_step(&secret, p, &code, local, now).unwrap();
            assert!(got >= step, "offset {offset_h}: {got} < {step}");
            assert!(got <= p.step_at(now) + SEARCH_WINDOW);
        }
        // Never beyond now plus the window, even when TIME lies in the future.
        let err = last_used_step(&secret, p, "000000x", utc + 86_400, utc).unwrap_err();
        assert_eq!(err, p.step_at(utc) + SEARCH_WINDOW);
    }
}
