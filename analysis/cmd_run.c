/*
 * cmd_run.c: `cumemtrace run [-o PATH] [--sim-gpu GPU] [--depth N] -- CMD...`
 *
 * Runs CMD with libcumemtrace.so prepended to LD_PRELOAD (and named by NVTX_INJECTION64_PATH, unless the
 * user set that for another tool, so that NVTX ranges are recorded too), passes its exit status (or death
 * by signal) through, and says on stderr where the traces went: each writer of the run's processes names
 * its trace in a manifest file run made (CUMEMTRACE_MANIFEST), so nothing is guessed from the output
 * directory. Never prints on stdout: that is CMD's.
 *
 * --torch also puts our bootstrap (analysis/torch/bootstrap/sitecustomize.py) first on PYTHONPATH: inside
 * a Python program that imports torch it records the caching allocator's history and writes snapshots
 * beside the trace (TRACE.torch.PID.exit.pickle, .PID.oomN.pickle); once CMD has ended, the launcher
 * imports each process's last snapshot into that process's trace (cmt_torch_import).
 */
#include "commands.h"

#include "cmt_db.h"
#include "torch.h"
#include "util.h"
#include "verdict.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* --sim-gpu: "[Nx]PRESET" or "[Nx]SIZE" into SIMCUDA_DEVICES, SIMCUDA_GPU, SIMCUDA_MEMORY. */
static int sim_setenv(const char *spec)
{
    static const char *const presets[] = {"H100", "H200", "A100-40GB", "A100-80GB", "L4", "RTX4090", "RTX3090", NULL};
    const char *rest = spec;
    char *end;
    long n = 1;
    const char *x = strchr(spec, 'x');
    if (x && x > spec && strspn(spec, "0123456789") == (size_t)(x - spec)) {
        n = strtol(spec, &end, 10);
        rest = x + 1;
    }
    if (n < 1 || n > 8) {
        fprintf(stderr, "cumemtrace run: --sim-gpu %s: between 1 and 8 devices\n", spec);
        return -1;
    }
    int preset = -1;
    for (int k = 0; presets[k]; k++)
        if (!strcasecmp(rest, presets[k]))
            preset = k;
    if (preset < 0) {
        uint64_t bytes = 0;
        if (cmt_parse_size(rest, &bytes) != 0 || bytes > (1ull << 38) || bytes < (2ull << 20)) {
            fprintf(stderr, "cumemtrace run: --sim-gpu %s: not a GPU (H100, H200, A100-40GB, A100-80GB, L4, RTX4090, "
                            "RTX3090) or a size from 2MiB to 256GiB\n", spec);
            return -1;
        }
    }
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", n);
    setenv("SIMCUDA_DEVICES", buf, 1);
    if (preset >= 0) {
        setenv("SIMCUDA_GPU", presets[preset], 1);
        unsetenv("SIMCUDA_MEMORY");
    } else {
        unsetenv("SIMCUDA_GPU");
        setenv("SIMCUDA_MEMORY", rest, 1);
    }
    return 0;
}

