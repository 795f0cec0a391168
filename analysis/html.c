/*
 * html.c: the viewer page's data and the page around it (see html.h for the data's shape).
 *
 * Owns turning an analyzed set into the viewer's JSON: the allocations as bands with their detail levels
 * (the largest CMT_VIEWER_BANDS one by one, the rest merged per time bucket with exact totals), the exact
 * total curve, the stacks held at the peak (the flame graph), failures, and for traces with an imported
 * PyTorch history the allocator's blocks (with their Python frames) and its segments at the peak and at
 * each OOM. The page itself is analysis/viewer/ (viewer.js, viewer.css), embedded at build time.
 *
 * Runs in the `cumemtrace` command. Reads the set's open traces with plain SELECTs (event timestamps, the
 * alloc_* tables); never writes a trace; never prints.
 */
#include "html.h"

#include "report.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

/* Generated from analysis/viewer/ by analysis/viewer/embed.py. */
extern const char cmt_viewer_js[];
extern const char cmt_viewer_css[];

/* ---------------------------------------------------------------------------------------------------
 * Dictionary: strings and stacks, each once per page */

static int64_t str_ix(struct cmt_html_dict *d, const char *s)
{
    if (!s)
        s = "";
    int64_t *p = smap_get(&d->str, s);
    if (p)
        return *p;
    if (smap_put(&d->str, s, (int64_t)d->nstr) != 0)
        return -1;
    sb_puts(&d->strs, d->nstr ? "," : "");
    sb_json_str(&d->strs, s);
    return (int64_t)d->nstr++;
}

/* Adds a stack under key with frames (innermost first); returns its index or -1. */
static int64_t stack_add(struct cmt_html_dict *d, const char *key, char *const *frames, int n, const char *module,
                         int comp)
{
    int64_t *p = smap_get(&d->stk, key);
    if (p)
        return *p;
    struct sbuf row = {0};
    sb_puts(&row, "{\"f\":[");
    for (int i = 0; i < n; i++) {
        int64_t ix = str_ix(d, frames[i]);
        if (ix < 0) {
            sb_free(&row);
            return -1;
        }
        sb_printf(&row, "%s%lld", i ? "," : "", (long long)ix);
    }
    int64_t m = module ? str_ix(d, module) : -1;
    sb_printf(&row, "],\"m\":%lld,\"c\":%d}", (long long)m, comp);
    if (row.oom || smap_put(&d->stk, key, (int64_t)d->nstk) != 0) {
        sb_free(&row);
        return -1;
    }
    sb_puts(&d->stacks, d->nstk ? "," : "");
    sb_put(&d->stacks, row.p, row.len);
    sb_free(&row);
    return (int64_t)d->nstk++;
}

int64_t cmt_html_stack(struct cmt_html_dict *d, const struct cmt_stack *k)
{
    if (!k)
        return -1;
    int64_t *p = smap_get(&d->stk, k->key ? k->key : "");
    if (p)
        return *p;
    int comp = d->rules ? cmt_rules_match_stack(d->rules, k) : CMT_C_OTHER;
    /* a stack without frames shows its key ("[no stack]", "[unknown]") as its one frame */
    char *one[1] = {k->key};
    return stack_add(d, k->key ? k->key : "", k->nframes ? k->frames : one, k->nframes ? k->nframes : 1, k->module,
                     comp);
}

void cmt_html_dict_json(struct sbuf *b, const struct cmt_html_dict *d)
{
    sb_puts(b, ",\"strings\":[");
    if (d->strs.p)
        sb_put(b, d->strs.p, d->strs.len);
    sb_puts(b, "],\"stacks\":[");
    if (d->stacks.p)
        sb_put(b, d->stacks.p, d->stacks.len);
    sb_puts(b, "],\"components\":[");
    for (int c = 0; c < CMT_NCOMP; c++) {
        sb_puts(b, c ? "," : "");
        sb_json_str(b, cmt_comp_names[c]);
    }
    sb_puts(b, "],\"apis\":[");
    for (int a = 0; a < CMT_NAPIS; a++) {
        sb_puts(b, a ? "," : "");
        sb_json_str(b, a ? cmt_api_name(a) : "unknown");
    }
    sb_puts(b, "],\"kinds\":[");
    for (int k = 0; k < CMT_NKINDS; k++) {
        sb_puts(b, k ? "," : "");
        sb_json_str(b, k ? cmt_kind_name(k) : "unknown");
    }
    sb_putc(b, ']');
}

void cmt_html_dict_free(struct cmt_html_dict *d)
{
    smap_free(&d->str);
    smap_free(&d->stk);
    sb_free(&d->strs);
    sb_free(&d->stacks);
}

