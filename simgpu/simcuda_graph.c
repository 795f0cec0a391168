/*
 * simcuda_graph.c: the simulated driver's other memory sources: CUDA arrays (plain, 3D, mipmapped), graphs
 * with memory nodes and the device's graph memory pool, and host memory registration.
 *
 * Runs on application threads under sim.lock (taken by each entry point). Accounting, as simcuda_mem.c's:
 *   arrays        width x max(height,1) x max(depth,1) x channels x bytes per channel, summed over mipmap
 *                 levels (each halves every dimension but a layered array's depth, never below 1), rounded
 *                 up to 2 MiB pages, charged on the current context's device until destroyed.
 *   graph memory  cuGraphAddMemAllocNode gives the node an address (device VA, nothing charged). A launch
 *                 runs the graph's memory nodes in the order they were added: an allocation maps its pages
 *                 (used += pages), a free unmaps them. The device's graph pool reserves the highest used
 *                 it has needed (charged; OUT_OF_MEMORY at launch if it cannot grow) and keeps it until
 *                 cuDeviceGraphMemTrim gives back what is not used. Memory a graph allocates without
 *                 freeing stays used until a later graph frees it. cuDeviceGetGraphMemAttribute reports
 *                 those figures in bytes (pages x 2 MiB).
 *   host register ranges of the program's own memory; no device capacity.
 * Other nodes (kernels, copies, memsets, host functions, child graphs) come only from stream capture
 * (simcuda_capture.c): they are listed (cuGraphGetNodes, cuGraphNodeGetType) and do nothing at launch. An
 * executable graph holds its graph (a reference): cuGraphDestroy after cuGraphInstantiate, as PyTorch
 * does, frees it with the last executable; nodes added after instantiation are seen by its launches (the
 * real driver copies the graph). cuGraphUpload checks its arguments and does nothing.
 */
#include "simcuda_driver.h"

#include <stdlib.h>
#include <string.h>

#include "simcuda_probe.h"

static uint64_t pages_of(uint64_t bytes)
{
    return (bytes + SIM_PAGE - 1) / SIM_PAGE;
}

/* ---- arrays -------------------------------------------------------------------------------------- */

struct sim_array {
    int dev;
    uint64_t pages;
    struct sim_array *next;
};
static struct sim_array *arrays;

static uint64_t elem_bytes(CUarray_format f)
{
    switch (f) {
    case CU_AD_FORMAT_UNSIGNED_INT8:
    case CU_AD_FORMAT_SIGNED_INT8: return 1;
    case CU_AD_FORMAT_UNSIGNED_INT16:
    case CU_AD_FORMAT_SIGNED_INT16:
    case CU_AD_FORMAT_HALF: return 2;
    case CU_AD_FORMAT_UNSIGNED_INT32:
    case CU_AD_FORMAT_SIGNED_INT32:
    case CU_AD_FORMAT_FLOAT: return 4;
    default: return 0;
    }
}

/* Lock held. */
static CUresult array_new(void **out, CUarray_format format, unsigned channels, uint64_t w, uint64_t h, uint64_t d,
                          unsigned levels, unsigned flags)
{
    uint64_t elem = elem_bytes(format);
    if (!out || !elem || (channels != 1 && channels != 2 && channels != 4) || w == 0 || levels == 0 || levels > 32)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t bytes = 0;
    for (unsigned l = 0; l < levels; l++) {
        uint64_t lw = w >> l, lh = h >> l, ld = (flags & CUDA_ARRAY3D_LAYERED) ? d : d >> l;
        bytes += (lw ? lw : 1) * (lh ? lh : 1) * (ld ? ld : 1) * channels * elem;
    }
    CUcontext ctx;
    CUresult rc = sim_current_ctx(&ctx);
    if (rc != CUDA_SUCCESS)
        return rc;
    struct sim_array *a = calloc(1, sizeof *a);
    if (!a)
        return CUDA_ERROR_OUT_OF_MEMORY;
    a->dev = ctx->dev;
    a->pages = pages_of(bytes);
    rc = sim_charge_pages(a->dev, a->pages);
    if (rc != CUDA_SUCCESS) {
        free(a);
        return rc;
    }
    a->next = arrays;
    arrays = a;
    *out = a;
    return CUDA_SUCCESS;
}

