//! `pam-totp doctor`: checks an installation and explains each finding with its fix.
//!
//! Read-only. It looks at:
//! - the state directory and every record and state file in it (the module's own checks:
//!   [`Store::open`], [`Store::record`], [`Store::state`]);
//! - the policy ([`store::load_policy`]);
//! - every PAM stack in `/etc/pam.d` that loads `pam_totp.so` (following `@include`, `include`
//!   and `substack`), simulating libpam's control flow to tell whether a wrong password stops
//!   before the code prompt and whether the module's answer decides the login, and trying
//!   every answer of the modules it does not know to find lines that let a user in without
//!   the code (doctor/bypass.rs, which also says which modules are trusted and why);
//! - leftover temp files in `users/`, and stored times in the future (`clock::ahead`);
//! - sshd's settings (`sshd -T` when it works, else `sshd_config` and its `Include`s);
//! - clock synchronisation (timedatectl, chronyc, ntpq; not knowing is a warning);
//! - users the policy requires who are not enrolled.
//!
//! Entry point: [`run`]. `root` is where `etc/pam.d`, `etc/ssh`, `etc/passwd`, `etc/group` and
//! `etc/login.defs` are read from (`/` on a real system); commands (`sshd -T`, clock tools) run
//! only when it is `/`. The state directory and the policy are the paths given.

use crate::error::{CliError, Result};
use pam_totp::clock;
use pam_totp::options::Options;
use pam_totp::policy::Policy;
use pam_totp::store::{self, Status, Store, StoreError};
use pam_totp::sys::{RealSystem, System};
use pam_totp::throttle::is_locked;
use pam_totp::timefmt;
use pam_totp::totp::Params;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod bypass;

/// Runs every check, prints the findings (with their fixes) on stdout and returns whether
/// nothing is wrong (no finding of level ERROR; warnings and notes do not count).
pub fn run(dir: &Path, policy: &Path, root: &Path) -> Result<bool> {
    let report = check(dir, policy, root, &RealSystem);
    print!("{}", report.render(dir, policy, root));
    Ok(report.errors() == 0)
}

// ---- findings ---------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Note,
    Warn,
    Error,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Note => "note",
            Level::Warn => "warn",
            Level::Error => "ERROR",
        }
    }
}

#[derive(Clone, Debug)]
struct Finding {
    level: Level,
    text: String,
    fix: Option<String>,
}

#[derive(Debug, Default)]
struct Section {
    title: String,
    findings: Vec<Finding>,
}

impl Section {
    fn new(title: impl Into<String>) -> Self {
        Section {
            title: title.into(),
            findings: Vec::new(),
        }
    }
    fn push(&mut self, level: Level, text: impl Into<String>, fix: Option<String>) {
        self.findings.push(Finding {
            level,
            text: text.into(),
            fix,
        });
    }
    fn ok(&mut self, text: impl Into<String>) {
        self.push(Level::Ok, text, None);
    }
    fn note(&mut self, text: impl Into<String>) {
        self.push(Level::Note, text, None);
    }
    fn warn(&mut self, text: impl Into<String>, fix: impl Into<String>) {
        self.push(Level::Warn, text, Some(fix.into()));
    }
    fn error(&mut self, text: impl Into<String>, fix: impl Into<String>) {
        self.push(Level::Error, text, Some(fix.into()));
    }
}

#[derive(Debug, Default)]
struct Report {
    sections: Vec<Section>,
}

impl Report {
    fn count(&self, level: Level) -> usize {
        self.sections
            .iter()
            .flat_map(|s| &s.findings)
            .filter(|f| f.level == level)
            .count()
    }
    fn errors(&self) -> usize {
        self.count(Level::Error)
    }

    fn render(&self, dir: &Path, policy: &Path, root: &Path) -> String {
        let mut out = format!(
            "pam-totp doctor: state {}, policy {}, configuration under {}\n",
            dir.display(),
            policy.display(),
            root.display()
        );
        for s in &self.sections {
            out.push_str(&format!("\n{}\n", s.title));
            for f in &s.findings {
                out.push_str(&format!("  {:<6} {}\n", f.level.label(), f.text));
                if let Some(fix) = &f.fix {
                    out.push_str(&format!("         fix: {fix}\n"));
                }
            }
        }
        let (e, w) = (self.errors(), self.count(Level::Warn));
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        out.push('\n');
        if e == 0 {
            out.push_str(&format!(
                "Nothing wrong found ({}).\n",
                plural(w, "warning")
            ));
        } else {
            out.push_str(&format!(
                "Found {} and {}: fix the ERROR lines above, then run `pam-totp doctor` again.\n",
                plural(e, "problem"),
                plural(w, "warning")
            ));
        }
        out
    }
}

/// The checks, in the order they are shown. `sys` gives the clock.
fn check(dir: &Path, policy_path: &Path, root: &Path, sys: &dyn System) -> Report {
    let now = sys.now();
    let commands = root == Path::new("/");
    let pam = check_pam(root, dir, policy_path);
    let (policy_section, policy) = check_policy(policy_path, now);
    let (state_section, enrolled) = check_state(dir, now, pam.module_used);
    let sshd = check_sshd(root, &pam, commands);
    let clock = check_clock(commands);
    let users = check_users(root, policy.as_ref(), enrolled.as_ref(), now);
    Report {
        sections: vec![
            state_section,
            policy_section,
            pam.section,
            sshd,
            clock,
            users,
        ],
    }
}

/// The fix for a store error: the CLI's own hint (see error.rs), or a generic one.
fn store_fix(e: StoreError, generic: &str) -> String {
    let hints = CliError::store("", e).hints;
    if hints.is_empty() {
        generic.to_string()
    } else {
        hints.join("; ")
    }
}

// ---- state directory --------------------------------------------------------------------------

/// What the state directory says about each user: `Some(true)` = active record (or a pending
/// one that replaces an active record: the user is asked, not "unenrolled").
type Enrolled = BTreeMap<String, bool>;

fn check_state(dir: &Path, now: u64, module_used: bool) -> (Section, Option<Enrolled>) {
    let mut s = Section::new(format!("State directory {}", dir.display()));
    let store = match Store::open(dir, 0) {
        Ok(st) => st,
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let fix = format!(
                "install -d -o root -g root -m 0700 {d} {d}/users (or enrol someone: \
                 `pam-totp enroll USER` creates it)",
                d = dir.display()
            );
            if module_used {
                s.error(
                    format!(
                        "{} (or its users/) does not exist: pam_totp refuses every login it \
                         sees until it does",
                        dir.display()
                    ),
                    fix,
                );
            } else {
                s.note(format!(
                    "{} does not exist yet (nobody is enrolled); {}",
                    dir.display(),
                    fix
                ));
            }
            return (s, Some(Enrolled::new()));
        }
        Err(StoreError::Io { path, source })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            s.warn(
                format!("cannot check {}: permission denied", path.display()),
                "run pam-totp doctor as root",
            );
            return (s, None);
        }
        Err(e) => {
            let text = format!("{e}: pam_totp refuses every login it sees");
            s.error(text, store_fix(e, "make it root:root 0700"));
            return (s, None);
        }
    };
    let names = match store::files::list_dir(&dir.join("users")) {
        Ok(n) => n,
        Err(e) => {
            let text = e.to_string();
            s.error(text, store_fix(e, "run pam-totp doctor as root"));
            return (s, None);
        }
    };
    let users = match store.users() {
        Ok(u) => u,
        Err(e) => {
            let text = e.to_string();
            s.error(text, store_fix(e, "run pam-totp doctor as root"));
            return (s, None);
        }
    };
    s.ok(format!(
        "root:root 0700 and users/ root:root 0700 in trusted parent directories; {} record{}",
        users.len(),
        if users.len() == 1 { "" } else { "s" }
    ));
    let strays = match store.stray_temp_files() {
        Ok(v) => v,
        Err(e) => {
            let text = e.to_string();
            s.error(text, store_fix(e, "run pam-totp doctor as root"));
            Vec::new()
        }
    };
    report_stray_temps(&mut s, &strays);
    let known: BTreeSet<&str> = users.iter().map(String::as_str).collect();
    for n in names
        .iter()
        .filter(|n| !strays.iter().any(|p| p.ends_with(n)))
    {
        let (stem, ext) = n.rsplit_once('.').unwrap_or((n.as_str(), ""));
        let expected = match ext {
            "toml" => known.contains(stem),
            "state" | "lock" => pam_totp::names::is_valid_user_name(stem),
            _ => false,
        };
        if !expected {
            s.note(format!(
                "users/{n} is not a record, state or lock file; pam_totp ignores it (a \
                 leftover temporary file after a crash can be removed)"
            ));
        }
    }
    let mut enrolled = Enrolled::new();
    for user in &users {
        let record = match store.record(user) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                let text = format!("{user}: {e} (pam_totp refuses {user}'s logins)");
                s.error(text, store_fix(e, "fix the file"));
                continue;
            }
        };
        let state = match store.state(user) {
            Ok(st) => Some(st),
            Err(e) => {
                let text = format!("{user}: {e} (pam_totp refuses {user}'s logins)");
                s.error(text, store_fix(e, &format!("pam-totp unlock {user}")));
                None
            }
        };
        let left = record.recovery.len();
        match (record.status, record.replaces_active) {
            (Status::Active, _) => {
                enrolled.insert(user.clone(), true);
                s.ok(format!(
                    "{user}: active ({}), {left} recovery code{} left",
                    record.params.describe(),
                    if left == 1 { "" } else { "s" }
                ));
                if left == 0 {
                    s.warn(
                        format!("{user} has no recovery codes left"),
                        format!("pam-totp recovery {user} (and give {user} the new codes)"),
                    );
                }
            }
            (Status::Pending, true) => {
                enrolled.insert(user.clone(), true);
                s.warn(
                    format!(
                        "{user}: re-enrolment pending (enroll --force): {user} is denied until \
                         the new key is activated"
                    ),
                    format!("pam-totp activate {user} (with a code from the new app entry)"),
                );
            }
            (Status::Pending, false) => {
                enrolled.insert(user.clone(), false);
                s.note(format!(
                    "{user}: pending, not used for logins until activated (pam-totp activate \
                     {user})"
                ));
            }
        }
        if let Some(st) = state {
            report_future_state(&mut s, user, &st, record.params, now);
            if is_locked(st.locked_until, now) {
                s.warn(
                    format!(
                        "{user} is locked until {} after {} failed codes",
                        timefmt::rfc3339(st.locked_until),
                        st.failures
                    ),
                    format!("pam-totp unlock {user} (once you know it was {user})"),
                );
            }
        }
    }
    (s, Some(enrolled))
}

