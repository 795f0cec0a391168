/*
 * blocks_codec.c: schema/cmt_blocks.c on stdin and stdout, for tests/test_blocks.py, which checks that
 * schema/cmt_blocks.py encodes the same bytes and refuses the same blocks with the same reasons.
 *
 *   blocks_codec decode   a block in hex a line -> "OK n v v ..." (18 values a row, N for NULL) or "E reason"
 *   blocks_codec encode   a row a line (18 values, N for NULL), an empty line ending a block -> its hex
 *
 * A test tool: reads only what the test writes; never a trace.
 */
#include "cmt_blocks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct cmt_block_row rows[CMT_BLOCK_ROWS];

static int decode_lines(void)
{
    static char line[4 << 20];
    static uint8_t buf[2 << 20];
    while (fgets(line, sizeof line, stdin)) {
        size_t len = strcspn(line, "\n"), n = len / 2;
        for (size_t i = 0; i < n; i++) {
            unsigned x;
            if (sscanf(line + 2 * i, "%2x", &x) != 1)
                return -1;
            buf[i] = (uint8_t)x;
        }
        char err[200];
        long r = cmt_block_decode(buf, n, rows, err, sizeof err);
        if (r < 0) {
            printf("E %s\n", err);
            continue;
        }
        printf("OK %ld", r);
        for (long i = 0; i < r; i++)
            for (int c = 0; c < CMT_BLOCK_NCOLS; c++) {
                if ((rows[i].nulls >> c) & 1)
                    printf(" N");
                else
                    printf(" %lld", (long long)rows[i].v[c]);
            }
        printf("\n");
    }
    return 0;
}

static void put_block(size_t n)
{
    static uint8_t out[1 + 10 + 10 + CMT_BLOCK_NCOLS * (1 + CMT_BLOCK_ROWS / 8 + 10 * CMT_BLOCK_ROWS)];
    size_t len = cmt_block_encode(rows, n, out);
    for (size_t i = 0; i < len; i++)
        printf("%02x", out[i]);
    printf("\n");
}

static int encode_lines(void)
{
    char line[1024];
    size_t n = 0;
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == '\n') {
            if (n)
                put_block(n);
            n = 0;
            continue;
        }
        if (n == CMT_BLOCK_ROWS)
            return -1;
        memset(&rows[n], 0, sizeof rows[n]);
        char *p = line;
        for (int c = 0; c < CMT_BLOCK_NCOLS; c++) {
            char *end;
            while (*p == ' ')
                p++;
            if (*p == 'N') {
                rows[n].nulls |= 1u << c;
                p++;
                continue;
            }
            rows[n].v[c] = strtoll(p, &end, 10);
            if (end == p)
                return -1;
            p = end;
        }
        n++;
    }
    if (n)
        put_block(n);
    return 0;
}

int main(int argc, char **argv)
{
    int rc = argc == 2 && !strcmp(argv[1], "decode") ? decode_lines()
           : argc == 2 && !strcmp(argv[1], "encode") ? encode_lines() : -1;
    if (rc != 0)
        fprintf(stderr, "usage: blocks_codec decode|encode (hex blocks or rows of 18 values on stdin)\n");
    return rc == 0 ? 0 : 2;
}
