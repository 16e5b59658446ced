//! The C entry point (the only unsafe code of the crate): `pam_totp_store_v1`, as
//! [`pam_totp::fleet::wire`] documents it. Decoding, the call and encoding run inside
//! `catch_unwind` with the panic hook silenced (a panic is a `Failed` response, never a
//! message on stderr); this module only moves bytes across the boundary.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use pam_totp::fleet::wire::{Request, Response};
use pam_totp::fleet::FleetError;
use std::ffi::c_int;

/// The response does not fit `resp_cap` (nothing written).
pub const TOO_SMALL: c_int = 1;
/// A null pointer where the contract wants one.
pub const BAD_ARGUMENTS: c_int = 2;

/// The encoded response to an encoded request; a panic anywhere inside is a `Failed` response.
pub(crate) fn respond(req: &[u8]) -> Vec<u8> {
    let r = pam_totp::quiet_panic::catch_quietly(|| {
        match Request::decode(req) {
            Ok(r) => crate::call(&r),
            Err(e) => Response::Failed(FleetError(format!("invalid request: {e}"))),
        }
        .encode()
    });
    r.unwrap_or_else(|_| {
        Response::Failed(FleetError("internal error (panic caught)".into())).encode()
    })
}

/// The fleet store call (`pam_totp::fleet::wire`): decodes the request in `req[..req_len]`,
/// answers it, writes the encoded response to `resp` and its length to `*resp_len`. Returns
/// 0 when a response was written, [`TOO_SMALL`] when it does not fit `resp_cap`,
/// [`BAD_ARGUMENTS`] for a null pointer.
///
/// # Safety
/// `req` points to `req_len` readable bytes (or is anything when `req_len` is 0); `resp` to
/// `resp_cap` writable bytes that do not overlap `req`; `resp_len` to a writable `usize`. None
/// of them is touched by another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn pam_totp_store_v1(
    req: *const u8,
    req_len: usize,
    resp: *mut u8,
    resp_cap: usize,
    resp_len: *mut usize,
) -> c_int {
    if (req.is_null() && req_len > 0) || resp.is_null() || resp_len.is_null() {
        return BAD_ARGUMENTS;
    }
    let input: &[u8] = if req_len == 0 {
        &[]
    } else {
        // SAFETY: non-null, and the caller guarantees `req_len` readable bytes at `req`,
        // unchanged for the call.
        unsafe { std::slice::from_raw_parts(req, req_len) }
    };
    let out = respond(input);
    if out.len() > resp_cap {
        return TOO_SMALL;
    }
    // SAFETY: `resp` is non-null with `resp_cap >= out.len()` writable bytes that do not
    // overlap `out` (a fresh Vec) nor `req`; `resp_len` is non-null and writable.
    unsafe {
        std::ptr::copy_nonoverlapping(out.as_ptr(), resp, out.len());
        resp_len.write(out.len());
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use pam_totp::fleet::wire::Call;
    use pam_totp::names::UserName;
    use std::time::Duration;

    fn request() -> Vec<u8> {
        Request {
            config: "/nonexistent/pam-totp-test/store.toml".into(),
            owner: 0,
            remaining: Duration::from_millis(500),
            call: Call::Enrolment {
                user: UserName::new("alice").unwrap(),
            },
        }
        .encode()
        .to_vec()
    }

    fn call_ffi(req: &[u8], cap: usize) -> (c_int, Vec<u8>) {
        let mut buf = vec![0u8; cap];
        let mut len = usize::MAX;
        // SAFETY (test): valid slices and a local length.
        let rc =
            unsafe { pam_totp_store_v1(req.as_ptr(), req.len(), buf.as_mut_ptr(), cap, &mut len) };
        if rc == 0 {
            buf.truncate(len);
        }
        (rc, buf)
    }

    #[test]
    fn given_a_missing_config_then_failed_naming_it() {
        let (rc, out) = call_ffi(&request(), 4096);
        assert_eq!(rc, 0);
        let Response::Failed(e) = Response::decode(&out).unwrap() else {
            panic!("not Failed")
        };
        assert!(e.0.contains("/nonexistent/pam-totp-test/store.toml"), "{e}");
    }

    #[test]
    fn given_a_too_small_buffer_then_nonzero_and_nothing_written() {
        let (rc, out) = call_ffi(&request(), 8);
        assert_eq!(rc, TOO_SMALL);
        assert_eq!(out, vec![0u8; 8]);
    }

    #[test]
    fn given_garbage_then_a_failed_response() {
        let (rc, out) = call_ffi(&[0xff, 0xff, 0xff, 0xff, 1], 4096);
        assert_eq!(rc, 0);
        let Response::Failed(e) = Response::decode(&out).unwrap() else {
            panic!("not Failed")
        };
        assert!(e.0.starts_with("invalid request"), "{e}");
        let (rc, _) = call_ffi(&[], 4096);
        assert_eq!(rc, 0);
    }

    #[test]
    fn given_null_pointers_then_refused() {
        let mut len = 0usize;
        // SAFETY (test): null pointers are what is tested; nothing is dereferenced.
        let rc =
            unsafe { pam_totp_store_v1(std::ptr::null(), 3, std::ptr::null_mut(), 0, &mut len) };
        assert_eq!(rc, BAD_ARGUMENTS);
    }

    fn threads() -> usize {
        std::fs::read_dir("/proc/self/task").unwrap().count()
    }

    /// sshd, su and login fork around PAM: after a call — one that timed out included — the
    /// process must be able to fork, and the child to make another call (no runtime, thread or
    /// lock of the first call left behind). Run in a forked child, whose only thread is the
    /// test's, so that the count of threads is the call's alone (the test harness runs other
    /// tests' threads beside this one).
    #[test]
    fn given_a_timed_out_call_then_a_forked_child_calls_again() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = silent.local_addr().unwrap();
        let dir = crate::module_call::test_dir::Dir::new(
            "fork",
            &format!("addresses = [\"{a}\"]\nconnect_timeout_ms = 100\nbudget_ms = 200\n"),
        );
        let req = dir.request(200).encode();
        let timed_out = |req: &[u8]| {
            let (rc, out) = call_ffi(req, 4096);
            rc == 0
                && matches!(Response::decode(&out), Ok(Response::Failed(e)) if e.0.contains(&a.to_string()))
        };
        // SAFETY (test): the children only call the entry point, fork, wait and leave with
        // _exit.
        let status = unsafe {
            fork_and_wait(|| {
                if !(threads() == 1 && timed_out(&req) && threads() == 1) {
                    return 1;
                }
                fork_and_wait(|| i32::from(!(timed_out(&req) && threads() == 1)))
            })
        };
        assert_eq!(
            status, 0,
            "a thread outlived the call, or a call failed otherwise"
        );
    }

    /// Runs `f` in a forked child and returns its exit status (or 99 if it did not exit).
    ///
    /// # Safety
    /// `f` must be safe to run in a child of a multi-threaded process (no lock another thread
    /// may hold).
    unsafe fn fork_and_wait(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the caller's contract; the child leaves with _exit, never returning here.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = f();
            // SAFETY: ends the child without running the parent's test harness.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            99
        }
    }
}
