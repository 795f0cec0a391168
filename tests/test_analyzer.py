"""The analyzer verbs (report, timeline, flame, diff) on traces built by tests/tracebuilder.py, with peaks, leaks,
top stacks and failures computed by hand; golden text and JSON; every bad-input case of issue 3.

Goldens live in tests/golden/; CMT_UPDATE_GOLDEN=1 rewrites them from the current output (then review the diff).
"""
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import unittest
import xml.etree.ElementTree as ET

from cmtlib import CUMEMTRACE, TraceTest
from tracebuilder import GiB, MiB, TraceBuilder

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden")

LIBCUDA = "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
LIBCUDART = "/usr/local/cuda/lib64/libcudart.so.12"
LIBPRELOAD = "/opt/cumemtrace/lib/libcumemtrace.so"


def cmt(*args, check=True):
    p = subprocess.run([CUMEMTRACE] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError("cumemtrace %s exited %d\nstdout:\n%s\nstderr:\n%s" % (args, p.returncode, p.stdout,
                                                                                   p.stderr))
    return p


def basic_trace(path, pid=4242, start_ns=10_000_000_000, first_stack=None):
    """One process, device 0 (24 GiB). Hand-computed (live device bytes after each event):
      1 alloc A 1 GiB [model]       1.00 GiB
      2 alloc W 256 MiB [cublas]    1.25
      3 alloc X1 512 MiB [act]      1.75
      4 alloc X2 512 MiB [act]      2.25
      5 free X1                     1.75
      6 free X2                     1.25
      7 allocAsync Y 768 MiB [act]  2.00
      8 freeAsync Y                 1.25
      9 cuMemCreate H 256 MiB [model] 1.50
     10 reserve VA 1 GiB, 11 map H  (not memory)
     12 host pinned 64 MiB, 13 managed 128 MiB (own lines)
     14 FAILED alloc 4 GiB [act], free 1 GiB of 24 GiB; process holds 1.5 GiB
     15 alloc Z 1 GiB [act]         2.50   <- peak, seq 15, at 15 ms
     16 free W                      2.25
     17 unmap, 18 unreserve
     19 cuMemRelease H              2.00
     20 free host pinned
    exit: A (1 GiB, model) and Z (1 GiB, act) leaked = 2 GiB; managed 128 MiB still live.
    At the peak: model 1.25 GiB (A + H, 2 allocations), act 1 GiB, cublas 256 MiB."""
    t = TraceBuilder(path, pid=pid, start_ns=start_ns)
    if first_stack:
        t.stack(first_stack)  # shifts stack and frame ids, as another run would
    model = t.stack([("cuMemAlloc_v2", LIBCUDA), (None, LIBCUDA), ("cudaMalloc", LIBCUDART),
                     ("_ZN5Model4loadERKSs", "/opt/app/lib/libmodel.so"), ("main", "/opt/app/bin/train")])
    act = t.stack([("cuMemAlloc_v2", LIBPRELOAD), ("_Z11activationsi", "/opt/app/lib/libapp.so"),
                   ("main", "/opt/app/bin/train")])
    ws = t.stack([("cublasCreate_v2", "/usr/lib/libcublas.so.12"), (None, "/usr/lib/libcublas.so.12"),
                  ("main", "/opt/app/bin/train")])
    a = t.alloc(1 * GiB, stack=model)
    w = t.alloc(256 * MiB, stack=ws)
    x1 = t.alloc(512 * MiB, stack=act)
    x2 = t.alloc(512 * MiB, stack=act)
    t.free(x1)
    t.free(x2)
    y = t.alloc_async(768 * MiB, stack=act)
    t.free_async(y)
    h = t.create(256 * MiB, stack=model)
    va = t.reserve(1 * GiB)
    t.map(va, 256 * MiB, h)
    p = t.alloc_host(64 * MiB)
    t.alloc_managed(128 * MiB)
    t.fail(4 * GiB, stack=act, free_bytes=1 * GiB, total_bytes=24 * GiB)
    t.alloc(1 * GiB, stack=act)
    t.free(w)
    t.unmap(va, 256 * MiB)
    t.unreserve(va, 1 * GiB)
    t.release(h)
    t.free_host(p)
    return t


MODEL = ["Model::load(std::string const&)", "main"]
ACT = ["activations(int)", "main"]
WS = ["cublasCreate_v2", "libcublas.so.12+0x1010", "main"]


class ReportTest(TraceTest):
    def setUp(self):
        super().setUp()
        self.db = basic_trace(self.path("run.db")).close()

    def test_json_numbers(self):
        r = json.loads(cmt("report", "--json", self.db).stdout)
        self.assertEqual(r["peak_bytes"], 2 * GiB + 512 * MiB)
        self.assertEqual(r["peak_ns"], 15_000_000)
        self.assertEqual(r["peak_seq"], 15)
        self.assertEqual(r["leaked_bytes"], 2 * GiB)
        self.assertEqual(r["leaked_count"], 2)
        self.assertEqual([(s["bytes"], s["count"], s["stack"]) for s in r["top_at_peak"]],
                         [(1 * GiB + 256 * MiB, 2, MODEL), (1 * GiB, 1, ACT), (256 * MiB, 1, WS)])
        self.assertEqual([(m["module"], m["bytes"]) for m in r["modules_at_peak"]],
                         [("libmodel.so", 1 * GiB + 256 * MiB), ("libapp.so", 1 * GiB),
                          ("libcublas.so.12", 256 * MiB)])
        self.assertEqual(len(r["failures"]), 1)
        f = r["failures"][0]
        self.assertEqual((f["size"], f["result"], f["free_bytes"], f["total_bytes"], f["live_bytes"], f["stack"],
                          f["seq"], f["api"]),
                         (4 * GiB, 2, 1 * GiB, 24 * GiB, 1 * GiB + 512 * MiB, ACT, 14, "cuMemAlloc_v2"))
        self.assertEqual([(l["bytes"], l["stack"]) for l in r["leaks"]], [(1 * GiB, MODEL), (1 * GiB, ACT)])
        om = r["other_memory"]
        self.assertEqual(om["host_pinned"], {"peak_bytes": 64 * MiB, "live_at_exit_bytes": 0})
        self.assertEqual(om["managed"], {"peak_bytes": 128 * MiB, "live_at_exit_bytes": 128 * MiB})
        self.assertEqual(om["va_reserved"]["peak_bytes"], 1 * GiB)
        self.assertEqual(r["churn"]["allocations"], 7)  # A W X1 X2 Y H Z
        self.assertEqual(r["churn"]["frees"], 5)
        self.assertEqual(r["events"], 20)
        self.assertEqual(r["events_by_api"]["cuMemAlloc_v2"], 6)
        self.assertEqual(r["largest"][0]["size"], 1 * GiB)
        d = r["traces"][0]["devices"][0]
        self.assertEqual((d["device"], d["peak_bytes"], d["peak_seq"], d["total_bytes"]),
                         (0, 2 * GiB + 512 * MiB, 15, 24 * GiB))

    def golden(self, name, text):
        path = os.path.join(GOLDEN, name)
        if os.environ.get("CMT_UPDATE_GOLDEN"):
            os.makedirs(GOLDEN, exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        with open(path) as f:
            self.assertEqual(text, f.read(), "output differs from %s (CMT_UPDATE_GOLDEN=1 rewrites it)" % path)

    def test_golden_text(self):
        out = cmt("report", self.db).stdout.replace(self.db, "TRACE")
        self.golden("report_basic.txt", out)

    def test_golden_json(self):
        r = json.loads(cmt("report", "--json", self.db).stdout)
        r["traces"][0]["path"] = "TRACE"
        self.golden("report_basic.json", json.dumps(r, indent=1, sort_keys=True) + "\n")

    def test_text_has_human_units_only(self):
        out = cmt("report", self.db).stdout
        self.assertIn("2.5 GiB at 15.0 ms (seq 15)", out)
        self.assertIn("CUDA_ERROR_OUT_OF_MEMORY", out)
        self.assertNotIn(str(2 * GiB + 512 * MiB), out)

    def test_html(self):
        page = self.path("r.html")
        p = cmt("report", "--html", page, self.db)
        self.assertIn("PEAK DEVICE MEMORY", p.stdout)
        html = open(page).read()
        self.assertTrue(html.startswith("<!DOCTYPE html>"))
        # the viewer (tests/test_viewer.py checks it in a browser): inline script and data, nothing fetched
        self.assertIn("<script type='application/json' id='cmt-data'>", html)
        self.assertIn('"Model::load(std::string const&)"', html)
        self.assertNotIn("src=", html)
        self.assertNotIn("href=", html)

    def test_top_limits_stacks(self):
        r = json.loads(cmt("report", "--json", "--top", "1", self.db).stdout)
        self.assertEqual(len(r["top_at_peak"]), 1)


class MultiTest(TraceTest):
    def test_directory_of_processes(self):
        """Two ranks on one clock. rank0 (start 10 s): 1 GiB at +1 ms, 1 GiB at +2 ms, frees one at +5 ms.
        rank1 (start 10 s + 0.5 ms): 2 GiB at +3.5 ms (absolute 10.004 s), freed at +6.5 ms.
        Sum: 1 (1 ms), 2 (2 ms), 4 (4 ms) <- peak, 3 (5 ms), 1 (7 ms)."""
        d = self.path("job")
        os.mkdir(d)
        s = 10_000_000_000
        t0 = TraceBuilder(os.path.join(d, "rank0.db"), pid=100, start_ns=s)
        k0 = t0.stack(["_Z4stepv", "main"])
        a = t0.alloc(1 * GiB, stack=k0, at=1_000_000)
        t0.alloc(1 * GiB, stack=k0, at=2_000_000)
        t0.free(a, at=5_000_000)
        t0.close()
        t1 = TraceBuilder(os.path.join(d, "rank1.db"), pid=101, start_ns=s + 500_000)
        k1 = t1.stack(["_Z4stepv", "main"])
        b = t1.alloc(2 * GiB, stack=k1, at=3_500_000)
        t1.free(b, at=6_500_000)
        t1.close()
        r = json.loads(cmt("report", "--json", d).stdout)
        self.assertEqual(len(r["traces"]), 2)
        self.assertEqual(r["peak_bytes"], 4 * GiB)
        self.assertEqual(r["peak_ns"], 4_000_000)
        self.assertEqual(r["peak_pid"], 101)
        self.assertEqual([t["peak_bytes"] for t in r["traces"]], [2 * GiB, 2 * GiB])
        self.assertEqual([(s["bytes"], s["count"], s["stack"]) for s in r["top_at_peak"]],
                         [(4 * GiB, 3, ["step()", "main"])])
        self.assertEqual(r["leaked_bytes"], 1 * GiB)
        # the same files named one by one give the same answer
        r2 = json.loads(cmt("report", "--json", os.path.join(d, "rank0.db"), os.path.join(d, "rank1.db")).stdout)
        self.assertEqual(r2["peak_bytes"], 4 * GiB)
        text = cmt("report", d).stdout
        self.assertIn("all processes summed", text)
        folded = cmt("flame", d).stdout
        self.assertEqual(folded, "train[100];main;step() 2147483648\ntrain[101];main;step() 2147483648\n")

    def test_several_devices(self):
        t = TraceBuilder(self.path("two.db"), devices=((0, "GPU A", 8 * GiB), (1, "GPU B", 8 * GiB)))
        k = t.stack(["_Z1fv"])
        a = t.alloc(3 * GiB, stack=k, device=0)
        t.alloc(1 * GiB, stack=k, device=1)
        t.free(a, device=0)
        t.alloc(2 * GiB, stack=k, device=1)
        db = t.close()
        r = json.loads(cmt("report", "--json", db).stdout)
        devs = {d["device"]: d for d in r["traces"][0]["devices"]}
        self.assertEqual((devs[0]["peak_bytes"], devs[0]["peak_seq"]), (3 * GiB, 1))
        self.assertEqual((devs[1]["peak_bytes"], devs[1]["peak_seq"]), (3 * GiB, 4))
        self.assertEqual((r["peak_bytes"], r["peak_seq"]), (4 * GiB, 2))


class FlameTest(TraceTest):
    def test_modes(self):
        db = basic_trace(self.path("run.db")).close()
        at_peak = cmt("flame", db).stdout
        self.assertEqual(at_peak, cmt("flame", "--at-peak", db).stdout)
        self.assertEqual(at_peak.splitlines(), sorted([
            "main;Model::load(std::string const&) %d" % (GiB + 256 * MiB),
            "main;activations(int) %d" % GiB,
            "main;libcublas.so.12+0x1010;cublasCreate_v2 %d" % (256 * MiB)]))
        leaked = cmt("flame", "--leaked", db).stdout.splitlines()
        self.assertEqual(leaked, sorted(["main;Model::load(std::string const&) %d" % GiB,
                                         "main;activations(int) %d" % GiB]))
        total = dict(l.rsplit(" ", 1) for l in cmt("flame", "--total", db).stdout.splitlines())
        self.assertEqual(int(total["main;activations(int)"]), (512 + 512 + 768 + 1024) * MiB)
        j = json.loads(cmt("flame", "--json", db).stdout)
        self.assertEqual(sum(x["bytes"] for x in j), 2 * GiB + 512 * MiB)
        out = self.path("f.folded")
        self.assertEqual(cmt("flame", "-o", out, db).stdout, "")
        self.assertEqual(open(out).read(), at_peak)
        self.assertEqual(cmt("flame", "--total", "--leaked", db, check=False).returncode, 2)


class TimelineTest(TraceTest):
    def setUp(self):
        super().setUp()
        self.db = basic_trace(self.path("run.db")).close()

    def test_csv(self):
        out = self.path("t.csv")
        cmt("timeline", "-o", out, self.db)
        rows = [l.split(",") for l in open(out).read().splitlines()]
        head = rows[0]
        self.assertEqual(head[:3], ["time_ns", "pid", "device"])
        self.assertEqual(head[-1], "device_memory_bytes")
        tot = [int(r[-1]) for r in rows[1:]]
        self.assertEqual(max(tot), 2 * GiB + 512 * MiB)
        peak_row = rows[1 + tot.index(max(tot))]
        self.assertEqual(int(peak_row[0]), 15_000_000)
        self.assertEqual(tot[-1], 2 * GiB)
        ix = head.index("stream_ordered_bytes")
        self.assertEqual(max(int(r[ix]) for r in rows[1:]), 768 * MiB)

    def test_chrome_trace(self):
        out = self.path("t.json")
        cmt("timeline", "-o", out, self.db)
        ev = json.load(open(out))["traceEvents"]
        counters = [e for e in ev if e["ph"] == "C" and e["name"] == "GPU 0 memory"]
        self.assertTrue(counters)
        self.assertEqual(max(sum(e["args"].values()) for e in counters), 2 * GiB + 512 * MiB)
        instants = [e for e in ev if e["ph"] == "i"]
        self.assertTrue(any(e["name"].startswith("peak") and e["ts"] == 15000.0 for e in instants))
        self.assertTrue(any(e["name"].startswith("failed cuMemAlloc_v2") and e["args"]["size"] == 4 * GiB
                            for e in instants))
        for e in ev:
            self.assertIn("pid", e)

    def test_svg_and_html(self):
        for by in ("kind", "module"):
            svg = self.path("t-%s.svg" % by)
            cmt("timeline", "--by", by, "-o", svg, self.db)
            root = ET.parse(svg).getroot()
            self.assertTrue(root.tag.endswith("svg"))
            text = open(svg).read()
            self.assertIn("peak 2.5 GiB", text)
            self.assertIn("failed cuMemAlloc_v2 of 4.0 GiB", text)
        self.assertIn("libmodel.so", open(self.path("t-module.svg")).read())
        html = self.path("t.html")
        cmt("timeline", "-o", html, self.db)
        page = open(html).read()
        self.assertIn("<script type='application/json' id='cmt-data'>", page)  # the viewer
        self.assertNotIn("src=", page)

    def test_module_csv(self):
        out = self.path("m.csv")
        cmt("timeline", "--by", "module", "--points", "50", "-o", out, self.db)
        head = open(out).readline().strip().split(",")
        self.assertEqual(set(head[3:-1]), {"libmodel.so_bytes", "libcublas.so.12_bytes", "libapp.so_bytes"})

    def test_usage(self):
        self.assertEqual(cmt("timeline", self.db, check=False).returncode, 2)
        self.assertEqual(cmt("timeline", "-o", self.path("x.png"), self.db, check=False).returncode, 2)
        p = cmt("timeline", "-o", "-", self.db)
        self.assertTrue(p.stdout.startswith("time_ns,"))


class DiffTest(TraceTest):
    def test_known_difference(self):
        """B is A with the allocation at its peak (seq 15, activations) 512 MiB larger, in a file whose stack and
        frame ids differ (one more stack first): stacks must match by their symbolized frames."""
        a = basic_trace(self.path("a.db")).close()
        tb = basic_trace(self.path("b.db"), first_stack=["_Z6unusedv"])
        tb.db.execute("UPDATE events SET size = size + ? WHERE seq = 15", (512 * MiB,))
        b = tb.close()
        r = json.loads(cmt("diff", "--json", a, b).stdout)
        self.assertEqual(r["a"]["peak_bytes"], 2 * GiB + 512 * MiB)
        self.assertEqual(r["b"]["peak_bytes"], 3 * GiB)
        self.assertEqual(r["peak_delta_bytes"], 512 * MiB)
        first = r["stacks"][0]
        self.assertEqual((first["stack"], first["a_bytes"], first["b_bytes"], first["delta_bytes"]),
                         (ACT, 1 * GiB, 1 * GiB + 512 * MiB, 512 * MiB))
        self.assertTrue(all(s["delta_bytes"] == 0 for s in r["stacks"][1:]))
        self.assertEqual(r["modules"][0]["module"], "libapp.so")
        text = cmt("diff", a, b).stdout
        self.assertIn("+512.0 MiB", text)
        self.assertIn("(+20.0%)", text)
        for ext in ("svg", "html"):
            out = self.path("d." + ext)
            cmt("diff", "-o", out, a, b)
            body = open(out).read()
            self.assertIn("<svg" if ext == "svg" else "<script type='application/json' id='cmt-data'>", body)
            self.assertNotIn("src=", body)
        ET.parse(self.path("d.svg"))
        self.assertEqual(cmt("diff", a, check=False).returncode, 2)


class LongListsTest(TraceTest):
    def test_text_shows_first_and_last_ten_failures_json_all(self):
        t = TraceBuilder(self.path("t.db"))
        k = t.stack(["_Z5allocv"])
        for i in range(25):
            t.fail(MiB * (i + 1), stack=k, free_bytes=GiB)
        db = t.close()
        text = cmt("report", db).stdout
        self.assertIn("FAILED ALLOCATIONS: 25", text)
        self.assertIn("... 5 more failed allocations (all of them in --json)", text)
        failures = text[text.index("FAILED ALLOCATIONS"):text.index("FRAGMENTATION")]
        self.assertIn("cuMemAlloc_v2 of 10.0 MiB", failures)   # the 10th
        self.assertNotIn("cuMemAlloc_v2 of 11.0 MiB", failures)  # the 11th is left out
        self.assertIn("cuMemAlloc_v2 of 16.0 MiB", failures)   # the 16th, first of the last ten
        r = json.loads(cmt("report", "--json", db).stdout)
        self.assertEqual(len(r["failures"]), 25)
        # Requests of different sizes are not each other's retries: 25 out-of-memory verdicts.
        self.assertEqual(len(r["ooms"]), 25)
        self.assertIn("OUT OF MEMORY: 25", text)
        self.assertIn("... 5 more (all of them in --json)", text)


class BadInputTest(TraceTest):
    def bad(self, path, words, verbs=("report", "flame", "timeline", "diff")):
        for verb in verbs:
            args = {"report": ["report", path], "flame": ["flame", path],
                    "timeline": ["timeline", "-o", self.path("x.svg"), path], "diff": ["diff", path, path]}[verb]
            p = cmt(*args, check=False)
            self.assertNotEqual(p.returncode, 0, (verb, p.stdout))
            self.assertEqual(p.stdout, "", verb)
            lines = p.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, (verb, p.stderr))
            self.assertIn(words, lines[0])
            self.assertNotIn("Traceback", p.stderr)
            self.assertLess(p.returncode, 128, "crashed")
        self.assertFalse(os.path.exists(self.path("x.svg")))

    def test_missing(self):
        self.bad(self.path("nope.db"), "No such file or directory")

    def test_fifo(self):
        os.mkfifo(self.path("f.db"))
        self.bad(self.path("f.db"), "not a regular file")

    def test_impossible_size(self):
        # Found by tests/fuzz_traces.py: sums overflowed into nonsense instead of an error.
        db = basic_trace(self.path("t.db")).close()
        con = sqlite3.connect(db)
        con.execute("UPDATE events SET size = 9223372036854775807 WHERE seq = 1")
        con.commit()
        con.close()
        self.bad(db, "impossible size")

    def test_damaged_text_still_gives_valid_output(self):
        """Invalid UTF-8 and folded-stack separators in names: the output stays JSON, SVG and folded stacks."""
        db = basic_trace(self.path("t.db")).close()
        con = sqlite3.connect(db)
        con.execute("UPDATE devices SET name = CAST(x'636d74ff80fe0a3c26' AS TEXT)")
        con.execute("UPDATE frames SET function = 'a;b' || char(10) || 'c'")
        con.execute("UPDATE process SET argv = '[\"unterminated'")
        con.commit()
        con.close()
        r = json.loads(cmt("report", "--json", db).stdout)  # strict: raises on invalid JSON
        self.assertEqual(r["traces"][0]["argv"], ["unterminated"])
        svg = self.path("t.svg")
        cmt("timeline", "-o", svg, db)
        ET.parse(svg)
        for line in cmt("flame", "--total", db).stdout.splitlines():
            frames, count = line.rsplit(" ", 1)
            self.assertGreater(int(count), 0)
            self.assertNotIn("\n", frames)
            self.assertIn("a:b c", frames)

    def test_not_sqlite(self):
        with open(self.path("t.db"), "w") as f:
            f.write("this is not a database\n" * 10)
        self.bad(self.path("t.db"), "not an SQLite database")

    def test_zero_bytes(self):
        open(self.path("t.db"), "w").close()
        self.bad(self.path("t.db"), "empty file")

    def test_truncated(self):
        db = basic_trace(self.path("full.db")).close()
        data = open(db, "rb").read()
        with open(self.path("t.db"), "wb") as f:
            f.write(data[:len(data) // 2])
        self.bad(self.path("t.db"), "truncated")

    def test_corrupt_page(self):
        t = TraceBuilder(self.path("big.db"))
        k = t.stack(["_Z1fv"])
        for i in range(5000):
            t.free(t.alloc(MiB + i, stack=k))
        db = t.close()
        size = os.path.getsize(db)
        with open(db, "r+b") as f:
            f.seek(4096 * (size // 4096 // 2))
            f.write(b"\xff" * 4096)
        self.bad(db, "corrupt trace")

    def test_foreign(self):
        import sqlite3
        con = sqlite3.connect(self.path("t.db"))
        con.execute("CREATE TABLE photos (id INTEGER, data BLOB)")
        con.commit()
        con.close()
        self.bad(self.path("t.db"), "not a cumemtrace trace")
        con = sqlite3.connect(self.path("m.db"))
        con.execute("CREATE TABLE meta (key TEXT, value)")
        con.execute("INSERT INTO meta VALUES ('format', 'something-else')")
        con.commit()
        con.close()
        self.bad(self.path("m.db"), "not a cumemtrace trace")

    def test_newer_schema(self):
        t = basic_trace(self.path("t.db"))
        t.db.execute("PRAGMA user_version=99")
        db = t.close()
        self.bad(db, "newer cumemtrace")

    def test_empty_trace(self):
        db = TraceBuilder(self.path("t.db")).close()
        self.bad(db, "empty trace: no events recorded (the program made no CUDA memory calls)")
        # events made and all lost (its writer killed before its first commit): said so, not "no calls"
        db = TraceBuilder(self.path("l.db")).close(finalized=False, events_lost=480)
        self.bad(db, "%s: empty trace: none of its events was written, 480 were lost while tracing" % db)

    def test_still_being_written(self):
        """A writer holds its flock on the file while the program (here: this process) runs."""
        import fcntl
        t = TraceBuilder(self.path("t.db"), pid=os.getpid(), host=socket.gethostname())
        t.alloc(MiB)
        db = t.close(finalized=False)
        fd = os.open(db, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.bad(db, "still being written")
        finally:
            os.close(fd)

    def test_unfinished_trace_of_a_live_pid_is_read(self):
        """No writer holds it: its writer died. That a process with its pid runs (pid reuse, another
        container) says nothing: the trace is analyzed, with the warning that it was not finished."""
        t = TraceBuilder(self.path("t.db"), pid=os.getpid(), host=socket.gethostname())
        t.alloc(MiB)
        db = t.close(finalized=False)
        p = subprocess.run([CUMEMTRACE, "report", "--json", db], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["peak_bytes"], MiB)
        self.assertIn("not finalized", p.stderr)

    def test_directory_without_traces(self):
        os.mkdir(self.path("d"))
        self.bad(self.path("d"), "no traces")

    def test_directory_skips_empty(self):
        os.mkdir(self.path("d"))
        TraceBuilder(os.path.join(self.path("d"), "a.db")).close()
        basic_trace(os.path.join(self.path("d"), "b.db")).close()
        p = cmt("report", "--json", self.path("d"))
        self.assertEqual(json.loads(p.stdout)["peak_bytes"], 2 * GiB + 512 * MiB)
        self.assertIn("holds no events", p.stderr)

    def test_killed_process_is_read_with_one_warning(self):
        t = basic_trace(self.path("t.db"), pid=2 ** 22 + 12345)  # above pid_max: never alive
        db = t.close(finalized=False)
        p = cmt("report", "--json", db)
        self.assertEqual(json.loads(p.stdout)["peak_bytes"], 2 * GiB + 512 * MiB)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1)
        self.assertIn("not finalized", p.stderr)

    def test_unknown_option_and_verb(self):
        self.assertEqual(cmt("report", "--bogus", "x", check=False).returncode, 2)
        self.assertEqual(cmt("report", check=False).returncode, 2)
        self.assertEqual(cmt("frobnicate", check=False).returncode, 2)
        for verb in ("report", "timeline", "flame", "diff"):
            self.assertEqual(cmt(verb, "--help").returncode, 0)


if __name__ == "__main__":
    unittest.main()
