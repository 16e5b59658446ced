//! Fleet mode (SPEC §11): with `--store FILE` the admin verbs act on the fleet store in
//! PostgreSQL through [`Admin`] (crate `pam-totp-store`) instead of the files. The policy stays
//! a per-host file (its throttle is `store settings`); what makes no sense against the store
//! (import, self-service, `--conversation`) is refused.
//!
//! [`enroll`] (enroll, with [`local_record`] for `--local-record`), [`users`] (activate, disable, unlock, recovery), [`status`] (status,
//! list), [`store_cmd`] (`store init|add-host|revoke-host|hosts|settings`) with [`host_files`]
//! (a host's certificate and store.toml).

pub mod args;
mod enroll;
pub mod host_files;
mod local_record;
mod status;
mod store_cmd;
mod users;

use crate::cli::{Cli, Command, PolicyArgs, PolicyCommand};
use crate::ctx::{self, shell_quote};
use crate::error::{CliError, Result};
use pam_totp::fleet::{FleetError, StoreConfig};
use pam_totp::names::UserName;
use pam_totp_store::{Admin, UserStatus};
use std::path::{Path, PathBuf};

/// The store named by `--store`: its checked configuration and the owner its files must have.
pub struct Fleet {
    pub path: PathBuf,
    pub owner: u32,
    pub cfg: StoreConfig,
}

impl Fleet {
    pub fn load(path: &Path) -> Result<Fleet> {
        let owner = ctx::store_owner(path);
        let cfg = StoreConfig::load(path, owner)
            .map_err(|e| CliError::store("cannot use the fleet store's configuration", e))?;
        Ok(Fleet {
            path: path.to_path_buf(),
            owner,
            cfg,
        })
    }

    /// An admin session (the first address whose server is not a standby).
    pub fn admin(&self) -> Result<Admin> {
        Admin::connect(&self.cfg, self.owner).map_err(|e| {
            self.fail("cannot connect to the fleet store", e)
                .hint(format!(
                    "check that the server runs and the addresses in {}; `pam-totp {}doctor` \
                 tells more",
                    self.path.display(),
                    self.arg()
                ))
        })
    }

    /// `--store FILE ` for the commands printed for the admin to run.
    pub fn arg(&self) -> String {
        format!("--store {} ", shell_quote(&self.path.to_string_lossy()))
    }

    /// A failed call, with what to do when the cause is known.
    pub fn fail(&self, doing: &str, e: FleetError) -> CliError {
        let err = CliError::new(format!("{doing}: {}", e.0));
        match hint_for(&e.0) {
            Hint::Privilege => err.hint(format!(
                "the role {:?} in {} may not do this: the admin verbs need a role in \
                 pam_totp_admin (CREATE ROLE ... IN ROLE pam_totp_admin), `store init` a superuser",
                self.cfg.role,
                self.path.display()
            )),
            Hint::NotSetUp => err.hint(format!(
                "the store is not set up: run `pam-totp {}store init` with a superuser role",
                self.arg()
            )),
            Hint::NoKey => err.hint(format!(
                "record the key file once: pam-totp {}store init --key-file PATH",
                self.arg()
            )),
            Hint::None => err,
        }
    }

