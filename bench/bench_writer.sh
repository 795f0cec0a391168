#!/usr/bin/env bash
# bench/bench_writer.sh [BUILDDIR] [SIZES...]: the writer's figures at several trace sizes, to show that
# cost per event stays flat (issue 8 asks for 10 K, 100 K, 1 M and 10 M events). For each size one
# program (bench/capture_bench, depth 16, alloc/free pairs as fast as the simulated driver answers)
# floods the queue, so the streaming rate is the writer's; then, after the program exited, the writer
# finalizes (partial indexes, end of WAL) off its exit path. Columns: events, lost, streaming M events/s
# (first to last event), how long after the program's exit the file was final and that as events/s,
# bytes per event on disk. Not a pass/fail test; results go to bench/RESULTS.md.
set -eu
build=${1:-build}
shift || true
sizes=${*:-10000 100000 1000000 10000000}
cd "$(dirname "$0")/.."
ninja -C "$build" bench/capture_bench schema/libcumemtrace_sqlite.so >/dev/null
bench=$build/bench/capture_bench
sim=$PWD/$build/simgpu
lib=$PWD/$build/interpose/libcumemtrace.so
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
now() { date +%s%N; }
echo "| events | lost | streaming (M events/s) | final after exit (s) | finalize (M events/s) | bytes/event |"
echo "|---:|---:|---:|---:|---:|---:|"
for n in $sizes; do
    rm -f "$tmp"/w.db*
    LD_LIBRARY_PATH=$sim LD_PRELOAD=$lib CUMEMTRACE_OUTPUT=$tmp/w.db CUMEMTRACE_STACK_DEPTH=16 \
        "$bench" 16 $((n / 2)) >/dev/null
    t1=$(now)
    flock -s "$tmp/w.db" true # the writer holds its lock until the file is final
    t2=$(now)
    fin=$(echo "($t2 - $t1) / 1000000000" | bc -l)
    sqlite3 -cmd ".load $PWD/$build/schema/libcumemtrace_sqlite" "$tmp/w.db" "SELECT printf('| %d | %d | %.2f | %.3f | %.2f | %.1f |', p.events_written, p.events_lost,
                         p.events_written / ((max(e.ts_ns) - min(e.ts_ns)) / 1e9) / 1e6, $fin,
                         p.events_written / max($fin, 0.000001) / 1e6,
                         (SELECT page_count * page_size FROM pragma_page_count, pragma_page_size) * 1.0 / p.events_written)
                         FROM process p, events e"
done
