/*
 * cmt_init.c: the interposer's lifecycle: configuration, start, fork, exec and exit.
 *
 * Runs on whichever application thread triggers it (constructor, exit, fork, exec). The trace is written
 * by a separate process (cmt_capture.c, writer/) that finishes it once the program is gone, however it
 * ends: so nothing here waits for it, and no signal handler is ever installed. Exit and exec only tell
 * the writer what is happening; events made afterwards (late destructors, a signal handler's calls) are
 * still recorded.
 */
#include "cmt_log.h"
#include "cmt_resolve.h"
#include "cmt_record.h"
#include "cmt_runtime.h"
#include "cmt_capture.h"
#include "cmt_nvtx.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/close_range.h>

struct cmt_config cmt_config;
struct cmt_ring cmt_queue;
_Atomic int cmt_state;
_Atomic uint64_t cmt_seq;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int in_vfork_child(void);
/* This process's pid as of init or the last fork: a different getpid() means we run in a vfork child (or a
 * raw clone), which shares our memory and our writer and must leave both alone. */
static _Atomic pid_t own_pid;
static _Atomic int init_result = -1;
static _Atomic int disable_reported;

uint64_t cmt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t unix_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void cmt_runtime_disable(const char *why)
{
    atomic_store(&cmt_state, CMT_DISABLED);
    if (why && !atomic_exchange(&disable_reported, 1))
        cmt_log("%s; the program runs on without recording", why);
}

static void read_prog_name(void)
{
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    const char *base = strrchr(buf, '/');
    base = base ? base + 1 : buf;
    /* Interpreters: name the script, as a person would (python train.py -> train). */
    extern char *program_invocation_short_name;
    const char *name = *base ? base : program_invocation_short_name;
    size_t k = 0;
    for (; name[k] && k < sizeof cmt_config.prog - 1; k++) {
        char ch = name[k];
        cmt_config.prog[k] = (ch == '/' || ch == ' ' || ch == '.') ? '_' : ch;
    }
    cmt_config.prog[k] = 0;
}

static void read_env(void)
{
    static const char *const allowed[] = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "CUDA_VISIBLE_DEVICES",
                                          "PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF", NULL};
    char *p = cmt_config.env, *end = cmt_config.env + sizeof cmt_config.env - 2;
    for (int i = 0; allowed[i]; i++) {
        const char *v = getenv(allowed[i]);
        if (!v)
            continue;
        size_t need = strlen(allowed[i]) + strlen(v) + 2;
        if (p + need > end)
            break;
        p += sprintf(p, "%s=%s", allowed[i], v) + 1;
    }
    *p = 0;
}