static CUresult array_destroy(void *h)
{
    for (struct sim_array **p = &arrays; *p; p = &(*p)->next)
        if (*p == h) {
            struct sim_array *a = *p;
            *p = a->next;
            sim_uncharge_pages(a->dev, a->pages);
            free(a);
            return CUDA_SUCCESS;
        }
    return CUDA_ERROR_INVALID_HANDLE;
}

#define LOCKED(expr)                                                                                    \
    do {                                                                                                \
        sim_lock();                                                                                     \
        CUresult rc_ = sim_check_init();                                                                \
        if (rc_ == CUDA_SUCCESS)                                                                        \
            rc_ = (expr);                                                                               \
        sim_unlock();                                                                                   \
        return rc_;                                                                                     \
    } while (0)

CUresult cuArrayCreate_v2(CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR *d)
{
    SIM_ENTER();
    if (!d)
        return CUDA_ERROR_INVALID_VALUE;
    LOCKED(array_new((void **)pHandle, d->Format, d->NumChannels, d->Width, d->Height, 0, 1, 0));
}

CUresult cuArrayCreate(CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR_v1 *d)
{
    SIM_ENTER();
    if (!d)
        return CUDA_ERROR_INVALID_VALUE;
    LOCKED(array_new((void **)pHandle, d->Format, d->NumChannels, d->Width, d->Height, 0, 1, 0));
}

CUresult cuArray3DCreate_v2(CUarray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *d)
{
    SIM_ENTER();
    if (!d)
        return CUDA_ERROR_INVALID_VALUE;
    LOCKED(array_new((void **)pHandle, d->Format, d->NumChannels, d->Width, d->Height, d->Depth, 1, d->Flags));
}

CUresult cuArray3DCreate(CUarray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR_v1 *d)
{
    SIM_ENTER();
    if (!d)
        return CUDA_ERROR_INVALID_VALUE;
    LOCKED(array_new((void **)pHandle, d->Format, d->NumChannels, d->Width, d->Height, d->Depth, 1, d->Flags));
}

CUresult cuMipmappedArrayCreate(CUmipmappedArray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *d, unsigned int numMipmapLevels)
{
    SIM_ENTER();
    if (!d)
        return CUDA_ERROR_INVALID_VALUE;
    LOCKED(array_new((void **)pHandle, d->Format, d->NumChannels, d->Width, d->Height, d->Depth, numMipmapLevels,
                     d->Flags));
}

CUresult cuArrayDestroy(CUarray hArray)
{
    SIM_ENTER();
    LOCKED(array_destroy(hArray));
}

CUresult cuMipmappedArrayDestroy(CUmipmappedArray hMipmappedArray)
{
    SIM_ENTER();
    LOCKED(array_destroy(hMipmappedArray));
}

/* ---- host registration --------------------------------------------------------------------------- */

struct reg {
    uintptr_t p;
    size_t size;
    struct reg *next;
};
static struct reg *regs;

static CUresult host_register(void *p, size_t size)
{
    if (!p || size == 0)
        return CUDA_ERROR_INVALID_VALUE;
    uintptr_t a = (uintptr_t)p;
    for (struct reg *r = regs; r; r = r->next)
        if (a < r->p + r->size && r->p < a + size)
            return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
    struct reg *r = malloc(sizeof *r);
    if (!r)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *r = (struct reg){.p = a, .size = size, .next = regs};
    regs = r;
    return CUDA_SUCCESS;
}

CUresult cuMemHostRegister_v2(void *p, size_t bytesize, unsigned int Flags)
{
    SIM_ENTER();
    LOCKED(host_register(p, bytesize));
}

CUresult cuMemHostRegister(void *p, size_t bytesize, unsigned int Flags)
{
    SIM_ENTER();
    LOCKED(host_register(p, bytesize));
}

