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
