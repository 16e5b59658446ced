//! Single-use recovery codes (SPEC §4): generate, normalise, hash, verify.
#![forbid(unsafe_code)]

use crate::hex;
use crate::secret::fill_random;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// No 0/1/i/l/o: nothing that reads as something else.
pub const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
pub const CODE_LEN: usize = 12;
pub const DEFAULT_COUNT: usize = 10;
const SALT_BYTES: usize = 16;
/// Longest input that is even looked at as a recovery code (after normalising).
const MAX_INPUT: usize = 64;

/// `count` fresh codes formatted `xxxx-xxxx-xxxx`, from the OS RNG.
pub fn generate(count: usize) -> std::io::Result<Vec<Zeroizing<String>>> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let mut code = Zeroizing::new(String::with_capacity(CODE_LEN + 2));
        let mut n = 0;
        while n < CODE_LEN {
            let mut buf = Zeroizing::new([0u8; 32]);
            fill_random(&mut *buf)?;
            for &b in buf.iter() {
                // Rejection sampling: 248 = 8 * 31 keeps the draw uniform.
                if b < 248 && n < CODE_LEN {
                    if n > 0 && n % 4 == 0 {
                        code.push('-');
                    }
                    code.push(ALPHABET[usize::from(b) % ALPHABET.len()] as char);
                    n += 1;
                }
            }
        }
        out.push(code);
    }
    Ok(out)
}

/// Length of a recovery code typed with its dashes (`4fh7-k2m9-xq3p`).
pub const DASHED_LEN: usize = CODE_LEN + 2;

/// Whether `typed` has the shape of a recovery code as §4 lets users type it, any case: the 12
/// characters of the alphabet, and with `dashed` the two dashes where they are shown.
pub fn has_code_shape(typed: &[u8], dashed: bool) -> bool {
    let in_alphabet = |b: &u8| ALPHABET.contains(&b.to_ascii_lowercase());
    if dashed {
        typed.len() == DASHED_LEN
            && typed.iter().enumerate().all(|(i, b)| match i {
                4 | 9 => *b == b'-',
                _ => in_alphabet(b),
            })
    } else {
        typed.len() == CODE_LEN && typed.iter().all(in_alphabet)
    }
}

/// Lower-cased, dashes and spaces removed; what is hashed.
pub fn normalize(input: &str) -> Zeroizing<String> {
    Zeroizing::new(
        input
            .chars()
            .filter(|c| !matches!(c, '-' | ' ' | '\t'))
            .flat_map(char::to_lowercase)
            .collect(),
    )
}

fn digest(salt: &[u8], normalized: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(normalized.as_bytes());
    h.finalize().into()
}

/// `sha256:<salt-hex>:<hash-hex>` of a code (normalised first).
pub fn hash(code: &str) -> std::io::Result<String> {
    let mut salt = [0u8; SALT_BYTES];
    fill_random(&mut salt)?;
    Ok(hash_with_salt(code, &salt))
}

pub fn hash_with_salt(code: &str, salt: &[u8]) -> String {
    let norm = normalize(code);
    format!(
        "sha256:{}:{}",
        hex::encode(salt),
        hex::encode(&digest(salt, &norm))
    )
}

/// Checks the stored form; used by the record parser.
pub fn is_well_formed(entry: &str) -> bool {
    parse_entry(entry).is_some()
}

fn parse_entry(entry: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut parts = entry.split(':');
    let (alg, salt, hash) = (parts.next()?, parts.next()?, parts.next()?);
    if alg != "sha256" || parts.next().is_some() {
        return None;
    }
    let salt = hex::decode(salt)?;
    let hash = hex::decode(hash)?;
    (salt.len() >= 8 && hash.len() == 32).then_some((salt, hash))
}

/// The index of the stored entry that `input` matches. Every entry is checked, in constant time.
pub fn find(input: &str, entries: &[String]) -> Option<usize> {
    let norm = normalize(input);
    if norm.is_empty() || norm.len() > MAX_INPUT {
        return None;
    }
    let mut found = None;
    for (i, entry) in entries.iter().enumerate() {
        if let Some((salt, want)) = parse_entry(entry) {
            let got = digest(&salt, &norm);
            if constant_time_eq::constant_time_eq(&got, &want) {
                found = Some(i);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_have_the_documented_shape() {
        let codes = generate(10).unwrap();
        assert_eq!(codes.len(), 10);
        for c in &codes {
            assert_eq!(c.len(), 14);
            let groups: Vec<&str> = c.split('-').collect();
            assert_eq!(groups.len(), 3);
            assert!(groups.iter().all(|g| g.len() == 4));
            assert!(c
                .bytes()
                .filter(|&b| b != b'-')
                .all(|b| ALPHABET.contains(&b)));
        }
        assert_ne!(codes[0], codes[1]);
    }

    #[test]
    fn given_code_in_any_case_with_or_without_dashes_then_found() {
        let entries = vec![
            hash("4fh7-k2m9-xq3p").unwrap(),
            hash("aaaa-bbbb-cccc").unwrap(),
        ];
        for typed in ["4fh7-k2m9-xq3p", "4FH7K2M9XQ3P", "4fh7 k2m9 xq3p"] {
            assert_eq!(find(typed, &entries), Some(0), "{typed}");
        }
        assert_eq!(find("aaaabbbbcccc", &entries), Some(1));
        assert_eq!(find("4fh7-k2m9-xq3q", &entries), None);
        assert_eq!(find("", &entries), None);
    }

    #[test]
    fn stored_form_is_sha256_salt_hash_and_matches_the_spec_formula() {
        let salt = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let h = hash_with_salt("AB-CD", &salt);
        let mut d = Sha256::new();
        d.update(salt);
        d.update(b"abcd");
        let want: [u8; 32] = d.finalize().into();
        assert_eq!(h, format!("sha256:0102030405060708:{}", hex::encode(&want)));
        assert!(is_well_formed(&h));
    }

    #[test]
    fn malformed_entries_are_rejected() {
        for bad in [
            "",
            "sha1:0102030405060708:00",
            "sha256:0102:".to_string().as_str(),
            "sha256:zz02030405060708:0000000000000000000000000000000000000000000000000000000000000000",
            "sha256:01020304050607:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(!is_well_formed(bad), "{bad}");
        }
    }
}
