# tests/fleet/lib.sh — what the fleet harnesses share (sourced by sql-test.sh, net-test.sh and
# fleet-test.sh): the prerequisites, a throwaway PostgreSQL 15 cluster in a temp directory run
# as the postgres user, applying fleet/sql/*.sql, codes and recovery codes made outside the SQL
# under test, the privilege, at-rest and TOTP checks more than one harness runs, and the
# PASS/FAIL scenario runner. The network half (namespaces, certificates, TLS) is lib-net.sh.
#
# The caller sets FLEET_NAME (the prefix of its SKIP/FAIL lines), T (the cluster's temp
# directory, owned by postgres, 0700), DB (the database name) and WHY (a file for the reasons
# of a failing scenario).
# shellcheck shell=bash

FLEET_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# fleet_prereqs TOOL...: SKIP (exit 0) without root, PostgreSQL 15 or the postgres user; FAIL
# (exit 1) when one of the other TOOLs is missing.
fleet_prereqs() {
    local tool
    if [[ $(id -u) != 0 ]]; then
        echo "SKIP $FLEET_NAME: needs root (initdb/pg_ctl run as the postgres user)"
        exit 0
    fi
    for tool in "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/pg_dump" "$PG_BIN/psql"; do
        if [[ ! -x $tool ]]; then
            echo "SKIP $FLEET_NAME: $tool missing (Debian package postgresql-15)"
            exit 0
        fi
    done
    if ! getent passwd postgres >/dev/null; then
        echo "SKIP $FLEET_NAME: no postgres user (Debian package postgresql-15)"
        exit 0
    fi
    for tool in oathtool openssl runuser "$@"; do
        command -v "$tool" >/dev/null || { echo "FAIL $FLEET_NAME-setup: $tool missing"; exit 1; }
    done
}

# No PG* variable of the caller's environment may redirect a client to another server.
fleet_clean_pg_env() {
    unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGPASSFILE PGSERVICE \
        PGSERVICEFILE PGSSLMODE PGSSLCERT PGSSLKEY PGSSLROOTCERT PGSSLCRL PGREQUIRESSL
}

fleet_die() {
    echo "FAIL $FLEET_NAME-setup: $*"
    [[ -f $T/log ]] && tail -n 20 "$T/log" | sed 's/^/    /'
    echo "0 passed, 1 failed"
    exit 1
}

# fleet_initdb [DIR]: a cluster in DIR/data (default: $T) with trust over its unix socket in
# DIR and no TCP; the caller may append to DIR/data/postgresql.conf and rewrite pg_hba.conf
# before starting it.
fleet_initdb() {
    local d=${1:-$T}
    runuser -u postgres -- "$PG_BIN/initdb" -D "$d/data" -A trust -U postgres --no-sync -E UTF8 \
        --locale=C.UTF-8 >"$d/initdb.log" 2>&1 || fleet_die "initdb: $(tail -n 3 "$d/initdb.log")"
    cat >>"$d/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$d'
fsync = off
max_connections = 60
EOF
}

# The cluster fleet_pg_start/stop, psql_as and fleet_createdb work on: $T by default; the fault
# scenarios' replicated nodes set FLEET_PGDIR (their DIR/data, DIR/log, socket in DIR) and
# FLEET_PGOPTS (server options on pg_ctl's command line, which outrank postgresql.conf).
fleet_pgdir() { echo "${FLEET_PGDIR:-$T}"; }

# fleet_pg_start [CMD-PREFIX...]: starts the cluster (under e.g. `ip netns exec NS`).
fleet_pg_start() {
    local d
    d=$(fleet_pgdir)
    "$@" runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$d/data" -l "$d/log" -w -t 30 \
        ${FLEET_PGOPTS:+-o "$FLEET_PGOPTS"} start >/dev/null
}

# fleet_pg_stop [MODE]: stops the cluster if it runs (immediate by default); quiet.
fleet_pg_stop() {
    local d
    d=$(fleet_pgdir)
    [[ -f $d/data/postmaster.pid ]] || return 0
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$d/data" -m "${1:-immediate}" -w -t 30 stop \
        >/dev/null 2>&1
}