static CUresult host_unregister(void *p)
{
    for (struct reg **r = &regs; *r; r = &(*r)->next)
        if ((*r)->p == (uintptr_t)p) {
            struct reg *x = *r;
            *r = x->next;
            free(x);
            return CUDA_SUCCESS;
        }
    return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
}

CUresult cuMemHostUnregister(void *p)
{
    SIM_ENTER();
    LOCKED(host_unregister(p));
}

/* ---- graphs and graph memory --------------------------------------------------------------------- */

struct CUgraphNode_st {
    CUgraphNodeType type; /* MEM_ALLOC, MEM_FREE, or a captured node that does nothing (kernel...) */
    int dev;
    uint64_t dptr, pages;
};

struct CUgraph_st {
    struct CUgraphNode_st **nodes;
    int n, cap;
    int valid;  /* not destroyed */
    int execs;  /* executable graphs made from it, alive */
};

struct CUgraphExec_st {
    struct CUgraph_st *graph; /* memory nodes are read from the graph at launch (not copied: simple) */
    int valid;
};

/* A graph allocation whose pages are mapped (launched, not yet freed by a free node). */
struct gmem {
    int dev;
    uint64_t dptr, pages;
    struct gmem *next;
};
static struct gmem *gmem_live;
static uint64_t g_used[SIM_MAX_DEVICES], g_used_high[SIM_MAX_DEVICES];
static uint64_t g_reserved[SIM_MAX_DEVICES], g_reserved_high[SIM_MAX_DEVICES];

CUresult sim_graph_new(CUgraph *out)
{
    struct CUgraph_st *g = calloc(1, sizeof *g);
    if (!g)
        return CUDA_ERROR_OUT_OF_MEMORY;
    g->valid = 1;
    *out = g;
    return CUDA_SUCCESS;
}

CUresult cuGraphCreate(CUgraph *phGraph, unsigned int flags)
{
    SIM_ENTER();
    if (!phGraph || flags)
        return CUDA_ERROR_INVALID_VALUE;
    return sim_graph_new(phGraph);
}

static CUresult add_node(struct CUgraph_st *g, struct CUgraphNode_st *proto, CUgraphNode *out)
{
    if (!g || !g->valid || !out)
        return CUDA_ERROR_INVALID_VALUE;
    if (g->n == g->cap) {
        int cap = g->cap ? g->cap * 2 : 8;
        void *p = realloc(g->nodes, (size_t)cap * sizeof *g->nodes);
        if (!p)
            return CUDA_ERROR_OUT_OF_MEMORY;
        g->nodes = p;
        g->cap = cap;
    }
    struct CUgraphNode_st *n = malloc(sizeof *n);
    if (!n)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *n = *proto;
    g->nodes[g->n++] = n;
    *out = n;
    return CUDA_SUCCESS;
}

static CUresult add_alloc_node(CUgraphNode *out, CUgraph g, CUDA_MEM_ALLOC_NODE_PARAMS *np)
{
    if (!np || np->bytesize == 0 || np->poolProps.location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
        np->poolProps.location.id < 0 || np->poolProps.location.id >= sim.ndev)
        return CUDA_ERROR_INVALID_VALUE;
    int dev = np->poolProps.location.id;
    struct CUgraphNode_st proto = {.type = CU_GRAPH_NODE_TYPE_MEM_ALLOC, .dev = dev, .pages = pages_of(np->bytesize)};
    if (sim_va_alloc(&sim.dev[dev].va, proto.pages * SIM_PAGE, SIM_PAGE, &proto.dptr) != 0)
        return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = add_node(g, &proto, out);
    if (rc != CUDA_SUCCESS)
        sim_va_free(&sim.dev[dev].va, proto.dptr);
    else
        np->dptr = proto.dptr;
    return rc;
}

CUresult sim_graph_add_op(CUgraph g, CUgraphNodeType type)
{
    struct CUgraphNode_st proto = {.type = type};
    CUgraphNode n;
    return add_node(g, &proto, &n);
}

