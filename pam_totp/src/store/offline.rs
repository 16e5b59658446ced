//! `users/USER.offline`: what a break-glass user was let in with from the local record while
//! the fleet store was unreachable (SPEC §11, `[offline] mode = "local"`) — the highest step
//! accepted and the recovery entries burned — kept until the store has acknowledged the report
//! (`pam_totp.report_offline`). Same trust rules as the state (root, 0600, `O_NOFOLLOW`); written
//! under the user's lock by an atomic, durable rewrite, so a crash leaves the old report or the
//! new one, never a torn one.
//!
//! ```toml
//! version = 1
//! user = "alice"
//! last_step = 59000000      # absent: only recovery codes were used
//! burned = ["sha256:<salt-hex>:<hash-hex>"]
//! ```
#![forbid(unsafe_code)]

use super::files::{self, Durability, TempName};
use super::record::{parse_versioned, quote};
use super::{Exposure, FileKind, Store, StoreError, UserLock};
use crate::names::{log_safe, UserName};
use serde::Deserialize;
use std::path::PathBuf;

pub const OFFLINE_VERSION: i64 = 1;
/// File extension in `users/`.
pub const OFFLINE_EXT: &str = "offline";
const MAX_OFFLINE_BYTES: u64 = 64 * 1024;

/// What is still to be reported to the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfflineReport {
    /// Highest step accepted offline (`None`: recovery codes only).
    pub last_step: Option<u64>,
    /// The §4 entries of the recovery codes burned offline.
    pub burned: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: i64,
    user: String,
    last_step: Option<u64>,
    #[serde(default)]
    burned: Vec<String>,
}

impl OfflineReport {
    pub fn is_empty(&self) -> bool {
        self.last_step.is_none() && self.burned.is_empty()
    }

    /// This report with `step` and `burned` added (the highest step; each entry once).
    pub fn merged(&self, step: Option<u64>, burned: &[String]) -> OfflineReport {
        let mut out = self.clone();
        out.last_step = out.last_step.max(step);
        for b in burned {
            if !out.burned.contains(b) {
                out.burned.push(b.clone());
            }
        }
        out
    }

    /// What of this report `sent` did not cover (a login recorded after it was read).
    pub fn without(&self, sent: &OfflineReport) -> OfflineReport {
        OfflineReport {
            last_step: self.last_step.filter(|s| Some(*s) > sent.last_step),
            burned: self
                .burned
                .iter()
                .filter(|b| !sent.burned.contains(b))
                .cloned()
                .collect(),
        }
    }

    fn parse(text: &str, user: &str) -> Result<OfflineReport, String> {
        let raw: Raw = parse_versioned(text, OFFLINE_VERSION, |r: &Raw| r.version)?;
        if raw.user != user {
            return Err(format!(
                "key `user` is \"{}\", expected \"{user}\"",
                log_safe(&raw.user)
            ));
        }
        Ok(OfflineReport {
            last_step: raw.last_step,
            burned: raw.burned,
        })
    }

    fn to_toml(&self, user: &str) -> String {
        let mut s = String::from(
            "# pam-totp: offline logins not yet reported to the fleet store. Keep root:root 0600.\n",
        );
        s.push_str(&format!(
            "version = {OFFLINE_VERSION}\nuser = {}\n",
            quote(user)
        ));
        if let Some(step) = self.last_step {
            s.push_str(&format!("last_step = {step}\n"));
        }
        s.push_str("burned = [\n");
        for b in &self.burned {
            s.push_str(&format!("  {},\n", quote(b)));
        }
        s.push_str("]\n");
        s
    }
}

impl Store {
    pub fn offline_path(&self, user: &UserName) -> PathBuf {
        self.file(user, OFFLINE_EXT)
    }

    /// The user's unreported offline logins (`None`: nothing to report).
    pub fn offline_report(&self, user: &UserName) -> Result<Option<OfflineReport>, StoreError> {
        self.offline_named(user)
    }

    fn offline_named(&self, user: &str) -> Result<Option<OfflineReport>, StoreError> {
        let path = self.file(user, OFFLINE_EXT);
        let kind = FileKind::Offline(user.to_string());
        let Some(bytes) = files::read_trusted(
            &path,
            &kind,
            self.owner,
            Exposure::Private,
            MAX_OFFLINE_BYTES,
        )?
        else {
            return Ok(None);
        };
        let parsed = std::str::from_utf8(&bytes)
            .map_err(|_| "not UTF-8".to_string())
            .and_then(|t| OfflineReport::parse(t, user));
        parsed.map(Some).map_err(|msg| StoreError::Parse {
            file: kind,
            path,
            msg,
        })
    }
}

