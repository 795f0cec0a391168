"""Capture without harm (issue 8): what the program can see of us, and what survives every way it can end.

The program here is Python driving the simulated driver through ctypes, as a hostile or careless program
would: it inspects its signal handlers, descriptors, threads and children, closes every descriptor it did
not open, and dies by every signal. Each test runs the same script untraced where a comparison is the
point, and asserts exact event counts in the trace.
"""
import json
import os
import signal
import stat
import sys

import cmtlib
from cmtlib import MiB, TraceTest, run, sim_env, wait_traces

# A sanitizer runtime in the program (the ASan suite preloads it, the TSan suite's library links it) has
# its own SEGV handler and _exit interceptor: those endings are its, not the program's.
SANITIZED = bool(cmtlib.SANITIZER_PRELOAD or os.environ.get("CMT_SLOW_SUITE"))

PRELUDE = r'''
import ctypes, json, os, signal, sys
cuda = ctypes.CDLL("libcuda.so.1")
dev, ctx = ctypes.c_int(), ctypes.c_void_p()
assert cuda.cuInit(0) == 0 and cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0 and cuda.cuCtxSetCurrent(ctx) == 0
def alloc(n):
    p = ctypes.c_uint64()
    assert cuda.cuMemAlloc_v2(ctypes.byref(p), ctypes.c_size_t(n)) == 0
    return p.value
def free(p):
    assert cuda.cuMemFree_v2(ctypes.c_uint64(p)) == 0
'''

LOOK = PRELUDE + r'''
ptrs = [alloc((i + 1) << 20) for i in range(3)]
handlers = {s.name: str(signal.getsignal(s)) for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP)}
old = signal.signal(signal.SIGTERM, lambda *a: None)   # save and restore: must not raise
signal.signal(signal.SIGTERM, old)
fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
kinds = {}
import stat as st
for f in fds:
    try:
        m = os.fstat(f).st_mode
        kinds[f] = "fifo" if st.S_ISFIFO(m) else "other"
        kinds[f] += ":cloexec" if not os.get_inheritable(f) else ""
    except OSError:
        pass
threads = len(os.listdir("/proc/self/task"))
try:
    os.wait()
    children = "some"
except ChildProcessError:
    children = "none"
free(ptrs[0])
print(json.dumps({"handlers": handlers, "fds": kinds, "threads": threads, "children": children}))
'''


