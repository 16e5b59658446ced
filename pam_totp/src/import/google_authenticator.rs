//! The `~/.google_authenticator` file, as written by the `google-authenticator` tool of
//! libpam-google-authenticator: parsed into its key, options and scratch codes (the admin CLI's
//! `pam-totp import google-authenticator` turns them into a record).
//!
//! The format: the base32 key on the first line; option lines `" NAME [VALUE...]`
//! (`TOTP_AUTH`, `HOTP_COUNTER n`, `WINDOW_SIZE n`, `RATE_LIMIT n m [timestamps...]`,
//! `DISALLOW_REUSE [steps...]`, `STEP_SIZE n`, `TIME_SKEW n`, `RESETTING_TIME_SKEW ...`); then
//! 8-digit scratch codes, one a line. Codes are always HMAC-SHA1 with 6 digits.
#![forbid(unsafe_code)]

use crate::secret::Secret;
use zeroize::Zeroizing;

/// google-authenticator's default WINDOW_SIZE: the current code and one either side.
pub const DEFAULT_WINDOW_SIZE: u32 = 3;

/// A parsed google-authenticator file. `Debug` hides the scratch codes.
pub struct GaFile {
    pub secret: Secret,
    pub window_size: Option<u32>,
    /// (logins, seconds)
    pub rate_limit: Option<(u32, u32)>,
    /// `Some` if DISALLOW_REUSE is set: the time steps already used.
    pub disallow_reuse: Option<Vec<u64>>,
    pub step_size: Option<u32>,
    pub time_skew: Option<i64>,
    pub scratch_codes: Vec<Zeroizing<String>>,
    /// Options this importer does not know, by name.
    pub unknown_options: Vec<String>,
}

impl std::fmt::Debug for GaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GaFile")
            .field("secret", &self.secret)
            .field("window_size", &self.window_size)
            .field("rate_limit", &self.rate_limit)
            .field("disallow_reuse", &self.disallow_reuse)
            .field("step_size", &self.step_size)
            .field("time_skew", &self.time_skew)
            .field(
                "scratch_codes",
                &format_args!("<{} redacted>", self.scratch_codes.len()),
            )
            .field("unknown_options", &self.unknown_options)
            .finish()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum GaError {
    Hotp,
    NotTotp,
    Bad(String),
}

fn number<T: std::str::FromStr>(line: usize, name: &str, v: Option<&str>) -> Result<T, GaError> {
    v.and_then(|v| v.parse().ok())
        .ok_or_else(|| GaError::Bad(format!("line {line}: {name} needs a number")))
}

pub fn parse(text: &str) -> Result<GaFile, GaError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let (_, first) = lines
        .next()
        .ok_or_else(|| GaError::Bad("the file is empty".into()))?;
    let secret = Secret::from_base32(first.trim())
        .map_err(|e| GaError::Bad(format!("line 1 (the key): {e}")))?;
    let mut f = GaFile {
        secret,
        window_size: None,
        rate_limit: None,
        disallow_reuse: None,
        step_size: None,
        time_skew: None,
        scratch_codes: Vec::new(),
        unknown_options: Vec::new(),
    };
    let (mut totp, mut hotp) = (false, false);
    for (n, line) in lines {
        if let Some(opt) = line.strip_prefix("\" ") {
            let mut words = opt.split_whitespace();
            let name = words.next().unwrap_or("");
            match name {
                "TOTP_AUTH" => totp = true,
                "HOTP_COUNTER" => hotp = true,
                "WINDOW_SIZE" => f.window_size = Some(number(n, name, words.next())?),
                "STEP_SIZE" => f.step_size = Some(number(n, name, words.next())?),
                "TIME_SKEW" => f.time_skew = Some(number(n, name, words.next())?),
                "RATE_LIMIT" => {
                    let logins = number(n, name, words.next())?;
                    let secs = number(n, name, words.next())?;
                    f.rate_limit = Some((logins, secs));
                }
                "DISALLOW_REUSE" => {
                    let steps = words
                        .map(|w| w.parse::<u64>())
                        .collect::<Result<Vec<u64>, _>>()
                        .map_err(|_| {
                            GaError::Bad(format!(
                                "line {n}: DISALLOW_REUSE needs time steps (numbers)"
                            ))
                        })?;
                    f.disallow_reuse = Some(steps);
                }
                // Transient state of google-authenticator's clock-skew detection.
                "RESETTING_TIME_SKEW" => {}
                other => f.unknown_options.push(other.to_string()),
            }
        } else if line.trim().is_empty() {
            continue;
        } else {
            let code = line.trim();
            if code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit()) && !code.starts_with('0')
            {
                f.scratch_codes.push(Zeroizing::new(code.to_string()));
            } else {
                return Err(GaError::Bad(format!(
                    "line {n} is neither an option (\" NAME) nor an 8-digit scratch code"
                )));
            }
        }
    }
    if hotp {
        return Err(GaError::Hotp);
    }
    if !totp {
        return Err(GaError::NotTotp);
    }
    Ok(f)
}

