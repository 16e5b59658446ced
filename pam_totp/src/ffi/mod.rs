//! The only `unsafe` code: the `pam_sm_*` exports, one trampoline that guards them all, the
//! conversation and `pam_syslog` wrappers. Everything below it is safe Rust.
//!
//! Every export is a few lines: it hands its raw arguments to [`trampoline`], which checks
//! them, catches any panic (a panic never unwinds into libpam), and maps the outcome to a PAM
//! code. Only this module reads the clock (through [`crate::sys::RealSystem`]).

use crate::escape::log_field;
use crate::flow::split::{self as split_line, Split, TypedAhead};
use crate::flow::{self, Code, ConvError, Conversation, Level, Request, Verdict};
use crate::options::Options;
use crate::reason::Reason;
use crate::sys::RealSystem;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;

use zeroize::Zeroizing;

pub mod abi;
mod datum;
mod fleet;
pub(crate) mod limits;

use abi::{
    ConvFn, PamConv, PamHandle, PamMessage, PamResponse, PAM_AUTHINFO_UNAVAIL, PAM_AUTHTOK,
    PAM_AUTH_ERR, PAM_CONV, PAM_CONV_ERR, PAM_IGNORE, PAM_PROMPT_ECHO_OFF, PAM_RHOST, PAM_SERVICE,
    PAM_SERVICE_ERR, PAM_SUCCESS, PAM_TEXT_INFO,
};

const LOG_ERR: c_int = 3;
const LOG_WARNING: c_int = 4;
const LOG_NOTICE: c_int = 5;
const LOG_INFO: c_int = 6;
const LOG_DEBUG: c_int = 7;

#[link(name = "pam")]
extern "C" {
    fn pam_get_user(pamh: *mut PamHandle, user: *mut *const c_char, prompt: *const c_char)
        -> c_int;
    fn pam_get_item(pamh: *const PamHandle, item_type: c_int, item: *mut *const c_void) -> c_int;
    fn pam_syslog(pamh: *const PamHandle, priority: c_int, fmt: *const c_char, ...);
    fn pam_fail_delay(pamh: *mut PamHandle, musec_delay: std::ffi::c_uint) -> c_int;
    fn pam_get_authtok(
        pamh: *mut PamHandle,
        item: c_int,
        authtok: *mut *const c_char,
        prompt: *const c_char,
    ) -> c_int;
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_get_data(
        pamh: *const PamHandle,
        module_data_name: *const c_char,
        data: *mut *const c_void,
    ) -> c_int;
    fn pam_set_data(
        pamh: *mut PamHandle,
        module_data_name: *const c_char,
        data: *mut c_void,
        cleanup: Option<DataCleanup>,
    ) -> c_int;
}

/// `cleanup` of `pam_set_data`: called by libpam once for each datum it drops (replaced,
/// removed, or at `pam_end`).
type DataCleanup = unsafe extern "C" fn(pamh: *mut PamHandle, data: *mut c_void, status: c_int);

/// The name of the PAM data a `split` line leaves for the line after the password (SPEC §9):
/// a [`datum::Datum`].
const TYPED_AHEAD: &CStr = c"pam_totp_typed_ahead";

/// Frees (and so wipes) what [`Handle::put_typed_ahead`] gave libpam.
unsafe extern "C" fn drop_typed_ahead(_pamh: *mut PamHandle, data: *mut c_void, _status: c_int) {
    if data.is_null() {
        return;
    }
    let _ = panic::catch_unwind(|| {
        // SAFETY: `data` is the pointer `Box::into_raw` made in `put_typed_ahead`, handed to
        // libpam once with this cleanup (this copy of the module's own); libpam calls the
        // cleanup once per datum, so it is freed (and wiped) here exactly once.
        drop(unsafe { Box::from_raw(data.cast::<datum::Datum>()) });
    });
}

/// Delay libpam applies before reporting a failed authentication, as pam_unix does: it slows
/// guessing and (libpam adds jitter) hides timing differences between denials.
const FAIL_DELAY_USEC: std::ffi::c_uint = 2_000_000;

/// A checked, non-null handle, valid for the duration of one `pam_sm_*` call.
struct Handle(*mut PamHandle);

impl Handle {
    fn request_fail_delay(&self) {
        // SAFETY: valid handle for this call; pam_fail_delay only records the wish in it.
        unsafe {
            pam_fail_delay(self.0, FAIL_DELAY_USEC);
        }
    }

