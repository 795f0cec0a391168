/*
 * alloclevel.c: what the allocator tables of a trace (schema version 2: alloc_snapshots, alloc_state,
 * alloc_segments, alloc_blocks, alloc_trace) say: fragmentation per device at the end and at the peak,
 * the allocator's OOM entries with the model's verdicts, components and sites at the peak and at the end,
 * and the allocated, reserved and per-component curves the timeline draws.
 *
 * Accounting (schema/README.md, "Version 2"): allocated is what torch.cuda.memory_allocated counts (the
 * sizes of active blocks), reserved the segments' total. The peak of a device is the first entry at which
 * its allocated bytes were highest.
 *
 * Runs in the `cumemtrace` command. Reads traces only; returns 0 or -1 with a reason in err.
 */
#include "components.h"
#include "whatif.h"

#include <stdlib.h>
#include <string.h>

/* Every alloc entry of snapshot sid as an item of the component pass, in entry order: its bytes (block
 * size) and request, its lifetime in entries, its stack's component and site, refined by lifetimes
 * (components.c). dev: its slot in devs[0..ndev), -1 when absent. *out is malloc'ed. 0, or -1 with a reason. */
static int read_items(struct actx *c, int64_t sid, const int64_t *devs, int ndev, struct citem **out, size_t *nout,
                      char *err, size_t errlen)
{
    struct cmt_trace *t = c->t;
    sqlite3_stmt *st = NULL;
    struct citem *it = NULL;
    size_t n = 0, cap = 0;
    int r, rc = -1;
    if (sqlite3_prepare_v2(t->db,
                           "SELECT entry_id, device, block_size, size, stack_id, end_entry, synthetic FROM alloc_trace"
                           " WHERE snapshot_id = ? AND action = 'alloc' ORDER BY entry_id",
                           -1, &st, NULL) != SQLITE_OK)
        goto dberr;
    sqlite3_bind_int64(st, 1, sid);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (cmt_row_check(t->path, st, "iIIIIIi", "allocator entry", (long long)sqlite3_column_int64(st, 0), err,
                          errlen) != 0)
            goto out;
        struct citem *i = cmt_push(&it, &n, &cap, sizeof *i);
        if (!i) {
            cmt_fail(err, errlen, "out of memory");
            goto out;
        }
        i->pos = sqlite3_column_int64(st, 0);
        int64_t dev = sqlite3_column_int64(st, 1);
        i->dev = -1;
        for (int d = 0; d < ndev; d++)
            if (devs[d] == dev)
                i->dev = d;
        i->bytes = sqlite3_column_int64(st, 2);
        i->requested = sqlite3_column_int64(st, 3);
        if (i->bytes < 0 || i->bytes > CMT_MAX_SIZE || i->requested < 0 || i->requested > CMT_MAX_SIZE) {
            cmt_fail(err, errlen, "%s: corrupt trace: allocator entry %lld has an impossible size", t->path,
                     (long long)i->pos);
            goto out;
        }
        i->end = sqlite3_column_type(st, 5) == SQLITE_NULL ? INT64_MAX : sqlite3_column_int64(st, 5);
        struct astack *as = NULL;
        int has = sqlite3_column_type(st, 4) != SQLITE_NULL;
        if (cmt_astack_get(c, sqlite3_column_int64(st, 4), has, &as, err, errlen) != 0)
            goto out;
        i->comp = as->comp;
        i->asx = has ? *imap_get(&c->ix, (uint64_t)sqlite3_column_int64(st, 4)) : -1;
        i->before = sqlite3_column_int(st, 6);
    }
    if (r != SQLITE_DONE)
        goto dberr;
    for (size_t k = 0; k < n; k++) { /* c->st has stopped moving: the sites can be pointed at */
        if (it[k].asx >= 0)
            it[k].as = &c->st[it[k].asx];
        else
            cmt_astack_get(c, 0, 0, &it[k].as, err, errlen);
    }
    cmt_components_refine(it, n);
    rc = 0;
    goto out;
dberr:
    cmt_fail(err, errlen, "%s: cannot read the allocator tables: %s", t->path, sqlite3_errmsg(t->db));
out:
    sqlite3_finalize(st);
    if (rc != 0) {
        free(it);
        it = NULL;
        n = 0;
    }
    *out = it;
    *nout = n;
    return rc;
}

