//! The recovery-code input path (SPEC §4): `recovery::normalize` and `recovery::find` never
//! panic, and `find` matches exactly when the typed text normalises to a stored code (any
//! case, with or without dashes and blanks) — never anything else. Stored entries are also
//! fuzzed through `is_well_formed`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pam_totp::recovery;
use std::sync::OnceLock;

const CODES: [&str; 3] = ["4fh7-k2m9-xq3p", "aaaa-bbbb-cccc", "2345-6789-abcd"];

fn entries() -> &'static [String] {
    static E: OnceLock<Vec<String>> = OnceLock::new();
    E.get_or_init(|| {
        CODES
            .iter()
            .enumerate()
            .map(|(i, c)| recovery::hash_with_salt(c, &[i as u8 + 7; 16]))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let norm = recovery::normalize(text);
    assert!(
        !norm.contains(['-', ' ', '\t']),
        "normalised form keeps separators: {norm:?}"
    );
    let found = recovery::find(text, entries());
    let expected = CODES.iter().position(|c| *recovery::normalize(c) == *norm);
    assert_eq!(found, expected, "find({text:?})");
    // A stored entry of any shape: checked, never trusted blindly.
    let _ = recovery::is_well_formed(text);
    let mut with_junk = entries().to_vec();
    with_junk.push(text.to_string());
    let found = recovery::find(text, &with_junk);
    assert!(
        found.is_none() || found.is_some_and(|i| i < CODES.len() || recovery::is_well_formed(text))
    );
});
