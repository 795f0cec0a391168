"""`cumemtrace whatif` on allocator histories built by hand: every expected figure below is worked out in the
comments from the rules of PyTorch's caching allocator (c10/cuda/CUDACachingAllocator.cpp, torch 2.14), so a
departure of the model from those rules fails here without a GPU or a PyTorch install. The same model is
checked against real PyTorch in tests/test_real_torch.py (WhatIfTest).
"""
import json
import os
import pickle
import shutil
import subprocess
import unittest

from cmtlib import CUMEMTRACE, MiB, TraceTest

E = 0x7f0000000000  # an expandable segment's base (page aligned)


class WhatIfSyntheticTest(TraceTest):
    def snap(self, entries, settings=None, segments=()):
        for i, e in enumerate(entries):
            e.setdefault("stream", 0)
            e.setdefault("frames", [])
            e["time_us"] = 1_000_000 + 10 * i
        snap = {"segments": list(segments), "device_traces": [entries]}
        if settings is not None:
            snap["allocator_settings"] = settings
        p = self.path("s.pickle")
        with open(p, "wb") as f:
            pickle.dump(snap, f)
        out = self.path("s.db")
        subprocess.run([CUMEMTRACE, "import-torch", p, "-o", out], check=True, stdout=subprocess.DEVNULL)
        return out

    def whatif(self, db, *args):
        p = subprocess.run([CUMEMTRACE, "whatif", "--json", db] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)["configs"]

    @staticmethod
    def requests(*ops):
        """('a', addr, size) and ('f', addr, size) as alloc / free_requested + free_completed entries."""
        out = []
        for op, addr, size in ops:
            if op == "a":
                out.append({"action": "alloc", "addr": addr, "size": size})
            else:
                out.append({"action": "free_requested", "addr": addr, "size": size})
                out.append({"action": "free_completed", "addr": addr, "size": size})
        return out

    EMPTY_CACHE = [{"name": "empty_cache", "filename": "/torch/cuda/memory.py", "line": 1}]

    def test_recorded_expandable_history_replays_exactly(self):
        # large pool pages are 20 MiB. 8 MiB maps page 0 and is cut from it; 4 MiB comes from the 12 MiB
        # left; 12 MiB: the 8 MiB free tail plus one more page, merged, 12 MiB cut at E+12 MiB. Freeing
        # all three merges [0, 40) MiB; empty_cache (its frame on the unmap) unmaps both pages (reserved 0)
        # and the segment goes. A new 8 MiB request then maps a fresh page: 20 MiB again, where without
        # the empty_cache the cached 40 MiB would have served it.
        h = [{"action": "segment_map", "addr": E, "size": 20 * MiB},
             {"action": "alloc", "addr": E, "size": 8 * MiB},
             {"action": "alloc", "addr": E + 8 * MiB, "size": 4 * MiB},
             {"action": "segment_map", "addr": E + 20 * MiB, "size": 20 * MiB},
             {"action": "alloc", "addr": E + 12 * MiB, "size": 12 * MiB}]
        h += self.requests(("f", E, 8 * MiB), ("f", E + 8 * MiB, 4 * MiB), ("f", E + 12 * MiB, 12 * MiB))
        h += [{"action": "segment_unmap", "addr": E, "size": 40 * MiB, "frames": self.EMPTY_CACHE},
              {"action": "segment_map", "addr": E + 40 * MiB, "size": 20 * MiB},
              {"action": "alloc", "addr": E + 40 * MiB, "size": 8 * MiB}]
        h += self.requests(("f", E + 40 * MiB, 8 * MiB))
        h += [{"action": "segment_unmap", "addr": E + 40 * MiB, "size": 20 * MiB, "frames": self.EMPTY_CACHE}]
        rec, = self.whatif(self.snap(h, settings={"expandable_segments": True}))
        # the four requests: three needed new pages (8, 12 and the last 8 MiB: segments checked against the
        # recorded mappings), the 4 MiB came from the first page; every block where the history has it
        self.assertEqual(rec["check"], {"entries": 8, "reserved_mismatches": 0, "first_mismatch_entry": -1})
        self.assertEqual(rec["check_blocks"], {"segments": 3, "segment_mismatches": 0, "first_segment_mismatch_entry": -1,
                                               "addresses": 4, "address_mismatches": 0,
                                               "first_address_mismatch_entry": -1, "allocated_mismatches": 0,
                                               "first_allocated_mismatch_entry": -1})
        self.assertEqual((rec["peak_reserved_bytes"], rec["peak_allocated_bytes"]), (40 * MiB, 24 * MiB))
        self.assertEqual(rec["segments_allocated"], 3)  # three page mappings
        # without the frame the burst followed by a mapping reads as a malloc's retry; with no capacity
        # known the recorded replay still releases the cache there, as the retry did
        for e in h:
            e["frames"] = []
        rec, = self.whatif(self.snap(h, settings={"expandable_segments": True}))
        self.assertEqual(rec["check"]["reserved_mismatches"], 0)

    def test_expandable_segments_avoid_a_fragmentation_oom(self):
        # default: 50 MiB gets its own 50 MiB segment; freed, it serves 20 MiB (30 MiB left, more than
        # 1 MiB: split) and 20 MiB again (10 MiB left: split). Freeing the first leaves [20 free][20 live]
        # [10 free] in one split segment, which cannot go back: 40 MiB needs a new segment and 50 + 40 >
        # 80 MiB: out of memory with 20 MiB allocated and 50 MiB reserved.
        # expandable: 50 MiB maps three 20 MiB pages (60 MiB) and the same cuts follow; 40 MiB then takes
        # the free 20 MiB at the end of the mapping plus one more page: 80 MiB reserved, it fits.
        h = self.requests(("a", E, 50 * MiB), ("f", E, 50 * MiB), ("a", E, 20 * MiB), ("a", E + 20 * MiB, 20 * MiB),
                          ("f", E, 20 * MiB), ("a", E + 60 * MiB, 40 * MiB))
        rec, default, exp = self.whatif(self.snap(h), "--capacity", "80MiB", "--alloc-conf", "max_split_size_mb:1024",
                                        "--alloc-conf", "expandable_segments:True")
        # recorded (no capacity: a request history without segments): the 40 MiB gets its own segment
        self.assertEqual((rec["peak_reserved_bytes"], rec["oom"]), (90 * MiB, False))
        self.assertTrue(default["oom"])
        self.assertEqual(default["first_oom"], {"entry_id": default["first_oom"]["entry_id"], "size": 40 * MiB,
                                                "reserved_bytes": 50 * MiB, "allocated_bytes": 20 * MiB})
        self.assertEqual(default["peak_reserved_bytes"], 50 * MiB)
        self.assertFalse(exp["oom"])
        self.assertEqual(exp["capacity_bytes"], 80 * MiB)
        self.assertEqual((exp["peak_reserved_bytes"], exp["peak_allocated_bytes"]), (80 * MiB, 60 * MiB))
        self.assertEqual(exp["segments_allocated"], 2)  # the 60 MiB mapping, then one page

    def test_report_shows_the_same_table_when_asked(self):
        """report --whatif CONF: the what-if table in the text, in the JSON (key "whatif", equal to whatif
        --json's configs) and in the page's data; refused in one line for several traces."""
        h = self.requests(("a", E, 50 * MiB), ("f", E, 50 * MiB), ("a", E, 20 * MiB), ("a", E + 20 * MiB, 20 * MiB),
                          ("f", E, 20 * MiB), ("a", E + 60 * MiB, 40 * MiB))
        db = self.snap(h)
        want = self.whatif(db, "--alloc-conf", "expandable_segments:True")
        # as recorded: 50, then 40 MiB in a segment of its own (90 MiB); expandable: 80 MiB (see above)
        self.assertEqual([c["peak_reserved_bytes"] for c in want], [90 * MiB, 80 * MiB])
        run = lambda *a: subprocess.run([CUMEMTRACE, "report"] + list(a), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        p = run("--json", "--whatif", "expandable_segments:True", db)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["whatif"], want)
        self.assertNotIn("whatif", json.loads(run("--json", db).stdout))  # only when asked
        text = run("--whatif", "expandable_segments:True", db).stdout
        section = text[text.index("WHAT IF"):]
        self.assertRegex(section, r"\nrecorded +unlimited +90\.0 MiB +60\.0 MiB +33\.3%  no\n")
        self.assertRegex(section, r"\nexpandable_segments:True +unlimited +80\.0 MiB +60\.0 MiB +25\.0%  no\n")
        page = self.path("r.html")
        self.assertEqual(run("--html", page, "--whatif", "expandable_segments:True", db).returncode, 0)
        html = open(page, encoding="utf-8").read()
        data = json.loads(html.split("id='cmt-data'>", 1)[1].split("</script>", 1)[0])
        self.assertEqual(data["report"]["whatif"], want)
        p = run("--json", "--whatif", "expandable_segments:True", db, db)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr.splitlines(), ["cumemtrace: report: --whatif reads the allocator history of one "
                                                 "trace; 2 were given"])
        p = run("--whatif", "expandable_segments:maybe", db)
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)

    def test_expandable_pages_and_every_remainder_split(self):
        # small pool (requests up to 1 MiB), 2 MiB pages: three 1 MiB requests fill page 0 and half of
        # page 1 (4 MiB; a 20 MiB page would show here). 19.5 MiB, large pool: by default a 20 MiB segment
        # whose 0.5 MiB remainder is not split (1 MiB or less): 20 MiB allocated; expandable maps one
        # 20 MiB page and splits every remainder of 512 B or more: 19.5 MiB allocated.
        h = self.requests(("a", E, MiB), ("a", E + MiB, MiB), ("a", E + 2 * MiB, MiB), ("a", E + 8 * MiB, 39 * MiB // 2))
        rec, exp = self.whatif(self.snap(h), "--alloc-conf", "expandable_segments:True")
        self.assertEqual((rec["peak_reserved_bytes"], rec["peak_allocated_bytes"]), (24 * MiB, 23 * MiB))
        self.assertEqual((exp["peak_reserved_bytes"], exp["peak_allocated_bytes"]), (24 * MiB, 45 * MiB // 2))
        self.assertEqual(exp["segments_allocated"], 3)  # page 0, page 1 of the small pool, one large page

    def test_empty_cache_unmaps_only_whole_free_pages(self):
        # what torch 2.14 did on the simulated GPU (ec.py in the commit message: the same requests):
        # expandable, large pool: 30 MiB maps two pages [0, 40); 5 MiB is cut at 30 MiB. Freeing the 30 MiB
        # and empty_cache unmap page 0 only ([0, 20) is whole and free; page 1 holds the live 5 MiB):
        # 20 MiB stay. 25 MiB then needs [0, 30): page 0 is mapped again, 40 MiB, a second mapping.
        # The default run: segments of 30 and 20 MiB (50), empty_cache gives back the 30, 26 MiB new.
        h = [{"action": "segment_alloc", "addr": E, "size": 30 * MiB}]
        h += self.requests(("a", E, 30 * MiB))
        h += [{"action": "segment_alloc", "addr": E + 100 * MiB, "size": 20 * MiB}]
        h += self.requests(("a", E + 100 * MiB, 5 * MiB), ("f", E, 30 * MiB))
        h += [{"action": "segment_free", "addr": E, "size": 30 * MiB, "frames": self.EMPTY_CACHE},
              {"action": "segment_alloc", "addr": E + 200 * MiB, "size": 26 * MiB}]
        h += self.requests(("a", E + 200 * MiB, 25 * MiB), ("f", E + 100 * MiB, 5 * MiB), ("f", E + 200 * MiB, 25 * MiB))
        h += [{"action": "segment_free", "addr": E + 100 * MiB, "size": 20 * MiB, "frames": self.EMPTY_CACHE},
              {"action": "segment_free", "addr": E + 200 * MiB, "size": 26 * MiB, "frames": self.EMPTY_CACHE}]
        rec, exp = self.whatif(self.snap(h), "--alloc-conf", "expandable_segments:True")
        self.assertEqual(rec["check"]["reserved_mismatches"], 0)
        self.assertEqual(rec["peak_reserved_bytes"], 50 * MiB)
        self.assertEqual(exp["peak_reserved_bytes"], 40 * MiB)
        self.assertEqual(exp["segments_allocated"], 2)  # without the unmap, no second mapping
        self.assertFalse(exp["oom"])

    def test_garbage_collection_threshold_frees_old_blocks_first(self):
        # capacity (the per-process limit) 100 MiB, threshold 0.5: above 50 MiB reserved, before a new
        # segment, unsplit cached large blocks at least as old (in get_free_block calls) as their average
        # go back. 30 MiB (call 1) freed; 40 MiB (call 2) needs a segment: 30 <= 50, no collection: 70.
        # 40 freed. 60 MiB (call 3): 70 > 50, 20 to reclaim: ages 2 (the 30, cached since call 1) and 1
        # (the 40), average 1.5: the 30 MiB goes, 30 >= 20 reclaimed, done: 40 + 60 = 100 reserved.
        # Without collection the 60 MiB fails first (130 > 100), both cached segments go: the peak is 70.
        h = self.requests(("a", E, 30 * MiB), ("f", E, 30 * MiB), ("a", E + 100 * MiB, 40 * MiB),
                          ("f", E + 100 * MiB, 40 * MiB), ("a", E + 200 * MiB, 60 * MiB))
        rec, plain, gc = self.whatif(self.snap(h), "--capacity", "100MiB", "--alloc-conf", "max_split_size_mb:1024",
                                     "--alloc-conf", "garbage_collection_threshold:0.5")
        self.assertEqual(plain["peak_reserved_bytes"], 70 * MiB)
        self.assertEqual(gc["peak_reserved_bytes"], 100 * MiB)
        self.assertFalse(plain["oom"] or gc["oom"])

    def test_gpu_capacity_is_the_boards_pages_less_its_context(self):
        # an imported snapshot has no driver level: nothing held outside the allocator. L4: 23580639232
        # bytes, whole 2 MiB pages 11244 (23580377088 bytes), its context 300 MiB (simgpu's preset)
        db = self.snap(self.requests(("a", E, 30 * MiB)))
        p = subprocess.run([CUMEMTRACE, "whatif", "--json", db, "--gpu", "L4"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        r = json.loads(p.stdout)
        want = 11244 * 2 * MiB - 300 * MiB
        self.assertEqual(r["gpu"], {"spec": "L4", "total_bytes": 23580639232, "context_bytes": 300 * MiB,
                                    "outside_allocator_bytes": 0, "capacity_bytes": want})
        self.assertEqual(r["configs"][1]["capacity_bytes"], want)
        # a size: that many bytes in whole pages, no context; 31 MiB holds 30 MiB in 15 pages, 29 MiB not
        for size, oom in (("31MiB", False), ("29MiB", True)):
            p = subprocess.run([CUMEMTRACE, "whatif", "--json", db, "--gpu", size], stdout=subprocess.PIPE, text=True)
            r = json.loads(p.stdout)
            self.assertEqual(r["gpu"]["capacity_bytes"], (int(size[:2]) // 2) * 2 * MiB)
            self.assertEqual(r["configs"][1]["oom"], oom, size)

    def test_report_oom_verdict_rests_on_the_model(self):
        # the fragmentation history of test_expandable_segments_avoid_a_fragmentation_oom as torch records it:
        # 50 MiB segment, cut into 20 + 20 (+ 10); the 40 MiB request fails with 30 MiB free on the device.
        # The allocator could have had 50 + 30 = 80 MiB; 20 live + 40 requested fit in that: fragmentation.
        # Replayed with expandable_segments:True under 80 MiB it is served with 80 MiB reserved, 10 MiB less
        # than the 50 + 40 the allocator needed.
        h = [{"action": "segment_alloc", "addr": E, "size": 50 * MiB}]
        h += self.requests(("a", E, 50 * MiB), ("f", E, 50 * MiB), ("a", E, 20 * MiB), ("a", E + 20 * MiB, 20 * MiB),
                           ("f", E, 20 * MiB))
        h += [{"action": "oom", "addr": 30 * MiB, "device_free": 30 * MiB, "size": 40 * MiB}]
        h += self.requests(("f", E + 20 * MiB, 20 * MiB))
        h += [{"action": "segment_free", "addr": E, "size": 50 * MiB, "frames": self.EMPTY_CACHE}]
        db = self.snap(h)
        r = json.loads(subprocess.run([CUMEMTRACE, "report", "--json", db], stdout=subprocess.PIPE, text=True,
                                      check=True).stdout)
        v, = r["oom_verdicts"]
        self.assertEqual((v["verdict"], v["live_bytes"], v["request_bytes"], v["reserved_bytes"], v["capacity_bytes"],
                          v["short_bytes"], v["outside_allocator_bytes"], v["model_reproduces"]),
                         ("fragmentation", 20 * MiB, 40 * MiB, 50 * MiB, 80 * MiB, -20 * MiB, None, True))
        self.assertEqual(v["fits_with"], {"alloc_conf": "expandable_segments:True", "reserved_bytes": 80 * MiB,
                                          "saves_bytes": 10 * MiB})
        o, = [o for o in r["ooms"] if o["source"] == "allocator"]
        self.assertEqual(o["verdict"], "fragmentation")
        self.assertIn("expandable_segments:True: this run replayed with it serves the request", o["advice"][0])
        # with 8 MiB free the allocator could have had 58 MiB: 20 live + 40 requested exceed it by 2 MiB,
        # capacity, whatever the settings
        oom, = [e for e in h if e["action"] == "oom"]
        oom["addr"] = oom["device_free"] = 8 * MiB
        r = json.loads(subprocess.run([CUMEMTRACE, "report", "--json", self.snap(h)], stdout=subprocess.PIPE,
                                      text=True, check=True).stdout)
        v, = r["oom_verdicts"]
        self.assertEqual((v["verdict"], v["capacity_bytes"], v["short_bytes"], v["fits_with"]),
                         ("capacity", 58 * MiB, 2 * MiB, None))
        self.assertEqual(r["ooms"][0]["verdict"], "capacity")
        # with 12 MiB free (62 MiB): expandable runs out mapping a fourth page (80), gives back the free pages
        # 0 and 2 (20 MiB left) and maps 40 MiB after b: 60 reserved; max_split_size_mb:20 gets there too
        # (the 50 MiB block is oversize: released, 20 + 20 + 20, then 40 after the cached 20 goes): 60. The
        # first found of equals is named. Torch 2.14 serves it under both (test_real_torch, WhatIfTest).
        oom["addr"] = oom["device_free"] = 12 * MiB
        r = json.loads(subprocess.run([CUMEMTRACE, "report", "--json", self.snap(h)], stdout=subprocess.PIPE,
                                      text=True, check=True).stdout)
        v, = r["oom_verdicts"]
        self.assertEqual((v["verdict"], v["capacity_bytes"], v["fits_with"]),
                         ("fragmentation", 62 * MiB, {"alloc_conf": "expandable_segments:True",
                                                      "reserved_bytes": 60 * MiB, "saves_bytes": 30 * MiB}))

    def test_private_pools_without_entry_pools_are_refused_with_one_line(self):
        # a segment of a CUDA graph's private pool (segment_pool_id other than (0, 0)) but entries that do not
        # say which pool each request went to (PyTorch before pool_id in trace entries): not replayable;
        # the report keeps its own verdicts
        seg = {"device": 0, "address": E, "total_size": 20 * MiB, "stream": 0, "segment_type": "large",
               "segment_pool_id": (1, 0), "blocks": [{"address": E, "size": 20 * MiB, "requested_size": 0,
                                                       "state": "inactive", "frames": []}]}
        h = [{"action": "segment_alloc", "addr": E, "size": 20 * MiB}] + self.requests(("a", E, 8 * MiB), ("f", E, 8 * MiB))
        db = self.snap(h, segments=[seg])
        p = subprocess.run([CUMEMTRACE, "whatif", db], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stdout, "")
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertIn("private memory pools (CUDA graphs, MemPool) but its entries do not say which pool", p.stderr)
        r = json.loads(subprocess.run([CUMEMTRACE, "report", "--json", db], stdout=subprocess.PIPE, text=True,
                                      check=True).stdout)
        self.assertEqual(r["oom_verdicts"], [])
        # a MemPool destroyed before the snapshot: no private segment left, but its destructor's release says
        # the history had one
        h += [{"action": "segment_free", "addr": E, "size": 20 * MiB, "frames": self.MEMPOOL_DTOR}]
        p = subprocess.run([CUMEMTRACE, "whatif", self.snap(h)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
        self.assertEqual((p.returncode, p.stdout, len(p.stderr.splitlines())), (1, "", 1), p.stderr)
        self.assertIn("do not say which pool", p.stderr)

    MEMPOOL_DTOR = [{"name": "c10::cuda::CUDACachingAllocator::Native::NativeCachingAllocator::emptyCache("
                             "std::pair<unsigned long long, unsigned long long>)", "filename": "", "line": 0},
                    {"name": "at::cuda::MemPool::~MemPool()", "filename": "", "line": 0}]

    def test_private_pool_blocks_stay_in_their_pool(self):
        """A MemPool's requests (pool_id (0, 1)) come from its own segments; a retry keeps the segments of
        a pool in use; its destructor gives them back."""
        P = (0, 1)
        A, B, C, D = E, E + 100 * MiB, E + 200 * MiB, E + 300 * MiB

        def pooled(entries, pool):
            for e in entries:
                e["pool_id"] = pool
            return entries
        # recorded (no capacity): A 60 MiB default segment, freed (cached). B 30 MiB in the pool: a segment of
        # the pool's own (the cached 60 is the default pools'), freed back to the pool. E 20 MiB default: from
        # the default's cached 60 at A's base; shared pools would have given it the pool's 30 (best fit: the
        # smaller), at B: the address check tells them apart. C 70 MiB: a new segment (160 reserved). The
        # MemPool is destroyed: its cached 30 goes (130). D 30 MiB: from A's 60 again (split), at A.
        h = [{"action": "segment_alloc", "addr": A, "size": 60 * MiB}] + self.requests(("a", A, 60 * MiB), ("f", A, 60 * MiB))
        h += pooled([{"action": "segment_alloc", "addr": B, "size": 30 * MiB}] +
                    self.requests(("a", B, 30 * MiB), ("f", B, 30 * MiB)), P)
        h += self.requests(("a", A, 20 * MiB), ("f", A, 20 * MiB))
        h += [{"action": "segment_alloc", "addr": C, "size": 70 * MiB}] + self.requests(("a", C, 70 * MiB))
        h += pooled([{"action": "segment_free", "addr": B, "size": 30 * MiB, "frames": self.MEMPOOL_DTOR}], P)
        h += self.requests(("a", A, 30 * MiB))
        for e in h:
            e.setdefault("pool_id", (0, 0))
        db = self.snap(h)
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM alloc_trace WHERE pool_id = '0,1'"), 5)
        rec, small = self.whatif(db, "--capacity", "100MiB")
        # 5 requests and 3 frees checked; 3 new segments (A, B, C); 5 addresses (A, B, C at their segments,
        # E and D inside A)
        self.assertEqual(rec["check"], {"entries": 8, "reserved_mismatches": 0, "first_mismatch_entry": -1})
        self.assertEqual(rec["check_blocks"], {"segments": 3, "segment_mismatches": 0, "first_segment_mismatch_entry": -1,
                                               "addresses": 5, "address_mismatches": 0,
                                               "first_address_mismatch_entry": -1, "allocated_mismatches": 0,
                                               "first_allocated_mismatch_entry": -1})
        self.assertEqual((rec["peak_reserved_bytes"], rec["private_pools"]), (160 * MiB, 1))
        # under 100 MiB: C fails (60 + 30 + 70), the retry releases the default's cached 60 but not the pool's
        # 30, in use: 30 + 70 = 100 fits. The destructor frees the pool's 30 (70); D needs a segment: 100
        # (had the destructor's release not been replayed, D would run out: 100 + 30).
        self.assertEqual((small["oom"], small["peak_reserved_bytes"], small["segments_allocated"]), (False, 100 * MiB, 4))
        rec, tight = self.whatif(db, "--capacity", "99MiB")
        # 99 MiB: C's retry leaves 30 (the pool's) + 70 > 99: out of memory at C with the pool's 30 reserved;
        # a model that released the pool in use would have served C (70 <= 99)
        self.assertTrue(tight["oom"])
        self.assertEqual(tight["first_oom"], {"entry_id": tight["first_oom"]["entry_id"], "size": 70 * MiB,
                                              "reserved_bytes": 30 * MiB, "allocated_bytes": 0})

    def test_record_stream_free_waits_until_a_release_synchronizes(self):
        # X (200 MiB) is freed while in use on another stream: free_requested, its free_completed only at the
        # end. Recorded: A 100 + X 200 + Y 300 = 600 MiB reserved; allocated 300, 100 once X is requested
        # free (torch counts it out then), 400 with Y: the peak.
        X = E + 100 * MiB
        h = [{"action": "segment_alloc", "addr": E, "size": 100 * MiB}] + self.requests(("a", E, 100 * MiB))
        h += [{"action": "segment_alloc", "addr": X, "size": 200 * MiB}] + self.requests(("a", X, 200 * MiB))
        h += [{"action": "free_requested", "addr": X, "size": 200 * MiB},
              {"action": "segment_alloc", "addr": E + 300 * MiB, "size": 300 * MiB}]
        h += self.requests(("a", E + 300 * MiB, 300 * MiB))
        h += [{"action": "free_completed", "addr": X, "size": 200 * MiB}]
        rec, fits = self.whatif(self.snap(h), "--capacity", "500MiB", "--alloc-conf", "max_split_size_mb:1024")
        self.assertEqual((rec["peak_reserved_bytes"], rec["peak_allocated_bytes"]), (600 * MiB, 400 * MiB))
        self.assertEqual(rec["check"]["reserved_mismatches"], 0)
        # 500 MiB: Y's segment fails (300 + 300); the retry synchronizes X (freed: not reusable for Y, too
        # small), releases its segment and retries: 100 + 300 = 400. The late free_completed finds X gone.
        self.assertEqual((fits["oom"], fits["peak_reserved_bytes"], fits["peak_allocated_bytes"]),
                         (False, 400 * MiB, 400 * MiB))
        self.assertEqual(fits["segments_allocated"], 3)
        # 350 MiB: after X goes, 100 + 300 > 350: out of memory with A alone reserved and allocated
        _, tight = self.whatif(self.snap(h), "--capacity", "350MiB", "--alloc-conf", "max_split_size_mb:1024")
        self.assertEqual(tight["first_oom"], {"entry_id": tight["first_oom"]["entry_id"], "size": 300 * MiB,
                                              "reserved_bytes": 100 * MiB, "allocated_bytes": 100 * MiB})

    def test_recorded_garbage_collection_threshold_is_named_not_applied(self):
        # the snapshot's allocator_settings carry the threshold but no per-process memory fraction, without
        # which torch never collects: one line says it is not applied, and --json keeps it
        h = self.requests(("a", E, 30 * MiB), ("f", E, 30 * MiB), ("a", E + 100 * MiB, 40 * MiB))
        db = self.snap(h, settings={"garbage_collection_threshold": 0.6, "expandable_segments": False})
        p = subprocess.run([CUMEMTRACE, "whatif", db], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        line, = [l for l in p.stdout.splitlines() if "garbage_collection_threshold" in l]
        self.assertTrue(line.startswith("the recorded garbage_collection_threshold:0.6 is not applied: it acts only "
                                        "under a per-process memory fraction"), line)
        rec, = self.whatif(db)
        self.assertEqual(rec["recorded_garbage_collection_threshold"]["threshold"], 0.6)
        self.assertFalse(rec["recorded_garbage_collection_threshold"]["applied"])
        # not applied: 30 freed and cached, 40 gets a segment of its own (70); collection would change nothing
        # without a limit, and with one only when asked (--capacity with --alloc-conf)
        self.assertEqual(rec["peak_reserved_bytes"], 70 * MiB)
        self.assertIsNone(self.whatif(self.snap(h))[0]["recorded_garbage_collection_threshold"])

    def test_pool_ids_are_imported_into_a_trace_made_before_the_column(self):
        # a version 2 trace from before alloc_trace.pool_id (the fuzz corpus's torch trace): import-torch adds
        # the column; its older rows have none, the new snapshot's entries their pool
        old = self.path("old.db")
        shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz", "corpus", "torch.db"), old)
        os.chmod(old, 0o644)
        self.assertNotIn("pool_id", [r[1] for r in self.query(old, "PRAGMA table_info(alloc_trace)")])
        before = self.scalar(old, "SELECT count(*) FROM alloc_trace")
        h = [{"action": "segment_alloc", "addr": E, "size": 20 * MiB, "pool_id": (0, 1)},
             {"action": "alloc", "addr": E, "size": 8 * MiB, "pool_id": (0, 1)}]
        p = self.path("s.pickle")
        with open(p, "wb") as f:
            pickle.dump({"segments": [], "device_traces": [[dict(e, stream=0, time_us=1_000_000 + i, frames=[])
                                                            for i, e in enumerate(h)]]}, f)
        subprocess.run([CUMEMTRACE, "import-torch", p, "-o", old], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        self.assertEqual(self.query(old, "SELECT count(*), count(pool_id), min(pool_id) FROM alloc_trace"),
                         [(before + 2, 2, "0,1")])
        rec, = self.whatif(old)
        self.assertEqual((rec["private_pools"], rec["peak_reserved_bytes"]), (1, 20 * MiB))

    def test_bad_settings_are_refused_with_one_line(self):
        db = self.snap(self.requests(("a", E, MiB)))
        for conf, words in (("expandable_segments:maybe", "True or False"),
                            ("garbage_collection_threshold:0.5", "give it with --capacity"),
                            ("garbage_collection_threshold:1.5", "between 0 and 1"),
                            ("backend:cudaMallocAsync", "not modelled"),
                            (["--gpu", "V100"], "not a GPU"),
                            (["--gpu", "1MiB"], "at least 2MiB"),
                            (["--gpu", "L4", "--capacity", "1GiB"], "one or the other")):
            p = subprocess.run([CUMEMTRACE, "whatif", db] + (conf if isinstance(conf, list) else ["--alloc-conf", conf]),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self.assertEqual(p.returncode, 2, conf)
            self.assertEqual(p.stdout, "")
            self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
            self.assertIn(words, p.stderr)


if __name__ == "__main__":
    unittest.main()
