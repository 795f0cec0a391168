/*
 * whatif.c: PyTorch's caching allocator replayed from a trace's recorded history (see whatif.h): reading
 * the history, replaying it through the model (allocmodel.c) as recorded and under other settings, and
 * the OOM verdicts that rest on those replays.
 *
 * Requests: every alloc and free_completed, in order, each into the pool its entry names (pool_id: the
 * default pools or a private pool, MemPool or CUDA graph). A free_requested not followed at once by its
 * free_completed (a block with uses on other streams, record_stream) makes the block pending until its
 * free_completed or a release of cached memory, which synchronizes it first. A burst of segment_free (or
 * segment_unmap) entries that is not followed by a segment_alloc or segment_map (a retry) is an
 * empty_cache() call and is replayed as one (a MemPool destructor's burst: the release of that pool); a
 * private pool's segment in a burst means the pool is no longer in use; the allocator's own releases on a
 * failed cudaMalloc are the model's decision, under the configuration's capacity. An empty_cache() that
 * released nothing left no entry: the what-if runs cannot replay it.
 *
 * The recorded replay is a check: reserved bytes after every request and free, the size of every new
 * segment (mapping), and every block's address (the model puts new segments where the run had them, as
 * best fit breaks ties by address) against the history.
 *
 * Runs in the `cumemtrace` command. Reads traces only (read-only SQLite); returns 0 or -1 with a reason.
 */
#include "whatif.h"

#include "cmt_db.h"
#include "util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The latest snapshot's history of its busiest device from an open trace, with the recorded settings and
 * capacity (*sid_out, *dev_out: which snapshot and device). */
