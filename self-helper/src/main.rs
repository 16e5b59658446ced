//! `pam-totp-self`: the setuid-root helper behind self-service (SPEC §8), installed root:root
//! 4755 at `/usr/libexec/pam-totp/pam-totp-self` and spawned by `pam-totp` run by an ordinary
//! user, with the JSON-lines protocol of `pam_totp::selfservice::protocol` on its standard
//! input and output.
//!
//! A screen in front of the core: it hardens the process against everything its caller chose
//! ([`harden`]), takes no path and reads no variable from the caller, acts only on the account
//! of its real uid, proves the password through PAM ([`pam`]) and the code as at login, then
//! calls one action of `pam_totp::selfservice` ([`serve`]) and ends with one `Done` or
//! `Refused` line, one syslog line, and exit status 0 or 1.
#![deny(unsafe_code)]

mod harden;
#[allow(unsafe_code)]
mod os;
#[allow(unsafe_code)]
mod pam;
mod relay;
mod serve;

use pam_totp::selfservice::protocol::Reply;
use pam_totp::selfservice::{self, Outcome, Relay};
use relay::FrontEnd;
use serve::Who;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};

/// The prefix of every log line, as `pam_syslog` would write it for service `pam-totp`.
const LOG_PREFIX: &str = "pam_totp(pam-totp:self):";

fn main() {
    // Panics are reported by the one line below, not by the default hook's text.
    panic::set_hook(Box::new(|_| {}));
    let code = panic::catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|_| {
        complain("internal error (panic caught); nothing was changed unless reported");
        os::syslog(
            os::LOG_WARNING,
            &format!(
                "{LOG_PREFIX} uid={} refused: internal error",
                nix::unistd::getuid()
            ),
        );
        1
    });
    std::process::exit(code);
}

/// One line on standard error, if it can be written.
fn complain(why: &str) {
    let _ = writeln!(io::stderr(), "pam-totp-self: {why}");
}

fn run() -> i32 {
    // Held (lifted) for the whole run; the process exits without restoring them.
    let _limits = match harden::all() {
        Ok(limits) => limits,
        Err(why) => return refuse_early(&why),
    };
    let mut front = FrontEnd::new(Fd0, Fd1);
    let (who, outcome) = serve::serve(&mut front);
    finish(&mut front, &who, outcome)
}

/// Standard input read directly, without std's buffer (lines carry passwords: only the
/// relay's wiped buffer holds them).
struct Fd0;

impl Read for Fd0 {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(nix::unistd::read(io::stdin().as_raw_fd(), buf)?)
    }
}

/// Standard output written directly: each reply is one `write_all` of one whole line.
struct Fd1;

impl Write for Fd1 {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(nix::unistd::write(io::stdout(), buf)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Before the protocol can be spoken: a message on standard error and in the log.
fn refuse_early(why: &str) -> i32 {
    complain(why);
    let who = Who::Uid(nix::unistd::getuid().as_raw());
    os::syslog(
        os::LOG_WARNING,
        &format!("{LOG_PREFIX} {who} refused: {why}"),
    );
    1
}

/// The last reply, the one log line of the action, and the exit status.
fn finish<F: Relay>(front: &mut F, who: &Who, outcome: Outcome) -> i32 {
    let priority = match outcome {
        Outcome::Refused(_) => os::LOG_WARNING,
        Outcome::Status => os::LOG_INFO,
        _ => os::LOG_NOTICE,
    };
    os::syslog(priority, &format!("{LOG_PREFIX} {who} {outcome}"));
    let message = selfservice::done_message(&outcome);
    let (reply, code) = match outcome {
        Outcome::Refused(_) => (Reply::Refused { message }, 1),
        _ => (Reply::Done { message }, 0),
    };
    // A front-end that went away gets nothing; the action itself is already complete.
    match front.send(reply) {
        Ok(()) => code,
        Err(_) => 1,
    }
}
