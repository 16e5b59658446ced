#!/usr/bin/env bash
# tests/package/test-package.sh [DEB] — the Debian package test (`make test-package`).
#
# 1. On the host: builds the .deb with packaging/build-deb.sh unless DEB is given, checks its
#    contents and metadata, and runs lintian (no errors, no unoverridden warnings).
# 2. In a container: a throwaway copy (overlayfs, or cp -a where overlayfs is unavailable) of
#    a minimal Debian bookworm root filesystem made by `debootstrap --variant=minbase` and
#    cached under $PAM_TOTP_TEST_CACHE (default /var/cache/pam-totp-test) — keyed by the
#    recipe below, built in a temp dir and renamed into place, so an interrupted build never
#    leaves a half-made cache. The container is a chroot in private mount, PID, network, UTS
#    and IPC namespaces: its own /proc, a minimal /dev (null, zero, full, random, urandom,
#    tty, a new devpts instance), tmpfs /run and /tmp, and no network but loopback. Everything
#    it needs (openssh, expect, oathtool, man-db...) is in the cached rootfs; the .deb is
#    installed with apt offline. tests/package/inside.sh runs the checks there: install,
#    pam-auth-update, enrolment with the installed CLI, ssh logins with password + code,
#    remove / reinstall / purge, man pages, bash completion.
#
# Prints "PASS name" / "FAIL name" per check and ends with "N passed, M failed"; exits 1 if
# anything failed. Needs root (skips with exit 0 otherwise). Nothing on the host outside the
# cache directory and a temp dir is created or changed; the host's /etc is never touched.
#
# Environment:
#   PAM_TOTP_TEST_CACHE   cache directory (default /var/cache/pam-totp-test)
#   PAM_TOTP_TEST_MIRROR  Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   PAM_TOTP_KEEP_TMP=1   keep the run directory (logs, overlay upper dir); always kept on failure
#   PAM_TOTP_TEST_REBUILD_ROOTFS=1  rebuild the cached rootfs
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
self=$here/$(basename "${BASH_SOURCE[0]}")

