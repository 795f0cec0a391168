/*
 * simcuda_mem.c: the simulated driver's memory model: device capacity in 2 MiB pages, first-fit address
 * allocation with reuse of freed ranges, every allocation entry point (v1 32-bit and v2, pitch, managed,
 * host-pinned, stream-ordered pools, VMM, IPC), cuMemGetInfo, cuMemGetAddressRange, the copies that only
 * validate addresses, and the memory probes.
 *
 * Runs on application threads under sim.lock (taken by each entry point here; helpers marked "lock held"
 * expect it). Device memory has no contents: device addresses are numbers in reserved, inaccessible VA and
 * are never dereferenced. Host-pinned and managed memory are real (mmap), because programs touch them.
 *
 * Accounting, per device: an allocation of n bytes costs ceil(n / 2 MiB) pages of capacity; so do managed
 * allocations, every chunk a stream-ordered pool holds (in use or not) and every VMM physical handle
 * (cuMemCreate) until its last reference goes. Host-pinned memory, VA reservations and IPC mappings cost
 * nothing. CUDA_ERROR_OUT_OF_MEMORY when the pages do not fit.
 */
#include "simcuda_driver.h"

#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "simcuda_probe.h"

#define PITCH_ALIGN 512 /* what cuMemAllocPitch rounds a row to on sm_90 */

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

static uint64_t pages_of(uint64_t bytes)
{
    return (bytes + SIM_PAGE - 1) / SIM_PAGE;
}

/* ---- address ranges --------------------------------------------------------------------------- */

int sim_va_alloc(struct sim_va *va, uint64_t len, uint64_t align, uint64_t *out)
{
    /* First fit: the lowest aligned gap that holds LEN, so a freed range is handed out again. */
    uint64_t cur = align_up(va->base, align);
    int i;
    for (i = 0; i < va->n; i++) {
        if (cur + len <= va->used[i].start)
            break;
        uint64_t end = va->used[i].start + va->used[i].len;
        if (end > cur)
            cur = align_up(end, align);
    }
    if (cur + len > va->limit || cur + len < cur)
        return -1;
    if (va->n == va->cap) {
        int cap = va->cap ? va->cap * 2 : 64;
        struct sim_range *r = realloc(va->used, cap * sizeof *r);
        if (!r)
            return -1;
        va->used = r;
        va->cap = cap;
    }
    memmove(&va->used[i + 1], &va->used[i], (va->n - i) * sizeof *va->used);
    va->used[i] = (struct sim_range){cur, len};
    va->n++;
    *out = cur;
    return 0;
}

void sim_va_free(struct sim_va *va, uint64_t start)
{
    int lo = 0, hi = va->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (va->used[mid].start == start) {
            memmove(&va->used[mid], &va->used[mid + 1], (va->n - mid - 1) * sizeof *va->used);
            va->n--;
            return;
        }
        if (va->used[mid].start < start)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    abort(); /* invariant: only ranges this allocator handed out are freed */
}

/* ---- contents: device memory is backed only where the program wrote it ----------------------- */

/* A simulated 80 GB device runs on a machine with less memory: device allocations have no storage of
 * their own. What the program copies or sets into device memory is kept, in 64 KiB chunks allocated at
 * the first write, so what it reads back is what it wrote (a value copied to the GPU and read back by
 * .item(), a loss scale, a length); bytes never written read as zeros. Kernels do not run, so nothing
 * they would have written is ever here. Keyed by device address; lock held for all of these. */
#define CHUNK_SHIFT 16
#define CHUNK ((uint64_t)1 << CHUNK_SHIFT)

struct chunk {
    uint64_t index;          /* address >> CHUNK_SHIFT; 0 marks an empty slot (no device address is that low) */
    unsigned char *data;
};
static struct chunk *chunks;
static uint64_t nchunks, capchunks; /* capchunks: a power of two */

static uint64_t chunk_hash(uint64_t index)
{
    return (index * 0x9E3779B97F4A7C15ull) >> 17;
}

static struct chunk *chunk_find(uint64_t index)
{
    if (!capchunks)
        return NULL;
    for (uint64_t i = chunk_hash(index) & (capchunks - 1);; i = (i + 1) & (capchunks - 1)) {
        if (chunks[i].index == index)
            return &chunks[i];
        if (chunks[i].index == 0)
            return NULL;
    }
}

static int chunk_grow(void)
{
    uint64_t cap = capchunks ? capchunks * 2 : 1024;
    struct chunk *t = calloc(cap, sizeof *t);
    if (!t)
        return -1;
    for (uint64_t j = 0; j < capchunks; j++)
        if (chunks[j].index) {
            uint64_t i = chunk_hash(chunks[j].index) & (cap - 1);
            while (t[i].index)
                i = (i + 1) & (cap - 1);
            t[i] = chunks[j];
        }
    free(chunks);
    chunks = t;
    capchunks = cap;
    return 0;
}

/* The chunk's storage, made (zeroed) if absent; NULL if out of host memory. */
static unsigned char *chunk_data(uint64_t index)
{
    struct chunk *c = chunk_find(index);
    if (c)
        return c->data;
    if ((nchunks + 1) * 2 > capchunks && chunk_grow() != 0)
        return NULL;
    unsigned char *d = calloc(1, CHUNK);
    if (!d)
        return NULL;
    uint64_t i = chunk_hash(index) & (capchunks - 1);
    while (chunks[i].index)
        i = (i + 1) & (capchunks - 1);
    chunks[i] = (struct chunk){index, d};
    nchunks++;
    return d;
}

static int backing_write(uint64_t addr, const void *src, uint64_t n)
{
    const unsigned char *p = src;
    while (n) {
        uint64_t off = addr & (CHUNK - 1), len = CHUNK - off < n ? CHUNK - off : n;
        unsigned char *d = chunk_data(addr >> CHUNK_SHIFT);
        if (!d)
            return -1;
        memcpy(d + off, p, len);
        addr += len, p += len, n -= len;
    }
    return 0;
}

static void backing_read(void *dst, uint64_t addr, uint64_t n)
{
    unsigned char *p = dst;
    while (n) {
        uint64_t off = addr & (CHUNK - 1), len = CHUNK - off < n ? CHUNK - off : n;
        struct chunk *c = chunk_find(addr >> CHUNK_SHIFT);
        if (c)
            memcpy(p, c->data + off, len);
        else
            memset(p, 0, len);
        addr += len, p += len, n -= len;
    }
}

/* Sets N elements of ELEM bytes (1, 2 or 4) to VALUE. Zeros into unwritten chunks cost nothing. */
static int backing_fill(uint64_t addr, unsigned int value, int elem, uint64_t n)
{
    uint64_t bytes = n * (uint64_t)elem;
    unsigned char pattern[4];
    memcpy(pattern, &value, 4);
    while (bytes) {
        uint64_t off = addr & (CHUNK - 1), len = CHUNK - off < bytes ? CHUNK - off : bytes;
        struct chunk *c = chunk_find(addr >> CHUNK_SHIFT);
        unsigned char *d = c ? c->data : NULL;
        if (!d && value != 0 && !(d = chunk_data(addr >> CHUNK_SHIFT)))
            return -1;
        if (d) {
            if (elem == 1)
                memset(d + off, (int)(value & 0xff), len);
            else
                for (uint64_t i = 0; i < len; i++) /* addr is element-aligned: the pattern starts at byte 0 */
                    d[off + i] = pattern[(addr + i) % (uint64_t)elem];
        }
        addr += len, bytes -= len;
    }
    return 0;
}

static void chunk_remove_at(uint64_t i)
{
    free(chunks[i].data);
    chunks[i].index = 0;
    nchunks--;
    /* Re-place the entries of the probe run after the hole (linear probing deletion). */
    for (uint64_t j = (i + 1) & (capchunks - 1); chunks[j].index; j = (j + 1) & (capchunks - 1)) {
        struct chunk c = chunks[j];
        chunks[j].index = 0;
        uint64_t k = chunk_hash(c.index) & (capchunks - 1);
        while (chunks[k].index)
            k = (k + 1) & (capchunks - 1);
        chunks[k] = c;
    }
}

/* Forgets the contents of [addr, addr + len): the memory was freed. */
static void backing_drop(uint64_t addr, uint64_t len)
{
    if (!nchunks || !len)
        return;
    uint64_t first = addr >> CHUNK_SHIFT, last = (addr + len - 1) >> CHUNK_SHIFT;
    if (last - first < capchunks) {
        for (uint64_t idx = first; idx <= last; idx++) {
            struct chunk *c = chunk_find(idx);
            if (c)
                chunk_remove_at((uint64_t)(c - chunks));
        }
        return;
    }
    for (uint64_t i = 0; i < capchunks;) {
        if (chunks[i].index >= first && chunks[i].index <= last)
            chunk_remove_at(i); /* the slot may now hold an entry moved back: look at it again */
        else
            i++;
    }
}

/* ---- the allocation registry ------------------------------------------------------------------ */

enum kind {
    K_DEVICE,   /* cuMemAlloc (v1/v2), cuMemAllocPitch */
    K_MANAGED,  /* cuMemAllocManaged: real host memory, charged to the device */
    K_HOST,     /* cuMemAllocHost, cuMemHostAlloc: real host memory, free of charge */
    K_POOL,     /* a chunk of a stream-ordered pool */
    K_IPC,      /* cuIpcOpenMemHandle's mapping of another process's allocation */
    K_GLOBAL,   /* a module's __device__/__constant__ variable: module memory, not charged */
};

