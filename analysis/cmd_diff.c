/*
 * cmd_diff.c: `cumemtrace diff [--json] [--top N] [-o FILE.svg|.html] A B`
 *
 * Two runs of one program (each a trace or a directory of per-process traces): the peak of each and the
 * difference; what was live at each peak, per stack and per module, stacks matched by their symbolized
 * frames (addresses differ between runs; file:line and inlined functions as the report shows them, from
 * whichever side had the stack first), the largest growth first; optionally an overlay of the two
 * timelines (.svg), or the viewer page (.html, analysis/html.c) with both runs, their totals overlaid from
 * each run's start, and growth by stack. Phases (NVTX ranges, analysis/ranges.c): per range name the peak
 * inside it in A and in B and which grew most; --align RANGE pairs the Nth instance of RANGE in A with the
 * Nth in B (step N against step N) and says, per instance, which phase inside it grew; the .html page has the
 * growth by phase, and with --align offsets B's time so that the chosen instance starts with A's.
 *
 * The comparison is diff.c's model, drawn by render_diff.c; this verb parses options, loads both runs and
 * picks the renderers.
 *
 * Runs in the `cumemtrace` command. Prints only once everything succeeded.
 */
#include "commands.h"

#include "chart.h"
#include "diff.h"
#include "rules.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: cumemtrace diff [--json] [--top N] [--align RANGE] [-o FILE.svg|FILE.html] A B\n"
                 "  A, B      a trace or a directory of per-process traces, one run each\n"
                 "  --json    machine-readable output (exact bytes)\n"
                 "  --top N   rows per table in text (default 20)\n"
                 "  --align RANGE  compare the Nth instance of the range named RANGE in A with the Nth in B\n"
                 "            (e.g. step N against step N) and the phases inside each\n"
                 "  -o FILE   also write the two timelines overlaid (.svg), or the viewer with both runs (.html)\n");
}

int cmd_diff(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"top", required_argument, NULL, 't'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"align", required_argument, NULL, 'a'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int json = 0, top = 20, c, status = 1;
    const char *out_path = NULL, *align = NULL;
    char err[1024] = "";
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 't':
            top = atoi(optarg);
            if (top <= 0) {
                cmt_log("diff: --top needs a positive number");
                return 2;
            }
            break;
        case 'o': out_path = optarg; break;
        case 'a': align = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            cmt_log("diff: unknown option or missing value '%s' (see 'cumemtrace diff --help')", argv[optind - 1]);
            return 2;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return 2;
    }
    const char *ext = out_path ? strrchr(out_path, '.') : NULL;
    int html = ext && (!strcmp(ext, ".html") || !strcmp(ext, ".htm"));
    if (out_path && !html && !(ext && !strcmp(ext, ".svg"))) {
        cmt_log("diff: -o takes a .svg or .html file");
        return 2;
    }
    struct cmt_set a, bs;
    struct cmt_diff d = {0};
    struct sbuf out = {0}, pic = {0};
    struct cmt_timeline ta = {.points = 1000, .by = CMT_BY_KIND}, tb = ta;
    struct cmt_observer oa = cmt_timeline_observer(&ta), ob = cmt_timeline_observer(&tb);
    size_t want_tl = out_path != NULL && !html; /* the SVG overlay */
    struct cmt_rules rules = {0};
    const char *alabel = argv[optind], *blabel = argv[optind + 1];
    /* the viewer colours by component: the shipped rules when they are beside us, else all "other" */
    int have_rules = html && cmt_rules_load(&rules, NULL, err, sizeof err) == 0;
    err[0] = 0;
    memset(&bs, 0, sizeof bs);
    if (cmt_load(&a, argv + optind, 1, &oa, want_tl, err, sizeof err) != 0 ||
        cmt_load(&bs, argv + optind + 1, 1, &ob, want_tl, err, sizeof err) != 0 ||
        cmt_diff_build(&d, &a, &bs, align, err, sizeof err) != 0)
        goto out;
    if (json)
        cmt_diff_json(&out, &d);
    else
        cmt_diff_text(&out, &d, alabel, blabel, top);
    if (out.oom) {
        snprintf(err, sizeof err, "out of memory");
        goto out;
    }
    if (out_path && html) {
        if (cmt_diff_page(&pic, &d, alabel, blabel, have_rules ? &rules : NULL, json ? "" : out.p, err, sizeof err) != 0 ||
            sb_write(&pic, out_path, err, sizeof err) != 0)
            goto out;
    } else if (out_path) {
        if (cmt_svg_overlay(&pic, &a, &ta, alabel, &bs, &tb, blabel) != 0) {
            snprintf(err, sizeof err, "out of memory while drawing");
            goto out;
        }
        if (sb_write(&pic, out_path, err, sizeof err) != 0)
            goto out;
    }
    if (sb_write(&out, NULL, err, sizeof err) != 0)
        goto out;
    status = 0;
out:
    if (status)
        cmt_log("%s", err);
    cmt_diff_free(&d);
    sb_free(&out);
    sb_free(&pic);
    cmt_rules_free(&rules);
    cmt_timeline_free(&ta);
    cmt_timeline_free(&tb);
    cmt_set_close(&a);
    cmt_set_close(&bs);
    return status;
}
