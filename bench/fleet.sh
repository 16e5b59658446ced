#!/usr/bin/env bash
# bench/fleet.sh — fleet-mode throughput and latency (issue 18; BENCHMARKS.md "fleet mode"):
# 8 host namespaces run bench/pambench in parallel (the real module through libpam, a fresh
# handle per login, each host its own slice of users) against one PostgreSQL 15 primary with a
# synchronous standby, over TLS with client certificates; then the same drivers against file
# mode; then a breakdown of one login's cost.
#
# The network, certificates and replicated servers are the fleet tests' (tests/fleet/lib.sh,
# lib-net.sh, fleet-faults.sh's faults_setup with FLEET_NODES="a b": primary a, synchronous
# standby b as s1, synchronous_commit = on), plus fsync = on on both (the tests run with fsync
# off). Users fb<host>-<n> are enrolled in bulk by the superuser (SQL, known secrets, 10 recovery
# codes each as an enrolment gives), throttle attempts set out of reach so that wrong codes are
# judged and counted but never lock. Valid logins never replay: a user gives at most 3 fresh
# steps per 30 s (window=1) and pambench -S remembers which it used (the slice per host is big
# enough for BENCH_FLEET_SECS at well over 500 logins/s). The store is measured as one that has
# run a while, not as a new cluster: WAL segments recycled (min_wal_size 1GB, 40 segments made
# beforehand), the outcomes of the last ten minutes at 500 logins/s in pam_totp.results (they
# expire during the run, as they would), the bulk load written out by a checkpoint before the
# first measured phase. Paced phases start their drivers together, once all are set up.
#
# As root (SKIP otherwise). `make bench-fleet`; `make bench` runs it after the file-mode bench
# (BENCH_FLEET=0 skips). Environment: BENCH_FLEET_SECS (timed login work per driver per
# scenario, default 15), BENCH_FLEET_USERS (users per host, default 2000), BENCH_FLEET_FILE_USERS
# (file mode's, default 3000), BENCH_FLEET_PRELOAD=1
# (also measure with shared_preload_libraries = 'plpgsql,pgcrypto' on the primary),
# BENCH_FLEET_POOLER=pgbouncer (also measure through PgBouncer on the primary's machine: per-role
# pools in transaction mode, lib-net.sh's fleet_pgbouncer; its properties probed first),
# BENCH_FLEET_PGSET="NAME=VALUE ..." (more server settings on both nodes, for experiments;
# the nodes are restarted when one needs it, e.g. shared_buffers),
# BENCH_FLEET_KEEP=1 (keep the work directory), BENCH_OUT (append the report to this file).
# Nothing outside the namespaces and the work directory under /var/tmp is touched.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FLEET_NAME=bench-fleet
# shellcheck source=tests/fleet/lib.sh
. "$ROOT/tests/fleet/lib.sh"
# shellcheck source=tests/fleet/lib-net.sh
. "$ROOT/tests/fleet/lib-net.sh"
fleet_prereqs ip timeout python3 unshare cc "$PG_BIN/pg_basebackup" /usr/bin/time \
    ${BENCH_FLEET_POOLER:+pgbouncer}
ip netns list >/dev/null 2>&1 || { echo "SKIP $FLEET_NAME: no network namespaces"; exit 0; }

REL=${CARGO_TARGET_DIR:-$ROOT/target}/release
N_HOSTS=8
SECS=${BENCH_FLEET_SECS:-15}
USERS=${BENCH_FLEET_USERS:-2000}
FILE_USERS=${BENCH_FLEET_FILE_USERS:-3000}
DB=pamtotp
CONNECT_MS=1000
BUDGET_MS=3000
fleet_net_init pamtotp-bench
FLEET_NODES="a b"
FLEET_FAULTS=bench # fleet-faults.sh reads it (anything but quick: its full-size settings)
# shellcheck source=tests/fleet/fleet-faults.sh
. "$ROOT/tests/fleet/fleet-faults.sh"
ASYNC= # no asynchronous standby here
SINKS=()
cleanup() {
    local p
    for p in "${SINKS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    fleet_net_down
    if [[ ${BENCH_FLEET_KEEP:-} == 1 ]]; then echo "bench-fleet: kept $BASE"; else rm -rf "$BASE"; fi
}
BASE=$(mktemp -d /var/tmp/pam-totp-fleetbench.XXXXXX)
FLEET_NODE_DIR=$BASE/pgf
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
die() { fleet_die "$@"; }
fleet_clean_pg_env

