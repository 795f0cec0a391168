#!/usr/bin/env python3
"""cmt_torch_import.py: PyTorch memory snapshots into cumemtrace traces (schema version 2 tables).

    cmt_torch_import.py import SNAPSHOT.pickle TRACE.db [--reason import|exit|oom]

`import` reads a memory snapshot (torch.cuda.memory._snapshot() / _dump_snapshot(), every variant we know:
a bare list of segments from torch 1.13, blocks with a `history` list from torch 2.0, `device_traces` with
TraceEntry dicts from 2.1 on, `allocator_settings` and `external_annotations` from 2.4 on) into the alloc_*
tables of an existing trace, which `cumemtrace import-torch` has created or upgraded to the current version
before running us, and its record_function annotations and user_metadata tags as ranges (_write_ranges).
(`cumemtrace export-torch`, the way back, is analysis/torch/cmt_torch_export.py's.)

An importer: a writer of traces apart from the analyzer, run by cumemtrace-import-torch
(importers/torch_import.c), which `cumemtrace import-torch` and `run --torch` start; never inside the
profiled program. The
pickle is read with an Unpickler whose find_class always raises: a snapshot holds only dicts, lists, strings,
numbers and tuples, so any global is hostile or not a snapshot. Python's standard library only. Errors are
one line on stderr ("cumemtrace: ...") and exit status 1; nothing is written unless everything was read.

History completion. Most snapshots begin recording after warm-up: frees of blocks allocated before the
history, segments freed that were created before it, blocks and segments of the final state never touched
by it. As PyTorch's memory_viz does, the state before the first entry is rebuilt backwards from the final
segments and those frees, and written as synthesized entries (alloc_trace.synthetic = 1) at the start, so a
replay of alloc_trace from empty always ends in the snapshot's segments.

Sizes. Trace entries carry the bytes *requested*; torch.cuda.memory_allocated counts the *block* sizes
(rounded to 512 bytes, sometimes more when a remainder was too small to split). alloc_trace.block_size is
the final segments' own figure for every block still present at the end; for the others the replay works
out the free block each allocation was cut from (the span up to the next live block or the end of its
segment) and applies the allocator's split rule (block_extent), which is exact when the history is complete;
the 'end' figures come from the segments themselves and are exact.
"""
import json
import os
import pickle
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cmt_blocks  # noqa: E402  (schema/cmt_blocks.py, copied beside this file)

ROUND = 512


class Bad(Exception):
    """Input we refuse: one line for the user."""


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise Bad("refusing a pickle that names a Python global (%s.%s): not a plain memory snapshot"
                  % (module, name))


def load_snapshot(path):
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if not head:
                raise Bad("%s: empty file, not a memory snapshot" % path)
            obj = _NoGlobals(f).load()
    except Bad:
        raise
    except OSError as e:
        raise Bad("%s: %s" % (path, e.strerror or e))
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            UnicodeDecodeError, MemoryError, OverflowError) as e:
        raise Bad("%s: not a PyTorch memory snapshot (unreadable pickle: %s)" % (path, str(e).splitlines()[0]
                                                                                   if str(e) else type(e).__name__))
    return obj


# ---------------------------------------------------------------------------------------------------------
# Normalizing the variants

def _int(v, default=0):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    return default


def _frames(raw):
    out = []
    if not isinstance(raw, (list, tuple)):
        return out
    for f in raw:
        if isinstance(f, dict):
            out.append((str(f.get("name", "")), str(f.get("filename", "")), _int(f.get("line"), 0)))
        elif isinstance(f, (list, tuple)) and len(f) >= 3:  # defensive: (filename, line, name)
            out.append((str(f[2]), str(f[0]), _int(f[1], 0)))
    return out


def _pool(pool):
    """A pool id ((0, 0), [1, 0]...) as 'a,b'; None when absent."""
    if isinstance(pool, (list, tuple)):
        return ",".join(str(_int(x)) for x in pool)
    return None if pool is None else str(pool)


