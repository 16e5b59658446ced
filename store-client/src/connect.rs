//! One way to the database for the module, the admin API and `doctor`: a fresh current-thread
//! runtime (no thread is ever started: no blocking pool work, no DNS — addresses are IP
//! literals), the addresses of `store.toml` tried in order, each within
//! `min(connect_timeout, time left)`, everything within one deadline.
#![forbid(unsafe_code)]

use pam_totp::fleet::{Endpoint, FleetError, StoreConfig, TlsFiles};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::{Severity, SqlState};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, Client, Connection, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// `application_name` of every session (the server's logs and `pg_stat_activity`).
const APPLICATION_NAME: &str = "pam_totp";

/// The current-thread runtime of one call (the module) or one admin session: I/O and timers
/// only. The caller drops it before returning, on every path.
pub(crate) fn runtime() -> Result<Runtime, FleetError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| FleetError(format!("cannot start the client runtime: {e}")))
}

/// How the connection is secured: rustls with the pinned CA, or nothing (a unix socket).
pub(crate) enum Tls {
    None,
    Rustls(MakeRustlsConnect),
}

impl Tls {
    pub(crate) fn new(files: Option<&TlsFiles>) -> Result<Tls, FleetError> {
        Ok(match files {
            Some(f) => Tls::Rustls(MakeRustlsConnect::new(crate::tls::client_config(f)?)),
            None => Tls::None,
        })
    }
}

/// What was tried so far, for the message when the deadline cuts a call short.
#[derive(Default)]
pub(crate) struct Trail {
    failed: Vec<String>,
    /// The address and step in progress ("10.0.0.1:5432: connect").
    at: String,
}

impl Trail {
    pub(crate) fn at(&mut self, label: &str, what: &str) {
        self.at = format!("{label}: {what}");
    }
    /// Records what went wrong at `label` before the next try.
    pub(crate) fn failed(&mut self, label: &str, why: &str) {
        self.failed.push(format!("{label}: {why}"));
    }
}

/// One open session: the client, and the connection task that drives its socket.
pub(crate) struct Session {
    pub(crate) client: Client,
    pub(crate) label: String,
    task: Driver,
    warnings: Warnings,
    /// The TCP socket (a second descriptor), to make [`Session::close`] graceful.
    socket: Option<OwnedFd>,
}

/// The task that drives a session's socket, stopped when the session is dropped: an
/// abandoned session's socket is then closed at once (and reset: [`abortive`]), instead of the
/// task trying to say goodbye to a server it cannot reach while the kernel keeps sending what
/// it holds.
pub(crate) struct Driver(JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The WARNINGs (and worse) the server sent on a session, as it sent them. The one that
/// matters: "canceling wait for synchronous replication" — a commit whose wait for the
/// synchronous standby was cancelled (an operator's pg_cancel_backend) returns success with
/// this warning, committed locally but not known to be on the standby (FLEET.md).
type Warnings = Arc<Mutex<Vec<String>>>;

impl Session {
    /// The warnings received so far (the connection task records each one before it hands on
    /// the messages that follow it, so after a statement's answer, every warning sent before
    /// that answer is here).
    pub(crate) fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .map(|w| w.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Forgets the warnings of earlier calls (a session the agent uses again).
    pub(crate) fn clear_warnings(&self) {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Ends the session politely (Terminate) within `deadline`; the runtime's drop ends it in
    /// any case.
    pub(crate) async fn close(self, deadline: Instant) {
        if let Some(fd) = &self.socket {
            let _ = socket2::SockRef::from(fd).set_linger(None);
        }
        drop(self.client);
        let mut task = self.task;
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, &mut task.0).await;
    }
}

/// Why a server that accepted the connection is not the one to use.
pub(crate) enum Refusal {
    /// A standby (in recovery): try the next address.
    Standby,
    /// Anything else: the call fails.
    Fail(String),
}

/// Whether `e` is a standby refusing a write.
pub(crate) fn is_standby(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
}

/// `e` in words: PostgreSQL's own message (and hint) for a server error, else the chain of
/// causes ("error connecting to server: Connection refused (os error 111)", "TLS: invalid
/// peer certificate: UnknownIssuer"). Never a parameter: tokio-postgres does not quote them.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return match db.hint() {
            Some(h) => format!("{} (hint: {h})", db.message()),
            None => db.message().to_string(),
        };
    }
    let mut s = e.to_string();
    if s == "error performing TLS handshake" {
        s = "TLS".into();
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let t = c.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cause = c.source();
    }
    s
}

