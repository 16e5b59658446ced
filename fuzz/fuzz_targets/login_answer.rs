//! The answer at the prompt, end to end through the login decision (`flow::authenticate`,
//! SPEC §3) with a scripted conversation, a fixed clock and real files on a tmpfs: never
//! panics, asks exactly once, and succeeds only for a code of a step in the window or one of
//! the user's recovery codes. The first byte picks the account (SHA1/6 digits with recovery
//! codes, SHA256/8 digits, SHA512/6 digits/60 s), the rest is the answer.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pam_totp_fuzz::login;

fuzz_target!(|data: &[u8]| {
    let Some((&which, answer)) = data.split_first() else {
        return;
    };
    let account = usize::from(which % 3);
    let (verdict, prompts) = login::login(account, answer);
    assert_eq!(prompts, 1, "asked {prompts} times: {verdict:?}");
    if login::is_success(&verdict) {
        assert!(
            login::acceptable(account, answer),
            "accepted an answer that is no valid code: {answer:?} -> {verdict:?}"
        );
    }
    assert!(
        !verdict.reason.to_string().contains("panic"),
        "internal error: {verdict:?}"
    );
});
