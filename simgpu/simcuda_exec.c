/*
 * simcuda_exec.c: what the simulated GPU does instead of executing: modules and libraries (a fat binary
 * is accepted and never read beyond its header), functions and kernels (any name resolves, as the real
 * driver would for the kernels the binary holds), launches (validated, then nothing runs), host functions
 * and stream callbacks (run at once: every stream is always idle), events (complete when recorded),
 * the stream queries, occupancy, function attributes, peer access and pointer attributes. Work queued into
 * a stream that is being captured becomes a graph node instead and does not run (simcuda_capture.c).
 *
 * Runs on application threads under sim.lock where it touches shared lists. Never runs device code:
 * values computed by kernels are never produced, only the memory they would have used is real.
 */
#include "simcuda_driver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- modules and functions -------------------------------------------------------------------- */

/* A function; a library's kernel (CUkernel) is the same object: the runtime passes kernels where the
 * API takes functions (cuLaunchKernel, cuFuncGetAttribute), as CUDA 12 allows. */
struct CUfunc_st {
    CUmodule mod;
    CUlibrary lib;          /* the library it came from, if any */
    char *name;
    int max_dynamic_smem;
    int cache_config;
    struct CUfunc_st *next;
};

struct sim_global {
    char *name;
    uint64_t addr, size;
    struct sim_global *next;
};

struct CUmod_st {
    int dev;
    int live;
    const void *image;
    struct CUfunc_st *funcs;
    struct sim_global *globals;
    struct CUmod_st *next;
};

struct CUlib_st {
    CUmodule mod;
    struct CUlib_st *next;
};

static CUkernel as_kernel(CUfunction f)
{
    return (CUkernel)(void *)f;
}

static CUfunction as_function(CUkernel k)
{
    return (CUfunction)(void *)k;
}

static struct CUmod_st *modules;
static struct CUlib_st *libraries;

/* A fat binary's frame starts with this magic, the runtime's wrapper around one (__fatBinC_Wrapper_t)
 * with the other; a bare cubin is an ELF file; PTX is text. */
#define FATBIN_MAGIC 0xBA55ED50u
#define FATBINC_WRAPPER_MAGIC 0x466243B1u

/* Lock held. */
static int module_valid(CUmodule m)
{
    for (struct CUmod_st *p = modules; p; p = p->next)
        if (p == m)
            return p->live;
    return 0;
}

/* Lock held. */
static CUresult module_new(CUmodule *out, const void *image)
{
    CUcontext ctx = NULL;
    CUresult rc = sim_current_ctx(&ctx);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct CUmod_st *m = calloc(1, sizeof *m);
    if (!m)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *m = (struct CUmod_st){.dev = ctx->dev, .live = 1, .image = image, .next = modules};
    modules = m;
    *out = m;
    return CUDA_SUCCESS;
}

CUresult sim_module_load(CUmodule *module, const void *image)
{
    if (!module || !image)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUresult rc = module_new(module, image);
    sim_unlock();
    return rc;
}

static CUresult check_image(const void *image)
{
    if (!image)
        return CUDA_ERROR_INVALID_VALUE;
    const unsigned char *b = image;
    uint32_t magic;
    memcpy(&magic, b, sizeof magic);
    if (magic == FATBIN_MAGIC || magic == FATBINC_WRAPPER_MAGIC || !memcmp(b, "\177ELF", 4) || b[0] == '/' || b[0] == '.' || b[0] == '\n' ||
        b[0] == ' ' || b[0] == '\t')
        return CUDA_SUCCESS;
    return CUDA_ERROR_INVALID_IMAGE;
}

CUresult cuModuleLoadData(CUmodule *module, const void *image)
{
    SIM_ENTER();
    CUresult rc = check_image(image);
    return rc != CUDA_SUCCESS ? rc : sim_module_load(module, image);
}

CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int numOptions, CUjit_option *options,
                            void **optionValues)
{
    SIM_ENTER();
    CUresult rc = check_image(image);
    return rc != CUDA_SUCCESS ? rc : sim_module_load(module, image);
}

CUresult cuModuleLoadFatBinary(CUmodule *module, const void *fatCubin)
{
    SIM_ENTER();
    CUresult rc = check_image(fatCubin);
    return rc != CUDA_SUCCESS ? rc : sim_module_load(module, fatCubin);
}

/* Lock held. Frees what the module owns; the struct stays, dead, so a stale handle reads as invalid. */
static void module_unload(CUmodule m)
{
    m->live = 0;
    for (struct sim_global *g = m->globals, *next; g; g = next) {
        next = g->next;
        sim_mem_global_free(g->addr);
        free(g->name);
        free(g);
    }
    m->globals = NULL;
}

CUresult cuModuleUnload(CUmodule hmod)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && !module_valid(hmod))
        rc = CUDA_ERROR_INVALID_HANDLE;
    if (rc == CUDA_SUCCESS)
        module_unload(hmod);
    sim_unlock();
    return rc;
}