def normalize(obj, path):
    """-> dict(segments=[...], traces={device: [entries]}, settings, annotations). Raises Bad."""
    if isinstance(obj, list):  # torch 1.13: the segments alone
        obj = {"segments": obj}
    if not isinstance(obj, dict) or "segments" not in obj or not isinstance(obj["segments"], (list, tuple)):
        raise Bad("%s: not a PyTorch memory snapshot (no 'segments' list)" % path)
    segs = []
    for s in obj["segments"]:
        if not isinstance(s, dict) or "address" not in s or "total_size" not in s:
            raise Bad("%s: not a PyTorch memory snapshot (a segment without address/total_size)" % path)
        addr = _int(s["address"])
        blocks = []
        off = addr
        for b in s.get("blocks") or []:
            if not isinstance(b, dict) or "size" not in b:
                raise Bad("%s: not a PyTorch memory snapshot (a block without size)" % path)
            size = _int(b["size"])
            frames = _frames(b.get("frames"))
            req = b.get("requested_size")
            hist = b.get("history")  # torch 2.0: [{'addr', 'real_size', 'frames'}]
            if isinstance(hist, list) and hist and isinstance(hist[-1], dict):
                if not frames:
                    frames = _frames(hist[-1].get("frames"))
                if req is None:
                    req = hist[-1].get("real_size")
            state = str(b.get("state", "active_allocated" if b.get("allocated") else "inactive"))
            blocks.append({"address": _int(b.get("address"), off), "size": size,
                           "requested_size": _int(req, size) if req is not None else size,
                           "state": state, "frames": frames})
            off = blocks[-1]["address"] + size
        pool = s.get("segment_pool_id")
        segs.append({"device": _int(s.get("device"), 0), "address": addr, "total_size": _int(s["total_size"]),
                     "allocated_size": s.get("allocated_size"), "active_size": s.get("active_size"),
                     "requested_size": s.get("requested_size"), "stream": _int(s.get("stream"), 0),
                     "segment_type": s.get("segment_type"),
                     "pool_id": _pool(pool),
                     "is_expandable": 1 if s.get("is_expandable") else 0,
                     "frames": _frames(s.get("frames")), "blocks": blocks})
    traces = {}
    dt = obj.get("device_traces")
    if dt is not None and not isinstance(dt, (list, tuple)):
        raise Bad("%s: not a PyTorch memory snapshot ('device_traces' is not a list)" % path)
    for dev, entries in enumerate(dt or []):
        if not isinstance(entries, (list, tuple)):
            raise Bad("%s: not a PyTorch memory snapshot (device trace %d is not a list)" % (path, dev))
        out = []
        for e in entries:
            if not isinstance(e, dict) or "action" not in e:
                raise Bad("%s: not a PyTorch memory snapshot (a trace entry without action)" % path)
            action = str(e["action"])
            if action == "free":  # the oldest spelling: one event for both
                action = "free_completed"
            t = e.get("time_us")
            addr = e.get("addr")
            if action == "oom" and "device_free" in e:  # torch >= 2.5 names it; older ones put it in addr
                addr = e.get("device_free")
            pool = e.get("pool_id")
            out.append({"action": action, "addr": _int(addr, 0), "size": _int(e.get("size"), 0),
                        "pool_id": _pool(pool),
                        "stream": _int(e.get("stream"), 0), "time_us": _int(t) if t is not None else None,
                        "frames": _frames(e.get("frames")),
                        "compile_context": e.get("compile_context") if isinstance(e.get("compile_context"), str) else None,
                        "user_metadata": e.get("user_metadata") if isinstance(e.get("user_metadata"), str) else None})
        if out:
            traces[dev] = out
    settings = obj.get("allocator_settings")
    ann = obj.get("external_annotations") or []
    return {"segments": segs, "traces": traces, "settings": settings,
            "annotations": [a for a in ann if isinstance(a, dict)] if isinstance(ann, list) else []}


def round_block(n):
    return ROUND if n <= ROUND else (n + ROUND - 1) // ROUND * ROUND


# ---------------------------------------------------------------------------------------------------------
# Completing and replaying the history of one device

FREES = ("free_requested", "free_completed")


