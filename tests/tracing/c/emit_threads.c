/* Acceptance program for the native tracer's C API, built from the public header and the
 * static library only (tests/tracing/test_c_program.py compiles it with cc).
 *
 *   emit_threads ITEMS_OUT EXPECTED_OUT THREADS ITERATIONS CHUNK_SIZE
 *
 * THREADS workers each run ITERATIONS times: an outer span, a named span, a static log, a
 * formatted log, an integer and a float metric, an async span, a named async span. A consumer thread pulls the
 * ingestion bodies with sirius_next_item and writes them to ITEMS_OUT as
 * [u8 kind][u32 nb_objects][u32 size][body]. EXPECTED_OUT gets one line per emitted event:
 * "tid kind name value wall_ns" (wall clock read just before the call), and stdout the stats. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SIRIUS_TARGET "emit_threads"
#include "sirius_tracing.h"
#include "item_writer.h"

typedef struct {
    int index;
    int iterations;
    char *log;
    size_t len, cap;
} worker_t;

static int64_t wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void expect(worker_t *w, const char *kind, const char *name, const char *value) {
    char line[256];
    int n = snprintf(line, sizeof line, "%ld\t%s\t%s\t%s\t%" PRId64 "\n", (long)syscall(SYS_gettid), kind, name,
                     value, wall_ns());
    if (w->len + (size_t)n + 1 > w->cap) {
        w->cap = (w->cap + (size_t)n + 1) * 2;
        w->log = realloc(w->log, w->cap);
    }
    memcpy(w->log + w->len, line, (size_t)n);
    w->len += (size_t)n;
}

SIRIUS_SPAN_DESC(outer_desc, "outer");
SIRIUS_SPAN_DESC(task_desc, "task");
SIRIUS_LOCATION_DESC(item_location);

static void *worker(void *arg) {
    worker_t *w = arg;
    char name[32], value[64];
    snprintf(name, sizeof name, "worker-%d", w->index);
    sirius_set_thread_name(name);
    sirius_string item_names[3];
    char item_text[3][16];
    for (int k = 0; k < 3; k++) {
        int n = snprintf(item_text[k], sizeof item_text[k], "item-%d", k);
        item_names[k] = sirius_intern(item_text[k], (size_t)n);
    }
    for (int j = 0; j < w->iterations; j++) {
        expect(w, "begin", "outer", "");
        sirius_span_begin(&outer_desc);
        snprintf(value, sizeof value, "item-%d", j % 3);
        expect(w, "begin_named", value, "");
        sirius_span_begin_named(&item_location, item_names[j % 3]);
        expect(w, "log", "static message", "4");
        SIRIUS_LOG(SIRIUS_LEVEL_INFO, "static message");
        snprintf(value, sizeof value, "dynamic %d %d", w->index, j);
        expect(w, "log", value, "3");
        SIRIUS_LOGF(SIRIUS_LEVEL_WARN, "dynamic %d %d", w->index, j);
        snprintf(value, sizeof value, "%d", j);
        expect(w, "metric", "count", value);
        SIRIUS_METRIC_INT("count", "items", j);
        snprintf(value, sizeof value, "%.1f", j / 2.0);
        expect(w, "metric", "ratio", value);
        SIRIUS_METRIC_FLOAT("ratio", "", j / 2.0);
        snprintf(value, sizeof value, "item-%d", j % 3);
        expect(w, "end_named", value, "");
        sirius_span_end_named(&item_location, item_names[j % 3]);
        uint64_t id = sirius_new_span_id();
        snprintf(value, sizeof value, "%" PRIu64, id);
        expect(w, "async_begin", "task", value);
        sirius_async_begin(&task_desc, id, 0, 1);
        expect(w, "async_end", "task", value);
        sirius_async_end(&task_desc, id, 0, 1);
        uint64_t named_id = sirius_new_span_id();
        snprintf(value, sizeof value, "%" PRIu64, named_id);
        expect(w, "async_begin_named", item_text[j % 3], value);
        sirius_async_begin_named(&item_location, item_names[j % 3], named_id, 0, 1);
        expect(w, "async_end_named", item_text[j % 3], value);
        sirius_async_end_named(&item_location, item_names[j % 3], named_id, 0, 1);
        expect(w, "end", "outer", "");
        sirius_span_end(&outer_desc);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s ITEMS_OUT EXPECTED_OUT THREADS ITERATIONS CHUNK_SIZE\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[3]), iterations = atoi(argv[4]);
    FILE *items_out = fopen(argv[1], "wb");
    FILE *expected = fopen(argv[2], "w");
    if (!items_out || !expected) return 2;
    static const char *const properties[] = {"test", "c-program", NULL};
    sirius_config cfg;
    sirius_config_default(&cfg);
    cfg.chunk_size = (size_t)atol(argv[5]);
    cfg.chunks_per_thread = 2;
    cfg.properties = properties;
    if (sirius_init(&cfg) != 0) return 3;
    pthread_t consumer_thread;
    pthread_create(&consumer_thread, NULL, write_items, items_out);
    worker_t *workers = calloc((size_t)threads, sizeof *workers);
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    for (int i = 0; i < threads; i++) {
        workers[i].index = i;
        workers[i].iterations = iterations;
        pthread_create(&ids[i], NULL, worker, &workers[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(ids[i], NULL);
        fwrite(workers[i].log, 1, workers[i].len, expected);
        free(workers[i].log);
    }
    fclose(expected);
    int rc = sirius_shutdown(10000);
    pthread_join(consumer_thread, NULL);
    fclose(items_out);
    sirius_stats s;
    sirius_get_stats(&s);
    printf("rc %d emitted %lld recorded %" PRIu64 " dropped %" PRIu64 " blocks %" PRIu64 " blocks_dropped %" PRIu64
           " threads %" PRIu64 "\n",
           rc, (long long)threads * iterations * 12, s.events_recorded, s.events_dropped, s.blocks_produced,
           s.blocks_dropped, s.threads_attached);
    free(workers);
    free(ids);
    return 0;
}
