/*
 * simcuda_capture.c: stream capture into graphs (cuStreamBeginCapture ... cuStreamEndCapture), the capture
 * queries (cuStreamIsCapturing, cuStreamGetCaptureInfo), the thread's capture interaction mode
 * (cuThreadExchangeStreamCaptureMode), and the checks the other sources make against a capture in progress.
 *
 * Runs on application threads under sim.lock, but for the thread-local interaction mode. Semantics kept
 * (the real driver's, as cuda.h documents them), and simplifications:
 *   - a created stream begins a capture (the legacy and per-thread default streams cannot:
 *     CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED); it gets an id (1, 2, ...) and a new graph.
 *   - work queued into a capturing stream (kernels, async copies and memsets, host functions) becomes a
 *     node of the capture's graph and does not run: no data moves, no host function is called. An event
 *     recorded in it belongs to the capture; another stream that waits for that event joins the capture.
 *     cuStreamAddCallback into a capturing stream is illegal (CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED).
 *   - the capture ends on the stream that began it (elsewhere: CUDA_ERROR_STREAM_CAPTURE_UNMATCHED), from
 *     the thread that began it for a thread-local or global capture (else ..._WRONG_THREAD); every stream
 *     that joined leaves it then (the real driver insists they were joined back first: not checked).
 *   - "potentially unsafe" calls (cuMemAlloc, cuMemFree, cuCtxSynchronize) are refused with
 *     CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, and the captures concerned invalidated, when the calling
 *     thread's mode is not relaxed and it has a non-relaxed capture of its own, or its mode is global and
 *     another thread has a global capture. Synchronizing or querying a capturing stream is refused the
 *     same way. Work queued into the legacy stream while a blocking stream of the same context captures
 *     invalidates that capture (CUDA_ERROR_STREAM_CAPTURE_IMPLICIT). An invalidated capture refuses more
 *     work (CUDA_ERROR_STREAM_CAPTURE_INVALIDATED) and its end returns that error and no graph.
 *   - dependencies between nodes are not kept (a captured graph is a list of nodes), and
 *     cuStreamUpdateCaptureDependencies only checks its stream. The graph, its instantiation and its
 *     launches (which run nothing but memory nodes) are simcuda_graph.c's.
 *   - not simulated: cuMemAllocAsync/cuMemFreeAsync into a capturing stream allocate and free at once from
 *     the stream-ordered pool (the real driver adds memory nodes); copies and memsets that take no stream
 *     (cuMemcpyHtoD, cuMemsetD8...) run and break no capture; cuEventQuery/cuEventSynchronize of an event
 *     recorded in a capture succeed; cuStreamBeginCaptureToGraph is a stub.
 */
#include "simcuda_driver.h"

#include <stdlib.h>

struct sim_capture {
    uint64_t id;
    CUgraph graph;
    CUstream origin;
    CUstreamCaptureMode mode;
    pthread_t thread;
    int invalidated;
    struct sim_capture *next;
};
static struct sim_capture *captures;
static uint64_t last_id;

/* The calling thread's interaction mode (cuThreadExchangeStreamCaptureMode). */
static __thread CUstreamCaptureMode thread_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;

static int is_default_stream(CUstream s)
{
    return s == NULL || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD;
}

/* Lock held. The live capture S takes part in, or NULL. */
static struct sim_capture *capture_of(CUstream s)
{
    if (is_default_stream(s))
        return NULL;
    for (struct sim_capture *c = captures; c; c = c->next)
        if (c == s->capture)
            return c;
    return NULL;
}

