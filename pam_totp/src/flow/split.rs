//! Services with one password field (SPEC §9). IMAP, POP, FTP and VPN daemons ask PAM once and
//! answer every prompt with the one password the user typed, so the user types the password
//! followed by the code. A `split` line takes that answer apart *before* the password module:
//! the password goes on as `PAM_AUTHTOK`, the code is kept (PAM data) for a later `pam_totp.so`
//! line, which judges it only once the password module has succeeded — a wrong password never
//! consumes a code or counts a failure.
//!
//! Who is expected to type a code is [`NextLogin::expects_code_typed_ahead`]'s to say; the
//! split line reads the record and the policy and writes nothing.
#![forbid(unsafe_code)]

use super::{enrolment, ConvError, Conversation, Reason, Request, Verdict};
use crate::names::UserName;
use crate::next_login::Enrolment;
use crate::policy::Policy;
use crate::recovery;
use crate::store::{RecordRead, UserStore};
use crate::sys::System;
use crate::totp::DEFAULT_DIGITS;
use zeroize::Zeroizing;

/// What a `split` line leaves for the `pam_totp.so` line after the password module.
pub enum TypedAhead {
    /// The code (or recovery code) typed after the password.
    Code(Zeroizing<String>),
    /// No code was typed after the password (or none was expected of the user): the answer
    /// went on whole, and the later line never prompts.
    Nothing,
}

impl std::fmt::Debug for TypedAhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TypedAhead::Code(_) => "TypedAhead::Code(<redacted>)",
            TypedAhead::Nothing => "TypedAhead::Nothing",
        })
    }
}

/// What the split line does with the answer, unless it denies.
pub enum Split {
    /// `password` becomes `PAM_AUTHTOK`; `code` is kept for the later line.
    Code {
        password: Zeroizing<Vec<u8>>,
        code: Zeroizing<String>,
    },
    /// The answer stays `PAM_AUTHTOK` whole; the later line is told that no code was typed.
    Whole,
}

/// The split line's outcome: its verdict (`PAM_IGNORE` when it split or passed the answer on:
/// it lets no one in by itself) and, unless it denies, what to do with the answer.
pub struct SplitOutcome {
    pub verdict: Verdict,
    pub split: Option<Split>,
}

impl SplitOutcome {
    pub(crate) fn denied(verdict: Verdict) -> Self {
        SplitOutcome {
            verdict,
            split: None,
        }
    }
}

/// The `split` line for one answer (`PAM_AUTHTOK`, as `pam_get_authtok` gave it).
pub fn split<S: System>(sys: &S, req: &Request, answer: &[u8]) -> SplitOutcome {
    match super::open(req) {
        Ok((policy, user, store)) => split_for(sys, &user, &policy, &store, answer),
        Err(v) => SplitOutcome::denied(v),
    }
}

/// [`split`] once the user name is valid and the policy read, over any store.
pub fn split_for<S: System, St: UserStore>(
    sys: &S,
    user: &UserName,
    policy: &Policy,
    store: &St,
    answer: &[u8],
) -> SplitOutcome {
    let (found, record) = match enrolment(store, user) {
        Ok(e) => e,
        Err(v) => return SplitOutcome::denied(v),
    };
    let digits = record
        .as_ref()
        .map(RecordRead::record)
        .map_or(DEFAULT_DIGITS, |r| r.params.digits());
    split_given(sys, user, policy, found, digits, answer)
}

/// [`split_for`] once the user's enrolment and the digits of their codes are known (from a
/// record, or from the fleet store).
pub fn split_given<S: System>(
    sys: &S,
    user: &UserName,
    policy: &Policy,
    found: Enrolment,
    digits: u8,
    answer: &[u8],
) -> SplitOutcome {
    let next = match super::next_login_of(sys, user, found, policy) {
        Ok(n) => n,
        Err(v) => return SplitOutcome::denied(v),
    };
    if !next.expects_code_typed_ahead() {
        return SplitOutcome {
            verdict: Reason::SplitWhole { expected: false }.into(),
            split: Some(Split::Whole),
        };
    }
    match split_off(answer, usize::from(digits)) {
        Some((password, code)) => SplitOutcome {
            verdict: Reason::SplitCodeKept.into(),
            split: Some(Split::Code {
                password: Zeroizing::new(password.to_vec()),
                // `split_off` returns ASCII only.
                code: Zeroizing::new(String::from_utf8_lossy(code).into_owned()),
            }),
        },
        // Passed on whole: the password module judges it, and the later line then denies.
        // Denying here, before the password is known, would tell a stranger who has no
        // password that this user is asked for a code.
        None => SplitOutcome {
            verdict: Reason::SplitWhole { expected: true }.into(),
            split: Some(Split::Whole),
        },
    }
}

