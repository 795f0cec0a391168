/*
 * cmt_log.c: one-line messages on stderr, prefixed "cumemtrace: ". Runs on any thread; formats into a
 * stack buffer and writes it with a single write(2) so lines from several threads do not interleave.
 */
#include "cmt_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void cmt_log(const char *fmt, ...)
{
    int saved = errno; /* the program may look at errno right after the call we wrapped */
    char line[1024];
    int n = snprintf(line, sizeof line, "cumemtrace: ");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
    errno = saved;
}