# fleet_createdb [same-key]: $DB, and (without same-key, which keeps $KEY: the servers of one
# store share the key file) the key file $T/pam-totp.key (outside the data directory, owned by
# the server's user, 0600); sets KEY.
fleet_createdb() {
    if [[ ${1:-} != same-key ]]; then
        KEY=$T/pam-totp.key
        (umask 077 && openssl rand -hex 32 >"$KEY") && chown postgres: "$KEY" &&
            chmod 600 "$KEY" || fleet_die "key file"
    fi
    "$PG_BIN/psql" -X -q -h "$(fleet_pgdir)" -U postgres -d postgres -c "CREATE DATABASE $DB" ||
        fleet_die "createdb"
}

# Applies every fleet/sql/NNN_*.sql above the schema's version, each in one transaction
# (what `pam-totp store init` does); prints how many it applied.
fleet_apply_migrations() {
    local current=0 f v n=0
    if [[ $(sq <<<"SELECT to_regclass('pam_totp.schema_version') IS NOT NULL") == t ]]; then
        current=$(sq <<<"SELECT coalesce(max(version), 0) FROM pam_totp.schema_version")
    fi
    for f in "$FLEET_ROOT"/fleet/sql/[0-9][0-9][0-9]_*.sql; do
        v=$(basename "$f")
        v=$((10#${v%%_*}))
        ((v > current)) || continue
        sq --single-transaction -f "$f" || return 1
        n=$((n + 1))
    done
    echo "$n"
}

# psql_as ROLE [psql args...]: runs stdin as ROLE over the cluster's unix socket in $T (set-up,
# and sql-test.sh's clients); sq as the superuser, adm as the admin login role fleet_admin.
psql_as() {
    local role=$1
    shift
    timeout 90 "$PG_BIN/psql" -X -q -At -F '|' -h "$(fleet_pgdir)" -U "$role" -d "$DB" \
        -v ON_ERROR_STOP=1 "$@"
}
sq() { psql_as postgres "$@"; }
adm() { psql_as fleet_admin "$@"; }

# fleet_init_schema: migrations, the key file named to the store, an admin login role
# fleet_admin (in pam_totp_admin).
fleet_init_schema() {
    local applied
    applied=$(fleet_apply_migrations) || fleet_die "applying fleet/sql"
    [[ $applied -ge 1 ]] || fleet_die "no migration applied"
    sq <<<"SELECT pam_totp.set_key_file('$KEY')" >/dev/null || fleet_die "set_key_file"
    sq <<<"CREATE ROLE fleet_admin LOGIN IN ROLE pam_totp_admin" || fleet_die "admin role"
}

# --- codes, made outside the SQL under test ---------------------------------------------------
now() { date +%s; }
cur_step() { echo $(($(now) / $1)); }
# fresh_step PERIOD [MARGIN]: waits until at least MARGIN seconds are left in the current step.
fresh_step() {
    local period=$1 margin=${2:-6}
    while (($(now) % period > period - margin)); do sleep 0.5; done
}
# code HEX ALG DIGITS PERIOD STEP: oathtool's code
code() {
    oathtool --totp="$2" -d "$3" -s "${4}s" -N "@$(($5 * $4))" "$1"
}
newkey() { openssl rand -hex "${1:-20}"; }
# b32_of HEX: RFC 4648 base32 without padding (how a record and an app show the key)
b32_of() {
    python3 -c 'import base64,sys; print(base64.b32encode(bytes.fromhex(sys.argv[1])).decode().rstrip("="))' "$1"
}
field() { cut -d'|' -f"$2" <<<"$1"; }
# A recovery code as SPEC §4 shows it, and its stored form (recovery.rs hash_with_salt).
recovery_code() {
    python3 -c '
import secrets
a = "23456789abcdefghjkmnpqrstuvwxyz"
c = "".join(secrets.choice(a) for _ in range(12))
print(c[:4] + "-" + c[4:8] + "-" + c[8:])'
}
recovery_hash() {
    python3 -c '
import hashlib, os, sys
norm = sys.argv[1].replace("-", "").replace(" ", "").lower()
salt = os.urandom(16)
print("sha256:%s:%s" % (salt.hex(), hashlib.sha256(salt + norm.encode()).hexdigest()))' "$1"
}

# --- checks more than one harness runs ---------------------------------------------------------
# fleet_denied SQL CMD...: CMD (a client as some role, reading SQL on stdin) is refused with a
# permission error.
fleet_denied() {
    local sql=$1 out
    shift
    if out=$("$@" <<<"$sql" 2>&1); then
        why "$* could run: $sql: $out"
        return 1
    fi
    if [[ $out != *"permission denied"* && $out != *"must have admin option"* ]]; then
        why "$*: $sql: not a permission error: $out"
        return 1
    fi
}

# fleet_host_cannot_read CMD...: CMD, a client as a host role, can neither read nor copy a table
# of the schema, nor reach the key, a secret or the code function, nor write a user's state.
fleet_host_cannot_read() {
    local t tables sql
    tables=$(sq <<<"SELECT tablename FROM pg_tables WHERE schemaname = 'pam_totp' ORDER BY 1")
    [[ $tables == *users* && $tables == *results* && $tables == *config* ]] ||
        { why "tables: $tables"; return 1; }
    for t in $tables; do
        fleet_denied "SELECT * FROM pam_totp.$t" "$@" || return 1
        fleet_denied "COPY pam_totp.$t TO STDOUT" "$@" || return 1
    done
    for sql in "SELECT pam_totp.key()" \
        "SELECT pam_totp.decrypt_secret(secret, 'x') FROM pam_totp.users" \
        "SELECT pam_totp.code_at('\\x00'::bytea, 'SHA1', 6, 1)" \
        "SELECT pam_totp.pgp_sym_decrypt_bytea('\\x00'::bytea, 'x')" \
        "SELECT pg_read_file('$KEY')" "SELECT pam_totp.set_key_file('/etc/passwd')" \
        "UPDATE pam_totp.users SET last_step = 0"; do
        fleet_denied "$sql" "$@" || return 1
    done
}

# fleet_host_cannot_call_admin CMD...: every function of the schema but the host functions
# (check, outcome, enrolment, report_offline), called by CMD (a client as a host role) with NULLs of the right types: permission
# denied (admin functions, internal ones and pgcrypto's alike); the same for admin calls with
# real arguments, and for making itself an admin or the owner.
# The NULLs come from sub-selects: a STRICT function called with a constant NULL is folded
# away by the planner before any permission check, which would prove nothing.
fleet_host_cannot_call_admin() {
    local calls call n=0
    calls=$(sq <<'EOF'
SELECT format('SELECT %I.%I(%s)', n.nspname, p.proname,
              coalesce((SELECT string_agg(format('(SELECT NULL::%s)', format_type(t, NULL)), ', ')
                        FROM unnest(p.proargtypes) AS t), ''))
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'pam_totp' AND p.proname NOT IN ('check', 'enrolment', 'outcome', 'report_offline')
  AND p.prokind = 'f'
ORDER BY 1
EOF
    ) || return 1
    while IFS= read -r call; do
        fleet_denied "$call" "$@" || return 1
        n=$((n + 1))
    done <<<"$calls"
    ((n >= 20)) || { why "only $n functions tried"; return 1; }
    for call in "SELECT pam_totp.enrol('x', NULL, 'SHA1', 6, 30, 'i', NULL, true)" \
        "SELECT pam_totp.unlock('alice', true)" "SELECT pam_totp.disable('alice')" \
        "SELECT pam_totp.set_settings(1000, 1, 1, 10, 0)" "SELECT pam_totp.add_host('evil')" \
        "SELECT pam_totp.status(NULL)" "SELECT pam_totp.rotate_key('/etc/passwd')" \
        "GRANT pam_totp_admin TO CURRENT_USER" "SET ROLE pam_totp_owner"; do
        fleet_denied "$call" "$@" || return 1
    done
}

# fleet_dump_clean FILE NEEDLE...: FILE holds none of the (non-empty) NEEDLEs, in any case.
fleet_dump_clean() {
    local f=$1 c
    shift
    for c in "$@"; do
        [[ -n $c ]] || continue
        if grep -qiF -- "$c" "$f"; then
            why "$(basename "$f") contains '$c'"
            return 1
        fi
    done
}

# fleet_totp_equals_rust N: the database's code_at equals the Rust TOTP (the example
# totp_vectors: the RFC 6238 Appendix B vectors and N random cases over SHA1/256/512, 6/8
# digits, periods 15–300), and the RFC vectors are the RFC's values.
fleet_totp_equals_rust() {
    local n=$1 vec=$T/vectors.txt out head
    (cd "$FLEET_ROOT" && "${CARGO:-cargo}" run --release -q -p pam_totp --example totp_vectors -- "$n") \
        >"$vec" 2>"$T/cargo.log" || { why "cargo: $(tail -n 5 "$T/cargo.log")"; return 1; }
    out=$(sq <<EOF
CREATE TEMP TABLE v (secret text, alg text, digits int, period int, t bigint, code text);
\\copy v FROM '$vec' WITH (DELIMITER ' ')
SELECT count(*),
       count(*) FILTER (WHERE t IN (59, 1111111109, 1111111111, 1234567890, 2000000000, 20000000000)
                          AND length(secret) IN (40, 64, 128) AND period = 30),
       count(DISTINCT alg), count(DISTINCT digits), min(period), max(period),
       count(*) FILTER (WHERE pam_totp.code_at(decode(secret, 'hex'), alg, digits, t / period) <> code)
FROM v;
SELECT secret, alg, digits, period, t, code, pam_totp.code_at(decode(secret, 'hex'), alg, digits, t / period)
FROM v WHERE pam_totp.code_at(decode(secret, 'hex'), alg, digits, t / period) <> code LIMIT 3;
EOF
    ) || { why "sql failed"; return 1; }
    head=$(head -n 1 <<<"$out")
    [[ $(field "$head" 1) == "$((n + 36))" && $(field "$head" 2) -ge 36 && $(field "$head" 3) == 3 &&
        $(field "$head" 4) == 2 && $(field "$head" 7) == 0 ]] ||
        { why "cases|rfc|algs|digits|min period|max period|mismatches = $out"; return 1; }
    # The RFC 6238 Appendix B values themselves (not only agreement with Rust).
    expect "RFC 6238 SHA512 at 20000000000" "$(grep -c ' SHA512 8 30 20000000000 47863826$' "$vec")" 1 || return 1
    expect "RFC 6238 SHA1 at 59" "$(grep -c ' SHA1 8 30 59 94287082$' "$vec")" 1
}

# --- scenario helpers ------------------------------------------------------------------------
why() { echo "$*" >>"$WHY"; }
# expect DESCRIPTION GOT WANT
expect() {
    [[ $2 == "$3" ]] && return 0
    why "$1: got '$2', want '$3'"
    return 1
}

# fleet_run_scenarios ONLY NAME...: runs sc_NAME for each NAME (all, or those in the comma
# list ONLY), printing PASS/FAIL with the seconds it took, and the reasons; sets FLEET_PASSED
# and FLEET_FAILED.
FLEET_PASSED=0
FLEET_FAILED=0
fleet_run_scenarios() {
    local only=$1 name t0
    shift
    for name in "$@"; do
        if [[ -n $only && ,$only, != *",$name,"* ]]; then
            continue
        fi
        : >"$WHY"
        t0=$(date +%s)
        if "sc_$name"; then
            echo "PASS $name ($(($(date +%s) - t0)) s)"
            FLEET_PASSED=$((FLEET_PASSED + 1))
        else
            echo "FAIL $name ($(($(date +%s) - t0)) s)"
            sed 's/^/    /' "$WHY"
            FLEET_FAILED=$((FLEET_FAILED + 1))
        fi
    done
}

# fleet_run_last NAME: runs sc_NAME (one that removes the temp directories, such as the check
# that nothing is left) with its reasons in a file of their own; counted like the others.
FLEET_WHY_LAST=
fleet_run_last() {
    FLEET_WHY_LAST=$(mktemp /tmp/pam-totp-fleet-why.XXXXXX)
    WHY=$FLEET_WHY_LAST
    if "sc_$1"; then
        echo "PASS $1"
        FLEET_PASSED=$((FLEET_PASSED + 1))
    else
        echo "FAIL $1"
        sed 's/^/    /' "$FLEET_WHY_LAST"
        FLEET_FAILED=$((FLEET_FAILED + 1))
    fi
    rm -f "$FLEET_WHY_LAST"
}
