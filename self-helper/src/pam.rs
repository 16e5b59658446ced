//! The PAM client: the user's password checked through PAM service `pam-totp` (the package's
//! `/etc/pam.d/pam-totp`), its prompts relayed to the front-end. The only `unsafe` code of the
//! helper besides `os.rs`: `pam_start`/`pam_set_item`/`pam_authenticate`/`pam_acct_mgmt`/
//! `pam_end`, and the conversation callback libpam calls, which catches every panic (none may
//! unwind into C) and hands back responses malloc'd as libpam requires.

use pam_totp::flow::ConvError;
use pam_totp::pam_abi::{
    PamConv, PamHandle, PamMessage, PamResponse, PAM_BUF_ERR, PAM_CONV_ERR,
    PAM_DISALLOW_NULL_AUTHTOK, PAM_ERROR_MSG, PAM_MAX_NUM_MSG, PAM_NEW_AUTHTOK_REQD,
    PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON, PAM_RUSER, PAM_SUCCESS, PAM_TEXT_INFO, PAM_USER,
};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use zeroize::Zeroizing;

/// Asks the user and shows texts: the front-end, as seen by the callback.
pub trait Prompter {
    fn ask(&mut self, text: &str, echo: bool) -> Result<Zeroizing<Vec<u8>>, ConvError>;
    fn show(&mut self, text: &str) -> Result<(), ConvError>;
}

#[link(name = "pam")]
extern "C" {
    fn pam_start(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_get_item(pamh: *const PamHandle, item_type: c_int, item: *mut *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut PamHandle, status: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandle, errnum: c_int) -> *const c_char;
}

/// Why the password was not accepted (the PAM code and libpam's words for it).
#[derive(Debug)]
pub enum Failure {
    /// PAM could not be started for the service.
    Start(c_int),
    /// `pam_authenticate` failed: a wrong password, a locked account, a cancelled prompt.
    Password,
    /// `pam_acct_mgmt` failed: the account may not log in now.
    Account { code: c_int, text: String },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Start(code) => write!(f, "cannot start PAM (error {code})"),
            Failure::Password => f.write_str("wrong password (or the account is locked)"),
            Failure::Account { code, .. } if *code == PAM_NEW_AUTHTOK_REQD => {
                f.write_str("your password has expired; change it first (passwd)")
            }
            Failure::Account { text, .. } => write!(f, "your account may not log in ({text})"),
        }
    }
}

/// What the callback reaches through `appdata_ptr`.
struct ConvData<'a> {
    prompter: &'a mut dyn Prompter,
}

/// One PAM transaction; `pam_end` when dropped.
struct Session {
    pamh: *mut PamHandle,
    last: c_int,
}

impl Session {
    fn strerror(&self, code: c_int) -> String {
        // SAFETY: pamh is the live handle pam_start gave us; pam_strerror returns a pointer to
        // a static NUL-terminated string (or NULL), which we copy at once.
        let p = unsafe { pam_strerror(self.pamh, code) };
        if p.is_null() {
            return format!("error {code}");
        }
        // SAFETY: non-null, NUL-terminated, static.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: pamh is the live handle pam_start gave us, ended exactly once, here.
        unsafe { pam_end(self.pamh, self.last) };
    }
}

/// Checks `user`'s password through PAM `service` (then the account, as a login would),
/// relaying every prompt and message through `prompter`. Null passwords are not accepted.
pub fn check_password(
    service: &str,
    user: &str,
    prompter: &mut dyn Prompter,
) -> Result<(), Failure> {
    let (Ok(c_service), Ok(c_user)) = (CString::new(service), CString::new(user)) else {
        return Err(Failure::Start(PAM_BUF_ERR));
    };
    let mut data = ConvData { prompter };
    let conv = PamConv {
        conv: Some(converse),
        appdata_ptr: ptr::addr_of_mut!(data).cast(),
    };
    let mut pamh: *mut PamHandle = ptr::null_mut();
    // SAFETY: valid C strings and a conversation struct that outlive the transaction (the
    // Session below is dropped, ending it, before `conv` and `data`); libpam writes the handle.
    let rc = unsafe { pam_start(c_service.as_ptr(), c_user.as_ptr(), &conv, &mut pamh) };
    if rc != PAM_SUCCESS || pamh.is_null() {
        return Err(Failure::Start(rc));
    }
    let mut session = Session { pamh, last: rc };
    // SAFETY: live handle; libpam copies the string item. A failure only loses a log detail.
    unsafe { pam_set_item(session.pamh, PAM_RUSER, c_user.as_ptr().cast()) };
    // SAFETY: live handle; libpam calls `converse` with `data` during the call.
    session.last = unsafe { pam_authenticate(session.pamh, PAM_DISALLOW_NULL_AUTHTOK) };
    if session.last != PAM_SUCCESS {
        return Err(Failure::Password);
    }
    // A module may rewrite PAM_USER: the password must have been checked for this very user.
    let mut item: *const c_void = ptr::null();
    // SAFETY: live handle; libpam writes a pointer it owns (or NULL) into `item`.
    let rc = unsafe { pam_get_item(session.pamh, PAM_USER, &mut item) };
    // SAFETY: PAM_USER is a NUL-terminated string owned by libpam while the handle lives.
    let same = rc == PAM_SUCCESS
        && !item.is_null()
        && unsafe { CStr::from_ptr(item.cast()) } == c_user.as_c_str();
    if !same {
        return Err(Failure::Password);
    }
    // SAFETY: as above.
    session.last = unsafe { pam_acct_mgmt(session.pamh, PAM_DISALLOW_NULL_AUTHTOK) };
    if session.last != PAM_SUCCESS {
        let text = session.strerror(session.last);
        return Err(Failure::Account {
            code: session.last,
            text,
        });
    }
    Ok(())
}

