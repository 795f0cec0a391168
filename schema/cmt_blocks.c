/*
 * cmt_blocks.c: encoding and decoding the events' blocks (format in cmt_blocks.h).
 */
#include "cmt_blocks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t cmt_block_bound(size_t n)
{
    /* header: version, nrows (<= 3 bytes), ncols; per column a flag, a bitmap, 10 bytes a value */
    return 1 + 10 + 10 + CMT_BLOCK_NCOLS * (1 + (n + 7) / 8 + 10 * n);
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static uint64_t zig(uint64_t d) { return (d << 1) ^ (uint64_t)((int64_t)d >> 63); }
static uint64_t unzig(uint64_t v) { return (v >> 1) ^ (uint64_t)-(int64_t)(v & 1); }

size_t cmt_block_encode(const struct cmt_block_row *rows, size_t n, uint8_t *out)
{
    uint8_t *p = out;
    *p++ = CMT_BLOCK_FORMAT;
    p += put_varint(p, n);
    p += put_varint(p, CMT_BLOCK_NCOLS);
    for (int c = 0; c < CMT_BLOCK_NCOLS; c++) {
        size_t nulls = 0;
        for (size_t i = 0; i < n; i++)
            nulls += (rows[i].nulls >> c) & 1;
        *p++ = nulls == 0 ? 0 : nulls == n ? 1 : 2;
        if (nulls == n)
            continue;
        if (nulls) {
            memset(p, 0, (n + 7) / 8);
            for (size_t i = 0; i < n; i++)
                if ((rows[i].nulls >> c) & 1)
                    p[i / 8] |= (uint8_t)(1u << (i % 8));
            p += (n + 7) / 8;
        }
        uint64_t prev = 0;
        for (size_t i = 0; i < n; i++) {
            if ((rows[i].nulls >> c) & 1)
                continue;
            uint64_t v = (uint64_t)rows[i].v[c];
            p += put_varint(p, zig(v - prev));
            prev = v;
        }
    }
    return (size_t)(p - out);
}

int cmt_block_builder_init(struct cmt_block_builder *b)
{
    memset(b, 0, sizeof *b);
    for (int c = 0; c < CMT_BLOCK_NCOLS; c++)
        if (!(b->bits[c] = calloc(CMT_BLOCK_ROWS / 8, 1))) {
            cmt_block_builder_free(b);
            return -1;
        }
    return 0;
}

void cmt_block_builder_free(struct cmt_block_builder *b)
{
    for (int c = 0; c < CMT_BLOCK_NCOLS; c++) {
        free(b->bits[c]);
        free(b->vals[c]);
    }
    memset(b, 0, sizeof *b);
}

void cmt_block_reset(struct cmt_block_builder *b)
{
    for (int c = 0; c < CMT_BLOCK_NCOLS; c++) {
        if (b->nulls[c])
            memset(b->bits[c], 0, (b->n + 7) / 8);
        b->nulls[c] = 0;
        b->len[c] = 0;
        b->prev[c] = 0;
    }
    b->n = 0;
}

const char *cmt_block_column(int c, size_t *len)
{
    const char *p = CMT_BLOCK_COLUMNS;
    for (int i = 0; i < c; i++)
        p = strchr(p, ',') + 1;
    while (*p == ' ')
        p++;
    *len = strcspn(p, ",");
    return p;
}

int cmt_block_add(struct cmt_block_builder *b, const struct cmt_block_row *r)
{
    size_t i = b->n;
    for (int c = 0; c < CMT_BLOCK_NCOLS; c++) {
        if ((r->nulls >> c) & 1) {
            b->bits[c][i / 8] |= (uint8_t)(1u << (i % 8));
            b->nulls[c]++;
            continue;
        }
        if (b->cap[c] - b->len[c] < 10) {
            size_t cap = b->cap[c] ? 4 * b->cap[c] : 4096;
            if (cap > 10 * (size_t)CMT_BLOCK_ROWS)
                cap = 10 * (size_t)CMT_BLOCK_ROWS;
            uint8_t *g = realloc(b->vals[c], cap);
            if (!g)
                return -1;
            b->vals[c] = g;
            b->cap[c] = cap;
        }
        uint64_t v = (uint64_t)r->v[c];
        b->len[c] += put_varint(b->vals[c] + b->len[c], zig(v - b->prev[c]));
        b->prev[c] = v;
    }
    int64_t seq = r->v[CMT_BC_SEQ];
    if (!i || seq < b->min_seq)
        b->min_seq = seq;
    if (!i || seq > b->max_seq)
        b->max_seq = seq;
    b->n = i + 1;
    return 0;
}

size_t cmt_block_finish(const struct cmt_block_builder *b, uint8_t *out)
{
    uint8_t *p = out;
    size_t n = b->n;
    *p++ = CMT_BLOCK_FORMAT;
    p += put_varint(p, n);
    p += put_varint(p, CMT_BLOCK_NCOLS);
    for (int c = 0; c < CMT_BLOCK_NCOLS; c++) {
        size_t nulls = b->nulls[c];
        *p++ = nulls == 0 ? 0 : nulls == n ? 1 : 2;
        if (nulls == n)
            continue;
        if (nulls) {
            memcpy(p, b->bits[c], (n + 7) / 8);
            if (n % 8) /* bits past the last row: none is set, but say so */
                p[n / 8] &= (uint8_t)((1u << (n % 8)) - 1);
            p += (n + 7) / 8;
        }
        memcpy(p, b->vals[c], b->len[c]);
        p += b->len[c];
    }
    return (size_t)(p - out);
}

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*p >= end)
            return -1;
        uint8_t b = *(*p)++;
        if (shift == 63 && (b & 0x7e))
            return -1; /* more than 64 bits */
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static long bad(char *err, size_t errlen, const char *what)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", what);
    return -1;
}

