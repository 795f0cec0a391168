/*
 * allocmodel.c: the caching allocator model (see allocmodel.h). Facts from PyTorch's
 * CUDACachingAllocator.cpp; our own code.
 *
 * Blocks of one segment form a doubly linked list by address; free blocks of each pool are kept in an
 * array sorted by (stream, size, address), searched by binary search: histories have thousands of free
 * blocks at most.
 */
#include "allocmodel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define K_MIN_BLOCK 512ull
#define K_SMALL_SIZE (1ull << 20)
#define K_SMALL_BUFFER (2ull << 20)
#define K_LARGE_BUFFER (20ull << 20)
#define K_MIN_LARGE_ALLOC (10ull << 20)
#define K_ROUND_LARGE (2ull << 20)

struct mblock {
    uint64_t addr, size;
    int64_t stream;
    int small, allocated;
    struct mblock *prev, *next;
};

struct pool {
    struct mblock **v;
    size_t n, cap;
};

struct cmt_amodel {
    struct cmt_aconf conf;
    struct pool pools[2]; /* 0 large, 1 small */
    struct mblock **byid;
    size_t nid, capid;
    uint64_t next_addr;
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
            if (!strcmp(v, "True") || !strcmp(v, "true")) {
                snprintf(err, errlen, "--alloc-conf expandable_segments:True is not modelled yet");
                return -1;
            }
        } else if (!strcmp(kv, "garbage_collection_threshold") || !strcmp(kv, "backend")) {
            snprintf(err, errlen, "--alloc-conf %s is not modelled yet", kv);
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
    return m;
}

void cmt_amodel_free(struct cmt_amodel *m)
{
    if (!m)
        return;
    /* every block is either allocated (still in byid) or free (in a pool), never both */
    for (size_t i = 0; i < m->nid; i++)
        free(m->byid[i]);
    for (int p = 0; p < 2; p++) {
        for (size_t i = 0; i < m->pools[p].n; i++)
            free(m->pools[p].v[i]);
        free(m->pools[p].v);
    }
    free(m->byid);
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
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 64;
        struct mblock **g = realloc(p->v, nc * sizeof *g);
        if (!g)
            return -1;
        p->v = g;
        p->cap = nc;
    }
    size_t i = lower_bound(p, b->stream, b->size, b->addr);
    memmove(&p->v[i + 1], &p->v[i], (p->n - i) * sizeof *p->v);
    p->v[i] = b;
    p->n++;
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

static struct mblock *get_free_block(struct cmt_amodel *m, int small, int64_t stream, uint64_t size)
{
    struct pool *p = &m->pools[small];
    size_t i = lower_bound(p, stream, size, 0);
    if (i >= p->n || p->v[i]->stream != stream)
        return NULL;
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

static struct mblock *alloc_segment(struct cmt_amodel *m, int small, int64_t stream, uint64_t bytes)
{
    if (m->conf.capacity != UINT64_MAX && (m->st.reserved > m->conf.capacity || bytes > m->conf.capacity - m->st.reserved))
        return NULL; /* cudaMalloc: out of memory */
    struct mblock *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->addr = m->next_addr;
    m->next_addr += (bytes + K_ROUND_LARGE - 1) / K_ROUND_LARGE * K_ROUND_LARGE;
    b->size = bytes;
    b->stream = stream;
    b->small = small;
    m->st.reserved += bytes;
    m->st.segments_allocated++;
    m->st.last_segment_size = bytes;
    note_reserved(m);
    return b;
}

/* A whole free segment goes back to the device. */
static void release_block(struct cmt_amodel *m, struct mblock *b)
{
    pool_erase(&m->pools[b->small], b);
    m->st.reserved -= b->size;
    free(b);
}

static int release_available_cached_blocks(struct cmt_amodel *m, int small, int64_t stream, uint64_t size)
{
    uint64_t mss = m->conf.max_split_size;
    if (mss == UINT64_MAX)
        return 0;
    struct pool *p = &m->pools[small];
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

static int release_cached_blocks(struct cmt_amodel *m)
{
    for (int s = 0; s < 2; s++) {
        struct pool *p = &m->pools[s];
        for (size_t i = p->n; i-- > 0;) {
            struct mblock *b = p->v[i];
            if (!b->prev && !b->next)
                release_block(m, b);
        }
    }
    return 1;
}

void cmt_amodel_empty_cache(struct cmt_amodel *m)
{
    release_cached_blocks(m);
}

static int should_split(const struct cmt_amodel *m, const struct mblock *b, uint64_t size)
{
    uint64_t remaining = b->size - size;
    if (b->small)
        return remaining >= K_MIN_BLOCK;
    return size < m->conf.max_split_size && remaining > K_SMALL_SIZE;
}

static int remember(struct cmt_amodel *m, struct mblock *b, uint64_t *id)
{
    if (m->nid == m->capid) {
        size_t nc = m->capid ? m->capid * 2 : 1024;
        struct mblock **g = realloc(m->byid, nc * sizeof *g);
        if (!g)
            return -1;
        m->byid = g;
        m->capid = nc;
    }
    m->byid[m->nid++] = b;
    *id = m->nid;
    return 0;
}

int cmt_amodel_malloc(struct cmt_amodel *m, uint64_t orig, int64_t stream, uint64_t *id)
{
    uint64_t size = round_size(m, orig);
    int small = size <= K_SMALL_SIZE;
    uint64_t asize = allocation_size(size);
    struct mblock *b = get_free_block(m, small, stream, size);
    if (!b && !(b = alloc_segment(m, small, stream, asize)) &&
        !(release_available_cached_blocks(m, small, stream, size) && (b = alloc_segment(m, small, stream, asize))) &&
        !(release_cached_blocks(m) && (b = alloc_segment(m, small, stream, asize))))
        return -1;
    if (should_split(m, b, size)) {
        struct mblock *rest = calloc(1, sizeof *rest);
        if (!rest)
            return -1;
        rest->addr = b->addr + size;
        rest->size = b->size - size;
        rest->stream = b->stream;
        rest->small = b->small;
        rest->prev = b;
        rest->next = b->next;
        if (b->next)
            b->next->prev = rest;
        b->next = rest;
        b->size = size;
        if (pool_insert(&m->pools[rest->small], rest) != 0)
            return -1;
    }
    b->allocated = 1;
    m->st.allocated += b->size;
    if (m->st.allocated > m->st.peak_allocated)
        m->st.peak_allocated = m->st.allocated;
    return remember(m, b, id);
}

void cmt_amodel_free_block(struct cmt_amodel *m, uint64_t id)
{
    if (!id || id > m->nid || !m->byid[id - 1])
        return;
    struct mblock *b = m->byid[id - 1];
    m->byid[id - 1] = NULL;
    m->st.allocated -= b->size;
    b->allocated = 0;
    struct pool *p = &m->pools[b->small];
    /* merge with free neighbours of the same segment */
    struct mblock *n = b->next;
    if (n && !n->allocated) {
        pool_erase(p, n);
        b->size += n->size;
        b->next = n->next;
        if (n->next)
            n->next->prev = b;
        free(n);
    }
    struct mblock *v = b->prev;
    if (v && !v->allocated) {
        pool_erase(p, v);
        v->size += b->size;
        v->next = b->next;
        if (b->next)
            b->next->prev = v;
        free(b);
        b = v;
    }
    pool_insert(p, b);
}

void cmt_amodel_stats(const struct cmt_amodel *m, struct cmt_astats *out)
{
    *out = m->st;
}
