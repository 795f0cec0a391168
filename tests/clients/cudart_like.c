/*
 * cudart_like.c: a test client that finds the driver the way NVIDIA's libcudart 13 does, so tests can
 * check that an interposer survives it: dlopen("libcuda.so.1"), dlsym("cuGetProcAddress_v2") and nothing
 * else by name, then cuGetProcAddress looked up through itself at 11030 and 12000, and every further
 * entry point looked up through the v2 pointer that lookup returned.
 *
 * Usage: cudart_like LOOKUPS.tsv [alloc]
 *   Replays each row (name, cuda_version, flags; a header line first) of LOOKUPS.tsv and prints
 *     name<TAB>version<TAB>flags<TAB>CUresult<TAB>symbolStatus<TAB>SYMBOL<TAB>MODULE
 *   where SYMBOL and MODULE are dladdr()'s dli_sname and the basename of dli_fname for the pointer
 *   returned ('-' when NULL or unknown). With "alloc", then initializes as cudart does (cuInit,
 *   cuDevicePrimaryCtxRetain, cuCtxSetCurrent) and allocates and frees fixed sizes through the looked-up
 *   cuMemAlloc/cuMemFree (3020: the _v2 ABI) and cuMemAllocAsync/cuMemFreeAsync (11020, per-thread
 *   stream flag: the _ptsz forms) on a created stream, printing "alloc 0xADDR SIZE" and "free 0xADDR".
 *
 * Single-threaded. Everything on stdout is the result; diagnostics go to stderr; exit 0 on success, 1 on
 * any failure, 2 on bad usage.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>
#include <cudaTypedefs.h>

static PFN_cuGetProcAddress_v12000 get_proc;

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static void print_symbol(void *fn)
{
    Dl_info info;
    if (fn && dladdr(fn, &info)) {
        printf("\t%s\t%s\n", info.dli_sname ? info.dli_sname : "-", info.dli_fname ? base_name(info.dli_fname) : "-");
    } else {
        printf("\t-\t-\n");
    }
}

static int replay(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    char line[512];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        if (lineno++ == 0)
            continue; /* header */
        line[strcspn(line, "\r\n")] = '\0';
        char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        if (!tab2) {
            fprintf(stderr, "cudart_like: %s:%d: want name<TAB>version<TAB>flags\n", path, lineno);
            fclose(f);
            return -1;
        }
        *tab1 = *tab2 = '\0';
        int version = atoi(tab1 + 1);
        unsigned long long flags = strtoull(tab2 + 1, NULL, 10);
        void *fn = NULL;
        CUdriverProcAddressQueryResult status = (CUdriverProcAddressQueryResult)-1;
        CUresult rc = get_proc(line, &fn, version, flags, &status);
        printf("%s\t%d\t%llu\t%d\t%d", line, version, flags, (int)rc, (int)status);
        print_symbol(fn);
    }
    fclose(f);
    return 0;
}

/* Looks NAME up at VERSION with FLAGS through the v2 pointer; exits on failure. */
static void *must_get(const char *name, int version, cuuint64_t flags)
{
    void *fn = NULL;
    CUdriverProcAddressQueryResult status;
    CUresult rc = get_proc(name, &fn, version, flags, &status);
    if (rc != CUDA_SUCCESS || !fn) {
        fprintf(stderr, "cudart_like: lookup of %s@%d failed: %d/%d\n", name, version, (int)rc, (int)status);
        exit(1);
    }
    return fn;
}

