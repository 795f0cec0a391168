#!/usr/bin/env python3
"""Robustness fuzzer for the `cumemtrace` analyzer's readers (not a unittest).

    python3 tests/fuzz_traces.py --build BUILD_DIR [--seed N] [--count N] [--jobs 2] [--out DIR]

Builds valid seed traces (tests/tracebuilder.py, plus a recorded run and an imported PyTorch snapshot when
the build and the data are there), mutates copies of them -- bytes (flipped/zeroed/duplicated pages,
truncation, header fields, a -wal file left beside) and semantics (SQL on a copy: NULLs, huge/negative
values, unknown ids, broken stacks, hostile names, missing tables, wrong versions, inconsistent allocator
tables) -- and runs every verb on each mutant with a timeout. The promise checked: on bad input one line on
stderr and a non-zero exit; never a signal, a sanitizer report, a hang, output on stdout when failing, or
malformed output (JSON, SVG, HTML, CSV, folded stacks, pickle) when succeeding.

Build with sanitizers for the best results:
    meson setup /tmp/fuzz-build -Db_sanitize=address,undefined -Db_lundef=false && ninja -C /tmp/fuzz-build

Prints a summary and, per distinct finding, a reproducer (the mutation, the command, its output); the
mutant files are kept under --out.
"""
import argparse
import csv
import html.parser
import io
import json
import os
import pickle
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import cmtlib  # noqa: E402  (to_row_form)
DEFAULT_SNAPSHOT = "/work/shared/data/torch-snapshots/silmont2000__assignment2-systems/mem_snapshot.pickle"
TIMEOUT = 10

MARK = "cmtfz"
EVIL_NAMES = [
    "NULL", "''", "'%s;semi;colon'" % MARK, "'%s' || char(10) || 'newline'" % MARK,
    "'%s\"dq''sq`bt'" % MARK, "'</script><%s>&amp;<!--'" % MARK, "'<%s attr=\"x\">&'" % MARK,
    "CAST(x'636d74667ac328ff80fe' AS TEXT)",  # invalid UTF-8
    "'%s' || char(1) || char(27) || '[31m' || char(127)" % MARK,
    "replace(hex(zeroblob(60000)), '00', 'ab')",  # 120000 characters
    "'_Z'", "'_ZN'", "'_ZZZZZZZZZ'", "'_Z1f' || replace(hex(zeroblob(3000)), '00', 'PF')",  # deep demangling
    "'_ZN' || replace(hex(zeroblob(2000)), '00', '1a') || 'E'",
    "x'00ff00ff'", "12345", "1.5e308", "'%s' || char(0) || 'after_nul'" % MARK, "'%%s%%n%%p'",
]
EVIL_INTS = ["NULL", "0", "-1", "1", "99", "1000000", "-9223372036854775808", "9223372036854775807",
             "4611686018427387904", "4294967296", "1e308", "-1e308", "'text'", "x'ff00'", "''", "0.5"]

# table -> (key expression for deterministic subsets, columns)
TABLES = {
    "events": ("seq", ["seq", "ts_ns", "tid", "api", "op", "kind", "device", "context", "address", "size",
                       "stream", "handle", "aux", "result", "duration_ns", "stack_id", "free_bytes",
                       "total_bytes"]),
    "process": ("rowid", ["pid", "ppid", "host", "exe", "argv", "start_unix_ns", "start_ns", "end_ns",
                          "finalized", "events_written", "events_lost", "stack_depth"]),
    "devices": ("device", ["device", "name", "total_bytes", "uuid", "driver_version"]),
    "threads": ("tid", ["tid", "name"]),
    "apis": ("api", ["api", "name", "base", "op", "kind"]),
    "ops": ("op", ["op", "name"]),
    "kinds": ("kind", ["kind", "name"]),
    "modules": ("module_id", ["module_id", "path", "build_id", "base", "size"]),
    "frames": ("frame_id", ["frame_id", "ip", "module_id", "function", "symbol_offset"]),
    "stacks": ("stack_id * 1000 + depth", ["stack_id", "depth", "frame_id"]),
    "meta": ("rowid", ["key", "value"]),
    "env": ("rowid", ["name", "value"]),
    "alloc_snapshots": ("snapshot_id", ["snapshot_id", "path", "reason", "imported_unix_ns", "settings",
                                        "history_complete", "entries", "synthesized"]),
    "alloc_frames": ("frame_id", ["frame_id", "name", "filename", "line", "python"]),
    "alloc_stacks": ("stack_id * 1000 + depth", ["stack_id", "depth", "frame_id"]),
    "alloc_segments": ("rowid", ["snapshot_id", "device", "address", "total_size", "allocated_size",
                                 "active_size", "requested_size", "stream", "segment_type", "pool_id",
                                 "is_expandable", "stack_id", "largest_free_block", "event_seq"]),
    "alloc_blocks": ("rowid", ["snapshot_id", "device", "segment_address", "address", "size",
                               "requested_size", "state", "stack_id"]),
    "alloc_trace": ("entry_id", ["entry_id", "snapshot_id", "device", "action", "addr", "size", "block_size",
                                 "stream", "time_us", "ts_ns", "stack_id", "synthetic", "end_entry",
                                 "allocated_bytes", "reserved_bytes", "largest_free_block", "compile_context",
                                 "user_metadata"]),
    "alloc_state": ("rowid", ["snapshot_id", "device", "point", "entry_id", "allocated_bytes",
                              "reserved_bytes", "requested_bytes", "internal_bytes", "external_bytes",
                              "largest_free_block", "peak_reserved_bytes"]),
    "alloc_annotations": ("rowid", ["snapshot_id", "device", "stage", "name", "time_us", "ts_ns"]),
}
NAME_COLS = [("frames", "function"), ("modules", "path"), ("devices", "name"), ("devices", "uuid"),
             ("apis", "name"), ("apis", "base"), ("kinds", "name"), ("ops", "name"), ("process", "host"),
             ("process", "exe"), ("process", "argv"), ("threads", "name"), ("env", "value"),
             ("alloc_frames", "name"), ("alloc_frames", "filename"), ("alloc_trace", "action"),
             ("alloc_trace", "compile_context"), ("alloc_trace", "user_metadata"), ("alloc_state", "point"),
             ("alloc_segments", "segment_type"), ("alloc_segments", "pool_id"), ("alloc_blocks", "state"),
             ("alloc_snapshots", "settings"), ("alloc_snapshots", "path"), ("alloc_annotations", "name"),
             ("alloc_annotations", "stage")]


def subset(rng, table):
    key = TABLES[table][0]
    m = rng.choice([1, 1, 2, 3, 7, 50])
    return "(%s) %% %d = %d" % (key, m, rng.randrange(m)) if m > 1 else "1"


