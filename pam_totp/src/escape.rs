//! How untrusted text (a user name, `PAM_RHOST`, an issuer from a record) is shown: one rule for
//! log fields and one for terminals, used by the module and every front-end.
#![forbid(unsafe_code)]

/// Longest part of an untrusted value that a log field shows (then `...`).
pub const MAX_LOG_FIELD_CHARS: usize = 64;

/// The longest start of `text` of at most `max` bytes that ends on a character boundary: how
/// an untrusted value too long to keep or send whole is cut.
pub fn prefix_within(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// True for characters that must never reach a terminal or a log raw: C0 and C1 controls, DEL,
/// and the Unicode format characters that reorder or hide text (bidi overrides, zero-width).
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            | '\u{feff}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
    }
}

/// `value` for a terminal: control and format characters shown as escapes (`\n`, `\u{1b}`), so
/// that a stored value cannot move the cursor, colour the screen or forge a line.
pub fn terminal_safe(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if is_unsafe_char(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// `value` as one `key=value` log field: at most [`MAX_LOG_FIELD_CHARS`] characters (then
/// `...`), control characters escaped, and in double quotes (with `"` and `\` escaped) when it
/// is empty or holds a space, a quote, a backslash or `=`, so that one field can never read as
/// another or as the start of the reason.
pub fn log_field(value: &str) -> String {
    let mut body = String::with_capacity(value.len().min(4 * MAX_LOG_FIELD_CHARS));
    let mut quote = value.is_empty();
    for (i, c) in value.chars().enumerate() {
        if i == MAX_LOG_FIELD_CHARS {
            body.push_str("...");
            break;
        }
        match c {
            '"' | '\\' => {
                quote = true;
                body.push('\\');
                body.push(c);
            }
            c if is_unsafe_char(c) => push_escaped(&mut body, c),
            c => {
                quote |= c.is_whitespace() || c == '=';
                body.push(c);
            }
        }
    }
    if quote {
        format!("\"{body}\"")
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_plain_values_then_log_fields_are_bare() {
        assert_eq!(log_field("alice"), "alice");
        assert_eq!(log_field("10.0.0.9"), "10.0.0.9");
        assert_eq!(log_field("j-doe@EXAMPLE.COM"), "j-doe@EXAMPLE.COM");
    }

    #[test]
    fn given_rhost_that_looks_like_an_acceptance_then_it_stays_one_quoted_field() {
        let f = log_field("10.0.0.9 accepted step 1");
        assert_eq!(f, "\"10.0.0.9 accepted step 1\"");
        let line = format!("user=alice rhost={f} wrong code (failure 1)");
        // A naive `rhost=(\S+) accepted step` parser finds no acceptance in it.
        assert!(!line.contains("rhost=10.0.0.9 accepted"));
    }

    #[test]
    fn given_quotes_backslashes_controls_and_equals_then_escaped_and_quoted() {
        assert_eq!(log_field("a\"b"), "\"a\\\"b\"");
        assert_eq!(log_field("a\\b"), "\"a\\\\b\"");
        assert_eq!(log_field("a\nb"), "a\\nb");
        assert_eq!(log_field("x=y"), "\"x=y\"");
        assert_eq!(log_field(""), "\"\"");
        assert_eq!(log_field("\u{1b}[31m"), "\\u{1b}[31m");
    }

    #[test]
    fn given_long_value_then_cut() {
        let f = log_field(&"x".repeat(100));
        assert!(f.ends_with("...") && f.len() == MAX_LOG_FIELD_CHARS + 3);
    }

    #[test]
    fn given_newline_and_ansi_escape_then_terminal_text_is_one_inert_line() {
        let forged = "10.0.0.9\nLocked until: never\u{1b}[32m";
        let shown = terminal_safe(forged);
        assert!(!shown.contains('\n') && !shown.contains('\u{1b}'));
        assert_eq!(shown, "10.0.0.9\\nLocked until: never\\u{1b}[32m");
        assert_eq!(terminal_safe("héllo wörld"), "héllo wörld");
        assert_eq!(terminal_safe("a\u{202e}b"), "a\\u{202e}b");
    }
}