/* Lock held. */
static void capture_end(struct sim_capture *c)
{
    for (struct CUstream_st *s = sim.streams; s; s = s->next)
        if (s->capture == c)
            s->capture = NULL;
    for (struct sim_capture **pp = &captures; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    free(c);
}

static CUresult begin_capture(CUstream s, CUstreamCaptureMode mode)
{
    if (mode != CU_STREAM_CAPTURE_MODE_GLOBAL && mode != CU_STREAM_CAPTURE_MODE_THREAD_LOCAL &&
        mode != CU_STREAM_CAPTURE_MODE_RELAXED)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUcontext ctx = NULL;
    CUresult rc = sim_stream_ctx(s, &ctx);
    if (rc == CUDA_SUCCESS && is_default_stream(s))
        rc = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    if (rc == CUDA_SUCCESS && capture_of(s))
        rc = CUDA_ERROR_ILLEGAL_STATE;
    struct sim_capture *c = NULL;
    if (rc == CUDA_SUCCESS && !(c = calloc(1, sizeof *c)))
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    if (rc == CUDA_SUCCESS && (rc = sim_graph_new(&c->graph)) != CUDA_SUCCESS)
        free(c);
    if (rc == CUDA_SUCCESS) {
        *c = (struct sim_capture){.id = ++last_id, .graph = c->graph, .origin = s, .mode = mode,
                                  .thread = pthread_self(), .next = captures};
        captures = c;
        s->capture = c;
    }
    sim_unlock();
    return rc;
}

CUresult cuStreamBeginCapture(CUstream hStream)
{
    SIM_ENTER();
    return begin_capture(hStream, CU_STREAM_CAPTURE_MODE_GLOBAL);
}

CUresult cuStreamBeginCapture_ptsz(CUstream hStream)
{
    SIM_ENTER();
    return begin_capture(sim_per_thread(hStream), CU_STREAM_CAPTURE_MODE_GLOBAL);
}

CUresult cuStreamBeginCapture_v2(CUstream hStream, CUstreamCaptureMode mode)
{
    SIM_ENTER();
    return begin_capture(hStream, mode);
}

CUresult cuStreamBeginCapture_v2_ptsz(CUstream hStream, CUstreamCaptureMode mode)
{
    SIM_ENTER();
    return begin_capture(sim_per_thread(hStream), mode);
}

static CUresult end_capture(CUstream s, CUgraph *out)
{
    if (!out)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUresult rc = sim_stream_ctx(s, NULL);
    struct sim_capture *c = rc == CUDA_SUCCESS ? capture_of(s) : NULL;
    if (rc == CUDA_SUCCESS && !c)
        rc = CUDA_ERROR_ILLEGAL_STATE;
    else if (rc == CUDA_SUCCESS && c->origin != s)
        rc = CUDA_ERROR_STREAM_CAPTURE_UNMATCHED;
    else if (rc == CUDA_SUCCESS && c->mode != CU_STREAM_CAPTURE_MODE_RELAXED &&
             !pthread_equal(c->thread, pthread_self()))
        rc = CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD;
    if (rc == CUDA_SUCCESS) {
        *out = NULL;
        if (c->invalidated) {
            sim_graph_free(c->graph);
            rc = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
        } else {
            *out = c->graph;
        }
        capture_end(c);
    }
    sim_unlock();
    return rc;
}

CUresult cuStreamEndCapture(CUstream hStream, CUgraph *phGraph)
{
    SIM_ENTER();
    return end_capture(hStream, phGraph);
}

CUresult cuStreamEndCapture_ptsz(CUstream hStream, CUgraph *phGraph)
{
    SIM_ENTER();
    return end_capture(sim_per_thread(hStream), phGraph);
}

static CUresult capture_info(CUstream s, CUstreamCaptureStatus *status, cuuint64_t *id, CUgraph *graph,
                             const CUgraphNode **deps, const CUgraphEdgeData **edges, size_t *ndeps)
{
    if (!status)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUresult rc = sim_stream_ctx(s, NULL);
    struct sim_capture *c = rc == CUDA_SUCCESS ? capture_of(s) : NULL;
    if (rc == CUDA_SUCCESS) {
        *status = !c ? CU_STREAM_CAPTURE_STATUS_NONE
                  : c->invalidated ? CU_STREAM_CAPTURE_STATUS_INVALIDATED : CU_STREAM_CAPTURE_STATUS_ACTIVE;
        if (id)
            *id = c ? c->id : 0;
        if (graph)
            *graph = c ? c->graph : NULL;
        if (deps)
            *deps = NULL;
        if (edges)
            *edges = NULL;
        if (ndeps)
            *ndeps = 0;
    }
    sim_unlock();
    return rc;
}

CUresult cuStreamIsCapturing(CUstream hStream, CUstreamCaptureStatus *captureStatus)
{
    SIM_ENTER();
    return capture_info(hStream, captureStatus, NULL, NULL, NULL, NULL, NULL);
}

CUresult cuStreamIsCapturing_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus)
{
    SIM_ENTER();
    return capture_info(sim_per_thread(hStream), captureStatus, NULL, NULL, NULL, NULL, NULL);
}