/* ---------------------------------------------------------------------------------------------------
 * Timestamps of events by seq (the pass keeps seqs only) */

/* The events' (seq, ts) pairs in seq order (the primary key's order): a lookup is a binary search, so sparse
 * or huge seqs (a damaged trace) cost nothing more. */
struct tsmap {
    int64_t *seq, *ts;
    size_t n, cap;
};

static int tsmap_load(struct tsmap *m, struct cmt_trace *t, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc;
    memset(m, 0, sizeof *m);
    if (sqlite3_prepare_v2(t->db, "SELECT seq, ts_ns FROM events ORDER BY seq", -1, &st, NULL) != SQLITE_OK)
        goto bad;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (m->n == m->cap) {
            size_t cap = m->cap ? 2 * m->cap : 4096;
            int64_t *a = realloc(m->seq, cap * sizeof *a), *b = a ? realloc(m->ts, cap * sizeof *b) : NULL;
            if (a)
                m->seq = a;
            if (!a || !b) {
                sqlite3_finalize(st);
                return cmt_fail(err, errlen, "out of memory");
            }
            m->ts = b;
            m->cap = cap;
        }
        m->seq[m->n] = sqlite3_column_int64(st, 0);
        m->ts[m->n++] = sqlite3_column_int64(st, 1);
    }
    if (rc != SQLITE_DONE)
        goto bad;
    sqlite3_finalize(st);
    return 0;
bad:
    sqlite3_finalize(st);
    return cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
}

static int64_t tsmap_get(const struct tsmap *m, int64_t seq, int64_t dflt)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->seq[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->n && m->seq[lo] == seq ? m->ts[lo] : dflt;
}

static void tsmap_free(struct tsmap *m)
{
    free(m->seq);
    free(m->ts);
    memset(m, 0, sizeof *m);
}

static int64_t trace_end(const struct cmt_trace *t)
{
    return t->has_end && t->end_ns > t->last_ts ? t->end_ns : t->last_ts;
}

/* ---------------------------------------------------------------------------------------------------
 * Bands: one level's allocations, their detail levels and the total */

struct item {
    int64_t start, end, size; /* ns since the run's start; bytes */
    int64_t sseq, eseq;       /* order among equal times */
    int64_t stack_id;         /* raw id in its trace (driver stacks or alloc_stacks) */
    int32_t trace, dev;
    int16_t api;
    uint8_t kind, live, has_stack;
};

/* Resolves an item's stack to the page's stack index. */
typedef int64_t (*stack_fn)(void *ctx, const struct item *it, char *err, size_t errlen);

static int cmp_i64_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int cmp_item(const void *a, const void *b)
{
    const struct item *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if (x->trace != y->trace)
        return x->trace < y->trace ? -1 : 1;
    return x->sseq < y->sseq ? -1 : x->sseq > y->sseq;
}

struct ev {
    int64_t ts, seq;
    int64_t delta;
    int32_t trace;
    int32_t item;
    uint8_t small, release;
};

