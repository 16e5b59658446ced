//! End to end against a throwaway PostgreSQL 15 cluster (as `tests/fleet/lib.sh` makes one:
//! initdb/pg_ctl run as the postgres user, a unix socket in a temp dir, no TCP, trust): the
//! admin API sets the store up (`init`, `add_host`, `enrol`, `activate`), then the module's
//! [`call`] asks as a host — enrolment, a right code, the same code again, a wrong code, a
//! recovery code — and no thread and no fd outlives a call. TLS, failover and the network
//! are `tests/fleet/`'s.
//!
//! The cluster is tests/lib/pg_cluster.rs's. Needs root and PostgreSQL 15; ignored otherwise
//! (run by `cargo test -- --include-ignored` as root). Without PostgreSQL or the postgres user
//! it prints SKIP and passes.

use pam_totp::fleet::wire::{Call, Request, Response};
use pam_totp::fleet::{Outcome, StoreConfig};
use pam_totp::names::UserName;
use pam_totp::next_login::Enrolment;
use pam_totp::secret::Secret;
use pam_totp::totp::{Generator, Params};
use pam_totp_store::{call, pam_totp_store_v1, probe, Admin, SettingsChange, MIGRATIONS};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

#[path = "../../tests/lib/pg_cluster.rs"]
mod pg_cluster;

use pg_cluster::Cluster;

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// [`call`], checking that it leaves no thread and no fd behind.
fn module_call(config: &Path, c: Call) -> Response {
    let (threads, fds) = (count("/proc/self/task"), count("/proc/self/fd"));
    let r = call(&Request {
        config: config.to_path_buf(),
        owner: 0,
        remaining: Duration::from_millis(3000),
        call: c,
    });
    assert_eq!(
        count("/proc/self/task"),
        threads,
        "a thread outlived the call"
    );
    assert_eq!(count("/proc/self/fd"), fds, "an fd outlived the call");
    r
}

fn check(config: &Path, user: &UserName, answer: &str) -> pam_totp::fleet::CheckResult {
    match module_call(
        config,
        Call::Check {
            user: user.clone(),
            answer: Some(Zeroizing::new(answer.to_string())),
            rhost: Some("192.0.2.7".into()),
            window: 1,
            shown_at: 0,
        },
    ) {
        Response::Check(r) => r,
        other => panic!("check: {other:?}"),
    }
}

