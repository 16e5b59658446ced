#!/usr/bin/env bash
# fleet/spike/run.sh — the client measurement spike (fleet/README.md, "Choosing the client").
# As root. Builds the three prototypes (cargo, from crates.io) and a C driver, makes a CA, a
# server and a host certificate, starts a throwaway PostgreSQL 15 cluster with TLS (hostssl,
# cert clientcert=verify-full) inside a private network namespace, applies fleet/sql, adds a
# host role and an enrolled user, then measures: latency (N fresh processes each), callgrind
# instructions (one call each), sizes and relocations, environment variables read, faults.
# Leaves nothing behind (trap): the namespace, the cluster and the temp directory go.
# Environment: N (default 200), PG_BIN (default /usr/lib/postgresql/15/bin).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
N=${N:-200}
NSNAME=pamtotp-spike-$$
T=$(mktemp -d /tmp/pamtotp-spike.XXXXXX)
NS="ip netns exec $NSNAME"
cleanup() {
    [[ -n ${SILENT:-} ]] && kill "$SILENT" 2>/dev/null
    [[ -f $T/data/postmaster.pid ]] &&
        $NS runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$T/data" -m immediate -w stop >/dev/null 2>&1
    ip netns del "$NSNAME" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

echo "== build"
for v in base a b; do
    (cd "$HERE/$v" && CARGO_TARGET_DIR=$T/target-$v cargo build --release -q -j2)
done
gcc -O2 -o "$T/driver" "$HERE/driver.c"
gcc -O2 -shared -fPIC -o "$T/getenv_log.so" "$HERE/getenv_log.c" -ldl
so() { echo "$T/target-$1/release/libspike_$1.so"; }

echo "== certificates"
P=$T/pki; mkdir -p "$P"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/ca.key" \
    -out "$P/ca.crt" -days 2 -subj /CN=spike-ca -addext basicConstraints=critical,CA:true \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
mk() { # NAME CN EXTENSIONS
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$P/$1.key" \
        -out "$P/$1.csr" -subj "/CN=$2" 2>/dev/null
    printf '%s\n' "$3" >"$P/$1.ext"
    openssl x509 -req -in "$P/$1.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial \
        -days 2 -out "$P/$1.crt" -extfile "$P/$1.ext" 2>/dev/null
}
mk server spike-server $'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth'
mk host host-a 'extendedKeyUsage=clientAuth'
chmod 600 "$P"/*.key
BAD=$T/badca; mkdir -p "$BAD"; cp "$P/host.crt" "$P/host.key" "$BAD/"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$BAD/other.key" \
    -out "$BAD/ca.crt" -days 2 -subj /CN=other-ca 2>/dev/null

echo "== namespace: lo; 10.9.9.2-4 blackholed (static ARP to a peer that drops); 10.8.8.2 on a down link"
ip netns add "$NSNAME"
$NS ip link set lo up
$NS ip link add bh0 type veth peer name bh1
$NS ip addr add 10.9.9.1/24 dev bh0
$NS ip link set bh0 up; $NS ip link set bh1 up
for h in 2 3 4; do $NS ip neigh add 10.9.9.$h lladdr 02:00:00:00:00:99 dev bh0 nud permanent; done
$NS ip link add dn0 type veth peer name dn1
$NS ip addr add 10.8.8.1/24 dev dn0

echo "== cluster"
chown postgres: "$T"; chmod 711 "$T"
runuser -u postgres -- "$PG_BIN/initdb" -D "$T/data" -A trust -U postgres --no-sync -E UTF8 \
    --locale=C.UTF-8 >"$T/initdb.log"
for f in server.key server.crt ca.crt; do install -o postgres -g postgres -m 600 "$P/$f" "$T/data/$f"; done
cat >>"$T/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$T'
fsync = off
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_ca_file = 'ca.crt'
CONF
printf '%s\n' 'local all all trust' 'hostssl pamtotp all 127.0.0.1/32 cert clientcert=verify-full' \
    >"$T/data/pg_hba.conf"
$NS runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$T/data" -l "$T/log" -w -t 30 start >/dev/null
(umask 077 && openssl rand -hex 32 >"$T/pam-totp.key"); chown postgres: "$T/pam-totp.key"
sq() { "$PG_BIN/psql" -X -q -At -h "$T" -U "$1" -d "$2" -v ON_ERROR_STOP=1 "${@:3}"; }
sq postgres postgres -c "CREATE DATABASE pamtotp"
for f in "$ROOT"/fleet/sql/[0-9][0-9][0-9]_*.sql; do sq postgres pamtotp --single-transaction -f "$f"; done
sq postgres pamtotp -c "SELECT pam_totp.set_key_file('$T/pam-totp.key')" >/dev/null
sq postgres pamtotp -c "CREATE ROLE fleet_admin LOGIN IN ROLE pam_totp_admin"
SECRET=3132333435363738393031323334353637383930
sq fleet_admin pamtotp -c "SELECT pam_totp.add_host('host-a')" >/dev/null
sq fleet_admin pamtotp -c "SELECT pam_totp.enrol('alice', '\\x$SECRET'::bytea, 'SHA1', 6, 30, 'spike', NULL, false)" >/dev/null
sq fleet_admin pamtotp -c "SELECT pam_totp.activate('alice', '$(oathtool --totp -d 6 $SECRET)', 1)"
# the spike answers a wrong code every time: counted, never locked (attempts = 10^6)
sq fleet_admin pamtotp -c "SELECT pam_totp.set_settings(1000000, 1, 1, NULL, NULL)" >/dev/null

drive() { # VARIANT DIR ADDRS PER_MS TOTAL_MS [env...]: one fresh process
    $NS env -i "${@:6}" "$T/driver" "$(so "$1")" "$2" "$3" "$4" "$5" ${DIAG:+diag}
}

echo "== latency: $N fresh processes per prototype, interleaved (µs; load = dlopen of the module)"
for ((i = 0; i < N; i++)); do
    for v in a b base; do drive $v "$P" 127.0.0.1:5432 2000 5000 >>"$T/lat-$v" 2>/dev/null; done
    drive b "$P" 127.0.0.1:5432 2000 5000 LD_PRELOAD=libpq.so.5 >>"$T/lat-b-preloaded" 2>/dev/null
done
for v in a b b-preloaded base; do
    python3 - "$v" "$T/lat-$v" <<'PY'
import sys, statistics as st
rows = [l.split(None, 5) for l in open(sys.argv[2])]
ok = sum(r[4] == '0' for r in rows)
thr = sorted(set((r[2], r[3]) for r in rows))
q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]
for i, name in ((0, 'load'), (1, 'call')):
    xs = [float(r[i]) for r in rows]
    print(f"{sys.argv[1]:12} {name}: n={len(xs)} median={st.median(xs):.0f} p90={q(xs, .9):.0f} "
          f"p99={q(xs, .99):.0f} max={max(xs):.0f}; ok={ok}; threads before/after={thr}")
PY
done

echo "== callgrind: total Ir of one fresh process (driver + dlopen + call + exit)"
for v in base a b; do
    drive $v "$P" 127.0.0.1:5432 2000 5000 >/dev/null 2>&1 # warm the server's caches alike
    $NS env -i valgrind --tool=callgrind --callgrind-out-file="$T/cg-$v" "$T/driver" "$(so $v)" \
        "$P" 127.0.0.1:5432 2000 5000 >/dev/null 2>"$T/cg-$v.log"
    echo "$v: $(grep -o 'Collected : [0-9]*' "$T/cg-$v.log")"
    callgrind_annotate --threshold=100 --inclusive=yes "$T/cg-$v" 2>/dev/null | grep -E \
        'dlopen@@|spike_login \[|connect_once::\{\{closure|spike_a::tls \[|query_typed::\{\{closure|Builder::build \[|drop_in_place<tokio::runtime::runtime::Runtime> |PQconnectPoll \[|SSL_do_handshake \[|SSL_CTX_new \[|PEM_read_bio_PrivateKey_ex \[|X509_STORE_load_file_ex \[|SSL_CTX_use_certificate_chain_file \[|PQsendQueryParams \[|PQconsumeInput \[|PQfinish \[|dlclose@@|exit.c:exit \[' |
        sed 's/ \[.*//; s/^/    /' | cut -c1-150
done

echo "== sizes and relocations (what linking the client into the module adds to every dlopen)"
rel() { readelf -rW "$1" | grep -cE '^[0-9a-f]+ +[0-9a-f]+ R_X86'; }
for v in base a b; do
    f=$(so $v); cp "$f" "$T/s.so"; strip "$T/s.so"
    echo "$v: bytes=$(stat -c %s "$f") stripped=$(stat -c %s "$T/s.so") text=$(size "$f" | awk 'NR==2{print $1}') RELA=$(rel "$f") undefined=$(nm -D --undefined-only "$f" | wc -l) NEEDED=$(readelf -d "$f" | grep -c NEEDED)"
done
tr=0; ts=0; n=0
for l in /usr/lib/x86_64-linux-gnu/libpq.so.5 $(ldd /usr/lib/x86_64-linux-gnu/libpq.so.5 | awk '/=>/{print $3}' | grep -v 'libc.so.6'); do
    tr=$((tr + $(rel "$(readlink -f "$l")"))); ts=$((ts + $(stat -L -c %s "$l"))); n=$((n + 1))
done
echo "libpq.so.5 and its dependencies (without libc): $n libraries, $ts bytes, RELA=$tr"

echo "== module load if the client is linked in, built as pam_totp.so is (-z pack-relative-relocs)"
for v in base a; do
    (cd "$HERE/$v" && CARGO_TARGET_DIR=$T/relr-$v RUSTFLAGS="-C link-arg=-Wl,-z,pack-relative-relocs" \
        cargo build --release -q -j2)
    f=$T/relr-$v/release/libspike_$v.so
    for ((i = 0; i < N; i++)); do $NS env -i "$T/driver" "$f" "$P" 127.0.0.1:1 100 100; done |
        awk '{print $1}' | sort -n | awk -v v=$v '{a[NR] = $1} END{printf "%s: load median=%d p90=%d us; ", v, a[int(NR / 2)], a[int(NR * 0.9)]}'
    valgrind --tool=callgrind --callgrind-out-file="$T/cg-relr-$v" "$T/driver" "$f" "$P" 127.0.0.1:1 100 100 >/dev/null 2>&1
    echo "dlopen $(callgrind_annotate --inclusive=yes "$T/cg-relr-$v" | awk '/dlopen@@/{print $1; exit}') Ir; RELA=$(rel "$f") undefined=$(nm -D --undefined-only "$f" | wc -l)"
done

echo "== environment variables read during one call (LD_PRELOAD getenv logger; driver alone reads none)"
for v in a b; do
    echo "$v: $(drive $v "$P" 127.0.0.1:5432 2000 5000 LD_PRELOAD="$T/getenv_log.so" 2>&1 >/dev/null | sort -u | sed 's/^getenv //; s/^secure_getenv /secure_getenv:/' | tr '\n' ' ')"
done
echo "== threads, and libraries still mapped after the call returned (and dlclose for B)"
for v in base a b; do
    echo "$v: $(DIAG=1 drive $v "$P" 127.0.0.1:5432 2000 5000 2>&1 | awk '/^[0-9]/{t = "threads before=" $3 " after=" $4 "; "} /^open fds/{m = $0} END{print t m}')"
done

echo "== strace -f of one call: threads created, files opened other than shared libraries"
for v in a b; do
    $NS env -i strace -f -qq -e trace=clone,clone3,openat,open -o "$T/strace-$v" "$T/driver" "$(so $v)" \
        "$P" 127.0.0.1:5432 2000 5000 >/dev/null
    echo "$v: clone/clone3 calls=$(grep -cE 'clone3?\(' "$T/strace-$v"); opened: $(grep -E 'open(at)?\(' "$T/strace-$v" |
        grep -vE '\.so[."]|/proc/self/(task|fd)|ld\.so\.cache' | grep -oE '"[^"]*"' | sort -u | tr '\n' ' ')"