static void run_usage(FILE *out)
{
    fprintf(out,
            "usage: cumemtrace run [-o PATH] [--sim-gpu GPU] [--depth N] [--no-stacks] -- CMD [ARGS...]\n"
            "  -o PATH          trace file (replaced if it exists) or directory (one file per process);\n"
            "                   default ./cumemtrace-PROGRAM-PID.db\n"
            "  --sim-gpu GPU    run on the simulated GPU: a real board (H100, H200, A100-40GB, A100-80GB, L4,\n"
            "                   RTX4090, RTX3090), a size of device memory (8GiB), or N of either (2xH100)\n"
            "  --depth N        frames kept per stack (default 128)\n"
            "  --no-stacks      record no stacks\n"
            "  --torch          also record PyTorch's caching allocator (Python programs that import torch):\n"
            "                   history of up to $CUMEMTRACE_TORCH_MAX_ENTRIES entries (100000), stacks\n"
            "                   $CUMEMTRACE_TORCH_STACKS (all or python), a snapshot at exit and at every OOM,\n"
            "                   imported into the trace when CMD ends\n");
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

#ifndef CMT_LIBDIR
#define CMT_LIBDIR "lib"
#endif

/* The traces of this run, exactly: each writer the run's processes started appended "PID<TAB>PATH<NUL>" to
 * the manifest file run made (CUMEMTRACE_MANIFEST; writer/writer.c, note_in_manifest), in the order they
 * started. No directory is scanned and no file name guessed. */
struct run_trace {
    long long pid;
    char *path;
};

static void free_traces(struct run_trace *t, size_t n)
{
    for (size_t k = 0; k < n; k++)
        free(t[k].path);
    free(t);
}

static int read_manifest(const char *manifest, struct run_trace **out, size_t *n)
{
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    FILE *f = fopen(manifest, "re");
    if (!f)
        return -1;
    char *rec = NULL;
    size_t reclen = 0;
    ssize_t got;
    while ((got = getdelim(&rec, &reclen, 0, f)) > 0) {
        char *tab = strchr(rec, '\t');
        if (!tab || tab[1] != '/')
            continue; /* defensive: only our writers write here */
        struct run_trace *t = cmt_push(out, n, &cap, sizeof *t);
        if (!t || !(t->path = strdup(tab + 1))) {
            if (t)
                (*n)--;
            break;
        }
        t->pid = strtoll(rec, NULL, 10);
    }
    free(rec);
    fclose(f);
    return 0;
}

/* The program has ended; its writers finish the traces on their own, each holding an flock on its file
 * until it is final. Wait for them (say so if it takes a while): the summary, the allocator import and
 * the verdict read finished files. */
static void wait_writers(const struct run_trace *t, size_t n)
{
    int said = 0;
    for (size_t k = 0; k < n; k++)
        cmt_wait_for_writer(t[k].path, 600, 1000, &said);
}

/* ---- --torch ---- */

static int torch_setup(const char *out, int out_is_dir, char *prefix, size_t len)
{
    char boot[PATH_MAX];
    if (cmt_torch_find("bootstrap/sitecustomize.py", boot, sizeof boot) != 0) {
        fprintf(stderr, "cumemtrace run: the --torch bootstrap was not found (set CUMEMTRACE_TORCH_DIR)\n");
        return -1;
    }
    *strrchr(boot, '/') = 0;
    if (out_is_dir) {
        if (snprintf(prefix, len, "%s/cumemtrace-torch", out) >= (int)len)
            return -1;
    } else {
        snprintf(prefix, len, "%s", out);
        size_t n = strlen(prefix);
        if (n > 3 && !strcmp(prefix + n - 3, ".db"))
            prefix[n - 3] = 0;
        strncat(prefix, ".torch", len - strlen(prefix) - 1);
    }
    char abs[PATH_MAX];
    /* the program may chdir: hand it an absolute prefix */
    if (prefix[0] != '/' && getcwd(abs, sizeof abs)) {
        char tmp[PATH_MAX * 2];
        snprintf(tmp, sizeof tmp, "%s/%s", abs, prefix);
        if (strlen(tmp) >= len) {
            fprintf(stderr, "cumemtrace run: path too long: %s\n", tmp);
            return -1;
        }
        memcpy(prefix, tmp, strlen(tmp) + 1);
    }
    prepend_env("PYTHONPATH", boot, ':');
    setenv("CUMEMTRACE_TORCH_SNAPSHOT", prefix, 1);
    return 0;
}

/* The trace of process pid: this run's, else a new one beside them (DIR/torch-PID.db, or PATH itself). */
static void trace_for(const char *out, int out_is_dir, const struct run_trace *t, size_t n, long long pid,
                      char *buf, size_t len)
{
    for (size_t k = 0; k < n; k++)
        if (t[k].pid == pid) {
            snprintf(buf, len, "%s", t[k].path);
            return;
        }
    if (out_is_dir)
        snprintf(buf, len, "%s/torch-%lld.db", out, pid);
    else
        snprintf(buf, len, "%s", out);
}

/* Imports, per process, the snapshot at exit or else its last one at an OOM. Returns how many. */
static int torch_import_all(const char *out, int out_is_dir, const char *prefix, const struct timespec *since,
                            struct run_trace **traces, size_t *ntraces)
{
    char dirbuf[PATH_MAX], basebuf[PATH_MAX];
    snprintf(dirbuf, sizeof dirbuf, "%s", prefix);
    snprintf(basebuf, sizeof basebuf, "%s", prefix);
    const char *dir = dirname(dirbuf), *base = basename(basebuf);
    size_t bl = strlen(base);
    struct { long long pid; int rank; char name[NAME_MAX + 1]; } best[256];
    int nbest = 0, done = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        /* BASE.PID.exit.pickle or BASE.PID.oomN.pickle */
        if (strncmp(de->d_name, base, bl) != 0 || de->d_name[bl] != '.')
            continue;
        char *end = NULL;
        long long pid = strtoll(de->d_name + bl + 1, &end, 10);
        int rank = -1;
        if (end && !strcmp(end, ".exit.pickle"))
            rank = INT32_MAX;
        else if (end && !strncmp(end, ".oom", 4) && strstr(end, ".pickle") && !strstr(end, ".tmp"))
            rank = atoi(end + 4);
        char full[PATH_MAX * 2];
        struct stat st;
        snprintf(full, sizeof full, "%s/%s", dir, de->d_name);
        /* written by this run's processes: after it started (an earlier run's snapshots may share the name) */
        if (rank < 0 || stat(full, &st) != 0 || st.st_mtim.tv_sec < since->tv_sec ||
            (st.st_mtim.tv_sec == since->tv_sec && st.st_mtim.tv_nsec < since->tv_nsec))
            continue;
        int k = 0;
        while (k < nbest && best[k].pid != pid)
            k++;
        if (k == nbest) {
            if (nbest == 256)
                continue;
            nbest++;
            best[k].pid = pid;
            best[k].rank = -1;
        }
        if (rank > best[k].rank) {
            best[k].rank = rank;
            snprintf(best[k].name, sizeof best[k].name, "%s", de->d_name);
        }
    }
    if (d)
        closedir(d);
    for (int k = 0; k < nbest; k++) {
        char snap[PATH_MAX * 2], trace[PATH_MAX * 2], err[1024] = "";
        snprintf(snap, sizeof snap, "%s/%s", dir, best[k].name);
        trace_for(out, out_is_dir, *traces, *ntraces, best[k].pid, trace, sizeof trace);
        if (cmt_torch_import(snap, trace, best[k].rank == INT32_MAX ? "exit" : "oom", err, sizeof err) != 0) {
            if (err[0])
                fprintf(stderr, "cumemtrace: %s\n", err);
            continue;
        }
        fprintf(stderr, "cumemtrace: allocator history of process %lld (%s) imported into %s\n", best[k].pid, snap,
                trace);
        done++;
        size_t j = 0, cap = *ntraces;
        while (j < *ntraces && strcmp((*traces)[j].path, trace) != 0)
            j++;
        if (j == *ntraces) { /* a process with allocator history and no driver trace: a new file, listed */
            struct run_trace *t = cmt_push(traces, ntraces, &cap, sizeof *t);
            if (t && !(t->path = strdup(trace)))
                (*ntraces)--;
            else if (t)
                t->pid = best[k].pid;
        }
    }
    return done;
}

