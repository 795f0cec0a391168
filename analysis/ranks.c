/*
 * ranks.c: the per-rank view of a distributed job (see ranks.h).
 *
 * A rank is a process whose environment at start had RANK (the env table keeps RANK, LOCAL_RANK and
 * WORLD_SIZE). Its peak is the process's device-memory peak over all its devices (the pass's figure).
 * "Ran out of memory first" compares failures across processes, so it uses the wall clock, the one clock
 * processes on different hosts share: start_unix_ns + (ts_ns - start_ns). Out of memory means a failed
 * acquire whose result is CUDA_ERROR_OUT_OF_MEMORY (2).
 *
 * Runs in the `cumemtrace` command. Reads the env table of each trace; never writes.
 */
#include "ranks.h"

#include <stdlib.h>
#include <string.h>

#define CUDA_ERROR_OUT_OF_MEMORY 2

static int parse_int(const char *v, int64_t *out)
{
    if (!v || !*v)
        return -1;
    char *end = NULL;
    long long x = strtoll(v, &end, 10);
    if (!end || *end || x < 0)
        return -1;
    *out = x;
    return 0;
}

/* RANK, LOCAL_RANK and WORLD_SIZE of one trace; absent or not a number: left at -1. */
static int read_env(struct cmt_trace *t, struct cmt_rank *r, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    r->rank = r->local_rank = r->world_size = -1;
    if (sqlite3_prepare_v2(t->db, "SELECT name, value FROM env WHERE name IN ('RANK','LOCAL_RANK','WORLD_SIZE')", -1,
                           &st, NULL) != SQLITE_OK)
        return cmt_fail(err, errlen, "%s: cannot read the env table: %s", t->path, sqlite3_errmsg(t->db));
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        const char *value = sqlite3_column_type(st, 1) == SQLITE_TEXT ? (const char *)sqlite3_column_text(st, 1) : NULL;
        int64_t v;
        if (!name || parse_int(value, &v) != 0)
            continue; /* a value that is not a rank number: the process is not placed in the job */
        if (!strcmp(name, "RANK")) {
            r->rank = v;
            r->has_rank = 1;
        } else if (!strcmp(name, "LOCAL_RANK")) {
            r->local_rank = v;
        } else {
            r->world_size = v;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return cmt_fail(err, errlen, "%s: cannot read the env table: %s", t->path, sqlite3_errmsg(t->db));
    return 0;
}

static int cmp_rank(const void *a, const void *b, void *arg)
{
    const struct cmt_rank *x = a, *y = b;
    const struct cmt_set *s = arg;
    if (x->has_rank != y->has_rank)
        return x->has_rank ? -1 : 1;
    if (x->has_rank && x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    int64_t px = s->t[x->trace]->pid, py = s->t[y->trace]->pid;
    return px < py ? -1 : px > py;
}

static int64_t wall(const struct cmt_trace *t, int64_t ts)
{
    return t->start_unix_ns + (ts - t->start_ns);
}

int cmt_ranks_build(struct cmt_ranks *k, struct cmt_set *s, char *err, size_t errlen)
{
    memset(k, 0, sizeof *k);
    k->first_oom = -1;
    k->r = calloc(s->n ? s->n : 1, sizeof *k->r);
    if (!k->r)
        return cmt_fail(err, errlen, "out of memory");
    k->n = s->n;
    for (size_t i = 0; i < s->n; i++) {
        struct cmt_trace *t = s->t[i];
        struct cmt_rank *r = &k->r[i];
        r->trace = (int)i;
        if (read_env(t, r, err, errlen) != 0)
            return -1;
        k->any_rank |= r->has_rank;
        r->peak = t->peak;
        r->peak_ts = t->peak_ts;
        r->peak_unix_ns = t->peak ? wall(t, t->peak_ts) : 0;
        r->peak_dev = t->peak ? t->peak_dev : -1;
        if (t->peak && cmt_ranges_stack_at(s, (int)i, t->peak_seq, &r->at_peak, err, errlen) != 0)
            return -1;
    }
    for (size_t f = 0; f < s->nfails; f++) {
        const struct cmt_failure *x = &s->fails[f];
        struct cmt_rank *r = &k->r[x->trace];
        r->nfails++;
        if (x->result != CUDA_ERROR_OUT_OF_MEMORY)
            continue;
        int64_t w = wall(s->t[x->trace], x->ts);
        if (!r->nooms++ || w < r->first_oom_unix_ns) {
            r->first_oom_unix_ns = w;
            r->first_oom_ts = x->ts;
            r->first_oom_size = x->size;
            r->first_oom_device = x->device;
        }
    }
    if (k->n > 1)
        qsort_r(k->r, k->n, sizeof *k->r, cmp_rank, s);
    for (size_t i = 0; i < k->n; i++) {
        const struct cmt_rank *r = &k->r[i];
        if (r->peak > k->r[k->worst].peak)
            k->worst = (int)i;
        if (r->peak < k->r[k->least].peak)
            k->least = (int)i;
        if (r->nooms && (k->first_oom < 0 || r->first_oom_unix_ns < k->r[k->first_oom].first_oom_unix_ns))
            k->first_oom = (int)i;
    }
    return 0;
}

void cmt_ranks_free(struct cmt_ranks *k)
{
    for (size_t i = 0; k->r && i < k->n; i++)
        free(k->r[i].at_peak.names);
    free(k->r);
    memset(k, 0, sizeof *k);
}
