/*
 * gen_trace.c: writes a synthetic trace of N events (default 10 million) for benchmarking the analyzer.
 *
 * usage: gen_trace PATH [EVENTS] [SEED]
 *
 * Goes through schema/cmt_db.c exactly as the interposer's writer does (cmt_db_create, the same INSERT
 * statements, events in blocks of schema/cmt_blocks.h, cmt_db_finalize), in one transaction. The mix imitates a PyTorch training run: a few hundred
 * stacks 8 to 24 frames deep in libtorch_cuda / libc10_cuda / libcublas / libnccl; mostly small and medium
 * blocks, some large ones; a working set that rises and falls in "iterations"; stream-ordered and
 * host-pinned allocations; a few out-of-memory failures. Not a test: a benchmark input.
 */
#include "cmt_blocks.h"
#include "cmt_db.h"
#include "cmt_events.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#define NSTACKS 400
#define NMODULES 8

static const char *const modules[NMODULES] = {
    "/usr/lib/x86_64-linux-gnu/libcuda.so.1",   "/opt/venv/lib/python3.11/site-packages/torch/lib/libcudart.so.12",
    "/opt/venv/lib/python3.11/site-packages/torch/lib/libc10_cuda.so",
    "/opt/venv/lib/python3.11/site-packages/torch/lib/libtorch_cuda.so",
    "/opt/venv/lib/python3.11/site-packages/nvidia/cublas/lib/libcublas.so.12",
    "/opt/venv/lib/python3.11/site-packages/nvidia/nccl/lib/libnccl.so.2", "/usr/bin/python3.11",
    "/opt/venv/lib/python3.11/site-packages/torch/lib/libtorch_python.so"};

struct live {
    int64_t addr, size;
    int stack, kind;
};

