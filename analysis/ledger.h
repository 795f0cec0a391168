/*
 * ledger.h: why the device shows more than the program's allocator says. For each device of each traced
 * process, at every sample (CUMEMTRACE_SAMPLE_MS) and at the fullest one: the memory used on the device
 * (total - free, as cuMemGetInfo says) split into
 *   our allocations by owner  the caching allocator (PyTorch's libc10_cuda), cuBLAS, cuBLASLt, cuDNN, NCCL,
 *                             user code (by module): the first of those libraries met in the allocating
 *                             stack, innermost first; otherwise the innermost module outside CUDA's own
 *   pool reserves             stream-ordered pools' reserved - used, the graph memory pool's reserved
 *   the CUDA context          used - all of the above - other processes, at the sample where that is least
 *                             (a moment when nothing else was on the device)
 *   other processes           what NVML says the device's other processes hold (0 when NVML cannot say)
 *   unattributed              the rest, shown as such: never folded into another part
 * so that the parts add up to used exactly. Where an allocator history was imported (run --torch), each
 * point also carries PyTorch's own reserved count then (torch_reserved), a cross-check of the caching
 * allocator part.
 *
 * Runs in the `cumemtrace` command after the one pass; reads sample events and stacks' modules; never
 * writes. Builders return 0 or -1 with a one-line reason; renderers only format.
 */
#ifndef CMT_LEDGER_H
#define CMT_LEDGER_H

#include "analysis.h"

enum cmt_owner { CMT_OWN_TORCH, CMT_OWN_CUBLAS, CMT_OWN_CUBLASLT, CMT_OWN_CUDNN, CMT_OWN_NCCL, CMT_OWN_USER, CMT_NOWNERS };
extern const char *const cmt_owner_names[CMT_NOWNERS];
extern const char *const cmt_owner_keys[CMT_NOWNERS];

struct cmt_ledger_point {
    int64_t seq, ts;
    int64_t used, total;
    int is_sample;                /* a sample (else a failed acquire's note of cuMemGetInfo) */
    int has_nvml;                 /* NVML answered: other is what it said */
    int64_t other;                /* other processes' bytes (NVML) */
    int64_t owners[CMT_NOWNERS];  /* our live device memory by owner */
    int64_t pool_reserve, graph_pool;
    int64_t context, unattributed; /* set once the device's context is known */
    int has_torch;                /* an imported allocator history covers this moment */
    int64_t torch_reserved;       /* PyTorch's own reserved bytes then (alloc_trace): a cross-check of the
                                   * caching allocator part, not a part of its own */
};

struct cmt_ledger_module {
    char *module;
    int64_t bytes;
};

struct cmt_ledger_dev {
    int trace, dev;               /* the trace and its devs[] slot */
    struct cmt_ledger_point *p;   /* in seq order */
    size_t np, pcap;
    int peak;                     /* index of the point with the most used; -1 if none */
    int64_t context;
    int has_samples;              /* some point is a sample: the context is measured (else 0, unknown) */
    struct cmt_ledger_point own_peak; /* at the peak of this process's own device memory here (seq = the
                                       * pass's device peak): ours exact; reserves, context and other
                                       * processes as last sampled; used = their sum (not measured) */
    int has_own_peak;
    struct cmt_ledger_module *user_modules; /* user code at the peak, by module, largest first */
    size_t nmods;
};

struct cmt_ledger {
    struct cmt_ledger_dev *d;
    size_t nd, dcap;
};

int cmt_ledger_build(struct cmt_ledger *l, struct cmt_set *s, char *err, size_t errlen);
/* The bytes of a point that the process's own allocations and reserves account for (owners, pools). */
int64_t cmt_ledger_known(const struct cmt_ledger_point *p);
void cmt_ledger_free(struct cmt_ledger *l);
/* render_ledger.c */
void cmt_ledger_text(struct sbuf *b, const struct cmt_ledger *l, const struct cmt_set *s);
/* The JSON key "ledger", preceded by a comma. */
void cmt_ledger_json(struct sbuf *b, const struct cmt_ledger *l, const struct cmt_set *s, size_t each_end);

#endif
