"""End-to-end capture tests: programs run under the interposer on the simulated driver, and every call they
report on stdout is found in the trace, exactly (api, address, size, result, order).

The clients live in tests/clients (ops.h describes the lines they print)."""
import json
import os
import re
import signal
import sqlite3
import subprocess

from cmtlib import GiB, MiB, SHARED, TraceTest, client, run, sim_env

EVENTS_SQL = """SELECT e.seq, a.name, o.name, e.address, e.size, e.result, e.handle, e.aux, e.free_bytes,
                       e.total_bytes, e.stack_id
                FROM events e JOIN apis a ON a.api = e.api JOIN ops o ON o.op = e.op ORDER BY e.seq"""


def parse_ops(stdout):
    """Expected trace rows from a client's stdout: (api, address, size, result, handle)."""
    rows, pitch = [], None
    for line in stdout.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "ok":
            rows.append((f[1], int(f[2], 16), int(f[3]), 0, None))
        elif f[0] == "release":
            rows.append((f[1], int(f[2], 16), None, 0, None))
        elif f[0] == "fail":
            rows.append((f[1], None, int(f[2]), int(f[3]), None))
        elif f[0] == "handle":
            rows.append((f[1], None, int(f[3]), 0, int(f[2], 16)))
        elif f[0] == "release-handle":
            rows.append((f[1], None, None, 0, int(f[2], 16)))
        elif f[0] == "pitch":
            pitch = int(f[1])
    return rows, pitch


def mask_host(stdout):
    """Host memory (managed, pinned) comes from mmap, whose addresses differ from run to run: mask them.
    Device addresses come from the simulated driver and must match exactly."""
    out = re.sub(r"pid \d+", "pid", stdout)
    return re.sub(r"^((?:ok|release) cu(?:MemAllocManaged|MemAllocHost_v2|MemHostAlloc|MemFreeHost)) \S+",
                  r"\1 HOST", out, flags=re.M)


