//! pam_totp — time-based one-time passwords (RFC 6238) as a second factor for PAM logins.
//!
//! The crate is both the PAM module (`cdylib`, see [`ffi`]) and the library that the admin CLI
//! and the tests link (`rlib`). All `unsafe` code lives in the `ffi` module; everything else
//! forbids it.
//!
//! Shape: `ffi` (the only unsafe code, the only place that reads the clock) → [`flow`] (one
//! decision function, generic over a conversation) → [`store`] (the only code that touches files),
//! with the pure helpers [`totp`], [`recovery`], [`throttle`], [`policy`] and [`options`], and the
//! parsers of other modules' files that the CLI imports from ([`import`]).
#![deny(unsafe_code)]

pub mod clock;
pub mod enroll;
pub mod escape;
pub mod flow;
pub mod hex;
pub mod import;
pub mod names;
pub mod next_login;
pub mod options;
pub mod policy;
pub mod qr;
pub mod reason;
pub mod recovery;
pub mod secret;
pub mod store;
pub mod sys;
pub mod throttle;
pub mod timefmt;
pub mod totp;

#[cfg(test)]
mod testutil;

#[allow(unsafe_code)]
mod ffi;
