use super::*;
use crate::doctor::pam_stack::PamConfig;
use crate::doctor::testutil::root_with;
use std::fs;

fn judge(files: &[(&str, &str)], service: &str) -> (StackVerdict, Vec<String>) {
    let root = root_with(files);
    let mut cfg = PamConfig {
        root: root.clone(),
        problems: Vec::new(),
    };
    let items = cfg.auth_stack(service, service, 0);
    let v = judge_stack(&items, service);
    let _ = fs::remove_dir_all(&root);
    (v, cfg.problems)
}

const DEBIAN_COMMON_AUTH: &str = "\
# here are the per-package modules (the \"Primary\" block)
auth\t[success=1 default=ignore]\tpam_unix.so nullok
# here's the fallback if no module succeeds
auth\trequisite\t\t\tpam_deny.so
auth\trequired\t\t\tpam_permit.so
auth\trequired\t\t\tpam_totp.so
auth\toptional\t\t\tpam_cap.so
";

#[test]
fn debian_common_auth_layout_stops_a_wrong_password() {
    let (v, problems) = judge(
        &[
            ("common-auth", DEBIAN_COMMON_AUTH),
            (
                "sshd",
                "@include common-auth\naccount required pam_nologin.so\n",
            ),
        ],
        "sshd",
    );
    assert!(v.errors.is_empty(), "{:?}", v.errors);
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    assert!(!v.code_only);
    assert!(problems.is_empty());
}

#[test]
fn required_password_lets_a_wrong_password_reach_the_module() {
    let (v, _) = judge(
        &[(
            "login",
            "auth required pam_unix.so\nauth required /lib/security/pam_totp.so\n",
        )],
        "login",
    );
    assert!(
        v.errors.iter().any(|(t, _)| t.contains("wrong password")),
        "{:?}",
        v.errors
    );
}

#[test]
fn requisite_and_success_ok_default_die_both_stop() {
    for ctl in ["requisite", "[success=ok default=die]"] {
        let text = format!("auth {ctl} pam_unix.so\nauth required pam_totp.so\n");
        let (v, _) = judge(&[("login", &text)], "login");
        assert!(v.errors.is_empty(), "{ctl}: {:?}", v.errors);
    }
}

#[test]
fn sufficient_password_skips_the_module() {
    let (v, _) = judge(
        &[(
            "su",
            "auth sufficient pam_unix.so\nauth required pam_totp.so\n",
        )],
        "su",
    );
    let text: Vec<&str> = v.errors.iter().map(|(t, _)| t.as_str()).collect();
    assert!(text.iter().any(|t| t.contains("skipped")), "{text:?}");
    assert!(
        text.iter().any(|t| t.contains("wrong password")),
        "{text:?}"
    );
}

#[test]
fn optional_module_does_not_decide() {
    let (v, _) = judge(
        &[(
            "login",
            "auth requisite pam_unix.so\nauth optional pam_totp.so\n",
        )],
        "login",
    );
    assert!(
        v.errors
            .iter()
            .any(|(t, _)| t.contains("wrong code does not deny")),
        "{:?}",
        v.errors
    );
}

#[test]
fn requisite_inside_a_substack_does_not_stop_the_parent() {
    let (v, _) = judge(
        &[
            ("pw", "auth requisite pam_unix.so\n"),
            ("login", "auth substack pw\nauth required pam_totp.so\n"),
        ],
        "login",
    );
    assert!(
        v.errors.iter().any(|(t, _)| t.contains("wrong password")),
        "{:?}",
        v.errors
    );
    // ... but the same file through `include` does.
    let (v, _) = judge(
        &[
            ("pw", "auth requisite pam_unix.so\n"),
            ("login", "auth include pw\nauth required pam_totp.so\n"),
        ],
        "login",
    );
    assert!(v.errors.is_empty(), "{:?}", v.errors);
}

#[test]
fn jump_over_the_module_is_flagged() {
    let (v, _) = judge(
        &[(
            "login",
            "auth [success=2 default=die] pam_unix.so\nauth required pam_totp.so\n\
                 auth required pam_deny.so\nauth required pam_permit.so\n",
        )],
        "login",
    );
    assert!(
        v.errors.iter().any(|(t, _)| t.contains("skipped")),
        "{:?}",
        v.errors
    );
}