struct sim_alloc {
    uint64_t addr;
    uint64_t size;          /* bytes asked for: what cuMemGetAddressRange reports */
    uint64_t span;          /* bytes of VA (or of the host mapping) it occupies */
    uint64_t pages;         /* capacity pages charged to dev */
    int dev;
    enum kind kind;
    CUcontext ctx;          /* the context it was allocated in (pool chunks: none) */
    struct sim_va *va;      /* where its address came from, NULL for host memory */
    struct CUmemPoolHandle_st *pool; /* K_POOL */
    int in_use;             /* K_POOL: handed out (and in the registry) rather than free in the pool */
    int ipc_pid;            /* K_IPC: the exporting process and address */
    uint64_t ipc_addr;
    int refs;               /* K_IPC: opens not yet closed */
};

/* Live allocations (pool chunks only while in use), sorted by address. */
static struct sim_alloc **reg;
static int nreg, capreg;

/* Index of the first entry with addr >= ADDR. */
static int reg_lower_bound(uint64_t addr)
{
    int lo = 0, hi = nreg;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (reg[mid]->addr < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct sim_alloc *reg_exact(uint64_t addr)
{
    int i = reg_lower_bound(addr);
    return i < nreg && reg[i]->addr == addr ? reg[i] : NULL;
}

/* The live allocation whose [addr, addr + size) holds ADDR. */
static struct sim_alloc *reg_containing(uint64_t addr)
{
    int i = reg_lower_bound(addr + 1) - 1;
    if (i >= 0 && addr < reg[i]->addr + (reg[i]->size ? reg[i]->size : 1))
        return reg[i];
    return NULL;
}

static int reg_insert(struct sim_alloc *a)
{
    if (nreg == capreg) {
        int cap = capreg ? capreg * 2 : 256;
        struct sim_alloc **r = realloc(reg, cap * sizeof *r);
        if (!r)
            return -1;
        reg = r;
        capreg = cap;
    }
    int i = reg_lower_bound(a->addr);
    memmove(&reg[i + 1], &reg[i], (nreg - i) * sizeof *reg);
    reg[i] = a;
    nreg++;
    return 0;
}

static void reg_remove(struct sim_alloc *a)
{
    int i = reg_lower_bound(a->addr);
    if (i >= nreg || reg[i] != a)
        abort(); /* invariant: only registered allocations are removed */
    memmove(&reg[i], &reg[i + 1], (nreg - i - 1) * sizeof *reg);
    nreg--;
}

/* ---- capacity --------------------------------------------------------------------------------- */

/* SIMCUDA_OTHER_PROCESS (see simcuda.c): another process's memory, charged on every device once its time
 * has come. Lock held. */
static int other_parsed;
static uint64_t other_pages, other_after_ns, other_first_ns;
static int other_arrived;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void other_process_check(void)
{
    if (!other_parsed) {
        other_parsed = 1;
        const char *v = getenv("SIMCUDA_OTHER_PROCESS");
        if (v && *v) {
            char buf[64];
            snprintf(buf, sizeof buf, "%s", v);
            char *at = strchr(buf, '@');
            if (at)
                *at++ = 0;
            uint64_t bytes = sim_parse_size(buf);
            char *end = NULL;
            unsigned long long ms = at ? strtoull(at, &end, 10) : 0;
            if (!bytes || (at && (!*at || *end)))
                fprintf(stderr, "simcuda: SIMCUDA_OTHER_PROCESS=%s not understood (SIZE or SIZE@MS); ignored\n", v);
            else {
                other_pages = (bytes + SIM_PAGE - 1) / SIM_PAGE;
                other_after_ns = ms * 1000000ull;
            }
        }
        other_first_ns = mono_ns();
    }
    if (other_arrived || !other_pages || mono_ns() - other_first_ns < other_after_ns)
        return;
    other_arrived = 1;
    for (int d = 0; d < sim.ndev; d++) {
        uint64_t room = sim.dev[d].capacity_pages - sim.dev[d].used_pages;
        sim.dev[d].used_pages += other_pages < room ? other_pages : room; /* it took what there was */
    }
}

/* The other process's bytes on DEVICE now (for NVML). */
__attribute__((visibility("default"))) size_t simcuda_other_process_bytes(int device)
{
    sim_lock();
    if (sim.initialized)
        other_process_check();
    size_t v = other_arrived && device >= 0 && device < sim.ndev ? other_pages * SIM_PAGE : 0;
    sim_unlock();
    return v;
}

static CUresult charge(int dev, uint64_t pages)
{
    other_process_check();
    struct sim_device *d = &sim.dev[dev];
    if (pages > d->capacity_pages - d->used_pages)
        return CUDA_ERROR_OUT_OF_MEMORY;
    d->used_pages += pages;
    return CUDA_SUCCESS;
}

static void uncharge(int dev, uint64_t pages)
{
    if (pages > sim.dev[dev].used_pages)
        abort(); /* invariant: every page given back was charged */
    sim.dev[dev].used_pages -= pages;
}

/* Lock held. Charges, places and registers a device allocation of BYTES (rounded to pages) in VA. */
static CUresult new_device_alloc(CUcontext ctx, struct sim_va *va, uint64_t bytes, enum kind kind,
                                 struct sim_alloc **out)
{
    uint64_t pages = pages_of(bytes);
    CUresult rc = charge(ctx->dev, pages);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct sim_alloc *a = calloc(1, sizeof *a);
    uint64_t addr;
    if (!a || sim_va_alloc(va, pages * SIM_PAGE, SIM_PAGE, &addr) != 0) {
        free(a);
        uncharge(ctx->dev, pages);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *a = (struct sim_alloc){.addr = addr, .size = bytes, .span = pages * SIM_PAGE, .pages = pages,
                            .dev = ctx->dev, .kind = kind, .ctx = ctx, .va = va};
    if (reg_insert(a) != 0) {
        sim_va_free(va, addr);
        uncharge(ctx->dev, pages);
        free(a);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *out = a;
    return CUDA_SUCCESS;
}

/* Lock held. Gives back everything A holds and forgets it. Not for pool chunks. */
static void release_alloc(struct sim_alloc *a)
{
    reg_remove(a);
    if (a->kind != K_MANAGED && a->kind != K_HOST)
        backing_drop(a->addr, a->span);
    if (a->va)
        sim_va_free(a->va, a->addr);
    if (a->kind == K_MANAGED || a->kind == K_HOST)
        munmap((void *)(uintptr_t)a->addr, a->span);
    if (a->pages)
        uncharge(a->dev, a->pages);
    free(a);
}

/* ---- cuMemAlloc, cuMemAllocPitch, cuMemFree (v1 and v2) -------------------------------------- */

/* V1: the 32-bit ABI, whose addresses must fit in an unsigned int: the low region, below 4 GiB. */
static CUresult mem_alloc(uint64_t *dptr, uint64_t bytes, int v1)
{
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && (!dptr || bytes == 0))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        rc = sim_current_ctx(&ctx);
    if (rc == CUDA_SUCCESS)
        rc = sim_capture_unsafe();
    struct sim_alloc *a = NULL;
    if (rc == CUDA_SUCCESS)
        rc = new_device_alloc(ctx, v1 ? &sim.low : &sim.dev[ctx->dev].va, bytes, K_DEVICE, &a);
    if (rc == CUDA_SUCCESS)
        *dptr = a->addr;
    sim_unlock();
    return rc;
}

CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
    SIM_ENTER();
    uint64_t p = 0;
    CUresult rc = mem_alloc(dptr ? &p : NULL, bytesize, 0);
    if (rc == CUDA_SUCCESS)
        *dptr = p;
    return rc;
}

CUresult cuMemAlloc(CUdeviceptr_v1 *dptr, unsigned int bytesize)
{
    SIM_ENTER();
    uint64_t p = 0;
    CUresult rc = mem_alloc(dptr ? &p : NULL, bytesize, 1);
    if (rc == CUDA_SUCCESS)
        *dptr = (CUdeviceptr_v1)p;
    return rc;
}

static CUresult pitch_size(uint64_t width, uint64_t height, unsigned int elem, uint64_t *pitch, uint64_t *bytes)
{
    if (width == 0 || height == 0 || (elem != 4 && elem != 8 && elem != 16))
        return CUDA_ERROR_INVALID_VALUE;
    *pitch = align_up(width, PITCH_ALIGN);
    if (height > UINT64_MAX / *pitch)
        return CUDA_ERROR_INVALID_VALUE;
    *bytes = *pitch * height;
    return CUDA_SUCCESS;
}

CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes, size_t Height,
                            unsigned int ElementSizeBytes)
{
    SIM_ENTER();
    uint64_t pitch, bytes, p = 0;
    if (!dptr || !pPitch)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = pitch_size(WidthInBytes, Height, ElementSizeBytes, &pitch, &bytes);
    if (rc == CUDA_SUCCESS)
        rc = mem_alloc(&p, bytes, 0);
    if (rc == CUDA_SUCCESS) {
        *dptr = p;
        *pPitch = pitch;
    }
    return rc;
}

CUresult cuMemAllocPitch(CUdeviceptr_v1 *dptr, unsigned int *pPitch, unsigned int WidthInBytes,
                         unsigned int Height, unsigned int ElementSizeBytes)
{
    SIM_ENTER();
    uint64_t pitch, bytes, p = 0;
    if (!dptr || !pPitch)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = pitch_size(WidthInBytes, Height, ElementSizeBytes, &pitch, &bytes);
    if (rc == CUDA_SUCCESS && bytes > UINT32_MAX)
        rc = CUDA_ERROR_INVALID_VALUE; /* the 32-bit ABI cannot describe it */
    if (rc == CUDA_SUCCESS)
        rc = mem_alloc(&p, bytes, 1);
    if (rc == CUDA_SUCCESS) {
        *dptr = (CUdeviceptr_v1)p;
        *pPitch = (unsigned int)pitch;
    }
    return rc;
}

/* Lock held. Returns chunk C to its pool (or releases it if the pool was destroyed meanwhile). */
static void pool_put_back(struct sim_alloc *c);

static CUresult mem_free(uint64_t dptr)
{
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = sim_current_ctx(&ctx);
    struct sim_alloc *a = NULL;
    /* Freeing 0 succeeds and does nothing: libcudart's cudaFree(NULL), its way to initialise, ends here. */
    if (rc == CUDA_SUCCESS && dptr == 0) {
        sim_unlock();
        return CUDA_SUCCESS;
    }
    if (rc == CUDA_SUCCESS)
        rc = sim_capture_unsafe();
    if (rc == CUDA_SUCCESS) {
        a = reg_exact(dptr);
        if (!a || a->kind == K_HOST || a->kind == K_IPC)
            rc = CUDA_ERROR_INVALID_VALUE;
    }
    if (rc == CUDA_SUCCESS) {
        if (a->kind == K_POOL)
            pool_put_back(a); /* cuMemFree of stream-ordered memory: allowed, frees at once */
        else
            release_alloc(a);
    }
    sim_unlock();
    return rc;
}

CUresult cuMemFree_v2(CUdeviceptr dptr)
{
    SIM_ENTER();
    return mem_free(dptr);
}

CUresult cuMemFree(CUdeviceptr_v1 dptr)
{
    SIM_ENTER();
    return mem_free(dptr);
}

/* ---- host-pinned and managed memory ----------------------------------------------------------- */

static CUresult host_alloc(void **pp, uint64_t bytes, enum kind kind)
{
    if (!pp || bytes == 0)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = sim_current_ctx(&ctx);
    uint64_t pages = kind == K_MANAGED ? pages_of(bytes) : 0;
    if (rc == CUDA_SUCCESS && pages)
        rc = charge(ctx->dev, pages);
    if (rc == CUDA_SUCCESS) {
        uint64_t span = align_up(bytes, (uint64_t)sysconf(_SC_PAGESIZE));
        void *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        struct sim_alloc *a = p == MAP_FAILED ? NULL : calloc(1, sizeof *a);
        if (a) {
            *a = (struct sim_alloc){.addr = (uintptr_t)p, .size = bytes, .span = span, .pages = pages,
                                    .dev = ctx->dev, .kind = kind, .ctx = ctx};
        }
        if (!a || reg_insert(a) != 0) {
            if (p != MAP_FAILED)
                munmap(p, span);
            free(a);
            if (pages)
                uncharge(ctx->dev, pages);
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            *pp = p;
        }
    }
    sim_unlock();
    return rc;
}

CUresult cuMemAllocHost_v2(void **pp, size_t bytesize)
{
    SIM_ENTER();
    return host_alloc(pp, bytesize, K_HOST);
}

CUresult cuMemAllocHost(void **pp, unsigned int bytesize)
{
    SIM_ENTER();
    return host_alloc(pp, bytesize, K_HOST);
}

CUresult cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags)
{
    SIM_ENTER();
    if (Flags & ~(unsigned)(CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED))
        return CUDA_ERROR_INVALID_VALUE;
    return host_alloc(pp, bytesize, K_HOST);
}

