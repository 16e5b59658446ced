//! The host's store agent (SPEC §11, `agent_socket`): a root daemon, `pam-totp-agent`, that
//! keeps a few TLS sessions to the store open and answers the module's [`wire`] requests over
//! a unix socket. It spares each login two TLS handshakes, two fresh database backends and the
//! loading of the client library; the decision stays in the module and the judging in the
//! database, and a request is answered exactly as the client library would answer it.
//!
//! This is the module's side, and the framing both sides use: a message is a little-endian
//! `u32` length and that many bytes of [`wire`] encoding; one request and one response per
//! connection. Trust: the peer must be root (`SO_PEERCRED`), checked before anything is sent;
//! the path comes only from the trusted `store.toml`. Every step runs under the caller's
//! deadline; nothing outlives the call (one socket, closed on return).
#![forbid(unsafe_code)]

use super::wire;
use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Largest request either side accepts (a report of offline use is the largest message).
pub const MAX_REQUEST: usize = 64 * 1024;

/// Why the agent gave no answer.
#[derive(Debug, PartialEq, Eq)]
pub enum AgentError {
    /// Nobody accepted the connection (no socket, nobody listening, backlog full): nothing
    /// was sent, so the caller may reach the store another way.
    NotReached(String),
    /// The request may have reached the agent: the call failed (fail closed).
    Failed(String),
}

/// The rule for the socket's directory (the agent binds only there, the module connects only
/// there): a directory of root's that nobody else can write, so that no other user can put a
/// socket, or anything else, at the path.
pub fn check_socket_dir(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .ok_or_else(|| format!("agent socket {}: no directory", path.display()))?;
    let d = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !d.is_dir() || d.uid() != 0 || d.mode() & 0o022 != 0 {
        return Err(format!(
            "{}: the agent socket's directory must be root's and writable by nobody else \
             (e.g. /run/pam-totp, mode 0755)",
            dir.display()
        ));
    }
    Ok(())
}

/// `bytes` as one frame: its length, then the bytes.
pub fn frame(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len() + 4));
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// The length announced by a frame's header, if it is at most `max`.
pub fn frame_len(header: [u8; 4], max: usize) -> Result<usize, String> {
    let n = u32::from_le_bytes(header) as usize;
    if n > max {
        return Err(format!("a message of {n} bytes (at most {max})"));
    }
    Ok(n)
}

/// Connects to the agent at `path` without blocking (a full backlog is "not reached", not a
/// wait) and checks that root listens there.
fn connect(path: &Path) -> Result<UnixStream, AgentError> {
    let not_reached =
        |e: Errno| AgentError::NotReached(format!("agent {}: {}", path.display(), e.desc()));
    let addr = UnixAddr::new(path).map_err(not_reached)?;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(not_reached)?;
    socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).map_err(not_reached)?;
    let cred = socket::getsockopt(&fd, sockopt::PeerCredentials)
        .map_err(|e| AgentError::Failed(format!("agent {}: {}", path.display(), e.desc())))?;
    if cred.uid() != 0 {
        return Err(AgentError::Failed(format!(
            "agent {}: the process listening there runs as uid {}, not root: refused (nothing \
             sent)",
            path.display(),
            cred.uid()
        )));
    }
    let s = UnixStream::from(fd);
    s.set_nonblocking(false)
        .map_err(|e| AgentError::Failed(format!("agent {}: {e}", path.display())))?;
    Ok(s)
}

/// Whether an agent listens at `path` and runs as root (`doctor`): connects and hangs up,
/// sending nothing.
pub fn probe(path: &Path) -> Result<(), AgentError> {
    connect(path).map(drop)
}

/// What is left until `deadline`, as a socket timeout (never zero, which would mean none).
fn left(deadline: Instant) -> Option<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    (!d.is_zero()).then_some(d)
}

