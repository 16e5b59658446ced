//! The only code that touches the disk: user name → path, trusted opens, per-user locks,
//! atomic replacement of records and state (SPEC §2).
#![forbid(unsafe_code)]

mod error;
mod files;
pub mod offline;
pub mod record;
pub mod state;

pub use error::{Check, Exposure, FileKind, StoreError};
pub use files::{Durability, TempName};
pub use offline::OfflineReport;
pub use record::{Record, Status};
pub use state::{LastSuccess, State, JOURNAL_HEADER};

use crate::names::{log_safe, UserName};
use crate::policy::Policy;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

const MAX_RECORD_BYTES: u64 = 64 * 1024;
const MAX_STATE_BYTES: u64 = 4 * 1024;
/// The state journal is compacted (rewritten as one entry) rather than grown past this. An
/// entry has at most ~620 bytes (a stored rhost at most 255), so a journal written here stays
/// far below MAX_STATE_BYTES; with short entries this is a rewrite about every 25 updates.
const JOURNAL_LIMIT: u64 = 2 * 1024;
const MAX_POLICY_BYTES: u64 = 1024 * 1024;
/// How long a login waits for a user's lock before giving up (fail closed): a process stopped
/// while holding it must not hang every later login of that user.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// File stem of the decoy (see [`Store::decoy_lock`]).
const DECOY: &str = ".decoy";

/// The state directory, checked. Files in it must belong to `owner` (root in production).
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    users: PathBuf,
    owner: u32,
}

impl Store {
    /// Opens an existing state directory, checking it, its ancestors and `users/`.
    pub fn open(dir: &Path, owner: u32) -> Result<Store, StoreError> {
        let real = dir.canonicalize().map_err(|source| StoreError::Io {
            file: FileKind::Directory,
            path: dir.to_path_buf(),
            source,
        })?;
        files::check_ancestors(&real, owner)?;
        files::check_private_dir(&real, owner)?;
        let users = real.join("users");
        files::check_private_dir(&users, owner)?;
        Ok(Store {
            dir: real,
            users,
            owner,
        })
    }

