/*
 * cmt_events_vtab.c: a version-5 trace's events as a table again, read straight from its blocks.
 *
 * `CREATE VIRTUAL TABLE temp.events USING cmt_events` on a connection to a block-form trace gives the
 * columns of the events table (CMT_BLOCK_COLUMNS, seq as rowid), always in seq order. A block's rows are
 * in the order the writer drained them, and neighbouring blocks overlap where a thread took its seq before
 * another and queued after it, so a scan merges: a block is decoded (and its rows put in seq order) only
 * once the scan reaches its first_seq, and let go once the scan is past its last row. Constraints on seq
 * (=, <, <=, >, >=) and ORDER BY seq either way are answered from each block's first_seq and last_seq: a
 * lookup decodes only the blocks that can hold it. Nothing is copied into SQLite's tables: the
 * analyzer's pass reads each event once, from a decoded block, and holds a few blocks at a time.
 *
 * Decoded blocks are shared by the table's cursors, and the last KEEP no cursor uses are kept, so that
 * lookups near each other decode once. A malformed block, a header that disagrees with its rows, a NULL
 * in a column the schema says is NOT NULL, or a seq twice ends the statement with SQLITE_CORRUPT and one
 * line: "events block at seq N: REASON" (or "an event's seq twice in events_blocks (seq N)").
 */
#ifdef CMT_SQLITE_EXTENSION
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT3
#endif
#include "cmt_events_vtab.h"

#include "cmt_blocks.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEEP 2 /* decoded blocks (about 10 MB each when full) kept once no cursor uses them */

struct dir_entry {
    int64_t first, last, nrows;
};

struct dblock {
    int64_t first;
    long n;
    struct cmt_block_row *rows;
    uint32_t *order; /* rows[order[0..n)] are in seq order */
    int refs;
    uint64_t used;
};

struct ev_vtab {
    sqlite3_vtab base;
    sqlite3 *db;
    uint32_t notnull;       /* bit c: column c may not be NULL (the schema's NOT NULL and PRIMARY KEY) */
    struct dir_entry *dir;  /* every block, by first_seq */
    uint32_t *by_last;      /* indexes into dir, by last_seq, highest first */
    size_t ndir;
    char *dir_error;        /* a damaged directory row: said by the first scan */
    sqlite3_stmt *fetch;
    struct dblock **cache;
    size_t ncache, capcache;
    uint64_t clock;
};

struct head {
    struct dblock *b;
    long pos; /* into b->order */
};

/* idxNum bits (ev_best_index -> ev_filter) */
enum { BY_EQ = 1, BY_GT = 2, BY_GE = 4, BY_LT = 8, BY_LE = 16, BY_DESC = 32 };

struct ev_cursor {
    sqlite3_vtab_cursor base;
    int desc;
    int64_t lo, hi; /* inclusive */
    size_t next;    /* the next block to consider: dir[next] ascending, dir[by_last[next]] descending */
    struct head *act;
    size_t nact, capact;
    long cur; /* act[cur] holds the current row */
    int eof, have_prev;
    int64_t prev;
};

static int fail(struct ev_vtab *v, int rc, const char *msg)
{
    sqlite3_free(v->base.zErrMsg);
    v->base.zErrMsg = msg ? sqlite3_mprintf("%s", msg) : NULL;
    return msg && !v->base.zErrMsg ? SQLITE_NOMEM : rc;
}

static int block_fail(struct ev_vtab *v, int64_t first, const char *why)
{
    sqlite3_free(v->base.zErrMsg);
    v->base.zErrMsg = sqlite3_mprintf("events block at seq %lld: %s", (long long)first, why);
    return v->base.zErrMsg ? SQLITE_CORRUPT : SQLITE_NOMEM;
}

/* Room for one more element in *arr (n elements, *cap allotted, esz bytes each): doubles it when full.
 * 0, or -1 (nothing changed) when out of memory. */
static int grow(void *arr, size_t n, size_t *cap, size_t esz)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap ? 2 * *cap : 8;
    void *g = realloc(*(void **)arr, nc * esz);
    if (!g)
        return -1;
    *(void **)arr = g;
    *cap = nc;
    return 0;
}

