/*
 * timeline.c: the timeline's observer (see timeline.h): panels of time buckets filled as the pass moves
 * memory, layered by kind, by module or by the caller's classes.
 *
 * Runs in the `cumemtrace` command, inside the pass; returns 0 or -1 with a reason in err.
 */
#include "timeline.h"

#include "cmt_events.h"

#include <stdlib.h>
#include <string.h>

static struct cmt_panel *panel_get(struct cmt_timeline *tl, int trace, int dev)
{
    for (size_t i = 0; i < tl->npanels; i++)
        if (tl->panels[i].trace == trace && tl->panels[i].dev == dev)
            return &tl->panels[i];
    struct cmt_panel *p = cmt_push(&tl->panels, &tl->npanels, &tl->panelcap, sizeof *p);
    if (!p)
        return NULL;
    p->trace = trace;
    p->dev = dev;
    p->b = calloc((size_t)tl->points, sizeof *p->b);
    if (!p->b) {
        tl->npanels--;
        return NULL;
    }
    return p;
}

static void panel_sample(struct cmt_timeline *tl, struct cmt_panel *p, int64_t ts)
{
    int64_t span = tl->tend - tl->t0;
    int64_t rel = ts - tl->t0;
    int nb = tl->points;
    /* clamped before the conversion: an event outside [t0, tend] (a damaged time) lands in an end bucket */
    double x = span > 0 ? (double)rel / (double)span * nb : 0;
    int i = x < 0 ? 0 : x >= nb ? nb - 1 : (int)x;
    struct cmt_bucket *b = &p->b[i];
    int64_t total = 0;
    for (int l = 0; l < tl->nlayers; l++)
        if (tl->layer_physical[l])
            total += p->vals[l];
    if (!b->touched || total > b->max_total) {
        b->max_total = total;
        b->max_ts = ts;
        memcpy(b->maxv, p->vals, sizeof b->maxv);
    }
    b->touched = 1;
    b->end_ts = ts;
    memcpy(b->endv, p->vals, sizeof b->endv);
}

/* The layer of an allocation: its kind, the module its stack was made in, or the caller's class of its
 * stack. -2: not drawn (address space, or not device memory when layered by stack). */
static int layer_of(struct cmt_timeline *tl, struct cmt_trace *t, const struct cmt_rec *r, char *err, size_t errlen)
{
    if (tl->by == CMT_BY_KIND) {
        switch (r->kind) {
        case CMT_KIND_DEVICE:
        case CMT_KIND_ARRAY: return 0;
        case CMT_KIND_STREAM_ORDERED: return 1;
        case CMT_KIND_VMM_PHYSICAL: return 2;
        case CMT_KIND_MANAGED: return 3;
        case CMT_KIND_HOST_PINNED: return 4;
        default: return -2;
        }
    }
    if (!CMT_KIND_IS_PHYSICAL(r->kind))
        return -2;
    const struct cmt_stack *k;
    if (cmt_stack_get(t, r->stack_id, &k, err, errlen) != 0)
        return -1;
    if (tl->by == CMT_BY_CLASS) { /* once per stack, not per allocation: stacks are few */
        int64_t *c = imap_get(&tl->class_of, (uint64_t)(uintptr_t)k);
        if (c)
            return (int)*c - 1;
        int cls = tl->classify(tl->cctx, k);
        if (cls < 0 || cls >= tl->nlayers)
            cls = tl->nlayers - 1;
        if (imap_put(&tl->class_of, (uint64_t)(uintptr_t)k, cls + 1) != 0)
            return cmt_fail(err, errlen, "out of memory");
        return cls;
    }
    int64_t *l = smap_get(&tl->module_layer, k->module);
    if (l)
        return (int)*l;
    /* First modules seen get their own layer; the last layer collects the rest. */
    int ix = tl->nlayers < CMT_MAX_LAYERS - 1 ? tl->nlayers : CMT_MAX_LAYERS - 1;
    if (ix == tl->nlayers) {
        tl->layer_names[ix] = strdup(ix == CMT_MAX_LAYERS - 1 ? "other" : k->module);
        tl->layer_physical[ix] = 1;
        tl->nlayers++;
        if (!tl->layer_names[ix])
            return cmt_fail(err, errlen, "out of memory");
    }
    if (smap_put(&tl->module_layer, k->module, ix) != 0)
        return cmt_fail(err, errlen, "out of memory");
    return ix;
}