# ---- semantic mutations: each returns (description, [sql...]) -------------------------------------------
def m_null_or_value(rng):
    t = rng.choice(list(TABLES))
    c = rng.choice(TABLES[t][1])
    v = rng.choice(EVIL_INTS)
    return "set %s.%s=%s" % (t, c, v), ["UPDATE %s SET %s = %s WHERE %s" % (t, c, v, subset(rng, t))]


def m_evil_name(rng):
    t, c = rng.choice(NAME_COLS)
    v = rng.choice(EVIL_NAMES)
    return "name %s.%s=%s" % (t, c, v[:40]), ["UPDATE %s SET %s = %s WHERE %s" % (t, c, v, subset(rng, t))]


def m_events_ids(rng):
    c = rng.choice(["api", "op", "kind"])
    v = rng.choice(["0", "99", "-1", "12", "NULL", "1000000"])
    return "unknown events.%s=%s" % (c, v), ["UPDATE events SET %s = %s WHERE %s" % (c, v, subset(rng, "events"))]


def m_events_order(rng):
    return rng.choice([
        ("reverse ts", ["UPDATE events SET ts_ns = 30000000000 - ts_ns"]),
        ("seq negative", ["UPDATE events SET seq = -seq"]),
        ("seq reversed", ["UPDATE events SET seq = seq + 1000000", "UPDATE events SET seq = 2000000 - seq"]),
        ("seq sparse huge", ["UPDATE events SET seq = seq * 1000000000000"]),
        ("ts before start", ["UPDATE events SET ts_ns = 0"]),
        ("ts huge", ["UPDATE events SET ts_ns = 9223372036854775807 - seq"]),
        ("ts min", ["UPDATE events SET ts_ns = -9223372036854775808 + seq"]),
    ])


def _rebuild_events_nopk():
    return ["PRAGMA legacy_alter_table=ON", "CREATE TABLE ev2 AS SELECT * FROM events", "DROP TABLE events",
            "ALTER TABLE ev2 RENAME TO events"]


def m_events_pairs(rng):
    return rng.choice([
        ("frees without allocations", ["DELETE FROM events WHERE op IN (1,3,5,7,9) AND seq % 2 = 0"]),
        ("no frees", ["DELETE FROM events WHERE op IN (2,4,6,8,10)"]),
        ("double frees", ["INSERT INTO events SELECT seq + 100000, ts_ns + 1, tid, api, op, kind, device, context,"
                          " address, size, stream, handle, aux, result, duration_ns, stack_id, free_bytes,"
                          " total_bytes FROM events WHERE op % 2 = 0"]),
        ("double allocs", ["INSERT INTO events SELECT seq + 100000, ts_ns + 1, tid, api, op, kind, device, context,"
                           " address, size, stream, handle, aux, result, duration_ns, stack_id, free_bytes,"
                           " total_bytes FROM events WHERE op % 2 = 1"]),
        ("duplicate seqs", _rebuild_events_nopk() + ["INSERT INTO events SELECT * FROM events WHERE seq % 3 = 0"]),
        ("all addresses 0", ["UPDATE events SET address = 0"]),
        ("all addresses -1", ["UPDATE events SET address = -1"]),
        ("huge sizes", ["UPDATE events SET size = 9223372036854775807 WHERE op % 2 = 1"]),
        ("huge sizes 2^62", ["UPDATE events SET size = 4611686018427387904"]),
        ("negative sizes", ["UPDATE events SET size = -seq * 1048576"]),
        ("min sizes", ["UPDATE events SET size = -9223372036854775808"]),
        ("results negative", ["UPDATE events SET result = -1 WHERE seq % 2 = 0"]),
        ("free/total huge", ["UPDATE events SET free_bytes = 9223372036854775807, total_bytes = -1"]),
        ("one event", ["DELETE FROM events WHERE seq > (SELECT min(seq) FROM events)"]),
        ("no events", ["DELETE FROM events"]),
        ("real sizes", ["UPDATE events SET size = size + 0.5"]),
        ("text addresses", ["UPDATE events SET address = 'addr' || address"]),
        ("many events", ["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000)"
                         " INSERT INTO events SELECT 1000000 + x, 20000000000 + x, 1, 1, 1, 1, 0, 0, x * 4096,"
                         " 4096, NULL, NULL, NULL, 0, 1, NULL, NULL, NULL FROM c"]),
        ("many devices", ["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000)"
                          " INSERT INTO events SELECT 1000000 + x, 20000000000 + x, 1, 1, 1, 1, x, 0, x * 4096,"
                          " 4096, NULL, NULL, NULL, 0, 1, NULL, NULL, NULL FROM c"]),
        ("device ids huge", ["UPDATE events SET device = 1000000 + seq % 3"]),
        ("device ids negative", ["UPDATE events SET device = -1 - seq % 3"]),
        ("device int max", ["UPDATE events SET device = 2147483648"]),
    ])


def m_stacks(rng):
    return rng.choice([
        ("stack_id nowhere", ["UPDATE events SET stack_id = 999999 WHERE %s" % subset(rng, "events")]),
        ("stack_id -1", ["UPDATE events SET stack_id = -1"]),
        ("stack frame nowhere", ["UPDATE stacks SET frame_id = 999999 WHERE %s" % subset(rng, "stacks")]),
        ("stack depth 0 missing", ["DELETE FROM stacks WHERE depth = 0"]),
        ("stack odd depths missing", ["DELETE FROM stacks WHERE depth % 2 = 1"]),
        ("stack depth huge", ["UPDATE stacks SET depth = depth + 1000000000"]),
        ("stack depth negative", ["UPDATE stacks SET depth = -1 - depth"]),
        ("stack depth deep", ["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)"
                              " INSERT OR IGNORE INTO stacks SELECT s.stack_id, 1000 + x, s.frame_id FROM c,"
                              " (SELECT stack_id, min(frame_id) AS frame_id FROM stacks GROUP BY stack_id) s"]),
        ("no frames", ["DELETE FROM frames"]),
        ("no modules", ["DELETE FROM modules"]),
        ("frames module nowhere", ["UPDATE frames SET module_id = 424242"]),
        ("frames ip/base extreme", ["UPDATE frames SET ip = -9223372036854775808",
                                    "UPDATE modules SET base = 9223372036854775807"]),
        ("many distinct stacks", ["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)"
                                  " INSERT INTO frames SELECT 100000 + x, x, NULL, 'f' || x, 0 FROM c",
                                  "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)"
                                  " INSERT INTO stacks SELECT 100000 + x, 0, 100000 + x FROM c",
                                  "UPDATE events SET stack_id = 100000 + seq"]),
    ])


