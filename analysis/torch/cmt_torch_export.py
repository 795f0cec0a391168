#!/usr/bin/env python3
"""cmt_torch_export.py: a cumemtrace trace back into a PyTorch memory snapshot that pytorch.org/memory_viz
opens (`cumemtrace export-torch TRACE -o OUT.pickle`).

    cmt_torch_export.py export TRACE.db OUT.pickle

The newest imported allocator history of the trace (its segments, blocks and trace entries, with their
Python frames), or for a driver-only trace one segment per live device allocation with its native frames.
Reads the trace read-only (a block-form trace's events decoded a block at a time by cmt_blocks.py, copied
beside this file) and writes OUT whole or not at all (a temporary file renamed). Run by the `cumemtrace`
command (cmd_import_torch.c); the import, the way in, is importers/torch/cmt_torch_import.py's.
Errors are one line on stderr ("cumemtrace: ...") and exit status 1. Python's standard library only.
"""
import json
import operator
import os
import pickle
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cmt_blocks  # noqa: E402  (schema/cmt_blocks.py, copied beside this file)


class Bad(Exception):
    """Input we refuse: one line for the user."""


def _stack_frames(db, stack_id, cache):
    if stack_id is None:
        return []
    if stack_id not in cache:
        cache[stack_id] = [{"name": n or "", "filename": f or "", "line": l or 0} for n, f, l in db.execute(
            "SELECT f.name, f.filename, f.line FROM alloc_stacks s JOIN alloc_frames f USING (frame_id)"
            " WHERE s.stack_id = ? ORDER BY s.depth", (stack_id,))]
    return cache[stack_id]


def _driver_frames(db, stack_id, cache):
    if stack_id is None:
        return []
    key = ("d", stack_id)
    if key not in cache:
        cache[key] = [{"name": fn or "??", "filename": os.path.basename(mod or "??"), "line": 0}
                      for fn, mod in db.execute("SELECT function, module FROM stack_frames WHERE stack_id = ?"
                                                " ORDER BY depth", (stack_id,))]
    return cache[key]


def _events(db, db_path):
    """(seq, ts_ns, op, kind, device, address, size, result, stack_id, free_bytes) of every event in seq
    order: from the events table, or decoded a block at a time from a block-form trace (schema version 5)."""
    if not cmt_blocks.is_block_form(db):
        yield from db.execute("SELECT seq, ts_ns, op, kind, device, address, size, result, stack_id, free_bytes"
                              " FROM events ORDER BY seq")
        return
    pick = operator.itemgetter(0, 1, 4, 5, 6, 8, 9, 13, 15, 16)  # cmt_blocks.COLUMNS
    try:
        for rows in cmt_blocks.event_rows(db):
            yield from map(pick, rows)
    except ValueError as e:
        raise Bad("%s: %s" % (db_path, e))


