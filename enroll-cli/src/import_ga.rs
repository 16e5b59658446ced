//! `pam-totp import google-authenticator USER [FILE]`: a `~/.google_authenticator` file (as
//! written by the `google-authenticator` tool of libpam-google-authenticator) becomes an active
//! record with the same key.
//!
//! The format: the base32 key on the first line; option lines `" NAME [VALUE...]`
//! (`TOTP_AUTH`, `HOTP_COUNTER n`, `WINDOW_SIZE n`, `RATE_LIMIT n m [timestamps...]`,
//! `DISALLOW_REUSE [steps...]`, `STEP_SIZE n`, `TIME_SKEW n`, `RESETTING_TIME_SKEW ...`); then
//! 8-digit scratch codes, one a line. Codes are always HMAC-SHA1 with 6 digits.

use crate::cli::ImportGaArgs;
use crate::ctx::{self, Ctx};
use crate::error::{CliError, Result};
use crate::import::{self, SaveError};
use crate::output::{erroutln, out, time};
use pam_totp::clock;
use pam_totp::escape::terminal_safe;
use pam_totp::recovery;
use pam_totp::secret::{Secret, RECOMMENDED_SECRET_BYTES};
use pam_totp::store::{Record, Status};
use pam_totp::totp::{Algorithm, Params, MAX_PERIOD, MIN_PERIOD};
use std::path::PathBuf;
use zeroize::Zeroizing;

/// google-authenticator refuses larger files too.
const MAX_FILE: u64 = 64 * 1024;
/// google-authenticator's default WINDOW_SIZE: the current code and one either side.
const DEFAULT_WINDOW_SIZE: u32 = 3;
/// The module's largest `window=`.
const MAX_MODULE_WINDOW: u32 = 10;

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

fn number<T: std::str::FromStr>(
    line: usize,
    name: &str,
    v: Option<&str>,
) -> std::result::Result<T, GaError> {
    v.and_then(|v| v.parse().ok())
        .ok_or_else(|| GaError::Bad(format!("line {line}: {name} needs a number")))
}

