/*
 * cmt_db_events.c: the events of a version-5 trace as a table again, for readers (see cmt_db.h).
 *
 * A block-form file (schema/cumemtrace_v5.sql) has events_blocks and no `events` table in main. Before
 * anything reads it, cmt_db_events_rows makes a TEMP `events` with the columns of schema/cumemtrace.sql's:
 * the cmt_events virtual table over the blocks (cmt_events_vtab.c) for the analyzer, or, for the sqlite3
 * shell's extension and for cmt_db_events_index, a TEMP table of the decoded rows with the partial index of
 * cumemtrace_indexes.sql. The views over events (cumemtrace.sql's and cumemtrace_v3.sql's) become TEMP
 * views, their text taken from the embedded schema itself: one definition, whichever form a file has.
 * Writes only the connection's temp database; the trace file is never touched. Every malformed block is
 * corruption, in one line.
 */
#ifdef CMT_SQLITE_EXTENSION /* built into libcumemtrace_sqlite too (cmt_sqlite_ext.c) */
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT3
#endif
#include "cmt_blocks.h"
#include "cmt_db.h"
#include "cmt_events_vtab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The views of the row form that read `events`: recreated as TEMP views over the decoded rows. */
static const char *const event_views[] = {"handle_refs", "handle_pairs", "pairs", "allocations", "failures",
                                          "mem_region_owners"};

/* Is `name` (len bytes) the events table, its partial index or one of event_views? kind: 'T', 'I', 'V'. */
static int is_event_object(int kind, const char *name, size_t len)
{
    if (kind == 'T')
        return len == 6 && strncmp(name, "events", 6) == 0;
    if (kind == 'I')
        return len == 22 && strncmp(name, "events_release_address", 22) == 0;
    for (size_t i = 0; i < sizeof event_views / sizeof *event_views; i++)
        if (strlen(event_views[i]) == len && strncmp(name, event_views[i], len) == 0)
            return 1;
    return 0;
}

/* Runs the statements of schema text `sql` that create the events table, its partial index or one of
 * event_views, as TEMP objects (events 1), or those that create anything else, as written (events 0), in
 * their order, of the kinds named in `kinds` ("T", "I", "V": tables, indexes, views); *found counts them. */
static int run_objects(sqlite3 *db, const char *sql, int events, const char *kinds, int *found, char *err,
                       size_t errlen)
{
    const char *p = sql;
    while ((p = strstr(p, "CREATE ")) != NULL) {
        if (p != sql && p[-1] != '\n') {
            p += 7;
            continue;
        }
        const char *q = p + 7, *kind_at = q;
        int kind = strncmp(q, "TABLE ", 6) == 0 ? 'T' : strncmp(q, "VIEW ", 5) == 0 ? 'V'
                 : strncmp(q, "INDEX ", 6) == 0 ? 'I' : 0;
        if (!kind) {
            p = q;
            continue;
        }
        q += kind == 'V' ? 5 : 6;
        if (strncmp(q, "IF NOT EXISTS ", 14) == 0)
            q += 14;
        size_t nlen = strcspn(q, " (\n");
        /* the statement's end: the first ';' after which the text is a complete statement */
        const char *end = q;
        char *stmt = NULL;
        while ((end = strchr(end, ';')) != NULL) {
            end++;
            free(stmt);
            stmt = strndup(p, (size_t)(end - p));
            if (!stmt)
                return cmt_db_fail(err, errlen, "out of memory");
            if (sqlite3_complete(stmt))
                break;
        }
        if (!end) {
            free(stmt);
            return cmt_db_fail(err, errlen, "schema text without the end of a statement");
        }
        if (strchr(kinds, kind) && is_event_object(kind, q, nlen) == events) {
            /* TABLE and VIEW take the TEMP keyword; an index is named into temp (its table is there) */
            char *temp = !events     ? sqlite3_mprintf("%s", stmt)
                         : kind == 'I' ? sqlite3_mprintf("%.*stemp.%s", (int)(q - p), stmt, stmt + (q - p))
                                       : sqlite3_mprintf("CREATE TEMP %s", stmt + (kind_at - p));
            int rc = temp ? cmt_db_exec(db, temp, err, errlen) : cmt_db_fail(err, errlen, "out of memory");
            sqlite3_free(temp);
            if (rc != 0) {
                free(stmt);
                return -1;
            }
            (*found)++;
        }
        free(stmt);
        p = end;
    }
    return 0;
}

