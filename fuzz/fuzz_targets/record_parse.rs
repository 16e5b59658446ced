//! `Record::parse` (users/USER.toml, SPEC §2.1): never panics; gives exactly what the TOML
//! parser alone gives (its fast path for plain records agrees or declines); whatever it accepts
//! is written back by `to_toml` as a record that parses to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pam_totp::store::Record;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Record::parse(text);
    assert_eq!(
        parsed,
        Record::parse_with_toml(text),
        "the fast path and the TOML parser differ"
    );
    if let Ok(record) = parsed {
        let written = record.to_toml();
        let again = Record::parse(&written)
            .unwrap_or_else(|e| panic!("written record does not parse: {e}\n{}", &*written));
        assert_eq!(again, record, "record changed in a write/read round trip");
    }
});
