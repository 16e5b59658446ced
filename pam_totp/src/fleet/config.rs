//! `store.toml` (SPEC §11): which store, where it is, how this host proves who it is, and how
//! long one PAM call may wait for it. Read with the trust rules of SPEC §2 (root, 0600, not a
//! link); the CA and certificate like the policy (root's, not writable by others), the key
//! like the file itself. Every value is checked here, once, for the module and the CLI alike.
#![forbid(unsafe_code)]

use crate::names::UserName;
use crate::store::{self, FileKind, StoreError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// Where the module and the CLI look without `store=` / `--store` (the CLI: and without
/// `PAM_TOTP_STORE`): nowhere — fleet mode is opt-in. This is the path the README uses.
pub const EXAMPLE_PATH: &str = "/etc/pam-totp/store.toml";
/// Where the packaged `pam-totp-agent.service` listens (its `RuntimeDirectory`), as
/// `store add-host` writes it.
pub const AGENT_SOCKET: &str = "/run/pam-totp/agent.sock";
const MAX_CONFIG_BYTES: u64 = 16 * 1024;
const MAX_PEM_BYTES: u64 = 256 * 1024;
/// Bounds of the two time limits, in milliseconds.
pub const MIN_TIMEOUT_MS: u64 = 50;
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// What a host does while the store cannot be reached (SPEC §11 `[offline]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offline {
    /// Deny (`PAM_AUTHINFO_UNAVAIL`): the default.
    Deny,
    /// Only these break-glass users, from their local record (SPEC §2).
    Local { users: Vec<UserName> },
}

/// How to reach the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// TCP with TLS to these addresses, tried in order: the server's certificate must chain to
    /// the pinned CA and name `server_name` (or, without it, the IP address connected to); this
    /// host authenticates with its client certificate.
    Tls {
        addresses: Vec<SocketAddr>,
        server_name: Option<String>,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
    /// The server's unix socket directory (a CLI on the database server itself, e.g. for
    /// `store init` as the `postgres` superuser): the server authenticates the OS user.
    Socket { dir: PathBuf, port: u16 },
}

/// A checked `store.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub endpoint: Endpoint,
    pub database: String,
    /// The database role: a host's own role (`add_host`), or an admin's.
    pub role: String,
    pub connect_timeout: Duration,
    /// The most one PAM call spends waiting for the store, all contacts together.
    pub budget: Duration,
    pub offline: Offline,
    /// The host's agent (`pam-totp-agent`), which the module asks instead of connecting
    /// itself ([`super::agent`]); it listens on this socket.
    pub agent_socket: Option<PathBuf>,
}

/// Longest socket path a unix address holds (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The TLS material `store.toml` names, read and trusted.
pub struct TlsFiles {
    pub ca_pem: Zeroizing<Vec<u8>>,
    pub cert_pem: Zeroizing<Vec<u8>>,
    pub key_pem: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsFiles { .. }")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    backend: String,
    #[serde(default)]
    addresses: Vec<String>,
    server_name: Option<String>,
    socket: Option<String>,
    port: Option<u16>,
    database: String,
    role: String,
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    connect_timeout_ms: Option<u64>,
    budget_ms: Option<u64>,
    agent_socket: Option<String>,
    #[serde(default)]
    offline: RawOffline,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOffline {
    mode: Option<String>,
    #[serde(default)]
    users: Vec<String>,
}

fn absolute(key: &str, v: Option<String>) -> Result<PathBuf, String> {
    match v {
        Some(v) if v.starts_with('/') && !v.split('/').any(|c| c == "..") => Ok(PathBuf::from(v)),
        Some(v) => Err(format!("{key} must be an absolute path, not {v:?}")),
        None => Err(format!("{key} is missing (TLS needs ca, cert and key)")),
    }
}

/// A database or role name as `add_host` allows host names, plus `_` for admin roles.
fn valid_ident(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && v.as_bytes()[0].is_ascii_alphanumeric()
}

fn millis(key: &str, v: Option<u64>, default: u64) -> Result<Duration, String> {
    let ms = v.unwrap_or(default);
    if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&ms) {
        return Err(format!(
            "{key} must be from {MIN_TIMEOUT_MS} to {MAX_TIMEOUT_MS}, not {ms}"
        ));
    }
    Ok(Duration::from_millis(ms))
}

