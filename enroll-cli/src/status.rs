//! `pam-totp status [USER]` and `pam-totp list`: state, settings, last login, what the policy
//! asks of the user.

use crate::cli::{ListArgs, StatusArgs};
use crate::ctx::{self, Ctx};
use crate::error::{CliError, Result};
use crate::output::{duration, errout, out, outln, print_json};
use pam_totp::clock;
use pam_totp::escape::terminal_safe;
use pam_totp::names::UserName;
use pam_totp::policy::Policy;
use pam_totp::status::{self, UserStatus};
use pam_totp::store::{Record, State, Store};

/// Reads `user`'s record and state and asks the core what their status is.
fn user_status(
    ctx: &Ctx,
    policy: &Policy,
    store: Option<&Store>,
    user: &UserName,
    now: u64,
) -> Result<UserStatus> {
    let record: Option<Record> = match store {
        None => None,
        Some(s) => s
            .record(user)
            .map_err(|e| CliError::store(&format!("cannot read {user}'s record"), e))?,
    };
    let state: State = match (store, &record) {
        (Some(s), Some(_)) => s
            .state(user)
            .map_err(|e| CliError::store(&format!("cannot read {user}'s login state"), e))?,
        _ => State::default(),
    };
    let (by, next) = ctx.next_login(policy, user, record.as_ref())?;
    let view = status::PolicyView {
        required_by: by.as_ref(),
        next: &next,
        self_service: policy.self_service,
    };
    Ok(status::user_status(
        user,
        record.as_ref(),
        &state,
        view,
        now,
    ))
}

/// `user`'s status now, as `status USER --json` prints it.
pub fn of(ctx: &Ctx, user: &UserName) -> Result<UserStatus> {
    let policy = ctx.policy()?;
    let store = ctx.open_store()?;
    user_status(ctx, &policy, store.as_ref(), user, ctx.now())
}

pub fn run_status(ctx: &Ctx, a: &StatusArgs) -> Result<()> {
    let Some(user) = &a.user else {
        return run_list(ctx, &ListArgs { json: a.json });
    };
    let user = &ctx::check_user(user)?;
    let s = of(ctx, user)?;
    if a.json {
        return print_json(&s);
    }
    out!("{}", human(&s))?;
    Ok(())
}

/// The status for people. Every value passes through `terminal_safe`: user names, the issuer,
/// the rhost of the last login (PAM_RHOST, chosen by whoever connects) and group names come
/// from files, and must not move the cursor or forge a line.
pub fn human(s: &UserStatus) -> String {
    let mut t = String::new();
    let line =
        |t: &mut String, k: &str, v: &str| t.push_str(&format!("{k:<16}{}\n", terminal_safe(v)));
    line(&mut t, "User:", &s.user);
    let state = match s.state.as_str() {
        "none" => "none (not enrolled)".to_string(),
        "pending" if s.extra.replaces_active => {
            "pending (re-enrolment: logins are denied until it is activated)".to_string()
        }
        "pending" => "pending (not used for logins until it is activated)".to_string(),
        "locked" => format!(
            "locked after {} failed codes (pam-totp unlock {} clears it)",
            s.extra.failures, s.user
        ),
        other => other.to_string(),
    };
    line(&mut t, "State:", &state);
    if s.state != "none" {
        line(&mut t, "Type:", s.extra.type_text.as_deref().unwrap_or("-"));
        line(&mut t, "Issuer:", s.extra.issuer.as_deref().unwrap_or("-"));
        line(&mut t, "Created:", s.created.as_deref().unwrap_or("-"));
        let last = match &s.last_success {
            None => "never".to_string(),
            Some(ls) => match &ls.rhost {
                Some(h) => format!("{} from {h}", ls.time),
                None => ls.time.clone(),
            },
        };
        line(&mut t, "Last success:", &last);
        if let Some(clock) = clock_text(s) {
            line(&mut t, "Clock:", &clock);
        }
        if let Some(words) = clock::phone_offset_words(&s.user, s.clock_offset_seconds) {
            line(&mut t, "Phone clock:", &words);
        }
        if let Some(l) = &s.locked_until {
            line(&mut t, "Locked until:", l);
        } else if s.extra.failures > 0 {
            line(
                &mut t,
                "Failures:",
                &format!("{} since the last success", s.extra.failures),
            );
        }
        line(
            &mut t,
            "Recovery codes:",
            &format!("{} left", s.recovery_codes_left.unwrap_or(0)),
        );
    }
    let required = match &s.required_by {
        Some(by) => format!("yes ({by})"),
        None => "no".to_string(),
    };
    line(&mut t, "Required:", &required);
    line(
        &mut t,
        "Self-service:",
        if s.extra.self_service {
            "on (the user may turn it on and off with pam-totp enroll/disable)"
        } else {
            "off (turned off by the administrator)"
        },
    );
    if let Some(g) = &s.grace_until {
        line(&mut t, "Grace until:", g);
    }
    t
}