def m_tables(rng):
    t = rng.choice(list(TABLES) + ["stack_frames", "pairs", "allocations", "failures"])
    what = rng.choice(["drop", "empty", "dup", "rename_col"])
    if t in ("stack_frames", "pairs", "allocations", "failures"):
        return "drop view %s" % t, ["DROP VIEW %s" % t]
    if what == "drop":
        return "drop table %s" % t, ["PRAGMA legacy_alter_table=ON", "DROP TABLE %s" % t]
    if what == "empty":
        return "empty table %s" % t, ["DELETE FROM %s" % t]
    if what == "dup":
        return "duplicate rows %s" % t, ["INSERT OR IGNORE INTO %s SELECT * FROM %s" % (t, t)] + (
            ["PRAGMA legacy_alter_table=ON", "CREATE TABLE x2 AS SELECT * FROM %s" % t,
             "INSERT INTO x2 SELECT * FROM %s" % t, "DROP TABLE %s" % t, "ALTER TABLE x2 RENAME TO %s" % t])
    c = rng.choice(TABLES[t][1])
    return "rename column %s.%s" % (t, c), ["PRAGMA legacy_alter_table=ON",
                                            "ALTER TABLE %s RENAME COLUMN %s TO %s_gone" % (t, c, c)]


def m_meta(rng):
    return rng.choice([
        ("user_version 0", ["PRAGMA user_version=0"]), ("user_version 2", ["PRAGMA user_version=2"]),
        ("user_version 3", ["PRAGMA user_version=3"]), ("user_version 99", ["PRAGMA user_version=99"]),
        ("user_version -1", ["PRAGMA user_version=-1"]),
        ("format wrong", ["UPDATE meta SET value = 'cumemtrace2' WHERE key = 'format'"]),
        ("format NULL", ["UPDATE meta SET value = NULL WHERE key = 'format'"]),
        ("format int", ["UPDATE meta SET value = 7 WHERE key = 'format'"]),
        ("format blob", ["UPDATE meta SET value = CAST('cumemtrace' AS BLOB) WHERE key = 'format'"]),
        ("format with NUL", ["UPDATE meta SET value = CAST('cumemtrace' || char(0) || 'x' AS TEXT) WHERE key = 'format'"]),
        ("no format", ["DELETE FROM meta WHERE key = 'format'"]),
        ("schema_version text", ["UPDATE meta SET value = 'abc' WHERE key = 'schema_version'"]),
        ("schema_version 99", ["UPDATE meta SET value = 99 WHERE key = 'schema_version'"]),
        ("drop meta", ["DROP TABLE meta"]),
        ("meta view", ["DROP TABLE meta", "CREATE VIEW meta AS SELECT 'format' AS key, 'cumemtrace' AS value"]),
    ])


def m_process_devices(rng):
    return rng.choice([
        ("process empty", ["DELETE FROM process"]),
        ("process 2 rows", ["INSERT INTO process SELECT * FROM process"]),
        ("process 2 different rows", ["INSERT INTO process SELECT pid + 1, ppid, 'other', exe, argv, start_unix_ns,"
                                      " start_ns - 1000000000, end_ns, finalized, events_written, events_lost,"
                                      " stack_depth FROM process"]),
        ("process unfinalized", ["UPDATE process SET finalized = 0, end_ns = NULL"]),
        ("process end before start", ["UPDATE process SET end_ns = start_ns - 1000000000000"]),
        ("process start huge", ["UPDATE process SET start_ns = 9223372036854775807"]),
        ("process start min", ["UPDATE process SET start_ns = -9223372036854775808"]),
        ("events_lost huge", ["UPDATE process SET events_lost = 9223372036854775807, events_written = -1"]),
        ("argv not json", ["UPDATE process SET argv = '[\"unterminated'"]),
        ("argv object", ["UPDATE process SET argv = '{\"a\": [1, {\"b\": null}]}'"]),
        ("argv deep", ["UPDATE process SET argv = replace(hex(zeroblob(50000)), '00', '[[')"]),
        ("argv evil", ["UPDATE process SET argv = '[\"<%s>\", \"a\\nb\", \"\\u0000\", \"\\ud800\"]'" % MARK]),
        ("stack_depth 0", ["UPDATE process SET stack_depth = 0"]),
        ("devices empty", ["DELETE FROM devices"]),
        ("devices id 1000000", ["UPDATE devices SET device = 1000000 + device"]),
        ("devices id negative", ["UPDATE devices SET device = -5 - device"]),
        ("devices total 0", ["UPDATE devices SET total_bytes = 0"]),
        ("devices total -1", ["UPDATE devices SET total_bytes = -1"]),
        ("devices total huge", ["UPDATE devices SET total_bytes = 9223372036854775807"]),
        ("devices many", ["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000)"
                          " INSERT OR IGNORE INTO devices SELECT x, 'gpu' || x, 1 << 30, 'GPU-' || x, 1 FROM c"]),
        ("wal mode set", ["PRAGMA journal_mode=WAL"]),
    ])


