# tests/fleet/fleet-agent.sh — pam-totp-agent, the host's store agent (store.toml's
# agent_socket; sourced by fleet-test.sh, uses its helpers). Each host runs its agent in its own
# namespace, serving $BASE/hI/store-agent.toml (store.toml plus agent_socket =
# $BASE/hI/agent/agent.sock); service fleet-agent is service fleet through it. With
# FLEET_TEST_AGENT=1 the hosts' store.toml itself names the agent, so every scenario using
# service fleet goes through the agents.
#
#   fleet-agent-logins                  the same answers as directly (accepted, replay across
#                                       hosts and modes, wrong code counted); the agent's
#                                       sessions stay open across logins (no new backend)
#   fleet-agent-not-root-refused        a socket directory not root's, or a listener there not
#                                       running as root: denied, nothing sent to it; the agent's
#                                       socket is root's, 0600
#   fleet-agent-other-store-refused     a store.toml naming an agent that serves another one
#   fleet-agent-reads-config-again      store.toml changed under a running agent (another CA):
#                                       refused at once; changed back: logins work
#   fleet-agent-store-down-fails-closed the host cut off with sessions open: denied within the
#                                       budget; the link back: the next login works
#   fleet-agent-down-falls-back-direct  the agent killed (socket left) or gone: the module
#                                       connects itself; the agent started again (as systemd
#                                       would: READY=1, WATCHDOG=1 seen) is used again
# shellcheck shell=bash

declare -A AGENT_PID=()
AGENT_ENV=() # more VAR=VALUE for the next agent_run
AGENT_TOML=store-agent.toml
[[ ${FLEET_TEST_AGENT:-} == 1 ]] && AGENT_TOML=store.toml

# with_agent SRC SOCKET: store.toml SRC naming the agent at SOCKET (any agent_socket of SRC
# replaced), on stdout.
with_agent() {
    grep -v '^agent_socket' "$1" | sed "/^budget_ms/a agent_socket = \"$2\""
}
# agent_run I TOML SOCKET: an agent in host I's namespace serving TOML (whose agent_socket is
# SOCKET); waits for the socket; its pid in AGENT_LAST.
agent_run() {
    local i=$1 toml=$2 sock=$3
    rm -f "$sock"
    ip netns exec "$(host_ns "$i")" env "${AGENT_ENV[@]}" "$REL/pam-totp-agent" --store "$toml" \
        --sessions 2 2>>"$BASE/h$i/agent.log" &
    AGENT_LAST=$!
    SINKS+=($!)
    for _ in $(seq 100); do [[ -S $sock ]] && return 0; sleep 0.05; done
    why "agent of h$i ($toml) did not start: $(tail -n 3 "$BASE/h$i/agent.log")"
    return 1
}
# agent_start I: host I's agent on $AGENT_TOML.
agent_start() {
    agent_run "$1" "$BASE/h$1/$AGENT_TOML" "$BASE/h$1/agent/agent.sock" || return 1
    AGENT_PID[$1]=$AGENT_LAST
}
agent_stop() {
    kill "${AGENT_PID[$1]}" 2>/dev/null
    wait "${AGENT_PID[$1]}" 2>/dev/null
}
# agent_setup: every host's store-agent.toml, service fleet-agent, and its agent.
agent_setup() {
    local i H
    [[ -x $REL/pam-totp-agent ]] || die "$REL/pam-totp-agent missing (cargo build --release --workspace)"
    for i in $(seq 1 "$N_HOSTS"); do
        H=$BASE/h$i
        mkdir -m 755 "$H/agent"
        (umask 077 && with_agent "$H/store.toml" "$H/agent/agent.sock" >"$H/store-agent.toml") ||
            die "store-agent.toml $i"
        [[ $AGENT_TOML == store.toml ]] && cp -p "$H/store-agent.toml" "$H/store.toml"
        service "$i" fleet-agent "store=$H/$AGENT_TOML store_lib=$STORE_LIB dir=$H/state policy=$H/policy.toml"
        agent_start "$i" || die "$(cat "$WHY")"
    done
}
# agent_backends I: the pids of host I's open pam_totp sessions on the server.
agent_backends() {
    sq <<<"SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '') FROM pg_stat_activity WHERE usename = '$(host_role "$1")' AND application_name = 'pam_totp'"
}

