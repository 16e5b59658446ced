#!/usr/bin/env bash
# tests/fleet/fleet-test.sh — fleet mode end to end (SPEC §11): 8 hosts log users in through the
# REAL module (libpam_totp.so with store=, which loads libpam_totp_store.so, or asks the host's
# pam-totp-agent: fleet-agent.sh) against one
# PostgreSQL 15 store over TLS with client certificates, and an admin changes things from its
# own namespace. The scenarios are in fleet-scenarios.sh.
#
# As root (prints SKIP and exits 0 otherwise). The network, certificates and cluster are
# lib-net.sh's (namespaces pamtotp-ftest-<pid>-db, -adm, -h1..-h8 on a bridge, addresses only
# inside them; `hostssl ... cert` per host role and for the admin role fleet_admin from the
# admin namespace). Each login is tests/pam-harness/harness (compiled here, cc -lpam) run by
# tests/lib/sandbox.sh inside a host namespace: private mount and PID namespaces whose /dev/log
# is that host's socket, drained by tests/torture/logsink.py into the host's syslog file. A
# login's PAM_RHOST is a name unique in the run, so its module line (`user=… rhost=ID reason`)
# is found by it; the harness's output shows the PAM result and whether a prompt was shown.
# The module's stack observes PAM_IGNORE the way the Rust tests do (pam_echo prints a mark).
#
# Files: a temp directory BASE (root, 0711) under /tmp holding pg/ (the cluster: the postgres
# user's, 0700), pki/, lib/ (copies of both .so files), bin/harness, h1..h8/ (root, 0700: the
# store.toml variants, policy, pam.d, state dir, syslog) — root-owned all the way, as the module
# requires of store.toml, the key, the certificates and the client library. The host's /etc, its
# PostgreSQL and its network are never touched; no packet leaves the namespaces.
#
# Prints `PASS name` / `FAIL name` (with reasons), then `N passed, M failed`; exit status 1 when
# any failed. Cleanup on EXIT/INT/TERM/HUP; the last scenario, fleet-nothing-left, runs it and
# checks that nothing of ours is left.
#
# Environment: FULL=1 (8 × 64 parallel logins instead of 8 × 16), FLEET_FAULTS=1 (also the
# fault scenarios of fleet-faults.sh against a primary with two standbys; =quick: 3 failovers
# instead of 20, what `make test` runs; FAULT_FAILOVERS=N overrides),
# FLEET_TEST_POOLER=pgbouncer (hosts' store.toml points at PgBouncer in the db namespace on
# 10.231.0.1:6432, per-role pools in transaction mode: lib-net.sh's fleet_pgbouncer),
# FLEET_TEST_AGENT=1 (the hosts' store.toml names their agent: every scenario through
# pam-totp-agent; fleet-agent.sh), FLEET_TEST_ONLY=name,name (only these; fleet-nothing-left always runs), FLEET_TEST_KEEP=1
# (pause before cleanup), PG_BIN, CARGO, CARGO_TARGET_DIR (where the two .so files and the
# pam-totp CLI are: default target/release of this tree).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FLEET_NAME=fleet-test
# shellcheck source=tests/fleet/lib.sh
. "$ROOT/tests/fleet/lib.sh"
# shellcheck source=tests/fleet/lib-net.sh
. "$ROOT/tests/fleet/lib-net.sh"
FLEET_FAULTS=${FLEET_FAULTS:-}
POOLER_TOOL=${FLEET_TEST_POOLER:+pgbouncer}
if [[ -n $FLEET_FAULTS ]]; then
    fleet_prereqs ip timeout python3 unshare cc faketime "$PG_BIN/pg_basebackup" $POOLER_TOOL
else
    fleet_prereqs ip timeout python3 unshare cc $POOLER_TOOL
fi
ip netns list >/dev/null 2>&1 || { echo "SKIP $FLEET_NAME: no network namespaces (ip netns)"; exit 0; }

