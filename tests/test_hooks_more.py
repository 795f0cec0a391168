"""The newer memory entry points (issue 11): shareable handles (export, import, retain), graph memory nodes
and the graph pool, CUDA arrays, host registration. tests/clients/ledger_hooks.c runs one group per
process on the simulated driver; each test checks the trace's exact counts, sizes and pairings (the
schema's views and the analyzer) against what the client did, computed here by hand."""
import glob
import json
import os
import subprocess

from cmtlib import CUMEMTRACE, MiB, TraceTest, client

PAGE = 2 * MiB


def cumemtrace(*args):
    p = subprocess.run([CUMEMTRACE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError("cumemtrace %s exited %d: %s" % (" ".join(args), p.returncode, p.stderr))
    return p.stdout


class HooksMore(TraceTest):
    def group(self, name):
        p, db = self.trace([client("ledger_hooks"), name], name=name + ".db")
        said = dict(line.split() for line in p.stdout.splitlines())
        return {k: int(v) for k, v in said.items()}, db

    def events(self, db):
        return self.query(db, "SELECT a.name, o.name, k.name, e.address, e.size, e.handle, e.aux, e.result"
                              " FROM events e JOIN apis a ON a.api = e.api JOIN ops o ON o.op = e.op"
                              " JOIN kinds k ON k.kind = e.kind ORDER BY e.seq")

    def test_shareable_handles(self):
        said, db = self.group("share")
        h = said["handle"]
        # Importing our own export and retaining from the mapped address give the same handle back.
        self.assertEqual(said["imported"], h)
        self.assertEqual(said["retained"], h)
        ev = self.events(db)
        self.assertEqual([e[0] for e in ev], [
            "cuMemCreate", "cuMemExportToShareableHandle", "cuMemImportFromShareableHandle", "cuMemAddressReserve",
            "cuMemMap", "cuMemRetainAllocationHandle", "cuMemRelease", "cuMemRelease", "cuMemUnmap", "cuMemRelease",
            "cuMemAddressFree"])
        self.assertEqual(ev[1][1:3], ("export", "vmm_physical"))
        self.assertEqual((ev[1][5], ev[1][6]), (h, 1))  # handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR
        self.assertEqual(ev[2][1:3], ("create", "vmm_imported"))
        self.assertEqual(ev[5][1:3], ("retain", "vmm_physical"))
        # Pairing by reference count: the retain ends at the first release, the import at the second, the
        # memory (cuMemCreate) at the last one, after the unmap.
        pairs = self.query(db, "SELECT api, seq, free_seq FROM allocations WHERE handle = ? ORDER BY seq", (h,))
        self.assertEqual(pairs, [("cuMemCreate", 1, 10), ("cuMemImportFromShareableHandle", 3, 8),
                                 ("cuMemMap", 5, 9), ("cuMemRetainAllocationHandle", 6, 7)])
        self.assertEqual(said["freed_by_last_release"], 4 * MiB)  # the driver agrees: memory went at seq 10
        rep = json.loads(cumemtrace("report", "--json", db))
        self.assertEqual(rep["peak_bytes"], 4 * MiB)  # counted once, not once per reference
        self.assertEqual(rep["leaked_bytes"], 0)
        self.assertEqual(rep["traces"][0]["unmatched_releases"], 0)
        self.assertEqual(rep["events_by_api"]["cuMemRelease"], 3)
        # The forked process imported another process's memory: its own trace, kind vmm_imported, paired
        # with its release, and no device memory of its own (the driver charged it nothing either).
        child, = glob.glob(self.path("share.ledger_hooks-*.db"))
        self.assertEqual(said["child_free_change"], 0)
        self.assertEqual(self.query(child, "SELECT kind, api, free_api FROM allocations"),
                         [("vmm_imported", "cuMemImportFromShareableHandle", "cuMemRelease")])
        crep = json.loads(cumemtrace("report", "--json", child))
        self.assertEqual((crep["peak_bytes"], crep["leaked_bytes"]), (0, 0))

    def test_graph_memory(self):
        said, db = self.group("graph")
        allocs = self.query(db, "SELECT address, size, kind, free_api FROM allocations ORDER BY seq")
        self.assertEqual(allocs, [(said["A"], 3 * MiB, "graph", "cuGraphAddMemFreeNode"),
                                  (said["B"], 1 * MiB, "graph", "cuGraphAddMemFreeNode"),
                                  (said["C"], 5 * MiB, "graph", None)])
        # Samples of the graph pool (size = reserved, aux = used) after each instantiation and launch.
        samples = self.query(db, "SELECT a.name, e.size, e.aux FROM events e JOIN apis a ON a.api = e.api"
                                 " WHERE e.op = (SELECT op FROM ops WHERE name = 'sample') ORDER BY e.seq")
        # Launch 1 maps A (2 pages) and B (1 page) at once, then frees both: the pool reserves 3 pages.
        # Launch 2 maps C (3 pages) from what is reserved: nothing more is charged.
        self.assertEqual(samples, [("cuGraphInstantiateWithFlags", 0, 0), ("cuGraphLaunch", 3 * PAGE, 0),
                                   ("cuGraphInstantiateWithFlags", 3 * PAGE, 0), ("cuGraphLaunch", 3 * PAGE, 3 * PAGE)])
        self.assertEqual(said["launch1_free_change"], 3 * PAGE)  # cuMemGetInfo sees the pool
        self.assertEqual(said["launch2_free_change"], 0)
        self.assertEqual((said["reserved"], said["used"]), (3 * PAGE, 3 * PAGE))
        rep = json.loads(cumemtrace("report", "--json", db))
        self.assertEqual(rep["other_memory"]["graph_nodes"], {"peak_bytes": 5 * MiB, "live_at_exit_bytes": 5 * MiB})
        self.assertEqual(rep["peak_bytes"], 0)  # node addresses are not device memory by themselves
        self.assertEqual(rep["events_by_api"], {"cuGraphAddMemAllocNode": 3, "cuGraphAddMemFreeNode": 2,
                                                "cuGraphInstantiateWithFlags": 2, "cuGraphLaunch": 2})

    def test_arrays(self):
        said, db = self.group("array")
        sizes = [1000 * 500 * 4 * 4,             # 2D, float x 4 channels
                 64 * 64 * 32 * 1 * 2,           # 3D, uint8 x 2
                 128 * 128 * 6 * 2,              # layered: 6 layers of half
                 (256 * 128 + 128 * 64 + 64 * 32 + 32 * 16) * 4,  # 4 mipmap levels of float
                 100 * 2]                        # v1 1D, int16
        allocs = self.query(db, "SELECT api, size, kind, free_api FROM allocations ORDER BY seq")
        self.assertEqual(allocs, [("cuArrayCreate_v2", sizes[0], "array", "cuArrayDestroy"),
                                  ("cuArray3DCreate_v2", sizes[1], "array", "cuArrayDestroy"),
                                  ("cuArray3DCreate_v2", sizes[2], "array", "cuArrayDestroy"),
                                  ("cuMipmappedArrayCreate", sizes[3], "array", "cuMipmappedArrayDestroy"),
                                  ("cuArrayCreate", sizes[4], "array", None)])
        self.assertEqual(self.scalar(db, "SELECT aux FROM allocations WHERE api = 'cuMipmappedArrayCreate'"), 4)
        # 3 channels is refused by the driver: a failure, no size known.
        self.assertEqual(self.query(db, "SELECT api, size, result FROM failures"), [("cuArrayCreate_v2", None, 1)])
        # The simulated driver charged whole pages: 4 + 1 + 1 + 1 + 1; one page is left for the live array.
        self.assertEqual(said["arrays_free_change"], 8 * PAGE)
        self.assertEqual(said["left_free_change"], PAGE)
        rep = json.loads(cumemtrace("report", "--json", db))
        self.assertEqual(rep["peak_bytes"], sum(sizes))  # arrays are device memory
        self.assertEqual(rep["leaked_bytes"], sizes[4])

    def test_host_registration(self):
        said, db = self.group("hostreg")
        allocs = self.query(db, "SELECT api, address, size, aux, free_api FROM allocations ORDER BY seq")
        self.assertEqual(allocs, [("cuMemHostRegister_v2", said["b1"], MiB, 1, "cuMemHostUnregister"),
                                  ("cuMemHostRegister_v2", said["b2"], 3 * MiB, 0, None),
                                  ("cuMemHostRegister", said["b3"], 8192, 0, "cuMemHostUnregister")])
        self.assertEqual(self.query(db, "SELECT api, size, result FROM failures"),
                         [("cuMemHostRegister_v2", 4096, 712)])  # CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED
        self.assertEqual(self.scalar(db, "SELECT result FROM events WHERE seq = 7"), 713)  # not registered
        rep = json.loads(cumemtrace("report", "--json", db))
        self.assertEqual(rep["other_memory"]["host_registered"],
                         {"peak_bytes": 4 * MiB + 8192, "live_at_exit_bytes": 3 * MiB})
        self.assertEqual(rep["peak_bytes"], 0)
        text = cumemtrace("report", db)
        self.assertIn("host registered (cuMemHostRegister)", text)
