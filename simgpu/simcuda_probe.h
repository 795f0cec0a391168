/*
 * simcuda_probe.h: the test-only probe API of the simulated driver (libcuda.so.1 in build-STAR/simgpu).
 *
 * Tests call these (directly, through dlsym, or through ctypes) to see the driver's side of the story:
 * how much device memory it considers used, how many allocations are live, how often an entry point was
 * called. They take the driver's lock, work before cuInit (answering 0), never fail, and print nothing.
 * A real libcuda has none of them, so nothing outside tests/ may depend on them.
 */
#ifndef SIMCUDA_PROBE_H
#define SIMCUDA_PROBE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of device memory in use on DEVICE, in whole 2 MiB pages: allocations, managed memory, memory
 * reserved by stream-ordered pools (used or not) and VMM physical handles. 0 for an unknown device. */
size_t simcuda_used_bytes(int device);
/* SIMCUDA_OTHER_PROCESS's bytes on DEVICE once it has arrived (part of simcuda_used_bytes), and this
 * process's own share of the used bytes (simcuda_used_bytes less the other process's). */
size_t simcuda_other_process_bytes(int device);
size_t simcuda_process_bytes(int device);

/* The device's capacity in bytes ($SIMCUDA_MEMORY rounded down to 2 MiB pages). */
size_t simcuda_capacity(int device);

/* Live device-side allocations on DEVICE: cuMemAlloc* (v1 and v2), pitch, managed, in-use pool
 * allocations, and VMM physical handles not yet returned. Host-pinned memory is not counted. */
int simcuda_live_allocations(int device);

/* Calls so far of the concrete entry point NAME ("cuMemAlloc_v2", "cuMemAllocAsync_ptsz"), counted
 * whether they succeeded or not (injected faults and stubs included); 0 for unknown names. */
unsigned long simcuda_call_count(const char *concrete_name);

/* Bytes reserved by stream-ordered pools on DEVICE (part of simcuda_used_bytes). */
size_t simcuda_pool_reserved_bytes(int device);

#ifdef __cplusplus
}
#endif

#endif