/// What lies in the future, in words, and how to repair it.
fn clock_text(s: &UserStatus) -> Option<String> {
    let a = s.clock_ahead.as_ref()?;
    Some(match a.last_step_ahead_steps {
        Some(n) => format!(
            "Last used step lies {n} steps (about {}) in the future — the clock was ahead at a \
             login; every code is refused as a replay until then. Fix: pam-totp unlock \
             --reset-clock {}",
            duration(n.saturating_mul(u64::from(s.extra.period))),
            s.user
        ),
        None => "the last success lies in the future — the clock was ahead at that login \
                 (codes are not affected)"
            .to_string(),
    })
}

pub fn run_list(ctx: &Ctx, a: &ListArgs) -> Result<()> {
    let policy = ctx.policy()?;
    let store = ctx.open_store()?;
    let users = match &store {
        Some(s) => s
            .users()
            .map_err(|e| CliError::store("cannot list the records", e))?,
        None => Vec::new(),
    };
    let now = ctx.now();
    let mut rows = Vec::with_capacity(users.len());
    let mut failed = 0usize;
    for u in &users {
        match user_status(ctx, &policy, store.as_ref(), u, now) {
            Ok(s) => rows.push(s),
            Err(e) => {
                failed += 1;
                errout!("{e}");
            }
        }
    }
    if a.json {
        print_json(&rows)?;
    } else if users.is_empty() {
        outln!("No records in {}.", ctx.dir.display())?;
    } else if !rows.is_empty() {
        out!("{}", table(&rows))?;
    }
    if failed > 0 {
        return Err(CliError::new(format!(
            "{failed} of {} records could not be read (see above)",
            users.len()
        )));
    }
    Ok(())
}

/// The TYPE column of `list`: "SHA1/6/30s", "-" without a record.
pub fn type_cell(algorithm: Option<&str>, digits: Option<u8>, period: Option<u32>) -> String {
    match (algorithm, digits, period) {
        (Some(a), Some(d), Some(p)) => format!("{a}/{d}/{p}s"),
        _ => "-".into(),
    }
}

/// One line per user; every cell passes through `terminal_safe` (see [`human`]).
fn table(rows: &[UserStatus]) -> String {
    let header = [
        "USER",
        "STATE",
        "TYPE",
        "RECOVERY",
        "LAST SUCCESS",
        "REQUIRED",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|s| {
            [
                s.user.clone(),
                match &s.clock_ahead {
                    Some(c) if c.last_step_ahead_steps.is_some() => {
                        format!("{} (clock ahead)", s.state)
                    }
                    _ => s.state.to_string(),
                },
                type_cell(s.algorithm.as_deref(), s.digits, s.period),
                s.recovery_codes_left
                    .map_or_else(|| "-".into(), |n| n.to_string()),
                s.last_success
                    .as_ref()
                    .map_or_else(|| "never".into(), |l| l.time.clone()),
                match (&s.required_by, &s.grace_until) {
                    (Some(by), Some(g)) => format!("{by} (grace until {g})"),
                    (Some(by), None) => by.clone(),
                    (None, _) => "no".into(),
                },
            ]
            .map(|c| terminal_safe(&c))
        })
        .collect();
    crate::output::table(&header, &cells)
}
