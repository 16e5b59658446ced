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

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{symlink, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const SERVICE: &str = "totp-test";
pub const RHOST: &str = "192.0.2.10";
/// Options accepted by pam_echo in the "did the module return PAM_IGNORE?" stack.
pub const IGNORED_MARK: &str = "MODULE-RETURNED-IGNORE";
/// How long one harness run may take before the test kills it.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

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
// Time, codes, secrets — all independent of the crate under test
// ---------------------------------------------------------------------------

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// If fewer than `margin` seconds remain in the current time step, sleeps until
/// the next step has begun, so that codes generated now stay at the same
/// offset from "now" while the login runs.
pub fn settle_margin(period: u64, margin: f64) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();
    let remaining = period as f64 - t % period as f64;
    if remaining < margin {
        thread::sleep(Duration::from_secs_f64(remaining + 0.2));
    }
}

pub fn settle(period: u64) {
    settle_margin(period, 4.0);
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf
}

pub fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in data {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((acc >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random base32 secret of `bytes` bytes (20 = 160 bits, as new secrets are).
pub fn new_secret(bytes: usize) -> String {
    base32(&random_bytes(bytes))
}

/// The code `oathtool` computes for `rec` at unix time `t`.
pub fn code_at(rec: &Record, t: u64) -> String {
    let mode = match rec.algorithm {
        "SHA1" => "--totp",
        "SHA256" => "--totp=sha256",
        "SHA512" => "--totp=sha512",
        other => panic!("unknown algorithm {other}"),
    };
    let out = Command::new("oathtool")
        .arg(mode)
        .arg("-b")
        .arg("-d")
        .arg(rec.digits.to_string())
        .arg("-s")
        .arg(format!("{}s", rec.period))
        .arg(format!("--now=@{t}"))
        .arg(&rec.secret)
        .output()
        .unwrap_or_else(|e| panic!("cannot run oathtool ({e}); run tests/deps.sh as root"));
    assert!(
        out.status.success(),
        "oathtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = String::from_utf8(out.stdout).expect("oathtool prints ASCII");
    let code = code.trim().to_string();
    assert_eq!(code.len(), rec.digits as usize, "oathtool printed {code:?}");
    code
}

/// The code for the time step `steps` away from now.
pub fn code_offset(rec: &Record, steps: i64) -> String {
    let t = now() as i64 + steps * rec.period as i64;
    code_at(rec, t as u64)
}

/// A code of the right length that matches no step within ±`span` of now.
pub fn wrong_code(rec: &Record, span: i64) -> String {
    let valid: Vec<String> = (-span..=span).map(|k| code_offset(rec, k)).collect();
    let modulus = 10u64.pow(rec.digits);
    let mut n: u64 = valid[0].parse::<u64>().expect("numeric code") + modulus / 2 + 12_345;
    loop {
        let candidate = format!("{:0width$}", n % modulus, width = rec.digits as usize);
        if !valid.contains(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

/// A recovery code in the SPEC §4 shape, e.g. `4fh7-k2m9-xq3p`.
pub fn new_recovery_code() -> String {
    const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
    let chars: Vec<char> = random_bytes(12)
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    let groups: Vec<String> = chars.chunks(4).map(|c| c.iter().collect()).collect();
    groups.join("-")
}

/// `sha256:<salt-hex>:<hash-hex>` with hash = SHA-256(salt ‖ normalised code),
/// computed by coreutils' sha256sum.
pub fn recovery_entry(code: &str) -> String {
    let salt = random_bytes(16);
    let normalised: String = code
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .collect::<String>()
        .to_lowercase();
    let mut input = salt.clone();
    input.extend_from_slice(normalised.as_bytes());
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&input)
        .expect("feed sha256sum");
    let out = child.wait_with_output().expect("sha256sum output");
    assert!(out.status.success(), "sha256sum failed");
    let digest = String::from_utf8(out.stdout).expect("ASCII");
    let digest = digest
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string();
    assert_eq!(digest.len(), 64);
    format!("sha256:{}:{}", hex(&salt), digest)
}

// ---------------------------------------------------------------------------
// Records (SPEC §2.1), written as text
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Record {
    pub user: String,
    pub state: &'static str,
    pub secret: String,
    pub algorithm: &'static str,
    pub digits: u32,
    pub period: u64,
    pub recovery: Vec<String>,
    /// Extra TOML lines placed before `recovery` (e.g. `replaces_active = true`).
    pub extra: String,
    pub version: u32,
}

impl Record {
    pub fn new(user: &str) -> Self {
        Record {
            user: user.to_string(),
            state: "active",
            secret: new_secret(20),
            algorithm: "SHA1",
            digits: 6,
            period: 30,
            recovery: Vec::new(),
            extra: String::new(),
            version: 1,
        }
    }

    pub fn toml(&self) -> String {
        let recovery: String = self
            .recovery
            .iter()
            .map(|r| format!("  \"{r}\",\n"))
            .collect();
        format!(
            "version = {}\n\
             user = \"{}\"\n\
             state = \"{}\"\n\
             secret = \"{}\"\n\
             algorithm = \"{}\"\n\
             digits = {}\n\
             period = {}\n\
             issuer = \"pam-level-test\"\n\
             created = 2026-11-23T19:00:00Z\n\
             {}\
             recovery = [\n{}]\n",
            self.version,
            self.user,
            self.state,
            self.secret,
            self.algorithm,
            self.digits,
            self.period,
            self.extra,
            recovery
        )
    }
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

/// Everything one login showed.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The harness's stdout, line by line.
    pub lines: Vec<String>,
    pub stderr: String,
    /// The symbolic name of pam_authenticate's result, e.g. `PAM_SUCCESS`.
    pub result: String,
    /// Syslog datagrams received during this login.
    pub logs: Vec<String>,
}

impl Outcome {
    pub fn prompts(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| {
                l.strip_prefix("PROMPT_ECHO_OFF:")
                    .or_else(|| l.strip_prefix("PROMPT_ECHO_ON:"))
            })
            .collect()
    }

    pub fn has_line(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    pub fn logged(&self, needle: &str) -> bool {
        let needle = needle.to_lowercase();
        self.logs.iter().any(|l| l.to_lowercase().contains(&needle))
    }

    pub fn describe(&self) -> String {
        format!(
            "result: {}\nstdout:\n  {}\nstderr: {}\nsyslog:\n  {}",
            self.result,
            self.lines.join("\n  "),
            self.stderr.trim(),
            self.logs.join("\n  ")
        )
    }

    #[track_caller]
    pub fn expect_result(&self, want: &str) -> &Self {
        assert_eq!(self.result, want, "\n{}", self.describe());
        self
    }

    #[track_caller]
    pub fn expect_denied(&self) -> &Self {
        assert!(
            self.result != "PAM_SUCCESS" && self.result != "PAM_IGNORE",
            "expected a denial\n{}",
            self.describe()
        );
        assert!(
            !self.has_line(&format!("INFO:{IGNORED_MARK}")),
            "module returned PAM_IGNORE, expected a denial\n{}",
            self.describe()
        );
        self
    }

    /// Asserts that some syslog line contains one of `words` (case-insensitive).
    #[track_caller]
    pub fn expect_logged(&self, words: &[&str]) -> &Self {
        assert!(
            words.iter().any(|w| self.logged(w)),
            "expected a syslog line containing one of {words:?}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn expect_prompted(&self) -> &Self {
        assert!(
            !self.prompts().is_empty(),
            "expected a prompt\n{}",
            self.describe()
        );
        self
    }
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

/// A login driven line by line: read the conversation up to a prompt, look at
/// it, answer, and so on; `finish` collects the rest. Every read is bounded by
/// `LOGIN_TIMEOUT`.
pub struct Session {
    pub user: String,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<(String, Instant)>,
    out_reader: Option<thread::JoinHandle<()>>,
    err_reader: Option<thread::JoinHandle<Vec<u8>>>,
    /// Every stdout line so far.
    pub lines: Vec<String>,
    pub started: Instant,
    /// When the first prompt arrived.
    pub prompted: Option<Instant>,
    /// When the last answer was written.
    pub answered: Option<Instant>,
    /// When the RESULT line arrived.
    pub result_at: Option<Instant>,
}

impl Session {
    /// Next stdout line, or None at the end of the output; panics after `LOGIN_TIMEOUT`.
    fn next_line(&mut self) -> Option<String> {
        match self.rx.recv_timeout(LOGIN_TIMEOUT) {
            Ok((line, at)) => {
                if line.starts_with("RESULT:") {
                    self.result_at = Some(at);
                }
                if line.starts_with("PROMPT_") && self.prompted.is_none() {
                    self.prompted = Some(at);
                }
                self.lines.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "login of {:?}: no output within {LOGIN_TIMEOUT:?}; so far:\n  {}",
                    self.user,
                    self.lines.join("\n  ")
                );
            }
        }
    }

    /// Reads lines up to and including the next `PROMPT_` line; returns them.
    /// Panics (showing the transcript) if the login ends first.
    pub fn read_until_prompt(&mut self) -> Vec<String> {
        let from = self.lines.len();
        loop {
            match self.next_line() {
                Some(line) if line.starts_with("PROMPT_") => return self.lines[from..].to_vec(),
                Some(_) => {}
                None => panic!(
                    "login of {:?} ended before a prompt:\n  {}",
                    self.user,
                    self.lines.join("\n  ")
                ),
            }
        }
    }

    /// Writes `text` and a newline as the answer to the prompt.
    pub fn answer(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{text}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .expect("answer the prompt");
        self.answered = Some(Instant::now());
    }

    /// Closes stdin (further prompts get EOF), reads the rest and waits for the end.
    pub fn finish(mut self, env: &TestEnv) -> Outcome {
        self.collect(env)
    }

    /// `finish`, and the times from the start to the first prompt and from the
    /// last answer to the RESULT line.
    pub fn finish_timed(mut self, env: &TestEnv) -> (Outcome, Option<Duration>, Option<Duration>) {
        let outcome = self.collect(env);
        let to_prompt = self
            .prompted
            .map(|p| p.saturating_duration_since(self.started));
        (outcome, to_prompt, self.answer_to_result())
    }

    fn collect(&mut self, env: &TestEnv) -> Outcome {
        drop(self.stdin.take());
        while self.next_line().is_some() {}
        let deadline = Instant::now() + LOGIN_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for harness") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("harness did not finish within {LOGIN_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(5));
        };
        if let Some(r) = self.out_reader.take() {
            let _ = r.join();
        }
        let err = self
            .err_reader
            .take()
            .map(|r| r.join().expect("stderr reader"))
            .unwrap_or_default();
        let stderr = String::from_utf8_lossy(&err).into_owned();
        let lines = std::mem::take(&mut self.lines);
        let result = result_of(&lines).unwrap_or_else(|| {
            panic!(
                "harness printed no RESULT line (crashed? exit status {status})\nstdout:\n  {}\nstderr:\n{stderr}",
                lines.join("\n  ")
            )
        });
        let outcome = Outcome {
            lines,
            stderr,
            result,
            logs: env.new_logs(),
        };
        if std::env::var_os("PAM_TOTP_TEST_VERBOSE").is_some() {
            eprintln!("--- login {:?}\n{}", self.user, outcome.describe());
        }
        outcome
    }

    /// From the last answer to the RESULT line (None if never answered).
    pub fn answer_to_result(&self) -> Option<Duration> {
        Some(self.result_at?.saturating_duration_since(self.answered?))
    }
}

/// The symbolic result name of the last `RESULT:` line.
pub fn result_of(lines: &[String]) -> Option<String> {
    lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT:"))
        .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
}

pub fn drain(sock: &UnixDatagram, logs: &Mutex<Vec<String>>) {
    let mut logs = logs.lock().expect("logs lock");
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = sock.recv(&mut buf) {
        logs.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
}

/// Waits (bounded) for a harness run and parses its output; `head` holds
/// stdout lines already read by the caller.
pub fn finish(mut child: Child, head: Vec<String>) -> Outcome {
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + LOGIN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for harness") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("harness did not finish within {LOGIN_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    let out = out_reader.join().expect("stdout reader");
    let err = err_reader.join().expect("stderr reader");
    let mut lines = head;
    lines.extend(String::from_utf8_lossy(&out).lines().map(str::to_string));
    let stderr = String::from_utf8_lossy(&err).into_owned();
    let result = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("RESULT:"))
        .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_else(|| {
            panic!(
                "harness printed no RESULT line (crashed? exit status {status})\nstdout:\n  {}\nstderr:\n{stderr}",
                lines.join("\n  ")
            )
        });
    Outcome {
        lines,
        stderr,
        result,
        logs: Vec::new(),
    }
}

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
