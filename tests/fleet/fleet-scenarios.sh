# tests/fleet/fleet-scenarios.sh — the scenarios of fleet-test.sh (sourced by it; uses its
# login/result/reason/outcome/tally/enrol helpers). Users are named ft-*, one per scenario, so
# each can use the current step's code (enrol activates with the previous one).
# shellcheck shell=bash

# parallel PREFIX SERVICE USER ANSWER PER_HOST: PER_HOST logins on every host at once, with
# IDs PREFIX-I-J; prints how long the batch took.
parallel() {
    local prefix=$1 svc=$2 user=$3 answer=$4 per=$5 i j pids=() t0
    t0=$(date +%s%N)
    for i in $(seq 1 "$N_HOSTS"); do
        for j in $(seq 1 "$per"); do
            login "$i" "$svc" "$user" "$answer" "$prefix-$i-$j" &
            pids+=($!)
        done
    done
    for i in "${pids[@]}"; do wait "$i"; done
    echo "    $((N_HOSTS * per)) parallel logins from $N_HOSTS hosts in $((($(date +%s%N) - t0) / 1000000)) ms"
}
# expect_tally PREFIX WANT: the batch's "count RESULT|reason" lines (tally), joined by " / ".
expect_tally() {
    expect "$1: count RESULT|reason" "$(tally "$1" | sed ':a;N;$!ba;s/\n/ \/ /g')" "$2"
}
# expect_login I SERVICE USER ANSWER ID WANT: one login and its RESULT|reason (WANT may end in *).
expect_login() {
    local got
    login "$1" "$2" "$3" "$4" "$5"
    got=$(outcome "$1" "$5")
    # shellcheck disable=SC2053 # WANT is a pattern
    [[ $got == $6 ]] || { why "$5 (h$1, $2, $3): got '$got', want '$6'"; return 1; }
}

sc_fleet-host-cannot-read-secrets() {
    # As host-h3 over TLS with its certificate: no table, no key, no secret, no state write.
    fleet_host_cannot_read host_psql 3 || return 1
    # Control: what a host may call works over the same connection.
    expect "host-h3 calls enrolment()" "$(host_psql 3 <<<"SELECT enrolment FROM pam_totp.enrolment('nobody')" 2>&1)" none
}

sc_fleet-host-cannot-call-admin() {
    fleet_host_cannot_call_admin host_psql 4
}

sc_fleet-one-success-across-hosts() {
    local hex
    hex=$(newkey 20)
    # The batch must stay in one step for its offset to be 0: 8 × 16 logins take 2–7 s here,
    # 8 × 64 (FULL=1) ~20 s: start early enough in a step.
    if [[ -z ${FULL:-} ]]; then fresh_step 30 12; else fresh_step 30 25; fi
    enrol ft-par "$hex" || return 1
    parallel par fleet-load ft-par "$(c30 "$hex" "$STEP")" "$PAR"
    expect_tally par "$((N_HOSTS * PAR - 1)) PAM_AUTH_ERR|replayed code (step $STEP, last accepted $STEP) / 1 PAM_SUCCESS|accepted step $STEP (offset 0)" ||
        return 1
    local host
    host=$(adm <<<"SELECT last_success_host FROM pam_totp.status('ft-par')")
    [[ $host =~ ^host-h[1-8]$ ]] || { why "last success host: '$host'"; return 1; }
    # Audited with the host (its role) and the rhost the module passed: par-I-J came from hI.
    expect "audit rows of ft-par's logins by the host that made them" "$(sq <<<"SELECT count(*) FILTER (WHERE host = 'host-h' || split_part(rhost, '-', 2)), count(*) FROM pam_totp.audit WHERE user_name = 'ft-par' AND rhost LIKE 'par-%'")" \
        "$((N_HOSTS * PAR))|$((N_HOSTS * PAR))"
}

sc_fleet-replay-across-hosts() {
    local hex c i
    hex=$(newkey 20)
    enrol ft-rep "$hex" || return 1
    c=$(c30 "$hex" "$STEP")
    expect_login 1 fleet ft-rep "$c" rep-1 "PAM_SUCCESS|accepted step $STEP (offset *)" || return 1
    for i in $(seq 2 "$N_HOSTS"); do
        expect_login "$i" fleet ft-rep "$c" "rep-$i" \
            "PAM_AUTH_ERR|replayed code (step $STEP, last accepted $STEP)" || return 1
    done
    c=$(c30 "$hex" $((STEP + 1)))
    expect_login 2 fleet ft-rep "$c" rep-next-2 "PAM_SUCCESS|accepted step $((STEP + 1)) (offset *)" || return 1
    expect_login 3 fleet ft-rep "$c" rep-next-3 \
        "PAM_AUTH_ERR|replayed code (step $((STEP + 1)), last accepted $((STEP + 1)))"
}