START=$(date +%s)
REL=${CARGO_TARGET_DIR:-$ROOT/target}/release
N_HOSTS=8
PAR=16
[[ -z ${FULL:-} ]] || PAR=64
CONNECT_MS=1000
BUDGET_MS=3000
# The parallel batches (service fleet-load) test serialisation, not latency: with 8 × 16
# handshakes at once on a small machine a few connections took over 1 s, so their store.toml
# allows 10 s per connection and 30 s in all.
LOAD_CONNECT_MS=10000
LOAD_BUDGET_MS=30000
DB=pamtotp
IGNORED_MARK=MODULE-RETURNED-IGNORE
FLEET_ADMIN_NS=1
fleet_net_init pamtotp-ftest

BASE=$(mktemp -d /tmp/pam-totp-fleettest.XXXXXX)
if [[ -n $FLEET_FAULTS ]]; then # the replicated store of the fault scenarios (lib-net.sh)
    FLEET_NODES="a b c"
    FLEET_NODE_DIR=$BASE/pgf
fi
SINKS=()
CLEANED=
cleanup() {
    [[ -n $CLEANED ]] && return 0
    CLEANED=1
    local p
    for p in "${SINKS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    fleet_net_down
    rm -rf "$BASE"
}
trap 'cleanup; [[ -z $FLEET_WHY_LAST ]] || rm -f "$FLEET_WHY_LAST"' EXIT
trap 'exit 130' INT TERM HUP

chmod 711 "$BASE" # the server (postgres) goes through it to pg/ and pki/
T=$BASE/pg
PKI=$BASE/pki
OUT=$BASE/out
mkdir -m 700 "$T" "$OUT" && chown postgres: "$T" || fleet_die "temp dirs"
WHY=$BASE/why
fleet_clean_pg_env
export PGOPTIONS='-c lock_timeout=20s -c statement_timeout=30s'
die() { fleet_die "$@"; }

# --- the module, its client library, the harness ------------------------------------------------
LIB=$BASE/lib
SO=$LIB/pam_totp.so
STORE_LIB=$LIB/libpam_totp_store.so
mkdir -m 755 "$LIB" "$BASE/bin"
[[ -f $REL/libpam_totp.so ]] || die "$REL/libpam_totp.so missing (cargo build --release --workspace)"
install -m 644 "$REL/libpam_totp.so" "$SO"
if [[ -f $REL/libpam_totp_store.so ]]; then
    install -m 644 "$REL/libpam_totp_store.so" "$STORE_LIB"
else
    echo "    note: $REL/libpam_totp_store.so missing: every login through the module will fail"
fi
# Named plainly "harness": the syslog ident of the lines we capture.
HARNESS=$BASE/bin/harness
cc -O2 -Wall -Wextra -Werror -o "$HARNESS" "$ROOT/tests/pam-harness/harness.c" -lpam 2>"$BASE/cc.log" ||
    die "compiling the harness: $(tail -n 3 "$BASE/cc.log")"

# --- network, certificates, cluster, schema, roles ----------------------------------------------
fleet_net_up
fleet_pki
fleet_tls_cluster $((N_HOSTS * PAR + 30))
fleet_createdb
fleet_init_schema
# From here on the admin works over TLS from its namespace, with its own certificate.
adm() { net_psql "$NS_ADM" "$(conninfo_as fleet_admin admin)" "$@"; }
# host_psql I [psql args]: psql over TLS as host I from its namespace, stdin.
host_psql() {
    local i=$1
    shift
    net_psql "$(host_ns "$i")" "$(conninfo "$i" $HOST_VIA)" "$@"
}
for i in $(seq 1 "$N_HOSTS"); do
    [[ $(adm <<<"SELECT pam_totp.add_host('$(host_role "$i")')") == t ]] || die "add_host $i over TLS"
done

STORE_ADDRS= HOST_VIA= # the cluster (store_toml's default)
if [[ ${FLEET_TEST_POOLER:-} == pgbouncer ]]; then # store.toml, store-load.toml, host_psql
    fleet_pgbouncer "$NS_DB" "$DB_ADDR" "$T" ca || die "pgbouncer"
    # PgBouncer refuses the startup parameter `options` (PGOPTIONS): none for host_psql.
    STORE_ADDRS="\"$DB_ADDR:$POOLER_PORT\"" HOST_VIA="port=$POOLER_PORT options=''"