/* ---- the table ------------------------------------------------------------------------------------ */

static int cmp_last_desc(const void *a, const void *b, void *arg)
{
    const struct dir_entry *d = arg;
    int64_t x = d[*(const uint32_t *)a].last, y = d[*(const uint32_t *)b].last;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int load_dir(struct ev_vtab *v)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(v->db, "SELECT first_seq, last_seq, nrows, typeof(last_seq) = 'integer'"
                                       " AND typeof(nrows) = 'integer' FROM main.events_blocks ORDER BY first_seq",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    size_t cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow(&v->dir, v->ndir, &cap, sizeof *v->dir) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        struct dir_entry *d = &v->dir[v->ndir++];
        d->first = sqlite3_column_int64(st, 0);
        d->last = sqlite3_column_int64(st, 1);
        d->nrows = sqlite3_column_int64(st, 2);
        if (!sqlite3_column_int(st, 3) && !v->dir_error)
            v->dir_error = sqlite3_mprintf("events block at seq %lld: a column of the wrong type", (long long)d->first);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return rc;
    v->by_last = malloc((v->ndir ? v->ndir : 1) * sizeof *v->by_last);
    if (!v->by_last)
        return SQLITE_NOMEM;
    for (size_t i = 0; i < v->ndir; i++)
        v->by_last[i] = (uint32_t)i;
    qsort_r(v->by_last, v->ndir, sizeof *v->by_last, cmp_last_desc, v->dir);
    return SQLITE_OK;
}

static void free_block(struct dblock *b)
{
    free(b->rows);
    free(b->order);
    free(b);
}

static int ev_disconnect(sqlite3_vtab *tab)
{
    struct ev_vtab *v = (struct ev_vtab *)tab;
    sqlite3_finalize(v->fetch);
    for (size_t i = 0; i < v->ncache; i++)
        free_block(v->cache[i]);
    free(v->cache);
    free(v->dir);
    free(v->by_last);
    sqlite3_free(v->dir_error);
    sqlite3_free(v);
    return SQLITE_OK;
}

static int ev_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out, char **err)
{
    (void)argc, (void)argv;
    char decl[1024] = "CREATE TABLE x(";
    for (int c = 0; c < CMT_BLOCK_NCOLS; c++) {
        size_t len;
        const char *name = cmt_block_column(c, &len);
        size_t at = strlen(decl);
        snprintf(decl + at, sizeof decl - at, "%s%.*s INTEGER", c ? ", " : "", (int)len, name);
    }
    strncat(decl, ")", sizeof decl - strlen(decl) - 1);
    int rc = sqlite3_declare_vtab(db, decl);
    if (rc != SQLITE_OK)
        return rc;
    struct ev_vtab *v = sqlite3_malloc(sizeof *v);
    if (!v)
        return SQLITE_NOMEM;
    memset(v, 0, sizeof *v);
    v->db = db;
    v->notnull = (uint32_t)(uintptr_t)aux;
    if ((rc = load_dir(v)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v2(db, "SELECT data FROM main.events_blocks WHERE first_seq = ?", -1, &v->fetch, NULL)) !=
            SQLITE_OK) {
        *err = sqlite3_mprintf("%s", rc == SQLITE_NOMEM ? "out of memory" : sqlite3_errmsg(db));
        ev_disconnect(&v->base);
        return rc;
    }
    *out = &v->base;
    return SQLITE_OK;
}

