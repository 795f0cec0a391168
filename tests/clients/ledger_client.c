/*
 * ledger_client.c: a program whose device memory the ledger must account for exactly (tests/test_ledger.py),
 * run with CUMEMTRACE_SAMPLE_MS=250 on a simulated H100 (its context's memory known) while a simulated
 * other process arrives (SIMCUDA_OTHER_PROCESS=1GiB@1000).
 *
 * Its own memory: 64 MiB, then a 32 MiB workspace allocated inside the cuBLAS stand-in, 6 MiB
 * stream-ordered; 300 ms later 2 MiB (sampled: no other process yet); 1200 ms later 2 MiB more (sampled:
 * the other process has arrived). After each sampled call it prints "NAME FREE_BYTES" as cuMemGetInfo
 * says, and at the end the default pool's reserved and used bytes.
 */
#define __CUDA_API_VERSION_INTERNAL 1
#include "client.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MiB (1ull << 20)

int ledger_cublas_workspace(CUdeviceptr *p, size_t bytes);

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void say_free(const char *name)
{
    size_t f, t;
    CHECK(cuMemGetInfo_v2(&f, &t));
    printf("%s %llu\n", name, (unsigned long long)f);
}

int main(void)
{
    client_setup_on(0);
    CUdevice dev;
    CHECK(cuDeviceGet(&dev, 0));
    size_t f, total;
    CHECK(cuMemGetInfo_v2(&f, &total));
    printf("total %llu\nbefore %llu\n", (unsigned long long)total, (unsigned long long)f);
    CUdeviceptr a, ws, s, b, c;
    CHECK(cuMemAlloc_v2(&a, 64 * MiB));
    say_free("first");
    if (ledger_cublas_workspace(&ws, 32 * MiB) != 0)
        return 1;
    CHECK(cuMemAllocAsync(&s, 6 * MiB, 0));
    nap(300);
    CHECK(cuMemAlloc_v2(&b, 2 * MiB));
    say_free("second");
    nap(1200); /* the other process arrives at 1000 ms: wide margins, for slow (sanitized, loaded) runs */
    CHECK(cuMemAlloc_v2(&c, 2 * MiB));
    say_free("third");
    CUmemoryPool pool;
    cuuint64_t reserved = 0, used = 0;
    CHECK(cuDeviceGetDefaultMemPool(&pool, dev));
    CHECK(cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &reserved));
    CHECK(cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used));
    printf("pool_reserved %llu\npool_used %llu\n", (unsigned long long)reserved, (unsigned long long)used);
    CHECK(cuMemFreeAsync(s, 0));
    CHECK(cuStreamSynchronize(0));
    CHECK(cuMemFree_v2(c));
    CHECK(cuMemFree_v2(b));
    CHECK(cuMemFree_v2(ws));
    CHECK(cuMemFree_v2(a));
    return 0;
}
