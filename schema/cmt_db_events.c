/*
 * cmt_db_events.c: the events of a version-5 trace as rows again, for readers (see cmt_db.h).
 *
 * A block-form file (schema/cumemtrace_v5.sql) has events_blocks and no `events` table in main. Before
 * anything reads it, cmt_db_events_rows decodes every block into a TEMP table `events` with the columns
 * of schema/cumemtrace.sql's, builds the partial index of cumemtrace_indexes.sql on it and creates the
 * views over events (cumemtrace.sql's and cumemtrace_v3.sql's) as TEMP views, their text taken from the
 * embedded schema itself: one definition, whichever form a file has. Writes only the connection's temp
 * database; the trace file is never touched. Every malformed block is corruption, in one line.
 */
#ifdef CMT_SQLITE_EXTENSION /* built into libcumemtrace_sqlite too (cmt_sqlite_ext.c) */
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT3
#endif
#include "cmt_blocks.h"
#include "cmt_db.h"

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
 * their order; *found counts them. */
static int run_objects(sqlite3 *db, const char *sql, int events, int *found, char *err, size_t errlen)
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
        if (is_event_object(kind, q, nlen) == events) {
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

/* ---- cmt_event_blocks: the blocks as rows, an eponymous virtual table ---------------------------- */

/* `SELECT * FROM cmt_event_blocks` yields every event of main.events_blocks, block by block (rows in seq
 * order within a block), with the columns of CMT_BLOCK_COLUMNS; a malformed block ends the statement with
 * SQLITE_CORRUPT and "events block at seq N: REASON"; a seq twice is the PRIMARY KEY's to find. Filling temp.events through one INSERT ... SELECT
 * from it costs a third of binding each row. */
struct scan_vtab {
    sqlite3_vtab base;
    sqlite3 *db;
};

struct scan_cursor {
    sqlite3_vtab_cursor base;
    sqlite3_stmt *blocks;
    struct cmt_block_row *rows;
    long n, i;
    int eof;
};

static int scan_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out, char **err)
{
    (void)aux, (void)argc, (void)argv, (void)err;
    int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(" CMT_BLOCK_COLUMNS ")");
    if (rc != SQLITE_OK)
        return rc;
    struct scan_vtab *v = sqlite3_malloc(sizeof *v);
    if (!v)
        return SQLITE_NOMEM;
    memset(v, 0, sizeof *v);
    v->db = db;
    *out = &v->base;
    return SQLITE_OK;
}

static int scan_disconnect(sqlite3_vtab *v)
{
    sqlite3_free(v);
    return SQLITE_OK;
}

static int scan_best_index(sqlite3_vtab *v, sqlite3_index_info *info)
{
    (void)v;
    info->estimatedCost = 1e6;
    return SQLITE_OK;
}

static int scan_open(sqlite3_vtab *v, sqlite3_vtab_cursor **out)
{
    (void)v;
    struct scan_cursor *c = sqlite3_malloc(sizeof *c);
    if (!c)
        return SQLITE_NOMEM;
    memset(c, 0, sizeof *c);
    c->rows = malloc((size_t)CMT_BLOCK_ROWS * sizeof *c->rows);
    if (!c->rows) {
        sqlite3_free(c);
        return SQLITE_NOMEM;
    }
    *out = &c->base;
    return SQLITE_OK;
}

static int scan_close(sqlite3_vtab_cursor *cur)
{
    struct scan_cursor *c = (struct scan_cursor *)cur;
    sqlite3_finalize(c->blocks);
    free(c->rows);
    sqlite3_free(c);
    return SQLITE_OK;
}

static int scan_error(sqlite3_vtab_cursor *cur, sqlite3_int64 first, const char *why)
{
    sqlite3_free(cur->pVtab->zErrMsg);
    cur->pVtab->zErrMsg = sqlite3_mprintf("events block at seq %lld: %s", (long long)first, why);
    return SQLITE_CORRUPT;
}

/* The next block's rows, or eof. */
static int scan_load(sqlite3_vtab_cursor *cur)
{
    struct scan_cursor *c = (struct scan_cursor *)cur;
    int step = sqlite3_step(c->blocks);
    c->i = c->n = 0;
    if (step == SQLITE_DONE) {
        c->eof = 1;
        return SQLITE_OK;
    }
    if (step != SQLITE_ROW)
        return step;
    sqlite3_int64 first = sqlite3_column_int64(c->blocks, 0), last = sqlite3_column_int64(c->blocks, 1),
                  nrows = sqlite3_column_int64(c->blocks, 2);
    if (sqlite3_column_type(c->blocks, 1) != SQLITE_INTEGER || sqlite3_column_type(c->blocks, 2) != SQLITE_INTEGER ||
        sqlite3_column_type(c->blocks, 3) != SQLITE_BLOB)
        return scan_error(cur, first, "a column of the wrong type");
    char why[160];
    long n = cmt_block_decode(sqlite3_column_blob(c->blocks, 3), (size_t)sqlite3_column_bytes(c->blocks, 3), c->rows,
                              why, sizeof why);
    if (n < 0)
        return scan_error(cur, first, why);
    int64_t lo = c->rows[0].v[CMT_BC_SEQ], hi = lo;
    for (long i = 1; i < n; i++) {
        int64_t seq = c->rows[i].v[CMT_BC_SEQ];
        lo = seq < lo ? seq : lo;
        hi = seq > hi ? seq : hi;
    }
    if (n != nrows || lo != first || hi != last)
        return scan_error(cur, first, "its rows disagree with its header");
    c->n = n;
    return SQLITE_OK;
}

