"""Builds cumemtrace trace files directly with SQLite, following schema/cumemtrace.sql exactly, for tests of
the analyzer that need hand-computed answers (peaks, leaks, top stacks, failures) without the interposer.

The lookup tables (apis, ops, kinds) are the build's schema/cmt_vocabulary.sql, generated from
schema/cmt_events.h, so they are what cmt_db.c writes; events name their api, and take its op and kind
from the apis table.

    t = TraceBuilder(path)                      # process pid 4242 on host "testhost", device 0 with 24 GiB
    s = t.stack(["_Z5trainv", "main"])          # innermost first; frames in /opt/app/libapp.so
    a = t.alloc(1 << 30, stack=s)               # cuMemAlloc_v2 at the next time step; returns the address
    t.free(a)
    t.fail(8 << 30, stack=s)                    # CUDA_ERROR_OUT_OF_MEMORY with free/total
    t.close()                                   # finalizes (indexes, end_ns, finalized = 1)

Times: every event takes the next step of `step_ns` unless given `at` (ns since the start).
"""
import os
import sqlite3
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_SQL = os.path.join(ROOT, "schema", "cumemtrace.sql")
INDEXES_SQL = os.path.join(ROOT, "schema", "cumemtrace_indexes.sql")

MiB = 1 << 20
GiB = 1 << 30
OOM = 2  # CUDA_ERROR_OUT_OF_MEMORY


BUILD = os.path.abspath(os.environ.get("CMT_BUILD_DIR", os.path.join(ROOT, "build")))
VOCABULARY_SQL = os.path.join(BUILD, "schema", "cmt_vocabulary.sql")


