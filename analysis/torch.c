/*
 * torch.c: the allocator level (see torch.h): our data files beside the executable, the Python helper,
 * component rules, fragmentation, the OOM verdict and components, and their report sections.
 *
 * Accounting (schema/README.md, "Version 2"): allocated is what torch.cuda.memory_allocated counts (the
 * sizes of active blocks), reserved the segments' total. The peak of a device is the first entry at which
 * its allocated bytes were highest. Components and OOMs come from the allocator tables when a trace has
 * them, else from driver events (each cuMemAlloc'ed segment attributed by its stack; failures read for the
 * caching allocator's release-and-retry pattern).
 *
 * Runs in the `cumemtrace` command. Reads traces only; returns 0 or -1 with a reason in err.
 */
#include "torch.h"

#include "cmt_events.h"
#include "report.h"

#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const cmt_comp_names[CMT_NCOMP] = {"parameters", "gradients",   "optimizer_state", "activations",
                                               "temporaries", "kv_cache",  "workspace",       "nccl",
                                               "cuda_graphs", "inputs",    "other"};

/* ---------------------------------------------------------------------------------------------------
 * Our files and the Python helper */

int cmt_torch_find(const char *rel, char *out, size_t len)
{
    char cand[PATH_MAX * 2];
    const char *env = getenv("CUMEMTRACE_TORCH_DIR");
    if (env && *env) {
        snprintf(cand, sizeof cand, "%s/%s", env, rel);
        if (access(cand, R_OK) == 0 && realpath(cand, out))
            return 0;
    }
    static const char *const bases[] = {"torch", "../share/cumemtrace/torch", NULL};
    (void)len;
    return cmt_find_beside(bases, rel, out);
}

int cmt_torch_python(char *const *args, char *err, size_t errlen)
{
    char script[PATH_MAX];
    if (cmt_torch_find("cmt_torch.py", script, sizeof script) != 0)
        return cmt_fail(err, errlen, "cmt_torch.py not found beside this program (set CUMEMTRACE_TORCH_DIR)");
    size_t n = 0;
    while (args[n])
        n++;
    return cmt_run_python(script, args, n, "Python 3 is needed to read PyTorch snapshots", err, errlen);
}

/* ---------------------------------------------------------------------------------------------------
 * Rules */

static int comp_of_name(const char *s)
{
    for (int i = 0; i < CMT_NCOMP; i++)
        if (!strcmp(cmt_comp_names[i], s))
            return i;
    return -1;
}

int cmt_rules_load(struct cmt_rules *rs, const char *path, char *err, size_t errlen)
{
    char shipped[PATH_MAX], line[4096];
    memset(rs, 0, sizeof *rs);
    if (!path) {
        if (cmt_torch_find("rules.txt", shipped, sizeof shipped) != 0)
            return cmt_fail(err, errlen, "the shipped rules file (rules.txt) was not found (set CUMEMTRACE_TORCH_DIR"
                                     " or give --rules FILE)");
        path = shipped;
    }
    FILE *f = fopen(path, "r");
    if (!f)
        return cmt_fail(err, errlen, "%s: %s", path, strerror(errno));
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *save = NULL, *comp = strtok_r(line, " \t\r\n", &save);
        if (!comp)
            continue;
        char *where = strtok_r(NULL, " \t\r\n", &save), *glob = strtok_r(NULL, " \t\r\n", &save);
        int c = comp_of_name(comp);
        char w = 0;
        if (where) {
            if (!strcmp(where, "python")) w = 'p';
            else if (!strcmp(where, "line")) w = 'l';
            else if (!strcmp(where, "native")) w = 'n';
            else if (!strcmp(where, "module")) w = 'm';
            else if (!strcmp(where, "any")) w = 'a';
        }
        if (c < 0 || !w || !glob || strtok_r(NULL, " \t\r\n", &save)) {
            rc = cmt_fail(err, errlen, "%s:%d: expected 'COMPONENT python|line|native|module|any GLOB' with a component"
                                   " among parameters, gradients, optimizer_state, activations, temporaries,"
                                   " kv_cache, workspace, nccl, cuda_graphs, inputs, other", path, lineno);
            break;
        }
        struct cmt_rule *r = cmt_push(&rs->r, &rs->n, &rs->cap, sizeof *r);
        if (!r || !(r->glob = strdup(glob))) {
            rc = cmt_fail(err, errlen, "out of memory");
            break;
        }
        r->comp = c;
        r->where = w;
    }
    fclose(f);
    if (rc == 0 && !(rs->path = strdup(path)))
        rc = cmt_fail(err, errlen, "out of memory");
    if (rc != 0)
        cmt_rules_free(rs);
    return rc;
}

void cmt_rules_free(struct cmt_rules *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        free(rs->r[i].glob);
    free(rs->r);
    free(rs->path);
    memset(rs, 0, sizeof *rs);
}

