//! PAM-level tests: the built `libpam_totp.so` loaded by the real libpam.
//!
//! Every login runs `tests/pam-harness/harness.c` (a tiny, independent PAM
//! application) through `tests/lib/sandbox.sh`, which gives it a private `/dev`
//! whose `/dev/log` is a unix datagram socket owned by the test, so the module's
//! syslog lines can be checked. The PAM stack lives in a private config dir
//! (`pam_start_confdir`), records are written here as plain TOML (SPEC §2.1) and
//! codes come only from `oathtool`, never from the crate under test.
//!
//! Needs root (records must be root-owned) — without root every test prints a
//! notice and passes. The module is `$PAM_TOTP_SO` (as `make test` sets it), else
//! the `.so` cargo built along with this test binary (same profile), else
//! `target/release/libpam_totp.so`.
//!
//! `PAM_TOTP_TEST_VERBOSE=1` prints every login (stdout, syslog) to stderr
//! (use with `-- --nocapture`); `PAM_TOTP_KEEP_TMP=1` keeps the test dirs, which
//! are also kept when a test fails.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{chown, symlink, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SERVICE: &str = "totp-test";
const RHOST: &str = "192.0.2.10";
/// Options accepted by pam_echo in the "did the module return PAM_IGNORE?" stack.
const IGNORED_MARK: &str = "MODULE-RETURNED-IGNORE";
/// How long one harness run may take before the test kills it.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Environment: root check, module path, harness binary
// ---------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate dir has a parent")
        .to_path_buf()
}

fn is_root() -> bool {
    // /proc/self is owned by the effective uid of the process looking at it.
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn module_so() -> &'static Path {
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
fn harness_bin() -> &'static Path {
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

fn sandbox_script() -> PathBuf {
    workspace_root().join("tests/lib/sandbox.sh")
}

// ---------------------------------------------------------------------------
// Time, codes, secrets — all independent of the crate under test
// ---------------------------------------------------------------------------

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// If fewer than `margin` seconds remain in the current time step, sleeps until
/// the next step has begun, so that codes generated now stay at the same
/// offset from "now" while the login runs.
fn settle_margin(period: u64, margin: f64) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();
    let remaining = period as f64 - t % period as f64;
    if remaining < margin {
        thread::sleep(Duration::from_secs_f64(remaining + 0.2));
    }
}

fn settle(period: u64) {
    settle_margin(period, 4.0);
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf
}

