/*
 * cmd_flame.c: `cumemtrace flame [--at-peak | --total | --leaked] [--json] [-o FILE] TRACE...`
 *
 * Folded stacks (render_flame.c draws them: `frame;frame;frame bytes`, the input of flamegraph.pl,
 * speedscope and inferno, with file:line and inlined frames where the trace has them). --at-peak (default)
 * weighs device memory live at the peak, --total every byte ever allocated, --leaked what was live at exit.
 *
 * Runs in the `cumemtrace` command. Prints only once everything succeeded.
 */
#include "commands.h"

#include "render.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "usage: cumemtrace flame [--at-peak | --total | --leaked] [--json] [-o FILE] TRACE|DIR...\n"
                 "  --at-peak   device memory live at the peak (default)\n"
                 "  --total     every byte of device memory allocated\n"
                 "  --leaked    device memory live at exit\n"
                 "  --json      [{\"stack\": [innermost first], \"stack_frames\": [{\"file\", \"line\", \"inlined\"}],\n"
                 "              \"bytes\": N, \"count\": N}] instead of folded lines\n");
}

int cmd_flame(int argc, char **argv)
{
    static const struct option opts[] = {{"at-peak", no_argument, NULL, 'p'}, {"total", no_argument, NULL, 't'},
                                         {"leaked", no_argument, NULL, 'l'},  {"json", no_argument, NULL, 'j'},
                                         {"output", required_argument, NULL, 'o'}, {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    enum cmt_select sel = CMT_AT_PEAK;
    int json = 0, c, status = 1, nsel = 0;
    const char *out_path = NULL;
    char err[1024] = "";
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'p': sel = CMT_AT_PEAK; nsel++; break;
        case 't': sel = CMT_TOTAL; nsel++; break;
        case 'l': sel = CMT_LEAKED; nsel++; break;
        case 'j': json = 1; break;
        case 'o': out_path = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            cmt_log("flame: unknown option or missing value '%s' (see 'cumemtrace flame --help')", argv[optind - 1]);
            return 2;
        }
    }
    if (nsel > 1) {
        cmt_log("flame: choose one of --at-peak, --total, --leaked");
        return 2;
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    struct cmt_set s;
    struct sbuf b = {0};
    struct cmt_group **g = NULL;
    size_t *ng = NULL;
    if (cmt_load(&s, argv + optind, argc - optind, NULL, 0, err, sizeof err) != 0)
        goto out;
    g = calloc(s.n + 1, sizeof *g);
    ng = calloc(s.n + 1, sizeof *ng);
    if (!g || !ng) {
        snprintf(err, sizeof err, "out of memory");
        goto out;
    }
    /* Per trace, so that several processes keep their own root frame; the at-peak selection uses the
     * overall peak, which `one` leaves as it is. */
    struct cmt_set one = s;
    for (size_t ti = 0; ti < s.n; ti++) {
        one.t = &s.t[ti];
        one.n = 1;
        if (cmt_group_by_stack(&one, sel, &g[ti], &ng[ti], err, sizeof err) != 0)
            goto out;
    }
    if (cmt_flame_render(&b, &s, g, ng, json) != 0) {
        snprintf(err, sizeof err, "out of memory");
        goto out;
    }
    if (sb_write(&b, out_path, err, sizeof err) != 0)
        goto out;
    status = 0;
out:
    if (status)
        cmt_log("%s", err);
    for (size_t ti = 0; g && ti < s.n; ti++)
        free(g[ti]);
    free(g);
    free(ng);
    sb_free(&b);
    cmt_set_close(&s);
    return status;
}
