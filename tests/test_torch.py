"""The allocator level (issue 4): schema version 2 and its migration, `import-torch` over every shared PyTorch
snapshot with figures computed here independently of our code, fragmentation, the OOM verdict and components
in `report`, the driver-only release-and-retry pattern of examples/train_sim, `export-torch`.

The snapshots live in ../shared/data/torch-snapshots (cmtlib.SHARED); tests that need them skip, saying so,
when the folder is absent. Every pickle is read here with our own unpickler that refuses every global.
"""
import glob
import json
import os
import pickle
import sqlite3
import subprocess
import unittest

from cmtlib import CUMEMTRACE, SHARED, TraceTest, client, sim_env
from tracebuilder import GiB, MiB, TraceBuilder

SNAPSHOTS = os.path.join(SHARED, "data", "torch-snapshots")
HAVE_SNAPSHOTS = os.path.isdir(SNAPSHOTS) and bool(glob.glob(os.path.join(SNAPSHOTS, "*", "*.pickle")))
NO_SNAPSHOTS = "the shared PyTorch snapshots are absent (%s)" % SNAPSHOTS


class RefuseGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError("global %s.%s refused" % (module, name))


def load(path):
    with open(path, "rb") as f:
        return RefuseGlobals(f).load()


def snapshot_files():
    return sorted(glob.glob(os.path.join(SNAPSHOTS, "*", "*.pickle")))


def snapshot(name):
    return next(p for p in snapshot_files() if os.path.basename(p) == name)


def cmt(*args, check=True, env=None):
    p = subprocess.run([CUMEMTRACE] + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=300, env=env)
    if check and p.returncode != 0:
        raise AssertionError("cumemtrace %s exited %d\nstdout:\n%s\nstderr:\n%s" % (args, p.returncode, p.stdout,
                                                                                   p.stderr))
    return p


def report(*args):
    return json.loads(cmt("report", "--json", *args).stdout)


