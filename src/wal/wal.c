#include "wal/wal.h"

#include "util/crc32c.h"
#include "util/endian.h"
#include "util/err.h"
#include "util/log.h"
#include "util/reclaim.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEG_PREFIX "log-"
#define SEG_SUFFIX ".seg"

/* Record offsets are held as u32, so no segment may grow past this. */
#define SEG_MAX_BYTES ((uint64_t)UINT32_MAX)

/* wal_read reads up to this much with one pread (more only for a single
 * larger record), and keeps a buffer of at most this size between calls. */
#define READ_CHUNK ((size_t)256 * 1024)

struct segment {
    uint64_t first_index; /* index its first record has or will have */
    uint64_t last_index;  /* 0 while it holds no record */
    uint64_t size;        /* header plus records, in bytes */
    uint32_t *offs;       /* offs[i]: where record first_index + i starts */
    size_t offs_cap;
};

/* Terms change rarely (once per election), so they are kept as runs: each
 * run's term holds from its first index up to the next run's. */
struct term_run {
    uint64_t first;
    uint64_t term;
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

    /* Invariants: the records held are consecutive and end at last_index;
     * only the last segment may hold none; runs[0].first is the first record
     * held and runs are ascending with neighbours of different terms; no
     * runs when no record is held. */
    struct term_run *runs;
    size_t nruns, runs_cap;

    uint8_t *rbuf;        /* wal_read's buffer */
    size_t rbuf_cap;

    uint8_t *hdrs;        /* record headers of the batch being written */
    size_t hdrs_cap;
    struct iovec *iov;
    size_t iov_cap;
};

static void seg_path(const struct wal *w, uint64_t first_index, char *out, size_t len)
{
    snprintf(out, len, "%s/" SEG_PREFIX "%020" PRIu64 SEG_SUFFIX, w->dir, first_index);
}

static size_t seg_records(const struct segment *s)
{
    return s->last_index ? (size_t)(s->last_index - s->first_index + 1) : 0;
}

/* Makes room in s->offs for `more` records past those it holds. */
static int reserve_offs(struct segment *s, size_t more)
{
    size_t need = seg_records(s) + more;
    if (need <= s->offs_cap)
        return 0;
    size_t cap = s->offs_cap ? s->offs_cap : 1024;
    while (cap < need)
        cap *= 2;
    uint32_t *p = realloc(s->offs, cap * sizeof *p);
    if (!p)
        return LKV_ENOMEM;
    s->offs = p;
    s->offs_cap = cap;
    return 0;
}

/* A segment that is no longer appended to gives back its spare room. */
static void shrink_offs(struct segment *s)
{
    size_t n = seg_records(s);
    if (n == 0 || n == s->offs_cap)
        return;
    uint32_t *p = realloc(s->offs, n * sizeof *p);
    if (p) {
        s->offs = p;
        s->offs_cap = n;
    }
}

static int reserve_runs(struct wal *w, size_t more)
{
    if (w->nruns + more <= w->runs_cap)
        return 0;
    size_t cap = w->runs_cap ? w->runs_cap : 16;
    while (cap < w->nruns + more)
        cap *= 2;
    struct term_run *p = realloc(w->runs, cap * sizeof *p);
    if (!p)
        return LKV_ENOMEM;
    w->runs = p;
    w->runs_cap = cap;
    return 0;
}

/* Records that record `index` (the next one held) has `term`. Needs room
 * for one more run (reserve_runs). */
static void note_term(struct wal *w, uint64_t index, uint64_t term)
{
    if (w->nruns > 0 && w->runs[w->nruns - 1].term == term)
        return;
    assert(w->nruns < w->runs_cap);
    w->runs[w->nruns++] = (struct term_run){.first = index, .term = term};
}

/* Forgets the terms of records from `from` on. */
static void forget_terms_from(struct wal *w, uint64_t from)
{
    while (w->nruns > 0 && w->runs[w->nruns - 1].first >= from)
        w->nruns--;
}

