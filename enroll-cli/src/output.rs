//! Small output helpers shared by the verbs.

use crate::error::{CliError, Result};
use pam_totp::store::{self, Durability, StoreError};
use serde::Serialize;
use std::io::{self, Write};
use std::path::Path;
use zeroize::Zeroizing;

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
        .map_err(|e| CliError::new(format!("cannot write to stdout: {e}")))
}

/// Replaces `path` atomically with `bytes`, mode `mode` exactly (temp file, fsync, rename).
pub fn write_file_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CliError::new(format!("{} is not a file name", path.display())))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    store::files::replace(
        dir,
        name,
        bytes,
        mode,
        Durability::Durable,
        store::TempName::Unique,
    )
    .map_err(|e| match e {
        StoreError::Io { source, .. } => CliError::io("cannot write", path, &source),
        other => CliError::new(other.to_string()),
    })
}

/// Unix seconds as RFC 3339 UTC.
pub fn time(t: u64) -> String {
    pam_totp::timefmt::rfc3339(t)
}
