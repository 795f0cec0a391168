/*
 * cmt_ring.h: the bounded queue between application threads (many producers) and the writer process (one
 * consumer), in memory the two processes share. Lock-free (a Vyukov bounded queue: one sequence word per slot), so a producer never waits on
 * a lock another thread holds, not even across fork or inside a signal handler.
 *
 * Slots have a fixed size chosen from the stack depth. Pages are touched only when used.
 */
#ifndef CMT_RING_H
#define CMT_RING_H

#include "cmt_event.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct cmt_shm_ring;

/* One process's view of a ring whose positions and slots live in shared memory (cmt_shm.h). */
struct cmt_ring {
    struct cmt_shm_ring *ctl; /* enqueue_pos, dequeue_pos */
    unsigned char *slots;
    size_t slot_size; /* bytes per slot, sequence word included */
    uint64_t mask;    /* capacity - 1; capacity is a power of two */
    unsigned max_frames;
    uint64_t out; /* the consumer's own position (dequeue_pos is published from it every CMT_RING_PUBLISH) */
};

/* The consumer publishes its position (dequeue_pos) every this many events and at cmt_ring_publish, not at
 * every event: producers read it only to tell progress, and each store would take its cache line from
 * them. */
#define CMT_RING_PUBLISH 64

/* Payload words every slot holds whatever max_frames is: room for an NVTX record's text (cmt_shm.h). */
#define CMT_RING_MIN_WORDS 40

/* The capacity (capacity rounded up to a power of two, at least 64) and slot size for max_frames. */
void cmt_ring_layout(size_t capacity, unsigned max_frames, size_t *cap_out, size_t *slot_size_out);

/* Attaches to slots laid out by cmt_ring_layout. Zero-filled memory is an empty ring. */
void cmt_ring_attach(struct cmt_ring *r, struct cmt_shm_ring *ctl, void *slots, size_t cap, size_t slot_size,
                     unsigned max_frames);

/* Copies ev (with ev->nframes frames, at most max_frames) into a free slot. Returns 0 and the position it
 * took in *pos (positions count from 0, one per event ever queued), or -1 if full. */
int cmt_ring_push(struct cmt_ring *r, const struct cmt_event *ev, uint64_t *pos);

/* Consumer: the oldest published event, or NULL if none. It stays valid until cmt_ring_release. */
struct cmt_event *cmt_ring_peek(struct cmt_ring *r);
void cmt_ring_release(struct cmt_ring *r);

/* Consumer: makes its position visible to producers now (before it sleeps, or ends a run of events). */
void cmt_ring_publish(struct cmt_ring *r);

/* Consumer, once every producer is gone: passes over the oldest slot, claimed but never published (its
 * producer died mid-copy). Returns 1 if there was such a slot before enqueue_pos, 0 if the ring is empty. */
int cmt_ring_skip_unpublished(struct cmt_ring *r);

/* A new consumer taking over from one that died: moves past the slots it had consumed (its published
 * position may be up to CMT_RING_PUBLISH behind), publishes, and returns the position reached: the first
 * event it had not released. */
uint64_t cmt_ring_take_over(struct cmt_ring *r);

/* Approximate number of queued events (for wake-up heuristics only: the consumer's position may be up to
 * CMT_RING_PUBLISH events old). */
uint64_t cmt_ring_fill(struct cmt_ring *r);

/* Where the consumer last published it was (producers watch it to tell a stalled writer from a busy one). */
uint64_t cmt_ring_taken(struct cmt_ring *r);

#endif
