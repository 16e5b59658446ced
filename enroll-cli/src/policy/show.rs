//! `pam-totp policy show [--json]`, and the policy in words or as JSON after an edit.

use crate::error::{CliError, Result};
use crate::output::{out, outln, print_json, time};
use pam_totp::escape::terminal_safe;
use pam_totp::policy::Policy;
use pam_totp::sys::{RealSystem, System};
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
struct ThrottleJson {
    attempts: u32,
    lock_seconds: u64,
    max_lock_seconds: u64,
}

#[derive(Serialize)]
struct PolicyJson<'a> {
    path: String,
    exists: bool,
    version: i64,
    require_all: bool,
    require_users: &'a [String],
    require_groups: &'a [String],
    exempt_users: &'a [String],
    exempt_groups: &'a [String],
    grace_until: Option<String>,
    enroll_at_login: bool,
    issuer: Option<&'a str>,
    self_service: bool,
    throttle: ThrottleJson,
}

pub fn show(path: &Path, json: bool) -> Result<()> {
    // Anyone may read the policy; it must still be trustworthy (root-owned or the caller's).
    let owner = nix::unistd::geteuid().as_raw();
    let policy = pam_totp::store::load_policy(path, owner)
        .map_err(|e| CliError::store("cannot use the policy", e))?;
    let exists = policy.is_some();
    let p = policy.unwrap_or_default();
    if json {
        return print(path, exists, &p);
    }
    if !exists {
        outln!(
            "Policy: {} (does not exist: nobody is required to use a second factor; enrolled \
             users are asked)",
            path.display()
        )?;
    } else {
        outln!("Policy: {}", path.display())?;
    }
    out!("{}", summary(&p, RealSystem.now()))?;
    Ok(())
}

/// The policy as `policy show --json` prints it (also after an edit with `--json`).
pub fn print(path: &Path, exists: bool, p: &Policy) -> Result<()> {
    print_json(&PolicyJson {
        path: path.display().to_string(),
        exists,
        version: pam_totp::policy::POLICY_VERSION,
        require_all: p.require_all,
        require_users: &p.require_users,
        require_groups: &p.require_groups,
        exempt_users: &p.exempt_users,
        exempt_groups: &p.exempt_groups,
        grace_until: p.grace_until.map(time),
        enroll_at_login: p.enroll_at_login,
        issuer: p.issuer.as_deref(),
        self_service: p.self_service,
        throttle: ThrottleJson {
            attempts: p.throttle.attempts,
            lock_seconds: p.throttle.lock_seconds,
            max_lock_seconds: p.throttle.max_lock_seconds,
        },
    })
}

fn list(v: &[String]) -> String {
    v.join(", ")
}

/// The policy in words.
pub fn summary(p: &Policy, now: u64) -> String {
    let mut t = String::new();
    // Names and the issuer come from the file: shown terminal-safe.
    let line =
        |t: &mut String, k: &str, v: &str| t.push_str(&format!("  {k:<16}{}\n", terminal_safe(v)));
    let mut req = Vec::new();
    if p.require_all {
        req.push("everyone (require_all)".to_string());
    }
    if !p.require_users.is_empty() {
        req.push(format!("users {} (require_users)", list(&p.require_users)));
    }
    if !p.require_groups.is_empty() {
        req.push(format!(
            "members of {} (require_groups)",
            list(&p.require_groups)
        ));
    }
    line(
        &mut t,
        "Required:",
        &if req.is_empty() {
            "nobody (enrolled users are still asked)".to_string()
        } else {
            req.join("; ")
        },
    );
    let mut ex = Vec::new();
    if !p.exempt_users.is_empty() {
        ex.push(format!("users {}", list(&p.exempt_users)));
    }
    if !p.exempt_groups.is_empty() {
        ex.push(format!("members of {}", list(&p.exempt_groups)));
    }
    line(
        &mut t,
        "Exempt:",
        &if ex.is_empty() {
            "nobody".to_string()
        } else {
            ex.join("; ")
        },
    );
    line(
        &mut t,
        "Grace until:",
        &match p.grace_until {
            None => "none (required users must be enrolled)".to_string(),
            Some(g) if g > now => format!(
                "{} (until then, required users who are not enrolled get in with a notice)",
                time(g)
            ),
            Some(g) => format!("{} (over)", time(g)),
        },
    );
    line(
        &mut t,
        "Enrol at login:",
        if p.enroll_at_login {
            "on (required users who are not enrolled enrol at their next login)"
        } else {
            "off (required users who are not enrolled are denied, after any grace)"
        },
    );
    line(
        &mut t,
        "Issuer:",
        p.issuer.as_deref().unwrap_or("(not set: the host name)"),
    );
    line(
        &mut t,
        "Self-service:",
        if p.self_service {
            "on (users may enrol, renew recovery codes and disable for themselves)"
        } else {
            "off (users see their status; only root enrols, renews and disables)"
        },
    );
    let th = &p.throttle;
    line(
        &mut t,
        "Throttle:",
        &format!(
            "after {} wrong code{} locked for {} s, doubling up to {} s",
            th.attempts,
            if th.attempts == 1 { "" } else { "s" },
            th.lock_seconds,
            th.max_lock_seconds
        ),
    );
    t
}
