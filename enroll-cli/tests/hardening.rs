//! What stored values and broken pipes must not do to the admin: a step stored while the
//! clock was ahead is reported and can be repaired (`unlock --reset-clock`); a hostile
//! PAM_RHOST or policy name reaches the terminal inert; a closed stdout ends a run without a
//! panic.

mod common;

use common::{now, settle, TestDir};
use pam_totp::store::{LastSuccess, State, JOURNAL_HEADER};
use std::process::Stdio;

const ISSUER: &str = "build-01";
const YEAR_STEPS: u64 = 365 * 2880;

/// The state a login leaves while the system clock is a year ahead.
fn write_year_ahead_state(t: &TestDir, user: &str) -> u64 {
    let ahead = now() / 30 + YEAR_STEPS;
    let state = State {
        last_step: Some(ahead),
        last_success: Some(LastSuccess {
            time: now() + 365 * 86_400,
            rhost: Some("192.0.2.10".into()),
        }),
        ..State::default()
    };
    t.write_state(user, &format!("{JOURNAL_HEADER}{}", state.to_entry()));
    ahead
}

fn last_step(t: &TestDir, user: &str) -> u64 {
    common::toml_value(&t.state_text(user).unwrap(), "last_step")
        .parse()
        .unwrap()
}

#[test]
fn given_a_step_from_a_clock_a_year_ahead_then_status_says_so_and_names_the_fix() {
    let t = TestDir::new("clock-ahead-status");
    t.enrolled("alice", ISSUER);
    let j = t.run(&["status", "alice", "--json"]).ok().json();
    assert!(j["clock_ahead"].is_null(), "healthy state: {j}");

    settle(30, 10);
    write_year_ahead_state(&t, "alice");
    let r = t.run(&["status", "alice"]);
    r.ok();
    assert!(
        r.stdout.contains(&format!(
            "Last used step lies {YEAR_STEPS} steps (about 365 days) in the future"
        )) && r.stdout.contains("every code is refused as a replay")
            && r.stdout
                .contains("Fix: pam-totp unlock --reset-clock alice"),
        "{}",
        r.transcript()
    );

    let j = t.run(&["status", "alice", "--json"]).ok().json();
    assert_eq!(j["clock_ahead"]["last_step_ahead_steps"], YEAR_STEPS);
    assert_eq!(j["clock_ahead"]["last_success_in_future"], true);
    for key in [
        "user",
        "state",
        "last_success",
        "locked_until",
        "grace_until",
    ] {
        assert!(j.get(key).is_some(), "{key} kept: {j}");
    }
    assert_eq!(j["state"], "active");

    let r = t.run(&["list"]);
    assert!(
        r.ok().stdout.contains("active (clock ahead)"),
        "{}",
        r.stdout
    );
    let j = t.run(&["list", "--json"]).ok().json();
    assert_eq!(j[0]["clock_ahead"]["last_step_ahead_steps"], YEAR_STEPS);
}

#[test]
fn given_a_step_from_the_future_then_plain_unlock_keeps_it_and_reset_clock_sets_the_current_step() {
    let t = TestDir::new("clock-ahead-unlock");
    t.enrolled("alice", ISSUER);
    settle(30, 10);
    let ahead = write_year_ahead_state(&t, "alice");

    // Plain unlock: today's rule, the highest step stays; it says how to repair.
    let r = t.run(&["unlock", "alice"]);
    r.ok();
    assert_eq!(last_step(&t, "alice"), ahead);
    assert!(
        r.stderr.contains("lies 1051200 steps in the future")
            && r.stderr.contains("unlock --reset-clock alice"),
        "{}",
        r.transcript()
    );

    let r = t.run(&["unlock", "--reset-clock", "alice"]);
    r.ok();
    let current = now() / 30;
    assert_eq!(last_step(&t, "alice"), current, "{}", r.transcript());
    assert!(
        r.stdout.contains(&format!(
            "last used step {ahead} (" // old
        )) && r.stdout.contains(&format!("current step {current} (")),
        "{}",
        r.transcript()
    );
    let j = t.run(&["status", "alice", "--json"]).ok().json();
    assert_eq!(
        j["clock_ahead"]["last_step_ahead_steps"],
        serde_json::Value::Null
    );
}