CUresult cuModuleGetLoadingMode(CUmoduleLoadingMode *mode)
{
    SIM_ENTER();
    if (!mode)
        return CUDA_ERROR_INVALID_VALUE;
    *mode = CU_MODULE_LAZY_LOADING;
    return CUDA_SUCCESS;
}

/* Lock held. The module's function NAME, created at the first lookup. */
static CUresult module_function(CUmodule m, const char *name, CUfunction *out)
{
    if (!module_valid(m))
        return CUDA_ERROR_INVALID_HANDLE;
    if (!name || !out)
        return CUDA_ERROR_INVALID_VALUE;
    for (struct CUfunc_st *f = m->funcs; f; f = f->next)
        if (!strcmp(f->name, name)) {
            *out = f;
            return CUDA_SUCCESS;
        }
    struct CUfunc_st *f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(name))) {
        free(f);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    f->mod = m;
    f->next = m->funcs;
    m->funcs = f;
    *out = f;
    return CUDA_SUCCESS;
}

CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS)
        rc = module_function(hmod, name, hfunc);
    sim_unlock();
    return rc;
}

/* A __device__ or __constant__ variable: its size is in the binary's symbol table, which is not read
 * (it is often compressed); every variable gets GLOBAL_SIZE bytes of module memory, not charged to the
 * device (the real driver counts module data in the context's own memory). */
#define GLOBAL_SIZE ((uint64_t)64 << 10)

/* Lock held. */
static CUresult module_global(CUmodule m, const char *name, uint64_t *addr, uint64_t *size)
{
    if (!module_valid(m))
        return CUDA_ERROR_INVALID_HANDLE;
    if (!name)
        return CUDA_ERROR_INVALID_VALUE;
    struct sim_global *g = m->globals;
    while (g && strcmp(g->name, name))
        g = g->next;
    if (!g) {
        g = calloc(1, sizeof *g);
        if (!g || !(g->name = strdup(name))) {
            free(g);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        g->size = GLOBAL_SIZE;
        if (sim_mem_global_alloc(m->dev, g->size, &g->addr) != CUDA_SUCCESS) {
            free(g->name);
            free(g);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        g->next = m->globals;
        m->globals = g;
    }
    if (addr)
        *addr = g->addr;
    if (size)
        *size = g->size;
    return CUDA_SUCCESS;
}

CUresult cuModuleGetGlobal_v2(CUdeviceptr *dptr, size_t *bytes, CUmodule hmod, const char *name)
{
    SIM_ENTER();
    sim_lock();
    uint64_t a = 0, s = 0;
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS)
        rc = module_global(hmod, name, &a, &s);
    sim_unlock();
    if (rc == CUDA_SUCCESS) {
        if (dptr)
            *dptr = a;
        if (bytes)
            *bytes = s;
    }
    return rc;
}

/* ---- libraries and kernels (context-independent loading, CUDA 12) ------------------------------ */

static CUresult library_load(CUlibrary *library, const void *image)
{
    if (!library)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = check_image(image);
    if (rc != CUDA_SUCCESS)
        return rc;
    sim_lock();
    rc = sim_check_init();
    struct CUlib_st *l = NULL;
    if (rc == CUDA_SUCCESS && !(l = calloc(1, sizeof *l)))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (rc == CUDA_SUCCESS) {
        /* Its module belongs to no context: device 0 holds its globals. */
        struct CUmod_st *m = calloc(1, sizeof *m);
        if (!m) {
            free(l);
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            *m = (struct CUmod_st){.dev = 0, .live = 1, .image = image, .next = modules};
            modules = m;
            l->mod = m;
            l->next = libraries;
            libraries = l;
            *library = l;
        }
    }
    sim_unlock();
    return rc;
}

CUresult cuLibraryLoadData(CUlibrary *library, const void *code, CUjit_option *jitOptions, void **jitOptionsValues,
                           unsigned int numJitOptions, CUlibraryOption *libraryOptions, void **libraryOptionValues,
                           unsigned int numLibraryOptions)
{
    SIM_ENTER();
    return library_load(library, code);
}

/* Lock held. */
static int library_valid(CUlibrary l)
{
    for (struct CUlib_st *p = libraries; p; p = p->next)
        if (p == l)
            return module_valid(p->mod);
    return 0;
}

CUresult cuLibraryUnload(CUlibrary library)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = library_valid(library) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (rc == CUDA_SUCCESS)
        module_unload(library->mod);
    sim_unlock();
    return rc;
}

CUresult cuLibraryGetKernel(CUkernel *pKernel, CUlibrary library, const char *name)
{
    SIM_ENTER();
    if (!pKernel || !name)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUresult rc = library_valid(library) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    CUfunction f = NULL;
    if (rc == CUDA_SUCCESS)
        rc = module_function(library->mod, name, &f);
    if (rc == CUDA_SUCCESS) {
        f->lib = library;
        *pKernel = as_kernel(f);
    }
    sim_unlock();
    return rc;
}

