/*
 * cmd_run.c: `cumemtrace run [-o PATH] [--sim-gpu SIZE] [--depth N] -- CMD...`
 *
 * Runs CMD with libcumemtrace.so prepended to LD_PRELOAD, passes its exit status (or death by signal)
 * through, and says on stderr where the traces went. Never prints on stdout: that is CMD's.
 */
#include "commands.h"

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void run_usage(FILE *out)
{
    fprintf(out,
            "usage: cumemtrace run [-o PATH] [--sim-gpu SIZE] [--depth N] [--no-stacks] -- CMD [ARGS...]\n"
            "  -o PATH          trace file (replaced if it exists) or directory (one file per process);\n"
            "                   default ./cumemtrace-PROGRAM-PID.db\n"
            "  --sim-gpu SIZE   run on the simulated CUDA driver with SIZE of device memory (e.g. 8GiB)\n"
            "  --depth N        frames kept per stack (default 128)\n"
            "  --no-stacks      record no stacks\n");
}

/* Directory of the running executable, for finding the library beside it. */
static int exe_dir(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    if (!slash)
        return -1;
    *slash = 0;
    return 0;
}

/* First existing path among candidates relative to the executable's directory (build tree, then an
 * installed layout). */
static int find_beside(const char *const *rel, char *out, size_t len)
{
    char dir[PATH_MAX];
    if (exe_dir(dir, sizeof dir) != 0)
        return -1;
    for (size_t i = 0; rel[i]; i++) {
        char candidate[PATH_MAX];
        snprintf(candidate, sizeof candidate, "%s/%s", dir, rel[i]);
        if (access(candidate, R_OK) == 0 && realpath(candidate, out))
            return 0;
    }
    (void)len;
    return -1;
}

static int prepend_env(const char *name, const char *value, char sep)
{
    const char *old = getenv(name);
    if (!old || !*old)
        return setenv(name, value, 1);
    size_t n = strlen(value) + strlen(old) + 2;
    char *both = malloc(n);
    if (!both)
        return -1;
    snprintf(both, n, "%s%c%s", value, sep, old);
    int rc = setenv(name, both, 1);
    free(both);
    return rc;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void remove_trace(const char *path)
{
    char side[PATH_MAX + 8];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-journal", path);
    unlink(side);
}

/* Prints the trace files the run produced: PATH itself and PATH's siblings STEM.*.db (further
 * processes), or every *.db in a directory written since start. */
static int report_traces(const char *out, int out_is_dir, time_t since)
{
    char dirbuf[PATH_MAX], basebuf[PATH_MAX];
    snprintf(dirbuf, sizeof dirbuf, "%s", out);
    snprintf(basebuf, sizeof basebuf, "%s", out);
    const char *dir = out_is_dir ? out : dirname(dirbuf);
    char stem[PATH_MAX] = "";
    if (!out_is_dir) {
        snprintf(stem, sizeof stem, "%s", basename(basebuf));
        char *dot = strrchr(stem, '.');
        if (dot && !strcmp(dot, ".db"))
            *dot = 0;
    }
    int found = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 4 || strcmp(de->d_name + n - 3, ".db") != 0)
            continue;
        if (!out_is_dir && strncmp(de->d_name, stem, strlen(stem)) != 0)
            continue;
        if (!out_is_dir && de->d_name[strlen(stem)] != '.')
            continue;
        char full[PATH_MAX * 2];
        snprintf(full, sizeof full, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(full, &st) != 0 || st.st_mtime < since)
            continue;
        fprintf(stderr, "cumemtrace: trace written to %s\n", full);
        found++;
    }
    closedir(d);
    return found;
}

int cmd_run(int argc, char **argv)
{
    const char *out = NULL, *sim = NULL, *depth = NULL;
    int no_stacks = 0, i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            run_usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(argv[i], "--sim-gpu") && i + 1 < argc) {
            sim = argv[++i];
        } else if (!strcmp(argv[i], "--depth") && i + 1 < argc) {
            depth = argv[++i];
        } else if (!strcmp(argv[i], "--no-stacks")) {
            no_stacks = 1;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "cumemtrace run: unknown option '%s'\n", argv[i]);
            run_usage(stderr);
            return 2;
        } else {
            break; /* the command starts here even without "--" */
        }
    }
    if (i >= argc) {
        fprintf(stderr, "cumemtrace run: no command given\n");
        run_usage(stderr);
        return 2;
    }

    static const char *const lib_rel[] = {"../interpose/libcumemtrace.so", "../lib/cumemtrace/libcumemtrace.so",
                                          "../lib/libcumemtrace.so", NULL};
    char lib[PATH_MAX];
    const char *env_lib = getenv("CUMEMTRACE_LIB");
    if (env_lib && *env_lib)
        snprintf(lib, sizeof lib, "%s", env_lib);
    else if (find_beside(lib_rel, lib, sizeof lib) != 0) {
        fprintf(stderr, "cumemtrace run: libcumemtrace.so not found beside this program (set CUMEMTRACE_LIB)\n");
        return 2;
    }
    if (sim) {
        static const char *const sim_rel[] = {"../tests/simcuda/libcuda.so.1", "../lib/cumemtrace/sim/libcuda.so.1",
                                              NULL};
        char simlib[PATH_MAX];
        if (find_beside(sim_rel, simlib, sizeof simlib) != 0) {
            fprintf(stderr, "cumemtrace run: the simulated driver (libcuda.so.1) was not found\n");
            return 2;
        }
        *strrchr(simlib, '/') = 0;
        prepend_env("LD_LIBRARY_PATH", simlib, ':');
        setenv("SIMCUDA_MEMORY", sim, 1);
    }

    char outbuf[PATH_MAX];
    int out_is_dir = 0;
    if (!out) {
        char *prog = strrchr(argv[i], '/');
        snprintf(outbuf, sizeof outbuf, "cumemtrace-%s-%d.db", prog ? prog + 1 : argv[i], (int)getpid());
        out = outbuf;
    }
    if (is_dir(out)) {
        out_is_dir = 1;
    } else {
        remove_trace(out); /* -o names the result: an old trace there is replaced, as perf record -o does */
    }
    setenv("CUMEMTRACE_OUTPUT", out, 1);
    if (depth)
        setenv("CUMEMTRACE_STACK_DEPTH", depth, 1);
    if (no_stacks)
        setenv("CUMEMTRACE_STACK_DEPTH", "0", 1);
    prepend_env("LD_PRELOAD", lib, ':');

    time_t start = time(NULL);
    /* Like system(): the child gets the terminal's signals; we wait for it and pass its fate through. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_int, old_quit;
    sigaction(SIGINT, &ign, &old_int);
    sigaction(SIGQUIT, &ign, &old_quit);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "cumemtrace run: fork: %s\n", strerror(errno));
        return 2;
    }
    if (pid == 0) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGQUIT, &old_quit, NULL);
        execvp(argv[i], argv + i);
        fprintf(stderr, "cumemtrace run: %s: %s\n", argv[i], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    if (!report_traces(out, out_is_dir, start - 1))
        fprintf(stderr, "cumemtrace: no trace written (the program made no CUDA memory calls)\n");
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        fprintf(stderr, "cumemtrace: %s was killed by signal %d (%s)\n", argv[i], sig, strsignal(sig));
        signal(sig, SIG_DFL);
        raise(sig);
        return 128 + sig;
    }
    return WEXITSTATUS(status);
}
