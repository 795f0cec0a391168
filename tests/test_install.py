"""The installed layout works: `meson install` into a staging directory, then the installed `cumemtrace run
--sim-gpu` finds its interposer, its writer and the simulated driver under meson's libdir (on Debian
lib/x86_64-linux-gnu, not lib) and records a client exactly; and the installed `cumemtrace import-torch`
finds its importer (libexec/cumemtrace/cumemtrace-import-torch, a writer apart from the analyzer) and the
importer its Python helper (share/cumemtrace/torch)."""
import json
import os
import shutil
import subprocess

import cmtlib
import test_torch
from cmtlib import TraceTest, client, run, sim_env, wait_traces


class Installed(TraceTest):
    def test_installed_run_records(self):
        meson = shutil.which("meson")
        if not meson:
            self.skipTest("meson is not on PATH")
        stage = self.path("stage")
        p = subprocess.run([meson, "install", "-C", cmtlib.BUILD, "--destdir", stage, "--quiet"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        exe = [os.path.join(r, f) for r, _, fs in os.walk(stage) for f in fs if f == "cumemtrace"]
        self.assertEqual(len(exe), 1, exe)
        writer = [r for r, _, fs in os.walk(stage) for f in fs if f == "cumemtrace-writer"]
        self.assertEqual(len(writer), 1)
        out = self.path("t.db")
        env = sim_env(preload=False)
        p = run([exe[0], "run", "--sim-gpu", "1GiB", "-o", out, "--", client("direct_client")], env, check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        wait_traces(out)
        rep = json.loads(run([exe[0], "report", "--json", out], os.environ).stdout)
        self.assertEqual(rep["events"], 19)
        self.assertEqual(rep["traces"][0]["end_reason"], "exit")
        # the importer: installed apart from the analyzer, and it finds its helper from there
        imp = [os.path.join(r, f) for r, _, fs in os.walk(stage) for f in fs if f == "cumemtrace-import-torch"]
        self.assertEqual(len(imp), 1, imp)
        self.assertEqual(os.path.basename(os.path.dirname(imp[0])), "cumemtrace")
        self.assertEqual(os.path.basename(os.path.dirname(os.path.dirname(imp[0]))), "libexec")
        # the scripts that read traces have the reader of block-form events beside them
        for d in ("torch", "export"):
            share = [r for r, _, fs in os.walk(stage) for f in fs if f == "cmt_blocks.py" and r.endswith("/" + d)]
            self.assertEqual(len(share), 1, (d, share))
            self.assertEqual(os.path.basename(os.path.dirname(share[0])), "cumemtrace")
            self.assertEqual(sorted(f for f in os.listdir(share[0]) if f.endswith(".py")),
                             {"torch": ["cmt_blocks.py", "cmt_torch_export.py", "cmt_torch_import.py"],
                              "export": ["cmt_blocks.py", "cmt_export.py"]}[d])
        snap = test_torch.SchemaTest.tiny_snapshot(self)
        tdb = self.path("imported.db")
        p = run([exe[0], "import-torch", snap, "-o", tdb], os.environ, check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        rep = json.loads(run([exe[0], "report", "--json", tdb], os.environ).stdout)
        self.assertEqual(rep["fragmentation"][0]["end_allocated_bytes"], 1024)
        self.assertEqual(rep["fragmentation"][0]["end_reserved_bytes"], 2 * 1024 * 1024)
