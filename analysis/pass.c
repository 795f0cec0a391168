/*
 * pass.c: the one pass over the events of a set of traces (see analysis.h for the accounting rules):
 * merged by time across processes, releases paired with acquires in C, every counter and peak of the
 * model moved, failures and samples kept; then each observer (struct cmt_observer: phases, timeline
 * panels) is told of every change of accounted memory. The pass knows no observer by name.
 *
 * Runs in the `cumemtrace` command. Reads traces only; returns 0 or -1 with a one-line reason in err.
 */
#include "analysis.h"

#include "cmt_events.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * The pass */

static int dev_slot(struct cmt_trace *t, int has_dev, int64_t device)
{
    int64_t want = has_dev ? device : -1;
    for (size_t i = 0; i < t->ndevs; i++)
        if (t->devs[i].device == want)
            return (int)i;
    struct cmt_dev *d = cmt_push(&t->devs, &t->ndevs, &t->devcap, sizeof *d);
    if (!d)
        return -1;
    d->device = want;
    return (int)t->ndevs - 1;
}


/* The set's slot for the physical GPU behind a device of a trace: same host and uuid (or ordinal when the
 * trace has no uuid for it). 0 on success. */
static int shared_slot(struct cmt_set *s, struct cmt_trace *t, struct cmt_dev *dv)
{
    for (size_t i = 0; i < s->nshared; i++) {
        struct cmt_shared_dev *g = &s->shared[i];
        int same_host = (!g->host && !t->host) || (g->host && t->host && !strcmp(g->host, t->host));
        int same_dev = g->uuid || dv->uuid ? g->uuid && dv->uuid && !strcmp(g->uuid, dv->uuid) : g->device == dv->device;
        if (same_host && same_dev) {
            dv->shared = (int)i + 1;
            return 0;
        }
    }
    struct cmt_shared_dev *g = cmt_push(&s->shared, &s->nshared, &s->sharedcap, sizeof *g);
    if (!g)
        return -1;
    g->host = t->host;
    g->uuid = dv->uuid;
    g->device = dv->device;
    dv->shared = (int)s->nshared;
    return 0;
}

struct pass {
    struct cmt_set *s;
    const struct cmt_observer *obs;
    size_t nobs;
};

/* Applies +size or -size of an allocation to every counter and, for device memory, the peaks. */
static int account(struct pass *ps, size_t ti, const struct cmt_rec *r, int sign, int64_t seq, int64_t ts,
                   char *err, size_t errlen)
{
    struct cmt_set *s = ps->s;
    struct cmt_trace *t = s->t[ti];
    int64_t d = sign * r->size;
    t->kind_live[r->kind] += d;
    if (t->kind_live[r->kind] > t->kind_peak[r->kind])
        t->kind_peak[r->kind] = t->kind_live[r->kind];
    if (CMT_KIND_IS_PHYSICAL(r->kind)) {
        struct cmt_dev *dv = &t->devs[r->dev];
        dv->live += d;
        if (dv->live > dv->peak) {
            dv->peak = dv->live;
            dv->peak_ts = ts;
            dv->peak_seq = seq;
        }
        if (!dv->shared && shared_slot(s, t, dv) != 0)
            return cmt_fail(err, errlen, "out of memory");
        struct cmt_shared_dev *g = &s->shared[dv->shared - 1];
        g->live += d;
        if (g->live > g->peak) {
            g->peak = g->live;
            g->peak_ts = ts;
        }
        t->live += d;
        if (t->live > t->peak) {
            t->peak = t->live;
            t->peak_ts = ts;
            t->peak_seq = seq;
            t->peak_dev = r->dev;
        }
        s->live += d;
        if (s->live > s->peak) {
            s->peak = s->live;
            s->peak_ts = ts;
            s->peak_seq = seq;
            s->peak_trace = (int)ti;
            /* Remember how far each trace had got: what was live then is decided after the pass. */
            for (size_t i = 0; i < s->n; i++)
                s->t[i]->snap_seq = s->t[i]->exited ? 0 : s->t[i]->cur_seq;
        }
    }
    for (size_t i = 0; i < ps->nobs; i++)
        if (ps->obs[i].change && ps->obs[i].change(ps->obs[i].ctx, s, ti, r, sign, seq, ts, err, errlen) != 0)
            return -1;
    return 0;
}

enum { C_SEQ, C_TS, C_API, C_OP, C_KIND, C_DEV, C_ADDR, C_SIZE, C_HANDLE, C_RESULT, C_STACK, C_FREE, C_TOTAL, C_AUX };

