/*
 * simcuda.c: the simulated CUDA driver's front half: cuInit and configuration from the environment,
 * devices and their attributes, contexts (the per-thread current-context stack, primary contexts),
 * streams, error names, call counting and fault injection ($SIMCUDA_FAIL), and the call-count probe.
 * The memory model lives in simcuda_mem.c, cuGetProcAddress in simcuda_proc.c.
 *
 * Runs on the application's threads, under sim.lock except for the thread-local context stack and the
 * atomic call counters. Never prints on stdout; reports a malformed environment once on stderr.
 *
 * Environment (read once, at the first call or at cuInit):
 *   SIMCUDA_DEVICES  number of devices, 1 to SIM_MAX_DEVICES (default 1)
 *   SIMCUDA_GPU      a real GPU to present (see presets[] below: H100, H200, A100-40GB, A100-80GB, L4,
 *                    RTX4090, RTX3090): its name, total memory, SM count, compute capability and the
 *                    attributes libraries query, and the memory its CUDA context takes. Unset: an
 *                    H100-like device of SIMCUDA_MEMORY bytes whose context takes nothing.
 *   SIMCUDA_MEMORY   capacity of each device: "24GiB" (default), "512MiB", "1G", "4096" (bytes); binary
 *                    units (K, M, G, T with optional "i" and "B"); rounded down to whole 2 MiB pages.
 *                    With SIMCUDA_GPU it overrides the preset's total.
 *   SIMCUDA_OTHER_PROCESS  "SIZE[@MS]": another process holds SIZE bytes (whole 2 MiB pages) on every
 *                    device, from MS milliseconds (default 0) after this process's first memory call on;
 *                    cuMemGetInfo's free shrinks by it and NVML lists it as a process of its own
 *                    (simcuda_mem.c, simnvml.c)
 *   SIMCUDA_FAIL     "NAME:N:RESULT[,...]": the Nth call (counting from 1) of the concrete entry point NAME
 *                    returns RESULT without doing anything; "NAME:N+:RESULT" every call from the Nth on
 *   SIMCUDA_EVENTS_PENDING  "1": a recorded event completes only when cuEventSynchronize waits for it
 *                    (cuEventQuery: CUDA_ERROR_NOT_READY before); default: events complete at once
 *                    (simcuda_exec.c)
 */
#include "simcuda_driver.h"

#include <ctype.h>
#include <strings.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "simcuda_probe.h"

struct sim_state sim = {.lock = PTHREAD_MUTEX_INITIALIZER};

void sim_lock(void)
{
    pthread_mutex_lock(&sim.lock);
}

void sim_unlock(void)
{
    pthread_mutex_unlock(&sim.lock);
}

/* fork() while another thread holds sim.lock would leave the child's copy locked forever: hold it across
 * the fork so both sides start with it free and the state consistent. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&sim.lock);
}

static void fork_done(void)
{
    pthread_mutex_unlock(&sim.lock);
}

__attribute__((constructor)) static void register_fork_handlers(void)
{
    pthread_atfork(fork_prepare, fork_done, fork_done);
}

/* ---- call counts and fault injection ---------------------------------------------------------- */

struct fault_rule {
    int index;              /* in sim_concrete_names */
    unsigned long nth;
    int from_nth_on;
    CUresult result;
};

static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
static unsigned long *call_counts;  /* sim_concrete_count counters, atomic */
static struct fault_rule *faults;
static int nfaults;

static int concrete_index(const char *name)
{
    int lo = 0, hi = sim_concrete_count - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(name, sim_concrete_names[mid]);
        if (c == 0)
            return mid;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return -1;
}

/* Parses SIMCUDA_FAIL; a malformed rule is reported on stderr and ignored (tests see the message). */
static void parse_faults(const char *spec)
{
    char *copy = strdup(spec), *save = NULL;
    int cap = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char name[128], count[32];
        int result;
        if (sscanf(tok, " %127[^:]:%31[^:]:%d", name, count, &result) != 3) {
            fprintf(stderr, "simcuda: SIMCUDA_FAIL: cannot parse '%s' (want NAME:N:RESULT)\n", tok);
            continue;
        }
        int index = concrete_index(name);
        char *end;
        unsigned long nth = strtoul(count, &end, 10);
        int plus = *end == '+';
        if (index < 0 || nth == 0 || (*end && !(plus && end[1] == '\0'))) {
            fprintf(stderr, "simcuda: SIMCUDA_FAIL: bad rule '%s' (unknown entry point or count)\n", tok);
            continue;
        }
        if (nfaults == cap) {
            cap = cap ? cap * 2 : 8;
            faults = realloc(faults, cap * sizeof *faults);
        }
        faults[nfaults++] = (struct fault_rule){index, nth, plus, (CUresult)result};
    }
    free(copy);
}

