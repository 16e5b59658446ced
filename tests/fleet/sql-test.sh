#!/usr/bin/env bash
# tests/fleet/sql-test.sh — the database half of fleet mode (fleet/sql/*.sql) against a
# throwaway PostgreSQL 15 cluster: roles and privileges, secrets at rest, the check function's
# outcomes and concurrency, and the in-database TOTP against the Rust one; what migration 004
# changed for many logins per second (no waiting between checks).
#
# As root (initdb runs as the postgres user). The cluster listens on a unix socket in a temp
# directory only (no TCP); the host's own clusters and /etc/postgresql are never touched. The
# key file lives in the temp directory and is named to the store by set_key_file. Codes come
# from oathtool, never from the SQL under test. Prints `PASS name` / `FAIL name`, then
# `N passed, M failed`; exit status 1 when any failed. Leaves nothing behind (trap).
#
# Environment: PG_BIN (default /usr/lib/postgresql/15/bin), CARGO (default cargo),
# FLEET_SQL_ONLY=name,name (run only these scenarios), FLEET_SQL_RANDOM=N (default 10000).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CARGO=${CARGO:-cargo}
RANDOM_CASES=${FLEET_SQL_RANDOM:-10000}
FLEET_NAME=fleet-sql
# shellcheck source=tests/fleet/lib.sh
. "$ROOT/tests/fleet/lib.sh"
fleet_prereqs python3

START=$(date +%s)
T=$(mktemp -d /tmp/pam-totp-fleetsql.XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    fleet_pg_stop
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

chown postgres: "$T"
chmod 700 "$T"
DB=pamtotp
export PGOPTIONS='-c lock_timeout=20s -c statement_timeout=60s'
export PGCONNECT_TIMEOUT=10
fleet_clean_pg_env
die() { fleet_die "$@"; }

# --- cluster -------------------------------------------------------------------------------
fleet_initdb
fleet_pg_start || die "pg_ctl start"

apply_migrations() { fleet_apply_migrations; }

fleet_createdb
fleet_init_schema
adm <<<"SELECT pam_totp.add_host('host-a'), pam_totp.add_host('host-b')" >/dev/null ||
    die "add_host"

# --- helpers -------------------------------------------------------------------------------
WHY=$T/why

# check_as HOST USER ANSWER [RHOST] [WINDOW]: check (committed), then outcome
#   -> outcome|reason|step|clock_offset|last_step|failures|locked_until|recovery_left|db_time
check_as() {
    psql_as "$1" -v u="$2" -v a="$3" -v r="${4:-192.0.2.1}" -v w="${5:-1}" <<'EOF'
SELECT pam_totp.check(:'u', :'a', :'r', :w) AS ticket \gset
SELECT outcome, reason, step, clock_offset, last_step, failures, locked_until, recovery_left,
       db_time
FROM pam_totp.outcome(:'ticket');
EOF
}

# enrol_active USER HEX ALG DIGITS PERIOD STEP [HASHES...]: enrols and activates with the code
# of STEP (within 2 steps of now).
enrol_active() {
    local user=$1 hex=$2 alg=$3 digits=$4 period=$5 step=$6
    shift 6
    local arr="{}"
    if (($#)); then arr="{$(IFS=,; echo "$*")}"; fi
    adm -v u="$user" -v h="\\x$hex" -v alg="$alg" -v d="$digits" -v p="$period" -v rc="$arr" \
        >/dev/null <<'EOF' || return 1
SELECT pam_totp.enrol(:'u', :'h'::bytea, :'alg', :d, :p, 'fleet-test', :'rc'::text[], false);
EOF
    local got
    got=$(adm -v u="$user" -v c="$(code "$hex" "$alg" "$digits" "$period" "$step")" <<'EOF'
SELECT outcome FROM pam_totp.activate(:'u', :'c', 2);
EOF
    )
    expect "activate $user" "$got" activated
}

# Runs `psql_as ROLE` on SQL and requires a permission error.
denied() { fleet_denied "$2" psql_as "$1"; }

# --- scenarios -----------------------------------------------------------------------------

sc_fleet-sql-migrations-versioned() {
    local n
    n=$(apply_migrations) || { why "re-applying failed"; return 1; }
    expect "migrations applied on a second run" "$n" 0 || return 1
    expect "schema_version" "$(sq <<<'SELECT string_agg(version::text, $$,$$) FROM pam_totp.schema_version')" \
        "$(ls "$ROOT"/fleet/sql/[0-9][0-9][0-9]_*.sql | sed 's#.*/##; s/_.*//; s/^0*//' | paste -sd,)" || return 1
    local out
    out=$(sq --single-transaction -f "$ROOT/fleet/sql/001_init.sql" 2>&1) && {
        why "001 applied twice"
        return 1
    }
    [[ $out == *"already applied"* ]] || { why "second 001: $out"; return 1; }
}

sc_fleet-sql-definer-search-path() {
    # Every SECURITY DEFINER function pins search_path; nothing is executable by PUBLIC; the
    # host role may execute exactly check (both), enrolment, outcome and report_offline.
    local bad
    bad=$(sq <<'EOF'
SELECT p.oid::regprocedure FROM pg_proc p
WHERE p.pronamespace = 'pam_totp'::regnamespace AND p.prosecdef
  AND NOT coalesce(p.proconfig::text LIKE '%"search_path=pg_catalog, pam_totp, pg_temp"%', false)
EOF
    )
    expect "definer functions without search_path" "$bad" "" || return 1
    bad=$(sq <<'EOF'
SELECT p.oid::regprocedure::text FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
WHERE p.pronamespace = 'pam_totp'::regnamespace AND a.grantee = 0
UNION ALL
SELECT c.oid::regclass::text FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
WHERE c.relnamespace = 'pam_totp'::regnamespace AND a.grantee = 0
EOF
    )
    expect "objects open to PUBLIC" "$bad" "" || return 1
    expect "host functions" "$(sq <<'EOF'
SELECT string_agg(p.proname, ',' ORDER BY p.proname) FROM pg_proc p
WHERE p.pronamespace = 'pam_totp'::regnamespace AND has_function_privilege('host-a', p.oid, 'EXECUTE')
EOF
    )" "check,check,enrolment,outcome,report_offline" || return 1
    expect "admin functions" "$(sq <<'EOF'
SELECT string_agg(p.proname, ',' ORDER BY p.proname) FROM pg_proc p
WHERE p.pronamespace = 'pam_totp'::regnamespace
  AND has_function_privilege('fleet_admin', p.oid, 'EXECUTE')
EOF
    )" "activate,add_host,disable,enrol,hosts,renew_recovery,revoke_host,set_settings,settings,status,unlock" ||
        return 1
    expect "functions without a contract (COMMENT)" "$(sq <<'EOF'
SELECT string_agg(p.proname, ',') FROM pg_proc p
WHERE p.pronamespace = 'pam_totp'::regnamespace AND p.proowner = 'pam_totp_owner'::regrole
  AND obj_description(p.oid, 'pg_proc') IS NULL
EOF
    )" "" || return 1
    expect "owner can log in" "$(sq <<<"SELECT rolcanlogin FROM pg_roles WHERE rolname = 'pam_totp_owner'")" f
}

