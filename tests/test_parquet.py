"""`cumemtrace export --parquet`: a 64-rank job (synthetic traces from tests/tracebuilder.py, sizes chosen so
every rank's peak and top stacks differ) exported, then queried with the queries schema/README.md gives, as
written there, in DuckDB and in Spark (local mode); each answer must equal `cumemtrace report --json`'s,
exact integers. Also: row counts equal the traces', integer columns are int64, the schema version is in the
files' metadata, part files split at --part-rows, a rank from RANK (or -1 without one), a re-export
replaces our files only, exported allocations are the `allocations` view's rows exactly, text that is not
UTF-8 is exported with U+FFFD, and bad inputs (missing file, non-trace, OUT a regular file, OUT holding
someone else's files, text in an integer column) are refused with one line with nothing touched.

pyarrow, DuckDB and pyspark come from the pinned venv of scripts/py-env: $CMT_ANALYSIS_PYTHON (scripts/test
sets it), else that venv's default place. Without it the tests that need it skip, saying so; the refusals
of bad input need only the build. The Spark test also needs Java (17+); it skips without it, and in the
sanitizer suites (about 30 s of JVM for SQL that does not change with the build).
"""
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cmtlib import CUMEMTRACE, ROOT, SANITIZER_PRELOAD, TraceTest, run  # noqa: E402
from tracebuilder import MiB, TraceBuilder  # noqa: E402

DEFAULT_VENV_PY = os.path.expanduser("~/.cache/cumemtrace/venv-analysis-1/bin/python")
README = os.path.join(ROOT, "schema", "README.md")
NRANKS = 64


