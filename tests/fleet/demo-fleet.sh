#!/usr/bin/env bash
# tests/fleet/demo-fleet.sh — `make demo DEMO=fleet`: fleet mode (SPEC §11) told in one run,
# following the README's fleet runbook with the real CLI and the real module: a PostgreSQL 15
# store and two hosts in network namespaces (addresses that exist only inside them; the host's
# /etc, PostgreSQL and network are untouched), `pam-totp store init`, `store add-host` making
# each host's certificate and store.toml, `enroll` once from the admin namespace, then alice's
# code accepted on host-h1 and refused on host-h2, the next code accepted on host-h2, `status`
# naming the host, and a revoked host that can no longer check codes, even over its agent's
# open session. host-h1 runs
# pam-totp-agent (sessions to the store kept open); host-h2 has none, so its module connects
# itself — both ways give the same answers.
#
# Each login is tests/pam-harness/harness (a tiny PAM application) loading the module through
# libpam in the host's namespace, with `store=` pointing at that host's store.toml. Exit status
# 0 when every step behaved as the narration says. Root; ~30–60 s (one wait for the next 30 s
# code). DEMO_PAUSE: seconds between steps (default 0.8).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FLEET_NAME=demo-fleet
# shellcheck source=tests/fleet/lib.sh
. "$ROOT/tests/fleet/lib.sh"
# shellcheck source=tests/fleet/lib-net.sh
. "$ROOT/tests/fleet/lib-net.sh"
fleet_prereqs ip timeout cc
REL=${CARGO_TARGET_DIR:-$ROOT/target}/release
PAUSE=${DEMO_PAUSE:-0.8}
N_HOSTS=2
DB=pamtotp
FLEET_ADMIN_NS=1
fleet_net_init pamtotp-demo
BASE=$(mktemp -d /tmp/pam-totp-fleetdemo.XXXXXX)
AGENT_PID=
cleanup() {
    [[ -z $AGENT_PID ]] || { kill "$AGENT_PID" 2>/dev/null; wait "$AGENT_PID" 2>/dev/null; }
    fleet_net_down
    rm -rf "$BASE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
chmod 711 "$BASE"
T=$BASE/pg
PKI=$BASE/pki
mkdir -m 700 "$T" && chown postgres: "$T" || fleet_die "temp dir"
fleet_clean_pg_env
for f in libpam_totp.so libpam_totp_store.so pam-totp pam-totp-agent; do
    [[ -f $REL/$f ]] || fleet_die "$REL/$f missing (cargo build --release --workspace)"
done
mkdir -m 755 "$BASE/lib" "$BASE/bin"
install -m 644 "$REL/libpam_totp.so" "$REL/libpam_totp_store.so" "$BASE/lib/"
CLI=$REL/pam-totp
HARNESS=$BASE/bin/harness
cc -O2 -o "$HARNESS" "$ROOT/tests/pam-harness/harness.c" -lpam || fleet_die "compiling the harness"

FAILED=0
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; sleep "$PAUSE"; }
run() { printf '$ %s\n' "$*" | sed "s#$BASE#\$DEMO#g; s#$REL/##g"; "$@"; }
check() { # WHAT GOT WANT
    if [[ $2 == "$3" ]]; then echo "   ok: $1"; else echo "   NOT AS EXPECTED: $1: got $2, want $3"; FAILED=1; fi
}

say "A PostgreSQL 15 store with TLS in its own namespace ($DB_ADDR), two hosts, an admin"
fleet_net_up
fleet_pki
fleet_tls_cluster 40
fleet_createdb
echo "   store $DB_ADDR:$PORT; hosts $(host_addr 1), $(host_addr 2); admin $ADM_ADDR"

say "1. On the database server: pam-totp store init (as the superuser, over the unix socket)"
(umask 077 && printf '%s\n' 'backend = "postgresql"' "socket = \"$T\"" "database = \"$DB\"" \
    'role = "postgres"' >"$BASE/init.toml")
run "$CLI" --store "$BASE/init.toml" store init --key-file "$KEY" || fleet_die "store init"
sq() { "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$T" -U postgres -d "$DB" "$@"; }
sq <<<"CREATE ROLE fleet_admin LOGIN IN ROLE pam_totp_admin" || fleet_die "admin role"
(umask 077 && printf '%s\n' 'backend = "postgresql"' "addresses = [\"$DB_ADDR:$PORT\"]" \
    "database = \"$DB\"" 'role = "fleet_admin"' "ca = \"$PKI/ca.crt\"" \
    "cert = \"$PKI/admin.crt\"" "key = \"$PKI/admin.key\"" >"$BASE/admin.toml")
adm() { in_ns "$NS_ADM" "$CLI" --store "$BASE/admin.toml" "$@"; }

