"""From program to answer: real traces made through the interposer on the simulated driver, analyzed by
`cumemtrace`, checked against figures computed by hand from what the clients do (tests/clients/ops.h)."""
import json
import os
import re
import subprocess

from cmtlib import CUMEMTRACE, MiB, TraceTest, client, run, sim_env, wait_traces


def cumemtrace(*args, check=True):
    p = subprocess.run([CUMEMTRACE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError("cumemtrace %s exited %d: %s" % (" ".join(args), p.returncode, p.stderr))
    return p


# The direct_client workload, by hand. Device memory (device, stream-ordered, physical VMM) over time:
#   a 1 MiB, b 3 MiB + 5, free a, c 1 MiB, d 64 MiB      -> 68 MiB + 5
#   the 2^50-byte request fails                          -> unchanged
#   pitched 1000 x 100 = 100000 bytes asked for          -> 68 MiB + 100005
#   managed 5 MiB and host-pinned memory: not device memory
#   8 MiB stream-ordered, freed                          -> 76 MiB + 100005, back to 68 MiB + 100005
#   20 MiB physical (cuMemCreate, seq 15), mapped, unmapped, released -> 88 MiB + 100005: the peak
PEAK = 88 * MiB + 100005
LEAKED = (3 * MiB + 5) + MiB + 64 * MiB + 100000  # b, c, d, pitched
PEAK_SQL = """WITH d AS (
  SELECT a.alloc_ns AS t, a.seq AS s, a.size AS delta FROM allocations a
   WHERE a.kind IN ('device', 'stream_ordered', 'vmm_physical')
  UNION ALL
  SELECT f.ts_ns, f.seq, -a.size FROM allocations a JOIN events f ON f.seq = a.free_seq
   WHERE a.kind IN ('device', 'stream_ordered', 'vmm_physical'))
SELECT max(live) FROM (SELECT sum(delta) OVER (ORDER BY s) AS live FROM d)"""


class EndToEnd(TraceTest):
    def direct_trace(self):
        p, db = self.trace([client("direct_client")])
        return db

    def test_report_json_by_hand(self):
        db = self.direct_trace()
        r = json.loads(cumemtrace("report", "--json", db).stdout)
        self.assertEqual(r["peak_bytes"], PEAK)
        self.assertEqual(r["peak_seq"], 15)
        self.assertEqual(r["leaked_bytes"], LEAKED)
        self.assertEqual(r["leaked_count"], 4)
        self.assertEqual(len(r["failures"]), 1)
        f = r["failures"][0]
        self.assertEqual((f["size"], f["result"]), (1 << 50, 2))
        self.assertEqual(f["free_bytes"], 24 * 1024 * MiB - 35 * 2 * MiB)
        self.assertEqual(f["stack"][0], "client_try_huge")
        # At the peak: b, c, d from client_alloc_weights; the 20 MiB handle and the pitched block from main.
        top = r["top_at_peak"]
        self.assertEqual(top[0]["bytes"], (3 * MiB + 5) + MiB + 64 * MiB)
        self.assertEqual(top[0]["stack"][:2], ["client_alloc_weights", "main"])
        self.assertEqual(top[1]["bytes"], 20 * MiB + 100000)
        self.assertEqual(top[1]["stack"][0], "main")
        self.assertEqual(sum(t["bytes"] for t in top), PEAK)
        other = r["other_memory"]
        self.assertEqual(other["managed"]["live_at_exit_bytes"], 5 * MiB)
        self.assertEqual(other["host_pinned"]["peak_bytes"], 2 * MiB + 4096)
        self.assertEqual(other["va_reserved"]["peak_bytes"], 64 * MiB)

    def test_schema_readme_peak_query_agrees(self):
        db = self.direct_trace()
        self.assertEqual(self.scalar(db, PEAK_SQL), PEAK)

    def test_report_text_names_peak_and_failure(self):
        db = self.direct_trace()
        out = cumemtrace("report", db).stdout
        self.assertIn("88.1 MiB", out)  # 92374693 bytes
        self.assertIn("CUDA_ERROR_OUT_OF_MEMORY", out)
        self.assertIn("client_try_huge", out)

    def test_flame_at_peak_sums_to_peak(self):
        db = self.direct_trace()
        lines = cumemtrace("flame", "--at-peak", db).stdout.splitlines()
        total = sum(int(l.rsplit(" ", 1)[1]) for l in lines)
        self.assertEqual(total, PEAK)
        # where DWARF is installed frames carry " (file.c:LINE)" and inlined functions are frames marked
        # "_[i]" (tests/test_dwarf.py); without those, the stack by symbol names
        bare = [";".join(re.sub(r" \([^()]*\)$", "", f) for f in l.rsplit(" ", 1)[0].split(";")
                         if not f.endswith("_[i]")) + " " + l.rsplit(" ", 1)[1] for l in lines]
        self.assertIn("_start;__libc_start_main;libc.so.6+0x2724a;main;client_alloc_weights %d"
                      % ((3 * MiB + 5) + MiB + 64 * MiB), bare)

    def test_timeline_formats(self):
        db = self.direct_trace()
        out = self.path("t.json")
        cumemtrace("timeline", db, "-o", out)
        with open(out) as f:
            events = json.load(f)["traceEvents"]
        counters = [e for e in events if e.get("ph") == "C"]
        self.assertTrue(counters)
        # The device counter track reaches the peak exactly (the timeline keeps each bucket's maximum).
        self.assertIn(PEAK, [sum(v for v in e["args"].values()) for e in counters])
        csv = self.path("t.csv")
        cumemtrace("timeline", db, "-o", csv)
        with open(csv) as f:
            self.assertGreater(len(f.readlines()), 5)

    def test_diff_two_runs(self):
        """lifecycle_client 'return' allocates 1, 2, 3 MiB; 'vfork' the same and 8 MiB more, all from
        alloc_mib: one stack (matched by its symbols although addresses differ), grown by 8 MiB."""
        _, a = self.trace([client("lifecycle_client"), "return"], name="a.db", check=False)
        _, b = self.trace([client("lifecycle_client"), "vfork"], name="b.db")
        d = json.loads(cumemtrace("diff", "--json", a, b).stdout)
        self.assertEqual(d["a"]["peak_bytes"], 6 * MiB)
        self.assertEqual(d["b"]["peak_bytes"], 14 * MiB)
        first = d["stacks"][0]
        self.assertEqual((first["a_bytes"], first["b_bytes"], first["delta_bytes"]), (6 * MiB, 14 * MiB, 8 * MiB))
        self.assertEqual(first["stack"][0], "alloc_mib")

    def test_directory_of_processes(self):
        outdir = self.path("job") + "/"
        run([client("lifecycle_client"), "fork"], sim_env(output=outdir))
        wait_traces(outdir)  # the analyzer waits for a finishing writer, but the directory must be complete
        r = json.loads(cumemtrace("report", "--json", outdir).stdout)
        self.assertEqual(len(r["traces"]), 2)
        # Parent: 1 + 2 + 3 + 5 MiB live together; child: 4 MiB, alive while the parent held 6 MiB.
        self.assertEqual(r["peak_bytes"], 11 * MiB)

    def test_example_workload_out_of_memory(self):
        p, db = self.trace([client("train_sim")], memory="8GiB")
        self.assertIn("CUDA out of memory", p.stderr)
        r = json.loads(cumemtrace("report", "--json", db).stdout)
        self.assertEqual(r["peak_bytes"], self.scalar(db, PEAK_SQL))
        nfail = self.scalar(db, "SELECT count(*) FROM failures")
        self.assertGreater(nfail, 0)
        self.assertEqual(len(r["failures"]), nfail)
        self.assertTrue(all(f["result"] == 2 for f in r["failures"]))
        self.assertEqual({f["stack"][0] for f in r["failures"]}, {"cache_alloc"})
        # The last out-of-memory is a capacity one (the cache had nothing left to give back), and the HTML
        # page says so too.
        self.assertEqual(r["ooms"][-1]["verdict"], "capacity")
        page = self.path("r.html")
        cumemtrace("report", "--html", page, db)
        with open(page) as f:
            html = f.read()
        self.assertIn("CAPACITY OOM", html)
        self.assertIn("forward_layer", html)