    /// Creates the state directory and `users/` (0700) where missing, then opens it.
    pub fn create(dir: &Path, owner: u32) -> Result<Store, StoreError> {
        files::ensure_private_dir(dir)?;
        files::ensure_private_dir(&dir.join("users"))?;
        Store::open(dir, owner)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `users/USER.EXT`: the one place a user name becomes a path.
    fn file(&self, user: &str, ext: &str) -> PathBuf {
        self.users.join(format!("{user}.{ext}"))
    }

    pub fn record_path(&self, user: &UserName) -> PathBuf {
        self.file(user, "toml")
    }

    pub fn state_path(&self, user: &UserName) -> PathBuf {
        self.file(user, "state")
    }

    /// The user's record, if any. Its `user` key must name the user.
    pub fn record(&self, user: &UserName) -> Result<Option<Record>, StoreError> {
        Ok(self.record_read(user)?.map(|r| r.record))
    }

    /// The user's record with the bytes it was parsed from, so that a later read under the
    /// lock ([`UserLock::record_again`]) can skip parsing the same bytes again.
    pub fn record_read(&self, user: &UserName) -> Result<Option<RecordRead>, StoreError> {
        Ok(self.record_named(user, None)?.map(|(r, _)| r))
    }

    /// Reads the record; when its bytes equal `earlier`'s, `earlier` is returned as it is, and
    /// the flag says so.
    fn record_named(
        &self,
        user: &str,
        earlier: Option<RecordRead>,
    ) -> Result<Option<(RecordRead, bool)>, StoreError> {
        let path = self.file(user, "toml");
        let kind = FileKind::Record(user.to_string());
        let Some(bytes) = files::read_trusted(
            &path,
            &kind,
            self.owner,
            Exposure::Private,
            MAX_RECORD_BYTES,
        )?
        else {
            return Ok(None);
        };
        if let Some(earlier) = earlier.filter(|e| e.bytes == bytes) {
            return Ok(Some((earlier, true)));
        }
        let parse_err = |msg: String| StoreError::Parse {
            file: kind.clone(),
            path: path.clone(),
            msg,
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| parse_err("not UTF-8".into()))?;
        let record = Record::parse(text).map_err(parse_err)?;
        if record.user != user {
            return Err(parse_err(format!(
                "key `user` is \"{}\", expected \"{user}\"",
                log_safe(&record.user)
            )));
        }
        Ok(Some((RecordRead { record, bytes }, false)))
    }

    /// The user's login state; a missing file means "no login yet".
    pub fn state(&self, user: &UserName) -> Result<State, StoreError> {
        self.state_named(user)
    }

    /// The user's login state as read, with the file's bytes, for [`UserLock::state_again`].
    pub fn state_read(&self, user: &UserName) -> Result<StateRead, StoreError> {
        self.state_read_named(user, None)
    }

    fn state_named(&self, user: &str) -> Result<State, StoreError> {
        Ok(self.state_read_named(user, None)?.state)
    }

    /// Reads the state file; when its bytes equal `earlier`'s (or both are missing), `earlier`
    /// is returned as it is: the same bytes parse to the same state, or had failed to.
    fn state_read_named(
        &self,
        user: &str,
        earlier: Option<StateRead>,
    ) -> Result<StateRead, StoreError> {
        let path = self.state_file(user);
        let bytes = self.state_bytes(user, &path)?;
        if let Some(earlier) = earlier.filter(|e| e.bytes == bytes) {
            return Ok(earlier);
        }
        let state = match &bytes {
            None => State::default(),
            Some(b) => State::parse_file(b).map_err(|msg| StoreError::Parse {
                file: FileKind::State(user.to_string()),
                path,
                msg,
            })?,
        };
        Ok(StateRead { state, bytes })
    }

    fn state_file(&self, user: &str) -> PathBuf {
        self.file(user, "state")
    }

    /// The state file's trusted contents (`None`: no file).
    fn state_bytes(
        &self,
        user: &str,
        path: &Path,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let kind = FileKind::State(user.to_string());
        files::read_trusted(path, &kind, self.owner, Exposure::Private, MAX_STATE_BYTES)
    }

    /// Takes the user's exclusive lock (blocking); all writes go through the guard.
    pub fn lock(&self, user: &UserName) -> Result<UserLock<'_>, StoreError> {
        self.lock_named(user, LOCK_TIMEOUT)
    }

    /// The lock of a decoy that no user name can match (names never start with '.'): its
    /// record and state let a denial for a user without a record do the same file work as a
    /// wrong code of an enrolled user, so that timing does not tell them apart.
    pub fn decoy_lock(&self) -> Result<UserLock<'_>, StoreError> {
        self.lock_named(DECOY, LOCK_TIMEOUT)
    }

    fn lock_named(&self, name: &str, timeout: Duration) -> Result<UserLock<'_>, StoreError> {
        let path = self.file(name, "lock");
        let kind = FileKind::Lock(name.to_string());
        let mut file = files::open_lock_file(&path, &kind, self.owner)?;
        let deadline = Instant::now() + timeout;
        let flock = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(f) => break f,
                Err((f, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                    file = f;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                    return Err(StoreError::LockTimeout { path })
                }
                Err((_, errno)) => {
                    return Err(StoreError::Io {
                        file: kind,
                        path,
                        source: io::Error::from(errno),
                    })
                }
            }
        };
        Ok(UserLock {
            store: self,
            user: name.to_string(),
            _flock: flock,
        })
    }

    /// Temp files in `users/` that a writer killed between create and rename left behind
    /// (never at a final name, so harmless, but they take inodes and blocks). A user's own are
    /// removed by the next write under that user's lock, and by [`UserLock::remove_stray_temps`].
    pub fn stray_temp_files(&self) -> Result<Vec<PathBuf>, StoreError> {
        Ok(files::list_dir(&self.users)?
            .into_iter()
            .filter(|n| files::is_temp(n))
            .map(|n| self.users.join(n))
            .collect())
    }

    /// Names in `users/` that are none of the store's own files (a record, a state or a lock of
    /// a valid user name, the decoy's, a temp file): the store ignores them.
    pub fn unknown_files(&self) -> Result<Vec<String>, StoreError> {
        let own = |n: &str| {
            if files::is_temp(n) {
                return true;
            }
            match n.rsplit_once('.') {
                Some((stem, "toml" | "state" | "lock" | offline::OFFLINE_EXT)) => {
                    stem == DECOY || UserName::new(stem).is_ok()
                }
                _ => false,
            }
        };
        Ok(files::list_dir(&self.users)?
            .into_iter()
            .filter(|n| !own(n))
            .collect())
    }

    /// Users with a record file, sorted.
    pub fn users(&self) -> Result<Vec<UserName>, StoreError> {
        Ok(files::list_dir(&self.users)?
            .into_iter()
            .filter_map(|n| UserName::new(n.strip_suffix(".toml")?).ok())
            .collect())
    }
}

