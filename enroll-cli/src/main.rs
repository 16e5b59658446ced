//! `pam-totp`: the admin CLI of pam_totp. Parses the command line, runs the verb, maps the
//! outcome to the exit status: 0 success, 1 failure (with a message saying what to do), 2 usage
//! error (clap's).
#![forbid(unsafe_code)]
// Output goes through output::{out, outln, errout, erroutln}: never a panic on a closed pipe.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod activate;
mod cli;
mod ctx;
mod disable;
mod docs;
mod doctor;
mod enroll;
mod error;
mod fleet;
mod images;
mod import;
mod import_ga;
mod import_oath;
mod output;
mod policy;
mod recovery;
mod selfserve;
mod show_key;
mod status;
mod tty;
mod unlock;

use crate::output::errout;
use clap::Parser;
use cli::{Cli, Command, ImportCommand};
use ctx::Ctx;
use error::{CliError, Result};
use std::process::ExitCode;

fn run(cli: &Cli) -> Result<()> {
    // Fleet mode: the verbs act on the store (SPEC §11).
    if let Some(store) = &cli.store {
        return fleet::run(cli, store);
    }
    if let Command::Store(_) = &cli.command {
        fleet::store_needs_flag();
    }
    if selfserve::applies(cli) {
        return selfserve::run(cli);
    }
    if cli.command.conversation() {
        return Err(selfserve::not_here());
    }
    if let Command::Policy(p) = &cli.command {
        return policy::run(cli, p);
    }
    if let Command::Doctor(a) = &cli.command {
        // Read-only; it reports what it cannot read instead of refusing non-root callers.
        return match doctor::run(&cli.dir, &cli.policy, &a.root, None)? {
            true => Ok(()),
            // The report already ends with what to do.
            false => Err(CliError::silent()),
        };
    }
    let ctx = Ctx::new(cli)?;
    match &cli.command {
        Command::Enroll(a) => enroll::run(&ctx, a),
        Command::Activate(a) => activate::run(&ctx, a),
        Command::Status(a) => status::run_status(&ctx, a),
        Command::List(a) => status::run_list(&ctx, a),
        Command::Disable(a) => disable::run(&ctx, a),
        Command::Recovery(a) => recovery::run(&ctx, a),
        Command::Unlock(a) => unlock::run(&ctx, a),
        Command::Import(ImportCommand::GoogleAuthenticator(a)) => import_ga::run(&ctx, a),
        Command::Import(ImportCommand::Oath(a)) => import_oath::run(&ctx, a),
        Command::Doctor(_) | Command::Policy(_) | Command::Store(_) => {
            unreachable!("handled above")
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "generate-docs") {
        let a = cli::GenerateDocsArgs::parse_from(&args[1..]);
        return finish(docs::run(&a));
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // Usage errors exit 2; --help and --version print and exit 0.
        Err(e) => e.exit(),
    };
    finish(run(&cli))
}

fn finish(r: Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errout!("{e}");
            ExitCode::from(1)
        }
    }
}