# A user with a secret and recovery codes, for the privilege and at-rest scenarios.
SECRET_HEX=$(newkey 20)
RC1=$(recovery_code)
RC2=$(recovery_code)
RH1=$(recovery_hash "$RC1")
RH2=$(recovery_hash "$RC2")

secret_user() {
    [[ $(sq <<<"SELECT count(*) FROM pam_totp.users WHERE name = 'enc1'") == 1 ]] && return 0
    local p=30 s
    fresh_step $p
    s=$(cur_step $p)
    enrol_active enc1 "$SECRET_HEX" SHA1 6 $p $((s - 1)) "$RH1" "$RH2" || return 1
    expect "enc1 login" "$(field "$(check_as host-a enc1 "$(code "$SECRET_HEX" SHA1 6 $p "$s")")" 1)" \
        accepted
}

sc_fleet-sql-host-cannot-read-secrets() {
    secret_user || return 1
    fleet_host_cannot_read psql_as host-a || return 1
    fleet_denied "COPY pam_totp.users TO STDOUT" psql_as host-b || return 1
    # What a host does get: no secret, no hash, no state.
    expect "enrolment() for a host" "$(psql_as host-a <<<"SELECT * FROM pam_totp.enrolment('enc1')" | cut -d'|' -f1,2)" \
        "active|6"
}

sc_fleet-sql-admin-cannot-read-secrets() {
    secret_user || return 1
    local t
    for t in $(sq <<<"SELECT tablename FROM pg_tables WHERE schemaname = 'pam_totp'"); do
        denied fleet_admin "SELECT * FROM pam_totp.$t" || return 1
    done
    denied fleet_admin "SELECT pam_totp.key()" || return 1
    denied fleet_admin "SELECT pg_read_file('$KEY')" || return 1
    denied fleet_admin "SELECT * FROM pam_totp.check('enc1', '123456', 'x', 1)" || return 1
    local st
    st=$(adm <<<"SELECT row_to_json(s)::text FROM pam_totp.status('enc1') s")
    [[ $st == *'"last_success_host":"host-a"'* && $st == *'"recovery_left":2'* ]] ||
        { why "status: $st"; return 1; }
    [[ $st != *"$SECRET_HEX"* && $st != *secret* ]] || { why "status shows the secret: $st"; return 1; }
}

sc_fleet-sql-host-cannot-call-admin() {
    fleet_host_cannot_call_admin psql_as host-b || return 1
    denied host-a "SELECT pam_totp.unlock('enc1', true)"
}

