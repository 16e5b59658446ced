//! The command line, as clap parses it. Everything a user can type is declared here, so that
//! `--help`, the man pages and the shell completions all come from this one place.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub use pam_totp::options::{DEFAULT_DIR, DEFAULT_POLICY};

const ABOUT: &str =
    "Manage TOTP second-factor logins (pam_totp): enrol users, show QR and recovery \
codes, activate, show status, disable, unlock, import, edit the policy";

const AFTER_HELP: &str = "\
Quick start (as root):
  1. pam-totp enroll alice
       Shows a QR code: alice scans it with an authenticator app (Aegis, FreeOTP,
       Google Authenticator...) and types the 6-digit code the app shows; that
       activates the record. Note the recovery codes: each one works once if the
       phone is lost. Without a terminal, run the printed `pam-totp activate`
       command instead.
  2. Put the module in the PAM stack after the password:
       pam-auth-update --enable pam-totp
     (or by hand: `auth requisite pam_unix.so` then `auth required pam_totp.so`).
     For ssh also set `KbdInteractiveAuthentication yes` and `UsePAM yes` in
     sshd_config.
  3. alice logs in: password, then \"Verification code:\" from the app.

`pam-totp status alice` shows the state; `pam-totp disable alice` turns it off.

Run by an ordinary user, pam-totp manages that user's own second factor (self-service,
unless the policy turns it off): `pam-totp enroll` turns it on, `pam-totp status` shows it,
`pam-totp recovery` renews the recovery codes, `pam-totp disable` turns it off (not while
the policy requires it). Each asks for the password and, once a key exists, a current code
or a recovery code; the setuid helper /usr/libexec/pam-totp/pam-totp-self does the rest.

Fleet mode (one identity, many hosts): with --store FILE (or PAM_TOTP_STORE) the verbs act
on the fleet store in PostgreSQL instead of the files: `pam-totp --store FILE enroll alice`
enrols alice on every host. `pam-totp store --help` sets the store up (schema, hosts,
fleet-wide throttle); `doctor` then also checks the connection, TLS and the database's clock.

Exit status: 0 success, 1 failure (the message says what to do), 2 usage error.";

#[derive(Debug, Parser)]
#[command(
    name = "pam-totp",
    version,
    about = ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// State directory holding users/USER.toml and users/USER.state
    #[arg(
        long,
        global = true,
        env = "PAM_TOTP_DIR",
        hide_env_values = true,
        help_heading = "Global options",
        value_name = "DIR",
        default_value = DEFAULT_DIR
    )]
    pub dir: PathBuf,

    /// Policy file: who must use a second factor, grace, throttle
    #[arg(
        long,
        global = true,
        env = "PAM_TOTP_POLICY",
        hide_env_values = true,
        help_heading = "Global options",
        value_name = "FILE",
        default_value = DEFAULT_POLICY
    )]
    pub policy: PathBuf,

    /// Fleet mode: the fleet store's store.toml; the verbs then act on the store
    #[arg(
        long,
        global = true,
        env = "PAM_TOTP_STORE",
        hide_env_values = true,
        help_heading = "Global options",
        value_name = "FILE"
    )]
    pub store: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a pending record with a fresh key; show the QR code, key and recovery codes
    #[command(long_about = ENROLL_LONG)]
    Enroll(EnrollArgs),
    /// Check a code from the app and make a pending record active
    #[command(long_about = ACTIVATE_LONG)]
    Activate(ActivateArgs),
    /// Show a user's state, settings, last login and what the policy asks of them
    #[command(long_about = STATUS_LONG)]
    Status(StatusArgs),
    /// List every record, one line each
    List(ListArgs),
    /// Remove a user's record and state (idempotent)
    #[command(long_about = DISABLE_LONG)]
    Disable(DisableArgs),
    /// Issue a fresh set of recovery codes, invalidating the old ones
    Recovery(RecoveryArgs),
    /// Clear the failure counter and lock; repair a corrupt state or a step from the future
    #[command(long_about = UNLOCK_LONG)]
    Unlock(UnlockArgs),
    /// Import secrets from google-authenticator or pam_oath
    #[command(subcommand)]
    Import(ImportCommand),
    /// Show or edit the policy: who must use a second factor, grace, enrolment at login
    #[command(long_about = POLICY_LONG)]
    Policy(PolicyArgs),
    /// Check the installation: permissions, policy, PAM stacks, sshd, clock (and the store)
    Doctor(DoctorArgs),
    /// Fleet mode (with --store): set up the store, add and revoke hosts, throttle settings
    #[command(long_about = crate::fleet::args::STORE_LONG)]
    Store(crate::fleet::args::StoreArgs),
}

