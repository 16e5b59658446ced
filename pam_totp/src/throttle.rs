//! Guessing throttle: consecutive failures → lock-until, pure arithmetic (SPEC §3).
#![forbid(unsafe_code)]

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    pub attempts: u32,
    pub lock_seconds: u64,
    pub max_lock_seconds: u64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            attempts: 5,
            lock_seconds: 60,
            max_lock_seconds: 3600,
        }
    }
}

impl Throttle {
    /// After one more failure (making `failures` consecutive failures in all) at `now`:
    /// the time until which the user is locked, or 0. The first lock comes at `attempts`
    /// failures; each further failure doubles it, up to `max_lock_seconds`.
    pub fn locked_until_after(&self, failures: u32, now: u64) -> u64 {
        if failures < self.attempts {
            return 0;
        }
        let doublings = failures - self.attempts;
        let lock = if doublings >= 63 {
            self.max_lock_seconds
        } else {
            self.lock_seconds
                .saturating_mul(1u64 << doublings)
                .min(self.max_lock_seconds)
        };
        now.saturating_add(lock)
    }
}

/// True while `locked_until` lies in the future.
pub fn is_locked(locked_until: u64, now: u64) -> bool {
    locked_until > now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_four_failures_then_not_locked_and_fifth_locks_for_a_minute() {
        let t = Throttle::default();
        for f in 1..5 {
            assert_eq!(t.locked_until_after(f, 1000), 0);
        }
        assert_eq!(t.locked_until_after(5, 1000), 1060);
    }

    #[test]
    fn given_further_failures_then_lock_doubles_up_to_the_cap() {
        let t = Throttle::default();
        let locks: Vec<u64> = (5..14).map(|f| t.locked_until_after(f, 0)).collect();
        assert_eq!(locks, vec![60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(t.locked_until_after(u32::MAX, 0), 3600);
    }

    #[test]
    fn lock_is_over_exactly_at_its_end() {
        assert!(is_locked(1060, 1059));
        assert!(!is_locked(1060, 1060));
        assert!(!is_locked(0, 5));
    }

    #[test]
    fn custom_settings_are_used() {
        let t = Throttle {
            attempts: 1,
            lock_seconds: 10,
            max_lock_seconds: 25,
        };
        assert_eq!(t.locked_until_after(1, 100), 110);
        assert_eq!(t.locked_until_after(2, 100), 120);
        assert_eq!(t.locked_until_after(3, 100), 125);
    }
}
