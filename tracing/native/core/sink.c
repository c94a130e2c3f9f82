/* The native sink thread: drains thread buffers, transcodes native records into Micromegas
 * transit queues (native-tracer.md §5.11), seals LZ4-compressed blocks on size, age or flush,
 * and queues CBOR ingestion bodies for the deliverer (sirius_next_item).
 *
 * Concurrency: one sink thread. A pass runs under sr_g.lock (also taken by flush waiters, fork
 * and process_info), so builders are only ever touched by one thread at a time. Thread buffers
 * are read lock-free (acquire loads of chunk state/committed, see sirius_internal.h). The output
 * queue has its own mutex, so a slow deliverer never stalls a pass longer than a push. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sirius_internal.h"
#include "sirius_layouts.h"

/* Dependency id spaces (one id space per block in the reader): the high byte says what an id
 * names, the rest is the address of the immortal string or descriptor. */
#define SR_ID_STRING (1ull << 56)
#define SR_ID_SPAN (2ull << 56)
#define SR_ID_LOCATION (3ull << 56)
#define SR_ID_LOG (4ull << 56)
#define SR_ID_METRIC (5ull << 56)
#define SR_ID_PROPS (6ull << 56)

enum { SR_STREAM_CPU = 0, SR_STREAM_LOG = 1, SR_STREAM_METRICS = 2 };

typedef struct sr_idset {
    uint64_t *slots;
    size_t cap, count;
} sr_idset;

typedef struct sr_builder {
    int kind;
    uint8_t stream_id[16];
    uint64_t tid;
    char name[64];
    sr_buf objs, deps;
    sr_idset ids;
    uint32_t nb_objects;
    uint64_t object_offset;
    uint64_t min_ticks;
    int64_t first_mono_ns; /* when the open block got its first event (age-based sealing) */
    sr_anchor begin;       /* previous block's end (or stream start) */
    int stream_sent;
    /* log/metrics: records appended during this pass, re-ordered by time at its end (threads
     * are drained one after the other, so a process-wide stream would interleave by thread) */
    size_t rec_start;
    sr_buf order; /* sr_order_entry[] */
} sr_builder;

typedef struct sr_order_entry {
    uint64_t ticks;
    size_t off, len;
} sr_order_entry;

/* Internal descriptors for drop reports (visible in the streams, see sr_report_drops). */
static const sirius_desc sr_drop_log_desc = {SIRIUS_DESC_LOG, 0, "events dropped", "sirius.tracing",
                                             "sirius.tracing", "sink.c", NULL, SIRIUS_LEVEL_WARN, 0};
static const sirius_desc sr_drop_metric_desc = {SIRIUS_DESC_METRIC, 0, "sirius.tracing.dropped_events",
                                                "sirius.tracing", "sirius.tracing", "sink.c", "events", 0, 0};

static uint8_t *sr_scratch;      /* LZ4 output, grown as needed */
static size_t sr_scratch_cap;
static uint32_t sr_lz4_table[16384];

/* ---------------------------------------------------------------------------------------------
 * id set (per block dependency dedup) */

static int sr_idset_add(sr_idset *s, uint64_t id) {
    /* returns 1 when id was not present (and adds it) */
    if ((s->count + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        uint64_t *slots = calloc(cap, sizeof(uint64_t));
        if (!slots) return 1; /* degrade: may write a duplicate; the set stays as it is */
        for (size_t i = 0; i < s->cap; i++) {
            uint64_t v = s->slots[i];
            if (!v) continue;
            size_t j = (size_t)((v * 0x9E3779B97F4A7C15ull) >> 7) & (cap - 1);
            while (slots[j]) j = (j + 1) & (cap - 1);
            slots[j] = v;
        }
        free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    size_t j = (size_t)((id * 0x9E3779B97F4A7C15ull) >> 7) & (s->cap - 1);
    while (s->slots[j]) {
        if (s->slots[j] == id) return 0;
        j = (j + 1) & (s->cap - 1);
    }
    s->slots[j] = id;
    s->count++;
    return 1;
}

static void sr_idset_clear(sr_idset *s) {
    if (s->slots) memset(s->slots, 0, s->cap * sizeof(uint64_t));
    s->count = 0;
}

/* ---------------------------------------------------------------------------------------------
 * builders */

static sr_builder *sr_builder_new(int kind, const uint8_t *stream_id, sr_anchor begin) {
    sr_builder *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->kind = kind;
    if (stream_id) memcpy(b->stream_id, stream_id, 16);
    else sr_uuid4(b->stream_id);
    b->begin = begin;
    b->min_ticks = UINT64_MAX;
    return b;
}

static void sr_builder_free(sr_builder *b) {
    if (!b) return;
    sr_buf_free(&b->objs);
    sr_buf_free(&b->deps);
    sr_buf_free(&b->order);
    free(b->ids.slots);
    free(b);
}

void sr_sink_reset_builders(int free_them) {
    if (free_them) {
        sr_builder_free(sr_g.log);
        sr_builder_free(sr_g.metrics);
    }
    sr_g.log = sr_builder_new(SR_STREAM_LOG, NULL, sr_g.start);
    sr_g.metrics = sr_builder_new(SR_STREAM_METRICS, NULL, sr_g.start);
}

static inline void sr_put_u8(uint8_t *p, size_t off, uint8_t v) { p[off] = v; }
static inline void sr_put_u32(uint8_t *p, size_t off, uint32_t v) { memcpy(p + off, &v, 4); }
static inline void sr_put_u64(uint8_t *p, size_t off, uint64_t v) { memcpy(p + off, &v, 8); }

/* Reserve one POD record [type index][size bytes] in the object queue; zeroed (padding). */
static uint8_t *sr_obj(sr_builder *b, uint8_t type_index, size_t size) {
    b->rec_start = b->objs.len;
    sr_buf_reserve(&b->objs, 1 + size);
    if (b->objs.failed) return NULL;
    uint8_t *p = b->objs.p + b->objs.len;
    p[0] = type_index;
    memset(p + 1, 0, size);
    b->objs.len += 1 + size;
    return p + 1;
}

/* Copy s as UTF-8, replacing bytes that are not part of a valid sequence with '?': the reader
 * decodes StaticString strictly and would reject the whole block. */
static void sr_put_utf8(sr_buf *out, const char *s, size_t n) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) ok = (p[i + k] & 0xc0) == 0x80;
        if (ok && len == 2) ok = c >= 0xc2;
        if (ok && len == 3) {
            uint32_t cp = ((c & 15u) << 12) | ((p[i + 1] & 63u) << 6) | (p[i + 2] & 63u);
            ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
        }
        if (ok && len == 4) {
            uint32_t cp = ((c & 7u) << 18) | ((p[i + 1] & 63u) << 12) | ((p[i + 2] & 63u) << 6) | (p[i + 3] & 63u);
            ok = cp >= 0x10000 && cp <= 0x10ffff;
        }
        if (ok) {
            sr_buf_put(out, p + i, len);
            i += len;
        } else {
            sr_buf_put(out, "?", 1);
            i += 1;
        }
    }
}