static int parse_long(const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static void do_init(void)
{
    const char *v = getenv("CUMEMTRACE_DISABLE");
    if (v && *v && strcmp(v, "0") != 0) {
        atomic_store(&cmt_state, CMT_DISABLED);
        return;
    }
    /* Relative to the directory the program started in, not wherever it is at its first CUDA call. */
    v = getenv("CUMEMTRACE_OUTPUT");
    if (!v)
        v = "";
    char cwd[PATH_MAX];
    int n = -1;
    if (v[0] != '/' && getcwd(cwd, sizeof cwd))
        n = snprintf(cmt_config.output, sizeof cmt_config.output, "%s/%s", cwd, v);
    if (n < 0 || n >= (int)sizeof cmt_config.output) /* no cwd, or too long: as given */
        snprintf(cmt_config.output, sizeof cmt_config.output, "%s", v);
    v = getenv("CUMEMTRACE_MANIFEST");
    if (v && v[0] == '/' && strlen(v) < sizeof cmt_config.manifest)
        snprintf(cmt_config.manifest, sizeof cmt_config.manifest, "%s", v);
    /* A value we do not understand is refused, not guessed at: one line, and no recording. */
    long d;
    cmt_config.depth = 128;
    v = getenv("CUMEMTRACE_STACK_DEPTH");
    if (v && *v) {
        if (parse_long(v, 0, CMT_MAX_DEPTH - 8, &d) != 0) {
            cmt_runtime_disable("CUMEMTRACE_STACK_DEPTH must be a number of frames from 0 to 248");
            return;
        }
        cmt_config.depth = (unsigned)d;
    }
    cmt_config.queue = 4096;
    v = getenv("CUMEMTRACE_QUEUE");
    if (v && *v) {
        /* a bound on the shared memory it takes: ~2 GiB at the deepest stacks */
        if (parse_long(v, 64, 1 << 20, &d) != 0) {
            cmt_runtime_disable("CUMEMTRACE_QUEUE must be a number of events from 64 to 1048576");
            return;
        }
        cmt_config.queue = (unsigned)d;
    }
    cmt_config.sample_ns = 0;
    v = getenv("CUMEMTRACE_SAMPLE_MS");
    if (v && *v) {
        if (parse_long(v, 0, 3600000, &d) != 0) {
            cmt_runtime_disable("CUMEMTRACE_SAMPLE_MS must be a number of milliseconds from 0 (off) to 3600000");
            return;
        }
        cmt_config.sample_ns = (uint64_t)d * 1000000u;
    }
    v = getenv("CUMEMTRACE_DEBUG_WRITER_DELAY_MS");
    if (v && *v)
        cmt_config.debug_writer_delay_ms = (unsigned)strtoul(v, NULL, 10);
    read_prog_name();
    read_env();
    cmt_config.start_ns = cmt_now_ns();
    cmt_config.start_unix_ns = unix_ns();
    atomic_store(&own_pid, getpid());
    cmt_record_init();
    cmt_capture_init();
    atomic_store(&init_result, 0);
}

int cmt_runtime_init(void)
{
    pthread_once(&init_once, do_init);
    return atomic_load(&init_result);
}

/* ---- exit ---------------------------------------------------------------------------------------- */

/* Runs late: we are initialized before the program's libraries, so destructed after them. Recording goes
 * on after this (whatever runs later still reaches the queue); the writer drains it once the process is
 * gone. */
__attribute__((destructor)) static void cmt_fini(void)
{
    if (!in_vfork_child())
        cmt_capture_mark(CMT_PROG_EXITING);
}

/* ---- fork ---------------------------------------------------------------------------------------- */

/* The child is a new process: it never writes into its parent's queue. It starts empty and spawns its
 * own writer at its first event. Nothing to prepare in the parent: the queue is lock-free and the writer
 * is another process. */
static void fork_child(void)
{
    atomic_store(&own_pid, getpid());
    cmt_record_after_fork();
    cmt_nvtx_after_fork();
    int st = atomic_load(&cmt_state);
    if (st == CMT_DISABLED && atomic_load(&init_result) != 0)
        return;
    cmt_capture_forget_after_fork();
    atomic_store(&cmt_seq, 0);
    atomic_store(&disable_reported, 0);
    cmt_config.start_ns = cmt_now_ns();
    cmt_config.start_unix_ns = unix_ns();
    atomic_store(&cmt_state, CMT_IDLE);
}

static void resolve_real_libc(void);

__attribute__((constructor)) static void cmt_init(void)
{
    resolve_real_libc();
    if (cmt_runtime_init() != 0)
        return;
    pthread_atfork(NULL, NULL, fork_child);
}

/* ---- exec ---------------------------------------------------------------------------------------- */

/* The process image is about to be replaced: the writer finishes the file once the image is gone (its
 * pipe closes on exec); the new image records into a file of its own. If exec fails, nothing changes. */
static int in_vfork_child(void)
{
    return getpid() != atomic_load(&own_pid);
}

static void before_exec(void)
{
    if (!in_vfork_child())
        cmt_capture_mark(CMT_PROG_EXEC); /* the writer sees our image go when the pipe closes */
}

static void after_failed_exec(void)
{
    if (!in_vfork_child())
        cmt_capture_mark(CMT_PROG_RUNNING);
}

/* The real functions, found once at start (dlsym takes the loader's lock: not something to do in _exit
 * called from a signal handler). */
static struct {
    int (*close)(int);
    int (*close_range)(unsigned, unsigned, int);
    void (*closefrom)(int);
    int (*dup2)(int, int);
    int (*dup3)(int, int, int);
    __typeof__(&execve) execve;
    __typeof__(&execv) execv;
    __typeof__(&execvp) execvp;
    __typeof__(&execvpe) execvpe;
    __typeof__(&fexecve) fexecve;
    __typeof__(&_exit) _exit;
    __typeof__(&_Exit) _Exit;
} real;

static void resolve_real_libc(void)
{
#define GET(name) real.name = (__typeof__(real.name))cmt_real_dlsym(RTLD_NEXT, #name)
    GET(close);
    GET(close_range);
    GET(closefrom);
    GET(dup2);
    GET(dup3);
    GET(execve);
    GET(execv);
    GET(execvp);
    GET(execvpe);
    GET(fexecve);
    GET(_exit);
    GET(_Exit);
#undef GET
}

#define REAL(name) (real.name ? real.name : (resolve_real_libc(), real.name))

/* exec: the writer is told, so that the trace says how it ended. */
#define EXEC_WRAPPER(name, params, args)                                                                \
    __attribute__((visibility("default"))) int name params                                              \
    {                                                                                                   \
        before_exec();                                                                                  \
        int rc = REAL(name) args;                                                                       \
        int saved = errno;                                                                              \
        after_failed_exec();                                                                            \
        errno = saved;                                                                                  \
        return rc;                                                                                      \
    }
EXEC_WRAPPER(execve, (const char *path, char *const argv[], char *const envp[]), (path, argv, envp))
EXEC_WRAPPER(execv, (const char *path, char *const argv[]), (path, argv))
EXEC_WRAPPER(execvp, (const char *file, char *const argv[]), (file, argv))
EXEC_WRAPPER(execvpe, (const char *file, char *const argv[], char *const envp[]), (file, argv, envp))
EXEC_WRAPPER(fexecve, (int fd, char *const argv[], char *const envp[]), (fd, argv, envp))

/* _exit skips destructors: programs use it to end forked children (Python's os._exit, multiprocessing).
 * The writer is told, as at exit. exit() itself reaches the kernel without
 * coming through here. */
__attribute__((visibility("default"), noreturn)) void _exit(int status)
{
    if (!in_vfork_child())
        cmt_capture_mark(CMT_PROG_EXITING);
    if (real._exit)
        real._exit(status);
    syscall(SYS_exit_group, status); /* defensive: libc's _exit could not be found */
    __builtin_unreachable();
}

__attribute__((visibility("default"), noreturn)) void _Exit(int status)
{
    if (!in_vfork_child())
        cmt_capture_mark(CMT_PROG_EXITING);
    if (real._Exit)
        real._Exit(status);
    syscall(SYS_exit_group, status);
    __builtin_unreachable();
}

/* The execl family takes its arguments as a list: gather them, then go through execve/execvp above. */
static char **collect_args(const char *arg0, va_list ap, char ***envp_out)
{
    size_t n = 1;
    va_list count;
    va_copy(count, ap);
    while (va_arg(count, char *))
        n++;
    va_end(count);
    char **argv = malloc((n + 1) * sizeof *argv);
    if (!argv)
        return NULL;
    argv[0] = (char *)arg0;
    for (size_t i = 1; i <= n; i++)
        argv[i] = va_arg(ap, char *); /* the last one read is the terminating NULL */
    if (envp_out)
        *envp_out = va_arg(ap, char **);
    return argv;
}

__attribute__((visibility("default"))) int execl(const char *path, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    char **argv = collect_args(arg, ap, NULL);
    va_end(ap);
    if (!argv) {
        errno = ENOMEM;
        return -1;
    }
    extern char **environ;
    int rc = execve(path, argv, environ);
    free(argv);
    return rc;
}

__attribute__((visibility("default"))) int execlp(const char *file, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    char **argv = collect_args(arg, ap, NULL);
    va_end(ap);
    if (!argv) {
        errno = ENOMEM;
        return -1;
    }
    int rc = execvp(file, argv);
    free(argv);
    return rc;
}

__attribute__((visibility("default"))) int execle(const char *path, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    char **envp = NULL;
    char **argv = collect_args(arg, ap, &envp);
    va_end(ap);
    if (!argv) {
        errno = ENOMEM;
        return -1;
    }
    int rc = execve(path, argv, envp);
    free(argv);
    return rc;
}

/* ---- the program closing descriptors ------------------------------------------------------------- */

/* Only to know when a descriptor number libunwind holds is given back to the program (cmt_record.c);
 * each passes straight through, with the program's errno. */
__attribute__((visibility("default"))) int close(int fd)
{
    if (fd >= 0)
        cmt_unwind_fds_closing((unsigned)fd, (unsigned)fd);
    return real.close ? real.close(fd) : (int)syscall(SYS_close, fd);
}

__attribute__((visibility("default"))) int close_range(unsigned lo, unsigned hi, int flags)
{
    if (!(flags & CLOSE_RANGE_CLOEXEC))
        cmt_unwind_fds_closing(lo, hi);
    return real.close_range ? real.close_range(lo, hi, flags) : (int)syscall(SYS_close_range, lo, hi, flags);
}

__attribute__((visibility("default"))) void closefrom(int lo)
{
    cmt_unwind_fds_closing(lo < 0 ? 0 : (unsigned)lo, ~0u);
    if (real.closefrom)
        real.closefrom(lo);
    else
        syscall(SYS_close_range, (unsigned)lo, ~0u, 0);
}

__attribute__((visibility("default"))) int dup2(int from, int to)
{
    if (to >= 0 && from != to)
        cmt_unwind_fds_closing((unsigned)to, (unsigned)to);
    return real.dup2 ? real.dup2(from, to) : (int)syscall(SYS_dup2, from, to);
}

__attribute__((visibility("default"))) int dup3(int from, int to, int flags)
{
    if (to >= 0)
        cmt_unwind_fds_closing((unsigned)to, (unsigned)to);
    return real.dup3 ? real.dup3(from, to, flags) : (int)syscall(SYS_dup3, from, to, flags);
}
