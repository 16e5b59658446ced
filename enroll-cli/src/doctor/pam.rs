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
        // Every pam_totp line, and those that judge the code (not `split`, SPEC §9).
        let loaded: Vec<&Rule> = all.iter().copied().filter(|r| is_totp(&r.module)).collect();
        if loaded.is_empty() {
            continue;
        }
        let totp: Vec<&Rule> = loaded.iter().copied().filter(|r| r.judges_code()).collect();
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
        one_field_checks(&mut s, n, &loaded);
        // A pam_totp line of this stack that cannot work (bad options, module file missing).
        let mut module_broken = false;
        for r in &loaded {
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
                         prompt=, split, debug; a split line takes neither window= nor prompt=)",
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
                let splits: Vec<String> = loaded
                    .iter()
                    .filter(|r| r.is_split())
                    .map(|r| r.at())
                    .collect();
                if splits.is_empty() {
                    s.ok(format!(
                        "{n}: pam_totp.so ({where_}) runs after {}, and a wrong password stops \
                         before the code prompt",
                        pw.join(", ")
                    ));
                } else {
                    s.ok(format!(
                        "{n}: pam_totp.so split at {} hands the code typed after the password \
                         to pam_totp.so ({where_}), which runs after {}: a wrong password stops \
                         before the code is judged",
                        splits.join(", "),
                        pw.join(", ")
                    ));
                }
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

/// Services that ask PAM once and answer every prompt with the one password typed (SPEC §9).
const ONE_FIELD_SERVICES: &[&str] = &[
    "dovecot",
    "imap",
    "pop",
    "pop3",
    "cyrus",
    "courier",
    "vsftpd",
    "proftpd",
    "pure-ftpd",
    "openvpn",
    "strongswan",
    "ppp",
    "radiusd",
    "smtp",
];

