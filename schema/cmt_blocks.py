"""cmt_blocks.py: the events' block form (schema version 5) for Python's sqlite3: decoding and encoding one
block, and `materialize`, which gives a reader of a block-form trace the `events` table it had before.

The format is schema/cmt_blocks.h's (format 1); schema/cmt_blocks.c is the C codec, and this file refuses
exactly what it refuses, with the same one-line reasons (tests/test_blocks.py checks both against each
other). A block-form trace keeps its events in events_blocks(first_seq, last_seq, nrows, data) and has no
`events` table and no view over events in main; materialize() recreates them as TEMP objects of the reading
connection: the table events (the columns and types of schema/cumemtrace.sql's), its partial index
(cumemtrace_indexes.sql's events_release_address) and, when given the schema files' SQL, the views over it
(event_views). A row-form trace (schema <= 4) is left alone. The pieces, for readers that want less or
elsewhere: is_block_form, event_blocks (the checked blocks one at a time, as columns), copy_events (the
table and its index into any schema of a connection), decode/decode_columns, encode.

Decoding runs column by column, as the block is laid out: a column whose differences after the first are
one byte each is decoded in C (bytes.isascii, itertools.accumulate), any other byte by byte in one loop;
about 400,000 events a second on CPython 3.11 for a writer's blocks (19 bytes an event).

Python 3.9+, standard library only: it is copied next to the product scripts that read traces
(importers/torch, analysis/torch, analysis/export) and imported from there. Owns: the block codec in Python
and the TEMP events of a connection. Never writes a trace file.
"""
import bisect
import contextlib
import itertools
import operator
import re
import sqlite3

FORMAT = 1
NCOLS = 18
MAX_ROWS = 65536
COLUMNS = ("seq", "ts_ns", "tid", "api", "op", "kind", "device", "context", "address", "size", "stream",
           "handle", "aux", "result", "duration_ns", "stack_id", "free_bytes", "total_bytes")
NOT_NULL = (0, 1, 2, 3, 4, 5, 13, 14)  # seq, ts_ns, tid, api, op, kind, result, duration_ns

# The events table of schema/cumemtrace.sql and its partial index (cumemtrace_indexes.sql), in a schema of
# the reader's (temp; the REFERENCES of the original name main's lookup tables, which a table elsewhere
# cannot, and SQLite does not enforce them on a trace anyway).
EVENTS_TABLE = (
    "CREATE TABLE %s.events (seq INTEGER PRIMARY KEY, ts_ns INTEGER NOT NULL, tid INTEGER NOT NULL,"
    " api INTEGER NOT NULL, op INTEGER NOT NULL, kind INTEGER NOT NULL, device INTEGER, context INTEGER,"
    " address INTEGER, size INTEGER, stream INTEGER, handle INTEGER, aux INTEGER, result INTEGER NOT NULL,"
    " duration_ns INTEGER NOT NULL, stack_id INTEGER, free_bytes INTEGER, total_bytes INTEGER)")
EVENTS_INDEX = ("CREATE INDEX %s.events_release_address ON events(op, address, seq)"
                " WHERE result = 0 AND op %% 2 = 0")  # %% for the schema's %s
EVENT_VIEWS = ("handle_refs", "handle_pairs", "pairs", "allocations", "failures", "mem_region_owners")

_UNZIG1 = [(b >> 1) ^ -(b & 1) for b in range(128)]  # a one-byte varint's difference
_BITS = [tuple((byte >> j) & 1 for j in range(8)) for byte in range(256)]  # a bitmap byte, LSB first
_MASK64 = (1 << 64) - 1


def _bad(what):
    return ValueError(what)


def _varint(data, p):
    """One varint at p (cmt_blocks.c's get_varint): (value, next p). IndexError when it runs past the end."""
    b = data[p]
    p += 1
    v = b & 0x7F
    shift = 7
    while b & 0x80:
        b = data[p]
        p += 1
        if shift == 63 and b & 0xFE:
            raise _bad("over-long")
        v |= (b & 0x7F) << shift
        shift += 7
    return v, p


def _column(data, p, k):
    """k values of a column from p: (their running sums as Python ints, next p). Raises ValueError."""
    if not k:
        return [], p
    try:
        d, q = _varint(data, p)
    except (IndexError, ValueError):
        q = None  # the loop below says why
    if q is not None and k - 1 <= len(data) - q:
        rest = data[q:q + k - 1]
        if rest.isascii():  # every difference but the first one byte (seq, tid, context...): all in C
            first = (d >> 1) ^ -(d & 1)
            return list(itertools.accumulate(map(_UNZIG1.__getitem__, rest), initial=first)), q + k - 1
    # the general case, a byte at a time (65,536 rows of 2-5 byte differences: 15-40 ms a column)
    vals = [0] * k
    prev = 0
    try:
        for i in range(k):
            b = data[p]
            p += 1
            if b < 0x80:
                prev += _UNZIG1[b]
            else:
                d = b & 0x7F
                shift = 7
                while True:
                    b = data[p]
                    p += 1
                    if b < 0x80:
                        d |= b << shift
                        break
                    d |= (b & 0x7F) << shift
                    shift += 7
                    if shift == 63:
                        b = data[p]
                        p += 1
                        if b > 1:
                            raise IndexError
                        d |= b << 63
                        break
                prev += (d >> 1) ^ -(d & 1)
            vals[i] = prev
    except IndexError:
        raise _bad("event block cut short or with an over-long value") from None
    return vals, p