class ResolutionPaths(TraceTest):
    """Paths (a) linking, (b) dlsym, (c) cuGetProcAddress: the same workload, found whole in the trace."""

    def check_workload(self, argv, memory="24GiB", calls=19):
        p, db = self.trace(argv, memory=memory)
        expected, pitch = parse_ops(p.stdout)
        self.assertEqual(len(expected), calls)
        got = self.query(db, EVENTS_SQL)
        self.assertEqual(len(got), len(expected), "one event per driver call\n%s" % got)
        for exp, row in zip(expected, got):
            api, address, size, result, handle = exp
            self.assertEqual(row[1], api)
            self.assertEqual(row[5], result, row)
            if address is not None:
                self.assertEqual(row[3], address, row)
            if size is not None and row[2] != "free" and row[2] != "unmap":
                self.assertEqual(row[4], size, row)
            if handle is not None:
                self.assertEqual(row[6], handle, row)
        self.assertEqual([r[0] for r in got], list(range(1, len(got) + 1)), "seq is dense from 1")
        # The failed allocation: result, and what the device had left at that moment.
        fails = self.query(db, "SELECT api, size, result, free_bytes, total_bytes FROM failures")
        self.assertEqual(len(fails), 1)
        self.assertEqual(fails[0][:3], ("cuMemAlloc_v2", 1 << 50, 2))
        total = int(memory[:-3]) * GiB
        self.assertEqual(fails[0][4], total)
        # Live before the huge request: 3 MiB + 5 (2 pages), 1 MiB and 64 MiB: 2 + 1 + 32 pages of 2 MiB.
        self.assertEqual(fails[0][3], total - 35 * 2 * MiB)
        # The pitch the driver chose is recorded with the pitched allocation.
        self.assertEqual(self.scalar(db, "SELECT aux FROM events WHERE api IN (3, 4) AND result = 0"), pitch)
        # Leaks: exactly what the client left live (b, c, d, pitched, managed, host2).
        live = self.query(db, "SELECT api, size FROM allocations WHERE free_ns IS NULL ORDER BY seq")
        self.assertEqual(sorted(live), sorted([
            ("cuMemAlloc_v2", 3 * MiB + 5), ("cuMemAlloc_v2", MiB), ("cuMemAlloc_v2", 64 * MiB),
            (got[[r[1] for r in got].index("cuMemAllocPitch_v2")][1], 100000),
            ("cuMemAllocManaged", 5 * MiB), ("cuMemHostAlloc", 4096)]))
        # The freed-then-reused address pairs with the right free.
        first = self.query(db, "SELECT address, free_ns IS NOT NULL FROM allocations WHERE api = 'cuMemAlloc_v2' ORDER BY seq")
        self.assertEqual(first[0][0], first[2][0], "the simulated driver hands the freed address out again")
        self.assertEqual([f for _, f in first], [1, 0, 0, 0])
        # VMM: reservation, physical handle and mapping all paired.
        vmm = self.query(db, "SELECT kind, size, free_api FROM allocations WHERE kind IN "
                             "('va_reservation', 'vmm_physical', 'vmm_mapping') ORDER BY seq")
        self.assertEqual(vmm, [("va_reservation", 64 * MiB, "cuMemAddressFree"),
                               ("vmm_physical", 20 * MiB, "cuMemRelease"),
                               ("vmm_mapping", 20 * MiB, "cuMemUnmap")])
        # Stacks name the client's own function first (our frames are left off).
        fn = self.query(db, """SELECT f.function FROM events e JOIN stack_frames f ON f.stack_id = e.stack_id
                               WHERE e.api = 2 AND e.result = 0 AND f.depth = 0""")
        self.assertEqual({r[0] for r in fn}, {"client_alloc_weights"})
        chain = [r[0] for r in self.query(db, """SELECT f.function FROM stack_frames f WHERE f.stack_id =
                 (SELECT stack_id FROM events WHERE api = 2 AND result <> 0) ORDER BY depth""")]
        self.assertEqual(chain[0], "client_try_huge")
        self.assertIn("main", chain)
        self.assertEqual(self.query(db, "SELECT finalized, events_lost, events_written FROM process"),
                         [(1, 0, len(got))])
        dev = self.query(db, "SELECT device, total_bytes, driver_version FROM devices")
        self.assertEqual(dev, [(0, total, 13000)])
        return p, db, got

    def test_a_linked(self):
        self.check_workload([client("direct_client")])

    def test_b_dlsym(self):
        p, db, got = self.check_workload([client("dlsym_client")])
        self.assertIn("cuMemAllocAsync_ptsz", [r[1] for r in got])

    def test_c_get_proc_address(self):
        p, db, got = self.check_workload([client("procaddr_client"), "v1"], memory="8GiB", calls=21)
        self.assertIn("cuMemAllocAsync_ptsz", [r[1] for r in got])
        v1 = self.query(db, "SELECT address, size FROM events WHERE api = 1")
        self.assertEqual(len(v1), 1)
        self.assertLess(v1[0][0], 1 << 32)
        self.assertEqual(v1[0][1], 3 * MiB)
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM events WHERE api = 5 AND address = ?", (v1[0][0],)), 1)

    def test_same_output_and_status_without_us(self):
        for argv in ([client("direct_client")], [client("lifecycle_client"), "return"]):
            traced = run(argv, sim_env(output=self.path("t.db")), check=False)
            plain = run(argv, sim_env(preload=False), check=False)
            self.assertEqual(mask_host(traced.stdout), mask_host(plain.stdout))
            self.assertEqual(traced.returncode, plain.returncode)
            self.assertEqual(traced.stderr, plain.stderr, "nothing of ours on stderr when all is well")


def hooked_names():
    """Concrete names the interposer wraps: interpose/hooks.def, its one list of hooks (the event vocabulary
    also names entry points that are only called, never wrapped: cuMemGetInfo_v2 for samples)."""
    from cmtlib import ROOT
    with open(os.path.join(ROOT, "interpose", "hooks.def")) as f:
        return set(re.findall(r"^CMT_HOOK\((cu\w+),", f.read(), flags=re.M))


