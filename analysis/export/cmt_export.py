"""cmt_export.py: `cumemtrace export --parquet OUT TRACE...`'s writer: traces (already validated by
analysis/cmd_export.c, which expands job directories exactly as `report` does) into one Parquet dataset
partitioned by rank, for DuckDB, Spark, pandas/pyarrow and the like. schema/README.md ("Parquet export")
documents the layout; this file is where it is made.

    OUT/_cumemtrace_export.json                 marker: written by us (what was exported, from where)
    OUT/allocations/rank=R/part-N.parquet       the rows of the `allocations` view + pid, host
    OUT/events/rank=R/part-N.parquet            the `events` table, with api/op/kind names + pid, host
    OUT/stacks/rank=R/part-N.parquet            the `stack_frames` view            + pid, host
    OUT/frames/rank=R/part-N.parquet            `frames` joined to `modules`       + pid, host
    OUT/processes/rank=R/part-N.parquet         one row per trace: the `process` row, env, source path

Every integer column is int64 (sizes and addresses exact, times in ns of the trace's CLOCK_MONOTONIC, as
in the trace); text is UTF-8 (invalid bytes replaced). rank is the hive partition (the directory name),
never a column inside the files (engines take it from the path); each file's key-value metadata says its
rank, table, source trace and the trace's schema version. rank = the trace's env RANK when it is an
integer, else -1 (pid and host tell such processes apart). Several traces with one rank (a job exported
twice, forked workers) share the partition: part numbers go on across them.

Streams: each table is read with an SQLite cursor (fetchmany; the events of a block-form trace, schema
version 5, a decoded block at a time: cmt_blocks.py, copied beside this file) and written a row group at a
time through pyarrow's ParquetWriter; a part file is closed after --part-rows rows. The allocations are
paired in the same pass over the events (Pairer: the view's rules without its correlated subqueries,
which are quadratic in a trace without the finalize-time indexes). Memory is a few row groups and the
allocations still live, whatever the trace's size. One worker process per rank (at most the CPUs, 8).

OUT: created if absent; an empty directory is used; a directory holding our marker is replaced (only
our own files: rank=R/part-N.parquet under the table directories, and the marker); anything else is
refused before anything is touched. The new export is written into OUT/.cumemtrace-export-tmp first and
moved into place only once complete, so a failure leaves the previous export (or nothing) behind.

Runs in a child of the `cumemtrace` command, with the python of $CUMEMTRACE_PYTHON, else python3, which
this file replaces by the pinned analysis venv (scripts/py-env) when it has no pyarrow. Reads traces only
(SQLite read-only). Errors: one line on stderr ("cumemtrace: ..."), exit status 1.
"""
import json
import os
import re
import shutil
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cmt_blocks  # noqa: E402  (schema/cmt_blocks.py, copied beside this file)

LAYOUT_VERSION = 1  # of this Parquet layout; bump on any incompatible change (and in schema/README.md)
MARKER = "_cumemtrace_export.json"
STAGING = ".cumemtrace-export-tmp"
TABLES = ("allocations", "events", "stacks", "frames", "processes")
VENV_NAME = "venv-analysis-1"  # scripts/py-env's ENV_VERSION; change both together
ROW_GROUP = 65536
PART_FILE = re.compile(r"^part-\d+\.parquet$")
RANK_DIR = re.compile(r"^rank=-?\d+$")


class ExportError(Exception):
    pass


def die(msg):
    sys.stderr.write("cumemtrace: %s\n" % msg)
    sys.exit(1)


# ---------------------------------------------------------------------------------------------------
# The output directory: ours, empty, or refused (checked before anything is written)