def _wrap(vals):
    """Running sums back into signed 64-bit (differences are modulo 2^64)."""
    if vals and (min(vals) < -(1 << 63) or max(vals) >= (1 << 63)):
        return [((v + (1 << 63)) & _MASK64) - (1 << 63) for v in vals]
    return vals


def decode_columns(data):
    """A block as (nrows, 18 columns), each a list of nrows values (None for NULL). Raises ValueError with
    cmt_block_decode's one-line reason for anything but a well-formed format-1 block."""
    data = bytes(data)
    end = len(data)
    if end < 1:
        raise _bad("empty event block")
    if data[0] != FORMAT:
        raise _bad("event block of a newer format" if data[0] > FORMAT else "event block of an unknown format")
    try:
        n, p = _varint(data, 1)
    except (IndexError, ValueError):
        n = 0
    if not 1 <= n <= MAX_ROWS:
        raise _bad("event block with an impossible row count")
    try:
        ncols, p = _varint(data, p)
    except (IndexError, ValueError):
        ncols = 0
    if ncols != NCOLS:
        raise _bad("event block with another number of columns")
    cols = []
    nbits = (n + 7) // 8
    for _ in range(NCOLS):
        if p >= end:
            raise _bad("event block cut short")
        flag = data[p]
        p += 1
        if flag == 1:
            cols.append([None] * n)
            continue
        if flag == 0:
            vals, p = _column(data, p, n)
            cols.append(_wrap(vals))
            continue
        if flag != 2:
            raise _bad("event block with an unknown column flag")
        if end - p < nbits:
            raise _bad("event block cut short")
        nulls = list(itertools.chain.from_iterable(map(_BITS.__getitem__, data[p:p + nbits])))
        del nulls[n:]
        p += nbits
        vals, p = _column(data, p, n - sum(nulls))
        it = iter(_wrap(vals))
        cols.append([None if z else next(it) for z in nulls])
    if p != end:
        raise _bad("event block with bytes after its last column")
    return n, cols


def decode(data):
    """A block's rows: a list of 18-tuples in CMT_BLOCK_COLUMNS order, None for NULL. Raises ValueError."""
    return list(zip(*decode_columns(data)[1]))