static CUresult get_nodes(CUgraph g, CUgraphNode *nodes, size_t *count)
{
    if (!g || !g->valid || !count)
        return CUDA_ERROR_INVALID_VALUE;
    /* With room for more than the graph has: the rest set to NULL, *count to the nodes returned. */
    for (size_t i = 0; nodes && i < *count; i++)
        nodes[i] = i < (size_t)g->n ? g->nodes[i] : NULL;
    if (!nodes || *count > (size_t)g->n)
        *count = (size_t)g->n;
    return CUDA_SUCCESS;
}

CUresult cuGraphGetNodes(CUgraph hGraph, CUgraphNode *nodes, size_t *numNodes)
{
    SIM_ENTER();
    LOCKED(get_nodes(hGraph, nodes, numNodes));
}

CUresult cuGraphNodeGetType(CUgraphNode hNode, CUgraphNodeType *type)
{
    SIM_ENTER();
    if (!hNode || !type)
        return CUDA_ERROR_INVALID_VALUE;
    *type = hNode->type;
    return CUDA_SUCCESS;
}

CUresult cuGraphAddMemAllocNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                size_t numDependencies, CUDA_MEM_ALLOC_NODE_PARAMS *nodeParams)
{
    SIM_ENTER();
    LOCKED(add_alloc_node(phGraphNode, hGraph, nodeParams));
}

/* Lock held. The allocation node of any graph that gave out dptr. */
static struct CUgraphNode_st *alloc_node_of(struct CUgraph_st *g, uint64_t dptr)
{
    for (int i = 0; g && i < g->n; i++)
        if (g->nodes[i]->type == CU_GRAPH_NODE_TYPE_MEM_ALLOC && g->nodes[i]->dptr == dptr)
            return g->nodes[i];
    return NULL;
}

static CUresult add_free_node(CUgraphNode *out, CUgraph g, CUdeviceptr dptr)
{
    struct CUgraphNode_st *a = alloc_node_of(g, dptr);
    struct gmem *m = NULL;
    for (m = gmem_live; !a && m && m->dptr != dptr; m = m->next)
        ;
    if (!a && !m)
        return CUDA_ERROR_INVALID_VALUE;
    struct CUgraphNode_st proto = {.type = CU_GRAPH_NODE_TYPE_MEM_FREE, .dev = a ? a->dev : m->dev, .dptr = dptr,
                                   .pages = a ? a->pages : m->pages};
    return add_node(g, &proto, out);
}

CUresult cuGraphAddMemFreeNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                               size_t numDependencies, CUdeviceptr dptr)
{
    SIM_ENTER();
    LOCKED(add_free_node(phGraphNode, hGraph, dptr));
}

static CUresult instantiate(CUgraphExec *out, CUgraph g)
{
    if (!out || !g || !g->valid)
        return CUDA_ERROR_INVALID_VALUE;
    struct CUgraphExec_st *x = calloc(1, sizeof *x);
    if (!x)
        return CUDA_ERROR_OUT_OF_MEMORY;
    x->graph = g;
    x->valid = 1;
    g->execs++;
    *out = x;
    return CUDA_SUCCESS;
}

CUresult cuGraphInstantiateWithFlags(CUgraphExec *phGraphExec, CUgraph hGraph, unsigned long long flags)
{
    SIM_ENTER();
    LOCKED(instantiate(phGraphExec, hGraph));
}

/* cuGraphInstantiate (_v2: the same ABI), CUDA 11's: error node and log stay untouched on success. */
CUresult cuGraphInstantiate(CUgraphExec *phGraphExec, CUgraph hGraph, CUgraphNode *phErrorNode, char *logBuffer,
                            size_t bufferSize)
{
    SIM_ENTER();
    LOCKED(instantiate(phGraphExec, hGraph));
}

CUresult cuGraphInstantiate_v2(CUgraphExec *phGraphExec, CUgraph hGraph, CUgraphNode *phErrorNode,
                               char *logBuffer, size_t bufferSize)
{
    SIM_ENTER();
    LOCKED(instantiate(phGraphExec, hGraph));
}

