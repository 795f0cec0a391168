#!/bin/sh
# bench/bench_report.sh [BUILD_DIR] [EVENTS]: times `cumemtrace report --json` on a synthetic trace against the
# same peak computed by one SQL window-function query through the sqlite3 command, on the same file, in the
# same run, and prints both answers and the ratio. A benchmark, never a pass/fail test.
set -eu
build=${1:-build}
events=${2:-10000000}
cd "$(dirname "$0")/.."
gcc_out=${TMPDIR:-/tmp}/cmt-bench
mkdir -p "$gcc_out"
trace=$gcc_out/bench-$events.db
gen=$build/bench/gen_trace
ninja -C "$build" bench/gen_trace schema/libcumemtrace_sqlite.so >/dev/null
if [ ! -f "$trace" ]; then
    t0=$(date +%s.%N)
    "$gen" "$trace" "$events"
    t1=$(date +%s.%N)
    echo "generated $trace ($(du -h "$trace" | cut -f1)) in $(echo "$t1 - $t0" | bc) s"
fi
# Warm the page cache for both contenders alike.
cat "$trace" >/dev/null

t0=$(date +%s.%N)
"$build/analysis/cumemtrace" report --json "$trace" >"$gcc_out/report.json"
t1=$(date +%s.%N)
ours=$(echo "$t1 - $t0" | bc)
peak_ours=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['peak_bytes'], r['peak_seq'])" "$gcc_out/report.json")

# Device memory = kinds device (1) and stream_ordered (4); a free takes its size and kind from the previous
# event at its address (its allocation), found with LAG over the address.
sql="WITH d AS (
  SELECT seq, op,
         CASE WHEN op = 1 THEN size ELSE -lag(size) OVER w END AS delta,
         CASE WHEN op = 1 THEN kind ELSE lag(kind) OVER w END AS k
  FROM events WHERE result = 0 AND op IN (1, 2)
  WINDOW w AS (PARTITION BY address ORDER BY seq)),
m AS (SELECT seq, sum(delta) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING) AS live FROM d WHERE k IN (1, 4))
SELECT live, seq FROM m ORDER BY live DESC, seq LIMIT 1;"
t0=$(date +%s.%N)
# the trace keeps its events in blocks (schema version 5): the shell reads them through our extension,
# whose decoding is part of its time
peak_sql=$(sqlite3 -readonly -separator ' ' -cmd ".load $build/schema/libcumemtrace_sqlite" "$trace" "$sql")
t1=$(date +%s.%N)
theirs=$(echo "$t1 - $t0" | bc)

echo "events:              $events"
echo "cumemtrace report:   ${ours} s   peak bytes/seq: $peak_ours   (full report: top stacks, leaks, failures, histogram)"
echo "sqlite3 window SQL:  ${theirs} s   peak bytes/seq: $peak_sql   (the peak only)"
echo "ratio sql/ours:      $(echo "scale=2; $theirs / $ours" | bc)"
[ "$peak_ours" = "$peak_sql" ] && echo "answers agree" || echo "ANSWERS DIFFER"
