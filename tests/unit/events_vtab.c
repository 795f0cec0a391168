/*
 * events_vtab.c BLOCKS.db ROWS.db SEED N: the events of a block-form trace through the cmt_events virtual
 * table (schema/cmt_events_vtab.c, as cmt_db_open_read gives it) against the same events as rows.
 *
 * Runs N random queries on both files and compares every row they return: seq bounds of every kind (=,
 * <, <=, >, >=, on seq and on rowid; integers, reals, text, NULL, bounds past either end), both orders,
 * with and without LIMIT, plus a full scan that sums every column. Prints "ok N queries, R rows"; on the
 * first difference prints the query and both answers and exits 1. tests/test_event_blocks.py runs it.
 */
#include "cmt_db.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COLUMN_SUMS "sum(seq % 1000000007), sum(ts_ns % 1000000007), sum(tid % 1000000007), sum(api % 1000000007), sum(op % 1000000007), sum(kind % 1000000007), sum(device % 1000000007), sum(context % 1000000007), sum(address % 1000000007), sum(size % 1000000007), sum(stream % 1000000007), sum(handle % 1000000007), sum(aux % 1000000007), sum(result % 1000000007), sum(duration_ns % 1000000007), sum(stack_id % 1000000007), sum(free_bytes % 1000000007), sum(total_bytes % 1000000007)"

static unsigned long long rng;

static unsigned long long next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* The rows of sql as one string: columns joined by '|', rows by '\n'. NULL on an error (said). */
static char *answer(sqlite3 *db, const char *sql, long *rows)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "FAIL: %s: %s\n", sql, sqlite3_errmsg(db));
        return NULL;
    }
    size_t len = 0, cap = 4096;
    char *out = malloc(cap);
    int rc;
    *rows = 0;
    out[0] = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            const char *v = (const char *)sqlite3_column_text(st, c);
            size_t need = len + (v ? strlen(v) : 4) + 3;
            if (need > cap) {
                while (need > cap)
                    cap *= 2;
                out = realloc(out, cap);
            }
            len += (size_t)sprintf(out + len, "%s%s", c ? "|" : "", v ? v : "NULL");
        }
        if (len + 2 > cap)
            out = realloc(out, cap *= 2);
        out[len++] = '\n';
        out[len] = 0;
        (*rows)++;
    }
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "FAIL: %s: %s\n", sql, sqlite3_errmsg(db));
        free(out);
        out = NULL;
    }
    sqlite3_finalize(st);
    return out;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: events_vtab BLOCKS.db ROWS.db SEED N\n");
        return 2;
    }
    sqlite3 *blocks, *rows;
    char err[512];
    if (cmt_db_open_read(argv[1], &blocks, NULL, err, sizeof err) != 0 ||
        cmt_db_open_read(argv[2], &rows, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "FAIL: %s\n", err);
        return 1;
    }
    rng = strtoull(argv[3], NULL, 10) | 1;
    long n = atol(argv[4]), total = 0;
    long nrows;
    char *maxs = answer(rows, "SELECT max(seq) FROM events", &nrows);
    if (!maxs)
        return 1;
    long long max = atoll(maxs);
    free(maxs);
    static const char *const ops[] = {"=", "<", "<=", ">", ">="};
    for (long q = 0; q <= n; q++) {
        char sql[1024];
        if (q == n) {
            /* every value of every row (modulo a prime: the sums of addresses overflow) */
            snprintf(sql, sizeof sql, "SELECT count(*), count(device), count(stack_id), count(free_bytes), %s"
                                      " FROM events", COLUMN_SUMS);
        } else {
            char where[512] = "";
            int nb = (int)(next_rand() % 3);
            for (int b = 0; b < nb; b++) {
                char val[64];
                long long x = (long long)(next_rand() % (unsigned long long)(max + 40)) - 20;
                switch (next_rand() % 8) {
                case 0:
                    snprintf(val, sizeof val, "%lld.5", x);
                    break;
                case 1:
                    snprintf(val, sizeof val, "'%lld'", x);
                    break;
                case 2:
                    snprintf(val, sizeof val, "NULL");
                    break;
                case 3:
                    snprintf(val, sizeof val, "%s", next_rand() % 2 ? "9223372036854775807" : "-9223372036854775808");
                    break;
                default:
                    snprintf(val, sizeof val, "%lld", x);
                }
                size_t at = strlen(where);
                snprintf(where + at, sizeof where - at, "%s%s %s %s", b ? " AND " : " WHERE ",
                         next_rand() % 4 ? "seq" : "rowid", ops[next_rand() % 5], val);
            }
            char limit[32] = "";
            if (nb < 2 || next_rand() % 4) /* a scan without a LIMIT only between two bounds */
                snprintf(limit, sizeof limit, " LIMIT %d", (int)(next_rand() % 2000));
            snprintf(sql, sizeof sql, "SELECT seq, ts_ns, tid, op, address, size, stack_id, free_bytes FROM events%s"
                                      " ORDER BY seq%s%s", where, next_rand() % 2 ? " DESC" : "", limit);
        }
        long ra, rb;
        char *a = answer(blocks, sql, &ra), *b = answer(rows, sql, &rb);
        if (!a || !b)
            return 1;
        if (strcmp(a, b) != 0) {
            fprintf(stderr, "FAIL: %s\nblocks (%ld rows):\n%.2000s\nrows (%ld rows):\n%.2000s\n", sql, ra, a, rb, b);
            return 1;
        }
        total += ra;
        free(a);
        free(b);
    }
    sqlite3_close(blocks);
    sqlite3_close(rows);
    printf("ok %ld queries, %ld rows\n", n + 1, total);
    return 0;
}
