# tests/fleet/lib.sh — what the fleet harnesses share (sourced by sql-test.sh and net-test.sh):
# the prerequisites, a throwaway PostgreSQL 15 cluster in a temp directory run as the postgres
# user, applying fleet/sql/*.sql, and the PASS/FAIL scenario runner.
#
# The caller sets FLEET_NAME (the prefix of its SKIP/FAIL lines), T (its temp directory, owned
# by postgres, 0700), DB (the database name) and defines `sq` (psql as the superuser over the
# cluster's unix socket in $T, running stdin) before calling fleet_apply_migrations.
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

# fleet_initdb: a cluster in $T/data with trust over its unix socket in $T and no TCP; the
# caller may append to $T/data/postgresql.conf and rewrite pg_hba.conf before starting it.
fleet_initdb() {
    runuser -u postgres -- "$PG_BIN/initdb" -D "$T/data" -A trust -U postgres --no-sync -E UTF8 \
        --locale=C.UTF-8 >"$T/initdb.log" 2>&1 || fleet_die "initdb: $(tail -n 3 "$T/initdb.log")"
    cat >>"$T/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$T'
fsync = off
max_connections = 60
EOF
}

# fleet_pg_start [CMD-PREFIX...]: starts the cluster (under e.g. `ip netns exec NS`).
fleet_pg_start() {
    "$@" runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$T/data" -l "$T/log" -w -t 30 start \
        >/dev/null
}

# fleet_pg_stop [MODE]: stops the cluster if it runs (immediate by default); quiet.
fleet_pg_stop() {
    [[ -f $T/data/postmaster.pid ]] || return 0
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$T/data" -m "${1:-immediate}" -w -t 30 stop \
        >/dev/null 2>&1
}

# fleet_createdb: $DB, and the key file $T/pam-totp.key (outside the data directory, owned by
# the server's user, 0600); sets KEY.
fleet_createdb() {
    KEY=$T/pam-totp.key
    (umask 077 && openssl rand -hex 32 >"$KEY") && chown postgres: "$KEY" && chmod 600 "$KEY" ||
        fleet_die "key file"
    "$PG_BIN/psql" -X -q -h "$T" -U postgres -d postgres -c "CREATE DATABASE $DB" ||
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

# fleet_init_schema: migrations, the key file named to the store, an admin login role
# fleet_admin (in pam_totp_admin).
fleet_init_schema() {
    local applied
    applied=$(fleet_apply_migrations) || fleet_die "applying fleet/sql"
    [[ $applied -ge 1 ]] || fleet_die "no migration applied"
    sq <<<"SELECT pam_totp.set_key_file('$KEY')" >/dev/null || fleet_die "set_key_file"
    sq <<<"CREATE ROLE fleet_admin LOGIN IN ROLE pam_totp_admin" || fleet_die "admin role"
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
# list ONLY), printing PASS/FAIL and the reasons; sets FLEET_PASSED and FLEET_FAILED.
FLEET_PASSED=0
FLEET_FAILED=0
fleet_run_scenarios() {
    local only=$1 name
    shift
    for name in "$@"; do
        if [[ -n $only && ,$only, != *",$name,"* ]]; then
            continue
        fi
        : >"$WHY"
        if "sc_$name"; then
            echo "PASS $name"
            FLEET_PASSED=$((FLEET_PASSED + 1))
        else
            echo "FAIL $name"
            sed 's/^/    /' "$WHY"
            FLEET_FAILED=$((FLEET_FAILED + 1))
        fi
    done
}
