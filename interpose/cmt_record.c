/*
 * cmt_record.c: building events on the application's thread (see cmt_record.h).
 *
 * Runs on application threads. Never blocks on a lock, never calls SQLite, never allocates.
 */
#include "cmt_record.h"

#include "cmt_log.h"
#include "cmt_resolve.h"
#include "cmt_runtime.h"
#include "cmt_capture.h"
#include "cmt_nvtx.h"

#include "cmt_events.h"

#define UNW_LOCAL_ONLY
#include <dlfcn.h>
#include <errno.h>
#include <libunwind.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const uint8_t api_op[] = {
#define X(id, name, base, op, kind) [id] = CMT_OP_##op,
    CMT_API_LIST(X)
#undef X
};
static const uint8_t api_kind[] = {
#define X(id, name, base, op, kind) [id] = CMT_KIND_##kind,
    CMT_API_LIST(X)
#undef X
};

/* Nesting depth of our wrappers on this thread: a driver that calls one of its own exported entry points
 * must not produce a second event. */
static __thread int tls_depth;
static __thread int tls_tid;
static __thread uint64_t tls_ctx;
static __thread int tls_dev;

static uintptr_t self_lo, self_hi;

/* Devices are described here, on the application thread, the first time one of their events is
 * recorded (a few cheap driver queries, once per device per process), into the memory shared with the
 * writer, which never calls into the driver. */
static void describe_device(int dev)
{
    struct cmt_shm *h = cmt_shm_get();
    if (!h || dev < 0 || dev >= CMT_SHM_MAX_DEVICES ||
        atomic_load_explicit(&h->devices[dev].state, memory_order_acquire))
        return;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&h->devices[dev].state, &expected, 1))
        return; /* another thread is at it */
    const struct cmt_driver *d = cmt_driver();
    struct cmt_shm_device *info = &h->devices[dev];
    if (d) {
        size_t total = 0;
        if (!d->device_get_name || d->device_get_name(info->name, sizeof info->name, dev) != CUDA_SUCCESS)
            info->name[0] = 0;
        info->have_total = d->device_total_mem && d->device_total_mem(&total, dev) == CUDA_SUCCESS;
        info->total_bytes = total;
        info->have_version = d->driver_get_version && d->driver_get_version(&info->driver_version) == CUDA_SUCCESS;
        CUuuid u;
        if (d->device_get_uuid && d->device_get_uuid(&u, dev) == CUDA_SUCCESS) {
            const unsigned char *b = (const unsigned char *)u.bytes;
            snprintf(info->uuid, sizeof info->uuid,
                     "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
                     b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
        }
    }
    atomic_store_explicit(&info->state, 2, memory_order_release);
}

/* The queue position at which the writer was last found stuck (UINT64_MAX: never). */
static _Atomic uint64_t stalled_at = UINT64_MAX;

static int current_tid(void)
{
    /* Cached per thread; the thread that forks gets its cache cleared in the child (cmt_record_after_fork). */
    if (!tls_tid)
        tls_tid = (int)syscall(SYS_gettid);
    return tls_tid;
}

/* Where the event happened: the calling thread's current context and its device. */
static void place(struct cmt_event *e)
{
    const struct cmt_driver *d = cmt_driver();
    if (!d || !d->ctx_get_current)
        return;
    CUcontext ctx = NULL;
    if (d->ctx_get_current(&ctx) != CUDA_SUCCESS || !ctx)
        return;
    e->context = (uint64_t)(uintptr_t)ctx;
    e->present |= CMT_HAS_CONTEXT;
    if ((uint64_t)(uintptr_t)ctx != tls_ctx) {
        CUdevice dev = -1;
        if (!d->ctx_get_device || d->ctx_get_device(&dev) != CUDA_SUCCESS)
            return;
        tls_ctx = (uint64_t)(uintptr_t)ctx;
        tls_dev = dev;
    }
    e->device = tls_dev;
    e->present |= CMT_HAS_DEVICE;
}

static void stamp(struct cmt_call *c, uint64_t ts)
{
    c->u.ev.seq = atomic_fetch_add_explicit(&cmt_seq, 1, memory_order_relaxed) + 1;
    c->u.ev.ts_ns = ts;
    place(&c->u.ev);
}

