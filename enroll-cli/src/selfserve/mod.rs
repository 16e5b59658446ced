//! `pam-totp` run by an ordinary user (SPEC §8): the front-end of self-service. It acts on the
//! caller's own account only, through the setuid helper `pam-totp-self`, which holds every
//! privilege and every rule; this side talks to the user (prompts, QR code, images written
//! with the user's own rights) and relays. The user is at a terminal ([`terminal`]) or is a
//! program speaking JSON lines, such as a web page (`--conversation`, [`conversation`]); both
//! are a [`Front`] driven by the one [`converse`] loop.

mod conversation;
mod terminal;

use crate::cli::{Cli, Command, QrMode};
use crate::error::{CliError, Result};
use crate::show_key::Images;
use pam_totp::escape::terminal_safe;
use pam_totp::options::{DEFAULT_DIR, DEFAULT_POLICY};
use pam_totp::selfservice::protocol::{self, NewKey, Reply, Request, Verb};
use pam_totp::selfservice::HELPER_PATH;
use pam_totp::status::UserStatus;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{ChildStdin, Command as Process, Stdio};
use zeroize::Zeroizing;

const WHAT_USERS_CAN_DO: &str = "you can manage your own second factor with: pam-totp enroll | \
                                  pam-totp status | pam-totp recovery | pam-totp disable";

/// Whether this run is self-service: an ordinary user, and the real state directory and
/// policy (a user who points --dir/--policy at files of their own only works on those, with
/// their own rights: that grants nothing, and is how the tests run without root).
pub fn applies(cli: &Cli) -> bool {
    !nix::unistd::geteuid().is_root()
        && cli.dir == Path::new(DEFAULT_DIR)
        && cli.policy == Path::new(DEFAULT_POLICY)
}

fn only_root(what: &str) -> CliError {
    CliError::new(format!("only root can {what}")).hint(WHAT_USERS_CAN_DO)
}

/// The caller's own name, for messages (the helper decides by its real uid, not by this).
fn own_name() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// Refuses a USER that is not the caller.
fn only_self(user: Option<&str>) -> Result<()> {
    match (user, own_name()) {
        (None, _) => Ok(()),
        (Some(u), Some(me)) if u == me => Ok(()),
        (Some(u), _) => Err(only_root(&format!(
            "act on another account ({})",
            terminal_safe(u)
        ))),
    }
}

/// Where the user is: what the helper's replies become, and where answers come from.
pub trait Front {
    /// Asks (`echo` false: hidden). `None`: no answer (cancelled, end of input).
    fn prompt(&mut self, text: &str, echo: bool) -> Result<Option<Zeroizing<String>>>;
    fn info(&mut self, text: &str) -> Result<()>;
    /// The user's own status (what `pam-totp status --json` prints).
    fn status(&mut self, status: &UserStatus) -> Result<()>;
    /// A new key to set up in the app (the image files asked for are written already).
    fn new_key(&mut self, key: &NewKey, images: &Images) -> Result<()>;
    /// Fresh recovery codes; `Ok` only once they are out (written and flushed): the helper is
    /// told "shown" after that, and only then saves them.
    fn recovery_codes(&mut self, codes: &[Zeroizing<String>]) -> Result<()>;
    /// The end (exit status 0); `key`: the key just enrolled, if any.
    fn done(&mut self, key: Option<&NewKey>, message: &str) -> Result<()>;
}

/// What the user asked for, checked: the verb, whether JSON, and how to show a new key.
struct Ask<'a> {
    verb: Verb,
    json: bool,
    qr: QrMode,
    png: Option<&'a Path>,
    svg: Option<&'a Path>,
}

fn ask(cli: &Cli) -> Result<Ask<'_>> {
    let plain = |verb, json| Ask {
        verb,
        json,
        qr: QrMode::None,
        png: None,
        svg: None,
    };
    match &cli.command {
        Command::Status(a) => {
            only_self(a.user.as_deref())?;
            Ok(plain(Verb::Status {}, a.json))
        }
        Command::Enroll(a) => {
            only_self(a.user.as_deref())?;
            if a.issuer.is_some() {
                return Err(only_root("choose the issuer (--issuer)"));
            }
            if a.force {
                return Err(CliError::new(
                    "--force is for root; to replace your own key, run pam-totp enroll \
                     (it asks for a current code first)",
                ));
            }
            Ok(Ask {
                verb: Verb::Enroll {
                    algorithm: crate::enroll::algorithm(a.algorithm).as_str().into(),
                    digits: a.digits.parse().unwrap_or(6),
                    period: a.period,
                },
                json: a.json,
                qr: crate::show_key::qr_mode(a.qr, a.json),
                png: a.qr_png.as_deref(),
                svg: a.qr_svg.as_deref(),
            })
        }
        Command::Recovery(a) => {
            only_self(a.user.as_deref())?;
            if usize::from(a.count) != pam_totp::recovery::DEFAULT_COUNT {
                return Err(only_root("choose how many recovery codes (--count)"));
            }
            Ok(plain(Verb::Recovery {}, a.json))
        }
        Command::Disable(a) => {
            only_self(a.user.as_deref())?;
            Ok(plain(Verb::Disable {}, a.json))
        }
        Command::Activate(_) => Err(only_root("activate records")),
        Command::List(_) => Err(only_root("list every record")),
        Command::Unlock(_) => Err(only_root("unlock users")),
        Command::Import(_) => Err(only_root("import secrets")),
        Command::Policy(_) => Err(only_root("change the policy")),
        Command::Doctor(_) => Err(only_root("check the installation (pam-totp doctor)")),
        Command::Store(_) => Err(only_root("manage the fleet store")),
    }
}

