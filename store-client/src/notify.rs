//! systemd's notification protocol (sd_notify(3)) for `pam-totp-agent` under `Type=notify`:
//! `READY=1` once it listens, `WATCHDOG=1` while its thread runs (`WatchdogSec=`), so that an
//! agent that stops running — not only one that exits — is restarted. The two variables read
//! are systemd's own (`NOTIFY_SOCKET`, `WATCHDOG_USEC`); without them nothing is sent.
#![forbid(unsafe_code)]

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

fn send(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(Path::new(&path)),
    };
    if let (Ok(addr), Ok(sock)) = (addr, UnixDatagram::unbound()) {
        let _ = sock.send_to_addr(msg.as_bytes(), &addr);
    }
}

/// The agent listens.
pub fn ready() {
    send("READY=1");
}

/// Tells systemd every third of `WATCHDOG_USEC` that the agent's thread still runs (as a task
/// of that thread: a thread that hangs stops telling).
pub async fn keep_alive() {
    let Some(usec) = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    let every = Duration::from_micros(usec / 3).max(Duration::from_millis(100));
    loop {
        send("WATCHDOG=1");
        tokio::time::sleep(every).await;
    }
}
