//! `pam-totp policy ...`: shows ([`show`]) and edits ([`editor`]) `policy.toml` (SPEC §6).
//! Edits go through toml_edit so that the admin's comments and layout stay; the result is validated with the module's own
//! parser (`Policy::parse`) before anything is written, and written atomically (temp file,
//! fsync, rename, directory fsync; mode 0644).

mod editor;
mod show;

use crate::cli::{
    Cli, ExemptArgs, GraceArgs, IssuerArgs, OnOff, PolicyArgs, PolicyCommand, SetArgs,
    ThrottleArgs, UnsetArgs, WhoArgs,
};
use crate::error::{CliError, Result};
use crate::output::time;
use editor::Editor;
use pam_totp::names::{is_valid_user_name, log_safe};
use pam_totp::store;
use pam_totp::sys::{RealSystem, System};
use pam_totp::timefmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use toml_edit::{DocumentMut, Item, Value};

/// Written when the file does not exist yet.
pub const HEADER: &str = "\
# pam-totp policy: who must use a second factor at login (see `pam-totp policy --help`).
# Edit it by hand or with `pam-totp policy ...`. Keep it owned by root and not writable by
# group or others: a policy that cannot be read, parsed or trusted denies every login that
# reaches pam_totp.
version = 1
";

/// Keys `policy set`/`unset` accept (top level, or `throttle.KEY`).
const KEYS: &[&str] = &[
    "require_all",
    "require_users",
    "require_groups",
    "exempt_users",
    "exempt_groups",
    "grace_until",
    "enroll_at_login",
    "issuer",
    "self_service",
    "throttle.attempts",
    "throttle.lock_seconds",
    "throttle.max_lock_seconds",
];

pub fn run(cli: &Cli, args: &PolicyArgs) -> Result<()> {
    let path = &cli.policy;
    let cmd = &args.command;
    if let PolicyCommand::Show = cmd {
        return show::show(path, args.json);
    }
    let owner = edit_owner(path)?;
    let original = read_text(path, owner)?;
    let mut ed = Editor::new(path, original.as_deref())?;
    match cmd {
        PolicyCommand::Show => unreachable!("handled above"),
        PolicyCommand::Require(w) => who(&mut ed, w, "require", true)?,
        PolicyCommand::Unrequire(w) => who(&mut ed, w, "require", false)?,
        PolicyCommand::Exempt(e) => exempt(&mut ed, e, true)?,
        PolicyCommand::Unexempt(e) => exempt(&mut ed, e, false)?,
        PolicyCommand::Grace(g) => grace(&mut ed, g)?,
        PolicyCommand::EnrollAtLogin(o) => {
            ed.set(&["enroll_at_login"], Value::from(o.value == OnOff::On))?
        }
        PolicyCommand::SelfService(o) => {
            ed.set(&["self_service"], Value::from(o.value == OnOff::On))?
        }
        PolicyCommand::Throttle(t) => throttle(&mut ed, t)?,
        PolicyCommand::Issuer(i) => issuer(&mut ed, i)?,
        PolicyCommand::Set(s) => set(&mut ed, s)?,
        PolicyCommand::Unset(u) => unset(&mut ed, u)?,
    }
    ed.commit(original.as_deref(), args.json)
}