static int trace_calls;           /* $SIMCUDA_TRACE=1: every call named on stderr */
static unsigned char *stub_told;  /* sim_concrete_count flags: the stub said so already */

static void setup(void)
{
    call_counts = calloc(sim_concrete_count, sizeof *call_counts);
    stub_told = calloc(sim_concrete_count, 1);
    const char *trace = getenv("SIMCUDA_TRACE");
    trace_calls = trace && *trace && strcmp(trace, "0") != 0;
    const char *spec = getenv("SIMCUDA_FAIL");
    if (spec && *spec)
        parse_faults(spec);
}

static CUresult count_call(int index)
{
    pthread_once(&setup_once, setup);
    /* The ordinal comes from the atomic increment itself, so "the 3rd call" is exact across threads. */
    unsigned long nth = __atomic_add_fetch(&call_counts[index], 1, __ATOMIC_RELAXED);
    if (trace_calls)
        fprintf(stderr, "simcuda: call %s\n", sim_concrete_names[index]);
    for (int i = 0; i < nfaults; i++)
        if (faults[i].index == index && (nth == faults[i].nth || (faults[i].from_nth_on && nth > faults[i].nth)))
            return faults[i].result;
    return CUDA_SUCCESS;
}

int sim_index(const char *name)
{
    int index = concrete_index(name);
    if (index < 0) {
        /* gen_procs.py fails the build when a defined entry point is missing from procs.tsv, so
         * reaching this is a bug in the simulator (a definition not laid out as `CUresult NAME(`). */
        fprintf(stderr, "simcuda: internal error: %s is not in procs.tsv\n", name);
        abort();
    }
    return index;
}

CUresult sim_enter_index(int index)
{
    return count_call(index);
}

/* An entry point the simulator does not implement: said once per name on stderr (a program that probes
 * for optional features must still see what it asked for), then CUDA_ERROR_NOT_SUPPORTED. */
int sim_stub(int index)
{
    CUresult rc = count_call(index);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (!__atomic_exchange_n(&stub_told[index], 1, __ATOMIC_RELAXED))
        fprintf(stderr, "simcuda: %s is not implemented by the simulated driver (returns CUDA_ERROR_NOT_SUPPORTED)\n",
                sim_concrete_names[index]);
    return CUDA_ERROR_NOT_SUPPORTED;
}

int sim_tracing(void)
{
    pthread_once(&setup_once, setup);
    return trace_calls;
}

unsigned long simcuda_call_count(const char *concrete_name)
{
    pthread_once(&setup_once, setup);
    int index = concrete_name ? concrete_index(concrete_name) : -1;
    return index < 0 ? 0 : __atomic_load_n(&call_counts[index], __ATOMIC_RELAXED);
}

/* ---- initialization --------------------------------------------------------------------------- */

/* "24GiB", "512MiB", "1G", "1.5G" (no), "4096": binary units; 0 on a malformed value. */
uint64_t sim_parse_size(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return 0;
    while (*end == ' ')
        end++;
    int shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 'K': shift = 10; break;
    case 'M': shift = 20; break;
    case 'G': shift = 30; break;
    case 'T': shift = 40; break;
    case '\0': return v;
    case 'B': return end[1] == '\0' ? v : 0;
    default: return 0;
    }
    end++;
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end || v > (UINT64_MAX >> shift))
        return 0;
    return (uint64_t)v << shift;
}

/* Real boards' figures, from NVIDIA's data sheets and what cudaGetDeviceProperties reports on them
 * (total memory is the board's usable total, as torch.cuda.get_device_properties().total_memory shows).
 * context_bytes is the device memory a CUDA 12/13 context with lazy loading takes on that board before
 * the program allocates anything (what nvidia-smi shows for a process that only initialised CUDA): an
 * estimate from public measurements, rounded to 2 MiB pages, never exact for a given driver. */
