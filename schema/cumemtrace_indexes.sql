-- cumemtrace trace file: the indexes, built once when the file is finalized (schema/cmt_db.c,
-- cmt_db_finalize), not maintained while the writer appends: building them at the end is far cheaper.
--
-- They serve the pairing views of cumemtrace.sql (pairs, allocations): a release is found by its op and
-- address (or handle) after the acquire's seq. Only what a view can find is indexed: successful releases
-- (an even op: cmt_events.h's rule, acquire op odd, its release op + 1), and of those only events with a
-- handle in the second. The views repeat these WHERE terms literally, which is how SQLite knows a
-- partial index applies. A trace whose writer was killed has none of them; the views still answer, slowly.
CREATE INDEX IF NOT EXISTS events_release_address ON events(op, address, seq) WHERE result = 0 AND op % 2 = 0;
CREATE INDEX IF NOT EXISTS events_release_handle ON events(op, handle, seq)
    WHERE result = 0 AND op % 2 = 0 AND handle IS NOT NULL;
CREATE INDEX IF NOT EXISTS frames_ip ON frames(ip);
