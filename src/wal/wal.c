#include "wal/wal.h"

#include "util/crc32c.h"
#include "util/err.h"
#include "util/log.h"
#include "util/reclaim.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEG_PREFIX "log-"
#define SEG_SUFFIX ".seg"

struct segment {
    uint64_t first_index; /* index its first record has or will have */
    uint64_t last_index;  /* 0 while it holds no record */
    uint64_t size;        /* header plus records, in bytes */
};

struct wal {
    char dir[4096];
    const struct io_ops *io;
    uint64_t segment_bytes;
    bool preallocate;

    struct segment *segs; /* ascending by first_index; the last one is appended to */
    size_t nsegs, segs_cap;
    int fd;               /* the last segment, -1 if there is none open */
    uint64_t alloc_end;   /* bytes of the last segment known to be allocated */
    bool rotate_next;     /* the next append starts a new segment */
    uint64_t last_index;
    uint64_t bytes;       /* sum of segs[].size */
    bool broken;          /* a write or sync failed: refuse everything */
    uint64_t last_sync_ns;

    uint8_t *hdrs;        /* record headers of the batch being written */
    size_t hdrs_cap;
    struct iovec *iov;
    size_t iov_cap;
};

static void seg_path(const struct wal *w, uint64_t first_index, char *out, size_t len)
{
    snprintf(out, len, "%s/" SEG_PREFIX "%020" PRIu64 SEG_SUFFIX, w->dir, first_index);
}

static int push_segment(struct wal *w, uint64_t first_index)
{
    if (w->nsegs == w->segs_cap) {
        size_t cap = w->segs_cap ? w->segs_cap * 2 : 16;
        struct segment *p = realloc(w->segs, cap * sizeof *p);
        if (!p)
            return LKV_ENOMEM;
        w->segs = p;
        w->segs_cap = cap;
    }
    w->segs[w->nsegs++] = (struct segment){.first_index = first_index, .size = WAL_SEG_HDR_SIZE};
    return 0;
}

static void remove_segment_at(struct wal *w, size_t i)
{
    w->bytes -= w->segs[i].size;
    memmove(&w->segs[i], &w->segs[i + 1], (w->nsegs - i - 1) * sizeof *w->segs);
    w->nsegs--;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lists the segment files of the directory, sorted by first index. */
static int list_segments(const char *dir, uint64_t **out, size_t *n, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot read directory %s: %s", dir, strerror(errno));
        return LKV_EIO;
    }
    uint64_t *v = NULL;
    size_t len = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        size_t nl = strlen(name);
        if (nl != strlen(SEG_PREFIX) + 20 + strlen(SEG_SUFFIX) ||
            strncmp(name, SEG_PREFIX, strlen(SEG_PREFIX)) != 0 ||
            strcmp(name + nl - strlen(SEG_SUFFIX), SEG_SUFFIX) != 0)
            continue;
        char *end;
        uint64_t idx = strtoull(name + strlen(SEG_PREFIX), &end, 10);
        if (end != name + strlen(SEG_PREFIX) + 20 || idx == 0)
            continue;
        if (len == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *p = realloc(v, cap * sizeof *v);
            if (!p) {
                free(v);
                closedir(d);
                return LKV_ENOMEM;
            }
            v = p;
        }
        v[len++] = idx;
    }
    closedir(d);
    if (len > 1)
        qsort(v, len, sizeof *v, cmp_u64);
    *out = v;
    *n = len;
    return 0;
}

/* End of the last stretch of the file that was ever written. Preallocated
 * space that was never written reads as a hole (unwritten extents), so a
 * fresh 64 MiB segment costs only what it holds. Falls back to the size when
 * the file system cannot tell. */
static size_t data_end(int fd, uint64_t size)
{
    uint64_t end = 0;
    off_t pos = 0;
    for (;;) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO ? (size_t)end : (size_t)size;
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0)
            return (size_t)size;
        end = (uint64_t)hole;
        pos = hole;
        if (end >= size)
            return (size_t)size;
    }
}

