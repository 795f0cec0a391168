/*
 * verdict.c: the paragraph `cumemtrace run --sim-gpu` prints on stderr once the program has ended: the
 * peak against the simulated device's capacity, whether it fits and with how much to spare, or the first
 * out-of-memory with its verdict, and the components at the peak when the allocator level was recorded.
 *
 * Runs in the `cumemtrace` command, after the traces are finished. Renders only; the figures are the
 * report's (cmt_load, cmt_torch_build).
 */
#include "verdict.h"

#include "torch.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

static void line(const char *fmt, const char *a, const char *b, const char *c, const char *d)
{
    fputs("cumemtrace:   ", stderr);
    fprintf(stderr, fmt, a, b, c, d);
    fputc('\n', stderr);
}

int cmt_run_verdict(char **paths, int npaths, int64_t context_bytes)
{
    struct cmt_set s;
    struct cmt_torch x = {0};
    struct cmt_torch_options to = {0};
    char err[512];
    if (cmt_load(&s, paths, npaths, NULL, 0, err, sizeof err) != 0)
        return -1;
    int status = -1;
    if (cmt_torch_build(&x, &s, &to, err, sizeof err) != 0)
        goto out;

    /* the device whose own peak was highest (one process per device in the usual case) */
    const struct cmt_dev *dev = NULL;
    for (size_t i = 0; i < s.n; i++)
        for (size_t d = 0; d < s.t[i]->ndevs; d++)
            if (!dev || s.t[i]->devs[d].peak > dev->peak)
                dev = &s.t[i]->devs[d];
    char t1[32], t2[32], t3[32], t4[32];
    if (!dev || !dev->total_bytes) {
        status = 0;
        goto out;
    }
    int64_t usable = dev->total_bytes - context_bytes;
    cmt_bytes_str(dev->total_bytes, t1);
    cmt_bytes_str(context_bytes, t2);
    fprintf(stderr, "cumemtrace: on the simulated %s (device %lld, %s", dev->name ? dev->name : "GPU",
            (long long)dev->device, t1);
    if (context_bytes)
        fprintf(stderr, ", of which the CUDA context takes %s", t2);
    fputs("):\n", stderr);

    cmt_bytes_str(dev->peak, t1);
    cmt_time_str(dev->peak_ts - s.t0, t2);
    const struct cmt_frag *f = NULL;
    for (size_t i = 0; i < x.nfrag; i++)
        if (x.frag[i].device == dev->device && (!f || x.frag[i].max_reserved > f->max_reserved))
            f = &x.frag[i];
    if (f) {
        char t5[32];
        cmt_bytes_str(f->max_reserved, t3);
        cmt_bytes_str(f->peak_alloc, t4);
        int64_t outside = dev->peak - f->max_reserved;
        cmt_bytes_str(outside > 0 ? outside : 0, t5);
        fprintf(stderr, "cumemtrace:   peak %s of device memory at %s; PyTorch's peaks: reserved %s, allocated %s; "
                        "%s held outside its caching allocator at the peak\n", t1, t2, t3, t4, t5);
    } else {
        line("peak %s of device memory at %s%s%s", t1, t2, "", "");
    }

    /* the first failure: the allocator's own OOM entry if there is one, else the driver's */
    const struct cmt_oom *oom = NULL;
    for (size_t i = 0; i < x.nooms && !oom; i++)
        if (x.ooms[i].source == 0)
            oom = &x.ooms[i];
    for (size_t i = 0; i < x.nooms && !oom; i++)
        oom = &x.ooms[i];
    if (oom) {
        cmt_bytes_str(oom->size, t1);
        cmt_time_str(oom->ts - s.t0, t2);
        cmt_bytes_str(oom->free_bytes, t3);
        fprintf(stderr, "cumemtrace:   OUT OF MEMORY: %s requested at %s", t1, t2);
        if (oom->has_free)
            fprintf(stderr, " with %s free on the device", t3);
        fprintf(stderr, "; %s\n", oom->has_mv && oom->mv.kind == CMT_MV_OUTSIDE
                                       ? "memory held outside the caching allocator keeps it from the request"
                                   : oom->fragmentation ? "fragmentation: the free memory is there but in pieces"
                                                        : "capacity: the device cannot hold it");
        char adv[4][256];
        int na = cmt_oom_advice(oom, adv);
        for (int k = 0; k < na; k++)
            line("%s%s%s%s", adv[k], "", "", "");
    } else if (s.nfails) {
        const struct cmt_failure *fl = &s.fails[0];
        cmt_bytes_str(fl->size, t1);
        cmt_time_str(fl->ts - s.t0, t2);
        line("a device allocation of %s failed at %s (see the report's FAILED ALLOCATIONS)%s%s", t1, t2, "", "");
    } else if (dev->peak <= usable) {
        cmt_bytes_str(usable - dev->peak, t1);
        line("fits with %s to spare%s%s%s", t1, "", "", "");
    } else {
        cmt_bytes_str(dev->peak - usable, t1);
        line("does not fit: the peak exceeds what the device offers by %s%s%s%s", t1, "", "", "");
    }

    if (x.has_alloc) {
        int order[CMT_NCOMP], n = 0;
        for (int c = 0; c < CMT_NCOMP; c++)
            if (x.comp_peak[c] > 0)
                order[n++] = c;
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && x.comp_peak[order[j]] > x.comp_peak[order[j - 1]]; j--) {
                int tmp = order[j];
                order[j] = order[j - 1];
                order[j - 1] = tmp;
            }
        if (n) {
            fputs("cumemtrace:   at the allocator's peak:", stderr);
            for (int i = 0; i < n; i++)
                fprintf(stderr, "%s %s %s", i ? "," : "", cmt_comp_names[order[i]],
                        cmt_bytes_str(x.comp_peak[order[i]], t1));
            fputc('\n', stderr);
        }
    }
    status = 0;
out:
    cmt_torch_free(&x);
    cmt_set_close(&s);
    return status;
}
