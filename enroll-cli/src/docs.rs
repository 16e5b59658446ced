//! `pam-totp generate-docs OUT_DIR` (hidden): man pages and shell completions from the clap
//! definitions, for packaging. Writes OUT_DIR/man/pam-totp.1 and one page per verb
//! (pam-totp-enroll.1, pam-totp-import-oath.1, ...), and OUT_DIR/completions/pam-totp.bash,
//! _pam-totp (zsh) and pam-totp.fish; prints the paths written.

use crate::cli::{Cli, GenerateDocsArgs};
use crate::error::{CliError, Result};
use crate::output::outln;
use clap::CommandFactory;
use clap_complete::Shell;
use std::fs;

pub fn run(a: &GenerateDocsArgs) -> Result<()> {
    let man = a.out_dir.join("man");
    let completions = a.out_dir.join("completions");
    for d in [&man, &completions] {
        fs::create_dir_all(d).map_err(|e| CliError::io("cannot create", d, &e))?;
    }
    clap_mangen::generate_to(Cli::command(), &man)
        .map_err(|e| CliError::io("cannot write man pages in", &man, &e))?;
    let mut written: Vec<String> = fs::read_dir(&man)
        .map_err(|e| CliError::io("cannot list", &man, &e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".1"))
        .collect();
    written.sort();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = Cli::command();
        let path = clap_complete::generate_to(shell, &mut cmd, "pam-totp", &completions)
            .map_err(|e| CliError::io("cannot write completions in", &completions, &e))?;
        written.push(path.display().to_string());
    }
    for p in written {
        outln!("{p}")?;
    }
    Ok(())
}