/* Reads the written part of a file through io (the rest reads as zeros). *buf is malloc'ed (caller frees). */
static int read_file(const struct io_ops *io, const char *path, uint8_t **buf, size_t *len,
                     char *err, size_t errlen)
{
    int fd = io->open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        goto err_open;
    struct stat st;
    if (fstat(fd, &st) != 0)
        goto err_after_open;
    size_t n = data_end(fd, (uint64_t)st.st_size);
    uint8_t *p = malloc(n ? n : 1);
    if (!p) {
        io->close(fd);
        snprintf(err, errlen, "cannot read %s: %s", path, lkv_strerror(LKV_ENOMEM));
        return LKV_ENOMEM;
    }
    if (io_pread_all(io, fd, p, n, 0) != 0) {
        free(p);
        goto err_after_open;
    }
    io->close(fd);
    *buf = p;
    *len = n;
    return 0;

err_after_open:;
    int saved = errno;
    io->close(fd);
    errno = saved;
err_open:
    snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
    return LKV_EIO;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    static const uint8_t zeros[4096];
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        if (memcmp(p, zeros, k) != 0)
            return false;
        p += k;
        n -= k;
    }
    return true;
}

/* Looks past damage at `from` for a record that a later write batch wrote:
 * its batch began after index `expected`, the index the damaged record would
 * have had. Such a batch was only written once the damaged one was durable,
 * so finding it means the damage is not a torn tail. Returns its offset, or
 * SIZE_MAX. */
static size_t find_later_batch(const uint8_t *buf, size_t len, size_t from, uint64_t expected)
{
    for (size_t off = from; off + WAL_REC_HDR_SIZE <= len; off++) {
        /* cheap filters before the CRC: type, flags and reserved bytes */
        if (buf[off + 8] < 1 || buf[off + 8] > 3 || buf[off + 9] || buf[off + 10] ||
            buf[off + 11])
            continue;
        struct wal_rec_hdr h;
        const uint8_t *payload;
        if (wal_rec_decode(buf + off, len - off, &h, &payload) != WAL_REC_OK)
            continue;
        if (h.index >= expected && h.index - h.batch_pos > expected)
            return off;
    }
    return SIZE_MAX;
}

/* Cuts the last segment at `off`, durably. */
static int cut_tail(struct wal *w, const char *path, uint64_t off)
{
    int fd = w->io->open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return LKV_EIO;
    int rc = (w->io->ftruncate(fd, (off_t)off) == 0 && w->io->fsync(fd) == 0) ? 0 : LKV_EIO;
    w->io->close(fd);
    return rc;
}

struct scan {
    uint64_t after_index;
    uint64_t expected;  /* next index the log must hold */
    bool seen_any;      /* some record was read */
    wal_replay_cb cb;
    void *arg;
    struct wal_recovery *info;
};

/* Walks the records of one segment held in buf. Returns 0 with the segment's
 * extent filled in, or an error with err set. */
