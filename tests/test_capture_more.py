"""Capture beyond the common path: pools, IPC, injected driver failures, vfork, dlsym's RTLD_NEXT for other
interposers, a full disk, and loss accounting when the writer cannot keep up."""
import glob
import os
import resource

from cmtlib import BUILD, INTERPOSER, MiB, TraceTest, client, run, sim_env
from test_capture import EVENTS_SQL, parse_ops


class MorePaths(TraceTest):
    def test_pool_allocations_and_trim(self):
        p, db = self.trace([client("pool_ipc_client"), "pool"])
        lines = [l.split() for l in p.stdout.splitlines()]
        pool = int(lines[0][5], 16)
        got = self.query(db, "SELECT a.name, e.address, e.size, e.handle, e.result FROM events e "
                             "JOIN apis a ON a.api = e.api ORDER BY seq")
        self.assertEqual(got, [
            ("cuMemAllocFromPoolAsync", int(lines[0][2], 16), 10 * MiB, pool, 0),
            ("cuMemAllocFromPoolAsync", int(lines[1][2], 16), 3 * MiB, pool, 0),
            ("cuMemFreeAsync", int(lines[2][2], 16), None, None, 0),
            ("cuMemPoolTrimTo", None, 0, pool, 0)])
        self.assertEqual(self.query(db, "SELECT kind, size, free_api FROM allocations ORDER BY seq"),
                         [("stream_ordered", 10 * MiB, "cuMemFreeAsync"), ("stream_ordered", 3 * MiB, None)])

    def test_ipc_open_in_another_process(self):
        outdir = self.path("ipc") + "/"
        p = run([client("pool_ipc_client"), "ipc"], sim_env(output=outdir))
        pids = [int(l.split()[1]) for l in p.stdout.splitlines() if l.startswith("pid")]
        opened = [l.split() for l in p.stdout.splitlines() if l.startswith("ok cuIpcOpenMemHandle_v2")][0]
        child = glob.glob(os.path.join(outdir, "*-%d.db" % pids[1]))
        self.assertEqual(len(child), 1, "a child ending in _exit still finishes its trace")
        self.assertEqual(self.query(child[0], "SELECT kind, address, size, free_api FROM allocations"),
                         [("ipc", int(opened[2], 16), 6 * MiB, "cuIpcCloseMemHandle")])
        self.assertEqual(self.scalar(child[0], "SELECT finalized FROM process"), 1)

    def test_injected_failures_are_events(self):
        # The 2nd cuMemAlloc_v2 fails with CUDA_ERROR_OUT_OF_MEMORY, the 1st cuMemCreate with
        # CUDA_ERROR_INVALID_VALUE; the client's CHECK then stops it with status 1.
        p, db = self.trace([client("direct_client")], check=False,
                           extra={"SIMCUDA_FAIL": "cuMemAlloc_v2:2:2"})
        self.assertEqual(p.returncode, 1)
        self.assertEqual(self.query(db, "SELECT api, size, result, free_bytes, total_bytes FROM failures"),
                         [("cuMemAlloc_v2", 3 * MiB + 5, 2, 24 * 1024 * MiB - 2 * MiB, 24 * 1024 * MiB)])
        p, db = self.trace([client("direct_client")], name="create.db", check=False,
                           extra={"SIMCUDA_FAIL": "cuMemCreate:1:1"})
        self.assertEqual(p.returncode, 1)
        fails = self.query(db, "SELECT api, size, result, kind FROM failures")
        self.assertEqual(fails[-1], ("cuMemCreate", 20 * MiB, 1, "vmm_physical"))

    def test_vfork_child_leaves_parent_trace_alone(self):
        p, db = self.trace([client("lifecycle_client"), "vfork"])
        self.assertEqual([r[0] for r in self.query(db, "SELECT size FROM events ORDER BY seq")],
                         [MiB, 2 * MiB, 3 * MiB, 8 * MiB])
        self.assertEqual(self.scalar(db, "SELECT finalized FROM process"), 1)
        self.assertEqual(len(glob.glob(self.path("*.db"))), 1)

    def test_fork_right_after_first_allocation(self):
        """The writer is still starting (file, device description) when the program forks: a driver fork
        handler that takes the driver's lock must not meet a writer that needs it."""
        p, db = self.trace([client("dlsym_client"), "fork-now"], timeout=60)
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM events"), 1)
        self.assertEqual(self.query(db, "SELECT device, total_bytes FROM devices"), [(0, 24 * 1024 * MiB)])

    def test_dlsym_of_another_library_is_left_alone(self):
        lib = os.path.join(BUILD, "tests", "clients", "libother_driver.so")
        p, db = self.trace([client("lifecycle_client"), "other-lib", lib])
        self.assertIn("other 999", p.stdout)
        self.assertIn("driver 0", p.stdout)
        self.assertEqual(self.query(db, "SELECT size, result FROM events"), [(4096, 0)])

    def test_rtld_next_of_a_later_interposer(self):
        probe = os.path.join(BUILD, "tests", "clients", "libnext_probe.so")
        out = self.path("next.txt")
        env = sim_env(output=self.path("t.db"), extra={"NEXT_PROBE_OUT": out})
        env["LD_PRELOAD"] = env["LD_PRELOAD"] + ":" + probe
        run([client("lifecycle_client"), "return"], env, check=False)
        with open(out) as f:
            module = f.read().strip()
        self.assertIn("libc.so", module)