static int load_db(sqlite3 *db, const char *path, struct cmt_whatif_entry **out, size_t *n, struct cmt_aconf *rec,
                   uint64_t *rec_capacity, double *rec_gc, int64_t *sid_out, int64_t *dev_out, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    int64_t sid = -1, dev = 0;
    const char *settings = NULL;
    char *set_copy = NULL;
    struct smap pools = {0}; /* pool_id text -> our pool number */
    if (sqlite3_prepare_v2(db, "SELECT snapshot_id, settings FROM alloc_snapshots ORDER BY snapshot_id DESC LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
        snprintf(err, errlen, "%s: no allocator history in this trace (record with run --torch, or import-torch)", path);
        goto out;
    }
    sid = sqlite3_column_int64(st, 0);
    settings = (const char *)sqlite3_column_text(st, 1);
    set_copy = settings ? strdup(settings) : NULL;
    sqlite3_finalize(st);
    st = NULL;
    /* the recorded configuration, from the snapshot's allocator_settings (JSON written by the importer) */
    if (set_copy) {
        const char *k;
        if (strstr(set_copy, "\"expandable_segments\": true"))
            rec->expandable = 1;
        /* garbage_collection_threshold acts only under a per-process memory fraction, which neither the
         * snapshot (allocator_settings has no fraction) nor the trace (set_per_process_memory_fraction
         * makes no allocator entry or driver call we record) knows: the replays leave it off, and say so */
        if ((k = strstr(set_copy, "\"garbage_collection_threshold\": "))) {
            double v = strtod(k + 32, NULL);
            if (v > 0 && v < 1)
                *rec_gc = v;
        }
        if ((k = strstr(set_copy, "\"max_split_size\": "))) {
            unsigned long long v = strtoull(k + 18, NULL, 10);
            if (v && v < (1ull << 62))
                rec->max_split_size = v;
        }
        if ((k = strstr(set_copy, "\"roundup_power2_divisions\": "))) {
            /* a list per interval in torch >= 2.1; one value for all is what we model */
            const char *p = k + 28;
            while (*p == '[' || *p == ' ')
                p++;
            unsigned long v = strtoul(p, NULL, 10);
            if (v > 1)
                rec->divisions = (unsigned)v;
        }
        free(set_copy);
    }
    /* private pools (MemPool, CUDA graphs) keep their own blocks apart from the default pools: the
     * entries' pool_id says which pool each request went to (a column of files imported since) */
    int entry_pools = sqlite3_prepare_v2(db, "SELECT pool_id FROM alloc_trace LIMIT 0", -1, &st, NULL) == SQLITE_OK;
    sqlite3_finalize(st);
    st = NULL;
    int64_t private_segments = 0, named_pools = 0;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM alloc_segments WHERE snapshot_id = ?1"
                               " AND pool_id IS NOT NULL AND pool_id <> '0,0'", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, sid);
        if (sqlite3_step(st) == SQLITE_ROW)
            private_segments = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    st = NULL;
    /* who released a segment or pages: empty_cache (1), a malloc freeing cache to retry (2), a MemPool's
     * destructor emptying its pool (3), unknown (0) */
    if (sqlite3_prepare_v2(db, entry_pools ? "SELECT entry_id, action, addr, size, stream, reserved_bytes,"
                               " CASE WHEN t.action IN ('segment_free', 'segment_unmap') THEN"
                               "  (SELECT CASE WHEN max(f.name LIKE '%MemPool::~MemPool%') THEN 3"
                               "   WHEN max(f.name = 'empty_cache' OR f.name LIKE '%emptyCache%') THEN 1"
                               "   WHEN max(f.name LIKE '%::malloc(%') THEN 2 ELSE 0 END"
                               "   FROM alloc_stacks s JOIN alloc_frames f USING (frame_id) WHERE s.stack_id = t.stack_id)"
                               " END, pool_id, synthetic, device, allocated_bytes FROM alloc_trace t WHERE snapshot_id = ? ORDER BY entry_id"
                                           : "SELECT entry_id, action, addr, size, stream, reserved_bytes,"
                               " CASE WHEN t.action IN ('segment_free', 'segment_unmap') THEN"
                               "  (SELECT CASE WHEN max(f.name LIKE '%MemPool::~MemPool%') THEN 3"
                               "   WHEN max(f.name = 'empty_cache' OR f.name LIKE '%emptyCache%') THEN 1"
                               "   WHEN max(f.name LIKE '%::malloc(%') THEN 2 ELSE 0 END"
                               "   FROM alloc_stacks s JOIN alloc_frames f USING (frame_id) WHERE s.stack_id = t.stack_id)"
                               " END, NULL, synthetic, device, allocated_bytes FROM alloc_trace t WHERE snapshot_id = ? ORDER BY entry_id",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: not a cumemtrace trace with allocator tables: %s", path, sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_bind_int64(st, 1, sid);
    int r;
    /* every device's entries (one pass, in entry order: no GROUP BY over the whole history), the busiest
     * device's kept below */
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        for (int c = 0; c < 6; c++)
            if (c != 1 && c != 5 && sqlite3_column_type(st, c) != SQLITE_INTEGER) {
                snprintf(err, errlen, "%s: corrupt trace: allocator entry %lld has a bad %s", path,
                         (long long)sqlite3_column_int64(st, 0), sqlite3_column_name(st, c));
                goto out;
            }
        const char *a = (const char *)sqlite3_column_text(st, 1);
        struct cmt_whatif_entry *e = cmt_push(out, n, &cap, sizeof *e);
        if (!e) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        e->id = sqlite3_column_int64(st, 0);
        e->addr = sqlite3_column_int64(st, 2);
        e->size = sqlite3_column_int64(st, 3);
        e->stream = sqlite3_column_int64(st, 4);
        e->reserved = sqlite3_column_type(st, 5) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 5);
        e->by = (int)sqlite3_column_int64(st, 6);
        e->synthetic = sqlite3_column_int(st, 8) != 0;
        e->device = sqlite3_column_int64(st, 9);
        e->allocated = sqlite3_column_type(st, 10) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 10);
        const char *pool = (const char *)sqlite3_column_text(st, 7);
        if (pool && !e->synthetic)
            named_pools = 1;
        e->pool = 0;
        if (pool && strcmp(pool, "0,0")) {
            int64_t *k = smap_get(&pools, pool);
            if (!k && smap_put(&pools, pool, (int64_t)pools.n + 1) != 0) {
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            e->pool = (int)*smap_get(&pools, pool);
        }
        /* segment_map/unmap: the expandable spellings of segment_alloc/free */
        e->action = !a ? 'x' : !strcmp(a, "alloc") ? 'a' : !strcmp(a, "free_completed") ? 'f' :
                    !strcmp(a, "free_requested") ? 'q' :
                    !strcmp(a, "segment_free") || !strcmp(a, "segment_unmap") ? 's' :
                    !strcmp(a, "segment_alloc") || !strcmp(a, "segment_map") ? 'g' : !strcmp(a, "oom") ? 'o' : 'x';
        if (e->size < 0 || (e->action == 'a' && e->size == 0)) {
            snprintf(err, errlen, "%s: corrupt trace: allocator entry %lld has an impossible size", path,
                     (long long)e->id);
            goto out;
        }
    }
    if (r != SQLITE_DONE) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
        goto out;
    }
    if (!*n) {
        snprintf(err, errlen, "%s: the allocator history is empty", path);
        goto out;
    }
    /* a MemPool destroyed before the snapshot leaves no private segment, but its destructor's releases */
    for (size_t i = 0; i < *n && !private_segments; i++)
        if ((*out)[i].by == 3)
            private_segments = 1;
    if (private_segments > 0 && !named_pools) {
        snprintf(err, errlen, "%s: the history uses private memory pools (CUDA graphs, MemPool) but its entries "
                 "do not say which pool each request went to (%s): the model cannot replay it", path,
                 entry_pools ? "a snapshot of a PyTorch that records no pool_id per entry"
                             : "imported by an older cumemtrace: import the snapshot again");
        goto out;
    }
    {
        /* the device with the most history (the lowest of equals); its entries alone, in order */
        struct imap count = {0};
        int64_t best = -1;
        for (size_t i = 0; i < *n; i++) {
            int64_t *c = imap_get(&count, (uint64_t)(*out)[i].device);
            int64_t v = c ? *c + 1 : 1;
            if (imap_put(&count, (uint64_t)(*out)[i].device, v) != 0) {
                imap_free(&count);
                snprintf(err, errlen, "out of memory");
                goto out;
            }
            if (v > best || (v == best && (*out)[i].device < dev)) {
                best = v;
                dev = (*out)[i].device;
            }
        }
        imap_free(&count);
        size_t k = 0;
        for (size_t i = 0; i < *n; i++)
            if ((*out)[i].device == dev)
                (*out)[k++] = (*out)[i];
        *n = k;
    }
    /* the recorded capacity: reserved plus what the device had free at the first oom */
    for (size_t i = 0; i < *n; i++)
        if ((*out)[i].action == 'o' && (*out)[i].reserved >= 0) {
            *rec_capacity = (uint64_t)(*out)[i].reserved + (uint64_t)(*out)[i].addr;
            break;
        }
    /* a free_requested whose free_completed does not follow at once: the block had uses on other streams
     * (record_stream) and comes back later (when its events complete, or a release synchronizes them) */
    for (size_t i = 0; i < *n; i++)
        if ((*out)[i].action == 'q' && i + 1 < *n && (*out)[i + 1].action == 'f' && (*out)[i + 1].addr == (*out)[i].addr)
            (*out)[i].action = 'x';
    /* release bursts: an empty_cache() or a retry's releases. The stack says which when the history has
     * frames (empty_cache's own frame, the malloc that retries, a MemPool's destructor); without, a burst
     * followed by a new segment or mapping (or an oom) is taken for a retry. A private pool's segments in
     * a burst mean that pool is no longer in use (releases skip the pools in use) */
    for (size_t i = 0; i < *n; i++) {
        if ((*out)[i].action != 's')
            continue;
        size_t j = i;
        while (j < *n && ((*out)[j].action == 's' || (*out)[j].action == 'x'))
            j++;
        int by = (*out)[i].by;
        char kind = by == 3 ? 'p' : by == 1 ? 'e' : by == 2 ? 'r'
                  : j < *n && ((*out)[j].action == 'g' || (*out)[j].action == 'o') ? 'r' : 'e';
        size_t last = i;
        for (size_t k = i; k < j; k++)
            if ((*out)[k].action == 's') {
                (*out)[k].action = (*out)[k].pool ? 'u' : 'x';
                last = k;
            }
        (*out)[last].action = kind; /* one release per burst, once its pools are known */
        i = j - 1;
    }
    *sid_out = sid;
    *dev_out = dev;
    rc = 0;
