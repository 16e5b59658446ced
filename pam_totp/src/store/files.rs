//! Trusted opens and crash-safe replacement: the only code that opens files (SPEC §2).
#![forbid(unsafe_code)]

use super::{Check, Exposure, FileKind, StoreError};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const S_ISVTX: u32 = 0o1000;

fn untrusted(file: &FileKind, path: &Path, check: Check) -> StoreError {
    StoreError::Untrusted {
        file: file.clone(),
        path: path.to_path_buf(),
        check,
    }
}

fn io_err(file: &FileKind, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        file: file.clone(),
        path: path.to_path_buf(),
        source,
    }
}

const DIR: &FileKind = &FileKind::Directory;

fn owner_ok(uid: u32, owner: u32) -> bool {
    uid == owner || uid == 0
}

/// Every ancestor of `path` (canonical) must be a directory owned by root (or `owner`) and not
/// writable by group/other, unless it is a root-owned sticky directory like /tmp.
pub fn check_ancestors(path: &Path, owner: u32) -> Result<(), StoreError> {
    for ancestor in path.ancestors().skip(1) {
        let meta = fs::metadata(ancestor).map_err(|e| io_err(DIR, ancestor, e))?;
        if !meta.is_dir() {
            return Err(untrusted(DIR, ancestor, Check::NotDirectory));
        }
        if !owner_ok(meta.uid(), owner) {
            return Err(untrusted(
                DIR,
                ancestor,
                Check::Owner {
                    uid: meta.uid(),
                    expected: 0,
                },
            ));
        }
        let mode = meta.mode();
        if mode & 0o022 != 0 && !(mode & S_ISVTX != 0 && meta.uid() == 0) {
            return Err(untrusted(
                DIR,
                ancestor,
                Check::WritableDirectory {
                    mode: mode & 0o7777,
                },
            ));
        }
    }
    Ok(())
}

/// A private directory: a real directory (no symlink), owned by `owner`, mode 0700 or stricter.
pub fn check_private_dir(path: &Path, owner: u32) -> Result<(), StoreError> {
    let meta = fs::symlink_metadata(path).map_err(|e| io_err(DIR, path, e))?;
    if meta.file_type().is_symlink() {
        return Err(untrusted(DIR, path, Check::SymbolicLink));
    }
    if !meta.is_dir() {
        return Err(untrusted(DIR, path, Check::NotDirectory));
    }
    if meta.uid() != owner {
        return Err(untrusted(
            DIR,
            path,
            Check::Owner {
                uid: meta.uid(),
                expected: owner,
            },
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(untrusted(
            DIR,
            path,
            Check::OpenDirectory {
                mode: meta.mode() & 0o7777,
            },
        ));
    }
    Ok(())
}

/// Creates a private directory if missing (mode 0700).
pub fn ensure_private_dir(path: &Path) -> Result<(), StoreError> {
    ensure_dir(path, 0o700)
}

/// Creates a directory with `mode` if missing.
pub fn ensure_dir(path: &Path, mode: u32) -> Result<(), StoreError> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err(DIR, path, e)),
    }
}

fn open_flags() -> i32 {
    libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK
}

/// Reads a file that must be a regular file owned by `owner` (or root), at most `max` bytes,
/// with the permissions `exposure` demands. `Ok(None)` if it does not exist.
pub fn read_trusted(
    path: &Path,
    file: &FileKind,
    owner: u32,
    exposure: Exposure,
    max: u64,
) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
    let kind = file;
    let Some((file, meta)) =
        open_existing(path, kind, OpenOptions::new().read(true), owner, exposure)?
    else {
        return Ok(None);
    };
    if meta.len() > max {
        let check = Check::TooLarge {
            size: Some(meta.len()),
            max,
        };
        return Err(untrusted(kind, path, check));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io_err(kind, path, e))?;
    if buf.len() as u64 > max {
        return Err(untrusted(kind, path, Check::TooLarge { size: None, max }));
    }
    Ok(Some(buf))
}

/// Opens an existing file for reading with the checks of [`read_trusted`] (no size limit).
pub fn open_trusted(
    path: &Path,
    kind: &FileKind,
    owner: u32,
    exposure: Exposure,
) -> Result<Option<File>, StoreError> {
    Ok(open_existing(path, kind, OpenOptions::new().read(true), owner, exposure)?.map(|(f, _)| f))
}

/// Opens an existing file without following a symbolic link (and without blocking on a FIFO)
/// and checks what it is: a regular file owned by `owner` (or root) with the permissions
/// `exposure` demands. `Ok(None)` if it does not exist.
fn open_existing(
    path: &Path,
    kind: &FileKind,
    options: &OpenOptions,
    owner: u32,
    exposure: Exposure,
) -> Result<Option<(File, fs::Metadata)>, StoreError> {
    let file = match options.clone().custom_flags(open_flags()).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(untrusted(kind, path, Check::SymbolicLink))
        }
        Err(e) => return Err(io_err(kind, path, e)),
    };
    let meta = file.metadata().map_err(|e| io_err(kind, path, e))?;
    check_file_meta(path, kind, &meta, owner, exposure)?;
    Ok(Some((file, meta)))
}