def _analysis_python():
    py = os.environ.get("CMT_ANALYSIS_PYTHON") or (DEFAULT_VENV_PY if os.path.exists(DEFAULT_VENV_PY) else "")
    if not py:
        return None, "no analysis venv: run scripts/py-env (scripts/test passes it in CMT_ANALYSIS_PYTHON)"
    p = subprocess.run([py, "-c", "import pyarrow.parquet, duckdb"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        return None, "%s cannot import pyarrow and duckdb: %s" % (py, p.stderr.strip().splitlines()[-1:])
    return py, None


PY, SKIP = _analysis_python()


def readme_sql():
    """The SQL blocks of schema/README.md's Parquet section, by the name in their marker comment."""
    text = open(README).read()
    blocks = dict(re.findall(r"<!-- parquet-sql: (\S+) -->\s*```sql\n(.*?)```", text, re.S))
    for name in ("duckdb-setup", "spark-setup", "peak", "top-stacks"):
        assert name in blocks, "schema/README.md lacks the %s query" % name
    return blocks


def build_rank(path, rank, with_rank_env=True, finalized=True):
    """One rank's trace. Every rank: weights (a stack of its own size), a few iterations of activations
    (allocated and freed), stream-ordered and VMM memory, and memory that does not count as device memory
    (pinned host, managed, a VA reservation and its mapping), one failure. Sizes are odd byte counts that
    depend on the rank; rank 17 holds an extra 3 GiB at its peak (the imbalance). Ranks 0, 4, 8, ... reach
    their peak a second time, later, with an allocation from `late_tie`: the peak is the first moment."""
    env = {"RANK": str(rank), "LOCAL_RANK": str(rank % 8), "WORLD_SIZE": str(NRANKS)} if with_rank_env else {}
    t = TraceBuilder(path, pid=20000 + rank, host="node%02d" % (rank // 8), env=env)
    w = t.stack(["init_weights", "build_model", "main"])
    act = t.stack(["forward_layer", "forward", "train_step", "main"])
    tmp = t.stack(["matmul_workspace", "forward_layer", "forward", "train_step", "main"])
    grad = t.stack(["backward_layer", "backward", "train_step", "main"])
    opt = t.stack(["adam_state", "optimizer_step", "train_step", "main"])
    other = t.stack(["pin_batch", "loader", "main"])
    tie = t.stack(["late_tie", "main"])
    dev = {}  # address or handle -> size: device memory, to know the peak here

    def alloc(size, stack, how=t.alloc):
        a = how(size, stack=stack)
        dev[a] = size
        return a

    peak = 0
    for i in range(3):
        alloc(64 * MiB + 4099 * (rank + 1) + i, w)
    state = alloc(8 * MiB + 513 * rank, opt, t.create)  # physical VMM memory, kept
    host = t.alloc_host(32 * MiB, stack=other)         # pinned host: not device memory
    t.alloc_managed(16 * MiB, stack=other)             # managed: not device memory
    va = t.reserve(1 << 30, stack=opt)                  # address space, not memory
    t.map(va, 8 * MiB, state, stack=opt)
    state2 = t.create(4 * MiB, stack=opt)
    t.map(va + 8 * MiB, 4 * MiB, state2, stack=opt)
    t.unmap(va + 8 * MiB, 4 * MiB)                   # unmapped at its own address
    t.map(va + 8 * MiB, 4 * MiB, state2, stack=opt)
    t.map(va + 12 * MiB, 4 * MiB, state2, stack=opt)
    t.unmap(va + 8 * MiB, 8 * MiB)                   # one unmap ending two mappings: the second by its range
    t.release(state2)
    state3 = t.create(2 * MiB, stack=opt)            # a second reference: releases pair last in, first out
    t.event("cuMemRetainAllocationHandle", handle=state3)
    t.release(state3)                                # ends the retain
    t.release(state3)                                # ends the create: the memory goes
    for it in range(3):
        acts = [alloc(3 * MiB + 1001 * rank + 7 * it + j, act) for j in range(2 + it % 2)]
        ws = alloc(5 * MiB + 77 * rank, tmp, t.alloc_async)
        peak = max(peak, sum(dev.values()))
        t.free_async(ws)
        del dev[ws]
        if rank == 17 and it == 1:
            big = alloc(3 << 30, grad)
            peak = max(peak, sum(dev.values()))
            t.free(big)
            del dev[big]
        grads = [alloc(2 * MiB + 333 * rank + j, grad) for j in range(2)]
        peak = max(peak, sum(dev.values()))
        for a in list(reversed(acts)) + grads:
            t.free(a)
            del dev[a]
    t.fail(80 << 30, stack=act)
    t.free_host(host)
    if rank % 4 == 0:
        extra = t.alloc(peak - sum(dev.values()), stack=tie)
        t.free(extra)
    t.close(finalized=finalized)


def query_duckdb(py, out, sql, queries):
    """Runs the named README queries in DuckDB; {name: rows as lists}."""
    prog = r"""
import duckdb, json, sys
out, setup, queries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
c = duckdb.connect()
for stmt in setup.replace("'OUT/", "'" + out + "/").split(";"):
    if stmt.strip():
        c.execute(stmt)
res = {name: [list(r) for r in c.execute(q).fetchall()] for name, q in queries.items()}
res["types"] = {t: [(r[0], r[1]) for r in c.execute("DESCRIBE " + t).fetchall()] for t in ("allocations", "stacks")}
for t in ("events", "allocations", "stacks", "frames", "processes"):
    res["count_" + t] = c.execute("SELECT rank, count(*) FROM read_parquet('%s/%s/*/*.parquet', hive_partitioning = true)"
                                  " GROUP BY rank ORDER BY rank" % (out, t)).fetchall()
res["allocs"] = c.execute("SELECT * EXCLUDE (host) FROM read_parquet('%s/allocations/*/*.parquet', hive_partitioning = true)"
                          % out).fetchall()
res["alloc_cols"] = [d[0] for d in c.description]
print(json.dumps(res))
"""
    p = run([py, "-c", prog, out, sql["duckdb-setup"], json.dumps(queries)], env=dict(os.environ), timeout=300)
    return json.loads(p.stdout)


class ParquetRefusalTest(TraceTest):
    """Bad input refused with one line, nothing touched (no pyarrow needed: refused before it is used)."""

    def setUp(self):
        super().setUp()
        self.trace = os.path.join(self.tmp, "good.db")
        build_rank(self.trace, 0)

    def refused(self, args, contains):
        p = run([CUMEMTRACE, "export"] + args, env=dict(os.environ), check=False)
        self.assertNotEqual(p.returncode, 0, p.stdout + p.stderr)
        lines = p.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertTrue(lines[0].startswith("cumemtrace: "), lines[0])
        self.assertIn(contains, lines[0])
        self.assertEqual(p.stdout, "")
        return lines[0]

    def test_missing_trace(self):
        out = os.path.join(self.tmp, "out")
        self.refused(["--parquet", out, os.path.join(self.tmp, "nope.db")], "nope.db")
        self.assertFalse(os.path.exists(out))

    def test_not_a_trace(self):
        bad = os.path.join(self.tmp, "notes.db")
        with open(bad, "w") as f:
            f.write("hello, not SQLite\n")
        out = os.path.join(self.tmp, "out")
        self.refused(["--parquet", out, self.trace, bad], "notes.db")
        self.assertFalse(os.path.exists(out))

    def test_out_is_a_file(self):
        out = os.path.join(self.tmp, "out.parquet")
        with open(out, "w") as f:
            f.write("mine\n")
        self.refused(["--parquet", out, self.trace], "not a directory")
        self.assertEqual(open(out).read(), "mine\n")

    def test_out_holds_user_files(self):
        out = os.path.join(self.tmp, "results")
        os.makedirs(os.path.join(out, "allocations"))
        with open(os.path.join(out, "notes.txt"), "w") as f:
            f.write("mine\n")
        before = sorted(os.walk(out))
        self.refused(["--parquet", out, self.trace], "not written by cumemtrace export")
        self.assertEqual(sorted(os.walk(out)), before)
        self.assertEqual(open(os.path.join(out, "notes.txt")).read(), "mine\n")

    def test_bad_options(self):
        self.refused(["--parquet", os.path.join(self.tmp, "o"), "--part-rows", "0", self.trace], "--part-rows")
        p = run([CUMEMTRACE, "export", self.trace], env=dict(os.environ), check=False)
        self.assertEqual(p.returncode, 2)  # no --parquet: the usage
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "o")))


@unittest.skipIf(SKIP, SKIP or "")
class ParquetJobTest(unittest.TestCase):
    """One 64-rank job, exported once; the tests read the export."""

    @classmethod
    def setUpClass(cls):
        import tempfile
        cls._tmp = tempfile.TemporaryDirectory(prefix="cmt-parquet-")
        cls.tmp = cls._tmp.name
        cls.job = os.path.join(cls.tmp, "job")
        os.mkdir(cls.job)
        for r in range(NRANKS):
            build_rank(os.path.join(cls.job, "train.%d.db" % (20000 + r)), r)
        with open(os.path.join(cls.job, "broken.db"), "w") as f:  # unusable: skipped with one warning
            f.write("not a trace\n")
        cls.env = dict(os.environ, CUMEMTRACE_PYTHON=PY)
        cls.out = os.path.join(cls.tmp, "out")
        cls.export = run([CUMEMTRACE, "export", "--parquet", cls.out, cls.job], env=cls.env, timeout=300)
        cls.report = json.loads(run([CUMEMTRACE, "report", "--json", cls.job], env=cls.env).stdout)
        cls.sql = readme_sql()
        cls.duck = query_duckdb(PY, cls.out, cls.sql, {"peak": cls.sql["peak"], "top": cls.sql["top-stacks"]})

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def expected_peaks(self):
        """report DIR's per-trace peaks: {rank: (pid, host, peak_bytes, peak_seq)}."""
        out = {}
        for t in self.report["traces"]:
            rank = t["pid"] - 20000
            out[rank] = (t["pid"], t["host"], t["peak_bytes"], t["peak_seq"])
        return out

    def expected_top(self):
        """report TRACE's top_at_peak for every trace: {rank: sorted [(bytes, count, frames)]}."""
        if getattr(ParquetJobTest, "_top", None):
            return ParquetJobTest._top
        out = ParquetJobTest._top = {}
        for t in self.report["traces"]:
            rep = json.loads(run([CUMEMTRACE, "report", "--json", "--top", "10", t["path"]], env=self.env).stdout)
            out[t["pid"] - 20000] = sorted((g["bytes"], g["count"], tuple(g["stack"])) for g in rep["top_at_peak"])
        return out

    @staticmethod
    def top_of_rows(rows):
        """Rows (rank, pid, host, n, bytes, allocations, stack_id, depth, function, module), one per frame,
        into {rank: sorted [(bytes, count, frames)]}."""
        stacks = {}
        for rank, pid, host, n, nbytes, count, sid, depth, fn, mod in rows:
            stacks.setdefault((rank, n), [nbytes, count, []])[2].append((depth, fn))
        out = {}
        for (rank, n), (nbytes, count, frames) in stacks.items():
            out.setdefault(rank, []).append((nbytes, count, tuple(f for d, f in sorted(frames))))
        return {r: sorted(v) for r, v in out.items()}

    def test_export_said_what_it_did(self):
        self.assertIn("exported 64 traces (64 ranks)", self.export.stdout)
        warn = [l for l in self.export.stderr.splitlines() if "broken.db" in l]
        self.assertEqual(len(warn), 1, self.export.stderr)
        self.assertIn("skipped 1 unusable file", warn[0])
        marker = json.load(open(os.path.join(self.out, "_cumemtrace_export.json")))
        self.assertEqual(sorted(t["rank"] for t in marker["traces"]), list(range(NRANKS)))
        for table in ("allocations", "events", "stacks", "frames", "processes"):
            self.assertEqual(sorted(os.listdir(os.path.join(self.out, table))),
                             sorted("rank=%d" % r for r in range(NRANKS)))

    def test_peaks_equal_report(self):
        want = self.expected_peaks()
        got = {r[0]: tuple(r[1:]) for r in self.duck["peak"]}
        self.assertEqual(len(got), NRANKS)
        self.assertEqual(got, want)
        # the imbalance is there: rank 17 is first (largest) and 3 GiB above the next
        self.assertEqual(self.duck["peak"][0][0], 17)
        self.assertGreater(self.duck["peak"][0][3] - self.duck["peak"][1][3], 2 << 30)

    def test_top_stacks_equal_report(self):
        want = self.expected_top()
        got = self.top_of_rows(self.duck["top"])
        self.assertEqual(sorted(got), list(range(NRANKS)))
        for rank in range(NRANKS):
            self.assertEqual(got[rank], want[rank], "rank %d" % rank)
            self.assertGreaterEqual(len(got[rank]), 3, "rank %d" % rank)
        # the tie: ranks 0, 4, 8... reach their peak twice; the first moment is the one counted
        for rank in range(0, NRANKS, 4):
            self.assertNotIn("late_tie", [f[0] for _, _, f in got[rank]])

    def test_counts_and_types(self):
        for t in self.report["traces"]:
            db = sqlite3.connect(t["path"])
            rank = t["pid"] - 20000
            for table, sql in (("events", "SELECT count(*) FROM events"),
                               ("allocations", "SELECT count(*) FROM allocations"),
                               ("stacks", "SELECT count(*) FROM stack_frames"),
                               ("frames", "SELECT count(*) FROM frames")):
                n = db.execute(sql).fetchone()[0]
                self.assertIn([rank, n], self.duck["count_" + table], "%s of rank %d" % (table, rank))
            self.assertEqual(db.execute("SELECT count(*) FROM events").fetchone()[0], t["events"])
            db.close()
        self.assertEqual(self.duck["count_processes"], [[r, 1] for r in range(NRANKS)])
        types = dict(self.duck["types"]["allocations"])
        for col in ("seq", "address", "size", "alloc_ns", "free_ns", "stack_id", "free_seq", "pid"):
            self.assertEqual(types[col], "BIGINT", col)
        self.assertEqual(types["kind"], "VARCHAR")
        prog = ("import pyarrow.parquet as pq, sys; f = pq.ParquetFile(sys.argv[1]);"
                "m = f.schema_arrow.metadata; print(m[b'cumemtrace.schema_version'].decode(),"
                " m[b'cumemtrace.rank'].decode(), m[b'cumemtrace.table'].decode(), f.schema_arrow.field('size').type)")
        p = run([PY, "-c", prog, os.path.join(self.out, "events", "rank=5", "part-0.parquet")], env=self.env)
        self.assertEqual(p.stdout.split(), ["1", "5", "events", "int64"])

    def test_allocations_equal_the_view(self):
        cols = self.duck["alloc_cols"]
        self.assertEqual(cols[:15], ["seq", "address", "size", "kind", "api", "alloc_ns", "free_ns", "stack_id",
                                     "device", "tid", "stream", "handle", "aux", "free_seq", "free_api"])
        got = {}
        for row in self.duck["allocs"]:
            got.setdefault(row[cols.index("rank")], []).append(tuple(row[:15]))
        for t in self.report["traces"]:
            db = sqlite3.connect(t["path"])
            want = db.execute("SELECT %s FROM allocations" % ", ".join(cols[:15])).fetchall()
            db.close()
            rank = t["pid"] - 20000
            self.assertEqual(sorted(got[rank], key=repr), sorted(want, key=repr), "rank %d" % rank)
        # the mappings: one unmapped at its address, one by a range starting below it; one live
        creates = [r for r in got[5] if r[4] in ("cuMemCreate", "cuMemRetainAllocationHandle") and r[2] == 2 * MiB
                   or r[4] == "cuMemRetainAllocationHandle"]
        self.assertEqual([(r[4], r[13] - r[0]) for r in sorted(creates)],
                         [("cuMemCreate", 3), ("cuMemRetainAllocationHandle", 1)])
        maps = [r for r in got[5] if r[3] == "vmm_mapping"]
        self.assertEqual(sorted(r[14] for r in maps if r[14]), ["cuMemUnmap"] * 3)
        self.assertEqual(sum(1 for r in maps if r[13] is None), 1)

    def test_parts_rank_and_reexport(self):
        out = os.path.join(self.tmp, "parts")
        one = os.path.join(self.job, "train.20003.db")
        norank = os.path.join(self.tmp, "solo.db")
        build_rank(norank, 99, with_rank_env=False, finalized=False)  # no indexes: pairing must not need them
        run([CUMEMTRACE, "export", "--parquet", out, "--part-rows", "7", one, norank], env=self.env)
        nevents = sqlite3.connect(one).execute("SELECT count(*) FROM events").fetchone()[0]
        parts = sorted(os.listdir(os.path.join(out, "events", "rank=3")))
        self.assertEqual(len(parts), -(-nevents // 7))
        self.assertEqual(sorted(os.listdir(os.path.join(out, "events"))), ["rank=-1", "rank=3"])
        prog = ("import duckdb, sys; print(duckdb.sql(\"SELECT rank, pid, count(*), count(DISTINCT seq), max(seq)"
                " FROM read_parquet('%s/events/*/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY rank\")"
                ".fetchall())" % out)
        got = run([PY, "-c", prog], env=self.env).stdout.strip()
        nsolo = sqlite3.connect(norank).execute("SELECT count(*) FROM events").fetchone()[0]
        self.assertEqual(got, str([(-1, 20099, nsolo, nsolo, nsolo), (3, 20003, nevents, nevents, nevents)]))
        # a second export replaces ours; a file of someone else's among ours is refused, nothing touched
        run([CUMEMTRACE, "export", "--parquet", out, one], env=self.env)
        self.assertEqual(sorted(os.listdir(os.path.join(out, "events"))), ["rank=3"])
        self.assertEqual(len(os.listdir(os.path.join(out, "events", "rank=3"))), 1)
        with open(os.path.join(out, "events", "rank=3", "notes.txt"), "w") as f:
            f.write("mine\n")
        before = sorted((r, sorted(d), sorted(f)) for r, d, f in os.walk(out))
        p = run([CUMEMTRACE, "export", "--parquet", out, one, norank], env=self.env, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("notes.txt: not written by cumemtrace export", p.stderr)
        self.assertEqual(sorted((r, sorted(d), sorted(f)) for r, d, f in os.walk(out)), before)

    def test_text_that_is_not_utf8_and_damage(self):
        odd = os.path.join(self.tmp, "odd.db")
        build_rank(odd, 7)
        db = sqlite3.connect(odd)
        db.execute("UPDATE frames SET function = CAST(x'666fff6f' AS TEXT) WHERE function = 'main'")
        db.commit()
        out = os.path.join(self.tmp, "odd-out")
        run([CUMEMTRACE, "export", "--parquet", out, odd], env=self.env)
        prog = ("import pyarrow.parquet as pq, sys; t = pq.read_table(sys.argv[1]);"
                "print(*[v.encode('unicode_escape').decode() for v in set(t.column('function').to_pylist())"
                " if v and chr(0xfffd) in v])")
        p = run([PY, "-c", prog, os.path.join(out, "frames", "rank=7", "part-0.parquet")], env=self.env)
        self.assertEqual(p.stdout.strip(), "fo\\ufffdo")
        # text where an integer belongs (report refuses it too): one line, and no half-written export
        db.execute("UPDATE events SET size = 'big' WHERE seq = 3")
        db.commit()
        db.close()
        out2 = os.path.join(self.tmp, "damaged-out")
        p = run([CUMEMTRACE, "export", "--parquet", out2, odd], env=self.env, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("odd.db: corrupt trace: events.size holds 'big'", p.stderr)
        self.assertFalse(os.path.exists(out2))

    def test_spark_equals_report(self):
        if SANITIZER_PRELOAD:
            self.skipTest("Spark runs in the plain suite only (sanitizer build: the SQL it checks is the same)")
        if not shutil.which("java"):
            self.skipTest("no java on PATH (Spark needs Java 17+; scripts/bootstrap installs it)")
        chk = subprocess.run([PY, "-c", "import pyspark"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if chk.returncode != 0:
            self.skipTest("pyspark is not importable in %s" % PY)
        prog = r"""
import json, sys
from pyspark.sql import SparkSession
out, setup, queries = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
s = (SparkSession.builder.master("local[2]").appName("cumemtrace-test")
     .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
     .config("spark.driver.memory", "1g").getOrCreate())
s.sparkContext.setLogLevel("ERROR")
for stmt in setup.replace("'OUT/", "'" + out + "/").split(";"):
    if stmt.strip():
        s.sql(stmt)
res = {name: [list(r) for r in s.sql(q).collect()] for name, q in queries.items()}
s.stop()
print("RESULT " + json.dumps(res))
"""
        p = run([PY, "-c", prog, self.out, self.sql["spark-setup"],
                 json.dumps({"peak": self.sql["peak"], "top": self.sql["top-stacks"]})], env=self.env, timeout=300)
        line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
        self.assertEqual(len(line), 1, p.stdout + p.stderr)
        spark = json.loads(line[0][len("RESULT "):])
        self.assertEqual({r[0]: tuple(r[1:]) for r in spark["peak"]}, self.expected_peaks())
        self.assertEqual(spark["peak"], self.duck["peak"])  # same order too
        self.assertEqual(self.top_of_rows(spark["top"]), self.expected_top())


if __name__ == "__main__":
    unittest.main()
