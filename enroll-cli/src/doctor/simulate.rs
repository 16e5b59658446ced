//! libpam's control flow, simulated: runs an `auth` stack with given module answers, and the
//! verdict on a service's stack (does a wrong password stop before the code, does the code
//! decide, can a line let a user in without it: see bypass.rs).

use super::bypass;
use super::pam_stack::{is_password, module_base, rules, Action, Item, Ret, Rule};
use super::report::plural_s;
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impression {
    Undef,
    Positive,
    Negative,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatusCode {
    Ret(Ret),
    MustFail,
}

struct Sim<'a, 'f> {
    impression: Impression,
    status: StatusCode,
    totp_ran: bool,
    /// Lines whose done, die or jump passed over a pam_totp line that judges the code, in order.
    skipped_by: Vec<Skip<'a>>,
    result: &'f mut dyn FnMut(&Rule) -> Ret,
}

/// A line that passed over pam_totp: with which answer, and what its control did.
#[derive(Clone, Copy, Debug)]
pub(super) struct Skip<'a> {
    pub(super) rule: &'a Rule,
    pub(super) ret: Ret,
    pub(super) action: Action,
}

fn contains_totp(items: &[Item]) -> bool {
    items.iter().any(|i| match i {
        Item::Module(r) => r.judges_code(),
        Item::Substack(sub) => contains_totp(sub),
    })
}

impl<'a> Sim<'a, '_> {
    /// libpam's `_pam_dispatch_aux` for one level; true = the stack (level) ends here.
    fn level(&mut self, items: &'a [Item]) -> bool {
        let mut i = 0;
        while i < items.len() {
            match &items[i] {
                Item::Substack(sub) => {
                    // done/die end only the substack.
                    self.level(sub);
                }
                Item::Module(rule) => {
                    if rule.judges_code() {
                        self.totp_ran = true;
                    }
                    let r = (self.result)(rule);
                    match rule.control.action(r) {
                        Action::Ignore => {}
                        a @ (Action::Bad | Action::Die) => {
                            if self.impression != Impression::Negative {
                                self.impression = Impression::Negative;
                                self.status = if r == Ret::IGNORE {
                                    StatusCode::MustFail
                                } else {
                                    StatusCode::Ret(r)
                                };
                            }
                            if a == Action::Die {
                                self.note_skip(rule, r, a, &items[i + 1..]);
                                return true;
                            }
                        }
                        a @ (Action::Ok | Action::Done) => {
                            if self.impression == Impression::Undef
                                || (self.impression == Impression::Positive
                                    && self.status == StatusCode::Ret(Ret::SUCCESS))
                            {
                                self.impression = Impression::Positive;
                                self.status = StatusCode::Ret(r);
                            }
                            if a == Action::Done && self.impression == Impression::Positive {
                                self.note_skip(rule, r, a, &items[i + 1..]);
                                return true;
                            }
                        }
                        Action::Reset => {
                            self.impression = Impression::Undef;
                            self.status = StatusCode::MustFail;
                        }
                        a @ Action::Jump(n) => {
                            let end = (i + 1 + n).min(items.len());
                            self.note_skip(rule, r, a, &items[i + 1..end]);
                            i += n;
                        }
                    }
                }
            }
            i += 1;
        }
        false
    }

    fn note_skip(&mut self, rule: &'a Rule, ret: Ret, action: Action, passed: &[Item]) {
        if contains_totp(passed) {
            self.skipped_by.push(Skip { rule, ret, action });
        }
    }
}

/// One run of a stack.
pub(super) struct Run<'a> {
    pub(super) succeeds: bool,
    pub(super) totp_ran: bool,
    pub(super) skipped_by: Vec<Skip<'a>>,
}

/// Runs the stack with the given module results.
pub(super) fn run_stack<'a>(items: &'a [Item], result: &mut dyn FnMut(&Rule) -> Ret) -> Run<'a> {
    let mut sim = Sim {
        impression: Impression::Undef,
        status: StatusCode::MustFail,
        totp_ran: false,
        skipped_by: Vec::new(),
        result,
    };
    sim.level(items);
    Run {
        succeeds: sim.impression == Impression::Positive
            && sim.status == StatusCode::Ret(Ret::SUCCESS),
        totp_ran: sim.totp_ran,
        skipped_by: sim.skipped_by,
    }
}

/// Runs the stack with the given module results: (login succeeds, pam_totp ran).
fn simulate(items: &[Item], result: &dyn Fn(&Rule) -> Ret) -> (bool, bool) {
    let run = run_stack(items, &mut |r| result(r));
    (run.succeeds, run.totp_ran)
}

