/* Durable create-only file writes (see durable_write.h and lakehouse/_durable_write.py).
 *
 * Everything lakehouse/_durable_write.py does through os.open/os.write/os.fsync/os.link, in one
 * C call: CPython releases and re-takes the GIL around each of those syscalls, and under load
 * (the event loop thread wanting it back) every hand-off is a futex wake-up and a wait. cffi
 * releases the GIL once around the whole call. The guarantees are the Python path's: the data
 * is fsynced before the name exists, and the name is created only if absent. */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <unistd.h>

#include "durable_write.h"

static int write_all(int fd, const char *head, size_t head_len, const char *data, size_t data_len) {
    struct iovec iov[2];
    iov[0].iov_base = (void *)head;
    iov[0].iov_len = head_len;
    iov[1].iov_base = (void *)data;
    iov[1].iov_len = data_len;
    struct iovec *v = iov;
    int count = 2;
    while (count > 0) {
        if (v->iov_len == 0) { /* skip empty parts (and what a short write has consumed) */
            v++;
            count--;
            continue;
        }
        ssize_t n = writev(fd, v, count);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        size_t left = (size_t)n;
        while (count > 0 && left >= v->iov_len) {
            left -= v->iov_len;
            v++;
            count--;
        }
        if (count > 0) {
            v->iov_base = (char *)v->iov_base + left;
            v->iov_len -= left;
        }
    }
    return 0;
}

int sirius_durable_create(const char *dir, const char *path, const char *head, size_t head_len,
                          const char *data, size_t data_len, int durable) {
#ifndef O_TMPFILE /* not Linux: the caller writes a named temporary file */
    (void)dir, (void)path, (void)head, (void)head_len, (void)data, (void)data_len, (void)durable;
    (void)write_all;
    return SIRIUS_DURABLE_NO_TMPFILE;
#else
    int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        /* the refusals of a filesystem or kernel without O_TMPFILE (as the Python path's set) */
        if (e == EOPNOTSUPP || e == EISDIR || e == EINVAL || e == ENOSYS)
            return SIRIUS_DURABLE_NO_TMPFILE;
        return -e;
    }
    int rc = write_all(fd, head, head_len, data, data_len);
    if (rc == 0 && durable) {
        while (fsync(fd) != 0) {
            if (errno != EINTR) {
                rc = -errno;
                break;
            }
        }
    }
    if (rc == 0) {
        /* linkat(fd, "", ..., AT_EMPTY_PATH) would need CAP_DAC_READ_SEARCH; the /proc link of
         * the fd with AT_SYMLINK_FOLLOW links the inode itself, unprivileged. */
        char proc[40];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0)
            rc = 1;
        else
            rc = errno == EEXIST ? 0 : -errno;
    }
    close(fd); /* an unnamed inode that was not linked is freed here: nothing left behind */
    return rc;
#endif
}

int sirius_fsync_directory(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    while (fsync(fd) != 0) {
        if (errno != EINTR) {
            rc = -errno;
            break;
        }
    }
    close(fd);
    return rc;
}