fn base32(data: &[u8]) -> String {
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

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random base32 secret of `bytes` bytes (20 = 160 bits, as new secrets are).
fn new_secret(bytes: usize) -> String {
    base32(&random_bytes(bytes))
}

/// The code `oathtool` computes for `rec` at unix time `t`.
fn code_at(rec: &Record, t: u64) -> String {
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
fn code_offset(rec: &Record, steps: i64) -> String {
    let t = now() as i64 + steps * rec.period as i64;
    code_at(rec, t as u64)
}

/// A code of the right length that matches no step within ±`span` of now.
fn wrong_code(rec: &Record, span: i64) -> String {
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
fn new_recovery_code() -> String {
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
fn recovery_entry(code: &str) -> String {
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
struct Record {
    user: String,
    state: &'static str,
    secret: String,
    algorithm: &'static str,
    digits: u32,
    period: u64,
    recovery: Vec<String>,
    /// Extra TOML lines placed before `recovery` (e.g. `replaces_active = true`).
    extra: String,
    version: u32,
}

impl Record {
    fn new(user: &str) -> Self {
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

    fn toml(&self) -> String {
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

struct TestEnv {
    root: PathBuf,
    state: PathBuf,
    users: PathBuf,
    pamd: PathBuf,
    log_path: PathBuf,
    log: UnixDatagram,
    logs: Arc<Mutex<Vec<String>>>,
    seen_logs: Mutex<usize>,
    stop: Arc<AtomicBool>,
    reader: Option<thread::JoinHandle<()>>,
    rhost: Option<String>,
}

/// Everything one login showed.
#[derive(Debug, Clone)]
struct Outcome {
    /// The harness's stdout, line by line.
    lines: Vec<String>,
    stderr: String,
    /// The symbolic name of pam_authenticate's result, e.g. `PAM_SUCCESS`.
    result: String,
    /// Syslog datagrams received during this login.
    logs: Vec<String>,
}

impl Outcome {
    fn prompts(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| {
                l.strip_prefix("PROMPT_ECHO_OFF:")
                    .or_else(|| l.strip_prefix("PROMPT_ECHO_ON:"))
            })
            .collect()
    }

    fn has_line(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    fn logged(&self, needle: &str) -> bool {
        let needle = needle.to_lowercase();
        self.logs.iter().any(|l| l.to_lowercase().contains(&needle))
    }

    fn describe(&self) -> String {
        format!(
            "result: {}\nstdout:\n  {}\nstderr: {}\nsyslog:\n  {}",
            self.result,
            self.lines.join("\n  "),
            self.stderr.trim(),
            self.logs.join("\n  ")
        )
    }

    #[track_caller]
    fn expect_result(&self, want: &str) -> &Self {
        assert_eq!(self.result, want, "\n{}", self.describe());
        self
    }

    #[track_caller]
    fn expect_denied(&self) -> &Self {
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
    fn expect_logged(&self, words: &[&str]) -> &Self {
        assert!(
            words.iter().any(|w| self.logged(w)),
            "expected a syslog line containing one of {words:?}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    fn expect_prompted(&self) -> &Self {
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
    fn new(name: &str) -> Option<TestEnv> {
        if !is_root() {
            eprintln!("SKIPPED {name}: the PAM-level tests need root (records must be root-owned)");
            return None;
        }
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

    fn record_path(&self, user: &str) -> PathBuf {
        self.users.join(format!("{user}.toml"))
    }

    fn state_path(&self, user: &str) -> PathBuf {
        self.users.join(format!("{user}.state"))
    }

    fn write_record(&self, rec: &Record) -> PathBuf {
        let path = self.record_path(&rec.user);
        write_file(&path, rec.toml().as_bytes(), 0o600);
        path
    }

    fn write_state(&self, user: &str, text: &str) -> PathBuf {
        let path = self.state_path(user);
        write_file(&path, text.as_bytes(), 0o600);
        path
    }

    /// The stack `auth required <so> dir=<state> policy=<none> OPTIONS`.
    fn pam(&self, options: &str) {
        self.pam_stack(&format!(
            "auth required {} {} {options}\n",
            self.module().display(),
            self.base_options()
        ));
    }

    /// A stack that shows whether the module itself returned PAM_IGNORE: then
    /// pam_echo prints IGNORED_MARK and pam_permit lets the stack succeed.
    fn pam_observe_ignore(&self, options: &str) {
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
    fn module(&self) -> PathBuf {
        self.root.join("pam_totp.so")
    }

    /// `dir=` the test's state dir and `policy=` a file that does not exist
    /// ("nobody required"), so the host's /etc/pam-totp never matters.
    fn base_options(&self) -> String {
        format!(
            "dir={} policy={}",
            self.state.display(),
            self.root.join("no-policy.toml").display()
        )
    }

    fn pam_stack(&self, text: &str) {
        write_file(&self.pamd.join(SERVICE), text.as_bytes(), 0o644);
    }

    fn command(&self, user: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(sandbox_script())
            .arg(harness_bin())
            .arg(&self.pamd)
            .arg(SERVICE)
            .arg(user)
            .env("SYSLOG_SOCKET", &self.log_path)
            .env_remove("PAM_RHOST")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(rhost) = &self.rhost {
            cmd.env("PAM_RHOST", rhost);
        }
        cmd
    }

    /// One login of `user`, answering prompts with `answers` in order.
    fn login(&self, user: &str, answers: &[&str]) -> Outcome {
        let mut input = Vec::new();
        for a in answers {
            input.extend_from_slice(a.as_bytes());
            input.push(b'\n');
        }
        self.login_raw(user, &input)
    }

    /// One login with `input` as the harness's whole stdin (one answer per line).
    fn login_raw(&self, user: &str, input: &[u8]) -> Outcome {
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
    fn new_logs(&self) -> Vec<String> {
        drain(&self.log, &self.logs);
        let all = self.logs.lock().expect("logs lock");
        let mut seen = self.seen_logs.lock().expect("seen lock");
        let fresh = all[*seen..].to_vec();
        *seen = all.len();
        fresh
    }

    fn all_logs(&self) -> Vec<String> {
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

fn drain(sock: &UnixDatagram, logs: &Mutex<Vec<String>>) {
    let mut logs = logs.lock().expect("logs lock");
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = sock.recv(&mut buf) {
        logs.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
}

/// Waits (bounded) for a harness run and parses its output; `head` holds
/// stdout lines already read by the caller.
fn finish(mut child: Child, head: Vec<String>) -> Outcome {
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

fn write_file(path: &Path, content: &[u8], mode: u32) {
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

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

macro_rules! test_env {
    ($name:expr) => {
        match TestEnv::new($name) {
            Some(env) => env,
            None => return,
        }
    };
}

const PERMISSION_WORDS: &[&str] = &[
    "permission",
    "mode",
    "owner",
    "owned",
    "symlink",
    "link",
    "regular",
    "directory",
    "untrusted",
    "insecure",
    "writable",
    "readable",
];

// ---------------------------------------------------------------------------
// The module as a shared object
// ---------------------------------------------------------------------------

#[test]
fn module_exports_pam_sm_authenticate_and_setcred() {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(module_so())
        .output()
        .expect("run nm (binutils)");
    assert!(out.status.success(), "nm failed");
    let syms = String::from_utf8_lossy(&out.stdout);
    for sym in ["pam_sm_authenticate", "pam_sm_setcred"] {
        assert!(
            syms.lines()
                .any(|l| l.split_whitespace().last() == Some(sym)),
            "{} does not export {sym}:\n{syms}",
            module_so().display()
        );
    }
}

// ---------------------------------------------------------------------------
// Accepting a code once
// ---------------------------------------------------------------------------

#[test]
fn given_current_code_then_login_succeeds() {
    let env = test_env!("current_code");
    let rec = Record::new("alice");
    env.write_record(&rec);
    settle(rec.period);
    let o = env.login("alice", &[&code_offset(&rec, 0)]);
    o.expect_result("PAM_SUCCESS")
        .expect_logged(&["accepted"])
        .expect_logged(&["alice"])
        .expect_logged(&[RHOST]);
    assert_eq!(
        o.prompts(),
        vec!["Verification code: "],
        "default prompt, asked once, echo off\n{}",
        o.describe()
    );
    assert!(
        o.has_line("PROMPT_ECHO_OFF:Verification code: "),
        "{}",
        o.describe()
    );
    assert!(
        o.has_line("SETCRED:PAM_SUCCESS 0"),
        "pam_sm_setcred must return PAM_SUCCESS\n{}",
        o.describe()
    );
    assert!(
        o.stderr.trim().is_empty(),
        "nothing on stderr: {:?}",
        o.stderr
    );
}

#[test]
fn given_replayed_code_then_login_fails() {
    let env = test_env!("replayed_code");
    let rec = Record::new("alice");
    env.write_record(&rec);
    settle(rec.period);
    let code = code_offset(&rec, 0);
    env.login("alice", &[&code]).expect_result("PAM_SUCCESS");
    env.login("alice", &[&code])
        .expect_result("PAM_AUTH_ERR")
        .expect_prompted()
        .expect_logged(&["replay"]);
}

#[test]
fn given_older_step_after_success_then_replay_denied() {
    // A code of an earlier step than the last accepted one is a replay too.
    let env = test_env!("older_step");
    let rec = Record::new("alice");
    env.write_record(&rec);
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 1)])
        .expect_result("PAM_SUCCESS");
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_AUTH_ERR")
        .expect_logged(&["replay"]);
}

#[test]
fn given_replayed_codes_then_they_are_not_counted_as_failures() {
    let env = test_env!("replays_not_counted");
    let rec = Record::new("alice");
    env.write_record(&rec);
    settle_margin(rec.period, 8.0);
    let step = now() / rec.period;
    env.write_state(
        "alice",
        &format!("version = 1\nlast_step = {step}\nfailures = 0\nlocked_until = 0\n"),
    );
    let current = code_offset(&rec, 0);
    for i in 0..6 {
        let o = env.login("alice", &[&current]);
        o.expect_result("PAM_AUTH_ERR").expect_logged(&["replay"]);
        assert!(!o.logged("locked"), "replay #{i} locked\n{}", o.describe());
    }
    env.login("alice", &[&code_offset(&rec, 1)])
        .expect_result("PAM_SUCCESS");
}

// ---------------------------------------------------------------------------
// The window
// ---------------------------------------------------------------------------

#[test]
fn given_code_one_step_ahead_then_accepted_at_window_1() {
    let env = test_env!("one_ahead");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam("window=1");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 1)])
        .expect_result("PAM_SUCCESS");
}

#[test]
fn given_code_one_step_behind_then_accepted_at_window_1() {
    let env = test_env!("one_behind");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam("window=1");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, -1)])
        .expect_result("PAM_SUCCESS");
}

#[test]
fn given_code_two_steps_away_then_denied() {
    // Default window (1): −2 and +2 are outside, and count as wrong codes.
    let env = test_env!("two_away");
    let rec = Record::new("alice");
    env.write_record(&rec);
    for steps in [-2, 2] {
        settle(rec.period);
        env.login("alice", &[&code_offset(&rec, steps)])
            .expect_result("PAM_AUTH_ERR")
            .expect_logged(&["wrong"]);
    }
    // Two failures do not lock: the current code still works.
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

#[test]
fn given_window_0_then_previous_step_denied() {
    let env = test_env!("window_0");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam("window=0");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, -1)])
        .expect_result("PAM_AUTH_ERR");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 1)])
        .expect_result("PAM_AUTH_ERR");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

#[test]
fn given_window_2_then_two_steps_ahead_accepted() {
    let env = test_env!("window_2");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam("window=2");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, -3)])
        .expect_result("PAM_AUTH_ERR");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 2)])
        .expect_result("PAM_SUCCESS");
}

