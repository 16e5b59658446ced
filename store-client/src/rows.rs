//! What the admin functions return, as typed rows (fleet/sql/001_init.sql's result types;
//! times as unix seconds). `Serialize` so that the CLI can print them as JSON.
#![forbid(unsafe_code)]

use pam_totp::fleet::FleetError;
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;
use zeroize::Zeroizing;

/// `pam_totp.enrol`: the generated key (returned once; `None` when one was imported), and
/// whether the pending record replaces an active one (`enroll --force`).
#[derive(Debug)]
pub struct Enrolled {
    pub secret: Option<Zeroizing<Vec<u8>>>,
    pub replaces_active: bool,
}

/// `pam_totp.activate`: outcome `activated | wrong | replay | already_active | not_enrolled`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Activated {
    pub outcome: String,
    pub step: Option<u64>,
    pub clock_offset: Option<i64>,
}

/// `pam_totp.unlock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unlocked {
    pub previous_last_step: Option<u64>,
    pub last_step: u64,
    /// The old step lay beyond now + 10 steps (a clock that was ahead).
    pub was_future: bool,
}

/// One row of `pam_totp.status` (every column of `pam_totp.user_status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserStatus {
    pub name: String,
    /// `active | pending`
    pub status: String,
    pub replaces_active: bool,
    pub algorithm: String,
    pub digits: u8,
    pub period: u32,
    pub issuer: String,
    pub created: u64,
    pub last_step: Option<u64>,
    pub last_offset: Option<i64>,
    pub failures: u32,
    /// Unix seconds, 0: not locked.
    pub locked_until: u64,
    pub locked: bool,
    pub last_success_time: Option<u64>,
    pub last_success_host: Option<String>,
    pub last_success_rhost: Option<String>,
    pub recovery_left: u32,
    pub db_time: u64,
}

/// `pam_totp.settings()`: the fleet-wide throttle and window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub attempts: i32,
    pub lock_seconds: i32,
    pub max_lock_seconds: i32,
    pub max_window: i32,
    pub recovery_replay_seconds: i32,
}

/// `pam_totp.set_settings`: `None` keeps a value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub attempts: Option<i32>,
    pub lock_seconds: Option<i32>,
    pub max_lock_seconds: Option<i32>,
    pub max_window: Option<i32>,
    pub recovery_replay_seconds: Option<i32>,
}

/// One row of `pam_totp.hosts()`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostRow {
    pub name: String,
    pub added: u64,
    pub revoked: Option<u64>,
    /// Its latest audited call.
    pub last_seen: Option<u64>,
}

/// The server as `doctor` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerInfo {
    /// `version()`
    pub version: String,
    /// `clock_timestamp()`, unix seconds.
    pub db_time: f64,
    pub in_recovery: bool,
    /// `application_name` of the standbys in `pg_stat_replication` with `sync_state` `sync` or
    /// `quorum`; `None` when this role may not see them (not in `pg_read_all_stats`).
    pub sync_standbys: Option<Vec<String>>,
}

/// Reads typed columns of one row, naming the function in errors.
pub(crate) struct Cols<'a> {
    pub(crate) what: &'a str,
    pub(crate) row: &'a Row,
}

impl<'a> Cols<'a> {
    fn err(&self, msg: String) -> FleetError {
        FleetError(format!("{}: {msg}", self.what))
    }

    pub(crate) fn get<T: FromSql<'a>>(&self, name: &str) -> Result<T, FleetError> {
        self.row
            .try_get(name)
            .map_err(|e| self.err(format!("column {name}: {}", crate::connect::describe(&e))))
    }

    /// A non-negative integer column that must not be NULL.
    pub(crate) fn unsigned<T: TryFrom<i64>>(&self, name: &str) -> Result<T, FleetError> {
        self.unsigned_opt(name)?
            .ok_or_else(|| self.err(format!("column {name} is NULL")))
    }

    pub(crate) fn unsigned_opt<T: TryFrom<i64>>(
        &self,
        name: &str,
    ) -> Result<Option<T>, FleetError> {
        let v = match self.row.columns().iter().position(|c| c.name() == name) {
            Some(i) if *self.row.columns()[i].type_() == tokio_postgres::types::Type::INT4 => {
                self.get::<Option<i32>>(name)?.map(i64::from)
            }
            _ => self.get::<Option<i64>>(name)?,
        };
        v.map(|v| T::try_from(v).map_err(|_| self.err(format!("column {name}: {v} out of range"))))
            .transpose()
    }

    /// A `timestamptz` column as unix seconds (NULL: `None`).
    pub(crate) fn time(&self, name: &str) -> Result<Option<u64>, FleetError> {
        Ok(self
            .get::<Option<SystemTime>>(name)?
            .map(|t| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())))
    }
}

impl UserStatus {
    pub(crate) fn from_row(row: &Row) -> Result<UserStatus, FleetError> {
        let c = Cols {
            what: "pam_totp.status",
            row,
        };
        Ok(UserStatus {
            name: c.get("name")?,
            status: c.get("status")?,
            replaces_active: c.get("replaces_active")?,
            algorithm: c.get("algorithm")?,
            digits: c.unsigned("digits")?,
            period: c.unsigned("period")?,
            issuer: c.get("issuer")?,
            created: c.time("created")?.unwrap_or(0),
            last_step: c.unsigned_opt("last_step")?,
            last_offset: c.get::<Option<i32>>("last_offset")?.map(i64::from),
            failures: c.unsigned("failures")?,
            locked_until: c.unsigned("locked_until")?,
            locked: c.get::<Option<bool>>("locked")?.unwrap_or(false),
            last_success_time: c.time("last_success_time")?,
            last_success_host: c.get("last_success_host")?,
            last_success_rhost: c.get("last_success_rhost")?,
            recovery_left: c.unsigned_opt("recovery_left")?.unwrap_or(0),
            db_time: c.unsigned("db_time")?,
        })
    }
}

impl Settings {
    pub(crate) fn from_row(what: &str, row: &Row) -> Result<Settings, FleetError> {
        let c = Cols { what, row };
        Ok(Settings {
            attempts: c.get("attempts")?,
            lock_seconds: c.get("lock_seconds")?,
            max_lock_seconds: c.get("max_lock_seconds")?,
            max_window: c.get("max_window")?,
            recovery_replay_seconds: c.get("recovery_replay_seconds")?,
        })
    }
}

impl HostRow {
    pub(crate) fn from_row(row: &Row) -> Result<HostRow, FleetError> {
        let c = Cols {
            what: "pam_totp.hosts",
            row,
        };
        Ok(HostRow {
            name: c.get("name")?,
            added: c.time("added")?.unwrap_or(0),
            revoked: c.time("revoked")?,
            last_seen: c.time("last_seen")?,
        })
    }
}