/// How many stray temp file names a finding shows.
const STRAYS_SHOWN: usize = 3;

/// Temp files left by writers killed between creating and renaming them.
fn report_stray_temps(s: &mut Section, strays: &[PathBuf]) {
    if strays.is_empty() {
        return;
    }
    let mut names: Vec<String> = strays
        .iter()
        .take(STRAYS_SHOWN)
        .filter_map(|p| p.file_name())
        .map(|n| format!("users/{}", n.to_string_lossy()))
        .collect();
    if strays.len() > STRAYS_SHOWN {
        names.push(format!("and {} more", strays.len() - STRAYS_SHOWN));
    }
    s.warn(
        format!(
            "{} leftover temp file{} in users/ ({}): a write was killed between creating and \
             renaming it; harmless to logins, but it takes disk space",
            strays.len(),
            plural_s(strays.len()),
            names.join(", ")
        ),
        "remove them with `rm` while no login or pam-totp command runs, or run `pam-totp \
         unlock USER` for the user they belong to (.USER.toml.tmp, .USER.state.tmp)",
    );
}

/// A stored `last_step` or `last_success` in the future (a login while the clock was ahead):
/// every code is refused as a replay until the clock catches up.
fn report_future_state(s: &mut Section, user: &str, st: &store::State, params: Params, now: u64) {
    let ahead = clock::ahead(st, params, now);
    if !ahead.any() {
        return;
    }
    let mut what = Vec::new();
    if let Some((step, by)) = ahead.last_step {
        let at = step.saturating_mul(u64::from(params.period()));
        what.push(format!(
            "last accepted step {step} is {by} steps ahead of now (a code of {})",
            timefmt::rfc3339(at)
        ));
    }
    if let Some(t) = ahead.last_success {
        what.push(format!("last success is dated {}", timefmt::rfc3339(t)));
    }
    s.error(
        format!(
            "{user}: {}: a login while the system clock was ahead; until then every code of \
             {user} is refused as a replay",
            what.join(", ")
        ),
        format!(
            "check that the clock is right now (timedatectl), then `pam-totp unlock \
             --reset-clock {user}`"
        ),
    );
}

// ---- policy -----------------------------------------------------------------------------------

fn check_policy(path: &Path, now: u64) -> (Section, Option<Policy>) {
    let mut s = Section::new(format!("Policy {}", path.display()));
    match store::load_policy(path, 0) {
        Ok(None) => {
            s.ok("no policy file: nobody is required to use a code; enrolled users are asked");
            (s, Some(Policy::default()))
        }
        Ok(Some(p)) => {
            s.ok(format!("parses and is trusted; {}", describe_policy(&p)));
            if let Some(g) = p.grace_until {
                if now >= g {
                    s.note(format!(
                        "grace_until {} has passed: required users who are not enrolled are \
                         denied{}",
                        timefmt::date(g),
                        if p.enroll_at_login {
                            " (or enrol at login)"
                        } else {
                            ""
                        }
                    ));
                }
            }
            (s, Some(p))
        }
        Err(e) => {
            let text = format!("{e}: pam_totp denies everyone who reaches it");
            s.error(text, store_fix(e, "fix the policy file or move it away"));
            (s, None)
        }
    }
}

fn describe_policy(p: &Policy) -> String {
    let mut who = Vec::new();
    if p.require_all {
        who.push("all users".to_string());
    }
    if !p.require_users.is_empty() {
        who.push(format!("users {}", p.require_users.join(", ")));
    }
    if !p.require_groups.is_empty() {
        who.push(format!("groups {}", p.require_groups.join(", ")));
    }
    let mut t = if who.is_empty() {
        "nobody is required".to_string()
    } else {
        format!("required: {}", who.join("; "))
    };
    if !p.exempt_users.is_empty() || !p.exempt_groups.is_empty() {
        let ex: Vec<String> = p
            .exempt_users
            .iter()
            .cloned()
            .chain(p.exempt_groups.iter().map(|g| format!("group {g}")))
            .collect();
        t.push_str(&format!(", exempt: {}", ex.join(", ")));
    }
    if let Some(g) = p.grace_until {
        t.push_str(&format!(", grace until {}", timefmt::date(g)));
    }
    if p.enroll_at_login {
        t.push_str(", enrolment at login");
    }
    t
}

// ---- PAM stacks -------------------------------------------------------------------------------

/// What PAM does with a module's result (libpam's actions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Ignore,
    Bad,
    Die,
    Ok,
    Done,
    Reset,
    Jump(usize),
}

/// libpam's return values by number, as named in `[value=action]` controls
/// (`_pam_token_returns`).
const PAM_RETURNS: [&str; 32] = [
    "success",
    "open_err",
    "symbol_err",
    "service_err",
    "system_err",
    "buf_err",
    "perm_denied",
    "auth_err",
    "cred_insufficient",
    "authinfo_unavail",
    "user_unknown",
    "maxtries",
    "new_authtok_reqd",
    "acct_expired",
    "session_err",
    "cred_unavail",
    "cred_expired",
    "cred_err",
    "no_module_data",
    "conv_err",
    "authtok_err",
    "authtok_recover_err",
    "authtok_lock_busy",
    "authtok_disable_aging",
    "try_again",
    "ignore",
    "abort",
    "authtok_expired",
    "module_unknown",
    "bad_item",
    "conv_again",
    "incomplete",
];

/// A module's result: libpam's return value (an index into [`PAM_RETURNS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ret(usize);

impl Ret {
    const SUCCESS: Ret = Ret(0);
    const SERVICE_ERR: Ret = Ret(3);
    const AUTH_ERR: Ret = Ret(7);
    const AUTHINFO_UNAVAIL: Ret = Ret(9);
    const USER_UNKNOWN: Ret = Ret(10);
    const NEW_AUTHTOK_REQD: Ret = Ret(12);
    const IGNORE: Ret = Ret(25);

    /// `PAM_AUTH_ERR`...
    fn name(self) -> String {
        format!("PAM_{}", PAM_RETURNS[self.0].to_ascii_uppercase())
    }
}

/// A line's control: the action for each return value.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Control {
    actions: Box<[Action; PAM_RETURNS.len()]>,
}

impl Control {
    fn action(&self, r: Ret) -> Action {
        self.actions[r.0]
    }

    /// One result per distinct outcome: success, then a failure value for each distinct action
    /// the failures get (for a module whose answer is not known).
    fn distinct_results(&self) -> Vec<Ret> {
        let mut out = vec![Ret::SUCCESS];
        let mut seen = Vec::new();
        for (i, a) in self.actions.iter().enumerate().skip(1) {
            if !seen.contains(a) {
                seen.push(*a);
                out.push(Ret(i));
            }
        }
        out
    }

    /// `required`, `requisite`, `optional`, `sufficient` as libpam defines them.
    fn keyword(kw: &str) -> Option<Control> {
        use Action::*;
        let (success, ignore, default) = match kw.to_ascii_lowercase().as_str() {
            "required" => (Ok, Some(Ignore), Bad),
            "requisite" => (Ok, Some(Ignore), Die),
            "optional" => (Ok, None, Ignore),
            "sufficient" => (Done, None, Ignore),
            _ => return None,
        };
        let mut actions = [default; PAM_RETURNS.len()];
        actions[Ret::SUCCESS.0] = success;
        actions[Ret::NEW_AUTHTOK_REQD.0] = success;
        if let Some(i) = ignore {
            actions[Ret::IGNORE.0] = i;
        }
        Some(Control {
            actions: Box::new(actions),
        })
    }

    /// `[value=action ...]`; values not named take `default`, itself `bad` if not named.
    fn brackets(text: &str) -> std::result::Result<Control, String> {
        let inner = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .ok_or_else(|| format!("unbalanced brackets in {text}"))?;
        let mut named: BTreeMap<String, Action> = BTreeMap::new();
        for pair in inner.split_whitespace() {
            let (value, action) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not value=action"))?;
            let value = value.to_ascii_lowercase();
            if value != "default" && !PAM_RETURNS.contains(&value.as_str()) {
                return Err(format!("unknown return value `{value}`"));
            }
            let action = match action.to_ascii_lowercase().as_str() {
                "ignore" => Action::Ignore,
                "bad" => Action::Bad,
                "die" => Action::Die,
                "ok" => Action::Ok,
                "done" => Action::Done,
                "reset" => Action::Reset,
                n => Action::Jump(
                    n.parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("unknown action `{action}`"))?,
                ),
            };
            named.insert(value, action);
        }
        let default = named.get("default").copied().unwrap_or(Action::Bad);
        let mut actions = [default; PAM_RETURNS.len()];
        for (i, v) in PAM_RETURNS.iter().enumerate() {
            if let Some(a) = named.get(*v) {
                actions[i] = *a;
            }
        }
        Ok(Control {
            actions: Box::new(actions),
        })
    }
}

/// One `auth` rule that loads a module.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    /// File name relative to pam.d (or the path as written), and line number: the rule's id.
    file: String,
    line: usize,
    control_text: String,
    control: Control,
    module: String,
    args: Vec<String>,
    /// `-auth`: a missing module is skipped silently.
    dash: bool,
}

impl Rule {
    fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
    fn id(&self) -> (String, usize) {
        (self.file.clone(), self.line)
    }
}

#[derive(Clone, Debug)]
enum Item {
    Module(Rule),
    /// `auth substack FILE`: done/die inside end only the substack.
    Substack(Vec<Item>),
}