static const struct sim_preset presets[] = {
    {"H100", "NVIDIA H100 80GB HBM3", 85031714816ull, 524ull << 20, 132, 9, 0, 0x2330,
     1980000, 2619000, 5120, 52428800, 233472, 232448, 2048, 32},
    {"H200", "NVIDIA H200", 150754820096ull, 524ull << 20, 132, 9, 0, 0x2335,
     1980000, 3201000, 6144, 52428800, 233472, 232448, 2048, 32},
    {"A100-40GB", "NVIDIA A100-SXM4-40GB", 42505273344ull, 430ull << 20, 108, 8, 0, 0x20B0,
     1410000, 1215000, 5120, 41943040, 167936, 166912, 2048, 32},
    {"A100-80GB", "NVIDIA A100-SXM4-80GB", 85198045184ull, 430ull << 20, 108, 8, 0, 0x20B2,
     1410000, 1593000, 5120, 41943040, 167936, 166912, 2048, 32},
    {"L4", "NVIDIA L4", 23580639232ull, 300ull << 20, 58, 8, 9, 0x27B8,
     2040000, 6251000, 192, 50331648, 102400, 101376, 1536, 24},
    {"RTX4090", "NVIDIA GeForce RTX 4090", 25393692672ull, 360ull << 20, 128, 8, 9, 0x2684,
     2520000, 10501000, 384, 75497472, 102400, 101376, 1536, 24},
    {"RTX3090", "NVIDIA GeForce RTX 3090", 25438126080ull, 300ull << 20, 82, 8, 6, 0x2204,
     1695000, 9751000, 384, 6291456, 102400, 101376, 1536, 16},
};

/* The device a plain SIMCUDA_MEMORY run presents: H100-like, any size, a context that costs nothing. */
static const struct sim_preset generic = {
    "", "NVIDIA H100 80GB HBM3 (simcuda)", 0, 0, 132, 9, 0, 0x2330,
    1980000, 2619000, 5120, 52428800, 233472, 232448, 2048, 32};

static const struct sim_preset *find_preset(const char *key)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcasecmp(presets[i].key, key))
            return &presets[i];
    return NULL;
}

int sim_device_sm_count(int dev)
{
    return sim.dev[dev].preset ? sim.dev[dev].preset->sms : generic.sms;
}

/* Lock held. The first context made live on DEV takes the preset's context memory, for good: the real
 * driver keeps it while the process lives. Fails with CUDA_ERROR_OUT_OF_MEMORY if the device is full. */
CUresult sim_charge_context(int dev)
{
    struct sim_device *d = &sim.dev[dev];
    if (d->context_charged)
        return CUDA_SUCCESS;
    if (d->context_pages > d->capacity_pages - d->used_pages)
        return CUDA_ERROR_OUT_OF_MEMORY;
    d->used_pages += d->context_pages;
    d->context_charged = 1;
    return CUDA_SUCCESS;
}

static void init_devices(void)
{
    const char *env = getenv("SIMCUDA_DEVICES");
    int ndev = env && *env ? atoi(env) : 1;
    if (ndev < 1 || ndev > SIM_MAX_DEVICES) {
        fprintf(stderr, "simcuda: SIMCUDA_DEVICES=%s out of range 1..%d; using 1\n", env, SIM_MAX_DEVICES);
        ndev = 1;
    }
    const struct sim_preset *preset = NULL;
    env = getenv("SIMCUDA_GPU");
    if (env && *env && !(preset = find_preset(env)))
        fprintf(stderr, "simcuda: SIMCUDA_GPU=%s is not a known GPU; using a generic device\n", env);
    env = getenv("SIMCUDA_MEMORY");
    uint64_t capacity = preset ? preset->total_bytes : (uint64_t)24 << 30;
    if (env && *env) {
        uint64_t v = sim_parse_size(env);
        if (v == 0)
            fprintf(stderr, "simcuda: SIMCUDA_MEMORY=%s not understood; using 24GiB\n", env);
        else
            capacity = v;
    }
    if (capacity > SIM_MAX_CAPACITY)
        capacity = SIM_MAX_CAPACITY;
    sim.ndev = ndev;
    sim.low = (struct sim_va){.base = SIM_LOW_BASE, .limit = SIM_LOW_LIMIT};
    sim.vmm = (struct sim_va){.base = SIM_VMM_BASE, .limit = SIM_VMM_BASE + SIM_VMM_SPAN};
    for (int d = 0; d < ndev; d++) {
        struct sim_device *dv = &sim.dev[d];
        dv->capacity_pages = capacity / SIM_PAGE;
        dv->preset = preset ? preset : &generic;
        dv->total_bytes = preset && capacity == preset->total_bytes ? capacity : dv->capacity_pages * SIM_PAGE;
        dv->context_pages = (dv->preset->context_bytes + SIM_PAGE - 1) / SIM_PAGE;
        uint64_t base = SIM_HIGH_BASE + (uint64_t)d * SIM_HIGH_SPAN;
        dv->va = (struct sim_va){.base = base, .limit = base + SIM_HIGH_SPAN};
        dv->primary = (struct CUctx_st){.dev = d, .primary = 1};
        /* Keep host mappings out of the simulated device range, as a real driver's UVA reservation
         * does. Best effort: without it the addresses are the same, only unguarded. */
#if !defined(__SANITIZE_THREAD__) /* that range is ThreadSanitizer's shadow memory */
        void *p = mmap((void *)(uintptr_t)base, SIM_HIGH_SPAN, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
        if (p != MAP_FAILED && p != (void *)(uintptr_t)base)
            munmap(p, SIM_HIGH_SPAN); /* an old kernel took the address as a mere hint */
#endif
        sim_mem_init_device(d);
    }
}

CUresult sim_check_init(void)
{
    return sim.initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
}

CUresult cuInit(unsigned int Flags)
{
    SIM_ENTER();
    if (Flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    if (!sim.initialized) {
        init_devices();
        sim.initialized = 1;
    }
    sim_unlock();
    return CUDA_SUCCESS;
}

CUresult cuDriverGetVersion(int *driverVersion)
{
    SIM_ENTER();
    if (!driverVersion)
        return CUDA_ERROR_INVALID_VALUE;
    *driverVersion = SIM_DRIVER_VERSION;
    return CUDA_SUCCESS;
}

/* ---- devices ---------------------------------------------------------------------------------- */



/* Lock held. */
static CUresult check_device(CUdevice dev)
{
    CUresult rc = sim_check_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    return dev >= 0 && dev < sim.ndev ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

CUresult cuDeviceGetCount(int *count)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && !count)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        *count = sim.ndev;
    sim_unlock();
    return rc;
}

CUresult cuDeviceGet(CUdevice *device, int ordinal)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && !device)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS && (ordinal < 0 || ordinal >= sim.ndev))
        rc = CUDA_ERROR_INVALID_DEVICE;
    if (rc == CUDA_SUCCESS)
        *device = ordinal;
    sim_unlock();
    return rc;
}

