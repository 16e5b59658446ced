//! torture-check: reads a pam_totp state directory exactly as the module does
//! (`pam_totp::store`), so that it follows whatever format the store uses.
//!
//!   torture-check DIR [USER...]          one line per user (default: every file in users/)
//!   torture-check --find-recovery DIR USER CODE
//!
//! Line: `user=U record=ok|none|ERR secret=B32 status=active|pending replaces=0|1
//! recovery=N state=ok|ERR last_step=N|- failures=N` (then `error=...` when something failed),
//! and a last line `extra=N names...` listing files in users/ that are not USER.toml,
//! USER.state or USER.lock (temporary files left by a killed writer).
//! Trusted files must be owned by root (owner 0), as in production.
use pam_totp::names::UserName;
use pam_totp::store::{Status, Store};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--find-recovery") {
        if args.len() != 4 {
            eprintln!("usage: torture-check --find-recovery DIR USER CODE");
            return ExitCode::from(2);
        }
        let store = match Store::open(Path::new(&args[1]), 0) {
            Ok(s) => s,
            Err(e) => {
                println!("error={e}");
                return ExitCode::from(1);
            }
        };
        let user = match UserName::new(&args[2]) {
            Ok(u) => u,
            Err(e) => {
                println!("error={e}");
                return ExitCode::from(1);
            }
        };
        return match store.record(&user) {
            Ok(Some(r)) => {
                match pam_totp::recovery::find(&args[3], &r.recovery) {
                    Some(i) => println!("found={i} left={}", r.recovery.len()),
                    None => println!("found=none left={}", r.recovery.len()),
                }
                ExitCode::SUCCESS
            }
            Ok(None) => {
                println!("found=none record=none");
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("error={e}");
                ExitCode::from(1)
            }
        };
    }
    let Some(dir) = args.first() else {
        eprintln!("usage: torture-check DIR [USER...]");
        return ExitCode::from(2);
    };
    let store = match Store::open(Path::new(dir), 0) {
        Ok(s) => s,
        Err(e) => {
            println!("error={e}");
            return ExitCode::from(1);
        }
    };
    let users_dir = store.dir().join("users");
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut extra = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&users_dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            match n.rsplit_once('.') {
                Some((u, "toml" | "state" | "lock")) if !u.starts_with('.') => {
                    names.insert(u.to_string());
                }
                _ => extra.push(n),
            }
        }
    }
    let wanted: Vec<String> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        names.into_iter().collect()
    };
    let mut bad = false;
    for name in wanted {
        let mut line = format!("user={name}");
        let Ok(user) = UserName::new(&name) else {
            bad = true;
            println!("{line} error=invalid user name");
            continue;
        };
        let mut errors = Vec::new();
        match store.record(&user) {
            Ok(Some(r)) => {
                line.push_str(&format!(
                    " record=ok secret={} status={} replaces={} recovery={}",
                    &*r.secret.to_base32(),
                    if r.status == Status::Active {
                        "active"
                    } else {
                        "pending"
                    },
                    u8::from(r.replaces_active),
                    r.recovery.len()
                ));
            }
            Ok(None) => line.push_str(" record=none"),
            Err(e) => {
                bad = true;
                line.push_str(" record=ERR");
                errors.push(e.to_string());
            }
        }
        match store.state(&user) {
            Ok(s) => line.push_str(&format!(
                " state=ok last_step={} failures={}",
                s.last_step.map_or("-".to_string(), |v| v.to_string()),
                s.failures
            )),
            Err(e) => {
                bad = true;
                line.push_str(" state=ERR");
                errors.push(e.to_string());
            }
        }
        if !errors.is_empty() {
            line.push_str(&format!(" error={}", errors.join(" | ")));
        }
        println!("{line}");
    }
    extra.sort();
    println!("extra={} {}", extra.len(), extra.join(" "));
    if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
