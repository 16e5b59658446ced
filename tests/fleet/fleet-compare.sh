# tests/fleet/fleet-compare.sh — fleet-same-results-as-file-mode (sourced by
# fleet-scenarios.sh): one scripted sequence of logins of one user, with the same secret and
# recovery codes, run through the module in file mode (a record file per SPEC §2.1 in h1's
# state dir, throttle from the policy file) and in fleet mode (h2, throttle from
# pam_totp.set_settings), each answer first in one mode then in the other within the same 30 s
# step: the same PAM results and the same logged reasons. Only the time in "locked until T"
# may differ (file mode takes the host's clock, fleet mode the database's, read a moment
# later): such times are compared within 2 s and then normalised to <T>. Then the in-database
# TOTP against the Rust one (lib.sh).
#
# A recovery code used again after it was burned is "wrong code (failure N)" in both modes:
# since migration 002 the store calls it a replay only when it was burned after this login's
# prompt was shown (check's shown_at: a concurrent login) and within
# settings.recovery_replay_seconds. The comparison runs with recovery_replay_seconds = 0
# ("never"; before 002 a reuse within the same second was still a replay, hence the PAUSE).
# shellcheck shell=bash

sc_fleet-same-results-as-file-mode() {
    local rc
    settings 3 60 3600 0 || { why "set_settings"; return 1; }
    same_results
    rc=$?
    settings 5 60 3600 300 || { why "set_settings back"; return 1; }
    ((rc == 0)) || return 1
    fleet_totp_equals_rust "${FLEET_TOTP_CASES:-10000}"
}

# cmp_norm TEXT: TEXT with every RFC 3339 time replaced by <T>
cmp_norm() { sed -E 's/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z/<T>/g' <<<"$1"; }
cmp_time() { grep -oE '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z' <<<"$1" | head -n 1; }

same_results() {
    local hex rc1 rc2 rc3 s wrong k a f g tf tg d maxd=0 record=$BASE/h1/state/users/ft-cmp.toml
    hex=$(newkey 20)
    rc1=$(recovery_code)
    rc2=$(recovery_code)
    rc3=$(recovery_code)
    SECRETS+=("$hex")
    RCODES+=("$rc1" "$rc2" "$rc3")
    local hashes=("$(recovery_hash "$rc1")" "$(recovery_hash "$rc2")" "$(recovery_hash "$rc3")")
    # File mode: the record (SPEC §2.1), active, no state yet.
    (umask 077 && cat >"$record" <<EOF) || { why "record file"; return 1; }
version = 1
user = "ft-cmp"
state = "active"
secret = "$(b32_of "$hex")"
algorithm = "SHA1"
digits = 6
period = 30
issuer = "fleet-test"
created = $(date -u +%Y-%m-%dT%H:%M:%SZ)
recovery = [$(printf '"%s", ' "${hashes[@]}" | sed 's/, $//')]
EOF
    # Fleet mode: the same secret and the same recovery entries.
    adm -v h="\\x$hex" -v rc="{$(IFS=,; echo "${hashes[*]}")}" >/dev/null <<'EOF' ||
SELECT pam_totp.enrol('ft-cmp', :'h'::bytea, 'SHA1', 6, 30, 'fleet-test', :'rc'::text[], false);
EOF
        { why "enrol ft-cmp"; return 1; }
    # The whole sequence within one step (about 15 × 2 logins, ~6 s; 25 s left at the start).
    fresh_step 30 25
    s=$(cur_step 30)
    expect "activate ft-cmp" "$(adm <<<"SELECT outcome FROM pam_totp.activate('ft-cmp', '$(c30 "$hex" $((s - 1)))', 2)")" \
        activated || return 1
    wrong=$(c30 "$hex" $((s + 5)))
    # The answers ("UNLOCK": the admin unlocks, in each mode its way) and what file mode must say.
    local answers=(
        "$(c30 "$hex" "$s")" "$(c30 "$hex" "$s")" "" "$wrong" hello "$wrong"
        "$(c30 "$hex" $((s + 1)))" UNLOCK " $(c30 "$hex" $((s + 1))) " "$rc1" PAUSE "$rc1"
        "$(tr a-z A-Z <<<"${rc2//-/}")" "$(c30 "$hex" $((s - 1)))" "$(printf '1%.0s' $(seq 1 200))" "   "
    )
    local wants=(
        "PAM_SUCCESS|accepted step $s (offset 0)"
        "PAM_AUTH_ERR|replayed code (step $s, last accepted $s)"
        "PAM_AUTH_ERR|empty code (not counted)"
        "PAM_AUTH_ERR|wrong code (failure 1)"
        "PAM_AUTH_ERR|wrong code (failure 2)"
        "PAM_AUTH_ERR|wrong code (failure 3); locked until <T>"
        "PAM_AUTH_ERR|locked until <T>"
        -
        "PAM_SUCCESS|accepted step $((s + 1)) (offset 1)"
        "PAM_SUCCESS|accepted recovery code (2 left)"
        -
        "PAM_AUTH_ERR|wrong code (failure 1)"
        "PAM_SUCCESS|accepted recovery code (1 left)"
        "PAM_AUTH_ERR|replayed code (step $((s - 1)), last accepted $((s + 1)))"
        "PAM_AUTH_ERR|wrong code (failure 1)"
        "PAM_AUTH_ERR|empty code (not counted)"
    )
    for k in "${!answers[@]}"; do
        a=${answers[k]}
        if [[ $a == PAUSE ]]; then
            sleep 1.1
            continue
        elif [[ $a == UNLOCK ]]; then
            "$REL/pam-totp" --dir "$BASE/h1/state" --policy "$CMP_POLICY" unlock ft-cmp >/dev/null ||
                { why "pam-totp unlock (file mode)"; return 1; }
            adm <<<"SELECT pam_totp.unlock('ft-cmp', false)" >/dev/null || { why "pam_totp.unlock"; return 1; }
            continue
        fi
        login 1 file-cmp ft-cmp "$a" "cmp-file-$k"
        login 2 fleet-cmp ft-cmp "$a" "cmp-fleet-$k"
        f=$(outcome 1 "cmp-file-$k")
        g=$(outcome 2 "cmp-fleet-$k")
        tf=$(cmp_time "$f")
        tg=$(cmp_time "$g")
        if [[ -n $tf && -n $tg ]]; then
            d=$(($(date -d "$tg" +%s) - $(date -d "$tf" +%s)))
            ((${d#-} <= 2)) || { why "answer $k: lock ends $tf (file) vs $tg (fleet)"; return 1; }
            ((${d#-} > maxd)) && maxd=${d#-}
        fi
        [[ $(cmp_norm "$f") == "${wants[k]}" ]] || { why "answer $k, file mode: got '$f', want '${wants[k]}'"; return 1; }
        [[ $(cmp_norm "$g") == "$(cmp_norm "$f")" ]] ||
            { why "answer $k ('$a'): file mode '$f', fleet mode '$g'"; return 1; }
    done
    expect "the step (the sequence must run within one)" "$(cur_step 30)" "$s" || return 1
    echo "    $((${#answers[@]} - 2)) answers × 2 modes: same results and reasons; the 'locked until' times differ by ≤ $maxd s (normalised)"
}
