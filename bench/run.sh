#!/usr/bin/env bash
# bench/run.sh — `make bench`: pam_totp vs pam_google_authenticator vs pam_oath, one run.
#
# Every login goes through the real libpam with a fresh handle (pam_start_confdir ->
# pam_authenticate -> pam_end, bench/pambench.c), inside tests/lib/sandbox.sh whose private
# /dev/log is drained by tests/torture/logsink.py, so syslog costs what it costs with a
# syslog daemon that keeps up. The three modules get the same users with the same secrets
# on the same filesystem (bench/mkpop.py), each user "has logged in before".
#
# Scenarios, for 100 and 100,000 enrolled users:
#   valid  a correct code, never presented before for that user (every module must run its
#          replay protection and store the newly used step)
#   wrong  a wrong 6-digit code (matching no step within +-1500 of now)
# Each (population, scenario) is run in BENCH_ROUNDS rounds, the module order rotating per
# round, so that drift in machine load spreads evenly over the modules. Then callgrind counts
# instructions per login (a few logins per cell; user space only, stable on a busy machine).
#
# Environment (all optional):
#   PAM_TOTP_SO      our module (default target/release/libpam_totp.so)
#   BENCH_DIR        where the populations live (default /var/tmp: the real disk, so that
#                    fsync costs what it costs; /tmp is the same ext4 here; a tmpfs would hide it)
#   BENCH_SMALL      small population (default 100)
#   BENCH_LARGE      large population (default 100000)
#   BENCH_N_VALID    valid-code logins per module and population (default 600)
#   BENCH_N_WRONG    wrong-code logins per module and population (default 600)
#   BENCH_ROUNDS     rounds (default 3)
#   BENCH_TIME_LIMIT seconds of timed login work per module and cell (default 20; pam_oath
#                    with 100,000 users rewrites a 6.6 MB file per success and hits it)
#   BENCH_CG_N       logins per callgrind measurement (default 10; 2 for pam_oath, large)
#   BENCH_CALLGRIND=0  skip callgrind
#   BENCH_WARM=0     do not pre-read the files of the users each batch will log in (default:
#                    read them, for every module alike, so that the page cache holds them as on
#                    a server with enough RAM; this VM keeps little page cache and a cold user
#                    costs a few virtual-disk reads, whatever the module)
#   BENCH_NSS        which bench users NSS knows (a real caller's are: sshd, su and login look
#                    the user up before PAM runs). A known population is listed in
#                    a private /etc/passwd of the sandbox (the host's lines, then one line per
#                    user, uid/gid 200000 + n small, 300000 + n large; bind mount, host
#                    untouched), and google-authenticator runs without `user=`: it looks up the
#                    login user as pam_totp does, and reads and rewrites the user's own file
#                    (ga/NAME/.google_authenticator, owned by that uid). For a population
#                    unknown to NSS it keeps `user=root` (without it, it denies a user it cannot
#                    look up), so it looks up root (line 1 of /etc/passwd) while pam_totp's
#                    lookup of the login user misses (on Debian 12: files, then systemd's
#                    userdb).
#                    Each population runs in its own sandbox, with its own /etc/passwd.
#                      1 (default)  the small population known, the large one unknown: with
#                                   100,000 lines in /etc/passwd every lookup of the files
#                                   backend is a linear scan (~54 M instructions for a user in
#                                   the middle, measured), which measures glibc, not a module.
#                                   The two populations then differ in what a valid login's
#                                   lookup costs, so the report does not judge pam_totp's
#                                   100,000 / 100 users ratio on valid codes (0 or all does)
#                      all          both known (use a small BENCH_LARGE)
#                      0            none known (the default before 2026-11-29)
#   BENCH_QUICK=1    smoke test: 1,000 large users, few logins
#   BENCH_KEEP=1     keep the work directory
#   BENCH_OUT        also write the report (markdown) to this file
#   BENCH_EXTRA_SO   more builds of pam_totp to compare in the same run (space-separated
#                    paths, e.g. prototypes); BENCH_EXTRA_NAME names them ("|"-separated);
#                    BENCH_EXTRA_PREP ("|"-separated, may be empty) is a command run with each
#                    one's copy of the state dir as argument (e.g. to convert the state files
#                    to the format that build writes, so that every user "has logged in before"
#                    with it too)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