CUresult cuMemFreeHost(void *p)
{
    SIM_ENTER();
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = sim_current_ctx(&ctx);
    if (rc == CUDA_SUCCESS) {
        struct sim_alloc *a = reg_exact((uintptr_t)p);
        if (!a || a->kind != K_HOST)
            rc = CUDA_ERROR_INVALID_VALUE;
        else
            release_alloc(a);
    }
    sim_unlock();
    return rc;
}

CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
    SIM_ENTER();
    if (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST)
        return CUDA_ERROR_INVALID_VALUE;
    void *p = NULL;
    CUresult rc = host_alloc(dptr ? &p : NULL, bytesize, K_MANAGED);
    if (rc == CUDA_SUCCESS)
        *dptr = (uintptr_t)p;
    return rc;
}

/* ---- information ------------------------------------------------------------------------------ */

static CUresult mem_get_info(uint64_t *free_b, uint64_t *total_b)
{
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = sim_current_ctx(&ctx);
    if (rc == CUDA_SUCCESS) {
        other_process_check();
        struct sim_device *d = &sim.dev[ctx->dev];
        *free_b = (d->capacity_pages - d->used_pages) * SIM_PAGE;
        *total_b = d->total_bytes;
    }
    sim_unlock();
    return rc;
}

CUresult cuMemGetInfo_v2(size_t *free, size_t *total)
{
    SIM_ENTER();
    uint64_t f, t;
    if (!free || !total)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = mem_get_info(&f, &t);
    if (rc == CUDA_SUCCESS) {
        *free = f;
        *total = t;
    }
    return rc;
}

/* The 32-bit ABI: values above 4 GiB are clamped. */
CUresult cuMemGetInfo(unsigned int *free, unsigned int *total)
{
    SIM_ENTER();
    uint64_t f, t;
    if (!free || !total)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = mem_get_info(&f, &t);
    if (rc == CUDA_SUCCESS) {
        *free = f > UINT32_MAX ? UINT32_MAX : (unsigned int)f;
        *total = t > UINT32_MAX ? UINT32_MAX : (unsigned int)t;
    }
    return rc;
}

/* ---- VMM: reservations, physical handles, mappings -------------------------------------------- */

struct resv {
    uint64_t addr, size;
};
struct phys {
    CUmemGenericAllocationHandle id;
    uint64_t size, pages;
    int dev;
    int handle_refs;        /* cuMemCreate's reference plus cuMemRetainAllocationHandle's */
    int map_refs;           /* one per cuMemMap not yet unmapped */
    int imported;           /* another process's memory (cuMemImportFromShareableHandle): never charged */
};
struct mapping {
    uint64_t addr, size;
    struct phys *phys;
};

static struct resv *resvs;
static int nresvs, capresvs;
static struct phys **physs;
static int nphyss, capphyss;
static struct mapping *maps;
static int nmaps, capmaps;
static CUmemGenericAllocationHandle next_handle = 0x5100000001ull; /* opaque, recognisable */

#define GROW(arr, n, cap) \
    ((n) < (cap) || ((arr) = realloc((arr), ((cap) = (cap) ? (cap) * 2 : 32) * sizeof *(arr))) != NULL)

static struct phys *find_phys(CUmemGenericAllocationHandle id)
{
    for (int i = 0; i < nphyss; i++)
        if (physs[i]->id == id)
            return physs[i];
    return NULL;
}

/* Lock held. Capacity comes back only when no handle reference and no mapping remains. */
static void phys_maybe_free(struct phys *p)
{
    if (p->handle_refs > 0 || p->map_refs > 0)
        return;
    if (!p->imported)
        uncharge(p->dev, p->pages);
    for (int i = 0; i < nphyss; i++)
        if (physs[i] == p) {
            physs[i] = physs[--nphyss];
            break;
        }
    free(p);
}

static int valid_prop(const CUmemAllocationProp *prop)
{
    return prop && prop->type == CU_MEM_ALLOCATION_TYPE_PINNED &&
           prop->location.type == CU_MEM_LOCATION_TYPE_DEVICE && prop->location.id >= 0 &&
           prop->location.id < sim.ndev;
}

CUresult cuMemGetAllocationGranularity(size_t *granularity, const CUmemAllocationProp *prop,
                                       CUmemAllocationGranularity_flags option)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && (!granularity || !valid_prop(prop) ||
                               (option != CU_MEM_ALLOC_GRANULARITY_MINIMUM &&
                                option != CU_MEM_ALLOC_GRANULARITY_RECOMMENDED)))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        *granularity = SIM_PAGE;
    sim_unlock();
    return rc;
}

CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment, CUdeviceptr addr,
                             unsigned long long flags)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && (!ptr || size == 0 || size % SIM_PAGE || (alignment & (alignment - 1))))
        rc = CUDA_ERROR_INVALID_VALUE;
    uint64_t a = 0;
    /* ADDR is only a hint, and this simulator does not take it. Reservations cost VA, not capacity. */
    if (rc == CUDA_SUCCESS && (!GROW(resvs, nresvs, capresvs) ||
                               sim_va_alloc(&sim.vmm, size, alignment > SIM_PAGE ? alignment : SIM_PAGE, &a)))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (rc == CUDA_SUCCESS) {
        resvs[nresvs++] = (struct resv){a, size};
        *ptr = a;
    }
    sim_unlock();
    return rc;
}

CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    int found = -1;
    for (int i = 0; rc == CUDA_SUCCESS && i < nresvs; i++)
        if (resvs[i].addr == ptr && resvs[i].size == size)
            found = i;
    if (rc == CUDA_SUCCESS && found < 0)
        rc = CUDA_ERROR_INVALID_VALUE;
    /* Still-mapped pieces must be unmapped first. */
    for (int i = 0; rc == CUDA_SUCCESS && i < nmaps; i++)
        if (maps[i].addr >= ptr && maps[i].addr < ptr + size)
            rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS) {
        sim_va_free(&sim.vmm, ptr);
        resvs[found] = resvs[--nresvs];
    }
    sim_unlock();
    return rc;
}

CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                     unsigned long long flags)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && (!handle || size == 0 || size % SIM_PAGE || flags || !valid_prop(prop)))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        rc = charge(prop->location.id, size / SIM_PAGE);
    if (rc == CUDA_SUCCESS) {
        struct phys *p = calloc(1, sizeof *p);
        if (!p || !GROW(physs, nphyss, capphyss)) {
            free(p);
            uncharge(prop->location.id, size / SIM_PAGE);
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            *p = (struct phys){.id = next_handle++, .size = size, .pages = size / SIM_PAGE,
                               .dev = prop->location.id, .handle_refs = 1};
            physs[nphyss++] = p;
            *handle = p->id;
        }
    }
    sim_unlock();
    return rc;
}

CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    struct phys *p = rc == CUDA_SUCCESS ? find_phys(handle) : NULL;
    if (rc == CUDA_SUCCESS && (!p || p->handle_refs == 0))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS) {
        p->handle_refs--;
        phys_maybe_free(p);
    }
    sim_unlock();
    return rc;
}

CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && !handle)
        rc = CUDA_ERROR_INVALID_VALUE;
    struct mapping *m = NULL;
    for (int i = 0; rc == CUDA_SUCCESS && i < nmaps; i++)
        if ((uintptr_t)addr >= maps[i].addr && (uintptr_t)addr < maps[i].addr + maps[i].size)
            m = &maps[i];
    if (rc == CUDA_SUCCESS && !m)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS) {
        m->phys->handle_refs++;
        *handle = m->phys->id;
    }
    sim_unlock();
    return rc;
}

/* Shareable handles, POSIX file descriptors only: the descriptor is a memfd holding one line,
 * "simcuda PID HANDLE SIZE DEVICE". Imported in the exporting process, it is one more reference to the
 * same handle (the handle itself is returned); in another process, a handle of SIZE bytes on DEVICE that
 * costs this process nothing (the exporter was charged). */
CUresult cuMemExportToShareableHandle(void *shareableHandle, CUmemGenericAllocationHandle handle,
                                      CUmemAllocationHandleType handleType, unsigned long long flags)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    struct phys *p = rc == CUDA_SUCCESS ? find_phys(handle) : NULL;
    if (rc == CUDA_SUCCESS && (!shareableHandle || !p || flags))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS && handleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        rc = CUDA_ERROR_NOT_SUPPORTED;
    if (rc == CUDA_SUCCESS) {
        char line[128];
        int n = snprintf(line, sizeof line, "simcuda %d %llu %llu %d\n", (int)getpid(), (unsigned long long)p->id,
                         (unsigned long long)p->size, p->dev);
        int fd = memfd_create("simcuda-shareable", MFD_CLOEXEC);
        if (fd < 0 || write(fd, line, (size_t)n) != n) {
            if (fd >= 0)
                close(fd);
            rc = CUDA_ERROR_OPERATING_SYSTEM;
        } else {
            *(int *)shareableHandle = fd;
        }
    }
    sim_unlock();
    return rc;
}

CUresult cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *handle, void *osHandle,
                                        CUmemAllocationHandleType shHandleType)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && !handle)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS && shHandleType != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
        rc = CUDA_ERROR_NOT_SUPPORTED;
    char line[128] = "";
    int pid = 0, dev = -1;
    unsigned long long id = 0, size = 0;
    if (rc == CUDA_SUCCESS) {
        ssize_t n = pread((int)(intptr_t)osHandle, line, sizeof line - 1, 0);
        if (n <= 0 || sscanf(line, "simcuda %d %llu %llu %d", &pid, &id, &size, &dev) != 4 || dev < 0 ||
            dev >= sim.ndev || size == 0)
            rc = CUDA_ERROR_INVALID_VALUE;
    }
    if (rc == CUDA_SUCCESS && pid == (int)getpid()) {
        struct phys *p = find_phys(id);
        if (!p)
            rc = CUDA_ERROR_INVALID_VALUE;
        else {
            p->handle_refs++;
            *handle = p->id;
        }
    } else if (rc == CUDA_SUCCESS) {
        struct phys *p = calloc(1, sizeof *p);
        if (!p || !GROW(physs, nphyss, capphyss)) {
            free(p);
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            *p = (struct phys){.id = next_handle++, .size = size, .pages = pages_of(size), .dev = dev,
                               .handle_refs = 1, .imported = 1};
            physs[nphyss++] = p;
            *handle = p->id;
        }
    }
    sim_unlock();
    return rc;
}

/* Lock held. Device capacity for the other memory sources (arrays, graph memory: simcuda_graph.c). */
CUresult sim_charge_pages(int dev, uint64_t pages)
{
    return charge(dev, pages);
}

void sim_uncharge_pages(int dev, uint64_t pages)
{
    uncharge(dev, pages);
}

CUresult cuMemGetAllocationPropertiesFromHandle(CUmemAllocationProp *prop, CUmemGenericAllocationHandle handle)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    struct phys *p = rc == CUDA_SUCCESS ? find_phys(handle) : NULL;
    if (rc == CUDA_SUCCESS && (!prop || !p))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS) {
        memset(prop, 0, sizeof *prop);
        prop->type = CU_MEM_ALLOCATION_TYPE_PINNED;
        prop->location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        prop->location.id = p->dev;
    }
    sim_unlock();
    return rc;
}

CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset, CUmemGenericAllocationHandle handle,
                  unsigned long long flags)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    struct phys *p = rc == CUDA_SUCCESS ? find_phys(handle) : NULL;
    if (rc == CUDA_SUCCESS && (!p || p->handle_refs == 0 || flags || size == 0 || size % SIM_PAGE ||
                               offset % SIM_PAGE || offset > p->size || size > p->size - offset))
        rc = CUDA_ERROR_INVALID_VALUE;
    /* Only inside one reservation, and never over an existing mapping. */
    int inside = 0;
    for (int i = 0; rc == CUDA_SUCCESS && i < nresvs; i++)
        if (ptr >= resvs[i].addr && ptr + size <= resvs[i].addr + resvs[i].size && ptr + size > ptr)
            inside = 1;
    if (rc == CUDA_SUCCESS && !inside)
        rc = CUDA_ERROR_INVALID_VALUE;
    for (int i = 0; rc == CUDA_SUCCESS && i < nmaps; i++)
        if (ptr < maps[i].addr + maps[i].size && maps[i].addr < ptr + size)
            rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS && !GROW(maps, nmaps, capmaps))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (rc == CUDA_SUCCESS) {
        maps[nmaps++] = (struct mapping){ptr, size, p};
        p->map_refs++;
    }
    sim_unlock();
    return rc;
}

CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    /* The range must consist of whole mappings: none may stick out of it. */
    int whole = 0;
    for (int i = 0; rc == CUDA_SUCCESS && i < nmaps; i++) {
        if (!(ptr < maps[i].addr + maps[i].size && maps[i].addr < ptr + size))
            continue;
        if (maps[i].addr < ptr || maps[i].addr + maps[i].size > ptr + size)
            rc = CUDA_ERROR_INVALID_VALUE;
        whole++;
    }
    if (rc == CUDA_SUCCESS && (whole == 0 || size == 0))
        rc = CUDA_ERROR_INVALID_VALUE;
    for (int i = 0; rc == CUDA_SUCCESS && i < nmaps;) {
        if (maps[i].addr >= ptr && maps[i].addr + maps[i].size <= ptr + size) {
            struct phys *p = maps[i].phys;
            maps[i] = maps[--nmaps];
            p->map_refs--;
            phys_maybe_free(p);
        } else {
            i++;
        }
    }
    sim_unlock();
    return rc;
}

/* Lock held. Whether [ptr, ptr + size) is covered by mappings, gap-free. */
static int fully_mapped(uint64_t ptr, uint64_t size)
{
    uint64_t cur = ptr;
    for (int progress = 1; cur < ptr + size && progress;) {
        progress = 0;
        for (int i = 0; i < nmaps; i++)
            if (maps[i].addr <= cur && cur < maps[i].addr + maps[i].size) {
                cur = maps[i].addr + maps[i].size;
                progress = 1;
            }
    }
    return size > 0 && cur >= ptr + size;
}

CUresult cuMemSetAccess(CUdeviceptr ptr, size_t size, const CUmemAccessDesc *desc, size_t count)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && (!desc || count == 0 || !fully_mapped(ptr, size)))
        rc = CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; rc == CUDA_SUCCESS && i < count; i++)
        if (desc[i].location.type != CU_MEM_LOCATION_TYPE_DEVICE || desc[i].location.id < 0 ||
            desc[i].location.id >= sim.ndev ||
            (desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_NONE && desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_READ &&
             desc[i].flags != CU_MEM_ACCESS_FLAGS_PROT_READWRITE))
            rc = CUDA_ERROR_INVALID_VALUE;
    sim_unlock();
    return rc;
}

/* ---- address ranges and copies ---------------------------------------------------------------- */

/* Lock held. The allocation or mapping holding ADDR: base and size; 0 when none. */
static int find_range(uint64_t addr, uint64_t *base, uint64_t *size, struct sim_alloc **alloc)
{
    struct sim_alloc *a = reg_containing(addr);
    if (a && a->kind != K_HOST) {
        *base = a->addr;
        *size = a->size;
        *alloc = a;
        return 1;
    }
    for (int i = 0; i < nmaps; i++)
        if (addr >= maps[i].addr && addr < maps[i].addr + maps[i].size) {
            *base = maps[i].addr;
            *size = maps[i].size;
            *alloc = NULL;
            return 1;
        }
    return 0;
}

CUresult cuMemGetAddressRange_v2(CUdeviceptr *pbase, size_t *psize, CUdeviceptr dptr)
{
    SIM_ENTER();
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = sim_current_ctx(&ctx);
    uint64_t base, size;
    struct sim_alloc *a;
    if (rc == CUDA_SUCCESS && !find_range(dptr, &base, &size, &a))
        rc = CUDA_ERROR_NOT_FOUND;
    if (rc == CUDA_SUCCESS) {
        if (pbase)
            *pbase = base;
        if (psize)
            *psize = size;
    }
    sim_unlock();
    return rc;
}

