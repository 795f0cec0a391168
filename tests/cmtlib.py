"""Shared helpers for cumemtrace's tests: where the build is, how to run a program under the interposer on
the simulated driver, and how to read the trace it wrote.

Every test runs against the simulated driver (simgpu/, a libcuda.so.1 of our own); none needs a GPU.
The build directory comes from $CMT_BUILD_DIR (scripts/test sets it), default ./build.
"""
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "schema"))
import cmt_blocks  # noqa: E402  (schema/cmt_blocks.py: the events of block-form traces)
BUILD = os.path.abspath(os.environ.get("CMT_BUILD_DIR", os.path.join(ROOT, "build")))
SHARED = os.path.abspath(os.path.join(ROOT, "..", "shared"))

INTERPOSER = os.path.join(BUILD, "interpose", "libcumemtrace.so")
SIMCUDA_DIR = os.path.join(BUILD, "simgpu")
CLIENTS = os.path.join(BUILD, "tests", "clients")
CUMEMTRACE = os.path.join(BUILD, "analysis", "cumemtrace")

# Sanitizer builds: the sanitizer runtime must come first in LD_PRELOAD (scripts/test sets this).
SANITIZER_PRELOAD = os.environ.get("CMT_SANITIZER_PRELOAD", "")

MiB = 1 << 20
GiB = 1 << 30


def client(name):
    """Path of a compiled test program: tests/clients, then simgpu, then examples."""
    for d in (CLIENTS, SIMCUDA_DIR, os.path.join(BUILD, "examples")):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    return os.path.join(CLIENTS, name)


def sim_env(memory="24GiB", preload=True, output=None, extra=None, base=None):
    """Environment for a child: the simulated driver first on the library path, the interposer preloaded
    (unless preload=False), the trace at `output`."""
    env = dict(os.environ if base is None else base)
    env["LD_LIBRARY_PATH"] = SIMCUDA_DIR + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    env["SIMCUDA_MEMORY"] = memory
    for k in list(env):
        if k.startswith("CUMEMTRACE_") or k.startswith("SIMCUDA_FAIL"):
            del env[k]
    env["SIMCUDA_MEMORY"] = memory
    # The TSan suite records no stacks: libunwind's per-thread cache destructor runs after TSan has
    # already torn down the exiting thread, and crashes inside TSan (scripts/test sets this).
    if os.environ.get("CMT_TEST_STACK_DEPTH"):
        env["CUMEMTRACE_STACK_DEPTH"] = os.environ["CMT_TEST_STACK_DEPTH"]
    preloads = []
    if preload:
        if SANITIZER_PRELOAD:
            preloads.append(SANITIZER_PRELOAD)
        preloads.append(INTERPOSER)
    if preloads:
        env["LD_PRELOAD"] = ":".join(preloads)
    else:
        env.pop("LD_PRELOAD", None)
    if output is not None:
        env["CUMEMTRACE_OUTPUT"] = output
    if extra:
        env.update(extra)
    return env



def torch_env(conf=None, memory=None):
    """Environment for real PyTorch untraced on the simulated GPU: the RTX4090 preset (or a board of
    `memory` bytes), no PYTHONPATH of ours, PYTORCH_CUDA_ALLOC_CONF=conf when given."""
    env = sim_env(preload=False)
    env.pop("PYTHONPATH", None)
    env["SIMCUDA_GPU"] = "RTX4090"
    if memory:
        env.pop("SIMCUDA_GPU")
        env["SIMCUDA_MEMORY"] = memory
    if conf:
        env["PYTORCH_CUDA_ALLOC_CONF"] = conf
    return env

def wait_trace(path, timeout=120):
    """Waits until no cumemtrace-writer holds the trace file (it keeps an flock on it until the file is
    final, which is after the traced program has gone). A file that does not exist is not waited for."""
    import fcntl
    import time
    deadline = time.monotonic() + timeout
    import stat
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError("the trace writer did not finish %s in %d s" % (path, timeout))
                time.sleep(0.01)
    finally:
        os.close(fd)


def wait_traces(where, timeout=120):
    """wait_trace for every *.db under a directory (recursively), or for one file."""
    if os.path.isdir(where):
        for root, _, files in os.walk(where):
            for f in files:
                if f.endswith(".db"):
                    wait_trace(os.path.join(root, f), timeout)
    else:
        wait_trace(where, timeout)