CUresult cuLibraryGetModule(CUmodule *pMod, CUlibrary library)
{
    SIM_ENTER();
    if (!pMod)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUresult rc = library_valid(library) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (rc == CUDA_SUCCESS)
        *pMod = library->mod;
    sim_unlock();
    return rc;
}

CUresult cuLibraryGetGlobal(CUdeviceptr *dptr, size_t *bytes, CUlibrary library, const char *name)
{
    SIM_ENTER();
    sim_lock();
    uint64_t a = 0, s = 0;
    CUresult rc = library_valid(library) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (rc == CUDA_SUCCESS)
        rc = module_global(library->mod, name, &a, &s);
    sim_unlock();
    if (rc == CUDA_SUCCESS) {
        if (dptr)
            *dptr = a;
        if (bytes)
            *bytes = s;
    }
    return rc;
}

CUresult cuKernelGetFunction(CUfunction *pFunc, CUkernel kernel)
{
    SIM_ENTER();
    if (!pFunc || !kernel)
        return CUDA_ERROR_INVALID_VALUE;
    *pFunc = as_function(kernel);
    return CUDA_SUCCESS;
}

CUresult cuKernelGetLibrary(CUlibrary *pLib, CUkernel kernel)
{
    SIM_ENTER();
    if (!pLib || !kernel)
        return CUDA_ERROR_INVALID_VALUE;
    *pLib = as_function(kernel)->lib;
    return CUDA_SUCCESS;
}

CUresult cuKernelGetName(const char **name, CUkernel hfunc)
{
    SIM_ENTER();
    if (!name || !hfunc)
        return CUDA_ERROR_INVALID_VALUE;
    *name = as_function(hfunc)->name;
    return CUDA_SUCCESS;
}

/* ---- function attributes and occupancy: an sm_90 kernel of modest size ------------------------ */

static CUresult function_attribute(int *pi, CUfunction_attribute attrib, CUfunction f)
{
    if (!pi || !f)
        return CUDA_ERROR_INVALID_VALUE;
    switch (attrib) {
    case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *pi = 1024; break;
    case CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: *pi = 0; break;
    case CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES: *pi = 0; break;
    case CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES: *pi = 0; break;
    case CU_FUNC_ATTRIBUTE_NUM_REGS: *pi = 32; break;
    case CU_FUNC_ATTRIBUTE_PTX_VERSION: *pi = 90; break;
    case CU_FUNC_ATTRIBUTE_BINARY_VERSION: *pi = 90; break;
    case CU_FUNC_ATTRIBUTE_CACHE_MODE_CA: *pi = 0; break;
    case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: *pi = f->max_dynamic_smem; break;
    case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT: *pi = -1; break;
    default: *pi = 0; break;
    }
    return CUDA_SUCCESS;
}

CUresult cuFuncGetAttribute(int *pi, CUfunction_attribute attrib, CUfunction hfunc)
{
    SIM_ENTER();
    return function_attribute(pi, attrib, hfunc);
}

CUresult cuKernelGetAttribute(int *pi, CUfunction_attribute attrib, CUkernel kernel, CUdevice dev)
{
    SIM_ENTER();
    return function_attribute(pi, attrib, as_function(kernel));
}

static CUresult function_set_attribute(CUfunction f, CUfunction_attribute attrib, int value)
{
    if (!f)
        return CUDA_ERROR_INVALID_HANDLE;
    if (attrib == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) {
        if (value < 0 || value > 232448)
            return CUDA_ERROR_INVALID_VALUE;
        f->max_dynamic_smem = value;
    }
    return CUDA_SUCCESS;
}

CUresult cuFuncSetAttribute(CUfunction hfunc, CUfunction_attribute attrib, int value)
{
    SIM_ENTER();
    return function_set_attribute(hfunc, attrib, value);
}

CUresult cuKernelSetAttribute(CUfunction_attribute attrib, int val, CUkernel kernel, CUdevice dev)
{
    SIM_ENTER();
    return function_set_attribute(as_function(kernel), attrib, val);
}

CUresult cuFuncSetCacheConfig(CUfunction hfunc, CUfunc_cache config)
{
    SIM_ENTER();
    if (!hfunc)
        return CUDA_ERROR_INVALID_HANDLE;
    hfunc->cache_config = config;
    return CUDA_SUCCESS;
}

CUresult cuKernelSetCacheConfig(CUkernel kernel, CUfunc_cache config, CUdevice dev)
{
    SIM_ENTER();
    if (!kernel)
        return CUDA_ERROR_INVALID_HANDLE;
    as_function(kernel)->cache_config = config;
    return CUDA_SUCCESS;
}

CUresult cuFuncGetName(const char **name, CUfunction hfunc)
{
    SIM_ENTER();
    if (!name || !hfunc)
        return CUDA_ERROR_INVALID_VALUE;
    *name = hfunc->name;
    return CUDA_SUCCESS;
}

