"""Real PyTorch (torch==2.14.1, the CUDA 13 wheel and NVIDIA's runtime libraries it brings) on the
simulated GPU: every figure is checked against PyTorch's own accounting in the same run.

The torch environment comes from scripts/torch-env (scripts/test passes its python in $CMT_TORCH_PYTHON).
Without it these tests skip, saying why; they also skip in the sanitizer suites (an instrumented
interposer inside a 5 GB CUDA PyTorch measures the sanitizer, not us; the plain suite covers them).
"""
import json
import os
import subprocess
import unittest

import cmtlib
from cmtlib import CUMEMTRACE, GiB, MiB, TraceTest, sim_env

DEFAULT_VENV = os.path.expanduser("~/.cache/cumemtrace/venv-torch-2.14.1/bin/python")
TORCH_PY = os.environ.get("CMT_TORCH_PYTHON") or (DEFAULT_VENV if os.path.exists(DEFAULT_VENV) else "")
if cmtlib.SANITIZER_PRELOAD:
    SKIP = "real PyTorch runs in the plain suite only (sanitizer build)"
elif not TORCH_PY or not os.path.exists(TORCH_PY):
    SKIP = "no PyTorch environment (scripts/torch-env could not make one)"
else:
    SKIP = None

PAGE = 2 * MiB
RTX4090_TOTAL = 25393692672
RTX4090_CONTEXT = 360 * MiB

# Allocates and frees a mix of sizes through the caching allocator, then prints PyTorch's own figures.
WORKLOAD = r"""
import json, sys, torch
xs = [torch.empty((i + 1) * 1000003, device='cuda') for i in range(12)]
del xs[::3]
small = [torch.empty(1000 * (i + 1), device='cuda') for i in range(40)]
del small[::2]
y = torch.ones(5 << 20, device='cuda')
z = torch.tensor([3.5, 2.0, -1.0]).cuda()
s = torch.cuda.memory_stats()
free, total = torch.cuda.mem_get_info()
p = torch.cuda.get_device_properties(0)
print(json.dumps({"stats": {k: s.get(k, 0) for k in (
    "allocated_bytes.all.current", "allocated_bytes.all.peak", "reserved_bytes.all.current",
    "reserved_bytes.all.peak", "segment.all.allocated", "segment.all.current", "num_alloc_retries")},
    "free": free, "total": total, "name": p.name, "sms": p.multi_processor_count,
    "cc": [p.major, p.minor], "roundtrip": z.cpu().tolist()}))
sys.stdout.flush()
"""

OOM = r"""
import json, torch
keep = [torch.empty(200 << 20, dtype=torch.uint8, device='cuda') for _ in range(3)]
try:
    torch.empty(900 << 20, dtype=torch.uint8, device='cuda')
    print(json.dumps({"oom": False}))
except torch.OutOfMemoryError as e:
    s = torch.cuda.memory_stats()
    free, total = torch.cuda.mem_get_info()
    print(json.dumps({"oom": True, "message": str(e).splitlines()[0], "free": free,
                      "reserved": s["reserved_bytes.all.current"], "allocated": s["allocated_bytes.all.current"],
                      "retries": s["num_alloc_retries"], "ooms": s["num_ooms"]}))
"""


