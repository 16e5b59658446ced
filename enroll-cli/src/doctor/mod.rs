//! `pam-totp doctor`: checks an installation and explains each finding with its fix.
//!
//! Read-only. It looks at:
//! - the state directory and every record and state file in it (the module's own checks:
//!   [`Store::open`], [`Store::record`], [`Store::state`]);
//! - the policy ([`store::load_policy`]);
//! - every PAM stack in `/etc/pam.d` that loads `pam_totp.so` (following `@include`, `include`
//!   and `substack`), simulating libpam's control flow to tell whether a wrong password stops
//!   before the code prompt and whether the module's answer decides the login, and trying
//!   every answer of the modules it does not know to find lines that let a user in without
//!   the code (doctor/bypass.rs, which also says which modules are trusted and why);
//! - leftover temp files in `users/`, and stored times in the future (`clock::ahead`);
//! - sshd's settings (`sshd -T` when it works, else `sshd_config` and its `Include`s);
//! - clock synchronisation (timedatectl, chronyc, ntpq; not knowing is a warning);
//! - users the policy requires who are not enrolled, and what their next login does
//!   ([`next_login`](pam_totp::next_login::next_login), the module's own rule; the user database
//!   is asked about required users missing from `etc/passwd` only when `root` is `/`).
//!
//! Entry point: [`run`]. `root` is where `etc/pam.d`, `etc/ssh`, `etc/passwd`, `etc/group` and
//! `etc/login.defs` are read from (`/` on a real system); commands (`sshd -T`, clock tools) run
//! only when it is `/`. The state directory and the policy are the paths given.
//!
//! - with `--store` (fleet mode): the store's `store.toml` and TLS files, each address's
//!   connection, the clock difference to the database, the server's role and synchronous
//!   standbys ([`fleet`]).
//!
//! One module per check: [`state`], [`policy`], [`pam`] (on [`pam_stack`], [`simulate`] and
//! [`bypass`]), [`sshd`], [`clock`], [`users`], [`fleet`]; [`report`] holds the findings and
//! renders them.

use crate::error::{CliError, Result};
use pam_totp::store::StoreError;
use pam_totp::sys::{RealSystem, System};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod bypass;
mod clock;
mod fleet;
mod pam;
mod pam_stack;
mod policy;
mod report;
mod simulate;
mod sshd;
mod state;
#[cfg(test)]
mod testutil;
mod users;

use clock::check_clock;
use pam::check_pam;
use policy::check_policy;
use report::Report;
use sshd::check_sshd;
use state::check_state;
use users::check_users;

/// Runs every check, prints the findings (with their fixes) on stdout and returns whether
/// nothing is wrong (no finding of level ERROR; warnings and notes do not count). `store`:
/// fleet mode's `store.toml` and the owner its files must have.
pub fn run(dir: &Path, policy: &Path, root: &Path, store: Option<(&Path, u32)>) -> Result<bool> {
    let mut report = check(dir, policy, root, &RealSystem);
    if let Some((path, owner)) = store {
        report.sections.push(fleet::check_store(path, owner));
    }
    crate::output::out!("{}", report.render(dir, policy, root))?;
    Ok(report.errors() == 0)
}

/// The checks, in the order they are shown. `sys` gives the clock.
fn check(dir: &Path, policy_path: &Path, root: &Path, sys: &dyn System) -> Report {
    let now = sys.now();
    let commands = root == Path::new("/");
    let pam = check_pam(root, dir, policy_path);
    let (policy_section, policy) = check_policy(policy_path, now);
    let (state_section, enrolled) = check_state(dir, now, pam.module_used);
    let sshd = check_sshd(root, &pam, commands);
    let clock = check_clock(commands);
    let users = check_users(
        root,
        policy.as_ref(),
        enrolled.as_ref(),
        commands.then_some(sys),
        now,
    );
    Report {
        sections: vec![
            state_section,
            policy_section,
            pam.section,
            sshd,
            clock,
            users,
        ],
    }
}

/// The fix for a store error: the CLI's own hint (see error.rs), or a generic one.
fn store_fix(e: StoreError, generic: &str) -> String {
    let hints = CliError::store("", e).hints;
    if hints.is_empty() {
        generic.to_string()
    } else {
        hints.join("; ")
    }
}

/// Runs a command with a time limit; its stdout if it exited with status 0.
fn run_cmd(prog: &str, args: &[&str], limit: Duration) -> Option<String> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let out = reader.join().unwrap_or_default();
    status.filter(|s| s.success()).map(|_| out)
}
