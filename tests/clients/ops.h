/*
 * ops.h: the allocation workload shared by the test clients. Each client obtains the driver's entry
 * points its own way (linking, dlsym, cuGetProcAddress) into a struct ops, then runs the same sequence
 * and prints, on stdout, one line per call the trace must contain:
 *
 *   ok API ADDRESS SIZE       a successful acquire (hex address, decimal bytes as passed to the driver)
 *   release API ADDRESS       a successful release
 *   fail API SIZE RESULT      a failed acquire (the CUresult)
 *
 * The tests parse these lines and compare them with the trace row by row.
 */
#ifndef CMT_TEST_OPS_H
#define CMT_TEST_OPS_H

#define __CUDA_API_VERSION_INTERNAL 1
#include "client.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ops {
    CUresult (*init)(unsigned int);
    CUresult (*device_get)(CUdevice *, int);
    CUresult (*primary_ctx_retain)(CUcontext *, CUdevice);
    CUresult (*ctx_set_current)(CUcontext);
    CUresult (*mem_alloc)(CUdeviceptr *, size_t);               /* cuMemAlloc_v2 */
    CUresult (*mem_free)(CUdeviceptr);                          /* cuMemFree_v2 */
    CUresult (*mem_alloc_pitch)(CUdeviceptr *, size_t *, size_t, size_t, unsigned int);
    CUresult (*mem_alloc_managed)(CUdeviceptr *, size_t, unsigned int);
    CUresult (*mem_alloc_host)(void **, size_t);                /* cuMemAllocHost_v2 */
    CUresult (*mem_host_alloc)(void **, size_t, unsigned int);
    CUresult (*mem_free_host)(void *);
    CUresult (*stream_create)(CUstream *, unsigned int);
    CUresult (*mem_alloc_async)(CUdeviceptr *, size_t, CUstream);
    CUresult (*mem_free_async)(CUdeviceptr, CUstream);
    CUresult (*stream_synchronize)(CUstream);
    CUresult (*address_reserve)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
    CUresult (*address_free)(CUdeviceptr, size_t);
    CUresult (*mem_create)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long);
    CUresult (*mem_release)(CUmemGenericAllocationHandle);
    CUresult (*mem_map)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
    CUresult (*mem_unmap)(CUdeviceptr, size_t);
    const char *suffix_async; /* "" or "_ptsz": which concrete form mem_alloc_async/free_async are */
};


#define MiB ((size_t)1024 * 1024)

/* cuInit, device 0's primary context made current: what every client does first. */
static inline CUcontext client_setup(void)
{
    return client_setup_on(0);
}

/* Distinct, non-inlined functions so that stack tests can find them by name. */
__attribute__((noinline)) static CUdeviceptr client_alloc_weights(struct ops *o, size_t size)
{
    CUdeviceptr p = 0;
    CHECK(o->mem_alloc(&p, size));
    printf("ok cuMemAlloc_v2 0x%llx %zu\n", (unsigned long long)p, size);
    return p;
}

__attribute__((noinline)) static void client_free(struct ops *o, CUdeviceptr p)
{
    CHECK(o->mem_free(p));
    printf("release cuMemFree_v2 0x%llx\n", (unsigned long long)p);
}

__attribute__((noinline)) static void client_try_huge(struct ops *o, size_t size)
{
    CUdeviceptr p = 0;
    CUresult r = o->mem_alloc(&p, size);
    if (r == CUDA_SUCCESS) {
        fprintf(stderr, "huge allocation unexpectedly succeeded\n");
        exit(1);
    }
    printf("fail cuMemAlloc_v2 %zu %d\n", size, (int)r);
}

static inline void run_ops(struct ops *o)
{
    CUdevice dev;
    CUcontext ctx;
    CHECK(o->init(0));
    CHECK(o->device_get(&dev, 0));
    CHECK(o->primary_ctx_retain(&ctx, dev));
    CHECK(o->ctx_set_current(ctx));

    /* Plain device memory, with an address freed and handed out again. */
    CUdeviceptr a = client_alloc_weights(o, 1 * MiB);
    CUdeviceptr b = client_alloc_weights(o, 3 * MiB + 5);
    client_free(o, a);
    CUdeviceptr c = client_alloc_weights(o, 1 * MiB);
    CUdeviceptr d = client_alloc_weights(o, 64 * MiB);
    client_try_huge(o, (size_t)1 << 50);

    /* Pitched, managed, host-pinned. */
    CUdeviceptr pitched = 0;
    size_t pitch = 0;
    CHECK(o->mem_alloc_pitch(&pitched, &pitch, 1000, 100, 4));
    printf("ok cuMemAllocPitch_v2 0x%llx %zu\n", (unsigned long long)pitched, (size_t)1000 * 100);
    printf("pitch %zu\n", pitch);
    CUdeviceptr managed = 0;
    CHECK(o->mem_alloc_managed(&managed, 5 * MiB, CU_MEM_ATTACH_GLOBAL));
    printf("ok cuMemAllocManaged 0x%llx %zu\n", (unsigned long long)managed, (size_t)5 * MiB);
    memset((void *)(uintptr_t)managed, 1, 4096); /* managed memory is host-accessible */
    void *host = NULL, *host2 = NULL;
    CHECK(o->mem_alloc_host(&host, 2 * MiB));
    printf("ok cuMemAllocHost_v2 %p %zu\n", host, (size_t)2 * MiB);
    CHECK(o->mem_host_alloc(&host2, 4096, 0));
    printf("ok cuMemHostAlloc %p %zu\n", host2, (size_t)4096);
    memset(host, 2, 4096);
    CHECK(o->mem_free_host(host));
    printf("release cuMemFreeHost %p\n", host);

    /* Stream-ordered. */
    CUstream s;
    CHECK(o->stream_create(&s, 0));
    CUdeviceptr as = 0;
    CHECK(o->mem_alloc_async(&as, 8 * MiB, s));
    printf("ok cuMemAllocAsync%s 0x%llx %zu\n", o->suffix_async, (unsigned long long)as, (size_t)8 * MiB);
    CHECK(o->mem_free_async(as, s));
    printf("release cuMemFreeAsync%s 0x%llx\n", o->suffix_async, (unsigned long long)as);
    CHECK(o->stream_synchronize(s));

    /* Virtual memory management, as PyTorch's expandable segments use it. */
    CUdeviceptr va = 0;
    CHECK(o->address_reserve(&va, 64 * MiB, 0, 0, 0));
    printf("ok cuMemAddressReserve 0x%llx %zu\n", (unsigned long long)va, (size_t)64 * MiB);
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = dev;
    CUmemGenericAllocationHandle h = 0;
    CHECK(o->mem_create(&h, 20 * MiB, &prop, 0));
    printf("handle cuMemCreate 0x%llx %zu\n", (unsigned long long)h, (size_t)20 * MiB);
    CHECK(o->mem_map(va, 20 * MiB, 0, h, 0));
    printf("ok cuMemMap 0x%llx %zu\n", (unsigned long long)va, (size_t)20 * MiB);
    CHECK(o->mem_unmap(va, 20 * MiB));
    printf("release cuMemUnmap 0x%llx\n", (unsigned long long)va);
    CHECK(o->mem_release(h));
    printf("release-handle cuMemRelease 0x%llx\n", (unsigned long long)h);
    CHECK(o->address_free(va, 64 * MiB));
    printf("release cuMemAddressFree 0x%llx\n", (unsigned long long)va);

    /* b, c, d, pitched, managed and host2 stay live: leaks at exit, on purpose. */
    (void)b;
    (void)c;
    (void)d;
}

#endif
