/*
 * diff.c: building the comparison of two runs (see diff.h): stacks and modules joined by name, the
 * allocator level of each side, phases per range name and, with --align, instance by instance.
 *
 * Runs in the `cumemtrace` command; reads the two analyzed sets, prints nothing.
 */
#include "diff.h"

#include <stdlib.h>
#include <string.h>

static int cmp_row(const void *x, const void *y)
{
    const struct cmt_diff_row *p = x, *q = y;
    int64_t dp = p->b - p->a, dq = q->b - q->a;
    if (dp != dq)
        return dp > dq ? -1 : 1;
    if (p->b != q->b)
        return p->b > q->b ? -1 : 1;
    return strcmp(p->name, q->name);
}

/* Joins the two sides' groups by name; rows are sorted largest growth first. */
static int join(const struct cmt_group *ga, size_t na, const struct cmt_group *gb, size_t nb,
                struct cmt_diff_row **out, size_t *nout)
{
    struct smap ix = {0};
    struct cmt_diff_row *r = calloc(na + nb + 1, sizeof *r);
    size_t n = 0;
    if (!r)
        return -1;
    for (int side = 0; side < 2; side++) {
        const struct cmt_group *g = side ? gb : ga;
        size_t ng = side ? nb : na;
        for (size_t i = 0; i < ng; i++) {
            int64_t *p = smap_get(&ix, g[i].name);
            if (!p) {
                if (smap_put(&ix, g[i].name, (int64_t)n) != 0) {
                    smap_free(&ix);
                    free(r);
                    return -1;
                }
                r[n].name = g[i].name;
                r[n].stack = g[i].stack;
                p = smap_get(&ix, g[i].name);
                n++;
            }
            if (side)
                r[*p].b += g[i].bytes;
            else
                r[*p].a += g[i].bytes;
        }
    }
    smap_free(&ix);
    if (n)
        qsort(r, n, sizeof *r, cmp_row);
    *out = r;
    *nout = n;
    return 0;
}

const char *cmt_diff_grew(const struct cmt_phase_row *rows, size_t n)
{
    return n && rows[0].peak[1] > rows[0].peak[0] ? rows[0].name : NULL;
}

int cmt_diff_build(struct cmt_diff *d, struct cmt_set *a, struct cmt_set *b, const char *align, char *err,
                   size_t errlen)
{
    size_t nsa = 0, nsb = 0, nma = 0, nmb = 0;
    struct cmt_torch_options to = {0};
    memset(d, 0, sizeof *d);
    d->a = a;
    d->b = b;
    d->align = align;
    if (cmt_group_by_stack(a, CMT_AT_PEAK, &d->sa, &nsa, err, errlen) != 0 ||
        cmt_group_by_stack(b, CMT_AT_PEAK, &d->sb, &nsb, err, errlen) != 0 ||
        cmt_group_by_module(a, CMT_AT_PEAK, &d->ma, &nma, err, errlen) != 0 ||
        cmt_group_by_module(b, CMT_AT_PEAK, &d->mb, &nmb, err, errlen) != 0)
        return -1;
    if (cmt_torch_build(&d->xa, a, &to, err, errlen) != 0 || cmt_torch_build(&d->xb, b, &to, err, errlen) != 0)
        return -1;
    if (join(d->sa, nsa, d->sb, nsb, &d->rows, &d->nrows) != 0 || join(d->ma, nma, d->mb, nmb, &d->mods, &d->nmods) != 0 ||
        cmt_ranges_phases(a, NULL, b, NULL, 0, &d->phases, &d->nphases) != 0)
        return cmt_fail(err, errlen, "out of memory");
    if (!align)
        return 0;
    if (cmt_ranges_instances(a, align, &d->ia, &d->na) != 0 || cmt_ranges_instances(b, align, &d->ib, &d->nb) != 0)
        return cmt_fail(err, errlen, "out of memory");
    if (!d->na && !d->nb)
        return cmt_fail(err, errlen, "diff: --align %s: neither A nor B has a range of that name", align);
    d->ninst = d->na > d->nb ? d->na : d->nb;
    d->inst = calloc(d->ninst, sizeof *d->inst);
    if (!d->inst)
        return cmt_fail(err, errlen, "out of memory");
    for (size_t i = 0; i < d->ninst; i++) {
        struct cmt_diff_inst *n = &d->inst[i];
        n->x = i < d->na ? &d->ia[i] : NULL;
        n->y = i < d->nb ? &d->ib[i] : NULL;
        if (cmt_ranges_phases(a, n->x, b, n->y, 1, &n->rows, &n->nr) != 0)
            return cmt_fail(err, errlen, "out of memory");
    }
    return 0;
}

void cmt_diff_free(struct cmt_diff *d)
{
    for (size_t i = 0; i < d->ninst; i++)
        free(d->inst[i].rows);
    free(d->inst);
    free(d->ia);
    free(d->ib);
    free(d->sa);
    free(d->sb);
    free(d->ma);
    free(d->mb);
    free(d->rows);
    free(d->mods);
    free(d->phases);
    cmt_torch_free(&d->xa);
    cmt_torch_free(&d->xb);
    memset(d, 0, sizeof *d);
}
