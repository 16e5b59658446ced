//! What `pam-totp status` says of a user (SPEC §5), computed once from the record, the state,
//! the policy's verdict and the clock: for the admin CLI, and for a user asking about their own
//! account through the self-service helper (SPEC §8). Never the secret.
#![forbid(unsafe_code)]

use crate::clock;
use crate::next_login::NextLogin;
use crate::policy::RequiredBy;
use crate::store::{Record, State, Status};
use crate::throttle::is_locked;
use crate::timefmt::rfc3339;
use serde::{Deserialize, Serialize};

/// The status of one user; serialised with SPEC §5's field names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserStatus {
    pub user: String,
    /// `none`, `pending`, `active` or `locked`.
    pub state: String,
    pub algorithm: Option<String>,
    pub digits: Option<u8>,
    pub period: Option<u32>,
    pub created: Option<String>,
    pub last_success: Option<LastSuccessJson>,
    pub locked_until: Option<String>,
    pub recovery_codes_left: Option<usize>,
    pub required: bool,
    pub required_by: Option<String>,
    pub grace_until: Option<String>,
    /// What of the state lies in the future (a login while the clock was ahead); `null` when
    /// nothing does.
    pub clock_ahead: Option<ClockAheadJson>,
    /// How far the phone's clock was off at the last accepted code, in seconds (SPEC §10):
    /// negative when behind; `null` before the first login.
    pub clock_offset_seconds: Option<i64>,
    /// Shown to people, not part of the JSON of SPEC §5.
    #[serde(skip)]
    pub extra: StatusExtra,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastSuccessJson {
    pub time: String,
    pub rhost: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockAheadJson {
    /// How many steps `last_step` lies ahead of the current step (`null`: it does not).
    pub last_step_ahead_steps: Option<u64>,
    pub last_success_in_future: bool,
}

/// What the human rendering shows besides the JSON fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusExtra {
    pub issuer: Option<String>,
    pub type_text: Option<String>,
    pub failures: u32,
    pub replaces_active: bool,
    pub period: u32,
    /// The policy lets users manage their own second factor (SPEC §8).
    pub self_service: bool,
}

/// What the policy says of a user, as the status shows it.
pub struct PolicyView<'a> {
    /// The rule that requires a code of the user.
    pub required_by: Option<&'a RequiredBy>,
    /// What the user's next login does ([`crate::next_login::next_login`]).
    pub next: &'a NextLogin,
    pub self_service: bool,
}

/// The status of `user` at `now`: `record` and `state` as read (state default without a
/// record), `policy` what the policy says of the user.
pub fn user_status(
    user: &str,
    record: Option<&Record>,
    state: &State,
    policy: PolicyView<'_>,
    now: u64,
) -> UserStatus {
    let PolicyView {
        required_by,
        next,
        self_service,
    } = policy;
    let r = record;
    let locked = is_locked(state.locked_until, now);
    let state_name = match r {
        None => "none",
        Some(r) if r.status == Status::Pending => "pending",
        Some(_) if locked => "locked",
        Some(_) => "active",
    };
    let ahead = r
        .map(|r| clock::ahead(state, r.params, now))
        .filter(|a| a.any());
    UserStatus {
        user: user.to_string(),
        state: state_name.into(),
        algorithm: r.map(|r| r.params.algorithm().as_str().into()),
        digits: r.map(|r| r.params.digits()),
        period: r.map(|r| r.params.period()),
        created: r.and_then(|r| r.created).map(rfc3339),
        last_success: r
            .and(state.last_success.as_ref())
            .map(|ls| LastSuccessJson {
                time: rfc3339(ls.time),
                rhost: ls.rhost.clone(),
            }),
        locked_until: (r.is_some() && locked).then(|| rfc3339(state.locked_until)),
        recovery_codes_left: r.map(|r| r.recovery.len()),
        required: required_by.is_some(),
        required_by: required_by.map(|b| b.to_string()),
        grace_until: next.grace_until().map(rfc3339),
        clock_ahead: ahead.map(|a| ClockAheadJson {
            last_step_ahead_steps: a.last_step.map(|(_, by)| by),
            last_success_in_future: a.last_success.is_some(),
        }),
        clock_offset_seconds: r.and_then(|r| clock::phone_offset_seconds(state, r.params)),
        extra: StatusExtra {
            issuer: r.map(|r| r.issuer.clone()),
            type_text: r.map(|r| r.params.describe()),
            failures: if r.is_some() { state.failures } else { 0 },
            replaces_active: r.is_some_and(|r| r.replaces_active),
            period: r.map_or(0, |r| r.params.period()),
            self_service,
        },
    }
}