/* One frame against every rule, in file order: the component or -1. Fields may be NULL. */
int cmt_rules_match_frame(const struct cmt_rules *rs, const char *pyfunc, const char *pyline, const char *native,
                          const char *module)
{
    for (size_t i = 0; rs && i < rs->n; i++) {
        const struct cmt_rule *r = &rs->r[i];
        const char *cand[4] = {NULL, NULL, NULL, NULL};
        switch (r->where) {
        case 'p': cand[0] = pyfunc; break;
        case 'l': cand[0] = pyline; break;
        case 'n': cand[0] = native; break;
        case 'm': cand[0] = module; break;
        default: cand[0] = pyfunc; cand[1] = pyline; cand[2] = native; cand[3] = module; break;
        }
        for (int j = 0; j < 4; j++)
            if (cand[j] && fnmatch(r->glob, cand[j], 0) == 0)
                return r->comp;
    }
    return -1;
}

int cmt_rules_match_stack(const struct cmt_rules *rs, const struct cmt_stack *k)
{
    for (int i = 0; i < k->nframes; i++) {
        int c = cmt_rules_match_frame(rs, NULL, NULL, k->frames[i], i == 0 ? k->module : NULL);
        if (c >= 0)
            return c;
    }
    if (k->module) {
        int c = cmt_rules_match_frame(rs, NULL, NULL, NULL, k->module);
        if (c >= 0)
            return c;
    }
    return CMT_C_OTHER;
}

int cmt_rules_classify(const void *rules, const struct cmt_stack *k) { return cmt_rules_match_stack(rules, k); }

/* ---------------------------------------------------------------------------------------------------
 * Allocator stacks: component and site of each alloc_stacks id */

struct astack {
    int comp;
    char *site;
};

struct actx {
    struct cmt_trace *t;
    const struct cmt_rules *rules;
    sqlite3_stmt *q;
    struct imap ix; /* stack_id -> index in st */
    struct astack *st;
    size_t n, cap;
};

static const char *base_name(const char *p)
{
    const char *s = p ? strrchr(p, '/') : NULL;
    return s ? s + 1 : p;
}

static int astack_get(struct actx *c, int64_t stack_id, int has, struct astack **out, char *err, size_t errlen)
{
    static struct astack none = {CMT_C_OTHER, "[no frames: allocated before the history]"};
    if (!has) {
        *out = &none;
        return 0;
    }
    int64_t *p = imap_get(&c->ix, (uint64_t)stack_id);
    if (p) {
        *out = &c->st[*p];
        return 0;
    }
    if (!c->q && sqlite3_prepare_v2(c->t->db,
                                    "SELECT f.name, f.filename, f.line, f.python FROM alloc_stacks s"
                                    " JOIN alloc_frames f ON f.frame_id = s.frame_id WHERE s.stack_id = ?"
                                    " ORDER BY s.depth",
                                    -1, &c->q, NULL) != SQLITE_OK)
        return cmt_fail(err, errlen, "%s: cannot read trace: %s", c->t->path, sqlite3_errmsg(c->t->db));
    sqlite3_reset(c->q);
    sqlite3_bind_int64(c->q, 1, stack_id);
    int comp = -1, rc;
    char site[512] = "", native_site[512] = "";
    while ((rc = sqlite3_step(c->q)) == SQLITE_ROW) {
        if (cmt_row_check(c->t->path, c->q, "TTII", "allocator stack", (long long)stack_id, err, errlen) != 0) {
            sqlite3_reset(c->q);
            return -1;
        }
        const char *name = (const char *)sqlite3_column_text(c->q, 0);
        const char *file = (const char *)sqlite3_column_text(c->q, 1);
        int line = sqlite3_column_int(c->q, 2), py = sqlite3_column_int(c->q, 3);
        char a[1024], b[1024];
        if (py) {
            snprintf(a, sizeof a, "%s:%s", file ? file : "", name ? name : "");
            snprintf(b, sizeof b, "%s:%d", file ? file : "", line);
            if (!site[0])
                snprintf(site, sizeof site, "%s:%d (%s)", base_name(file ? file : "?"), line, name ? name : "?");
            if (comp < 0)
                comp = cmt_rules_match_frame(c->rules, a, b, NULL, NULL);
        } else {
            if (comp < 0) {
                comp = cmt_rules_match_frame(c->rules, NULL, NULL, name, file);
                if (comp >= 0 && !native_site[0])
                    snprintf(native_site, sizeof native_site, "%s", name ? name : "?");
            }
        }
    }
    if (rc != SQLITE_DONE)
        return cmt_fail(err, errlen, "%s: cannot read trace: %s", c->t->path, sqlite3_errmsg(c->t->db));
    struct astack *s = cmt_push(&c->st, &c->n, &c->cap, sizeof *s);
    if (!s || imap_put(&c->ix, (uint64_t)stack_id, (int64_t)c->n - 1) != 0)
        return cmt_fail(err, errlen, "out of memory");
    s->comp = comp < 0 ? CMT_C_OTHER : comp;
    s->site = strdup(site[0] ? site : native_site[0] ? native_site : "[native frames only]");
    if (!s->site)
        return cmt_fail(err, errlen, "out of memory");
    *out = s;
    return 0;
}

