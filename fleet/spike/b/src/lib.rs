//! Spike B: libpq (Debian libpq5) through a few extern "C" declarations, loaded with dlopen
//! only when called (a file-mode login never maps it). Asynchronous libpq API + poll(2), so
//! that the per-address timeout and the total budget are ours, in milliseconds.
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::time::{Duration, Instant};

extern "C" {
    fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void;
    fn dlsym(h: *mut c_void, name: *const c_char) -> *mut c_void;
    fn dlclose(h: *mut c_void) -> c_int;
    fn poll(fds: *mut PollFd, n: u64, timeout: c_int) -> c_int;
}
#[repr(C)]
struct PollFd {
    fd: c_int,
    events: i16,
    revents: i16,
}
const POLLIN: i16 = 1;
const POLLOUT: i16 = 4;
const RTLD_NOW: c_int = 2;
const RTLD_LOCAL: c_int = 0;

type Conn = c_void;
type Res = c_void;
struct Pq {
    h: *mut c_void,
    connect_start:
        unsafe extern "C" fn(*const *const c_char, *const *const c_char, c_int) -> *mut Conn,
    connect_poll: unsafe extern "C" fn(*mut Conn) -> c_int,
    status: unsafe extern "C" fn(*const Conn) -> c_int,
    socket: unsafe extern "C" fn(*const Conn) -> c_int,
    error: unsafe extern "C" fn(*const Conn) -> *const c_char,
    finish: unsafe extern "C" fn(*mut Conn),
    send: unsafe extern "C" fn(
        *mut Conn,
        *const c_char,
        c_int,
        *const u32,
        *const *const c_char,
        *const c_int,
        *const c_int,
        c_int,
    ) -> c_int,
    consume: unsafe extern "C" fn(*mut Conn) -> c_int,
    busy: unsafe extern "C" fn(*mut Conn) -> c_int,
    get_result: unsafe extern "C" fn(*mut Conn) -> *mut Res,
    result_status: unsafe extern "C" fn(*const Res) -> c_int,
    result_error: unsafe extern "C" fn(*const Res) -> *const c_char,
    ntuples: unsafe extern "C" fn(*const Res) -> c_int,
    getvalue: unsafe extern "C" fn(*const Res, c_int, c_int) -> *const c_char,
    clear: unsafe extern "C" fn(*mut Res),
}

unsafe fn load() -> Result<Pq, String> {
    let h = dlopen(c"libpq.so.5".as_ptr(), RTLD_NOW | RTLD_LOCAL);
    if h.is_null() {
        return Err("dlopen libpq.so.5 failed".into());
    }
    macro_rules! sym {
        ($n:literal) => {{
            let p = dlsym(h, concat!($n, "\0").as_ptr() as *const c_char);
            if p.is_null() {
                return Err(concat!("no symbol ", $n).into());
            }
            std::mem::transmute(p)
        }};
    }
    Ok(Pq {
        h,
        connect_start: sym!("PQconnectStartParams"),
        connect_poll: sym!("PQconnectPoll"),
        status: sym!("PQstatus"),
        socket: sym!("PQsocket"),
        error: sym!("PQerrorMessage"),
        finish: sym!("PQfinish"),
        send: sym!("PQsendQueryParams"),
        consume: sym!("PQconsumeInput"),
        busy: sym!("PQisBusy"),
        get_result: sym!("PQgetResult"),
        result_status: sym!("PQresultStatus"),
        result_error: sym!("PQresultErrorMessage"),
        ntuples: sym!("PQntuples"),
        getvalue: sym!("PQgetvalue"),
        clear: sym!("PQclear"),
    })
}

fn ms_left(until: Instant) -> c_int {
    until
        .saturating_duration_since(Instant::now())
        .as_millis()
        .min(i32::MAX as u128) as c_int
}

unsafe fn wait(fd: c_int, ev: i16, until: Instant) -> Result<(), String> {
    loop {
        let t = ms_left(until);
        if t == 0 {
            return Err("timeout".into());
        }
        let mut p = PollFd {
            fd,
            events: ev,
            revents: 0,
        };
        let r = poll(&mut p, 1, t);
        if r > 0 {
            return Ok(());
        }
        if r == 0 {
            return Err("timeout".into());
        }
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return Err("poll".into());
        }
    }
}
unsafe fn msg(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().trim().to_string()
    }
}

