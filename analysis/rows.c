/*
 * rows.c: what every reader of a trace's tables shares: the names of the vocabulary's apis and kinds
 * (schema/cmt_events.h), the type check applied to each row read (cmt_row_check) and the one line for an
 * SQLite error met while reading (cmt_db_read_fail).
 *
 * Runs in the `cumemtrace` command; reads nothing itself, prints nothing.
 */
#include "analysis.h"

#include "cmt_events.h"

static const char *const api_names[CMT_NAPIS] = {
    [0] = "unknown",
#define X(id, name, base, op, kind) [id] = #name,
    CMT_API_LIST(X)
#undef X
};
static const char *const kind_names[CMT_NKINDS] = {
    [0] = "unknown",
#define X(id, name, str) [id] = str,
    CMT_KIND_LIST(X)
#undef X
};


const char *cmt_api_name(int api) { return api > 0 && api < CMT_NAPIS ? api_names[api] : "unknown"; }
const char *cmt_kind_name(int kind) { return kind > 0 && kind < CMT_NKINDS ? kind_names[kind] : "unknown"; }

/* One line for an SQLite error met while reading: corruption found mid-query is the usual cause. */
int cmt_db_read_fail(const struct cmt_trace *t, int rc, char *err, size_t errlen)
{
    int code = rc & 0xff;
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
        return cmt_fail(err, errlen, "%s: corrupt trace: %s", t->path, sqlite3_errmsg(t->db));
    if (code == SQLITE_NOMEM)
        return cmt_fail(err, errlen, "%s: out of memory while reading the trace", t->path);
    return cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
}

int cmt_row_check(const char *path, sqlite3_stmt *st, const char *spec, const char *what, long long id,
                  char *err, size_t errlen)
{
    for (int c = 0; spec[c] && c < sqlite3_column_count(st); c++) {
        int type = sqlite3_column_type(st, c);
        char want = spec[c];
        if (want == '-' || (type == SQLITE_NULL && (want == 'I' || want == 'T')) ||
            (type == SQLITE_INTEGER && (want == 'i' || want == 'I')) ||
            (type == SQLITE_TEXT && (want == 't' || want == 'T')))
            continue;
        return cmt_fail(err, errlen, "%s: corrupt trace: %s %lld has %s in column %s", path, what, id,
                        type == SQLITE_NULL ? "no value" : type == SQLITE_TEXT ? "text" :
                        type == SQLITE_INTEGER ? "an integer" : type == SQLITE_FLOAT ? "a real number" : "a blob",
                        sqlite3_column_name(st, c));
    }
    return 0;
}
