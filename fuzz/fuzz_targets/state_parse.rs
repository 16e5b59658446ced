//! `State::parse` (users/USER.state, SPEC §2.2): never panics; what it accepts round-trips
//! through `to_toml`, and `is_replay` agrees with `last_step`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pam_totp::store::State;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(state) = State::parse(text) {
        let written = state.to_toml();
        let again = State::parse(&written)
            .unwrap_or_else(|e| panic!("written state does not parse: {e}\n{written}"));
        assert_eq!(again, state, "state changed in a write/read round trip");
        if let Some(last) = state.last_step {
            assert!(
                state.is_replay(last) && !state.is_replay(last.saturating_add(1))
                    || last == u64::MAX
            );
        }
    }
});
