/*
 * rank_client.c: one rank of a simulated distributed job (tests/test_ranks.py). Reads RANK and LOCAL_RANK
 * from its environment, like a torchrun worker, and uses device LOCAL_RANK % (device count).
 *
 *   rank_client PEAKS_MIB OOM_ORDER SYNC_DIR
 *     PEAKS_MIB  comma-separated peak per rank in MiB (at least 17): rank R allocates PEAKS[R] - 16 MiB, then
 *                16 MiB; both are live at its peak
 *     OOM_ORDER  comma-separated ranks that then ask for 1 TiB (out of memory), in this order across the job
 *                ("-" for none)
 *     SYNC_DIR   files in it order the ranks: every rank holds its peak until all have reached theirs (so
 *                ranks on one GPU peak together), and each OOM waits for the previous rank's
 *
 * Rank 0 also forks two workers that never touch CUDA (one before its first CUDA call, one after): they
 * must leave no trace. Exits 0; any unexpected driver result exits 1 with a line on stderr.
 */
#define __CUDA_API_VERSION_INTERNAL 1
#include "client.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MiB (1ull << 20)

static void touch(const char *dir, const char *what, long r)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s-%ld", dir, what, r);
    int fd = open(p, O_CREAT | O_WRONLY, 0600);
    if (fd >= 0)
        close(fd);
}

static void await(const char *dir, const char *what, long r)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s-%ld", dir, what, r);
    for (int i = 0; i < 60000 && access(p, F_OK) != 0; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static void fork_worker(void)
{
    pid_t p = fork();
    if (p == 0) {
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
        exit(0); /* a data-loader worker: no CUDA at all */
    }
    if (p > 0)
        waitpid(p, NULL, 0);
}

int main(int argc, char **argv)
{
    if (argc != 4 || !getenv("RANK")) {
        fprintf(stderr, "usage: RANK=R LOCAL_RANK=L rank_client PEAKS_MIB OOM_ORDER SYNC_DIR\n");
        return 2;
    }
    long rank = atol(getenv("RANK"));
    long local = getenv("LOCAL_RANK") ? atol(getenv("LOCAL_RANK")) : rank;
    long peaks[64];
    int n = 0;
    for (char *s = argv[1]; *s && n < 64;) {
        peaks[n++] = strtol(s, &s, 10);
        if (*s == ',')
            s++;
    }
    if (rank < 0 || rank >= n || peaks[rank] < 17) {
        fprintf(stderr, "rank_client: no peak of at least 17 MiB for rank %ld\n", rank);
        return 2;
    }
    const char *sync = argv[3];
    if (rank == 0)
        fork_worker();

    int ndev = 0;
    CHECK(cuInit(0));
    CHECK(cuDeviceGetCount(&ndev));
    client_setup_on((int)(local % ndev));
    CUdeviceptr big, small;
    CHECK(cuMemAlloc_v2(&big, (size_t)(peaks[rank] - 16) * MiB));
    CHECK(cuMemAlloc_v2(&small, 16 * MiB));
    touch(sync, "peak", rank);
    for (long r = 0; r < n; r++)
        await(sync, "peak", r);
    if (rank == 0)
        fork_worker();
    CHECK(cuMemFree_v2(small));

    /* The out-of-memory sequence: each waits for the one listed before it. */
    long prev = -1;
    for (char *s = argv[2]; *s && *s != '-';) {
        long r = strtol(s, &s, 10);
        if (*s == ',')
            s++;
        if (r == rank) {
            if (prev >= 0)
                await(sync, "oom", prev);
            CUdeviceptr huge;
            CUresult res = cuMemAlloc_v2(&huge, (size_t)1 << 40);
            if (res != CUDA_ERROR_OUT_OF_MEMORY) {
                fprintf(stderr, "rank_client: 1 TiB gave %d, not out of memory\n", (int)res);
                return 1;
            }
            touch(sync, "oom", rank);
        }
        prev = r;
    }
    CHECK(cuMemFree_v2(big));
    return 0;
}