sc_fleet-agent-logins() {
    local hex c b1 b2
    hex=$(newkey 20)
    enrol ft-agent "$hex" || return 1
    c=$(c30 "$hex" "$STEP")
    expect_login 1 fleet-agent ft-agent "$c" ag-1 "PAM_SUCCESS|accepted step $STEP (offset *)" || return 1
    expect_login 2 fleet-agent ft-agent "$c" ag-2 "PAM_AUTH_ERR|replayed code (step $STEP, last accepted $STEP)" ||
        return 1
    # The module's own connection agrees (one store, whichever way a host reaches it).
    expect_login 3 fleet ft-agent "$c" ag-3 "PAM_AUTH_ERR|replayed code (step $STEP, last accepted $STEP)" ||
        return 1
    expect_login 2 fleet-agent ft-agent "$(c30 "$hex" $((STEP + 9)))" ag-wrong "PAM_AUTH_ERR|wrong code (failure 1)" ||
        return 1
    expect "audit host of ag-2" "$(sq <<<"SELECT host FROM pam_totp.audit WHERE user_name = 'ft-agent' AND rhost = 'ag-2'")" host-h2 ||
        return 1
    # Sessions kept: the same server backends answer three more logins of host 1.
    b1=$(agent_backends 1)
    [[ -n $b1 ]] || { why "no open session of host-h1's agent after a login"; return 1; }
    expect_login 1 fleet-agent ft-nobody 123456 ag-k1 "PAM_IGNORE|not enrolled, not required" || return 1
    expect_login 1 fleet-agent ft-nobody 123456 ag-k2 "PAM_IGNORE|not enrolled, not required" || return 1
    expect_login 1 fleet-agent ft-agent "$(c30 "$hex" $((STEP + 1)))" ag-k3 "PAM_SUCCESS|accepted step $((STEP + 1)) (offset *)" ||
        return 1
    b2=$(agent_backends 1)
    echo "    host-h1's agent: backends $b1 before, $b2 after 3 more logins"
    expect "host-h1's agent backends across 3 logins" "$b2" "$b1"
}

sc_fleet-agent-not-root-refused() {
    local d=$BASE/evil5 H=$BASE/h5 r pid
    expect "the agent's socket" "$(stat -c '%a %U' "$BASE/h1/agent/agent.sock")" "600 root" || return 1
    # (a) A socket directory another user owns: refused before the prompt, nothing tried.
    mkdir -m 755 "$BASE/nobodys" && chown nobody "$BASE/nobodys" || { why "mkdir"; return 1; }
    (umask 077 && with_agent "$H/store.toml" "$BASE/nobodys/agent.sock" >"$H/store-nobodys.toml") || return 1
    service 5 fleet-nobodys "store=$H/store-nobodys.toml store_lib=$STORE_LIB dir=$H/state policy=$H/policy.toml"
    login 5 fleet-nobodys ft-nobody 123456 ag-dir
    r=$(reason 5 ag-dir)
    echo "    (a) log: $r"
    store_down_ok ag-dir 5 "$BUDGET_MS" || return 1
    [[ $r == *"must be root's and writable by nobody else"* ]] || { why "(a) log line '$r'"; return 1; }
    # (b) Root's directory, but the listener there runs as nobody (bound as root, then
    # listening as nobody: its credentials are nobody's): denied, nothing sent to it.
    mkdir -m 755 "$d" || return 1
    (umask 077 && with_agent "$H/store.toml" "$d/agent.sock" >"$H/store-evil.toml") || return 1
    service 5 fleet-evil "store=$H/store-evil.toml store_lib=$STORE_LIB dir=$H/state policy=$H/policy.toml"
    : >"$d/got" && chown nobody "$d/got"
    in_ns "$(host_ns 5)" python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1] + "/agent.sock")
os.chmod(sys.argv[1] + "/agent.sock", 0o666)
os.setgid(65534)
os.setuid(65534)
s.listen(8)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    n = 0
    try:
        while True:
            b = c.recv(4096)
            if not b:
                break
            n += len(b)
    except OSError:
        pass
    with open(sys.argv[1] + "/got", "a") as f:
        f.write("%d\n" % n)
' "$d" &
    pid=$!
    for _ in $(seq 50); do [[ -S $d/agent.sock ]] && break; sleep 0.1; done
    login 5 fleet-evil ft-nobody 123456 ag-evil
    for _ in $(seq 50); do [[ -s $d/got ]] && break; sleep 0.1; done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    r=$(reason 5 ag-evil)
    echo "    (b) log: $r"
    store_down_ok ag-evil 5 "$BUDGET_MS" || return 1
    [[ $r == *"not root"* ]] || { why "(b) log line '$r' does not say the listener is not root"; return 1; }
    expect "bytes the impostor received" "$(cat "$d/got" 2>/dev/null)" 0
}

sc_fleet-agent-other-store-refused() {
    local H=$BASE/h8 r
    (umask 077 && with_agent "$H/store-load.toml" "$H/agent/agent.sock" >"$H/store-other.toml") ||
        return 1
    service 8 fleet-other "store=$H/store-other.toml store_lib=$STORE_LIB dir=$H/state policy=$H/policy.toml"
    login 8 fleet-other ft-nobody 123456 ag-other
    r=$(reason 8 ag-other)
    echo "    log: $r"
    store_down_ok ag-other 8 "$BUDGET_MS" || return 1
    [[ $r == *"the agent serves $H/$AGENT_TOML, not $H/store-other.toml"* ]] ||
        { why "log line '$r' does not name both files"; return 1; }
}