class Invisible(TraceTest):
    def look(self, traced, extra=None):
        script = self.path("look.py")
        with open(script, "w") as f:
            f.write(LOOK)
        env = sim_env(output=self.path("t.db"), extra=extra) if traced else sim_env(preload=False)
        if not traced and cmtlib.SANITIZER_PRELOAD:  # the same runtime, without us
            env["LD_PRELOAD"] = cmtlib.SANITIZER_PRELOAD
        p = run([sys.executable, script], env)
        wait_traces(self.tmp)
        return json.loads(p.stdout), p

    def test_signal_handlers_threads_and_children_are_the_programs(self):
        plain, _ = self.look(False)
        traced, p = self.look(True)
        self.assertEqual(traced["handlers"], plain["handlers"])
        self.assertEqual(traced["threads"], plain["threads"])
        self.assertEqual(traced["children"], "none")  # the writer is not the program's child
        self.assertEqual(p.stderr, "")
        self.assertEqual(self.query(self.path("t.db"), "SELECT count(*), sum(op = 1) FROM events"), [(4, 3)])

    def test_one_descriptor_of_ours_a_close_on_exec_pipe(self):
        """Ours: the write end of the writer's liveness pipe, close-on-exec, never read or written by us.
        With stacks unwound by libunwind (the default) also libunwind's own pipe pair, close-on-exec,
        dropped with libunwind the moment the program closes either number (test_closefrom_then_own_files);
        with libgcc's unwinder, or no stacks, nothing else."""
        plain, _ = self.look(False)
        for extra_env, want in (({"CUMEMTRACE_STACK_DEPTH": "0"}, 1), ({"CUMEMTRACE_UNWINDER": "libgcc"}, 1),
                                (None, 3)):
            traced, _ = self.look(True, extra=extra_env)
            extra = {k: v for k, v in traced["fds"].items() if k not in plain["fds"]}
            self.assertEqual(list(extra.values()), ["fifo:cloexec"] * want, (extra_env, traced["fds"]))
            wait_traces(self.tmp)
            os.unlink(self.path("t.db"))

    def test_exit_is_not_delayed_by_the_trace(self):
        """Exit only marks the shared header and wakes the writer: from the moment the program starts to exit
        to the moment its parent sees it gone, tracing 200,000 events (all still queued or being written)
        adds at most 10 ms. Best of three each way, on one clock (CLOCK_MONOTONIC) in both processes."""
        import subprocess
        import time
        script = self.path("exit.py")
        with open(script, "w") as f:
            f.write(PRELUDE + r'''
import time
for i in range(100000):
    free(alloc(4096))
print(time.monotonic_ns(), flush=True)
''')
        def delay(traced):
            env = sim_env(output=self.path("t.db")) if traced else sim_env(preload=False)
            if not traced and cmtlib.SANITIZER_PRELOAD:
                env["LD_PRELOAD"] = cmtlib.SANITIZER_PRELOAD
            p = subprocess.Popen([sys.executable, script], env=env, stdout=subprocess.PIPE, text=True)
            exiting = int(p.stdout.readline())
            p.wait(timeout=300)
            gone = time.monotonic_ns()
            self.assertEqual(p.returncode, 0)
            if traced:
                wait_traces(self.tmp)
                self.assertEqual(self.query(self.path("t.db"), "SELECT count(*), sum(op = 1) FROM events"),
                                 [(200000, 100000)])
                os.unlink(self.path("t.db"))
            return gone - exiting
        if SANITIZED:
            self.skipTest("timing: the bound is the uninstrumented build's (a sanitizer's own exit work and the "
                          "writer's instrumented drain share two cores here)")
        plain = min(delay(False) for _ in range(3))
        traced = min(delay(True) for _ in range(3))
        self.assertLess(traced - plain, 10_000_000, (traced, plain))

    def test_trace_file_is_private(self):
        self.look(True)
        for name in os.listdir(self.tmp):
            if name.endswith(".db"):
                self.assertEqual(stat.S_IMODE(os.stat(self.path(name)).st_mode), 0o600, name)

    def test_closefrom_then_own_files(self):
        """The program closes every descriptor it did not open and reuses the numbers for its own files:
        they hold exactly what it wrote, and the trace has every event, before and after."""
        script = self.path("closer.py")
        data = self.path("data")
        os.mkdir(data)
        with open(script, "w") as f:
            f.write(PRELUDE + r'''
a = alloc(1 << 20)
os.closerange(3, 65536)
files = [open(os.path.join(sys.argv[1], "f%d" % i), "w") for i in range(8)]
for i, fh in enumerate(files):
    fh.write("mine %d\n" % i * 1000)
    fh.flush()
b = alloc(2 << 20)
free(a)
for i, fh in enumerate(files):
    fh.write("end %d\n" % i)
    fh.close()
pid = os.fork()
if pid == 0:
    c = alloc(3 << 20)
    os._exit(0)
os.waitpid(pid, 0)
''')
        p = run([sys.executable, script, data], sim_env(output=self.path("t.db")))
        wait_traces(self.tmp)
        for i in range(8):
            with open(os.path.join(data, "f%d" % i)) as f:
                self.assertEqual(f.read(), "mine %d\n" % i * 1000 + "end %d\n" % i)
        db = self.path("t.db")
        self.assertEqual(self.query(db, "SELECT size FROM events WHERE op = 1 ORDER BY seq"), [(MiB,), (2 * MiB,)])
        self.assertEqual(self.query(db, "SELECT finalized, events_lost FROM process"), [(1, 0)])
        self.assertEqual(self.scalar(db, "SELECT value FROM meta WHERE key = 'end_reason'"), "exit")
        if os.environ.get("CMT_TEST_STACK_DEPTH") != "0":
            # after the program took libunwind's numbers, stacks still come (from libgcc's unwinder)
            self.assertEqual(self.scalar(db, "SELECT count(*) FROM events WHERE stack_id IS NULL"), 0)
        child = [n for n in os.listdir(self.tmp) if n.endswith(".db") and n != "t.db"]
        self.assertEqual(len(child), 1, child)
        self.assertEqual(self.query(self.path(child[0]), "SELECT size FROM events WHERE op = 1"), [(3 * MiB,)])