/* StaticString dependency: [index][u32 size][u64 id][utf8]. Returns the id. */
static uint64_t sr_dep_string(sr_builder *b, const char *s, uint8_t index) {
    if (!s) s = sr_empty;
    uint64_t id = SR_ID_STRING | (uint64_t)(uintptr_t)s;
    if (!sr_idset_add(&b->ids, id)) return id;
    size_t n = strlen(s);
    uint8_t head[13];
    head[0] = index;
    size_t size_pos = b->deps.len + 1;
    sr_put_u64(head, 5, id);
    sr_put_u32(head, 1, 0);
    sr_buf_put(&b->deps, head, sizeof head);
    size_t start = b->deps.len;
    sr_put_utf8(&b->deps, s, n);
    if (!b->deps.failed) sr_put_u32(b->deps.p, size_pos, (uint32_t)(8 + b->deps.len - start));
    return id;
}

/* A descriptor record (SpanRecord / SpanLocationRecord / LogMetadataRecord /
 * MetricMetadataDependency), its strings first, once per block. Returns the record's id. */
static uint64_t sr_dep_desc(sr_builder *b, const sirius_desc *d, uint64_t tag) {
    uint64_t id = tag | (uint64_t)(uintptr_t)d;
    if (!sr_idset_add(&b->ids, id)) return id;
    uint8_t rec[1 + 48];
    memset(rec, 0, sizeof rec);
    uint8_t *r = rec + 1;
    size_t size;
    if (tag == SR_ID_SPAN) {
        uint8_t si = SR_CPU_DEP_STATIC_STRING;
        rec[0] = SR_CPU_DEP_SPAN_RECORD;
        size = SR_UDT_SPAN_RECORD_SIZE;
        sr_put_u64(r, SR_UDT_SPAN_RECORD_OFF_ID, id);
        sr_put_u64(r, SR_UDT_SPAN_RECORD_OFF_NAME, sr_dep_string(b, d->name, si));
        sr_put_u64(r, SR_UDT_SPAN_RECORD_OFF_TARGET, sr_dep_string(b, d->target, si));
        sr_put_u64(r, SR_UDT_SPAN_RECORD_OFF_MODULE_PATH, sr_dep_string(b, d->module_path, si));
        sr_put_u64(r, SR_UDT_SPAN_RECORD_OFF_FILE, sr_dep_string(b, d->file, si));
        sr_put_u32(r, SR_UDT_SPAN_RECORD_OFF_LINE, d->line);
        sr_put_u32(r, SR_UDT_SPAN_RECORD_OFF_LOD, d->level);
    } else if (tag == SR_ID_LOCATION) {
        uint8_t si = SR_CPU_DEP_STATIC_STRING;
        rec[0] = SR_CPU_DEP_SPAN_LOCATION_RECORD;
        size = SR_UDT_SPAN_LOCATION_RECORD_SIZE;
        sr_put_u64(r, SR_UDT_SPAN_LOCATION_RECORD_OFF_ID, id);
        sr_put_u64(r, SR_UDT_SPAN_LOCATION_RECORD_OFF_TARGET, sr_dep_string(b, d->target, si));
        sr_put_u64(r, SR_UDT_SPAN_LOCATION_RECORD_OFF_MODULE_PATH, sr_dep_string(b, d->module_path, si));
        sr_put_u64(r, SR_UDT_SPAN_LOCATION_RECORD_OFF_FILE, sr_dep_string(b, d->file, si));
        sr_put_u32(r, SR_UDT_SPAN_LOCATION_RECORD_OFF_LINE, d->line);
        sr_put_u32(r, SR_UDT_SPAN_LOCATION_RECORD_OFF_LOD, d->level);
    } else if (tag == SR_ID_LOG) {
        uint8_t si = SR_LOG_DEP_STATIC_STRING;
        rec[0] = SR_LOG_DEP_LOG_METADATA_RECORD;
        size = SR_UDT_LOG_METADATA_RECORD_SIZE;
        sr_put_u64(r, SR_UDT_LOG_METADATA_RECORD_OFF_ID, id);
        sr_put_u64(r, SR_UDT_LOG_METADATA_RECORD_OFF_FMT_STR, sr_dep_string(b, d->name, si));
        sr_put_u64(r, SR_UDT_LOG_METADATA_RECORD_OFF_TARGET, sr_dep_string(b, d->target, si));
        sr_put_u64(r, SR_UDT_LOG_METADATA_RECORD_OFF_MODULE_PATH, sr_dep_string(b, d->module_path, si));
        sr_put_u64(r, SR_UDT_LOG_METADATA_RECORD_OFF_FILE, sr_dep_string(b, d->file, si));
        sr_put_u32(r, SR_UDT_LOG_METADATA_RECORD_OFF_LINE, d->line);
        sr_put_u32(r, SR_UDT_LOG_METADATA_RECORD_OFF_LEVEL, d->level);
    } else {
        uint8_t si = SR_METRICS_DEP_STATIC_STRING;
        rec[0] = SR_METRICS_DEP_METRIC_METADATA_DEPENDENCY;
        size = SR_UDT_METRIC_METADATA_DEPENDENCY_SIZE;
        sr_put_u64(r, SR_UDT_METRIC_METADATA_DEPENDENCY_OFF_ID, id);
        sr_put_u64(r, SR_UDT_METRIC_METADATA_DEPENDENCY_OFF_NAME, sr_dep_string(b, d->name, si));
        sr_put_u64(r, SR_UDT_METRIC_METADATA_DEPENDENCY_OFF_UNIT, sr_dep_string(b, d->unit, si));
        sr_put_u64(r, SR_UDT_METRIC_METADATA_DEPENDENCY_OFF_TARGET, sr_dep_string(b, d->target, si));
        sr_put_u64(r, SR_UDT_METRIC_METADATA_DEPENDENCY_OFF_FILE, sr_dep_string(b, d->file, si));
        sr_put_u32(r, SR_UDT_METRIC_METADATA_DEPENDENCY_OFF_LINE, d->line);
        sr_put_u32(r, SR_UDT_METRIC_METADATA_DEPENDENCY_OFF_LOD, d->level);
    }
    sr_buf_put(&b->deps, rec, 1 + size);
    return id;
}

/* A PropertySetDependency, its strings first, once per block: [index][u32 size][u64 id]
 * [u32 count][count x Property {StaticStringRef name; StaticStringRef value}]. Returns its id. */
