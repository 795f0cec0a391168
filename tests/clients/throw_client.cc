// throw_client.cc: allocates 1 and 2 MiB, then lets a C++ exception leave main (std::terminate -> abort).
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>
#include <stdexcept>

int main()
{
    CUdevice dev;
    CUcontext ctx;
    CUdeviceptr p;
    cuInit(0);
    cuDeviceGet(&dev, 0);
    cuDevicePrimaryCtxRetain(&ctx, dev);
    cuCtxSetCurrent(ctx);
    cuMemAlloc_v2(&p, 1 << 20);
    cuMemAlloc_v2(&p, 2 << 20);
    throw std::runtime_error("uncaught on purpose");
}
