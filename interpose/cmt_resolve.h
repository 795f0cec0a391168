/*
 * cmt_resolve.h: finding the real driver and handing the program our wrappers.
 *
 * Three ways a program reaches a driver entry point, all answered here: binding to the exported symbol
 * (our wrappers are exported under the same names, and LD_PRELOAD puts them first), dlsym on a handle
 * (we export dlsym), and cuGetProcAddress / cuGetProcAddress_v2 (we export both, and hand out our own
 * when asked for them). cudaGetDriverEntryPoint in libcudart goes through the last.
 *
 * Runs on application threads. Never records, never touches SQLite.
 */
#ifndef CMT_RESOLVE_H
#define CMT_RESOLVE_H

#include "cmt_cuda.h"

enum cmt_hook_id {
#define CMT_HOOK(name, base, since, per_thread, when, params, args, fill) CMT_HOOK_ID_##name,
#include "hooks.def"
#undef CMT_HOOK
    CMT_HOOK_COUNT
};

/* The real driver's function for each hook; NULL until resolved. */
#define CMT_HOOK(name, base, since, per_thread, when, params, args, fill) extern __typeof__(&name) cmt_real_##name;
#include "hooks.def"
#undef CMT_HOOK

/* Looks up the hook's concrete name in the real libcuda (loading it if the program has not: it called a
 * driver entry point, so it wants one). Returns the function or NULL. */
void *cmt_resolve_real(enum cmt_hook_id id);

/* Driver functions the interposer calls for itself (never hooked). Any may be NULL. */
struct cmt_driver {
    CUresult (*ctx_get_current)(CUcontext *);
    CUresult (*ctx_get_device)(CUdevice *);
    CUresult (*mem_get_info)(size_t *, size_t *);
    CUresult (*mem_get_address_range)(CUdeviceptr *, size_t *, CUdeviceptr);
    CUresult (*device_get_name)(char *, int, CUdevice);
    CUresult (*device_total_mem)(size_t *, CUdevice);
    CUresult (*device_get_uuid)(CUuuid *, CUdevice);
    CUresult (*driver_get_version)(int *);
    CUresult (*device_get_graph_mem_attribute)(CUdevice, CUgraphMem_attribute, void *);
    CUresult (*mem_pool_get_attribute)(CUmemoryPool, CUmemPool_attribute, void *);
    CUresult (*device_get_default_mem_pool)(CUmemoryPool *, CUdevice);
    CUresult (*device_get_mem_pool)(CUmemoryPool *, CUdevice);
};

/* The helper functions above, resolved once the real libcuda is known; NULL before. */
const struct cmt_driver *cmt_driver(void);

/* The real dlsym (for our own lookups: never goes through our override). */
void *cmt_real_dlsym(void *handle, const char *name);

/* For the recorder: the address range of this library's code, so its frames can be left off stacks. */
void cmt_resolve_self_range(uintptr_t *lo, uintptr_t *hi);

#endif
