//! Lower-case hexadecimal, for recovery-code hashes, pam_oath keys and temp-file names.
#![forbid(unsafe_code)]

pub fn encode(bytes: &[u8]) -> String {
    // A table, not `format!("{b:02x}")` per byte: the state journal's checksum is encoded on
    // every login, and the formatter cost ~600 instructions a byte.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes hex of either case; `None` for odd lengths or other characters.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        assert_eq!(encode(&[10, 255, 0]), "0aff00");
        assert_eq!(decode("0aFF00"), Some(vec![10, 255, 0]));
        let all: Vec<u8> = (0..=255).collect();
        let want: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(encode(&all), want);
        assert_eq!(decode(&want), Some(all));
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("zz"), None);
        assert_eq!(decode(""), Some(vec![]));
    }
}
