/*
 * html.c: the viewer page's data and the page around it (see html.h for the data's shape).
 *
 * Owns one RUN object (headline figures, failures, the stacks held at the peak for the flame graph, the
 * driver level's allocations with the times of their events; the page's dictionary is html_dict.c's, the
 * bands' detail levels html_levels.c's, the allocator level html_torch.c's, the phases html_ranges.c's) and
 * the page around the data.
 * The page's script and style are analysis/viewer/ (*.js, viewer.css), embedded at build time.
 *
 * Runs in the `cumemtrace` command. Reads the set's open traces with plain SELECTs (event timestamps);
 * never writes a trace; never prints.
 */
#include "html.h"

#include "html_levels.h"

#include <stdlib.h>
#include <string.h>

/* Generated from analysis/viewer/ by analysis/viewer/embed.py. */
extern const char cmt_viewer_js[];
extern const char cmt_viewer_css[];

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

/* ---------------------------------------------------------------------------------------------------
 * The driver level: device memory (kinds device, stream_ordered, vmm_physical) */

struct drv_ctx {
    struct cmt_html_dict *d;
    struct cmt_set *s;
};

static int64_t drv_stack(void *ctx, const struct cmt_html_item *it, char *err, size_t errlen)
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
    struct cmt_html_item *it = NULL;
    struct tsmap m = {0};
    int rc = -1;
    for (size_t ti = 0; ti < s->n; ti++) {
        struct cmt_trace *t = s->t[ti];
        if (tsmap_load(&m, t, err, errlen) != 0)
            goto out;
        int64_t end = cmt_html_trace_end(t) - s->t0;
        for (size_t i = 0; i < t->nrecs; i++) {
            const struct cmt_rec *r = &t->recs[i];
            if (!CMT_KIND_IS_PHYSICAL(r->kind))
                continue;
            struct cmt_html_item *x = cmt_push(&it, &n, &cap, sizeof *it);
            if (!x) {
                cmt_fail(err, errlen, "out of memory");
                goto out;
            }
            x->start = tsmap_get(&m, r->seq, s->t0) - s->t0;
            x->live = r->free_seq == CMT_LIVE;
            x->end = x->live ? end : tsmap_get(&m, r->free_seq, cmt_html_trace_end(t)) - s->t0;
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
    rc = cmt_html_level(b, it, n, dur, drv_stack, &c, 0, err, errlen);
out:
    tsmap_free(&m);
    free(it);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * One run */

int cmt_html_run(struct sbuf *b, struct cmt_html_dict *d, struct cmt_set *s, const char *label, char *err,
                 size_t errlen)
{
    int64_t dur = s->tend - s->t0;
    struct cmt_group *g = NULL;
    size_t ng = 0;
    struct sbuf al = {0}, segs = {0};
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
    sb_putc(b, ']');
    if (cmt_html_ranges(b, d, s, err, errlen) != 0)
        goto out;
    sb_puts(b, ",\"levels\":{\"driver\":");
    if (driver_level(b, d, s, dur, err, errlen) != 0)
        goto out;
    int any = 0;
    if (cmt_html_allocator(&al, &segs, d, s, dur, &any, err, errlen) != 0)
        goto out;
    if (any) {
        sb_puts(b, ",\"allocator\":");
        sb_put(b, al.p, al.len);
    }
    sb_putc(b, '}');
    if (segs.p)
        sb_put(b, segs.p, segs.len);
    sb_putc(b, '}');
    rc = b->oom || d->strs.oom || d->stacks.oom ? cmt_fail(err, errlen, "out of memory") : 0;
out:
    sb_free(&al);
    sb_free(&segs);
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
