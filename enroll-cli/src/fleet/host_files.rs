//! What `store add-host NAME --ca-cert --ca-key --out DIR` makes for the host: a P-256 key, a
//! client certificate with CN=NAME signed by the CA (825 days), a copy of the CA certificate and
//! the host's store.toml, in DIR, for the admin to copy to the host's /etc/pam-totp/. The
//! certificate is made by `/usr/bin/openssl` run with an empty environment and absolute paths.

use crate::error::{plain_io, CliError, Result};
use crate::output::{self, Written};
use std::ffi::OsStr;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use zeroize::Zeroizing;

pub const OPENSSL: &str = "/usr/bin/openssl";
/// Where the host's files go on the host (the paths its store.toml names).
pub const HOST_DIR: &str = "/etc/pam-totp";
/// The certificate's lifetime (the most browsers accept; here only our server checks it).
pub const CERT_DAYS: u32 = 825;

const EXTENSIONS: &str = "basicConstraints = critical, CA:FALSE\n\
keyUsage = critical, digitalSignature\n\
extendedKeyUsage = clientAuth\n\
subjectKeyIdentifier = hash\n\
authorityKeyIdentifier = keyid\n";

/// `^[a-z0-9][a-z0-9.-]{0,62}$`: what `pam_totp.add_host` accepts.
pub fn valid_host_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b".-".contains(c))
}

/// Runs `/usr/bin/openssl` with an empty environment (no `OPENSSL_CONF`, no `PATH`): its stdout,
/// or its stderr as the error.
pub fn openssl(
    args: &[&OsStr],
    stdin: Option<&[u8]>,
) -> std::result::Result<Zeroizing<Vec<u8>>, String> {
    let mut child = Command::new(OPENSSL)
        .args(args)
        .env_clear()
        .current_dir("/")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {OPENSSL}: {}", plain_io(&e)))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input)
            .map_err(|e| format!("cannot write to {OPENSSL}: {}", plain_io(&e)))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{OPENSSL}: {}", plain_io(&e)))?;
    if out.status.success() {
        Ok(Zeroizing::new(out.stdout))
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("failed");
        Err(format!("{OPENSSL} {}: {first}", args[0].to_string_lossy()))
    }
}

/// What the host's store.toml says.
pub struct HostToml<'a> {
    pub name: &'a str,
    pub addresses: &'a [SocketAddr],
    pub server_name: Option<&'a str>,
    pub database: &'a str,
}

/// The host's store.toml, its files under [`HOST_DIR`].
pub fn store_toml(h: &HostToml) -> String {
    let list: Vec<String> = h.addresses.iter().map(|a| format!("\"{a}\"")).collect();
    let mut t = format!(
        "# pam-totp fleet store: host {name} (made by `pam-totp store add-host {name}`).\n\
         # On {name}: {HOST_DIR}/store.toml, root:root 0600; with the module option\n\
         # store={HOST_DIR}/store.toml (and `pam-totp --store {HOST_DIR}/store.toml doctor`).\n\
         backend = \"postgresql\"\n\
         addresses = [{}]\n",
        list.join(", "),
        name = h.name
    );
    if let Some(s) = h.server_name {
        t.push_str(&format!("server_name = \"{s}\"\n"));
    }
    t.push_str(&format!(
        "database = \"{db}\"\n\
         role = \"{name}\"\n\
         ca = \"{HOST_DIR}/ca.crt\"\n\
         cert = \"{HOST_DIR}/{name}.crt\"\n\
         key = \"{HOST_DIR}/{name}.key\"\n\
         # connect_timeout_ms = 1000\n\
         # budget_ms = 3000\n\
         # Where pam-totp-agent listens (systemctl enable --now pam-totp-agent): logins then ask\n\
         # it over its open sessions; while no agent listens, they connect themselves.\n\
         agent_socket = \"{agent}\"\n\
         # [offline]\n\
         # mode = \"deny\"\n",
        db = h.database,
        name = h.name,
        agent = pam_totp::fleet::config::AGENT_SOCKET,
    ));
    t
}

/// The files written so far, removed again if a later step fails.
struct Made(Vec<Written>);

impl Made {
    fn write(&mut self, path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
        self.0.push(output::write_output(path, bytes, mode)?);
        Ok(())
    }
    fn undo(&self) {
        for w in &self.0 {
            w.remove();
        }
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| CliError::io("cannot resolve", p, &e))
}

