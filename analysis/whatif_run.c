/*
 * whatif_run.c: one what-if run as `whatif` and `report --whatif` ask for it (see whatif.h): the recorded
 * configuration first, then each requested one, under the capacity of --capacity, or of --gpu (the device
 * as the simulated driver presents it: whole 2 MiB pages of its memory, less its CUDA context's, less the
 * memory the trace held outside the caching allocator at its peak, which the allocator level tells).
 *
 * Runs in the `cumemtrace` command; loads the simulated driver (dlopen) only to ask it a device's sizes.
 */
#include "whatif.h"

#include "torch.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int query_sim(struct cmt_whatif_gpu *g, char *err, size_t errlen)
{
    static const char *const presets[] = {"H100", "H200", "A100-40GB", "A100-80GB", "L4", "RTX4090", "RTX3090", NULL};
    static const char *const sim_rel[] = {"../simgpu/libcuda.so.1", "../" CMT_LIBDIR "/cumemtrace/sim/libcuda.so.1",
                                          "../lib/cumemtrace/sim/libcuda.so.1", NULL};
    int preset = -1;
    uint64_t size = 0;
    for (int k = 0; presets[k]; k++)
        if (!strcasecmp(g->spec, presets[k]))
            preset = k;
    if (preset < 0 && (cmt_parse_size(g->spec, &size) != 0 || size < (2u << 20))) {
        snprintf(err, errlen, "whatif: --gpu %s: not a GPU (H100, H200, A100-40GB, A100-80GB, L4, RTX4090, RTX3090) "
                 "or a size of at least 2MiB", g->spec);
        return -1;
    }
    char lib[PATH_MAX];
    if (cmt_find_beside(sim_rel, NULL, lib) != 0) {
        snprintf(err, errlen, "whatif: --gpu needs the simulated driver (libcuda.so.1), not found beside this program");
        return -1;
    }
    /* the simulated driver reads its device from the environment, as under run --sim-gpu */
    char buf[32];
    unsetenv("SIMCUDA_DEVICES");
    if (preset >= 0) {
        setenv("SIMCUDA_GPU", presets[preset], 1);
        unsetenv("SIMCUDA_MEMORY");
    } else {
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)size);
        setenv("SIMCUDA_MEMORY", buf, 1);
        unsetenv("SIMCUDA_GPU");
    }
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    int (*init)(unsigned) = h ? (int (*)(unsigned))dlsym(h, "cuInit") : NULL;
    int (*total)(size_t *, int) = h ? (int (*)(size_t *, int))dlsym(h, "cuDeviceTotalMem_v2") : NULL;
    unsigned long long (*context)(void) = h ? (unsigned long long (*)(void))dlsym(h, "simcuda_context_bytes") : NULL;
    size_t t = 0;
    int rc = -1;
    if (init && total && context && init(0) == 0 && total(&t, 0) == 0) {
        g->total = t;
        g->context = context();
        rc = 0;
    } else {
        snprintf(err, errlen, "whatif: --gpu %s: the simulated driver %.200s did not answer", g->spec, lib);
    }
    if (h)
        dlclose(h);
    return rc;
}

uint64_t cmt_whatif_outside(const struct cmt_set *s, const struct cmt_torch *x)
{
    const struct cmt_dev *dev = NULL;
    for (size_t d = 0; s->n && d < s->t[0]->ndevs; d++)
        if (!dev || s->t[0]->devs[d].peak > dev->peak)
            dev = &s->t[0]->devs[d];
    const struct cmt_frag *f = NULL;
    for (size_t i = 0; dev && i < x->nfrag; i++)
        if (x->frag[i].device == dev->device && (!f || x->frag[i].max_reserved > f->max_reserved))
            f = &x->frag[i];
    return dev && f && dev->peak > f->max_reserved ? (uint64_t)(dev->peak - f->max_reserved) : 0;
}