static int scan_records(struct wal *w, struct scan *sc, struct segment *seg, const uint8_t *buf,
                        size_t len, bool last_seg, const char *path, char *err, size_t errlen)
{
    size_t off = WAL_SEG_HDR_SIZE;
    enum wal_rec_status st = WAL_REC_OK;
    while (off < len) {
        struct wal_rec_hdr h;
        const uint8_t *payload;
        st = wal_rec_decode(buf + off, len - off, &h, &payload);
        if (st != WAL_REC_OK)
            break;
        if (h.index != sc->expected) {
            snprintf(err, errlen, "%s: offset %zu: record index %" PRIu64 " where %" PRIu64
                     " was expected", path, off, h.index, sc->expected);
            return LKV_ECORRUPT;
        }
        if (h.index > sc->after_index) {
            int rc = sc->cb(&h, payload, sc->arg);
            if (rc != 0) {
                snprintf(err, errlen, "%s: offset %zu: record %" PRIu64 " cannot be applied",
                         path, off, h.index);
                return rc;
            }
            sc->info->replayed++;
        }
        seg->last_index = h.index;
        sc->expected = h.index + 1;
        sc->seen_any = true;
        off += WAL_REC_HDR_SIZE + h.len;
    }
    seg->size = off < len ? off : len;
    if (off >= len || all_zero(buf + off, len - off))
        return 0; /* clean end, possibly followed by preallocated zeros */

    size_t later = find_later_batch(buf, len, off + 1, sc->expected);
    if (!last_seg || later != SIZE_MAX) {
        snprintf(err, errlen, "%s: offset %zu: damaged record (%s) followed by valid records%s",
                 path, off, wal_rec_status_str(st), last_seg ? "" : " in later segments");
        return LKV_ECORRUPT;
    }
    LOG_WARN("event=torn_tail file=%s offset=%zu bytes_cut=%zu status=%s", path, off, len - off,
             wal_rec_status_str(st));
    sc->info->torn_bytes += len - off;
    if (cut_tail(w, path, off) != 0) {
        snprintf(err, errlen, "%s: cannot cut the torn tail at offset %zu: %s", path, off,
                 strerror(errno));
        return LKV_EIO;
    }
    return 0;
}

/* Validates one segment file and replays its records. *drop is set when the
 * file should be deleted (a last segment whose creation was cut short). */
static int scan_segment(struct wal *w, struct scan *sc, struct segment *seg, bool last_seg,
                        bool *drop, char *err, size_t errlen)
{
    char path[4200];
    seg_path(w, seg->first_index, path, sizeof path);
    uint8_t *buf;
    size_t len;
    int rc = read_file(w->io, path, &buf, &len, err, errlen);
    if (rc != 0)
        return rc;
    uint64_t hdr_index = 0;
    enum wal_seg_status ss = wal_seg_hdr_decode(buf, len, &hdr_index);
    if (ss == WAL_SEG_BAD_VERSION) {
        snprintf(err, errlen, "%s: %s", path, lkv_strerror(LKV_EFORMAT));
        rc = LKV_EFORMAT;
    } else if (ss != WAL_SEG_OK) {
        if (last_seg && find_later_batch(buf, len, WAL_SEG_HDR_SIZE, 0) == SIZE_MAX) {
            LOG_WARN("event=torn_segment file=%s status=%s action=removed", path,
                     wal_seg_status_str(ss));
            *drop = true;
        } else {
            snprintf(err, errlen, "%s: offset 0: damaged segment header (%s)", path,
                     wal_seg_status_str(ss));
            rc = LKV_ECORRUPT;
        }
    } else if (hdr_index != seg->first_index) {
        snprintf(err, errlen, "%s: offset 16: header says first index %" PRIu64, path,
                 hdr_index);
        rc = LKV_ECORRUPT;
    } else if (sc->seen_any && seg->first_index != sc->expected &&
               !(seg->first_index > sc->expected && sc->expected <= sc->after_index + 1 &&
                 seg->first_index <= sc->after_index + 1)) {
        snprintf(err, errlen, "%s: starts at index %" PRIu64 " but %" PRIu64 " was expected",
                 path, seg->first_index, sc->expected);
        rc = LKV_ECORRUPT;
    } else if (!sc->seen_any && seg->first_index > sc->after_index + 1) {
        snprintf(err, errlen, "%s: starts at index %" PRIu64 " but the snapshot only covers up "
                 "to %" PRIu64 ": records are missing", path, seg->first_index, sc->after_index);
        rc = LKV_ECORRUPT;
    } else {
        sc->expected = seg->first_index;
        rc = scan_records(w, sc, seg, buf, len, last_seg, path, err, errlen);
    }
    free(buf);
    return rc;
}

