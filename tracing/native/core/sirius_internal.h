/* Internal declarations of the native tracer core (the C files of tracing/native/core).
 *
 * Memory model in one paragraph. Each traced thread owns a `sr_thread` with a ring of chunks.
 * The owner appends events to its active chunk and publishes how many bytes are valid with a
 * release store of `chunk->committed` after each event; the sink thread reads `committed` with
 * an acquire load and copies only that prefix, so it never sees a half-written event and never
 * needs the owner's cooperation (idle threads are drained too). A full chunk is handed over by
 * a release store of `state = SEALED` (after its final `committed`); the sink gives it back by a
 * release store of `state = FREE` once it has copied it, and the owner acquire-loads that before
 * overwriting it. Each field has exactly one writer, so no read-modify-write is needed on the
 * hot path. Threads are found through a lock-free intrusive list (push by CAS at attach, unlink
 * only by the sink).
 */
#ifndef SIRIUS_INTERNAL_H
#define SIRIUS_INTERNAL_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "sirius_tracing.h"

#define SR_LIKELY(x) __builtin_expect(!!(x), 1)
#define SR_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Race test points. Only a build with -DSIRIUS_TEST_HOOKS calls them (tests/tracing/c/
 * shutdown_race.c defines sr_test_hook and stalls there, to make a race window wide enough to
 * hit every time); every other build compiles them away. */
enum { SR_HOOK_SHUTDOWN_WALK = 1 /* shutdown, before it poisons one registered thread */ };
#ifdef SIRIUS_TEST_HOOKS
void sr_test_hook(int where);
#define SR_TEST_HOOK(where) sr_test_hook(where)
#else
#define SR_TEST_HOOK(where) ((void)0)
#endif

/* Event kinds in thread buffers: the low 4 bits of the tag word (descriptors are 16-aligned). */
enum {
    SR_EV_SPAN_BEGIN = 1,
    SR_EV_SPAN_END = 2,
    SR_EV_NAMED_BEGIN = 3,
    SR_EV_NAMED_END = 4,
    SR_EV_ASYNC_BEGIN = 5,
    SR_EV_ASYNC_END = 6,
    SR_EV_METRIC_INT = 7,
    SR_EV_METRIC_FLOAT = 8,
    SR_EV_LOG_STATIC = 9,
    SR_EV_LOG_STRING = 10,
    SR_EV_ASYNC_NAMED_BEGIN = 11,
    SR_EV_ASYNC_NAMED_END = 12,
    SR_EV_TAGGED = 13, /* one kind for every tagged event: its sub-kind rides in the property set word */
};
#define SR_KIND_MASK ((uint64_t)15)

/* Sub-kinds of SR_EV_TAGGED: the low 4 bits of the property set word (sets are 16-aligned too). */
enum { SR_TAGGED_INT = 1, SR_TAGGED_FLOAT = 2, SR_TAGGED_LOG = 3 };

/* Native record layouts (8-byte aligned; every record starts with tag, ticks):
 *   span begin/end, static log       {tag, ticks}                              16 B
 *   named span begin/end              {tag, ticks, name string id}              24 B
 *   metric int/float                  {tag, ticks, value}                       24 B
 *   async span begin/end              {tag, ticks, span_id, parent, depth+pad}  40 B
 *   named async span begin/end        {tag, ticks, span_id, parent, depth+pad,
 *                                      name string id}                           48 B
 *   dynamic log                       {tag, ticks, len, bytes padded to 8}      24 B + len */
#define SR_MAX_LOG_BYTES 4000
/*   tagged metric int/float          {tag, ticks, property set | sub-kind, value} 32 B
 *   tagged log                        {tag, ticks, property set | sub-kind, len,
 *                                      bytes padded to 8}                          32 B + len */

/* An interned property set (property_set.c): immortal, 16-aligned, its address is its id. The
 * strings are interned (sr_intern), sorted by name, names unique. */
