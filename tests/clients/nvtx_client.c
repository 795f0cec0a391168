/*
 * nvtx_client.c: a program annotated with NVTX (the toolkit's header-only nvtx3), for tests/test_nvtx.py.
 * Linked with the driver (the simulated one at build time). Modes:
 *
 *   phases   init (8 MiB kept), then two steps, each: forward (4 MiB, then 6 MiB in step 1), backward
 *            (2 MiB, then frees forward's), optimizer (1 MiB taken and freed), and backward's freed at the
 *            step's end. "init" is pushed before the first CUDA call of the process. The live device
 *            bytes peak at 16 MiB inside step 1's backward. "phases big": step 1's backward also takes and
 *            frees a 2 MiB temporary after its 2 MiB (peak 18 MiB).
 *   threads  a start/end range "load" started on main and ended on a worker that allocates inside it,
 *            the worker's own push "worker", marks, a domain "mylib" with a registered string, a
 *            category, and a wide-character message.
 *   hostile  NULL messages and attributes, pops without pushes, unknown message types, handles never
 *            given out, ends of unknown ids, a 10000-byte message, invalid code points; then one range
 *            around one allocation to show recording still works.
 *   nocuda   NVTX only, no driver call at all; prints "ok".
 *   open     "outer" pushed around a 2 MiB allocation and never popped; a start/end "never" not ended.
 *   many N   one 1 MiB allocation, then N pushes and pops of "tick" (N as given, default 10000).
 *   mem      a sub-allocator through NVTX's memory extension, in domain "alloc": heap "pool" over a 64 MiB
 *            cuMemAlloc; regions of 8 MiB (named "weights"), 4 MiB (resized to 6) and 2 MiB (unregistered
 *            by handle); a 10 MiB allocation, freed; heap "scratch" over a 16 MiB cuMemAlloc (the peak:
 *            80 MiB) with a 16 MiB region, then reset, the heap unregistered and the 16 MiB freed. At the
 *            end the pool holds "weights" and the 6 MiB region.
 */
#include "client.h"
#include <nvtx3/nvToolsExt.h>
#include <nvtx3/nvToolsExtMem.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#define MiB (1024ull * 1024)

static CUcontext ctx;

static void setup(void)
{
    ctx = client_setup_on(0);
}

static CUdeviceptr alloc(size_t n)
{
    CUdeviceptr p;
    CHECK(cuMemAlloc(&p, n));
    return p;
}

static int phases(int big)
{
    nvtxRangePushA("init");
    setup();
    CUdeviceptr w = alloc(8 * MiB);
    nvtxRangePop();
    for (int step = 0; step < 2; step++) {
        nvtxRangePushA("step");
        nvtxRangePushA("forward");
        CUdeviceptr a = alloc(step == 0 ? 4 * MiB : 6 * MiB);
        nvtxRangePop();
        nvtxRangePushA("backward");
        CUdeviceptr b = alloc(2 * MiB);
        if (big && step == 1)
            CHECK(cuMemFree(alloc(2 * MiB))); /* a temporary: step 1's backward peaks 2 MiB higher */
        CHECK(cuMemFree(a));
        nvtxRangePop();
        nvtxRangePushA("optimizer");
        CUdeviceptr c = alloc(1 * MiB);
        CHECK(cuMemFree(c));
        nvtxRangePop();
        CHECK(cuMemFree(b));
        nvtxRangePop();
    }
    CHECK(cuMemFree(w));
    return 0;
}

static nvtxRangeId_t load_id;

static void *worker(void *arg)
{
    (void)arg;
    CHECK(cuCtxSetCurrent(ctx));
    nvtxRangePushA("worker");
    CUdeviceptr p = alloc(3 * MiB);
    nvtxRangeEnd(load_id); /* started on main, ended here */
    CHECK(cuMemFree(p));
    nvtxRangePop();
    return NULL;
}