const ENROLL_LONG: &str = "\
Creates a pending record for USER with a fresh random key and 10 recovery codes, and shows
what the user needs to set up an authenticator app: the QR code, the account name, the issuer,
the key in groups of four, the type (TOTP, algorithm, digits, period), the otpauth:// URI and
the recovery codes (shown only this once; they are stored hashed).

On a terminal it then asks for a code from the app and activates the record when the code is
right (empty answer: leave it pending). Otherwise it prints the `pam-totp activate` command to
run. A pending record is not used for logins: until it is activated the user logs in as if not
enrolled (or, after --force, is denied).

An existing active record is refused unless --force is given (lost or new phone): the old key
stops working at once and, until the new record is activated, the user is asked for a code and
denied. A pending record is simply replaced.";

const ACTIVATE_LONG: &str = "\
Checks CODE (the code the app shows now; one step before or after is accepted) against USER's
pending record and makes it active. The code's time step counts as used, so the same code
cannot then log in. Without CODE, asks for it on the terminal (not echoed) — the better way:
a CODE on the command line is visible to other users in `ps` and stays in the shell's history
while it is valid. Give CODE only in scripts without a terminal.";

const STATUS_LONG: &str = "\
Shows USER's state (none, pending, active, locked), settings, creation time, last successful
login, recovery codes left, whether the policy requires a second factor of USER (and by which
rule) and until when a grace period runs. Without USER: the same for every record (as `list`).";

const DISABLE_LONG: &str = "\
Removes USER's record and login state: the user logs in without a code again, unless the policy
requires one. Removing a user who has no record is not an error (exit status 0).";