def run(argv, env, timeout=120, check=True, **kw):
    """Runs argv, returns the CompletedProcess (text mode)."""
    p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s exited %d\nstdout:\n%s\nstderr:\n%s" % (argv, p.returncode, p.stdout, p.stderr))
    return p


_VIEW_TEXTS = []
_EVENT_NAMES = re.compile(r"\b(events|%s)\b" % "|".join(cmt_blocks.EVENT_VIEWS), re.I)


def schema_views():
    """The SQL texts of the schema files that hold the views over events (cumemtrace.sql, _v3.sql)."""
    if not _VIEW_TEXTS:
        for name in ("cumemtrace.sql", "cumemtrace_v3.sql"):
            with open(os.path.join(ROOT, "schema", name)) as f:
                _VIEW_TEXTS.append(f.read())
    return _VIEW_TEXTS


def to_row_form(path):
    """Rewrites a block-form trace (the writer's) in place with its events as rows, as a file of schema
    version 4 had them: main.events with its index and the views over it, no blocks. For tests that damage
    rows; a reader takes rows whenever main has an events table."""
    con = sqlite3.connect(path)
    cmt_blocks.copy_events(con, con, "main")
    con.execute("DELETE FROM events_blocks")
    for view in cmt_blocks.event_views(schema_views()):
        con.execute(view.replace("CREATE TEMP VIEW", "CREATE VIEW", 1))
    con.commit()
    con.close()


# Big block-form traces decoded once per test process: (device, inode, size, mtime_ns) -> a row-form copy of
# their events (table events and its index) in a directory of ours, attached by every later reader.
CACHE_EVENTS = 200000  # smaller traces are decoded by each reader, into its TEMP table (milliseconds)
_CACHE = {}
_CACHE_DIR = []


def _cached_events(con, path):
    """The file holding the events of the big block-form trace open in con, made the first time; None for a
    small trace."""
    st = os.stat(path)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _CACHE:
        return _CACHE[key]
    if (con.execute("SELECT coalesce(sum(nrows), 0) FROM events_blocks").fetchone()[0] or 0) < CACHE_EVENTS:
        return None
    if not _CACHE_DIR:
        import atexit
        import shutil
        _CACHE_DIR.append(tempfile.mkdtemp(prefix="cmt-events-cache-"))
        atexit.register(shutil.rmtree, _CACHE_DIR[0], True)
    out = os.path.join(_CACHE_DIR[0], "%d.db" % len(_CACHE))
    dst = sqlite3.connect(out)
    try:
        dst.execute("PRAGMA journal_mode = OFF")
        cmt_blocks.copy_events(con, dst, "main")
        dst.commit()
    finally:
        dst.close()
    _CACHE[key] = out
    return out


def open_trace(path, sql=None):
    """A read-only connection to a trace whose `events` and views over it answer whatever its form: a
    block-form trace (schema version 5) gets them as TEMP objects (cmt_blocks.materialize), unless sql is
    given and names none of them (nothing to decode then). A big one (CACHE_EVENTS) is decoded once per
    test process into a file of ours, attached read-only (schema cmt_events), the views made over it."""
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        if (sql is None or _EVENT_NAMES.search(sql)) and cmt_blocks.is_block_form(con):
            cached = _cached_events(con, path)
            if cached is None:
                cmt_blocks.materialize(con, schema_views())
            else:
                con.execute("ATTACH ? AS cmt_events", ("file:%s?mode=ro" % cached,))
                for view in cmt_blocks.event_views(schema_views()):
                    con.execute(view)
    except BaseException:
        con.close()
        raise
    return con


class TraceTest(unittest.TestCase):
    """A test case with a private temporary directory and helpers to trace a client and query the result."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="cmt-test-")
        self.tmp = self._tmp.name

    def tearDown(self):
        wait_traces(self.tmp)  # a writer still finishing would put files back while they are removed
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def trace(self, argv, name="trace.db", memory="24GiB", extra=None, check=True, timeout=120):
        """Runs argv under the interposer on the simulated driver; returns (CompletedProcess, trace path)."""
        out = self.path(name)
        p = run(argv, sim_env(memory=memory, output=out, extra=extra), check=check, timeout=timeout)
        wait_traces(self.tmp)
        return p, out

    def query(self, db, sql, args=()):
        wait_trace(db)
        con = open_trace(db, sql)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def scalar(self, db, sql, args=()):
        rows = self.query(db, sql, args)
        self.assertEqual(len(rows), 1, sql)
        return rows[0][0]
