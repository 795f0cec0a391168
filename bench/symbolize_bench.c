/*
 * symbolize_bench.c: how fast the writer symbolizes frames, with and without source lines (issue 10).
 * Symbolizes every STRIDE-th address of libc's mapped code (its symbols from .symtab/.dynsym; its DWARF
 * from the separate debug file by build id, when libc6-dbg is installed) through the writer's own
 * cmt_symbols.c and cmt_lines.c, in this process, and prints frames per second for: symbols only; symbols
 * and lines with the module's DWARF opened during the run (cold); the same addresses again (warm, the
 * writer's per-module handle already open). A frame here is an address some symbol covers.
 * Usage: symbolize_bench [STRIDE]   (default 64 bytes). Benchmark only, never a test.
 */
#include "cmt_symbols.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One pass over [lo, hi): returns frames (addresses with a symbol); *with_lines counts those with lines. */
static long pass(uintptr_t lo, uintptr_t hi, uintptr_t stride, int lines, long *with_lines, long *rows)
{
    long frames = 0;
    *with_lines = *rows = 0;
    for (uintptr_t a = lo; a < hi; a += stride) {
        struct cmt_frame_info fi;
        cmt_symbols_lookup(a + 1, &fi); /* as a return address: the lookup takes ip - 1 */
        if (!fi.function)
            continue;
        frames++;
        if (lines) {
            struct cmt_line out[CMT_LINES_MAX];
            int n = cmt_symbols_lines(a + 1, fi.module, out);
            *with_lines += n > 0;
            *rows += n;
        }
    }
    return frames;
}

int main(int argc, char **argv)
{
    uintptr_t stride = argc > 1 ? strtoul(argv[1], NULL, 0) : 64;
    if (!stride) {
        fprintf(stderr, "symbolize_bench: STRIDE must be a positive number of bytes\n");
        return 2;
    }
    cmt_symbols_set_pid(getpid());
    struct cmt_frame_info fi;
    cmt_symbols_lookup((uintptr_t)&fopen + 1, &fi);
    if (!fi.module) {
        fprintf(stderr, "symbolize_bench: libc not found in /proc/self/maps\n");
        return 1;
    }
    uintptr_t lo = fi.module->lo, hi = fi.module->hi;
    long wl, rows;
    double t0 = now();
    long f0 = pass(lo, hi, stride, 0, &wl, &rows);
    double t1 = now();
    long f1 = pass(lo, hi, stride, 1, &wl, &rows);
    double t2 = now();
    long f2 = pass(lo, hi, stride, 1, &wl, &rows);
    double t3 = now();
    printf("module %s (%s DWARF reader), %zu bytes mapped, stride %zu\n", fi.module->path,
           cmt_lines_available() ? "with" : "without", (size_t)(hi - lo), (size_t)stride);
    printf("symbols only:          %7ld frames in %7.3f s: %9.0f frames/s\n", f0, t1 - t0, f0 / (t1 - t0));
    printf("symbols+lines (cold):  %7ld frames in %7.3f s: %9.0f frames/s\n", f1, t2 - t1, f1 / (t2 - t1));
    printf("symbols+lines (warm):  %7ld frames in %7.3f s: %9.0f frames/s (%ld with lines, %ld rows)\n", f2,
           t3 - t2, f2 / (t3 - t2), wl, rows);
    cmt_symbols_reset();
    return 0;
}
