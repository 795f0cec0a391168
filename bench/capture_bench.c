/*
 * capture_bench.c DEPTH PAIRS [malloc]: the cost of one recorded call. Descends DEPTH frames (so that the
 * unwinder has DEPTH frames to walk), then makes PAIRS allocate/free pairs of 4 KiB and prints
 * "ns_per_pair N". With "malloc" it does the same with malloc/free, for the heaptrack baseline.
 * Timed in-process with CLOCK_MONOTONIC around the loop only (startup and the exit flush are not in it).
 */
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static CUresult (*mem_alloc)(CUdeviceptr *, size_t);
static CUresult (*mem_free)(CUdeviceptr);
static long pairs;
static int use_malloc;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

__attribute__((noinline)) static void work(void)
{
    double t0 = now();
    if (use_malloc) {
        for (long i = 0; i < pairs; i++) {
            void *volatile p = malloc(4096);
            free(p);
        }
    } else {
        for (long i = 0; i < pairs; i++) {
            CUdeviceptr p;
            if (mem_alloc(&p, 4096) != CUDA_SUCCESS || mem_free(p) != CUDA_SUCCESS)
                exit(1);
        }
    }
    printf("ns_per_pair %.1f\n", (now() - t0) / pairs);
}

__attribute__((noinline)) static int descend(int depth)
{
    if (depth <= 1) {
        work();
        return 0;
    }
    return descend(depth - 1) + 1; /* not a tail call: every level keeps its frame */
}

int main(int argc, char **argv)
{
    int depth = argc > 1 ? atoi(argv[1]) : 64;
    pairs = argc > 2 ? atol(argv[2]) : 200000;
    use_malloc = argc > 3 && !strcmp(argv[3], "malloc");
    if (!use_malloc) {
        void *h = dlopen("libcuda.so.1", RTLD_NOW);
        CUresult (*init)(unsigned) = h ? dlsym(h, "cuInit") : NULL;
        CUresult (*dev_get)(CUdevice *, int) = h ? dlsym(h, "cuDeviceGet") : NULL;
        CUresult (*retain)(CUcontext *, CUdevice) = h ? dlsym(h, "cuDevicePrimaryCtxRetain") : NULL;
        CUresult (*set)(CUcontext) = h ? dlsym(h, "cuCtxSetCurrent") : NULL;
        mem_alloc = h ? dlsym(h, "cuMemAlloc_v2") : NULL;
        mem_free = h ? dlsym(h, "cuMemFree_v2") : NULL;
        CUdevice d;
        CUcontext c;
        if (!mem_alloc || !mem_free || init(0) || dev_get(&d, 0) || retain(&c, d) || set(c))
            return 1;
    }
    /* the frames below main: keep the requested depth counting from main */
    return descend(depth > 4 ? depth - 4 : 1) < 0;
}
