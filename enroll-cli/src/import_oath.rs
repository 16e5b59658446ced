//! `pam-totp import oath FILE [--user U]`: the time-based lines of a pam_oath users file become
//! active records.
//!
//! The file's format and the search for the last used step: `pam_totp::import::oath`.

use crate::cli::ImportOathArgs;
use crate::ctx::{self, Ctx};
use crate::error::{CliError, Result};
use crate::import::{self, SaveError};
use crate::output::{erroutln, outln, time};
use pam_totp::clock;
use pam_totp::escape::terminal_safe;
use pam_totp::import::oath::{
    future_time, last_used_step, parse_line, parse_local_time, Line, Parsed, TokenType,
};
use pam_totp::secret::{Secret, RECOMMENDED_SECRET_BYTES};
use pam_totp::store::{Record, Status, Store};
use pam_totp::totp::{Algorithm, Params};
use std::collections::BTreeSet;

const MAX_FILE: u64 = 1024 * 1024;

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
    let record = Record::new(
        user,
        Status::Active,
        secret,
        params,
        issuer,
        Some(ctx.now()),
        Vec::new(),
    );
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