out:
    sqlite3_finalize(st);
    smap_free(&pools);
    return rc;
}

int cmt_whatif_load(const char *path, struct cmt_whatif_entry **out, size_t *n, struct cmt_aconf *rec,
                    uint64_t *rec_capacity, double *rec_gc,
                char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int64_t sid, dev;
    *out = NULL;
    *n = 0;
    if (cmt_db_sqlite_open(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX) != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot open: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -1;
    }
    int rc = load_db(db, path, out, n, rec, rec_capacity, rec_gc, &sid, &dev, err, errlen);
    sqlite3_close(db);
    return rc;
}

/* One entry's release or pool action, shared by the replays. -1 out of memory. */
static int pool_action(struct cmt_amodel *m, const struct cmt_whatif_entry *e)
{
    switch (e->action) {
    case 'u':
        return cmt_amodel_release_pool(m, e->pool, 0);
    case 'p':
        return cmt_amodel_release_pool(m, e->pool, 1);
    case 'e':
        if (e->pool && cmt_amodel_release_pool(m, e->pool, 0) != 0)
            return -1;
        cmt_amodel_empty_cache(m);
        return 0;
    }
    return 0;
}

/* The recorded replay's check of a served request against the history: the segments (or mappings) the
 * model made for it against the segment_alloc/map entries recorded since the previous request, and the
 * block's address translated into the recorded address space. */