// ---------------------------------------------------------------------------
// Algorithms, digits, period
// ---------------------------------------------------------------------------

#[test]
fn given_sha256_8_digit_record_then_code_accepted() {
    let env = test_env!("sha256_8");
    let mut rec = Record::new("alice");
    rec.algorithm = "SHA256";
    rec.digits = 8;
    rec.secret = new_secret(32);
    env.write_record(&rec);
    settle(rec.period);
    let code = code_offset(&rec, 0);
    assert_eq!(code.len(), 8);
    env.login("alice", &[&code]).expect_result("PAM_SUCCESS");
}

#[test]
fn given_sha512_8_digit_record_then_code_accepted() {
    let env = test_env!("sha512_8");
    let mut rec = Record::new("alice");
    rec.algorithm = "SHA512";
    rec.digits = 8;
    rec.secret = new_secret(64);
    env.write_record(&rec);
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

#[test]
fn given_code_of_another_algorithm_then_denied() {
    let env = test_env!("other_algorithm");
    let mut rec = Record::new("alice");
    rec.algorithm = "SHA256";
    env.write_record(&rec);
    let mut sha1 = rec.clone();
    sha1.algorithm = "SHA1";
    settle(rec.period);
    let (right, wrong) = (code_offset(&rec, 0), code_offset(&sha1, 0));
    if right == wrong {
        eprintln!("SHA1 and SHA256 codes collide this step; nothing to test");
        return;
    }
    env.login("alice", &[&wrong]).expect_result("PAM_AUTH_ERR");
}

#[test]
fn given_period_60_record_then_code_accepted() {
    let env = test_env!("period_60");
    let mut rec = Record::new("alice");
    rec.period = 60;
    env.write_record(&rec);
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

// ---------------------------------------------------------------------------
// Files that must not be trusted (SPEC §2)
// ---------------------------------------------------------------------------

fn denied_for_bad_record(env: &TestEnv, rec: &Record) -> Outcome {
    settle(rec.period);
    let o = env.login("alice", &[&code_offset(rec, 0)]);
    o.expect_denied();
    o
}

#[test]
fn given_world_readable_record_then_denied() {
    let env = test_env!("world_readable");
    let rec = Record::new("alice");
    let path = env.write_record(&rec);
    set_mode(&path, 0o644);
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(PERMISSION_WORDS);
}

#[test]
fn given_group_readable_record_then_denied() {
    let env = test_env!("group_readable");
    let rec = Record::new("alice");
    let path = env.write_record(&rec);
    set_mode(&path, 0o640);
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(PERMISSION_WORDS);
}

#[test]
fn given_symlinked_record_then_denied() {
    let env = test_env!("symlinked");
    let rec = Record::new("alice");
    let real = env.users.join("real-alice.toml");
    write_file(&real, rec.toml().as_bytes(), 0o600);
    symlink(&real, env.record_path("alice")).expect("symlink");
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(PERMISSION_WORDS);
}

#[test]
fn given_foreign_owned_record_then_denied() {
    let env = test_env!("foreign_owned");
    let rec = Record::new("alice");
    let path = env.write_record(&rec);
    chown(&path, Some(65534), Some(65534)).expect("chown");
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(PERMISSION_WORDS);
}

#[test]
fn given_record_is_a_directory_then_denied() {
    let env = test_env!("record_dir");
    let rec = Record::new("alice");
    let path = env.record_path("alice");
    fs::create_dir(&path).expect("mkdir");
    set_mode(&path, 0o700);
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(PERMISSION_WORDS);
}

#[test]
fn given_group_writable_state_dir_then_denied() {
    let env = test_env!("state_dir_gw");
    let rec = Record::new("alice");
    env.write_record(&rec);
    set_mode(&env.state, 0o770);
    denied_for_bad_record(&env, &rec).expect_logged(PERMISSION_WORDS);
}

#[test]
fn given_world_readable_users_dir_then_denied() {
    let env = test_env!("users_dir_wr");
    let rec = Record::new("alice");
    env.write_record(&rec);
    set_mode(&env.users, 0o755);
    denied_for_bad_record(&env, &rec).expect_logged(PERMISSION_WORDS);
}

#[test]
fn given_world_writable_ancestor_dir_then_denied() {
    // <root>/ww/state with <root>/ww world-writable (not sticky); the policy path
    // stays outside ww, so it is the state dir's ancestor check that must refuse.
    let env = test_env!("ancestor_ww");
    let rec = Record::new("alice");
    env.write_record(&rec);
    let ww = env.root.join("ww");
    fs::create_dir(&ww).expect("mkdir ww");
    let state = ww.join("state");
    fs::rename(&env.state, &state).expect("move state dir");
    set_mode(&ww, 0o777);
    env.pam_stack(&format!(
        "auth required {} dir={} policy={}\n",
        env.module().display(),
        state.display(),
        env.root.join("no-policy.toml").display()
    ));
    let o = denied_for_bad_record(&env, &rec);
    set_mode(&ww, 0o755);
    o.expect_logged(PERMISSION_WORDS).expect_logged(&["ww"]);
}

#[test]
fn given_sticky_root_owned_ancestor_dir_then_accepted() {
    // Like /tmp: a root-owned sticky world-writable ancestor is accepted (SPEC §2).
    let env = test_env!("ancestor_sticky");
    let rec = Record::new("alice");
    env.write_record(&rec);
    let sticky = env.root.join("sticky");
    fs::create_dir(&sticky).expect("mkdir sticky");
    let state = sticky.join("state");
    fs::rename(&env.state, &state).expect("move state dir");
    set_mode(&sticky, 0o1777);
    env.pam_stack(&format!(
        "auth required {} dir={} policy={}\n",
        env.module().display(),
        state.display(),
        env.root.join("no-policy.toml").display()
    ));
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

#[test]
fn given_foreign_owned_state_file_then_denied() {
    let env = test_env!("state_foreign");
    let rec = Record::new("alice");
    env.write_record(&rec);
    let path = env.write_state("alice", "version = 1\nfailures = 0\nlocked_until = 0\n");
    chown(&path, Some(65534), Some(65534)).expect("chown");
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(PERMISSION_WORDS);
}

// ---------------------------------------------------------------------------
// Records and state that cannot be parsed (fail closed)
// ---------------------------------------------------------------------------

#[test]
fn given_record_with_unknown_key_then_denied() {
    let env = test_env!("unknown_key");
    let mut rec = Record::new("alice");
    rec.extra = "colour = \"blue\"\n".to_string();
    env.write_record(&rec);
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(&["colour"]);
}

#[test]
fn given_record_of_newer_version_then_denied() {
    let env = test_env!("newer_version");
    let mut rec = Record::new("alice");
    rec.version = 2;
    env.write_record(&rec);
    denied_for_bad_record(&env, &rec)
        .expect_result("PAM_AUTHINFO_UNAVAIL")
        .expect_logged(&["version"]);
}

#[test]
fn given_record_with_bad_base32_secret_then_denied() {
    let env = test_env!("bad_base32");
    let rec = Record::new("alice");
    let mut bad = rec.clone();
    bad.secret = format!("{}0189", &rec.secret[..28]);
    env.write_record(&bad);
    denied_for_bad_record(&env, &rec).expect_result("PAM_AUTHINFO_UNAVAIL");
}

#[test]
fn given_record_with_short_secret_then_denied() {
    // 40 bits: below the 80-bit floor for any record.
    let env = test_env!("short_secret");
    let mut rec = Record::new("alice");
    rec.secret = new_secret(5);
    env.write_record(&rec);
    denied_for_bad_record(&env, &rec).expect_result("PAM_AUTHINFO_UNAVAIL");
}

#[test]
fn given_record_whose_user_key_differs_then_denied() {
    let env = test_env!("user_mismatch");
    let rec = Record::new("bob");
    write_file(&env.record_path("alice"), rec.toml().as_bytes(), 0o600);
    denied_for_bad_record(&env, &rec).expect_result("PAM_AUTHINFO_UNAVAIL");
}

#[test]
fn given_corrupt_state_then_denied() {
    let env = test_env!("corrupt_state");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.write_state("alice", "this is = = not toml\n\0\0\0");
    denied_for_bad_record(&env, &rec).expect_result("PAM_AUTHINFO_UNAVAIL");
}

// ---------------------------------------------------------------------------
// Module options (SPEC §3)
// ---------------------------------------------------------------------------

#[test]
fn given_unknown_module_option_then_denied() {
    let env = test_env!("unknown_option");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam("frobnicate=1");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SERVICE_ERR")
        .expect_logged(&["frobnicate"]);
}

#[test]
fn given_malformed_module_option_then_service_error() {
    let env = test_env!("malformed_option");
    let rec = Record::new("alice");
    env.write_record(&rec);
    for opt in [
        "window=11",
        "window=-1",
        "window=abc",
        "window=",
        "dir=",
        "debug=yes",
    ] {
        env.pam(opt);
        settle(rec.period);
        let o = env.login("alice", &[&code_offset(&rec, 0)]);
        assert_eq!(
            o.result,
            "PAM_SERVICE_ERR",
            "option {opt:?}\n{}",
            o.describe()
        );
    }
}

#[test]
fn given_prompt_option_then_prompt_text_is_used() {
    let env = test_env!("prompt_option");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam("[prompt=One-time code: ]");
    settle(rec.period);
    let o = env.login("alice", &[&code_offset(&rec, 0)]);
    o.expect_result("PAM_SUCCESS");
    assert_eq!(o.prompts(), vec!["One-time code: "], "\n{}", o.describe());
    assert!(
        o.has_line("PROMPT_ECHO_OFF:One-time code: "),
        "{}",
        o.describe()
    );
}

#[test]
fn given_debug_option_then_login_still_works() {
    let env = test_env!("debug_option");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam("debug");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS")
        .expect_logged(&["accepted"]);
}

// ---------------------------------------------------------------------------
// Throttle
// ---------------------------------------------------------------------------

#[test]
fn given_five_wrong_codes_then_user_is_locked() {
    let env = test_env!("five_wrong");
    let rec = Record::new("alice");
    env.write_record(&rec);
    for i in 1..=5 {
        let o = env.login("alice", &[&wrong_code(&rec, 2)]);
        o.expect_result("PAM_AUTH_ERR").expect_prompted();
        assert!(o.logged("wrong"), "failure #{i}\n{}", o.describe());
    }
    settle(rec.period);
    // Locked: still asked (the prompt reveals nothing), then denied unchecked.
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_AUTH_ERR")
        .expect_prompted()
        .expect_logged(&["lock"]);
}

#[test]
fn given_locked_state_then_correct_code_denied_after_prompt() {
    let env = test_env!("prelocked");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.write_state(
        "alice",
        &format!(
            "version = 1\nfailures = 5\nlocked_until = {}\n",
            now() + 600
        ),
    );
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_AUTH_ERR")
        .expect_prompted()
        .expect_logged(&["lock"]);
}

#[test]
fn given_expired_lock_then_correct_code_accepted() {
    let env = test_env!("expired_lock");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.write_state(
        "alice",
        &format!("version = 1\nfailures = 5\nlocked_until = {}\n", now() - 5),
    );
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

#[test]
fn given_success_then_failures_are_reset() {
    let env = test_env!("success_resets");
    let rec = Record::new("alice");
    env.write_record(&rec);
    for _ in 0..4 {
        env.login("alice", &[&wrong_code(&rec, 2)])
            .expect_result("PAM_AUTH_ERR");
    }
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
    // Four more failures would lock if the counter had not been reset.
    for _ in 0..4 {
        env.login("alice", &[&wrong_code(&rec, 2)])
            .expect_result("PAM_AUTH_ERR");
    }
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 1)])
        .expect_result("PAM_SUCCESS");
}

// ---------------------------------------------------------------------------
// Recovery codes (SPEC §4)
// ---------------------------------------------------------------------------

#[test]
fn given_recovery_code_then_accepted_once() {
    let env = test_env!("recovery");
    let (first, second) = (new_recovery_code(), new_recovery_code());
    let mut rec = Record::new("alice");
    rec.recovery = vec![recovery_entry(&first), recovery_entry(&second)];
    let path = env.write_record(&rec);

    env.login("alice", &[&first]).expect_result("PAM_SUCCESS");
    let text = fs::read_to_string(&path).expect("record still readable");
    assert!(
        !text.contains(&rec.recovery[0]),
        "used entry not burned:\n{text}"
    );
    assert!(
        text.contains(&rec.recovery[1]),
        "unused entry lost:\n{text}"
    );
    let meta = fs::symlink_metadata(&path).expect("stat record");
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid()),
        (0o600, 0),
        "rewritten record must stay root 0600"
    );

    env.login("alice", &[&first])
        .expect_result("PAM_AUTH_ERR")
        .expect_prompted();

    // The other code, typed in upper case without dashes, still works.
    let typed = second.replace('-', "").to_uppercase();
    env.login("alice", &[&typed]).expect_result("PAM_SUCCESS");
    env.login("alice", &[&typed]).expect_result("PAM_AUTH_ERR");

    // The TOTP code keeps working after recovery logins.
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_SUCCESS");
}