def check_out(out):
    """Returns the old files of ours to remove once the new export is complete. Raises ExportError if
    OUT is not ours to write."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise ExportError("%s: exists and is not a directory; give a new or empty directory" % out)
    if not os.path.isdir(out):
        return []
    names = os.listdir(out)
    if not names:
        return []
    if MARKER not in names:
        raise ExportError("%s: directory is not empty and was not written by cumemtrace export (no %s);"
                          " give a new or empty directory" % (out, MARKER))
    ours = []
    for t in TABLES:
        top = os.path.join(out, t)
        if not os.path.lexists(top):
            continue
        if os.path.islink(top) or not os.path.isdir(top):
            raise ExportError("%s: not written by cumemtrace export; move it away first" % top)
        for rd in os.listdir(top):
            rpath = os.path.join(top, rd)
            if not RANK_DIR.match(rd) or os.path.islink(rpath) or not os.path.isdir(rpath):
                raise ExportError("%s: not written by cumemtrace export; move it away first" % rpath)
            for f in os.listdir(rpath):
                fpath = os.path.join(rpath, f)
                if not PART_FILE.match(f) or os.path.islink(fpath) or not os.path.isfile(fpath):
                    raise ExportError("%s: not written by cumemtrace export; move it away first" % fpath)
                ours.append(fpath)
    stale = os.path.join(out, STAGING)
    if os.path.lexists(stale) and (os.path.islink(stale) or not os.path.isdir(stale)):
        raise ExportError("%s: not written by cumemtrace export; move it away first" % stale)
    return ours


def remove_old(out, files):
    for f in files:
        os.unlink(f)
    for t in TABLES:
        top = os.path.join(out, t)
        if not os.path.isdir(top):
            continue
        for rd in os.listdir(top):
            try:
                os.rmdir(os.path.join(top, rd))
            except OSError:
                pass
        try:
            os.rmdir(top)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------------
# pyarrow, from the pinned venv if this python lacks it

def import_pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
        return
    except ImportError:
        pass
    venv = os.environ.get("CUMEMTRACE_ANALYSIS_VENV") or os.path.join(
        os.path.expanduser("~"), ".cache", "cumemtrace", VENV_NAME)
    py = os.path.join(venv, "bin", "python")
    if (not os.environ.get("CUMEMTRACE_PYTHON") and os.access(py, os.X_OK)
            and os.path.realpath(sys.prefix) != os.path.realpath(venv)):
        os.execv(py, [py, "-I", os.path.abspath(__file__)] + sys.argv[1:])
    die("export --parquet needs pyarrow, which %s lacks: run scripts/py-env (it makes the pinned analysis venv"
        " looked for in %s) or set CUMEMTRACE_PYTHON to a python that has pyarrow" % (sys.executable, venv))


# ---------------------------------------------------------------------------------------------------
# Tables: (name, SQL, columns as (name, type)) ; the SQL's columns are in this order

I, S = "int64", "string"
PROC_COLS = [("pid", I), ("host", S)]

ALLOC_COLS = [("seq", I), ("address", I), ("size", I), ("kind", S), ("api", S), ("alloc_ns", I),
              ("free_ns", I), ("stack_id", I), ("device", I), ("tid", I), ("stream", I), ("handle", I),
              ("aux", I), ("free_seq", I), ("free_api", S)]
EVENT_COLS = [("seq", I), ("ts_ns", I), ("tid", I), ("api", I), ("op", I), ("kind", I), ("device", I),
              ("context", I), ("address", I), ("size", I), ("stream", I), ("handle", I), ("aux", I),
              ("result", I), ("duration_ns", I), ("stack_id", I), ("free_bytes", I), ("total_bytes", I)]
EVENT_SQL = ("SELECT seq, ts_ns, tid, api, op, kind, device, context, address, size, stream, handle, aux,"
             " result, duration_ns, stack_id, free_bytes, total_bytes FROM events ORDER BY seq")
EVENT_NAMES = [("api_name", S), ("op_name", S), ("kind_name", S)]  # from the trace's lookup tables

STACK_COLS = [("stack_id", I), ("depth", I), ("function", S), ("module", S), ("ip", I), ("offset", I),
              ("build_id", S), ("symbol_offset", I)]
STACK_SQL = ("SELECT stack_id, depth, function, module, ip, offset, build_id, symbol_offset FROM stack_frames"
             " ORDER BY stack_id, depth")

FRAME_COLS = [("frame_id", I), ("ip", I), ("module_id", I), ("function", S), ("symbol_offset", I),
              ("module", S), ("module_base", I), ("build_id", S)]
FRAME_SQL = ("SELECT f.frame_id, f.ip, f.module_id, f.function, f.symbol_offset, m.path, m.base, m.build_id"
             " FROM frames f LEFT JOIN modules m ON m.module_id = f.module_id ORDER BY f.frame_id")

PROCESS_COLS = [("ppid", I), ("exe", S), ("argv", S), ("start_unix_ns", I), ("start_ns", I), ("end_ns", I),
                ("finalized", I), ("events_written", I), ("events_lost", I), ("stack_depth", I),
                ("local_rank", I), ("world_size", I), ("env", S), ("schema_version", I), ("path", S)]


def text(v):
    """SQLite may hold any bytes in TEXT; Parquet strings are UTF-8."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def as_int(v, what, path):
    if v is None or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    raise ExportError("%s: corrupt trace: %s holds %r where an integer belongs" % (path, what, v))