DIE = PRELUDE + r'''
how = sys.argv[1]
ptrs = [alloc((i + 1) << 12) for i in range(int(sys.argv[2]))]
free(ptrs[0])
sys.stdout.flush()
if how == "handled":        # the program's own handler, then death by the signal's default
    def h(sig, frame):
        alloc(7 << 20)
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    signal.signal(signal.SIGTERM, h)
    os.kill(os.getpid(), signal.SIGTERM)
elif how == "abort":
    os.abort()
elif how == "_exit":
    os._exit(3)
elif how == "segv":
    ctypes.string_at(0)
else:
    sig = getattr(signal, how)
    if sig != signal.SIGKILL and signal.getsignal(sig) == signal.SIG_IGN:
        signal.signal(sig, signal.SIG_DFL)  # started in the background (nohup, "&"): ignored from the start
    os.kill(os.getpid(), sig)
'''


class Lossless(TraceTest):
    def die(self, how, n=50):
        for f in os.listdir(self.tmp):  # a subtest that failed left its files: never read them as this one's
            os.unlink(self.path(f))
        script = self.path("die.py")
        with open(script, "w") as f:
            f.write(DIE)
        p = run([sys.executable, script, how, str(n)],
                sim_env(output=self.path("t.db")), check=False)
        wait_traces(self.tmp)
        return p, self.path("t.db")

    def check_all(self, db, n, extra_allocs=(), reason="killed"):
        sizes = [(i + 1) * 4096 for i in range(n)] + list(extra_allocs)
        self.assertEqual([r[0] for r in self.query(db, "SELECT size FROM events WHERE op = 1 ORDER BY seq")], sizes)
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM events WHERE op = 2"), 1)
        self.assertEqual(self.query(db, "SELECT finalized, events_lost FROM process"), [(1, 0)])
        self.assertEqual(self.scalar(db, "SELECT value FROM meta WHERE key = 'end_reason'"), reason)

    def test_every_fatal_signal(self):
        for sig in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGKILL", "SIGBUS", "SIGSEGV", "SIGUSR1"):
            with self.subTest(sig=sig):
                p, db = self.die(sig)
                # (SIGINT: Python's KeyboardInterrupt, which ends by re-raising SIGINT with its default)
                if SANITIZED and sig in ("SIGSEGV", "SIGBUS"):
                    self.assertNotEqual(p.returncode, 0)  # the sanitizer's handler reports and exits its way
                else:
                    self.assertEqual(p.returncode, -getattr(signal, sig), p.stderr[-500:])
                self.check_all(db, 50)
                for f in os.listdir(self.tmp):
                    os.unlink(self.path(f))

    def test_abort_segv_and__exit(self):
        segv = -signal.SIGABRT if cmtlib.SANITIZER_PRELOAD else -signal.SIGSEGV
        for how, want, reason in (("abort", -signal.SIGABRT, "killed"), ("segv", segv, "killed"),
                                  ("_exit", 3, "exit")):
            with self.subTest(how=how):
                p, db = self.die(how)
                if SANITIZED and how != "abort":
                    # a sanitizer's own SEGV handler reports and exits its way (abort, or status 66), and its
                    # _exit interceptor may end the process before ours is reached
                    self.assertNotEqual(p.returncode, 0)
                    reason = self.scalar(db, "SELECT value FROM meta WHERE key = 'end_reason'")
                else:
                    self.assertEqual(p.returncode, want, p.stderr[-500:])
                self.check_all(db, 50, reason=reason)
                for f in os.listdir(self.tmp):
                    os.unlink(self.path(f))

    def test_calls_from_a_signal_handler_are_recorded(self):
        p, db = self.die("handled")
        self.assertEqual(p.returncode, -signal.SIGTERM)
        self.check_all(db, 50, extra_allocs=[7 * MiB])

    def test_a_large_trace_is_finished_after_a_kill(self):
        p, db = self.die("SIGKILL", n=3000)
        self.assertEqual(p.returncode, -signal.SIGKILL)
        self.check_all(db, 3000)