chmod 711 "$BASE"
T=$BASE/pg
PKI=$BASE/pki
OUT=$BASE/out
WHY=$BASE/why
mkdir -m 700 "$T" "$OUT" && chown postgres: "$T" || die "temp dirs"
KEY=$T/pam-totp.key # the store's key file (faults_setup's fleet_createdb same-key uses it)
(umask 077 && openssl rand -hex 32 >"$KEY") && chown postgres: "$KEY" || die "key file"
LIB=$BASE/lib
SO=$LIB/pam_totp.so
STORE_LIB=$LIB/libpam_totp_store.so
mkdir -m 755 "$LIB"
for f in libpam_totp.so libpam_totp_store.so; do
    [[ -f $REL/$f ]] || die "$REL/$f missing (cargo build --release --workspace)"
done
install -m 644 "$REL/libpam_totp.so" "$SO"
install -m 644 "$REL/libpam_totp_store.so" "$STORE_LIB"
PAMBENCH=$LIB/pambench
gcc -O2 -Wall -Wextra -Werror -o "$PAMBENCH" "$ROOT/bench/pambench.c" -lpam || die "pambench"

# --- hosts, the replicated store ---------------------------------------------------------------
service() { echo "auth required $SO $3" >"$BASE/h$1/pam.d/$2"; } # I NAME OPTIONS (faults_setup)
for i in $(seq 1 "$N_HOSTS"); do
    H=$BASE/h$i
    mkdir -m 700 "$H" "$H/state" "$H/state/users"
    mkdir -m 755 "$H/pam.d"
    printf '%s\n' "auth required pam_deny.so" >"$H/pam.d/other"
    python3 "$ROOT/tests/torture/logsink.py" "$H/log.sock" "$H/syslog" &
    SINKS+=($!)
done
t0=$(date +%s)
fleet_net_up
fleet_pki
faults_setup # primary a, synchronous standby b (s1); hosts' store-faults.toml, services faults-w1
SETTINGS="ALTER SYSTEM SET fsync = on; ALTER SYSTEM SET log_checkpoints = on;
ALTER SYSTEM SET log_autovacuum_min_duration = 0; ALTER SYSTEM SET min_wal_size = '1GB';
ALTER SYSTEM SET max_wal_size = '2GB';"
for kv in ${BENCH_FLEET_PGSET:-}; do # more NAME=VALUE settings, for experiments
    SETTINGS+=" ALTER SYSTEM SET ${kv%%=*} = '${kv#*=}';"
done
for n in $FLEET_NODES; do
    fleet_node_sq "$n" -d postgres >/dev/null <<<"$SETTINGS SELECT pg_reload_conf()" || die "settings of $n"
done
# Settings that take a restart (shared_buffers): each node restarted, the standby first (a
# standby needs max_connections and the like at least as high as its primary's).
for n in $(printf '%s\n' $FLEET_NODES | tac); do
    [[ $(fleet_node_sq "$n" -d postgres <<<"SELECT count(*) FROM pg_settings WHERE pending_restart") == 0 ]] &&
        continue
    fleet_node_with "$n" fleet_pg_stop fast && fleet_node_start "$n" || die "restarting $n"
done
faults_wait_sync 30 || die "the synchronous standby after the restart"
# A store that has run a while, not a new cluster (see the checkpoint after the bulk load):
# a new cluster creates every WAL segment it fills (16 MB of zeros written and flushed, on the
# primary and on the standby's receiver, while commits wait), a running one renames old
# segments at each checkpoint (min_wal_size). So: 40 segments written and switched now.
fsq -d postgres >/dev/null <<<"DO \$\$ BEGIN FOR i IN 1..40 LOOP
    PERFORM pg_logical_emit_message(false, 'pam-totp-bench', 'warm'); PERFORM pg_switch_wal();