/* The unwinder, chosen at the first recorded call (not at start: most processes a preloaded library
 * lands in never make one).
 *
 * libunwind (loaded privately, see interpose/meson.build) is the fast one: its per-thread cache makes a
 * deep stack about three times cheaper than libgcc's unwinder. But libunwind 1.6 opens a pipe at its
 * init and, whenever it validates an address (frames without unwind information), reads it, writes it,
 * and if the read fails closes both descriptors and makes a new pipe: in a program that closed that
 * descriptor and reused the number, it would read, write and close the program's own file. So we find
 * its pipe when it is made, and the moment the program closes either number (close, close_range,
 * closefrom, or dup2/dup3 onto it: cmt_init.c wraps them; checking with fstat before every unwind would
 * cost more than the unwinding) we switch for good to glibc's backtrace(), libgcc's DWARF unwinder
 * (frames found through _dl_find_object: no lock, no descriptor), and libunwind is never called again.
 * What this cannot see: a close made by a raw system call, and a libunwind call already under way on
 * another thread at that moment. CUMEMTRACE_UNWINDER=libgcc uses libgcc's from the start. */
static int (*gcc_backtrace)(void **, int);
static int (*unw_backtrace_fn)(void **, int);
static _Atomic int unw_usable;
static int unw_fd[2] = {-1, -1};
static pthread_once_t unwind_once = PTHREAD_ONCE_INIT;

#define FD_SCAN 4096

static void open_fifos(unsigned char *set)
{
    memset(set, 0, FD_SCAN / 8);
    for (int fd = 0; fd < FD_SCAN; fd++) {
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode))
            set[fd / 8] |= (unsigned char)(1u << (fd % 8));
    }
}

void cmt_unwind_fds_closing(unsigned lo, unsigned hi)
{
    for (int k = 0; k < 2; k++)
        if (unw_fd[k] >= 0 && (unsigned)unw_fd[k] >= lo && (unsigned)unw_fd[k] <= hi)
            atomic_store(&unw_usable, 0);
}

static void load_unwind(void)
{
    gcc_backtrace = (int (*)(void **, int))cmt_real_dlsym(RTLD_DEFAULT, "backtrace");
    void *warm[4];
    if (gcc_backtrace)
        gcc_backtrace(warm, 4); /* glibc loads libgcc_s here, once, not inside a later call */
    const char *which = getenv("CUMEMTRACE_UNWINDER");
    if (which && !strcmp(which, "libgcc"))
        return;
    static unsigned char before[FD_SCAN / 8], after[FD_SCAN / 8];
    open_fifos(before);
    /* RTLD_LOCAL: libunwind's _Unwind_* and backtrace stay out of the program's symbol lookups. */
    void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return; /* libgcc's then */
    int (*set_caching)(unw_addr_space_t, unw_caching_policy_t) =
        (int (*)(unw_addr_space_t, unw_caching_policy_t))cmt_real_dlsym(h, "_ULx86_64_set_caching_policy");
    unw_addr_space_t *local = (unw_addr_space_t *)cmt_real_dlsym(h, "_ULx86_64_local_addr_space");
    /* libunwind's global cache has a lock and no fork handler: a fork while another thread held it
     * would leave the child stuck at its first recorded call. Per-thread caches have no lock. */
    if (set_caching && local)
        set_caching(*local, UNW_CACHE_PER_THREAD);
    int (*fn)(void **, int) = (int (*)(void **, int))cmt_real_dlsym(h, "unw_backtrace");
    if (!fn)
        return;
    fn(warm, 4); /* libunwind's init, which makes its pipe */
    open_fifos(after);
    int found[3], nf = 0;
    for (int fd = 0; fd < FD_SCAN && nf < 3; fd++)
        if ((after[fd / 8] & ~before[fd / 8]) & (1u << (fd % 8)))
            found[nf++] = fd;
    if (nf == 2) {
        struct stat a, b;
        if (fstat(found[0], &a) != 0 || fstat(found[1], &b) != 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev)
            return; /* not one pipe: someone else's descriptors; do not guess */
        unw_fd[0] = found[0];
        unw_fd[1] = found[1];
    } else if (nf != 0) {
        return; /* another thread opened pipes meanwhile: we cannot tell which is libunwind's */
    }
    unw_backtrace_fn = fn;
    atomic_store(&unw_usable, 1);
}

static int unwind(void **buf, int n)
{
    if (atomic_load_explicit(&unw_usable, memory_order_acquire))
        return unw_backtrace_fn(buf, n);
    return gcc_backtrace ? gcc_backtrace(buf, n) : 0;
}

