/* The tracer's hot path, thread attach/rotate slow paths, descriptors, interning, lifecycle
 * (init, flush, shutdown, fork, thread exit). See sirius_internal.h for the memory model. */
#define _GNU_SOURCE
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "sirius_internal.h"

sr_global sr_g = {.lock = PTHREAD_MUTEX_INITIALIZER,
                  .pass_done = PTHREAD_COND_INITIALIZER,
                  .qlock = PTHREAD_MUTEX_INITIALIZER,
                  .qcond = PTHREAD_COND_INITIALIZER};

/* initial-exec: one %fs-relative load, no __tls_get_addr call, even in a dlopen'ed extension
 * (8 bytes of static TLS, well within glibc's surplus). */
__thread sr_thread *sr_tls __attribute__((tls_model("initial-exec")));

static __thread int sr_tls_untraced;
static __thread int sr_tls_attaching; /* an event emitted by the name hook itself is dropped */
static __thread char sr_tls_name[64];
static pthread_key_t sr_key;
static pthread_once_t sr_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t sr_control = PTHREAD_MUTEX_INITIALIZER; /* init/shutdown/fork */
static int sr_atexit_installed;

/* Optional hook (set by the Python layer) naming a thread at attach; NULL in pure C. */
void (*sr_thread_name_hook)(char *buf, size_t cap);

/* ---------------------------------------------------------------------------------------------
 * hot path
 *
 * Reserve: one TLS load, one bounds check against `end` (relaxed atomic load = plain mov; NULL
 * after a poison sends the thread to the slow path). Publish: a release store of the new
 * committed length (a plain mov on x86; stlr on ARM) so the sink sees the bytes before the
 * length that covers them. */

static inline uint8_t *sr_reserve(sr_thread **tp, size_t size) {
    sr_thread *t = sr_tls;
    if (SR_LIKELY(t != NULL)) {
        uint8_t *p = t->cur;
        uint8_t *end = atomic_load_explicit(&t->end, memory_order_relaxed);
        /* integer compare: a NULL (poisoned) end fails it whatever cur is */
        if (SR_LIKELY((uintptr_t)p + size <= (uintptr_t)end)) {
            *tp = t;
            return p;
        }
    }
    t = sr_slow(size);
    if (!t) return NULL;
    *tp = t;
    return t->cur;
}

static inline void sr_publish(sr_thread *t, uint8_t *new_cur) {
    t->cur = new_cur;
    atomic_store_explicit(t->committed, (uint64_t)(new_cur - t->base), memory_order_release);
}

/* Everything not on the fast path (first event of a thread, full chunk, new session): kept
 * out of line and reached by a tail call, so the fast path needs no stack frame. */
static __attribute__((noinline)) void sr_emit_slow(size_t size, uint64_t tag, uint64_t a, uint64_t b, uint64_t c) {
    sr_thread *t = sr_slow(size);
    if (!t) return;
    uint64_t *w = (uint64_t *)t->cur;
    w[0] = tag;
    w[1] = sr_clock_ticks();
    if (size > 16) w[2] = a;
    if (size > 24) {
        w[3] = b;
        w[4] = c;
    }
    sr_publish(t, t->cur + size);
}

/* The fast path of every fixed-size event: TLS load, bounds check, stores, release publish. */
#define SR_EMIT_FAST(size, tag, a, b, c)                                                   \
    do {                                                                                   \
        sr_thread *t_ = sr_tls;                                                            \
        if (SR_LIKELY(t_ != NULL)) {                                                       \
            uint8_t *p_ = t_->cur;                                                         \
            if (SR_LIKELY((uintptr_t)p_ + (size) <=                                        \
                          (uintptr_t)atomic_load_explicit(&t_->end, memory_order_relaxed))) { \
                uint64_t *w_ = (uint64_t *)p_;                                             \
                w_[0] = (tag);                                                             \
                w_[1] = sr_clock_ticks();                                                  \
                if ((size) > 16) w_[2] = (a);                                              \
                if ((size) > 24) {                                                         \
                    w_[3] = (b);                                                           \
                    w_[4] = (c);                                                           \
                }                                                                          \
                sr_publish(t_, p_ + (size));                                               \
                return;                                                                    \
            }                                                                              \
        }                                                                                  \
        sr_emit_slow((size), (tag), (a), (b), (c));                                        \
    } while (0)

static inline void sr_emit16(const sirius_desc *d, uint64_t kind) {
    SR_EMIT_FAST(16, (uint64_t)(uintptr_t)d | kind, 0, 0, 0);
}

static inline void sr_emit24(const sirius_desc *d, uint64_t kind, uint64_t value) {
    SR_EMIT_FAST(24, (uint64_t)(uintptr_t)d | kind, value, 0, 0);
}

