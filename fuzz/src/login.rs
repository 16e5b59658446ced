//! The login decision end to end (`pam_totp::flow::authenticate`) with a scripted
//! conversation and a fixed clock, over a state directory on a tmpfs (/dev/shm).
//!
//! Three enrolled users cover the code paths of the answer: `sha1` (SHA1, 6 digits, two
//! recovery codes), `sha256` (SHA256, 8 digits) and `sha512` (SHA512, 6 digits, period 60).
//! The policy switches the throttle off so that every answer is really classified. The state
//! file is removed before every run and the record restored after a recovery code was
//! burned, so a run depends only on its input.
use pam_totp::flow::{self, Code, ConvError, Conversation, Request, Verdict};
use pam_totp::options::Options;
use pam_totp::recovery;
use pam_totp::secret::Secret;
use pam_totp::sys::System;
use pam_totp::totp::{Algorithm, Generator, Params};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use zeroize::Zeroizing;

/// The fixed "now" of every run (unix seconds).
pub const NOW: u64 = 1_800_000_015;
pub const WINDOW: u32 = 1;
pub const RECOVERY_CODES: [&str; 2] = ["4fh7-k2m9-xq3p", "zzzz-2222-abcd"];

pub struct Account {
    pub user: &'static str,
    /// The record file's text, restored after a login that burned a recovery code.
    pub record: String,
    pub secret: Secret,
    pub params: Params,
    pub recovery: bool,
}

pub struct Setup {
    pub dir: PathBuf,
    pub options: Options,
    pub accounts: Vec<Account>,
    pub owner: u32,
}

fn write(path: &PathBuf, text: &str, mode: u32) {
    fs::write(path, text).expect("write fuzz fixture");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod fuzz fixture");
}

pub fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let owner = nix::unistd::geteuid().as_raw();
        let base = PathBuf::from(format!("/dev/shm/pam-totp-fuzz.{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let dir = base.join("state");
        let users = dir.join("users");
        fs::create_dir_all(&users).expect("create fuzz state dir");
        for d in [&base, &dir, &users] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o700)).expect("chmod");
        }
        let policy = base.join("policy.toml");
        write(
            &policy,
            "version = 1\n\n[throttle]\nattempts = 4000000000\n",
            0o644,
        );
        let p = |a, d, s| Params::new(a, d, s).expect("params");
        let mut accounts = vec![
            Account {
                user: "sha1",
                record: String::new(),
                secret: Secret::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").expect("key"),
                params: p(Algorithm::Sha1, 6, 30),
                recovery: true,
            },
            Account {
                user: "sha256",
                record: String::new(),
                secret: Secret::from_base32("MZ2XU6RNONUGCMRVGYWWWZLZFUYDCMRTGQ2TMNZYHFQWEY3EMVTA")
                    .expect("key"),
                params: p(Algorithm::Sha256, 8, 30),
                recovery: false,
            },
            Account {
                user: "sha512",
                record: String::new(),
                secret: Secret::from_base32(
                    "MZ2XU6RNONUGCNJRGIWWWZLZFUYDCMRTGQ2TMNZYHFQWEY3EMVTGO2DJNJVWY3LON5YHC4TTOR2XM53YPF5DAMJSGM2DKNRXHA4UCQQ",
                )
                .expect("key"),
                params: p(Algorithm::Sha512, 6, 60),
                recovery: false,
            },
        ];
        for a in &mut accounts {
            let recovery: String = if a.recovery {
                RECOVERY_CODES
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("  \"{}\",\n", recovery::hash_with_salt(c, &[i as u8 + 1; 16])))
                    .collect()
            } else {
                String::new()
            };
            a.record = format!(
                    "version = 1\nuser = \"{}\"\nstate = \"active\"\nsecret = \"{}\"\n\
                     algorithm = \"{}\"\ndigits = {}\nperiod = {}\nissuer = \"fuzz\"\n\
                     recovery = [\n{recovery}]\n",
                    a.user,
                    &*a.secret.to_base32(),
                    a.params.algorithm(),
                    a.params.digits(),
                    a.params.period()
                );
            write(&users.join(format!("{}.toml", a.user)), &a.record, 0o600);
        }
        let options = Options::parse(&[
            format!("dir={}", dir.display()),
            format!("policy={}", policy.display()),
            format!("window={WINDOW}"),
        ])
        .expect("options");
        Setup {
            dir,
            options,
            accounts,
            owner,
        }
    })
}

/// Answers every prompt with the same bytes.
pub struct Scripted {
    pub answer: Vec<u8>,
    pub prompts: usize,
}

impl Conversation for Scripted {
    fn prompt_hidden(&mut self, _prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConvError> {
        self.prompts += 1;
        Ok(Zeroizing::new(self.answer.clone()))
    }
    fn info(&mut self, _text: &str) -> Result<(), ConvError> {
        Ok(())
    }
}

pub struct FixedClock;

impl System for FixedClock {
    fn now(&self) -> u64 {
        NOW
    }
    fn groups_of(&self, _user: &str) -> Result<Option<Vec<String>>, String> {
        Ok(Some(Vec::new()))
    }
    fn hostname(&self) -> String {
        "fuzz".into()
    }
    fn canonical_name(&self, user: &str) -> Result<Option<String>, String> {
        Ok(Some(user.to_string()))
    }
}

/// One login of `account` answering `answer`, from a fresh state.
pub fn login(account: usize, answer: &[u8]) -> (Verdict, usize) {
    let s = setup();
    let a = &s.accounts[account % s.accounts.len()];
    let _ = fs::remove_file(s.dir.join("users").join(format!("{}.state", a.user)));
    let mut conv = Scripted {
        answer: answer.to_vec(),
        prompts: 0,
    };
    let req = Request {
        user: a.user,
        rhost: Some("192.0.2.1"),
        options: &s.options,
        owner: s.owner,
        typed_ahead: None,
    };
    let v = flow::authenticate(&mut conv, &FixedClock, &req);
    if v.code == Code::Success && a.recovery {
        write(
            &s.dir.join("users").join(format!("{}.toml", a.user)),
            &a.record,
            0o600,
        );
    }
    (v, conv.prompts)
}

/// What the module may accept for `account`: the codes of the steps in the window, and the
/// account's recovery codes (normalised: lower case, without dashes and blanks).
pub fn acceptable(account: usize, answer: &[u8]) -> bool {
    let s = setup();
    let a = &s.accounts[account % s.accounts.len()];
    let Ok(text) = std::str::from_utf8(answer) else {
        return false;
    };
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let g = Generator::new(&a.secret, a.params);
    let now = a.params.step_at(NOW);
    if (now - u64::from(WINDOW)..=now + u64::from(WINDOW))
        .any(|step| *g.code_at_step(step) == compact)
    {
        return true;
    }
    // The module drops every whitespace character from the answer before it tries the codes
    // (flow::classify), then recovery codes are normalised (dashes, case). So "4fh7 k2m9\nxq3p"
    // is the code 4fh7-k2m9-xq3p, as it should be: whitespace carries nothing.
    a.recovery
        && RECOVERY_CODES
            .iter()
            .any(|c| *recovery::normalize(c) == *recovery::normalize(&compact))
}

pub fn is_success(v: &Verdict) -> bool {
    v.code == Code::Success
}
