/*
 * cmt_blocks.h: the events table's block form (schema version 5, schema/cumemtrace_v5.sql).
 *
 * A trace written by cumemtrace 5 keeps its events in events_blocks, up to CMT_BLOCK_ROWS events a row,
 * instead of one row per event: 13-19 bytes an event on disk instead of 60-62 (bench/RESULTS.md). Readers
 * see the same `events` table as before: cmt_db_open_read makes a TEMP `events` over the blocks, with the
 * same columns, and the same views (allocations, failures, ...), before anything reads it.
 * schema/cmt_blocks.py does the same for Python's sqlite3.
 *
 * One block (the data column), format 1:
 *
 *   block   := version:byte(=1) nrows:varint ncols:varint(=18) column{ncols}
 *   column  := flag:byte  0: no row is NULL; 1: every row is NULL (nothing follows);
 *                         2: a bitmap of ceil(nrows/8) bytes follows, bit i (LSB first) set: row i is NULL
 *              value{number of non-NULL rows}
 *   value   := varint(zigzag(v - prev)), prev the previous non-NULL value of the column in this block
 *              (0 before the first), differences taken modulo 2^64
 *   varint  := LEB128: 7 bits a byte, low bits first, high bit set on every byte but the last; <= 10 bytes
 *   zigzag  := (d << 1) ^ (d >> 63) on the signed 64-bit difference
 *
 * Columns in the order of CMT_BLOCK_COLUMNS (the events table's order). Rows are in the order the writer
 * drained them, which is seq order but for a thread that took its seq before another and published after
 * it; events_blocks.first_seq and last_seq are the block's lowest and highest seq. No seq is in two rows.
 */
#ifndef CMT_BLOCKS_H
#define CMT_BLOCKS_H

#include <stddef.h>
#include <stdint.h>

#define CMT_BLOCK_FORMAT 1
#define CMT_BLOCK_NCOLS 18
#define CMT_BLOCK_ROWS 65536 /* the most rows a block holds */
#define CMT_BLOCK_COLUMNS                                                                              \
    "seq, ts_ns, tid, api, op, kind, device, context, address, size, stream, handle, aux, result,"      \
    " duration_ns, stack_id, free_bytes, total_bytes"

/* Column indexes, in CMT_BLOCK_COLUMNS order. */
enum {
    CMT_BC_SEQ,
    CMT_BC_TS,
    CMT_BC_TID,
    CMT_BC_API,
    CMT_BC_OP,
    CMT_BC_KIND,
    CMT_BC_DEVICE,
    CMT_BC_CONTEXT,
    CMT_BC_ADDRESS,
    CMT_BC_SIZE,
    CMT_BC_STREAM,
    CMT_BC_HANDLE,
    CMT_BC_AUX,
    CMT_BC_RESULT,
    CMT_BC_DURATION,
    CMT_BC_STACK,
    CMT_BC_FREE,
    CMT_BC_TOTAL,
};

/* The name of column c (in CMT_BLOCK_COLUMNS order), *len bytes long (not NUL-terminated). */
const char *cmt_block_column(int c, size_t *len);

/* One event as a block holds it: a value per column, NULLs a bit each (bit c: column c is NULL). */
struct cmt_block_row {
    int64_t v[CMT_BLOCK_NCOLS];
    uint32_t nulls;
};

/* A block being filled, row by row: each column's values encoded as they come, so writing the block (at
 * each commit, while it fills) is a copy, never a second encoding. */
struct cmt_block_builder {
    size_t n;                           /* rows so far, <= CMT_BLOCK_ROWS */
    int64_t min_seq, max_seq;
    uint64_t prev[CMT_BLOCK_NCOLS];     /* last non-NULL value of each column */
    size_t nulls[CMT_BLOCK_NCOLS];
    uint8_t *bits[CMT_BLOCK_NCOLS];     /* NULL bitmaps, CMT_BLOCK_ROWS / 8 bytes each */
    uint8_t *vals[CMT_BLOCK_NCOLS];     /* encoded values, 10 * CMT_BLOCK_ROWS bytes each at most */
    size_t len[CMT_BLOCK_NCOLS], cap[CMT_BLOCK_NCOLS];
};

/* 0, or -1 when out of memory. */
int cmt_block_builder_init(struct cmt_block_builder *b);
void cmt_block_builder_free(struct cmt_block_builder *b);
/* Appends a row (n < CMT_BLOCK_ROWS); -1 when out of memory. */
int cmt_block_add(struct cmt_block_builder *b, const struct cmt_block_row *r);
/* Writes the block of the rows so far into out (cmt_block_bound(b->n) bytes); returns its length. */
size_t cmt_block_finish(const struct cmt_block_builder *b, uint8_t *out);
/* Empties it for the next block. */
void cmt_block_reset(struct cmt_block_builder *b);

/* The most bytes cmt_block_encode writes for n rows. */
size_t cmt_block_bound(size_t n);

/* Encodes rows[0..n) (1 <= n <= CMT_BLOCK_ROWS) into out (cmt_block_bound(n) bytes);
 * returns the bytes written. */
size_t cmt_block_encode(const struct cmt_block_row *rows, size_t n, uint8_t *out);

/* Decodes a block of len bytes into rows (room for CMT_BLOCK_ROWS). Returns the number of rows, or -1
 * with a one-line reason in err for anything but a well-formed format-1 block: a newer format, a count
 * out of range, a value or bitmap running past the end, an over-long varint, bytes left over. Never
 * reads outside data[0..len). */
long cmt_block_decode(const uint8_t *data, size_t len, struct cmt_block_row *rows, char *err, size_t errlen);

#endif
