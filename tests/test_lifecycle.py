"""The profiled program's life: threads, fork, exec, exit paths, abort, SIGKILL, and our own failures. In
every case the program behaves as without us, and the trace keeps what the standard promises."""
import glob
import os
import signal
import subprocess

from cmtlib import MiB, TraceTest, client, run, sim_env, wait_traces


class Lifecycle(TraceTest):
    def sizes(self, db):
        return [r[0] for r in self.query(db, "SELECT size FROM events WHERE op = 1 AND result = 0 ORDER BY seq")]

    def files(self):
        return sorted(glob.glob(self.path("*.db")))

    def test_return_from_main(self):
        p, db = self.trace([client("lifecycle_client"), "return"], check=False)
        self.assertEqual(p.returncode, 7)
        self.assertEqual(self.sizes(db), [MiB, 2 * MiB, 3 * MiB])
        self.assertEqual(self.scalar(db, "SELECT finalized FROM process"), 1)
        self.assertFalse(os.path.exists(db + "-wal"), "a finalized trace is one self-contained file")

    def test_exit_from_nested_function(self):
        p, db = self.trace([client("lifecycle_client"), "exit"], check=False)
        self.assertEqual(p.returncode, 5)
        self.assertEqual(self.sizes(db), [MiB, 2 * MiB, 3 * MiB])
        self.assertEqual(self.scalar(db, "SELECT finalized FROM process"), 1)

    def test_abort(self):
        p, db = self.trace([client("lifecycle_client"), "abort"], check=False)
        self.assertEqual(p.returncode, -signal.SIGABRT)
        self.assertEqual(self.sizes(db), [MiB, 2 * MiB, 3 * MiB])
        self.assertEqual(self.scalar(db, "SELECT finalized FROM process"), 1)

    def test_uncaught_cxx_exception(self):
        if not os.path.exists(client("throw_client")):
            self.skipTest("no C++ compiler was available to build throw_client")
        p, db = self.trace([client("throw_client")], check=False)
        self.assertEqual(p.returncode, -signal.SIGABRT)
        self.assertIn("uncaught on purpose", p.stderr)
        self.assertEqual(self.sizes(db), [MiB, 2 * MiB])
        self.assertEqual(self.scalar(db, "SELECT finalized FROM process"), 1)

    def test_sigkill_loses_nothing(self):
        p, db = self.trace([client("lifecycle_client"), "kill"], check=False)
        self.assertEqual(p.returncode, -signal.SIGKILL)
        # The writer is another process: it drains what the program queued and finishes the file after it.
        self.assertEqual(self.sizes(db), [MiB, 2 * MiB, 3 * MiB])
        self.assertEqual(self.query(db, "SELECT finalized, events_lost FROM process"), [(1, 0)])
        self.assertEqual(self.scalar(db, "SELECT value FROM meta WHERE key = 'end_reason'"), "killed")

    def test_fork_child_writes_its_own_file(self):
        p, db = self.trace([client("lifecycle_client"), "fork"])
        pids = [int(l.split()[1]) for l in p.stdout.splitlines() if l.startswith("pid")]
        self.assertEqual(len(pids), 2)
        files = self.files()
        self.assertEqual(len(files), 2, files)
        child = [f for f in files if f != db][0]
        self.assertTrue(child.endswith("trace.lifecycle_client-%d.db" % pids[1]), child)
        self.assertEqual(self.sizes(db), [MiB, 2 * MiB, 3 * MiB, 5 * MiB])
        self.assertEqual(self.sizes(child), [4 * MiB])
        self.assertEqual(self.query(child, "SELECT pid, ppid, finalized FROM process"), [(pids[1], pids[0], 1)])
        self.assertEqual(self.scalar(child, "SELECT min(seq) FROM events"), 1)

    def test_exec_flushes_first(self):
        p, db = self.trace([client("lifecycle_client"), "exec"])
        files = self.files()
        self.assertEqual(len(files), 2, files)
        self.assertEqual(self.sizes(db), [MiB, 2 * MiB, 3 * MiB])
        self.assertEqual(self.scalar(db, "SELECT finalized FROM process"), 1)
        after = [f for f in files if f != db][0]
        self.assertEqual(self.sizes(after), [6 * MiB])

    def test_failed_exec_goes_on_recording(self):
        p, db = self.trace([client("lifecycle_client"), "exec-fail"])
        # the image never changed: one trace, before and after the failed exec, ended by exit
        self.assertEqual(self.files(), [db])
        self.assertEqual(self.sizes(db), [MiB, 2 * MiB, 3 * MiB, 7 * MiB])
        self.assertEqual(self.scalar(db, "SELECT value FROM meta WHERE key = 'end_reason'"), "exit")

    def test_many_threads(self):
        p, db = self.trace([client("threads_client"), "8", "500"], extra={"CUMEMTRACE_QUEUE": "64"})
        _, allocs, frees, nbytes = p.stdout.split()
        lost = self.scalar(db, "SELECT events_lost FROM process")
        if lost and os.environ.get("CMT_SLOW_SUITE"):
            # Under TSan (10-20x slower) on a loaded 2-core machine the writer can fall 2 s behind a
            # 64-slot queue; the bounded wait then drops events, and every one must be counted.
            self.assertEqual(self.scalar(db, "SELECT count(*) FROM events") + lost, int(allocs) + int(frees))
            return
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM events WHERE op = 1 AND result = 0"), int(allocs))
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM events WHERE op = 2 AND result = 0"), int(frees))
        self.assertEqual(self.scalar(db, "SELECT sum(size) FROM events WHERE op = 1"), int(nbytes))
        self.assertEqual(self.scalar(db, "SELECT count(DISTINCT tid) FROM events"), 8)
        self.assertEqual(self.query(db, "SELECT min(seq), max(seq), count(*) FROM events"), [(1, 16000, 16000)])
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM allocations WHERE free_ns IS NULL"), 0)
        self.assertEqual(self.scalar(db, "SELECT events_lost FROM process"), 0)
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM threads"), 8)

    def test_unwritable_output_is_reported_once_and_harmless(self):
        argv = [client("direct_client")]
        plain = run(argv, sim_env(preload=False))
        p = run(argv, sim_env(output="/nonexistent/dir/trace.db"), check=False)
        self.assertEqual(p.returncode, plain.returncode)
        self.assertEqual(len(p.stdout), len(plain.stdout))
        lines = p.stderr.splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertTrue(lines[0].startswith("cumemtrace: cannot create"), lines[0])

    def test_disabled_by_environment(self):
        p, db = self.trace([client("direct_client")], extra={"CUMEMTRACE_DISABLE": "1"})
        self.assertFalse(os.path.exists(db))
        self.assertEqual(p.stderr, "")

    def test_directory_output_and_default_names(self):
        outdir = self.path("traces") + "/"
        run([client("lifecycle_client"), "fork"], sim_env(output=outdir))
        wait_traces(outdir)
        names = sorted(os.listdir(outdir))
        self.assertEqual(len(names), 2)
        for n in names:
            self.assertRegex(n, r"^cumemtrace-lifecycle_client-\d+\.db$")

    def test_no_cuda_no_file(self):
        p = run(["/bin/true"], sim_env(output=self.path("t.db")))
        self.assertEqual(self.files(), [])

    def test_stack_depth_is_configurable(self):
        p, db = self.trace([client("direct_client")], extra={"CUMEMTRACE_STACK_DEPTH": "2"})
        self.assertEqual(self.scalar(db, "SELECT max(depth) FROM stacks"), 1)
        self.assertEqual(self.scalar(db, "SELECT stack_depth FROM process"), 2)
        p, db = self.trace([client("direct_client")], name="nostack.db", extra={"CUMEMTRACE_STACK_DEPTH": "0"})
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM events WHERE stack_id IS NOT NULL"), 0)
        self.assertEqual(self.scalar(db, "SELECT count(*) FROM events"), 19)


