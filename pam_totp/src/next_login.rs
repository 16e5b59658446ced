//! What a user's next login does (SPEC §3 steps 2–5), decided in one place: by the module for
//! the login itself, and by `status`, `disable` and `doctor` to tell an admin what will happen.
#![forbid(unsafe_code)]

use crate::policy::{Policy, RequiredBy};
use crate::store::{Record, Status};

/// Whether the user has a record, as far as the next login is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enrolment {
    /// An active record: the user is asked for a code.
    Active,
    /// A pending record written by `enroll --force` over an active one: asked, then denied.
    ReplacementPending,
    /// No record, or a pending one that replaces nothing: not enrolled.
    None,
}

impl Enrolment {
    pub fn of(record: Option<&Record>) -> Enrolment {
        match record {
            Some(r) if r.status == Status::Active => Enrolment::Active,
            Some(r) if r.replaces_active => Enrolment::ReplacementPending,
            _ => Enrolment::None,
        }
    }
}

/// The next login of one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextLogin {
    /// Asked for a code from the app (or a recovery code).
    AskCode,
    /// Asked, then denied until the new key is activated.
    DeniedUntilActivated,
    /// Not enrolled and not required: the module returns PAM_IGNORE.
    NoCode,
    /// Required and not enrolled, shown a new key to enrol at login (during grace, an empty
    /// answer skips it until `grace`).
    EnrolAtLogin { by: RequiredBy, grace: Option<u64> },
    /// Required and not enrolled, let in with a notice until `until`.
    Grace { by: RequiredBy, until: u64 },
    /// Required and not enrolled: asked, then denied.
    Denied { by: RequiredBy },
}

/// The rule. `groups` is the user's groups from the user database, `None` for a user it does
/// not know (such a user is never offered enrolment at login); `now` in unix seconds.
pub fn next_login(
    user: &str,
    enrolment: Enrolment,
    policy: &Policy,
    groups: Option<&[String]>,
    now: u64,
) -> NextLogin {
    match enrolment {
        Enrolment::Active => return NextLogin::AskCode,
        Enrolment::ReplacementPending => return NextLogin::DeniedUntilActivated,
        Enrolment::None => {}
    }
    let Some(by) = policy.required_by(user, groups) else {
        return NextLogin::NoCode;
    };
    let grace = policy.grace_at(now);
    if policy.enroll_at_login && groups.is_some() {
        return NextLogin::EnrolAtLogin { by, grace };
    }
    match grace {
        Some(until) => NextLogin::Grace { by, until },
        None => NextLogin::Denied { by },
    }
}

impl NextLogin {
    /// The policy rule that requires a code of the user, if that is what decides.
    pub fn required_by(&self) -> Option<&RequiredBy> {
        match self {
            NextLogin::EnrolAtLogin { by, .. }
            | NextLogin::Grace { by, .. }
            | NextLogin::Denied { by } => Some(by),
            _ => None,
        }
    }

    /// The grace deadline this login is shown (to skip enrolment, or to get in with a notice).
    pub fn grace_until(&self) -> Option<u64> {
        match self {
            NextLogin::Grace { until, .. } => Some(*until),
            NextLogin::EnrolAtLogin { grace, .. } => *grace,
            _ => None,
        }
    }

    /// The same login where enrolment at login is not offered (fleet mode, SPEC §11: a host
    /// could plant a key for every required user): its grace becomes a plain grace period,
    /// and without one the user is denied.
    pub fn without_enrolment_at_login(self) -> NextLogin {
        match self {
            NextLogin::EnrolAtLogin {
                by,
                grace: Some(until),
            } => NextLogin::Grace { by, until },
            NextLogin::EnrolAtLogin { by, grace: None } => NextLogin::Denied { by },
            other => other,
        }
    }

    /// Whether the login may end with the user let in (PAM_SUCCESS or PAM_IGNORE) without an
    /// already enrolled key: every case but asking for a code and denying.
    pub fn may_let_in_unenrolled(&self) -> bool {
        matches!(
            self,
            NextLogin::NoCode | NextLogin::EnrolAtLogin { .. } | NextLogin::Grace { .. }
        )
    }

