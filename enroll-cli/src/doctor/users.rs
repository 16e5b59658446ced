//! Users the policy requires who are not enrolled, from `etc/passwd` and `etc/group`.

use super::report::Section;
use super::state::Enrolled;
use pam_totp::policy::Policy;
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

pub(super) fn check_users(
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