if [[ "${1:-}" == --inner ]]; then
    shift
    # ---- inside the sandbox: private /dev/log (and /etc/passwd for a known population) ----
    work=$1
    pops=("${@:2}")
    # shellcheck source=/dev/null
    source "$work/params"
    bin=$work/pambench
    modules=(ours ga oath)
    for ((k = 1; k <= EXTRA_N; k++)); do modules+=("extra$k"); done
    run_cell() { # POP SCENARIO N
        local pop=$1 sc=$2 n=$3 r i m per limit
        per=$(((n + ROUNDS - 1) / ROUNDS))
        limit=$(awk -v t="$TIME_LIMIT" -v r="$ROUNDS" 'BEGIN { printf "%.2f", t / r }')
        for ((r = 0; r < ROUNDS; r++)); do
            for ((i = 0; i < ${#modules[@]}; i++)); do
                m=${modules[$(((i + r) % ${#modules[@]}))]}
                if [[ "$WARM" == 1 ]]; then
                    next=$(sed -n 's/^next //p' "$work/cursor.$pop.$m.$sc" 2>/dev/null || true)
                    python3 "$here/warm.py" "$work/$pop" "$m" "${next:-0}" "$per"
                fi
                "$bin" -m "$sc" -n "$per" -t "$limit" -N "$pop/$sc/$m" \
                    -S "$work/cursor.$pop.$m.$sc" -o "$work/raw.$pop.$sc.$m" \
                    "$work/$pop/pam.d" "$m" "$work/$pop/users.txt" |
                    tee -a "$work/results.txt" || true
            done
        done
    }
    for pop in "${pops[@]}"; do
        run_cell "$pop" valid "$N_VALID"
        run_cell "$pop" wrong "$N_WRONG"
    done
    if [[ "$CALLGRIND" == 1 ]]; then
        for pop in "${pops[@]}"; do
            for sc in valid wrong; do
                for m in "${modules[@]}"; do
                    k=$CG_N
                    [[ "$pop" == large && "$m" == oath ]] && k=2
                    out=$work/cg.$pop.$sc.$m.out
                    valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$out" \
                        "$bin" -C -m "$sc" -n "$k" -N "cg/$pop/$sc/$m" \
                        -S "$work/cursor.$pop.$m.$sc" \
                        "$work/$pop/pam.d" "$m" "$work/$pop/users.txt" 2>/dev/null |
                        tee -a "$work/results.txt" || true
                    ir=$(awk '/^totals:/ { print $2 }' "$out")
                    echo "CALLGRIND $pop $sc $m $k $ir" | tee -a "$work/results.txt"
                done
            done
        done
    fi
    exit 0
fi

# ---- outside: prepare, start the log sink, enter the sandbox ----------------------------
[[ $(id -u) == 0 ]] || {
    echo "bench/run.sh: must run as root (module files must be root-owned)" >&2
    exit 1
}
so=${PAM_TOTP_SO:-$root/target/release/libpam_totp.so}
[[ -f "$so" ]] || {
    echo "bench/run.sh: $so not found; run cargo build --release first" >&2
    exit 1
}
secdir=/usr/lib/x86_64-linux-gnu/security
for f in pam_google_authenticator.so pam_oath.so; do
    [[ -f $secdir/$f ]] || {
        echo "bench/run.sh: $secdir/$f missing (apt-get install libpam-google-authenticator libpam-oath)" >&2
        exit 1
    }
done
command -v valgrind >/dev/null || BENCH_CALLGRIND=0

SMALL=${BENCH_SMALL:-100}
LARGE=${BENCH_LARGE:-100000}
N_VALID=${BENCH_N_VALID:-600}
N_WRONG=${BENCH_N_WRONG:-600}
ROUNDS=${BENCH_ROUNDS:-3}
TIME_LIMIT=${BENCH_TIME_LIMIT:-20}
CG_N=${BENCH_CG_N:-10}
CALLGRIND=${BENCH_CALLGRIND:-1}
WARM=${BENCH_WARM:-1}
read -r -a extras <<<"${BENCH_EXTRA_SO:-}"
EXTRA_N=${#extras[@]}
IFS='|' read -r -a extra_names <<<"${BENCH_EXTRA_NAME:-}"
IFS='|' read -r -a extra_preps <<<"${BENCH_EXTRA_PREP:-}"
for x in "${extras[@]}"; do
    [[ -f "$x" ]] || {
        echo "bench/run.sh: BENCH_EXTRA_SO: $x not found" >&2
        exit 1
    }
done
if [[ "${BENCH_QUICK:-}" == 1 ]]; then
    LARGE=${BENCH_LARGE:-1000}
    N_VALID=${BENCH_N_VALID:-60}
    N_WRONG=${BENCH_N_WRONG:-60}
    TIME_LIMIT=${BENCH_TIME_LIMIT:-5}
    CG_N=${BENCH_CG_N:-3}
fi

base=${BENCH_DIR:-/var/tmp}
work=$(mktemp -d "$base/pam-totp-bench.XXXXXX")
chmod 0755 "$work"
sink_pid=
cleanup() {
    [[ -n "$sink_pid" ]] && kill "$sink_pid" 2>/dev/null && wait "$sink_pid" 2>/dev/null
    if [[ "${BENCH_KEEP:-}" == 1 ]]; then
        echo "bench: kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

gcc -O2 -Wall -Wextra -Werror -o "$work/pambench" "$here/pambench.c" -lpam
ln -s "$(readlink -f "$so")" "$work/pam_totp.so"
for ((k = 1; k <= EXTRA_N; k++)); do
    mkdir -m 0755 "$work/extra$k"
    ln -s "$(readlink -f "${extras[k - 1]}")" "$work/extra$k/pam_totp.so"
done
# pam_totp: every wrong code is verified and counted, never refused cheaply by the lock
# (the other two have no lock by default).
printf 'version = 1\n\n[throttle]\nattempts = 4000000000\n' >"$work/policy.toml"
chmod 0644 "$work/policy.toml"

start=$(date +%s)
NSS=${BENCH_NSS:-1}
case "$NSS" in
0) known=() ;;
1) known=(small) ;;
all) known=(small large) ;;
*)
    echo "bench/run.sh: BENCH_NSS=$NSS: want 0, 1 or all" >&2
    exit 1
    ;;
esac
is_known() { [[ " ${known[*]} " == *" $1 "* ]]; }
uid_base() { if [[ $1 == small ]]; then echo 200000; else echo 300000; fi; }

for pop in small large; do
    count=$SMALL
    [[ $pop == large ]] && count=$LARGE
    echo "bench: creating $count users for $pop ..." >&2
    p=$work/$pop
    if is_known "$pop"; then
        python3 "$here/mkpop.py" "$p" "$count" "$(uid_base "$pop")"
    else
        python3 "$here/mkpop.py" "$p" "$count"
    fi
    mkdir -m 0755 "$p/pam.d"
    echo "auth required $work/pam_totp.so dir=$p/ours policy=$work/policy.toml window=1" >"$p/pam.d/ours"
    if is_known "$pop"; then
        echo "auth required pam_google_authenticator.so secret=$p/ga/\${USER}/.google_authenticator" >"$p/pam.d/ga"
    else
        echo "auth required pam_google_authenticator.so secret=$p/ga/\${USER} user=root" >"$p/pam.d/ga"
    fi
    echo "auth required pam_oath.so usersfile=$p/oath/users.oath window=1" >"$p/pam.d/oath"
    printf 'auth required pam_deny.so\n' >"$p/pam.d/other"
    for ((k = 1; k <= EXTRA_N; k++)); do
        cp -a "$p/ours" "$p/extra$k"
        prep=${extra_preps[k - 1]:-}
        [[ -z "$prep" ]] || $prep "$p/extra$k"
        echo "auth required $work/extra$k/pam_totp.so dir=$p/extra$k policy=$work/policy.toml window=1" >"$p/pam.d/extra$k"
    done
done
cat >"$work/params" <<EOF
N_VALID=$N_VALID
N_WRONG=$N_WRONG
ROUNDS=$ROUNDS
TIME_LIMIT=$TIME_LIMIT
CG_N=$CG_N
CALLGRIND=$CALLGRIND
WARM=$WARM
EXTRA_N=$EXTRA_N
EOF

python3 "$root/tests/torture/logsink.py" "$work/log.sock" "$work/syslog.txt" &
sink_pid=$!
for _ in $(seq 100); do [[ -S "$work/log.sock" ]] && break; sleep 0.05; done

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)," \
        "$(awk '/MemTotal/ { printf "%.0f GB RAM", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)," \
        "Debian $(cat /etc/debian_version)"
    echo "filesystem: $(findmnt -no FSTYPE,SOURCE,OPTIONS --target "$work" | head -1) ($work)"
    for ((k = 1; k <= EXTRA_N; k++)); do
        echo "extra module extra$k: ${extra_names[k - 1]:-pam_totp (extra build $k)} (${extras[k - 1]})"
    done
    echo "modules: pam_totp $(git -C "$root" describe --always --dirty 2>/dev/null || echo '?')" \
        "($so), libpam-google-authenticator $(dpkg-query -W -f='${Version}' libpam-google-authenticator)," \
        "libpam-oath $(dpkg-query -W -f='${Version}' libpam-oath), libpam0g $(dpkg-query -W -f='${Version}' libpam0g)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "params: small=$SMALL large=$LARGE n_valid=$N_VALID n_wrong=$N_WRONG rounds=$ROUNDS" \
        "time_limit=${TIME_LIMIT}s callgrind_n=$CG_N warm=$WARM"
} >"$work/meta.txt"

# One sandbox per population, so that each has the /etc/passwd its NSS setting wants: a known
# population the host's lines then its own users, an unknown one the host's file.
for pop in small large; do
    count=$SMALL
    [[ $pop == large ]] && count=$LARGE
    binds=
    if is_known "$pop"; then
        cp /etc/passwd "$work/passwd.$pop"
        awk -v base="$(uid_base "$pop")" \
            '{ printf "%s:x:%d:%d::/nonexistent:/usr/sbin/nologin\n", $1, base + NR, base + NR }' \
            "$work/$pop/users.txt" >>"$work/passwd.$pop"
        chmod 0644 "$work/passwd.$pop"
        binds="$work/passwd.$pop:/etc/passwd"
        echo "nss: $count users: known to NSS (a private /etc/passwd, $(wc -l <"$work/passwd.$pop") lines);" \
            "pam_totp and google-authenticator both look up the login user" >>"$work/meta.txt"
    else
        echo "nss: $count users: unknown to NSS; pam_totp looks up the login user (a miss: files," \
            "then systemd), google-authenticator root (user=root)" >>"$work/meta.txt"
    fi
    EXTRA_RO_BINDS="$binds" SYSLOG_SOCKET=$work/log.sock \
        bash "$root/tests/lib/sandbox.sh" bash "$here/run.sh" --inner "$work" "$pop"
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$work/meta.txt"
echo "wall time: $(($(date +%s) - start)) s; syslog lines received: $(wc -l <"$work/syslog.txt")" >>"$work/meta.txt"
python3 "$here/report.py" "$work" | tee "${BENCH_OUT:-/dev/null}"