    fn log(&self, priority: c_int, msg: &str) {
        let text = CString::new(msg.replace('\0', "\\0"))
            .unwrap_or_else(|_| CString::from(c"(unprintable log message)"));
        // SAFETY: self.0 is a non-null handle libpam gave us for this call; the format is a
        // constant "%s" and its one argument is a valid NUL-terminated string that outlives
        // the call.
        unsafe { pam_syslog(self.0, priority, c"%s".as_ptr(), text.as_ptr()) }
    }

    /// A string item (`PAM_RHOST`, `PAM_SERVICE`), if set and UTF-8.
    fn string_item(&self, item: c_int) -> Option<String> {
        let mut p: *const c_void = ptr::null();
        // SAFETY: valid handle; libpam writes a pointer it owns (or NULL) into `p`.
        let rc = unsafe { pam_get_item(self.0, item, &mut p) };
        if rc != PAM_SUCCESS || p.is_null() {
            return None;
        }
        // SAFETY: string items are NUL-terminated C strings owned by libpam, alive for this call.
        let s = unsafe { CStr::from_ptr(p.cast::<c_char>()) };
        s.to_str().ok().map(str::to_string)
    }

    fn user(&self) -> Result<String, String> {
        let mut p: *const c_char = ptr::null();
        // SAFETY: valid handle; a NULL prompt makes libpam use its default; it writes a pointer
        // it owns (or NULL) into `p`.
        let rc = unsafe { pam_get_user(self.0, &mut p, ptr::null()) };
        if rc != PAM_SUCCESS || p.is_null() {
            return Err(format!(
                "cannot get the user name (pam_get_user returned {rc})"
            ));
        }
        // SAFETY: a NUL-terminated string owned by libpam, alive for this call.
        let s = unsafe { CStr::from_ptr(p) };
        Ok(s.to_string_lossy().into_owned())
    }

    /// The application's one answer (`PAM_AUTHTOK`; libpam asks "Password: " if unset).
    fn authtok(&self) -> Result<Zeroizing<Vec<u8>>, String> {
        let mut p: *const c_char = ptr::null();
        // SAFETY: valid handle; a NULL prompt makes libpam use its default; it writes a pointer
        // it owns (or NULL) into `p`.
        let rc = unsafe { pam_get_authtok(self.0, PAM_AUTHTOK, &mut p, ptr::null()) };
        if rc != PAM_SUCCESS || p.is_null() {
            return Err(format!(
                "cannot get the answer (pam_get_authtok returned {rc})"
            ));
        }
        // SAFETY: a NUL-terminated string owned by libpam, alive for this call.
        let s = unsafe { CStr::from_ptr(p) };
        Ok(Zeroizing::new(s.to_bytes().to_vec()))
    }

    /// Sets `PAM_AUTHTOK` (libpam copies it, and wipes the value it replaces).
    fn set_authtok(&self, password: &[u8]) -> Result<(), String> {
        if password.contains(&0) {
            return Err("the password holds a NUL byte".into());
        }
        // Sized up front: the buffer never moves, so no unwiped copy is left behind.
        let mut c = Zeroizing::new(Vec::with_capacity(password.len() + 1));
        c.extend_from_slice(password);
        c.push(0);
        // SAFETY: valid handle; `c` is a NUL-terminated string alive for the call, which libpam
        // copies.
        let rc = unsafe { pam_set_item(self.0, PAM_AUTHTOK, c.as_ptr().cast()) };
        match rc {
            PAM_SUCCESS => Ok(()),
            rc => Err(format!(
                "cannot set the password (pam_set_item returned {rc})"
            )),
        }
    }

    /// Leaves `t` for a later `pam_totp.so` line of this handle, replacing what was there.
    fn put_typed_ahead(&self, t: &TypedAhead) -> Result<(), String> {
        let Some(d) = datum::Datum::of(t) else {
            return Err("the code is longer than any code".into());
        };
        let raw = Box::into_raw(d);
        // SAFETY: valid handle; the name is a static C string; on success libpam owns `raw`
        // and frees it through `drop_typed_ahead`.
        let rc = unsafe {
            pam_set_data(
                self.0,
                TYPED_AHEAD.as_ptr(),
                raw.cast(),
                Some(drop_typed_ahead),
            )
        };
        if rc != PAM_SUCCESS {
            // SAFETY: libpam did not take `raw`: it is still ours, freed once here.
            drop(unsafe { Box::from_raw(raw) });
            return Err(format!("cannot keep the code (pam_set_data returned {rc})"));
        }
        Ok(())
    }

