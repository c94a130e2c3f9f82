/* sirius_tracing.h — the Sirius native tracer, public C API.
 *
 * A low-overhead tracer producing Micromegas transit blocks: thread spans, async spans, logs and
 * metrics are written into per-thread buffers with no lock on the hot path; a native sink thread
 * turns them into LZ4-compressed blocks of `cpu` (one per thread), `log` and `metrics` streams and
 * queues them, already CBOR-encoded as Micromegas ingestion bodies, for whoever delivers them
 * (`sirius_next_item`): the Python telemetry sink, or a C program's own HTTP client.
 *
 * Usage (C, no Python):
 *
 *     #include "sirius_tracing.h"
 *     sirius_config cfg;
 *     sirius_config_default(&cfg);
 *     sirius_init(&cfg);
 *     SIRIUS_SPAN_DESC(work_desc, "work");            // static descriptor, zero registration cost
 *     sirius_span_begin(&work_desc); ... sirius_span_end(&work_desc);
 *     SIRIUS_LOG(SIRIUS_LEVEL_INFO, "started");       // static message
 *     SIRIUS_LOGF(SIRIUS_LEVEL_WARN, "slow: %d ms", ms);
 *     SIRIUS_METRIC_INT("requests", "count", 1);
 *     const char *kv[] = {"rule_id", "r42"};               // interned once, reused by id
 *     sirius_property_set rule = sirius_property_set_new(kv, NULL, 1);
 *     SIRIUS_METRIC_TAGGED_INT("query_denied", "count", rule, 1);
 *     ... another thread: while ((n = sirius_next_item(buf, cap, 100, &info)) >= 0) post(info.kind, buf, n);
 *     sirius_shutdown(5000);
 *
 * Build: see tracing/native/README.md (cc each C file of tracing/native/core, then ar).
 * Thread safety: every function may be called from any thread. Hot calls (span/log/metric) never
 * block, never allocate after a thread's first event, and drop (counting) when buffers are full.
 * Not async-signal-safe: do not emit from signal handlers.
 */
#ifndef SIRIUS_TRACING_H
#define SIRIUS_TRACING_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>  /* snprintf in SIRIUS_LOGF */
#include <string.h> /* strlen in SIRIUS_LOG_TAGGED */

