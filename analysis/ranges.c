/*
 * ranges.c: phases of a run and the memory inside them (see ranges.h).
 *
 * Runs in the `cumemtrace` command. Reads the ranges table, the memory extension's tables and, for the
 * thread of an event, one indexed lookup in events; never writes to a trace. Functions return 0 or -1
 * with a one-line reason in err.
 */
#include "ranges.h"

#include <stdlib.h>
#include <string.h>

static int has_table(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    int found = sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", -1, &st,
                                   NULL) == SQLITE_OK &&
                sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return found;
}

static char *display_name(const char *domain, const char *name)
{
    const char *n = name ? name : "(unnamed)";
    size_t need = (domain ? strlen(domain) + 1 : 0) + strlen(n) + 1;
    char *out = malloc(need);
    if (out) {
        if (domain)
            snprintf(out, need, "%s:%s", domain, n);
        else
            memcpy(out, n, need);
    }
    return out;
}

static void ranges_free(struct cmt_trace *t);

static int ranges_load(struct cmt_trace *t, char *err, size_t errlen)
{
    if (t->ranges)
        return 0;
    struct cmt_ranges *g = calloc(1, sizeof *g);
    if (!g)
        return cmt_fail(err, errlen, "out of memory");
    t->ranges = g;
    t->ranges_free = ranges_free;
    if (!has_table(t->db, "ranges"))
        return 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(t->db,
                           "SELECT range_id, kind, domain, name, tid, start_seq, end_seq, start_ns, end_ns, depth, parent_id"
                           " FROM ranges ORDER BY start_seq, start_ns, range_id",
                           -1, &st, NULL) != SQLITE_OK)
        return cmt_fail(err, errlen, "%s: corrupt trace: %s", t->path, sqlite3_errmsg(t->db));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (sqlite3_column_type(st, 5) != SQLITE_INTEGER || sqlite3_column_type(st, 7) != SQLITE_INTEGER) {
            /* the id is read before the statement goes (found by tests/fuzz_traces.py: read after it) */
            long long id = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
            return cmt_fail(err, errlen, "%s: corrupt trace: range %lld has no start", t->path, id);
        }
        struct cmt_range *r = cmt_push(&g->r, &g->n, &g->cap, sizeof *r);
        if (!r) {
            sqlite3_finalize(st);
            return cmt_fail(err, errlen, "out of memory");
        }
        memset(r, 0, sizeof *r);
        const char *kind = (const char *)sqlite3_column_text(st, 1);
        r->id = sqlite3_column_int64(st, 0);
        r->push = kind && !strcmp(kind, "push");
        r->name = display_name((const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3));
        r->tid = sqlite3_column_type(st, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 4);
        r->start_seq = sqlite3_column_int64(st, 5);
        r->end_seq = sqlite3_column_type(st, 6) == SQLITE_NULL ? INT64_MAX : sqlite3_column_int64(st, 6);
        r->start_ns = sqlite3_column_int64(st, 7);
        r->end_ns = sqlite3_column_type(st, 8) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 8);
        r->depth = sqlite3_column_type(st, 9) == SQLITE_NULL ? -1 : (int32_t)sqlite3_column_int64(st, 9);
        r->parent_id = sqlite3_column_type(st, 10) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 10);
        const char *dom = (const char *)sqlite3_column_text(st, 2);
        r->domain = dom ? strdup(dom) : NULL;
        if (!r->name || (dom && !r->domain)) {
            sqlite3_finalize(st);
            return cmt_fail(err, errlen, "out of memory");
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return cmt_fail(err, errlen, "%s: corrupt trace: %s", t->path, sqlite3_errmsg(t->db));
    return 0;
}

static void ranges_observe(struct cmt_trace *t, int64_t seq, int64_t before, int64_t after)
{
    struct cmt_ranges *g = t->ranges;
    if (!g || !g->n)
        return;
    /* Ranges that began since the last change start at the level that held meanwhile. */
    while (g->next < g->n && g->r[g->next].start_seq < seq) {
        size_t *o = cmt_push(&g->open, &g->nopen, &g->opencap, sizeof *o);
        if (!o)
            return; /* out of memory: this range keeps the level at its start */
        g->r[g->next].peak = before;
        *o = g->next++;
    }
    for (size_t i = 0; i < g->nopen;) {
        struct cmt_range *r = &g->r[g->open[i]];
        if (r->end_seq <= seq) {
            g->open[i] = g->open[--g->nopen]; /* ended before this event: its peak is complete */
            continue;
        }
        if (after > r->peak)
            r->peak = after;
        i++;
    }
}

static void ranges_finish(struct cmt_trace *t)
{
    struct cmt_ranges *g = t->ranges;
    if (!g)
        return;
    for (; g->next < g->n; g->next++)
        g->r[g->next].peak = t->live;
    g->nopen = 0;
}

