#!/usr/bin/env bash
# fuzz/run.sh — run every cargo-fuzz target of pam_totp for a while (`make fuzz-quick`: 30 s).
#
#   fuzz/run.sh [SECONDS] [TARGET...]      run each target SECONDS (default 30)
#   fuzz/run.sh --minimize [TARGET...]     shrink the committed corpus (libFuzzer set-cover merge
#                                          of corpus/TARGET and seeds/TARGET, plus
#                                          FUZZ_MERGE_FROM/TARGET if set: the new inputs a run
#                                          kept with FUZZ_KEEP_NEW)
#
# The committed corpus (fuzz/corpus/TARGET, found by fuzzing) and the hand-written seeds
# (fuzz/seeds/TARGET) seed each run and are left untouched: new inputs go
# to a scratch directory (FUZZ_KEEP_NEW=DIR keeps them there). A crash fails the run; the
# reproducer lands in fuzz/artifacts/TARGET/ (`cargo fuzz run TARGET ARTIFACT` replays it).
# Output: a line per target `FUZZ target=T secs=S execs=N exec_per_s=R corpus=C crash=0|1`,
# then `fuzz: N targets, M crashed`. Exit status 1 if a target crashed or did not build.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a C++ compiler (libFuzzer). On a stable
# toolchain the sanitizer flags need RUSTC_BOOTSTRAP=1, which this script sets. Runs niced.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
export RUSTC_BOOTSTRAP=1
all=(record_parse state_parse policy_parse recovery_input split_answer login_answer import_ga import_oath)

dict_of() {
    case $1 in
    record_parse | state_parse | policy_parse) echo "-dict=$here/dict/toml.dict" ;;
    import_ga) echo "-dict=$here/dict/ga.dict" ;;
    import_oath) echo "-dict=$here/dict/oath.dict" ;;
    esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 1
fi

bin_dir=target/x86_64-unknown-linux-gnu/release
if [[ "${1:-}" == --minimize ]]; then
    shift
    targets=("$@")
    [[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")
    nice -n 10 cargo fuzz build -O >/dev/null 2>&1
    for t in "${targets[@]}"; do
        before=$(find "corpus/$t" -type f | wc -l)
        new=$(mktemp -d /tmp/pam-totp-cmin.XXXXXX)
        # set_cover_merge keeps every coverage feature with fewer inputs than cmin's merge.
        from=("corpus/$t" "seeds/$t")
        [[ -n "${FUZZ_MERGE_FROM:-}" && -d "$FUZZ_MERGE_FROM/$t" ]] && from+=("$FUZZ_MERGE_FROM/$t")
        nice -n 10 "$bin_dir/$t" -set_cover_merge=1 "$new" "${from[@]}" >/dev/null 2>&1
        rm -rf "corpus/$t"
        mkdir -p "corpus/$t"
        cp "$new"/* "corpus/$t/"
        rm -rf "$new"
        echo "minimized $t: $before -> $(find "corpus/$t" -type f | wc -l) inputs," \
            "$(cat "corpus/$t"/* | wc -c) bytes"
    done
    exit 0
fi

secs=30
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
    secs=$1
    shift
fi
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")

nice -n 10 cargo fuzz build -O >/dev/null 2>build.log || {
    tail -40 build.log >&2
    echo "fuzz: the targets did not build"
    exit 1
}
rm -f build.log

scratch=${FUZZ_KEEP_NEW:-$(mktemp -d /tmp/pam-totp-fuzz.XXXXXX)}
crashed=0
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "corpus/$t" "seeds/$t"
    log="$scratch/$t.log"
    rc=0
    # shellcheck disable=SC2046 # the dict option is one word or none
    nice -n 10 cargo fuzz run -O "$t" "$scratch/$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        $(dict_of "$t") >"$log" 2>&1 || rc=$?
    execs=$(awk -F: '/stat::number_of_executed_units/ { gsub(/ /, "", $NF); print $NF }' "$log" | tail -1)
    rate=$(awk -F: '/stat::average_exec_per_sec/ { gsub(/ /, "", $NF); print $NF }' "$log" | tail -1)
    corpus=$(grep -oE 'corp: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    crash=0
    if [[ $rc != 0 ]] || grep -qE '^==[0-9]+==ERROR|panicked at|deadly signal' "$log"; then
        crash=1
        crashed=$((crashed + 1))
        echo "---- $t: crash; the end of its log:" >&2
        grep -E 'panicked at|ERROR|Test unit written|SUMMARY' "$log" | head -20 >&2
    fi
    echo "FUZZ target=$t secs=$secs execs=${execs:-?} exec_per_s=${rate:-?} corpus=${corpus:-?} crash=$crash"
done
[[ -n "${FUZZ_KEEP_NEW:-}" ]] || rm -rf "$scratch"
echo "fuzz: ${#targets[@]} targets, $crashed crashed"
[[ $crashed == 0 ]]
