/*
 * allocmodel.c: the caching allocator model (see allocmodel.h). Facts from PyTorch's
 * CUDACachingAllocator.cpp; our own code.
 *
 * Blocks of one segment form a doubly linked list by address; free blocks of each pool are kept in an
 * array sorted by (stream, size, address), searched by binary search: histories have thousands of free
 * blocks at most.
 */
#include "allocmodel.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K_MIN_BLOCK 512ull
#define K_SMALL_SIZE (1ull << 20)
#define K_SMALL_BUFFER (2ull << 20)
#define K_LARGE_BUFFER (20ull << 20)
#define K_MIN_LARGE_ALLOC (10ull << 20)
#define K_ROUND_LARGE (2ull << 20)

/* An expandable segment: one reserved range of address space, mapped and unmapped by whole pages. */
struct eseg {
    uint64_t base, page;
};

struct mblock {
    uint64_t addr, size;
    int64_t stream;
    int small, allocated;
    int pidx;                 /* its block set: m->pools[pidx] (2 * pool + small) */
    int pending;              /* freed while in use on other streams (record_stream): not reusable yet */
    int unmapped;             /* expandable segments: address space with no pages behind it */
    int64_t gc_base;          /* the pool's get_free_block count when the block became free */
    uint64_t id;              /* allocated or pending: its id (byid[id - 1]) */
    uint64_t seg;             /* the base of its segment (of the expandable segment's reservation) */
    struct eseg *es;          /* NULL: a cudaMalloc'ed segment */
    struct mblock *prev, *next;
};

struct pool {
    struct mblock **v;        /* free mapped blocks by (stream, size, address) */
    size_t n, cap;
    struct mblock **u;        /* unmapped blocks of expandable segments by (stream, address) */
    size_t nu, capu;
    int64_t gets;             /* get_free_block calls while garbage collection is on */
    int freeable;             /* a private pool no longer in use: released with the default pools */
};

struct cmt_amodel {
    struct cmt_aconf conf;
    struct pool *pools;   /* 2 * k + small: pool k's large (0) and small (1) block sets; k = 0 the default */
    int npools;           /* pools, default included (m->pools has twice as many block sets) */
    struct mblock **byid;
    size_t nid, capid;
    struct eseg **segs;
    size_t nseg, capseg;
    struct mblock **pend;     /* freed, waiting for their uses on other streams (record_stream) */
    size_t npend, cappend;
    uint64_t next_addr;
    uint64_t hint;            /* the address of the next new segment, when the caller knows it (0: ours) */
    struct cmt_astats st;
};

int cmt_aconf_parse(struct cmt_aconf *conf, const char *text, char *err, size_t errlen)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *save = NULL, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        while (*kv == ' ')
            kv++;
        char *colon = strchr(kv, ':');
        if (!colon) {
            snprintf(err, errlen, "--alloc-conf %s: expected KEY:VALUE", kv);
            return -1;
        }
        *colon = 0;
        const char *v = colon + 1;
        char *end;
        unsigned long long x = strtoull(v, &end, 10);
        int num_ok = end != v && !*end && *v != '-';
        if (!strcmp(kv, "max_split_size_mb")) {
            if (!num_ok || x < 20 || x > (1ull << 40)) {
                snprintf(err, errlen, "--alloc-conf max_split_size_mb:%s: a number of MiB, at least 20", v);
                return -1;
            }
            conf->max_split_size = x << 20;
        } else if (!strcmp(kv, "roundup_power2_divisions")) {
            if (!num_ok || (x & (x - 1)) || x > 64) {
                snprintf(err, errlen, "--alloc-conf roundup_power2_divisions:%s: a power of two up to 64", v);
                return -1;
            }
            conf->divisions = (unsigned)x;
        } else if (!strcmp(kv, "expandable_segments")) {
            if (!strcmp(v, "True") || !strcmp(v, "true"))
                conf->expandable = 1;
            else if (!strcmp(v, "False") || !strcmp(v, "false"))
                conf->expandable = 0;
            else {
                snprintf(err, errlen, "--alloc-conf expandable_segments:%s: True or False", v);
                return -1;
            }
        } else if (!strcmp(kv, "garbage_collection_threshold")) {
            double t = strtod(v, &end);
            if (end == v || *end || !(t > 0.0 && t < 1.0)) {
                snprintf(err, errlen, "--alloc-conf garbage_collection_threshold:%s: a number between 0 and 1", v);
                return -1;
            }
            conf->gc_threshold = t;
        } else if (!strcmp(kv, "backend")) {
            snprintf(err, errlen, "--alloc-conf backend is not modelled (the native caching allocator is)");
            return -1;
        } else {
            snprintf(err, errlen, "--alloc-conf %s: not a setting of PyTorch's caching allocator", kv);
            return -1;
        }
    }
    return 0;
}

