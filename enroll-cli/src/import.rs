//! What both imports share: reading the source file (read-only, never modified) and storing an
//! imported record with its state.

use crate::error::{CliError, Result};
use crate::output::erroutln;
use pam_totp::names::UserName;
use pam_totp::store::{self, Durability, FileKind, Record, State, Status, Store, StoreError};
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use zeroize::Zeroizing;

/// Reads a source file: opened read-only with `O_NOFOLLOW` (a symbolic link is refused), must
/// be a regular file of at most `max` bytes. The file is never written.
pub fn read_source(path: &Path, max: u64) -> Result<Zeroizing<String>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| CliError::io("cannot open", path, &e))?;
    let meta = file
        .metadata()
        .map_err(|e| CliError::io("cannot read", path, &e))?;
    if !meta.is_file() {
        return Err(CliError::new(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    if meta.len() > max {
        return Err(CliError::new(format!(
            "{} is too large ({} bytes, at most {max})",
            path.display(),
            meta.len()
        )));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::io("cannot read", path, &e))?;
    match std::str::from_utf8(&bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_string())),
        Err(_) => Err(CliError::new(format!(
            "{} is not a text file (not UTF-8)",
            path.display()
        ))),
    }
}

/// Reads a source that names keys for other users (a pam_oath users file), refusing one that
/// someone besides root (or `owner`, in test setups) could have written — the file, or a
/// directory above it (a root-owned sticky one like /tmp passes): whoever can write it chooses
/// the keys of every user imported from it. The rule is the store's own for trusted files
/// (`check_ancestors`, `read_trusted`). With `force` such a file is read after a warning.
pub fn read_trusted_source(
    path: &Path,
    max: u64,
    owner: u32,
    force: bool,
) -> Result<Zeroizing<String>> {
    let text = read_source(path, max)?;
    let Err(why) = trust(path, owner, max) else {
        return Ok(text);
    };
    let risk = "whoever can write it chooses the keys of the users imported from it";
    if !force {
        let p = path.display();
        return Err(CliError::new(format!(
            "refusing to import from {p}: {why}; {risk}; nothing was imported"
        ))
        .hint(format!(
            "make it root's and not writable by others (chown root:root {p} && chmod 0600 {p}; \
             also its directories), check its contents, and run the import again"
        ))
        .hint("or add --force to import it anyway (with a warning)"));
    }
    erroutln!(
        "warning: {}: {why}; {risk}; importing anyway (--force)",
        path.display()
    );
    Ok(text)
}

/// `Err` with what is wrong when `path` or a directory above it is not trusted.
fn trust(path: &Path, owner: u32, max: u64) -> std::result::Result<(), String> {
    store::read_public_file(path, FileKind::Other, owner, max)
        .map(drop)
        .or_else(|e| match e {
            StoreError::Untrusted { path, check, .. } => {
                Err(format!("{} is {check}", path.display()))
            }
            // Not a question of trust; reading the file already succeeded.
            _ => Ok(()),
        })
}

/// Why an import into the store did not happen.
pub enum SaveError {
    /// The user has an active record and `--force` was not given.
    ActiveExists,
    Other(CliError),
}

/// Stores an imported active record and its state under the user's lock: refuses an existing
/// active record unless `force`; the state's `last_step` is the source's (and never lower than
/// one already recorded), failures and lock are cleared. State first, then the record, as
/// `enroll::confirm` does.
pub fn save(
    store: &Store,
    record: &Record,
    last_step: Option<u64>,
    force: bool,
) -> std::result::Result<(), SaveError> {
    let user = &UserName::new(&record.user).map_err(|e| {
        SaveError::Other(CliError::new(e.to_string()).hint(crate::ctx::USER_NAME_RULE))
    })?;
    let other = |doing: &str, e: StoreError| SaveError::Other(CliError::store(doing, e));
    let lock = store
        .lock(user)
        .map_err(|e| other(&format!("cannot lock {user}'s record"), e))?;
    match lock.record() {
        Ok(Some(r)) if r.status == Status::Active && !force => return Err(SaveError::ActiveExists),
        Ok(_) => {}
        Err(StoreError::Parse { .. }) if force => {}
        Err(e) => return Err(other(&format!("cannot read {user}'s record"), e)),
    }
    // A state that cannot be read or trusted is an error, never a silent reset: its
    // `last_step` is what stops a code from being accepted twice.
    let previous = lock
        .state()
        .map_err(|e| other(&format!("cannot read {user}'s login state (pam-totp unlock {user} repairs a corrupt one)"), e))?
        .last_step;
    let state = State {
        last_step: match (previous, last_step) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        },
        ..State::default()
    };
    lock.write_state(&state, Durability::Durable)
        .map_err(|e| other(&format!("cannot write {user}'s login state"), e))?;
    debug_assert_eq!(record.status, Status::Active);
    lock.write_record(record)
        .map_err(|e| other(&format!("cannot write {user}'s record"), e))
}
