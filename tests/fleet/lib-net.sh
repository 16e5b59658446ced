# tests/fleet/lib-net.sh — the network half the fleet harnesses share (sourced after lib.sh by
# net-test.sh and fleet-test.sh; FLEET.md "Test set-up that works on one machine"): a database
# namespace and host namespaces on a bridge, certificates, the cluster with TLS and client
# certificates in the database namespace, TLS clients from the hosts, the cleanup and the check
# that nothing is left behind.
#
# Network: namespaces <prefix>-<pid>-db, -h1..-hN and, with FLEET_ADMIN_NS=1, -adm
# (`ip netns add`); a bridge in the db namespace with 10.231.0.1/24; host N has 10.231.0.(10+N),
# the admin namespace 10.231.0.9, each on a veth pair whose both ends are created inside the
# namespaces (`ip -n`), so no interface, address or route ever exists in the root namespace and
# nothing is routed out. Interfaces are named with the pid (f<pid>b the bridge, f<pid>hN and
# f<pid>eN the two ends of host N's pair; N = 0 for the admin namespace), so that anything of
# ours found in the root namespace would be recognised as ours.
#
# pg_hba: trust over the unix socket in $T (set-up only), and one line per host
#   hostssl $DB host-hN 10.231.0.1N/32 cert
# (a client certificate is required and its CN must be the role), plus, with the admin
# namespace, `hostssl $DB fleet_admin 10.231.0.9/32 cert` — nothing else over TCP. A CA, the
# server certificate (IP SAN 10.231.0.1), one client certificate per host (CN = the role; the
# roles come from pam_totp.add_host, which allows [a-z0-9.-] only: host-h1, not host_h1), one
# for fleet_admin, and a second, foreign CA with a certificate for host-h1's name.
#
# The caller sets N_HOSTS, T (the cluster's directory), PKI (where the certificates go: the
# server's key is made the postgres user's), DB, and calls fleet_net_init PREFIX first.
# shellcheck shell=bash