// ---------------------------------------------------------------------------
// Users without an active record (policy file missing: nobody required)
// ---------------------------------------------------------------------------

#[test]
fn given_unenrolled_user_then_module_ignores() {
    let env = test_env!("unenrolled");
    env.pam_observe_ignore("");
    let o = env.login("carol", &[]);
    o.expect_result("PAM_SUCCESS")
        .expect_logged(&["not enrolled"]);
    assert!(
        o.has_line(&format!("INFO:{IGNORED_MARK}")),
        "module should return PAM_IGNORE\n{}",
        o.describe()
    );
    assert!(o.prompts().is_empty(), "no prompt\n{}", o.describe());
}

#[test]
fn given_pending_record_then_module_ignores() {
    let env = test_env!("pending");
    let mut rec = Record::new("alice");
    rec.state = "pending";
    env.write_record(&rec);
    env.pam_observe_ignore("");
    let o = env.login("alice", &[&code_offset(&rec, 0)]);
    o.expect_result("PAM_SUCCESS");
    assert!(
        o.has_line(&format!("INFO:{IGNORED_MARK}")),
        "a pending record counts as not enrolled → PAM_IGNORE\n{}",
        o.describe()
    );
}

#[test]
fn given_pending_record_replacing_active_then_prompted_and_denied() {
    let env = test_env!("pending_replaces");
    let mut rec = Record::new("alice");
    rec.state = "pending";
    rec.extra = "replaces_active = true\n".to_string();
    env.write_record(&rec);
    env.pam_observe_ignore("");
    settle(rec.period);
    env.login("alice", &[&code_offset(&rec, 0)])
        .expect_result("PAM_AUTH_ERR")
        .expect_prompted()
        .expect_logged(&["re-enrol", "reenrol"]);
}