class CudartLookups(TraceTest):
    """Path (d): what NVIDIA's libcudart 13.0 asks cuGetProcAddress_v2, replayed in order."""

    TSV = os.path.join(SHARED, "data", "cudart13-lookups.tsv")

    def setUp(self):
        super().setUp()
        if not os.path.exists(self.TSV):
            self.skipTest("../shared/data/cudart13-lookups.tsv is not present beside the checkout")

    def test_every_lookup_resolves_the_same_through_us(self):
        plain = run([client("cudart_like"), self.TSV], sim_env(preload=False)).stdout.splitlines()
        traced = run([client("cudart_like"), self.TSV], sim_env(output=self.path("t.db"))).stdout.splitlines()
        with open(self.TSV) as f:
            nrows = sum(1 for _ in f) - 1
        self.assertEqual(len(plain), nrows, "one line per lookup")
        self.assertEqual(len(traced), nrows)
        ours = hooked_names() | {"cuGetProcAddress", "cuGetProcAddress_v2"}
        wrapped = set()
        for a, b in zip(plain, traced):
            fa, fb = a.split("\t"), b.split("\t")
            # Same CUresult, symbol status, and the same concrete function (by ELF name)...
            self.assertEqual(fa[:6], fb[:6], b)
            # ...which is our wrapper exactly when we hook that concrete function, libcuda's otherwise.
            if fa[5] in ours:
                self.assertEqual(fb[6], "libcumemtrace.so", b)
                wrapped.add(fa[5])
            else:
                self.assertEqual(fa[6], fb[6], b)
        self.assertEqual(plain[0].split("\t")[3:6], ["0", "1", "-"], "the empty probe: success, not found, NULL")
        for n in ("cuMemAlloc_v2", "cuMemFree_v2", "cuMemAllocAsync_ptsz", "cuMemFreeAsync_ptsz", "cuMemAllocAsync",
                  "cuMemHostAlloc", "cuMemFreeHost", "cuGetProcAddress_v2", "cuGetProcAddress"):
            self.assertIn(n, wrapped)

    def test_allocations_through_looked_up_pointers(self):
        p, db = self.trace([client("cudart_like"), self.TSV, "alloc"])
        allocs = [(int(f[1], 16), int(f[2])) for f in (l.split() for l in p.stdout.splitlines()) if f and f[0] == "alloc"]
        frees = [int(f[1], 16) for f in (l.split() for l in p.stdout.splitlines()) if f and f[0] == "free"]
        self.assertGreaterEqual(len(allocs), 3)
        got = self.query(db, "SELECT address, size FROM events WHERE op = 1 AND result = 0 ORDER BY seq")
        self.assertEqual(got, allocs)
        got_frees = self.query(db, "SELECT address FROM events WHERE op = 2 AND result = 0 ORDER BY seq")
        self.assertEqual([r[0] for r in got_frees], frees)


class PythonClient(TraceTest):
    def test_ctypes(self):
        script = self.path("client.py")
        with open(script, "w") as f:
            f.write("""
import ctypes
cuda = ctypes.CDLL("libcuda.so.1")
dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
assert cuda.cuInit(0) == 0
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
sizes = [7 << 20, 12345, 1 << 30]
ptrs = []
for s in sizes:
    assert cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(s)) == 0
    ptrs.append(ptr.value)
assert cuda.cuMemFree_v2(ctypes.c_uint64(ptrs[0])) == 0
print(" ".join(hex(p) for p in ptrs))
""")
        import sys
        p, db = self.trace([sys.executable, script])
        ptrs = [int(x, 16) for x in p.stdout.split()]
        self.assertEqual(self.query(db, "SELECT address, size, free_ns IS NOT NULL FROM allocations ORDER BY seq"),
                         [(ptrs[0], 7 << 20, 1), (ptrs[1], 12345, 0), (ptrs[2], 1 << 30, 0)])
        argv = json.loads(self.scalar(db, "SELECT argv FROM process"))
        self.assertEqual(argv[-1], script)