/* Lock held. Checks that [dptr, dptr + n) lies in one allocation or in mapped memory; *host is where its bytes
 * really are (managed memory) or NULL (device memory: its contents are in the backing store). */
static CUresult check_device_range(uint64_t dptr, uint64_t n, void **host)
{
    uint64_t base, size;
    struct sim_alloc *a;
    if (!find_range(dptr, &base, &size, &a))
        return CUDA_ERROR_INVALID_VALUE;
    /* mappings side by side in one reserved range (an expandable segment grown page by page) are one
     * range to a copy, as on a real device */
    if (n > size - (dptr - base) && (a || !fully_mapped(dptr, n)))
        return CUDA_ERROR_INVALID_VALUE;
    *host = a && a->kind == K_MANAGED ? (void *)(uintptr_t)dptr : NULL;
    return CUDA_SUCCESS;
}

/* Lock held. One side of a copy: device memory (DEV set: ADDR is a device address, HOST where its bytes
 * are if they are real) or ordinary host memory (HOST). */
struct side {
    int dev;
    uint64_t addr;
    void *host;
};

/* Lock held. What a unified address names: device memory when it lies in an allocation or mapping of
 * ours (not host-pinned memory, which is real host memory), host memory otherwise. */
static struct side classify(uint64_t p)
{
    uint64_t base, size;
    struct sim_alloc *a;
    if (find_range(p, &base, &size, &a))
        return (struct side){1, p, a && a->kind == K_MANAGED ? (void *)(uintptr_t)p : NULL};
    return (struct side){0, p, (void *)(uintptr_t)p};
}

/* Lock held. */
static CUresult do_copy(struct side dst, struct side src, uint64_t n)
{
    if (!n)
        return CUDA_SUCCESS;
    void *h;
    if (dst.dev && check_device_range(dst.addr, n, &h) != CUDA_SUCCESS)
        return CUDA_ERROR_INVALID_VALUE;
    if (src.dev && check_device_range(src.addr, n, &h) != CUDA_SUCCESS)
        return CUDA_ERROR_INVALID_VALUE;
    if ((!dst.dev && !dst.host) || (!src.dev && !src.host))
        return CUDA_ERROR_INVALID_VALUE;
    if (dst.host && src.host) {
        memmove(dst.host, src.host, n);
    } else if (dst.host) {
        backing_read(dst.host, src.addr, n);
    } else if (src.host) {
        if (backing_write(dst.addr, src.host, n) != 0)
            return CUDA_ERROR_OUT_OF_MEMORY;
    } else {
        /* device to device, in bounded steps through a buffer (the ranges may overlap) */
        unsigned char buf[4096];
        int backwards = dst.addr > src.addr && dst.addr < src.addr + n;
        for (uint64_t done = 0; done < n;) {
            uint64_t len = n - done < sizeof buf ? n - done : sizeof buf;
            uint64_t off = backwards ? n - done - len : done;
            backing_read(buf, src.addr + off, len);
            if (backing_write(dst.addr + off, buf, len) != 0)
                return CUDA_ERROR_OUT_OF_MEMORY;
            done += len;
        }
    }
    return CUDA_SUCCESS;
}

static struct side dev_side(uint64_t addr)
{
    return (struct side){1, addr, NULL};
}

static struct side host_side(const void *p)
{
    return (struct side){0, (uintptr_t)p, (void *)p};
}

/* The explicit directions: the device side must be device memory (a host address there is
 * CUDA_ERROR_INVALID_VALUE, never a host-to-host copy); managed memory is resolved to its real bytes.
 * CHECK_STREAM: the copy is stream-ordered and S must belong to a live context; otherwise the calling
 * thread needs a current context. */
static CUresult copy_to_device(uint64_t dst, const void *src, uint64_t n, int check_stream, CUstream s)
{
    if (n && !src)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = check_stream ? sim_stream_ctx(s, &ctx) : sim_current_ctx(&ctx);
    int captured = 0; /* queued into a capturing stream: a node of its graph, nothing moves */
    if (rc == CUDA_SUCCESS && check_stream)
        rc = sim_capture_op(s, CU_GRAPH_NODE_TYPE_MEMCPY, &captured);
    if (rc == CUDA_SUCCESS && !captured) {
        struct side d = classify(dst);
        rc = do_copy(d.dev ? d : dev_side(dst), host_side(src), n);
    }
    sim_unlock();
    return rc;
}

static CUresult copy_to_host(void *dst, uint64_t src, uint64_t n, int check_stream, CUstream s)
{
    if (n && !dst)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = check_stream ? sim_stream_ctx(s, &ctx) : sim_current_ctx(&ctx);
    int captured = 0; /* queued into a capturing stream: a node of its graph, nothing moves */
    if (rc == CUDA_SUCCESS && check_stream)
        rc = sim_capture_op(s, CU_GRAPH_NODE_TYPE_MEMCPY, &captured);
    if (rc == CUDA_SUCCESS && !captured) {
        struct side d = classify(src);
        rc = do_copy(host_side(dst), d.dev ? d : dev_side(src), n);
    }
    sim_unlock();
    return rc;
}

CUresult cuMemcpyHtoD_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)
{
    SIM_ENTER();
    return copy_to_device(dstDevice, srcHost, ByteCount, 0, NULL);
}

CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)
{
    SIM_ENTER();
    return copy_to_device(dstDevice, srcHost, ByteCount, 0, NULL);
}

CUresult cuMemcpyDtoH_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
{
    SIM_ENTER();
    return copy_to_host(dstHost, srcDevice, ByteCount, 0, NULL);
}

CUresult cuMemcpyDtoH_v2_ptds(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
{
    SIM_ENTER();
    return copy_to_host(dstHost, srcDevice, ByteCount, 0, NULL);
}

static CUresult copy_unified(uint64_t dst, uint64_t src, uint64_t n, int check_stream, CUstream s)
{
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = check_stream ? sim_stream_ctx(s, &ctx) : sim_current_ctx(&ctx);
    int captured = 0; /* queued into a capturing stream: a node of its graph, nothing moves */
    if (rc == CUDA_SUCCESS && check_stream)
        rc = sim_capture_op(s, CU_GRAPH_NODE_TYPE_MEMCPY, &captured);
    if (rc == CUDA_SUCCESS && !captured && n && (!dst || !src))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS && !captured)
        rc = do_copy(classify(dst), classify(src), n);
    sim_unlock();
    return rc;
}

CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount, CUstream hStream)
{
    SIM_ENTER();
    return copy_to_device(dstDevice, srcHost, ByteCount, 1, hStream);
}

CUresult cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount, CUstream hStream)
{
    SIM_ENTER();
    return copy_to_device(dstDevice, srcHost, ByteCount, 1, sim_per_thread(hStream));
}

CUresult cuMemcpyDtoHAsync_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream)
{
    SIM_ENTER();
    return copy_to_host(dstHost, srcDevice, ByteCount, 1, hStream);
}

CUresult cuMemcpyDtoHAsync_v2_ptsz(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream)
{
    SIM_ENTER();
    return copy_to_host(dstHost, srcDevice, ByteCount, 1, sim_per_thread(hStream));
}

CUresult cuMemcpyDtoD_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount)
{
    SIM_ENTER();
    return copy_unified(dstDevice, srcDevice, ByteCount, 0, NULL);
}

CUresult cuMemcpyDtoD_v2_ptds(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount)
{
    SIM_ENTER();
    return copy_unified(dstDevice, srcDevice, ByteCount, 0, NULL);
}

CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream)
{
    SIM_ENTER();
    return copy_unified(dstDevice, srcDevice, ByteCount, 1, hStream);
}

CUresult cuMemcpyDtoDAsync_v2_ptsz(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount,
                                   CUstream hStream)
{
    SIM_ENTER();
    return copy_unified(dstDevice, srcDevice, ByteCount, 1, sim_per_thread(hStream));
}

CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount)
{
    SIM_ENTER();
    return copy_unified(dst, src, ByteCount, 0, NULL);
}

CUresult cuMemcpy_ptds(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount)
{
    SIM_ENTER();
    return copy_unified(dst, src, ByteCount, 0, NULL);
}

CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount, CUstream hStream)
{
    SIM_ENTER();
    return copy_unified(dst, src, ByteCount, 1, hStream);
}

CUresult cuMemcpyAsync_ptsz(CUdeviceptr dst, CUdeviceptr src, size_t ByteCount, CUstream hStream)
{
    SIM_ENTER();
    return copy_unified(dst, src, ByteCount, 1, sim_per_thread(hStream));
}

CUresult cuMemcpyPeer(CUdeviceptr dstDevice, CUcontext dstContext, CUdeviceptr srcDevice, CUcontext srcContext,
                      size_t ByteCount)
{
    SIM_ENTER();
    return copy_unified(dstDevice, srcDevice, ByteCount, 0, NULL);
}

CUresult cuMemcpyPeer_ptds(CUdeviceptr dstDevice, CUcontext dstContext, CUdeviceptr srcDevice,
                           CUcontext srcContext, size_t ByteCount)
{
    SIM_ENTER();
    return copy_unified(dstDevice, srcDevice, ByteCount, 0, NULL);
}

CUresult cuMemcpyPeerAsync(CUdeviceptr dstDevice, CUcontext dstContext, CUdeviceptr srcDevice,
                           CUcontext srcContext, size_t ByteCount, CUstream hStream)
{
    SIM_ENTER();
    return copy_unified(dstDevice, srcDevice, ByteCount, 1, hStream);
}

