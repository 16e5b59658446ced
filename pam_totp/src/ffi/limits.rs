//! The caller's resource limits and signal dispositions must not change what the module
//! decides (`su` and `sudo` run PAM with the invoking user's limits, and an ignored or default
//! `SIGXFSZ` survives their setuid exec). For the length of one `pam_sm_*` call the limits that
//! would make our own work fail or die are lifted as far as the process may lift them, and
//! `SIGXFSZ` is ignored (a write past a limit that could not be lifted then fails with `EFBIG`
//! and the login is denied, instead of the process dying half-way); both are restored before
//! the call returns. `SIGPIPE` needs nothing: the module writes only to files, and libpam's
//! syslog sends with `MSG_NOSIGNAL`.

use std::mem::MaybeUninit;

/// Limits lifted for the call, and the floor each is lifted to (`RLIM_INFINITY`: no limit).
const LIFTED: [(libc::__rlimit_resource_t, libc::rlim_t); 5] = [
    (libc::RLIMIT_FSIZE, libc::RLIM_INFINITY),
    (libc::RLIMIT_CPU, libc::RLIM_INFINITY),
    (libc::RLIMIT_AS, libc::RLIM_INFINITY),
    (libc::RLIMIT_DATA, libc::RLIM_INFINITY),
    (libc::RLIMIT_NOFILE, 1024),
];

/// Limits and dispositions are process-wide: while any call holds a [`CallLimits`], they stay
/// lifted; the first call in saves what it finds and the last call out restores it, so that
/// overlapping calls (threads of one application) never save each other's lifted values.
static HELD: std::sync::Mutex<(usize, Option<Saved>)> = std::sync::Mutex::new((0, None));

/// Lifts the caller's limits for as long as it lives (see the module comment). Also held for
/// the whole life of the self-service helper, whose caller chooses its limits too.
pub struct CallLimits(());

impl CallLimits {
    pub fn lift() -> CallLimits {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if held.0 == 0 {
            held.1 = Some(Saved::lift());
        }
        held.0 += 1;
        CallLimits(())
    }
}

impl Drop for CallLimits {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        held.0 = held.0.saturating_sub(1);
        if held.0 == 0 {
            // Dropping the saved values restores them.
            held.1 = None;
        }
    }
}

/// What one lift changed; dropping it puts everything back.
struct Saved {
    saved: [Option<libc::rlimit>; LIFTED.len()],
    xfsz: Option<libc::sigaction>,
}

/// `limit` raised to at least `floor` (RLIM_INFINITY is the largest value).
fn raised(limit: libc::rlim_t, floor: libc::rlim_t) -> libc::rlim_t {
    if limit == libc::RLIM_INFINITY || (floor != libc::RLIM_INFINITY && limit >= floor) {
        limit
    } else {
        floor
    }
}

impl Saved {
    fn lift() -> Saved {
        let mut saved = [None; LIFTED.len()];
        for (slot, (resource, floor)) in saved.iter_mut().zip(LIFTED) {
            let mut old = MaybeUninit::<libc::rlimit>::uninit();
            // SAFETY: getrlimit writes one rlimit into the pointer we own; read only on success.
            if unsafe { libc::getrlimit(resource, old.as_mut_ptr()) } != 0 {
                continue;
            }
            // SAFETY: initialised by the successful getrlimit above.
            let old = unsafe { old.assume_init() };
            let new = libc::rlimit {
                rlim_cur: raised(old.rlim_cur, floor),
                rlim_max: raised(old.rlim_max, floor),
            };
            if new.rlim_cur == old.rlim_cur && new.rlim_max == old.rlim_max {
                continue;
            }
            // SAFETY: setrlimit reads one valid rlimit. Raising a hard limit needs privilege
            // (root under su/sudo/sshd); without it, at least the soft limit goes to the hard.
            let ok = unsafe { libc::setrlimit(resource, &new) } == 0 || {
                let soft_only = libc::rlimit {
                    rlim_cur: old.rlim_max,
                    rlim_max: old.rlim_max,
                };
                // SAFETY: as above.
                unsafe { libc::setrlimit(resource, &soft_only) == 0 }
            };
            if ok {
                *slot = Some(old);
            }
        }
        Saved {
            saved,
            xfsz: set_disposition(libc::SIGXFSZ, libc::SIG_IGN),
        }
    }
}

/// Sets `signal`'s handler to `handler` (no flags, nothing masked); the previous action, if
/// it could be read and replaced.
fn set_disposition(signal: libc::c_int, handler: libc::sighandler_t) -> Option<libc::sigaction> {
    // SAFETY: a zeroed sigaction is a valid value (empty mask, no flags, SIG_DFL).
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    new.sa_sigaction = handler;
    let mut old = MaybeUninit::<libc::sigaction>::uninit();
    // SAFETY: both pointers are valid for the call; the kernel fills `old` on success.
    if unsafe { libc::sigaction(signal, &new, old.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: initialised by the successful sigaction above.
    Some(unsafe { old.assume_init() })
}

impl Drop for Saved {
    fn drop(&mut self) {
        if let Some(old) = self.xfsz.take() {
            // SAFETY: restores the action sigaction handed us; `old` is a valid sigaction.
            unsafe { libc::sigaction(libc::SIGXFSZ, &old, std::ptr::null_mut()) };
        }
        for (old, (resource, _)) in self.saved.iter().zip(LIFTED) {
            if let Some(old) = old {
                // SAFETY: restores the limits getrlimit gave us (lowering needs no privilege).
                unsafe { libc::setrlimit(resource, old) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{raised, CallLimits};

    fn xfsz_ignored() -> bool {
        let mut old = std::mem::MaybeUninit::<libc::sigaction>::uninit();
        // SAFETY: a NULL new action only reads the current one into `old`.
        assert_eq!(
            unsafe { libc::sigaction(libc::SIGXFSZ, std::ptr::null(), old.as_mut_ptr()) },
            0
        );
        // SAFETY: filled by the successful sigaction above.
        unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
    }

    #[test]
    fn given_overlapping_calls_then_the_last_one_out_restores_what_the_first_found() {
        let before = xfsz_ignored();
        let first = CallLimits::lift();
        let second = CallLimits::lift();
        assert!(xfsz_ignored());
        drop(first);
        assert!(xfsz_ignored(), "still lifted while a call holds it");
        drop(second);
        assert_eq!(
            xfsz_ignored(),
            before,
            "restored to what the first call found"
        );
    }

    #[test]
    fn given_limits_then_raised_to_the_floor_and_never_lowered() {
        let inf = libc::RLIM_INFINITY;
        assert_eq!(raised(0, inf), inf);
        assert_eq!(raised(inf, inf), inf);
        assert_eq!(raised(3, 1024), 1024);
        assert_eq!(raised(4096, 1024), 4096);
        assert_eq!(raised(inf, 1024), inf);
    }
}