static int begin(void *ctx, struct cmt_set *s, char *err, size_t errlen)
{
    struct cmt_timeline *tl = ctx;
    static const char *const kinds[] = {"device", "stream_ordered", "vmm_physical", "managed", "host_pinned"};
    const char *const *names = NULL;
    int n = 0;
    tl->t0 = s->t0;
    tl->tend = s->tend;
    if (tl->points <= 0)
        tl->points = 2000;
    if (tl->by == CMT_BY_KIND) {
        names = kinds;
        n = 5;
    } else if (tl->by == CMT_BY_CLASS) {
        if (!tl->classify || tl->nclasses <= 0 || tl->nclasses > CMT_MAX_LAYERS)
            return cmt_fail(err, errlen, "timeline: 1 to %d classes and a classifier are needed", CMT_MAX_LAYERS);
        names = tl->class_names;
        n = tl->nclasses;
    }
    for (int i = 0; i < n; i++) {
        tl->layer_names[i] = strdup(names[i]);
        /* by kind, managed and host-pinned memory are drawn but are not device memory */
        tl->layer_physical[i] = tl->by != CMT_BY_KIND || i < 3;
        if (!tl->layer_names[i])
            return cmt_fail(err, errlen, "out of memory");
    }
    tl->nlayers = n;
    return 0;
}

static int sample_all(struct cmt_timeline *tl, const struct cmt_set *s, int64_t ts, char *err, size_t errlen)
{
    struct cmt_panel *all = panel_get(tl, -1, 0);
    if (!all)
        return cmt_fail(err, errlen, "out of memory");
    all->vals[0] = s->live;
    panel_sample(tl, all, ts);
    return 0;
}

static int change(void *ctx, struct cmt_set *s, size_t ti, const struct cmt_rec *r, int sign, int64_t seq,
                  int64_t ts, char *err, size_t errlen)
{
    struct cmt_timeline *tl = ctx;
    (void)seq;
    int l = layer_of(tl, s->t[ti], r, err, errlen);
    if (l == -1)
        return -1;
    if (l >= 0) {
        struct cmt_panel *p = panel_get(tl, (int)ti, r->dev);
        if (!p)
            return cmt_fail(err, errlen, "out of memory");
        p->vals[l] += sign * r->size;
        panel_sample(tl, p, ts);
    }
    return CMT_KIND_IS_PHYSICAL(r->kind) ? sample_all(tl, s, ts, err, errlen) : 0;
}

static int on_exit_(void *ctx, struct cmt_set *s, size_t ti, int64_t ts, char *err, size_t errlen)
{
    (void)ti;
    return sample_all(ctx, s, ts, err, errlen);
}

struct cmt_observer cmt_timeline_observer(struct cmt_timeline *tl)
{
    return (struct cmt_observer){.ctx = tl, .begin = begin, .change = change, .exit = on_exit_};
}

void cmt_timeline_free(struct cmt_timeline *tl)
{
    for (size_t i = 0; i < tl->npanels; i++)
        free(tl->panels[i].b);
    free(tl->panels);
    for (int i = 0; i < CMT_MAX_LAYERS; i++)
        free(tl->layer_names[i]);
    smap_free(&tl->module_layer);
    imap_free(&tl->class_of);
    tl->panels = NULL;
    tl->npanels = tl->panelcap = 0;
    tl->nlayers = 0;
    memset(tl->layer_names, 0, sizeof tl->layer_names);
}
