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

static int ranges_load(struct cmt_trace *t, char *err, size_t errlen)
{
    if (t->ranges)
        return 0;
    struct cmt_ranges *g = calloc(1, sizeof *g);
    if (!g)
        return cmt_fail(err, errlen, "out of memory");
    t->ranges = g;
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
            sqlite3_finalize(st);
            return cmt_fail(err, errlen, "%s: corrupt trace: range %lld has no start", t->path,
                            (long long)sqlite3_column_int64(st, 0));
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

void cmt_ranges_free(struct cmt_trace *t)
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

/* ---- renderers ----------------------------------------------------------------------------------- */

void cmt_ranges_text_stack(struct sbuf *b, const struct cmt_range_stack *k)
{
    for (size_t i = 0; i < k->n; i++)
        sb_printf(b, "%s%s", i ? " > " : "", k->names[i]);
}

void cmt_ranges_json_stack(struct sbuf *b, const struct cmt_range_stack *k)
{
    sb_putc(b, '[');
    for (size_t i = 0; i < k->n; i++) {
        if (i)
            sb_putc(b, ',');
        sb_json_str(b, k->names[i]);
    }
    sb_putc(b, ']');
}

void cmt_ranges_text(struct sbuf *b, const struct cmt_range_report *rr)
{
    char t1[32], t2[32];
    if (!rr->any)
        return;
    sb_puts(b, "\nPHASES (NVTX RANGES)\n  at the peak: ");
    if (rr->at_peak.n)
        cmt_ranges_text_stack(b, &rr->at_peak);
    else
        sb_puts(b, "(no range open)");
    if (rr->at_peak.n && !rr->at_peak.same_thread)
        sb_printf(b, " (thread %lld; none was open on the allocating thread)", (long long)rr->at_peak.tid);
    sb_printf(b, "\n  %-40s %10s %12s\n", "range", "count", "peak");
    for (size_t i = 0; i < rr->npeaks; i++)
        sb_printf(b, "  %-40s %10s %12s\n", rr->peaks[i].name, cmt_count_str(rr->peaks[i].count, t1),
                  cmt_bytes_str(rr->peaks[i].peak, t2));
}

void cmt_ranges_json(struct sbuf *b, const struct cmt_range_report *rr)
{
    sb_puts(b, ",\"ranges_at_peak\":");
    cmt_ranges_json_stack(b, &rr->at_peak);
    if (rr->at_peak.tid >= 0)
        sb_printf(b, ",\"ranges_at_peak_thread\":{\"tid\":%lld,\"allocating_thread\":%s}",
                  (long long)rr->at_peak.tid, rr->at_peak.same_thread ? "true" : "false");
    else
        sb_puts(b, ",\"ranges_at_peak_thread\":null");
    sb_puts(b, ",\"range_peaks\":[");
    for (size_t i = 0; i < rr->npeaks; i++) {
        sb_printf(b, "%s{\"name\":", i ? "," : "");
        sb_json_str(b, rr->peaks[i].name);
        sb_printf(b, ",\"count\":%lld,\"peak_bytes\":%lld}", (long long)rr->peaks[i].count,
                  (long long)rr->peaks[i].peak);
    }
    sb_putc(b, ']');
}

void cmt_ranges_chrome(struct sbuf *b, const struct cmt_set *s, int *first)
{
    /* Push ranges nest on their thread: complete slices ("X") on it. Start/end ranges may end on another
     * thread and overlap anything: async slices ("b"/"e"), one track per name. Open at the end: they
     * last until the trace's end. Imported ranges (no thread) go on the process's main thread. */
    for (size_t ti = 0; ti < s->n; ti++) {
        const struct cmt_trace *t = s->t[ti];
        const struct cmt_ranges *g = t->ranges;
        int64_t end = t->has_end && t->end_ns > t->last_ts ? t->end_ns : t->last_ts;
        for (size_t i = 0; g && i < g->n; i++) {
            const struct cmt_range *r = &g->r[i];
            int64_t e = r->end_ns >= 0 ? r->end_ns : end;
            if (e < r->start_ns)
                e = r->start_ns;
            long long tid = r->tid >= 0 ? (long long)r->tid : (long long)t->pid;
            if (r->push) {
                sb_printf(b, "%s{\"ph\":\"X\",\"cat\":\"nvtx\",\"name\":", *first ? "" : ",\n");
                sb_json_str(b, r->name);
                sb_printf(b, ",\"pid\":%lld,\"tid\":%lld,\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"peak_bytes\":%lld,"
                             "\"range_id\":%lld,\"open_at_end\":%s}}",
                          (long long)t->pid, tid, (double)(r->start_ns - s->t0) / 1e3, (double)(e - r->start_ns) / 1e3,
                          (long long)r->peak, (long long)r->id, r->end_ns < 0 ? "true" : "false");
            } else {
                for (int k = 0; k < 2; k++) {
                    sb_printf(b, "%s{\"ph\":\"%s\",\"cat\":\"nvtx\",\"id\":%lld,\"name\":", *first ? "" : ",\n",
                              k ? "e" : "b", (long long)r->id);
                    sb_json_str(b, r->name);
                    sb_printf(b, ",\"pid\":%lld,\"tid\":%lld,\"ts\":%.3f", (long long)t->pid, tid,
                              (double)((k ? e : r->start_ns) - s->t0) / 1e3);
                    if (!k)
                        sb_printf(b, ",\"args\":{\"peak_bytes\":%lld,\"range_id\":%lld}", (long long)r->peak,
                                  (long long)r->id);
                    sb_putc(b, '}');
                    *first = 0;
                }
            }
            *first = 0;
        }
    }
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

/* ---- bands under the SVG timeline (timeline -o X.svg) -------------------------------------------- */

#define BAND_ROWS 12 /* (thread, level) rows drawn at most */

static unsigned name_hue(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % 360;
}

int cmt_ranges_svg(struct sbuf *b, const struct cmt_set *s)
{
    /* The timeline's geometry (chart.c): plot from x = 80, 840 wide, over t0..tend. One row per thread
     * and nesting level (start/end ranges on a row of their own per thread), outermost first. */
    int64_t row_tid[BAND_ROWS];
    int row_depth[BAND_ROWS], row_trace[BAND_ROWS], nrows = 0;
    double span = (double)(s->tend - s->t0);
    for (size_t ti = 0; ti < s->n; ti++) {
        const struct cmt_ranges *g = s->t[ti]->ranges;
        for (size_t i = 0; g && i < g->n; i++) {
            const struct cmt_range *r = &g->r[i];
            int depth = r->push ? r->depth : 1000;
            int found = 0;
            for (int k = 0; k < nrows && !found; k++)
                found = row_trace[k] == (int)ti && row_tid[k] == r->tid && row_depth[k] == depth;
            if (!found && nrows < BAND_ROWS) {
                int k = nrows++;
                /* keep rows ordered by trace, thread, level */
                while (k > 0 && (row_trace[k - 1] > (int)ti || (row_trace[k - 1] == (int)ti &&
                                 (row_tid[k - 1] > r->tid || (row_tid[k - 1] == r->tid && row_depth[k - 1] > depth))))) {
                    row_trace[k] = row_trace[k - 1];
                    row_tid[k] = row_tid[k - 1];
                    row_depth[k] = row_depth[k - 1];
                    k--;
                }
                row_trace[k] = (int)ti;
                row_tid[k] = r->tid;
                row_depth[k] = depth;
            }
        }
    }
    double h = 20 + 18.0 * nrows;
    sb_printf(b, "<svg xmlns='http://www.w3.org/2000/svg' width='960' height='%.0f' viewBox='0 0 960 %.0f'"
                 " font-family='sans-serif'><title>phases</title><rect width='100%%' height='100%%' fill='white'/>",
              h, h);
    for (int k = 0; k < nrows; k++) {
        double y = 10 + 18.0 * k;
        sb_printf(b, "<text x='74' y='%.1f' text-anchor='end' font-size='10' fill='#555'>", y + 12);
        if (row_tid[k] >= 0)
            sb_printf(b, "tid %lld%s", (long long)row_tid[k], row_depth[k] == 1000 ? " s/e" : "");
        else
            sb_puts(b, "torch");
        sb_puts(b, "</text>");
        const struct cmt_trace *t = s->t[row_trace[k]];
        const struct cmt_ranges *g = t->ranges;
        int64_t end = t->has_end && t->end_ns > t->last_ts ? t->end_ns : t->last_ts;
        /* past 1,000 bands in a row, a range narrower than a pixel where the row's last band already drew is
         * skipped: a row holds at most a few rectangles per pixel more however many ranges there are */
        double drawn_to = -1;
        int nbands = 0;
        for (size_t i = 0; g && i < g->n; i++) {
            const struct cmt_range *r = &g->r[i];
            if (r->tid != row_tid[k] || (r->push ? r->depth : 1000) != row_depth[k])
                continue;
            int64_t e = r->end_ns >= 0 ? r->end_ns : end;
            if (e < s->t0 || r->start_ns > s->tend)
                continue; /* off the chart's axis (clocks of another process, a damaged trace) */
            double x0 = 80 + (span > 0 ? (double)(r->start_ns - s->t0) / span : 0) * 840;
            double x1 = 80 + (span > 0 ? (double)(e - s->t0) / span : 0) * 840;
            if (x1 > 920)
                x1 = 920;
            if (x1 - x0 < 1) {
                if (nbands >= 1000 && x0 < drawn_to)
                    continue;
                x1 = x0 + 1;
            }
            drawn_to = x1;
            nbands++;
            char t1[32];
            sb_printf(b, "<g><title>");
            sb_xml(b, r->name);
            sb_printf(b, ": peak %s</title><rect x='%.1f' y='%.1f' width='%.1f' height='16' fill='hsl(%u,55%%,70%%)'"
                         " stroke='white' stroke-width='0.5'/>",
                      cmt_bytes_str(r->peak, t1), x0, y, x1 - x0, name_hue(r->name));
            if (x1 - x0 > 40) {
                sb_printf(b, "<text x='%.1f' y='%.1f' font-size='10'>", x0 + 3, y + 12);
                sb_xml(b, r->name);
                sb_puts(b, "</text>");
            }
            sb_puts(b, "</g>");
        }
    }
    sb_puts(b, "</svg>\n");
    return 0;
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
            " (SELECT e.seq FROM events e WHERE e.op IN (1, 7) AND e.result = 0 AND e.seq < h.seq"
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

void cmt_heaps_text(struct sbuf *b, const struct cmt_heap *h, size_t n)
{
    char t1[32], t2[32], t3[32];
    if (!n)
        return;
    sb_puts(b, "\nCUSTOM ALLOCATORS (NVTX memory extension: heaps and the regions handed out of them)\n");
    for (size_t i = 0; i < n; i++) {
        sb_printf(b, "  %s: %s", h[i].name, h[i].size >= 0 ? cmt_bytes_str(h[i].size, t1) : "size unknown");
        if (h[i].event_seq >= 0)
            sb_printf(b, " in the driver allocation of seq %lld", (long long)h[i].event_seq);
        sb_printf(b, "%s\n    at the peak %lld regions, %s; at the end %lld regions, %s\n",
                  h[i].registered_at_end ? "" : " (unregistered)", (long long)h[i].regions_at_peak,
                  cmt_bytes_str(h[i].bytes_at_peak, t2), (long long)h[i].regions_at_end,
                  cmt_bytes_str(h[i].bytes_at_end, t3));
    }
}

void cmt_heaps_json(struct sbuf *b, const struct cmt_set *s, const struct cmt_heap *h, size_t n)
{
    sb_puts(b, ",\"nvtx_heaps\":[");
    for (size_t i = 0; i < n; i++) {
        sb_printf(b, "%s{\"name\":", i ? "," : "");
        sb_json_str(b, h[i].name);
        sb_printf(b, ",\"pid\":%lld,\"heap_id\":%lld,\"usage\":%lld,\"size\":", (long long)s->t[h[i].trace]->pid,
                  (long long)h[i].id, (long long)h[i].usage);
        if (h[i].size >= 0)
            sb_printf(b, "%lld", (long long)h[i].size);
        else
            sb_puts(b, "null");
        sb_puts(b, ",\"event_seq\":");
        if (h[i].event_seq >= 0)
            sb_printf(b, "%lld", (long long)h[i].event_seq);
        else
            sb_puts(b, "null");
        sb_printf(b, ",\"regions_at_peak\":%lld,\"region_bytes_at_peak\":%lld,\"regions_at_end\":%lld,"
                     "\"region_bytes_at_end\":%lld,\"registered_at_end\":%s}",
                  (long long)h[i].regions_at_peak, (long long)h[i].bytes_at_peak, (long long)h[i].regions_at_end,
                  (long long)h[i].bytes_at_end, h[i].registered_at_end ? "true" : "false");
    }
    sb_putc(b, ']');
}
