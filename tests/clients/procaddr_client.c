/*
 * procaddr_client.c: resolution path (c). Only cuGetProcAddress_v2 comes from dlsym; it is used to look
 * up cuGetProcAddress itself (at 12000: the v2 ABI), and the pointer that returns looks up everything
 * else, with the cudaVersion and flags libcudart would pass. Argument "v1" also exercises the v1
 * cuGetProcAddress (11030) and the 32-bit v1 cuMemAlloc (cudaVersion 2000).
 */
#include "ops.h"

#include <dlfcn.h>

typedef CUresult (*gpa_v2_t)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);
typedef CUresult (*gpa_v1_t)(const char *, void **, int, cuuint64_t);
static gpa_v2_t gpa;

static void *lookup(const char *name, int version, cuuint64_t flags)
{
    void *p = NULL;
    CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    if (gpa(name, &p, version, flags, &st) != CUDA_SUCCESS || !p || st != CU_GET_PROC_ADDRESS_SUCCESS) {
        fprintf(stderr, "cuGetProcAddress(%s, %d, %llu) failed (status %d)\n", name, version,
                (unsigned long long)flags, (int)st);
        exit(1);
    }
    return p;
}

int main(int argc, char **argv)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return 1;
    gpa_v2_t first = (gpa_v2_t)dlsym(h, "cuGetProcAddress_v2");
    if (!first)
        return 1;
    gpa = first;
    gpa = (gpa_v2_t)lookup("cuGetProcAddress", 12000, 0);
    struct ops o = {
        .init = lookup("cuInit", 2000, 0),
        .device_get = lookup("cuDeviceGet", 2000, 0),
        .primary_ctx_retain = lookup("cuDevicePrimaryCtxRetain", 7000, 0),
        .ctx_set_current = lookup("cuCtxSetCurrent", 4000, 0),
        .mem_alloc = lookup("cuMemAlloc", 3020, 0),
        .mem_free = lookup("cuMemFree", 3020, 0),
        .mem_alloc_pitch = lookup("cuMemAllocPitch", 3020, 0),
        .mem_alloc_managed = lookup("cuMemAllocManaged", 6000, 0),
        .mem_alloc_host = lookup("cuMemAllocHost", 3020, 0),
        .mem_host_alloc = lookup("cuMemHostAlloc", 2020, 0),
        .mem_free_host = lookup("cuMemFreeHost", 2000, 0),
        .stream_create = lookup("cuStreamCreate", 2000, 0),
        .mem_alloc_async = lookup("cuMemAllocAsync", 11020, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM),
        .mem_free_async = lookup("cuMemFreeAsync", 11020, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM),
        .stream_synchronize = lookup("cuStreamSynchronize", 2000, 0),
        .address_reserve = lookup("cuMemAddressReserve", 10020, 0),
        .address_free = lookup("cuMemAddressFree", 10020, 0),
        .mem_create = lookup("cuMemCreate", 10020, 0),
        .mem_release = lookup("cuMemRelease", 10020, 0),
        .mem_map = lookup("cuMemMap", 10020, 0),
        .mem_unmap = lookup("cuMemUnmap", 10020, 0),
        .suffix_async = "_ptsz",
    };
    run_ops(&o);
    if (argc > 1 && !strcmp(argv[1], "v1")) {
        /* The v1 resolver, found through the v2 one, and the 32-bit v1 allocation ABI through it. */
        gpa_v1_t v1 = (gpa_v1_t)lookup("cuGetProcAddress", 11030, 0);
        CUresult (*alloc_v1)(unsigned int *, unsigned int) = NULL;
        CUresult (*free_v1)(unsigned int) = NULL;
        if (v1("cuMemAlloc", (void **)&alloc_v1, 2000, 0) != CUDA_SUCCESS || !alloc_v1 ||
            v1("cuMemFree", (void **)&free_v1, 2000, 0) != CUDA_SUCCESS || !free_v1)
            return 1;
        unsigned int p32 = 0;
        CHECK(alloc_v1(&p32, 3 * 1024 * 1024));
        printf("ok cuMemAlloc 0x%x %u\n", p32, 3 * 1024 * 1024);
        CHECK(free_v1(p32));
        printf("release cuMemFree 0x%x\n", p32);
    }
    return 0;
}