static int has_table(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st;
    int found = 0;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    sqlite3_finalize(st);
    return found;
}

int cmt_db_block_form(sqlite3 *db)
{
    int rows = has_table(db, "events"), blocks = has_table(db, "events_blocks");
    if (rows < 0 || blocks < 0)
        return -1;
    return !rows && blocks;
}

/* ---- events as a virtual table, or decoded into rows ------------------------------------------------ */

/* Which columns of temp.events (just created from the schema text) may not be NULL, in CMT_BLOCK_COLUMNS
 * order: the blocks are checked against the schema itself. */
static int notnull_mask(sqlite3 *db, uint32_t *mask, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT name, \"notnull\" OR pk FROM pragma_table_info('events', 'temp') ORDER BY cid",
                           -1, &st, NULL) != SQLITE_OK)
        return cmt_db_fail(err, errlen, "%s", sqlite3_errmsg(db));
    int c = 0, rc;
    *mask = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        size_t len;
        const char *want = c < CMT_BLOCK_NCOLS ? cmt_block_column(c, &len) : NULL;
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (!want || !name || strlen(name) != len || strncmp(name, want, len) != 0)
            break;
        if (sqlite3_column_int(st, 1))
            *mask |= 1u << c;
        c++;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE && c == CMT_BLOCK_NCOLS ? 0 : cmt_db_fail(err, errlen, "schema text");
}

/* A failed read of the blocks, as one line: a damaged block (the virtual table's SQLITE_CORRUPT) is
 * corruption. */
static int read_fail(sqlite3 *db, const char *path, const char *msg, char *err, size_t errlen)
{
    int code = sqlite3_extended_errcode(db) & 0xff;
    if (code == SQLITE_CORRUPT || code == SQLITE_CONSTRAINT)
        return cmt_db_fail(err, errlen, "%s: corrupt trace: %s", path, msg ? msg : sqlite3_errmsg(db));
    return cmt_db_fail(err, errlen, "%s: cannot decode its events: %s", path, msg ? msg : sqlite3_errmsg(db));
}

/* Fills the empty table temp.events with every event, in seq order. */
static int materialize(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    char why[256], *msg = NULL;
    /* The decoded rows stay in memory up to 256 MiB (about 4 M events), then spill to a temporary file. */
    if (cmt_db_exec(db, "PRAGMA temp.cache_size=-262144; CREATE VIRTUAL TABLE temp.cmt_events_src USING cmt_events",
                    why, sizeof why) != 0)
        return cmt_db_fail(err, errlen, "%s: cannot decode its events: %s", path, why);
    int rc = sqlite3_exec(db, "INSERT INTO temp.events SELECT * FROM temp.cmt_events_src", NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        read_fail(db, path, msg, err, errlen);
        sqlite3_free(msg);
        return -1;
    }
    if (cmt_db_exec(db, "DROP TABLE temp.cmt_events_src", why, sizeof why) != 0)
        return cmt_db_fail(err, errlen, "%s: cannot decode its events: %s", path, why);
    return 0;
}