class Files(TraceTest):
    def run_cmt(self, *args):
        return run([cmtlib.CUMEMTRACE, "run"] + list(args), sim_env(preload=False), check=False)

    def test_o_never_overwrites_what_is_not_a_trace(self):
        src = self.path("train.py")
        with open(src, "w") as f:
            f.write("print('precious')\n")
        p = self.run_cmt("-o", src, "--", cmtlib.client("direct_client"))
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stderr.splitlines(), ["cumemtrace run: -o %s exists and is not a cumemtrace trace; "
                                                 "not overwriting it" % src])
        with open(src) as f:
            self.assertEqual(f.read(), "print('precious')\n")
        p = self.run_cmt("-o", "/dev/null", "--", cmtlib.client("direct_client"))
        self.assertEqual(p.returncode, 2)
        self.assertIn("is not a regular file", p.stderr)

    def test_o_replaces_an_old_trace(self):
        out = self.path("t.db")
        for _ in range(2):
            p = self.run_cmt("-o", out, "--", cmtlib.client("direct_client"))
            self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([n for n in os.listdir(self.tmp) if n.endswith(".db")], ["t.db"])
        self.assertEqual(self.scalar(out, "SELECT count(*) FROM events WHERE op = 1 AND result = 0"), 9)

    def test_bad_depth_is_refused(self):
        for bad in ("-1", "x", "249", "12abc"):
            p = self.run_cmt("--depth", bad, "--", cmtlib.client("direct_client"))
            self.assertEqual(p.returncode, 2)
            self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
            self.assertIn("--depth %s" % bad, p.stderr)

    def test_run_lists_exactly_the_traces_of_its_run(self):
        """run learns its traces from its writers (a manifest they append to), not from the directory: a
        trace left there a moment earlier by another run, or by a program outside any run, is not listed."""
        job = self.path("job") + "/"
        self.assertEqual(self.run_cmt("-o", job, "--", cmtlib.client("direct_client")).returncode, 0)
        p = run([cmtlib.client("direct_client")], sim_env(output=job), check=False)  # outside any run
        wait_traces(job)
        p = self.run_cmt("-o", job, "--", cmtlib.client("lifecycle_client"), "fork")
        self.assertEqual(p.returncode, 0, p.stderr)
        listed = [l.split(" to ", 1)[1] for l in p.stderr.splitlines() if "trace written to" in l]
        self.assertEqual(len(listed), 2, p.stderr)  # the parent's and its child's, nothing else
        self.assertEqual(len(os.listdir(job)), 4)
        pids = sorted(self.scalar(f, "SELECT pid FROM process") for f in listed)
        ppids = {self.scalar(f, "SELECT ppid FROM process") for f in listed}
        self.assertIn(pids[0], ppids)  # one is the other's child

    def test_paths_up_to_path_max(self):
        """SQLite's own limit is 512 bytes: paths longer than that, up to PATH_MAX less room for the
        per-process name, are written and read like any other; one longer is refused in one line."""
        deep = self.tmp
        while len(deep) < 4000:
            deep = os.path.join(deep, "d" * 200)
        os.makedirs(deep)
        direct = self.run_cmt  # the same client each time: 19 events, peak 92,374,693 bytes
        for length in (600, 4031):
            with self.subTest(length=length):
                parent = deep[:length - 40].rstrip("/")
                while not os.path.isdir(parent):
                    parent = os.path.dirname(parent)
                out = os.path.join(parent, "t" * (length - len(parent) - 4) + ".db")
                self.assertEqual(len(out), length)
                p = direct("-o", out, "--", cmtlib.client("direct_client"))
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertNotIn("cannot", p.stderr)
                r = run([cmtlib.CUMEMTRACE, "report", "--json", out], os.environ, check=False)
                self.assertEqual(r.returncode, 0, r.stderr)
                t = json.loads(r.stdout)["traces"][0]
                self.assertEqual((t["events"], t["events_lost"], t["finalized"], t["peak_bytes"]),
                                 (19, 0, True, 92374693))
                self.assertEqual(stat.S_IMODE(os.stat(out).st_mode), 0o600)
                os.unlink(out)
        # a directory named by CUMEMTRACE_OUTPUT under plain LD_PRELOAD: the writer names the file in it
        p = run([cmtlib.client("direct_client")], sim_env(output=deep + "/"), check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        wait_traces(deep)
        names = [n for n in os.listdir(deep) if n.endswith(".db")]
        self.assertEqual(len(names), 1, os.listdir(deep))
        self.assertEqual(json.loads(run([cmtlib.CUMEMTRACE, "report", "--json", os.path.join(deep, names[0])],
                                        os.environ).stdout)["traces"][0]["events"], 19)
        too_long = os.path.join(deep, "x" * 60 + ".db")
        p = direct("-o", too_long, "--", cmtlib.client("direct_client"))
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stderr.splitlines(), ["cumemtrace run: -o: the path is too long"])

    def test_output_to_a_device_creates_nothing_there(self):
        before = set(os.listdir("/dev"))
        p = run([cmtlib.client("direct_client")], sim_env(output="/dev/null"), check=False)
        self.assertEqual(p.returncode, 0)
        self.assertEqual(set(os.listdir("/dev")), before)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertIn("is not a regular file or a directory", p.stderr)


