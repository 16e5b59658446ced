//! The fleet client library (SPEC §11), loaded only when a line has `store=`: file mode maps
//! and relocates nothing of it. The library (crate `pam-totp-store`) is opened by the core's
//! trusted-file check (root's, not writable by others, every directory above it too) and
//! mapped from that very descriptor (`/proc/self/fd/N`), so what was checked is what runs.
//! It is never unloaded: a second login in the same process finds it mapped.
//!
//! [`DlStore`] is the module's [`FleetStore`]: each call encodes a [`wire::Request`] with what
//! is left of the call's time budget and decodes the answer. With `agent_socket` in
//! `store.toml` the request goes to the host's agent ([`crate::fleet::agent`]), and the library
//! is not even loaded; only when no agent accepts the connection (nothing was sent) does the
//! module call `pam_totp_store_v1` itself, as without an agent.

use crate::fleet::agent::{self, AgentError};
use crate::fleet::wire::{self, Call, Response};
use crate::fleet::{
    CheckResult, FleetEnrolment, FleetError, FleetStore, OfflineApplied, StoreConfig,
};
use crate::names::UserName;
use crate::store::{self, FileKind, OfflineReport};
use std::ffi::{c_int, c_void, CString};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How much sooner than the module the agent must give up (it is told that much less time).
const AGENT_GRACE: Duration = Duration::from_millis(200);

type StoreFn = unsafe extern "C" fn(*const u8, usize, *mut u8, usize, *mut usize) -> c_int;

/// The fleet store as the module reaches it: the loaded library's entry point, and the time
/// budget of this PAM call (SPEC §11), spent across its contacts.
pub struct DlStore {
    /// The client library: its path, and its entry point once loaded.
    lib: PathBuf,
    call: Option<StoreFn>,
    agent: Option<PathBuf>,
    config: PathBuf,
    owner: u32,
    budget: Duration,
    spent: Duration,
}

fn failed(msg: impl Into<String>) -> FleetError {
    FleetError(msg.into())
}

/// The library this process has mapped: its file's identity and its entry point. glibc knows
/// a library loaded as `/proc/self/fd/N` by that name, so a second `dlopen` under the same name
/// would return the first library whatever file it now names: the identity is checked here.
static LOADED: OnceLock<(u64, u64, StoreFn)> = OnceLock::new();

