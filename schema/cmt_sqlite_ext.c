/*
 * cmt_sqlite_ext.c: libcumemtrace_sqlite, an SQLite extension for the sqlite3 shell and any program that
 * can load one: `sqlite3 trace.db` then `.load /path/to/libcumemtrace_sqlite`. Loading it on a connection
 * to a version-5 trace decodes the events' blocks into TEMP objects (cmt_db_events_rows): `events`, its
 * index and its views, so SQL written for the row form runs unchanged. Nothing on a row-form trace.
 * Reads the file, never writes it.
 */
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#include "cmt_db.h"

#include <stdio.h>

int sqlite3_cumemtracesqlite_init(sqlite3 *db, char **errmsg, const sqlite3_api_routines *api);

__attribute__((visibility("default"))) int sqlite3_cumemtracesqlite_init(sqlite3 *db, char **errmsg,
                                                                         const sqlite3_api_routines *api)
{
    SQLITE_EXTENSION_INIT2(api);
    char err[512];
    const char *path = sqlite3_db_filename(db, "main");
    if (cmt_db_events_rows(db, path && *path ? path : "main", 1, err, sizeof err) != 0) {
        *errmsg = sqlite3_mprintf("%s", err);
        return SQLITE_ERROR;
    }
    return SQLITE_OK;
}
