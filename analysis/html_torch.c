/*
 * html_torch.c: the viewer's allocator level for traces with an imported PyTorch history (schema version 2):
 * the caching allocator's blocks as bands with their Python and C++ frames and components (the rules file's
 * order, as torch.c applies it), and its segments with their blocks at the peak and at each OOM.
 *
 * Runs in the `cumemtrace` command. Reads the alloc_* tables of the set's open traces with plain SELECTs;
 * never writes a trace.
 */
#include "html_levels.h"

#include <stdlib.h>
#include <string.h>


struct al_ctx {
    struct cmt_html_dict *d;
    struct cmt_set *s;
    sqlite3_stmt *q;
    int qtrace;
};

static int64_t al_stack_of(struct al_ctx *c, int trace, int64_t stack_id, int has, char *err, size_t errlen)
{
    char key[64];
    if (!has) {
        char *none[1] = {"[no frames: allocated before the history]"};
        return cmt_html_stack_add(c->d, "alloc:none", none, 1, NULL, CMT_C_OTHER);
    }
    snprintf(key, sizeof key, "alloc:%d:%lld", trace, (long long)stack_id);
    int64_t *p = smap_get(&c->d->stk, key);
    if (p)
        return *p;
    struct cmt_trace *t = c->s->t[trace];
    if (c->qtrace != trace) {
        sqlite3_finalize(c->q);
        c->q = NULL;
        c->qtrace = trace;
        if (sqlite3_prepare_v2(t->db,
                               "SELECT f.name, f.filename, f.line, f.python FROM alloc_stacks s"
                               " JOIN alloc_frames f ON f.frame_id = s.frame_id WHERE s.stack_id = ? ORDER BY s.depth",
                               -1, &c->q, NULL) != SQLITE_OK) {
            cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
            return -2;
        }
    }
    sqlite3_reset(c->q);
    sqlite3_bind_int64(c->q, 1, stack_id);
    char **frames = NULL;
    size_t nf = 0, cap = 0;
    int comp = -1, rc;
    while ((rc = sqlite3_step(c->q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(c->q, 0);
        const char *file = (const char *)sqlite3_column_text(c->q, 1);
        int line = sqlite3_column_int(c->q, 2), py = sqlite3_column_int(c->q, 3);
        char a[1024], l[1024], shown[2200];
        if (py) {
            snprintf(a, sizeof a, "%s:%s", file ? file : "", name ? name : "");
            snprintf(l, sizeof l, "%s:%d", file ? file : "", line);
            snprintf(shown, sizeof shown, "%s  (%s:%d)", name ? name : "?", file ? file : "?", line);
            if (comp < 0)
                comp = cmt_rules_match_frame(c->d->rules, a, l, NULL, NULL);
        } else {
            if (file && *file && strcmp(file, "??"))
                snprintf(shown, sizeof shown, "%s  (%s:%d)", name ? name : "?", file, line);
            else
                snprintf(shown, sizeof shown, "%s", name ? name : "?");
            if (comp < 0)
                comp = cmt_rules_match_frame(c->d->rules, NULL, NULL, name, file);
        }
        char **slot = cmt_push(&frames, &nf, &cap, sizeof *frames);
        char *txt = cmt_text_dup(shown);
        if (!slot || !txt) {
            free(txt);
            rc = SQLITE_NOMEM;
            break;
        }
        *slot = txt;
    }
    int64_t ix = -2;
    if (rc != SQLITE_DONE)
        cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
    else {
        char *none[1] = {"[no frames]"};
        ix = cmt_html_stack_add(c->d, key, nf ? frames : none, nf ? (int)nf : 1, "python", comp < 0 ? CMT_C_OTHER : comp);
        if (ix < 0) {
            cmt_fail(err, errlen, "out of memory");
            ix = -2;
        }
    }
    for (size_t i = 0; i < nf; i++)
        free(frames[i]);
    free(frames);
    return ix;
}

static int64_t al_stack(void *ctx, const struct cmt_html_item *it, char *err, size_t errlen)
{
    return al_stack_of(ctx, it->trace, it->stack_id, it->has_stack, err, errlen);
}

static int allocator_level(struct sbuf *b, struct al_ctx *c, int64_t dur, int *any, char *err, size_t errlen)
{
    struct cmt_set *s = c->s;
    size_t n = 0, cap = 0;
    struct cmt_html_item *it = NULL;
    int rc = -1;
    *any = 0;
    for (size_t ti = 0; ti < s->n; ti++) {
        struct cmt_trace *t = s->t[ti];
        int64_t sid = cmt_torch_newest_snapshot(t);
        if (sid < 0)
            continue;
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(t->db,
                               "SELECT a.entry_id, a.device, a.ts_ns, e.ts_ns, a.block_size, a.size, a.stack_id,"
                               " a.end_entry FROM alloc_trace a LEFT JOIN alloc_trace e ON e.entry_id = a.end_entry"
                               " WHERE a.snapshot_id = ? AND a.action = 'alloc' ORDER BY a.entry_id",
                               -1, &st, NULL) != SQLITE_OK) {
            cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
            goto out;
        }
        sqlite3_bind_int64(st, 1, sid);
        int64_t end = cmt_html_trace_end(t) - s->t0;
        int r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
            struct cmt_html_item *x = cmt_push(&it, &n, &cap, sizeof *it);
            if (!x) {
                sqlite3_finalize(st);
                cmt_fail(err, errlen, "out of memory");
                goto out;
            }
            x->sseq = sqlite3_column_int64(st, 0);
            x->dev = (int32_t)sqlite3_column_int64(st, 1);
            x->start = (sqlite3_column_type(st, 2) == SQLITE_NULL ? t->start_ns : sqlite3_column_int64(st, 2)) - s->t0;
            x->live = sqlite3_column_type(st, 7) == SQLITE_NULL;
            x->eseq = x->live ? INT64_MAX : sqlite3_column_int64(st, 7);
            x->end = x->live || sqlite3_column_type(st, 3) == SQLITE_NULL ? end : sqlite3_column_int64(st, 3) - s->t0;
            if (x->start < 0)
                x->start = 0;
            if (x->end < x->start)
                x->end = x->start;
            x->size = sqlite3_column_type(st, 4) == SQLITE_NULL ? sqlite3_column_int64(st, 5) : sqlite3_column_int64(st, 4);
            /* what a device can hold (trace.c's bound for driver sizes): anything else is damage */
            if (x->size < 0 || x->size > ((int64_t)1 << 56)) {
                cmt_fail(err, errlen, "%s: corrupt trace: allocator entry %lld has an impossible size (%lld)", t->path,
                         (long long)x->sseq, (long long)x->size);
                sqlite3_finalize(st);
                goto out;
            }
            x->has_stack = sqlite3_column_type(st, 6) != SQLITE_NULL;
            x->stack_id = sqlite3_column_int64(st, 6);
            x->trace = (int32_t)ti;
        }
        sqlite3_finalize(st);
        if (r != SQLITE_DONE) {
            cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
            goto out;
        }
        *any = 1;
    }
    rc = *any ? cmt_html_level(b, it, n, dur, al_stack, c, 1, err, errlen) : 0;
out:
    free(it);
    return rc;
}

