/*
 * maps.c: the analyzer's containers: an integer hash map (linear probing, backward-shift deletion), a
 * string map, and the growing array every model uses (cmt_push); see util.h.
 *
 * Runs in the `cumemtrace` command only; allocates, never prints.
 */
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* ---- integer map: linear probing, backward-shift deletion (no tombstones) ---- */

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

#define IMAP_EMPTY UINT64_MAX

static int imap_grow(struct imap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint64_t *keys = malloc(cap * sizeof *keys);
    int64_t *vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -1;
    }
    memset(keys, 0xff, cap * sizeof *keys);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == IMAP_EMPTY)
            continue;
        size_t j = mix64(m->keys[i]) & (cap - 1);
        while (keys[j] != IMAP_EMPTY)
            j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

int imap_put(struct imap *m, uint64_t key, int64_t val)
{
    if (key == IMAP_EMPTY) {
        m->has_max = 1;
        m->max_val = val;
        return 0;
    }
    if ((m->n + 1) * 2 > m->cap && imap_grow(m) != 0)
        return -1;
    size_t j = mix64(key) & (m->cap - 1);
    while (m->keys[j] != IMAP_EMPTY && m->keys[j] != key)
        j = (j + 1) & (m->cap - 1);
    if (m->keys[j] == IMAP_EMPTY)
        m->n++;
    m->keys[j] = key;
    m->vals[j] = val;
    return 0;
}

int64_t *imap_get(const struct imap *m, uint64_t key)
{
    if (key == IMAP_EMPTY)
        return m->has_max ? (int64_t *)&m->max_val : NULL;
    if (!m->cap)
        return NULL;
    size_t j = mix64(key) & (m->cap - 1);
    while (m->keys[j] != IMAP_EMPTY) {
        if (m->keys[j] == key)
            return &m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

int imap_del(struct imap *m, uint64_t key, int64_t *val)
{
    if (key == IMAP_EMPTY) {
        if (!m->has_max)
            return 0;
        if (val)
            *val = m->max_val;
        m->has_max = 0;
        return 1;
    }
    if (!m->cap)
        return 0;
    size_t mask = m->cap - 1, j = mix64(key) & mask;
    while (m->keys[j] != key) {
        if (m->keys[j] == IMAP_EMPTY)
            return 0;
        j = (j + 1) & mask;
    }
    if (val)
        *val = m->vals[j];
    /* Backward shift: move later members of the probe run into the hole so lookups never stop early. */
    size_t hole = j;
    for (size_t k = (j + 1) & mask; m->keys[k] != IMAP_EMPTY; k = (k + 1) & mask) {
        size_t home = mix64(m->keys[k]) & mask;
        int movable = hole <= k ? (home <= hole || home > k) : (home <= hole && home > k);
        if (movable) {
            m->keys[hole] = m->keys[k];
            m->vals[hole] = m->vals[k];
            hole = k;
        }
    }
    m->keys[hole] = IMAP_EMPTY;
    m->n--;
    return 1;
}

void imap_free(struct imap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- string map ---- */

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

int64_t *smap_get(const struct smap *m, const char *key)
{
    if (!m->cap)
        return NULL;
    size_t j = str_hash(key) & (m->cap - 1);
    while (m->keys[j]) {
        if (!strcmp(m->keys[j], key))
            return &m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

int smap_put(struct smap *m, const char *key, int64_t val)
{
    int64_t *old = smap_get(m, key);
    if (old) {
        *old = val;
        return 0;
    }
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        char **keys = calloc(cap, sizeof *keys);
        int64_t *vals = calloc(cap, sizeof *vals);
        if (!keys || !vals) {
            free(keys);
            free(vals);
            return -1;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->keys[i])
                continue;
            size_t j = str_hash(m->keys[i]) & (cap - 1);
            while (keys[j])
                j = (j + 1) & (cap - 1);
            keys[j] = m->keys[i];
            vals[j] = m->vals[i];
        }
        free(m->keys);
        free(m->vals);
        m->keys = keys;
        m->vals = vals;
        m->cap = cap;
    }
    char *copy = strdup(key);
    if (!copy)
        return -1;
    size_t j = str_hash(key) & (m->cap - 1);
    while (m->keys[j])
        j = (j + 1) & (m->cap - 1);
    m->keys[j] = copy;
    m->vals[j] = val;
    m->n++;
    return 0;
}

void smap_free(struct smap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

