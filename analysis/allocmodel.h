/*
 * allocmodel.h: a model of PyTorch's CUDA caching allocator (the native backend of torch 2.14,
 * c10/cuda/CUDACachingAllocator.cpp), replaying a recorded stream of requests under a configuration:
 * 512-byte rounding and roundup_power2_divisions; the small pool (requests up to 1 MiB, 2 MiB segments)
 * and the large pool (20 MiB segments below 10 MiB, 2 MiB rounding above); best fit by (stream, size,
 * address); split and merge; max_split_size; on a failed device allocation, releasing an oversize
 * cached block or enough of them, then every unsplit cached segment, and retrying; empty_cache.
 * Expandable segments: one growing reservation per pool and stream, mapped by pages (2 MiB small pool,
 * 20 MiB large), every remainder of 512 bytes or more split off, whole free pages unmapped where the
 * default would release segments. garbage_collection_threshold: it acts only under a per-process
 * memory limit, which the capacity then stands for.
 *
 * Private pools (torch.cuda.MemPool with use_mem_pool, CUDA graph capture): requests made into one are
 * served from that pool's own large and small block sets and segments, and freed blocks go back there;
 * releasing cached memory (empty_cache, a failed device allocation) leaves the segments of a private pool
 * in use alone and gives back those of a pool no longer in use (cmt_amodel_release_pool). A MemPool's
 * use_on_oom and no_split are not modelled.
 * record_stream: a block freed while in use on other streams is pending (counted out of allocated, not
 * reusable) until its recorded free_completed, or until releasing cached memory synchronizes its events
 * first (synchronize_and_free_events), whichever comes first.
 *
 * Runs in the `cumemtrace` command. No I/O.
 */
#ifndef CMT_ALLOCMODEL_H
#define CMT_ALLOCMODEL_H

#include <stddef.h>
#include <stdint.h>

struct cmt_aconf {
    uint64_t max_split_size;   /* UINT64_MAX: unlimited (the default) */
    unsigned divisions;        /* roundup_power2_divisions for every size; 0 or 1: none */
    uint64_t capacity;         /* bytes the allocator may reserve on the device; UINT64_MAX: unlimited */
    int expandable;            /* expandable_segments:True */
    double gc_threshold;       /* garbage_collection_threshold; 0: off. With it, capacity is the per-process
                                * limit (set_per_process_memory_fraction times the device's memory) */
};

/* Parses PYTORCH_CUDA_ALLOC_CONF-style text ("max_split_size_mb:64,roundup_power2_divisions:4") over
 * conf. 0, or -1 with a one-line reason (an unknown key, a bad value, or something not modelled). */
int cmt_aconf_parse(struct cmt_aconf *conf, const char *text, char *err, size_t errlen);

struct cmt_amodel;

struct cmt_amodel *cmt_amodel_new(const struct cmt_aconf *conf);
void cmt_amodel_free(struct cmt_amodel *m);

/* A request of `size` bytes on `stream` into pool `pool` (0 the default pools, k > 0 the caller's k-th
 * private pool): 0 and the block's id (> 0) in *id, -1 when the allocator would raise OutOfMemoryError
 * (after releasing its cache and retrying, as PyTorch does), -2 out of memory of our own. */
int cmt_amodel_malloc_in(struct cmt_amodel *m, uint64_t size, int64_t stream, int pool, uint64_t *id);
/* The block comes back (free_completed), pending or not. Unknown ids (and blocks a synchronization
 * already freed) are ignored. */
void cmt_amodel_free_block(struct cmt_amodel *m, uint64_t id);
/* free_requested of a block with uses recorded on other streams: pending until cmt_amodel_free_block or
 * a release of cached memory. 0, -1 out of memory. */
int cmt_amodel_free_pending(struct cmt_amodel *m, uint64_t id);
/* torch.cuda.empty_cache(): pending frees complete, then every cached segment with nothing allocated in it
 * goes back, of the default pools and of private pools no longer in use. */
void cmt_amodel_empty_cache(struct cmt_amodel *m);
/* Private pool `pool` is no longer in use (its MemPool was destroyed, its graph reset): any later release
 * of cached memory takes its unsplit cached segments too; with `now`, they go back at once (the
 * destructor's emptyCache of that pool). 0, -1 out of memory. */
int cmt_amodel_release_pool(struct cmt_amodel *m, int pool, int now);
/* The next new segment (or expandable segment's reservation) the model makes is at addr, as the recorded
 * run had it (best fit breaks ties of size by address: the replay of a recorded run follows its
 * addresses); it applies to the next cmt_amodel_malloc* call only if that makes a segment; 0 clears it. */
void cmt_amodel_next_segment_at(struct cmt_amodel *m, uint64_t addr);
/* An allocated block's address and its segment's base address (the model's own address space). 0, or -1
 * for an unknown id. */
int cmt_amodel_block(const struct cmt_amodel *m, uint64_t id, uint64_t *addr, uint64_t *seg);

struct cmt_astats {
    uint64_t reserved, allocated, peak_reserved, peak_allocated;
    uint64_t allocated_at_peak_reserved; /* the most allocated while reserved stood at its peak */
    uint64_t segments_allocated; /* cudaMalloc calls that succeeded */
    uint64_t last_segment_size;  /* the size of the latest one (expandable: of the latest mapping) */
    uint64_t last_segment_base;  /* the address of the latest one (expandable: of the mapping) */
};
void cmt_amodel_stats(const struct cmt_amodel *m, struct cmt_astats *out);

#endif