def parse_int(s):
    try:
        return int(str(s).strip(), 10)
    except (TypeError, ValueError):
        return None


class Pairer:
    """The `allocations` view of schema/cumemtrace.sql, computed in the one pass over the events (the view
    itself pairs with correlated subqueries: fine with the indexes a finalized trace has, quadratic in a
    trace whose writer was killed before building them). Same rows, same pairing rules, ops named through
    the trace's own ops table:
      - an acquire is a successful alloc, reserve, create, retain, map or ipc_open whose kind and api are
        in the lookup tables;
      - alloc/reserve/ipc_open: the first later successful release of op + 1 at the same address
        (several acquires of one address before it all pair with it, as the view's min() does);
      - create and retain (references to a handle): the handle's releases, last in first out, as the
        view's reference levels (handle_refs) pair them;
      - map: the first later successful unmap at the same address, else the first later one whose
        range covers the address.
    Rows come out when their release is seen (live ones at the end), not in seq order. Holds only what is
    live. Events columns: see EVENT_COLS."""

    def __init__(self, apis, kinds, ops):
        self.apis, self.kinds = apis, kinds
        op = {name: i for i, name in ops.items()}
        self.addr_acquire = {op[n] for n in ("alloc", "reserve", "ipc_open") if n in op}
        self.addr_release = {a + 1 for a in self.addr_acquire}
        self.handle_acquire = {op[n] for n in ("create", "retain") if n in op}
        self.release, self.map, self.unmap = op.get("release"), op.get("map"), op.get("unmap")
        self.by_addr = {}     # (op, address) -> [acquire rows]
        self.by_handle = {}   # handle -> [create and retain rows], the last reference last
        self.maps = {}        # address -> [[map row, first covering unmap or None]]
        self.uncovered = {}   # address -> the same entries, while they have no covering unmap yet
        self.out = []

    def emit(self, a, f):
        kind, api = self.kinds.get(a[5]), self.apis.get(a[3])
        if kind is None or api is None:
            return  # the view joins kinds and apis: an id they lack drops the row
        self.out.append((a[0], a[8], a[9], kind, api, a[1], f[1] if f else None, a[15], a[6], a[2], a[10], a[11],
                         a[12], f[0] if f else None, self.apis.get(f[3]) if f else None))

    def feed(self, rows):
        by_addr, by_handle, maps, uncovered = self.by_addr, self.by_handle, self.maps, self.uncovered
        apis_get, kinds_get, out_append = self.apis.get, self.kinds.get, self.out.append
        addr_acquire, addr_release, handle_acquire = self.addr_acquire, self.addr_release, self.handle_acquire
        release, map_op, unmap = self.release, self.map, self.unmap
        for r in rows:
            if r[13] != 0:
                continue
            op = r[4]
            if op in addr_acquire:
                by_addr.setdefault((op, r[8]), []).append(r)
            elif op in addr_release:
                pending = by_addr.pop((op - 1, r[8]), None)
                if pending is None:
                    continue
                free_api = apis_get(r[3])
                for a in pending:  # emit(), inline: this is most of the rows
                    kind, api = kinds_get(a[5]), apis_get(a[3])
                    if kind is not None and api is not None:
                        out_append((a[0], a[8], a[9], kind, api, a[1], r[1], a[15], a[6], a[2], a[10], a[11], a[12],
                                    r[0], free_api))
            elif op in handle_acquire:
                if r[11] is not None:
                    by_handle.setdefault(r[11], []).append(r)
            elif op == release:
                refs = by_handle.get(r[11])
                if refs:
                    self.emit(refs.pop(), r)
                    if not refs:
                        del by_handle[r[11]]
            elif op == map_op:
                e = [r, None]
                maps.setdefault(r[8], []).append(e)
                uncovered.setdefault(r[8], []).append(e)
            elif op == unmap:
                for e in maps.pop(r[8], ()):
                    self.emit(e[0], r)  # an unmap at the address itself wins over a covering one
                uncovered.pop(r[8], None)
                lo, size = r[8], r[9]
                if lo is not None and size is not None and uncovered:
                    for addr in [x for x in uncovered if x is not None and lo <= x < lo + size]:
                        for e in uncovered.pop(addr):
                            e[1] = r

    def take(self):
        out = self.out[:]
        del self.out[:]  # the same list: feed() holds its append
        return out

    def finish(self):
        """The acquires never released (a map may still have a covering unmap)."""
        for lst in self.by_addr.values():
            for a in lst:
                self.emit(a, None)
        for lst in self.by_handle.values():
            for a in lst:
                self.emit(a, None)
        for lst in self.maps.values():
            for a, cover in lst:
                self.emit(a, cover)
        self.by_addr, self.by_handle, self.maps, self.uncovered = {}, {}, {}, {}
        return self.take()