/// A line of a PAM configuration file, as written.
#[derive(Clone, Debug)]
enum RawLine {
    Include {
        line: usize,
        target: String,
    },
    Rule {
        line: usize,
        typ: String,
        dash: bool,
        control: String,
        module: String,
        args: Vec<String>,
    },
}

/// Splits a PAM line into tokens; `[...]` (with `\]` inside) is one token.
fn pam_tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if depth {
            if c == '\\' && chars.peek() == Some(&']') {
                cur.push(']');
                chars.next();
            } else if c == ']' {
                cur.push(c);
                depth = false;
            } else {
                cur.push(c);
            }
        } else if c.is_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            if c == '[' && cur.is_empty() {
                depth = true;
            }
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Parses a PAM configuration file's text (comments, `\` continuations, `@include`).
fn parse_pam(text: &str) -> Vec<RawLine> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start = i + 1;
        }
        let line = raw.split('#').next().unwrap_or("");
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let toks = pam_tokens(&full);
        if toks.is_empty() {
            continue;
        }
        if toks[0] == "@include" {
            if let Some(t) = toks.get(1) {
                out.push(RawLine::Include {
                    line: start,
                    target: t.clone(),
                });
            }
            continue;
        }
        if toks.len() < 3 {
            continue;
        }
        let (dash, typ) = match toks[0].strip_prefix('-') {
            Some(t) => (true, t.to_ascii_lowercase()),
            None => (false, toks[0].to_ascii_lowercase()),
        };
        out.push(RawLine::Rule {
            line: start,
            typ,
            dash,
            control: toks[1].clone(),
            module: toks[2].clone(),
            args: toks[3..].to_vec(),
        });
    }
    out
}

fn module_base(module: &str) -> &str {
    module.rsplit('/').next().unwrap_or(module)
}

fn is_totp(module: &str) -> bool {
    matches!(module_base(module), "pam_totp.so" | "libpam_totp.so")
}

/// Modules that check a password (or another first factor that answers the password prompt).
fn is_password(module: &str) -> bool {
    matches!(
        module_base(module),
        "pam_unix.so"
            | "pam_unix2.so"
            | "pam_sss.so"
            | "pam_ldap.so"
            | "pam_krb5.so"
            | "pam_winbind.so"
            | "pam_userdb.so"
            | "pam_pwdb.so"
            | "pam_radius_auth.so"
            | "pam_tacplus.so"
            | "pam_lsass.so"
    )
}

/// Reads PAM configuration below `root`: `etc/pam.d`, falling back to `usr/lib/pam.d`.
struct PamConfig {
    root: PathBuf,
    problems: Vec<String>,
}

impl PamConfig {
    fn resolve(&self, name: &str) -> Option<(PathBuf, String)> {
        if let Some(abs) = name.strip_prefix('/') {
            let p = self.root.join(abs);
            return p.is_file().then(|| (p, name.to_string()));
        }
        for d in ["etc/pam.d", "usr/lib/pam.d"] {
            let p = self.root.join(d).join(name);
            if p.is_file() {
                let shown = if d == "etc/pam.d" {
                    name.to_string()
                } else {
                    format!("/{d}/{name}")
                };
                return Some((p, shown));
            }
        }
        None
    }

    fn read(&mut self, name: &str, from: &str) -> Option<(Vec<RawLine>, String)> {
        let Some((path, shown)) = self.resolve(name) else {
            self.problems
                .push(format!("{from} includes {name}, which does not exist"));
            return None;
        };
        match fs::read_to_string(&path) {
            Ok(t) => Some((parse_pam(&t), shown)),
            Err(e) => {
                self.problems
                    .push(format!("cannot read {}: {}", path.display(), e));
                None
            }
        }
    }

    /// The `auth` stack of `name`, includes expanded (depth-limited like libpam).
    fn auth_stack(&mut self, name: &str, from: &str, depth: usize) -> Vec<Item> {
        if depth > 16 {
            self.problems
                .push(format!("{from}: includes nested too deeply (a loop?)"));
            return Vec::new();
        }
        let Some((lines, shown)) = self.read(name, from) else {
            return Vec::new();
        };
        let mut items = Vec::new();
        for l in lines {
            match l {
                RawLine::Include { line, target } => {
                    let at = format!("{shown}:{line}");
                    items.extend(self.auth_stack(&target, &at, depth + 1));
                }
                RawLine::Rule {
                    line,
                    typ,
                    dash,
                    control,
                    module,
                    args,
                } => {
                    if typ != "auth" {
                        continue;
                    }
                    let at = format!("{shown}:{line}");
                    match control.to_ascii_lowercase().as_str() {
                        "include" => items.extend(self.auth_stack(&module, &at, depth + 1)),
                        "substack" => {
                            items.push(Item::Substack(self.auth_stack(&module, &at, depth + 1)))
                        }
                        _ => {
                            let parsed = if control.starts_with('[') {
                                Control::brackets(&control)
                            } else {
                                Control::keyword(&control)
                                    .ok_or_else(|| format!("unknown control `{control}`"))
                            };
                            match parsed {
                                Ok(c) => items.push(Item::Module(Rule {
                                    file: shown.clone(),
                                    line,
                                    control_text: control,
                                    control: c,
                                    module,
                                    args,
                                    dash,
                                })),
                                Err(e) => self.problems.push(format!(
                                    "{at}: {e} (libpam ignores the line and fails the stack)"
                                )),
                            }
                        }
                    }
                }
            }
        }
        items
    }
}

fn rules(items: &[Item]) -> Vec<&Rule> {
    let mut out = Vec::new();
    for i in items {
        match i {
            Item::Module(r) => out.push(r),
            Item::Substack(sub) => out.extend(rules(sub)),
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impression {
    Undef,
    Positive,
    Negative,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatusCode {
    Ret(Ret),
    MustFail,
}

struct Sim<'a, 'f> {
    impression: Impression,
    status: StatusCode,
    totp_ran: bool,
    /// Lines whose done, die or jump passed over a pam_totp line, in order.
    skipped_by: Vec<Skip<'a>>,
    result: &'f mut dyn FnMut(&Rule) -> Ret,
}

/// A line that passed over pam_totp: with which answer, and what its control did.
#[derive(Clone, Copy, Debug)]
struct Skip<'a> {
    rule: &'a Rule,
    ret: Ret,
    action: Action,
}

fn contains_totp(items: &[Item]) -> bool {
    items.iter().any(|i| match i {
        Item::Module(r) => is_totp(&r.module),
        Item::Substack(sub) => contains_totp(sub),
    })
}

impl<'a> Sim<'a, '_> {
    /// libpam's `_pam_dispatch_aux` for one level; true = the stack (level) ends here.
    fn level(&mut self, items: &'a [Item]) -> bool {
        let mut i = 0;
        while i < items.len() {
            match &items[i] {
                Item::Substack(sub) => {
                    // done/die end only the substack.
                    self.level(sub);
                }
                Item::Module(rule) => {
                    if is_totp(&rule.module) {
                        self.totp_ran = true;
                    }
                    let r = (self.result)(rule);
                    match rule.control.action(r) {
                        Action::Ignore => {}
                        a @ (Action::Bad | Action::Die) => {
                            if self.impression != Impression::Negative {
                                self.impression = Impression::Negative;
                                self.status = if r == Ret::IGNORE {
                                    StatusCode::MustFail
                                } else {
                                    StatusCode::Ret(r)
                                };
                            }
                            if a == Action::Die {
                                self.note_skip(rule, r, a, &items[i + 1..]);
                                return true;
                            }
                        }
                        a @ (Action::Ok | Action::Done) => {
                            if self.impression == Impression::Undef
                                || (self.impression == Impression::Positive
                                    && self.status == StatusCode::Ret(Ret::SUCCESS))
                            {
                                self.impression = Impression::Positive;
                                self.status = StatusCode::Ret(r);
                            }
                            if a == Action::Done && self.impression == Impression::Positive {
                                self.note_skip(rule, r, a, &items[i + 1..]);
                                return true;
                            }
                        }
                        Action::Reset => {
                            self.impression = Impression::Undef;
                            self.status = StatusCode::MustFail;
                        }
                        a @ Action::Jump(n) => {
                            let end = (i + 1 + n).min(items.len());
                            self.note_skip(rule, r, a, &items[i + 1..end]);
                            i += n;
                        }
                    }
                }
            }
            i += 1;
        }
        false
    }

    fn note_skip(&mut self, rule: &'a Rule, ret: Ret, action: Action, passed: &[Item]) {
        if contains_totp(passed) {
            self.skipped_by.push(Skip { rule, ret, action });
        }
    }
}

/// One run of a stack.
struct Run<'a> {
    succeeds: bool,
    totp_ran: bool,
    skipped_by: Vec<Skip<'a>>,
}

/// Runs the stack with the given module results.
fn run_stack<'a>(items: &'a [Item], result: &mut dyn FnMut(&Rule) -> Ret) -> Run<'a> {
    let mut sim = Sim {
        impression: Impression::Undef,
        status: StatusCode::MustFail,
        totp_ran: false,
        skipped_by: Vec::new(),
        result,
    };
    sim.level(items);
    Run {
        succeeds: sim.impression == Impression::Positive
            && sim.status == StatusCode::Ret(Ret::SUCCESS),
        totp_ran: sim.totp_ran,
        skipped_by: sim.skipped_by,
    }
}

/// Runs the stack with the given module results: (login succeeds, pam_totp ran).
fn simulate(items: &[Item], result: &dyn Fn(&Rule) -> Ret) -> (bool, bool) {
    let run = run_stack(items, &mut |r| result(r));
    (run.succeeds, run.totp_ran)
}

/// What other modules return in the simulation: neutral unless known.
fn other_result(rule: &Rule) -> Ret {
    match module_base(&rule.module) {
        "pam_permit.so" => Ret::SUCCESS,
        "pam_deny.so" => Ret::AUTH_ERR,
        // The users that matter are not root.
        "pam_rootok.so" => Ret::AUTH_ERR,
        "pam_faillock.so" if rule.args.iter().any(|a| a == "authfail") => Ret::AUTH_ERR,
        "pam_faillock.so" => Ret::SUCCESS,
        _ => Ret::IGNORE,
    }
}

