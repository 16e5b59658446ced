//! The admin API for the CLI (`store init` and the admin verbs) and `doctor`'s probe: one
//! session over the same connect path as the module, each method one statement of the admin
//! functions with bound parameters, returning typed rows. Errors carry PostgreSQL's message
//! ("permission denied for function enrol", "alice already has an active record; ...").
#![forbid(unsafe_code)]

use crate::connect::{self, describe, Refusal, Session, Tls};
use crate::migrations::{self, InitReport};
use crate::rows::{
    Activated, Cols, Enrolled, HostRow, ServerInfo, Settings, SettingsChange, Unlocked, UserStatus,
};
use pam_totp::fleet::{FleetError, StoreConfig};
use pam_totp::names::UserName;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row};
use zeroize::Zeroizing;

/// The most one admin statement may take (a lock held elsewhere, a stalled server).
const STATEMENT_LIMIT: Duration = Duration::from_secs(60);
/// The most `init` may take (the migrations).
const INIT_LIMIT: Duration = Duration::from_secs(600);

/// An admin session: its own runtime and one connection, to the first address of `store.toml`
/// whose server is not in recovery (admin functions write).
pub struct Admin {
    session: Option<Session>,
    rt: Runtime,
}

/// `doctor`'s contact with the store: which address answered, how long connecting took, and
/// the database clock.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Probe {
    pub address: String,
    pub connect_ms: u64,
    /// `clock_timestamp()`, unix seconds.
    pub db_time: f64,
}

fn tls_of(cfg: &StoreConfig, owner: u32) -> Result<Tls, FleetError> {
    let files = cfg
        .tls_files(owner)
        .map_err(|e| FleetError(e.to_string()))?;
    Tls::new(files.as_ref())
}

/// Connects as the module does (any role, a host's included), reads the database clock and
/// disconnects; within `cfg.budget`.
pub fn probe(cfg: &StoreConfig, owner: u32) -> Result<Probe, FleetError> {
    let tls = tls_of(cfg, owner)?;
    let rt = connect::runtime()?;
    let deadline = Instant::now() + cfg.budget;
    let r = connect::until(&rt, deadline, cfg.budget, async |trail| {
        let mut started = Instant::now();
        let (p, session) = connect::first_usable(cfg, &tls, deadline, trail, async |s| {
            let connect_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            trail.borrow_mut().at(&s.label, "clock");
            let row = s
                .client
                .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
                .await
                .map_err(|e| Refusal::Fail(describe(&e)))?;
            Ok(Probe {
                address: s.label.clone(),
                connect_ms,
                db_time: row.get(0),
            })
        })
        .await
        .inspect_err(|_| started = Instant::now())?;
        session.close(deadline).await;
        Ok(p)
    });
    drop(rt);
    r
}

/// A database error as its message; anything else (a lost connection) naming the address.
fn fail(label: &str, e: &tokio_postgres::Error) -> FleetError {
    if e.as_db_error().is_some() {
        FleetError(describe(e))
    } else {
        FleetError(format!("{label}: {}", describe(e)))
    }
}

fn one(what: &str, rows: Vec<Row>) -> Result<Row, FleetError> {
    let mut rows = rows.into_iter();
    match (rows.next(), rows.next()) {
        (Some(r), None) => Ok(r),
        _ => Err(FleetError(format!("{what}: not exactly one row"))),
    }
}

impl Admin {
    /// Connects with `cfg` (TLS files read with the trust rules for `owner`) within
    /// `cfg.budget`: the addresses in order, a standby (in recovery) skipped.
    pub fn connect(cfg: &StoreConfig, owner: u32) -> Result<Admin, FleetError> {
        let tls = tls_of(cfg, owner)?;
        let rt = connect::runtime()?;
        let deadline = Instant::now() + cfg.budget;
        let session = connect::until(&rt, deadline, cfg.budget, async |trail| {
            let ((), s) = connect::first_usable(cfg, &tls, deadline, trail, async |s| {
                trail.borrow_mut().at(&s.label, "pg_is_in_recovery");
                let row = s
                    .client
                    .query_one("SELECT pg_is_in_recovery()", &[])
                    .await
                    .map_err(|e| Refusal::Fail(describe(&e)))?;
                if row.get::<_, bool>(0) {
                    Err(Refusal::Standby)
                } else {
                    Ok(())
                }
            })
            .await?;
            Ok(s)
        })?;
        Ok(Admin {
            session: Some(session),
            rt,
        })
    }

    /// The address (or socket) this session is connected to.
    pub fn address(&self) -> &str {
        self.session.as_ref().map_or("", |s| s.label.as_str())
    }

