/*
 * cmt_capture.c: the program's side of the trace writer (see cmt_capture.h and cmt_shm.h).
 *
 * Runs on application threads. At the first recorded event it creates the shared memory, spawns the
 * writer process and waits (bounded) for it to have created the trace file; afterwards it only flips
 * words in the shared header and wakes the writer. Nothing here installs a signal handler, starts a
 * thread, or keeps a descriptor it would ever read or write.
 */
#include "cmt_capture.h"

#include "cmt_log.h"
#include "cmt_runtime.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READY_WAIT_MS 10000 /* the writer creating its file: once per process, normally a few ms */

struct cmt_shm *cmt_shm;
static size_t shm_len;
static int pipe_wr = -1;        /* our end of the liveness pipe; never read or written */
static dev_t pipe_dev;
static ino_t pipe_ino;
static char writer_path[PATH_MAX];
static _Atomic int failure_reported;
static _Atomic int attached; /* cmt_shm and the queue are set up (the writer may still be starting) */

/* ---- finding the writer -------------------------------------------------------------------------- */

void cmt_capture_init(void)
{
    const char *env = getenv("CUMEMTRACE_WRITER");
    if (env && *env) {
        snprintf(writer_path, sizeof writer_path, "%s", env);
        return;
    }
    Dl_info info;
    if (dladdr((void *)cmt_capture_init, &info) && info.dli_fname) {
        snprintf(writer_path, sizeof writer_path, "%s", info.dli_fname);
        char *slash = strrchr(writer_path, '/');
        if (slash && (size_t)(slash - writer_path) + sizeof "/cumemtrace-writer" <= sizeof writer_path)
            strcpy(slash, "/cumemtrace-writer");
        else
            writer_path[0] = 0;
    }
}

/* ---- spawning ------------------------------------------------------------------------------------ */

/* The writer is spawned through two clone()s sharing our memory (as posix_spawn does, CLONE_VM|CLONE_VFORK)
 * with no exit signal: the middle one starts the writer and exits at once, we reap it with __WCLONE, and the
 * writer, orphaned, belongs to init (or the nearest subreaper). So the program never has a child of ours:
 * wait() and waitpid(-1) never see it, no SIGCHLD is ever sent for it. The children run on their own small
 * stacks and make raw system calls only (no libc state, no sanitizer runtime: they share our memory). */
struct spawn {
    int memfd, piperd;
    volatile long pid; /* the process that becomes the writer (and, once it forked, its watchdog) */
    char *argv[2];
    char *envp[8];
    volatile int err;
};
static struct spawn sp;
static char stack_mid[16384] __attribute__((aligned(64)));
static char stack_writer[16384] __attribute__((aligned(64)));

#define NO_SANITIZE __attribute__((no_sanitize("address", "thread", "undefined"), noinline))

NO_SANITIZE static int writer_child(void *arg)
{
    struct spawn *s = arg;
    /* descriptors: 3 the shared memory, 4 the pipe; 0 and 1 /dev/null; 2 stays the program's stderr until
     * the writer is ready (it closes it then); everything else is closed by the writer first thing. */
    long m = syscall(SYS_fcntl, s->memfd, F_DUPFD, 16);
    long p = syscall(SYS_fcntl, s->piperd, F_DUPFD, 16);
    long nul = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDWR);
    if (m < 0 || p < 0 || nul < 0 || syscall(SYS_dup3, m, 3, 0) < 0 || syscall(SYS_dup3, p, 4, 0) < 0 ||
        syscall(SYS_dup3, nul, 0, 0) < 0 || syscall(SYS_dup3, nul, 1, 0) < 0) {
        s->err = EBADF;
        syscall(SYS_exit, 127);
    }
    syscall(SYS_setsid); /* out of the terminal's process group: Ctrl-C and kill -PGID are the program's */
    syscall(SYS_execve, s->argv[0], s->argv, s->envp);
    s->err = ENOEXEC;
    syscall(SYS_exit, 127);
    return 0;
}

NO_SANITIZE static int mid_child(void *arg)
{
    struct spawn *s = arg;
    long pid = clone(writer_child, stack_writer + sizeof stack_writer, CLONE_VM | CLONE_VFORK, s);
    if (pid < 0)
        s->err = EAGAIN;
    s->pid = pid;
    syscall(SYS_exit, 0);
    return 0;
}