/// The verdict on one service's auth stack.
#[derive(Debug, Default)]
struct StackVerdict {
    /// Problems (ERROR) and remarks (WARN), each with its fix.
    errors: Vec<(String, String)>,
    warnings: Vec<(String, String)>,
    /// No password module at all: pam_totp is the only factor the stack checks.
    code_only: bool,
}

/// The verdict on `service`'s auth stack (`items`).
fn judge_stack(items: &[Item], service: &str) -> StackVerdict {
    let all = rules(items);
    let passwords: Vec<&Rule> = all
        .iter()
        .copied()
        .filter(|r| is_password(&r.module))
        .collect();
    let totp_at = all
        .iter()
        .filter(|r| is_totp(&r.module))
        .map(|r| format!("{} `{}`", r.at(), r.control_text))
        .collect::<Vec<_>>()
        .join(", ");
    let mut v = StackVerdict {
        code_only: passwords.is_empty(),
        ..Default::default()
    };
    let requisite_fix = "make a failed password end the stack before pam_totp: `auth requisite \
                         pam_unix.so` (or `[success=ok default=die]`), or Debian's \
                         `[success=1 default=ignore] pam_unix.so` + `requisite pam_deny.so` + \
                         `required pam_permit.so` with pam_totp after them (pam-auth-update \
                         --enable pam-totp writes that)";
    // 1. A stranger: every password module fails.
    for fail in [Ret::AUTH_ERR, Ret::USER_UNKNOWN] {
        if passwords.is_empty() {
            break;
        }
        let res = |r: &Rule| {
            if is_password(&r.module) {
                fail
            } else if is_totp(&r.module) {
                Ret::AUTH_ERR
            } else {
                other_result(r)
            }
        };
        let (_, ran) = simulate(items, &res);
        if ran {
            let how = if fail == Ret::AUTH_ERR {
                "a wrong password"
            } else {
                "an unknown user"
            };
            v.errors.push((
                format!(
                    "{how} still reaches pam_totp.so ({totp_at}): anyone can probe codes, lock \
                     users out{}",
                    ", or enrol a key of their own with enroll_at_login"
                ),
                requisite_fix.to_string(),
            ));
            break;
        }
    }
    // 2. The password is accepted (by each password module in turn; or there is none).
    let winners: Vec<Option<(String, usize)>> = if passwords.is_empty() {
        vec![None]
    } else {
        passwords.iter().map(|r| Some(r.id())).collect()
    };
    let mut seen = BTreeSet::new();
    // Lines already named in an error for skipping pam_totp; and whether an error already says
    // that the login can succeed without the code.
    let mut reported = BTreeSet::new();
    let mut bypass_reported = false;
    for winner in winners {
        let res_for = |totp: Ret| {
            let winner = winner.clone();
            move |r: &Rule| {
                if is_totp(&r.module) {
                    totp
                } else if is_password(&r.module) {
                    if Some(r.id()) == winner {
                        Ret::SUCCESS
                    } else {
                        Ret::AUTH_ERR
                    }
                } else {
                    other_result(r)
                }
            }
        };
        let by = winner
            .as_ref()
            .map(|(f, l)| format!(" when the password is accepted at {f}:{l}"))
            .unwrap_or_default();
        let wrong = run_stack(items, &mut res_for(Ret::AUTH_ERR));
        let (ok_wrong, ran) = (wrong.succeeds, wrong.totp_ran);
        let (ok_right, _) = simulate(items, &res_for(Ret::SUCCESS));
        let (ok_unenrolled, _) = simulate(items, &res_for(Ret::IGNORE));
        let mut add = |list: &mut Vec<(String, String)>, text: String, fix: &str| {
            if seen.insert(text.clone()) {
                list.push((text, fix.to_string()));
            }
        };
        if !ran || ok_wrong {
            bypass_reported = true;
            // Password modules are named here; other lines get their own warning below.
            reported.extend(
                wrong
                    .skipped_by
                    .iter()
                    .filter(|s| is_password(&s.rule.module))
                    .map(|s| s.rule.id()),
            );
        }
        if !ran {
            let culprits: Vec<String> = wrong
                .skipped_by
                .iter()
                .map(|s| format!("{} at {}", module_base(&s.rule.module), s.rule.at()))
                .collect();
            add(
                &mut v.errors,
                format!(
                    "pam_totp.so ({totp_at}) is skipped{by} (by {}): the code is never asked",
                    culprits.join(", ")
                ),
                "put pam_totp after the password module with `required`, and do not let a \
                 `sufficient` or `[success=N]` line jump over it",
            );
        } else if ok_wrong {
            add(
                &mut v.errors,
                format!("a wrong code does not deny the login{by} (pam_totp.so at {totp_at})"),
                "give pam_totp the control `required` (not optional or sufficient)",
            );
        } else if !ok_right {
            add(
                &mut v.warnings,
                format!("even a correct code cannot log in{by}: a later line denies"),
                "check the lines after pam_totp",
            );
        }
        if ran && ok_right && !ok_unenrolled {
            add(
                &mut v.warnings,
                format!(
                    "users who need no code (not enrolled, not required) cannot log in{by}: \
                     nothing but pam_totp grants the login and it answers PAM_IGNORE for them"
                ),
                "intended for key + code stacks where every user is enrolled; otherwise add a \
                 line that grants the login (Debian: `auth required pam_permit.so` before \
                 pam_totp)",
            );
        }
    }
    // 3. Every answer of the modules doctor does not know (see bypass.rs).
    let found = bypass::find(items, service);
    let mut how = Vec::new();
    for skip in &found.skipped_by {
        let r = skip.rule;
        how.push(format!("{} at {}", module_base(&r.module), r.at()));
        if !reported.contains(&r.id()) {
            v.warnings.push((skip_text(skip, service), skip_fix(r)));
        }
    }
    if !found.not_counted.is_empty() {
        let answers: Vec<String> = found.not_counted.iter().map(|r| r.name()).collect();
        how.push(format!(
            "pam_totp.so ({totp_at}) answering {} does not deny it",
            answers.join(" or ")
        ));
    }
    if found.found() && !bypass_reported {
        v.errors.push((
            format!("the login can succeed without the code: {}", how.join("; ")),
            "no line before pam_totp.so may end the stack with success or jump over it, and \
             every failure of pam_totp.so must deny (`auth required pam_totp.so`); see the \
             warnings for each line"
                .to_string(),
        ));
    }
    if found.incomplete {
        v.errors.push((
            "too many modules to try every combination of their answers: doctor cannot show \
             that the code is needed"
                .to_string(),
            "simplify the auth stack (fewer modules before pam_totp.so)".to_string(),
        ));
    }
    v
}

/// A line that can pass over pam_totp, named with its module, place and control.
fn skip_text(skip: &Skip, service: &str) -> String {
    let r = skip.rule;
    let m = module_base(&r.module);
    let when = if skip.ret == Ret::SUCCESS {
        "when it succeeds".to_string()
    } else {
        format!("when it answers {}", skip.ret.name())
    };
    let what = match skip.action {
        Action::Jump(n) => format!(
            "its jump of {n} line{} passes over pam_totp.so",
            plural_s(n)
        ),
        Action::Done => "it ends the stack with success before pam_totp.so runs".to_string(),
        _ => "it ends the stack before pam_totp.so runs".to_string(),
    };
    let root = if m == "pam_rootok.so" && !bypass::is_root_caller_service(service) {
        format!(
            " (pam_rootok.so succeeds whenever the program runs as root, and {service} runs \
             as root for every user; it is harmless only in su, sudo and the like)"
        )
    } else {
        String::new()
    };
    format!(
        "{m} at {} `{}` can skip the code: {when}, {what}{root}",
        r.at(),
        r.control_text
    )
}

fn skip_fix(r: &Rule) -> String {
    format!(
        "unless {m} alone is meant to let users in without password and code, move the line \
         after pam_totp.so or give it a control that cannot end the stack (`required`, or \
         `[success=ok default=ignore]`)",
        m = module_base(&r.module)
    )
}

fn plural_s(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Names of pam.d files that are only ever included, never a service of their own.
fn include_only(name: &str) -> bool {
    name.starts_with("common-")
        || matches!(
            name,
            "system-auth"
                | "system-auth-ac"
                | "password-auth"
                | "password-auth-ac"
                | "postlogin"
                | "postlogin-ac"
                | "smartcard-auth"
                | "fingerprint-auth"
                | "system-login"
                | "system-local-login"
                | "system-remote-login"
                | "system-services"
        )
}

fn is_backup(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || [
            ".dpkg-old",
            ".dpkg-dist",
            ".dpkg-new",
            ".dpkg-bak",
            ".ucf-old",
            ".ucf-dist",
            ".ucf-new",
            ".bak",
            ".orig",
            ".rpmnew",
            ".rpmsave",
            ".swp",
        ]
        .iter()
        .any(|s| name.ends_with(s))
}

struct PamResult {
    section: Section,
    /// Some stack loads pam_totp.
    module_used: bool,
    /// The sshd service loads pam_totp; and its stack has no password module (key + code).
    sshd_loads: bool,
    sshd_code_only: bool,
}

fn module_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = [
        "lib/security",
        "lib64/security",
        "usr/lib/security",
        "usr/lib64/security",
    ]
    .iter()
    .map(|d| root.join(d))
    .collect();
    for base in ["usr/lib", "lib"] {
        if let Ok(rd) = fs::read_dir(root.join(base)) {
            let mut more: Vec<PathBuf> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("security"))
                .filter(|p| p.is_dir())
                .collect();
            more.sort();
            dirs.extend(more);
        }
    }
    dirs
}

fn check_module_file(root: &Path, module: &str) -> std::result::Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = if let Some(abs) = module.strip_prefix('/') {
        vec![root.join(abs)]
    } else {
        module_dirs(root)
            .into_iter()
            .map(|d| d.join(module))
            .collect()
    };
    let Some(path) = candidates.into_iter().find(|p| p.exists()) else {
        return Err(format!("{module} is not installed"));
    };
    let meta = fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.uid() != 0 || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is owned by uid {} with mode {:o}: whoever can write it controls every login",
            path.display(),
            meta.uid(),
            meta.mode() & 0o7777
        ));
    }
    Ok(path)
}

