#!/bin/sh
# bench/bench_viewer.sh [BUILD_DIR] [EVENTS]: the viewer page of a synthetic trace (bench/gen_trace, default 1 M
# events): how long `report --html` takes, the page's size and what it holds, and, where chromium, node and
# playwright-core are installed (tests/browser/install.sh), how long chromium takes to open it (navigation
# to the page's data-ready mark, through tests/browser/drive.js) and to redraw the whole run and a zoom.
# A benchmark, never a pass/fail test.
set -eu
build=${1:-build}
events=${2:-1000000}
cd "$(dirname "$0")/.."
out=${TMPDIR:-/tmp}/cmt-bench-viewer
mkdir -p "$out"
trace=$out/viewer-$events.db
ninja -C "$build" bench/gen_trace analysis/cumemtrace >/dev/null
[ -f "$trace" ] || "$build/bench/gen_trace" "$trace" "$events"
page=$out/viewer-$events.html
t0=$(date +%s.%N)
"$build/analysis/cumemtrace" report --html "$page" "$trace" >/dev/null 2>&1
t1=$(date +%s.%N)
echo "report --html: $(echo "$t1 - $t0" | bc) s; page $(stat -c %s "$page") bytes"
python3 - "$page" <<'PY'
import json, re, sys
d = json.loads(re.search(r"id='cmt-data'>(.*?)</script>", open(sys.argv[1]).read(), re.S).group(1))
lv = d["runs"][0]["levels"]["driver"]
print("allocations %d: %d drawn one by one, %d merged (below %d bytes); data: report %d bytes, runs %d bytes"
      % (lv["allocs"], len(lv["size"]), lv["merged_allocs"], lv["threshold_bytes"], len(json.dumps(d["report"])),
         len(json.dumps(d["runs"]))))
PY
if [ -f tests/browser/node_modules/playwright-core/package.json ] && command -v node >/dev/null; then
    steps=$out/steps.json
    cat >"$steps" <<'JSON'
[{"eval": "(function(){var T=cmtViewer.timeline(), t=performance.now(); T.v0=0; T.v1=T.P.dur; cmtViewer.drawNow(); var whole=performance.now()-t; t=performance.now(); T.v0=T.P.dur*0.5; T.v1=T.P.dur*0.52; cmtViewer.drawNow(); return {redraw_whole_ms: Math.round(whole), redraw_zoom_2pct_ms: Math.round(performance.now()-t)}})()"},
 {"screenshot": "viewer-bench"}]
JSON
    for i in 1 2 3; do
        node tests/browser/drive.js "$page" "$out" "$steps" | python3 -c "
import json, sys
o = json.load(sys.stdin)
print('open in chromium: %d ms (to data-ready), %s; console %s, requests %s' % (o['load_ms'], o['results'][0], o['console'], o['requests']))"
    done
fi
