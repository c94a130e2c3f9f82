/* Property sets: the (name, value) lists tagged metrics and logs carry (Micromegas's PropertySet).
 *
 * A set is interned once (control plane: a mutex, never freed) and its address is its
 * process-lifetime id, which hot calls store into the thread buffer like a descriptor's. The sink
 * writes a set into a block's dependencies the first time one of the block's events uses it
 * (sink.c, sr_dep_props). The strings are interned first (sr_intern_text, its own lock) and the
 * set table is locked only after, so the two locks are never held together except around fork.
 * Canonical form: sorted by name, a repeated name keeping its last value, so equal sets given in
 * any order share one id. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "sirius_internal.h"

#define SR_PSET_CAP 65536 /* distinct sets per process; past it, 0 (the empty set) and a count */
#define SR_PSET_BUCKETS 4096

const sr_pset sr_pset_empty = {0};

static pthread_mutex_t sr_pset_lock = PTHREAD_MUTEX_INITIALIZER;
static sr_pset *sr_pset_table[SR_PSET_BUCKETS];
static size_t sr_pset_count;
static _Atomic uint64_t sr_pset_overflow_count;

typedef struct sr_pair {
    const char *name, *value; /* interned */
    size_t order;             /* position given, so a repeated name keeps its last value */
} sr_pair;

static int sr_pair_cmp(const void *a, const void *b) {
    const sr_pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static uint64_t sr_pset_hash(const sr_pair *pairs, size_t n) {
    /* interned strings: equal text is the same pointer, so the pointers identify the set */
    uint64_t h = 1469598103934665603ull ^ n;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (uint64_t)(uintptr_t)pairs[i].name) * 1099511628211ull;
        h = (h ^ (uint64_t)(uintptr_t)pairs[i].value) * 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static int sr_pset_equal(const sr_pset *s, uint64_t h, const sr_pair *pairs, size_t n) {
    if (s->hash != h || s->count != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (s->kv[2 * i] != pairs[i].name || s->kv[2 * i + 1] != pairs[i].value) return 0;
    return 1;
}

/* Sort by name and keep the last value of each name; returns the number of pairs left. */
static size_t sr_canonical(sr_pair *pairs, size_t n) {
    qsort(pairs, n, sizeof *pairs, sr_pair_cmp);
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && strcmp(pairs[i].name, pairs[i + 1].name) == 0) continue; /* a later value follows */
        pairs[out++] = pairs[i];
    }
    return out;
}

static sirius_property_set sr_pset_find_or_add(const sr_pair *pairs, size_t n) {
    uint64_t h = sr_pset_hash(pairs, n);
    pthread_mutex_lock(&sr_pset_lock);
    sr_pset **slot = &sr_pset_table[h % SR_PSET_BUCKETS];
    for (sr_pset *s = *slot; s; s = s->next) {
        if (sr_pset_equal(s, h, pairs, n)) {
            pthread_mutex_unlock(&sr_pset_lock);
            return (sirius_property_set)(uintptr_t)s;
        }
    }
    sr_pset *s = NULL;
    if (sr_pset_count >= SR_PSET_CAP) {
        atomic_fetch_add(&sr_pset_overflow_count, 1);
    } else if (posix_memalign((void **)&s, 16, sizeof *s + 2 * n * sizeof(const char *)) != 0) {
        s = NULL;
    } else {
        s->hash = h;
        s->count = (uint32_t)n;
        for (size_t i = 0; i < n; i++) {
            s->kv[2 * i] = pairs[i].name;
            s->kv[2 * i + 1] = pairs[i].value;
        }
        s->next = *slot;
        *slot = s;
        sr_pset_count++;
    }
    pthread_mutex_unlock(&sr_pset_lock);
    return (sirius_property_set)(uintptr_t)s;
}

sirius_property_set sirius_property_set_new(const char *const *kv, const size_t *lens, size_t count) {
    if (count == 0) return (sirius_property_set)(uintptr_t)&sr_pset_empty;
    if (!kv || count > SIRIUS_MAX_PROPERTIES) return 0;
    sr_pair *pairs = malloc(count * sizeof *pairs);
    if (!pairs) return 0;
    for (size_t i = 0; i < count; i++) {
        const char *name = kv[2 * i], *value = kv[2 * i + 1];
        size_t name_len = !name ? 0 : lens ? lens[2 * i] : strlen(name);
        size_t value_len = !value ? 0 : lens ? lens[2 * i + 1] : strlen(value);
        pairs[i].name = sr_intern_text(name ? name : "", name_len);
        pairs[i].value = sr_intern_text(value ? value : "", value_len);
        pairs[i].order = i;
    }
    size_t n = sr_canonical(pairs, count);
    sirius_property_set id = sr_pset_find_or_add(pairs, n);
    free(pairs);
    return id;
}

uint64_t sr_pset_overflows(void) { return atomic_load(&sr_pset_overflow_count); }

void sr_pset_lock_all(void) { pthread_mutex_lock(&sr_pset_lock); }

void sr_pset_unlock_all(void) { pthread_mutex_unlock(&sr_pset_lock); }