static int obs_begin(void *ctx, struct cmt_set *s, char *err, size_t errlen)
{
    (void)ctx;
    for (size_t i = 0; i < s->n; i++)
        if (ranges_load(s->t[i], err, errlen) != 0)
            return -1;
    return 0;
}

static int obs_change(void *ctx, struct cmt_set *s, size_t ti, const struct cmt_rec *r, int sign, int64_t seq,
                      int64_t ts, char *err, size_t errlen)
{
    (void)ctx, (void)ts, (void)err, (void)errlen;
    if (CMT_KIND_IS_PHYSICAL(r->kind)) {
        struct cmt_trace *t = s->t[ti];
        ranges_observe(t, seq, t->live - sign * r->size, t->live);
    }
    return 0;
}

static int obs_end(void *ctx, struct cmt_set *s, char *err, size_t errlen)
{
    (void)ctx, (void)err, (void)errlen;
    for (size_t i = 0; i < s->n; i++)
        ranges_finish(s->t[i]);
    return 0;
}

struct cmt_observer cmt_ranges_observer(void)
{
    return (struct cmt_observer){.begin = obs_begin, .change = obs_change, .end = obs_end};
}

static void ranges_free(struct cmt_trace *t)
{
    struct cmt_ranges *g = t->ranges;
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++) {
        free(g->r[i].name);
        free(g->r[i].domain);
    }
    free(g->r);
    free(g->open);
    free(g);
    t->ranges = NULL;
}

/* ---- questions the verbs ask -------------------------------------------------------------------- */

static int event_tid(struct cmt_trace *t, int64_t seq, int64_t *tid, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    *tid = -1;
    if (sqlite3_prepare_v2(t->db, "SELECT tid FROM events WHERE seq = ?", -1, &st, NULL) != SQLITE_OK)
        return cmt_fail(err, errlen, "%s: corrupt trace: %s", t->path, sqlite3_errmsg(t->db));
    sqlite3_bind_int64(st, 1, seq);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *tid = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : cmt_fail(err, errlen, "%s: corrupt trace", t->path);
}

static int collect(const struct cmt_ranges *g, int64_t seq, int64_t tid, struct cmt_range_stack *out)
{
    size_t cap = 0;
    /* By start: on one thread, an enclosing push range always started before what it encloses. Imported
     * ranges (no thread) belong to every thread. */
    for (size_t i = 0; i < g->n && g->r[i].start_seq < seq; i++) {
        const struct cmt_range *r = &g->r[i];
        if (!r->push || r->end_seq <= seq || (r->tid != tid && r->tid != -1))
            continue;
        const char **slot = cmt_push(&out->names, &out->n, &cap, sizeof *slot);
        if (!slot)
            return -1;
        *slot = r->name;
    }
    return 0;
}

int cmt_ranges_stack_at(struct cmt_set *s, int ti, int64_t seq, struct cmt_range_stack *out, char *err,
                        size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->tid = -1;
    if (ti < 0 || (size_t)ti >= s->n)
        return 0;
    struct cmt_trace *t = s->t[ti];
    struct cmt_ranges *g = t->ranges;
    if (!g || !g->n)
        return 0;
    int64_t tid;
    if (event_tid(t, seq, &tid, err, errlen) != 0)
        return -1;
    if (collect(g, seq, tid, out) != 0)
        return cmt_fail(err, errlen, "out of memory");
    if (out->n) {
        out->tid = tid;
        out->same_thread = 1;
        return 0;
    }
    /* No range open on the allocating thread (PyTorch runs backward on its autograd threads while the
     * phases are pushed on the main one): the thread whose innermost open range began last. */
    int64_t best = -1, best_seq = -1;
    for (size_t i = 0; i < g->n && g->r[i].start_seq < seq; i++) {
        const struct cmt_range *r = &g->r[i];
        if (r->push && r->end_seq > seq && r->tid >= 0 && r->start_seq > best_seq) {
            best_seq = r->start_seq;
            best = r->tid;
        }
    }
    if (best < 0)
        return 0;
    if (collect(g, seq, best, out) != 0)
        return cmt_fail(err, errlen, "out of memory");
    out->tid = best;
    return 0;
}

static int cmp_peak(const void *a, const void *b)
{
    const struct cmt_range_peak *x = a, *y = b;
    if (x->peak != y->peak)
        return x->peak > y->peak ? -1 : 1;
    return strcmp(x->name, y->name);
}