fn check_pam(root: &Path, dir: &Path, policy: &Path) -> PamResult {
    let pamd = root.join("etc/pam.d");
    let mut s = Section::new(format!("PAM stacks ({})", pamd.display()));
    let mut result = PamResult {
        section: Section::default(),
        module_used: false,
        sshd_loads: false,
        sshd_code_only: false,
    };
    let mut names: Vec<String> = match fs::read_dir(&pamd) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !is_backup(n))
            .collect(),
        Err(e) => {
            s.error(
                format!("cannot read {}: {e}", pamd.display()),
                "run pam-totp doctor as root",
            );
            result.section = s;
            return result;
        }
    };
    names.sort();
    let mut cfg = PamConfig {
        root: root.to_path_buf(),
        problems: Vec::new(),
    };
    // pam_totp on other types than auth: libpam finds no function and fails the stack.
    for n in &names {
        let Ok(text) = fs::read_to_string(pamd.join(n)) else {
            continue;
        };
        for l in parse_pam(&text) {
            if let RawLine::Rule {
                line, typ, module, ..
            } = l
            {
                if is_totp(&module) && typ != "auth" {
                    s.error(
                        format!(
                            "{n}:{line}: pam_totp.so on a `{typ}` line: it only provides `auth`, \
                             so libpam fails this `{typ}` stack"
                        ),
                        format!("remove the `{typ}` line that names pam_totp.so"),
                    );
                }
            }
        }
    }
    let mut using = Vec::new();
    // Each module path is checked once; every stack that loads a broken one is not "ok".
    let mut checked_modules: BTreeMap<String, bool> = BTreeMap::new();
    for n in names.iter().filter(|n| !include_only(n)) {
        let items = cfg.auth_stack(n, n, 0);
        let all = rules(&items);
        let totp: Vec<&Rule> = all.iter().copied().filter(|r| is_totp(&r.module)).collect();
        if totp.is_empty() {
            continue;
        }
        result.module_used = true;
        using.push(n.clone());
        if totp.len() > 1 {
            s.warn(
                format!(
                    "{n}: pam_totp.so is loaded {} times ({}): the user is asked for several \
                     codes",
                    totp.len(),
                    totp.iter().map(|r| r.at()).collect::<Vec<_>>().join(", ")
                ),
                "keep one pam_totp line (check the files it includes)",
            );
        }
        // A pam_totp line of this stack that cannot work (bad options, module file missing).
        let mut module_broken = false;
        for r in &totp {
            match Options::parse(&r.args) {
                Ok(o) => {
                    if o.dir != dir || o.policy != policy {
                        s.note(format!(
                            "{n}: {} uses dir={} policy={}; this run checked {} and {} (run \
                             `pam-totp --dir {} --policy {} doctor` for those)",
                            r.at(),
                            o.dir.display(),
                            o.policy.display(),
                            dir.display(),
                            policy.display(),
                            o.dir.display(),
                            o.policy.display()
                        ));
                    }
                }
                Err(e) => {
                    module_broken = true;
                    s.error(
                        format!(
                            "{n}: {}: {e}: pam_totp answers PAM_SERVICE_ERR, which denies every \
                             login",
                            r.at()
                        ),
                        "fix the module options (see pam_totp(8): dir=, policy=, window=, \
                         prompt=, debug)",
                    )
                }
            }
            if let Some(ok) = checked_modules.get(&r.module) {
                if !ok {
                    module_broken = true;
                    s.note(format!(
                        "{n}: loads {} at {}, which does not work (see the ERROR above): not \
                         ok until it is fixed",
                        r.module,
                        r.at()
                    ));
                }
                continue;
            }
            let check = check_module_file(root, &r.module);
            checked_modules.insert(r.module.clone(), check.is_ok());
            if let Err(e) = check {
                module_broken = true;
                let fix = "install pam_totp.so root-owned, mode 0644 (the package puts it in \
                           /usr/lib/x86_64-linux-gnu/security/)";
                let text = if r.dash {
                    format!(
                        "{n}: {}: {e}; the line is `-auth`, so PAM skips it: no code is asked",
                        r.at()
                    )
                } else {
                    format!("{n}: {}: {e}: PAM fails every login through it", r.at())
                };
                s.error(text, fix);
            }
        }
        let v = judge_stack(&items, n);
        if n == "sshd" {
            result.sshd_loads = true;
            result.sshd_code_only = v.code_only;
        }
        let where_ = totp
            .iter()
            .map(|r| format!("{} `{}`", r.at(), r.control_text))
            .collect::<Vec<_>>()
            .join(", ");
        if v.code_only && n != "sshd" {
            s.error(
                format!(
                    "{n}: pam_totp.so ({where_}) is the only factor: no password module runs \
                     before it, so a code alone logs in"
                ),
                "put the password module (e.g. `auth requisite pam_unix.so`, or @include \
                 common-auth) before pam_totp",
            );
        }
        for (t, f) in &v.errors {
            s.error(format!("{n}: {t}"), f.clone());
        }
        for (t, f) in &v.warnings {
            s.warn(format!("{n}: {t}"), f.clone());
        }
        if v.errors.is_empty() && !module_broken && !(v.code_only && n != "sshd") {
            if v.code_only {
                s.ok(format!(
                    "{n}: pam_totp.so ({where_}) with no password module: key + code (sshd's \
                     AuthenticationMethods is checked below)"
                ));
            } else {
                let pw: Vec<String> = all
                    .iter()
                    .filter(|r| is_password(&r.module))
                    .map(|r| format!("{} at {}", module_base(&r.module), r.at()))
                    .collect();
                s.ok(format!(
                    "{n}: pam_totp.so ({where_}) runs after {}, and a wrong password stops \
                     before the code prompt",
                    pw.join(", ")
                ));
            }
        }
    }
    for p in std::mem::take(&mut cfg.problems)
        .into_iter()
        .collect::<BTreeSet<_>>()
    {
        s.warn(p, "fix the PAM configuration file");
    }
    if using.is_empty() {
        s.error(
            "no PAM stack loads pam_totp.so: no login asks for a code",
            "pam-auth-update --enable pam-totp (Debian), or add `auth required pam_totp.so` \
             after the password module (see README: PAM configuration)",
        );
    }
    result.section = s;
    result
}

// ---- sshd -------------------------------------------------------------------------------------

/// Runs a command with a time limit; its stdout if it exited with status 0.
fn run_cmd(prog: &str, args: &[&str], limit: Duration) -> Option<String> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let out = reader.join().unwrap_or_default();
    status.filter(|s| s.success()).map(|_| out)
}

/// sshd's effective settings: lower-case keyword → value (the first one, as sshd uses it).
struct SshdSettings {
    from: String,
    values: BTreeMap<String, String>,
    has_match: bool,
}

impl SshdSettings {
    fn get(&self, key: &str) -> String {
        self.values.get(key).cloned().unwrap_or_else(|| {
            match key {
                "usepam" => "no",
                "kbdinteractiveauthentication" => "yes",
                "passwordauthentication" => "yes",
                "pubkeyauthentication" => "yes",
                "authenticationmethods" => "any",
                _ => "",
            }
            .to_string()
        })
    }
}

fn wildcard(pattern: &str, name: &str) -> bool {
    fn m(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => m(&p[1..], n) || (!n.is_empty() && m(p, &n[1..])),
            (Some(b'?'), Some(_)) => m(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => m(&p[1..], &n[1..]),
            _ => false,
        }
    }
    m(pattern.as_bytes(), name.as_bytes())
}

fn sshd_file(
    root: &Path,
    path: &Path,
    out: &mut SshdSettings,
    depth: usize,
    problems: &mut Vec<String>,
) {
    if depth > 16 {
        problems.push(format!("{}: Include nested too deeply", path.display()));
        return;
    }
    let Ok(text) = fs::read_to_string(path) else {
        problems.push(format!("cannot read {}", path.display()));
        return;
    };
    let mut in_match = false;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let split = line
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(line.len());
        let key = line[..split].to_ascii_lowercase();
        let value = line[split..]
            .trim_start_matches(|c: char| c.is_whitespace() || c == '=')
            .trim()
            .trim_matches('"')
            .to_string();
        if key == "match" {
            in_match = true;
            out.has_match = true;
            continue;
        }
        if in_match {
            continue;
        }
        if key == "include" {
            for pat in value.split_whitespace() {
                let full = if let Some(abs) = pat.strip_prefix('/') {
                    root.join(abs)
                } else {
                    root.join("etc/ssh").join(pat)
                };
                let (Some(parent), Some(fname)) =
                    (full.parent(), full.file_name().and_then(|f| f.to_str()))
                else {
                    continue;
                };
                let mut files: Vec<PathBuf> = match fs::read_dir(parent) {
                    Ok(rd) => rd
                        .filter_map(|e| e.ok())
                        .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard(fname, n)))
                        .map(|e| e.path())
                        .filter(|p| p.is_file())
                        .collect(),
                    Err(_) => Vec::new(),
                };
                files.sort();
                for f in files {
                    sshd_file(root, &f, out, depth + 1, problems);
                }
            }
            continue;
        }
        let key = if key == "challengeresponseauthentication" {
            "kbdinteractiveauthentication".to_string()
        } else {
            key
        };
        out.values.entry(key).or_insert(value.to_ascii_lowercase());
    }
}

