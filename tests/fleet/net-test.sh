#!/usr/bin/env bash
# tests/fleet/net-test.sh — the network half of fleet mode's test set-up (FLEET.md "Test set-up
# that works on one machine"): a database namespace and 8 host namespaces on a bridge,
# PostgreSQL 15 with TLS and client certificates in the database namespace, the fleet schema,
# and scenarios run over TCP from the hosts.
#
# As root (prints SKIP and exits 0 otherwise). The network, certificates and pg_hba are
# lib-net.sh's: namespaces pamtotp-fnet-<pid>-db and -h1..-h8, a bridge in the db namespace
# with 10.231.0.1/24, each host namespace 10.231.0.1N/24 (addresses that exist only inside the
# namespaces; nothing is routed out); the cluster (initdb/pg_ctl as the postgres user, files in
# a temp directory) listens on 10.231.0.1:5432 in the db namespace with `hostssl ... cert` per
# host role (host-h1 .. host-h8) and on a unix socket in the temp directory (set-up only). The
# host's own PostgreSQL, /etc and network are never touched.
#
# Prints `PASS name` / `FAIL name`, then `N passed, M failed`; exit status 1 when any failed.
# Every client call runs under `timeout`. Cleanup (trap on EXIT, INT, TERM, HUP): the cluster
# stopped, every process left in our namespaces killed by pid, the namespaces (and with them
# the bridge and veths) deleted, the temp directory removed; the last scenario,
# fleet-net-nothing-left, runs that cleanup and compares `ip netns list` and `ip link` with
# what they were before: anything of ours still there fails it (namespaces are named
# pamtotp-fnet-<pid>-*, interfaces f<pid>b, f<pid>hN, f<pid>eN); anything else that appeared
# meanwhile belongs to another process and is only reported.
#
# Environment: PG_BIN (default /usr/lib/postgresql/15/bin), FLEET_NET_ONLY=name,name (run only
# these scenarios; fleet-net-nothing-left always runs), FLEET_NET_KEEP=1 (pause before cleanup,
# for poking around: prints how to enter the namespaces).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FLEET_NAME=fleet-net
# shellcheck source=tests/fleet/lib.sh
. "$ROOT/tests/fleet/lib.sh"
# shellcheck source=tests/fleet/lib-net.sh
. "$ROOT/tests/fleet/lib-net.sh"
fleet_prereqs ip timeout
ip netns list >/dev/null 2>&1 || { echo "SKIP $FLEET_NAME: no network namespaces (ip netns)"; exit 0; }

START=$(date +%s)
N_HOSTS=8
PAR=16 # parallel checks per host
DB=pamtotp
fleet_net_init pamtotp-fnet

T=$(mktemp -d /tmp/pam-totp-fleetnet.XXXXXX)
CLEANED=
cleanup() {
    [[ -n $CLEANED ]] && return 0
    CLEANED=1
    fleet_net_down
    rm -rf "$T"
}
trap 'cleanup; [[ -z $FLEET_WHY_LAST ]] || rm -f "$FLEET_WHY_LAST"' EXIT
trap 'exit 130' INT TERM HUP

chown postgres: "$T"
chmod 700 "$T"
WHY=$T/why
fleet_clean_pg_env
export PGOPTIONS='-c lock_timeout=20s -c statement_timeout=30s'
die() { fleet_die "$@"; }

fleet_net_up
PKI=$T/pki
fleet_pki
fleet_tls_cluster $((N_HOSTS * PAR + 20))
fleet_createdb
fleet_init_schema
for i in $(seq 1 "$N_HOSTS"); do
    [[ $(adm <<<"SELECT pam_totp.add_host('$(host_role "$i")')") == t ]] || die "add_host $i"
done

# A user enrolled with a known secret through the admin function, activated with the code of
# the previous step (so the current step's code is a fresh login).
SECRET_HEX=$(newkey 20)
PERIOD=30
code_at_step() { code "$SECRET_HEX" SHA1 6 "$PERIOD" "$1"; }
# Leave at least 8 s of the current step for the parallel scenario.
fresh_step "$PERIOD" 8
STEP=$(cur_step "$PERIOD")
adm -v h="\\x$SECRET_HEX" >/dev/null <<'EOF' || die "enrol"
SELECT pam_totp.enrol('alice', :'h'::bytea, 'SHA1', 6, 30, 'fleet-net-test', '{}'::text[], false);
EOF
[[ $(adm -v c="$(code_at_step $((STEP - 1)))" <<<"SELECT outcome FROM pam_totp.activate('alice', :'c', 2)") == activated ]] ||
    die "activate"