static int threads(void)
{
    setup();
    CUdeviceptr base = alloc(1 * MiB);
    load_id = nvtxRangeStartA("load");
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0 || pthread_join(t, NULL) != 0)
        return 1;
    nvtxMarkA("checkpoint");
    nvtxDomainHandle_t d = nvtxDomainCreateA("mylib");
    nvtxStringHandle_t s = nvtxDomainRegisterStringA(d, "registered phase");
    nvtxEventAttributes_t a;
    memset(&a, 0, sizeof a);
    a.version = NVTX_VERSION;
    a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    a.category = 7;
    a.messageType = NVTX_MESSAGE_TYPE_REGISTERED;
    a.message.registered = s;
    nvtxDomainRangePushEx(d, &a);
    CUdeviceptr q = alloc(5 * MiB);
    a.messageType = NVTX_MESSAGE_TYPE_ASCII;
    a.message.ascii = "lib mark";
    nvtxDomainMarkEx(d, &a);
    nvtxDomainRangePop(d);
    nvtxRangePushW(L"wide \u00e9t\u00e9 \u2603");
    CHECK(cuMemFree(q));
    nvtxRangePop();
    CHECK(cuMemFree(base));
    return 0;
}

static int hostile(void)
{
    for (int i = 0; i < 5; i++)
        nvtxRangePop(); /* pops without pushes */
    nvtxRangePushA(NULL);
    nvtxRangePushEx(NULL);
    nvtxRangePushW(NULL);
    nvtxMarkA(NULL);
    nvtxMarkEx(NULL);
    nvtxEventAttributes_t a;
    memset(&a, 0, sizeof a);
    nvtxRangePushEx(&a); /* size 0 */
    a.version = NVTX_VERSION;
    a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    a.messageType = 99;
    a.message.ascii = (const char *)0x1; /* never read: the type is unknown */
    nvtxRangePushEx(&a);
    a.messageType = NVTX_MESSAGE_TYPE_REGISTERED;
    a.message.registered = (nvtxStringHandle_t)0x1234567;
    nvtxRangePushEx(&a);
    a.messageType = NVTX_MESSAGE_TYPE_ASCII;
    a.message.ascii = NULL;
    nvtxRangePushEx(&a);
    nvtxDomainRangePushEx((nvtxDomainHandle_t)0xdeadbeef, &a);
    nvtxDomainRangePop((nvtxDomainHandle_t)0xdeadbeef);
    nvtxDomainRangePop((nvtxDomainHandle_t)0xfeedface);
    nvtxRangeEnd(123456789);
    nvtxRangeEnd(0);
    nvtxDomainRangeEnd((nvtxDomainHandle_t)0x77, 42);
    nvtxDomainCreateA(NULL);
    nvtxDomainRegisterStringA(NULL, NULL);
    char *big = malloc(10001);
    memset(big, 'x', 10000);
    big[10000] = 0;
    nvtxRangePushA(big);
    wchar_t bad[] = {0xD800, 0x110000, L'a', 0};
    nvtxRangePushW(bad);
    setup();
    nvtxRangePushA("after");
    CUdeviceptr p = alloc(1 * MiB);
    CHECK(cuMemFree(p));
    nvtxRangePop();
    for (int i = 0; i < 20; i++)
        nvtxRangePop();
    free(big);
    return 0;
}

static int nocuda(void)
{
    nvtxRangePushA("alone");
    nvtxMarkA("nothing");
    nvtxRangeId_t id = nvtxRangeStartA("io");
    nvtxRangeEnd(id);
    nvtxRangePop();
    printf("ok\n");
    return 0;
}

static int open_at_exit(void)
{
    setup();
    nvtxRangePushA("outer");
    nvtxRangeStartA("never");
    alloc(2 * MiB);
    return 0;
}

static int many(int n)
{
    setup();
    CUdeviceptr p = alloc(1 * MiB);
    for (int i = 0; i < n; i++) {
        nvtxRangePushA("tick");
        nvtxRangePop();
    }
    CHECK(cuMemFree(p));
    return 0;
}

static nvtxMemHeapHandle_t heap(nvtxDomainHandle_t d, const char *name, CUdeviceptr base, size_t size)
{
    nvtxMemVirtualRangeDesc_t range = {size, (const void *)(uintptr_t)base};
    nvtxMemHeapDesc_t h;
    memset(&h, 0, sizeof h);
    h.extCompatID = NVTX_EXT_COMPATID_MEM;
    h.structSize = sizeof h;
    h.usage = NVTX_MEM_HEAP_USAGE_TYPE_SUB_ALLOCATOR;
    h.type = NVTX_MEM_TYPE_VIRTUAL_ADDRESS;
    h.typeSpecificDescSize = sizeof range;
    h.typeSpecificDesc = &range;
    h.messageType = NVTX_MESSAGE_TYPE_ASCII;
    h.message.ascii = name;
    return nvtxMemHeapRegister(d, &h);
}

