"""Phases: libcumemtrace.so as an NVTX injection library (interpose/cmt_nvtx.c), the ranges and marks tables
(schema version 3), and what report, timeline and diff say about them (analysis/ranges.c).

tests/clients/nvtx_client.c is built against the toolkit's nvtx3 headers; its modes and their figures are
described at its top. Every expected figure below is computed by hand from those allocations."""
import json
import os
import subprocess

import unittest

import cmtlib
from cmtlib import CUMEMTRACE, INTERPOSER, MiB, TraceTest, client, run, sim_env

DEFAULT_VENV = os.path.expanduser("~/.cache/cumemtrace/venv-torch-2.14.1/bin/python")
TORCH_PY = os.environ.get("CMT_TORCH_PYTHON") or (DEFAULT_VENV if os.path.exists(DEFAULT_VENV) else "")
if cmtlib.SANITIZER_PRELOAD:
    TORCH_SKIP = "real PyTorch runs in the plain suite only (sanitizer build)"
elif not TORCH_PY or not os.path.exists(TORCH_PY):
    TORCH_SKIP = "no PyTorch environment (scripts/torch-env could not make one)"
else:
    TORCH_SKIP = None

RANGES_SQL = ("SELECT r.name, r.kind, r.domain, r.depth, p.name, r.end_ns IS NOT NULL FROM ranges r"
              " LEFT JOIN ranges p ON p.range_id = r.parent_id ORDER BY r.start_seq")

PHASE_ROWS = [
    ("init", "push", None, 0, None, 1),
    ("step", "push", None, 0, None, 1),
    ("forward", "push", None, 1, "step", 1),
    ("backward", "push", None, 1, "step", 1),
    ("optimizer", "push", None, 1, "step", 1),
    ("step", "push", None, 0, None, 1),
    ("forward", "push", None, 1, "step", 1),
    ("backward", "push", None, 1, "step", 1),
    ("optimizer", "push", None, 1, "step", 1),
]

# init holds 8 MiB; step 0: forward 8+4 = 12, backward 12+2 = 14 (then 10), optimizer 10+1 = 11;
# step 1: forward 8+6 = 14, backward 14+2 = 16 (the peak), optimizer 11.
PHASE_PEAKS = [
    {"name": "backward", "count": 2, "peak_bytes": 16 * MiB},
    {"name": "step", "count": 2, "peak_bytes": 16 * MiB},
    {"name": "forward", "count": 2, "peak_bytes": 14 * MiB},
    {"name": "optimizer", "count": 2, "peak_bytes": 11 * MiB},
    {"name": "init", "count": 1, "peak_bytes": 8 * MiB},
]