/// A record as read: parsed, and the file's bytes (wiped on drop: they hold the secret).
pub struct RecordRead {
    record: Record,
    bytes: Zeroizing<Vec<u8>>,
}

impl RecordRead {
    /// The record as parsed (read-only: [`UserLock::record_again`] hands it back unchanged
    /// when the file still holds the same bytes).
    pub fn record(&self) -> &Record {
        &self.record
    }
}

/// A login state as read (parsed, so its last journal line passed its checksum), and the
/// file's bytes (`None`: no file).
pub struct StateRead {
    state: State,
    bytes: Option<Zeroizing<Vec<u8>>>,
}

impl StateRead {
    pub fn state(&self) -> &State {
        &self.state
    }
}

/// A held per-user lock (released on drop). Read–verify–write happens under it.
pub struct UserLock<'a> {
    store: &'a Store,
    user: String,
    _flock: Flock<File>,
}

impl UserLock<'_> {
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn record(&self) -> Result<Option<Record>, StoreError> {
        Ok(self
            .store
            .record_named(&self.user, None)?
            .map(|(r, _)| r.record))
    }

    /// The record, read again under the lock; `earlier` (read before the lock) is reused
    /// without parsing when the file still holds exactly the same bytes. The flag says whether
    /// it was (the record is then `earlier`'s, unchanged).
    pub fn record_again(&self, earlier: RecordRead) -> Result<Option<(Record, bool)>, StoreError> {
        Ok(self
            .store
            .record_named(&self.user, Some(earlier))?
            .map(|(r, reused)| (r.record, reused)))
    }

    pub fn state(&self) -> Result<State, StoreError> {
        self.store.state_named(&self.user)
    }

    /// The state, read again under the lock; `earlier` (read before the lock) is reused without
    /// parsing when the file still holds exactly the same bytes.
    pub fn state_again(&self, earlier: StateRead) -> Result<State, StoreError> {
        Ok(self
            .store
            .state_read_named(&self.user, Some(earlier))?
            .state)
    }

    /// Replaces the record atomically and durably.
    pub fn write_record(&self, record: &Record) -> Result<(), StoreError> {
        if record.user != self.user {
            return Err(StoreError::WrongUser {
                expected: self.user.clone(),
                found: record.user.clone(),
            });
        }
        let text = record.to_toml();
        files::replace(
            &self.store.users,
            &format!("{}.toml", self.user),
            &FileKind::Record(self.user.clone()),
            text.as_bytes(),
            0o600,
            Durability::Durable,
            files::TempName::Locked,
        )
    }

    /// Records `state`: one line appended to the state journal, flushed (`fdatasync`) when
    /// `Durable` — the one flush of an accepted step. Creating, converting (older TOML form),
    /// repairing or compacting the journal is an atomic, durable rewrite.
    pub fn write_state(&self, state: &State, durability: Durability) -> Result<(), StoreError> {
        let path = self.store.state_file(&self.user);
        let entry = state.to_entry();
        let kind = FileKind::State(self.user.clone());
        let append = |limit| {
            files::append_entry(
                &path,
                &kind,
                self.store.owner,
                state::JOURNAL_HEADER.as_bytes(),
                entry.as_bytes(),
                durability == Durability::Durable,
                limit,
            )
        };
        if append(JOURNAL_LIMIT)? {
            return Ok(());
        }
        match self.replace_state(state) {
            // A full disk has no room for the rewrite's new file, but may have room in the
            // journal's last block: append past the soft limit rather than fail.
            Err(e) if e.is_no_space() => {
                if append(MAX_STATE_BYTES)? {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }

    /// Replaces the state file with a journal holding just `state` (atomic, durable): for a
    /// repair, which must not build on what is there.
    pub fn replace_state(&self, state: &State) -> Result<(), StoreError> {
        let text = format!("{}{}", state::JOURNAL_HEADER, state.to_entry());
        files::replace(
            &self.store.users,
            &format!("{}.state", self.user),
            &FileKind::State(self.user.clone()),
            text.as_bytes(),
            0o600,
            Durability::Durable,
            files::TempName::Locked,
        )
    }

    /// For a state that does not parse: the highest `last_step` in any intact journal line
    /// (see [`State::highest_intact_step`]), so that a repair never makes a used code valid.
    pub fn salvage_last_step(&self) -> Result<Option<u64>, StoreError> {
        let bytes = self
            .store
            .state_bytes(&self.user, &self.store.state_file(&self.user))?;
        Ok(bytes.and_then(|b| State::highest_intact_step(&b)))
    }

    /// Removes every temp file of this user's record and state (see
    /// [`Store::stray_temp_files`]); under the lock, no write of the user is under way. Returns
    /// how many were removed.
    pub fn remove_stray_temps(&self) -> Result<usize, StoreError> {
        let prefixes = [
            files::temp_prefix(&format!("{}.toml", self.user)),
            files::temp_prefix(&format!("{}.state", self.user)),
            files::temp_prefix(&format!("{}.{}", self.user, offline::OFFLINE_EXT)),
        ];
        let mut removed = 0;
        for name in files::list_dir(&self.store.users)? {
            if prefixes.iter().any(|p| name.starts_with(p.as_str())) {
                let path = self.store.users.join(&name);
                removed += usize::from(files::remove_if_exists(&path, &FileKind::Directory)?);
            }
        }
        Ok(removed)
    }

    /// Removes the record and state; true if there was a record.
    pub fn remove(&self) -> Result<bool, StoreError> {
        let record = FileKind::Record(self.user.clone());
        let state = FileKind::State(self.user.clone());
        let had = files::remove_if_exists(&self.store.file(&self.user, "toml"), &record)?;
        files::remove_if_exists(&self.store.file(&self.user, "state"), &state)?;
        files::sync_dir(&self.store.users).map_err(|source| StoreError::Io {
            file: FileKind::Directory,
            path: self.store.users.clone(),
            source,
        })?;
        Ok(had)
    }
}

/// A file others may read and only root (or `owner`) may write — the policy, an import
/// source — trusted as the module trusts the policy: a regular file, not a link, not writable
/// by group or others, at most `max` bytes, opened through its checked, canonical directory
/// (every directory above it root's and not writable by others, or root's and sticky).
/// `Ok(None)` if it does not exist.
pub fn read_public_file(
    path: &Path,
    kind: FileKind,
    owner: u32,
    max: u64,
) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
    read_checked_file(path, kind, owner, Exposure::Public, max)
}

/// A file only root (or `owner`) may read — `store.toml`, the fleet client's private key —
/// trusted like [`read_public_file`] but with no access at all for group or others (0600).
pub fn read_private_file(
    path: &Path,
    kind: FileKind,
    owner: u32,
    max: u64,
) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
    read_checked_file(path, kind, owner, Exposure::Private, max)
}