static int ev_best_index(sqlite3_vtab *tab, sqlite3_index_info *info)
{
    struct ev_vtab *v = (struct ev_vtab *)tab;
    int eq = -1, lo = -1, hi = -1;
    for (int i = 0; i < info->nConstraint; i++) {
        const struct sqlite3_index_constraint *k = &info->aConstraint[i];
        if (!k->usable || (k->iColumn != 0 && k->iColumn != -1))
            continue;
        if (k->op == SQLITE_INDEX_CONSTRAINT_EQ && eq < 0)
            eq = i;
        else if ((k->op == SQLITE_INDEX_CONSTRAINT_GT || k->op == SQLITE_INDEX_CONSTRAINT_GE) && lo < 0)
            lo = i;
        else if ((k->op == SQLITE_INDEX_CONSTRAINT_LT || k->op == SQLITE_INDEX_CONSTRAINT_LE) && hi < 0)
            hi = i;
    }
    /* Every constraint is checked again by SQLite (omit stays 0): a bound that is not an integer is only
     * narrowed to the integers around it here. */
    int num = 0, arg = 1;
    double rows = (double)v->ndir * CMT_BLOCK_ROWS;
    if (eq >= 0) {
        info->aConstraintUsage[eq].argvIndex = arg++;
        num |= BY_EQ;
        rows = 1;
        info->idxFlags |= SQLITE_INDEX_SCAN_UNIQUE;
    } else {
        if (lo >= 0) {
            info->aConstraintUsage[lo].argvIndex = arg++;
            num |= info->aConstraint[lo].op == SQLITE_INDEX_CONSTRAINT_GT ? BY_GT : BY_GE;
            rows /= 4;
        }
        if (hi >= 0) {
            info->aConstraintUsage[hi].argvIndex = arg++;
            num |= info->aConstraint[hi].op == SQLITE_INDEX_CONSTRAINT_LT ? BY_LT : BY_LE;
            rows /= 4;
        }
    }
    if (info->nOrderBy == 1 && (info->aOrderBy[0].iColumn == 0 || info->aOrderBy[0].iColumn == -1)) {
        info->orderByConsumed = 1;
        if (info->aOrderBy[0].desc)
            num |= BY_DESC;
    }
    info->idxNum = num;
    info->estimatedRows = (sqlite3_int64)(rows < 1 ? 1 : rows);
    info->estimatedCost = rows < 1 ? 1 : rows;
    return SQLITE_OK;
}

/* ---- decoded blocks -------------------------------------------------------------------------------- */

struct keyed {
    int64_t seq;
    uint32_t i;
};

