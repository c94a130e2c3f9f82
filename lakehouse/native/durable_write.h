/* Durable create-only file writes in one call each, so the caller's thread releases the GIL once
 * for the whole open/write/fsync/link sequence. Declarations shared by durable_write.c and the
 * cffi builder (lakehouse/_durable_native_build.py). */

/* Returned by sirius_durable_create when O_TMPFILE is refused here (filesystem or kernel):
 * the caller writes through a named temporary file instead. */
#define SIRIUS_DURABLE_NO_TMPFILE -100000

/* Create `path` (in directory `dir`, which must exist) holding head[0..head_len) followed by
 * data[0..data_len), only if no entry has that name. The bytes go into an unnamed O_TMPFILE
 * inode, are fsynced (when `durable`) and only then linked to `path` with linkat through
 * /proc/self/fd (create-only: EEXIST). The directory itself is NOT synced here (the caller's
 * group commit does that). Returns 1 when created, 0 when the name exists, -errno on failure,
 * or SIRIUS_DURABLE_NO_TMPFILE. */
int sirius_durable_create(const char *dir, const char *path, const char *head, size_t head_len,
                          const char *data, size_t data_len, int durable);

/* open + fsync + close of a directory: 0, or -errno. */
int sirius_fsync_directory(const char *dir);

/* A pool of C threads doing sirius_durable_create for an event loop, so no Python thread (and
 * no GIL hand-off) is involved in a local object write. Submitted jobs run on `threads` writer
 * threads; a durable job that created its file (or found the name taken: its writer may not
 * have synced the directory yet) then goes to one directory-sync thread, which
 * takes every job queued so far, fsyncs each distinct directory once (group commit: each of
 * those fsyncs starts after the links it covers) and completes them. Completed jobs are queued
 * for the caller, and the eventfd returned by sirius_durable_pool_fd is signalled. */
typedef struct sirius_durable_pool sirius_durable_pool;

/* NULL on failure (errno set). */
sirius_durable_pool *sirius_durable_pool_new(int threads);
/* The non-blocking eventfd signalled when jobs complete (read it, then drain). */
int sirius_durable_pool_fd(sirius_durable_pool *pool);
/* Queue a job (dir and path are copied; head and data must stay valid until it completes).
 * 0, or -errno. */
int sirius_durable_pool_submit(sirius_durable_pool *pool, uint64_t token, const char *dir,
                               const char *path, const char *head, size_t head_len,
                               const char *data, size_t data_len, int durable);
/* Move up to `capacity` completed jobs to tokens/results (results as sirius_durable_create, a
 * failed directory fsync as its -errno); returns how many. */
int64_t sirius_durable_pool_completed(sirius_durable_pool *pool, uint64_t *tokens, int32_t *results,
                                      int64_t capacity);
/* Finish every queued job and stop the threads; completed jobs can still be drained. */
void sirius_durable_pool_stop(sirius_durable_pool *pool);
/* Stop (if not yet), then free everything (results not drained are dropped). */
void sirius_durable_pool_free(sirius_durable_pool *pool);
