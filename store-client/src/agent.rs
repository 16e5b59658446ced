//! `pam-totp-agent` (SPEC §11, `agent_socket`): the host's root daemon that keeps a few TLS
//! sessions to the store open and answers the module's requests ([`pam_totp::fleet::agent`]
//! frames of [`pam_totp::fleet::wire`] messages) on the unix socket `store.toml` names.
//!
//! It runs the very statements of [`crate::module_call`], with the same rules: the deadline
//! of the request (what is left of the login's budget, at most `budget_ms`), a standby
//! skipped, a check answered only from `outcome` after its commit, a server warning on that
//! commit a failure. What differs is only where the session comes from: an idle one of an
//! earlier request, or a new one when none is idle. A session whose call failed or ran out of
//! time is closed, never reused; a `check` is never retried (it may have been committed), an
//! `enrolment` on a reused session that fails is tried once more on a new one.
//!
//! Trust: only root may connect (the socket is 0600 in a directory only root can write, and
//! each peer's `SO_PEERCRED` is checked); a request must name this agent's `store.toml`.
//! `store.toml` and its TLS files are read with the module's trust rules and read again when
//! any of them changes (a new certificate, a new address list): sessions of the old
//! configuration are then closed.
#![forbid(unsafe_code)]

use crate::connect::{self, Refusal, Session, Tls, Trail};
use crate::module_call::run;
use pam_totp::fleet::agent::{check_socket_dir, frame, frame_len, MAX_REQUEST};
use pam_totp::fleet::wire::{Call, Request, Response};
use pam_totp::fleet::{Endpoint, FleetError, StoreConfig};
use std::cell::{Cell, RefCell};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

/// How long a connected module may take to send its request (it sends it at once), and to
/// take the answer.
const REQUEST_LIMIT: Duration = Duration::from_secs(2);
/// Most sessions one agent keeps by default.
pub const DEFAULT_SESSIONS: usize = 2;
/// A session unused this long is closed (a quiet host holds no backend on the server).
const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// Most module connections served at once; beyond it the agent stops accepting, the kernel's
/// backlog fills, and modules connect to the store themselves.
const MAX_CLIENTS: usize = 256;

/// One line on stderr (the journal). Never panics: a closed stderr loses the line, nothing
/// else.
pub fn log(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "pam-totp-agent: {line}");
}

/// Files whose change makes the agent read its configuration again: identity, times, size.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Stamp(Vec<(u64, u64, i64, i64, i64, i64, u64)>);