def env_of(db):
    return {text(k): text(v) for k, v in db.execute("SELECT CAST(name AS BLOB), CAST(value AS BLOB) FROM env")}


def rank_of(env):
    """The trace's rank: its RANK (as torchrun sets it) when that is an integer, else -1."""
    rank = parse_int(env.get("RANK"))
    return -1 if rank is None else rank


def read_rank(path):
    uri = "file:%s?mode=ro" % path.replace("?", "%3f").replace("#", "%23")
    try:
        db = sqlite3.connect(uri, uri=True)
        try:
            return rank_of(env_of(db))
        finally:
            db.close()
    except sqlite3.Error as e:
        raise ExportError("%s: cannot read trace: %s" % (path, e))


def export_group(job):
    """Exports the traces of one rank, in order (their part numbers follow each other). Runs in a worker
    process when there are several ranks."""
    staging, part_rows, tool_version, paths = job
    ex = Exporter(staging, part_rows, tool_version)
    return [ex.export_trace(p) for p in paths], ex.files


class Sink:
    """One table of one rank: rows in, part files out (part-N, N going on across the traces of the rank),
    at most part_rows rows each; at least one file, empty or not, so that every rank has every table."""

    def __init__(self, ex, table, rank, meta, cols, path, derive):
        pa = ex.pa
        self.ex, self.table, self.rank, self.cols, self.path, self.derive = ex, table, rank, cols, path, derive
        self.schema = ex.schema(cols, meta)
        self.dir = os.path.join(ex.staging, table, "rank=%d" % rank)
        os.makedirs(self.dir, exist_ok=True)
        self.writer, self.in_part, self.total = None, 0, 0
        self.types = [pa.int64() if t == I else pa.string() for _, t in cols]

    def open_part(self):
        key = (self.table, self.rank)
        n = self.ex.next_part.get(key, 0)
        self.ex.next_part[key] = n + 1
        self.ex.files += 1
        self.writer = self.ex.pq.ParquetWriter(os.path.join(self.dir, "part-%d.parquet" % n), self.schema,
                                               compression="zstd", write_statistics=True)
        self.in_part = 0

    def add(self, rows):
        """rows: tuples of the SQL's columns (the first ones of cols); derive() makes the rest."""
        pa = self.ex.pa
        cols_data = list(zip(*rows))
        off = 0
        while off < len(rows):
            if self.writer is None:
                self.open_part()
            take = min(len(rows) - off, self.ex.part_rows - self.in_part)
            arrays = []
            for (name, t), typ, data in zip(self.cols, self.types, cols_data):
                chunk = data if off == 0 and take == len(data) else data[off:off + take]
                try:
                    arrays.append(pa.array(chunk, type=typ, from_pandas=False))
                except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
                    want = str if t == S else int
                    bad = next((v for v in chunk if v is not None and type(v) is not want), "?")
                    raise ExportError("%s: corrupt trace: %s.%s holds %r where %s belongs"
                                      % (self.path, self.table, name, bad, "text" if t == S else "an integer"))
            arrays += self.derive(arrays, take)
            self.writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema), row_group_size=ROW_GROUP)
            off += take
            self.in_part += take
            self.total += take
            if self.in_part >= self.ex.part_rows:
                self.writer.close()
                self.writer = None

    def close(self):
        if self.writer is None and (self.table, self.rank) not in self.ex.next_part:
            self.open_part()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        return self.total