fn sshd_settings(root: &Path, commands: bool, notes: &mut Vec<String>) -> Option<SshdSettings> {
    let config = root.join("etc/ssh/sshd_config");
    if !config.is_file() {
        return None;
    }
    if commands {
        let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        if let Some(sshd) = sshd {
            if let Some(out) = run_cmd(sshd, &["-T"], Duration::from_secs(10)) {
                let mut values = BTreeMap::new();
                for l in out.lines() {
                    if let Some((k, v)) = l.split_once(' ') {
                        values
                            .entry(k.to_ascii_lowercase())
                            .or_insert_with(|| v.trim().to_ascii_lowercase());
                    }
                }
                return Some(SshdSettings {
                    from: format!("`{sshd} -T`"),
                    values,
                    has_match: fs::read_to_string(&config)
                        .map(|t| {
                            t.lines()
                                .any(|l| l.trim_start().to_ascii_lowercase().starts_with("match"))
                        })
                        .unwrap_or(false),
                });
            }
            notes.push(format!(
                "`{sshd} -T` failed (not root, or no host keys?); read {} instead",
                config.display()
            ));
        }
    }
    let mut s = SshdSettings {
        from: config.display().to_string(),
        values: BTreeMap::new(),
        has_match: false,
    };
    let mut problems = Vec::new();
    sshd_file(root, &config, &mut s, 0, &mut problems);
    notes.extend(problems);
    Some(s)
}

fn check_sshd(root: &Path, pam: &PamResult, commands: bool) -> Section {
    let mut s = Section::new("sshd");
    let mut notes = Vec::new();
    let Some(cfg) = sshd_settings(root, commands, &mut notes) else {
        s.note("sshd is not installed (no etc/ssh/sshd_config): nothing to check");
        return s;
    };
    s.title = format!("sshd (settings from {})", cfg.from);
    for n in notes {
        s.note(n);
    }
    if !pam.sshd_loads {
        s.warn(
            "the sshd PAM stack does not load pam_totp.so: ssh logins are not asked for a code",
            "add pam_totp to /etc/pam.d/sshd (Debian: it @includes common-auth, which \
             pam-auth-update --enable pam-totp changes)",
        );
        return s;
    }
    let usepam = cfg.get("usepam");
    if usepam == "yes" {
        s.ok("UsePAM yes");
    } else {
        s.error(
            format!("UsePAM {usepam}: sshd does not use PAM, so ssh logins skip the code"),
            "set `UsePAM yes` in /etc/ssh/sshd_config and reload sshd",
        );
    }
    let kbd = cfg.get("kbdinteractiveauthentication");
    if kbd == "yes" {
        s.ok("KbdInteractiveAuthentication yes (the code prompt can reach the user)");
    } else {
        s.error(
            format!(
                "KbdInteractiveAuthentication {kbd}: sshd cannot show the \"Verification code:\" \
                 prompt"
            ),
            "set `KbdInteractiveAuthentication yes` in /etc/ssh/sshd_config and reload sshd",
        );
    }
    let methods = cfg.get("authenticationmethods");
    let pubkey = cfg.get("pubkeyauthentication") == "yes";
    let password = cfg.get("passwordauthentication") == "yes";
    let lists: Vec<Vec<String>> = if methods == "any" || methods.is_empty() {
        Vec::new()
    } else {
        methods
            .split_whitespace()
            .map(|l| {
                l.split(',')
                    .map(|m| m.split(':').next().unwrap_or(m).to_string())
                    .collect()
            })
            .collect()
    };
    let kbd_fix = "`AuthenticationMethods keyboard-interactive` (password + code) or \
                   `AuthenticationMethods publickey,keyboard-interactive` (key + code)";
    if lists.is_empty() {
        if pam.sshd_code_only {
            s.error(
                "AuthenticationMethods any with a PAM stack that asks only for the code: \
                 keyboard-interactive alone logs in with a code, no key and no password",
                "set `AuthenticationMethods publickey,keyboard-interactive`",
            );
        } else if pubkey {
            s.warn(
                "AuthenticationMethods any and PubkeyAuthentication yes: public-key logins do \
                 not run PAM authentication, so they skip the code",
                format!("if keys must be combined with a code, set {kbd_fix}"),
            );
        } else {
            s.ok("AuthenticationMethods any, PubkeyAuthentication no: logins go through PAM");
        }
    } else {
        let mut all_ok = true;
        for l in &lists {
            let shown = l.join(",");
            match l.iter().position(|m| m == "keyboard-interactive") {
                None => {
                    all_ok = false;
                    s.warn(
                        format!(
                            "AuthenticationMethods list `{shown}` does not include \
                             keyboard-interactive: logins that way skip the code"
                        ),
                        format!("use {kbd_fix}"),
                    );
                }
                Some(k) if pam.sshd_code_only && !l[..k].iter().any(|m| m == "publickey") => {
                    all_ok = false;
                    s.error(
                        format!(
                            "AuthenticationMethods list `{shown}` reaches keyboard-interactive \
                             without a key, and the sshd PAM stack asks only for the code: a \
                             code alone logs in"
                        ),
                        "use `AuthenticationMethods publickey,keyboard-interactive`, or put the \
                         password module back in /etc/pam.d/sshd",
                    );
                }
                Some(_) => {}
            }
        }
        if all_ok {
            s.ok(format!(
                "AuthenticationMethods {methods}: every way in asks for the code"
            ));
        }
    }
    let password_usable =
        lists.is_empty() || lists.iter().any(|l| l.iter().any(|m| m == "password"));
    if password && password_usable {
        s.warn(
            "PasswordAuthentication yes: with UsePAM, sshd answers every PAM prompt with the \
             password, so clients that use password authentication fail at the code and each \
             attempt counts toward the lock",
            "set `PasswordAuthentication no` (the password is asked through \
             keyboard-interactive instead)",
        );
    }
    if cfg.has_match {
        s.note(
            "sshd_config has Match blocks: these checks use the global settings; check the \
             Match blocks by hand (sshd -T -C user=NAME,host=H,addr=A)",
        );
    }
    s
}

// ---- clock ------------------------------------------------------------------------------------

fn check_clock(commands: bool) -> Section {
    let mut s = Section::new("Clock");
    if !commands {
        s.note("not checked (configuration read from another root)");
        return s;
    }
    let limit = Duration::from_secs(5);
    let unsynced_fix = "codes are accepted only within ±30 s (one step each way): enable time \
                        synchronisation (timedatectl set-ntp true, or install chrony)";
    if let Some(out) = run_cmd(
        "timedatectl",
        &["show", "--property=NTPSynchronized", "--value"],
        limit,
    ) {
        match out.trim() {
            "yes" => {
                s.ok("synchronised (timedatectl: NTPSynchronized=yes)");
                return s;
            }
            "no" => {
                s.warn(
                    "not synchronised (timedatectl: NTPSynchronized=no)",
                    unsynced_fix,
                );
                return s;
            }
            _ => {}
        }
    }
    if let Some(out) = run_cmd("chronyc", &["-n", "tracking"], limit) {
        let leap = out
            .lines()
            .find(|l| l.starts_with("Leap status"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string());
        match leap.as_deref() {
            Some("Not synchronised") => s.warn("not synchronised (chronyc tracking)", unsynced_fix),
            Some(status) => s.ok(format!("synchronised (chronyc tracking: {status})")),
            None => s.warn("chronyc tracking gave no leap status", unsynced_fix),
        }
        return s;
    }
    if let Some(out) = run_cmd("ntpq", &["-pn"], limit) {
        if out.lines().any(|l| l.starts_with('*')) {
            s.ok("synchronised (ntpq: a system peer is selected)");
        } else {
            s.warn("ntpq shows no selected peer", unsynced_fix);
        }
        return s;
    }
    s.warn(
        "cannot tell whether the clock is synchronised (timedatectl, chronyc and ntpq gave no \
         answer)",
        "make sure the clock is kept in sync (systemd-timesyncd, chrony or ntp): codes are \
         accepted only within ±30 s",
    );
    s
}

// ---- users the policy requires ------------------------------------------------------------

struct Account {
    name: String,
    uid: u32,
    gid: u32,
    shell: String,
}

fn read_accounts(root: &Path) -> Vec<Account> {
    let text = fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7).then(|| Account {
                name: f[0].to_string(),
                uid: f[2].parse().unwrap_or(u32::MAX),
                gid: f[3].parse().unwrap_or(u32::MAX),
                shell: f[6].to_string(),
            })
        })
        .filter(|a| a.uid != u32::MAX)
        .collect()
}

/// group name → (gid, members)
fn read_groups(root: &Path) -> Vec<(String, u32, Vec<String>)> {
    let text = fs::read_to_string(root.join("etc/group")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 4).then(|| {
                (
                    f[0].to_string(),
                    f[2].parse().unwrap_or(u32::MAX),
                    f[3].split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect(),
                )
            })
        })
        .collect()
}

fn uid_min(root: &Path) -> u32 {
    fs::read_to_string(root.join("etc/login.defs"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some("UID_MIN")).then(|| it.next()?.parse().ok())?
            })
        })
        .unwrap_or(1000)
}

fn can_log_in(shell: &str) -> bool {
    let base = shell.rsplit('/').next().unwrap_or(shell);
    !shell.is_empty() && !matches!(base, "nologin" | "false" | "sync" | "halt" | "shutdown")
}