/// Where one address leads: the TCP address and the name TLS verifies, or a unix socket.
enum Way {
    Tcp { addr: SocketAddr, tls_name: String },
    Socket,
}

/// Each address of `cfg` with its label as messages name it.
fn targets(cfg: &StoreConfig) -> Vec<(String, tokio_postgres::Config, Way)> {
    let mut base = tokio_postgres::Config::new();
    base.user(cfg.role.as_str())
        .dbname(cfg.database.as_str())
        .application_name(APPLICATION_NAME);
    match &cfg.endpoint {
        Endpoint::Tls {
            addresses,
            server_name,
            ..
        } => addresses
            .iter()
            .map(|a| {
                let mut c = base.clone();
                c.ssl_mode(SslMode::Require);
                let way = Way::Tcp {
                    addr: *a,
                    // The name rustls verifies the certificate against.
                    tls_name: server_name.clone().unwrap_or_else(|| a.ip().to_string()),
                };
                (a.to_string(), c, way)
            })
            .collect(),
        Endpoint::Socket { dir, port } => {
            let mut c = base;
            c.host_path(dir).port(*port).ssl_mode(SslMode::Disable);
            vec![(format!("{}/.s.PGSQL.{port}", dir.display()), c, Way::Socket)]
        }
    }
}

/// A server gone without a word is noticed within about a minute (the agent keeps sessions
/// open), not after the kernel's two hours: probes after 30 s of silence, every 5 s, 3 of
/// them; and data unacknowledged for 15 s ends the connection.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_EVERY: Duration = Duration::from_secs(5);
const KEEPALIVE_PROBES: u32 = 3;
const USER_TIMEOUT: Duration = Duration::from_secs(15);

async fn connect_one(
    pg: &mut tokio_postgres::Config,
    tls: &Tls,
    way: &Way,
    per: Duration,
) -> Result<(Client, JoinHandle<()>, Warnings, Option<OwnedFd>), String> {
    pg.connect_timeout(per);
    let warnings = Warnings::default();
    match (tls, way) {
        (Tls::Rustls(make), Way::Tcp { addr, tls_name }) => {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("error connecting to server: {e}"))?;
            let socket = abortive(&tcp).map_err(|e| format!("socket options: {e}"))?;
            let connector = MakeTlsConnect::<tokio::net::TcpStream>::make_tls_connect(
                &mut make.clone(),
                tls_name,
            )
            .map_err(|e| format!("TLS: {e}"))?;
            let (client, conn) = pg
                .connect_raw(tcp, connector)
                .await
                .map_err(|e| describe(&e))?;
            let task = tokio::spawn(drive(conn, warnings.clone()));
            Ok((client, task, warnings, Some(socket)))
        }
        (Tls::None, Way::Socket) => {
            let (client, conn) = pg.connect(NoTls).await.map_err(|e| describe(&e))?;
            Ok((
                client,
                tokio::spawn(drive(conn, warnings.clone())),
                warnings,
                None,
            ))
        }
        _ => Err("TLS settings do not match the address (internal error)".into()),
    }
}

/// Sets up a session's TCP socket: no Nagle delay, keepalives, and an abortive close (linger
/// 0) until [`Session::close`] says otherwise. A session dropped without that polite close —
/// its call failed or ran out of time — is reset at once, and whatever of it the kernel still
/// held (a `check` that could not be sent while the link was down) is discarded rather than
/// sent, and perhaps committed, minutes later. Returns a second descriptor of the socket.
fn abortive(tcp: &tokio::net::TcpStream) -> std::io::Result<OwnedFd> {
    tcp.set_nodelay(true)?;
    let fd = tcp.as_fd().try_clone_to_owned()?;
    let s = socket2::SockRef::from(&fd);
    s.set_tcp_keepalive(
        &socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_EVERY)
            .with_retries(KEEPALIVE_PROBES),
    )?;
    s.set_tcp_user_timeout(Some(USER_TIMEOUT))?;
    s.set_linger(Some(Duration::ZERO))?;
    Ok(fd)
}