CUresult cuDeviceGetName(char *name, int len, CUdevice dev)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = check_device(dev);
    sim_unlock();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (!name || len <= 0)
        return CUDA_ERROR_INVALID_VALUE;
    snprintf(name, (size_t)len, "%s", sim.dev[dev].preset->name);
    return CUDA_SUCCESS;
}

static CUresult total_mem(uint64_t *bytes, CUdevice dev)
{
    sim_lock();
    CUresult rc = check_device(dev);
    if (rc == CUDA_SUCCESS)
        *bytes = sim.dev[dev].total_bytes;
    sim_unlock();
    return rc;
}

CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
    SIM_ENTER();
    if (!bytes)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t v;
    CUresult rc = total_mem(&v, dev);
    if (rc == CUDA_SUCCESS)
        *bytes = v;
    return rc;
}

/* The v1 ABI reports in 32 bits: clamped, as anything above 4 GiB cannot be represented. */
CUresult cuDeviceTotalMem(unsigned int *bytes, CUdevice dev)
{
    SIM_ENTER();
    if (!bytes)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t v;
    CUresult rc = total_mem(&v, dev);
    if (rc == CUDA_SUCCESS)
        *bytes = v > UINT_MAX ? UINT_MAX : (unsigned int)v;
    return rc;
}

/* What frameworks and NVIDIA's libraries ask before they allocate: the preset's figures, and what every
 * recent data-center GPU shares. Unlisted attributes read 0 (texture and surface limits, NUMA, MPS). */
