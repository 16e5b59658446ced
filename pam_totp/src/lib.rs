//! pam_totp — time-based one-time passwords (RFC 6238) as a second factor for PAM logins.
//!
//! The library is the product: every rule of the SPEC lives here once, and the front-ends
//! (the PAM module in [`ffi`], the CLI `pam-totp`) only adapt it. All `unsafe` code is in
//! `ffi`; only entry points read the clock ([`sys::RealSystem`]).
//!
//! Where each rule lives:
//! - §2 who may become a path: [`names::UserName`]; how a file is trusted, how it is written
//!   (atomic replace, the state journal), which file failed which check: [`store`] (the only
//!   code that touches storage, behind [`store::UserStore`]); record format: [`store::record`];
//!   state format: [`store::state`]; stored times in the future: [`clock`].
//! - §3 the decision of one login: [`flow::authenticate`] / [`flow::decide`]; how a code is
//!   judged: [`totp`] (window) and [`store::State::is_replay`]; what the next login of a user
//!   does (required, grace, enrol at login, ignore): [`next_login`], used by the module,
//!   `status`, `disable` and `doctor` alike; the throttle: [`throttle`]; the log wording and
//!   PAM code of each outcome: [`reason::Reason`]; module options: [`options`].
//! - §3 logging and terminals: how untrusted text is shown: [`escape`].
//! - §4 recovery codes: [`recovery`]; §5 enrolment (new key, confirm with a code): [`enroll`];
//!   QR matrix and terminal rendering: [`qr`].
//! - §5 imports: the google-authenticator and pam_oath parsers in [`import`].
//! - §6 the policy, who is required: [`policy`]; its trusted read and validated replace:
//!   [`store::load_policy`], [`store::replace_policy`].
//! - §11 fleet mode: `store.toml` and its trust: [`fleet::config`]; what a login asks of the
//!   store and how its outcomes read (the same [`reason::Reason`]s): [`fleet`]; the decision over
//!   it: [`flow::authenticate_fleet`] (`flow/fleet.rs`), break-glass users and their offline
//!   report: `flow/offline.rs` with the local file in [`store`]; the call between the module and
//!   the client library (crate `pam-totp-store`): [`fleet::wire`]; the same messages to the
//!   host's agent, and who may listen on its socket: [`fleet::agent`].
//! - Every C entry point runs Rust code through [`quiet_panic::catch_quietly`].
#![deny(unsafe_code)]

pub mod clock;
pub mod enroll;
pub mod escape;
pub mod fleet;
pub mod flow;
pub mod hex;
pub mod import;
pub mod names;
pub mod next_login;
pub mod options;
pub mod policy;
pub mod qr;
pub mod quiet_panic;
pub mod reason;
pub mod recovery;
pub mod secret;
pub mod selfservice;
pub mod status;
pub mod store;
pub mod sys;
pub mod throttle;
pub mod timefmt;
pub mod totp;

#[cfg(test)]
mod testutil;

#[allow(unsafe_code)]
mod ffi;

/// The Linux-PAM ABI types and constants, shared with the self-service helper's PAM client.
pub use ffi::abi as pam_abi;

/// The caller's resource limits and `SIGXFSZ` lifted (restored on drop): see `ffi/limits.rs`.
pub use ffi::limits::CallLimits;
