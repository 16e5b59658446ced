//! Self-service (SPEC §8): what an ordinary user may do to their own second factor, and how.
//! The setuid helper `pam-totp-self` is a screen in front of these functions: it fixes the
//! user (its real uid), the paths (compiled in) and the environment (none), proves the
//! password through PAM, and then calls [`prove_code`] and one action here, relaying prompts
//! to the front-end over [`protocol`].
#![forbid(unsafe_code)]

pub mod protocol;

use crate::enroll;
use crate::flow::{self, Code, ConvError, Conversation, Request};
use crate::names::UserName;
use crate::next_login::{next_login, Enrolment};
use crate::options::Options;
use crate::policy::{Policy, RequiredBy};
use crate::recovery;
use crate::status::{self, UserStatus};
use crate::store::{HeldUser, State, Status, Store, UserStore};
use crate::sys::System;
use crate::totp::{Algorithm, Params};
use protocol::{NewKey, Reply, Verb};
use std::fmt;
use zeroize::Zeroizing;

/// The PAM service the helper checks the password with (`/etc/pam.d/pam-totp`). The module
/// steps aside in it ([`module_steps_aside`]): the helper asks for the code itself.
pub const PAM_SERVICE: &str = "pam-totp";

/// Where the package installs the helper (root:root 4755).
pub const HELPER_PATH: &str = "/usr/libexec/pam-totp/pam-totp-self";

/// How many codes from the app a user may try when enrolling before starting over.
pub const ENROL_TRIES: u32 = 3;

/// Whether the module returns PAM_IGNORE without asking under this PAM service: the one the
/// self-service helper uses for the password, after which it asks for the code itself, so
/// that no code is asked twice even when the system's auth stack includes pam_totp.
pub fn module_steps_aside(service: &str) -> bool {
    service == PAM_SERVICE
}

/// How the helper talks to the front-end: prompts and texts as a conversation, and replies.
pub trait Relay: Conversation {
    fn send(&mut self, reply: Reply) -> Result<(), ConvError>;
}