CUresult cuFuncGetModule(CUmodule *hmod, CUfunction hfunc)
{
    SIM_ENTER();
    if (!hmod || !hfunc)
        return CUDA_ERROR_INVALID_VALUE;
    *hmod = hfunc->mod;
    return CUDA_SUCCESS;
}

CUresult cuFuncIsLoaded(CUfunctionLoadingState *state, CUfunction function)
{
    SIM_ENTER();
    if (!state || !function)
        return CUDA_ERROR_INVALID_VALUE;
    *state = CU_FUNCTION_LOADING_STATE_LOADED;
    return CUDA_SUCCESS;
}

CUresult cuFuncLoad(CUfunction function)
{
    SIM_ENTER();
    return function ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

static int blocks_per_sm(int block_size)
{
    if (block_size <= 0)
        return 0;
    int by_threads = 2048 / block_size;
    return by_threads > 32 ? 32 : by_threads;
}

CUresult cuOccupancyMaxActiveBlocksPerMultiprocessor(int *numBlocks, CUfunction func, int blockSize,
                                                     size_t dynamicSMemSize)
{
    SIM_ENTER();
    if (!numBlocks || !func)
        return CUDA_ERROR_INVALID_VALUE;
    *numBlocks = blocks_per_sm(blockSize);
    return CUDA_SUCCESS;
}

CUresult cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *numBlocks, CUfunction func, int blockSize,
                                                              size_t dynamicSMemSize, unsigned int flags)
{
    SIM_ENTER();
    if (!numBlocks || !func)
        return CUDA_ERROR_INVALID_VALUE;
    *numBlocks = blocks_per_sm(blockSize);
    return CUDA_SUCCESS;
}

/* The largest block the limit allows, and enough of them to fill every SM. */
static CUresult potential_block_size(int *minGridSize, int *blockSize, CUfunction func, int blockSizeLimit)
{
    if (!minGridSize || !blockSize || !func)
        return CUDA_ERROR_INVALID_VALUE;
    int b = blockSizeLimit > 0 && blockSizeLimit < 1024 ? blockSizeLimit : 1024;
    *blockSize = b;
    *minGridSize = blocks_per_sm(b) * sim_device_sm_count(func->mod->dev);
    return CUDA_SUCCESS;
}

CUresult cuOccupancyMaxPotentialBlockSize(int *minGridSize, int *blockSize, CUfunction func,
                                          CUoccupancyB2DSize blockSizeToDynamicSMemSize, size_t dynamicSMemSize,
                                          int blockSizeLimit)
{
    SIM_ENTER();
    return potential_block_size(minGridSize, blockSize, func, blockSizeLimit);
}

CUresult cuOccupancyMaxPotentialBlockSizeWithFlags(int *minGridSize, int *blockSize, CUfunction func,
                                                   CUoccupancyB2DSize blockSizeToDynamicSMemSize,
                                                   size_t dynamicSMemSize, int blockSizeLimit, unsigned int flags)
{
    SIM_ENTER();
    return potential_block_size(minGridSize, blockSize, func, blockSizeLimit);
}

CUresult cuOccupancyAvailableDynamicSMemPerBlock(size_t *dynamicSmemSize, CUfunction func, int numBlocks,
                                                 int blockSize)
{
    SIM_ENTER();
    if (!dynamicSmemSize || !func)
        return CUDA_ERROR_INVALID_VALUE;
    *dynamicSmemSize = 232448;
    return CUDA_SUCCESS;
}

/* ---- launches: validated, never run ----------------------------------------------------------- */

static CUresult launch(CUfunction f, CUstream stream, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                       unsigned by, unsigned bz)
{
    if (!f)
        return CUDA_ERROR_INVALID_HANDLE;
    if (!gx || !gy || !gz || !bx || !by || !bz || (uint64_t)bx * by * bz > 1024)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUcontext ctx = NULL;
    int captured = 0;
    CUresult rc = sim_stream_ctx(stream, &ctx);
    if (rc == CUDA_SUCCESS)
        rc = sim_capture_op(stream, CU_GRAPH_NODE_TYPE_KERNEL, &captured);
    sim_unlock();
    return rc;
}

CUresult cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                        unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                        unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra)
{
    SIM_ENTER();
    return launch(f, hStream, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ);
}

CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                             unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                             unsigned int sharedMemBytes, CUstream hStream, void **kernelParams, void **extra)
{
    SIM_ENTER();
    return launch(f, sim_per_thread(hStream), gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY,
                  blockDimZ);
}

static CUresult launch_ex(const CUlaunchConfig *config, CUfunction f, int per_thread)
{
    if (!config)
        return CUDA_ERROR_INVALID_VALUE;
    CUstream s = config->hStream ? config->hStream : per_thread ? CU_STREAM_PER_THREAD : NULL;
    return launch(f, s, config->gridDimX, config->gridDimY, config->gridDimZ, config->blockDimX,
                  config->blockDimY, config->blockDimZ);
}