static int open_active(struct wal *w)
{
    struct segment *seg = &w->segs[w->nsegs - 1];
    char path[4200];
    seg_path(w, seg->first_index, path, sizeof path);
    w->fd = w->io->open(path, O_RDWR | O_CLOEXEC, 0);
    if (w->fd < 0)
        return LKV_EIO;
    struct stat st;
    w->alloc_end = fstat(w->fd, &st) == 0 ? (uint64_t)st.st_size : seg->size;
    return 0;
}

static int unlink_segment(struct wal *w, uint64_t first_index)
{
    char path[4200];
    seg_path(w, first_index, path, sizeof path);
    if (reclaim_unlink(w->io, path) != 0 && errno != ENOENT)
        return LKV_EIO;
    return 0;
}

int wal_open(const struct wal_options *opt, uint64_t after_index, wal_replay_cb cb, void *arg,
             struct wal **out, struct wal_recovery *info, char *err, size_t errlen)
{
    struct wal *w = calloc(1, sizeof *w);
    if (!w)
        return LKV_ENOMEM;
    snprintf(w->dir, sizeof w->dir, "%s", opt->dir);
    w->io = opt->io ? opt->io : &io_libc;
    w->segment_bytes = opt->segment_bytes;
    w->preallocate = opt->preallocate;
    w->fd = -1;
    memset(info, 0, sizeof *info);

    uint64_t *names = NULL;
    size_t nnames = 0;
    int rc = list_segments(w->dir, &names, &nnames, err, errlen);
    if (rc != 0)
        goto err_after_alloc;

    struct scan sc = {.after_index = after_index, .expected = after_index + 1, .cb = cb,
                      .arg = arg, .info = info};
    bool dropped_any = false;
    size_t covered = 0; /* names[0..covered) are wholly covered by the snapshot */
    for (size_t i = 0; i < nnames; i++) {
        bool last = i + 1 == nnames;
        if (!last && names[i + 1] <= after_index + 1) {
            covered = i + 1;
            continue;
        }
        if ((rc = push_segment(w, names[i])) != 0)
            goto err_after_list;
        bool drop = false;
        rc = scan_segment(w, &sc, &w->segs[w->nsegs - 1], last, &drop, err, errlen);
        if (rc != 0)
            goto err_after_list;
        if (drop) {
            w->nsegs--;
            if ((rc = unlink_segment(w, names[i])) != 0)
                goto err_after_list;
            dropped_any = true;
            continue;
        }
        w->bytes += w->segs[w->nsegs - 1].size;
    }
    /* A crash came between writing the snapshot and deleting these. They
     * go only now that the rest of the log has proved readable, so a
     * refused start leaves the directory as it found it. */
    for (size_t i = 0; i < covered; i++) {
        if ((rc = unlink_segment(w, names[i])) != 0)
            goto err_after_list;
        dropped_any = true;
    }
    if (dropped_any && io_fsync_dir(w->io, w->dir) != 0) {
        rc = LKV_EIO;
        snprintf(err, errlen, "cannot fsync %s: %s", w->dir, strerror(errno));
        goto err_after_list;
    }
    free(names);

    w->last_index = sc.expected - 1 > after_index ? sc.expected - 1 : after_index;
    if (w->nsegs > 0) {
        struct segment *tail = &w->segs[w->nsegs - 1];
        /* A tail segment that ends before the snapshot cannot take the next
         * index: start a fresh one. */
        if (tail->last_index != 0 && tail->last_index < w->last_index)
            w->rotate_next = true;
        else if (tail->last_index == 0 && tail->first_index != w->last_index + 1)
            w->rotate_next = true;
        if (!w->rotate_next && open_active(w) != 0) {
            snprintf(err, errlen, "cannot open the last log segment: %s", strerror(errno));
            rc = LKV_EIO;
            goto err_after_alloc;
        }
    }
    info->last_index = w->last_index;
    info->segments = w->nsegs;
    *out = w;
    return 0;

err_after_list:
    free(names);
err_after_alloc:
    if (w->fd >= 0)
        w->io->close(w->fd);
    free(w->segs);
    free(w);
    return rc;
}