void sirius_span_begin(const sirius_desc *d) { sr_emit16(d, SR_EV_SPAN_BEGIN); }
void sirius_span_end(const sirius_desc *d) { sr_emit16(d, SR_EV_SPAN_END); }
void sirius_log_static(const sirius_desc *d) { sr_emit16(d, SR_EV_LOG_STATIC); }
void sirius_span_begin_named(const sirius_desc *l, sirius_string name) { sr_emit24(l, SR_EV_NAMED_BEGIN, name); }
void sirius_span_end_named(const sirius_desc *l, sirius_string name) { sr_emit24(l, SR_EV_NAMED_END, name); }
void sirius_metric_int(const sirius_desc *d, int64_t v) { sr_emit24(d, SR_EV_METRIC_INT, (uint64_t)v); }

void sirius_metric_float(const sirius_desc *d, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    sr_emit24(d, SR_EV_METRIC_FLOAT, bits);
}

static inline void sr_emit_async(const sirius_desc *d, uint64_t kind, uint64_t id, uint64_t parent, uint32_t depth) {
    SR_EMIT_FAST(40, (uint64_t)(uintptr_t)d | kind, id, parent, depth);
}

void sirius_async_begin(const sirius_desc *d, uint64_t id, uint64_t parent, uint32_t depth) {
    sr_emit_async(d, SR_EV_ASYNC_BEGIN, id, parent, depth);
}
void sirius_async_end(const sirius_desc *d, uint64_t id, uint64_t parent, uint32_t depth) {
    sr_emit_async(d, SR_EV_ASYNC_END, id, parent, depth);
}

/* 48 bytes: one word more than SR_EMIT_FAST carries, so reserve/publish directly (as logs do). */
static inline void sr_emit_async_named(const sirius_desc *l, uint64_t kind, sirius_string name, uint64_t id,
                                       uint64_t parent, uint32_t depth) {
    sr_thread *t;
    uint8_t *p = sr_reserve(&t, 48);
    if (SR_UNLIKELY(!p)) return;
    uint64_t *w = (uint64_t *)p;
    w[0] = (uint64_t)(uintptr_t)l | kind;
    w[1] = sr_clock_ticks();
    w[2] = id;
    w[3] = parent;
    w[4] = depth;
    w[5] = name;
    sr_publish(t, p + 48);
}

void sirius_async_begin_named(const sirius_desc *l, sirius_string name, uint64_t id, uint64_t parent,
                              uint32_t depth) {
    sr_emit_async_named(l, SR_EV_ASYNC_NAMED_BEGIN, name, id, parent, depth);
}
void sirius_async_end_named(const sirius_desc *l, sirius_string name, uint64_t id, uint64_t parent,
                            uint32_t depth) {
    sr_emit_async_named(l, SR_EV_ASYNC_NAMED_END, name, id, parent, depth);
}

void sirius_log(const sirius_desc *d, const char *msg, size_t len) {
    if (len > SR_MAX_LOG_BYTES) len = SR_MAX_LOG_BYTES;
    size_t size = 24 + ((len + 7) & ~(size_t)7);
    sr_thread *t;
    uint8_t *p = sr_reserve(&t, size);
    if (SR_UNLIKELY(!p)) return;
    uint64_t *w = (uint64_t *)p;
    w[0] = (uint64_t)(uintptr_t)d | SR_EV_LOG_STRING;
    w[1] = sr_clock_ticks();
    w[2] = len;
    memcpy(p + 24, msg, len);
    sr_publish(t, p + size);
}

/* Tagged events: 32 bytes (or 32 + message) with the property set word, reserved and published
 * like logs. The NULL-descriptor check is the only extra branch; untagged calls do not pass here. */
static inline void sr_emit_tagged(const sirius_desc *d, sirius_property_set props, uint64_t sub, uint64_t value) {
    if (SR_UNLIKELY(!d)) return;
    sr_thread *t;
    uint8_t *p = sr_reserve(&t, 32);
    if (SR_UNLIKELY(!p)) return;
    uint64_t *w = (uint64_t *)p;
    w[0] = (uint64_t)(uintptr_t)d | SR_EV_TAGGED;
    w[1] = sr_clock_ticks();
    w[2] = (props & ~SR_KIND_MASK) | sub;
    w[3] = value;
    sr_publish(t, p + 32);
}

void sirius_metric_tagged_int(const sirius_desc *d, sirius_property_set props, int64_t v) {
    sr_emit_tagged(d, props, SR_TAGGED_INT, (uint64_t)v);
}

void sirius_metric_tagged_float(const sirius_desc *d, sirius_property_set props, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    sr_emit_tagged(d, props, SR_TAGGED_FLOAT, bits);
}