static uint64_t sr_dep_props(sr_builder *b, const sr_pset *ps, uint8_t string_index, uint8_t set_index) {
    if (!ps) ps = &sr_pset_empty;
    uint64_t id = SR_ID_PROPS | (uint64_t)(uintptr_t)ps;
    if (!sr_idset_add(&b->ids, id)) return id;
    for (uint32_t i = 0; i < 2 * ps->count; i++) sr_dep_string(b, ps->kv[i], string_index);
    uint8_t head[1 + 4 + 8 + 4];
    head[0] = set_index;
    sr_put_u32(head, 1, (uint32_t)(8 + 4 + (size_t)ps->count * SR_UDT_PROPERTY_SIZE));
    sr_put_u64(head, 5, id);
    sr_put_u32(head, 13, ps->count);
    sr_buf_put(&b->deps, head, sizeof head);
    for (uint32_t i = 0; i < ps->count; i++) {
        uint8_t prop[SR_UDT_PROPERTY_SIZE];
        memset(prop, 0, sizeof prop);
        static const size_t member[2] = {SR_UDT_PROPERTY_OFF_NAME, SR_UDT_PROPERTY_OFF_VALUE};
        for (int k = 0; k < 2; k++) {
            /* StaticStringRef {u64 id; u32 len; u8 codec} as a Rust producer writes it (UTF-8 = 2) */
            const char *text = ps->kv[2 * i + k];
            sr_put_u64(prop, member[k] + SR_UDT_STATIC_STRING_REF_OFF_ID, SR_ID_STRING | (uint64_t)(uintptr_t)text);
            sr_put_u32(prop, member[k] + 8, (uint32_t)strlen(text));
            sr_put_u8(prop, member[k] + 12, 2);
        }
        sr_buf_put(&b->deps, prop, sizeof prop);
    }
    return id;
}

static void sr_note_event(sr_builder *b, uint64_t ticks) {
    if (b->kind != SR_STREAM_CPU && !b->objs.failed && b->objs.len > b->rec_start) {
        sr_order_entry e = {ticks, b->rec_start, b->objs.len - b->rec_start};
        sr_buf_put(&b->order, &e, sizeof e);
    }
    if (b->nb_objects == 0) b->first_mono_ns = sr_mono_ns();
    b->nb_objects++;
    if (ticks < b->min_ticks) b->min_ticks = ticks;
}

static void sr_log_string_event(sr_builder *b, const sirius_desc *d, uint64_t ticks, const char *msg, size_t len) {
    uint64_t desc_id = sr_dep_desc(b, d, SR_ID_LOG);
    /* LogStringEventV2: [index][u32 size][u64 desc][i64 time][DynString: u8 codec, u32 len, bytes] */
    size_t body = 8 + 8 + 1 + 4 + len;
    uint8_t head[1 + 4 + 8 + 8 + 1 + 4];
    b->rec_start = b->objs.len;
    head[0] = SR_LOG_OBJ_LOG_STRING_EVENT_V2;
    sr_put_u32(head, 1, (uint32_t)body);
    sr_put_u64(head, 5, desc_id);
    sr_put_u64(head, 13, ticks);
    head[21] = 2; /* UTF-8 */
    sr_put_u32(head, 22, (uint32_t)len);
    sr_buf_put(&b->objs, head, sizeof head);
    sr_buf_put(&b->objs, msg, len);
    sr_note_event(b, ticks);
}

static void sr_tagged_log_event(sr_builder *b, const sirius_desc *d, const sr_pset *ps, uint64_t ticks,
                                const char *msg, size_t len) {
    uint64_t desc_id = sr_dep_desc(b, d, SR_ID_LOG);
    uint64_t props_id = sr_dep_props(b, ps, SR_LOG_DEP_STATIC_STRING, SR_LOG_DEP_PROPERTY_SET_DEPENDENCY);
    /* TaggedLogString: [index][u32 size][u64 desc][u64 properties][i64 time][DynString] */
    size_t body = 8 + 8 + 8 + 1 + 4 + len;
    uint8_t head[1 + 4 + 8 + 8 + 8 + 1 + 4];
    b->rec_start = b->objs.len;
    head[0] = SR_LOG_OBJ_TAGGED_LOG_STRING;
    sr_put_u32(head, 1, (uint32_t)body);
    sr_put_u64(head, 5, desc_id);
    sr_put_u64(head, 13, props_id);
    sr_put_u64(head, 21, ticks);
    head[29] = 2; /* UTF-8 */
    sr_put_u32(head, 30, (uint32_t)len);
    sr_buf_put(&b->objs, head, sizeof head);
    sr_buf_put(&b->objs, msg, len);
    sr_note_event(b, ticks);
}

/* The two tagged metric events share one layout: only the value's type differs. */
_Static_assert(SR_UDT_TAGGED_FLOAT_METRIC_EVENT_SIZE == SR_UDT_TAGGED_INTEGER_METRIC_EVENT_SIZE &&
                   SR_UDT_TAGGED_FLOAT_METRIC_EVENT_OFF_DESC == SR_UDT_TAGGED_INTEGER_METRIC_EVENT_OFF_DESC &&
                   SR_UDT_TAGGED_FLOAT_METRIC_EVENT_OFF_PROPERTIES ==
                       SR_UDT_TAGGED_INTEGER_METRIC_EVENT_OFF_PROPERTIES &&
                   SR_UDT_TAGGED_FLOAT_METRIC_EVENT_OFF_VALUE == SR_UDT_TAGGED_INTEGER_METRIC_EVENT_OFF_VALUE &&
                   SR_UDT_TAGGED_FLOAT_METRIC_EVENT_OFF_TIME == SR_UDT_TAGGED_INTEGER_METRIC_EVENT_OFF_TIME,
               "tagged metric layouts differ");

/* SR_EV_TAGGED: a tagged metric (32 B) or log (32 B + message). Returns the record size, 0 if corrupt. */
static size_t sr_transcode_tagged(const sirius_desc *d, uint64_t ticks, const uint8_t *p, size_t avail) {
    if (avail < 32) return 0;
    uint64_t word, value;
    memcpy(&word, p + 16, 8);
    memcpy(&value, p + 24, 8);
    const sr_pset *ps = (const sr_pset *)(uintptr_t)(word & ~SR_KIND_MASK);
    unsigned sub = (unsigned)(word & SR_KIND_MASK);
    if (sub == SR_TAGGED_LOG) {
        size_t size = 32 + ((value + 7) & ~(uint64_t)7);
        if (value > SR_MAX_LOG_BYTES || size > avail) return 0;
        sr_tagged_log_event(sr_g.log, d, ps, ticks, (const char *)p + 32, (size_t)value);
        return size;
    }
    if (sub != SR_TAGGED_INT && sub != SR_TAGGED_FLOAT) return 0;
    sr_builder *m = sr_g.metrics;
    uint64_t id = sr_dep_desc(m, d, SR_ID_METRIC);
    uint64_t props_id = sr_dep_props(m, ps, SR_METRICS_DEP_STATIC_STRING, SR_METRICS_DEP_PROPERTY_SET_DEPENDENCY);
    uint8_t *o = sr_obj(m,
                        sub == SR_TAGGED_INT ? SR_METRICS_OBJ_TAGGED_INTEGER_METRIC_EVENT
                                             : SR_METRICS_OBJ_TAGGED_FLOAT_METRIC_EVENT,
                        SR_UDT_TAGGED_INTEGER_METRIC_EVENT_SIZE);
    if (o) {
        sr_put_u64(o, SR_UDT_TAGGED_INTEGER_METRIC_EVENT_OFF_DESC, id);
        sr_put_u64(o, SR_UDT_TAGGED_INTEGER_METRIC_EVENT_OFF_PROPERTIES, props_id);
        sr_put_u64(o, SR_UDT_TAGGED_INTEGER_METRIC_EVENT_OFF_VALUE, value);
        sr_put_u64(o, SR_UDT_TAGGED_INTEGER_METRIC_EVENT_OFF_TIME, ticks);
    }
    sr_note_event(m, ticks);
    return 32;
}

