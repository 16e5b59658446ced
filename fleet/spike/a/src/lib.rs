//! Spike A: tokio-postgres + tokio-postgres-rustls (rustls, ring provider), one connection per
//! call inside a current-thread runtime that is built and dropped inside the call.
use std::ffi::{c_char, c_int, CStr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio_postgres::config::SslMode;
use tokio_postgres::types::Type;

fn tls(dir: &str) -> Result<rustls::ClientConfig, String> {
    let e = |w: &str, x: &dyn std::fmt::Display| format!("{w}: {x}");
    let mut roots = rustls::RootCertStore::empty(); // pinned CA only, no system roots
    for c in CertificateDer::pem_file_iter(format!("{dir}/ca.crt")).map_err(|x| e("ca", &x))? {
        roots
            .add(c.map_err(|x| e("ca", &x))?)
            .map_err(|x| e("ca", &x))?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{dir}/host.crt"))
            .map_err(|x| e("cert", &x))?
            .collect::<Result<_, _>>()
            .map_err(|x| e("cert", &x))?;
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/host.key")).map_err(|x| e("key", &x))?;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|x| e("tls", &x))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|x| e("client cert", &x))
}

async fn login(dir: &str, addrs: &str, per: Duration, deadline: Instant) -> Result<String, String> {
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls(dir)?);
    let mut errs = Vec::new();
    for a in addrs.split(',') {
        let (ip, port) = a.rsplit_once(':').ok_or("addr")?;
        let port: u16 = port.parse().map_err(|_| "port")?;
        let mut cfg = tokio_postgres::Config::new();
        // An IP literal: no DNS, so no blocking-pool thread; rustls checks it against the
        // certificate's IP SAN.
        cfg.host(ip)
            .port(port)
            .user("host-a")
            .dbname("pamtotp")
            .application_name("pam_totp")
            .ssl_mode(SslMode::Require) // verification is rustls's: pinned CA, verify-full
            .connect_timeout(per);
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(per.min(left), cfg.connect(connector.clone())).await {
            Ok(Ok((client, conn))) => {
                let h = tokio::spawn(conn);
                let r = calls(&client).await;
                drop(client);
                let _ = h.await;
                return r;
            }
            Ok(Err(x)) => errs.push(format!("{a}: {x}")),
            Err(_) => errs.push(format!("{a}: connect timeout")),
        }
    }
    Err(errs.join("; "))
}

async fn calls(c: &tokio_postgres::Client) -> Result<String, String> {
    let e = |x: tokio_postgres::Error| x.to_string();
    // query_typed: Parse/Bind/Execute/Sync in one round trip (no separate prepare).
    let row = c
        .query_typed(
            "SELECT pam_totp.check($1, $2, $3, $4)::text",
            &[
                (&"alice", Type::TEXT),
                (&"123456", Type::TEXT),
                (&"192.0.2.1", Type::TEXT),
                (&1i32, Type::INT4),
            ],
        )
        .await
        .map_err(e)?;
    let ticket: String = row.first().ok_or("no row")?.try_get(0).map_err(e)?;
    let row = c
        .query_typed(
            "SELECT outcome, reason FROM pam_totp.outcome($1::uuid)",
            &[(&ticket, Type::TEXT)],
        )
        .await
        .map_err(e)?;
    let r = row.first().ok_or("no row")?;
    let o: String = r.try_get(0).map_err(e)?;
    let why: String = r.try_get(1).map_err(e)?;
    Ok(format!("{o}: {why}"))
}

fn run(dir: &str, addrs: &str, per: Duration, total: Duration) -> Result<String, String> {
    let deadline = Instant::now() + total;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|x| format!("runtime: {x}"))?;
    let r =
        rt.block_on(async { tokio::time::timeout(total, login(dir, addrs, per, deadline)).await });
    drop(rt);
    r.unwrap_or_else(|_| Err("total budget exceeded".into()))
}

/// # Safety
/// C strings; `out` has `outlen` bytes.
#[no_mangle]
pub unsafe extern "C" fn spike_login(
    dir: *const c_char,
    addrs: *const c_char,
    per_ms: c_int,
    total_ms: c_int,
    out: *mut c_char,
    outlen: usize,
) -> c_int {
    let dir = CStr::from_ptr(dir).to_string_lossy().into_owned();
    let addrs = CStr::from_ptr(addrs).to_string_lossy().into_owned();
    let r = std::panic::catch_unwind(|| {
        run(
            &dir,
            &addrs,
            Duration::from_millis(per_ms as u64),
            Duration::from_millis(total_ms as u64),
        )
    })
    .unwrap_or_else(|_| Err("panic".into()));
    let (rc, s) = match r {
        Ok(s) => (0, s),
        Err(s) => (1, s),
    };
    let n = s.len().min(outlen.saturating_sub(1));
    std::ptr::copy_nonoverlapping(s.as_ptr(), out as *mut u8, n);
    *out.add(n) = 0;
    rc
}