/* cmt_whatif_outside of a trace not analyzed yet: its pass and allocator level first. */
static int outside_bytes(const char *path, uint64_t *out, char *err, size_t errlen)
{
    struct cmt_set s;
    struct cmt_torch x = {0};
    struct cmt_torch_options to = {0};
    char *paths[1] = {(char *)path};
    *out = 0;
    if (cmt_load(&s, paths, 1, NULL, 0, err, errlen) != 0)
        return -1;
    int rc = cmt_torch_build(&x, &s, &to, err, errlen);
    if (rc == 0)
        *out = cmt_whatif_outside(&s, &x);
    cmt_torch_free(&x);
    cmt_set_close(&s);
    return rc;
}

/* The what-if runs: the recorded configuration first, then each of confs (under the capacity a --gpu or
 * --capacity gave, else the recorded one). *nout: how many configurations follow the recorded one. 0; -1
 * with a one-line reason; -2 when an option's value is refused. */
int cmt_whatif_run(const char *trace, const char *const *confs, int nconf, struct cmt_whatif_gpu *gpu,
                   const uint64_t *outside, uint64_t capacity, struct cmt_whatif_outcome *out, int *nout, char *err,
                   size_t errlen)
{
    if (gpu->spec && capacity != UINT64_MAX) {
        snprintf(err, errlen, "whatif: --gpu and --capacity: one or the other");
        return -2;
    }
    if (gpu->spec) {
        if (query_sim(gpu, err, errlen) != 0)
            return -2;
        if (outside)
            gpu->outside = *outside;
        else if (outside_bytes(trace, &gpu->outside, err, errlen) != 0)
            return -1;
        /* the device hands out whole 2 MiB pages */
        uint64_t pages = gpu->total / (2u << 20) * (2u << 20);
        uint64_t held = gpu->context + gpu->outside;
        gpu->capacity = pages > held ? pages - held : 0;
        if (!gpu->capacity) {
            snprintf(err, errlen, "whatif: --gpu %s: its memory (less the CUDA context's) is smaller than what the "
                                  "trace held outside the caching allocator", gpu->spec);
            return -2;
        }
        capacity = gpu->capacity;
    }
    memset(out, 0, sizeof *out * (size_t)(nconf + 2));
    struct cmt_aconf rec = {.max_split_size = UINT64_MAX, .divisions = 0, .capacity = UINT64_MAX};
    uint64_t rec_capacity = UINT64_MAX;
    struct cmt_whatif_entry *e = NULL;
    size_t n = 0;
    int rc = -1;
    if (cmt_whatif_load(trace, &e, &n, &rec, &rec_capacity, &out[0].recorded_gc, err, errlen) != 0)
        goto out;
    rec.capacity = rec_capacity;
    out[0].label = "recorded";
    out[0].conf = rec;
    for (int k = 0; k < nconf; k++) {
        out[k + 1].label = confs[k];
        out[k + 1].conf = rec;
        out[k + 1].conf.capacity = capacity != UINT64_MAX ? capacity : rec_capacity;
        char why[512];
        if (cmt_aconf_parse(&out[k + 1].conf, confs[k], why, sizeof why) != 0) {
            snprintf(err, errlen, "whatif: %s", why);
            rc = -2;
            goto out;
        }
        if (out[k + 1].conf.gc_threshold > 0 && out[k + 1].conf.capacity == UINT64_MAX) {
            snprintf(err, errlen, "whatif: --alloc-conf %s: garbage collection acts only under a per-process memory "
                                  "limit: give it with --capacity", confs[k]);
            rc = -2;
            goto out;
        }
    }
    if (!nconf && capacity != UINT64_MAX) {
        out[1].label = "recorded settings";
        out[1].conf = rec;
        out[1].conf.capacity = capacity;
        nconf = 1;
    }
    for (int k = 0; k <= nconf; k++)
        if (cmt_whatif_replay(e, n, &out[k], k == 0, err, errlen) != 0)
            goto out;
    *nout = nconf;
    rc = 0;
out:
    free(e);
    return rc;
}