sc_fleet-throttle-across-hosts() {
    settings 3 60 3600 NULL || { why "set_settings"; return 1; }
    throttle_across_hosts
    local rc=$?
    settings 5 60 3600 300 || { why "set_settings back"; return 1; }
    return $rc
}
throttle_across_hosts() {
    local hex wrong right r until i last
    hex=$(newkey 20)
    enrol ft-thr "$hex" || return 1
    wrong=$(c30 "$hex" $((STEP + 5)))
    right=$(c30 "$hex" "$STEP")
    expect_login 1 fleet ft-thr "$wrong" thr-1 "PAM_AUTH_ERR|wrong code (failure 1)" || return 1
    expect_login 2 fleet ft-thr "hello" thr-2 "PAM_AUTH_ERR|wrong code (failure 2)" || return 1
    expect_login 3 fleet ft-thr "$wrong" thr-3 "PAM_AUTH_ERR|wrong code (failure 3); locked until *" ||
        return 1
    r=$(reason 3 thr-3)
    until=${r#*locked until }
    for i in $(seq 1 "$N_HOSTS"); do
        expect_login "$i" fleet ft-thr "$right" "thrl-$i" "PAM_AUTH_ERR|locked until $until" || return 1
        prompted "thrl-$i" || { why "thrl-$i: no prompt while locked (SPEC §3: the prompt reveals nothing)"; return 1; }
    done
    last=$(adm <<<"SELECT last_step FROM pam_totp.unlock('ft-thr', false)") || { why "unlock"; return 1; }
    expect_login 5 fleet ft-thr "$(c30 "$hex" $((last + 1)))" thr-unlocked \
        "PAM_SUCCESS|accepted step $((last + 1)) (offset *)"
}

sc_fleet-recovery-once() {
    local hex rc=() h=() k
    hex=$(newkey 20)
    for k in 1 2 3; do
        rc+=("$(recovery_code)")
        h+=("$(recovery_hash "${rc[-1]}")")
    done
    RCODES+=("${rc[@]}")
    enrol ft-rec "$hex" "${h[@]}" || return 1
    # Concurrent logins: every prompt is shown before any answer is given (a code burned before
    # a login's prompt is a wrong code for it, as in file mode).
    ANSWER_AT=$(($(date +%s) + 6)) parallel rec fleet-load ft-rec "${rc[0]}" 2
    expect_tally rec "$((N_HOSTS * 2 - 1)) PAM_AUTH_ERR|replayed recovery code (burned by a concurrent login; not counted) / 1 PAM_SUCCESS|accepted recovery code (2 left)"
}

sc_fleet-disable-immediate() {
    local hex i
    hex=$(newkey 20)
    enrol ft-dis "$hex" || return 1
    expect_login 1 fleet ft-dis "$(c30 "$hex" "$STEP")" disb "PAM_SUCCESS|accepted step*" || return 1
    expect "disable" "$(adm <<<"SELECT pam_totp.disable('ft-dis')")" t || return 1
    parallel dis fleet ft-dis "$(c30 "$hex" $((STEP + 1)))" 1
    # h1..h4 have no policy: not required; h5..h8's policy requires ft-dis: denied, after the
    # same prompt as a wrong code.
    expect_tally dis "4 PAM_AUTH_ERR|not enrolled, required by require_users / 4 PAM_IGNORE|not enrolled, not required" ||
        return 1
    for i in 1 2 3 4; do
        ! prompted "dis-$i-1" || { why "dis-$i-1: prompted, not enrolled and not required"; return 1; }
    done
}

sc_fleet-force-reenrol-immediate() {
    local old new i s r
    old=$(newkey 20)
    new=$(newkey 20)
    enrol ft-fre "$old" || return 1
    expect_login 1 fleet ft-fre "$(c30 "$old" "$STEP")" freb "PAM_SUCCESS|accepted step*" || return 1
    SECRETS+=("$new")
    r=$(adm -v h="\\x$new" <<<"SELECT replaces_active FROM pam_totp.enrol('ft-fre', :'h'::bytea, 'SHA1', 6, 30, 'fleet-test', NULL, true)")
    expect "enrol --force" "$r" t || return 1
    # Every host at once: asked, then denied — even the old key's right (unused) code.
    parallel fre-pending fleet ft-fre "$(c30 "$old" $((STEP + 1)))" 1
    expect_tally fre-pending "$N_HOSTS PAM_AUTH_ERR|re-enrolment pending activation" || return 1
    for i in $(seq 1 "$N_HOSTS"); do
        prompted "fre-pending-$i-1" || { why "fre-pending-$i-1: no prompt"; return 1; }
    done
    s=$(cur_step 30)
    expect "activate the new key" "$(adm <<<"SELECT outcome FROM pam_totp.activate('ft-fre', '$(c30 "$new" $((s - 1)))', 2)")" \
        activated || return 1
    # The new key everywhere: accepted on h1, then known as a replay on every other host.
    expect_login 1 fleet ft-fre "$(c30 "$new" "$s")" fren "PAM_SUCCESS|accepted step $s (offset *)" || return 1
    for i in $(seq 2 "$N_HOSTS"); do
        expect_login "$i" fleet ft-fre "$(c30 "$new" "$s")" "fren-$i" \
            "PAM_AUTH_ERR|replayed code (step $s, last accepted $s)" || return 1
    done
    # The old key nowhere (4 hosts: 4 failures stay under the default 5 attempts).
    for i in 2 3 4 5; do
        expect_login "$i" fleet ft-fre "$(c30 "$old" $((s + 1)))" "freo-$i" \
            "PAM_AUTH_ERR|wrong code (failure $((i - 1)))" || return 1
    done
    expect_login 8 fleet ft-fre "$(c30 "$new" $((s + 1)))" frenn "PAM_SUCCESS|accepted step $((s + 1)) (offset *)"
}

sc_fleet-tls-wrong-ca-refused() {
    local r
    # Control: h8 reaches the store with the right CA (ft-nobody: not enrolled, not required).
    expect_login 8 fleet ft-nobody 123456 ca-right "PAM_IGNORE|not enrolled, not required" || return 1
    login 8 fleet-wrongca ft-nobody 123456 ca-wrong
    expect "pinning another CA: result" "$(result ca-wrong)" PAM_AUTHINFO_UNAVAIL || return 1
    ! prompted ca-wrong || { why "prompted with the store unreachable"; return 1; }
    r=$(reason 8 ca-wrong)
    echo "    log: $r"
    [[ $r == "fleet store"* ]] && grep -qiE 'tls|certificate' <<<"$r" ||
        { why "log line: '$r' (want 'fleet store: ...' naming TLS or the certificate)"; return 1; }
}

sc_fleet-store-down-fails-closed() {
    local r ms i rc=0
    # An address list of blackholes (SYNs vanish): the budget (1500 ms) ends the call.
    login 7 fleet-blackhole ft-nobody 123456 bh
    r=$(reason 7 bh)
    ms=$(cat "$OUT/bh.ms")
    echo "    blackholes ×3, connect $CONNECT_MS ms, budget 1500 ms: $(result bh) after $ms ms: $r"
    store_down_ok bh 7 1500 || return 1
    ((ms >= CONNECT_MS - 100)) ||
        { why "bh: over after $ms ms: the blackhole did not hold the connection (set-up)"; return 1; }
    # The server stopped: every host at once.
    fleet_pg_stop fast || { why "pg_ctl stop"; return 1; }
    parallel down fleet ft-nobody 123456 1
    for i in $(seq 1 "$N_HOSTS"); do
        store_down_ok "down-$i-1" "$i" "$BUDGET_MS" || rc=1
    done
    echo "    server stopped: $(tally down | paste -sd' '), slowest $(cat "$OUT"/down-*-1.ms | sort -n | tail -n 1) ms"
    # Started again, for whatever runs later.
    fleet_pg_start in_ns "$NS_DB" || { why "pg_ctl start"; return 1; }
    expect_login 1 fleet ft-nobody 123456 after "PAM_IGNORE|not enrolled, not required" || return 1
    return $rc
}
# store_down_ok ID I BUDGET_MS: PAM_AUTHINFO_UNAVAIL, no prompt, a "fleet store" line, in time.
store_down_ok() {
    local r ms
    r=$(reason "$2" "$1")
    ms=$(cat "$OUT/$1.ms")
    expect "$1: result" "$(result "$1")" PAM_AUTHINFO_UNAVAIL || return 1
    ! prompted "$1" || { why "$1: a prompt was shown with the store unreachable"; return 1; }
    [[ $r == "fleet store"* ]] || { why "$1: log line '$r' does not name the store"; return 1; }
    ((ms <= $3 + 500)) || { why "$1: took $ms ms (budget $3 ms + 500)"; return 1; }
}

sc_fleet-secrets-encrypted-at-rest() {
    local hex rc1 rc2 dump=$BASE/dump.sql needles=() s c
    hex=$(newkey 20)
    rc1=$(recovery_code)
    rc2=$(recovery_code)
    RCODES+=("$rc1" "$rc2")
    enrol ft-enc "$hex" "$(recovery_hash "$rc1")" "$(recovery_hash "$rc2")" || return 1
    "$PG_BIN/pg_dump" -h "$T" -U postgres -d "$DB" -f "$dump" || { why "pg_dump failed"; return 1; }
    grep -q 'COPY pam_totp.users' "$dump" && grep -q 'ft-enc' "$dump" ||
        { why "the dump holds no users (the test would be vacuous)"; return 1; }
    # Every secret enrolled so far (base32 and hex), every recovery code (with and without
    # dashes), the key's text.
    for s in "${SECRETS[@]}"; do needles+=("$(b32_of "$s")" "$s"); done
    for c in "${RCODES[@]}"; do needles+=("$c" "${c//-/}"); done
    needles+=("$(cat "$KEY")")
    fleet_dump_clean "$dump" "${needles[@]}" || return 1
    echo "    pg_dump: $(wc -l <"$dump") lines; none of ${#SECRETS[@]} secrets (base32, hex), ${#RCODES[@]} recovery codes, the key"
}

sc_fleet-nothing-left() {
    local p
    fleet_nothing_left "$BASE" || return 1
    for p in "${SINKS[@]}"; do
        ! kill -0 "$p" 2>/dev/null || { why "logsink $p still runs"; return 1; }
    done
}

# shellcheck source=tests/fleet/fleet-compare.sh
. "$ROOT/tests/fleet/fleet-compare.sh"