/// What other modules return in the simulation: neutral unless known.
fn other_result(rule: &Rule) -> Ret {
    if rule.is_split() {
        // A split line hands password and code on and judges no code (SPEC §9).
        return Ret::IGNORE;
    }
    match module_base(&rule.module) {
        "pam_permit.so" => Ret::SUCCESS,
        "pam_deny.so" => Ret::AUTH_ERR,
        // The users that matter are not root.
        "pam_rootok.so" => Ret::AUTH_ERR,
        "pam_faillock.so" if rule.args.iter().any(|a| a == "authfail") => Ret::AUTH_ERR,
        "pam_faillock.so" => Ret::SUCCESS,
        _ => Ret::IGNORE,
    }
}

/// The verdict on one service's auth stack.
#[derive(Debug, Default)]
pub(super) struct StackVerdict {
    /// Problems (ERROR) and remarks (WARN), each with its fix.
    pub(super) errors: Vec<(String, String)>,
    pub(super) warnings: Vec<(String, String)>,
    /// No password module at all: pam_totp is the only factor the stack checks (false when no
    /// line judges a code: then nothing is checked, and an error says so).
    pub(super) code_only: bool,
}

/// The verdict on `service`'s auth stack (`items`).
pub(super) fn judge_stack(items: &[Item], service: &str) -> StackVerdict {
    let all = rules(items);
    let passwords: Vec<&Rule> = all
        .iter()
        .copied()
        .filter(|r| is_password(&r.module))
        .collect();
    let totp_at = all
        .iter()
        .filter(|r| r.judges_code())
        .map(|r| format!("{} `{}`", r.at(), r.control_text))
        .collect::<Vec<_>>()
        .join(", ");
    let mut v = StackVerdict::default();
    // `pam_totp.so split` lines: a password module and a judging line after each.
    split::check(&all, &mut v);
    if !all.iter().any(|r| r.judges_code()) {
        // Only split lines: the code is never judged (an error above); nothing to simulate.
        return v;
    }
    v.code_only = passwords.is_empty();
    let requisite_fix = "make a failed password end the stack before pam_totp: `auth requisite \
                         pam_unix.so` (or `[success=ok default=die]`), or Debian's \
                         `[success=1 default=ignore] pam_unix.so` + `requisite pam_deny.so` + \
                         `required pam_permit.so` with pam_totp after them (pam-auth-update \
                         --enable pam-totp writes that)";
    // 1. A stranger: every password module fails.
    for fail in [Ret::AUTH_ERR, Ret::USER_UNKNOWN] {
        if passwords.is_empty() {
            break;
        }
        let res = |r: &Rule| {
            if is_password(&r.module) {
                fail
            } else if r.judges_code() {
                Ret::AUTH_ERR
            } else {
                other_result(r)
            }
        };
        let (_, ran) = simulate(items, &res);
        if ran {
            let how = if fail == Ret::AUTH_ERR {
                "a wrong password"
            } else {
                "an unknown user"
            };
            v.errors.push((
                format!(
                    "{how} still reaches pam_totp.so ({totp_at}): anyone can probe codes, lock \
                     users out{}",
                    ", or enrol a key of their own with enroll_at_login"
                ),
                requisite_fix.to_string(),
            ));
            break;
        }
    }
    // 2. The password is accepted (by each password module in turn; or there is none).
    let winners: Vec<Option<(String, usize)>> = if passwords.is_empty() {
        vec![None]
    } else {
        passwords.iter().map(|r| Some(r.id())).collect()
    };
    let mut seen = BTreeSet::new();
    // Lines already named in an error for skipping pam_totp; and whether an error already says
    // that the login can succeed without the code.
    let mut reported = BTreeSet::new();
    let mut bypass_reported = false;
    for winner in winners {
        let res_for = |totp: Ret| {
            let winner = winner.clone();
            move |r: &Rule| {
                if r.judges_code() {
                    totp
                } else if is_password(&r.module) {
                    if Some(r.id()) == winner {
                        Ret::SUCCESS
                    } else {
                        Ret::AUTH_ERR
                    }
                } else {
                    other_result(r)
                }
            }
        };
        let by = winner
            .as_ref()
            .map(|(f, l)| format!(" when the password is accepted at {f}:{l}"))
            .unwrap_or_default();
        let wrong = run_stack(items, &mut res_for(Ret::AUTH_ERR));
        let (ok_wrong, ran) = (wrong.succeeds, wrong.totp_ran);
        let (ok_right, _) = simulate(items, &res_for(Ret::SUCCESS));
        let (ok_unenrolled, _) = simulate(items, &res_for(Ret::IGNORE));
        let mut add = |list: &mut Vec<(String, String)>, text: String, fix: &str| {
            if seen.insert(text.clone()) {
                list.push((text, fix.to_string()));
            }
        };
        if !ran || ok_wrong {
            bypass_reported = true;
            // Password modules are named here; other lines get their own warning below.
            reported.extend(
                wrong
                    .skipped_by
                    .iter()
                    .filter(|s| is_password(&s.rule.module))
                    .map(|s| s.rule.id()),
            );
        }
        if !ran {
            let culprits: Vec<String> = wrong
                .skipped_by
                .iter()
                .map(|s| format!("{} at {}", module_base(&s.rule.module), s.rule.at()))
                .collect();
            add(
                &mut v.errors,
                format!(
                    "pam_totp.so ({totp_at}) is skipped{by} (by {}): the code is never asked",
                    culprits.join(", ")
                ),
                "put pam_totp after the password module with `required`, and do not let a \
                 `sufficient` or `[success=N]` line jump over it",
            );
        } else if ok_wrong {
            add(
                &mut v.errors,
                format!("a wrong code does not deny the login{by} (pam_totp.so at {totp_at})"),
                "give pam_totp the control `required` (not optional or sufficient)",
            );
        } else if !ok_right {
            add(
                &mut v.warnings,
                format!("even a correct code cannot log in{by}: a later line denies"),
                "check the lines after pam_totp",
            );
        }
        if ran && ok_right && !ok_unenrolled {
            add(
                &mut v.warnings,
                format!(
                    "users who need no code (not enrolled, not required) cannot log in{by}: \
                     nothing but pam_totp grants the login and it answers PAM_IGNORE for them"
                ),
                "intended for key + code stacks where every user is enrolled; otherwise add a \
                 line that grants the login (Debian: `auth required pam_permit.so` before \
                 pam_totp)",
            );
        }
    }
    // 3. Every answer of the modules doctor does not know (see bypass.rs).
    let found = bypass::find(items, service);
    let mut how = Vec::new();
    for skip in &found.skipped_by {
        let r = skip.rule;
        how.push(format!("{} at {}", module_base(&r.module), r.at()));
        if !reported.contains(&r.id()) {
            v.warnings.push((skip_text(skip, service), skip_fix(r)));
        }
    }
    if !found.not_counted.is_empty() {
        let answers: Vec<String> = found.not_counted.iter().map(|r| r.name()).collect();
        how.push(format!(
            "pam_totp.so ({totp_at}) answering {} does not deny it",
            answers.join(" or ")
        ));
    }
    if found.found() && !bypass_reported {
        v.errors.push((
            format!("the login can succeed without the code: {}", how.join("; ")),
            "no line before pam_totp.so may end the stack with success or jump over it, and \
             every failure of pam_totp.so must deny (`auth required pam_totp.so`); see the \
             warnings for each line"
                .to_string(),
        ));
    }
    if found.incomplete {
        v.errors.push((
            "too many modules to try every combination of their answers: doctor cannot show \
             that the code is needed"
                .to_string(),
            "simplify the auth stack (fewer modules before pam_totp.so)".to_string(),
        ));
    }
    v
}