fi

# --- hosts: store.toml, policy, PAM stacks, syslog ----------------------------------------------
# service I NAME OPTIONS: a PAM service of host I running the module with OPTIONS, whose
# PAM_IGNORE shows as the mark (then pam_permit lets the stack succeed).
service() {
    cat >"$BASE/h$1/pam.d/$2" <<EOF
auth [success=done ignore=ignore default=die] $SO $3
auth required pam_echo.so $IGNORED_MARK
auth required pam_permit.so
EOF
}
# Comparison with file mode (same throttle as pam_totp.set_settings in that scenario).
CMP_POLICY=$BASE/policy-cmp.toml
printf '%s\n' "version = 1" "[throttle]" "attempts = 3" "lock_seconds = 60" \
    "max_lock_seconds = 3600" >"$CMP_POLICY"
# Blackhole addresses: h7 sends them to a MAC nobody has; the bridge floods the frames and
# every port drops them, so SYNs vanish (no refusal, no ICMP).
BLACKHOLES=("$NET.97" "$NET.98" "$NET.99")
for i in $(seq 1 "$N_HOSTS"); do
    H=$BASE/h$i
    mkdir -m 700 "$H" "$H/state" "$H/state/users"
    mkdir -m 755 "$H/pam.d"
    (umask 077 && store_toml "$i" "" "$STORE_ADDRS" >"$H/store.toml" &&
        store_toml "$i" "$PKI/otherca.crt" >"$H/store-wrongca.toml" &&
        store_toml "$i" "" "$(printf '"%s:5432",' "${BLACKHOLES[@]}" | sed 's/,$//')" 1500 \
            >"$H/store-blackhole.toml" &&
        store_toml "$i" "" "$STORE_ADDRS" "$LOAD_BUDGET_MS" "$LOAD_CONNECT_MS" >"$H/store-load.toml") ||
        die "store.toml $i"
    # h5..h8 require ft-dis (fleet-disable-immediate); h1..h4 have no policy (nobody required).
    if ((i > 4)); then
        printf '%s\n' "version = 1" 'require_users = ["ft-dis"]' >"$H/policy.toml"
    fi
    printf '%s\n' "auth required pam_deny.so" "account required pam_deny.so" >"$H/pam.d/other"
    fleet_opts="store_lib=$STORE_LIB dir=$H/state"
    service "$i" fleet "store=$H/store.toml $fleet_opts policy=$H/policy.toml"
    service "$i" fleet-load "store=$H/store-load.toml $fleet_opts policy=$H/policy.toml"
    service "$i" fleet-wrongca "store=$H/store-wrongca.toml $fleet_opts policy=$H/policy.toml"
    service "$i" fleet-blackhole "store=$H/store-blackhole.toml $fleet_opts policy=$H/policy.toml"
    service "$i" fleet-cmp "store=$H/store.toml $fleet_opts policy=$CMP_POLICY"
    service "$i" file-cmp "dir=$H/state policy=$CMP_POLICY"
    for b in "${BLACKHOLES[@]}"; do
        ip -n "$(host_ns "$i")" neigh replace "$b" lladdr 02:00:00:00:00:99 dev "${LN}e$i" nud permanent ||
            die "neighbour $b on h$i"
    done
    python3 "$ROOT/tests/torture/logsink.py" "$H/log.sock" "$H/syslog" &
    SINKS+=($!)
done
for i in $(seq 1 "$N_HOSTS"); do
    for _ in $(seq 1 50); do [[ -S $BASE/h$i/log.sock ]] && break; sleep 0.1; done
    [[ -S $BASE/h$i/log.sock ]] || die "logsink of h$i"
done

