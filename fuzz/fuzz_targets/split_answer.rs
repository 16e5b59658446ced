//! The split of a one-field answer (SPEC §9): `split_off` never panics; when it splits, the
//! password and the code put back together are the answer, and the code is either `digits`
//! digits or a recovery code as §4 lets users type it; a dashed recovery code at the end is
//! always taken as one.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pam_totp::flow::split::split_off;
use pam_totp::recovery;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, answer)) = data.split_first() else {
        return;
    };
    let digits = if selector & 1 == 0 { 6 } else { 8 };
    match split_off(answer, digits) {
        Some((password, code)) => {
            assert_eq!([password, code].concat(), answer);
            let totp = code.len() == digits && code.iter().all(u8::is_ascii_digit);
            let recovery =
                recovery::has_code_shape(code, true) || recovery::has_code_shape(code, false);
            assert!(totp || recovery, "code {code:?} is neither");
        }
        None => {
            let tail = |n: usize| answer.len() >= n && {
                let t = &answer[answer.len() - n..];
                (n == digits && t.iter().all(u8::is_ascii_digit))
                    || recovery::has_code_shape(t, n == recovery::DASHED_LEN)
            };
            assert!(
                !tail(digits) && !tail(recovery::DASHED_LEN) && !tail(recovery::CODE_LEN),
                "a code at the end was not split off: {answer:?}"
            );
        }
    }
    if answer.len() >= recovery::DASHED_LEN
        && recovery::has_code_shape(&answer[answer.len() - recovery::DASHED_LEN..], true)
    {
        let (_, code) = split_off(answer, digits).expect("a dashed recovery code splits");
        assert_eq!(code.len(), recovery::DASHED_LEN);
    }
});
