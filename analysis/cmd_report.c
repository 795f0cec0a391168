/*
 * cmd_report.c: `cumemtrace report [--json] [--html FILE] [--top N] TRACE...`
 *
 * What a person asks first: how much device memory the program needed at most, when, and who held it;
 * what was still held at exit; which allocations failed and why. Text by default (aligned tables, human
 * units), --json with exact integers, --html one self-contained
 * interactive page (analysis/html.c and analysis/viewer/: bands over time, flame graph of the peak, the allocator's
 * segments).
 *
 * Runs in the `cumemtrace` command. Builds its whole output in memory and prints it only on success.
 */
#include "commands.h"

#include "render.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: cumemtrace report [--json] [--html FILE] [--top N] [--rules FILE] [--params N [--mixed]]"
                 " [--whatif CONF]... [--whatif-gpu GPU] TRACE|DIR...\n"
                 "  --json       machine-readable output (exact bytes, ns since the start)\n"
                 "  --html FILE  also write the viewer: one self-contained page (every allocation a band over time,\n"
                 "               hover for its stack, zoom; flame graph of the peak; allocator segments; tables)\n"
                 "  --top N      stacks listed per table (default 10)\n"
                 "  --rules FILE component rules instead of the shipped ones (see share/cumemtrace/torch/rules.txt)\n"
                 "  --params N   the model's parameter count: expected vs measured parameters, gradients and\n"
                 "               optimizer state (fp32 Adam: 4 + 4 + 8 bytes each; --mixed: 2 + 2 + 12)\n"
                 "  --whatif CONF  add the what-if table (as `cumemtrace whatif` prints it; in the text, the JSON's\n"
                 "               \"whatif\" and the page): the allocator history replayed as recorded and under CONF\n"
                 "               (repeatable; e.g. expandable_segments:True, max_split_size_mb:128)\n"
                 "  --whatif-gpu GPU  the what-if runs on that device (a preset or a size), as whatif --gpu\n");
}

int cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"html", required_argument, NULL, 'H'},
                                         {"top", required_argument, NULL, 't'},
                                         {"rules", required_argument, NULL, 'r'},
                                         {"params", required_argument, NULL, 'p'},
                                         {"mixed", no_argument, NULL, 'm'},
                                         {"whatif", required_argument, NULL, 'w'},
                                         {"whatif-gpu", required_argument, NULL, 'g'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int json = 0, c, status = 1;
    const char *html = NULL, *whatif[16];
    char err[1024] = "";
    struct cmt_report_options ro = {.top = 10, .whatif = whatif};
    struct cmt_torch_options *to = &ro.torch;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'H': html = optarg; break;
        case 't':
            ro.top = atoi(optarg);
            if (ro.top <= 0) {
                cmt_log("report: --top needs a positive number");
                return 2;
            }
            break;
        case 'r': to->rules = optarg; break;
        case 'p': {
            char *end = NULL;
            to->params = strtoll(optarg, &end, 10);
            if (to->params <= 0 || !end || *end) {
                cmt_log("report: --params needs a positive number of parameters");
                return 2;
            }
            break;
        }
        case 'm': to->mixed = 1; break;
        case 'w':
            if (ro.nwhatif == (int)(sizeof whatif / sizeof whatif[0])) {
                cmt_log("report: at most %d --whatif", ro.nwhatif);
                return 2;
            }
            whatif[ro.nwhatif++] = optarg;
            break;
        case 'g': ro.whatif_gpu = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            cmt_log("report: unknown option '%s' (see 'cumemtrace report --help')", argv[optind - 1]);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    struct cmt_set s;
    struct cmt_report r = {0};
    struct sbuf out = {0}, page = {0};
    struct cmt_rules rules = {0};
    int have_rules = 0;
    if (cmt_load(&s, argv + optind, argc - optind, NULL, 0, err, sizeof err) != 0 ||
        cmt_report_build(&r, &s, &ro, err, sizeof err) != 0)
        goto out;
    if (json)
        cmt_render_json(&out, &r);
    else
        cmt_render_text(&out, &r);
    if (html) {
        /* components of the bands: the same rules as the report's (shipped, or --rules) */
        if (cmt_rules_load(&rules, to->rules, err, sizeof err) != 0) {
            if (to->rules)
                goto out;
            err[0] = 0; /* no shipped rules beside us: every band is "other" by component */
        } else
            have_rules = 1;
        if (cmt_render_page(&page, &r, have_rules ? &rules : NULL, err, sizeof err) != 0)
            goto out;
    }
    if ((html && sb_write(&page, html, err, sizeof err) != 0) || sb_write(&out, NULL, err, sizeof err) != 0)
        goto out;
    if (html)
        cmt_log("report written to %s", html);
    status = 0;
out:
    if (status)
        cmt_log("%s", err);
    sb_free(&out);
    sb_free(&page);
    cmt_report_free(&r);
    cmt_rules_free(&rules);
    cmt_set_close(&s);
    return status;
}
