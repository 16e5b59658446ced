# tests/fleet/fleet-failover.sh — failovers under load and the negative control (sourced by
# fleet-faults.sh; the replicated store, faults_failover and the helpers are there).
#
# Load: one worker per host logs its own users (FAULT_USERS each, fx-w<I>-<K>) in through the
# `faults` service (window=10) with codes of successive steps: each attempt uses the user's
# next step (one above the last tried, whatever came of it), so every attempt is a fresh code
# and successes go on without waiting for the clock, as long as the step is within the window
# (a user whose next step is too far ahead waits; the others go on). Each attempt is a line
# "START END USER STEP ID RESULT" in $OUT/fo-<I>.log.
#
# Checks: after each promotion (before the rebuilt standby is attached, so no new commit is
# acknowledged yet) every user's last_step on the promoted node is at least the highest step of
# its logins that returned PAM_SUCCESS; a login succeeds within 5 s of each promotion; at the
# end, every PAM_SUCCESS login has its audit row ('accepted', its rhost) on the final primary,
# and every such code, replayed on another host, is refused.
# shellcheck shell=bash

fo_code() { c30 "$(cat "$OUT/fo-hex-$1")" "$2"; }
# fo_enrol I...: FAULT_USERS users for each worker I, enrolled and activated in one session.
fo_enrol() {
    local i k u hex s sql=
    s=$(cur_step 30)
    for i in "$@"; do
        for k in $(seq 1 "$FAULT_USERS"); do
            u=fx-w$i-$k
            hex=$(newkey 20)
            echo "$hex" >"$OUT/fo-hex-$u"
            sql+="SELECT (pam_totp.enrol('$u', '\\x$hex'::bytea, 'SHA1', 6, 30, 'fleet-test', '{}'::text[], false)).replaces_active;"$'\n'
            sql+="SELECT outcome FROM pam_totp.activate('$u', '$(c30 "$hex" $((s - 1)))', 2);"$'\n'
        done
    done
    expect "activated" "$(fadm <<<"$sql" | grep -c '^activated$')" $(($# * FAULT_USERS))
}

# fo_worker I STOPFILE: host I's load until STOPFILE exists.
fo_worker() {
    local i=$1 stop=$2 n=0 k u s cur t0 next=() picked
    for k in $(seq 1 "$FAULT_USERS"); do next[k]=$(cur_step 30); done
    k=0
    while [[ ! -e $stop ]]; do
        cur=$(cur_step 30)
        picked=
        for _ in $(seq 1 "$FAULT_USERS"); do
            k=$((k % FAULT_USERS + 1))
            ((next[k] < cur - FAULT_WINDOW + 1)) && next[k]=$((cur - FAULT_WINDOW + 1))
            if ((next[k] <= cur + FAULT_WINDOW - 1)); then picked=$k; break; fi
        done
        [[ -n $picked ]] || { sleep 0.5; continue; }
        u=fx-w$i-$k
        s=${next[k]}
        next[k]=$((s + 1))
        n=$((n + 1))
        t0=$(ms_now)
        login "$i" faults "$u" "$(fo_code "$u" "$s")" "fo-$i-$n"
        echo "$t0 $(ms_now) $u $s fo-$i-$n $(result "fo-$i-$n")" >>"$OUT/fo-$i.log"
        sleep 0.$((RANDOM % 4 + 2))
    done
}

# fo_acked [BEFORE_MS]: "USER STEP ID" of every PAM_SUCCESS login (that ended before BEFORE_MS).
fo_acked() {
    cat "$OUT"/fo-[0-9]*.log 2>/dev/null |
        awk -v b="${1:-99999999999999}" '$6 == "PAM_SUCCESS" && $2 < b { print $3, $4, $5 }'
}
# fo_lost_steps NODE BEFORE_MS: users whose last_step on NODE is below an acknowledged step.
fo_lost_steps() {
    local rows
    rows=$(fleet_node_sq "$1" <<<"SELECT name, coalesce(last_step, 0) FROM pam_totp.users WHERE name LIKE 'fx-%'") ||
        { echo "cannot read users on $1"; return; }
    fo_acked "$2" | awk -v rows="$rows" '
        BEGIN { n = split(rows, r, "\n"); for (j = 1; j <= n; j++) { split(r[j], f, "|"); last[f[1]] = f[2] } }
        { if ($2 > max[$1]) max[$1] = $2 }
        END { for (u in max) if (last[u] + 0 < max[u]) printf "%s: acknowledged step %s, last_step %s\n", u, max[u], last[u] }'
}
# fo_missing_audit NODE: IDs of acknowledged logins without their 'accepted' audit row on NODE.
fo_missing_audit() {
    local ids
    ids=$(fo_acked | awk '{ print $3 }' | paste -sd, -)
    [[ -n $ids ]] || return 0
    fleet_node_sq "$1" -v ids="{$ids}" <<'EOF'
SELECT x FROM unnest(:'ids'::text[]) AS x
EXCEPT SELECT rhost FROM pam_totp.audit WHERE outcome = 'accepted' ORDER BY 1
EOF
}
# fo_replay_host ID: the host that replays login ID (fo-I-N): the next one after I.
fo_replay_host() {
    local i=${1#fo-}
    echo $((${i%%-*} % N_HOSTS + 1))
}
# fo_replay_all: every acknowledged code again, on the next host (8 at a time); prints the
# logins that were not refused as replays.
fo_replay_all() {
    local u s id h n=0 pids=()
    while read -r u s id; do
        login "$(fo_replay_host "$id")" faults "$u" "$(fo_code "$u" "$s")" "re-$id" &
        pids+=($!)
        n=$((n + 1))
        if ((n % N_HOSTS == 0)); then wait "${pids[@]}"; pids=(); fi
    done < <(fo_acked)
    wait "${pids[@]}"
    fo_acked | while read -r u s id; do
        h=$(outcome "$(fo_replay_host "$id")" "re-$id")
        [[ $h == "PAM_AUTH_ERR|replayed code"* ]] || echo "re-$id ($u step $s): $h"
    done
}

sc_fleet-failover-no-lost-step() {
    faults_ready || return 1
    fo_enrol $(seq 1 "$N_HOSTS") || return 1
    local stop=$OUT/fo-stop f i k t0 kill_at first lost rc=0 pids=() slow=0 worst=0 out
    t0=$(ms_now)
    for i in $(seq 1 "$N_HOSTS"); do
        fo_worker "$i" "$stop" &
        pids+=($!)
    done
    sleep 3
    for f in $(seq 1 "$FAULT_FAILOVERS"); do
        sleep "$((RANDOM % 3)).$((RANDOM % 10))"
        kill_at=$(ms_now)
        faults_kill_primary && faults_promote || { rc=1; break; }
        lost=$(fo_lost_steps "$PRIMARY" "$PROMOTED_AT")
        [[ -z $lost ]] || { why "failover $f: lost on $PRIMARY: $lost"; rc=1; }
        faults_rebuild || { rc=1; break; }
        first=
        for k in $(seq 1 80); do
            first=$(cat "$OUT"/fo-[0-9]*.log | awk -v p="$PROMOTED_AT" '$6 == "PAM_SUCCESS" && $2 >= p { print $2 - p }' | sort -n | head -n 1)
            [[ -n $first ]] && break
            sleep 0.1
        done
        [[ -n $first ]] || first=99999
        ((first > worst)) && worst=$first
        if ((first > 5000)); then
            why "failover $f (promoted $PRIMARY): the first success $first ms after the promotion"
            slow=$((slow + 1))
            rc=1
        fi
    done
    touch "$stop"
    wait "${pids[@]}"
    out=$(cat "$OUT"/fo-[0-9]*.log | awk '{ n[$6]++ } END { for (r in n) printf "%s %d, ", r, n[r] }')
    echo "    $FAULT_FAILOVERS failovers under load from $N_HOSTS hosts in $((($(ms_now) - t0) / 1000)) s: ${out%, }; slowest recovery $worst ms after a promotion"
    [[ $(fo_acked | wc -l) -ge $((FAULT_FAILOVERS * 2)) ]] || { why "only $(fo_acked | wc -l) successes"; rc=1; }
    lost=$(fo_missing_audit "$PRIMARY")
    [[ -z $lost ]] || { why "acknowledged logins missing on $PRIMARY: $(paste -sd' ' <<<"$lost")"; rc=1; }
    lost=$(fo_replay_all)
    [[ -z $lost ]] || { why "replays not refused: $(head -n 5 <<<"$lost" | paste -sd';' -)"; rc=1; }
    echo "    $(fo_acked | wc -l) acknowledged logins: each on the final primary $PRIMARY, each replay refused"
    return $rc
}

sc_fleet-negative-control-async-loses-step() {
    faults_ready || return 1
    negative_control
    local rc=$?
    fsq >/dev/null <<<"ALTER SYSTEM RESET synchronous_commit; SELECT pg_reload_conf()"
    return $rc
}
negative_control() {
    local hex s rc=0 missing last k
    hex=$(newkey 20)
    fresh_step 30 15   # the login below is judged in the step of the enrolment (offset 0)
    fenrol fx-neg "$hex" || return 1
    s=$STEP
    # synchronous_commit = local: a commit no longer waits for s1.
    fsq >/dev/null <<<"ALTER SYSTEM SET synchronous_commit = local; SELECT pg_reload_conf()"
    for k in $(seq 1 50); do
        [[ $(fsq <<<"SHOW synchronous_commit") == local ]] && break
        sleep 0.1
    done
    # s1 cut off (deterministic lag), a login acknowledged, the primary killed, s1 promoted while
    # still cut off (nothing the dead primary's kernel retransmits reaches it).
    fleet_node_cut "$SYNC" down || { why "cutting $SYNC"; return 1; }
    login 1 faults fx-neg "$(c30 "$hex" "$s")" fo-neg-1
    expect "acknowledged login" "$(outcome 1 fo-neg-1)" "PAM_SUCCESS|accepted step $s (offset 0)" || rc=1
    echo "0 $(ms_now) fx-neg $s fo-neg-1 $(result fo-neg-1)" >"$OUT/fo-99.log"
    if ! { faults_kill_primary && faults_promote; }; then
        fleet_node_cut "$SYNC" up
        return 1
    fi
    fleet_node_cut "$PRIMARY" up
    # The same checks as the failover test: they must see the loss.
    last=$(fo_lost_steps "$PRIMARY" "$PROMOTED_AT" | grep '^fx-neg:')
    missing=$(fo_missing_audit "$PRIMARY" | grep -x fo-neg-1)
    rm -f "$OUT/fo-99.log"
    echo "    synchronous_commit = local, s1 cut off: ${last:-no step lost}; the audit row of fo-neg-1 $([[ -n $missing ]] && echo "is missing" || echo "is there") on the promoted $PRIMARY"
    [[ -n $last && -n $missing ]] ||
        { why "the lost step was not detected (last_step: '$last', audit: '$missing')"; rc=1; }
    # What the loss means: the same code lets someone in a second time.
    faults_rebuild || return 1
    expect_login 2 faults fx-neg "$(c30 "$hex" "$s")" neg-replay "PAM_SUCCESS|accepted step $s *" || rc=1
    return $rc
}