static int attribute_value(CUdevice_attribute a, CUdevice dev)
{
    const struct sim_preset *p = sim.dev[dev].preset;
    switch (a) {
    case CU_DEVICE_ATTRIBUTE_GPU_PCI_DEVICE_ID: return (int)(((unsigned)p->pci_device_id << 16) | 0x10DE);
    case CU_DEVICE_ATTRIBUTE_GPU_PCI_SUBSYSTEM_ID: return (int)((0x16C1u << 16) | 0x10DE);
    case CU_DEVICE_ATTRIBUTE_SURFACE_ALIGNMENT: return 512;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE1D_WIDTH: return 131072;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_WIDTH: return 131072;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE2D_HEIGHT: return 65536;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_WIDTH: return 16384;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_HEIGHT: return 16384;
    case CU_DEVICE_ATTRIBUTE_MAXIMUM_TEXTURE3D_DEPTH: return 16384;
    case CU_DEVICE_ATTRIBUTE_HOST_NATIVE_ATOMIC_SUPPORTED: return 0;
    case CU_DEVICE_ATTRIBUTE_CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM: return 1;
    case CU_DEVICE_ATTRIBUTE_DIRECT_MANAGED_MEM_ACCESS_FROM_HOST: return 0;
    case CU_DEVICE_ATTRIBUTE_READ_ONLY_HOST_REGISTER_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_IPC_EVENT_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: return 1024;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: return 64;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: return 2147483647;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: return 65535;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: return 65535;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: return 49152;
    case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY: return 65536;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE: return 32;
    case CU_DEVICE_ATTRIBUTE_MAX_PITCH: return 2147483647;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: return 65536;
    case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: return p->clock_khz;
    case CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT: return 512;
    case CU_DEVICE_ATTRIBUTE_GPU_OVERLAP: return 1;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: return p->sms;
    case CU_DEVICE_ATTRIBUTE_INTEGRATED: return 0;
    case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY: return 1;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_MODE: return CU_COMPUTEMODE_DEFAULT;
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS: return 1;
    case CU_DEVICE_ATTRIBUTE_ECC_ENABLED: return 1;
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: return 0x18 + dev;
    case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID: return 0;
    case CU_DEVICE_ATTRIBUTE_TCC_DRIVER: return 0;
    case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: return p->mem_clock_khz;
    case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: return p->bus_width;
    case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: return p->l2_bytes;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: return p->threads_per_sm;
    case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT: return 3;
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: return 1;
    case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID: return 0;
    case CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT: return 32;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: return p->cc_major;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: return p->cc_minor;
    case CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_GLOBAL_L1_CACHE_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_LOCAL_L1_CACHE_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: return p->smem_per_sm;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR: return 65536;
    case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY: return 1;
    case CU_DEVICE_ATTRIBUTE_MULTI_GPU_BOARD: return 0;
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS: return 1;
    case CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS: return 0;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_PREEMPTION_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH: return 1;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: return p->smem_optin;
    case CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR: return p->blocks_per_sm;
    case CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_MAX_PERSISTING_L2_CACHE_SIZE: return p->l2_bytes / 8 * 5;
    case CU_DEVICE_ATTRIBUTE_MAX_ACCESS_POLICY_WINDOW_SIZE: return 134213632;
    case CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK: return 1024;
    case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_MEMPOOL_SUPPORTED_HANDLE_TYPES: return CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
    case CU_DEVICE_ATTRIBUTE_GPU_DIRECT_RDMA_SUPPORTED: return 1;
    case CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH: return p->cc_major >= 9;
    case CU_DEVICE_ATTRIBUTE_DEFERRED_MAPPING_CUDA_ARRAY_SUPPORTED: return 1;
    default:
        if (sim_tracing())
            fprintf(stderr, "simcuda: attribute %d reads 0\n", (int)a);
        return 0;
    }
}

CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = check_device(dev);
    sim_unlock();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (!pi || attrib <= 0 || attrib >= CU_DEVICE_ATTRIBUTE_MAX)
        return CUDA_ERROR_INVALID_VALUE;
    *pi = attribute_value(attrib, dev);
    return CUDA_SUCCESS;
}

static CUresult device_uuid(CUuuid *uuid, CUdevice dev)
{
    sim_lock();
    CUresult rc = check_device(dev);
    sim_unlock();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (!uuid)
        return CUDA_ERROR_INVALID_VALUE;
    /* A fixed, recognisable UUID per device: "simcuda" then the ordinal. */
    static const char tag[16] = {'s', 'i', 'm', 'c', 'u', 'd', 'a', 0x2d, 0x40, 0, 0, 0, 0, 0, 0, 0};
    memcpy(uuid->bytes, tag, sizeof tag);
    uuid->bytes[15] = (char)dev;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev)
{
    SIM_ENTER();
    return device_uuid(uuid, dev);
}

CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev)
{
    SIM_ENTER();
    return device_uuid(uuid, dev);
}

CUresult cuDeviceGetPCIBusId(char *pciBusId, int len, CUdevice dev)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = check_device(dev);
    sim_unlock();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (!pciBusId || len <= 0)
        return CUDA_ERROR_INVALID_VALUE;
    snprintf(pciBusId, (size_t)len, "00000000:%02X:00.0", 0x18 + dev);
    return CUDA_SUCCESS;
}

/* ---- contexts --------------------------------------------------------------------------------- */

/* The calling thread's context stack; the top is the current context. */
#define CTX_STACK_MAX 64
static __thread CUcontext ctx_stack[CTX_STACK_MAX];
static __thread int ctx_depth;

int sim_ctx_valid(CUcontext ctx)
{
    return ctx && ctx->live;
}

CUresult sim_current_ctx(CUcontext *out)
{
    CUresult rc = sim_check_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (ctx_depth == 0 || !sim_ctx_valid(ctx_stack[ctx_depth - 1]))
        return CUDA_ERROR_INVALID_CONTEXT;
    *out = ctx_stack[ctx_depth - 1];
    return CUDA_SUCCESS;
}

CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = check_device(dev);
    if (rc == CUDA_SUCCESS && !pctx)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        rc = sim_charge_context(dev);
    if (rc == CUDA_SUCCESS) {
        struct sim_device *dv = &sim.dev[dev];
        dv->primary_refs++;
        dv->primary.live = 1;
        *pctx = &dv->primary;
    }
    sim_unlock();
    return rc;
}

