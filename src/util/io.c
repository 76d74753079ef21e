#include "util/io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

static int libc_open(const char *path, int flags, mode_t mode)
{
    return open(path, flags, mode);
}

const struct io_ops io_libc = {
    .open = libc_open,
    .close = close,
    .pread = pread,
    .pwrite = pwrite,
    .pwritev = pwritev,
    .fdatasync = fdatasync,
    .fsync = fsync,
    .fallocate = fallocate,
    .ftruncate = ftruncate,
    .rename = rename,
    .unlink = unlink,
};

int io_pwritev_all(const struct io_ops *io, int fd, struct iovec *iov, int iovcnt, off_t off)
{
    while (iovcnt > 0) {
        ssize_t w = io->pwritev(fd, iov, iovcnt < IOV_MAX ? iovcnt : IOV_MAX, off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        off += w;
        size_t left = (size_t)w;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (left > 0) { /* a short write stopped inside this iovec */
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

int io_pread_all(const struct io_ops *io, int fd, void *buf, size_t n, off_t off)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = io->pread(fd, p, n, off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            errno = EIO;
            return -1;
        }
        p += r;
        n -= (size_t)r;
        off += r;
    }
    return 0;
}

int io_fsync_dir(const struct io_ops *io, const char *dir)
{
    int fd = io->open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int rc = io->fsync(fd);
    int saved = errno;
    io->close(fd);
    errno = saved;
    return rc;
}