/// A line that can pass over pam_totp, named with its module, place and control.
fn skip_text(skip: &Skip, service: &str) -> String {
    let r = skip.rule;
    let m = module_base(&r.module);
    let when = if skip.ret == Ret::SUCCESS {
        "when it succeeds".to_string()
    } else {
        format!("when it answers {}", skip.ret.name())
    };
    let what = match skip.action {
        Action::Jump(n) => format!(
            "its jump of {n} line{} passes over pam_totp.so",
            plural_s(n)
        ),
        Action::Done => "it ends the stack with success before pam_totp.so runs".to_string(),
        _ => "it ends the stack before pam_totp.so runs".to_string(),
    };
    let root = if m == "pam_rootok.so" && !bypass::is_root_caller_service(service) {
        format!(
            " (pam_rootok.so succeeds whenever the program runs as root, and {service} runs \
             as root for every user; it is harmless only in su, sudo and the like)"
        )
    } else {
        String::new()
    };
    format!(
        "{m} at {} `{}` can skip the code: {when}, {what}{root}",
        r.at(),
        r.control_text
    )
}

fn skip_fix(r: &Rule) -> String {
    format!(
        "unless {m} alone is meant to let users in without password and code, move the line \
         after pam_totp.so or give it a control that cannot end the stack (`required`, or \
         `[success=ok default=ignore]`)",
        m = module_base(&r.module)
    )
}

mod split;
#[cfg(test)]
mod tests;