static CUresult primary_release(CUdevice dev)
{
    sim_lock();
    CUresult rc = check_device(dev);
    if (rc == CUDA_SUCCESS && sim.dev[dev].primary_refs == 0)
        rc = CUDA_ERROR_INVALID_CONTEXT;
    if (rc == CUDA_SUCCESS && --sim.dev[dev].primary_refs == 0) {
        /* The last release destroys the primary context and what it owned, as the real driver does. */
        sim_cls_context_destroyed(&sim.dev[dev].primary);
        sim_mem_ctx_teardown(&sim.dev[dev].primary);
        sim.dev[dev].primary.live = 0;
    }
    sim_unlock();
    return rc;
}

CUresult cuDevicePrimaryCtxRelease(CUdevice dev)
{
    SIM_ENTER();
    return primary_release(dev);
}

CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
    SIM_ENTER();
    return primary_release(dev);
}

CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = check_device(dev);
    if (rc == CUDA_SUCCESS && (!flags || !active))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS) {
        *flags = sim.dev[dev].primary.flags;
        *active = sim.dev[dev].primary_refs > 0;
    }
    sim_unlock();
    return rc;
}

/* v1 refuses while the context is active; _v2 (11.0) allows it. */
static CUresult primary_set_flags(CUdevice dev, unsigned int flags, int allow_active)
{
    sim_lock();
    CUresult rc = check_device(dev);
    if (rc == CUDA_SUCCESS && (flags & ~(unsigned)(CU_CTX_SCHED_MASK | CU_CTX_LMEM_RESIZE_TO_MAX |
                                                 CU_CTX_MAP_HOST | CU_CTX_SYNC_MEMOPS)))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS && !allow_active && sim.dev[dev].primary_refs > 0)
        rc = CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE;
    if (rc == CUDA_SUCCESS)
        sim.dev[dev].primary.flags = flags;
    sim_unlock();
    return rc;
}

CUresult cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags)
{
    SIM_ENTER();
    return primary_set_flags(dev, flags, 0);
}

CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags)
{
    SIM_ENTER();
    return primary_set_flags(dev, flags, 1);
}

static CUresult primary_reset(CUdevice dev)
{
    sim_lock();
    CUresult rc = check_device(dev);
    if (rc == CUDA_SUCCESS) {
        sim_cls_context_destroyed(&sim.dev[dev].primary);
        sim_mem_ctx_teardown(&sim.dev[dev].primary);
        sim.dev[dev].primary_refs = 0;
        sim.dev[dev].primary.live = 0;
        sim.dev[dev].primary.flags = 0;
    }
    sim_unlock();
    return rc;
}

CUresult cuDevicePrimaryCtxReset(CUdevice dev)
{
    SIM_ENTER();
    return primary_reset(dev);
}

CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev)
{
    SIM_ENTER();
    return primary_reset(dev);
}

/* Lock held. Creates a context on DEV and makes it current on the calling thread. */
static CUresult ctx_create(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    CUresult rc = check_device(dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    if (ctx_depth == CTX_STACK_MAX)
        return CUDA_ERROR_OUT_OF_MEMORY; /* defensive: no program nests 64 contexts */
    rc = sim_charge_context(dev);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct CUctx_st *c = calloc(1, sizeof *c);
    if (!c)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *c = (struct CUctx_st){.dev = dev, .live = 1, .flags = flags, .next = sim.contexts};
    sim.contexts = c;
    ctx_stack[ctx_depth++] = c;
    *pctx = c;
    return CUDA_SUCCESS;
}

CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = ctx_create(pctx, flags, dev);
    sim_unlock();
    return rc;
}

CUresult cuCtxCreate_v4(CUcontext *pctx, CUctxCreateParams *ctxCreateParams, unsigned int flags, CUdevice dev)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = ctx_create(pctx, flags, dev);
    sim_unlock();
    return rc;
}

CUresult cuCtxDestroy_v2(CUcontext ctx)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && !ctx)
        rc = CUDA_ERROR_INVALID_VALUE;
    /* A primary context is released, never destroyed. */
    if (rc == CUDA_SUCCESS && (ctx->primary || !sim_ctx_valid(ctx)))
        rc = CUDA_ERROR_INVALID_CONTEXT;
    if (rc == CUDA_SUCCESS) {
        sim_cls_context_destroyed(ctx);
        sim_mem_ctx_teardown(ctx);
        /* The struct stays on sim.contexts, dead, so a stale handle reads as invalid rather than as
         * freed memory. */
        ctx->live = 0;
        if (ctx_depth > 0 && ctx_stack[ctx_depth - 1] == ctx)
            ctx_depth--;
    }
    sim_unlock();
    return rc;
}