sc_fleet-sql-secrets-encrypted-at-rest() {
    secret_user || return 1
    local dump=$T/dump.sql b32 c
    "$PG_BIN/pg_dump" -h "$T" -U postgres -d "$DB" -f "$dump" || { why "pg_dump failed"; return 1; }
    "$PG_BIN/pg_dumpall" -h "$T" -U postgres -f "$T/dumpall.sql" || { why "pg_dumpall failed"; return 1; }
    grep -q 'COPY pam_totp.users' "$dump" && grep -q 'enc1' "$dump" ||
        { why "the dump holds no users (test would be vacuous)"; return 1; }
    b32=$(b32_of "$SECRET_HEX")
    for f in "$dump" "$T/dumpall.sql"; do
        # the key's text; the secret in base32 and hex; the recovery codes, with and without
        # dashes; their stored entries' salts and hashes
        fleet_dump_clean "$f" "$(cat "$KEY")" "$b32" "$SECRET_HEX" "$RC1" "${RC1//-/}" "$RC2" \
            "${RC2//-/}" "$(cut -d: -f2 <<<"$RH1")" "$(cut -d: -f3 <<<"$RH1")" \
            "$(cut -d: -f2 <<<"$RH2")" "$(cut -d: -f3 <<<"$RH2")" || return 1
    done
    # Nor do the data directory's files (heap, WAL) hold the key, or the secret in any form.
    sq <<<"CHECKPOINT" || return 1
    python3 - "$T/data" "$SECRET_HEX" "$b32" "$(cat "$KEY")" <<'EOF' || { why "$(cat "$T/scan")"; return 1; }
import os, sys
root, hexs, b32, key = sys.argv[1:]
needles = [bytes.fromhex(hexs), hexs.encode(), hexs.upper().encode(), b32.encode(), key.encode()]
for d, _, files in os.walk(root):
    for f in files:
        p = os.path.join(d, f)
        try:
            data = open(p, "rb").read()
        except OSError:
            continue
        for n in needles:
            if n in data:
                open(os.path.join(os.path.dirname(root), "scan"), "w").write(f"{p} holds {n!r}")
                sys.exit(1)
EOF
    # The stored form is OpenPGP symmetric (pgp_sym_encrypt), not the key.
    expect "stored form" "$(sq <<<"SELECT pam_totp.pgp_sym_decrypt_bytea(secret, pam_totp.key()) = '\\x$SECRET_HEX'::bytea AND secret <> '\\x$SECRET_HEX'::bytea FROM pam_totp.users WHERE name = 'enc1'")" t
}

sc_fleet-sql-one-success-for-parallel-checks() {
    local p=30 s hex c h i at
    hex=$(newkey 20)
    fresh_step $p 8
    s=$(cur_step $p)
    enrol_active par1 "$hex" SHA1 6 $p $((s - 1)) || return 1
    c=$(code "$hex" SHA1 6 $p "$s")
    at=$(($(now) + 2))
    for h in host-a host-b; do
        for i in $(seq 1 16); do
            # Each client connects, then waits for the same instant before it checks.
            psql_as "$h" -v u=par1 -v a="$c" -v r="198.51.100.$i" -v at="$at" \
                >"$T/par.$h.$i" 2>&1 <<'EOF' &
SELECT pg_sleep(greatest(0, :at - extract(epoch FROM clock_timestamp()))) \gset
SELECT pam_totp.check(:'u', :'a', :'r', 1) AS ticket \gset
SELECT outcome FROM pam_totp.outcome(:'ticket');
EOF
            PIDS+=($!)
        done
    done
    wait
    PIDS=()
    local out
    out=$(cat "$T"/par.* | sort | uniq -c | awk '{print $2 "=" $1}' | paste -sd' ')
    expect "outcomes of 32 parallel checks" "$out" "accepted=1 replay=31" || return 1
    expect "failures (replays are not counted)" \
        "$(adm <<<"SELECT failures, last_step FROM pam_totp.status('par1')")" "0|$s" || return 1
    expect "audit rows by host" "$(sq <<<"SELECT string_agg(host || '=' || n, ' ' ORDER BY host) FROM (SELECT host, count(*) n FROM pam_totp.audit WHERE user_name = 'par1' AND outcome <> 'admin' GROUP BY host) a")" \
        "host-a=16 host-b=16"
}

sc_fleet-sql-rollback-reveals-nothing() {
    # A host that runs check inside its own transaction and rolls back must learn nothing:
    # outcome refuses until the check has committed (then the attempt is counted).
    local p=30 s hex out wrong right
    hex=$(newkey 20)
    fresh_step $p 8
    s=$(cur_step $p)
    enrol_active rb1 "$hex" SHA1 6 $p $((s - 1)) || return 1
    wrong=$(code "$hex" SHA1 6 $p $((s + 5)))
    right=$(code "$hex" SHA1 6 $p "$s")
    for c in "$wrong" "$right"; do
        out=$(psql_as host-a -v a="$c" 2>&1 <<'EOF'
BEGIN;
SELECT pam_totp.check('rb1', :'a', 'x', 1) AS ticket \gset
SELECT outcome FROM pam_totp.outcome(:'ticket');
EOF
        ) && { why "outcome inside the check's transaction: $out"; return 1; }
        [[ $out == *"not committed"* ]] || { why "uncommitted outcome: $out"; return 1; }
        # Nor do the statistics of its open transaction tell how many rows the check wrote.
        out=$(psql_as host-a -v a="$c" 2>&1 <<'EOF'
BEGIN;
SELECT pam_totp.check('rb1', :'a', 'x', 1);
SELECT n_tup_upd FROM pg_stat_xact_user_tables;
EOF
        ) && { why "statistics inside the check's transaction: $out"; return 1; }
        [[ $out == *"permission denied"* ]] || { why "xact statistics: $out"; return 1; }
    done
    expect "nothing kept by rolled-back checks" \
        "$(adm <<<"SELECT failures, last_step FROM pam_totp.status('rb1')")" "0|$((s - 1))" || return 1
    # A savepoint does not help either.
    out=$(psql_as host-a -v a="$wrong" 2>&1 <<'EOF'
BEGIN;
SAVEPOINT a;
SELECT pam_totp.check('rb1', :'a', 'x', 1) AS ticket \gset
RELEASE SAVEPOINT a;
SELECT outcome FROM pam_totp.outcome(:'ticket');
EOF
    ) && { why "outcome after a savepoint: $out"; return 1; }
    # Two checks in one transaction: the second could tell from its work whether the first
    # locked the user (migration 003): refused, for both signatures.
    for args in "1" "1, 0"; do
        out=$(psql_as host-a -v a="$wrong" 2>&1 <<EOF
BEGIN;
SELECT pam_totp.check('rb1', :'a', 'x', $args);
SELECT pam_totp.check('rb1', :'a', 'x', $args);
EOF
        ) && { why "two checks in one transaction ($args): $out"; return 1; }
        [[ $out == *"transaction of its own"* ]] || { why "second check ($args): $out"; return 1; }
    done
    expect "nothing kept by the refused pair" \
        "$(adm <<<"SELECT failures FROM pam_totp.status('rb1')")" 0 || return 1
    # Committed: counted, and only the host that checked may read the outcome.
    out=$(psql_as host-a -v a="$wrong" <<<"SELECT pam_totp.check('rb1', :'a', 'x', 1)") || return 1
    expect "committed wrong code" "$(psql_as host-a <<<"SELECT outcome, failures FROM pam_totp.outcome('$out')")" "wrong|1" || return 1
    out=$(psql_as host-b <<<"SELECT pam_totp.outcome('$out')" 2>&1) && { why "host-b read host-a's outcome"; return 1; }
    [[ $out == *"no check with this ticket"* ]] || { why "host-b: $out"; return 1; }
    expect "right code afterwards" "$(field "$(check_as host-a rb1 "$right")" 1)" accepted
}