/// Root, or (tests) a caller who owns the directory the policy lives in.
fn edit_owner(path: &Path) -> Result<u32> {
    let euid = nix::unistd::geteuid().as_raw();
    if euid == 0 {
        return Ok(0);
    }
    let parent = parent_of(path);
    match fs::metadata(parent) {
        Ok(m) if m.is_dir() && m.uid() == euid => Ok(euid),
        _ => Err(CliError::new(format!(
            "pam-totp must run as root to change the policy {}",
            path.display()
        ))
        .hint("run it with sudo (or as root)")),
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The policy file's text, trusted as the module trusts it (`None`: no file).
fn read_text(path: &Path, owner: u32) -> Result<Option<String>> {
    store::read_policy_text(path, owner).map_err(|e| CliError::store("cannot read the policy", e))
}

fn check_name(kind: &str, name: &str) -> Result<()> {
    if is_valid_user_name(name) {
        Ok(())
    } else {
        Err(
            CliError::new(format!("invalid {kind} name \"{}\"", log_safe(name)))
                .hint("names may hold letters, digits and _ . @ - (not first: . @ -)"),
        )
    }
}

fn nss_warnings(ed: &mut Editor, users: &[String], groups: &[String]) {
    for u in users {
        if matches!(nix::unistd::User::from_name(u), Ok(None)) {
            ed.warnings.push(format!(
                "there is no user {u} in the user database (yet); the rule applies once there is"
            ));
        }
    }
    for g in groups {
        if matches!(nix::unistd::Group::from_name(g), Ok(None)) {
            ed.warnings.push(format!(
                "there is no group {g} in the group database (yet); the rule applies once there is"
            ));
        }
    }
}

fn who(ed: &mut Editor, w: &WhoArgs, _verb: &str, on: bool) -> Result<()> {
    for u in &w.user {
        check_name("user", u)?;
    }
    for g in &w.group {
        check_name("group", g)?;
    }
    if w.all {
        ed.set(&["require_all"], Value::from(on))?;
    }
    for u in &w.user {
        if on {
            ed.add("require_users", u)?;
        } else {
            ed.remove("require_users", u)?;
        }
    }
    for g in &w.group {
        if on {
            ed.add("require_groups", g)?;
        } else {
            ed.remove("require_groups", g)?;
        }
    }
    if on {
        nss_warnings(ed, &w.user, &w.group);
        let exempt_users = str_array(&ed.doc, "exempt_users");
        for u in w.user.iter().filter(|u| exempt_users.contains(u)) {
            ed.warnings.push(format!(
                "{u} is also exempt (exempt_users), and exemptions win: \
                 `pam-totp policy unexempt --user {u}` to require it"
            ));
        }
        let exempt_groups = str_array(&ed.doc, "exempt_groups");
        for g in w.group.iter().filter(|g| exempt_groups.contains(g)) {
            ed.warnings.push(format!(
                "{g} is also exempt (exempt_groups), and exemptions win: \
                 `pam-totp policy unexempt --group {g}` to require it"
            ));
        }
    } else if !w.all {
        let all = ed
            .doc
            .get("require_all")
            .and_then(Item::as_bool)
            .unwrap_or(false);
        if all {
            ed.warnings.push(
                "require_all is still on: everyone is required anyway (`pam-totp policy \
                 unrequire --all`)"
                    .into(),
            );
        }
    }
    Ok(())
}

fn str_array(doc: &DocumentMut, key: &str) -> Vec<String> {
    doc.get(key)
        .and_then(Item::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn exempt(ed: &mut Editor, e: &ExemptArgs, on: bool) -> Result<()> {
    for u in &e.user {
        check_name("user", u)?;
    }
    for g in &e.group {
        check_name("group", g)?;
    }
    for u in &e.user {
        if on {
            ed.add("exempt_users", u)?;
        } else {
            ed.remove("exempt_users", u)?;
        }
    }
    for g in &e.group {
        if on {
            ed.add("exempt_groups", g)?;
        } else {
            ed.remove("exempt_groups", g)?;
        }
    }
    if on {
        nss_warnings(ed, &e.user, &e.group);
    }
    Ok(())
}

fn datetime(text: &str) -> Result<toml_edit::Datetime> {
    let bad = |why: String| {
        CliError::new(format!("invalid date {text:?}: {why}"))
            .hint("give a date like 2026-12-31 (midnight UTC) or 2026-12-31T18:00:00+01:00")
    };
    let dt = text
        .trim()
        .parse::<toml_edit::Datetime>()
        .map_err(|_| bad("not a date or date-time".into()))?;
    timefmt::parse(text).map_err(|e| bad(e.to_string()))?;
    Ok(dt)
}

fn grace(ed: &mut Editor, g: &GraceArgs) -> Result<()> {
    let now = RealSystem.now();
    let dt = match (&g.until, g.days) {
        (Some(d), _) => datetime(d)?,
        (None, Some(days)) => datetime(&timefmt::date(now + u64::from(days) * 86_400))?,
        (None, None) => return ed.unset(&["grace_until"]),
    };
    if let Ok(t) = timefmt::parse(&dt.to_string()) {
        if t <= now {
            ed.warnings.push(format!(
                "{} lies in the past: there is no grace (required users must be enrolled)",
                time(t)
            ));
        }
    }
    ed.set(&["grace_until"], Value::from(dt))
}

fn throttle(ed: &mut Editor, t: &ThrottleArgs) -> Result<()> {
    if let Some(n) = t.attempts {
        ed.set(&["throttle", "attempts"], Value::from(i64::from(n)))?;
    }
    if let Some(n) = t.lock_seconds {
        ed.set(&["throttle", "lock_seconds"], Value::from(n as i64))?;
    }
    if let Some(n) = t.max_lock_seconds {
        ed.set(&["throttle", "max_lock_seconds"], Value::from(n as i64))?;
    }
    Ok(())
}

fn issuer(ed: &mut Editor, i: &IssuerArgs) -> Result<()> {
    match &i.name {
        Some(name) => ed.set(&["issuer"], Value::from(name.as_str())),
        None => ed.unset(&["issuer"]),
    }
}

fn key_path(key: &str) -> Result<Vec<&str>> {
    if key == "version" {
        return Err(CliError::new(
            "`version` is not an editable key (it is always 1)",
        ));
    }
    if !KEYS.contains(&key) {
        return Err(CliError::new(format!("unknown policy key `{key}`"))
            .hint(format!("known keys: {}", KEYS.join(", "))));
    }
    Ok(key.split('.').collect())
}

fn set(ed: &mut Editor, s: &SetArgs) -> Result<()> {
    let path = key_path(&s.key)?;
    // A TOML value; a bare word that is not one is taken as a string (`issuer build-01`).
    let v = match s.value.trim().parse::<Value>() {
        Ok(v) => v,
        Err(_) => Value::from(s.value.as_str()),
    };
    let mut v = v;
    v.decor_mut().clear();
    if s.key == "grace_until" {
        if let Some(d) = v.as_datetime() {
            datetime(&d.to_string())?;
        }
    }
    ed.set(&path, v)
}

fn unset(ed: &mut Editor, u: &UnsetArgs) -> Result<()> {
    // Any key may be removed, also one pam-totp does not know (that is how to repair a policy
    // refused for an unknown key).
    if u.key == "version" {
        return Err(CliError::new(
            "`version` cannot be removed (it is required)",
        ));
    }
    let path: Vec<&str> = u.key.split('.').collect();
    if path.len() > 2 || path.iter().any(|p| p.is_empty()) {
        return Err(CliError::new(format!("invalid key `{}`", u.key)));
    }
    ed.unset(&path)?;
    if ed.changes.is_empty() {
        ed.warnings
            .push(format!("`{}` is not set in the policy", u.key));
    }
    Ok(())
}