fn check_users(
    root: &Path,
    policy: Option<&Policy>,
    enrolled: Option<&Enrolled>,
    now: u64,
) -> Section {
    let mut s = Section::new("Users the policy requires");
    let (Some(policy), Some(enrolled)) = (policy, enrolled) else {
        s.note("not checked: the policy or the state directory is unusable (see above)");
        return s;
    };
    if !policy.require_all && policy.require_users.is_empty() && policy.require_groups.is_empty() {
        s.ok("the policy requires nobody");
        return s;
    }
    let accounts = read_accounts(root);
    let groups = read_groups(root);
    let min = uid_min(root);
    let groups_of = |a: &Account| -> Vec<String> {
        groups
            .iter()
            .filter(|(_, gid, members)| *gid == a.gid || members.contains(&a.name))
            .map(|(n, _, _)| n.clone())
            .collect()
    };
    let mut candidates: BTreeMap<String, Option<Vec<String>>> = BTreeMap::new();
    for a in &accounts {
        let interactive = (a.uid == 0 || (a.uid >= min && a.uid != 65534)) && can_log_in(&a.shell);
        let g = groups_of(a);
        let named = policy.require_users.contains(&a.name)
            || policy.require_groups.iter().any(|rg| g.contains(rg));
        if named || (policy.require_all && interactive) {
            candidates.insert(a.name.clone(), Some(g));
        }
    }
    for u in &policy.require_users {
        candidates.entry(u.clone()).or_insert(None);
    }
    let grace = policy.grace_at(now);
    let mut missing = 0;
    for (user, groups) in &candidates {
        let Some(by) = policy.required_by(user, groups.as_deref()) else {
            continue;
        };
        if enrolled.get(user).copied().unwrap_or(false) {
            continue;
        }
        missing += 1;
        let pending = if enrolled.contains_key(user) {
            format!(" (a pending record exists: pam-totp activate {user})")
        } else {
            String::new()
        };
        let unknown = if groups.is_none() {
            " (not in etc/passwd: from another user database, or a typo?)"
        } else {
            ""
        };
        if let Some(g) = grace {
            s.warn(
                format!(
                    "{user} is required ({by}) but not enrolled{pending}{unknown}: logins are \
                     let in with a notice until {}, then denied",
                    timefmt::date(g)
                ),
                format!("pam-totp enroll {user}"),
            );
        } else if policy.enroll_at_login {
            s.note(format!(
                "{user} is required ({by}) but not enrolled{pending}{unknown}: enrols at the \
                 next login (enroll_at_login)"
            ));
        } else {
            s.error(
                format!(
                    "{user} is required ({by}) but not enrolled{pending}{unknown}: every login \
                     through pam_totp is denied"
                ),
                format!(
                    "pam-totp enroll {user}; or exempt {user} (exempt_users), set grace_until, \
                     or enable enroll_at_login in the policy"
                ),
            );
        }
    }
    if missing == 0 {
        s.ok(format!(
            "every required user is enrolled ({} checked{})",
            candidates.len(),
            if policy.require_all {
                format!(
                    "; require_all: accounts in etc/passwd with a login shell and UID 0 or >= \
                     {min}"
                )
            } else {
                String::new()
            }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static N: AtomicUsize = AtomicUsize::new(0);

    /// A throwaway root with etc/pam.d files.
    fn root_with(files: &[(&str, &str)]) -> PathBuf {
        let root = std::env::temp_dir().join(format!(
            "pam-totp-doctor-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("etc/pam.d")).unwrap();
        for (name, text) in files {
            let p = root.join("etc/pam.d").join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        }
        root
    }

    fn judge(files: &[(&str, &str)], service: &str) -> (StackVerdict, Vec<String>) {
        let root = root_with(files);
        let mut cfg = PamConfig {
            root: root.clone(),
            problems: Vec::new(),
        };
        let items = cfg.auth_stack(service, service, 0);
        let v = judge_stack(&items, service);
        let _ = fs::remove_dir_all(&root);
        (v, cfg.problems)
    }

    const DEBIAN_COMMON_AUTH: &str = "\
# here are the per-package modules (the \"Primary\" block)
auth\t[success=1 default=ignore]\tpam_unix.so nullok
# here's the fallback if no module succeeds
auth\trequisite\t\t\tpam_deny.so
auth\trequired\t\t\tpam_permit.so
auth\trequired\t\t\tpam_totp.so
auth\toptional\t\t\tpam_cap.so
";

    #[test]
    fn debian_common_auth_layout_stops_a_wrong_password() {
        let (v, problems) = judge(
            &[
                ("common-auth", DEBIAN_COMMON_AUTH),
                (
                    "sshd",
                    "@include common-auth\naccount required pam_nologin.so\n",
                ),
            ],
            "sshd",
        );
        assert!(v.errors.is_empty(), "{:?}", v.errors);
        assert!(v.warnings.is_empty(), "{:?}", v.warnings);
        assert!(!v.code_only);
        assert!(problems.is_empty());
    }

    #[test]
    fn required_password_lets_a_wrong_password_reach_the_module() {
        let (v, _) = judge(
            &[(
                "login",
                "auth required pam_unix.so\nauth required /lib/security/pam_totp.so\n",
            )],
            "login",
        );
        assert!(
            v.errors.iter().any(|(t, _)| t.contains("wrong password")),
            "{:?}",
            v.errors
        );
    }

    #[test]
    fn requisite_and_success_ok_default_die_both_stop() {
        for ctl in ["requisite", "[success=ok default=die]"] {
            let text = format!("auth {ctl} pam_unix.so\nauth required pam_totp.so\n");
            let (v, _) = judge(&[("login", &text)], "login");
            assert!(v.errors.is_empty(), "{ctl}: {:?}", v.errors);
        }
    }

    #[test]
    fn sufficient_password_skips_the_module() {
        let (v, _) = judge(
            &[(
                "su",
                "auth sufficient pam_unix.so\nauth required pam_totp.so\n",
            )],
            "su",
        );
        let text: Vec<&str> = v.errors.iter().map(|(t, _)| t.as_str()).collect();
        assert!(text.iter().any(|t| t.contains("skipped")), "{text:?}");
        assert!(
            text.iter().any(|t| t.contains("wrong password")),
            "{text:?}"
        );
    }

    #[test]
    fn optional_module_does_not_decide() {
        let (v, _) = judge(
            &[(
                "login",
                "auth requisite pam_unix.so\nauth optional pam_totp.so\n",
            )],
            "login",
        );
        assert!(
            v.errors
                .iter()
                .any(|(t, _)| t.contains("wrong code does not deny")),
            "{:?}",
            v.errors
        );
    }

    #[test]
    fn requisite_inside_a_substack_does_not_stop_the_parent() {
        let (v, _) = judge(
            &[
                ("pw", "auth requisite pam_unix.so\n"),
                ("login", "auth substack pw\nauth required pam_totp.so\n"),
            ],
            "login",
        );
        assert!(
            v.errors.iter().any(|(t, _)| t.contains("wrong password")),
            "{:?}",
            v.errors
        );
        // ... but the same file through `include` does.
        let (v, _) = judge(
            &[
                ("pw", "auth requisite pam_unix.so\n"),
                ("login", "auth include pw\nauth required pam_totp.so\n"),
            ],
            "login",
        );
        assert!(v.errors.is_empty(), "{:?}", v.errors);
    }

    #[test]
    fn jump_over_the_module_is_flagged() {
        let (v, _) = judge(
            &[(
                "login",
                "auth [success=2 default=die] pam_unix.so\nauth required pam_totp.so\n\
                 auth required pam_deny.so\nauth required pam_permit.so\n",
            )],
            "login",
        );
        assert!(
            v.errors.iter().any(|(t, _)| t.contains("skipped")),
            "{:?}",
            v.errors
        );
    }

    #[test]
    fn key_and_code_stack_is_code_only_and_warns_about_unenrolled_users() {
        let (v, _) = judge(&[("sshd", "auth required pam_totp.so\n")], "sshd");
        assert!(v.code_only);
        assert!(v.errors.is_empty(), "{:?}", v.errors);
        assert!(
            v.warnings.iter().any(|(t, _)| t.contains("need no code")),
            "{:?}",
            v.warnings
        );
    }

    #[test]
    fn missing_include_is_reported() {
        let (_, problems) = judge(&[("login", "@include nowhere\n")], "login");
        assert!(
            problems.iter().any(|p| p.contains("nowhere")),
            "{problems:?}"
        );
    }

    #[test]
    fn tokens_keep_brackets_and_continuations_join_lines() {
        assert_eq!(
            pam_tokens("auth [success=1 default=ignore] pam_totp.so [prompt=One-time code: ]"),
            vec![
                "auth",
                "[success=1 default=ignore]",
                "pam_totp.so",
                "[prompt=One-time code: ]"
            ]
        );
        let lines = parse_pam("-auth \\\n  required pam_totp.so dir=/x # comment\n");
        match &lines[0] {
            RawLine::Rule {
                line,
                typ,
                dash,
                control,
                module,
                args,
            } => {
                assert_eq!(
                    (
                        *line,
                        typ.as_str(),
                        *dash,
                        control.as_str(),
                        module.as_str()
                    ),
                    (1, "auth", true, "required", "pam_totp.so")
                );
                assert_eq!(args, &vec!["dir=/x".to_string()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bracket_controls_default_to_bad() {
        let c = Control::brackets("[success=ok]").unwrap();
        assert_eq!(c.action(Ret::AUTH_ERR), Action::Bad);
        assert_eq!(
            Control::brackets("[success=2 default=ignore]")
                .unwrap()
                .action(Ret::SUCCESS),
            Action::Jump(2)
        );
        assert!(Control::brackets("[success=frob]").is_err());
    }

    #[test]
    fn sshd_config_first_value_wins_includes_and_match() {
        let root = root_with(&[]);
        fs::create_dir_all(root.join("etc/ssh/sshd_config.d")).unwrap();
        fs::write(
            root.join("etc/ssh/sshd_config"),
            "Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\n\
             ChallengeResponseAuthentication no\nKbdInteractiveAuthentication yes\n\
             Match User bob\n  AuthenticationMethods publickey\n",
        )
        .unwrap();
        fs::write(
            root.join("etc/ssh/sshd_config.d/10-x.conf"),
            "AuthenticationMethods=publickey,keyboard-interactive\n",
        )
        .unwrap();
        let mut notes = Vec::new();
        let s = sshd_settings(&root, false, &mut notes).unwrap();
        assert_eq!(s.get("usepam"), "yes");
        assert_eq!(s.get("kbdinteractiveauthentication"), "no");
        assert_eq!(
            s.get("authenticationmethods"),
            "publickey,keyboard-interactive"
        );
        assert_eq!(s.get("passwordauthentication"), "yes");
        assert!(s.has_match);
        let _ = fs::remove_dir_all(&root);
    }

    fn texts(list: &[(String, String)]) -> Vec<&str> {
        list.iter().map(|(t, _)| t.as_str()).collect()
    }

    /// The stack is an error that names `line` ("can succeed without the code", or "skipped" when
    /// the typical case already skips pam_totp), and `line` is warned about as a line that can
    /// skip the code.
    fn assert_skippable(files: &[(&str, &str)], service: &str, line: &str) {
        let (v, _) = judge(files, service);
        let (errors, warnings) = (texts(&v.errors), texts(&v.warnings));
        assert!(
            errors.iter().any(|t| t.contains(line)
                && (t.contains("can succeed without the code") || t.contains("skipped"))),
            "{service}: {errors:?}"
        );
        assert!(
            warnings
                .iter()
                .any(|t| t.contains(line) && t.contains("can skip the code")),
            "{service}: {warnings:?}"
        );
    }

    /// Neither an error nor a warning for the stack.
    fn assert_no_finding(files: &[(&str, &str)], service: &str) {
        let (v, _) = judge(files, service);
        assert!(v.errors.is_empty(), "{service}: {:?}", v.errors);
        assert!(v.warnings.is_empty(), "{service}: {:?}", v.warnings);
    }

    #[test]
    fn given_sufficient_pam_succeed_if_before_the_code_then_the_stack_can_skip_it() {
        assert_skippable(
            &[
                ("common-auth", DEBIAN_COMMON_AUTH),
                (
                    "sudo",
                    "auth sufficient pam_succeed_if.so user ingroup sudo
@include common-auth
",
                ),
            ],
            "sudo",
            "pam_succeed_if.so at sudo:1",
        );
    }

    #[test]
    fn given_a_success_done_bracket_on_pam_exec_before_the_code_then_the_stack_can_skip_it() {
        assert_skippable(
            &[
                ("common-auth", DEBIAN_COMMON_AUTH),
                (
                    "login",
                    "auth [success=done default=ignore] pam_exec.so /usr/local/bin/check
                     @include common-auth
",
                ),
            ],
            "login",
            "pam_exec.so at login:1",
        );
    }

    #[test]
    fn given_real_world_alternatives_as_sufficient_in_sudo_then_each_can_skip_the_code() {
        for m in [
            "pam_u2f.so cue",
            "pam_ssh_agent_auth.so file=/etc/keys",
            "pam_fprintd.so",
        ] {
            let sudo = format!(
                "auth sufficient {m}
@include common-auth
"
            );
            let name = m.split(' ').next().unwrap();
            assert_skippable(
                &[("common-auth", DEBIAN_COMMON_AUTH), ("sudo", &sudo)],
                "sudo",
                &format!("{name} at sudo:1"),
            );
        }
    }

    #[test]
    fn given_sufficient_pam_permit_before_the_code_then_the_stack_can_skip_it() {
        assert_skippable(
            &[(
                "login",
                "auth sufficient pam_permit.so
auth requisite pam_unix.so
                 auth required pam_totp.so
",
            )],
            "login",
            "pam_permit.so at login:1",
        );
    }

    #[test]
    fn given_a_jump_over_the_code_by_another_module_then_the_stack_can_skip_it() {
        // Password and U2F key, and the key's success jumps over the code.
        assert_skippable(
            &[(
                "sshd",
                "auth requisite pam_unix.so
auth [success=1 default=ignore] pam_u2f.so
                 auth required pam_totp.so
auth required pam_permit.so
",
            )],
            "sshd",
            "pam_u2f.so at sshd:2",
        );
        // A failure that jumps (here: whatever pam_foo answers but success).
        assert_skippable(
            &[(
                "login",
                "auth requisite pam_unix.so
auth [success=ok default=1] pam_foo.so
                 auth required pam_totp.so
",
            )],
            "login",
            "pam_foo.so at login:2",
        );
    }

    #[test]
    fn given_sufficient_pam_rootok_in_su_then_no_finding() {
        assert_no_finding(
            &[
                ("common-auth", DEBIAN_COMMON_AUTH),
                (
                    "su",
                    "auth sufficient pam_rootok.so\n@include common-auth\n",
                ),
                ("su-l", "auth include su\n"),
            ],
            "su-l",
        );
    }

    #[test]
    fn given_sufficient_pam_rootok_in_sshd_then_the_stack_can_skip_the_code() {
        // sshd runs PAM as root for every user: pam_rootok succeeds for everyone.
        assert_skippable(
            &[
                ("common-auth", DEBIAN_COMMON_AUTH),
                (
                    "sshd",
                    "auth sufficient pam_rootok.so
@include common-auth
",
                ),
            ],
            "sshd",
            "pam_rootok.so at sshd:1",
        );
    }

    #[test]
    fn given_optional_and_required_helpers_around_the_code_then_no_finding() {
        assert_no_finding(
            &[(
                "login",
                "auth optional pam_faildelay.so delay=3000000
                 auth required pam_env.so
auth requisite pam_unix.so
                 auth required pam_succeed_if.so uid >= 1000
auth required pam_totp.so
                 auth optional pam_gnome_keyring.so
auth optional pam_cap.so
",
            )],
            "login",
        );
    }

    #[test]
    fn given_pam_totp_failure_mapped_to_ignore_then_the_stack_can_succeed_without_the_code() {
        let (v, _) = judge(
            &[(
                "login",
                "auth requisite pam_unix.so
                 auth [success=ok authinfo_unavail=ignore default=die] pam_totp.so
",
            )],
            "login",
        );
        assert!(
            texts(&v.errors)
                .iter()
                .any(|t| t.contains("can succeed without the code")
                    && t.contains("PAM_AUTHINFO_UNAVAIL")),
            "{:?}",
            v.errors
        );
    }

    /// The findings of `check_pam` on a root with these pam.d files (no module installed).
    fn pam_findings(files: &[(&str, &str)]) -> Vec<Finding> {
        let root = root_with(files);
        let r = check_pam(
            &root,
            Path::new("/var/lib/pam-totp"),
            Path::new("/nonexistent"),
        );
        let _ = fs::remove_dir_all(&root);
        r.section.findings
    }

    #[test]
    fn given_dash_auth_with_pam_totp_missing_then_an_error_and_no_ok_for_the_stack() {
        let f = pam_findings(&[(
            "login",
            "auth requisite pam_unix.so
-auth required pam_totp.so
",
        )]);
        assert!(
            f.iter().any(|f| f.level == Level::Error
                && f.text.contains("login:2")
                && f.text.contains("no code is asked")),
            "{f:?}"
        );
        assert!(!f.iter().any(|f| f.level == Level::Ok), "{f:?}");
    }

    #[test]
    fn given_a_stack_that_can_skip_the_code_then_doctor_fails() {
        let f = pam_findings(&[(
            "login",
            "auth sufficient pam_u2f.so
auth requisite pam_unix.so
auth required pam_totp.so
",
        )]);
        assert!(f.iter().any(|f| f.level == Level::Error), "{f:?}");
        assert!(!f.iter().any(|f| f.level == Level::Ok), "{f:?}");
    }

    /// A private state directory with alice's active record and this state.
    fn state_dir_with(state: &store::State) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pam-totp-doctor-state-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        let st = Store::create(&dir, 0).unwrap();
        let lock = st.lock("alice").unwrap();
        lock.write_record(&store::Record {
            user: "alice".into(),
            status: Status::Active,
            replaces_active: false,
            secret: pam_totp::secret::Secret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
                .unwrap(),
            params: Params::default(),
            issuer: "test".into(),
            created: Some(1_700_000_000),
            recovery: vec![format!("sha256:0011223344556677:{}", "ab".repeat(32))],
        })
        .unwrap();
        lock.replace_state(state).unwrap();
        dir
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn given_a_state_from_a_clock_a_day_ahead_then_an_error_with_reset_clock() {
        let later = NOW + 86_400;
        let dir = state_dir_with(&store::State {
            last_step: Some(Params::default().step_at(later)),
            last_success: Some(store::LastSuccess {
                time: later,
                rhost: None,
            }),
            ..Default::default()
        });
        let (s, _) = check_state(&dir, NOW, true);
        let _ = fs::remove_dir_all(&dir);
        let hit = s
            .findings
            .iter()
            .find(|f| {
                f.level == Level::Error && f.text.contains("alice") && f.text.contains("ahead")
            })
            .unwrap_or_else(|| panic!("{:?}", s.findings));
        assert!(hit.text.contains("last success"), "{}", hit.text);
        assert!(
            hit.fix
                .as_deref()
                .unwrap_or("")
                .contains("pam-totp unlock --reset-clock alice"),
            "{hit:?}"
        );
    }

    #[test]
    fn given_a_state_of_now_then_no_clock_finding() {
        let dir = state_dir_with(&store::State {
            last_step: Some(Params::default().step_at(NOW)),
            ..Default::default()
        });
        let (s, _) = check_state(&dir, NOW, true);
        let _ = fs::remove_dir_all(&dir);
        assert!(
            !s.findings.iter().any(|f| f.level >= Level::Warn),
            "{:?}",
            s.findings
        );
    }

    #[test]
    fn given_stray_temp_files_then_a_warning_with_count_names_and_fix() {
        let dir = state_dir_with(&store::State::default());
        for n in [
            ".alice.toml.tmp",
            ".alice.state.tmp",
            ".bob.state.tmp",
            ".carol.toml.tmp",
        ] {
            fs::write(dir.join("users").join(n), "x").unwrap();
        }
        let (s, _) = check_state(&dir, NOW, true);
        let _ = fs::remove_dir_all(&dir);
        let hit = s
            .findings
            .iter()
            .find(|f| f.level == Level::Warn && f.text.contains("4 leftover temp files"))
            .unwrap_or_else(|| panic!("{:?}", s.findings));
        assert!(hit.text.contains("users/.alice.state.tmp"), "{}", hit.text);
        assert!(hit.text.contains("and 1 more"), "{}", hit.text);
        let fix = hit.fix.as_deref().unwrap_or("");
        assert!(
            fix.contains("rm") && fix.contains("pam-totp unlock"),
            "{fix}"
        );
        // Reported once, not again as unknown files.
        assert!(
            !s.findings
                .iter()
                .any(|f| f.text.contains("is not a record")),
            "{:?}",
            s.findings
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*.conf", "10-a.conf"));
        assert!(!wildcard("*.conf", "10-a.conf.bak"));
        assert!(wildcard("a?c", "abc"));
    }
}
