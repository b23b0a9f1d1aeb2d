#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# scripts/fuzz.sh — `make fuzz` (docs/fuzzing.md): builds the libFuzzer
# targets (BALLOOND_FUZZ=1, -sanitize=fuzzer,address, release, scratch path
# .build-fuzz), runs each for FUZZ_SECONDS on a copy of its seed corpus
# (fuzz/corpus/NAME), writes bench/results-fuzz.md, keeps every crash, leak,
# timeout or out-of-memory input under fuzz/regressions/NAME/ (replayed by
# BalloonFuzzTests in make test) and exits non-zero if there was any.
#
#   FUZZ_SECONDS=120        seconds per target (a cap when FUZZ_RUNS is set)
#   FUZZ_RUNS=N             stop a target after N executions (libFuzzer -runs)
#   FUZZ_JOBS=1             targets run side by side
#   FUZZ_WORKERS=1          processes per target on one shared corpus
#                           (libFuzzer reloads it every second); FUZZ_RUNS
#                           is split among them and their counts summed
#   FUZZ_TARGETS="a b"      a subset (default: all six)
#   FUZZ_RESULTS=FILE       where the table goes (default bench/results-fuzz.md)
#   FUZZ_RSS_MB=2048        libFuzzer -rss_limit_mb
#   FUZZ_TIMEOUT=10         libFuzzer -timeout (seconds for one input)
#   FUZZ_MAX_LEN=N          libFuzzer -max_len for every target (default per
#                           target: 2048 for guest-protocol and qmp, twice
#                           their 1 KiB line or value bound; 4096 otherwise)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
SWIFT=${SWIFT:-swift}
seconds=${FUZZ_SECONDS:-120}
runs=${FUZZ_RUNS:-}
jobs=${FUZZ_JOBS:-1}
workers=${FUZZ_WORKERS:-1}
targets=(${FUZZ_TARGETS:-guest-protocol host-frames qmp metrics-http config proc})
results=${FUZZ_RESULTS:-bench/results-fuzz.md}
rss=${FUZZ_RSS_MB:-2048}
timeout=${FUZZ_TIMEOUT:-10}
scratch=.build-fuzz
work=$scratch/run

build=("$SWIFT" build -c release --scratch-path "$scratch"
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library)
echo "fuzz: building ${targets[*]}" >&2
for t in "${targets[@]}"; do
    BALLOOND_FUZZ=1 "${build[@]}" --product "fuzz-$t" >&2
done
bin=$(BALLOOND_FUZZ=1 "${build[@]}" --show-bin-path)

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
load=$(cut -d' ' -f1 /proc/loadavg)
swiftv=$("$SWIFT" --version 2>&1 | head -1)

# Longest input: the protocol targets' bodies bound a line (or a QMP value)
# at 1 KiB, so 2 KiB inputs reach every path (overlong, several lines,
# resync) at 1.6× the executions of libFuzzer's 4 KiB (docs/fuzzing.md).
max_len_of() {
    if [[ -n ${FUZZ_MAX_LEN:-} ]]; then echo "$FUZZ_MAX_LEN"; return; fi
    case $1 in guest-protocol|qmp) echo 2048 ;; *) echo 4096 ;; esac
}

