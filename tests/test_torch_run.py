"""`cumemtrace run --torch`: the bootstrap on PYTHONPATH, tried against stand-in torch packages
(tests/fake_torch: PyTorch's function names, real snapshot dicts from the shared data; tests/fake_torch_old: an
API without memory history). No GPU and no torch are needed; tests that need the shared snapshots skip, saying
so, when they are absent.
"""
import json
import os
import subprocess
import sys
import unittest

from cmtlib import CUMEMTRACE, TraceTest, sim_env
from test_torch import HAVE_SNAPSHOTS, NO_SNAPSHOTS, snapshot

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "fake_torch")
FAKE_OLD = os.path.join(HERE, "fake_torch_old")

TRAIN = """import sys
import torch
print("imported")
torch.cuda.init()
torch.cuda.fake_oom()
print("trained")
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
"""


class RunTorchTest(TraceTest):
    def run_torch(self, script, pythonpath, extra=None, args=()):
        prog = self.path("train.py")
        with open(prog, "w") as f:
            f.write(script)
        env = sim_env(preload=False)
        env.pop("PYTHONPATH", None)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        env.update(extra or {})
        out = self.path("run.db")
        p = subprocess.run([CUMEMTRACE, "run", "--torch", "-o", out, "--", sys.executable, prog] + list(args),
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300,
                           cwd=self.tmp)
        return p, out

    @unittest.skipUnless(HAVE_SNAPSHOTS, NO_SNAPSHOTS)
    def test_history_recorded_and_imported(self):
        log = self.path("calls.log")
        p, out = self.run_torch(TRAIN, FAKE, {"FAKE_TORCH_SNAPSHOT": snapshot("mem_snapshot.pickle"),
                                              "FAKE_TORCH_LOG": log, "CUMEMTRACE_TORCH_MAX_ENTRIES": "5000",
                                              "CUMEMTRACE_TORCH_STACKS": "python"}, args=["3"])
        self.assertEqual(p.returncode, 3, p.stderr)  # the program's exit status passes through
        self.assertEqual(p.stdout, "imported\ntrained\n")
        calls = open(log).read().splitlines()
        # recording starts once CUDA is initialized, not at import; a snapshot at the OOM and one at exit
        self.assertEqual(calls, ["cuda init", "record max_entries=5000 stacks=python", "snapshot", "snapshot"])
        names = sorted(f for f in os.listdir(self.tmp) if f.endswith(".pickle"))
        self.assertEqual(len(names), 2, names)
        self.assertTrue(names[0].startswith("run.torch.") and names[0].endswith(".exit.pickle"), names)
        self.assertTrue(names[1].endswith(".oom1.pickle"), names)
        self.assertIn("allocator history of process", p.stderr)
        self.assertNotIn("Traceback", p.stderr)
        self.assertEqual(self.query(out, "SELECT reason, history_complete FROM alloc_snapshots"), [("exit", 1)])
        r = json.loads(subprocess.run([CUMEMTRACE, "report", "--json", out], stdout=subprocess.PIPE,
                                      text=True, check=True).stdout)
        self.assertEqual(r["fragmentation"][0]["end_reserved_bytes"], 3781165056)
        self.assertEqual(r["components_source"], "allocator")

    def test_torch_api_differs(self):
        p, out = self.run_torch("import torch\nprint('ok')\n", FAKE_OLD)
        self.assertEqual(p.returncode, 0)
        self.assertEqual(p.stdout, "ok\n")
        lines = [l for l in p.stderr.splitlines() if "torch bootstrap" in l]
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertNotIn("Traceback", p.stderr)

    def test_without_torch_nothing_changes(self):
        p, out = self.run_torch("import sys\nprint('plain')\nsys.exit(5)\n", None)
        self.assertEqual(p.returncode, 5)
        self.assertEqual(p.stdout, "plain\n")
        self.assertNotIn("torch bootstrap", p.stderr)
        self.assertNotIn("Traceback", p.stderr)

    def test_programs_own_sitecustomize_still_runs(self):
        mine = self.path("mine")
        os.mkdir(mine)
        with open(os.path.join(mine, "sitecustomize.py"), "w") as f:
            f.write("import builtins\nbuiltins.MINE = 42\n")
        p, out = self.run_torch("print(MINE)\n", mine)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "42\n")


if __name__ == "__main__":
    unittest.main()
