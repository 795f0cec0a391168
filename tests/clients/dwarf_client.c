/*
 * dwarf_client.c: one allocation from inside a function that is always inlined, for the source-line tests
 * (tests/test_dwarf.py). Built twice: with -g -O2 (dwarf_client) and without debug information
 * (dwarf_client_nodebug). The test finds the lines it expects by the LINE: markers below, so editing this
 * file keeps the test right. Prints the address it got.
 */
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>

static inline __attribute__((always_inline)) CUdeviceptr grab(size_t n)
{
    CUdeviceptr p = 0;
    if (cuMemAlloc(&p, n) != CUDA_SUCCESS) /* LINE:alloc */
        exit(2);
    return p;
}

__attribute__((noinline)) CUdeviceptr dwarf_layer(size_t n)
{
    CUdeviceptr p = grab(n); /* LINE:inlined-call */
    __asm__ volatile("" ::: "memory"); /* keeps the call above from becoming a tail call */
    return p;
}

int main(void)
{
    CUdevice dev;
    CUcontext ctx;
    if (cuInit(0) != CUDA_SUCCESS || cuDeviceGet(&dev, 0) != CUDA_SUCCESS ||
        cuDevicePrimaryCtxRetain(&ctx, dev) != CUDA_SUCCESS || cuCtxSetCurrent(ctx) != CUDA_SUCCESS)
        return 1;
    CUdeviceptr p = dwarf_layer((size_t)3 << 20); /* LINE:main-call */
    printf("%llx\n", (unsigned long long)p);
    cuMemFree(p);
    return 0;
}
