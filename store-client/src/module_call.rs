//! The module's call (SPEC §11): one login's question to the store, within what is left of the
//! PAM call's time budget. `store.toml` and the TLS files are read here with the module's trust
//! rules (never another file, never an environment variable); the runtime, the connection and
//! everything else live only for the call.
#![forbid(unsafe_code)]

use crate::connect::{self, Refusal, Session, Tls, Trail};
use pam_totp::fleet::wire::{self, Call, Request, Response};
use pam_totp::fleet::{
    CheckResult, FleetEnrolment, FleetError, OfflineApplied, Outcome, StoreConfig,
};
use pam_totp::names::UserName;
use pam_totp::store::OfflineReport;
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// How long a session may take to close once the call has its answer.
const CLOSE_LIMIT: Duration = Duration::from_millis(100);
use tokio_postgres::types::Type;
use tokio_postgres::Row;

/// Answers `req`: reads `req.config`, connects (addresses in order, a standby skipped), runs
/// the call and closes everything before returning. Any failure is [`Response::Failed`] with a
/// text for the log (it names the address and what failed; never the answer or a secret).
pub fn call(req: &Request) -> Response {
    match answer(req) {
        Ok(r) => r,
        Err(e) => Response::Failed(e),
    }
}

fn answer(req: &Request) -> Result<Response, FleetError> {
    let started = Instant::now();
    let cfg = StoreConfig::load(&req.config, req.owner).map_err(|e| FleetError(e.to_string()))?;
    let budget = req.remaining.min(cfg.budget);
    let deadline = started + budget;
    let tls = {
        let files = cfg
            .tls_files(req.owner)
            .map_err(|e| FleetError(e.to_string()))?;
        Tls::new(files.as_ref())?
    };
    let rt = connect::runtime()?;
    let r = connect::until(&rt, deadline, budget, async |trail: &RefCell<Trail>| {
        connect::first_usable(&cfg, &tls, deadline, trail, async |s| {
            run(s, &req.call, trail).await
        })
        .await
    });
    // The answer is in hand (a check is committed): closing the session politely gets a short
    // bound of its own and cannot turn the answer into a failure.
    let r = r.map(|(r, session)| {
        rt.block_on(session.close(Instant::now() + CLOSE_LIMIT));
        r
    });
    drop(rt);
    r
}

/// One call on an open session (the module's own session, or one the agent keeps).
pub(crate) async fn run(
    s: &Session,
    call: &Call,
    trail: &RefCell<Trail>,
) -> Result<Response, Refusal> {
    match call {
        Call::Enrolment { user } => {
            trail.borrow_mut().at(&s.label, "enrolment");
            enrolment(s, user).await.map(Response::Enrolment)
        }
        Call::Check {
            user,
            answer,
            rhost,
            window,
            shown_at,
        } => {
            trail.borrow_mut().at(&s.label, "check");
            let answer = answer.as_deref().map(|a| a.as_str());
            let ticket = check(s, user, answer, rhost, *window, *shown_at).await?;
            trail.borrow_mut().at(&s.label, "outcome");
            let r = outcome(s, &ticket).await?;
            // outcome's answer follows the check's ReadyForQuery, so any warning its commit
            // drew is recorded by now. A commit whose wait for the synchronous standby was
            // cancelled succeeds with a warning and is committed only locally: not
            // acknowledged, so never a success (SPEC §11).
            if let Some(w) = s.warnings().first() {
                return Err(Refusal::Fail(format!(
                    "pam_totp.check: the server warned: {w} (the check is not known to be \
                     replicated: denied)"
                )));
            }
            Ok(Response::Check(r))
        }
        Call::ReportOffline { user, report } => {
            trail.borrow_mut().at(&s.label, "report_offline");
            report_offline(s, user, report)
                .await
                .map(Response::Reported)
        }
    }
}

fn failed(what: &str, e: &tokio_postgres::Error) -> Refusal {
    if connect::is_standby(e) {
        Refusal::Standby
    } else {
        Refusal::Fail(format!("{what}: {}", connect::describe(e)))
    }
}

fn one_row(what: &str, rows: Vec<Row>) -> Result<Row, Refusal> {
    let mut rows = rows.into_iter();
    match (rows.next(), rows.next()) {
        (Some(r), None) => Ok(r),
        _ => Err(Refusal::Fail(format!("{what}: not exactly one row"))),
    }
}

/// Column `i` of `row`, NULL as the type's default (0, ""), as the contract's "0 = none".
fn col<'a, T>(what: &str, row: &'a Row, i: usize) -> Result<T, Refusal>
where
    T: tokio_postgres::types::FromSql<'a> + Default,
{
    row.try_get::<_, Option<T>>(i)
        .map(Option::unwrap_or_default)
        .map_err(|e| Refusal::Fail(format!("{what}: {}", connect::describe(&e))))
}

fn unsigned<T: TryFrom<i64>>(what: &str, name: &str, v: i64) -> Result<T, Refusal> {
    T::try_from(v).map_err(|_| Refusal::Fail(format!("{what}: {name} {v} out of range")))
}