    /// `user`'s row in the store, `None` when there is no record.
    pub fn row(&self, admin: &mut Admin, user: &UserName) -> Result<Option<UserStatus>> {
        let rows = admin
            .status(Some(user))
            .map_err(|e| self.fail(&format!("cannot read {user}'s status"), e))?;
        Ok(rows.into_iter().next())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Hint {
    Privilege,
    NotSetUp,
    NoKey,
    None,
}

/// What a store error's text says about its cause (PostgreSQL's own messages).
fn hint_for(msg: &str) -> Hint {
    if msg.contains("permission denied") || msg.contains("needs a superuser") {
        Hint::Privilege
    } else if msg.contains("\"pam_totp\" does not exist")
        || (msg.contains("pam_totp.") && msg.contains("does not exist"))
    {
        Hint::NotSetUp
    } else if msg.contains("no key file configured") {
        Hint::NoKey
    } else {
        Hint::None
    }
}

/// USER of a verb that needs one in fleet mode: a missing USER is a usage error (status 2).
pub fn required_user(user: Option<&str>, verb: &str) -> Result<UserName> {
    match user {
        Some(u) => ctx::check_user(u),
        None => {
            use clap::CommandFactory;
            Cli::command()
                .error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    format!(
                        "`pam-totp --store FILE {verb}` needs USER (self-service is not \
                         available in fleet mode)"
                    ),
                )
                .exit()
        }
    }
}

/// `pam-totp store ...` without `--store`: a usage error (status 2).
pub fn store_needs_flag() -> ! {
    use clap::CommandFactory;
    Cli::command()
        .error(
            clap::error::ErrorKind::MissingRequiredArgument,
            "`pam-totp store` needs --store FILE (or PAM_TOTP_STORE): the fleet store's \
             store.toml",
        )
        .exit()
}

/// Edits of the policy's throttle, which the store replaces in fleet mode.
fn edits_throttle(p: &PolicyArgs) -> bool {
    match &p.command {
        PolicyCommand::Throttle(_) => true,
        PolicyCommand::Set(s) => s.key.starts_with("throttle."),
        PolicyCommand::Unset(u) => u.key.starts_with("throttle."),
        _ => false,
    }
}

/// Runs `cli`'s verb against the store named by `path`.
pub fn run(cli: &Cli, path: &Path) -> Result<()> {
    let fleet_arg = format!("--store {} ", shell_quote(&path.to_string_lossy()));
    if cli.command.conversation() {
        return Err(CliError::new(
            "--conversation is self-service, which fleet mode does not offer",
        )
        .hint(format!(
            "an admin acts for the user: pam-totp {fleet_arg}enroll USER (or status, \
             recovery, disable)"
        )));
    }
    match &cli.command {
        Command::Doctor(a) => {
            let store = (path, ctx::store_owner(path));
            return match crate::doctor::run(&cli.dir, &cli.policy, &a.root, Some(store))? {
                true => Ok(()),
                false => Err(CliError::silent()),
            };
        }
        Command::Policy(p) if edits_throttle(p) => {
            return Err(CliError::new(
                "in fleet mode the throttle is kept in the store, not in the policy; nothing \
                 was changed",
            )
            .hint(format!(
                "change it for every host with: pam-totp {fleet_arg}store settings \
                 --attempts N --lock-seconds N --max-lock-seconds N"
            )));
        }
        // The policy stays a per-host file.
        Command::Policy(p) => return crate::policy::run(cli, p),
        Command::Import(_) => {
            return Err(CliError::new(
                "import works on local records only: fleet mode keeps secrets in the store, \
                 where they never leave the database",
            )
            .hint(format!(
                "enrol the user anew against the store: pam-totp {fleet_arg}enroll USER"
            )))
        }
        _ => {}
    }
    let fleet = Fleet::load(path)?;
    match &cli.command {
        Command::Enroll(a) => enroll::run(&fleet, cli, a),
        Command::Activate(a) => users::activate(&fleet, a),
        Command::Status(a) => status::run(&fleet, a.user.as_deref(), a.json),
        Command::List(a) => status::run(&fleet, None, a.json),
        Command::Disable(a) => users::disable(&fleet, a),
        Command::Recovery(a) => users::recovery(&fleet, a),
        Command::Unlock(a) => users::unlock(&fleet, a),
        Command::Store(s) => store_cmd::run(&fleet, s),
        Command::Doctor(_) | Command::Policy(_) | Command::Import(_) => {
            unreachable!("handled above")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("pam-totp").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn given_store_errors_then_the_hint_names_the_cause() {
        assert_eq!(
            hint_for("permission denied for function enrol"),
            Hint::Privilege
        );
        assert_eq!(
            hint_for("schema \"pam_totp\" does not exist"),
            Hint::NotSetUp
        );
        assert_eq!(
            hint_for("function pam_totp.hosts() does not exist"),
            Hint::NotSetUp
        );
        assert_eq!(
            hint_for("pam-totp: no key file configured (run pam_totp.set_key_file)"),
            Hint::NoKey
        );
        assert_eq!(hint_for("alice has no record"), Hint::None);
    }

    #[test]
    fn given_throttle_edits_then_they_are_recognised() {
        let p = |args: &[&str]| match parse(args).command {
            Command::Policy(p) => edits_throttle(&p),
            _ => unreachable!(),
        };
        assert!(p(&["policy", "throttle", "--attempts", "3"]));
        assert!(p(&["policy", "set", "throttle.attempts", "3"]));
        assert!(p(&["policy", "unset", "throttle.lock_seconds"]));
        assert!(!p(&["policy", "set", "require_all", "true"]));
        assert!(!p(&["policy", "show"]));
    }

    #[test]
    fn given_store_flag_and_env_then_parsed() {
        let c = parse(&["--store", "/s.toml", "store", "settings", "--attempts", "3"]);
        assert_eq!(c.store.as_deref(), Some(Path::new("/s.toml")));
        let Command::Store(s) = c.command else {
            panic!()
        };
        let args::StoreCommand::Settings(s) = s.command else {
            panic!()
        };
        assert_eq!((s.attempts, s.lock_seconds), (Some(3), None));
        for bad in [
            &["store", "settings", "--attempts", "0"][..],
            &["store", "settings", "--max-window", "11"],
            &["store", "add-host", "h1", "--ca-cert", "/ca.crt"],
            &["store", "add-host", "h1", "--address", "10.0.0.1:5432"],
            &[
                "store",
                "add-host",
                "h1",
                "--out",
                "/d",
                "--address",
                "db:5432",
            ],
        ] {
            let e = Cli::try_parse_from(std::iter::once("pam-totp").chain(bad.iter().copied()))
                .unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }
}