class Exporter:
    def __init__(self, staging, part_rows, tool_version):
        import pyarrow as pa
        import pyarrow.parquet as pq
        self.pa, self.pq = pa, pq
        self.staging = staging
        self.part_rows = part_rows
        self.tool_version = tool_version
        self.next_part = {}  # (table, rank) -> next part number
        self.files = 0

    def schema(self, cols, meta):
        pa = self.pa
        types = {I: pa.int64(), S: pa.string()}
        return pa.schema([pa.field(n, types[t]) for n, t in cols], metadata=meta)

    def sink(self, table, rank, meta, cols, path, derive):
        return Sink(self, table, rank, meta, cols, path, derive)

    def write_table(self, table, rank, meta, cols, batches, path, derive):
        sink = self.sink(table, rank, meta, cols, path, derive)
        try:
            for rows in batches:
                sink.add(rows)
        finally:
            total = sink.close()
        return total

    def export_trace(self, path):
        """Writes every table of one trace. Returns its entry for the marker."""
        uri = "file:%s?mode=ro" % path.replace("?", "%3f").replace("#", "%23")
        db = sqlite3.connect(uri, uri=True)
        try:
            return self._export(db, path)
        except sqlite3.Error as e:
            raise ExportError("%s: cannot read trace: %s" % (path, e))
        finally:
            db.close()

    def _export(self, db, path):
        pa = self.pa
        db.text_factory = bytes  # the few rows read whole here: decoded (invalid bytes replaced) by text()
        version = db.execute("PRAGMA user_version").fetchone()[0]
        proc = db.execute("SELECT pid, ppid, host, exe, argv, start_unix_ns, start_ns, end_ns, finalized,"
                          " events_written, events_lost, stack_depth FROM process").fetchone()
        if proc is None:
            raise ExportError("%s: incomplete trace: no process row" % path)
        pid, host = as_int(proc[0], "process.pid", path), text(proc[2])
        env = env_of(db)
        names = [{k: text(v) for k, v in db.execute("SELECT %s, name FROM %s" % (c, t))}
                 for c, t in (("api", "apis"), ("op", "ops"), ("kind", "kinds"))]
        db.text_factory = str
        rank = rank_of(env)
        meta = {b"cumemtrace.schema_version": str(version).encode(),
                b"cumemtrace.layout_version": str(LAYOUT_VERSION).encode(),
                b"cumemtrace.tool_version": self.tool_version.encode(),
                b"cumemtrace.rank": str(rank).encode(),
                b"cumemtrace.source": path.encode("utf-8", "replace")}
        counts = {}
        pid_v, host_v = pa.scalar(pid, pa.int64()), pa.scalar(host, pa.string())

        def constants(arrays, n):
            return [pa.repeat(pid_v, n), pa.repeat(host_v, n)]

        def stream(sql):
            """Row batches of sql. Text is read as str (fast); a value that is not UTF-8 switches the
            connection to replacing invalid bytes, and the query resumes where it stopped."""
            done = 0
            cur = db.execute(sql)
            while True:
                try:
                    rows = cur.fetchmany(ROW_GROUP)
                except sqlite3.OperationalError as e:
                    if db.text_factory is not str or "decode" not in str(e).lower():
                        raise
                    db.text_factory = lambda b: b.decode("utf-8", "replace")
                    cur = db.execute(sql)
                    skip = done
                    while skip > 0:
                        got = len(cur.fetchmany(min(skip, ROW_GROUP)))
                        if not got:
                            break
                        skip -= got
                    continue
                if not rows:
                    return
                done += len(rows)
                yield rows

        def table(name, cols, sql, derive=constants, batches=None):
            m = dict(meta)
            m[b"cumemtrace.table"] = name.encode()
            counts[name] = self.write_table(name, rank, m, cols + PROC_COLS, batches or stream(sql), path, derive)

        # events: api, op and kind named by the trace's own lookup tables (ids outside them: null)
        lookups = []
        for d in names:
            top = max([k for k in d if isinstance(k, int) and 0 <= k < 4096] or [0])
            lookups.append(pa.array([d.get(i) for i in range(top + 1)], type=pa.string()))

        def name_events(arrays, n):
            import pyarrow.compute as pc
            out = []
            for ids, lookup in zip(arrays[3:6], lookups):
                ok = pc.and_(pc.greater_equal(ids, 0), pc.less(ids, len(lookup)))
                out.append(pc.take(lookup, pc.if_else(ok, ids, pa.scalar(None, pa.int64()))))
            return out + constants(arrays, n)

        # One pass over the events writes them and, paired on the way, the allocations.
        def sink(name, cols, derive):
            m = dict(meta)
            m[b"cumemtrace.table"] = name.encode()
            return self.sink(name, rank, m, cols + PROC_COLS, path, derive)

        def blocks():
            """A block-form trace's events (schema version 5), about a block at a time, decoded here rather
            than into a TEMP table: the same rows, in seq order, as EVENT_SQL reads from a row-form trace."""
            try:
                yield from cmt_blocks.event_rows(db)
            except ValueError as e:
                raise ExportError("%s: %s" % (path, e))

        pairer = Pairer(names[0], names[2], names[1])
        sinks = [sink("allocations", ALLOC_COLS, constants), sink("events", EVENT_COLS + EVENT_NAMES, name_events)]
        try:
            for rows in blocks() if cmt_blocks.is_block_form(db) else stream(EVENT_SQL):
                sinks[1].add(rows)
                pairer.feed(rows)
                if len(pairer.out) >= ROW_GROUP:
                    sinks[0].add(pairer.take())
            done = pairer.finish()
            if done:
                sinks[0].add(done)
        finally:
            counts["allocations"], counts["events"] = sinks[0].close(), sinks[1].close()
        table("stacks", STACK_COLS, STACK_SQL)
        table("frames", FRAME_COLS, FRAME_SQL)
        prow = (as_int(proc[1], "process.ppid", path), text(proc[3]), text(proc[4])) + tuple(proc[5:12]) + (
            parse_int(env.get("LOCAL_RANK")), parse_int(env.get("WORLD_SIZE")),
            json.dumps(env, sort_keys=True), version, path)
        table("processes", PROCESS_COLS, None, batches=iter([[prow]]))
        return {"path": path, "rank": rank, "pid": pid, "host": host, "schema_version": version, "rows": counts}


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="cmt_export.py")
    ap.add_argument("format", choices=["parquet"])
    ap.add_argument("out")
    ap.add_argument("--part-rows", type=int, default=4 * 1024 * 1024)
    ap.add_argument("--tool-version", default="unknown")
    ap.add_argument("--jobs", type=int, default=0, help="worker processes (default: the CPUs, at most 8)")
    ap.add_argument("traces", nargs="+")
    a = ap.parse_args(argv)
    if a.part_rows < 1:
        die("--part-rows must be at least 1")
    out = a.out
    try:
        old = check_out(out)
    except ExportError as e:
        die(str(e))
    import_pyarrow()
    created = not os.path.isdir(out)
    staging = os.path.join(out, STAGING)
    try:
        os.makedirs(out, exist_ok=True)
        if os.path.isdir(staging):
            shutil.rmtree(staging)  # ours: the remains of an export that was killed
        os.mkdir(staging)
        # One group per rank, exported in parallel: ranks never share a directory, so workers never
        # share a file; the traces of one rank stay in one worker, in input order.
        groups = {}
        for p in a.traces:
            groups.setdefault(read_rank(p), []).append(p)
        jobs = [(staging, a.part_rows, a.tool_version, paths) for paths in groups.values()]
        workers = min(a.jobs or min(os.cpu_count() or 1, 8), len(jobs))
        if workers <= 1:
            results = [export_group(j) for j in jobs]
        else:
            # concurrent.futures, not multiprocessing.Pool: a worker that dies (killed, out of memory)
            # fails the export instead of hanging it
            import concurrent.futures
            import multiprocessing
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                results = list(pool.map(export_group, jobs))
        by_path = {}
        nfiles = 0
        for entries, files in results:
            nfiles += files
            for e in entries:
                by_path.setdefault(e["path"], []).append(e)
        traces = [by_path[p].pop(0) for p in a.traces]
        marker = {"format": "cumemtrace-parquet", "layout_version": LAYOUT_VERSION, "tool_version": a.tool_version,
                  "tables": list(TABLES), "part_rows": a.part_rows, "traces": traces}
        # the new export is complete: replace the old one (our files only), then move it into place
        remove_old(out, old)
        for t in TABLES:
            os.rename(os.path.join(staging, t), os.path.join(out, t))
        os.rmdir(staging)
        tmp = os.path.join(out, MARKER + ".tmp")
        with open(tmp, "w") as f:
            json.dump(marker, f, indent=1)
            f.write("\n")
        os.replace(tmp, os.path.join(out, MARKER))
    except (ExportError, OSError, Exception) as e:  # one line, and nothing of ours left half-written
        shutil.rmtree(staging, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(e, ExportError):
            die(str(e))
        if isinstance(e, OSError):
            die("%s: %s" % (e.filename or out, e.strerror or e))
        die("export failed: %s: %s" % (type(e).__name__, e))
    ranks = sorted({t["rank"] for t in traces})
    total = {t: sum(x["rows"][t] for x in traces) for t in TABLES}
    print("exported %d trace%s (%d rank%s) to %s: %d allocations, %d events, %d stack frames, %d frames in %d files"
          % (len(traces), "" if len(traces) == 1 else "s", len(ranks), "" if len(ranks) == 1 else "s", out,
             total["allocations"], total["events"], total["stacks"], total["frames"], nfiles))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
