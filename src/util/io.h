/* io: the file-system calls the log and snapshots make, behind a table that
 * tests replace to inject faults (EIO, ENOSPC, short writes). */
#ifndef LKV_UTIL_IO_H
#define LKV_UTIL_IO_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Every member behaves like the libc call of the same name: -1 and errno on
 * failure. Tests may wrap io_libc and fail selected calls. */
struct io_ops {
    int (*open)(const char *path, int flags, mode_t mode);
    int (*close)(int fd);
    ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
    ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
    ssize_t (*pwritev)(int fd, const struct iovec *iov, int iovcnt, off_t off);
    int (*fdatasync)(int fd);
    int (*fsync)(int fd);
    int (*fallocate)(int fd, int mode, off_t off, off_t len);
    int (*ftruncate)(int fd, off_t len);
    int (*rename)(const char *from, const char *to);
    int (*unlink)(const char *path);
};

/* The real calls. */
extern const struct io_ops io_libc;

/* Writes all of iov at `off`, retrying short writes and EINTR; iov is
 * consumed (its entries are advanced in place). Returns 0, or -1 with errno
 * set (some prefix may have been written). */
int io_pwritev_all(const struct io_ops *io, int fd, struct iovec *iov, int iovcnt, off_t off);

/* Reads exactly n bytes at off. Returns 0, or -1 with errno set (EIO for an
 * unexpected end of file). */
int io_pread_all(const struct io_ops *io, int fd, void *buf, size_t n, off_t off);

/* fsyncs directory `dir` through io. Returns 0 or -1 with errno. */
int io_fsync_dir(const struct io_ops *io, const char *dir);

#endif
