/*
 * cmt_events.h: the vocabulary of a trace, shared by the interposer (which writes it) and the analyzer
 * (which reads it). Every number here is stored on disk: append new entries, never renumber.
 *
 * Three lists, each an X-macro so that C enums, the `apis`/`ops`/`kinds` lookup tables written into every
 * trace, and the analyzer's name tables come from one place.
 */
#ifndef CMT_EVENTS_H
#define CMT_EVENTS_H

/* What an event does to memory. An "acquire" op is always odd and its release is op + 1; the schema's
 * views and the analyzer pair them by that rule. */
#define CMT_OP_LIST(X)                                                                                  \
    X(1, ALLOC, "alloc")           /* device, managed, pitched, host-pinned, stream-ordered memory */  \
    X(2, FREE, "free")                                                                                  \
    X(3, RESERVE, "reserve")       /* cuMemAddressReserve: virtual addresses, no memory */             \
    X(4, UNRESERVE, "unreserve")                                                                        \
    X(5, CREATE, "create")         /* cuMemCreate: physical memory behind a handle */                  \
    X(6, RELEASE, "release")                                                                            \
    X(7, MAP, "map")               /* cuMemMap: a handle mapped at a reserved address */               \
    X(8, UNMAP, "unmap")                                                                                \
    X(9, IPC_OPEN, "ipc_open")     /* another process's allocation mapped here */                      \
    X(10, IPC_CLOSE, "ipc_close")                                                                       \
    X(11, TRIM, "trim")            /* cuMemPoolTrimTo: size = minBytesToKeep */                        \
    X(12, SAMPLE, "sample")        /* a reading of the driver's counters, nothing acquired: kind graph */\
                                   /* (size = graph memory reserved, aux = used, on the event's device) */\
    X(13, RETAIN, "retain")        /* one more reference to a live handle; released by cuMemRelease */ \
                                   /* (op 6: the one exception to "release = op + 1") */               \
    X(14, EXPORT, "export")        /* cuMemExportToShareableHandle: nothing acquired */

/* Which kind of memory an event concerns. */
#define CMT_KIND_LIST(X)                                                                                \
    X(1, DEVICE, "device")                 /* cuMemAlloc, cuMemAllocPitch */                            \
    X(2, MANAGED, "managed")               /* cuMemAllocManaged */                                      \
    X(3, HOST_PINNED, "host_pinned")       /* cuMemAllocHost, cuMemHostAlloc */                         \
    X(4, STREAM_ORDERED, "stream_ordered") /* cuMemAllocAsync, cuMemAllocFromPoolAsync */               \
    X(5, VA_RESERVATION, "va_reservation") /* cuMemAddressReserve: not memory */                        \
    X(6, VMM_PHYSICAL, "vmm_physical")     /* cuMemCreate: device memory behind a handle */             \
    X(7, VMM_MAPPING, "vmm_mapping")       /* cuMemMap: a view of a handle, not more memory */          \
    X(8, IPC, "ipc")                       /* cuIpcOpenMemHandle: another process's memory */           \
    X(9, VMM_IMPORTED, "vmm_imported")     /* cuMemImportFromShareableHandle: a handle to memory that   \
                                              another process (usually) created: not counted here */    \
    X(10, ARRAY, "array")                  /* CUDA arrays: device memory (size: see hooks.def) */        \
    X(11, HOST_REGISTERED, "host_registered") /* cuMemHostRegister: the program's host memory, pinned */ \
    X(12, GRAPH, "graph")                  /* graph memory nodes: addresses whose memory the graph's   \
                                              pool maps at launch (not counted: samples say the pool) */

/* Every recorded driver entry point, by its concrete ELF name. Columns: id, concrete name, the base name
 * cuGetProcAddress is asked for, op, kind. Frees name the kind they usually release; the analyzer takes
 * the real kind from the allocation they pair with. */
