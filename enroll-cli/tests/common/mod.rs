//! Shared test helpers: a private state directory, running the CLI, masking the random parts
//! of its output for golden snapshots, and codes from `oathtool` (never from the crate).
#![allow(dead_code)]

pub mod pam;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const BIN: &str = env!("CARGO_BIN_EXE_pam-totp");

pub fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// `/tmp/pam-totp-cli-test.<name>.<pid>.<n>` (0700) with `state/` and `state/users/` (0700);
/// removed on drop unless the test failed or PAM_TOTP_KEEP_TMP is set.
pub struct TestDir {
    pub root: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let root = PathBuf::from(format!(
            "/tmp/pam-totp-cli-test.{name}.{}.{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&root);
        for d in [root.clone(), root.join("state"), root.join("state/users")] {
            fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        }
        TestDir { root }
    }

    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    pub fn users(&self) -> PathBuf {
        self.root.join("state/users")
    }

    pub fn policy(&self) -> PathBuf {
        self.root.join("policy.toml")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The CLI with `--dir` and `--policy` pointing into this directory.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("PAM_TOTP_DIR", self.state())
            .env("PAM_TOTP_POLICY", self.policy())
            .env_remove("RUST_BACKTRACE")
            .env_remove("COLUMNS")
            .env_remove("LINES")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from_output(args, self.cmd(args).output().expect("run pam-totp"))
    }

    pub fn run_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pam-totp");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        Run::from_output(args, child.wait_with_output().unwrap())
    }

    pub fn write_policy(&self, text: &str) {
        write_file(&self.policy(), text.as_bytes(), 0o644);
    }

    pub fn record_text(&self, user: &str) -> String {
        fs::read_to_string(self.users().join(format!("{user}.toml"))).unwrap()
    }

    /// The base32 secret of `user`'s record, read from the file (SPEC §2.1 is public).
    pub fn secret(&self, user: &str) -> String {
        toml_value(&self.record_text(user), "secret")
    }

    /// Enrols `user` (pending) and activates it with an `oathtool` code; returns the secret.
    pub fn enrolled(&self, user: &str, issuer: &str) -> String {
        self.run(&["enroll", user, "--issuer", issuer, "--qr", "none"])
            .ok();
        let secret = self.secret(user);
        settle(30, 3);
        self.run(&["activate", user, &code(&secret, 0)]).ok();
        secret
    }

    /// Writes `user`'s state file (root:root 0600), either form the module reads.
    pub fn write_state(&self, user: &str, text: &str) {
        write_file(
            &self.users().join(format!("{user}.state")),
            text.as_bytes(),
            0o600,
        );
    }

    /// The user's state as the module reads it (journal or older TOML form), shown in the
    /// TOML form so that tests can look at keys; `None` if there is no state file. Panics on a
    /// state the module would refuse.
    pub fn state_text(&self, user: &str) -> Option<String> {
        let bytes = fs::read(self.users().join(format!("{user}.state"))).ok()?;
        let state = pam_totp::store::State::parse_file(&bytes)
            .unwrap_or_else(|e| panic!("{user}.state does not parse: {e}"));
        Some(state.to_toml())
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("PAM_TOTP_KEEP_TMP").is_some() {
            eprintln!("kept test dir {}", self.root.display());
        } else {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// The value of a `key = "value"` or `key = value` line.
pub fn toml_value(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_else(|| panic!("no key {key} in\n{text}"))
}

pub fn write_file(path: &Path, content: &[u8], mode: u32) {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// One CLI run: arguments, exit status, output.
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(args: &[&str], o: Output) -> Run {
        Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8(o.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(o.stderr).expect("stderr is UTF-8"),
        }
    }

    /// The text a golden snapshot holds.
    pub fn transcript(&self) -> String {
        format!(
            "$ pam-totp {}\nexit: {}\n--- stdout\n{}--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "{}", self.transcript());
        self
    }

    #[track_caller]
    pub fn fails(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "{}", self.transcript());
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}",
                self.transcript()
            )
        })
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits, if fewer than `margin` seconds remain in the current `period`, until the next one.
pub fn settle(period: u64, margin: u64) {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = t.as_secs() % period;
    if period - into <= margin {
        std::thread::sleep(std::time::Duration::from_millis(
            (period - into) * 1000 - u64::from(t.subsec_millis()) + 200,
        ));
    }
}

/// The code `oathtool` computes at unix time `t`.
pub fn oathtool(secret_b32: &str, algorithm: &str, digits: u32, period: u64, t: u64) -> String {
    let mode = match algorithm {
        "SHA1" => "--totp".to_string(),
        other => format!("--totp={}", other.to_lowercase()),
    };
    let out = Command::new("oathtool")
        .args([
            mode.as_str(),
            "-b",
            "-d",
            &digits.to_string(),
            "-s",
            &format!("{period}s"),
            &format!("--now=@{t}"),
            secret_b32,
        ])
        .output()
        .expect("cannot run oathtool (apt-get install oathtool)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// SHA1, 6 digits, 30 s code for `steps` periods from now.
pub fn code(secret_b32: &str, steps: i64) -> String {
    oathtool(
        secret_b32,
        "SHA1",
        6,
        30,
        (now() as i64 + steps * 30) as u64,
    )
}

/// Filters that hide the random and time-dependent parts of the CLI's output.
pub fn filters(t: &TestDir) -> Vec<(String, &'static str)> {
    vec![
        (regex_escape(&t.root.display().to_string()), "[TMP]"),
        // Terminal QR code: lines of half blocks (quiet zone: lines of spaces).
        (r"(?m)^[ ▀▄█]{21,}\n".into(), "[QR]\n"),
        (r"(\[QR\]\n)+".into(), "[QR lines]\n"),
        (r"(Key: +)[A-Z2-7]{4}( [A-Z2-7]{1,4})*".into(), "$1[KEY]"),
        (r"secret=[A-Z2-7]+".into(), "secret=[SECRET]"),
        (r#""secret": "[A-Z2-7]+""#.into(), r#""secret": "[SECRET]""#),
        (r"[2-9a-z]{4}-[2-9a-z]{4}-[2-9a-z]{4}".into(), "[RECOVERY]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ".into(), "[TIME]"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dL".into(), "[LOCALTIME]"),
        (r"(time )?step \d+".into(), "${1}step [STEP]"),
        (r"(activate \S+ )\d{6,8}".into(), "${1}[CODE]"),
    ]
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Asserts `run`'s masked transcript against the golden snapshot `name`.
#[macro_export]
macro_rules! golden {
    ($t:expr, $name:expr, $run:expr) => {{
        let run = &$run;
        let mut settings = insta::Settings::clone_current();
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        for (re, with) in common::filters(&$t) {
            settings.add_filter(&re, with);
        }
        settings.bind(|| insta::assert_snapshot!($name, run.transcript()));
    }};
}

/// What `zbarimg` reads in an image (it must find a code).
pub fn zbarimg(image: &Path) -> String {
    let out = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(image)
        .output()
        .expect("cannot run zbarimg (apt-get install zbar-tools)");
    assert!(
        out.status.success(),
        "zbarimg found no code in {}: {}",
        image.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

/// What an SVG decodes to: rasterised by rsvg-convert, then read by zbarimg.
pub fn zbarimg_svg(t: &TestDir, svg: &Path) -> String {
    let svg_png = t.path("svg.png");
    let st = Command::new("rsvg-convert")
        .arg(svg)
        .arg("-o")
        .arg(&svg_png)
        .status()
        .expect("cannot run rsvg-convert (apt-get install librsvg2-bin)");
    assert!(st.success());
    zbarimg(&svg_png)
}
