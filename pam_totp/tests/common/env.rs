//! The environment (root check, module path, harness binary) and the per-test sandbox
//! (`TestEnv`): temp dir, state dir, PAM config, syslog socket, logins.

use super::*;
use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Environment: root check, module path, harness binary
// ---------------------------------------------------------------------------

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate dir has a parent")
        .to_path_buf()
}

pub fn is_root() -> bool {
    // /proc/self is owned by the effective uid of the process looking at it.
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

pub fn module_so() -> &'static Path {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        let path = match std::env::var_os("PAM_TOTP_SO") {
            Some(p) => PathBuf::from(p),
            None => {
                // The cdylib cargo built with this test: target/<profile>/deps/
                // holds both; a plain `cargo build` uplifts it to target/<profile>/.
                let exe = std::env::current_exe().ok();
                let deps = exe.as_deref().and_then(Path::parent);
                [
                    deps.map(|d| d.join("libpam_totp.so")),
                    deps.and_then(Path::parent)
                        .map(|p| p.join("libpam_totp.so")),
                ]
                .into_iter()
                .flatten()
                .find(|p| p.is_file())
                .unwrap_or_else(|| workspace_root().join("target/release/libpam_totp.so"))
            }
        };
        assert!(
            path.is_file(),
            "\n\nPAM module not found at {}.\nBuild it first (`cargo build --release -p pam_totp`, \
             or `make test`), or point PAM_TOTP_SO at the .so to test.\n",
            path.display()
        );
        path
    })
}

/// Compiles tests/pam-harness/harness.c once (cached by source hash).
pub fn harness_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = workspace_root().join("tests/pam-harness/harness.c");
        let text = fs::read(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
        let mut h = DefaultHasher::new();
        text.hash(&mut h);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("pam-harness")
            .join(format!("{:016x}", h.finish()));
        // Named plainly "harness": it is the syslog ident of the lines we capture.
        let bin = dir.join("harness");
        if bin.is_file() {
            return bin;
        }
        fs::create_dir_all(&dir).expect("create harness dir");
        let tmp = dir.join(format!("harness.tmp.{}", std::process::id()));
        let out = Command::new("gcc")
            .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-lpam")
            .output()
            .unwrap_or_else(|e| panic!("cannot run gcc ({e}); run tests/deps.sh as root"));
        assert!(
            out.status.success(),
            "compiling {} failed (is libpam0g-dev installed? run tests/deps.sh):\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        fs::rename(&tmp, &bin).expect("install harness binary");
        bin
    })
}

pub fn sandbox_script() -> PathBuf {
    workspace_root().join("tests/lib/sandbox.sh")
}

// ---------------------------------------------------------------------------
// The per-test sandbox: temp dir, state dir, PAM config, syslog socket
// ---------------------------------------------------------------------------

pub struct TestEnv {
    pub root: PathBuf,
    pub state: PathBuf,
    pub users: PathBuf,
    pub pamd: PathBuf,
    pub log_path: PathBuf,
    pub log: UnixDatagram,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub seen_logs: Mutex<usize>,
    pub stop: Arc<AtomicBool>,
    pub reader: Option<thread::JoinHandle<()>>,
    pub rhost: Option<String>,
    /// The `policy=` option of the stacks `pam` and `pam_observe_ignore` write.
    pub policy: Mutex<PathBuf>,
    /// `src:dst` bind mounts (sandbox.sh `EXTRA_BINDS`) for every login.
    pub binds: Mutex<Vec<String>>,
    /// A command line that runs the harness (appended to it) inside the sandbox: the caller's
    /// limits and signal dispositions (`prlimit`, `setpriv`, a shell's `trap`). Empty: none.
    pub launcher: Mutex<Vec<String>>,
}

