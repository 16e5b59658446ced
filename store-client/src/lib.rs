//! The fleet store client (SPEC §11; fleet/README.md): PostgreSQL through tokio-postgres and
//! rustls, as measured in "Choosing the client".
//!
//! * As a cdylib (`libpam_totp_store.so`), loaded by `pam_totp.so` only when `store=` is set:
//!   the one C entry point [`pam_totp_store_v1`] ([`pam_totp::fleet::wire`]), which runs
//!   [`call`].
//! * As an rlib, for the CLI: [`Admin`] (the admin functions over one session) and [`probe`]
//!   (`doctor`).
//!
//! Every call builds a current-thread runtime and drops it before returning: no thread, no
//! fd and no connection outlives a call. Nothing is ever printed; errors are [`FleetError`]s.
//!
//! [`FleetError`]: pam_totp::fleet::FleetError
#![deny(unsafe_code)]

mod admin;
pub mod agent;
mod connect;
mod ffi;
mod migrations;
mod module_call;
mod notify;
mod rows;
mod tls;

pub use admin::{probe, Admin, Probe};
pub use ffi::pam_totp_store_v1;
pub use migrations::{InitReport, MIGRATIONS};
pub use module_call::call;
pub use rows::{
    Activated, Enrolled, HostRow, ServerInfo, Settings, SettingsChange, Unlocked, UserStatus,
};
