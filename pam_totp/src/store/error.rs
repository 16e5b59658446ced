//! What went wrong in the store, typed: which file (a user's record, state or lock, the
//! policy, a directory) and which check it failed, so that front-ends choose their advice from
//! the values, never from the wording.
#![forbid(unsafe_code)]

use crate::names::log_safe;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// Which of the store's files an error is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// The state directory, `users/`, or a directory above them or above the policy.
    Directory,
    Record(String),
    State(String),
    Lock(String),
    /// `users/USER.offline`: offline logins not yet reported to the fleet store (SPEC §11).
    Offline(String),
    Policy,
    /// A file read with the same checks from elsewhere (an import source).
    Other,
    /// Fleet mode (SPEC §11): `store.toml` or a file it names (CA, certificate, key), or the
    /// store client library.
    Fleet,
}

/// What may see a file besides its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exposure {
    /// Records and state: no group/other bits at all (0600).
    Private,
    /// Policy: readable by all, writable by the owner only.
    Public,
}

/// The check a file or directory failed (SPEC §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    SymbolicLink,
    NotDirectory,
    NotRegularFile,
    /// Owned by `uid` rather than root (or the expected owner).
    Owner {
        uid: u32,
        expected: u32,
    },
    /// A directory above others can write to (and not a root-owned sticky one).
    WritableDirectory {
        mode: u32,
    },
    /// The state directory or `users/` with group/other bits.
    OpenDirectory {
        mode: u32,
    },
    /// A file with bits its exposure forbids.
    Mode {
        mode: u32,
        exposure: Exposure,
    },
    /// Larger than the store reads (`size` when known).
    TooLarge {
        size: Option<u64>,
        max: u64,
    },
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::SymbolicLink => f.write_str("is a symbolic link"),
            Check::NotDirectory => f.write_str("not a directory"),
            Check::NotRegularFile => f.write_str("not a regular file"),
            Check::Owner { uid, expected: 0 } => write!(f, "owned by uid {uid}, not root"),
            Check::Owner { uid, expected } => write!(f, "owned by uid {uid}, expected {expected}"),
            Check::WritableDirectory { mode } => {
                write!(f, "writable by group or others (mode {mode:o})")
            }
            Check::OpenDirectory { mode } => write!(
                f,
                "mode {mode:o}, expected 0700 (no access for group or others)"
            ),
            Check::Mode {
                mode,
                exposure: Exposure::Private,
            } => write!(
                f,
                "mode {mode:o}, expected 0600 (no access for group or others)"
            ),
            Check::Mode {
                mode,
                exposure: Exposure::Public,
            } => write!(f, "mode {mode:o}, expected not writable by group or others"),
            Check::TooLarge {
                size: Some(size),
                max,
            } => write!(f, "too large ({size} bytes, at most {max})"),
            Check::TooLarge { size: None, max } => {
                write!(f, "too large (more than {max} bytes)")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("bad permissions on {}: {check}", path.display())]
    Untrusted {
        file: FileKind,
        path: PathBuf,
        check: Check,
    },
    #[error("cannot read or write {}: {source}", path.display())]
    Io {
        file: FileKind,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot parse {}: {msg}", path.display())]
    Parse {
        file: FileKind,
        path: PathBuf,
        msg: String,
    },
    #[error("the record names user \"{}\", not \"{expected}\"", log_safe(found))]
    WrongUser { expected: String, found: String },
    #[error("the lock {} is held by another process for too long", path.display())]
    LockTimeout { path: PathBuf },
}

impl StoreError {
    /// True for a full disk or quota: the caller may say so plainly.
    pub fn is_no_space(&self) -> bool {
        matches!(self, StoreError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
    }

    /// The file the error is about, where there is one.
    pub fn file(&self) -> Option<&FileKind> {
        match self {
            StoreError::Untrusted { file, .. }
            | StoreError::Io { file, .. }
            | StoreError::Parse { file, .. } => Some(file),
            StoreError::WrongUser { .. } | StoreError::LockTimeout { .. } => None,
        }
    }
}