END LOOP; END \$\$" || die "WAL warm-up"
[[ $(fadm <<<"SELECT attempts FROM pam_totp.set_settings(2000000000, 1, 1, NULL, NULL)") == 2000000000 ]] ||
    die "settings"

# Users: USERS per host, 20-byte secrets, 10 recovery codes each (hashes of codes nobody types).
python3 - "$BASE" "$N_HOSTS" "$USERS" <<'EOF' || die "users"
import hashlib, os, sys
base, hosts, users = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rec = []
for _ in range(10):
    salt = os.urandom(16)
    rec.append("sha256:%s:%s" % (salt.hex(), hashlib.sha256(salt + os.urandom(9).hex().encode()).hexdigest()))
with open(f"{base}/all-users.txt", "w") as allf:
    for h in range(1, hosts + 1):
        with open(f"{base}/h{h}/users.txt", "w") as f:
            for n in range(users):
                line = f"fb{h}-{n} {os.urandom(20).hex()}\n"
                f.write(line)
                allf.write(line)
with open(f"{base}/recovery.txt", "w") as f:
    f.write("{" + ",".join(rec) + "}\n")
EOF
fsq >/dev/null <<EOF || die "bulk enrolment"
CREATE TEMP TABLE b (name text, hex text);
\\copy b FROM '$BASE/all-users.txt' WITH (DELIMITER ' ')
INSERT INTO pam_totp.users (name, status, secret, key_id, algorithm, digits, period, issuer, recovery)
SELECT b.name, 'active', pam_totp.encrypt_secret(decode(b.hex, 'hex'), k.k), pam_totp.key_id_of(k.k),
       'SHA1', 6, 30, 'bench', pam_totp.recovery_blob('$(cat "$BASE/recovery.txt")'::text[], k.k)
FROM b, (SELECT pam_totp.key() AS k) k;
VACUUM ANALYZE pam_totp.users;
EOF
# Outcomes as after ten minutes at 500 logins/s: 300 000 rows created over the last 600 s, so
# that during the run they expire at that rate and the checks remove them as they would.
fsq >/dev/null <<'EOF' || die "outcomes of the last ten minutes"
INSERT INTO pam_totp.results (ticket, xid, host, created, result)
SELECT gen_random_uuid(), pg_current_xact_id(), 'host-h1', pam_totp.now_s() - 600 + i / 500,
       ROW('wrong', 'bench', NULL, NULL, NULL, 0, 0, NULL, 0)::pam_totp.check_result
FROM generate_series(0, 299999) AS i;
VACUUM ANALYZE pam_totp.results;
EOF
# Then a checkpoint on both: the bulk load's pages written out (not by the kernel's flusher
# during the measured phases) and the segments above recycled. The standby's is a restartpoint,
# once it has everything (there is no replication slot: a checkpoint may remove WAL that a
# standby has not received).
faults_wait_sync 60 caught-up || die "s1 not caught up after enrolment"
fsq -d postgres >/dev/null <<<"CHECKPOINT" || die "checkpoint on a"
faults_wait_sync 60 caught-up || die "s1 after the checkpoint"
fleet_node_sq b -d postgres >/dev/null <<<"CHECKPOINT" || die "restartpoint on b"
SETUP_S=$(($(date +%s) - t0))

# --- file mode: the same drivers in the same namespaces, each host its own state directory ---
printf 'version = 1\n\n[throttle]\nattempts = 4000000000\n' >"$BASE/policy.toml"
chmod 644 "$BASE/policy.toml"
for i in $(seq 1 "$N_HOSTS"); do
    python3 "$ROOT/bench/mkpop.py" "$BASE/h$i/file" "$FILE_USERS" || die "mkpop $i"
    service "$i" file "dir=$BASE/h$i/file/ours policy=$BASE/policy.toml window=1"