sc_fleet-sql-replay-across-hosts() {
    local p=30 s hex r
    hex=$(newkey 32)
    fresh_step $p 15
    s=$(cur_step $p)
    enrol_active rep1 "$hex" SHA256 8 $p $((s - 1)) || return 1
    r=$(check_as host-a rep1 "$(code "$hex" SHA256 8 $p "$s")" 203.0.113.7)
    expect "host-a" "$(field "$r" 1-4)" "accepted|accepted step $s (offset 0)|$s|0" || return 1
    r=$(check_as host-b rep1 "$(code "$hex" SHA256 8 $p "$s")")
    expect "host-b, same code" "$(field "$r" 1-3,5-6)" \
        "replay|replayed code (step $s, last accepted $s)|$s|$s|0" || return 1
    r=$(check_as host-b rep1 "$(code "$hex" SHA256 8 $p $((s - 1)))")
    expect "host-b, older code" "$(field "$r" 1,2)" \
        "replay|replayed code (step $((s - 1)), last accepted $s)" || return 1
    r=$(check_as host-a rep1 " $(code "$hex" SHA256 8 $p $((s + 1))) " 203.0.113.8)
    expect "host-a, next code (with spaces)" "$(field "$r" 1,3,4)" "accepted|$((s + 1))|1" || return 1
    r=$(check_as host-b rep1 "$(code "$hex" SHA256 8 $p $((s + 1)))")
    expect "host-b, that code" "$(field "$r" 1)" replay || return 1
    expect "status" "$(adm <<<"SELECT failures, last_step, last_offset, last_success_host, last_success_rhost FROM pam_totp.status('rep1')")" \
        "0|$((s + 1))|1|host-a|203.0.113.8"
}

sc_fleet-sql-throttle() {
    local p=30 s hex r wrong right
    hex=$(newkey 20)
    adm <<<"SELECT pam_totp.set_settings(3, 60, 3600, NULL, NULL)" >/dev/null || return 1
    fresh_step $p 15
    s=$(cur_step $p)
    enrol_active thr1 "$hex" SHA1 6 $p $((s - 1)) || return 1
    wrong=$(code "$hex" SHA1 6 $p $((s + 5)))
    right=$(code "$hex" SHA1 6 $p "$s")
    r=$(check_as host-a thr1 "$wrong")
    expect "1st wrong" "$(field "$r" 1,2,6,7)" "wrong|wrong code (failure 1)|1|0" || return 1
    r=$(check_as host-b thr1 "hello")
    expect "2nd wrong (not a code at all)" "$(field "$r" 1,6,7)" "wrong|2|0" || return 1
    r=$(check_as host-a thr1 "   ")
    expect "empty answer" "$(field "$r" 1,2,6)" "empty|empty code (not counted)|2" || return 1
    r=$(check_as host-b thr1 "$wrong")
    local until db want_until
    until=$(field "$r" 7)
    db=$(field "$r" 9)
    want_until=$(date -u -d "@$until" +%Y-%m-%dT%H:%M:%SZ)
    expect "3rd wrong locks for 60 s" "$(field "$r" 1,2,6),$((until - db))" \
        "wrong|wrong code (failure 3); locked until $want_until|3,60" || return 1
    r=$(check_as host-a thr1 "$right")
    expect "right code while locked" "$(field "$r" 1,2,6,7)" "locked|locked until $want_until|3|$until" ||
        return 1
    r=$(check_as host-b thr1 "$wrong")
    expect "wrong code while locked (not counted)" "$(field "$r" 1,6)" "locked|3" || return 1
    r=$(check_as host-b thr1 "")
    expect "empty while locked" "$(field "$r" 1,6)" "empty|3" || return 1
    r=$(check_as host-b thr1 "$(head -c 200 /dev/zero | tr '\0' 1)")
    expect "over-long answer while locked" "$(field "$r" 1)" "locked" || return 1
    r=$(adm <<<"SELECT * FROM pam_totp.unlock('thr1', false)")
    expect "unlock" "$(field "$r" 2)" "$(cur_step $p)" || return 1
    r=$(check_as host-a thr1 "$right")
    expect "code of the unlock's step" "$(field "$r" 1,6)" "replay|0" || return 1
    r=$(check_as host-a thr1 "$(code "$hex" SHA1 6 $p $((s + 1)))")
    expect "next code after unlock" "$(field "$r" 1,6,7)" "accepted|0|0" || return 1
    # The lock's growth, as throttle.rs's tests have it.
    expect "doubling" "$(sq <<<"SELECT string_agg(pam_totp.locked_until_after(f, 0, 5, 60, 3600)::text, ',' ORDER BY f) FROM generate_series(4, 13) f")" \
        "0,60,120,240,480,960,1920,3600,3600,3600" || return 1
    expect "custom" "$(sq <<<"SELECT pam_totp.locked_until_after(1, 100, 1, 10, 25), pam_totp.locked_until_after(3, 100, 1, 10, 25), pam_totp.locked_until_after(2147483647, 0, 5, 60, 3600)")" \
        "110|125|3600" || return 1
    local bad
    bad=$(adm <<<"SELECT pam_totp.set_settings(0, NULL, NULL, NULL, NULL)" 2>&1) &&
        { why "attempts 0 accepted"; return 1; }
    [[ $bad == *check* ]] || { why "attempts 0: $bad"; return 1; }
    adm <<<"SELECT pam_totp.set_settings(5, 60, 3600, NULL, NULL)" >/dev/null
}

