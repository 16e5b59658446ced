//! Output shared by the verbs: stdout and stderr text, JSON, and the files the CLI writes for
//! the admin (QR images).
//!
//! Every line on stdout goes through [`out!`]/[`outln!`], which return a `Result` instead of
//! panicking as `println!` does when stdout is a closed pipe (`pam-totp list | head -1`): such
//! a run ends quietly with exit status 1 — the output was not all delivered — and whatever the
//! verb already wrote to the store stays written (every verb stores before it prints). Lines
//! on stderr go through [`errout!`]/[`erroutln!`], which drop what cannot be written (there is
//! nowhere left to say it). `main.rs` denies `println!`/`eprintln!` so that none slips back.

use crate::error::{plain_io, CliError, Result};
use nix::fcntl::renameat;
use nix::unistd::{unlinkat, UnlinkatFlags};
use serde::Serialize;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use zeroize::Zeroizing;

/// `print!` on stdout, returning `Result` (see the module comment).
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::stdout_fmt(format_args!($($arg)*)) };
}

/// `println!` on stdout, returning `Result` (see the module comment).
macro_rules! outln {
    () => { $crate::output::stdout_fmt(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::stdout_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprint!` that never panics: stderr text that cannot be written is dropped.
macro_rules! errout {
    ($($arg:tt)*) => { $crate::output::stderr_fmt(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
macro_rules! erroutln {
    ($($arg:tt)*) => { $crate::output::stderr_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {errout, erroutln, out, outln};

/// What a failed write to stdout means: a closed pipe ends the run quietly (exit status 1, no
/// message: the reader went away on purpose); anything else is said on stderr.
fn stdout_error(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CliError::silent()
    } else {
        CliError::new(format!("cannot write to stdout: {}", plain_io(&e)))
    }
}

pub fn stdout_fmt(args: fmt::Arguments<'_>) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

pub fn stderr_fmt(args: fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// Writes `value` as one pretty JSON document (and a newline) on stdout. The text is held in
/// zeroizing memory: enrolment documents carry the key.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut buf = Zeroizing::new(Vec::with_capacity(1024));
    serde_json::to_writer_pretty(&mut *buf, value)
        .map_err(|e| CliError::new(format!("cannot format JSON: {e}")))?;
    buf.push(b'\n');
    write_stdout(&buf)
}

pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// A file written by [`write_output`], held by its directory so that it can be removed again
/// (when the command fails later) without walking the path a second time.
pub struct Written {
    dir: File,
    name: OsString,
}

impl Written {
    pub fn remove(&self) {
        let _ = unlinkat(
            Some(self.dir.as_raw_fd()),
            self.name.as_os_str(),
            UnlinkatFlags::NoRemoveDir,
        );
    }
}

/// Opens `name` relative to the open directory `dir`, as openat(2) does (through the
/// descriptor's /proc entry: nix 0.29's `openat` hands back a raw descriptor, and owning one
/// would need `unsafe`). Only `name` itself is looked up, with whatever `opts` say about links.
fn open_at(dir: &File, name: &OsStr, opts: &OpenOptions) -> io::Result<File> {
    opts.open(
        Path::new("/proc/self/fd")
            .join(dir.as_raw_fd().to_string())
            .join(name),
    )
}

/// Opens the directory `path` will be written in, one component at a time from `/` (absolute
/// path) or the working directory, never following a symbolic link: a link in the path (a
/// user's `~/out -> /etc`) could send root's write anywhere.
fn open_parent(path: &Path) -> Result<File> {
    let dir_flags = libc::O_DIRECTORY | libc::O_CLOEXEC;
    let start = if path.is_absolute() { "/" } else { "." };
    let mut dir = OpenOptions::new()
        .read(true)
        .custom_flags(dir_flags)
        .open(start)
        .map_err(|e| CliError::io("cannot write", path, &e))?;
    let mut step = OpenOptions::new();
    step.read(true).custom_flags(dir_flags | libc::O_NOFOLLOW);
    let mut shown = PathBuf::new();
    for c in path.parent().map(Path::components).into_iter().flatten() {
        let name = match c {
            Component::Normal(n) => n,
            Component::ParentDir => OsStr::new(".."),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {
                shown.push(c.as_os_str());
                continue;
            }
        };
        shown.push(name);
        dir = match open_at(&dir, name, &step) {
            Ok(d) => d,
            Err(e) if is_link_refusal(&e) && is_symlink(&dir, name) => {
                return Err(symlink_refused(path, &shown))
            }
            Err(e) => return Err(CliError::io("cannot write", path, &e)),
        };
    }
    Ok(dir)
}

fn is_link_refusal(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR))
}

fn is_symlink(dir: &File, name: &OsStr) -> bool {
    let p = Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name);
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

fn symlink_refused(path: &Path, link: &Path) -> CliError {
    let err = CliError::new(format!(
        "not writing {}: {} is a symbolic link, and pam-totp does not follow links in an \
         output path (one in a directory someone else controls could point anywhere)",
        path.display(),
        link.display()
    ));
    let real = path
        .parent()
        .and_then(|p| fs::canonicalize(p).ok())
        .zip(path.file_name())
        .map(|(dir, name)| dir.join(name));
    match real {
        Some(r) => err.hint(format!(
            "if that is where the file belongs, give the real path: {}",
            r.display()
        )),
        None => err.hint("give a path without symbolic links"),
    }
}

/// Writes `bytes` to `path` (mode `mode` exactly), never through a symbolic link: the parent
/// directory is reached without following links (see [`open_parent`]), the data goes to a new
/// temp file created there with `O_EXCL|O_NOFOLLOW`, is synced, and is renamed over `path`
/// (which replaces a link named `path` rather than following it); then the directory is synced.
pub fn write_output(path: &Path, bytes: &[u8], mode: u32) -> Result<Written> {
    let name = match path.components().next_back() {
        Some(Component::Normal(n)) => n.to_os_string(),
        _ => {
            return Err(CliError::new(format!(
                "{} is not a file name",
                path.display()
            )))
        }
    };
    let dir = open_parent(path)?;
    let mut tag = [0u8; 6];
    // A clash only makes the exclusive create fail; the randomness is not security-relevant.
    let _ = pam_totp::secret::fill_random(&mut tag);
    let mut tmp = OsString::from(".");
    tmp.push(&name);
    tmp.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        pam_totp::hex::encode(&tag)
    ));
    let dirfd = dir.as_raw_fd();
    let written = (|| -> io::Result<()> {
        let mut f = open_at(
            &dir,
            &tmp,
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC),
        )?;
        // The umask may have narrowed the mode; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        renameat(Some(dirfd), tmp.as_os_str(), Some(dirfd), name.as_os_str())?;
        dir.sync_all()
    })();
    if let Err(e) = written {
        let _ = unlinkat(Some(dirfd), tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        return Err(CliError::io("cannot write", path, &e));
    }
    Ok(Written { dir, name })
}

/// Unix seconds as RFC 3339 UTC.
pub fn time(t: u64) -> String {
    pam_totp::timefmt::rfc3339(t)
}

/// A span of seconds in the largest whole unit, for "about 365 days".
pub fn duration(seconds: u64) -> String {
    let (n, unit) = match seconds {
        s if s >= 2 * 86_400 => (s / 86_400, "days"),
        s if s >= 2 * 3600 => (s / 3600, "hours"),
        s if s >= 2 * 60 => (s / 60, "minutes"),
        s => (s, "seconds"),
    };
    format!("{n} {unit}")
}

/// Rows under a header, columns padded to their widest cell (the last one not padded). The
/// cells are shown as given: the caller makes them terminal-safe.
pub fn table<R: AsRef<[String]>>(header: &[&str], rows: &[R]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row.as_ref()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut t = String::new();
    let mut push_row = |row: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for (i, c) in row.enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            line.push_str(c);
            if i + 1 < widths.len() {
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        t.push_str(line.trim_end());
        t.push('\n');
    };
    push_row(&mut header.iter().copied());
    for row in rows {
        push_row(&mut row.as_ref().iter().map(String::as_str));
    }
    t
}