/// The module `window=` that accepts at least the codes WINDOW_SIZE `w` accepted:
/// google-authenticator checks the steps from -((w-1)/2) to +w/2 around now.
pub fn module_window(w: u32) -> u32 {
    w / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &str = "E4S56IIG67OH36LFYVXARI3G2A\n\" RATE_LIMIT 3 30 1764100000\n\" WINDOW_SIZE 3\n\" DISALLOW_REUSE 58803330 58803331\n\" TOTP_AUTH\n38160023\n53517259\n";

    #[test]
    fn given_a_real_file_then_every_option_is_read() {
        let f = parse(REAL).unwrap();
        assert_eq!(f.secret.len_bits(), 128);
        assert_eq!(f.window_size, Some(3));
        assert_eq!(f.rate_limit, Some((3, 30)));
        assert_eq!(f.disallow_reuse, Some(vec![58_803_330, 58_803_331]));
        assert_eq!(f.scratch_codes.len(), 2);
        assert_eq!(&*f.scratch_codes[1], "53517259");
        assert!(f.unknown_options.is_empty());
    }

    #[test]
    fn given_hotp_or_no_mode_then_refused() {
        assert_eq!(
            parse("E4S56IIG67OH36LFYVXARI3G2A\n\" HOTP_COUNTER 1\n").unwrap_err(),
            GaError::Hotp
        );
        assert_eq!(
            parse("E4S56IIG67OH36LFYVXARI3G2A\n12345678\n").unwrap_err(),
            GaError::NotTotp
        );
    }

    #[test]
    fn given_garbage_then_refused_with_the_line() {
        for (text, needle) in [
            ("", "empty"),
            ("not base32!\n\" TOTP_AUTH\n", "line 1"),
            (
                "E4S56IIG67OH36LFYVXARI3G2A\n\" TOTP_AUTH\nhello\n",
                "line 3",
            ),
            (
                "E4S56IIG67OH36LFYVXARI3G2A\n\" TOTP_AUTH\n1234567\n",
                "line 3",
            ),
            (
                "E4S56IIG67OH36LFYVXARI3G2A\n\" WINDOW_SIZE x\n",
                "WINDOW_SIZE",
            ),
            (
                "E4S56IIG67OH36LFYVXARI3G2A\n\" DISALLOW_REUSE 1 x\n",
                "DISALLOW_REUSE",
            ),
        ] {
            match parse(text) {
                Err(GaError::Bad(m)) => assert!(m.contains(needle), "{text:?}: {m}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn step_size_skew_and_unknown_options_are_kept() {
        let f = parse("E4S56IIG67OH36LFYVXARI3G2A\r\n\" TOTP_AUTH\r\n\" STEP_SIZE 60\r\n\" TIME_SKEW -2\r\n\" RESETTING_TIME_SKEW 1+1\r\n\" NEW_THING 1\r\n").unwrap();
        assert_eq!(f.step_size, Some(60));
        assert_eq!(f.time_skew, Some(-2));
        assert_eq!(f.unknown_options, vec!["NEW_THING"]);
        assert_eq!(f.disallow_reuse, None);
    }

    #[test]
    fn module_window_covers_google_authenticators_window() {
        // WINDOW_SIZE w checks -((w-1)/2) ..= w/2.
        for w in 1..=21u32 {
            let (before, after) = ((w - 1) / 2, w / 2);
            let n = module_window(w);
            assert!(n >= before && n >= after, "{w}");
            assert!(n == before.max(after), "{w}");
        }
    }
}