static void actx_free(struct actx *c)
{
    sqlite3_finalize(c->q);
    for (size_t i = 0; i < c->n; i++)
        free(c->st[i].site);
    free(c->st);
    imap_free(&c->ix);
}

/* ---------------------------------------------------------------------------------------------------
 * Reading one trace's allocator tables */

int64_t cmt_torch_newest_snapshot(struct cmt_trace *t)
{
    sqlite3_stmt *st = NULL;
    int64_t sid = -1;
    /* a version 1 file has no such table: prepare fails, and that means no allocator data */
    if (sqlite3_prepare_v2(t->db, "SELECT max(snapshot_id) FROM alloc_snapshots", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        sid = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return sid;
}

/* An allocation, allocator or driver level, for the component pass. */
struct citem {
    int64_t pos, end; /* order key of the allocation and of its end (INT64_MAX while live) */
    int64_t bytes, requested;
    int dev;          /* device slot for allocator items (index into per-trace device list) */
    int before;       /* allocator items: allocated before the recorded history began (synthesized) */
    int comp;
    struct astack *as; /* allocator items: site (set once every stack is read: c.st moves while growing) */
    int64_t asx;       /* index into c.st, -1 for no frames */
};

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lifetimes refine the rules. Gradients freed before the next optimizer-state allocation (or freed with
 * no optimizer step after them) were backward temporaries. Optimizer allocations freed before any other
 * component allocated again were the step's scratch, not state. Items are in allocation order. */
static void refine(struct citem *it, size_t n)
{
    /* No frames, allocated before recording began and never freed: the model's weights, loaded before
     * the history started (the usual way to record: after warm-up). Nothing else of that size lives
     * from before the first step to the end. */
    for (size_t i = 0; i < n; i++)
        if (it[i].comp == CMT_C_OTHER && it[i].asx < 0 && it[i].before && it[i].end == INT64_MAX)
            it[i].comp = CMT_C_PARAMETERS;
    int64_t *opt = malloc((n + 1) * sizeof *opt);
    size_t no = 0;
    if (!opt)
        return; /* defensive: without the refinement the rules' answer stands */
    for (size_t i = 0; i < n; i++)
        if (it[i].comp == CMT_C_OPTIMIZER_STATE)
            opt[no++] = it[i].pos;
    qsort(opt, no, sizeof *opt, cmp_i64);
    /* next_other[i]: position of the first later allocation of another component (INT64_MAX if none) */
    int64_t next_other = INT64_MAX;
    int64_t *nx = malloc((n + 1) * sizeof *nx);
    if (!nx) {
        free(opt);
        return;
    }
    for (size_t i = n; i-- > 0;) {
        nx[i] = next_other;
        if (it[i].comp != CMT_C_OPTIMIZER_STATE && it[i].comp != CMT_C_OTHER)
            next_other = it[i].pos;
    }
    for (size_t i = 0; i < n; i++) {
        struct citem *x = &it[i];
        if (x->end == INT64_MAX)
            continue;
        if (x->comp == CMT_C_OPTIMIZER_STATE) {
            if (x->end < nx[i])
                x->comp = CMT_C_TEMPORARIES;
        } else if (x->comp == CMT_C_GRADIENTS) {
            size_t lo = 0, hi = no; /* first optimizer allocation after x */
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (opt[mid] <= x->pos)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo == no || x->end < opt[lo])
                x->comp = CMT_C_TEMPORARIES;
        }
    }
    free(nx);
    free(opt);
}

static int add_site(struct cmt_torch *x, struct smap *ix, const struct citem *it, int at_peak)
{
    if (!it->as)
        return 0;
    char key[600];
    snprintf(key, sizeof key, "%d\t%s", it->comp, it->as->site);
    int64_t *p = smap_get(ix, key);
    if (!p) {
        struct cmt_site *s = cmt_push(&x->sites, &x->nsites, &x->sitecap, sizeof *s);
        if (!s || !(s->name = strdup(it->as->site)) || smap_put(ix, key, (int64_t)x->nsites - 1) != 0)
            return -1;
        s->comp = it->comp;
        p = smap_get(ix, key);
    }
    struct cmt_site *s = &x->sites[*p];
    if (at_peak)
        s->bytes_at_peak += it->bytes;
    if (it->end == INT64_MAX) {
        s->bytes_at_end += it->bytes;
        s->requested_at_end += it->requested;
    }
    return 0;
}

static int alloc_level(struct cmt_torch *x, struct cmt_set *s, size_t ti, int64_t sid, const struct cmt_rules *rules,
                       struct smap *siteix, char *err, size_t errlen)
{
    struct cmt_trace *t = s->t[ti];
    sqlite3_stmt *st = NULL;
    struct actx c = {.t = t, .rules = rules};
    struct citem *it = NULL;
    size_t n = 0, cap = 0;
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
        if (!i)
            goto oom;
        i->pos = sqlite3_column_int64(st, 0);
        int64_t dev = sqlite3_column_int64(st, 1);
        i->dev = -1;
        for (int d = 0; d < ndev; d++)
            if (devs[d] == dev)
                i->dev = d;
        i->bytes = sqlite3_column_int64(st, 2);
        i->requested = sqlite3_column_int64(st, 3);
        if (i->bytes < 0 || i->bytes > ((int64_t)1 << 56) || i->requested < 0 || i->requested > ((int64_t)1 << 56)) {
            cmt_fail(err, errlen, "%s: corrupt trace: allocator entry %lld has an impossible size", t->path,
                     (long long)i->pos);
            goto out;
        }
        i->end = sqlite3_column_type(st, 5) == SQLITE_NULL ? INT64_MAX : sqlite3_column_int64(st, 5);
        struct astack *as = NULL;
        int has = sqlite3_column_type(st, 4) != SQLITE_NULL;
        if (astack_get(&c, sqlite3_column_int64(st, 4), has, &as, err, errlen) != 0)
            goto out;
        i->comp = as->comp;
        i->asx = has ? *imap_get(&c.ix, (uint64_t)sqlite3_column_int64(st, 4)) : -1;
        i->before = sqlite3_column_int(st, 6);
    }
    if (r != SQLITE_DONE)
        goto dberr;
    for (size_t k = 0; k < n; k++) {
        if (it[k].asx >= 0)
            it[k].as = &c.st[it[k].asx];
        else
            astack_get(&c, 0, 0, &it[k].as, err, errlen);
    }
    refine(it, n);
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
        if (add_site(x, siteix, i, at_peak) != 0)
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
    actx_free(&c);
    free(it);
    return rc;
}

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

