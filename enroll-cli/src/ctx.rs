//! What every store verb needs: who may run it, the store, the policy, the clock.

use crate::cli::{Cli, DEFAULT_DIR};
use crate::error::{CliError, Result};
use pam_totp::names::UserName;
use pam_totp::next_login::{next_login, Enrolment, NextLogin};
use pam_totp::policy::{Policy, RequiredBy};
use pam_totp::store::{self, Record, Store, StoreError, UserLock};
use pam_totp::sys::{RealSystem, System};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub struct Ctx {
    pub dir: PathBuf,
    pub policy_path: PathBuf,
    /// Owner that trusted files must have: root, or the caller for a `--dir` they own (tests).
    pub owner: u32,
    sys: RealSystem,
}

impl Ctx {
    /// Root only, unless `--dir` is a directory the caller owns: then its files must be the
    /// caller's (test setups).
    pub fn new(cli: &Cli) -> Result<Ctx> {
        let owner = caller_owner(&cli.dir)?;
        Ok(Ctx {
            dir: cli.dir.clone(),
            policy_path: cli.policy.clone(),
            owner,
            sys: RealSystem,
        })
    }

    pub fn now(&self) -> u64 {
        self.sys.now()
    }

    /// The existing store, or `None` if the state directory (or its `users/`) does not exist yet.
    pub fn open_store(&self) -> Result<Option<Store>> {
        match Store::open(&self.dir, self.owner) {
            Ok(s) => Ok(Some(s)),
            Err(StoreError::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound
                    && !(self.dir.exists() && self.dir.join("users").exists()) =>
            {
                Ok(None)
            }
            Err(e) => Err(CliError::store("cannot open the state directory", e)),
        }
    }

    /// The store, creating the state directory and `users/` (0700) where missing.
    pub fn create_store(&self) -> Result<Store> {
        Store::create(&self.dir, self.owner)
            .map_err(|e| CliError::store("cannot open the state directory", e))
    }

    /// The policy; a missing file is the default policy (nobody required).
    pub fn policy(&self) -> Result<Policy> {
        store::load_policy(&self.policy_path, self.owner)
            .map(Option::unwrap_or_default)
            .map_err(|e| CliError::store("cannot use the policy", e))
    }

    /// The rule that requires a second factor of `user` (needs the user's groups from NSS
    /// only when the policy names groups).
    /// The rule that requires a code of `user` (whether enrolled or not), and what the user's
    /// next login does — the module's own rule ([`next_login`]), with the same lookups.
    pub fn next_login(
        &self,
        policy: &Policy,
        user: &str,
        record: Option<&Record>,
    ) -> Result<(Option<RequiredBy>, NextLogin)> {
        let groups = if policy.needs_groups() {
            self.sys.groups_of(user).map_err(|e| {
                CliError::new(format!("cannot look up the groups of {user}: {e}"))
                    .hint("check the user database (getent group; getent passwd)")
            })?
        } else {
            None
        };
        let next = next_login(
            user,
            Enrolment::of(record),
            policy,
            groups.as_deref(),
            self.now(),
        );
        Ok((policy.required_by(user, groups.as_deref()), next))
    }

    /// `--dir DIR ` when it is not the default, for commands printed for the admin to run.
    pub fn dir_arg(&self) -> String {
        if self.dir == Path::new(DEFAULT_DIR) {
            String::new()
        } else {
            format!("--dir {} ", shell_quote(&self.dir.to_string_lossy()))
        }
    }
}

/// The owner a `--store` file must have: root; or, for a caller who is not root, the caller
/// when the file is theirs (`runuser -u postgres -- pam-totp --store ... store init`).
pub fn store_owner(path: &Path) -> u32 {
    let euid = nix::unistd::geteuid().as_raw();
    match std::fs::symlink_metadata(path) {
        Ok(m) if euid != 0 && m.uid() == euid => euid,
        _ => 0,
    }
}

fn caller_owner(dir: &Path) -> Result<u32> {
    let euid = nix::unistd::geteuid().as_raw();
    if euid == 0 {
        return Ok(0);
    }
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() && m.uid() == euid => Ok(euid),
        _ => Err(CliError::new(format!(
            "pam-totp must run as root: it manages the records in {}",
            dir.display()
        ))
        .hint("run it with sudo (or as root); for tests, give --dir a directory you own")),
    }
}

/// Takes USER's lock and reads their record under it: the start of every read-modify-write.
pub fn lock_record<'s>(
    store: &'s Store,
    user: &UserName,
) -> Result<(UserLock<'s>, Option<Record>)> {
    let lock = store
        .lock(user)
        .map_err(|e| CliError::store(&format!("cannot lock {user}'s record"), e))?;
    let record = lock
        .record()
        .map_err(|e| CliError::store(&format!("cannot read {user}'s record"), e))?;
    Ok((lock, record))
}

/// USER of a verb that, run by root, needs one: a missing USER is a usage error (exit
/// status 2), as clap reports one.
pub fn required_user(user: Option<&str>, verb: &str) -> Result<UserName> {
    match user {
        Some(u) => check_user(u),
        None => {
            use clap::CommandFactory;
            crate::cli::Cli::command()
                .error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    format!("`pam-totp {verb}` needs USER when run by root"),
                )
                .exit()
        }
    }
}

/// The name as a [`UserName`], or exit status 1 saying what a name may be.
pub fn check_user(user: &str) -> Result<UserName> {
    UserName::new(user).map_err(|e| CliError::new(e.to_string()).hint(USER_NAME_RULE))
}

/// SPEC §2's rule for user names, in words.
pub const USER_NAME_RULE: &str = "a user name must match ^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}$ \
     (letters, digits and _ . @ -, not starting with . @ or -, at most 128 characters)";

/// The issuer for new records: `--issuer`, else the policy's `issuer`, else the host name.
pub fn issuer(ctx: &Ctx, given: Option<&str>) -> Result<String> {
    issuer_or(given, || Ok(ctx.policy()?.issuer))
}

/// [`issuer`] with the policy's `issuer` read by `policy_issuer` (fleet mode: this host's).
pub fn issuer_or(
    given: Option<&str>,
    policy_issuer: impl FnOnce() -> Result<Option<String>>,
) -> Result<String> {
    let issuer = match given {
        Some(i) => i.to_string(),
        None => match policy_issuer()
            .map_err(|e| e.hint("or name the issuer with --issuer NAME, which needs no policy"))?
        {
            Some(i) => i,
            None => nix::unistd::gethostname()
                .map_err(|e| CliError::new(format!("cannot read the host name: {e}")))?
                .to_string_lossy()
                .into_owned(),
        },
    };
    if issuer.is_empty() || issuer.contains(':') || issuer.chars().any(char::is_control) {
        return Err(CliError::new(format!(
            "invalid issuer {issuer:?}: it must be non-empty, without ':' or control characters"
        ))
        .hint("give another one with --issuer NAME, e.g. --issuer build-01"));
    }
    Ok(issuer)
}

/// Quotes `s` for a POSIX shell if it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-@:+=,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_quotes_only_when_needed() {
        assert_eq!(shell_quote("/tmp/x-1"), "/tmp/x-1");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
