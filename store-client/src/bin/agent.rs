//! `pam-totp-agent [--store FILE] [--sessions N]`: the host's store agent (SPEC §11,
//! `agent_socket`; [`pam_totp_store::agent`]). Run by root (systemd unit
//! `pam-totp-agent.service`); logs to stderr (the journal); never exits on its own except when
//! it cannot start (status 1) or is called wrongly (status 2).
#![forbid(unsafe_code)]

use pam_totp_store::agent::{bind, log, serve, Agent, DEFAULT_SESSIONS};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

const USAGE: &str = "usage: pam-totp-agent [--store FILE] [--sessions N]\n\
  --store FILE    the host's store.toml (default /etc/pam-totp/store.toml); it must set\n\
                  agent_socket, where the agent listens and pam_totp.so asks\n\
  --sessions N    most sessions kept open to the store (1-64, default 2; one\n\
                  closes after 60 s unused)";

fn args() -> Result<(PathBuf, usize), String> {
    let mut store = PathBuf::from(pam_totp::fleet::config::EXAMPLE_PATH);
    let mut sessions = DEFAULT_SESSIONS;
    let mut it = std::env::args_os().skip(1);
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--store") => store = it.next().ok_or("--store needs a file")?.into(),
            Some("--sessions") => {
                sessions = it
                    .next()
                    .and_then(|n| n.to_str()?.parse().ok())
                    .filter(|n| (1..=64).contains(n))
                    .ok_or("--sessions needs a number from 1 to 64")?;
            }
            Some("--help" | "-h") => return Err(String::new()),
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    Ok((store, sessions))
}

fn main() -> ExitCode {
    let (store, sessions) = match args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("pam-totp-agent: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let started = Agent::new(&store, sessions).and_then(|(agent, socket)| {
        let listener = bind(&socket)?;
        Ok((agent, socket, listener))
    });
    let (agent, socket, listener) = match started {
        Ok(s) => s,
        Err(e) => {
            log(format_args!("cannot start: {e}"));
            return ExitCode::from(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log(format_args!("cannot start the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    log(format_args!(
        "serving {} on {} (at most {sessions} sessions)",
        store.display(),
        socket.display()
    ));
    let local = tokio::task::LocalSet::new();
    let why = local.block_on(&rt, serve(Rc::new(agent), listener));
    log(format_args!("stopped: {why}"));
    ExitCode::from(1)
}