/* ---------------------------------------------------------------------------------------------
 * transcoding one thread's records */

/* Returns the record size, 0 for a corrupt record (the rest of the chunk is skipped). */
static size_t sr_transcode(sr_thread *t, const uint8_t *p, size_t avail) {
    if (avail < 16) return 0;
    uint64_t tag, ticks;
    memcpy(&tag, p, 8);
    memcpy(&ticks, p + 8, 8);
    const sirius_desc *d = (const sirius_desc *)(uintptr_t)(tag & ~SR_KIND_MASK);
    unsigned kind = (unsigned)(tag & SR_KIND_MASK);
    sr_builder *cpu = t->cpu;
    uint8_t *o;
    switch (kind) {
    case SR_EV_SPAN_BEGIN:
    case SR_EV_SPAN_END: {
        uint64_t id = sr_dep_desc(cpu, d, SR_ID_SPAN);
        int begin = kind == SR_EV_SPAN_BEGIN;
        o = sr_obj(cpu, begin ? SR_CPU_OBJ_BEGIN_THREAD_SPAN_EVENT : SR_CPU_OBJ_END_THREAD_SPAN_EVENT,
                   SR_UDT_BEGIN_THREAD_SPAN_EVENT_SIZE);
        if (o) {
            sr_put_u64(o, SR_UDT_BEGIN_THREAD_SPAN_EVENT_OFF_THREAD_SPAN_DESC, id);
            sr_put_u64(o, SR_UDT_BEGIN_THREAD_SPAN_EVENT_OFF_TIME, ticks);
        }
        sr_note_event(cpu, ticks);
        return 16;
    }
    case SR_EV_NAMED_BEGIN:
    case SR_EV_NAMED_END: {
        if (avail < 24) return 0;
        uint64_t name;
        memcpy(&name, p + 16, 8);
        const char *text = (const char *)(uintptr_t)name;
        uint64_t id = sr_dep_desc(cpu, d, SR_ID_LOCATION);
        uint64_t name_id = sr_dep_string(cpu, text, SR_CPU_DEP_STATIC_STRING);
        int begin = kind == SR_EV_NAMED_BEGIN;
        o = sr_obj(cpu, begin ? SR_CPU_OBJ_BEGIN_THREAD_NAMED_SPAN_EVENT : SR_CPU_OBJ_END_THREAD_NAMED_SPAN_EVENT,
                   SR_UDT_BEGIN_THREAD_NAMED_SPAN_EVENT_SIZE);
        if (o) {
            sr_put_u64(o, SR_UDT_BEGIN_THREAD_NAMED_SPAN_EVENT_OFF_THREAD_SPAN_LOCATION, id);
            /* StringId {u64 id; u32 len} */
            sr_put_u64(o, SR_UDT_BEGIN_THREAD_NAMED_SPAN_EVENT_OFF_NAME + SR_UDT_STRING_ID_OFF_ID, name_id);
            sr_put_u32(o, SR_UDT_BEGIN_THREAD_NAMED_SPAN_EVENT_OFF_NAME + 8, (uint32_t)strlen(text ? text : ""));
            sr_put_u64(o, SR_UDT_BEGIN_THREAD_NAMED_SPAN_EVENT_OFF_TIME, ticks);
        }
        sr_note_event(cpu, ticks);
        return 24;
    }
    case SR_EV_ASYNC_BEGIN:
    case SR_EV_ASYNC_END: {
        if (avail < 40) return 0;
        uint64_t span_id, parent, depth;
        memcpy(&span_id, p + 16, 8);
        memcpy(&parent, p + 24, 8);
        memcpy(&depth, p + 32, 8);
        uint64_t id = sr_dep_desc(cpu, d, SR_ID_SPAN);
        int begin = kind == SR_EV_ASYNC_BEGIN;
        o = sr_obj(cpu, begin ? SR_CPU_OBJ_BEGIN_ASYNC_SPAN_EVENT : SR_CPU_OBJ_END_ASYNC_SPAN_EVENT,
                   SR_UDT_BEGIN_ASYNC_SPAN_EVENT_SIZE);
        if (o) {
            sr_put_u64(o, SR_UDT_BEGIN_ASYNC_SPAN_EVENT_OFF_SPAN_DESC, id);
            sr_put_u64(o, SR_UDT_BEGIN_ASYNC_SPAN_EVENT_OFF_SPAN_ID, span_id);
            sr_put_u64(o, SR_UDT_BEGIN_ASYNC_SPAN_EVENT_OFF_PARENT_SPAN_ID, parent);
            sr_put_u32(o, SR_UDT_BEGIN_ASYNC_SPAN_EVENT_OFF_DEPTH, (uint32_t)depth);
            sr_put_u64(o, SR_UDT_BEGIN_ASYNC_SPAN_EVENT_OFF_TIME, ticks);
        }
        sr_note_event(cpu, ticks);
        return 40;
    }
    case SR_EV_ASYNC_NAMED_BEGIN:
    case SR_EV_ASYNC_NAMED_END: {
        if (avail < 48) return 0;
        uint64_t span_id, parent, depth, name;
        memcpy(&span_id, p + 16, 8);
        memcpy(&parent, p + 24, 8);
        memcpy(&depth, p + 32, 8);
        memcpy(&name, p + 40, 8);
        const char *text = (const char *)(uintptr_t)name;
        uint64_t id = sr_dep_desc(cpu, d, SR_ID_LOCATION);
        uint64_t name_id = sr_dep_string(cpu, text, SR_CPU_DEP_STATIC_STRING);
        int begin = kind == SR_EV_ASYNC_NAMED_BEGIN;
        o = sr_obj(cpu, begin ? SR_CPU_OBJ_BEGIN_ASYNC_NAMED_SPAN_EVENT : SR_CPU_OBJ_END_ASYNC_NAMED_SPAN_EVENT,
                   SR_UDT_BEGIN_ASYNC_NAMED_SPAN_EVENT_SIZE);
        if (o) {
            sr_put_u64(o, SR_UDT_BEGIN_ASYNC_NAMED_SPAN_EVENT_OFF_SPAN_LOCATION, id);
            /* StringId {u64 id; u32 len} */
            sr_put_u64(o, SR_UDT_BEGIN_ASYNC_NAMED_SPAN_EVENT_OFF_NAME + SR_UDT_STRING_ID_OFF_ID, name_id);
            sr_put_u32(o, SR_UDT_BEGIN_ASYNC_NAMED_SPAN_EVENT_OFF_NAME + 8, (uint32_t)strlen(text ? text : ""));
            sr_put_u64(o, SR_UDT_BEGIN_ASYNC_NAMED_SPAN_EVENT_OFF_SPAN_ID, span_id);
            sr_put_u64(o, SR_UDT_BEGIN_ASYNC_NAMED_SPAN_EVENT_OFF_PARENT_SPAN_ID, parent);
            sr_put_u32(o, SR_UDT_BEGIN_ASYNC_NAMED_SPAN_EVENT_OFF_DEPTH, (uint32_t)depth);
            sr_put_u64(o, SR_UDT_BEGIN_ASYNC_NAMED_SPAN_EVENT_OFF_TIME, ticks);
        }
        sr_note_event(cpu, ticks);
        return 48;
    }
    case SR_EV_METRIC_INT:
    case SR_EV_METRIC_FLOAT: {
        if (avail < 24) return 0;
        sr_builder *m = sr_g.metrics;
        uint64_t value;
        memcpy(&value, p + 16, 8);
        uint64_t id = sr_dep_desc(m, d, SR_ID_METRIC);
        int is_int = kind == SR_EV_METRIC_INT;
        o = sr_obj(m, is_int ? SR_METRICS_OBJ_INTEGER_METRIC_EVENT : SR_METRICS_OBJ_FLOAT_METRIC_EVENT,
                   SR_UDT_INTEGER_METRIC_EVENT_SIZE);
        if (o) {
            sr_put_u64(o, SR_UDT_INTEGER_METRIC_EVENT_OFF_DESC, id);
            sr_put_u64(o, SR_UDT_INTEGER_METRIC_EVENT_OFF_VALUE, value);
            sr_put_u64(o, SR_UDT_INTEGER_METRIC_EVENT_OFF_TIME, ticks);
        }
        sr_note_event(m, ticks);
        return 24;
    }
    case SR_EV_LOG_STATIC: {
        sr_builder *l = sr_g.log;
        uint64_t id = sr_dep_desc(l, d, SR_ID_LOG);
        o = sr_obj(l, SR_LOG_OBJ_LOG_STATIC_STR_EVENT, SR_UDT_LOG_STATIC_STR_EVENT_SIZE);
        if (o) {
            sr_put_u64(o, SR_UDT_LOG_STATIC_STR_EVENT_OFF_DESC, id);
            sr_put_u64(o, SR_UDT_LOG_STATIC_STR_EVENT_OFF_TIME, ticks);
        }
        sr_note_event(l, ticks);
        return 16;
    }
    case SR_EV_LOG_STRING: {
        if (avail < 24) return 0;
        uint64_t len;
        memcpy(&len, p + 16, 8);
        size_t size = 24 + ((len + 7) & ~(uint64_t)7);
        if (len > SR_MAX_LOG_BYTES || size > avail) return 0;
        sr_log_string_event(sr_g.log, d, ticks, (const char *)p + 24, (size_t)len);
        return size;
    }
    case SR_EV_TAGGED:
        return sr_transcode_tagged(d, ticks, p, avail);
    default:
        return 0;
    }
}

