/*
 * block_format.c: what a block format for the events table would give (issue 8's decision), measured on a
 * real trace: `block_format TRACE.db OUT.db`.
 *
 * Reads TRACE's events (as the writer wrote them, one row each), then encodes them the way a block format
 * would: 65,536 events a block, column by column, each column's values as the zigzag varint of their
 * difference from the previous row's (NULLs a bit each, a byte for a column all or never NULL in the
 * block), one SQLite row per block (event_blocks: first_seq, count, data). It writes OUT, then reads every
 * block back, decodes it and compares each value with the original rows: a mismatch is an error.
 * Prints: events, bytes per event of TRACE (rows and partial index) and of OUT, the encode and insert rate,
 * the decode rate. A measurement, not a format of the project: nothing reads OUT.
 */
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NCOL 17
#define BLOCK 65536

static const char *const cols = "seq, ts_ns, tid, api, op, kind, device, context, address, size, stream, handle, aux,"
                                " result, duration_ns, stack_id, free_bytes";

struct ev {
    int64_t v[NCOL];
    uint32_t null; /* bit c: column c is NULL */
};

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
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

static uint64_t get_varint(const uint8_t **p)
{
    uint64_t v = 0;
    int shift = 0;
    while (**p & 0x80) {
        v |= (uint64_t)(**p & 0x7f) << shift;
        shift += 7;
        (*p)++;
    }
    v |= (uint64_t)**p << shift;
    (*p)++;
    return v;
}

static uint64_t zig(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }
static int64_t unzig(uint64_t v) { return (int64_t)(v >> 1) ^ -(int64_t)(v & 1); }

/* One block: per column a NULL flag byte (0 never, 1 always, 2 a bitmap follows), then the deltas. */
static size_t encode(const struct ev *e, size_t n, uint8_t *out)
{
    uint8_t *p = out;
    for (int c = 0; c < NCOL; c++) {
        size_t nulls = 0;
        for (size_t i = 0; i < n; i++)
            nulls += (e[i].null >> c) & 1;
        *p++ = nulls == 0 ? 0 : nulls == n ? 1 : 2;
        if (nulls == n)
            continue;
        if (nulls) {
            memset(p, 0, (n + 7) / 8);
            for (size_t i = 0; i < n; i++)
                if ((e[i].null >> c) & 1)
                    p[i / 8] |= (uint8_t)(1 << (i % 8));
            p += (n + 7) / 8;
        }
        int64_t prev = 0;
        for (size_t i = 0; i < n; i++) {
            if ((e[i].null >> c) & 1)
                continue;
            p += put_varint(p, zig((int64_t)((uint64_t)e[i].v[c] - (uint64_t)prev)));
            prev = e[i].v[c];
        }
    }
    return (size_t)(p - out);
}

static void decode(const uint8_t *p, size_t n, struct ev *e)
{
    memset(e, 0, n * sizeof *e);
    for (int c = 0; c < NCOL; c++) {
        uint8_t flag = *p++;
        const uint8_t *bits = NULL;
        if (flag == 1) {
            for (size_t i = 0; i < n; i++)
                e[i].null |= 1u << c;
            continue;
        }
        if (flag == 2) {
            bits = p;
            p += (n + 7) / 8;
        }
        int64_t prev = 0;
        for (size_t i = 0; i < n; i++) {
            if (bits && (bits[i / 8] >> (i % 8)) & 1) {
                e[i].null |= 1u << c;
                continue;
            }
            prev = (int64_t)((uint64_t)prev + (uint64_t)unzig(get_varint(&p)));
            e[i].v[c] = prev;
        }
    }
}

static long long file_bytes(sqlite3 *db)
{
    sqlite3_stmt *st;
    long long n = 0;
    if (sqlite3_prepare_v2(db, "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: block_format TRACE.db OUT.db\n");
        return 2;
    }
    sqlite3 *in, *out;
    if (sqlite3_open_v2(argv[1], &in, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "block_format: %s: %s\n", argv[1], sqlite3_errmsg(in));
        return 1;
    }
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT %s FROM events ORDER BY seq", cols);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(in, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "block_format: %s: %s\n", argv[1], sqlite3_errmsg(in));
        return 1;
    }
    size_t n = 0, cap = 1 << 20;
    struct ev *e = malloc(cap * sizeof *e);
    while (e && sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap && !(e = realloc(e, (cap *= 2) * sizeof *e)))
            break;
        e[n].null = 0;
        for (int c = 0; c < NCOL; c++) {
            if (sqlite3_column_type(st, c) == SQLITE_NULL)
                e[n].null |= 1u << c;
            e[n].v[c] = sqlite3_column_int64(st, c);
        }
        n++;
    }
    sqlite3_finalize(st);
    if (!e || !n) {
        fprintf(stderr, "block_format: no events read\n");
        return 1;
    }
    long long in_bytes = file_bytes(in);
    sqlite3_close(in);

    remove(argv[2]);
    if (sqlite3_open(argv[2], &out) != SQLITE_OK ||
        sqlite3_exec(out, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                          "CREATE TABLE event_blocks (first_seq INTEGER PRIMARY KEY, count INTEGER NOT NULL,"
                          " data BLOB NOT NULL); BEGIN",
                     NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "block_format: %s: %s\n", argv[2], sqlite3_errmsg(out));
        return 1;
    }
    uint8_t *buf = malloc((size_t)BLOCK * NCOL * 11 + NCOL * (BLOCK / 8 + 1));
    sqlite3_prepare_v2(out, "INSERT INTO event_blocks VALUES (?, ?, ?)", -1, &st, NULL);
    double t0 = now();
    for (size_t i = 0; i < n; i += BLOCK) {
        size_t k = n - i < BLOCK ? n - i : BLOCK;
        size_t len = encode(e + i, k, buf);
        sqlite3_bind_int64(st, 1, e[i].v[0]);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)k);
        sqlite3_bind_blob(st, 3, buf, (int)len, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) {
            fprintf(stderr, "block_format: %s\n", sqlite3_errmsg(out));
            return 1;
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    sqlite3_exec(out, "COMMIT", NULL, NULL, NULL);
    double t1 = now();
    long long out_bytes = file_bytes(out);

    /* read back, decode, compare */
    struct ev *d = malloc((size_t)BLOCK * sizeof *d);
    size_t at = 0, bad = 0;
    double t2 = now();
    sqlite3_prepare_v2(out, "SELECT count, data FROM event_blocks ORDER BY first_seq", -1, &st, NULL);
    while (sqlite3_step(st) == SQLITE_ROW) {
        size_t k = (size_t)sqlite3_column_int64(st, 0);
        decode(sqlite3_column_blob(st, 1), k, d);
        for (size_t j = 0; j < k; j++, at++)
            if (d[j].null != e[at].null || memcmp(d[j].v, e[at].v, sizeof d[j].v) != 0) {
                /* NULL columns hold 0 in both */
                bad++;
            }
    }
    sqlite3_finalize(st);
    double t3 = now();
    sqlite3_close(out);
    printf("events %zu; rows: %.1f bytes/event (table and partial index, as the writer left it); blocks: %.1f "
           "bytes/event; encode and insert %.1f M events/s; read, decode and compare %.1f M events/s; "
           "mismatches %zu\n",
           n, (double)in_bytes / (double)n, (double)out_bytes / (double)n, (double)n / (t1 - t0) / 1e6,
           (double)n / (t3 - t2) / 1e6, bad + (n - at));
    free(buf);
    free(d);
    free(e);
    return bad || at != n;
}