def export(db_path, out_path):
    try:
        db = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
        ver = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as e:
        raise Bad("%s: cannot open the trace: %s" % (db_path, e))
    cache = {}
    snap = {"segments": [], "device_traces": [], "allocator_settings": {}, "external_annotations": []}
    sid = db.execute("SELECT max(snapshot_id) FROM alloc_snapshots").fetchone()[0] if ver >= 2 else None
    if sid is not None:
        for row in db.execute("SELECT device, address, total_size, stream, segment_type, is_expandable, stack_id,"
                              " pool_id FROM alloc_segments WHERE snapshot_id = ? ORDER BY device, address", (sid,)):
            dev, addr, total, stream, stype, exp, stack, pool = row
            blocks = [{"address": a, "size": s, "requested_size": r, "state": st,
                       "frames": _stack_frames(db, k, cache)}
                      for a, s, r, st, k in db.execute("SELECT address, size, requested_size, state, stack_id FROM"
                                                       " alloc_blocks WHERE snapshot_id = ? AND segment_address = ?"
                                                       " AND device = ? ORDER BY address", (sid, addr, dev))]
            act = [b for b in blocks if b["state"].startswith("active")]
            snap["segments"].append({
                "device": dev, "address": addr, "total_size": total, "stream": stream or 0,
                "segment_type": stype or "large", "segment_pool_id": tuple(int(x) for x in pool.split(","))
                if pool and all(p.strip().isdigit() for p in pool.split(",")) else (0, 0),
                "is_expandable": bool(exp), "frames": _stack_frames(db, stack, cache), "blocks": blocks,
                "allocated_size": sum(b["size"] for b in act), "active_size": sum(b["size"] for b in act),
                "requested_size": sum(b["requested_size"] or 0 for b in act)})
        ndev = (db.execute("SELECT max(device) FROM alloc_trace WHERE snapshot_id = ?", (sid,)).fetchone()[0] or 0) + 1
        snap["device_traces"] = [[] for _ in range(ndev)]
        for dev, action, addr, size, stream, t_us, ts, stack in db.execute(
                "SELECT device, action, addr, size, stream, time_us, ts_ns, stack_id FROM alloc_trace"
                " WHERE snapshot_id = ? AND synthetic = 0 ORDER BY entry_id", (sid,)):
            entry = {"action": action, "addr": addr, "size": size, "stream": stream or 0,
                     "time_us": t_us if t_us is not None else (ts or 0) // 1000,
                     "frames": _stack_frames(db, stack, cache)}
            if action == "oom":
                entry["device_free"] = addr  # both spellings: older readers look in addr
            snap["device_traces"][dev].append(entry)
        st = db.execute("SELECT settings FROM alloc_snapshots WHERE snapshot_id = ?", (sid,)).fetchone()[0]
        if st:
            snap["allocator_settings"] = json.loads(st)
    else:
        # a driver-level trace: each device allocation is a segment holding one block
        start_unix, start = db.execute("SELECT start_unix_ns, start_ns FROM process").fetchone()
        live = {}
        traces = {}
        # op and kind numbers from the trace's own vocabulary, by name
        OP = dict(db.execute("SELECT name, op FROM ops"))
        KIND = dict(db.execute("SELECT name, kind FROM kinds"))
        for seq, ts, op, kind, dev, addr, size, result, stack, free_b in _events(db, db_path):
            dev = dev or 0
            t_us = (ts - (start or 0) + (start_unix or 0)) // 1000
            tr = traces.setdefault(dev, [])
            fr = _driver_frames(db, stack, cache)
            if result != 0:
                if op == OP["alloc"]:
                    tr.append({"action": "oom", "addr": free_b or 0, "device_free": free_b or 0, "size": size or 0,
                               "stream": 0, "time_us": t_us, "frames": fr})
                continue
            if op == OP["alloc"] and kind in (KIND["device"], KIND["stream_ordered"]):
                live[addr] = (dev, size, fr)
                tr.append({"action": "segment_alloc", "addr": addr, "size": size, "stream": 0, "time_us": t_us,
                           "frames": fr})
                tr.append({"action": "alloc", "addr": addr, "size": size, "stream": 0, "time_us": t_us, "frames": fr})
            elif op == OP["free"] and addr in live:
                _, sz, fr0 = live.pop(addr)
                for a in ("free_requested", "free_completed", "segment_free"):
                    tr.append({"action": a, "addr": addr, "size": sz, "stream": 0, "time_us": t_us, "frames": fr0})
        for addr, (dev, size, fr) in sorted(live.items()):
            blk = {"address": addr, "size": size, "requested_size": size, "state": "active_allocated", "frames": fr}
            snap["segments"].append({"device": dev, "address": addr, "total_size": size, "stream": 0,
                                     "segment_type": "large", "segment_pool_id": (0, 0), "is_expandable": False,
                                     "frames": fr, "blocks": [blk], "allocated_size": size, "active_size": size,
                                     "requested_size": size})
        if traces and not all(isinstance(d, int) and 0 <= d < 1024 for d in traces):
            raise Bad("%s: corrupt trace: device ids out of range" % db_path)
        ndev = max(traces) + 1 if traces else 1
        snap["device_traces"] = [traces.get(d, []) for d in range(ndev)]
    db.close()
    tmp = out_path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            pickle.dump(snap, f, protocol=4)
        os.replace(tmp, out_path)
    except OSError as e:
        raise Bad("%s: %s" % (out_path, e.strerror or e))


def main(argv):
    try:
        if len(argv) == 3 and argv[0] == "export":
            export(argv[1], argv[2])
            return 0
        sys.stderr.write("usage: cmt_torch_export.py export TRACE OUT.pickle\n")
        return 2
    except Bad as e:
        sys.stderr.write("cumemtrace: %s\n" % e)
        return 1
    except Exception as e:  # anything else is damaged input we did not foresee: still one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        sys.stderr.write("cumemtrace: %s: cannot export: %s: %s\n" % (argv[2] if len(argv) > 2 else "?",
                                                                     type(e).__name__, msg))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
