"""The events' block form (schema version 5) as Python reads it: schema/cmt_blocks.py's codec against a
block written out by hand from schema/cmt_blocks.h, its refusals of every malformed block (the same
one-line reasons as cmt_blocks.c), materialize() on a block-form copy of a row-form trace (the same events,
allocations and failures as the original), and the three product scripts that read traces
(export --parquet's writer, export-torch's, the torch importer) giving on a block-form copy what they give
on the row-form original, and one line and exit status 1 on a corrupt block.

A block-form copy is made the way a version 5 file is laid out: the events in events_blocks (encoded by
cmt_blocks.encode), no events table, no view over events in main (to_block_form)."""
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import unittest

import cmtlib
from cmtlib import BUILD, ROOT, MiB, TraceTest, cmt_blocks

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tracebuilder import TraceBuilder  # noqa: E402

I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1
N = None
SCHEMA = os.path.join(ROOT, "schema")


def upgrade(path):
    """A tracebuilder trace (schema version 1) with the tables of versions 2 to 4, as every trace since has."""
    con = sqlite3.connect(path)
    for v in ("cumemtrace_v2.sql", "cumemtrace_v3.sql", "cumemtrace_v4.sql"):
        with open(os.path.join(SCHEMA, v)) as f:
            con.executescript(f.read())
    con.execute("PRAGMA user_version = 4")
    con.commit()
    con.close()


def to_block_form(src, dst, per_block=cmt_blocks.MAX_ROWS, disorder=False):
    """A copy of the row-form trace src laid out as a version 5 file: its events in events_blocks, per_block
    a block, the events table and every view over it gone. disorder: as a writer drains events when a thread
    took its seq before another and published after it (cmt_blocks.h): every third pair of neighbours and
    the pair across each block boundary swapped, so blocks hold rows out of order and overlap."""
    shutil.copyfile(src, dst)
    con = sqlite3.connect(dst)
    rows = con.execute("SELECT %s FROM events ORDER BY seq" % ", ".join(cmt_blocks.COLUMNS)).fetchall()
    if disorder:
        for i in sorted(set(range(1, len(rows) - 1, 3)) | set(range(per_block - 1, len(rows) - 1, per_block))):
            rows[i], rows[i + 1] = rows[i + 1], rows[i]
    con.execute("CREATE TABLE events_blocks (first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL,"
                " nrows INTEGER NOT NULL, data BLOB NOT NULL)")
    for i in range(0, len(rows), per_block):
        b = rows[i:i + per_block]
        seqs = [r[0] for r in b]
        con.execute("INSERT INTO events_blocks VALUES (?, ?, ?, ?)", (min(seqs), max(seqs), len(b), cmt_blocks.encode(b)))
    for v in cmt_blocks.EVENT_VIEWS:
        con.execute("DROP VIEW IF EXISTS %s" % v)
    con.execute("DROP TABLE events")
    con.execute("PRAGMA user_version = 5")
    con.execute("UPDATE meta SET value = 5 WHERE key = 'schema_version'")
    con.commit()
    con.execute("VACUUM")
    con.close()
    return dst


def rich_trace(path):
    """A row-form trace (tables of version 4) with every kind of pairing the views do: test_parquet's rank
    (frees, stream-ordered memory, VMM create/map/unmap/retain/release, a failure) plus more NULL patterns."""
    from test_parquet import build_rank
    build_rank(path, 3)
    upgrade(path)
    return path