def cmt(*args, check=True):
    p = subprocess.run([CUMEMTRACE] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError("cumemtrace %s exited %d\n%s%s" % (args, p.returncode, p.stdout, p.stderr))
    return p


def report(db):
    return json.loads(cmt("report", "--json", db).stdout)


class Nvtx(TraceTest):
    def nvtx(self, mode, name="t.db", inject=True):
        extra = {"NVTX_INJECTION64_PATH": INTERPOSER} if inject else None
        env = sim_env(output=self.path(name), extra=extra)
        if not inject:
            env.pop("NVTX_INJECTION64_PATH", None)
        p = run([client("nvtx_client"), mode], env)
        self.trace_done = True
        return p, self.path(name)

    def run_cmd(self, mode, name="run.db"):
        out = self.path(name)
        env = sim_env(preload=False)
        env.pop("NVTX_INJECTION64_PATH", None)
        p = run([CUMEMTRACE, "run", "-o", out, "--", client("nvtx_client"), mode], env)
        return p, out

    def test_phases_under_run(self):
        p, db = self.run_cmd("phases")
        self.assertEqual(self.query(db, RANGES_SQL), PHASE_ROWS)
        self.assertEqual(self.scalar(db, "PRAGMA user_version"), 5)
        # "init" was pushed before the process's first CUDA call (kept until recording began) and holds
        # its first allocation; each step holds 3 allocations and 3 frees
        self.assertEqual(self.query(db, "SELECT r.range_id, count(*) FROM ranges r JOIN events e"
                                        " ON e.seq > r.start_seq AND e.seq < r.end_seq WHERE r.depth = 0"
                                        " GROUP BY r.range_id ORDER BY r.range_id"), [(1, 1), (2, 6), (6, 6)])
        r = report(db)
        self.assertEqual(r["peak_bytes"], 16 * MiB)
        self.assertEqual(r["ranges_at_peak"], ["step", "backward"])
        self.assertEqual(r["range_peaks"], PHASE_PEAKS)
        self.assertEqual(self.scalar(db, "SELECT events_lost FROM process"), 0)
        text = cmt("report", db).stdout
        self.assertIn("at the peak: step > backward", text)

    def test_phases_under_plain_preload(self):
        p, db = self.nvtx("phases")
        self.assertEqual(self.query(db, RANGES_SQL), PHASE_ROWS)
        self.assertEqual(report(db)["range_peaks"], PHASE_PEAKS)
        # without NVTX_INJECTION64_PATH, NVTX never calls us: memory only
        p, db = self.nvtx("phases", name="plain.db", inject=False)
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM ranges"), 0)
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM events"), 14)
        r = report(db)
        self.assertEqual((r["ranges_at_peak"], r["range_peaks"]), ([], []))

    def test_threads_marks_domains(self):
        p, db = self.nvtx("threads")
        rows = self.query(db, "SELECT name, kind, domain, category, depth, tid = end_tid FROM ranges ORDER BY start_seq")
        self.assertEqual(rows, [("load", "startend", None, 0, None, 0),
                                ("worker", "push", None, 0, 0, 1),
                                ("registered phase", "push", "mylib", 7, 0, 1),
                                ("wide \u00e9t\u00e9 \u2603", "push", None, 0, 0, 1)])
        main_tid = self.scalar(db, "SELECT tid FROM ranges WHERE name = 'load'")
        worker_tid = self.scalar(db, "SELECT end_tid FROM ranges WHERE name = 'load'")
        self.assertEqual(self.scalar(db, "SELECT tid FROM ranges WHERE name = 'worker'"), worker_tid)
        self.assertNotEqual(main_tid, worker_tid)
        self.assertEqual(self.query(db, "SELECT name, domain, category, tid FROM marks ORDER BY seq"),
                         [("checkpoint", None, 0, main_tid), ("lib mark", "mylib", 7, main_tid)])
        r = report(db)
        # 1 MiB base; the worker's 3 MiB inside load and worker; 5 MiB inside mylib's range (1 + 5 = 6,
        # the peak); the wide range starts with 6 MiB live and frees 5.
        self.assertEqual(r["peak_bytes"], 6 * MiB)
        self.assertEqual(r["ranges_at_peak"], ["mylib:registered phase"])
        self.assertEqual(r["range_peaks"], [
            {"name": "mylib:registered phase", "count": 1, "peak_bytes": 6 * MiB},
            {"name": "wide \u00e9t\u00e9 \u2603", "count": 1, "peak_bytes": 6 * MiB},
            {"name": "load", "count": 1, "peak_bytes": 4 * MiB},
            {"name": "worker", "count": 1, "peak_bytes": 4 * MiB}])

    def test_hostile_use_is_harmless(self):
        p, db = self.nvtx("hostile")
        rows = self.query(db, "SELECT name, depth FROM ranges ORDER BY start_seq")
        # seven pushes without a usable message, a 10000-byte one kept to 248 bytes, invalid code points
        # as '?', and "after" around the allocation; the bogus domain's push and pops are no-ops, the
        # pops without pushes record nothing.
        self.assertEqual(rows, [(None, i) for i in range(7)] + [("x" * 248, 7), ("??a", 8), ("after", 9)])
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM ranges WHERE end_ns IS NULL"), 0)
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM marks"), 0)
        r = report(db)
        self.assertEqual(r["ranges_at_peak"], ["(unnamed)"] * 7 + ["x" * 248, "??a", "after"])
        self.assertEqual(r["peak_bytes"], MiB)

    def test_no_cuda_no_trace_same_output(self):
        plain = run([client("nvtx_client"), "nocuda"], sim_env(preload=False))
        out = self.path("nothing.db")
        env = sim_env(preload=False)
        p = run([CUMEMTRACE, "run", "-o", out, "--", client("nvtx_client"), "nocuda"], env)
        self.assertEqual((p.stdout, p.returncode), (plain.stdout, 0))
        self.assertEqual(plain.stdout, "ok\n")
        self.assertIn("no trace written", p.stderr)
        self.assertFalse(os.path.exists(out))
        p, db = self.nvtx("nocuda", name="pre.db")
        self.assertEqual(p.stdout, "ok\n")
        self.assertFalse(os.path.exists(db))

    def test_ranges_open_at_exit(self):
        p, db = self.nvtx("open")
        self.assertEqual(self.query(db, "SELECT name, kind, end_ns, end_seq FROM ranges ORDER BY start_seq"),
                         [("outer", "push", None, None), ("never", "startend", None, None)])
        r = report(db)
        self.assertEqual(r["ranges_at_peak"], ["outer"])
        self.assertEqual(r["range_peaks"], [{"name": "never", "count": 1, "peak_bytes": 2 * MiB},
                                            {"name": "outer", "count": 1, "peak_bytes": 2 * MiB}])

    def test_run_keeps_another_tools_injection(self):
        out = self.path("other.db")
        env = sim_env(preload=False, extra={"NVTX_INJECTION64_PATH": "/nonexistent/libother.so"})
        p = run([CUMEMTRACE, "run", "-o", out, "--", client("nvtx_client"), "phases"], env)
        self.assertIn("NVTX_INJECTION64_PATH is set (/nonexistent/libother.so)", p.stderr)
        self.assertEqual(self.scalar(out, "SELECT count(*) FROM ranges"), 0)
        self.assertEqual(self.scalar(out, "SELECT count(*) FROM events"), 14)

    def test_timeline_slices(self):
        p, db = self.nvtx("phases")
        out = self.path("t.json")
        cmt("timeline", "-o", out, db)
        with open(out) as f:
            ev = [e for e in json.load(f)["traceEvents"] if e.get("cat") == "nvtx"]
        tid = self.scalar(db, "SELECT DISTINCT tid FROM ranges")
        pid = self.scalar(db, "SELECT pid FROM process")
        self.assertEqual([(e["ph"], e["name"], e["pid"], e["tid"]) for e in ev],
                         [("X", r[0], pid, tid) for r in PHASE_ROWS])
        # nesting as Perfetto draws it: every phase inside its step
        steps = [e for e in ev if e["name"] == "step"]
        for e in ev:
            if e["name"] in ("forward", "backward", "optimizer"):
                self.assertTrue(any(s["ts"] <= e["ts"] and e["ts"] + e["dur"] <= s["ts"] + s["dur"] for s in steps))
        self.assertEqual([e["args"]["peak_bytes"] for e in ev if e["name"] == "backward"], [14 * MiB, 16 * MiB])
        p, db = self.nvtx("threads", name="th.db")
        cmt("timeline", "-o", out, db)
        with open(out) as f:
            ev = [e for e in json.load(f)["traceEvents"] if e.get("cat") == "nvtx"]
        load = [(e["ph"], e["id"]) for e in ev if e["name"] == "load"]
        self.assertEqual(load, [("b", 1), ("e", 1)])

    def test_html_bands(self):
        """The viewer page carries every range of the run with its exact peak (the figures of PHASE_PEAKS per
        instance), its nesting and its times, and the range stack at the peak (tests/test_viewer.py hovers it)."""
        p, db = self.nvtx("phases")
        out = self.path("r.html")
        cmt("report", "--html", out, db)
        with open(out, encoding="utf-8") as f:
            page = f.read()
        import re
        d = json.loads(re.search(r"<script type='application/json' id='cmt-data'>(.*?)</script>", page, re.S).group(1))
        r0 = d["runs"][0]
        rg = r0["ranges"]
        self.assertEqual((rg["count"], rg["drawn"]), (9, 9))
        self.assertEqual([d["strings"][i] for i in rg["name"]], [r[0] for r in PHASE_ROWS])
        self.assertEqual(rg["depth"], [r[3] for r in PHASE_ROWS])
        # parents are indexes in the same columns: init, step 0 (1), its three phases, step 1 (5), its three
        self.assertEqual(rg["parent"], [-1, -1, 1, 1, 1, -1, 5, 5, 5])
        self.assertEqual(rg["domain"], [-1] * 9)
        self.assertEqual(rg["open"], [0] * 9)
        # init 8; step 0: 14 (forward 12, backward 14, optimizer 11); step 1: 16 (forward 14, backward 16, optimizer 11)
        self.assertEqual(rg["peak_bytes"], [8 * MiB, 14 * MiB, 12 * MiB, 14 * MiB, 11 * MiB,
                                            16 * MiB, 14 * MiB, 16 * MiB, 11 * MiB])
        rows = self.query(db, "SELECT range_id, tid, start_ns, end_ns FROM ranges ORDER BY start_seq")
        self.assertEqual(rg["id"], [r[0] for r in rows])
        self.assertEqual(rg["tid"], [r[1] for r in rows])
        # exact times, on the page's axis (ns since the run's start)
        t0 = rows[0][2] - rg["start_ns"][0]
        self.assertEqual(rg["start_ns"], [r[2] - t0 for r in rows])
        self.assertEqual(rg["end_ns"], [r[3] - t0 for r in rows])
        self.assertEqual(r0["ranges_at_peak"], ["step", "backward"])
        self.assertEqual(r0["ranges_at_peak_thread"], {"tid": rows[0][1], "allocating_thread": True})
        self.assertTrue(rg["start_ns"][7] <= r0["peak_ns"] <= rg["end_ns"][7])  # the peak lies in step 1's backward
        # a run still inside its ranges at exit: both drawn to the end of the run and flagged open
        env = sim_env(output=self.path("f.db"), extra={"NVTX_INJECTION64_PATH": INTERPOSER,
                                                        "SIMCUDA_FAIL": "cuMemAlloc_v2:5:2"})
        run_client = run([client("nvtx_client"), "phases"], env, check=False)
        self.assertEqual(run_client.returncode, 1)
        cmt("timeline", "-o", self.path("f.html"), self.path("f.db"))
        with open(self.path("f.html"), encoding="utf-8") as f:
            page = f.read()
        d = json.loads(re.search(r"<script type='application/json' id='cmt-data'>(.*?)</script>", page, re.S).group(1))
        rg = d["runs"][0]["ranges"]
        self.assertEqual([(d["strings"][n], o) for n, o in zip(rg["name"], rg["open"])],
                         [("init", 0), ("step", 0), ("forward", 0), ("backward", 0), ("optimizer", 0), ("step", 1),
                          ("forward", 1)])
        self.assertEqual(rg["end_ns"][5:], [d["runs"][0]["duration_ns"]] * 2)

    def test_svg_bands(self):
        """timeline -o X.svg: the phase bands under the chart, on its time axis (x 80..920 over the run), one row per
        thread and level, each band titled with its exact figures; a run without ranges keeps the chart alone."""
        import xml.etree.ElementTree as ET
        p, db = self.nvtx("phases")
        out = self.path("t.svg")
        cmt("timeline", "-o", out, db)
        ns = {"s": "http://www.w3.org/2000/svg"}
        root = ET.parse(out).getroot()
        chart, bands = root.findall("s:svg", ns)
        self.assertEqual(float(bands.get("y")), float(chart.get("height")))
        self.assertEqual(float(root.get("height")), float(chart.get("height")) + float(bands.get("height")))
        groups = bands.findall("s:g", ns)
        self.assertEqual([g.find("s:title", ns).text for g in groups],
                         ["init: peak 8.0 MiB", "step: peak 14.0 MiB", "step: peak 16.0 MiB",
                          "forward: peak 12.0 MiB", "backward: peak 14.0 MiB", "optimizer: peak 11.0 MiB",
                          "forward: peak 14.0 MiB", "backward: peak 16.0 MiB", "optimizer: peak 11.0 MiB"])
        tid = self.scalar(db, "SELECT DISTINCT tid FROM ranges")
        self.assertEqual([t.text for t in bands.findall("s:text", ns) if t.text.startswith("tid")], ["tid %d" % tid] * 2)
        # the last optimizer's band lies where its start and end fall on the axis (x = 80 + 840 * (t - start) /
        # span; the axis runs from the process's start to its end or last event), at least a pixel wide, to the
        # 0.1 px the SVG is written in
        start, pend = self.scalar(db, "SELECT start_ns FROM process"), self.scalar(db, "SELECT end_ns FROM process")
        tend = max(pend or 0, self.scalar(db, "SELECT max(ts_ns) FROM events"))
        ostart = self.scalar(db, "SELECT max(start_ns) FROM ranges WHERE name = 'optimizer'")
        oend = self.scalar(db, "SELECT end_ns FROM ranges WHERE name = 'optimizer' AND start_ns = %d" % ostart)
        x0, x1 = (80 + 840 * (t - start) / (tend - start) for t in (ostart, oend))
        last = groups[-1].find("s:rect", ns)
        self.assertAlmostEqual(float(last.get("x")), x0, delta=0.06)
        self.assertAlmostEqual(float(last.get("x")) + float(last.get("width")), max(x1, x0 + 1), delta=0.11)
        _, plain = self.nvtx("phases", name="plain.db", inject=False)
        cmt("timeline", "-o", out, plain)
        root = ET.parse(out).getroot()
        self.assertEqual((root.find("s:title", ns).text, root.findall("s:svg", ns)), ("cumemtrace: device memory over time", []))

    def test_memory_extension_heaps_and_regions(self):
        p, db = self.nvtx("mem")
        pool, other, scratch = [r[0] for r in self.query(db, "SELECT seq FROM events WHERE op = 1 ORDER BY seq")]
        base = self.scalar(db, "SELECT address FROM events WHERE seq = ?", (pool,))
        self.assertEqual(self.query(db, "SELECT heap_id, domain, name, usage, size, end_ns IS NULL FROM mem_heaps"),
                         [(1, "alloc", "pool", 1, 64 * MiB, 1), (2, "alloc", "scratch", 1, 16 * MiB, 0)])
        self.assertEqual(self.scalar(db, "SELECT address FROM mem_heaps WHERE heap_id = 1"), base)
        sbase = self.scalar(db, "SELECT address FROM events WHERE seq = ?", (scratch,))
        self.assertEqual(self.query(db, "SELECT heap_id, address, size, name, end_ns IS NULL FROM mem_regions"
                                        " ORDER BY region_id"),
                         [(1, base, 8 * MiB, "weights", 1), (1, base + 8 * MiB, 6 * MiB, None, 1),
                          (1, base + 12 * MiB, 2 * MiB, None, 0), (2, sbase, 16 * MiB, None, 0)])
        # every region lies in the driver allocation its heap was carved from
        self.assertEqual(self.query(db, "SELECT event_seq FROM mem_region_owners ORDER BY region_id"),
                         [(pool,), (pool,), (pool,), (scratch,)])
        r = report(db)
        self.assertEqual(r["peak_bytes"], 80 * MiB)
        self.assertEqual([(h["name"], h["size"], h["event_seq"], h["regions_at_peak"], h["region_bytes_at_peak"],
                           h["regions_at_end"], h["region_bytes_at_end"], h["registered_at_end"]) for h in r["nvtx_heaps"]],
                         [("alloc:pool", 64 * MiB, pool, 2, 14 * MiB, 2, 14 * MiB, True),
                          ("alloc:scratch", 16 * MiB, scratch, 0, 0, 0, 0, False)])
        self.assertNotEqual(other, pool)

    def test_ranges_at_a_failure(self):
        # the 5th allocation (step 1's forward, 6 MiB) fails; the client stops there, inside both ranges
        env = sim_env(output=self.path("f.db"), extra={"NVTX_INJECTION64_PATH": INTERPOSER,
                                                        "SIMCUDA_FAIL": "cuMemAlloc_v2:5:2"})
        p = run([client("nvtx_client"), "phases"], env, check=False)
        self.assertEqual(p.returncode, 1)
        db = self.path("f.db")
        r = report(db)
        self.assertEqual([(f["size"], f["ranges"]) for f in r["failures"]], [(6 * MiB, ["step", "forward"])])
        self.assertEqual(self.query(db, "SELECT name FROM ranges WHERE end_ns IS NULL ORDER BY start_seq"),
                         [("step",), ("forward",)])
        self.assertIn("    in step > forward\n", cmt("report", db).stdout)

    def test_diff_aligned_by_step(self):
        _, a = self.nvtx("phases", name="a.db")
        env = sim_env(output=self.path("b.db"), extra={"NVTX_INJECTION64_PATH": INTERPOSER})
        run([client("nvtx_client"), "phases", "big"], env)
        b = self.path("b.db")
        d = json.loads(cmt("diff", "--json", "--align", "step", a, b).stdout)
        self.assertEqual(d["peak_delta_bytes"], 2 * MiB)
        self.assertEqual(d["phase_grew"], "backward")  # step grew as much, but backward is the deeper phase
        self.assertEqual([(p["name"], p["a_peak_bytes"], p["b_peak_bytes"], p["delta_bytes"]) for p in d["phases"]],
                         [("backward", 16 * MiB, 18 * MiB, 2 * MiB), ("step", 16 * MiB, 18 * MiB, 2 * MiB),
                          ("forward", 14 * MiB, 14 * MiB, 0), ("optimizer", 11 * MiB, 11 * MiB, 0),
                          ("init", 8 * MiB, 8 * MiB, 0)])
        al = d["aligned"]
        self.assertEqual((al["range"], al["a_count"], al["b_count"]), ("step", 2, 2))
        self.assertEqual([(i["index"], i["a_peak_bytes"], i["b_peak_bytes"], i["grew"]) for i in al["instances"]],
                         [(0, 14 * MiB, 14 * MiB, None), (1, 16 * MiB, 18 * MiB, "backward")])
        self.assertEqual([(p["name"], p["a_peak_bytes"], p["b_peak_bytes"]) for p in al["instances"][1]["phases"]],
                         [("backward", 16 * MiB, 18 * MiB), ("forward", 14 * MiB, 14 * MiB),
                          ("optimizer", 11 * MiB, 11 * MiB)])
        text = cmt("diff", "--align", "step", a, b).stdout
        self.assertIn("step 1: A 16.0 MiB, B 18.0 MiB, +2.0 MiB; grew most: backward", text)
        p = cmt("diff", "--align", "nope", a, b, check=False)
        self.assertEqual((p.returncode, p.stdout), (1, ""))
        self.assertEqual(p.stderr.strip().splitlines(), ["cumemtrace: diff: --align nope: neither A nor B has a range of that name"])

    def test_full_queue_loses_ranges_never_waits(self):
        # A 64-slot queue and a writer that starts a second late: the first allocation and the first 63
        # NVTX records (32 pushes, 31 pops) fit, the other 19937 of the 20000 are lost at once, counted,
        # never waited for (waiting would cost seconds); the memory event at the end waits for the writer,
        # as memory events do.
        import time
        env = sim_env(output=self.path("m.db"), extra={"NVTX_INJECTION64_PATH": INTERPOSER, "CUMEMTRACE_QUEUE": "64",
                                                        "CUMEMTRACE_DEBUG_WRITER_DELAY_MS": "1000"})
        t0 = time.monotonic()
        run([client("nvtx_client"), "many", "10000"], env)
        took = time.monotonic() - t0
        db = self.path("m.db")
        n, open_, lost = self.query(db, "SELECT count(*), sum(end_ns IS NULL), (SELECT events_lost FROM process)"
                                        " FROM ranges")[0]
        # every push is a row or lost; pops are received or lost
        self.assertTrue(10000 - n <= lost <= 20000 - n, (n, lost))
        self.assertEqual(self.query(db, "SELECT DISTINCT depth, parent_id FROM ranges"), [(0, None)])
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM events"), 2)
        if not cmtlib.SANITIZER_PRELOAD:  # an instrumented build may still be in the loop when the writer starts
            self.assertLess(took, 1.9)
            self.assertEqual((n, open_, lost), (32, 1, 19937))

class ImportedPhases(TraceTest):
    """Snapshot annotations (record_function) and user_metadata imported as ranges onto driver events."""

    def test_annotations_and_metadata_on_a_driver_trace(self):
        import pickle
        from tracebuilder import TraceBuilder
        t = TraceBuilder(self.path("t.db"))  # events at start + 1, 2, ... ms
        t.alloc(MiB)                  # seq 1 at 1 ms: 1 MiB live
        a = t.alloc(4 * MiB)          # seq 2 at 2 ms: 5
        t.free(a)                     # seq 3 at 3 ms: 1
        t.alloc(2 * MiB)              # seq 4 at 4 ms: 3
        b = t.alloc(8 * MiB)          # seq 5 at 5 ms: 11, the peak
        t.free(b)                     # seq 6 at 6 ms: 3
        db = t.close()
        base_us = 1_700_000_000_000_000  # the builder's start_unix_ns, in microseconds

        def us(ms):
            return base_us + int(ms * 1000)
        seg = 0x7f0000000000
        snap = {"segments": [{"device": 0, "address": seg, "total_size": 2 * MiB, "stream": 0,
                              "segment_type": "small", "blocks": [
                                  {"address": seg, "size": 1024, "requested_size": 1000, "state": "active_allocated"},
                                  {"address": seg + 1024, "size": 2 * MiB - 1024, "state": "inactive"}]}],
                "device_traces": [[
                    {"action": "segment_alloc", "addr": seg, "size": 2 * MiB, "stream": 0, "time_us": us(0.9)},
                    {"action": "alloc", "addr": seg, "size": 1000, "stream": 0, "time_us": us(4.2),
                     "user_metadata": "tagA"}]],
                "external_annotations": [
                    {"stage": "START", "name": "outer", "device": 0, "time_us": us(1.5)},
                    {"stage": "START", "name": "inner", "device": 0, "time_us": us(1.8)},
                    {"stage": "END", "name": "inner", "device": 0, "time_us": us(3.5)},
                    {"stage": "START", "name": "opt", "device": 0, "time_us": us(3.8)},
                    {"stage": "END", "name": "outer", "device": 0, "time_us": us(4.5)}]}
        pk = self.path("s.pickle")
        with open(pk, "wb") as f:
            pickle.dump(snap, f)
        cmt("import-torch", pk, "-o", db)
        self.assertEqual(self.query(db, "SELECT r.source, r.name, r.depth, p.name, r.end_ns IS NULL FROM ranges r"
                                        " LEFT JOIN ranges p ON p.range_id = r.parent_id ORDER BY r.start_ns"),
                         [("torch", "tagA", 0, None, 1), ("torch", "outer", 0, None, 0),
                          ("torch", "inner", 1, "outer", 0), ("torch", "opt", 1, "outer", 1)])
        r = report(db)
        # tagA: from the entry before it (0.9 ms), still tagged at the history's end: open, seq 1-6; outer:
        # seq 2-4 (peak 5 MiB); inner: seq 2-3 (5); opt never ends: seq 4-6, 1 MiB at its start, then 3,
        # 11, 3
        self.assertEqual(r["peak_bytes"], 11 * MiB)
        self.assertEqual(r["ranges_at_peak"], ["tagA", "opt"])
        self.assertEqual(r["range_peaks"], [{"name": "opt", "count": 1, "peak_bytes": 11 * MiB},
                                            {"name": "tagA", "count": 1, "peak_bytes": 11 * MiB},
                                            {"name": "inner", "count": 1, "peak_bytes": 5 * MiB},
                                            {"name": "outer", "count": 1, "peak_bytes": 5 * MiB}])
        # a second import replaces the torch ranges rather than doubling them
        cmt("import-torch", pk, "-o", db)
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM ranges"), 4)


@unittest.skipIf(TORCH_SKIP, TORCH_SKIP or "")
class RealTorchPhases(TraceTest):
    """examples/torch/gpt.py --nvtx: torch.cuda.nvtx.range (PyTorch's own nvtx3) recorded by `cumemtrace run`."""

    def test_gpt_phases(self):
        out = self.path("gpt.db")
        env = sim_env(preload=False)
        env.pop("PYTHONPATH", None)
        env.pop("NVTX_INJECTION64_PATH", None)
        gpt = os.path.join(cmtlib.ROOT, "examples", "torch", "gpt.py")
        p = subprocess.run([CUMEMTRACE, "run", "--sim-gpu", "RTX4090", "-o", out, "--", TORCH_PY, gpt, "--nvtx",
                            "--steps", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=600)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        torch_says = json.loads([l for l in p.stdout.splitlines() if l.startswith("TORCH_MEMORY ")][0][13:])
        self.assertEqual(self.query(out, "SELECT r.name, r.depth, p.name FROM ranges r LEFT JOIN ranges p"
                                         " ON p.range_id = r.parent_id ORDER BY r.start_seq"),
                         [("step", 0, None), ("forward", 1, "step"), ("backward", 1, "step"),
                          ("optimizer", 1, "step")] * 2)
        r = report(out)
        # the driver-level peak holds the caching allocator's reserved peak (and cuBLAS's workspaces
        # beside it), reached in backward; PyTorch runs backward on its autograd thread while the phases
        # are pushed on the main thread
        self.assertGreaterEqual(r["peak_bytes"], torch_says["reserved_peak_bytes"])
        self.assertEqual(r["ranges_at_peak"], ["step", "backward"])
        self.assertFalse(r["ranges_at_peak_thread"]["allocating_thread"])
        peaks = {x["name"]: x for x in r["range_peaks"]}
        self.assertEqual({n: x["count"] for n, x in peaks.items()},
                         {"step": 2, "forward": 2, "backward": 2, "optimizer": 2})
        self.assertEqual(peaks["step"]["peak_bytes"], r["peak_bytes"])
        self.assertEqual(peaks["backward"]["peak_bytes"], r["peak_bytes"])
        self.assertLess(peaks["forward"]["peak_bytes"], r["peak_bytes"])

    def test_torch_annotations_and_metadata_become_ranges(self):
        # record_function's START/END annotations and _set_memory_metadata tags, from the snapshot run
        # --torch takes at exit. Segments: 20 MiB (a, 4 MiB: the large pool's smallest segment), 32 MiB for
        # b inside phase_one, 48 MiB for c while tagged (b's cached 32 MiB is too small); d fits in the
        # first segment: no driver call.
        script = self.path("phases.py")
        with open(script, "w") as f:
            f.write("import json, torch\n"
                    "a = torch.empty(1 << 20, device='cuda')\n"
                    "with torch.profiler.record_function('phase_one'):\n"
                    "    b = torch.empty(8 << 20, device='cuda')\n"
                    "    del b\n"
                    "torch.cuda.memory._set_memory_metadata('tagged')\n"
                    "c = torch.empty(12 << 20, device='cuda')\n"
                    "torch.cuda.memory._set_memory_metadata('')\n"
                    "d = torch.empty(1 << 20, device='cuda')\n"
                    "print(json.dumps(torch.cuda.memory_stats()['reserved_bytes.all.peak']))\n")
        out = self.path("ann.db")
        env = sim_env(preload=False)
        env.pop("PYTHONPATH", None)
        p = subprocess.run([CUMEMTRACE, "run", "--torch", "--sim-gpu", "8GiB", "-o", out, "--", TORCH_PY, script],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        self.assertEqual(int(p.stdout.split()[-1]), 100 * MiB)
        self.assertEqual(self.query(out, "SELECT source, kind, name, depth, tid, end_ns IS NULL FROM ranges"
                                         " ORDER BY start_ns"),
                         [("torch", "push", "phase_one", 0, None, 0), ("torch", "push", "tagged", 0, None, 0)])
        self.assertEqual(self.query(out, "SELECT size FROM events ORDER BY seq"), [(20 * MiB,), (32 * MiB,), (48 * MiB,)])
        r = report(out)
        self.assertEqual(r["peak_bytes"], 100 * MiB)
        self.assertEqual(r["ranges_at_peak"], ["tagged"])
        self.assertEqual(r["range_peaks"], [{"name": "tagged", "count": 1, "peak_bytes": 100 * MiB},
                                            {"name": "phase_one", "count": 1, "peak_bytes": 52 * MiB}])