/// What one self-service action came to: one syslog line (SPEC §8 wording) and what the
/// front-end is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Status,
    Enrolled,
    RecoveryRenewed,
    Disabled,
    Refused(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Status => f.write_str("status shown"),
            Outcome::Enrolled => f.write_str("self-enrolled"),
            Outcome::RecoveryRenewed => f.write_str("recovery codes renewed"),
            Outcome::Disabled => f.write_str("disabled"),
            Outcome::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

fn refused(why: impl Into<String>) -> Outcome {
    Outcome::Refused(why.into())
}

/// Refused before anything is asked: self-service turned off (all but `status`).
pub fn refusal(verb: &Verb, policy: &Policy) -> Option<Outcome> {
    (!policy.self_service && *verb != Verb::Status {})
        .then(|| refused("self-service is turned off by your administrator"))
}

/// The key parameters a user asked for, checked as the admin CLI checks them.
pub fn params(verb: &Verb) -> Result<Params, Outcome> {
    let Verb::Enroll {
        algorithm,
        digits,
        period,
    } = verb
    else {
        return Ok(Params::default());
    };
    let algorithm = Algorithm::parse(&algorithm.to_ascii_uppercase())
        .ok_or_else(|| refused("the algorithm must be SHA1, SHA256 or SHA512"))?;
    Params::new(algorithm, i64::from(*digits), i64::from(*period))
        .map_err(|e| refused(e.to_string()))
}

/// The proof of a code (SPEC §8): for an active record, a code from the app or a recovery
/// code, judged exactly as at login — window, replay, throttle; the step is consumed, a wrong
/// code counts. `Ok(())` when proven or when there is no active record to prove.
pub fn prove_code<R: Relay, S: System>(
    relay: &mut R,
    sys: &S,
    store: &Store,
    user: &UserName,
    policy: &Policy,
    options: &Options,
) -> Result<(), Outcome> {
    let req = Request {
        user,
        rhost: None,
        options,
        owner: 0,
    };
    match flow::prove_code(relay, sys, &req, user, policy, store) {
        None => Ok(()),
        Some(v) if v.code == Code::Success => Ok(()),
        Some(v) => Err(refused(format!("the code was not accepted ({})", v.reason))),
    }
}

/// `status`: the user's own status (never the secret).
pub fn status<R: Relay, S: System>(
    relay: &mut R,
    sys: &S,
    store: Option<&Store>,
    user: &UserName,
    policy: &Policy,
) -> Outcome {
    let read = store.map(|s| (s.record(user), s.state(user)));
    let (record, state) = match read {
        None => (None, State::default()),
        Some((Ok(r), Ok(s))) => (r, s),
        Some((Ok(r @ None), Err(_))) => (r, State::default()),
        Some((Err(e), _)) | Some((_, Err(e))) => {
            return refused(format!(
                "your record cannot be read ({e}); ask your administrator"
            ))
        }
    };
    let (required_by, next) = match groups(sys, user, policy) {
        Ok(g) => (
            policy.required_by(user, g.as_deref()),
            next_login(
                user,
                Enrolment::of(record.as_ref()),
                policy,
                g.as_deref(),
                sys.now(),
            ),
        ),
        Err(o) => return o,
    };
    let view = status::PolicyView {
        required_by: required_by.as_ref(),
        next: &next,
        self_service: policy.self_service,
    };
    let s: UserStatus = status::user_status(user, record.as_ref(), &state, view, sys.now());
    let extra = s.extra.clone();
    match relay.send(Reply::Status {
        status: Box::new(s),
        extra,
    }) {
        Ok(()) => Outcome::Status,
        Err(_) => refused("the front-end went away"),
    }
}

fn groups<S: System>(
    sys: &S,
    user: &UserName,
    policy: &Policy,
) -> Result<Option<Vec<String>>, Outcome> {
    if !policy.needs_groups() {
        return Ok(None);
    }
    sys.groups_of(user)
        .map_err(|e| refused(format!("cannot look up your groups: {e}")))
}

/// `disable`: removes record and state, unless the policy requires a code of the user.
pub fn disable<S: System>(sys: &S, store: &Store, user: &UserName, policy: &Policy) -> Outcome {
    let g = match groups(sys, user, policy) {
        Ok(g) => g,
        Err(o) => return o,
    };
    if let Some(by) = policy.required_by(user, g.as_deref()) {
        return refused(required_message(&by));
    }
    match store.hold(user).and_then(|l| l.disable()) {
        Ok(_) => Outcome::Disabled,
        Err(e) => refused(format!("cannot remove your record ({e})")),
    }
}

/// Why a required user may not turn their second factor off, naming the rule.
pub fn required_message(by: &RequiredBy) -> String {
    format!("your administrator requires a second factor of you (required by {by})")
}

/// `recovery`: a fresh set of recovery codes replaces the old one; sent once.
pub fn renew_recovery<R: Relay>(relay: &mut R, store: &Store, user: &UserName) -> Outcome {
    let codes = match recovery::generate(recovery::DEFAULT_COUNT) {
        Ok(c) => c,
        Err(e) => return refused(format!("cannot draw random numbers: {e}")),
    };
    let hashes = match codes.iter().map(|c| recovery::hash(c)).collect() {
        Ok(h) => h,
        Err(e) => return refused(format!("cannot draw random numbers: {e}")),
    };
    let written = store.hold(user).and_then(|lock| match lock.record()? {
        Some(mut r) if r.status == Status::Active => {
            r.recovery = hashes;
            lock.put_record(&r).map(|()| true)
        }
        _ => Ok(false),
    });
    match written {
        Ok(true) => match relay.send(Reply::RecoveryCodes { codes }) {
            Ok(()) => Outcome::RecoveryRenewed,
            Err(_) => refused("the front-end went away after the codes were renewed"),
        },
        Ok(false) => refused("you have no active second factor; enrol first (pam-totp enroll)"),
        Err(e) => refused(format!("cannot write your record ({e})")),
    }
}

/// `enroll`: a new key in memory, shown through the front-end; the active record is written
/// (replacing any old one, atomically) only when a code from the app matches. Until then
/// nothing on disk changes.
pub fn enrol<R: Relay, S: System>(
    relay: &mut R,
    sys: &S,
    store: &Store,
    user: &UserName,
    policy: &Policy,
    params: Params,
    window: u32,
) -> Outcome {
    let issuer = policy.issuer.clone().unwrap_or_else(|| sys.hostname());
    let e = match enroll::new_enrolment(user, &issuer, params, sys.now(), recovery::DEFAULT_COUNT) {
        Ok(e) => e,
        Err(e) => return refused(format!("cannot make a key: {e}")),
    };
    let key = NewKey::of(&e);
    if relay.send(Reply::NewKey(Box::new(key))).is_err() {
        return refused("the front-end went away before the key was confirmed");
    }
    for attempt in 1..=ENROL_TRIES {
        let Ok(answer) = relay.prompt_hidden("Code from the app: ") else {
            return refused("cancelled before a code from the app confirmed the new key");
        };
        let code = Zeroizing::new(String::from_utf8_lossy(&answer).into_owned());
        let confirmed = store
            .hold(user)
            .map_err(enroll::ConfirmError::from)
            .and_then(|lock| enroll::confirm(&lock, e.record.clone(), &code, sys.now(), window));
        match confirmed {
            Ok(_) => return Outcome::Enrolled,
            Err(enroll::ConfirmError::Store(e)) => {
                return refused(format!("cannot write your record ({e})"))
            }
            Err(err) if attempt < ENROL_TRIES => {
                let _ = relay.info(&format!("{err}; try again."));
            }
            Err(err) => return refused(format!("{err}; nothing was changed")),
        }
    }
    refused("no code from the app confirmed the new key; nothing was changed")
}

/// The text the front-end shows for a finished action.
pub fn done_message(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Enrolled => "Two-factor login is on: from now on your logins ask for a code \
                              from the app."
            .into(),
        Outcome::RecoveryRenewed => "The previous recovery codes no longer work.".into(),
        Outcome::Disabled => "Two-factor login is off for your account.".into(),
        Outcome::Status => String::new(),
        Outcome::Refused(why) => why.clone(),
    }
}
