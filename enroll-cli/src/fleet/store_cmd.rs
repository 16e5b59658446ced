//! `pam-totp --store FILE store init|add-host|revoke-host|hosts|settings`.

use super::args::{AddHostArgs, InitArgs, SettingsArgs, StoreArgs, StoreCommand};
use super::host_files::{self, HostToml, HOST_DIR};
use super::Fleet;
use crate::error::{CliError, Result};
use crate::output::{self, out, outln, print_json, time};
use pam_totp::escape::terminal_safe;
use pam_totp::fleet::Endpoint;
use pam_totp_store::{HostRow, InitReport, Settings, SettingsChange, MIGRATIONS};
use serde::Serialize;

pub fn run(f: &Fleet, a: &StoreArgs) -> Result<()> {
    match &a.command {
        StoreCommand::Init(a) => init(f, a),
        StoreCommand::AddHost(a) => add_host(f, a),
        StoreCommand::RevokeHost(a) => revoke_host(f, &a.name),
        StoreCommand::Hosts(a) => hosts(f, a.json),
        StoreCommand::Settings(a) => settings(f, a),
    }
}

/// What `store init` did, in words.
pub fn init_text(r: &InitReport, key_file_given: bool) -> String {
    let mut t = String::new();
    if r.applied.is_empty() {
        let latest = MIGRATIONS.last().map_or(0, |m| m.0);
        t.push_str(&format!(
            "Nothing to apply: the schema is up to date (migration {latest}).\n"
        ));
    }
    for v in &r.applied {
        let name = MIGRATIONS.iter().find(|m| m.0 == *v).map_or("?", |m| m.1);
        t.push_str(&format!("Applied migration {v} ({name}).\n"));
    }
    match (&r.key_id, key_file_given) {
        (Some(id), _) => t.push_str(&format!(
            "Key file recorded (key id {id}): keep it on every server of the cluster, and a \
             copy apart from the database backups.\n"
        )),
        (None, true) => t.push_str(
            "A key file was recorded before; it was kept (pam_totp.rotate_key changes it).\n",
        ),
        (None, false) => t.push_str(
            "No --key-file given: if none is recorded yet, codes cannot be checked until one \
             is (store init --key-file PATH).\n",
        ),
    }
    t
}

fn init(f: &Fleet, a: &InitArgs) -> Result<()> {
    if let Some(k) = &a.key_file {
        if !k.is_absolute() {
            return Err(CliError::new(format!(
                "--key-file {} is not an absolute path; the server reads it as given",
                k.display()
            )));
        }
    }
    let r = f
        .admin()?
        .init(a.key_file.as_deref())
        .map_err(|e| f.fail("cannot set the store up", e))?;
    out!("{}", init_text(&r, a.key_file.is_some()))
}

fn check_host(name: &str) -> Result<()> {
    if host_files::valid_host_name(name) {
        return Ok(());
    }
    Err(
        CliError::new(format!("invalid host name {:?}", terminal_safe(name))).hint(
            "a host name (its role and the CN of its certificate) must match \
         ^[a-z0-9][a-z0-9.-]{0,62}$: lower-case letters, digits, '.' and '-'",
        ),
    )
}