static int handle_event(struct pass *ps, size_t ti, sqlite3_stmt *st, char *err, size_t errlen)
{
    struct cmt_set *s = ps->s;
    struct cmt_trace *t = s->t[ti];
    /* Every column the pass reads is an integer (or NULL where the schema allows it). */
    if (cmt_row_check(t->path, st, "iiiiiIIIIiIII", "event", (long long)sqlite3_column_int64(st, C_SEQ), err,
                      errlen) != 0)
        return -1;
    int64_t seq = sqlite3_column_int64(st, C_SEQ), ts = sqlite3_column_int64(st, C_TS);
    int api = sqlite3_column_int(st, C_API), op = sqlite3_column_int(st, C_OP), kind = sqlite3_column_int(st, C_KIND);
    int64_t addr = sqlite3_column_int64(st, C_ADDR), size = sqlite3_column_int64(st, C_SIZE);
    int64_t result = sqlite3_column_int64(st, C_RESULT);
    int has_dev = sqlite3_column_type(st, C_DEV) != SQLITE_NULL;
    /* What a driver can hand out, and when: anything else is damage, and would overflow the sums. */
    if (size < 0 || size > CMT_MAX_SIZE)
        return cmt_fail(err, errlen, "%s: corrupt trace: event %lld has an impossible size (%lld)", t->path,
                        (long long)seq, (long long)size);
    if (ts < 0 || ts > CMT_MAX_TS)
        return cmt_fail(err, errlen, "%s: corrupt trace: event %lld has an impossible time (%lld)", t->path,
                        (long long)seq, (long long)ts);
    int64_t device = sqlite3_column_int64(st, C_DEV);
    int32_t stack_id = sqlite3_column_type(st, C_STACK) == SQLITE_NULL ? CMT_NO_STACK
                                                                        : (int32_t)sqlite3_column_int64(st, C_STACK);
    t->n_events++;
    t->cur_seq = seq;
    t->api_count[api > 0 && api < CMT_NAPIS ? api : 0]++;
    if (kind < 0 || kind >= CMT_NKINDS)
        kind = 0;

    if (result != 0) {
        if (!CMT_OP_IS_ACQUIRE(op)) {
            if (CMT_OP_IS_RELEASE(op))
                t->failed_releases++;
            return 0;
        }
        struct cmt_failure *f = cmt_push(&s->fails, &s->nfails, &s->failcap, sizeof *f);
        if (!f)
            return cmt_fail(err, errlen, "out of memory");
        f->trace = (int)ti;
        f->seq = seq;
        f->ts = ts;
        f->size = size;
        f->result = result;
        f->has_free = sqlite3_column_type(st, C_FREE) != SQLITE_NULL;
        f->free_bytes = sqlite3_column_int64(st, C_FREE);
        f->total_bytes = sqlite3_column_int64(st, C_TOTAL);
        f->live_bytes = t->live;
        f->device = has_dev ? device : -1;
        f->stack_id = stack_id;
        f->api = (uint8_t)(api > 0 && api < CMT_NAPIS ? api : 0);
        f->kind = (uint8_t)kind;
        return 0;
    }

    switch (op) {
    case CMT_OP_SAMPLE: {
        /* Kept as they are for the ledger (ledger.c): a few per second at most. */
        struct cmt_sample *x = cmt_push(&t->samples, &t->nsamples, &t->samplecap, sizeof *x);
        if (!x)
            return cmt_fail(err, errlen, "out of memory");
        x->seq = seq;
        x->ts = ts;
        x->api = api;
        x->kind = kind;
        x->device = has_dev ? device : -1;
#define OPTIONAL(field, c, bit)                                                                         \
        do {                                                                                            \
            if (sqlite3_column_type(st, c) != SQLITE_NULL) {                                            \
                x->field = sqlite3_column_int64(st, c);                                                 \
                x->present |= bit;                                                                      \
            }                                                                                           \
        } while (0)
        OPTIONAL(size, C_SIZE, CMT_SAMPLE_SIZE);
        OPTIONAL(aux, C_AUX, CMT_SAMPLE_AUX);
        OPTIONAL(handle, C_HANDLE, CMT_SAMPLE_HANDLE);
        OPTIONAL(free_bytes, C_FREE, CMT_SAMPLE_FREE);
        OPTIONAL(total_bytes, C_TOTAL, CMT_SAMPLE_TOTAL);
#undef OPTIONAL
        return 0;
    }
    case CMT_OP_RETAIN:
    case CMT_OP_CREATE: {
        /* Another reference to a handle already live here (a retain, an import of our own export): the
         * memory stays with the first acquire until the last release. */
        uint64_t h = (uint64_t)sqlite3_column_int64(st, C_HANDLE);
        if (imap_get(&t->by_handle, h)) {
            int64_t *n = imap_get(&t->handle_refs, h);
            if (imap_put(&t->handle_refs, h, (n ? *n : 0) + 1) != 0)
                return cmt_fail(err, errlen, "out of memory");
            return 0;
        }
        if (op == CMT_OP_RETAIN) {
            t->unmatched_releases++; /* a reference to a handle created before tracing began */
            return 0;
        }
        if (kind != CMT_KIND_VMM_IMPORTED)
            kind = CMT_KIND_VMM_PHYSICAL;
        __attribute__((fallthrough)); /* a new handle: recorded as an allocation is */
    }
    case CMT_OP_ALLOC: {
        int dv = dev_slot(t, has_dev, device);
        struct cmt_rec *r = cmt_push(&t->recs, &t->nrecs, &t->reccap, sizeof *r);
        if (dv < 0 || !r)
            return cmt_fail(err, errlen, "out of memory");
        r->seq = seq;
        r->free_seq = CMT_LIVE;
        r->size = size;
        r->stack_id = stack_id;
        r->dev = (int16_t)dv;
        r->kind = (uint8_t)kind;
        r->api = (uint8_t)(api > 0 && api < CMT_NAPIS ? api : 0);
        int64_t ix = (int64_t)t->nrecs - 1;
        /* A second acquire of a live address (should not happen) leaves the first one live forever. */
        if (imap_put(op == CMT_OP_CREATE ? &t->by_handle : &t->by_addr,
                     (uint64_t)sqlite3_column_int64(st, op == CMT_OP_CREATE ? C_HANDLE : C_ADDR), ix) != 0)
            return cmt_fail(err, errlen, "out of memory");
        return account(ps, ti, r, +1, seq, ts, err, errlen);
    }
    case CMT_OP_FREE:
    case CMT_OP_RELEASE: {
        int64_t ix;
        uint64_t key = (uint64_t)(op == CMT_OP_RELEASE ? sqlite3_column_int64(st, C_HANDLE) : addr);
        int64_t *refs = op == CMT_OP_RELEASE ? imap_get(&t->handle_refs, key) : NULL;
        if (refs && *refs > 0) {
            if (--*refs == 0)
                imap_del(&t->handle_refs, key, &ix);
            return 0; /* a retained or imported reference given back: the memory stays */
        }
        if (!imap_del(op == CMT_OP_RELEASE ? &t->by_handle : &t->by_addr, key, &ix)) {
            t->unmatched_releases++; /* allocated before tracing began, or never allocated */
            return 0;
        }
        struct cmt_rec *r = &t->recs[ix];
        r->free_seq = seq;
        return account(ps, ti, r, -1, seq, ts, err, errlen);
    }
    case CMT_OP_RESERVE:
    case CMT_OP_IPC_OPEN: {
        int k = op == CMT_OP_RESERVE ? CMT_KIND_VA_RESERVATION : CMT_KIND_IPC;
        if (imap_put(op == CMT_OP_RESERVE ? &t->by_reserve : &t->by_ipc, (uint64_t)addr, size) != 0)
            return cmt_fail(err, errlen, "out of memory");
        t->kind_live[k] += size;
        if (t->kind_live[k] > t->kind_peak[k])
            t->kind_peak[k] = t->kind_live[k];
        return 0;
    }
    case CMT_OP_UNRESERVE:
    case CMT_OP_IPC_CLOSE: {
        int k = op == CMT_OP_UNRESERVE ? CMT_KIND_VA_RESERVATION : CMT_KIND_IPC;
        int64_t sz;
        if (imap_del(op == CMT_OP_UNRESERVE ? &t->by_reserve : &t->by_ipc, (uint64_t)addr, &sz))
            t->kind_live[k] -= sz;
        else
            t->unmatched_releases++;
        return 0;
    }
    case CMT_OP_MAP: {
        struct cmt_map *m = cmt_push(&t->maps, &t->nmaps, &t->mapcap, sizeof *t->maps);
        if (!m)
            return cmt_fail(err, errlen, "out of memory");
        m->address = addr;
        m->size = size;
        t->kind_live[CMT_KIND_VMM_MAPPING] += size;
        if (t->kind_live[CMT_KIND_VMM_MAPPING] > t->kind_peak[CMT_KIND_VMM_MAPPING])
            t->kind_peak[CMT_KIND_VMM_MAPPING] = t->kind_live[CMT_KIND_VMM_MAPPING];
        return 0;
    }
    case CMT_OP_UNMAP: {
        /* One unmap may cover several mappings; mappings are few, a scan is enough. */
        int found = 0;
        for (size_t i = 0; i < t->nmaps;) {
            int64_t a = t->maps[i].address;
            if (a == addr || (size > 0 && a >= addr && a - addr < size)) {
                t->kind_live[CMT_KIND_VMM_MAPPING] -= t->maps[i].size;
                t->maps[i] = t->maps[--t->nmaps];
                found = 1;
            } else {
                i++;
            }
        }
        if (!found)
            t->unmatched_releases++;
        return 0;
    }
    default:
        return 0; /* trim, or an op newer than this analyzer: nothing to account */
    }
}

