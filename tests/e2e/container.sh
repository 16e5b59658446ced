#!/usr/bin/env bash
# tests/e2e/container.sh — a throwaway "container" built from Linux namespaces, for the
# end-to-end suite (tests/e2e/test_e2e.py) and the demo (tests/e2e/demo.sh).
#
#   container.sh start DIR        prepare DIR and start a container on it; prints the host
#                                 PID of the container's init (also written to DIR/pid)
#   container.sh exec DIR CMD...  run CMD inside (nsenter into its namespaces)
#   container.sh stop DIR         kill everything inside; the namespaces and mounts vanish
#
# DIR is an empty directory on the host, owned by root, mode 0700 (e.g. from `mktemp -d`).
# `start` fills it with private copies that the container bind-mounts:
#   DIR/etc/pam.d, DIR/etc/ssh   -> /etc/pam.d, /etc/ssh   (copies of the host's; the host's SSH
#                                   host keys are not copied: a fresh ed25519 key is generated)
#   DIR/etc/{passwd,shadow,group,gshadow} -> /etc/...     (copies; edit them in place, never
#                                   replace them by rename: the bind mount holds the inode)
#   DIR/policy                   -> /etc/pam-totp          (root 0755, empty)
#   DIR/state                    -> /var/lib/pam-totp      (root:root 0700, users/ 0700)
# and, inside the container:
#   /etc, /var/lib, /usr/local, /usr/libexec, /usr/share/cockpit
#                                overlays on the host's directories with a private upper
#                                layer, so that stray writes (lock files, new mount points,
#                                the Cockpit page the tests install) never reach the host
#   /usr/local/lib/security/pam_totp.so   the module ($PAM_TOTP_SO, read-only bind)
#   /usr/local/sbin/pam-totp     the CLI ($PAM_TOTP_CLI, if set and present)
#   /dev                         a private tmpfs with null, zero, full, random, urandom, tty,
#                                a new devpts instance, /dev/shm, and /dev/log bound to the
#                                unix datagram socket $SYSLOG_SOCKET (if set)
#   /proc                        a fresh procfs for the new PID namespace
#   /home /root /run /tmp /var/tmp /var/log   fresh tmpfs (with /run/sshd and /run/lock)
#   network                      a new namespace with only loopback, up
#   hostname                     pam-totp-e2e (new UTS namespace)
# Mounts are made with -n (no utab on the host). Needs root and util-linux unshare/nsenter.
set -euo pipefail

die() {
    echo "container.sh: $*" >&2
    exit 125
}

self=$(readlink -f -- "${BASH_SOURCE[0]}")