sc_fleet-agent-reads-config-again() {
    local H=$BASE/h7 r
    expect_login 7 fleet-agent ft-nobody 123456 agr-1 "PAM_IGNORE|not enrolled, not required" || return 1
    cp -p "$H/$AGENT_TOML" "$H/agent.toml.good"
    (umask 077 && sed "s|^ca = .*|ca = \"$PKI/otherca.crt\"|" "$H/agent.toml.good" >"$H/agent.toml.new") &&
        mv "$H/agent.toml.new" "$H/$AGENT_TOML" || return 1
    login 7 fleet-agent ft-nobody 123456 agr-2
    mv "$H/agent.toml.good" "$H/$AGENT_TOML"
    r=$(reason 7 agr-2)
    echo "    another CA pinned under the running agent: $(result agr-2): $r"
    store_down_ok agr-2 7 "$BUDGET_MS" || return 1
    grep -qiE 'tls|certificate' <<<"$r" || { why "log line '$r' does not name TLS or the certificate"; return 1; }
    expect_login 7 fleet-agent ft-nobody 123456 agr-3 "PAM_IGNORE|not enrolled, not required" || return 1
    grep -q "read again" "$H/agent.log" || { why "the agent did not log reading store.toml again"; return 1; }
}

sc_fleet-agent-store-down-fails-closed() {
    local rc=0
    expect_login 6 fleet-agent ft-nobody 123456 agc-1 "PAM_IGNORE|not enrolled, not required" || return 1
    [[ -n $(agent_backends 6) ]] || { why "no open session of host-h6's agent"; return 1; }
    # Packets vanish: the open session hears nothing back.
    ip -n "$NS_DB" link set "${LN}h6" down || { why "cutting h6"; return 1; }
    login 6 fleet-agent ft-nobody 123456 agc-2
    ip -n "$NS_DB" link set "${LN}h6" up
    echo "    h6 cut off, its agent's session open: $(result agc-2) after $(cat "$OUT/agc-2.ms") ms: $(reason 6 agc-2)"
    store_down_ok agc-2 6 "$BUDGET_MS" || rc=1
    reach_wait "$(host_ns 6)" "$DB_ADDR" "$PORT"
    expect_login 6 fleet-agent ft-nobody 123456 agc-3 "PAM_IGNORE|not enrolled, not required" || rc=1
    return $rc
}

sc_fleet-agent-down-falls-back-direct() {
    local sock=$BASE/h4/agent/agent.sock
    agent_stop 4
    [[ -S $sock ]] || { why "the killed agent's socket is gone (the scenario wants it stale)"; return 1; }
    expect_login 4 fleet-agent ft-nobody 123456 agd-1 "PAM_IGNORE|not enrolled, not required" || return 1
    rm -f "$sock"
    expect_login 4 fleet-agent ft-nobody 123456 agd-2 "PAM_IGNORE|not enrolled, not required" || return 1
    # (the direct logins' own sessions end as their processes exit: given 2 s to go)
    local k
    for k in $(seq 1 20); do
        [[ -z $(agent_backends 4) ]] && break
        sleep 0.1
    done
    [[ -z $(agent_backends 4) ]] || { why "host-h4 has open sessions with its agent stopped"; return 1; }
    # Started again as systemd would (Type=notify, WatchdogSec): READY=1, then WATCHDOG=1.
    local n=$BASE/h4/notify.sock
    python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[1] + ".log", "a", buffering=1) as f:
    while True:
        f.write(s.recv(256).decode() + "\n")
' "$n" &
    local npid=$!
    SINKS+=($npid)
    for _ in $(seq 50); do [[ -S $n ]] && break; sleep 0.1; done
    AGENT_ENV=(NOTIFY_SOCKET="$n" WATCHDOG_USEC=300000)
    agent_start 4 || return 1
    AGENT_ENV=()
    expect_login 4 fleet-agent ft-nobody 123456 agd-3 "PAM_IGNORE|not enrolled, not required" || return 1
    [[ -n $(agent_backends 4) ]] || { why "the restarted agent of h4 keeps no session"; return 1; }
    sleep 0.5
    kill "$npid" 2>/dev/null
    wait "$npid" 2>/dev/null
    echo "    notifications: $(sort "$n.log" | uniq -c | paste -sd' ')"
    expect "first notification" "$(head -n 1 "$n.log")" READY=1 || return 1
    (($(grep -c '^WATCHDOG=1$' "$n.log") >= 2)) || { why "fewer than 2 WATCHDOG=1 in 0.5 s+"; return 1; }
}
