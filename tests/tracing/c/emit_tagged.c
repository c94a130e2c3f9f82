/* Acceptance program for the tagged events of the native tracer's C API (property sets, tagged
 * metrics and logs), built from the public header and the static library only
 * (tests/tracing/test_c_tagged.py compiles it with cc).
 *
 *   emit_tagged ITEMS_OUT THREADS ITERATIONS
 *
 * THREADS workers each run ITERATIONS times: a tagged integer metric "query_denied" (value j) and a
 * tagged float metric "latency" (j / 4.0) with {rule_id: r<j % 3>, worker: w<i>}, and a tagged
 * log "denied <i> <j>" (warn) with {k: v<j % 2>}. Then the main thread checks the property set API
 * and emits the edge cases (NULL descriptor, set 0, NULL message, overrides, a long message).
 * Each worker flushes halfway, so its sets recur in later blocks. ITEMS_OUT gets
 * [u8 kind][u32 nb_objects][u32 size][body] per item; stdout "name value" pairs. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIRIUS_TARGET "emit_tagged"
#include "sirius_tracing.h"
#include "item_writer.h"

static int iterations;

static const sirius_desc denied_desc = {SIRIUS_DESC_METRIC, 1, "query_denied", "emit_tagged", "emit_tagged",
                                        "emit_tagged.c", "count", 0, 0};
static const sirius_desc latency_desc = {SIRIUS_DESC_METRIC, 2, "latency", "emit_tagged", "emit_tagged",
                                         "emit_tagged.c", "ms", 0, 0};
static const sirius_desc warn_desc = {SIRIUS_DESC_LOG, 3, "", "emit_tagged", "emit_tagged", "emit_tagged.c",
                                      NULL, SIRIUS_LEVEL_WARN, 0};

static void *worker(void *arg) {
    int index = (int)(intptr_t)arg;
    char worker_name[16], rule[3][8], msg[64];
    snprintf(worker_name, sizeof worker_name, "w%d", index);
    sirius_property_set rules[3], logs[2];
    for (int k = 0; k < 3; k++) {
        snprintf(rule[k], sizeof rule[k], "r%d", k);
        /* interned once per set, names in either order: the same id either way */
        const char *kv[] = {"worker", worker_name, "rule_id", rule[k]};
        const char *swapped[] = {"rule_id", rule[k], "worker", worker_name};
        rules[k] = sirius_property_set_new(k % 2 ? kv : swapped, NULL, 2);
    }
    const char *v0[] = {"k", "v0"}, *v1[] = {"k", "v1"};
    logs[0] = sirius_property_set_new(v0, NULL, 1);
    logs[1] = sirius_property_set_new(v1, NULL, 1);
    for (int j = 0; j < iterations; j++) {
        if (j == iterations / 2) sirius_flush(10000); /* the second half's sets recur in new blocks */
        sirius_metric_tagged_int(&denied_desc, rules[j % 3], j);
        sirius_metric_tagged_float(&latency_desc, rules[j % 3], j / 4.0);
        int n = snprintf(msg, sizeof msg, "denied %d %d", index, j);
        sirius_log_tagged(&warn_desc, logs[j % 2], msg, (size_t)n);
    }
    return NULL;
}

/* The property set API's contract, printed as "name 0|1". */
static sirius_property_set api_checks(sirius_property_set *dup_set) {
    const char *ab[] = {"a", "1", "b", "2"}, *ba[] = {"b", "2", "a", "1"};
    printf("same_id_any_order %d\n", sirius_property_set_new(ab, NULL, 2) == sirius_property_set_new(ba, NULL, 2));
    printf("distinct_sets_differ %d\n", sirius_property_set_new(ab, NULL, 2) != sirius_property_set_new(ab, NULL, 1));
    const char *dup[] = {"a", "1", "a", "2"}, *last[] = {"a", "2"};
    *dup_set = sirius_property_set_new(dup, NULL, 2);
    printf("repeated_name_keeps_last %d\n", *dup_set == sirius_property_set_new(last, NULL, 1));
    printf("null_kv_is_0 %d\n", sirius_property_set_new(NULL, NULL, 1) == 0);
    sirius_property_set empty = sirius_property_set_new(NULL, NULL, 0);
    printf("empty_is_a_set %d\n", empty != 0);
    const char **many = malloc(2 * (SIRIUS_MAX_PROPERTIES + 1) * sizeof *many);
    for (int i = 0; i < 2 * (SIRIUS_MAX_PROPERTIES + 1); i++) many[i] = "x";
    printf("too_many_is_0 %d\n", sirius_property_set_new(many, NULL, SIRIUS_MAX_PROPERTIES + 1) == 0);
    free(many);
    const char *sliced[] = {"rule_id and more", "r1 and more"}, *whole[] = {"rule_id", "r1"};
    const size_t lens[] = {7, 2};
    printf("lengths_cut_strings %d\n", sirius_property_set_new(sliced, lens, 1) == sirius_property_set_new(whole, NULL, 1));
    const char *with_null[] = {NULL, "v"}, *with_empty[] = {"", "v"};
    printf("null_string_is_empty %d\n",
           sirius_property_set_new(with_null, NULL, 1) == sirius_property_set_new(with_empty, NULL, 1));
    return empty;
}