static int cmp_keyed(const void *a, const void *b)
{
    int64_t x = ((const struct keyed *)a)->seq, y = ((const struct keyed *)b)->seq;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* b->order: the rows by seq. They come nearly in order (a thread that queued late moves a few places):
 * insertion sort while it stays cheap, qsort past that (a damaged block may be in any order). */
static int sort_rows(struct dblock *b)
{
    long n = b->n;
    struct keyed *k = malloc((size_t)n * sizeof *k);
    b->order = malloc((size_t)n * sizeof *b->order);
    if (!k || !b->order) {
        free(k);
        return -1;
    }
    for (long i = 0; i < n; i++)
        k[i] = (struct keyed){b->rows[i].v[CMT_BC_SEQ], (uint32_t)i};
    long budget = 8 * n, i = 1;
    for (; i < n && budget > 0; i++) {
        struct keyed x = k[i];
        long j = i;
        while (j > 0 && k[j - 1].seq > x.seq) {
            k[j] = k[j - 1];
            j--;
        }
        k[j] = x;
        budget -= i - j;
    }
    if (i < n)
        qsort(k, (size_t)n, sizeof *k, cmp_keyed);
    for (long j = 0; j < n; j++)
        b->order[j] = k[j].i;
    free(k);
    return 0;
}

static void evict(struct ev_vtab *v)
{
    for (;;) {
        size_t idle = 0, oldest = 0;
        for (size_t i = 0; i < v->ncache; i++)
            if (!v->cache[i]->refs && (!idle++ || v->cache[i]->used < v->cache[oldest]->used))
                oldest = i;
        if (idle <= KEEP)
            return;
        free_block(v->cache[oldest]);
        v->cache[oldest] = v->cache[--v->ncache];
    }
}

static void release_block(struct ev_vtab *v, struct dblock *b)
{
    b->refs--;
    evict(v);
}

/* The decoded block of d, referenced once more; NULL with the error code in *rc. */
static struct dblock *get_block(struct ev_vtab *v, const struct dir_entry *d, int *rc)
{
    for (size_t i = 0; i < v->ncache; i++)
        if (v->cache[i]->first == d->first) {
            v->cache[i]->refs++;
            v->cache[i]->used = ++v->clock;
            return v->cache[i];
        }
    if (grow(&v->cache, v->ncache, &v->capcache, sizeof *v->cache) != 0) {
        *rc = SQLITE_NOMEM;
        return NULL;
    }
    struct dblock *b = calloc(1, sizeof *b);
    if (!b || !(b->rows = malloc((size_t)CMT_BLOCK_ROWS * sizeof *b->rows))) {
        free(b);
        *rc = SQLITE_NOMEM;
        return NULL;
    }
    b->first = d->first;
    sqlite3_bind_int64(v->fetch, 1, d->first);
    int step = sqlite3_step(v->fetch);
    const char *why = NULL;
    char msg[160];
    if (step != SQLITE_ROW) {
        *rc = step == SQLITE_DONE ? block_fail(v, d->first, "gone from the file while it was read") : step;
        sqlite3_reset(v->fetch);
        free_block(b);
        return NULL;
    }
    if (sqlite3_column_type(v->fetch, 0) != SQLITE_BLOB) {
        why = "a column of the wrong type";
    } else {
        b->n = cmt_block_decode(sqlite3_column_blob(v->fetch, 0), (size_t)sqlite3_column_bytes(v->fetch, 0), b->rows,
                                msg, sizeof msg);
        if (b->n < 0)
            why = msg;
    }
    sqlite3_reset(v->fetch);
    if (!why) {
        int64_t lo = b->rows[0].v[CMT_BC_SEQ], hi = lo;
        uint32_t nulls = 0;
        for (long i = 0; i < b->n; i++) {
            int64_t seq = b->rows[i].v[CMT_BC_SEQ];
            lo = seq < lo ? seq : lo;
            hi = seq > hi ? seq : hi;
            nulls |= b->rows[i].nulls;
        }
        if ((nulls &= v->notnull) != 0) {
            int c = __builtin_ctz(nulls);
            size_t len;
            const char *name = cmt_block_column(c, &len);
            snprintf(msg, sizeof msg, "NOT NULL constraint failed: events.%.*s", (int)len, name);
            why = msg;
        } else if (b->n != d->nrows || lo != d->first || hi != d->last) {
            why = "its rows disagree with its header";
        }
    }
    if (why) {
        *rc = block_fail(v, d->first, why);
        free_block(b);
        return NULL;
    }
    struct cmt_block_row *fit = realloc(b->rows, (size_t)b->n * sizeof *b->rows);
    if (fit)
        b->rows = fit;
    if (sort_rows(b) != 0) {
        free_block(b);
        *rc = SQLITE_NOMEM;
        return NULL;
    }
    b->refs = 1;
    b->used = ++v->clock;
    v->cache[v->ncache++] = b;
    evict(v);
    return b;
}

/* ---- cursors: the merge ---------------------------------------------------------------------------- */

static int64_t head_seq(const struct head *h)
{
    return h->b->rows[h->b->order[h->pos]].v[CMT_BC_SEQ];
}

static void drop_head(struct ev_cursor *c, size_t i)
{
    struct ev_vtab *v = (struct ev_vtab *)c->base.pVtab;
    release_block(v, c->act[i].b);
    c->act[i] = c->act[--c->nact];
}

static void drop_all(struct ev_cursor *c)
{
    while (c->nact)
        drop_head(c, c->nact - 1);
}

/* Starts block d in the merge, at its first row in [lo, hi] (its last, descending). */
static int activate(struct ev_cursor *c, const struct dir_entry *d)
{
    struct ev_vtab *v = (struct ev_vtab *)c->base.pVtab;
    int rc = SQLITE_OK;
    struct dblock *b = get_block(v, d, &rc);
    if (!b)
        return rc;
    /* first row with seq >= lo, or (descending) last row with seq <= hi */
    long a = 0, z = b->n;
    int64_t key = c->desc ? c->hi : c->lo;
    while (a < z) {
        long m = a + (z - a) / 2;
        int64_t s = b->rows[b->order[m]].v[CMT_BC_SEQ];
        if (c->desc ? s <= key : s < key)
            a = m + 1;
        else
            z = m;
    }
    long pos = c->desc ? a - 1 : a;
    if (pos < 0 || pos >= b->n) {
        release_block(v, b);
        return SQLITE_OK;
    }
    if (grow(&c->act, c->nact, &c->capact, sizeof *c->act) != 0) {
        release_block(v, b);
        return SQLITE_NOMEM;
    }
    c->act[c->nact++] = (struct head){b, pos};
    return SQLITE_OK;
}

/* Puts the cursor on the next row of the merge (lowest seq ascending, highest descending), or at eof. */
static int settle(struct ev_cursor *c)
{
    struct ev_vtab *v = (struct ev_vtab *)c->base.pVtab;
    for (;;) {
        long best = -1;
        int64_t bs = 0;
        for (size_t i = 0; i < c->nact; i++) {
            int64_t s = head_seq(&c->act[i]);
            if (best < 0 || (c->desc ? s > bs : s < bs)) {
                best = (long)i;
                bs = s;
            }
        }
        /* A block not started yet that may hold a row before the best one so far: start it first. */
        if (c->next < v->ndir) {
            const struct dir_entry *d = c->desc ? &v->dir[v->by_last[c->next]] : &v->dir[c->next];
            int64_t edge = c->desc ? d->last : d->first;
            int in_range = c->desc ? edge >= c->lo : edge <= c->hi;
            int before = best < 0 || (c->desc ? edge >= bs : edge <= bs);
            if (in_range && before) {
                c->next++;
                if (c->desc ? d->first > c->hi : d->last < c->lo)
                    continue; /* wholly outside the range */
                int rc = activate(c, d);
                if (rc != SQLITE_OK)
                    return rc;
                continue;
            }
        }
        if (best < 0 || (c->desc ? bs < c->lo : bs > c->hi)) {
            c->eof = 1;
            drop_all(c);
            return SQLITE_OK;
        }
        if (c->have_prev && bs == c->prev) {
            sqlite3_free(v->base.zErrMsg);
            v->base.zErrMsg = sqlite3_mprintf("an event's seq twice in events_blocks (seq %lld)", (long long)bs);
            return v->base.zErrMsg ? SQLITE_CORRUPT : SQLITE_NOMEM;
        }
        if (c->have_prev && (c->desc ? bs > c->prev : bs < c->prev)) {
            /* cannot happen: every block's rows are sorted and merged; said rather than silently misread */
            sqlite3_free(v->base.zErrMsg);
            v->base.zErrMsg = sqlite3_mprintf("events out of seq order (seq %lld after %lld): a bug in cmt_events",
                                              (long long)bs, (long long)c->prev);
            return v->base.zErrMsg ? SQLITE_INTERNAL : SQLITE_NOMEM;
        }
        c->cur = best;
        c->prev = bs;
        c->have_prev = 1;
        return SQLITE_OK;
    }
}

static int ev_open(sqlite3_vtab *tab, sqlite3_vtab_cursor **out)
{
    (void)tab;
    struct ev_cursor *c = sqlite3_malloc(sizeof *c);
    if (!c)
        return SQLITE_NOMEM;
    memset(c, 0, sizeof *c);
    c->eof = 1;
    *out = &c->base;
    return SQLITE_OK;
}

static int ev_close(sqlite3_vtab_cursor *cur)
{
    struct ev_cursor *c = (struct ev_cursor *)cur;
    drop_all(c);
    free(c->act);
    sqlite3_free(c);
    return SQLITE_OK;
}

/* A bound from SQL: 0 if it admits no row (NULL), else 1 with the integer bound in *out, widened to the
 * integers around a real (SQLite checks the constraint again). Text and blobs bound nothing. */
static int bound(sqlite3_value *val, int upper, int strict, int64_t *out)
{
    switch (sqlite3_value_numeric_type(val)) {
    case SQLITE_NULL:
        return 0;
    case SQLITE_INTEGER: {
        int64_t x = sqlite3_value_int64(val);
        if (strict && (upper ? x == INT64_MIN : x == INT64_MAX))
            return 0;
        *out = strict ? (upper ? x - 1 : x + 1) : x;
        return 1;
    }
    case SQLITE_FLOAT: {
        double x = sqlite3_value_double(val);
        if (x != x)
            return 0; /* NaN: SQLite compares it as NULL */
        /* Past either end of int64 (2^63 is exact as a double; every double below it converts): a bound
         * beyond the integers on its own side admits no row, one beyond the other side is no bound. */
        if (x >= 9223372036854775808.0) {
            if (!upper)
                return 0;
            *out = INT64_MAX;
            return 1;
        }
        if (x < -9223372036854775808.0) {
            if (upper)
                return 0;
            *out = INT64_MIN;
            return 1;
        }
        int64_t t = (int64_t)x; /* toward zero; then the integer at or beyond x on the open side */
        if (upper && (double)t < x)
            t++;
        if (!upper && (double)t > x)
            t--;
        *out = t;
        return 1;
    }
    default:
        *out = upper ? INT64_MAX : INT64_MIN;
        return 1;
    }
}

static int ev_filter(sqlite3_vtab_cursor *cur, int num, const char *str, int argc, sqlite3_value **argv)
{
    (void)str;
    struct ev_cursor *c = (struct ev_cursor *)cur;
    struct ev_vtab *v = (struct ev_vtab *)cur->pVtab;
    drop_all(c);
    c->desc = (num & BY_DESC) != 0;
    c->lo = INT64_MIN;
    c->hi = INT64_MAX;
    c->next = 0;
    c->have_prev = 0;
    c->eof = 0;
    if (v->dir_error)
        return fail(v, SQLITE_CORRUPT, v->dir_error);
    int a = 0, ok = 1;
    if (num & BY_EQ) {
        ok = a < argc && bound(argv[a], 0, 0, &c->lo) && bound(argv[a], 1, 0, &c->hi);
        a++;
    }
    if (ok && (num & (BY_GT | BY_GE)))
        ok = a < argc && bound(argv[a++], 0, (num & BY_GT) != 0, &c->lo);
    if (ok && (num & (BY_LT | BY_LE)))
        ok = a < argc && bound(argv[a++], 1, (num & BY_LT) != 0, &c->hi);
    if (!ok || c->lo > c->hi) {
        c->eof = 1;
        return SQLITE_OK;
    }
    return settle(c);
}

static int ev_next(sqlite3_vtab_cursor *cur)
{
    struct ev_cursor *c = (struct ev_cursor *)cur;
    struct head *h = &c->act[c->cur];
    h->pos += c->desc ? -1 : 1;
    if (h->pos < 0 || h->pos >= h->b->n)
        drop_head(c, (size_t)c->cur);
    return settle(c);
}

static int ev_eof(sqlite3_vtab_cursor *cur)
{
    return ((struct ev_cursor *)cur)->eof;
}

static int ev_column(sqlite3_vtab_cursor *cur, sqlite3_context *ctx, int col)
{
    const struct ev_cursor *c = (const struct ev_cursor *)cur;
    const struct head *h = &c->act[c->cur];
    const struct cmt_block_row *r = &h->b->rows[h->b->order[h->pos]];
    if ((r->nulls >> col) & 1)
        sqlite3_result_null(ctx);
    else
        sqlite3_result_int64(ctx, r->v[col]);
    return SQLITE_OK;
}

static int ev_rowid(sqlite3_vtab_cursor *cur, sqlite3_int64 *rowid)
{
    const struct ev_cursor *c = (const struct ev_cursor *)cur;
    *rowid = head_seq(&c->act[c->cur]);
    return SQLITE_OK;
}

static sqlite3_module ev_module = {
    .xCreate = ev_connect,
    .xConnect = ev_connect,
    .xBestIndex = ev_best_index,
    .xDisconnect = ev_disconnect,
    .xDestroy = ev_disconnect,
    .xOpen = ev_open,
    .xClose = ev_close,
    .xFilter = ev_filter,
    .xNext = ev_next,
    .xEof = ev_eof,
    .xColumn = ev_column,
    .xRowid = ev_rowid,
};

int cmt_events_vtab_register(sqlite3 *db, uint32_t notnull)
{
    return sqlite3_create_module_v2(db, "cmt_events", &ev_module, (void *)(uintptr_t)notnull, NULL);
}
