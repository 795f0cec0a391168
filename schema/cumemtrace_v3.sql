-- cumemtrace trace file, schema version 3: phases (NVTX ranges and marks, PyTorch annotations).
--
-- Added to every new file after cumemtrace.sql and cumemtrace_v2.sql (both unchanged), and run on its own
-- to upgrade a version 1 or 2 file in place (cmt_db_migrate). Written by cumemtrace-writer from the NVTX
-- records the interposer queues (interpose/cmt_nvtx.c: libcumemtrace.so is an NVTX injection library),
-- and by `cumemtrace import-torch` from a snapshot's annotations. schema/README.md documents every column.
--
-- Units as before: *_ns are nanoseconds of CLOCK_MONOTONIC (the events' axis); *_seq are on the events'
-- seq axis (one counter for memory events and NVTX records, so an allocation is inside a range exactly
-- when start_seq < seq < end_seq, with no tie on time).

-- One row per range instance.
CREATE TABLE IF NOT EXISTS ranges (
    range_id   INTEGER PRIMARY KEY,
    source     TEXT NOT NULL,     -- 'nvtx' (recorded), 'torch' (imported from a snapshot)
    kind       TEXT NOT NULL,     -- 'push' (push/pop: nested per thread and domain) or 'startend'
                                  -- (start/end: may end on another thread, nests with nothing)
    domain     TEXT,              -- NVTX domain; NULL for the default domain
    name       TEXT,              -- the message; NULL when the range had none
    category   INTEGER,           -- the attributes' category; 0 when none
    tid        INTEGER,           -- thread that opened it (NULL for imported ranges)
    end_tid    INTEGER,           -- thread that closed it; NULL while open
    start_seq  INTEGER NOT NULL,
    end_seq    INTEGER,           -- NULL: still open when the trace ended (the analyzer closes it there)
    start_ns   INTEGER NOT NULL,
    end_ns     INTEGER,           -- NULL: still open when the trace ended
    depth      INTEGER,           -- push: nesting level on its thread and domain, 0 = outermost; NULL for
                                  -- startend
    parent_id  INTEGER            -- push: the enclosing range (same thread and domain); NULL if outermost
);

-- Instantaneous NVTX marks (nvtxMark*), after the first memory event.
CREATE TABLE IF NOT EXISTS marks (
    mark_id    INTEGER PRIMARY KEY,
    source     TEXT NOT NULL,     -- 'nvtx'
    domain     TEXT,              -- NULL for the default domain
    name       TEXT,              -- NULL when the mark had no message
    category   INTEGER,
    tid        INTEGER,
    seq        INTEGER NOT NULL,
    ts_ns      INTEGER NOT NULL
);

-- NVTX's memory extension (nvToolsExtMem.h): heaps a custom allocator registered (usually memory it took
-- from the driver) and the regions (blocks) it handed out of them.
CREATE TABLE IF NOT EXISTS mem_heaps (
    heap_id    INTEGER PRIMARY KEY, -- what nvtxMemHeapRegister returned (unique in the process)
    domain     TEXT,                -- NULL for the default domain
    name       TEXT,                -- the heap's message; NULL if none
    usage      INTEGER,             -- NVTX_MEM_HEAP_USAGE_* flags
    address    INTEGER,             -- the heap's virtual range (NVTX_MEM_TYPE_VIRTUAL_ADDRESS); NULL if none
    size       INTEGER,
    tid        INTEGER,
    seq        INTEGER NOT NULL,
    ts_ns      INTEGER NOT NULL,
    end_seq    INTEGER,             -- nvtxMemHeapUnregister; NULL while registered
    end_ns     INTEGER
);

CREATE TABLE IF NOT EXISTS mem_regions (
    region_id  INTEGER PRIMARY KEY,
    heap_id    INTEGER,             -- mem_heaps; 0 when registered on the process-wide heap
    address    INTEGER NOT NULL,
    size       INTEGER NOT NULL,    -- after the last nvtxMemRegionsResize
    name       TEXT,                -- nvtxMemRegionsName; NULL if never named
    tid        INTEGER,
    seq        INTEGER NOT NULL,
    ts_ns      INTEGER NOT NULL,
    end_seq    INTEGER,             -- unregistered, or its heap reset or unregistered; NULL while live
    end_ns     INTEGER
);

-- Each region with the driver allocation (or VMM mapping) that holds it: the latest successful
-- cuMemAlloc*/cuMemMap before the region was registered whose range contains the region's start.
CREATE VIEW IF NOT EXISTS mem_region_owners AS
SELECT r.region_id,
       (SELECT e.seq FROM events e WHERE e.op IN (SELECT op FROM ops WHERE name IN ('alloc', 'map'))
          AND e.result = 0 AND e.seq < r.seq
          AND e.address <= r.address AND e.address + e.size > r.address ORDER BY e.seq DESC LIMIT 1) AS event_seq
FROM mem_regions r;
