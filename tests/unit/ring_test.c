/*
 * ring_test.c: the lock-free queue under contention. PRODUCERS threads push ROUNDS events each through
 * a deliberately small ring while one consumer drains it; every event must arrive exactly once, intact,
 * and each producer's events in the order it pushed them, at the position cmt_ring_push said it took. The
 * consumer's position reaches producers (dequeue_pos) every CMT_RING_PUBLISH events and at
 * cmt_ring_publish. Built plain and under TSan.
 */
#include "cmt_ring.h"
#include "cmt_shm.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PRODUCERS 6
#define ROUNDS 200000

static struct cmt_ring ring;
static struct cmt_shm_ring ctl;
static uint64_t taken_at[PRODUCERS][ROUNDS]; /* the position each push said it took */

static void *producer(void *arg)
{
    long id = (long)arg;
    union {
        struct cmt_event ev;
        unsigned char raw[sizeof(struct cmt_event) + 4 * sizeof(uintptr_t)];
    } u;
    for (long i = 0; i < ROUNDS; i++) {
        memset(&u, 0, sizeof u);
        u.ev.tid = (int32_t)id;
        u.ev.seq = (uint64_t)i;
        u.ev.nframes = (uint16_t)(i % 5);
        for (int k = 0; k < u.ev.nframes; k++)
            u.ev.frames[k] = (uintptr_t)(id * 1000003 + i + k);
        while (cmt_ring_push(&ring, &u.ev, &taken_at[id][i]) != 0)
            sched_yield();
    }
    return NULL;
}

int main(void)
{
    size_t cap, slot;
    cmt_ring_layout(64, 4, &cap, &slot);
    void *mem = mmap(NULL, cap * slot, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        return 1;
    cmt_ring_attach(&ring, &ctl, mem, cap, slot, 4);
    pthread_t t[PRODUCERS];
    for (long i = 0; i < PRODUCERS; i++)
        pthread_create(&t[i], NULL, producer, (void *)i);
    long next[PRODUCERS] = {0}, total = 0;
    static long seen_at[PRODUCERS][ROUNDS]; /* where the consumer found each event */
    while (total < (long)PRODUCERS * ROUNDS) {
        struct cmt_event *e = cmt_ring_peek(&ring);
        if (!e) {
            sched_yield();
            continue;
        }
        long id = e->tid, i = (long)e->seq;
        if (id < 0 || id >= PRODUCERS || i != next[id] || e->nframes != i % 5) {
            fprintf(stderr, "FAIL: producer %ld event %ld arrived out of order or damaged (expected %ld)\n", id, i,
                    id >= 0 && id < PRODUCERS ? next[id] : -1);
            return 1;
        }
        for (int k = 0; k < e->nframes; k++)
            if (e->frames[k] != (uintptr_t)(id * 1000003 + i + k)) {
                fprintf(stderr, "FAIL: frames of producer %ld event %ld damaged\n", id, i);
                return 1;
            }
        seen_at[id][i] = total;
        next[id]++;
        total++;
        cmt_ring_release(&ring);
        uint64_t published = atomic_load(&ctl.dequeue_pos);
        if (published != (uint64_t)total - (uint64_t)total % CMT_RING_PUBLISH) {
            fprintf(stderr, "FAIL: after %ld events the published position is %llu\n", total,
                    (unsigned long long)published);
            return 1;
        }
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(t[i], NULL);
    for (int id = 0; id < PRODUCERS; id++)
        for (long i = 0; i < ROUNDS; i++)
            if (taken_at[id][i] != (uint64_t)seen_at[id][i]) {
                fprintf(stderr, "FAIL: producer %d event %ld: push said position %llu, the consumer found it at %ld\n",
                        id, i, (unsigned long long)taken_at[id][i], seen_at[id][i]);
                return 1;
            }
    cmt_ring_publish(&ring);
    if (atomic_load(&ctl.dequeue_pos) != (uint64_t)total) {
        fprintf(stderr, "FAIL: cmt_ring_publish left dequeue_pos at %llu, not %ld\n",
                (unsigned long long)atomic_load(&ctl.dequeue_pos), total);
        return 1;
    }
    if (cmt_ring_peek(&ring)) {
        fprintf(stderr, "FAIL: events left over\n");
        return 1;
    }
    /* A consumer that dies between two publications: a new one takes over at the first event it had not
     * released, and producers go on. */
    union {
        struct cmt_event ev;
        unsigned char raw[sizeof(struct cmt_event) + 4 * sizeof(uintptr_t)];
    } u;
    memset(&u, 0, sizeof u);
    uint64_t pos;
    for (int i = 0; i < 50; i++) {
        u.ev.seq = (uint64_t)i;
        if (cmt_ring_push(&ring, &u.ev, &pos) != 0)
            return 1;
    }
    for (int i = 0; i < 37; i++) {
        cmt_ring_peek(&ring);
        cmt_ring_release(&ring);
    }
    struct cmt_ring heir;
    cmt_ring_attach(&heir, &ctl, mem, cap, slot, 4);
    uint64_t at = cmt_ring_take_over(&heir);
    struct cmt_event *e = cmt_ring_peek(&heir);
    if (at != (uint64_t)total + 37 || !e || e->seq != 37 || atomic_load(&ctl.dequeue_pos) != at) {
        fprintf(stderr, "FAIL: took over at %llu (want %llu), next event %lld\n", (unsigned long long)at,
                (unsigned long long)total + 37, e ? (long long)e->seq : -1LL);
        return 1;
    }
    munmap(mem, cap * slot);
    printf("ok %ld events\n", total);
    return 0;
}