CUresult cuMemcpyPeerAsync_ptsz(CUdeviceptr dstDevice, CUcontext dstContext, CUdeviceptr srcDevice,
                                CUcontext srcContext, size_t ByteCount, CUstream hStream)
{
    SIM_ENTER();
    return copy_unified(dstDevice, srcDevice, ByteCount, 1, sim_per_thread(hStream));
}

/* ---- memset ----------------------------------------------------------------------------------- */

static CUresult memset_n(uint64_t dst, unsigned int value, int elem, uint64_t n, int check_stream, CUstream s)
{
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = check_stream ? sim_stream_ctx(s, &ctx) : sim_current_ctx(&ctx);
    int captured = 0; /* queued into a capturing stream: a node of its graph, nothing moves */
    if (rc == CUDA_SUCCESS && check_stream)
        rc = sim_capture_op(s, CU_GRAPH_NODE_TYPE_MEMSET, &captured);
    void *host = NULL;
    if (rc == CUDA_SUCCESS && !captured && (dst % (uint64_t)elem) != 0)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS && !captured && n)
        rc = n > UINT64_MAX / (uint64_t)elem ? CUDA_ERROR_INVALID_VALUE : check_device_range(dst, n * elem, &host);
    if (rc == CUDA_SUCCESS && !captured && n) {
        if (host) {
            unsigned char *p = host;
            for (uint64_t i = 0; i < n * (uint64_t)elem; i++)
                p[i] = ((unsigned char *)&value)[i % (uint64_t)elem];
        } else if (backing_fill(dst, value, elem, n) != 0) {
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        }
    }
    sim_unlock();
    return rc;
}

CUresult cuMemsetD8_v2(CUdeviceptr dstDevice, unsigned char uc, size_t N)
{
    SIM_ENTER();
    return memset_n(dstDevice, uc, 1, N, 0, NULL);
}

CUresult cuMemsetD8_v2_ptds(CUdeviceptr dstDevice, unsigned char uc, size_t N)
{
    SIM_ENTER();
    return memset_n(dstDevice, uc, 1, N, 0, NULL);
}

CUresult cuMemsetD16_v2(CUdeviceptr dstDevice, unsigned short us, size_t N)
{
    SIM_ENTER();
    return memset_n(dstDevice, us, 2, N, 0, NULL);
}

CUresult cuMemsetD16_v2_ptds(CUdeviceptr dstDevice, unsigned short us, size_t N)
{
    SIM_ENTER();
    return memset_n(dstDevice, us, 2, N, 0, NULL);
}

CUresult cuMemsetD32_v2(CUdeviceptr dstDevice, unsigned int ui, size_t N)
{
    SIM_ENTER();
    return memset_n(dstDevice, ui, 4, N, 0, NULL);
}

CUresult cuMemsetD32_v2_ptds(CUdeviceptr dstDevice, unsigned int ui, size_t N)
{
    SIM_ENTER();
    return memset_n(dstDevice, ui, 4, N, 0, NULL);
}

CUresult cuMemsetD8Async(CUdeviceptr dstDevice, unsigned char uc, size_t N, CUstream hStream)
{
    SIM_ENTER();
    return memset_n(dstDevice, uc, 1, N, 1, hStream);
}

CUresult cuMemsetD8Async_ptsz(CUdeviceptr dstDevice, unsigned char uc, size_t N, CUstream hStream)
{
    SIM_ENTER();
    return memset_n(dstDevice, uc, 1, N, 1, sim_per_thread(hStream));
}

CUresult cuMemsetD16Async(CUdeviceptr dstDevice, unsigned short us, size_t N, CUstream hStream)
{
    SIM_ENTER();
    return memset_n(dstDevice, us, 2, N, 1, hStream);
}

CUresult cuMemsetD16Async_ptsz(CUdeviceptr dstDevice, unsigned short us, size_t N, CUstream hStream)
{
    SIM_ENTER();
    return memset_n(dstDevice, us, 2, N, 1, sim_per_thread(hStream));
}

CUresult cuMemsetD32Async(CUdeviceptr dstDevice, unsigned int ui, size_t N, CUstream hStream)
{
    SIM_ENTER();
    return memset_n(dstDevice, ui, 4, N, 1, hStream);
}

CUresult cuMemsetD32Async_ptsz(CUdeviceptr dstDevice, unsigned int ui, size_t N, CUstream hStream)
{
    SIM_ENTER();
    return memset_n(dstDevice, ui, 4, N, 1, sim_per_thread(hStream));
}

/* ---- pointer attributes ----------------------------------------------------------------------- */

/* Lock held. One attribute of PTR into DATA; unknown host memory is CUDA_ERROR_INVALID_VALUE, as the
 * real driver answers cuPointerGetAttribute about memory it does not know. */
