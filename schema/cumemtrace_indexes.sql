-- cumemtrace trace file: the indexes, built once when the file is finalized (schema/cmt_db.c,
-- cmt_db_finalize), not maintained while the writer appends: building them at the end is far cheaper.
--
-- They serve the pairing view of cumemtrace.sql (pairs, allocations): a release is found by its op and
-- address after the acquire's seq. Only what the view can find is indexed: successful releases (an even
-- op: cmt_events.h's rule, an address acquire's op is odd, its release op + 1). The view repeats these
-- WHERE terms literally, which is how SQLite knows a partial index applies. Handles pair by reference
-- count through window functions (handle_refs), which need no index. A trace whose writer was killed has
-- none of them; the views still answer, slowly.
CREATE INDEX IF NOT EXISTS events_release_address ON events(op, address, seq) WHERE result = 0 AND op % 2 = 0;
CREATE INDEX IF NOT EXISTS frames_ip ON frames(ip);