def m_alloc(rng):
    return rng.choice([
        ("blocks outside segments", ["UPDATE alloc_blocks SET segment_address = 12345 WHERE %s" % subset(rng, "alloc_blocks")]),
        ("blocks address far", ["UPDATE alloc_blocks SET address = address + 1099511627776"]),
        ("blocks negative size", ["UPDATE alloc_blocks SET size = -size"]),
        ("blocks huge size", ["UPDATE alloc_blocks SET size = 9223372036854775807"]),
        ("blocks state unknown", ["UPDATE alloc_blocks SET state = 'bogus' WHERE %s" % subset(rng, "alloc_blocks")]),
        ("segments negative", ["UPDATE alloc_segments SET total_size = -total_size, largest_free_block = -1"]),
        ("segments zero", ["UPDATE alloc_segments SET total_size = 0"]),
        ("segments huge", ["UPDATE alloc_segments SET total_size = 9223372036854775807"]),
        ("segments overlap", ["UPDATE alloc_segments SET address = 4096"]),
        ("segments event_seq nowhere", ["UPDATE alloc_segments SET event_seq = 99999999"]),
        ("trace action unknown", ["UPDATE alloc_trace SET action = 'bogus' WHERE %s" % subset(rng, "alloc_trace")]),
        ("trace action NULL", ["UPDATE alloc_trace SET action = NULL WHERE %s" % subset(rng, "alloc_trace")]),
        ("trace end_entry nowhere", ["UPDATE alloc_trace SET end_entry = 99999999"]),
        ("trace end_entry self", ["UPDATE alloc_trace SET end_entry = entry_id"]),
        ("trace end_entry before", ["UPDATE alloc_trace SET end_entry = entry_id - 1"]),
        ("trace end_entry -1", ["UPDATE alloc_trace SET end_entry = -1"]),
        ("trace entry ids negative", ["UPDATE alloc_trace SET entry_id = -entry_id"]),
        ("trace entry ids huge", ["UPDATE alloc_trace SET entry_id = entry_id + 9000000000000000000"]),
        ("trace sizes negative", ["UPDATE alloc_trace SET size = -size, block_size = -block_size"]),
        ("trace bytes huge", ["UPDATE alloc_trace SET allocated_bytes = 9223372036854775807, reserved_bytes = -9223372036854775808"]),
        ("trace block_size huge", ["UPDATE alloc_trace SET block_size = 4611686018427387904"]),
        ("trace ts reversed", ["UPDATE alloc_trace SET ts_ns = -ts_ns"]),
        ("trace ts NULL", ["UPDATE alloc_trace SET ts_ns = NULL"]),
        ("trace device huge", ["UPDATE alloc_trace SET device = 1000000 + entry_id % 2"]),
        ("trace device negative", ["UPDATE alloc_trace SET device = -1"]),
        ("trace stack nowhere", ["UPDATE alloc_trace SET stack_id = 99999999"]),
        ("trace snapshot nowhere", ["UPDATE alloc_trace SET snapshot_id = 77"]),
        ("state point unknown", ["UPDATE alloc_state SET point = 'bogus'"]),
        ("state entry nowhere", ["UPDATE alloc_state SET entry_id = 99999999"]),
        ("state duplicated", ["INSERT INTO alloc_state SELECT * FROM alloc_state"]),
        ("state device huge", ["UPDATE alloc_state SET device = 2147483648"]),
        ("state values negative", ["UPDATE alloc_state SET allocated_bytes = -1, reserved_bytes = -2,"
                                   " external_bytes = -3, largest_free_block = -4"]),
        ("snapshots empty", ["DELETE FROM alloc_snapshots"]),
        ("snapshots newest empty", ["INSERT INTO alloc_snapshots VALUES (99, 'x', 'import', 0, NULL, 1, 0, 0)"]),
        ("snapshots id huge", ["UPDATE alloc_snapshots SET snapshot_id = 9223372036854775807",
                               "UPDATE alloc_trace SET snapshot_id = 9223372036854775807",
                               "UPDATE alloc_state SET snapshot_id = 9223372036854775807",
                               "UPDATE alloc_segments SET snapshot_id = 9223372036854775807",
                               "UPDATE alloc_blocks SET snapshot_id = 9223372036854775807"]),
        ("settings bad json", ["UPDATE alloc_snapshots SET settings = '{\"x\": '"]),
        ("alloc_stacks frame nowhere", ["UPDATE alloc_stacks SET frame_id = 99999999"]),
        ("alloc_stacks deep", ["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)"
                               " INSERT OR IGNORE INTO alloc_stacks SELECT s.stack_id, 1000 + x, s.frame_id FROM c,"
                               " (SELECT stack_id, min(frame_id) AS frame_id FROM alloc_stacks GROUP BY stack_id) s"]),
        ("alloc_frames line huge", ["UPDATE alloc_frames SET line = 9223372036854775807, python = 7"]),
        ("annotations evil", ["INSERT INTO alloc_annotations VALUES (1, 0, 'START', '<%s>&\"', -1, -9223372036854775808)" % MARK]),
        ("many trace rows", ["WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)"
                             " INSERT INTO alloc_trace SELECT 10000000 + x, (SELECT max(snapshot_id) FROM alloc_snapshots),"
                             " 0, 'alloc', x * 512, 512, 512, 0, x, x, NULL, 0, NULL, x * 512, x * 512, NULL, NULL, NULL FROM c"]),
    ])


def m_blocks(rng):
    """The block form of events (schema version 5, schema/cmt_blocks.h): damaged blocks and headers."""
    return rng.choice([
        ("block cut short", ["UPDATE events_blocks SET data = substr(data, 1, length(data) - 1 - abs(random() % 50))"]),
        ("block bytes added", ["UPDATE events_blocks SET data = CAST(data || x'00' AS BLOB)"]),
        ("block newer format", ["UPDATE events_blocks SET data = CAST(x'02' || substr(data, 2) AS BLOB)"]),
        ("block zero rows", ["UPDATE events_blocks SET data = CAST(x'0100' || substr(data, 3) AS BLOB)"]),
        ("block random bytes", ["UPDATE events_blocks SET data = randomblob(length(data))"]),
        ("block one byte flipped", ["UPDATE events_blocks SET data = CAST(substr(data, 1, length(data) / 2) ||"
                                    " x'ff' || substr(data, length(data) / 2 + 2) AS BLOB)"]),
        ("block header rows", ["UPDATE events_blocks SET nrows = nrows + 1"]),
        ("block header seqs", ["UPDATE events_blocks SET first_seq = first_seq + 1"]),
        ("block header last", ["UPDATE events_blocks SET last_seq = NULL"]),
        ("block data text", ["UPDATE events_blocks SET data = 'not a block'"]),
        ("block twice", ["INSERT INTO events_blocks SELECT first_seq + 1000000000, last_seq + 1000000000, nrows, data"
                         " FROM events_blocks"]),
        ("blocks gone", ["DELETE FROM events_blocks"]),
        ("blocks and rows", ["CREATE TABLE events (seq INTEGER PRIMARY KEY, ts_ns, tid, api, op, kind, device,"
                             " context, address, size, stream, handle, aux, result, duration_ns, stack_id,"
                             " free_bytes, total_bytes)"]),
    ])


SEMANTIC = [(m_null_or_value, 5), (m_evil_name, 4), (m_events_ids, 2), (m_events_order, 2), (m_events_pairs, 4),
            (m_stacks, 3), (m_tables, 3), (m_meta, 2), (m_process_devices, 3), (m_alloc, 5), (m_blocks, 3)]


def pick_semantic(rng):
    fs = [f for f, w in SEMANTIC for _ in range(w)]
    return rng.choice(fs)(rng)