#define CMT_API_LIST(X)                                                                                 \
    X(1, cuMemAlloc, cuMemAlloc, ALLOC, DEVICE)                                                         \
    X(2, cuMemAlloc_v2, cuMemAlloc, ALLOC, DEVICE)                                                      \
    X(3, cuMemAllocPitch, cuMemAllocPitch, ALLOC, DEVICE)                                               \
    X(4, cuMemAllocPitch_v2, cuMemAllocPitch, ALLOC, DEVICE)                                            \
    X(5, cuMemFree, cuMemFree, FREE, DEVICE)                                                            \
    X(6, cuMemFree_v2, cuMemFree, FREE, DEVICE)                                                         \
    X(7, cuMemAllocManaged, cuMemAllocManaged, ALLOC, MANAGED)                                          \
    X(8, cuMemAllocHost, cuMemAllocHost, ALLOC, HOST_PINNED)                                            \
    X(9, cuMemAllocHost_v2, cuMemAllocHost, ALLOC, HOST_PINNED)                                         \
    X(10, cuMemHostAlloc, cuMemHostAlloc, ALLOC, HOST_PINNED)                                           \
    X(11, cuMemFreeHost, cuMemFreeHost, FREE, HOST_PINNED)                                              \
    X(12, cuMemAllocAsync, cuMemAllocAsync, ALLOC, STREAM_ORDERED)                                      \
    X(13, cuMemAllocAsync_ptsz, cuMemAllocAsync, ALLOC, STREAM_ORDERED)                                 \
    X(14, cuMemAllocFromPoolAsync, cuMemAllocFromPoolAsync, ALLOC, STREAM_ORDERED)                      \
    X(15, cuMemAllocFromPoolAsync_ptsz, cuMemAllocFromPoolAsync, ALLOC, STREAM_ORDERED)                 \
    X(16, cuMemFreeAsync, cuMemFreeAsync, FREE, STREAM_ORDERED)                                         \
    X(17, cuMemFreeAsync_ptsz, cuMemFreeAsync, FREE, STREAM_ORDERED)                                    \
    X(18, cuMemPoolTrimTo, cuMemPoolTrimTo, TRIM, STREAM_ORDERED)                                       \
    X(19, cuMemAddressReserve, cuMemAddressReserve, RESERVE, VA_RESERVATION)                            \
    X(20, cuMemAddressFree, cuMemAddressFree, UNRESERVE, VA_RESERVATION)                                \
    X(21, cuMemCreate, cuMemCreate, CREATE, VMM_PHYSICAL)                                               \
    X(22, cuMemRelease, cuMemRelease, RELEASE, VMM_PHYSICAL)                                            \
    X(23, cuMemMap, cuMemMap, MAP, VMM_MAPPING)                                                         \
    X(24, cuMemUnmap, cuMemUnmap, UNMAP, VMM_MAPPING)                                                   \
    X(25, cuIpcOpenMemHandle, cuIpcOpenMemHandle, IPC_OPEN, IPC)                                        \
    X(26, cuIpcOpenMemHandle_v2, cuIpcOpenMemHandle, IPC_OPEN, IPC)                                     \
    X(27, cuIpcCloseMemHandle, cuIpcCloseMemHandle, IPC_CLOSE, IPC)                                    \
    X(28, cuMemExportToShareableHandle, cuMemExportToShareableHandle, EXPORT, VMM_PHYSICAL)             \
    X(29, cuMemImportFromShareableHandle, cuMemImportFromShareableHandle, CREATE, VMM_IMPORTED)         \
    X(30, cuMemRetainAllocationHandle, cuMemRetainAllocationHandle, RETAIN, VMM_PHYSICAL)               \
    X(31, cuGraphAddMemAllocNode, cuGraphAddMemAllocNode, ALLOC, GRAPH)                                 \
    X(32, cuGraphAddMemFreeNode, cuGraphAddMemFreeNode, FREE, GRAPH)                                    \
    X(33, cuGraphInstantiateWithFlags, cuGraphInstantiateWithFlags, SAMPLE, GRAPH)                      \
    X(34, cuGraphLaunch, cuGraphLaunch, SAMPLE, GRAPH)                                                  \
    X(35, cuGraphLaunch_ptsz, cuGraphLaunch, SAMPLE, GRAPH)                                             \
    X(36, cuArrayCreate, cuArrayCreate, ALLOC, ARRAY)                                                   \
    X(37, cuArrayCreate_v2, cuArrayCreate, ALLOC, ARRAY)                                                \
    X(38, cuArray3DCreate, cuArray3DCreate, ALLOC, ARRAY)                                               \
    X(39, cuArray3DCreate_v2, cuArray3DCreate, ALLOC, ARRAY)                                            \
    X(40, cuMipmappedArrayCreate, cuMipmappedArrayCreate, ALLOC, ARRAY)                                 \
    X(41, cuArrayDestroy, cuArrayDestroy, FREE, ARRAY)                                                  \
    X(42, cuMipmappedArrayDestroy, cuMipmappedArrayDestroy, FREE, ARRAY)                                \
    X(43, cuMemHostRegister, cuMemHostRegister, ALLOC, HOST_REGISTERED)                                 \
    X(44, cuMemHostRegister_v2, cuMemHostRegister, ALLOC, HOST_REGISTERED)                              \
    X(45, cuMemHostUnregister, cuMemHostUnregister, FREE, HOST_REGISTERED)                              \
    /* Samples taken by the interposer itself on a recorded call (CUMEMTRACE_SAMPLE_MS), not the program's \
     * calls: device memory free/total (free_bytes, total_bytes) with, where NVML answers, the bytes    \
     * other processes hold on the device (size) and this process holds (aux); and a stream-ordered     \
     * pool's reserved (size) and used (aux) bytes (handle = the pool). */                              \
    X(46, cuMemGetInfo_v2, cuMemGetInfo, SAMPLE, DEVICE)                                                \
    X(47, cuMemPoolGetAttribute, cuMemPoolGetAttribute, SAMPLE, STREAM_ORDERED)

