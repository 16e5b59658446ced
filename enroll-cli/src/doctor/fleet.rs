//! Fleet mode (`--store`): the store's `store.toml` and TLS files (trust, owner, mode), each
//! address's connection (which answered, how fast, why not), the clock difference between
//! this host and the database (codes are judged by the database's clock), and the server:
//! primary or standby, synchronous standbys attached.

use super::report::Section;
use super::store_fix;
use crate::fleet::host_files::{openssl, OPENSSL};
use pam_totp::fleet::agent::{self, AgentError};
use pam_totp::fleet::{Endpoint, StoreConfig};
use pam_totp_store::{probe, Admin, ServerInfo};
use std::ffi::OsStr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Above this many seconds between the two clocks: a warning; above [`CLOCK_ERROR`]: an error.
pub(super) const CLOCK_WARN: f64 = 5.0;
pub(super) const CLOCK_ERROR: f64 = 30.0;

fn now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub(super) fn check_store(path: &Path, owner: u32) -> Section {
    let mut s = Section::new(format!("Fleet store {}", path.display()));
    let cfg = match StoreConfig::load(path, owner) {
        Ok(c) => {
            s.ok(format!(
                "parses and is trusted (not a link, owner and mode 0600 checked); role {}, \
                 database {}",
                c.role, c.database
            ));
            c
        }
        Err(e) => {
            let text = format!("{e}: pam_totp cannot ask the store (logins: PAM_AUTHINFO_UNAVAIL)");
            s.error(
                text,
                store_fix(e, "fix store.toml (see pam-totp store --help)"),
            );
            return s;
        }
    };
    match &cfg.endpoint {
        Endpoint::Socket { dir, port } => s.note(format!(
            "unix socket {}/.s.PGSQL.{port}: no TLS (the server authenticates the OS user; \
             for the database server itself)",
            dir.display()
        )),
        Endpoint::Tls { ca, cert, key, .. } => match cfg.tls_files(owner) {
            Ok(_) => {
                s.ok(format!(
                    "TLS files trusted: CA {}, certificate {}, key {} (0600)",
                    ca.display(),
                    cert.display(),
                    key.display()
                ));
                check_certificate(&mut s, cert, &cfg.role);
            }
            Err(e) => {
                let text = format!("{e}: the TLS connection cannot be set up");
                s.error(text, store_fix(e, "fix the files store.toml names"));
                return s;
            }
        },
    }
    check_agent(&mut s, &cfg);
    if let Some(db_time) = check_addresses(&mut s, &cfg, owner) {
        check_clock_difference(&mut s, db_time);
        match Admin::connect(&cfg, owner).and_then(|mut a| a.server_info()) {
            Ok(info) => check_server(&mut s, &info, &cfg.role),
            Err(e) => s.error(
                format!("no address leads to a primary server: {}", e.0),
                "the store takes writes only on the primary: check the failover (Patroni...) \
                 and the order of addresses in store.toml",
            ),
        }
    }
    s
}

/// The host's agent (`agent_socket`): listening, as root?
fn check_agent(s: &mut Section, cfg: &StoreConfig) {
    let Some(sock) = &cfg.agent_socket else {
        s.note(
            "no agent_socket: each login connects to the store itself (two TLS connections); \
             a busy host runs pam-totp-agent (README, \"The host agent\")",
        );
        return;
    };
    match agent::probe(sock) {
        Ok(()) => s.ok(format!(
            "agent listening on {} (root): logins ask it over its open sessions",
            sock.display()
        )),
        Err(AgentError::NotReached(e)) => s.warn(
            format!("{e}: logins connect to the store themselves (slower, still checked)"),
            "start the agent: systemctl enable --now pam-totp-agent",
        ),
        Err(AgentError::Failed(e)) => s.error(
            format!("{e}: logins are denied"),
            "stop whatever listens there; only pam-totp-agent (root) may",
        ),
    }
}

