#!/usr/bin/env bash
# tests/deps.sh — install what `make test` needs on Debian (idempotent).
#
# As root: installs every missing Debian package below with apt-get; when all are
# already installed it does not touch apt at all, so repeated runs are quick.
# Not root: only reports what is missing (the PAM-level tests skip without root).
# Also makes sure the rustfmt and clippy components are present.
set -euo pipefail

packages=(
    gcc g++ make util-linux iproute2
    libpam0g-dev libpam-modules
    oathtool pamtester zbar-tools
    openssh-server openssh-client sudo putty-tools python3-paramiko dovecot-imapd
    expect python3-pexpect
    libpam-google-authenticator libpam-oath
    imagemagick librsvg2-bin
    cockpit-ws cockpit-bridge cockpit-system chromium chromium-driver
    valgrind openssl debootstrap lintian dpkg-dev binutils man-db groff-base
    # tests/fleet/sql-test.sh: initdb/pg_ctl/postgres and pgcrypto (Debian 12 ships pgcrypto
    # in postgresql-15 itself), psql/pg_dump. The package's own "main" cluster is left alone
    # (policy-rc.d below keeps it from starting during the install); the test runs its own.
    postgresql-15 postgresql-client-15
    # tests/fleet/net-test.sh: ip netns/bridge/veth and ss (iproute2, above), timeout
    # (coreutils), pgrep (procps)
    coreutils procps
    # tests/fleet/fleet-test.sh FLEET_FAULTS: host clocks ±5 min (libfaketime in the harness),
    # certificates dated a day back; pg_basebackup is in postgresql-15
    faketime
    # bench/fleet.sh BENCH_FLEET_POOLER=pgbouncer, fleet-test.sh FLEET_TEST_POOLER=pgbouncer
    # (the package's own service is kept from starting by policy-rc.d, as above; the bench and
    # the test run their own in a namespace)
    pgbouncer
)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
    [[ "$status" == ii* ]] || missing+=("$p")
done

if ((${#missing[@]})); then
    if [[ $(id -u) == 0 ]]; then
        echo "deps.sh: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get -o DPkg::Lock::Timeout=600 update
        # Servers the tests start themselves (sshd, dovecot, cockpit-ws) must not be started
        # on the host by their packages' install scripts: policy-rc.d says no while apt runs.
        own_policy=
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            own_policy=1
        fi
        status=0
        apt-get -o DPkg::Lock::Timeout=600 install -y "${missing[@]}" || status=$?
        [[ -z "$own_policy" ]] || rm -f /usr/sbin/policy-rc.d
        ((status == 0)) || exit "$status"
    else
        echo "deps.sh: missing Debian packages (run as root to install): ${missing[*]}" >&2
    fi
fi

# cargo-fuzz for `make fuzz-quick` (fuzz/run.sh); from crates.io, built once per machine.
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "deps.sh: cargo install cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

for c in rustfmt clippy; do
    if command -v rustup >/dev/null 2>&1; then
        if ! rustup component list --installed 2>/dev/null | grep -q "^$c"; then
            echo "deps.sh: rustup component add $c"
            rustup component add "$c"
        fi
    elif ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
        echo "deps.sh: cargo ${c/rustfmt/fmt} is missing and there is no rustup to add it" >&2
        exit 1
    fi
done