class Paths(TraceTest):
    def test_relative_output_is_relative_to_the_start_directory(self):
        import sys
        os.mkdir(self.path("elsewhere"))
        script = self.path("chdir_then_alloc.py")
        with open(script, "w") as f:
            f.write('''
import ctypes, os, sys
os.chdir(sys.argv[1])  # before the first CUDA call
cuda = ctypes.CDLL("libcuda.so.1")
dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
assert cuda.cuInit(0) == 0 and cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0 and cuda.cuCtxSetCurrent(ctx) == 0
assert cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(4096)) == 0
''')
        run([sys.executable, script, self.path("elsewhere")], sim_env(output="rel.db"), cwd=self.tmp)
        self.assertTrue(os.path.exists(self.path("rel.db")))
        self.assertFalse(os.path.exists(self.path("elsewhere/rel.db")))
        self.assertEqual(self.scalar(self.path("rel.db"), "SELECT size FROM events"), 4096)


class NothingLeaksIntoTheProgram(TraceTest):
    def test_our_libraries_stay_out_of_the_global_scope(self):
        """libunwind.so exports _Unwind_RaiseException and backtrace, SQLite a whole API a program may bring
        in another version of: neither may be found by the program's own symbol lookups."""
        import sys
        script = self.path("scope.py")
        with open(script, "w") as f:
            f.write('''
import ctypes
cuda = ctypes.CDLL("libcuda.so.1")
dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
assert cuda.cuInit(0) == 0 and cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0 and cuda.cuCtxSetCurrent(ctx) == 0
assert cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(4096)) == 0
glob = ctypes.CDLL(None)  # the global scope, as the program's own lookups see it
for name in ("unw_backtrace", "_ULx86_64_local_addr_space", "sqlite3_open", "sqlite3_libversion"):
    print(name, hasattr(glob, name))
''')
        p, db = self.trace([sys.executable, script])
        self.assertEqual(p.stdout.split(), ["unw_backtrace", "False", "_ULx86_64_local_addr_space", "False",
                                            "sqlite3_open", "False", "sqlite3_libversion", "False"])
        # and stacks are still unwound, by the privately loaded libunwind
        self.assertGreater(self.scalar(db, "SELECT count(*) FROM stacks"), 3)


class OwnFailures(TraceTest):
    def test_full_disk(self):
        """The trace cannot grow past 200 KB: we say so once, the program runs on unchanged."""
        argv = [client("threads_client"), "2", "20000"]  # 80,000 events: about 1.2 MB in blocks
        plain = run(argv, sim_env(preload=False))
        limit = 200 * 1024
        p = run(argv, sim_env(output=self.path("t.db")), check=False,
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
        self.assertEqual(p.returncode, 0)
        self.assertEqual(p.stdout, plain.stdout)
        lines = p.stderr.splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertTrue(lines[0].startswith("cumemtrace: cannot write"), lines[0])
        self.assertIn("recording stops, the program continues", lines[0])

    def test_lost_events_are_counted(self):
        """A writer that cannot keep up: producers wait 2 s once, then drop and count; nothing vanishes."""
        p, db = self.trace([client("threads_client"), "1", "100"], timeout=60,
                           extra={"CUMEMTRACE_QUEUE": "64", "CUMEMTRACE_DEBUG_WRITER_DELAY_MS": "3000"})
        written, lost = self.query(db, "SELECT events_written, events_lost FROM process")[0]
        self.assertEqual(written + lost, 400, "4 calls per round")
        self.assertEqual(written, 64, "the queue held 64 events")
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM events"), written)
        self.assertEqual(self.query(db, "SELECT min(seq), max(seq) FROM events"), [(1, 64)])
