//! Can a stack let a user in without the code?
//!
//! The other stack checks run one "typical" case, in which a module doctor does not know
//! answers `PAM_IGNORE`. That calls `auth sufficient pam_u2f.so` (or `pam_succeed_if.so`,
//! `pam_exec.so`, `pam_fprintd.so`, `pam_ssh_agent_auth.so`...) before pam_totp harmless,
//! although its success ends the stack before the code is asked. Here every module whose
//! answer is not known is tried with every answer that its control treats differently
//! (success, and one failure per distinct action), the pam_totp line that judges the code
//! always fails (wrong code, or a damaged record or state), a `pam_totp.so split` line (SPEC §9)
//! gives each of its answers but success, and the question is whether the login can still
//! succeed.
//!
//! Modules whose answer is known, for a user who is not root:
//! - `pam_permit.so` always succeeds and `pam_deny.so` always fails: nothing to try (and a
//!   `sufficient pam_permit.so` before pam_totp is found, as it should be);
//! - `pam_rootok.so` succeeds only when the program's real uid is 0. In the services of
//!   [`ROOT_CALLER_SERVICES`] (`su`, `sudo`, `chfn`...) an ordinary user starts the program
//!   and the real uid is that user's: it succeeds only for root, who already controls the
//!   host and its second-factor files, so `auth sufficient pam_rootok.so` there (Debian's
//!   stock `su`) lets nobody skip anything. In every other service (sshd, login, display
//!   managers, daemons) the program runs as root for every user: there pam_rootok succeeds
//!   for everyone and is tried like any unknown module.
//!
//! No other module is taken on trust: one that may succeed on its own (a key, a fingerprint,
//! a group membership, a script) is exactly what this check is for.

use super::pam_stack::{module_base, Item, Ret, Rule};
use super::simulate::{run_stack, Skip};

/// Services run by a program that an ordinary user starts (setuid) or only root may run: the
/// real uid pam_rootok checks is the caller's, so it succeeds for root alone.
pub(super) const ROOT_CALLER_SERVICES: &[&str] = &[
    "su",
    "su-l",
    "sudo",
    "sudo-i",
    "runuser",
    "runuser-l",
    "chfn",
    "chsh",
    "chage",
    "passwd",
    "chpasswd",
    "newusers",
    "newgrp",
];

/// More runs than this and the search gives up (reported: doctor cannot show the code is
/// needed). 3^10 combinations of ten unknown modules stay well below it.
const MAX_RUNS: usize = 200_000;

/// What pam_totp answers when the code is not right: a wrong code, or its refusal of a
/// damaged record or state (`PAM_AUTHINFO_UNAVAIL`) or of a bad option or policy.
const TOTP_FAILURES: [Ret; 3] = [Ret::AUTH_ERR, Ret::AUTHINFO_UNAVAIL, Ret::SERVICE_ERR];

/// What a `pam_totp.so split` line answers (SPEC §9): `PAM_IGNORE` when it hands password and
/// code on, or a failure (bad option or policy, unreadable record or state); never success.
const SPLIT_ANSWERS: [Ret; 4] = [
    Ret::IGNORE,
    Ret::AUTH_ERR,
    Ret::AUTHINFO_UNAVAIL,
    Ret::SERVICE_ERR,
];

/// The ways the stack lets a user in whose code was not accepted.
#[derive(Debug, Default)]
pub(super) struct Bypass<'a> {
    /// Lines whose done, die or jump passed over pam_totp in a run that let the user in (one
    /// entry per line, first seen first).
    pub skipped_by: Vec<Skip<'a>>,
    /// pam_totp ran and answered these, and the login still succeeded.
    pub not_counted: Vec<Ret>,
    /// The search stopped at [`MAX_RUNS`] before trying every combination.
    pub incomplete: bool,
}

impl Bypass<'_> {
    pub fn found(&self) -> bool {
        !self.skipped_by.is_empty() || !self.not_counted.is_empty()
    }
}

/// The answers `rule` may give in `service`, for a user who is not root.
fn possible(rule: &Rule, service: &str) -> Vec<Ret> {
    let candidates = if rule.judges_code() {
        TOTP_FAILURES.to_vec()
    } else if rule.is_split() {
        SPLIT_ANSWERS.to_vec()
    } else {
        match module_base(&rule.module) {
            "pam_permit.so" => vec![Ret::SUCCESS],
            "pam_deny.so" => vec![Ret::AUTH_ERR],
            "pam_rootok.so" if is_root_caller_service(service) => vec![Ret::AUTH_ERR],
            _ => return rule.control.distinct_results(),
        }
    };
    // Answers the control treats alike need one try.
    let mut out: Vec<Ret> = Vec::new();
    for r in candidates {
        if !out.iter().any(|o| {
            rule.control.action(*o) == rule.control.action(r)
                && (*o == Ret::SUCCESS) == (r == Ret::SUCCESS)
        }) {
            out.push(r);
        }
    }
    out
}

pub(super) fn is_root_caller_service(service: &str) -> bool {
    ROOT_CALLER_SERVICES.contains(&service)
}

/// Tries every combination of answers (depth first, replaying the choices made so far).
pub(super) fn find<'a>(items: &'a [Item], service: &str) -> Bypass<'a> {
    let mut found = Bypass::default();
    // The choice made at each branching line of the current run, and how many there were.
    let mut script: Vec<usize> = Vec::new();
    for _ in 0..MAX_RUNS {
        let mut widths: Vec<usize> = Vec::new();
        let mut totp_answer = None;
        let run = run_stack(items, &mut |rule| {
            let options = possible(rule, service);
            let pick = if options.len() > 1 {
                let k = script.get(widths.len()).copied().unwrap_or(0);
                widths.push(options.len());
                options[k]
            } else {
                options[0]
            };
            if rule.judges_code() {
                totp_answer = Some(pick);
            }
            pick
        });
        if run.succeeds {
            if run.totp_ran {
                if let Some(r) = totp_answer.filter(|r| !found.not_counted.contains(r)) {
                    found.not_counted.push(r);
                }
            }
            for skip in run.skipped_by {
                if !found
                    .skipped_by
                    .iter()
                    .any(|s| s.rule.id() == skip.rule.id())
                {
                    found.skipped_by.push(skip);
                }
            }
        }
        // The next combination: advance the last choice that has one left.
        script.resize(widths.len(), 0);
        let mut advanced = false;
        while let Some(last) = script.pop() {
            if last + 1 < widths[script.len()] {
                script.push(last + 1);
                advanced = true;
                break;
            }
        }
        if !advanced {
            return found;
        }
    }
    found.incomplete = true;
    found
}
