"""Ranks of a distributed job (issue 11): a torchrun-style launcher starts 4 processes of
tests/clients/rank_client.c with RANK/LOCAL_RANK/WORLD_SIZE under `cumemtrace run -o DIR`, on two simulated
GPUs of 256 MiB; `report DIR` must give each rank's exact peak, the worst rank, the imbalance, which rank ran
out of memory first and the GPUs ranks share, all computed here by hand from what the client does."""
import json
import os
import sqlite3
import subprocess
import sys

from cmtlib import CUMEMTRACE, MiB, TraceTest, client, sim_env, wait_traces

# Peaks by rank (MiB): each rank holds PEAKS[r] - 16 MiB and 16 MiB at once, all ranks at the same time
# (a barrier in the client). Ranks 3 then 1 ask for 1 TiB, in that order (rank 1 waits for rank 3's).
PEAKS = [64, 96, 160, 48]
OOM_ORDER = [3, 1]

LAUNCHER = """
import os, subprocess, sys
n = int(sys.argv[1])
procs = [subprocess.Popen(sys.argv[2:], env=dict(os.environ, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE=str(n)))
         for r in range(n)]
sys.exit(max(p.wait() for p in procs))
"""


def cumemtrace(*args):
    p = subprocess.run([CUMEMTRACE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError("cumemtrace %s exited %d: %s" % (" ".join(args), p.returncode, p.stderr))
    return p.stdout


class Ranks(TraceTest):
    @classmethod
    def setUpClass(cls):
        import tempfile
        cls._job = tempfile.TemporaryDirectory(prefix="cmt-ranks-")
        job = cls._job.name
        cls.out = os.path.join(job, "out")
        sync = os.path.join(job, "sync")
        os.mkdir(cls.out)
        os.mkdir(sync)
        launcher = os.path.join(job, "launch.py")
        with open(launcher, "w") as f:
            f.write(LAUNCHER)
        env = sim_env(preload=False)
        cls.job = subprocess.run(
            [CUMEMTRACE, "run", "-o", cls.out, "--sim-gpu", "2x256MiB", "--", sys.executable, launcher, "4",
             client("rank_client"), ",".join(map(str, PEAKS)), ",".join(map(str, OOM_ORDER)), sync],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        wait_traces(cls.out)
        cls.report = json.loads(cumemtrace("report", "--json", cls.out)) if cls.job.returncode == 0 else None

    @classmethod
    def tearDownClass(cls):
        cls._job.cleanup()

    def setUp(self):
        super().setUp()
        self.assertEqual(self.job.returncode, 0, self.job.stderr)

    def test_one_trace_per_rank_none_for_workers(self):
        # The launcher (Python, no CUDA) and rank 0's two forked workers (no CUDA) leave no file.
        files = sorted(f for f in os.listdir(self.out) if f.endswith(".db"))
        self.assertEqual(len(files), 4, files)
        ranks = set()
        for f in files:
            con = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.out, f), uri=True)
            env = dict(con.execute("SELECT name, value FROM env").fetchall())
            pid, = con.execute("SELECT pid FROM process").fetchone()
            con.close()
            self.assertEqual(env["WORLD_SIZE"], "4")
            self.assertIn("cumemtrace-rank_client-%d.db" % pid, f)
            ranks.add(int(env["RANK"]))
        self.assertEqual(ranks, {0, 1, 2, 3})

    def test_per_rank_peaks_by_hand(self):
        rs = self.report["ranks"]
        self.assertEqual([r["rank"] for r in rs], [0, 1, 2, 3])
        pids = {t["pid"]: t for t in self.report["traces"]}
        for r in rs:
            self.assertEqual(r["peak_bytes"], PEAKS[r["rank"]] * MiB)
            self.assertEqual(r["local_rank"], r["rank"])
            self.assertEqual(r["world_size"], 4)
            self.assertEqual(r["device"], r["rank"] % 2)  # LOCAL_RANK % 2 devices
            self.assertTrue(r["device_uuid"].endswith("%012d" % (r["rank"] % 2)), r["device_uuid"])
            t = pids[r["pid"]]
            self.assertEqual(r["host"], t["host"])
            self.assertEqual(r["peak_ns"], t["peak_ns"])

    def test_worst_rank_and_imbalance(self):
        s = self.report["rank_summary"]
        self.assertEqual(s["worst_rank"], 2)
        self.assertEqual(s["max_peak_bytes"], 160 * MiB)
        self.assertEqual(s["min_peak_bytes"], 48 * MiB)
        self.assertEqual(s["imbalance_bytes"], 112 * MiB)
        self.assertAlmostEqual(s["imbalance_ratio"], 160 / 48, places=5)

    def test_first_out_of_memory(self):
        rs = {r["rank"]: r for r in self.report["ranks"]}
        self.assertEqual([rs[k]["ooms"] for k in range(4)], [0, 1, 0, 1])
        for k in (1, 3):
            self.assertEqual(rs[k]["first_oom_bytes"], 1 << 40)
        self.assertIsNone(rs[0]["first_oom_ns"])
        # Rank 3 ran out first (rank 1 waited for it): the lower rank number is not the answer.
        self.assertLess(rs[3]["first_oom_unix_ns"], rs[1]["first_oom_unix_ns"])
        self.assertEqual(self.report["rank_summary"]["first_oom_rank"], 3)

    def test_ranks_sharing_a_gpu(self):
        devs = {d["device"]: d for d in self.report["rank_devices"]}
        self.assertEqual(sorted(devs), [0, 1])
        # All ranks hold their peak at once (the barrier): together the ranks of one GPU peak at their sum.
        self.assertEqual(devs[0]["peak_bytes"], (64 + 160) * MiB)
        self.assertEqual(devs[1]["peak_bytes"], (96 + 48) * MiB)
        self.assertEqual(sorted(r["rank"] for r in devs[0]["ranks"]), [0, 2])
        self.assertEqual(sorted(r["rank"] for r in devs[1]["ranks"]), [1, 3])
        self.assertTrue(devs[0]["shared"] and devs[1]["shared"])
        self.assertEqual(devs[0]["sum_of_rank_peaks_bytes"], 224 * MiB)

    def test_text(self):
        text = cumemtrace("report", self.out)
        self.assertIn("RANKS (4 processes)", text)
        self.assertIn("worst rank 2: peak 160.0 MiB", text)
        self.assertIn("imbalance: max - min 112.0 MiB (least: rank 3, 48.0 MiB), max / min 3.333", text)
        self.assertIn("first out of memory: rank 3 at", text)
        self.assertRegex(text, r"device 0 GPU-\S+ \(.*\), shared: ranks 0, 2\n    peak together 224.0 MiB")

    def test_single_process_without_rank(self):
        # A plain program: no RANKS section; the JSON key is there with the process, rank null.
        p, db = self.trace([client("direct_client")])
        text = cumemtrace("report", db)
        self.assertNotIn("RANKS", text)
        rep = json.loads(cumemtrace("report", "--json", db))
        self.assertEqual(len(rep["ranks"]), 1)
        self.assertIsNone(rep["ranks"][0]["rank"])
        self.assertEqual(rep["ranks"][0]["peak_bytes"], rep["peak_bytes"])


class RanksWithPhases(TraceTest):
    def test_phase_at_each_ranks_peak(self):
        """The rank table says in which phase (NVTX ranges) each rank peaked: two ranks of the NVTX client
        (tests/clients/nvtx_client.c "phases": its peak, 16 MiB, is inside step > backward)."""
        job = self.path("job") + "/"
        launcher = self.path("launch.py")
        with open(launcher, "w") as f:
            f.write(LAUNCHER)
        env = sim_env(preload=False)
        env.pop("NVTX_INJECTION64_PATH", None)
        p = subprocess.run([CUMEMTRACE, "run", "-o", job, "--", sys.executable, launcher, "2", client("nvtx_client"),
                            "phases"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr)
        wait_traces(job)
        rep = json.loads(cumemtrace("report", "--json", job))
        self.assertEqual([(r["rank"], r["peak_bytes"], r["ranges_at_peak"]) for r in rep["ranks"]],
                         [(0, 16 * MiB, ["step", "backward"]), (1, 16 * MiB, ["step", "backward"])])
        self.assertRegex(cumemtrace("report", job), r"\n  0 .* -  in step > backward\n")
