//! `pam-totp --store FILE status [USER]` and `list`: the store's rows (`pam_totp.status`), in
//! SPEC §5's field names where they apply, plus what only the fleet knows (the host of the
//! last success). Whether a user must use a code is each host's policy: not shown here.

use super::Fleet;
use crate::ctx;
use crate::error::Result;
use crate::output::{self, out, outln, print_json, time};
use pam_totp::escape::terminal_safe;
use pam_totp_store::UserStatus;
use serde::Serialize;

/// The status of one user in the store; `null` for what does not apply (state `none`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FleetStatus {
    pub user: String,
    /// `none`, `pending`, `active` or `locked`.
    pub state: String,
    /// A pending record of `enroll --force`: logins are denied until it is activated.
    pub replaces_active: Option<bool>,
    pub algorithm: Option<String>,
    pub digits: Option<u8>,
    pub period: Option<u32>,
    pub issuer: Option<String>,
    pub created: Option<String>,
    pub last_success: Option<LastSuccess>,
    /// Set only while locked.
    pub locked_until: Option<String>,
    pub failures: Option<u32>,
    pub recovery_codes_left: Option<u32>,
    pub last_step: Option<u64>,
    /// How far the phone's clock was off at the last accepted code (negative: behind).
    pub clock_offset_seconds: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastSuccess {
    pub time: String,
    /// The host (its role) that accepted the code.
    pub host: Option<String>,
    pub rhost: Option<String>,
}

impl FleetStatus {
    pub fn of(user: &str, row: Option<&UserStatus>) -> FleetStatus {
        let Some(r) = row else {
            return FleetStatus {
                user: user.to_string(),
                state: "none".into(),
                replaces_active: None,
                algorithm: None,
                digits: None,
                period: None,
                issuer: None,
                created: None,
                last_success: None,
                locked_until: None,
                failures: None,
                recovery_codes_left: None,
                last_step: None,
                clock_offset_seconds: None,
            };
        };
        let locked = r.locked && r.status == "active";
        FleetStatus {
            user: r.name.clone(),
            state: if locked {
                "locked".into()
            } else {
                r.status.clone()
            },
            replaces_active: Some(r.replaces_active),
            algorithm: Some(r.algorithm.clone()),
            digits: Some(r.digits),
            period: Some(r.period),
            issuer: Some(r.issuer.clone()),
            created: Some(time(r.created)),
            last_success: r.last_success_time.map(|t| LastSuccess {
                time: time(t),
                host: r.last_success_host.clone(),
                rhost: r.last_success_rhost.clone(),
            }),
            locked_until: r.locked.then(|| time(r.locked_until)),
            failures: Some(r.failures),
            recovery_codes_left: Some(r.recovery_left),
            last_step: r.last_step,
            clock_offset_seconds: r.last_offset.map(|o| o.saturating_mul(i64::from(r.period))),
        }
    }
}

/// The status for people; every value from the store passes through `terminal_safe` (user
/// names, issuer and rhost are chosen by others).
pub fn human(s: &FleetStatus) -> String {
    let mut t = String::new();
    let line =
        |t: &mut String, k: &str, v: &str| t.push_str(&format!("{k:<16}{}\n", terminal_safe(v)));
    line(&mut t, "User:", &s.user);
    let state = match s.state.as_str() {
        "none" => "none (no record in the store)".to_string(),
        "pending" if s.replaces_active == Some(true) => {
            "pending (re-enrolment: logins are denied on every host until it is activated)".into()
        }
        "pending" => "pending (not used for logins until it is activated)".into(),
        "locked" => format!(
            "locked after {} failed codes (pam-totp --store FILE unlock {} clears it)",
            s.failures.unwrap_or(0),
            s.user
        ),
        other => other.to_string(),
    };
    line(&mut t, "State:", &state);
    if s.state == "none" {
        return t;
    }
    let kind = match (&s.algorithm, s.digits, s.period) {
        (Some(a), Some(d), Some(p)) => format!("TOTP, {a}, {d} digits, {p} s"),
        _ => "-".into(),
    };
    line(&mut t, "Type:", &kind);
    line(&mut t, "Issuer:", s.issuer.as_deref().unwrap_or("-"));
    line(&mut t, "Created:", s.created.as_deref().unwrap_or("-"));
    line(
        &mut t,
        "Last success:",
        &last_success(s.last_success.as_ref()),
    );
    if let Some(words) = pam_totp::clock::phone_offset_words(&s.user, s.clock_offset_seconds) {
        line(&mut t, "Phone clock:", &words);
    }
    match (&s.locked_until, s.failures) {
        (Some(l), _) => line(&mut t, "Locked until:", l),
        (None, Some(n)) if n > 0 => {
            line(&mut t, "Failures:", &format!("{n} since the last success"))
        }
        _ => {}
    }
    line(
        &mut t,
        "Recovery codes:",
        &format!("{} left", s.recovery_codes_left.unwrap_or(0)),
    );
    line(
        &mut t,
        "Required:",
        "decided on each host by its policy (pam-totp policy show there)",
    );
    t
}