#[test]
fn given_enrolled_user_in_observe_stack_then_success_is_not_ignore() {
    // Guards the PAM_IGNORE detection itself: a success must not print the mark.
    let env = test_env!("observe_success");
    let rec = Record::new("alice");
    env.write_record(&rec);
    env.pam_observe_ignore("");
    settle(rec.period);
    let o = env.login("alice", &[&code_offset(&rec, 0)]);
    o.expect_result("PAM_SUCCESS");
    assert!(
        !o.has_line(&format!("INFO:{IGNORED_MARK}")),
        "{}",
        o.describe()
    );
}

// ---------------------------------------------------------------------------
// User names
// ---------------------------------------------------------------------------

#[test]
fn given_invalid_user_name_then_denied() {
    let env = test_env!("invalid_user");
    let rec = Record::new("alice");
    env.write_record(&rec);
    // users/x/../alice.toml would be alice's record if names became paths unchecked.
    fs::create_dir(env.users.join("x")).expect("mkdir");
    set_mode(&env.users.join("x"), 0o700);
    let long = "a".repeat(129);
    for user in [
        "./alice",
        "x/../alice",
        "../users/alice",
        "-alice",
        ".alice",
        "al ice",
        "alice\tx",
        "al/ice",
        "alice:",
        long.as_str(),
    ] {
        settle(rec.period);
        let o = env.login(user, &[&code_offset(&rec, 0)]);
        assert_eq!(
            o.result,
            "PAM_AUTH_ERR",
            "user name {user:?}\n{}",
            o.describe()
        );
    }
}