/* Forgets the terms of records before `first`, the new first record held,
 * or all of them when no record is held any more. */
static void forget_terms_before(struct wal *w, uint64_t first, bool any_held)
{
    if (!any_held) {
        w->nruns = 0;
        return;
    }
    size_t k = 0;
    while (k + 1 < w->nruns && w->runs[k + 1].first <= first)
        k++;
    if (k > 0) {
        memmove(w->runs, w->runs + k, (w->nruns - k) * sizeof *w->runs);
        w->nruns -= k;
    }
    w->runs[0].first = first;
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
    free(w->segs[i].offs);
    memmove(&w->segs[i], &w->segs[i + 1], (w->nsegs - i - 1) * sizeof *w->segs);
    w->nsegs--;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Whether name is a segment file's; sets *first to the index in it. */
static bool parse_seg_name(const char *name, uint64_t *first)
{
    size_t nl = strlen(name);
    if (nl != strlen(SEG_PREFIX) + 20 + strlen(SEG_SUFFIX) ||
        strncmp(name, SEG_PREFIX, strlen(SEG_PREFIX)) != 0 ||
        strcmp(name + nl - strlen(SEG_SUFFIX), SEG_SUFFIX) != 0)
        return false;
    char *end;
    uint64_t idx = strtoull(name + strlen(SEG_PREFIX), &end, 10);
    if (end != name + strlen(SEG_PREFIX) + 20 || idx == 0)
        return false;
    *first = idx;
    return true;
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
        uint64_t idx;
        if (!parse_seg_name(de->d_name, &idx))
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
    bool jumped;        /* this segment does not follow on from the ones before */
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
    /* Room for as many records as could fit, once: pages never touched cost
     * nothing, and the spare room goes back once the segment is closed. */
    size_t held = 0;
    assert(seg_records(seg) == 0);
    if (len > off && reserve_offs(seg, (len - off) / WAL_REC_HDR_SIZE) != 0) {
        snprintf(err, errlen, "%s: cannot index its records: %s", path,
                 lkv_strerror(LKV_ENOMEM));
        return LKV_ENOMEM;
    }
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
        if (off + WAL_REC_HDR_SIZE + h.len > SEG_MAX_BYTES) {
            snprintf(err, errlen, "%s: offset %zu: record %" PRIu64 " ends past the 4 GiB a "
                     "segment may hold", path, off, h.index);
            return LKV_ECORRUPT;
        }
        if (w->nruns == 0 || w->runs[w->nruns - 1].term != h.term) {
            if (reserve_runs(w, 1) != 0) {
                snprintf(err, errlen, "%s: cannot index record %" PRIu64 ": %s", path,
                         h.index, lkv_strerror(LKV_ENOMEM));
                return LKV_ENOMEM;
            }
            note_term(w, h.index, h.term);
        }
        assert(held < seg->offs_cap);
        seg->offs[held++] = (uint32_t)off;
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
        if (seg->first_index != sc->expected) {
            sc->jumped = true;
            w->nruns = 0;
        }
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

/* Forgets segs[0..k) (and their index), whose files go with the covered ones. */
static void forget_segments(struct wal *w, size_t k)
{
    for (size_t i = 0; i < k; i++) {
        w->bytes -= w->segs[i].size;
        free(w->segs[i].offs);
    }
    memmove(w->segs, w->segs + k, (w->nsegs - k) * sizeof *w->segs);
    w->nsegs -= k;
}

static void free_wal(struct wal *w)
{
    if (w->fd >= 0)
        w->io->close(w->fd);
    for (size_t i = 0; i < w->nsegs; i++)
        free(w->segs[i].offs);
    free(w->segs);
    free(w->runs);
    free(w->rbuf);
    free(w->hdrs);
    free(w->iov);
    free(w);
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
    uint64_t keep_from = after_index >= opt->retain_entries
                             ? after_index - opt->retain_entries + 1 : 1;
    bool dropped_any = false;
    size_t covered = 0;  /* names[0..covered) go once the rest proved readable */
    size_t kept_end = 0; /* names[kept_end - 1] is the last segment kept so far */
    for (size_t i = 0; i < nnames; i++) {
        bool last = i + 1 == nnames;
        if (!last && names[i + 1] <= keep_from) {
            covered = i + 1;
            continue;
        }
        if ((rc = push_segment(w, names[i])) != 0)
            goto err_after_list;
        bool drop = false;
        sc.jumped = false;
        rc = scan_segment(w, &sc, &w->segs[w->nsegs - 1], last, &drop, err, errlen);
        if (rc != 0)
            goto err_after_list;
        w->bytes += w->segs[w->nsegs - 1].size;
        if (drop) {
            remove_segment_at(w, w->nsegs - 1);
            if ((rc = unlink_segment(w, names[i])) != 0)
                goto err_after_list;
            dropped_any = true;
            continue;
        }
        if (sc.jumped) {
            /* What came before is covered by the snapshot and does not lead
             * up to this segment: a hole the log cannot serve across. */
            forget_segments(w, w->nsegs - 1);
            covered = i;
        }
        kept_end = i + 1;
    }
    if (sc.expected - 1 < after_index && w->nsegs > 0) {
        /* The log ends before the snapshot (one installed from a leader):
         * all of it is covered, and none of it leads up to the next index. */
        forget_segments(w, w->nsegs);
        w->nruns = 0;
        covered = kept_end;
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
    for (size_t i = 0; i + 1 < w->nsegs; i++)
        shrink_offs(&w->segs[i]);
    if (w->nsegs > 0) {
        const struct segment *tail = &w->segs[w->nsegs - 1];
        assert(tail->last_index == w->last_index ||
               (tail->last_index == 0 && tail->first_index == w->last_index + 1));
        (void)tail;
        if (open_active(w) != 0) {
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
    free_wal(w);
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
    if (w->nsegs > 1)
        shrink_offs(&w->segs[w->nsegs - 2]);
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

/* Runs the batch would add to w->runs. */
static size_t new_runs(const struct wal *w, const struct wal_entry *e, size_t n)
{
    size_t k = 0;
    bool have = w->nruns > 0;
    uint64_t term = have ? w->runs[w->nruns - 1].term : 0;
    for (size_t i = 0; i < n; i++) {
        if (!have || e[i].term != term)
            k++;
        have = true;
        term = e[i].term;
    }
    return k;
}

/* Writes e[0..n) as records first, first + 1, ... and publishes them in the
 * index once durable. Everything that can fail without touching the file
 * (sizes, memory for the index) is settled before the write, so a durable
 * batch is always indexed. */
static int append_batch(struct wal *w, const struct wal_entry *e, size_t n, uint64_t first)
{
    uint64_t total = 0;
    size_t iovs = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t len = 0;
        for (int j = 0; j < e[i].iovcnt; j++)
            len += e[i].iov[j].iov_len;
        /* the record codec asserts these; entries may come off the network */
        if (len > WAL_REC_MAX_PAYLOAD || first + i == 0 ||
            (e[i].type != WAL_REC_COMMAND && e[i].type != WAL_REC_NOOP &&
             e[i].type != WAL_REC_CONFIG))
            return LKV_EINVAL;
        total += WAL_REC_HDR_SIZE + len;
        iovs += 1 + (size_t)e[i].iovcnt;
    }
    if (total > SEG_MAX_BYTES - WAL_SEG_HDR_SIZE)
        return LKV_EINVAL;
    if (grow_scratch(w, n, iovs) != 0 || reserve_runs(w, new_runs(w, e, n)) != 0)
        return LKV_ENOMEM;

    struct segment *seg = w->nsegs ? &w->segs[w->nsegs - 1] : NULL;
    if (!seg || w->fd < 0 || w->rotate_next ||
        (seg->size > WAL_SEG_HDR_SIZE &&
         (seg->size + total > w->segment_bytes || seg->size + total > SEG_MAX_BYTES))) {
        int rc = start_segment(w, first);
        if (rc != 0) {
            w->broken = rc == LKV_EFATAL;
            return rc;
        }
        seg = &w->segs[w->nsegs - 1];
    }
    if (reserve_offs(seg, n) != 0)
        return LKV_ENOMEM;
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

    size_t held = seg_records(seg);
    uint64_t off = seg->size;
    for (size_t i = 0; i < n; i++) {
        seg->offs[held + i] = (uint32_t)off;
        off += WAL_REC_HDR_SIZE + le_get32(w->hdrs + i * WAL_REC_HDR_SIZE + 4);
        note_term(w, first + i, e[i].term);
    }
    seg->size += total;
    if (seg->size > w->alloc_end)
        w->alloc_end = seg->size;
    seg->last_index = first + n - 1;
    w->bytes += total;
    w->last_index = first + n - 1;
    return 0;
}

int wal_append(struct wal *w, const struct wal_entry *e, size_t n, uint64_t *first_index)
{
    if (w->broken)
        return LKV_EFATAL;
    if (n == 0)
        return LKV_EINVAL;
    uint64_t first = w->last_index + 1;
    int rc = append_batch(w, e, n, first);
    if (rc == 0)
        *first_index = first;
    return rc;
}

int wal_append_at(struct wal *w, const struct wal_entry *e, size_t n)
{
    if (w->broken)
        return LKV_EFATAL;
    if (n == 0 || e[0].index != w->last_index + 1)
        return LKV_EINVAL;
    if (w->nruns > 0 && e[0].term < w->runs[w->nruns - 1].term)
        return LKV_EINVAL;
    for (size_t i = 1; i < n; i++) {
        if (e[i].index != e[0].index + i || e[i].term < e[i - 1].term)
            return LKV_EINVAL;
    }
    return append_batch(w, e, n, e[0].index);
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
    if (removed)
        forget_terms_before(w, wal_first_index(w), w->nsegs > 0 && w->segs[0].last_index != 0);
    if (removed && io_fsync_dir(w->io, w->dir) != 0)
        rc = LKV_EIO;
    return rc;
}

int wal_truncate_suffix(struct wal *w, uint64_t from)
{
    if (w->broken)
        return LKV_EFATAL;
    if (from > w->last_index)
        return 0;
    if (from < wal_first_index(w))
        return LKV_ECOMPACTED;
    /* Later segments go first, newest first, so a crash midway leaves a
     * log that is a prefix of the old one. */
    bool removed = false;
    while (w->nsegs > 1 && w->segs[w->nsegs - 1].first_index >= from) {
        if (w->fd >= 0) {
            w->io->close(w->fd);
            w->fd = -1;
        }
        if (unlink_segment(w, w->segs[w->nsegs - 1].first_index) != 0)
            goto err_fatal;
        remove_segment_at(w, w->nsegs - 1);
        removed = true;
    }
    if (removed && io_fsync_dir(w->io, w->dir) != 0)
        goto err_fatal;
    /* The segment holding from - 1, or the first one when from is the
     * first record: the log's first index is never below its first. */
    struct segment *seg = &w->segs[w->nsegs - 1];
    assert(from >= seg->first_index && from <= seg->last_index + 1);
    size_t keep = (size_t)(from - seg->first_index);
    uint64_t off = keep < seg_records(seg) ? seg->offs[keep] : seg->size;
    if (w->fd < 0 && open_active(w) != 0)
        goto err_fatal;
    if (w->io->ftruncate(w->fd, (off_t)off) != 0 || w->io->fsync(w->fd) != 0)
        goto err_fatal;
    w->bytes -= seg->size - off;
    seg->size = off;
    seg->last_index = keep > 0 ? from - 1 : 0;
    w->alloc_end = off;
    w->last_index = from - 1;
    w->rotate_next = false;
    forget_terms_from(w, from);
    return 0;

err_fatal:
    w->broken = true;
    return LKV_EFATAL;
}

int wal_reset(struct wal *w, uint64_t next_index)
{
    if (w->broken)
        return LKV_EFATAL;
    if (next_index == 0)
        return LKV_EINVAL;
    if (w->fd >= 0) {
        w->io->close(w->fd);
        w->fd = -1;
    }
    /* Newest first, as in wal_truncate_suffix: what a crash leaves is a
     * prefix of the old log. */
    bool removed = false;
    while (w->nsegs > 0) {
        if (unlink_segment(w, w->segs[w->nsegs - 1].first_index) != 0)
            goto err_fatal;
        remove_segment_at(w, w->nsegs - 1);
        removed = true;
    }
    if (removed && io_fsync_dir(w->io, w->dir) != 0)
        goto err_fatal;
    w->nruns = 0;
    w->last_index = next_index - 1;
    w->rotate_next = false;
    w->alloc_end = 0;
    return 0;

err_fatal:
    w->broken = true;
    return LKV_EFATAL;
}

/* The segment holding record `index`; first <= index <= last. */
static size_t find_segment(const struct wal *w, uint64_t index)
{
    size_t lo = 0, hi = w->nsegs;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (w->segs[mid].first_index <= index)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Where record `index` of s starts and ends in its file. */
static uint64_t rec_start(const struct segment *s, uint64_t index)
{
    return s->offs[index - s->first_index];
}

static uint64_t rec_end(const struct segment *s, uint64_t index)
{
    return index < s->last_index ? s->offs[index + 1 - s->first_index] : s->size;
}

/* Reads exactly n bytes at off: 0, LKV_EIO, or LKV_ECORRUPT when the file
 * ends first (it is shorter than the index says). */
static int pread_exact(const struct io_ops *io, int fd, uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t r = io->pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return LKV_EIO;
        if (r == 0)
            return LKV_ECORRUPT;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Reads records lo..hi-1 of segment s (all within it) through fd with one
 * pread, checks each and hands it to cb. */
static int read_span(struct wal *w, const struct segment *s, int fd, uint64_t lo, uint64_t hi,
                     wal_read_cb cb, void *arg)
{
    uint64_t start = rec_start(s, lo);
    size_t n = (size_t)(rec_end(s, hi - 1) - start);
    if (n > w->rbuf_cap) {
        free(w->rbuf);
        w->rbuf_cap = 0;
        if ((w->rbuf = malloc(n)) == NULL)
            return LKV_ENOMEM;
        w->rbuf_cap = n;
    }
    int rc = pread_exact(w->io, fd, w->rbuf, n, start);
    size_t pos = 0;
    for (uint64_t i = lo; rc == 0 && i < hi; i++) {
        size_t len = (size_t)(rec_end(s, i) - rec_start(s, i));
        struct wal_rec_hdr h;
        const uint8_t *payload;
        enum wal_rec_status st = wal_rec_decode(w->rbuf + pos, len, &h, &payload);
        if (st != WAL_REC_OK || h.index != i || WAL_REC_HDR_SIZE + (size_t)h.len != len) {
            char path[4200];
            seg_path(w, s->first_index, path, sizeof path);
            LOG_ERROR("event=log_read_corrupt file=%s offset=%" PRIu64 " index=%" PRIu64
                      " status=%s", path, start + pos, i,
                      st == WAL_REC_OK ? "misplaced" : wal_rec_status_str(st));
            return LKV_ECORRUPT;
        }
        rc = cb(&h, payload, arg);
        pos += len;
    }
    return rc;
}

/* The end of the next span to read from segment s, starting at idx: as many
 * records as the budget allows, in at most READ_CHUNK bytes unless the
 * first alone is larger. *planned and *payload count what the read has
 * taken so far; *full is set when the budget stops it. */
static uint64_t plan_span(const struct segment *s, uint64_t idx, uint64_t hi, size_t max_bytes,
                          uint64_t *planned, uint64_t *payload, bool *full)
{
    uint64_t end = idx, start = rec_start(s, idx);
    while (end < hi && end <= s->last_index) {
        uint64_t len = rec_end(s, end) - rec_start(s, end) - WAL_REC_HDR_SIZE;
        if (*planned > 0 && (*payload + len > max_bytes || *planned == INT_MAX)) {
            *full = true;
            break;
        }
        if (end > idx && rec_end(s, end) - start > READ_CHUNK)
            break;
        *payload += len;
        ++*planned;
        end++;
    }
    return end;
}

int wal_read(struct wal *w, uint64_t lo, uint64_t hi, size_t max_bytes, wal_read_cb cb,
             void *arg)
{
    if (w->broken)
        return LKV_EFATAL;
    if (lo < wal_first_index(w))
        return LKV_ECOMPACTED;
    if (hi <= lo)
        return LKV_EINVAL;
    if (hi > w->last_index + 1)
        return LKV_EUNAVAILABLE;
    uint64_t planned = 0, payload = 0, idx = lo;
    bool full = false;
    int rc = 0;
    for (size_t si = find_segment(w, lo); rc == 0 && !full && idx < hi; si++) {
        const struct segment *s = &w->segs[si];
        /* the segment being appended to is already open */
        bool own_fd = si + 1 != w->nsegs || w->fd < 0;
        int fd = w->fd;
        if (own_fd) {
            char path[4200];
            seg_path(w, s->first_index, path, sizeof path);
            if ((fd = w->io->open(path, O_RDONLY | O_CLOEXEC, 0)) < 0) {
                rc = LKV_EIO;
                break;
            }
        }
        while (rc == 0 && !full && idx < hi && idx <= s->last_index) {
            uint64_t end = plan_span(s, idx, hi, max_bytes, &planned, &payload, &full);
            if (end > idx)
                rc = read_span(w, s, fd, idx, end, cb, arg);
            idx = end;
        }
        if (own_fd)
            w->io->close(fd);
    }
    if (w->rbuf_cap > READ_CHUNK) {
        free(w->rbuf);
        w->rbuf = NULL;
        w->rbuf_cap = 0;
    }
    return rc != 0 ? rc : (int)planned;
}

uint64_t wal_first_index(const struct wal *w)
{
    if (w->nsegs > 0 && w->segs[0].last_index != 0)
        return w->segs[0].first_index;
    return w->last_index + 1;
}

int wal_term_of(const struct wal *w, uint64_t index, uint64_t *term)
{
    if (w->broken)
        return LKV_EFATAL;
    if (index < wal_first_index(w))
        return LKV_ECOMPACTED;
    if (index > w->last_index)
        return LKV_EUNAVAILABLE;
    /* the last run starting at or before index */
    size_t lo = 0, hi = w->nruns;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (w->runs[mid].first <= index)
            lo = mid;
        else
            hi = mid;
    }
    assert(w->nruns > 0 && w->runs[lo].first <= index);
    *term = w->runs[lo].term;
    return 0;
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

uint64_t wal_estimate_records(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    uint64_t bytes = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t first;
        struct stat st;
        /* allocated blocks, not the size: preallocated space holds nothing */
        if (parse_seg_name(de->d_name, &first) && fstatat(dirfd(d), de->d_name, &st, 0) == 0)
            bytes += (uint64_t)st.st_blocks * 512;
    }
    closedir(d);
    return bytes / 160;
}

void wal_close(struct wal *w)
{
    if (w)
        free_wal(w);
}