unsafe fn connect(
    pq: &Pq,
    dir: &str,
    ip: &str,
    port: &str,
    until: Instant,
) -> Result<*mut Conn, String> {
    let f = |n: &str| format!("{dir}/{n}");
    // Every parameter explicit, so that libpq takes nothing from PG* variables, service files,
    // ~/.pgpass or ~/.postgresql/ (fleet/README.md, "Choosing the client": what it still reads).
    let kv: Vec<(&str, String)> = vec![
        ("host", ip.into()),
        ("hostaddr", ip.into()),
        ("port", port.into()),
        ("dbname", "pamtotp".into()),
        ("user", "host-a".into()),
        ("password", "unused-cert-auth".into()),
        ("passfile", f("no-pgpass")), // a path that does not exist: no ~/.pgpass, no warning
        ("service", "".into()),       // ignored: libpq skips empty values, PGSERVICE is read
        ("options", "-c search_path=pg_catalog".into()),
        ("application_name", "pam_totp".into()),
        ("fallback_application_name", "pam_totp".into()),
        ("client_encoding", "UTF8".into()),
        ("connect_timeout", "0".into()), // ours, via poll()
        ("sslmode", "verify-full".into()),
        ("sslrootcert", f("ca.crt")),
        ("sslcert", f("host.crt")),
        ("sslkey", f("host.key")),
        ("sslcrl", f("no-crl")),
        ("sslcrldir", f("no-crl.d")),
        ("sslsni", "1".into()),
        ("sslpassword", "unused".into()),
        ("ssl_min_protocol_version", "TLSv1.2".into()),
        ("ssl_max_protocol_version", "TLSv1.3".into()),
        ("sslcompression", "0".into()),
        ("gssencmode", "disable".into()),
        ("krbsrvname", "postgres".into()),
        ("gsslib", "gssapi".into()),
        ("requirepeer", "postgres".into()),
        ("channel_binding", "disable".into()),
        ("target_session_attrs", "any".into()),
        ("keepalives", "1".into()),
        ("tcp_user_timeout", "0".into()),
        ("replication", "0".into()),
    ];
    let cs: Vec<(CString, CString)> = kv
        .iter()
        .map(|(k, v)| (CString::new(*k).unwrap(), CString::new(v.as_str()).unwrap()))
        .collect();
    let mut ks: Vec<*const c_char> = cs.iter().map(|c| c.0.as_ptr()).collect();
    let mut vs: Vec<*const c_char> = cs.iter().map(|c| c.1.as_ptr()).collect();
    ks.push(std::ptr::null());
    vs.push(std::ptr::null());
    let c = (pq.connect_start)(ks.as_ptr(), vs.as_ptr(), 0);
    if c.is_null() {
        return Err("out of memory".into());
    }
    if (pq.status)(c) == 1 {
        // CONNECTION_BAD already (e.g. ENETUNREACH): PQsocket would be -1
        let e = msg((pq.error)(c));
        (pq.finish)(c);
        return Err(e);
    }
    // PQconnectPoll loop: 1 reading, 2 writing, 3 ok, 0 failed
    let mut st = 2;
    loop {
        match st {
            3 => return Ok(c),
            0 => {
                let e = msg((pq.error)(c));
                (pq.finish)(c);
                return Err(e);
            }
            _ => {
                let fd = (pq.socket)(c);
                if let Err(e) = wait(fd, if st == 1 { POLLIN } else { POLLOUT }, until) {
                    (pq.finish)(c);
                    return Err(e);
                }
                st = (pq.connect_poll)(c);
            }
        }
    }
}

unsafe fn query(
    pq: &Pq,
    c: *mut Conn,
    sql: &CStr,
    params: &[&str],
    ncols: c_int,
    until: Instant,
) -> Result<Vec<String>, String> {
    let cs: Vec<CString> = params.iter().map(|p| CString::new(*p).unwrap()).collect();
    let vs: Vec<*const c_char> = cs.iter().map(|c| c.as_ptr()).collect();
    let types: Vec<u32> = params.iter().map(|_| 25u32).collect(); // text; casts in the SQL
    if (pq.send)(
        c,
        sql.as_ptr(),
        vs.len() as c_int,
        types.as_ptr(),
        vs.as_ptr(),
        std::ptr::null(),
        std::ptr::null(),
        0,
    ) == 0
    {
        return Err(msg((pq.error)(c)));
    }
    let mut out = Err("no result".to_string());
    loop {
        while (pq.busy)(c) != 0 {
            wait((pq.socket)(c), POLLIN, until)?;
            if (pq.consume)(c) == 0 {
                return Err(msg((pq.error)(c)));
            }
        }
        let r = (pq.get_result)(c);
        if r.is_null() {
            return out;
        }
        if (pq.result_status)(r) == 2 && (pq.ntuples)(r) == 1 {
            out = Ok((0..ncols).map(|i| msg((pq.getvalue)(r, 0, i))).collect());
        } else if out.is_err() || (pq.result_status)(r) != 2 {
            out = Err(msg((pq.result_error)(r)));
        }
        (pq.clear)(r);
    }
}

fn run(dir: &str, addrs: &str, per: Duration, total: Duration) -> Result<String, String> {
    let deadline = Instant::now() + total;
    unsafe {
        let pq = load()?;
        let mut errs = Vec::new();
        let mut res = None;
        for a in addrs.split(',') {
            let (ip, port) = a.rsplit_once(':').ok_or("addr")?;
            let until = (Instant::now() + per).min(deadline);
            match connect(&pq, dir, ip, port, until) {
                Ok(c) => {
                    let r = query(
                        &pq,
                        c,
                        c"SELECT pam_totp.check($1, $2, $3, $4::int)::text",
                        &["alice", "123456", "192.0.2.1", "1"],
                        1,
                        deadline,
                    )
                    .and_then(|t| {
                        query(
                            &pq,
                            c,
                            c"SELECT outcome, reason FROM pam_totp.outcome($1::uuid)",
                            &[&t[0]],
                            2,
                            deadline,
                        )
                    })
                    .map(|v| format!("{}: {}", v[0], v[1]));
                    (pq.finish)(c);
                    res = Some(r);
                    break;
                }
                Err(e) => errs.push(format!("{a}: {e}")),
            }
        }
        // Unload libpq; libcrypto/libssl stay mapped (OpenSSL pins itself and registers an
        // atexit handler), so OpenSSL's global state outlives the call.
        dlclose(pq.h);
        res.unwrap_or_else(|| Err(errs.join("; ")))
    }
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
