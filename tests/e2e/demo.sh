#!/usr/bin/env bash
# tests/e2e/demo.sh — `make demo`: pam-totp in a throwaway container, one command.
#
#   tests/e2e/demo.sh             interactive: enrol the user `demo` on this terminal (scan
#                                 the QR code with a phone), then try the printed ssh command;
#                                 Ctrl-C ends the demo and removes the container
#   DEMO=auto tests/e2e/demo.sh   the whole story unattended and narrated (enrol, log in with
#                                 a code, replay refused, recovery code, lockout, unlock, and
#                                 a user turning it on and off for himself); exit
#                                 status 0 when every step behaved as expected
#   DEMO=fleet                    fleet mode (tests/fleet/demo-fleet.sh): a PostgreSQL store
#                                 and two hosts; a code accepted on one host is refused on
#                                 the other
# Needs root (Linux namespaces, sshd). Installs missing Debian packages (tests/deps.sh) and
# builds the module and the CLI when they are missing. Env: PAM_TOTP_SO, PAM_TOTP_CLI (built
# files to use), DEMO_PAUSE (seconds between the steps of DEMO=auto, default 0.8).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

if [[ $(id -u) != 0 ]]; then
    echo "demo: run as root (e.g. sudo make demo): it builds Linux namespaces and runs sshd" >&2
    exit 1
fi

need_deps=
for tool in /usr/sbin/sshd ssh oathtool nsenter unshare script openssl ip; do
    command -v "$tool" >/dev/null 2>&1 || need_deps=1
done
python3 -c 'import pexpect' 2>/dev/null || need_deps=1
if [[ -n "$need_deps" ]]; then
    echo "demo: installing missing packages (tests/deps.sh)"
    bash "$repo/tests/deps.sh"
fi

target=${CARGO_TARGET_DIR:-$repo/target}
export PAM_TOTP_SO=${PAM_TOTP_SO:-$target/release/libpam_totp.so}
export PAM_TOTP_CLI=${PAM_TOTP_CLI:-$target/release/pam-totp}
export PAM_TOTP_SELF=${PAM_TOTP_SELF:-$target/release/pam-totp-self}
if [[ ! -f "$PAM_TOTP_SO" || ! -f "$PAM_TOTP_CLI" || ! -f "$PAM_TOTP_SELF" ]]; then
    echo "demo: building the module and the CLI (cargo build --release --workspace)"
    (cd "$repo" && cargo build --release --workspace)
fi

case "${DEMO:-}" in
auto) exec python3 "$here/demo.py" --auto ;;
fleet) exec bash "$repo/tests/fleet/demo-fleet.sh" ;;
"" | interactive) exec python3 "$here/demo.py" ;;
*)
    echo "demo: DEMO must be 'auto', 'fleet' or empty, not '$DEMO'" >&2
    exit 2
    ;;
esac
