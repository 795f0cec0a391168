/*
 * simcuda_internal.h: what the generated simcuda_procs.c and the hand-written driver sources share, and
 * nothing more: the cuGetProcAddress table, the sorted list of concrete entry-point names, and the hook
 * every stub calls.
 *
 * It must not include cuda.h: the generated file defines each concrete entry point as `int NAME(void)`,
 * which NVIDIA's prototypes would reject. Everything declared here is hidden (not exported from
 * libcuda.so.1).
 */
#ifndef SIMCUDA_INTERNAL_H
#define SIMCUDA_INTERNAL_H

#include <stddef.h>

#pragma GCC visibility push(hidden)

typedef void (*sim_fn)(void);

/* One variant of a driver entry point, as cuGetProcAddress sees it (one line of procs.tsv). */
struct sim_proc {
    const char *base;       /* name cuGetProcAddress is asked for: "cuMemAlloc" */
    int version;            /* CUDA version that introduced this variant: 3020 */
    sim_fn fn;              /* concrete entry point: cuMemAlloc_v2 */
    sim_fn fn_per_thread;   /* its _ptds/_ptsz form, or NULL */
};

/* Sorted by base (strcmp order), then by version ascending. */
extern const struct sim_proc sim_procs[];
extern const int sim_proc_count;

/* Every concrete entry point name, sorted in strcmp order; the index is the key of call counts. */
extern const char *const sim_concrete_names[];
extern const int sim_concrete_count;

/* Called by each generated stub with its index in sim_concrete_names: counts the call, applies an
 * injected fault if one matches, and otherwise returns CUDA_ERROR_NOT_SUPPORTED. */
int sim_stub(int index);

#pragma GCC visibility pop

#endif
