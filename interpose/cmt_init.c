/*
 * cmt_init.c: the interposer's lifecycle: configuration, start, fork, exec, exit and fatal signals.
 *
 * Runs on whichever application thread triggers it (constructor, exit, fork, exec, a signal). Heavy work
 * is the writer's; here we only flip state and wait for it, always with a time limit.
 */
#include "cmt_log.h"
#include "cmt_resolve.h"
#include "cmt_record.h"
#include "cmt_runtime.h"
#include "cmt_writer.h"

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

#define EXIT_WAIT_MS 60000   /* exit: the writer finishes the file (indexes included) */
#define SIGNAL_WAIT_MS 5000  /* abort/SIGTERM: the process is dying, bound the delay */

struct cmt_config cmt_config;
struct cmt_ring cmt_queue;
_Atomic int cmt_state;
_Atomic uint64_t cmt_seq;
_Atomic uint64_t cmt_lost;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
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
    cmt_config.depth = 128;
    v = getenv("CUMEMTRACE_STACK_DEPTH");
    if (v && *v) {
        long d = strtol(v, NULL, 10);
        cmt_config.depth = d < 0 ? 0 : d > CMT_MAX_DEPTH - 8 ? CMT_MAX_DEPTH - 8 : (unsigned)d;
    }
    cmt_config.queue = 4096;
    v = getenv("CUMEMTRACE_QUEUE");
    if (v && *v && strtol(v, NULL, 10) > 0)
        cmt_config.queue = (unsigned)strtol(v, NULL, 10);
    if (cmt_config.queue > (1u << 20))
        cmt_config.queue = 1u << 20; /* a bound on the address space it takes: ~2 GiB at the deepest stacks */
    v = getenv("CUMEMTRACE_DEBUG_WRITER_DELAY_MS");
    if (v && *v)
        cmt_config.debug_writer_delay_ms = (unsigned)strtoul(v, NULL, 10);
    read_prog_name();
    read_env();
    cmt_config.start_ns = cmt_now_ns();
    cmt_config.start_unix_ns = unix_ns();
    atomic_store(&own_pid, getpid());
    cmt_record_init();
    if (cmt_ring_init(&cmt_queue, cmt_config.queue, cmt_config.depth) != 0) {
        cmt_runtime_disable("cannot allocate the event queue");
        return;
    }
    atomic_store(&init_result, 0);
}

int cmt_runtime_init(void)
{
    pthread_once(&init_once, do_init);
    return atomic_load(&init_result);
}

/* ---- exit ---------------------------------------------------------------------------------------- */

static void finish(unsigned wait_ms, int quick)
{
    int expected = CMT_RUNNING;
    if (!atomic_compare_exchange_strong(&cmt_state, &expected, CMT_CLOSED))
        return;
    if (cmt_writer_stop(wait_ms, quick) != 0)
        cmt_log("the trace could not be finished in time; events committed so far are kept");
}

/* Runs late: we are initialized before the program's libraries, so destructed after them, and their
 * last frees are recorded. */
__attribute__((destructor)) static void cmt_fini(void)
{
    finish(EXIT_WAIT_MS, 0);
}

/* ---- fatal signals ------------------------------------------------------------------------------- */

static struct sigaction previous[NSIG];

/* abort() (an uncaught C++ exception included) and SIGTERM end the process without running destructors:
 * finish the file first, then let the signal do what it would have done. */
static void on_fatal_signal(int sig)
{
    int saved = errno;
    finish(SIGNAL_WAIT_MS, 1); /* no indexes: the process is dying, the reader can do without them */
    sigaction(sig, &previous[sig], NULL);
    errno = saved;
    raise(sig); /* blocked until we return: then it takes its default course */
}

static void install_signal(int sig)
{
    struct sigaction old;
    if (sigaction(sig, NULL, &old) != 0 || old.sa_handler != SIG_DFL || (old.sa_flags & SA_SIGINFO))
        return; /* the program has its own plan for this signal; it ends through exit or abort anyway */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    previous[sig] = old;
    sigaction(sig, &sa, NULL);
}

/* ---- fork ---------------------------------------------------------------------------------------- */

static void fork_prepare(void)
{
    cmt_writer_fork_prepare();
}

static void fork_parent(void)
{
    cmt_writer_fork_parent();
}

/* The child is a new process: it never writes into its parent's file. It starts empty and opens its
 * own file at its first event. */
static void fork_child(void)
{
    atomic_store(&own_pid, getpid());
    int writer_caught_mid_work = cmt_writer_fork_child() != 0;
    cmt_record_after_fork();
    int st = atomic_load(&cmt_state);
    if (st == CMT_DISABLED && atomic_load(&init_result) != 0)
        return;
    if (writer_caught_mid_work) {
        /* The writer's state may be half-updated here: forget nothing, touch nothing, record nothing. */
        atomic_store(&cmt_state, CMT_DISABLED);
        cmt_log("process %d forked while the trace writer was busy: this child is not traced", (int)getpid());
        return;
    }
    cmt_writer_forget_after_fork();
    cmt_ring_reset(&cmt_queue);
    atomic_store(&cmt_seq, 0);
    atomic_store(&cmt_lost, 0);
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
    pthread_atfork(fork_prepare, fork_parent, fork_child);
    install_signal(SIGABRT);
    install_signal(SIGTERM);
}

/* ---- exec ---------------------------------------------------------------------------------------- */

/* The process image is about to be replaced: finish the file. If exec fails, recording resumes into a
 * new file at the next event. */
static int in_vfork_child(void)
{
    return getpid() != atomic_load(&own_pid);
}

static void before_exec(void)
{
    if (!in_vfork_child())
        finish(EXIT_WAIT_MS, 0);
}

static void after_failed_exec(void)
{
    if (in_vfork_child())
        return;
    if (!cmt_writer_finished()) {
        /* The old writer did not finish in time and still runs: a second one would share its state. */
        int expected = CMT_CLOSED;
        if (atomic_compare_exchange_strong(&cmt_state, &expected, CMT_DISABLED))
            cmt_log("exec failed while the trace was still being finished: recording stops here");
        return;
    }
    cmt_writer_rearm();
    int expected = CMT_CLOSED;
    atomic_compare_exchange_strong(&cmt_state, &expected, CMT_IDLE);
}

/* The real functions, found once at start (dlsym takes the loader's lock: not something to do in _exit
 * called from a signal handler). */
static struct {
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

/* exec replaces the image only if it succeeds: finish the trace first, resume into a new file if not. */
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
 * Such a child's own trace is finished first, like exit's. exit() itself reaches the kernel without
 * coming through here. */
__attribute__((visibility("default"), noreturn)) void _exit(int status)
{
    if (!in_vfork_child())
        finish(EXIT_WAIT_MS, 0);
    if (real._exit)
        real._exit(status);
    syscall(SYS_exit_group, status); /* defensive: libc's _exit could not be found */
    __builtin_unreachable();
}

__attribute__((visibility("default"), noreturn)) void _Exit(int status)
{
    if (!in_vfork_child())
        finish(EXIT_WAIT_MS, 0);
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