# A block of two rows written out by hand from cmt_blocks.h (format 1):
HAND_ROWS = [
    # seq ts_ns tid api op kind device context address size    stream handle aux result dur stack free total
    (1, 1000, 7, 1, 1, 1, 0, N, -1, I64_MIN, N, N, 64, 0, 5, N, N, N),
    (2, 900, 7, 2, 2, 1, N, N, I64_MAX, N, 5, N, -64, 2, 5, N, N, N),
]
FF9 = [0xFF] * 9
HAND_BYTES = bytes(
    [0x01, 0x02, 0x12]                      # format 1, 2 rows, 18 columns
    + [0x00, 0x02, 0x02]                    # seq: +1 +1 -> zigzag 2 2
    + [0x00, 0xD0, 0x0F, 0xC7, 0x01]        # ts_ns: +1000 -> 2000 = D0 0F; -100 -> 199 = C7 01
    + [0x00, 0x0E, 0x00]                    # tid: +7 -> 14; +0
    + [0x00, 0x02, 0x02]                    # api: +1 +1
    + [0x00, 0x02, 0x02]                    # op: +1 +1
    + [0x00, 0x02, 0x00]                    # kind: +1 +0
    + [0x02, 0x02, 0x00]                    # device: bitmap 0b10 (row 1 NULL), 0 -> 0
    + [0x01]                                # context: all NULL
    + [0x00, 0x01] + FF9 + [0x01]           # address: -1 -> 1; INT64_MAX - -1 = 2^63 = -2^63 -> 2^64 - 1
    + [0x02, 0x02] + FF9 + [0x01]           # size: bitmap 0b10, INT64_MIN -> 2^64 - 1
    + [0x02, 0x01, 0x0A]                    # stream: bitmap 0b01 (row 0 NULL), 5 -> 10
    + [0x01]                                # handle: all NULL
    + [0x00, 0x80, 0x01, 0xFF, 0x01]        # aux: +64 -> 128 = 80 01; -128 -> 255 = FF 01
    + [0x00, 0x00, 0x04]                    # result: 0, +2 -> 4
    + [0x00, 0x0A, 0x00]                    # duration_ns: +5, +0
    + [0x01, 0x01, 0x01])                   # stack_id, free_bytes, total_bytes: all NULL


def block(*cols):
    """The header of a one-row block, then the given column bytes (for malformed blocks)."""
    return bytes([1, 1, 18]) + b"".join(bytes(c) for c in cols)


ONE_ROW_TAIL = [[0x01]] * 17  # columns 2..18 of a one-row block: all NULL