fn stamp(paths: &[&Path]) -> Stamp {
    Stamp(
        paths
            .iter()
            .map(|p| match std::fs::symlink_metadata(p) {
                Ok(m) => (
                    m.dev(),
                    m.ino(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.ctime(),
                    m.ctime_nsec(),
                    m.size(),
                ),
                Err(_) => (0, 0, 0, 0, 0, 0, 0),
            })
            .collect(),
    )
}

fn watched(cfg: &StoreConfig) -> Vec<&Path> {
    let mut v = vec![cfg.path.as_path()];
    if let Endpoint::Tls { ca, cert, key, .. } = &cfg.endpoint {
        v.extend([ca.as_path(), cert.as_path(), key.as_path()]);
    }
    v
}

/// A configuration as read, with what it was read from.
struct Loaded {
    cfg: StoreConfig,
    tls: Tls,
    stamp: Stamp,
    generation: u64,
}

fn load(path: &Path, generation: u64) -> Result<Loaded, String> {
    // Each file's stamp is taken before it is read: one changed while it was being read
    // differs from its stamp, and is read again at the next request.
    let mut stamp = self::stamp(&[path]);
    let cfg = StoreConfig::load(path, 0).map_err(|e| e.to_string())?;
    cfg.check_module_endpoint()?;
    stamp.0.extend(self::stamp(&watched(&cfg)[1..]).0);
    let files = cfg.tls_files(0).map_err(|e| e.to_string())?;
    let tls = Tls::new(files.as_ref()).map_err(|e| e.0)?;
    Ok(Loaded {
        cfg,
        tls,
        stamp,
        generation,
    })
}

/// An idle session: the configuration it belongs to, and since when it is idle.
struct Idle {
    generation: u64,
    since: Instant,
    session: Session,
}

/// The agent's state (one thread: a current-thread runtime and a `LocalSet`).
pub struct Agent {
    config: PathBuf,
    loaded: RefCell<Result<Rc<Loaded>, String>>,
    generations: Cell<u64>,
    idle: RefCell<Vec<Idle>>,
    sessions: Semaphore,
}

impl Agent {
    /// Reads `config` (it must be valid and name `agent_socket`).
    pub fn new(config: &Path, sessions: usize) -> Result<(Agent, PathBuf), String> {
        let loaded = load(config, 0)?;
        let socket = loaded.cfg.agent_socket.clone().ok_or_else(|| {
            format!(
                "{}: agent_socket is not set (the agent listens where store.toml says)",
                config.display()
            )
        })?;
        Ok((
            Agent {
                config: config.to_path_buf(),
                loaded: RefCell::new(Ok(Rc::new(loaded))),
                generations: Cell::new(0),
                idle: RefCell::new(Vec::new()),
                sessions: Semaphore::new(sessions.max(1)),
            },
            socket,
        ))
    }

    /// The configuration now: read again if any of its files changed since.
    fn current(&self) -> Result<Rc<Loaded>, String> {
        let changed = match &*self.loaded.borrow() {
            Ok(l) => stamp(&watched(&l.cfg)) != l.stamp,
            Err(_) => true,
        };
        if changed {
            let g = self.generations.get() + 1;
            self.generations.set(g);
            self.idle.borrow_mut().clear();
            let fresh = load(&self.config, g).map(Rc::new);
            let was = self.loaded.borrow().as_ref().err().cloned();
            match &fresh {
                Ok(_) => log(format_args!("{}: read again", self.config.display())),
                // Once per distinct error, not once per login.
                Err(e) if was.as_ref() != Some(e) => {
                    log(format_args!("{e} (every request fails until it is fixed)"))
                }
                Err(_) => {}
            }
            *self.loaded.borrow_mut() = fresh;
        }
        self.loaded.borrow().clone()
    }

    /// The most recently used idle session of this configuration that is still open.
    fn idle_session(&self, generation: u64) -> Option<Session> {
        let mut idle = self.idle.borrow_mut();
        while let Some(i) = idle.pop() {
            if i.generation == generation
                && !i.session.client.is_closed()
                && i.since.elapsed() < IDLE_LIMIT
            {
                return Some(i.session);
            }
        }
        None
    }

    fn keep(&self, generation: u64, session: Session) {
        self.idle.borrow_mut().push(Idle {
            generation,
            since: Instant::now(),
            session,
        });
    }

    /// Closes the sessions idle for [`IDLE_LIMIT`] (reset, as any session dropped).
    fn expire(&self) {
        self.idle
            .borrow_mut()
            .retain(|i| i.since.elapsed() < IDLE_LIMIT && !i.session.client.is_closed());
    }

    /// Answers one request (never panics into the caller: errors are `Failed`).
    pub async fn answer(&self, req: &Request) -> Response {
        match self.try_answer(req).await {
            Ok(r) => r,
            Err(e) => Response::Failed(e),
        }
    }

    async fn try_answer(&self, req: &Request) -> Result<Response, FleetError> {
        let started = Instant::now();
        if req.config != self.config {
            return Err(FleetError(format!(
                "the agent serves {}, not {}",
                self.config.display(),
                req.config.display()
            )));
        }
        let l = self.current().map_err(FleetError)?;
        let budget = req.remaining.min(l.cfg.budget);
        let deadline = started + budget;
        let _permit = tokio::time::timeout(budget, self.sessions.acquire())
            .await
            .map_err(|_| {
                FleetError(format!(
                    "no free session to the store within the time budget of {} ms",
                    budget.as_millis()
                ))
            })?
            .map_err(|_| FleetError("the agent is stopping".into()))?;
        let trail = RefCell::new(Trail::default());
        let enrolment = matches!(req.call, Call::Enrolment { .. });
        if let Some(s) = self.idle_session(l.generation) {
            s.clear_warnings();
            let left = deadline.saturating_duration_since(Instant::now());
            // An enrolment (read-only) on a session that may have died quietly gets what a new
            // connection would get; then a new session has the rest.
            let limit = if enrolment {
                left.min(l.cfg.connect_timeout)
            } else {
                left
            };
            match tokio::time::timeout(limit, run(&s, &req.call, &trail)).await {
                Ok(Ok(r)) => return Ok(self.after(l.generation, s, &req.call, r).await),
                Ok(Err(Refusal::Fail(why))) if !enrolment => {
                    return Err(FleetError(format!("{}: {why}", s.label)));
                }
                Err(_) if !enrolment => return Err(connect::out_of_time(budget, &trail)),
                // A standby (nothing was written), or an enrolment on a session that went bad
                // or silent: a new session, as for a first request.
                Ok(Err(Refusal::Fail(why))) => {
                    trail
                        .borrow_mut()
                        .failed(&s.label, &format!("open session: {why}"));
                }
                Err(_) => trail.borrow_mut().failed(
                    &s.label,
                    &format!("open session: no answer within {} ms", limit.as_millis()),
                ),
                Ok(Err(Refusal::Standby)) => {}
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let fresh = tokio::time::timeout(
            left,
            connect::first_usable(&l.cfg, &l.tls, deadline, &trail, async |s| {
                run(s, &req.call, &trail).await
            }),
        )
        .await;
        match fresh {
            Ok(Ok((r, s))) => Ok(self.after(l.generation, s, &req.call, r).await),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(connect::out_of_time(budget, &trail)),
        }
    }

    /// Keeps a session that answered, except after `report_offline`: its answer comes before
    /// its commit's end, so a warning of that commit could reach the next call on the session;
    /// it is closed instead (rare: the first contact after a host was offline).
    async fn after(&self, generation: u64, s: Session, call: &Call, r: Response) -> Response {
        if matches!(call, Call::ReportOffline { .. }) {
            s.close(Instant::now() + CLOSE_LIMIT).await;
        } else {
            self.keep(generation, s);
        }
        r
    }
}

/// How long a session closed politely may take.
const CLOSE_LIMIT: Duration = Duration::from_millis(100);

/// Binds `path` for root alone, in a directory that passes [`check_socket_dir`]: the socket
/// is made under a temporary name, given mode 0600, then renamed over `path` (an old socket
/// there is replaced; anything else is refused), so it is never reachable with another mode.
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, String> {
    let what = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    check_socket_dir(path)?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {}
        Ok(_) => {
            return Err(format!(
                "{}: exists and is not a socket: not replaced",
                path.display()
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(what(path, e)),
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let l = std::os::unix::net::UnixListener::bind(&tmp).map_err(|e| what(&tmp, e))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(what(path, e));
    }
    l.set_nonblocking(true).map_err(|e| what(path, e))?;
    Ok(l)
}

/// Serves `listener` until the process ends; tells systemd it is ready and, while the loop
/// runs, that it is alive ([`crate::notify`]).
pub async fn serve(agent: Rc<Agent>, listener: std::os::unix::net::UnixListener) -> String {
    let listener = match UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return format!("listen: {e}"),
    };
    let clients = std::sync::Arc::new(Semaphore::new(MAX_CLIENTS));
    let sweeper = agent.clone();
    tokio::task::spawn_local(async move {
        loop {
            tokio::time::sleep(IDLE_LIMIT / 4).await;
            sweeper.expire();
        }
    });
    crate::notify::ready();
    tokio::task::spawn_local(crate::notify::keep_alive());
    loop {
        // At most MAX_CLIENTS at once: past that the backlog holds the rest, then refuses.
        let Ok(permit) = clients.clone().acquire_owned().await else {
            return "stopping".into();
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let agent = agent.clone();
                tokio::task::spawn_local(async move {
                    one_connection(&agent, stream).await;
                    drop(permit);
                });
            }
            // Out of descriptors or the like: wait a little rather than spin.
            Err(e) => {
                log(format_args!("accept: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn one_connection(agent: &Agent, mut stream: UnixStream) {
    match stream.peer_cred() {
        Ok(c) if c.uid() == 0 => {}
        Ok(c) => {
            log(format_args!(
                "refused a connection from uid {} (only root may ask)",
                c.uid()
            ));
            return;
        }
        Err(e) => {
            log(format_args!("peer credentials: {e}"));
            return;
        }
    }
    let request = match tokio::time::timeout(REQUEST_LIMIT, read_request(&mut stream)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(FleetError(e)),
        Err(_) => return,
    };
    let response = match request {
        Ok(req) => agent.answer(&req).await,
        Err(e) => Response::Failed(e),
    };
    let _ = tokio::time::timeout(REQUEST_LIMIT, stream.write_all(&frame(&response.encode()))).await;
}

/// One framed request: `Ok(Err)` when the bytes are not a request (answered as `Failed`).
async fn read_request(s: &mut UnixStream) -> Result<Result<Request, FleetError>, String> {
    let mut header = [0u8; 4];
    s.read_exact(&mut header).await.map_err(|e| e.to_string())?;
    let n = frame_len(header, MAX_REQUEST)?;
    let mut body = zeroize::Zeroizing::new(vec![0u8; n]);
    s.read_exact(&mut body).await.map_err(|e| e.to_string())?;
    Ok(Request::decode(&body).map_err(|e| FleetError(format!("invalid request: {e}"))))
}