#[test]
fn key_and_code_stack_is_code_only_and_warns_about_unenrolled_users() {
    let (v, _) = judge(&[("sshd", "auth required pam_totp.so\n")], "sshd");
    assert!(v.code_only);
    assert!(v.errors.is_empty(), "{:?}", v.errors);
    assert!(
        v.warnings.iter().any(|(t, _)| t.contains("need no code")),
        "{:?}",
        v.warnings
    );
}

#[test]
fn missing_include_is_reported() {
    let (_, problems) = judge(&[("login", "@include nowhere\n")], "login");
    assert!(
        problems.iter().any(|p| p.contains("nowhere")),
        "{problems:?}"
    );
}

fn texts(list: &[(String, String)]) -> Vec<&str> {
    list.iter().map(|(t, _)| t.as_str()).collect()
}

/// The stack is an error that names `line` ("can succeed without the code", or "skipped" when
/// the typical case already skips pam_totp), and `line` is warned about as a line that can
/// skip the code.
fn assert_skippable(files: &[(&str, &str)], service: &str, line: &str) {
    let (v, _) = judge(files, service);
    let (errors, warnings) = (texts(&v.errors), texts(&v.warnings));
    assert!(
        errors.iter().any(|t| t.contains(line)
            && (t.contains("can succeed without the code") || t.contains("skipped"))),
        "{service}: {errors:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|t| t.contains(line) && t.contains("can skip the code")),
        "{service}: {warnings:?}"
    );
}

/// Neither an error nor a warning for the stack.
fn assert_no_finding(files: &[(&str, &str)], service: &str) {
    let (v, _) = judge(files, service);
    assert!(v.errors.is_empty(), "{service}: {:?}", v.errors);
    assert!(v.warnings.is_empty(), "{service}: {:?}", v.warnings);
}

#[test]
fn given_sufficient_pam_succeed_if_before_the_code_then_the_stack_can_skip_it() {
    assert_skippable(
        &[
            ("common-auth", DEBIAN_COMMON_AUTH),
            (
                "sudo",
                "auth sufficient pam_succeed_if.so user ingroup sudo
@include common-auth
",
            ),
        ],
        "sudo",
        "pam_succeed_if.so at sudo:1",
    );
}

#[test]
fn given_a_success_done_bracket_on_pam_exec_before_the_code_then_the_stack_can_skip_it() {
    assert_skippable(
        &[
            ("common-auth", DEBIAN_COMMON_AUTH),
            (
                "login",
                "auth [success=done default=ignore] pam_exec.so /usr/local/bin/check
                     @include common-auth
",
            ),
        ],
        "login",
        "pam_exec.so at login:1",
    );
}

#[test]
fn given_real_world_alternatives_as_sufficient_in_sudo_then_each_can_skip_the_code() {
    for m in [
        "pam_u2f.so cue",
        "pam_ssh_agent_auth.so file=/etc/keys",
        "pam_fprintd.so",
    ] {
        let sudo = format!(
            "auth sufficient {m}
@include common-auth
"
        );
        let name = m.split(' ').next().unwrap();
        assert_skippable(
            &[("common-auth", DEBIAN_COMMON_AUTH), ("sudo", &sudo)],
            "sudo",
            &format!("{name} at sudo:1"),
        );
    }
}

#[test]
fn given_sufficient_pam_permit_before_the_code_then_the_stack_can_skip_it() {
    assert_skippable(
        &[(
            "login",
            "auth sufficient pam_permit.so
auth requisite pam_unix.so
                 auth required pam_totp.so
",
        )],
        "login",
        "pam_permit.so at login:1",
    );
}

#[test]
fn given_a_jump_over_the_code_by_another_module_then_the_stack_can_skip_it() {
    // Password and U2F key, and the key's success jumps over the code.
    assert_skippable(
        &[(
            "sshd",
            "auth requisite pam_unix.so
auth [success=1 default=ignore] pam_u2f.so
                 auth required pam_totp.so
auth required pam_permit.so
",
        )],
        "sshd",
        "pam_u2f.so at sshd:2",
    );
    // A failure that jumps (here: whatever pam_foo answers but success).
    assert_skippable(
        &[(
            "login",
            "auth requisite pam_unix.so
auth [success=ok default=1] pam_foo.so
                 auth required pam_totp.so
",
        )],
        "login",
        "pam_foo.so at login:2",
    );
}

#[test]
fn given_sufficient_pam_rootok_in_su_then_no_finding() {
    assert_no_finding(
        &[
            ("common-auth", DEBIAN_COMMON_AUTH),
            (
                "su",
                "auth sufficient pam_rootok.so\n@include common-auth\n",
            ),
            ("su-l", "auth include su\n"),
        ],
        "su-l",
    );
}

