"""CUDA graph capture by real PyTorch (torch 2.14.1 on the simulated GPU, whose driver captures streams:
simgpu/simcuda_capture.c) and `cumemtrace whatif` over the history it records: the allocations a capture
makes come from the graph's private pool (pool_id "N,0"), two graphs may share one pool, and a graph's pool
goes back to the device when the graph is gone. Skips, saying why, without the torch environment.
"""
import subprocess
import unittest

from cmtlib import CUMEMTRACE, MiB, TraceTest
from test_pools import SKIP, TORCH_PY, RealTorch

# Three captures: g1 (a temporary freed inside the capture), g2 sharing g1's pool, g3 in a pool of its own;
# replays; then g3 and its outputs go, empty_cache() gives its pool's segments back, and default-pool
# requests follow. Prints torch's own figures (at the end, or after an OutOfMemoryError).
GRAPHS = r"""
import gc, json, torch
M = 1 << 20
torch.manual_seed(0)
out = {"oom": False}

def figures():
    st = torch.cuda.memory_stats()
    out.update({"peak_reserved": torch.cuda.max_memory_reserved(), "peak_allocated": torch.cuda.max_memory_allocated(),
                "reserved": st["reserved_bytes.all.current"], "allocated": st["allocated_bytes.all.current"]})

def run():
    model = torch.nn.Sequential(torch.nn.Linear(512, 2048), torch.nn.GELU(), torch.nn.Linear(2048, 512)).cuda()
    x = torch.randn(256, 512, device='cuda')
    keep = torch.empty(30 * M, dtype=torch.uint8, device='cuda')
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            y = model(x)
    torch.cuda.current_stream().wait_stream(s)
    del y
    g1 = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g1):
        t = torch.empty(9 * M, dtype=torch.uint8, device='cuda')
        y1 = model(x)
        del t
    g2 = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g2, pool=g1.pool()):
        y2 = model(y1)
    g3 = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g3):
        big = torch.empty(25 * M, dtype=torch.uint8, device='cuda')
        y3 = model(x * 2)
    for _ in range(3):
        g1.replay(); g2.replay(); g3.replay()
    torch.cuda.synchronize()
    a = torch.empty(12 * M, dtype=torch.uint8, device='cuda')
    del g3, y3, big
    gc.collect()
    torch.cuda.empty_cache()
    b = torch.empty(40 * M, dtype=torch.uint8, device='cuda')
    g1.replay()
    torch.cuda.synchronize()
    out["pools"] = [list(g1.pool()), list(g2.pool())]
    figures()

try:
    run()
except torch.OutOfMemoryError as ex:  # figures after the failure (the capture's exit freed some)
    out["oom"] = True
    out["message"] = str(ex).splitlines()[0]
    figures()
print("GRAPHS " + json.dumps(out))
"""


@unittest.skipIf(SKIP, SKIP or "")
class GraphCaptureRealTorchTest(RealTorch, TraceTest):
    def test_graph_pools_history_replays_exactly(self):
        db, out = self.traced(self.script(GRAPHS, "graphs.py"))
        torch_says = self.said(out, "GRAPHS")
        # g1 and g2 share the first graph pool; g3 had the second
        self.assertEqual(torch_says["pools"], [[1, 0], [1, 0]])
        rows = dict(((p, a), n) for p, a, n in self.query(
            db, "SELECT pool_id, action, count(*) FROM alloc_trace GROUP BY 1, 2"))
        self.assertEqual((rows[("1,0", "alloc")], rows[("1,0", "segment_alloc")]), (8, 3))
        self.assertNotIn(("1,0", "segment_free"), rows)
        # g3's pool: every segment given back once the graph was gone and the cache emptied
        self.assertEqual((rows[("2,0", "alloc")], rows[("2,0", "segment_alloc")], rows[("2,0", "segment_free")]),
                         (5, 3, 3))
        rec, = self.whatif(db)
        self.assert_exact(rec)
        self.assertEqual(rec["private_pools"], 2)
        self.assertEqual((rec["check"]["entries"], rec["check_blocks"]["segments"]), (61, 12))
        self.assertEqual((rec["peak_reserved_bytes"], rec["peak_allocated_bytes"]),
                         (torch_says["peak_reserved"], torch_says["peak_allocated"]))

    def traced_on(self, prog, memory, name):
        """PROG traced (run --torch) on the simulated H100-like board of MEMORY bytes; (trace, stdout)."""
        out = self.path(name)
        p = subprocess.run([CUMEMTRACE, "run", "--torch", "-o", out, "--", TORCH_PY, prog], env=self.env(memory=memory),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        return out, p.stdout

    def test_out_of_memory_inside_a_capture_is_predicted(self):
        # recorded on 24 GiB; on 200 MiB (cuBLAS's 64 MiB workspace outside the allocator on this board)
        # the 32 MiB request cuBLAS makes inside g1's capture, from g1's private pool, fails. The model
        # predicts that request, with the reserved and allocated figures torch recorded at its failure
        prog = self.script(GRAPHS, "graphs.py")
        db, out = self.traced_on(prog, "24GiB", "t.db")
        self.assertFalse(self.said(out, "GRAPHS")["oom"])
        rec, got = self.whatif(db, "--gpu", "200MiB")
        self.assert_exact(rec)
        real_db, real_out = self.traced_on(prog, "200MiB", "small.db")
        real = self.said(real_out, "GRAPHS")
        self.assertTrue(real["oom"] and got["oom"])
        self.assertIn("Tried to allocate 32.00 MiB", real["message"])
        self.assertIn("allocated in private pools (e.g., CUDA Graphs)", real["message"])
        oom, = self.query(real_db, "SELECT size, reserved_bytes, allocated_bytes, pool_id FROM alloc_trace "
                                   "WHERE action = 'oom'")
        o = got["first_oom"]
        self.assertEqual((o["size"], o["reserved_bytes"], o["allocated_bytes"], "1,0"), oom)
        self.assertEqual(o["size"], 32 * MiB)


if __name__ == "__main__":
    unittest.main()