/* noinline: its own frame is the first one unwound, and is left off the stack. */
__attribute__((noinline)) static unsigned capture_stack(uintptr_t *out, unsigned depth)
{
    if (!depth)
        return 0;
    pthread_once(&unwind_once, load_unwind);
    void *buf[CMT_MAX_DEPTH];
    unsigned want = depth + 8 < CMT_MAX_DEPTH ? depth + 8 : CMT_MAX_DEPTH;
    int n = unwind(buf, (int)want);
    if (n <= 0)
        return 0;
    /* Drop our own frames (this function, the recorder, the wrapper): depth 0 is the code that called
     * the driver entry point. */
    int first = 0;
    /* (a sanitizer's interceptor of backtrace() may come first, outside our range: skip up to our last
     * leading frame) */
    for (int i = 0; i < n && i < 8; i++)
        if ((uintptr_t)buf[i] >= self_lo && (uintptr_t)buf[i] < self_hi)
            first = i + 1;
        else if (first)
            break;
    unsigned kept = 0;
    for (int i = first; i < n && kept < depth; i++)
        out[kept++] = (uintptr_t)buf[i];
    return kept;
}

int cmt_call_begin(struct cmt_call *c, int api, int when)
{
    if (tls_depth > 0)
        return 0;
    int st = atomic_load_explicit(&cmt_state, memory_order_acquire);
    if (st == CMT_DISABLED)
        return 0;
    if (cmt_runtime_init() != 0)
        return 0;
    tls_depth++;
    int saved = errno;
    struct cmt_event *e = &c->u.ev;
    memset(e, 0, sizeof *e);
    e->api = (uint16_t)api;
    e->op = api_op[api];
    e->kind = api_kind[api];
    e->tid = current_tid();
    e->device = -1;
    e->nframes = (uint16_t)capture_stack(e->frames, cmt_config.depth);
    c->when = when;
    c->t0 = cmt_now_ns();
    if (when == CMT_WHEN_BEFORE)
        stamp(c, c->t0);
    errno = saved;
    return 1;
}

void cmt_call_end(struct cmt_call *c, int result)
{
    uint64_t t1 = cmt_now_ns();
    struct cmt_event *e = &c->u.ev;
    e->duration_ns = t1 - c->t0;
    e->result = result;
    if (c->when == CMT_WHEN_AFTER)
        stamp(c, t1);
    /* A failed acquire is the event that matters most: note what the device had left at that moment. */
    if (result != CUDA_SUCCESS && CMT_OP_IS_ACQUIRE(e->op)) {
        const struct cmt_driver *d = cmt_driver();
        size_t fr = 0, total = 0;
        if (d && d->mem_get_info && d->mem_get_info(&fr, &total) == CUDA_SUCCESS) {
            e->free_bytes = fr;
            e->total_bytes = total;
            e->present |= CMT_HAS_MEMINFO;
        }
    }
}

void cmt_record_graph_mem(struct cmt_event *e)
{
    const struct cmt_driver *d = cmt_driver();
    if (!(e->present & CMT_HAS_DEVICE) || !d || !d->device_get_graph_mem_attribute)
        return;
    cuuint64_t reserved = 0, used = 0;
    if (d->device_get_graph_mem_attribute(e->device, CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT, &reserved) != CUDA_SUCCESS ||
        d->device_get_graph_mem_attribute(e->device, CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT, &used) != CUDA_SUCCESS)
        return;
    e->size = reserved;
    e->aux = used;
    e->present |= CMT_HAS_SIZE | CMT_HAS_AUX;
}

uint64_t cmt_record_range_size(uint64_t address)
{
    const struct cmt_driver *d = cmt_driver();
    CUdeviceptr base = 0;
    size_t size = 0;
    if (!d || !d->mem_get_address_range || d->mem_get_address_range(&base, &size, (CUdeviceptr)address) != CUDA_SUCCESS)
        size = 0;
    return size;
}

/* Queues one event: waits for room rather than lose it, but never forever: 2 s, then counts it as lost.
 * A writer found stuck once is not waited for again until it has taken something off the queue. */