static CUresult instantiate_params(CUgraphExec *out, CUgraph g, CUDA_GRAPH_INSTANTIATE_PARAMS *p)
{
    if (!p)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = instantiate(out, g);
    p->result_out = rc == CUDA_SUCCESS ? CUDA_GRAPH_INSTANTIATE_SUCCESS : CUDA_GRAPH_INSTANTIATE_ERROR;
    p->hErrNode_out = NULL;
    return rc;
}

CUresult cuGraphInstantiateWithParams(CUgraphExec *phGraphExec, CUgraph hGraph,
                                      CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams)
{
    SIM_ENTER();
    LOCKED(instantiate_params(phGraphExec, hGraph, instantiateParams));
}

CUresult cuGraphInstantiateWithParams_ptsz(CUgraphExec *phGraphExec, CUgraph hGraph,
                                           CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams)
{
    SIM_ENTER();
    LOCKED(instantiate_params(phGraphExec, hGraph, instantiateParams));
}

static CUresult upload(CUgraphExec x, CUstream s)
{
    if (!x || !x->valid)
        return CUDA_ERROR_INVALID_VALUE;
    return sim_stream_ctx(s, NULL);
}

CUresult cuGraphUpload(CUgraphExec hGraphExec, CUstream hStream)
{
    SIM_ENTER();
    LOCKED(upload(hGraphExec, hStream));
}

CUresult cuGraphUpload_ptsz(CUgraphExec hGraphExec, CUstream hStream)
{
    SIM_ENTER();
    LOCKED(upload(hGraphExec, sim_per_thread(hStream)));
}

/* Lock held. Runs the memory nodes: maps and unmaps graph allocations, growing the pool as needed. */
static CUresult launch(CUgraphExec x, CUstream s)
{
    if (!x || !x->valid || !x->graph)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = sim_stream_ctx(s, NULL);
    int captured = 0; /* launched into a capturing stream: a child graph node, nothing runs */
    if (rc == CUDA_SUCCESS)
        rc = sim_capture_op(s, CU_GRAPH_NODE_TYPE_GRAPH, &captured);
    if (rc != CUDA_SUCCESS || captured)
        return rc;
    struct CUgraph_st *g = x->graph;
    uint64_t used[SIM_MAX_DEVICES], high[SIM_MAX_DEVICES];
    memcpy(used, g_used, sizeof used);
    memcpy(high, g_used, sizeof high);
    /* First the figures, then the charge: a launch that cannot get its memory changes nothing. */
    for (int i = 0; i < g->n; i++) {
        struct CUgraphNode_st *n = g->nodes[i];
        if (n->type == CU_GRAPH_NODE_TYPE_MEM_ALLOC) {
            used[n->dev] += n->pages;
            if (used[n->dev] > high[n->dev])
                high[n->dev] = used[n->dev];
        } else if (n->type == CU_GRAPH_NODE_TYPE_MEM_FREE) {
            used[n->dev] -= n->pages < used[n->dev] ? n->pages : used[n->dev];
        }
    }
    int grown = -1;
    for (int d = 0; d < sim.ndev; d++) {
        if (high[d] <= g_reserved[d])
            continue;
        if (sim_charge_pages(d, high[d] - g_reserved[d]) != CUDA_SUCCESS) {
            for (int k = 0; k <= grown; k++)
                if (high[k] > g_reserved[k])
                    sim_uncharge_pages(k, high[k] - g_reserved[k]);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        grown = d;
    }
    for (int d = 0; d < sim.ndev; d++) {
        if (high[d] > g_reserved[d])
            g_reserved[d] = high[d];
        if (g_reserved[d] > g_reserved_high[d])
            g_reserved_high[d] = g_reserved[d];
        if (high[d] > g_used_high[d])
            g_used_high[d] = high[d];
    }
    /* The allocations left mapped after the launch. */
    for (int i = 0; i < g->n; i++) {
        struct CUgraphNode_st *n = g->nodes[i];
        if (n->type == CU_GRAPH_NODE_TYPE_MEM_ALLOC) {
            struct gmem *m = malloc(sizeof *m);
            if (m) {
                *m = (struct gmem){.dev = n->dev, .dptr = n->dptr, .pages = n->pages, .next = gmem_live};
                gmem_live = m;
            }
        } else if (n->type == CU_GRAPH_NODE_TYPE_MEM_FREE) {
            for (struct gmem **p = &gmem_live; *p; p = &(*p)->next)
                if ((*p)->dptr == n->dptr) {
                    struct gmem *m = *p;
                    *p = m->next;
                    free(m);
                    break;
                }
        }
    }
    memcpy(g_used, used, sizeof used);
    return CUDA_SUCCESS;
}

CUresult cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream)
{
    SIM_ENTER();
    LOCKED(launch(hGraphExec, hStream));
}

