/*
 * other_driver.c: libother_driver.so, another library that happens to define a driver entry point (a
 * vGPU limiter, a stub, a mock). dlsym on its handle must give its function, never ours or libcuda's.
 */
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n)
{
    (void)n;
    *p = 0xdead0000;
    return (CUresult)999;
}