static int check_request(struct cmt_whatif_outcome *o, struct cmt_amodel *m, const struct cmt_whatif_entry *e,
                         uint64_t id,
                         const struct cmt_astats *before, int64_t g_count, int64_t g_addr, int64_t g_size,
                         struct imap *tr)
{
    struct cmt_astats s;
    cmt_amodel_stats(m, &s);
    int64_t made = (int64_t)(s.segments_allocated - before->segments_allocated);
    if (!e->synthetic && (made || g_count)) {
        o->segments_checked++;
        if ((made != g_count || (made && (int64_t)s.last_segment_size != g_size)) && o->segment_mismatches++ == 0)
            o->first_segment_mismatch = e->id;
    }
    uint64_t addr, seg;
    if (cmt_amodel_block(m, id, &addr, &seg) != 0)
        return 0;
    int64_t *base = imap_get(tr, seg);
    if (!base) {
        /* the segment's first block: its address gives the segment's recorded base; a segment made for
         * this request was recorded at g_addr (its first mapping, for an expandable one) */
        int64_t b = e->addr - (int64_t)(addr - seg);
        if (!e->synthetic && made && s.last_segment_base == seg) {
            o->addresses_checked++;
            if (b != g_addr && o->address_mismatches++ == 0)
                o->first_address_mismatch = e->id;
        }
        return imap_put(tr, seg, b);
    }
    if (!e->synthetic) {
        o->addresses_checked++;
        if (*base + (int64_t)(addr - seg) != e->addr && o->address_mismatches++ == 0)
            o->first_address_mismatch = e->id;
    }
    return 0;
}