CUresult cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream)
{
    SIM_ENTER();
    LOCKED(launch(hGraphExec, sim_per_thread(hStream)));
}

/* Lock held. Frees a graph no longer referenced. */
static void graph_release(CUgraph g)
{
    for (int i = 0; i < g->n; i++) {
        struct CUgraphNode_st *n = g->nodes[i];
        int mapped = 0;
        for (struct gmem *m = gmem_live; m; m = m->next)
            mapped |= m->dptr == n->dptr;
        /* addresses still mapped stay taken until their memory is freed */
        if (n->type == CU_GRAPH_NODE_TYPE_MEM_ALLOC && !mapped)
            sim_va_free(&sim.dev[n->dev].va, n->dptr);
        free(n);
    }
    free(g->nodes);
    free(g);
}

static CUresult exec_destroy(CUgraphExec x)
{
    if (!x || !x->valid)
        return CUDA_ERROR_INVALID_VALUE;
    x->valid = 0;
    if (--x->graph->execs == 0 && !x->graph->valid)
        graph_release(x->graph);
    free(x);
    return CUDA_SUCCESS;
}

CUresult cuGraphExecDestroy(CUgraphExec hGraphExec)
{
    SIM_ENTER();
    LOCKED(exec_destroy(hGraphExec));
}

static CUresult graph_destroy(CUgraph g)
{
    if (!g || !g->valid)
        return CUDA_ERROR_INVALID_VALUE;
    g->valid = 0;
    if (!g->execs)
        graph_release(g);
    return CUDA_SUCCESS;
}

void sim_graph_free(CUgraph g)
{
    graph_destroy(g);
}

CUresult cuGraphDestroy(CUgraph hGraph)
{
    SIM_ENTER();
    LOCKED(graph_destroy(hGraph));
}

static CUresult graph_mem_attr(CUdevice dev, CUgraphMem_attribute attr, void *value)
{
    if (dev < 0 || dev >= sim.ndev || !value)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t v;
    switch (attr) {
    case CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT: v = g_used[dev]; break;
    case CU_GRAPH_MEM_ATTR_USED_MEM_HIGH: v = g_used_high[dev]; break;
    case CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT: v = g_reserved[dev]; break;
    case CU_GRAPH_MEM_ATTR_RESERVED_MEM_HIGH: v = g_reserved_high[dev]; break;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
    *(cuuint64_t *)value = v * SIM_PAGE;
    return CUDA_SUCCESS;
}

CUresult cuDeviceGetGraphMemAttribute(CUdevice device, CUgraphMem_attribute attr, void *value)
{
    SIM_ENTER();
    LOCKED(graph_mem_attr(device, attr, value));
}

static CUresult graph_mem_trim(CUdevice dev)
{
    if (dev < 0 || dev >= sim.ndev)
        return CUDA_ERROR_INVALID_DEVICE;
    if (g_reserved[dev] > g_used[dev]) {
        sim_uncharge_pages(dev, g_reserved[dev] - g_used[dev]);
        g_reserved[dev] = g_used[dev];
    }
    return CUDA_SUCCESS;
}

CUresult cuDeviceGraphMemTrim(CUdevice device)
{
    SIM_ENTER();
    LOCKED(graph_mem_trim(device));
}