static int events_rows(sqlite3 *db, const char *path, int with_index, char *err, size_t errlen)
{
    char why[256];
    int found = 0;
    uint32_t notnull = 0;
    /* the table first (cumemtrace.sql's first event object): its columns and constraints, from the schema */
    if (run_objects(db, cmt_schema_sql, 1, "T", &found, why, sizeof why) != 0 || found != 1 ||
        notnull_mask(db, &notnull, why, sizeof why) != 0)
        return cmt_db_fail(err, errlen, "%s: cannot decode its events: %s", path, found != 1 ? "schema text" : why);
    if (cmt_events_vtab_register(db, notnull) != SQLITE_OK)
        return cmt_db_fail(err, errlen, "%s: cannot decode its events: %s", path, sqlite3_errmsg(db));
    if (with_index) {
        if (materialize(db, path, err, errlen) != 0)
            return -1;
        if (run_objects(db, cmt_schema_indexes_sql, 1, "I", &found, why, sizeof why) != 0 || found != 2)
            return cmt_db_fail(err, errlen, "%s: cannot decode its events: %s", path, found != 2 ? "schema text" : why);
    } else {
        /* The table is the blocks themselves; every block is read once now, so that a damaged one is
         * said before anything else is. */
        sqlite3_stmt *st = NULL;
        if (cmt_db_exec(db, "DROP TABLE temp.events; CREATE VIRTUAL TABLE temp.events USING cmt_events", why,
                        sizeof why) != 0)
            return cmt_db_fail(err, errlen, "%s: cannot decode its events: %s", path, why);
        int rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM temp.events", -1, &st, NULL);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            read_fail(db, path, NULL, err, errlen);
            sqlite3_finalize(st);
            return -1;
        }
        sqlite3_finalize(st); /* the views' index: built on demand (cmt_db_events_index) */
    }
    int want = found + 6;
    if (run_objects(db, cmt_schema_sql, 1, "V", &found, why, sizeof why) != 0 ||
        run_objects(db, cmt_schema_v3_sql, 1, "V", &found, why, sizeof why) != 0 || found != want)
        return cmt_db_fail(err, errlen, "%s: cannot decode its events: %s", path, found != want ? "schema text" : why);
    return 0;
}

int cmt_db_events_rows(sqlite3 *db, const char *path, int with_index, char *err, size_t errlen)
{
    int form = cmt_db_block_form(db);
    if (form < 0)
        return cmt_db_fail(err, errlen, "%s: corrupt trace: %s", path, sqlite3_errmsg(db));
    if (form == 0)
        return 0;
    char why[256];
    if (cmt_db_exec(db, "BEGIN", why, sizeof why) != 0)
        return cmt_db_fail(err, errlen, "%s: cannot decode its events: %s", path, why);
    if (events_rows(db, path, with_index, err, errlen) != 0 || cmt_db_exec(db, "COMMIT", err, errlen) != 0) {
        cmt_db_exec(db, "ROLLBACK", NULL, 0);
        return -1;
    }
    return 0;
}

int cmt_db_events_index(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "SELECT (SELECT sql LIKE 'CREATE VIRTUAL TABLE%' FROM temp.sqlite_master"
                                    " WHERE type = 'table' AND name = 'events'), (SELECT count(*) FROM temp.sqlite_master"
                                    " WHERE type = 'index' AND name = 'events_release_address')", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return cmt_db_fail(err, errlen, "%s", sqlite3_errmsg(db));
    int virtual = -1, indexed = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        virtual = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1 : sqlite3_column_int(st, 0);
        indexed = sqlite3_column_int(st, 1);
    }
    sqlite3_finalize(st);
    if (virtual < 0 || indexed)
        return 0; /* a row-form file (its index is in the file), or built already */
    /* The views need their index: the events become rows in temp (the views find them by name). */
    int found = 0;
    if (cmt_db_exec(db, "BEGIN", err, errlen) != 0)
        return -1;
    if ((virtual && (cmt_db_exec(db, "DROP TABLE temp.events", err, errlen) != 0 ||
                     run_objects(db, cmt_schema_sql, 1, "T", &found, err, errlen) != 0 || found != 1 ||
                     materialize(db, "trace", err, errlen) != 0)) ||
        run_objects(db, cmt_schema_indexes_sql, 1, "I", &found, err, errlen) != 0 || found != 1 + virtual ||
        cmt_db_exec(db, "COMMIT", err, errlen) != 0) {
        if (found != 1 + virtual)
            cmt_db_fail(err, errlen, "schema text");
        cmt_db_exec(db, "ROLLBACK", NULL, 0);
        return -1;
    }
    return 0;
}

int cmt_db_file_indexes(sqlite3 *db, char *err, size_t errlen)
{
    int found = 0;
    return run_objects(db, cmt_schema_indexes_sql, 0, "TIV", &found, err, errlen);
}