sc_fleet-sql-recovery-once() {
    local p=30 s hex c1 c2 c3 r h i out
    hex=$(newkey 20)
    c1=$(recovery_code)
    c2=$(recovery_code)
    c3=$(recovery_code)
    fresh_step $p
    s=$(cur_step $p)
    enrol_active rec1 "$hex" SHA1 6 $p $((s - 1)) "$(recovery_hash "$c1")" "$(recovery_hash "$c2")" \
        "$(recovery_hash "$c3")" || return 1
    local at=$(($(now) + 2))
    for h in host-a host-b; do
        for i in $(seq 1 8); do
            psql_as "$h" -v u=rec1 -v a="$c1" -v at="$at" >"$T/rec.$h.$i" 2>&1 <<'EOF' &
SELECT pg_sleep(greatest(0, :at - extract(epoch FROM clock_timestamp()))) \gset
SELECT pam_totp.check(:'u', :'a', 'x', 1) AS ticket \gset
SELECT outcome || ':' || reason FROM pam_totp.outcome(:'ticket');
EOF
            PIDS+=($!)
        done
    done
    wait
    PIDS=()
    out=$(cat "$T"/rec.* | sort | uniq -c | awk '{$1=$1; print}' | paste -sd';')
    expect "16 parallel uses of one recovery code" "$out" \
        "1 accepted_recovery:accepted recovery code (2 left);15 recovery_replay:replayed recovery code (burned by a concurrent login; not counted)" ||
        return 1
    r=$(check_as host-b rec1 "$(tr a-z A-Z <<<"${c2//-/}")")
    expect "another code, upper case, no dashes" "$(field "$r" 1,2,6,8)" \
        "accepted_recovery|accepted recovery code (1 left)|0|1" || return 1
    r=$(check_as host-a rec1 "$c1")
    expect "the first code again, soon after" "$(field "$r" 1,6)" "recovery_replay|0" || return 1
    adm <<<"SELECT pam_totp.set_settings(NULL, NULL, NULL, NULL, 0)" >/dev/null || return 1
    sleep 1
    r=$(check_as host-a rec1 "$c1")
    expect "the first code again, later" "$(field "$r" 1,6)" "wrong|1" || return 1
    adm <<<"SELECT pam_totp.set_settings(NULL, NULL, NULL, NULL, 300)" >/dev/null || return 1
    r=$(check_as host-a rec1 "$(recovery_code)")
    expect "a code never issued" "$(field "$r" 1,6)" "wrong|2" || return 1
    r=$(check_as host-a rec1 "${c3:0:7} ${c3:7}")
    expect "the last code, with a space" "$(field "$r" 1,6,8)" "accepted_recovery|0|0" || return 1
    expect "status" "$(adm <<<"SELECT recovery_left, last_success_host FROM pam_totp.status('rec1')")" "0|host-a"
}

sc_fleet-sql-offset() {
    local p=30 s hex r
    hex=$(newkey 64)
    fresh_step $p 15
    s=$(cur_step $p)
    enrol_active off1 "$hex" SHA512 6 $p $((s - 2)) || return 1
    r=$(check_as host-a off1 "$(code "$hex" SHA512 6 $p $((s - 1)))")
    expect "previous step's code" "$(field "$r" 1-4)" \
        "accepted|accepted step $((s - 1)) (offset -1)|$((s - 1))|-1" || return 1
    r=$(check_as host-b off1 "$(code "$hex" SHA512 6 $p $((s + 2)))")
    expect "two steps ahead, window 1" "$(field "$r" 1)" "wrong" || return 1
    r=$(check_as host-b off1 "$(code "$hex" SHA512 6 $p $((s + 2)))" x 2)
    expect "two steps ahead, window 2" "$(field "$r" 1,4)" "accepted|2" || return 1
    adm <<<"SELECT pam_totp.set_settings(NULL, NULL, NULL, 0, NULL)" >/dev/null || return 1
    r=$(check_as host-b off1 "$(code "$hex" SHA512 6 $p $((s + 3)))" x 10)
    expect "window capped by settings.max_window = 0" "$(field "$r" 1)" "wrong" || return 1
    adm <<<"SELECT pam_totp.set_settings(NULL, NULL, NULL, 10, NULL)" >/dev/null || return 1
    expect "status" "$(adm <<<"SELECT last_offset, failures FROM pam_totp.status('off1')")" "2|1"
}

sc_fleet-sql-enrolment-lifecycle() {
    local p=30 s hex hex2 r out
    hex=$(newkey 20)
    hex2=$(newkey 20)
    fresh_step $p 8
    s=$(cur_step $p)
    expect "enrolment of nobody" "$(psql_as host-a <<<"SELECT enrolment FROM pam_totp.enrolment('life1')")" none || return 1
    expect "check of nobody" "$(field "$(check_as host-a life1 123456)" 1,2)" \
        "not_enrolled|record changed during login" || return 1
    adm -v h="\\x$hex" <<<"SELECT pam_totp.enrol('life1', :'h'::bytea, 'SHA1', 6, 30, 'i', NULL, false)" >/dev/null || return 1
    expect "pending: enrolment" "$(psql_as host-a <<<"SELECT enrolment FROM pam_totp.enrolment('life1')")" none || return 1
    expect "pending: check" "$(field "$(check_as host-a life1 "$(code "$hex" SHA1 6 $p "$s")")" 1)" not_enrolled || return 1
    expect "activate with a wrong code" "$(adm <<<"SELECT outcome FROM pam_totp.activate('life1', '$(code "$hex" SHA1 6 $p $((s + 4)))', NULL)")" wrong || return 1
    expect "activate" "$(adm <<<"SELECT outcome, step FROM pam_totp.activate('life1', '$(code "$hex" SHA1 6 $p "$s")', NULL)")" "activated|$s" || return 1
    expect "activate again" "$(adm <<<"SELECT outcome FROM pam_totp.activate('life1', '$(code "$hex" SHA1 6 $p "$s")', NULL)")" already_active || return 1
    out=$(adm -v h="\\x$hex2" <<<"SELECT pam_totp.enrol('life1', :'h'::bytea, 'SHA1', 6, 30, 'i', NULL, false)" 2>&1) &&
        { why "active record replaced without force"; return 1; }
    [[ $out == *"already has an active record"* ]] || { why "enrol without force: $out"; return 1; }
    r=$(adm -v h="\\x$hex2" <<<"SELECT secret IS NULL, replaces_active FROM pam_totp.enrol('life1', :'h'::bytea, 'SHA1', 6, 30, 'i', NULL, true)")
    expect "enrol --force" "$r" "t|t" || return 1
    expect "replacement pending: enrolment" "$(psql_as host-b <<<"SELECT enrolment, digits FROM pam_totp.enrolment('life1')")" "pending_replacement|6" || return 1
    expect "replacement pending: old key's code" "$(field "$(check_as host-b life1 "$(code "$hex" SHA1 6 $p $((s + 1)))")" 1,2)" \
        "pending_replacement|re-enrolment pending activation" || return 1
    expect "activate the new key" "$(adm <<<"SELECT outcome FROM pam_totp.activate('life1', '$(code "$hex2" SHA1 6 $p "$s")', NULL)")" activated || return 1
    expect "new key's next code" "$(field "$(check_as host-b life1 "$(code "$hex2" SHA1 6 $p $((s + 1)))")" 1)" accepted || return 1
    expect "generated key" "$(adm <<<"SELECT length(secret), replaces_active FROM pam_totp.enrol('life2', NULL, 'SHA256', 8, 60, 'i', NULL, false)")" "32|f" || return 1
    out=$(adm <<<"SELECT pam_totp.renew_recovery('life1', ARRAY['sha256:00:00'])" 2>&1) &&
        { why "malformed recovery entry accepted"; return 1; }
    expect "renew recovery codes" "$(adm -v a="{$(recovery_hash "$(recovery_code)"),$(recovery_hash "$(recovery_code)")}" <<<"SELECT pam_totp.renew_recovery('life1', :'a')")" 2 || return 1
    expect "status after renewal" "$(adm <<<"SELECT recovery_left FROM pam_totp.status('life1')")" 2 || return 1
    expect "disable" "$(adm <<<"SELECT pam_totp.disable('life1'), pam_totp.disable('life1')")" "t|f" || return 1
    expect "disabled: enrolment" "$(psql_as host-a <<<"SELECT enrolment FROM pam_totp.enrolment('life1')")" none || return 1
    expect "audit of admin actions" "$(sq <<<"SELECT count(*) > 0 FROM pam_totp.audit WHERE user_name = 'life1' AND outcome = 'admin' AND host = 'fleet_admin'")" t
}

sc_fleet-sql-host-roles() {
    local out
    expect "add host-c" "$(adm <<<"SELECT pam_totp.add_host('host-c')")" t || return 1
    expect "host-c may check" "$(field "$(check_as host-c nobody 1)" 1)" not_enrolled || return 1
    out=$(adm <<<"SELECT pam_totp.add_host('fleet_admin')" 2>&1) && { why "admin role made a host"; return 1; }
    out=$(adm <<<"SELECT pam_totp.add_host('postgres')" 2>&1) && { why "postgres made a host"; return 1; }
    out=$(adm <<<"SELECT pam_totp.add_host('Bad Name')" 2>&1) && { why "bad name accepted"; return 1; }
    expect "revoke host-c" "$(adm <<<"SELECT pam_totp.revoke_host('host-c'), pam_totp.revoke_host('postgres')")" "t|f" || return 1
    out=$(psql_as host-c <<<"SELECT 1" 2>&1) && { why "revoked host-c still logs in"; return 1; }
    [[ $out == *"not permitted to log in"* ]] || { why "revoked host-c: $out"; return 1; }
    expect "re-add host-c" "$(adm <<<"SELECT pam_totp.add_host('host-c')")" f || return 1
    expect "host-c checks again" "$(field "$(check_as host-c nobody 1)" 1)" not_enrolled || return 1
    expect "hosts()" "$(adm <<<"SELECT string_agg(name || ':' || (revoked IS NULL) || ':' || (last_seen IS NOT NULL), ' ') FROM pam_totp.hosts() WHERE name IN ('host-a', 'host-c')")" \
        "host-a:true:true host-c:true:true"
}

sc_fleet-sql-key-rotation() {
    secret_user || return 1
    local p=30 old_id new_id r
    (umask 077 && openssl rand -hex 32 >"$T/new.key") && chown postgres: "$T/new.key" || return 1
    old_id=$(sq <<<"SELECT key_id FROM pam_totp.config")
    expect "rotate" "$(sq <<<"SELECT pam_totp.rotate_key('$T/new.key')")" \
        "$(sq <<<"SELECT count(*) FROM pam_totp.users")" || return 1
    new_id=$(sq <<<"SELECT key_id FROM pam_totp.config")
    [[ $new_id != "$old_id" ]] || { why "key id unchanged"; return 1; }
    expect "rows on the old key" "$(sq <<<"SELECT count(*) FROM pam_totp.users WHERE key_id <> '$new_id'")" 0 || return 1
    mv "$KEY" "$T/old.key"
    fresh_step $p 4
    r=$(check_as host-a enc1 "$(code "$SECRET_HEX" SHA1 6 $p $(($(cur_step $p) + 1)))")
    expect "check with the new key only" "$(field "$r" 1)" accepted || return 1
    expect "recovery code with the new key only" "$(field "$(check_as host-b enc1 "$RC2")" 1)" accepted_recovery
}

# check5_as HOST USER ANSWER SHOWN_AT: the 5-argument check (migration 002), then outcome
#   -> outcome|failures
check5_as() {
    psql_as "$1" -v u="$2" -v a="$3" -v sh="$4" <<'EOF'
SELECT pam_totp.check(:'u', :'a', 'x', 1, :sh) AS ticket \gset
SELECT outcome, failures FROM pam_totp.outcome(:'ticket');
EOF
}

sc_fleet-sql-offline-report() {
    local p=30 s hex c=() h=() k shown r
    hex=$(newkey 20)
    for k in 1 2 3; do
        c+=("$(recovery_code)")
        h+=("$(recovery_hash "${c[-1]}")")
    done
    fresh_step $p 8
    s=$(cur_step $p)
    enrol_active off2 "$hex" SHA1 6 $p $((s - 1)) "${h[@]}" || return 1
    # A burned code is a replay only for a login whose prompt was shown before the burn.
    shown=$(psql_as host-a <<<"SELECT db_time FROM pam_totp.enrolment('off2')")
    expect "burn" "$(check5_as host-a off2 "${c[0]}" "$shown")" "accepted_recovery|0" || return 1
    expect "concurrent login" "$(check5_as host-b off2 "${c[0]}" "$shown")" "recovery_replay|0" || return 1
    expect "later login" "$(check5_as host-b off2 "${c[0]}" $((shown + 1000)))" "wrong|1" || return 1
    # recovery_replay_seconds = 0: never a replay, even within the same second.
    adm <<<"SELECT pam_totp.set_settings(NULL, NULL, NULL, NULL, 0)" >/dev/null || return 1
    r=$(psql_as host-a -v a="${c[1]}" <<'EOF'
SELECT pam_totp.check('off2', :'a', 'x', 1, 0) AS t1 \gset
SELECT pam_totp.check('off2', :'a', 'x', 1, 0) AS t2 \gset
SELECT string_agg(outcome, ',' ORDER BY n) FROM (SELECT 1 n, outcome FROM pam_totp.outcome(:'t1')
    UNION ALL SELECT 2, outcome FROM pam_totp.outcome(:'t2')) o;
EOF
    )
    adm <<<"SELECT pam_totp.set_settings(NULL, NULL, NULL, NULL, 300)" >/dev/null || return 1
    expect "reuse in the same second, replay seconds 0" "$r" "accepted_recovery,wrong" || return 1
    # report_offline: a far-future step clamped to the next step, never lowered; a live entry
    # burned (sent in upper case); an unknown entry ignored.
    r=$(psql_as host-b -v e="{$(tr a-f A-F <<<"${h[2]}"),sha256:0011223344556677:$(printf '0%.0s' $(seq 64))}" \
        <<<"SELECT applied_step, burned FROM pam_totp.report_offline('off2', 99999999999, :'e')")
    expect "clamped report" "$r" "$(($(cur_step $p) + 1))|1" || return 1
    expect "lower step later" "$(psql_as host-b <<<"SELECT applied_step, burned FROM pam_totp.report_offline('off2', 5, NULL)")" \
        "$(field "$r" 1)|0" || return 1
    expect "unknown user" "$(psql_as host-b <<<"SELECT applied_step IS NULL, burned FROM pam_totp.report_offline('nobody', 5, NULL)")" \
        "t|0" || return 1
    expect "code burned by the report" "$(check5_as host-a off2 "${c[2]}" $((shown + 1000)))" "wrong|2" || return 1
    expect "audit" "$(sq <<<"SELECT string_agg(host || ':' || reason, ' / ' ORDER BY id) FROM pam_totp.audit WHERE outcome = 'offline_report' AND user_name = 'off2'")" \
        "host-b:offline logins reported: step $(field "$r" 1) (clamped from 99999999999), 1 recovery codes burned; last step $(field "$r" 1) / host-b:offline logins reported: step 5, 0 recovery codes burned; last step $(field "$r" 1)" ||
        return 1
    denied fleet_admin "SELECT pam_totp.report_offline('off2', 1, NULL)"
}

sc_fleet-sql-totp-equals-rust() { fleet_totp_equals_rust "$RANDOM_CASES"; }

sc_fleet-sql-expired-outcomes-no-wait() {
    # Migration 004: a check removes at most 32 expired outcomes, skipping those a concurrent
    # check is removing — it never waits for another check's commit (001 removed them all, and
    # every check running at that moment waited for the first one's commit). Also: users keeps
    # room for HOT updates; no internal helper is left in LANGUAGE sql (parsed on every call).
    # 100 outcomes older than any other scenario's (removed first: oldest first), counted apart.
    sq >/dev/null <<'EOF' || { why "old outcomes"; return 1; }
INSERT INTO pam_totp.results (ticket, xid, host, created, result)
SELECT gen_random_uuid(), pg_current_xact_id(), 'host-a', pam_totp.now_s() - 100000,
       ROW('wrong', 'eo-test', NULL, NULL, NULL, 0, 0, NULL, 0)::pam_totp.check_result
FROM generate_series(1, 100)
EOF
    # host-a's check stays uncommitted for 3 s; host-b's runs meanwhile, with 1.5 s to finish.
    psql_as host-a >/dev/null 2>&1 <<'EOF' &
BEGIN;
SELECT pam_totp.check('eo-a', '000000', 'x', 1) IS NOT NULL;
SELECT pg_sleep(3);
COMMIT;
EOF
    local a=$! out t0 ms k
    for k in $(seq 50); do # until host-a's check is done and its transaction sleeps
        [[ $(sq <<<"SELECT count(*) FROM pg_stat_activity WHERE usename = 'host-a' AND query LIKE '%pg_sleep%'") == 1 ]] &&
            break
        sleep 0.1
    done
    t0=$(date +%s%N)
    out=$(PGOPTIONS='-c statement_timeout=1500' psql_as host-b 2>&1 <<<"SELECT pam_totp.check('eo-b', '000000', 'x', 1) IS NOT NULL")
    ms=$((($(date +%s%N) - t0) / 1000000))
    wait "$a"
    echo "    host-b's check beside host-a's open one: $out after $ms ms"
    expect "host-b's check beside an open one" "$out" t || return 1
    expect "expired outcomes left (100, 32 by each check)" \
        "$(sq <<<"SELECT count(*) FROM pam_totp.results WHERE (result).reason = 'eo-test'")" 36 || return 1
    check_as host-a eo-c 000000 >/dev/null && check_as host-a eo-c 000000 >/dev/null || return 1
    expect "expired outcomes left after two more checks" \
        "$(sq <<<"SELECT count(*) FROM pam_totp.results WHERE (result).reason = 'eo-test'")" 0 || return 1
    expect "users' fillfactor" \
        "$(sq <<<"SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = 'pam_totp.users'::regclass")" \
        fillfactor=50 || return 1
    expect "internal helpers in LANGUAGE sql" "$(sq <<'EOF'
SELECT string_agg(p.proname, ',') FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE p.pronamespace = 'pam_totp'::regnamespace AND l.lanname = 'sql' AND NOT p.prosecdef
EOF
    )" ""
}

# --- run -------------------------------------------------------------------------------------
SCENARIOS=(
    fleet-sql-migrations-versioned
    fleet-sql-definer-search-path
    fleet-sql-host-cannot-read-secrets
    fleet-sql-admin-cannot-read-secrets
    fleet-sql-host-cannot-call-admin
    fleet-sql-secrets-encrypted-at-rest
    fleet-sql-one-success-for-parallel-checks
    fleet-sql-rollback-reveals-nothing
    fleet-sql-replay-across-hosts
    fleet-sql-throttle
    fleet-sql-recovery-once
    fleet-sql-offset
    fleet-sql-enrolment-lifecycle
    fleet-sql-host-roles
    fleet-sql-totp-equals-rust
    fleet-sql-key-rotation
    fleet-sql-offline-report
    fleet-sql-expired-outcomes-no-wait
)
fleet_run_scenarios "${FLEET_SQL_ONLY:-}" "${SCENARIOS[@]}"
echo "$FLEET_PASSED passed, $FLEET_FAILED failed ($(($(date +%s) - START)) s)"
((FLEET_FAILED == 0))