done

# --- measuring ---------------------------------------------------------------------------------
# cpu_of NS: CPU seconds of every process in namespace NS, exited children of its processes
# included (a backend that exited was reaped by the postmaster: its cutime).
cpu_of() {
    # shellcheck disable=SC2046 # one pid per word
    pids_cpu $(ip netns pids "$1" 2>/dev/null)
}
# pids_cpu PID...: CPU ticks of these processes and their exited children.
pids_cpu() {
    local p tot=0 v
    for p in "$@"; do
        v=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$p/stat" 2>/dev/null) || continue
        tot=$((tot + ${v:-0}))
    done
    echo "$tot"
}
# agents_cpu: CPU ticks of the running pam-totp-agents (the agent phases).
AGENTS=()
agents_cpu() { pids_cpu "${AGENTS[@]}"; }
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8 }' /proc/stat; }
wal_bytes() { fsq <<<"SELECT (pg_current_wal_lsn() - '0/0')::bigint"; }
sessions() { fsq <<<"SELECT sessions FROM pg_stat_database WHERE datname = '$DB'"; }
# phase NAME SERVICE MODE SECS [HOSTS] [RATE]: pambench in hosts 1..HOSTS (default all) in
# parallel, each as fast as it can (closed loop) or, with RATE (logins/s for all hosts
# together), paced at RATE/HOSTS for SECS seconds (open loop, pambench -R); appends one line to
# $OUT/summary (see summarise).
phase() {
    local name=$1 svc=$2 mode=$3 secs=$4 hosts=${5:-$N_HOSTS} rate=${6:-} i pids=() a0 b0 s0 m0 t_0 t_1 m1 users wal0
    local amount=(-n 100000000 -t "$secs")
    # What was written before the phase (file mode's 24,000 users' files, earlier phases'
    # outputs and state) goes to disk now: the kernel's periodic writeback of it took up to a
    # third of both cores for 0.2-0.5 s in the middle of later phases (perf: kworker in
    # wb_workfn/ext4_writepages, every host slow at once). Done before the paced drivers' start
    # time is fixed.
    sync
    if [[ -n $rate ]]; then
        local per
        per=$(awk -v r="$rate" -v h="$hosts" 'BEGIN { printf "%.3f", r / h }')
        amount=(-R "$per" -n "$(awk -v p="$per" -v s="$secs" 'BEGIN { printf "%d", p * s }')" -t $((secs * 3)))
        # all drivers begin 2 s from now, once every host's sandbox is set up (each at a random
        # phase of its interval): the set-up of one is not timed in another's first logins
        amount+=(-A "$(awk -v t="$(date +%s.%N)" 'BEGIN { printf "%.3f", t + 2 }')")
    fi
    local flag= cursor g0
    [[ $mode == wrong ]] && flag=-F # skip the driver's ±1500-step search (client CPU)
    g0=$(agents_cpu)
    a0=$(cpu_of "$(fleet_node_ns a)")
    b0=$(cpu_of "$(fleet_node_ns b)")
    s0=$(sessions)
    m0=$(machine_busy)
    local load0
    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    wal0=$(wal_bytes)
    t_0=$(date +%s%N)
    echo "$t_0" >"$OUT/$name.t0" # the phase's start (ns since the epoch), to place its lat lines
    for i in $(seq 1 "$hosts"); do
        users=$BASE/h$i/users.txt cursor=$BASE/h$i/cursor.fleet # one per store: no replays
        [[ $svc == file ]] && users=$BASE/h$i/file/users.txt cursor=$BASE/h$i/cursor.file
        in_ns "$(host_ns "$i")" env SYSLOG_SOCKET="$BASE/h$i/log.sock" \
            /usr/bin/time -f '%U %S' -o "$OUT/$name.h$i.cpu" \
            bash "$ROOT/tests/lib/sandbox.sh" "$PAMBENCH" -m "$mode" $flag "${amount[@]}" \
            -N "$name/h$i" -S "$cursor" -o "$OUT/$name.h$i.lat" -r "10.9.0.$i" \
            "$BASE/h$i/pam.d" "$svc" "$users" >"$OUT/$name.h$i.out" 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
    t_1=$(date +%s%N)
    echo $(($(wal_bytes) - wal0)) >"$OUT/$name.wal"
    m1=$(machine_busy)
    [[ $svc == agent ]] && echo $(($(agents_cpu) - g0)) >"$OUT/$name.agent.cpu"
    echo "$name $svc $mode $hosts $(((t_1 - t_0) / 1000000)) $(($(cpu_of "$(fleet_node_ns a)") - a0))" \
        "$(($(cpu_of "$(fleet_node_ns b)") - b0)) $(($(sessions) - s0)) $m0 $m1 $load0 |" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/summary"
    grep -h '^UNEXPECTED' "$OUT/$name".h*.out | head -n 3
}
ssys() { # SETTING VALUE: ALTER SYSTEM on the primary, reloaded
    fsq -d postgres >/dev/null <<<"ALTER SYSTEM SET $1 = '$2'; SELECT pg_reload_conf()" || die "set $1"
    sleep 0.5
}