/* Trace ti's allocator level from its snapshot sid: fragmentation, OOM entries, components and sites. */
int cmt_alloc_level(struct cmt_torch *x, struct cmt_set *s, size_t ti, int64_t sid, const struct cmt_rules *rules,
                    struct smap *siteix, char *err, size_t errlen)
{
    struct cmt_trace *t = s->t[ti];
    sqlite3_stmt *st = NULL;
    struct actx c = {.t = t, .rules = rules};
    struct citem *it = NULL;
    size_t n = 0;
    int64_t peak_entry[64];
    int64_t devs[64];
    int ndev = 0, rc = -1;

    /* fragmentation: one row per device from the 'end' and 'peak' states */
    if (sqlite3_prepare_v2(t->db,
                           "SELECT e.device, e.allocated_bytes, e.reserved_bytes, e.requested_bytes, e.internal_bytes,"
                           " e.external_bytes, e.largest_free_block, e.peak_reserved_bytes,"
                           " p.entry_id, p.allocated_bytes, p.reserved_bytes, p.requested_bytes, p.largest_free_block,"
                           " (SELECT ts_ns FROM alloc_trace WHERE entry_id = p.entry_id) AS ts_ns,"
                           " (SELECT count(*) FROM alloc_segments g WHERE g.snapshot_id = e.snapshot_id AND g.device = e.device),"
                           " (SELECT count(*) FROM alloc_segments g WHERE g.snapshot_id = e.snapshot_id AND g.device = e.device"
                           "   AND g.largest_free_block > 0)"
                           " FROM alloc_state e LEFT JOIN alloc_state p ON p.snapshot_id = e.snapshot_id"
                           " AND p.device = e.device AND p.point = 'peak'"
                           " WHERE e.snapshot_id = ? AND e.point = 'end' ORDER BY e.device",
                           -1, &st, NULL) != SQLITE_OK)
        goto dberr;
    sqlite3_bind_int64(st, 1, sid);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (cmt_row_check(t->path, st, "IIIIIIIIIIIIIIII", "allocator state of device",
                          (long long)sqlite3_column_int64(st, 0), err, errlen) != 0)
            goto out;
        struct cmt_frag *f = cmt_push(&x->frag, &x->nfrag, &x->fragcap, sizeof *f);
        if (!f)
            goto oom;
        f->trace = (int)ti;
        f->device = sqlite3_column_int64(st, 0);
        f->end_alloc = sqlite3_column_int64(st, 1);
        f->end_reserved = sqlite3_column_int64(st, 2);
        f->end_requested = sqlite3_column_int64(st, 3);
        f->end_internal = sqlite3_column_int64(st, 4);
        f->end_external = sqlite3_column_int64(st, 5);
        f->end_largest_free = sqlite3_column_int64(st, 6);
        f->max_reserved = sqlite3_column_int64(st, 7);
        int has_peak = sqlite3_column_type(st, 8) != SQLITE_NULL;
        f->peak_alloc = has_peak ? sqlite3_column_int64(st, 9) : f->end_alloc;
        f->peak_reserved_then = has_peak ? sqlite3_column_int64(st, 10) : f->end_reserved;
        f->peak_requested = has_peak ? sqlite3_column_int64(st, 11) : f->end_requested;
        f->peak_largest_free = has_peak ? sqlite3_column_int64(st, 12) : f->end_largest_free;
        f->peak_ts = has_peak ? sqlite3_column_int64(st, 13) : t->last_ts;
        f->nsegments = sqlite3_column_int64(st, 14);
        f->segments_with_free = sqlite3_column_int64(st, 15);
        if (ndev < 64) {
            devs[ndev] = f->device;
            peak_entry[ndev++] = has_peak ? sqlite3_column_int64(st, 8) : INT64_MAX - 1;
        }
    }
    if (r != SQLITE_DONE)
        goto dberr;
    sqlite3_finalize(st);
    st = NULL;

    /* allocator OOMs */
    if (sqlite3_prepare_v2(t->db,
                           "SELECT o.device, o.entry_id, o.allocated_bytes, o.reserved_bytes, o.largest_free_block,"
                           " a.size, a.addr, a.ts_ns FROM alloc_state o JOIN alloc_trace a ON a.entry_id = o.entry_id"
                           " WHERE o.snapshot_id = ? AND o.point = 'oom' ORDER BY o.entry_id",
                           -1, &st, NULL) != SQLITE_OK)
        goto dberr;
    sqlite3_bind_int64(st, 1, sid);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (cmt_row_check(t->path, st, "IIIIIIII", "allocator entry", (long long)sqlite3_column_int64(st, 1), err,
                          errlen) != 0)
            goto out;
        struct cmt_oom *o = cmt_push(&x->ooms, &x->nooms, &x->oomcap, sizeof *o);
        if (!o)
            goto oom;
        o->trace = (int)ti;
        o->source = 0;
        o->device = sqlite3_column_int64(st, 0);
        o->seq = sqlite3_column_int64(st, 1);
        o->allocated = sqlite3_column_int64(st, 2);
        o->reserved = sqlite3_column_int64(st, 3);
        o->largest_free = sqlite3_column_int64(st, 4);
        o->size = sqlite3_column_int64(st, 5);
        o->free_bytes = sqlite3_column_int64(st, 6); /* an oom entry's addr is the device's free bytes */
        o->has_free = 1;
        o->ts = sqlite3_column_int64(st, 7);
        o->retry = -1;
        /* enough unused memory inside the reserved segments, but no block that large: fragmentation */
        o->fragmentation = o->reserved - o->allocated >= o->size && o->largest_free < o->size;
    }
    if (r != SQLITE_DONE)
        goto dberr;
    sqlite3_finalize(st);
    st = NULL;
    /* the allocator model's verdicts replace the heuristic where it has one */
    {
        struct cmt_mverdict *mv = NULL;
        size_t nmv = 0;
        if (cmt_whatif_verdicts(t->db, &mv, &nmv, err, errlen) != 0)
            goto out;
        for (size_t i = 0; i < nmv; i++)
            for (size_t j = 0; j < x->nooms; j++) {
                struct cmt_oom *o = &x->ooms[j];
                if (o->source == 0 && o->trace == (int)ti && o->seq == mv[i].entry_id) {
                    o->has_mv = 1;
                    o->mv = mv[i];
                    o->fragmentation = mv[i].kind == CMT_MV_FRAGMENTATION;
                }
            }
        free(mv);
    }

    /* components: every alloc entry, by its stack */
    if (read_items(&c, sid, devs, ndev, &it, &n, err, errlen) != 0)
        goto out;
    for (size_t k = 0; k < n; k++) {
        struct citem *i = &it[k];
        int at_peak = i->dev >= 0 && i->pos <= peak_entry[i->dev] && i->end > peak_entry[i->dev];
        if (at_peak) {
            x->comp_peak[i->comp] += i->bytes;
            x->comp_whole_peak += i->bytes;
        }
        if (i->end == INT64_MAX) {
            x->comp_end[i->comp] += i->bytes;
            x->comp_req_end[i->comp] += i->requested;
            x->comp_whole_end += i->bytes;
        }
        if (cmt_site_add(x, siteix, i, at_peak) != 0)
            goto oom;
    }
    rc = 0;
    goto out;