#[test]
#[ignore = "needs root (initdb/pg_ctl as the postgres user, a throwaway PostgreSQL 15 cluster): run `cargo test -p pam-totp-store -- --include-ignored` as root"]
fn given_a_cluster_then_admin_sets_up_and_the_module_call_judges_codes() {
    if let Some(why) = pg_cluster::unavailable() {
        println!("SKIP root_cluster: {why}");
        return;
    }
    let cluster = Cluster::start("store-it");

    // --- admin: init (twice: idempotent), a host, settings, alice enrolled and activated ---
    let admin_cfg = StoreConfig::load(&cluster.store_toml("postgres"), 0).unwrap();
    let mut admin = Admin::connect(&admin_cfg, 0).unwrap();
    let first = admin.init(Some(&cluster.key())).unwrap();
    assert_eq!(
        first.applied,
        MIGRATIONS.iter().map(|m| m.0).collect::<Vec<_>>()
    );
    assert_eq!(first.key_id.as_deref().map(str::len), Some(16));
    let again = admin.init(Some(&cluster.key())).unwrap();
    assert!(
        again.applied.is_empty() && again.key_id.is_none(),
        "{again:?}"
    );
    assert!(admin.add_host("host-a").unwrap());
    assert!(!admin.add_host("host-a").unwrap());
    assert_eq!(admin.hosts().unwrap()[0].name, "host-a");
    let s = admin
        .set_settings(SettingsChange {
            attempts: Some(3),
            ..SettingsChange::default()
        })
        .unwrap();
    assert_eq!((s.attempts, s.lock_seconds), (3, 60));
    assert_eq!(admin.settings().unwrap(), s);
    let info = admin.server_info().unwrap();
    assert!(
        info.version.starts_with("PostgreSQL 15"),
        "{}",
        info.version
    );
    assert!(!info.in_recovery);
    assert_eq!(info.sync_standbys, Some(vec![]));

    let alice = UserName::new("alice").unwrap();
    let key: Vec<u8> = (1..=20).collect();
    let recovery = pam_totp::recovery::generate(1).unwrap();
    let entries = vec![pam_totp::recovery::hash(&recovery[0]).unwrap()];
    let e = admin
        .enrol(&alice, Some(&key), "SHA1", 6, 30, "test", &entries, false)
        .unwrap();
    assert!(e.secret.is_none() && !e.replaces_active);
    let refused = admin
        .enrol(&alice, Some(&key), "SHA1", 6, 30, "test", &entries, false)
        .map(|_| ());
    assert_eq!(refused, Ok(()), "a pending record is replaced");
    let gen = Generator::new(&Secret::from_bytes(key.clone()).unwrap(), Params::default());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let step = Params::default().step_at(now);
    let a = admin
        .activate(&alice, &gen.code_at_step(step), None)
        .unwrap();
    assert_eq!(a.outcome, "activated", "{a:?}");
    let err = admin
        .enrol(&alice, None, "SHA1", 6, 30, "test", &entries, false)
        .unwrap_err();
    assert!(err.0.contains("already has an active record"), "{err}");

    // --- the module's call, as host-a ---
    let host = cluster.store_toml("host-a");
    match module_call(
        &host,
        Call::Enrolment {
            user: alice.clone(),
        },
    ) {
        Response::Enrolment(e) => assert_eq!((e.enrolment, e.digits), (Enrolment::Active, 6)),
        other => panic!("enrolment: {other:?}"),
    }
    let next = gen.code_at_step(step + 1);
    let r = check(&host, &alice, &next);
    assert_eq!((r.outcome, r.step), (Outcome::Accepted, step + 1), "{r:?}");
    let r = check(&host, &alice, &next);
    assert_eq!(
        (r.outcome, r.last_step),
        (Outcome::Replay, step + 1),
        "{r:?}"
    );
    let wrong = (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| gen.matching_step(c, now, 3).is_none())
        .unwrap();
    let r = check(&host, &alice, &wrong);
    assert_eq!((r.outcome, r.failures), (Outcome::Wrong, 1), "{r:?}");
    let r = check(&host, &alice, &recovery[0]);
    assert_eq!(
        (r.outcome, r.recovery_left),
        (Outcome::AcceptedRecovery, 0),
        "{r:?}"
    );

    // The C entry point, as pam_totp.so calls it.
    let req = Request {
        config: host.clone(),
        owner: 0,
        remaining: Duration::from_millis(3000),
        call: Call::Enrolment {
            user: UserName::new("nobody-here").unwrap(),
        },
    }
    .encode();
    let mut buf = vec![0u8; pam_totp::fleet::wire::MAX_RESPONSE];
    let mut len = 0usize;
    // SAFETY: valid buffers of the given lengths.
    let rc = unsafe {
        pam_totp_store_v1(
            req.as_ptr(),
            req.len(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut len,
        )
    };
    assert_eq!(rc, 0);
    match Response::decode(&buf[..len]).unwrap() {
        Response::Enrolment(e) => assert_eq!(e.enrolment, Enrolment::None),
        other => panic!("ffi: {other:?}"),
    }

    // A host role may not use the admin functions; doctor's probe works with it.
    let host_cfg = StoreConfig::load(&host, 0).unwrap();
    let mut as_host = Admin::connect(&host_cfg, 0).unwrap();
    let denied = as_host.status(None).unwrap_err();
    assert!(denied.0.contains("permission denied"), "{denied}");
    let p = probe(&host_cfg, 0).unwrap();
    assert!((p.db_time - now as f64).abs() < 60.0, "{p:?}");

    // An offline report (migration 002): a far-future step is clamped to the next step.
    let report = pam_totp::store::OfflineReport {
        last_step: Some(step + 1000),
        burned: vec![entries[0].clone()],
    };
    let reported = Call::ReportOffline {
        user: alice.clone(),
        report,
    };
    match module_call(&host, reported) {
        Response::Reported(r) => {
            assert!(r.applied_step.is_some_and(|s| s <= step + 2), "{r:?}");
            assert_eq!(r.burned, 0, "the code was burned online already");
        }
        other => panic!("report_offline: {other:?}"),
    }
    let applied = admin.status(Some(&alice)).unwrap()[0].last_step;

    // --- admin again: status, unlock, disable ---
    let st = admin.status(Some(&alice)).unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(
        (st[0].status.as_str(), st[0].failures, st[0].recovery_left),
        ("active", 0, 0)
    );
    assert_eq!(st[0].last_success_host.as_deref(), Some("host-a"));
    assert_eq!(st[0].last_step, applied, "{st:?}");
    let u = admin.unlock(&alice, false).unwrap();
    assert_eq!(u.previous_last_step, st[0].last_step);
    assert!(admin.disable(&alice).unwrap());
    assert!(!admin.disable(&alice).unwrap());
    match module_call(
        &host,
        Call::Enrolment {
            user: alice.clone(),
        },
    ) {
        Response::Enrolment(e) => assert_eq!(e.enrolment, Enrolment::None),
        other => panic!("enrolment after disable: {other:?}"),
    }
    drop(admin);
    drop(as_host);

    // Failures leave nothing behind either: no server on the socket; a socket that never
    // answers (the deadline cuts the call short).
    let none = cluster.store_toml_at("host-a", &cluster.root, 5999);
    match module_call(
        &none,
        Call::Enrolment {
            user: alice.clone(),
        },
    ) {
        Response::Failed(e) => assert!(e.0.contains(".s.PGSQL.5999: "), "{e}"),
        other => panic!("no server: {other:?}"),
    }
    let _silent =
        std::os::unix::net::UnixListener::bind(cluster.root.join(".s.PGSQL.5998")).unwrap();
    let silent = cluster.store_toml_at("host-a", &cluster.root, 5998);
    let started = std::time::Instant::now();
    let r = call(&Request {
        config: silent.clone(),
        owner: 0,
        remaining: Duration::from_millis(300),
        call: Call::Enrolment {
            user: alice.clone(),
        },
    });
    assert!(matches!(r, Response::Failed(_)), "{r:?}");
    assert!(started.elapsed() < Duration::from_millis(800));
    match module_call(&silent, Call::Enrolment { user: alice }) {
        Response::Failed(e) => assert!(e.0.contains("timeout"), "{e}"),
        other => panic!("silent: {other:?}"),
    }
}