CUresult cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra)
{
    SIM_ENTER();
    return launch_ex(config, f, 0);
}

CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *config, CUfunction f, void **kernelParams, void **extra)
{
    SIM_ENTER();
    return launch_ex(config, f, 1);
}

CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                   unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                                   unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                                   void **kernelParams)
{
    SIM_ENTER();
    return launch(f, hStream, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ);
}

CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                        unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                                        unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                                        void **kernelParams)
{
    SIM_ENTER();
    return launch(f, sim_per_thread(hStream), gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY,
                  blockDimZ);
}

/* Host work on a stream runs at once, on the calling thread: the stream has nothing queued before it. */
static CUresult host_func(CUstream s, CUhostFn fn, void *data)
{
    if (!fn)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUcontext ctx = NULL;
    int captured = 0;
    CUresult rc = sim_stream_ctx(s, &ctx);
    if (rc == CUDA_SUCCESS)
        rc = sim_capture_op(s, CU_GRAPH_NODE_TYPE_HOST, &captured);
    sim_unlock();
    if (rc == CUDA_SUCCESS && !captured)
        fn(data);
    return rc;
}

CUresult cuLaunchHostFunc(CUstream hStream, CUhostFn fn, void *userData)
{
    SIM_ENTER();
    return host_func(hStream, fn, userData);
}

CUresult cuLaunchHostFunc_ptsz(CUstream hStream, CUhostFn fn, void *userData)
{
    SIM_ENTER();
    return host_func(sim_per_thread(hStream), fn, userData);
}

static CUresult add_callback(CUstream s, CUstreamCallback cb, void *data, unsigned int flags)
{
    if (!cb || flags)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = sim_stream_ctx(s, &ctx);
    if (rc == CUDA_SUCCESS)
        rc = sim_capture_refuse(s);
    sim_unlock();
    if (rc == CUDA_SUCCESS)
        cb(s, CUDA_SUCCESS, data);
    return rc;
}

CUresult cuStreamAddCallback(CUstream hStream, CUstreamCallback callback, void *userData, unsigned int flags)
{
    SIM_ENTER();
    return add_callback(hStream, callback, userData, flags);
}

CUresult cuStreamAddCallback_ptsz(CUstream hStream, CUstreamCallback callback, void *userData, unsigned int flags)
{
    SIM_ENTER();
    return add_callback(sim_per_thread(hStream), callback, userData, flags);
}

/* ---- events ----------------------------------------------------------------------------------- */

struct CUevent_st {
    unsigned int flags;
    int recorded;
    int done; /* SIMCUDA_EVENTS_PENDING: synchronized since its last record */
    uint64_t capture; /* recorded into this capture (simcuda_capture.c), or 0 */
    struct timespec when;
    struct CUevent_st *next;
};
static struct CUevent_st *events;

/* Lock held. */
static int event_valid(CUevent e)
{
    for (struct CUevent_st *p = events; p; p = p->next)
        if (p == e)
            return 1;
    return 0;
}

CUresult cuEventCreate(CUevent *phEvent, unsigned int Flags)
{
    SIM_ENTER();
    if (!phEvent || (Flags & ~(unsigned)(CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS)))
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = sim_current_ctx(&ctx);
    struct CUevent_st *e = NULL;
    if (rc == CUDA_SUCCESS && !(e = calloc(1, sizeof *e)))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (rc == CUDA_SUCCESS) {
        *e = (struct CUevent_st){.flags = Flags, .next = events};
        events = e;
        *phEvent = e;
    }
    sim_unlock();
    return rc;
}

CUresult cuEventDestroy_v2(CUevent hEvent)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = CUDA_ERROR_INVALID_HANDLE;
    for (struct CUevent_st **pp = &events; *pp; pp = &(*pp)->next)
        if (*pp == hEvent) {
            *pp = hEvent->next;
            free(hEvent);
            rc = CUDA_SUCCESS;
            break;
        }
    sim_unlock();
    return rc;
}

static CUresult event_record(CUevent e, CUstream s)
{
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = event_valid(e) ? sim_stream_ctx(s, &ctx) : CUDA_ERROR_INVALID_HANDLE;
    int captured = 0;
    if (rc == CUDA_SUCCESS)
        rc = sim_capture_op(s, SIM_NO_NODE, &captured);
    if (rc == CUDA_SUCCESS && captured) {
        /* A capture-internal record: it orders the capture's work, nothing completes. */
        e->capture = sim_capture_id(s);
    } else if (rc == CUDA_SUCCESS) {
        e->capture = 0;
        e->recorded = 1;
        e->done = 0;
        clock_gettime(CLOCK_MONOTONIC, &e->when);
    }
    sim_unlock();
    return rc;
}

CUresult cuEventRecord(CUevent hEvent, CUstream hStream)
{
    SIM_ENTER();
    return event_record(hEvent, hStream);
}

CUresult cuEventRecord_ptsz(CUevent hEvent, CUstream hStream)
{
    SIM_ENTER();
    return event_record(hEvent, sim_per_thread(hStream));
}

