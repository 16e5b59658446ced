//! Logins through the real libpam with helper-1's harness (tests/pam-harness/harness.c, run
//! through tests/lib/sandbox.sh so that the module's syslog lines land on a socket of ours):
//! a private PAM config dir, codes from `oathtool`.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// True when the harness source and the sandbox script exist (helper-1's PAM-level harness).
pub fn harness_available() -> bool {
    workspace_root()
        .join("tests/pam-harness/harness.c")
        .is_file()
        && workspace_root().join("tests/lib/sandbox.sh").is_file()
}

/// Compiles the harness once per source version.
pub fn harness_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = workspace_root().join("tests/pam-harness/harness.c");
        let text = fs::read(&src).unwrap();
        let mut h = DefaultHasher::new();
        text.hash(&mut h);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("cli-pam-harness")
            .join(format!("{:016x}", h.finish()));
        let bin = dir.join("harness");
        if bin.is_file() {
            return bin;
        }
        fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!("harness.tmp.{}", std::process::id()));
        let out = Command::new("gcc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-lpam")
            .output()
            .expect("cannot run gcc; run tests/deps.sh");
        assert!(
            out.status.success(),
            "compiling the harness failed (libpam0g-dev?):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::rename(&tmp, &bin).unwrap();
        bin
    })
}

/// The module to test: `$PAM_TOTP_SO`, else the first of the .so cargo built next to this test
/// binary and target/release/libpam_totp.so that exports the PAM entry points.
pub fn module_so() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PAM_TOTP_SO") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    [
        deps.join("libpam_totp.so"),
        deps.parent()?.join("libpam_totp.so"),
        workspace_root().join("target/release/libpam_totp.so"),
    ]
    .into_iter()
    .find(|p| p.is_file() && exports_pam(p))
}

pub fn exports_pam(so: &Path) -> bool {
    Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(so)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("pam_sm_authenticate"))
        .unwrap_or(true)
}

/// What one login showed.
#[derive(Debug)]
pub struct Login {
    pub lines: Vec<String>,
    pub result: String,
    pub logs: Vec<String>,
}

impl Login {
    pub fn prompted(&self) -> bool {
        self.lines.iter().any(|l| l.starts_with("PROMPT_ECHO"))
    }
    pub fn describe(&self) -> String {
        format!(
            "result {}\n  {}\nsyslog:\n  {}",
            self.result,
            self.lines.join("\n  "),
            self.logs.join("\n  ")
        )
    }
}

/// A private PAM config dir with one service, and a syslog socket.
pub struct PamEnv {
    pub confdir: PathBuf,
    log_path: PathBuf,
    log: UnixDatagram,
}

pub const SERVICE: &str = "cli-test";

impl PamEnv {
    /// `stack` is the service's whole text.
    pub fn new(root: &Path, stack: &str) -> PamEnv {
        let confdir = root.join("pam.d");
        fs::create_dir_all(&confdir).unwrap();
        fs::write(confdir.join("other"), "auth required pam_deny.so\n").unwrap();
        fs::write(confdir.join(SERVICE), stack).unwrap();
        let log_path = root.join("log.sock");
        let _ = fs::remove_file(&log_path);
        let log = UnixDatagram::bind(&log_path).unwrap();
        log.set_nonblocking(true).unwrap();
        PamEnv {
            confdir,
            log_path,
            log,
        }
    }

    /// The stack `auth required pam_totp.so dir=STATE policy=POLICY`, the module linked as
    /// `ROOT/pam_totp.so`.
    pub fn totp(root: &Path, so: &Path, state: &Path, policy: &Path) -> PamEnv {
        let link = root.join("pam_totp.so");
        let _ = fs::remove_file(&link);
        symlink(so, &link).unwrap();
        PamEnv::new(
            root,
            &format!(
                "auth [success=done ignore=ignore default=die] {} dir={} policy={}\n\
                 auth required pam_echo.so MODULE-RETURNED-IGNORE\n\
                 auth required pam_permit.so\n",
                link.display(),
                state.display(),
                policy.display()
            ),
        )
    }

    /// One login of `user` answering the prompts with `answers`, in the sandbox (root only).
    pub fn login(&self, user: &str, answers: &[&str]) -> Login {
        self.login_with(user, answers, &[])
    }

    /// `login` with extra environment for the sandbox (e.g. `EXTRA_RO_BINDS` for a private
    /// /etc/passwd and /etc/group).
    pub fn login_with(&self, user: &str, answers: &[&str], env: &[(&str, &str)]) -> Login {
        let mut cmd = Command::new("bash");
        cmd.arg(workspace_root().join("tests/lib/sandbox.sh"))
            .arg(harness_bin())
            .env("SYSLOG_SOCKET", &self.log_path);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.run(cmd, user, answers)
    }

    /// One login without the sandbox (for modules that do not log much, e.g. pam_oath).
    pub fn login_plain(&self, user: &str, answers: &[&str]) -> Login {
        self.run(Command::new(harness_bin()), user, answers)
    }

    fn run(&self, mut cmd: Command, user: &str, answers: &[&str]) -> Login {
        cmd.arg(&self.confdir)
            .arg(SERVICE)
            .arg(user)
            .env("HARNESS_SETCRED", "0")
            .env("PAM_RHOST", "192.0.2.10")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run the harness");
        let mut input = Vec::new();
        for a in answers {
            input.extend_from_slice(a.as_bytes());
            input.push(b'\n');
        }
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let _ = child.wait();
        let _ = writer.join();
        std::thread::sleep(Duration::from_millis(50));
        let mut logs = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = self.log.recv(&mut buf) {
            logs.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let lines: Vec<String> = out.lines().map(str::to_string).collect();
        let result = lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix("RESULT:"))
            .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no RESULT line:\n{out}\nstderr: {err}"));
        Login {
            lines,
            result,
            logs,
        }
    }
}