/// Maps the library at `path` after the trusted-file check (once per process); its entry point.
fn load(path: &Path, owner: u32) -> Result<StoreFn, FleetError> {
    let file = store::open_public_file(path, FileKind::Fleet, owner)
        .map_err(|e| failed(format!("client library: {e}")))?
        .ok_or_else(|| {
            failed(format!(
                "client library {} is not installed (package pam-totp, or store_lib=)",
                path.display()
            ))
        })?;
    let meta = file
        .metadata()
        .map_err(|e| failed(format!("client library {}: {e}", path.display())))?;
    if let Some(&(dev, ino, call)) = LOADED.get() {
        if (dev, ino) == (meta.dev(), meta.ino()) {
            return Ok(call);
        }
        return Err(failed(format!(
            "client library {} is not the one this process loaded (upgraded, or another \
             store_lib=): restart the service",
            path.display()
        )));
    }
    let by_fd = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|_| failed("client library: bad path"))?;
    // SAFETY: `by_fd` is a NUL-terminated path; dlopen runs the library's initialisers, which
    // is why only a root-owned, checked file gets here. The handle is deliberately never
    // closed (see the module comment).
    let handle = unsafe { libc::dlopen(by_fd.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    drop(file);
    if handle.is_null() {
        // SAFETY: dlerror returns a thread-local C string or NULL; copied at once.
        let why = unsafe {
            let e = libc::dlerror();
            if e.is_null() {
                String::from("unknown error")
            } else {
                std::ffi::CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        return Err(failed(format!(
            "client library {}: cannot load: {why}",
            path.display()
        )));
    }
    // SAFETY: `handle` is a live handle from dlopen and SYMBOL is NUL-terminated.
    let sym: *mut c_void = unsafe { libc::dlsym(handle, wire::SYMBOL.as_ptr().cast()) };
    if sym.is_null() {
        return Err(failed(format!(
            "client library {} has no pam_totp_store_v1 (another version?)",
            path.display()
        )));
    }
    // SAFETY: the library exports `pam_totp_store_v1` with exactly this signature (crate
    // pam-totp-store, ffi.rs); the symbol name carries the version.
    let call = unsafe { std::mem::transmute::<*mut c_void, StoreFn>(sym) };
    let _ = LOADED.set((meta.dev(), meta.ino(), call));
    Ok(call)
}

impl DlStore {
    /// The store of a checked `store.toml`; with `agent_socket` the client library the module
    /// options name is loaded only if the agent cannot be reached.
    pub fn open(lib: &Path, config: &StoreConfig, owner: u32) -> Result<DlStore, FleetError> {
        config.check_module_endpoint().map_err(failed)?;
        // What is wrong on this host is found here, before any contact, and is never taken for
        // an unreachable store (which would let break-glass users in from their local record):
        // without an agent the library, with one the socket's directory.
        let call = match &config.agent_socket {
            None => Some(load(lib, owner)?),
            Some(sock) => {
                agent::check_socket_dir(sock).map_err(failed)?;
                None
            }
        };
        Ok(DlStore {
            lib: lib.to_path_buf(),
            call,
            agent: config.agent_socket.clone(),
            config: config.path.clone(),
            owner,
            budget: config.budget,
            spent: Duration::ZERO,
        })
    }

    fn exchange(&mut self, call: Call) -> Result<Response, FleetError> {
        let remaining = self.budget.saturating_sub(self.spent);
        if remaining.is_zero() {
            return Err(failed(format!(
                "the time budget of {} ms for this login is used up",
                self.budget.as_millis()
            )));
        }
        let request = |remaining| {
            wire::Request {
                config: self.config.clone(),
                owner: self.owner,
                remaining,
                call: call.clone(),
            }
            .encode()
        };
        let started = Instant::now();
        let mut agent_missing = None;
        if let Some(sock) = &self.agent {
            // The agent gets a little less than what is left, so that its own account of a
            // timeout (which step, which address) arrives before the module gives up on it,
            // and it stops before the module does.
            let for_agent = remaining.saturating_sub(AGENT_GRACE).max(remaining / 2);
            let asked = agent::ask(sock, &request(for_agent), started + remaining);
            match asked {
                Ok(bytes) => {
                    self.spent += started.elapsed();
                    return Response::decode(&bytes).map_err(|e| failed(format!("agent: {e}")));
                }
                Err(AgentError::Failed(e)) => {
                    self.spent += started.elapsed();
                    return Err(failed(e));
                }
                // Nothing was sent: reach the store directly, as without an agent.
                Err(AgentError::NotReached(e)) => agent_missing = Some(e),
            }
        }
        let r = self.direct(&request(remaining), started);
        match (r, agent_missing) {
            (Ok(Response::Failed(e)), Some(why)) => Ok(Response::Failed(FleetError(format!(
                "{} (directly, as {why})",
                e.0
            )))),
            (Err(e), Some(why)) => Err(failed(format!("{} (as {why})", e.0))),
            (r, _) => r,
        }
    }

    /// The call through the client library, loaded now if it is not yet.
    fn direct(&mut self, req: &[u8], started: Instant) -> Result<Response, FleetError> {
        let call = match self.call {
            Some(c) => c,
            None => *self.call.insert(load(&self.lib, self.owner)?),
        };
        let mut resp = Zeroizing::new(vec![0u8; wire::MAX_RESPONSE]);
        let mut len = 0usize;
        // SAFETY: `req` and `resp` are live buffers of the lengths given; `len` is a valid
        // out-pointer; the library writes at most `resp.len()` bytes (its contract, wire.rs).
        let rc = unsafe {
            call(
                req.as_ptr(),
                req.len(),
                resp.as_mut_ptr(),
                resp.len(),
                &mut len,
            )
        };
        self.spent += started.elapsed();
        if rc != 0 || len > resp.len() {
            return Err(failed(format!("client library failed (code {rc})")));
        }
        Response::decode(&resp[..len]).map_err(|e| failed(format!("client library: {e}")))
    }
}

fn unexpected<T>(r: Response) -> Result<T, FleetError> {
    match r {
        Response::Failed(e) => Err(e),
        _ => Err(failed("client library: unexpected answer")),
    }
}

impl FleetStore for DlStore {
    fn enrolment(&mut self, user: &UserName) -> Result<FleetEnrolment, FleetError> {
        match self.exchange(Call::Enrolment { user: user.clone() })? {
            Response::Enrolment(e) => Ok(e),
            other => unexpected(other),
        }
    }

    fn check(
        &mut self,
        user: &UserName,
        answer: Option<&str>,
        rhost: Option<&str>,
        window: u32,
        shown_at: u64,
    ) -> Result<CheckResult, FleetError> {
        let call = Call::Check {
            user: user.clone(),
            answer: answer.map(|a| Zeroizing::new(a.to_string())),
            rhost: rhost.map(str::to_string),
            window,
            shown_at,
        };
        match self.exchange(call)? {
            Response::Check(c) => Ok(c),
            other => unexpected(other),
        }
    }

    fn report_offline(
        &mut self,
        user: &UserName,
        report: &OfflineReport,
    ) -> Result<OfflineApplied, FleetError> {
        let call = Call::ReportOffline {
            user: user.clone(),
            report: report.clone(),
        };
        match self.exchange(call)? {
            Response::Reported(r) => Ok(r),
            other => unexpected(other),
        }
    }
}