static void push(struct cmt_event *e)
{
    uint64_t deadline = 0;
    for (;;) {
        int st = atomic_load_explicit(&cmt_state, memory_order_acquire);
        if (st == CMT_DISABLED)
            break; /* our failure was reported; the file is gone, so nothing is "lost" from it */
        if (cmt_capture_push(e) == 0)
            break;
        uint64_t taken = cmt_ring_taken(&cmt_queue);
        if (!cmt_capture_writer_alive() || taken == atomic_load(&stalled_at)) {
            atomic_fetch_add_explicit(&cmt_shm_get()->lost, 1, memory_order_relaxed);
            break;
        }
        uint64_t now = cmt_now_ns();
        if (!deadline)
            deadline = now + 2000000000ull;
        if (now >= deadline) {
            atomic_store(&stalled_at, taken);
            atomic_fetch_add_explicit(&cmt_shm_get()->lost, 1, memory_order_relaxed);
            break;
        }
        cmt_capture_wait_for_space(1000 * 1000);
    }
}

/* ---- sampling (CUMEMTRACE_SAMPLE_MS) --------------------------------------------------------------
 * No thread of ours runs in the program: a sample is taken on the application thread that just made a
 * recorded call, when the last sample of its device is at least sample_ns old (one thread wins the
 * compare-and-swap; the others go on). A sample is an event of its own (op sample, no stack): cuMemGetInfo's
 * free and total of the current context's device, and, once the program has used stream-ordered memory,
 * the reserved and used bytes of the device's default and current pools and of the pools it passed to
 * cuMemAllocFromPoolAsync (up to CMT_SAMPLE_POOLS per device). The driver calls are not hooked ones. */
#define CMT_SAMPLE_POOLS 4
static _Atomic uint64_t last_sample[CMT_SHM_MAX_DEVICES];
static _Atomic int pools_in_use;
static _Atomic uint64_t named_pools[CMT_SHM_MAX_DEVICES][CMT_SAMPLE_POOLS];

static void sample_event(struct cmt_event *s, int api, uint64_t now)
{
    memset(s, 0, sizeof *s);
    s->api = (uint16_t)api;
    s->op = api_op[api];
    s->kind = api_kind[api];
    s->tid = current_tid();
    s->device = -1;
    s->ts_ns = now;
    place(s);
}

/* Numbers a sample as it is queued: seq stays dense (only events that are written take one). */
static void push_sample(struct cmt_event *s)
{
    s->seq = atomic_fetch_add_explicit(&cmt_seq, 1, memory_order_relaxed) + 1;
    s->ts_ns = cmt_now_ns();
    push(s);
}

static void sample_pool(CUmemoryPool pool, int dev, uint64_t now)
{
    const struct cmt_driver *d = cmt_driver();
    cuuint64_t reserved = 0, used = 0;
    if (!pool || d->mem_pool_get_attribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &reserved) != CUDA_SUCCESS ||
        d->mem_pool_get_attribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used) != CUDA_SUCCESS)
        return;
    struct cmt_event s;
    sample_event(&s, CMT_API_cuMemPoolGetAttribute, now);
    s.device = dev;
    s.present |= CMT_HAS_DEVICE | CMT_HAS_HANDLE | CMT_HAS_SIZE | CMT_HAS_AUX;
    s.handle = (uint64_t)(uintptr_t)pool;
    s.size = reserved;
    s.aux = used;
    push_sample(&s);
}

/* NVML, for what nvidia-smi shows: the device's processes and their memory. Loaded at the first sample
 * (dlopen, on that application thread: sampling is asked for), never if it is not installed. */
struct nvml_proc {
    unsigned int pid;
    unsigned long long used;
    unsigned int gi, ci;
};
static struct {
    int (*by_uuid)(const char *, void **);
    int (*procs)(void *, unsigned int *, struct nvml_proc *);
} nvml;
static pthread_once_t nvml_once = PTHREAD_ONCE_INIT;

static void load_nvml(void)
{
    void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return;
    int (*init)(void) = (int (*)(void))cmt_real_dlsym(h, "nvmlInit_v2");
    void *by_uuid = cmt_real_dlsym(h, "nvmlDeviceGetHandleByUUID");
    void *procs = cmt_real_dlsym(h, "nvmlDeviceGetComputeRunningProcesses_v3");
    if (!init || !by_uuid || !procs || init() != 0)
        return;
    nvml.by_uuid = (int (*)(const char *, void **))by_uuid;
    nvml.procs = (int (*)(void *, unsigned int *, struct nvml_proc *))procs;
}

