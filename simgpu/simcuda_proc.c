/*
 * simcuda_proc.c: cuGetProcAddress (the 4-argument ABI of CUDA 11.3) and cuGetProcAddress_v2 (12.0), by
 * the contract cuda.h documents, over the table generated from procs.tsv.
 *
 * Runs on application threads; reads only constant data (no lock). Works before cuInit, as the real one
 * does: libcudart resolves cuInit itself through it. The function pointers it hands out are this
 * library's own definitions: libcuda.so.1 is linked with -Bsymbolic, so the table's references bind
 * inside the library, never to a same-named symbol of an LD_PRELOADed interposer.
 */
#include "simcuda_driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Index of the first variant of SYMBOL in sim_procs, or -1. */
static int first_variant(const char *symbol)
{
    int lo = 0, hi = sim_proc_count;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (strcmp(sim_procs[mid].base, symbol) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < sim_proc_count && strcmp(sim_procs[lo].base, symbol) == 0 ? lo : -1;
}

static CUresult get_proc_address(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                                 CUdriverProcAddressQueryResult *symbolStatus)
{
    const cuuint64_t known = CU_GET_PROC_ADDRESS_LEGACY_STREAM | CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM;
    if (!symbol || !pfn || (flags & ~known) || cudaVersion > SIM_DRIVER_VERSION)
        return CUDA_ERROR_INVALID_VALUE;
    *pfn = NULL;
    int i = first_variant(symbol);
    if (i < 0 && sim_tracing())
        fprintf(stderr, "simcuda: cuGetProcAddress: %s not found\n", symbol);
    if (i < 0) {
        if (symbolStatus)
            *symbolStatus = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
        return CUDA_SUCCESS;
    }
    /* The newest variant introduced at or before cudaVersion: the ABI the caller was compiled for. */
    int pick = -1;
    for (; i < sim_proc_count && strcmp(sim_procs[i].base, symbol) == 0; i++)
        if (sim_procs[i].version <= cudaVersion)
            pick = i;
    if (pick < 0) {
        if (symbolStatus)
            *symbolStatus = CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT;
        return CUDA_SUCCESS;
    }
    /* Per-thread default stream: the _ptds/_ptsz form where the variant has one (LEGACY_STREAM and the
     * default 0 mean the legacy form: this is the driver's side; the header-side inline wrapper is what
     * turns DEFAULT into PER_THREAD for code built with per-thread default streams). */
    sim_fn fn = sim_procs[pick].fn;
    if ((flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) && sim_procs[pick].fn_per_thread)
        fn = sim_procs[pick].fn_per_thread;
    *pfn = (void *)fn;
    if (symbolStatus)
        *symbolStatus = CU_GET_PROC_ADDRESS_SUCCESS;
    return CUDA_SUCCESS;
}

CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags)
{
    SIM_ENTER();
    return get_proc_address(symbol, pfn, cudaVersion, flags, NULL);
}

CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                             CUdriverProcAddressQueryResult *symbolStatus)
{
    SIM_ENTER();
    return get_proc_address(symbol, pfn, cudaVersion, flags, symbolStatus);
}