struct cmt_amodel *cmt_amodel_new(const struct cmt_aconf *conf)
{
    struct cmt_amodel *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->conf = *conf;
    m->next_addr = 1ull << 40;
    m->npools = 1;
    m->pools = calloc(2, sizeof *m->pools);
    if (!m->pools) {
        free(m);
        return NULL;
    }
    return m;
}

/* Makes room for private pool `pool` (and every one below it). 0, or -1 out of memory. */
static int have_pool(struct cmt_amodel *m, int pool)
{
    if (pool < m->npools)
        return 0;
    struct pool *g = realloc(m->pools, 2 * (size_t)(pool + 1) * sizeof *g);
    if (!g)
        return -1;
    memset(g + 2 * m->npools, 0, 2 * (size_t)(pool + 1 - m->npools) * sizeof *g);
    m->pools = g;
    m->npools = pool + 1;
    return 0;
}

void cmt_amodel_free(struct cmt_amodel *m)
{
    if (!m)
        return;
    /* every block is allocated (still in byid), free (in a pool) or unmapped (in a pool's unmapped set) */
    for (size_t i = 0; i < m->nid; i++)
        free(m->byid[i]);
    for (int p = 0; p < 2 * m->npools; p++) {
        for (size_t i = 0; i < m->pools[p].n; i++)
            free(m->pools[p].v[i]);
        for (size_t i = 0; i < m->pools[p].nu; i++)
            free(m->pools[p].u[i]);
        free(m->pools[p].v);
        free(m->pools[p].u);
    }
    for (size_t i = 0; i < m->nseg; i++)
        free(m->segs[i]);
    free(m->segs);
    free(m->byid);
    free(m->pend);
    free(m->pools);
    free(m);
}

/* ---- sizes ---------------------------------------------------------------------------------------- */

static uint64_t round_size(const struct cmt_amodel *m, uint64_t size)
{
    if (size < K_MIN_BLOCK)
        return K_MIN_BLOCK;
    unsigned div = m->conf.divisions;
    if (div > 1 && size > K_MIN_BLOCK * div) {
        /* the next of `div` equal steps between two powers of two */
        if (!(size & (size - 1)))
            return size;
        uint64_t floor2 = 1ull << (63 - __builtin_clzll(size));
        uint64_t step = floor2 / div;
        if (!step)
            return floor2 << 1;
        uint64_t down = size & ~(step - 1);
        return down == size ? size : down + step;
    }
    return (size + K_MIN_BLOCK - 1) / K_MIN_BLOCK * K_MIN_BLOCK;
}

static uint64_t allocation_size(uint64_t size)
{
    if (size <= K_SMALL_SIZE)
        return K_SMALL_BUFFER;
    if (size < K_MIN_LARGE_ALLOC)
        return K_LARGE_BUFFER;
    return (size + K_ROUND_LARGE - 1) / K_ROUND_LARGE * K_ROUND_LARGE;
}

/* ---- free block sets ------------------------------------------------------------------------------ */

static int before(const struct mblock *a, int64_t stream, uint64_t size, uint64_t addr)
{
    if (a->stream != stream)
        return a->stream < stream;
    if (a->size != size)
        return a->size < size;
    return a->addr < addr;
}

