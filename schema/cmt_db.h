/*
 * cmt_db.h: creating, opening and closing trace files. The only code that knows the schema's SQL text;
 * the interposer writes and the analyzer reads through it.
 *
 * Thread use: a handle is used by one thread at a time (the interposer's writer thread, or the analyzer).
 * Functions return 0 on success and -1 on failure with a one-line reason in err.
 */
#ifndef CMT_DB_H
#define CMT_DB_H

#include <sqlite3.h>
#include <stddef.h>

/* 1: the driver level (cumemtrace.sql). 2: adds the allocator level (cumemtrace_v2.sql). 3: adds phases,
 * NVTX ranges and marks (cumemtrace_v3.sql). 4: adds source lines of frames (cumemtrace_v4.sql). 5: new
 * files keep their events in blocks (cumemtrace_v5.sql, cmt_blocks.h). */
#define CMT_SCHEMA_VERSION 5
#define CMT_FORMAT_NAME "cumemtrace"

extern const char cmt_schema_sql[];    /* schema/cumemtrace.sql, embedded at build time */
extern const char cmt_schema_v2_sql[]; /* schema/cumemtrace_v2.sql: what version 2 adds */
extern const char cmt_schema_indexes_sql[]; /* schema/cumemtrace_indexes.sql: built at finalize */
extern const char cmt_schema_v3_sql[]; /* schema/cumemtrace_v3.sql: what version 3 adds */
extern const char cmt_schema_v4_sql[]; /* schema/cumemtrace_v4.sql: what version 4 adds */
extern const char cmt_schema_v5_sql[]; /* schema/cumemtrace_v5.sql: what version 5 adds */

/* The writer's range and mark statements (cumemtrace_v3.sql). */
#define CMT_SQL_INSERT_RANGE                                                                            \
    "INSERT INTO ranges(range_id, source, kind, domain, name, category, tid, start_seq, start_ns, depth," \
    " parent_id) VALUES (?,'nvtx',?,?,?,?,?,?,?,?,?)"
#define CMT_SQL_END_RANGE "UPDATE ranges SET end_tid = ?, end_seq = ?, end_ns = ? WHERE range_id = ?"
#define CMT_SQL_INSERT_HEAP                                                                             \
    "INSERT INTO mem_heaps(heap_id, domain, name, usage, address, size, tid, seq, ts_ns)"               \
    " VALUES (?,?,?,?,?,?,?,?,?)"
#define CMT_SQL_INSERT_REGION \
    "INSERT INTO mem_regions(region_id, heap_id, address, size, tid, seq, ts_ns) VALUES (?,?,?,?,?,?,?)"
#define CMT_SQL_INSERT_MARK \
    "INSERT INTO marks(source, domain, name, category, tid, seq, ts_ns) VALUES ('nvtx',?,?,?,?,?,?)"

/* The writer's blocks of events (cumemtrace_v5.sql): a block is written again while it fills. */
#define CMT_SQL_INSERT_BLOCK "INSERT INTO events_blocks(first_seq, last_seq, nrows, data) VALUES (?,?,?,?)"
#define CMT_SQL_DROP_BLOCK "DELETE FROM events_blocks WHERE first_seq = ?"
#define CMT_SQL_INSERT_STACK "INSERT INTO stacks(stack_id, depth, frame_id) VALUES (?,?,?)"
#define CMT_SQL_INSERT_FRAME \
    "INSERT INTO frames(frame_id, ip, module_id, function, symbol_offset) VALUES (?,?,?,?,?)"
#define CMT_SQL_INSERT_FRAME_LINE \
    "INSERT INTO frame_lines(frame_id, depth, function, file, line, \"column\") VALUES (?,?,?,?,?,?)"
#define CMT_SQL_INSERT_MODULE \
    "INSERT INTO modules(module_id, path, build_id, base, size) VALUES (?,?,?,?,?)"

