//! The shared TOTP key: zeroized on drop, redacted in `Debug`, base32 on disk.
#![forbid(unsafe_code)]

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Smallest key accepted at all (imports; SPEC §2.1): 80 bits.
pub const MIN_SECRET_BYTES: usize = 10;
/// Below this an imported key is accepted with a warning: 128 bits.
pub const RECOMMENDED_SECRET_BYTES: usize = 16;
/// Largest key accepted (SHA-512 block size).
pub const MAX_SECRET_BYTES: usize = 128;

/// Fills `buf` from the OS RNG.
pub fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    getrandom::getrandom(buf).map_err(std::io::Error::from)
}

#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret(Vec<u8>);

/// Constant-time: comparing keys must not leak where they differ.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        constant_time_eq::constant_time_eq(&self.0, &other.0)
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the key is not valid base32 (RFC 4648: letters A-Z and digits 2-7)")]
    BadBase32,
    #[error("the key is too short: {0} bits, at least 80 are required")]
    TooShort(usize),
    #[error("the key is too long: {0} bits, at most 1024 are accepted")]
    TooLong(usize),
}

/// A key's text in groups of four (`JBSW Y3DP ...`), for typing into an app by hand.
pub fn group4(plain: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(plain.len() * 5 / 4 + 1));
    for (i, c) in plain.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

impl Secret {
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, SecretError> {
        let s = Secret(bytes);
        if s.0.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort(s.0.len() * 8));
        }
        if s.0.len() > MAX_SECRET_BYTES {
            return Err(SecretError::TooLong(s.0.len() * 8));
        }
        Ok(s)
    }

    /// Parses RFC 4648 base32; spaces and trailing `=` padding are ignored, any case.
    pub fn from_base32(text: &str) -> Result<Self, SecretError> {
        let mut clean: Zeroizing<String> = Zeroizing::new(String::with_capacity(text.len()));
        for c in text.chars() {
            match c {
                ' ' | '-' => {}
                'a'..='z' => clean.push(c.to_ascii_uppercase()),
                'A'..='Z' | '2'..='7' | '=' => clean.push(c),
                _ => return Err(SecretError::BadBase32),
            }
        }
        let trimmed = clean.trim_end_matches('=');
        if trimmed.is_empty() || trimmed.contains('=') {
            return Err(SecretError::BadBase32);
        }
        // Lengths 1, 3 and 6 (mod 8) cannot come from whole bytes.
        if matches!(trimmed.len() % 8, 1 | 3 | 6) {
            return Err(SecretError::BadBase32);
        }
        let bytes = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, trimmed)
            .ok_or(SecretError::BadBase32)?;
        Self::from_bytes(bytes)
    }

    /// A fresh random key of `len` bytes from the OS RNG.
    pub fn generate(len: usize) -> std::io::Result<Self> {
        let mut bytes = vec![0u8; len];
        fill_random(&mut bytes)?;
        Self::from_bytes(bytes).map_err(std::io::Error::other)
    }

    /// Unpadded RFC 4648 base32.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(base32::encode(
            base32::Alphabet::Rfc4648 { padding: false },
            &self.0,
        ))
    }

    /// Base32 in groups of four, for typing into an app by hand.
    pub fn to_base32_grouped(&self) -> Zeroizing<String> {
        group4(&self.to_base32())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len_bits(&self) -> usize {
        self.0.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_base32_then_round_trips() {
        let s = Secret::from_base32("JBSWY3DPEHPK3PXP").unwrap();
        assert_eq!(s.expose(), b"Hello!\xde\xad\xbe\xef");
        assert_eq!(&*s.to_base32(), "JBSWY3DPEHPK3PXP");
        assert_eq!(&*s.to_base32_grouped(), "JBSW Y3DP EHPK 3PXP");
    }

    #[test]
    fn given_lower_case_spaces_and_padding_then_accepted() {
        let a = Secret::from_base32("jbsw y3dp ehpk 3pxp").unwrap();
        let b = Secret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
        assert_eq!(a.expose().len(), 10);
        assert_eq!(b.expose(), b"12345678901234567890");
        assert!(Secret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ====").is_ok());
    }

    #[test]
    fn given_bad_base32_then_refused() {
        for bad in [
            "",
            "JBSWY3DPEHPK3PX1",
            "JBSWY3DP!HPK3PXP",
            "JBSW=Y3DPEHPK3PXP",
            "A",
        ] {
            assert_eq!(
                Secret::from_base32(bad),
                Err(SecretError::BadBase32),
                "{bad}"
            );
        }
    }

    #[test]
    fn given_short_secret_then_refused() {
        assert_eq!(
            Secret::from_base32("JBSWY3DP"),
            Err(SecretError::TooShort(40))
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let s = Secret::from_base32("JBSWY3DPEHPK3PXP").unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("JBSW") && shown.contains("redacted"));
    }

    #[test]
    fn generated_secrets_differ_and_have_requested_length() {
        let a = Secret::generate(20).unwrap();
        let b = Secret::generate(20).unwrap();
        assert_eq!(a.len_bits(), 160);
        assert_ne!(a, b);
    }
}
