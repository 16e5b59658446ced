//! The few C library calls the hardening and the log line need that nix offers no safe
//! wrapper for (or only an `unsafe fn`): clearing the environment, closing every descriptor
//! above 2 in one call, setting a signal's disposition, and `syslog`. Each is one small
//! function around one `unsafe` block; everything else in the helper is safe Rust (the PAM
//! client is the other such module, `pam.rs`).

use std::ffi::{c_int, CString};

/// Empties the environment without reading it: `clearenv` drops every entry, also the
/// malformed ones (no `=`, or an empty name) that a by-name removal would miss or panic on.
/// `Err` only if glibc reports a failure (it never does).
pub fn clear_environment() -> Result<(), ()> {
    // SAFETY: the process is single-threaded here (called first thing in main, before anything
    // could spawn a thread), so nothing reads `environ` while glibc resets it; std's own
    // environment functions read `environ` afresh on each call.
    match unsafe { libc::clearenv() } {
        0 => Ok(()),
        _ => Err(()),
    }
}

/// Closes every descriptor above 2 with `close_range(2)`. `Err` if the kernel lacks it
/// (before Linux 5.9): the caller then closes them one by one.
pub fn close_from_3() -> Result<(), ()> {
    // SAFETY: close_range only closes descriptors; no Rust object owns any descriptor above 2
    // at this point (main has opened none, and std holds none), so no owner is left dangling.
    match unsafe { libc::close_range(3, libc::c_uint::MAX, 0) } {
        0 => Ok(()),
        _ => Err(()),
    }
}

/// How a signal is to be handled: only the two dispositions that run no code of ours.
#[derive(Clone, Copy, Debug)]
pub enum Disposition {
    Default,
    Ignore,
}

/// Sets `signal`'s disposition (an inherited `SIG_IGN` survives exec, so the caller chose it).
pub fn set_disposition(signal: c_int, disposition: Disposition) -> Result<(), ()> {
    let handler = match disposition {
        Disposition::Default => libc::SIG_DFL,
        Disposition::Ignore => libc::SIG_IGN,
    };
    // SAFETY: SIG_DFL and SIG_IGN install no handler, so no code of ours can run in signal
    // context; `signal` reads only its two integer arguments.
    match unsafe { libc::signal(signal, handler) } {
        libc::SIG_ERR => Err(()),
        _ => Ok(()),
    }
}

/// syslog priorities used by the helper.
pub const LOG_WARNING: c_int = libc::LOG_WARNING;
pub const LOG_NOTICE: c_int = libc::LOG_NOTICE;
pub const LOG_INFO: c_int = libc::LOG_INFO;

/// One line to syslog, facility authpriv, ident `pam-totp-self`. `openlog` is called every
/// time: PAM modules call `openlog`/`closelog` with their own ident in between.
pub fn syslog(priority: c_int, line: &str) {
    let text = CString::new(line.replace('\0', "\\0"))
        .unwrap_or_else(|_| CString::from(c"(unprintable log message)"));
    // SAFETY: the ident is a static NUL-terminated string (openlog keeps the pointer); the
    // format is the constant "%s" and its one argument a valid C string alive for the call.
    unsafe {
        libc::openlog(c"pam-totp-self".as_ptr(), libc::LOG_PID, libc::LOG_AUTHPRIV);
        libc::syslog(priority, c"%s".as_ptr(), text.as_ptr());
        libc::closelog();
    }
}
