//! RFC 6238 codes: which time step a code belongs to, within a window; the otpauth URI.
#![forbid(unsafe_code)]

use crate::secret::Secret;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Algorithm {
    #[default]
    #[serde(rename = "SHA1")]
    Sha1,
    #[serde(rename = "SHA256")]
    Sha256,
    #[serde(rename = "SHA512")]
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    /// The algorithm named exactly as a record spells it (`SHA1`, `SHA256`, `SHA512`).
    pub fn parse(s: &str) -> Option<Self> {
        [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512]
            .into_iter()
            .find(|a| a.as_str() == s)
    }

    /// Key length for newly generated secrets: the hash's output size.
    pub fn default_key_bytes(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const MIN_PERIOD: u32 = 15;
pub const MAX_PERIOD: u32 = 300;
pub const DEFAULT_PERIOD: u32 = 30;
pub const DEFAULT_DIGITS: u8 = 6;

/// How codes are derived: algorithm, digits, period. Validated on construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    algorithm: Algorithm,
    digits: u8,
    period: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamsError {
    #[error("digits must be 6 or 8, not {0}")]
    Digits(i64),
    #[error("period must be between 15 and 300 seconds, not {0}")]
    Period(i64),
}

impl Default for Params {
    fn default() -> Self {
        Params {
            algorithm: Algorithm::Sha1,
            digits: DEFAULT_DIGITS,
            period: DEFAULT_PERIOD,
        }
    }
}

impl Params {
    pub fn new(algorithm: Algorithm, digits: i64, period: i64) -> Result<Self, ParamsError> {
        if digits != 6 && digits != 8 {
            return Err(ParamsError::Digits(digits));
        }
        if !(i64::from(MIN_PERIOD)..=i64::from(MAX_PERIOD)).contains(&period) {
            return Err(ParamsError::Period(period));
        }
        Ok(Params {
            algorithm,
            digits: digits as u8,
            period: period as u32,
        })
    }
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    pub fn digits(&self) -> u8 {
        self.digits
    }
    pub fn period(&self) -> u32 {
        self.period
    }
    /// The time step that contains unix time `now`.
    pub fn step_at(&self, now: u64) -> u64 {
        now / u64::from(self.period)
    }
    /// The clock offset of a code that matched `step` at `now` (SPEC §10): matched step − the
    /// step of `now`, negative when the phone's clock was behind.
    pub fn offset_of(&self, step: u64, now: u64) -> i64 {
        let current = self.step_at(now);
        if step >= current {
            i64::try_from(step - current).unwrap_or(i64::MAX)
        } else {
            i64::try_from(current - step).map_or(i64::MIN, |d| -d)
        }
    }
    /// "TOTP, SHA1, 6 digits, 30 s"
    pub fn describe(&self) -> String {
        format!(
            "TOTP, {}, {} digits, {} s",
            self.algorithm, self.digits, self.period
        )
    }
}

/// HMAC keyed once: the key's inner and outer pads are hashed when the generator is made, and
/// each code clones that state (RFC 2104), so the steps of a window cost one hash of the
/// counter each instead of re-deriving the pads. It holds no copy of the key.
enum KeyedMac {
    Sha1(Hmac<sha1::Sha1>),
    Sha256(Hmac<sha2::Sha256>),
    Sha512(Hmac<sha2::Sha512>),
}

/// A code generator for one key (RFC 4226 dynamic truncation of HMAC(key, step)).
pub struct Generator {
    mac: KeyedMac,
    params: Params,
}

impl Generator {
    pub fn new(secret: &Secret, params: Params) -> Self {
        const ANY_LENGTH: &str = "HMAC takes keys of any length";
        let key = secret.expose();
        let mac = match params.algorithm {
            Algorithm::Sha1 => KeyedMac::Sha1(Hmac::new_from_slice(key).expect(ANY_LENGTH)),
            Algorithm::Sha256 => KeyedMac::Sha256(Hmac::new_from_slice(key).expect(ANY_LENGTH)),
            Algorithm::Sha512 => KeyedMac::Sha512(Hmac::new_from_slice(key).expect(ANY_LENGTH)),
        };
        Generator { mac, params }
    }

    /// The code of time step `step`.
    pub fn code_at_step(&self, step: u64) -> Zeroizing<String> {
        // The counter is the step; a step whose start lies past the end of u64 seconds gets the
        // counter of the last representable second's step.
        let period = u64::from(self.params.period);
        let counter = (step.saturating_mul(period) / period).to_be_bytes();
        let value = match &self.mac {
            KeyedMac::Sha1(m) => truncate(&m.clone().chain_update(counter).finalize().into_bytes()),
            KeyedMac::Sha256(m) => {
                truncate(&m.clone().chain_update(counter).finalize().into_bytes())
            }
            KeyedMac::Sha512(m) => {
                truncate(&m.clone().chain_update(counter).finalize().into_bytes())
            }
        };
        let digits = usize::from(self.params.digits);
        Zeroizing::new(format!(
            "{:0digits$}",
            value % 10u32.pow(u32::from(self.params.digits))
        ))
    }

    /// The highest step in `[now_step - window, now_step + window]` whose code equals `code`,
    /// compared in constant time; every step of the window is computed whatever matches.
    pub fn matching_step(&self, code: &str, now: u64, window: u32) -> Option<u64> {
        let now_step = self.params.step_at(now);
        let first = now_step.saturating_sub(u64::from(window));
        let last = now_step.saturating_add(u64::from(window));
        let mut found = None;
        for step in first..=last {
            let expected = self.code_at_step(step);
            if constant_time_eq::constant_time_eq(expected.as_bytes(), code.as_bytes()) {
                found = Some(step);
            }
        }
        found
    }
}

/// RFC 4226 §5.3: 31 bits at the offset named by the last byte's low nibble.
fn truncate(mac: &[u8]) -> u32 {
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7fff_ffff
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn uri_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=...&algorithm=...&digits=...&period=...`,
/// always with every parameter (SPEC §5).
pub fn otpauth_uri(
    secret: &Secret,
    params: Params,
    issuer: &str,
    account: &str,
) -> Zeroizing<String> {
    Zeroizing::new(format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm={}&digits={}&period={}",
        uri_escape(issuer),
        uri_escape(account),
        &*secret.to_base32(),
        uri_escape(issuer),
        params.algorithm,
        params.digits,
        params.period
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc_secret(alg: Algorithm) -> Secret {
        let seed: &[u8] = match alg {
            Algorithm::Sha1 => b"12345678901234567890",
            Algorithm::Sha256 => b"12345678901234567890123456789012",
            Algorithm::Sha512 => {
                b"1234567890123456789012345678901234567890123456789012345678901234"
            }
        };
        Secret::from_bytes(seed.to_vec()).unwrap()
    }

    /// RFC 6238 Appendix B: time, SHA1, SHA256, SHA512 (8 digits).
    const VECTORS: &[(u64, &str, &str, &str)] = &[
        (59, "94287082", "46119246", "90693936"),
        (1111111109, "07081804", "68084774", "25091201"),
        (1111111111, "14050471", "67062674", "99943326"),
        (1234567890, "89005924", "91819424", "93441116"),
        (2000000000, "69279037", "90698825", "38618901"),
        (20000000000, "65353130", "77737706", "47863826"),
    ];

    #[test]
    fn rfc6238_appendix_b_vectors() {
        for &(t, sha1, sha256, sha512) in VECTORS {
            for (alg, want) in [
                (Algorithm::Sha1, sha1),
                (Algorithm::Sha256, sha256),
                (Algorithm::Sha512, sha512),
            ] {
                let p = Params::new(alg, 8, 30).unwrap();
                let g = Generator::new(&rfc_secret(alg), p);
                assert_eq!(&*g.code_at_step(p.step_at(t)), want, "{alg} at {t}");
                assert_eq!(g.matching_step(want, t, 0), Some(p.step_at(t)));
            }
        }
    }

    fn gen6() -> (Generator, Params) {
        let p = Params::default();
        (Generator::new(&rfc_secret(Algorithm::Sha1), p), p)
    }

    #[test]
    fn given_window_1_then_codes_one_step_either_side_match_and_two_steps_do_not() {
        let (g, p) = gen6();
        let now = 1_700_000_015;
        let s = p.step_at(now);
        for (offset, ok) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let step = (s as i64 + offset) as u64;
            let code = g.code_at_step(step);
            let got = g.matching_step(&code, now, 1);
            assert_eq!(got.is_some(), ok, "offset {offset}");
            if ok {
                assert_eq!(got, Some(step));
            }
        }
    }

    #[test]
    fn given_window_n_then_edges_are_exact() {
        let (g, p) = gen6();
        let now = 1_800_000_000;
        let s = p.step_at(now);
        for n in [0u32, 3, 10] {
            let n64 = u64::from(n);
            assert!(g.matching_step(&g.code_at_step(s - n64), now, n).is_some());
            assert!(g.matching_step(&g.code_at_step(s + n64), now, n).is_some());
            assert!(g
                .matching_step(&g.code_at_step(s - n64 - 1), now, n)
                .is_none());
            assert!(g
                .matching_step(&g.code_at_step(s + n64 + 1), now, n)
                .is_none());
        }
    }

    #[test]
    fn given_last_second_of_step_then_next_step_begins_one_second_later() {
        let p = Params::default();
        assert_eq!(p.step_at(29), 0);
        assert_eq!(p.step_at(30), 1);
    }

    #[test]
    fn given_time_near_epoch_then_window_does_not_underflow() {
        let (g, _) = gen6();
        assert_eq!(g.matching_step(&g.code_at_step(0), 5, 3), Some(0));
    }

    /// The same codes as totp-rs (which computes each step's HMAC from the key): every
    /// algorithm, both lengths, keys of several lengths (shorter and longer than a hash block),
    /// steps from 0 to past the last representable second.
    #[test]
    fn codes_equal_those_of_totp_rs() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for alg in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            let reference = match alg {
                Algorithm::Sha1 => totp_rs::Algorithm::SHA1,
                Algorithm::Sha256 => totp_rs::Algorithm::SHA256,
                Algorithm::Sha512 => totp_rs::Algorithm::SHA512,
            };
            for len in [10usize, 20, 32, 63, 64, 65, 128] {
                let key: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                for (digits, period) in [(6u8, 30u32), (8, 30), (6, 15), (8, 300)] {
                    let p = Params::new(alg, i64::from(digits), i64::from(period)).unwrap();
                    let g = Generator::new(&Secret::from_bytes(key.clone()).unwrap(), p);
                    let r = totp_rs::TOTP::new_unchecked(
                        reference,
                        usize::from(digits),
                        0,
                        u64::from(period),
                        key.clone(),
                    );
                    let last = u64::MAX / u64::from(period);
                    let mut steps = vec![0, 1, 59_000_000, last - 1, last, last + 1, u64::MAX];
                    steps.extend((0..20).map(|_| next() % 200_000_000));
                    for step in steps {
                        assert_eq!(
                            *g.code_at_step(step),
                            r.generate(step.saturating_mul(u64::from(period))),
                            "{alg} key {len} bytes, {digits} digits, {period} s, step {step}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn params_are_validated() {
        assert_eq!(
            Params::new(Algorithm::Sha1, 7, 30),
            Err(ParamsError::Digits(7))
        );
        assert_eq!(
            Params::new(Algorithm::Sha1, 6, 14),
            Err(ParamsError::Period(14))
        );
        assert_eq!(
            Params::new(Algorithm::Sha1, 6, 301),
            Err(ParamsError::Period(301))
        );
        assert!(Params::new(Algorithm::Sha512, 8, 300).is_ok());
        assert_eq!(Params::default().describe(), "TOTP, SHA1, 6 digits, 30 s");
    }

    #[test]
    fn otpauth_uri_carries_every_parameter() {
        let s = Secret::from_base32("JBSWY3DPEHPK3PXP").unwrap();
        let uri = otpauth_uri(&s, Params::default(), "build 01", "alice@example");
        assert_eq!(
            &*uri,
            "otpauth://totp/build%2001:alice%40example?secret=JBSWY3DPEHPK3PXP&issuer=build%2001&algorithm=SHA1&digits=6&period=30"
        );
    }
}
