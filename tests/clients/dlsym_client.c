/*
 * dlsym_client.c: resolution path (b). dlopen("libcuda.so.1") and dlsym on its handle, as programs that
 * do not link the driver do.
 */
#include "ops.h"

#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

static void *must(void *h, const char *name)
{
    void *p = dlsym(h, name);
    if (!p) {
        fprintf(stderr, "dlsym(%s) failed: %s\n", name, dlerror());
        exit(1);
    }
    return p;
}

/* Argument "fork-now": one allocation, then 20 forks at once, while the writer is still starting (opening
 * the file, describing the device). The driver was dlopen'ed after the interposer's constructor, so its
 * fork handler runs first and may hold the driver's lock while ours waits: fork must not deadlock. */
static int fork_now(struct ops *o)
{
    CUdevice dev;
    CUcontext ctx;
    CUdeviceptr p;
    CHECK(o->init(0));
    CHECK(o->device_get(&dev, 0));
    CHECK(o->primary_ctx_retain(&ctx, dev));
    CHECK(o->ctx_set_current(ctx));
    CHECK(o->mem_alloc(&p, 1 << 20));
    for (int i = 0; i < 20; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        waitpid(pid, NULL, 0);
    }
    return 0;
}

int main(int argc, char **argv)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    struct ops o = {
        .init = must(h, "cuInit"),
        .device_get = must(h, "cuDeviceGet"),
        .primary_ctx_retain = must(h, "cuDevicePrimaryCtxRetain"),
        .ctx_set_current = must(h, "cuCtxSetCurrent"),
        .mem_alloc = must(h, "cuMemAlloc_v2"),
        .mem_free = must(h, "cuMemFree_v2"),
        .mem_alloc_pitch = must(h, "cuMemAllocPitch_v2"),
        .mem_alloc_managed = must(h, "cuMemAllocManaged"),
        .mem_alloc_host = must(h, "cuMemAllocHost_v2"),
        .mem_host_alloc = must(h, "cuMemHostAlloc"),
        .mem_free_host = must(h, "cuMemFreeHost"),
        .stream_create = must(h, "cuStreamCreate"),
        .mem_alloc_async = must(h, "cuMemAllocAsync_ptsz"),
        .mem_free_async = must(h, "cuMemFreeAsync_ptsz"),
        .stream_synchronize = must(h, "cuStreamSynchronize"),
        .address_reserve = must(h, "cuMemAddressReserve"),
        .address_free = must(h, "cuMemAddressFree"),
        .mem_create = must(h, "cuMemCreate"),
        .mem_release = must(h, "cuMemRelease"),
        .mem_map = must(h, "cuMemMap"),
        .mem_unmap = must(h, "cuMemUnmap"),
        .suffix_async = "_ptsz",
    };
    /* RTLD_NEXT lookups made by others must be untouched: from the program, the next definition of
     * dlopen is the first one after the program (libc's, or a sanitizer's), never one found relative to
     * the interposer, which is what a dlsym wrapper that calls the real one from its own frame gets. */
    void *next_dlopen = dlsym(RTLD_NEXT, "dlopen");
    Dl_info info;
    if (!next_dlopen || next_dlopen != dlsym(RTLD_DEFAULT, "dlopen") || !dladdr(next_dlopen, &info) ||
        strstr(info.dli_fname, "cumemtrace")) {
        fprintf(stderr, "dlsym(RTLD_NEXT, dlopen) did not come from libc: %s\n",
                next_dlopen && dladdr(next_dlopen, &info) ? info.dli_fname : "(null)");
        return 1;
    }
    if (argc > 1 && !strcmp(argv[1], "fork-now"))
        return fork_now(&o);
    run_ops(&o);
    return 0;
}
