/*
 * simcuda_driver.h: the simulated driver's shared state and the helpers its sources share
 * (simcuda.c: init, devices, contexts, streams, errors, fault injection, probes; simcuda_mem.c: the memory
 * model; simcuda_proc.c: cuGetProcAddress; simcuda_exec.c, simcuda_graph.c, simcuda_capture.c: execution,
 * graphs and stream capture).
 *
 * Runs on whatever application thread calls the driver. One mutex (sim.lock) guards all of the state below
 * except the per-thread context stack, which is thread-local, and the call counters, which are atomic.
 * Nothing here is exported from libcuda.so.1; nothing here ever prints on stdout.
 */
#ifndef SIMCUDA_DRIVER_H
#define SIMCUDA_DRIVER_H

/* Declares every concrete entry point under its real ELF name (cuMemAlloc with the 32-bit ABI next to
 * cuMemAlloc_v2, cuMemAllocAsync next to cuMemAllocAsync_ptsz), so the compiler checks each definition
 * against NVIDIA's prototype. Must precede the include. */
#define __CUDA_API_VERSION_INTERNAL
#include <cuda.h>

#include <pthread.h>
#include <stdint.h>

#include "simcuda_internal.h"

#pragma GCC visibility push(hidden)

#define SIM_DRIVER_VERSION 13000
#define SIM_PAGE ((uint64_t)2 << 20)        /* accounting unit and VMM granularity: 2 MiB */
#define SIM_MAX_DEVICES 8
/* Address layout, fixed so runs are reproducible and chosen below the window where Linux places mmap()
 * (its randomised base lies within 1 TiB under the stack), so real host memory (pinned, managed) and
 * simulated device addresses do not meet. Each high region is also reserved PROT_NONE in the process
 * when it is free (best effort: the addresses stay the same when it is not). */
#define SIM_HIGH_BASE 0x7a0000000000ull     /* device d: [SIM_HIGH_BASE + d * SIM_HIGH_SPAN, +SIM_HIGH_SPAN) */
#define SIM_HIGH_SPAN 0x8000000000ull       /* 512 GiB of VA per device */
#define SIM_MAX_CAPACITY (SIM_HIGH_SPAN / 2) /* room for fragmentation: first-fit VA never runs out first */
#define SIM_VMM_BASE 0x790000000000ull      /* cuMemAddressReserve: one shared region of 1 TiB */
#define SIM_VMM_SPAN 0x10000000000ull
#define SIM_LOW_BASE 0x40000000ull          /* v1 (32-bit CUdeviceptr_v1) allocations: [1 GiB, 4 GiB) */
#define SIM_LOW_LIMIT 0x100000000ull

/* SIM_ENTER, the first statement of every implemented entry point: counts the call of the concrete
 * entry point (its name, __func__, looked up once per entry point by sim_index rather than at every call:
 * the lookup was a tenth of a cheap call's cost) and returns the injected CUresult if a SIMCUDA_FAIL rule
 * matches this call (sim_enter_index: CUDA_SUCCESS otherwise). */
int sim_index(const char *name);        /* the entry point's index in the call counts; aborts if unknown */
CUresult sim_enter_index(int index);
#define SIM_ENTER() do { static int enter_ix_ = -1; \
                         int ix_ = __atomic_load_n(&enter_ix_, __ATOMIC_RELAXED); \
                         if (ix_ < 0) __atomic_store_n(&enter_ix_, ix_ = sim_index(__func__), __ATOMIC_RELAXED); \
                         CUresult enter_rc_ = sim_enter_index(ix_); \
                         if (enter_rc_ != CUDA_SUCCESS) return enter_rc_; } while (0)

/* A first-fit allocator of address ranges inside [base, limit): freed ranges are handed out again, as a
 * real driver's are, so the interposer's pairing of frees with allocations is tested against reuse. */
struct sim_range {
    uint64_t start, len;
};
struct sim_va {
    uint64_t base, limit;
    struct sim_range *used; /* sorted by start, non-overlapping */
    int n, cap;
};
int sim_va_alloc(struct sim_va *va, uint64_t len, uint64_t align, uint64_t *out);
void sim_va_free(struct sim_va *va, uint64_t start);

struct CUctx_st {
    int dev;
    int primary;            /* the device's primary context (lives in struct sim_device) */
    int live;               /* primary: retained; created: not destroyed */
    unsigned int flags;
    struct CUctx_st *next;  /* created contexts only */
};

struct CUstream_st {
    CUcontext ctx;
    unsigned int flags;
    int priority;
    struct sim_capture *capture; /* the capture it takes part in (simcuda_capture.c), or NULL */
    struct CUstream_st *next;
};

struct sim_alloc;

struct CUmemPoolHandle_st {
    int dev;
    int is_default;
    int destroyed;          /* destroyed while allocations were outstanding: freed with the last one */
    uint64_t release_threshold;
    uint64_t reserved, reserved_high, used, used_high;
    int reuse[3];           /* REUSE_FOLLOW_EVENT_DEPENDENCIES, _ALLOW_OPPORTUNISTIC, _ALLOW_INTERNAL_DEP. */
    struct sim_alloc **chunks; /* every chunk the pool holds, in use or free */
    int nchunks, cap;
    struct CUmemPoolHandle_st *next;
};

/* A real GPU's figures: what cuDeviceGetName, cuDeviceTotalMem and the attributes libraries size their
 * work by report. See simcuda.c for the table and where its numbers come from. */