impl UserLock<'_> {
    /// Adds an offline login to the report (durable before it returns); the report as it now
    /// stands.
    pub fn add_offline(
        &self,
        step: Option<u64>,
        burned: &[String],
    ) -> Result<OfflineReport, StoreError> {
        let now = self
            .store
            .offline_named(&self.user)?
            .unwrap_or_default()
            .merged(step, burned);
        self.put_offline(&now)?;
        Ok(now)
    }

    /// After the store acknowledged `sent`: removes the report, or keeps what was added since
    /// it was read (a login recorded meanwhile).
    pub fn settle_offline(&self, sent: &OfflineReport) -> Result<(), StoreError> {
        let left = match self.store.offline_named(&self.user)? {
            Some(now) => now.without(sent),
            None => return Ok(()),
        };
        if !left.is_empty() {
            return self.put_offline(&left);
        }
        let kind = FileKind::Offline(self.user.clone());
        files::remove_if_exists(&self.store.file(&self.user, OFFLINE_EXT), &kind)?;
        files::sync_dir(&self.store.users).map_err(|source| StoreError::Io {
            file: FileKind::Directory,
            path: self.store.users.clone(),
            source,
        })
    }

    fn put_offline(&self, report: &OfflineReport) -> Result<(), StoreError> {
        files::replace(
            &self.store.users,
            &format!("{}.{OFFLINE_EXT}", self.user),
            &FileKind::Offline(self.user.clone()),
            report.to_toml(&self.user).as_bytes(),
            0o600,
            Durability::Durable,
            TempName::Locked,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{u, TempDir};
    use std::os::unix::fs::PermissionsExt;

    fn entries(n: &[&str]) -> Vec<String> {
        n.iter()
            .map(|s| format!("sha256:0011223344556677:{s}"))
            .collect()
    }

    #[test]
    fn given_offline_logins_then_merged_durably_and_read_back() {
        let t = TempDir::new();
        let s = t.store();
        assert_eq!(s.offline_report(&u("alice")).unwrap(), None);
        let lock = s.lock(&u("alice")).unwrap();
        lock.add_offline(Some(7), &[]).unwrap();
        lock.add_offline(None, &entries(&["aa"])).unwrap();
        let r = lock.add_offline(Some(5), &entries(&["aa", "bb"])).unwrap();
        drop(lock);
        let want = OfflineReport {
            last_step: Some(7),
            burned: entries(&["aa", "bb"]),
        };
        assert_eq!(r, want);
        assert_eq!(s.offline_report(&u("alice")).unwrap(), Some(want));
        let meta = std::fs::metadata(t.users().join("alice.offline")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(s.unknown_files().unwrap().is_empty());
    }

    #[test]
    fn given_the_report_acknowledged_then_removed_unless_a_login_came_meanwhile() {
        let t = TempDir::new();
        let s = t.store();
        let lock = s.lock(&u("alice")).unwrap();
        let sent = lock.add_offline(Some(7), &entries(&["aa"])).unwrap();
        lock.settle_offline(&sent).unwrap();
        assert_eq!(s.offline_report(&u("alice")).unwrap(), None);
        // A login recorded after the report was read stays for the next one.
        let sent = lock.add_offline(Some(7), &entries(&["aa"])).unwrap();
        lock.add_offline(Some(9), &entries(&["bb"])).unwrap();
        lock.settle_offline(&sent).unwrap();
        let left = s.offline_report(&u("alice")).unwrap().unwrap();
        assert_eq!((left.last_step, &left.burned), (Some(9), &entries(&["bb"])));
        lock.settle_offline(&left).unwrap();
        lock.settle_offline(&left).unwrap();
        assert!(!t.users().join("alice.offline").exists());
    }

    #[test]
    fn given_a_bad_offline_file_then_refused_never_ignored() {
        let t = TempDir::new();
        let s = t.store();
        let p = t.users().join("alice.offline");
        std::fs::write(&p, "version = 1\nuser = \"bob\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = s.offline_report(&u("alice")).unwrap_err();
        assert!(e.to_string().contains("expected \"alice\""), "{e}");
        std::fs::write(&p, "version = 2\nuser = \"alice\"\n").unwrap();
        assert!(s.offline_report(&u("alice")).is_err());
        std::fs::write(&p, "version = 1\nuser = \"alice\"\nlast_step = 3\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = s.offline_report(&u("alice")).unwrap_err();
        assert!(matches!(e, StoreError::Untrusted { .. }), "{e}");
    }
}
