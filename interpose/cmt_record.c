/*
 * cmt_record.c: building events on the application's thread (see cmt_record.h).
 *
 * Runs on application threads. Never blocks on a lock, never calls SQLite, never allocates.
 */
#include "cmt_record.h"

#include "cmt_log.h"
#include "cmt_resolve.h"
#include "cmt_runtime.h"
#include "cmt_writer.h"

#include "cmt_events.h"

#define UNW_LOCAL_ONLY
#include <dlfcn.h>
#include <errno.h>
#include <libunwind.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
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

static struct cmt_device_info devinfo[CMT_MAX_DEVICES];
static _Atomic int devstate[CMT_MAX_DEVICES]; /* 0 not yet, 1 being described, 2 described */

static void describe_device(int dev)
{
    if (dev < 0 || dev >= CMT_MAX_DEVICES || atomic_load_explicit(&devstate[dev], memory_order_acquire))
        return;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&devstate[dev], &expected, 1))
        return; /* another thread is at it */
    const struct cmt_driver *d = cmt_driver();
    struct cmt_device_info *info = &devinfo[dev];
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
    atomic_store_explicit(&devstate[dev], 2, memory_order_release);
}

const struct cmt_device_info *cmt_record_device_info(int dev)
{
    if (dev < 0 || dev >= CMT_MAX_DEVICES || atomic_load_explicit(&devstate[dev], memory_order_acquire) != 2)
        return NULL;
    return &devinfo[dev];
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

/* libunwind, loaded privately (see interpose/meson.build for why not linked) at the first recorded call,
 * not at start: most processes a preloaded library lands in (shells, compilers, data-loader workers)
 * never make one. NULL if unavailable. */
static int (*backtrace_fn)(void **, int);
static pthread_once_t unwind_once = PTHREAD_ONCE_INIT;

static void load_unwind(void)
{
    /* RTLD_LOCAL: libunwind's _Unwind_* and backtrace stay out of the program's symbol lookups. */
    void *h = dlopen("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        cmt_log("libunwind.so.8 could not be loaded (%s): events are recorded without stacks", dlerror());
        return;
    }
    int (*set_caching)(unw_addr_space_t, unw_caching_policy_t) =
        (int (*)(unw_addr_space_t, unw_caching_policy_t))cmt_real_dlsym(h, "_ULx86_64_set_caching_policy");
    unw_addr_space_t *local = (unw_addr_space_t *)cmt_real_dlsym(h, "_ULx86_64_local_addr_space");
    /* libunwind's global cache has a lock and no fork handler: a fork while another thread held it
     * would leave the child stuck at its first recorded call. Per-thread caches have no lock. */
    if (set_caching && local)
        set_caching(*local, UNW_CACHE_PER_THREAD);
    backtrace_fn = (int (*)(void **, int))cmt_real_dlsym(h, "unw_backtrace");
}

/* noinline: its own frame is the first one unwound, and is left off the stack. */
__attribute__((noinline)) static unsigned capture_stack(uintptr_t *out, unsigned depth)
{
    if (!depth)
        return 0;
    pthread_once(&unwind_once, load_unwind);
    if (!backtrace_fn)
        return 0;
    void *buf[CMT_MAX_DEPTH];
    unsigned want = depth + 8 < CMT_MAX_DEPTH ? depth + 8 : CMT_MAX_DEPTH;
    int n = backtrace_fn(buf, (int)want);
    if (n <= 0)
        return 0;
    /* Drop our own frames (this function, the recorder, the wrapper): depth 0 is the code that called
     * the driver entry point. */
    int first = 0;
    while (first < n && (uintptr_t)buf[first] >= self_lo && (uintptr_t)buf[first] < self_hi)
        first++;
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
    if (st == CMT_DISABLED || st == CMT_CLOSED)
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

uint64_t cmt_record_range_size(uint64_t address)
{
    const struct cmt_driver *d = cmt_driver();
    CUdeviceptr base = 0;
    size_t size = 0;
    if (!d || !d->mem_get_address_range || d->mem_get_address_range(&base, &size, (CUdeviceptr)address) != CUDA_SUCCESS)
        size = 0;
    return size;
}

void cmt_call_commit(struct cmt_call *c)
{
    struct cmt_event *e = &c->u.ev;
    if (e->present & CMT_HAS_DEVICE)
        describe_device(e->device); /* before the event is queued: the writer finds it described */
    if (atomic_load_explicit(&cmt_state, memory_order_acquire) == CMT_IDLE)
        cmt_writer_start();
    /* Wait for room rather than lose the event, but never forever: 2 s, then count it as lost. A writer
     * found stuck once is not waited for again until it has taken something off the queue. */
    const struct timespec pause = {0, 50 * 1000};
    uint64_t deadline = 0;
    for (;;) {
        int st = atomic_load_explicit(&cmt_state, memory_order_acquire);
        if (st == CMT_DISABLED)
            break; /* our failure was reported; the file is gone, so nothing is "lost" from it */
        if (cmt_ring_push(&cmt_queue, e) == 0) {
            if (cmt_ring_fill(&cmt_queue) > (cmt_queue.mask + 1) / 2)
                cmt_writer_wake();
            break;
        }
        uint64_t taken = __atomic_load_n(&cmt_queue.dequeue_pos, __ATOMIC_RELAXED);
        if (!cmt_writer_alive() || cmt_writer_is_self() || taken == atomic_load(&stalled_at)) {
            atomic_fetch_add_explicit(&cmt_lost, 1, memory_order_relaxed);
            break;
        }
        uint64_t now = cmt_now_ns();
        if (!deadline)
            deadline = now + 2000000000ull;
        if (now >= deadline) {
            atomic_store(&stalled_at, taken);
            atomic_fetch_add_explicit(&cmt_lost, 1, memory_order_relaxed);
            break;
        }
        cmt_writer_wake();
        nanosleep(&pause, NULL);
    }
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
