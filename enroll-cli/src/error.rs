//! The one error type of the CLI: what failed, and what to do next.

use pam_totp::escape::terminal_safe;
use pam_totp::store::{Check, FileKind, StoreError};
use std::fmt;
use std::path::Path;

/// A failure (exit status 1): a message saying what failed and hints saying what to do.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub hints: Vec<String>,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            hints: Vec::new(),
        }
    }

    /// Exit status 1 with nothing more to say (the output already explained it).
    pub fn silent() -> Self {
        CliError::new("")
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// A store error, prefixed with what was being done, with a hint on how to fix it.
    pub fn store(doing: &str, e: StoreError) -> Self {
        let hint = store_hint(&e);
        let err = CliError::new(format!("{doing}: {e}"));
        match hint {
            Some(h) => err.hint(h),
            None => err,
        }
    }

    /// An I/O error on a file the CLI reads or writes itself (import sources, images).
    pub fn io(doing: &str, path: &Path, e: &std::io::Error) -> Self {
        let err = CliError::new(format!("{doing} {}: {}", path.display(), plain_io(e)));
        match e.raw_os_error() {
            Some(libc::ELOOP) => err.hint("the path is a symbolic link; give the real file"),
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
                err.hint("the disk is full; free some space and run the command again")
            }
            Some(libc::EACCES) | Some(libc::EPERM) => {
                err.hint("permission denied; run pam-totp as root")
            }
            _ => err,
        }
    }
}

/// The I/O error without Rust's " (os error N)" suffix.
pub fn plain_io(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn store_hint(e: &StoreError) -> Option<String> {
    match e {
        StoreError::Untrusted { file, path, check } => {
            let p = path.display();
            Some(match (check, file) {
                (Check::SymbolicLink, _) => format!(
                    "{p} must be a real file or directory, not a symbolic link; remove the link"
                ),
                (
                    _,
                    FileKind::Record(_)
                    | FileKind::State(_)
                    | FileKind::Lock(_)
                    | FileKind::Offline(_),
                ) => format!(
                    "records and state must be root:root 0600: chown root:root {p} && chmod 0600 {p}"
                ),
                (_, FileKind::Directory) => format!(
                    "the state directory and users/ must be root:root 0700 and every parent \
                     directory root-owned and not writable by group or others \
                     (chown root:root {p} && chmod 0700 {p})"
                ),
                (_, FileKind::Fleet) => format!(
                    "store.toml and the key it names must be owned by root (or by you, when you \
                     are not root) and mode 0600 (chmod 0600 {p}); the CA and certificate must \
                     not be writable by group or others"
                ),
                (_, FileKind::Policy | FileKind::Other) => format!(
                    "the file must be owned by root and not writable by group or others: \
                     chown root:root {p} && chmod 0644 {p}"
                ),
            })
        }
        StoreError::LockTimeout { .. } => Some(
            "a login or another pam-totp holds the user's lock; try again, and look for a \
             stopped process (ps -eo pid,stat,cmd | grep ' T')"
                .into(),
        ),
        StoreError::Io { source, .. } => match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
                Some("the disk is full; free some space and run the command again".into())
            }
            Some(libc::EACCES) | Some(libc::EPERM) => {
                Some("permission denied; run pam-totp as root".into())
            }
            Some(libc::ENOENT) => Some(
                "check --dir (or PAM_TOTP_DIR): the state directory is created by `pam-totp enroll`"
                    .into(),
            ),
            _ => None,
        },
        StoreError::Parse { file, path, .. } => match file {
            FileKind::State(user) => Some(format!(
                "the module refuses {user}'s logins until this is repaired: run \
                 `pam-totp unlock {user}` (it writes a fresh state in which no earlier code can \
                 be replayed)"
            )),
            FileKind::Record(user) => Some(format!(
                "fix the record by hand (format: pam-totp(8)), or remove it with \
                 `pam-totp disable {user}` and enrol {user} again"
            )),
            FileKind::Policy => Some(format!(
                "the module denies every login while the policy is invalid: fix {} \
                 (`pam-totp policy show` reads it) or move it away",
                path.display()
            )),
            FileKind::Offline(user) => Some(format!(
                "the module cannot report {user}'s offline logins to the fleet store while this \
                 file is unreadable: fix or remove {} (removed, the store misses those logins: \
                 then run `pam-totp --store FILE unlock {user}` and renew the recovery codes)",
                path.display()
            )),
            FileKind::Lock(_) | FileKind::Directory | FileKind::Other | FileKind::Fleet => None,
        },
        StoreError::WrongUser { .. } => Some(
            "a record's `user` key must name the user whose file it is; fix the record".into(),
        ),
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() && self.hints.is_empty() {
            return Ok(());
        }
        // Messages quote names, paths and parse errors that come from files: terminal-safe.
        writeln!(f, "error: {}", terminal_safe(&self.message))?;
        for h in &self.hints {
            writeln!(f, "hint: {}", terminal_safe(h))?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

pub type Result<T> = std::result::Result<T, CliError>;
