/*
 * train_sim.c: the built-in example workload. A small "training job" that drives the CUDA driver API the
 * way PyTorch does under its caching allocator, so cumemtrace has something realistic to record and the
 * analyzer something to explain (growth, caching, the out-of-memory at the end).
 *
 * It links nothing CUDA at build time: it dlopen()s libcuda.so.1 and dlsym()s the few entry points it
 * needs. Single-threaded. The one-line summary goes to stdout, the out-of-memory report to stderr; the
 * exit status is 0 whether or not it ran out of memory (that is the expected ending), 1 when the driver
 * cannot be used at all, 2 on bad usage.
 *
 * The model: LAYERS MLP blocks of width HIDDEN, fp32. Per layer, parameters W1 [H, 4H], b1 [4H],
 * W2 [4H, H], b2 [H]: 8H^2 + 5H floats. Gradients are allocated at the first backward (as autograd does)
 * and AdamW's exp_avg/exp_avg_sq at the first optimizer step: four copies of the parameters in all.
 * Step s (from 1) runs TOKENS * 2^(s-1) tokens (a growing sequence length); forward_layer keeps h1 and
 * a1 [T, 4H] and out [T, H] for the backward: 36 * T * H bytes per layer; backward_layer frees them and
 * uses two [T, 4H] temporaries.
 *
 * The arithmetic for the defaults (--layers 8 --hidden 2048 --tokens 1024) at SIMCUDA_MEMORY=8GiB:
 *   static memory: 4 copies * 8 layers * 8 * 2048^2 * 4 bytes = 4 GiB (plus a few 2 MiB small segments)
 *   activations per layer: 36 * T * 2048 bytes = 72 KiB * T; 8 layers: 576 MiB per 1024 tokens
 *   step 1 (1024 tokens):  4 + 0.56 + 0.06 GiB (backward temporaries)   fits
 *   step 2 (2048 tokens):  4 + 1.13 + 0.13 GiB                          fits
 *   step 3 (4096 tokens):  4 + 2.25 + 0.25 GiB = 6.5 GiB                fits, 1.5 GiB to spare
 *   step 4 (8192 tokens):  4 + 4.5 GiB = 8.5 GiB > 8 GiB: out of memory in forward_layer of layer 7 or 8
 *                          (after 7 layers 4 + 3.94 GiB are in use and the next needs 256 MiB)
 * so the default --steps 5 runs out of memory at step 4. At the default 24 GiB every step fits (step 5:
 * 4 + 9 + 0.5 GiB).
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The few driver types used, declared here: the example builds without the CUDA toolkit. */
typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st *CUcontext;
enum { CUDA_SUCCESS = 0, CUDA_ERROR_OUT_OF_MEMORY = 2 };

static struct {
    CUresult (*init)(unsigned int);
    CUresult (*device_get)(CUdevice *, int);
    CUresult (*primary_retain)(CUcontext *, CUdevice);
    CUresult (*primary_release)(CUdevice);
    CUresult (*ctx_set_current)(CUcontext);
    CUresult (*mem_alloc)(CUdeviceptr *, size_t);
    CUresult (*mem_free)(CUdeviceptr);
    CUresult (*mem_get_info)(size_t *, size_t *);
    CUresult (*error_string)(CUresult, const char **);
} cu;

#define MiB ((size_t)1 << 20)
#define KIB_512 ((size_t)512)

/* ---- the caching allocator ---------------------------------------------------------------------
 * PyTorch's, in miniature: sizes round up to 512 bytes; requests of at most 1 MiB are carved from 2 MiB
 * segments (the small pool), larger ones from segments of 20 MiB (under 10 MiB) or of the size rounded
 * to 2 MiB (the large pool). A free block that fits is reused (best fit) and split when the rest is
 * worth keeping; freed blocks merge with free neighbours. cuMemAlloc_v2 is called only on a miss; when
 * it fails with CUDA_ERROR_OUT_OF_MEMORY, every wholly free segment is given back and it is tried once
 * more, as PyTorch does before raising. */

struct block {
    CUdeviceptr addr;
    size_t size;
    int allocated;
    int small;
    struct block *prev, *next; /* neighbours in the same segment, by address */
    struct block *free_next;   /* in its pool's free list */
};

static struct block *free_small, *free_large;
static struct {
    size_t allocated, reserved, peak_allocated, peak_reserved;
    unsigned long driver_allocs, driver_frees, hits, releases;
} stats;
static int oom_device;       /* set when the driver ran out of memory */
static size_t oom_request;

static struct block **free_list(int small)
{
    return small ? &free_small : &free_large;
}

static void free_list_remove(struct block *b)
{
    for (struct block **pp = free_list(b->small); *pp; pp = &(*pp)->free_next)
        if (*pp == b) {
            *pp = b->free_next;
            return;
        }
}