#[test]
fn given_unusual_but_valid_user_names_then_accepted() {
    let env = test_env!("valid_names");
    for user in ["_svc", "a.b@example-c", "9lives", &"b".repeat(128)] {
        let rec = Record::new(user);
        env.write_record(&rec);
        settle(rec.period);
        let o = env.login(user, &[&code_offset(&rec, 0)]);
        assert_eq!(
            o.result,
            "PAM_SUCCESS",
            "user name {user:?}\n{}",
            o.describe()
        );
    }
}

// ---------------------------------------------------------------------------
// Hostile or broken input
// ---------------------------------------------------------------------------

#[test]
fn given_no_answer_then_denied() {
    let env = test_env!("no_answer");
    let rec = Record::new("alice");
    env.write_record(&rec);
    let o = env.login("alice", &[]);
    o.expect_denied().expect_prompted();
}

#[test]
fn given_garbage_answers_then_denied_without_crash() {
    let env = test_env!("garbage");
    let rec = Record::new("alice");
    env.write_record(&rec);
    let huge = "9".repeat(100_000);
    let answers: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"   ".to_vec(),
        b"12345".to_vec(),
        b"1234567".to_vec(),
        b"abcdef".to_vec(),
        b"\xff\xfe\x80\x81\xc3\x28".to_vec(),
        huge.into_bytes(),
        b"0000-0000-0000".to_vec(),
    ];
    for a in answers {
        let mut input = a.clone();
        input.push(b'\n');
        let o = env.login_raw("alice", &input);
        assert_eq!(
            o.result,
            "PAM_AUTH_ERR",
            "answer {:?}\n{}",
            String::from_utf8_lossy(&a[..a.len().min(40)]),
            o.describe()
        );
    }
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