static int scan_filter(sqlite3_vtab_cursor *cur, int idx, const char *idxstr, int argc, sqlite3_value **argv)
{
    (void)idx, (void)idxstr, (void)argc, (void)argv;
    struct scan_cursor *c = (struct scan_cursor *)cur;
    sqlite3_finalize(c->blocks);
    c->blocks = NULL;
    c->eof = 0;
    sqlite3 *db = ((struct scan_vtab *)cur->pVtab)->db;
    int rc = sqlite3_prepare_v2(db, "SELECT first_seq, last_seq, nrows, data FROM main.events_blocks ORDER BY first_seq",
                                -1, &c->blocks, NULL);
    return rc != SQLITE_OK ? rc : scan_load(cur);
}

static int scan_next(sqlite3_vtab_cursor *cur)
{
    struct scan_cursor *c = (struct scan_cursor *)cur;
    if (++c->i < c->n)
        return SQLITE_OK;
    return scan_load(cur);
}


static int scan_eof(sqlite3_vtab_cursor *cur) { return ((struct scan_cursor *)cur)->eof; }

static int scan_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col)
{
    struct scan_cursor *c = (struct scan_cursor *)cur;
    const struct cmt_block_row *r = &c->rows[c->i];
    if ((r->nulls >> col) & 1)
        sqlite3_result_null(ctx);
    else
        sqlite3_result_int64(ctx, r->v[col]);
    return SQLITE_OK;
}

static int scan_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid)
{
    struct scan_cursor *c = (struct scan_cursor *)cur;
    *rowid = c->rows[c->i].v[CMT_BC_SEQ];
    return SQLITE_OK;
}

static sqlite3_module scan_module = {
    .xConnect = scan_connect,
    .xBestIndex = scan_best_index,
    .xDisconnect = scan_disconnect,
    .xOpen = scan_open,
    .xClose = scan_close,
    .xFilter = scan_filter,
    .xNext = scan_next,
    .xEof = scan_eof,
    .xColumn = scan_column,
    .xRowid = scan_rowid,
};

/* Decodes every block into temp.events. */
static int fill(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    if (sqlite3_create_module_v2(db, "cmt_event_blocks", &scan_module, db, NULL) != SQLITE_OK)
        return cmt_db_fail(err, errlen, "%s: cannot decode its events: %s", path, sqlite3_errmsg(db));
    char *msg = NULL;
    if (sqlite3_exec(db, "INSERT INTO temp.events (" CMT_BLOCK_COLUMNS ") SELECT * FROM cmt_event_blocks", NULL, NULL,
                     &msg) == SQLITE_OK)
        return 0;
    int code = sqlite3_extended_errcode(db);
    if (code == SQLITE_CONSTRAINT_PRIMARYKEY)
        cmt_db_fail(err, errlen, "%s: corrupt trace: an event's seq twice in events_blocks", path);
    else if ((code & 0xff) == SQLITE_CONSTRAINT || (code & 0xff) == SQLITE_CORRUPT)
        cmt_db_fail(err, errlen, "%s: corrupt trace: %s", path, msg ? msg : sqlite3_errmsg(db));
    else
        cmt_db_fail(err, errlen, "%s: cannot decode its events: %s", path, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return -1;
}

int cmt_db_events_rows(sqlite3 *db, const char *path, int with_index, char *err, size_t errlen)
{
    int form = cmt_db_block_form(db);
    if (form < 0)
        return cmt_db_fail(err, errlen, "%s: corrupt trace: %s", path, sqlite3_errmsg(db));
    if (form == 0)
        return 0;
    char why[256];
    int found = 0;
    /* The decoded rows stay in memory up to 256 MiB (about 4 M events), then spill to a temporary file. */
    if (cmt_db_exec(db, "PRAGMA temp.cache_size=-262144; BEGIN", why, sizeof why) != 0)
        return cmt_db_fail(err, errlen, "%s: cannot decode its events: %s", path, why);
    /* the table first (cumemtrace.sql's first event object), its rows, then the index and the views */
    if (run_objects(db, cmt_schema_sql, 1, &found, why, sizeof why) != 0 || found != 6) {
        cmt_db_exec(db, "ROLLBACK", NULL, 0);
        return cmt_db_fail(err, errlen, "%s: cannot decode its events: %s", path, found != 6 ? "schema text" : why);
    }
    if (fill(db, path, err, errlen) != 0) {
        cmt_db_exec(db, "ROLLBACK", NULL, 0);
        return -1;
    }
    int want = with_index ? 8 : 7;
    if ((with_index && run_objects(db, cmt_schema_indexes_sql, 1, &found, why, sizeof why) != 0) ||
        run_objects(db, cmt_schema_v3_sql, 1, &found, why, sizeof why) != 0 || found != want ||
        cmt_db_exec(db, "COMMIT", why, sizeof why) != 0) {
        cmt_db_exec(db, "ROLLBACK", NULL, 0);
        return cmt_db_fail(err, errlen, "%s: cannot decode its events: %s", path, found != want ? "schema text" : why);
    }
    return 0;
}

int cmt_db_events_index(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM temp.sqlite_master WHERE type = 'table'"
                                    " AND name = 'events'), (SELECT count(*) FROM temp.sqlite_master"
                                    " WHERE type = 'index' AND name = 'events_release_address')", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return cmt_db_fail(err, errlen, "%s", sqlite3_errmsg(db));
    int need = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1 && sqlite3_column_int(st, 1) == 0;
    sqlite3_finalize(st);
    int found = 0;
    if (need && (run_objects(db, cmt_schema_indexes_sql, 1, &found, err, errlen) != 0 || found != 1))
        return found != 1 ? cmt_db_fail(err, errlen, "schema text") : -1;
    return 0;
}

int cmt_db_file_indexes(sqlite3 *db, char *err, size_t errlen)
{
    int found = 0;
    return run_objects(db, cmt_schema_indexes_sql, 0, &found, err, errlen);
}
