//! `State::parse_file` (users/USER.state, SPEC §2.2: the journal or the older TOML form): never
//! panics; what it accepts round-trips through the journal entry the store appends (and through
//! the TOML form), and `is_replay` agrees with `last_step`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pam_totp::store::{State, JOURNAL_HEADER};

fuzz_target!(|data: &[u8]| {
    let Ok(state) = State::parse_file(data) else {
        return;
    };
    // Appending the state's entry to what was read must give the state back, whatever the
    // journal held before (the store appends only after a complete line; see files.rs).
    let mut appended = if data.starts_with(JOURNAL_HEADER.as_bytes()) && data.ends_with(b"\n") {
        data.to_vec()
    } else {
        JOURNAL_HEADER.as_bytes().to_vec()
    };
    appended.extend_from_slice(state.to_entry().as_bytes());
    let again = State::parse_file(&appended)
        .unwrap_or_else(|e| panic!("appended entry does not parse: {e}\n{appended:?}"));
    assert_eq!(again, state, "state changed in an append/read round trip");
    let toml = state.to_toml();
    assert_eq!(State::parse_file(toml.as_bytes()).ok(), Some(state.clone()));
    if let Some(last) = state.last_step {
        assert!(
            state.is_replay(last) && !state.is_replay(last.saturating_add(1))
                || last == u64::MAX
        );
    }
});