def complete_history(entries, segs):
    """Returns (synthesized entries, final active blocks by address) for one device: the state before the
    first entry, as segment_alloc and alloc entries to put in front."""
    final_blocks = {}
    for s in segs:
        for b in s["blocks"]:
            if b["state"].startswith("active"):
                final_blocks[b["address"]] = (b, s)
    live_b, pre_b = {}, {}          # address -> requested size
    live_s, pre_s = {}, {}          # segment (or mapped piece) address -> size
    pre_pool = {}                   # block or segment address freed before its creation -> its pool_id
    for e in entries:
        a, addr, size = e["action"], e["addr"], e["size"]
        if a == "alloc":
            live_b[addr] = size
        elif a in FREES:
            if addr not in live_b and addr not in pre_b:
                pre_b[addr] = size
                live_b[addr] = size
                pre_pool[addr] = e.get("pool_id")
            if a == "free_completed":
                live_b.pop(addr, None)
        elif a in ("segment_alloc", "segment_map"):
            live_s[addr] = size
        elif a in ("segment_free", "segment_unmap"):
            if a == "segment_unmap" and live_s.get(addr) != size and size > 0 and \
                    any(p < addr + size and addr < p + n for p, n in live_s.items()):
                # pages of a mapping the history made (expandable segments unmap by ranges): cut them out
                lo, hi = addr, addr + size
                for p, n in sorted(live_s.items()):
                    if p < hi and lo < p + n:
                        del live_s[p]
                        if p < lo:
                            live_s[p] = lo - p
                        if p + n > hi:
                            live_s[hi] = p + n - hi
                continue
            if addr not in live_s and addr not in pre_s:
                pre_s[addr] = size
                live_s[addr] = size
                pre_pool[addr] = e.get("pool_id")
            live_s.pop(addr, None)
    # the final state's blocks and segments that the history never created
    untouched = set()
    for addr, (b, s) in final_blocks.items():
        if addr not in live_b and addr not in pre_b:
            pre_b[addr] = b["requested_size"]
            untouched.add(addr)
    for s in segs:
        lo, hi = s["address"], s["address"] + s["total_size"]
        covered = sum(sz for a, sz in live_s.items() if lo <= a < hi)
        if s["total_size"] - covered > 0:
            start = lo
            while start in live_s or start in pre_s:  # defensive: a piece already there
                start += 1
            pre_s[start] = s["total_size"] - covered
    synth = []
    for addr in sorted(pre_s):
        seg = next((s for s in segs if s["address"] == addr), None)
        # the pool: the final segment holding it, else the entry that freed it
        holder = next((s for s in segs if s["address"] <= addr < s["address"] + s["total_size"]), None)
        synth.append({"action": "segment_alloc", "addr": addr, "size": pre_s[addr], "stream": seg["stream"] if seg else 0,
                      "pool_id": holder["pool_id"] if holder else pre_pool.get(addr),
                      "time_us": None, "frames": seg["frames"] if seg else [], "synthetic": 1,
                      "compile_context": None, "user_metadata": None})
    for addr in sorted(pre_b):
        # the final block's frames are this allocation's only if the history never touched the address
        fb = final_blocks.get(addr) if addr in untouched else None
        fs = final_blocks.get(addr)
        synth.append({"action": "alloc", "addr": addr, "size": pre_b[addr], "stream": fb[1]["stream"] if fb else 0,
                      "pool_id": fs[1]["pool_id"] if fs else pre_pool.get(addr),
                      "time_us": None, "frames": fb[0]["frames"] if fb else [], "synthetic": 1,
                      "compile_context": None, "user_metadata": None})
    return synth, final_blocks


def largest_free(blocks, pieces):
    """Largest gap not covered by an active block inside the reserved pieces. blocks: {addr: size}."""
    ba = sorted(blocks.items())
    best = 0
    import bisect
    keys = [a for a, _ in ba]
    for lo, size in pieces.items():
        hi = lo + size
        cur = lo
        i = bisect.bisect_left(keys, lo)
        while i < len(ba) and ba[i][0] < hi:
            a, sz = ba[i]
            if a > cur:
                best = max(best, a - cur)
            cur = max(cur, a + sz)
            i += 1
        if hi > cur:
            best = max(best, hi - cur)
    return best