/* The segments of one device at allocator entry E, with their blocks, offsets from each segment's start. */
static int segments_at(struct sbuf *b, struct al_ctx *c, int trace, int64_t sid, int64_t dev, int64_t entry,
                       char *err, size_t errlen)
{
    struct cmt_trace *t = c->s->t[trace];
    sqlite3_stmt *sq = NULL, *bq = NULL;
    int rc = -1;
    static const char *const live =
        " AND snapshot_id = ?1 AND device = ?2 AND entry_id <= ?3 AND (end_entry IS NULL OR end_entry > ?3)"
        " ORDER BY addr";
    char q1[512], q2[512];
    snprintf(q1, sizeof q1, "SELECT addr, size FROM alloc_trace WHERE action IN ('segment_alloc', 'segment_map')%s",
             live);
    snprintf(q2, sizeof q2, "SELECT addr, block_size, stack_id FROM alloc_trace WHERE action = 'alloc'%s", live);
    if (sqlite3_prepare_v2(t->db, q1, -1, &sq, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(t->db, q2, -1, &bq, NULL) != SQLITE_OK) {
        cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
        goto out;
    }
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *q = i ? bq : sq;
        sqlite3_bind_int64(q, 1, sid);
        sqlite3_bind_int64(q, 2, dev);
        sqlite3_bind_int64(q, 3, entry);
    }
    int have = sqlite3_step(bq) == SQLITE_ROW, first = 1, nblocks = 0;
    sb_puts(b, "[");
    while (sqlite3_step(sq) == SQLITE_ROW) {
        int64_t sa = sqlite3_column_int64(sq, 0), ss = sqlite3_column_int64(sq, 1);
        sb_printf(b, "%s{\"addr\":%lld,\"size\":%lld,\"blocks\":[", first ? "" : ",", (long long)sa, (long long)ss);
        first = 0;
        int bf = 1;
        /* blocks below this segment belong to none we know of (a damaged history): skipped */
        while (have && sqlite3_column_int64(bq, 0) < sa)
            have = sqlite3_step(bq) == SQLITE_ROW;
        while (have && sqlite3_column_int64(bq, 0) < sa + ss) {
            if (nblocks++ < 50000) {
                int has = sqlite3_column_type(bq, 2) != SQLITE_NULL;
                int64_t k = al_stack_of(c, trace, sqlite3_column_int64(bq, 2), has, err, errlen);
                if (k < -1)
                    goto out;
                sb_printf(b, "%s[%lld,%lld,%lld]", bf ? "" : ",", (long long)(sqlite3_column_int64(bq, 0) - sa),
                          (long long)sqlite3_column_int64(bq, 1), (long long)k);
                bf = 0;
            }
            have = sqlite3_step(bq) == SQLITE_ROW;
        }
        sb_puts(b, "]}");
    }
    sb_puts(b, "]");
    rc = 0;
out:
    sqlite3_finalize(sq);
    sqlite3_finalize(bq);
    return rc;
}