fn last_success(l: Option<&LastSuccess>) -> String {
    match l {
        None => "never".into(),
        Some(l) => {
            let mut s = l.time.clone();
            if let Some(h) = &l.host {
                s.push_str(&format!(" on {h}"));
            }
            if let Some(r) = &l.rhost {
                s.push_str(&format!(" from {r}"));
            }
            s
        }
    }
}

/// One line per user.
pub fn table(rows: &[FleetStatus]) -> String {
    let header = ["USER", "STATE", "TYPE", "RECOVERY", "LAST SUCCESS"];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|s| {
            [
                s.user.clone(),
                s.state.clone(),
                crate::status::type_cell(s.algorithm.as_deref(), s.digits, s.period),
                s.recovery_codes_left
                    .map_or_else(|| "-".into(), |n| n.to_string()),
                last_success(s.last_success.as_ref()),
            ]
            .iter()
            .map(|c| terminal_safe(c))
            .collect()
        })
        .collect();
    output::table(&header, &cells)
}

/// `status [USER] [--json]` and `list [--json]`.
pub fn run(f: &Fleet, user: Option<&str>, json: bool) -> Result<()> {
    let mut admin = f.admin()?;
    let Some(user) = user else {
        let rows = admin
            .status(None)
            .map_err(|e| f.fail("cannot list the records", e))?;
        let rows: Vec<FleetStatus> = rows
            .iter()
            .map(|r| FleetStatus::of(&r.name, Some(r)))
            .collect();
        if json {
            return print_json(&rows);
        }
        if rows.is_empty() {
            return outln!("No records in the fleet store.");
        }
        return out!("{}", table(&rows));
    };
    let user = ctx::check_user(user)?;
    let s = FleetStatus::of(&user, f.row(&mut admin, &user)?.as_ref());
    if json {
        return print_json(&s);
    }
    out!("{}", human(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row() -> UserStatus {
        UserStatus {
            name: "alice".into(),
            status: "active".into(),
            replaces_active: false,
            algorithm: "SHA1".into(),
            digits: 6,
            period: 30,
            issuer: "corp".into(),
            created: 1_700_000_000,
            last_step: Some(56_666_667),
            last_offset: Some(-1),
            failures: 2,
            locked_until: 0,
            locked: false,
            last_success_time: Some(1_700_000_100),
            last_success_host: Some("web-01".into()),
            last_success_rhost: Some("192.0.2.7\u{1b}[2J".into()),
            recovery_left: 9,
            db_time: 1_700_000_200,
        }
    }

    #[test]
    fn given_no_row_then_state_none_and_every_field_null() {
        let s = FleetStatus::of("bob", None);
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["state"], "none");
        assert!(j["algorithm"].is_null() && j["last_success"].is_null());
        assert_eq!(j.as_object().unwrap().len(), 14, "no field left out");
        assert_eq!(
            human(&s),
            "User:           bob\nState:          none (no record in the store)\n"
        );
    }

    #[test]
    fn given_an_active_row_then_json_and_text_show_the_host_of_the_last_success() {
        let s = FleetStatus::of("alice", Some(&row()));
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["state"], "active");
        assert_eq!(j["last_success"]["host"], "web-01");
        assert_eq!(j["last_success"]["time"], "2023-11-14T22:15:00Z");
        assert_eq!(j["clock_offset_seconds"], -30);
        assert!(j["locked_until"].is_null());
        let t = human(&s);
        assert!(
            t.contains("Last success:   2023-11-14T22:15:00Z on web-01 from 192.0.2.7"),
            "{t}"
        );
        assert!(!t.contains('\u{1b}'), "terminal-safe: {t}");
        assert!(
            t.contains("Failures:       2 since the last success"),
            "{t}"
        );
        let tab = table(&[s]);
        assert!(tab.starts_with("USER   STATE   TYPE"), "{tab}");
        assert!(tab.contains("alice  active  SHA1/6/30s  9"), "{tab}");
    }

    #[test]
    fn given_a_locked_row_then_state_locked_with_its_time() {
        let mut r = row();
        (r.locked, r.locked_until) = (true, 1_700_000_260);
        let s = FleetStatus::of("alice", Some(&r));
        assert_eq!(s.state, "locked");
        assert_eq!(s.locked_until.as_deref(), Some("2023-11-14T22:17:40Z"));
    }
}
