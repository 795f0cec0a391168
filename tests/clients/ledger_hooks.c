/*
 * ledger_hooks.c: the driver entry points NCCL, CUDA graphs, textures and pinned host buffers use, one
 * group per run (tests/test_hooks_more.py): `ledger_hooks share|graph|array|hostreg`.
 *
 * Prints one line per figure the test checks ("NAME VALUE", decimal), so the test compares the trace with
 * what the program saw. Any unexpected driver result exits 1 with a line on stderr.
 */
#define __CUDA_API_VERSION_INTERNAL 1
#include "client.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1ull << 20)
#define EXPECT(call, want)                                                                              \
    do {                                                                                                \
        CUresult r_ = (call);                                                                           \
        if (r_ != (want)) {                                                                             \
            fprintf(stderr, "ledger_hooks: %s gave %d, not %d\n", #call, (int)r_, (int)(want));         \
            exit(1);                                                                                    \
        }                                                                                               \
    } while (0)

static CUcontext ctx;

static void setup(void)
{
    ctx = client_setup_on(0);
}

static unsigned long long free_bytes(void)
{
    size_t f, t;
    CHECK(cuMemGetInfo_v2(&f, &t));
    return f;
}

/* cuMemCreate 4 MiB; export it; import it here (one more reference to the same handle); map it and retain
 * the handle from the address; a forked process imports it too (another process's memory); then every
 * reference is given back, the memory last. */
static void share(void)
{
    CUmemAllocationProp prop = {.type = CU_MEM_ALLOCATION_TYPE_PINNED,
                                .requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR,
                                .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0}};
    CUmemGenericAllocationHandle h, h2, h3;
    CHECK(cuMemCreate(&h, 4 * MiB, &prop, 0));
    int fd = -1;
    CHECK(cuMemExportToShareableHandle(&fd, h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
    CHECK(cuMemImportFromShareableHandle(&h2, (void *)(intptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
    CUdeviceptr va;
    CHECK(cuMemAddressReserve(&va, 4 * MiB, 0, 0, 0));
    CHECK(cuMemMap(va, 4 * MiB, 0, h, 0));
    CHECK(cuMemRetainAllocationHandle(&h3, (void *)(uintptr_t)va));
    printf("handle %llu\nimported %llu\nretained %llu\n", (unsigned long long)h, (unsigned long long)h2,
           (unsigned long long)h3);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        CUmemGenericAllocationHandle hc;
        CHECK(cuCtxSetCurrent(ctx));
        unsigned long long before = free_bytes();
        CHECK(cuMemImportFromShareableHandle(&hc, (void *)(intptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
        printf("child_free_change %llu\n", before - free_bytes());
        CHECK(cuMemRelease(hc));
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    waitpid(child, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        exit(1);
    CHECK(cuMemRelease(h3));
    CHECK(cuMemRelease(h2));
    CHECK(cuMemUnmap(va, 4 * MiB));
    unsigned long long before = free_bytes();
    CHECK(cuMemRelease(h));
    printf("freed_by_last_release %llu\n", free_bytes() - before);
    CHECK(cuMemAddressFree(va, 4 * MiB));
}

/* Graph 1: allocate A (3 MiB) and B (1 MiB), free A, free B. Graph 2: allocate C (5 MiB), never freed. */
static void graph(void)
{
    CUgraph g1, g2;
    CUgraphNode na, nb, fa, fb, nc;
    CUgraphExec x1, x2;
    CUDA_MEM_ALLOC_NODE_PARAMS pa = {.poolProps = {.allocType = CU_MEM_ALLOCATION_TYPE_PINNED,
                                                   .location = {.type = CU_MEM_LOCATION_TYPE_DEVICE, .id = 0}},
                                     .bytesize = 3 * MiB};
    CUDA_MEM_ALLOC_NODE_PARAMS pb = pa, pc = pa;
    pb.bytesize = 1 * MiB;
    pc.bytesize = 5 * MiB;
    CHECK(cuGraphCreate(&g1, 0));
    CHECK(cuGraphAddMemAllocNode(&na, g1, NULL, 0, &pa));
    CHECK(cuGraphAddMemAllocNode(&nb, g1, &na, 1, &pb));
    CHECK(cuGraphAddMemFreeNode(&fa, g1, &nb, 1, pa.dptr));
    CHECK(cuGraphAddMemFreeNode(&fb, g1, &fa, 1, pb.dptr));
    CHECK(cuGraphInstantiateWithFlags(&x1, g1, 0));
    unsigned long long before = free_bytes();
    CHECK(cuGraphLaunch(x1, 0));
    printf("A %llu\nB %llu\nlaunch1_free_change %llu\n", (unsigned long long)pa.dptr, (unsigned long long)pb.dptr,
           before - free_bytes());
    CHECK(cuGraphCreate(&g2, 0));
    CHECK(cuGraphAddMemAllocNode(&nc, g2, NULL, 0, &pc));
    CHECK(cuGraphInstantiateWithFlags(&x2, g2, 0));
    before = free_bytes();
    CHECK(cuGraphLaunch(x2, 0));
    printf("C %llu\nlaunch2_free_change %llu\n", (unsigned long long)pc.dptr, before - free_bytes());
    cuuint64_t reserved = 0, used = 0;
    CHECK(cuDeviceGetGraphMemAttribute(0, CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT, &reserved));
    CHECK(cuDeviceGetGraphMemAttribute(0, CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT, &used));
    printf("reserved %llu\nused %llu\n", (unsigned long long)reserved, (unsigned long long)used);
    CHECK(cuGraphExecDestroy(x1));
    CHECK(cuGraphExecDestroy(x2));
    CHECK(cuGraphDestroy(g1));
    CHECK(cuGraphDestroy(g2));
}

static void array(void)
{
    CUarray a1, a2, a3, a5;
    CUmipmappedArray m4;
    unsigned long long before = free_bytes();
    CUDA_ARRAY_DESCRIPTOR d1 = {.Width = 1000, .Height = 500, .Format = CU_AD_FORMAT_FLOAT, .NumChannels = 4};
    CHECK(cuArrayCreate_v2(&a1, &d1));
    CUDA_ARRAY3D_DESCRIPTOR d2 = {.Width = 64, .Height = 64, .Depth = 32, .Format = CU_AD_FORMAT_UNSIGNED_INT8,
                                  .NumChannels = 2};
    CHECK(cuArray3DCreate_v2(&a2, &d2));
    CUDA_ARRAY3D_DESCRIPTOR d3 = {.Width = 128, .Height = 128, .Depth = 6, .Format = CU_AD_FORMAT_HALF,
                                  .NumChannels = 1, .Flags = CUDA_ARRAY3D_LAYERED};
    CHECK(cuArray3DCreate_v2(&a3, &d3));
    CUDA_ARRAY3D_DESCRIPTOR d4 = {.Width = 256, .Height = 128, .Depth = 0, .Format = CU_AD_FORMAT_FLOAT,
                                  .NumChannels = 1};
    CHECK(cuMipmappedArrayCreate(&m4, &d4, 4));
    CUDA_ARRAY_DESCRIPTOR_v1 d5 = {.Width = 100, .Height = 0, .Format = CU_AD_FORMAT_SIGNED_INT16, .NumChannels = 1};
    CHECK(cuArrayCreate(&a5, &d5));
    printf("arrays_free_change %llu\n", before - free_bytes());
    CUDA_ARRAY_DESCRIPTOR bad = {.Width = 10, .Height = 10, .Format = CU_AD_FORMAT_FLOAT, .NumChannels = 3};
    CUarray nope;
    EXPECT(cuArrayCreate_v2(&nope, &bad), CUDA_ERROR_INVALID_VALUE);
    CHECK(cuArrayDestroy(a1));
    CHECK(cuArrayDestroy(a2));
    CHECK(cuArrayDestroy(a3));
    CHECK(cuMipmappedArrayDestroy(m4));
    /* a5 stays: live at exit */
    printf("left_free_change %llu\n", before - free_bytes());
}

static void hostreg(void)
{
    char *b1 = aligned_alloc(4096, 1 << 20), *b2 = aligned_alloc(4096, 3 << 20), *b3 = aligned_alloc(4096, 8192);
    CHECK(cuMemHostRegister_v2(b1, 1 << 20, CU_MEMHOSTREGISTER_PORTABLE));
    CHECK(cuMemHostRegister_v2(b2, 3 << 20, 0));
    CHECK(cuMemHostRegister(b3, 8192, 0));
    EXPECT(cuMemHostRegister_v2(b2 + 4096, 4096, 0), CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
    CHECK(cuMemHostUnregister(b1));
    CHECK(cuMemHostUnregister(b3));
    EXPECT(cuMemHostUnregister(b1), CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED);
    printf("b1 %llu\nb2 %llu\nb3 %llu\n", (unsigned long long)(uintptr_t)b1, (unsigned long long)(uintptr_t)b2,
           (unsigned long long)(uintptr_t)b3);
    /* b2 stays registered: live at exit */
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: ledger_hooks share|graph|array|hostreg\n");
        return 2;
    }
    setup();
    if (!strcmp(argv[1], "share"))
        share();
    else if (!strcmp(argv[1], "graph"))
        graph();
    else if (!strcmp(argv[1], "array"))
        array();
    else if (!strcmp(argv[1], "hostreg"))
        hostreg();
    else
        return 2;
    return 0;
}