class Launcher(TraceTest):
    """cumemtrace run: preloads, passes the status through, says where the trace went."""

    def cumemtrace(self, *args, check=False):
        from cmtlib import CUMEMTRACE
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        return subprocess.run([CUMEMTRACE, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=120, cwd=self.tmp)

    def test_run_sim_gpu(self):
        out = self.path("run.db")
        p = self.cumemtrace("run", "-o", out, "--sim-gpu", "8GiB", "--", client("lifecycle_client"), "return")
        self.assertEqual(p.returncode, 7)
        self.assertIn("cumemtrace: trace written to %s" % out, p.stderr)
        self.assertEqual(self.scalar(out, "SELECT total_bytes FROM devices"), 8 << 30)
        self.assertTrue(p.stdout.startswith("pid "), "the program's stdout is untouched")

    def test_run_replaces_old_trace_and_lists_children(self):
        out = self.path("run.db")
        # an old trace of ours at -o is replaced (anything else is refused: test_harmless.Files)
        self.cumemtrace("run", "-o", out, "--sim-gpu", "1GiB", client("direct_client"))
        for f in os.listdir(self.tmp):
            if f != "run.db":
                os.unlink(self.path(f))
        p = self.cumemtrace("run", "-o", out, "--sim-gpu", "1GiB", client("lifecycle_client"), "fork")
        self.assertEqual(p.returncode, 0)
        self.assertEqual(p.stderr.count("trace written to"), 2, p.stderr)
        self.assertEqual(self.scalar(out, "SELECT count(*) FROM events"), 4)

    def test_run_passes_death_by_signal(self):
        p = self.cumemtrace("run", "-o", self.path("k.db"), "--sim-gpu", "1GiB", "--", client("lifecycle_client"), "kill")
        self.assertEqual(p.returncode, -signal.SIGKILL)

    def test_run_missing_command(self):
        p = self.cumemtrace("run", "--sim-gpu", "1GiB", "--", self.path("no-such-program"))
        self.assertEqual(p.returncode, 127)