#ifdef __cplusplus
extern "C" {
#endif

#define SIRIUS_TRACING_ABI 2

/* Log levels, numbered as Micromegas does. */
enum {
    SIRIUS_LEVEL_FATAL = 1,
    SIRIUS_LEVEL_ERROR = 2,
    SIRIUS_LEVEL_WARN = 3,
    SIRIUS_LEVEL_INFO = 4,
    SIRIUS_LEVEL_DEBUG = 5,
    SIRIUS_LEVEL_TRACE = 6,
};

/* What a descriptor describes. */
enum {
    SIRIUS_DESC_SPAN = 1,     /* SpanRecord: name, target, module_path, file, line, lod */
    SIRIUS_DESC_LOCATION = 2, /* SpanLocationRecord of a dynamically named span (name unused) */
    SIRIUS_DESC_LOG = 3,      /* LogMetadataRecord: name is the static message / format; level */
    SIRIUS_DESC_METRIC = 4,   /* MetricMetadataDependency: name, unit */
};

/* A static description of a call site. Its address is its identity: it must live (and not
 * change) until the process exits — a `static const` in C, or sirius_desc_new() for dynamic ones.
 * Aligned to 16 because the low 4 bits of its address carry the event kind in thread buffers. */
typedef struct sirius_desc {
    uint32_t kind;           /* SIRIUS_DESC_* */
    uint32_t line;
    const char *name;        /* span name, log message/format, metric name (UTF-8, NUL-terminated) */
    const char *target;      /* e.g. a module or component name; NULL = "" */
    const char *module_path; /* NULL = "" */
    const char *file;        /* NULL = "" */
    const char *unit;        /* metrics only; NULL = "" */
    uint32_t level;          /* logs: SIRIUS_LEVEL_*; spans and metrics: level of detail (lod) */
    uint32_t reserved;
} __attribute__((aligned(16))) sirius_desc;

/* An interned string (sirius_intern): the id of an immortal copy. */
typedef uint64_t sirius_string;

/* A property set (sirius_property_set_new): the id of an immortal, interned list of (name, value)
 * strings that a tagged metric or log carries (Micromegas's PropertySet). 0 records as the empty set. */
typedef uint64_t sirius_property_set;

/* Most properties in one set. */
#define SIRIUS_MAX_PROPERTIES 1024

/* Tick source. */
enum {
    SIRIUS_CLOCK_AUTO = 0,      /* rdtsc / cntvct_el0 when invariant, else CLOCK_MONOTONIC */
    SIRIUS_CLOCK_TSC = 1,       /* force the CPU counter (if the platform has one) */
    SIRIUS_CLOCK_MONOTONIC = 2, /* clock_gettime(CLOCK_MONOTONIC), frequency 1e9 */
};

typedef struct sirius_config {
    size_t chunk_size;          /* bytes per thread-buffer chunk (default 64 KiB, min 1 KiB) */
    uint32_t chunks_per_thread; /* chunks in each thread's ring (default 16, min 2) */
    uint32_t max_threads;       /* threads traced at once; later ones stay untraced (default 4096) */
    size_t block_size;          /* uncompressed object bytes that seal a block (default 1 MiB) */
    uint32_t flush_period_ms;   /* a block is sealed at the latest this long after its first event (1000) */
    size_t max_queue_bytes;     /* budget of encoded blocks waiting in sirius_next_item's queue (64 MiB) */
    int clock;                  /* SIRIUS_CLOCK_* */
    int install_atexit;         /* flush into the queue at exit() (default 1) */
    /* Process identity (NULL / zero = computed): */
    const uint8_t *process_id;        /* 16 bytes; default a new UUIDv4 */
    const uint8_t *parent_process_id; /* 16 bytes; default $MICROMEGAS_TELEMETRY_PARENT_PROCESS */
    const char *exe, *username, *realname, *computer, *distro, *cpu_brand;
    const char *const *properties;    /* key, value, key, value, ..., NULL; "pid" is always set */
} sirius_config;

/* Items handed to the deliverer, each a complete CBOR body for one ingestion route. */
enum {
    SIRIUS_ITEM_PROCESS = 1, /* POST /ingestion/insert_process */
    SIRIUS_ITEM_STREAM = 2,  /* POST /ingestion/insert_stream */
    SIRIUS_ITEM_BLOCK = 3,   /* POST /ingestion/insert_block */
};

typedef struct sirius_item_info {
    int kind;            /* SIRIUS_ITEM_* */
    uint32_t nb_objects; /* events in a block item */
    size_t size;         /* body size (also set when the buffer is too small) */
} sirius_item_info;

/* Return codes (negative). */
enum {
    SIRIUS_E_CLOSED = -1,      /* sirius_next_item: shut down and nothing left */
    SIRIUS_E_TOO_SMALL = -2,   /* sirius_next_item: buffer smaller than info->size; item kept */
    SIRIUS_E_STATE = -3,       /* init twice, or not initialised */
    SIRIUS_E_INVALID = -4,     /* bad argument */
    SIRIUS_E_NOMEM = -5,       /* allocation failed */
    SIRIUS_E_TIMEOUT = -6,     /* flush/shutdown did not finish in time */
};

typedef struct sirius_stats {
    uint64_t events_recorded;  /* events the sink has read from thread buffers */
    uint64_t events_dropped;   /* lost: full buffers, oversized, untraced threads, dropped blocks */
    uint64_t blocks_produced;  /* blocks sealed and queued */
    uint64_t blocks_dropped;   /* blocks refused by the full queue (their events are in events_dropped) */
    uint64_t bytes_produced;   /* encoded block bytes queued */
    uint64_t threads_attached; /* thread streams created */
    uint64_t threads_refused;  /* threads left untraced (max_threads or no memory) */
    uint64_t queued_items;     /* items waiting for sirius_next_item */
    uint64_t queued_bytes;
    uint64_t strings_interned;
    uint64_t intern_overflows; /* sirius_intern / sirius_property_set_new calls past the cardinality cap */
    uint64_t sink_passes;
    uint64_t items_total;      /* items ever queued (process, stream, block) in this session */
    /* Event accounting (ABI 2). Once the sink has stopped, exactly:
     *   events_recorded + events_internal == events_queue_dropped + events_queued + events_popped
     * and events_dropped == events_lost + events_queue_dropped. */
    uint64_t events_lost;          /* lost before the sink read them: full thread buffers */
    uint64_t events_internal;      /* events the sink added itself (drop reports: a log and a metric) */
    uint64_t events_queue_dropped; /* events of blocks refused by the full queue or failed to encode */
    uint64_t events_queued;        /* events of the blocks waiting for sirius_next_item */
    uint64_t events_popped;        /* events of the blocks handed out by sirius_next_item */
} sirius_stats;

/* ---- control plane (may block briefly; not for hot paths) ---------------------------------- */

void sirius_config_default(sirius_config *cfg);
/* Start tracing. Returns 0, SIRIUS_E_STATE when already running, SIRIUS_E_INVALID/NOMEM. */
int sirius_init(const sirius_config *cfg);
/* Seal everything emitted so far into blocks on the queue; wait at most timeout_ms. 0 or E_TIMEOUT. */
int sirius_flush(int timeout_ms);
/* Flush, stop the sink thread and close the queue (sirius_next_item drains it, then E_CLOSED). */
int sirius_shutdown(int timeout_ms);
int sirius_is_running(void);
/* Pop the next item into buf (blocking up to timeout_ms; <0 = forever). Returns the body size,
 * 0 on timeout, SIRIUS_E_CLOSED, or SIRIUS_E_TOO_SMALL (info->size says how much is needed). */
int64_t sirius_next_item(void *buf, size_t cap, int timeout_ms, sirius_item_info *info);
void sirius_get_stats(sirius_stats *out);
/* This process's id (16 bytes). Returns 0, or SIRIUS_E_STATE before init. */
int sirius_process_id(uint8_t out[16]);
/* The insert_process body (CBOR) of this process, finishing the tick-frequency calibration if it
 * has not finished (may sleep up to ~20 ms). Returns its size, or E_TOO_SMALL / E_STATE. */
int64_t sirius_process_info(void *buf, size_t cap);
/* Frequency of the tick source in Hz (calibrated; may sleep like sirius_process_info). */
uint64_t sirius_tick_frequency(void);
/* A new descriptor with copies of the strings (immortal; NULL strings become ""). NULL on error. */
const sirius_desc *sirius_desc_new(uint32_t kind, const char *name, const char *target, const char *module_path,
                                   const char *file, uint32_t line, uint32_t level, const char *unit);
/* Intern a string (mutex-protected, never freed). Past the cardinality cap returns "<overflow>". */
sirius_string sirius_intern(const char *s, size_t len);
/* Name of the calling thread's stream (before its first event, or it stays the OS name). */
void sirius_set_thread_name(const char *name);
/* Intern a property set (mutex-protected, never freed; call once, reuse the id on hot paths).
 * kv holds 2*count strings: name, value, name, value, ... (UTF-8; a NULL string is ""); lens their
 * byte lengths, or NULL for NUL-terminated strings. Order does not matter (a set is kept sorted by
 * name); a repeated name keeps its last value. Equal sets get the same id. count 0 gives the empty
 * set. Returns 0 when kv is NULL (count > 0), count > SIRIUS_MAX_PROPERTIES, memory runs out, or
 * past the cardinality cap (counted in intern_overflows); 0 records as the empty set. */
sirius_property_set sirius_property_set_new(const char *const *kv, const size_t *lens, size_t count);
/* Mark the calling thread untraced (its events are ignored, not counted): for delivery threads. */
void sirius_set_thread_untraced(int untraced);
/* A process-unique id for async spans. */
uint64_t sirius_new_span_id(void);

/* ---- hot path: lock-free, never blocks ----------------------------------------------------- */

uint64_t sirius_now(void); /* the raw tick counter events are stamped with */
void sirius_span_begin(const sirius_desc *desc);
void sirius_span_end(const sirius_desc *desc);
void sirius_span_begin_named(const sirius_desc *location, sirius_string name);
void sirius_span_end_named(const sirius_desc *location, sirius_string name);
void sirius_async_begin(const sirius_desc *desc, uint64_t span_id, uint64_t parent_span_id, uint32_t depth);
void sirius_async_end(const sirius_desc *desc, uint64_t span_id, uint64_t parent_span_id, uint32_t depth);
/* An async span named at run time (BeginAsyncNamedSpanEvent / EndAsyncNamedSpanEvent): location
 * is a SIRIUS_DESC_LOCATION descriptor, name an interned string; begin and end pass the same. */
void sirius_async_begin_named(const sirius_desc *location, sirius_string name, uint64_t span_id,
                              uint64_t parent_span_id, uint32_t depth);
void sirius_async_end_named(const sirius_desc *location, sirius_string name, uint64_t span_id,
                            uint64_t parent_span_id, uint32_t depth);
void sirius_log_static(const sirius_desc *desc); /* the message is desc->name */
void sirius_log(const sirius_desc *desc, const char *msg, size_t len); /* UTF-8; long messages are cut */
void sirius_metric_int(const sirius_desc *desc, int64_t value);
void sirius_metric_float(const sirius_desc *desc, double value);
/* Tagged events (TaggedIntegerMetricEvent, TaggedFloatMetricEvent, TaggedLogString): the event also
 * carries a property set, queryable per event (`property_get(properties, 'name')` in measures and
 * log_entries). A tagged log's "target" and "level" properties override its descriptor's. A NULL
 * descriptor records nothing; props 0 records the empty set; a NULL msg records "". */
void sirius_metric_tagged_int(const sirius_desc *desc, sirius_property_set props, int64_t value);
void sirius_metric_tagged_float(const sirius_desc *desc, sirius_property_set props, double value);
void sirius_log_tagged(const sirius_desc *desc, sirius_property_set props, const char *msg, size_t len);

/* ---- convenience macros -------------------------------------------------------------------- */

#ifndef SIRIUS_TARGET
#define SIRIUS_TARGET "c"
#endif

#define SIRIUS_SPAN_DESC(var, span_name)                                                                 \
    static const sirius_desc var = {SIRIUS_DESC_SPAN, __LINE__, (span_name), SIRIUS_TARGET, SIRIUS_TARGET, \
                                    __FILE__, NULL, 0, 0}

#define SIRIUS_LOCATION_DESC(var)                                                                        \
    static const sirius_desc var = {SIRIUS_DESC_LOCATION, __LINE__, NULL, SIRIUS_TARGET, SIRIUS_TARGET,  \
                                    __FILE__, NULL, 0, 0}

#define SIRIUS_LOG(lvl, msg)                                                                             \
    do {                                                                                                 \
        static const sirius_desc sirius_log_desc_ = {SIRIUS_DESC_LOG, __LINE__, (msg), SIRIUS_TARGET,    \
                                                     SIRIUS_TARGET, __FILE__, NULL, (lvl), 0};           \
        sirius_log_static(&sirius_log_desc_);                                                            \
    } while (0)

#define SIRIUS_LOGF(lvl, fmt, ...)                                                                       \
    do {                                                                                                 \
        static const sirius_desc sirius_log_desc_ = {SIRIUS_DESC_LOG, __LINE__, (fmt), SIRIUS_TARGET,    \
                                                     SIRIUS_TARGET, __FILE__, NULL, (lvl), 0};           \
        char sirius_log_buf_[512];                                                                       \
        int sirius_log_n_ = snprintf(sirius_log_buf_, sizeof sirius_log_buf_, fmt, __VA_ARGS__);         \
        if (sirius_log_n_ >= (int)sizeof sirius_log_buf_) sirius_log_n_ = (int)sizeof sirius_log_buf_ - 1; \
        if (sirius_log_n_ >= 0) sirius_log(&sirius_log_desc_, sirius_log_buf_, (size_t)sirius_log_n_);   \
    } while (0)

#define SIRIUS_METRIC_INT(metric_name, metric_unit, value)                                               \
    do {                                                                                                 \
        static const sirius_desc sirius_metric_desc_ = {SIRIUS_DESC_METRIC, __LINE__, (metric_name),     \
                                                        SIRIUS_TARGET, SIRIUS_TARGET, __FILE__,          \
                                                        (metric_unit), 0, 0};                            \
        sirius_metric_int(&sirius_metric_desc_, (value));                                                \
    } while (0)

#define SIRIUS_METRIC_FLOAT(metric_name, metric_unit, value)                                             \
    do {                                                                                                 \
        static const sirius_desc sirius_metric_desc_ = {SIRIUS_DESC_METRIC, __LINE__, (metric_name),     \
                                                        SIRIUS_TARGET, SIRIUS_TARGET, __FILE__,          \
                                                        (metric_unit), 0, 0};                            \
        sirius_metric_float(&sirius_metric_desc_, (value));                                              \
    } while (0)

#define SIRIUS_METRIC_TAGGED_INT(metric_name, metric_unit, props, value)                                 \
    do {                                                                                                 \
        static const sirius_desc sirius_metric_desc_ = {SIRIUS_DESC_METRIC, __LINE__, (metric_name),     \
                                                        SIRIUS_TARGET, SIRIUS_TARGET, __FILE__,          \
                                                        (metric_unit), 0, 0};                            \
        sirius_metric_tagged_int(&sirius_metric_desc_, (props), (value));                                \
    } while (0)

#define SIRIUS_METRIC_TAGGED_FLOAT(metric_name, metric_unit, props, value)                               \
    do {                                                                                                 \
        static const sirius_desc sirius_metric_desc_ = {SIRIUS_DESC_METRIC, __LINE__, (metric_name),     \
                                                        SIRIUS_TARGET, SIRIUS_TARGET, __FILE__,          \
                                                        (metric_unit), 0, 0};                            \
        sirius_metric_tagged_float(&sirius_metric_desc_, (props), (value));                              \
    } while (0)

/* A tagged log line with a run-time message (NUL-terminated). */
#define SIRIUS_LOG_TAGGED(lvl, props, msg)                                                               \
    do {                                                                                                 \
        static const sirius_desc sirius_log_desc_ = {SIRIUS_DESC_LOG, __LINE__, "", SIRIUS_TARGET,       \
                                                     SIRIUS_TARGET, __FILE__, NULL, (lvl), 0};           \
        const char *sirius_log_msg_ = (msg);                                                             \
        sirius_log_tagged(&sirius_log_desc_, (props), sirius_log_msg_,                                   \
                          sirius_log_msg_ ? strlen(sirius_log_msg_) : 0);                                \
    } while (0)

/* A span for the rest of the enclosing block (GCC/Clang cleanup attribute). */
static inline void sirius_scope_end_(const sirius_desc *const *desc) { sirius_span_end(*desc); }
#define SIRIUS_CAT2_(a, b) a##b
#define SIRIUS_CAT_(a, b) SIRIUS_CAT2_(a, b)
#define SIRIUS_SCOPE(span_name)                                                                          \
    SIRIUS_SPAN_DESC(SIRIUS_CAT_(sirius_scope_desc_, __LINE__), span_name);                              \
    __attribute__((cleanup(sirius_scope_end_))) const sirius_desc *SIRIUS_CAT_(sirius_scope_, __LINE__) = \
        (sirius_span_begin(&SIRIUS_CAT_(sirius_scope_desc_, __LINE__)), &SIRIUS_CAT_(sirius_scope_desc_, __LINE__))

#ifdef __cplusplus
}
#endif
#endif