impl TestEnv {
    /// None (after printing why) when the tests cannot run here: not root.
    pub fn new(name: &str) -> Option<TestEnv> {
        // These tests are #[ignore]d for runs without root; one that is asked for anyway
        // fails rather than pass having run nothing.
        assert!(
            is_root(),
            "{name}: the PAM-level tests need root (records must be root-owned)"
        );
        // Resolve these first so a missing .so or compiler is reported clearly.
        module_so();
        harness_bin();

        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let root = PathBuf::from(format!(
            "/tmp/pam-totp-test.{name}.{}.{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir(&root).expect("create test dir");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod test dir");
        let state = root.join("state");
        let users = state.join("users");
        let pamd = root.join("pam.d");
        for (dir, mode) in [(&state, 0o700), (&users, 0o700), (&pamd, 0o755)] {
            fs::create_dir(dir).expect("create dir");
            fs::set_permissions(dir, fs::Permissions::from_mode(mode)).expect("chmod dir");
        }
        let no_policy = root.join("no-policy.toml");
        let log_path = root.join("log");
        let log = UnixDatagram::bind(&log_path).expect("bind syslog socket");
        log.set_nonblocking(true).expect("nonblocking socket");

        // The senders block once 10 datagrams are queued (net.unix.max_dgram_qlen),
        // so a reader keeps draining while logins run. It holds the lock while it
        // drains, so a drain by the test thread after a login sees every datagram.
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let sock = log.try_clone().expect("clone socket");
            let logs = Arc::clone(&logs);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    drain(&sock, &logs);
                    thread::sleep(Duration::from_millis(5));
                }
            })
        };

        let env = TestEnv {
            root,
            state,
            users,
            pamd,
            log_path,
            log,
            logs,
            seen_logs: Mutex::new(0),
            stop,
            reader: Some(reader),
            rhost: Some(RHOST.to_string()),
            policy: Mutex::new(no_policy),
            binds: Mutex::new(Vec::new()),
            launcher: Mutex::new(Vec::new()),
        };
        symlink(module_so(), env.module()).expect("symlink the module");
        // libpam also reads "other"; a deny-all fallback keeps its logs quiet.
        write_file(
            &env.pamd.join("other"),
            b"auth required pam_deny.so\naccount required pam_deny.so\n",
            0o644,
        );
        env.pam("");
        Some(env)
    }

    pub fn record_path(&self, user: &str) -> PathBuf {
        self.users.join(format!("{user}.toml"))
    }

    pub fn state_path(&self, user: &str) -> PathBuf {
        self.users.join(format!("{user}.state"))
    }

    pub fn write_record(&self, rec: &Record) -> PathBuf {
        let path = self.record_path(&rec.user);
        write_file(&path, rec.toml().as_bytes(), 0o600);
        path
    }

    pub fn write_state(&self, user: &str, text: &str) -> PathBuf {
        let path = self.state_path(user);
        write_file(&path, text.as_bytes(), 0o600);
        path
    }

    /// The stack `auth required <so> dir=<state> policy=<none> OPTIONS`.
    pub fn pam(&self, options: &str) {
        self.pam_stack(&format!(
            "auth required {} {} {options}\n",
            self.module().display(),
            self.base_options()
        ));
    }

    /// A stack that shows whether the module itself returned PAM_IGNORE: then
    /// pam_echo prints IGNORED_MARK and pam_permit lets the stack succeed.
    pub fn pam_observe_ignore(&self, options: &str) {
        self.pam_stack(&format!(
            "auth [success=done ignore=ignore default=die] {} {} {options}\n\
             auth required pam_echo.so {IGNORED_MARK}\n\
             auth required pam_permit.so\n",
            self.module().display(),
            self.base_options()
        ));
    }

    /// `<tmp>/pam_totp.so`, a symlink to the module under test, so that its
    /// syslog lines carry the installed name (`pam_totp(SERVICE:auth): ...`).
    pub fn module(&self) -> PathBuf {
        self.root.join("pam_totp.so")
    }

    /// `dir=` the test's state dir and `policy=` a file that does not exist
    /// ("nobody required") unless `use_policy` named another, so the host's
    /// /etc/pam-totp never matters.
    pub fn base_options(&self) -> String {
        format!(
            "dir={} policy={}",
            self.state.display(),
            self.policy.lock().expect("policy lock").display()
        )
    }

    /// Makes `pam` and `pam_observe_ignore` pass `policy=path` (call them after this).
    pub fn use_policy(&self, path: &Path) {
        *self.policy.lock().expect("policy lock") = path.to_path_buf();
    }

    /// Binds `src` over `dst` inside the sandbox of every later login; the host's
    /// `dst` is not touched.
    pub fn bind(&self, src: &Path, dst: &str) {
        let src = src.display().to_string();
        assert!(
            !src.contains([':', ' ']) && !dst.contains([':', ' ']),
            "bind paths must not contain ':' or spaces: {src} {dst}"
        );
        self.binds
            .lock()
            .expect("binds lock")
            .push(format!("{src}:{dst}"));
    }

    pub fn pam_stack(&self, text: &str) {
        write_file(&self.pamd.join(SERVICE), text.as_bytes(), 0o644);
    }

    /// `program` run by sandbox.sh with this test's /dev/log and bind mounts.
    pub fn sandboxed(&self, program: &Path) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(sandbox_script())
            .arg(program)
            .env("SYSLOG_SOCKET", &self.log_path)
            .env_remove("EXTRA_BINDS")
            .env_remove("EXTRA_RO_BINDS")
            .env_remove("EXTRA_TMPFS");
        let binds = self.binds.lock().expect("binds lock");
        if !binds.is_empty() {
            cmd.env("EXTRA_BINDS", binds.join(" "));
        }
        cmd
    }

    pub fn command(&self, user: &str) -> Command {
        let launcher = self.launcher.lock().expect("launcher lock").clone();
        let mut cmd = match launcher.split_first() {
            Some((program, args)) => {
                let mut cmd = self.sandboxed(Path::new(program));
                cmd.args(args).arg(harness_bin());
                cmd
            }
            None => self.sandboxed(harness_bin()),
        };
        cmd.arg(&self.pamd)
            .arg(SERVICE)
            .arg(user)
            .env_remove("PAM_RHOST")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(rhost) = &self.rhost {
            cmd.env("PAM_RHOST", rhost);
        }
        cmd
    }

    /// Starts a login of `user` driven step by step (see [`Session`]).
    pub fn start(&self, user: &str) -> Session {
        let started = Instant::now();
        let mut child = self.command(user).spawn().expect("spawn sandbox");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let out_reader = thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                        }
                        let line = String::from_utf8_lossy(&buf).into_owned();
                        if tx.send((line, Instant::now())).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let err_reader = thread::spawn(move || {
            let mut v = Vec::new();
            let _ = stderr.read_to_end(&mut v);
            v
        });
        Session {
            user: user.to_string(),
            child,
            stdin: Some(stdin),
            rx,
            out_reader: Some(out_reader),
            err_reader: Some(err_reader),
            lines: Vec::new(),
            started,
            prompted: None,
            answered: None,
            result_at: None,
        }
    }

    /// One login of `user`, answering prompts with `answers` in order.
    pub fn login(&self, user: &str, answers: &[&str]) -> Outcome {
        let mut input = Vec::new();
        for a in answers {
            input.extend_from_slice(a.as_bytes());
            input.push(b'\n');
        }
        self.login_raw(user, &input)
    }

    /// One login with `input` as the harness's whole stdin (one answer per line).
    pub fn login_raw(&self, user: &str, input: &[u8]) -> Outcome {
        let mut child = self.command(user).spawn().expect("spawn sandbox");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        let writer = thread::spawn(move || {
            // The harness may exit without reading everything; that is fine.
            let _ = stdin.write_all(&input);
        });
        let mut outcome = finish(child, Vec::new());
        let _ = writer.join();
        outcome.logs = self.new_logs();
        if std::env::var_os("PAM_TOTP_TEST_VERBOSE").is_some() {
            eprintln!("--- login {user:?}\n{}", outcome.describe());
        }
        outcome
    }

    /// Syslog lines that arrived since the last call.
    pub fn new_logs(&self) -> Vec<String> {
        drain(&self.log, &self.logs);
        let all = self.logs.lock().expect("logs lock");
        let mut seen = self.seen_logs.lock().expect("seen lock");
        let fresh = all[*seen..].to_vec();
        *seen = all.len();
        fresh
    }

    pub fn all_logs(&self) -> Vec<String> {
        drain(&self.log, &self.logs);
        self.logs.lock().expect("logs lock").clone()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if thread::panicking() || std::env::var_os("PAM_TOTP_KEEP_TMP").is_some() {
            eprintln!("kept test dir {}", self.root.display());
        } else {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}