class CodecTest(unittest.TestCase):
    def test_hand_written_block(self):
        self.assertEqual(cmt_blocks.encode(HAND_ROWS), HAND_BYTES)
        self.assertEqual(cmt_blocks.decode(HAND_BYTES), HAND_ROWS)

    def test_round_trips(self):
        import random
        rnd = random.Random(5)
        edge = [0, 1, -1, I64_MIN, I64_MAX, I64_MIN + 1, I64_MAX - 1, 63, 64, -64, -65, 1 << 32, -(1 << 40)]
        cases = {
            "no NULL": [tuple(rnd.choice(edge) for _ in range(18)) for _ in range(100)],
            "all NULL but seq": [(i,) + (N,) * 17 for i in range(1, 10)],
            "some NULL": [tuple(N if c and rnd.random() < 0.4 else rnd.choice(edge) for c in range(18))
                          for _ in range(77)],
            "one row": [tuple(range(-9, 9))],
            "extremes alternating": [(i,) + ((I64_MIN, I64_MAX)[i % 2],) * 17 for i in range(64)],
            "largest block": [(i, i * 1000) + (i % 7, N, -i) + (N,) * 13 for i in range(cmt_blocks.MAX_ROWS)],
        }
        for name, rows in cases.items():
            data = cmt_blocks.encode(rows)
            self.assertEqual(cmt_blocks.decode(data), rows, name)
        # NULLs exactly where they were: a column NULL in rows 0 and 8 of 9 (bitmap of 2 bytes)
        rows = [(i,) + (N if i in (0, 8) else -i,) + (0,) * 16 for i in range(9)]
        data = cmt_blocks.encode(rows)
        self.assertEqual(data[3:3 + 1 + 9], bytes([0, 0] + [2] * 8))  # seq 0, then +1 each
        self.assertEqual(data[13:16], bytes([2, 0x01, 0x01]))           # ts_ns: flag 2, bits 0 and 8
        self.assertEqual(cmt_blocks.decode(data), rows)
        # the largest block, in its order, with the one-byte-difference path and the general one
        big = cases["largest block"]
        self.assertEqual(cmt_blocks.decode_columns(cmt_blocks.encode(big))[1][1][-1], (cmt_blocks.MAX_ROWS - 1) * 1000)

    def test_encode_refuses_what_no_block_holds(self):
        for rows in ([], [(0,) * 17], [(1 << 63,) + (0,) * 17], [(0,)] * (cmt_blocks.MAX_ROWS + 1)):
            with self.assertRaises(ValueError):
                cmt_blocks.encode(rows)

    def test_malformed_blocks_refused_with_their_reason(self):
        good = cmt_blocks.encode([(1,) * 18])
        cut = "event block cut short or with an over-long value"
        cases = [
            (b"", "empty event block"),
            (b"\x02" + good[1:], "event block of a newer format"),
            (b"\x00" + good[1:], "event block of an unknown format"),
            (bytes([1, 0, 18]), "event block with an impossible row count"),
            (bytes([1, 0x81, 0x80, 0x04, 18]), "event block with an impossible row count"),  # 65537
            (bytes([1, 0x80]), "event block with an impossible row count"),                 # varint cut
            (bytes([1] + FF9 + [0x02, 18]), "event block with an impossible row count"),   # over 64 bits
            (bytes([1, 1, 17]) + good[3:], "event block with another number of columns"),
            (bytes([1, 1]), "event block with another number of columns"),
            (block([3, 2], *ONE_ROW_TAIL), "event block with an unknown column flag"),
            (block([0, 2]), "event block cut short"),                                        # columns missing
            (bytes([1, 9, 18, 2, 0]), "event block cut short"),                              # bitmap of 2 bytes
            (block([0]), cut),                                                               # no value
            (block([0, 0x80]), cut),                                                         # value cut
            (block([0] + [0xFF] * 10 + [0x01], *ONE_ROW_TAIL), cut),                         # 11 bytes
            (block([0] + FF9 + [0x02], *ONE_ROW_TAIL), cut),                                 # 65 bits
            (block([0] + FF9 + [0x81], *ONE_ROW_TAIL), cut),                                 # 10th continues
            (good + b"\x00", "event block with bytes after its last column"),
            (block([2, 0x01], *ONE_ROW_TAIL) + b"\x00", "event block with bytes after its last column"),
        ]
        for data, reason in cases:
            with self.assertRaises(ValueError, msg=data.hex()) as cm:
                cmt_blocks.decode(data)
            self.assertEqual(str(cm.exception), reason, data.hex())
        # the limits themselves are fine: a 10-byte varint ending in 1, a bitmap with every row NULL
        self.assertEqual(cmt_blocks.decode(block([0] + FF9 + [0x01], *ONE_ROW_TAIL))[0][0], I64_MIN)
        self.assertEqual(cmt_blocks.decode(block([2, 0x01], *ONE_ROW_TAIL)), [(N,) * 18])

    def test_event_views_from_the_schema(self):
        views = cmt_blocks.event_views(cmtlib.schema_views())
        self.assertEqual([v.split()[3] if "IF NOT" not in v else v.split()[6] for v in views],
                         ["handle_refs", "handle_pairs", "pairs", "allocations", "failures", "mem_region_owners"])
        for v in views:
            self.assertTrue(v.startswith("CREATE TEMP VIEW "), v[:40])
            self.assertTrue(sqlite3.complete_statement(v))


CODEC = os.path.join(BUILD, "tests", "unit", "blocks_codec")


