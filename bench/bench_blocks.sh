#!/usr/bin/env bash
# bench/bench_blocks.sh [BUILDDIR] [SIZES...]: issue 8's decision in figures. For each size, the writer
# records a flooding program (bench/capture_bench, depth 16, as bench/bench_writer.sh does), then
# bench/block_format re-encodes that trace's events as blocks of 65,536 (column by column, varint deltas)
# and reads them back, comparing every value. Prints bytes per event of both and the block rates.
# Not a pass/fail test; results go to bench/RESULTS.md.
set -eu
build=${1:-build}
shift || true
sizes=${*:-1000000 10000000}
cd "$(dirname "$0")/.."
ninja -C "$build" bench/capture_bench bench/block_format >/dev/null
sim=$PWD/$build/simgpu
lib=$PWD/$build/interpose/libcumemtrace.so
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for n in $sizes; do
    rm -f "$tmp"/w.db*
    LD_LIBRARY_PATH=$sim LD_PRELOAD=$lib CUMEMTRACE_OUTPUT=$tmp/w.db CUMEMTRACE_STACK_DEPTH=16 \
        "$build/bench/capture_bench" 16 $((n / 2)) >/dev/null
    flock -s "$tmp/w.db" true # final
    "$build/bench/block_format" "$tmp/w.db" "$tmp/b.db"
done
