//! Fleet mode (`--store`, SPEC §11) end to end: the real binary against a throwaway PostgreSQL
//! 15 cluster on a unix socket (tests/lib/pg_cluster.rs): `store init` (twice), `store
//! add-host` with a throwaway CA, hosts, settings, enrol/activate/status/unlock/recovery/
//! disable, `doctor`, `store revoke-host`. Root-only (ignored otherwise; without PostgreSQL or
//! the postgres user it prints SKIP and passes). Usage errors need no cluster.

mod common;
#[path = "../../tests/lib/pg_cluster.rs"]
mod pg_cluster;

use common::{Run, TestDir, BIN};
use pam_totp::fleet::{Endpoint, StoreConfig};
use pam_totp::secret::Secret;
use pam_totp::totp::{Generator, Params};
use pg_cluster::{run, Cluster};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

fn cli(store: &Path, t: &TestDir, args: &[&str]) -> Run {
    let out = t
        .cmd(args)
        .env("PAM_TOTP_STORE", store)
        .stdin(Stdio::null())
        .output()
        .expect("run pam-totp");
    Run::from_output(args, out)
}

#[test]
fn store_verbs_without_a_store_or_in_fleet_mode_are_refused() {
    let t = TestDir::new("fleet-usage");
    let r = t.run(&["store", "hosts"]);
    r.fails(2);
    assert!(
        r.stderr.contains("needs --store FILE"),
        "{}",
        r.transcript()
    );
    let missing = t.path("missing.toml");
    let r = cli(&missing, &t, &["import", "oath", "/etc/users.oath"]);
    r.fails(1);
    assert!(
        r.stderr.contains("import works on local records only"),
        "{}",
        r.transcript()
    );
    let r = t.run(&["enroll", "alice", "--local-record"]);
    r.fails(1);
    assert!(
        r.stderr.contains("--local-record is for fleet mode"),
        "{}",
        r.transcript()
    );
    let r = cli(&missing, &t, &["policy", "throttle", "--attempts", "3"]);
    r.fails(1);
    assert!(r.stderr.contains("store settings"), "{}", r.transcript());
    let r = cli(&missing, &t, &["status", "alice"]);
    r.fails(1);
    assert!(
        r.stderr
            .contains("cannot use the fleet store's configuration"),
        "{}",
        r.transcript()
    );
    let r = Command::new(BIN)
        .args([
            "--store",
            "/x.toml",
            "store",
            "settings",
            "--max-window",
            "11",
        ])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

/// A throwaway CA in `dir`: ca.crt and ca.key.
fn make_ca(dir: &Path) {
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-subj",
            "/CN=pam-totp test CA",
            "-days",
            "2",
            "-keyout",
        ])
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.crt")));
}

