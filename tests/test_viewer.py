"""The viewer (`report --html`, `timeline -o X.html`, `diff -o X.html`) in Debian's chromium driven by
playwright-core (tests/browser/drive.js): hovering a band shows that allocation's exact size and stack, a
click pins it, the wheel zooms (the visible range is read from the page), a click on a flame frame zooms into
it, the allocator's segments of a PyTorch trace, the diff's growth; and on every page no console error, no
uncaught exception and no request leaving the page (every request is routed: anything but file: and data:
URLs is recorded and aborted). One screenshot per view goes to $CMT_ARTIFACTS when set. The data in the page
(detail levels, exact totals) is checked from the JSON itself.

Points on the band canvas are placed from the page's declared axes (data-plot margins, data-ymax, the range's
data-t0/t1), so a hover at (time, bytes) lands where the hand-computed stack of basic_trace has one allocation.
Skipped, with the reason, without chromium, node or playwright-core (tests/browser/install.sh installs it)."""
import json
import math
import os
import pickle
import re
import shutil
import sqlite3
import subprocess
import unittest

import cmtlib
import test_dwarf
from cmtlib import CUMEMTRACE, TraceTest, sim_env
from test_analyzer import basic_trace
from tracebuilder import GiB, MiB, TraceBuilder

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "browser")
CHROMIUM = os.environ.get("CMT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
NODE = shutil.which("node")
PLAYWRIGHT = os.path.isfile(os.path.join(BROWSER_DIR, "node_modules", "playwright-core", "package.json"))
MISSING = ("chromium is not installed (apt-get install chromium)" if not CHROMIUM else
           "node is not installed (apt-get install nodejs npm)" if not NODE else
           "playwright-core is not installed (run tests/browser/install.sh)" if not PLAYWRIGHT else None)


def cmt(*args):
    p = subprocess.run([CUMEMTRACE] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=300)
    if p.returncode != 0:
        raise AssertionError("cumemtrace %s exited %d: %s" % (args, p.returncode, p.stderr))
    return p


def page_data(path):
    """The JSON object the page carries (its '<' are written as \\u003c, which json reads back)."""
    text = open(path, encoding="utf-8").read()
    m = re.search(r"<script type='application/json' id='cmt-data'>(.*?)</script>", text, re.S)
    return json.loads(m.group(1))


def stack_lines(detail):
    """The frames listed in the detail panel's text (innerText: one line each, after the 'stack' heading)."""
    lines = detail.splitlines()
    i = next(i for i, l in enumerate(lines) if l.startswith("stack ("))
    return lines[i + 1:]


class DataTest(TraceTest):
    """The page's data, without a browser."""

    def test_long_lists_cut_for_the_page(self):
        """25 failed allocations: the page's report keeps the first and last ten exactly as --json has them
        and says there were 25; --json keeps all 25 (a million-event run's page stays small)."""
        t = TraceBuilder(self.path("fails.db"))
        k = t.stack(["_Z4stepv", "main"])
        t.alloc(2 * MiB, stack=k)
        for i in range(25):
            t.fail((i + 1) * MiB, stack=k)
        db = t.close()
        page = self.path("f.html")
        cmt("report", "--html", page, db)
        full = json.loads(cmt("report", "--json", db).stdout)
        self.assertEqual(len(full["failures"]), 25)
        rep = page_data(page)["report"]
        self.assertEqual(rep["failures_total"], 25)
        self.assertEqual(rep["failures"], full["failures"][:10] + full["failures"][-10:])
        self.assertEqual([f["size"] for f in rep["failures"]], [(i + 1) * MiB for i in list(range(10)) + list(range(15, 25))])
        self.assertEqual(rep["ooms_total"], len(full["ooms"]))
        self.assertEqual(rep["ooms"], full["ooms"][:10] + full["ooms"][-10:] if len(full["ooms"]) > 20 else full["ooms"])

    def test_self_contained_and_exact(self):
        db = basic_trace(self.path("run.db")).close()
        page = self.path("r.html")
        text_before = cmt("report", db).stdout
        p = cmt("report", "--html", page, db)
        self.assertEqual(p.stdout, text_before)  # the text report is unchanged by --html
        html = open(page, encoding="utf-8").read()
        self.assertTrue(html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>"))
        self.assertNotIn("src=", html)
        self.assertNotIn("href=", html)
        self.assertNotIn("http://", html)
        self.assertNotIn("https://", html)
        d = page_data(page)
        self.assertEqual(d["kind"], "report")
        full = json.loads(cmt("report", "--json", db).stdout)
        # the report model, whole (lists this short are not cut), with the totals the page adds
        self.assertEqual(d["report"].pop("failures_total"), len(full["failures"]))
        self.assertEqual(d["report"].pop("ooms_total"), len(full["ooms"]))
        self.assertEqual(d["report"], full)
        run = d["runs"][0]
        lv = run["levels"]["driver"]
        # seven device-memory allocations (basic_trace), all kept one by one, sorted by start
        self.assertEqual(lv["size"], [GiB, 256 * MiB, 512 * MiB, 512 * MiB, 768 * MiB, 256 * MiB, GiB])
        self.assertEqual(lv["start"], [1_000_000, 2_000_000, 3_000_000, 4_000_000, 7_000_000, 9_000_000, 15_000_000])
        self.assertEqual(lv["end"], [21_000_000, 16_000_000, 5_000_000, 6_000_000, 8_000_000, 19_000_000, 21_000_000])
        self.assertEqual(lv["live"], [1, 0, 0, 0, 0, 0, 1])
        self.assertEqual((lv["merged_allocs"], lv["threshold_bytes"]), (0, 0))
        self.assertEqual(max(v for _, v in lv["total"]), 2 * GiB + 512 * MiB)  # the peak, exact
        self.assertEqual(lv["total"][-1], [21_000_000, 2 * GiB])  # what is live at the end stays in the total
        self.assertEqual((run["peak_bytes"], run["peak_ns"]), (2 * GiB + 512 * MiB, 15_000_000))
        frames = [[d["strings"][f] for f in d["stacks"][s]["f"]] for s in lv["stack"]]
        self.assertEqual(frames[0], ["Model::load(std::string const&)", "main"])
        self.assertEqual(frames[6], ["activations(int)", "main"])
        peak = {tuple(d["strings"][f] for f in d["stacks"][s]["f"]): (b, n) for s, b, n in run["peak_stacks"]}
        self.assertEqual(peak[("Model::load(std::string const&)", "main")], (GiB + 256 * MiB, 2))
        self.assertEqual(peak[("activations(int)", "main")], (GiB, 1))

    def test_script_end_in_a_frame_name_stays_data(self):
        t = TraceBuilder(self.path("x.db"))
        s = t.stack(["</script><script>alert(1)</script>", "main"])
        t.alloc(MiB, stack=s)
        db = t.close()
        page = self.path("x.html")
        cmt("report", "--html", page, db)
        html = open(page, encoding="utf-8").read()
        self.assertEqual(html.count("</script>"), 2)  # the data element's and the viewer's, nothing else
        self.assertIn("</script><script>alert(1)</script>", page_data(page)["strings"])

    def test_sparse_huge_seqs(self):
        """Found by tests/fuzz_traces.py: the event times were kept in an array as long as the seq range."""
        db = basic_trace(self.path("run.db")).close()
        con = sqlite3.connect(db)
        con.execute("UPDATE events SET seq = seq * 1000000000000")
        con.commit()
        con.close()
        page = self.path("r.html")
        cmt("report", "--html", page, db)
        lv = page_data(page)["runs"][0]["levels"]["driver"]
        self.assertEqual(lv["start"], [1_000_000, 2_000_000, 3_000_000, 4_000_000, 7_000_000, 9_000_000, 15_000_000])
        self.assertEqual(lv["end"], [21_000_000, 16_000_000, 5_000_000, 6_000_000, 8_000_000, 19_000_000, 21_000_000])

    def test_detail_levels_keep_exact_totals(self):
        db = many_trace(self.path("many.db"))
        page = self.path("m.html")
        cmt("timeline", "-o", page, db)
        lv = page_data(page)["runs"][0]["levels"]["driver"]
        # 20,100 allocations, at most 20,000 drawn one by one: the 100 large ones; the 20,000 of 4 KiB merged
        self.assertEqual(lv["allocs"], 20_100)
        self.assertEqual(lv["threshold_bytes"], 4097)
        self.assertEqual(len(lv["size"]), 100)
        self.assertEqual(set(lv["size"]), {MiB})
        self.assertEqual((lv["merged_allocs"], lv["merged_bytes"]), (20_000, 20_000 * 4096))
        self.assertEqual((lv["other_bytes"][-1], lv["other_count"][-1]), (20_000 * 4096, 20_000))
        # bucket k holds the state at its end: allocation i (from 0) is made at (i + 1) us of 20.1 ms
        dur = page_data(page)["runs"][0]["duration_ns"]
        self.assertEqual(dur, 20_101_000)
        k = 999
        n_live = sum(1 for i in range(20_000) if (i + 1) * 1000 * 4000 // dur <= k)
        self.assertEqual((lv["other_count"][k], lv["other_bytes"][k]), (n_live, n_live * 4096))
        self.assertEqual(max(v for _, v in lv["total"]), 20_000 * 4096 + 100 * MiB)


    def test_diff_aligned_by_phase_data(self):
        """diff -o X.html --align step over nvtx_client phases (A) and phases big (B: step 1's backward 2 MiB more;
        figures: tests/test_nvtx.py): the page carries the text diff's growth by phase and the instances with
        where each starts in its run, the same figures diff --json prints."""
        a, b = phase_pair(self)
        page = self.path("d.html")
        cmt("diff", "--align", "step", "-o", page, a, b)
        d = page_data(page)
        j = json.loads(cmt("diff", "--json", "--align", "step", a, b).stdout)
        self.assertEqual(d["phases"], j["phases"])
        self.assertEqual(d["aligned"], j["aligned"])
        self.assertEqual([(p["name"], p["a_peak_bytes"], p["b_peak_bytes"], p["delta_bytes"]) for p in d["phases"]],
                         [("backward", 16 * MiB, 18 * MiB, 2 * MiB), ("step", 16 * MiB, 18 * MiB, 2 * MiB),
                          ("forward", 14 * MiB, 14 * MiB, 0), ("optimizer", 11 * MiB, 11 * MiB, 0),
                          ("init", 8 * MiB, 8 * MiB, 0)])
        for side, key in ((0, "a_start_ns"), (1, "b_start_ns")):
            rg = d["runs"][side]["ranges"]
            steps = [rg["start_ns"][i] for i, n in enumerate(rg["name"]) if d["strings"][n] == "step"]
            self.assertEqual([x[key] for x in d["aligned"]["instances"]], steps)
        # without --align: the growth by phase, no instances
        cmt("diff", "-o", page, a, b)
        d = page_data(page)
        self.assertEqual(d["phases"], j["phases"])
        self.assertNotIn("aligned", d)

    def test_ranges_capped_with_exact_count(self):
        """10,003 ranges: at most 10,000 on the page, the outermost and then the longest, so every kept range's
        parent is kept; "count" says how many there are in all (the page's note says 3 more)."""
        db = ranged_trace(self.path("r.db"))
        page = self.path("r.html")
        cmt("timeline", "-o", page, db)
        d = page_data(page)
        rg = d["runs"][0]["ranges"]
        self.assertEqual((rg["count"], rg["drawn"], len(rg["id"])), (10_003, 10_000, 10_000))
        # the three steps (depth 0) and the 9,997 longest children; children 0, 1, 2 (1, 2, 3 ns) are left out
        self.assertEqual(sorted(rg["id"]), [1, 2, 3] + list(range(7, 10_004)))
        for i, p in enumerate(rg["parent"]):
            if rg["depth"][i] == 1:
                self.assertEqual(rg["id"][p], 1 + (rg["id"][i] - 4) // 3334)
        # by start, exact: child k starts (k + 1) us after the run's start and lasts k + 1 ns
        k = rg["id"].index(10_003)
        self.assertEqual((rg["start_ns"][k], rg["end_ns"][k]), (10_000_000, 10_000_000 + 10_000))
        # timeline -o X.svg (the phase bands under the chart): the 3 steps, the first 1,000 children one by one,
        # then at most one sub-pixel child per pixel of the 840-pixel axis
        svg = self.path("r.svg")
        cmt("timeline", "-o", svg, db)
        n = open(svg, encoding="utf-8").read().count("<g><title>")
        self.assertTrue(3 + 1000 < n <= 3 + 1000 + 841, n)


def phase_pair(test):
    """nvtx_client phases (A) and phases big (B) traced into the test's directory: (a.db, b.db)."""
    out = []
    for name, args in (("a.db", ["phases"]), ("b.db", ["phases", "big"])):
        env = sim_env(output=test.path(name), extra={"NVTX_INJECTION64_PATH": cmtlib.INTERPOSER})
        cmtlib.run([cmtlib.client("nvtx_client")] + args, env)
        out.append(test.path(name))
    return out


def ranged_trace(path):
    """One 1 MiB allocation at 1 us, live to the end (about 11 ms); three steps (ranges 1..3, depth 0, one third of
    the children each) and 10,000 children (ranges 4..10,003, depth 1): child k starts at (k + 1) us and lasts
    k + 1 ns."""
    t = TraceBuilder(path, step_ns=1000)
    t.alloc(MiB, stack=t.stack(["weights", "main"]), at=1000)
    t.alloc(MiB, stack=t.stack(["weights", "main"]), at=11_000_000)
    db = t.close()
    con = sqlite3.connect(db)
    with open(os.path.join(os.path.dirname(HERE), "schema", "cumemtrace_v3.sql")) as f:
        con.executescript(f.read())
    t0 = t.start_ns
    rows = []
    for i in range(3):
        lo, hi = i * 3334, min((i + 1) * 3334, 10_000)
        rows.append((1 + i, "step", 4242, 2, 2, t0 + lo * 1000 + 500, t0 + hi * 1000 + 500, 0, None))
    for k in range(10_000):
        rows.append((4 + k, "part", 4242, 2, 2, t0 + (k + 1) * 1000, t0 + (k + 1) * 1000 + k + 1, 1, 1 + k // 3334))
    con.executemany("INSERT INTO ranges (range_id, source, kind, name, tid, start_seq, end_seq, start_ns, end_ns,"
                    " depth, parent_id) VALUES (?, 'nvtx', 'push', ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.commit()
    con.close()
    return db


def many_trace(path):
    """20,000 allocations of 4 KiB (small_alloc) 1 us apart, then 100 of 1 MiB (big_alloc); all live at exit."""
    t = TraceBuilder(path, step_ns=1000)
    small = t.stack(["small_alloc", "main"])
    big = t.stack(["big_alloc", "main"])
    for i in range(20_000):
        t.alloc(4096, stack=small, at=(i + 1) * 1000)
    for i in range(100):
        t.alloc(MiB, stack=big, at=20_001_000 + i * 1000)
    return t.close()


def tiny_torch_snapshot(path):
    """One 2 MiB segment; forward allocates 1,000 bytes (a 1,024-byte block) at its start, backward 512 KiB right
    after it, freed again; then a 4 MiB request fails with 1 MiB free on the device."""
    seg = 0x7f0000000000
    fa = [{"name": "forward", "filename": "/x/model.py", "line": 3}]
    fb = [{"name": "backward", "filename": "/x/model.py", "line": 9}]
    snap = {"segments": [{"device": 0, "address": seg, "total_size": 2 * MiB, "stream": 0, "segment_type": "small",
                          "allocated_size": 1024, "active_size": 1024, "requested_size": 1000, "blocks": [
                              {"address": seg, "size": 1024, "requested_size": 1000, "state": "active_allocated",
                               "frames": fa},
                              {"address": seg + 1024, "size": 2 * MiB - 1024, "requested_size": 0,
                               "state": "inactive", "frames": []}]}],
            "device_traces": [[
                {"action": "segment_alloc", "addr": seg, "size": 2 * MiB, "stream": 0, "time_us": 1_000_000,
                 "frames": []},
                {"action": "alloc", "addr": seg, "size": 1000, "stream": 0, "time_us": 1_000_010, "frames": fa},
                {"action": "alloc", "addr": seg + 1024, "size": 512 * 1024, "stream": 0, "time_us": 1_000_020,
                 "frames": fb},
                {"action": "free_requested", "addr": seg + 1024, "size": 512 * 1024, "stream": 0,
                 "time_us": 1_000_030, "frames": fb},
                {"action": "free_completed", "addr": seg + 1024, "size": 512 * 1024, "stream": 0,
                 "time_us": 1_000_031, "frames": fb},
                {"action": "oom", "addr": MiB, "size": 4 * MiB, "stream": 0, "time_us": 1_000_040, "frames": fa}]]}
    with open(path, "wb") as f:
        pickle.dump(snap, f)
    return path


class TorchDataTest(TraceTest):
    def test_allocator_blocks_and_segments(self):
        db = self.path("t.db")
        cmt("import-torch", tiny_torch_snapshot(self.path("tiny.pickle")), "-o", db)
        page = self.path("t.html")
        cmt("report", "--html", page, db)
        d = page_data(page)
        run = d["runs"][0]
        lv = run["levels"]["allocator"]
        self.assertEqual(lv["size"], [1024, 512 * 1024])
        self.assertEqual(lv["live"], [1, 0])
        self.assertEqual([[d["strings"][f] for f in d["stacks"][s]["f"]] for s in lv["stack"]],
                         [["forward  (/x/model.py:3)"], ["backward  (/x/model.py:9)"]])
        self.assertEqual(lv["peak_bytes"], 1024 + 512 * 1024)
        segs = {(p["point"], p["request_bytes"]): p for p in run["segments"]}
        self.assertEqual(sorted(segs), [("oom", 4 * MiB), ("peak", 0)])
        peak, oom = segs[("peak", 0)], segs[("oom", 4 * MiB)]
        self.assertEqual([(s["size"], [b[:2] for b in s["blocks"]]) for s in peak["segs"]],
                         [(2 * MiB, [[0, 1024], [1024, 512 * 1024]])])
        self.assertEqual([(s["size"], [b[:2] for b in s["blocks"]]) for s in oom["segs"]], [(2 * MiB, [[0, 1024]])])
        self.assertEqual((peak["allocated_bytes"], peak["reserved_bytes"]), (1024 + 512 * 1024, 2 * MiB))

    def test_impossible_block_size_is_one_line(self):
        """Found by tests/fuzz_traces.py: a damaged block size overflowed the sums."""
        db = self.path("t.db")
        cmt("import-torch", tiny_torch_snapshot(self.path("tiny.pickle")), "-o", db)
        con = sqlite3.connect(db)
        con.execute("UPDATE alloc_trace SET block_size = 4611686018427387904 WHERE action = 'alloc'")
        con.commit()
        con.close()
        for argv in (["report", "--html", self.path("r.html"), db], ["timeline", "-o", self.path("t.html"), db]):
            p = subprocess.run([CUMEMTRACE] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.assertEqual(p.returncode, 1)
            self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
            self.assertIn("impossible size", p.stderr)


class Driving:
    """drive.js for a TraceTest."""

    def drive(self, page, steps, name):
        """Runs drive.js over page; returns its results after checking the page stayed quiet and offline."""
        shots = self.path("shots")
        os.makedirs(shots, exist_ok=True)
        spath = self.path(name + ".steps.json")
        with open(spath, "w") as f:
            json.dump(steps, f)
        env = dict(os.environ, CMT_CHROMIUM=CHROMIUM)
        p = subprocess.run([NODE, os.path.join(BROWSER_DIR, "drive.js"), page, shots, spath], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=180, env=env, cwd=BROWSER_DIR)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)
        art = os.environ.get("CMT_ARTIFACTS")
        for f in os.listdir(shots):
            with open(os.path.join(shots, f), "rb") as fh:
                self.assertEqual(fh.read(8), b"\x89PNG\r\n\x1a\n")
            if art:
                os.makedirs(art, exist_ok=True)
                shutil.copy(os.path.join(shots, f), os.path.join(art, "viewer-" + f))
        return out

    def quiet(self, out):
        self.assertEqual(out["console"], [], "console errors or warnings")
        self.assertEqual(out["errors"], [], "uncaught exceptions")
        self.assertEqual(out["requests"], [], "requests leaving the page")


@unittest.skipIf(MISSING, MISSING or "")
class BrowserTest(Driving, TraceTest):
    def test_harness_sees_requests_and_errors(self):
        """drive.js must catch what the other tests assert the viewer never does."""
        page = self.path("bad.html")
        with open(page, "w") as f:
            f.write("<!DOCTYPE html><html><body><img src='http://cumemtrace.invalid/x.png'>"
                    "<script>console.error('boom'); document.body.setAttribute('data-ready', '1');"
                    " null.x;</script></body></html>")
        out = self.drive(page, [], "bad")
        self.assertEqual(out["requests"], ["http://cumemtrace.invalid/x.png"])
        # (in either order: the aborted request's message can come before the script's)
        self.assertEqual(sorted(out["console"]), ["error: Failed to load resource: net::ERR_FAILED", "error: boom"])
        self.assertEqual(len(out["errors"]), 1)

    def test_report_hover_pin_zoom_flame(self):
        db = basic_trace(self.path("run.db")).close()
        page = self.path("report.html")
        cmt("report", "--html", page, db)
        # at 17.5 ms (basic_trace): A 1 GiB [0, 1 GiB), H 256 MiB [1, 1.25 GiB), Z 1 GiB [1.25, 2.25 GiB)
        out = self.drive(page, [
            {"screenshot": "report-timeline"},
            {"hover_at": [17_500_000, 1.75 * GiB]},
            {"hover_at": [17_500_000, 0.5 * GiB]},
            {"wheel_at": [10_000_000, -500]},
            # at 10 ms: A [0, 1 GiB), W 256 MiB [1, 1.25 GiB) (cublas), H [1.25, 1.5 GiB)
            {"hover_at": [10_000_000, 1.125 * GiB]},
            {"click_at": [10_000_000, 1.125 * GiB]},
            {"hover_at": [10_000_000, 0.5 * GiB]},
            {"screenshot": "report-zoomed-pinned"},
            {"attr": ["#cmt-flame", "data-root"]},
            {"click": "#cmt-flame div.fr[data-name='activations(int)']"},
            {"attr": ["#cmt-flame", "data-root"]},
            {"attr": ["#cmt-flame div.fr[data-name='activations(int)']", "style"]},
            {"screenshot": "report-flame-zoomed"},
            {"click": "#cmt-flame div.fr.anc[data-name='main']"},
            {"attr": ["#cmt-flame", "data-root"]},
        ], "report")
        self.quiet(out)
        r = out["results"]
        z = r[1]
        self.assertIn("1,073,741,824 bytes (1.00 GiB)", z)
        self.assertEqual(stack_lines(z), ["activations(int)", "main"])
        self.assertIn("from 15.000 ms, never freed", z)
        a = r[2]
        self.assertIn("1,073,741,824 bytes (1.00 GiB)", a)
        self.assertEqual(stack_lines(a), ["Model::load(std::string const&)", "main"])
        t0, t1 = r[3]
        # wheel up by 500: the span shrinks by exp(-500 * 0.0015) around the time under the mouse (10 ms)
        self.assertAlmostEqual(t1 - t0, 21_000_000 * math.exp(-0.75), delta=21_000)
        self.assertAlmostEqual(t0 + (t1 - t0) * 10 / 21, 10_000_000, delta=50_000)
        w = r[4]
        self.assertIn("268,435,456 bytes (256 MiB)", w)
        self.assertEqual(stack_lines(w)[0], "cublasCreate_v2")
        self.assertIn("from 2.000 ms to 16.000 ms", w)
        self.assertTrue(r[5].startswith("pinned"), r[5])
        self.assertIn("cublasCreate_v2", r[6])  # still the pinned one while hovering over A
        self.assertNotIn("Model::load", r[6])
        self.assertTrue(r[8].startswith("all (2.50 GiB"), r[8])
        self.assertEqual(r[10], "activations(int)")
        self.assertIn("width:100%", r[11].replace(" ", ""))
        self.assertEqual(r[14], "main")
        out = self.drive(page, [{"brush": [3_000_000, 9_000_000]}, {"hover_at": [4_500_000, 1.5 * GiB]},
                                {"drag_at": [6_000_000, -100]},
                                {"eval": "document.getElementById('cmt-bands').clientWidth"}], "brush")
        self.quiet(out)
        t0, t1 = out["results"][0]
        # the brushed range, to a pixel of the overview (21 ms over about 900 px)
        self.assertAlmostEqual(t0, 3_000_000, delta=50_000)
        self.assertAlmostEqual(t1, 9_000_000, delta=50_000)
        # at 4.5 ms: A [0, 1 GiB), W [1, 1.25 GiB), X1 [1.25, 1.75 GiB) (512 MiB, activations, 3 to 5 ms)
        self.assertIn("536,870,912 bytes (512 MiB)", out["results"][1])
        self.assertIn("from 3.000 ms to 5.000 ms (2.000 ms)", out["results"][1])
        # dragging 100 px to the left moves the view later by 100 px of its 6 ms span (plot: width - 72 px)
        p0, p1 = out["results"][2]
        shift = 100 / (out["results"][3] - 72) * (t1 - t0)
        self.assertAlmostEqual(p0, t0 + shift, delta=20_000)
        self.assertAlmostEqual(p1 - p0, t1 - t0, delta=1)

    def test_phase_bands_hover(self):
        """tests/clients/nvtx_client phases (figures: tests/test_nvtx.py): zoomed on step 1, a hover over the
        second row at the middle of its backward shows that phase, its exact peak (16 MiB, the run's peak), its
        nesting and duration; the range stack at the peak is in the summary and beside the peak."""
        db = self.path("nvtx.db")
        env = sim_env(output=db, extra={"NVTX_INJECTION64_PATH": cmtlib.INTERPOSER})
        cmtlib.run([cmtlib.client("nvtx_client"), "phases"], env)
        page = self.path("phases.html")
        cmt("report", "--html", page, db)
        rg = page_data(page)["runs"][0]["ranges"]
        names = [page_data(page)["strings"][i] for i in rg["name"]]
        b = [i for i, n in enumerate(names) if n == "backward"][1]
        step = rg["parent"][b]
        mid = (rg["start_ns"][b] + rg["end_ns"][b]) // 2
        out = self.drive(page, [
            {"eval": "cmtViewer.setView(%d, %d)" % (rg["start_ns"][step] - 1000, rg["end_ns"][step] + 1000)},
            {"hover_phase": [mid, 1]},
            {"screenshot": "phases"},
            {"text": ".cmt-peak-ranges"},
            {"hover_phase": [rg["start_ns"][step] + 200, 0]},
        ], "phases")
        self.quiet(out)
        r = out["results"]
        self.assertTrue(r[1].startswith("phase backward\n"), r[1])
        self.assertIn("peak inside\t16,777,216 bytes (16.0 MiB)", r[1])
        self.assertIn("nesting\tstep > backward", r[1])
        self.assertIn("(%s ns)" % format(rg["end_ns"][b] - rg["start_ns"][b], ","), r[1])
        self.assertEqual(r[3], "step > backward")
        self.assertTrue(r[4].startswith("phase step\n"), r[4])
        self.assertIn("peak inside\t16,777,216 bytes", r[4])
        # a page with more ranges than it draws says exactly how many more
        db = ranged_trace(self.path("r.db"))
        cmt("timeline", "-o", self.path("r.html"), db)
        out = self.drive(self.path("r.html"), [{"text": "#cmt-phases-note"}], "capped")
        self.quiet(out)
        self.assertIn("10,000 drawn", out["results"][0])
        self.assertIn("3 more ranges not drawn (of 10,003;", out["results"][0])

    def test_diff_aligned_by_phase(self):
        """diff --align step -o X.html: B's time is offset so that the chosen step starts with A's (the page says by
        how much, exactly); choosing step 1 shows its phases, backward 2 MiB more in B."""
        a, b = phase_pair(self)
        page = self.path("d.html")
        cmt("diff", "--align", "step", "-o", page, a, b)
        inst = page_data(page)["aligned"]["instances"]
        out = self.drive(page, [
            {"text": "#cmt-align-note"},
            {"attr": ["#cmt-align-note", "data-offset-ns"]},
            {"select": ["#cmt-align", "1"]},
            {"attr": ["#cmt-align-note", "data-offset-ns"]},
            {"text": "#cmt-aligned-phases tr:nth-child(2)"},
            {"text": "#cmt-phase-growth tr:nth-child(2)"},
            {"screenshot": "diff-aligned"},
        ], "diff-aligned")
        self.quiet(out)
        r = out["results"]
        off0, off1 = (x["a_start_ns"] - x["b_start_ns"] for x in inst)
        self.assertIn("B is shifted by", r[0])
        self.assertIn("(%s ns) so that step 0 starts at the same moment" % format(off0, ","), r[0])
        self.assertEqual((int(r[1]), int(r[3])), (off0, off1))
        self.assertEqual(r[4].split("\t"), ["backward", "1 / 1", "16,777,216 bytes (16.0 MiB)", "18,874,368 bytes (18.0 MiB)",
                                            "+2,097,152 (+2.00 MiB)"])
        self.assertEqual(r[5].split("\t")[0], "backward")

    def test_whatif_and_verdicts_when_the_report_has_them(self):
        """The report model's "whatif" and "oom_verdicts" (added to report --json by the allocator-model work)
        are drawn as tables when present; absent, the page has no such section."""
        db = basic_trace(self.path("run.db")).close()
        page = self.path("report.html")
        cmt("report", "--html", page, db)
        out = self.drive(page, [{"eval": "[!!document.getElementById('cmt-whatif'), "
                                         "!!document.getElementById('cmt-oom-verdicts')]"}], "plain")
        self.quiet(out)
        self.assertEqual(out["results"], [[False, False]])
        d = page_data(page)
        d["report"]["whatif"] = [{"name": "recorded", "capacity_bytes": 24 * GiB, "peak_reserved_bytes": 3 * GiB},
                                 {"name": "expandable_segments:True", "capacity_bytes": 24 * GiB,
                                  "peak_reserved_bytes": 2 * GiB + 512 * MiB}]
        d["report"]["oom_verdicts"] = [{"seq": 14, "size": 4 * GiB, "verdict": "capacity <b>oom</b>"}]
        html = open(page, encoding="utf-8").read()
        data = json.dumps(d).replace("<", "\\u003c")
        fed = self.path("fed.html")
        with open(fed, "w", encoding="utf-8") as f:
            f.write(re.sub(r"(id='cmt-data'>).*?(</script>)", lambda m: m.group(1) + data + m.group(2), html,
                           count=1, flags=re.S))
        out = self.drive(fed, [{"text": "#cmt-whatif"}, {"text": "#cmt-oom-verdicts"}, {"screenshot": "report-whatif"}],
                         "fed")
        self.quiet(out)
        whatif, verdicts = out["results"][:2]
        self.assertIn("expandable_segments:True", whatif)
        self.assertIn("2,684,354,560 (2.50 GiB)", whatif)
        self.assertIn("4,294,967,296 (4.00 GiB)", verdicts)
        self.assertIn("capacity <b>oom</b>", verdicts)  # text, never markup

    def test_timeline_and_detail_levels(self):
        db = many_trace(self.path("many.db"))
        page = self.path("timeline.html")
        cmt("timeline", "--by", "module", "-o", page, db)
        end = 20_100_000
        out = self.drive(page, [
            {"screenshot": "timeline"},
            {"hover_at": [end - 30_000, 40_000_000]},  # inside the merged band (81,920,000 bytes at the end)
            {"hover_at": [end - 30_000, 20_000 * 4096 + MiB // 2]},  # the first big band above it
            {"value": "#cmt-colour"},
            {"select": ["#cmt-colour", "stack"]},
            {"text": "#cmt-legend"},
            {"select": ["#cmt-colour", "component"]},
            {"text": "#cmt-legend"},
        ], "timeline")
        self.quiet(out)
        r = out["results"]
        self.assertIn("other (20,000 allocations)", r[1])
        self.assertIn("81,920,000 bytes", r[1])
        self.assertIn("1,048,576 bytes (1.00 MiB)", r[2])
        self.assertEqual(stack_lines(r[2]), ["big_alloc", "main"])
        self.assertEqual(r[3], "module")  # --by module: the first colouring
        self.assertEqual(r[5].split("\n")[0], "big_alloc")  # by stack: the legend names the stack's first frame
        self.assertEqual(r[7].split("\n")[0], "other")  # by component: no rule matches big_alloc
        self.assertLess(out["load_ms"], 10_000)

    def test_diff_overlay_and_growth(self):
        a = basic_trace(self.path("a.db")).close()
        t = TraceBuilder(self.path("b.db"))
        s = t.stack(["grow_here", "main"])
        t.alloc(3 * GiB, stack=s)
        b = t.close()
        page = self.path("diff.html")
        cmt("diff", "-o", page, a, b)
        out = self.drive(page, [
            {"screenshot": "diff"},
            {"text": "#cmt-growth tr:nth-child(2)"},
            {"attr": ["#cmt-overlay", "id"]},
        ], "diff")
        self.quiet(out)
        row = out["results"][1]
        self.assertIn("grow_here", row)
        self.assertIn("+3.00 GiB", row)
        self.assertEqual(out["results"][2], "cmt-overlay")

    def test_torch_segments(self):
        db = self.path("t.db")
        cmt("import-torch", tiny_torch_snapshot(self.path("tiny.pickle")), "-o", db)
        page = self.path("torch.html")
        cmt("report", "--html", page, db)
        # the allocator level opens first: at 25 us forward's 1,024-byte block lies under backward's 512 KiB
        out = self.drive(page, [
            {"hover_at": [25_000, 1024 + 256 * 1024]},
            {"text": "#cmt-seg-sum"},
            {"screenshot": "torch"},
        ], "torch")
        self.quiet(out)
        r = out["results"]
        self.assertIn("524,288 bytes (512 KiB)", r[0])
        self.assertEqual(stack_lines(r[0]), ["backward  (/x/model.py:9)"])
        self.assertIn("1 segments, 2,097,152 bytes (2.00 MiB) reserved, 525,312 bytes (513 KiB) allocated", r[1])


DWARF_SKIP = MISSING or (None if test_dwarf.writer_has_libdw() else
                         "the writer was built without libdw (Debian: libdw-dev): no source lines")


@unittest.skipIf(DWARF_SKIP, DWARF_SKIP or "")
class DwarfBrowserTest(Driving, TraceTest):
    """Native frames with source lines (tests/clients/dwarf_client.c, built with -g: its allocation in grab,
    inlined into dwarf_layer; the expected lines are its LINE: markers, read by tests/test_dwarf.py)."""

    def lines(self):
        return [test_dwarf.marker_line(t) for t in ("alloc", "inlined-call", "main-call")]

    def band_point(self, page):
        """(time, bytes) inside the one allocation's band, from the page's own data."""
        lv = page_data(page)["runs"][0]["levels"]["driver"]
        self.assertEqual(lv["size"], [3 * MiB])
        return [(lv["start"][0] + lv["end"][0]) // 2, 1.5 * MiB]

    def test_hover_and_flame_show_file_line_and_inlined_frames(self):
        alloc, inl, main = self.lines()
        p, db = self.trace([cmtlib.client("dwarf_client")])
        page = self.path("dwarf.html")
        cmt("report", "--html", page, db)
        grab = "grab (dwarf_client.c:%d) [inlined]" % alloc
        layer = "dwarf_layer (dwarf_client.c:%d)" % inl
        out = self.drive(page, [
            {"hover_at": self.band_point(page)},
            {"screenshot": "dwarf-hover"},
            {"attr": ["#cmt-detail-stack div.inl", "title"]},
            {"attr": ["#cmt-flame div.fr[data-name='%s']" % layer, "style"]},
            {"attr": ["#cmt-flame div.fr[data-name='%s']" % grab, "style"]},
            {"attr": ["#cmt-flame div.fr[data-name='%s']" % grab, "title"]},
            {"click": "#cmt-flame div.fr[data-name='%s']" % layer},
            {"attr": ["#cmt-flame", "data-root"]},
            {"text": "#cmt-report table"},
        ], "dwarf")
        self.quiet(out)
        r = out["results"]
        self.assertIn("3,145,728 bytes (3.00 MiB)", r[0])
        # innermost first, as the text report lists them: the inlined function just before its frame
        self.assertEqual(stack_lines(r[0])[:3], ["grab  dwarf_client.c:%d  [inlined]" % alloc,
                                                 "dwarf_layer  dwarf_client.c:%d" % inl,
                                                 "main  dwarf_client.c:%d" % main])
        self.assertEqual(r[2], "grab  %s:%d" % (test_dwarf.SRC, alloc))  # the tooltip: the file's path
        # in the flame graph the inlined function is a frame of its own one row under (inside) dwarf_layer
        top = lambda style: int(re.search(r"top:\s*(\d+)px", style).group(1))
        self.assertEqual(top(r[4]), top(r[3]) + 18)
        self.assertEqual(r[5], "grab (%s:%d) [inlined]" % (test_dwarf.SRC, alloc))
        self.assertEqual(r[7], layer)
        # the report's table of top stacks (report --json's stack_frames)
        self.assertIn("grab  dwarf_client.c:%d  [inlined]\ndwarf_layer  dwarf_client.c:%d" % (alloc, inl), r[8])

        # the diff page's growth by stack
        p, b = self.trace([cmtlib.client("dwarf_client")], name="b.db")
        dpage = self.path("diff.html")
        cmt("diff", "-o", dpage, db, b)
        out = self.drive(dpage, [{"text": "#cmt-growth tr:nth-child(2)"}, {"screenshot": "dwarf-diff"}], "dwarf-diff")
        self.quiet(out)
        self.assertIn("grab  dwarf_client.c:%d  [inlined]\ndwarf_layer  dwarf_client.c:%d\nmain  dwarf_client.c:%d"
                      % (alloc, inl, main), out["results"][0])

    def test_without_debug_information_as_before(self):
        p, db = self.trace([cmtlib.client("dwarf_client_nodebug")])
        page = self.path("nodebug.html")
        cmt("report", "--html", page, db)
        out = self.drive(page, [{"hover_at": self.band_point(page)},
                                {"attr": ["#cmt-flame div.fr[data-name='dwarf_layer']", "title"]}], "nodebug")
        self.quiet(out)
        self.assertEqual(stack_lines(out["results"][0])[:2], ["dwarf_layer", "main"])
        self.assertEqual(out["results"][1], "dwarf_layer")


TORCH_PY = os.environ.get("CMT_TORCH_PYTHON", "")
TORCH_SKIP = (MISSING or ("real PyTorch runs in the plain suite only (sanitizer build)" if cmtlib.SANITIZER_PRELOAD else
                          None if TORCH_PY and os.path.exists(TORCH_PY) else
                          "no PyTorch environment ($CMT_TORCH_PYTHON, from scripts/torch-env)"))

# Two blocks through PyTorch's caching allocator, each from its own Python function.
TINY_TORCH = """import torch


def make_weights():
    return torch.empty(4 << 20, dtype=torch.uint8, device="cuda")


def scratch():
    t = torch.empty(12 << 20, dtype=torch.uint8, device="cuda")
    del t


w = make_weights()
scratch()
torch.cuda.synchronize()
print("TORCH_PEAK", torch.cuda.max_memory_allocated())
"""


@unittest.skipIf(TORCH_SKIP, TORCH_SKIP or "")
class RealTorchTest(Driving, TraceTest):
    def test_allocator_blocks_carry_python_frames(self):
        """`run --torch` on real PyTorch: the page's allocator level peaks at PyTorch's own max_memory_allocated,
        and hovering scratch()'s block shows its exact size and its Python frame (file and line)."""
        prog = self.path("tiny.py")
        with open(prog, "w") as f:
            f.write(TINY_TORCH)
        db = self.path("t.db")
        env = sim_env(preload=False)
        env.pop("PYTHONPATH", None)
        p = subprocess.run([CUMEMTRACE, "run", "--torch", "--sim-gpu", "H100", "-o", db, "--", TORCH_PY, prog],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        torch_peak = int([l for l in p.stdout.splitlines() if l.startswith("TORCH_PEAK ")][0].split()[1])
        self.assertEqual(torch_peak, 16 * MiB)
        page = self.path("torch-real.html")
        cmt("report", "--html", page, db)
        d = page_data(page)
        lv = d["runs"][0]["levels"]["allocator"]
        self.assertEqual(lv["peak_bytes"], torch_peak)
        i = lv["size"].index(12 * MiB)
        a, b = lv["start"][i], lv["end"][i]
        out = self.drive(page, [
            {"eval": "cmtViewer.setView(%d, %d)" % (a - (b - a), b + (b - a))},  # its short life, widened 3 times
            {"hover_at": [(a + b) // 2, 4 * MiB + 6 * MiB]},  # above make_weights' 4 MiB block, which is older
            {"screenshot": "torch-real"},
        ], "torch-real")
        self.quiet(out)
        detail = out["results"][1]
        self.assertIn("12,582,912 bytes (12.0 MiB)", detail)
        self.assertIn("scratch  (%s:9)" % prog, stack_lines(detail))
        self.assertIn("<module>  (%s:14)" % prog, stack_lines(detail))


if __name__ == "__main__":
    unittest.main()
