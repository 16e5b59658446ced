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
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The PAM service the helper checks the password with (`/etc/pam.d/pam-totp`). The module
/// steps aside in it ([`module_steps_aside`]): the helper asks for the code itself.
pub const PAM_SERVICE: &str = "pam-totp";

/// Where the package installs the helper (root:root 4755).
pub const HELPER_PATH: &str = "/usr/libexec/pam-totp/pam-totp-self";

/// Whether the module returns PAM_IGNORE without asking: only inside the self-service helper
/// itself (this process runs the installed helper, setuid: real and effective uid differ),
/// checking the password under its own PAM service, after which it asks for the code itself —
/// so that no code is asked twice when the system's auth stack includes pam_totp. Any other
/// program that names the same PAM service (a service name is the application's choice) is
/// asked for the code as usual.
/// `process` says what this process is — the program it runs, and whether it is setuid —
/// and is asked only under that service (every other login pays nothing for it).
pub fn module_steps_aside(
    service: &str,
    process: impl FnOnce() -> (Option<PathBuf>, bool),
) -> bool {
    if !service.eq_ignore_ascii_case(PAM_SERVICE) {
        return false;
    }
    let (exe, setuid) = process();
    setuid && exe.as_deref() == Some(Path::new(HELPER_PATH))
}

/// How the helper talks to the front-end: prompts and texts as a conversation, and replies.
pub trait Relay: Conversation {
    fn send(&mut self, reply: Reply) -> Result<(), ConvError>;
    /// Waits until the front-end says it has shown what was last sent (the user saw it).
    fn shown(&mut self) -> Result<(), ConvError>;
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
    match verb {
        Verb::Status {} => None,
        _ => turned_off(policy),
    }
}

