# tests/fleet/fleet-faults.sh — the fault scenarios of fleet-test.sh (SPEC §11: "the store
# unreachable, slow or failing over → PAM_AUTHINFO_UNAVAIL within the time budget ... never
# PAM_SUCCESS without an acknowledged commit; with a synchronous standby, no acknowledged step
# is lost when the standby is promoted"). Sourced by fleet-test.sh when FLEET_FAULTS is set
# (FLEET_FAULTS=1: everything, 20 failovers under load; FLEET_FAULTS=quick, what `make test`
# runs: the same scenarios with 3 failovers); uses its login/result/reason/enrol helpers.
#
# The store here is a second, replicated one (lib-net.sh's nodes): a primary, a synchronous
# standby (application_name s1; synchronous_standby_names = 'FIRST 1 (s1)',
# synchronous_commit = on) and an asynchronous one (s2), each in its own namespace on the bridge
# (10.231.0.2, .3, .4), TLS with a certificate for its IP from a CA of their own (made under
# faketime a day in the past, so that hosts whose clock is 5 minutes slow accept it), standbys
# made by pg_basebackup -R over TLS. Hosts' store-faults.toml lists [primary, sync, async] as
# set up (connect 1 s, budget 3 s); services `faults` (window=10: a user has codes for the next
# ten steps, so successive logins succeed without waiting for the clock) and `faults-w1`.
#
# A failover (faults_failover): kill -9 of every process of the primary (the machine dies),
# pg_ctl promote of the SYNCHRONOUS standby, the old primary rebuilt from it by pg_basebackup as
# the new s1, the asynchronous standby re-pointed (primary_conninfo; it keeps its name s2, and
# is rebuilt before a scenario if it could not follow). Users are named fx-*.
# shellcheck shell=bash

FAULT_CONNECT_MS=1000
FAULT_BUDGET_MS=3000
FAULT_WINDOW=10
if [[ $FLEET_FAULTS == quick ]]; then
    FAULT_FAILOVERS=${FAULT_FAILOVERS:-3}
    FAULT_USERS=4
else
    FAULT_FAILOVERS=${FAULT_FAILOVERS:-20}
    FAULT_USERS=8
fi
PRIMARY=a
SYNC=b
ASYNC=c
FAKETIME_LIB=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -n 1)

ms_now() { echo $(($(date +%s%N) / 1000000)); }
fsq() { fleet_node_sq "$PRIMARY" "$@"; }
fadm() { FLEET_PGDIR=$(fleet_node_dir "$PRIMARY") psql_as fleet_admin "$@"; }
fenrol() { ENROL_ADM=fadm enrol "$@"; }
# faults_row USER: last_step|failures on the primary
faults_row() { fsq <<<"SELECT coalesce(last_step, 0), failures FROM pam_totp.users WHERE name = '$1'"; }