static uint64_t sr_transcode_range(sr_thread *t, const uint8_t *p, size_t n) {
    uint64_t events = 0;
    size_t off = 0;
    while (off < n) {
        size_t used = sr_transcode(t, p + off, n - off);
        if (!used) break;
        off += used;
        events++;
    }
    return events;
}

/* Copy everything committed in t's ring, oldest chunk first. */
static void sr_drain(sr_thread *t) {
    uint64_t events = 0;
    for (uint32_t guard = 0; guard <= t->nchunks; guard++) {
        sr_chunk *c = &t->chunks[t->read_idx];
        /* acquire: pairs with the owner's release stores of state/committed */
        uint32_t state = atomic_load_explicit(&c->state, memory_order_acquire);
        if (state == SR_CHUNK_FREE) break;
        uint64_t committed = atomic_load_explicit(&c->committed, memory_order_acquire);
        if (committed > t->chunk_size) committed = t->chunk_size;
        if (committed > t->read_off) {
            events += sr_transcode_range(t, c->data + t->read_off, (size_t)(committed - t->read_off));
            t->read_off = committed;
        }
        if (state != SR_CHUNK_SEALED) break; /* the owner is still writing this one */
        t->read_off = 0;
        /* release: our reads of the chunk happen before the owner may overwrite it */
        atomic_store_explicit(&c->state, SR_CHUNK_FREE, memory_order_release);
        t->read_idx = (t->read_idx + 1) % t->nchunks;
    }
    atomic_fetch_add(&sr_g.events_recorded, events);
}

/* Loss made visible in the data: a Warn log and a `sirius.tracing.dropped_events` metric. */
static void sr_report_drops(sr_thread *t) {
    uint64_t dropped = atomic_load_explicit(&t->dropped, memory_order_relaxed);
    if (dropped == t->dropped_seen) return;
    uint64_t delta = dropped - t->dropped_seen;
    t->dropped_seen = dropped;
    atomic_fetch_add(&sr_g.events_dropped, delta);
    atomic_fetch_add(&sr_g.events_lost, delta);
    atomic_fetch_add(&sr_g.events_internal, 2); /* the log and the metric below */
    uint64_t now = sr_clock_ticks();
    char msg[160];
    int n = snprintf(msg, sizeof msg, "dropped %llu events on thread %llu (%s): buffers full",
                     (unsigned long long)delta, (unsigned long long)t->tid, t->name);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
    sr_log_string_event(sr_g.log, &sr_drop_log_desc, now, msg, (size_t)n);
    sr_builder *m = sr_g.metrics;
    uint64_t id = sr_dep_desc(m, &sr_drop_metric_desc, SR_ID_METRIC);
    uint8_t *o = sr_obj(m, SR_METRICS_OBJ_INTEGER_METRIC_EVENT, SR_UDT_INTEGER_METRIC_EVENT_SIZE);
    if (o) {
        sr_put_u64(o, SR_UDT_INTEGER_METRIC_EVENT_OFF_DESC, id);
        sr_put_u64(o, SR_UDT_INTEGER_METRIC_EVENT_OFF_VALUE, delta);
        sr_put_u64(o, SR_UDT_INTEGER_METRIC_EVENT_OFF_TIME, now);
    }
    sr_note_event(m, now);
}

/* ---------------------------------------------------------------------------------------------
 * output queue */

