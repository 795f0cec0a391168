#!/bin/sh
# bench/bench_capture.sh [BUILD_DIR] [DEPTH] [PAIRS]: what recording costs the application, measured in one
# run against two baselines:
#   - the same loop without the interposer (the simulated driver's own cost), and
#   - heaptrack (Debian's, if installed): its added cost per malloc/free pair at the same stack depth,
#     the cost users of a native memory profiler already accept.
# Then the writer's sustained rate: events written per second of the traced run, from the trace itself.
# A benchmark, never a pass/fail test: these machines are noisy, so compare the ratios, run it twice.
set -eu
build=${1:-build}
depth=${2:-64}
pairs=${3:-200000}
cd "$(dirname "$0")/.."
ninja -C "$build" bench/capture_bench schema/libcumemtrace_sqlite.so >/dev/null
bench=$build/bench/capture_bench
sim=$PWD/$build/simgpu
lib=$PWD/$build/interpose/libcumemtrace.so
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ns() { "$@" | awk '/ns_per_pair/ {print $2}'; }

plain=$(LD_LIBRARY_PATH=$sim ns "$bench" "$depth" "$pairs")
traced=$(LD_LIBRARY_PATH=$sim LD_PRELOAD=$lib CUMEMTRACE_OUTPUT=$tmp/t.db CUMEMTRACE_STACK_DEPTH=$depth \
         ns "$bench" "$depth" "$pairs")
ours=$(echo "($traced - $plain) / 2" | bc -l) # two recorded events per pair
printf 'depth %d, %d alloc/free pairs\n' "$depth" "$pairs"
printf '  driver alone          %8.1f ns per pair\n' "$plain"
printf '  under cumemtrace      %8.1f ns per pair: +%.1f ns per recorded event\n' "$traced" "$ours"

if command -v heaptrack >/dev/null 2>&1; then
    mplain=$(ns "$bench" "$depth" "$pairs" malloc)
    mtraced=$(cd "$tmp" && heaptrack -o "$tmp/ht" "$PWD/../$bench" "$depth" "$pairs" malloc 2>/dev/null |
              awk '/ns_per_pair/ {print $2}' || true)
    if [ -z "$mtraced" ]; then # heaptrack prints the program's output; some versions want an absolute path
        mtraced=$(heaptrack -o "$tmp/ht" "$(realpath "$bench")" "$depth" "$pairs" malloc 2>/dev/null |
                  awk '/ns_per_pair/ {print $2}')
    fi
    theirs=$(echo "$mtraced - $mplain" | bc -l) # heaptrack unwinds malloc only; free is nearly free
    printf '  heaptrack per malloc  %8.1f ns per pair (plain %.1f): +%.1f ns per recorded malloc\n' \
        "$mtraced" "$mplain" "$theirs"
    printf '  ratio                 cumemtrace / heaptrack = %.2f\n' "$(echo "$ours / $theirs" | bc -l)"
else
    echo "  heaptrack not installed (apt-get install heaptrack): no baseline ratio"
fi

# Writer throughput: the application produces events faster than any SQLite writer can take them, so
# the queue stays full and producers wait: from the first to the last event the rate is the writer's.
# "with finalize" adds building the indexes at exit.
many=$((pairs * 5))
now() { date +%s%N; }
t0=$(now)
LD_LIBRARY_PATH=$sim LD_PRELOAD=$lib CUMEMTRACE_OUTPUT=$tmp/w.db CUMEMTRACE_STACK_DEPTH=16 \
    "$bench" 16 "$many" >/dev/null
t1=$(now)
flock -s "$tmp/w.db" true # the writer holds its lock until the file is final
t2=$(now)
sqlite3 -cmd ".load $PWD/$build/schema/libcumemtrace_sqlite" "$tmp/w.db" "SELECT printf('  writer                %d events: %.2f M events/s streaming (%d lost)',
                     p.events_written,
                     p.events_written / ((max(e.ts_ns) - min(e.ts_ns)) / 1e9) / 1e6, p.events_lost)
                     FROM process p, events e"
printf '  the program exited %.3f s after it started; the trace was final %.3f s later (off its exit path)\n' \
    "$(echo "($t1 - $t0) / 1000000000" | bc -l)" "$(echo "($t2 - $t1) / 1000000000" | bc -l)"
# The writer alone: every event is queued before it starts (a queue that holds them all, the writer held
# back 4 s), so nothing competes with it for the CPU. From the end of the hold to the final file:
# draining, committing, building the indexes.
t0=$(now)
LD_LIBRARY_PATH=$sim LD_PRELOAD=$lib CUMEMTRACE_OUTPUT=$tmp/a.db CUMEMTRACE_STACK_DEPTH=16 \
    CUMEMTRACE_QUEUE=$((pairs * 2)) CUMEMTRACE_DEBUG_WRITER_DELAY_MS=4000 "$bench" 16 "$pairs" >/dev/null
flock -s "$tmp/a.db" true
t2=$(now)
secs=$(echo "($t2 - $t0) / 1000000000 - 4" | bc -l)
n=$(sqlite3 "$tmp/a.db" "SELECT events_written FROM process")
printf '  writer alone          %d events in %.2f s, finalize included: %.2f M events/s\n' "$n" "$secs" \
    "$(echo "$n / $secs / 1000000" | bc -l)"
bytes=$(stat -c %s "$tmp/a.db")
printf '  on disk               %d bytes for %d events: %.1f bytes per event\n' "$bytes" "$n" "$(echo "$bytes / $n" | bc -l)"
