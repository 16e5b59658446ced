//! Test helpers: a throwaway state directory and fixed records.
#![forbid(unsafe_code)]

use crate::names::UserName;
use crate::secret::Secret;
use crate::store::{Record, Status, Store};
use crate::totp::{Algorithm, Params};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub const SECRET_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// A temporary directory (removed on drop) with a private `state/users` inside.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "pam-totp-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("state/users")).unwrap();
        for d in [p.clone(), p.join("state"), p.join("state/users")] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn state(&self) -> PathBuf {
        self.0.join("state")
    }
    pub fn users(&self) -> PathBuf {
        self.0.join("state/users")
    }
    pub fn store(&self) -> Store {
        Store::open(&self.state(), uid()).unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

pub fn record(user: &str) -> Record {
    Record {
        user: user.to_string(),
        status: Status::Active,
        replaces_active: false,
        secret: Secret::from_base32(SECRET_B32).unwrap(),
        params: Params::new(Algorithm::Sha1, 6, 30).unwrap(),
        issuer: "test".into(),
        created: Some(1_700_000_000),
        recovery: vec![],
    }
}

pub fn save(store: &Store, r: &Record) {
    store.lock(&u(&r.user)).unwrap().write_record(r).unwrap();
}

/// A valid user name for tests.
pub fn u(name: &str) -> UserName {
    UserName::new(name).unwrap()
}
