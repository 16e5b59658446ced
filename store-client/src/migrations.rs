//! `store init`: the schema migrations of fleet/sql, embedded, applied as
//! `tests/fleet/lib.sh`'s `fleet_apply_migrations` does — each `NNN_*.sql` above
//! `max(pam_totp.schema_version.version)` (0 without the schema), in order, each in one
//! transaction — then the key file named once (`pam_totp.set_key_file`).
#![forbid(unsafe_code)]

use crate::connect::describe;
use pam_totp::fleet::FleetError;
use serde::Serialize;
use std::path::Path;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

/// Every migration: its number, its name (the file's, without `.sql`) and its text, in order.
/// A new `fleet/sql/NNN_*.sql` must be added here (a test compares the list with the files).
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (1, "001_init", include_str!("../../fleet/sql/001_init.sql")),
    (
        2,
        "002_offline",
        include_str!("../../fleet/sql/002_offline.sql"),
    ),
    (
        3,
        "003_hardening",
        include_str!("../../fleet/sql/003_hardening.sql"),
    ),
    (
        4,
        "004_steady",
        include_str!("../../fleet/sql/004_steady.sql"),
    ),
];

/// What `init` did: the migrations it applied (none on a second run) and, when it named the
/// key file now, the key's id (`None`: no key file given, or one was already recorded).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InitReport {
    pub applied: Vec<u32>,
    pub key_id: Option<String>,
}

fn err(what: &str, e: &tokio_postgres::Error) -> FleetError {
    let mut msg = format!("{what}: {}", describe(e));
    if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        msg.push_str(" (store init needs a superuser role)");
    }
    FleetError(msg)
}

pub(crate) async fn init(
    client: &mut Client,
    key_file: Option<&Path>,
) -> Result<InitReport, FleetError> {
    let row = client
        .query_one(
            "SELECT current_setting('is_superuser') = 'on', current_user::text, \
             to_regclass('pam_totp.schema_version') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| err("init", &e))?;
    let (superuser, role, schema): (bool, String, bool) = (row.get(0), row.get(1), row.get(2));
    if !superuser {
        return Err(FleetError(format!(
            "store init needs a superuser role; {role:?} is not one"
        )));
    }
    let current: i32 = if schema {
        client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM pam_totp.schema_version",
                &[],
            )
            .await
            .map_err(|e| err("pam_totp.schema_version", &e))?
            .get(0)
    } else {
        0
    };
    let mut report = InitReport::default();
    for &(number, name, sql) in MIGRATIONS {
        if i64::from(number) <= i64::from(current) {
            continue;
        }
        let what = format!("migration {name}");
        let tx = client.transaction().await.map_err(|e| err(&what, &e))?;
        tx.batch_execute(sql).await.map_err(|e| err(&what, &e))?;
        tx.commit().await.map_err(|e| err(&what, &e))?;
        report.applied.push(number);
    }
    if let Some(path) = key_file {
        let path = path
            .to_str()
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| FleetError(format!("key file {path:?}: not an absolute UTF-8 path")))?;
        let named: bool = client
            .query_one("SELECT EXISTS (SELECT 1 FROM pam_totp.config)", &[])
            .await
            .map_err(|e| err("pam_totp.config", &e))?
            .get(0);
        if !named {
            let id: String = client
                .query_typed("SELECT pam_totp.set_key_file($1)", &[(&path, Type::TEXT)])
                .await
                .map_err(|e| err("pam_totp.set_key_file", &e))?
                .first()
                .ok_or_else(|| FleetError("pam_totp.set_key_file: no row".into()))?
                .get(0);
            report.key_id = Some(id);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_fleet_sql_then_every_file_is_embedded_in_order() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fleet/sql");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let names: Vec<String> = MIGRATIONS.iter().map(|m| format!("{}.sql", m.1)).collect();
        assert_eq!(files, names);
        for (i, (n, name, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*n as usize, i + 1);
            assert!(name.starts_with(&format!("{n:03}_")));
            assert_eq!(
                *sql,
                std::fs::read_to_string(dir.join(format!("{name}.sql"))).unwrap()
            );
        }
    }
}