SMALL_SIZE = 1 << 20  # kSmallSize: requests up to this come from the small pool (2 MiB segments)


def split_rules(settings):
    """(expandable, max_split_size) from a snapshot's allocator_settings (None: the defaults)."""
    st = settings if isinstance(settings, dict) else {}
    expandable = bool(st.get("expandable_segments"))
    mss = _int(st.get("max_split_size"), 0)
    return expandable, (mss if mss > 0 else 1 << 64)


def block_extent(addr, size, blocks_sorted, blocks, pieces_sorted, pieces, rules):
    """The bytes the allocator's block at addr takes for a request of `size`: the request rounded to 512,
    or the whole free block it was cut from when the remainder was too small to split (torch's
    should_split: small pool or expandable segments split at >= 512 bytes left, the large pool only when
    more than 1 MiB is left and the request is below max_split_size). The free block runs from addr to the
    next live block or the end of its mapped segment (torch always merges adjacent free blocks)."""
    import bisect
    rounded = round_block(size)
    i = bisect.bisect_right(pieces_sorted, addr) - 1
    if i < 0:
        return rounded
    lo = pieces_sorted[i]
    end = lo + pieces[lo]
    if addr >= end:
        return rounded
    while end in pieces:  # an expandable segment: contiguous mapped pieces are one segment
        end += pieces[end]
    j = bisect.bisect_right(blocks_sorted, addr)
    if j < len(blocks_sorted) and blocks_sorted[j] < end:
        end = blocks_sorted[j]
    extent = end - addr
    if extent < rounded:
        return rounded  # history out of step with itself: keep the plain rounding
    expandable, max_split = rules
    remaining = extent - rounded
    if rounded <= SMALL_SIZE or expandable:
        split = remaining >= ROUND
    else:
        split = rounded < max_split and remaining > SMALL_SIZE
    return rounded if split else extent


def replay(all_entries, final_blocks, settings=None):
    """Fills allocated/reserved after every entry, block sizes, end_entry pairing (by list index), the
    peak index and the oom states. Entries are dicts; modified in place."""
    import bisect
    rules = split_rules(settings)
    blocks_sorted, pieces_sorted = [], []
    blocks, breq, pieces = {}, {}, {}
    open_alloc, open_seg = {}, {}
    # the last alloc of each address still alive at the end takes the final block's exact size
    last_alloc = {}
    for i, e in enumerate(all_entries):
        if e["action"] == "alloc":
            last_alloc[e["addr"]] = i
        elif e["action"] == "free_completed":
            last_alloc.pop(e["addr"], None)
    exact = {i: final_blocks[a][0]["size"] for a, i in last_alloc.items() if a in final_blocks}
    allocated = reserved = 0
    peak_i, peak_v, peak_r = None, -1, 0
    ooms = []
    for i, e in enumerate(all_entries):
        a, addr, size = e["action"], e["addr"], e["size"]
        e["end"] = None
        e["block_size"] = None
        e["largest_free_block"] = None
        if a == "alloc":
            if addr in blocks:  # defensive: an address allocated twice; the first one ends here
                allocated -= blocks.pop(addr)
                blocks_sorted.remove(addr)
            bs = exact.get(i)
            if bs is None:
                bs = block_extent(addr, size, blocks_sorted, blocks, pieces_sorted, pieces, rules)
            e["block_size"] = bs
            blocks[addr] = bs
            bisect.insort(blocks_sorted, addr)
            breq[addr] = size
            allocated += bs
            open_alloc[addr] = i
        elif a == "free_completed":
            if addr in blocks:
                allocated -= blocks.pop(addr)
                blocks_sorted.remove(addr)
                breq.pop(addr, None)
                j = open_alloc.pop(addr, None)
                if j is not None:
                    all_entries[j]["end"] = i
        elif a in ("segment_alloc", "segment_map"):
            if addr not in pieces:
                bisect.insort(pieces_sorted, addr)
            else:
                reserved -= pieces[addr]
            pieces[addr] = size
            reserved += size
            open_seg[addr] = i
        elif a in ("segment_free", "segment_unmap"):
            if addr in pieces and (a == "segment_free" or pieces[addr] == size):
                reserved -= pieces.pop(addr)
                pieces_sorted.remove(addr)
                j = open_seg.pop(addr, None)
                if j is not None:
                    all_entries[j]["end"] = i
            elif a == "segment_unmap" and size > 0:
                # expandable segments unmap by page ranges that need not match what was mapped: cut every
                # mapped piece the range overlaps, keeping what lies outside it
                lo, hi = addr, addr + size
                k = max(bisect.bisect_right(pieces_sorted, lo) - 1, 0)
                while k < len(pieces_sorted) and pieces_sorted[k] < hi:
                    p0 = pieces_sorted[k]
                    p1 = p0 + pieces[p0]
                    if p1 <= lo:
                        k += 1
                        continue
                    reserved -= min(p1, hi) - max(p0, lo)
                    del pieces[p0]
                    pieces_sorted.pop(k)
                    j = open_seg.pop(p0, None)
                    if j is not None:
                        all_entries[j]["end"] = i
                    if p0 < lo:
                        pieces[p0] = lo - p0
                        pieces_sorted.insert(k, p0)
                        k += 1
                    if p1 > hi:
                        pieces[hi] = p1 - hi
                        bisect.insort(pieces_sorted, hi)
                        break
        elif a == "oom":
            lf = largest_free(blocks, pieces)
            e["largest_free_block"] = lf
            ooms.append((i, allocated, reserved, sum(breq.values()), lf))
        e["allocated_bytes"] = allocated
        e["reserved_bytes"] = reserved
        if allocated > peak_v:
            peak_v, peak_i = allocated, i
        peak_r = max(peak_r, reserved)
    return peak_i, peak_r, ooms