static int cmp_ev(const void *a, const void *b)
{
    const struct ev *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    if (x->trace != y->trace)
        return x->trace < y->trace ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

struct bucket {
    int64_t max_ts, max_total, end_ts, end_total, other_bytes, other_count;
    int touched;
};

/* The stacks of the items live at the level's peak (event index p of the sorted events): "peak_stacks". */
static int peak_stacks(struct sbuf *b, const struct item *it, size_t n, const struct ev *ev, size_t p, stack_fn fn,
                       void *ctx, char *err, size_t errlen)
{
    int64_t *rel = malloc((n + 1) * sizeof *rel), *bytes = NULL, *count = NULL;
    struct imap ix = {0};
    size_t ng = 0;
    int rc = -1;
    if (!rel || !(bytes = calloc(n + 1, sizeof *bytes)) || !(count = calloc(n + 1, sizeof *count))) {
        cmt_fail(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < 2 * n; i++)
        if (ev[i].release)
            rel[ev[i].item] = (int64_t)i;
    sb_puts(b, ",\"peak_stacks\":[");
    for (size_t i = 0; n && i <= p; i++) {
        if (ev[i].release || rel[ev[i].item] <= (int64_t)p)
            continue; /* a release, or an allocation released by the peak */
        int64_t k = fn(ctx, &it[ev[i].item], err, errlen);
        if (k < -1)
            goto out;
        int64_t *g = imap_get(&ix, (uint64_t)(k + 1));
        if (!g) {
            if (imap_put(&ix, (uint64_t)(k + 1), (int64_t)ng) != 0) {
                cmt_fail(err, errlen, "out of memory");
                goto out;
            }
            g = imap_get(&ix, (uint64_t)(k + 1));
            ng++;
        }
        bytes[*g] += ev[i].delta;
        count[*g]++;
    }
    /* one row per stack: [stack, bytes, count] */
    for (size_t i = 0, first = 1; i < ix.cap; i++)
        if (ix.keys[i] != UINT64_MAX) {
            int64_t g = ix.vals[i];
            sb_printf(b, "%s[%lld,%lld,%lld]", first ? "" : ",", (long long)ix.keys[i] - 1, (long long)bytes[g],
                      (long long)count[g]);
            first = 0;
        }
    sb_putc(b, ']');
    rc = 0;
out:
    free(rel);
    free(bytes);
    free(count);
    imap_free(&ix);
    return rc;
}

static int emit_level(struct sbuf *b, struct item *it, size_t n, int64_t dur, stack_fn fn, void *ctx, int with_peak,
                      char *err, size_t errlen)
{
    int64_t thr = 0, merged = 0, merged_bytes = 0;
    struct ev *ev = NULL;
    struct bucket *bk = NULL;
    int rc = -1;
    if (dur < 1)
        dur = 1;
    if (n > CMT_VIEWER_BANDS) {
        int64_t *sz = malloc(n * sizeof *sz);
        if (!sz)
            return cmt_fail(err, errlen, "out of memory");
        for (size_t i = 0; i < n; i++)
            sz[i] = it[i].size;
        qsort(sz, n, sizeof *sz, cmp_i64_desc);
        thr = sz[CMT_VIEWER_BANDS] + 1; /* keeps at most CMT_VIEWER_BANDS, every one larger than the rest */
        free(sz);
    }
    if (n)
        qsort(it, n, sizeof *it, cmp_item);
    ev = malloc((2 * n + 1) * sizeof *ev);
    bk = calloc(CMT_VIEWER_BUCKETS, sizeof *bk);
    if (!ev || !bk) {
        cmt_fail(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        int small = it[i].size < thr;
        ev[2 * i] = (struct ev){it[i].start, it[i].sseq, it[i].size, it[i].trace, (int32_t)i, (uint8_t)small, 0};
        /* never released: its band reaches the end, but the total keeps it (sorted last, not swept) */
        ev[2 * i + 1] = (struct ev){it[i].live ? INT64_MAX : it[i].end, it[i].eseq, -it[i].size, it[i].trace,
                                    (int32_t)i, (uint8_t)small, 1};
        if (small) {
            merged++;
            if (__builtin_add_overflow(merged_bytes, it[i].size, &merged_bytes))
                goto overflow;
        }
    }
    if (n)
        qsort(ev, 2 * n, sizeof *ev, cmp_ev);
    int64_t total = 0, ob = 0, oc = 0, best = -1;
    size_t peak_at = 0;
    for (size_t i = 0; i < 2 * n && ev[i].ts != INT64_MAX; i++) {
        int64_t k = (int64_t)((__int128)ev[i].ts * CMT_VIEWER_BUCKETS / dur);
        if (k < 0)
            k = 0;
        if (k >= CMT_VIEWER_BUCKETS)
            k = CMT_VIEWER_BUCKETS - 1;
        if (__builtin_add_overflow(total, ev[i].delta, &total))
            goto overflow;
        if (total > best) {
            best = total;
            peak_at = i;
        }
        if (ev[i].small) {
            ob += ev[i].delta;
            oc += ev[i].delta > 0 ? 1 : -1;
        }
        struct bucket *q = &bk[k];
        if (!q->touched || total > q->max_total) {
            q->max_total = total;
            q->max_ts = ev[i].ts;
        }
        q->touched = 1;
        q->end_ts = ev[i].ts;
        q->end_total = total;
        q->other_bytes = ob;
        q->other_count = oc;
    }
    /* the columns of the bands kept one by one */
    static const char *const cols[] = {"start", "end", "size", "stack", "api", "kind", "dev", "live", "seq"};
    sb_printf(b, "{\"threshold_bytes\":%lld,\"merged_allocs\":%lld,\"merged_bytes\":%lld,\"allocs\":%zu",
              (long long)thr, (long long)merged, (long long)merged_bytes, n);
    for (size_t c = 0; c < sizeof cols / sizeof *cols; c++) {
        sb_printf(b, ",\"%s\":[", cols[c]);
        int first = 1;
        for (size_t i = 0; i < n; i++) {
            if (it[i].size < thr)
                continue;
            int64_t v = 0;
            switch (c) {
            case 0: v = it[i].start; break;
            case 1: v = it[i].end; break;
            case 2: v = it[i].size; break;
            case 3:
                v = fn(ctx, &it[i], err, errlen);
                if (v < -1)
                    goto out;
                break;
            case 4: v = it[i].api; break;
            case 5: v = it[i].kind; break;
            case 6: v = it[i].dev; break;
            case 7: v = it[i].live; break;
            case 8: v = it[i].sseq; break;
            }
            sb_printf(b, first ? "%lld" : ",%lld", (long long)v);
            first = 0;
        }
        sb_putc(b, ']');
    }
    /* the merged ones per bucket (state at each bucket's end, carried over empty buckets) and the total */
    /* (empty when nothing was merged) */
    int nb = merged ? CMT_VIEWER_BUCKETS : 0;
    sb_printf(b, ",\"bucket_ns\":%.17g,\"other_bytes\":[", (double)dur / CMT_VIEWER_BUCKETS);
    int64_t cb = 0, cc = 0;
    for (int k = 0; k < nb; k++) {
        if (bk[k].touched)
            cb = bk[k].other_bytes;
        sb_printf(b, k ? ",%lld" : "%lld", (long long)cb);
    }
    sb_puts(b, "],\"other_count\":[");
    for (int k = 0; k < nb; k++) {
        if (bk[k].touched)
            cc = bk[k].other_count;
        sb_printf(b, k ? ",%lld" : "%lld", (long long)cc);
    }
    sb_puts(b, "],\"total\":[[0,0]");
    int64_t last = 0, peak = 0, peak_ts = 0;
    for (int k = 0; k < CMT_VIEWER_BUCKETS; k++) {
        const struct bucket *q = &bk[k];
        if (!q->touched)
            continue;
        sb_printf(b, ",[%lld,%lld]", (long long)q->max_ts, (long long)q->max_total);
        if (q->end_ts != q->max_ts || q->end_total != q->max_total)
            sb_printf(b, ",[%lld,%lld]", (long long)q->end_ts, (long long)q->end_total);
        if (q->max_total > peak) {
            peak = q->max_total;
            peak_ts = q->max_ts;
        }
        last = q->end_total;
    }
    sb_printf(b, ",[%lld,%lld]],\"peak_bytes\":%lld,\"peak_ns\":%lld", (long long)dur, (long long)last,
              (long long)peak, (long long)peak_ts);
    if (with_peak && peak_stacks(b, it, n, ev, peak_at, fn, ctx, err, errlen) != 0)
        goto out;
    sb_putc(b, '}');
    rc = b->oom ? cmt_fail(err, errlen, "out of memory") : 0;
    goto out;
overflow: /* defensive: sizes are checked where they are read, so only a damaged trace sums past 2^63 */
    cmt_fail(err, errlen, "corrupt trace: allocation sizes sum beyond 2^63 bytes");
out:
    free(ev);
    free(bk);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * The driver level: device memory (kinds device, stream_ordered, vmm_physical) */

struct drv_ctx {
    struct cmt_html_dict *d;
    struct cmt_set *s;
};

static int64_t drv_stack(void *ctx, const struct item *it, char *err, size_t errlen)
{
    struct drv_ctx *c = ctx;
    const struct cmt_stack *k;
    if (cmt_stack_get(c->s->t[it->trace], (int32_t)it->stack_id, &k, err, errlen) != 0)
        return -2;
    int64_t ix = cmt_html_stack(c->d, k);
    if (ix < 0) {
        cmt_fail(err, errlen, "out of memory");
        return -2;
    }
    return ix;
}

static int driver_level(struct sbuf *b, struct cmt_html_dict *d, struct cmt_set *s, int64_t dur, char *err,
                        size_t errlen)
{
    size_t n = 0, cap = 0;
    struct item *it = NULL;
    struct tsmap m = {0};
    int rc = -1;
    for (size_t ti = 0; ti < s->n; ti++) {
        struct cmt_trace *t = s->t[ti];
        if (tsmap_load(&m, t, err, errlen) != 0)
            goto out;
        int64_t end = trace_end(t) - s->t0;
        for (size_t i = 0; i < t->nrecs; i++) {
            const struct cmt_rec *r = &t->recs[i];
            if (!CMT_KIND_IS_PHYSICAL(r->kind))
                continue;
            struct item *x = cmt_push(&it, &n, &cap, sizeof *it);
            if (!x) {
                cmt_fail(err, errlen, "out of memory");
                goto out;
            }
            x->start = tsmap_get(&m, r->seq, s->t0) - s->t0;
            x->live = r->free_seq == CMT_LIVE;
            x->end = x->live ? end : tsmap_get(&m, r->free_seq, trace_end(t)) - s->t0;
            if (x->end < x->start)
                x->end = x->start; /* defensive: clocks of a damaged trace */
            x->size = r->size;
            x->sseq = r->seq;
            x->eseq = x->live ? INT64_MAX : r->free_seq;
            x->stack_id = r->stack_id;
            x->trace = (int32_t)ti;
            x->dev = (int32_t)(t->devs && r->dev >= 0 && (size_t)r->dev < t->ndevs ? t->devs[r->dev].device : -1);
            x->api = r->api;
            x->kind = r->kind;
        }
        tsmap_free(&m);
    }
    struct drv_ctx c = {d, s};
    rc = emit_level(b, it, n, dur, drv_stack, &c, 0, err, errlen);
out:
    tsmap_free(&m);
    free(it);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * The allocator level (an imported PyTorch history): blocks, their Python and C++ frames, segments */

struct al_ctx {
    struct cmt_html_dict *d;
    struct cmt_set *s;
    sqlite3_stmt *q;
    int qtrace;
};

/* The rules file's matching (torch.c's order: file order, first match) applied to one allocator frame. */
static int rule_of(const struct cmt_rules *rs, const char *pyfunc, const char *pyline, const char *native,
                   const char *module)
{
    for (size_t i = 0; rs && i < rs->n; i++) {
        const struct cmt_rule *r = &rs->r[i];
        const char *cand[4] = {NULL, NULL, NULL, NULL};
        switch (r->where) {
        case 'p': cand[0] = pyfunc; break;
        case 'l': cand[0] = pyline; break;
        case 'n': cand[0] = native; break;
        case 'm': cand[0] = module; break;
        default: cand[0] = pyfunc; cand[1] = pyline; cand[2] = native; cand[3] = module; break;
        }
        for (int j = 0; j < 4; j++)
            if (cand[j] && fnmatch(r->glob, cand[j], 0) == 0)
                return r->comp;
    }
    return -1;
}

static int64_t al_stack_of(struct al_ctx *c, int trace, int64_t stack_id, int has, char *err, size_t errlen)
{
    char key[64];
    if (!has) {
        char *none[1] = {"[no frames: allocated before the history]"};
        return stack_add(c->d, "alloc:none", none, 1, NULL, CMT_C_OTHER);
    }
    snprintf(key, sizeof key, "alloc:%d:%lld", trace, (long long)stack_id);
    int64_t *p = smap_get(&c->d->stk, key);
    if (p)
        return *p;
    struct cmt_trace *t = c->s->t[trace];
    if (c->qtrace != trace) {
        sqlite3_finalize(c->q);
        c->q = NULL;
        c->qtrace = trace;
        if (sqlite3_prepare_v2(t->db,
                               "SELECT f.name, f.filename, f.line, f.python FROM alloc_stacks s"
                               " JOIN alloc_frames f ON f.frame_id = s.frame_id WHERE s.stack_id = ? ORDER BY s.depth",
                               -1, &c->q, NULL) != SQLITE_OK) {
            cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
            return -2;
        }
    }
    sqlite3_reset(c->q);
    sqlite3_bind_int64(c->q, 1, stack_id);
    char **frames = NULL;
    size_t nf = 0, cap = 0;
    int comp = -1, rc;
    while ((rc = sqlite3_step(c->q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(c->q, 0);
        const char *file = (const char *)sqlite3_column_text(c->q, 1);
        int line = sqlite3_column_int(c->q, 2), py = sqlite3_column_int(c->q, 3);
        char a[1024], l[1024], shown[2200];
        if (py) {
            snprintf(a, sizeof a, "%s:%s", file ? file : "", name ? name : "");
            snprintf(l, sizeof l, "%s:%d", file ? file : "", line);
            snprintf(shown, sizeof shown, "%s  (%s:%d)", name ? name : "?", file ? file : "?", line);
            if (comp < 0)
                comp = rule_of(c->d->rules, a, l, NULL, NULL);
        } else {
            if (file && *file && strcmp(file, "??"))
                snprintf(shown, sizeof shown, "%s  (%s:%d)", name ? name : "?", file, line);
            else
                snprintf(shown, sizeof shown, "%s", name ? name : "?");
            if (comp < 0)
                comp = rule_of(c->d->rules, NULL, NULL, name, file);
        }
        char **slot = cmt_push(&frames, &nf, &cap, sizeof *frames);
        char *txt = cmt_text_dup(shown);
        if (!slot || !txt) {
            free(txt);
            rc = SQLITE_NOMEM;
            break;
        }
        *slot = txt;
    }
    int64_t ix = -2;
    if (rc != SQLITE_DONE)
        cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
    else {
        char *none[1] = {"[no frames]"};
        ix = stack_add(c->d, key, nf ? frames : none, nf ? (int)nf : 1, "python", comp < 0 ? CMT_C_OTHER : comp);
        if (ix < 0) {
            cmt_fail(err, errlen, "out of memory");
            ix = -2;
        }
    }
    for (size_t i = 0; i < nf; i++)
        free(frames[i]);
    free(frames);
    return ix;
}

static int64_t al_stack(void *ctx, const struct item *it, char *err, size_t errlen)
{
    return al_stack_of(ctx, it->trace, it->stack_id, it->has_stack, err, errlen);
}

static int64_t newest_snapshot(struct cmt_trace *t)
{
    sqlite3_stmt *st = NULL;
    int64_t sid = -1;
    /* a version 1 file has no such table: prepare fails, and that means no allocator data */
    if (sqlite3_prepare_v2(t->db, "SELECT max(snapshot_id) FROM alloc_snapshots", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        sid = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return sid;
}

static int allocator_level(struct sbuf *b, struct al_ctx *c, int64_t dur, int *any, char *err, size_t errlen)
{
    struct cmt_set *s = c->s;
    size_t n = 0, cap = 0;
    struct item *it = NULL;
    int rc = -1;
    *any = 0;
    for (size_t ti = 0; ti < s->n; ti++) {
        struct cmt_trace *t = s->t[ti];
        int64_t sid = newest_snapshot(t);
        if (sid < 0)
            continue;
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(t->db,
                               "SELECT a.entry_id, a.device, a.ts_ns, e.ts_ns, a.block_size, a.size, a.stack_id,"
                               " a.end_entry FROM alloc_trace a LEFT JOIN alloc_trace e ON e.entry_id = a.end_entry"
                               " WHERE a.snapshot_id = ? AND a.action = 'alloc' ORDER BY a.entry_id",
                               -1, &st, NULL) != SQLITE_OK) {
            cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
            goto out;
        }
        sqlite3_bind_int64(st, 1, sid);
        int64_t end = trace_end(t) - s->t0;
        int r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
            struct item *x = cmt_push(&it, &n, &cap, sizeof *it);
            if (!x) {
                sqlite3_finalize(st);
                cmt_fail(err, errlen, "out of memory");
                goto out;
            }
            x->sseq = sqlite3_column_int64(st, 0);
            x->dev = (int32_t)sqlite3_column_int64(st, 1);
            x->start = (sqlite3_column_type(st, 2) == SQLITE_NULL ? t->start_ns : sqlite3_column_int64(st, 2)) - s->t0;
            x->live = sqlite3_column_type(st, 7) == SQLITE_NULL;
            x->eseq = x->live ? INT64_MAX : sqlite3_column_int64(st, 7);
            x->end = x->live || sqlite3_column_type(st, 3) == SQLITE_NULL ? end : sqlite3_column_int64(st, 3) - s->t0;
            if (x->start < 0)
                x->start = 0;
            if (x->end < x->start)
                x->end = x->start;
            x->size = sqlite3_column_type(st, 4) == SQLITE_NULL ? sqlite3_column_int64(st, 5) : sqlite3_column_int64(st, 4);
            /* what a device can hold (trace.c's bound for driver sizes): anything else is damage */
            if (x->size < 0 || x->size > ((int64_t)1 << 56)) {
                cmt_fail(err, errlen, "%s: corrupt trace: allocator entry %lld has an impossible size (%lld)", t->path,
                         (long long)x->sseq, (long long)x->size);
                sqlite3_finalize(st);
                goto out;
            }
            x->has_stack = sqlite3_column_type(st, 6) != SQLITE_NULL;
            x->stack_id = sqlite3_column_int64(st, 6);
            x->trace = (int32_t)ti;
        }
        sqlite3_finalize(st);
        if (r != SQLITE_DONE) {
            cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
            goto out;
        }
        *any = 1;
    }
    rc = *any ? emit_level(b, it, n, dur, al_stack, c, 1, err, errlen) : 0;
out:
    free(it);
    return rc;
}

struct blk {
    int64_t addr, size, stack_id;
    int has;
};

/* The segments of one device at allocator entry E, with their blocks, offsets from each segment's start. */
static int segments_at(struct sbuf *b, struct al_ctx *c, int trace, int64_t sid, int64_t dev, int64_t entry,
                       char *err, size_t errlen)
{
    struct cmt_trace *t = c->s->t[trace];
    sqlite3_stmt *sq = NULL, *bq = NULL;
    int rc = -1;
    static const char *const live =
        " AND snapshot_id = ?1 AND device = ?2 AND entry_id <= ?3 AND (end_entry IS NULL OR end_entry > ?3)"
        " ORDER BY addr";
    char q1[512], q2[512];
    snprintf(q1, sizeof q1, "SELECT addr, size FROM alloc_trace WHERE action IN ('segment_alloc', 'segment_map')%s",
             live);
    snprintf(q2, sizeof q2, "SELECT addr, block_size, stack_id FROM alloc_trace WHERE action = 'alloc'%s", live);
    if (sqlite3_prepare_v2(t->db, q1, -1, &sq, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(t->db, q2, -1, &bq, NULL) != SQLITE_OK) {
        cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *q = i ? bq : sq;
        sqlite3_bind_int64(q, 1, sid);
        sqlite3_bind_int64(q, 2, dev);
        sqlite3_bind_int64(q, 3, entry);
    }
    int have = sqlite3_step(bq) == SQLITE_ROW, first = 1, nblocks = 0;
    sb_puts(b, "[");
    while (sqlite3_step(sq) == SQLITE_ROW) {
        int64_t sa = sqlite3_column_int64(sq, 0), ss = sqlite3_column_int64(sq, 1);
        sb_printf(b, "%s{\"addr\":%lld,\"size\":%lld,\"blocks\":[", first ? "" : ",", (long long)sa, (long long)ss);
        first = 0;
        int bf = 1;
        /* blocks below this segment belong to none we know of (a damaged history): skipped */
        while (have && sqlite3_column_int64(bq, 0) < sa)
            have = sqlite3_step(bq) == SQLITE_ROW;
        while (have && sqlite3_column_int64(bq, 0) < sa + ss) {
            if (nblocks++ < 50000) {
                int has = sqlite3_column_type(bq, 2) != SQLITE_NULL;
                int64_t k = al_stack_of(c, trace, sqlite3_column_int64(bq, 2), has, err, errlen);
                if (k < -1)
                    goto out;
                sb_printf(b, "%s[%lld,%lld,%lld]", bf ? "" : ",", (long long)(sqlite3_column_int64(bq, 0) - sa),
                          (long long)sqlite3_column_int64(bq, 1), (long long)k);
                bf = 0;
            }
            have = sqlite3_step(bq) == SQLITE_ROW;
        }
        sb_puts(b, "]}");
    }
    sb_puts(b, "]");
    rc = 0;
out:
    sqlite3_finalize(sq);
    sqlite3_finalize(bq);
    return rc;
}

static int segments(struct sbuf *b, struct al_ctx *c, char *err, size_t errlen)
{
    struct cmt_set *s = c->s;
    int first = 1;
    sb_puts(b, ",\"segments\":[");
    for (size_t ti = 0; ti < s->n; ti++) {
        struct cmt_trace *t = s->t[ti];
        int64_t sid = newest_snapshot(t);
        if (sid < 0)
            continue;
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(t->db,
                               "SELECT o.point, o.device, o.entry_id, a.ts_ns, o.allocated_bytes, o.reserved_bytes,"
                               " a.size FROM alloc_state o JOIN alloc_trace a ON a.entry_id = o.entry_id"
                               " WHERE o.snapshot_id = ? AND o.point IN ('peak', 'oom') ORDER BY o.entry_id",
                               -1, &st, NULL) != SQLITE_OK)
            return cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
        sqlite3_bind_int64(st, 1, sid);
        int nooms = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *point = (const char *)sqlite3_column_text(st, 0);
            int oom = point && !strcmp(point, "oom");
            if (oom && ++nooms > 2 * CMT_TEXT_EACH_END)
                continue; /* the first ones; the text report and --json list every OOM */
            int64_t ts = sqlite3_column_type(st, 3) == SQLITE_NULL ? t->start_ns : sqlite3_column_int64(st, 3);
            sb_printf(b, "%s{\"point\":\"%s\",\"trace\":%zu,\"device\":%lld,\"entry\":%lld,\"ts_ns\":%lld,"
                         "\"allocated_bytes\":%lld,\"reserved_bytes\":%lld,\"request_bytes\":%lld,\"segs\":",
                      first ? "" : ",", oom ? "oom" : "peak", ti, (long long)sqlite3_column_int64(st, 1),
                      (long long)sqlite3_column_int64(st, 2), (long long)(ts - s->t0),
                      (long long)sqlite3_column_int64(st, 4), (long long)sqlite3_column_int64(st, 5),
                      (long long)(oom ? sqlite3_column_int64(st, 6) : 0));
            first = 0;
            if (segments_at(b, c, (int)ti, sid, sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2), err,
                            errlen) != 0) {
                sqlite3_finalize(st);
                return -1;
            }
            sb_putc(b, '}');
        }
        sqlite3_finalize(st);
    }
    sb_putc(b, ']');
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * One run */

int cmt_html_run(struct sbuf *b, struct cmt_html_dict *d, struct cmt_set *s, const char *label, char *err,
                 size_t errlen)
{
    int64_t dur = s->tend - s->t0;
    struct cmt_group *g = NULL;
    size_t ng = 0;
    struct al_ctx ac = {d, s, NULL, -1};
    int rc = -1;
    if (dur < 1)
        dur = 1;
    sb_puts(b, "{\"label\":");
    sb_json_str(b, label);
    sb_puts(b, ",\"paths\":[");
    for (size_t i = 0; i < s->n; i++) {
        sb_puts(b, i ? "," : "");
        sb_json_str(b, s->t[i]->path);
    }
    sb_printf(b, "],\"duration_ns\":%lld,\"peak_bytes\":%lld,\"peak_ns\":%lld,\"peak_seq\":%lld", (long long)dur,
              (long long)s->peak, (long long)(s->peak_trace >= 0 ? s->peak_ts - s->t0 : 0), (long long)s->peak_seq);
    sb_puts(b, ",\"devices\":[");
    for (size_t ti = 0, f = 0; ti < s->n; ti++)
        for (size_t di = 0; di < s->t[ti]->ndevs; di++, f++) {
            const struct cmt_dev *dv = &s->t[ti]->devs[di];
            char lab[256];
            cmt_trace_label(s->t[ti], lab, sizeof lab);
            sb_printf(b, "%s{\"process\":", f ? "," : "");
            sb_json_str(b, lab);
            sb_printf(b, ",\"device\":%lld,\"name\":", (long long)dv->device);
            sb_json_str(b, dv->name);
            sb_printf(b, ",\"total_bytes\":%lld,\"peak_bytes\":%lld}", (long long)dv->total_bytes, (long long)dv->peak);
        }
    sb_puts(b, "],\"failures\":[");
    for (size_t i = 0; i < s->nfails; i++) {
        const struct cmt_failure *f = &s->fails[i];
        const struct cmt_stack *k;
        if (cmt_stack_get(s->t[f->trace], f->stack_id, &k, err, errlen) != 0)
            goto out;
        int64_t ix = cmt_html_stack(d, k);
        const char *rn = cmt_result_name(f->result);
        sb_printf(b, "%s{\"ts_ns\":%lld,\"size\":%lld,\"api\":%d,\"device\":%lld,\"stack\":%lld,\"live_bytes\":%lld,"
                     "\"result\":",
                  i ? "," : "", (long long)(f->ts - s->t0), (long long)f->size, f->api, (long long)f->device,
                  (long long)ix, (long long)f->live_bytes);
        sb_json_str(b, rn ? rn : "error");
        sb_putc(b, '}');
    }
    sb_puts(b, "],\"peak_stacks\":[");
    if (cmt_group_by_stack(s, CMT_AT_PEAK, &g, &ng, err, errlen) != 0)
        goto out;
    for (size_t i = 0; i < ng; i++)
        sb_printf(b, "%s[%lld,%lld,%lld]", i ? "," : "", (long long)cmt_html_stack(d, g[i].stack),
                  (long long)g[i].bytes, (long long)g[i].count);
    sb_puts(b, "],\"levels\":{\"driver\":");
    if (driver_level(b, d, s, dur, err, errlen) != 0)
        goto out;
    struct sbuf al = {0};
    int any = 0;
    if (allocator_level(&al, &ac, dur, &any, err, errlen) != 0) {
        sb_free(&al);
        goto out;
    }
    if (any) {
        sb_puts(b, ",\"allocator\":");
        sb_put(b, al.p, al.len);
    }
    sb_free(&al);
    sb_putc(b, '}');
    if (segments(b, &ac, err, errlen) != 0)
        goto out;
    sb_putc(b, '}');
    rc = b->oom || d->strs.oom || d->stacks.oom ? cmt_fail(err, errlen, "out of memory") : 0;
out:
    sqlite3_finalize(ac.q);
    free(g);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * The page */

int cmt_html_page(struct sbuf *out, const char *title, const struct sbuf *json)
{
    sb_puts(out, "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
                 "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; script-src 'unsafe-inline';"
                 " style-src 'unsafe-inline'; img-src data:\"><title>");
    sb_xml(out, title);
    sb_puts(out, "</title>\n<style>");
    sb_puts(out, cmt_viewer_css);
    sb_puts(out, "</style></head>\n<body><div id='cmt-app'><noscript>This page draws with JavaScript; "
                 "the same figures are in `cumemtrace report`.</noscript></div>\n"
                 "<script type='application/json' id='cmt-data'>");
    /* '<' only occurs inside JSON strings: as \u003c no "</script>" or "<!--" can end or bend the element */
    const char *p = json->p ? json->p : "{}";
    for (const char *q; (q = strchr(p, '<')); p = q + 1) {
        sb_put(out, p, (size_t)(q - p));
        sb_puts(out, "\\u003c");
    }
    sb_puts(out, p);
    sb_puts(out, "</script>\n<script>");
    sb_puts(out, cmt_viewer_js);
    sb_puts(out, "</script>\n</body></html>\n");
    return out->oom || json->oom ? -1 : 0;
}