# One target: runs the fuzzer, leaves its table row, goal line and verdict
# in $work/NAME/{row,goal,failed} (targets may run side by side).
fuzz_one() {
    local t=$1 dir=$work/$1
    rm -rf "$dir"
    mkdir -p "$dir/corpus" "$dir/artifacts"
    cp fuzz/corpus/"$t"/* "$dir/corpus/"
    local seeds; seeds=$(find "$dir/corpus" -type f | wc -l)
    echo "fuzz: $t for ${seconds}s${runs:+ or $runs executions} ($seeds seeds)" >&2
    # CPU seconds (user + system, children such as llvm-symbolizer included)
    # beside the wall clock: on a shared machine exec/s says more about the
    # load than about the target (docs/fuzzing.md, Throughput).
    local wall0 wall w per=
    [[ -z $runs ]] || per=$(( (runs + workers - 1) / workers ))
    wall0=$(date +%s)
    for ((w = 1; w <= workers; w++)); do
        (
            set +e
            TIMEFORMAT='%U %S'
            { time "$bin/fuzz-$t" "$dir/corpus" -max_total_time="$seconds" ${per:+-runs="$per"} -max_len="$(max_len_of "$t")" \
                -rss_limit_mb="$rss" -timeout="$timeout" -print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
                >"$dir/log.$w" 2>&1; } 2>"$dir/cpu.$w"
            echo $? >"$dir/rc.$w"
        ) &
    done
    wait
    wall=$(( $(date +%s) - wall0 ))
    # Sums over the workers: CPU, executions, exec/s; the largest coverage,
    # features, corpus and RSS one of them reached.
    local cpus execs rate peak cov ft corp crashes leaks timeouts ooms failed=0
    cpus=$(cat "$dir"/cpu.* 2>/dev/null | awk '{ c += $1 + $2 } END { printf "%.1f", c }'); cpus=${cpus:-0}
    stat() { for f in "$dir"/log.*; do sed -n "s/^stat::$1: *//p" "$f" | tail -1; done; }
    execs=$(stat number_of_executed_units | awk '{ s += $1 } END { print s + 0 }')
    rate=$(stat average_exec_per_sec | awk '{ s += $1 } END { print s + 0 }')
    peak=$(stat peak_rss_mb | sort -n | tail -1)
    reached() { for f in "$dir"/log.*; do grep -E '^#[0-9]+' "$f" | tail -1 | sed -n "s/.* $1: \([0-9]*\).*/\1/p"; done | sort -n | tail -1; }
    cov=$(reached cov); cov=${cov:--}
    ft=$(reached ft); ft=${ft:--}
    corp=$(reached corp); corp=${corp:--}
    count() { find "$dir/artifacts" -type f -name "$1-*" | wc -l; }
    crashes=$(( $(count crash) + $(count deadly) ))
    leaks=$(count leak)
    timeouts=$(count timeout)
    ooms=$(count oom)
    # Stopped by hand (SIGINT/SIGTERM: libFuzzer prints its final stats and
    # exits 72) is a shorter run, not a failure: the row says so.
    local interrupted=0 rc=0 wrc ended=1
    for ((w = 1; w <= workers; w++)); do
        wrc=$(cat "$dir/rc.$w" 2>/dev/null || echo 1)
        if ((wrc == 72)) && grep -q 'libFuzzer: run interrupted' "$dir/log.$w"; then
            interrupted=1
        elif ((wrc != 0)) && ! grep -q 'Done [0-9]* runs' "$dir/log.$w"; then
            rc=$wrc ended=0
        fi
    done
    if ((crashes + leaks + timeouts + ooms > 0)) || ((!ended)); then
        failed=1
        mkdir -p "fuzz/regressions/$t"
        find "$dir/artifacts" -type f -exec cp {} "fuzz/regressions/$t/" \;
        echo "fuzz: $t FAILED (exit $rc): inputs kept in fuzz/regressions/$t/, logs $dir/log.*" >&2
        cat "$dir"/log.* | grep -m5 -E 'ERROR|Fatal error|precondition|ALARM' >&2 || true
        ((crashes + leaks + timeouts + ooms > 0)) || crashes="exit $rc"
    fi
    echo "$failed" >"$dir/failed"
    local percpu; percpu=$(awk -v e="$execs" -v c="$cpus" 'BEGIN { printf "%d", (c > 0 ? e / c : 0) }')
    local shown=$wall
    ((interrupted)) && shown="$wall (stopped)"
    echo "| $t | $shown | $cpus | $execs | $rate | $percpu | $cov | $ft | $seeds → $corp | ${peak:--} MB | $crashes | $leaks | $timeouts | $ooms |" >"$dir/row"
    : >"$dir/goal"
    case $t in
        guest-protocol|host-frames|qmp|metrics-http)
            local need cpuneed verdict
            need=$(( rate > 0 ? (10000000 + rate - 1) / rate : 0 ))
            cpuneed=$(( percpu > 0 ? (10000000 + percpu - 1) / percpu : 0 ))
            if ((execs >= 10000000)); then verdict="met"; else verdict="not met: at $rate exec/s it takes FUZZ_SECONDS=$need (at $percpu executions per CPU second, $cpuneed CPU seconds)"; fi
            echo "- $t: $execs executions in $wall s ($cpus CPU s$( ((workers > 1)) && echo ", $workers processes"))$( ((interrupted)) && echo ", stopped by hand") — goal of 10 million $verdict." >"$dir/goal" ;;
    esac
}

# FUZZ_JOBS targets at a time, each one process (the machine's two cores are
# shared, so the default is one).
for t in "${targets[@]}"; do
    while (( $(jobs -rp | wc -l) >= jobs )); do wait -n || true; done
    fuzz_one "$t" &
done
wait

rows=()
goals=()
failed=0
for t in "${targets[@]}"; do
    rows+=("$(cat "$work/$t/row")")
    goal=$(cat "$work/$t/goal")
    [[ -z $goal ]] || goals+=("$goal")
    (( $(cat "$work/$t/failed") == 0 )) || failed=1
done

{
    echo "# make fuzz"
    echo
    echo "Commit $commit$dirty, $started, $(nproc) CPUs ($cpu), kernel $(uname -r), load average at start $load; $swiftv."
    echo
    echo "Command: \`FUZZ_SECONDS=$seconds${runs:+ FUZZ_RUNS=$runs}$( ((jobs > 1)) && echo " FUZZ_JOBS=$jobs")$( ((workers > 1)) && echo " FUZZ_WORKERS=$workers")${FUZZ_TARGETS:+ FUZZ_TARGETS=\"$FUZZ_TARGETS\"} make fuzz\` (scripts/fuzz.sh): \`swift build -c release --scratch-path $scratch -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library --product fuzz-NAME\` with BALLOOND_FUZZ=1, then per target \`fuzz-NAME CORPUS -max_total_time=$seconds${runs:+ -runs=$runs$( ((workers > 1)) && echo "/$workers")} -max_len=N -rss_limit_mb=$rss -timeout=$timeout -print_final_stats=1\` (-max_len: $(for t in "${targets[@]}"; do printf '%s %s, ' "$t" "$(max_len_of "$t")"; done | sed 's/, $//'); $workers process(es) per target on its one corpus directory, $jobs target(s) at a time; leak detection at ASan's default: on), the corpus a copy of fuzz/corpus/NAME. Bodies and invariants: Sources/BalloonFuzz, docs/fuzzing.md."
    echo
    echo "| target | wall s | CPU s | executions | exec/s | exec per CPU s | cov | ft | corpus (seeds → end) | peak RSS | crashes | leaks | timeouts | OOMs |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "CPU s: user + system seconds of the fuzzer process (the rest of the wall time went to other load); exec per CPU s: executions ÷ CPU s, the target's own speed. cov: edges covered (libFuzzer's coverage counters); ft: features (edge × hit-count buckets and value profiles)."
    if ((${#goals[@]})); then
        echo
        echo "Goal (issue 13): at least 10 million executions for each host-side and guest-side protocol target, 0 crashes, leaks and timeouts."
        echo
        printf '%s\n' "${goals[@]}"
    fi
} >"$results"
echo "fuzz: wrote $results" >&2
cat "$results"
exit $failed