done

echo "== faults (wall time measured outside the process)"
$NS python3 -c 'import socket,time; s=socket.socket(); s.bind(("127.0.0.1",5499)); s.listen(16); time.sleep(3600)' &
SILENT=$!; sleep 0.5
fault() { # NAME DIR ADDRS PER TOTAL
    local v s e out
    for v in a b; do
        s=$(date +%s%N); out=$(drive $v "$2" "$3" "$4" "$5" 2>/dev/null); e=$(date +%s%N)
        echo "$1 [$v] addrs=$3 per=$4 total=$5: wall=$(((e - s) / 1000000)) ms rc=$(cut -d' ' -f5 <<<"$out") ${out#* * * * * }"
    done
}
fault refused-then-ok "$P" 127.0.0.1:1,127.0.0.1:5432 1000 3000
fault downlink-then-ok "$P" 10.8.8.2:5432,127.0.0.1:5432 1000 3000
fault blackhole-then-ok "$P" 10.9.9.2:5432,127.0.0.1:5432 1000 3000
fault silent-listener-then-ok "$P" 127.0.0.1:5499,127.0.0.1:5432 1000 3000
fault all-blackholed "$P" 10.9.9.2:5432,10.9.9.3:5432,10.9.9.4:5432 1000 1500
fault wrong-ca "$BAD" 127.0.0.1:5432 1000 3000
for v in a b; do # check() blocks on the user's row lock, as on a wait for a synchronous standby
    sq postgres pamtotp -c "BEGIN; SELECT 1 FROM pam_totp.users WHERE name = 'alice' FOR UPDATE; SELECT pg_sleep(4); COMMIT;" >/dev/null &
    lock=$!; sleep 0.3
    s=$(date +%s%N); out=$(drive $v "$P" 127.0.0.1:5432 1000 1500 2>/dev/null); e=$(date +%s%N)
    echo "row-lock-stall [$v] per=1000 total=1500: wall=$(((e - s) / 1000000)) ms rc=$(cut -d' ' -f5 <<<"$out") ${out#* * * * * }"
    wait $lock
done
s=$(date +%s%N); $NS env -i "$PG_BIN/psql" -X "host=10.9.9.2 connect_timeout=1 sslmode=disable" -c 'SELECT 1' >/dev/null 2>&1 || true
echo "libpq's own connect_timeout=1 against a blackhole: $((($(date +%s%N) - s) / 1000000)) ms"