static CUresult pointer_attribute(void *data, CUpointer_attribute attr, uint64_t ptr, int lenient)
{
    uint64_t base, size;
    struct sim_alloc *a = reg_containing(ptr);
    int is_host = a && a->kind == K_HOST;
    int known = is_host || find_range(ptr, &base, &size, &a);
    if (!known && !lenient)
        return CUDA_ERROR_INVALID_VALUE;
    if (!known) {
        /* cuPointerGetAttributes: ordinary host memory reads as unregistered */
        switch (attr) {
        case CU_POINTER_ATTRIBUTE_MEMORY_TYPE: *(unsigned int *)data = 0; break;
        case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL: *(int *)data = -2; break;
        case CU_POINTER_ATTRIBUTE_CONTEXT: *(CUcontext *)data = NULL; break;
        case CU_POINTER_ATTRIBUTE_DEVICE_POINTER: case CU_POINTER_ATTRIBUTE_HOST_POINTER:
            *(void **)data = NULL; break;
        case CU_POINTER_ATTRIBUTE_IS_MANAGED: case CU_POINTER_ATTRIBUTE_MAPPED:
            *(int *)data = 0; break;
        default: break;
        }
        return CUDA_SUCCESS;
    }
    if (is_host) {
        base = a->addr;
        size = a->size;
    }
    int dev = a ? a->dev : 0;
    switch (attr) {
    case CU_POINTER_ATTRIBUTE_CONTEXT:
        *(CUcontext *)data = a && a->ctx ? a->ctx : &sim.dev[dev].primary;
        break;
    case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
        *(unsigned int *)data = is_host ? CU_MEMORYTYPE_HOST : CU_MEMORYTYPE_DEVICE;
        break;
    case CU_POINTER_ATTRIBUTE_DEVICE_POINTER:
        *(CUdeviceptr *)data = ptr;
        break;
    case CU_POINTER_ATTRIBUTE_HOST_POINTER:
        if (!is_host && !(a && a->kind == K_MANAGED))
            return CUDA_ERROR_INVALID_VALUE;
        *(void **)data = (void *)(uintptr_t)ptr;
        break;
    case CU_POINTER_ATTRIBUTE_SYNC_MEMOPS:
        *(int *)data = 1;
        break;
    case CU_POINTER_ATTRIBUTE_BUFFER_ID:
        *(unsigned long long *)data = base;
        break;
    case CU_POINTER_ATTRIBUTE_IS_MANAGED:
        *(int *)data = a && a->kind == K_MANAGED;
        break;
    case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL:
        *(int *)data = dev;
        break;
    case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR:
        *(CUdeviceptr *)data = base;
        break;
    case CU_POINTER_ATTRIBUTE_RANGE_SIZE:
        *(size_t *)data = size;
        break;
    case CU_POINTER_ATTRIBUTE_MAPPED:
        *(int *)data = 1;
        break;
    case CU_POINTER_ATTRIBUTE_IS_LEGACY_CUDA_IPC_CAPABLE:
        *(int *)data = a && a->kind == K_DEVICE;
        break;
    case CU_POINTER_ATTRIBUTE_ALLOWED_HANDLE_TYPES:
        *(unsigned long long *)data = 0;
        break;
    case CU_POINTER_ATTRIBUTE_ACCESS_FLAGS:
        *(unsigned int *)data = CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READWRITE;
        break;
    case CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE:
        *(CUmemoryPool *)data = a && a->kind == K_POOL ? a->pool : NULL;
        break;
    case CU_POINTER_ATTRIBUTE_IS_GPU_DIRECT_RDMA_CAPABLE:
        *(int *)data = 0;
        break;
    default:
        return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

CUresult cuPointerGetAttribute(void *data, CUpointer_attribute attribute, CUdeviceptr ptr)
{
    SIM_ENTER();
    if (!data)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS)
        rc = pointer_attribute(data, attribute, ptr, 0);
    sim_unlock();
    return rc;
}

CUresult cuPointerGetAttributes(unsigned int numAttributes, CUpointer_attribute *attributes, void **data,
                                CUdeviceptr ptr)
{
    SIM_ENTER();
    if (!attributes || !data)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUresult rc = sim_check_init();
    for (unsigned int i = 0; rc == CUDA_SUCCESS && i < numAttributes; i++)
        if (data[i] && pointer_attribute(data[i], attributes[i], ptr, 1) != CUDA_SUCCESS) {
            /* an attribute that does not apply (the host pointer of device memory) reads as zero */
            if (attributes[i] == CU_POINTER_ATTRIBUTE_HOST_POINTER)
                *(void **)data[i] = NULL;
        }
    sim_unlock();
    return rc;
}

/* ---- module memory (simcuda_exec.c): globals live in the device's address space, uncharged ---- */

CUresult sim_mem_global_alloc(int dev, uint64_t size, uint64_t *addr)
{
    struct sim_alloc *a = calloc(1, sizeof *a);
    uint64_t span = align_up(size, SIM_PAGE), at;
    if (!a || sim_va_alloc(&sim.dev[dev].va, span, SIM_PAGE, &at) != 0) {
        free(a);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *a = (struct sim_alloc){.addr = at, .size = size, .span = span, .dev = dev, .kind = K_GLOBAL,
                            .va = &sim.dev[dev].va};
    if (reg_insert(a) != 0) {
        sim_va_free(a->va, at);
        free(a);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *addr = at;
    return CUDA_SUCCESS;
}

void sim_mem_global_free(uint64_t addr)
{
    struct sim_alloc *a = reg_exact(addr);
    if (a && a->kind == K_GLOBAL)
        release_alloc(a);
}

/* ---- stream-ordered pools --------------------------------------------------------------------- */

static struct CUmemPoolHandle_st *pool_new(int dev, int is_default)
{
    struct CUmemPoolHandle_st *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->dev = dev;
    p->is_default = is_default;
    p->reuse[0] = p->reuse[1] = p->reuse[2] = 1; /* the real defaults: all reuse policies on */
    p->next = sim.pools;
    sim.pools = p;
    return p;
}

static int pool_valid(CUmemoryPool pool)
{
    for (struct CUmemPoolHandle_st *p = sim.pools; p; p = p->next)
        if (p == pool)
            return !p->destroyed;
    return 0;
}

static void pool_unlink_free(struct CUmemPoolHandle_st *pool)
{
    for (struct CUmemPoolHandle_st **pp = &sim.pools; *pp; pp = &(*pp)->next)
        if (*pp == pool) {
            *pp = pool->next;
            break;
        }
    free(pool->chunks);
    free(pool);
}

/* Lock held. Releases the pool's chunk at index I (not in use): VA and capacity go back. */
static void pool_release_chunk(struct CUmemPoolHandle_st *pool, int i)
{
    struct sim_alloc *c = pool->chunks[i];
    pool->reserved -= c->span;
    sim_va_free(c->va, c->addr);
    uncharge(c->dev, c->pages);
    memmove(&pool->chunks[i], &pool->chunks[i + 1], (pool->nchunks - i - 1) * sizeof *pool->chunks);
    pool->nchunks--;
    free(c);
}

/* Lock held. Gives back free chunks, newest first, until the pool holds at most KEEP bytes. */
static void pool_trim(struct CUmemPoolHandle_st *pool, uint64_t keep)
{
    for (int i = pool->nchunks - 1; i >= 0 && pool->reserved > keep; i--)
        if (!pool->chunks[i]->in_use)
            pool_release_chunk(pool, i);
}

void sim_mem_init_device(int dev)
{
    sim.dev[dev].default_pool = sim.dev[dev].current_pool = pool_new(dev, 1);
}

void sim_mem_sync_device(int dev)
{
    for (struct CUmemPoolHandle_st *p = sim.pools; p; p = p->next)
        if (p->dev == dev)
            pool_trim(p, p->release_threshold);
}

/* A pool's "used" memory (CU_MEMPOOL_ATTR_USED_MEM_*, what torch's cudaMallocAsync backend reports as
 * allocated bytes): each allocation's size rounded up to 512 bytes. The real driver sub-allocates small
 * requests inside its pages and does not document its rounding; ours hands each allocation a whole chunk of
 * 2 MiB pages (that is the pool's reserved memory), and states the used figure at the finer granularity a
 * sub-allocator would, so that used is what the program asked for, not an artefact of our chunking. */
static uint64_t pool_used_bytes(uint64_t bytes)
{
    return (bytes + 511) / 512 * 512;
}

static void pool_put_back(struct sim_alloc *c)
{
    struct CUmemPoolHandle_st *pool = c->pool;
    reg_remove(c);
    c->in_use = 0;
    pool->used -= pool_used_bytes(c->size);
    if (pool->destroyed) {
        /* The pool was destroyed while this was outstanding: nothing will reuse it. */
        pool_trim(pool, 0);
        int busy = 0;
        for (int i = 0; i < pool->nchunks; i++)
            busy |= pool->chunks[i]->in_use;
        if (!busy)
            pool_unlink_free(pool);
    }
}

/* Lock held. A chunk of POOL for BYTES: the smallest free chunk that fits, else a new one (which costs
 * capacity; on OUT_OF_MEMORY the pool first gives back its own free chunks and tries once more). */
static CUresult pool_alloc(struct CUmemPoolHandle_st *pool, uint64_t bytes, uint64_t *out)
{
    uint64_t need = pages_of(bytes) * SIM_PAGE;
    struct sim_alloc *best = NULL;
    for (int i = 0; i < pool->nchunks; i++) {
        struct sim_alloc *c = pool->chunks[i];
        if (!c->in_use && c->span >= need && (!best || c->span < best->span))
            best = c;
    }
    if (!best) {
        CUresult rc = charge(pool->dev, need / SIM_PAGE);
        if (rc == CUDA_ERROR_OUT_OF_MEMORY) {
            pool_trim(pool, 0);
            rc = charge(pool->dev, need / SIM_PAGE);
        }
        if (rc != CUDA_SUCCESS)
            return rc;
        struct sim_alloc *c = calloc(1, sizeof *c);
        uint64_t addr;
        struct sim_va *va = &sim.dev[pool->dev].va;
        if (!c || !GROW(pool->chunks, pool->nchunks, pool->cap) || sim_va_alloc(va, need, SIM_PAGE, &addr)) {
            free(c);
            uncharge(pool->dev, need / SIM_PAGE);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        *c = (struct sim_alloc){.addr = addr, .span = need, .pages = need / SIM_PAGE, .dev = pool->dev,
                                .kind = K_POOL, .va = va, .pool = pool};
        pool->chunks[pool->nchunks++] = c;
        pool->reserved += need;
        if (pool->reserved > pool->reserved_high)
            pool->reserved_high = pool->reserved;
        best = c;
    }
    if (reg_insert(best) != 0)
        return CUDA_ERROR_OUT_OF_MEMORY; /* defensive: the chunk stays free in the pool */
    best->in_use = 1;
    best->size = bytes;
    pool->used += pool_used_bytes(bytes);
    if (pool->used > pool->used_high)
        pool->used_high = pool->used;
    *out = best->addr;
    return CUDA_SUCCESS;
}

/* POOL NULL: the current pool of the stream's device. */
static CUresult alloc_async(CUdeviceptr *dptr, size_t bytes, CUmemoryPool pool, CUstream stream, int from_pool)
{
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && (!dptr || bytes == 0 || (from_pool && !pool_valid(pool))))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        rc = sim_stream_ctx(stream, &ctx);
    uint64_t addr = 0;
    if (rc == CUDA_SUCCESS)
        rc = pool_alloc(from_pool ? pool : sim.dev[ctx->dev].current_pool, bytes, &addr);
    if (rc == CUDA_SUCCESS)
        *dptr = addr;
    sim_unlock();
    return rc;
}

CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    SIM_ENTER();
    return alloc_async(dptr, bytesize, NULL, hStream, 0);
}

CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    SIM_ENTER();
    return alloc_async(dptr, bytesize, NULL, hStream, 0);
}

CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream)
{
    SIM_ENTER();
    return alloc_async(dptr, bytesize, pool, hStream, 1);
}

CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool, CUstream hStream)
{
    SIM_ENTER();
    return alloc_async(dptr, bytesize, pool, hStream, 1);
}

/* Memory from a pool goes back to the pool (still reserved, still charged) until a synchronize trims it;
 * memory from cuMemAlloc is freed at once. */
static CUresult free_async(CUdeviceptr dptr, CUstream stream)
{
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = sim_stream_ctx(stream, &ctx);
    struct sim_alloc *a = NULL;
    if (rc == CUDA_SUCCESS) {
        a = reg_exact(dptr);
        if (!a || a->kind == K_HOST || a->kind == K_IPC)
            rc = CUDA_ERROR_INVALID_VALUE;
    }
    if (rc == CUDA_SUCCESS) {
        if (a->kind == K_POOL)
            pool_put_back(a);
        else
            release_alloc(a);
    }
    sim_unlock();
    return rc;
}

CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream)
{
    SIM_ENTER();
    return free_async(dptr, hStream);
}

CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream hStream)
{
    SIM_ENTER();
    return free_async(dptr, hStream);
}

CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && !pool_valid(pool))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        pool_trim(pool, minBytesToKeep);
    sim_unlock();
    return rc;
}

CUresult cuMemPoolCreate(CUmemoryPool *pool, const CUmemPoolProps *poolProps)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && (!pool || !poolProps || poolProps->allocType != CU_MEM_ALLOCATION_TYPE_PINNED ||
                               poolProps->location.type != CU_MEM_LOCATION_TYPE_DEVICE))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS && (poolProps->location.id < 0 || poolProps->location.id >= sim.ndev))
        rc = CUDA_ERROR_INVALID_DEVICE;
    if (rc == CUDA_SUCCESS) {
        struct CUmemPoolHandle_st *p = pool_new(poolProps->location.id, 0);
        if (!p)
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        else
            *pool = p;
    }
    sim_unlock();
    return rc;
}

CUresult cuMemPoolDestroy(CUmemoryPool pool)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && (!pool_valid(pool) || pool->is_default))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS) {
        /* A device whose current pool this was falls back to its default pool. */
        if (sim.dev[pool->dev].current_pool == pool)
            sim.dev[pool->dev].current_pool = sim.dev[pool->dev].default_pool;
        pool_trim(pool, 0);
        if (pool->nchunks == 0)
            pool_unlink_free(pool);
        else
            pool->destroyed = 1; /* outstanding allocations; freed with the last of them */
    }
    sim_unlock();
    return rc;
}