    /// Takes what a `split` line left, if one ran, and leaves "nothing typed" in its place: a
    /// second judging line of the same stack then denies without prompting (the application
    /// would answer with the password) instead of judging the code again. `Err` for a datum
    /// this module cannot read.
    fn take_typed_ahead(&self) -> Result<Option<TypedAhead>, String> {
        let mut p: *const c_void = ptr::null();
        // SAFETY: valid handle, static name; libpam writes its pointer (or NULL) into `p`.
        let rc = unsafe { pam_get_data(self.0, TYPED_AHEAD.as_ptr(), &mut p) };
        if rc != PAM_SUCCESS || p.is_null() {
            return Ok(None);
        }
        // SAFETY: under this name only `put_typed_ahead` of a copy of this module stores data,
        // always a live `Box<Datum>` (a `#[repr(C)]` layout every copy shares, checked by its
        // magic number) until libpam calls its cleanup, which happens only when the datum is
        // replaced (below, after the last use of `p`) or at pam_end.
        let read = unsafe { &*p.cast::<datum::Datum>() }.read();
        let Some(taken) = read else {
            return Err(
                "a split line left data this module cannot read (another version of \
                        pam_totp.so in the stack?)"
                    .into(),
            );
        };
        self.put_typed_ahead(&TypedAhead::Nothing)?;
        Ok(Some(taken))
    }

    fn conversation(&self) -> Result<PamConversation<'_>, String> {
        let mut p: *const c_void = ptr::null();
        // SAFETY: valid handle; libpam writes a pointer to its `struct pam_conv` (or NULL).
        let rc = unsafe { pam_get_item(self.0, PAM_CONV, &mut p) };
        if rc != PAM_SUCCESS || p.is_null() {
            return Err("the application gave no conversation function".into());
        }
        // SAFETY: PAM_CONV items are `struct pam_conv`, owned by libpam for the whole call.
        let conv = unsafe { &*p.cast::<PamConv>() };
        match conv.conv {
            Some(f) => Ok(PamConversation {
                f,
                appdata: conv.appdata_ptr,
                _h: self,
            }),
            None => Err("the application's conversation function is NULL".into()),
        }
    }
}

/// The application's conversation function, one message per call.
struct PamConversation<'h> {
    f: ConvFn,
    appdata: *mut c_void,
    _h: &'h Handle,
}

impl PamConversation<'_> {
    fn send(&mut self, style: c_int, text: &str) -> Result<Option<Zeroizing<Vec<u8>>>, ConvError> {
        let c = CString::new(text).map_err(|_| ConvError)?;
        let msg = PamMessage {
            msg_style: style,
            msg: c.as_ptr(),
        };
        let mut msg_ptr: *const PamMessage = &msg;
        let mut resp: *mut PamResponse = ptr::null_mut();
        // SAFETY: we pass one valid message (alive for the call) and a place for the response,
        // as the conversation contract (pam_conv(3)) requires; appdata is the application's.
        let rc = unsafe { (self.f)(1, &mut msg_ptr, &mut resp, self.appdata) };
        if resp.is_null() {
            return if rc == PAM_SUCCESS && style == PAM_TEXT_INFO {
                Ok(None)
            } else {
                Err(ConvError)
            };
        }
        // SAFETY: on return the application hands us a malloc'd array of one pam_response whose
        // `resp` is NULL or a malloc'd NUL-terminated string; we copy, wipe and free both.
        let answer = unsafe {
            let r = &mut *resp;
            let out = if r.resp.is_null() {
                None
            } else {
                let bytes = CStr::from_ptr(r.resp).to_bytes();
                let copy = Zeroizing::new(bytes.to_vec());
                ptr::write_bytes(r.resp, 0, bytes.len());
                libc::free(r.resp.cast());
                Some(copy)
            };
            libc::free(resp.cast());
            out
        };
        if rc != PAM_SUCCESS {
            return Err(ConvError);
        }
        Ok(answer)
    }
}

impl Conversation for PamConversation<'_> {
    fn prompt_hidden(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConvError> {
        self.send(PAM_PROMPT_ECHO_OFF, prompt)?.ok_or(ConvError)
    }

    fn info(&mut self, text: &str) -> Result<(), ConvError> {
        self.send(PAM_TEXT_INFO, text).map(|_| ())
    }
}

