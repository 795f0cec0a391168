/*
 * cmt_resolve.c: the real driver, our dlsym, and our cuGetProcAddress (see cmt_resolve.h).
 *
 * Runs on application threads, possibly before our constructor (another library's constructor may call
 * dlsym), so every lazily resolved pointer is an atomic that is safe to compute twice.
 */
#include "cmt_resolve.h"

#include "cmt_log.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CMT_HOOK(name, base, since, per_thread, when, params, args, fill) __typeof__(&name) cmt_real_##name;
#include "hooks.def"
#undef CMT_HOOK

static __typeof__(&cuGetProcAddress) real_gpa_v1;
static __typeof__(&cuGetProcAddress_v2) real_gpa_v2;

struct hook_entry {
    const char *name;
    const char *base;
    int since;
    int per_thread;
    void *wrapper;
    void **real;
};

/* The resolver's table: every recorded hook, and cuGetProcAddress itself, which records nothing but is
 * handed out as ours so that lookups made through the pointer it returns come through us too. */
static const struct hook_entry hooks[] = {
#define CMT_HOOK(name, base, since, per_thread, when, params, args, fill)                                  \
    {#name, #base, since, per_thread, (void *)&name, (void **)&cmt_real_##name},
#include "hooks.def"
#undef CMT_HOOK
    {"cuGetProcAddress", "cuGetProcAddress", 11030, 0, (void *)&cuGetProcAddress, (void **)&real_gpa_v1},
    {"cuGetProcAddress_v2", "cuGetProcAddress", 12000, 0, (void *)&cuGetProcAddress_v2, (void **)&real_gpa_v2},
};
#define NHOOKS (sizeof hooks / sizeof hooks[0])

/* Where each concrete name lives in the real libcuda, for recognising what cuGetProcAddress returned. */
static void *_Atomic exported[NHOOKS];

/* ---- the real dlsym ------------------------------------------------------------------------------ */

typedef void *(*dlsym_fn)(void *, const char *);

/* Read by the assembly trampoline below: hidden, so it is reached without a GOT. */
__attribute__((visibility("hidden"))) dlsym_fn cmt_dlsym_tail;

/* dlvsym is not overridden, so this cannot recurse into our dlsym. Never instrumented: a sanitizer's
 * runtime calls dlsym (so, here) while initializing itself, before its instrumentation can run. */
__attribute__((visibility("hidden"), no_sanitize("thread", "address", "undefined"))) dlsym_fn cmt_dlsym_init(void)
{
    dlsym_fn f = __atomic_load_n(&cmt_dlsym_tail, __ATOMIC_ACQUIRE);
    if (f)
        return f;
    f = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.34");
    if (!f)
        f = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", "GLIBC_2.2.5");
    if (!f)
        abort(); /* invariant: glibc always has one of these versions; without it no lookup can work */
    __atomic_store_n(&cmt_dlsym_tail, f, __ATOMIC_RELEASE);
    return f;
}

void *cmt_real_dlsym(void *handle, const char *name)
{
    return cmt_dlsym_init()(handle, name);
}

/* ---- the real libcuda ---------------------------------------------------------------------------- */

static void *_Atomic libcuda_handle;

static void *libcuda(void)
{
    void *h = atomic_load(&libcuda_handle);
    if (h)
        return h;
    const char *path = getenv("CUMEMTRACE_LIBCUDA");
    if (!path || !*path)
        path = "libcuda.so.1";
    /* Already loaded (linked, or dlopen'ed by libcudart) in every normal case. */
    h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (!h)
        h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (!h)
        return NULL;
    void *expected = NULL;
    if (!atomic_compare_exchange_strong(&libcuda_handle, &expected, h))
        dlclose(h); /* another thread won; keep one reference */
    return atomic_load(&libcuda_handle);
}

static void *exported_addr(size_t i)
{
    void *p = atomic_load(&exported[i]);
    if (!p) {
        void *h = libcuda();
        if (!h)
            return NULL;
        p = cmt_real_dlsym(h, hooks[i].name);
        atomic_store(&exported[i], p);
    }
    return p;
}

static void set_real(size_t i, void *fn)
{
    void *expected = NULL;
    __atomic_compare_exchange_n(hooks[i].real, &expected, fn, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static void *resolve_index(size_t i)
{
    void *p = __atomic_load_n(hooks[i].real, __ATOMIC_ACQUIRE);
    if (p)
        return p;
    p = exported_addr(i);
    if (p)
        set_real(i, p);
    return __atomic_load_n(hooks[i].real, __ATOMIC_ACQUIRE);
}

void *cmt_resolve_real(enum cmt_hook_id id)
{
    return resolve_index(id);
}

static struct cmt_driver driver;
static pthread_once_t driver_once = PTHREAD_ONCE_INIT;

static void fill_driver(void)
{
    void *h = libcuda();
#define GET(field, name) driver.field = (__typeof__(driver.field))cmt_real_dlsym(h, name)
    GET(ctx_get_current, "cuCtxGetCurrent");
    GET(ctx_get_device, "cuCtxGetDevice");
    GET(mem_get_info, "cuMemGetInfo_v2");
    GET(mem_get_address_range, "cuMemGetAddressRange_v2");
    GET(device_get_name, "cuDeviceGetName");
    GET(device_total_mem, "cuDeviceTotalMem_v2");
    GET(device_get_uuid, "cuDeviceGetUuid");
    GET(driver_get_version, "cuDriverGetVersion");
    GET(device_get_graph_mem_attribute, "cuDeviceGetGraphMemAttribute");
    GET(mem_pool_get_attribute, "cuMemPoolGetAttribute");
    GET(device_get_default_mem_pool, "cuDeviceGetDefaultMemPool");
    GET(device_get_mem_pool, "cuDeviceGetMemPool");
#undef GET
}

const struct cmt_driver *cmt_driver(void)
{
    if (!libcuda())
        return NULL; /* not loadable yet: try again next time rather than remember the failure */
    pthread_once(&driver_once, fill_driver);
    return &driver;
}

/* ---- substituting our wrappers ------------------------------------------------------------------- */

static long find_by_name(const char *name)
{
    for (size_t i = 0; i < NHOOKS; i++)
        if (!strcmp(hooks[i].name, name))
            return (long)i;
    return -1;
}

/* Which of our wrappers has the ABI of what cuGetProcAddress(symbol, version, flags) returned. The
 * pointer itself decides when it is one of libcuda's exported functions; otherwise the documented rule
 * does: the newest variant introduced at or before cudaVersion, its per-thread form when asked for. */
static long choose_variant(const char *symbol, void *fn, int version, cuuint64_t flags)
{
    long best = -1;
    int want_pt = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
    for (size_t i = 0; i < NHOOKS; i++) {
        if (strcmp(hooks[i].base, symbol) != 0)
            continue;
        if (fn == hooks[i].wrapper || fn == exported_addr(i))
            return (long)i;
        if (hooks[i].since > version || (hooks[i].per_thread && !want_pt))
            continue;
        if (best < 0 || hooks[i].since > hooks[best].since ||
            (hooks[i].since == hooks[best].since && hooks[i].per_thread == want_pt))
            best = (long)i;
    }
    return best;
}

static void *substitute(const char *symbol, void *fn, int version, cuuint64_t flags)
{
    if (!symbol || !fn || symbol[0] != 'c' || symbol[1] != 'u')
        return fn;
    long i = choose_variant(symbol, fn, version, flags);
    if (i < 0 || fn == hooks[i].wrapper)
        return fn;
    set_real((size_t)i, fn);
    return hooks[i].wrapper;
}

CMT_EXPORT CUresult CUDAAPI cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                                     CUdriverProcAddressQueryResult *symbolStatus)
{
    __typeof__(&cuGetProcAddress_v2) real = (__typeof__(real))resolve_index(NHOOKS - 1);
    if (!real)
        return CUDA_ERROR_NOT_INITIALIZED;
    CUresult r = real(symbol, pfn, cudaVersion, flags, symbolStatus);
    if (r == CUDA_SUCCESS && pfn)
        *pfn = substitute(symbol, *pfn, cudaVersion, flags);
    return r;
}

CMT_EXPORT CUresult CUDAAPI cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags)
{
    __typeof__(&cuGetProcAddress) real = (__typeof__(real))resolve_index(NHOOKS - 2);
    if (!real)
        return CUDA_ERROR_NOT_INITIALIZED;
    CUresult r = real(symbol, pfn, cudaVersion, flags);
    if (r == CUDA_SUCCESS && pfn)
        *pfn = substitute(symbol, *pfn, cudaVersion, flags);
    return r;
}

/* ---- our dlsym ----------------------------------------------------------------------------------- */

/* dlsym on a specific handle: the lookup does not depend on who asks, so we may ask in the caller's
 * place and swap in our wrapper for a hooked name. */
__attribute__((visibility("hidden"))) void *cmt_dlsym_handle(void *handle, const char *name)
{
    void *r = cmt_real_dlsym(handle, name);
    if (!r || !name || name[0] != 'c' || name[1] != 'u')
        return r;
    long i = find_by_name(name);
    /* Only libcuda's own function is ours to wrap: the same name in another object (a stub, a vGPU
     * limiter, a mock) is that object's business, and must not become the "real" driver for everyone. */
    if (i < 0 || r == hooks[i].wrapper || r != exported_addr((size_t)i))
        return r;
    set_real((size_t)i, r);
    return hooks[i].wrapper;
}

/*
 * dlsym itself, in assembly because RTLD_NEXT and RTLD_DEFAULT lookups depend on the caller: glibc reads
 * its return address to know which object is asking. Those two we pass on with a tail jump, so the real
 * dlsym sees the program's return address, never ours; RTLD_DEFAULT lookups of driver names still find
 * our wrappers, which LD_PRELOAD put first in the global scope. Lookups on a handle go to
 * cmt_dlsym_handle above.
 */
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl dlsym\n"
        ".type dlsym, @function\n"
        "dlsym:\n"
        "    cmpq $-1, %rdi\n" /* RTLD_NEXT */
        "    je 1f\n"
        "    testq %rdi, %rdi\n" /* RTLD_DEFAULT */
        "    je 1f\n"
        "    jmp cmt_dlsym_handle\n"
        "1:  movq cmt_dlsym_tail(%rip), %rax\n"
        "    testq %rax, %rax\n"
        "    je 2f\n"
        "    jmp *%rax\n"
        "2:  pushq %rdi\n" /* first call ever: resolve, keeping the arguments and 16-byte alignment */
        "    pushq %rsi\n"
        "    subq $8, %rsp\n"
        "    call cmt_dlsym_init\n"
        "    addq $8, %rsp\n"
        "    popq %rsi\n"
        "    popq %rdi\n"
        "    jmp *%rax\n"
        ".size dlsym, .-dlsym\n");
#else
#error "cumemtrace's dlsym trampoline is written for x86-64 only"
#endif

/* ---- our own code range -------------------------------------------------------------------------- */

struct range_query {
    uintptr_t addr, lo, hi;
};

static int find_range(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct range_query *q = arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
            continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (q->addr >= lo && q->addr < hi) {
            q->lo = lo;
            q->hi = hi;
            return 1;
        }
    }
    return 0;
}

void cmt_resolve_self_range(uintptr_t *lo, uintptr_t *hi)
{
    struct range_query q = {(uintptr_t)&cmt_resolve_self_range, 0, 0};
    dl_iterate_phdr(find_range, &q);
    *lo = q.lo;
    *hi = q.hi;
}