#[test]
fn given_sixteen_parallel_logins_with_same_code_then_exactly_one_succeeds() {
    let env = test_env!("parallel");
    let rec = Record::new("alice");
    env.write_record(&rec);
    settle_margin(rec.period, 12.0);
    let code = code_offset(&rec, 0);

    // Start 16 logins and let each reach the prompt, then answer all at once.
    let mut started = Vec::new();
    for _ in 0..16 {
        let mut child = env.command("alice").spawn().expect("spawn sandbox");
        let stdin = child.stdin.take().expect("stdin");
        let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).expect("read harness stdout");
            assert!(n > 0, "harness ended before prompting: {head:?}");
            let line = line.trim_end_matches('\n').to_string();
            let is_prompt = line.starts_with("PROMPT_");
            head.push(line);
            if is_prompt {
                break;
            }
        }
        child.stdout = Some(reader.into_inner());
        started.push((child, stdin, head));
    }
    let mut waiting = Vec::new();
    for (child, mut stdin, head) in started {
        stdin
            .write_all(format!("{code}\n").as_bytes())
            .expect("answer");
        drop(stdin);
        waiting.push((child, head));
    }
    let outcomes: Vec<Outcome> = waiting
        .into_iter()
        .map(|(child, head)| finish(child, head))
        .collect();
    let logs = env.new_logs();

    let results: Vec<&str> = outcomes.iter().map(|o| o.result.as_str()).collect();
    let successes = results.iter().filter(|r| **r == "PAM_SUCCESS").count();
    assert_eq!(
        successes,
        1,
        "results: {results:?}\nsyslog:\n  {}",
        logs.join("\n  ")
    );
    assert!(
        results
            .iter()
            .all(|r| *r == "PAM_SUCCESS" || *r == "PAM_AUTH_ERR"),
        "{results:?}"
    );
    let replays = logs
        .iter()
        .filter(|l| l.to_lowercase().contains("replay"))
        .count();
    assert_eq!(
        replays,
        15,
        "the others are replays\n  {}",
        logs.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Syslog
// ---------------------------------------------------------------------------

#[test]
fn given_any_login_then_syslog_holds_no_secret_or_code() {
    let env = test_env!("no_secrets_logged");
    let recovery = new_recovery_code();
    let mut rec = Record::new("alice");
    rec.recovery = vec![recovery_entry(&recovery)];
    env.write_record(&rec);
    env.pam("debug");
    let mut typed = Vec::new();

    settle(rec.period);
    let good = code_offset(&rec, 0);
    let wrong = wrong_code(&rec, 2);
    for answer in [&good, &good, &wrong, &recovery] {
        env.login("alice", &[answer]);
        typed.push(answer.clone());
    }
    // Also the untrusted-record and locked paths, which may log more detail.
    env.write_state(
        "alice",
        &format!(
            "version = 1\nfailures = 5\nlocked_until = {}\n",
            now() + 600
        ),
    );
    let next = code_offset(&rec, 1);
    env.login("alice", &[&next]);
    typed.push(next);
    set_mode(&env.record_path("alice"), 0o644);
    let prev = code_offset(&rec, -1);
    env.login("alice", &[&prev]);
    typed.push(prev);

    let logs = env.all_logs();
    assert!(
        logs.iter().filter(|l| l.contains("pam_totp")).count() >= 6,
        "expected a log line per decision, got:\n  {}",
        logs.join("\n  ")
    );
    let secret_lower = rec.secret.to_lowercase();
    let recovery_compact = recovery.replace('-', "");
    for line in &logs {
        let lower = line.to_lowercase();
        assert!(
            !lower.contains(&secret_lower) && !lower.contains(&secret_lower[..16]),
            "secret in syslog: {line}"
        );
        assert!(
            !lower.contains(&recovery) && !lower.contains(&recovery_compact),
            "recovery code in syslog: {line}"
        );
        for code in &typed {
            assert!(
                !line.contains(code.as_str()),
                "code {code} in syslog: {line}"
            );
        }
    }
}
