//! The policy file: does it parse, is it trusted, what does it require.

use super::report::Section;
use super::store_fix;
use pam_totp::policy::Policy;
use pam_totp::store;
use pam_totp::timefmt;
use std::path::Path;

pub(super) fn check_policy(path: &Path, now: u64) -> (Section, Option<Policy>) {
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
    t.push_str(if p.self_service {
        ", self-service on (users turn their own second factor on and off)"
    } else {
        ", self-service off"
    });
    t
}
