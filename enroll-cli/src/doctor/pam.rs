//! The PAM stacks section: every service in pam.d that loads pam_totp.so, its options, the
//! module file, and the verdict on its `auth` stack.

use super::pam_stack::{
    is_password, is_totp, module_base, parse_pam, rules, PamConfig, RawLine, Rule,
};
use super::report::Section;
use super::simulate::judge_stack;
use pam_totp::options::Options;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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

pub(super) struct PamResult {
    pub(super) section: Section,
    /// Some stack loads pam_totp.
    pub(super) module_used: bool,
    /// The sshd service loads pam_totp; and its stack has no password module (key + code).
    pub(super) sshd_loads: bool,
    pub(super) sshd_code_only: bool,
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

pub(super) fn check_pam(root: &Path, dir: &Path, policy: &Path) -> PamResult {
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
                    let builtin = Options::default();
                    if o.dir != builtin.dir
                        || o.policy != builtin.policy
                        || o.window != builtin.window
                    {
                        s.warn(
                            format!(
                                "{n}: {} uses dir={} policy={} window={}, but self-service \
                                 (pam-totp run by users) uses the built-in {}, {} and window={}: \
                                 users would turn on or off a second factor this stack does not \
                                 read, or have codes judged differently",
                                r.at(),
                                o.dir.display(),
                                o.policy.display(),
                                o.window,
                                builtin.dir.display(),
                                builtin.policy.display(),
                                builtin.window
                            ),
                            "use the built-in paths and window, or turn self-service off: \
                             pam-totp policy self-service off",
                        );
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::{Finding, Level};
    use crate::doctor::testutil::root_with;

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
}