const UNLOCK_LONG: &str = "\
Resets USER's failure counter and lock. It also marks every code up to now as used, so that no
earlier code can be replayed, and repairs a corrupt or unreadable state file (which makes the
module refuse USER's logins) by writing a fresh one. Without --reset-clock the last used step
is never lowered.

With --reset-clock it also repairs a last used step that lies in the future: a login while the
system clock was ahead (NTP glitch, VM restore) stored that step, and until the clock reaches
it every code is refused as a replay (`pam-totp status USER` says so). The step is set to the
current one, even though that is lower: that is the repair. It changes nothing when the step
does not lie beyond the widest window (10 steps); it then only unlocks. Codes of the steps
given up could be accepted again when their time comes, so use it only when status reports
the step in the future.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlgorithmArg {
    #[value(name = "SHA1", alias = "sha1")]
    Sha1,
    #[value(name = "SHA256", alias = "sha256")]
    Sha256,
    #[value(name = "SHA512", alias = "sha512")]
    Sha512,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QrMode {
    /// Half-block characters on the terminal
    Terminal,
    /// No terminal QR code
    None,
}

#[derive(Debug, Args)]
pub struct UserArg {
    /// The user's login name
    pub user: String,
}

#[derive(Debug, Args)]
pub struct DisableArgs {
    /// The user's login name [run by an ordinary user: your own account]
    pub user: Option<String>,
    /// Print one JSON document on stdout: `{"user": .., "disabled": true|false}` (false: there
    /// was no record)
    #[arg(long)]
    pub json: bool,
    /// Self-service from a program (web page), no terminal: JSON lines both ways. stdout:
    /// one event per line, `{"event":"prompt","text":..,"echo":false}`, `info`, `status`,
    /// `new_key` (with `qr_svg`), `recovery_codes`, then `done` (exit 0) or `error` (exit 1,
    /// `message`, `hint`). stdin: one line per prompt, `{"answer":".."}` or
    /// `{"cancel":true}` (end of input: cancel). Ordinary users only
    #[arg(long, conflicts_with = "json")]
    pub conversation: bool,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// The user's login name
    pub user: String,
    /// Also set a last used step that lies in the future (clock was ahead) back to the
    /// current step
    #[arg(long)]
    pub reset_clock: bool,
    /// Print one JSON document on stdout: `{"user": .., "unlocked": true, "status": {..}}`
    /// (the status as `status --json` prints it, after the unlock)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The user's login name (the account name in the app) [run by an ordinary user: your
    /// own account, and nobody else's]
    pub user: Option<String>,
    /// Issuer shown in the app [default: the policy's `issuer`, else the host name]
    #[arg(long, value_name = "NAME")]
    pub issuer: Option<String>,
    /// Digits per code
    #[arg(long, default_value = "6", value_parser = ["6", "8"])]
    pub digits: String,
    /// HMAC algorithm (SHA1 works with every app)
    #[arg(long, value_enum, default_value = "SHA1", ignore_case = true)]
    pub algorithm: AlgorithmArg,
    /// Seconds per code
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(15..=300))]
    pub period: u32,
    /// Draw the QR code on the terminal [default: terminal, none with --json]
    #[arg(long, value_enum)]
    pub qr: Option<QrMode>,
    /// Also write the QR code as a PNG image (mode 0600: it holds the key; a path through a
    /// symbolic link is refused)
    #[arg(long, value_name = "FILE")]
    pub qr_png: Option<PathBuf>,
    /// Also write the QR code as an SVG image (mode 0600: it holds the key; a path through a
    /// symbolic link is refused)
    #[arg(long, value_name = "FILE")]
    pub qr_svg: Option<PathBuf>,
    /// Replace an active record (lost or new phone)
    #[arg(long)]
    pub force: bool,
    /// Fleet mode (--store), as root: also write the new key and recovery codes as an active
    /// local record in --dir, so that USER can be a break-glass user (store.toml's [offline]
    /// users) who logs in from it while the store is unreachable. The record file
    /// (users/USER.toml, root:root 0600) may be copied to other hosts' state directories
    #[arg(long, conflicts_with = "conversation")]
    pub local_record: bool,
    /// Print one JSON document on stdout; never ask for a code
    #[arg(long)]
    pub json: bool,
    /// Self-service from a program (web page), no terminal: JSON lines both ways. stdout:
    /// one event per line, `{"event":"prompt","text":..,"echo":false}`, `info`, `status`,
    /// `new_key` (with `qr_svg`), `recovery_codes`, then `done` (exit 0) or `error` (exit 1,
    /// `message`, `hint`). stdin: one line per prompt, `{"answer":".."}` or
    /// `{"cancel":true}` (end of input: cancel). Ordinary users only
    #[arg(long, conflicts_with_all = ["json", "qr"])]
    pub conversation: bool,
}

#[derive(Debug, Args)]
pub struct ActivateArgs {
    /// The user's login name
    pub user: String,
    /// The code the app shows now [default: ask on the terminal, not echoed]. A code given
    /// here shows in `ps` and in the shell's history while it is valid: prefer leaving it out
    /// and typing it at the prompt
    pub code: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The user's login name [default: every record]
    pub user: Option<String>,
    /// Print JSON (an object for USER, else an array)
    #[arg(long)]
    pub json: bool,
    /// Self-service from a program (web page), no terminal: JSON lines both ways. stdout:
    /// one event per line, `{"event":"prompt","text":..,"echo":false}`, `info`, `status`,
    /// `new_key` (with `qr_svg`), `recovery_codes`, then `done` (exit 0) or `error` (exit 1,
    /// `message`, `hint`). stdin: one line per prompt, `{"answer":".."}` or
    /// `{"cancel":true}` (end of input: cancel). Ordinary users only
    #[arg(long, conflicts_with = "json")]
    pub conversation: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array of status objects
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RecoveryArgs {
    /// The user's login name [run by an ordinary user: your own account]
    pub user: Option<String>,
    /// How many codes
    #[arg(long, default_value_t = pam_totp::recovery::DEFAULT_COUNT as u16, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub count: u16,
    /// Print one JSON document on stdout
    #[arg(long)]
    pub json: bool,
    /// Self-service from a program (web page), no terminal: JSON lines both ways. stdout:
    /// one event per line, `{"event":"prompt","text":..,"echo":false}`, `info`, `status`,
    /// `new_key` (with `qr_svg`), `recovery_codes`, then `done` (exit 0) or `error` (exit 1,
    /// `message`, `hint`). stdin: one line per prompt, `{"answer":".."}` or
    /// `{"cancel":true}` (end of input: cancel). Ordinary users only
    #[arg(long, conflicts_with = "json")]
    pub conversation: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import a ~/.google_authenticator file (TOTP only) as an active record
    #[command(name = "google-authenticator", long_about = IMPORT_GA_LONG)]
    GoogleAuthenticator(ImportGaArgs),
    /// Import the TOTP lines of a pam_oath users file as active records
    #[command(long_about = IMPORT_OATH_LONG)]
    Oath(ImportOathArgs),
}

const IMPORT_GA_LONG: &str = "\
Reads USER's google-authenticator file (default: ~USER/.google_authenticator, found through the
user database) and creates an active record with the same key, so the user's app keeps working.
Only time-based (TOTP_AUTH) files are accepted. Scratch codes become recovery codes (each works
once); codes marked used (DISALLOW_REUSE) stay used (a used step in the future is refused: it would
make every code a replay until then); the window size, rate limit and step size
found are reported. The source file is only read, never changed. An existing active record is
refused unless --force is given.";