fn check_file_meta(
    path: &Path,
    kind: &FileKind,
    meta: &fs::Metadata,
    owner: u32,
    exposure: Exposure,
) -> Result<(), StoreError> {
    if !meta.is_file() {
        return Err(untrusted(kind, path, Check::NotRegularFile));
    }
    if !owner_ok(meta.uid(), owner) {
        let check = Check::Owner {
            uid: meta.uid(),
            expected: 0,
        };
        return Err(untrusted(kind, path, check));
    }
    let mode = meta.mode() & 0o7777;
    let forbidden = match exposure {
        Exposure::Private => 0o077,
        Exposure::Public => 0o022,
    };
    if mode & forbidden != 0 {
        return Err(untrusted(kind, path, Check::Mode { mode, exposure }));
    }
    Ok(())
}

/// Opens (creating if needed) a lock file and checks it like a private file.
pub fn open_lock_file(path: &Path, kind: &FileKind, owner: u32) -> Result<File, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(open_flags())
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                untrusted(kind, path, Check::SymbolicLink)
            } else {
                io_err(kind, path, e)
            }
        })?;
    let meta = file.metadata().map_err(|e| io_err(kind, path, e))?;
    check_file_meta(path, kind, &meta, owner, Exposure::Private)?;
    Ok(file)
}

/// How hard a replacement is pushed to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// File data synced, renamed, directory synced: survives a crash right after return.
    Durable,
    /// File data synced and renamed (never a truncated file), directory not synced: a crash
    /// may bring back the previous version. For failure counters.
    Relaxed,
}

/// How the temp file of a replacement is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TempName {
    /// `.NAME.tmp`, for files written only under their user's lock: one writer at a time, so
    /// one fixed name serves, and whatever a killed writer left there is removed by the next
    /// write instead of piling up.
    Locked,
    /// `.NAME.tmp-PID-RANDOM`, for files with no lock of their own (the policy, the CLI's image
    /// outputs): concurrent writers never share a temp file.
    Unique,
}

/// Prefix every temp file of `name` starts with (both kinds of [`TempName`]).
pub fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp")
}

/// Whether a name in a store directory is one of [`replace`]'s temp files (of any file).
pub fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp")
}

fn temp_name(dir: &Path, name: &str, kind: TempName) -> PathBuf {
    match kind {
        TempName::Locked => dir.join(temp_prefix(name)),
        TempName::Unique => {
            let mut r = [0u8; 6];
            // A name clash only makes create_new fail; the randomness is not security-relevant.
            let _ = crate::secret::fill_random(&mut r);
            let tag = crate::hex::encode(&r);
            dir.join(format!(
                "{}-{}-{tag}",
                temp_prefix(name),
                std::process::id()
            ))
        }
    }
}

/// Replaces `dir/name` with `bytes` atomically: temp file in the same directory, fsync, rename,
/// and (if durable) fsync of the directory. On failure the old file is untouched and the temp
/// file removed.
pub fn replace(
    dir: &Path,
    name: &str,
    kind: &FileKind,
    bytes: &[u8],
    mode: u32,
    durability: Durability,
    temp: TempName,
) -> Result<(), StoreError> {
    let target = dir.join(name);
    let tmp = temp_name(dir, name, temp);
    if temp == TempName::Locked {
        // Left by a writer that died between create and rename (we hold the lock it held).
        remove_if_exists(&tmp, kind)?;
    }
    let result = (|| -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        // The umask may have narrowed the mode; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &target)?;
        if durability == Durability::Durable {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(kind, &target, e));
    }
    Ok(())
}

/// Appends `entry` (a complete line) to the journal at `path` with one `write`, then
/// `fdatasync` if `durable`. Returns `Ok(false)` — nothing written — when the caller must
/// rewrite the file instead: it does not exist, does not start with `header`, does not end in a
/// newline (a torn append: it is never extended, so that its damaged line can never become a
/// complete line), or would grow past `limit` bytes. On a failed write the file is cut back to
/// its old length.
pub fn append_entry(
    path: &Path,
    kind: &FileKind,
    owner: u32,
    header: &[u8],
    entry: &[u8],
    durable: bool,
    limit: u64,
) -> Result<bool, StoreError> {
    use std::os::unix::fs::FileExt;
    let mut options = OpenOptions::new();
    options.read(true).append(true);
    let Some((mut file, meta)) = open_existing(path, kind, &options, owner, Exposure::Private)?
    else {
        return Ok(false);
    };
    let len = meta.len();
    if len <= header.len() as u64 || len.saturating_add(entry.len() as u64) > limit {
        return Ok(false);
    }
    let mut head = vec![0u8; header.len() + 1];
    file.read_exact_at(&mut head[..header.len()], 0)
        .and_then(|()| file.read_exact_at(&mut head[header.len()..], len - 1))
        .map_err(|e| io_err(kind, path, e))?;
    if head[..header.len()] != *header || head[header.len()] != b'\n' {
        return Ok(false);
    }
    let result = file
        .write_all(entry)
        .and_then(|()| if durable { file.sync_data() } else { Ok(()) });
    if let Err(e) = result {
        // Whatever part of the line reached the file lacks its newline and would be ignored;
        // cutting it off keeps the journal appendable.
        let _ = file.set_len(len);
        return Err(io_err(kind, path, e));
    }
    Ok(true)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes `path` if it exists.
pub fn remove_if_exists(path: &Path, kind: &FileKind) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(kind, path, e)),
    }
}

/// Names of the entries in `dir`.
pub fn list_dir(dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(DIR, dir, e))? {
        let entry = entry.map_err(|e| io_err(DIR, dir, e))?;
        if let Some(name) = entry.file_name().to_str() {
            out.push(name.to_string());
        }
    }
    out.sort();
    Ok(out)
}
