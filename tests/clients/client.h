/*
 * client.h: what every test client starts with: CHECK (a failed driver call ends the client with the
 * call, its file and line on stderr) and client_setup_on (cuInit, a device's primary context made current).
 * ops.h adds the shared allocation workload on top.
 */
#ifndef CMT_TEST_CLIENT_H
#define CMT_TEST_CLIENT_H

#include <cuda.h> /* (a client that calls the old ABIs defines __CUDA_API_VERSION_INTERNAL first) */
#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                                                     \
    do {                                                                                                \
        CUresult r_ = (call);                                                                           \
        if (r_ != CUDA_SUCCESS) {                                                                       \
            fprintf(stderr, "%s:%d: %s failed: %d\n", __FILE__, __LINE__, #call, (int)r_);              \
            exit(1);                                                                                    \
        }                                                                                               \
    } while (0)

/* cuInit, then device `ordinal`'s primary context made current. */
static inline CUcontext client_setup_on(int ordinal)
{
    CUdevice dev;
    CUcontext ctx;
    CHECK(cuInit(0));
    CHECK(cuDeviceGet(&dev, ordinal));
    CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CHECK(cuCtxSetCurrent(ctx));
    return ctx;
}

#endif