CUresult cuEventRecordWithFlags(CUevent hEvent, CUstream hStream, unsigned int flags)
{
    SIM_ENTER();
    return event_record(hEvent, hStream);
}

CUresult cuEventRecordWithFlags_ptsz(CUevent hEvent, CUstream hStream, unsigned int flags)
{
    SIM_ENTER();
    return event_record(hEvent, sim_per_thread(hStream));
}

/* $SIMCUDA_EVENTS_PENDING=1: the work before a recorded event never finishes by itself: cuEventQuery
 * says CUDA_ERROR_NOT_READY until cuEventSynchronize waited for it (PyTorch's record_stream frees then
 * stay deferred until its allocator synchronizes). Default: every event has completed. */
static int events_pending(void)
{
    static int v = -1;
    if (v < 0) {
        const char *env = getenv("SIMCUDA_EVENTS_PENDING");
        v = env && !strcmp(env, "1");
    }
    return v;
}

/* wait: 0 a query, 1 a synchronization, -1 the handle's validity only (a stream waiting on it) */
static CUresult event_check(CUevent e, int wait)
{
    sim_lock();
    CUresult rc = event_valid(e) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (rc == CUDA_SUCCESS && wait >= 0 && events_pending() && e->recorded && !e->done) {
        if (wait)
            e->done = 1;
        else
            rc = CUDA_ERROR_NOT_READY;
    }
    sim_unlock();
    return rc;
}

CUresult cuEventQuery(CUevent hEvent)
{
    SIM_ENTER();
    return event_check(hEvent, 0);
}

CUresult cuEventSynchronize(CUevent hEvent)
{
    SIM_ENTER();
    return event_check(hEvent, 1);
}

static CUresult elapsed(float *ms, CUevent a, CUevent b)
{
    if (!ms)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUresult rc = event_valid(a) && event_valid(b) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
    if (rc == CUDA_SUCCESS && ((a->flags | b->flags) & CU_EVENT_DISABLE_TIMING))
        rc = CUDA_ERROR_INVALID_HANDLE;
    if (rc == CUDA_SUCCESS && (!a->recorded || !b->recorded))
        rc = CUDA_ERROR_NOT_READY;
    if (rc == CUDA_SUCCESS)
        *ms = (float)((b->when.tv_sec - a->when.tv_sec) * 1e3 + (b->when.tv_nsec - a->when.tv_nsec) / 1e6);
    sim_unlock();
    return rc;
}

CUresult cuEventElapsedTime(float *pMilliseconds, CUevent hStart, CUevent hEnd)
{
    SIM_ENTER();
    return elapsed(pMilliseconds, hStart, hEnd);
}

CUresult cuEventElapsedTime_v2(float *pMilliseconds, CUevent hStart, CUevent hEnd)
{
    SIM_ENTER();
    return elapsed(pMilliseconds, hStart, hEnd);
}

/* ---- streams: queries (every stream is idle) -------------------------------------------------- */

static CUresult stream_check(CUstream s, CUcontext *ctx)
{
    sim_lock();
    CUcontext c = NULL;
    CUresult rc = sim_stream_ctx(s, &c);
    sim_unlock();
    if (ctx)
        *ctx = c;
    return rc;
}

static CUresult stream_query(CUstream s)
{
    sim_lock();
    CUresult rc = sim_stream_ctx(s, NULL);
    if (rc == CUDA_SUCCESS)
        rc = sim_capture_refuse(s);
    sim_unlock();
    return rc;
}

CUresult cuStreamQuery(CUstream hStream)
{
    SIM_ENTER();
    return stream_query(hStream);
}

CUresult cuStreamQuery_ptsz(CUstream hStream)
{
    SIM_ENTER();
    return stream_query(sim_per_thread(hStream));
}

/* A stream that waits for an event recorded in a capture joins that capture. */
static CUresult stream_wait_event(CUstream s, CUevent e)
{
    CUresult rc = event_check(e, -1);
    if (rc != CUDA_SUCCESS)
        return rc;
    sim_lock();
    int captured = 0;
    rc = sim_stream_ctx(s, NULL);
    if (rc == CUDA_SUCCESS && e->capture)
        sim_capture_join(s, e->capture);
    if (rc == CUDA_SUCCESS)
        rc = sim_capture_op(s, SIM_NO_NODE, &captured);
    sim_unlock();
    return rc;
}

CUresult cuStreamWaitEvent(CUstream hStream, CUevent hEvent, unsigned int Flags)
{
    SIM_ENTER();
    return stream_wait_event(hStream, hEvent);
}

CUresult cuStreamWaitEvent_ptsz(CUstream hStream, CUevent hEvent, unsigned int Flags)
{
    SIM_ENTER();
    return stream_wait_event(sim_per_thread(hStream), hEvent);
}

static int is_default_stream(CUstream s)
{
    return s == NULL || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD;
}

