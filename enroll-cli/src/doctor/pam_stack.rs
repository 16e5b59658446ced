//! PAM configuration as libpam reads it: the control table (`required`, `[value=action]`...),
//! the parser of pam.d files, and the `auth` stack of a service with its includes and substacks
//! expanded.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

/// What PAM does with a module's result (libpam's actions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Action {
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
pub(super) struct Ret(usize);

impl Ret {
    pub(super) const SUCCESS: Ret = Ret(0);
    pub(super) const SERVICE_ERR: Ret = Ret(3);
    pub(super) const AUTH_ERR: Ret = Ret(7);
    pub(super) const AUTHINFO_UNAVAIL: Ret = Ret(9);
    pub(super) const USER_UNKNOWN: Ret = Ret(10);
    pub(super) const NEW_AUTHTOK_REQD: Ret = Ret(12);
    pub(super) const IGNORE: Ret = Ret(25);

    /// `PAM_AUTH_ERR`...
    pub(super) fn name(self) -> String {
        format!("PAM_{}", PAM_RETURNS[self.0].to_ascii_uppercase())
    }
}

/// A line's control: the action for each return value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Control {
    actions: Box<[Action; PAM_RETURNS.len()]>,
}

impl Control {
    pub(super) fn action(&self, r: Ret) -> Action {
        self.actions[r.0]
    }

    /// One result per distinct outcome: success, then a failure value for each distinct action
    /// the failures get (for a module whose answer is not known).
    pub(super) fn distinct_results(&self) -> Vec<Ret> {
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
    pub(super) fn keyword(kw: &str) -> Option<Control> {
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
    pub(super) fn brackets(text: &str) -> std::result::Result<Control, String> {
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
pub(super) struct Rule {
    /// File name relative to pam.d (or the path as written), and line number: the rule's id.
    pub(super) file: String,
    pub(super) line: usize,
    pub(super) control_text: String,
    pub(super) control: Control,
    pub(super) module: String,
    pub(super) args: Vec<String>,
    /// `-auth`: a missing module is skipped silently.
    pub(super) dash: bool,
}

impl Rule {
    pub(super) fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
    pub(super) fn id(&self) -> (String, usize) {
        (self.file.clone(), self.line)
    }
    /// A `pam_totp.so split` line (SPEC §9): it takes "password + code" apart and judges no
    /// code; it answers `PAM_IGNORE` when it hands both parts on, never `PAM_SUCCESS`.
    pub(super) fn is_split(&self) -> bool {
        is_totp(&self.module) && self.args.iter().any(|a| a == "split")
    }
    /// A pam_totp line that checks the code (asked, or left by a split line).
    pub(super) fn judges_code(&self) -> bool {
        is_totp(&self.module) && !self.is_split()
    }
}

#[derive(Clone, Debug)]
pub(super) enum Item {
    Module(Rule),
    /// `auth substack FILE`: done/die inside end only the substack.
    Substack(Vec<Item>),
}

/// A line of a PAM configuration file, as written.
#[derive(Clone, Debug)]
pub(super) enum RawLine {
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
pub(super) fn pam_tokens(line: &str) -> Vec<String> {
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
pub(super) fn parse_pam(text: &str) -> Vec<RawLine> {
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

pub(super) fn module_base(module: &str) -> &str {
    module.rsplit('/').next().unwrap_or(module)
}

pub(super) fn is_totp(module: &str) -> bool {
    matches!(module_base(module), "pam_totp.so" | "libpam_totp.so")
}

/// Modules that check a password (or another first factor that answers the password prompt).
pub(super) fn is_password(module: &str) -> bool {
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
pub(super) struct PamConfig {
    pub(super) root: PathBuf,
    pub(super) problems: Vec<String>,
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
    pub(super) fn auth_stack(&mut self, name: &str, from: &str, depth: usize) -> Vec<Item> {
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

pub(super) fn rules(items: &[Item]) -> Vec<&Rule> {
    let mut out = Vec::new();
    for i in items {
        match i {
            Item::Module(r) => out.push(r),
            Item::Substack(sub) => out.extend(rules(sub)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