impl StoreConfig {
    /// Parses and checks the text of `store.toml` (`path` is only for messages and errors).
    pub fn parse(path: &Path, text: &str) -> Result<StoreConfig, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| e.message().to_string())?;
        if raw.backend != "postgresql" {
            return Err(format!(
                "backend {:?} is not known (the one backend is \"postgresql\")",
                raw.backend
            ));
        }
        let endpoint = match (raw.socket, raw.addresses.is_empty()) {
            (Some(_), false) => return Err("give either addresses or socket, not both".into()),
            (None, true) => return Err("addresses is missing (or give socket)".into()),
            (Some(dir), true) => {
                if raw.ca.is_some() || raw.cert.is_some() || raw.key.is_some() {
                    return Err("ca, cert and key are for addresses, not socket".into());
                }
                Endpoint::Socket {
                    dir: absolute("socket", Some(dir))?,
                    port: raw.port.unwrap_or(5432),
                }
            }
            (None, false) => {
                if raw.port.is_some() {
                    return Err("port is for socket; give each address as IP:port".into());
                }
                let addresses = raw
                    .addresses
                    .iter()
                    .map(|a| {
                        a.parse::<SocketAddr>().map_err(|_| {
                            format!(
                                "address {a:?} is not IP:port (names are not resolved: a DNS \
                                 lookup would run outside the time budget; give the IP, and \
                                 server_name for the certificate)"
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(n) = &raw.server_name {
                    let ok = !n.is_empty()
                        && n.len() <= 253
                        && n.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
                    if !ok {
                        return Err(format!("server_name {n:?} is not a DNS name"));
                    }
                }
                Endpoint::Tls {
                    addresses,
                    server_name: raw.server_name,
                    ca: absolute("ca", raw.ca)?,
                    cert: absolute("cert", raw.cert)?,
                    key: absolute("key", raw.key)?,
                }
            }
        };
        if !valid_ident(&raw.database) {
            return Err(format!("database {:?} is not a valid name", raw.database));
        }
        if !valid_ident(&raw.role) {
            return Err(format!(
                "role {:?} is not a valid name ([a-z0-9._-], at most 63)",
                raw.role
            ));
        }
        let connect_timeout = millis("connect_timeout_ms", raw.connect_timeout_ms, 1000)?;
        let budget = millis("budget_ms", raw.budget_ms, 3000)?;
        if budget < connect_timeout {
            return Err("budget_ms must be at least connect_timeout_ms".into());
        }
        let offline = match raw.offline.mode.as_deref().unwrap_or("deny") {
            "deny" if raw.offline.users.is_empty() => Offline::Deny,
            "deny" => return Err("offline.users needs offline.mode = \"local\"".into()),
            "local" => {
                let users = raw
                    .offline
                    .users
                    .iter()
                    .map(|u| UserName::new(u).map_err(|e| format!("offline.users: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                if users.is_empty() {
                    return Err("offline.mode = \"local\" needs offline.users".into());
                }
                Offline::Local { users }
            }
            m => return Err(format!("offline.mode {m:?} is not \"deny\" or \"local\"")),
        };
        let agent_socket = match raw.agent_socket {
            None => None,
            Some(_) if matches!(endpoint, Endpoint::Socket { .. }) => {
                return Err("agent_socket is for hosts (addresses), not socket".into())
            }
            Some(a) if a.len() > MAX_SOCKET_PATH => {
                return Err(format!(
                    "agent_socket is longer than {MAX_SOCKET_PATH} bytes (a unix socket's limit)"
                ))
            }
            a => Some(absolute("agent_socket", a)?),
        };
        Ok(StoreConfig {
            path: path.to_path_buf(),
            endpoint,
            database: raw.database,
            role: raw.role,
            connect_timeout,
            budget,
            offline,
            agent_socket,
        })
    }

    /// Reads `path` as the module trusts its files (root's, 0600, not a link) and parses it.
    pub fn load(path: &Path, owner: u32) -> Result<StoreConfig, StoreError> {
        let parse_err = |msg: String| StoreError::Parse {
            file: FileKind::Fleet,
            path: path.to_path_buf(),
            msg,
        };
        let bytes = store::read_private_file(path, FileKind::Fleet, owner, MAX_CONFIG_BYTES)?
            .ok_or_else(|| parse_err("does not exist".into()))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| parse_err("not UTF-8".into()))?;
        StoreConfig::parse(path, text).map_err(parse_err)
    }

    /// The CA, certificate and key for [`Endpoint::Tls`] (`None` for a socket), read with the
    /// trust rules: CA and certificate root's and not writable by others, the key 0600.
    pub fn tls_files(&self, owner: u32) -> Result<Option<TlsFiles>, StoreError> {
        let Endpoint::Tls { ca, cert, key, .. } = &self.endpoint else {
            return Ok(None);
        };
        let missing = |p: &Path| StoreError::Parse {
            file: FileKind::Fleet,
            path: p.to_path_buf(),
            msg: "does not exist".into(),
        };
        let public = |p: &Path| {
            store::read_public_file(p, FileKind::Fleet, owner, MAX_PEM_BYTES)?
                .ok_or_else(|| missing(p))
        };
        Ok(Some(TlsFiles {
            ca_pem: public(ca)?,
            cert_pem: public(cert)?,
            key_pem: store::read_private_file(key, FileKind::Fleet, owner, MAX_PEM_BYTES)?
                .ok_or_else(|| missing(key))?,
        }))
    }

    /// The module talks to the store over TLS only: a unix socket (for the CLI on the database
    /// server, e.g. `store init` as the superuser) has no pinned CA and no check of who
    /// listens on it.
    pub fn check_module_endpoint(&self) -> Result<(), String> {
        match self.endpoint {
            Endpoint::Tls { .. } => Ok(()),
            Endpoint::Socket { .. } => Err(format!(
                "{}: socket is for the CLI on the database server (store init); the module \
                 connects with TLS: give addresses, ca, cert and key",
                self.path.display()
            )),
        }
    }

    /// Whether `user` may log in from a local record while the store is unreachable.
    pub fn offline_user(&self, user: &UserName) -> bool {
        matches!(&self.offline, Offline::Local { users } if users.contains(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = r#"
backend = "postgresql"
addresses = ["10.0.0.1:5432", "[fd00::2]:5433"]
server_name = "db.example"
database = "pamtotp"
role = "web-01"
ca = "/etc/pam-totp/store-ca.crt"
cert = "/etc/pam-totp/store-host.crt"
key = "/etc/pam-totp/store-host.key"
connect_timeout_ms = 500
budget_ms = 2000
"#;

    fn parse(t: &str) -> Result<StoreConfig, String> {
        StoreConfig::parse(Path::new("/s.toml"), t)
    }

    #[test]
    fn given_a_host_config_then_every_value_is_read() {
        let c = parse(HOST).unwrap();
        let Endpoint::Tls { addresses, .. } = &c.endpoint else {
            panic!()
        };
        assert_eq!(addresses.len(), 2);
        assert_eq!(c.role, "web-01");
        assert_eq!(c.budget, Duration::from_millis(2000));
        assert_eq!(c.offline, Offline::Deny);
    }

    #[test]
    fn given_a_host_name_as_address_then_refused() {
        let t = HOST.replace("10.0.0.1:5432", "db.example:5432");
        assert!(parse(&t).unwrap_err().contains("not resolved"));
    }

    #[test]
    fn given_tls_without_a_key_then_refused() {
        let t = HOST.replace("key = \"/etc/pam-totp/store-host.key\"\n", "");
        assert!(parse(&t).unwrap_err().contains("key is missing"));
    }

    #[test]
    fn given_unknown_keys_or_backend_then_refused() {
        assert!(parse(&format!("{HOST}sslmode = \"prefer\"\n")).is_err());
        assert!(parse(&HOST.replace("\"postgresql\"", "\"redis\"")).is_err());
    }

    #[test]
    fn given_out_of_range_times_then_refused() {
        assert!(parse(&HOST.replace("budget_ms = 2000", "budget_ms = 400")).is_err());
        assert!(parse(&HOST.replace("budget_ms = 2000", "budget_ms = 0")).is_err());
        assert!(parse(&HOST.replace("= 500", "= 600000")).is_err());
    }

    #[test]
    fn given_offline_local_then_only_the_named_users() {
        let c = parse(&format!(
            "{HOST}[offline]\nmode = \"local\"\nusers = [\"root\", \"ops\"]\n"
        ))
        .unwrap();
        assert!(c.offline_user(&UserName::new("ops").unwrap()));
        assert!(!c.offline_user(&UserName::new("alice").unwrap()));
        assert!(parse(&format!("{HOST}[offline]\nmode = \"local\"\n")).is_err());
        assert!(parse(&format!("{HOST}[offline]\nusers = [\"root\"]\n")).is_err());
    }

    #[test]
    fn given_a_socket_then_no_tls_files() {
        let c = parse(
            "backend = \"postgresql\"\nsocket = \"/run/postgresql\"\ndatabase = \"pamtotp\"\n\
             role = \"postgres\"\n",
        )
        .unwrap();
        assert!(matches!(c.endpoint, Endpoint::Socket { port: 5432, .. }));
        assert!(c.check_module_endpoint().unwrap_err().contains("TLS"));
        assert!(parse(HOST).unwrap().check_module_endpoint().is_ok());
        assert!(c.tls_files(0).unwrap().is_none());
    }

    #[test]
    fn given_agent_socket_then_an_absolute_path_for_hosts_only() {
        let c = parse(&format!(
            "{HOST}agent_socket = \"/run/pam-totp/agent.sock\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.agent_socket.as_deref(),
            Some(Path::new("/run/pam-totp/agent.sock"))
        );
        assert!(parse(HOST).unwrap().agent_socket.is_none());
        assert!(parse(&format!("{HOST}agent_socket = \"agent.sock\"\n")).is_err());
        let long = format!("/{}", "a".repeat(107));
        assert!(parse(&format!("{HOST}agent_socket = \"{long}\"\n"))
            .unwrap_err()
            .contains("longer"));
        assert!(parse(
            "backend = \"postgresql\"\nsocket = \"/run/postgresql\"\ndatabase = \"pamtotp\"\n\
             role = \"postgres\"\nagent_socket = \"/run/a.sock\"\n",
        )
        .is_err());
    }
}
