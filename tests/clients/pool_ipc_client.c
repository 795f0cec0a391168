/*
 * pool_ipc_client.c MODE: the less common acquire paths.
 *   pool   an explicit memory pool: two cuMemAllocFromPoolAsync, one cuMemFreeAsync, cuMemPoolTrimTo
 *   ipc    the parent exports a 6 MiB allocation; a forked child opens it (cuIpcOpenMemHandle_v2) and
 *          closes it. Every process prints its own "pid PID" line first, then ops.h-style lines.
 */
#include "ops.h"

#include <sys/wait.h>
#include <unistd.h>

static int run_pool(void)
{
    client_setup();
    CUmemPoolProps props;
    memset(&props, 0, sizeof props);
    props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    props.location.id = 0;
    CUmemoryPool pool;
    CHECK(cuMemPoolCreate(&pool, &props));
    CUstream s;
    CHECK(cuStreamCreate(&s, 0));
    CUdeviceptr a, b;
    CHECK(cuMemAllocFromPoolAsync(&a, 10 * MiB, pool, s));
    printf("ok cuMemAllocFromPoolAsync 0x%llx %zu pool 0x%llx\n", (unsigned long long)a, (size_t)10 * MiB,
           (unsigned long long)(uintptr_t)pool);
    CHECK(cuMemAllocFromPoolAsync(&b, 3 * MiB, pool, s));
    printf("ok cuMemAllocFromPoolAsync 0x%llx %zu pool 0x%llx\n", (unsigned long long)b, (size_t)3 * MiB,
           (unsigned long long)(uintptr_t)pool);
    CHECK(cuMemFreeAsync(a, s));
    printf("release cuMemFreeAsync 0x%llx\n", (unsigned long long)a);
    CHECK(cuStreamSynchronize(s));
    CHECK(cuMemPoolTrimTo(pool, 0));
    printf("trim cuMemPoolTrimTo 0x%llx 0\n", (unsigned long long)(uintptr_t)pool);
    return 0;
}

static int run_ipc(void)
{
    client_setup();
    printf("pid %d\n", (int)getpid());
    CUdeviceptr p;
    CHECK(cuMemAlloc_v2(&p, 6 * MiB));
    CUipcMemHandle h;
    CHECK(cuIpcGetMemHandle(&h, p));
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        printf("pid %d\n", (int)getpid());
        CUdeviceptr q;
        CHECK(cuIpcOpenMemHandle_v2(&q, h, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS));
        printf("ok cuIpcOpenMemHandle_v2 0x%llx %zu\n", (unsigned long long)q, (size_t)6 * MiB);
        CHECK(cuIpcCloseMemHandle(q));
        printf("release cuIpcCloseMemHandle 0x%llx\n", (unsigned long long)q);
        fflush(stdout);
        _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "ipc"))
        return run_ipc();
    return run_pool();
}