/// `out`: a directory (made 0700 if missing), not a symbolic link, the caller's and not
/// writable by group or others (the new key is read back by path by `openssl req`: nobody
/// else may swap it for one the CA would then sign).
fn out_dir(out: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let out = absolute(out)?;
    match std::fs::symlink_metadata(&out) {
        Ok(m) if m.is_dir() && (m.uid() != nix::unistd::geteuid().as_raw() || m.mode() & 0o022 != 0) => {
            Err(CliError::new(format!(
                "{} must be yours and not writable by group or others (the host's key is made there)",
                out.display()
            ))
            .hint("choose a new directory: --out creates it (mode 0700)"))
        }
        Ok(m) if m.is_dir() => Ok(out),
        Ok(_) => Err(CliError::new(format!(
            "{} is not a directory (a symbolic link is not followed)",
            out.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&out)
                .map_err(|e| CliError::io("cannot create", &out, &e))?;
            Ok(out)
        }
        Err(e) => Err(CliError::io("cannot use", &out, &e)),
    }
}

/// Makes the host's key, certificate, CA copy and store.toml (`toml`) in `out`; the paths
/// written. Nothing stays when a step fails; an existing key is never replaced.
pub fn make(
    name: &str,
    ca_cert: &Path,
    ca_key: &Path,
    out: &Path,
    toml: &str,
) -> Result<Vec<PathBuf>> {
    let (ca_cert, ca_key, out) = (absolute(ca_cert)?, absolute(ca_key)?, out_dir(out)?);
    let key_path = out.join(format!("{name}.key"));
    for f in [
        format!("{name}.key"),
        format!("{name}.crt"),
        "ca.crt".into(),
        "store.toml".into(),
    ] {
        let f = out.join(f);
        if std::fs::symlink_metadata(&f).is_ok() {
            return Err(CliError::new(format!(
                "{} exists already; nothing was written",
                f.display()
            ))
            .hint("remove the host's old files there or choose another --out DIR"));
        }
    }
    let ca_pem = std::fs::read(&ca_cert).map_err(|e| CliError::io("cannot read", &ca_cert, &e))?;
    let crt_path = out.join(format!("{name}.crt"));
    let ext_path = out.join(format!(".{name}.ext"));
    let mut made = Made(Vec::new());
    let r = (|| -> Result<()> {
        let os = |s: &'static str| OsStr::new(s);
        let fail = |e: String| CliError::new(format!("cannot make {name}'s certificate: {e}"));
        let key = openssl(
            &[
                os("genpkey"),
                os("-algorithm"),
                os("EC"),
                os("-pkeyopt"),
                os("ec_paramgen_curve:P-256"),
            ],
            None,
        )
        .map_err(fail)?;
        made.write(&key_path, &key, 0o600)?;
        let subject = format!("/CN={name}");
        let csr = openssl(
            &[
                os("req"),
                os("-new"),
                os("-key"),
                key_path.as_os_str(),
                os("-subj"),
                OsStr::new(&subject),
            ],
            None,
        )
        .map_err(fail)?;
        let ext = output::write_output(&ext_path, EXTENSIONS.as_bytes(), 0o600)?;
        let mut serial = [0u8; 16];
        pam_totp::secret::fill_random(&mut serial)
            .map_err(|e| CliError::new(format!("cannot draw random numbers: {e}")))?;
        serial[0] &= 0x7f;
        let serial = format!("0x{}", pam_totp::hex::encode(&serial));
        let days = CERT_DAYS.to_string();
        let crt = openssl(
            &[
                os("x509"),
                os("-req"),
                os("-CA"),
                ca_cert.as_os_str(),
                os("-CAkey"),
                ca_key.as_os_str(),
                os("-set_serial"),
                OsStr::new(&serial),
                os("-days"),
                OsStr::new(&days),
                os("-sha256"),
                os("-extfile"),
                ext_path.as_os_str(),
            ],
            Some(&csr),
        );
        ext.remove();
        made.write(&crt_path, &crt.map_err(fail)?, 0o644)?;
        made.write(&out.join("ca.crt"), &ca_pem, 0o644)?;
        made.write(&out.join("store.toml"), toml.as_bytes(), 0o600)
    })();
    if let Err(e) = r {
        made.undo();
        return Err(e);
    }
    Ok([
        "store.toml",
        &format!("{name}.key"),
        &format!("{name}.crt"),
        "ca.crt",
    ]
    .iter()
    .map(|f| out.join(f))
    .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pam_totp::fleet::{Endpoint, StoreConfig};

    #[test]
    fn given_host_names_then_the_add_host_rule() {
        for ok in ["web-01", "h1", "db.example", "0a"] {
            assert!(valid_host_name(ok), "{ok}");
        }
        for bad in ["", "Web", "-a", ".a", "a_b", "a b", &"a".repeat(64)] {
            assert!(!valid_host_name(bad), "{bad}");
        }
    }

    #[test]
    fn given_a_host_then_its_store_toml_parses_with_paths_under_etc() {
        let addresses: Vec<SocketAddr> = vec![
            "10.0.0.1:5432".parse().unwrap(),
            "[fd00::2]:5433".parse().unwrap(),
        ];
        let text = store_toml(&HostToml {
            name: "web-01",
            addresses: &addresses,
            server_name: Some("db.example"),
            database: "pamtotp",
        });
        let c = StoreConfig::parse(Path::new("/s.toml"), &text).unwrap();
        assert_eq!(
            (c.role.as_str(), c.database.as_str()),
            ("web-01", "pamtotp")
        );
        let Endpoint::Tls {
            addresses: a,
            server_name,
            ca,
            cert,
            key,
        } = c.endpoint
        else {
            panic!("{text}")
        };
        assert_eq!(a, addresses);
        assert_eq!(server_name.as_deref(), Some("db.example"));
        assert_eq!(ca, Path::new("/etc/pam-totp/ca.crt"));
        assert_eq!(cert, Path::new("/etc/pam-totp/web-01.crt"));
        assert_eq!(key, Path::new("/etc/pam-totp/web-01.key"));
        assert_eq!(
            c.agent_socket.as_deref(),
            Some(Path::new("/run/pam-totp/agent.sock"))
        );
        let bare = store_toml(&HostToml {
            name: "h1",
            addresses: &addresses[..1],
            server_name: None,
            database: "db",
        });
        assert!(!bare.contains("server_name"));
        StoreConfig::parse(Path::new("/s.toml"), &bare).unwrap();
    }

    #[test]
    fn given_a_failing_openssl_then_its_first_error_line_is_returned() {
        if !Path::new(OPENSSL).exists() {
            return;
        }
        let e = openssl(
            &[
                OsStr::new("x509"),
                OsStr::new("-in"),
                OsStr::new("/nonexistent"),
            ],
            None,
        )
        .unwrap_err();
        assert!(
            e.starts_with("/usr/bin/openssl x509: Could not open file"),
            "{e}"
        );
    }
}
