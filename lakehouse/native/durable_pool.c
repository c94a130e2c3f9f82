/* The C writer pool of durable_write.h: writer threads, one directory-sync thread, an eventfd.
 *
 * Why: a local object write through asyncio.to_thread wakes a Python worker thread, which takes
 * the GIL before and after each C call, and wakes the event loop through its self-pipe; on two
 * busy cores those hand-offs cost the loop thread more than the write's own syscalls (the
 * receivers' loop thread spent ~150 µs more per request with the durable store than with an
 * in-memory one, before any fsync). Here the loop submits a job with one call, the threads never
 * touch Python, and one eventfd read plus one drain call completes every job finished since.
 *
 * Guarantees are those of lakehouse/_durable_write.py: the file's data is fsynced before its
 * name exists (sirius_durable_create), and a durable job completes only after an fsync of its
 * directory that started after its link (the sync thread snapshots the queue, then syncs). */

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#include "durable_write.h"

#ifdef __linux__ /* eventfd and O_TMPFILE: elsewhere the store writes through Python threads */

typedef struct job {
    struct job *next;
    uint64_t token;
    char *dir;
    char *path;
    const char *head;
    size_t head_len;
    const char *data;
    size_t data_len;
    int durable;
    int32_t result;      /* sirius_durable_create's */
    int32_t sync_result; /* the directory fsync's: 0 or -errno */
} job;

typedef struct {
    job *head;
    job *tail;
} job_list;

struct sirius_durable_pool {
    pthread_mutex_t lock; /* one lock for the three lists: each critical section is a few stores */
    pthread_cond_t work;  /* writers: `queued` not empty, or stopping */
    pthread_cond_t sync;  /* the sync thread: `syncs` not empty, or every writer gone */
    job_list queued;      /* submitted, waiting for a writer */
    job_list syncs;       /* linked, waiting for their directory fsync */
    job_list done;        /* completed, waiting for the caller */
    int stopping;
    int writers_running;
    int threads;
    int event_fd;
    pthread_t sync_thread;
    pthread_t *writers;
};

static void push(job_list *list, job *j) {
    j->next = NULL;
    if (list->tail)
        list->tail->next = j;
    else
        list->head = j;
    list->tail = j;
}

static job *pop(job_list *list) {
    job *j = list->head;
    if (j) {
        list->head = j->next;
        if (!list->head)
            list->tail = NULL;
    }
    return j;
}

static void free_job(job *j) {
    free(j->dir);
    free(j->path);
    free(j);
}

/* Called with the lock held. */
static void complete_locked(sirius_durable_pool *pool, job *j) {
    push(&pool->done, j);
    uint64_t one = 1;
    /* cannot fail short of an overflow of 2^64-1 unread completions */
    ssize_t ignored = write(pool->event_fd, &one, sizeof one);
    (void)ignored;
}

static void *writer_main(void *arg) {
    sirius_durable_pool *pool = arg;
    pthread_setname_np(pthread_self(), "durable-write"); /* named in top, perf, /proc/.../comm */
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        job *j = pop(&pool->queued);
        if (!j) {
            if (pool->stopping)
                break;
            pthread_cond_wait(&pool->work, &pool->lock);
            continue;
        }
        pthread_mutex_unlock(&pool->lock);
        j->result = sirius_durable_create(j->dir, j->path, j->head, j->head_len, j->data, j->data_len,
                                          j->durable);
        pthread_mutex_lock(&pool->lock);
        /* A name that already existed is synced too: its writer may not have synced the
         * directory yet (a concurrent retry), and this job must not answer before it is. */
        if ((j->result == 1 || j->result == 0) && j->durable) {
            push(&pool->syncs, j);
            pthread_cond_signal(&pool->sync);
        } else {
            complete_locked(pool, j);
        }
    }
    pool->writers_running--;
    pthread_cond_signal(&pool->sync);
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