fn read_full(s: &mut UnixStream, buf: &mut [u8], deadline: Instant) -> std::io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let t = left(deadline).ok_or(std::io::ErrorKind::TimedOut)?;
        s.set_read_timeout(Some(t))?;
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends one encoded request to the agent at `path` and returns its encoded response, all
/// within `deadline`.
pub fn ask(
    path: &Path,
    request: &[u8],
    deadline: Instant,
) -> Result<Zeroizing<Vec<u8>>, AgentError> {
    let mut s = connect(path)?;
    let fail = |what: &str, e: std::io::Error| {
        let why = match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                "no answer within the time budget".to_string()
            }
            std::io::ErrorKind::UnexpectedEof => "the agent closed the connection".to_string(),
            _ => e.to_string(),
        };
        AgentError::Failed(format!("agent {}: {what}: {why}", path.display()))
    };
    let t = left(deadline).ok_or_else(|| fail("send", std::io::ErrorKind::TimedOut.into()))?;
    s.set_write_timeout(Some(t)).map_err(|e| fail("send", e))?;
    s.write_all(&frame(request)).map_err(|e| fail("send", e))?;
    let mut header = [0u8; 4];
    read_full(&mut s, &mut header, deadline).map_err(|e| fail("answer", e))?;
    let n = frame_len(header, wire::MAX_RESPONSE)
        .map_err(|e| AgentError::Failed(format!("agent {}: {e}", path.display())))?;
    let mut body = Zeroizing::new(vec![0u8; n]);
    read_full(&mut s, &mut body, deadline).map_err(|e| fail("answer", e))?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("pam-totp-agent-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).unwrap();
        d
    }

    #[test]
    fn given_no_socket_then_not_reached() {
        let d = dir("none");
        let r = ask(
            &d.join("agent.sock"),
            b"x",
            Instant::now() + Duration::from_secs(1),
        );
        assert!(matches!(r, Err(AgentError::NotReached(_))), "{r:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn given_a_socket_nobody_listens_on_then_not_reached() {
        let d = dir("stale");
        let p = d.join("agent.sock");
        drop(UnixListener::bind(&p).unwrap());
        let r = ask(&p, b"x", Instant::now() + Duration::from_secs(1));
        assert!(matches!(r, Err(AgentError::NotReached(_))), "{r:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn given_a_silent_agent_then_failed_at_the_deadline() {
        let d = dir("silent");
        let p = d.join("agent.sock");
        let l = UnixListener::bind(&p).unwrap();
        let t = Instant::now();
        let r = ask(&p, b"x", t + Duration::from_millis(150));
        let took = t.elapsed();
        let root = nix::unistd::geteuid().is_root();
        match r {
            // Run as root, the listener is root's: the request is sent, nobody answers.
            Err(AgentError::Failed(e)) if root => {
                assert!(e.contains("no answer within the time budget"), "{e}");
                assert!(took >= Duration::from_millis(140), "{took:?}");
                assert!(took < Duration::from_millis(600), "{took:?}");
            }
            // Not root: the listener is not root's, refused before anything is sent.
            Err(AgentError::Failed(e)) => assert!(e.contains("not root"), "{e}"),
            other => panic!("{other:?}"),
        }
        drop(l);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn given_socket_directories_then_only_roots_unwritable_by_others_pass() {
        use std::os::unix::fs::PermissionsExt;
        let root = nix::unistd::geteuid().is_root();
        let d = dir("dirs");
        // /tmp: everyone may write there.
        assert!(check_socket_dir(Path::new("/tmp/agent.sock")).is_err());
        assert!(check_socket_dir(Path::new("agent.sock")).is_err());
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check_socket_dir(&d.join("agent.sock")).is_ok(), root);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(check_socket_dir(&d.join("agent.sock")).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn given_an_oversized_answer_then_refused() {
        assert!(frame_len(5000u32.to_le_bytes(), wire::MAX_RESPONSE).is_err());
        assert_eq!(frame_len(7u32.to_le_bytes(), wire::MAX_RESPONSE), Ok(7));
        assert_eq!(&frame(b"ab")[..], &[2, 0, 0, 0, b'a', b'b']);
    }
}
