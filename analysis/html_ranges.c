/*
 * html_ranges.c: a RUN's phases for the viewer (see html.h, RANGES): every trace's ranges (NVTX, PyTorch
 * annotations) with their peaks, at most CMT_VIEWER_RANGES of them, and the range stack at the run's peak.
 *
 * Which ranges are kept when there are more: the outermost first, and among one nesting level the longest
 * first, so that every kept range's parent is kept too; "count" says how many there are in all.
 *
 * Runs in the `cumemtrace` command. Reads the ranges the pass loaded (ranges.c) and, for the thread of the
 * peak event, one indexed lookup (cmt_ranges_stack_at); writes into an sbuf only.
 */
#include "html_levels.h"

#include "ranges.h"

#include <stdlib.h>
#include <string.h>

struct pick {
    const struct cmt_range *r;
    int32_t trace;
    int64_t end; /* ns since the set's start; the trace's end for ranges open at the end */
    int64_t start;
};

/* The ones kept when there are too many: outermost first, then longest, then earliest. */
static int cmp_keep(const void *a, const void *b)
{
    const struct pick *x = a, *y = b;
    int dx = x->r->depth < 0 ? 0 : x->r->depth, dy = y->r->depth < 0 ? 0 : y->r->depth;
    if (dx != dy)
        return dx < dy ? -1 : 1;
    int64_t lx = x->end - x->start, ly = y->end - y->start;
    if (lx != ly)
        return lx > ly ? -1 : 1;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->trace != y->trace ? (x->trace < y->trace ? -1 : 1) : (x->r->start_seq < y->r->start_seq ? -1 : 1);
}

/* The page's order: by start, then outermost first (a parent before the children that start with it). */
static int cmp_draw(const void *a, const void *b)
{
    const struct pick *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if (x->trace != y->trace)
        return x->trace < y->trace ? -1 : 1;
    return x->r->start_seq < y->r->start_seq ? -1 : x->r->start_seq > y->r->start_seq;
}

int cmt_html_ranges(struct sbuf *b, struct cmt_html_dict *d, struct cmt_set *s, char *err, size_t errlen)
{
    struct pick *p = NULL;
    size_t n = 0, cap = 0;
    struct imap ix = {0};
    struct cmt_range_stack at = {0};
    int rc = -1;
    for (size_t ti = 0; ti < s->n; ti++) {
        const struct cmt_trace *t = s->t[ti];
        const struct cmt_ranges *g = t->ranges;
        int64_t end = cmt_html_trace_end(t) - s->t0;
        for (size_t i = 0; g && i < g->n; i++) {
            struct pick *x = cmt_push(&p, &n, &cap, sizeof *p);
            if (!x) {
                cmt_fail(err, errlen, "out of memory");
                goto out;
            }
            x->r = &g->r[i];
            x->trace = (int32_t)ti;
            x->start = g->r[i].start_ns - s->t0;
            x->end = g->r[i].end_ns >= 0 ? g->r[i].end_ns - s->t0 : end;
            if (x->end < x->start)
                x->end = x->start; /* defensive: clocks of a damaged trace */
        }
    }
    size_t kept = n;
    if (n > CMT_VIEWER_RANGES) {
        qsort(p, n, sizeof *p, cmp_keep);
        kept = CMT_VIEWER_RANGES;
    }
    if (kept)
        qsort(p, kept, sizeof *p, cmp_draw);
    /* each kept range's index on the page, by (trace, range id): for the parents */
    for (size_t i = 0; i < kept; i++)
        if (imap_put(&ix, ((uint64_t)p[i].trace << 48) ^ (uint64_t)p[i].r->id, (int64_t)i) != 0) {
            cmt_fail(err, errlen, "out of memory");
            goto out;
        }
    static const char *const cols[] = {"name", "domain", "proc", "tid", "start_ns", "end_ns", "open", "depth",
                                       "parent", "peak_bytes", "id"};
    sb_printf(b, ",\"ranges\":{\"count\":%zu,\"drawn\":%zu", n, kept);
    for (size_t c = 0; c < sizeof cols / sizeof *cols; c++) {
        sb_printf(b, ",\"%s\":[", cols[c]);
        for (size_t i = 0; i < kept; i++) {
            const struct cmt_range *r = p[i].r;
            int64_t v = 0;
            switch (c) {
            case 0: v = cmt_html_str(d, r->name); break;
            case 1: v = r->domain ? cmt_html_str(d, r->domain) : -1; break;
            case 2: v = p[i].trace; break;
            case 3: v = r->tid; break;
            case 4: v = p[i].start; break;
            case 5: v = p[i].end; break;
            case 6: v = r->end_ns < 0; break;
            case 7: v = r->depth; break;
            case 8: {
                int64_t *q = r->parent_id >= 0 ? imap_get(&ix, ((uint64_t)p[i].trace << 48) ^ (uint64_t)r->parent_id) : NULL;
                v = q ? *q : -1;
                break;
            }
            case 9: v = r->peak; break;
            default: v = r->id; break;
            }
            if ((c == 0 || (c == 1 && r->domain)) && v < 0) {
                cmt_fail(err, errlen, "out of memory");
                goto out;
            }
            sb_printf(b, "%s%lld", i ? "," : "", (long long)v);
        }
        sb_putc(b, ']');
    }
    sb_puts(b, "},\"ranges_at_peak\":");
    if (s->peak_trace >= 0 && cmt_ranges_stack_at(s, s->peak_trace, s->peak_seq, &at, err, errlen) != 0)
        goto out;
    cmt_ranges_json_stack(b, &at);
    if (at.tid >= 0)
        sb_printf(b, ",\"ranges_at_peak_thread\":{\"tid\":%lld,\"allocating_thread\":%s}", (long long)at.tid,
                  at.same_thread ? "true" : "false");
    else
        sb_puts(b, ",\"ranges_at_peak_thread\":null");
    rc = 0;
out:
    free(at.names);
    imap_free(&ix);
    free(p);
    return rc;
}
