//! `Policy::parse` (policy.toml, SPEC §6): never panics; gives exactly what the TOML parser
//! alone gives (its fast path for plain policies agrees or declines); and what it accepts is
//! usable: the throttle is within its documented bounds and the decisions that read the policy
//! run.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pam_totp::policy::{Policy, MAX_THROTTLE_SECONDS};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Policy::parse(text);
    assert_eq!(
        parsed,
        Policy::parse_with_toml(text),
        "the fast path and the TOML parser differ"
    );
    if let Ok(p) = parsed {
        let t = &p.throttle;
        assert!(t.attempts >= 1);
        assert!(1 <= t.lock_seconds && t.lock_seconds <= t.max_lock_seconds);
        assert!(t.max_lock_seconds <= MAX_THROTTLE_SECONDS);
        for failures in [0, 1, t.attempts, t.attempts.saturating_add(1), u32::MAX] {
            let until = t.locked_until_after(failures, 1_800_000_000);
            assert!(until == 0 || until <= 1_800_000_000 + MAX_THROTTLE_SECONDS);
        }
        let groups = vec!["wheel".to_string(), "users".to_string()];
        for user in ["alice", "root", "wheel"] {
            let _ = p.required_by(user, Some(&groups));
            let _ = p.required_by(user, None);
        }
        let _ = p.needs_groups();
        for now in [0, 1_800_000_000, u64::MAX] {
            let _ = p.grace_at(now);
        }
    }
});