const IMPORT_OATH_LONG: &str = "\
Reads a pam_oath users file (lines `TYPE USER PIN SECRET-HEX [COUNTER [LAST-OTP [TIME]]]`) and
creates an active record for each time-based line (HOTP/T30, HOTP/T30/8, HOTP/T60/6...). HOTP
(counter-based) lines are listed on stderr as not imported; lines with a PIN other than `-` are
skipped (pam-totp has no PIN). The last code used (LAST-OTP at TIME) stays used; a TIME in the
future is refused (it would make every code a replay until then). The source file is only read,
never changed. Existing active records are refused unless --force is given.

Whoever can write FILE chooses the keys of every user in it: a FILE owned by another user than
root, writable by group or others, or in such a directory (a root-owned sticky one like /tmp
is fine) is refused unless --force is given (then a warning is printed).

Exit status 0 when every time-based line (with --user: that user's line) was imported; 1 when
one failed or nothing was imported.";

#[derive(Debug, Args)]
pub struct ImportGaArgs {
    /// The user's login name
    pub user: String,
    /// The file to read [default: ~USER/.google_authenticator]
    pub file: Option<PathBuf>,
    /// Issuer shown in the app for this record [default: the policy's `issuer`, else the host name]
    #[arg(long, value_name = "NAME")]
    pub issuer: Option<String>,
    /// Replace an existing active record
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ImportOathArgs {
    /// The pam_oath users file (e.g. /etc/users.oath)
    pub file: PathBuf,
    /// Import only this user's line
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Issuer for the new records [default: the policy's `issuer`, else the host name]
    #[arg(long, value_name = "NAME")]
    pub issuer: Option<String>,
    /// Replace existing active records; also import from a FILE that users other than root
    /// could have written (refused without it, warned with it)
    #[arg(long)]
    pub force: bool,
}

const POLICY_LONG: &str = "\
Shows or edits the policy file (default /etc/pam-totp/policy.toml; --policy or PAM_TOTP_POLICY).
Edits keep the file's comments and layout, are checked before anything is written (an edit that
would make the policy invalid is refused and the file left as it was), and replace the file
atomically (root-owned, mode 0644). A missing file is created with a commented header.

Who must use a second factor: `require --all`, `require --user U`, `require --group G`
(members, including supplementary groups); `exempt --user U / --group G` win over every
requirement (an enrolled exempt user is still asked). Until the `grace` deadline, required users
who are not enrolled get in with a notice naming the date; with `enroll-at-login on` they enrol
at their next login instead (QR code and recovery codes shown during the login).

Example: make the group wheel use a second factor, with two weeks of grace, enrolling at login:
  pam-totp policy require --group wheel
  pam-totp policy grace --days 14
  pam-totp policy enroll-at-login on";

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Print one JSON document on stdout: the policy's keys with their values in effect (for
    /// an edit: after it; the same document as `policy show --json`)
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the policy in effect (defaults filled in)
    Show,
    /// Require a second factor of everyone, or of users or group members
    Require(WhoArgs),
    /// Undo `require` for everyone, users or groups
    Unrequire(WhoArgs),
    /// Never require a second factor of these users or group members (wins over `require`)
    Exempt(ExemptArgs),
    /// Undo `exempt`
    Unexempt(ExemptArgs),
    /// Set or clear the grace deadline for required users who are not enrolled yet
    Grace(GraceArgs),
    /// Let required but unenrolled users enrol at their next login (on), or deny them (off)
    #[command(name = "enroll-at-login")]
    EnrollAtLogin(OnOffArgs),
    /// Let users turn their own second factor on and off (on, the default), or not (off)
    #[command(name = "self-service")]
    SelfService(OnOffArgs),
    /// Set the lockout after wrong codes ([throttle])
    Throttle(ThrottleArgs),
    /// Set (or clear with --none) the default issuer shown in authenticator apps
    Issuer(IssuerArgs),
    /// Set any key to a TOML value (e.g. `require_all true`, `throttle.attempts 3`)
    #[command(long_about = SET_LONG)]
    Set(SetArgs),
    /// Remove a key (back to its default; also removes keys pam-totp does not know)
    Unset(UnsetArgs),
}

const SET_LONG: &str = "\
Sets KEY to VALUE, a TOML value: true/false, a number, a date (2026-12-31 or
2026-12-31T00:00:00Z), an array ([\"alice\", \"bob\"]) or a string (quotes optional).
Keys: require_all, require_users, require_groups, exempt_users, exempt_groups, grace_until,
enroll_at_login, issuer, self_service, throttle.attempts, throttle.lock_seconds, throttle.max_lock_seconds.";

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct WhoArgs {
    /// Everyone (require_all)
    #[arg(long)]
    pub all: bool,
    /// A user (repeatable)
    #[arg(long, value_name = "USER")]
    pub user: Vec<String>,
    /// Members of a group, primary or supplementary (repeatable)
    #[arg(long, value_name = "GROUP")]
    pub group: Vec<String>,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct ExemptArgs {
    /// A user (repeatable)
    #[arg(long, value_name = "USER")]
    pub user: Vec<String>,
    /// Members of a group (repeatable)
    #[arg(long, value_name = "GROUP")]
    pub group: Vec<String>,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct GraceArgs {
    /// The deadline: a date (2026-12-31, midnight UTC) or a date-time with offset
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// The deadline N days from today (midnight UTC at the start of that day)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=3650))]
    pub days: Option<u32>,
    /// No grace: required users must be enrolled now
    #[arg(long)]
    pub none: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct OnOffArgs {
    #[arg(value_enum)]
    pub value: OnOff,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct ThrottleArgs {
    /// Consecutive wrong codes before the lock
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub attempts: Option<u32>,
    /// First lock, in seconds (doubles with each further wrong code)
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub lock_seconds: Option<u64>,
    /// Longest lock, in seconds
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub max_lock_seconds: Option<u64>,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct IssuerArgs {
    /// The issuer name
    pub name: Option<String>,
    /// Remove it (new enrolments then use the host name)
    #[arg(long)]
    pub none: bool,
}

#[derive(Debug, Args)]
pub struct SetArgs {
    /// The key (`throttle.attempts` for keys of [throttle])
    pub key: String,
    /// A TOML value
    pub value: String,
}

#[derive(Debug, Args)]
pub struct UnsetArgs {
    /// The key (`throttle.attempts` for keys of [throttle])
    pub key: String,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Read etc/pam.d, etc/ssh, etc/passwd... below this directory instead of / (tests)
    #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
    pub root: PathBuf,
}

/// `pam-totp generate-docs OUT_DIR`: a build step for packaging, kept out of `Cli` so that
/// neither the help, the man pages nor the completions offer it.
#[derive(Debug, Parser)]
#[command(
    name = "pam-totp generate-docs",
    about = "Write man pages and shell completions"
)]
pub struct GenerateDocsArgs {
    /// Output directory: man pages go to OUT_DIR/man, completions to OUT_DIR/completions
    pub out_dir: PathBuf,
}

impl Command {
    /// Whether `--conversation` was given (self-service verbs only have it).
    pub fn conversation(&self) -> bool {
        match self {
            Command::Status(a) => a.conversation,
            Command::Enroll(a) => a.conversation,
            Command::Recovery(a) => a.conversation,
            Command::Disable(a) => a.conversation,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
