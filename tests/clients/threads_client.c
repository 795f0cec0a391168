/*
 * threads_client.c THREADS ROUNDS: every thread allocates and frees ROUNDS times, sizes (t + 1) MiB and
 * (r % 7 + 1) * 4096 bytes, all at once. Prints "total ALLOCS FREES BYTES" for the test to check.
 */
#include "ops.h"

#include <pthread.h>

static int rounds;
static CUcontext ctx;

static void *worker(void *arg)
{
    long t = (long)arg;
    CHECK(cuCtxSetCurrent(ctx));
    for (int r = 0; r < rounds; r++) {
        CUdeviceptr a = 0, b = 0;
        CHECK(cuMemAlloc_v2(&a, (size_t)(t + 1) * MiB));
        CHECK(cuMemAlloc_v2(&b, (size_t)(r % 7 + 1) * 4096));
        CHECK(cuMemFree_v2(a));
        CHECK(cuMemFree_v2(b));
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 8;
    rounds = argc > 2 ? atoi(argv[2]) : 1000;
    CUdevice dev;
    CHECK(cuInit(0));
    CHECK(cuDeviceGet(&dev, 0));
    CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
    pthread_t tid[256];
    for (long t = 0; t < threads; t++)
        pthread_create(&tid[t], NULL, worker, (void *)t);
    unsigned long long bytes = 0;
    for (long t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        for (int r = 0; r < rounds; r++)
            bytes += (unsigned long long)(t + 1) * MiB + (unsigned long long)(r % 7 + 1) * 4096;
    }
    printf("total %d %d %llu\n", threads * rounds * 2, threads * rounds * 2, bytes);
    return 0;
}