say "2. Two hosts: store add-host makes the role, its certificate and its store.toml"
for i in 1 2; do
    h=$(host_role "$i")
    run in_ns "$NS_ADM" "$CLI" --store "$BASE/admin.toml" store add-host "$h" \
        --ca-cert "$PKI/ca.crt" --ca-key "$PKI/ca.key" --out "$BASE/$h" \
        --address "$DB_ADDR:$PORT" >"$BASE/add-$h.log" 2>&1 || { cat "$BASE/add-$h.log"; fleet_die "add-host $h"; }
    sed -n '1,3p' "$BASE/add-$h.log"
    # On a real host the files go to /etc/pam-totp/ and the agent's socket to /run/pam-totp/;
    # here both stay in the demo's directory.
    sed -i "s#/etc/pam-totp/#$BASE/$h/#g; s#/run/pam-totp/#$BASE/$h/run/#g" "$BASE/$h/store.toml"
    chmod 700 "$BASE/$h"
    mkdir -m 755 "$BASE/$h/run"
    mkdir -m 700 "$BASE/$h/state" && mkdir -m 755 "$BASE/$h/pam.d"
    echo "auth required $BASE/lib/libpam_totp.so store=$BASE/$h/store.toml store_lib=$BASE/lib/libpam_totp_store.so dir=$BASE/$h/state policy=$BASE/$h/policy.toml" \
        >"$BASE/$h/pam.d/sshd"
done
echo "   each host's PAM line: auth required pam_totp.so store=/etc/pam-totp/store.toml"
echo "   host-h1 also runs the agent (systemctl enable --now pam-totp-agent); host-h2 does not"
run ip netns exec "$(host_ns 1)" "$REL/pam-totp-agent" --store "$BASE/host-h1/store.toml" \
    2>"$BASE/agent.log" &
AGENT_PID=$!
for _ in $(seq 100); do [[ -S $BASE/host-h1/run/agent.sock ]] && break; sleep 0.05; done
[[ -S $BASE/host-h1/run/agent.sock ]] || { cat "$BASE/agent.log"; fleet_die "agent"; }

say "3. Enrol alice once, from the admin namespace (she scans the QR code; here: its key)"
adm enroll alice --json >"$BASE/enrol.json" 2>"$BASE/enrol.err" || { cat "$BASE/enrol.err"; fleet_die "enroll"; }
SECRET=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["secret"])' "$BASE/enrol.json")
echo "   the JSON holds the key, the otpauth:// URI and 10 recovery codes; key ${SECRET:0:4}…"
fresh_step 30 12
run in_ns "$NS_ADM" "$CLI" --store "$BASE/admin.toml" activate alice "$(oathtool --totp -b "$SECRET" -N "@$(($(now) - 30))")"

# login I CODE: alice's login on host I with CODE; prints the PAM result
login() {
    local out
    out=$(printf '%s\n' "$2" | HARNESS_SETCRED=0 PAM_RHOST=192.0.2.7 in_ns "$(host_ns "$1")" \
        timeout 30 "$HARNESS" "$BASE/$(host_role "$1")/pam.d" sshd alice 2>&1)
    sed -n 's/^RESULT:\([A-Z_]*\) .*/\1/p' <<<"$out"
}

say "4. alice logs in on host-h1 with the code her phone shows"
CODE=$(oathtool --totp -b "$SECRET")
echo "   code $CODE"
check "host-h1 accepts it (asked through its agent)" "$(login 1 "$CODE")" PAM_SUCCESS
check "host-h1's agent keeps its session to the store open" \
    "$(sq <<<"SELECT count(*) > 0 FROM pg_stat_activity WHERE usename = 'host-h1' AND application_name = 'pam_totp'")" t

say "5. Someone replays the same code on host-h2"
check "host-h2 refuses it (one code, one login, fleet-wide; no agent: it connects itself)" \
    "$(login 2 "$CODE")" PAM_AUTH_ERR

say "6. The next code works on host-h2 (waiting for the next 30 s step)"
sleep $((30 - $(now) % 30 + 1))
CODE=$(oathtool --totp -b "$SECRET")
echo "   code $CODE"
check "host-h2 accepts the next code" "$(login 2 "$CODE")" PAM_SUCCESS
run in_ns "$NS_ADM" "$CLI" --store "$BASE/admin.toml" status alice
check "status names the host of the last success" \
    "$(adm status alice --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["last_success"]["host"])')" host-h2

say "7. The admin revokes host-h1: its agent's open session is refused at once (fails closed)"
run in_ns "$NS_ADM" "$CLI" --store "$BASE/admin.toml" store revoke-host host-h1
check "host-h1 is now unavailable, never let in" "$(login 1 "$(oathtool --totp -b "$SECRET")")" PAM_AUTHINFO_UNAVAIL

if ((FAILED)); then echo; echo "demo-fleet: some steps did not behave as described"; exit 1; fi
echo
echo "demo-fleet: every step behaved as described."
