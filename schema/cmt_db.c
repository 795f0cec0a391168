/*
 * cmt_db.c: creating, validating and finalizing trace files (see cmt_db.h).
 *
 * Runs on the interposer's writer thread or in the analyzer, never on a profiled application's thread.
 * Every failure becomes one line in err; nothing here prints.
 */
#ifdef CMT_SQLITE_EXTENSION /* built into libcumemtrace_sqlite too (cmt_sqlite_ext.c) */
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT3
#endif
#include "cmt_db.h"

#include "cmt_events.h"

#include <assert.h>
#include <limits.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cmt_db_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int cmt_db_exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        cmt_db_fail(err, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int fill_lookup_tables(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = 0;
#define RUN_INSERT(...)                                                                                 \
    do {                                                                                                \
        char *sql = sqlite3_mprintf(__VA_ARGS__);                                                       \
        if (!sql || cmt_db_exec(db, sql, err, errlen) != 0)                                             \
            rc = -1;                                                                                    \
        sqlite3_free(sql);                                                                              \
    } while (0)
#define X(id, name, str) RUN_INSERT("INSERT INTO ops VALUES (%d, %Q)", id, str);
    CMT_OP_LIST(X)
#undef X
#define X(id, name, str) RUN_INSERT("INSERT INTO kinds VALUES (%d, %Q)", id, str);
    CMT_KIND_LIST(X)
#undef X
#define X(id, name, base, op, kind)                                                                     \
    RUN_INSERT("INSERT INTO apis VALUES (%d, %Q, %Q, %d, %d)", id, #name, #base, CMT_OP_##op,           \
               CMT_KIND_##kind);
    CMT_API_LIST(X)
#undef X
#undef RUN_INSERT
    (void)st;
    return rc;
}

/* The unix VFS with xFullPathname keeping a name as given: with a relative name, every file SQLite opens
 * (the database, its -journal, -wal, -shm) is found relative to the current directory. */
static sqlite3_vfs relative_vfs;

static int keep_name(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    size_t len = strlen(name);
    if (len >= (size_t)n)
        return SQLITE_CANTOPEN;
    memcpy(out, name, len + 1);
    return SQLITE_OK;
}

#define CMT_SQLITE_SHORT_PATH 400 /* and room for "-journal": well inside MAX_PATHNAME (512) */

int cmt_db_sqlite_open(const char *path, sqlite3 **db, int flags)
{
    *db = NULL;
    const char *slash = strrchr(path, '/');
    if (strlen(path) < CMT_SQLITE_SHORT_PATH || !slash || strlen(slash + 1) >= CMT_SQLITE_SHORT_PATH)
        return sqlite3_open_v2(path, db, flags, NULL);
    if (!relative_vfs.zName) {
        sqlite3_vfs *base = sqlite3_vfs_find(NULL);
        if (!base)
            return SQLITE_ERROR;
        relative_vfs = *base;
        relative_vfs.zName = "cmt-relative";
        relative_vfs.pNext = NULL;
        relative_vfs.xFullPathname = keep_name;
        if (sqlite3_vfs_register(&relative_vfs, 0) != SQLITE_OK) {
            relative_vfs.zName = NULL;
            return SQLITE_ERROR;
        }
    }
    char dir[PATH_MAX];
    size_t dlen = (size_t)(slash - path);
    if (dlen >= sizeof dir)
        return SQLITE_CANTOPEN;
    memcpy(dir, path, dlen);
    dir[dlen ? dlen : 1] = 0;
    if (!dlen)
        dir[0] = '/';
    int writing = (flags & SQLITE_OPEN_READWRITE) != 0;
    int here = writing ? -1 : open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if ((!writing && here < 0) || chdir(dir) != 0) {
        if (here >= 0)
            close(here);
        return SQLITE_CANTOPEN;
    }
    int rc;
    if (writing) {
        rc = sqlite3_open_v2(slash + 1, db, flags, "cmt-relative");
    } else {
        char *uri = sqlite3_mprintf("file:%s?immutable=1", slash + 1);
        rc = uri ? sqlite3_open_v2(uri, db, flags | SQLITE_OPEN_URI, "cmt-relative") : SQLITE_NOMEM;
        sqlite3_free(uri);
        if (fchdir(here) != 0)
            rc = rc == SQLITE_OK ? SQLITE_CANTOPEN : rc; /* defensive: the directory we were in is gone */
        close(here);
    }
    return rc;
}

/* A new file keeps its events in blocks: the row form's table and the views over it go (readers make
 * them again as TEMP objects, cmt_db_events.c). Run only by cmt_db_create, in the creating transaction. */
static const char block_form_sql[] =
    "DROP VIEW allocations; DROP VIEW failures; DROP VIEW pairs; DROP VIEW handle_pairs; DROP VIEW handle_refs;"
    " DROP VIEW mem_region_owners; DROP TABLE events;";

