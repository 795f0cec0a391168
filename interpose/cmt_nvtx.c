/*
 * cmt_nvtx.c: the NVTX injection library inside libcumemtrace.so (see cmt_nvtx.h): ranges, marks and
 * domains recorded into the queue memory events travel in, so that the trace can say in which phase of a
 * program memory was taken; and NVTX's memory extension (nvToolsExtMem.h), through which a custom
 * allocator names the heaps it carves out of driver allocations and the regions it hands out of them.
 *
 * Runs on application threads, inside the program's NVTX calls. Never blocks, never calls SQLite, never
 * starts a thread; allocates only in nvtxDomainRegisterString* (a copy of the string, kept for the
 * process's life, as NVTX promises the handle stays valid). A record that finds the queue full is counted
 * in events_lost, never waited for: a phase marker must not slow the program down. Odd input is harmless:
 * NULL attributes or messages, unknown message types, handles we never gave out, pops without pushes,
 * ends of unknown ids all become "no name" or nothing, never a crash.
 *
 * Before the first memory event there is no queue (a process that never touches CUDA must stay as it
 * was: no writer, no file). Ranges opened meanwhile wait in a fixed table (`pending`); those still open
 * when recording starts are queued then, with their own times and sequence numbers, so that the first
 * allocation made inside `step 0` is inside it. Marks and ranges that ended before recording began are
 * not kept: no memory event can fall inside them.
 *
 * Handles: a domain handle is its index in domains[] (1..CMT_NVTX_DOMAINS-1; 0, the NULL handle, is the
 * default domain); a registered string's handle is its index in strings[] plus one. A domain handle we
 * never gave out makes the call a no-op returning NVTX's error value; an unknown string handle, a range
 * without a name.
 */
#define NVTX_NO_IMPL
#include <nvtx3/nvToolsExt.h>
#include <nvtx3/nvToolsExtMem.h>

#include "cmt_nvtx.h"

#include "cmt_capture.h"
#include "cmt_runtime.h"
#include "cmt_shm.h"

#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <wchar.h>

#define CMT_NVTX_DOMAINS 128
#define CMT_NVTX_STRINGS 4096
#define CMT_NVTX_PENDING 256
#define CMT_NVTX_TLS_PENDING 64

/* One record being built: an event and its payload words. */
union rec {
    struct cmt_event ev;
    unsigned char raw[sizeof(struct cmt_event) + CMT_RING_MIN_WORDS * sizeof(uintptr_t)];
};
_Static_assert(CMT_NVTX_DOMAIN_MAX + CMT_NVTX_MESSAGE_MAX <= CMT_RING_MIN_WORDS * sizeof(uintptr_t),
               "a record's text fits a slot");

/* ---- domains and registered strings ------------------------------------------------------------- */

struct domain {
    _Atomic int ready; /* 0 free, 1 being written, 2 named */
    unsigned len;
    char name[CMT_NVTX_DOMAIN_MAX];
};
static struct domain domains[CMT_NVTX_DOMAINS];
static _Atomic unsigned ndomains = 1; /* 0 is the default domain */

static char *_Atomic strings[CMT_NVTX_STRINGS];
static _Atomic unsigned nstrings;

static _Atomic uint64_t next_range_id;

/* Copies at most max bytes of a NUL-terminated UTF-8 string, cut at a character boundary. */
static size_t copy_utf8(char *out, const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* s[n] continues a character: cut before the character it belongs to */
    }
    memcpy(out, s, n);
    return n;
}