static int driver_level(struct cmt_torch *x, struct cmt_set *s, size_t ti, const struct cmt_rules *rules, char *err,
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
    refine(it, n);
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

int cmt_torch_build(struct cmt_torch *x, struct cmt_set *s, const struct cmt_torch_options *o, char *err,
                    size_t errlen)
{
    struct cmt_rules rules;
    struct smap siteix = {0};
    memset(x, 0, sizeof *x);
    x->params = o->params;
    x->mixed = o->mixed;
    if (cmt_rules_load(&rules, o->rules, err, errlen) != 0)
        return -1;
    int rc = 0;
    for (size_t ti = 0; ti < s->n && rc == 0; ti++) {
        int64_t sid = cmt_torch_newest_snapshot(s->t[ti]);
        if (sid >= 0) {
            x->has_alloc = 1;
            rc = alloc_level(x, s, ti, sid, &rules, &siteix, err, errlen);
        } else {
            rc = driver_level(x, s, ti, &rules, err, errlen);
        }
    }
    smap_free(&siteix);
    cmt_rules_free(&rules);
    return rc;
}

void cmt_torch_free(struct cmt_torch *x)
{
    for (size_t i = 0; i < x->nsites; i++)
        free(x->sites[i].name);
    free(x->sites);
    free(x->frag);
    free(x->ooms);
    memset(x, 0, sizeof *x);
}

/* ---------------------------------------------------------------------------------------------------
 * Output */

static double ratio(int64_t part, int64_t whole) { return whole > 0 ? (double)part / (double)whole : 0.0; }

static int cmp_site(const void *a, const void *b)
{
    const struct cmt_site *x = a, *y = b;
    int64_t kx = x->bytes_at_end > x->bytes_at_peak ? x->bytes_at_end : x->bytes_at_peak;
    int64_t ky = y->bytes_at_end > y->bytes_at_peak ? y->bytes_at_end : y->bytes_at_peak;
    if (kx != ky)
        return kx > ky ? -1 : 1;
    return strcmp(x->name, y->name);
}

int cmt_oom_advice(const struct cmt_oom *o, char out[4][256])
{
    char t1[32], t2[32], t3[32];
    int k = 0;
    const struct cmt_mverdict *v = o->has_mv ? &o->mv : NULL;
    if (v && v->kind == CMT_MV_FRAGMENTATION && v->fits_with[0])
        snprintf(out[k++], 256, "set PYTORCH_CUDA_ALLOC_CONF=%s: this run replayed with it serves the request "
                                "(reserved %s then, %s less than the allocator needed)", v->fits_with,
                 cmt_bytes_str(v->fits_reserved_bytes, t1), cmt_bytes_str(v->saves_bytes, t2));
    if (v && v->kind == CMT_MV_OUTSIDE)
        snprintf(out[k++], 256, "%s of device memory was held outside the caching allocator (other libraries' "
                                "cudaMalloc, workspaces) and the allocator lacked %s: free or shrink that memory",
                 cmt_bytes_str(v->outside_bytes, t1), cmt_bytes_str(v->short_bytes, t3));
    if (v && v->kind == CMT_MV_FRAGMENTATION && !v->fits_with[0])
        snprintf(out[k++], 256, "no setting the model tried (expandable_segments:True, max_split_size_mb 20 to "
                                "1024) serves this request on this device");
    if (o->fragmentation) {
        if (!v || strncmp(v->fits_with, "expandable", 10))
            snprintf(out[k++], 256, "set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True: segments then grow in "
                                    "place instead of leaving unusable pieces between them");
        if (!v || strncmp(v->fits_with, "max_split", 9))
            snprintf(out[k++], 256, "or max_split_size_mb:%lld (below the %s request) so large cached blocks are "
                                    "not split for small tensors",
                     (long long)((o->size >> 20) > 20 ? (o->size >> 20) / 2 : 20), cmt_bytes_str(o->size, t1));
        if (k < 3)
            snprintf(out[k++], 256, "garbage_collection_threshold:0.8 reclaims unused cached blocks before the "
                                    "allocator runs out");
    } else {
        int64_t missing = o->size - (o->has_free ? o->free_bytes : 0) - (o->reserved - o->allocated);
        snprintf(out[k++], 256, "the device is short of about %s: reduce the batch size (or sequence length), "
                                "use activation checkpointing or lower precision",
                 cmt_bytes_str(missing > 0 ? missing : o->size, t1));
        if (o->reserved > o->allocated && k < 4)
            snprintf(out[k++], 256, "%s is reserved but unallocated: garbage_collection_threshold:0.8 or "
                                    "expandable_segments:True return it sooner", cmt_bytes_str(o->reserved - o->allocated, t2));
    }
    return k;
}

void cmt_torch_text(struct sbuf *b, const struct cmt_torch *x, const struct cmt_set *s)
{
    char t1[32], t2[32], t3[32], t4[32];
    sb_puts(b, "\nFRAGMENTATION (allocator level: reserved but unallocated / reserved)\n");
    if (!x->nfrag)
        sb_puts(b, "  no allocator data in this trace (import a snapshot: cumemtrace import-torch, or run --torch)\n");
    for (size_t i = 0; i < x->nfrag; i++) {
        const struct cmt_frag *f = &x->frag[i];
        char label[256] = "";
        if (s->n > 1)
            cmt_trace_label(s->t[f->trace], label, sizeof label);
        sb_printf(b, "  %sdevice %lld\n", label, (long long)f->device);
        sb_printf(b, "    at the end   %5.1f%%  reserved %s, allocated %s; internal %s, external %s\n",
                  100 * ratio(f->end_reserved - f->end_alloc, f->end_reserved), cmt_bytes_str(f->end_reserved, t1),
                  cmt_bytes_str(f->end_alloc, t2), cmt_bytes_str(f->end_internal, t3),
                  cmt_bytes_str(f->end_external, t4));
        sb_printf(b, "    at the peak  %5.1f%%  reserved %s, allocated %s (highest allocated) at %s\n",
                  100 * ratio(f->peak_reserved_then - f->peak_alloc, f->peak_reserved_then),
                  cmt_bytes_str(f->peak_reserved_then, t1), cmt_bytes_str(f->peak_alloc, t2),
                  cmt_time_str(f->peak_ts - s->t0, t3));
        sb_printf(b, "    peak-based   %5.1f%%  1 - peak allocated / peak reserved (%s)\n",
                  100 * (1 - ratio(f->peak_alloc, f->max_reserved)), cmt_bytes_str(f->max_reserved, t1));
        sb_printf(b, "    largest free block %s; %lld of %lld segments have free space\n",
                  cmt_bytes_str(f->end_largest_free, t1), (long long)f->segments_with_free, (long long)f->nsegments);
    }
    sb_printf(b, "\nOUT OF MEMORY: %zu\n", x->nooms);
    for (size_t i = 0; i < x->nooms; i++) {
        if (x->nooms > 2 * CMT_TEXT_EACH_END && i == CMT_TEXT_EACH_END) {
            sb_printf(b, "  ... %zu more (all of them in --json)\n", x->nooms - 2 * CMT_TEXT_EACH_END);
            i = x->nooms - CMT_TEXT_EACH_END;
        }
        const struct cmt_oom *o = &x->ooms[i];
        sb_printf(b, "  %s of %s on device %lld at %s: %s OOM\n", o->source ? cmt_api_name(o->api) : "allocation",
                  cmt_bytes_str(o->size, t1), (long long)o->device, cmt_time_str(o->ts - s->t0, t2),
                  o->has_mv && o->mv.kind == CMT_MV_OUTSIDE ? "HELD-OUTSIDE-THE-ALLOCATOR"
                  : o->fragmentation                        ? "FRAGMENTATION"
                                                            : "CAPACITY");
        if (o->has_mv) {
            const struct cmt_mverdict *v = &o->mv;
            sb_printf(b, "    model: live %s + request %s against the %s the allocator could have (reserved + "
                         "device free)", cmt_bytes_str(v->live_bytes, t1), cmt_bytes_str(v->request_bytes, t2),
                      cmt_bytes_str(v->capacity_bytes, t3));
            if (v->short_bytes > 0)
                sb_printf(b, ": short %s", cmt_bytes_str(v->short_bytes, t1));
            if (v->outside_bytes > 0)
                sb_printf(b, "; %s held outside the allocator", cmt_bytes_str(v->outside_bytes, t1));
            if (v->kind == CMT_MV_FRAGMENTATION)
                sb_printf(b, "; %s", v->fits_with[0] ? "served when replayed with " : "no setting tried serves it");
            if (v->kind == CMT_MV_FRAGMENTATION && v->fits_with[0])
                sb_puts(b, v->fits_with);
            sb_printf(b, "%s\n", v->reproduced ? "" : " (the model does not reproduce this OOM: read with care)");
        }
        if (o->has_free)
            sb_printf(b, "    device free %s; ", cmt_bytes_str(o->free_bytes, t1));
        else
            sb_puts(b, "    ");
        sb_printf(b, "reserved %s, allocated %s%s, reserved but unallocated %s, largest free block %s\n",
                  cmt_bytes_str(o->reserved, t1), cmt_bytes_str(o->allocated, t2), o->estimated ? " (estimated)" : "",
                  cmt_bytes_str(o->reserved - o->allocated, t3), cmt_bytes_str(o->largest_free, t4));
        if (o->source && o->retry >= 0)
            sb_printf(b, "    release-and-retry: the cache gave back %s in %lld segments, then the retry %s\n",
                      cmt_bytes_str(o->released_bytes, t1), (long long)o->released_segments,
                      o->retry ? "succeeded (recovered: no error reached the program)" : "failed too");
        char adv[4][256];
        int na = cmt_oom_advice(o, adv);
        for (int k = 0; k < na; k++)
            sb_printf(b, "    - %s\n", adv[k]);
    }
    sb_printf(b, "\nCOMPONENTS (%s)\n", x->has_alloc ? "allocator blocks" : "driver allocations by stack");
    sb_printf(b, "  %-16s %10s %7s %10s %7s\n", "component", "at peak", "share", "at end", "share");
    for (int c = 0; c < CMT_NCOMP; c++) {
        if (!x->comp_peak[c] && !x->comp_end[c])
            continue;
        char p1[16], p2[16];
        snprintf(p1, sizeof p1, "%.1f%%", 100 * ratio(x->comp_peak[c], x->comp_whole_peak));
        snprintf(p2, sizeof p2, "%.1f%%", 100 * ratio(x->comp_end[c], x->comp_whole_end));
        sb_printf(b, "  %-16s %10s %7s %10s %7s\n", cmt_comp_names[c], cmt_bytes_str(x->comp_peak[c], t1), p1,
                  cmt_bytes_str(x->comp_end[c], t2), p2);
    }
    if (x->params > 0) {
        int64_t per[3] = {x->mixed ? 2 : 4, x->mixed ? 2 : 4, x->mixed ? 12 : 8};
        int comps[3] = {CMT_C_PARAMETERS, CMT_C_GRADIENTS, CMT_C_OPTIMIZER_STATE};
        sb_printf(b, "  expected for %lld parameters (%s Adam: %lld + %lld + %lld bytes each), measured at the peak:\n",
                  (long long)x->params, x->mixed ? "mixed-precision" : "fp32", (long long)per[0], (long long)per[1],
                  (long long)per[2]);
        for (int k = 0; k < 3; k++)
            sb_printf(b, "    %-16s expected %10s  measured %10s\n", cmt_comp_names[comps[k]],
                      cmt_bytes_str(x->params * per[k], t1), cmt_bytes_str(x->comp_peak[comps[k]], t2));
    }
}

void cmt_torch_json(struct sbuf *b, const struct cmt_torch *x, const struct cmt_set *s)
{
    sb_puts(b, ",\"fragmentation\":[");
    for (size_t i = 0; i < x->nfrag; i++) {
        const struct cmt_frag *f = &x->frag[i];
        sb_printf(b,
                  "%s{\"pid\":%lld,\"device\":%lld,\"end\":%.6f,\"at_peak\":%.6f,\"peak_based\":%.6f,"
                  "\"end_reserved_bytes\":%lld,\"end_allocated_bytes\":%lld,\"end_requested_bytes\":%lld,"
                  "\"internal_bytes\":%lld,\"external_bytes\":%lld,\"internal\":%.6f,\"external\":%.6f,"
                  "\"peak_allocated_bytes\":%lld,\"reserved_at_peak_bytes\":%lld,\"peak_ns\":%lld,"
                  "\"peak_reserved_bytes\":%lld,\"largest_free_block\":%lld,\"largest_free_block_at_peak\":%lld,"
                  "\"segments\":%lld,\"segments_with_free\":%lld}",
                  i ? "," : "", (long long)s->t[f->trace]->pid, (long long)f->device,
                  ratio(f->end_reserved - f->end_alloc, f->end_reserved),
                  ratio(f->peak_reserved_then - f->peak_alloc, f->peak_reserved_then),
                  1 - ratio(f->peak_alloc, f->max_reserved), (long long)f->end_reserved, (long long)f->end_alloc,
                  (long long)f->end_requested, (long long)f->end_internal, (long long)f->end_external,
                  ratio(f->end_internal, f->end_reserved), ratio(f->end_external, f->end_reserved),
                  (long long)f->peak_alloc, (long long)f->peak_reserved_then, (long long)(f->peak_ts - s->t0),
                  (long long)f->max_reserved, (long long)f->end_largest_free, (long long)f->peak_largest_free,
                  (long long)f->nsegments, (long long)f->segments_with_free);
    }
    sb_puts(b, "],\"ooms\":[");
    for (size_t i = 0; i < x->nooms; i++) {
        const struct cmt_oom *o = &x->ooms[i];
        sb_printf(b, "%s{\"source\":\"%s\",\"pid\":%lld,\"device\":%lld,\"ts_ns\":%lld,\"size\":%lld,\"free_bytes\":",
                  i ? "," : "", o->source ? "driver" : "allocator", (long long)s->t[o->trace]->pid,
                  (long long)o->device, (long long)(o->ts - s->t0), (long long)o->size);
        if (o->has_free)
            sb_printf(b, "%lld", (long long)o->free_bytes);
        else
            sb_puts(b, "null");
        sb_printf(b, ",\"reserved_bytes\":%lld,\"allocated_bytes\":%lld,\"reserved_unallocated_bytes\":%lld,"
                     "\"largest_free_block\":%lld,\"estimated\":%s,\"verdict\":\"%s\"",
                  (long long)o->reserved, (long long)o->allocated, (long long)(o->reserved - o->allocated),
                  (long long)o->largest_free, o->estimated ? "true" : "false",
                  o->fragmentation ? "fragmentation" : "capacity");
        if (o->source)
            sb_printf(b, ",\"seq\":%lld,\"released_bytes\":%lld,\"released_segments\":%lld,\"retry\":%s",
                      (long long)o->seq, (long long)o->released_bytes, (long long)o->released_segments,
                      o->retry < 0 ? "null" : o->retry ? "\"succeeded\"" : "\"failed\"");
        else
            sb_printf(b, ",\"entry_id\":%lld", (long long)o->seq);
        sb_puts(b, ",\"advice\":[");
        char adv[4][256];
        int na = cmt_oom_advice(o, adv);
        for (int k = 0; k < na; k++) {
            if (k)
                sb_putc(b, ',');
            sb_json_str(b, adv[k]);
        }
        sb_puts(b, "]}");
    }
    sb_puts(b, "],\"oom_verdicts\":[");
    int firstv = 1;
    for (size_t i = 0; i < x->nooms; i++) {
        const struct cmt_oom *o = &x->ooms[i];
        if (!o->has_mv)
            continue;
        const struct cmt_mverdict *v = &o->mv;
        static const char *const kinds[] = {"", "capacity", "fragmentation", "outside_allocator"};
        sb_printf(b, "%s{\"entry_id\":%lld,\"pid\":%lld,\"device\":%lld,\"verdict\":\"%s\",\"request_bytes\":%lld,"
                     "\"live_bytes\":%lld,\"reserved_bytes\":%lld,\"capacity_bytes\":%lld,\"outside_allocator_bytes\":",
                  firstv ? "" : ",", (long long)v->entry_id, (long long)s->t[o->trace]->pid, (long long)v->device,
                  kinds[v->kind], (long long)v->request_bytes, (long long)v->live_bytes, (long long)v->reserved_bytes,
                  (long long)v->capacity_bytes);
        firstv = 0;
        if (v->outside_bytes < 0)
            sb_puts(b, "null");
        else
            sb_printf(b, "%lld", (long long)v->outside_bytes);
        sb_printf(b, ",\"short_bytes\":%lld,\"model_reproduces\":%s,\"fits_with\":", (long long)v->short_bytes,
                  v->reproduced ? "true" : "false");
        if (v->fits_with[0]) {
            sb_puts(b, "{\"alloc_conf\":");
            sb_json_str(b, v->fits_with);
            sb_printf(b, ",\"reserved_bytes\":%lld,\"saves_bytes\":%lld}", (long long)v->fits_reserved_bytes,
                      (long long)v->saves_bytes);
        } else {
            sb_puts(b, "null");
        }
        char adv[4][256];
        int na = cmt_oom_advice(o, adv);
        sb_puts(b, ",\"advice\":");
        if (na)
            sb_json_str(b, adv[0]);
        else
            sb_puts(b, "null");
        sb_putc(b, '}');
    }
    sb_printf(b, "],\"components_source\":\"%s\",\"components\":[", x->has_alloc ? "allocator" : "driver");
    struct cmt_site *sorted = NULL;
    if (x->nsites && (sorted = malloc(x->nsites * sizeof *sorted))) {
        memcpy(sorted, x->sites, x->nsites * sizeof *sorted);
        qsort(sorted, x->nsites, sizeof *sorted, cmp_site);
    }
    int first = 1;
    for (int c = 0; c < CMT_NCOMP; c++) {
        if (!x->comp_peak[c] && !x->comp_end[c])
            continue;
        sb_printf(b, "%s{\"name\":\"%s\",\"bytes_at_peak\":%lld,\"bytes_at_end\":%lld,\"requested_bytes_at_end\":%lld,"
                     "\"share_at_peak\":%.6f,\"share_at_end\":%.6f,\"sites\":[",
                  first ? "" : ",", cmt_comp_names[c], (long long)x->comp_peak[c], (long long)x->comp_end[c],
                  (long long)x->comp_req_end[c], ratio(x->comp_peak[c], x->comp_whole_peak),
                  ratio(x->comp_end[c], x->comp_whole_end));
        first = 0;
        int k = 0;
        for (size_t i = 0; sorted && i < x->nsites && k < 10; i++) {
            if (sorted[i].comp != c || (!sorted[i].bytes_at_peak && !sorted[i].bytes_at_end))
                continue;
            sb_printf(b, "%s{\"site\":", k ? "," : "");
            sb_json_str(b, sorted[i].name);
            sb_printf(b, ",\"bytes_at_peak\":%lld,\"bytes_at_end\":%lld,\"requested_bytes_at_end\":%lld}",
                      (long long)sorted[i].bytes_at_peak, (long long)sorted[i].bytes_at_end,
                      (long long)sorted[i].requested_at_end);
            k++;
        }
        sb_puts(b, "]}");
    }
    free(sorted);
    sb_puts(b, "]");
    if (x->params > 0) {
        int64_t per[3] = {x->mixed ? 2 : 4, x->mixed ? 2 : 4, x->mixed ? 12 : 8};
        int comps[3] = {CMT_C_PARAMETERS, CMT_C_GRADIENTS, CMT_C_OPTIMIZER_STATE};
        sb_printf(b, ",\"expected\":{\"parameters_count\":%lld,\"precision\":\"%s\"", (long long)x->params,
                  x->mixed ? "mixed" : "fp32");
        for (int k = 0; k < 3; k++)
            sb_printf(b, ",\"%s\":{\"expected_bytes\":%lld,\"measured_bytes_at_peak\":%lld}", cmt_comp_names[comps[k]],
                      (long long)(x->params * per[k]), (long long)x->comp_peak[comps[k]]);
        sb_putc(b, '}');
    } else {
        sb_puts(b, ",\"expected\":null");
    }
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
    size_t n = 0, cap = 0;
    struct imap by_pos = {0}, by_end = {0};
    sqlite3_stmt *st = NULL;
    int rc = -1, r;
    struct cmt_apoint *bmax = NULL, *bend = NULL;
    char *touched = NULL;
    if (sqlite3_prepare_v2(t->db, "SELECT entry_id, block_size, stack_id, end_entry, synthetic FROM alloc_trace"
                                  " WHERE snapshot_id = ? AND action = 'alloc' ORDER BY entry_id", -1, &st, NULL) != SQLITE_OK)
        goto dberr;
    sqlite3_bind_int64(st, 1, sid);
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        if (cmt_row_check(t->path, st, "iIIIi", "allocator entry", (long long)sqlite3_column_int64(st, 0), err,
                          errlen) != 0)
            goto out;
        struct citem *i = cmt_push(&it, &n, &cap, sizeof *i);
        struct astack *as = NULL;
        if (!i)
            goto oom;
        i->pos = sqlite3_column_int64(st, 0);
        i->bytes = sqlite3_column_int64(st, 1);
        i->end = sqlite3_column_type(st, 3) == SQLITE_NULL ? INT64_MAX : sqlite3_column_int64(st, 3);
        int has = sqlite3_column_type(st, 2) != SQLITE_NULL;
        if (astack_get(&c, sqlite3_column_int64(st, 2), has, &as, err, errlen) != 0)
            goto out;
        i->comp = as->comp;
        i->asx = has ? 0 : -1; /* refine() only asks whether there were frames */
        i->before = sqlite3_column_int(st, 4);
    }
    if (r != SQLITE_DONE)
        goto dberr;
    sqlite3_finalize(st);
    st = NULL;
    refine(it, n);
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
    actx_free(&c);
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