int cmt_db_create(const char *path, sqlite3 **out, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    *out = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (cmt_db_sqlite_open(path, &db, flags) != SQLITE_OK) {
        cmt_db_fail(err, errlen, "cannot create %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -1;
    }
    char sql[256];
    /* WAL lets the writer commit every 100 ms cheaply and leaves committed batches intact on SIGKILL;
     * synchronous=NORMAL: a committed batch survives the process dying, which is what we promise. */
    /* auto_vacuum=INCREMENTAL (before any table): the pages of a block written again while it filled
     * are given back at finalize (cmt_db_finalize), not left as free pages in the file. */
    if (cmt_db_exec(db, "PRAGMA page_size=2048; PRAGMA auto_vacuum=INCREMENTAL; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", err,
                    errlen) != 0 ||
        cmt_db_exec(db, "BEGIN", err, errlen) != 0 || cmt_db_exec(db, cmt_schema_sql, err, errlen) != 0 ||
        cmt_db_exec(db, cmt_schema_v2_sql, err, errlen) != 0 || cmt_db_exec(db, cmt_schema_v3_sql, err, errlen) != 0 ||
        cmt_db_exec(db, cmt_schema_v4_sql, err, errlen) != 0 || cmt_db_exec(db, cmt_schema_v5_sql, err, errlen) != 0 ||
        cmt_db_exec(db, block_form_sql, err, errlen) != 0 || fill_lookup_tables(db, err, errlen) != 0)
        goto error;
    snprintf(sql, sizeof sql,
             "INSERT INTO meta VALUES ('format', '%s'); INSERT INTO meta VALUES ('schema_version', %d);"
             "PRAGMA user_version=%d;",
             CMT_FORMAT_NAME, CMT_SCHEMA_VERSION, CMT_SCHEMA_VERSION);
    if (cmt_db_exec(db, sql, err, errlen) != 0 || cmt_db_exec(db, "COMMIT", err, errlen) != 0)
        goto error;
    *out = db;
    return 0;
error:
    sqlite3_close(db);
    return -1;
}

/* The 100-byte SQLite header tells us, without trusting the library, whether this is an SQLite file
 * and whether it is shorter than it claims (a truncated copy). */
static int check_header(const char *path, char *err, size_t errlen)
{
    /* O_NONBLOCK: a FIFO or a device must not hang us; only regular files are read. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return cmt_db_fail(err, errlen, "%s: %s", path, strerror(errno));
    struct stat st;
    unsigned char h[100];
    ssize_t n = 0;
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        close(fd);
        return cmt_db_fail(err, errlen, "%s: is a directory, not a trace file", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return cmt_db_fail(err, errlen, "%s: not a regular file, not a trace file", path);
    }
    n = read(fd, h, sizeof h);
    close(fd);
    if (n == 0)
        return cmt_db_fail(err, errlen, "%s: empty file, not a cumemtrace trace", path);
    if (n < (ssize_t)sizeof h || memcmp(h, "SQLite format 3", 16) != 0)
        return cmt_db_fail(err, errlen, "%s: not a cumemtrace trace (not an SQLite database)", path);
    uint32_t page = ((uint32_t)h[16] << 8) | h[17];
    if (page == 1)
        page = 65536;
    uint32_t pages = ((uint32_t)h[28] << 24) | ((uint32_t)h[29] << 16) | ((uint32_t)h[30] << 8) | h[31];
    uint32_t change = ((uint32_t)h[24] << 24) | ((uint32_t)h[25] << 16) | ((uint32_t)h[26] << 8) | h[27];
    uint32_t valid_for = ((uint32_t)h[92] << 24) | ((uint32_t)h[93] << 16) | ((uint32_t)h[94] << 8) | h[95];
    /* The page count is only meaningful when valid-for matches the change counter (SQLite >= 3.7.0). */
    if (pages && valid_for == change && (uint64_t)st.st_size < (uint64_t)pages * page)
        return cmt_db_fail(err, errlen, "%s: truncated trace (%lld of %llu bytes)", path, (long long)st.st_size,
                    (unsigned long long)pages * page);
    return 0;
}

static int open_read(const char *path, sqlite3 **out, int *version, int rows, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    *out = NULL;
    if (check_header(path, err, errlen) != 0)
        return -1;
    if (cmt_db_sqlite_open(path, &db, SQLITE_OPEN_READONLY) != SQLITE_OK) {
        cmt_db_fail(err, errlen, "%s: cannot open: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        goto error;
    }
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        cmt_db_fail(err, errlen, "%s: corrupt trace: %s", path, sqlite3_errmsg(db));
        goto error;
    }
    v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    /* A foreign SQLite file has no meta table or another format name. */
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'format'", -1, &st, NULL) != SQLITE_OK) {
        int code = sqlite3_errcode(db);
        if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
            cmt_db_fail(err, errlen, "%s: corrupt trace: %s", path, sqlite3_errmsg(db));
        else
            cmt_db_fail(err, errlen, "%s: not a cumemtrace trace (an SQLite database without its tables)", path);
        goto error;
    }
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW || sqlite3_column_type(st, 0) != SQLITE_TEXT ||
        strcmp((const char *)sqlite3_column_text(st, 0), CMT_FORMAT_NAME) != 0) {
        if (rc == SQLITE_CORRUPT)
            cmt_db_fail(err, errlen, "%s: corrupt trace: %s", path, sqlite3_errmsg(db));
        else
            cmt_db_fail(err, errlen, "%s: not a cumemtrace trace (foreign meta table)", path);
        goto error;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (v > CMT_SCHEMA_VERSION) {
        cmt_db_fail(err, errlen, "%s: written by a newer cumemtrace (schema version %d; this one reads up to %d)",
             path, v, CMT_SCHEMA_VERSION);
        goto error;
    }
    if (v < 1) {
        cmt_db_fail(err, errlen, "%s: not a cumemtrace trace (schema version %d)", path, v);
        goto error;
    }
    if (rows && cmt_db_events_rows(db, path, 0, err, errlen) != 0)
        goto error;
    if (version)
        *version = v;
    *out = db;
    return 0;
error:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return -1;
}