typedef struct sr_pset {
    struct sr_pset *next; /* hash chain */
    uint64_t hash;
    uint32_t count;
    const char *kv[]; /* name, value, name, value, ... */
} __attribute__((aligned(16))) sr_pset;
extern const sr_pset sr_pset_empty;

enum { SR_CHUNK_FREE = 0, SR_CHUNK_ACTIVE = 1, SR_CHUNK_SEALED = 2 };

typedef struct sr_chunk {
    _Atomic uint32_t state;     /* FREE (sink → owner), ACTIVE (owner), SEALED (owner → sink) */
    _Atomic uint64_t committed; /* valid bytes; written by the owner (release), read by the sink */
    uint8_t *data;
} sr_chunk;

/* flags bits, both set by fetch_or: whoever sets the second one frees the struct. */
#define SR_THREAD_EXITED 1u   /* the thread has exited (key destructor) */
#define SR_THREAD_DETACHED 2u /* the session it belongs to has ended (shutdown / fork) */

struct sr_builder;

typedef struct sr_thread {
    /* ---- owner-only hot fields, first cache line ---- */
    uint8_t *cur;              /* next free byte in the active chunk */
    uint8_t *_Atomic end;      /* end of the active chunk; NULL forces the slow path (poison) */
    uint8_t *base;             /* start of the active chunk */
    _Atomic uint64_t *committed; /* &chunks[active].committed */
    _Atomic uint64_t dropped;  /* events dropped by this thread: owner stores, sink loads */
    int32_t active;            /* index of the active chunk, -1 when none is free */
    uint32_t want;             /* next chunk the owner will take */
    uint32_t session;          /* session the struct belongs to */
    int untraced;
    /* ---- sink-owned ---- */
    uint32_t read_idx;   /* next chunk the sink reads (ring order = event order) */
    uint64_t read_off;   /* bytes of chunks[read_idx] already transcoded */
    uint64_t dropped_seen;
    struct sr_builder *cpu;
    /* ---- identity, written at attach before the struct is published ---- */
    uint8_t stream_id[16];
    uint64_t tid;
    char name[64];
    uint64_t attach_ticks;
    int64_t attach_time_ns;
    _Atomic uint32_t flags;
    struct sr_thread *_Atomic next; /* registry link */
    size_t chunk_size;
    uint32_t nchunks;
    sr_chunk chunks[];
} sr_thread;

/* A calibration pair: a tick reading and the clocks read at the same moment. */
typedef struct sr_anchor {
    uint64_t ticks;
    int64_t mono_ns;
    int64_t real_ns;
} sr_anchor;

typedef struct sr_item {
    struct sr_item *next;
    int kind;
    uint32_t nb_objects;
    size_t size;
    uint8_t data[];
} sr_item;

enum { SR_STOPPED = 0, SR_RUNNING = 1 };

typedef struct sr_global {
    _Atomic int state;
    _Atomic uint32_t session;
    sirius_config cfg;
    /* process identity */
    uint8_t process_id[16];
    uint8_t parent_id[16];
    int has_parent;
    char *exe, *username, *realname, *computer, *distro, *cpu_brand;
    char **properties; /* k, v, ..., NULL (copies) */
    size_t nproperties;
    sr_anchor start;       /* process start */
    _Atomic uint64_t frequency; /* 0 until calibrated */
    /* threads */
    sr_thread *_Atomic threads;
    _Atomic uint32_t nthreads;
    _Atomic uint64_t next_span_id;
    /* sink thread and its wake-up */
    pthread_t sink_thread;
    int sink_started;
    _Atomic int sink_stop;
    sem_t wake;
    pthread_mutex_t lock;   /* sink pass, builders, flush generations */
    pthread_cond_t pass_done;
    uint64_t flush_requested; /* generation asked for (under lock) */
    uint64_t flush_done;      /* generation completed */
    /* output queue (never touched by the hot path) */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    sr_item *qhead, *qtail;
    size_t qbytes, qitems;
    uint64_t qevents; /* events (nb_objects) of the queued blocks */
    uint64_t qtotal; /* items ever pushed (a flush waits for the deliverer to pop this many) */
    int qclosed;
    int process_sent;
    /* counters (sink thread and control plane) */
    _Atomic uint64_t events_recorded, events_dropped, blocks_produced, blocks_dropped, bytes_produced;
    _Atomic uint64_t threads_attached, threads_refused, sink_passes;
    _Atomic uint64_t events_lost, events_internal, events_queue_dropped, events_popped;
    /* process-wide streams */
    struct sr_builder *log, *metrics;
} sr_global;

