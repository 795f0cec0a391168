/*
 * fuzz_trace.c: a libFuzzer target over trace files. Each input is written to a file as it is and given
 * to every verb that reads traces (report as text, JSON and HTML, timeline in each format, flame in each
 * selection, diff against itself, whatif), in this process, as `cumemtrace` would run them. Whatever the
 * bytes, a verb must end with 0 or a one-line error: ASan and UBSan turn anything else (an overflow, a
 * use after free, undefined arithmetic, a leak) into a finding.
 *
 * Built by tests/fuzz/run (clang, -fsanitize=fuzzer,address,undefined), never by the default build;
 * run with -close_fd_mask=3 so that the verbs' output and messages are dropped (libFuzzer keeps its own).
 */
#include "commands.h"
#include "util.h"

#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64], input[96], out_html[96], out_json[96], out_csv[96], out_svg[96], out_folded[96];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(dir, sizeof dir, "/tmp/cmt-fuzz-%d", (int)getpid());
    if (mkdir(dir, 0700) != 0 && access(dir, W_OK) != 0) {
        perror(dir);
        exit(1);
    }
    snprintf(input, sizeof input, "%s/input.db", dir);
    snprintf(out_html, sizeof out_html, "%s/out.html", dir);
    snprintf(out_json, sizeof out_json, "%s/out.json", dir);
    snprintf(out_csv, sizeof out_csv, "%s/out.csv", dir);
    snprintf(out_svg, sizeof out_svg, "%s/out.svg", dir);
    snprintf(out_folded, sizeof out_folded, "%s/out.folded", dir);
    return 0;
}

static void verb(int (*fn)(int, char **), int n, ...)
{
    char *argv[12];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n && i < 11; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    argv[n] = NULL;
    optind = 0; /* glibc: a full reset of getopt's state between verbs */
    fn(n, argv);
    cmt_warn_flush(0);
    fflush(stdout);
    unlink(out_html);
    unlink(out_json);
    unlink(out_csv);
    unlink(out_svg);
    unlink(out_folded);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* -close_fd_mask closed stdout and stderr: the verbs' writes must succeed, into /dev/null */
    for (int fd = 1; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0) {
            int null = open("/dev/null", O_WRONLY);
            if (null >= 0 && null != fd) {
                dup2(null, fd);
                close(null);
            }
        }
    unlink(input);
    int fd = open(input, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return 0;
    for (size_t off = 0; off < size;) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(fd);
    /* report --json first: the one pass every verb shares. An input it refuses (most mutants: a broken
     * header, a failed check) costs nothing more; one it reads goes through one other verb, picked by the
     * input's hash, so that executions stay fast (CMT_FUZZ_ALL=1: every verb, for replaying a corpus). */
    optind = 0;
    int readable = cmd_report(3, (char *[]){"report", "--json", input, NULL}) == 0;
    cmt_warn_flush(0);
    fflush(stdout);
    int all = getenv("CMT_FUZZ_ALL") != NULL;
    if (!readable && !all)
        return 0;
    uint32_t h = 2166136261u; /* FNV-1a of the input picks the verb */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    for (int k = 0; k < 10; k++) {
        if (!all && (int)(h % 10) != k)
            continue;
        switch (k) {
        case 0: verb(cmd_report, 2, "report", input); break;
        case 1: verb(cmd_report, 4, "report", "--html", out_html, input); break;
        case 2: verb(cmd_timeline, 4, "timeline", "-o", out_json, input); break;
        case 3: verb(cmd_timeline, 4, "timeline", "-o", out_csv, input); break;
        case 4: verb(cmd_timeline, 4, "timeline", "-o", out_svg, input); break;
        case 5: verb(cmd_flame, 3, "flame", "--leaked", input); break;
        case 6: verb(cmd_flame, 4, "flame", "-o", out_folded, input); break;
        case 7: verb(cmd_diff, 4, "diff", "--json", input, input); break;
        case 8: verb(cmd_whatif, 3, "whatif", "--json", input); break;
        case 9: verb(cmd_whatif, 5, "whatif", "--alloc-conf", "max_split_size_mb:20", "--capacity", "1GiB", input);
                break;
        }
    }
    return 0;
}
