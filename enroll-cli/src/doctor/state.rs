//! The state directory: its ownership and modes, every record and state file (the module's own
//! checks), leftover temp files, locks and stored times in the future.

use super::report::{plural_s, Section};
use super::store_fix;
use pam_totp::clock;
use pam_totp::escape::terminal_safe;
use pam_totp::next_login::Enrolment;
use pam_totp::store::{self, Status, Store, StoreError};
use pam_totp::throttle::is_locked;
use pam_totp::timefmt;
use pam_totp::totp::Params;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the state directory says about each user with a record, as far as the next login is
/// concerned ([`Enrolment::of`]).
pub(super) type Enrolled = BTreeMap<String, Enrolment>;

pub(super) fn check_state(dir: &Path, now: u64, module_used: bool) -> (Section, Option<Enrolled>) {
    let mut s = Section::new(format!("State directory {}", dir.display()));
    let store = match Store::open(dir, 0) {
        Ok(st) => st,
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let fix = format!(
                "install -d -o root -g root -m 0700 {d} {d}/users (or enrol someone: \
                 `pam-totp enroll USER` creates it)",
                d = dir.display()
            );
            if module_used {
                s.error(
                    format!(
                        "{} (or its users/) does not exist: pam_totp refuses every login it \
                         sees until it does",
                        dir.display()
                    ),
                    fix,
                );
            } else {
                s.note(format!(
                    "{} does not exist yet (nobody is enrolled); {}",
                    dir.display(),
                    fix
                ));
            }
            return (s, Some(Enrolled::new()));
        }
        Err(StoreError::Io { path, source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            s.warn(
                format!("cannot check {}: permission denied", path.display()),
                "run pam-totp doctor as root",
            );
            return (s, None);
        }
        Err(e) => {
            let text = format!("{e}: pam_totp refuses every login it sees");
            s.error(text, store_fix(e, "make it root:root 0700"));
            return (s, None);
        }
    };
    let users = match store.users() {
        Ok(u) => u,
        Err(e) => {
            let text = e.to_string();
            s.error(text, store_fix(e, "run pam-totp doctor as root"));
            return (s, None);
        }
    };
    s.ok(format!(
        "root:root 0700 and users/ root:root 0700 in trusted parent directories; {} record{}",
        users.len(),
        if users.len() == 1 { "" } else { "s" }
    ));
    let strays = match store.stray_temp_files() {
        Ok(v) => v,
        Err(e) => {
            let text = e.to_string();
            s.error(text, store_fix(e, "run pam-totp doctor as root"));
            Vec::new()
        }
    };
    report_stray_temps(&mut s, &strays);
    match store.unknown_files() {
        Ok(names) => {
            for n in names {
                s.note(format!(
                    "users/{} is not a record, state or lock file; pam_totp ignores it",
                    terminal_safe(&n)
                ));
            }
        }
        Err(e) => {
            let text = e.to_string();
            s.error(text, store_fix(e, "run pam-totp doctor as root"));
        }
    }
    let mut enrolled = Enrolled::new();
    let mut phones_off = Vec::new();
    for user in &users {
        let record = match store.record(user) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                let text = format!("{user}: {e} (pam_totp refuses {user}'s logins)");
                s.error(text, store_fix(e, "fix the file"));
                continue;
            }
        };
        let state = match store.state(user) {
            Ok(st) => Some(st),
            Err(e) => {
                let text = format!("{user}: {e} (pam_totp refuses {user}'s logins)");
                s.error(text, store_fix(e, &format!("pam-totp unlock {user}")));
                None
            }
        };
        let left = record.recovery.len();
        enrolled.insert(user.to_string(), Enrolment::of(Some(&record)));
        match (record.status, record.replaces_active) {
            (Status::Active, _) => {
                s.ok(format!(
                    "{user}: active ({}), {left} recovery code{} left",
                    record.params.describe(),
                    if left == 1 { "" } else { "s" }
                ));
                if left == 0 {
                    s.warn(
                        format!("{user} has no recovery codes left"),
                        format!("pam-totp recovery {user} (and give {user} the new codes)"),
                    );
                }
            }
            (Status::Pending, true) => {
                s.warn(
                    format!(
                        "{user}: re-enrolment pending (enroll --force): {user} is denied until \
                         the new key is activated"
                    ),
                    format!("pam-totp activate {user} (with a code from the new app entry)"),
                );
            }
            (Status::Pending, false) => {
                s.note(format!(
                    "{user}: pending, not used for logins until activated (pam-totp activate \
                     {user})"
                ));
            }
        }
        if let Some(st) = state {
            report_future_state(&mut s, user, &st, record.params, now);
            if let Some(o) = clock::phone_offset_seconds(&st, record.params).filter(|o| *o != 0) {
                phones_off.push((user.to_string(), o));
            }
            if is_locked(st.locked_until, now) {
                s.warn(
                    format!(
                        "{user} is locked until {} after {} failed codes",
                        timefmt::rfc3339(st.locked_until),
                        st.failures
                    ),
                    format!("pam-totp unlock {user} (once you know it was {user})"),
                );
            }
        }
    }
    report_phone_clocks(&mut s, &phones_off);
    (s, Some(enrolled))
}