/// Self-service turned off: no change of one's own second factor.
fn turned_off(policy: &Policy) -> Option<Outcome> {
    (!policy.self_service).then(|| refused("self-service is turned off by your administrator"))
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

/// What a proof was made against: the user's record as it was then (`None`: no record).
/// The action that follows writes only while the record is still exactly this one, so that
/// what an administrator did meanwhile (a forced re-enrolment, a disable) is never undone.
pub struct Proven(Option<crate::store::Record>);

/// The policy as it reads now: the action re-checks it at the moment it writes.
pub type PolicyNow<'a> = &'a dyn Fn() -> Result<Policy, String>;

/// The proof of a code (SPEC §8): for an active record, a code from the app or a recovery
/// code, judged exactly as at login — window, replay, throttle; the step is consumed, a wrong
/// code counts. `Ok` when proven or when there is no active record to prove.
pub fn prove_code<R: Relay, S: System>(
    relay: &mut R,
    sys: &S,
    store: &Store,
    user: &UserName,
    policy: &Policy,
    options: &Options,
) -> Result<Proven, Outcome> {
    let before = store.record(user).map_err(|e| {
        refused(format!(
            "your record cannot be read ({e}); ask your administrator"
        ))
    })?;
    let req = Request {
        user,
        rhost: None,
        options,
        owner: 0,
        typed_ahead: None,
    };
    match flow::prove_code(relay, sys, &req, user, policy, store) {
        None => Ok(Proven(before)),
        Some(v) if v.code == Code::Success => {
            // A recovery code given as the proof is used up: the record lost that code's hash
            // and nothing else. That change is the proof's own, not an administrator's.
            let after = store.record(user).ok().flatten();
            Ok(Proven(match (before, after) {
                (Some(b), Some(a)) if only_one_recovery_code_used(&b, &a) => Some(a),
                (b, _) => b,
            }))
        }
        Some(v) => Err(refused(format!("the code was not accepted ({})", v.reason))),
    }
}

/// `after` is `before` less exactly one of its recovery codes.
fn only_one_recovery_code_used(
    before: &crate::store::Record,
    after: &crate::store::Record,
) -> bool {
    let mut expected = before.clone();
    expected.recovery.retain(|h| after.recovery.contains(h));
    before.recovery.len() == after.recovery.len() + 1 && expected == *after
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

/// Under the user's lock, right before a write: the record is still the one the proof was
/// made against, and the policy as it reads now still lets users change their own second
/// factor. That policy, if so.
fn still_allowed(
    lock: &crate::store::UserLock,
    proven: &Proven,
    policy_now: PolicyNow,
) -> Result<Policy, Outcome> {
    match lock.record() {
        Ok(r) if r == proven.0 => {}
        Ok(_) => {
            return Err(refused(
                "your second factor was changed meanwhile (by your administrator?); nothing \
                 was changed; run the command again",
            ))
        }
        Err(e) => return Err(refused(format!("your record cannot be read ({e})"))),
    }
    let policy = policy_now().map_err(|e| refused(format!("the policy cannot be used ({e})")))?;
    match turned_off(&policy) {
        Some(o) => Err(o),
        None => Ok(policy),
    }
}

/// `disable`: removes record and state, unless the policy requires a code of the user.
pub fn disable<S: System>(
    sys: &S,
    store: &Store,
    user: &UserName,
    proven: &Proven,
    policy_now: PolicyNow,
) -> Outcome {
    let lock = match store.hold(user) {
        Ok(l) => l,
        Err(e) => return refused(format!("cannot lock your record ({e})")),
    };
    let checked = still_allowed(&lock, proven, policy_now).and_then(|policy| {
        let g = groups(sys, user, &policy)?;
        match policy.required_by(user, g.as_deref()) {
            Some(by) => Err(refused(required_message(&by))),
            None => Ok(()),
        }
    });
    if let Err(o) = checked {
        return o;
    }
    match lock.disable() {
        Ok(_) => Outcome::Disabled,
        Err(e) => refused(format!("cannot remove your record ({e})")),
    }
}

/// Why a required user may not turn their second factor off, naming the rule.
pub fn required_message(by: &RequiredBy) -> String {
    format!("your administrator requires a second factor of you (required by {by})")
}

/// `recovery`: a fresh set of recovery codes replaces the old one; sent once.
pub fn renew_recovery<R: Relay>(
    relay: &mut R,
    store: &Store,
    user: &UserName,
    proven: &Proven,
    policy_now: PolicyNow,
) -> Outcome {
    let codes = match recovery::generate(recovery::DEFAULT_COUNT) {
        Ok(c) => c,
        Err(e) => return refused(format!("cannot draw random numbers: {e}")),
    };
    let hashes = match codes.iter().map(|c| recovery::hash(c)).collect() {
        Ok(h) => h,
        Err(e) => return refused(format!("cannot draw random numbers: {e}")),
    };
    // Shown first, written after: a front-end that dies before the user saw the new codes
    // leaves the old ones working.
    if relay.send(Reply::RecoveryCodes { codes }).is_err() || relay.shown().is_err() {
        return refused("the new recovery codes were not shown; your old ones still work");
    }
    let lock = match store.hold(user) {
        Ok(l) => l,
        Err(e) => return refused(format!("cannot lock your record ({e})")),
    };
    if let Err(o) = still_allowed(&lock, proven, policy_now) {
        return o;
    }
    let written = match lock.record() {
        Ok(Some(mut r)) if r.status == Status::Active => {
            r.recovery = hashes;
            lock.put_record(&r).map(|()| true)
        }
        Ok(_) => Ok(false),
        Err(e) => Err(e),
    };
    drop(lock);
    let not_saved = "the recovery codes shown above were NOT saved; your old ones still work";
    match written {
        Ok(true) => Outcome::RecoveryRenewed,
        Ok(false) => refused(format!(
            "{not_saved}: you have no active second factor; enrol first (pam-totp enroll)"
        )),
        Err(e) => refused(format!("{not_saved} (cannot write your record: {e})")),
    }
}

/// `enroll`: a new key in memory, shown through the front-end; the active record is written
/// (replacing any old one, atomically) only when a code from the app matches. Until then
/// nothing on disk changes.
#[allow(clippy::too_many_arguments)]
pub fn enrol<R: Relay, S: System>(
    relay: &mut R,
    sys: &S,
    store: &Store,
    user: &UserName,
    policy: &Policy,
    proven: &Proven,
    policy_now: PolicyNow,
    params: Params,
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
    for attempt in 1..=enroll::CONFIRM_TRIES {
        let Ok(answer) = relay.prompt_hidden("Code from the app: ") else {
            return refused("cancelled before a code from the app confirmed the new key");
        };
        let code = Zeroizing::new(String::from_utf8_lossy(&answer).into_owned());
        let lock = match store.hold(user) {
            Ok(l) => l,
            Err(e) => return refused(format!("cannot lock your record ({e})")),
        };
        if let Err(o) = still_allowed(&lock, proven, policy_now) {
            return o;
        }
        match enroll::confirm(
            &lock,
            e.record.clone(),
            &code,
            sys.now(),
            enroll::CONFIRM_WINDOW,
        ) {
            Ok(_) => return Outcome::Enrolled,
            Err(enroll::ConfirmError::Store(e)) => {
                return refused(format!("cannot write your record ({e})"))
            }
            Err(err) if attempt < enroll::CONFIRM_TRIES => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::ConvError;
    use crate::secret::Secret;
    use crate::testutil::{record, save, u, TempDir};
    use crate::totp::Generator;

    const NOW: u64 = 1_800_000_015;

    struct Clock;
    impl System for Clock {
        fn now(&self) -> u64 {
            NOW
        }
        fn groups_of(&self, _: &str) -> Result<Option<Vec<String>>, String> {
            Ok(Some(vec![]))
        }
        fn canonical_name(&self, user: &str) -> Result<Option<String>, String> {
            Ok(Some(user.to_string()))
        }
        fn hostname(&self) -> String {
            "testhost".into()
        }
    }

    /// Answers the proof with `first`, and a prompt after a new key with that key's code.
    struct Front {
        first: Option<String>,
        new_key: Option<String>,
    }
    impl Conversation for Front {
        fn prompt_hidden(&mut self, _: &str) -> Result<Zeroizing<Vec<u8>>, ConvError> {
            if let Some(a) = self.first.take() {
                return Ok(Zeroizing::new(a.into_bytes()));
            }
            let key = self.new_key.as_ref().ok_or(ConvError)?;
            let r = record("x");
            let g = Generator::new(&Secret::from_base32(key).unwrap(), r.params);
            Ok(Zeroizing::new(
                g.code_at_step(r.params.step_at(NOW))
                    .to_string()
                    .into_bytes(),
            ))
        }
        fn info(&mut self, _: &str) -> Result<(), ConvError> {
            Ok(())
        }
    }
    impl Relay for Front {
        fn send(&mut self, reply: Reply) -> Result<(), ConvError> {
            if let Reply::NewKey(k) = reply {
                self.new_key = Some(k.secret.to_string());
            }
            Ok(())
        }
        fn shown(&mut self) -> Result<(), ConvError> {
            Ok(())
        }
    }

    /// The proof, as the helper makes it, under the default policy.
    fn prove(front: &mut Front, store: &Store, user: &str) -> Proven {
        prove_code(
            front,
            &Clock,
            store,
            &u(user),
            &Policy::default(),
            &Options::default(),
        )
        .unwrap_or_else(|o| panic!("{o}"))
    }

    #[test]
    fn given_the_admin_replaces_the_record_during_a_self_enrolment_then_it_is_not_undone() {
        let t = TempDir::new();
        let store = t.store();
        let alice = record("alice");
        save(&store, &alice);
        let code = Generator::new(&alice.secret, alice.params)
            .code_at_step(alice.params.step_at(NOW) - 1)
            .to_string();
        let mut front = Front {
            first: Some(code),
            new_key: None,
        };
        let policy = Policy::default();
        let proven = prove(&mut front, &store, "alice");
        // Meanwhile the admin forces a re-enrolment (`pam-totp enroll --force alice`).
        let mut forced = record("alice");
        forced.status = Status::Pending;
        forced.replaces_active = true;
        forced.secret = Secret::generate(20).unwrap();
        save(&store, &forced);
        let outcome = enrol(
            &mut front,
            &Clock,
            &store,
            &u("alice"),
            &policy,
            &proven,
            &|| Ok(Policy::default()),
            Params::default(),
        );
        assert!(
            matches!(&outcome, Outcome::Refused(why) if why.contains("changed meanwhile")),
            "{outcome}"
        );
        assert_eq!(store.record(&u("alice")).unwrap(), Some(forced));
    }

    #[test]
    fn given_a_recovery_code_as_the_proof_then_the_renewal_goes_ahead() {
        let t = TempDir::new();
        let store = t.store();
        let codes = recovery::generate(3).unwrap();
        let mut alice = record("alice");
        alice.recovery = codes.iter().map(|c| recovery::hash(c).unwrap()).collect();
        save(&store, &alice);
        let mut front = Front {
            first: Some(codes[1].to_string()),
            new_key: None,
        };
        let proven = prove(&mut front, &store, "alice");
        let outcome = renew_recovery(&mut front, &store, &u("alice"), &proven, &|| {
            Ok(Policy::default())
        });
        assert_eq!(outcome, Outcome::RecoveryRenewed);
        let after = store.record(&u("alice")).unwrap().unwrap();
        assert_eq!(after.recovery.len(), recovery::DEFAULT_COUNT);
    }

    #[test]
    fn given_self_service_turned_off_during_a_self_enrolment_then_nothing_is_written() {
        let t = TempDir::new();
        let store = t.store();
        let mut front = Front {
            first: None,
            new_key: None,
        };
        let policy = Policy::default();
        let proven = prove(&mut front, &store, "bob");
        let off = || {
            Ok(Policy {
                self_service: false,
                ..Policy::default()
            })
        };
        let outcome = enrol(
            &mut front,
            &Clock,
            &store,
            &u("bob"),
            &policy,
            &proven,
            &off,
            Params::default(),
        );
        assert!(
            matches!(&outcome, Outcome::Refused(why) if why.contains("turned off")),
            "{outcome}"
        );
        assert_eq!(store.record(&u("bob")).unwrap(), None);
    }

    #[test]
    fn given_the_service_name_alone_then_the_module_does_not_step_aside() {
        fn is(exe: Option<&'static str>, setuid: bool) -> impl FnOnce() -> (Option<PathBuf>, bool) {
            move || (exe.map(PathBuf::from), setuid)
        }
        assert!(module_steps_aside("pam-totp", is(Some(HELPER_PATH), true)));
        assert!(!module_steps_aside(
            "pam-totp",
            is(Some("/usr/sbin/saslauthd"), false)
        ));
        assert!(!module_steps_aside(
            "PAM-Totp",
            is(Some("/usr/sbin/dovecot"), true)
        ));
        assert!(!module_steps_aside(
            "pam-totp",
            is(Some(HELPER_PATH), false)
        ));
        assert!(!module_steps_aside("pam-totp", is(None, true)));
        assert!(!module_steps_aside("sshd", is(Some(HELPER_PATH), true)));
        assert!(!module_steps_aside("sshd", || unreachable!(
            "asked for another service"
        )));
    }
}