fn add_host(f: &Fleet, a: &AddHostArgs) -> Result<()> {
    let name = a.name.as_str();
    check_host(name)?;
    // The host's store.toml, checked before anything changes.
    let toml = match &a.out {
        None => None,
        Some(_) => {
            let (own, own_name) = match &f.cfg.endpoint {
                Endpoint::Tls {
                    addresses,
                    server_name,
                    ..
                } => (addresses.clone(), server_name.clone()),
                Endpoint::Socket { .. } => (Vec::new(), None),
            };
            let addresses = if a.address.is_empty() {
                own
            } else {
                a.address.clone()
            };
            if addresses.is_empty() {
                return Err(CliError::new(format!(
                    "no address for {name}'s store.toml: {} connects over a unix socket",
                    f.path.display()
                ))
                .hint("give the server's address(es) as the hosts reach it: --address IP:PORT"));
            }
            let server_name = a.server_name.clone().or(own_name);
            let text = host_files::store_toml(&HostToml {
                name,
                addresses: &addresses,
                server_name: server_name.as_deref(),
                database: &f.cfg.database,
            });
            pam_totp::fleet::StoreConfig::parse(std::path::Path::new("store.toml"), &text)
                .map_err(|e| {
                    CliError::new(format!("the host's store.toml would be invalid: {e}"))
                })?;
            Some(text)
        }
    };
    let created = f
        .admin()?
        .add_host(name)
        .map_err(|e| f.fail(&format!("cannot add host {name}"), e))?;
    if created {
        outln!("Added host {name}: role {name} (in pam_totp_host) logs in with a certificate whose CN is {name}.")?;
    } else {
        outln!("Host {name} was known already: it is enabled (again).")?;
    }
    let (Some(toml), Some(out), Some(ca_cert), Some(ca_key)) =
        (toml, &a.out, &a.ca_cert, &a.ca_key)
    else {
        outln!(
            "Its certificate: CN={name}, signed by the CA the server trusts (ssl_ca_file); \
             `store add-host {name} --ca-cert FILE --ca-key FILE --out DIR` makes it and the \
             host's store.toml."
        )?;
        return pg_hba_note(f, name);
    };
    let files = host_files::make(name, ca_cert, ca_key, out, &toml).map_err(|e| {
        e.hint(
            "the host's role exists; run the command again once fixed (`store add-host` \
             re-enables a known host)",
        )
    })?;
    outln!(
        "Wrote {name}'s files (certificate valid {} days):",
        host_files::CERT_DAYS
    )?;
    for p in &files {
        outln!("  {}", p.display())?;
    }
    outln!(
        "Copy them to {name}'s {HOST_DIR}/ (root:root, modes kept: store.toml and the key \
         0600), e.g. scp -p {}/* root@{name}:{HOST_DIR}/ — then run there: pam-totp --store \
         {HOST_DIR}/store.toml doctor",
        out.display()
    )?;
    pg_hba_note(f, name)
}

fn pg_hba_note(f: &Fleet, name: &str) -> Result<()> {
    outln!(
        "The server's pg_hba.conf needs: hostssl {} {name} HOST-IP/32 cert",
        f.cfg.database
    )
}

fn revoke_host(f: &Fleet, name: &str) -> Result<()> {
    check_host(name)?;
    let was = f
        .admin()?
        .revoke_host(name)
        .map_err(|e| f.fail(&format!("cannot revoke host {name}"), e))?;
    if !was {
        return outln!(
            "{name} is not an enabled host (unknown, or revoked before); nothing changed."
        );
    }
    outln!(
        "Revoked host {name}: its role can no longer log in to the store (kept for the audit). \
         Sessions open now (its pam-totp-agent's) are refused at their next call."
    )?;
    outln!("If the server checks a CRL (ssl_crl_file), revoke {name}'s certificate there as well.")
}

#[derive(Serialize)]
pub struct HostJson {
    name: String,
    added: String,
    revoked: Option<String>,
    last_seen: Option<String>,
}

pub fn host_json(h: &HostRow) -> HostJson {
    HostJson {
        name: h.name.clone(),
        added: time(h.added),
        revoked: h.revoked.map(time),
        last_seen: h.last_seen.map(time),
    }
}

pub fn hosts_table(rows: &[HostJson]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|h| {
            [
                &h.name,
                &h.added,
                h.revoked.as_deref().unwrap_or("-"),
                h.last_seen.as_deref().unwrap_or("never"),
            ]
            .iter()
            .map(|c| terminal_safe(c))
            .collect()
        })
        .collect();
    output::table(&["HOST", "ADDED", "REVOKED", "LAST SEEN"], &cells)
}

fn hosts(f: &Fleet, json: bool) -> Result<()> {
    let rows = f
        .admin()?
        .hosts()
        .map_err(|e| f.fail("cannot list the hosts", e))?;
    let rows: Vec<HostJson> = rows.iter().map(host_json).collect();
    if json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        return outln!("No hosts yet: pam-totp {}store add-host NAME", f.arg());
    }
    out!("{}", hosts_table(&rows))
}

pub fn change(a: &SettingsArgs) -> SettingsChange {
    SettingsChange {
        attempts: a.attempts,
        lock_seconds: a.lock_seconds,
        max_lock_seconds: a.max_lock_seconds,
        max_window: a.max_window,
        recovery_replay_seconds: a.recovery_replay_seconds,
    }
}

