//! The NSS fixture shared by `pam_policy.rs` and `pam_policy_enrol.rs`: a `TestEnv`
//! whose sandbox sees /etc/passwd and /etc/group copies extended with the fixture
//! users and groups (see the table in `pam_policy.rs`), the host's files guarded, and
//! the assertions on one login that both files use.
//!
//! Each test file includes it with `#[path]` and uses only part of it.
#![allow(dead_code)]

use crate::common::*;
use std::fs;
use std::ops::Deref;
use std::path::PathBuf;
use std::process::Command;
use std::thread;

/// The default prompt as the harness prints it.
pub const PROMPT: &str = "PROMPT_ECHO_OFF:Verification code: ";
/// A user no NSS source knows (also dropped from the sandbox's copies).
pub const UNKNOWN: &str = "mallory";
pub const DAY: u64 = 86_400;

/// Lines added to the sandbox's /etc/passwd.
pub const FIXTURE_PASSWD: &str = "\
alice:x:61001:61001:alice (wheel as supplementary group):/nonexistent:/usr/sbin/nologin
bob:x:61002:61102:bob (ops as primary group):/nonexistent:/usr/sbin/nologin
carol:x:61003:61003:carol (no special group):/nonexistent:/usr/sbin/nologin
svc:x:61004:61004:svc (robots, an exempt group):/nonexistent:/usr/sbin/nologin
";
/// Lines added to the sandbox's /etc/group. `ops` lists no members: bob is in it
/// only through his primary gid.
pub const FIXTURE_GROUP: &str = "\
alice:x:61001:
carol:x:61003:
svc:x:61004:
wheel:x:61101:alice
ops:x:61102:
robots:x:61103:svc
";
/// Names and ids of the fixture: host entries that use any of them are left out
/// of the copies, so the fixture means the same on every host.
pub const FIXTURE_NAMES: &[&str] = &[
    "alice", "bob", "carol", "svc", "mallory", "wheel", "ops", "robots",
];
pub const FIXTURE_IDS: &[&str] = &[
    "61001", "61002", "61003", "61004", "61101", "61102", "61103",
];

// ---------------------------------------------------------------------------
// The fixture: a TestEnv with NSS users and groups, and the host's files guarded
// ---------------------------------------------------------------------------

pub fn sha256_of(path: &str) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {path} failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

/// The host's /etc/passwd and /etc/group with their checksums at the start.
pub struct HostFiles(Vec<(&'static str, String)>);

impl HostFiles {
    pub fn snapshot() -> Self {
        HostFiles(
            ["/etc/passwd", "/etc/group"]
                .into_iter()
                .map(|p| (p, sha256_of(p)))
                .collect(),
        )
    }

    #[track_caller]
    pub fn assert_untouched(&self) {
        for (path, before) in &self.0 {
            assert_eq!(
                &sha256_of(path),
                before,
                "the host's {path} changed during the test"
            );
        }
    }
}

/// The host's file `host` without entries whose name (field 1) or an id (the
/// `id_fields`) is one of the fixture's, followed by the fixture's lines.
pub fn nss_copy(host: &str, fixture: &str, id_fields: &[usize]) -> String {
    let mut out = String::new();
    for line in host.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        let clash = FIXTURE_NAMES.contains(&fields[0])
            || id_fields
                .iter()
                .any(|&i| fields.get(i).is_some_and(|f| FIXTURE_IDS.contains(f)));
        if !clash {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(fixture);
    out
}

pub struct Fixture {
    pub env: TestEnv,
    pub host: HostFiles,
}

impl Deref for Fixture {
    type Target = TestEnv;
    fn deref(&self) -> &TestEnv {
        &self.env
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if !thread::panicking() {
            self.host.assert_untouched();
        }
    }
}

impl Fixture {
    /// None (after a notice) when the tests cannot run here.
    pub fn new(name: &str) -> Option<Fixture> {
        let host = HostFiles::snapshot();
        let env = TestEnv::new(name)?;
        for (file, fixture, id_fields) in [
            ("passwd", FIXTURE_PASSWD, &[2usize, 3][..]),
            ("group", FIXTURE_GROUP, &[2usize][..]),
        ] {
            let host_path = format!("/etc/{file}");
            let text = fs::read_to_string(&host_path).expect("read host NSS file");
            let copy = env.root.join(file);
            write_file(&copy, nss_copy(&text, fixture, id_fields).as_bytes(), 0o644);
            env.bind(&copy, &host_path);
        }
        let f = Fixture { env, host };
        f.pam_observe_ignore("");
        Some(f)
    }

    /// Writes `text` as the policy (root, 0644), names it in `policy=` and rewrites
    /// the stack.
    pub fn policy(&self, text: &str) -> PathBuf {
        let path = self.root.join("policy.toml");
        write_file(&path, text.as_bytes(), 0o644);
        self.use_policy(&path);
        self.pam_observe_ignore("");
        path
    }

    /// An active record for `user`.
    pub fn enrol(&self, user: &str) -> Record {
        let rec = Record::new(user);
        self.write_record(&rec);
        rec
    }
}

#[allow(unused_macros)]
macro_rules! fixture {
    ($name:expr) => {
        match Fixture::new($name) {
            Some(f) => f,
            None => return,
        }
    };
}
#[allow(unused_imports)]
pub(crate) use fixture;

// ---------------------------------------------------------------------------
// Assertions on one login
// ---------------------------------------------------------------------------

pub fn ignored_mark() -> String {
    format!("INFO:{IGNORED_MARK}")
}

pub fn infos(o: &Outcome) -> Vec<&str> {
    o.lines
        .iter()
        .filter_map(|l| l.strip_prefix("INFO:"))
        .filter(|l| *l != IGNORED_MARK)
        .collect()
}

/// The module returned PAM_IGNORE: the stack went on (mark printed, success).
#[track_caller]
pub fn expect_ignored(o: &Outcome) {
    o.expect_result("PAM_SUCCESS");
    assert!(
        o.has_line(&ignored_mark()),
        "expected the module to return PAM_IGNORE\n{}",
        o.describe()
    );
}

/// The module returned PAM_IGNORE without asking or showing anything.
#[track_caller]
pub fn expect_ignored_silently(o: &Outcome) {
    expect_ignored(o);
    assert!(
        o.prompts().is_empty(),
        "no prompt expected\n{}",
        o.describe()
    );
    assert!(infos(o).is_empty(), "no text expected\n{}", o.describe());
}

/// Asked once with the default prompt, nothing else shown, PAM_AUTH_ERR.
#[track_caller]
pub fn expect_denied_after_prompt(o: &Outcome) {
    o.expect_result("PAM_AUTH_ERR");
    assert!(
        o.lines
            .iter()
            .filter(|l| l.starts_with("PROMPT_"))
            .eq([PROMPT]),
        "expected exactly the default prompt\n{}",
        o.describe()
    );
    assert!(infos(o).is_empty(), "no text expected\n{}", o.describe());
    assert!(!o.has_line(&ignored_mark()), "{}", o.describe());
}

/// `YYYY-MM-DD` (UTC) of unix time `t`, by coreutils' `date`.
pub fn utc_date(t: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{t}"), "+%F"])
        .output()
        .expect("run date");
    assert!(out.status.success(), "date failed");
    String::from_utf8(out.stdout)
        .expect("ASCII")
        .trim()
        .to_string()
}