class Scenarios(TraceTest):
    def py(self, body, *args, **kw):
        script = self.path("s.py")
        with open(script, "w") as f:
            f.write(PRELUDE + body)
        p = run([sys.executable, script] + [str(a) for a in args], sim_env(output=self.path("t.db")), **kw)
        wait_traces(self.tmp)
        return p

    def traces(self):
        return sorted(self.path(n) for n in os.listdir(self.tmp) if n.endswith(".db"))

    def test_64_threads_20000_pairs_each(self):
        slow = bool(os.environ.get("CMT_SLOW_SUITE"))
        rounds = 500 if slow else 10000  # each round is two alloc/free pairs; TSan runs 20x slower
        p, db = self.trace([cmtlib.client("threads_client"), "64", str(rounds)], timeout=600)
        n = 64 * rounds * 4
        lost = self.scalar(db, "SELECT events_lost FROM process")
        self.assertEqual(lost, 0)
        self.assertEqual(self.query(db, "SELECT min(seq), max(seq), count(*) FROM events"), [(1, n, n)])
        self.assertEqual(self.scalar(db, "SELECT count(DISTINCT tid) FROM events"), 64)
        self.assertEqual(self.scalar(db, "SELECT sum(size) FROM events WHERE op = 1"), int(p.stdout.split()[3]))

    def test_fifty_forked_children_each_with_its_trace(self):
        self.py(r'''
kids = []
for k in range(50):
    pid = os.fork()
    if pid == 0:
        a = alloc((k + 1) << 12)
        free(a)
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
alloc(1 << 20)
''')
        files = self.traces()
        self.assertEqual(len(files), 51)
        sizes = sorted(self.scalar(f, "SELECT sum(size) FROM events WHERE op = 1") for f in files)
        self.assertEqual(sizes, sorted([(k + 1) << 12 for k in range(50)] + [MiB]))
        for f in files:
            self.assertEqual(self.query(f, "SELECT finalized, events_lost FROM process"), [(1, 0)])

    def test_posix_spawn_child_traces_itself(self):
        self.py(r'''
a = alloc(1 << 20)
pid = os.posix_spawn(sys.argv[1], [sys.argv[1]], os.environ)
os.waitpid(pid, 0)
''', cmtlib.client("direct_client"))
        files = self.traces()
        self.assertEqual(len(files), 2, files)
        other = [f for f in files if not f.endswith("/t.db")][0]
        self.assertEqual(self.scalar(self.path("t.db"), "SELECT count(*) FROM events"), 1)
        self.assertEqual(self.scalar(other, "SELECT count(*) FROM events WHERE op = 1 AND result = 0"), 9)

    def test_double_forking_daemon_outlives_its_parent(self):
        self.py(r'''
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        a = alloc(3 << 20)           # before the parent goes: its trace exists when the test looks
        os.write(w, b"x")
        import time
        time.sleep(0.5)
        b = alloc(5 << 20)           # after: the daemon's writer is its own, not the parent's
        free(a)
        os._exit(0)
    os._exit(0)
os.read(r, 1)
''')
        files = self.traces()
        self.assertEqual(len(files), 1, files)  # the parent made no CUDA call of its own
        import time
        deadline = time.monotonic() + 30
        while self.scalar(files[0], "SELECT count(*) FROM events") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        wait_traces(files[0])
        self.assertEqual(self.query(files[0], "SELECT size FROM events WHERE op = 1 ORDER BY seq"),
                         [(3 * MiB,), (5 * MiB,)])
        self.assertEqual(self.query(files[0], "SELECT finalized, events_lost FROM process"), [(1, 0)])

    def test_deep_recursion_and_a_64k_thread_stack(self):
        self.py(r'''
import threading
def deep(n):  # each level through C (sorted's key call): Python 3.11 does not nest C frames for Python calls
    return sorted([0], key=lambda _: deep(n - 1)) if n else alloc(1 << 20)
deep(300)
threading.stack_size(64 * 1024)
t = threading.Thread(target=lambda: alloc(2 << 20))
t.start(); t.join()
''')
        db = self.path("t.db")
        self.assertEqual(self.query(db, "SELECT size FROM events WHERE op = 1 ORDER BY seq"), [(MiB,), (2 * MiB,)])
        if os.environ.get("CMT_TEST_STACK_DEPTH") == "0":
            return  # this suite records no stacks
        # the deep stack is cut at the configured depth (128 frames by default)
        depth = self.scalar(db, "SELECT max(n) FROM (SELECT count(*) AS n FROM stacks GROUP BY stack_id)")
        self.assertEqual(depth, 128)

    def test_bad_environment_values_are_refused(self):
        argv = [cmtlib.client("direct_client")]
        plain = run(argv, sim_env(preload=False))
        for name, value in (("CUMEMTRACE_STACK_DEPTH", "abc"), ("CUMEMTRACE_STACK_DEPTH", "-3"),
                            ("CUMEMTRACE_STACK_DEPTH", "1000"), ("CUMEMTRACE_QUEUE", "0"), ("CUMEMTRACE_QUEUE", "12x")):
            p = run(argv, sim_env(output=self.path("t.db"), extra={name: value}), check=False)
            self.assertEqual((p.returncode, len(p.stdout.splitlines())), (plain.returncode, len(plain.stdout.splitlines())))
            lines = p.stderr.splitlines()
            self.assertEqual(len(lines), 1, p.stderr)
            self.assertIn(name + " must be", lines[0])
            self.assertFalse(os.path.exists(self.path("t.db")))

    def test_report_says_how_the_program_ended(self):
        script = self.path("die.py")
        with open(script, "w") as f:
            f.write(DIE)
        run([sys.executable, script, "SIGTERM", "3"], sim_env(output=self.path("t.db")), check=False)
        wait_traces(self.tmp)
        rep = json.loads(run([cmtlib.CUMEMTRACE, "report", "--json", self.path("t.db")], os.environ).stdout)
        self.assertEqual(rep["traces"][0]["end_reason"], "killed")
        text = run([cmtlib.CUMEMTRACE, "report", self.path("t.db")], os.environ).stdout
        self.assertIn("ended     killed by a signal", text)