/* Creates the segment for index `first`, durably, and makes it the one
 * appended to. */
static int start_segment(struct wal *w, uint64_t first)
{
    char path[4200];
    seg_path(w, first, path, sizeof path);
    int fd = w->io->open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST) {
        /* left by an earlier attempt that failed before holding records */
        if (w->io->unlink(path) != 0)
            return LKV_EFATAL;
        fd = w->io->open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }
    if (fd < 0)
        return errno == ENOSPC || errno == EDQUOT ? LKV_ENOSPC : LKV_EFATAL;
    uint64_t alloc = 0;
    uint8_t hdr[WAL_SEG_HDR_SIZE];
    wal_seg_hdr_encode(hdr, first);
    int err_code = 0;
    if (w->preallocate) {
        if (w->io->fallocate(fd, 0, 0, (off_t)w->segment_bytes) == 0)
            alloc = w->segment_bytes;
        else if (errno == ENOSPC || errno == EDQUOT)
            err_code = LKV_ENOSPC;
        else if (errno != EOPNOTSUPP)
            err_code = LKV_EFATAL;
    }
    if (!err_code && w->io->pwrite(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr)
        err_code = (errno == ENOSPC || errno == EDQUOT) ? LKV_ENOSPC : LKV_EFATAL;
    if (!err_code && (w->io->fdatasync(fd) != 0 || io_fsync_dir(w->io, w->dir) != 0))
        err_code = LKV_EFATAL;
    if (err_code) {
        w->io->close(fd);
        if (err_code == LKV_ENOSPC && w->io->unlink(path) != 0)
            err_code = LKV_EFATAL;
        return err_code;
    }
    if (push_segment(w, first) != 0) {
        w->io->close(fd);
        return LKV_EFATAL;
    }
    if (w->fd >= 0)
        w->io->close(w->fd);
    w->fd = fd;
    w->alloc_end = alloc > WAL_SEG_HDR_SIZE ? alloc : WAL_SEG_HDR_SIZE;
    w->bytes += WAL_SEG_HDR_SIZE;
    w->rotate_next = false;
    return 0;
}

static int grow_scratch(struct wal *w, size_t n, size_t iovs)
{
    if (n * WAL_REC_HDR_SIZE > w->hdrs_cap) {
        uint8_t *p = realloc(w->hdrs, n * WAL_REC_HDR_SIZE);
        if (!p)
            return LKV_ENOMEM;
        w->hdrs = p;
        w->hdrs_cap = n * WAL_REC_HDR_SIZE;
    }
    if (iovs > w->iov_cap) {
        struct iovec *p = realloc(w->iov, iovs * sizeof *p);
        if (!p)
            return LKV_ENOMEM;
        w->iov = p;
        w->iov_cap = iovs;
    }
    return 0;
}

/* Frames the batch into w->iov: each record's sealed header, then its
 * payload pieces. Returns the number of iovecs. */
static int frame_batch(struct wal *w, const struct wal_entry *e, size_t n, uint64_t first)
{
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0;
        for (int j = 0; j < e[i].iovcnt; j++)
            len += e[i].iov[j].iov_len;
        struct wal_rec_hdr h = {.len = (uint32_t)len, .type = e[i].type,
                                .batch_pos = (uint32_t)i, .index = first + i,
                                .term = e[i].term};
        uint8_t *hdr = w->hdrs + i * WAL_REC_HDR_SIZE;
        wal_rec_hdr_pack(hdr, &h);
        uint32_t crc = wal_rec_crc_begin(hdr);
        for (int j = 0; j < e[i].iovcnt; j++)
            crc = crc32c_extend(crc, e[i].iov[j].iov_base, e[i].iov[j].iov_len);
        wal_rec_hdr_seal(hdr, crc);
        w->iov[k++] = (struct iovec){hdr, WAL_REC_HDR_SIZE};
        for (int j = 0; j < e[i].iovcnt; j++) {
            if (e[i].iov[j].iov_len)
                w->iov[k++] = e[i].iov[j];
        }
    }
    return k;
}

