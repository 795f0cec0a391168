/*
 * groups.c: bytes and counts of the analyzed allocations grouped by symbolized stack or by module, at
 * the peak, at exit (leaks) or over the whole run (see analysis.h, cmt_group_by_*).
 *
 * Runs in the `cumemtrace` command, after the pass. Reads stacks through stacks.c; never prints.
 */
#include "analysis.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * Groupings */

static int rec_selected(const struct cmt_trace *t, const struct cmt_rec *r, enum cmt_select sel, int peak_set)
{
    if (!CMT_KIND_IS_PHYSICAL(r->kind))
        return 0;
    switch (sel) {
    case CMT_AT_PEAK: return peak_set && r->seq <= t->snap_seq && r->free_seq > t->snap_seq;
    case CMT_LEAKED: return r->free_seq == CMT_LIVE;
    case CMT_TOTAL: return 1;
    }
    return 0;
}

static int cmp_group(const void *a, const void *b)
{
    const struct cmt_group *x = a, *y = b;
    if (x->bytes != y->bytes)
        return x->bytes > y->bytes ? -1 : 1;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int group(struct cmt_set *s, enum cmt_select sel, int by_module, struct cmt_group **out, size_t *nout,
                 char *err, size_t errlen)
{
    struct smap ix = {0};
    struct cmt_group *g = NULL;
    size_t n = 0, cap = 0;
    int rc = -1;
    *out = NULL;
    *nout = 0;
    for (size_t ti = 0; ti < s->n; ti++) {
        struct cmt_trace *t = s->t[ti];
        /* First by stack id within the trace (cheap), then by symbolized key across traces. Keys are
         * stack_id + 1: CMT_NO_STACK (-1) would otherwise be the map's reserved empty key. */
        struct imap per = {0};
        struct { int32_t stack; int64_t bytes, count; } *acc = NULL;
        size_t na = 0, ca = 0;
        int bad = 0;
        for (size_t i = 0; i < t->nrecs && !bad; i++) {
            const struct cmt_rec *r = &t->recs[i];
            if (!rec_selected(t, r, sel, s->peak_trace >= 0))
                continue;
            int64_t *p = imap_get(&per, (uint64_t)((int64_t)r->stack_id + 1));
            if (!p) {
                if (!cmt_push(&acc, &na, &ca, sizeof *acc) ||
                    imap_put(&per, (uint64_t)((int64_t)r->stack_id + 1), (int64_t)na - 1) != 0) {
                    bad = 1;
                    break;
                }
                acc[na - 1].stack = r->stack_id;
                p = imap_get(&per, (uint64_t)((int64_t)r->stack_id + 1));
            }
            acc[*p].bytes += r->size;
            acc[*p].count++;
        }
        imap_free(&per);
        for (size_t i = 0; i < na && !bad; i++) {
            const struct cmt_stack *k;
            if (cmt_stack_get(t, acc[i].stack, &k, err, errlen) != 0) {
                bad = 2;
                break;
            }
            const char *name = by_module ? k->module : k->key;
            int64_t *p = smap_get(&ix, name);
            if (!p) {
                struct cmt_group *e = cmt_push(&g, &n, &cap, sizeof *e);
                if (!e || smap_put(&ix, name, (int64_t)n - 1) != 0) {
                    bad = 1;
                    break;
                }
                e->stack = by_module ? NULL : k;
                e->name = name;
                p = smap_get(&ix, name);
            }
            g[*p].bytes += acc[i].bytes;
            g[*p].count += acc[i].count;
        }
        free(acc);
        if (bad == 1)
            cmt_fail(err, errlen, "out of memory");
        if (bad)
            goto out;
    }
    if (n)
        qsort(g, n, sizeof *g, cmp_group);
    *out = g;
    *nout = n;
    g = NULL;
    rc = 0;
out:
    free(g);
    smap_free(&ix);
    return rc;
}

int cmt_group_by_stack(struct cmt_set *s, enum cmt_select sel, struct cmt_group **out, size_t *n, char *err,
                       size_t errlen)
{
    return group(s, sel, 0, out, n, err, errlen);
}

int cmt_group_by_module(struct cmt_set *s, enum cmt_select sel, struct cmt_group **out, size_t *n, char *err,
                        size_t errlen)
{
    return group(s, sel, 1, out, n, err, errlen);
}