/// The certificate's subject and lifetime, if openssl is there to read it.
fn check_certificate(s: &mut Section, cert: &Path, role: &str) {
    if !Path::new(OPENSSL).exists() {
        return;
    }
    let args = |days: &'static str| {
        [
            OsStr::new("x509"),
            OsStr::new("-noout"),
            OsStr::new("-subject"),
            OsStr::new("-nameopt"),
            OsStr::new("RFC2253"),
            OsStr::new("-in"),
            cert.as_os_str(),
            OsStr::new("-checkend"),
            OsStr::new(days),
        ]
    };
    let renew = "make a new one: pam-totp --store ADMIN-FILE store add-host NAME --ca-cert \
                 ... --out DIR (on the admin's machine), and copy it here";
    match openssl(&args("0"), None) {
        Err(_) => s.error(
            format!("the certificate {} has expired", cert.display()),
            renew,
        ),
        Ok(out) => {
            let text = String::from_utf8_lossy(&out);
            let cn = text
                .lines()
                .find_map(|l| l.strip_prefix("subject="))
                .and_then(|l| l.split(',').find_map(|p| p.trim().strip_prefix("CN=")))
                .unwrap_or("")
                .to_string();
            if cn != role {
                s.warn(
                    format!("the certificate's CN is {cn:?}, the role is {role:?}"),
                    "with `cert` authentication the server logs the host in only as the role \
                     its certificate names: make them equal",
                );
            }
            if openssl(&args("2592000"), None).is_err() {
                s.warn(
                    format!("the certificate {} expires within 30 days", cert.display()),
                    renew,
                );
            }
        }
    }
}

/// Each address in turn; the database clock (and the local time it was read at) from the
/// first that answered.
fn check_addresses(s: &mut Section, cfg: &StoreConfig, owner: u32) -> Option<(f64, f64)> {
    let singles: Vec<StoreConfig> = match &cfg.endpoint {
        Endpoint::Tls { addresses, .. } => addresses
            .iter()
            .map(|a| {
                let mut c = cfg.clone();
                if let Endpoint::Tls { addresses, .. } = &mut c.endpoint {
                    *addresses = vec![*a];
                }
                c
            })
            .collect(),
        Endpoint::Socket { .. } => vec![cfg.clone()],
    };
    let mut first = None;
    let mut failed = Vec::new();
    for c in &singles {
        match probe(c, owner) {
            Ok(p) => {
                let local = now_f64();
                s.ok(format!(
                    "{} answered: connected in {} ms",
                    p.address, p.connect_ms
                ));
                first.get_or_insert((p.db_time, local));
            }
            Err(e) => failed.push(e.0),
        }
    }
    for e in failed {
        let fix = connect_fix(&e);
        if first.is_some() {
            s.warn(format!("{e} (another address answered)"), fix);
        } else {
            s.error(e, fix);
        }
    }
    first
}

/// What to do about a failed connection, from its error's words.
pub(super) fn connect_fix(e: &str) -> String {
    let e = e.to_lowercase();
    if e.contains("pg_hba") || e.contains("authentication") || e.contains("not permitted to log in")
    {
        "the server refused the role: pg_hba.conf needs `hostssl DATABASE ROLE HOST-IP/32 cert`, \
         the certificate's CN must be the role, and the host must not be revoked (store hosts)"
            .into()
    } else if e.contains("tls") || e.contains("certificate") || e.contains("issuer") {
        "the TLS handshake failed: the server's certificate must chain to the ca of store.toml \
         and name server_name (or the IP connected to); this host's certificate must be signed \
         by the CA the server trusts (ssl_ca_file)"
            .into()
    } else if e.contains("timeout") || e.contains("timed out") {
        "no answer in time: check the address, the firewall and that the server listens there \
         (listen_addresses)"
            .into()
    } else {
        "check that PostgreSQL runs and listens on that address (or socket), and the addresses \
         in store.toml"
            .into()
    }
}

/// `(db_time, local_time)`: the two clocks read at the same moment (within the query's time).
pub(super) fn check_clock_difference(s: &mut Section, (db, local): (f64, f64)) {
    let d = local - db;
    let text = format!(
        "this host's clock is {:.1} s {} the database's",
        d.abs(),
        if d >= 0.0 { "ahead of" } else { "behind" }
    );
    let fix = "codes are judged by the database's clock, and a wrong one refuses everyone's \
               codes: keep both clocks synchronised (timedatectl set-ntp true, or chrony)";
    if d.abs() > CLOCK_ERROR {
        s.error(text, fix);
    } else if d.abs() > CLOCK_WARN {
        s.warn(text, fix);
    } else {
        s.ok(format!("{text} (codes are judged by the database's clock)"));
    }
}