/* The bytes NVML says other processes and this one hold on DEV: into size and aux of the sample. */
static void sample_nvml(struct cmt_event *s, int dev)
{
    pthread_once(&nvml_once, load_nvml);
    struct cmt_shm *h = cmt_shm_get();
    if (!nvml.procs || !h || atomic_load(&h->devices[dev].state) != 2 || !h->devices[dev].uuid[0])
        return;
    void *nd = NULL;
    struct nvml_proc p[64];
    unsigned int n = 64;
    if (nvml.by_uuid(h->devices[dev].uuid, &nd) != 0 || nvml.procs(nd, &n, p) != 0)
        return;
    unsigned long long mine = 0, others = 0;
    unsigned int self = (unsigned int)getpid();
    for (unsigned int i = 0; i < n && i < 64; i++) {
        if (p[i].used == ~0ull)
            continue; /* NVML_VALUE_NOT_AVAILABLE */
        if (p[i].pid == self)
            mine += p[i].used;
        else
            others += p[i].used;
    }
    s->size = others;
    s->aux = mine;
    s->present |= CMT_HAS_SIZE | CMT_HAS_AUX;
}

static void maybe_sample(const struct cmt_event *e)
{
    if (e->kind == CMT_KIND_STREAM_ORDERED && e->op != CMT_OP_SAMPLE) {
        atomic_store_explicit(&pools_in_use, 1, memory_order_relaxed);
        if (e->api == CMT_API_cuMemAllocFromPoolAsync || e->api == CMT_API_cuMemAllocFromPoolAsync_ptsz) {
            int dv = (e->present & CMT_HAS_DEVICE) ? e->device : -1;
            for (int i = 0; dv >= 0 && dv < CMT_SHM_MAX_DEVICES && i < CMT_SAMPLE_POOLS; i++) {
                uint64_t want = 0;
                if (atomic_load(&named_pools[dv][i]) == e->handle ||
                    atomic_compare_exchange_strong(&named_pools[dv][i], &want, e->handle))
                    break;
            }
        }
    }
    const struct cmt_driver *d = cmt_driver();
    if (!d || !d->mem_get_info)
        return;
    uint64_t now = cmt_now_ns();
    struct cmt_event s;
    sample_event(&s, CMT_API_cuMemGetInfo_v2, now);
    int dev = (s.present & CMT_HAS_DEVICE) ? s.device : -1;
    if (dev < 0 || dev >= CMT_SHM_MAX_DEVICES)
        return; /* no context on this thread: nothing to ask cuMemGetInfo about */
    uint64_t last = atomic_load_explicit(&last_sample[dev], memory_order_relaxed);
    if ((last && now - last < cmt_config.sample_ns) ||
        !atomic_compare_exchange_strong(&last_sample[dev], &last, now))
        return;
    size_t fr = 0, total = 0;
    if (d->mem_get_info(&fr, &total) != CUDA_SUCCESS)
        return;
    s.free_bytes = fr;
    s.total_bytes = total;
    s.present |= CMT_HAS_MEMINFO;
    describe_device(dev);
    sample_nvml(&s, dev);
    push_sample(&s);
    if (!atomic_load_explicit(&pools_in_use, memory_order_relaxed) || !d->mem_pool_get_attribute)
        return;
    CUmemoryPool def = NULL, cur = NULL;
    if (d->device_get_default_mem_pool && d->device_get_default_mem_pool(&def, dev) == CUDA_SUCCESS)
        sample_pool(def, dev, now);
    if (d->device_get_mem_pool && d->device_get_mem_pool(&cur, dev) == CUDA_SUCCESS && cur != def)
        sample_pool(cur, dev, now);
    for (int i = 0; i < CMT_SAMPLE_POOLS; i++) {
        CUmemoryPool p = (CUmemoryPool)(uintptr_t)atomic_load(&named_pools[dev][i]);
        if (p && p != def && p != cur)
            sample_pool(p, dev, now);
    }
}

void cmt_call_commit(struct cmt_call *c)
{
    struct cmt_event *e = &c->u.ev;
    if (atomic_load_explicit(&cmt_state, memory_order_acquire) == CMT_IDLE) {
        if (cmt_capture_start() == 0)
            cmt_nvtx_capture_started(); /* ranges still open from before: queued ahead of this event */
    } else
        cmt_capture_await();
    cmt_capture_check();
    if (e->present & CMT_HAS_DEVICE)
        describe_device(e->device); /* before the event is queued: the writer finds it described */
    push(e);
    if (cmt_config.sample_ns)
        maybe_sample(e);
    tls_depth--;
}

void cmt_record_init(void)
{
    cmt_resolve_self_range(&self_lo, &self_hi);
}

void cmt_record_after_fork(void)
{
    atomic_store(&stalled_at, UINT64_MAX);
    tls_tid = 0;
    tls_ctx = 0;
}