faults_setup() {
    local n i addr hba=
    mkdir -m 711 "$FLEET_NODE_DIR" || die "node directory"
    FLEET_OSSL_FAKETIME=-1d make_ca fca "pam-totp fault nodes CA"
    for n in $FLEET_NODES; do
        addr=$(fleet_node_addr "$n")
        fleet_net_attach "$(fleet_node_ns "$n")" "$addr" $((21 + $(fleet_node_index "$n")))
        install -d -o postgres -g postgres -m 700 "$(fleet_node_dir "$n")" || die "node $n"
        FLEET_OSSL_FAKETIME=-1d make_cert fca "node-$n" "$addr" "subjectAltName=IP:$addr"
        chown postgres: "$PKI/node-$n.key"
        hba+="hostssl replication postgres $addr/32 trust"$'\n'
    done
    chmod 644 "$PKI"/*.crt
    FLEET_HBA_EXTRA=$hba fleet_node_with a fleet_tls_cluster 100 "$(fleet_node_dir a)" \
        "$(fleet_node_addr a)" node-a "$(fleet_node_ns a)"
    fsq -d postgres >/dev/null <<EOF || die "replication settings"
ALTER SYSTEM SET wal_keep_size = '256MB';
ALTER SYSTEM SET wal_receiver_status_interval = '1s';
ALTER SYSTEM SET wal_retrieve_retry_interval = '500ms';
SELECT pg_reload_conf();
EOF
    FLEET_PGDIR=$(fleet_node_dir a) fleet_createdb same-key
    FLEET_PGDIR=$(fleet_node_dir a) fleet_init_schema
    for i in $(seq 1 "$N_HOSTS"); do
        [[ $(fadm <<<"SELECT pam_totp.add_host('$(host_role "$i")')") == t ]] || die "add_host $i on a"
    done
    fleet_node_standby b a s1 || die "standby b: $(tail -n 3 "$(fleet_node_dir b)"/*.log)"
    # ASYNC empty (bench/fleet.sh: FLEET_NODES="a b"): no asynchronous standby.
    [[ -z $ASYNC ]] || fleet_node_standby c a s2 || die "standby c: $(tail -n 3 "$(fleet_node_dir c)"/*.log)"
    # Synchronous from now on (a commit before s1 is attached would wait for ever), on every
    # node (a standby uses it once promoted); a base backup copies postgresql.auto.conf.
    for n in $FLEET_NODES; do
        fleet_node_sq "$n" -d postgres >/dev/null <<EOF || die "synchronous settings on $n"
ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (s1)';
ALTER SYSTEM SET synchronous_commit = on;
SELECT pg_reload_conf();
EOF
    done
    faults_wait_sync 30 caught-up || die "s1 not synchronous"
    local addrs
    addrs=$(for n in $FLEET_NODES; do printf '"%s:%s",' "$(fleet_node_addr "$n")" "$PORT"; done)
    for i in $(seq 1 "$N_HOSTS"); do
        H=$BASE/h$i
        (umask 077 && store_toml "$i" "$PKI/fca.crt" "${addrs%,}" "$FAULT_BUDGET_MS" \
            "$FAULT_CONNECT_MS" >"$H/store-faults.toml") || die "store-faults.toml $i"
        if [[ ${FLEET_TEST_AGENT:-} == 1 ]]; then # through a second agent per host (fleet-agent.sh)
            mkdir -m 755 "$H/agent-faults"
            (umask 077 && with_agent "$H/store-faults.toml" "$H/agent-faults/agent.sock" >"$H/sf.toml" &&
                mv "$H/sf.toml" "$H/store-faults.toml") &&
                agent_run "$i" "$H/store-faults.toml" "$H/agent-faults/agent.sock" || die "faults agent $i"
        fi
        fleet_opts="store=$H/store-faults.toml store_lib=$STORE_LIB dir=$H/state policy=$H/policy.toml"
        service "$i" faults "$fleet_opts window=$FAULT_WINDOW"
        service "$i" faults-w1 "$fleet_opts"
    done
}

# --- the replicated store ------------------------------------------------------------------------
# faults_wait_sync SECONDS [caught-up]: s1 streams to the primary as its synchronous standby
# (and has flushed everything the primary wrote).
faults_wait_sync() {
    local k cond="state = 'streaming' AND sync_state = 'sync'"
    [[ -z ${2:-} ]] || cond+=" AND flush_lsn >= pg_current_wal_lsn()"
    for k in $(seq 1 $(($1 * 5))); do
        [[ $(fsq <<<"SELECT count(*) FROM pg_stat_replication WHERE application_name = 's1' AND $cond" 2>/dev/null) == 1 ]] &&
            return 0
        sleep 0.2
    done
    return 1
}
faults_streams() { # APPNAME: a standby of that name streams from the primary
    [[ $(fsq <<<"SELECT count(*) FROM pg_stat_replication WHERE application_name = '$1' AND state = 'streaming'" 2>/dev/null) == 1 ]]
}
# faults_ready: the primary, its synchronous standby caught up, the asynchronous one streaming;
# what is missing is rebuilt (a scenario that failed half-way leaves the next one a working set).
faults_ready() {
    [[ $(fsq <<<"SELECT pg_is_in_recovery()" 2>/dev/null) == f ]] || { why "no primary on $PRIMARY"; return 1; }
    if ! faults_wait_sync 2 caught-up; then
        fleet_node_kill "$SYNC"
        fleet_node_standby "$SYNC" "$PRIMARY" s1 && faults_wait_sync 20 caught-up ||
            { why "s1 ($SYNC) does not become synchronous"; return 1; }
    fi
    if ! faults_streams s2; then
        fleet_node_kill "$ASYNC"
        fleet_node_standby "$ASYNC" "$PRIMARY" s2 || { why "rebuilding s2 ($ASYNC): $(faults_node_log "$ASYNC")"; return 1; }
    fi
}
faults_node_log() { tail -q -n 3 "$(fleet_node_dir "$1")"/{basebackup.log,log} 2>/dev/null | paste -sd'|' -; }
faults_kill_primary() { fleet_node_kill "$PRIMARY" || { why "kill -9 of $PRIMARY"; return 1; }; }
# faults_promote: pg_ctl promote of the synchronous standby (the old primary must be fenced);
# sets PROMOTED_AT (ms). The roles change: the dead primary is now SYNC, to be rebuilt.
faults_promote() {
    local old=$PRIMARY
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$(fleet_node_dir "$SYNC")/data" promote -w -t 30 \
        >/dev/null 2>&1 || { why "pg_ctl promote $SYNC"; return 1; }
    PROMOTED_AT=$(ms_now)
    PRIMARY=$SYNC
    SYNC=$old
}
# faults_rebuild: the fenced old primary (SYNC now) becomes the new s1 from a base backup of the
# new primary; the asynchronous standby is re-pointed to it.
faults_rebuild() {
    local conf
    fleet_node_standby "$SYNC" "$PRIMARY" s1 || { why "rebuilding $SYNC: $(faults_node_log "$SYNC")"; return 1; }
    conf=$(fleet_node_dir "$ASYNC")/data/postgresql.auto.conf
    sed -i -E "s/host=[0-9.]+ /host=$(fleet_node_addr "$PRIMARY") /" "$conf" &&
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$(fleet_node_dir "$ASYNC")/data" reload \
            >/dev/null 2>&1
    return 0
}
faults_failover() { faults_kill_primary && faults_promote && faults_rebuild; }

# --- logins whose answer comes later -------------------------------------------------------------
# login_later I SERVICE USER ID: a login waiting for its answer (answer_later); wait_prompt ID;
# answer_later ANSWER (sets ANSWERED_AT); finish_later ID (sets LATER_MS: answer to result).
login_later() {
    local fifo=$OUT/$4.fifo
    mkfifo "$fifo" && exec {LATER_FD}<>"$fifo"
    login_stdin "$1" "$2" "$3" "$4" <"$fifo" {LATER_FD}>&- &
    LATER_PID=$!
}
wait_prompt() {
    local k
    for k in $(seq 1 100); do
        [[ -f $OUT/$1 ]] && prompted "$1" && return 0
        sleep 0.1
    done
    why "$1: no prompt within 10 s"
    return 1
}
answer_later() {
    printf '%s\n' "$1" >&"$LATER_FD"
    ANSWERED_AT=$(ms_now)
    exec {LATER_FD}>&-
}
finish_later() {
    wait "$LATER_PID"
    LATER_MS=$(($(ms_now) - ANSWERED_AT))
}
# unavail_within ID MS: PAM_AUTHINFO_UNAVAIL, at most the budget + 0.5 s after MS started.
unavail_within() {
    expect "$1: result" "$(result "$1")" PAM_AUTHINFO_UNAVAIL || return 1
    (($2 <= FAULT_BUDGET_MS + 500)) || { why "$1: took $2 ms (budget $FAULT_BUDGET_MS + 500)"; return 1; }
}
# sync_waiting ROLE: the pid of a backend of ROLE waiting for the synchronous standby (5 s)
sync_waiting() {
    local k p
    for k in $(seq 1 50); do
        p=$(fsq <<<"SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND usename = '$1' LIMIT 1")
        [[ -n $p ]] && { echo "$p"; return 0; }
        sleep 0.1
    done
    return 1
}

# --- scenarios -----------------------------------------------------------------------------------
sc_fleet-kill-primary-fails-closed() {
    faults_ready || return 1
    local hex before after rc=0 wr row
    # (a) Before the prompt: the store down (the standbys are read-only) → no prompt.
    hex=$(newkey 20)
    fenrol fx-kpa "$hex" || return 1
    before=$(faults_row fx-kpa)
    faults_kill_primary || return 1
    login 1 faults fx-kpa "$(c30 "$hex" "$STEP")" kpa
    store_down_ok kpa 1 "$FAULT_BUDGET_MS" || rc=1
    echo "    (a) killed before the prompt: $(result kpa) after $(cat "$OUT/kpa.ms") ms: $(reason 1 kpa)"
    faults_promote && faults_rebuild || return 1
    expect "(a) fx-kpa on the promoted $PRIMARY" "$(faults_row fx-kpa)" "$before" || rc=1
    # (b) After the prompt, before the check.
    hex=$(newkey 20)
    fenrol fx-kpb "$hex" || return 1
    faults_wait_sync 20 caught-up || { why "(b) s1 not back"; return 1; }
    before=$(faults_row fx-kpb)
    login_later 2 faults fx-kpb kpb
    wait_prompt kpb || return 1
    faults_kill_primary || return 1
    answer_later "$(c30 "$hex" "$STEP")"
    finish_later
    unavail_within kpb "$LATER_MS" || rc=1
    echo "    (b) killed after the prompt: $(result kpb) $LATER_MS ms after the answer: $(reason 2 kpb)"
    faults_promote && faults_rebuild || return 1
    expect "(b) fx-kpb on the promoted $PRIMARY" "$(faults_row fx-kpb)" "$before" || rc=1
    # (c) During the wait for the synchronous standby (its WAL receiver stopped).
    hex=$(newkey 20)
    fenrol fx-kpc "$hex" || return 1
    faults_wait_sync 20 caught-up || { why "(c) s1 not back"; return 1; }
    before=$(faults_row fx-kpc)
    after="$STEP|0"
    wr=$(fleet_node_sq "$SYNC" <<<"SELECT pid FROM pg_stat_wal_receiver")
    [[ -n $wr ]] && kill -STOP "$wr" || { why "(c) no WAL receiver on $SYNC"; return 1; }
    login 3 faults fx-kpc "$(c30 "$hex" "$STEP")" kpc &
    local lp=$!
    if ! sync_waiting host-h3 >/dev/null; then
        why "(c) no check waiting for the standby"
        rc=1
    fi
    faults_kill_primary
    kill -CONT "$wr"
    wait "$lp"
    unavail_within kpc "$(cat "$OUT/kpc.ms")" || rc=1
    echo "    (c) killed during the wait for s1: $(result kpc) after $(cat "$OUT/kpc.ms") ms: $(reason 3 kpc)"
    faults_promote && faults_rebuild || return 1
    row=$(faults_row fx-kpc)
    [[ $row == "$before" || $row == "$after" ]] ||
        { why "(c) fx-kpc on the promoted $PRIMARY: '$row', want '$before' or '$after'"; rc=1; }
    echo "    (c) fx-kpc on the promoted node: $row (before $before, after $after)"
    return $rc
}

sc_fleet-partition-fails-closed() {
    faults_ready || return 1
    local h1 h2 h3 s1 s2 s3 pid rc=0 lp
    # (1) The host's link cut between the prompt and the answer.
    h1=$(newkey 20)
    fenrol fx-pt1 "$h1" || return 1
    s1=$STEP
    login_later 2 faults fx-pt1 pt1
    wait_prompt pt1 || return 1
    ip -n "$NS_DB" link set "${LN}h2" down || { why "cutting h2"; return 1; }
    answer_later "$(c30 "$h1" "$s1")"
    finish_later
    ip -n "$NS_DB" link set "${LN}h2" up
    unavail_within pt1 "$LATER_MS" || rc=1
    echo "    (1) h2 cut after the prompt: $(result pt1) $LATER_MS ms after the answer: $(reason 2 pt1)"
    reach_wait "$(host_ns 2)" "$(fleet_node_addr "$PRIMARY")" "$PORT"
    expect_login 2 faults fx-pt1 "$(c30 "$h1" "$s1")" pt1-back "PAM_SUCCESS|accepted step $s1 *" || rc=1
    # (2) The primary cut from its synchronous standby: the commit is never acknowledged.
    h2=$(newkey 20)
    fenrol fx-pt2 "$h2" || return 1
    s2=$STEP
    h3=$(newkey 20)
    fenrol fx-pt3 "$h3" || return 1
    s3=$STEP
    fleet_node_cut "$SYNC" down || { why "cutting $SYNC"; return 1; }
    login 3 faults fx-pt2 "$(c30 "$h2" "$s2")" pt2
    unavail_within pt2 "$(cat "$OUT/pt2.ms")" || rc=1
    echo "    (2) s1 cut off: $(result pt2) after $(cat "$OUT/pt2.ms") ms: $(reason 3 pt2)"
    # (3) An operator cancels a check's wait for the standby (pg_cancel_backend): PostgreSQL
    # then returns success with a warning, committed only locally — still a denial.
    login 4 faults fx-pt3 "$(c30 "$h3" "$s3")" pt3 &
    lp=$!
    if pid=$(sync_waiting host-h4); then
        fsq <<<"SELECT pg_cancel_backend($pid)" >/dev/null
    else
        why "(3) no check of h4 waiting for the standby"
        rc=1
    fi
    wait "$lp"
    unavail_within pt3 "$(cat "$OUT/pt3.ms")" || rc=1
    echo "    (3) the wait cancelled: $(result pt3) after $(cat "$OUT/pt3.ms") ms: $(reason 4 pt3)"
    fleet_node_cut "$SYNC" up
    faults_wait_sync 30 caught-up || { why "s1 does not catch up after the link returned"; return 1; }
    # Back: the next step works; the step of the denied check was consumed (conservative).
    expect_login 3 faults fx-pt2 "$(c30 "$h2" $((s2 + 1)))" pt2-back "PAM_SUCCESS|accepted step $((s2 + 1)) *" || rc=1
    expect_login 4 faults fx-pt3 "$(c30 "$h3" $((s3 + 1)))" pt3-back "PAM_SUCCESS|accepted step $((s3 + 1)) *" || rc=1
    expect_login 5 faults fx-pt2 "$(c30 "$h2" "$s2")" pt2-replay "PAM_AUTH_ERR|replayed code*" || rc=1
    return $rc
}

sc_fleet-clock-from-database() {
    [[ -n $FAKETIME_LIB ]] || { why "libfaketime missing (Debian package faketime)"; return 1; }
    local hex s fake rc=0
    hex=$(newkey 20)
    fenrol fx-clk "$hex" || return 1
    s=$STEP
    LOGIN_ENV=(LD_PRELOAD="$FAKETIME_LIB" FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME=+5m)
    # Control: a process started this way lives 5 minutes ahead.
    fake=$(in_ns "$(host_ns 5)" env "${LOGIN_ENV[@]}" date +%s)
    ((fake - $(now) >= 295)) || { why "faketime +5m: the host clock is $((fake - $(now))) s off"; LOGIN_ENV=(); return 1; }
    expect_login 5 faults-w1 fx-clk "$(c30 "$hex" $((($(now) + 300) / 30)))" clk-fast "PAM_AUTH_ERR|wrong code (failure 1)" || rc=1
    expect_login 5 faults-w1 fx-clk "$(c30 "$hex" "$s")" clk-true-fast "PAM_SUCCESS|accepted step $s (offset *)" || rc=1
    LOGIN_ENV=(LD_PRELOAD="$FAKETIME_LIB" FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME=-5m)
    expect_login 6 faults-w1 fx-clk "$(c30 "$hex" $((($(now) - 300) / 30)))" clk-slow "PAM_AUTH_ERR|wrong code (failure 1)" || rc=1
    expect_login 6 faults-w1 fx-clk "$(c30 "$hex" $((s + 1)))" clk-true-slow "PAM_SUCCESS|accepted step $((s + 1)) (offset *)" || rc=1
    LOGIN_ENV=()
    return $rc
}

# shellcheck source=tests/fleet/fleet-failover.sh
. "$ROOT/tests/fleet/fleet-failover.sh"