async fn enrolment(s: &Session, user: &UserName) -> Result<FleetEnrolment, Refusal> {
    const W: &str = "pam_totp.enrolment";
    // A standby answers this read-only call too, but from the past and without being able to
    // take the check after the prompt: skipped here, before the user is asked.
    let rows = s
        .client
        .query_typed(
            "SELECT enrolment, digits, db_time, pg_catalog.pg_is_in_recovery() \
             FROM pam_totp.enrolment($1)",
            &[(&user.as_str(), Type::TEXT)],
        )
        .await
        .map_err(|e| failed(W, &e))?;
    let row = one_row(W, rows)?;
    if col::<bool>(W, &row, 3)? {
        return Err(Refusal::Standby);
    }
    let name: String = col(W, &row, 0)?;
    Ok(FleetEnrolment {
        enrolment: wire::enrolment_from_name(&name)
            .ok_or_else(|| Refusal::Fail(format!("{W}: unknown enrolment {name:?}")))?,
        digits: unsigned(W, "digits", i64::from(col::<i32>(W, &row, 1)?))?,
        db_time: unsigned(W, "db_time", col(W, &row, 2)?)?,
    })
}

async fn check(
    s: &Session,
    user: &UserName,
    answer: Option<&str>,
    rhost: &Option<String>,
    window: u32,
    shown_at: u64,
) -> Result<String, Refusal> {
    const W: &str = "pam_totp.check";
    let window = i32::try_from(window).unwrap_or(i32::MAX);
    let shown_at = i64::try_from(shown_at).unwrap_or(i64::MAX);
    let rows = s
        .client
        .query_typed(
            "SELECT pam_totp.check($1, $2, $3, $4, $5)::text",
            &[
                (&user.as_str(), Type::TEXT),
                (&answer, Type::TEXT),
                (&rhost.as_deref(), Type::TEXT),
                (&window, Type::INT4),
                (&shown_at, Type::INT8),
            ],
        )
        .await
        .map_err(|e| failed(W, &e))?;
    let ticket: String = col(W, &one_row(W, rows)?, 0)?;
    if ticket.is_empty() {
        return Err(Refusal::Fail(format!("{W}: no ticket")));
    }
    Ok(ticket)
}