# --- logins --------------------------------------------------------------------------------------
# login I SERVICE USER ANSWER ID: one login on host I (the harness's output in $OUT/ID; in
# $OUT/ID.ms the ms pam_authenticate took, as the harness measured it — the sandbox's set-up is
# not the module's budget — or the whole run's when the harness printed none). ID is also the
# login's PAM_RHOST. With ANSWER_AT (unix seconds)
# set, the answer is typed at that time, not at once. login_stdin I SERVICE USER ID: the same,
# answering from its stdin. LOGIN_ENV: more VAR=VALUE for the harness (faketime).
LOGIN_ENV=()
login() {
    answer_at "$4" | login_stdin "$1" "$2" "$3" "$5"
}
login_stdin() {
    local i=$1 svc=$2 user=$3 id=$4 t0 ms
    t0=$(date +%s%N)
    in_ns "$(host_ns "$i")" env SYSLOG_SOCKET="$BASE/h$i/log.sock" \
        PAM_RHOST="$id" HARNESS_SETCRED=0 HARNESS_TIME=1 "${LOGIN_ENV[@]}" timeout 60 \
        bash "$ROOT/tests/lib/sandbox.sh" "$HARNESS" "$BASE/h$i/pam.d" "$svc" "$user" \
        >"$OUT/$id" 2>&1
    ms=$(sed -n 's/^ELAPSED_MS:\([0-9]*\)$/\1/p' "$OUT/$id")
    echo "${ms:-$((($(date +%s%N) - t0) / 1000000))}" >"$OUT/$id.ms"
}
answer_at() {
    local wait
    if [[ -n ${ANSWER_AT:-} ]]; then
        wait=$(((ANSWER_AT * 1000000000 - $(date +%s%N)) / 1000000))
        ((wait <= 0)) || sleep "$((wait / 1000)).$(printf '%03d' $((wait % 1000)))"
    fi
    printf '%s\n' "$1"
}
# result ID: the module's PAM result (PAM_IGNORE when the mark shows); STRAY(line) when the
# login printed anything but the harness's own lines (the module writes nothing on
# stdout/stderr, SPEC §3).
result() {
    local stray
    stray=$(grep -vE '^(PROMPT_ECHO_OFF|INFO|RESULT|FAIL_DELAY|ELAPSED_MS):' "$OUT/$1" | head -n 1)
    if [[ -n $stray ]]; then
        echo "STRAY($stray)"
    elif grep -qx "INFO:$IGNORED_MARK" "$OUT/$1"; then
        echo PAM_IGNORE
    else
        sed -n 's/^RESULT:\([A-Z_]*\) .*/\1/p' "$OUT/$1"
    fi
}
prompted() { grep -q '^PROMPT_ECHO_OFF:' "$OUT/$1"; }
# reason I ID: what the module logged for login ID on host I, after "rhost=ID " (waits for the
# line up to 3 s; the sink writes what it receives at once).
reason() {
    local n line
    for n in $(seq 1 30); do
        line=$(grep -F " rhost=$2 " "$BASE/h$1/syslog" 2>/dev/null | head -n 1)
        [[ -n $line ]] && break
        sleep 0.1
    done
    echo "${line#* rhost=$2 }"
}
# outcome I ID: RESULT|reason
outcome() { echo "$(result "$2")|$(reason "$1" "$2")"; }
# tally PREFIX: the outcomes of a batch (IDs PREFIX-I-J, I the host) as "count RESULT|reason"
# lines, in the order of their text.
tally() {
    local f id i
    for f in "$OUT/$1"-[0-9]*-[0-9]*; do
        [[ $f == *.ms ]] && continue
        id=${f##*/}
        i=${id#"$1"-}
        i=${i%%-*}
        outcome "$i" "$id"
    done | LC_ALL=C sort | uniq -c | sed 's/^ *//'
}

# enrol USER HEX [RECOVERY-HASH...]: a record (SHA1, 6 digits, 30 s) made by the admin (the
# command ENROL_ADM, default adm) and
# activated with the previous step's code, so the current step's code is a fresh login; sets
# STEP (the current step) and remembers the secret for the at-rest scan.
SECRETS=()
RCODES=()
c30() { code "$1" SHA1 6 30 "$2"; }
enrol() {
    local user=$1 hex=$2 arr="{}"
    shift 2
    if (($#)); then arr="{$(IFS=,; echo "$*")}"; fi
    SECRETS+=("$hex")
    "${ENROL_ADM:-adm}" -v u="$user" -v h="\\x$hex" -v rc="$arr" >/dev/null 2>"$BASE/enrol.err" <<'EOF' ||
SELECT pam_totp.enrol(:'u', :'h'::bytea, 'SHA1', 6, 30, 'fleet-test', :'rc'::text[], false);
EOF
        { why "enrol $user: $(cat "$BASE/enrol.err")"; return 1; }
    STEP=$(cur_step 30)
    expect "activate $user" "$("${ENROL_ADM:-adm}" -v u="$user" -v c="$(c30 "$hex" $((STEP - 1)))" \
        <<<"SELECT outcome FROM pam_totp.activate(:'u', :'c', 2)")" activated
}
settings() { # ATTEMPTS LOCK MAX_LOCK RECOVERY_REPLAY_SECONDS
    adm <<<"SELECT pam_totp.set_settings($1, $2, $3, NULL, $4)" >/dev/null
}

# shellcheck source=tests/fleet/fleet-scenarios.sh
. "$ROOT/tests/fleet/fleet-scenarios.sh"
# shellcheck source=tests/fleet/fleet-offline.sh
. "$ROOT/tests/fleet/fleet-offline.sh"
# shellcheck source=tests/fleet/fleet-agent.sh
. "$ROOT/tests/fleet/fleet-agent.sh"
agent_setup

SCENARIOS=(
    fleet-host-cannot-read-secrets
    fleet-host-cannot-call-admin
    fleet-one-success-across-hosts
    fleet-replay-across-hosts
    fleet-throttle-across-hosts
    fleet-recovery-once
    fleet-disable-immediate
    fleet-force-reenrol-immediate
    fleet-tls-wrong-ca-refused
    fleet-same-results-as-file-mode
    fleet-secrets-encrypted-at-rest
    fleet-store-down-fails-closed
    fleet-offline-local-breakglass
    fleet-offline-report-back
    fleet-compromised-host-bounded
    fleet-agent-logins
    fleet-agent-not-root-refused
    fleet-agent-other-store-refused
    fleet-agent-reads-config-again
    fleet-agent-store-down-fails-closed
    fleet-agent-down-falls-back-direct
)
if [[ -n $FLEET_FAULTS ]]; then
    # shellcheck source=tests/fleet/fleet-faults.sh
    . "$ROOT/tests/fleet/fleet-faults.sh"
    t0=$(date +%s)
    faults_setup
    echo "    fault scenarios: primary a, synchronous standby b (s1), asynchronous c (s2); $FAULT_FAILOVERS failovers; set-up $(($(date +%s) - t0)) s"
    SCENARIOS+=(
        fleet-kill-primary-fails-closed
        fleet-partition-fails-closed
        fleet-failover-no-lost-step
        fleet-negative-control-async-loses-step
        fleet-clock-from-database
    )
fi
echo "    $N_HOSTS hosts, $PAR parallel logins per host; store.toml: connect $CONNECT_MS ms, budget $BUDGET_MS ms (parallel batches: $LOAD_CONNECT_MS, $LOAD_BUDGET_MS ms); set-up $(($(date +%s) - START)) s"
fleet_run_scenarios "${FLEET_TEST_ONLY:-}" "${SCENARIOS[@]}"
if [[ -n ${FLEET_TEST_KEEP:-} ]]; then
    echo "FLEET_TEST_KEEP: namespaces $NS_DB, $NS_ADM, $(host_ns 1) ...; files in $BASE; Enter to clean up"
    read -r _
fi
fleet_run_last fleet-nothing-left
echo "$FLEET_PASSED passed, $FLEET_FAILED failed ($(($(date +%s) - START)) s)"
((FLEET_FAILED == 0))