/* A wide string (UTF-32 on Linux) as UTF-8, at most max bytes, whole characters only. */
static size_t copy_wide(char *out, const wchar_t *w, size_t max)
{
    size_t n = 0;
    for (; *w; w++) {
        uint32_t c = (uint32_t)*w;
        unsigned char b[4];
        size_t k;
        if (c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            c = '?';
        if (c < 0x80) {
            b[0] = (unsigned char)c;
            k = 1;
        } else if (c < 0x800) {
            b[0] = (unsigned char)(0xC0 | (c >> 6));
            b[1] = (unsigned char)(0x80 | (c & 0x3F));
            k = 2;
        } else if (c < 0x10000) {
            b[0] = (unsigned char)(0xE0 | (c >> 12));
            b[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
            b[2] = (unsigned char)(0x80 | (c & 0x3F));
            k = 3;
        } else {
            b[0] = (unsigned char)(0xF0 | (c >> 18));
            b[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
            b[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
            b[3] = (unsigned char)(0x80 | (c & 0x3F));
            k = 4;
        }
        if (n + k > max)
            break;
        memcpy(out + n, b, k);
        n += k;
    }
    return n;
}

/* The domain's index: 0 for NULL (the default domain), -1 for a handle we never gave out. */
static int domain_index(nvtxDomainHandle_t h)
{
    uintptr_t i = (uintptr_t)h;
    if (i == 0)
        return 0;
    if (i >= CMT_NVTX_DOMAINS || atomic_load_explicit(&domains[i].ready, memory_order_acquire) != 2)
        return -1;
    return (int)i;
}

static nvtxDomainHandle_t domain_create(const char *utf8, size_t len)
{
    /* The same name gives the same handle (two libraries naming one domain); a rare race may make two. */
    unsigned n = atomic_load(&ndomains);
    for (unsigned i = 1; i < n && i < CMT_NVTX_DOMAINS; i++)
        if (atomic_load_explicit(&domains[i].ready, memory_order_acquire) == 2 && domains[i].len == len &&
            !memcmp(domains[i].name, utf8, len))
            return (nvtxDomainHandle_t)(uintptr_t)i;
    unsigned i = atomic_fetch_add(&ndomains, 1);
    if (i >= CMT_NVTX_DOMAINS)
        return NULL; /* full: its events count as the default domain's */
    struct domain *d = &domains[i];
    atomic_store(&d->ready, 1);
    memcpy(d->name, utf8, len);
    d->len = (unsigned)len;
    atomic_store_explicit(&d->ready, 2, memory_order_release);
    return (nvtxDomainHandle_t)(uintptr_t)i;
}

static nvtxDomainHandle_t NVTX_API domain_create_a(const char *name)
{
    char buf[CMT_NVTX_DOMAIN_MAX];
    return domain_create(buf, name ? copy_utf8(buf, name, sizeof buf) : 0);
}

static nvtxDomainHandle_t NVTX_API domain_create_w(const wchar_t *name)
{
    char buf[CMT_NVTX_DOMAIN_MAX];
    return domain_create(buf, name ? copy_wide(buf, name, sizeof buf) : 0);
}

static nvtxStringHandle_t string_register(char *copy)
{
    if (!copy)
        return NULL;
    unsigned i = atomic_fetch_add(&nstrings, 1);
    if (i >= CMT_NVTX_STRINGS) {
        free(copy);
        return NULL; /* full: events naming it show no name */
    }
    atomic_store_explicit(&strings[i], copy, memory_order_release);
    return (nvtxStringHandle_t)(uintptr_t)(i + 1);
}

static nvtxStringHandle_t NVTX_API register_string_a(nvtxDomainHandle_t d, const char *s)
{
    (void)d;
    char buf[CMT_NVTX_MESSAGE_MAX + 1];
    if (!s)
        return NULL;
    size_t n = copy_utf8(buf, s, CMT_NVTX_MESSAGE_MAX);
    buf[n] = 0;
    return string_register(strdup(buf));
}

static nvtxStringHandle_t NVTX_API register_string_w(nvtxDomainHandle_t d, const wchar_t *s)
{
    (void)d;
    char buf[CMT_NVTX_MESSAGE_MAX + 1];
    if (!s)
        return NULL;
    size_t n = copy_wide(buf, s, CMT_NVTX_MESSAGE_MAX);
    buf[n] = 0;
    return string_register(strdup(buf));
}

/* ---- building a record --------------------------------------------------------------------------- */

static __thread int tls_tid;
/* Open push ranges per domain on this thread: what nvtxRangePush returns and nvtxRangePop checks. */
static __thread int tls_level[CMT_NVTX_DOMAINS];

static int thread_id(void)
{
    if (!tls_tid)
        tls_tid = (int)syscall(SYS_gettid);
    return tls_tid;
}

/* The record's fixed part and its domain name; the message follows (set_message_*). */
static void rec_begin(union rec *r, int kind, int dom)
{
    struct cmt_event *e = &r->ev;
    memset(e, 0, sizeof *e);
    e->op = CMT_SHM_REC_NVTX;
    e->kind = (uint8_t)kind;
    e->api = (uint16_t)dom;
    e->tid = thread_id();
    e->device = -1;
    e->result = -1;
    e->ts_ns = cmt_now_ns();
    e->seq = atomic_fetch_add_explicit(&cmt_seq, 1, memory_order_relaxed) + 1;
    if (dom) {
        memcpy(e->frames, domains[dom].name, domains[dom].len);
        e->size = domains[dom].len;
    }
    e->nframes = (uint16_t)((e->size + sizeof(uintptr_t) - 1) / sizeof(uintptr_t));
}

static char *msg_at(union rec *r)
{
    return (char *)r->ev.frames + r->ev.size;
}

static void set_len(union rec *r, size_t n)
{
    r->ev.handle = n;
    r->ev.present |= CMT_HAS_HANDLE;
    r->ev.nframes = (uint16_t)((r->ev.size + n + sizeof(uintptr_t) - 1) / sizeof(uintptr_t));
}

static void set_message_a(union rec *r, const char *s)
{
    if (s)
        set_len(r, copy_utf8(msg_at(r), s, CMT_NVTX_MESSAGE_MAX));
}

static void set_message_w(union rec *r, const wchar_t *s)
{
    if (s)
        set_len(r, copy_wide(msg_at(r), s, CMT_NVTX_MESSAGE_MAX));
}

static void set_attributes(union rec *r, const nvtxEventAttributes_t *a)
{
    /* Version 1 and 2 attributes share this prefix; a size that does not cover the message means none. */
    if (!a || a->size < offsetof(nvtxEventAttributes_t, message) + sizeof a->message)
        return;
    r->ev.aux = a->category;
    switch (a->messageType) {
    case NVTX_MESSAGE_TYPE_ASCII:
        set_message_a(r, a->message.ascii);
        break;
    case NVTX_MESSAGE_TYPE_UNICODE:
        set_message_w(r, a->message.unicode);
        break;
    case NVTX_MESSAGE_TYPE_REGISTERED: {
        uintptr_t i = (uintptr_t)a->message.registered;
        const char *s = i >= 1 && i <= CMT_NVTX_STRINGS
                            ? atomic_load_explicit(&strings[i - 1], memory_order_acquire) : NULL;
        set_message_a(r, s);
        break;
    }
    default:
        break; /* no message, or a type newer than us: a range without a name */
    }
}

/* ---- into the queue ------------------------------------------------------------------------------ */

/* Never waits: a full queue costs this record, counted as lost. */
static void enqueue(struct cmt_event *e)
{
    cmt_capture_await();
    cmt_capture_check();
    struct cmt_shm *h = cmt_shm_get();
    if (atomic_load_explicit(&cmt_state, memory_order_acquire) != CMT_RUNNING || !h)
        return;
    if (cmt_capture_push(e) != 0) {
        atomic_fetch_add_explicit(&h->lost, 1, memory_order_relaxed);
        cmt_capture_wake();
    }
}

/* ---- before recording starts --------------------------------------------------------------------- */

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_TAKEN };

struct pending {
    _Atomic int state;
    union rec r;
};
static struct pending pending[CMT_NVTX_PENDING];
static _Atomic uint64_t pending_dropped; /* opened before recording, no room kept: lost once it starts */
static __thread int16_t tls_pend[CMT_NVTX_TLS_PENDING]; /* this thread's pending pushes, innermost last */
static __thread int tls_npend;

/* Takes a pending slot away from the others (the drain, or its owner) and queues it: exactly one of
 * them does. */
static void take_and_enqueue(int i)
{
    int expected = SLOT_READY;
    if (!atomic_compare_exchange_strong(&pending[i].state, &expected, SLOT_TAKEN))
        return;
    enqueue(&pending[i].r.ev);
    atomic_store_explicit(&pending[i].state, SLOT_FREE, memory_order_release);
}

/* A slot being queued by the drain: its closing record must come after it. */
static void wait_free(int i)
{
    while (atomic_load_explicit(&pending[i].state, memory_order_acquire) == SLOT_TAKEN)
        sched_yield();
}

/* Keeps an opening record (push, start) made before recording began. Returns the slot, or -1. */
static int pending_add(const union rec *r)
{
    for (int i = 0; i < CMT_NVTX_PENDING; i++) {
        int expected = SLOT_FREE;
        if (atomic_load_explicit(&pending[i].state, memory_order_relaxed) == SLOT_FREE &&
            atomic_compare_exchange_strong(&pending[i].state, &expected, SLOT_FILLING)) {
            memcpy(&pending[i].r, r, sizeof *r);
            atomic_store_explicit(&pending[i].state, SLOT_READY, memory_order_release);
            return i;
        }
    }
    atomic_fetch_add(&pending_dropped, 1);
    return -1;
}

void cmt_nvtx_capture_started(void)
{
    cmt_capture_await();
    if (atomic_load_explicit(&cmt_state, memory_order_acquire) != CMT_RUNNING)
        return;
    /* In sequence order, so that each thread's pushes reach the writer outermost first. */
    int order[CMT_NVTX_PENDING], n = 0;
    for (int i = 0; i < CMT_NVTX_PENDING; i++) {
        if (atomic_load_explicit(&pending[i].state, memory_order_acquire) != SLOT_READY)
            continue;
        int j = n++;
        while (j > 0 && pending[order[j - 1]].r.ev.seq > pending[i].r.ev.seq) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    for (int k = 0; k < n; k++)
        take_and_enqueue(order[k]);
    uint64_t dropped = atomic_exchange(&pending_dropped, 0);
    struct cmt_shm *h = cmt_shm_get();
    if (dropped && h)
        atomic_fetch_add(&h->lost, dropped);
}

void cmt_nvtx_after_fork(void)
{
    /* The child's first event starts a recording of its own; the parent's pending ranges belonged to
     * threads that are not here, and the forking thread's levels start over with them. */
    for (int i = 0; i < CMT_NVTX_PENDING; i++)
        atomic_store(&pending[i].state, SLOT_FREE);
    atomic_store(&pending_dropped, 0);
    tls_npend = 0;
    tls_tid = 0;
    memset(tls_level, 0, sizeof tls_level);
}

/* ---- what each kind of record does --------------------------------------------------------------- */

/* Returns 1 if recording may take a record now or later, 0 if it is off. */
static int recording(void)
{
    if (atomic_load_explicit(&cmt_state, memory_order_acquire) == CMT_DISABLED)
        return 0;
    return cmt_runtime_init() == 0;
}

static int is_idle(void)
{
    return atomic_load_explicit(&cmt_state, memory_order_acquire) == CMT_IDLE;
}

static void submit_open(union rec *r)
{
    if (!is_idle()) {
        enqueue(&r->ev);
        return;
    }
    int slot = pending_add(r);
    if (slot < 0)
        return;
    if (r->ev.kind == CMT_NVTX_PUSH) {
        if (tls_npend < CMT_NVTX_TLS_PENDING)
            tls_pend[tls_npend++] = (int16_t)slot;
        else
            atomic_store(&pending[slot].state, SLOT_FREE); /* too deep to follow: as if lost */
    }
    /* Recording may have started while we kept it, after the drain looked at this slot. */
    if (!is_idle())
        take_and_enqueue(slot);
}

static void submit_pop(union rec *r)
{
    if (!is_idle()) {
        enqueue(&r->ev);
        return;
    }
    /* The innermost pending push of this domain on this thread, if we kept it. */
    for (int k = tls_npend - 1; k >= 0; k--) {
        int i = tls_pend[k];
        if (pending[i].r.ev.api != r->ev.api)
            continue;
        memmove(&tls_pend[k], &tls_pend[k + 1], (size_t)(tls_npend - k - 1) * sizeof tls_pend[0]);
        tls_npend--;
        int expected = SLOT_READY;
        if (atomic_compare_exchange_strong(&pending[i].state, &expected, SLOT_FREE))
            return; /* opened and closed before recording began: nothing to keep */
        wait_free(i); /* recording began and its push is queued: the pop follows it */
        enqueue(&r->ev);
        return;
    }
}

/* Whether close (an end, a heap unregistration) closes open (a start, a heap registration). */
static int closes(const struct cmt_event *open, const struct cmt_event *close)
{
    if (close->kind == CMT_NVTX_END)
        return open->kind == CMT_NVTX_START && open->address == close->address;
    return open->kind == CMT_NVTX_HEAP_REGISTER && open->stream == close->stream;
}

static void submit_end(union rec *r)
{
    if (is_idle()) {
        for (int i = 0; i < CMT_NVTX_PENDING; i++) {
            if (atomic_load_explicit(&pending[i].state, memory_order_acquire) != SLOT_READY ||
                !closes(&pending[i].r.ev, &r->ev))
                continue;
            int expected = SLOT_READY;
            if (atomic_compare_exchange_strong(&pending[i].state, &expected, SLOT_FREE))
                return;
            wait_free(i);
            break;
        }
        if (is_idle())
            return; /* a range we never saw start */
    }
    enqueue(&r->ev);
}

/* The name of a push, start or mark: from its attributes, or its plain ASCII or wide message. */
static void set_message(union rec *r, const nvtxEventAttributes_t *a, const char *ascii, const wchar_t *wide)
{
    if (a)
        set_attributes(r, a);
    else if (ascii)
        set_message_a(r, ascii);
    else if (wide)
        set_message_w(r, wide);
}

static int push(int dom, const nvtxEventAttributes_t *a, const char *ascii, const wchar_t *wide)
{
    if (dom < 0)
        return -1; /* a domain handle we never gave out */
    int level = tls_level[dom];
    if (!recording())
        return level;
    tls_level[dom] = level + 1;
    union rec r;
    rec_begin(&r, CMT_NVTX_PUSH, dom);
    r.ev.result = level;
    set_message(&r, a, ascii, wide);
    submit_open(&r);
    return level;
}

static int pop(int dom)
{
    if (dom < 0 || tls_level[dom] <= 0)
        return -1; /* a pop without a push: NVTX's error value; nothing recorded */
    int level = --tls_level[dom];
    if (!recording())
        return level;
    union rec r;
    rec_begin(&r, CMT_NVTX_POP, dom);
    r.ev.result = level;
    submit_pop(&r);
    return level;
}

static nvtxRangeId_t start(int dom, const nvtxEventAttributes_t *a, const char *ascii, const wchar_t *wide)
{
    if (dom < 0)
        return 0;
    nvtxRangeId_t id = atomic_fetch_add(&next_range_id, 1) + 1;
    if (!recording())
        return id;
    union rec r;
    rec_begin(&r, CMT_NVTX_START, dom);
    r.ev.address = id;
    set_message(&r, a, ascii, wide);
    submit_open(&r);
    return id;
}

static void end(int dom, nvtxRangeId_t id)
{
    if (dom < 0 || !id || !recording())
        return;
    union rec r;
    rec_begin(&r, CMT_NVTX_END, dom);
    r.ev.address = id;
    submit_end(&r);
}

static void mark(int dom, const nvtxEventAttributes_t *a, const char *ascii, const wchar_t *wide)
{
    /* Before the first memory event a mark has nothing to mark: it is not kept. */
    if (dom < 0 || !recording() || is_idle())
        return;
    union rec r;
    rec_begin(&r, CMT_NVTX_MARK, dom);
    set_message(&r, a, ascii, wide);
    enqueue(&r.ev);
}

/* ---- the callbacks NVTX calls -------------------------------------------------------------------- */

static int NVTX_API range_push_ex(const nvtxEventAttributes_t *a) { return push(0, a, NULL, NULL); }
static int NVTX_API range_push_a(const char *m) { return push(0, NULL, m, NULL); }
static int NVTX_API range_push_w(const wchar_t *m) { return push(0, NULL, NULL, m); }
static int NVTX_API range_pop(void) { return pop(0); }
static nvtxRangeId_t NVTX_API range_start_ex(const nvtxEventAttributes_t *a) { return start(0, a, NULL, NULL); }
static nvtxRangeId_t NVTX_API range_start_a(const char *m) { return start(0, NULL, m, NULL); }
static nvtxRangeId_t NVTX_API range_start_w(const wchar_t *m) { return start(0, NULL, NULL, m); }
static void NVTX_API range_end(nvtxRangeId_t id) { end(0, id); }
static void NVTX_API mark_ex(const nvtxEventAttributes_t *a) { mark(0, a, NULL, NULL); }
static void NVTX_API mark_a(const char *m) { mark(0, NULL, m, NULL); }
static void NVTX_API mark_w(const wchar_t *m) { mark(0, NULL, NULL, m); }

static int NVTX_API domain_push_ex(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a)
{
    return push(domain_index(d), a, NULL, NULL);
}
static int NVTX_API domain_pop(nvtxDomainHandle_t d) { return pop(domain_index(d)); }
static nvtxRangeId_t NVTX_API domain_start_ex(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a)
{
    return start(domain_index(d), a, NULL, NULL);
}
static void NVTX_API domain_end(nvtxDomainHandle_t d, nvtxRangeId_t id) { end(domain_index(d), id); }
static void NVTX_API domain_mark_ex(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a)
{
    mark(domain_index(d), a, NULL, NULL);
}

/* ---- the memory extension: a custom allocator's heaps and regions --------------------------------- */

/* Heap handles are ids from this counter (never 0, NVTX_MEM_HEAP_HANDLE_PROCESS_WIDE, nor -1, "no tool");
 * a region's handle is its address, as nvToolsExtMem.h suggests. Regions are described as virtual
 * address ranges (NVTX_MEM_TYPE_VIRTUAL_ADDRESS); another type is not recorded. */
static _Atomic uint64_t next_heap_id;

static int mem_ok(const void *desc, uint16_t compat, uint16_t struct_size, size_t need)
{
    return desc && compat == NVTX_EXT_COMPATID_MEM && struct_size >= need;
}

static void mem_record(int kind, int dom, uint64_t heap, uint64_t address, uint64_t size, const char *name_a,
                       const wchar_t *name_w, int32_t usage)
{
    union rec r;
    rec_begin(&r, kind, dom);
    r.ev.result = usage;
    r.ev.stream = heap;
    r.ev.address = address;
    r.ev.aux = size;
    if (name_a)
        set_message_a(&r, name_a);
    else if (name_w)
        set_message_w(&r, name_w);
    if (kind == CMT_NVTX_HEAP_REGISTER) {
        submit_open(&r); /* kept if registered before the first memory event, like a start range */
        return;
    }
    if (kind == CMT_NVTX_HEAP_UNREGISTER) {
        submit_end(&r);
        return;
    }
    if (!is_idle())
        enqueue(&r.ev); /* regions before the first memory event: nothing to place them in */
}

static void message_of(uint32_t type, nvtxMessageValue_t v, const char **a, const wchar_t **w)
{
    *a = NULL;
    *w = NULL;
    if (type == NVTX_MESSAGE_TYPE_ASCII)
        *a = v.ascii;
    else if (type == NVTX_MESSAGE_TYPE_UNICODE)
        *w = v.unicode;
    else if (type == NVTX_MESSAGE_TYPE_REGISTERED && (uintptr_t)v.registered >= 1 &&
             (uintptr_t)v.registered <= CMT_NVTX_STRINGS)
        *a = atomic_load_explicit(&strings[(uintptr_t)v.registered - 1], memory_order_acquire);
}

static nvtxMemHeapHandle_t NVTX_API heap_register(nvtxDomainHandle_t d, nvtxMemHeapDesc_t const *desc)
{
    int dom = domain_index(d);
    uint64_t id = atomic_fetch_add(&next_heap_id, 1) + 1;
    if (dom < 0 || !mem_ok(desc, desc ? desc->extCompatID : 0, desc ? desc->structSize : 0, sizeof *desc) ||
        !recording())
        return (nvtxMemHeapHandle_t)(uintptr_t)id;
    uint64_t base = 0, size = 0;
    if (desc->type == NVTX_MEM_TYPE_VIRTUAL_ADDRESS && desc->typeSpecificDesc &&
        desc->typeSpecificDescSize >= sizeof(nvtxMemVirtualRangeDesc_t)) {
        const nvtxMemVirtualRangeDesc_t *v = desc->typeSpecificDesc;
        base = (uintptr_t)v->ptr;
        size = v->size;
    }
    const char *a;
    const wchar_t *w;
    message_of(desc->messageType, desc->message, &a, &w);
    mem_record(CMT_NVTX_HEAP_REGISTER, dom, id, base, size, a, w, (int32_t)desc->usage);
    return (nvtxMemHeapHandle_t)(uintptr_t)id;
}

static void heap_end(int kind, nvtxDomainHandle_t d, nvtxMemHeapHandle_t heap)
{
    int dom = domain_index(d);
    uintptr_t id = (uintptr_t)heap;
    /* Reset of the process-wide heap (0) is allowed: every region of every heap is gone. */
    if (dom < 0 || (id == 0 && kind != CMT_NVTX_HEAP_RESET) || heap == NVTX_MEM_HEAP_HANDLE_NO_TOOL || !recording())
        return;
    mem_record(kind, dom, id, 0, 0, NULL, NULL, -1);
}

static void NVTX_API heap_unregister(nvtxDomainHandle_t d, nvtxMemHeapHandle_t heap)
{
    heap_end(CMT_NVTX_HEAP_UNREGISTER, d, heap);
}

static void NVTX_API heap_reset(nvtxDomainHandle_t d, nvtxMemHeapHandle_t heap)
{
    heap_end(CMT_NVTX_HEAP_RESET, d, heap);
}

/* The i-th element of a batch whose elements are elem_size bytes apart (newer, larger elements too). */
static const void *element(const void *base, size_t elem_size, size_t i)
{
    return (const unsigned char *)base + i * elem_size;
}

static void NVTX_API regions_register(nvtxDomainHandle_t d, nvtxMemRegionsRegisterBatch_t const *b)
{
    int dom = domain_index(d);
    if (!mem_ok(b, b ? b->extCompatID : 0, b ? b->structSize : 0, sizeof *b) || !b->regionDescElements)
        return;
    int ok = dom >= 0 && b->regionType == NVTX_MEM_TYPE_VIRTUAL_ADDRESS &&
             b->regionDescElementSize >= sizeof(nvtxMemVirtualRangeDesc_t) && recording();
    for (size_t i = 0; i < b->regionCount; i++) {
        const nvtxMemVirtualRangeDesc_t *v = element(b->regionDescElements, b->regionDescElementSize, i);
        if (b->regionHandleElementsOut)
            b->regionHandleElementsOut[i] = ok ? (nvtxMemRegionHandle_t)v->ptr : NVTX_MEM_REGION_HANDLE_NO_TOOL;
        if (ok)
            mem_record(CMT_NVTX_REGION_REGISTER, dom, (uintptr_t)b->heap, (uintptr_t)v->ptr, v->size, NULL, NULL, -1);
    }
}

static void NVTX_API regions_resize(nvtxDomainHandle_t d, nvtxMemRegionsResizeBatch_t const *b)
{
    int dom = domain_index(d);
    if (dom < 0 || !mem_ok(b, b ? b->extCompatID : 0, b ? b->structSize : 0, sizeof *b) || !b->regionDescElements ||
        b->regionType != NVTX_MEM_TYPE_VIRTUAL_ADDRESS || b->regionDescElementSize < sizeof(nvtxMemVirtualRangeDesc_t) ||
        !recording())
        return;
    for (size_t i = 0; i < b->regionDescCount; i++) {
        const nvtxMemVirtualRangeDesc_t *v = element(b->regionDescElements, b->regionDescElementSize, i);
        mem_record(CMT_NVTX_REGION_RESIZE, dom, 0, (uintptr_t)v->ptr, v->size, NULL, NULL, -1);
    }
}

static void NVTX_API regions_unregister(nvtxDomainHandle_t d, nvtxMemRegionsUnregisterBatch_t const *b)
{
    int dom = domain_index(d);
    if (dom < 0 || !mem_ok(b, b ? b->extCompatID : 0, b ? b->structSize : 0, sizeof *b) || !b->refElements ||
        b->refElementSize < sizeof(nvtxMemRegionRef_t) || !recording())
        return;
    /* A handle is the region's address (regions_register), so both kinds of reference name it. */
    for (size_t i = 0; i < b->refCount; i++) {
        const nvtxMemRegionRef_t *ref = element(b->refElements, b->refElementSize, i);
        mem_record(CMT_NVTX_REGION_UNREGISTER, dom, 0, (uintptr_t)ref->pointer, 0, NULL, NULL, -1);
    }
}

static void NVTX_API regions_name(nvtxDomainHandle_t d, nvtxMemRegionsNameBatch_t const *b)
{
    int dom = domain_index(d);
    if (dom < 0 || !mem_ok(b, b ? b->extCompatID : 0, b ? b->structSize : 0, sizeof *b) || !b->regionElements ||
        b->regionElementSize < sizeof(nvtxMemRegionNameDesc_t) || !recording())
        return;
    for (size_t i = 0; i < b->regionCount; i++) {
        const nvtxMemRegionNameDesc_t *n = element(b->regionElements, b->regionElementSize, i);
        const char *a;
        const wchar_t *w;
        message_of(n->nameType, n->name, &a, &w);
        mem_record(CMT_NVTX_REGION_NAME, dom, 0, (uintptr_t)n->region.pointer, 0, a, w, -1);
    }
}

/* NVTX's entry point for its extensions, once per extension per copy of NVTX. Only the memory extension
 * is ours; for the others, 0 leaves their calls as no-ops. */
__attribute__((visibility("default"))) int InitializeInjectionNvtxExtension(nvtxExtModuleInfo_t *info)
{
    if (!info || info->structSize < sizeof *info || info->moduleId != NVTX_EXT_MODULEID_MEM ||
        info->compatId != NVTX_EXT_COMPATID_MEM || !info->segments || info->segmentsCount < 1 || !recording())
        return 0;
    static const struct {
        unsigned id;
        intptr_t fn;
    } mem[] = {
        {NVTX3EXT_CBID_nvtxMemHeapRegister, (intptr_t)heap_register},
        {NVTX3EXT_CBID_nvtxMemHeapUnregister, (intptr_t)heap_unregister},
        {NVTX3EXT_CBID_nvtxMemHeapReset, (intptr_t)heap_reset},
        {NVTX3EXT_CBID_nvtxMemRegionsRegister, (intptr_t)regions_register},
        {NVTX3EXT_CBID_nvtxMemRegionsResize, (intptr_t)regions_resize},
        {NVTX3EXT_CBID_nvtxMemRegionsUnregister, (intptr_t)regions_unregister},
        {NVTX3EXT_CBID_nvtxMemRegionsName, (intptr_t)regions_name},
    };
    nvtxExtModuleSegment_t *seg = &info->segments[0];
    if (!seg->functionSlots)
        return 0;
    for (size_t i = 0; i < sizeof mem / sizeof mem[0]; i++)
        if (mem[i].id < seg->slotCount)
            seg->functionSlots[mem[i].id] = mem[i].fn;
    return 1;
}

struct entry {
    unsigned id;
    NvtxFunctionPointer fn;
};

#define FN(f) ((NvtxFunctionPointer)(void (*)(void))(f))

static const struct entry core[] = {
    {NVTX_CBID_CORE_MarkEx, FN(mark_ex)},
    {NVTX_CBID_CORE_MarkA, FN(mark_a)},
    {NVTX_CBID_CORE_MarkW, FN(mark_w)},
    {NVTX_CBID_CORE_RangeStartEx, FN(range_start_ex)},
    {NVTX_CBID_CORE_RangeStartA, FN(range_start_a)},
    {NVTX_CBID_CORE_RangeStartW, FN(range_start_w)},
    {NVTX_CBID_CORE_RangeEnd, FN(range_end)},
    {NVTX_CBID_CORE_RangePushEx, FN(range_push_ex)},
    {NVTX_CBID_CORE_RangePushA, FN(range_push_a)},
    {NVTX_CBID_CORE_RangePushW, FN(range_push_w)},
    {NVTX_CBID_CORE_RangePop, FN(range_pop)},
};

static const struct entry core2[] = {
    {NVTX_CBID_CORE2_DomainMarkEx, FN(domain_mark_ex)},
    {NVTX_CBID_CORE2_DomainRangeStartEx, FN(domain_start_ex)},
    {NVTX_CBID_CORE2_DomainRangeEnd, FN(domain_end)},
    {NVTX_CBID_CORE2_DomainRangePushEx, FN(domain_push_ex)},
    {NVTX_CBID_CORE2_DomainRangePop, FN(domain_pop)},
    {NVTX_CBID_CORE2_DomainRegisterStringA, FN(register_string_a)},
    {NVTX_CBID_CORE2_DomainRegisterStringW, FN(register_string_w)},
    {NVTX_CBID_CORE2_DomainCreateA, FN(domain_create_a)},
    {NVTX_CBID_CORE2_DomainCreateW, FN(domain_create_w)},
};

/* Points the entries of one module's table that this NVTX knows at ours. Returns 0, or -1. */
static int fill(const NvtxExportTableCallbacks *cb, NvtxCallbackModule module, const struct entry *e, size_t n)
{
    NvtxFunctionTable table = NULL;
    unsigned size = 0;
    if (!cb->GetModuleFunctionTable(module, &table, &size) || !table)
        return -1;
    /* An older NVTX has a shorter table: entries it does not have are skipped. */
    for (size_t i = 0; i < n; i++)
        if (e[i].id < size && table[e[i].id])
            *table[e[i].id] = e[i].fn;
    return 0;
}

/* NVTX's entry point into an injection library: once per copy of NVTX in the process (each library built
 * with the nvtx3 headers has its own). Returns 1 when attached, 0 to leave that copy's calls as no-ops. */
__attribute__((visibility("default"))) int InitializeInjectionNvtx2(NvtxGetExportTableFunc_t get)
{
    if (!get || !recording())
        return 0;
    const NvtxExportTableCallbacks *cb = (const NvtxExportTableCallbacks *)get(NVTX_ETID_CALLBACKS);
    if (!cb || cb->struct_size < sizeof *cb || !cb->GetModuleFunctionTable)
        return 0;
    if (fill(cb, NVTX_CB_MODULE_CORE, core, sizeof core / sizeof core[0]) != 0)
        return 0;
    fill(cb, NVTX_CB_MODULE_CORE2, core2, sizeof core2 / sizeof core2[0]); /* absent before NVTX 2 */
    return 1;
}
