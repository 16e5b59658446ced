#!/usr/bin/env bash
# sandbox.sh CMD [ARG...]
#
# Runs CMD as root in private mount and PID namespaces, so tests can give PAM
# (and later sshd) a /dev/log and private config files without touching the host.
# Inside the namespace:
#   /dev      a fresh tmpfs holding bind mounts of the host's null, zero, full,
#             random, urandom and tty, a new devpts instance on /dev/pts with
#             /dev/ptmx -> pts/ptmx, /dev/shm (tmpfs), /dev/fd, stdin, stdout, stderr
#   /dev/log  a bind mount of the unix datagram socket named by $SYSLOG_SOCKET
#             (created by the caller beforehand; if unset there is no /dev/log)
#   /proc     a new procfs for the new PID namespace
# Optional environment:
#   SYSLOG_SOCKET="path"             see above
#   EXTRA_TMPFS="dir ..."            mount a fresh, empty tmpfs over each dir (before
#                                    the binds below), e.g. "/run /var/log"
#   EXTRA_BINDS="src:dst ..."        bind src over dst (file or directory), e.g. a
#                                    private pam.d: "$tmp/pam.d:/etc/pam.d". dst must
#                                    exist, unless it lies under /dev or an
#                                    EXTRA_TMPFS dir, where it is created.
#   EXTRA_RO_BINDS="src:dst ..."     the same, mounted read-only
#   SANDBOX_NO_PIDNS=1               keep the host's PID namespace
# Mounts are private to the namespace and vanish with it; nothing on the host is
# created or modified. Needs root (CAP_SYS_ADMIN) and util-linux unshare.
# The exit status is CMD's (or 125 when setting up the sandbox failed).
set -euo pipefail

die() {
    echo "sandbox.sh: $*" >&2
    exit 125
}

if [[ "${__PAM_TOTP_SANDBOX_INNER:-}" != 1 ]]; then
    [[ $# -ge 1 ]] || die "usage: sandbox.sh CMD [ARG...]"
    [[ $(id -u) == 0 ]] || die "must run as root"
    if [[ -n "${SYSLOG_SOCKET:-}" ]]; then
        [[ -S "$SYSLOG_SOCKET" ]] || die "SYSLOG_SOCKET=$SYSLOG_SOCKET is not a socket"
    fi
    export __PAM_TOTP_SANDBOX_INNER=1
    self=$(readlink -f -- "${BASH_SOURCE[0]}")
    if [[ "${SANDBOX_NO_PIDNS:-}" == 1 ]]; then
        exec unshare --mount --propagation private --fork --kill-child -- bash "$self" "$@"
    else
        exec unshare --mount --propagation private --pid --fork --kill-child --mount-proc \
            -- bash "$self" "$@"
    fi
fi

# ---- inside the namespace ---------------------------------------------------
unset __PAM_TOTP_SANDBOX_INNER

# Every mount uses -n so that libmount writes no /run/mount/utab on the host.

# Build the new /dev on a tmpfs mounted over /dev/shm (which still shows the
# host's device nodes next to it), then move it over /dev.
stage=/dev/shm
mount -n -t tmpfs -o mode=0755,nosuid,size=1m sandbox-dev "$stage" || die "cannot mount tmpfs on $stage"
for node in null zero full random urandom tty; do
    [[ -e /dev/$node ]] || die "host has no /dev/$node"
    : >"$stage/$node"
    mount -n --bind "/dev/$node" "$stage/$node" || die "cannot bind /dev/$node"
done
mkdir -m 0755 "$stage/pts" "$stage/shm"
chmod 1777 "$stage/shm"
ln -s /proc/self/fd "$stage/fd"
ln -s /proc/self/fd/0 "$stage/stdin"
ln -s /proc/self/fd/1 "$stage/stdout"
ln -s /proc/self/fd/2 "$stage/stderr"
ln -s pts/ptmx "$stage/ptmx"
if [[ -n "${SYSLOG_SOCKET:-}" ]]; then
    : >"$stage/log"
    mount -n --bind "$SYSLOG_SOCKET" "$stage/log" || die "cannot bind $SYSLOG_SOCKET on /dev/log"
fi
mount -n --move "$stage" /dev || die "cannot move the new /dev in place"
mount -n -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts ||
    die "cannot mount devpts"
mount -n -t tmpfs -o mode=1777,nosuid,nodev,size=64m sandbox-shm /dev/shm || die "cannot mount /dev/shm"

tmpfs_dirs=()
for d in ${EXTRA_TMPFS:-}; do
    [[ -d "$d" ]] || die "EXTRA_TMPFS: $d is not a directory"
    mount -n -t tmpfs -o mode=0755 sandbox-tmpfs "$d" || die "cannot mount tmpfs on $d"
    tmpfs_dirs+=("${d%/}")
done

# dst may be created only where it cannot touch the host: under /dev or a new tmpfs.
creatable() {
    local p=$1 d
    [[ "$p" == /dev/* ]] && return 0
    for d in "${tmpfs_dirs[@]}"; do
        [[ "$p" == "$d"/* ]] && return 0
    done
    return 1
}

do_binds() {
    local ro=$1 spec src dst
    shift
    for spec in "$@"; do
        src=${spec%%:*}
        dst=${spec#*:}
        [[ -n "$src" && -n "$dst" && "$spec" == *:* ]] || die "bad bind spec '$spec' (want src:dst)"
        [[ -e "$src" || -L "$src" ]] || die "bind source $src does not exist"
        if [[ ! -e "$dst" ]]; then
            creatable "$dst" || die "bind target $dst does not exist (only paths under /dev or EXTRA_TMPFS are created)"
            if [[ -d "$src" ]]; then
                mkdir -p -- "$dst"
            else
                mkdir -p -- "$(dirname -- "$dst")"
                : >"$dst"
            fi
        fi
        mount -n --bind -- "$src" "$dst" || die "cannot bind $src on $dst"
        if [[ "$ro" == ro ]]; then
            mount -n -o remount,bind,ro -- "$dst" || die "cannot make $dst read-only"
        fi
    done
}
# shellcheck disable=SC2086 # word splitting of the lists is intended
do_binds rw ${EXTRA_BINDS:-}
# shellcheck disable=SC2086
do_binds ro ${EXTRA_RO_BINDS:-}

# Not exec: this shell stays PID 1 of the namespace (reaping orphans), and CMD gets
# ordinary signal semantics. When the shell ends, everything in the namespace ends.
set +e
"$@"
exit $?
