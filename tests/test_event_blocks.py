"""Events in blocks (schema version 5) as the writer writes them and the C analyzer reads them.

tests/test_blocks.py covers the encoding and the Python readers (schema/cmt_blocks.py); this file covers
what the writer leaves on disk (its form, its size, what a killed writer leaves), what cumemtrace makes of
it (the same answers as from rows, one line for every damaged block) and the sqlite3 shell's extension.
"""
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import unittest

import cmtlib
from cmtlib import CUMEMTRACE, TraceTest, client, run, sim_env, wait_trace

EXT = os.path.join(cmtlib.BUILD, "schema", "libcumemtrace_sqlite")
EVENT_VIEWS = ("handle_refs", "handle_pairs", "pairs", "allocations", "failures", "mem_region_owners")


def cmt(*args, check=True):
    return run([CUMEMTRACE] + list(args), os.environ, check=check)


def shell(db, *sql, check=True):
    """The sqlite3 shell with our extension loaded: each statement's rows as lines."""
    p = subprocess.run(["sqlite3", "-cmd", ".load " + EXT, db] + list(sql), capture_output=True, text=True,
                       timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("sqlite3 exited %d: %s" % (p.returncode, p.stderr))
    return p


class WriterBlocks(TraceTest):
    @classmethod
    def setUpClass(cls):
        cls.shell = shutil.which("sqlite3")

    def raw(self, db, sql):
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def test_the_writer_writes_blocks_of_at_most_32_bytes_an_event(self):
        """100,000 events from two threads: no events table and no view over it in the file, every event in
        exactly one block, and at most 32 bytes an event on disk (issue 8)."""
        p, db = self.trace([client("threads_client"), "2", "12500"])
        self.assertEqual(p.stdout.split()[:3], ["total", "50000", "50000"])
        names = {n for (n,) in self.raw(db, "SELECT name FROM sqlite_master")}
        self.assertIn("events_blocks", names)
        self.assertNotIn("events", names)
        self.assertFalse(names & set(EVENT_VIEWS), names)
        self.assertEqual(self.raw(db, "PRAGMA user_version"), [(5,)])
        self.assertEqual(self.raw(db, "SELECT sum(nrows), min(first_seq), max(last_seq) FROM events_blocks"),
                         [(100000, 1, 100000)])
        self.assertEqual(self.raw(db, "SELECT events_written, events_lost, finalized FROM process"), [(100000, 0, 1)])
        self.assertEqual(self.raw(db, "SELECT max(nrows) FROM events_blocks"), [(65536,)])
        # the earlier copies of the block that was filling went back at finalize
        self.assertEqual(self.raw(db, "PRAGMA freelist_count"), [(0,)])
        size = os.path.getsize(db)
        self.assertLessEqual(size, 32 * 100000, "%d bytes: %.1f an event" % (size, size / 100000))
        # the decoded rows: every seq once, and the sizes the client asked for
        self.assertEqual(self.query(db, "SELECT count(*), count(DISTINCT seq), sum(op = 1) FROM events"),
                         [(100000, 100000, 50000)])
        self.assertEqual(self.scalar(db, "SELECT sum(size) FROM events WHERE op = 1"), int(p.stdout.split()[3]))

    def test_the_analyzer_answers_the_same_from_blocks_and_from_rows(self):
        """A real trace of 8 threads (blocks with rows out of seq order, overlapping neighbours) and the
        same trace rewritten as rows: report --json, the text report, timeline CSV and the flame graph's
        input are byte for byte the same."""
        p, blocks = self.trace([client("threads_client"), "8", "9000"])  # 288,000 events: 5 blocks
        rows = self.path("rows.db")
        shutil.copyfile(blocks, rows)
        cmtlib.to_row_form(rows)
        self.assertEqual(self.raw(rows, "SELECT count(*) FROM events_blocks"), [(0,)])
        self.assertEqual(self.raw(rows, "SELECT count(*) FROM events"), [(288000,)])
        spread = self.raw(blocks, "SELECT count(*) FROM events_blocks a JOIN events_blocks b"
                                  " ON b.first_seq > a.first_seq AND b.first_seq < a.last_seq")[0][0]
        print("(%d overlapping pairs of blocks)" % spread, end=" ", flush=True)
        self.assertGreater(spread, 0)  # else the merge of overlapping blocks is not tried
        # the events table the analyzer reads (the cmt_events virtual table over the blocks) against the rows:
        # 300 random queries bounding seq every way, both orders, and every value of every row
        q = subprocess.run([os.path.join(cmtlib.BUILD, "tests", "unit", "events_vtab"), blocks, rows, "8", "300"],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(q.returncode, 0, q.stderr[-3000:])
        self.assertTrue(q.stdout.startswith("ok 301 queries"), q.stdout)
        for args in (["report", "--json"], ["report"], ["flame", "--at-peak"]):
            a = cmt(*args, blocks).stdout.replace(blocks, "X")
            b = cmt(*args, rows).stdout.replace(rows, "X")
            self.assertEqual(a, b, args)
        for name, db in (("a.csv", blocks), ("b.csv", rows)):
            cmt("timeline", "-o", self.path(name), db)
        with open(self.path("a.csv")) as a, open(self.path("b.csv")) as b:
            self.assertEqual(a.read(), b.read())
        r = json.loads(cmt("report", "--json", blocks).stdout)
        self.assertEqual((r["events"], r["churn"]["allocations"], r["churn"]["frees"]), (288000, 144000, 144000))

    def damage(self, sql, expect):
        db = self.path("d.db")
        if os.path.exists(db):
            os.unlink(db)
        shutil.copyfile(self.good, db)
        con = sqlite3.connect(db)
        con.executescript(sql)
        con.commit()
        con.close()
        before = open(db, "rb").read()
        for verb in (["report", "--json"], ["timeline", "-o", self.path("t.svg")], ["flame"]):
            p = cmt(*verb, db, check=False)
            self.assertEqual(p.returncode, 1, (sql, verb, p.stderr))
            self.assertEqual(p.stdout, "")
            lines = p.stderr.splitlines()
            self.assertEqual(len(lines), 1, p.stderr)
            self.assertIn("%s: corrupt trace: %s" % (db, expect), lines[0])
        self.assertEqual(open(db, "rb").read(), before)  # never written

    def test_every_damaged_block_is_one_line(self):
        p, self.good = self.trace([client("threads_client"), "2", "9000"])  # 72,000 events: 2 blocks
        self.assertEqual(self.raw(self.good, "SELECT first_seq, nrows FROM events_blocks ORDER BY 1")[0], (1, 65536))
        last = "UPDATE events_blocks SET data = %s WHERE first_seq = (SELECT max(first_seq) FROM events_blocks);"
        second = self.raw(self.good, "SELECT max(first_seq) FROM events_blocks")[0][0]
        at = "events block at seq %d: " % second
        self.damage(last % "substr(data, 1, length(data) - 1)", at + "event block cut short")
        self.damage(last % "CAST(data || x'00' AS BLOB)", at + "event block with bytes after its last column")
        self.damage(last % "CAST(x'02' || substr(data, 2) AS BLOB)", at + "event block of a newer format")
        self.damage(last % "CAST(x'0100' || substr(data, 3) AS BLOB)", at + "event block with an impossible row count")
        self.damage(last % "'text'", at + "a column of the wrong type")
        self.damage("UPDATE events_blocks SET nrows = nrows - 1 WHERE first_seq = 1;",
                    "events block at seq 1: its rows disagree with its header")
        self.damage("UPDATE events_blocks SET first_seq = 0 WHERE first_seq = 1;",
                    "events block at seq 0: its rows disagree with its header")
        # ts_ns NULL in every row (the column's flag 1): the schema's NOT NULL, so a damaged file, not zeros
        rows = self.block_rows(second)
        self.damage_with_block(second, [r[:1] + (None,) + r[2:] for r in rows],
                               at + "NOT NULL constraint failed: events.ts_ns")
        # ten events of the second block again, in a block of their own: a seq in two blocks
        dup = sorted(rows)[100:110]
        self.damage_with_block(None, dup, "an event's seq twice in events_blocks")
        self.assertEqual(json.loads(cmt("report", "--json", self.good).stdout)["events"], 72000)

    def block_rows(self, first_seq):
        import cmt_blocks
        con = sqlite3.connect(self.good)
        data = con.execute("SELECT data FROM events_blocks WHERE first_seq = ?", (first_seq,)).fetchone()[0]
        con.close()
        return cmt_blocks.decode(data)

    def damage_with_block(self, replace, rows, expect):
        """The block at first_seq `replace` (or a new block, for None) made of rows."""
        import cmt_blocks
        seqs = [r[0] for r in rows]
        data = cmt_blocks.encode(rows)
        if replace is None:
            sql = "INSERT INTO events_blocks VALUES (%d, %d, %d, x'%s');" % (min(seqs), max(seqs), len(rows), data.hex())
        else:
            sql = "UPDATE events_blocks SET data = x'%s' WHERE first_seq = %d;" % (data.hex(), replace)
        self.damage(sql, expect)

    def test_the_sqlite_shell_reads_blocks_through_the_extension(self):
        if not self.shell:
            self.skipTest("no sqlite3 shell (scripts/bootstrap installs it)")
        p, db = self.trace([client("threads_client"), "3", "1000"])
        # without it: no events table, said plainly
        self.assertIn("no such table: events", subprocess.run(["sqlite3", db, "SELECT count(*) FROM events"],
                                                              capture_output=True, text=True).stderr)
        out = shell(db, "SELECT count(*), sum(size) FROM events WHERE op = 1",
                    "SELECT count(*), count(free_seq) FROM allocations", "SELECT count(*) FROM failures").stdout
        r = json.loads(cmt("report", "--json", db).stdout)
        self.assertEqual(out.split(), ["6000|%d" % r["churn"]["bytes_allocated"], "6000|6000", "0"])
        # the plan uses the index the writer's row form had
        plan = shell(db, "EXPLAIN QUERY PLAN SELECT * FROM pairs LIMIT 1").stdout
        self.assertIn("events_release_address", plan)
        # a row-form file: the extension leaves it alone
        rows = self.path("rows.db")
        shutil.copyfile(db, rows)
        cmtlib.to_row_form(rows)
        self.assertEqual(shell(rows, "SELECT count(*), sum(size) FROM events WHERE op = 1",
                               "SELECT count(*), count(free_seq) FROM allocations",
                               "SELECT count(*) FROM failures").stdout, out)
        # a damaged block: the shell says why, in the analyzer's words
        con = sqlite3.connect(db)
        con.execute("UPDATE events_blocks SET data = CAST(x'02' || substr(data, 2) AS BLOB)")
        con.commit()
        con.close()
        bad = shell(db, "SELECT 1", check=False)
        self.assertIn("corrupt trace: events block at seq 1: event block of a newer format", bad.stderr)

    def test_an_upgraded_row_file_keeps_its_rows(self):
        """import-torch into a file of version 1 upgrades it to 5 in place: its events stay rows (an empty
        events_blocks is added), and readers take them."""
        from tracebuilder import TraceBuilder
        t = TraceBuilder(self.path("v1.db"))
        for i in range(5):
            t.alloc((i + 1) << 20)
        db = t.close()
        from test_torch import SchemaTest
        p = cmt("import-torch", SchemaTest.tiny_snapshot(self), "-o", db)
        self.assertIn("upgraded from schema version 1 to 5", p.stderr)
        self.assertEqual(self.raw(db, "SELECT count(*) FROM events"), [(5,)])
        self.assertEqual(self.raw(db, "SELECT count(*) FROM events_blocks"), [(0,)])
        self.assertEqual(json.loads(cmt("report", "--json", db).stdout)["events"], 5)

    def test_a_killed_writer_leaves_its_last_commit_readable_and_its_loss_counted(self):
        """The writer itself killed (SIGKILL) while the program runs on to its exit: the file holds what it
        committed (the block being filled as of its last commit), readable, not finalized; the watchdog
        (the writer's parent) takes the queue over at once and counts every event the file lacks: what the
        writer had taken since its last commit and everything after. Written + lost = the events made."""
        out = self.path("k.db")
        rounds = 400000  # 2 threads x 4 events a round: 3.2 M events
        prog = subprocess.Popen([client("threads_client"), "2", str(rounds)], env=sim_env(output=out),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        writer = None
        deadline = time.monotonic() + 30
        while writer is None and time.monotonic() < deadline:
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open("/proc/%s/comm" % pid) as f:
                        if f.read().strip() != "cumemtrace-writ":
                            continue
                    fds = os.listdir("/proc/%s/fd" % pid)
                    if any(os.readlink("/proc/%s/fd/%s" % (pid, fd)) == out for fd in fds):
                        writer = int(pid)
                except OSError:
                    continue
            time.sleep(0.05)
        self.assertIsNotNone(writer, "no writer holds %s" % out)
        time.sleep(0.4)  # a few commits
        self.assertIsNone(prog.poll(), "the program ended before its writer was killed")
        os.kill(writer, signal.SIGKILL)
        stdout, stderr = prog.communicate(timeout=120)
        self.assertEqual(prog.returncode, 0, stderr)
        self.assertEqual(stdout.split()[:3], ["total", str(2 * 2 * rounds), str(2 * 2 * rounds)])
        wait_trace(out)
        written, lost, finalized = self.raw(out, "SELECT events_written, events_lost, finalized FROM process")[0]
        self.assertGreater(written, 0)
        self.assertGreater(lost, 0)
        self.assertEqual(written + lost, 8 * rounds)
        self.assertEqual(finalized, 0)
        self.assertEqual(self.raw(out, "SELECT sum(nrows) FROM events_blocks"), [(written,)])
        self.assertEqual(self.raw(out, "SELECT key, value FROM meta WHERE key IN ('end_reason', 'writer_killed')"
                                       " ORDER BY key"), [("end_reason", "exit"), ("writer_killed", 9)])
        p = cmt("report", "--json", out)
        r = json.loads(p.stdout)
        self.assertEqual((r["events"], r["traces"][0]["finalized"]), (written, False))
        self.assertIn("%d events were lost while tracing" % lost, p.stderr)
        print("(%d written, %d lost)" % (written, lost), end=" ", flush=True)


if __name__ == "__main__":
    unittest.main()
