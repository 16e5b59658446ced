//! `pam-totp import google-authenticator`: the parser of `~/.google_authenticator` files
//! (`pam_totp::import::google_authenticator::parse`) never panics, and what it accepts is a TOTP
//! file whose scratch codes are 8-digit numbers and whose settings the importer can turn into
//! record parameters.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pam_totp::import::google_authenticator::{self, GaError};
use pam_totp::totp::{Algorithm, Params};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match google_authenticator::parse(text) {
        Ok(f) => {
            for c in &f.scratch_codes {
                assert!(
                    c.len() == 8 && c.bytes().all(|b| b.is_ascii_digit()),
                    "{:?}",
                    &**c
                );
            }
            assert!(f.secret.len_bits() > 0);
            let _ = Params::new(Algorithm::Sha1, 6, i64::from(f.step_size.unwrap_or(30)));
            if let Some(w) = f.window_size {
                assert!(google_authenticator::module_window(w) <= w);
            }
            let _ = f
                .disallow_reuse
                .as_ref()
                .and_then(|s| s.iter().copied().max());
        }
        Err(GaError::Hotp | GaError::NotTotp) => {}
        Err(GaError::Bad(why)) => assert!(!why.is_empty()),
    }
});
