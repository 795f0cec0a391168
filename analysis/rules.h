/*
 * rules.h: component rules: which part of a training job (parameters, gradients, optimizer state,
 * activations, KV cache, NCCL, ...) an allocation belongs to, by the first frame of its stack (Python
 * file:function or file:line, native symbol or module) that a rule matches. The shipped rules are
 * analysis/torch/rules.txt; --rules FILE gives others.
 *
 * Runs in the `cumemtrace` command; reads a rules file, never a trace.
 */
#ifndef CMT_RULES_H
#define CMT_RULES_H

#include "analysis.h"

/* Component names, lower-case words (also the timeline layers of --by component). */
#define CMT_NCOMP 11
extern const char *const cmt_comp_names[CMT_NCOMP];
enum cmt_comp {
    CMT_C_PARAMETERS, CMT_C_GRADIENTS, CMT_C_OPTIMIZER_STATE, CMT_C_ACTIVATIONS, CMT_C_TEMPORARIES,
    CMT_C_KV_CACHE, CMT_C_WORKSPACE, CMT_C_NCCL, CMT_C_CUDA_GRAPHS, CMT_C_INPUTS, CMT_C_OTHER
};

/* A rules file: lines "COMPONENT WHERE GLOB" (see analysis/torch/rules.txt). */
struct cmt_rule {
    int comp;
    char where; /* 'p' python file:function, 'l' python file:line, 'n' native symbol, 'm' module, 'a' any */
    char *glob;
};
struct cmt_rules {
    struct cmt_rule *r;
    size_t n, cap;
    char *path;
};
/* path NULL: the shipped rules. */
int cmt_rules_load(struct cmt_rules *rs, const char *path, char *err, size_t errlen);
void cmt_rules_free(struct cmt_rules *rs);
/* The component of one symbolized driver stack (innermost frame first; the first frame any rule matches
 * decides; CMT_C_OTHER when none does). */
int cmt_rules_match_stack(const struct cmt_rules *rs, const struct cmt_stack *k);
/* The same as a timeline's classifier (timeline.h): rules is a const struct cmt_rules *. */
int cmt_rules_classify(const void *rules, const struct cmt_stack *k);
/* One frame against the rules (file order, first match): a Python frame by function and file:line, a
 * native one by function and module (any may be NULL). The component, or -1. */
int cmt_rules_match_frame(const struct cmt_rules *rs, const char *pyfunc, const char *pyline, const char *native,
                          const char *module);

#endif