static CUresult stream_flags(CUstream s, unsigned int *flags)
{
    if (!flags)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = stream_check(s, NULL);
    if (rc == CUDA_SUCCESS)
        *flags = is_default_stream(s) ? 0 : s->flags;
    return rc;
}

CUresult cuStreamGetFlags(CUstream hStream, unsigned int *flags)
{
    SIM_ENTER();
    return stream_flags(hStream, flags);
}

CUresult cuStreamGetFlags_ptsz(CUstream hStream, unsigned int *flags)
{
    SIM_ENTER();
    return stream_flags(sim_per_thread(hStream), flags);
}

static CUresult stream_priority(CUstream s, int *priority)
{
    if (!priority)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = stream_check(s, NULL);
    if (rc == CUDA_SUCCESS)
        *priority = is_default_stream(s) ? 0 : s->priority;
    return rc;
}

CUresult cuStreamGetPriority(CUstream hStream, int *priority)
{
    SIM_ENTER();
    return stream_priority(hStream, priority);
}

CUresult cuStreamGetPriority_ptsz(CUstream hStream, int *priority)
{
    SIM_ENTER();
    return stream_priority(sim_per_thread(hStream), priority);
}

CUresult cuStreamGetCtx(CUstream hStream, CUcontext *pctx)
{
    SIM_ENTER();
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    return stream_check(hStream, pctx);
}

CUresult cuStreamGetCtx_ptsz(CUstream hStream, CUcontext *pctx)
{
    SIM_ENTER();
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    return stream_check(sim_per_thread(hStream), pctx);
}

static CUresult stream_device(CUstream s, CUdevice *dev)
{
    if (!dev)
        return CUDA_ERROR_INVALID_VALUE;
    CUcontext c = NULL;
    CUresult rc = stream_check(s, &c);
    if (rc == CUDA_SUCCESS)
        *dev = c->dev;
    return rc;
}

CUresult cuStreamGetDevice(CUstream hStream, CUdevice *device)
{
    SIM_ENTER();
    return stream_device(hStream, device);
}

CUresult cuStreamGetDevice_ptsz(CUstream hStream, CUdevice *device)
{
    SIM_ENTER();
    return stream_device(sim_per_thread(hStream), device);
}

static CUresult stream_id(CUstream s, unsigned long long *id)
{
    if (!id)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = stream_check(s, NULL);
    if (rc == CUDA_SUCCESS)
        *id = s == NULL || s == CU_STREAM_LEGACY ? 1 : s == CU_STREAM_PER_THREAD ? 2 : (uintptr_t)s;
    return rc;
}

CUresult cuStreamGetId(CUstream hStream, unsigned long long *streamId)
{
    SIM_ENTER();
    return stream_id(hStream, streamId);
}

CUresult cuStreamGetId_ptsz(CUstream hStream, unsigned long long *streamId)
{
    SIM_ENTER();
    return stream_id(sim_per_thread(hStream), streamId);
}

/* ---- contexts: limits, priorities, caches ----------------------------------------------------- */

CUresult cuCtxGetStreamPriorityRange(int *leastPriority, int *greatestPriority)
{
    SIM_ENTER();
    if (leastPriority)
        *leastPriority = 0;
    if (greatestPriority)
        *greatestPriority = -5;
    return CUDA_SUCCESS;
}

static __thread size_t limits[CU_LIMIT_MAX];

static size_t limit_default(CUlimit l)
{
    switch (l) {
    case CU_LIMIT_STACK_SIZE: return 1024;
    case CU_LIMIT_PRINTF_FIFO_SIZE: return 1048576;
    case CU_LIMIT_MALLOC_HEAP_SIZE: return 8388608;
    case CU_LIMIT_DEV_RUNTIME_SYNC_DEPTH: return 2;
    case CU_LIMIT_DEV_RUNTIME_PENDING_LAUNCH_COUNT: return 2048;
    case CU_LIMIT_MAX_L2_FETCH_GRANULARITY: return 64;
    /* Not a CIG context: all of an SM's shared memory (cuBLASLt sizes its kernels by this). */
    case CU_LIMIT_SHMEM_SIZE: return 233472;
    default: return 0;
    }
}

CUresult cuCtxGetLimit(size_t *pvalue, CUlimit limit)
{
    SIM_ENTER();
    if (!pvalue || (unsigned)limit >= CU_LIMIT_MAX)
        return CUDA_ERROR_INVALID_VALUE;
    *pvalue = limits[limit] ? limits[limit] : limit_default(limit);
    return CUDA_SUCCESS;
}

CUresult cuCtxSetLimit(CUlimit limit, size_t value)
{
    SIM_ENTER();
    if ((unsigned)limit >= CU_LIMIT_MAX)
        return CUDA_ERROR_INVALID_VALUE;
    limits[limit] = value;
    return CUDA_SUCCESS;
}

CUresult cuCtxGetCacheConfig(CUfunc_cache *pconfig)
{
    SIM_ENTER();
    if (!pconfig)
        return CUDA_ERROR_INVALID_VALUE;
    *pconfig = CU_FUNC_CACHE_PREFER_NONE;
    return CUDA_SUCCESS;
}

