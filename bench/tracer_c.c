/* C side of bench/tracer.py: ns per event of the native tracer's hot path, called from C.
 *
 *   tracer_c EVENTS ROUNDS [tsc|monotonic]
 *
 * Each round emits EVENTS span events (begin/end pairs of one static descriptor) into a thread
 * buffer big enough to hold them all (no drops, no slow path but the first), then flushes
 * outside the timed region. Prints the best round in ns/event. `run_loop` is kept out of line
 * so valgrind --toggle-collect=run_loop counts exactly the loop's instructions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sirius_tracing.h"

SIRIUS_SPAN_DESC(bench_desc, "bench");

__attribute__((noinline)) void run_loop(long pairs) {
    for (long i = 0; i < pairs; i++) {
        sirius_span_begin(&bench_desc);
        sirius_span_end(&bench_desc);
    }
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long events = argc > 1 ? atol(argv[1]) : 1000000;
    int rounds = argc > 2 ? atoi(argv[2]) : 7;
    sirius_config cfg;
    sirius_config_default(&cfg);
    cfg.chunk_size = (size_t)(events * 16 + 4096);
    cfg.chunks_per_thread = 2;
    cfg.block_size = 64u << 20;
    cfg.flush_period_ms = 60000;
    cfg.max_queue_bytes = 1u << 30;
    if (argc > 3 && strcmp(argv[3], "monotonic") == 0) cfg.clock = SIRIUS_CLOCK_MONOTONIC;
    if (sirius_init(&cfg) != 0) return 1;
    run_loop(1); /* attach this thread outside the timed region */
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        double t0 = now_ns();
        run_loop(events / 2);
        double dt = now_ns() - t0;
        if (dt < best) best = dt;
        sirius_flush(60000);
        /* drop the items: delivery is not measured here */
        static unsigned char *buf;
        static size_t cap;
        sirius_item_info info;
        for (;;) {
            int64_t n = sirius_next_item(buf, cap, 0, &info);
            if (n == SIRIUS_E_TOO_SMALL) {
                cap = info.size;
                buf = realloc(buf, cap);
                continue;
            }
            if (n <= 0) break;
        }
    }
    sirius_stats s;
    sirius_get_stats(&s);
    printf("ns_per_event %.2f dropped %llu\n", best / events, (unsigned long long)s.events_dropped);
    sirius_shutdown(10000);
    return 0;
}
