#include "snap/snap.h"

#include "util/buf.h"
#include "util/clock.h"
#include "util/crc32c.h"
#include "util/endian.h"
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
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const uint8_t snap_magic[8] = {'L', 'K', 'V', 'S', 'N', 'A', 'P', 0};

#define SNAP_PREFIX "snap-"
#define SNAP_SUFFIX ".snap"
#define TMP_SUFFIX ".tmp"
#define WRITE_CHUNK (1u << 20)

/* Streams the body through a buffer into the temp file. */
struct writer {
    const struct io_ops *io;
    int fd;
    uint8_t *buf;
    size_t used;
    uint64_t off;   /* file offset of buf[0] */
    uint32_t crc;   /* over the body written so far */
    uint64_t records;
    int failed_errno;
    bool pace; /* bound dirty data with sync_file_range (background writer) */
    uint64_t prev_off, prev_len; /* the block written before the last one */
};

/* Keeps the snapshot's dirty page cache to about two blocks: start
 * writeback of the block just written and wait for the one before it. A
 * journal commit forced by the log's fdatasync then never has to wait for
 * a hundred megabytes of snapshot data, and the write goes at the disk's
 * pace instead of in one burst at the final fsync. Advisory only: errors
 * are ignored here and reported by that fsync. */
static void pace_writeback(struct writer *wr, size_t just_written)
{
    uint64_t start = wr->off - just_written; /* wr->off is past the new bytes */
    if (wr->prev_len > 0)
        (void)sync_file_range(wr->fd, (off_t)wr->prev_off, (off_t)wr->prev_len,
                              SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WAIT_AFTER);
    (void)sync_file_range(wr->fd, (off_t)start, (off_t)just_written, SYNC_FILE_RANGE_WRITE);
    wr->prev_off = start;
    wr->prev_len = just_written;
}

/* Appends n bytes at the writer's offset and folds them into the CRC. */
static int write_block(struct writer *wr, const uint8_t *p, size_t n)
{
    struct iovec iov = {(void *)p, n};
    if (io_pwritev_all(wr->io, wr->fd, &iov, 1, (off_t)wr->off) != 0) {
        wr->failed_errno = errno;
        return -1;
    }
    wr->crc = crc32c_extend(wr->crc, p, n);
    wr->off += n;
    if (wr->pace)
        pace_writeback(wr, n);
    return 0;
}

static int flush(struct writer *wr)
{
    if (wr->used == 0)
        return 0;
    if (write_block(wr, wr->buf, wr->used) != 0)
        return -1;
    wr->used = 0;
    return 0;
}

static int put_bytes(struct writer *wr, const void *p, size_t n)
{
    const uint8_t *src = p;
    while (n > 0) {
        if (wr->used == WRITE_CHUNK && flush(wr) != 0)
            return -1;
        size_t take = WRITE_CHUNK - wr->used < n ? WRITE_CHUNK - wr->used : n;
        memcpy(wr->buf + wr->used, src, take);
        wr->used += take;
        src += take;
        n -= take;
    }
    return 0;
}

/* A body record is these 8 bytes (u32 key length, u32 value length)
 * followed by the key and the value. */
static void record_lens(uint8_t lens[8], const struct kv_entry *e)
{
    le_put32(lens, (uint32_t)kv_entry_klen(e));
    le_put32(lens + 4, (uint32_t)kv_entry_vlen(e));
}

static int write_entry_cb(const struct kv_entry *e, void *arg)
{
    struct writer *wr = arg;
    uint8_t lens[8];
    record_lens(lens, e);
    if (put_bytes(wr, lens, sizeof lens) != 0 ||
        put_bytes(wr, kv_entry_key(e), kv_entry_klen(e)) != 0 ||
        put_bytes(wr, kv_entry_value(e), kv_entry_vlen(e)) != 0)
        return -1;
    wr->records++;
    return 0;
}

static void encode_header(uint8_t *h, const struct snap_info *info, uint64_t body_bytes,
                          uint32_t body_crc)
{
    memset(h, 0, SNAP_HDR_SIZE);
    memcpy(h, snap_magic, sizeof snap_magic);
    le_put32(h + 8, SNAP_FORMAT_VERSION);
    le_put64(h + 16, info->index);
    le_put64(h + 24, info->term);
    le_put64(h + 32, info->records);
    le_put64(h + 40, body_bytes);
    le_put32(h + 48, body_crc);
    le_put32(h + 60, crc32c(h, 60));
}