suite=bookworm
mirror=${PAM_TOTP_TEST_MIRROR:-http://deb.debian.org/debian}
cache=${PAM_TOTP_TEST_CACHE:-/var/cache/pam-totp-test}
# What the container needs beyond minbase. Changing this list, the suite or
# ROOTFS_RECIPE makes a new cache key (the old rootfs is deleted then).
rootfs_packages=openssh-server,openssh-client,expect,oathtool,man-db,bash-completion,busybox
ROOTFS_RECIPE=1

# ---- stage 2: inside the new namespaces (see run_container) ------------------------------
if [[ "${1:-}" == __in_namespaces ]]; then
    set -e
    rootfs=$2 run=$3
    merged=$run/merged
    mkdir -p "$merged" "$run/upper" "$run/ovl-work"
    if ! mount -n -t overlay pkgtest-root \
        -o "lowerdir=$rootfs,upperdir=$run/upper,workdir=$run/ovl-work" "$merged" 2>/dev/null; then
        echo "test-package.sh: overlayfs unavailable, copying the rootfs" >&2
        cp -a "$rootfs/." "$merged/"
    fi
    mount -n -t proc -o nosuid,nodev,noexec proc "$merged/proc"
    mount -n -t tmpfs -o mode=0755,nosuid,size=1m pkgtest-dev "$merged/dev"
    for node in null zero full random urandom tty; do
        : >"$merged/dev/$node"
        mount -n --bind "/dev/$node" "$merged/dev/$node"
    done
    mkdir -m 0755 "$merged/dev/pts" "$merged/dev/shm"
    mount -n -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$merged/dev/pts"
    ln -s pts/ptmx "$merged/dev/ptmx"
    mount -n -t tmpfs -o mode=1777,nosuid,nodev,size=64m pkgtest-shm "$merged/dev/shm"
    ln -s /proc/self/fd "$merged/dev/fd"
    ln -s /proc/self/fd/0 "$merged/dev/stdin"
    ln -s /proc/self/fd/1 "$merged/dev/stdout"
    ln -s /proc/self/fd/2 "$merged/dev/stderr"
    mount -n -t tmpfs -o mode=0755,nosuid,nodev,size=64m pkgtest-run "$merged/run"
    mount -n -t tmpfs -o mode=1777,nosuid,nodev,size=256m pkgtest-tmp "$merged/tmp"
    mkdir -p "$merged/pkgtest" "$merged/pkgtest-out"
    mount -n --bind "$run/in" "$merged/pkgtest"
    mount -n -o remount,bind,ro "$merged/pkgtest"
    mount -n --bind "$run/out" "$merged/pkgtest-out"
    hostname pkgtest
    ip link set lo up
    exec chroot "$merged" /usr/bin/env -i TERM=dumb HOME=/root \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin /bin/bash /pkgtest/inside.sh
fi

# ---- stage 1: on the host ----------------------------------------------------------------
if [[ $(id -u) != 0 ]]; then
    echo "test-package.sh: SKIP: needs root (debootstrap, namespaces, chroot)"
    exit 0
fi
for tool in debootstrap lintian dpkg-deb dpkg-architecture unshare chroot ip flock timeout; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "test-package.sh: missing $tool: run tests/deps.sh (as root)" >&2
        echo "FAIL host-tools"
        echo "0 passed, 1 failed"
        exit 1
    fi
done

passed=0
failed=0
pass() {
    echo "PASS $1"
    passed=$((passed + 1))
}
fail() {
    echo "FAIL $1"
    failed=$((failed + 1))
    [[ -z "${2:-}" || ! -s "$2" ]] || sed 's/^/    | /' "$2" | tail -n 60
}
finish() {
    echo "$passed passed, $failed failed"
    if ((failed)) || [[ "${PAM_TOTP_KEEP_TMP:-}" == 1 ]]; then
        echo "test-package.sh: logs kept in $run" >&2
    else
        rm -rf "$run"
    fi
    exit $((failed > 0))
}
elapsed() { echo "$((SECONDS - $1))s"; }

run=$(mktemp -d /tmp/pam-totp-pkgtest.XXXXXX)
chmod 0755 "$run"
mkdir -p "$run/in" "$run/out" "$run/log"
t0=$SECONDS

# ---- the package -------------------------------------------------------------------------
deb=${1:-}
if [[ -z "$deb" ]]; then
    if deb=$(bash "$root/packaging/build-deb.sh" 2>"$run/log/build-deb.log" | tail -n 1) && [[ -f "$deb" ]]; then
        pass build-deb
    else
        fail build-deb "$run/log/build-deb.log"
        finish
    fi
fi
[[ -f "$deb" ]] || { fail "deb-exists ($deb)"; finish; }
deb=$(readlink -f "$deb")
echo "test-package.sh: testing $deb" >&2

# Contents and metadata, on the host.
check_contents() {
    local listing=$run/log/contents.txt mode path multiarch
    dpkg-deb --contents "$deb" >"$listing" || return 1
    multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
    while read -r mode path; do
        # every file and directory root:root; listed paths with their mode
        grep -qE "^$mode root/root +[0-9]+ [0-9-]+ [0-9:]+ \.$path( |\$)" "$listing" ||
            { echo "not found with mode $mode: $path"; return 1; }
    done <<EOF
-rw-r--r-- /usr/lib/$multiarch/security/pam_totp.so
-rw-r--r-- /usr/lib/pam-totp/libpam_totp_store.so
-rwxr-xr-x /usr/sbin/pam-totp
-rwxr-xr-x /usr/sbin/pam-totp-agent
-rw-r--r-- /lib/systemd/system/pam-totp-agent.service
-rwsr-xr-x /usr/libexec/pam-totp/pam-totp-self
-rw-r--r-- /etc/pam.d/pam-totp
-rw-r--r-- /usr/share/pam-configs/pam-totp
-rw-r--r-- /etc/pam-totp/policy.toml
-rw-r--r-- /usr/share/man/man8/pam_totp.8.gz
-rw-r--r-- /usr/share/man/man8/pam-totp-agent.8.gz
-rw-r--r-- /usr/share/man/man8/pam-totp.8.gz
-rw-r--r-- /usr/share/man/man5/pam-totp-policy.5.gz
-rw-r--r-- /usr/share/bash-completion/completions/pam-totp
-rw-r--r-- /usr/share/zsh/vendor-completions/_pam-totp
-rw-r--r-- /usr/share/fish/vendor_completions.d/pam-totp.fish
-rw-r--r-- /usr/share/doc/pam-totp/README.md
-rw-r--r-- /usr/share/doc/pam-totp/copyright
-rw-r--r-- /usr/share/doc/pam-totp/changelog.Debian.gz
-rw-r--r-- /usr/share/lintian/overrides/pam-totp
-rw-r--r-- /usr/share/cockpit/pam-totp/manifest.json
-rw-r--r-- /usr/share/cockpit/pam-totp/index.html
-rw-r--r-- /usr/share/cockpit/pam-totp/pam-totp.js
-rw-r--r-- /usr/share/cockpit/pam-totp/pam-totp.css
EOF
    # (the one setuid file: the self-service helper, checked by mode above)
    if grep -vE '^[d-]r[-w][-x]r-[-x]r-[-x] root/root ' "$listing" |
        grep -vE '^-rwsr-xr-x root/root .* \./usr/libexec/pam-totp/pam-totp-self$'; then
        echo "entries above are not root/root or are group/world-writable"
        return 1
    fi
    # the state directory is made by postinst (so remove keeps it), never shipped
    ! grep -q '\./var/lib/pam-totp' "$listing" || { echo "ships /var/lib/pam-totp"; return 1; }
    echo "contents OK"
}
check_control() {
    local c=$run/log/control.txt
    dpkg-deb --field "$deb" >"$c" || return 1
    cat "$c"
    grep -qx 'Package: pam-totp' "$c" &&
        grep -qx "Architecture: $(dpkg --print-architecture)" "$c" &&
        grep -qx 'Section: admin' "$c" &&
        grep -qx 'Priority: optional' "$c" &&
        grep -qE '^Depends: .*libc6 \(>= [^)]+\)' "$c" &&
        grep -qE '^Depends: .*libpam0g \(>= [^)]+\)' "$c" &&
        grep -qE '^Depends: .*libpam-runtime \(>= 1\.0\.1-6\)' "$c" &&
        grep -qx 'Suggests: cockpit (>= 239)' "$c" &&
        [[ $(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles) == \
            $'/etc/pam-totp/policy.toml\n/etc/pam.d/pam-totp' ]] &&
        [[ $(dpkg-deb --ctrl-tarfile "$deb" | tar -t) == *./md5sums* ]]
}
check_profile() {
    local p=$run/log/profile
    dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/pam-configs/pam-totp >"$p" || return 1
    cat "$p"
    grep -qx 'Default: no' "$p" && grep -qx 'Auth-Type: Additional' "$p" &&
        grep -qE '^[[:space:]]+required[[:space:]]+pam_totp\.so$' "$p"
}
check_lintian() {
    # --fail-on error,warning: any error or any warning not overridden with a reason fails.
    lintian --display-info --fail-on error,warning "$deb"
}
for c in contents control profile; do
    if "check_$c" >"$run/log/$c.log" 2>&1; then pass "deb-$c"; else fail "deb-$c" "$run/log/$c.log"; fi
done
t_lint=$SECONDS
if check_lintian >"$run/log/lintian.log" 2>&1; then
    pass lintian
else
    fail lintian "$run/log/lintian.log"
fi
echo "test-package.sh: lintian output ($(elapsed "$t_lint")):" >&2
sed 's/^/    /' "$run/log/lintian.log" >&2

# ---- the cached root filesystem ----------------------------------------------------------
arch=$(dpkg --print-architecture)
key=$(printf '%s\n' "$ROOTFS_RECIPE" "$suite" "$arch" "$rootfs_packages" | sha256sum | cut -c1-12)
rootfs=$cache/rootfs-$suite-$arch-$key

build_rootfs() { # runs under the cache lock; prints timing to stderr
    local tmp t
    t=$SECONDS
    # Leftovers of interrupted builds, and rootfs of other recipes.
    rm -rf "$cache"/.build.* 2>/dev/null
    find "$cache" -mindepth 1 -maxdepth 1 -name "rootfs-$suite-$arch-*" ! -name "rootfs-$suite-$arch-$key" \
        -exec rm -rf {} + 2>/dev/null
    tmp=$(mktemp -d "$cache/.build.XXXXXX") || return 1
    echo "test-package.sh: debootstrap $suite ($rootfs_packages) from $mirror..." >&2
    # Stage 1 downloads and unpacks (network); stage 2 configures the packages inside a
    # chroot in namespaces without network, with policy-rc.d forbidding service starts, so
    # that no daemon (sshd) is ever started on the host.
    local try
    for try in 1 2; do # one retry for a flaky mirror
        debootstrap --variant=minbase --foreign --arch="$arch" --include="$rootfs_packages" \
            "$suite" "$tmp/rootfs" "$mirror" && break
        rm -rf "$tmp/rootfs"
        ((try < 2)) || return 1
        echo "test-package.sh: debootstrap failed, retrying" >&2
        sleep 5
    done
    printf '#!/bin/sh\n# pam-totp package test: never start services\nexit 101\n' \
        >"$tmp/rootfs/usr/sbin/policy-rc.d"
    chmod 0755 "$tmp/rootfs/usr/sbin/policy-rc.d"
    unshare --mount --pid --net --uts --ipc --fork --kill-child --propagation private \
        chroot "$tmp/rootfs" /debootstrap/debootstrap --second-stage || return 1
    rm -f "$tmp/rootfs"/var/cache/apt/archives/*.deb "$tmp/rootfs"/var/cache/apt/*.bin
    printf 'recipe %s\nsuite %s\npackages %s\nbuilt %s\n' "$ROOTFS_RECIPE" "$suite" \
        "$rootfs_packages" "$(date -u +%FT%TZ)" >"$tmp/rootfs/.pam-totp-test-rootfs"
    mv -T "$tmp/rootfs" "$rootfs" || return 1
    rm -rf "$tmp"
    echo "test-package.sh: rootfs built in $(elapsed "$t"): $rootfs ($(du -sh "$rootfs" | cut -f1))" >&2
}

if [[ ! -d "$cache" ]]; then
    mkdir -p "$(dirname "$cache")" && mkdir -m 0700 "$cache"
fi
t_rootfs=$SECONDS
(
    flock 9
    if [[ "${PAM_TOTP_TEST_REBUILD_ROOTFS:-}" == 1 ]]; then rm -rf "$rootfs"; fi
    if [[ -f "$rootfs/.pam-totp-test-rootfs" ]]; then
        echo "test-package.sh: using cached rootfs $rootfs" >&2
    else
        build_rootfs
    fi
) 9>"$cache/.lock" >"$run/log/rootfs.log" 2>&1
rc=$?
cat "$run/log/rootfs.log" >&2
echo "test-package.sh: rootfs ready after $(elapsed "$t_rootfs")" >&2
if ((rc == 0)); then
    pass "rootfs-$suite"
else
    fail "rootfs-$suite" "$run/log/rootfs.log"
    finish
fi

# ---- the container -----------------------------------------------------------------------
cp "$deb" "$run/in/pam-totp.deb"
cp "$here/inside.sh" "$here/ssh-login.exp" "$here/self-enrol.exp" "$run/in/"
dpkg-architecture -qDEB_HOST_MULTIARCH >"$run/in/multiarch" 2>/dev/null || gcc -print-multiarch >"$run/in/multiarch"
t_ct=$SECONDS
# The PID namespace ends with its first process: sshd and syslogd die with it, and every
# mount (overlay, /proc, /dev...) disappears with the mount namespace.
timeout --kill-after=10 600 unshare --mount --pid --net --uts --ipc --fork --kill-child \
    --propagation private -- bash "$self" __in_namespaces "$rootfs" "$run" \
    >"$run/log/container.out" 2>"$run/log/container.err"
rc=$?
while IFS= read -r line; do
    echo "$line"
    case "$line" in
        PASS\ *) passed=$((passed + 1)) ;;
        FAIL\ *) failed=$((failed + 1)) ;;
    esac
done <"$run/log/container.out"
if ((rc != 0)) && ! grep -q '^FAIL ' "$run/log/container.out"; then
    fail "container (exit status $rc)" "$run/log/container.err"
elif [[ -s "$run/log/container.err" ]]; then
    echo "test-package.sh: container stderr:" >&2
    sed 's/^/    /' "$run/log/container.err" | tail -n 30 >&2
fi
echo "test-package.sh: container checks took $(elapsed "$t_ct"), whole test $(elapsed "$t0")" >&2
finish
