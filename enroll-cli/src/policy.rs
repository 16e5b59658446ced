//! `pam-totp policy ...`: shows and edits `policy.toml` (SPEC §6). Edits go through toml_edit so
//! that the admin's comments and layout stay; the result is validated with the module's own
//! parser (`Policy::parse`) before anything is written, and written atomically (temp file,
//! fsync, rename, directory fsync; mode 0644).

use crate::cli::{
    Cli, ExemptArgs, GraceArgs, IssuerArgs, OnOff, PolicyCommand, PolicyShowArgs, SetArgs,
    ThrottleArgs, UnsetArgs, WhoArgs,
};
use crate::error::{plain_io, CliError, Result};
use crate::output::{erroutln, out, outln, print_json, time};
use pam_totp::escape::terminal_safe;
use pam_totp::names::{is_valid_user_name, log_safe};
use pam_totp::policy::Policy;
use pam_totp::store::{self, PolicyReplaceError, StoreError};
use pam_totp::sys::{RealSystem, System};
use pam_totp::timefmt;
use serde::Serialize;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use toml_edit::{Array, DocumentMut, Item, Table, TableLike, Value};

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

pub fn run(cli: &Cli, cmd: &PolicyCommand) -> Result<()> {
    let path = &cli.policy;
    if let PolicyCommand::Show(a) = cmd {
        return show(path, a);
    }
    let owner = edit_owner(path)?;
    let original = read_text(path, owner)?;
    let mut ed = Editor::new(path, original.as_deref())?;
    match cmd {
        PolicyCommand::Show(_) => unreachable!("handled above"),
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
    ed.commit(original.as_deref())
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

// ---------------------------------------------------------------------------------------------
// show
// ---------------------------------------------------------------------------------------------

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

fn show(path: &Path, a: &PolicyShowArgs) -> Result<()> {
    // Anyone may read the policy; it must still be trustworthy (root-owned or the caller's).
    let owner = nix::unistd::geteuid().as_raw();
    let policy = pam_totp::store::load_policy(path, owner)
        .map_err(|e| CliError::store("cannot use the policy", e))?;
    let exists = policy.is_some();
    let p = policy.unwrap_or_default();
    if a.json {
        return print_json(&PolicyJson {
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
        });
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

fn list(v: &[String]) -> String {
    v.join(", ")
}

/// The policy in words.
fn summary(p: &Policy, now: u64) -> String {
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

// ---------------------------------------------------------------------------------------------
// editing
// ---------------------------------------------------------------------------------------------

struct Editor {
    path: PathBuf,
    doc: DocumentMut,
    changes: Vec<String>,
    warnings: Vec<String>,
}

impl Editor {
    fn new(path: &Path, text: Option<&str>) -> Result<Editor> {
        let doc = text.unwrap_or(HEADER).parse::<DocumentMut>().map_err(|e| {
            CliError::new(format!(
                "cannot edit {}: it is not valid TOML: {}",
                path.display(),
                e.message().trim().replace('\n', "; ")
            ))
            .hint("fix it by hand first (or move it away to start afresh)")
        })?;
        Ok(Editor {
            path: path.to_path_buf(),
            doc,
            changes: Vec::new(),
            warnings: Vec::new(),
        })
    }

    /// The table holding `key_path`'s last element, created (as `[throttle]`) if missing.
    fn table_for(&mut self, key_path: &[&str]) -> Result<&mut dyn TableLike> {
        match key_path {
            [_] => Ok(self.doc.as_table_mut()),
            [t, _] => {
                let item = self
                    .doc
                    .as_table_mut()
                    .entry(t)
                    .or_insert(Item::Table(Table::new()));
                item.as_table_like_mut()
                    .ok_or_else(|| CliError::new(format!("`{t}` in the policy is not a table")))
            }
            _ => Err(CliError::new("bad key")),
        }
    }

    /// Sets a value, keeping the key's position and the value's comments (decor).
    fn set(&mut self, key_path: &[&str], mut v: Value) -> Result<()> {
        let name = key_path.join(".");
        let table = self.table_for(key_path)?;
        let key = key_path[key_path.len() - 1];
        let new = bare(&v);
        match table.get_mut(key) {
            Some(item) => {
                let old = item.as_value().map(bare);
                if let Some(o) = item.as_value() {
                    *v.decor_mut() = o.decor().clone();
                }
                *item = Item::Value(v);
                if old.as_deref() != Some(new.as_str()) {
                    self.changes.push(format!("{name} = {new}"));
                }
            }
            None => {
                table.insert(key, Item::Value(v));
                self.changes.push(format!("{name} = {new}"));
            }
        }
        Ok(())
    }

    fn unset(&mut self, key_path: &[&str]) -> Result<()> {
        let name = key_path.join(".");
        let removed = match key_path {
            [k] => self.doc.as_table_mut().remove(k).is_some(),
            [t, k] => {
                let removed = self
                    .doc
                    .get_mut(t)
                    .and_then(Item::as_table_like_mut)
                    .is_some_and(|tbl| tbl.remove(k).is_some());
                // Drop a [throttle] table left empty.
                if self
                    .doc
                    .get(t)
                    .and_then(Item::as_table_like)
                    .is_some_and(|tbl| tbl.is_empty())
                {
                    self.doc.as_table_mut().remove(t);
                }
                removed
            }
            _ => false,
        };
        if removed {
            self.changes.push(format!("{name} removed"));
        }
        Ok(())
    }

    fn array<'a>(doc: &'a mut DocumentMut, key: &str) -> Result<&'a mut Array> {
        let item = doc
            .as_table_mut()
            .entry(key)
            .or_insert(toml_edit::value(Array::new()));
        item.as_array_mut().ok_or_else(|| {
            CliError::new(format!("`{key}` in the policy is not an array"))
                .hint(format!("fix it with: pam-totp policy set {key} '[]'"))
        })
    }

    /// Adds `name` to the array `key` (keeping its layout); false if it was there.
    fn add(&mut self, key: &str, name: &str) -> Result<bool> {
        let arr = Self::array(&mut self.doc, key)?;
        if arr.iter().any(|v| v.as_str() == Some(name)) {
            return Ok(false);
        }
        // Multi-line arrays stay multi-line: the new entry is formatted like the last one.
        let multi_line = arr
            .iter()
            .last()
            .filter(|last| {
                last.decor()
                    .prefix()
                    .and_then(|p| p.as_str())
                    .is_some_and(|p| p.contains('\n'))
            })
            .map(|last| last.decor().clone());
        match multi_line {
            Some(decor) => {
                let mut v = Value::from(name);
                *v.decor_mut() = decor;
                arr.push_formatted(v);
            }
            None => arr.push(name),
        }
        self.changes.push(format!("{key}: added {name}"));
        Ok(true)
    }

    /// Removes `name` from the array `key`; false if it was not there.
    fn remove(&mut self, key: &str, name: &str) -> Result<bool> {
        if self.doc.get(key).is_none() {
            return Ok(false);
        }
        let arr = Self::array(&mut self.doc, key)?;
        let Some(i) = arr.iter().position(|v| v.as_str() == Some(name)) else {
            return Ok(false);
        };
        arr.remove(i);
        self.changes.push(format!("{key}: removed {name}"));
        Ok(true)
    }

    /// Validates the edited text with the module's parser, then replaces the file atomically.
    fn commit(self, original: Option<&str>) -> Result<()> {
        let path = self.path.display().to_string();
        for w in &self.warnings {
            erroutln!("warning: {w}");
        }
        if self.changes.is_empty() {
            outln!("Nothing to change in {path}.")?;
            return Ok(());
        }
        let text = self.doc.to_string();
        let policy = store::replace_policy(&self.path, &text).map_err(|e| match e {
            PolicyReplaceError::Invalid(e) => {
                let err = CliError::new(format!(
                    "refused: the edit would make the policy invalid: {e}; {path} was not changed"
                ));
                match original.map(Policy::parse) {
                    Some(Err(old)) => err.hint(format!(
                        "the policy was already invalid before this edit ({old}); fix that \
                         first, e.g. with `pam-totp policy unset KEY` or by hand"
                    )),
                    _ => err,
                }
            }
            PolicyReplaceError::Store(StoreError::Io { path, source, .. }) => {
                CliError::new(format!(
                    "cannot write {}: {}; the policy was not changed",
                    path.display(),
                    plain_io(&source)
                ))
            }
            PolicyReplaceError::Store(other) => CliError::store("cannot write the policy", other),
        })?;
        let verb = if original.is_some() {
            "Updated"
        } else {
            "Created"
        };
        outln!("{verb} {path}:")?;
        for c in &self.changes {
            outln!("  {}", terminal_safe(c))?;
        }
        outln!("Policy now:")?;
        out!("{}", summary(&policy, RealSystem.now()))?;
        Ok(())
    }
}

/// A value as TOML text, without surrounding whitespace or comments.
fn bare(v: &Value) -> String {
    let mut v = v.clone();
    v.decor_mut().clear();
    v.to_string().trim().to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"version = 1
require_all = false          # every user must use a second factor
require_users = []           # or just these users
require_groups = []          # or members of these groups
exempt_users = []            # never required (an enrolled exempt user is still asked)
exempt_groups = []
grace_until = 2026-12-31T00:00:00Z   # optional: until then, required-but-unenrolled users get in with a notice
enroll_at_login = false      # required-but-unenrolled users enrol at their next login
issuer = "build-01"          # default issuer for new enrolments (default: the host name)

[throttle]
attempts = 5
lock_seconds = 60
max_lock_seconds = 3600
"#;

    fn ed(text: &str) -> Editor {
        Editor::new(Path::new("/x/policy.toml"), Some(text)).unwrap()
    }

    #[test]
    fn set_keeps_the_comment_after_the_value() {
        let mut e = ed(SPEC);
        e.set(&["enroll_at_login"], Value::from(true)).unwrap();
        let out = e.doc.to_string();
        assert!(
            out.contains("enroll_at_login = true      # required-but-unenrolled users enrol at their next login"),
            "{out}"
        );
        assert_eq!(e.changes, vec!["enroll_at_login = true"]);
    }

    #[test]
    fn add_and_remove_keep_the_rest_of_the_file() {
        let mut e = ed(SPEC);
        assert!(e.add("require_groups", "wheel").unwrap());
        assert!(!e.add("require_groups", "wheel").unwrap());
        let out = e.doc.to_string();
        assert!(
            out.contains("require_groups = [\"wheel\"]          # or members of these groups"),
            "{out}"
        );
        assert!(e.remove("require_groups", "wheel").unwrap());
        assert!(!e.remove("require_groups", "wheel").unwrap());
        assert_eq!(e.doc.to_string(), SPEC);
    }

    #[test]
    fn multi_line_arrays_stay_multi_line() {
        let mut e = ed("version = 1\nrequire_users = [\n  \"alice\",\n]\n");
        e.add("require_users", "bob").unwrap();
        let out = e.doc.to_string();
        assert!(out.contains("\n  \"alice\",\n  \"bob\",\n]"), "{out:?}");
    }

    #[test]
    fn throttle_table_is_created_and_removed_when_empty() {
        let mut e = ed("version = 1\n");
        e.set(&["throttle", "attempts"], Value::from(3)).unwrap();
        assert_eq!(
            e.doc.to_string(),
            "version = 1\n\n[throttle]\nattempts = 3\n"
        );
        e.unset(&["throttle", "attempts"]).unwrap();
        assert_eq!(e.doc.to_string(), "version = 1\n");
    }

    #[test]
    fn new_top_level_keys_go_before_the_throttle_table() {
        let mut e = ed(SPEC);
        e.unset(&["issuer"]).unwrap();
        e.set(&["issuer"], Value::from("x")).unwrap();
        let out = e.doc.to_string();
        assert!(
            out.find("issuer = \"x\"").unwrap() < out.find("[throttle]").unwrap(),
            "{out}"
        );
        Policy::parse(&out).unwrap();
    }

    #[test]
    fn header_is_a_valid_policy() {
        assert_eq!(Policy::parse(HEADER).unwrap(), Policy::default());
    }
}