static int segments(struct sbuf *b, struct al_ctx *c, char *err, size_t errlen)
{
    struct cmt_set *s = c->s;
    int first = 1;
    sb_puts(b, ",\"segments\":[");
    for (size_t ti = 0; ti < s->n; ti++) {
        struct cmt_trace *t = s->t[ti];
        int64_t sid = cmt_torch_newest_snapshot(t);
        if (sid < 0)
            continue;
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(t->db,
                               "SELECT o.point, o.device, o.entry_id, a.ts_ns, o.allocated_bytes, o.reserved_bytes,"
                               " a.size FROM alloc_state o JOIN alloc_trace a ON a.entry_id = o.entry_id"
                               " WHERE o.snapshot_id = ? AND o.point IN ('peak', 'oom') ORDER BY o.entry_id",
                               -1, &st, NULL) != SQLITE_OK)
            return cmt_fail(err, errlen, "%s: cannot read trace: %s", t->path, sqlite3_errmsg(t->db));
        sqlite3_bind_int64(st, 1, sid);
        int nooms = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *point = (const char *)sqlite3_column_text(st, 0);
            int oom = point && !strcmp(point, "oom");
            if (oom && ++nooms > 2 * CMT_TEXT_EACH_END)
                continue; /* the first ones; the text report and --json list every OOM */
            int64_t ts = sqlite3_column_type(st, 3) == SQLITE_NULL ? t->start_ns : sqlite3_column_int64(st, 3);
            sb_printf(b, "%s{\"point\":\"%s\",\"trace\":%zu,\"device\":%lld,\"entry\":%lld,\"ts_ns\":%lld,"
                         "\"allocated_bytes\":%lld,\"reserved_bytes\":%lld,\"request_bytes\":%lld,\"segs\":",
                      first ? "" : ",", oom ? "oom" : "peak", ti, (long long)sqlite3_column_int64(st, 1),
                      (long long)sqlite3_column_int64(st, 2), (long long)(ts - s->t0),
                      (long long)sqlite3_column_int64(st, 4), (long long)sqlite3_column_int64(st, 5),
                      (long long)(oom ? sqlite3_column_int64(st, 6) : 0));
            first = 0;
            if (segments_at(b, c, (int)ti, sid, sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2), err,
                            errlen) != 0) {
                sqlite3_finalize(st);
                return -1;
            }
            sb_putc(b, '}');
        }
        sqlite3_finalize(st);
    }
    sb_putc(b, ']');
    return 0;
}

int cmt_html_allocator(struct sbuf *level, struct sbuf *segs, struct cmt_html_dict *d, struct cmt_set *s, int64_t dur,
                       int *any, char *err, size_t errlen)
{
    struct al_ctx ac = {d, s, NULL, -1};
    int rc = allocator_level(level, &ac, dur, any, err, errlen);
    if (rc == 0)
        rc = segments(segs, &ac, err, errlen);
    sqlite3_finalize(ac.q);
    return rc;
}