static void sr_queue_push(int kind, sr_buf *body, uint32_t nb_objects) {
    if (body->failed) {
        if (kind == SIRIUS_ITEM_BLOCK) {
            atomic_fetch_add(&sr_g.blocks_dropped, 1);
            atomic_fetch_add(&sr_g.events_dropped, nb_objects);
            atomic_fetch_add(&sr_g.events_queue_dropped, nb_objects);
        }
        return;
    }
    pthread_mutex_lock(&sr_g.qlock);
    /* Metadata is never dropped; blocks are shed when the deliverer is behind by the budget. */
    if (kind == SIRIUS_ITEM_BLOCK && sr_g.qbytes + body->len > sr_g.cfg.max_queue_bytes) {
        pthread_mutex_unlock(&sr_g.qlock);
        atomic_fetch_add(&sr_g.blocks_dropped, 1);
        atomic_fetch_add(&sr_g.events_dropped, nb_objects);
        atomic_fetch_add(&sr_g.events_queue_dropped, nb_objects);
        return;
    }
    sr_item *it = malloc(sizeof *it + body->len);
    if (!it) {
        pthread_mutex_unlock(&sr_g.qlock);
        if (kind == SIRIUS_ITEM_BLOCK) {
            atomic_fetch_add(&sr_g.blocks_dropped, 1);
            atomic_fetch_add(&sr_g.events_dropped, nb_objects);
            atomic_fetch_add(&sr_g.events_queue_dropped, nb_objects);
        }
        return;
    }
    it->next = NULL;
    it->kind = kind;
    it->nb_objects = nb_objects;
    it->size = body->len;
    memcpy(it->data, body->p, body->len);
    if (sr_g.qtail) sr_g.qtail->next = it;
    else sr_g.qhead = it;
    sr_g.qtail = it;
    sr_g.qbytes += it->size;
    sr_g.qitems++;
    sr_g.qevents += nb_objects;
    sr_g.qtotal++;
    pthread_cond_broadcast(&sr_g.qcond);
    pthread_mutex_unlock(&sr_g.qlock);
    if (kind == SIRIUS_ITEM_BLOCK) {
        atomic_fetch_add(&sr_g.blocks_produced, 1);
        atomic_fetch_add(&sr_g.bytes_produced, body->len);
    }
}

void sr_queue_reset(void) {
    pthread_mutex_lock(&sr_g.qlock);
    sr_item *it = sr_g.qhead;
    while (it) {
        sr_item *next = it->next;
        free(it);
        it = next;
    }
    sr_g.qhead = sr_g.qtail = NULL;
    sr_g.qbytes = sr_g.qitems = 0;
    sr_g.qevents = 0;
    sr_g.qtotal = 0;
    sr_g.qclosed = 0;
    sr_g.process_sent = 0;
    pthread_mutex_unlock(&sr_g.qlock);
}

int64_t sirius_next_item(void *buf, size_t cap, int timeout_ms, sirius_item_info *info) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    if (timeout_ms > 0) {
        deadline.tv_sec += timeout_ms / 1000;
        deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }
    }
    pthread_mutex_lock(&sr_g.qlock);
    while (!sr_g.qhead && !sr_g.qclosed && timeout_ms != 0) {
        int rc = timeout_ms < 0 ? pthread_cond_wait(&sr_g.qcond, &sr_g.qlock)
                                : pthread_cond_timedwait(&sr_g.qcond, &sr_g.qlock, &deadline);
        if (rc == ETIMEDOUT) break;
    }
    sr_item *it = sr_g.qhead;
    if (!it) {
        int closed = sr_g.qclosed;
        pthread_mutex_unlock(&sr_g.qlock);
        return closed ? SIRIUS_E_CLOSED : 0;
    }
    if (info) {
        info->kind = it->kind;
        info->nb_objects = it->nb_objects;
        info->size = it->size;
    }
    if (it->size > cap) {
        pthread_mutex_unlock(&sr_g.qlock);
        return SIRIUS_E_TOO_SMALL;
    }
    sr_g.qhead = it->next;
    if (!sr_g.qhead) sr_g.qtail = NULL;
    sr_g.qbytes -= it->size;
    sr_g.qitems--;
    sr_g.qevents -= it->nb_objects;
    atomic_fetch_add(&sr_g.events_popped, it->nb_objects);
    pthread_mutex_unlock(&sr_g.qlock);
    memcpy(buf, it->data, it->size);
    int64_t n = (int64_t)it->size;
    free(it);
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * ingestion bodies */

static void sr_cbor_process(sr_buf *b) {
    uint64_t freq = sr_calibrate(1);
    sr_cbor_head(b, 5, 12);
    sr_cbor_text(b, "process_id");
    sr_cbor_uuid(b, sr_g.process_id);
    sr_cbor_text(b, "exe");
    sr_cbor_text(b, sr_g.exe);
    sr_cbor_text(b, "username");
    sr_cbor_text(b, sr_g.username);
    sr_cbor_text(b, "realname");
    sr_cbor_text(b, sr_g.realname);
    sr_cbor_text(b, "computer");
    sr_cbor_text(b, sr_g.computer);
    sr_cbor_text(b, "distro");
    sr_cbor_text(b, sr_g.distro);
    sr_cbor_text(b, "cpu_brand");
    sr_cbor_text(b, sr_g.cpu_brand);
    sr_cbor_text(b, "tsc_frequency");
    sr_cbor_int(b, (int64_t)freq);
    sr_cbor_text(b, "start_time");
    sr_cbor_time(b, sr_g.start.real_ns);
    sr_cbor_text(b, "start_ticks");
    sr_cbor_int(b, (int64_t)sr_g.start.ticks);
    sr_cbor_text(b, "parent_process_id");
    if (sr_g.has_parent) sr_cbor_uuid(b, sr_g.parent_id);
    else sr_cbor_null(b);
    sr_cbor_text(b, "properties");
    sr_cbor_head(b, 5, sr_g.nproperties);
    for (size_t i = 0; i < sr_g.nproperties; i++) {
        sr_cbor_text(b, sr_g.properties[2 * i]);
        sr_cbor_text(b, sr_g.properties[2 * i + 1]);
    }
}

int64_t sr_encode_process(void *buf, size_t cap) {
    sr_buf b = {0};
    sr_cbor_process(&b);
    if (b.failed) {
        sr_buf_free(&b);
        return SIRIUS_E_NOMEM;
    }
    int64_t n = (int64_t)b.len;
    if (b.len <= cap) memcpy(buf, b.p, b.len);
    else n = SIRIUS_E_TOO_SMALL;
    sr_buf_free(&b);
    return n;
}

static void sr_ensure_process(void) {
    if (sr_g.process_sent) return;
    sr_buf b = {0};
    sr_cbor_process(&b);
    sr_queue_push(SIRIUS_ITEM_PROCESS, &b, 0);
    sr_buf_free(&b);
    sr_g.process_sent = 1;
}