/// Users whose phone's clock was off at their last login (SPEC §10): their codes still work
/// while the offset stays inside the window; one more step of drift and they do not.
fn report_phone_clocks(s: &mut Section, off: &[(String, i64)]) {
    if off.is_empty() {
        return;
    }
    let each: Vec<String> = off
        .iter()
        .map(|(user, o)| format!("{user} ({})", clock::offset_text(*o)))
        .collect();
    s.note(format!(
        "phone clock off at the last login: {} — ask them to turn on automatic time on the \
         phone (codes work while the offset stays inside window=)",
        each.join(", ")
    ));
}

/// How many stray temp file names a finding shows.
const STRAYS_SHOWN: usize = 3;

/// Temp files left by writers killed between creating and renaming them.
fn report_stray_temps(s: &mut Section, strays: &[PathBuf]) {
    if strays.is_empty() {
        return;
    }
    let mut names: Vec<String> = strays
        .iter()
        .take(STRAYS_SHOWN)
        .filter_map(|p| p.file_name())
        .map(|n| format!("users/{}", n.to_string_lossy()))
        .collect();
    if strays.len() > STRAYS_SHOWN {
        names.push(format!("and {} more", strays.len() - STRAYS_SHOWN));
    }
    s.warn(
        format!(
            "{} leftover temp file{} in users/ ({}): a write was killed between creating and \
             renaming it; harmless to logins, but it takes disk space",
            strays.len(),
            plural_s(strays.len()),
            names.join(", ")
        ),
        "remove them with `rm` while no login or pam-totp command runs, or run `pam-totp \
         unlock USER` for the user they belong to (.USER.toml.tmp, .USER.state.tmp)",
    );
}