/// A one-field service whose stack judges a code without a `split` line: the daemon answers the
/// code prompt with the password, so every correct-password login counts a failure and locks the
/// user's second factor (ssh included). And a split line and the line that judges its code must
/// read the same records and policy, or the split line decides from other files who types a code.
fn one_field_checks(s: &mut Section, service: &str, loaded: &[&Rule]) {
    let split: Vec<&&Rule> = loaded.iter().filter(|r| r.is_split()).collect();
    if split.is_empty() {
        if ONE_FIELD_SERVICES.contains(&service) && loaded.iter().any(|r| r.judges_code()) {
            s.warn(
                format!(
                    "{service}: pam_totp.so without a `split` line: {service} answers the code \
                     prompt with the password, so every login of an enrolled user is a wrong \
                     code and a mail or FTP client that polls locks the user's second factor"
                ),
                "use the split layout: `auth requisite pam_totp.so split`, `auth requisite \
                 pam_unix.so use_first_pass`, `auth required pam_totp.so` (README: one password \
                 field)",
            );
        }
        return;
    }
    let files = |r: &Rule| Options::parse(&r.args).ok().map(|o| (o.dir, o.policy));
    let judged: Vec<_> = loaded.iter().filter(|r| r.judges_code()).collect();
    for sp in &split {
        for j in &judged {
            if let (Some(a), Some(b)) = (files(sp), files(j)) {
                if a != b {
                    s.error(
                        format!(
                            "{service}: pam_totp.so split at {} reads dir={} policy={}, but the \
                             line that judges its code at {} reads dir={} policy={}: the split \
                             line decides from other records who types a code",
                            sp.at(),
                            a.0.display(),
                            a.1.display(),
                            j.at(),
                            b.0.display(),
                            b.1.display()
                        ),
                        "give both lines the same dir= and policy= (or none)",
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::{Finding, Level};
    use crate::doctor::testutil::root_with;
    use std::os::unix::fs::PermissionsExt;

    /// The findings of `check_pam` on a root with these pam.d files (no module installed).
    fn pam_findings(files: &[(&str, &str)]) -> Vec<Finding> {
        findings_on(root_with(files))
    }

    /// The same with pam_totp.so installed root-owned (trusted only when the test runs as root).
    fn pam_findings_installed(files: &[(&str, &str)]) -> Vec<Finding> {
        let root = root_with(files);
        let module = root.join("lib/security/pam_totp.so");
        fs::create_dir_all(module.parent().unwrap()).unwrap();
        fs::write(&module, "").unwrap();
        fs::set_permissions(&module, fs::Permissions::from_mode(0o644)).unwrap();
        findings_on(root)
    }

    fn findings_on(root: PathBuf) -> Vec<Finding> {
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

    const SPLIT_LAYOUT: &str = "auth requisite pam_totp.so split
auth requisite pam_unix.so use_first_pass
auth required pam_totp.so
";

    /// The finding of `level` whose text contains every one of `words`.
    fn find<'f>(f: &'f [Finding], level: Level, words: &[&str]) -> &'f Finding {
        f.iter()
            .find(|x| x.level == level && words.iter().all(|w| x.text.contains(w)))
            .unwrap_or_else(|| panic!("no {level:?} with {words:?} in {f:#?}"))
    }

    /// The findings for a `dovecot` service with this stack.
    fn dovecot(stack: &str) -> Vec<Finding> {
        pam_findings(&[("dovecot", stack)])
    }

    /// `finding`'s fix says `text`.
    fn assert_fix(finding: &Finding, text: &str) {
        let fix = finding.fix.as_deref().unwrap_or("");
        assert!(
            fix.contains(text),
            "{text:?} not in the fix of {finding:#?}"
        );
    }

    /// An error with `words` whose fix says `fix`, and no ok line.
    fn assert_error(f: &[Finding], words: &[&str], fix: &str) {
        assert_fix(find(f, Level::Error, words), fix);
        assert!(!f.iter().any(|x| x.level == Level::Ok), "{f:#?}");
    }

    /// The errors but the one for the module file, which these roots do not install.
    fn errors(f: &[Finding]) -> Vec<&Finding> {
        f.iter()
            .filter(|x| x.level == Level::Error && !x.text.contains("is not installed"))
            .collect()
    }

    #[test]
    #[ignore = "needs root (doctor trusts only root-owned files): run by `make test`"]
    fn given_the_split_layout_then_ok_and_no_error() {
        let f = pam_findings_installed(&[("dovecot", SPLIT_LAYOUT)]);
        assert!(
            !f.iter().any(|x| x.level >= Level::Warn),
            "no warning or error: {f:#?}"
        );
        find(
            &f,
            Level::Ok,
            &[
                "dovecot: pam_totp.so split at dovecot:1",
                "pam_totp.so (dovecot:3 `required`)",
                "after pam_unix.so at dovecot:2",
            ],
        );
    }

    #[test]
    fn given_split_without_a_password_module_after_it_then_error() {
        let f = dovecot(
            "auth requisite pam_totp.so split
auth required pam_totp.so
",
        );
        assert_error(
            &f,
            &["dovecot:1", "the split-off password is never checked"],
            "pam_unix.so use_first_pass",
        );
    }

    #[test]
    fn given_split_without_a_later_pam_totp_line_then_error() {
        // The password alone with any 6 digits logs in.
        let f = dovecot(
            "auth requisite pam_totp.so split
auth requisite pam_unix.so use_first_pass
",
        );
        assert_error(
            &f,
            &[
                "dovecot:1",
                "the code typed after the password is never checked",
                "the password alone with any 6 digits logs in",
            ],
            "`auth required pam_totp.so` after the password module",
        );
        assert_eq!(errors(&f).len(), 1, "{f:#?}");
    }

    #[test]
    fn given_split_and_a_password_module_without_use_first_pass_then_warning() {
        let f = dovecot(
            "auth requisite pam_totp.so split
auth requisite pam_unix.so nullok
auth required pam_totp.so
",
        );
        let w = find(
            &f,
            Level::Warn,
            &[
                "pam_unix.so at dovecot:2",
                "neither use_first_pass nor try_first_pass",
            ],
        );
        assert_fix(w, "`auth requisite pam_unix.so nullok use_first_pass`");
        // The split line is not a second code check, and runs before the password by design.
        assert!(errors(&f).is_empty(), "{f:#?}");
        assert_eq!(
            f.iter().filter(|x| x.level == Level::Warn).count(),
            1,
            "{f:#?}"
        );
    }

    #[test]
    fn given_a_split_line_after_the_password_module_then_error() {
        // pam_unix saw password+code: no password module after the split line.
        let f = dovecot(
            "auth requisite pam_unix.so use_first_pass
auth requisite pam_totp.so split
auth required pam_totp.so
",
        );
        assert_error(
            &f,
            &[
                "dovecot:2",
                "the split-off password is never checked",
                "pam_unix.so at dovecot:1 runs before it",
            ],
            "after the split line at dovecot:2",
        );
    }

    #[test]
    fn given_two_split_lines_then_warning() {
        let f = pam_findings(&[
            ("common-split", "auth requisite pam_totp.so split\n"),
            ("dovecot", &format!("@include common-split\n{SPLIT_LAYOUT}")),
        ]);
        find(
            &f,
            Level::Warn,
            &["dovecot: pam_totp.so split is loaded 2 times (common-split:1, dovecot:2)"],
        );
        assert!(errors(&f).is_empty(), "{f:#?}");
    }

    #[test]
    fn given_a_split_line_with_window_then_error() {
        let f = dovecot(&SPLIT_LAYOUT.replacen("split", "split window=2", 1));
        let e = find(&f, Level::Error, &["dovecot:1", "PAM_SERVICE_ERR"]);
        assert_fix(e, "split");
    }

    #[test]
    fn given_a_one_field_service_judging_a_code_without_split_then_warning() {
        let f = dovecot(
            "auth requisite pam_unix.so
auth required pam_totp.so
",
        );
        assert_fix(
            find(&f, Level::Warn, &["dovecot", "without a `split` line"]),
            "pam_totp.so split",
        );
    }

    #[test]
    fn given_split_and_judging_lines_with_other_files_then_error() {
        let f = dovecot(
            "auth requisite pam_totp.so split dir=/srv/totp
auth requisite pam_unix.so use_first_pass
auth required pam_totp.so
",
        );
        assert_error(
            &f,
            &["dovecot:1", "dir=/srv/totp", "decides from other records"],
            "same dir= and policy=",
        );
    }
}
