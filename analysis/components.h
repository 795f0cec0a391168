/*
 * components.h: the allocator level's shared parts (alloclevel.c, driverlevel.c, components.c): the
 * component and site of each allocator stack under the rules, the items of the component pass and their
 * refinement by lifetimes, and the two levels torch.c's cmt_torch_build picks between per trace.
 *
 * Runs in the `cumemtrace` command; reads traces only.
 */
#ifndef CMT_COMPONENTS_H
#define CMT_COMPONENTS_H

#include "torch.h"

/* An allocator stack (alloc_stacks id): its component under the rules and its site for people. */
struct astack {
    int comp;
    char *site;
};

/* The stacks of one trace's allocator level, read once each. */
struct actx {
    struct cmt_trace *t;
    const struct cmt_rules *rules;
    sqlite3_stmt *q;
    struct imap ix; /* stack_id -> index in st */
    struct astack *st;
    size_t n, cap;
};

/* The component and site of allocator stack stack_id (has = 0: no frames). *out stays valid until the next
 * call (c->st grows). */
int cmt_astack_get(struct actx *c, int64_t stack_id, int has, struct astack **out, char *err, size_t errlen);
void cmt_actx_free(struct actx *c);

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

/* Lifetimes refine the rules' answer (it[] in allocation order): see components.c. */
void cmt_components_refine(struct citem *it, size_t n);
/* Adds an item to its site's sums (sites keyed by component and site name in ix). 0, or -1 out of memory. */
int cmt_site_add(struct cmt_torch *x, struct smap *ix, const struct citem *it, int at_peak);

/* The two levels: trace ti read from its newest allocator snapshot sid, or from its driver events. */
int cmt_alloc_level(struct cmt_torch *x, struct cmt_set *s, size_t ti, int64_t sid, const struct cmt_rules *rules,
                    struct smap *siteix, char *err, size_t errlen);
int cmt_driver_level(struct cmt_torch *x, struct cmt_set *s, size_t ti, const struct cmt_rules *rules, char *err,
                     size_t errlen);

#endif
