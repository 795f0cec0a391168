/*
 * html_levels.c: one level's allocations as the viewer's bands (see html.h, LEVEL): the detail levels (the largest
 * CMT_VIEWER_BANDS one by one, the others merged per time bucket with their live bytes and count exact at each
 * bucket's end), the exact total as each bucket's highest and last state, and the stacks live at the peak.
 *
 * Runs in the `cumemtrace` command. Pure computation over the items it is given; reads no trace.
 */
#include "html_levels.h"

#include <stdlib.h>
#include <string.h>

static int cmp_i64_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int cmp_item(const void *a, const void *b)
{
    const struct cmt_html_item *x = a, *y = b;
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
static int peak_stacks(struct sbuf *b, const struct cmt_html_item *it, size_t n, const struct ev *ev, size_t p, cmt_html_stack_fn fn,
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

int cmt_html_level(struct sbuf *b, struct cmt_html_item *it, size_t n, int64_t dur, cmt_html_stack_fn fn, void *ctx,
                   int with_peak, char *err, size_t errlen)
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