int cmt_ranges_report(struct cmt_range_report *rr, struct cmt_set *s, char *err, size_t errlen)
{
    memset(rr, 0, sizeof *rr);
    struct smap ix = {0};
    size_t cap = 0;
    int rc = -1;
    for (size_t ti = 0; ti < s->n; ti++) {
        struct cmt_ranges *g = s->t[ti]->ranges;
        for (size_t i = 0; g && i < g->n; i++) {
            const struct cmt_range *r = &g->r[i];
            rr->any = 1;
            int64_t *k = smap_get(&ix, r->name);
            struct cmt_range_peak *p;
            if (k) {
                p = &rr->peaks[*k];
            } else {
                p = cmt_push(&rr->peaks, &rr->npeaks, &cap, sizeof *p);
                if (!p || smap_put(&ix, r->name, (int64_t)rr->npeaks - 1) != 0) {
                    cmt_fail(err, errlen, "out of memory");
                    goto out;
                }
                p->name = r->name;
                p->count = 0;
                p->peak = 0;
            }
            p->count++;
            if (r->peak > p->peak)
                p->peak = r->peak;
        }
    }
    if (rr->npeaks)
        qsort(rr->peaks, rr->npeaks, sizeof *rr->peaks, cmp_peak);
    if (s->peak_trace >= 0 && cmt_ranges_stack_at(s, s->peak_trace, s->peak_seq, &rr->at_peak, err, errlen) != 0)
        goto out;
    if (cmt_heaps_load(s, &rr->heaps, &rr->nheaps, err, errlen) != 0)
        goto out;
    if (s->nfails) {
        rr->at_fail = calloc(s->nfails, sizeof *rr->at_fail);
        if (!rr->at_fail) {
            cmt_fail(err, errlen, "out of memory");
            goto out;
        }
        rr->nfail = s->nfails;
        for (size_t i = 0; i < s->nfails; i++)
            if (cmt_ranges_stack_at(s, s->fails[i].trace, s->fails[i].seq, &rr->at_fail[i], err, errlen) != 0)
                goto out;
    }
    rc = 0;
out:
    smap_free(&ix);
    return rc; /* on failure too, the caller frees what was built with cmt_ranges_report_free */
}

void cmt_ranges_report_free(struct cmt_range_report *rr)
{
    free(rr->at_peak.names);
    for (size_t i = 0; rr->at_fail && i < rr->nfail; i++)
        free(rr->at_fail[i].names);
    free(rr->at_fail);
    free(rr->peaks);
    cmt_heaps_free(rr->heaps, rr->nheaps);
    memset(rr, 0, sizeof *rr);
}

/* ---- comparing two runs (diff) ------------------------------------------------------------------- */

static int cmp_inst(const void *x, const void *y)
{
    const struct cmt_range_inst *p = x, *q = y;
    if (p->r->start_ns != q->r->start_ns)
        return p->r->start_ns < q->r->start_ns ? -1 : 1;
    return p->trace - q->trace;
}

int cmt_ranges_instances(const struct cmt_set *s, const char *name, struct cmt_range_inst **out, size_t *n)
{
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    for (size_t ti = 0; ti < s->n; ti++) {
        const struct cmt_ranges *g = s->t[ti]->ranges;
        for (size_t i = 0; g && i < g->n; i++) {
            if (strcmp(g->r[i].name, name))
                continue;
            struct cmt_range_inst *p = cmt_push(out, n, &cap, sizeof *p);
            if (!p)
                return -1;
            p->trace = (int)ti;
            p->r = &g->r[i];
        }
    }
    if (*n)
        qsort(*out, *n, sizeof **out, cmp_inst);
    return 0;
}

/* Adds side's ranges (those that start inside `within`, if given) to the rows, by name. */
static int add_side(struct smap *ix, struct cmt_phase_row **rows, size_t *n, size_t *cap, const struct cmt_set *s,
                    const struct cmt_range_inst *within, int side)
{
    for (size_t ti = 0; ti < s->n; ti++) {
        if (within && (int)ti != within->trace)
            continue;
        const struct cmt_ranges *g = s->t[ti]->ranges;
        for (size_t i = 0; g && i < g->n; i++) {
            const struct cmt_range *r = &g->r[i];
            if (within && (r == within->r || r->start_seq <= within->r->start_seq ||
                           r->start_seq >= within->r->end_seq))
                continue;
            int64_t *k = smap_get(ix, r->name);
            struct cmt_phase_row *p;
            if (k) {
                p = &(*rows)[*k];
            } else {
                p = cmt_push(rows, n, cap, sizeof *p);
                if (!p || smap_put(ix, r->name, (int64_t)*n - 1) != 0)
                    return -1;
                memset(p, 0, sizeof *p);
                p->name = r->name;
            }
            p->count[side]++;
            if (r->peak > p->peak[side])
                p->peak[side] = r->peak;
            if (r->depth > p->depth)
                p->depth = r->depth;
        }
    }
    return 0;
}