static void free_list_push(struct block *b)
{
    b->free_next = *free_list(b->small);
    *free_list(b->small) = b;
}

/* Gives every wholly free segment back to the driver. */
static void release_cached_blocks(void)
{
    for (int small = 0; small < 2; small++)
        for (struct block **pp = free_list(small); *pp;) {
            struct block *b = *pp;
            if (!b->prev && !b->next) {
                *pp = b->free_next;
                cu.mem_free(b->addr);
                stats.reserved -= b->size;
                stats.driver_frees++;
                stats.releases++;
                free(b);
            } else {
                pp = &b->free_next;
            }
        }
}

static size_t round_size(size_t n)
{
    return n < KIB_512 ? KIB_512 : (n + KIB_512 - 1) / KIB_512 * KIB_512;
}

static size_t segment_size(size_t rounded)
{
    if (rounded <= MiB)
        return 2 * MiB;
    if (rounded < 10 * MiB)
        return 20 * MiB;
    return (rounded + 2 * MiB - 1) / (2 * MiB) * (2 * MiB);
}

__attribute__((noinline)) static struct block *cache_alloc(size_t n)
{
    size_t rounded = round_size(n);
    int small = rounded <= MiB;
    struct block *best = NULL;
    for (struct block *b = *free_list(small); b; b = b->free_next)
        if (b->size >= rounded && (!best || b->size < best->size))
            best = b;
    if (best) {
        free_list_remove(best);
        stats.hits++;
    } else {
        size_t seg = segment_size(rounded);
        CUdeviceptr p;
        CUresult rc = cu.mem_alloc(&p, seg);
        if (rc == CUDA_ERROR_OUT_OF_MEMORY) {
            release_cached_blocks();
            rc = cu.mem_alloc(&p, seg);
        }
        if (rc != CUDA_SUCCESS) {
            oom_device = 1;
            oom_request = rounded;
            return NULL;
        }
        stats.driver_allocs++;
        stats.reserved += seg;
        if (stats.reserved > stats.peak_reserved)
            stats.peak_reserved = stats.reserved;
        best = calloc(1, sizeof *best);
        *best = (struct block){.addr = p, .size = seg, .small = small};
    }
    /* Split off the remainder when it is worth keeping: any 512 bytes in the small pool, more than
     * 1 MiB in the large one. */
    size_t rest = best->size - rounded;
    if (small ? rest >= KIB_512 : rest > MiB) {
        struct block *r = calloc(1, sizeof *r);
        *r = (struct block){.addr = best->addr + rounded, .size = rest, .small = small, .prev = best,
                            .next = best->next};
        if (best->next)
            best->next->prev = r;
        best->next = r;
        best->size = rounded;
        free_list_push(r);
    }
    best->allocated = 1;
    stats.allocated += best->size;
    if (stats.allocated > stats.peak_allocated)
        stats.peak_allocated = stats.allocated;
    return best;
}

__attribute__((noinline)) static void cache_free(struct block *b)
{
    if (!b)
        return;
    b->allocated = 0;
    stats.allocated -= b->size;
    /* Merge with free neighbours: the segment's memory becomes reusable in larger pieces. */
    if (b->next && !b->next->allocated) {
        struct block *n = b->next;
        free_list_remove(n);
        b->size += n->size;
        b->next = n->next;
        if (n->next)
            n->next->prev = b;
        free(n);
    }
    if (b->prev && !b->prev->allocated) {
        struct block *p = b->prev;
        free_list_remove(p);
        p->size += b->size;
        p->next = b->next;
        if (b->next)
            b->next->prev = p;
        free(b);
        b = p;
    }
    free_list_push(b);
}

/* ---- the model ---------------------------------------------------------------------------------- */

enum { W1, B1, W2, B2, NPARAM };

struct layer {
    size_t param_bytes[NPARAM];
    struct block *param[NPARAM], *grad[NPARAM], *exp_avg[NPARAM], *exp_avg_sq[NPARAM];
    struct block *h1, *a1, *out; /* saved for backward */
};

struct model {
    int layers;
    size_t hidden;
    struct layer *layer;
    int optimizer_ready;
};

__attribute__((noinline)) static struct block *tensor_empty(size_t bytes)
{
    return cache_alloc(bytes);
}

__attribute__((noinline)) static int init_parameters(struct model *m)
{
    size_t h = m->hidden, f = sizeof(float);
    for (int l = 0; l < m->layers; l++) {
        struct layer *L = &m->layer[l];
        L->param_bytes[W1] = h * 4 * h * f;
        L->param_bytes[B1] = 4 * h * f;
        L->param_bytes[W2] = 4 * h * h * f;
        L->param_bytes[B2] = h * f;
        for (int p = 0; p < NPARAM; p++)
            if (!(L->param[p] = tensor_empty(L->param_bytes[p])))
                return -1;
    }
    return 0;
}