struct sim_preset {
    const char *key;            /* --sim-gpu / $SIMCUDA_GPU name: "H100" */
    const char *name;           /* cuDeviceGetName */
    uint64_t total_bytes;       /* cuDeviceTotalMem, as the real board reports it */
    uint64_t context_bytes;     /* device memory a CUDA context takes on it (estimate, see simcuda.c) */
    int sms, cc_major, cc_minor;
    int pci_device_id;          /* the PCI device ID (vendor 0x10DE) */
    int clock_khz, mem_clock_khz, bus_width, l2_bytes;
    int smem_per_sm, smem_optin, threads_per_sm, blocks_per_sm;
};

struct sim_device {
    uint64_t capacity_pages, used_pages;
    uint64_t total_bytes;       /* what cuDeviceTotalMem and cuMemGetInfo report as the total */
    const struct sim_preset *preset;
    uint64_t context_pages;     /* charged once the first context on the device is made live */
    int context_charged;
    struct sim_va va;
    struct CUctx_st primary;
    int primary_refs;
    struct CUmemPoolHandle_st *default_pool, *current_pool;
};

struct sim_state {
    pthread_mutex_t lock;
    int initialized;
    int ndev;
    struct sim_device dev[SIM_MAX_DEVICES];
    struct sim_va low;      /* v1 allocations of every device */
    struct sim_va vmm;      /* cuMemAddressReserve */
    struct CUctx_st *contexts;
    struct CUstream_st *streams;
    struct CUmemPoolHandle_st *pools;
};
extern struct sim_state sim;

void sim_lock(void);
void sim_unlock(void);

/* Lock held for all below. */
CUresult sim_check_init(void);
/* The calling thread's current context; INVALID_CONTEXT if none or it was destroyed. */
CUresult sim_current_ctx(CUcontext *out);
int sim_ctx_valid(CUcontext ctx);
/* Resolves a stream handle (0, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD or a created stream) to its
 * context. */
CUresult sim_stream_ctx(CUstream s, CUcontext *out); /* OUT may be NULL */

/* The stream a _ptsz/_ptds entry point means: its argument, or the per-thread default stream for 0. */
static inline CUstream sim_per_thread(CUstream s)
{
    return s ? s : CU_STREAM_PER_THREAD;
}

/* Memory model hooks used by the context and stream code (simcuda_mem.c). */
void sim_mem_init_device(int dev);
void sim_mem_ctx_teardown(CUcontext ctx);     /* frees what the context owned */
void sim_mem_sync_device(int dev);            /* a synchronize: trims pools to their release threshold */

/* Modules (simcuda_exec.c): a module made from IMAGE (a fat binary, cubin or PTX) in the current
 * context; the export table's loaders use it too. Takes the lock. */
CUresult sim_module_load(CUmodule *module, const void *image);
/* Lock held. Module memory for a global variable: addresses in the device's range, not charged. */
CUresult sim_mem_global_alloc(int dev, uint64_t size, uint64_t *addr);
void sim_mem_global_free(uint64_t addr);
/* Lock held. Context-local storage (simcuda_export.c) of a dying context: its destructors run, with the
 * lock released around each. */
void sim_cls_context_destroyed(CUcontext ctx);
/* $SIMCUDA_TRACE is set: name every call and lookup on stderr. */
int sim_tracing(void);
/* Lock held. Charges the device's context memory at its first live context (simcuda.c). */
CUresult sim_charge_context(int dev);
/* Lock held. Charges or gives back device capacity in pages (simcuda_mem.c): OUT_OF_MEMORY if it does not
 * fit. */
CUresult sim_charge_pages(int dev, uint64_t pages);
void sim_uncharge_pages(int dev, uint64_t pages);
/* "24GiB", "512MiB", "4096" into bytes; 0 if not understood (simcuda.c). */
uint64_t sim_parse_size(const char *s);
/* The device's streaming multiprocessor count (its preset's). */
int sim_device_sm_count(int dev);

/* Stream capture (simcuda_capture.c). Lock held, S already validated (sim_stream_ctx). */
/* Work of TYPE queued into S: *captured = 1 if it became a node of S's capture (the caller then does not
 * run it); an error if S's capture is invalidated or the legacy stream S breaks a capture. */
CUresult sim_capture_op(CUstream s, CUgraphNodeType type, int *captured);
#define SIM_NO_NODE ((CUgraphNodeType)-1)  /* captured without a node (event records and waits) */
/* A call S's capture forbids (synchronizing or querying it): invalidates the capture, UNSUPPORTED. */
CUresult sim_capture_refuse(CUstream s);
/* A potentially unsafe call (cuMemAlloc, cuMemFree, cuCtxSynchronize) on the calling thread: UNSUPPORTED
 * where a capture forbids it (then invalidated), else CUDA_SUCCESS. */
CUresult sim_capture_unsafe(void);
/* The id of S's capture (0: none); S joins capture ID (an event recorded in it was waited for). */
uint64_t sim_capture_id(CUstream s);
void sim_capture_join(CUstream s, uint64_t id);
/* S is being destroyed: a capture it began is invalidated and dropped, with its graph. */
void sim_capture_stream_destroyed(CUstream s);
/* Graphs (simcuda_graph.c), lock held: a new empty graph, a node of TYPE that does nothing at launch, and
 * the destruction of a graph never handed out. */
CUresult sim_graph_new(CUgraph *out);
CUresult sim_graph_add_op(CUgraph g, CUgraphNodeType type);
void sim_graph_free(CUgraph g);

#pragma GCC visibility pop

#endif
