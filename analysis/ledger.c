/*
 * ledger.c: the device memory ledger (see ledger.h for the parts and the rules).
 *
 * One sweep per trace in seq order over two streams: the device-memory acquires and releases the pass
 * paired (struct cmt_rec: +size at seq, -size at free_seq), by owner and device; and the sample events
 * (op sample): cuMemGetInfo samples (api cuMemGetInfo_v2) open a ledger point, the pool samples queued
 * right after them (cuMemPoolGetAttribute) and the graph pool samples (kind graph, after instantiation
 * and launch) keep the reserves current. A failed acquire that noted cuMemGetInfo is a point too (without
 * NVML, and never the one the context is measured at).
 *
 * Runs in the `cumemtrace` command. Reads the samples the pass kept and the modules of stacks; never writes.
 */
#include "ledger.h"

#include "cmt_events.h"

#include <stdlib.h>
#include <string.h>

const char *const cmt_owner_names[CMT_NOWNERS] = {"caching allocator (PyTorch)", "cuBLAS", "cuBLASLt", "cuDNN",
                                                  "NCCL", "user code"};
const char *const cmt_owner_keys[CMT_NOWNERS] = {"caching_allocator", "cublas", "cublaslt", "cudnn", "nccl",
                                                 "user_code"};

/* The owner of each stack of a trace and, for user code, its module (the innermost outside CUDA's own
 * libraries): classified once per stack. */
struct owner_cache {
    struct cmt_trace *t;
    sqlite3_stmt *q;
    struct imap ix; /* stack_id + 1 -> index into e */
    struct {
        int owner;
        char *module;
    } *e;
    size_t n, cap;
};

static void cache_free(struct owner_cache *c)
{
    sqlite3_finalize(c->q);
    imap_free(&c->ix);
    for (size_t i = 0; i < c->n; i++)
        free(c->e[i].module);
    free(c->e);
}

static int classify(struct owner_cache *c, int32_t stack_id, const char **module, char *err, size_t errlen)
{
    int64_t *ix = imap_get(&c->ix, (uint64_t)((int64_t)stack_id + 1));
    if (ix) {
        *module = c->e[*ix].module;
        return c->e[*ix].owner;
    }
    struct cmt_trace *t = c->t;
    char mod[256];
    snprintf(mod, sizeof mod, "%s", stack_id == CMT_NO_STACK ? "[no stack]" : "[unknown]");
    int owner = CMT_OWN_USER, have_user = 0, rc = SQLITE_DONE;
    if (stack_id != CMT_NO_STACK) {
        if (!c->q && sqlite3_prepare_v2(t->db,
                                        "SELECT m.path FROM stacks s JOIN frames f ON f.frame_id = s.frame_id"
                                        " LEFT JOIN modules m ON m.module_id = f.module_id"
                                        " WHERE s.stack_id = ? ORDER BY s.depth",
                                        -1, &c->q, NULL) != SQLITE_OK)
            return cmt_fail(err, errlen, "%s: cannot read stacks: %s", t->path, sqlite3_errmsg(t->db));
        sqlite3_reset(c->q);
        sqlite3_bind_int64(c->q, 1, stack_id);
        while ((rc = sqlite3_step(c->q)) == SQLITE_ROW) {
            const char *b = cmt_base_name((const char *)sqlite3_column_text(c->q, 0));
            if (!b || !strncmp(b, "libcumemtrace", 13) || !strncmp(b, "libcuda.", 8) || !strncmp(b, "libcudart", 9))
                continue;
            if (!strncmp(b, "libc10_cuda", 11))
                owner = CMT_OWN_TORCH;
            else if (!strncmp(b, "libcublasLt", 11))
                owner = CMT_OWN_CUBLASLT;
            else if (!strncmp(b, "libcublas", 9))
                owner = CMT_OWN_CUBLAS;
            else if (!strncmp(b, "libcudnn", 8))
                owner = CMT_OWN_CUDNN;
            else if (!strncmp(b, "libnccl", 7))
                owner = CMT_OWN_NCCL;
            if (owner != CMT_OWN_USER || !have_user) {
                snprintf(mod, sizeof mod, "%s", b);
                have_user = 1;
            }
            if (owner != CMT_OWN_USER)
                break;
        }
        sqlite3_reset(c->q);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return cmt_fail(err, errlen, "%s: cannot read stacks: %s", t->path, sqlite3_errmsg(t->db));
    }
    if (!cmt_push(&c->e, &c->n, &c->cap, sizeof *c->e) || !(c->e[c->n - 1].module = strdup(mod)) ||
        imap_put(&c->ix, (uint64_t)((int64_t)stack_id + 1), (int64_t)c->n - 1) != 0)
        return cmt_fail(err, errlen, "out of memory");
    c->e[c->n - 1].owner = owner;
    *module = c->e[c->n - 1].module;
    return owner;
}