#[test]
fn given_sufficient_pam_rootok_in_sshd_then_the_stack_can_skip_the_code() {
    // sshd runs PAM as root for every user: pam_rootok succeeds for everyone.
    assert_skippable(
        &[
            ("common-auth", DEBIAN_COMMON_AUTH),
            (
                "sshd",
                "auth sufficient pam_rootok.so
@include common-auth
",
            ),
        ],
        "sshd",
        "pam_rootok.so at sshd:1",
    );
}

#[test]
fn given_optional_and_required_helpers_around_the_code_then_no_finding() {
    assert_no_finding(
        &[(
            "login",
            "auth optional pam_faildelay.so delay=3000000
                 auth required pam_env.so
auth requisite pam_unix.so
                 auth required pam_succeed_if.so uid >= 1000
auth required pam_totp.so
                 auth optional pam_gnome_keyring.so
auth optional pam_cap.so
",
        )],
        "login",
    );
}

#[test]
fn given_pam_totp_failure_mapped_to_ignore_then_the_stack_can_succeed_without_the_code() {
    let (v, _) = judge(
        &[(
            "login",
            "auth requisite pam_unix.so
                 auth [success=ok authinfo_unavail=ignore default=die] pam_totp.so
",
        )],
        "login",
    );
    assert!(
        texts(&v.errors)
            .iter()
            .any(|t| t.contains("can succeed without the code")
                && t.contains("PAM_AUTHINFO_UNAVAIL")),
        "{:?}",
        v.errors
    );
}

const SPLIT_LAYOUT: &str = "auth requisite pam_totp.so split
auth requisite pam_unix.so use_first_pass
auth required pam_totp.so
";

#[test]
fn given_the_split_layout_then_the_code_judging_line_passes_every_check() {
    // The split line runs before the password by design and is no second code check.
    assert_no_finding(&[("dovecot", SPLIT_LAYOUT)], "dovecot");
    let (v, _) = judge(&[("dovecot", SPLIT_LAYOUT)], "dovecot");
    assert!(!v.code_only);
}

#[test]
fn given_split_before_debian_common_auth_then_only_the_use_first_pass_warning() {
    let (v, _) = judge(
        &[
            ("common-auth", DEBIAN_COMMON_AUTH),
            (
                "dovecot",
                "auth requisite pam_totp.so split\n@include common-auth\n",
            ),
        ],
        "dovecot",
    );
    assert!(v.errors.is_empty(), "{:?}", v.errors);
    let warnings = texts(&v.warnings);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("pam_unix.so at common-auth:2")
            && warnings[0].contains("neither use_first_pass nor try_first_pass"),
        "{warnings:?}"
    );
    // common-auth serves other services too, which give no password before it.
    assert!(
        v.warnings[0]
            .1
            .contains("pam_unix.so nullok try_first_pass`"),
        "{:?}",
        v.warnings
    );
}

#[test]
fn given_a_code_judging_line_between_split_and_password_then_a_wrong_password_reaches_it() {
    let (v, _) = judge(
        &[(
            "dovecot",
            "auth requisite pam_totp.so split
auth required pam_totp.so
auth requisite pam_unix.so use_first_pass
",
        )],
        "dovecot",
    );
    let errors = texts(&v.errors);
    assert!(
        errors
            .iter()
            .any(|t| t.contains("wrong password still reaches pam_totp.so (dovecot:2")),
        "{errors:?}"
    );
    // ... and nothing judges the code after the password.
    assert!(
        errors
            .iter()
            .any(|t| t.contains("the code typed after the password is never checked")),
        "{errors:?}"
    );
}

#[test]
fn given_a_split_line_whose_failure_jumps_over_the_code_then_the_stack_can_skip_it() {
    // The split line never succeeds, but its failures are tried like any answer.
    assert_skippable(
        &[(
            "dovecot",
            "auth [ignore=ignore default=2] pam_totp.so split
auth requisite pam_unix.so use_first_pass
auth required pam_totp.so
auth required pam_permit.so
",
        )],
        "dovecot",
        "pam_totp.so at dovecot:1",
    );
}

#[test]
fn given_a_sufficient_split_line_then_no_finding() {
    // A split line never answers PAM_SUCCESS: `sufficient` cannot end the stack.
    assert_no_finding(
        &[(
            "dovecot",
            &SPLIT_LAYOUT.replacen("requisite", "sufficient", 1),
        )],
        "dovecot",
    );
}
