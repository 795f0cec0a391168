/*
 * simcuda_shadow.c: libsimcuda_shadow.so, a test-only library that defines a few driver entry points under their
 * real names, for tests to LD_PRELOAD in front of the simulated driver. It checks that libcuda.so.1
 * binds its own references (the pointers cuGetProcAddress hands out) to itself (-Bsymbolic), never to
 * these. Every function returns 999 (CUDA_ERROR_UNKNOWN) and does nothing else.
 */
int cuMemAlloc_v2(void);
int cuMemAllocAsync_ptsz(void);
int cuInit(void);

int cuMemAlloc_v2(void)
{
    return 999;
}

int cuMemAllocAsync_ptsz(void)
{
    return 999;
}

int cuInit(void)
{
    return 999;
}
