//! Baseline: the same entry point doing nothing (what an empty Rust cdylib costs).
use std::ffi::{c_char, c_int};
/// # Safety
/// `out` has `outlen` >= 1 bytes.
#[no_mangle]
pub unsafe extern "C" fn spike_login(
    _d: *const c_char,
    _a: *const c_char,
    _p: c_int,
    _t: c_int,
    out: *mut c_char,
    _l: usize,
) -> c_int {
    let r = std::panic::catch_unwind(|| 0).unwrap_or(1);
    *out = 0;
    r
}
