#!/usr/bin/env bash
# tests/torture/run.sh — `make torture`: crash safety (kill -9), full disk, login storms,
# parallel logins, bad input at the prompt, valgrind. Needs root.
#
# Output: one line per check, `PASS name` / `FAIL name: why` (plus INFO/SKIP lines), and the
# last line exactly `N passed, M failed`. Exit status non-zero when a check failed.
#
# Environment:
#   TORTURE_QUICK=1   the quick variant for `make test` (under a minute): 50 crash iterations,
#                     10 storm rounds, fewer valgrind cases
#   PAM_TOTP_SO       the module (default target/release/libpam_totp.so)
#   PAM_TOTP_CLI      the CLI for its crash checks (default target/release/pam-totp; skipped
#                     when missing)
#   TORTURE_ONLY="crash points durability cli fulldisk storm parallel badinput memory"
#   TORTURE_SEED=N    repeat a run's random choices
#   TORTURE_DIR       where the work directory goes (default /var/tmp: the real disk)
#   TORTURE_KEEP=1    keep the work directory (it is always kept when a check failed)
# Everything runs in tests/lib/sandbox.sh (private mount namespace, private /dev/log drained
# by logsink.py); the full-disk checks mount their small tmpfs there. Nothing on the host
# (/etc, /dev) is modified.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

if [[ $(id -u) != 0 ]]; then
    echo "tests/torture/run.sh: must run as root (module files must be root-owned)" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
so=${PAM_TOTP_SO:-$root/target/release/libpam_totp.so}
cli=${PAM_TOTP_CLI:-$root/target/release/pam-totp}
[[ -f "$so" ]] || {
    echo "tests/torture/run.sh: $so not found; run cargo build --release first" >&2
    echo "0 passed, 1 failed"
    exit 1
}
for tool in gcc python3 cargo; do
    command -v "$tool" >/dev/null || {
        echo "tests/torture/run.sh: $tool is missing (tests/deps.sh)" >&2
        echo "0 passed, 1 failed"
        exit 1
    }
done

work=$(mktemp -d "${TORTURE_DIR:-/var/tmp}/pam-totp-torture.XXXXXX")
chmod 0755 "$work"
mkdir -m 0755 "$work/bin"
sink_pid=
status=1
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
    if [[ -n "$sink_pid" ]]; then
        kill "$sink_pid" 2>/dev/null || true
        wait "$sink_pid" 2>/dev/null || true
    fi
    if [[ "$status" == 0 && "${TORTURE_KEEP:-}" != 1 ]]; then
        rm -rf "$work"
    else
        echo "torture: kept $work (syslog in $work/syslog.txt)" >&2
    fi
}
trap cleanup EXIT

setup_failed() {
    echo "torture: setup failed: $*" >&2
    echo "0 passed, 1 failed"
    exit 1
}
cc() { gcc -O2 -Wall -Wextra -Werror -o "$work/bin/$1" "$2" "${@:3}" || setup_failed "gcc $2"; }
cc harness "$root/tests/pam-harness/harness.c" -lpam
cc crashkill "$here/crashkill.c"
cc storm "$here/storm.c"
# The checker reads the state dir with the module's own store code. It shares the
# workspace's target dir, so it mostly reuses compiled dependencies.
check_target=${CARGO_TARGET_DIR:-$root/target}
CARGO_TARGET_DIR=$check_target cargo build --quiet --release \
    --manifest-path "$here/check/Cargo.toml" || setup_failed "cargo build of tests/torture/check"
cp "$check_target/release/torture-check" "$work/bin/torture-check"
# A build of the module with the test-only option fault=panic (feature fault-injection), in its
# own target dir so that it never replaces the real module: the memory group proves that a
# panic inside the real .so is caught (PAM_SERVICE_ERR, valgrind clean).
fault_target=$check_target/fault-injection
CARGO_TARGET_DIR=$fault_target cargo build --quiet --release --manifest-path "$root/Cargo.toml" \
    -p pam_totp --features fault-injection || setup_failed "cargo build of the fault-injection module"
mkdir -m 0755 "$work/bin/fault"  # same file name: syslog tags lines with it, pam_totp(...)
cp "$fault_target/release/libpam_totp.so" "$work/bin/fault/pam_totp.so"

python3 "$here/logsink.py" "$work/log.sock" "$work/syslog.txt" &
sink_pid=$!
for _ in $(seq 200); do [[ -S "$work/log.sock" ]] && break; sleep 0.05; done
[[ -S "$work/log.sock" ]] || setup_failed "the log sink did not start"

set +e
env TORTURE_WORK="$work" TORTURE_SO="$(readlink -f "$so")" \
    TORTURE_HARNESS="$work/bin/harness" TORTURE_CRASHKILL="$work/bin/crashkill" \
    TORTURE_STORM="$work/bin/storm" TORTURE_CHECK="$work/bin/torture-check" \
    TORTURE_FAULT_SO="$work/bin/fault/pam_totp.so" \
    TORTURE_CLI="$([[ -x "$cli" ]] && readlink -f "$cli")" \
    TORTURE_SUPP="$here/valgrind.supp" TORTURE_LOG="$work/syslog.txt" \
    SYSLOG_SOCKET="$work/log.sock" \
    bash "$root/tests/lib/sandbox.sh" python3 -u "$here/torture.py" | tee "$work/output.txt"
status=${PIPESTATUS[0]}
set -e
if ! tail -n 1 "$work/output.txt" | grep -qE '^[0-9]+ passed, [0-9]+ failed$'; then
    # The driver or the sandbox died before its summary: that is a failure too.
    echo "FAIL torture.completed: the driver ended without its summary (exit status $status)"
    echo "0 passed, 1 failed"
    status=1
fi
exit "$status"