/// Opens a root-owned file that is not writable by group or others, through its checked,
/// canonical directory, for the caller to map (the fleet client library, opened by the module
/// as `/proc/self/fd/N` so that what was checked is what is loaded). `Ok(None)` if absent.
pub fn open_public_file(
    path: &Path,
    kind: FileKind,
    owner: u32,
) -> Result<Option<std::fs::File>, StoreError> {
    let Some(real) = checked_path(path, &kind, owner)? else {
        return Ok(None);
    };
    files::open_trusted(&real, &kind, owner, Exposure::Public)
}

fn read_checked_file(
    path: &Path,
    kind: FileKind,
    owner: u32,
    exposure: Exposure,
    max: u64,
) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
    let Some(real) = checked_path(path, &kind, owner)? else {
        return Ok(None);
    };
    files::read_trusted(&real, &kind, owner, exposure, max)
}

/// `path` with its directory made canonical and every directory above it checked (root's,
/// not writable by others, or root's and sticky); `Ok(None)` if the directory does not exist.
fn checked_path(path: &Path, kind: &FileKind, owner: u32) -> Result<Option<PathBuf>, StoreError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        return Err(StoreError::Parse {
            file: kind.clone(),
            path: path.to_path_buf(),
            msg: "not a file name".into(),
        });
    };
    let real = match parent.canonicalize() {
        Ok(real) => real.join(name),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::Io {
                file: FileKind::Directory,
                path: parent.to_path_buf(),
                source,
            })
        }
    };
    files::check_ancestors(&real, owner)?;
    Ok(Some(real))
}