/* One block of events (schema/cmt_blocks.h), as the writer writes them. */
static int put_block(sqlite3_stmt *ev, const struct cmt_block_row *rows, size_t n, uint8_t *buf)
{
    size_t len = cmt_block_encode(rows, n, buf);
    sqlite3_bind_int64(ev, 1, rows[0].v[CMT_BC_SEQ]);
    sqlite3_bind_int64(ev, 2, rows[n - 1].v[CMT_BC_SEQ]);
    sqlite3_bind_int64(ev, 3, (sqlite3_int64)n);
    sqlite3_bind_blob(ev, 4, buf, (int)len, SQLITE_STATIC);
    int rc = sqlite3_step(ev) == SQLITE_DONE ? 0 : -1;
    sqlite3_reset(ev);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: gen_trace PATH [EVENTS] [SEED]\n");
        return 2;
    }
    const char *path = argv[1];
    long long nevents = argc > 2 ? atoll(argv[2]) : 10000000LL;
    if (argc > 3)
        rng ^= (uint64_t)atoll(argv[3]) * 0x2545F4914F6CDD1DULL;
    char err[512];
    sqlite3 *db;
    unlink(path);
    if (cmt_db_create(path, &db, err, sizeof err) != 0) {
        fprintf(stderr, "gen_trace: %s\n", err);
        return 1;
    }
    sqlite3_stmt *ev, *st, *fr, *mo;
    cmt_db_exec(db, "PRAGMA synchronous=OFF; BEGIN", err, sizeof err);
    sqlite3_prepare_v2(db, CMT_SQL_INSERT_BLOCK, -1, &ev, NULL);
    struct cmt_block_row *rows = malloc((size_t)CMT_BLOCK_ROWS * sizeof *rows);
    uint8_t *buf = malloc(cmt_block_bound(CMT_BLOCK_ROWS));
    size_t nrows = 0;
    sqlite3_prepare_v2(db, CMT_SQL_INSERT_STACK, -1, &st, NULL);
    sqlite3_prepare_v2(db, CMT_SQL_INSERT_FRAME, -1, &fr, NULL);
    sqlite3_prepare_v2(db, CMT_SQL_INSERT_MODULE, -1, &mo, NULL);
    const long long start = 1000000000000LL;
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO process(pid, ppid, host, exe, argv, start_unix_ns, start_ns, finalized, stack_depth)"
             " VALUES (31337, 1, 'benchhost', '/usr/bin/python3.11', '[\"python\",\"train.py\"]', 1700000000000000000,"
             " %lld, 0, 128);"
             "INSERT INTO devices VALUES (0, 'NVIDIA H100 80GB HBM3', 85899345920, 'GPU-bench', 13000);",
             start);
    cmt_db_exec(db, sql, err, sizeof err);
    for (int m = 0; m < NMODULES; m++) {
        sqlite3_bind_int64(mo, 1, m + 1);
        sqlite3_bind_text(mo, 2, modules[m], -1, SQLITE_STATIC);
        sqlite3_bind_null(mo, 3);
        sqlite3_bind_int64(mo, 4, 0x7f0000000000LL + (long long)m * 0x10000000LL);
        sqlite3_bind_int64(mo, 5, 0x8000000);
        sqlite3_step(mo);
        sqlite3_reset(mo);
    }
    /* Frames: a pool of 3000 distinct ips with names; stacks draw from it. */
    int frame_id = 0;
    for (int s = 1; s <= NSTACKS; s++) {
        int depth = 8 + (int)(next() % 17);
        for (int d = 0; d < depth; d++) {
            int m = d == 0 ? 0 : d == 1 ? 1 : d == 2 ? 2 + (int)(next() % 4) : d < depth - 3 ? 3 + (int)(next() % 5) : 6;
            char fn[128];
            long long ip = 0x7f0000000000LL + (long long)m * 0x10000000LL + 0x1000 + (long long)(next() % 0x100000);
            if (d < 2)
                snprintf(fn, sizeof fn, d ? "cudaMalloc" : "cuMemAlloc_v2");
            else if (m == 6)
                snprintf(fn, sizeof fn, "_PyEval_EvalFrameDefault");
            else
                snprintf(fn, sizeof fn, "_ZN2at6native%dkernel%dENS_6TensorE", (int)(next() % 90) + 10, (int)(next() % 400));
            frame_id++;
            sqlite3_bind_int64(fr, 1, frame_id);
            sqlite3_bind_int64(fr, 2, ip);
            sqlite3_bind_int64(fr, 3, m + 1);
            sqlite3_bind_text(fr, 4, fn, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int64(fr, 5, 0x40);
            sqlite3_step(fr);
            sqlite3_reset(fr);
            sqlite3_bind_int64(st, 1, s);
            sqlite3_bind_int64(st, 2, d);
            sqlite3_bind_int64(st, 3, frame_id);
            sqlite3_step(st);
            sqlite3_reset(st);
        }
    }
    size_t cap = 1 << 20, nlive = 0;
    struct live *live = malloc(cap * sizeof *live);
    int64_t next_addr = 0x7e0000000000LL, live_bytes = 0, budget = 70LL << 30;
    long long ts = start, seq = 0;
    while (seq < nevents) {
        ts += 200 + (long long)(next() % 2000);
        seq++;
        /* the working set breathes: grow for a while, then shrink (one "iteration") */
        long long phase = (seq / 50000) % 2;
        int do_alloc = nlive == 0 || (int)(next() % 100) < (phase ? 42 : 58);
        int64_t size = 0, addr = 0, result = 0;
        int stack = 1 + (int)(next() % NSTACKS), kind = CMT_KIND_DEVICE, api = CMT_API_cuMemAlloc_v2, op = CMT_OP_ALLOC;
        if (do_alloc) {
            uint64_t r = next() % 1000;
            size = r < 700 ? 512 + (int64_t)(next() % (2 << 20)) : r < 990 ? (2 << 20) + (int64_t)(next() % (64 << 20))
                                                                          : (256LL << 20) + (int64_t)(next() % (1LL << 30));
            if (r % 10 == 1) {
                kind = CMT_KIND_STREAM_ORDERED;
                api = CMT_API_cuMemAllocAsync;
            } else if (r % 97 == 3) {
                kind = CMT_KIND_HOST_PINNED;
                api = CMT_API_cuMemAllocHost_v2;
            }
            if (kind != CMT_KIND_HOST_PINNED && live_bytes + size > budget) {
                result = 2; /* out of memory */
            } else {
                addr = next_addr;
                next_addr += (size + 0x1ff) & ~0x1ffLL;
                if (nlive == cap)
                    live = realloc(live, (cap *= 2) * sizeof *live);
                live[nlive++] = (struct live){addr, size, stack, kind};
                if (kind != CMT_KIND_HOST_PINNED)
                    live_bytes += size;
            }
        } else {
            size_t i = (size_t)(next() % nlive);
            struct live l = live[i];
            live[i] = live[--nlive];
            addr = l.addr;
            stack = l.stack;
            kind = l.kind;
            op = CMT_OP_FREE;
            api = kind == CMT_KIND_STREAM_ORDERED ? CMT_API_cuMemFreeAsync
                  : kind == CMT_KIND_HOST_PINNED  ? CMT_API_cuMemFreeHost
                                                  : CMT_API_cuMemFree_v2;
            if (kind != CMT_KIND_HOST_PINNED)
                live_bytes -= l.size;
        }
        struct cmt_block_row *r = &rows[nrows++];
        r->nulls = 0;
        int64_t v[CMT_BLOCK_NCOLS] = {seq, ts, 31337, api, op, kind, 0, 0x5555, addr, size, 0x77, 0, 0, result,
                                      800 + (long long)(next() % 5000), stack, budget - live_bytes, 85899345920LL};
        memcpy(r->v, v, sizeof v);
        if (result)
            r->nulls |= 1u << CMT_BC_ADDRESS;
        if (op != CMT_OP_ALLOC)
            r->nulls |= 1u << CMT_BC_SIZE;
        if (kind != CMT_KIND_STREAM_ORDERED)
            r->nulls |= 1u << CMT_BC_STREAM;
        r->nulls |= 1u << CMT_BC_HANDLE | 1u << CMT_BC_AUX;
        if (!result)
            r->nulls |= 1u << CMT_BC_FREE | 1u << CMT_BC_TOTAL;
        if ((nrows == CMT_BLOCK_ROWS || seq == nevents) && put_block(ev, rows, nrows, buf) != 0) {
            fprintf(stderr, "gen_trace: insert: %s\n", sqlite3_errmsg(db));
            return 1;
        }
        if (nrows == CMT_BLOCK_ROWS)
            nrows = 0;
    }
    snprintf(sql, sizeof sql, "UPDATE process SET events_written = %lld; COMMIT;", seq);
    sqlite3_finalize(ev);
    sqlite3_finalize(st);
    sqlite3_finalize(fr);
    sqlite3_finalize(mo);
    if (cmt_db_exec(db, sql, err, sizeof err) != 0 || cmt_db_finalize(db, ts + 1000, 1, err, sizeof err) != 0) {
        fprintf(stderr, "gen_trace: %s\n", err);
        return 1;
    }
    sqlite3_close(db);
    free(live);
    free(rows);
    free(buf);
    fprintf(stderr, "gen_trace: %s: %lld events\n", path, seq);
    return 0;
}
