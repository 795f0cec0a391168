/*
 * cmd_timeline.c: `cumemtrace timeline [--by kind|module|component] [--allocator] [--points N] -o FILE TRACE...`
 *
 * Device memory over time per device, stacked by kind or by module, with the peak and the failures
 * marked. The format follows FILE's extension (or --format): .svg standalone (with the phase bands, NVTX
 * ranges, under the chart when the run has any), .html the interactive viewer (analysis/html.c: every
 * allocation a band, the phases under them, zoom, flame graph; --by picks its first colouring),
 * .csv one row per point, .json the Chrome trace event format (counter tracks and instant events) that
 * Perfetto and chrome://tracing open. Points are the highest and the last state of each of N time buckets,
 * so the peak is always drawn exactly.
 *
 * --by component stacks device memory by the component rules (analysis/torch/rules.txt, or --rules FILE).
 * --allocator draws the allocator level instead (traces with an imported PyTorch snapshot): allocated and
 * reserved as two curves per device, allocated stacked by component underneath (.csv: one row per point).
 *
 * Runs in the `cumemtrace` command. Writes FILE only once everything succeeded.
 */
#include "commands.h"

#include "render.h"
#include "torch.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: cumemtrace timeline [--by kind|module|component] [--allocator] [--rules FILE] [--points N]\n"
                 "                           [--format F] -o FILE TRACE|DIR...\n"
                 "  -o FILE       output; the format follows the extension: .svg .html .csv .json (Chrome trace)\n"
                 "                ('-' writes to standard output, CSV unless --format says otherwise)\n"
                 "  --format F    svg, html, csv or json, whatever the extension\n"
                 "  --by B        stack the layers by kind (default), by module or by component\n"
                 "  --allocator   the allocator level: allocated and reserved curves, components stacked\n"
                 "  --rules FILE  component rules instead of the shipped ones\n"
                 "  --points N    time buckets (default 2000)\n");
}

static const char *ext_format(const char *path)
{
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (!dot)
        return NULL;
    if (!strcmp(dot, ".svg"))
        return "svg";
    if (!strcmp(dot, ".html") || !strcmp(dot, ".htm"))
        return "html";
    if (!strcmp(dot, ".csv"))
        return "csv";
    if (!strcmp(dot, ".json"))
        return "json";
    return NULL;
}

int cmd_timeline(int argc, char **argv)
{
    static const struct option opts[] = {{"by", required_argument, NULL, 'b'},
                                         {"points", required_argument, NULL, 'p'},
                                         {"format", required_argument, NULL, 'f'},
                                         {"allocator", no_argument, NULL, 'A'},
                                         {"rules", required_argument, NULL, 'r'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct cmt_timeline tl = {.points = 2000, .by = CMT_BY_KIND};
    const char *out_path = NULL, *format = NULL, *rules_path = NULL;
    char err[1024] = "";
    int allocator = 0;
    struct cmt_rules rules = {0};
    struct cmt_acurve *curves = NULL;
    size_t ncurves = 0;
    int c, status = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (!strcmp(optarg, "kind"))
                tl.by = CMT_BY_KIND;
            else if (!strcmp(optarg, "module"))
                tl.by = CMT_BY_MODULE;
            else if (!strcmp(optarg, "component"))
                tl.by = CMT_BY_CLASS;
            else {
                cmt_log("timeline: --by takes kind, module or component");
                return 2;
            }
            break;
        case 'p':
            tl.points = atoi(optarg);
            if (tl.points < 2 || tl.points > 1000000) {
                cmt_log("timeline: --points takes a number from 2 to 1000000");
                return 2;
            }
            break;
        case 'f': format = optarg; break;
        case 'o': out_path = optarg; break;
        case 'A': allocator = 1; break;
        case 'r': rules_path = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            cmt_log("timeline: unknown option or missing value '%s' (see 'cumemtrace timeline --help')", argv[optind - 1]);
            return 2;
        }
    }
    if (!out_path) {
        cmt_log("timeline: -o FILE is required (.svg, .html, .csv or .json)");
        return 2;
    }
    if (!format)
        format = ext_format(out_path);
    if (!format && !strcmp(out_path, "-"))
        format = "csv";
    if (!format || (strcmp(format, "svg") && strcmp(format, "html") && strcmp(format, "csv") && strcmp(format, "json"))) {
        cmt_log("timeline: cannot tell the format of '%s': use .svg, .html, .csv or .json, or --format", out_path);
        return 2;
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    struct cmt_set s;
    struct sbuf b = {0};
    memset(&s, 0, sizeof s);
    int html = !strcmp(format, "html"), have_rules = 0;
    if (tl.by == CMT_BY_CLASS || allocator || rules_path) {
        if (cmt_rules_load(&rules, rules_path, err, sizeof err) != 0)
            goto out;
        have_rules = 1;
    } else if (html) {
        /* the viewer colours by component: the shipped rules when they are beside us, else all "other" */
        have_rules = cmt_rules_load(&rules, NULL, err, sizeof err) == 0;
        err[0] = 0;
    }
    /* --by component: each stack's class is its component under the rules */
    tl.classify = cmt_rules_classify;
    tl.cctx = &rules;
    tl.class_names = cmt_comp_names;
    tl.nclasses = CMT_NCOMP;
    struct cmt_observer ob = cmt_timeline_observer(&tl);
    if (cmt_load(&s, argv + optind, argc - optind, &ob, 1, err, sizeof err) != 0)
        goto out;
    int rc;
    if (allocator) {
        if (cmt_torch_curves(&s, &rules, tl.points, &curves, &ncurves, err, sizeof err) != 0)
            goto out;
        if (!ncurves) {
            snprintf(err, sizeof err, "--allocator: no allocator data in these traces (cumemtrace import-torch, or "
                                      "run --torch)");
            goto out;
        }
        if (html) {
            if (cmt_timeline_html(&b, &s, &tl, &rules, 1, err, sizeof err) != 0)
                goto out;
            rc = 0;
        } else
            rc = cmt_timeline_allocator(&b, &s, curves, ncurves, format);
    } else if (html) {
        if (cmt_timeline_html(&b, &s, &tl, have_rules ? &rules : NULL, 0, err, sizeof err) != 0)
            goto out;
        rc = 0;
    } else if (!strcmp(format, "csv"))
        rc = cmt_timeline_csv(&b, &s, &tl);
    else if (!strcmp(format, "json"))
        rc = cmt_timeline_chrome(&b, &s, &tl);
    else
        rc = cmt_timeline_svg(&b, &s, &tl);
    if (rc != 0) {
        snprintf(err, sizeof err, "out of memory while writing the timeline");
        goto out;
    }
    if (sb_write(&b, out_path, err, sizeof err) != 0)
        goto out;
    status = 0;
out:
    if (status)
        cmt_log("%s", err);
    sb_free(&b);
    cmt_torch_curves_free(curves, ncurves);
    cmt_rules_free(&rules);
    cmt_timeline_free(&tl);
    cmt_set_close(&s);
    return status;
}