struct delta {
    int64_t seq, size;
    int dev, owner;
};

static int cmp_delta(const void *a, const void *b)
{
    const struct delta *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static struct cmt_ledger_dev *ledger_dev(struct cmt_ledger *l, int trace, int dev)
{
    for (size_t i = 0; i < l->nd; i++)
        if (l->d[i].trace == trace && l->d[i].dev == dev)
            return &l->d[i];
    struct cmt_ledger_dev *d = cmt_push(&l->d, &l->nd, &l->dcap, sizeof *d);
    if (d) {
        d->trace = trace;
        d->dev = dev;
        d->peak = -1;
    }
    return d;
}

static int slot_of(const struct cmt_trace *t, int64_t device)
{
    for (size_t i = 0; i < t->ndevs; i++)
        if (t->devs[i].device == device)
            return (int)i;
    return -1;
}

#define MAX_POOLS 64
struct pool {
    int dev;
    int64_t handle, reserved, used;
};

/* The pool reserves of DEV into a point. */
static void reserves(struct cmt_ledger_point *p, int dev, const struct pool *pools, int npools, const int64_t *graph)
{
    p->pool_reserve = 0;
    for (int i = 0; i < npools; i++)
        if (pools[i].dev == dev && pools[i].reserved > pools[i].used)
            p->pool_reserve += pools[i].reserved - pools[i].used;
    p->graph_pool = graph[dev];
}

static int trace_ledger(struct cmt_ledger *l, struct cmt_set *s, size_t ti, struct owner_cache *oc, char *err,
                        size_t errlen)
{
    struct cmt_trace *t = s->t[ti];
    struct delta *dl = NULL;
    size_t nd = 0, cap = 0;
    int64_t *cur = NULL, *graph = NULL;
    struct pool pools[MAX_POOLS];
    int npools = 0, rc = -1;
    const char *module;

    for (size_t i = 0; i < t->nrecs; i++) {
        const struct cmt_rec *r = &t->recs[i];
        if (!CMT_KIND_IS_PHYSICAL(r->kind))
            continue;
        int owner = classify(oc, r->stack_id, &module, err, errlen);
        if (owner < 0)
            goto out;
        for (int k = 0; k < (r->free_seq == CMT_LIVE ? 1 : 2); k++) {
            struct delta *d = cmt_push(&dl, &nd, &cap, sizeof *d);
            if (!d) {
                cmt_fail(err, errlen, "out of memory");
                goto out;
            }
            *d = (struct delta){k ? r->free_seq : r->seq, k ? -r->size : r->size, r->dev, owner};
        }
    }
    if (nd)
        qsort(dl, nd, sizeof *dl, cmp_delta);
    size_t ndev = t->ndevs ? t->ndevs : 1;
    cur = calloc(ndev * CMT_NOWNERS, sizeof *cur);
    graph = calloc(ndev, sizeof *graph);
    if (!cur || !graph) {
        cmt_fail(err, errlen, "out of memory");
        goto out;
    }
    /* The samples and this trace's failures that noted cuMemGetInfo, merged in seq order. */
    size_t di = 0, si = 0, fi = 0;
    struct cmt_ledger_dev *open = NULL; /* the point just opened takes the pool samples that follow it */
    for (;;) {
        while (fi < s->nfails && (s->fails[fi].trace != (int)ti || !s->fails[fi].has_free))
            fi++;
        int from_fail;
        if (si < t->nsamples && fi < s->nfails)
            from_fail = s->fails[fi].seq < t->samples[si].seq;
        else if (si < t->nsamples || fi < s->nfails)
            from_fail = fi < s->nfails;
        else
            break;
        struct cmt_sample x = {0};
        if (from_fail) {
            const struct cmt_failure *f = &s->fails[fi++];
            x = (struct cmt_sample){.seq = f->seq, .ts = f->ts, .device = f->device, .free_bytes = f->free_bytes,
                                    .total_bytes = f->total_bytes, .api = 0,
                                    .present = CMT_SAMPLE_FREE | CMT_SAMPLE_TOTAL};
        } else {
            x = t->samples[si++];
        }
        for (; di < nd && dl[di].seq <= x.seq; di++)
            cur[(size_t)dl[di].dev * CMT_NOWNERS + (size_t)dl[di].owner] += dl[di].size;
        int slot = x.device >= 0 ? slot_of(t, x.device) : -1;
        if (slot < 0)
            continue;
        int has_size = x.present & CMT_SAMPLE_SIZE, has_aux = x.present & CMT_SAMPLE_AUX;
        if (x.api == CMT_API_cuMemPoolGetAttribute && has_size && has_aux && (x.present & CMT_SAMPLE_HANDLE)) {
            int k = 0;
            while (k < npools && !(pools[k].handle == x.handle && pools[k].dev == slot))
                k++;
            if (k == npools && npools < MAX_POOLS)
                npools++;
            if (k < npools)
                pools[k] = (struct pool){slot, x.handle, x.size, x.aux};
            if (open && open->np && open->dev == slot)
                reserves(&open->p[open->np - 1], slot, pools, npools, graph);
            continue;
        }
        open = NULL;
        if (x.kind == CMT_KIND_GRAPH && has_size) {
            graph[slot] = x.size;
            continue;
        }
        if (!(x.present & CMT_SAMPLE_FREE) || !(x.present & CMT_SAMPLE_TOTAL) ||
            (x.api != CMT_API_cuMemGetInfo_v2 && x.api != 0))
            continue;
        struct cmt_ledger_dev *ld = ledger_dev(l, (int)ti, slot);
        struct cmt_ledger_point *p = ld ? cmt_push(&ld->p, &ld->np, &ld->pcap, sizeof *p) : NULL;
        if (!p) {
            cmt_fail(err, errlen, "out of memory");
            goto out;
        }
        p->seq = x.seq;
        p->ts = x.ts;
        p->total = x.total_bytes;
        p->used = x.total_bytes - x.free_bytes;
        p->is_sample = x.api != 0;
        p->has_nvml = x.api != 0 && has_size;
        p->other = p->has_nvml ? x.size : 0;
        memcpy(p->owners, &cur[(size_t)slot * CMT_NOWNERS], sizeof p->owners);
        reserves(p, slot, pools, npools, graph);
        if (x.api != 0)
            open = ld;
    }
    rc = 0;
out:
    free(dl);
    free(cur);
    free(graph);
    return rc;
}

int64_t cmt_ledger_known(const struct cmt_ledger_point *p)
{
    int64_t k = p->pool_reserve + p->graph_pool;
    for (int o = 0; o < CMT_NOWNERS; o++)
        k += p->owners[o];
    return k;
}

static int cmp_mod(const void *a, const void *b)
{
    const struct cmt_ledger_module *x = a, *y = b;
    if (x->bytes != y->bytes)
        return x->bytes > y->bytes ? -1 : 1;
    return strcmp(x->module, y->module);
}

/* User code at the peak, by module: what was live at the peak point's seq. */
static int user_modules(struct cmt_ledger_dev *ld, struct cmt_set *s, struct owner_cache *oc, char *err,
                        size_t errlen)
{
    struct cmt_trace *t = s->t[ld->trace];
    int64_t at = ld->p[ld->peak].seq;
    struct smap ix = {0};
    size_t cap = 0;
    const char *module;
    for (size_t i = 0; i < t->nrecs; i++) {
        const struct cmt_rec *r = &t->recs[i];
        if (!CMT_KIND_IS_PHYSICAL(r->kind) || r->dev != ld->dev || r->seq > at || r->free_seq <= at)
            continue;
        int owner = classify(oc, r->stack_id, &module, err, errlen);
        if (owner < 0)
            goto fail;
        if (owner != CMT_OWN_USER)
            continue;
        int64_t *k = smap_get(&ix, module);
        if (!k) {
            struct cmt_ledger_module *m = cmt_push(&ld->user_modules, &ld->nmods, &cap, sizeof *m);
            if (!m || !(m->module = strdup(module)) || smap_put(&ix, module, (int64_t)ld->nmods - 1) != 0) {
                cmt_fail(err, errlen, "out of memory");
                goto fail;
            }
            k = smap_get(&ix, module);
        }
        ld->user_modules[*k].bytes += r->size;
    }
    if (ld->nmods)
        qsort(ld->user_modules, ld->nmods, sizeof *ld->user_modules, cmp_mod);
    smap_free(&ix);
    return 0;
fail:
    smap_free(&ix);
    return -1;
}

/* The ledger at the peak of the process's own memory on the device (the pass's figure): what was ours is
 * exact, the rest is carried from the last sample before it (the first one if none came before). */
static int own_peak(struct cmt_ledger_dev *ld, struct cmt_set *s, struct owner_cache *oc, char *err, size_t errlen)
{
    struct cmt_trace *t = s->t[ld->trace];
    const struct cmt_dev *dv = &t->devs[ld->dev];
    if (!dv->peak || !ld->has_samples)
        return 0; /* nothing sampled: no context, no others to carry */
    struct cmt_ledger_point *p = &ld->own_peak;
    const struct cmt_ledger_point *last = NULL;
    for (size_t k = 0; k < ld->np; k++)
        if (ld->p[k].is_sample && (!last || ld->p[k].seq <= dv->peak_seq))
            last = &ld->p[k];
        else if (last && ld->p[k].seq > dv->peak_seq)
            break;
    memset(p, 0, sizeof *p);
    p->seq = dv->peak_seq;
    p->ts = dv->peak_ts;
    p->total = last->total;
    const char *module;
    for (size_t i = 0; i < t->nrecs; i++) {
        const struct cmt_rec *r = &t->recs[i];
        if (!CMT_KIND_IS_PHYSICAL(r->kind) || r->dev != ld->dev || r->seq > p->seq || r->free_seq <= p->seq)
            continue;
        int owner = classify(oc, r->stack_id, &module, err, errlen);
        if (owner < 0)
            return -1;
        p->owners[owner] += r->size;
    }
    p->pool_reserve = last->pool_reserve;
    p->graph_pool = last->graph_pool;
    p->context = last->context;
    p->has_nvml = last->has_nvml;
    p->other = last->other;
    p->used = cmt_ledger_known(p) + p->context + p->other;
    ld->has_own_peak = 1;
    return 0;
}

/* PyTorch's own reserved bytes at each point, from an imported allocator history (schema version 2: the
 * newest snapshot's alloc_trace, on the trace's time axis), as they stood once the allocator had written
 * down the driver call the point follows (its trigger, the last driver event at or before it). The
 * allocator writes a segment's allocation down after the driver returned it and a segment's release
 * before it asks the driver: after a release, its count up to the release's time; after an allocation,
 * that count plus the segments it wrote down before its next driver call. A version 1 trace, or one
 * without history for the device, has none. */
static int torch_reserved(struct cmt_ledger_dev *ld, struct cmt_set *s, char *err, size_t errlen)
{
    struct cmt_trace *t = s->t[ld->trace];
    sqlite3_stmt *st = NULL, *prev = NULL, *next = NULL;
    struct { int64_t ts, reserved, grow; } *h = NULL;
    size_t n = 0, cap = 0;
    int rc = -1, r;
    if (sqlite3_prepare_v2(t->db,
                           "SELECT ts_ns, reserved_bytes, CASE WHEN action IN ('segment_alloc', 'segment_map')"
                           " THEN size ELSE 0 END FROM alloc_trace WHERE device = ? AND ts_ns IS NOT NULL"
                           " AND snapshot_id = (SELECT max(snapshot_id) FROM alloc_snapshots) ORDER BY entry_id",
                           -1, &st, NULL) != SQLITE_OK)
        return 0; /* no allocator tables (schema version 1) */
    sqlite3_bind_int64(st, 1, t->devs[ld->dev].device);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (!cmt_push(&h, &n, &cap, sizeof *h)) {
            cmt_fail(err, errlen, "out of memory");
            goto out;
        }
        h[n - 1].ts = sqlite3_column_int64(st, 0);
        h[n - 1].reserved = sqlite3_column_int64(st, 1);
        h[n - 1].grow = sqlite3_column_int64(st, 2);
    }
    if (r != SQLITE_DONE) {
        cmt_fail(err, errlen, "%s: cannot read the allocator history: %s", t->path, sqlite3_errmsg(t->db));
        goto out;
    }
    if (n && (sqlite3_prepare_v2(t->db, "SELECT ts_ns, op FROM events WHERE seq <= ?1 AND op <> ?2 ORDER BY seq DESC"
                                        " LIMIT 1", -1, &prev, NULL) != SQLITE_OK ||
              sqlite3_prepare_v2(t->db, "SELECT ts_ns FROM events WHERE seq > ?1 AND op <> ?2 ORDER BY seq LIMIT 1",
                                 -1, &next, NULL) != SQLITE_OK)) {
        cmt_fail(err, errlen, "%s: cannot read events: %s", t->path, sqlite3_errmsg(t->db));
        goto out;
    }
    for (size_t k = 0; k < ld->np && n; k++) {
        struct cmt_ledger_point *p = &ld->p[k];
        int64_t at = p->ts, until = t->has_end && t->end_ns > t->last_ts ? t->end_ns : t->last_ts;
        int acquire = 0;
        sqlite3_reset(prev);
        sqlite3_bind_int64(prev, 1, p->seq);
        sqlite3_bind_int(prev, 2, CMT_OP_SAMPLE); /* samples are not the program's events */
        if (sqlite3_step(prev) == SQLITE_ROW) {
            at = sqlite3_column_int64(prev, 0);
            acquire = CMT_OP_IS_ACQUIRE(sqlite3_column_int(prev, 1));
        }
        sqlite3_reset(next);
        sqlite3_bind_int64(next, 1, p->seq);
        sqlite3_bind_int(next, 2, CMT_OP_SAMPLE);
        if (sqlite3_step(next) == SQLITE_ROW)
            until = sqlite3_column_int64(next, 0);
        size_t lo = 0, hi = n; /* first entry after the trigger */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (h[mid].ts <= at)
                lo = mid + 1;
            else
                hi = mid;
        }
        p->has_torch = 1;
        p->torch_reserved = lo ? h[lo - 1].reserved : 0;
        for (size_t e = lo; acquire && e < n && h[e].ts < until; e++)
            p->torch_reserved += h[e].grow;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    sqlite3_finalize(prev);
    sqlite3_finalize(next);
    free(h);
    return rc;
}

