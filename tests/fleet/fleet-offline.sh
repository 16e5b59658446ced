# tests/fleet/fleet-offline.sh — the offline half of fleet mode (SPEC §11 `[offline]`), sourced
# by fleet-test.sh after fleet-scenarios.sh (uses their login/outcome/expect_login/enrol helpers):
#   fleet-offline-local-breakglass   the store down: a break-glass user (store.toml
#                                    `[offline] mode = "local"`, users = ["ft-bg"]) logs in from
#                                    the local record that `pam-totp --store … enroll
#                                    --local-record` wrote; a user not listed gets
#                                    PAM_AUTHINFO_UNAVAIL without a prompt; the same code again on
#                                    that host is refused.
#   fleet-offline-report-back        the store back: the user's next login on that host reports
#                                    first (report_offline): the offline step is refused on every
#                                    other host, the recovery code burned offline fleet-wide, the
#                                    users/ft-bg.offline file is gone.
#   fleet-compromised-host-bounded   a host's certificate used directly with psql: wrong codes
#                                    lock the user fleet-wide after the configured attempts; a
#                                    far-future report_offline is clamped to the next step; the
#                                    audit names the host.
# The admin's CLI runs over TLS from the admin namespace (admin.toml: role fleet_admin, its
# client certificate) for enroll --local-record, activate, status and unlock.
# shellcheck shell=bash

# cli_adm ARGS...: the pam-totp CLI as the admin, over TLS from the admin namespace.
cli_adm() { in_ns "$NS_ADM" timeout 60 "$REL/pam-totp" --store "$BASE/admin.toml" "$@"; }
# json_field KEY: KEY of the JSON document on stdin
json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin).get(sys.argv[1]))' "$1"; }

# offline_setup: admin.toml, and on every host store-bg.toml ([offline] local for ft-bg) with
# a PAM service fleet-bg using it. Once.
OFFLINE_READY=
offline_setup() {
    local i H
    [[ -z $OFFLINE_READY ]] || return 0
    (umask 077 && cat >"$BASE/admin.toml" <<EOF) || { why "admin.toml"; return 1; }
backend = "postgresql"
addresses = ["$DB_ADDR:$PORT"]
database = "$DB"
role = "fleet_admin"
ca = "$PKI/ca.crt"
cert = "$PKI/admin.crt"
key = "$PKI/admin.key"
connect_timeout_ms = 5000
budget_ms = 20000
EOF
    for i in $(seq 1 "$N_HOSTS"); do
        H=$BASE/h$i
        (umask 077 && store_toml "$i" |
            sed 's/^mode = "deny"$/mode = "local"\nusers = ["ft-bg"]/' >"$H/store-bg.toml") ||
            { why "store-bg.toml $i"; return 1; }
        service "$i" fleet-bg "store=$H/store-bg.toml store_lib=$STORE_LIB dir=$H/state policy=$H/policy.toml"
    done
    OFFLINE_READY=1
}