CUresult cuStreamGetCaptureInfo(CUstream hStream, CUstreamCaptureStatus *captureStatus_out, cuuint64_t *id_out)
{
    SIM_ENTER();
    return capture_info(hStream, captureStatus_out, id_out, NULL, NULL, NULL, NULL);
}

CUresult cuStreamGetCaptureInfo_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                     cuuint64_t *id_out)
{
    SIM_ENTER();
    return capture_info(sim_per_thread(hStream), captureStatus_out, id_out, NULL, NULL, NULL, NULL);
}

CUresult cuStreamGetCaptureInfo_v2(CUstream hStream, CUstreamCaptureStatus *captureStatus_out, cuuint64_t *id_out,
                                   CUgraph *graph_out, const CUgraphNode **dependencies_out,
                                   size_t *numDependencies_out)
{
    SIM_ENTER();
    return capture_info(hStream, captureStatus_out, id_out, graph_out, dependencies_out, NULL, numDependencies_out);
}

CUresult cuStreamGetCaptureInfo_v2_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                        cuuint64_t *id_out, CUgraph *graph_out,
                                        const CUgraphNode **dependencies_out, size_t *numDependencies_out)
{
    SIM_ENTER();
    return capture_info(sim_per_thread(hStream), captureStatus_out, id_out, graph_out,
                        dependencies_out, NULL, numDependencies_out);
}

CUresult cuStreamGetCaptureInfo_v3(CUstream hStream, CUstreamCaptureStatus *captureStatus_out, cuuint64_t *id_out,
                                   CUgraph *graph_out, const CUgraphNode **dependencies_out,
                                   const CUgraphEdgeData **edgeData_out, size_t *numDependencies_out)
{
    SIM_ENTER();
    return capture_info(hStream, captureStatus_out, id_out, graph_out, dependencies_out, edgeData_out,
                        numDependencies_out);
}

CUresult cuStreamGetCaptureInfo_v3_ptsz(CUstream hStream, CUstreamCaptureStatus *captureStatus_out,
                                        cuuint64_t *id_out, CUgraph *graph_out,
                                        const CUgraphNode **dependencies_out, const CUgraphEdgeData **edgeData_out,
                                        size_t *numDependencies_out)
{
    SIM_ENTER();
    return capture_info(sim_per_thread(hStream), captureStatus_out, id_out, graph_out,
                        dependencies_out, edgeData_out, numDependencies_out);
}

/* Dependencies are not kept: the stream must be capturing, nothing else changes. */
static CUresult update_dependencies(CUstream s, unsigned int flags)
{
    if (flags != CU_STREAM_ADD_CAPTURE_DEPENDENCIES && flags != CU_STREAM_SET_CAPTURE_DEPENDENCIES)
        return CUDA_ERROR_INVALID_VALUE;
    sim_lock();
    CUresult rc = sim_stream_ctx(s, NULL);
    if (rc == CUDA_SUCCESS && !capture_of(s))
        rc = CUDA_ERROR_ILLEGAL_STATE;
    sim_unlock();
    return rc;
}

CUresult cuStreamUpdateCaptureDependencies(CUstream hStream, CUgraphNode *dependencies, size_t numDependencies,
                                           unsigned int flags)
{
    SIM_ENTER();
    return update_dependencies(hStream, flags);
}

