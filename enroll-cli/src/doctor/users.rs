//! Users the policy requires who are not enrolled, from `etc/passwd` and `etc/group`.

use super::report::Section;
use super::state::Enrolled;
use pam_totp::next_login::{next_login, Enrolment, NextLogin};
use pam_totp::policy::Policy;
use pam_totp::sys::System;
use pam_totp::timefmt;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

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

/// `nss` is the user database the module asks (given only when checking `/`): it tells about
/// required users who are not in etc/passwd. What is said of each required user who is not
/// enrolled is [`next_login`]'s verdict, the module's own.
pub(super) fn check_users(
    root: &Path,
    policy: Option<&Policy>,
    enrolled: Option<&Enrolled>,
    nss: Option<&dyn System>,
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
        candidates
            .entry(u.clone())
            .or_insert_with(|| nss.and_then(|sys| sys.groups_of(u).ok().flatten()));
    }
    let mut missing = 0;
    for (user, groups) in &candidates {
        let enrolment = enrolled.get(user).copied().unwrap_or(Enrolment::None);
        let next = next_login(user, enrolment, policy, groups.as_deref(), now);
        // Enrolled, or not required: nothing to say.
        let Some(by) = next.required_by() else {
            continue;
        };
        missing += 1;
        let pending = if enrolled.contains_key(user) {
            format!(" (a pending record exists: pam-totp activate {user})")
        } else {
            String::new()
        };
        let unknown = match (groups, nss) {
            (Some(_), _) => "",
            (None, Some(_)) => " (unknown to the user database: a typo?)",
            (None, None) => " (not in etc/passwd: from another user database, or a typo?)",
        };
        let what = format!("{user} is required ({by}) but not enrolled{pending}{unknown}");
        match &next {
            NextLogin::EnrolAtLogin { .. } => {
                s.note(format!("{what}: {user} {}", next.describe()));
            }
            NextLogin::Grace { until, .. } => s.warn(
                format!(
                    "{what}: logins are let in with a notice until {}, then denied",
                    timefmt::date(*until)
                ),
                format!("pam-totp enroll {user}"),
            ),
            _ => {
                // Denied. With enroll_at_login on, because the user database does not know
                // the user.
                let instead = if policy.enroll_at_login {
                    "set grace_until, or check the name (enrolment at login is offered only to \
                     users the user database knows)"
                } else {
                    "set grace_until, or enable enroll_at_login in the policy"
                };
                s.error(
                    format!("{what}: every login through pam_totp is denied"),
                    format!("pam-totp enroll {user}; or exempt {user} (exempt_users), {instead}"),
                );
            }
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
    use crate::doctor::check;
    use crate::doctor::report::{Finding, Level};
    use crate::doctor::testutil::root_with;
    use pam_totp::sys::System;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const NOW: u64 = 1_800_000_000;

    /// A clock at [`NOW`]; doctor asks nothing else of it for a root other than `/`.
    struct At;

    impl System for At {
        fn now(&self) -> u64 {
            NOW
        }
        fn groups_of(&self, _: &str) -> Result<Option<Vec<String>>, String> {
            unreachable!("the user database is asked only for /")
        }
        fn canonical_name(&self, _: &str) -> Result<Option<String>, String> {
            unreachable!()
        }
        fn hostname(&self) -> String {
            unreachable!()
        }
    }

    /// The findings of the users section for this policy, on a root whose etc/passwd and
    /// etc/group know alice (and root), with nobody enrolled.
    fn user_findings(policy: &str) -> Vec<Finding> {
        let root = root_with(&[]);
        fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n",
        )
        .unwrap();
        fs::write(
            root.join("etc/group"),
            "root:x:0:\nalice:x:1000:\nstaff:x:50:alice\n",
        )
        .unwrap();
        let conf = root.join("etc/pam-totp");
        fs::create_dir_all(&conf).unwrap();
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o755)).unwrap();
        let policy_path = conf.join("policy.toml");
        fs::write(&policy_path, format!("version = 1\n{policy}")).unwrap();
        fs::set_permissions(&policy_path, fs::Permissions::from_mode(0o644)).unwrap();
        let report = check(&root.join("var/lib/pam-totp"), &policy_path, &root, &At);
        let _ = fs::remove_dir_all(&root);
        let policy_section = &report.sections[1];
        assert!(
            policy_section
                .findings
                .iter()
                .all(|f| f.level < Level::Warn),
            "{policy_section:?}"
        );
        let users = report.sections.last().unwrap();
        assert_eq!(users.title, "Users the policy requires");
        users.findings.clone()
    }

    /// The finding about `user`: at `level`, and saying each of `words`.
    fn about<'a>(findings: &'a [Finding], user: &str, level: Level, words: &[&str]) -> &'a Finding {
        let f = findings
            .iter()
            .find(|f| f.text.starts_with(&format!("{user} is required")))
            .unwrap_or_else(|| panic!("nothing about {user}: {findings:?}"));
        assert_eq!(f.level, level, "{f:?}");
        assert!(words.iter().all(|w| f.text.contains(w)), "{words:?}: {f:?}");
        f
    }

    #[test]
    #[ignore = "needs root (doctor trusts only root-owned files): run by `make test`"]
    fn given_enroll_at_login_during_grace_then_the_user_is_asked_to_enrol_not_let_in() {
        // The module offers enrolment first (a user the user database knows), grace or not.
        let f = user_findings(
            "require_all = true\nexempt_users = [\"root\"]\nenroll_at_login = true\n\
             grace_until = 2099-01-01\n",
        );
        let alice = about(
            &f,
            "alice",
            Level::Note,
            &[
                "alice is asked to enrol at the next login",
                "may skip until 2099-01-01",
            ],
        );
        assert!(!alice.text.contains("let in with a notice"), "{alice:?}");
    }

    #[test]
    #[ignore = "needs root (doctor trusts only root-owned files): run by `make test`"]
    fn given_enroll_at_login_and_a_user_unknown_to_etc_passwd_then_denied() {
        // Enrolment at login is never offered to a user the user database does not know.
        let f = user_findings("require_users = [\"carol\"]\nenroll_at_login = true\n");
        let carol = about(
            &f,
            "carol",
            Level::Error,
            &[
                "not in etc/passwd",
                "every login through pam_totp is denied",
            ],
        );
        let fix = carol.fix.as_deref().unwrap_or("");
        assert!(!fix.contains("enable enroll_at_login"), "{carol:?}");
    }

    #[test]
    #[ignore = "needs root (doctor trusts only root-owned files): run by `make test`"]
    fn given_grace_without_enroll_at_login_then_a_warning_with_the_date() {
        let f = user_findings("require_groups = [\"staff\"]\ngrace_until = 2099-01-01\n");
        let words = [
            "(require_groups:staff)",
            "let in with a notice until 2099-01-01, then denied",
        ];
        about(&f, "alice", Level::Warn, &words);
        // After the grace: denied.
        let f = user_findings("require_groups = [\"staff\"]\ngrace_until = 2020-01-01\n");
        about(&f, "alice", Level::Error, &[]);
    }
}