pub(super) fn check_server(s: &mut Section, info: &ServerInfo, role: &str) {
    let version = info.version.split(" on ").next().unwrap_or(&info.version);
    if info.in_recovery {
        s.error(
            format!("{version}: the server is in recovery (a standby)"),
            "the store takes writes only on the primary: check the failover",
        );
        return;
    }
    s.ok(format!("{version}, the primary (not in recovery)"));
    match &info.sync_standbys {
        Some(v) if v.is_empty() => s.warn(
            "no synchronous standby attached: a failover may lose accepted steps",
            "attach a standby and name it in synchronous_standby_names on the primary (with \
             synchronous_commit = on), so that no acknowledged step is lost when it is promoted",
        ),
        Some(v) => s.ok(format!("synchronous standbys attached: {}", v.join(", "))),
        None => s.note(format!(
            "cannot see the standbys: role {role} is not in pg_read_all_stats (an admin role \
             that is can tell whether a synchronous standby is attached)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::report::Level;
    use super::*;

    fn levels(s: &Section) -> Vec<Level> {
        s.findings.iter().map(|f| f.level).collect()
    }

    #[test]
    fn given_clock_differences_then_ok_warn_error() {
        for (d, level) in [(0.4, Level::Ok), (-6.0, Level::Warn), (31.0, Level::Error)] {
            let mut s = Section::new("t");
            check_clock_difference(&mut s, (1000.0, 1000.0 + d));
            assert_eq!(levels(&s), [level], "{d}");
        }
        let mut s = Section::new("t");
        check_clock_difference(&mut s, (1000.0, 994.0));
        assert!(
            s.findings[0].text.contains("6.0 s behind"),
            "{:?}",
            s.findings
        );
    }

    #[test]
    fn given_server_info_then_standbys_are_judged() {
        let mut info = ServerInfo {
            version: "PostgreSQL 15.18 (Debian 15.18-0+deb12u1) on x86_64-pc-linux-gnu".into(),
            db_time: 0.0,
            in_recovery: false,
            sync_standbys: Some(vec![]),
        };
        let mut s = Section::new("t");
        check_server(&mut s, &info, "postgres");
        assert_eq!(levels(&s), [Level::Ok, Level::Warn]);
        assert!(s.findings[1]
            .text
            .contains("a failover may lose accepted steps"));
        assert_eq!(
            s.findings[0].text,
            "PostgreSQL 15.18 (Debian 15.18-0+deb12u1), the primary (not in recovery)"
        );
        info.sync_standbys = Some(vec!["db-2".into()]);
        let mut s = Section::new("t");
        check_server(&mut s, &info, "postgres");
        assert_eq!(levels(&s), [Level::Ok, Level::Ok]);
        info.sync_standbys = None;
        let mut s = Section::new("t");
        check_server(&mut s, &info, "web-01");
        assert_eq!(levels(&s), [Level::Ok, Level::Note]);
        info.in_recovery = true;
        let mut s = Section::new("t");
        check_server(&mut s, &info, "web-01");
        assert_eq!(levels(&s), [Level::Error]);
    }

    #[test]
    fn given_connection_errors_then_the_fix_names_the_cause() {
        assert!(
            connect_fix("10.0.0.1:5432: TLS: invalid peer certificate: UnknownIssuer")
                .contains("TLS handshake")
        );
        assert!(
            connect_fix("certificate authentication failed for user \"web-01\"")
                .contains("pg_hba.conf")
        );
        assert!(connect_fix("no pg_hba.conf entry for host").contains("pg_hba.conf"));
        assert!(connect_fix("10.0.0.1:5432: connect timeout after 1000 ms").contains("firewall"));
        assert!(
            connect_fix("/run/x/.s.PGSQL.5432: error connecting to server: No such file")
                .contains("PostgreSQL runs")
        );
    }

    #[test]
    fn given_a_missing_store_toml_then_an_error() {
        let s = check_store(Path::new("/nonexistent/store.toml"), 0);
        assert_eq!(levels(&s), [Level::Error]);
    }
}