/* The cardinality cap: 300 x 300 two-property sets from 600 strings (below the string cap);
 * past the set cap new sets are 0 and counted, sets made before are still found. */
static void cap_checks(void) {
    const char *ab[] = {"a", "1", "b", "2"};
    sirius_property_set before = sirius_property_set_new(ab, NULL, 2);
    sirius_stats s0, s1;
    sirius_get_stats(&s0);
    int made = 0, refused = 0;
    char x[8], y[8];
    for (int i = 0; i < 300; i++) {
        for (int j = 0; j < 300; j++) {
            snprintf(x, sizeof x, "x%d", i);
            snprintf(y, sizeof y, "y%d", j);
            const char *kv[] = {"cap_x", x, "cap_y", y};
            if (sirius_property_set_new(kv, NULL, 2)) made++;
            else refused++;
        }
    }
    sirius_get_stats(&s1);
    printf("cap_sets_made %d\ncap_sets_refused %d\ncap_overflows_counted %" PRIu64 "\n", made, refused,
           s1.intern_overflows - s0.intern_overflows);
    printf("cap_keeps_old_sets %d\n", sirius_property_set_new(ab, NULL, 2) == before && before != 0);
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s ITEMS_OUT THREADS ITERATIONS\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[2]);
    iterations = atoi(argv[3]);
    FILE *items_out = fopen(argv[1], "wb");
    if (!items_out) return 2;
    sirius_config cfg;
    sirius_config_default(&cfg);
    cfg.block_size = 1024; /* small blocks: each one carries the sets its events use */
    if (sirius_init(&cfg) != 0) return 3;
    pthread_t consumer_thread;
    pthread_create(&consumer_thread, NULL, write_items, items_out);
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    for (int i = 0; i < threads; i++) pthread_create(&ids[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
    sirius_property_set dup_set;
    sirius_property_set empty = api_checks(&dup_set);
    /* edge cases: 5 events recorded, the NULL-descriptor calls record nothing */
    sirius_metric_tagged_int(NULL, empty, 1);
    sirius_metric_tagged_float(NULL, empty, 1.0);
    sirius_log_tagged(NULL, empty, "lost", 4);
    sirius_metric_tagged_int(&denied_desc, 0, -1);                   /* set 0: the empty set */
    sirius_log_tagged(&warn_desc, empty, NULL, 10);                  /* NULL message: "" */
    SIRIUS_METRIC_TAGGED_FLOAT("edge_float", "ms", dup_set, 0.25);   /* {a: 2} */
    const char *over[] = {"target", "overridden.target", "level", "error"};
    SIRIUS_LOG_TAGGED(SIRIUS_LEVEL_INFO, sirius_property_set_new(over, NULL, 2), "overridden");
    char *long_msg = malloc(5000);
    memset(long_msg, 'x', 5000);
    sirius_log_tagged(&warn_desc, empty, long_msg, 5000); /* cut at 4000 bytes */
    free(long_msg);
    cap_checks(); /* last: the sets above were made before the cap */
    int rc = sirius_shutdown(10000);
    pthread_join(consumer_thread, NULL);
    fclose(items_out);
    sirius_stats s;
    sirius_get_stats(&s);
    printf("rc %d\nemitted %lld\nrecorded %" PRIu64 "\ndropped %" PRIu64 "\nblocks %" PRIu64 "\n", rc,
           (long long)threads * iterations * 3 + 5, s.events_recorded, s.events_dropped, s.blocks_produced);
    free(ids);
    return 0;
}
