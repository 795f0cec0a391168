/*
 * lifecycle_client.c MODE: allocates 3 buffers (1, 2, 3 MiB), then ends as MODE says:
 *   return     returns from main with status 7
 *   exit       calls exit(5) from a nested function
 *   abort      calls abort()
 *   kill       sleeps past the writer's commit interval, then SIGKILLs itself
 *   fork       forks: the child allocates 4 MiB and exits 0; the parent waits, then allocates 5 MiB
 *   exec       allocates, then execs itself as "after-exec", which allocates 6 MiB and returns 0
 *   after-exec (internal)
 *   exec-fail  execs a path that does not exist, then allocates 7 MiB and returns 0
 *   vfork      vforks a child that execs /bin/true, then allocates 8 MiB and returns 0
 *   other-lib  dlopen()s LIB (argv[2]) that defines cuMemAlloc_v2 too: its function, then the driver's,
 *              must each answer for itself (prints "other RESULT" and "driver RESULT")
 * Prints "pid PID" lines for every process that allocates, so tests can find their files.
 */
#include "ops.h"

#include <dlfcn.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void alloc_mib(size_t n)
{
    CUdeviceptr p;
    CHECK(cuMemAlloc_v2(&p, n * MiB));
}

__attribute__((noinline)) static void leave_from_nested(void)
{
    exit(5);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "return";
    client_setup();
    printf("pid %d\n", (int)getpid());
    fflush(stdout);
    if (!strcmp(mode, "after-exec")) {
        alloc_mib(6);
        return 0;
    }
    if (!strcmp(mode, "other-lib") && argc > 2) {
        void *h = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
        CUresult (*other)(CUdeviceptr *, size_t) = h ? (CUresult(*)(CUdeviceptr *, size_t))dlsym(h, "cuMemAlloc_v2") : NULL;
        CUdeviceptr p = 0;
        if (!other)
            return 1;
        printf("other %d\n", (int)other(&p, 4096));
        printf("driver %d\n", (int)cuMemAlloc_v2(&p, 4096));
        return 0;
    }
    alloc_mib(1);
    alloc_mib(2);
    alloc_mib(3);
    if (!strcmp(mode, "exit"))
        leave_from_nested();
    if (!strcmp(mode, "abort"))
        abort();
    if (!strcmp(mode, "kill")) {
        struct timespec ts = {0, 400 * 1000 * 1000};
        nanosleep(&ts, NULL);
        kill(getpid(), SIGKILL);
    }
    if (!strcmp(mode, "fork")) {
        pid_t pid = fork();
        if (pid == 0) {
            printf("pid %d\n", (int)getpid());
            fflush(stdout);
            alloc_mib(4);
            exit(0);
        }
        int status;
        waitpid(pid, &status, 0);
        alloc_mib(5);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
    }
    if (!strcmp(mode, "exec")) {
        execl("/proc/self/exe", argv[0], "after-exec", (char *)NULL);
        return 98;
    }
    if (!strcmp(mode, "vfork")) {
        pid_t pid = vfork();
        if (pid == 0) {
            execl("/bin/true", "true", (char *)NULL);
            _exit(127);
        }
        int status;
        waitpid(pid, &status, 0);
        alloc_mib(8);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
    }
    if (!strcmp(mode, "exec-fail")) {
        execl("/nonexistent/program", "x", (char *)NULL);
        alloc_mib(7);
        return 0;
    }
    return 7;
}