    /// Whether a one-field service (SPEC §9) expects a code typed after this user's password:
    /// every login that asks for a code or denies. The others — no code needed, grace, and
    /// enrolment at login that may still be skipped — get the answer whole, as the password.
    pub fn expects_code_typed_ahead(&self) -> bool {
        match self {
            NextLogin::AskCode | NextLogin::DeniedUntilActivated | NextLogin::Denied { .. } => true,
            NextLogin::EnrolAtLogin { grace, .. } => grace.is_none(),
            NextLogin::NoCode | NextLogin::Grace { .. } => false,
        }
    }

    /// In words, for an admin: "is asked for a code", "is asked to enrol at the next login"...
    pub fn describe(&self) -> String {
        use crate::timefmt::date;
        match self {
            NextLogin::AskCode => "is asked for a code".into(),
            NextLogin::DeniedUntilActivated => {
                "is asked for a code and denied until the new key is activated".into()
            }
            NextLogin::NoCode => "logs in without a code".into(),
            NextLogin::EnrolAtLogin { grace: None, .. } => {
                "is asked to enrol at the next login".into()
            }
            NextLogin::EnrolAtLogin { grace: Some(g), .. } => format!(
                "is asked to enrol at the next login (may skip until {})",
                date(*g)
            ),
            NextLogin::Grace { until, .. } => {
                format!("is reminded to enrol and let in until {}", date(*until))
            }
            NextLogin::Denied { .. } => "cannot log in until enrolled".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        Policy::parse(&format!("version = 1\n{text}")).unwrap()
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn given_an_active_record_then_asked_whatever_the_policy() {
        let p = policy("require_all = true\nenroll_at_login = true\n");
        let g = vec!["alice".to_string()];
        assert_eq!(
            next_login("alice", Enrolment::Active, &p, Some(&g), NOW),
            NextLogin::AskCode
        );
        assert_eq!(
            next_login("alice", Enrolment::ReplacementPending, &p, Some(&g), NOW),
            NextLogin::DeniedUntilActivated
        );
    }

    #[test]
    fn given_enrol_at_login_and_grace_then_enrolment_comes_first() {
        let p = policy("require_all = true\nenroll_at_login = true\ngrace_until = 2099-01-01\n");
        let g = vec!["alice".to_string()];
        let next = next_login("alice", Enrolment::None, &p, Some(&g), NOW);
        assert!(
            matches!(
                next,
                NextLogin::EnrolAtLogin {
                    by: RequiredBy::All,
                    grace: Some(_)
                }
            ),
            "{next:?}"
        );
    }

    #[test]
    fn given_user_unknown_to_nss_then_never_offered_enrolment() {
        let p = policy("require_all = true\nenroll_at_login = true\n");
        assert_eq!(
            next_login("alice", Enrolment::None, &p, None, NOW),
            NextLogin::Denied {
                by: RequiredBy::All
            }
        );
    }

    #[test]
    fn given_grace_then_let_in_until_the_date_and_denied_after() {
        let p = policy("require_users = [\"alice\"]\ngrace_until = 2027-01-15T00:00:00Z\n");
        let g = p.grace_until.unwrap();
        assert!(matches!(
            next_login("alice", Enrolment::None, &p, None, g - 1),
            NextLogin::Grace { by: RequiredBy::User, until } if until == g
        ));
        assert!(matches!(
            next_login("alice", Enrolment::None, &p, None, g),
            NextLogin::Denied { .. }
        ));
        assert_eq!(
            next_login("bob", Enrolment::None, &p, None, g),
            NextLogin::NoCode
        );
    }

    #[test]
    fn given_no_enrolment_at_login_then_grace_or_denied_instead() {
        let by = RequiredBy::All;
        let skip = NextLogin::EnrolAtLogin {
            by: by.clone(),
            grace: Some(7),
        };
        assert_eq!(
            skip.without_enrolment_at_login(),
            NextLogin::Grace {
                by: by.clone(),
                until: 7
            }
        );
        let must = NextLogin::EnrolAtLogin {
            by: by.clone(),
            grace: None,
        };
        assert_eq!(must.without_enrolment_at_login(), NextLogin::Denied { by });
        assert_eq!(
            NextLogin::AskCode.without_enrolment_at_login(),
            NextLogin::AskCode
        );
    }

    #[test]
    fn given_no_requirement_then_no_code() {
        let p = policy("");
        let next = next_login("alice", Enrolment::None, &p, None, NOW);
        assert_eq!(next, NextLogin::NoCode);
        assert!(next.may_let_in_unenrolled() && next.required_by().is_none());
    }
}
