//! `pam-totp --store FILE enroll USER --local-record` (root): besides the store's record, the
//! same key and the same recovery hashes as an active local record in `--dir` (SPEC §2.1), so
//! that USER can be a break-glass user (`[offline] users` in store.toml, SPEC §11) who logs in
//! from it while the store is unreachable. The file may be copied to other hosts' state
//! directories (`users/USER.toml`, root:root 0600).

use crate::cli::Cli;
use crate::enroll::{previous, replaces_active};
use crate::error::{CliError, Result};
use crate::output::outln;
use pam_totp::names::UserName;
use pam_totp::secret::Secret;
use pam_totp::store::{Record, Status, Store};
use pam_totp::sys::{RealSystem, System};
use pam_totp::totp::Params;

/// The local state directory, checked before anything is enrolled in the store.
pub struct LocalRecord {
    store: Store,
    force: bool,
}

impl LocalRecord {
    /// Root only; the state directory created where missing; an active local record is kept
    /// unless `force` (as file mode's enroll).
    pub fn prepare(cli: &Cli, user: &UserName, force: bool) -> Result<LocalRecord> {
        if !nix::unistd::geteuid().is_root() {
            return Err(CliError::new(
                "--local-record writes a record into the host's state directory: run it as root",
            )
            .hint("nothing was enrolled"));
        }
        let store = Store::create(&cli.dir, 0)
            .map_err(|e| CliError::store("cannot open the state directory", e))?;
        replaces_active(previous(store.record(user)), user, force)?;
        Ok(LocalRecord { store, force })
    }

    /// Writes the active local record: the key the store drew and the recovery entries it
    /// was given.
    pub fn write(
        &self,
        user: &UserName,
        secret: &[u8],
        params: Params,
        issuer: &str,
        recovery: &[String],
    ) -> Result<()> {
        let secret = Secret::from_bytes(secret.to_vec())
            .map_err(|e| CliError::new(format!("the store returned an unusable key: {e}")))?;
        let record = Record::new(
            user,
            Status::Active,
            secret,
            params,
            issuer,
            Some(RealSystem.now()),
            recovery.to_vec(),
        );
        let failed = |doing: &str, e| {
            CliError::store(&format!("cannot {doing} {user}'s local record"), e).hint(format!(
                "the store's record was made; to write the local one, run the enrolment again \
                 with --force --local-record (a new key), or remove {}",
                self.store.record_path(user).display()
            ))
        };
        let lock = self.store.lock(user).map_err(|e| failed("lock", e))?;
        replaces_active(previous(lock.record()), user, self.force)?;
        lock.write_record(&record).map_err(|e| failed("write", e))
    }

    /// What the admin must do for the record to be used.
    pub fn print_notes(&self, user: &UserName) -> Result<()> {
        let path = self.store.record_path(user);
        outln!(
            "Also written as an active local record, {} (root:root 0600): {user} can log in \
             from it on this host while the store is unreachable, once store.toml lists {user} \
             in [offline] users (mode = \"local\"). Copy the file to the same place on other \
             hosts (root:root 0600) for them too; each host reports the codes used offline to \
             the store at {user}'s next login there.",
            path.display()
        )
    }
}