# ---- inside the new namespaces (run by `start` through unshare) ----------------------------
init() {
    local dir=$1
    cd "$dir" # keeps DIR reachable (for the ready flag) after /tmp is covered below

    # /dev: build on a tmpfs staged over /dev/shm, then move it over /dev (the same approach
    # as tests/lib/sandbox.sh).
    local stage=/dev/shm node
    mount -n -t tmpfs -o mode=0755,nosuid,size=1m e2e-dev "$stage"
    for node in null zero full random urandom tty; do
        : >"$stage/$node"
        mount -n --bind "/dev/$node" "$stage/$node"
    done
    mkdir -m 0755 "$stage/pts" "$stage/shm"
    ln -s /proc/self/fd "$stage/fd"
    ln -s /proc/self/fd/0 "$stage/stdin"
    ln -s /proc/self/fd/1 "$stage/stdout"
    ln -s /proc/self/fd/2 "$stage/stderr"
    ln -s pts/ptmx "$stage/ptmx"
    if [[ -n "${SYSLOG_SOCKET:-}" ]]; then
        : >"$stage/log"
        mount -n --bind "$SYSLOG_SOCKET" "$stage/log"
    fi
    mount -n --move "$stage" /dev
    mount -n -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts
    mount -n -t tmpfs -o mode=1777,nosuid,nodev,size=64m e2e-shm /dev/shm

    mount -n -t proc -o nosuid,nodev,noexec proc /proc

    # Overlays: upper layers on a private tmpfs.
    mount -n -t tmpfs -o mode=0700 e2e-overlays "$dir/ovl"
    local d n
    for d in /etc /var/lib /usr/local /usr/libexec /usr/share/cockpit; do
        [[ -d "$d" ]] || continue # /usr/share/cockpit: only where Cockpit is installed
        n=${d//\//_}
        mkdir -p "$dir/ovl/$n/upper" "$dir/ovl/$n/work"
        mount -n -t overlay -o "lowerdir=$d,upperdir=$dir/ovl/$n/upper,workdir=$dir/ovl/$n/work" \
            "e2e$n" "$d"
    done

    # Private copies.
    mount -n --bind "$dir/etc/pam.d" /etc/pam.d
    mount -n --bind "$dir/etc/ssh" /etc/ssh
    for f in passwd shadow group gshadow; do
        mount -n --bind "$dir/etc/$f" "/etc/$f"
    done
    mkdir -p /etc/pam-totp /var/lib/pam-totp /usr/local/lib/security /usr/local/sbin
    mount -n --bind "$dir/policy" /etc/pam-totp
    mount -n --bind "$dir/state" /var/lib/pam-totp
    : >/usr/local/lib/security/pam_totp.so
    mount -n --bind "$PAM_TOTP_SO" /usr/local/lib/security/pam_totp.so
    mount -n -o remount,bind,ro /usr/local/lib/security/pam_totp.so
    if [[ -n "${PAM_TOTP_CLI:-}" && -f "${PAM_TOTP_CLI:-}" ]]; then
        rm -f /usr/local/sbin/pam-totp
        : >/usr/local/sbin/pam-totp
        mount -n --bind "$PAM_TOTP_CLI" /usr/local/sbin/pam-totp
        mount -n -o remount,bind,ro /usr/local/sbin/pam-totp
    fi

    # The self-service helper, setuid root as the package installs it (in the overlay).
    if [[ -n "${PAM_TOTP_SELF:-}" && -f "${PAM_TOTP_SELF:-}" ]]; then
        install -d -m 0755 /usr/libexec/pam-totp
        install -o root -g root -m 4755 "$PAM_TOTP_SELF" /usr/libexec/pam-totp/pam-totp-self
    fi

    mount -n -t tmpfs -o mode=0755,nosuid e2e-home /home
    mount -n -t tmpfs -o mode=0700 e2e-root /root
    mount -n -t tmpfs -o mode=0755,nosuid,nodev e2e-run /run
    mkdir -m 0755 /run/sshd
    mkdir -m 1777 /run/lock
    mount -n -t tmpfs -o mode=0755,nosuid,nodev e2e-log /var/log
    mount -n -t tmpfs -o mode=1777,nosuid,nodev e2e-vartmp /var/tmp
    mount -n -t tmpfs -o mode=1777,nosuid,nodev e2e-tmp /tmp

    echo pam-totp-e2e >/proc/sys/kernel/hostname
    ip link set lo up

    : >ready
    # PID 1 of the namespace: reap orphans until killed.
    trap 'exit 0' TERM INT
    while :; do
        sleep 3600 &
        wait $! || true
    done
}

start() {
    local dir=$1
    [[ $(id -u) == 0 ]] || die "must run as root"
    [[ -d "$dir" ]] || die "$dir is not a directory"
    dir=$(readlink -f -- "$dir")
    [[ -z "$(ls -A "$dir")" ]] || die "$dir is not empty"
    [[ "$(stat -c '%u %a' "$dir")" == "0 700" ]] || die "$dir must be owned by root, mode 0700"
    : "${PAM_TOTP_SO:?set PAM_TOTP_SO to the built libpam_totp.so}"
    [[ -f "$PAM_TOTP_SO" ]] || die "PAM_TOTP_SO=$PAM_TOTP_SO does not exist (cargo build --release -p pam_totp)"
    PAM_TOTP_SO=$(readlink -f -- "$PAM_TOTP_SO")
    if [[ -n "${PAM_TOTP_CLI:-}" && -f "$PAM_TOTP_CLI" ]]; then
        PAM_TOTP_CLI=$(readlink -f -- "$PAM_TOTP_CLI")
    fi
    if [[ -n "${PAM_TOTP_SELF:-}" && -f "$PAM_TOTP_SELF" ]]; then
        PAM_TOTP_SELF=$(readlink -f -- "$PAM_TOTP_SELF")
    fi
    if [[ -n "${SYSLOG_SOCKET:-}" ]]; then
        [[ -S "$SYSLOG_SOCKET" ]] || die "SYSLOG_SOCKET=$SYSLOG_SOCKET is not a socket"
        SYSLOG_SOCKET=$(readlink -f -- "$SYSLOG_SOCKET")
    fi
    export PAM_TOTP_SO PAM_TOTP_CLI PAM_TOTP_SELF SYSLOG_SOCKET

    mkdir -m 0700 "$dir/ovl"
    mkdir -m 0755 "$dir/etc"
    cp -a /etc/pam.d "$dir/etc/pam.d"
    cp -a /etc/ssh "$dir/etc/ssh"
    rm -f "$dir"/etc/ssh/ssh_host_*
    ssh-keygen -q -t ed25519 -N '' -C pam-totp-e2e -f "$dir/etc/ssh/ssh_host_ed25519_key"
    for f in passwd shadow group gshadow; do
        cp -a "/etc/$f" "$dir/etc/$f"
    done
    install -d -o root -g root -m 0755 "$dir/policy"
    install -d -o root -g root -m 0700 "$dir/state" "$dir/state/users"

    # The container's init must not share our stdio (callers wait for EOF on it).
    unshare --mount --propagation private --pid --net --uts --fork --kill-child \
        -- bash "$self" __init "$dir" </dev/null >"$dir/container.log" 2>&1 &
    local ushare=$! i child=
    for ((i = 0; i < 500; i++)); do
        [[ -e "$dir/ready" ]] && break
        kill -0 "$ushare" 2>/dev/null || { cat "$dir/container.log" >&2; die "container setup failed"; }
        sleep 0.01
    done
    [[ -e "$dir/ready" ]] || { kill "$ushare" 2>/dev/null; die "container did not start in 5 s"; }
    child=$(cat "/proc/$ushare/task/$ushare/children" 2>/dev/null || true)
    child=${child%% *}
    [[ -n "$child" ]] || { kill "$ushare"; die "cannot find the container's init"; }
    echo "$ushare" >"$dir/unshare.pid"
    echo "$child" >"$dir/pid"
    echo "$child"
}

enter() {
    local dir=$1
    shift
    [[ -f "$dir/pid" ]] || die "no container in $dir"
    exec nsenter --target "$(cat "$dir/pid")" --mount --uts --net --pid --wd=/ -- "$@"
}

stop() {
    local dir=$1 pid ushare i
    [[ -f "$dir/pid" ]] || return 0
    pid=$(cat "$dir/pid")
    ushare=$(cat "$dir/unshare.pid" 2>/dev/null || true)
    # Killing the PID namespace's init kills every process inside.
    kill -KILL "$pid" 2>/dev/null || true
    # Gone once unshare has reaped it (unshare itself may linger as a zombie of the host's init).
    for ((i = 0; i < 500; i++)); do
        [[ -e "/proc/$pid" ]] || break
        sleep 0.01
    done
    if [[ -n "$ushare" ]] && ! grep -q '^State:.*Z' "/proc/$ushare/status" 2>/dev/null; then
        kill -KILL "$ushare" 2>/dev/null || true
    fi
    rm -f "$dir/pid" "$dir/unshare.pid"
}

case "${1:-}" in
__init)
    init "$2"
    ;;
start)
    [[ $# == 2 ]] || die "usage: container.sh start DIR"
    start "$2"
    ;;
exec)
    [[ $# -ge 3 ]] || die "usage: container.sh exec DIR CMD [ARG...]"
    enter "$2" "${@:3}"
    ;;
stop)
    [[ $# == 2 ]] || die "usage: container.sh stop DIR"
    stop "$2"
    ;;
*)
    die "usage: container.sh start|exec|stop DIR [CMD...]"
    ;;
esac