async fn report_offline(
    s: &Session,
    user: &UserName,
    report: &OfflineReport,
) -> Result<OfflineApplied, Refusal> {
    const W: &str = "pam_totp.report_offline";
    let step = report
        .last_step
        .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let rows = s
        .client
        .query_typed(
            "SELECT applied_step, burned FROM pam_totp.report_offline($1, $2, $3)",
            &[
                (&user.as_str(), Type::TEXT),
                (&step, Type::INT8),
                (&report.burned, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(|e| failed(W, &e))?;
    let row = one_row(W, rows)?;
    let applied: Option<i64> = row
        .try_get(0)
        .map_err(|e| Refusal::Fail(format!("{W}: {}", connect::describe(&e))))?;
    Ok(OfflineApplied {
        applied_step: applied
            .map(|v| unsigned(W, "applied_step", v))
            .transpose()?,
        burned: unsigned(W, "burned", i64::from(col::<i32>(W, &row, 1)?))?,
    })
}

async fn outcome(s: &Session, ticket: &str) -> Result<CheckResult, Refusal> {
    const W: &str = "pam_totp.outcome";
    let rows = s
        .client
        .query_typed(
            "SELECT outcome, reason, step, clock_offset, last_step, failures, locked_until, \
             recovery_left, db_time FROM pam_totp.outcome($1::uuid)",
            &[(&ticket, Type::TEXT)],
        )
        .await
        .map_err(|e| failed(W, &e))?;
    let row = one_row(W, rows)?;
    let name: String = col(W, &row, 0)?;
    let int = |i: usize| col::<i32>(W, &row, i).map(i64::from);
    let big = |i: usize| col::<i64>(W, &row, i);
    Ok(CheckResult {
        outcome: Outcome::parse(&name)
            .ok_or_else(|| Refusal::Fail(format!("{W}: unknown outcome {name:?}")))?,
        step: unsigned(W, "step", big(2)?)?,
        clock_offset: int(3)?,
        last_step: unsigned(W, "last_step", big(4)?)?,
        failures: unsigned(W, "failures", int(5)?)?,
        locked_until: unsigned(W, "locked_until", big(6)?)?,
        recovery_left: unsigned(W, "recovery_left", int(7)?)?,
        db_time: unsigned(W, "db_time", big(8)?)?,
    })
}

/// Test fixtures shared by this crate's unit tests.
#[cfg(test)]
pub(crate) mod test_dir {
    use pam_totp::fleet::wire::{Call, Request};
    use pam_totp::names::UserName;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::PathBuf;
    use std::time::Duration;
    use zeroize::Zeroizing;

    /// A private directory in /tmp with store.toml and the test TLS files, owned by whoever
    /// runs the test (passed as the trusted owner), removed on drop.
    pub(crate) struct Dir(pub(crate) PathBuf);

    impl Dir {
        pub(crate) fn new(tag: &str, body: &str) -> Dir {
            let d =
                std::env::temp_dir().join(format!("pam-totp-store-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir(&d).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
            let dir = Dir(d);
            for (name, text, mode) in [
                ("ca.crt", include_str!("../testdata/ca.crt"), 0o644),
                ("host.crt", include_str!("../testdata/host.crt"), 0o644),
                ("host.key", include_str!("../testdata/host.key"), 0o600),
            ] {
                dir.write(name, text, mode);
            }
            let p = dir.0.display().to_string();
            dir.write(
                "store.toml",
                &format!(
                    "backend = \"postgresql\"\ndatabase = \"pamtotp\"\nrole = \"host-a\"\n\
                     ca = \"{p}/ca.crt\"\ncert = \"{p}/host.crt\"\nkey = \"{p}/host.key\"\n{body}"
                ),
                0o600,
            );
            dir
        }
        pub(crate) fn write(&self, name: &str, text: &str, mode: u32) {
            let f = self.0.join(name);
            std::fs::write(&f, text).unwrap();
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        pub(crate) fn request(&self, remaining_ms: u64) -> Request {
            Request {
                config: self.0.join("store.toml"),
                owner: std::fs::metadata(&self.0).unwrap().uid(),
                remaining: Duration::from_millis(remaining_ms),
                call: Call::Check {
                    user: UserName::new("alice").unwrap(),
                    answer: Some(Zeroizing::new("123456".into())),
                    rhost: None,
                    window: 1,
                    shown_at: 0,
                },
            }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_dir::Dir;
    use super::*;
    use std::time::Duration;

    fn failed(req: &Request) -> (String, Duration) {
        let t = Instant::now();
        match call(req) {
            Response::Failed(e) => (e.0, t.elapsed()),
            other => panic!("not Failed: {other:?}"),
        }
    }

    #[test]
    fn given_a_missing_store_toml_then_failed_naming_the_path() {
        let req = Request {
            config: "/nonexistent-pam-totp/store.toml".into(),
            ..Dir::new("missing", "addresses = [\"127.0.0.1:1\"]\n").request(1000)
        };
        let (e, _) = failed(&req);
        assert!(e.contains("/nonexistent-pam-totp/store.toml"), "{e}");
    }

    #[test]
    fn given_a_refused_address_then_failed_within_the_budget() {
        let dir = Dir::new(
            "refused",
            "addresses = [\"127.0.0.1:1\"]\nbudget_ms = 2000\n",
        );
        let (e, took) = failed(&dir.request(5000));
        assert!(e.starts_with("127.0.0.1:1: "), "{e}");
        assert!(e.contains("refused"), "{e}");
        assert!(!e.contains("123456"), "{e}");
        assert!(took < Duration::from_millis(2000), "{took:?}");
    }

    #[test]
    fn given_two_refused_addresses_then_both_named() {
        let dir = Dir::new(
            "refused2",
            "addresses = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n",
        );
        let (e, _) = failed(&dir.request(3000));
        assert!(
            e.starts_with("all 2 addresses failed: 127.0.0.1:1: "),
            "{e}"
        );
        assert!(e.contains("; 127.0.0.1:2: "), "{e}");
    }

    #[test]
    fn given_a_silent_listener_then_connect_timeout_then_next_address() {
        // The kernel completes the handshake; nobody ever answers the SSLRequest.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = silent.local_addr().unwrap();
        let dir = Dir::new(
            "silent",
            &format!(
                "addresses = [\"{a}\", \"127.0.0.1:1\"]\nconnect_timeout_ms = 100\n\
                 budget_ms = 1000\n"
            ),
        );
        let (e, took) = failed(&dir.request(5000));
        assert!(
            e.contains(&format!("{a}: connect timeout after 100 ms; 127.0.0.1:1: ")),
            "{e}"
        );
        assert!(took < Duration::from_millis(900), "{took:?}");
    }

    #[test]
    fn given_little_time_left_then_the_remaining_time_bounds_the_call() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = silent.local_addr().unwrap();
        let dir = Dir::new("remaining", &format!("addresses = [\"{a}\"]\n"));
        let (e, took) = failed(&dir.request(150));
        assert!(e.contains(&a.to_string()), "{e}");
        assert!(took >= Duration::from_millis(140), "{took:?}");
        assert!(took < Duration::from_millis(600), "{took:?}");
    }

    #[test]
    fn given_a_socket_directory_without_a_server_then_failed() {
        let dir = Dir::new("socket", "");
        let p = dir.0.display().to_string();
        dir.write(
            "store.toml",
            &format!(
                "backend = \"postgresql\"\ndatabase = \"pamtotp\"\nrole = \"host-a\"\n\
                 socket = \"{p}\"\nport = 5999\n"
            ),
            0o600,
        );
        let (e, _) = failed(&dir.request(1000));
        assert!(e.starts_with(&format!("{p}/.s.PGSQL.5999: ")), "{e}");
    }
}