/// Drives a connection's socket until it ends, keeping the server's warnings (what
/// `Connection`'s own `Future` would only log).
async fn drive<S, T>(mut conn: Connection<S, T>, warnings: Warnings)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(Ok(m)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
        if let AsyncMessage::Notice(n) = m {
            let grave = matches!(
                n.parsed_severity(),
                Some(Severity::Warning | Severity::Error | Severity::Fatal | Severity::Panic)
            );
            if grave {
                let mut w = warnings.lock().unwrap_or_else(|e| e.into_inner());
                w.push(n.message().to_string());
            }
        }
    }
}

/// Tries the addresses of `cfg` in order until one connects and `use_` accepts its server
/// (a [`Refusal::Standby`] moves on to the next address); returns `use_`'s answer and the
/// session. Connection failures move on too; a [`Refusal::Fail`] ends the call.
pub(crate) async fn first_usable<T>(
    cfg: &StoreConfig,
    tls: &Tls,
    deadline: Instant,
    trail: &RefCell<Trail>,
    mut use_: impl AsyncFnMut(&Session) -> Result<T, Refusal>,
) -> Result<(T, Session), FleetError> {
    let targets = targets(cfg);
    let n = targets.len();
    for (label, mut pg, way) in targets {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            trail
                .borrow_mut()
                .failed(&label, "not tried (no time left)");
            continue;
        }
        let per = cfg.connect_timeout.min(left);
        trail.borrow_mut().at(&label, "connect");
        let why = match tokio::time::timeout(per, connect_one(&mut pg, tls, &way, per)).await {
            Err(_) => format!("connect timeout after {} ms", per.as_millis()),
            Ok(Err(e)) => e,
            Ok(Ok((client, task, warnings, socket))) => {
                let session = Session {
                    client,
                    label,
                    task: Driver(task),
                    warnings,
                    socket,
                };
                match use_(&session).await {
                    Ok(t) => return Ok((t, session)),
                    Err(Refusal::Fail(why)) => {
                        return Err(FleetError(format!("{}: {why}", session.label)))
                    }
                    Err(Refusal::Standby) => {
                        let label = session.label.clone();
                        session.close(deadline).await;
                        trail
                            .borrow_mut()
                            .failed(&label, "in recovery (a read-only standby)");
                        continue;
                    }
                }
            }
        };
        trail.borrow_mut().failed(&label, &why);
    }
    let failed = std::mem::take(&mut trail.borrow_mut().failed);
    Err(FleetError(if n == 1 {
        // One address (and perhaps the agent's open session to it before).
        failed.join("; ")
    } else {
        format!("all {n} addresses failed: {}", failed.join("; "))
    }))
}

/// Runs `work` on `rt` until `deadline` (the whole call: connects, statements, failover).
pub(crate) fn until<T>(
    rt: &Runtime,
    deadline: Instant,
    budget: Duration,
    work: impl AsyncFnOnce(&RefCell<Trail>) -> Result<T, FleetError>,
) -> Result<T, FleetError> {
    let trail = RefCell::new(Trail::default());
    let left = deadline.saturating_duration_since(Instant::now());
    let r = rt.block_on(async { tokio::time::timeout(left, work(&trail)).await });
    r.unwrap_or_else(|_| Err(out_of_time(budget, &trail)))
}

/// The failure of a call cut short by its deadline: where it was, and what failed before.
pub(crate) fn out_of_time(budget: Duration, trail: &RefCell<Trail>) -> FleetError {
    let t = trail.borrow();
    let mut msg = format!(
        "no answer within the time budget of {} ms ({})",
        budget.as_millis(),
        t.at
    );
    if !t.failed.is_empty() {
        msg.push_str(&format!("; before: {}", t.failed.join("; ")));
    }
    FleetError(msg)
}
