//! A throwaway PostgreSQL 15 cluster for root-only tests, as `tests/fleet/lib.sh` makes one:
//! initdb/pg_ctl run as the postgres user, a unix socket in a temp dir, no TCP, trust; a
//! database `pamtotp` and a key file for `store init`. Shared by store-client/tests and
//! enroll-cli/tests through `#[path]` (no crate of its own).
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Why the cluster cannot run here (printed as SKIP), or `None`.
pub fn unavailable() -> Option<&'static str> {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    if !root {
        return Some("needs root");
    }
    let postgres = Command::new("id")
        .arg("postgres")
        .output()
        .is_ok_and(|o| o.status.success());
    if !Path::new(PG_BIN).join("initdb").exists() || !postgres {
        return Some("PostgreSQL 15 or the postgres user missing");
    }
    None
}

/// Runs `cmd` without the PG* variables; its trimmed stdout, or a panic with its output.
pub fn run(cmd: &mut Command) -> String {
    for v in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGSERVICE",
    ] {
        cmd.env_remove(v);
    }
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn as_postgres(tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"])
        .arg(format!("{PG_BIN}/{tool}"));
    c
}

/// The temp directory (root's, 0755) with the cluster under `pg/` (postgres's, 0700); the
/// cluster stopped and everything removed on drop, also when the test fails.
pub struct Cluster {
    pub root: PathBuf,
    pub pg: PathBuf,
}

impl Cluster {
    pub fn start(tag: &str) -> Cluster {
        let root = std::env::temp_dir().join(format!("pam-totp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pg = root.join("pg");
        let c = Cluster { root, pg };
        run(Command::new("install")
            .args(["-d", "-o", "postgres", "-g", "postgres", "-m", "0700"])
            .arg(&c.pg));
        let data = c.pg.join("data");
        run(as_postgres("initdb").arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]));
        let conf = format!(
            "listen_addresses = ''\nunix_socket_directories = '{}'\nfsync = off\n",
            c.pg.display()
        );
        let mut text = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        text.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), text).unwrap();
        run(as_postgres("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(c.pg.join("log"))
            .args(["-w", "-t", "30", "start"]));
        run(Command::new(format!("{PG_BIN}/psql"))
            .args(["-X", "-q", "-h"])
            .arg(&c.pg)
            .args(["-U", "postgres", "-d", "postgres"])
            .args(["-c", "CREATE DATABASE pamtotp"]));
        // The key file: outside the data directory, the server's, 0600.
        let mut key = [0u8; 32];
        pam_totp::secret::fill_random(&mut key).unwrap();
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(c.key(), hex).unwrap();
        run(Command::new("chown").arg("postgres:postgres").arg(c.key()));
        std::fs::set_permissions(c.key(), std::fs::Permissions::from_mode(0o600)).unwrap();
        c
    }

    pub fn key(&self) -> PathBuf {
        self.pg.join("pam-totp.key")
    }

    /// A store.toml for `role` over the cluster's socket (root's, 0600).
    pub fn store_toml(&self, role: &str) -> PathBuf {
        self.store_toml_at(role, &self.pg, 5432)
    }

    pub fn store_toml_at(&self, role: &str, socket: &Path, port: u16) -> PathBuf {
        let p = self.root.join(format!("store-{role}-{port}.toml"));
        std::fs::write(
            &p,
            format!(
                "backend = \"postgresql\"\nsocket = \"{}\"\nport = {port}\n\
                 database = \"pamtotp\"\nrole = \"{role}\"\nbudget_ms = 5000\n",
                socket.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.pg.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