def state_at(all_entries, upto):
    """Active blocks (addr -> (size, requested)) and pieces after entry `upto`."""
    blocks, pieces = {}, {}
    for e in all_entries[:upto + 1]:
        a = e["action"]
        if a == "alloc":
            blocks[e["addr"]] = (e["block_size"], e["size"])
        elif a == "free_completed":
            blocks.pop(e["addr"], None)
        elif a in ("segment_alloc", "segment_map"):
            pieces[e["addr"]] = e["size"]
        elif a in ("segment_free", "segment_unmap"):
            pieces.pop(e["addr"], None)
    return blocks, pieces


# ---------------------------------------------------------------------------------------------------------
# Writing

class Writer:
    def __init__(self, db):
        self.db = db
        self.frame_ids = {}
        self.stack_ids = {}
        self.next_frame = (db.execute("SELECT coalesce(max(frame_id), 0) FROM alloc_frames").fetchone()[0]) + 1
        self.next_stack = (db.execute("SELECT coalesce(max(stack_id), 0) FROM alloc_stacks").fetchone()[0]) + 1
        for fid, name, fn, line in db.execute("SELECT frame_id, name, filename, line FROM alloc_frames"):
            self.frame_ids[(name, fn, line)] = fid

    def stack(self, frames):
        if not frames:
            return None
        key = tuple(frames)
        sid = self.stack_ids.get(key)
        if sid is not None:
            return sid
        sid = self.next_stack
        self.next_stack += 1
        rows = []
        for depth, f in enumerate(frames):
            fid = self.frame_ids.get(f)
            if fid is None:
                fid = self.next_frame
                self.next_frame += 1
                self.frame_ids[f] = fid
                self.db.execute("INSERT INTO alloc_frames VALUES (?,?,?,?,?)",
                                (fid, f[0], f[1], f[2], 1 if f[1].endswith(".py") else 0))
            rows.append((sid, depth, fid))
        self.db.executemany("INSERT INTO alloc_stacks VALUES (?,?,?)", rows)
        self.stack_ids[key] = sid
        return sid