int cmt_whatif_replay(const struct cmt_whatif_entry *e, size_t n, struct cmt_whatif_outcome *o, int check,
                      char *err, size_t errlen)
{
    struct cmt_amodel *m = cmt_amodel_new(&o->conf);
    struct imap ids = {0}, tr = {0};
    int64_t g_count = 0, g_addr = 0, g_size = 0;
    int g_synthetic = 0;
    if (!m)
        goto oom;
    o->first_mismatch = o->first_segment_mismatch = o->first_address_mismatch = o->first_allocated_mismatch = -1;
    for (size_t i = 0; i < n; i++) {
        if (e[i].pool > o->private_pools)
            o->private_pools = e[i].pool;
        switch (e[i].action) {
        case 'a': {
            uint64_t id;
            struct cmt_astats before;
            cmt_amodel_stats(m, &before);
            /* the recorded run's replay puts a new segment where the run had it */
            if (check && g_count && !g_synthetic && !e[i].synthetic)
                cmt_amodel_next_segment_at(m, (uint64_t)g_addr);
            int got = cmt_amodel_malloc_in(m, (uint64_t)e[i].size, e[i].stream, e[i].pool, &id);
            cmt_amodel_next_segment_at(m, 0);
            if (got == -2)
                goto oom;
            if (got != 0) {
                if (!o->oom++) {
                    struct cmt_astats s;
                    cmt_amodel_stats(m, &s);
                    o->oom_entry = e[i].id;
                    o->oom_size = e[i].size;
                    o->oom_reserved = s.reserved;
                    o->oom_allocated = s.allocated;
                }
                break;
            }
            if (imap_put(&ids, (uint64_t)e[i].addr, (int64_t)id) != 0)
                goto oom;
            if (check && check_request(o, m, &e[i], id, &before, g_count, g_addr, g_size, &tr) != 0)
                goto oom;
            g_count = 0;
            break;
        }
        case 'g':
            /* the first of the segments (mappings) recorded for the next request, and the last size */
            if (!g_count++) {
                g_addr = e[i].addr;
                g_synthetic = 0;
            }
            g_size = e[i].size;
            g_synthetic |= e[i].synthetic;
            break;
        case 'q': {
            int64_t *id = imap_get(&ids, (uint64_t)e[i].addr);
            if (id && *id && cmt_amodel_free_pending(m, (uint64_t)*id) != 0)
                goto oom;
            break;
        }
        case 'f': {
            /* deleted, not zeroed: the map holds the live blocks only, however many addresses the run used */
            int64_t id;
            if (imap_del(&ids, (uint64_t)e[i].addr, &id) && id)
                cmt_amodel_free_block(m, (uint64_t)id);
            break;
        }
        case 'r':
            /* a retry's releases are the model's own decision where it knows the capacity; without one
             * (no oom recorded) the recorded replay releases as the allocator did: the same release of
             * every unsplit cached segment as empty_cache() */
            if (e[i].pool && cmt_amodel_release_pool(m, e[i].pool, 0) != 0)
                goto oom;
            if (!check || o->conf.capacity != UINT64_MAX)
                break;
            cmt_amodel_empty_cache(m);
            break;
        default:
            if (pool_action(m, &e[i]) != 0)
                goto oom;
            break;
        }
        if (check && e[i].reserved >= 0 && (e[i].action == 'a' || e[i].action == 'f')) {
            struct cmt_astats s;
            cmt_amodel_stats(m, &s);
            o->checked++;
            if ((int64_t)s.reserved != e[i].reserved && o->mismatches++ == 0)
                o->first_mismatch = e[i].id;
            if (e[i].allocated >= 0 && (int64_t)s.allocated != e[i].allocated && o->allocated_mismatches++ == 0)
                o->first_allocated_mismatch = e[i].id;
        }
    }
    cmt_amodel_stats(m, &o->st);
    imap_free(&ids);
    imap_free(&tr);
    cmt_amodel_free(m);
    return 0;
oom:
    imap_free(&ids);
    imap_free(&tr);
    cmt_amodel_free(m);
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- OOM verdicts ----------------------------------------------------------------------------------- */

/* Replays e[0..k) under conf, skipping earlier recorded OOMs (the program survived them: their requests
 * never held memory), then asks for e[k]'s request. 1 when it is served with no failure before it, 0 when
 * not, -1 out of memory; *reserved_after: reserved once it is served. */
static int serves(const struct cmt_whatif_entry *e, size_t k, const struct cmt_aconf *conf, uint64_t *reserved_after)
{
    struct cmt_amodel *m = cmt_amodel_new(conf);
    struct imap ids = {0};
    int ok = 1;
    if (!m)
        return -1;
    for (size_t i = 0; i < k && ok == 1; i++) {
        uint64_t id;
        int64_t got;
        int r;
        switch (e[i].action) {
        case 'a':
            r = cmt_amodel_malloc_in(m, (uint64_t)e[i].size, e[i].stream, e[i].pool, &id);
            if (r != 0)
                ok = r == -2 ? -1 : 0;
            else if (imap_put(&ids, (uint64_t)e[i].addr, (int64_t)id) != 0)
                ok = -1;
            break;
        case 'q': {
            int64_t *p = imap_get(&ids, (uint64_t)e[i].addr);
            if (p && *p && cmt_amodel_free_pending(m, (uint64_t)*p) != 0)
                ok = -1;
            break;
        }
        case 'f':
            if (imap_del(&ids, (uint64_t)e[i].addr, &got) && got)
                cmt_amodel_free_block(m, (uint64_t)got);
            break;
        case 'r':
            if (e[i].pool && cmt_amodel_release_pool(m, e[i].pool, 0) != 0)
                ok = -1;
            break;
        default:
            if (pool_action(m, &e[i]) != 0)
                ok = -1;
            break;
        }
    }
    uint64_t id;
    int r = ok == 1 ? cmt_amodel_malloc_in(m, (uint64_t)e[k].size, e[k].stream, e[k].pool, &id) : 0;
    if (r != 0)
        ok = r == -2 ? -1 : 0;
    struct cmt_astats st;
    cmt_amodel_stats(m, &st);
    *reserved_after = st.reserved;
    imap_free(&ids);
    cmt_amodel_free(m);
    return ok;
}

/* Device memory live at the driver level outside the allocator when the allocator's last device call
 * before this OOM failed: -1 when the trace has no such failure (an imported snapshot). */
static int64_t outside_at(sqlite3 *db, int64_t dev, int64_t oom_ns, int64_t reserved)
{
    sqlite3_stmt *st = NULL;
    int64_t live = -1;
    /* the failed cudaMalloc or cuMemCreate of the retry: recorded just before the oom entry, whose time
     * is the snapshot's microsecond (hence the microsecond of slack); the views pair through an index that
     * a block-form trace's decoded events get only now */
    if (cmt_db_events_index(db, NULL, 0) == 0 && sqlite3_prepare_v2(db, "SELECT (SELECT COALESCE(SUM(a.size), 0) FROM allocations a WHERE a.kind = 'device'"
                               " AND a.device = f.device AND a.seq < f.seq AND (a.free_seq IS NULL OR a.free_seq > f.seq))"
                               " FROM failures f WHERE f.kind = 'device' AND f.device = ? AND f.ts_ns <= ? + 1000"
                               " ORDER BY f.seq DESC LIMIT 1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, dev);
        sqlite3_bind_int64(st, 2, oom_ns);
        if (sqlite3_step(st) == SQLITE_ROW)
            live = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return live < 0 ? -1 : live > reserved ? live - reserved : 0;
}

int cmt_whatif_verdicts(sqlite3 *db, struct cmt_mverdict **out, size_t *n, char *err, size_t errlen)
{
    struct cmt_whatif_entry *e = NULL;
    size_t ne = 0, cap = 0;
    struct cmt_aconf rec = {.max_split_size = UINT64_MAX, .divisions = 0, .capacity = UINT64_MAX};
    uint64_t rec_capacity = UINT64_MAX;
    int64_t sid, dev;
    sqlite3_stmt *st = NULL;
    int rc = -1;
    *out = NULL;
    *n = 0;
    double rec_gc = 0;
    if (load_db(db, "trace", &e, &ne, &rec, &rec_capacity, &rec_gc, &sid, &dev, err, errlen) != 0) {
        free(e);
        return 0; /* no usable history: no verdicts, the report goes on */
    }
    if (sqlite3_prepare_v2(db, "SELECT entry_id, allocated_bytes, reserved_bytes, ts_ns FROM alloc_trace"
                               " WHERE snapshot_id = ? AND device = ? AND action = 'oom' ORDER BY entry_id",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "allocator history: %s", sqlite3_errmsg(db));
        goto out;
    }
    sqlite3_bind_int64(st, 1, sid);
    sqlite3_bind_int64(st, 2, dev);
    size_t k = 0;
    /* every verdict replays the history up to its OOM, the fragmentation search once more per setting:
     * the first OOMs are the ones that matter (a program that catches them and goes on has many) */
    while (*n < 16 && sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        while (k < ne && e[k].id != id)
            k++;
        if (k == ne)
            break; /* defensive: the entry was read a moment ago */
        struct cmt_mverdict *v = cmt_push(out, n, &cap, sizeof *v);
        if (!v) {
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        memset(v, 0, sizeof *v);
        v->entry_id = id;
        v->device = dev;
        v->live_bytes = sqlite3_column_int64(st, 1);
        v->reserved_bytes = sqlite3_column_int64(st, 2);
        v->request_bytes = (e[k].size + 511) / 512 * 512;
        v->capacity_bytes = v->reserved_bytes + e[k].addr; /* an oom entry's addr: the device's free bytes */
        v->outside_bytes = outside_at(db, dev, sqlite3_column_int64(st, 3), v->reserved_bytes);
        v->short_bytes = v->live_bytes + v->request_bytes - v->capacity_bytes;
        struct cmt_aconf c = rec;
        c.capacity = (uint64_t)v->capacity_bytes;
        uint64_t r;
        int got = serves(e, k, &c, &r);
        if (got < 0)
            goto nomem;
        v->reproduced = got == 0;
        if (v->short_bytes > 0) {
            v->kind = v->outside_bytes > 0 && v->short_bytes <= v->outside_bytes ? CMT_MV_OUTSIDE : CMT_MV_CAPACITY;
            continue;
        }
        v->kind = CMT_MV_FRAGMENTATION;
        if (*n > 4)
            continue;
        /* what the request needed under the recorded settings: a new segment (its allocation size) */
        uint64_t need = (uint64_t)v->request_bytes <= (1u << 20) ? 2u << 20
                        : (uint64_t)v->request_bytes < (10u << 20) ? 20u << 20
                        : ((uint64_t)v->request_bytes + (2u << 20) - 1) / (2u << 20) * (2u << 20);
        static const unsigned mss[] = {20, 64, 128, 256, 512, 1024};
        for (int t = -1; t < (int)(sizeof mss / sizeof mss[0]); t++) {
            struct cmt_aconf w = c;
            char label[64];
            if (t < 0) {
                w.expandable = 1;
                snprintf(label, sizeof label, "expandable_segments:True");
            } else {
                w.max_split_size = (uint64_t)mss[t] << 20;
                snprintf(label, sizeof label, "max_split_size_mb:%u", mss[t]);
            }
            got = serves(e, k, &w, &r);
            if (got < 0)
                goto nomem;
            if (got == 1 && (!v->fits_with[0] || (int64_t)r < v->fits_reserved_bytes)) {
                snprintf(v->fits_with, sizeof v->fits_with, "%s", label);
                v->fits_reserved_bytes = (int64_t)r;
                v->saves_bytes = v->reserved_bytes + (int64_t)need - (int64_t)r;
            }
        }
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    free(e);
    if (rc != 0) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
nomem:
    snprintf(err, errlen, "out of memory");
    goto out;
}

