-- cumemtrace trace file, schema version 2: the allocator level (PyTorch's caching allocator).
--
-- Added to every new file after cumemtrace.sql (version 1, unchanged), and run on its own to upgrade a
-- version 1 file in place (cmt_db_migrate). Written by `cumemtrace import-torch` (analysis/torch/cmt_torch.py)
-- from a memory snapshot (torch.cuda.memory._snapshot / _dump_snapshot), read by the analyzer. The
-- interposer never writes these tables. schema/README.md documents every column.
--
-- Units as in version 1: sizes and *_bytes are exact byte counts, *_ns are nanoseconds on the trace's
-- CLOCK_MONOTONIC axis (process.start_ns), time_us is the snapshot's own wall-clock microseconds.

-- One row per imported snapshot. The analyzer reads the newest one (highest snapshot_id).
CREATE TABLE IF NOT EXISTS alloc_snapshots (
    snapshot_id       INTEGER PRIMARY KEY,
    path              TEXT,               -- the pickle it came from
    reason            TEXT,               -- 'import', 'exit' or 'oom' (run --torch)
    imported_unix_ns  INTEGER,
    settings          TEXT,               -- allocator_settings as JSON; NULL in older snapshots
    history_complete  INTEGER NOT NULL,   -- 1: the history starts from an empty allocator
    entries           INTEGER NOT NULL,   -- trace entries in the snapshot (all devices)
    synthesized       INTEGER NOT NULL    -- entries added at the start to complete the history
);

-- Python and C++ frames of the allocator's stacks (deduplicated).
CREATE TABLE IF NOT EXISTS alloc_frames (
    frame_id  INTEGER PRIMARY KEY,
    name      TEXT,                       -- function (demangled C++ name, or the Python function)
    filename  TEXT,                       -- source file (question marks or empty when unknown)
    line      INTEGER,                    -- 0 when unknown
    python    INTEGER NOT NULL            -- 1 for a Python frame (filename ends in .py)
);

CREATE TABLE IF NOT EXISTS alloc_stacks (
    stack_id  INTEGER NOT NULL,
    depth     INTEGER NOT NULL,           -- 0 = innermost, as the snapshot lists them
    frame_id  INTEGER NOT NULL REFERENCES alloc_frames,
    PRIMARY KEY (stack_id, depth)
) WITHOUT ROWID;

-- The allocator's segments at the moment of the snapshot (cudaMalloc'ed or mapped memory).
CREATE TABLE IF NOT EXISTS alloc_segments (
    snapshot_id         INTEGER NOT NULL REFERENCES alloc_snapshots,
    device              INTEGER NOT NULL,
    address             INTEGER NOT NULL,
    total_size          INTEGER NOT NULL, -- reserved bytes of the segment
    allocated_size      INTEGER,          -- bytes of its active blocks
    active_size         INTEGER,
    requested_size      INTEGER,          -- bytes the program asked for in its active blocks
    stream              INTEGER,
    segment_type        TEXT,             -- 'large' or 'small' pool
    pool_id             TEXT,             -- segment_pool_id as 'a,b' ('0,0' = default pool)
    is_expandable       INTEGER,
    stack_id            INTEGER,          -- alloc_stacks: where the segment was created; NULL if unknown
    largest_free_block  INTEGER NOT NULL, -- largest inactive block inside it
    event_seq           INTEGER           -- events.seq of the driver allocation at this address, if traced
);

-- The blocks of those segments, in address order.
CREATE TABLE IF NOT EXISTS alloc_blocks (
    snapshot_id      INTEGER NOT NULL REFERENCES alloc_snapshots,
    device           INTEGER NOT NULL,
    segment_address  INTEGER NOT NULL,
    address          INTEGER NOT NULL,
    size             INTEGER NOT NULL,    -- block size (rounded, as memory_allocated counts it)
    requested_size   INTEGER,             -- bytes asked for (stale for inactive blocks)
    state            TEXT NOT NULL,       -- 'active_allocated', 'active_pending_free' or 'inactive'
    stack_id         INTEGER              -- where it was allocated; NULL if before the history
);

-- The allocator's history (device_traces), completed backwards: one row per entry, in order per device.
CREATE TABLE IF NOT EXISTS alloc_trace (
    entry_id          INTEGER PRIMARY KEY, -- global order: by device, then position
    snapshot_id       INTEGER NOT NULL REFERENCES alloc_snapshots,
    device            INTEGER NOT NULL,
    action            TEXT NOT NULL,       -- alloc, free_requested, free_completed, segment_alloc,
                                           -- segment_free, segment_map, segment_unmap, snapshot, oom
    addr              INTEGER,             -- block or segment address; for 'oom' the device's free bytes
    size              INTEGER,             -- bytes requested (alloc, free_*, oom) or segment bytes
    block_size        INTEGER,             -- alloc: the block's size as memory_allocated counts it (exact
                                           -- for blocks still in the final segments, else rounded up to
                                           -- 512 bytes as the allocator rounds)
    stream            INTEGER,
    time_us           INTEGER,             -- the snapshot's wall clock; NULL for synthesized entries
    ts_ns             INTEGER,             -- on the trace's monotonic axis
    stack_id          INTEGER,             -- alloc_stacks; NULL when the entry has no frames
    synthetic         INTEGER NOT NULL,    -- 1: added to complete a history that began after warm-up
    end_entry         INTEGER,             -- alloc: the free_completed ending it; segment_alloc/map: the
                                           -- segment_free/unmap; NULL while live at the snapshot
    allocated_bytes   INTEGER NOT NULL,    -- device's active block bytes after this entry
    reserved_bytes    INTEGER NOT NULL,    -- device's segment bytes after this entry
    largest_free_block INTEGER,            -- 'oom' only: largest inactive block in the segments then
    compile_context   TEXT,
    user_metadata     TEXT,
    pool_id           TEXT                 -- the entry's pool_id as 'a,b' ('0,0' = the default pools);
                                           -- NULL when the snapshot's entries carry none (torch < 2.6?)
                                           -- or the file was imported before this column
);

-- Figures at notable moments per device: 'end' (the snapshot's segments), 'peak' (when allocated bytes
-- were highest), 'oom' (every allocator oom entry). internal/external split as memory_viz's segsum.
CREATE TABLE IF NOT EXISTS alloc_state (
    snapshot_id         INTEGER NOT NULL REFERENCES alloc_snapshots,
    device              INTEGER NOT NULL,
    point               TEXT NOT NULL,    -- 'end', 'peak', 'oom'
    entry_id            INTEGER,          -- alloc_trace entry (NULL for 'end')
    allocated_bytes     INTEGER NOT NULL, -- sum of active blocks' sizes
    reserved_bytes      INTEGER NOT NULL, -- sum of segments' sizes
    requested_bytes     INTEGER,          -- sum of active blocks' requested sizes
    internal_bytes      INTEGER,          -- rounding inside active blocks (size - requested)
    external_bytes      INTEGER,          -- inactive blocks inside the segments
    largest_free_block  INTEGER,          -- largest inactive block
    peak_reserved_bytes INTEGER           -- 'end' only: highest reserved over the history
);

-- external_annotations of newer snapshots (e.g. Optimizer.step START/END).
CREATE TABLE IF NOT EXISTS alloc_annotations (
    snapshot_id  INTEGER NOT NULL REFERENCES alloc_snapshots,
    device       INTEGER,
    stage        TEXT,
    name         TEXT,
    time_us      INTEGER,
    ts_ns        INTEGER
);