/// A stored `last_step` or `last_success` in the future (a login while the clock was ahead):
/// every code is refused as a replay until the clock catches up.
fn report_future_state(s: &mut Section, user: &str, st: &store::State, params: Params, now: u64) {
    let ahead = clock::ahead(st, params, now);
    if !ahead.any() {
        return;
    }
    let mut what = Vec::new();
    if let Some((step, by)) = ahead.last_step {
        let at = step.saturating_mul(u64::from(params.period()));
        what.push(format!(
            "last accepted step {step} is {by} steps ahead of now (a code of {})",
            timefmt::rfc3339(at)
        ));
    }
    if let Some(t) = ahead.last_success {
        what.push(format!("last success is dated {}", timefmt::rfc3339(t)));
    }
    s.error(
        format!(
            "{user}: {}: a login while the system clock was ahead; until then every code of \
             {user} is refused as a replay",
            what.join(", ")
        ),
        format!(
            "check that the clock is right now (timedatectl), then `pam-totp unlock \
             --reset-clock {user}`"
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::Level;
    use crate::doctor::testutil::N;
    use std::fs;
    use std::sync::atomic::Ordering;

    /// A private state directory with alice's active record and this state.
    fn state_dir_with(state: &store::State) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "pam-totp-doctor-state-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        let st = Store::create(&dir, 0).unwrap();
        let lock = st
            .lock(&pam_totp::names::UserName::new("alice").unwrap())
            .unwrap();
        lock.write_record(&store::Record {
            user: "alice".into(),
            status: Status::Active,
            replaces_active: false,
            secret: pam_totp::secret::Secret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
                .unwrap(),
            params: Params::default(),
            issuer: "test".into(),
            created: Some(1_700_000_000),
            recovery: vec![format!("sha256:0011223344556677:{}", "ab".repeat(32))],
        })
        .unwrap();
        lock.replace_state(state).unwrap();
        dir
    }

    const NOW: u64 = 1_800_000_000;

    #[test]
    #[ignore = "needs root (doctor trusts only root-owned files): run by `make test`"]
    fn given_a_state_from_a_clock_a_day_ahead_then_an_error_with_reset_clock() {
        let later = NOW + 86_400;
        let dir = state_dir_with(&store::State {
            last_step: Some(Params::default().step_at(later)),
            last_success: Some(store::LastSuccess {
                time: later,
                rhost: None,
            }),
            ..Default::default()
        });
        let (s, _) = check_state(&dir, NOW, true);
        let _ = fs::remove_dir_all(&dir);
        let hit = s
            .findings
            .iter()
            .find(|f| {
                f.level == Level::Error && f.text.contains("alice") && f.text.contains("ahead")
            })
            .unwrap_or_else(|| panic!("{:?}", s.findings));
        assert!(hit.text.contains("last success"), "{}", hit.text);
        assert!(
            hit.fix
                .as_deref()
                .unwrap_or("")
                .contains("pam-totp unlock --reset-clock alice"),
            "{hit:?}"
        );
    }

    #[test]
    #[ignore = "needs root (doctor trusts only root-owned files): run by `make test`"]
    fn given_a_phone_clock_behind_at_the_last_login_then_the_user_is_listed() {
        let dir = state_dir_with(&store::State {
            last_step: Some(Params::default().step_at(NOW) - 1),
            last_offset: Some(-1),
            ..Default::default()
        });
        let (s, _) = check_state(&dir, NOW, true);
        let _ = fs::remove_dir_all(&dir);
        assert!(
            s.findings
                .iter()
                .any(|f| f.text.contains("phone clock off")
                    && f.text.contains("alice (30 s behind)")),
            "{:?}",
            s.findings
        );
    }

    #[test]
    #[ignore = "needs root (doctor trusts only root-owned files): run by `make test`"]
    fn given_a_state_of_now_then_no_clock_finding() {
        let dir = state_dir_with(&store::State {
            last_step: Some(Params::default().step_at(NOW)),
            ..Default::default()
        });
        let (s, _) = check_state(&dir, NOW, true);
        let _ = fs::remove_dir_all(&dir);
        assert!(
            !s.findings.iter().any(|f| f.level >= Level::Warn),
            "{:?}",
            s.findings
        );
    }

    #[test]
    #[ignore = "needs root (doctor trusts only root-owned files): run by `make test`"]
    fn given_stray_temp_files_then_a_warning_with_count_names_and_fix() {
        let dir = state_dir_with(&store::State::default());
        for n in [
            ".alice.toml.tmp",
            ".alice.state.tmp",
            ".bob.state.tmp",
            ".carol.toml.tmp",
        ] {
            fs::write(dir.join("users").join(n), "x").unwrap();
        }
        let (s, _) = check_state(&dir, NOW, true);
        let _ = fs::remove_dir_all(&dir);
        let hit = s
            .findings
            .iter()
            .find(|f| f.level == Level::Warn && f.text.contains("4 leftover temp files"))
            .unwrap_or_else(|| panic!("{:?}", s.findings));
        assert!(hit.text.contains("users/.alice.state.tmp"), "{}", hit.text);
        assert!(hit.text.contains("and 1 more"), "{}", hit.text);
        let fix = hit.fix.as_deref().unwrap_or("");
        assert!(
            fix.contains("rm") && fix.contains("pam-totp unlock"),
            "{fix}"
        );
        // Reported once, not again as unknown files.
        assert!(
            !s.findings
                .iter()
                .any(|f| f.text.contains("is not a record")),
            "{:?}",
            s.findings
        );
    }
}