static nvtxMemRegionHandle_t region(nvtxDomainHandle_t d, nvtxMemHeapHandle_t h, CUdeviceptr at, size_t size)
{
    nvtxMemVirtualRangeDesc_t r = {size, (const void *)(uintptr_t)at};
    nvtxMemRegionHandle_t out = NULL;
    nvtxMemRegionsRegisterBatch_t b;
    memset(&b, 0, sizeof b);
    b.extCompatID = NVTX_EXT_COMPATID_MEM;
    b.structSize = sizeof b;
    b.regionType = NVTX_MEM_TYPE_VIRTUAL_ADDRESS;
    b.heap = h;
    b.regionCount = 1;
    b.regionDescElementSize = sizeof r;
    b.regionDescElements = &r;
    b.regionHandleElementsOut = &out;
    nvtxMemRegionsRegister(d, &b);
    return out;
}

static int mem(void)
{
    setup();
    nvtxDomainHandle_t d = nvtxDomainCreateA("alloc");
    CUdeviceptr pool = alloc(64 * MiB);
    nvtxMemHeapHandle_t h = heap(d, "pool", pool, 64 * MiB);
    region(d, h, pool, 8 * MiB);
    region(d, h, pool + 8 * MiB, 4 * MiB);
    nvtxMemRegionHandle_t small = region(d, h, pool + 12 * MiB, 2 * MiB);

    nvtxMemRegionNameDesc_t n;
    memset(&n, 0, sizeof n);
    n.regionRefType = NVTX_MEM_REGION_REF_TYPE_POINTER;
    n.nameType = NVTX_MESSAGE_TYPE_ASCII;
    n.region.pointer = (const void *)(uintptr_t)pool;
    n.name.ascii = "weights";
    nvtxMemRegionsNameBatch_t nb;
    memset(&nb, 0, sizeof nb);
    nb.extCompatID = NVTX_EXT_COMPATID_MEM;
    nb.structSize = sizeof nb;
    nb.regionCount = 1;
    nb.regionElementSize = sizeof n;
    nb.regionElements = &n;
    nvtxMemRegionsName(d, &nb);

    nvtxMemVirtualRangeDesc_t bigger = {6 * MiB, (const void *)(uintptr_t)(pool + 8 * MiB)};
    nvtxMemRegionsResizeBatch_t rb;
    memset(&rb, 0, sizeof rb);
    rb.extCompatID = NVTX_EXT_COMPATID_MEM;
    rb.structSize = sizeof rb;
    rb.regionType = NVTX_MEM_TYPE_VIRTUAL_ADDRESS;
    rb.regionDescCount = 1;
    rb.regionDescElementSize = sizeof bigger;
    rb.regionDescElements = &bigger;
    nvtxMemRegionsResize(d, &rb);

    nvtxMemRegionRef_t ref;
    ref.handle = small;
    nvtxMemRegionsUnregisterBatch_t ub;
    memset(&ub, 0, sizeof ub);
    ub.extCompatID = NVTX_EXT_COMPATID_MEM;
    ub.structSize = sizeof ub;
    ub.refType = NVTX_MEM_REGION_REF_TYPE_HANDLE;
    ub.refCount = 1;
    ub.refElementSize = sizeof ref;
    ub.refElements = &ref;
    nvtxMemRegionsUnregister(d, &ub);

    CUdeviceptr other = alloc(10 * MiB);
    CHECK(cuMemFree(other));

    CUdeviceptr s = alloc(16 * MiB);
    nvtxMemHeapHandle_t sh = heap(d, "scratch", s, 16 * MiB);
    region(d, sh, s, 16 * MiB);
    nvtxMemHeapReset(d, sh);
    nvtxMemHeapUnregister(d, sh);
    CHECK(cuMemFree(s));
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "phases";
    if (!strcmp(mode, "phases"))
        return phases(argc > 2 && !strcmp(argv[2], "big"));
    if (!strcmp(mode, "threads"))
        return threads();
    if (!strcmp(mode, "hostile"))
        return hostile();
    if (!strcmp(mode, "nocuda"))
        return nocuda();
    if (!strcmp(mode, "open"))
        return open_at_exit();
    if (!strcmp(mode, "mem"))
        return mem();
    if (!strcmp(mode, "many"))
        return many(argc > 2 ? atoi(argv[2]) : 10000);
    fprintf(stderr, "nvtx_client: unknown mode %s\n", mode);
    return 2;
}