@unittest.skipIf(SKIP, SKIP or "")
class RealTorchTest(TraceTest):
    def torch_run(self, script, gpu="RTX4090", traced=True, conf=None, extra=None, name="t.db", check=True):
        prog = self.path("prog.py")
        with open(prog, "w") as f:
            f.write(script)
        env = sim_env(preload=False)
        env.pop("PYTHONPATH", None)
        env.pop("SIMCUDA_MEMORY", None)
        env["SIMCUDA_GPU"] = gpu
        if conf:
            env["PYTORCH_CUDA_ALLOC_CONF"] = conf
        env.update(extra or {})
        out = self.path(name)
        if traced:
            env["LD_PRELOAD"] = cmtlib.INTERPOSER
            env["CUMEMTRACE_OUTPUT"] = out
        p = subprocess.run([TORCH_PY, prog], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=300)
        if check:
            self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        return p, out

    def result(self, p):
        return json.loads(p.stdout.strip().splitlines()[-1])

    def live_device_bytes(self, db):
        """Bytes of device memory the program still held at the end, by the trace."""
        return self.scalar(db, "SELECT COALESCE(SUM(size), 0) FROM allocations WHERE free_seq IS NULL "
                               "AND kind = 'device'")

    def test_device_looks_like_the_preset(self):
        p, _ = self.torch_run(WORKLOAD, traced=False)
        r = self.result(p)
        self.assertEqual(r["name"], "NVIDIA GeForce RTX 4090")
        self.assertEqual(r["total"], RTX4090_TOTAL)
        self.assertEqual((r["sms"], r["cc"]), (128, [8, 9]))
        # free = whole pages of the board - the context's memory - what the caching allocator reserved
        reserved = r["stats"]["reserved_bytes.all.current"]
        self.assertEqual(reserved % PAGE, 0)
        self.assertEqual(r["free"], (RTX4090_TOTAL // PAGE) * PAGE - RTX4090_CONTEXT - reserved)
        # what the program copied to the GPU comes back: the backing store keeps written bytes
        self.assertEqual(r["roundtrip"], [3.5, 2.0, -1.0])

    def test_every_segment_in_the_trace_equals_torch_reserved(self):
        p, db = self.torch_run(WORKLOAD)
        s = self.result(p)["stats"]
        # every cudaMalloc the caching allocator made is a cuMemAlloc_v2 in the trace, none failed
        n = self.scalar(db, "SELECT COUNT(*) FROM allocations WHERE api = 'cuMemAlloc_v2'")
        self.assertEqual(n, s["segment.all.allocated"])
        self.assertEqual(self.live_device_bytes(db), s["reserved_bytes.all.current"])
        rep = json.loads(subprocess.run([CUMEMTRACE, "report", "--json", db], stdout=subprocess.PIPE,
                                        text=True, check=True).stdout)
        self.assertEqual(rep["peak_bytes"], s["reserved_bytes.all.peak"])

    def test_output_and_status_identical_with_and_without_tracing(self):
        script = WORKLOAD.replace('"roundtrip": z.cpu().tolist()', '"roundtrip": z.cpu().tolist(), "free": 0') + \
            "\nraise SystemExit(3)\n"
        plain, _ = self.torch_run(script, traced=False, check=False)
        traced, _ = self.torch_run(script, traced=True, check=False)
        self.assertEqual(plain.returncode, 3, plain.stderr[-2000:])
        self.assertEqual(traced.returncode, 3)
        self.assertEqual(plain.stdout, traced.stdout)
        self.assertEqual(plain.stderr, traced.stderr)

    def test_out_of_memory_is_torch_out_of_memory_error_with_exact_figures(self):
        p, db = self.torch_run(OOM, gpu="L4", extra={"SIMCUDA_MEMORY": "1GiB"})
        r = self.result(p)
        self.assertTrue(r["oom"], p.stdout)
        self.assertIn("CUDA out of memory. Tried to allocate 900.00 MiB", r["message"])
        self.assertEqual(r["allocated"], 3 * 200 * MiB)
        # the context's 300 MiB and the three 200 MiB segments leave 124 MiB for a 900 MiB request
        self.assertEqual(r["free"], GiB - 300 * MiB - r["reserved"])
        fails = self.query(db, "SELECT size, free_bytes, total_bytes FROM failures WHERE api = 'cuMemAlloc_v2'")
        # the caching allocator tries once, frees its cache, and tries again: both in the trace, exact
        self.assertEqual([f[0] for f in fails], [900 * MiB, 900 * MiB])
        self.assertEqual(fails[-1][1], r["free"])
        self.assertEqual(fails[-1][2], GiB)
        self.assertEqual(self.live_device_bytes(db), r["reserved"])

    def test_run_torch_oom_entry_equals_torch_figures(self):
        p, rep = self.run_torch_cli(OOM, gpu="1GiB")
        r = self.result(p)
        self.assertTrue(r["oom"])
        ooms = [o for o in rep["ooms"] if o["source"] == "allocator"]
        self.assertEqual(len(ooms), 1, rep["ooms"])
        o = ooms[0]
        # the allocator's own oom entry, field by field against what torch said in the same run
        self.assertEqual(o["size"], 900 * MiB)
        self.assertEqual(o["free_bytes"], r["free"])
        self.assertEqual(o["reserved_bytes"], r["reserved"])
        self.assertEqual(o["allocated_bytes"], r["allocated"])
        self.assertEqual(o["verdict"], "capacity")
        # the end-of-run paragraph states it with the bytes missing: 900 MiB - 424 MiB free - 0 cached
        self.assertIn("OUT OF MEMORY: 900.0 MiB requested", p.stderr)
        self.assertIn("with %.1f MiB free on the device; capacity" % (r["free"] / MiB), p.stderr)
        self.assertIn("the device is short of about %.1f MiB" % ((900 * MiB - r["free"]) / MiB), p.stderr)

    def test_expandable_segments_map_what_torch_reserves(self):
        p, db = self.torch_run(WORKLOAD, conf="expandable_segments:True")
        s = self.result(p)["stats"]
        mapped = self.scalar(db, "SELECT COALESCE(SUM(size), 0) FROM allocations WHERE api = 'cuMemCreate' "
                                 "AND free_seq IS NULL")
        self.assertEqual(mapped, s["reserved_bytes.all.current"])
        self.assertEqual(self.scalar(db, "SELECT COUNT(*) FROM allocations WHERE api = 'cuMemAlloc_v2'"), 0)

    def test_no_caching_allocates_each_tensor(self):
        p, db = self.torch_run(WORKLOAD, extra={"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"})
        # without the cache each live tensor is one driver allocation: 8 + 20 + 1 + 1 tensors
        live = self.scalar(db, "SELECT COUNT(*) FROM allocations WHERE api = 'cuMemAlloc_v2' AND free_seq IS NULL")
        self.assertEqual(live, 8 + 20 + 1 + 1)

    def test_cuda_malloc_async_backend_uses_pools(self):
        p, db = self.torch_run(WORKLOAD, conf="backend:cudaMallocAsync")
        s = self.result(p)["stats"]
        sizes = [r[0] for r in self.query(db, "SELECT size FROM allocations WHERE api LIKE 'cuMemAllocAsync%' "
                                              "AND free_seq IS NULL")]
        self.assertEqual(len(sizes), 8 + 20 + 1 + 1)
        # this backend's allocated bytes are the pool's used memory, which the simulated driver states as
        # each allocation rounded up to 512 bytes (simcuda_mem.c, pool_used_bytes): every live async
        # allocation is in the trace with its exact size
        self.assertEqual(s["allocated_bytes.all.current"], sum((n + 511) // 512 * 512 for n in sizes))
        self.assertEqual(s["segment.all.allocated"], 0)

    def run_torch_cli(self, script=WORKLOAD, conf=None, gpu="RTX4090"):
        """`cumemtrace run --torch --sim-gpu GPU -- python script`: (the run, its report as JSON)."""
        prog = self.path("prog.py")
        with open(prog, "w") as f:
            f.write(script)
        out = self.path("run.db")
        env = sim_env(preload=False)
        env.pop("PYTHONPATH", None)
        if conf:
            env["PYTORCH_CUDA_ALLOC_CONF"] = conf
        p = subprocess.run([CUMEMTRACE, "run", "--torch", "--sim-gpu", gpu, "-o", out, "--", TORCH_PY, prog],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        self.assertIn("allocator history of process", p.stderr)
        rep = json.loads(subprocess.run([CUMEMTRACE, "report", "--json", out], stdout=subprocess.PIPE, text=True,
                                        check=True).stdout)
        return p, rep

    def test_run_torch_expandable_segments_figures_equal_torch(self):
        p, rep = self.run_torch_cli(conf="expandable_segments:True")
        s = self.result(p)["stats"]
        frag = rep["fragmentation"][0]
        self.assertEqual(frag["peak_allocated_bytes"], s["allocated_bytes.all.peak"])
        self.assertEqual(frag["peak_reserved_bytes"], s["reserved_bytes.all.peak"])
        self.assertEqual(frag["end_allocated_bytes"], s["allocated_bytes.all.current"])
        self.assertEqual(frag["end_reserved_bytes"], s["reserved_bytes.all.current"])
        self.assertEqual(rep["peak_bytes"], s["reserved_bytes.all.peak"])

    def test_run_torch_imports_the_allocator_history(self):
        p, rep = self.run_torch_cli()
        s = self.result(p)["stats"]
        frag = rep["fragmentation"][0]
        self.assertEqual(frag["end_reserved_bytes"], s["reserved_bytes.all.current"])
        self.assertEqual(frag["end_allocated_bytes"], s["allocated_bytes.all.current"])
        self.assertEqual(frag["peak_reserved_bytes"], s["reserved_bytes.all.peak"])
        # block sizes worked out from the history by the allocator's split rule: the peak is torch's own
        self.assertEqual(frag["peak_allocated_bytes"], s["allocated_bytes.all.peak"])
        want = (s["reserved_bytes.all.current"] - s["allocated_bytes.all.current"]) / s["reserved_bytes.all.current"]
        self.assertAlmostEqual(frag["end"], want, places=5)
        self.assertEqual(rep["peak_bytes"], s["reserved_bytes.all.peak"])


if __name__ == "__main__":
    unittest.main()


GPT = os.path.join(cmtlib.ROOT, "examples", "torch", "gpt.py")


@unittest.skipIf(SKIP, SKIP or "")
class RealTorchTrainingTest(TraceTest):
    """The example GPT trains (AdamW, bf16 autocast, cuBLAS/cuBLASLt) under `run --torch`."""

    def run_gpt(self, *args, gpu="RTX4090"):
        out = self.path("gpt.db")
        env = sim_env(preload=False)
        env.pop("PYTHONPATH", None)
        p = subprocess.run([CUMEMTRACE, "run", "--torch", "--sim-gpu", gpu, "-o", out, "--", TORCH_PY, GPT] +
                           list(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=600)
        line = [l for l in p.stdout.splitlines() if l.startswith("TORCH_MEMORY ")]
        self.assertEqual(len(line), 1, p.stdout + p.stderr[-3000:])
        rep = json.loads(subprocess.run([CUMEMTRACE, "report", "--json", out], stdout=subprocess.PIPE, text=True,
                                        check=True).stdout)
        return p, json.loads(line[0][len("TORCH_MEMORY "):]), rep, out

    def test_training_components_are_the_model_and_adamw(self):
        p, torch_says, rep, db = self.run_gpt("--precision", "bf16", "--steps", "2")
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        comps = {c["name"]: c for c in rep["components"]}
        # parameters: exactly the model's fp32 weights; AdamW keeps exp_avg and exp_avg_sq: twice that
        # in the blocks holding them, which is what memory_allocated counts: the tensors' bytes plus the
        # remainders the allocator did not split off (under 1 MiB per tensor, none for 512-byte multiples
        # cut from a fresh segment)
        for name, want in (("parameters", torch_says["param_bytes"]), ("optimizer_state", 2 * torch_says["param_bytes"])):
            self.assertGreaterEqual(comps[name]["bytes_at_peak"], want)
            self.assertLess(comps[name]["bytes_at_peak"] - want, MiB * torch_says["param_tensors"])
        # the driver-level peak covers what the caching allocator reserved, plus cuBLAS's own memory
        self.assertEqual(rep["fragmentation"][0]["peak_reserved_bytes"], torch_says["reserved_peak_bytes"])
        self.assertEqual(rep["fragmentation"][0]["peak_allocated_bytes"], torch_says["allocated_peak_bytes"])
        # the components partition the allocated bytes at the peak, to the byte
        self.assertEqual(sum(c["bytes_at_peak"] for c in rep["components"]), torch_says["allocated_peak_bytes"])
        self.assertGreater(rep["peak_bytes"], torch_says["reserved_peak_bytes"])
        outside = self.scalar(db, "SELECT COALESCE(SUM(size), 0) FROM allocations WHERE api = 'cuMemAlloc_v2' "
                                  "AND free_seq IS NULL") - torch_says["reserved_bytes"]
        self.assertEqual(rep["peak_bytes"] - torch_says["reserved_peak_bytes"], outside)
        # the end-of-run paragraph: the peak against the board's capacity less the context's memory
        spare = RTX4090_TOTAL - RTX4090_CONTEXT - rep["peak_bytes"]
        self.assertIn("on the simulated NVIDIA GeForce RTX 4090 (device 0, 23.6 GiB, of which the CUDA context "
                      "takes 360.0 MiB)", p.stderr)
        self.assertIn("fits with %.1f GiB to spare" % (spare / GiB), p.stderr)
        self.assertIn("PyTorch's peaks: reserved %.1f MiB, allocated %.1f MiB" % (
            torch_says["reserved_peak_bytes"] / MiB, torch_says["allocated_peak_bytes"] / MiB), p.stderr)
        self.assertIn("at the allocator's peak: activations", p.stderr)

    def test_training_out_of_memory_on_a_small_gpu(self):
        p, torch_says, rep, db = self.run_gpt("--layers", "8", "--width", "1024", "--batch", "16", gpu="2GiB")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(torch_says["event"], "oom")
        self.assertIn("CUDA out of memory", torch_says["message"])
        self.assertGreaterEqual(torch_says["num_ooms"], 1)
        self.assertTrue(rep["ooms"], "the report has the OOM")


@unittest.skipIf(SKIP, SKIP or "")
class WhatIfTest(TraceTest):
    """`cumemtrace whatif` against PyTorch's real allocator run under the other settings, same script."""

    def traced(self, script_args, gpu="RTX4090", conf=None, want_stdout=False):
        out = self.path("w.db")
        env = sim_env(preload=False)
        env.pop("PYTHONPATH", None)
        if conf:
            env["PYTORCH_CUDA_ALLOC_CONF"] = conf
        p = subprocess.run([CUMEMTRACE, "run", "--torch", "--sim-gpu", gpu, "-o", out, "--", TORCH_PY] + script_args,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        return (out, p.stdout) if want_stdout else out

    @staticmethod
    def torch_memory(stdout):
        line = [l for l in stdout.splitlines() if l.startswith("TORCH_MEMORY ")]
        return json.loads(line[-1][len("TORCH_MEMORY "):])

    def real(self, script_args, conf=None, memory=None):
        """The same script untraced on the simulated GPU, under conf: its own accounting."""
        env = cmtlib.torch_env(conf, memory)
        return subprocess.run([TORCH_PY] + script_args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=600)

    def whatif(self, db, *args):
        p = subprocess.run([CUMEMTRACE, "whatif", "--json", db] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)["configs"]

    def test_other_settings_predict_torchs_own_peaks(self):
        gpt = [GPT, "--precision", "bf16", "--steps", "2"]
        db = self.traced(gpt)
        confs = ["max_split_size_mb:20", "roundup_power2_divisions:4", "expandable_segments:True"]
        res = self.whatif(db, *sum((["--alloc-conf", c] for c in confs), []))
        # the recorded configuration first: the model replays the real run exactly, request by request
        self.assertEqual(res[0]["check"]["reserved_mismatches"], 0)
        self.assertGreater(res[0]["check"]["entries"], 1000)
        for conf, got in zip(confs, res[1:]):
            p = self.real(gpt, conf)
            line = [l for l in p.stdout.splitlines() if l.startswith("TORCH_MEMORY ")]
            self.assertEqual(len(line), 1, p.stderr[-2000:])
            torch_says = json.loads(line[0][len("TORCH_MEMORY "):])
            self.assertEqual((got["peak_reserved_bytes"], got["peak_allocated_bytes"]),
                             (torch_says["reserved_peak_bytes"], torch_says["allocated_peak_bytes"]), conf)

    def test_recorded_expandable_run_replays_exactly(self):
        # GPT under expandable_segments:True: 2 MiB pages for the small pool, 20 MiB for the large, blocks
        # grown into the unmapped rest of the mapping; the model reproduces reserved after every request
        db, out = self.traced([GPT, "--precision", "bf16", "--steps", "2"], conf="expandable_segments:True",
                              want_stdout=True)
        torch_says = self.torch_memory(out)
        rec = self.whatif(db)[0]
        self.assertEqual(rec["check"]["reserved_mismatches"], 0, rec["check"])
        self.assertGreater(rec["check"]["entries"], 1000)
        self.assertEqual((rec["peak_reserved_bytes"], rec["peak_allocated_bytes"]),
                         (torch_says["reserved_peak_bytes"], torch_says["allocated_peak_bytes"]))
        maps = self.scalar(db, "SELECT count(*) FROM alloc_trace WHERE action = 'segment_map'")
        self.assertEqual(rec["segments_allocated"], maps)

    GC = r"""
import json, torch
total = torch.cuda.get_device_properties(0).total_memory
torch.cuda.set_per_process_memory_fraction(100 * 2**20 / total)
a = torch.empty(30 << 20, dtype=torch.uint8, device='cuda'); del a
b = torch.empty(40 << 20, dtype=torch.uint8, device='cuda'); del b
c = torch.empty(60 << 20, dtype=torch.uint8, device='cuda')
s = torch.cuda.memory_stats()
print(json.dumps({"peak": s["reserved_bytes.all.peak"], "retries": s["num_alloc_retries"],
                  "allowed": int(100 * 2**20 / total * total)}))
"""

    def test_garbage_collection_threshold_predicts_torch(self):
        # under a 100 MiB per-process limit: without collection the 60 MiB request fails once, the cache
        # goes, it is retried (peak 70 MiB); with garbage_collection_threshold:0.5 the older cached 30 MiB
        # segment goes before the request (peak 100 MiB, no retry). Recorded without, predicted with.
        prog = self.path("gc.py")
        with open(prog, "w") as f:
            f.write(self.GC)
        db, out = self.traced([prog], want_stdout=True)
        plain = json.loads(out.strip().splitlines()[-1])
        gc = json.loads(self.real([prog], "garbage_collection_threshold:0.5").stdout.strip().splitlines()[-1])
        self.assertEqual((plain["retries"], gc["retries"]), (1, 0))
        res = self.whatif(db, "--capacity", str(plain["allowed"]), "--alloc-conf", "garbage_collection_threshold:0.5",
                          "--alloc-conf", "expandable_segments:False")
        self.assertEqual(res[0]["check"]["reserved_mismatches"], 0)
        self.assertEqual(res[1]["peak_reserved_bytes"], gc["peak"])
        self.assertEqual(res[2]["peak_reserved_bytes"], plain["peak"])
        self.assertNotEqual(gc["peak"], plain["peak"])

    FRAG = r"""
import json, torch
M = 1 << 20
x = torch.empty(50 * M, dtype=torch.uint8, device='cuda'); del x
a = torch.empty(20 * M, dtype=torch.uint8, device='cuda')
b = torch.empty(20 * M, dtype=torch.uint8, device='cuda')
del a
try:
    c = torch.empty(40 * M, dtype=torch.uint8, device='cuda')
    print(json.dumps({"oom": False}))
except torch.OutOfMemoryError as e:
    s = torch.cuda.memory_stats()
    free, total = torch.cuda.mem_get_info()
    print(json.dumps({"oom": True, "free": free, "reserved": s["reserved_bytes.all.current"],
                      "allocated": s["allocated_bytes.all.current"]}))
"""

    OUTSIDE = r"""
import ctypes, json, torch
M = 1 << 20
keep = torch.empty(200 * M, dtype=torch.uint8, device='cuda')
ptr = ctypes.c_uint64(0)
assert ctypes.CDLL("libcuda.so.1").cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(500 * M)) == 0
try:
    torch.empty(400 * M, dtype=torch.uint8, device='cuda')
    print(json.dumps({"oom": False}))
except torch.OutOfMemoryError as e:
    s = torch.cuda.memory_stats()
    free, total = torch.cuda.mem_get_info()
    print(json.dumps({"oom": True, "free": free, "reserved": s["reserved_bytes.all.current"],
                      "allocated": s["allocated_bytes.all.current"]}))
"""

    def oom_case(self, script, gpu, name):
        prog = self.path(name)
        with open(prog, "w") as f:
            f.write(script)
        db, out = self.traced([prog], gpu=gpu, want_stdout=True)
        torch_says = json.loads(out.strip().splitlines()[-1])
        self.assertTrue(torch_says["oom"])
        rep = json.loads(subprocess.run([CUMEMTRACE, "report", "--json", db], stdout=subprocess.PIPE, text=True,
                                        check=True).stdout)
        v, = rep["oom_verdicts"]
        # the verdict's figures are torch's own at its OutOfMemoryError
        self.assertEqual((v["live_bytes"], v["reserved_bytes"], v["capacity_bytes"]),
                         (torch_says["allocated"], torch_says["reserved"], torch_says["reserved"] + torch_says["free"]))
        self.assertTrue(v["model_reproduces"])
        return prog, v, rep

    def test_oom_verdicts_capacity_fragmentation_outside(self):
        # capacity: 3 x 200 MiB live on 1 GiB: 600 + 900 exceed the 1024 MiB by 476 MiB, whatever the settings
        _, v, _ = self.oom_case(OOM, "1GiB", "oom.py")
        self.assertEqual((v["verdict"], v["request_bytes"], v["capacity_bytes"], v["short_bytes"], v["fits_with"],
                          v["outside_allocator_bytes"]), ("capacity", 900 * MiB, GiB, 476 * MiB, None, 0))
        # fragmentation: 20 MiB live + 40 requested in 80 MiB, but the 30 MiB free are in a split segment;
        # the model names expandable_segments:True, and torch run with it on the same device serves it
        prog, v, rep = self.oom_case(self.FRAG, "80MiB", "frag.py")
        self.assertEqual((v["verdict"], v["live_bytes"], v["request_bytes"], v["capacity_bytes"]),
                         ("fragmentation", 20 * MiB, 40 * MiB, 80 * MiB))
        self.assertEqual(v["fits_with"], {"alloc_conf": "expandable_segments:True", "reserved_bytes": 80 * MiB,
                                          "saves_bytes": 10 * MiB})
        self.assertEqual(rep["ooms"][0]["verdict"], "fragmentation")
        p = self.real([prog], "expandable_segments:True", memory="80MiB")
        self.assertEqual(json.loads(p.stdout.strip().splitlines()[-1]), {"oom": False})
        # outside the allocator: 500 MiB taken with cuMemAlloc beside torch's 200 MiB on 1 GiB; 400 MiB more
        # would fit in the device but not beside that memory: the allocator lacks 76 MiB of the 500 held outside
        _, v, rep = self.oom_case(self.OUTSIDE, "1GiB", "outside.py")
        self.assertEqual((v["verdict"], v["outside_allocator_bytes"], v["short_bytes"]),
                         ("outside_allocator", 500 * MiB, 76 * MiB))
        self.assertIn("500.0 MiB of device memory was held outside the caching allocator", v["advice"])

    def result(self, p):
        return json.loads(p.stdout.strip().splitlines()[-1])

    def test_a_smaller_gpu_runs_out_where_torch_does(self):
        prog = self.path("prog.py")
        with open(prog, "w") as f:
            f.write(WORKLOAD)
        db = self.traced([prog])
        res = self.whatif(db, "--capacity", "300MiB")
        got = res[1]
        self.assertTrue(got["oom"])
        p = self.real([prog], memory="300MiB")
        self.assertNotEqual(p.returncode, 0)
        # torch's message: "Tried to allocate 46.00 MiB ... 254.03 MiB is allocated by PyTorch, and 15.97 MiB
        # is reserved by PyTorch but unallocated": the same request, the same state
        o = got["first_oom"]
        segment = ((o["size"] + 511) // 512 * 512 + 2 * MiB - 1) // (2 * MiB) * 2 * MiB  # what cudaMalloc was asked
        self.assertIn("Tried to allocate %.2f MiB" % (segment / MiB), p.stderr)
        self.assertIn("%.2f MiB is allocated by PyTorch" % (o["allocated_bytes"] / MiB), p.stderr)
        self.assertIn("%.2f MiB is reserved by PyTorch but unallocated" %
                      ((o["reserved_bytes"] - o["allocated_bytes"]) / MiB), p.stderr)
        # --gpu SIZE is that device as the simulated driver presents it: the same capacity here (nothing
        # held outside the allocator, no context on a sized device), the same first OOM
        p = subprocess.run([CUMEMTRACE, "whatif", "--json", db, "--gpu", "300MiB"], stdout=subprocess.PIPE, text=True)
        r = json.loads(p.stdout)
        self.assertEqual(r["gpu"]["capacity_bytes"], 300 * MiB)
        self.assertEqual(r["configs"][1]["first_oom"], o)
        # and a preset: its whole pages less its context less what the trace held outside the allocator
        rep = json.loads(subprocess.run([CUMEMTRACE, "report", "--json", db], stdout=subprocess.PIPE, text=True,
                                        check=True).stdout)
        outside = rep["peak_bytes"] - rep["fragmentation"][0]["peak_reserved_bytes"]
        r = json.loads(subprocess.run([CUMEMTRACE, "whatif", "--json", db, "--gpu", "RTX4090"], stdout=subprocess.PIPE,
                                      text=True).stdout)
        self.assertEqual(r["gpu"]["outside_allocator_bytes"], outside)
        self.assertEqual(r["configs"][1]["capacity_bytes"],
                         RTX4090_TOTAL // PAGE * PAGE - RTX4090_CONTEXT - outside)
        # report --whatif-gpu takes what is held outside from the report's own model: the same device, the same runs
        rw = json.loads(subprocess.run([CUMEMTRACE, "report", "--json", "--whatif-gpu", "RTX4090", db],
                                       stdout=subprocess.PIPE, text=True, check=True).stdout)
        self.assertEqual(rw["whatif_gpu"], r["gpu"])
        self.assertEqual(rw["whatif"], r["configs"])
        # and with room for the recorded peak it fits, as torch does
        res = self.whatif(db, "--capacity", "320MiB")
        self.assertFalse(res[1]["oom"])
        self.assertEqual(self.real([prog], memory="320MiB").returncode, 0)
        # the same recording replayed under expandable_segments:True on 240 MiB: the same request fails with the
        # same allocated and reserved bytes as torch run that way; on 300 MiB both fit, with the same peak
        got = self.whatif(db, "--gpu", "240MiB", "--alloc-conf", "expandable_segments:True")[1]
        self.assertTrue(got["oom"])
        o = got["first_oom"]
        p = self.real([prog], "expandable_segments:True", memory="240MiB")
        self.assertNotEqual(p.returncode, 0)
        asked = ((o["size"] + 511) // 512 * 512 + 2 * MiB - 1) // (2 * MiB) * 2 * MiB
        self.assertIn("Tried to allocate %.2f MiB" % (asked / MiB), p.stderr)
        self.assertIn("%.2f MiB is allocated by PyTorch" % (o["allocated_bytes"] / MiB), p.stderr)
        self.assertIn("%.2f MiB is reserved by PyTorch but unallocated" %
                      ((o["reserved_bytes"] - o["allocated_bytes"]) / MiB), p.stderr)
        got = self.whatif(db, "--gpu", "300MiB", "--alloc-conf", "expandable_segments:True")[1]
        p = self.real([prog], "expandable_segments:True", memory="300MiB")
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        self.assertFalse(got["oom"])
        self.assertEqual(got["peak_reserved_bytes"], self.result(p)["stats"]["reserved_bytes.all.peak"])