fn args_of(argc: c_int, argv: *const *const c_char) -> Result<Vec<String>, String> {
    if argc < 0 || (argc > 0 && argv.is_null()) {
        return Err("invalid module arguments from libpam".into());
    }
    let mut out = Vec::with_capacity(argc as usize);
    for i in 0..argc as usize {
        // SAFETY: libpam passes argc pointers to NUL-terminated strings (checked non-null).
        let p = unsafe { *argv.add(i) };
        if p.is_null() {
            return Err("invalid module arguments from libpam".into());
        }
        // SAFETY: non-null, NUL-terminated, owned by libpam for the call.
        let s = unsafe { CStr::from_ptr(p) };
        out.push(
            s.to_str()
                .map_err(|_| format!("module option {:?} is not UTF-8", s))?
                .to_string(),
        );
    }
    Ok(out)
}

fn level_priority(l: Level) -> c_int {
    match l {
        Level::Err => LOG_ERR,
        Level::Warning => LOG_WARNING,
        Level::Notice => LOG_NOTICE,
        Level::Info => LOG_INFO,
    }
}

fn code_value(c: Code) -> c_int {
    match c {
        Code::Success => PAM_SUCCESS,
        Code::AuthErr => PAM_AUTH_ERR,
        Code::Ignore => PAM_IGNORE,
        Code::AuthInfoUnavail => PAM_AUTHINFO_UNAVAIL,
        Code::ServiceErr => PAM_SERVICE_ERR,
        Code::ConvErr => PAM_CONV_ERR,
    }
}

