/*
 * next_probe.c: libnext_probe.so, preloaded AFTER libcumemtrace.so. It defines getpid and asks
 * dlsym(RTLD_NEXT, "getpid") for the next one, as every interposing library does. Correct answer: libc's.
 * A dlsym wrapper that called the real dlsym from its own frame would answer "the next after
 * libcumemtrace", which is this library's own getpid. The constructor writes the module it got to
 * $NEXT_PROBE_OUT.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

pid_t getpid(void)
{
    static pid_t (*next)(void);
    if (!next)
        next = (pid_t(*)(void))dlsym(RTLD_NEXT, "getpid");
    return next ? next() : -1;
}

__attribute__((constructor)) static void probe(void)
{
    const char *out = getenv("NEXT_PROBE_OUT");
    void *next = dlsym(RTLD_NEXT, "getpid");
    Dl_info info;
    FILE *f = out ? fopen(out, "w") : NULL;
    if (!f)
        return;
    fprintf(f, "%s\n", next && dladdr(next, &info) && info.dli_fname ? info.dli_fname : "(none)");
    fclose(f);
}