int cmt_ledger_build(struct cmt_ledger *l, struct cmt_set *s, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    int rc = -1;
    struct owner_cache *oc = calloc(s->n ? s->n : 1, sizeof *oc);
    if (!oc)
        return cmt_fail(err, errlen, "out of memory");
    for (size_t ti = 0; ti < s->n; ti++) {
        oc[ti].t = s->t[ti];
        if (trace_ledger(l, s, ti, &oc[ti], err, errlen) != 0)
            goto out;
    }
    for (size_t i = 0; i < l->nd; i++) {
        struct cmt_ledger_dev *ld = &l->d[i];
        /* The context: the least of used - ours - other processes over the samples (NVML's when it
         * answered). Failures' notes are points too, but the context is measured on samples. */
        int64_t ctx = -1;
        for (size_t k = 0; k < ld->np; k++) {
            const struct cmt_ledger_point *p = &ld->p[k];
            int64_t rest = p->used - cmt_ledger_known(p) - p->other;
            if (p->is_sample && (ctx < 0 || rest < ctx))
                ctx = rest;
        }
        /* Without samples (only failures' notes) nothing says what the context is: the rest stays
         * unattributed. */
        ld->context = ctx > 0 ? ctx : 0;
        for (size_t k = 0; k < ld->np; k++)
            ld->has_samples |= ld->p[k].is_sample;
        for (size_t k = 0; k < ld->np; k++) {
            struct cmt_ledger_point *p = &ld->p[k];
            p->context = ld->context;
            p->unattributed = p->used - cmt_ledger_known(p) - p->other - p->context;
            if (ld->peak < 0 || p->used > ld->p[ld->peak].used)
                ld->peak = (int)k;
        }
        if (torch_reserved(ld, s, err, errlen) != 0)
            goto out;
        if (ld->peak >= 0 && user_modules(ld, s, &oc[ld->trace], err, errlen) != 0)
            goto out;
        if (own_peak(ld, s, &oc[ld->trace], err, errlen) != 0)
            goto out;
    }
    rc = 0;
out:
    for (size_t ti = 0; ti < s->n; ti++)
        cache_free(&oc[ti]);
    free(oc);
    return rc;
}

void cmt_ledger_free(struct cmt_ledger *l)
{
    for (size_t i = 0; i < l->nd; i++) {
        for (size_t k = 0; k < l->d[i].nmods; k++)
            free(l->d[i].user_modules[k].module);
        free(l->d[i].user_modules);
        free(l->d[i].p);
    }
    free(l->d);
    memset(l, 0, sizeof *l);
}
