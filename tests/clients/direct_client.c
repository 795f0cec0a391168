/*
 * direct_client.c: resolution path (a). Linked with -lcuda; every entry point binds by symbol, so under
 * LD_PRELOAD the interposer's exported wrappers are the ones called.
 */
#include "ops.h"

int main(void)
{
    struct ops o = {
        .init = cuInit,
        .device_get = cuDeviceGet,
        .primary_ctx_retain = cuDevicePrimaryCtxRetain,
        .ctx_set_current = cuCtxSetCurrent,
        .mem_alloc = cuMemAlloc_v2,
        .mem_free = cuMemFree_v2,
        .mem_alloc_pitch = cuMemAllocPitch_v2,
        .mem_alloc_managed = cuMemAllocManaged,
        .mem_alloc_host = cuMemAllocHost_v2,
        .mem_host_alloc = cuMemHostAlloc,
        .mem_free_host = cuMemFreeHost,
        .stream_create = cuStreamCreate,
        .mem_alloc_async = cuMemAllocAsync,
        .mem_free_async = cuMemFreeAsync,
        .stream_synchronize = cuStreamSynchronize,
        .address_reserve = cuMemAddressReserve,
        .address_free = cuMemAddressFree,
        .mem_create = cuMemCreate,
        .mem_release = cuMemRelease,
        .mem_map = cuMemMap,
        .mem_unmap = cuMemUnmap,
        .suffix_async = "",
    };
    run_ops(&o);
    return 0;
}