/* Undoes a write that failed for lack of space: the bytes past the old end
 * must not survive a crash, or recovery would replay records that were
 * answered 507. */
static int roll_back(struct wal *w, uint64_t end)
{
    if (w->io->ftruncate(w->fd, (off_t)end) != 0 || w->io->fsync(w->fd) != 0)
        return LKV_EFATAL;
    w->alloc_end = end;
    return LKV_ENOSPC;
}

/* Makes sure [size, size+need) is allocated when preallocating. */
static int reserve(struct wal *w, uint64_t size, uint64_t need)
{
    if (!w->preallocate || size + need <= w->alloc_end)
        return 0;
    uint64_t target = size + need > w->segment_bytes ? size + need : w->segment_bytes;
    if (w->io->fallocate(w->fd, 0, (off_t)w->alloc_end, (off_t)(target - w->alloc_end)) == 0) {
        w->alloc_end = target;
        return 0;
    }
    if (errno == EOPNOTSUPP)
        return 0;
    return errno == ENOSPC || errno == EDQUOT ? LKV_ENOSPC : LKV_EFATAL;
}

int wal_append(struct wal *w, const struct wal_entry *e, size_t n, uint64_t *first_index)
{
    if (w->broken)
        return LKV_EFATAL;
    if (n == 0)
        return LKV_EINVAL;
    uint64_t total = 0;
    size_t iovs = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t len = 0;
        for (int j = 0; j < e[i].iovcnt; j++)
            len += e[i].iov[j].iov_len;
        if (len > WAL_REC_MAX_PAYLOAD)
            return LKV_EINVAL;
        total += WAL_REC_HDR_SIZE + len;
        iovs += 1 + (size_t)e[i].iovcnt;
    }
    if (grow_scratch(w, n, iovs) != 0)
        return LKV_ENOMEM;

    uint64_t first = w->last_index + 1;
    struct segment *seg = w->nsegs ? &w->segs[w->nsegs - 1] : NULL;
    if (!seg || w->fd < 0 || w->rotate_next ||
        (seg->size > WAL_SEG_HDR_SIZE && seg->size + total > w->segment_bytes)) {
        int rc = start_segment(w, first);
        if (rc != 0) {
            w->broken = rc == LKV_EFATAL;
            return rc;
        }
        seg = &w->segs[w->nsegs - 1];
    }
    int rc = reserve(w, seg->size, total);
    if (rc != 0) {
        w->broken = rc == LKV_EFATAL;
        return rc;
    }

    int k = frame_batch(w, e, n, first);
    if (io_pwritev_all(w->io, w->fd, w->iov, k, (off_t)seg->size) != 0) {
        rc = (errno == ENOSPC || errno == EDQUOT) ? roll_back(w, seg->size) : LKV_EFATAL;
        w->broken = rc == LKV_EFATAL;
        return rc;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int synced = w->io->fdatasync(w->fd);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (synced != 0) {
        /* The kernel may have dropped the dirty pages: what is on disk is
         * unknown, and retrying could report success for lost data. */
        LOG_ERROR("event=fdatasync_failed errno=%d error=\"%s\"", errno, strerror(errno));
        w->broken = true;
        return LKV_EFATAL;
    }
    w->last_sync_ns = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec));
    seg->size += total;
    if (seg->size > w->alloc_end)
        w->alloc_end = seg->size;
    seg->last_index = first + n - 1;
    w->bytes += total;
    w->last_index = first + n - 1;
    *first_index = first;
    return 0;
}

int wal_rotate(struct wal *w)
{
    if (w->broken)
        return LKV_EFATAL;
    if (w->nsegs && w->segs[w->nsegs - 1].last_index != 0)
        w->rotate_next = true;
    return 0;
}

