"""The ledger (issue 11): the device memory the driver counts as used, split into our allocations by
owner, pool reserves, the CUDA context, other processes and what is left unattributed, from samples taken
with CUMEMTRACE_SAMPLE_MS. On the simulated GPU every part is known (tests/clients/ledger_client.c: the
H100 preset's context, a workspace allocated inside a cuBLAS stand-in, a simulated other process), so the
ledger must add up exactly; with the real PyTorch its caching-allocator part must equal torch's reserved."""
import json
import os
import subprocess
import sys

import cmtlib
from cmtlib import CUMEMTRACE, MiB, TraceTest, client, run, sim_env

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_real_torch import SKIP as TORCH_SKIP, TORCH_PY  # noqa: E402

PAGE = 2 * MiB
# The TSan suite records no stacks: owners are then unknown, and everything is user code "[no stack]".
STACKS = os.environ.get("CMT_TEST_STACK_DEPTH") != "0"
H100_CONTEXT = 524 * MiB  # simgpu/simcuda.c's preset, whole pages
PARTS = ("caching_allocator", "cublas", "cublaslt", "cudnn", "nccl", "user_code", "pool_reserve", "graph_pool",
         "context", "other_processes", "unattributed")


def cumemtrace(*args, env=None):
    p = subprocess.run([CUMEMTRACE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300,
                       env=env)
    if p.returncode != 0:
        raise AssertionError("cumemtrace %s exited %d: %s" % (" ".join(args), p.returncode, p.stderr))
    return p.stdout


class Ledger(TraceTest):
    def ledger_run(self):
        p, db = self.trace([client("ledger_client")], extra={
            "SIMCUDA_GPU": "H100", "SIMCUDA_MEMORY": "", "SIMCUDA_OTHER_PROCESS": "1GiB@1000",
            "CUMEMTRACE_SAMPLE_MS": "250"})
        said = {k: int(v) for k, v in (line.split() for line in p.stdout.splitlines())}
        return said, db

    def test_samples_are_what_the_driver_said(self):
        said, db = self.ledger_run()
        rows = self.query(db, "SELECT e.seq, e.free_bytes, e.total_bytes, e.size, e.aux FROM events e"
                              " JOIN apis a ON a.api = e.api WHERE a.name = 'cuMemGetInfo_v2' ORDER BY e.seq")
        # One sample at the first recorded call, one after each pause longer than 250 ms.
        self.assertEqual([r[1] for r in rows], [said["first"], said["second"], said["third"]])
        self.assertTrue(all(r[2] == said["total"] for r in rows))
        # NVML: other processes (size) and this one (aux): the other process arrived between the 2nd and 3rd.
        self.assertEqual([r[3] for r in rows], [0, 0, 1 << 30])
        # (the simulated NVML counts this process's whole 2 MiB pages: the total's part below a page is not
        # any process's)
        for r, name in zip(rows, ("first", "second", "third")):
            self.assertEqual(r[4], said["total"] - said[name] - r[3] - said["total"] % PAGE)
        # Each sample is an event of its own, right after the call it rode on, with no stack.
        self.assertEqual(self.query(db, "SELECT count(*) FROM events WHERE op = 12 AND stack_id IS NOT NULL"), [(0,)])
        # The stream-ordered pool, sampled once the program used it (after the 2nd and 3rd samples).
        pools = self.query(db, "SELECT e.seq, e.size, e.aux FROM events e JOIN apis a ON a.api = e.api"
                               " WHERE a.name = 'cuMemPoolGetAttribute' ORDER BY e.seq")
        self.assertEqual([(s, z, u) for s, z, u in pools],
                         [(rows[1][0] + 1, said["pool_reserved"], said["pool_used"]),
                          (rows[2][0] + 1, said["pool_reserved"], said["pool_used"])])

    def test_adds_up_exactly(self):
        said, db = self.ledger_run()
        rep = json.loads(cumemtrace("report", "--json", db))
        dev, = rep["ledger"]
        self.assertEqual(len(dev["samples"]), 3)
        for s in dev["samples"]:
            self.assertEqual(sum(s[k] or 0 for k in PARTS), s["used_bytes"], s)
            self.assertEqual(s["unattributed"], 0)
        # The context: what the driver showed used before the program allocated anything. On the simulated
        # H100 that is the preset's context plus the total's part below a whole 2 MiB page.
        self.assertEqual(dev["context_bytes"], said["total"] - said["before"])
        self.assertEqual(dev["context_bytes"], H100_CONTEXT + said["total"] % PAGE)
        pk = dev["at_peak"]
        self.assertEqual(pk["used_bytes"], said["total"] - said["third"])
        cublas = 32 * MiB if STACKS else 0
        self.assertEqual(pk["cublas"], cublas)
        self.assertEqual(pk["user_code"], (32 + 64 + 6 + 2 + 2) * MiB - cublas)
        self.assertEqual(pk["pool_reserve"], said["pool_reserved"] - said["pool_used"])
        self.assertEqual(pk["other_processes"], 1 << 30)
        self.assertEqual(pk["caching_allocator"], 0)
        self.assertEqual(dev["user_modules_at_peak"], [{"module": "ledger_client", "bytes": 74 * MiB}] if STACKS else
                         [{"module": "[no stack]", "bytes": 106 * MiB}])
        # At the process's own peak (the last 2 MiB, just before the third sample): ours exactly, the rest as
        # last sampled (the second sample: no other process yet), used their sum.
        own = dev["at_own_peak"]
        self.assertEqual(own["seq"], rep["traces"][0]["devices"][0]["peak_seq"])
        self.assertEqual((own["cublas"], own["user_code"]), (cublas, 106 * MiB - cublas))
        self.assertEqual((own["other_processes"], own["context"]), (0, dev["context_bytes"]))
        self.assertEqual(own["used_bytes"], sum(own[k] or 0 for k in PARTS))
        before = dev["samples"][1]  # before the other process came
        self.assertEqual((before["other_processes"], before["cublas"], before["user_code"]),
                         (0, cublas, 104 * MiB - cublas))
        text = cumemtrace("report", db)
        self.assertIn("LEDGER", text)
        if STACKS:
            self.assertRegex(text, r"cuBLAS +32.0 MiB")
        self.assertRegex(text, r"other processes +1.0 GiB  \(NVML\)")
        self.assertRegex(text, r"unattributed +0 B")

    def test_without_samples(self):
        p, db = self.trace([client("threads_client")])
        rep = json.loads(cumemtrace("report", "--json", db))
        self.assertEqual(rep["ledger"], [])
        self.assertIn("no samples: record with CUMEMTRACE_SAMPLE_MS", cumemtrace("report", db))

    def test_failure_notes_without_samples(self):
        # No samples, but the failed 2^50-byte request noted cuMemGetInfo: one ledger point, NVML unknown.
        p, db = self.trace([client("direct_client")])
        dev, = json.loads(cumemtrace("report", "--json", db))["ledger"]
        pt, = dev["samples"]
        free, total = self.query(db, "SELECT free_bytes, total_bytes FROM failures")[0]
        self.assertEqual(pt["used_bytes"], total - free)
        self.assertIsNone(pt["other_processes"])
        self.assertEqual(sum(pt[k] or 0 for k in PARTS), pt["used_bytes"])

    def test_bad_sample_ms_refused(self):
        for bad in ("abc", "-1", "3600001", "10ms"):
            out = self.path("bad-%s.db" % bad)
            p = run([client("direct_client")], sim_env(output=out, extra={"CUMEMTRACE_SAMPLE_MS": bad}))
            lines = [l for l in p.stderr.splitlines() if "cumemtrace" in l]
            self.assertEqual(lines, ["cumemtrace: CUMEMTRACE_SAMPLE_MS must be a number of milliseconds from 0 (off)"
                                     " to 3600000; the program runs on without recording"])
            self.assertFalse(os.path.exists(out))

    def test_sampling_from_many_threads(self):
        # 8 threads racing: at most one sample per period wins, the program's events are all there, seq
        # stays dense (a sample takes its number only when it is queued), and the ledger still adds up.
        p, db = self.trace([client("threads_client"), "8", "300"], extra={"CUMEMTRACE_SAMPLE_MS": "1"})
        n, top = self.query(db, "SELECT count(*), max(seq) FROM events")[0]
        self.assertEqual(n, top)
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM events WHERE op <> 12"), 8 * 300 * 4)
        self.assertGreaterEqual(self.scalar(db, "SELECT count(*) FROM events WHERE op = 12"), 1)
        self.assertEqual(self.query(db, "SELECT DISTINCT total_bytes FROM events WHERE op = 12"), [(24 << 30,)])
        dev, = json.loads(cumemtrace("report", "--json", db))["ledger"]
        for s in dev["samples"]:
            self.assertEqual(sum(s[k] or 0 for k in PARTS), s["used_bytes"])

    def test_sample_ms_zero_is_off(self):
        p, db = self.trace([client("ledger_client")], extra={"CUMEMTRACE_SAMPLE_MS": "0"})
        self.assertEqual(self.query(db, "SELECT count(*) FROM events WHERE op = 12"), [(0,)])


TORCH_SCRIPT = r"""
import json, time, torch
x = torch.empty(256 << 20, dtype=torch.uint8, device='cuda')
time.sleep(0.15)
y = torch.empty(64 << 20, dtype=torch.uint8, device='cuda')
time.sleep(0.15)
small = [torch.empty(3 << 20, dtype=torch.uint8, device='cuda') for _ in range(3)]
torch.cuda.synchronize()
print(json.dumps({"reserved": torch.cuda.memory_reserved(), "total": torch.cuda.mem_get_info()[1],
                  "free": torch.cuda.mem_get_info()[0]}))
time.sleep(0.15)
del x
torch.cuda.empty_cache()
time.sleep(0.15)
del y, small
torch.cuda.empty_cache()
"""


class LedgerRealTorch(TraceTest):
    def setUp(self):
        if TORCH_SKIP:
            self.skipTest(TORCH_SKIP)
        super().setUp()

    def test_caching_allocator_part_is_torch_reserved(self):
        script = self.path("ledger_torch.py")
        with open(script, "w") as f:
            f.write(TORCH_SCRIPT)
        out = self.path("torch.db")
        env = sim_env(preload=False, extra={"CUMEMTRACE_SAMPLE_MS": "100"})
        p = subprocess.run([CUMEMTRACE, "run", "--torch", "-o", out, "--sim-gpu", "H100", "--", TORCH_PY, script], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
        self.assertEqual(p.returncode, 0, p.stderr)
        torch_said = json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])
        cmtlib.wait_traces(out)
        dev, = json.loads(cumemtrace("report", "--json", out))["ledger"]
        pk = dev["at_peak"]
        self.assertEqual(pk["caching_allocator"], torch_said["reserved"])
        self.assertEqual(dev["at_own_peak"]["caching_allocator"], torch_said["reserved"])
        self.assertEqual(torch_said["reserved"], (256 + 64 + 20) * MiB)  # 3 MiB tensors share a 20 MiB segment
        self.assertEqual(pk["used_bytes"], torch_said["total"] - torch_said["free"])
        self.assertEqual(sum(pk[k] or 0 for k in PARTS), pk["used_bytes"])
        self.assertEqual(pk["unattributed"], 0)
        # run --torch imported the allocator's history: at every sample PyTorch's own reserved count (as it
        # stood once the allocator had written down the call the sample followed) is the caching
        # allocator part the ledger found by module.
        self.assertGreaterEqual(len(dev["samples"]), 4)
        for smp in dev["samples"]:
            self.assertEqual(smp["torch_reserved"], smp["caching_allocator"], smp)
            self.assertEqual(sum(smp[k] or 0 for k in PARTS), smp["used_bytes"])