/* The simulated device's capacity net of its context comes from the simulated driver itself (the
 * presets' figures live there only). */
static void sim_verdict(const char *simlib, char **paths, int n)
{
    int64_t context = 0;
    void *h = dlopen(simlib, RTLD_NOW | RTLD_LOCAL);
    if (h) {
        unsigned long long (*fn)(void) = (unsigned long long (*)(void))dlsym(h, "simcuda_context_bytes");
        if (fn)
            context = (int64_t)fn();
        dlclose(h);
    }
    cmt_run_verdict(paths, n, context);
}

int cmd_run(int argc, char **argv)
{
    const char *out = NULL, *sim = NULL, *depth = NULL;
    int no_stacks = 0, torch = 0, i = 1;
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
        } else if (!strcmp(argv[i], "--torch")) {
            torch = 1;
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

    /* the build tree, then the installed layout (meson's libdir, e.g. lib/x86_64-linux-gnu on Debian) */
    static const char *const lib_rel[] = {"../interpose/libcumemtrace.so", "../" CMT_LIBDIR "/cumemtrace/libcumemtrace.so",
                                          "../lib/cumemtrace/libcumemtrace.so", NULL};
    char lib[PATH_MAX];
    const char *env_lib = getenv("CUMEMTRACE_LIB");
    if (env_lib && *env_lib)
        snprintf(lib, sizeof lib, "%s", env_lib);
    else if (cmt_find_beside(lib_rel, NULL, lib) != 0) {
        fprintf(stderr, "cumemtrace run: libcumemtrace.so not found beside this program (set CUMEMTRACE_LIB)\n");
        return 2;
    }
    char simlib[PATH_MAX] = "";
    if (sim) {
        static const char *const sim_rel[] = {"../simgpu/libcuda.so.1", "../" CMT_LIBDIR "/cumemtrace/sim/libcuda.so.1",
                                              "../lib/cumemtrace/sim/libcuda.so.1", NULL};
        if (cmt_find_beside(sim_rel, NULL, simlib) != 0) {
            fprintf(stderr, "cumemtrace run: the simulated driver (libcuda.so.1) was not found\n");
            return 2;
        }
        char simdir[PATH_MAX];
        snprintf(simdir, sizeof simdir, "%s", simlib);
        *strrchr(simdir, '/') = 0;
        prepend_env("LD_LIBRARY_PATH", simdir, ':');
        if (sim_setenv(sim) != 0)
            return 2;
    }

    char outbuf[PATH_MAX];
    int out_is_dir = 0;
    if (!out) {
        char *prog = strrchr(argv[i], '/');
        snprintf(outbuf, sizeof outbuf, "cumemtrace-%s-%d.db", prog ? prog + 1 : argv[i], (int)getpid());
        out = outbuf;
    }
    if (depth) {
        char *end;
        errno = 0;
        long d = strtol(depth, &end, 10);
        if (errno || end == depth || *end || d < 0 || d > 248) {
            fprintf(stderr, "cumemtrace run: --depth %s: a number of frames from 0 to 248\n", depth);
            return 2;
        }
    }
    if (strlen(out) >= PATH_MAX - 64) {
        fprintf(stderr, "cumemtrace run: -o: the path is too long\n");
        return 2;
    }
    struct stat ost;
    if (is_dir(out)) {
        out_is_dir = 1;
    } else if (lstat(out, &ost) == 0) {
        /* -o names the result: an old trace of ours there is replaced, as perf record -o does; anything
         * else is the user's and stays untouched. */
        if (!S_ISREG(ost.st_mode)) {
            fprintf(stderr, "cumemtrace run: -o %s exists and is not a regular file; not touching it\n", out);
            return 2;
        }
        if (!cmt_is_trace_file(out)) {
            fprintf(stderr, "cumemtrace run: -o %s exists and is not a cumemtrace trace; not overwriting it\n", out);
            return 2;
        }
        cmt_remove_trace(out);
    }
    /* The writers of this run's processes name their traces here (read_manifest). */
    char manifest[PATH_MAX];
    const char *tmpdir = getenv("TMPDIR");
    snprintf(manifest, sizeof manifest, "%s/cumemtrace-run-XXXXXX", tmpdir && tmpdir[0] == '/' ? tmpdir : "/tmp");
    int mfd = mkostemp(manifest, O_CLOEXEC);
    if (mfd < 0) {
        fprintf(stderr, "cumemtrace run: cannot create %s: %s\n", manifest, strerror(errno));
        return 2;
    }
    close(mfd);
    setenv("CUMEMTRACE_MANIFEST", manifest, 1);
    setenv("CUMEMTRACE_OUTPUT", out, 1);
    if (depth)
        setenv("CUMEMTRACE_STACK_DEPTH", depth, 1);
    if (no_stacks)
        setenv("CUMEMTRACE_STACK_DEPTH", "0", 1);
    prepend_env("LD_PRELOAD", lib, ':');
    /* NVTX loads one injection library, the one NVTX_INJECTION64_PATH names: ours, to record the
     * program's ranges (interpose/cmt_nvtx.c). A value the user set is another tool's (Nsight Systems
     * running us): it is kept, and the trace has no ranges. */
    const char *inj = getenv("NVTX_INJECTION64_PATH");
    if (inj && *inj && strcmp(inj, lib) != 0)
        fprintf(stderr, "cumemtrace run: NVTX_INJECTION64_PATH is set (%s): NVTX ranges go there, not into "
                        "the trace\n", inj);
    else
        setenv("NVTX_INJECTION64_PATH", lib, 1);
    char prefix[PATH_MAX];
    if (torch && torch_setup(out, out_is_dir, prefix, sizeof prefix) != 0)
        return 2;

    struct timespec start;
    clock_gettime(CLOCK_REALTIME, &start); /* the clock file times are kept in */
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
    struct run_trace *traces = NULL;
    size_t ntraces = 0;
    read_manifest(manifest, &traces, &ntraces);
    unlink(manifest);
    wait_writers(traces, ntraces);
    if (torch)
        torch_import_all(out, out_is_dir, prefix, &start, &traces, &ntraces);
    char **listed = calloc(ntraces + 1, sizeof *listed);
    int nlisted = 0;
    for (size_t k = 0; k < ntraces; k++) {
        fprintf(stderr, "cumemtrace: trace written to %s\n", traces[k].path);
        if (listed)
            listed[nlisted++] = traces[k].path;
    }
    if (!ntraces)
        fprintf(stderr, "cumemtrace: no trace written (the program made no CUDA memory calls, or recording failed "
                        "as said above)\n");
    if (sim && nlisted > 0)
        sim_verdict(simlib, listed, nlisted);
    free(listed);
    free_traces(traces, ntraces);
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        fprintf(stderr, "cumemtrace: %s was killed by signal %d (%s)\n", argv[i], sig, strsignal(sig));
        signal(sig, SIG_DFL);
        raise(sig);
        return 128 + sig;
    }
    return WEXITSTATUS(status);
}