class AnalyzerInput(TraceTest):
    def make(self, name):
        p, db = self.trace([cmtlib.client("direct_client")], name=name)
        return db

    def test_output_naming_an_input_is_refused(self):
        db = self.make("t.db")
        with open(db, "rb") as f:
            before = f.read()
        for verb in (["timeline", db, "-o", db], ["report", "--html", db, db], ["flame", "-o", db, db]):
            p = run([cmtlib.CUMEMTRACE] + verb, os.environ, check=False)
            self.assertNotEqual(p.returncode, 0, verb)
            self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
            if verb[0] != "timeline":  # (timeline refuses .db earlier: not a format it writes)
                self.assertEqual(p.stderr.splitlines(), ["cumemtrace: %s is a cumemtrace trace; not overwriting "
                                                         "it with this output" % db], verb)
            with open(db, "rb") as f:
                self.assertEqual(f.read(), before)

    def test_directory_with_bad_files_reports_the_good_ones(self):
        job = self.path("job")
        os.mkdir(job)
        self.trace([cmtlib.client("direct_client")], name="job/a.db")
        with open(os.path.join(job, "junk.db"), "w") as f:
            f.write("not a trace at all, but long enough to have a header of sorts\n" * 10)
        open(os.path.join(job, "empty.db"), "w").close()
        p = run([cmtlib.CUMEMTRACE, "report", "--json", job], os.environ, check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(json.loads(p.stdout)["traces"]), 1)
        warn = [l for l in p.stderr.splitlines() if "skipped" in l]
        self.assertEqual(len(warn), 1, p.stderr)
        self.assertIn("junk.db", warn[0])

    def test_wrong_type_in_a_column_is_corruption(self):
        import sqlite3
        for col, value in (("size", "'12 MiB'"), ("ts_ns", "1.5"), ("address", "x'00ff'"), ("op", "'alloc'")):
            db = self.make("w.db")
            cmtlib.to_row_form(db)  # a value of another type can only be in a row
            con = sqlite3.connect(db)
            con.execute("UPDATE events SET %s = %s WHERE seq = 2" % (col, value))
            con.commit()
            con.close()
            p = run([cmtlib.CUMEMTRACE, "report", "--json", db], os.environ, check=False)
            self.assertNotEqual(p.returncode, 0, col)
            self.assertEqual(p.stdout, "")
            lines = p.stderr.splitlines()
            self.assertEqual(len(lines), 1, p.stderr)
            self.assertIn("corrupt trace: event 2 has", lines[0])
            self.assertIn("column %s" % col, lines[0])
            for f in os.listdir(self.tmp):
                os.unlink(self.path(f))

    def test_any_address_pairs_exactly(self):
        """Addresses are whatever the file holds: -1 (all bits set, the analyzer's hash maps' empty mark,
        found by the fuzzer to free a record that was never there), 0 and the largest ones pair like any."""
        from tracebuilder import TraceBuilder
        t = TraceBuilder(self.path("a.db"))
        for i, a in enumerate((-1, 0, (1 << 63) - 1, 0x7f0000000000)):
            t.alloc((i + 1) * MiB, address=a)
        t.free(-1)
        t.free(-1)  # a second free of it pairs with nothing
        t.free((1 << 63) - 1)
        db = t.close()
        r = json.loads(run([cmtlib.CUMEMTRACE, "report", "--json", db], os.environ).stdout)
        self.assertEqual(r["peak_bytes"], 10 * MiB)
        self.assertEqual((r["leaked_bytes"], r["leaked_count"]), (2 * MiB + 4 * MiB, 2))
        self.assertEqual(r["traces"][0]["unmatched_releases"], 1)

    def test_wrong_type_in_a_stack_or_allocator_table_is_corruption(self):
        """Beyond events: the frames a stack is read from, and the allocator tables of an imported history."""
        import sqlite3
        from test_torch import SchemaTest
        cases = [("frames", "function", "x'00ff'", "stack"), ("frames", "ip", "'0x1234'", "stack")]
        cases += [("alloc_trace", "block_size", "'1 KiB'", "allocator entry"),
                  ("alloc_trace", "ts_ns", "2.5", "allocator state of device"),
                  ("alloc_frames", "line", "'three'", "allocator stack"),
                  ("alloc_state", "reserved_bytes", "x'01'", "allocator state of device")]
        for table, col, value, what in cases:
            with self.subTest(table=table, col=col):
                db = self.make("w.db")
                if table.startswith("alloc_"):
                    p = run([cmtlib.CUMEMTRACE, "import-torch", SchemaTest.tiny_snapshot(self), "-o", db],
                            os.environ, check=False)
                    self.assertEqual(p.returncode, 0, p.stderr)
                con = sqlite3.connect(db)
                self.assertGreater(con.execute("UPDATE %s SET %s = %s" % (table, col, value)).rowcount, 0)
                con.commit()
                con.close()
                p = run([cmtlib.CUMEMTRACE, "report", "--json", db], os.environ, check=False)
                self.assertNotEqual(p.returncode, 0)
                self.assertEqual(p.stdout, "")
                lines = p.stderr.splitlines()
                self.assertEqual(len(lines), 1, p.stderr)
                self.assertIn("corrupt trace: %s " % what, lines[0])
                self.assertIn("in column %s" % col, lines[0])
                for f in os.listdir(self.tmp):
                    os.unlink(self.path(f))

    def test_bad_sim_gpu_is_refused(self):
        for bad in ("1MiB", "0", "-5", "8x", "9xH100", "abc", "12Q", "300GiB", "H100x2"):
            p = run([cmtlib.CUMEMTRACE, "run", "--sim-gpu", bad, "--", "/bin/true"], sim_env(preload=False), check=False)
            self.assertEqual(p.returncode, 2, bad)
            self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
            self.assertIn("--sim-gpu %s:" % bad, p.stderr)
