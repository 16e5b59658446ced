//! `pam-totp import oath`: the pam_oath users-file line parser (`pam_totp::import::oath`),
//! token types, liboath's local TIME field and the search for the last used step never panic,
//! and the last used step is never beyond now plus the search window.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pam_totp::import::oath::{self, Parsed, TokenType};
use pam_totp::secret::Secret;
use pam_totp::totp::{Algorithm, Params};

const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (i, raw) in text.lines().enumerate().take(64) {
        let Parsed::Token(line) = oath::parse_line(i + 1, raw) else {
            continue;
        };
        assert_eq!(oath::parse_type(line.type_text), Some(line.kind));
        let TokenType::Totp { digits, period } = line.kind else {
            continue;
        };
        let Ok(params) = Params::new(Algorithm::Sha1, i64::from(digits), i64::from(period)) else {
            continue;
        };
        let Some(secret) = line
            .secret_hex
            .and_then(pam_totp::hex::decode)
            .and_then(|b| Secret::from_bytes(b).ok())
        else {
            continue;
        };
        if let (Some(otp), Some(t)) = (line.last_otp, line.time) {
            if let Some(local) = oath::parse_local_time(t) {
                let cap = params.step_at(NOW) + 20;
                match oath::last_used_step(&secret, params, otp, local, NOW) {
                    Ok(step) | Err(step) => assert!(step <= cap, "step {step} beyond {cap}"),
                }
            }
        }
    }
});
