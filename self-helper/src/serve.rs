//! One self-service action, after the hardening: who the caller is (its real uid, by name in
//! NSS), what it asks (the opening line), the policy and state directory (compiled-in paths
//! only), the password (PAM), the code (as at login), then the core's action. Every rule is
//! the core's (`pam_totp::selfservice`); this only puts them in order.

use crate::pam;
use crate::relay::FrontEnd;
use nix::unistd::{getuid, Uid, User};
use pam_totp::escape::log_field;
use pam_totp::names::UserName;
use pam_totp::options::{Options, DEFAULT_DIR, DEFAULT_POLICY};
use pam_totp::policy::Policy;
use pam_totp::selfservice::protocol::Verb;
use pam_totp::selfservice::{self, Outcome, PAM_SERVICE};
use pam_totp::store::{self, Store, StoreError};
use pam_totp::sys::RealSystem;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

/// Whom the log line names: the user, or only the uid when it has no usable name.
pub enum Who {
    Uid(u32),
    User(UserName),
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Uid(uid) => write!(f, "uid={uid}"),
            Who::User(user) => write!(f, "user={}", log_field(user)),
        }
    }
}

fn refused(why: impl Into<String>) -> Outcome {
    Outcome::Refused(why.into())
}

/// Identifies the caller, then serves its one request.
pub fn serve<R: Read, W: Write>(front: &mut FrontEnd<R, W>) -> (Who, Outcome) {
    let uid = getuid();
    match identify(uid) {
        Ok(user) => {
            let outcome = act(front, &user);
            (Who::User(user), outcome)
        }
        Err(outcome) => (Who::Uid(uid.as_raw()), outcome),
    }
}

/// The account the helper acts on: the name of the real uid (never the effective one, which
/// is root) in NSS. Nothing the caller sends can name another.
fn identify(uid: Uid) -> Result<UserName, Outcome> {
    if uid.is_root() {
        return Err(refused(
            "root uses the admin verbs: pam-totp enroll USER, pam-totp disable USER, ...",
        ));
    }
    let name = match User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        Ok(None) => {
            return Err(refused(format!(
                "uid {uid} has no name in the user database"
            )))
        }
        Err(e) => return Err(refused(format!("cannot look up uid {uid}: {e}"))),
    };
    UserName::new(&name).map_err(|e| refused(format!("{e}: pam-totp cannot manage this account")))
}

/// Whether the state directory (or its `users/`) does not exist yet: no one has enrolled.
fn missing(e: &StoreError) -> bool {
    matches!(e, StoreError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
}

fn act<R: Read, W: Write>(front: &mut FrontEnd<R, W>, user: &UserName) -> Outcome {
    let verb = match front.hello() {
        Ok(v) => v,
        Err(why) => return refused(why),
    };
    let policy = match store::load_policy(Path::new(DEFAULT_POLICY), 0) {
        Ok(p) => p.unwrap_or_default(),
        Err(e) => {
            return refused(format!(
                "the policy cannot be used ({e}); ask your administrator"
            ))
        }
    };
    if let Some(o) = selfservice::refusal(&verb, &policy) {
        return o;
    }
    let dir = Path::new(DEFAULT_DIR);
    let store = match Store::open(dir, 0) {
        Ok(s) => Some(s),
        Err(e) if missing(&e) => None,
        Err(e) => {
            return refused(format!(
                "the state directory cannot be used ({e}); ask your administrator"
            ))
        }
    };
    if verb == (Verb::Status {}) {
        return selfservice::status(front, &RealSystem, store.as_ref(), user, &policy);
    }
    let params = match selfservice::params(&verb) {
        Ok(p) => p,
        Err(o) => return o,
    };
    if let Err(failure) = pam::check_password(PAM_SERVICE, user, front) {
        return match front.fault() {
            Some(why) => refused(format!("the password was not checked ({why})")),
            None => refused(failure.to_string()),
        };
    }
    // The package creates the state directory; if it is missing, it is made here as the
    // admin CLI makes it (root's, private).
    let store = match store.map_or_else(|| Store::create(dir, 0), Ok) {
        Ok(s) => s,
        Err(e) => {
            return refused(format!(
                "the state directory cannot be made ({e}); ask your administrator"
            ))
        }
    };
    let options = Options::default();
    let proven = match selfservice::prove_code(front, &RealSystem, &store, user, &policy, &options)
    {
        Ok(p) => p,
        Err(o) => return o,
    };
    action(front, &store, user, &policy, &proven, &verb, params)
}

/// The policy as it reads now (the action checks it again right before it writes).
fn policy_now() -> Result<Policy, String> {
    store::load_policy(Path::new(DEFAULT_POLICY), 0)
        .map(Option::unwrap_or_default)
        .map_err(|e| e.to_string())
}

fn action<R: Read, W: Write>(
    front: &mut FrontEnd<R, W>,
    store: &Store,
    user: &UserName,
    policy: &Policy,
    proven: &selfservice::Proven,
    verb: &Verb,
    params: pam_totp::totp::Params,
) -> Outcome {
    match verb {
        Verb::Enroll { .. } => selfservice::enrol(
            front,
            &RealSystem,
            store,
            user,
            policy,
            proven,
            &policy_now,
            params,
        ),
        Verb::Recovery {} => selfservice::renew_recovery(front, store, user, proven, &policy_now),
        Verb::Disable {} => selfservice::disable(&RealSystem, store, user, proven, &policy_now),
        Verb::Status {} => selfservice::status(front, &RealSystem, Some(store), user, policy),
    }
}
