//! The hardening the helper does before it reads anything from its caller (SPEC §8): its
//! caller chose its environment, descriptors, limits, signal dispositions, mask and working
//! directory, and none of that may change what it does. One small function per step, in the
//! order [`all`] runs them.

use crate::os::{self, Disposition};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::sys::stat::{fstat, umask, Mode, SFlag};
use nix::unistd::chdir;
use pam_totp::CallLimits;
use std::time::Duration;

/// How long the helper may live: a front-end that stops answering (a user who walked away
/// from a prompt) must not leave a root process behind. Ten minutes covers scanning a QR code.
pub const DEADLINE: Duration = Duration::from_secs(600);

/// Runs every step; `Err` says why the helper must not go on (exit 1). The returned limits are
/// held for the whole run.
pub fn all() -> Result<CallLimits, String> {
    let limits = lift_limits();
    no_core_dumps()?;
    root_group()?;
    clear_environment()?;
    private_umask();
    root_directory()?;
    signals()?;
    check_standard_fds()?;
    close_other_fds();
    deadline();
    Ok(limits)
}

/// RLIMIT_FSIZE/CPU/AS/DATA (to unlimited) and NOFILE (to at least 1024) lifted as far as
/// root may, and SIGXFSZ ignored: a limit the caller lowered can then only make a write fail
/// (EFBIG: refused, nothing half-written, as every store write is an atomic replace), never
/// kill the helper between two writes.
fn lift_limits() -> CallLimits {
    CallLimits::lift()
}

/// No core dump may hold a secret or a password: the process is marked not dumpable (which
/// also keeps `/proc/self` root's and ptrace out, whatever `fs.suid_dumpable` says) and
/// RLIMIT_CORE is 0.
fn no_core_dumps() -> Result<(), String> {
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| format!("cannot turn core dumps off (prctl: {e})"))?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0)
        .map_err(|e| format!("cannot turn core dumps off (RLIMIT_CORE: {e})"))
}

/// The effective gid is root's (the real gid stays the caller's): what the helper creates
/// (the state directory, records, locks) is root:root as when the admin CLI makes it, not in
/// the group of whichever user happened to enrol first. Only when running as root: not
/// setuid (a `nosuid` mount, the tests) the helper has no privilege to order anything with.
fn root_group() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    nix::unistd::setegid(nix::unistd::Gid::from_raw(0))
        .map_err(|e| format!("cannot take root's group: {e}"))
}

/// No variable is read, all are removed: nothing below (NSS, libpam and its modules, syslog)
/// can be steered by the caller's environment.
fn clear_environment() -> Result<(), String> {
    os::clear_environment().map_err(|()| "cannot clear the environment".to_string())
}

/// Files and directories the helper creates (the state directory, records, locks) are
/// private whatever umask the caller had; the store sets exact modes on top of this.
fn private_umask() {
    umask(Mode::from_bits_truncate(0o077));
}

/// The working directory the caller chose (perhaps one it can rename or unmount) is left;
/// every path the helper uses is absolute anyway.
fn root_directory() -> Result<(), String> {
    chdir("/").map_err(|e| format!("cannot change to /: {e}"))
}

/// Signal dispositions and mask the caller left must not matter: SIGPIPE ignored (a write to
/// a front-end that died fails with EPIPE, and the helper ends with exit 1), SIGALRM and
/// SIGCHLD at their defaults (the deadline kills; libpam's helpers can be waited for), and
/// nothing blocked (a blocked SIGALRM would defeat the deadline).
fn signals() -> Result<(), String> {
    for (signal, disposition, name) in [
        (libc::SIGPIPE, Disposition::Ignore, "SIGPIPE"),
        (libc::SIGALRM, Disposition::Default, "SIGALRM"),
        (libc::SIGCHLD, Disposition::Default, "SIGCHLD"),
    ] {
        os::set_disposition(signal, disposition)
            .map_err(|()| format!("cannot set the disposition of {name}"))?;
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| format!("cannot unblock signals: {e}"))
}

/// What the caller must hand over: the protocol on fds 0 and 1, and fd 2 open.
///
/// Rust's runtime opens /dev/null onto a closed fd 0, 1 or 2 before `main`, so a closed fd
/// cannot be told from /dev/null here; the front-end speaks the protocol over pipes, so fds 0
/// and 1 must be pipes or sockets, and anything else (a closed descriptor, /dev/null, a file,
/// a terminal: someone running the helper by hand) ends the helper. Both are made blocking
/// (a caller's O_NONBLOCK would turn a slow front-end into a failed read).
fn check_standard_fds() -> Result<(), String> {
    for (fd, name) in [(0, "standard input"), (1, "standard output")] {
        let st = fstat(fd).map_err(|e| format!("{name} is not open ({e})"))?;
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        if kind != SFlag::S_IFIFO && kind != SFlag::S_IFSOCK {
            return Err(format!(
                "{name} is not a pipe: this helper is run by pam-totp, not by hand"
            ));
        }
        make_blocking(fd).map_err(|e| format!("{name}: {e}"))?;
    }
    fstat(2)
        .map(drop)
        .map_err(|e| format!("standard error is not open ({e})"))
}

fn make_blocking(fd: i32) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    if flags.contains(OFlag::O_NONBLOCK) {
        fcntl(fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    }
    Ok(())
}

/// No descriptor the caller leaked (an open file of its own, a socket) is used by mistake
/// or passed on to PAM modules and their helpers.
fn close_other_fds() {
    if os::close_from_3().is_ok() {
        return;
    }
    // Without close_range: the descriptors listed in /proc/self/fd (the listing's own is
    // closed when the listing ends; closing it again fails harmlessly).
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open.into_iter().filter(|&fd| fd > 2) {
        let _ = nix::unistd::close(fd);
    }
}

/// The deadline: SIGALRM (default action: terminate) after [`DEADLINE`], replacing any timer
/// the caller left. Killing the helper at any point is safe: every store write is an atomic
/// replace under the user's lock.
fn deadline() {
    nix::unistd::alarm::set(DEADLINE.as_secs() as u32);
}