BG_HEX=
BG_RC=()
BG_STEP=
sc_fleet-offline-local-breakglass() {
    local json s c
    offline_setup || return 1
    # The whole offline sequence and the report-back within about one step.
    fresh_step 30 25
    json=$(cli_adm --dir "$BASE/h1/state" enroll ft-bg --local-record --issuer fleet-test --json) ||
        { why "enroll --local-record: $json"; return 1; }
    BG_HEX=$(json_field secret <<<"$json" | python3 -c 'import base64, sys; s = sys.stdin.read().strip(); print(base64.b32decode(s + "=" * (-len(s) % 8)).hex())')
    mapfile -t BG_RC < <(python3 -c 'import json, sys; print("\n".join(json.load(sys.stdin)["recovery_codes"]))' <<<"$json")
    SECRETS+=("$BG_HEX")
    RCODES+=("${BG_RC[@]}")
    ((${#BG_RC[@]} == 10)) || { why "recovery codes: ${#BG_RC[@]}"; return 1; }
    grep -qx 'state = "active"' "$BASE/h1/state/users/ft-bg.toml" ||
        { why "no active local record in h1's state"; return 1; }
    [[ $(stat -c '%U %a' "$BASE/h1/state/users/ft-bg.toml") == "root 600" ]] ||
        { why "local record: $(stat -c '%U %a' "$BASE/h1/state/users/ft-bg.toml")"; return 1; }
    s=$(cur_step 30)
    cli_adm activate ft-bg "$(c30 "$BG_HEX" $((s - 1)))" >/dev/null || { why "activate (CLI)"; return 1; }
    # The record file copied to h2 as the documentation says (h2 logs in offline below too).
    install -o root -g root -m 600 "$BASE/h1/state/users/ft-bg.toml" "$BASE/h2/state/users/ft-bg.toml"
    fleet_pg_stop fast || { why "pg_ctl stop"; return 1; }
    breakglass_offline "$s"
    local rc=$?
    fleet_pg_start in_ns "$NS_DB" || { why "pg_ctl start"; return 1; }
    return $rc
}
breakglass_offline() {
    local s=$1 c
    c=$(c30 "$BG_HEX" "$s")
    BG_STEP=$s
    expect_login 1 fleet-bg ft-bg "$c" bg-1 \
        "PAM_SUCCESS|fleet store unreachable (*); break-glass user, from the local record: accepted step $s (offset *)" ||
        return 1
    # A user not listed: no prompt, unavailable.
    login 1 fleet-bg ft-nobody 123456 bg-nobody
    store_down_ok bg-nobody 1 "$BUDGET_MS" || return 1
    # The same code again on that host: refused (per-host replay protection).
    expect_login 1 fleet-bg ft-bg "$c" bg-1-again \
        "PAM_AUTH_ERR|fleet store unreachable (*); break-glass user, from the local record: replayed code (step $s, last accepted $s)" ||
        return 1
    expect_login 1 fleet-bg ft-bg "${BG_RC[0]}" bg-1-rc \
        "PAM_SUCCESS|fleet store unreachable (*); break-glass user, from the local record: accepted recovery code (9 left)" ||
        return 1
    # Only per host: h2's copy of the record knows nothing of h1's logins (documented as weaker).
    expect_login 2 fleet-bg ft-bg "$c" bg-2 \
        "PAM_SUCCESS|fleet store unreachable (*); break-glass user, from the local record: accepted step $s (offset *)" ||
        return 1
    local f=$BASE/h1/state/users/ft-bg.offline
    [[ -f $f && $(stat -c '%U %a' "$f") == "root 600" ]] || { why "$f: missing or not root 0600"; return 1; }
    expect "h1's report: last_step, burned entries" \
        "$(grep -c "^last_step = $s\$" "$f"),$(grep -c '^  "sha256:' "$f")" "1,1"
}

sc_fleet-offline-report-back() {
    local s=$BG_STEP n i f st
    [[ -n $s ]] || { why "needs fleet-offline-local-breakglass first"; return 1; }
    n=$(($(cur_step 30) + 1))
    # h1's next login reaches the store: the report goes first, then the code is judged.
    expect_login 1 fleet-bg ft-bg "$(c30 "$BG_HEX" "$n")" bg-back \
        "PAM_SUCCESS|offline logins reported: step $s (store's last step $s), 1 of 1 recovery codes burned; accepted step $n (offset *)" ||
        return 1
    [[ ! -e $BASE/h1/state/users/ft-bg.offline ]] || { why "h1's ft-bg.offline is still there"; return 1; }
    # h2 reports too (its own offline login of step s), and logs in with a recovery code.
    expect_login 2 fleet-bg ft-bg "${BG_RC[1]}" bg-back-2 \
        "PAM_SUCCESS|offline logins reported: step $s (store's last step $n), 0 of 0 recovery codes burned; accepted recovery code (8 left)" ||
        return 1
    st=$(cli_adm status ft-bg --json) || { why "status (CLI): $st"; return 1; }
    (($(json_field last_step <<<"$st") >= s)) || { why "store's last_step: $st"; return 1; }
    # The offline code is a replay on every other host.
    for i in $(seq 3 "$N_HOSTS"); do
        expect_login "$i" fleet ft-bg "$(c30 "$BG_HEX" "$s")" "bg-rep-$i" \
            "PAM_AUTH_ERR|replayed code (step $s, last accepted $n)" || return 1
    done
    # The recovery code burned offline: refused fleet-wide (a wrong code once the prompt was
    # shown after the burn).
    sleep 1.1
    expect_login 3 fleet ft-bg "${BG_RC[0]}" bg-rc-3 "PAM_AUTH_ERR|wrong code (failure 1)" || return 1
    expect_login 4 fleet-bg ft-bg "${BG_RC[0]}" bg-rc-4 "PAM_AUTH_ERR|wrong code (failure 2)" || return 1
    expect "audit of the reports" "$(sq <<<"SELECT string_agg(host || ': ' || reason, ' / ' ORDER BY id) FROM pam_totp.audit WHERE user_name = 'ft-bg' AND outcome = 'offline_report'")" \
        "host-h1: offline logins reported: step $s, 1 recovery codes burned; last step $s / host-h2: offline logins reported: step $s, 0 recovery codes burned; last step $n" ||
        return 1
    f=$(cli_adm unlock ft-bg) || { why "unlock (CLI): $f"; return 1; }
}

sc_fleet-compromised-host-bounded() {
    settings 3 60 3600 NULL || { why "set_settings"; return 1; }
    compromised_host
    local rc=$?
    settings 5 60 3600 300 || { why "set_settings back"; return 1; }
    return $rc
}
compromised_host() {
    local hex wrong k r cur st
    offline_setup || return 1
    hex=$(newkey 20)
    enrol ft-evil "$hex" || return 1
    wrong=$(c30 "$hex" $((STEP + 5)))
    # host-h4's certificate, straight to the database: each wrong code is counted (committed
    # before the outcome can be read).
    for k in 1 2 3; do
        r=$(host_psql 4 -v a="$wrong" 2>&1 <<'EOF'
SELECT pam_totp.check('ft-evil', :'a', 'psql-direct', 1, 0) AS t \gset
SELECT outcome, failures FROM pam_totp.outcome(:'t');
EOF
        )
        expect "direct check $k" "$r" "wrong|$k" || return 1
    done
    # Locked everywhere: the right code on another host is not even checked.
    expect_login 5 fleet ft-evil "$(c30 "$hex" "$STEP")" evil-5 "PAM_AUTH_ERR|locked until *" || return 1
    st=$(cli_adm status ft-evil --json) || { why "status (CLI): $st"; return 1; }
    expect "status (CLI) after the direct checks" "$(json_field state <<<"$st"),$(json_field failures <<<"$st")" "locked,3" ||
        return 1
    # A report of a far-future step: clamped to the next step.
    r=$(host_psql 4 <<<"SELECT applied_step FROM pam_totp.report_offline('ft-evil', 99999999999, NULL)")
    cur=$(cur_step 30)
    ((r <= cur + 1)) || { why "report_offline applied step $r, current step $cur"; return 1; }
    expect "audit rows of host-h4" "$(sq <<<"SELECT string_agg(outcome, ' ' ORDER BY id) FROM pam_totp.audit WHERE user_name = 'ft-evil' AND host = 'host-h4'")" \
        "wrong wrong wrong offline_report" || return 1
    expect "the clamp, audited" "$(sq <<<"SELECT count(*) FROM pam_totp.audit WHERE user_name = 'ft-evil' AND host = 'host-h4' AND reason LIKE '%(clamped from 99999999999)%'")" 1 ||
        return 1
    # The admin, with the CLI over TLS: unlock, and status shows it.
    r=$(cli_adm unlock ft-evil) || { why "unlock (CLI): $r"; return 1; }
    st=$(cli_adm status ft-evil --json) || { why "status (CLI): $st"; return 1; }
    expect "status (CLI) after unlock" "$(json_field state <<<"$st"),$(json_field failures <<<"$st")" "active,0" ||
        return 1
    (($(json_field last_step <<<"$st") <= cur + 1)) || { why "last_step after unlock: $st"; return 1; }
}