echo "bench-fleet: set-up ${SETUP_S} s ($((N_HOSTS * USERS)) users); load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
PHASES=" ${BENCH_FLEET_PHASES:-direct file agent} "
phase warmup faults-w1 wrong 2 # caches, the first connections
if [[ $PHASES == *" direct "* ]]; then
    phase fleet-valid faults-w1 valid "$SECS"
    phase fleet-wrong faults-w1 wrong "$SECS"
fi
if [[ $PHASES == *" file "* ]]; then
    phase file-valid file valid "$SECS"
    phase file-wrong file wrong "$SECS"
fi
if [[ $PHASES == *" direct "* ]]; then
    # one host alone: latency without contention
    phase fleet1-valid faults-w1 valid 8 1
    ssys synchronous_commit local
    phase fleet-valid-local faults-w1 valid "$SECS"
    phase fleet1-valid-local faults-w1 valid 8 1
    ssys synchronous_commit on
fi
# Through each host's pam-totp-agent (store.toml's agent_socket): the same store, the same
# module and service line but for the store.toml; the agents keep their sessions open.
if [[ $PHASES == *" agent "* ]]; then
    for i in $(seq 1 "$N_HOSTS"); do
        H=$BASE/h$i
        mkdir -m 755 "$H/agent"
        (umask 077 && sed "/^budget_ms/a agent_socket = \"$H/agent/agent.sock\"" \
            "$H/store-faults.toml" >"$H/store-agent.toml") || die "store-agent.toml"
        sed 's|store-faults.toml|store-agent.toml|' "$H/pam.d/faults-w1" >"$H/pam.d/agent"
        ip netns exec "$(host_ns "$i")" "$REL/pam-totp-agent" --store "$H/store-agent.toml" \
            --sessions "${BENCH_FLEET_AGENT_SESSIONS:-2}" 2>>"$OUT/agent.h$i.log" &
        AGENTS+=($!)
        SINKS+=($!)
    done
    for i in $(seq 1 "$N_HOSTS"); do
        for _ in $(seq 100); do [[ -S $BASE/h$i/agent/agent.sock ]] && break; sleep 0.05; done
        [[ -S $BASE/h$i/agent/agent.sock ]] || die "agent h$i: $(cat "$OUT/agent.h$i.log")"
    done
    phase warmup-agent agent wrong 2
    phase fleet-valid-agent agent valid "$SECS"
    phase fleet-wrong-agent agent wrong "$SECS"
    # The issue's operating point: 500 logins/s offered by the 8 hosts together, paced.
    phase fleet-valid-agent-at500 agent valid "$SECS" "$N_HOSTS" 500
    phase fleet-wrong-agent-at500 agent wrong "$SECS" "$N_HOSTS" 500
    phase fleet1-valid-agent agent valid 8 1