static int spawn_writer(int memfd, int piperd)
{
    sp.memfd = memfd;
    sp.piperd = piperd;
    sp.err = 0;
    sp.pid = -1;
    sp.argv[0] = writer_path;
    sp.argv[1] = NULL;
    /* the writer must not load us again, and needs nothing of the program's environment but a
     * sanitizer's options */
    static const char *const keep[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "LSAN_OPTIONS",
                                       "CUMEMTRACE_DEBUG_WRITER", NULL};
    static char envbuf[5][512];
    int k = 0;
    for (int i = 0; keep[i] && k < 5; i++) {
        const char *v = getenv(keep[i]);
        if (v && snprintf(envbuf[k], sizeof envbuf[k], "%s=%s", keep[i], v) < (int)sizeof envbuf[k])
            sp.envp[k] = envbuf[k], k++;
    }
    sp.envp[k] = NULL;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* no handler of the program's runs in the children */
    int saved = errno;
    long pid = clone(mid_child, stack_mid + sizeof stack_mid, CLONE_VM | CLONE_VFORK, &sp);
    int rc = 0;
    if (pid < 0) {
        rc = errno;
    } else {
        int st;
        while (waitpid((pid_t)pid, &st, __WCLONE) < 0 && errno == EINTR)
            ;
        rc = sp.err;
    }
    errno = saved;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* ---- start --------------------------------------------------------------------------------------- */

static void futex_wait_shared(_Atomic uint32_t *w, uint32_t expected, uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    syscall(SYS_futex, w, FUTEX_WAIT, expected, &ts, NULL, 0);
}

/* Gone, or dead and not yet reaped (its parent is init, or a subreaper that may be slow to reap). */
static int process_gone(pid_t pid)
{
    if (kill(pid, 0) != 0)
        return errno == ESRCH;
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    const char *paren = strrchr(buf, ')'); /* the name may hold anything: the state follows the last ')' */
    return paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

int cmt_capture_start(void)
{
    int expected = CMT_IDLE;
    if (!atomic_compare_exchange_strong(&cmt_state, &expected, CMT_RUNNING))
        return 0; /* another thread started it, or recording is off */
    int saved = errno;
    size_t cap, slot;
    cmt_ring_layout(cmt_config.queue, cmt_config.depth, &cap, &slot);
    /* Sizing a memfd counts against RLIMIT_FSIZE, and past it the kernel sends SIGXFSZ, which would
     * kill the program: stay under the limit, with a smaller queue if it must be. */
    struct rlimit fsz;
    if (getrlimit(RLIMIT_FSIZE, &fsz) == 0 && fsz.rlim_cur != RLIM_INFINITY) {
        while (cap > 64 && CMT_SHM_HEADER_SIZE + cap * slot > fsz.rlim_cur)
            cap /= 2;
        if (CMT_SHM_HEADER_SIZE + cap * slot > fsz.rlim_cur) {
            cmt_runtime_disable("the file size limit (ulimit -f) leaves no room for the event queue");
            errno = saved;
            return -1;
        }
    }
    shm_len = CMT_SHM_HEADER_SIZE + cap * slot;
    int memfd = (int)syscall(SYS_memfd_create, "cumemtrace", MFD_CLOEXEC);
    int pfd[2] = {-1, -1};
    void *mem = MAP_FAILED;
    if (memfd < 0 || ftruncate(memfd, (off_t)shm_len) != 0 ||
        (mem = mmap(NULL, shm_len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0)) == MAP_FAILED ||
        pipe2(pfd, O_CLOEXEC) != 0) {
        int e = errno;
        if (memfd >= 0)
            close(memfd);
        if (mem != MAP_FAILED)
            munmap(mem, shm_len);
        char why[160];
        snprintf(why, sizeof why, "cannot set up the memory shared with the trace writer: %s", strerror(e));
        cmt_runtime_disable(why);
        errno = saved;
        return -1;
    }
    struct cmt_shm *h = mem;
    h->magic = CMT_SHM_MAGIC;
    h->version = CMT_SHM_VERSION;
    h->header_size = CMT_SHM_HEADER_SIZE;
    h->pid = (int32_t)getpid();
    h->depth = cmt_config.depth;
    h->start_ns = cmt_config.start_ns;
    h->start_unix_ns = cmt_config.start_unix_ns;
    h->ring_capacity = (uint32_t)cap;
    h->ring_slot_size = (uint32_t)slot;
    h->ring_max_frames = cmt_config.depth;
    h->debug_writer_delay_ms = cmt_config.debug_writer_delay_ms;
    memcpy(h->output, cmt_config.output, sizeof h->output);
    memcpy(h->manifest, cmt_config.manifest, sizeof h->manifest);
    memcpy(h->prog, cmt_config.prog, sizeof h->prog);
    memcpy(h->env, cmt_config.env, sizeof h->env);
    cmt_ring_attach(&cmt_queue, &h->ring, (unsigned char *)mem + CMT_SHM_HEADER_SIZE, cap, slot, cmt_config.depth);
    __atomic_store_n(&cmt_shm, h, __ATOMIC_RELEASE);
    atomic_store_explicit(&attached, 1, memory_order_release);

    int rc = writer_path[0] ? spawn_writer(memfd, pfd[0]) : ENOENT;
    close(memfd);
    close(pfd[0]);
    if (rc != 0) {
        close(pfd[1]);
        char why[PATH_MAX + 128];
        snprintf(why, sizeof why, "cannot start the trace writer %s: %s", writer_path[0] ? writer_path : "(not found)",
                 strerror(rc));
        cmt_runtime_disable(why);
        errno = saved;
        return -1;
    }
    pipe_wr = pfd[1];
    struct stat st;
    if (fstat(pipe_wr, &st) == 0) {
        pipe_dev = st.st_dev;
        pipe_ino = st.st_ino;
    }
    /* Wait for the file to exist (so that a program that ends right away still leaves its trace where
     * the user looks), bounded: events queue meanwhile. */
    uint64_t deadline = cmt_now_ns() + READY_WAIT_MS * 1000000ull;
    while (!atomic_load(&h->ready)) {
        uint64_t now = cmt_now_ns();
        if (now >= deadline)
            break;
        futex_wait_shared(&h->ready, 0, deadline - now < 20000000ull ? deadline - now : 20000000ull);
        /* Once it has forked, its watchdog says if the writer dies; before that, nobody would: a process
         * gone before READY (killed, or not our writer) is said now, not after the whole wait. */
        if (!atomic_load(&h->ready) && sp.pid > 0 && process_gone((pid_t)sp.pid)) {
            char why[PATH_MAX + 128];
            snprintf(why, sizeof why, "the trace writer %s ended before it was ready", writer_path);
            cmt_runtime_disable(why);
            break;
        }
    }
    cmt_capture_check();
    errno = saved;
    return 0;
}

void cmt_capture_await(void)
{
    while (!atomic_load_explicit(&attached, memory_order_acquire) &&
           atomic_load_explicit(&cmt_state, memory_order_acquire) == CMT_RUNNING)
        sched_yield(); /* another thread is between the state change and the mapping: microseconds */
}

void cmt_capture_check(void)
{
    struct cmt_shm *h = cmt_shm_get();
    if (h && atomic_load_explicit(&h->writer_state, memory_order_acquire) == CMT_WRITER_FAILED &&
        !atomic_exchange(&failure_reported, 1)) {
        char why[sizeof h->error + 1];
        memcpy(why, h->error, sizeof h->error);
        why[sizeof h->error] = 0;
        cmt_runtime_disable(why[0] ? why : "the trace writer failed");
    }
}

void cmt_capture_wake(void)
{
    struct cmt_shm *h = cmt_shm_get();
    if (h && atomic_exchange(&h->wake, 1) == 0)
        syscall(SYS_futex, &h->wake, FUTEX_WAKE, 1, NULL, NULL, 0);
}

int cmt_capture_push(const struct cmt_event *e)
{
    uint64_t pos;
    if (cmt_ring_push(&cmt_queue, e, &pos) != 0)
        return -1;
    if ((pos & 63) == 0 && cmt_ring_fill(&cmt_queue) > (cmt_queue.mask + 1) / 2)
        cmt_capture_wake();
    return 0;
}

int cmt_capture_writer_alive(void)
{
    struct cmt_shm *h = cmt_shm_get();
    if (!h)
        return 0;
    int ws = atomic_load_explicit(&h->writer_state, memory_order_acquire);
    return ws == CMT_WRITER_STARTING || ws == CMT_WRITER_READY;
}

void cmt_capture_mark(int prog_state)
{
    struct cmt_shm *h = cmt_shm_get();
    if (!h)
        return;
    if (prog_state == CMT_PROG_EXITING) {
        uint64_t zero = 0;
        atomic_compare_exchange_strong(&h->exit_ns, &zero, cmt_now_ns());
    }
    atomic_store_explicit(&h->prog_state, prog_state, memory_order_release);
    cmt_capture_wake();
}

void cmt_capture_forget_after_fork(void)
{
    /* The parent's writer and shared memory are the parent's: unmap our copy (we never write it again)
     * and close our copy of the pipe's write end, so that the parent's end is seen when the parent goes,
     * not when this child does. The descriptor is checked first: the program may have closed it and opened
     * something else under that number. */
    struct cmt_shm *h = cmt_shm_get();
    if (h) {
        __atomic_store_n(&cmt_shm, NULL, __ATOMIC_RELEASE);
        munmap(h, shm_len);
    }
    memset(&cmt_queue, 0, sizeof cmt_queue);
    atomic_store(&attached, 0);
    if (pipe_wr >= 0) {
        struct stat st;
        if (fstat(pipe_wr, &st) == 0 && st.st_dev == pipe_dev && st.st_ino == pipe_ino && S_ISFIFO(st.st_mode))
            close(pipe_wr);
        pipe_wr = -1;
    }
    atomic_store(&failure_reported, 0);
}

void cmt_capture_wait_for_space(uint64_t timeout_ns)
{
    struct cmt_shm *h = cmt_shm_get();
    if (!h)
        return;
    uint32_t seen = atomic_load(&h->space);
    atomic_store(&h->space_waiters, 1);
    cmt_capture_wake();
    futex_wait_shared(&h->space, seen, timeout_ns);
}