/// The guard every entry point goes through: checks the handle and arguments, catches panics,
/// logs the decision and maps it to a PAM code. Whatever goes wrong, the result is a denial.
fn trampoline(
    pamh: *mut PamHandle,
    argc: c_int,
    argv: *const *const c_char,
    body: fn(&Handle, &Options) -> c_int,
) -> c_int {
    if pamh.is_null() {
        return PAM_SERVICE_ERR;
    }
    let handle = Handle(pamh);
    // Restored when this call returns, after everything below (also after a caught panic).
    let _limits = limits::CallLimits::lift();
    let result = crate::quiet_panic::catch_quietly(|| {
        let args = match args_of(argc, argv) {
            Ok(a) => a,
            Err(e) => {
                handle.log(LOG_ERR, &format!("denied: {e}"));
                return PAM_SERVICE_ERR;
            }
        };
        match Options::parse(&args) {
            Ok(opts) => body(&handle, &opts),
            Err(e) => {
                handle.log(LOG_ERR, &format!("denied: {e}"));
                PAM_SERVICE_ERR
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(_) => {
            // Logging itself must not unwind out of here.
            let _ = panic::catch_unwind(AssertUnwindSafe(|| {
                handle.log(LOG_ERR, "denied: internal error (panic caught)")
            }));
            PAM_SERVICE_ERR
        }
    }
}

fn authenticate(h: &Handle, opts: &Options) -> c_int {
    // `login` sets an empty PAM_RHOST: that means no remote host.
    let rhost = h.string_item(PAM_RHOST).filter(|r| !r.is_empty());
    let user = match h.user() {
        Ok(u) => u,
        Err(e) => {
            h.log(LOG_ERR, &format!("denied: {e}"));
            return PAM_AUTH_ERR;
        }
    };
    let service = h.string_item(PAM_SERVICE).unwrap_or_default();
    let line = Line {
        h,
        opts,
        user: &user,
        rhost: rhost.as_deref(),
        service: &service,
    };
    if opts.split {
        return line.split();
    }
    let mut conv = match h.conversation() {
        Ok(c) => c,
        Err(e) => {
            h.log(LOG_ERR, &format!("user={} denied: {e}", log_field(&user)));
            return PAM_CONV_ERR;
        }
    };
    let process = || {
        let exe = std::fs::read_link("/proc/self/exe").ok();
        (exe, nix::unistd::getuid() != nix::unistd::geteuid())
    };
    if crate::selfservice::module_steps_aside(&service, process) {
        h.log(
            LOG_INFO,
            &format!(
                "user={} service {}: not asking, pam-totp-self asks for the code itself",
                log_field(&user),
                log_field(&service)
            ),
        );
        return PAM_IGNORE;
    }
    let typed_ahead = match h.take_typed_ahead() {
        Ok(t) => t,
        Err(e) => {
            line.deny_unlogged(LOG_ERR, &e);
            return PAM_SERVICE_ERR;
        }
    };
    let req = line.request(typed_ahead.as_ref());
    let verdict = match line.fleet_store() {
        None => flow::authenticate(&mut conv, &RealSystem, &req),
        Some(Ok((mut store, break_glass))) => {
            flow::authenticate_fleet(&mut conv, &RealSystem, &req, &mut store, break_glass)
        }
        Some(Err(v)) => v,
    };
    line.finish(&verdict)
}

/// One `pam_sm_authenticate` call of one stack line, once its user is known.
struct Line<'a> {
    h: &'a Handle,
    opts: &'a Options,
    user: &'a str,
    rhost: Option<&'a str>,
    service: &'a str,
}

impl Line<'_> {
    fn request<'r>(&'r self, typed_ahead: Option<&'r TypedAhead>) -> Request<'r> {
        Request {
            user: self.user,
            rhost: self.rhost,
            options: self.opts,
            owner: 0,
            typed_ahead,
        }
    }

    /// With `store=` (SPEC §11): the fleet store for this call — `store.toml` checked and the
    /// client library loaded, and whether the user is a break-glass user (`[offline]`) — or
    /// the verdict that neither could be (`PAM_AUTHINFO_UNAVAIL`).
    fn fleet_store(&self) -> Option<Result<(fleet::DlStore, bool), Verdict>> {
        let path = self.opts.store.as_ref()?;
        let opened = crate::fleet::StoreConfig::load(path, 0)
            .map_err(|e| crate::fleet::FleetError(e.to_string()))
            .and_then(|cfg| {
                let break_glass =
                    crate::names::UserName::new(self.user).is_ok_and(|u| cfg.offline_user(&u));
                Ok((
                    fleet::DlStore::open(&self.opts.store_lib, &cfg, 0)?,
                    break_glass,
                ))
            });
        Some(opened.map_err(|e| Reason::Store(e.to_string()).into()))
    }

    /// A `split` line (SPEC §9): takes the one answer apart and hands both parts on.
    fn split(&self) -> c_int {
        // What an earlier attempt on this handle left is never judged by this one.
        if let Err(e) = self.h.put_typed_ahead(&TypedAhead::Nothing) {
            self.deny_unlogged(LOG_ERR, &format!("split: {e}"));
            return PAM_SERVICE_ERR;
        }
        let answer = match self.h.authtok() {
            Ok(a) => a,
            Err(e) => {
                self.deny_unlogged(LOG_ERR, &e);
                return PAM_AUTH_ERR;
            }
        };
        let req = self.request(None);
        let out = match self.fleet_store() {
            None => split_line::split(&RealSystem, &req, &answer),
            Some(Ok((mut store, _))) => flow::split_fleet(&RealSystem, &req, &mut store, &answer),
            Some(Err(v)) => split_line::SplitOutcome::denied(v),
        };
        let handed_on = match out.split {
            Some(Split::Code { password, code }) => self
                .h
                .set_authtok(&password)
                .and_then(|()| self.h.put_typed_ahead(&TypedAhead::Code(code))),
            // "Nothing typed" is what the line put there first.
            Some(Split::Whole) | None => Ok(()),
        };
        if let Err(e) = handed_on {
            self.deny_unlogged(LOG_ERR, &format!("split: {e}"));
            return PAM_SERVICE_ERR;
        }
        self.finish(&out.verdict)
    }

    /// A denial decided here, not by the flow: one log line, and the fail delay.
    fn deny_unlogged(&self, priority: c_int, why: &str) {
        self.h.log(
            priority,
            &format!("user={} denied: {why}", log_field(self.user)),
        );
        self.h.request_fail_delay();
    }

    /// Logs the decision (one line; the debug line with `debug`) and maps it to a PAM code.
    fn finish(&self, verdict: &Verdict) -> c_int {
        let h = self.h;
        h.log(
            level_priority(verdict.level),
            &format!(
                "user={} rhost={} {}",
                log_field(self.user),
                self.rhost.map(log_field).unwrap_or_else(|| "-".into()),
                verdict.reason
            ),
        );
        if self.opts.debug {
            h.log(
                LOG_DEBUG,
                &format!(
                    "debug: service={} dir={} policy={} window={} split={} result={:?}",
                    log_field(self.service),
                    self.opts.dir.display(),
                    self.opts.policy.display(),
                    self.opts.window,
                    self.opts.split,
                    verdict.code
                ),
            );
        }
        if !matches!(verdict.code, Code::Success | Code::Ignore) {
            h.request_fail_delay();
        }
        code_value(verdict.code)
    }
}

/// # Safety
/// Called by libpam with a valid handle and `argc` valid C strings in `argv`.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: *mut PamHandle,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    trampoline(pamh, argc, argv, authenticate)
}

/// # Safety
/// Called by libpam with a valid handle and `argc` valid C strings in `argv`.
#[no_mangle]
pub unsafe extern "C" fn pam_sm_setcred(
    pamh: *mut PamHandle,
    _flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    trampoline(pamh, argc, argv, |_, _| PAM_SUCCESS)
}
