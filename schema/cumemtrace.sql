-- cumemtrace trace file, schema version 1 (the driver level; version 2 adds cumemtrace_v2.sql).
--
-- The one contract between the interposer (writes) and the analyzer (reads); schema/README.md documents
-- every column with examples. Units: every *_ns column is nanoseconds of CLOCK_MONOTONIC unless named
-- otherwise, every size or *_bytes column is an exact byte count, every address is the integer value of
-- the pointer (device pointers are stored as signed 64-bit integers; SQLite has no unsigned type, and no
-- real address has the top bit set).
--
-- PRAGMA user_version holds the schema version (2 for new files, whose allocator-level tables come from
-- cumemtrace_v2.sql; 1 for files written before it). Lookup tables (apis, ops, kinds) are filled from
-- schema/cmt_events.h when the file is created. Indexes (for the pairing views) are created when the file is finalized
-- (schema/cmt_db.c, cmt_db_finalize), not here: building them once at the end is far cheaper than
-- maintaining them on every insert.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,     -- 'format' = 'cumemtrace', 'schema_version', 'tool_version', ...
    value
);

-- One row: the traced process.
CREATE TABLE process (
    pid             INTEGER NOT NULL,
    ppid            INTEGER NOT NULL,
    host            TEXT,
    exe             TEXT,     -- /proc/self/exe at start
    argv            TEXT,     -- JSON array of strings
    start_unix_ns   INTEGER,  -- CLOCK_REALTIME at start, ns since the epoch
    start_ns        INTEGER,  -- CLOCK_MONOTONIC at start: subtract from ts_ns for time since start
    end_ns          INTEGER,  -- CLOCK_MONOTONIC when the file was finalized; NULL while being written
    finalized       INTEGER NOT NULL DEFAULT 0,  -- 1 once closed cleanly (exit, exec); 0 if killed
    events_written  INTEGER NOT NULL DEFAULT 0,  -- rows in events at the last commit
    events_lost     INTEGER NOT NULL DEFAULT 0,  -- events that could not be recorded (never silently)
    stack_depth     INTEGER                      -- configured maximum frames per stack
);

-- Allow-listed environment variables only (RANK, LOCAL_RANK, WORLD_SIZE, CUDA_VISIBLE_DEVICES,
-- PYTORCH_CUDA_ALLOC_CONF, PYTORCH_ALLOC_CONF), as they were at start.
CREATE TABLE env (
    name  TEXT PRIMARY KEY,
    value TEXT
);

-- Devices seen in events, described once a context existed.
CREATE TABLE devices (
    device          INTEGER PRIMARY KEY,  -- CUdevice ordinal
    name            TEXT,
    total_bytes     INTEGER,
    uuid            TEXT,                 -- 'GPU-xxxxxxxx-xxxx-...'
    driver_version  INTEGER               -- cuDriverGetVersion, e.g. 13000
);

CREATE TABLE threads (
    tid   INTEGER PRIMARY KEY,
    name  TEXT                            -- /proc/self/task/TID/comm when first seen
);

CREATE TABLE apis (
    api   INTEGER PRIMARY KEY,
    name  TEXT NOT NULL,                  -- concrete ELF name: 'cuMemAlloc_v2', 'cuMemAllocAsync_ptsz'
    base  TEXT NOT NULL,                  -- name as asked of cuGetProcAddress: 'cuMemAlloc'
    op    INTEGER NOT NULL,
    kind  INTEGER NOT NULL
);
CREATE TABLE ops   (op INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE kinds (kind INTEGER PRIMARY KEY, name TEXT NOT NULL);

-- Every call of a hooked entry point, successful or not.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY,  -- process-wide order; frees take theirs before the driver call,
                                       -- allocations after it, so an address is always freed before reuse
    ts_ns        INTEGER NOT NULL,     -- taken with seq
    tid          INTEGER NOT NULL,
    api          INTEGER NOT NULL REFERENCES apis,
    op           INTEGER NOT NULL REFERENCES ops,
    kind         INTEGER NOT NULL REFERENCES kinds,
    device       INTEGER,              -- ordinal; NULL when unknown (no current context)
    context      INTEGER,              -- CUcontext current on the calling thread
    address      INTEGER,              -- pointer returned (acquire) or passed (release); NULL on failure
    size         INTEGER,              -- bytes asked for; for cuMemPoolTrimTo minBytesToKeep
    stream       INTEGER,              -- CUstream for stream-ordered calls
    handle       INTEGER,              -- CUmemGenericAllocationHandle (create/release/map/retain/import/
                                       -- export), CUmemoryPool, CUgraph (memory nodes, instantiation) or
                                       -- CUgraphExec (launch)
    aux          INTEGER,              -- per api: pitch (cuMemAllocPitch), offset (cuMemMap),
                                       -- alignment (cuMemAddressReserve), flags (managed, host, ipc, host
                                       -- register), handle type (export/import), mipmap levels;
                                       -- op sample, kind graph: graph memory used (size: reserved)
    result       INTEGER NOT NULL,     -- CUresult the driver returned to the program
    duration_ns  INTEGER NOT NULL,     -- time inside the real driver call
    stack_id     INTEGER,              -- stacks.stack_id; NULL if stacks are off
    free_bytes   INTEGER,              -- device memory free/total from cuMemGetInfo, taken right after
    total_bytes  INTEGER               --   a failed acquire (NULL otherwise)
);

CREATE TABLE modules (
    module_id  INTEGER PRIMARY KEY,
    path       TEXT NOT NULL,
    build_id   TEXT,                   -- hex of NT_GNU_BUILD_ID, NULL if none
    base       INTEGER NOT NULL,       -- load bias: ip - base is the offset in the file's address space
    size       INTEGER NOT NULL        -- span of its loaded segments from the lowest one
);