static size_t lower_bound(const struct pool *p, int64_t stream, uint64_t size, uint64_t addr)
{
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (before(p->v[mid], stream, size, addr))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int pool_insert(struct pool *p, struct mblock *b)
{
    size_t i = lower_bound(p, b->stream, b->size, b->addr);
    if (!cmt_push(&p->v, &p->n, &p->cap, sizeof *p->v))
        return -1;
    memmove(&p->v[i + 1], &p->v[i], (p->n - 1 - i) * sizeof *p->v);
    p->v[i] = b;
    b->gc_base = p->gets;
    return 0;
}

static void pool_erase(struct pool *p, struct mblock *b)
{
    size_t i = lower_bound(p, b->stream, b->size, b->addr);
    if (i < p->n && p->v[i] == b) {
        memmove(&p->v[i], &p->v[i + 1], (p->n - i - 1) * sizeof *p->v);
        p->n--;
    }
}

/* ---- the allocator -------------------------------------------------------------------------------- */

static int gc_on(const struct cmt_amodel *m)
{
    return m->conf.gc_threshold > 0 && m->conf.capacity != UINT64_MAX;
}

/* Total order of the expandable search: a free block at the end of the mapped part of a segment can grow
 * into the unmapped address space after it, and best fit counts it at that size. */
static uint64_t expandable_size(const struct mblock *b)
{
    return b->size + (b->next && b->next->unmapped ? b->next->size : 0);
}

static struct mblock *get_free_block(struct cmt_amodel *m, int pidx, int64_t stream, uint64_t size)
{
    struct pool *p = &m->pools[pidx];
    if (gc_on(m))
        p->gets++; /* the age of cached blocks counts these calls */
    size_t i = lower_bound(p, stream, size, 0);
    if (i >= p->n || p->v[i]->stream != stream)
        return NULL;
    if (p->v[i]->es && m->conf.expandable)
        while (p->v[i]->es && i + 1 < p->n && p->v[i + 1]->stream == stream &&
               expandable_size(p->v[i + 1]) < expandable_size(p->v[i]))
            i++;
    struct mblock *b = p->v[i];
    uint64_t mss = m->conf.max_split_size;
    if (size < mss && b->size >= mss)
        return NULL; /* an oversize block is not cut for a smaller request */
    if (size >= mss && b->size >= size + K_LARGE_BUFFER)
        return NULL; /* nor handed whole to a request much smaller than itself */
    pool_erase(p, b);
    return b;
}

static void note_reserved(struct cmt_amodel *m)
{
    if (m->st.reserved > m->st.peak_reserved) {
        m->st.peak_reserved = m->st.reserved;
        m->st.allocated_at_peak_reserved = m->st.allocated;
    }
}

/* Whether the device (or the per-process limit) can give `bytes` more. */
static int room_for(const struct cmt_amodel *m, uint64_t bytes)
{
    return m->conf.capacity == UINT64_MAX || (m->st.reserved <= m->conf.capacity && bytes <= m->conf.capacity - m->st.reserved);
}

static struct mblock *alloc_segment(struct cmt_amodel *m, int pidx, int64_t stream, uint64_t bytes)
{
    if (!room_for(m, bytes))
        return NULL; /* cudaMalloc: out of memory */
    struct mblock *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    if (m->hint) {
        b->addr = m->hint;
        m->hint = 0;
    } else {
        b->addr = m->next_addr;
        m->next_addr += (bytes + K_ROUND_LARGE - 1) / K_ROUND_LARGE * K_ROUND_LARGE;
    }
    b->size = bytes;
    b->stream = stream;
    b->small = pidx & 1;
    b->pidx = pidx;
    b->seg = b->addr;
    m->st.reserved += bytes;
    m->st.last_segment_base = b->addr;
    m->st.segments_allocated++;
    m->st.last_segment_size = bytes;
    note_reserved(m);
    return b;
}

/* A whole free segment goes back to the device. */
static void release_block(struct cmt_amodel *m, struct mblock *b)
{
    pool_erase(&m->pools[b->pidx], b);
    m->st.reserved -= b->size;
    free(b);
}

/* ---- expandable segments ---------------------------------------------------------------------------- */

/* The unmapped set, by (stream, address); a handful of entries per segment. */
static size_t ulower_bound(const struct pool *p, int64_t stream, uint64_t addr)
{
    size_t lo = 0, hi = p->nu;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const struct mblock *a = p->u[mid];
        if (a->stream != stream ? a->stream < stream : a->addr < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int uinsert(struct pool *p, struct mblock *b)
{
    size_t i = ulower_bound(p, b->stream, b->addr);
    if (!cmt_push(&p->u, &p->nu, &p->capu, sizeof *p->u))
        return -1;
    memmove(&p->u[i + 1], &p->u[i], (p->nu - 1 - i) * sizeof *p->u);
    p->u[i] = b;
    return 0;
}

static void uerase(struct pool *p, struct mblock *b)
{
    size_t i = ulower_bound(p, b->stream, b->addr);
    if (i < p->nu && p->u[i] == b) {
        memmove(&p->u[i], &p->u[i + 1], (p->nu - i - 1) * sizeof *p->u);
        p->nu--;
    }
}

/* Merges src, a neighbour of dst in the same state (free and mapped, or unmapped), into dst. The caller
 * has taken dst out of its set; src leaves its own. */
static void try_merge(struct cmt_amodel *m, struct mblock *dst, struct mblock *src)
{
    if (!src || src->allocated || src->unmapped != dst->unmapped)
        return;
    struct pool *p = &m->pools[dst->pidx];
    if (src->unmapped)
        uerase(p, src);
    else
        pool_erase(p, src);
    if (dst->prev == src) {
        dst->addr = src->addr;
        dst->prev = src->prev;
        if (dst->prev)
            dst->prev->next = dst;
    } else {
        dst->next = src->next;
        if (dst->next)
            dst->next->prev = dst;
    }
    dst->size += src->size;
    free(src);
}

static struct mblock *new_block(struct mblock *like, uint64_t addr, uint64_t size, int unmapped)
{
    struct mblock *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->addr = addr;
    b->size = size;
    b->stream = like->stream;
    b->small = like->small;
    b->pidx = like->pidx;
    b->seg = like->seg;
    b->es = like->es;
    b->unmapped = unmapped;
    return b;
}

/* Links b between before and after. */
static void splice(struct mblock *b, struct mblock *before, struct mblock *after)
{
    if (before)
        before->next = b;
    b->prev = before;
    if (after)
        after->prev = b;
    b->next = after;
}

/* The lowest address, in this stream's expandable segments of the pool, with `size` bytes of free or
 * unmapped space from it; a new segment (all of it unmapped) when none has. */
static struct mblock *find_expandable_block(struct cmt_amodel *m, int pidx, int64_t stream, uint64_t size)
{
    struct pool *p = &m->pools[pidx];
    int small = pidx & 1;
    for (size_t i = ulower_bound(p, stream, 0); i < p->nu && p->u[i]->stream == stream; i++) {
        struct mblock *c = p->u[i];
        if (c->prev && !c->prev->allocated)
            c = c->prev;
        uint64_t bytes = 0;
        for (struct mblock *b = c; b && !b->allocated && bytes < size; b = b->next)
            bytes += b->size;
        if (bytes >= size)
            return c;
    }
    struct eseg *es = calloc(1, sizeof *es), **slot = NULL;
    struct mblock *b = calloc(1, sizeof *b);
    if (!es || !b || !(slot = cmt_push(&m->segs, &m->nseg, &m->capseg, sizeof *m->segs))) {
        free(es);
        free(b);
        return NULL;
    }
    *slot = es;
    es->page = small ? K_SMALL_BUFFER : K_LARGE_BUFFER;
    /* PyTorch reserves address space for 9/8 of the device's memory; any size far beyond the
     * capacity behaves the same */
    uint64_t span = m->conf.capacity != UINT64_MAX && m->conf.capacity < (1ull << 44) ? m->conf.capacity + m->conf.capacity / 8
                                                                                        : 1ull << 44;
    span = (span + es->page - 1) / es->page * es->page;
    if (m->hint) {
        es->base = m->hint;
        m->hint = 0;
    } else {
        es->base = m->next_addr;
        m->next_addr += span + K_LARGE_BUFFER;
    }
    b->addr = es->base;
    b->size = span;
    b->stream = stream;
    b->small = small;
    b->pidx = pidx;
    b->seg = es->base;
    b->es = es;
    b->unmapped = 1;
    if (uinsert(p, b) != 0) {
        free(b);
        return NULL;
    }
    return b;
}

/* Maps the pages covering the first `size` bytes of the unmapped block b: all of them or none (the
 * device out of memory). b then joins its free mapped neighbours and the free set. */
static int map_block(struct cmt_amodel *m, struct mblock *b, uint64_t size)
{
    struct eseg *es = b->es;
    uint64_t first = (b->addr - es->base) / es->page;
    uint64_t end = (b->addr + size - es->base + es->page - 1) / es->page;
    uint64_t bytes = (end - first) * es->page;
    if (!bytes || !room_for(m, bytes))
        return 0;
    struct pool *p = &m->pools[b->pidx];
    uint64_t start = b->addr;
    uerase(p, b);
    b->unmapped = 0;
    if (bytes < b->size) {
        struct mblock *rest = new_block(b, b->addr + bytes, b->size - bytes, 1);
        if (!rest)
            return 0;
        splice(rest, b, b->next);
        b->size = bytes;
        uinsert(p, rest);
    }
    try_merge(m, b, b->prev);
    try_merge(m, b, b->next);
    pool_insert(p, b);
    m->st.reserved += bytes;
    m->st.segments_allocated++;
    m->st.last_segment_size = bytes;
    m->st.last_segment_base = start;
    note_reserved(m);
    return 1;
}

static struct mblock *alloc_expandable(struct cmt_amodel *m, int pidx, int64_t stream, uint64_t size)
{
    struct mblock *c = find_expandable_block(m, pidx, stream, size);
    if (!c)
        return NULL;
    if (c->unmapped && !map_block(m, c, c->size < size ? c->size : size))
        return NULL;
    while (c->size < size) {
        /* c is free and mapped, the unmapped rest of the segment follows: map more and merge */
        struct mblock *n = c->next;
        uint64_t want = size - c->size;
        if (!map_block(m, n, n->size < want ? n->size : want))
            return NULL; /* pages mapped so far stay mapped */
        c = n;
    }
    pool_erase(&m->pools[pidx], c);
    return c;
}

/* Gives back the whole pages inside the free block b; the free bytes around them stay mapped. */
static void unmap_block(struct cmt_amodel *m, struct mblock *b)
{
    struct eseg *es = b->es;
    uint64_t first = (b->addr - es->base + es->page - 1) / es->page;
    uint64_t end = (b->addr + b->size - es->base) / es->page;
    if (first >= end)
        return;
    struct pool *p = &m->pools[b->pidx];
    pool_erase(p, b);
    uint64_t start = es->base + first * es->page, bytes = (end - first) * es->page;
    uint64_t before = start - b->addr, after = b->size - before - bytes;
    if (before) {
        struct mblock *f = new_block(b, b->addr, before, 0);
        if (f) {
            splice(f, b->prev, b);
            pool_insert(p, f);
        }
    }
    if (after) {
        struct mblock *f = new_block(b, start + bytes, after, 0);
        if (f) {
            splice(f, b, b->next);
            pool_insert(p, f);
        }
    }
    b->addr = start;
    b->size = bytes;
    b->unmapped = 1;
    try_merge(m, b, b->prev);
    try_merge(m, b, b->next);
    uinsert(p, b);
    m->st.reserved -= bytes;
}

/* ---- giving memory back ----------------------------------------------------------------------------- */

static int release_available_cached_blocks(struct cmt_amodel *m, int pidx, int64_t stream, uint64_t size)
{
    uint64_t mss = m->conf.max_split_size;
    if (mss == UINT64_MAX)
        return 0;
    struct pool *p = &m->pools[pidx];
    uint64_t key = size < mss ? mss : size;
    size_t i = lower_bound(p, stream, key, 0);
    if (i < p->n && p->v[i]->stream == stream && !p->v[i]->prev && !p->v[i]->next) {
        release_block(m, p->v[i]);
        return 1;
    }
    /* else the largest oversize blocks of this stream, until enough is given back */
    uint64_t freed = 0;
    while (freed < size && i > 0) {
        struct mblock *b = p->v[i - 1];
        if (b->stream != stream || b->size < mss)
            break;
        i--;
        if (b->prev || b->next)
            continue;
        freed += b->size;
        release_block(m, b);
    }
    return freed >= size;
}

/* Every unsplit free segment of the block set goes back; expandable segments give back their whole free
 * pages (and their address space once nothing of them is mapped). */
static void release_blocks(struct cmt_amodel *m, int pidx)
{
    struct pool *p = &m->pools[pidx];
    struct mblock **exp = NULL;
    size_t nexp = 0, capexp = 0;
    for (size_t i = p->n; i-- > 0;) {
        struct mblock *b = p->v[i];
        if (b->es) {
            /* unmapping changes the free set: gather first */
            struct mblock **slot = cmt_push(&exp, &nexp, &capexp, sizeof *exp);
            if (!slot)
                break; /* defensive: out of memory, fewer pages go back */
            *slot = b;
        } else if (!b->prev && !b->next) {
            release_block(m, b);
        }
    }
    for (size_t k = 0; k < nexp; k++) {
        struct mblock *b = exp[k];
        unmap_block(m, b);
        if (b->unmapped && !b->prev && !b->next) {
            /* the whole segment is unmapped: its address space goes back too */
            uerase(p, b);
            free(b);
        }
    }
    free(exp);
}

static void free_block(struct cmt_amodel *m, struct mblock *b);

/* synchronize_and_free_events: every block waiting for its uses on other streams is freed now. */
static void sync_pending(struct cmt_amodel *m)
{
    /* in the order they were freed; freeing merges neighbours, never another pending block */
    for (size_t i = 0; i < m->npend; i++) {
        struct mblock *b = m->pend[i];
        m->byid[b->id - 1] = NULL; /* its recorded free_completed, later, finds nothing */
        b->pending = 0;
        free_block(m, b);
    }
    m->npend = 0;
}

/* release_cached_blocks: pending frees first, then the default pools' unsplit free segments, then those of
 * the private pools no longer in use. Private pools in use keep theirs. */
static int release_cached_blocks(struct cmt_amodel *m)
{
    sync_pending(m);
    release_blocks(m, 0);
    release_blocks(m, 1);
    for (int k = 1; k < m->npools; k++)
        if (m->pools[2 * k].freeable) {
            release_blocks(m, 2 * k + 1);
            release_blocks(m, 2 * k);
        }
    return 1;
}

void cmt_amodel_empty_cache(struct cmt_amodel *m)
{
    release_cached_blocks(m);
}

int cmt_amodel_release_pool(struct cmt_amodel *m, int pool, int now)
{
    if (pool <= 0)
        return 0;
    if (have_pool(m, pool) != 0)
        return -1;
    m->pools[2 * pool].freeable = 1;
    if (now) {
        release_blocks(m, 2 * pool + 1);
        release_blocks(m, 2 * pool);
    }
    return 0;
}

/* garbage_collection_threshold: above threshold * the allowed bytes, unsplit cached blocks of the large
 * pool that waited at least the average number of get_free_block calls go back, pass after pass with a
 * new average, until enough is freed or none is left. */
static void garbage_collect(struct cmt_amodel *m)
{
    uint64_t threshold = (uint64_t)(m->conf.gc_threshold * (double)m->conf.capacity);
    if (m->st.reserved <= threshold)
        return;
    uint64_t target = m->st.reserved - threshold, reclaimed = 0;
    struct pool *p = &m->pools[0];
    uint64_t total_age = 0;
    int64_t count = 0;
    for (size_t i = 0; i < p->n; i++)
        if (!p->v[i]->prev && !p->v[i]->next) {
            total_age += (uint64_t)(p->gets - p->v[i]->gc_base);
            count++;
        }
    int freed = 1;
    while (reclaimed < target && freed && count > 0) {
        double age = (double)total_age / (double)count;
        freed = 0;
        for (size_t i = 0; i < p->n;) {
            struct mblock *b = p->v[i];
            uint64_t a = (uint64_t)(p->gets - b->gc_base);
            if (!b->prev && !b->next && (double)a >= age) {
                freed = 1;
                reclaimed += b->size;
                total_age -= a;
                count--;
                release_block(m, b);
            } else {
                i++;
            }
        }
    }
}

static int should_split(const struct cmt_amodel *m, const struct mblock *b, uint64_t size)
{
    uint64_t remaining = b->size - size;
    if (b->small || m->conf.expandable)
        return remaining >= K_MIN_BLOCK;
    return size < m->conf.max_split_size && remaining > K_SMALL_SIZE;
}

static int remember(struct cmt_amodel *m, struct mblock *b, uint64_t *id)
{
    struct mblock **slot = cmt_push(&m->byid, &m->nid, &m->capid, sizeof *m->byid);
    if (!slot)
        return -1;
    *slot = b;
    *id = m->nid;
    return 0;
}

/* alloc_block: a new segment, or more pages of an expandable one. */
static struct mblock *alloc_block(struct cmt_amodel *m, int pidx, int64_t stream, uint64_t size, uint64_t asize)
{
    if (m->conf.gc_threshold > 0 && !room_for(m, asize))
        return NULL; /* over the per-process memory fraction: no device call at all */
    if (m->conf.expandable)
        return alloc_expandable(m, pidx, stream, size);
    return alloc_segment(m, pidx, stream, asize);
}

int cmt_amodel_malloc_in(struct cmt_amodel *m, uint64_t orig, int64_t stream, int pool, uint64_t *id)
{
    if (pool < 0 || have_pool(m, pool) != 0)
        return -2;
    uint64_t size = round_size(m, orig);
    int pidx = 2 * pool + (size <= K_SMALL_SIZE);
    uint64_t asize = allocation_size(size);
    struct mblock *b = get_free_block(m, pidx, stream, size);
    if (!b && gc_on(m))
        garbage_collect(m);
    if (!b && !(b = alloc_block(m, pidx, stream, size, asize)) &&
        !(release_available_cached_blocks(m, pidx, stream, size) && (b = alloc_block(m, pidx, stream, size, asize))) &&
        !(release_cached_blocks(m) && (b = alloc_block(m, pidx, stream, size, asize))))
        return -1;
    if (should_split(m, b, size)) {
        struct mblock *rest = new_block(b, b->addr + size, b->size - size, 0);
        if (!rest)
            return -2;
        splice(rest, b, b->next);
        b->size = size;
        if (pool_insert(&m->pools[rest->pidx], rest) != 0)
            return -2;
    }
    b->allocated = 1;
    m->st.allocated += b->size;
    if (m->st.allocated > m->st.peak_allocated)
        m->st.peak_allocated = m->st.allocated;
    /* the most allocated while reserved stands at its peak (a new segment is counted before its block) */
    if (m->st.reserved == m->st.peak_reserved && m->st.allocated > m->st.allocated_at_peak_reserved)
        m->st.allocated_at_peak_reserved = m->st.allocated;
    if (remember(m, b, id) != 0)
        return -2;
    b->id = *id;
    return 0;
}

/* free_block: the block joins its free neighbours of the same segment (mapped ones: an unmapped neighbour
 * stays apart) and its pool's free set. */
static void free_block(struct cmt_amodel *m, struct mblock *b)
{
    b->allocated = 0;
    try_merge(m, b, b->next);
    try_merge(m, b, b->prev);
    pool_insert(&m->pools[b->pidx], b);
}

void cmt_amodel_free_block(struct cmt_amodel *m, uint64_t id)
{
    if (!id || id > m->nid || !m->byid[id - 1])
        return;
    struct mblock *b = m->byid[id - 1];
    m->byid[id - 1] = NULL;
    if (b->pending) {
        /* its uses completed: out of the pending list (a few entries at most) */
        for (size_t i = 0; i < m->npend; i++)
            if (m->pend[i] == b) {
                memmove(&m->pend[i], &m->pend[i + 1], (m->npend - i - 1) * sizeof *m->pend);
                m->npend--;
                break;
            }
        b->pending = 0;
    } else {
        m->st.allocated -= b->size;
    }
    free_block(m, b);
}

int cmt_amodel_free_pending(struct cmt_amodel *m, uint64_t id)
{
    if (!id || id > m->nid || !m->byid[id - 1] || m->byid[id - 1]->pending)
        return 0;
    struct mblock **slot = cmt_push(&m->pend, &m->npend, &m->cappend, sizeof *m->pend);
    if (!slot)
        return -1;
    struct mblock *b = m->byid[id - 1];
    /* free() counts it out of allocated at once; the block stays out of the free set (allocated stays
     * set: no neighbour merges into it) until its events complete */
    m->st.allocated -= b->size;
    b->pending = 1;
    *slot = b;
    return 0;
}

void cmt_amodel_next_segment_at(struct cmt_amodel *m, uint64_t addr)
{
    m->hint = addr;
}

int cmt_amodel_block(const struct cmt_amodel *m, uint64_t id, uint64_t *addr, uint64_t *seg)
{
    if (!id || id > m->nid || !m->byid[id - 1])
        return -1;
    *addr = m->byid[id - 1]->addr;
    *seg = m->byid[id - 1]->seg;
    return 0;
}

void cmt_amodel_stats(const struct cmt_amodel *m, struct cmt_astats *out)
{
    *out = m->st;
}