class SchemaTest(TraceTest):
    def test_new_files_are_version_5(self):
        out = self.path("t.db")
        cmt("import-torch", self.tiny_snapshot(), "-o", out)
        self.assertEqual(self.scalar(out, "PRAGMA user_version"), 5)
        self.assertEqual(self.scalar(out, "SELECT value FROM meta WHERE key = 'schema_version'"), 5)
        self.assertEqual(self.scalar(out, "PRAGMA journal_mode"), "delete")

    def tiny_snapshot(self):
        """One segment of 2 MiB holding a 1 KiB block (requested 1000) and the rest free; a complete history."""
        seg = 0x7f0000000000
        snap = {"segments": [{"device": 0, "address": seg, "total_size": 2 * MiB, "stream": 0,
                              "segment_type": "small", "allocated_size": 1024, "active_size": 1024,
                              "requested_size": 1000, "blocks": [
                                  {"address": seg, "size": 1024, "requested_size": 1000, "state": "active_allocated",
                                   "frames": [{"name": "forward", "filename": "/x/model.py", "line": 3}]},
                                  {"address": seg + 1024, "size": 2 * MiB - 1024, "requested_size": 0,
                                   "state": "inactive", "frames": []}]}],
                "device_traces": [[
                    {"action": "segment_alloc", "addr": seg, "size": 2 * MiB, "stream": 0, "time_us": 1_000_000,
                     "frames": []},
                    {"action": "alloc", "addr": seg, "size": 1000, "stream": 0, "time_us": 1_000_010,
                     "frames": [{"name": "forward", "filename": "/x/model.py", "line": 3}]}]]}
        p = self.path("tiny.pickle")
        with open(p, "wb") as f:
            pickle.dump(snap, f)
        return p

    def test_version_1_trace_still_opens_and_is_migrated_in_place(self):
        t = TraceBuilder(self.path("v1.db"))
        k = t.stack(["_Z4stepv", "main"])
        t.alloc(2 * MiB, stack=k, address=0x7f0000000000)
        db = t.close()
        self.assertEqual(self.scalar(db, "PRAGMA user_version"), 1)
        before = report(db)
        self.assertEqual(before["fragmentation"], [])
        self.assertEqual(before["components_source"], "driver")
        p = cmt("import-torch", self.tiny_snapshot(), "-o", db)
        self.assertIn("upgraded from schema version 1 to 5", p.stderr)
        self.assertEqual(self.scalar(db, "PRAGMA user_version"), 5)
        self.assertEqual(self.scalar(db, "SELECT value FROM meta WHERE key = 'schema_version'"), 5)
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM ranges"), 0)
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM frame_lines"), 0)  # version 4's table
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM stack_lines WHERE function = 'main'"), 1)
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM events"), 1)
        # joined with the driver segment by address
        self.assertEqual(self.scalar(db, "SELECT event_seq FROM alloc_segments"), 1)
        after = report(db)
        self.assertEqual(after["peak_bytes"], before["peak_bytes"])
        f = after["fragmentation"][0]
        self.assertEqual((f["end_reserved_bytes"], f["end_allocated_bytes"]), (2 * MiB, 1024))
        self.assertAlmostEqual(f["end"], (2 * MiB - 1024) / (2 * MiB), places=6)
        self.assertEqual(f["internal_bytes"], 24)
        self.assertEqual(f["largest_free_block"], 2 * MiB - 1024)
        self.assertEqual([c["name"] for c in after["components"]], ["activations"])
        self.assertEqual(after["components_source"], "allocator")

    def test_newer_schema_refused_by_import(self):
        t = TraceBuilder(self.path("new.db"))
        t.alloc(MiB)
        t.db.execute("PRAGMA user_version=6")
        db = t.close()
        p = cmt("import-torch", self.tiny_snapshot(), "-o", db, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("newer cumemtrace", p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1)


class BadSnapshotTest(TraceTest):
    def bad(self, data, words):
        src = self.path("bad.pickle")
        with open(src, "wb") as f:
            f.write(data)
        out = self.path("out.db")
        p = cmt("import-torch", src, "-o", out, check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertIn(words, lines[0])
        self.assertNotIn("Traceback", p.stderr)
        self.assertFalse(os.path.exists(out), "a failed import leaves no new trace behind")

    def test_global_refused(self):
        # a pickle that would call os.system if loaded naively
        evil = b"cos\nsystem\n(S'touch " + self.path("pwned").encode() + b"'\ntR."
        self.bad(evil, "refusing a pickle that names a Python global (os.system)")
        self.assertFalse(os.path.exists(self.path("pwned")))

    def test_not_a_pickle(self):
        self.bad(b"this is not a pickle at all\n" * 5, "not a PyTorch memory snapshot")

    def test_empty(self):
        self.bad(b"", "empty file")

    def test_truncated(self):
        self.bad(pickle.dumps({"segments": [{"address": 1, "total_size": 2, "blocks": []}] * 50})[:100],
                 "not a PyTorch memory snapshot")

    def test_wrong_shape(self):
        self.bad(pickle.dumps({"hello": 1}), "no 'segments' list")
        self.bad(pickle.dumps({"segments": [{"nope": 1}]}), "a segment without address/total_size")

    def test_missing_file_and_usage(self):
        p = cmt("import-torch", self.path("nope.pickle"), "-o", self.path("o.db"), check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("No such file or directory", p.stderr)
        self.assertEqual(cmt("import-torch", "x.pickle", check=False).returncode, 2)
        self.assertEqual(cmt("import-torch", "--help").returncode, 0)

    def test_bad_rules_file(self):
        db = TraceBuilder(self.path("t.db"))
        db.alloc(MiB)
        db = db.close()
        rules = self.path("rules.txt")
        with open(rules, "w") as f:
            f.write("weights native *\n")
        p = cmt("report", "--rules", rules, db, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1)
        self.assertIn("rules.txt:1:", p.stderr)


@unittest.skipUnless(HAVE_SNAPSHOTS, NO_SNAPSHOTS)
class RealSnapshotTest(TraceTest):
    """Proof on real data: every shared snapshot imports; figures checked against the pickle itself."""

    def test_end_fragmentation_of_every_file(self):
        files = snapshot_files()
        self.assertGreaterEqual(len(files), 11)
        for path in files:
            with self.subTest(os.path.basename(path)):
                snap = load(path)
                reserved = sum(s["total_size"] for s in snap["segments"])
                allocated = sum(b["size"] for s in snap["segments"] for b in s["blocks"]
                                if b["state"].startswith("active"))
                out = self.path(os.path.basename(path) + ".db")
                cmt("import-torch", path, "-o", out)
                r = report(out)
                self.assertEqual(len(r["fragmentation"]), 1)
                f = r["fragmentation"][0]
                self.assertEqual((f["end_reserved_bytes"], f["end_allocated_bytes"]), (reserved, allocated))
                self.assertAlmostEqual(f["end"], (reserved - allocated) / reserved, places=6)
                self.assertLessEqual(f["at_peak"], 1.0)
                self.assertGreaterEqual(f["peak_based"], 0.0)
                self.assertGreaterEqual(f["peak_reserved_bytes"], reserved)
                # every history, completed or not, replays from empty into the final segments
                blocks, pieces = replay(out)
                self.assertEqual(sum(pieces.values()), reserved)
                self.assertEqual(sum(blocks.values()), sum(b["requested_size"] for s in snap["segments"]
                                                           for b in s["blocks"] if b["state"].startswith("active")))
                self.assertEqual(self.scalar(out, "SELECT count(*) FROM alloc_trace WHERE synthetic = 0"),
                                 sum(len(t) for t in snap["device_traces"]))

    def test_adamw_state_is_optimizer_state(self):
        path = snapshot("medium_128_training_memory_snapshot.pickle")
        snap = load(path)
        # independently: requested bytes of the final blocks whose innermost Python frame is optimizer.py:76/77
        per_line = {}
        for s in snap["segments"]:
            for b in s["blocks"]:
                if b["state"] != "active_allocated":
                    continue
                py = [f for f in b["frames"] if f["filename"].endswith(".py")]
                if py and os.path.basename(py[0]["filename"]) == "optimizer.py":
                    per_line[py[0]["line"]] = per_line.get(py[0]["line"], 0) + b["requested_size"]
        self.assertEqual(per_line[76], 1_692_733_440)
        self.assertEqual(per_line[77], 1_692_733_440)
        self.assertEqual(1_692_733_440, 4 * 423_183_360)
        out = self.path("m.db")
        cmt("import-torch", path, "-o", out)
        r = report(out)
        comps = {c["name"]: c for c in r["components"]}
        sites = {s["site"]: s for s in comps["optimizer_state"]["sites"]}
        self.assertEqual(sites["optimizer.py:76 (step)"]["requested_bytes_at_end"], 1_692_733_440)
        self.assertEqual(sites["optimizer.py:77 (step)"]["requested_bytes_at_end"], 1_692_733_440)
        self.assertEqual(comps["optimizer_state"]["requested_bytes_at_end"], 2 * 1_692_733_440)
        # the gradients: allocated by the autograd engine and alive at the optimizer step
        self.assertEqual(comps["gradients"]["requested_bytes_at_end"], 1_692_733_440)
        # the step's scratch (optimizer.py:80, freed within the step) is not state
        self.assertTrue(all(not s["site"].startswith("optimizer.py") for s in comps["gradients"]["sites"]))
        self.assertIn("optimizer.py:80 (step)", [s["site"] for s in comps["temporaries"]["sites"]])
        # the weights: no frames (allocated before the history began) and alive to the end. Computed
        # independently: the final blocks with no frames at all; they are the 423,183,360 fp32
        # parameters (1,692,733,440 bytes) and 17,121,280 bytes of module buffers.
        frameless = sum(b["requested_size"] for s in snap["segments"] for b in s["blocks"]
                        if b["state"] == "active_allocated" and not b["frames"])
        self.assertEqual(comps["parameters"]["requested_bytes_at_end"], frameless)
        self.assertLess(abs(frameless - 4 * 423_183_360) / (4 * 423_183_360), 0.02)
        text = cmt("report", "--params", "423183360", out).stdout
        self.assertIn("expected for 423183360 parameters (fp32 Adam: 4 + 4 + 8 bytes each)", text)
        e = report("--params", "423183360", "--mixed", out)["expected"]
        self.assertEqual(e["optimizer_state"]["expected_bytes"], 12 * 423_183_360)
        self.assertEqual(e["precision"], "mixed")

    def test_small_history_is_complete_and_replays_exactly(self):
        path = snapshot("mem_snapshot.pickle")
        self.assertLess(os.path.getsize(path), 100_000)
        snap = load(path)
        out = self.path("s.db")
        cmt("import-torch", path, "-o", out)
        self.assertEqual(self.query(out, "SELECT history_complete, synthesized FROM alloc_snapshots"), [(1, 0)])
        self.assertEqual(self.scalar(out, "SELECT count(*) FROM alloc_trace WHERE synthetic = 1"), 0)
        first = self.query(out, "SELECT action, allocated_bytes, reserved_bytes FROM alloc_trace ORDER BY entry_id"
                                " LIMIT 1")[0]
        self.assertEqual(first[0], "segment_alloc")
        blocks, pieces = replay(out)
        self.assertEqual(blocks, {b["address"]: b["requested_size"] for s in snap["segments"] for b in s["blocks"]
                                  if b["state"].startswith("active")})
        self.assertEqual(pieces, {s["address"]: s["total_size"] for s in snap["segments"]})

    def test_warm_history_is_completed_backwards(self):
        out = self.path("w.db")
        cmt("import-torch", snapshot("medium_128_inference_memory_snapshot.pickle"), "-o", out)
        (complete, synth), = self.query(out, "SELECT history_complete, synthesized FROM alloc_snapshots")
        self.assertEqual(complete, 0)
        self.assertGreater(synth, 0)
        # the synthesized entries come first, and nothing is freed that was never allocated
        rows = self.query(out, "SELECT synthetic FROM alloc_trace ORDER BY entry_id")
        self.assertEqual(rows, sorted(rows, reverse=True))

    def test_export_round_trip(self):
        out = self.path("s.db")
        cmt("import-torch", snapshot("mem_snapshot.pickle"), "-o", out)
        pk = self.path("back.pickle")
        cmt("export-torch", out, "-o", pk)
        orig, back = load(snapshot("mem_snapshot.pickle")), load(pk)
        self.assertEqual([(s["address"], s["total_size"]) for s in back["segments"]],
                         sorted((s["address"], s["total_size"]) for s in orig["segments"]))
        self.assertEqual([(e["action"], e["addr"], e["size"]) for e in back["device_traces"][0]],
                         [(e["action"], e["addr"], e["size"]) for e in orig["device_traces"][0]])
        # and it imports again to the same figures
        again = self.path("again.db")
        cmt("import-torch", pk, "-o", again)
        self.assertEqual(report(again)["fragmentation"][0]["end"], report(out)["fragmentation"][0]["end"])


def replay(db):
    """Live blocks (address -> requested bytes) and segments (address -> bytes) after replaying alloc_trace
    from empty, as a reader of the schema would."""
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
    blocks, pieces = {}, {}
    for action, addr, size in con.execute("SELECT action, addr, size FROM alloc_trace ORDER BY entry_id"):
        if action == "alloc":
            blocks[addr] = size
        elif action == "free_completed":
            del blocks[addr]
        elif action in ("segment_alloc", "segment_map"):
            pieces[addr] = size
        elif action in ("segment_free", "segment_unmap"):
            del pieces[addr]
    con.close()
    return blocks, pieces


class DriverLevelTest(TraceTest):
    """examples/train_sim on 8 GiB: a caching allocator that releases its free segments and retries when
    cuMemAlloc fails, and finally runs out of memory in step 4 (see the arithmetic in train_sim.c)."""

    def setUp(self):
        super().setUp()
        self.proc, self.db = self.trace([client("train_sim")], memory="8GiB")

    def test_release_and_retry_and_verdict(self):
        r = report(self.db)
        ooms = r["ooms"]
        self.assertTrue(ooms)
        for o in ooms:
            self.assertEqual(o["source"], "driver")
            for key in ("device", "size", "free_bytes", "reserved_bytes", "allocated_bytes", "largest_free_block",
                        "verdict"):
                self.assertIn(key, o)
        last = ooms[-1]
        self.assertEqual((last["verdict"], last["retry"], last["size"]), ("capacity", "failed", 256 * MiB))
        self.assertLess(last["free_bytes"], last["size"])
        # the failed retry is the same request: reported once, not as a fourth OOM
        self.assertEqual(len([f for f in r["failures"]]), len(ooms) + 1)
        recovered = [o for o in ooms if o["retry"] == "succeeded"]
        self.assertTrue(recovered)
        for o in recovered:
            self.assertEqual(o["verdict"], "fragmentation")
            self.assertGreaterEqual(o["released_bytes"], o["size"])
            self.assertGreater(o["released_segments"], 0)
            self.assertTrue(any("expandable_segments:True" in a for a in o["advice"]))
        self.assertTrue(any("batch size" in a for a in last["advice"]))
        text = cmt("report", self.db).stdout
        self.assertIn("CAPACITY OOM", text)
        self.assertIn("release-and-retry: the cache gave back", text)

    def test_components_from_native_frames(self):
        params = 8 * (8 * 2048 * 2048 + 5 * 2048)
        r = report("--params", params, self.db)
        comps = {c["name"]: c for c in r["components"]}
        # parameters, gradients and each AdamW moment: 8 layers * (W1 + W2 = 2 * 64 MiB) = 1 GiB per copy
        # (biases share 2 MiB small-pool segments, so each copy is 1 GiB and at most a few MiB more)
        for name, copies in (("parameters", 1), ("gradients", 1), ("optimizer_state", 2)):
            self.assertGreaterEqual(comps[name]["bytes_at_peak"], copies * GiB, name)
            self.assertLessEqual(comps[name]["bytes_at_peak"], copies * GiB + 8 * MiB, name)
        self.assertGreater(comps["activations"]["bytes_at_peak"], 3 * GiB)
        self.assertEqual(r["expected"]["parameters"]["expected_bytes"], 4 * params)
        self.assertEqual(r["expected"]["optimizer_state"]["expected_bytes"], 8 * params)
        # a rules file of our own: everything forward is "inputs" now
        rules = self.path("rules.txt")
        with open(rules, "w") as f:
            f.write("# mine\ninputs native forward_layer*\n")
        comps = {c["name"]: c for c in report("--rules", rules, self.db)["components"]}
        self.assertEqual(set(comps), {"inputs", "other"})


if __name__ == "__main__":
    unittest.main()


class SnapshotDefectsTest(TraceTest):
    """Snapshots built by hand for the defects real ones showed (issue 9) and the block-size inference."""

    SEG = 0x7f0000000000

    def snap(self, entries, timed=True, settings=None, final_blocks=None, total=20 * MiB):
        for i, e in enumerate(entries):
            e.setdefault("stream", 0)
            e.setdefault("frames", [{"name": "step", "filename": "/x/train.py", "line": 10 + i}])
            if timed:
                e["time_us"] = 1_000_000 + 10 * i
        blocks = final_blocks or [{"address": self.SEG, "size": 20 * MiB, "requested_size": 0, "state": "inactive",
                                   "frames": []}]
        snap = {"segments": [{"device": 0, "address": self.SEG, "total_size": total, "stream": 0,
                              "segment_type": "large", "blocks": blocks}],
                "device_traces": [entries]}
        if settings is not None:
            snap["allocator_settings"] = settings
        p = self.path("s.pickle")
        with open(p, "wb") as f:
            pickle.dump(snap, f)
        out = self.path("s.db")
        cmt("import-torch", p, "-o", out)
        return out

    def history(self):
        seg = self.SEG
        return [{"action": "segment_alloc", "addr": seg, "size": 20 * MiB},
                {"action": "alloc", "addr": seg, "size": 12 * MiB},
                # 8 MiB left, the request 7.5 MiB: 0.5 MiB would remain, not more than 1 MiB: not split
                {"action": "alloc", "addr": seg + 12 * MiB, "size": 15 * MiB // 2},
                {"action": "free_requested", "addr": seg + 12 * MiB, "size": 15 * MiB // 2},
                {"action": "free_completed", "addr": seg + 12 * MiB, "size": 15 * MiB // 2},
                {"action": "free_requested", "addr": seg, "size": 12 * MiB},
                {"action": "free_completed", "addr": seg, "size": 12 * MiB}]

    def test_unsplit_remainder_counts_in_allocated(self):
        r = report(self.snap(self.history()))
        # torch's allocated_bytes: 12 MiB + the whole 8 MiB block, not 12 + 7.5
        self.assertEqual(r["fragmentation"][0]["peak_allocated_bytes"], 20 * MiB)
        self.assertEqual(self.query(self.path("s.db"), "SELECT block_size FROM alloc_trace WHERE action = 'alloc' "
                                                     "ORDER BY entry_id"), [(12 * MiB,), (8 * MiB,)])

    def test_expandable_segments_split_at_512_bytes(self):
        r = report(self.snap(self.history(), settings={"expandable_segments": True}))
        self.assertEqual(r["fragmentation"][0]["peak_allocated_bytes"], 12 * MiB + 15 * MiB // 2)

    def test_max_split_size_keeps_large_blocks_whole(self):
        seg = self.SEG
        h = [{"action": "segment_alloc", "addr": seg, "size": 20 * MiB},
             {"action": "alloc", "addr": seg, "size": 16 * MiB},  # 4 MiB left, but 16 MiB >= max_split_size
             {"action": "free_requested", "addr": seg, "size": 16 * MiB},
             {"action": "free_completed", "addr": seg, "size": 16 * MiB}]
        r = report(self.snap(h, settings={"max_split_size": 10 * MiB}))
        self.assertEqual(r["fragmentation"][0]["peak_allocated_bytes"], 20 * MiB)

    def test_snapshot_without_times_still_reports(self):
        out = self.snap(self.history(), timed=False)
        r = report(out)
        self.assertEqual(r["fragmentation"][0]["peak_allocated_bytes"], 20 * MiB)
        ts = [t for (t,) in self.query(out, "SELECT ts_ns FROM alloc_trace ORDER BY entry_id")]
        self.assertEqual(ts, sorted(ts))
        self.assertEqual(len(set(ts)), len(ts))
        self.assertEqual(self.scalar(out, "SELECT count(*) FROM alloc_trace WHERE time_us IS NOT NULL"), 0)

    def test_oom_device_free_in_either_spelling(self):
        seg = self.SEG
        for key in ("device_free", "addr"):
            h = [{"action": "segment_alloc", "addr": seg, "size": 20 * MiB},
                 {"action": "alloc", "addr": seg, "size": 20 * MiB},
                 {"action": "oom", key: 123 * MiB, "size": 900 * MiB}]
            live = [{"address": seg, "size": 20 * MiB, "requested_size": 20 * MiB, "state": "active_allocated",
                     "frames": []}]
            r = report(self.snap(h, final_blocks=live))
            o = [o for o in r["ooms"] if o["source"] == "allocator"]
            self.assertEqual(len(o), 1, r["ooms"])
            self.assertEqual((o[0]["free_bytes"], o[0]["reserved_bytes"], o[0]["allocated_bytes"]),
                             (123 * MiB, 20 * MiB, 20 * MiB), key)
            # and export-torch writes it back, in both spellings
            cmt("export-torch", self.path("s.db"), "-o", self.path("back.pickle"))
            back = load(self.path("back.pickle"))
            ooms = [e for e in back["device_traces"][0] if e["action"] == "oom"]
            self.assertEqual([(e["addr"], e["device_free"]) for e in ooms], [(123 * MiB, 123 * MiB)])
            os.unlink(self.path("s.db"))

    def test_expandable_unmap_of_part_of_a_mapping_before_an_oom(self):
        """The allocator maps 20 MiB, later gives back the top 12 MiB while freeing cache before a failed
        retry: the oom sees 8 MiB reserved (not 20, which was more than the device then held)."""
        seg = self.SEG
        h = [{"action": "segment_map", "addr": seg, "size": 20 * MiB},
             {"action": "alloc", "addr": seg, "size": 8 * MiB},
             {"action": "alloc", "addr": seg + 8 * MiB, "size": 12 * MiB},
             {"action": "free_requested", "addr": seg + 8 * MiB, "size": 12 * MiB},
             {"action": "free_completed", "addr": seg + 8 * MiB, "size": 12 * MiB},
             {"action": "segment_unmap", "addr": seg + 8 * MiB, "size": 12 * MiB},
             {"action": "oom", "device_free": 2 * MiB, "size": 30 * MiB}]
        live = [{"address": seg, "size": 8 * MiB, "requested_size": 8 * MiB, "state": "active_allocated",
                 "frames": []}]
        out = self.snap(h, settings={"expandable_segments": True}, final_blocks=live, total=8 * MiB)
        r = report(out)
        o = [o for o in r["ooms"] if o["source"] == "allocator"][0]
        self.assertEqual((o["reserved_bytes"], o["allocated_bytes"], o["free_bytes"]), (8 * MiB, 8 * MiB, 2 * MiB))
        self.assertEqual(o["verdict"], "capacity")
        self.assertEqual(r["fragmentation"][0]["peak_reserved_bytes"], 20 * MiB)
        self.assertEqual(self.scalar(out, "SELECT count(*) FROM alloc_trace WHERE synthetic = 1"), 0)


    def test_whatif_replays_the_history_and_refuses_what_it_cannot(self):
        seg = self.SEG
        # what torch does: 6 MiB (under 10 MiB) gets a 20 MiB segment, split; 13.5 MiB then takes the 14 MiB
        # left, whole (0.5 MiB would remain)
        h = [{"action": "segment_alloc", "addr": seg, "size": 20 * MiB},
             {"action": "alloc", "addr": seg, "size": 6 * MiB},
             {"action": "alloc", "addr": seg + 6 * MiB, "size": 27 * MiB // 2},
             {"action": "free_requested", "addr": seg + 6 * MiB, "size": 27 * MiB // 2},
             {"action": "free_completed", "addr": seg + 6 * MiB, "size": 27 * MiB // 2},
             {"action": "free_requested", "addr": seg, "size": 6 * MiB},
             {"action": "free_completed", "addr": seg, "size": 6 * MiB}]
        out = self.snap(h)
        p = subprocess.run([CUMEMTRACE, "whatif", "--json", out, "--alloc-conf", "max_split_size_mb:20",
                            "--capacity", "16MiB"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        rec, small = json.loads(p.stdout)["configs"]
        # recorded: one 20 MiB segment, 6 MiB + the unsplit 14 MiB block at the peak; reserved equal throughout
        self.assertEqual((rec["peak_reserved_bytes"], rec["peak_allocated_bytes"]), (20 * MiB, 20 * MiB))
        self.assertEqual(rec["check"], {"entries": 4, "reserved_mismatches": 0, "first_mismatch_entry": -1})
        self.assertFalse(rec["oom"])
        # 16 MiB cannot hold the 20 MiB segment the 6 MiB request needs: it fails; the 13.5 MiB one then gets
        # a 14 MiB segment of its own
        self.assertTrue(small["oom"])
        self.assertEqual(small["first_oom"]["size"], 6 * MiB)
        self.assertEqual(small["peak_reserved_bytes"], 14 * MiB)
        self.assertEqual(small["capacity_bytes"], 16 * MiB)
        for args, words in (([out, "--alloc-conf", "backend:cudaMallocAsync"], "not modelled"),
                            ([out, "--alloc-conf", "nonsense:1"], "not a setting"),
                            ([out, "--alloc-conf", "max_split_size_mb:3"], "at least 20"),
                            ([out, "--capacity", "lots"], "--capacity lots"),
                            ([self.path("missing.db")], "missing.db")):
            p = subprocess.run([CUMEMTRACE, "whatif"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.assertNotEqual(p.returncode, 0, args)
            self.assertEqual(p.stdout, "")
            self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
            self.assertIn(words, p.stderr)