CUresult cuCtxGetCurrent(CUcontext *pctx)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    sim_unlock();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    *pctx = ctx_depth ? ctx_stack[ctx_depth - 1] : NULL;
    return CUDA_SUCCESS;
}

CUresult cuCtxSetCurrent(CUcontext ctx)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && ctx && !sim_ctx_valid(ctx))
        rc = CUDA_ERROR_INVALID_CONTEXT;
    sim_unlock();
    if (rc != CUDA_SUCCESS)
        return rc;
    /* Replaces the top of the stack; NULL pops it (a no-op on an empty stack). */
    if (!ctx) {
        if (ctx_depth > 0)
            ctx_depth--;
    } else if (ctx_depth == 0) {
        ctx_stack[ctx_depth++] = ctx;
    } else {
        ctx_stack[ctx_depth - 1] = ctx;
    }
    return CUDA_SUCCESS;
}

CUresult cuCtxPushCurrent_v2(CUcontext ctx)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && !ctx)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS && !sim_ctx_valid(ctx))
        rc = CUDA_ERROR_INVALID_CONTEXT;
    sim_unlock();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (ctx_depth == CTX_STACK_MAX)
        return CUDA_ERROR_INVALID_VALUE; /* defensive */
    ctx_stack[ctx_depth++] = ctx;
    return CUDA_SUCCESS;
}

CUresult cuCtxPopCurrent_v2(CUcontext *pctx)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    sim_unlock();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (ctx_depth == 0)
        return CUDA_ERROR_INVALID_CONTEXT;
    CUcontext c = ctx_stack[--ctx_depth];
    if (pctx)
        *pctx = c;
    return CUDA_SUCCESS;
}

/* Lock held. CTX NULL means the current context. */
static CUresult ctx_or_current(CUcontext ctx, CUcontext *out)
{
    if (!ctx)
        return sim_current_ctx(out);
    CUresult rc = sim_check_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    if (!sim_ctx_valid(ctx))
        return CUDA_ERROR_INVALID_CONTEXT;
    *out = ctx;
    return CUDA_SUCCESS;
}

static CUresult ctx_get_device(CUdevice *device, CUcontext ctx)
{
    sim_lock();
    CUcontext c = NULL;
    CUresult rc = ctx_or_current(ctx, &c);
    if (rc == CUDA_SUCCESS && !device)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        *device = c->dev;
    sim_unlock();
    return rc;
}

CUresult cuCtxGetDevice(CUdevice *device)
{
    SIM_ENTER();
    return ctx_get_device(device, NULL);
}

CUresult cuCtxGetDevice_v2(CUdevice *device, CUcontext ctx)
{
    SIM_ENTER();
    return ctx_get_device(device, ctx);
}

CUresult cuCtxGetFlags(unsigned int *flags)
{
    SIM_ENTER();
    sim_lock();
    CUcontext c = NULL;
    CUresult rc = sim_current_ctx(&c);
    if (rc == CUDA_SUCCESS && !flags)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        *flags = c->flags;
    sim_unlock();
    return rc;
}

CUresult cuCtxGetApiVersion(CUcontext ctx, unsigned int *version)
{
    SIM_ENTER();
    sim_lock();
    CUcontext c = NULL;
    CUresult rc = ctx_or_current(ctx, &c);
    if (rc == CUDA_SUCCESS && !version)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        *version = 3020; /* the API version of every context since CUDA 3.2 */
    sim_unlock();
    return rc;
}

/* Nothing runs on the simulated device, so a synchronize only does what a real one does to memory:
 * stream-ordered pools give back what exceeds their release threshold. */
static CUresult ctx_synchronize(CUcontext ctx)
{
    sim_lock();
    CUcontext c = NULL;
    CUresult rc = ctx_or_current(ctx, &c);
    if (rc == CUDA_SUCCESS)
        rc = sim_capture_unsafe();
    if (rc == CUDA_SUCCESS)
        sim_mem_sync_device(c->dev);
    sim_unlock();
    return rc;
}

CUresult cuCtxSynchronize(void)
{
    SIM_ENTER();
    return ctx_synchronize(NULL);
}

CUresult cuCtxSynchronize_v2(CUcontext ctx)
{
    SIM_ENTER();
    return ctx_synchronize(ctx);
}

/* ---- streams ---------------------------------------------------------------------------------- */

