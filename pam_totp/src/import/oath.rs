//! The pam_oath users file (liboath's usersfile.c): its lines split into fields, liboath's
//! token types and local TIME field, and the time step a line's last code was used at (the
//! admin CLI's `pam-totp import oath` turns the time-based lines into records).
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
#![forbid(unsafe_code)]

use crate::clock;
use crate::secret::Secret;
use crate::timefmt;
use crate::totp::{Generator, Params};

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
) -> Result<u64, u64> {
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
pub fn future_time(params: Params, local_time: u64, now: u64) -> Option<u64> {
    let earliest = params.step_at(local_time.saturating_sub(MAX_EAST));
    clock::imported_used_step(earliest, params, now)
        .err()
        .map(|s| s - params.step_at(now))
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