@unittest.skipUnless(os.path.exists(CODEC), "tests/unit/blocks_codec is not built (%s)" % CODEC)
class AgainstTheCCodecTest(unittest.TestCase):
    """cmt_blocks.py against schema/cmt_blocks.c itself (tests/unit/blocks_codec): the same bytes for the
    same rows, and on valid, cut, flipped and padded blocks the same rows or the same refusal."""

    def codec(self, mode, text):
        return subprocess.run([CODEC, mode], input=text, stdout=subprocess.PIPE, text=True, check=True,
                              timeout=60).stdout.splitlines()

    @staticmethod
    def random_rows(rnd, n, null_rate):
        edge = [0, 1, -1, I64_MIN, I64_MAX, 1 << 62, -(1 << 62), 63, 64, 127, 128, -64, -65, 1 << 32]

        def value():
            r = rnd.random()
            return rnd.choice(edge) if r < 0.3 else rnd.randint(I64_MIN, I64_MAX) if r < 0.45 else \
                rnd.randint(-1000, 10 ** 9)
        return [tuple(N if c and rnd.random() < null_rate else value() for c in range(18)) for _ in range(n)]

    def test_same_bytes(self):
        import random
        rnd = random.Random(11)
        blocks = [self.random_rows(rnd, rnd.choice((1, 2, 7, 8, 9, 300)), rnd.choice((0, 0.3, 1, 0.05)))
                  for _ in range(120)]
        text = "".join("".join(" ".join("N" if v is None else str(v) for v in r) + "\n" for r in b) + "\n"
                       for b in blocks)
        self.assertEqual(self.codec("encode", text), [cmt_blocks.encode(b).hex() for b in blocks])

    def test_same_refusals(self):
        import random
        rnd = random.Random(12)
        cases = []
        for i in range(1500):
            b = bytearray(cmt_blocks.encode(self.random_rows(rnd, rnd.choice((1, 3, 9, 20)), 0.3)))
            k = i % 5
            if k == 1:
                b = b[:rnd.randrange(len(b) + 1)]
            elif k == 2:
                for _ in range(rnd.randint(1, 3)):
                    b[rnd.randrange(len(b))] = rnd.choice((rnd.randrange(256), 0, 1, 2, 3, 0x80, 0xFF))
            elif k == 3:
                b += bytes([rnd.randrange(256)]) * rnd.randint(1, 3)
            elif k == 4:
                b.insert(rnd.randrange(len(b)), rnd.choice((0x80, 0xFF, 0x01)))
            cases.append(bytes(b))
        cases += [b"\x02", b"\x00", bytes([1, 0x80, 0x80, 0x04, 18]),
                  bytes([1, 1, 18, 0]) + bytes(FF9 + [1]) + b"\x01" * 17,
                  bytes([1, 1, 18, 0]) + bytes(FF9 + [2]) + b"\x01" * 17, bytes([1, 1, 18, 2, 1]) + b"\x01" * 17]
        want = self.codec("decode", "".join(c.hex() + "\n" for c in cases))
        got = []
        for c in cases:
            try:
                rows = cmt_blocks.decode(c)
                got.append("OK %d" % len(rows) + "".join(" " + ("N" if v is None else str(v)) for r in rows for v in r))
            except ValueError as e:
                got.append("E %s" % e)
        self.assertEqual(len(want), len(cases))
        for c, w, g in zip(cases, want, got):
            self.assertEqual(g, w, c.hex())
        accepted = sum(w.startswith("OK") for w in want)
        self.assertGreater(accepted, 300)  # the unmutated fifth, and mutations that happen to be valid
        self.assertGreater(len(cases) - accepted, 900)