/* AdamW keeps two tensors per parameter; like torch.optim, created at the first step. */
__attribute__((noinline)) static int init_optimizer_state(struct model *m)
{
    for (int l = 0; l < m->layers; l++) {
        struct layer *L = &m->layer[l];
        for (int p = 0; p < NPARAM; p++) {
            if (!(L->exp_avg[p] = tensor_empty(L->param_bytes[p])))
                return -1;
            if (!(L->exp_avg_sq[p] = tensor_empty(L->param_bytes[p])))
                return -1;
        }
    }
    m->optimizer_ready = 1;
    return 0;
}

__attribute__((noinline)) static int forward_layer(struct model *m, int l, size_t tokens)
{
    struct layer *L = &m->layer[l];
    size_t h = m->hidden, f = sizeof(float);
    if (!(L->h1 = tensor_empty(tokens * 4 * h * f)))  /* x @ W1 + b1 */
        return -1;
    if (!(L->a1 = tensor_empty(tokens * 4 * h * f)))  /* gelu(h1) */
        return -1;
    if (!(L->out = tensor_empty(tokens * h * f)))     /* a1 @ W2 + b2 */
        return -1;
    return 0;
}

__attribute__((noinline)) static int backward_layer(struct model *m, int l, size_t tokens)
{
    struct layer *L = &m->layer[l];
    size_t h = m->hidden, f = sizeof(float);
    /* Gradients appear at the first backward, as autograd allocates .grad lazily. */
    for (int p = 0; p < NPARAM; p++)
        if (!L->grad[p] && !(L->grad[p] = tensor_empty(L->param_bytes[p])))
            return -1;
    struct block *d_a1 = tensor_empty(tokens * 4 * h * f);
    struct block *d_h1 = d_a1 ? tensor_empty(tokens * 4 * h * f) : NULL;
    cache_free(d_h1);
    cache_free(d_a1);
    /* The saved activations die once their gradients are computed. */
    cache_free(L->out);
    cache_free(L->a1);
    cache_free(L->h1);
    L->out = L->a1 = L->h1 = NULL;
    return d_h1 ? 0 : -1;
}

__attribute__((noinline)) static int optimizer_step(struct model *m)
{
    if (!m->optimizer_ready && init_optimizer_state(m) != 0)
        return -1;
    /* The fused update needs a temporary as large as each parameter, one at a time. */
    for (int l = 0; l < m->layers; l++)
        for (int p = 0; p < NPARAM; p++) {
            struct block *tmp = tensor_empty(m->layer[l].param_bytes[p]);
            if (!tmp)
                return -1;
            cache_free(tmp);
        }
    return 0;
}

/* Frees whatever a step left behind when it failed part-way (PyTorch drops them with the exception). */
static void drop_activations(struct model *m)
{
    for (int l = 0; l < m->layers; l++) {
        struct layer *L = &m->layer[l];
        cache_free(L->out);
        cache_free(L->a1);
        cache_free(L->h1);
        L->out = L->a1 = L->h1 = NULL;
    }
}

__attribute__((noinline)) static int train_step(struct model *m, size_t tokens)
{
    for (int l = 0; l < m->layers; l++)
        if (forward_layer(m, l, tokens) != 0)
            return -1;
    struct block *loss = tensor_empty(sizeof(float));
    if (!loss)
        return -1;
    for (int l = m->layers - 1; l >= 0; l--)
        if (backward_layer(m, l, tokens) != 0) {
            cache_free(loss);
            return -1;
        }
    cache_free(loss);
    return optimizer_step(m);
}

static void free_model(struct model *m)
{
    drop_activations(m);
    for (int l = 0; l < m->layers; l++)
        for (int p = 0; p < NPARAM; p++) {
            cache_free(m->layer[l].exp_avg_sq[p]);
            cache_free(m->layer[l].exp_avg[p]);
            cache_free(m->layer[l].grad[p]);
            cache_free(m->layer[l].param[p]);
        }
    release_cached_blocks();
}

/* ---- driver and main ---------------------------------------------------------------------------- */

static int load_driver(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        fprintf(stderr, "train_sim: cannot load libcuda.so.1: %s\n", dlerror());
        return -1;
    }
    struct {
        void **slot;
        const char *name;
    } syms[] = {
        {(void **)&cu.init, "cuInit"},
        {(void **)&cu.device_get, "cuDeviceGet"},
        {(void **)&cu.primary_retain, "cuDevicePrimaryCtxRetain"},
        {(void **)&cu.primary_release, "cuDevicePrimaryCtxRelease_v2"},
        {(void **)&cu.ctx_set_current, "cuCtxSetCurrent"},
        {(void **)&cu.mem_alloc, "cuMemAlloc_v2"},
        {(void **)&cu.mem_free, "cuMemFree_v2"},
        {(void **)&cu.mem_get_info, "cuMemGetInfo_v2"},
        {(void **)&cu.error_string, "cuGetErrorString"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++)
        if (!(*syms[i].slot = dlsym(lib, syms[i].name))) {
            fprintf(stderr, "train_sim: libcuda.so.1 lacks %s\n", syms[i].name);
            return -1;
        }
    return 0;
}