/* sqlite3_open_v2 for paths of any length up to PATH_MAX. SQLite's unix VFS keeps a database's full path
 * in 512-byte buffers (MAX_PATHNAME) and fails beyond; for a longer path we change into the file's
 * directory and open its name relative to it through a VFS that keeps names as given ("cmt-relative").
 * Writing (SQLITE_OPEN_READWRITE): the process stays in that directory for the handle's life, since the
 * journal and WAL files are found by the same relative name later: only for a process that owns nothing
 * else relative to its directory (the writer). Reading: the file is opened immutable (no journal, no
 * WAL, no locks: a finished trace) and the directory we were in is restored at once. */
int cmt_db_sqlite_open(const char *path, sqlite3 **db, int flags);

/* Creates a new trace at path (which must not exist: O_EXCL semantics are the caller's), in WAL mode,
 * with all tables, lookup tables and meta rows, its events in block form (events_blocks, no `events`). */
int cmt_db_create(const char *path, sqlite3 **out, char *err, size_t errlen);

/* Opens an existing trace for reading after checking, in order: the file exists and is readable, it is
 * an SQLite file, it is not truncated, it is a cumemtrace trace, and its schema is not newer than ours.
 * *version receives its schema version. A block-form file's events are then a TEMP virtual table
 * (cmt_db_events_rows, without the views' index: cmt_db_events_index), so every reader sees `events` and
 * its views whatever the file's form. */
int cmt_db_open_read(const char *path, sqlite3 **out, int *version, char *err, size_t errlen);

/* 1 if main keeps its events in blocks (events_blocks and no `events` table), 0 if as rows, -1 on error. */
int cmt_db_block_form(sqlite3 *db);

/* For a block-form trace open as db: `events` (the columns of cumemtrace.sql's) and the views over events
 * as TEMP objects. Without with_index, `events` is the cmt_events virtual table over the blocks
 * (cmt_events_vtab.c), every block read once now; with it, every block is decoded into a TEMP table with
 * the partial index the pairing views use. Nothing for a row-form file. A malformed block, a block whose
 * header disagrees with its rows, a NULL the schema forbids or a seq twice is corruption: "PATH: corrupt
 * trace: events block at seq N: REASON" (a seq twice: "an event's seq twice in events_blocks (seq N)"). */
int cmt_db_events_rows(sqlite3 *db, const char *path, int with_index, char *err, size_t errlen);

/* The partial index of the pairing views on a block-form trace's events, if not built yet (the analyzer's
 * passes pair in C and need none: it is built only before a query through the views). A virtual `events`
 * becomes a TEMP table of the decoded rows first. Writes only the connection's temp database; nothing for
 * a row-form file, whose index is in the file. */
int cmt_db_events_index(sqlite3 *db, char *err, size_t errlen);

/* The indexes of cumemtrace_indexes.sql other than the events' own, built in main: what a block-form file
 * keeps at finalize (cmt_db_finalize). */
int cmt_db_file_indexes(sqlite3 *db, char *err, size_t errlen);

/* Opens an existing trace for writing (after the checks of cmt_db_open_read) and upgrades a version 1,
 * 2 or 3 file to the current version in place (cmt_db_migrate). *version receives the version it had. */
int cmt_db_open_update(const char *path, sqlite3 **out, int *version, char *err, size_t errlen);

/* Upgrades an open trace of version `from` to CMT_SCHEMA_VERSION in one transaction: adds the tables
 * of the later versions and sets meta.schema_version and PRAGMA user_version. A no-op when current. */
int cmt_db_migrate(sqlite3 *db, int from, char *err, size_t errlen);

/* Builds the indexes that main's form has (unless build_indexes is 0: a dying process finishes fast and leaves them to the
 * reader), records the end time and marks the trace finalized, then leaves WAL mode so the result is one
 * self-contained file. The handle stays open. */
int cmt_db_finalize(sqlite3 *db, long long end_ns, int build_indexes, char *err, size_t errlen);

/* Runs sql (no results) and reports the error into err. */
int cmt_db_exec(sqlite3 *db, const char *sql, char *err, size_t errlen);

/* Formats a one-line reason into err (when err is not NULL); returns -1. */
int cmt_db_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