int cmt_db_open_read(const char *path, sqlite3 **out, int *version, char *err, size_t errlen)
{
    return open_read(path, out, version, 1, err, errlen);
}

int cmt_db_migrate(sqlite3 *db, int from, char *err, size_t errlen)
{
    char sql[160];
    if (from >= CMT_SCHEMA_VERSION)
        return 0;
    assert(from >= 1); /* cmt_db_open_read refuses anything else */
    snprintf(sql, sizeof sql,
             "INSERT OR REPLACE INTO meta VALUES ('schema_version', %d); PRAGMA user_version=%d;",
             CMT_SCHEMA_VERSION, CMT_SCHEMA_VERSION);
    /* One transaction: a file is either still at its old version or wholly at the current one. */
    if (cmt_db_exec(db, "BEGIN IMMEDIATE", err, errlen) != 0)
        return -1;
    if ((from < 2 && cmt_db_exec(db, cmt_schema_v2_sql, err, errlen) != 0) ||
        (from < 3 && cmt_db_exec(db, cmt_schema_v3_sql, err, errlen) != 0) ||
        (from < 4 && cmt_db_exec(db, cmt_schema_v4_sql, err, errlen) != 0) ||
        (from < 5 && cmt_db_exec(db, cmt_schema_v5_sql, err, errlen) != 0) || cmt_db_exec(db, sql, err, errlen) != 0) {
        cmt_db_exec(db, "ROLLBACK", NULL, 0);
        return -1;
    }
    return cmt_db_exec(db, "COMMIT", err, errlen);
}

int cmt_db_open_update(const char *path, sqlite3 **out, int *version, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int v = 0;
    *out = NULL;
    if (open_read(path, &db, &v, 0, err, errlen) != 0)
        return -1;
    sqlite3_close(db);
    db = NULL;
    if (cmt_db_sqlite_open(path, &db, SQLITE_OPEN_READWRITE) != SQLITE_OK) {
        cmt_db_fail(err, errlen, "%s: cannot open for writing: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 5000);
    if (cmt_db_migrate(db, v, err, errlen) != 0) {
        char reason[512];
        snprintf(reason, sizeof reason, "%s", err ? err : "");
        cmt_db_fail(err, errlen, "%s: cannot upgrade from schema version %d: %s", path, v, reason);
        sqlite3_close(db);
        return -1;
    }
    if (version)
        *version = v;
    *out = db;
    return 0;
}

int cmt_db_finalize(sqlite3 *db, long long end_ns, int build_indexes, char *err, size_t errlen)
{
    char sql[256];
    /* The indexes the pairing views need (schema/cumemtrace_indexes.sql), and no more: the writer builds
     * them after the program is gone, and a reader waits for that. */
    int blocks = cmt_db_block_form(db);
    if (blocks < 0)
        return cmt_db_fail(err, errlen, "%s", sqlite3_errmsg(db));
    snprintf(sql, sizeof sql, "UPDATE process SET end_ns = %lld, finalized = 1;", end_ns);
    if (cmt_db_exec(db, "BEGIN", err, errlen) != 0)
        return -1;
    /* in block form the events' index is the reader's, on its decoded rows: the file gets the others */
    if ((build_indexes && (blocks ? cmt_db_file_indexes(db, err, errlen)
                                  : cmt_db_exec(db, cmt_schema_indexes_sql, err, errlen)) != 0) ||
        cmt_db_exec(db, sql, err, errlen) != 0) {
        cmt_db_exec(db, "ROLLBACK", NULL, 0);
        return -1;
    }
    if (cmt_db_exec(db, "COMMIT", err, errlen) != 0)
        return -1;
    /* The free pages (a block's earlier copies) leave the file; a no-op without auto_vacuum. */
    if (cmt_db_exec(db, "PRAGMA incremental_vacuum", err, errlen) != 0)
        return -1;
    /* Back to a rollback journal: checkpoints the WAL and removes it, leaving one file to copy around. */
    return cmt_db_exec(db, "PRAGMA journal_mode=DELETE", err, errlen);
}
