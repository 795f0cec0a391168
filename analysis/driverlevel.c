/*
 * driverlevel.c: the allocator level of a trace without allocator tables, read from its driver events:
 * each cuMemAlloc'ed segment attributed to a component by its stack, and each failed allocation read for
 * the caching allocator's release-and-retry pattern (what the cache gave back before the retry, whether
 * the retry succeeded: fragmentation, or a device too small).
 *
 * Runs in the `cumemtrace` command. Reads traces only; returns 0 or -1 with a reason in err.
 */
#include "components.h"

#include "cmt_events.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * Driver level: components of segments and the release-and-retry pattern */

struct free_rec {
    int64_t seq, size;
};

static int cmp_free_rec(const void *a, const void *b)
{
    const struct free_rec *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Index of the first free at or after seq. */
static size_t frees_from(const struct free_rec *fr, size_t n, int64_t seq)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (fr[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int cmt_driver_level(struct cmt_torch *x, struct cmt_set *s, size_t ti, const struct cmt_rules *rules, char *err,
                     size_t errlen)
{
    struct cmt_trace *t = s->t[ti];
    struct citem *it = NULL;
    size_t n = 0, cap = 0;
    /* Rules are matched once per stack, not once per allocation: a trace has millions of allocations
     * and a few hundred stacks. Keys are stack_id + 1 (-1, no stack, is the map's empty key). */
    struct imap comp_of = {0};
    for (size_t i = 0; i < t->nrecs; i++) {
        const struct cmt_rec *r = &t->recs[i];
        if (!CMT_KIND_IS_PHYSICAL(r->kind))
            continue;
        struct citem *c = cmt_push(&it, &n, &cap, sizeof *c);
        if (!c) {
            free(it);
            imap_free(&comp_of);
            return cmt_fail(err, errlen, "out of memory");
        }
        c->pos = r->seq;
        c->end = r->free_seq == CMT_LIVE ? INT64_MAX : r->free_seq;
        c->bytes = c->requested = r->size;
        int64_t *known = imap_get(&comp_of, (uint64_t)(r->stack_id + 1));
        if (known) {
            c->comp = (int)*known;
            continue;
        }
        const struct cmt_stack *k;
        if (cmt_stack_get(t, r->stack_id, &k, err, errlen) != 0) {
            free(it);
            imap_free(&comp_of);
            return -1;
        }
        c->comp = cmt_rules_match_stack(rules, k);
        if (imap_put(&comp_of, (uint64_t)(r->stack_id + 1), c->comp) != 0) {
            free(it);
            imap_free(&comp_of);
            return cmt_fail(err, errlen, "out of memory");
        }
    }
    imap_free(&comp_of);
    cmt_components_refine(it, n);
    for (size_t i = 0; i < n; i++) {
        if (s->peak_trace >= 0 && it[i].pos <= t->snap_seq && it[i].end > t->snap_seq) {
            x->comp_peak[it[i].comp] += it[i].bytes;
            x->comp_whole_peak += it[i].bytes;
        }
        if (it[i].end == INT64_MAX) {
            x->comp_end[it[i].comp] += it[i].bytes;
            x->comp_req_end[it[i].comp] += it[i].bytes;
            x->comp_whole_end += it[i].bytes;
        }
    }
    free(it);

    /* Failures: the caching allocator's answer to a failed cuMemAlloc is to free its wholly unused
     * segments and try once more. Read the events after each failure up to the next acquire. The frees
     * of device memory, sorted by when they happened, answer "what was released in between" by bisection. */
    struct free_rec *fr = NULL;
    size_t nfr = 0, frcap = 0;
    for (size_t i = 0; i < t->nrecs && s->nfails; i++) {
        const struct cmt_rec *rr = &t->recs[i];
        if (!CMT_KIND_IS_PHYSICAL(rr->kind) || rr->free_seq == CMT_LIVE)
            continue;
        struct free_rec *e = cmt_push(&fr, &nfr, &frcap, sizeof *e);
        if (!e) {
            free(fr);
            return cmt_fail(err, errlen, "out of memory");
        }
        e->seq = rr->free_seq;
        e->size = rr->size;
    }
    if (nfr)
        qsort(fr, nfr, sizeof *fr, cmp_free_rec);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(t->db, "SELECT seq, op, result, size FROM events WHERE seq > ? ORDER BY seq LIMIT 100000",
                           -1, &st, NULL) != SQLITE_OK) {
        free(fr);
        return cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
    }
    for (size_t fi = 0; fi < s->nfails; fi++) {
        const struct cmt_failure *f = &s->fails[fi];
        if (f->trace != (int)ti || !CMT_KIND_IS_PHYSICAL(f->kind))
            continue;
        if (x->nooms && x->ooms[x->nooms - 1].source == 1 && x->ooms[x->nooms - 1].trace == (int)ti &&
            x->ooms[x->nooms - 1].retry_seq == f->seq && x->ooms[x->nooms - 1].retry == 0)
            continue; /* the failed retry (same size) of the previous one: the same request, reported there */
        struct cmt_oom *o = cmt_push(&x->ooms, &x->nooms, &x->oomcap, sizeof *o);
        if (!o) {
            sqlite3_finalize(st);
            free(fr);
            return cmt_fail(err, errlen, "out of memory");
        }
        o->trace = (int)ti;
        o->source = 1;
        o->api = f->api;
        o->device = f->device;
        o->seq = f->seq;
        o->ts = f->ts;
        o->size = f->size;
        o->has_free = f->has_free;
        o->free_bytes = f->free_bytes;
        o->reserved = f->live_bytes;
        o->retry = -1;
        o->estimated = 1;
        int64_t retry_seq = -1;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, f->seq);
        int r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
            int op = sqlite3_column_int(st, 1);
            if (op == CMT_OP_ALLOC) {
                retry_seq = sqlite3_column_int64(st, 0);
                if (sqlite3_column_int64(st, 3) == f->size)
                    o->retry = sqlite3_column_int64(st, 2) == 0;
                break;
            }
        }
        o->retry_seq = retry_seq;
        int64_t upto = retry_seq > 0 ? retry_seq : INT64_MAX;
        /* frees strictly between the failure and the retry: a range of the sorted free list */
        size_t lo = frees_from(fr, nfr, f->seq + 1), hi = frees_from(fr, nfr, upto);
        int64_t largest = 0;
        for (size_t i = lo; i < hi; i++) {
            o->released_bytes += fr[i].size;
            o->released_segments++;
            if (fr[i].size > largest)
                largest = fr[i].size;
        }
        if (o->retry < 0) { /* no retry of the same size: nothing was released on its behalf */
            o->released_bytes = o->released_segments = 0;
            largest = 0;
        }
        /* What the cache gave back was reserved but unallocated: wholly free segments. */
        o->allocated = o->reserved - o->released_bytes;
        o->largest_free = largest;
        /* the retry succeeding means unused cached memory was what stood in the way */
        o->fragmentation = o->retry == 1;
    }
    sqlite3_finalize(st);
    free(fr);
    return 0;
}