def import_snapshot(snap_path, db_path, reason):
    snap = normalize(load_snapshot(snap_path), snap_path)
    try:
        db = sqlite3.connect(db_path, timeout=10)
        ver = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as e:
        raise Bad("%s: cannot open the trace: %s" % (db_path, e))
    if ver < 2:
        raise Bad("%s: schema version %d has no allocator tables (run it through 'cumemtrace import-torch')"
                  % (db_path, ver))
    try:
        cmt_blocks.materialize(db)  # a block-form trace's events (schema version 5), as a TEMP table
    except ValueError as e:
        db.close()
        raise Bad("%s: %s" % (db_path, e))
    except sqlite3.Error as e:
        db.close()
        raise Bad("%s: cannot read the trace: %s" % (db_path, e))
    try:
        with db:
            # alloc_trace.pool_id came after the table (same schema version): a file made before has none
            if "pool_id" not in [r[1] for r in db.execute("PRAGMA table_info(alloc_trace)")]:
                db.execute("ALTER TABLE alloc_trace ADD COLUMN pool_id TEXT")
            _write(db, snap, snap_path, reason)
    except sqlite3.Error as e:
        raise Bad("%s: cannot write the trace: %s" % (db_path, e))
    finally:
        db.close()


def _write(db, snap, snap_path, reason):
    times = [e["time_us"] for es in snap["traces"].values() for e in es if e["time_us"] is not None]
    proc = db.execute("SELECT start_unix_ns, start_ns FROM process").fetchone()
    if proc is None:
        # a trace of the snapshot alone: its clock is the snapshot's (wall-clock ns)
        t0 = min(times) * 1000 if times else time.time_ns()
        t1 = max(times) * 1000 if times else t0
        db.execute("INSERT INTO process (pid, ppid, host, exe, argv, start_unix_ns, start_ns, end_ns, finalized,"
                   " events_written, events_lost, stack_depth) VALUES (0, 0, NULL, ?, ?, ?, ?, ?, 1, 0, 0, NULL)",
                   (os.path.abspath(snap_path), json.dumps(["import-torch", snap_path]), t0, t0, t1))
        proc = (t0, t0)
    start_unix_ns, start_ns = proc[0] or 0, proc[1] or 0

    def mono(t_us):
        return None if t_us is None else t_us * 1000 - start_unix_ns + start_ns

    n_entries = sum(len(v) for v in snap["traces"].values())
    cur = db.execute("INSERT INTO alloc_snapshots (path, reason, imported_unix_ns, settings, history_complete,"
                     " entries, synthesized) VALUES (?,?,?,?,0,?,0)",
                     (os.path.abspath(snap_path), reason, time.time_ns(),
                      json.dumps(snap["settings"], sort_keys=True, default=str) if snap["settings"] is not None
                      else None, n_entries))
    sid = cur.lastrowid
    w = Writer(db)
    devices = sorted(set(snap["traces"]) | {s["device"] for s in snap["segments"]})
    total_synth, complete = 0, 1
    for dev in devices:
        segs = [s for s in snap["segments"] if s["device"] == dev]
        entries = snap["traces"].get(dev, [])
        for e in entries:
            e["synthetic"] = 0
        synth, final_blocks = complete_history(entries, segs)
        total_synth += len(synth)
        if synth:
            complete = 0
        all_e = synth + entries
        peak_i, peak_r, ooms = replay(all_e, final_blocks, snap["settings"])
        first_t = next((e["time_us"] for e in entries if e["time_us"] is not None), None)
        base = db.execute("SELECT coalesce(max(entry_id), 0) FROM alloc_trace").fetchone()[0] + 1
        rows, last_ts = [], mono(first_t)
        untimed = first_t is None  # snapshots before torch 2.1 have no time_us: order is all we know
        for i, e in enumerate(all_e):
            ts = mono(e["time_us"])
            if untimed:
                ts = start_ns + i * 1000  # one microsecond per entry, in order (time_us stays NULL)
            elif ts is None:
                ts = last_ts
            last_ts = ts
            rows.append((base + i, sid, dev, e["action"], e["addr"], e["size"], e["block_size"], e["stream"],
                         e["time_us"], ts, w.stack(e["frames"]), e["synthetic"],
                         None if e["end"] is None else base + e["end"], e["allocated_bytes"], e["reserved_bytes"],
                         e["largest_free_block"], e["compile_context"], e["user_metadata"], e.get("pool_id")))
        db.executemany("INSERT INTO alloc_trace VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        # end state: from the segments themselves (exact)
        alloc_b = res_b = req_b = internal = external = lf_all = 0
        for s in segs:
            lf = 0
            for b in s["blocks"]:
                if b["state"].startswith("active"):
                    alloc_b += b["size"]
                    req_b += b["requested_size"]
                    internal += b["size"] - b["requested_size"]
                else:
                    external += b["size"]
                    lf = max(lf, b["size"])
            res_b += s["total_size"]
            lf_all = max(lf_all, lf)
            ev = db.execute("SELECT max(seq) FROM events WHERE op IN (SELECT op FROM ops WHERE name IN"
                            " ('alloc', 'create')) AND result = 0 AND address = ?",
                            (s["address"],)).fetchone()[0] if s["address"] < (1 << 63) else None
            db.execute("INSERT INTO alloc_segments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (sid, dev, s["address"], s["total_size"], s["allocated_size"], s["active_size"],
                        s["requested_size"], s["stream"], s["segment_type"], s["pool_id"], s["is_expandable"],
                        w.stack(s["frames"]), lf, ev))
            db.executemany("INSERT INTO alloc_blocks VALUES (?,?,?,?,?,?,?,?)",
                           [(sid, dev, s["address"], b["address"], b["size"], b["requested_size"], b["state"],
                             w.stack(b["frames"])) for b in s["blocks"]])
        db.execute("INSERT INTO alloc_state VALUES (?,?,'end',NULL,?,?,?,?,?,?,?)",
                   (sid, dev, alloc_b, res_b, req_b, internal, external, lf_all, max(peak_r, res_b)))
        if peak_i is not None:
            blocks, pieces = state_at(all_e, peak_i)
            a = sum(v[0] for v in blocks.values())
            rq = sum(v[1] for v in blocks.values())
            r = all_e[peak_i]["reserved_bytes"]
            db.execute("INSERT INTO alloc_state VALUES (?,?,'peak',?,?,?,?,?,?,?,NULL)",
                       (sid, dev, base + peak_i, a, r, rq, a - rq, r - a,
                        largest_free({k: v[0] for k, v in blocks.items()}, pieces)))
        for i, a, r, rq, lf in ooms:
            db.execute("INSERT INTO alloc_state VALUES (?,?,'oom',?,?,?,?,?,?,?,NULL)",
                       (sid, dev, base + i, a, r, rq, a - rq, r - a, lf))
    for an in snap["annotations"]:
        t = an.get("time_us")
        t = _int(t) if t is not None else None
        db.execute("INSERT INTO alloc_annotations VALUES (?,?,?,?,?,?)",
                   (sid, _int(an.get("device"), 0), str(an.get("stage", "")), str(an.get("name", "")), t, mono(t)))
    db.execute("UPDATE alloc_snapshots SET history_complete = ?, synthesized = ? WHERE snapshot_id = ?",
               (complete, total_synth, sid))
    _write_ranges(db, sid)