CUresult sim_stream_ctx(CUstream s, CUcontext *out)
{
    CUcontext unused;
    if (!out)
        out = &unused;
    /* The legacy and per-thread default streams belong to the current context. */
    if (s == NULL || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD)
        return sim_current_ctx(out);
    CUresult rc = sim_check_init();
    if (rc != CUDA_SUCCESS)
        return rc;
    for (struct CUstream_st *p = sim.streams; p; p = p->next)
        if (p == s) {
            if (!sim_ctx_valid(p->ctx))
                return CUDA_ERROR_INVALID_CONTEXT;
            *out = p->ctx;
            return CUDA_SUCCESS;
        }
    return CUDA_ERROR_INVALID_HANDLE;
}

static CUresult stream_create(CUstream *phStream, unsigned int flags, int priority)
{
    if (!phStream || (flags & ~(unsigned)CU_STREAM_NON_BLOCKING))
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUcontext c = NULL;
    CUresult rc = sim_current_ctx(&c);
    if (rc == CUDA_SUCCESS) {
        struct CUstream_st *s = calloc(1, sizeof *s);
        if (!s) {
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            /* Priorities clamp to the device's range [-5, 0], as the real driver's do. */
            priority = priority < -5 ? -5 : priority > 0 ? 0 : priority;
            *s = (struct CUstream_st){.ctx = c, .flags = flags, .priority = priority, .next = sim.streams};
            sim.streams = s;
            *phStream = s;
        }
    }
    sim_unlock();
    return rc;
}

CUresult cuStreamCreate(CUstream *phStream, unsigned int Flags)
{
    SIM_ENTER();
    return stream_create(phStream, Flags, 0);
}

CUresult cuStreamCreateWithPriority(CUstream *phStream, unsigned int flags, int priority)
{
    SIM_ENTER();
    return stream_create(phStream, flags, priority);
}

CUresult cuStreamDestroy_v2(CUstream hStream)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS) {
        rc = CUDA_ERROR_INVALID_HANDLE;
        for (struct CUstream_st **pp = &sim.streams; *pp; pp = &(*pp)->next)
            if (*pp == hStream) {
                sim_capture_stream_destroyed(hStream);
                *pp = hStream->next;
                free(hStream);
                rc = CUDA_SUCCESS;
                break;
            }
    }
    sim_unlock();
    return rc;
}

static CUresult stream_synchronize(CUstream s)
{
    sim_lock();
    CUcontext c = NULL;
    CUresult rc = sim_stream_ctx(s, &c);
    if (rc == CUDA_SUCCESS)
        rc = sim_capture_refuse(s);
    if (rc == CUDA_SUCCESS)
        sim_mem_sync_device(c->dev);
    sim_unlock();
    return rc;
}

CUresult cuStreamSynchronize(CUstream hStream)
{
    SIM_ENTER();
    return stream_synchronize(hStream);
}

CUresult cuStreamSynchronize_ptsz(CUstream hStream)
{
    SIM_ENTER();
    return stream_synchronize(hStream);
}

/* ---- errors ----------------------------------------------------------------------------------- */

/* The real driver's names and strings for the codes the simulator returns (and a few neighbours). */
static const struct {
    CUresult code;
    const char *name, *text;
} error_table[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_ALREADY_MAPPED, "CUDA_ERROR_ALREADY_MAPPED", "resource already mapped"},
    {CUDA_ERROR_NOT_MAPPED, "CUDA_ERROR_NOT_MAPPED", "resource not mapped"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE, "CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE",
     "primary context active"},
    {CUDA_ERROR_CONTEXT_IS_DESTROYED, "CUDA_ERROR_CONTEXT_IS_DESTROYED", "context is destroyed"},
    {CUDA_ERROR_NOT_PERMITTED, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

static CUresult error_lookup(CUresult error, const char **pStr, int want_name)
{
    if (!pStr)
        return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++)
        if (error_table[i].code == error) {
            *pStr = want_name ? error_table[i].name : error_table[i].text;
            return CUDA_SUCCESS;
        }
    *pStr = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

CUresult cuGetErrorName(CUresult error, const char **pStr)
{
    SIM_ENTER();
    return error_lookup(error, pStr, 1);
}

CUresult cuGetErrorString(CUresult error, const char **pStr)
{
    SIM_ENTER();
    return error_lookup(error, pStr, 0);
}

/* Not a CUDA entry point: for `cumemtrace run --sim-gpu`, which dlopens us after the program has ended to
 * state the device's capacity net of the context. The memory a context of the SIMCUDA_GPU preset takes
 * (0 for a plain SIMCUDA_MEMORY device), read from the environment as cuInit would. */
__attribute__((visibility("default"))) unsigned long long simcuda_context_bytes(void)
{
    const char *env = getenv("SIMCUDA_GPU");
    const struct sim_preset *p = env && *env ? find_preset(env) : NULL;
    return p ? (p->context_bytes + SIM_PAGE - 1) / SIM_PAGE * SIM_PAGE : 0;
}