/* Each list's ids run 1, 2, 3... in order (checked below), so *_COUNT_PLUS_ONE sizes a table indexed by id. */
enum cmt_op {
#define X(id, name, str) CMT_OP_##name = id,
    CMT_OP_LIST(X)
#undef X
    CMT_OP_COUNT_PLUS_ONE
};

enum cmt_kind {
#define X(id, name, str) CMT_KIND_##name = id,
    CMT_KIND_LIST(X)
#undef X
    CMT_KIND_COUNT_PLUS_ONE
};

enum cmt_api {
#define X(id, name, base, op, kind) CMT_API_##name = id,
    CMT_API_LIST(X)
#undef X
    CMT_API_COUNT_PLUS_ONE
};

#define X(id, name, ...) +1
_Static_assert(0 CMT_OP_LIST(X) == CMT_OP_COUNT_PLUS_ONE - 1, "op ids must run 1..N in order");
_Static_assert(0 CMT_KIND_LIST(X) == CMT_KIND_COUNT_PLUS_ONE - 1, "kind ids must run 1..N in order");
_Static_assert(0 CMT_API_LIST(X) == CMT_API_COUNT_PLUS_ONE - 1, "api ids must run 1..N in order");
#undef X

/* True for the kinds that are device memory of their own, counted in a device's footprint: reservations
 * (addresses only), mappings (views of a handle), IPC opens (another process's memory), managed and
 * host-pinned memory are not; CUDA arrays are. */
#define CMT_KIND_IS_PHYSICAL(k)                                                                \
    ((k) == CMT_KIND_DEVICE || (k) == CMT_KIND_STREAM_ORDERED || (k) == CMT_KIND_VMM_PHYSICAL || \
     (k) == CMT_KIND_ARRAY)

/* True for ops that hand out something (memory, addresses, a handle, a mapping, a reference). */
#define CMT_OP_IS_ACQUIRE(op) (((op) & 1) && (op) != CMT_OP_TRIM)
/* True for ops that give something back (the releases paired with acquires). */
#define CMT_OP_IS_RELEASE(op) ((op) >= CMT_OP_FREE && (op) <= CMT_OP_IPC_CLOSE && !((op) & 1))

#endif