CUresult cuStreamUpdateCaptureDependencies_ptsz(CUstream hStream, CUgraphNode *dependencies,
                                                size_t numDependencies, unsigned int flags)
{
    SIM_ENTER();
    return update_dependencies(sim_per_thread(hStream), flags);
}

CUresult cuStreamUpdateCaptureDependencies_v2(CUstream hStream, CUgraphNode *dependencies,
                                              const CUgraphEdgeData *dependencyData, size_t numDependencies,
                                              unsigned int flags)
{
    SIM_ENTER();
    return update_dependencies(hStream, flags);
}

CUresult cuStreamUpdateCaptureDependencies_v2_ptsz(CUstream hStream, CUgraphNode *dependencies,
                                                   const CUgraphEdgeData *dependencyData, size_t numDependencies,
                                                   unsigned int flags)
{
    SIM_ENTER();
    return update_dependencies(sim_per_thread(hStream), flags);
}

CUresult cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode *mode)
{
    SIM_ENTER();
    if (!mode || (*mode != CU_STREAM_CAPTURE_MODE_GLOBAL && *mode != CU_STREAM_CAPTURE_MODE_THREAD_LOCAL &&
                  *mode != CU_STREAM_CAPTURE_MODE_RELAXED))
        return CUDA_ERROR_INVALID_VALUE;
    CUstreamCaptureMode old = thread_mode;
    thread_mode = *mode;
    *mode = old;
    return CUDA_SUCCESS;
}

/* ---- the other sources' checks (lock held) ---------------------------------------------------------- */

CUresult sim_capture_op(CUstream s, CUgraphNodeType type, int *captured)
{
    *captured = 0;
    if (s == NULL || s == CU_STREAM_LEGACY) {
        /* The legacy stream synchronizes with every blocking stream of its context. */
        CUcontext ctx = NULL;
        if (sim_stream_ctx(s, &ctx) != CUDA_SUCCESS)
            return CUDA_SUCCESS;
        CUresult rc = CUDA_SUCCESS;
        for (struct sim_capture *c = captures; c; c = c->next)
            if (c->origin->ctx == ctx && !(c->origin->flags & CU_STREAM_NON_BLOCKING)) {
                c->invalidated = 1;
                rc = CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
            }
        return rc;
    }
    struct sim_capture *c = capture_of(s);
    if (!c)
        return CUDA_SUCCESS;
    if (c->invalidated)
        return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    *captured = 1;
    return type == SIM_NO_NODE ? CUDA_SUCCESS : sim_graph_add_op(c->graph, type);
}

CUresult sim_capture_refuse(CUstream s)
{
    struct sim_capture *c = capture_of(s);
    if (!c)
        return CUDA_SUCCESS;
    c->invalidated = 1;
    return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
}

CUresult sim_capture_unsafe(void)
{
    if (thread_mode == CU_STREAM_CAPTURE_MODE_RELAXED)
        return CUDA_SUCCESS;
    CUresult rc = CUDA_SUCCESS;
    for (struct sim_capture *c = captures; c; c = c->next) {
        int mine = pthread_equal(c->thread, pthread_self());
        if ((mine && c->mode != CU_STREAM_CAPTURE_MODE_RELAXED) ||
            (!mine && c->mode == CU_STREAM_CAPTURE_MODE_GLOBAL && thread_mode == CU_STREAM_CAPTURE_MODE_GLOBAL)) {
            c->invalidated = 1;
            rc = CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
        }
    }
    return rc;
}

uint64_t sim_capture_id(CUstream s)
{
    struct sim_capture *c = capture_of(s);
    return c ? c->id : 0;
}

void sim_capture_join(CUstream s, uint64_t id)
{
    if (!id || is_default_stream(s) || capture_of(s))
        return;
    for (struct sim_capture *c = captures; c; c = c->next)
        if (c->id == id)
            s->capture = c;
}

void sim_capture_stream_destroyed(CUstream s)
{
    struct sim_capture *c = capture_of(s);
    if (!c)
        return;
    if (c->origin != s) {
        s->capture = NULL;
        return;
    }
    sim_graph_free(c->graph);
    capture_end(c);
}
