/*
 * report.c: building the report model from an analyzed set (see report.h): the headline, groupings and
 * lists here, then each part's own builder (allocator level, phases, ranks, ledger, what-if).
 *
 * Runs in the `cumemtrace` command. Prints nothing; returns 0 or -1 with the reason in err.
 */
#include "report.h"

#include <stdlib.h>
#include <string.h>

static int ts_of(struct cmt_trace *t, int64_t seq, int64_t *ts, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(t->db, "SELECT ts_ns FROM events WHERE seq = ?", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, seq);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            *ts = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) {
        snprintf(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
        return -1;
    }
    return 0;
}

static int hist_bucket(int64_t size)
{
    int i = 0;
    while (i < CMT_NHIST - 1 && ((int64_t)1 << i) < size)
        i++;
    return i;
}

static int headline(struct cmt_report *r, struct cmt_set *s, char *err, size_t errlen)
{
    if (cmt_group_by_stack(s, CMT_AT_PEAK, &r->top, &r->ntop, err, errlen) != 0 ||
        cmt_group_by_module(s, CMT_AT_PEAK, &r->mods, &r->nmods, err, errlen) != 0 ||
        cmt_group_by_stack(s, CMT_LEAKED, &r->leaks, &r->nleaks, err, errlen) != 0)
        return -1;
    for (size_t i = 0; i < r->nleaks; i++) {
        r->leaked_bytes += r->leaks[i].bytes;
        r->leaked_count += r->leaks[i].count;
    }
    r->fail_stacks = calloc(s->nfails + 1, sizeof *r->fail_stacks);
    if (!r->fail_stacks)
        goto oom;
    for (size_t i = 0; i < s->nfails; i++)
        if (cmt_stack_get(s->t[s->fails[i].trace], s->fails[i].stack_id, &r->fail_stacks[i], err, errlen) != 0)
            return -1;
    for (size_t ti = 0; ti < s->n; ti++) {
        struct cmt_trace *t = s->t[ti];
        r->events += t->n_events;
        int64_t end = t->has_end && t->end_ns > t->last_ts ? t->end_ns : t->last_ts;
        if (end - t->start_ns > r->duration_ns)
            r->duration_ns = end - t->start_ns;
        for (int a = 0; a < CMT_NAPIS; a++)
            r->api_count[a] += t->api_count[a];
        for (int k = 0; k < CMT_NKINDS; k++) {
            r->kind_peak[k] += t->kind_peak[k];
            r->kind_leaked[k] += t->kind_live[k];
        }
        for (size_t i = 0; i < t->nrecs; i++) {
            const struct cmt_rec *x = &t->recs[i];
            if (CMT_KIND_IS_PHYSICAL(x->kind)) {
                int h = hist_bucket(x->size);
                r->hist_count[h]++;
                r->hist_bytes[h] += x->size;
                r->allocs++;
                r->bytes_alloc += x->size;
                if (x->free_seq != CMT_LIVE) {
                    r->frees++;
                    r->bytes_freed += x->size;
                }
            }
            /* the largest allocations of any memory kind, largest first, earliest first among equals */
            if (r->nbig == CMT_NBIG && x->size <= r->big[CMT_NBIG - 1].r.size)
                continue;
            int at = r->nbig < CMT_NBIG ? r->nbig : CMT_NBIG - 1;
            while (at > 0 && r->big[at - 1].r.size < x->size) {
                r->big[at] = r->big[at - 1];
                at--;
            }
            r->big[at].trace = (int)ti;
            r->big[at].r = *x;
            if (r->nbig < CMT_NBIG)
                r->nbig++;
        }
    }
    /* several processes: the larger duration is the span of the whole axis */
    if (s->n > 1)
        r->duration_ns = s->tend - s->t0;
    for (int i = 0; i < r->nbig; i++) {
        struct cmt_big *g = &r->big[i];
        struct cmt_trace *t = s->t[g->trace];
        g->free_ts = -1;
        if (ts_of(t, g->r.seq, &g->ts, err, errlen) != 0 ||
            (g->r.free_seq != CMT_LIVE && ts_of(t, g->r.free_seq, &g->free_ts, err, errlen) != 0) ||
            cmt_stack_get(t, g->r.stack_id, &g->stack, err, errlen) != 0)
            return -1;
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

int cmt_report_build(struct cmt_report *r, struct cmt_set *s, const struct cmt_report_options *o, char *err,
                     size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->s = s;
    r->top_n = o->top > 0 ? o->top : 10;
    if (headline(r, s, err, errlen) != 0 || cmt_torch_build(&r->torch, s, &o->torch, err, errlen) != 0 ||
        cmt_ranges_report(&r->ranges, s, err, errlen) != 0 || cmt_ranks_build(&r->ranks, s, err, errlen) != 0 ||
        cmt_ledger_build(&r->ledger, s, err, errlen) != 0)
        return -1;
    if (o->nwhatif || o->whatif_gpu) {
        /* the what-if table asked for: the allocator history of the one trace given */
        if (s->n != 1)
            return cmt_fail(err, errlen, "report: --whatif reads the allocator history of one trace; %zu were given",
                            s->n);
        if (o->nwhatif > CMT_WHATIF_MAX_CONFS)
            return cmt_fail(err, errlen, "report: at most %d --whatif", CMT_WHATIF_MAX_CONFS);
        r->whatif = calloc((size_t)o->nwhatif + 2, sizeof *r->whatif);
        if (!r->whatif)
            return cmt_fail(err, errlen, "out of memory");
        r->whatif_gpu.spec = o->whatif_gpu;
        /* the allocator level is built: what --whatif-gpu's device loses to memory outside it comes from it,
         * not from a second pass over the trace */
        uint64_t outside = cmt_whatif_outside(s, &r->torch);
        if (cmt_whatif_run(s->t[0]->path, o->whatif, o->nwhatif, &r->whatif_gpu, &outside, UINT64_MAX, r->whatif,
                           &r->nwhatif, err, errlen) != 0)
            return -1;
    }
    return 0;
}

void cmt_report_free(struct cmt_report *r)
{
    cmt_torch_free(&r->torch);
    cmt_ranges_report_free(&r->ranges);
    cmt_ranks_free(&r->ranks);
    cmt_ledger_free(&r->ledger);
    free(r->whatif);
    free(r->top);
    free(r->mods);
    free(r->leaks);
    free(r->fail_stacks);
    memset(r, 0, sizeof *r);
}
