//! Time, codes, secrets and recovery codes (all independent of the crate under test),
//! and records (SPEC §2.1) written as text.

use std::fs;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