def _write_ranges(db, sid):
    """PyTorch's phases as ranges (schema version 3, source 'torch'), from the snapshot just imported:

    - `external_annotations` (record_function, e.g. Optimizer.step#AdamW.step): a START and the END of the
      same name on the same device make a push range, nested by order per device; a START without an END
      stays open (end NULL).
    - `user_metadata` (torch.cuda.memory._set_memory_metadata): each run of consecutive trace entries of a
      device tagged with the same non-empty string is one push range named by it, from the entry before
      the run (the tag was set after it) to the run's last entry (open if the run reaches the end of the
      history). Ends are rounded up to the next microsecond (snapshot times are whole microseconds). The allocator writes an entry just after the driver call behind it, so these bounds take
      in the driver allocations of the run's entries and leave out those of the entries around it.

    Ranges have no thread (tid NULL). Their start_seq/end_seq place them on the events' axis by time: the
    last event at or before the start, the first at or after the end. A later import replaces the torch
    ranges of an earlier one (the analyzer reads the newest snapshot)."""
    US = 1000  # snapshot times are whole microseconds, rounded down: an end bound is rounded up
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ranges'").fetchone():
        return  # a version 2 file nobody upgraded: no place for them
    db.execute("DELETE FROM ranges WHERE source = 'torch'")
    found = []  # (start_ns, end_ns or None, name, depth, parent index or None)
    open_ = {}
    rows = db.execute("SELECT device, stage, name, ts_ns FROM alloc_annotations WHERE snapshot_id = ?"
                      " AND ts_ns IS NOT NULL ORDER BY rowid", (sid,)).fetchall()
    for dev, stage, name, ts in rows:
        stack = open_.setdefault(dev, [])
        if stage == "START":
            found.append([ts, None, name, len(stack), stack[-1] if stack else None])
            stack.append(len(found) - 1)
        elif stage == "END":
            for k in range(len(stack) - 1, -1, -1):
                if found[stack[k]][2] == name:
                    found[stack[k]][1] = ts + US
                    del stack[k]
                    break
    entries = db.execute("SELECT device, ts_ns, user_metadata FROM alloc_trace WHERE snapshot_id = ? AND synthetic = 0"
                         " ORDER BY entry_id", (sid,)).fetchall()
    cur, last = {}, {}
    for dev, ts, meta in entries:
        prev = cur.get(dev)
        if prev is not None and meta != found[prev][2]:
            found[prev][1] = min(last[dev] + US, ts)
            cur[dev] = prev = None
        if meta and prev is None:
            found.append([last.get(dev, ts), None, meta, 0, None])
            cur[dev] = len(found) - 1
        last[dev] = ts
    if not found:
        return
    import bisect
    ev = db.execute("SELECT ts_ns, seq FROM events WHERE ts_ns IS NOT NULL ORDER BY seq").fetchall()
    hi, times = 0, []
    for ts, _ in ev:
        hi = max(hi, ts)
        times.append(hi)  # the running maximum: bisect needs it sorted

    def seq_from(ts):  # the last event at or before ts (0: none)
        k = bisect.bisect_right(times, ts)
        return ev[k - 1][1] if k else 0

    def seq_to(ts):  # the first event at or after ts (one past the last: none)
        k = bisect.bisect_left(times, ts)
        return ev[k][1] if k < len(ev) else (ev[-1][1] + 1 if ev else 1)

    ids = []
    for start, end, name, depth, parent in found:
        c = db.execute("INSERT INTO ranges (source, kind, domain, name, category, tid, end_tid, start_seq, end_seq,"
                       " start_ns, end_ns, depth, parent_id) VALUES ('torch', 'push', NULL, ?, 0, NULL, NULL, ?, ?,"
                       " ?, ?, ?, ?)",
                       (name, seq_from(start), None if end is None else seq_to(end), start, end, depth,
                        None if parent is None else ids[parent]))
        ids.append(c.lastrowid)


def main(argv):
    try:
        if len(argv) >= 3 and argv[0] == "import":
            reason = "import"
            if len(argv) >= 5 and argv[3] == "--reason":
                reason = argv[4]
            import_snapshot(argv[1], argv[2], reason)
            return 0
        sys.stderr.write("usage: cmt_torch_import.py import SNAPSHOT TRACE [--reason R]\n")
        return 2
    except Bad as e:
        sys.stderr.write("cumemtrace: %s\n" % e)
        return 1
    except RecursionError:
        sys.stderr.write("cumemtrace: %s: not a PyTorch memory snapshot (nested too deeply)\n" % argv[1])
        return 1
    except Exception as e:  # anything else is damaged input we did not foresee: still one line
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        sys.stderr.write("cumemtrace: %s: cannot %s: %s: %s\n" % (argv[2] if len(argv) > 2 else "?", argv[0],
                                                                  type(e).__name__, msg))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