def _put(out, v):
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def encode(rows):
    """rows (1..65536 sequences of 18 integers or None, in ascending seq) as one format-1 block."""
    rows = list(rows)
    n = len(rows)
    if not 1 <= n <= MAX_ROWS:
        raise ValueError("a block holds 1 to %d rows, not %d" % (MAX_ROWS, n))
    if any(len(r) != NCOLS for r in rows):
        raise ValueError("rows of %d columns each, not %d" % (NCOLS, next(len(r) for r in rows if len(r) != NCOLS)))
    out = bytearray([FORMAT])
    _put(out, n)
    _put(out, NCOLS)
    for col in zip(*rows):
        nulls = sum(v is None for v in col)
        out.append(0 if nulls == 0 else 1 if nulls == n else 2)
        if nulls == n:
            continue
        if nulls:
            bits = bytearray((n + 7) // 8)
            for i, v in enumerate(col):
                if v is None:
                    bits[i >> 3] |= 1 << (i & 7)
            out += bits
        prev = 0
        for v in col:
            if v is None:
                continue
            if not -(1 << 63) <= v < (1 << 63):
                raise ValueError("%r is not a signed 64-bit integer" % (v,))
            d = (v - prev) & _MASK64
            _put(out, ((d << 1) ^ (_MASK64 if d >> 63 else 0)) & _MASK64)
            prev = v
    return bytes(out)


def _main_names(con):
    return {name: kind for name, kind in con.execute("SELECT name, type FROM main.sqlite_master")}


def is_block_form(con):
    """True when main keeps its events in blocks: a table events_blocks and no table events."""
    names = _main_names(con)
    return names.get("events_blocks") == "table" and names.get("events") != "table"


def event_blocks(con):
    """The blocks of a block-form trace in first_seq order, decoded: (first_seq, 18 columns) each, checked
    against their events_blocks row (its columns' types; nrows, and first_seq and last_seq the lowest and
    highest seq: cmt_db_events.c's checks, with its reasons) and NOT NULL columns never NULL. Rows are as
    the writer drained them: seq order but for a thread that took its seq before another and published after
    it (cmt_blocks.h), so blocks may overlap a little; event_rows puts them in order. Raises
    ValueError("corrupt trace: events block at seq N: reason")."""
    for first_seq, last_seq, nrows, data in con.execute(
            "SELECT first_seq, last_seq, nrows, data FROM main.events_blocks ORDER BY first_seq"):
        try:
            if type(last_seq) is not int or type(nrows) is not int or type(data) is not bytes:
                raise ValueError("a column of the wrong type")
            n, cols = decode_columns(data)
            for c in NOT_NULL:
                if None in cols[c]:
                    raise ValueError("%s is NULL" % COLUMNS[c])
            if n != nrows or min(cols[0]) != first_seq or max(cols[0]) != last_seq:
                raise ValueError("its rows disagree with its header")
        except ValueError as e:
            raise ValueError("corrupt trace: events block at seq %s: %s" % (first_seq, e)) from None
        yield first_seq, cols


_SEQ = operator.itemgetter(0)


def event_rows(con):
    """The events of a block-form trace in seq order, a list of 18-tuples at a time (about a block): what
    `SELECT * FROM events ORDER BY seq` gives on a row-form trace. Rows of a block wait for the next block:
    none of its rows is below its first_seq, so what is below can go. Raises ValueError("corrupt trace:
    events block at seq N: reason") as event_blocks does, and for a seq in two rows."""
    pending, seqs = [], []  # rows not given yet, in seq order, and their seqs
    for first_seq, cols in event_blocks(con):
        if pending:
            cut = bisect.bisect_left(seqs, first_seq)
            if cut == len(pending):
                yield pending
                pending, seqs = [], []
            elif cut:
                yield pending[:cut]
                del pending[:cut], seqs[:cut]
        block = cols[0]
        pending += zip(*cols)
        if (not seqs or seqs[-1] < block[0]) and all(map(operator.lt, block, itertools.islice(block, 1, None))):
            seqs += block  # in order after what waits (the usual case): nothing to sort, no seq twice
            continue
        pending.sort(key=_SEQ)  # in order but for a few rows: timsort's near-linear case
        seqs = [r[0] for r in pending]
        if not all(map(operator.lt, seqs, itertools.islice(seqs, 1, None))):
            twice = next(b for a, b in zip(seqs, seqs[1:]) if a == b)
            raise ValueError("corrupt trace: events block at seq %s: seq %d in two rows" % (first_seq, twice))
    if pending:
        yield pending


def event_views(texts):
    """The CREATE TEMP VIEW statements of the views over events (EVENT_VIEWS, in the order the texts give
    them) found in schema SQL texts (cumemtrace.sql, cumemtrace_v3.sql)."""
    out = []
    head = re.compile(r"^\s*CREATE\s+VIEW\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I)
    for text in texts:
        stmt = ""
        for line in text.splitlines(True):
            if not stmt and (not line.strip() or line.lstrip().startswith("--")):
                continue  # comments between statements
            stmt += line
            if sqlite3.complete_statement(stmt):
                m = head.match(stmt)
                if m and m.group(2) in EVENT_VIEWS:
                    out.append(head.sub(lambda m: "CREATE TEMP VIEW %s%s" % (m.group(1) or "", m.group(2)),
                                        stmt, count=1).strip())
                stmt = ""
    return out


@contextlib.contextmanager
def _savepoint(con, name):
    """A savepoint: everything in the block or nothing (a part of the caller's transaction if it has one)."""
    con.execute("SAVEPOINT " + name)
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK TO " + name)
        con.execute("RELEASE " + name)
        raise
    con.execute("RELEASE " + name)


def copy_events(src, dst, schema="temp"):
    """Writes the events of the block-form trace open in src into dst's schema `schema` as the table events
    with its partial index, in one transaction (a savepoint: a part of the caller's if it has one). Returns
    the number of events. Raises ValueError("corrupt trace: ...") for a damaged block, leaving nothing."""
    n = 0
    with _savepoint(dst, "cmt_copy_events"):
        dst.execute(EVENTS_TABLE % schema)
        insert = "INSERT INTO %s.events VALUES (%s)" % (schema, ",".join("?" * NCOLS))
        for rows in event_rows(src):
            dst.executemany(insert, rows)
            n += len(rows)
        dst.execute(EVENTS_INDEX % schema)
    return n


def materialize(con, views_sql=None):
    """Gives con the events of a block-form trace as TEMP objects: the table events, filled from the blocks
    in one transaction, its partial index, and, when views_sql (the SQL texts of the schema files) is given,
    the views over it (event_views). Returns True when it did, False for a row-form trace (left alone) or
    when con has them already. Raises ValueError("corrupt trace: ...") for a damaged block (nothing is left
    behind). Works on a read-only connection: TEMP objects are the connection's own."""
    if not is_block_form(con):
        return False
    if con.execute("SELECT 1 FROM temp.sqlite_master WHERE name = 'events'").fetchone():
        return False
    with _savepoint(con, "cmt_materialize"):  # one transaction, or a part of the caller's
        copy_events(con, con, "temp")
        for sql in event_views(views_sql or ()):
            con.execute(sql)
    return True