fi
# pooler_probe WANT WHAT CMD...: CMD (psql through PgBouncer) must succeed (ok) or fail (fail).
pooler_probe() {
    local want=$1 what=$2 out got=ok
    shift 2
    out=$("$@" 2>&1) || got=fail
    echo "$([[ $got == "$want" ]] && echo PASS || echo FAIL) pooler: $what -> $got: $(tr '\n' ' ' <<<"$out" | cut -c1-150)"
}
pq() { # I CERT ROLE [KEY=VALUE...]: psql from host I through PgBouncer as ROLE with CERT, stdin
    local i=$1 cert=$2 role=$3
    shift 3
    net_psql "$(host_ns "$i")" "$(conninfo_as "$role" "$cert" "host=$(fleet_node_addr a)" \
        "port=$POOLER_PORT" "sslrootcert=$PKI/fca.crt" "$@")"
}
if [[ ${BENCH_FLEET_POOLER:-} == pgbouncer ]]; then
    fleet_pgbouncer "$(fleet_node_ns a)" "$(fleet_node_addr a)" "$(fleet_node_dir a)" fca || die "pgbouncer"
    for i in $(seq 1 "$N_HOSTS"); do # store-pgb.toml: [PgBouncer, the standby]
        (umask 077 && sed "s|\"$(fleet_node_addr a):$PORT\"|\"$(fleet_node_addr a):$POOLER_PORT\"|" \
            "$BASE/h$i/store-faults.toml" >"$BASE/h$i/store-pgb.toml") || die "store-pgb.toml"
        sed 's|store-faults.toml|store-pgb.toml|' "$BASE/h$i/pam.d/faults-w1" >"$BASE/h$i/pam.d/pgb"
    done
    {
        pooler_probe ok "session_user" pq 1 h1 host-h1 <<<"SELECT session_user"
        pooler_probe fail "h1's certificate as host-h2" pq 1 h1 host-h2 <<<"SELECT 1"
        pooler_probe fail "another CA's certificate for host-h1" pq 1 h1-other host-h1 <<<"SELECT 1"
        pooler_probe fail "no certificate" pq 1 h1 host-h1 sslcert=/nonexistent sslkey=/nonexistent <<<"SELECT 1"
        pooler_probe fail "two checks in one transaction" pq 1 h1 host-h1 \
            <<<"BEGIN; SELECT pam_totp.check('fb1-0', '000000', 'x', 1, NULL) IS NULL; SELECT pam_totp.check('fb1-0', '000000', 'x', 1, NULL)"
        pooler_probe fail "outcome before the check committed" pq 1 h1 host-h1 \
            <<<"BEGIN; SELECT pam_totp.check('fb1-0', '000000', 'x', 1, NULL) AS t \gset
SELECT pam_totp.outcome(:'t')"
        t=$(pq 1 h1 host-h1 <<<"SELECT pam_totp.check('fb1-0', '000000', 'x', 1, NULL)")
        pooler_probe fail "host-h2 reads host-h1's outcome" pq 2 h2 host-h2 <<<"SELECT pam_totp.outcome('$t')"
        pooler_probe ok "host-h1 reads its outcome (a later transaction, any server connection of its pool)" pq 1 h1 host-h1 \
            <<<"SELECT outcome FROM pam_totp.outcome('$t')"
    } | tee "$OUT/pooler-checks"
    phase fleet-valid-pgb pgb valid "$SECS"
    phase fleet-wrong-pgb pgb wrong "$SECS"
    phase fleet1-valid-pgb pgb valid 8 1
    # Every audit row and last_success_host of user fb<h>-* names host-h<h> (session_user).
    fsq <<<"SELECT 'audit rows ' || count(*) || ', of another host ' || count(*) FILTER (WHERE host <> 'host-h' || substring(user_name FROM '^fb([0-9]+)-')) FROM pam_totp.audit WHERE user_name LIKE 'fb%';
