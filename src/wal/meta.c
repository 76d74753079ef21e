#include "wal/meta.h"

#include "util/crc32c.h"
#include "util/endian.h"
#include "util/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const uint8_t meta_magic[8] = {'L', 'K', 'V', 'M', 'E', 'T', 'A', 0};

void meta_encode(uint8_t out[META_SIZE], const struct meta *m)
{
    memset(out, 0, META_SIZE);
    memcpy(out, meta_magic, sizeof meta_magic);
    le_put32(out + 8, META_FORMAT_VERSION);
    le_put64(out + 16, m->term);
    le_put64(out + 24, m->vote);
    le_put64(out + 32, m->cluster_id);
    le_put32(out + META_SIZE - 4, crc32c(out, META_SIZE - 4));
}

int meta_decode(const uint8_t *buf, size_t len, struct meta *m)
{
    if (len < 16 || memcmp(buf, meta_magic, sizeof meta_magic) != 0 ||
        le_get32(buf + len - 4) != crc32c(buf, len - 4))
        return LKV_ECORRUPT;
    uint32_t version = le_get32(buf + 8);
    size_t want = version == 1 ? META_SIZE_V1 : version == 2 ? META_SIZE : 0;
    if (want == 0) {
        m->version = version;
        return LKV_EFORMAT;
    }
    if (len != want)
        return LKV_ECORRUPT;
    m->version = version;
    m->term = le_get64(buf + 16);
    m->vote = le_get64(buf + 24);
    m->cluster_id = version >= 2 ? le_get64(buf + 32) : 0;
    return 0;
}

int meta_load(const char *dir, const struct io_ops *io, struct meta *m, char *err,
              size_t errlen)
{
    io = io ? io : &io_libc;
    char path[4200];
    snprintf(path, sizeof path, "%s/" META_FILE, dir);
    int fd = io->open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0 && errno == ENOENT)
        return 0;
    uint8_t buf[4096]; /* a newer version may be longer: read enough to tell */
    ssize_t n = fd < 0 ? -1 : io->pread(fd, buf, sizeof buf, 0);
    int saved = errno;
    if (fd >= 0)
        io->close(fd);
    if (n < 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(saved));
        return LKV_EIO;
    }
    int rc = meta_decode(buf, (size_t)n, m);
    if (rc == LKV_EFORMAT)
        snprintf(err, errlen, "%s: format version %u is not supported by this build", path,
                 m->version);
    else if (rc != 0)
        snprintf(err, errlen, "%s: offset 0: damaged metadata file", path);
    return rc == 0 ? 1 : rc;
}

int meta_store(const char *dir, const struct io_ops *io, const struct meta *m)
{
    io = io ? io : &io_libc;
    char tmp[4200], path[4200];
    snprintf(tmp, sizeof tmp, "%s/" META_FILE ".tmp", dir);
    snprintf(path, sizeof path, "%s/" META_FILE, dir);
    uint8_t buf[META_SIZE];
    meta_encode(buf, m);
    int fd = io->open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return lkv_from_errno(errno);
    int rc = 0;
    if (io->pwrite(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf || io->fsync(fd) != 0)
        rc = lkv_from_errno(errno ? errno : EIO);
    io->close(fd);
    if (rc == 0 && (io->rename(tmp, path) != 0 || io_fsync_dir(io, dir) != 0))
        rc = lkv_from_errno(errno);
    if (rc != 0)
        io->unlink(tmp);
    return rc;
}