/// The policy file's text (SPEC §6), trusted as the module trusts it: `Ok(None)` if it does
/// not exist.
pub fn read_policy_text(path: &Path, owner: u32) -> Result<Option<String>, StoreError> {
    let Some(bytes) = read_public_file(path, FileKind::Policy, owner, MAX_POLICY_BYTES)? else {
        return Ok(None);
    };
    String::from_utf8(bytes.to_vec())
        .map(Some)
        .map_err(|_| StoreError::Parse {
            file: FileKind::Policy,
            path: path.to_path_buf(),
            msg: "not UTF-8".into(),
        })
}

/// Reads and parses the policy file: `Ok(None)` if it does not exist.
pub fn load_policy(path: &Path, owner: u32) -> Result<Option<Policy>, StoreError> {
    let Some(text) = read_policy_text(path, owner)? else {
        return Ok(None);
    };
    Policy::parse(&text)
        .map(Some)
        .map_err(|msg| StoreError::Parse {
            file: FileKind::Policy,
            path: path.to_path_buf(),
            msg,
        })
}

/// Why a policy could not be replaced.
#[derive(Debug, thiserror::Error)]
pub enum PolicyReplaceError {
    /// The new text does not parse or validate: nothing was written.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Replaces the policy file with `text` — only if the module's own parser accepts it — by an
/// atomic, durable rewrite (root, 0644); creates its directory (0755) if missing. The policy
/// as it now reads.
pub fn replace_policy(path: &Path, text: &str) -> Result<Policy, PolicyReplaceError> {
    let policy = Policy::parse(text).map_err(PolicyReplaceError::Invalid)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| StoreError::Parse {
            file: FileKind::Policy,
            path: path.to_path_buf(),
            msg: "not a file name".into(),
        })?;
    files::ensure_dir(dir, 0o755)?;
    files::replace(
        dir,
        name,
        &FileKind::Policy,
        text.as_bytes(),
        0o644,
        Durability::Durable,
        files::TempName::Unique,
    )?;
    Ok(policy)
}

