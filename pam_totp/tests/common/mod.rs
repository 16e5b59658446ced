//! Shared helpers of the PAM-level test files (`pam_level.rs`, `pam_policy.rs`): the built
//! `libpam_totp.so` loaded by the real libpam.
//!
//! Every login runs `tests/pam-harness/harness.c` (a tiny, independent PAM
//! application) through `tests/lib/sandbox.sh`, which gives it a private `/dev`
//! whose `/dev/log` is a unix datagram socket owned by the test, so the module's
//! syslog lines can be checked. The PAM stack lives in a private config dir
//! (`pam_start_confdir`), records are written here as plain TOML (SPEC §2.1) and
//! codes come only from `oathtool`, never from the crate under test.
//!
//! Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

mod env;
mod outcome;
mod record;

pub use env::*;
pub use outcome::*;
pub use record::*;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

pub const SERVICE: &str = "totp-test";
pub const RHOST: &str = "192.0.2.10";
/// Options accepted by pam_echo in the "did the module return PAM_IGNORE?" stack.
pub const IGNORED_MARK: &str = "MODULE-RETURNED-IGNORE";
/// How long one harness run may take before the test kills it.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

pub fn write_file(path: &Path, content: &[u8], mode: u32) {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(content).expect("write file");
    // Not subject to the umask this way.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod file");
}

pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `let env = test_env!("name");` — the test's sandbox, or return (after a notice) when
/// the tests cannot run here.
#[allow(unused_macros)]
macro_rules! test_env {
    ($name:expr) => {
        match TestEnv::new($name) {
            Some(env) => env,
            None => return,
        }
    };
}
#[allow(unused_imports)]
pub(crate) use test_env;