pub fn settings_text(s: &Settings) -> String {
    [
        (
            "attempts",
            s.attempts,
            "wrong codes in a row before the lock",
        ),
        (
            "lock_seconds",
            s.lock_seconds,
            "first lock; doubles with each further wrong code",
        ),
        ("max_lock_seconds", s.max_lock_seconds, "longest lock"),
        (
            "max_window",
            s.max_window,
            "widest window a host may ask for, in steps",
        ),
        (
            "recovery_replay_seconds",
            s.recovery_replay_seconds,
            "a burned recovery code counts as a replay, not as wrong, this long",
        ),
    ]
    .iter()
    .map(|(k, v, what)| format!("  {k:<24} {v:<6} {what}\n"))
    .collect()
}

fn settings(f: &Fleet, a: &SettingsArgs) -> Result<()> {
    let change = change(a);
    let mut admin = f.admin()?;
    let changing = change != SettingsChange::default();
    let s = if changing {
        admin
            .set_settings(change)
            .map_err(|e| f.fail("cannot change the settings", e))?
    } else {
        admin
            .settings()
            .map_err(|e| f.fail("cannot read the settings", e))?
    };
    if a.json {
        return print_json(&s);
    }
    outln!(
        "{}",
        if changing {
            "Settings changed; every host uses them from its next check:"
        } else {
            "Fleet-wide settings (they replace the policy's [throttle] in fleet mode):"
        }
    )?;
    out!("{}", settings_text(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_init_reports_then_the_text_says_what_was_done() {
        let first = InitReport {
            applied: vec![1],
            key_id: Some("0011223344556677".into()),
        };
        let t = init_text(&first, true);
        assert!(t.starts_with("Applied migration 1 (001_init).\n"), "{t}");
        assert!(t.contains("key id 0011223344556677"), "{t}");
        let t = init_text(&InitReport::default(), true);
        let last = pam_totp_store::MIGRATIONS.last().unwrap().0;
        assert!(
            t.starts_with(&format!(
                "Nothing to apply: the schema is up to date (migration {last})."
            )),
            "{t}"
        );
        assert!(t.contains("recorded before"), "{t}");
        assert!(init_text(&InitReport::default(), false).contains("No --key-file given"));
    }

    #[test]
    fn given_settings_then_one_aligned_line_each() {
        let t = settings_text(&Settings {
            attempts: 3,
            lock_seconds: 60,
            max_lock_seconds: 3600,
            max_window: 10,
            recovery_replay_seconds: 300,
        });
        assert_eq!(t.lines().count(), 5);
        assert!(
            t.starts_with("  attempts                 3      wrong codes"),
            "{t}"
        );
        assert!(
            t.contains("  max_lock_seconds         3600   longest lock\n"),
            "{t}"
        );
    }

    #[test]
    fn given_hosts_then_json_times_and_a_table() {
        let rows = [
            host_json(&HostRow {
                name: "web-01".into(),
                added: 1_700_000_000,
                revoked: None,
                last_seen: Some(1_700_000_100),
            }),
            host_json(&HostRow {
                name: "h2".into(),
                added: 1_700_000_000,
                revoked: Some(1_700_000_200),
                last_seen: None,
            }),
        ];
        let j = serde_json::to_value(&rows).unwrap();
        assert_eq!(j[0]["last_seen"], "2023-11-14T22:15:00Z");
        assert!(j[0]["revoked"].is_null() && j[1]["last_seen"].is_null());
        let t = hosts_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "HOST    ADDED                 REVOKED               LAST SEEN"
        );
        assert_eq!(
            lines[1],
            "web-01  2023-11-14T22:13:20Z  -                     2023-11-14T22:15:00Z"
        );
        assert!(lines[2].ends_with("never"));
    }

    #[test]
    fn given_no_settings_options_then_nothing_changes() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            let cli = crate::cli::Cli::try_parse_from(
                ["pam-totp", "store", "settings"].iter().chain(args),
            )
            .unwrap();
            let crate::cli::Command::Store(StoreArgs {
                command: StoreCommand::Settings(s),
            }) = cli.command
            else {
                panic!()
            };
            change(&s)
        };
        assert_eq!(parse(&["--json"]), SettingsChange::default());
        let c = parse(&["--lock-seconds", "30", "--max-window", "0"]);
        assert_eq!(
            (c.lock_seconds, c.max_window, c.attempts),
            (Some(30), Some(0), None)
        );
    }

    #[test]
    fn given_a_bad_host_name_then_refused_with_the_rule() {
        let e = check_host("Web_01").unwrap_err();
        assert!(e.hints[0].contains("^[a-z0-9][a-z0-9.-]{0,62}$"));
        assert!(check_host("web-01").is_ok());
    }
}