class TraceBuilder:
    def __init__(self, path, pid=4242, ppid=1, host="testhost", exe="/opt/app/bin/train",
                 argv=("train", "--epochs", "1"), start_ns=10_000_000_000, step_ns=1_000_000,
                 devices=((0, "Simulated GPU", 24 * GiB),), stack_depth=64, env=None):
        if os.path.exists(path):
            os.unlink(path)
        self.path = path
        self.db = sqlite3.connect(path)
        self.db.executescript(open(SCHEMA_SQL).read())
        with open(VOCABULARY_SQL) as f:
            self.db.executescript(f.read())
        self.apis = {name: (api, op, kind) for api, name, op, kind in
                     self.db.execute("SELECT api, name, op, kind FROM apis")}
        self.db.execute("INSERT INTO meta VALUES ('format', 'cumemtrace')")
        self.db.execute("INSERT INTO meta VALUES ('schema_version', 1)")
        self.db.execute("INSERT INTO meta VALUES ('tool_version', 'tracebuilder')")
        self.db.execute("PRAGMA user_version=1")
        import json
        self.db.execute("INSERT INTO process (pid, ppid, host, exe, argv, start_unix_ns, start_ns, end_ns, finalized,"
                        " events_written, events_lost, stack_depth) VALUES (?,?,?,?,?,?,?,NULL,0,0,0,?)",
                        (pid, ppid, host, exe, json.dumps(list(argv)), 1_700_000_000_000_000_000, start_ns,
                         stack_depth))
        for d in devices:
            self.db.execute("INSERT INTO devices VALUES (?, ?, ?, ?, ?)",
                            (d[0], d[1], d[2], "GPU-%08d-0000-0000-0000-000000000000" % d[0], 13000))
        for k, v in (env or {}).items():
            self.db.execute("INSERT INTO env VALUES (?, ?)", (k, v))
        self.db.execute("INSERT INTO threads VALUES (?, 'train')", (pid,))
        self.pid = pid
        self.start_ns = start_ns
        self.step_ns = step_ns
        self.now = 0  # ns since start of the last event
        self.seq = 0
        self.next_addr = 0x7f0000000000
        self.next_handle = 1
        self.modules = {}
        self.frames = {}
        self.stacks = {}
        self.closed = False

    # ---- stacks -------------------------------------------------------------------------------------
    def module(self, path):
        if path not in self.modules:
            mid = len(self.modules) + 1
            base = 0x500000000000 + mid * 0x10000000
            self.db.execute("INSERT INTO modules VALUES (?, ?, ?, ?, ?)", (mid, path, "%040x" % mid, base, 0x1000000))
            self.modules[path] = (mid, base)
        return self.modules[path]

    def stack(self, frames, module="/opt/app/lib/libapp.so"):
        """frames: innermost first; each a function name (raw, may be mangled; None for unknown) or a
        (function, module_path) tuple. Returns the stack_id (one per distinct list)."""
        norm = []
        for f in frames:
            fn, mod = (f if isinstance(f, tuple) else (f, module))
            norm.append((fn, mod))
        key = tuple(norm)
        if key in self.stacks:
            return self.stacks[key]
        sid = len(self.stacks) + 1
        for depth, (fn, mod) in enumerate(norm):
            fkey = (fn, mod, depth if fn is None else 0)
            if fkey not in self.frames:
                fid = len(self.frames) + 1
                mid, base = self.module(mod) if mod else (None, 0)
                # module-relative offsets stable across runs, as in real runs of one binary
                ip = base + (0x1000 + 0x10 * depth if fn is None else 0x2000 + 0x10 * (zlib.crc32(fn.encode()) % 4096))
                self.db.execute("INSERT INTO frames VALUES (?, ?, ?, ?, ?)", (fid, ip, mid, fn, 0x10 if fn else None))
                self.frames[fkey] = fid
            self.db.execute("INSERT INTO stacks VALUES (?, ?, ?)", (sid, depth, self.frames[fkey]))
        self.stacks[key] = sid
        return sid

    # ---- events -------------------------------------------------------------------------------------
    def event(self, api, address=None, size=None, result=0, stack=None, device=0, at=None, handle=None,
              stream=None, aux=None, free_bytes=None, total_bytes=None, tid=None, op=None, kind=None,
              duration_ns=1000):
        i, api_op, api_kind = self.apis[api]
        self.seq += 1
        self.now = at if at is not None else self.now + self.step_ns
        self.db.execute(
            "INSERT INTO events (seq, ts_ns, tid, api, op, kind, device, context, address, size, stream, handle, aux,"
            " result, duration_ns, stack_id, free_bytes, total_bytes) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (self.seq, self.start_ns + self.now, tid or self.pid, i, op if op is not None else api_op,
             kind if kind is not None else api_kind, device, 0x5000 if device is not None else None,
             address, size, stream, handle, aux, result, duration_ns, stack, free_bytes, total_bytes))
        return self.seq

    def _addr(self, size):
        a = self.next_addr
        self.next_addr += (size + 0xfffff) & ~0xfffff or 0x100000
        return a

    def alloc(self, size, api="cuMemAlloc_v2", stack=None, device=0, at=None, address=None, **kw):
        address = address if address is not None else self._addr(size)
        self.event(api, address=address, size=size, stack=stack, device=device, at=at, **kw)
        return address

    def free(self, address, api="cuMemFree_v2", stack=None, device=0, at=None, result=0, **kw):
        return self.event(api, address=address, stack=stack, device=device, at=at, result=result, **kw)

    def fail(self, size, api="cuMemAlloc_v2", result=OOM, free_bytes=None, total_bytes=24 * GiB, stack=None,
             device=0, at=None, **kw):
        return self.event(api, size=size, result=result, stack=stack, device=device, at=at,
                          free_bytes=free_bytes, total_bytes=total_bytes, **kw)

    def alloc_async(self, size, stream=0x77, **kw):
        return self.alloc(size, api="cuMemAllocAsync", stream=stream, **kw)

    def free_async(self, address, stream=0x77, **kw):
        return self.free(address, api="cuMemFreeAsync", stream=stream, **kw)

    def alloc_host(self, size, **kw):
        return self.alloc(size, api="cuMemAllocHost_v2", **kw)

    def free_host(self, address, **kw):
        return self.free(address, api="cuMemFreeHost", **kw)

    def alloc_managed(self, size, **kw):
        return self.alloc(size, api="cuMemAllocManaged", **kw)

    def reserve(self, size, **kw):
        return self.alloc(size, api="cuMemAddressReserve", **kw)

    def unreserve(self, address, size, **kw):
        return self.event("cuMemAddressFree", address=address, size=size, **kw)

    def create(self, size, stack=None, device=0, at=None, **kw):
        h = self.next_handle
        self.next_handle += 1
        self.event("cuMemCreate", size=size, handle=h, stack=stack, device=device, at=at, **kw)
        return h

    def release(self, handle, **kw):
        return self.event("cuMemRelease", handle=handle, **kw)

    def map(self, address, size, handle, **kw):
        return self.event("cuMemMap", address=address, size=size, handle=handle, aux=0, **kw)

    def unmap(self, address, size, **kw):
        return self.event("cuMemUnmap", address=address, size=size, **kw)

    # ---- end ----------------------------------------------------------------------------------------
    def close(self, finalized=True, end_after_ns=None, events_lost=0):
        """Commits; finalized=True does what cmt_db_finalize does (indexes, end_ns, finalized = 1)."""
        end = self.start_ns + self.now + (end_after_ns if end_after_ns is not None else self.step_ns)
        self.db.execute("UPDATE process SET events_written = ?, events_lost = ?", (self.seq, events_lost))
        if finalized:
            with open(INDEXES_SQL) as f:
                self.db.executescript(f.read())
            self.db.execute("UPDATE process SET end_ns = ?, finalized = 1", (end,))
        self.db.commit()
        self.db.close()
        self.closed = True
        return self.path
