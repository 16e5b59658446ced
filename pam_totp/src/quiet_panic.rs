//! The one way a C entry point of ours runs Rust code: [`catch_quietly`] catches any panic
//! (it never unwinds into C) with the panic hook silenced meanwhile (the default hook prints to
//! stderr; a PAM module never writes there). Used by `pam_totp.so`'s trampoline and by the
//! fleet client library's entry point, each with its own copy of std and of these statics.
#![forbid(unsafe_code)]

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Once, OnceLock};

thread_local! {
    static IN_CALL: Cell<bool> = const { Cell::new(false) };
}

type PanicHook = Box<dyn Fn(&panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Silences the panic hook while [`catch_quietly`] runs on this thread; other Rust code in the
/// process keeps its hook.
///
/// Nothing here may allocate: libpam dlopens the module for every handle and dlcloses it at
/// `pam_end`, and the hook slot of the module's private copy of std vanishes with the module,
/// so a boxed closure capturing the previous hook (16 bytes) leaked once per login in every
/// long-running process. The closure below captures nothing (a zero-sized `Box` allocates
/// nothing), and the previous hook is kept in a static; the default hook is a zero-sized `fn`.
fn install() {
    static ONCE: Once = Once::new();
    static PREVIOUS: OnceLock<PanicHook> = OnceLock::new();
    ONCE.call_once(|| {
        let _ = PREVIOUS.set(panic::take_hook());
        panic::set_hook(Box::new(|info| {
            if !IN_CALL.with(Cell::get) {
                if let Some(previous) = PREVIOUS.get() {
                    previous(info);
                }
            }
        }));
    });
}

/// Runs `f`, a panic caught (`Err`) and not printed.
pub fn catch_quietly<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    install();
    let was = IN_CALL.with(|c| c.replace(true));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    IN_CALL.with(|c| c.set(was));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_panic_then_it_is_caught() {
        assert!(catch_quietly(|| panic!("x")).is_err());
        assert_eq!(catch_quietly(|| 7).ok(), Some(7));
    }
}