static int tell(const struct cmt_observer *obs, size_t nobs, struct cmt_set *s, int end, char *err, size_t errlen)
{
    for (size_t i = 0; i < nobs; i++) {
        int (*f)(void *, struct cmt_set *, char *, size_t) = end ? obs[i].end : obs[i].begin;
        if (f && f(obs[i].ctx, s, err, errlen) != 0)
            return -1;
    }
    return 0;
}

int cmt_set_analyze(struct cmt_set *s, const struct cmt_observer *obs, size_t nobs, char *err, size_t errlen)
{
    struct pass ps = {.s = s, .obs = obs, .nobs = nobs};
    if (tell(obs, nobs, s, 0, err, errlen) != 0)
        return -1;
    /* Prime one row per trace, then always take the earliest: several processes share one clock
     * (CLOCK_MONOTONIC), so the merged order is the order things happened on this host. Within a trace
     * the order is seq, which the writer made consistent. A trace whose rows are exhausted still has one
     * thing to happen: its process ends, at its end time, and the driver takes back what it held, so it
     * no longer counts in the processes' sum. */
    enum { DONE, ROW, EXIT };
    int *live = calloc(s->n, sizeof *live);
    if (!live)
        return cmt_fail(err, errlen, "out of memory");
    int rc = 0;
    size_t active = 0;
    for (size_t i = 0; i < s->n; i++) {
        int r = sqlite3_step(s->t[i]->events);
        if (r == SQLITE_ROW) {
            live[i] = ROW;
            active++;
        } else if (r != SQLITE_DONE) {
            rc = cmt_db_read_fail(s->t[i], r, err, errlen);
            goto out;
        } else if (s->n > 1) {
            live[i] = EXIT;
            active++;
        }
    }
    while (active) {
        size_t best = 0;
        int64_t best_ts = INT64_MAX;
        for (size_t i = 0; i < s->n && s->n > 1; i++) {
            if (live[i] == DONE)
                continue;
            struct cmt_trace *t = s->t[i];
            int64_t ts = live[i] == ROW ? sqlite3_column_int64(t->events, C_TS)
                                        : (t->has_end && t->end_ns > t->last_ts ? t->end_ns : t->last_ts);
            if (ts < best_ts) {
                best_ts = ts;
                best = i;
            }
        }
        struct cmt_trace *t = s->t[best];
        if (live[best] == EXIT) {
            s->live -= t->live;
            for (size_t d = 0; d < t->ndevs; d++)
                if (t->devs[d].shared)
                    s->shared[t->devs[d].shared - 1].live -= t->devs[d].live;
            t->exited = 1;
            live[best] = DONE;
            active--;
            for (size_t i = 0; i < nobs; i++)
                if (obs[i].exit && obs[i].exit(obs[i].ctx, s, best, best_ts, err, errlen) != 0) {
                    rc = -1;
                    goto out;
                }
            continue;
        }
        if (handle_event(&ps, best, t->events, err, errlen) != 0) {
            rc = -1;
            goto out;
        }
        int r = sqlite3_step(t->events);
        if (r != SQLITE_ROW) {
            live[best] = s->n > 1 ? EXIT : DONE;
            if (live[best] == DONE)
                active--;
            if (r != SQLITE_DONE) {
                rc = cmt_db_read_fail(t, r, err, errlen);
                goto out;
            }
        }
    }
    /* Traces that never reached a peak (no device memory at all) keep snap_seq = 0: nothing live. */
    rc = tell(obs, nobs, s, 1, err, errlen);
out:
    free(live);
    return rc;
}

