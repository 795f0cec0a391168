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

#define CMT_SCHEMA_VERSION 1
#define CMT_FORMAT_NAME "cumemtrace"

extern const char cmt_schema_sql[]; /* schema/cumemtrace.sql, embedded at build time */

/* The insert the writer prepares once; parameters in column order of the events table. */
#define CMT_SQL_INSERT_EVENT                                                                            \
    "INSERT INTO events(seq, ts_ns, tid, api, op, kind, device, context, address, size, stream, handle," \
    " aux, result, duration_ns, stack_id, free_bytes, total_bytes)"                                     \
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
#define CMT_SQL_INSERT_STACK "INSERT INTO stacks(stack_id, depth, frame_id) VALUES (?,?,?)"
#define CMT_SQL_INSERT_FRAME \
    "INSERT INTO frames(frame_id, ip, module_id, function, symbol_offset) VALUES (?,?,?,?,?)"
#define CMT_SQL_INSERT_MODULE \
    "INSERT INTO modules(module_id, path, build_id, base, size) VALUES (?,?,?,?,?)"

/* Creates a new trace at path (which must not exist: O_EXCL semantics are the caller's), in WAL mode,
 * with all tables, lookup tables and meta rows. */
int cmt_db_create(const char *path, sqlite3 **out, char *err, size_t errlen);

/* Opens an existing trace for reading after checking, in order: the file exists and is readable, it is
 * an SQLite file, it is not truncated, it is a cumemtrace trace, and its schema is not newer than ours.
 * *version receives its schema version. */
int cmt_db_open_read(const char *path, sqlite3 **out, int *version, char *err, size_t errlen);

/* Builds the indexes, records the end time and marks the trace finalized, then leaves WAL mode so the
 * result is one self-contained file. The handle stays open. */
int cmt_db_finalize(sqlite3 *db, long long end_ns, char *err, size_t errlen);

/* Runs sql (no results) and reports the error into err. */
int cmt_db_exec(sqlite3 *db, const char *sql, char *err, size_t errlen);

#endif
