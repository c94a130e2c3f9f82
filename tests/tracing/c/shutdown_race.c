/* Two races of the tracer's shutdown, made certain (tests/tracing/test_shutdown_race.py builds
 * this with -DSIRIUS_TEST_HOOKS and AddressSanitizer, and runs it with a timeout).
 *
 *   shutdown_race ITEMS_OUT walk SESSIONS THREADS
 *     SESSIONS times: THREADS workers emit and wait. Shutdown walks the thread registry to stop
 *     every producer; at its first step (sr_test_hook) the workers exit and we wait for the sink
 *     to pass. A pass unlinks and frees the structs of exited threads, so a walk that does not
 *     exclude passes then writes into freed structs (ASan: heap-use-after-free). Reports
 *     `passes_during_walk`, the sink passes that ran inside the walk (0 when it is excluded).
 *
 *   shutdown_race ITEMS_OUT attach SESSIONS
 *     SESSIONS times: a worker's first event runs the thread name hook (in Python it runs
 *     Python, which lets other threads run); the hook waits while the main thread shuts the
 *     tracer down and starts it again. A struct published after that lands in the new
 *     session's registry with the old session, and the next event re-attaches (resets and
 *     pushes) it while it is registered: a cycle in the registry, the sink loops for ever.
 *
 * ITEMS_OUT gets the ingestion items (item_writer.h), stdout "name value" pairs. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SIRIUS_TARGET "shutdown_race"
#include "sirius_tracing.h"
#include "item_writer.h"
#include "sirius_internal.h"

SIRIUS_SPAN_DESC(work_desc, "work");

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ready, released, hooked_session = -1, session_index;
static pthread_t *workers;
static int nworkers;
static unsigned long long passes_during_walk;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t sink_passes(void) {
    sirius_stats st;
    sirius_get_stats(&st); /* takes the queue and intern locks, never the pass lock */
    return st.sink_passes;
}

/* Called by the tracer (test builds only). */
void sr_test_hook(int where) {
    if (where != SR_HOOK_SHUTDOWN_WALK || hooked_session == session_index) return;
    hooked_session = session_index;
    pthread_mutex_lock(&mu);
    released = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < nworkers; i++) pthread_join(workers[i], NULL); /* exited: the sink may free them */
    uint64_t before = sink_passes();
    int64_t deadline = now_ms() + 300;
    while (sink_passes() < before + 2 && now_ms() < deadline) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    passes_during_walk += sink_passes() - before;
}

static void *walk_worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 8; i++) {
        sirius_span_begin(&work_desc);
        sirius_span_end(&work_desc);
    }
    pthread_mutex_lock(&mu);
    ready++;
    pthread_cond_broadcast(&cv);
    while (!released) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL;
}

/* attach mode: the name hook of the first attach waits for the main thread's restart */
extern void (*sr_thread_name_hook)(char *buf, size_t cap);
static int in_hook, restarted;

static void slow_name(char *buf, size_t cap) {
    pthread_mutex_lock(&mu);
    if (!restarted) {
        in_hook = 1;
        pthread_cond_broadcast(&cv);
        while (!restarted) pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    snprintf(buf, cap, "slow-name");
}

static void *attach_worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 100; i++) {
        sirius_span_begin(&work_desc);
        sirius_span_end(&work_desc);
    }
    return NULL;
}

static void start(FILE *out, pthread_t *consumer) {
    sirius_config cfg;
    sirius_config_default(&cfg);
    cfg.install_atexit = 0;
    cfg.chunk_size = 4096;
    cfg.chunks_per_thread = 2;
    cfg.flush_period_ms = 1; /* the sink passes as often as it can */
    if (sirius_init(&cfg) != 0) exit(3);
    pthread_create(consumer, NULL, write_items, out);
}

static void stop(pthread_t consumer) {
    if (sirius_shutdown(10000) != 0) exit(4);
    pthread_join(consumer, NULL);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s ITEMS_OUT walk SESSIONS THREADS | ITEMS_OUT attach SESSIONS\n", argv[0]);
        return 2;
    }
    FILE *out = fopen(argv[1], "wb");
    if (!out) return 2;
    int sessions = atoi(argv[3]);
    unsigned long long attached = 0;
    pthread_t consumer;
    if (strcmp(argv[2], "walk") == 0 && argc == 5) {
        nworkers = atoi(argv[4]);
        workers = calloc((size_t)nworkers, sizeof *workers);
        for (session_index = 0; session_index < sessions; session_index++) {
            start(out, &consumer);
            ready = released = 0;
            for (int i = 0; i < nworkers; i++) pthread_create(&workers[i], NULL, walk_worker, NULL);
            pthread_mutex_lock(&mu);
            while (ready < nworkers) pthread_cond_wait(&cv, &mu);
            pthread_mutex_unlock(&mu);
            stop(consumer); /* the hook releases and joins the workers */
            sirius_stats st;
            sirius_get_stats(&st);
            attached += st.threads_attached;
        }
        free(workers);
        printf("passes_during_walk %llu\n", passes_during_walk);
    } else if (strcmp(argv[2], "attach") == 0) {
        sr_thread_name_hook = slow_name;
        for (int s = 0; s < sessions; s++) {
            in_hook = restarted = 0;
            start(out, &consumer);
            pthread_t worker;
            pthread_create(&worker, NULL, attach_worker, NULL);
            pthread_mutex_lock(&mu);
            while (!in_hook) pthread_cond_wait(&cv, &mu);
            pthread_mutex_unlock(&mu);
            stop(consumer);
            start(out, &consumer);
            pthread_mutex_lock(&mu);
            restarted = 1;
            pthread_cond_broadcast(&cv);
            pthread_mutex_unlock(&mu);
            pthread_join(worker, NULL);
            sirius_stats st;
            sirius_get_stats(&st);
            attached += st.threads_attached;
            stop(consumer);
        }
    } else {
        return 2;
    }
    fclose(out);
    printf("sessions %d\nthreads_attached %llu\n", sessions, attached);
    return 0;
}
