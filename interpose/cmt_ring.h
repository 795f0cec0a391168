/*
 * cmt_ring.h: the bounded queue between application threads (many producers) and the writer thread (one
 * consumer). Lock-free (a Vyukov bounded queue: one sequence word per slot), so a producer never waits on
 * a lock another thread holds, not even across fork or inside a signal handler.
 *
 * Slots have a fixed size chosen at init from the stack depth. Memory is mmap'd once; pages are touched
 * only when used.
 */
#ifndef CMT_RING_H
#define CMT_RING_H

#include "cmt_event.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct cmt_ring {
    _Alignas(64) _Atomic uint64_t enqueue_pos;
    _Alignas(64) uint64_t dequeue_pos; /* writer thread only */
    _Alignas(64) unsigned char *slots;
    size_t slot_size; /* bytes per slot, sequence word included */
    uint64_t mask;    /* capacity - 1; capacity is a power of two */
    unsigned max_frames;
};

/* capacity is rounded up to a power of two. Returns 0, or -1 if memory could not be mapped. */
int cmt_ring_init(struct cmt_ring *r, size_t capacity, unsigned max_frames);
void cmt_ring_destroy(struct cmt_ring *r);

/* Copies ev (with ev->nframes frames, at most max_frames) into a free slot. Returns 0, or -1 if full. */
int cmt_ring_push(struct cmt_ring *r, const struct cmt_event *ev);

/* Writer thread: the oldest published event, or NULL if none. It stays valid until cmt_ring_release. */
struct cmt_event *cmt_ring_peek(struct cmt_ring *r);
void cmt_ring_release(struct cmt_ring *r);

/* Approximate number of queued events (for wake-up heuristics only). */
uint64_t cmt_ring_fill(struct cmt_ring *r);

/* After fork, in the child: forget everything queued (it belongs to the parent's trace). */
void cmt_ring_reset(struct cmt_ring *r);

#endif