CUresult cuCtxSetCacheConfig(CUfunc_cache config)
{
    SIM_ENTER();
    return CUDA_SUCCESS;
}

CUresult cuCtxGetId(CUcontext ctx, unsigned long long *ctxId)
{
    SIM_ENTER();
    if (!ctxId)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUcontext c = ctx;
    CUresult rc = ctx ? (sim_ctx_valid(ctx) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT) : sim_current_ctx(&c);
    if (rc == CUDA_SUCCESS)
        *ctxId = (uintptr_t)c;
    sim_unlock();
    return rc;
}

/* ---- peers ------------------------------------------------------------------------------------ */

CUresult cuDeviceCanAccessPeer(int *canAccessPeer, CUdevice dev, CUdevice peerDev)
{
    SIM_ENTER();
    if (!canAccessPeer)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUresult rc = sim_check_init();
    if (rc == CUDA_SUCCESS && (dev < 0 || dev >= sim.ndev || peerDev < 0 || peerDev >= sim.ndev))
        rc = CUDA_ERROR_INVALID_DEVICE;
    if (rc == CUDA_SUCCESS)
        *canAccessPeer = dev != peerDev;
    sim_unlock();
    return rc;
}

CUresult cuDeviceGetP2PAttribute(int *value, CUdevice_P2PAttribute attrib, CUdevice srcDevice, CUdevice dstDevice)
{
    SIM_ENTER();
    if (!value)
        return CUDA_ERROR_INVALID_VALUE;
    switch (attrib) {
    case CU_DEVICE_P2P_ATTRIBUTE_PERFORMANCE_RANK: *value = 0; break;
    case CU_DEVICE_P2P_ATTRIBUTE_ACCESS_SUPPORTED: *value = srcDevice != dstDevice; break;
    case CU_DEVICE_P2P_ATTRIBUTE_NATIVE_ATOMIC_SUPPORTED: *value = srcDevice != dstDevice; break;
    default: *value = 0; break;
    }
    return CUDA_SUCCESS;
}

CUresult cuCtxEnablePeerAccess(CUcontext peerContext, unsigned int Flags)
{
    SIM_ENTER();
    if (Flags)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUresult rc = sim_ctx_valid(peerContext) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
    sim_unlock();
    return rc;
}

CUresult cuCtxDisablePeerAccess(CUcontext peerContext)
{
    SIM_ENTER();
    sim_lock();
    CUresult rc = sim_ctx_valid(peerContext) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
    sim_unlock();
    return rc;
}

/* ---- profiler control: nothing to profile ----------------------------------------------------- */

CUresult cuProfilerStart(void)
{
    SIM_ENTER();
    return CUDA_SUCCESS;
}

CUresult cuProfilerStop(void)
{
    SIM_ENTER();
    return CUDA_SUCCESS;
}

/* Thread-block clusters (sm_90): up to 8 blocks a cluster, one cluster per SM pair at most. */
static unsigned int cluster_size(const CUlaunchConfig *config)
{
    for (unsigned int i = 0; config && i < config->numAttrs; i++)
        if (config->attrs[i].id == CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION) {
            unsigned int n = config->attrs[i].value.clusterDim.x * config->attrs[i].value.clusterDim.y *
                             config->attrs[i].value.clusterDim.z;
            return n ? n : 1;
        }
    return 1;
}

CUresult cuOccupancyMaxActiveClusters(int *numClusters, CUfunction func, const CUlaunchConfig *config)
{
    SIM_ENTER();
    if (!numClusters || !func || !config)
        return CUDA_ERROR_INVALID_VALUE;
    unsigned int n = cluster_size(config);
    if (n > 16)
        return CUDA_ERROR_INVALID_CLUSTER_SIZE;
    *numClusters = (int)(sim_device_sm_count(func->mod->dev) / n);
    return CUDA_SUCCESS;
}

CUresult cuOccupancyMaxPotentialClusterSize(int *clusterSize, CUfunction func, const CUlaunchConfig *config)
{
    SIM_ENTER();
    if (!clusterSize || !func)
        return CUDA_ERROR_INVALID_VALUE;
    *clusterSize = 8;
    return CUDA_SUCCESS;
}

/* ---- driver logs: the simulated driver never logs, so callbacks are kept and never called ------- */

CUresult cuLogsRegisterCallback(CUlogsCallback callbackFunc, void *userData, CUlogsCallbackHandle *callback_out)
{
    SIM_ENTER();
    if (!callbackFunc || !callback_out)
        return CUDA_ERROR_INVALID_VALUE;
    *callback_out = (CUlogsCallbackHandle)(uintptr_t)callbackFunc;
    return CUDA_SUCCESS;
}

CUresult cuLogsUnregisterCallback(CUlogsCallbackHandle callback)
{
    SIM_ENTER();
    return callback ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