    fn client(&mut self) -> Result<(&Runtime, &mut Client, &str), FleetError> {
        match self.session.as_mut() {
            Some(s) => Ok((&self.rt, &mut s.client, s.label.as_str())),
            None => Err(FleetError("the admin session is closed".into())),
        }
    }

    /// One statement with typed, bound parameters; its rows.
    fn query(
        &mut self,
        what: &str,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, FleetError> {
        let (rt, client, label) = self.client()?;
        match rt.block_on(async {
            tokio::time::timeout(STATEMENT_LIMIT, client.query_typed(sql, params)).await
        }) {
            Ok(r) => r.map_err(|e| fail(label, &e)),
            Err(_) => Err(FleetError(format!(
                "{label}: {what}: no answer within {} s",
                STATEMENT_LIMIT.as_secs()
            ))),
        }
    }

    fn query_one(
        &mut self,
        what: &str,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Row, FleetError> {
        one(what, self.query(what, sql, params)?)
    }

    /// `store init`: applies the embedded migrations above the schema's version, each in one
    /// transaction, then names `key_file` if no key file is recorded yet. Idempotent; needs a
    /// superuser role.
    pub fn init(&mut self, key_file: Option<&Path>) -> Result<InitReport, FleetError> {
        let (rt, client, label) = self.client()?;
        rt.block_on(async {
            tokio::time::timeout(INIT_LIMIT, migrations::init(client, key_file)).await
        })
        .unwrap_or_else(|_| {
            Err(FleetError(format!(
                "{label}: init: no answer within {} s",
                INIT_LIMIT.as_secs()
            )))
        })
    }

    /// `pam_totp.enrol`: a pending record (`secret` `None`: generated in the database and
    /// returned once).
    #[allow(clippy::too_many_arguments)]
    pub fn enrol(
        &mut self,
        user: &UserName,
        secret: Option<&[u8]>,
        algorithm: &str,
        digits: u8,
        period: u32,
        issuer: &str,
        recovery_entries: &[String],
        force: bool,
    ) -> Result<Enrolled, FleetError> {
        const W: &str = "pam_totp.enrol";
        let digits = i32::from(digits);
        let period = i32::try_from(period).unwrap_or(i32::MAX);
        let row = self.query_one(
            W,
            "SELECT secret, replaces_active FROM pam_totp.enrol($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                (&user.as_str(), Type::TEXT),
                (&secret, Type::BYTEA),
                (&algorithm, Type::TEXT),
                (&digits, Type::INT4),
                (&period, Type::INT4),
                (&issuer, Type::TEXT),
                (&recovery_entries, Type::TEXT_ARRAY),
                (&force, Type::BOOL),
            ],
        )?;
        let c = Cols { what: W, row: &row };
        Ok(Enrolled {
            secret: c.get::<Option<Vec<u8>>>("secret")?.map(Zeroizing::new),
            replaces_active: c.get::<Option<bool>>("replaces_active")?.unwrap_or(false),
        })
    }

    /// `pam_totp.activate` (`window` `None`: the database's default, 1).
    pub fn activate(
        &mut self,
        user: &UserName,
        code: &str,
        window: Option<u32>,
    ) -> Result<Activated, FleetError> {
        const W: &str = "pam_totp.activate";
        let window = window.map(|w| i32::try_from(w).unwrap_or(i32::MAX));
        let row = self.query_one(
            W,
            "SELECT outcome, step, clock_offset FROM pam_totp.activate($1, $2, $3)",
            &[
                (&user.as_str(), Type::TEXT),
                (&code, Type::TEXT),
                (&window, Type::INT4),
            ],
        )?;
        let c = Cols { what: W, row: &row };
        Ok(Activated {
            outcome: c.get("outcome")?,
            step: c.unsigned_opt("step")?,
            clock_offset: c.get::<Option<i32>>("clock_offset")?.map(i64::from),
        })
    }

    /// `pam_totp.disable`: whether a record existed.
    pub fn disable(&mut self, user: &UserName) -> Result<bool, FleetError> {
        let row = self.query_one(
            "pam_totp.disable",
            "SELECT pam_totp.disable($1)",
            &[(&user.as_str(), Type::TEXT)],
        )?;
        Ok(row.get::<_, Option<bool>>(0).unwrap_or(false))
    }

    /// `pam_totp.unlock` (an error when the user has no record).
    pub fn unlock(&mut self, user: &UserName, reset_clock: bool) -> Result<Unlocked, FleetError> {
        const W: &str = "pam_totp.unlock";
        let row = self.query_one(
            W,
            "SELECT previous_last_step, last_step, was_future FROM pam_totp.unlock($1, $2)",
            &[(&user.as_str(), Type::TEXT), (&reset_clock, Type::BOOL)],
        )?;
        let c = Cols { what: W, row: &row };
        Ok(Unlocked {
            previous_last_step: c.unsigned_opt("previous_last_step")?,
            last_step: c.unsigned_opt("last_step")?.unwrap_or(0),
            was_future: c.get::<Option<bool>>("was_future")?.unwrap_or(false),
        })
    }

    /// `pam_totp.renew_recovery`: replaces the user's recovery entries; their count.
    pub fn renew_recovery(
        &mut self,
        user: &UserName,
        entries: &[String],
    ) -> Result<u32, FleetError> {
        const W: &str = "pam_totp.renew_recovery";
        let row = self.query_one(
            W,
            "SELECT pam_totp.renew_recovery($1, $2) AS n",
            &[(&user.as_str(), Type::TEXT), (&entries, Type::TEXT_ARRAY)],
        )?;
        Cols { what: W, row: &row }.unsigned("n")
    }

    /// `pam_totp.status`: one user's row (none: no record), or every user's.
    pub fn status(&mut self, user: Option<&UserName>) -> Result<Vec<UserStatus>, FleetError> {
        let user = user.map(UserName::as_str);
        self.query(
            "pam_totp.status",
            "SELECT * FROM pam_totp.status($1)",
            &[(&user, Type::TEXT)],
        )?
        .iter()
        .map(UserStatus::from_row)
        .collect()
    }

    /// `pam_totp.settings()`.
    pub fn settings(&mut self) -> Result<Settings, FleetError> {
        const W: &str = "pam_totp.settings";
        let row = self.query_one(
            W,
            "SELECT attempts, lock_seconds, max_lock_seconds, max_window, \
             recovery_replay_seconds FROM pam_totp.settings()",
            &[],
        )?;
        Settings::from_row(W, &row)
    }

    /// `pam_totp.set_settings`: the new settings.
    pub fn set_settings(&mut self, change: SettingsChange) -> Result<Settings, FleetError> {
        const W: &str = "pam_totp.set_settings";
        let row = self.query_one(
            W,
            "SELECT attempts, lock_seconds, max_lock_seconds, max_window, \
             recovery_replay_seconds FROM pam_totp.set_settings($1, $2, $3, $4, $5)",
            &[
                (&change.attempts, Type::INT4),
                (&change.lock_seconds, Type::INT4),
                (&change.max_lock_seconds, Type::INT4),
                (&change.max_window, Type::INT4),
                (&change.recovery_replay_seconds, Type::INT4),
            ],
        )?;
        Settings::from_row(W, &row)
    }

    fn bool_call(&mut self, what: &str, sql: &str, name: &str) -> Result<bool, FleetError> {
        let row = self.query_one(what, sql, &[(&name, Type::TEXT)])?;
        Ok(row.get::<_, Option<bool>>(0).unwrap_or(false))
    }

    /// `pam_totp.add_host`: whether a role was created (false: a known host re-enabled).
    pub fn add_host(&mut self, name: &str) -> Result<bool, FleetError> {
        self.bool_call("pam_totp.add_host", "SELECT pam_totp.add_host($1)", name)
    }

    /// `pam_totp.revoke_host`: whether it was an enabled host.
    pub fn revoke_host(&mut self, name: &str) -> Result<bool, FleetError> {
        self.bool_call(
            "pam_totp.revoke_host",
            "SELECT pam_totp.revoke_host($1)",
            name,
        )
    }

    /// `pam_totp.hosts()`.
    pub fn hosts(&mut self) -> Result<Vec<HostRow>, FleetError> {
        self.query(
            "pam_totp.hosts",
            "SELECT name, added, revoked, last_seen FROM pam_totp.hosts()",
            &[],
        )?
        .iter()
        .map(HostRow::from_row)
        .collect()
    }

    /// The server's version, clock, recovery state and synchronous standbys.
    pub fn server_info(&mut self) -> Result<ServerInfo, FleetError> {
        const W: &str = "server info";
        let row = self.query_one(
            W,
            "SELECT version() AS version, \
                    extract(epoch FROM clock_timestamp())::float8 AS db_time, \
                    pg_is_in_recovery() AS in_recovery, \
                    CASE WHEN pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') \
                         THEN ARRAY(SELECT application_name::text FROM pg_stat_replication \
                                    WHERE sync_state IN ('sync', 'quorum') ORDER BY 1) \
                    END AS sync_standbys",
            &[],
        )?;
        let c = Cols { what: W, row: &row };
        Ok(ServerInfo {
            version: c.get("version")?,
            db_time: c.get("db_time")?,
            in_recovery: c.get("in_recovery")?,
            sync_standbys: c.get("sync_standbys")?,
        })
    }
}

impl Drop for Admin {
    /// Ends the session politely (within a second); the runtime goes with it.
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.rt
                .block_on(s.close(Instant::now() + Duration::from_secs(1)));
        }
    }
}