static void *sync_main(void *arg) {
    sirius_durable_pool *pool = arg;
    pthread_setname_np(pthread_self(), "durable-dirsync");
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        if (!pool->syncs.head) {
            if (pool->stopping && pool->writers_running == 0)
                break;
            pthread_cond_wait(&pool->sync, &pool->lock);
            continue;
        }
        /* Every job in this snapshot was linked before the fsyncs below start. */
        job_list batch = pool->syncs;
        pool->syncs.head = pool->syncs.tail = NULL;
        pthread_mutex_unlock(&pool->lock);
        for (job *j = batch.head; j; j = j->next) {
            job *first = batch.head; /* a directory already synced in this batch? reuse its result */
            while (first != j && strcmp(first->dir, j->dir) != 0)
                first = first->next;
            j->sync_result = first != j ? first->sync_result : sirius_fsync_directory(j->dir);
        }
        pthread_mutex_lock(&pool->lock);
        job *j;
        while ((j = pop(&batch)) != NULL) {
            if (j->sync_result < 0)
                j->result = j->sync_result;
            complete_locked(pool, j);
        }
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

sirius_durable_pool *sirius_durable_pool_new(int threads) {
    if (threads < 1)
        threads = 1;
    sirius_durable_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return NULL;
    pool->writers = calloc((size_t)threads, sizeof *pool->writers);
    pool->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!pool->writers || pool->event_fd < 0) {
        int e = errno;
        if (pool->event_fd >= 0)
            close(pool->event_fd);
        free(pool->writers);
        free(pool);
        errno = e;
        return NULL;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work, NULL);
    pthread_cond_init(&pool->sync, NULL);
    pthread_mutex_lock(&pool->lock);
    int started = 0;
    int e = 0;
    for (; started < threads; started++) {
        e = pthread_create(&pool->writers[started], NULL, writer_main, pool);
        if (e)
            break;
        pool->writers_running++;
    }
    if (!e)
        e = pthread_create(&pool->sync_thread, NULL, sync_main, pool);
    pool->threads = started;
    pthread_mutex_unlock(&pool->lock);
    if (e) { /* stop what started; the sync thread did not */
        pthread_mutex_lock(&pool->lock);
        pool->stopping = 1;
        pthread_cond_broadcast(&pool->work);
        pthread_mutex_unlock(&pool->lock);
        for (int i = 0; i < started; i++)
            pthread_join(pool->writers[i], NULL);
        close(pool->event_fd);
        free(pool->writers);
        free(pool);
        errno = e;
        return NULL;
    }
    return pool;
}

int sirius_durable_pool_fd(sirius_durable_pool *pool) { return pool->event_fd; }

int sirius_durable_pool_submit(sirius_durable_pool *pool, uint64_t token, const char *dir,
                               const char *path, const char *head, size_t head_len,
                               const char *data, size_t data_len, int durable) {
    job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->dir = strdup(dir);
    j->path = strdup(path);
    if (!j->dir || !j->path) {
        free_job(j);
        return -ENOMEM;
    }
    j->token = token;
    j->head = head;
    j->head_len = head_len;
    j->data = data;
    j->data_len = data_len;
    j->durable = durable;
    pthread_mutex_lock(&pool->lock);
    if (pool->stopping) {
        pthread_mutex_unlock(&pool->lock);
        free_job(j);
        return -ESHUTDOWN;
    }
    push(&pool->queued, j);
    pthread_cond_signal(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    return 0;
}

int64_t sirius_durable_pool_completed(sirius_durable_pool *pool, uint64_t *tokens, int32_t *results,
                                      int64_t capacity) {
    int64_t n = 0;
    pthread_mutex_lock(&pool->lock);
    while (n < capacity) {
        job *j = pop(&pool->done);
        if (!j)
            break;
        tokens[n] = j->token;
        results[n] = j->result;
        n++;
        free_job(j);
    }
    pthread_mutex_unlock(&pool->lock);
    return n;
}

void sirius_durable_pool_stop(sirius_durable_pool *pool) {
    /* Only the caller's thread stops and frees the pool, so `stopping` == 2 needs no lock. */
    if (pool->stopping == 2)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->work);
    pthread_cond_broadcast(&pool->sync);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->threads; i++)
        pthread_join(pool->writers[i], NULL);
    pthread_join(pool->sync_thread, NULL);
    pool->stopping = 2; /* threads joined: a second stop (or free) does not join again */
}

void sirius_durable_pool_free(sirius_durable_pool *pool) {
    sirius_durable_pool_stop(pool);
    job *j;
    while ((j = pop(&pool->done)) != NULL)
        free_job(j);
    close(pool->event_fd);
    pthread_cond_destroy(&pool->work);
    pthread_cond_destroy(&pool->sync);
    pthread_mutex_destroy(&pool->lock);
    free(pool->writers);
    free(pool);
}

#else

struct sirius_durable_pool {
    int unused;
};

sirius_durable_pool *sirius_durable_pool_new(int threads) {
    (void)threads;
    errno = ENOSYS;
    return NULL;
}
int sirius_durable_pool_fd(sirius_durable_pool *pool) { return (void)pool, -1; }
int sirius_durable_pool_submit(sirius_durable_pool *pool, uint64_t token, const char *dir,
                               const char *path, const char *head, size_t head_len,
                               const char *data, size_t data_len, int durable) {
    (void)pool, (void)token, (void)dir, (void)path, (void)head, (void)head_len, (void)data;
    (void)data_len, (void)durable;
    return -ENOSYS;
}
int64_t sirius_durable_pool_completed(sirius_durable_pool *pool, uint64_t *tokens, int32_t *results,
                                      int64_t capacity) {
    (void)pool, (void)tokens, (void)results, (void)capacity;
    return 0;
}
void sirius_durable_pool_stop(sirius_durable_pool *pool) { (void)pool; }
void sirius_durable_pool_free(sirius_durable_pool *pool) { (void)pool; }

#endif
