/*
 * cmd_whatif.c: `cumemtrace whatif TRACE [--alloc-conf CONF]... [--capacity SIZE] [--json]`.
 *
 * --gpu PRESET|SIZE: the capacity of that device as the simulated driver presents it (whole 2 MiB pages of
 * its memory, less its CUDA context's memory, as `run --sim-gpu` would have it), less the memory the
 * trace shows held outside the caching allocator at its peak.
 *
 * Replays the caching allocator's recorded requests (the alloc_trace of the trace's latest snapshot: a
 * run under `run --torch`, or an imported snapshot) through the allocator model: first under the recorded
 * configuration, as a check of the model against what really happened, then under each requested
 * configuration (whatif.c, whatif_run.c). For each: peak reserved, peak allocated, fragmentation at the
 * reserved peak, and the first request that would run out of memory (render_whatif.c draws them).
 *
 * Runs in the `cumemtrace` command: parses options, runs, picks the renderer.
 */
#include "commands.h"
#include "util.h"
#include "whatif.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static void usage(FILE *out)
{
    fprintf(out, "usage: cumemtrace whatif TRACE [--alloc-conf CONF]... [--capacity SIZE | --gpu PRESET|SIZE] [--json]\n"
                 "  replays PyTorch's caching allocator as recorded (run --torch, or an imported snapshot),\n"
                 "  then under each CONF (max_split_size_mb:N, roundup_power2_divisions:N, expandable_segments:True,\n"
                 "  garbage_collection_threshold:F with a capacity; comma-separated)\n"
                 "  --capacity SIZE  bytes the allocator may reserve in the what-if runs (e.g. 20GiB)\n"
                 "  --gpu GPU        the what-if runs on that device (H100, H200, A100-40GB, A100-80GB, L4, RTX4090,\n"
                 "                   RTX3090, or a size): its memory less its CUDA context's and less what the trace\n"
                 "                   held outside the caching allocator at its peak\n");
}

int cmd_whatif(int argc, char **argv)
{
    const char *confs[CMT_WHATIF_MAX_CONFS], *trace = NULL;
    int nconf = 0, json = 0;
    uint64_t capacity = UINT64_MAX;
    struct cmt_whatif_gpu gpu = {0};
    char err[1024];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--alloc-conf") && i + 1 < argc) {
            if (nconf == CMT_WHATIF_MAX_CONFS) {
                cmt_log("whatif: at most %d --alloc-conf", CMT_WHATIF_MAX_CONFS);
                return 2;
            }
            confs[nconf++] = argv[++i];
        } else if (!strcmp(argv[i], "--gpu") && i + 1 < argc) {
            gpu.spec = argv[++i];
        } else if (!strcmp(argv[i], "--capacity") && i + 1 < argc) {
            if (cmt_parse_size(argv[++i], &capacity) != 0 || !capacity) {
                cmt_log("whatif: --capacity %s: a size in bytes (or with KiB, MiB, GiB)", argv[i]);
                return 2;
            }
        } else if (argv[i][0] == '-') {
            cmt_log("whatif: unknown option '%s'", argv[i]);
            usage(stderr);
            return 2;
        } else if (!trace) {
            trace = argv[i];
        } else {
            cmt_log("whatif: one trace at a time");
            return 2;
        }
    }
    if (!trace) {
        usage(stderr);
        return 2;
    }
    struct cmt_whatif_outcome out[CMT_WHATIF_MAX_CONFS + 2];
    int n = 0, rc = cmt_whatif_run(trace, confs, nconf, &gpu, NULL, capacity, out, &n, err, sizeof err);
    if (rc != 0) {
        cmt_log("%s", err);
        return rc == -2 ? 2 : 1;
    }
    struct sbuf b = {0};
    if (json) {
        sb_puts(&b, "{\"configs\":");
        cmt_whatif_json(&b, out, n);
        if (gpu.spec) {
            sb_puts(&b, ",\"gpu\":");
            cmt_whatif_gpu_json(&b, &gpu);
        }
        sb_puts(&b, "}\n");
    } else {
        cmt_whatif_text(&b, out, n, &gpu);
    }
    if (sb_write(&b, NULL, err, sizeof err) != 0) {
        cmt_log("%s", err);
        sb_free(&b);
        return 1;
    }
    sb_free(&b);
    return 0;
}