extern sr_global sr_g;
extern __thread sr_thread *sr_tls __attribute__((tls_model("initial-exec")));

extern int sr_use_tsc;

/* clock.c */
void sr_clock_init(int which);
int64_t sr_mono_ns(void);

/* The event timestamp, inlined into every hot call: plain rdtsc (no serialisation, as
 * Micromegas and Tracy do: ordering within a thread is all a trace needs) or cntvct_el0;
 * CLOCK_MONOTONIC ns when the counter is not invariant (sr_use_tsc is set once at init). */
static inline uint64_t sr_clock_ticks(void) {
    if (SR_LIKELY(sr_use_tsc)) {
#if defined(__x86_64__) || defined(__i386__)
        return __builtin_ia32_rdtsc();
#elif defined(__aarch64__)
        uint64_t v;
        __asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
        return v;
#endif
    }
    return (uint64_t)sr_mono_ns();
}
sr_anchor sr_anchor_now(void);
uint64_t sr_calibrate(int allow_sleep);
int64_t sr_real_ns(void);

/* util.c */
void sr_uuid4(uint8_t out[16]);
void sr_uuid_text(const uint8_t id[16], char out[37]);
int sr_uuid_parse(const char *text, uint8_t out[16]);
void sr_rfc3339(int64_t ns, char out[40]);
char *sr_strdup(const char *s);
extern const char sr_empty[];

typedef struct sr_buf {
    uint8_t *p;
    size_t len, cap;
    int failed;
} sr_buf;
void sr_buf_reserve(sr_buf *b, size_t extra);
void sr_buf_put(sr_buf *b, const void *data, size_t n);
void sr_buf_free(sr_buf *b);
void sr_cbor_head(sr_buf *b, int major, uint64_t v);
void sr_cbor_text(sr_buf *b, const char *s);
void sr_cbor_bytes(sr_buf *b, const void *p, size_t n);
void sr_cbor_int(sr_buf *b, int64_t v);
void sr_cbor_null(sr_buf *b);
void sr_cbor_uuid(sr_buf *b, const uint8_t id[16]);
void sr_cbor_time(sr_buf *b, int64_t ns);

/* lz4.c: an LZ4 frame (independent 64 KiB blocks, no checksums) of src into dst. */
size_t sr_lz4_frame_bound(size_t n);
size_t sr_lz4_frame_compress(const uint8_t *src, size_t n, uint8_t *dst, void *table /* 64 KiB */);

/* sink.c */
int sr_sink_start(void);
void sr_sink_stop_and_join(void);
void sr_sink_wake(void);
int sr_sink_flush(int timeout_ms);
void sr_queue_reset(void);
void sr_sink_reset_builders(int free_them);
void sr_builder_release(sr_thread *t);
sr_thread *sr_registry_push(sr_thread *t);
int64_t sr_encode_process(void *buf, size_t cap);

/* tracer.c */
sr_thread *sr_slow(size_t need);
void sr_thread_free(sr_thread *t);
const char *sr_intern_text(const char *s, size_t len);

/* property_set.c (its lock is taken around fork like the others) */
uint64_t sr_pset_overflows(void);
void sr_pset_lock_all(void);
void sr_pset_unlock_all(void);

#endif