#[test]
fn given_a_step_within_the_widest_window_then_reset_clock_does_not_lower_it() {
    let t = TestDir::new("clock-window-unlock");
    t.enrolled("alice", ISSUER);
    settle(30, 10);
    // Accepted with window=5 from a phone a little ahead: a real use, not a wrong clock.
    let near = now() / 30 + 5;
    t.write_state("alice", &format!("version = 1\nlast_step = {near}\n"));
    let r = t.run(&["unlock", "--reset-clock", "alice"]);
    assert!(r.ok().stdout.contains("Nothing to reset"), "{}", r.stdout);
    assert_eq!(last_step(&t, "alice"), near, "a used code must stay used");
}

#[test]
fn given_an_rhost_with_a_newline_and_escapes_then_status_shows_it_inert() {
    let t = TestDir::new("rhost-forged");
    t.enrolled("alice", ISSUER);
    let forged = "10.0.0.9\nLocked until: never\u{1b}[32m";
    let state = State {
        last_step: Some(now() / 30),
        last_success: Some(LastSuccess {
            time: now() - 60,
            rhost: Some(forged.into()),
        }),
        ..State::default()
    };
    t.write_state("alice", &format!("{JOURNAL_HEADER}{}", state.to_entry()));

    for args in [&["status", "alice"][..], &["list"], &["status"]] {
        let r = t.run(args);
        r.ok();
        assert!(!r.stdout.contains('\u{1b}'), "{}", r.transcript());
        assert!(
            !r.stdout.lines().any(|l| l.starts_with("Locked until")),
            "a forged line: {}",
            r.transcript()
        );
    }
    let r = t.run(&["status", "alice"]);
    assert!(
        r.stdout
            .contains("from 10.0.0.9\\nLocked until: never\\u{1b}[32m\n"),
        "{}",
        r.stdout
    );
    // JSON stays exact: serde escapes, the reader gets the value as stored.
    let j = t.run(&["status", "alice", "--json"]).ok().json();
    assert_eq!(j["last_success"]["rhost"], forged);
}

#[test]
fn given_policy_names_with_escapes_then_policy_show_and_errors_are_inert() {
    let t = TestDir::new("policy-escapes");
    t.write_policy("version = 1\nrequire_groups = [\"wheel\\u001b[2J\"]\nissuer = \"a\\u202eb\"\n");
    let r = t.run(&["policy", "show"]);
    r.ok();
    assert!(
        !r.stdout.contains('\u{1b}') && !r.stdout.contains('\u{202e}'),
        "{}",
        r.transcript()
    );
    assert!(r.stdout.contains("wheel\\u{1b}[2J"), "{}", r.stdout);
}

/// Runs the CLI with stdout a pipe whose read end is already closed.
fn run_into_closed_pipe(t: &TestDir, args: &[&str]) -> common::Run {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = t
        .cmd(args)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    common::Run::from_output(args, out)
}

#[test]
fn given_stdout_a_closed_pipe_then_no_panic_and_exit_status_1() {
    let t = TestDir::new("broken-pipe");
    t.enrolled("alice", ISSUER);
    t.write_state(
        "alice",
        &format!(
            "version = 1\nfailures = 9\nlocked_until = {}\n",
            now() + 900
        ),
    );
    for args in [
        &["status", "alice"][..],
        &["status", "alice", "--json"],
        &["list"],
        &["policy", "show"],
        &["unlock", "alice"],
        &["--help"],
    ] {
        let r = run_into_closed_pipe(&t, args);
        assert!(
            !r.stderr.contains("panicked") && !r.stderr.contains("backtrace"),
            "{}",
            r.transcript()
        );
        let want = if args == ["--help"] { 0 } else { 1 };
        assert_eq!(r.code, want, "{}", r.transcript());
    }
    // The unlock was done before its report could not be written.
    let st = t.state_text("alice").unwrap();
    assert_eq!(common::toml_value(&st, "failures"), "0", "{st}");
}