/// The helper's path: the installed one, or `PAM_TOTP_SELF_HELPER` (this side runs with the
/// user's rights, so the variable only chooses which program the user runs; the helper itself
/// reads no variable).
fn helper_path() -> std::path::PathBuf {
    std::env::var_os("PAM_TOTP_SELF_HELPER")
        .map(Into::into)
        .unwrap_or_else(|| HELPER_PATH.into())
}

pub fn run(cli: &Cli) -> Result<()> {
    if cli.command.conversation() {
        let mut front = conversation::Conversation::new();
        return ask(cli)
            .and_then(|a| relay(&a, &mut front))
            .map_err(|e| front.fail(e));
    }
    let a = ask(cli)?;
    relay(&a, &mut terminal::Terminal::new(&a))
}

/// `--conversation` where self-service does not apply (root, or --dir/--policy given): an
/// `error` event.
pub fn not_here() -> CliError {
    conversation::Conversation::new().fail(CliError::new(
        "--conversation is for self-service; as root use the admin verbs with --json",
    ))
}

/// Starts the helper and relays between it and `front` until the helper is done.
fn relay(ask: &Ask, front: &mut impl Front) -> Result<()> {
    let path = helper_path();
    let mut child = Process::new(&path)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            CliError::new(format!(
                "cannot start the self-service helper {}: {e}",
                path.display()
            ))
            .hint("is pam-totp installed (the package puts it there, setuid root)? ask your administrator")
        })?;
    let (Some(mut to), Some(from)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(CliError::new("cannot talk to the self-service helper"));
    };
    let mut from = BufReader::new(from.take(64 * 1024 * 1024));
    let result = converse(ask, front, &mut to, &mut from);
    drop(to);
    let _ = child.wait();
    result
}

fn send(to: &mut ChildStdin, request: &Request) -> Result<()> {
    to.write_all(protocol::encode(request).as_bytes())
        .and_then(|()| to.flush())
        .map_err(|e| CliError::new(format!("the self-service helper went away ({e})")))
}

fn converse(
    ask: &Ask,
    front: &mut impl Front,
    to: &mut ChildStdin,
    from: &mut impl BufRead,
) -> Result<()> {
    send(
        to,
        &Request::Hello {
            version: protocol::VERSION,
            verb: ask.verb.clone(),
        },
    )?;
    let mut images: Option<Images> = None;
    let mut key: Option<Box<NewKey>> = None;
    let ended = (|| -> Result<String> {
        loop {
            let mut line = Zeroizing::new(Vec::new());
            let n = from
                .take(protocol::MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| {
                    CliError::new(format!("cannot read from the self-service helper: {e}"))
                })?;
            if n == 0 {
                return Err(CliError::new(
                    "the self-service helper ended without an answer",
                ));
            }
            let Some(reply) = protocol::decode::<Reply>(line.trim_ascii_end()) else {
                return Err(CliError::new(
                    "the self-service helper sent something unreadable",
                ));
            };
            match reply {
                Reply::Prompt { text, echo } => {
                    let request = match front.prompt(&text, echo)? {
                        Some(text) => Request::Answer { text },
                        None => Request::Cancel {},
                    };
                    send(to, &request)?;
                }
                Reply::Info { text } => front.info(&text)?,
                Reply::Status { status, extra } => {
                    let mut s = *status;
                    s.extra = extra;
                    front.status(&s)?;
                }
                Reply::NewKey(k) => {
                    let written = images.insert(Images::write(&k, ask.png, ask.svg)?);
                    front.new_key(&k, written)?;
                    key = Some(k);
                }
                Reply::RecoveryCodes { codes } => {
                    // Shown now; the helper saves them only once told they were.
                    front.recovery_codes(&codes)?;
                    send(
                        to,
                        &Request::Answer {
                            text: Zeroizing::new("shown".into()),
                        },
                    )?;
                }
                Reply::Done { message } => return Ok(message),
                Reply::Refused { message } => {
                    return Err(CliError::new(message).hint(WHAT_USERS_CAN_DO))
                }
            }
        }
    })();
    match ended {
        Ok(message) => front.done(key.as_deref(), &message),
        Err(e) => {
            // Nothing of a key that was not confirmed stays behind.
            if let Some(i) = &images {
                i.remove();
            }
            Err(e)
        }
    }
}
