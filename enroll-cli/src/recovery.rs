//! `pam-totp recovery USER [--count N]`: a fresh set of recovery codes replaces the old one.

use crate::cli::RecoveryArgs;
use crate::ctx::{self, Ctx};
use crate::error::{CliError, Result};
use crate::output::{outln, print_json};
use pam_totp::recovery;
use serde::Serialize;
use zeroize::Zeroizing;

#[derive(Serialize)]
struct RecoveryJson<'a> {
    user: &'a str,
    recovery_codes: Vec<&'a str>,
}

pub fn run(ctx: &Ctx, a: &RecoveryArgs) -> Result<()> {
    let user = &ctx::required_user(a.user.as_deref(), "recovery")?;
    let no_record = || {
        CliError::new(format!(
            "{user} has no record; there are no recovery codes to renew"
        ))
        .hint(format!(
            "enrol {user} first: pam-totp {}enroll {user}",
            ctx.dir_arg()
        ))
    };
    let store = ctx.open_store()?.ok_or_else(no_record)?;
    let rng = |e: std::io::Error| CliError::new(format!("cannot draw random numbers: {e}"));
    let codes = recovery::generate(usize::from(a.count)).map_err(rng)?;
    let hashes = codes
        .iter()
        .map(|c| recovery::hash(c))
        .collect::<std::io::Result<Vec<String>>>()
        .map_err(rng)?;
    let old = {
        let (lock, record) = ctx::lock_record(&store, user)?;
        let mut record = record.ok_or_else(no_record)?;
        let old = std::mem::replace(&mut record.recovery, hashes).len();
        lock.write_record(&record)
            .map_err(|e| CliError::store(&format!("cannot write {user}'s record"), e))?;
        old
    };
    show(user, &codes, old, a.json)
}

/// Shows fresh recovery codes (once): JSON, or text saying that the `old` ones are gone.
pub fn show(user: &str, codes: &[Zeroizing<String>], old: usize, json: bool) -> Result<()> {
    if json {
        return print_json(&RecoveryJson {
            user,
            recovery_codes: codes.iter().map(|c| c.as_str()).collect(),
        });
    }
    outln!(
        "New recovery codes for {user} (each works once in place of a code; note them now, they \
         are not shown again):"
    )?;
    for c in codes {
        outln!("  {}", c.as_str())?;
    }
    outln!(
        "The {old} previous recovery code{} no longer work{}.",
        if old == 1 { "" } else { "s" },
        if old == 1 { "s" } else { "" }
    )?;
    Ok(())
}