static int cmp_phase(const void *x, const void *y)
{
    const struct cmt_phase_row *p = x, *q = y;
    int64_t dp = p->peak[1] - p->peak[0], dq = q->peak[1] - q->peak[0];
    if (dp != dq)
        return dp > dq ? -1 : 1;
    if (p->depth != q->depth)
        return p->depth > q->depth ? -1 : 1; /* the innermost phase says more than what encloses it */
    return strcmp(p->name, q->name);
}

int cmt_ranges_phases(const struct cmt_set *a, const struct cmt_range_inst *ia, const struct cmt_set *b,
                      const struct cmt_range_inst *ib, int aligned, struct cmt_phase_row **out, size_t *n)
{
    struct smap ix = {0};
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    int rc = -1;
    if ((!aligned || ia) && add_side(&ix, out, n, &cap, a, ia, 0) != 0)
        goto out;
    if ((!aligned || ib) && add_side(&ix, out, n, &cap, b, ib, 1) != 0)
        goto out;
    if (*n)
        qsort(*out, *n, sizeof **out, cmp_phase);
    rc = 0;
out:
    smap_free(&ix);
    return rc;
}

/* ---- custom allocators: NVTX's memory extension ---------------------------------------------------- */

int cmt_heaps_load(struct cmt_set *s, struct cmt_heap **out, size_t *n, char *err, size_t errlen)
{
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    for (size_t ti = 0; ti < s->n; ti++) {
        struct cmt_trace *t = s->t[ti];
        if (!has_table(t->db, "mem_heaps"))
            continue;
        /* "At the peak": the set's peak in its trace, each other trace's own peak. */
        int64_t at = (int)ti == s->peak_trace ? s->peak_seq : t->peak_seq;
        sqlite3_stmt *st = NULL;
        const char *sql =
            "SELECT h.heap_id, h.domain, h.name, h.usage, h.size,"
            " (SELECT e.seq FROM events e WHERE e.op IN (?2, ?3) AND e.result = 0 AND e.seq < h.seq"
            "   AND e.address <= h.address AND e.address + e.size > h.address ORDER BY e.seq DESC LIMIT 1),"
            " (SELECT count(*) FROM mem_regions r WHERE r.heap_id = h.heap_id AND r.seq < ?1"
            "   AND (r.end_seq IS NULL OR r.end_seq > ?1)),"
            " (SELECT coalesce(sum(size), 0) FROM mem_regions r WHERE r.heap_id = h.heap_id AND r.seq < ?1"
            "   AND (r.end_seq IS NULL OR r.end_seq > ?1)),"
            " (SELECT count(*) FROM mem_regions r WHERE r.heap_id = h.heap_id AND r.end_seq IS NULL),"
            " (SELECT coalesce(sum(size), 0) FROM mem_regions r WHERE r.heap_id = h.heap_id AND r.end_seq IS NULL),"
            " h.end_seq IS NULL"
            " FROM mem_heaps h ORDER BY h.heap_id";
        if (sqlite3_prepare_v2(t->db, sql, -1, &st, NULL) != SQLITE_OK)
            return cmt_fail(err, errlen, "%s: corrupt trace: %s", t->path, sqlite3_errmsg(t->db));
        sqlite3_bind_int64(st, 1, at);
        sqlite3_bind_int(st, 2, CMT_OP_ALLOC); /* the allocation or mapping holding the heap */
        sqlite3_bind_int(st, 3, CMT_OP_MAP);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            struct cmt_heap *h = cmt_push(out, n, &cap, sizeof *h);
            if (!h) {
                sqlite3_finalize(st);
                return cmt_fail(err, errlen, "out of memory");
            }
            memset(h, 0, sizeof *h);
            h->trace = (int)ti;
            h->id = sqlite3_column_int64(st, 0);
            h->name = display_name((const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2));
            h->usage = sqlite3_column_int64(st, 3);
            h->size = sqlite3_column_type(st, 4) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 4);
            h->event_seq = sqlite3_column_type(st, 5) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 5);
            h->regions_at_peak = sqlite3_column_int64(st, 6);
            h->bytes_at_peak = sqlite3_column_int64(st, 7);
            h->regions_at_end = sqlite3_column_int64(st, 8);
            h->bytes_at_end = sqlite3_column_int64(st, 9);
            h->registered_at_end = sqlite3_column_int(st, 10);
            if (!h->name) {
                sqlite3_finalize(st);
                return cmt_fail(err, errlen, "out of memory");
            }
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            return cmt_fail(err, errlen, "%s: corrupt trace: %s", t->path, sqlite3_errmsg(t->db));
    }
    return 0;
}

void cmt_heaps_free(struct cmt_heap *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(h[i].name);
    free(h);
}