# --- scenarios -------------------------------------------------------------------------------
sc_fleet-net-isolated() {
    # The test network exists only in the namespaces: no address of it, no route to it in the
    # root namespace; the server listens on TCP on the db address only.
    local out
    out=$(ip -o addr show | grep -F " $NET." || true)
    expect "addresses of $NET.0/24 in the root namespace" "$out" "" || return 1
    out=$(ip route show | grep -F "$NET." || true)
    expect "routes to $NET.0/24 in the root namespace" "$out" "" || return 1
    out=$(in_ns "$NS_DB" ss -Hltn | awk '{print $4}' | sort -u | paste -sd' ')
    expect "TCP listeners in $NS_DB" "$out" "$DB_ADDR:$PORT" || return 1
    expect "hba" "$(sq <<<"SELECT DISTINCT type || ' ' || auth_method FROM pg_hba_file_rules ORDER BY 1" | paste -sd,)" \
        "hostssl cert,local trust"
}

sc_fleet-net-one-success-across-hosts() {
    local i j ns code pids=() out accepted replay other
    # Control first: each host can log in over TLS as itself.
    for i in $(seq 1 "$N_HOSTS"); do
        out=$(net_psql "$(host_ns "$i")" "$(conninfo "$i")" -c "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()" 2>&1)
        expect "host $i logs in over TLS" "$out" "$(host_role "$i")|t" || return 1
    done
    code=$(code_at_step $((STEP)))
    [[ $((($(date +%s)) / PERIOD)) -le $((STEP + 1)) ]] || { why "set-up took too long"; return 1; }
    mkdir -p "$T/par"
    for i in $(seq 1 "$N_HOSTS"); do
        ns=$(host_ns "$i")
        for j in $(seq 1 "$PAR"); do
            net_psql "$ns" "$(conninfo "$i")" -v u=alice -v a="$code" -v r="rhost-$i-$j" \
                >"$T/par/$i.$j" 2>&1 <<'EOF' &
SELECT pam_totp.check(:'u', :'a', :'r', 1) AS ticket \gset
SELECT outcome FROM pam_totp.outcome(:'ticket');
EOF
            pids+=($!)
        done
    done
    for i in "${pids[@]}"; do wait "$i"; done
    accepted=$(cat "$T"/par/* | grep -cx accepted)
    replay=$(cat "$T"/par/* | grep -cx replay)
    other=$(cat "$T"/par/* | grep -vx -e accepted -e replay | sort | uniq -c | head -n 5)
    echo "    $((N_HOSTS * PAR)) checks from $N_HOSTS hosts: $accepted accepted, $replay replay"
    expect "accepted" "$accepted" 1 || return 1
    expect "replay" "$replay" $((N_HOSTS * PAR - 1)) || { why "other output: $other"; return 1; }
    # The audit agrees: one success, by one of our hosts.
    expect "audited successes" "$(sq <<<"SELECT count(*) FROM pam_totp.audit WHERE outcome = 'accepted'" 2>&1)" 1 ||
        return 1
    out=$(adm <<<"SELECT last_success_host FROM pam_totp.status('alice')")
    [[ $out =~ ^host-h[1-8]$ ]] || { why "last success host: $out"; return 1; }
}

# must_fail NS CONNINFO: the error text of a connection attempt that must fail; status 1 if it
# succeeded. The refusal is also shown (on fd 3, the terminal).
must_fail() {
    local out
    if out=$(net_psql "$1" "$2" -c "SELECT current_user" 2>&1); then
        echo "SUCCEEDED: $out"
        return 1
    fi
    echo "      refused: $({ grep -m1 'failed:' <<<"$out" || head -n 1 <<<"$out"; } |
        sed 's/^psql: error: connection to server at [^ ]* port [0-9]* failed: //')" >&3
    echo "$out"
}
exec 3>&1

sc_fleet-net-tls-wrong-ca-refused() {
    local ns1 out
    ns1=$(host_ns 1)
    # The client pins a CA that did not sign the server's certificate: verify-full refuses.
    out=$(must_fail "$ns1" "$(conninfo 1 "sslrootcert=$PKI/otherca.crt")") ||
        { why "client pinning another CA: $out"; return 1; }
    [[ $out == *"certificate verify failed"* ]] || { why "client pinning another CA: $out"; return 1; }
    # A host presenting a certificate (CN host-h1) from another CA: the server refuses it.
    out=$(must_fail "$ns1" "$(conninfo 1 "sslcert=$PKI/h1-other.crt" "sslkey=$PKI/h1-other.key")") ||
        { why "foreign client certificate: $out"; return 1; }
    [[ $out == *"unknown ca"* || $out == *"certificate verify failed"* ]] ||
        { why "foreign client certificate: $out"; return 1; }
    # Nor without a certificate, nor without TLS.
    out=$(must_fail "$ns1" "host=$DB_ADDR port=$PORT dbname=$DB user=$(host_role 1) sslmode=verify-full sslrootcert=$PKI/ca.crt sslcert=/nonexistent sslkey=/nonexistent connect_timeout=5") ||
        { why "no client certificate: $out"; return 1; }
    [[ $out == *"certificate"* ]] || { why "no client certificate: $out"; return 1; }
    out=$(must_fail "$ns1" "host=$DB_ADDR port=$PORT dbname=$DB user=$(host_role 1) sslmode=disable connect_timeout=5") ||
        { why "without TLS: $out"; return 1; }
    [[ $out == *"no pg_hba.conf entry"* ]] || { why "without TLS: $out"; return 1; }
}

sc_fleet-net-host-cannot-impersonate() {
    local out
    # h2's certificate, as host-h1, from h1's address: the CN is not the role.
    out=$(must_fail "$(host_ns 1)" "$(conninfo 1 "sslcert=$PKI/h2.crt" "sslkey=$PKI/h2.key")") ||
        { why "h2's certificate from h1: $out"; return 1; }
    [[ $out == *"certificate authentication failed for user \"host-h1\""* ]] ||
        { why "h2's certificate from h1: $out"; return 1; }
    # The same from h2's own namespace and address: no pg_hba line lets host-h1 in from there.
    out=$(must_fail "$(host_ns 2)" "$(conninfo 1 "sslcert=$PKI/h2.crt" "sslkey=$PKI/h2.key")") ||
        { why "h2 as host-h1: $out"; return 1; }
    [[ $out == *"no pg_hba.conf entry"* || $out == *"certificate authentication failed"* ]] ||
        { why "h2 as host-h1: $out"; return 1; }
    # And with h1's certificate from h2's address (a stolen key on the wrong machine).
    out=$(must_fail "$(host_ns 2)" "$(conninfo 1)") || { why "h1's certificate from h2: $out"; return 1; }
    [[ $out == *"no pg_hba.conf entry"* ]] || { why "h1's certificate from h2: $out"; return 1; }
    # Control: h2 as itself works.
    expect "h2 as itself" "$(net_psql "$(host_ns 2)" "$(conninfo 2)" -c "SELECT current_user" 2>&1)" \
        "$(host_role 2)"
}

# fails_within NS CONNINFO BOUND LABEL ERROR: the connection fails with ERROR (a substring),
# within BOUND seconds.
fails_within() {
    local t0 t1 out secs
    t0=$(date +%s.%N)
    out=$(must_fail "$1" "$2" 3>/dev/null)
    local rc=$?
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    echo "    $4: failed after $secs s: $(grep -m1 'failed:' <<<"$out" | sed 's/.*failed: //')"
    ((rc == 0)) && [[ $out == *"$5"* ]] || { why "$4: want '$5': $out"; return 1; }
    awk -v s="$secs" -v b="$3" 'BEGIN { exit !(s <= b) }' || { why "$4: took $secs s (bound $3 s)"; return 1; }
}

sc_fleet-net-store-down-fails-fast() {
    local ns3
    ns3=$(host_ns 3)
    # The database unreachable (h3's link down at the bridge: packets vanish, no refusal):
    # connect_timeout=2 is what ends the attempt.
    ip -n "$NS_DB" link set "${LN}h3" down || { why "link down"; return 1; }
    fails_within "$ns3" "$(conninfo 3 connect_timeout=2)" 3 "link down" "timeout expired" || {
        ip -n "$NS_DB" link set "${LN}h3" up
        return 1
    }
    ip -n "$NS_DB" link set "${LN}h3" up || { why "link up"; return 1; }
    # h3 reaches the server again (its neighbour entry for the db address, failed while the
    # link was down, is resolved anew) before the server is stopped: otherwise the next
    # attempt could end in "No route to host" and not measure a stopped server.
    local tries=0
    until [[ $(net_psql "$ns3" "$(conninfo 3 connect_timeout=2)" -c "SELECT 1" 2>/dev/null) == 1 ]]; do
        tries=$((tries + 1))
        ((tries < 10)) || { why "h3 does not reach the server after the link came back"; return 1; }
        sleep 0.5
    done
    # The server stopped.
    fleet_pg_stop fast || { why "pg_ctl stop"; return 1; }
    [[ ! -f $T/data/postmaster.pid ]] || { why "server still running"; return 1; }
    fails_within "$ns3" "$(conninfo 3 connect_timeout=2)" 3 "server stopped" "Connection refused"
}

sc_fleet-net-nothing-left() { fleet_nothing_left "$T"; }

# --- run -------------------------------------------------------------------------------------
SCENARIOS=(
    fleet-net-isolated
    fleet-net-one-success-across-hosts
    fleet-net-tls-wrong-ca-refused
    fleet-net-host-cannot-impersonate
    fleet-net-store-down-fails-fast
)
fleet_run_scenarios "${FLEET_NET_ONLY:-}" "${SCENARIOS[@]}"
if [[ -n ${FLEET_NET_KEEP:-} ]]; then
    echo "FLEET_NET_KEEP: namespaces $NS_DB, $(host_ns 1) ...; files in $T; Enter to clean up"
    read -r _
fi
fleet_run_last fleet-net-nothing-left
echo "$FLEET_PASSED passed, $FLEET_FAILED failed ($(($(date +%s) - START)) s)"
((FLEET_FAILED == 0))