/// `answer` as password and code: a recovery code typed with its dashes at the end; else the
/// last `digits` characters when they are digits; else a recovery code typed without dashes.
/// (A recovery code typed without dashes whose last `digits` characters are all digits reads
/// as a TOTP code: typed with dashes it is never ambiguous.)
pub fn split_off(answer: &[u8], digits: usize) -> Option<(&[u8], &[u8])> {
    let tail = |n: usize| (answer.len() >= n).then(|| answer.split_at(answer.len() - n));
    if let Some((pw, code)) = tail(recovery::DASHED_LEN) {
        if recovery::has_code_shape(code, true) {
            return Some((pw, code));
        }
    }
    if let Some((pw, code)) = tail(digits) {
        if digits > 0 && code.iter().all(u8::is_ascii_digit) {
            return Some((pw, code));
        }
    }
    tail(recovery::CODE_LEN).filter(|(_, code)| recovery::has_code_shape(code, false))
}

/// The conversation of the line after the password when a split line ran: its one prompt is
/// answered with what was typed ahead, never asked (the application would answer it with the
/// password again); texts go to the application.
pub(super) struct AheadConversation<'c, C> {
    inner: &'c mut C,
    answer: Option<Zeroizing<Vec<u8>>>,
}

impl<'c, C> AheadConversation<'c, C> {
    pub(super) fn new(inner: &'c mut C, ahead: &TypedAhead) -> Self {
        let answer = match ahead {
            TypedAhead::Code(c) => Zeroizing::new(c.as_bytes().to_vec()),
            TypedAhead::Nothing => Zeroizing::new(Vec::new()),
        };
        AheadConversation {
            inner,
            answer: Some(answer),
        }
    }
}

impl<C: Conversation> Conversation for AheadConversation<'_, C> {
    fn prompt_hidden(&mut self, _prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConvError> {
        self.answer.take().ok_or(ConvError)
    }
    fn info(&mut self, text: &str) -> Result<(), ConvError> {
        self.inner.info(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_password_and_code_then_the_last_digits_are_the_code() {
        assert_eq!(
            split_off(b"hunter2492039", 6),
            Some((&b"hunter2"[..], &b"492039"[..]))
        );
        assert_eq!(
            split_off(b"pw12345678", 8),
            Some((&b"pw"[..], &b"12345678"[..]))
        );
        assert_eq!(split_off(b"492039", 6), Some((&b""[..], &b"492039"[..])));
    }

    #[test]
    fn given_recovery_code_appended_then_it_is_the_code_with_or_without_dashes() {
        assert_eq!(
            split_off(b"hunter24FH7-K2M9-XQ3P", 6),
            Some((&b"hunter2"[..], &b"4FH7-K2M9-XQ3P"[..]))
        );
        assert_eq!(
            split_off(b"hunter2-4fh7k2m9xq3p", 6),
            Some((&b"hunter2-"[..], &b"4fh7k2m9xq3p"[..]))
        );
    }

    #[test]
    fn given_no_code_at_the_end_then_none() {
        for a in [
            &b"hunter2"[..],
            b"",
            b"12345",
            b"hunter2 49203x",
            b"pw4fh7-k2m9-xq3",
        ] {
            assert_eq!(split_off(a, 6), None, "{:?}", String::from_utf8_lossy(a));
        }
    }

    #[test]
    fn given_typed_ahead_then_debug_hides_the_code() {
        let t = TypedAhead::Code(Zeroizing::new("492039".into()));
        assert!(!format!("{t:?}").contains("492039"));
    }
}
