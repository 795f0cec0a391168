-- cumemtrace trace file, schema version 5: the events in blocks.
--
-- A new file keeps its events in events_blocks, up to 65,536 events a row, column by column (the format is
-- schema/cmt_blocks.h's), instead of one row of `events` per event: 13-19 bytes an event on disk instead of
-- 60-62. Such a file has no `events` table and no view over it in main; every reader of ours first decodes
-- the blocks into a TEMP table `events` with the columns of cumemtrace.sql's, the same partial index and
-- the same views (handle_refs, handle_pairs, pairs, allocations, failures, mem_region_owners) as TEMP
-- objects, so SQL written for `events` reads a version-5 file unchanged: cmt_db_open_read in C,
-- schema/cmt_blocks.py for Python's sqlite3, and for the sqlite3 shell the extension
-- `.load .../libcumemtrace_sqlite` (schema/cmt_sqlite_ext.c).
--
-- Added to every new file after cumemtrace.sql and cumemtrace_v2..v4.sql; cmt_db_create then drops the
-- row form's `events` table and its views. Run on its own to upgrade a version 1 to 4 file in place
-- (cmt_db_migrate), where it adds an empty events_blocks: such a file keeps its events as rows, and a
-- reader takes rows whenever main has an `events` table.
CREATE TABLE IF NOT EXISTS events_blocks (
    first_seq  INTEGER PRIMARY KEY,   -- seq of the block's first event (rows ascend by seq in a block)
    last_seq   INTEGER NOT NULL,      -- seq of its last event
    nrows      INTEGER NOT NULL,      -- events in the block, 1..65536
    data       BLOB NOT NULL          -- the encoded events (schema/cmt_blocks.h, format 1)
);
