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
 * Not modelled: private pools of CUDA graphs (whatif refuses a history with such segments);
 * record_stream's deferred frees are replayed when they were recorded (free_completed, when the block
 * really came back), never earlier: a what-if retry's synchronize-and-free of pending events is not.
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

/* A request of `size` bytes on `stream`: 0 and the block's id (> 0) in *id, or -1 when the allocator
 * would raise OutOfMemoryError (after releasing its cache and retrying, as PyTorch does). */
int cmt_amodel_malloc(struct cmt_amodel *m, uint64_t size, int64_t stream, uint64_t *id);
/* The block comes back (free_completed). Unknown ids are ignored. */
void cmt_amodel_free_block(struct cmt_amodel *m, uint64_t id);
/* torch.cuda.empty_cache(): every cached segment with nothing allocated in it goes back. */
void cmt_amodel_empty_cache(struct cmt_amodel *m);

struct cmt_astats {
    uint64_t reserved, allocated, peak_reserved, peak_allocated;
    uint64_t allocated_at_peak_reserved; /* the most allocated while reserved stood at its peak */
    uint64_t segments_allocated; /* cudaMalloc calls that succeeded */
    uint64_t last_segment_size;  /* the size of the latest one */
};
void cmt_amodel_stats(const struct cmt_amodel *m, struct cmt_astats *out);

#endif
