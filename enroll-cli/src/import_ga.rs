//! `pam-totp import google-authenticator USER [FILE]`: a `~/.google_authenticator` file (as
//! written by the `google-authenticator` tool of libpam-google-authenticator) becomes an active
//! record with the same key. The file's format and parser: `pam_totp::import::google_authenticator`.

use crate::cli::ImportGaArgs;
use crate::ctx::{self, Ctx};
use crate::error::{CliError, Result};
use crate::import::{self, SaveError};
use crate::output::{erroutln, out, time};
use pam_totp::clock;
use pam_totp::escape::terminal_safe;
use pam_totp::import::google_authenticator::{
    module_window, parse, GaError, GaFile, DEFAULT_WINDOW_SIZE,
};
use pam_totp::options::MAX_WINDOW;
use pam_totp::recovery;
use pam_totp::secret::RECOMMENDED_SECRET_BYTES;
use pam_totp::store::{Record, Status};
use pam_totp::totp::{Algorithm, Params, MAX_PERIOD, MIN_PERIOD};
use std::path::PathBuf;

/// google-authenticator refuses larger files too.
const MAX_FILE: u64 = 64 * 1024;

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
    let record = Record::new(
        user,
        Status::Active,
        f.secret.clone(),
        params,
        &issuer,
        Some(ctx.now()),
        hashes,
    );
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
    } else if need <= MAX_WINDOW {
        format!("to accept as many codes, add window={need} to the pam_totp line (default 1)")
    } else {
        format!("pam_totp's window is at most {MAX_WINDOW}; window={MAX_WINDOW} comes closest")
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