pub fn parse(text: &str) -> std::result::Result<GaFile, GaError> {
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
                        .collect::<std::result::Result<Vec<u64>, _>>()
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

pub fn run(ctx: &Ctx, a: &ImportGaArgs) -> Result<()> {
    let user = &ctx::check_user(&a.user)?;
    let path: PathBuf = match &a.file {
        Some(p) => p.clone(),
        None => match nix::unistd::User::from_name(user) {
            Ok(Some(u)) => u.dir.join(".google_authenticator"),
            Ok(None) => {
                return Err(CliError::new(format!(
                    "{user} is not in the user database, so there is no home directory to look in"
                ))
                .hint(format!(
                    "give the file: pam-totp import google-authenticator {user} FILE"
                )))
            }
            Err(e) => return Err(CliError::new(format!("cannot look up {user}: {e}"))),
        },
    };
    let text = import::read_source(&path, MAX_FILE)?;
    let f = parse(&text).map_err(|e| match e {
        GaError::Hotp => CliError::new(format!(
            "{} is set up for counter-based codes (HOTP_COUNTER): pam_totp supports time-based \
             codes (TOTP) only; nothing was imported",
            path.display()
        ))
        .hint(format!(
            "enrol {user} afresh instead (a new key for the app): pam-totp enroll {user}"
        )),
        GaError::NotTotp => CliError::new(format!(
            "{} has no TOTP_AUTH line, so it is not a time-based google-authenticator file; \
             nothing was imported",
            path.display()
        ))
        .hint(format!(
            "enrol {user} afresh instead: pam-totp enroll {user}"
        )),
        GaError::Bad(why) => CliError::new(format!(
            "cannot parse {}: {why}; nothing was imported",
            path.display()
        ))
        .hint("is it a ~/.google_authenticator file? (first line: the base32 key)"),
    })?;
    let period = f.step_size.unwrap_or(30);
    let params = Params::new(Algorithm::Sha1, 6, i64::from(period)).map_err(|_| {
        CliError::new(format!(
            "{} uses STEP_SIZE {period}: pam_totp supports periods of {MIN_PERIOD} to \
             {MAX_PERIOD} seconds; nothing was imported",
            path.display()
        ))
        .hint(format!(
            "enrol {user} afresh instead: pam-totp enroll {user}"
        ))
    })?;
    let issuer = ctx::issuer(ctx, a.issuer.as_deref())?;
    let hashes = f
        .scratch_codes
        .iter()
        .map(|c| recovery::hash(c))
        .collect::<std::io::Result<Vec<String>>>()
        .map_err(|e| CliError::new(format!("cannot draw random numbers: {e}")))?;
    let record = Record {
        user: user.to_string(),
        status: Status::Active,
        replaces_active: false,
        secret: f.secret.clone(),
        params,
        issuer: issuer.clone(),
        created: Some(ctx.now()),
        recovery: hashes,
    };
    let last_step = f
        .disallow_reuse
        .as_ref()
        .and_then(|steps| steps.iter().copied().max())
        .map(|s| clock::imported_used_step(s, params, ctx.now()))
        .transpose()
        .map_err(|s| future_step(&path, s, params, ctx.now()))?;
    let store = ctx.create_store()?;
    import::save(&store, &record, last_step, a.force).map_err(|e| match e {
        SaveError::ActiveExists => CliError::new(format!(
            "{user} already has an active record; nothing was imported"
        ))
        .hint(format!(
            "to replace it with the key from {}: add --force",
            path.display()
        )),
        SaveError::Other(e) => e,
    })?;

    out!("{}", report(user, &path, &f, &record, last_step))?;
    for o in &f.unknown_options {
        erroutln!(
            "warning: option \"{}\" in {} is not known to pam-totp; it was ignored",
            terminal_safe(o),
            path.display()
        );
    }
    if f.secret.expose().len() < RECOMMENDED_SECRET_BYTES {
        erroutln!(
            "warning: the key has only {} bits (128 or more are recommended); consider a new \
             key: pam-totp enroll {user} --force",
            f.secret.len_bits()
        );
    }
    if let Some(skew) = f.time_skew.filter(|s| *s != 0) {
        erroutln!(
            "warning: google-authenticator was compensating for {user}'s phone clock being off \
             by {skew} step(s) ({} s); pam_totp does not: set the phone's clock to automatic \
             (or raise the module's window=)",
            skew * i64::from(period)
        );
    }
    Ok(())
}

/// A DISALLOW_REUSE step from the future: stored, it would refuse every code until then.
fn future_step(path: &std::path::Path, step: u64, params: Params, now: u64) -> CliError {
    let at = step.saturating_mul(u64::from(params.period()));
    CliError::new(format!(
        "{}: DISALLOW_REUSE lists the time step {step} ({}), {} steps in the future (written while \
         a clock was ahead, or edited); stored as used, it would make every code of the user a \
         replay until then; nothing was imported",
        path.display(),
        time(at),
        step - params.step_at(now)
    ))
    .hint(format!(
        "edit a copy of {}: remove that step from the DISALLOW_REUSE line (or the whole line; \
         pam_totp never accepts a code twice anyway), then import the copy",
        path.display()
    ))
    .hint("if this server's clock is the one that is wrong, fix it first (timedatectl status)")
}

fn report(
    user: &str,
    path: &std::path::Path,
    f: &GaFile,
    r: &Record,
    last_step: Option<u64>,
) -> String {
    let mut t = format!(
        "Imported {user} from {}: active record, {}.\n",
        path.display(),
        r.params.describe()
    );
    let line =
        |t: &mut String, k: &str, v: &str| t.push_str(&format!("  {k:<15}{}\n", terminal_safe(v)));
    line(&mut t, "Issuer:", &r.issuer);
    line(&mut t, "Key:", &format!("{} bits", f.secret.len_bits()));
    line(
        &mut t,
        "Scratch codes:",
        &match f.scratch_codes.len() {
            0 => "none".to_string(),
            n => format!("{n}, now recovery codes (each works once)"),
        },
    );
    let w = f.window_size.unwrap_or(DEFAULT_WINDOW_SIZE);
    let src = match f.window_size {
        Some(w) => format!("WINDOW_SIZE {w}"),
        None => format!("no WINDOW_SIZE (google-authenticator's default {DEFAULT_WINDOW_SIZE})"),
    };
    let need = module_window(w);
    let advice = if need <= 1 {
        "pam_totp's default window=1 accepts at least the same codes".to_string()
    } else if need <= MAX_MODULE_WINDOW {
        format!("to accept as many codes, add window={need} to the pam_totp line (default 1)")
    } else {
        format!("pam_totp's window is at most {MAX_MODULE_WINDOW}; window={MAX_MODULE_WINDOW} comes closest")
    };
    line(&mut t, "Window:", &format!("{src}; {advice}"));
    line(
        &mut t,
        "Rate limit:",
        &match f.rate_limit {
            Some((n, s)) => format!(
                "RATE_LIMIT {n} logins per {s} s; not carried over (pam_totp locks after repeated \
                 wrong codes: [throttle] in the policy)"
            ),
            None => {
                "none; pam_totp locks after repeated wrong codes ([throttle] in the policy)".into()
            }
        },
    );
    line(
        &mut t,
        "Used codes:",
        &match (&f.disallow_reuse, last_step) {
            (Some(_), Some(s)) => format!(
                "DISALLOW_REUSE; the last used step {s} ({}) stays used",
                time(s * u64::from(r.params.period()))
            ),
            (Some(_), None) => "DISALLOW_REUSE, no code used yet".into(),
            (None, _) => {
                "reuse was allowed in the source; pam_totp never accepts a code twice".into()
            }
        },
    );
    t.push_str(
        "The source file was only read, not changed. Remove pam_google_authenticator from the \
         PAM stack once pam_totp is in it.\n",
    );
    t
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