oom:
    cmt_fail(err, errlen, "out of memory");
    goto out;
dberr:
    cmt_fail(err, errlen, "%s: cannot read the allocator tables: %s", t->path, sqlite3_errmsg(t->db));
out:
    sqlite3_finalize(st);
    cmt_actx_free(&c);
    free(it);
    return rc;
}

/* ---------------------------------------------------------------------------------------------------
 * Curves for the timeline */

static int push_point(struct cmt_acurve *c, size_t *cap, const struct cmt_apoint *p)
{
    struct cmt_apoint *q = cmt_push(&c->p, &c->n, cap, sizeof *q);
    if (!q)
        return -1;
    *q = *p;
    return 0;
}

static int curves_of(struct cmt_set *s, size_t ti, int64_t sid, const struct cmt_rules *rules, int points,
                     struct cmt_acurve **out, size_t *nout, size_t *outcap, char *err, size_t errlen)
{
    struct cmt_trace *t = s->t[ti];
    struct actx c = {.t = t, .rules = rules};
    struct citem *it = NULL;
    size_t n = 0;
    struct imap by_pos = {0}, by_end = {0};
    sqlite3_stmt *st = NULL;
    int rc = -1, r;
    struct cmt_apoint *bmax = NULL, *bend = NULL;
    char *touched = NULL;
    if (read_items(&c, sid, NULL, 0, &it, &n, err, errlen) != 0)
        goto out;
    for (size_t k = 0; k < n; k++)
        if (imap_put(&by_pos, (uint64_t)it[k].pos, (int64_t)k) != 0 ||
            (it[k].end != INT64_MAX && imap_put(&by_end, (uint64_t)it[k].end, (int64_t)k) != 0))
            goto oom;
    bmax = calloc((size_t)points, sizeof *bmax);
    bend = calloc((size_t)points, sizeof *bend);
    touched = calloc((size_t)points, 1);
    if (!bmax || !bend || !touched)
        goto oom;
    if (sqlite3_prepare_v2(t->db, "SELECT entry_id, device, ts_ns, allocated_bytes, reserved_bytes FROM alloc_trace"
                                  " WHERE snapshot_id = ? ORDER BY device, entry_id", -1, &st, NULL) != SQLITE_OK)
        goto dberr;
    sqlite3_bind_int64(st, 1, sid);
    struct cmt_acurve *cur = NULL;
    size_t pcap = 0;
    struct cmt_apoint now = {0};
    int64_t span = s->tend > s->t0 ? s->tend - s->t0 : 1;
#define FLUSH()                                                                                          \
    do {                                                                                                 \
        if (cur) {                                                                                       \
            for (int q = 0; q < points; q++)                                                             \
                if (touched[q] && (push_point(cur, &pcap, &bmax[q]) != 0 ||                              \
                                   (bend[q].ts != bmax[q].ts && push_point(cur, &pcap, &bend[q]) != 0))) \
                    goto oom;                                                                            \
            memset(touched, 0, (size_t)points);                                                          \
        }                                                                                                \
    } while (0)
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (cmt_row_check(t->path, st, "iIIII", "allocator entry", (long long)sqlite3_column_int64(st, 0), err,
                          errlen) != 0)
            goto out;
        int64_t id = sqlite3_column_int64(st, 0), dev = sqlite3_column_int64(st, 1);
        if (!cur || cur->device != dev) {
            FLUSH();
            cur = cmt_push(out, nout, outcap, sizeof *cur);
            if (!cur)
                goto oom;
            cur->trace = (int)ti;
            cur->device = dev;
            pcap = 0;
            memset(&now, 0, sizeof now);
        }
        now.ts = sqlite3_column_int64(st, 2);
        now.allocated = sqlite3_column_int64(st, 3);
        now.reserved = sqlite3_column_int64(st, 4);
        int64_t *k = imap_get(&by_pos, (uint64_t)id);
        if (k)
            now.comp[it[*k].comp] += it[*k].bytes;
        k = imap_get(&by_end, (uint64_t)id);
        if (k)
            now.comp[it[*k].comp] -= it[*k].bytes;
        int64_t q = (now.ts - s->t0) * points / span;
        if (q < 0)
            q = 0;
        if (q >= points)
            q = points - 1;
        if (!touched[q] || now.allocated > bmax[q].allocated)
            bmax[q] = now;
        bend[q] = now;
        touched[q] = 1;
    }
    if (r != SQLITE_DONE)
        goto dberr;
    FLUSH();
#undef FLUSH
    rc = 0;
    goto out;
oom:
    cmt_fail(err, errlen, "out of memory");
    goto out;
dberr:
    cmt_fail(err, errlen, "%s: cannot read the allocator tables: %s", t->path, sqlite3_errmsg(t->db));
out:
    sqlite3_finalize(st);
    cmt_actx_free(&c);
    imap_free(&by_pos);
    imap_free(&by_end);
    free(it);
    free(bmax);
    free(bend);
    free(touched);
    return rc;
}

int cmt_torch_curves(struct cmt_set *s, const struct cmt_rules *rules, int points, struct cmt_acurve **out, size_t *n,
                     char *err, size_t errlen)
{
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    for (size_t ti = 0; ti < s->n; ti++) {
        int64_t sid = cmt_torch_newest_snapshot(s->t[ti]);
        if (sid >= 0 && curves_of(s, ti, sid, rules, points, out, n, &cap, err, errlen) != 0)
            return -1;
    }
    return 0;
}

void cmt_torch_curves_free(struct cmt_acurve *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(c[i].p);
    free(c);
}