class MaterializeTest(TraceTest):
    def setUp(self):
        super().setUp()
        self.rows_db = rich_trace(self.path("rows.db"))
        self.blocks_db = to_block_form(self.rows_db, self.path("blocks.db"), per_block=7)

    def ro(self, path):
        return sqlite3.connect("file:%s?mode=ro" % path, uri=True)

    def test_same_events_and_views_as_the_row_form(self):
        self.same_as_the_row_form(self.blocks_db)

    def test_rows_out_of_order_and_overlapping_blocks(self):
        """A writer drains a late event after a later seq: rows out of order in a block, and a block whose
        lowest seq is below the highest of the block before. The events still come out in seq order."""
        db = to_block_form(self.rows_db, self.path("disorder.db"), per_block=7, disorder=True)
        blocks = sqlite3.connect(db).execute("SELECT first_seq, last_seq FROM events_blocks ORDER BY first_seq").fetchall()
        self.assertEqual(blocks[:3], [(1, 8), (7, 15), (14, 22)])  # 1 3 2 4 6 5 8 | 7 9 10 ...
        self.same_as_the_row_form(db)
        rows = [r for b in cmt_blocks.event_rows(self.ro(db)) for r in b]
        self.assertEqual([r[0] for r in rows], list(range(1, len(rows) + 1)))

    def same_as_the_row_form(self, db):
        n = self.scalar(self.rows_db, "SELECT count(*) FROM events")
        self.assertGreater(n, 50)
        blk = self.ro(db)
        self.assertEqual(blk.execute("SELECT count(*) FROM events_blocks").fetchone()[0], -(-n // 7))
        self.assertTrue(cmt_blocks.materialize(blk, cmtlib.schema_views()))  # read-only: TEMP objects only
        self.assertFalse(cmt_blocks.materialize(blk, cmtlib.schema_views()))  # already there
        row = self.ro(self.rows_db)
        self.assertFalse(cmt_blocks.materialize(row, cmtlib.schema_views()))  # row form: left alone
        self.assertIsNone(row.execute("SELECT name FROM temp.sqlite_master").fetchone())
        for sql in ("SELECT * FROM events ORDER BY seq", "SELECT * FROM allocations ORDER BY seq",
                    "SELECT * FROM failures ORDER BY seq", "SELECT * FROM pairs ORDER BY alloc_seq",
                    "SELECT * FROM handle_pairs ORDER BY alloc_seq", "SELECT * FROM mem_region_owners"):
            want = row.execute(sql).fetchall()
            self.assertEqual(blk.execute(sql).fetchall(), want, sql)
        self.assertEqual(len(row.execute("SELECT * FROM failures").fetchall()), 1)
        self.assertGreater(len(row.execute("SELECT * FROM allocations WHERE free_seq IS NULL").fetchall()), 2)
        self.assertEqual(len(row.execute("SELECT * FROM allocations WHERE kind = 'vmm_mapping'").fetchall()), 4)
        # the columns and types of schema/cumemtrace.sql's events, and its partial index
        self.assertEqual(blk.execute("PRAGMA temp.table_info(events)").fetchall(),
                         row.execute("PRAGMA main.table_info(events)").fetchall())
        self.assertEqual(blk.execute("SELECT sql FROM temp.sqlite_master WHERE name = 'events_release_address'")
                         .fetchone()[0], "CREATE INDEX events_release_address ON events(op, address, seq)"
                         " WHERE result = 0 AND op % 2 = 0")
        plan = " ".join(r[-1] for r in blk.execute(
            "EXPLAIN QUERY PLAN SELECT min(f.seq) FROM events f WHERE f.op = 2 AND f.address = 5 AND f.seq > 1"
            " AND f.result = 0 AND f.op % 2 = 0"))
        self.assertIn("events_release_address", plan)
        self.assertIsNone(blk.execute("SELECT name FROM main.sqlite_master WHERE name = 'events'").fetchone())
        blk.close()
        row.close()
        # TraceTest.query does the same for every test
        self.assertEqual(self.query(db, "SELECT * FROM allocations ORDER BY seq"),
                         self.query(self.rows_db, "SELECT * FROM allocations ORDER BY seq"))

    def test_big_traces_decoded_once_per_process(self):
        """TraceTest.query on a big block-form trace (cmtlib.CACHE_EVENTS, 10 here) decodes it once, into a
        file attached by every later query; the views answer as on the row form."""
        calls = []
        real = cmt_blocks.event_blocks

        def counting(con):
            calls.append(1)
            return real(con)

        old, cmtlib.CACHE_EVENTS, cmt_blocks.event_blocks = cmtlib.CACHE_EVENTS, 10, counting
        try:
            for sql in ("SELECT * FROM events ORDER BY seq", "SELECT * FROM allocations ORDER BY seq",
                        "SELECT * FROM failures ORDER BY seq", "SELECT * FROM pairs ORDER BY alloc_seq"):
                self.assertEqual(self.query(self.blocks_db, sql), self.query(self.rows_db, sql), sql)
            self.assertEqual(len(calls), 1)
            # a changed file is a new one
            con = sqlite3.connect(self.blocks_db)
            con.execute("DELETE FROM events_blocks WHERE first_seq > 1")
            con.commit()
            con.close()
            self.assertEqual(self.query(self.blocks_db, "SELECT count(*), count(free_seq) FROM allocations"),
                             [(7, 0)])  # 3 weights, VMM memory, pinned, managed, a VA reservation: none freed
            self.assertEqual(len(calls), 2)  # 7 events: below CACHE_EVENTS, decoded by the reader itself
        finally:
            cmtlib.CACHE_EVENTS, cmt_blocks.event_blocks = old, real

    def test_no_events(self):
        t = TraceBuilder(self.path("empty.db"))
        t.close()
        con = sqlite3.connect(self.path("empty.db"))
        con.execute("CREATE TABLE events_blocks (first_seq INTEGER PRIMARY KEY, last_seq INTEGER NOT NULL,"
                    " nrows INTEGER NOT NULL, data BLOB NOT NULL)")
        con.execute("DROP VIEW allocations")
        con.execute("DROP TABLE events")
        con.commit()
        con.close()
        self.assertEqual(self.query(self.path("empty.db"), "SELECT count(*) FROM allocations"), [(0,)])

    def corrupt(self, sql, args=()):
        con = sqlite3.connect(self.blocks_db)
        self.assertEqual(con.execute(sql, args).rowcount, 1)
        con.commit()
        con.close()

    def expect_corrupt(self, reason):
        con = self.ro(self.blocks_db)
        with self.assertRaises(ValueError) as cm:
            cmt_blocks.materialize(con, cmtlib.schema_views())
        self.assertEqual(str(cm.exception), reason)
        # nothing left behind: the next reader tries again from scratch
        self.assertIsNone(con.execute("SELECT name FROM temp.sqlite_master").fetchone())
        self.assertFalse(con.in_transaction)
        con.close()

    def test_corrupt_blocks(self):
        con = sqlite3.connect(self.blocks_db)
        data = con.execute("SELECT data FROM events_blocks WHERE first_seq = 8").fetchone()[0]
        con.close()
        rows = cmt_blocks.decode(data)
        cases = [
            ("UPDATE events_blocks SET data = substr(data, 1, 20) WHERE first_seq = 8", (),
             "corrupt trace: events block at seq 8: event block cut short or with an over-long value"),
            ("UPDATE events_blocks SET data = x'03' WHERE first_seq = 15", (),
             "corrupt trace: events block at seq 15: event block of a newer format"),
            # its header: cmt_db_events.c's checks and reason
            ("UPDATE events_blocks SET nrows = 6 WHERE first_seq = 8", (),
             "corrupt trace: events block at seq 8: its rows disagree with its header"),
            ("UPDATE events_blocks SET first_seq = 9 WHERE first_seq = 8", (),
             "corrupt trace: events block at seq 9: its rows disagree with its header"),
            ("UPDATE events_blocks SET last_seq = 15 WHERE first_seq = 8", (),
             "corrupt trace: events block at seq 8: its rows disagree with its header"),
            ("UPDATE events_blocks SET data = ? WHERE first_seq = 8",
             (cmt_blocks.encode([(1,) + r[1:] for r in rows[:1]] + rows[1:]),),
             "corrupt trace: events block at seq 8: its rows disagree with its header"),
            ("UPDATE events_blocks SET data = 'text' WHERE first_seq = 8", (),
             "corrupt trace: events block at seq 8: a column of the wrong type"),
            ("UPDATE events_blocks SET nrows = 'seven' WHERE first_seq = 8", (),
             "corrupt trace: events block at seq 8: a column of the wrong type"),
            # a seq twice: in one block, or in two (the header of each consistent)
            ("UPDATE events_blocks SET data = ? WHERE first_seq = 8",
             (cmt_blocks.encode(rows[:3] + [(10,) + rows[3][1:]] + rows[4:]),),
             "corrupt trace: events block at seq 8: seq 10 in two rows"),
            ("UPDATE events_blocks SET last_seq = 15, data = ? WHERE first_seq = 8",
             (cmt_blocks.encode(rows[:-1] + [(15,) + rows[-1][1:]]),),
             "corrupt trace: events block at seq 15: seq 15 in two rows"),
            ("UPDATE events_blocks SET data = ? WHERE first_seq = 8",
             (cmt_blocks.encode(rows[:2] + [rows[2][:1] + (None,) + rows[2][2:]] + rows[3:]),),
             "corrupt trace: events block at seq 8: ts_ns is NULL"),
        ]
        pristine = self.path("pristine.db")
        shutil.copyfile(self.blocks_db, pristine)
        for sql, args, reason in cases:
            shutil.copyfile(pristine, self.blocks_db)
            self.corrupt(sql, args)
            self.expect_corrupt(reason)


class AnalyzerTest(TraceTest):
    """The C analyzer (schema/cmt_db_events.c, on branch blocks when this was written) reads a block-form
    copy as the row-form original: the same report, but for the path. Skips while the build's analyzer
    refuses schema version 5."""

    def test_report_json_same_on_both_forms(self):
        rows_db = rich_trace(self.path("rows.db"))
        blocks_db = to_block_form(rows_db, self.path("blocks.db"), per_block=5, disorder=True)
        reports = []
        for db in (rows_db, blocks_db):
            p = cmtlib.run([cmtlib.CUMEMTRACE, "report", "--json", "--top", "10", db], dict(os.environ), check=False)
            if p.returncode != 0 and "schema version 5; this one reads up to 4" in p.stderr:
                self.skipTest("this build's analyzer does not read schema version 5 yet: %s" % p.stderr.strip())
            self.assertEqual(p.returncode, 0, p.stderr)
            rep = json.loads(p.stdout)
            self.assertEqual(rep["traces"][0].pop("path"), db)
            reports.append(rep)
        self.assertEqual(reports[1], reports[0])
        self.assertEqual(reports[0]["events"], self.scalar(rows_db, "SELECT count(*) FROM events"))


def load_pickle(path):
    with open(path, "rb") as f:
        return pickle.load(f)


class ProductScriptsTest(TraceTest):
    """The scripts as the build tree holds them (with cmt_blocks.py copied beside them by meson), run on a
    row-form trace and on its block-form copy."""

    def setUp(self):
        super().setUp()
        self.rows_db = rich_trace(self.path("rows.db"))
        self.blocks_db = to_block_form(self.rows_db, self.path("blocks.db"), per_block=5, disorder=True)
        self.bad_db = to_block_form(self.rows_db, self.path("bad.db"), per_block=5)
        con = sqlite3.connect(self.bad_db)
        con.execute("UPDATE events_blocks SET data = substr(data, 1, length(data) - 1) WHERE first_seq = 11")
        con.commit()
        con.close()
        self.bad_line = "cumemtrace: %s: corrupt trace: events block at seq 11: event block cut short" % self.bad_db

    def script(self, *parts):
        p = os.path.join(BUILD, *parts)
        self.assertTrue(os.path.exists(os.path.join(os.path.dirname(p), "cmt_blocks.py")), "meson copies it beside")
        return p

    def assert_refused(self, p, before=None):
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(len(p.stderr.splitlines()), 1, p.stderr)
        self.assertTrue(p.stderr.startswith(self.bad_line), p.stderr)

    def test_export_torch(self):
        exe = self.script("analysis", "torch", "cmt_torch_export.py")
        outs = []
        for db in (self.rows_db, self.blocks_db):
            out = db + ".pickle"
            cmtlib.run([sys.executable, exe, "export", db, out], dict(os.environ))
            outs.append(load_pickle(out))
        self.assertEqual(outs[1], outs[0])
        self.assertGreater(len(outs[0]["device_traces"][0]), 20)
        self.assertEqual(len(outs[0]["segments"]), 3)  # the 3 weights stay; everything else device is freed
        p = cmtlib.run([sys.executable, exe, "export", self.bad_db, self.path("bad.pickle")], dict(os.environ),
                       check=False)
        self.assert_refused(p)
        self.assertFalse(os.path.exists(self.path("bad.pickle")))

    def test_import_torch(self):
        exe = self.script("importers", "torch", "cmt_torch_import.py")
        start_unix = self.scalar(self.rows_db, "SELECT start_unix_ns FROM process")
        first = self.scalar(self.rows_db, "SELECT address FROM events WHERE seq = 1")

        def us(seq):  # wall-clock us of an event's time (tracebuilder: 1 ms a step)
            return (start_unix + seq * 1_000_000) // 1000

        seg = first
        snap = {"segments": [{"device": 0, "address": seg, "total_size": 2 * MiB, "stream": 0,
                              "segment_type": "small", "allocated_size": 1024, "active_size": 1024,
                              "requested_size": 1000, "blocks": [
                                  {"address": seg, "size": 1024, "requested_size": 1000, "state": "active_allocated",
                                   "frames": [{"name": "forward", "filename": "/x/model.py", "line": 3}]},
                                  {"address": seg + 1024, "size": 2 * MiB - 1024, "requested_size": 0,
                                   "state": "inactive", "frames": []}]}],
                "device_traces": [[
                    {"action": "segment_alloc", "addr": seg, "size": 2 * MiB, "stream": 0, "time_us": us(1),
                     "frames": []},
                    {"action": "alloc", "addr": seg, "size": 1000, "stream": 0, "time_us": us(2) + 500,
                     "frames": [{"name": "forward", "filename": "/x/model.py", "line": 3}]}]],
                "external_annotations": [{"device": 0, "stage": "START", "name": "step", "time_us": us(4) + 300},
                                         {"device": 0, "stage": "END", "name": "step", "time_us": us(9) + 300}]}
        pk = self.path("snap.pickle")
        with open(pk, "wb") as f:
            pickle.dump(snap, f)
        got = []
        for db in (self.rows_db, self.blocks_db):
            cmtlib.run([sys.executable, exe, "import", pk, db], dict(os.environ))
            con = sqlite3.connect(db)
            got.append((con.execute("SELECT * FROM alloc_segments").fetchall(),
                        con.execute("SELECT * FROM ranges").fetchall(),
                        con.execute("SELECT * FROM alloc_trace").fetchall()))
            con.close()
        self.assertEqual(got[1], got[0])
        self.assertEqual(got[0][0][0][-1], 1)  # the segment's driver allocation: event 1, read from events
        # the range starts 0.3 ms after event 4 and ends 0.3 ms after event 9: its seqs come from events
        self.assertEqual([(r[4], r[8], r[9]) for r in got[0][1]], [("step", 4, 10)])
        p = cmtlib.run([sys.executable, exe, "import", pk, self.bad_db], dict(os.environ), check=False)
        self.assert_refused(p)
        self.assertEqual(sqlite3.connect(self.bad_db).execute("SELECT count(*) FROM alloc_snapshots").fetchone()[0], 0)

    def test_export_parquet(self):
        import test_parquet
        if test_parquet.SKIP:
            self.skipTest(test_parquet.SKIP)
        exe = self.script("analysis", "export", "cmt_export.py")
        tables = {}
        for db in (self.rows_db, self.blocks_db):
            out = db + ".parquet"
            cmtlib.run([test_parquet.PY, exe, "parquet", out, "--part-rows", "9", db], dict(os.environ))
            prog = ("import pyarrow.parquet as pq, sys, json; print(json.dumps({t: pq.read_table(sys.argv[1] + '/' + t)"
                    ".drop_columns(['rank']).to_pylist() for t in ('events', 'allocations', 'stacks', 'frames')}))")
            tables[db] = cmtlib.run([test_parquet.PY, "-c", prog, out], dict(os.environ)).stdout
        self.assertEqual(tables[self.blocks_db], tables[self.rows_db])
        t = json.loads(tables[self.rows_db])
        self.assertEqual(len(t["events"]), self.scalar(self.rows_db, "SELECT count(*) FROM events"))
        self.assertEqual(sorted(a["seq"] for a in t["allocations"]),
                         [s for (s,) in self.query(self.rows_db, "SELECT seq FROM allocations ORDER BY seq")])
        p = cmtlib.run([test_parquet.PY, exe, "parquet", self.path("bad.parquet"), self.bad_db], dict(os.environ),
                       check=False)
        self.assert_refused(p)
        self.assertFalse(os.path.exists(self.path("bad.parquet")))


if __name__ == "__main__":
    unittest.main()