#define CHECK(call) do { CUresult rc_ = (call); if (rc_ != CUDA_SUCCESS) { \
    fprintf(stderr, "cudart_like: %s failed: %d\n", #call, (int)rc_); return -1; } } while (0)

static int allocate(void)
{
    PFN_cuInit_v2000 init = must_get("cuInit", 2000, 0);
    PFN_cuDeviceGet_v2000 device_get = must_get("cuDeviceGet", 2000, 0);
    PFN_cuDevicePrimaryCtxRetain_v7000 retain = must_get("cuDevicePrimaryCtxRetain", 7000, 0);
    PFN_cuCtxSetCurrent_v4000 set_current = must_get("cuCtxSetCurrent", 4000, 0);
    PFN_cuStreamCreate_v2000 stream_create = must_get("cuStreamCreate", 2000, 0);
    PFN_cuStreamSynchronize_v7000_ptsz stream_sync =
        must_get("cuStreamSynchronize", 7000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM);
    PFN_cuStreamDestroy_v4000 stream_destroy = must_get("cuStreamDestroy", 4000, 0);
    PFN_cuMemAlloc_v3020 mem_alloc = must_get("cuMemAlloc", 3020, 0);
    PFN_cuMemFree_v3020 mem_free = must_get("cuMemFree", 3020, 0);
    PFN_cuMemAllocAsync_v11020_ptsz alloc_async =
        must_get("cuMemAllocAsync", 11020, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM);
    PFN_cuMemFreeAsync_v11020_ptsz free_async =
        must_get("cuMemFreeAsync", 11020, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM);

    CUdevice dev;
    CUcontext ctx;
    CUstream stream;
    CHECK(init(0));
    CHECK(device_get(&dev, 0));
    CHECK(retain(&ctx, dev));
    CHECK(set_current(ctx));
    CHECK(stream_create(&stream, CU_STREAM_NON_BLOCKING));

    /* Fixed sizes: 1 MiB, 3 MiB + 5 (not page-aligned), 64 MiB; the first freed, then reallocated, so
     * the driver's reuse of its address shows. */
    static const size_t sizes[] = {1 << 20, (3 << 20) + 5, 64 << 20};
    CUdeviceptr p[3];
    for (int i = 0; i < 3; i++) {
        CHECK(mem_alloc(&p[i], sizes[i]));
        printf("alloc 0x%llx %zu\n", (unsigned long long)p[i], sizes[i]);
    }
    CHECK(mem_free(p[0]));
    printf("free 0x%llx\n", (unsigned long long)p[0]);
    CHECK(mem_alloc(&p[0], sizes[0]));
    printf("alloc 0x%llx %zu\n", (unsigned long long)p[0], sizes[0]);

    CUdeviceptr a[2];
    static const size_t async_sizes[] = {2 << 20, 5 << 20};
    for (int i = 0; i < 2; i++) {
        CHECK(alloc_async(&a[i], async_sizes[i], stream));
        printf("alloc 0x%llx %zu\n", (unsigned long long)a[i], async_sizes[i]);
    }
    for (int i = 0; i < 2; i++) {
        CHECK(free_async(a[i], stream));
        printf("free 0x%llx\n", (unsigned long long)a[i]);
    }
    CHECK(stream_sync(stream));
    for (int i = 0; i < 3; i++) {
        CHECK(mem_free(p[i]));
        printf("free 0x%llx\n", (unsigned long long)p[i]);
    }
    CHECK(stream_destroy(stream));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "alloc") != 0)) {
        fprintf(stderr, "usage: cudart_like LOOKUPS.tsv [alloc]\n");
        return 2;
    }
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        fprintf(stderr, "cudart_like: %s\n", dlerror());
        return 1;
    }
    /* The one symbol libcudart takes by name; then cuGetProcAddress through itself, as cudart does. */
    PFN_cuGetProcAddress_v12000 bootstrap = (PFN_cuGetProcAddress_v12000)dlsym(lib, "cuGetProcAddress_v2");
    if (!bootstrap) {
        fprintf(stderr, "cudart_like: no cuGetProcAddress_v2 in libcuda.so.1\n");
        return 1;
    }
    void *v1 = NULL, *v2 = NULL;
    CUdriverProcAddressQueryResult status;
    if (bootstrap("cuGetProcAddress", &v1, 11030, 0, &status) != CUDA_SUCCESS || !v1 ||
        bootstrap("cuGetProcAddress", &v2, 12000, 0, &status) != CUDA_SUCCESS || !v2) {
        fprintf(stderr, "cudart_like: cuGetProcAddress cannot find itself\n");
        return 1;
    }
    get_proc = (PFN_cuGetProcAddress_v12000)v2;
    if (replay(argv[1]) != 0)
        return 1;
    if (argc == 3 && allocate() != 0)
        return 1;
    return fflush(stdout) == 0 ? 0 : 1;
}