long cmt_block_decode(const uint8_t *data, size_t len, struct cmt_block_row *rows, char *err, size_t errlen)
{
    const uint8_t *p = data, *end = data + len;
    uint64_t n, ncols;
    if (len < 1)
        return bad(err, errlen, "empty event block");
    if (*p != CMT_BLOCK_FORMAT)
        return bad(err, errlen, *p > CMT_BLOCK_FORMAT ? "event block of a newer format" : "event block of an unknown format");
    p++;
    if (get_varint(&p, end, &n) != 0 || n < 1 || n > CMT_BLOCK_ROWS)
        return bad(err, errlen, "event block with an impossible row count");
    if (get_varint(&p, end, &ncols) != 0 || ncols != CMT_BLOCK_NCOLS)
        return bad(err, errlen, "event block with another number of columns");
    memset(rows, 0, n * sizeof *rows);
    for (int c = 0; c < CMT_BLOCK_NCOLS; c++) {
        if (p >= end)
            return bad(err, errlen, "event block cut short");
        uint8_t flag = *p++;
        const uint8_t *bits = NULL;
        if (flag == 1) {
            for (size_t i = 0; i < n; i++)
                rows[i].nulls |= 1u << c;
            continue;
        }
        if (flag == 2) {
            if ((size_t)(end - p) < (n + 7) / 8)
                return bad(err, errlen, "event block cut short");
            bits = p;
            p += (n + 7) / 8;
        } else if (flag != 0) {
            return bad(err, errlen, "event block with an unknown column flag");
        }
        uint64_t prev = 0;
        for (size_t i = 0; i < n; i++) {
            if (bits && (bits[i / 8] >> (i % 8)) & 1) {
                rows[i].nulls |= 1u << c;
                continue;
            }
            uint64_t d;
            if (p < end && *p < 0x80)
                d = *p++; /* most differences take one byte */
            else if (get_varint(&p, end, &d) != 0)
                return bad(err, errlen, "event block cut short or with an over-long value");
            prev += unzig(d);
            rows[i].v[c] = (int64_t)prev;
        }
    }
    if (p != end)
        return bad(err, errlen, "event block with bytes after its last column");
    return (long)n;
}