void sirius_log_tagged(const sirius_desc *d, sirius_property_set props, const char *msg, size_t len) {
    if (SR_UNLIKELY(!d)) return;
    if (!msg) len = 0;
    if (len > SR_MAX_LOG_BYTES) len = SR_MAX_LOG_BYTES;
    size_t size = 32 + ((len + 7) & ~(size_t)7);
    sr_thread *t;
    uint8_t *p = sr_reserve(&t, size);
    if (SR_UNLIKELY(!p)) return;
    uint64_t *w = (uint64_t *)p;
    w[0] = (uint64_t)(uintptr_t)d | SR_EV_TAGGED;
    w[1] = sr_clock_ticks();
    w[2] = (props & ~SR_KIND_MASK) | SR_TAGGED_LOG;
    w[3] = len;
    if (len) memcpy(p + 32, msg, len);
    sr_publish(t, p + size);
}

uint64_t sirius_new_span_id(void) { return atomic_fetch_add_explicit(&sr_g.next_span_id, 1, memory_order_relaxed); }

/* ---------------------------------------------------------------------------------------------
 * slow paths (owner thread only) */

static uint64_t sr_gettid(void) { return (uint64_t)syscall(SYS_gettid); }

static void sr_count_drop(sr_thread *t) {
    /* single writer (the owner): load + store, no locked instruction */
    atomic_store_explicit(&t->dropped, atomic_load_explicit(&t->dropped, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static int sr_running_session(uint32_t session) {
    return atomic_load_explicit(&sr_g.state, memory_order_seq_cst) == SR_RUNNING &&
           atomic_load_explicit(&sr_g.session, memory_order_seq_cst) == session;
}

/* Make chunks[idx] the active chunk if the sink has released it. */
static int sr_activate(sr_thread *t, uint32_t idx) {
    sr_chunk *c = &t->chunks[idx];
    /* acquire: pairs with the sink's release store of FREE, so its reads of the old contents
     * happen before we overwrite them */
    if (atomic_load_explicit(&c->state, memory_order_acquire) != SR_CHUNK_FREE) return 0;
    atomic_store_explicit(&c->committed, 0, memory_order_relaxed);
    atomic_store_explicit(&c->state, SR_CHUNK_ACTIVE, memory_order_release);
    t->active = (int32_t)idx;
    t->want = (idx + 1) % t->nchunks;
    t->base = t->cur = c->data;
    t->committed = &c->committed;
    /* seq_cst store then seq_cst load of the session: if shutdown/fork poisoned `end` after our
     * check, either we see its new state here or its NULL store lands after ours (see shutdown). */
    atomic_store_explicit(&t->end, c->data + t->chunk_size, memory_order_seq_cst);
    if (!sr_running_session(t->session)) {
        atomic_store_explicit(&t->end, NULL, memory_order_relaxed);
        return 0;
    }
    return 1;
}

static void sr_thread_reset(sr_thread *t, uint32_t session) {
    t->cur = t->base = NULL;
    atomic_store_explicit(&t->end, NULL, memory_order_relaxed);
    t->committed = NULL;
    atomic_store_explicit(&t->dropped, 0, memory_order_relaxed);
    t->active = -1;
    t->want = 0;
    t->session = session;
    t->read_idx = 0;
    t->read_off = 0;
    t->dropped_seen = 0;
    t->cpu = NULL;
    for (uint32_t i = 0; i < t->nchunks; i++) {
        atomic_store_explicit(&t->chunks[i].state, SR_CHUNK_FREE, memory_order_relaxed);
        atomic_store_explicit(&t->chunks[i].committed, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&t->flags, 0, memory_order_relaxed);
    atomic_store_explicit(&t->next, NULL, memory_order_relaxed);
    sr_uuid4(t->stream_id);
    sr_anchor a = sr_anchor_now();
    t->attach_ticks = a.ticks;
    t->attach_time_ns = a.real_ns;
}

void sr_thread_free(sr_thread *t) {
    for (uint32_t i = 0; i < t->nchunks; i++) free(t->chunks[i].data);
    free(t);
}

static void sr_key_destructor(void *p) {
    /* Thread exit: hand the last chunk to the sink and let it free the struct after draining;
     * if the session is already over (DETACHED), nobody else references it: free it here. */
    sr_thread *t = p;
    sr_tls = NULL;
    if (!t) return;
    if (t->active >= 0) atomic_store_explicit(&t->chunks[t->active].state, SR_CHUNK_SEALED, memory_order_release);
    uint32_t old = atomic_fetch_or_explicit(&t->flags, SR_THREAD_EXITED, memory_order_acq_rel);
    if (old & SR_THREAD_DETACHED) sr_thread_free(t);
    else sr_sink_wake();
}

static void sr_atfork_prepare(void);
static void sr_atfork_parent(void);
static void sr_atfork_child(void);

static void sr_once_init(void) {
    pthread_key_create(&sr_key, sr_key_destructor);
    pthread_atfork(sr_atfork_prepare, sr_atfork_parent, sr_atfork_child);
}

static sr_thread *sr_attach(void) {
    uint32_t session = atomic_load_explicit(&sr_g.session, memory_order_acquire);
    if (atomic_load_explicit(&sr_g.state, memory_order_acquire) != SR_RUNNING || sr_tls_untraced ||
        sr_tls_attaching)
        return NULL;
    sr_thread *t = sr_tls;
    size_t chunk = sr_g.cfg.chunk_size;
    uint32_t n = sr_g.cfg.chunks_per_thread;
    if (t && (t->chunk_size != chunk || t->nchunks != n)) { /* a previous session's geometry */
        if (atomic_load_explicit(&t->flags, memory_order_acquire) & SR_THREAD_DETACHED) sr_thread_free(t);
        sr_tls = t = NULL;
        pthread_setspecific(sr_key, NULL);
    }
    if (!t) {
        if (atomic_fetch_add(&sr_g.nthreads, 1) >= sr_g.cfg.max_threads) {
            atomic_fetch_sub(&sr_g.nthreads, 1);
            atomic_fetch_add(&sr_g.threads_refused, 1);
            sr_tls_untraced = 1; /* stays untraced: no retry on every event */
            return NULL;
        }
        t = calloc(1, sizeof *t + n * sizeof(sr_chunk));
        if (t) {
            t->chunk_size = chunk;
            t->nchunks = n;
            for (uint32_t i = 0; i < n && t; i++) {
                /* 64-byte aligned so two threads' chunks never share a cache line */
                if (posix_memalign((void **)&t->chunks[i].data, 64, chunk) != 0) {
                    t->nchunks = i;
                    sr_thread_free(t);
                    t = NULL;
                }
            }
        }
        if (!t) {
            atomic_fetch_sub(&sr_g.nthreads, 1);
            atomic_fetch_add(&sr_g.threads_refused, 1);
            sr_tls_untraced = 1;
            return NULL;
        }
    } else {
        atomic_fetch_add(&sr_g.nthreads, 1);
    }
    sr_thread_reset(t, session);
    t->tid = sr_gettid();
    if (sr_tls_name[0]) {
        memcpy(t->name, sr_tls_name, sizeof t->name);
    } else {
        t->name[0] = 0;
        sr_tls_attaching = 1;
        if (sr_thread_name_hook) sr_thread_name_hook(t->name, sizeof t->name);
        sr_tls_attaching = 0;
        if (!t->name[0]) pthread_getname_np(pthread_self(), t->name, sizeof t->name);
    }
    sr_tls = t;
    pthread_setspecific(sr_key, t);
    if (!sr_running_session(session)) {
        /* The name hook runs Python, which may let other threads run: shutdown (and even the
         * next init) may have happened meanwhile. Publishing now would put a struct of the old
         * session into the next session's registry, and this thread's next event would reset
         * it there while the sink reads it (a cycle in the registry, a builder pulled away).
         * Keep it unpublished and detached: the next attach reuses it, thread exit frees it.
         * (A preemption between this check and the push below, long enough for a whole
         * shutdown and init, could still do it; the hook is what made the window wide.) */
        atomic_store_explicit(&t->flags, SR_THREAD_DETACHED, memory_order_release);
        return NULL;
    }
    atomic_fetch_add(&sr_g.threads_attached, 1);
    sr_registry_push(t); /* published: from here on the sink may read it */
    return t;
}

/* Everything the hot path does not: first event of a thread, a full chunk, a new session. */
sr_thread *sr_slow(size_t need) {
    sr_thread *t = sr_tls;
    if (!t || !sr_running_session(t->session)) {
        t = sr_attach(); /* first event, or a new session (init after shutdown, fork child) */
        if (!t) return NULL;
    }
    if (need > t->chunk_size) {
        sr_count_drop(t);
        return NULL;
    }
    if (t->active >= 0) {
        /* The active chunk cannot take this event: seal it (release: its committed length and
         * bytes are visible to the sink before the SEALED state) and wake the sink. */
        atomic_store_explicit(&t->chunks[t->active].state, SR_CHUNK_SEALED, memory_order_release);
        t->active = -1;
        t->cur = t->base = NULL;
        atomic_store_explicit(&t->end, NULL, memory_order_relaxed);
        sr_sink_wake();
    }
    if (!sr_activate(t, t->want)) {
        /* Never block: the ring is full (the sink is behind). Count and drop; the next event
         * retries the same chunk, so recording resumes as soon as the sink frees it. */
        sr_count_drop(t);
        return NULL;
    }
    return t;
}

void sirius_set_thread_name(const char *name) {
    size_t n = strlen(name ? name : "");
    if (n >= sizeof sr_tls_name) n = sizeof sr_tls_name - 1;
    memcpy(sr_tls_name, name ? name : "", n);
    sr_tls_name[n] = 0;
}

void sirius_set_thread_untraced(int untraced) { sr_tls_untraced = untraced; }

/* ---------------------------------------------------------------------------------------------
 * descriptors and interned strings (control plane; a mutex, never freed) */

#define SR_INTERN_CAP 65536
typedef struct sr_istr {
    struct sr_istr *next;
    uint64_t hash;
    size_t len;
    char text[];
} sr_istr;
static pthread_mutex_t sr_intern_lock = PTHREAD_MUTEX_INITIALIZER;
static sr_istr *sr_intern_table[4096];
static size_t sr_intern_count;
static _Atomic uint64_t sr_intern_overflows;
static const char sr_overflow_text[] = "<overflow>";

static uint64_t sr_fnv(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

/* Returns an immortal NUL-terminated copy (the same pointer for equal strings). */
const char *sr_intern_text(const char *s, size_t len) {
    if (!s) return sr_empty;
    uint64_t h = sr_fnv(s, len);
    pthread_mutex_lock(&sr_intern_lock);
    sr_istr **slot = &sr_intern_table[h % 4096];
    for (sr_istr *e = *slot; e; e = e->next) {
        if (e->hash == h && e->len == len && memcmp(e->text, s, len) == 0) {
            pthread_mutex_unlock(&sr_intern_lock);
            return e->text;
        }
    }
    const char *out = sr_overflow_text;
    if (sr_intern_count < SR_INTERN_CAP) {
        sr_istr *e = malloc(sizeof *e + len + 1);
        if (e) {
            e->hash = h;
            e->len = len;
            memcpy(e->text, s, len);
            e->text[len] = 0;
            e->next = *slot;
            *slot = e;
            sr_intern_count++;
            out = e->text;
        }
    } else {
        atomic_fetch_add(&sr_intern_overflows, 1);
    }
    pthread_mutex_unlock(&sr_intern_lock);
    return out;
}

sirius_string sirius_intern(const char *s, size_t len) { return (sirius_string)(uintptr_t)sr_intern_text(s, len); }

const sirius_desc *sirius_desc_new(uint32_t kind, const char *name, const char *target, const char *module_path,
                                   const char *file, uint32_t line, uint32_t level, const char *unit) {
    if (kind < SIRIUS_DESC_SPAN || kind > SIRIUS_DESC_METRIC) return NULL;
    sirius_desc *d;
    if (posix_memalign((void **)&d, 16, sizeof *d) != 0) return NULL;
    d->kind = kind;
    d->line = line;
    d->name = sr_intern_text(name, name ? strlen(name) : 0);
    d->target = sr_intern_text(target, target ? strlen(target) : 0);
    d->module_path = sr_intern_text(module_path, module_path ? strlen(module_path) : 0);
    d->file = sr_intern_text(file, file ? strlen(file) : 0);
    d->unit = sr_intern_text(unit, unit ? strlen(unit) : 0);
    d->level = level;
    d->reserved = 0;
    return d;
}

/* ---------------------------------------------------------------------------------------------
 * lifecycle */

void sirius_config_default(sirius_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->chunk_size = 64 * 1024;
    /* 16 x 64 KiB = 64 Ki span events: 65 ms of a thread emitting 1 M events/s, enough to ride
     * out the sink thread waiting for a core on a busy 2-core machine (4 chunks lost events
     * there at 1 M events/s, bench/tracer_sustained.py). Pages are touched only when written. */
    cfg->chunks_per_thread = 16;
    cfg->max_threads = 4096;
    cfg->block_size = 1024 * 1024;
    cfg->flush_period_ms = 1000;
    cfg->max_queue_bytes = 64 * 1024 * 1024;
    cfg->clock = SIRIUS_CLOCK_AUTO;
    cfg->install_atexit = 1;
}

static char *sr_read_file_line(const char *path, const char *prefix) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char line[512];
    char *out = NULL;
    size_t plen = strlen(prefix);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, prefix, plen) == 0) {
            char *v = line + plen;
            while (*v == ' ' || *v == '\t' || *v == ':' || *v == '=' || *v == '"') v++;
            size_t n = strcspn(v, "\"\n");
            v[n] = 0;
            out = sr_strdup(v);
            break;
        }
    }
    fclose(f);
    return out;
}

static void sr_free_identity(void) {
    free(sr_g.exe);
    free(sr_g.username);
    free(sr_g.realname);
    free(sr_g.computer);
    free(sr_g.distro);
    free(sr_g.cpu_brand);
    if (sr_g.properties) {
        for (size_t i = 0; sr_g.properties[i]; i++) free(sr_g.properties[i]);
        free(sr_g.properties);
    }
    sr_g.exe = sr_g.username = sr_g.realname = sr_g.computer = sr_g.distro = sr_g.cpu_brand = NULL;
    sr_g.properties = NULL;
    sr_g.nproperties = 0;
}

static void sr_set_pid_property(void) {
    /* "pid" is always this process's (a forked child updates it) */
    char pid[24];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    for (size_t i = 0; i + 1 < sr_g.nproperties * 2; i += 2) {
        if (strcmp(sr_g.properties[i], "pid") == 0) {
            free(sr_g.properties[i + 1]);
            sr_g.properties[i + 1] = sr_strdup(pid);
            return;
        }
    }
    char **p = realloc(sr_g.properties, (sr_g.nproperties * 2 + 3) * sizeof(char *));
    if (!p) return;
    sr_g.properties = p;
    p[sr_g.nproperties * 2] = sr_strdup("pid");
    p[sr_g.nproperties * 2 + 1] = sr_strdup(pid);
    p[sr_g.nproperties * 2 + 2] = NULL;
    sr_g.nproperties++;
}

static void sr_identity(const sirius_config *cfg) {
    sr_free_identity();
    if (cfg->process_id) memcpy(sr_g.process_id, cfg->process_id, 16);
    else sr_uuid4(sr_g.process_id);
    sr_g.has_parent = 0;
    if (cfg->parent_process_id) {
        memcpy(sr_g.parent_id, cfg->parent_process_id, 16);
        sr_g.has_parent = 1;
    } else {
        const char *env = getenv("MICROMEGAS_TELEMETRY_PARENT_PROCESS");
        if (env && *env && sr_uuid_parse(env, sr_g.parent_id) == 0) sr_g.has_parent = 1;
    }
    char buf[4096];
    if (cfg->exe) sr_g.exe = sr_strdup(cfg->exe);
    else {
        ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        sr_g.exe = sr_strdup(buf);
    }
    if (cfg->username) sr_g.username = sr_strdup(cfg->username);
    else {
        struct passwd pw, *res = NULL;
        if (getpwuid_r(getuid(), &pw, buf, sizeof buf, &res) == 0 && res) sr_g.username = sr_strdup(res->pw_name);
        else {
            snprintf(buf, sizeof buf, "%u", (unsigned)getuid());
            sr_g.username = sr_strdup(buf);
        }
    }
    sr_g.realname = sr_strdup(cfg->realname ? cfg->realname : sr_g.username);
    if (cfg->computer) sr_g.computer = sr_strdup(cfg->computer);
    else {
        buf[0] = 0;
        gethostname(buf, 256);
        buf[255] = 0;
        sr_g.computer = sr_strdup(buf);
    }
    if (cfg->distro) sr_g.distro = sr_strdup(cfg->distro);
    else {
        struct utsname u;
        if (uname(&u) == 0) snprintf(buf, sizeof buf, "%s-%s-%s", u.sysname, u.release, u.machine);
        else buf[0] = 0;
        sr_g.distro = sr_strdup(buf);
    }
    if (cfg->cpu_brand) sr_g.cpu_brand = sr_strdup(cfg->cpu_brand);
    else {
        sr_g.cpu_brand = sr_read_file_line("/proc/cpuinfo", "model name");
        if (!sr_g.cpu_brand) sr_g.cpu_brand = sr_strdup("");
    }
    size_t n = 0;
    if (cfg->properties)
        while (cfg->properties[n * 2] && cfg->properties[n * 2 + 1]) n++;
    sr_g.properties = calloc(n * 2 + 1, sizeof(char *));
    sr_g.nproperties = 0;
    if (sr_g.properties) {
        for (size_t i = 0; i < n * 2; i++) sr_g.properties[i] = sr_strdup(cfg->properties[i]);
        sr_g.nproperties = n;
    }
    sr_set_pid_property();
}

/* The event and block counters of stats(): a new session (start, or a forked child) counts anew. */
static void sr_reset_event_counters(void) {
    atomic_store(&sr_g.events_recorded, 0);
    atomic_store(&sr_g.events_dropped, 0);
    atomic_store(&sr_g.events_lost, 0);
    atomic_store(&sr_g.events_internal, 0);
    atomic_store(&sr_g.events_queue_dropped, 0);
    atomic_store(&sr_g.events_popped, 0);
    atomic_store(&sr_g.blocks_produced, 0);
    atomic_store(&sr_g.blocks_dropped, 0);
}

static void sr_atexit(void) {
    /* Flush what was emitted into the queue; delivery is up to the deliverer (the Python
     * layer shuts down before C atexit handlers run). */
    if (atomic_load(&sr_g.state) == SR_RUNNING) sirius_flush(1000);
}

int sirius_init(const sirius_config *user) {
    pthread_once(&sr_once, sr_once_init);
    sirius_config cfg;
    if (user) cfg = *user;
    else sirius_config_default(&cfg);
    if (cfg.chunk_size < 1024) cfg.chunk_size = 1024;
    cfg.chunk_size &= ~(size_t)63;
    if (cfg.chunks_per_thread < 2) cfg.chunks_per_thread = 2;
    if (cfg.max_threads == 0) cfg.max_threads = 1;
    if (cfg.block_size < 1024) cfg.block_size = 1024;
    if (cfg.flush_period_ms == 0) cfg.flush_period_ms = 1;
    if (cfg.max_queue_bytes == 0) cfg.max_queue_bytes = 1;
    pthread_mutex_lock(&sr_control);
    if (atomic_load(&sr_g.state) != SR_STOPPED) {
        pthread_mutex_unlock(&sr_control);
        return SIRIUS_E_STATE;
    }
    static int sem_ready;
    if (!sem_ready) {
        sem_init(&sr_g.wake, 0, 0);
        sem_ready = 1;
    }
    sr_clock_init(cfg.clock);
    sr_g.cfg = cfg;
    sr_g.cfg.properties = NULL;
    sr_identity(&cfg);
    sr_g.start = sr_anchor_now();
    atomic_store(&sr_g.frequency, 0);
    atomic_store(&sr_g.threads, NULL);
    atomic_store(&sr_g.nthreads, 0);
    if (atomic_load(&sr_g.next_span_id) == 0) atomic_store(&sr_g.next_span_id, 1);
    sr_reset_event_counters();
    atomic_store(&sr_g.bytes_produced, 0);
    atomic_store(&sr_g.threads_attached, 0);
    atomic_store(&sr_g.threads_refused, 0);
    atomic_store(&sr_g.sink_passes, 0);
    sr_queue_reset();
    sr_sink_reset_builders(1);
    sr_g.flush_requested = sr_g.flush_done = 0;
    atomic_fetch_add(&sr_g.session, 1);
    int rc = sr_sink_start();
    if (rc == 0) atomic_store(&sr_g.state, SR_RUNNING);
    if (rc == 0 && cfg.install_atexit && !sr_atexit_installed) {
        atexit(sr_atexit);
        sr_atexit_installed = 1;
    }
    pthread_mutex_unlock(&sr_control);
    return rc;
}

int sirius_is_running(void) { return atomic_load(&sr_g.state) == SR_RUNNING; }

int sirius_flush(int timeout_ms) {
    if (atomic_load(&sr_g.state) != SR_RUNNING) return SIRIUS_E_STATE;
    return sr_sink_flush(timeout_ms);
}

int sirius_shutdown(int timeout_ms) {
    pthread_mutex_lock(&sr_control);
    if (atomic_load(&sr_g.state) != SR_RUNNING) {
        pthread_mutex_unlock(&sr_control);
        return SIRIUS_E_STATE;
    }
    int rc = sr_sink_flush(timeout_ms);
    /* Stop accepting events: new state first (seq_cst), then poison every thread's `end`, so a
     * producer either sees STOPPED in its slow path or has its `end` overwritten (sr_activate).
     * The walk holds the pass lock: the sink is still running, and a pass unlinks and frees the
     * structs of exited threads (without the lock this walk wrote into freed structs). */
    atomic_store_explicit(&sr_g.state, SR_STOPPED, memory_order_seq_cst);
    pthread_mutex_lock(&sr_g.lock);
    for (sr_thread *t = atomic_load(&sr_g.threads); t; t = atomic_load(&t->next)) {
        SR_TEST_HOOK(SR_HOOK_SHUTDOWN_WALK);
        atomic_store_explicit(&t->end, NULL, memory_order_seq_cst);
    }
    pthread_mutex_unlock(&sr_g.lock);
    sr_sink_stop_and_join(); /* its last pass drains what the poison raced with */
    /* Detach the remaining thread structs: their owners reuse them if a new session starts; an
     * exited owner left the freeing to whoever sets the second flag. */
    sr_thread *t = atomic_exchange(&sr_g.threads, NULL);
    while (t) {
        sr_thread *next = atomic_load(&t->next);
        sr_builder_release(t); /* the sink is joined: nobody else touches builders */
        uint32_t old = atomic_fetch_or_explicit(&t->flags, SR_THREAD_DETACHED, memory_order_acq_rel);
        if (old & SR_THREAD_EXITED) sr_thread_free(t);
        t = next;
    }
    pthread_mutex_lock(&sr_g.qlock);
    sr_g.qclosed = 1;
    pthread_cond_broadcast(&sr_g.qcond);
    pthread_mutex_unlock(&sr_g.qlock);
    pthread_mutex_unlock(&sr_control);
    return rc;
}

int sirius_process_id(uint8_t out[16]) {
    if (atomic_load(&sr_g.session) == 0) return SIRIUS_E_STATE;
    memcpy(out, sr_g.process_id, 16);
    return 0;
}

int64_t sirius_process_info(void *buf, size_t cap) {
    if (atomic_load(&sr_g.session) == 0) return SIRIUS_E_STATE;
    sr_calibrate(1);
    pthread_mutex_lock(&sr_g.lock);
    int64_t n = sr_encode_process(buf, cap);
    pthread_mutex_unlock(&sr_g.lock);
    return n;
}

uint64_t sirius_tick_frequency(void) {
    if (atomic_load(&sr_g.session) == 0) return 0;
    return sr_calibrate(1);
}

void sirius_get_stats(sirius_stats *s) {
    memset(s, 0, sizeof *s);
    s->events_recorded = atomic_load(&sr_g.events_recorded);
    s->events_dropped = atomic_load(&sr_g.events_dropped);
    s->blocks_produced = atomic_load(&sr_g.blocks_produced);
    s->blocks_dropped = atomic_load(&sr_g.blocks_dropped);
    s->bytes_produced = atomic_load(&sr_g.bytes_produced);
    s->threads_attached = atomic_load(&sr_g.threads_attached);
    s->threads_refused = atomic_load(&sr_g.threads_refused);
    s->sink_passes = atomic_load(&sr_g.sink_passes);
    s->events_lost = atomic_load(&sr_g.events_lost);
    s->events_internal = atomic_load(&sr_g.events_internal);
    s->events_queue_dropped = atomic_load(&sr_g.events_queue_dropped);
    pthread_mutex_lock(&sr_g.qlock);
    s->queued_items = sr_g.qitems;
    s->queued_bytes = sr_g.qbytes;
    s->items_total = sr_g.qtotal;
    s->events_queued = sr_g.qevents;
    s->events_popped = atomic_load(&sr_g.events_popped);
    pthread_mutex_unlock(&sr_g.qlock);
    pthread_mutex_lock(&sr_intern_lock);
    s->strings_interned = sr_intern_count;
    pthread_mutex_unlock(&sr_intern_lock);
    s->intern_overflows = atomic_load(&sr_intern_overflows) + sr_pset_overflows();
}

/* ---------------------------------------------------------------------------------------------
 * fork (native-tracer.md §5.7): the child is a new process whose parent is this one */

static void sr_atfork_prepare(void) {
    /* Take every lock in the sink's order so the child inherits consistent structures. */
    pthread_mutex_lock(&sr_control);
    pthread_mutex_lock(&sr_g.lock);
    pthread_mutex_lock(&sr_intern_lock);
    sr_pset_lock_all();
    pthread_mutex_lock(&sr_g.qlock);
}

static void sr_atfork_parent(void) {
    pthread_mutex_unlock(&sr_g.qlock);
    sr_pset_unlock_all();
    pthread_mutex_unlock(&sr_intern_lock);
    pthread_mutex_unlock(&sr_g.lock);
    pthread_mutex_unlock(&sr_control);
}

static void sr_atfork_child(void) {
    /* Only the forking thread exists here. Everything buffered or queued belongs to the parent,
     * which sends it: drop it (leaked rather than freed: other threads' structs may be mid-update
     * copies). New process id with the parent's as parent_process_id, new start anchor, new
     * streams; the sink thread is restarted before the locks are released. */
    pthread_mutex_unlock(&sr_g.qlock);
    sr_pset_unlock_all();
    pthread_mutex_unlock(&sr_intern_lock);
    pthread_mutex_unlock(&sr_g.lock);
    if (atomic_load(&sr_g.state) == SR_RUNNING) {
        memcpy(sr_g.parent_id, sr_g.process_id, 16);
        sr_g.has_parent = 1;
        sr_uuid4(sr_g.process_id);
        sr_set_pid_property();
        uint64_t freq = atomic_load(&sr_g.frequency);
        sr_g.start = sr_anchor_now();
        atomic_store(&sr_g.frequency, freq); /* same counter, same frequency */
        atomic_store(&sr_g.threads, NULL);
        atomic_store(&sr_g.nthreads, 0);
        sr_tls = NULL; /* the forking thread re-attaches with a new stream on its next event */
        pthread_setspecific(sr_key, NULL);
        sr_g.qhead = sr_g.qtail = NULL;
        sr_g.qbytes = sr_g.qitems = 0;
        sr_g.qevents = 0;
        sr_g.qtotal = 0;
        sr_g.qclosed = 0;
        sr_g.process_sent = 0;
        /* the child's counters start over: what they counted is the parent's to deliver */
        sr_reset_event_counters();
        sr_sink_reset_builders(0);
        sr_g.flush_requested = sr_g.flush_done = 0;
        sem_init(&sr_g.wake, 0, 0);
        atomic_fetch_add(&sr_g.session, 1); /* thread structs copied from the parent are stale */
        sr_g.sink_started = 0;
        if (sr_sink_start() != 0) atomic_store(&sr_g.state, SR_STOPPED);
    }
    pthread_mutex_unlock(&sr_control);
}