#[test]
#[ignore = "needs root (initdb/pg_ctl as the postgres user, a throwaway PostgreSQL 15 cluster): run by `make test`, or `cargo test -- --include-ignored` as root"]
fn fleet_mode_against_a_throwaway_cluster() {
    if let Some(why) = pg_cluster::unavailable() {
        println!("SKIP fleet: {why}");
        return;
    }
    let cluster = Cluster::start("cli-fleet");
    let t = TestDir::new("fleet");
    let store = cluster.store_toml("postgres");
    let key = cluster.key();
    let key_arg = key.to_str().unwrap();
    let pam = |args: &[&str]| cli(&store, &t, args);

    let r = pam(&["store", "init", "--key-file", key_arg]);
    r.ok();
    let applied: Vec<String> = pam_totp_store::MIGRATIONS
        .iter()
        .map(|(n, name, _)| format!("Applied migration {n} ({name})."))
        .collect();
    assert!(r.stdout.contains(&applied.join("\n")), "{}", r.transcript());
    assert!(
        r.stdout.contains("Key file recorded (key id "),
        "{}",
        r.transcript()
    );
    let r = pam(&["store", "init", "--key-file", key_arg]);
    r.ok();
    assert!(
        r.stdout.starts_with("Nothing to apply"),
        "{}",
        r.transcript()
    );

    // A host, with its certificate and store.toml.
    make_ca(&cluster.root);
    let out = cluster.root.join("h1-files");
    let (ca_crt, ca_key) = (cluster.root.join("ca.crt"), cluster.root.join("ca.key"));
    let r = pam(&[
        "store",
        "add-host",
        "h1",
        "--ca-cert",
        ca_crt.to_str().unwrap(),
        "--ca-key",
        ca_key.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--address",
        "192.0.2.1:5432",
        "--server-name",
        "db.example",
    ]);
    r.ok();
    assert!(r.stdout.contains("Added host h1"), "{}", r.transcript());
    assert!(r.stdout.contains("/etc/pam-totp/"), "{}", r.transcript());
    for (f, m) in [
        ("h1.key", 0o600),
        ("h1.crt", 0o644),
        ("ca.crt", 0o644),
        ("store.toml", 0o600),
    ] {
        assert_eq!(mode(&out.join(f)), m, "{f}");
    }
    assert_eq!(
        std::fs::read(out.join("ca.crt")).unwrap(),
        std::fs::read(&ca_crt).unwrap()
    );
    run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&ca_crt)
        .arg(out.join("h1.crt")));
    let subject = run(Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
        .arg(out.join("h1.crt")));
    assert_eq!(subject, "subject=CN=h1");
    let text = std::fs::read_to_string(out.join("store.toml")).unwrap();
    let c = StoreConfig::parse(&out.join("store.toml"), &text).unwrap();
    assert_eq!((c.role.as_str(), c.database.as_str()), ("h1", "pamtotp"));
    match c.endpoint {
        Endpoint::Tls {
            addresses,
            server_name,
            key,
            ..
        } => {
            assert_eq!(addresses, vec!["192.0.2.1:5432".parse().unwrap()]);
            assert_eq!(server_name.as_deref(), Some("db.example"));
            assert_eq!(key, Path::new("/etc/pam-totp/h1.key"));
        }
        other => panic!("{other:?}"),
    }
    let hosts = pam(&["store", "hosts", "--json"]).ok().json();
    assert_eq!(hosts[0]["name"], "h1");
    assert!(hosts[0]["revoked"].is_null());
    let s = pam(&["store", "settings", "--attempts", "3", "--json"])
        .ok()
        .json();
    assert_eq!(
        (s["attempts"].as_i64(), s["lock_seconds"].as_i64()),
        (Some(3), Some(60))
    );

    // A user: enrolled with the database's key, activated with a code computed here.
    let e = pam(&["enroll", "alice", "--issuer", "corp", "--json"])
        .ok()
        .json();
    assert_eq!(
        (e["user"].as_str(), e["state"].as_str()),
        (Some("alice"), Some("pending"))
    );
    assert_eq!(e["recovery_codes"].as_array().unwrap().len(), 10);
    let secret = Secret::from_base32(e["secret"].as_str().unwrap()).unwrap();
    let gen = Generator::new(&secret, Params::default());
    let code = gen.code_at_step(Params::default().step_at(common::now()));
    let r = pam(&["activate", "alice", &code]);
    r.ok();
    assert!(
        r.stdout.starts_with("Activated: alice"),
        "{}",
        r.transcript()
    );
    let r = pam(&["enroll", "alice"]);
    r.fails(1);
    assert!(
        r.stderr.contains("already has an active record"),
        "{}",
        r.transcript()
    );
    let st = pam(&["status", "alice", "--json"]).ok().json();
    assert_eq!(
        (st["state"].as_str(), st["recovery_codes_left"].as_u64()),
        (Some("active"), Some(10))
    );
    let list = pam(&["list"]).ok().stdout.clone();
    assert!(
        list.lines().nth(1).unwrap().starts_with("alice  active"),
        "{list}"
    );
    let u = pam(&["unlock", "alice", "--json"]).ok().json();
    assert_eq!(
        (u["unlocked"].as_bool(), u["status"]["state"].as_str()),
        (Some(true), Some("active"))
    );
    let r = pam(&["recovery", "alice"]);
    r.ok();
    assert!(
        r.stdout.contains("New recovery codes for alice"),
        "{}",
        r.transcript()
    );
    assert!(
        r.stdout
            .contains("The 10 previous recovery codes no longer work."),
        "{}",
        r.transcript()
    );
    // A break-glass user: the store's key and recovery hashes also as an active local record.
    let e = pam(&[
        "enroll",
        "bob",
        "--issuer",
        "corp",
        "--local-record",
        "--json",
    ])
    .ok()
    .json();
    let record = t.record_text("bob");
    assert!(record.contains("state = \"active\""), "{record}");
    assert!(
        record.contains(&format!("secret = \"{}\"", e["secret"].as_str().unwrap())),
        "{record}"
    );
    assert_eq!(record.matches("\"sha256:").count(), 10, "{record}");
    assert_eq!(mode(&t.users().join("bob.toml")), 0o600);
    let r = pam(&["enroll", "bob", "--local-record"]);
    r.fails(1);
    assert!(
        r.stderr.contains("bob already has an active record"),
        "{}",
        r.transcript()
    );
    assert_eq!(
        t.record_text("bob"),
        record,
        "refused before anything was written"
    );
    let st = pam(&["status", "bob", "--json"]).ok().json();
    assert_eq!(st["state"].as_str(), Some("pending"));

    let d = pam(&["disable", "alice", "--json"]).ok().json();
    assert_eq!(d["disabled"], true);
    let r = pam(&["status", "alice"]);
    assert!(
        r.ok().stdout.contains("none (no record in the store)"),
        "{}",
        r.transcript()
    );

    // doctor: the socket (no TLS), the connection and the clock.
    let r = pam(&["doctor"]);
    for want in [
        "Fleet store ",
        "no TLS",
        ".s.PGSQL.5432 answered: connected in ",
        "this host's clock is ",
        "the primary (not in recovery)",
        "no synchronous standby attached",
    ] {
        let want = want.replace("s ahead of", "");
        assert!(
            r.stdout.contains(want.as_str()),
            "{want}: {}",
            r.transcript()
        );
    }

    let r = pam(&["store", "revoke-host", "h1"]);
    r.ok();
    assert!(r.stdout.contains("Revoked host h1"), "{}", r.transcript());
    assert!(r.stdout.contains("CRL"), "{}", r.transcript());
    let hosts = pam(&["store", "hosts", "--json"]).ok().json();
    assert!(hosts[0]["revoked"].is_string());
}