SELECT 'last_success_host set ' || count(last_success_host) || ', another host ' || count(*) FILTER (WHERE last_success_host <> 'host-h' || substring(name FROM '^fb([0-9]+)-')) FROM pam_totp.users WHERE name LIKE 'fb%'" |
        tee -a "$OUT/pooler-checks"
    # Revoked while its pool is warm: the pooled backends' next call is refused (membership).
    [[ $(fadm <<<"SELECT pam_totp.revoke_host('host-h8')") == t ]] || die "revoke host-h8"
    pooler_probe fail "revoked host-h8 through its warm pool" pq 8 h8 host-h8 <<<"SELECT pam_totp.enrolment('fb8-0')" |
        tee -a "$OUT/pooler-checks"
    echo "PgBouncer's own CPU: $(awk '{ print ($14 + $15) / 100 }' "/proc/$(cat "$(fleet_node_dir a)/pgbouncer/pgbouncer.pid")/stat") s" |
        tee -a "$OUT/pooler-checks"
    echo "server connections: $(fsq <<<"SELECT count(*) FILTER (WHERE backend_type = 'client backend' AND usename LIKE 'host-%') FROM pg_stat_activity")" |
        tee -a "$OUT/pooler-checks"
fi
if [[ ${BENCH_FLEET_PRELOAD:-} == 1 ]]; then
    fsq -d postgres >/dev/null <<<"ALTER SYSTEM SET shared_preload_libraries = plpgsql, pgcrypto" || die preload
    fleet_node_with a fleet_pg_stop fast
    fleet_node_start a || die "restart a"
    faults_wait_sync 30 caught-up || die "s1 after restart"
    phase fleet-valid-preload faults-w1 valid "$SECS"
    phase fleet-wrong-preload faults-w1 wrong "$SECS"
    phase fleet1-valid-preload faults-w1 valid 8 1
fi

# The server's view of one login (one host, serial): every statement's duration and each
# connection's start, in a dedicated run (the log lines cost time of their own).
LOG=$(fleet_node_dir a)/log
ssys log_line_prefix '%m [%p] '
fsq -d postgres >/dev/null <<<"ALTER SYSTEM SET log_connections = on; ALTER SYSTEM SET log_disconnections = on;
ALTER SYSTEM SET log_min_duration_statement = 0; SELECT pg_reload_conf()" || die "logging"
sleep 0.5
LOG_FROM=$(wc -l <"$LOG")
phase fleet1-logged faults-w1 valid 5 1
fsq -d postgres >/dev/null <<<"ALTER SYSTEM RESET log_min_duration_statement; ALTER SYSTEM RESET log_connections;
ALTER SYSTEM RESET log_disconnections; SELECT pg_reload_conf()"
tail -n +"$((LOG_FROM + 1))" "$LOG" >"$OUT/server.log"
# The first and the later calls of check in one session (plpgsql compiled once per backend).
fsq >"$OUT/warm.txt" 2>&1 <<'EOF'
\timing on
SELECT pam_totp.check('fb1-0', '000000', 'x', 1, NULL) IS NOT NULL;
SELECT pam_totp.check('fb1-0', '000000', 'x', 1, NULL) IS NOT NULL;
SELECT pam_totp.check('fb1-0', '000000', 'x', 1, NULL) IS NOT NULL;
SELECT pam_totp.enrolment('fb1-1') IS NOT NULL;
SELECT pam_totp.enrolment('fb1-1') IS NOT NULL;
EOF
fsq -c '\timing on' -c 'SELECT pam_totp.enrolment($$fb1-1$$) IS NOT NULL' >>"$OUT/warm.txt" 2>&1

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ); pam_totp $(git -C "$ROOT" describe --always --dirty 2>/dev/null)"
    echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), kernel $(uname -r)"
    echo "store: PostgreSQL $("$PG_BIN/postgres" -V | awk '{print $3}'), primary + synchronous standby (s1), fsync on, $(findmnt -no FSTYPE --target "$BASE") ($BASE)"
    echo "params: hosts=$N_HOSTS users/host=$USERS file users/host=$FILE_USERS secs=$SECS (timed login work per driver)"
} >"$OUT/meta"
python3 "$ROOT/bench/fleet_report.py" "$OUT" | tee -a "${BENCH_OUT:-/dev/null}"