static void sr_ensure_stream(sr_builder *s) {
    if (s->stream_sent) return;
    static const char *const tags[] = {"cpu", "log", "metrics"};
    sr_buf b = {0};
    sr_cbor_head(&b, 5, 6);
    sr_cbor_text(&b, "process_id");
    sr_cbor_uuid(&b, sr_g.process_id);
    sr_cbor_text(&b, "stream_id");
    sr_cbor_uuid(&b, s->stream_id);
    sr_cbor_text(&b, "dependencies_metadata");
    if (s->kind == SR_STREAM_CPU) sr_buf_put(&b, SR_CPU_DEPENDENCIES_METADATA_CBOR, sizeof SR_CPU_DEPENDENCIES_METADATA_CBOR);
    else if (s->kind == SR_STREAM_LOG) sr_buf_put(&b, SR_LOG_DEPENDENCIES_METADATA_CBOR, sizeof SR_LOG_DEPENDENCIES_METADATA_CBOR);
    else sr_buf_put(&b, SR_METRICS_DEPENDENCIES_METADATA_CBOR, sizeof SR_METRICS_DEPENDENCIES_METADATA_CBOR);
    sr_cbor_text(&b, "objects_metadata");
    if (s->kind == SR_STREAM_CPU) sr_buf_put(&b, SR_CPU_OBJECTS_METADATA_CBOR, sizeof SR_CPU_OBJECTS_METADATA_CBOR);
    else if (s->kind == SR_STREAM_LOG) sr_buf_put(&b, SR_LOG_OBJECTS_METADATA_CBOR, sizeof SR_LOG_OBJECTS_METADATA_CBOR);
    else sr_buf_put(&b, SR_METRICS_OBJECTS_METADATA_CBOR, sizeof SR_METRICS_OBJECTS_METADATA_CBOR);
    sr_cbor_text(&b, "tags");
    sr_cbor_head(&b, 4, 1);
    sr_cbor_text(&b, tags[s->kind]);
    sr_cbor_text(&b, "properties");
    if (s->kind == SR_STREAM_CPU) {
        char tid[24];
        snprintf(tid, sizeof tid, "%llu", (unsigned long long)s->tid);
        sr_cbor_head(&b, 5, s->name[0] ? 2 : 1);
        sr_cbor_text(&b, "thread-id");
        sr_cbor_text(&b, tid);
        if (s->name[0]) {
            sr_cbor_text(&b, "thread-name");
            sr_cbor_text(&b, s->name);
        }
    } else {
        sr_cbor_head(&b, 5, 0);
    }
    sr_queue_push(SIRIUS_ITEM_STREAM, &b, 0);
    sr_buf_free(&b);
    s->stream_sent = 1;
}

static size_t sr_compress(const sr_buf *in, size_t at) {
    size_t need = at + sr_lz4_frame_bound(in->len);
    if (need > sr_scratch_cap) {
        size_t cap = sr_scratch_cap ? sr_scratch_cap : 1 << 20;
        while (cap < need) cap *= 2;
        uint8_t *p = realloc(sr_scratch, cap);
        if (!p) return SIZE_MAX;
        sr_scratch = p;
        sr_scratch_cap = cap;
    }
    return sr_lz4_frame_compress(in->len ? in->p : (const uint8_t *)"", in->len, sr_scratch + at, sr_lz4_table);
}

/* Seal the open block of s with end anchor `end`; the next block begins there. */
static void sr_finalize(sr_builder *s, const sr_anchor *end) {
    if (s->nb_objects == 0) return;
    sr_ensure_process();
    sr_ensure_stream(s);
    uint64_t freq = sr_calibrate(1);
    sr_anchor begin = s->begin;
    /* Events copied after the previous seal may predate its anchor: widen the begin so the
     * block's [begin, end] contains all of its events (blocks then overlap slightly, which
     * readers accept, as from older Micromegas producers). */
    if (s->min_ticks < begin.ticks) {
        double back_ns = (double)(begin.ticks - s->min_ticks) * 1e9 / (double)freq;
        begin.real_ns -= (int64_t)(back_ns + 0.5);
        begin.ticks = s->min_ticks;
    }
    sr_buf b = {0};
    size_t deps_len = sr_compress(&s->deps, 0);
    size_t objs_len = deps_len == SIZE_MAX ? SIZE_MAX : sr_compress(&s->objs, deps_len);
    if (objs_len == SIZE_MAX || s->objs.failed || s->deps.failed) {
        b.failed = 1;
    } else {
        uint8_t block_id[16];
        sr_uuid4(block_id);
        sr_cbor_head(&b, 5, 10);
        sr_cbor_text(&b, "block_id");
        sr_cbor_uuid(&b, block_id);
        sr_cbor_text(&b, "stream_id");
        sr_cbor_uuid(&b, s->stream_id);
        sr_cbor_text(&b, "process_id");
        sr_cbor_uuid(&b, sr_g.process_id);
        sr_cbor_text(&b, "begin_time");
        sr_cbor_time(&b, begin.real_ns);
        sr_cbor_text(&b, "begin_ticks");
        sr_cbor_int(&b, (int64_t)(begin.ticks - sr_g.start.ticks));
        sr_cbor_text(&b, "end_time");
        sr_cbor_time(&b, end->real_ns < begin.real_ns ? begin.real_ns : end->real_ns);
        sr_cbor_text(&b, "end_ticks");
        sr_cbor_int(&b, (int64_t)(end->ticks - sr_g.start.ticks));
        sr_cbor_text(&b, "payload");
        sr_cbor_head(&b, 5, 2);
        sr_cbor_text(&b, "dependencies");
        sr_cbor_bytes(&b, sr_scratch, deps_len);
        sr_cbor_text(&b, "objects");
        sr_cbor_bytes(&b, sr_scratch + deps_len, objs_len);
        sr_cbor_text(&b, "object_offset");
        sr_cbor_int(&b, (int64_t)s->object_offset);
        sr_cbor_text(&b, "nb_objects");
        sr_cbor_int(&b, s->nb_objects);
    }
    sr_queue_push(SIRIUS_ITEM_BLOCK, &b, s->nb_objects);
    sr_buf_free(&b);
    s->object_offset += s->nb_objects;
    s->nb_objects = 0;
    s->objs.len = s->deps.len = 0;
    s->objs.failed = s->deps.failed = 0;
    s->order.len = 0;
    sr_idset_clear(&s->ids);
    s->min_ticks = UINT64_MAX;
    s->begin = *end;
}

void sr_builder_release(sr_thread *t) {
    sr_builder_free(t->cpu);
    t->cpu = NULL;
}

static int sr_due(const sr_builder *s, int force, int64_t now_mono) {
    if (s->nb_objects == 0) return 0;
    if (force || s->objs.len >= sr_g.cfg.block_size) return 1;
    return now_mono - s->first_mono_ns >= (int64_t)sr_g.cfg.flush_period_ms * 1000000;
}

/* ---------------------------------------------------------------------------------------------
 * registry */

sr_thread *sr_registry_push(sr_thread *t) {
    sr_thread *head = atomic_load_explicit(&sr_g.threads, memory_order_relaxed);
    do {
        atomic_store_explicit(&t->next, head, memory_order_relaxed);
        /* release: the struct's initialisation is visible to the sink that loads the head */
    } while (!atomic_compare_exchange_weak_explicit(&sr_g.threads, &head, t, memory_order_release,
                                                    memory_order_relaxed));
    return t;
}