static void snap_name(char *out, size_t len, const char *dir, uint64_t index, const char *suffix)
{
    snprintf(out, len, "%s/" SNAP_PREFIX "%020" PRIu64 "%s", dir, index, suffix);
}

static int errno_code(int e)
{
    return e == ENOSPC || e == EDQUOT ? LKV_ENOSPC : LKV_EIO;
}

/* The body is written: header, fsync, close, then the .snap name. Only a
 * complete, synced file ever carries that name. Returns 0, or -1 with
 * wr->failed_errno set (the caller then abandons the file). */
static int finish_file(struct writer *wr, const char *dir, const char *tmp, const char *final,
                       uint64_t index, uint64_t term, struct snap_info *info)
{
    *info = (struct snap_info){.index = index, .term = term, .records = wr->records,
                               .bytes = wr->off};
    uint8_t hdr[SNAP_HDR_SIZE];
    encode_header(hdr, info, wr->off - SNAP_HDR_SIZE, wr->crc);
    errno = 0;
    if (wr->io->pwrite(wr->fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr ||
        wr->io->fsync(wr->fd) != 0) {
        wr->failed_errno = errno ? errno : EIO;
        return -1;
    }
    int fd = wr->fd;
    wr->fd = -1;
    if (wr->io->close(fd) != 0 || wr->io->rename(tmp, final) != 0 ||
        io_fsync_dir(wr->io, dir) != 0) {
        wr->failed_errno = errno;
        return -1;
    }
    return 0;
}

/* Removes what a failed write left behind. */
static void abandon_file(struct writer *wr, const char *tmp)
{
    if (wr->fd >= 0)
        wr->io->close(wr->fd);
    wr->fd = -1;
    wr->io->unlink(tmp);
}

int snap_write(const char *dir, const struct io_ops *io, const struct kv_map *map,
               uint64_t index, uint64_t term, struct snap_info *info, char *err, size_t errlen)
{
    io = io ? io : &io_libc;
    char tmp[4200], final[4200];
    snap_name(tmp, sizeof tmp, dir, index, TMP_SUFFIX);
    snap_name(final, sizeof final, dir, index, SNAP_SUFFIX);
    struct writer wr = {.io = io, .off = SNAP_HDR_SIZE, .crc = 0};
    wr.buf = malloc(WRITE_CHUNK);
    if (!wr.buf) {
        snprintf(err, errlen, "%s: %s", tmp, lkv_strerror(LKV_ENOMEM));
        return LKV_ENOMEM;
    }
    wr.fd = io->open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (wr.fd < 0) {
        wr.failed_errno = errno;
        goto err_before_open;
    }
    if (kv_map_foreach(map, write_entry_cb, &wr) != 0 || flush(&wr) != 0 ||
        finish_file(&wr, dir, tmp, final, index, term, info) != 0)
        goto err_after_open;
    free(wr.buf);
    return 0;

err_after_open:
    abandon_file(&wr, tmp);
err_before_open:
    free(wr.buf);
    snprintf(err, errlen, "cannot write snapshot %s: %s", tmp, strerror(wr.failed_errno));
    return errno_code(wr.failed_errno);
}

/* ---- checkpoints alongside writes ----
 *
 * The writer thread walks the map a step at a time between batches
 * (kv_map_walk_step) and serialises what it visits into one of FEED_BUFS
 * buffers; a background thread writes full buffers to the temp file. The
 * two share no lock: the writer hands a buffer over with sem_post and sees
 * it come back through `written`. So the background thread, which runs at
 * idle priority and may be preempted for long, can never hold up a write.
 * The result is a fuzzy snapshot (see kv_map_walk_step): replaying the log
 * after its index over it gives the exact state, because every logged
 * command sets a key's whole state (set, delete, clear). */

/* The snapshot thread is background work: it gets the CPU only when
 * nothing else wants it, and the lowest I/O priority the block layer
 * honours. Failures are harmless (it then runs at normal priority). */
static void become_background(void)
{
    struct sched_param sp = {.sched_priority = 0};
    (void)sched_setscheduler(0, SCHED_IDLE, &sp); /* 0: this thread */
    /* ioprio_set(IOPRIO_WHO_PROCESS, this thread, IOPRIO_CLASS_IDLE):
     * glibc has no wrapper; class 3 in the top bits, level 0. */
    (void)syscall(SYS_ioprio_set, 1, 0, 3 << 13);
}

#define FEED_BUFS 4
#define FEED_BYTES (256u << 10) /* serialised per step; bounds one step's time */

struct snap_job {
    /* fixed at start */
    const char *dir;
    const struct io_ops *io;
    struct kv_map *map;
    uint64_t index, term, started_ns;
    pthread_t thread;
    /* writer thread only */
    struct kv_walk walk;
    bool walk_open;
    bool fed_all;   /* the last buffer has been handed over */
    bool joined;
    uint64_t filled; /* buffers handed over */
    uint64_t records; /* complete, and read by the thread, once the last buffer is handed over */
    /* handed over through the semaphore and `written` */
    struct buf bufs[FEED_BUFS];
    bool last[FEED_BUFS];
    sem_t full;
    _Atomic uint64_t written; /* buffers the background thread is done with */
    _Atomic bool abort;       /* writer: stop and remove the temp file */
    _Atomic bool done;        /* background thread: result and info are set */
    int result;
    struct snap_info info;    /* what was written, when result is 0 */
};

static void close_walk(struct snap_job *j)
{
    if (j->walk_open)
        kv_map_walk_end(j->map, &j->walk);
    j->walk_open = false;
}

static void *job_main(void *arg)
{
    struct snap_job *j = arg;
    become_background();
    char tmp[4200], final[4200];
    snap_name(tmp, sizeof tmp, j->dir, j->index, TMP_SUFFIX);
    snap_name(final, sizeof final, j->dir, j->index, SNAP_SUFFIX);
    struct writer wr = {.io = j->io, .off = SNAP_HDR_SIZE, .pace = true};
    wr.fd = j->io->open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = 0;
    if (wr.fd < 0) {
        wr.failed_errno = errno;
        rc = errno_code(errno);
    }
    for (uint64_t n = 0; rc == 0; n++) {
        while (sem_wait(&j->full) != 0 && errno == EINTR)
            ;
        if (atomic_load(&j->abort)) {
            rc = LKV_ERESTART;
            break;
        }
        struct buf *b = &j->bufs[n % FEED_BUFS];
        bool last = j->last[n % FEED_BUFS];
        /* The last piece may be empty (an empty map, or a walk that ended
         * exactly at a piece boundary): nothing to write then. */
        if (b->len > 0 && write_block(&wr, (const uint8_t *)b->data, b->len) != 0)
            rc = errno_code(wr.failed_errno);
        atomic_store_explicit(&j->written, n + 1, memory_order_release);
        if (rc == 0 && last) {
            wr.records = j->records;
            if (finish_file(&wr, j->dir, tmp, final, j->index, j->term, &j->info) != 0)
                rc = errno_code(wr.failed_errno);
            else
                break;
        }
    }
    if (rc != 0) {
        if (rc != LKV_ERESTART)
            LOG_ERROR("event=checkpoint_failed index=%" PRIu64 " error=\"cannot write snapshot "
                      "%s: %s\"", j->index, tmp, strerror(wr.failed_errno));
        abandon_file(&wr, tmp);
    }
    j->result = rc;
    atomic_store_explicit(&j->done, true, memory_order_release);
    return NULL;
}

int snap_start(const char *dir, const struct io_ops *io, struct kv_map *map, uint64_t index,
               uint64_t term, struct snap_job **out)
{
    struct snap_job *j = calloc(1, sizeof *j);
    if (!j)
        return LKV_ENOMEM;
    *j = (struct snap_job){.dir = dir, .io = io ? io : &io_libc, .map = map, .index = index,
                           .term = term, .started_ns = clock_now_ns()};
    if (sem_init(&j->full, 0, 0) != 0) {
        free(j);
        return LKV_ENOMEM;
    }
    kv_map_walk_begin(map, &j->walk);
    j->walk_open = true;
    if (pthread_create(&j->thread, NULL, job_main, j) != 0) {
        close_walk(j);
        sem_destroy(&j->full);
        free(j);
        return LKV_ENOMEM;
    }
    *out = j;
    return 0;
}

struct feed {
    struct buf *b;
    uint64_t records;
};

static int append_entry_cb(const struct kv_entry *e, void *arg)
{
    struct feed *f = arg;
    struct buf *b = f->b;
    f->records++;
    uint8_t lens[8];
    record_lens(lens, e);
    buf_append(b, lens, sizeof lens);
    buf_append(b, kv_entry_key(e), kv_entry_klen(e));
    buf_append(b, kv_entry_value(e), kv_entry_vlen(e));
    return b->failed ? LKV_ENOMEM : 0;
}

/* Asks the background thread to give up; it removes the temp file. */
static void abort_job(struct snap_job *j)
{
    close_walk(j);
    atomic_store(&j->abort, true);
    sem_post(&j->full);
}

int snap_feed(struct snap_job *j, int max_steps)
{
    int steps = 0;
    while (steps < max_steps && j->walk_open && !atomic_load(&j->done) &&
           j->filled - atomic_load_explicit(&j->written, memory_order_acquire) < FEED_BUFS) {
        size_t slot = j->filled % FEED_BUFS;
        struct buf *b = &j->bufs[slot];
        b->len = 0;
        b->failed = 0;
        struct feed f = {.b = b};
        int rc = kv_map_walk_step(j->map, &j->walk, FEED_BYTES, append_entry_cb, &f);
        if (rc < 0) {
            abort_job(j);
            return rc;
        }
        j->records += f.records;
        j->last[slot] = rc == 0;
        if (rc == 0) {
            j->fed_all = true;
            close_walk(j);
        }
        j->filled++;
        sem_post(&j->full);
        steps++;
    }
    return steps;
}

int snap_poll(struct snap_job *j, bool wait, int *result, struct snap_info *info)
{
    if (!atomic_load_explicit(&j->done, memory_order_acquire)) {
        if (!wait)
            return 0;
        if (!j->fed_all)
            abort_job(j); /* the map may be about to go away: do not walk on */
    }
    if (!j->joined) {
        pthread_join(j->thread, NULL);
        j->joined = true;
    }
    close_walk(j);
    *result = j->result;
    if (info && j->result == 0)
        *info = j->info;
    return 1;
}

uint64_t snap_job_index(const struct snap_job *j)
{
    return j->index;
}

uint64_t snap_job_started_ns(const struct snap_job *j)
{
    return j->started_ns;
}

void snap_job_free(struct snap_job *j)
{
    if (!j)
        return;
    if (!j->joined) {
        int ignored;
        snap_poll(j, true, &ignored, NULL);
    }
    for (int i = 0; i < FEED_BUFS; i++)
        buf_free(&j->bufs[i]);
    sem_destroy(&j->full);
    free(j);
}

/* Parses "snap-<20 digits><suffix>"; returns the index or 0. */
static uint64_t parse_name(const char *name, const char *suffix)
{
    size_t pl = strlen(SNAP_PREFIX), sl = strlen(suffix);
    if (strlen(name) != pl + 20 + sl || strncmp(name, SNAP_PREFIX, pl) != 0 ||
        strcmp(name + pl + 20, suffix) != 0)
        return 0;
    uint64_t v = 0;
    for (size_t i = pl; i < pl + 20; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    return v;
}

int snap_find_latest(const char *dir, char *path, size_t pathlen, uint64_t *index)
{
    DIR *d = opendir(dir);
    if (!d)
        return LKV_EIO;
    uint64_t best = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t idx = parse_name(de->d_name, SNAP_SUFFIX);
        if (idx > best)
            best = idx;
    }
    closedir(d);
    if (best == 0)
        return 0;
    snap_name(path, pathlen, dir, best, SNAP_SUFFIX);
    *index = best;
    return 1;
}

/* Checks the header against the file's size. */
static int check_header(const uint8_t *buf, uint64_t size, struct snap_info *info,
                        uint32_t *body_crc, const char *path, char *err, size_t errlen)
{
    if (size < SNAP_HDR_SIZE || memcmp(buf, snap_magic, sizeof snap_magic) != 0) {
        snprintf(err, errlen, "%s: offset 0: not a snapshot file (bad magic or too short)", path);
        return LKV_ECORRUPT;
    }
    if (le_get32(buf + 60) != crc32c(buf, 60)) {
        snprintf(err, errlen, "%s: offset 60: header checksum mismatch", path);
        return LKV_ECORRUPT;
    }
    if (le_get32(buf + 8) != SNAP_FORMAT_VERSION) {
        snprintf(err, errlen, "%s: format version %u is not supported", path, le_get32(buf + 8));
        return LKV_EFORMAT;
    }
    info->index = le_get64(buf + 16);
    info->term = le_get64(buf + 24);
    info->records = le_get64(buf + 32);
    info->bytes = size;
    *body_crc = le_get32(buf + 48);
    if (le_get64(buf + 40) != size - SNAP_HDR_SIZE) {
        snprintf(err, errlen, "%s: offset 40: body is %" PRIu64 " bytes, header says %" PRIu64,
                 path, size - SNAP_HDR_SIZE, le_get64(buf + 40));
        return LKV_ECORRUPT;
    }
    return 0;
}

/* Streams the body through a window of the file, so a snapshot of any size
 * costs one small buffer (a record larger than it grows it). */
struct reader {
    const struct io_ops *io;
    int fd;
    uint64_t size;     /* file size */
    uint64_t file_off; /* file offset of buf[0] */
    uint8_t *buf;
    size_t cap, len, pos;
};

/* Makes buf[pos, pos+need) hold file bytes. Returns 0, LKV_ECORRUPT (the
 * file ends first), LKV_EIO or LKV_ENOMEM. */
static int window(struct reader *rd, size_t need)
{
    if (rd->len - rd->pos >= need)
        return 0;
    if (rd->file_off + rd->pos + need > rd->size)
        return LKV_ECORRUPT;
    memmove(rd->buf, rd->buf + rd->pos, rd->len - rd->pos);
    rd->file_off += rd->pos;
    rd->len -= rd->pos;
    rd->pos = 0;
    if (need > rd->cap) {
        uint8_t *p = realloc(rd->buf, need);
        if (!p)
            return LKV_ENOMEM;
        rd->buf = p;
        rd->cap = need;
    }
    uint64_t left = rd->size - rd->file_off - rd->len;
    size_t want = rd->cap - rd->len < left ? rd->cap - rd->len : (size_t)left;
    if (io_pread_all(rd->io, rd->fd, rd->buf + rd->len, want,
                     (off_t)(rd->file_off + rd->len)) != 0)
        return LKV_EIO;
    rd->len += want;
    return 0;
}

static int load_body(struct reader *rd, const struct snap_info *info, uint32_t body_crc,
                     snap_load_cb cb, void *arg, const char *path, char *err, size_t errlen)
{
    uint32_t crc = 0;
    uint64_t n = 0;
    while (rd->file_off + rd->pos < rd->size) {
        uint64_t at = rd->file_off + rd->pos;
        int rc = window(rd, 8);
        uint64_t klen = rc == 0 ? le_get32(rd->buf + rd->pos) : 0;
        uint64_t vlen = rc == 0 ? le_get32(rd->buf + rd->pos + 4) : 0;
        if (rc == 0 && (klen == 0 || klen > KV_MAX_KEY_BYTES))
            rc = LKV_ECORRUPT;
        if (rc == 0)
            rc = window(rd, (size_t)(8 + klen + vlen));
        if (rc != 0) {
            if (rc == LKV_EIO)
                snprintf(err, errlen, "cannot read snapshot %s: %s", path, strerror(errno));
            else
                snprintf(err, errlen, "%s: offset %" PRIu64 ": malformed record %" PRIu64, path,
                         at, n);
            return rc;
        }
        const uint8_t *p = rd->buf + rd->pos;
        crc = crc32c_extend(crc, p, (size_t)(8 + klen + vlen));
        rc = cb((const char *)p + 8, (size_t)klen, (const char *)p + 8 + klen, (size_t)vlen, arg);
        if (rc != 0)
            return rc;
        rd->pos += (size_t)(8 + klen + vlen);
        n++;
    }
    if (crc != body_crc) {
        snprintf(err, errlen, "%s: offset %d: body checksum mismatch", path, SNAP_HDR_SIZE);
        return LKV_ECORRUPT;
    }
    if (n != info->records) {
        snprintf(err, errlen, "%s: offset 32: %" PRIu64 " records, header says %" PRIu64, path,
                 n, info->records);
        return LKV_ECORRUPT;
    }
    return 0;
}

int snap_peek(const char *path, const struct io_ops *io, struct snap_info *info)
{
    io = io ? io : &io_libc;
    uint8_t hdr[SNAP_HDR_SIZE];
    int fd = io->open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return LKV_EIO;
    int rc = io_pread_all(io, fd, hdr, sizeof hdr, 0) == 0 ? 0 : LKV_EIO;
    io->close(fd);
    if (rc != 0)
        return rc;
    if (memcmp(hdr, snap_magic, sizeof snap_magic) != 0 || le_get32(hdr + 60) != crc32c(hdr, 60))
        return LKV_ECORRUPT;
    if (le_get32(hdr + 8) != SNAP_FORMAT_VERSION)
        return LKV_EFORMAT;
    info->index = le_get64(hdr + 16);
    info->term = le_get64(hdr + 24);
    info->records = le_get64(hdr + 32);
    info->bytes = SNAP_HDR_SIZE + le_get64(hdr + 40);
    return 0;
}

int snap_load(const char *path, const struct io_ops *io, snap_load_cb cb, void *arg,
              struct snap_info *info, char *err, size_t errlen)
{
    io = io ? io : &io_libc;
    struct reader rd = {.io = io, .cap = 8u << 20};
    rd.fd = io->open(path, O_RDONLY | O_CLOEXEC, 0);
    struct stat st;
    if (rd.fd < 0 || fstat(rd.fd, &st) != 0) {
        snprintf(err, errlen, "cannot read snapshot %s: %s", path, strerror(errno));
        if (rd.fd >= 0)
            io->close(rd.fd);
        return LKV_EIO;
    }
    rd.size = (uint64_t)st.st_size;
    if (rd.size < rd.cap)
        rd.cap = rd.size > 64 ? (size_t)rd.size : 64;
    rd.buf = malloc(rd.cap);
    int rc = rd.buf ? 0 : LKV_ENOMEM;
    if (rc != 0)
        snprintf(err, errlen, "cannot load snapshot %s: %s", path, lkv_strerror(rc));
    uint8_t hdr[SNAP_HDR_SIZE] = {0};
    if (rc == 0 && rd.size >= SNAP_HDR_SIZE && io_pread_all(io, rd.fd, hdr, sizeof hdr, 0) != 0) {
        snprintf(err, errlen, "cannot read snapshot %s: %s", path, strerror(errno));
        rc = LKV_EIO;
    }
    uint32_t body_crc = 0;
    if (rc == 0)
        rc = check_header(hdr, rd.size, info, &body_crc, path, err, errlen);
    rd.file_off = SNAP_HDR_SIZE;
    if (rc == 0)
        rc = load_body(&rd, info, body_crc, cb, arg, path, err, errlen);
    io->close(rd.fd);
    free(rd.buf);
    return rc;
}

int snap_remove_older(const char *dir, const struct io_ops *io, uint64_t keep_index)
{
    io = io ? io : &io_libc;
    DIR *d = opendir(dir);
    if (!d)
        return LKV_EIO;
    int rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t idx = parse_name(de->d_name, SNAP_SUFFIX);
        bool old = idx != 0 && idx < keep_index;
        bool tmp = parse_name(de->d_name, TMP_SUFFIX) != 0;
        if (!old && !tmp)
            continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (reclaim_unlink(io, path) != 0) {
            LOG_WARN("event=snapshot_delete_failed file=%s error=\"%s\"", path, strerror(errno));
            rc = LKV_EIO;
        }
    }
    closedir(d);
    return rc;
}
