//! sshd's settings (`sshd -T` when it works, else `sshd_config` and its `Include`s) against the
//! PAM stack: does every way in reach the code prompt.

use super::pam::PamResult;
use super::report::Section;
use super::run_cmd;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

pub(super) fn check_sshd(root: &Path, pam: &PamResult, commands: bool) -> Section {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::testutil::root_with;

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
    #[test]
    fn wildcards() {
        assert!(wildcard("*.conf", "10-a.conf"));
        assert!(!wildcard("*.conf", "10-a.conf.bak"));
        assert!(wildcard("a?c", "abc"));
    }
}
