/*
 * components.c: the component pass shared by the allocator level (alloclevel.c) and the driver level
 * (driverlevel.c): each allocator stack's component and site under the rules (read once per stack), the
 * lifetime refinements of the rules' first answer, and the per-site sums (see components.h).
 *
 * Runs in the `cumemtrace` command. Reads the alloc_stacks and alloc_frames tables only.
 */
#include "components.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------------
 * Allocator stacks: component and site of each alloc_stacks id */



int cmt_astack_get(struct actx *c, int64_t stack_id, int has, struct astack **out, char *err, size_t errlen)
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
                snprintf(site, sizeof site, "%s:%d (%s)", cmt_base_name(file ? file : "?"), line, name ? name : "?");
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

void cmt_actx_free(struct actx *c)
{
    sqlite3_finalize(c->q);
    for (size_t i = 0; i < c->n; i++)
        free(c->st[i].site);
    free(c->st);
    imap_free(&c->ix);
}


static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lifetimes refine the rules. Gradients freed before the next optimizer-state allocation (or freed with
 * no optimizer step after them) were backward temporaries. Optimizer allocations freed before any other
 * component allocated again were the step's scratch, not state. Items are in allocation order. */
void cmt_components_refine(struct citem *it, size_t n)
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

int cmt_site_add(struct cmt_torch *x, struct smap *ix, const struct citem *it, int at_peak)
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