-- One row per distinct instruction pointer, symbolized off the application's threads.
CREATE TABLE frames (
    frame_id       INTEGER PRIMARY KEY,
    ip             INTEGER NOT NULL,   -- return address as unwound (call site + 1 insn)
    module_id      INTEGER REFERENCES modules,
    function       TEXT,               -- raw (mangled) ELF symbol name, .symtab preferred over .dynsym
    symbol_offset  INTEGER             -- ip - symbol start
);

CREATE TABLE stacks (
    stack_id  INTEGER NOT NULL,
    depth     INTEGER NOT NULL,        -- 0 = innermost frame (the driver entry point's caller side)
    frame_id  INTEGER NOT NULL REFERENCES frames,
    PRIMARY KEY (stack_id, depth)
) WITHOUT ROWID;

-- ---------------------------------------------------------------------------------------------------
-- Public views: the contract for users' own SQL and for later tools.

-- Innermost frame first.
CREATE VIEW stack_frames AS
SELECT s.stack_id, s.depth, f.function, m.path AS module, f.ip,
       f.ip - m.base AS offset, m.build_id, f.symbol_offset
FROM stacks s JOIN frames f ON f.frame_id = s.frame_id
LEFT JOIN modules m ON m.module_id = f.module_id;

-- For each successful acquire, the seq of the release that ended it (NULL while live). Releases pair by
-- address (frees, unreserve, IPC close), by an unmapped range covering the mapping (cuMemUnmap), or, for
-- handles, by reference count: cuMemCreate, cuMemImportFromShareableHandle (op create) and
-- cuMemRetainAllocationHandle (op retain) each add a reference, cuMemRelease (op release) removes one, and
-- an acquire pairs with the first release that takes the handle's count back below what it made it (last
-- in, first out: a create pairs with the release that frees the memory, a retain with the one that ends it).
-- Ops are named, never numbered (the ops table is the vocabulary); the one rule used is cmt_events.h's: an
-- address acquire's op is odd and its release's op + 1. The terms "f.result = 0 AND f.op % 2 = 0" are those
-- of the partial index (cumemtrace_indexes.sql) that makes the lookups fast.
CREATE VIEW handle_refs AS
SELECT e.seq, e.handle, e.op, o.name AS op_name,
       sum(CASE o.name WHEN 'release' THEN -1 ELSE 1 END) OVER (PARTITION BY e.handle ORDER BY e.seq) AS refs
FROM events e JOIN ops o ON o.op = e.op
WHERE e.result = 0 AND o.name IN ('create', 'release', 'retain') AND e.handle IS NOT NULL;

-- An acquire that takes a handle's count from r - 1 to r and the release that takes it from r back to
-- r - 1 are neighbours among the handle's events at level r (counts go up to and down from r in turn).
CREATE VIEW handle_pairs AS
SELECT seq AS alloc_seq, CASE next_name WHEN 'release' THEN next_seq END AS free_seq
FROM (SELECT seq, op_name,
             lead(seq) OVER w AS next_seq, lead(op_name) OVER w AS next_name
      FROM handle_refs
      WINDOW w AS (PARTITION BY handle, CASE op_name WHEN 'release' THEN refs + 1 ELSE refs END ORDER BY seq))
WHERE op_name <> 'release';

CREATE VIEW pairs AS
SELECT alloc_seq, free_seq FROM handle_pairs
UNION ALL
SELECT a.seq AS alloc_seq,
       CASE (SELECT name FROM ops WHERE op = a.op)
         WHEN 'map' THEN coalesce(
                      (SELECT min(f.seq) FROM events f
                        WHERE f.op = a.op + 1 AND f.address = a.address AND f.seq > a.seq
                          AND f.result = 0 AND f.op % 2 = 0),
                      (SELECT min(f.seq) FROM events f
                        WHERE f.op = a.op + 1 AND f.address <= a.address AND f.address + f.size > a.address
                          AND f.seq > a.seq AND f.result = 0 AND f.op % 2 = 0))
         ELSE (SELECT min(f.seq) FROM events f
                WHERE f.op = a.op + 1 AND f.address = a.address AND f.seq > a.seq
                  AND f.result = 0 AND f.op % 2 = 0)
       END AS free_seq
FROM events a
WHERE a.result = 0 AND a.op IN (SELECT op FROM ops WHERE name IN ('alloc', 'reserve', 'map', 'ipc_open'));

CREATE VIEW allocations AS
SELECT a.seq, a.address, a.size, k.name AS kind, p.name AS api, a.ts_ns AS alloc_ns, f.ts_ns AS free_ns,
       a.stack_id, a.device, a.tid, a.stream, a.handle, a.aux, f.seq AS free_seq, fp.name AS free_api
FROM pairs x
JOIN events a ON a.seq = x.alloc_seq
JOIN kinds k ON k.kind = a.kind
JOIN apis p ON p.api = a.api
LEFT JOIN events f ON f.seq = x.free_seq
LEFT JOIN apis fp ON fp.api = f.api;

CREATE VIEW failures AS
SELECT e.seq, p.name AS api, e.size, e.result, e.ts_ns, e.free_bytes, e.total_bytes, e.stack_id,
       e.device, e.tid, k.name AS kind, e.stream, e.handle
FROM events e JOIN apis p ON p.api = e.api JOIN kinds k ON k.kind = e.kind
WHERE e.result <> 0 AND e.op IN (SELECT op FROM ops WHERE name IN ('alloc', 'reserve', 'create', 'map', 'ipc_open',
                                                                   'retain'));
