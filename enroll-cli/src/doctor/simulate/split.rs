//! The `split` layout (SPEC §9) of a service with one password field:
//! ```text
//! auth  requisite  pam_totp.so split                # splits "password+code" from the one answer
//! auth  requisite  pam_unix.so use_first_pass       # checks the password part
//! auth  required   pam_totp.so                       # checks the code part, after the password
//! ```
//! A split line judges no code: a password module must check the password it leaves, and a
//! later pam_totp line (without `split`) the code. The simulation then checks that later line
//! like any code-judging line.

use super::StackVerdict;
use crate::doctor::pam_stack::{is_password, module_base, Rule};
use pam_totp::totp::DEFAULT_DIGITS;

/// `module at file:line`.
fn named(r: &Rule) -> String {
    format!("{} at {}", module_base(&r.module), r.at())
}

/// The split lines of `all` (the auth stack in order) and what follows each: errors when the
/// password or the code is never checked, warnings when the password module asks again.
pub(super) fn check(all: &[&Rule], v: &mut StackVerdict) {
    let splits: Vec<usize> = (0..all.len()).filter(|&i| all[i].is_split()).collect();
    if splits.len() > 1 {
        v.warnings.push((
            format!(
                "pam_totp.so split is loaded {} times ({}): a later split line takes the last \
                 digits off the password an earlier one left",
                splits.len(),
                splits
                    .iter()
                    .map(|&i| all[i].at())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "keep one `auth requisite pam_totp.so split` line, before the password module \
             (check the files it includes)"
                .to_string(),
        ));
    }
    for &i in &splits {
        check_one(all, i, v);
    }
}

/// Add use_first_pass to the password line; in a file the split line's service includes (and
/// other services too, which give no password before it), try_first_pass.
fn first_pass_fix(password: &Rule, split: &Rule) -> String {
    let line = std::iter::once(password.module.as_str())
        .chain(password.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    if password.file == split.file {
        format!(
            "add use_first_pass: `auth {} {line} use_first_pass`",
            password.control_text
        )
    } else {
        format!(
            "{} is included from {}: there add try_first_pass (it still asks where no password \
             came before), `auth {} {line} try_first_pass`; or write the auth lines of {} \
             without the include: the split line, `auth requisite {} use_first_pass`, \
             `auth required pam_totp.so`",
            password.file,
            split.file,
            password.control_text,
            split.file,
            module_base(&password.module)
        )
    }
}

fn check_one(all: &[&Rule], i: usize, v: &mut StackVerdict) {
    let Some(pw) = (i + 1..all.len()).find(|&j| is_password(&all[j].module)) else {
        let before = all[..i]
            .iter()
            .filter(|r| is_password(&r.module))
            .map(|r| named(r))
            .collect::<Vec<_>>();
        let before = if before.is_empty() {
            String::new()
        } else {
            format!(
                " ({} runs before it and is handed the password with the code still on it)",
                before.join(", ")
            )
        };
        v.errors.push((
            format!(
                "pam_totp.so split at {}: the split-off password is never checked: no password \
                 module runs after the split line{before}",
                all[i].at()
            ),
            format!(
                "add `auth requisite pam_unix.so use_first_pass` after the split line at {} \
                 (the split line goes before the password module)",
                all[i].at()
            ),
        ));
        return;
    };
    let judge = (pw + 1..all.len()).find(|&k| all[k].judges_code());
    for r in &all[pw..judge.unwrap_or(all.len())] {
        let first_pass = r
            .args
            .iter()
            .any(|a| a == "use_first_pass" || a == "try_first_pass");
        if is_password(&r.module) && !first_pass {
            v.warnings.push((
                format!(
                    "{} (after pam_totp.so split at {}) has neither use_first_pass nor \
                     try_first_pass: it asks for the password again, and a service with one \
                     password field answers with password+code, which fails",
                    named(r),
                    all[i].at()
                ),
                first_pass_fix(r, all[i]),
            ));
        }
    }
    if judge.is_none() {
        v.errors.push((
            format!(
                "pam_totp.so split at {}: the code typed after the password is never checked: \
                 the password alone with any {DEFAULT_DIGITS} digits logs in (no pam_totp.so \
                 line without `split` runs after {})",
                all[i].at(),
                named(all[pw])
            ),
            format!(
                "add `auth required pam_totp.so` after the password module ({})",
                named(all[pw])
            ),
        ));
    }
}