# fleet_net_init PREFIX: the names; what `ip netns list` and `ip link` show before we start.
fleet_net_init() {
    NET=10.231.0
    DB_ADDR=$NET.1
    ADM_ADDR=$NET.9
    PORT=5432
    TAG=$1-$$
    NS_DB=$TAG-db
    NS_ADM=$TAG-adm
    LN=f$$
    BR=${LN}b
    FLEET_BEFORE_NETNS=$(fleet_netns_list)
    FLEET_BEFORE_LINKS=$(fleet_link_list)
}
fleet_netns_list() { ip netns list 2>/dev/null | awk '{print $1}' | sort; }
fleet_link_list() { ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort; }
host_ns() { echo "$TAG-h$1"; }
host_addr() { echo "$NET.$((10 + $1))"; }
host_role() { echo "host-h$1"; }
in_ns() { # NS CMD...
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}
# reach_wait NS ADDR PORT [TRIES]: wait until NS connects to ADDR:PORT (TRIES attempts 0.1 s
# apart, default 25: ~2.5 s) — a listener just started, or a link just back up (carrier and
# neighbour entries take a moment; a connect in between fails with "No route to host").
reach_wait() {
    local _
    for _ in $(seq "${4:-25}"); do
        in_ns "$1" timeout 0.5 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
fleet_all_ns() { # every namespace of ours, the db's first
    local i
    echo "$NS_DB"
    [[ -z ${FLEET_ADMIN_NS:-} ]] || echo "$NS_ADM"
    for i in $(seq 1 "$N_HOSTS"); do host_ns "$i"; done
}

# fleet_net_attach NS ADDR N: namespace NS on the bridge with ADDR, over f<pid>hN / f<pid>eN.
fleet_net_attach() {
    local ns=$1 addr=$2 n=$3
    ip netns add "$ns" || fleet_die "ip netns add $ns"
    ip -n "$ns" link set lo up || fleet_die "lo up in $ns"
    ip -n "$NS_DB" link add "${LN}h$n" type veth peer name "${LN}e$n" netns "$ns" ||
        fleet_die "veth $n"
    ip -n "$NS_DB" link set "${LN}h$n" master "$BR" up || fleet_die "${LN}h$n up"
    ip -n "$ns" addr add "$addr/24" dev "${LN}e$n" || fleet_die "address $n"
    ip -n "$ns" link set "${LN}e$n" up || fleet_die "${LN}e$n up in $ns"
}

# fleet_net_up: the db namespace with the bridge, the host namespaces (and the admin one).
fleet_net_up() {
    local i
    ip netns add "$NS_DB" || fleet_die "ip netns add $NS_DB"
    ip -n "$NS_DB" link set lo up || fleet_die "lo up in $NS_DB"
    # A fixed address: a bridge without one takes the lowest of its ports', so attaching a
    # namespace later (the fault scenarios' servers) could change it under the hosts' ARP
    # caches, cutting them off from 10.231.0.1 for as long as the stale entries live.
    ip -n "$NS_DB" link add "$BR" address 02:00:00:00:00:01 type bridge || fleet_die "bridge"
    ip -n "$NS_DB" addr add "$DB_ADDR/24" dev "$BR" || fleet_die "bridge address"
    ip -n "$NS_DB" link set "$BR" up || fleet_die "bridge up"
    for i in $(seq 1 "$N_HOSTS"); do fleet_net_attach "$(host_ns "$i")" "$(host_addr "$i")" "$i"; done
    [[ -z ${FLEET_ADMIN_NS:-} ]] || fleet_net_attach "$NS_ADM" "$ADM_ADDR" 0
}

# fleet_net_down: the cluster stopped, every process left in our namespaces killed by pid (only
# ours live there: clients, a postmaster that outlived pg_ctl), the namespaces (and with them the
# bridge and the veths) deleted.
fleet_net_down() {
    local ns p
    fleet_pg_stop
    for ns in $(fleet_all_ns) $(fleet_node_all_ns); do
        [[ -e /run/netns/$ns ]] || continue
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
}

# --- replicated servers (the fault scenarios) -------------------------------------------------
# Nodes (FLEET_NODES="a b c") are servers of one store, each in its own namespace <tag>-n<name>
# on the bridge with the address fleet_node_addr gives (.2, .3, ...; veth pair 21, 22, ...),
# its directory (data, log, socket) under $FLEET_NODE_DIR/<name>, its certificate node-<name>.
fleet_node_all_ns() {
    local n
    for n in ${FLEET_NODES:-}; do fleet_node_ns "$n"; done
}
fleet_node_ns() { echo "$TAG-n$1"; }
fleet_node_index() { # 0-based position of node $1 in FLEET_NODES
    local n i=0
    for n in $FLEET_NODES; do
        [[ $n == "$1" ]] && { echo "$i"; return 0; }
        i=$((i + 1))
    done
    return 1
}
fleet_node_addr() { echo "$NET.$((2 + $(fleet_node_index "$1")))"; }
fleet_node_link() { echo "${LN}h$((21 + $(fleet_node_index "$1")))"; } # the bridge's end
fleet_node_dir() { echo "$FLEET_NODE_DIR/$1"; }
# fleet_node_with NODE CMD...: CMD with FLEET_PGDIR/FLEET_PGOPTS set for NODE (its address,
# socket and certificate on the command line: a base backup copies the primary's conf).
fleet_node_with() {
    local n=$1
    shift
    FLEET_PGDIR=$(fleet_node_dir "$n") FLEET_PGOPTS="-c listen_addresses=$(fleet_node_addr "$n") \
-c unix_socket_directories=$(fleet_node_dir "$n") -c ssl_cert_file=$PKI/node-$n.crt \
-c ssl_key_file=$PKI/node-$n.key" "$@"
}
fleet_node_start() { fleet_node_with "$1" fleet_pg_start in_ns "$(fleet_node_ns "$1")"; }
# fleet_node_kill NODE: kill -9 of every process in NODE's namespace (its postmaster and every
# child: the machine dies), until none is left.
fleet_node_kill() {
    local ns p n
    ns=$(fleet_node_ns "$1")
    for n in $(seq 1 50); do
        p=$(ip netns pids "$ns" 2>/dev/null)
        [[ -n $p ]] || return 0
        # shellcheck disable=SC2086 # one pid a word
        kill -KILL $p 2>/dev/null
        sleep 0.05
    done
    return 1
}
# fleet_node_cut NODE up|down: NODE's link to the bridge (the bridge's end of its veth pair).
fleet_node_cut() { ip -n "$NS_DB" link set "$(fleet_node_link "$1")" "$2"; }
# fleet_node_standby NODE PRIMARY APPNAME: NODE (not running) emptied, a base backup of PRIMARY
# (pg_basebackup -R over TLS from NODE's namespace: primary_conninfo with application_name
# APPNAME, the name synchronous_standby_names knows), started as a standby.
fleet_node_standby() {
    local n=$1 p=$2 app=$3 d
    d=$(fleet_node_dir "$n")
    # A killed postmaster leaves its socket's lock file, whose PID may belong to another
    # process by now (the new server would take it for a running one).
    rm -rf "$d/data" "$d"/.s.PGSQL.* && install -d -o postgres -g postgres -m 700 "$d" || return 1
    in_ns "$(fleet_node_ns "$n")" runuser -u postgres -- "$PG_BIN/pg_basebackup" \
        -d "host=$(fleet_node_addr "$p") port=$PORT user=postgres sslmode=require application_name=$app" \
        -D "$d/data" -R -X stream -c fast --no-sync >"$d/basebackup.log" 2>&1 || return 1
    fleet_node_start "$n"
}
# fleet_node_sq NODE [psql args]: psql as the superuser over NODE's unix socket, stdin.
fleet_node_sq() {
    local n=$1
    shift
    FLEET_PGDIR=$(fleet_node_dir "$n") sq "$@"
}

# --- certificates ----------------------------------------------------------------------------
# ossl ARGS: openssl; with FLEET_OSSL_FAKETIME (e.g. -1d) under faketime, so that what it
# signs is valid from then on (certificates a host with a slow clock still accepts).
ossl() {
    ${FLEET_OSSL_FAKETIME:+faketime -f "$FLEET_OSSL_FAKETIME"} openssl "$@" >>"$PKI/openssl.log" 2>&1 ||
        fleet_die "openssl $1: $(tail -n 3 "$PKI/openssl.log")"
}
# make_ca NAME CN
make_ca() {
    ossl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -sha256 -days 2 \
        -subj "/CN=$2" -keyout "$PKI/$1.key" -out "$PKI/$1.crt"
}
# make_cert CA NAME CN [EXT]: a key (0600) and a certificate signed by CA
make_cert() {
    local ca=$1 name=$2 cn=$3 ext=${4:-}
    ossl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -subj "/CN=$cn" \
        -keyout "$PKI/$name.key" -out "$PKI/$name.csr"
    printf '%s\n' "basicConstraints=CA:FALSE" "$ext" >"$PKI/$name.ext"
    ossl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
        -days 2 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt"
    chmod 600 "$PKI/$name.key"
}
# fleet_pki: ca, otherca, server, h1..hN, admin (CN fleet_admin), h1-other (otherca's, CN host-h1).
fleet_pki() {
    local i
    mkdir -p "$PKI"
    make_ca ca "pam-totp fleet test CA"
    make_ca otherca "another CA"
    make_cert ca server "$DB_ADDR" "subjectAltName=IP:$DB_ADDR"
    for i in $(seq 1 "$N_HOSTS"); do make_cert ca "h$i" "$(host_role "$i")"; done
    make_cert ca admin fleet_admin
    make_cert otherca "h1-other" "$(host_role 1)"
    chmod 644 "$PKI"/*.crt
    chown postgres: "$PKI/server.key"
    chmod 755 "$PKI" # the server reads ca.crt, server.crt, server.key (0600, its own)
}

# fleet_tls_cluster MAX_CONNECTIONS [DIR ADDR CERT NS]: the cluster in DIR (default $T)
# listening on ADDR:$PORT (default $DB_ADDR) with TLS (the server certificate CERT, default
# server), the pg_hba lines above and any in $FLEET_HBA_EXTRA, started in namespace NS (default
# the db namespace).
fleet_tls_cluster() {
    local i d=${2:-$T} addr=${3:-$DB_ADDR} cert=${4:-server} ns=${5:-$NS_DB}
    fleet_initdb "$d"
    cat >>"$d/data/postgresql.conf" <<EOF
listen_addresses = '$addr'
port = $PORT
max_connections = $1
ssl = on
ssl_cert_file = '$PKI/$cert.crt'
ssl_key_file = '$PKI/$cert.key'
ssl_ca_file = '$PKI/ca.crt'
ssl_min_protocol_version = 'TLSv1.2'
EOF
    {
        echo "local all all trust"
        for i in $(seq 1 "$N_HOSTS"); do
            echo "hostssl $DB $(host_role "$i") $(host_addr "$i")/32 cert"
        done
        [[ -z ${FLEET_ADMIN_NS:-} ]] || echo "hostssl $DB fleet_admin $ADM_ADDR/32 cert"
        [[ -z ${FLEET_HBA_EXTRA:-} ]] || echo "$FLEET_HBA_EXTRA"
    } >"$d/data/pg_hba.conf"
    FLEET_PGDIR=$d fleet_pg_start in_ns "$ns" || fleet_die "pg_ctl start in $ns"
}

# --- PgBouncer (bench/fleet.sh BENCH_FLEET_POOLER=pgbouncer, fleet-test.sh FLEET_TEST_POOLER) --
# fleet_pgbouncer NS ADDR SOCKDIR CA: PgBouncer in namespace NS on ADDR:$POOLER_PORT as the
# postgres user (files in SOCKDIR/pgbouncer, 0700), TLS with a certificate for ADDR signed by CA
# (what the hosts pin); clients must show a certificate of our CA whose CN is the user name
# (client_tls_sslmode verify-full, auth_type cert), and only the host roles are known
# (auth_file). pool_mode transaction, one pool per role: each pool's server connections log in
# AS THAT ROLE over the server's unix socket in SOCKDIR (0700, the postgres user's: only the
# server and PgBouncer reach it), so session_user stays the host's role.
POOLER_PORT=6432
fleet_pgbouncer() {
    local ns=$1 addr=$2 sock=$3 ca=$4 d=$3/pgbouncer i
    install -d -o postgres -g postgres -m 700 "$d" || return 1
    make_cert "$ca" pooler "$addr" "subjectAltName=IP:$addr"
    chown postgres: "$PKI/pooler.key"
    for i in $(seq 1 "$N_HOSTS"); do echo "\"$(host_role "$i")\" \"\""; done >"$d/userlist.txt"
    cat >"$d/pgbouncer.ini" <<EOF
[databases]
$DB = host=$sock port=$PORT dbname=$DB
[pgbouncer]
listen_addr = $addr
listen_port = $POOLER_PORT
unix_socket_dir =
pidfile = $d/pgbouncer.pid
logfile = $d/pgbouncer.log
auth_type = cert
auth_file = $d/userlist.txt
client_tls_sslmode = verify-full
client_tls_ca_file = $PKI/ca.crt
client_tls_cert_file = $PKI/pooler.crt
client_tls_key_file = $PKI/pooler.key
pool_mode = transaction
default_pool_size = ${POOLER_POOL_SIZE:-2}
max_client_conn = 1000
log_connections = 0
log_disconnections = 0
EOF
    chown postgres: "$d"/* || return 1
    in_ns "$ns" runuser -u postgres -- pgbouncer -d -q "$d/pgbouncer.ini" || return 1
    reach_wait "$ns" "$addr" "$POOLER_PORT" 50
}

# --- clients ---------------------------------------------------------------------------------
# conninfo HOST-INDEX [KEY=VALUE...]: the host's connection string (its role, its certificate,
# our CA, verify-full); later KEY=VALUE pairs override. conninfo_as ROLE CERT [KEY=VALUE...]:
# the same for any role and certificate.
conninfo_as() {
    local role=$1 cert=$2
    shift 2
    echo "host=$DB_ADDR port=$PORT dbname=$DB user=$role sslmode=verify-full" \
        "sslrootcert=$PKI/ca.crt sslcert=$PKI/$cert.crt sslkey=$PKI/$cert.key connect_timeout=5 $*"
}
conninfo() {
    local i=$1
    shift
    conninfo_as "$(host_role "$i")" "h$i" "$@"
}
# store_toml I [CA] [ADDRESSES] [BUDGET] [CONNECT]: host I's store.toml (defaults: our CA, the
# cluster on $DB_ADDR, $BUDGET_MS, $CONNECT_MS; offline mode deny).
store_toml() {
    local i=$1 ca=${2:-$PKI/ca.crt} addrs=${3:-\"$DB_ADDR:$PORT\"} budget=${4:-$BUDGET_MS}
    local connect=${5:-$CONNECT_MS}
    cat <<EOF
backend = "postgresql"
addresses = [$addrs]
database = "$DB"
role = "$(host_role "$i")"
ca = "$ca"
cert = "$PKI/h$i.crt"
key = "$PKI/h$i.key"
connect_timeout_ms = $connect
budget_ms = $budget
[offline]
mode = "deny"
EOF
}
# net_psql NS CONNINFO [psql args]: psql over TCP from namespace NS (under timeout), stdin.
net_psql() {
    local ns=$1 ci=$2
    shift 2
    in_ns "$ns" timeout 20 "$PG_BIN/psql" -X -q -At -F '|' -v ON_ERROR_STOP=1 "$ci" "$@"
}

# --- nothing left ----------------------------------------------------------------------------
# fleet_nothing_left DIR...: runs `cleanup` (the caller's) now and checks that it left nothing:
# no namespace, no link of ours, none of the DIRs, no server on $T/data. What is new since
# fleet_net_init and ours (named with the pid) fails it; anything else belongs to another
# process (other tests may run on this machine) and is only reported.
fleet_nothing_left() {
    local data=$T/data after_ns after_links extra ours d
    cleanup
    after_ns=$(fleet_netns_list)
    after_links=$(fleet_link_list)
    extra=$(comm -13 <(echo "$FLEET_BEFORE_NETNS") <(echo "$after_ns"))
    ours=$(grep -F -- "$TAG" <<<"$extra")
    [[ -z $ours ]] || { why "namespaces left: $ours"; return 1; }
    [[ -z $extra ]] || echo "    note: namespaces not ours appeared meanwhile: $(paste -sd' ' <<<"$extra")"
    extra=$(comm -13 <(echo "$FLEET_BEFORE_LINKS") <(echo "$after_links"))
    ours=$(grep -E -- "^$LN[bhe][0-9]*\$" <<<"$extra")
    [[ -z $ours ]] || { why "links left in the root namespace: $ours"; return 1; }
    [[ -z $extra ]] || echo "    note: links not ours appeared meanwhile: $(paste -sd' ' <<<"$extra")"
    for d in "$@"; do
        [[ ! -e $d ]] || { why "$d left"; return 1; }
    done
    if pgrep -f -- "-D $data" >/dev/null; then why "a server on $data still runs"; return 1; fi
    if [[ -n ${FLEET_NODES:-} ]] && pgrep -f -- "-D $FLEET_NODE_DIR/" >/dev/null; then
        why "a server under $FLEET_NODE_DIR still runs"
        return 1
    fi
}