/// What one PAM message asks for: an answer (prompts) or nothing (texts shown).
fn answer(
    style: c_int,
    text: &str,
    p: &mut dyn Prompter,
) -> Result<Option<Zeroizing<Vec<u8>>>, ConvError> {
    match style {
        PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON => {
            let a = p.ask(text, style == PAM_PROMPT_ECHO_ON)?;
            // A C string cannot carry a NUL: such an answer cannot be passed on faithfully.
            if a.contains(&0) {
                return Err(ConvError);
            }
            Ok(Some(a))
        }
        PAM_ERROR_MSG | PAM_TEXT_INFO => p.show(text).map(|()| None),
        _ => Err(ConvError),
    }
}

/// The conversation callback (pam_conv(3), Linux-PAM layout: `msg` is an array of pointers).
unsafe extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: libpam passes the arguments pam_conv(3) describes, and appdata_ptr is the
        // ConvData that check_password keeps alive for the whole transaction.
        unsafe { converse_checked(num_msg, msg, resp, appdata) }
    }))
    .unwrap_or(PAM_CONV_ERR)
}

/// # Safety
/// The pam_conv(3) contract: `msg` holds `num_msg` pointers to messages with NUL-terminated
/// texts (or NULL), `resp` is writable, `appdata` points to a live [`ConvData`].
unsafe fn converse_checked(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    if resp.is_null()
        || msg.is_null()
        || appdata.is_null()
        || !(1..=PAM_MAX_NUM_MSG).contains(&num_msg)
    {
        return PAM_CONV_ERR;
    }
    // SAFETY: resp is non-null and writable per the contract.
    unsafe { *resp = ptr::null_mut() };
    // SAFETY: appdata is our ConvData, alive and not otherwise borrowed during the call.
    let data = unsafe { &mut *appdata.cast::<ConvData<'_>>() };
    let n = num_msg as usize;
    let mut answers = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: i < num_msg pointers, per the contract.
        let m = unsafe { *msg.add(i) };
        if m.is_null() {
            return PAM_CONV_ERR;
        }
        // SAFETY: non-null message owned by the module for the call.
        let m = unsafe { &*m };
        let text = if m.msg.is_null() {
            String::new()
        } else {
            // SAFETY: a NUL-terminated string owned by the module for the call.
            unsafe { CStr::from_ptr(m.msg) }
                .to_string_lossy()
                .into_owned()
        };
        match answer(m.msg_style, &text, &mut *data.prompter) {
            Ok(a) => answers.push(a),
            Err(ConvError) => return PAM_CONV_ERR,
        }
    }
    // SAFETY: the answers are copied into malloc'd memory libpam takes over (and frees).
    match unsafe { responses(&answers) } {
        Some(array) => {
            // SAFETY: resp is writable per the contract.
            unsafe { *resp = array };
            PAM_SUCCESS
        }
        None => PAM_BUF_ERR,
    }
}

/// `answers` as a calloc'd array of responses with malloc'd strings; `None` (nothing left
/// allocated) if memory ran out.
///
/// # Safety
/// None beyond the call itself: the result belongs to the caller, to be freed with `free`.
unsafe fn responses(answers: &[Option<Zeroizing<Vec<u8>>>]) -> Option<*mut PamResponse> {
    // SAFETY: calloc of answers.len() (1..=32) zeroed responses: every `resp` starts NULL.
    let array =
        unsafe { libc::calloc(answers.len(), size_of::<PamResponse>()) }.cast::<PamResponse>();
    if array.is_null() {
        return None;
    }
    for (i, a) in answers.iter().enumerate() {
        let Some(a) = a else { continue };
        // SAFETY: a buffer of len + 1 bytes for the answer and its NUL.
        let s = unsafe { libc::malloc(a.len() + 1) }.cast::<u8>();
        if s.is_null() {
            // SAFETY: array holds `answers.len()` responses, those before i filled by us.
            unsafe { free_responses(array, answers.len()) };
            return None;
        }
        // SAFETY: s has a.len() + 1 bytes; array has answers.len() > i elements.
        unsafe {
            ptr::copy_nonoverlapping(a.as_ptr(), s, a.len());
            *s.add(a.len()) = 0;
            (*array.add(i)).resp = s.cast();
        }
    }
    Some(array)
}

/// Wipes and frees an array [`responses`] made (its NULL strings skipped).
///
/// # Safety
/// `array` is a calloc'd array of `n` responses whose strings are NULL or malloc'd C strings.
unsafe fn free_responses(array: *mut PamResponse, n: usize) {
    for i in 0..n {
        // SAFETY: i < n, per the contract.
        let r = unsafe { &mut *array.add(i) };
        if !r.resp.is_null() {
            // SAFETY: a malloc'd NUL-terminated string of ours.
            unsafe {
                let len = CStr::from_ptr(r.resp).to_bytes().len();
                ptr::write_bytes(r.resp, 0, len);
                libc::free(r.resp.cast());
            }
        }
    }
    // SAFETY: the calloc'd array itself.
    unsafe { libc::free(array.cast()) };
}

#[cfg(test)]
#[path = "pam_tests.rs"]
mod tests;