static void print_size(FILE *f, size_t bytes)
{
    if (bytes >= ((size_t)1 << 30))
        fprintf(f, "%.2f GiB", bytes / (double)(1 << 30));
    else if (bytes >= MiB)
        fprintf(f, "%.2f MiB", bytes / (double)MiB);
    else
        fprintf(f, "%zu bytes", bytes);
}

/* PyTorch's torch.OutOfMemoryError text, with the caching allocator's own numbers. */
static void report_oom(void)
{
    size_t free_b = 0, total_b = 0;
    cu.mem_get_info(&free_b, &total_b);
    fprintf(stderr, "train_sim: CUDA out of memory. Tried to allocate ");
    print_size(stderr, oom_request);
    fprintf(stderr, ". GPU 0 has a total capacity of ");
    print_size(stderr, total_b);
    fprintf(stderr, " of which ");
    print_size(stderr, free_b);
    fprintf(stderr, " is free. Of the allocated memory ");
    print_size(stderr, stats.allocated);
    fprintf(stderr, " is allocated by the caching allocator, and ");
    print_size(stderr, stats.reserved - stats.allocated);
    fprintf(stderr, " is reserved but unallocated.\n");
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: train_sim [--steps N] [--layers N] [--hidden N] [--tokens N]\n"
            "  Simulated training of an MLP stack on the CUDA driver, PyTorch-style caching allocator.\n"
            "  --steps N   training steps (default 5); step s runs TOKENS * 2^(s-1) tokens\n"
            "  --layers N  MLP blocks (default 8)\n"
            "  --hidden N  width H; each block holds 8*H*H + 5*H fp32 parameters (default 2048)\n"
            "  --tokens N  tokens in step 1 (default 1024)\n"
            "  With SIMCUDA_MEMORY=8GiB the defaults run out of memory in step 4.\n");
}

static int parse_positive(const char *s, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v <= 0)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    long steps = 5, layers = 8, hidden = 2048, tokens = 1024;
    for (int i = 1; i < argc; i++) {
        long *target = !strcmp(argv[i], "--steps") ? &steps : !strcmp(argv[i], "--layers") ? &layers
                     : !strcmp(argv[i], "--hidden") ? &hidden : !strcmp(argv[i], "--tokens") ? &tokens : NULL;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!target || i + 1 == argc || parse_positive(argv[++i], target) != 0) {
            usage(stderr);
            return 2;
        }
    }
    if (load_driver() != 0)
        return 1;
    CUdevice dev;
    CUcontext ctx;
    CUresult rc = cu.init(0);
    if (rc == CUDA_SUCCESS)
        rc = cu.device_get(&dev, 0);
    if (rc == CUDA_SUCCESS)
        rc = cu.primary_retain(&ctx, dev);
    if (rc == CUDA_SUCCESS)
        rc = cu.ctx_set_current(ctx);
    if (rc != CUDA_SUCCESS) {
        const char *msg = "?";
        cu.error_string(rc, &msg);
        fprintf(stderr, "train_sim: cannot initialize CUDA: %s (%d)\n", msg ? msg : "?", rc);
        return 1;
    }

    struct model m = {.layers = (int)layers, .hidden = (size_t)hidden};
    m.layer = calloc((size_t)layers, sizeof *m.layer);
    long done = 0, oom_step = 0;
    if (init_parameters(&m) != 0) {
        oom_step = 0;
    } else {
        for (long s = 1; s <= steps; s++) {
            size_t t = (size_t)tokens << (s - 1 < 40 ? s - 1 : 40);
            if (train_step(&m, t) != 0) {
                oom_step = s;
                break;
            }
            done = s;
        }
    }
    if (oom_device)
        report_oom();
    printf("train_sim: layers=%ld hidden=%ld steps=%ld completed=%ld oom_step=%ld peak_allocated=%zu "
           "peak_reserved=%zu driver_allocs=%lu driver_frees=%lu cache_hits=%lu\n",
           layers, hidden, steps, done, oom_device ? oom_step : -1, stats.peak_allocated, stats.peak_reserved,
           stats.driver_allocs, stats.driver_frees, stats.hits);
    free_model(&m);
    free(m.layer);
    cu.primary_release(dev);
    return 0;
}
