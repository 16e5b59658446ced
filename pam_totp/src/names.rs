//! User-name validation: the only gate between a PAM user name and a path.
#![forbid(unsafe_code)]

/// Longest accepted user name (SPEC §2: `^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}$`).
pub const MAX_USER_LEN: usize = 128;

/// True iff `name` may become part of a path under the users directory.
pub fn is_valid_user_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.split_first() {
        None => false,
        Some((first, rest)) => {
            bytes.len() <= MAX_USER_LEN
                && (first.is_ascii_alphanumeric() || *first == b'_')
                && rest
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
        }
    }
}

/// A user name that may become a path (SPEC §2), validated once where it enters: the store
/// takes nothing else.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

/// A name that is not valid per SPEC §2.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid user name \"{}\"", log_safe(.0))]
pub struct BadUserName(pub String);

impl UserName {
    pub fn new(name: &str) -> Result<UserName, BadUserName> {
        if is_valid_user_name(name) {
            Ok(UserName(name.to_string()))
        } else {
            Err(BadUserName(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for UserName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for UserName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl PartialEq<str> for UserName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

/// A printable, bounded rendering of an untrusted name for log lines.
pub fn log_safe(name: &str) -> String {
    let escaped: String = name
        .chars()
        .take(64)
        .flat_map(char::escape_default)
        .collect();
    if name.chars().count() > 64 {
        format!("{escaped}...")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_ordinary_names_then_valid() {
        for n in [
            "alice",
            "bob.smith",
            "svc_backup",
            "_apt",
            "j-doe@EXAMPLE.COM",
            "a",
            "0day",
        ] {
            assert!(is_valid_user_name(n), "{n}");
        }
    }

    #[test]
    fn given_path_like_or_odd_names_then_invalid() {
        for n in [
            "", ".", "..", "../root", "a/b", "-rf", ".hidden", "@x", "a b", "a\0b", "ä", "a\n",
            "a:b", "a*",
        ] {
            assert!(!is_valid_user_name(n), "{n:?}");
        }
    }

    #[test]
    fn given_name_of_128_chars_then_valid_and_129_invalid() {
        assert!(is_valid_user_name(&"a".repeat(128)));
        assert!(!is_valid_user_name(&"a".repeat(129)));
    }

    #[test]
    fn given_a_name_then_user_name_validates_it_once() {
        assert_eq!(UserName::new("alice").unwrap().as_str(), "alice");
        assert_eq!(
            UserName::new("../root").unwrap_err().to_string(),
            "invalid user name \"../root\""
        );
    }

    #[test]
    fn log_safe_escapes_and_truncates() {
        assert_eq!(log_safe("a\nb"), "a\\nb");
        assert!(log_safe(&"x".repeat(100)).ends_with("..."));
    }
}