/// What the decision (`flow`) and the verbs need of a store, whatever keeps the data: today's
/// files ([`Store`]); a database later (SPEC §11). A user's read–judge–write happens while the
/// user is held ([`UserStore::hold`]); nothing else writes that user meanwhile.
pub trait UserStore {
    type Held<'s>: HeldUser
    where
        Self: 's;
    /// The user's record as read, if any (its `user` key names the user).
    fn read_record(&self, user: &UserName) -> Result<Option<RecordRead>, StoreError>;
    /// The user's login state as read; "no login yet" when there is none.
    fn read_state(&self, user: &UserName) -> Result<StateRead, StoreError>;
    /// Holds the user (waits at most [`LOCK_TIMEOUT`]).
    fn hold(&self, user: &UserName) -> Result<Self::Held<'_>, StoreError>;
    /// Holds a decoy no user name can match: the same work as holding a user, for denials that
    /// must not be told apart from a wrong code by their timing.
    fn hold_decoy(&self) -> Result<Self::Held<'_>, StoreError>;
    /// Users with a record, sorted.
    fn list(&self) -> Result<Vec<UserName>, StoreError>;
}

/// A held user: reads again, and the writes of SPEC §2–§4.
pub trait HeldUser {
    fn record(&self) -> Result<Option<Record>, StoreError>;
    /// The record read again; `earlier` comes back unparsed when nothing changed (the flag).
    fn record_again(&self, earlier: RecordRead) -> Result<Option<(Record, bool)>, StoreError>;
    fn state(&self) -> Result<State, StoreError>;
    /// The state read again; `earlier`'s when the stored state has not changed since.
    fn state_again(&self, earlier: StateRead) -> Result<State, StoreError>;
    /// Stores a state whose failure count went up (need not be flushed).
    fn count_failure(&self, state: &State) -> Result<(), StoreError>;
    /// Stores a state with an accepted step or a success: durable before it returns.
    fn accept(&self, state: &State) -> Result<(), StoreError>;
    /// Replaces the record (a burned recovery code, an activation, an enrolment): durable.
    fn put_record(&self, record: &Record) -> Result<(), StoreError>;
    /// Replaces the state whatever it was (unlock, repair): durable.
    fn reset_state(&self, state: &State) -> Result<(), StoreError>;
    /// Removes record and state; whether there was a record.
    fn disable(&self) -> Result<bool, StoreError>;
}

impl UserStore for Store {
    type Held<'s> = UserLock<'s>;
    fn read_record(&self, user: &UserName) -> Result<Option<RecordRead>, StoreError> {
        self.record_read(user)
    }
    fn read_state(&self, user: &UserName) -> Result<StateRead, StoreError> {
        self.state_read(user)
    }
    fn hold(&self, user: &UserName) -> Result<UserLock<'_>, StoreError> {
        self.lock(user)
    }
    fn hold_decoy(&self) -> Result<UserLock<'_>, StoreError> {
        self.decoy_lock()
    }
    fn list(&self) -> Result<Vec<UserName>, StoreError> {
        self.users()
    }
}

impl HeldUser for UserLock<'_> {
    fn record(&self) -> Result<Option<Record>, StoreError> {
        UserLock::record(self)
    }
    fn record_again(&self, earlier: RecordRead) -> Result<Option<(Record, bool)>, StoreError> {
        UserLock::record_again(self, earlier)
    }
    fn state(&self) -> Result<State, StoreError> {
        UserLock::state(self)
    }
    fn state_again(&self, earlier: StateRead) -> Result<State, StoreError> {
        UserLock::state_again(self, earlier)
    }
    fn count_failure(&self, state: &State) -> Result<(), StoreError> {
        self.write_state(state, Durability::Relaxed)
    }
    fn accept(&self, state: &State) -> Result<(), StoreError> {
        self.write_state(state, Durability::Durable)
    }
    fn put_record(&self, record: &Record) -> Result<(), StoreError> {
        self.write_record(record)
    }
    fn reset_state(&self, state: &State) -> Result<(), StoreError> {
        self.replace_state(state)
    }
    fn disable(&self) -> Result<bool, StoreError> {
        self.remove()
    }
}

#[cfg(test)]
mod tests;