def relax_schema(path):
    """Drops NOT NULL constraints (so NULLs can go where the schema forbids them); the reader never checks."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA writable_schema=ON")
    db.execute("UPDATE sqlite_master SET sql = replace(sql, 'NOT NULL', '') WHERE type = 'table'"
               " AND name NOT IN ('stacks', 'alloc_stacks')")
    db.commit()
    db.close()


def apply_sql(path, stmts, wal=False):
    """Runs stmts on path; returns those that applied. wal=True leaves them in a -wal file beside it."""
    applied = []
    db = sqlite3.connect(path, isolation_level=None)
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA wal_autocheckpoint=0")
    for s in stmts:
        try:
            db.execute(s)
            applied.append(s)
        except sqlite3.Error:
            pass
    if wal:
        # copy the files while the connection is still open: the -wal is not checkpointed into the main file
        tmp = path + ".walcopy"
        shutil.copyfile(path, tmp)
        shutil.copyfile(path + "-wal", tmp + "-wal")
        db.close()
        for side in ("-wal", "-shm"):
            if os.path.exists(path + side):
                os.unlink(path + side)
        os.replace(tmp, path)
        os.replace(tmp + "-wal", path + "-wal")
    else:
        db.close()
    return applied


# ---- byte mutations ----------------------------------------------------------------------------------------
def page_size(data):
    if len(data) >= 18 and data[:16] == b"SQLite format 3\0":
        ps = int.from_bytes(data[16:18], "big")
        return 65536 if ps == 1 else (ps or 4096)
    return 4096


def byte_ops(rng, size, ps):
    npages = max(1, size // ps)
    kinds = ["flip", "flip", "flip", "truncate", "zero", "dup", "header", "append", "swap"]
    ops = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        k = rng.choice(kinds)
        p = rng.randrange(npages) if rng.random() > 0.25 else 0
        if k == "flip":
            ops.append(("flip", p, [(rng.randrange(ps), rng.randrange(1, 256)) for _ in range(rng.choice([1, 2, 8, 32]))]))
        elif k == "truncate":
            ops.append(("truncate", rng.choice([rng.randrange(size), (rng.randrange(npages)) * ps, 100, 50, 99])))
        elif k == "zero":
            ops.append(("zero", p))
        elif k == "dup":
            ops.append(("dup", p, rng.randrange(npages)))
        elif k == "swap":
            ops.append(("swap", p, rng.randrange(npages)))
        elif k == "append":
            ops.append(("append", rng.randrange(1, 3 * ps)))
        else:
            off, width = rng.choice([(16, 2), (18, 1), (19, 1), (20, 1), (28, 4), (32, 4), (36, 4), (40, 4),
                                     (44, 4), (48, 4), (52, 4), (56, 4), (60, 4), (64, 4), (92, 4), (96, 4)])
            ops.append(("header", off, rng.choice([0, 1, 2, 3, 0xff, 0x7f, rng.randrange(256)]), width))
    return ops


def apply_byte_ops(data, ops, ps, rng_bytes_seed):
    b = bytearray(data)
    r = random.Random(rng_bytes_seed)
    for op in ops:
        if op[0] == "flip":
            base = op[1] * ps
            for off, x in op[2]:
                if base + off < len(b):
                    b[base + off] ^= x
        elif op[0] == "truncate":
            del b[op[1]:]
        elif op[0] == "zero":
            b[op[1] * ps:(op[1] + 1) * ps] = bytes(len(b[op[1] * ps:(op[1] + 1) * ps]))
        elif op[0] == "dup":
            src = bytes(b[op[1] * ps:(op[1] + 1) * ps])
            b[op[2] * ps:op[2] * ps + len(src)] = src
        elif op[0] == "swap":
            a, c = op[1], op[2]
            pa, pc = bytes(b[a * ps:(a + 1) * ps]), bytes(b[c * ps:(c + 1) * ps])
            if len(pa) == len(pc):
                b[a * ps:(a + 1) * ps], b[c * ps:(c + 1) * ps] = pc, pa
        elif op[0] == "append":
            b += bytes(r.randrange(256) for _ in range(op[1]))
        elif op[0] == "header":
            _, off, val, width = op
            if off + width <= len(b):
                b[off:off + width] = bytes([val] * width)
    return bytes(b)


# ---- seeds --------------------------------------------------------------------------------------------------
def build_seeds(args, work):
    from tracebuilder import TraceBuilder, GiB, MiB
    seeds = {}

    def rich(path, finalized=True):
        t = TraceBuilder(path, devices=((0, "Simulated GPU", 24 * GiB), (1, "Second GPU", 16 * GiB)))
        s1 = t.stack(["_Z5trainv", "main"])
        s2 = t.stack(["_ZN5torch4cuda6mallocEm", ("forward", "/opt/app/lib/libmodel.so"), None, "main"])
        s3 = t.stack([None, None])
        live = []
        for i in range(30):
            a = t.alloc((i + 1) * MiB, stack=[s1, s2, s3][i % 3], device=i % 2)
            live.append(a)
            if i % 3 == 0:
                t.free(live.pop(0))
        t.fail(40 * GiB, stack=s1, free_bytes=GiB)
        h = t.alloc_host(4 * MiB, stack=s2)
        t.free_host(h)
        x = t.alloc_async(8 * MiB, stack=s2)
        t.free_async(x)
        t.alloc_managed(2 * MiB, stack=s1)
        va = t.reserve(64 * MiB, stack=s1)
        hd = t.create(32 * MiB, stack=s2)
        t.map(va, 32 * MiB, hd, stack=s2)
        t.unmap(va, 32 * MiB)
        t.release(hd)
        t.unreserve(va, 64 * MiB)
        t.close(finalized=finalized)
        return path

    seeds["tb_v1"] = rich(os.path.join(work, "tb_v1.db"))
    seeds["tb_v1_unfinalized"] = rich(os.path.join(work, "tb_v1_unfinalized.db"), finalized=False)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:verify_asan_link_order=0")
    lib = os.path.join(args.build, "interpose", "libcumemtrace.so")
    sim = os.path.join(args.build, "tests", "simcuda")
    if os.path.exists(lib):
        pre = lib
        try:
            asan = subprocess.run(["cc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
            if asan and os.path.isabs(asan) and os.path.exists(asan):
                pre = asan + ":" + lib
        except OSError:
            pass
        for name, exe, extra in (("direct", "tests/clients/direct_client", {}),
                                 ("train_sim", "examples/train_sim", {"SIMCUDA_MEMORY": "8GiB"})):
            out = os.path.join(work, name + ".db")
            e = dict(env, LD_LIBRARY_PATH=sim, LD_PRELOAD=pre, CUMEMTRACE_OUTPUT=out, **extra)
            if os.path.exists(os.path.join(args.build, exe)):
                subprocess.run([os.path.join(args.build, exe)], env=e, capture_output=True, timeout=60)
                if os.path.exists(out):
                    seeds[name] = out
                    # the same run with its events as rows (schema version 5 allows both): what the SQL
                    # mutations of events act on
                    rows = os.path.join(work, name + "_rows.db")
                    cmtlib.wait_trace(out)  # its writer finishes it after the program's exit
                    shutil.copyfile(out, rows)
                    cmtlib.to_row_form(rows)
                    seeds[name + "_rows"] = rows
    if args.snapshot and os.path.exists(args.snapshot):
        out = os.path.join(work, "torch_only.db")
        if os.path.exists(out):
            os.unlink(out)
        r = subprocess.run([args.cumemtrace, "import-torch", args.snapshot, "-o", out], env=env, capture_output=True)
        if r.returncode == 0:
            seeds["torch_only"] = out
        base = seeds.get("train_sim", seeds["tb_v1"])
        out = os.path.join(work, "torch_joined.db")
        shutil.copyfile(base, out)
        r = subprocess.run([args.cumemtrace, "import-torch", args.snapshot, "-o", out], env=env, capture_output=True)
        if r.returncode == 0:
            seeds["torch_joined"] = out
    return seeds


# ---- output validation --------------------------------------------------------------------------------------
class _HTMLCheck(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.bad = None

    def handle_starttag(self, tag, attrs):
        if tag.startswith(MARK):
            self.bad = "unescaped injected tag <%s>" % tag


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError("global %s.%s" % (module, name))


def _strict_json(text):
    def bad(c):
        raise ValueError("non-standard constant %s" % c)
    return json.loads(text, parse_constant=bad)


def check_output(kind, stdout, outfile):
    """Returns None if the output of a successful run is well-formed, else a reason."""
    try:
        if kind in ("report", "flame", "diff"):
            text = stdout.decode("utf-8")
            if "\0" in text:
                return "NUL byte on stdout"
            if kind == "flame":
                for ln in text.splitlines():
                    if not re.fullmatch(r".+ \d+", ln):
                        return "malformed folded line %r" % ln[:120]
                    if MARK + ";semi" in ln:
                        return "';' inside a frame name not escaped: %r" % ln[:120]
            return None
        if kind in ("report_json", "diff_json"):
            _strict_json(stdout.decode("utf-8"))
            return None
        if not os.path.exists(outfile):
            return "exit 0 but no output file"
        data = open(outfile, "rb").read()
        if kind == "export":
            with open(outfile, "rb") as f:
                _NoGlobals(f).load()
            return None
        text = data.decode("utf-8")
        if kind == "svg":
            ET.fromstring(data)
            return None
        if kind == "html":
            p = _HTMLCheck()
            p.feed(text)
            p.close()
            if "<" + MARK in text and p.bad:
                return p.bad
            if not text.rstrip().lower().endswith("</html>"):
                return "HTML does not end with </html>"
            return None
        if kind == "json":
            _strict_json(text)
            return None
        if kind == "csv":
            rows = list(csv.reader(io.StringIO(text)))
            if not rows:
                return "empty CSV"
            n = len(rows[0])
            for i, r in enumerate(rows):
                if len(r) != n:
                    return "CSV row %d has %d fields, header %d" % (i, len(r), n)
            return None
    except Exception as e:  # noqa: BLE001 -- any parse failure is the finding
        return "%s: %s" % (type(e).__name__, str(e)[:200])
    return None


# ---- running ------------------------------------------------------------------------------------------------
VERBS = [
    # name, argv template, output kind ({T} mutant, {G} good seed, {O} output path, {S} snapshot)
    ("report", ["report", "{T}"], "report", None),
    ("report --json", ["report", "--json", "{T}"], "report_json", None),
    ("report --html", ["report", "--html", "{O}", "{T}"], "html", ".html"),
    ("timeline svg", ["timeline", "-o", "{O}", "{T}"], "svg", ".svg"),
    ("timeline html", ["timeline", "-o", "{O}", "{T}"], "html", ".html"),
    ("timeline csv", ["timeline", "-o", "{O}", "{T}"], "csv", ".csv"),
    ("timeline json", ["timeline", "-o", "{O}", "{T}"], "json", ".json"),
    ("flame", ["flame", "{T}"], "flame", None),
    ("flame --at-peak", ["flame", "--at-peak", "{T}"], "flame", None),
    ("flame --leaked", ["flame", "--leaked", "{T}"], "flame", None),
    ("diff A", ["diff", "{T}", "{G}"], "diff", None),
    ("diff --json B", ["diff", "--json", "{G}", "{T}"], "diff_json", None),
    ("import-torch", ["import-torch", "{S}", "-o", "{TC}"], "import", None),
    ("export-torch", ["export-torch", "{T}", "-o", "{O}"], "export", ".pickle"),
]


def run_one(args, verb, mutant, good, tmpdir):
    name, tmpl, kind, ext = verb
    out = os.path.join(tmpdir, "out" + (ext or ""))
    for p in (out,):
        if os.path.exists(p):
            os.unlink(p)
    tc = None
    if "{TC}" in tmpl:
        if not args.snapshot or not os.path.exists(args.snapshot):
            return None
        tc = os.path.join(tmpdir, "import_target.db")
        for side in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(tc + side):
                os.unlink(tc + side)
        if os.path.exists(mutant) and os.path.isfile(mutant):
            shutil.copyfile(mutant, tc)
            if os.path.exists(mutant + "-wal"):
                shutil.copyfile(mutant + "-wal", tc + "-wal")
        elif os.path.isdir(mutant):
            tc = mutant
    argv = [args.cumemtrace] + [a.replace("{T}", mutant).replace("{G}", good).replace("{O}", out)
                                .replace("{S}", args.snapshot or "").replace("{TC}", tc or "") for a in tmpl]
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=%d:verify_asan_link_order=0:abort_on_error=0:"
               "allocator_may_return_null=1" % (1 if args.leaks else 0),
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=0")
    t0 = time.time()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         env=env, cwd=tmpdir, start_new_session=True)
    try:
        so, se = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        so, se = p.communicate()
        return dict(verb=name, cls="hang", argv=argv, rc=None, stdout=so, stderr=se, secs=TIMEOUT)
    rc = p.returncode
    secs = time.time() - t0
    err = se.decode("utf-8", "replace")
    res = dict(verb=name, argv=argv, rc=rc, stdout=so, stderr=se, secs=secs, cls=None)
    if "AddressSanitizer" in err or "LeakSanitizer" in err:
        res["cls"] = "asan"
    elif "runtime error:" in err:
        res["cls"] = "ubsan"
    elif rc < 0:
        res["cls"] = "crash"
    elif rc != 0:
        if so:
            res["cls"] = "stdout-on-failure"
        elif se.count(b"\n") != 1 or not se.endswith(b"\n") or not se.strip():
            res["cls"] = "stderr-not-one-line"
        elif ext and os.path.exists(out):
            res["cls"] = "partial-output-file"
        elif b"cumemtrace" not in se[:40]:
            res["cls"] = "unprefixed-error"
    else:
        if kind == "import":
            pass
        else:
            why = check_output(kind, so, out)
            if why:
                res["cls"] = "bad-output"
                res["why"] = why
    return res


def signature(res):
    err = res["stderr"].decode("utf-8", "replace")
    if res["cls"] in ("asan", "ubsan", "crash"):
        m = re.search(r"(runtime error: [^\n]*|ERROR: AddressSanitizer: [\w-]+)", err)
        what = re.sub(r"0x[0-9a-f]+|-?\d+", "N", m.group(1)) if m else "signal %s" % res["rc"]
        m2 = re.search(r"^(/work/main/[^\s:]+:\d+)", err, re.M) or re.search(r"(/work/main/[^\s:]+:\d+)", err)
        frames = re.findall(r"#\d+ 0x[0-9a-f]+ in (\S+) (\S+:\d+)", err)
        loc = next((f"{fn} {pl}" for fn, pl in frames if "/work/main/" in pl or "analysis/" in pl or "schema/" in pl),
                   m2.group(1) if m2 else "")
        return (res["cls"], what, loc)
    if res["cls"] == "bad-output":
        return (res["cls"], res["verb"], re.sub(r"\d+", "N", res.get("why", ""))[:80])
    first = err.strip().splitlines()[0] if err.strip() else ""
    first = re.sub(r"/tmp/\S+", "PATH", first)
    first = re.sub(r"\d+", "N", first)
    return (res["cls"], res["verb"].split()[0], first[:100])


# ---- fixed mutants ------------------------------------------------------------------------------------------
def fixed_mutants(seeds, work):
    good = seeds["tb_v1"]
    out = []

    def mk(name, fn):
        p = os.path.join(work, "fixed_" + name + ".db")
        for side in ("", "-wal", "-shm", "-journal"):
            if os.path.isdir(p + side):
                shutil.rmtree(p + side)
            elif os.path.lexists(p + side):
                os.unlink(p + side)
        fn(p)
        out.append((name, p))

    mk("missing", lambda p: None)
    mk("empty", lambda p: open(p, "wb").close())
    mk("directory", lambda p: os.makedirs(p, exist_ok=True))
    mk("text", lambda p: open(p, "w").write("hello, not a database\n"))
    mk("header_only", lambda p: open(p, "wb").write(open(good, "rb").read()[:100]))
    mk("one_page", lambda p: open(p, "wb").write(open(good, "rb").read()[:4096]))
    mk("random_4k", lambda p: open(p, "wb").write(random.Random(1).randbytes(4096)))
    mk("sqlite_header_garbage", lambda p: open(p, "wb").write(b"SQLite format 3\0" + random.Random(2).randbytes(8192)))

    def foreign(p):
        db = sqlite3.connect(p)
        db.execute("CREATE TABLE foo (x)")
        db.commit()
        db.close()
    mk("foreign_sqlite", foreign)

    def foreign_meta(p):
        db = sqlite3.connect(p)
        db.execute("CREATE TABLE meta (key, value)")
        db.execute("INSERT INTO meta VALUES ('format', 'other')")
        db.commit()
        db.close()
    mk("foreign_meta", foreign_meta)

    def only_meta(p):
        db = sqlite3.connect(p)
        db.execute("CREATE TABLE meta (key, value)")
        db.execute("INSERT INTO meta VALUES ('format', 'cumemtrace')")
        db.execute("PRAGMA user_version=1")
        db.commit()
        db.close()
    mk("only_meta_v1", only_meta)

    def only_meta2(p):
        only_meta(p)
        db = sqlite3.connect(p)
        db.execute("PRAGMA user_version=2")
        db.commit()
        db.close()
    mk("only_meta_v2", only_meta2)

    def empty_sqlite(p):
        sqlite3.connect(p).close()
        open(p, "ab").close()
    mk("empty_sqlite_0bytes", empty_sqlite)

    def newer(p):
        shutil.copyfile(good, p)
        db = sqlite3.connect(p)
        db.execute("PRAGMA user_version=5")
        db.commit()
        db.close()
    mk("newer_schema", newer)

    def utf16(p):
        db = sqlite3.connect(p)
        db.execute("PRAGMA encoding='UTF-16le'")
        db.executescript(open(os.path.join(ROOT, "schema", "cumemtrace.sql")).read())
        db.execute("INSERT INTO meta VALUES ('format', 'cumemtrace')")
        db.execute("PRAGMA user_version=1")
        db.commit()
        db.close()
    mk("utf16_empty_tables", utf16)

    def wal_uncommitted_shm(p):
        shutil.copyfile(good, p)
        apply_sql(p, ["UPDATE process SET finalized = 0, end_ns = NULL", "DELETE FROM events WHERE seq > 10"], wal=True)
    mk("wal_left_beside", wal_uncommitted_shm)

    def wal_garbage(p):
        shutil.copyfile(good, p)
        open(p + "-wal", "wb").write(random.Random(3).randbytes(10000))
    mk("wal_garbage", wal_garbage)

    def journal_hot(p):
        shutil.copyfile(good, p)
        open(p + "-journal", "wb").write(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7" + random.Random(4).randbytes(5000))
    mk("hot_journal_garbage", journal_hot)

    def fifo(p):
        os.mkfifo(p)
    mk("fifo", fifo)
    out.append(("dev_null", "/dev/null"))
    return out


def make_mutant(i, args, seeds, work):
    rng = random.Random(args.seed * 1_000_003 + i)
    seed_name = rng.choice(sorted(seeds))
    src = seeds[seed_name]
    path = os.path.join(work, "m%05d.db" % i)
    for side in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(path + side):
            os.unlink(path + side)
    r = rng.random()
    if r < 0.35:
        data = open(src, "rb").read()
        ps = page_size(data)
        ops = byte_ops(rng, len(data), ps)
        open(path, "wb").write(apply_byte_ops(data, ops, ps, rng.random()))
        return dict(i=i, path=path, seed=seed_name, kind="bytes", ops=ops, desc="bytes %r" % (ops,))
    shutil.copyfile(src, path)
    relax_schema(path)
    muts = [pick_semantic(rng) for _ in range(rng.choice([1, 1, 2, 3]))]
    wal = rng.random() < 0.1
    stmts = [s for _, ss in muts for s in ss]
    applied = apply_sql(path, stmts, wal=wal)
    return dict(i=i, path=path, seed=seed_name, kind="sql", muts=muts, wal=wal, applied=applied,
                desc="sql%s %s" % (" (left in -wal)" if wal else "", "; ".join(d for d, _ in muts)))


def minimize(args, m, res, seeds, work, good, tmpdir):
    """For a multi-step mutant, finds one step alone that reproduces the same signature (or None)."""
    if m["kind"] == "fixed":
        return None
    sig = signature(res)
    verb = next(v for v in VERBS if v[0] == res["verb"])
    steps = m["muts"] if m["kind"] == "sql" else [(repr(o), o) for o in m["ops"]]
    if len(steps) <= 1:
        return None
    for d, step in steps:
        p = os.path.join(work, "min_%05d.db" % m["i"])
        for side in ("", "-wal", "-shm"):
            if os.path.exists(p + side):
                os.unlink(p + side)
        if m["kind"] == "sql":
            shutil.copyfile(seeds[m["seed"]], p)
            relax_schema(p)
            apply_sql(p, step, wal=m["wal"])
        else:
            data = open(seeds[m["seed"]], "rb").read()
            open(p, "wb").write(apply_byte_ops(data, [step], page_size(data), 0.5))
        r2 = run_one(args, verb, p, good, tmpdir)
        if r2 and r2["cls"] and signature(r2) == sig:
            return d, p
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="meson build directory (preferably with sanitizers)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=300, help="random mutants (plus the fixed ones)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=None, help="where mutants and reproducers are kept (default: a temp dir)")
    ap.add_argument("--snapshot", default=DEFAULT_SNAPSHOT, help="PyTorch snapshot for import-torch")
    ap.add_argument("--leaks", action="store_true", help="also report LeakSanitizer findings")
    ap.add_argument("--verbs", default=None, help="comma-separated subset of verb names")
    ap.add_argument("--time-limit", type=float, default=1200, help="stop starting mutants after this many seconds")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    args.cumemtrace = os.path.join(args.build, "analysis", "cumemtrace")
    if not os.path.exists(args.cumemtrace):
        sys.exit("fuzz_traces: no %s (build first)" % args.cumemtrace)
    global VERBS
    if args.verbs:
        keep = [v.strip() for v in args.verbs.split(",")]
        VERBS = [v for v in VERBS if v[0] in keep]
    work = os.path.abspath(args.out or tempfile.mkdtemp(prefix="fuzz_traces."))
    os.makedirs(work, exist_ok=True)
    t0 = time.time()
    seeds = build_seeds(args, work)
    good = seeds["tb_v1"]
    print("seeds: %s" % ", ".join("%s (%d bytes)" % (k, os.path.getsize(v)) for k, v in sorted(seeds.items())))
    # sanity: every verb must succeed on every seed, or the fuzzing says nothing
    sanity_dir = tempfile.mkdtemp(dir=work, prefix="sanity.")
    for k, v in sorted(seeds.items()):
        for verb in VERBS:
            r = run_one(args, verb, v, good, sanity_dir)
            if r and (r["cls"] or r["rc"] != 0):
                print("SEED PROBLEM %s %s: rc=%s cls=%s %s %s" % (k, verb[0], r["rc"], r["cls"], r.get("why", ""),
                                                               r["stderr"][:300]))
    mutants = []
    findings = {}  # signature -> list of (mutant, result)
    counts = {}
    nruns = 0

    def do_mutant(m, tmpdir):
        rs = []
        for verb in VERBS:
            if m.get("verbs") and verb[0] not in m["verbs"]:
                continue
            r = run_one(args, verb, m["path"], good, tmpdir)
            if r:
                rs.append(r)
        return m, rs

    fixed = [dict(i=-1 - j, path=p, seed="-", kind="fixed", desc="fixed: " + n,
                  # a FIFO blocks every verb for the whole timeout: two verbs are enough to show it
                  verbs=("report", "import-torch") if n == "fifo" else None)
             for j, (n, p) in enumerate(fixed_mutants(seeds, work))]
    tmpdirs = [tempfile.mkdtemp(dir=work, prefix="run%d." % j) for j in range(args.jobs)]

    def gen():
        for m in fixed:
            yield m
        for i in range(args.count):
            if time.time() - t0 > args.time_limit:
                return
            yield make_mutant(i, args, seeds, work)

    with ThreadPoolExecutor(max_workers=args.jobs) as ex:
        pending = []
        slot = 0
        for m in gen():
            mutants.append(m)
            pending.append(ex.submit(do_mutant, m, tmpdirs[slot % args.jobs]))
            slot += 1
            if len(pending) >= args.jobs:
                for f in pending:
                    mm, rs = f.result()
                    for r in rs:
                        nruns += 1
                        k = r["cls"] or ("ok" if r["rc"] == 0 else "clean-error")
                        counts[k] = counts.get(k, 0) + 1
                        if r["cls"]:
                            findings.setdefault(signature(r), []).append((mm, r))
                pending = []
        for f in pending:
            mm, rs = f.result()
            for r in rs:
                nruns += 1
                k = r["cls"] or ("ok" if r["rc"] == 0 else "clean-error")
                counts[k] = counts.get(k, 0) + 1
                if r["cls"]:
                    findings.setdefault(signature(r), []).append((mm, r))
    elapsed = time.time() - t0
    sev = {"asan": 0, "crash": 0, "ubsan": 1, "hang": 0, "bad-output": 2, "stdout-on-failure": 3,
           "stderr-not-one-line": 3, "partial-output-file": 4, "unprefixed-error": 5}
    print("\n%d mutants (%d fixed), %d runs in %.0f s; %d distinct findings" % (
        len(mutants), len(fixed), nruns, elapsed, len(findings)))
    bycls = {}
    for sig, lst in findings.items():
        bycls[sig[0]] = bycls.get(sig[0], 0) + len(lst)
    print("all runs by outcome: %s" % ", ".join("%s=%d" % kv for kv in sorted(counts.items())))
    print("failing runs by class: %s" % (", ".join("%s=%d" % kv for kv in sorted(bycls.items())) or "none"))
    mintmp = tempfile.mkdtemp(dir=work, prefix="min.")
    for n, (sig, lst) in enumerate(sorted(findings.items(), key=lambda kv: (sev.get(kv[0][0], 9), -len(kv[1])))):
        # prefer the simplest reproducer: fixed mutants, then single-step ones
        lst.sort(key=lambda mr: (mr[0]["kind"] != "fixed", len(mr[0].get("muts", mr[0].get("ops", []))), mr[0]["i"]))
        m, r = lst[0]
        print("\n=== [%d] %s  (%d runs, %d mutants)" % (n + 1, " | ".join(s for s in sig if s), len(lst),
                                                         len({x[0]["i"] for x in lst})))
        print("  seed trace: %s   mutant: %s" % (m["seed"], m["path"]))
        print("  mutation:   %s" % m["desc"])
        if m["kind"] == "sql":
            for s in m["applied"]:
                print("    SQL: %s" % s[:300])
        mn = minimize(args, m, r, seeds, work, good, mintmp)
        if mn:
            print("  minimal:    %s  (file %s)" % (mn[0], mn[1]))
        print("  command:    %s" % " ".join(r["argv"]).replace(args.cumemtrace, "cumemtrace"))
        print("  rc=%s  %.2fs  %s" % (r["rc"], r["secs"], r.get("why", "")))
        if r["stdout"]:
            print("  stdout: %r" % r["stdout"][:300])
        err = r["stderr"].decode("utf-8", "replace")
        lines = err.splitlines()
        keep = [ln for ln in lines if "runtime error" in ln or "ERROR:" in ln or "SUMMARY" in ln
                or re.search(r"#\d+ .*(analysis|schema)/", ln)][:8] or lines[:6]
        if "Traceback" in err:
            keep = [ln for ln in lines if re.search(r'File ".*cmt_torch_\w+\.py", line', ln)][-1:] + lines[-1:]
        for ln in keep:
            print("  stderr: %s" % ln[:300])
        with open(os.path.join(work, "repro_%d.stderr" % (n + 1)), "wb") as f:
            f.write(r["stderr"])
        others = sorted({x[1]["verb"] for x in lst})
        print("  verbs affected: %s" % ", ".join(others))
    print("\nsummary: %d mutants, %d runs, %.0f s, %d distinct findings (%s)" % (
        len(mutants), nruns, time.time() - t0, len(findings),
        ", ".join("%s=%d" % kv for kv in sorted(bycls.items())) or "clean"))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