static void sr_registry_unlink(sr_thread *prev, sr_thread *t) {
    sr_thread *next = atomic_load_explicit(&t->next, memory_order_relaxed);
    if (prev) {
        atomic_store_explicit(&prev->next, next, memory_order_relaxed);
        return;
    }
    sr_thread *expected = t;
    if (atomic_compare_exchange_strong(&sr_g.threads, &expected, next)) return;
    /* new threads were pushed in front of t: only the sink unlinks, so t's predecessor is
     * stable once found */
    for (sr_thread *p = atomic_load(&sr_g.threads); p; p = atomic_load(&p->next)) {
        if (atomic_load_explicit(&p->next, memory_order_relaxed) == t) {
            atomic_store_explicit(&p->next, next, memory_order_relaxed);
            return;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * the pass */

static int sr_order_cmp(const void *a, const void *b) {
    const sr_order_entry *x = a, *y = b;
    if (x->ticks != y->ticks) return x->ticks < y->ticks ? -1 : 1;
    return x->off < y->off ? -1 : x->off > y->off; /* stable: one thread's events keep their order */
}

/* Put the records appended to b during this pass in time order. */
static void sr_order_pass(sr_builder *b) {
    size_t n = b->order.len / sizeof(sr_order_entry);
    sr_order_entry *e = (sr_order_entry *)b->order.p;
    int sorted = 1;
    for (size_t i = 1; i < n && sorted; i++) sorted = e[i - 1].ticks <= e[i].ticks;
    if (!sorted && !b->objs.failed && !b->order.failed) {
        size_t start = e[0].off, total = b->objs.len - start;
        uint8_t *copy = malloc(total);
        if (copy) {
            qsort(e, n, sizeof *e, sr_order_cmp);
            size_t pos = 0;
            for (size_t i = 0; i < n; i++) {
                memcpy(copy + pos, b->objs.p + e[i].off, e[i].len);
                pos += e[i].len;
            }
            if (pos == total) memcpy(b->objs.p + start, copy, total);
            free(copy);
        }
    }
    b->order.len = 0;
    b->order.failed = 0;
}

static void sr_pass(int force) {
    sr_thread *exited = NULL;
    sr_thread *prev = NULL;
    sr_thread *t = atomic_load_explicit(&sr_g.threads, memory_order_acquire);
    while (t) {
        sr_thread *next = atomic_load_explicit(&t->next, memory_order_acquire);
        /* flags before the drain: an EXITED owner sealed its last chunk before setting it */
        uint32_t flags = atomic_load_explicit(&t->flags, memory_order_acquire);
        if (!t->cpu) {
            sr_anchor a = {t->attach_ticks, 0, t->attach_time_ns};
            t->cpu = sr_builder_new(SR_STREAM_CPU, t->stream_id, a);
            if (t->cpu) {
                t->cpu->tid = t->tid;
                memcpy(t->cpu->name, t->name, sizeof t->name);
            }
        }
        if (t->cpu) {
            sr_drain(t);
            sr_report_drops(t);
        }
        if (flags & SR_THREAD_EXITED) {
            sr_registry_unlink(prev, t);
            atomic_store_explicit(&t->next, exited, memory_order_relaxed);
            exited = t;
        } else {
            prev = t;
        }
        t = next;
    }
    sr_order_pass(sr_g.log);
    sr_order_pass(sr_g.metrics);
    /* end anchor after reading: every event copied so far is older than it */
    sr_anchor end = sr_anchor_now();
    int64_t now_mono = end.mono_ns;
    for (t = atomic_load(&sr_g.threads); t; t = atomic_load(&t->next))
        if (t->cpu && sr_due(t->cpu, force, now_mono)) sr_finalize(t->cpu, &end);
    while (exited) {
        sr_thread *next = atomic_load_explicit(&exited->next, memory_order_relaxed);
        if (exited->cpu) {
            sr_finalize(exited->cpu, &end);
            sr_builder_free(exited->cpu);
        }
        sr_thread_free(exited);
        atomic_fetch_sub(&sr_g.nthreads, 1);
        exited = next;
    }
    if (sr_due(sr_g.log, force, now_mono)) sr_finalize(sr_g.log, &end);
    if (sr_due(sr_g.metrics, force, now_mono)) sr_finalize(sr_g.metrics, &end);
    atomic_fetch_add(&sr_g.sink_passes, 1);
}

static void *sr_sink_main(void *arg) {
    (void)arg;
    sirius_set_thread_untraced(1);
    pthread_setname_np(pthread_self(), "sirius-sink");
    /* Wake at least 4 times per flush period (100 ms at most) to drain idle threads' buffers
     * before they fill and to seal blocks on age; producers also wake it on every sealed chunk. */
    int64_t interval_ns = (int64_t)sr_g.cfg.flush_period_ms * 1000000 / 4;
    if (interval_ns > 100000000) interval_ns = 100000000;
    if (interval_ns < 1000000) interval_ns = 1000000;
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)interval_ns;
        while (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        while (sem_timedwait(&sr_g.wake, &ts) != 0 && errno == EINTR) {
        }
        while (sem_trywait(&sr_g.wake) == 0) { /* coalesce wake-ups */
        }
        int stop = atomic_load(&sr_g.sink_stop);
        pthread_mutex_lock(&sr_g.lock);
        uint64_t gen = sr_g.flush_requested;
        int force = stop || gen > sr_g.flush_done;
        sr_pass(force);
        if (force) {
            sr_g.flush_done = gen;
            pthread_cond_broadcast(&sr_g.pass_done);
        }
        pthread_mutex_unlock(&sr_g.lock);
        if (stop) break;
    }
    return NULL;
}

void sr_sink_wake(void) {
    /* sem_post is a futex wake only when the sink sleeps: a syscall per sealed chunk at most */
    int v = 0;
    if (sem_getvalue(&sr_g.wake, &v) == 0 && v > 0) return;
    sem_post(&sr_g.wake);
}

int sr_sink_start(void) {
    atomic_store(&sr_g.sink_stop, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    int rc = pthread_create(&sr_g.sink_thread, &attr, sr_sink_main, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) return SIRIUS_E_NOMEM;
    sr_g.sink_started = 1;
    return 0;
}

void sr_sink_stop_and_join(void) {
    if (!sr_g.sink_started) return;
    atomic_store(&sr_g.sink_stop, 1);
    sem_post(&sr_g.wake);
    pthread_join(sr_g.sink_thread, NULL);
    sr_g.sink_started = 0;
}

int sr_sink_flush(int timeout_ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    int64_t ns = (int64_t)(timeout_ms < 0 ? 3600000 : timeout_ms) * 1000000 + deadline.tv_nsec;
    deadline.tv_sec += ns / 1000000000;
    deadline.tv_nsec = ns % 1000000000;
    pthread_mutex_lock(&sr_g.lock);
    uint64_t gen = ++sr_g.flush_requested;
    sem_post(&sr_g.wake);
    int rc = 0;
    while (sr_g.flush_done < gen && rc == 0) rc = pthread_cond_timedwait(&sr_g.pass_done, &sr_g.lock, &deadline);
    int ok = sr_g.flush_done >= gen;
    pthread_mutex_unlock(&sr_g.lock);
    return ok ? 0 : SIRIUS_E_TIMEOUT;
}
