/*
 * cmt_ring.c: bounded MPSC queue (see cmt_ring.h).
 *
 * Each slot starts with an atomic sequence word. A slot at position p is free for a producer when its
 * sequence equals p, and holds a published event for the consumer when it equals p + 1; after consuming,
 * the consumer sets it to p + capacity, the position at which the slot comes round again. Producers claim
 * positions with a CAS on enqueue_pos, so two producers never write the same slot.
 *
 * The word stores the sequence minus the slot's index, so that all zeros is the initial state (slot i
 * expects position i): fresh anonymous pages need no initialization, and memory is only touched, and
 * only counts in the process's footprint, as far as events have actually been queued. A process that
 * never records keeps the whole queue as untouched address space.
 */
#include "cmt_ring.h"

#include "cmt_shm.h"

#include <string.h>

struct slot_head {
    _Atomic uint64_t seq;
    uint64_t pad;
};

static struct slot_head *slot_at(struct cmt_ring *r, uint64_t pos)
{
    return (struct slot_head *)(r->slots + (pos & r->mask) * r->slot_size);
}

static uint64_t load_seq(struct cmt_ring *r, struct slot_head *h, uint64_t pos, memory_order mo)
{
    return atomic_load_explicit(&h->seq, mo) + (pos & r->mask);
}

static void store_seq(struct cmt_ring *r, struct slot_head *h, uint64_t pos, uint64_t seq, memory_order mo)
{
    atomic_store_explicit(&h->seq, seq - (pos & r->mask), mo);
}

static struct cmt_event *slot_event(struct slot_head *h)
{
    return (struct cmt_event *)(h + 1);
}

void cmt_ring_layout(size_t capacity, unsigned max_frames, size_t *cap_out, size_t *slot_size_out)
{
    size_t cap = 64;
    if (max_frames < CMT_RING_MIN_WORDS)
        max_frames = CMT_RING_MIN_WORDS;
    while (cap < capacity)
        cap <<= 1;
    size_t slot = sizeof(struct slot_head) + sizeof(struct cmt_event) + (size_t)max_frames * sizeof(uintptr_t);
    *slot_size_out = (slot + 63) & ~(size_t)63; /* whole cache lines: no false sharing between slots */
    *cap_out = cap;
}

void cmt_ring_attach(struct cmt_ring *r, struct cmt_shm_ring *ctl, void *slots, size_t cap, size_t slot_size,
                     unsigned max_frames)
{
    r->ctl = ctl;
    r->slots = slots;
    r->slot_size = slot_size;
    r->mask = cap - 1;
    r->max_frames = max_frames < CMT_RING_MIN_WORDS ? CMT_RING_MIN_WORDS : max_frames; /* as laid out */
    r->out = atomic_load_explicit(&ctl->dequeue_pos, memory_order_acquire);
}

int cmt_ring_push(struct cmt_ring *r, const struct cmt_event *ev, uint64_t *pos_out)
{
    uint64_t pos = atomic_load_explicit(&r->ctl->enqueue_pos, memory_order_relaxed);
    struct slot_head *h;
    for (;;) {
        h = slot_at(r, pos);
        uint64_t seq = load_seq(r, h, pos, memory_order_acquire);
        int64_t diff = (int64_t)(seq - pos);
        if (diff == 0) {
            if (atomic_compare_exchange_weak_explicit(&r->ctl->enqueue_pos, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (diff < 0) {
            return -1; /* full: the slot still holds an event from one lap ago */
        } else {
            pos = atomic_load_explicit(&r->ctl->enqueue_pos, memory_order_relaxed);
        }
    }
    unsigned n = ev->nframes > r->max_frames ? r->max_frames : ev->nframes;
    struct cmt_event *dst = slot_event(h);
    memcpy(dst, ev, sizeof *ev + n * sizeof(uintptr_t));
    dst->nframes = (uint16_t)n;
    /* Publish: the consumer's acquire load of seq sees the event's bytes. */
    store_seq(r, h, pos, pos + 1, memory_order_release);
    *pos_out = pos;
    return 0;
}

struct cmt_event *cmt_ring_peek(struct cmt_ring *r)
{
    struct slot_head *h = slot_at(r, r->out);
    if (load_seq(r, h, r->out, memory_order_acquire) != r->out + 1)
        return NULL;
    return slot_event(h);
}

void cmt_ring_publish(struct cmt_ring *r)
{
    atomic_store_explicit(&r->ctl->dequeue_pos, r->out, memory_order_release);
}

void cmt_ring_release(struct cmt_ring *r)
{
    struct slot_head *h = slot_at(r, r->out);
    store_seq(r, h, r->out, r->out + r->mask + 1, memory_order_release);
    if ((++r->out & (CMT_RING_PUBLISH - 1)) == 0)
        cmt_ring_publish(r);
}

int cmt_ring_skip_unpublished(struct cmt_ring *r)
{
    if (r->out >= atomic_load_explicit(&r->ctl->enqueue_pos, memory_order_acquire))
        return 0;
    struct slot_head *h = slot_at(r, r->out);
    store_seq(r, h, r->out, r->out + r->mask + 1, memory_order_release);
    r->out++;
    cmt_ring_publish(r);
    return 1;
}

uint64_t cmt_ring_take_over(struct cmt_ring *r)
{
    r->out = atomic_load_explicit(&r->ctl->dequeue_pos, memory_order_acquire);
    /* A released slot expects a position a lap (or, once reused, more) ahead of its own; producers cannot
     * lap the first slot not released, so the scan stops there. */
    while ((int64_t)(load_seq(r, slot_at(r, r->out), r->out, memory_order_acquire) - r->out) >= (int64_t)(r->mask + 1))
        r->out++;
    cmt_ring_publish(r);
    return r->out;
}

uint64_t cmt_ring_fill(struct cmt_ring *r)
{
    uint64_t in = atomic_load_explicit(&r->ctl->enqueue_pos, memory_order_relaxed);
    uint64_t out = atomic_load_explicit(&r->ctl->dequeue_pos, memory_order_relaxed);
    return in > out ? in - out : 0;
}

uint64_t cmt_ring_taken(struct cmt_ring *r)
{
    return atomic_load_explicit(&r->ctl->dequeue_pos, memory_order_relaxed);
}