int wal_drop_prefix(struct wal *w, uint64_t upto)
{
    int rc = 0;
    bool removed = false;
    while (w->nsegs > 0) {
        struct segment *s = &w->segs[0];
        bool active = w->nsegs == 1;
        if (s->last_index == 0 ? active : s->last_index > upto)
            break;
        if (active && !w->rotate_next)
            break;
        if (active && w->fd >= 0) {
            w->io->close(w->fd);
            w->fd = -1;
        }
        if (unlink_segment(w, s->first_index) != 0) {
            LOG_WARN("event=segment_delete_failed first_index=%" PRIu64 " error=\"%s\"",
                     s->first_index, strerror(errno));
            rc = LKV_EIO;
            break;
        }
        remove_segment_at(w, 0);
        removed = true;
    }
    if (removed && io_fsync_dir(w->io, w->dir) != 0)
        rc = LKV_EIO;
    return rc;
}

/* Offset of record `index` within the segment file at `path`. */
static int find_record(struct wal *w, const char *path, uint64_t index, uint64_t *off)
{
    uint8_t *buf;
    size_t len;
    char err[256];
    if (read_file(w->io, path, &buf, &len, err, sizeof err) != 0)
        return LKV_EIO;
    size_t pos = WAL_SEG_HDR_SIZE;
    int rc = LKV_ECORRUPT;
    while (pos < len) {
        struct wal_rec_hdr h;
        const uint8_t *payload;
        if (wal_rec_decode(buf + pos, len - pos, &h, &payload) != WAL_REC_OK)
            break;
        if (h.index == index) {
            *off = pos;
            rc = 0;
            break;
        }
        pos += WAL_REC_HDR_SIZE + h.len;
    }
    free(buf);
    return rc;
}

int wal_truncate_suffix(struct wal *w, uint64_t from)
{
    if (w->broken)
        return LKV_EFATAL;
    if (from > w->last_index)
        return 0;
    /* Later segments go first, newest first, so a crash midway leaves a
     * log that is a prefix of the old one. */
    while (w->nsegs > 1 && w->segs[w->nsegs - 1].first_index >= from) {
        if (w->fd >= 0) {
            w->io->close(w->fd);
            w->fd = -1;
        }
        if (unlink_segment(w, w->segs[w->nsegs - 1].first_index) != 0)
            goto err_fatal;
        remove_segment_at(w, w->nsegs - 1);
    }
    if (io_fsync_dir(w->io, w->dir) != 0)
        goto err_fatal;
    struct segment *seg = &w->segs[w->nsegs - 1];
    char path[4200];
    seg_path(w, seg->first_index, path, sizeof path);
    uint64_t off = WAL_SEG_HDR_SIZE;
    if (from > seg->last_index)
        off = seg->size;
    else if (from > seg->first_index && find_record(w, path, from, &off) != 0)
        goto err_fatal;
    if (w->fd < 0 && open_active(w) != 0)
        goto err_fatal;
    if (w->io->ftruncate(w->fd, (off_t)off) != 0 || w->io->fsync(w->fd) != 0)
        goto err_fatal;
    w->bytes -= seg->size - off;
    seg->size = off;
    seg->last_index = from > seg->first_index ? from - 1 : 0;
    w->alloc_end = off;
    w->last_index = from - 1;
    w->rotate_next = false;
    return 0;

err_fatal:
    w->broken = true;
    return LKV_EFATAL;
}

uint64_t wal_last_index(const struct wal *w)
{
    return w->last_index;
}

uint64_t wal_last_sync_ns(const struct wal *w)
{
    return w->last_sync_ns;
}

uint64_t wal_size_bytes(const struct wal *w)
{
    return w->bytes;
}

void wal_close(struct wal *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        w->io->close(w->fd);
    free(w->segs);
    free(w->hdrs);
    free(w->iov);
    free(w);
}