CUresult cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && (!pool_valid(pool) || !value))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS) {
        switch (attr) {
        case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
            pool->reuse[attr - CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES] = *(int *)value != 0;
            break;
        case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
            pool->release_threshold = *(cuuint64_t *)value;
            break;
        /* The high-water marks can only be reset, to the current value, by writing 0. */
        case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH:
            if (*(cuuint64_t *)value != 0)
                rc = CUDA_ERROR_INVALID_VALUE;
            else
                pool->reserved_high = pool->reserved;
            break;
        case CU_MEMPOOL_ATTR_USED_MEM_HIGH:
            if (*(cuuint64_t *)value != 0)
                rc = CUDA_ERROR_INVALID_VALUE;
            else
                pool->used_high = pool->used;
            break;
        default:
            rc = CUDA_ERROR_INVALID_VALUE;
        }
    }
    sim_unlock();
    return rc;
}

CUresult cuMemPoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && (!pool_valid(pool) || !value))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS) {
        switch (attr) {
        case CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC:
        case CU_MEMPOOL_ATTR_REUSE_ALLOW_INTERNAL_DEPENDENCIES:
            *(int *)value = pool->reuse[attr - CU_MEMPOOL_ATTR_REUSE_FOLLOW_EVENT_DEPENDENCIES];
            break;
        case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD: *(cuuint64_t *)value = pool->release_threshold; break;
        case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT: *(cuuint64_t *)value = pool->reserved; break;
        case CU_MEMPOOL_ATTR_RESERVED_MEM_HIGH: *(cuuint64_t *)value = pool->reserved_high; break;
        case CU_MEMPOOL_ATTR_USED_MEM_CURRENT: *(cuuint64_t *)value = pool->used; break;
        case CU_MEMPOOL_ATTR_USED_MEM_HIGH: *(cuuint64_t *)value = pool->used_high; break;
        default: rc = CUDA_ERROR_INVALID_VALUE;
        }
    }
    sim_unlock();
    return rc;
}

static CUresult device_pool(CUmemoryPool *out, CUdevice dev, int want_default)
{
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && (dev < 0 || dev >= sim.ndev))
        rc = CUDA_ERROR_INVALID_DEVICE;
    if (rc == CUDA_SUCCESS && !out)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        *out = want_default ? sim.dev[dev].default_pool : sim.dev[dev].current_pool;
    sim_unlock();
    return rc;
}

CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *pool_out, CUdevice dev)
{
    SIM_ENTER();
    return device_pool(pool_out, dev, 1);
}

CUresult cuDeviceGetMemPool(CUmemoryPool *pool, CUdevice dev)
{
    SIM_ENTER();
    return device_pool(pool, dev, 0);
}

CUresult cuDeviceSetMemPool(CUdevice dev, CUmemoryPool pool)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && (dev < 0 || dev >= sim.ndev))
        rc = CUDA_ERROR_INVALID_DEVICE;
    if (rc == CUDA_SUCCESS && (!pool_valid(pool) || pool->dev != dev))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS)
        sim.dev[dev].current_pool = pool;
    sim_unlock();
    return rc;
}

/* ---- IPC -------------------------------------------------------------------------------------- */

/* The 64-byte CUipcMemHandle, as this simulator lays it out (little-endian, unused bytes zero):
 *   bytes  0..7   magic "simcuIPC"
 *   bytes  8..11  pid of the exporting process (int32)
 *   bytes 12..15  device ordinal (int32)
 *   bytes 16..23  device address of the allocation (uint64)
 *   bytes 24..31  size in bytes as allocated (uint64) */
static const char ipc_magic[8] = {'s', 'i', 'm', 'c', 'u', 'I', 'P', 'C'};

struct ipc_payload {
    char magic[8];
    int32_t pid, dev;
    uint64_t addr, size;
};

CUresult cuIpcGetMemHandle(CUipcMemHandle *pHandle, CUdeviceptr dptr)
{
    SIM_ENTER();
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = sim_current_ctx(&ctx);
    struct sim_alloc *a = NULL;
    if (rc == CUDA_SUCCESS && !pHandle)
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS) {
        a = reg_exact(dptr);
        if (!a || a->kind != K_DEVICE)
            rc = CUDA_ERROR_INVALID_VALUE; /* only cuMemAlloc memory, by its base address */
    }
    if (rc == CUDA_SUCCESS) {
        struct ipc_payload p = {.pid = getpid(), .dev = a->dev, .addr = a->addr, .size = a->size};
        memcpy(p.magic, ipc_magic, sizeof p.magic);
        memset(pHandle, 0, sizeof *pHandle);
        memcpy(pHandle->reserved, &p, sizeof p);
    }
    sim_unlock();
    return rc;
}

static CUresult ipc_open(CUdeviceptr *pdptr, CUipcMemHandle handle, unsigned int flags)
{
    struct ipc_payload p;
    memcpy(&p, handle.reserved, sizeof p);
    if (!pdptr || (flags & ~(unsigned)CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS) ||
        memcmp(p.magic, ipc_magic, sizeof p.magic) != 0 || p.size == 0)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = sim_current_ctx(&ctx);
    /* The real driver refuses to open a handle in the process that exported it. */
    if (rc == CUDA_SUCCESS && p.pid == getpid())
        rc = CUDA_ERROR_INVALID_CONTEXT;
    struct sim_alloc *found = NULL;
    for (int i = 0; rc == CUDA_SUCCESS && i < nreg && !found; i++)
        if (reg[i]->kind == K_IPC && reg[i]->ipc_pid == p.pid && reg[i]->ipc_addr == p.addr)
            found = reg[i];
    if (rc == CUDA_SUCCESS && found) {
        found->refs++; /* opened again: the same mapping, one more close to go */
        *pdptr = found->addr;
    } else if (rc == CUDA_SUCCESS) {
        struct sim_alloc *a = calloc(1, sizeof *a);
        struct sim_va *va = &sim.dev[ctx->dev].va;
        uint64_t span = pages_of(p.size) * SIM_PAGE, addr;
        if (!a || sim_va_alloc(va, span, SIM_PAGE, &addr) != 0) {
            free(a);
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            *a = (struct sim_alloc){.addr = addr, .size = p.size, .span = span, .dev = ctx->dev, .kind = K_IPC,
                                    .ctx = ctx, .va = va, .ipc_pid = p.pid, .ipc_addr = p.addr, .refs = 1};
            if (reg_insert(a) != 0) {
                sim_va_free(va, addr);
                free(a);
                rc = CUDA_ERROR_OUT_OF_MEMORY;
            } else {
                *pdptr = addr;
            }
        }
    }
    sim_unlock();
    return rc;
}

CUresult cuIpcOpenMemHandle(CUdeviceptr *pdptr, CUipcMemHandle handle, unsigned int Flags)
{
    SIM_ENTER();
    return ipc_open(pdptr, handle, Flags);
}

CUresult cuIpcOpenMemHandle_v2(CUdeviceptr *pdptr, CUipcMemHandle handle, unsigned int Flags)
{
    SIM_ENTER();
    return ipc_open(pdptr, handle, Flags);
}

CUresult cuIpcCloseMemHandle(CUdeviceptr dptr)
{
    SIM_ENTER();
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = sim_current_ctx(&ctx);
    struct sim_alloc *a = rc == CUDA_SUCCESS ? reg_exact(dptr) : NULL;
    if (rc == CUDA_SUCCESS && (!a || a->kind != K_IPC))
        rc = CUDA_ERROR_INVALID_VALUE;
    if (rc == CUDA_SUCCESS && --a->refs == 0)
        release_alloc(a);
    sim_unlock();
    return rc;
}

/* ---- context teardown and probes -------------------------------------------------------------- */

void sim_mem_ctx_teardown(CUcontext ctx)
{
    /* What a destroyed context owned goes with it. Pool chunks belong to their pool, VMM objects to
     * the process: both survive, as in the real driver. */
    for (int i = nreg - 1; i >= 0; i--)
        if (i < nreg && reg[i]->ctx == ctx && reg[i]->kind != K_POOL)
            release_alloc(reg[i]);
}

size_t simcuda_used_bytes(int device)
{
    sim_lock();
    size_t v = device >= 0 && device < sim.ndev ? sim.dev[device].used_pages * SIM_PAGE : 0;
    sim_unlock();
    return v;
}

/* What this process holds on DEVICE: its used pages without the other process's (NVML's per-process view). */
__attribute__((visibility("default"))) size_t simcuda_process_bytes(int device)
{
    size_t other = simcuda_other_process_bytes(device);
    size_t used = simcuda_used_bytes(device);
    return used - other;
}

size_t simcuda_capacity(int device)
{
    sim_lock();
    size_t v = device >= 0 && device < sim.ndev ? sim.dev[device].capacity_pages * SIM_PAGE : 0;
    sim_unlock();
    return v;
}

int simcuda_live_allocations(int device)
{
    sim_lock();
    int n = 0;
    for (int i = 0; i < nreg; i++)
        if (reg[i]->dev == device && reg[i]->kind != K_HOST && reg[i]->kind != K_IPC)
            n++;
    for (int i = 0; i < nphyss; i++)
        if (physs[i]->dev == device)
            n++;
    sim_unlock();
    return n;
}

size_t simcuda_pool_reserved_bytes(int device)
{
    sim_lock();
    size_t v = 0;
    for (struct CUmemPoolHandle_st *p = sim.pools; p; p = p->next)
        if (p->dev == device)
            v += p->reserved;
    sim_unlock();
    return v;
}
