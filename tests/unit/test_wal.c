/* Unit tests for wal/wal: append and replay, segment rotation and dropping,
 * suffix truncation, recovery from hand-built torn and corrupt segment files,
 * write/sync/read failures injected through a wrapped struct io_ops, and the
 * index Raft reads (terms, records read back, appends at given indexes,
 * reset, the trailing window), also under random operation sequences. */
#include <criterion/criterion.h>

#include "util/crc32c.h"
#include "util/err.h"
#include "util/io.h"
#include "util/log.h"
#include "wal/record.h"
#include "wal/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the temp directory each test runs in ---- */

static char tmp_dir[64];

static void clear_dir(void)
{
    struct dirent **names;
    int n = scandir(tmp_dir, &names, NULL, alphasort);
    cr_assert_geq(n, 0, "scandir %s: %s", tmp_dir, strerror(errno));
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i]->d_name, ".") != 0 && strcmp(names[i]->d_name, "..") != 0) {
            char path[512];
            snprintf(path, sizeof path, "%s/%s", tmp_dir, names[i]->d_name);
            unlink(path);
        }
        free(names[i]);
    }
    free(names);
}

/* Every file of the directory with its size, one "name size" line each, sorted:
 * two listings compare equal only if nothing was created, deleted or resized. */
static void listing(char *out, size_t cap)
{
    struct dirent **names;
    int n = scandir(tmp_dir, &names, NULL, alphasort);
    cr_assert_geq(n, 0, "scandir %s: %s", tmp_dir, strerror(errno));
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.') {
            char path[512];
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", tmp_dir, names[i]->d_name);
            cr_assert_eq(stat(path, &st), 0);
            int m = snprintf(out + len, cap - len, "%s %lld\n", names[i]->d_name,
                             (long long)st.st_size);
            cr_assert(m > 0 && (size_t)m < cap - len, "listing buffer too small");
            len += (size_t)m;
        }
        free(names[i]);
    }
    free(names);
}

static void seg_file(uint64_t first, char *out, size_t len)
{
    snprintf(out, len, "%s/log-%020" PRIu64 ".seg", tmp_dir, first);
}

/* Size of segment `first`, or -1 if it does not exist. */
static long long seg_size(uint64_t first)
{
    char path[512];
    struct stat st;
    seg_file(first, path, sizeof path);
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static size_t count_segments(void)
{
    DIR *d = opendir(tmp_dir);
    cr_assert_not_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strncmp(de->d_name, "log-", 4) == 0;
    closedir(d);
    return n;
}

/* ---- what the log should hold: payload, type and term follow from (index, salt) ---- */

#define MAX_INDEX 4096

struct want {
    bool set;
    size_t len;
    uint32_t salt;
    uint64_t term;
};
static struct want model[MAX_INDEX];

/* Names the case a loop is on, so a failure says which offset broke. */
static char ctx[128];

static uint64_t term_of(uint64_t index, uint32_t salt)
{
    return 1 + index / 4 + (uint64_t)salt * 100;
}

static uint8_t type_of(uint64_t index)
{
    if (index % 3 == 0)
        return WAL_REC_NOOP;
    return index % 7 == 0 ? WAL_REC_CONFIG : WAL_REC_COMMAND;
}

static void fill(uint8_t *p, size_t len, uint64_t index, uint32_t salt)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(index * 131 + salt * 17 + i * 7 + (i >> 8));
}

static void model_set_term(uint64_t index, size_t len, uint32_t salt, uint64_t term)
{
    cr_assert_lt(index, MAX_INDEX);
    model[index] = (struct want){.set = true, .len = len, .salt = salt, .term = term};
}

static void model_set(uint64_t index, size_t len, uint32_t salt)
{
    model_set_term(index, len, salt, term_of(index, salt));
}

/* ---- replay callback: copies every record it is handed ---- */

struct got {
    struct wal_rec_hdr h;
    uint8_t *payload;
};

struct replay {
    struct got *v;
    size_t n, cap;
    size_t calls;
    size_t stop_at; /* the 1-based call that returns stop_rc; 0 = never */
    int stop_rc;
};

static int collect_cb(const struct wal_rec_hdr *h, const uint8_t *payload, void *arg)
{
    struct replay *r = arg;
    r->calls++;
    if (r->stop_at != 0 && r->calls == r->stop_at)
        return r->stop_rc;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        cr_assert_not_null(r->v);
    }
    struct got *g = &r->v[r->n++];
    g->h = *h;
    g->payload = malloc(h->len ? h->len : 1);
    cr_assert_not_null(g->payload);
    if (h->len)
        memcpy(g->payload, payload, h->len);
    return 0;
}

/* Forgets what was collected; keeps stop_at and stop_rc. */
static void replay_clear(struct replay *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].payload);
    r->n = 0;
    r->calls = 0;
}

static void replay_free(struct replay *r)
{
    replay_clear(r);
    free(r->v);
    *r = (struct replay){0};
}

/* Asserts that exactly records first .. first+count-1 were replayed, in
 * order, each with the payload, type and term the model says. */
static void expect_records(const struct replay *r, uint64_t first, size_t count)
{
    cr_assert_eq(r->n, count, "%s: replayed %zu records, want %zu from index %" PRIu64, ctx, r->n,
                 count, first);
    for (size_t i = 0; i < count; i++) {
        uint64_t idx = first + i;
        const struct got *g = &r->v[i];
        cr_assert(idx < MAX_INDEX && model[idx].set, "%s: no model for index %" PRIu64, ctx, idx);
        const struct want *m = &model[idx];
        cr_assert_eq(g->h.index, idx, "%s: record %zu has index %" PRIu64 ", want %" PRIu64, ctx,
                     i, g->h.index, idx);
        cr_assert_eq(g->h.len, m->len, "%s: record %" PRIu64 " has %u payload bytes, want %zu",
                     ctx, idx, g->h.len, m->len);
        cr_assert_eq(g->h.type, type_of(idx), "%s: record %" PRIu64 " type", ctx, idx);
        cr_assert_eq(g->h.term, m->term, "%s: record %" PRIu64 " term %" PRIu64 ", want %" PRIu64,
                     ctx, idx, g->h.term, m->term);
        uint8_t *p = malloc(m->len ? m->len : 1);
        cr_assert_not_null(p);
        fill(p, m->len, idx, m->salt);
        int diff = m->len ? memcmp(g->payload, p, m->len) : 0;
        free(p);
        cr_assert_eq(diff, 0, "%s: record %" PRIu64 " payload differs (stale or wrong bytes)", ctx,
                     idx);
    }
}

/* ---- opening and appending ---- */

static struct wal_options opts_of(uint64_t segment_bytes, bool prealloc, const struct io_ops *io)
{
    return (struct wal_options){
        .dir = tmp_dir, .io = io, .segment_bytes = segment_bytes, .preallocate = prealloc};
}

static int try_open(const struct wal_options *o, uint64_t after, struct replay *r, struct wal **w,
                    struct wal_recovery *info, char *err, size_t errlen)
{
    replay_clear(r);
    err[0] = '\0';
    *w = NULL;
    return wal_open(o, after, collect_cb, r, w, info, err, errlen);
}

static struct wal *open_ok(const struct wal_options *o, uint64_t after, struct replay *r,
                           struct wal_recovery *info)
{
    char err[512];
    struct wal *w;
    int rc = try_open(o, after, r, &w, info, err, sizeof err);
    cr_assert_eq(rc, 0, "%s: wal_open returned %d (%s): %s", ctx, rc, lkv_strerror(rc), err);
    cr_assert_not_null(w);
    return w;
}

/* Appends one batch of n records, each with len payload bytes cut into
 * `pieces` iovecs (some empty when len < pieces). The model learns the
 * records only if the append succeeds. */
static int try_append(struct wal *w, size_t n, size_t len, uint32_t salt, int pieces,
                      uint64_t *first)
{
    uint64_t start = wal_last_index(w) + 1;
    cr_assert_lt(start + n, MAX_INDEX);
    size_t np = (size_t)pieces;
    struct wal_entry *e = calloc(n, sizeof *e);
    struct iovec *iov = calloc(n * np, sizeof *iov);
    uint8_t **bufs = calloc(n, sizeof *bufs);
    cr_assert(e && iov && bufs);
    for (size_t i = 0; i < n; i++) {
        uint64_t idx = start + i;
        bufs[i] = malloc(len ? len : 1);
        cr_assert_not_null(bufs[i]);
        fill(bufs[i], len, idx, salt);
        for (size_t j = 0; j < np; j++) {
            size_t a = len * j / np, b = len * (j + 1) / np;
            iov[i * np + j] = (struct iovec){bufs[i] + a, b - a};
        }
        e[i] = (struct wal_entry){
            .type = type_of(idx), .term = term_of(idx, salt), .iov = &iov[i * np], .iovcnt = pieces};
    }
    int rc = wal_append(w, e, n, first);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            model_set(start + i, len, salt);
    }
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    free(iov);
    free(e);
    return rc;
}

static void append_ok(struct wal *w, size_t n, size_t len, uint32_t salt)
{
    uint64_t want = wal_last_index(w) + 1, first = 0;
    int rc = try_append(w, n, len, salt, 1, &first);
    cr_assert_eq(rc, 0, "%s: wal_append returned %d (%s)", ctx, rc, lkv_strerror(rc));
    cr_assert_eq(first, want, "%s: first index %" PRIu64 ", want %" PRIu64, ctx, first, want);
    cr_assert_eq(wal_last_index(w), want + n - 1);
}

/* ---- building segment files by hand ---- */

struct seg {
    uint64_t first;
    uint8_t *p;
    size_t len, cap;
};

static void seg_begin(struct seg *s, uint64_t first)
{
    s->first = first;
    s->cap = 1 << 16;
    s->p = calloc(1, s->cap);
    cr_assert_not_null(s->p);
    wal_seg_hdr_encode(s->p, first);
    s->len = WAL_SEG_HDR_SIZE;
}

/* Appends a record; returns its offset in the file. */
static size_t seg_rec(struct seg *s, uint64_t index, uint32_t batch_pos, size_t len, uint32_t salt)
{
    cr_assert_leq(s->len + WAL_REC_HDR_SIZE + len, s->cap);
    uint8_t payload[1024];
    cr_assert_leq(len, sizeof payload);
    fill(payload, len, index, salt);
    struct wal_rec_hdr h = {.len = (uint32_t)len,
                            .type = type_of(index),
                            .batch_pos = batch_pos,
                            .index = index,
                            .term = term_of(index, salt)};
    size_t off = s->len;
    s->len += wal_rec_encode(s->p + off, &h, payload);
    model_set(index, len, salt);
    return off;
}

/* Appends one write batch of n records starting at `first`; returns the
 * offset of its first record. */
static size_t seg_batch(struct seg *s, uint64_t first, size_t n, size_t len, uint32_t salt)
{
    size_t off = s->len;
    for (size_t i = 0; i < n; i++)
        seg_rec(s, first + i, (uint32_t)i, len, salt);
    return off;
}

static void seg_write(struct seg *s)
{
    char path[512];
    seg_file(s->first, path, sizeof path);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(s->p, 1, s->len, f), s->len);
    cr_assert_eq(fclose(f), 0);
    free(s->p);
    s->p = NULL;
}

/* Writes a segment file holding exactly these bytes. */
static void write_raw(uint64_t name, const uint8_t *p, size_t len)
{
    struct seg s = {.first = name, .p = malloc(len ? len : 1), .len = len};
    cr_assert_not_null(s.p);
    memcpy(s.p, p, len);
    seg_write(&s);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint8_t garbage_byte(size_t i)
{
    return (uint8_t)(0x5A ^ (i * 73 + 11));
}

static bool is_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i])
            return false;
    }
    return true;
}

/* ---- fault injection: io_libc with selected calls failing ---- */

enum op {
    OP_PREAD,
    OP_PWRITE,
    OP_PWRITEV,
    OP_FDATASYNC,
    OP_FALLOCATE,
    OP_OPEN, /* only opens that create a file (O_CREAT) are counted and failed */
    OP_FTRUNCATE,
    OP_FSYNC,
    OP_UNLINK,
    OP_N
};

struct fault {
    int skip;  /* calls that still succeed before the failures start */
    int count; /* calls that fail after that; -1 = every one; 0 = disarmed */
    int err;
    int calls; /* calls seen, failed or not */
};
static struct fault faults[OP_N];
static size_t pwritev_short; /* nonzero: the next pwritev writes only this many bytes */
static size_t pwritev_cap;   /* nonzero: every pwritev writes at most this many bytes */
static struct io_ops fio;

static void arm(enum op op, int skip, int count, int err)
{
    faults[op].skip = skip;
    faults[op].count = count;
    faults[op].err = err;
}

static void disarm(enum op op)
{
    faults[op].count = 0;
}

static bool fail_now(enum op op)
{
    struct fault *f = &faults[op];
    f->calls++;
    if (f->count == 0)
        return false;
    if (f->skip > 0) {
        f->skip--;
        return false;
    }
    if (f->count > 0)
        f->count--;
    errno = f->err;
    return true;
}

static ssize_t f_pread(int fd, void *buf, size_t n, off_t off)
{
    return fail_now(OP_PREAD) ? -1 : io_libc.pread(fd, buf, n, off);
}

static ssize_t f_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    return fail_now(OP_PWRITE) ? -1 : io_libc.pwrite(fd, buf, n, off);
}

static ssize_t f_pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    if (fail_now(OP_PWRITEV))
        return -1;
    size_t limit = pwritev_short ? pwritev_short : pwritev_cap;
    pwritev_short = 0;
    if (limit == 0)
        return io_libc.pwritev(fd, iov, cnt, off);
    struct iovec cut[64];
    int k = 0;
    for (int i = 0; i < cnt && limit > 0 && k < 64; i++) {
        size_t n = iov[i].iov_len < limit ? iov[i].iov_len : limit;
        cut[k++] = (struct iovec){iov[i].iov_base, n};
        limit -= n;
    }
    return io_libc.pwritev(fd, cut, k, off);
}

static int f_fdatasync(int fd)
{
    return fail_now(OP_FDATASYNC) ? -1 : io_libc.fdatasync(fd);
}

static int f_fallocate(int fd, int mode, off_t off, off_t len)
{
    return fail_now(OP_FALLOCATE) ? -1 : io_libc.fallocate(fd, mode, off, len);
}

static int f_open(const char *path, int flags, mode_t mode)
{
    if ((flags & O_CREAT) && fail_now(OP_OPEN))
        return -1;
    return io_libc.open(path, flags, mode);
}

static int f_ftruncate(int fd, off_t len)
{
    return fail_now(OP_FTRUNCATE) ? -1 : io_libc.ftruncate(fd, len);
}

static int f_fsync(int fd)
{
    return fail_now(OP_FSYNC) ? -1 : io_libc.fsync(fd);
}

static int f_unlink(const char *path)
{
    return fail_now(OP_UNLINK) ? -1 : io_libc.unlink(path);
}

/* ---- fixture ---- */

static void setup(void)
{
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/test_wal.XXXXXX");
    cr_assert_not_null(mkdtemp(tmp_dir), "mkdtemp: %s", strerror(errno));
    memset(model, 0, sizeof model);
    memset(faults, 0, sizeof faults);
    pwritev_short = pwritev_cap = 0;
    snprintf(ctx, sizeof ctx, "-");
    fio = io_libc;
    fio.pread = f_pread;
    fio.pwrite = f_pwrite;
    fio.pwritev = f_pwritev;
    fio.fdatasync = f_fdatasync;
    fio.fallocate = f_fallocate;
    fio.open = f_open;
    fio.ftruncate = f_ftruncate;
    fio.fsync = f_fsync;
    fio.unlink = f_unlink;
    /* torn-tail loops would print hundreds of warnings; one test turns them on */
    log_threshold = LOG_LVL_ERROR;
}

static void teardown(void)
{
    clear_dir();
    rmdir(tmp_dir);
}

TestSuite(wal, .init = setup, .fini = teardown);

#define BIG_SEGMENT ((uint64_t)1 << 20)

/* ==== append and replay ==== */

Test(wal, append_close_reopen_replays_every_record_in_order)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(info.last_index, 0);
    cr_assert_eq(info.segments, 0);
    cr_assert_eq(wal_last_index(w), 0);

    append_ok(w, 1, 17, 0);
    append_ok(w, 3, 0, 0); /* empty payloads are legal */
    append_ok(w, 5, 300, 0);
    append_ok(w, 1, 1, 0);
    cr_assert_eq(wal_last_index(w), 10);
    uint64_t bytes = WAL_SEG_HDR_SIZE + 10 * WAL_REC_HDR_SIZE + 17 + 5 * 300 + 1;
    cr_assert_eq(wal_size_bytes(w), bytes);
    cr_assert_eq(seg_size(1), (long long)bytes);
    wal_close(w);

    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 10);
    cr_assert_eq(info.replayed, 10);
    cr_assert_eq(info.last_index, 10);
    cr_assert_eq(info.segments, 1);
    cr_assert_eq(info.torn_bytes, 0);
    cr_assert_eq(wal_last_index(w), 10);
    cr_assert_eq(wal_size_bytes(w), bytes);
    /* batch_pos numbers the records of each write batch from 0 */
    const uint32_t pos[10] = {0, 0, 1, 2, 0, 1, 2, 3, 4, 0};
    for (size_t i = 0; i < 10; i++)
        cr_assert_eq(r.v[i].h.batch_pos, pos[i], "record %zu batch_pos %u", i + 1,
                     r.v[i].h.batch_pos);

    /* appending after a reopen continues the numbering */
    append_ok(w, 2, 9, 0);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 12);
    wal_close(w);
    replay_free(&r);
}

Test(wal, after_index_skips_records_the_snapshot_covers)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    append_ok(w, 4, 20, 0);
    append_ok(w, 6, 20, 0);
    wal_close(w);

    w = open_ok(&o, 4, &r, &info);
    expect_records(&r, 5, 6);
    cr_assert_eq(info.replayed, 6);
    cr_assert_eq(info.last_index, 10);
    cr_assert_eq(wal_last_index(w), 10);
    wal_close(w);

    w = open_ok(&o, 10, &r, &info);
    expect_records(&r, 11, 0);
    cr_assert_eq(info.replayed, 0);
    cr_assert_eq(wal_last_index(w), 10);
    append_ok(w, 1, 5, 0);
    wal_close(w);

    w = open_ok(&o, 10, &r, &info);
    expect_records(&r, 11, 1);
    wal_close(w);
    replay_free(&r);
}

Test(wal, snapshot_ahead_of_the_log_continues_after_it)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    append_ok(w, 5, 20, 0);
    wal_close(w);

    /* a snapshot covering up to 15 (e.g. installed from a leader) */
    w = open_ok(&o, 15, &r, &info);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(info.last_index, 15);
    cr_assert_eq(wal_last_index(w), 15);
    append_ok(w, 2, 20, 0);
    wal_close(w);

    w = open_ok(&o, 15, &r, &info);
    expect_records(&r, 16, 2);
    cr_assert_eq(seg_size(1), -1, "segment 1 is wholly covered and must be gone");
    wal_close(w);
    replay_free(&r);
}

Test(wal, payload_split_over_iovecs_round_trips)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);

    static const char a[] = "hello, ", b[] = "", c[] = "wal\0with nul", d[] = "!";
    struct iovec v1[] = {{(void *)a, 7}, {(void *)b, 0}, {(void *)c, 12}, {(void *)d, 1}};
    uint8_t many[17 * 18 / 2];
    struct iovec v2[17];
    size_t at = 0;
    for (size_t i = 0; i < 17; i++) {
        for (size_t j = 0; j <= i; j++)
            many[at + j] = (uint8_t)(i * 16 + j);
        v2[i] = (struct iovec){many + at, i + 1};
        at += i + 1;
    }
    struct wal_entry e[] = {
        {.type = WAL_REC_COMMAND, .term = 3, .iov = v1, .iovcnt = 4},
        {.type = WAL_REC_NOOP, .term = 4, .iov = NULL, .iovcnt = 0},
        {.type = WAL_REC_CONFIG, .term = 5, .iov = v2, .iovcnt = 17},
    };
    uint64_t first = 0;
    cr_assert_eq(wal_append(w, e, 3, &first), 0);
    cr_assert_eq(first, 1);
    wal_close(w);

    w = open_ok(&o, 0, &r, &info);
    cr_assert_eq(r.n, 3);
    cr_assert_eq(r.v[0].h.len, 20);
    cr_assert_arr_eq(r.v[0].payload, "hello, wal\0with nul!", 20);
    cr_assert_eq(r.v[0].h.type, WAL_REC_COMMAND);
    cr_assert_eq(r.v[0].h.term, 3);
    cr_assert_eq(r.v[1].h.len, 0);
    cr_assert_eq(r.v[1].h.type, WAL_REC_NOOP);
    cr_assert_eq(r.v[1].h.term, 4);
    cr_assert_eq(r.v[2].h.len, sizeof many);
    cr_assert_arr_eq(r.v[2].payload, many, sizeof many);
    cr_assert_eq(r.v[2].h.type, WAL_REC_CONFIG);
    cr_assert_eq(r.v[2].h.term, 5);
    cr_assert_eq(r.v[2].h.index, 3);

    /* the model-driven helper with pieces, several of them empty */
    uint64_t f2 = 0;
    cr_assert_eq(try_append(w, 4, 2, 0, 5, &f2), 0);
    cr_assert_eq(try_append(w, 4, 50, 0, 3, &f2), 0);
    cr_assert_eq(f2, 8);
    wal_close(w);
    w = open_ok(&o, 3, &r, &info);
    expect_records(&r, 4, 8);
    wal_close(w);
    replay_free(&r);
}

Test(wal, batch_of_more_iovecs_than_iov_max_round_trips)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    uint64_t first = 0;
    /* 700 records x (1 header + 3 pieces) = 2800 iovecs, past IOV_MAX (1024) */
    cr_assert_eq(try_append(w, 700, 12, 0, 3, &first), 0);
    cr_assert_eq(first, 1);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 700);
    wal_close(w);
    replay_free(&r);
}

Test(wal, short_writes_are_continued)
{
    /* every pwritev writes at most 7 bytes: the batch must still land whole */
    struct wal_options o = opts_of(BIG_SEGMENT, false, &fio);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    pwritev_cap = 7;
    append_ok(w, 3, 45, 0);
    append_ok(w, 1, 0, 0);
    pwritev_cap = 0;
    cr_assert_gt(faults[OP_PWRITEV].calls, 20);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 4);
    cr_assert_eq(info.torn_bytes, 0);
    wal_close(w);
    replay_free(&r);
}

Test(wal, oversized_payload_is_refused_and_the_log_goes_on)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    size_t mib = 1 << 20;
    uint8_t *buf = calloc(1, mib);
    cr_assert_not_null(buf);
    struct iovec v[65]; /* 65 MiB > WAL_REC_MAX_PAYLOAD */
    for (size_t i = 0; i < 65; i++)
        v[i] = (struct iovec){buf, mib};
    struct wal_entry e = {.type = WAL_REC_COMMAND, .term = 1, .iov = v, .iovcnt = 65};
    uint64_t first = 0;
    cr_assert_eq(wal_append(w, &e, 1, &first), LKV_EINVAL);
    free(buf);
    cr_assert_eq(wal_last_index(w), 0);
    append_ok(w, 1, 10, 0);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 1);
    wal_close(w);
    replay_free(&r);
}

/* ==== segments: rotation, dropping ==== */

/* Ten single-record appends of 24-byte payloads (56-byte records) into
 * segments of `seg_bytes`: three records fit in 32 + 3 * 56 = 200 bytes, so
 * segments start at 1, 4, 7 and 10. */
static void rotation_round_trip(bool prealloc, uint64_t seg_bytes)
{
    struct wal_options o = opts_of(seg_bytes, prealloc, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    for (int i = 0; i < 10; i++)
        append_ok(w, 1, 24, 0);
    cr_assert_eq(wal_size_bytes(w), 3 * 200 + 88);
    wal_close(w);

    cr_assert_eq(count_segments(), 4);
    const uint64_t firsts[] = {1, 4, 7, 10};
    for (size_t i = 0; i < 4; i++) {
        long long want = prealloc ? (long long)seg_bytes : i < 3 ? 200 : 88;
        cr_assert_eq(seg_size(firsts[i]), want, "segment %" PRIu64 " size %lld, want %lld",
                     firsts[i], seg_size(firsts[i]), want);
    }

    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 10);
    cr_assert_eq(info.segments, 4);
    cr_assert_eq(info.torn_bytes, 0);
    cr_assert_eq(wal_size_bytes(w), 3 * 200 + 88);
    append_ok(w, 1, 24, 0);
    append_ok(w, 1, 24, 0); /* fills segment 10 */
    append_ok(w, 10, 24, 0); /* one batch bigger than a segment lands whole */
    append_ok(w, 1, 24, 0);
    wal_close(w);
    cr_assert_eq(seg_size(13), 32 + 10 * 56);
    cr_assert_eq(seg_size(23), prealloc ? (long long)seg_bytes : 88);

    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 23);
    cr_assert_eq(info.segments, 6);
    cr_assert_eq(info.torn_bytes, 0);
    wal_close(w);
    replay_free(&r);
}

Test(wal, rotation_by_size_keeps_every_record)
{
    rotation_round_trip(false, 200);
}

Test(wal, rotation_with_preallocation_keeps_every_record)
{
    /* 232 leaves 32 zero bytes after three records: a whole zero header */
    rotation_round_trip(true, 232);
}

Test(wal, preallocated_segment_with_short_zero_tail_is_not_corruption)
{
    /* Regression: 40-byte records in 256-byte preallocated segments leave
     * 256 - (32 + 5 * 40) = 24 zero bytes at the end of each full segment.
     * That is unused preallocated space, not a torn record: every record must
     * be replayed and nothing reported torn. */
    struct wal_options o = opts_of(256, true, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    for (int i = 0; i < 12; i++)
        append_ok(w, 1, 8, 0);
    wal_close(w);
    cr_assert_eq(seg_size(1), 256, "preallocation did not happen");
    cr_assert_eq(seg_size(6), 256);
    cr_assert_eq(seg_size(11), 256);

    char err[512];
    int rc = try_open(&o, 0, &r, &w, &info, err, sizeof err);
    cr_assert_eq(rc, 0, "wal_open returned %d (%s): %s", rc, lkv_strerror(rc), err);
    expect_records(&r, 1, 12);
    cr_assert_eq(info.torn_bytes, 0);
    wal_close(w);
    replay_free(&r);
}

Test(wal, preallocated_segment_ending_just_before_a_block_boundary_reopens)
{
    /* Regression, the store's setup (large preallocated segments, rotated at
     * checkpoints): 101 records of 40 bytes end at 32 + 4040 = 4072, 24 bytes
     * before the 4 KiB block boundary; the rest of the 64 KiB is never
     * written. Reopening must replay everything, report nothing torn, and
     * keep the preallocation; after a rotation the same segment is a
     * non-last one and must not be called corrupt. */
    struct wal_options o = opts_of(64 * 1024, true, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    append_ok(w, 101, 8, 0);
    wal_close(w);
    cr_assert_eq(seg_size(1), 64 * 1024, "preallocation did not happen");

    char err[512];
    int rc = try_open(&o, 0, &r, &w, &info, err, sizeof err);
    cr_assert_eq(rc, 0, "wal_open returned %d (%s): %s", rc, lkv_strerror(rc), err);
    expect_records(&r, 1, 101);
    cr_assert_eq(info.torn_bytes, 0, "unwritten preallocated space reported as a torn tail");
    cr_assert_eq(seg_size(1), 64 * 1024, "recovery cut the preallocated space");
    cr_assert_eq(wal_rotate(w), 0);
    append_ok(w, 1, 8, 0);
    wal_close(w);

    rc = try_open(&o, 0, &r, &w, &info, err, sizeof err);
    cr_assert_eq(rc, 0, "wal_open returned %d (%s): %s", rc, lkv_strerror(rc), err);
    expect_records(&r, 1, 102);
    wal_close(w);
    replay_free(&r);
}

/* Segments 1-3, 4-6 and 7-9, split by wal_rotate. */
static struct wal *three_rotated_segments(const struct wal_options *o, struct replay *r)
{
    struct wal_recovery info;
    struct wal *w = open_ok(o, 0, r, &info);
    append_ok(w, 3, 30, 0);
    cr_assert_eq(wal_rotate(w), 0);
    cr_assert_eq(wal_rotate(w), 0); /* nothing new since: no empty segment */
    append_ok(w, 3, 30, 0);
    cr_assert_eq(wal_rotate(w), 0);
    append_ok(w, 3, 30, 0);
    cr_assert_eq(count_segments(), 3);
    cr_assert_gt(seg_size(1), 0);
    cr_assert_gt(seg_size(4), 0);
    cr_assert_gt(seg_size(7), 0);
    return w;
}

Test(wal, drop_prefix_deletes_exactly_the_covered_segments)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = three_rotated_segments(&o, &r);
    uint64_t seg_bytes = (uint64_t)seg_size(4);

    cr_assert_eq(wal_drop_prefix(w, 5), 0); /* segment 4 still holds 6 */
    cr_assert_eq(seg_size(1), -1);
    cr_assert_gt(seg_size(4), 0);
    cr_assert_gt(seg_size(7), 0);
    cr_assert_eq(wal_size_bytes(w), 2 * seg_bytes);

    cr_assert_eq(wal_drop_prefix(w, 6), 0);
    cr_assert_eq(seg_size(4), -1);
    cr_assert_gt(seg_size(7), 0);

    cr_assert_eq(wal_drop_prefix(w, 9), 0); /* the segment being appended to stays */
    cr_assert_gt(seg_size(7), 0);
    cr_assert_eq(count_segments(), 1);
    append_ok(w, 1, 30, 0);
    wal_close(w);

    w = open_ok(&o, 6, &r, &info);
    expect_records(&r, 7, 4);
    cr_assert_eq(info.segments, 1);
    wal_close(w);

    /* the dropped records are really gone: a snapshot not covering them is refused */
    char err[512];
    cr_assert_eq(try_open(&o, 0, &r, &w, &info, err, sizeof err), LKV_ECORRUPT);
    replay_free(&r);
}

Test(wal, drop_prefix_after_rotate_deletes_the_active_segment)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = three_rotated_segments(&o, &r);
    cr_assert_eq(wal_rotate(w), 0);
    cr_assert_eq(wal_drop_prefix(w, 9), 0);
    cr_assert_eq(count_segments(), 0);
    cr_assert_eq(wal_size_bytes(w), 0);
    cr_assert_eq(wal_last_index(w), 9);
    append_ok(w, 2, 30, 0);
    cr_assert_gt(seg_size(10), 0);
    wal_close(w);

    w = open_ok(&o, 9, &r, &info);
    expect_records(&r, 10, 2);
    wal_close(w);
    replay_free(&r);
}

Test(wal, drop_prefix_is_not_blocked_by_an_empty_segment)
{
    /* Segment 4 was created (header only) before a crash; the snapshot loaded
     * at open covers up to 10, so appends go to a new segment 11. Segment 4
     * has no records, so it is covered by any snapshot: dropping up to 11
     * must delete 4 and 11 and keep only the segment being appended to. */
    struct seg s;
    seg_begin(&s, 1);
    seg_batch(&s, 1, 3, 10, 0);
    seg_write(&s);
    seg_begin(&s, 4);
    seg_write(&s);

    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 10, &r, &info);
    cr_assert_eq(wal_last_index(w), 10);
    append_ok(w, 1, 10, 0);
    cr_assert_eq(wal_rotate(w), 0);
    append_ok(w, 1, 10, 0);
    cr_assert_gt(seg_size(11), 0);
    cr_assert_gt(seg_size(12), 0);

    cr_assert_eq(wal_drop_prefix(w, 11), 0);
    cr_assert_eq(seg_size(11), -1, "segment 11 (records 11..11) is covered but was kept");
    cr_assert_eq(seg_size(4), -1, "empty segment 4 was kept");
    cr_assert_gt(seg_size(12), 0);
    wal_close(w);
    replay_free(&r);
}

Test(wal, open_deletes_segments_covered_by_after_index)
{
    struct wal_options o = opts_of(200, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    for (int i = 0; i < 10; i++)
        append_ok(w, 1, 24, 0); /* segments 1, 4, 7, 10 */
    wal_close(w);

    w = open_ok(&o, 3, &r, &info);
    expect_records(&r, 4, 7);
    cr_assert_eq(seg_size(1), -1);
    cr_assert_eq(count_segments(), 3);
    cr_assert_eq(info.segments, 3);
    wal_close(w);

    /* 6 ends segment 4; segment 7 starts the part still needed */
    w = open_ok(&o, 6, &r, &info);
    expect_records(&r, 7, 4);
    cr_assert_eq(seg_size(4), -1);
    cr_assert_gt(seg_size(7), 0);
    cr_assert_eq(info.segments, 2);
    wal_close(w);

    /* 8 is inside segment 7: segment 7 is still needed and stays */
    w = open_ok(&o, 8, &r, &info);
    expect_records(&r, 9, 2);
    cr_assert_gt(seg_size(7), 0);
    cr_assert_gt(seg_size(10), 0);
    wal_close(w);
    replay_free(&r);
}

/* ==== torn tails ==== */

enum tail_damage { CUT, ZEROS, GARBAGE };
static const char *const damage_names[] = {"cut", "zeros", "garbage"};

/* Batch [1,2,3] then batch [4]; record 4 is damaged from its byte k on. */
static void torn_tail_case(enum tail_damage how, size_t k)
{
    snprintf(ctx, sizeof ctx, "%s from byte %zu of the last record", damage_names[how], k);
    clear_dir();
    memset(model, 0, sizeof model);
    struct seg s;
    seg_begin(&s, 1);
    seg_batch(&s, 1, 3, 21, 0);
    size_t p = seg_rec(&s, 4, 0, 40, 0);
    size_t full = s.len;
    if (how == CUT)
        s.len = p + k;
    for (size_t i = p + k; how != CUT && i < full; i++)
        s.p[i] = how == ZEROS ? (uint8_t)0 : garbage_byte(i);
    /* an all-zero record is preallocated space, not a torn write */
    bool zero_tail = how == ZEROS && is_zero(s.p + p, full - p);
    seg_write(&s);

    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 3);
    cr_assert_eq(wal_last_index(w), 3, "%s", ctx);
    uint64_t want_torn = how == CUT ? k : zero_tail ? 0 : full - p;
    cr_assert_eq(info.torn_bytes, want_torn, "%s: torn_bytes %" PRIu64 ", want %" PRIu64, ctx,
                 info.torn_bytes, want_torn);
    long long want_size = zero_tail ? (long long)full : (long long)p;
    cr_assert_eq(seg_size(1), want_size, "%s: file is %lld bytes, want %lld", ctx, seg_size(1),
                 want_size);

    /* a shorter record now: anything stale after it would show on reopen */
    append_ok(w, 1, 8, 1);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 4);
    cr_assert_eq(info.torn_bytes, 0, "%s: stale bytes after the new record", ctx);
    wal_close(w);
    replay_free(&r);
}

Test(wal, torn_tail_truncated_at_every_offset)
{
    /* The crash cut the file inside the last record (or right before it):
     * recovery keeps records 1-3, cuts the partial record, and appending
     * continues at 4. */
    for (size_t k = 0; k < WAL_REC_HDR_SIZE + 40; k++)
        torn_tail_case(CUT, k);
}

Test(wal, torn_tail_zeroed_at_every_offset)
{
    /* The last record's pages reached the disk only in part, the rest reads
     * as zeros (as in preallocated space): same outcome as a cut. */
    for (size_t k = 0; k < WAL_REC_HDR_SIZE + 40; k++)
        torn_tail_case(ZEROS, k);
}

Test(wal, torn_tail_with_garbage_at_every_offset)
{
    /* The end of the last record holds garbage: it is cut off like a torn write. */
    for (size_t k = 0; k < WAL_REC_HDR_SIZE + 40; k++)
        torn_tail_case(GARBAGE, k);
}

Test(wal, torn_tail_is_logged_as_a_warning)
{
    /* A cut-off record is reported at warn level with the file and offset. */
    struct seg s;
    seg_begin(&s, 1);
    seg_batch(&s, 1, 2, 10, 0);
    size_t p = seg_rec(&s, 3, 0, 10, 0);
    s.len = p + 20;
    seg_write(&s);

    char logpath[128];
    snprintf(logpath, sizeof logpath, "%s/stderr.txt", tmp_dir);
    int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    int saved = dup(STDERR_FILENO);
    cr_assert_geq(saved, 0);
    cr_assert_geq(dup2(fd, STDERR_FILENO), 0);
    log_threshold = LOG_LVL_WARN;

    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w;
    char err[512];
    int rc = try_open(&o, 0, &r, &w, &info, err, sizeof err);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(info.torn_bytes, 20);
    wal_close(w);
    replay_free(&r);

    char text[4096] = {0};
    FILE *f = fopen(logpath, "r");
    cr_assert_not_null(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    cr_assert_gt(n, 0, "nothing was logged");
    char path[512], off[64];
    seg_file(1, path, sizeof path);
    snprintf(off, sizeof off, "offset=%zu ", p);
    cr_assert_not_null(strstr(text, "level=warn"), "log: %s", text);
    cr_assert_not_null(strstr(text, "event=torn_tail"), "log: %s", text);
    cr_assert_not_null(strstr(text, path), "log: %s", text);
    cr_assert_not_null(strstr(text, off), "log: %s", text);
}

/* Batch [1,2,3], then batch [4,5,6] whose record `victim` gets `damage`. */
static void torn_batch_case(uint64_t victim, size_t byte, int damage)
{
    clear_dir();
    memset(model, 0, sizeof model);
    struct seg s;
    seg_begin(&s, 1);
    seg_batch(&s, 1, 3, 15, 0);
    size_t p4 = seg_rec(&s, 4, 0, 30, 0);
    size_t p5 = seg_rec(&s, 5, 1, 30, 0);
    seg_rec(&s, 6, 2, 30, 0);
    size_t at = victim == 4 ? p4 : p5, rec = WAL_REC_HDR_SIZE + 30;
    if (damage == 0)
        s.p[at + byte] ^= 0xFF;
    for (size_t i = 0; damage != 0 && i < rec; i++)
        s.p[at + i] = damage == 1 ? (uint8_t)0 : garbage_byte(i);
    size_t full = s.len;
    seg_write(&s);

    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, victim - 1);
    cr_assert_eq(info.torn_bytes, full - at, "%s: torn_bytes %" PRIu64, ctx, info.torn_bytes);
    cr_assert_eq(seg_size(1), (long long)at, "%s", ctx);
    append_ok(w, 2, 8, 1);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, victim + 1);
    cr_assert_eq(info.torn_bytes, 0, "%s", ctx);
    wal_close(w);
    replay_free(&r);
}

Test(wal, torn_batch_with_damaged_first_record_is_a_torn_tail)
{
    /* Power loss wrote the pages of batch [4,5,6] out of order: record 4 is
     * damaged, 5 and 6 are intact. Those belong to the same unfinished batch,
     * so this is a torn tail, not corruption: recovery keeps 1-3 and cuts
     * from record 4 on. */
    for (size_t b = 0; b < WAL_REC_HDR_SIZE + 30; b++) {
        snprintf(ctx, sizeof ctx, "record 4 byte %zu flipped", b);
        torn_batch_case(4, b, 0);
    }
    snprintf(ctx, sizeof ctx, "record 4 zeroed");
    torn_batch_case(4, 0, 1);
    snprintf(ctx, sizeof ctx, "record 4 garbage");
    torn_batch_case(4, 0, 2);
}

Test(wal, torn_batch_with_damaged_middle_record_keeps_the_intact_prefix)
{
    /* Record 5 of batch [4,5,6] is damaged, 6 intact: a torn tail starting
     * at 5; record 4 is whole and stays. */
    for (size_t b = 0; b < WAL_REC_HDR_SIZE + 30; b += 5) {
        snprintf(ctx, sizeof ctx, "record 5 byte %zu flipped", b);
        torn_batch_case(5, b, 0);
    }
    snprintf(ctx, sizeof ctx, "record 5 zeroed");
    torn_batch_case(5, 0, 1);
}

/* ==== corruption ==== */

/* Asserts that opening the log fails with `want`, that err names segment
 * `first` (and `offset N:` when off is not SIZE_MAX), and that no file was
 * created, deleted or resized. */
static void expect_refused(int want, uint64_t first, size_t off)
{
    char before[4096], after[4096], err[512], path[512];
    listing(before, sizeof before);
    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w;
    int rc = try_open(&o, 0, &r, &w, &info, err, sizeof err);
    replay_free(&r);
    bool opened = w != NULL;
    wal_close(w); /* NULL unless the open wrongly succeeded */
    cr_assert_eq(rc, want, "%s: wal_open returned %d (%s), want %d (%s); err: %s", ctx, rc,
                 lkv_strerror(rc), want, lkv_strerror(want), err);
    cr_assert(!opened, "%s: a failed open handed out a log", ctx);
    seg_file(first, path, sizeof path);
    cr_assert_not_null(strstr(err, path), "%s: error does not name %s: %s", ctx, path, err);
    if (off != SIZE_MAX) {
        char o_text[64];
        snprintf(o_text, sizeof o_text, "offset %zu:", off);
        cr_assert_not_null(strstr(err, o_text), "%s: error does not say '%s': %s", ctx, o_text,
                           err);
    }
    listing(after, sizeof after);
    cr_assert_str_eq(after, before, "%s: recovery changed the directory", ctx);
}

Test(wal, damaged_record_before_a_later_batch_is_corruption)
{
    /* Batches [1,2,3], [4], [5,6]. Record 2 or 4 is damaged, and a batch that
     * was only written after it was durable follows: acknowledged data is
     * lost, so recovery must refuse the log, name the file and the record's
     * offset, and leave every file as it was. */
    for (uint64_t victim = 2; victim <= 4; victim += 2) {
        for (size_t b = 0; b < WAL_REC_HDR_SIZE + 25; b++) {
            snprintf(ctx, sizeof ctx, "record %" PRIu64 " byte %zu flipped", victim, b);
            clear_dir();
            struct seg s;
            seg_begin(&s, 1);
            size_t p1 = seg_batch(&s, 1, 3, 25, 0);
            size_t p4 = seg_batch(&s, 4, 1, 25, 0);
            seg_batch(&s, 5, 2, 25, 0);
            size_t at = victim == 2 ? p1 + WAL_REC_HDR_SIZE + 25 : p4;
            s.p[at + b] ^= 0xFF;
            seg_write(&s);
            expect_refused(LKV_ECORRUPT, 1, at);
        }
    }
}

Test(wal, damaged_record_in_a_non_last_segment_is_corruption)
{
    /* Segment 1 holds [1,2] and [3], segment 4 holds [4,5]. Any damage to
     * record 3, even what looks like a torn tail, is corruption: segment 4
     * was only started after segment 1 was complete. */
    for (int how = 0; how < 3; how++) {
        snprintf(ctx, sizeof ctx, "record 3 %s", how == 0 ? "flipped" : how == 1 ? "zeroed" : "cut");
        clear_dir();
        struct seg s;
        seg_begin(&s, 1);
        seg_batch(&s, 1, 2, 20, 0);
        size_t p3 = seg_batch(&s, 3, 1, 20, 0);
        if (how == 0)
            s.p[p3 + 40] ^= 0x01;
        if (how == 1)
            memset(s.p + p3, 0, s.len - p3);
        if (how == 2)
            s.len = p3 + 30;
        seg_write(&s);
        seg_begin(&s, 4);
        seg_batch(&s, 4, 2, 20, 0);
        seg_write(&s);
        /* zeros read as unused preallocated space, so the damage shows as
         * segment 4 starting past the end of segment 1 */
        if (how == 1)
            expect_refused(LKV_ECORRUPT, 4, SIZE_MAX);
        else
            expect_refused(LKV_ECORRUPT, 1, p3);
    }
}

/* ==== segment headers and gaps ==== */

Test(wal, torn_segment_creation_is_removed)
{
    /* A crash while segment 4 was being created (file empty, header partly
     * written, zeros from preallocation, or a damaged header) with no record
     * after it: recovery deletes segment 4 and the log ends at 3. */
    uint8_t good[WAL_SEG_HDR_SIZE];
    wal_seg_hdr_encode(good, 4);
    static uint8_t buf[4096];
    for (int v = 0; v < 6; v++) {
        size_t len = 0;
        memset(buf, 0, sizeof buf);
        switch (v) {
        case 0: len = 0; break;
        case 1: memcpy(buf, good, 17); len = 17; break;
        case 2: len = WAL_SEG_HDR_SIZE; break;
        case 3: len = sizeof buf; break;
        case 4: memcpy(buf, good, sizeof good); buf[20] ^= 0x10; len = sizeof good; break;
        case 5:
            memcpy(buf, good, sizeof good);
            buf[29] ^= 0x01;
            len = sizeof buf;
            break;
        }
        snprintf(ctx, sizeof ctx, "segment 4 variant %d (%zu bytes)", v, len);
        clear_dir();
        memset(model, 0, sizeof model);
        struct seg s;
        seg_begin(&s, 1);
        seg_batch(&s, 1, 3, 20, 0);
        seg_write(&s);
        write_raw(4, buf, len);

        struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
        struct replay r = {0};
        struct wal_recovery info;
        struct wal *w = open_ok(&o, 0, &r, &info);
        expect_records(&r, 1, 3);
        cr_assert_eq(seg_size(4), -1, "%s: segment 4 was not removed", ctx);
        cr_assert_eq(info.segments, 1, "%s", ctx);
        cr_assert_eq(wal_last_index(w), 3, "%s", ctx);
        append_ok(w, 1, 20, 1);
        wal_close(w);
        w = open_ok(&o, 0, &r, &info);
        expect_records(&r, 1, 4);
        wal_close(w);
        replay_free(&r);
    }
}

Test(wal, torn_creation_of_the_only_segment_is_removed)
{
    /* The very first segment was never completed: the log is empty. */
    uint8_t zeros[100] = {0};
    write_raw(1, zeros, sizeof zeros);
    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(count_segments(), 0);
    cr_assert_eq(wal_last_index(w), 0);
    append_ok(w, 2, 5, 0);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 2);
    wal_close(w);
    replay_free(&r);
}

/* Segment 1 holds [1,2,3]; segment 4 a damaged header then `batches`
 * batches: [4,5] and, if asked, [6]. */
static void damaged_header_case(int how, int batches)
{
    clear_dir();
    struct seg s;
    seg_begin(&s, 1);
    seg_batch(&s, 1, 3, 20, 0);
    seg_write(&s);
    seg_begin(&s, 4);
    seg_batch(&s, 4, 2, 20, 0);
    if (batches > 1)
        seg_batch(&s, 6, 1, 20, 0);
    if (how == 0)
        s.p[18] ^= 0x04; /* first index: crc mismatch */
    if (how == 1)
        memset(s.p, 0, WAL_SEG_HDR_SIZE);
    if (how == 2)
        s.p[2] = 'X'; /* magic */
    seg_write(&s);
    expect_refused(LKV_ECORRUPT, 4, 0);
}

Test(wal, damaged_segment_header_before_one_batch_is_corruption)
{
    /* A segment's header is durable before any record goes into it, so a
     * damaged header followed by a valid record is damage to durable data,
     * not a crash during creation: refuse, delete nothing. */
    for (int how = 0; how < 3; how++) {
        snprintf(ctx, sizeof ctx, "header damage %d, one batch after it", how);
        damaged_header_case(how, 1);
    }
}

Test(wal, damaged_segment_header_before_two_batches_is_corruption)
{
    /* As above, with a second batch after the first. */
    for (int how = 0; how < 3; how++) {
        snprintf(ctx, sizeof ctx, "header damage %d, two batches after it", how);
        damaged_header_case(how, 2);
    }
}

Test(wal, damaged_header_of_a_non_last_segment_is_corruption)
{
    /* Segment 1's header is damaged (with its records after it, or as an
     * unfinished creation with none) and segment 4 follows: only the last
     * segment can be a crash's leftover, so refuse and delete nothing. */
    for (int with_records = 0; with_records < 2; with_records++) {
        snprintf(ctx, sizeof ctx, "segment 1 %s records", with_records ? "with" : "without");
        clear_dir();
        struct seg s;
        seg_begin(&s, 1);
        if (with_records)
            seg_batch(&s, 1, 3, 20, 0);
        s.p[9] ^= 0x01;
        seg_write(&s);
        seg_begin(&s, 4);
        seg_batch(&s, 4, 1, 20, 0);
        seg_write(&s);
        expect_refused(LKV_ECORRUPT, 1, 0);
    }
}

/* A segment header written by a future format version: intact crc. */
static void set_version(uint8_t *hdr, uint32_t version)
{
    put_le32(hdr + 8, version);
    put_le32(hdr + 28, crc32c(hdr, 28));
}

Test(wal, unsupported_version_is_eformat_and_nothing_is_deleted)
{
    /* A newer program's segment is refused with LKV_EFORMAT, never mistaken
     * for a torn creation and deleted, with or without records in it. */
    for (int with_records = 0; with_records < 2; with_records++) {
        snprintf(ctx, sizeof ctx, "version 2 segment %s records", with_records ? "with" : "without");
        clear_dir();
        struct seg s;
        seg_begin(&s, 1);
        seg_batch(&s, 1, 3, 20, 0);
        seg_write(&s);
        seg_begin(&s, 4);
        if (with_records)
            seg_batch(&s, 4, 2, 20, 0);
        set_version(s.p, 2);
        seg_write(&s);
        expect_refused(LKV_EFORMAT, 4, SIZE_MAX);
    }
    snprintf(ctx, sizeof ctx, "version 2 in the first of two segments");
    clear_dir();
    struct seg s;
    seg_begin(&s, 1);
    seg_batch(&s, 1, 3, 20, 0);
    set_version(s.p, 2);
    seg_write(&s);
    seg_begin(&s, 4);
    seg_batch(&s, 4, 2, 20, 0);
    seg_write(&s);
    expect_refused(LKV_EFORMAT, 1, SIZE_MAX);
}

/* Segments 1 [1-3], 4 [4-6], 7 [7-9]. */
static void three_hand_segments(void)
{
    for (uint64_t first = 1; first <= 7; first += 3) {
        struct seg s;
        seg_begin(&s, first);
        seg_batch(&s, first, 3, 20, 0);
        seg_write(&s);
    }
}

Test(wal, missing_middle_segment_is_corruption)
{
    /* Segment 4 is gone: records 4-6 are missing between 3 and 7. */
    three_hand_segments();
    char path[512];
    seg_file(4, path, sizeof path);
    cr_assert_eq(unlink(path), 0);
    expect_refused(LKV_ECORRUPT, 7, SIZE_MAX);
}

Test(wal, missing_first_segment_is_corruption)
{
    /* Segment 1 is gone and no snapshot covers 1-3. */
    three_hand_segments();
    char path[512];
    seg_file(1, path, sizeof path);
    cr_assert_eq(unlink(path), 0);
    expect_refused(LKV_ECORRUPT, 4, SIZE_MAX);
}

Test(wal, header_disagreeing_with_the_file_name_is_corruption)
{
    /* log-...4.seg holds records 4-6 but its (intact) header says 5: the
     * file was renamed or mixed up, refuse it. */
    three_hand_segments();
    struct seg s;
    seg_begin(&s, 4);
    seg_batch(&s, 4, 3, 20, 0);
    s.p[16] = 5;
    put_le32(s.p + 28, crc32c(s.p, 28));
    seg_write(&s);
    expect_refused(LKV_ECORRUPT, 4, 16);
}

Test(wal, record_out_of_sequence_is_corruption)
{
    /* Intact records whose indexes skip (1, 2, 4) or repeat (1, 2, 2): the
     * log cannot be trusted, refuse it and name the out-of-place record. */
    for (int repeat = 0; repeat < 2; repeat++) {
        snprintf(ctx, sizeof ctx, "third record %s", repeat ? "repeats 2" : "skips to 4");
        clear_dir();
        struct seg s;
        seg_begin(&s, 1);
        seg_batch(&s, 1, 2, 20, 0);
        size_t at = seg_batch(&s, repeat ? 2 : 4, 1, 20, 0);
        seg_write(&s);
        expect_refused(LKV_ECORRUPT, 1, at);
    }
}

/* ==== suffix truncation ==== */

Test(wal, truncate_suffix_in_the_middle_of_a_segment)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    append_ok(w, 2, 10, 0);
    append_ok(w, 3, 30, 0);
    append_ok(w, 2, 0, 0);
    cr_assert_eq(wal_truncate_suffix(w, 4), 0); /* inside batch [3,4,5] */
    cr_assert_eq(wal_last_index(w), 3);
    long long want = WAL_SEG_HDR_SIZE + 2 * (WAL_REC_HDR_SIZE + 10) + WAL_REC_HDR_SIZE + 30;
    cr_assert_eq(seg_size(1), want);
    cr_assert_eq(wal_size_bytes(w), (uint64_t)want);
    append_ok(w, 2, 7, 1);
    wal_close(w);

    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 5);
    cr_assert_eq(info.torn_bytes, 0);
    wal_close(w);
    replay_free(&r);
}

Test(wal, truncate_suffix_past_the_end_changes_nothing)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    append_ok(w, 3, 10, 0);
    long long size = seg_size(1);
    cr_assert_eq(wal_truncate_suffix(w, 4), 0);
    cr_assert_eq(wal_truncate_suffix(w, 50), 0);
    cr_assert_eq(wal_last_index(w), 3);
    cr_assert_eq(seg_size(1), size);
    append_ok(w, 1, 10, 0);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 4);
    wal_close(w);
    replay_free(&r);
}

/* Ten records in segments 1, 4, 7, 10; truncate from `from`; append two
 * records; reopen. */
static void truncate_across(uint64_t from)
{
    snprintf(ctx, sizeof ctx, "truncate_suffix(%" PRIu64 ")", from);
    struct wal_options o = opts_of(200, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    for (int i = 0; i < 10; i++)
        append_ok(w, 1, 24, 0);
    int rc = wal_truncate_suffix(w, from);
    cr_assert_eq(rc, 0, "%s returned %d (%s)", ctx, rc, lkv_strerror(rc));
    cr_assert_eq(wal_last_index(w), from - 1);
    /* no segment may start past the cut, and the one holding from-1 ends at it */
    for (uint64_t first = 1; first <= 10; first += 3) {
        if (first > from)
            cr_assert_eq(seg_size(first), -1, "%s: segment %" PRIu64 " survived", ctx, first);
        if (first == from)
            cr_assert(seg_size(first) == -1 || seg_size(first) == WAL_SEG_HDR_SIZE,
                      "%s: segment %" PRIu64 " still holds records", ctx, first);
    }
    uint64_t holder = (from - 2) / 3 * 3 + 1;
    long long want = WAL_SEG_HDR_SIZE + (long long)(from - holder) * 56;
    cr_assert_eq(seg_size(holder), want, "%s: segment %" PRIu64 " is %lld bytes, want %lld", ctx,
                 holder, seg_size(holder), want);
    append_ok(w, 2, 24, 1);
    wal_close(w);

    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, from + 1);
    cr_assert_eq(info.torn_bytes, 0, "%s", ctx);
    wal_close(w);
    replay_free(&r);
}

Test(wal, truncate_suffix_across_several_segments)
{
    /* from 5 (inside segment 4, removes 7 and 10) and from 2 (inside segment 1) */
    truncate_across(5);
    clear_dir();
    memset(model, 0, sizeof model);
    truncate_across(2);
}

Test(wal, truncate_suffix_at_a_segment_first_index)
{
    /* from 7 is exactly where segment 7 begins: 1-6 stay, 7-10 go, and the
     * next append gets index 7. Same for 4 and 10. */
    const uint64_t froms[] = {7, 4, 10};
    for (size_t i = 0; i < 3; i++) {
        clear_dir();
        memset(model, 0, sizeof model);
        truncate_across(froms[i]);
    }
}

/* ==== injected faults ==== */

Test(wal, failed_fdatasync_is_fatal_and_never_retried)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, &fio);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    append_ok(w, 2, 10, 0);
    arm(OP_FDATASYNC, 0, 1, EIO);
    uint64_t first = 0;
    cr_assert_eq(try_append(w, 1, 10, 0, 1, &first), LKV_EFATAL);
    cr_assert_eq(faults[OP_FDATASYNC].count, 0, "the injected failure was not reached");
    int syncs = faults[OP_FDATASYNC].calls, writes = faults[OP_PWRITEV].calls;

    /* the fault is gone, but the log must stay refused */
    cr_assert_eq(try_append(w, 1, 10, 0, 1, &first), LKV_EFATAL);
    cr_assert_eq(try_append(w, 3, 10, 0, 1, &first), LKV_EFATAL);
    cr_assert_eq(wal_rotate(w), LKV_EFATAL);
    cr_assert_eq(wal_truncate_suffix(w, 2), LKV_EFATAL);
    cr_assert_eq(faults[OP_FDATASYNC].calls, syncs, "fdatasync was retried");
    cr_assert_eq(faults[OP_PWRITEV].calls, writes, "a refused log was written to");
    cr_assert_eq(wal_last_index(w), 2);
    wal_close(w);
    replay_free(&r);
}

Test(wal, failed_fdatasync_while_creating_a_segment_is_fatal)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, &fio);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    /* the first fdatasync is the new segment's header: it must come before
     * any record is written into the segment */
    arm(OP_FDATASYNC, 0, 1, EIO);
    uint64_t first = 0;
    cr_assert_eq(try_append(w, 1, 10, 0, 1, &first), LKV_EFATAL);
    cr_assert_eq(faults[OP_PWRITEV].calls, 0, "records written before the segment was durable");
    cr_assert_eq(try_append(w, 1, 10, 0, 1, &first), LKV_EFATAL);
    cr_assert_eq(faults[OP_FDATASYNC].calls, 1, "fdatasync was retried");
    cr_assert_eq(wal_last_index(w), 0);
    wal_close(w);
    replay_free(&r);
}

Test(wal, failed_pwritev_with_eio_is_fatal)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, &fio);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    append_ok(w, 1, 10, 0);
    arm(OP_PWRITEV, 0, 1, EIO);
    uint64_t first = 0;
    cr_assert_eq(try_append(w, 1, 10, 0, 1, &first), LKV_EFATAL);
    cr_assert_eq(try_append(w, 1, 10, 0, 1, &first), LKV_EFATAL);
    wal_close(w);
    replay_free(&r);
}

/* Records 1-3 are durable; a 3-record batch of 100-byte payloads fails with
 * ENOSPC (after `short_bytes` of it were written, if nonzero). */
static void enospc_case(size_t short_bytes)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, &fio);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    append_ok(w, 3, 40, 0);
    long long before = seg_size(1);

    pwritev_short = short_bytes;
    arm(OP_PWRITEV, short_bytes ? 1 : 0, -1, ENOSPC);
    uint64_t first = 0;
    cr_assert_eq(try_append(w, 3, 100, 9, 1, &first), LKV_ENOSPC);
    cr_assert_eq(try_append(w, 1, 100, 9, 1, &first), LKV_ENOSPC, "still full");
    cr_assert_eq(wal_last_index(w), 3);
    cr_assert_eq(seg_size(1), before, "the failed batch's bytes were left in the file");
    cr_assert_eq(wal_size_bytes(w), (uint64_t)before);
    disarm(OP_PWRITEV);

    /* a crash now: the failed batch must not come back */
    struct wal_options plain = opts_of(BIG_SEGMENT, false, NULL);
    struct wal *w2 = open_ok(&plain, 0, &r, &info);
    expect_records(&r, 1, 3);
    cr_assert_eq(info.torn_bytes, 0);
    wal_close(w2);

    /* space is back: the same log object appends again, at index 4 */
    append_ok(w, 1, 10, 1);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 4);
    cr_assert_eq(info.torn_bytes, 0);
    wal_close(w);
    replay_free(&r);
}

Test(wal, pwritev_enospc_leaves_no_trace)
{
    enospc_case(0);
}

Test(wal, pwritev_enospc_after_a_short_write_leaves_no_trace)
{
    /* the first record (132 bytes) and half of the second reached the file */
    enospc_case(WAL_REC_HDR_SIZE + 100 + 66);
}

Test(wal, fallocate_enospc_on_a_new_segment_is_recoverable)
{
    /* 3 records of 56 bytes fill a 232-byte segment; the 4th needs a new one */
    struct wal_options o = opts_of(232, true, &fio);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    append_ok(w, 3, 24, 0);
    arm(OP_FALLOCATE, 0, -1, ENOSPC);
    uint64_t first = 0;
    cr_assert_eq(try_append(w, 1, 24, 9, 1, &first), LKV_ENOSPC);
    cr_assert_eq(try_append(w, 1, 24, 9, 1, &first), LKV_ENOSPC);
    cr_assert_gt(faults[OP_FALLOCATE].calls, 0, "fallocate was never called");
    cr_assert_eq(seg_size(4), -1, "the failed segment was left behind");
    cr_assert_eq(count_segments(), 1);
    cr_assert_eq(wal_last_index(w), 3);
    disarm(OP_FALLOCATE);

    append_ok(w, 1, 24, 1);
    cr_assert_eq(seg_size(4), 232);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 4);
    wal_close(w);
    replay_free(&r);
}

Test(wal, segment_header_write_enospc_is_recoverable)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, &fio);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    arm(OP_PWRITE, 0, 1, ENOSPC);
    uint64_t first = 0;
    cr_assert_eq(try_append(w, 1, 24, 9, 1, &first), LKV_ENOSPC);
    cr_assert_eq(count_segments(), 0);
    append_ok(w, 2, 24, 0);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 2);
    wal_close(w);
    replay_free(&r);
}

Test(wal, read_error_during_open_is_eio_and_deletes_nothing)
{
    /* Segments 1, 4 (and a torn tail in 7 that must not be cut either) */
    three_hand_segments();
    char path[512];
    seg_file(7, path, sizeof path);
    cr_assert_eq(truncate(path, seg_size(7) - 10), 0);
    struct wal_options o = opts_of(BIG_SEGMENT, false, &fio);
    for (int skip = 0; skip < 3; skip++) {
        snprintf(ctx, sizeof ctx, "pread fails after %d good reads", skip);
        char before[4096], after[4096], err[512];
        listing(before, sizeof before);
        arm(OP_PREAD, skip, -1, EIO);
        struct replay r = {0};
        struct wal_recovery info;
        struct wal *w;
        int rc = try_open(&o, 0, &r, &w, &info, err, sizeof err);
        cr_assert_eq(rc, LKV_EIO, "%s: got %d (%s): %s", ctx, rc, lkv_strerror(rc), err);
        cr_assert_null(w);
        cr_assert_eq(r.n, 3 * (size_t)skip, "%s", ctx);
        char want[512];
        seg_file(1 + 3 * (uint64_t)skip, want, sizeof want);
        cr_assert_not_null(strstr(err, want), "%s: %s", ctx, err);
        listing(after, sizeof after);
        cr_assert_str_eq(after, before, "%s", ctx);
        disarm(OP_PREAD);
        replay_free(&r);
    }
}

/* ==== the replay callback ==== */

Test(wal, callback_error_stops_replay_and_is_returned)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    append_ok(w, 3, 10, 0);
    append_ok(w, 3, 10, 0);
    wal_close(w);
    /* and a torn tail the failed open must not cut */
    char path[512];
    seg_file(1, path, sizeof path);
    cr_assert_eq(truncate(path, seg_size(1) - 5), 0);

    const int codes[] = {42, LKV_ENOMEM};
    for (size_t i = 0; i < 2; i++) {
        char before[4096], after[4096], err[512];
        listing(before, sizeof before);
        r.stop_at = 4;
        r.stop_rc = codes[i];
        int rc = try_open(&o, 0, &r, &w, &info, err, sizeof err);
        cr_assert_eq(rc, codes[i], "wal_open returned %d, want %d", rc, codes[i]);
        cr_assert_null(w);
        cr_assert_eq(r.calls, 4, "the callback was called %zu times, want 4", r.calls);
        listing(after, sizeof after);
        cr_assert_str_eq(after, before);
    }
    replay_free(&r);
}

/* ==== the Raft API: explicit indexes and terms, terms and records read back ==== */

#define MAX_BATCH 64

/* A batch for wal_append_at: records first.. with `len`-byte payloads made
 * from (index, salt), all at `term`; tests may edit e[] before appending. */
struct batch {
    size_t n, len;
    uint32_t salt;
    struct wal_entry e[MAX_BATCH];
    struct iovec iov[MAX_BATCH];
    uint8_t *bufs[MAX_BATCH];
};

static void batch_make(struct batch *b, uint64_t first, size_t n, size_t len, uint32_t salt,
                       uint64_t term)
{
    cr_assert_leq(n, MAX_BATCH);
    b->n = n;
    b->len = len;
    b->salt = salt;
    for (size_t i = 0; i < n; i++) {
        uint64_t idx = first + i;
        b->bufs[i] = malloc(len ? len : 1);
        cr_assert_not_null(b->bufs[i]);
        fill(b->bufs[i], len, idx, salt);
        b->iov[i] = (struct iovec){b->bufs[i], len};
        b->e[i] = (struct wal_entry){
            .type = type_of(idx), .term = term, .iov = &b->iov[i], .iovcnt = 1, .index = idx};
    }
}

static void batch_free(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->bufs[i]);
    b->n = 0;
}

/* wal_append_at of the batch; the model learns it only if it succeeds. */
static int batch_append_at(struct wal *w, struct batch *b)
{
    int rc = wal_append_at(w, b->e, b->n);
    for (size_t i = 0; rc == 0 && i < b->n; i++)
        model_set_term(b->e[i].index, b->len, b->salt, b->e[i].term);
    return rc;
}

static void append_at_ok(struct wal *w, uint64_t first, size_t n, size_t len, uint32_t salt,
                         uint64_t term)
{
    struct batch b;
    batch_make(&b, first, n, len, salt, term);
    int rc = batch_append_at(w, &b);
    batch_free(&b);
    cr_assert_eq(rc, 0, "%s: wal_append_at(%" PRIu64 ", n=%zu, term %" PRIu64 ") returned %d (%s)",
                 ctx, first, n, term, rc, lkv_strerror(rc));
    cr_assert_eq(wal_last_index(w), first + n - 1, "%s", ctx);
}

/* Asserts that wal_term_of agrees with the model for every record held and
 * refuses the indexes just outside them. */
static void expect_terms(const struct wal *w)
{
    uint64_t first = wal_first_index(w), last = wal_last_index(w), t = 0;
    cr_assert_leq(first, last + 1, "%s: first index %" PRIu64 " past last %" PRIu64, ctx, first,
                  last);
    for (uint64_t i = first; i <= last; i++) {
        int rc = wal_term_of(w, i, &t);
        cr_assert_eq(rc, 0, "%s: wal_term_of(%" PRIu64 ") returned %d (%s)", ctx, i, rc,
                     lkv_strerror(rc));
        cr_assert(i < MAX_INDEX && model[i].set, "%s: no model for index %" PRIu64, ctx, i);
        cr_assert_eq(t, model[i].term, "%s: term of %" PRIu64 " is %" PRIu64 ", want %" PRIu64, ctx,
                     i, t, model[i].term);
    }
    cr_assert_eq(wal_term_of(w, first - 1, &t), LKV_ECOMPACTED, "%s: index before first %" PRIu64,
                 ctx, first);
    cr_assert_eq(wal_term_of(w, 0, &t), LKV_ECOMPACTED, "%s", ctx);
    cr_assert_eq(wal_term_of(w, last + 1, &t), LKV_EUNAVAILABLE, "%s: index after last %" PRIu64,
                 ctx, last);
    cr_assert_eq(wal_term_of(w, last + 1000, &t), LKV_EUNAVAILABLE, "%s", ctx);
}

/* wal_read(lo, hi, max_bytes) must return `want` and hand over exactly the
 * records lo .. lo+want-1 as the model has them. */
static void expect_read(struct wal *w, uint64_t lo, uint64_t hi, size_t max_bytes, int want)
{
    struct replay r = {0};
    int rc = wal_read(w, lo, hi, max_bytes, collect_cb, &r);
    cr_assert_eq(rc, want, "%s: wal_read(%" PRIu64 ", %" PRIu64 ", %zu) returned %d (%s), want %d",
                 ctx, lo, hi, max_bytes, rc, rc < 0 ? lkv_strerror(rc) : "records", want);
    expect_records(&r, lo, want > 0 ? (size_t)want : 0);
    replay_free(&r);
}

/* Reads every record held back in one call. */
static void expect_read_all(struct wal *w)
{
    uint64_t first = wal_first_index(w), last = wal_last_index(w);
    if (first <= last)
        expect_read(w, first, last + 1, SIZE_MAX, (int)(last - first + 1));
}

/* XORs one byte of segment file `first` at `off`. */
static void flip_byte(uint64_t first, off_t off, uint8_t mask)
{
    char path[512];
    seg_file(first, path, sizeof path);
    int fd = open(path, O_RDWR);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    uint8_t b;
    cr_assert_eq(pread(fd, &b, 1, off), 1);
    b ^= mask;
    cr_assert_eq(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

/* Ten single-record appends of 24-byte payloads (56-byte records) into
 * 200-byte segments: segments 1, 4, 7, 10, terms 1 + index / 4. */
static struct wal *ten_in_four_segments(const struct wal_options *o, struct replay *r)
{
    struct wal_recovery info;
    struct wal *w = open_ok(o, 0, r, &info);
    for (int i = 0; i < 10; i++)
        append_ok(w, 1, 24, 0);
    cr_assert_eq(count_segments(), 4);
    return w;
}

Test(wal, term_of_and_first_index_follow_appends_across_segments)
{
    struct wal_options o = opts_of(200, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    cr_assert_eq(wal_first_index(w), 1, "an empty log's first index is last + 1");
    snprintf(ctx, sizeof ctx, "empty log");
    expect_terms(w);
    wal_close(w);

    w = ten_in_four_segments(&o, &r);
    snprintf(ctx, sizeof ctx, "after appends");
    cr_assert_eq(wal_first_index(w), 1);
    expect_terms(w);
    wal_close(w);

    /* rebuilt by the recovery scan, whole */
    w = open_ok(&o, 0, &r, &info);
    snprintf(ctx, sizeof ctx, "reopened");
    cr_assert_eq(wal_first_index(w), 1);
    expect_terms(w);
    wal_close(w);

    /* a snapshot at 5: segment 1 goes, segment 4 still holds 6 and stays whole */
    w = open_ok(&o, 5, &r, &info);
    snprintf(ctx, sizeof ctx, "reopened after 5");
    expect_records(&r, 6, 5);
    cr_assert_eq(wal_first_index(w), 4);
    expect_terms(w);
    wal_close(w);
    replay_free(&r);
}

Test(wal, term_of_after_truncate_drop_and_reset)
{
    struct wal_options o = opts_of(200, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = ten_in_four_segments(&o, &r);

    /* a new leader's entries from 5 on, at a higher term */
    snprintf(ctx, sizeof ctx, "truncated at 5");
    cr_assert_eq(wal_truncate_suffix(w, 5), 0);
    expect_terms(w);
    append_at_ok(w, 5, 3, 24, 1, 40);
    snprintf(ctx, sizeof ctx, "re-appended at 5");
    expect_terms(w);

    snprintf(ctx, sizeof ctx, "dropped up to 3");
    cr_assert_eq(wal_rotate(w), 0);
    cr_assert_eq(wal_drop_prefix(w, 3), 0);
    cr_assert_eq(wal_first_index(w), 4);
    expect_terms(w);
    wal_close(w);

    w = open_ok(&o, 3, &r, &info);
    snprintf(ctx, sizeof ctx, "reopened after 3");
    expect_records(&r, 4, 4);
    expect_terms(w);

    snprintf(ctx, sizeof ctx, "reset to 20");
    cr_assert_eq(wal_reset(w, 20), 0);
    cr_assert_eq(wal_first_index(w), 20);
    cr_assert_eq(wal_last_index(w), 19);
    expect_terms(w);
    append_at_ok(w, 20, 2, 24, 2, 41);
    expect_terms(w);
    wal_close(w);

    w = open_ok(&o, 19, &r, &info);
    snprintf(ctx, sizeof ctx, "reopened after the reset");
    expect_records(&r, 20, 2);
    expect_terms(w);
    wal_close(w);
    replay_free(&r);
}

Test(wal, read_returns_records_across_segment_boundaries)
{
    struct wal_options o = opts_of(200, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = ten_in_four_segments(&o, &r);
    /* straight after the appends, the last segment still being written */
    expect_read_all(w);
    expect_read(w, 2, 9, SIZE_MAX, 7);  /* starts and ends inside segments */
    expect_read(w, 4, 7, SIZE_MAX, 3);  /* exactly one segment */
    expect_read(w, 10, 11, SIZE_MAX, 1); /* only the segment appended to */
    expect_read(w, 6, 8, SIZE_MAX, 2);  /* the last of one and the first of the next */
    wal_close(w);

    w = open_ok(&o, 0, &r, &info);
    snprintf(ctx, sizeof ctx, "reopened");
    expect_read_all(w);
    /* records appended since the open are read from the open segment */
    append_ok(w, 1, 24, 0);
    append_ok(w, 2, 0, 0);
    expect_read(w, 9, 14, SIZE_MAX, 5);
    wal_close(w);
    replay_free(&r);
}

Test(wal, read_of_preallocated_segments_stops_at_the_records)
{
    /* the files are 232 bytes of which the last 32 are zeros */
    struct wal_options o = opts_of(232, true, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    for (int i = 0; i < 7; i++)
        append_ok(w, 1, 24, 0);
    cr_assert_eq(seg_size(7), 232);
    expect_read_all(w);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_read_all(w);
    expect_read(w, 7, 8, SIZE_MAX, 1);
    wal_close(w);
    replay_free(&r);
}

Test(wal, read_stops_at_max_bytes_but_returns_at_least_one_record)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    append_ok(w, 5, 100, 0); /* 1-5 */
    append_ok(w, 1, 0, 0);   /* 6, empty */
    append_ok(w, 1, 100, 0); /* 7 */
    expect_read(w, 1, 8, 0, 1);
    expect_read(w, 1, 8, 99, 1);
    expect_read(w, 1, 8, 100, 1);
    expect_read(w, 1, 8, 199, 1);
    expect_read(w, 1, 8, 200, 2);
    expect_read(w, 1, 8, 500, 6); /* the empty record 6 still fits */
    expect_read(w, 1, 8, 599, 6);
    expect_read(w, 1, 8, 600, 7);
    expect_read(w, 6, 8, 0, 1);
    expect_read(w, 6, 8, 99, 1);
    expect_read(w, 6, 8, 100, 2);
    expect_read(w, 3, 5, SIZE_MAX, 2); /* hi bounds it before the budget does */
    wal_close(w);
    replay_free(&r);
}

Test(wal, read_of_large_records_spans_several_preads)
{
    struct wal_options o = opts_of(4 * BIG_SEGMENT, false, &fio);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    append_ok(w, 6, 100 * 1024, 0);
    append_ok(w, 1, 700 * 1024, 0); /* one record larger than any read chunk */
    append_ok(w, 3, 10, 0);
    int before = faults[OP_PREAD].calls;
    expect_read_all(w);
    cr_assert_gt(faults[OP_PREAD].calls - before, 2, "1.3 MB read with %d preads",
                 faults[OP_PREAD].calls - before);
    expect_read(w, 5, 11, 900 * 1024 - 1, 2);
    expect_read(w, 5, 11, 900 * 1024, 3);
    expect_read(w, 7, 11, 10, 1);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_read_all(w);
    wal_close(w);
    replay_free(&r);
}

Test(wal, read_refuses_ranges_outside_the_log)
{
    struct wal_options o = opts_of(200, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    expect_read(w, 1, 2, SIZE_MAX, LKV_EUNAVAILABLE); /* empty log */
    wal_close(w);

    w = ten_in_four_segments(&o, &r);
    expect_read(w, 0, 3, SIZE_MAX, LKV_ECOMPACTED);
    expect_read(w, 1, 12, SIZE_MAX, LKV_EUNAVAILABLE);
    expect_read(w, 11, 12, SIZE_MAX, LKV_EUNAVAILABLE);
    expect_read(w, 5, 5, SIZE_MAX, LKV_EINVAL);
    expect_read(w, 5, 4, SIZE_MAX, LKV_EINVAL);
    cr_assert_eq(wal_rotate(w), 0);
    cr_assert_eq(wal_drop_prefix(w, 6), 0);
    expect_read(w, 6, 8, SIZE_MAX, LKV_ECOMPACTED);
    expect_read(w, 7, 11, SIZE_MAX, 4);
    cr_assert_eq(wal_drop_prefix(w, 10), 0); /* rotated: nothing left */
    cr_assert_eq(count_segments(), 0);
    expect_read(w, 10, 11, SIZE_MAX, LKV_ECOMPACTED);
    expect_read(w, 11, 12, SIZE_MAX, LKV_EUNAVAILABLE);
    wal_close(w);
    replay_free(&r);
}

/* Offset of record `index` in segment `first` of ten_in_four_segments. */
static off_t ten_offset(uint64_t first, uint64_t index)
{
    return (off_t)(WAL_SEG_HDR_SIZE + (index - first) * 56);
}

Test(wal, read_back_of_a_damaged_record_is_corrupt)
{
    /* A byte flipped on disk after the append (payload or header, in a
     * closed segment or the one being appended to): reading it back must
     * fail the crc check, after handing over the records before it. */
    struct { uint64_t seg, index; off_t at; const char *what; } cases[] = {
        {4, 5, 32 + 7, "payload of 5 (closed segment)"},
        {4, 5, 16, "index field of 5"},
        {4, 5, 4, "length field of 5"},
        {10, 10, 32 + 23, "payload of 10 (segment being appended to)"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        snprintf(ctx, sizeof ctx, "%s", cases[c].what);
        clear_dir();
        memset(model, 0, sizeof model);
        struct wal_options o = opts_of(200, false, NULL);
        struct replay r = {0};
        struct wal *w = ten_in_four_segments(&o, &r);
        flip_byte(cases[c].seg, ten_offset(cases[c].seg, cases[c].index) + cases[c].at, 0x20);
        uint64_t k = cases[c].index;
        int rc = wal_read(w, k - 1, 11, SIZE_MAX, collect_cb, &r);
        cr_assert_eq(rc, LKV_ECORRUPT, "%s: wal_read returned %d", ctx, rc);
        expect_records(&r, k - 1, 1);
        replay_clear(&r);
        rc = wal_read(w, k, k + 1, SIZE_MAX, collect_cb, &r);
        cr_assert_eq(rc, LKV_ECORRUPT, "%s: wal_read returned %d", ctx, rc);
        cr_assert_eq(r.n, 0);
        /* the rest reads as before */
        expect_read(w, 1, k, SIZE_MAX, (int)k - 1);
        if (k < 10)
            expect_read(w, k + 1, 11, SIZE_MAX, (int)(10 - k));
        wal_close(w);
        replay_free(&r);
    }
}

Test(wal, read_failing_with_eio_is_eio_and_the_log_goes_on)
{
    struct wal_options o = opts_of(200, false, &fio);
    struct replay r = {0};
    struct wal *w = ten_in_four_segments(&o, &r);
    for (int skip = 0; skip < 3; skip++) {
        snprintf(ctx, sizeof ctx, "pread fails after %d good ones", skip);
        arm(OP_PREAD, skip, 1, EIO);
        replay_clear(&r);
        int rc = wal_read(w, 1, 11, SIZE_MAX, collect_cb, &r);
        cr_assert_eq(rc, LKV_EIO, "%s: wal_read returned %d", ctx, rc);
        cr_assert_eq(faults[OP_PREAD].count, 0, "%s: the failure was not reached", ctx);
        /* one pread per segment: what came before the failed one was handed over */
        expect_records(&r, 1, 3 * (size_t)skip);
        disarm(OP_PREAD);
    }
    expect_read_all(w);
    append_ok(w, 1, 24, 0);
    expect_read(w, 10, 12, SIZE_MAX, 2);
    wal_close(w);
    replay_free(&r);
}

static int stop_at_third_cb(const struct wal_rec_hdr *h, const uint8_t *payload, void *arg)
{
    (void)h;
    (void)payload;
    int *calls = arg;
    return ++*calls == 3 ? LKV_ESHUTDOWN : 0;
}

Test(wal, read_callback_error_stops_the_read_and_is_returned)
{
    struct wal_options o = opts_of(200, false, NULL);
    struct replay r = {0};
    struct wal *w = ten_in_four_segments(&o, &r);
    int calls = 0;
    cr_assert_eq(wal_read(w, 2, 11, SIZE_MAX, stop_at_third_cb, &calls), LKV_ESHUTDOWN);
    cr_assert_eq(calls, 3);
    expect_read_all(w);
    wal_close(w);
    replay_free(&r);
}

Test(wal, append_at_rejects_gaps_and_falling_terms_without_changing_anything)
{
    struct wal_options o = opts_of(BIG_SEGMENT, false, &fio);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    append_at_ok(w, 1, 5, 10, 0, 3);

    struct { uint64_t first; size_t n; uint64_t term; int edit; const char *what; } bad[] = {
        {7, 2, 3, 0, "a gap: 7 after 5"},
        {5, 2, 3, 0, "an overlap: 5 again"},
        {1, 1, 3, 0, "index 1 again"},
        {6, 3, 3, 1, "second entry numbered 8"},
        {6, 3, 3, 2, "second entry numbered 6 again"},
        {6, 2, 2, 0, "term 2 after a record of term 3"},
        {6, 3, 4, 3, "terms 4, 3, 4 within the batch"},
        {6, 0, 3, 0, "no entries"},
        {6, 2, 3, 4, "an unknown record type"},
    };
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        snprintf(ctx, sizeof ctx, "%s", bad[c].what);
        char before[4096], after[4096];
        listing(before, sizeof before);
        int writes = faults[OP_PWRITEV].calls + faults[OP_PWRITE].calls;
        struct batch b;
        batch_make(&b, bad[c].first, bad[c].n ? bad[c].n : 1, 10, 9, bad[c].term);
        b.n = bad[c].n ? bad[c].n : 0;
        if (bad[c].edit == 1)
            b.e[1].index = 8;
        if (bad[c].edit == 2)
            b.e[1].index = 6;
        if (bad[c].edit == 3)
            b.e[1].term = 3;
        if (bad[c].edit == 4)
            b.e[1].type = 9;
        int rc = wal_append_at(w, b.e, b.n);
        b.n = bad[c].n ? bad[c].n : 1;
        batch_free(&b);
        cr_assert_eq(rc, LKV_EINVAL, "%s: wal_append_at returned %d (%s)", ctx, rc,
                     lkv_strerror(rc));
        cr_assert_eq(wal_last_index(w), 5, "%s", ctx);
        cr_assert_eq(faults[OP_PWRITEV].calls + faults[OP_PWRITE].calls, writes,
                     "%s: a refused batch was written", ctx);
        listing(after, sizeof after);
        cr_assert_str_eq(after, before, "%s: the files changed", ctx);
        expect_terms(w);
        expect_read_all(w);
    }

    snprintf(ctx, sizeof ctx, "valid batches after the refusals");
    append_at_ok(w, 6, 1, 10, 0, 3); /* the same term is fine */
    struct batch b;
    batch_make(&b, 7, 3, 10, 0, 5);
    b.e[2].term = 8; /* rising within the batch */
    cr_assert_eq(batch_append_at(w, &b), 0);
    batch_free(&b);
    expect_terms(w);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 9);
    expect_terms(w);
    wal_close(w);
    replay_free(&r);
}

Test(wal, append_at_after_the_legacy_append_continues_its_numbering)
{
    /* wal_append ignores e[].index and never checks terms; wal_append_at
     * then takes the next index and a term not below the last record's. */
    struct wal_options o = opts_of(BIG_SEGMENT, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    struct batch b;
    batch_make(&b, 100, 3, 10, 0, 7);
    b.e[1].term = 2; /* falling and badly numbered: wal_append does not care */
    uint64_t first = 0;
    cr_assert_eq(wal_append(w, b.e, 3, &first), 0);
    cr_assert_eq(first, 1);
    model_set_term(1, 10, 0, 7);
    model_set_term(2, 10, 0, 2);
    model_set_term(3, 10, 0, 7);
    batch_free(&b);
    /* its payloads were made for indexes 100.., so only the terms are checked here */
    expect_terms(w);
    batch_make(&b, 4, 1, 10, 0, 6);
    cr_assert_eq(batch_append_at(w, &b), LKV_EINVAL, "term 6 after a record of term 7");
    batch_free(&b);
    append_at_ok(w, 4, 2, 10, 0, 7);
    expect_terms(w);
    expect_read(w, 4, 6, SIZE_MAX, 2);
    wal_close(w);
    replay_free(&r);
}

Test(wal, truncate_then_append_at_the_truncated_index_and_reopen)
{
    /* A follower's entries 6-10 (term 1-3) conflict with a new leader's: cut
     * them, store the leader's 6-8 at term 9, and find exactly those again
     * after a restart. */
    const uint64_t froms[] = {6, 7, 4, 2};
    for (size_t c = 0; c < sizeof froms / sizeof froms[0]; c++) {
        uint64_t from = froms[c];
        snprintf(ctx, sizeof ctx, "truncate at %" PRIu64, from);
        clear_dir();
        memset(model, 0, sizeof model);
        struct wal_options o = opts_of(200, false, NULL);
        struct replay r = {0};
        struct wal_recovery info;
        struct wal *w = ten_in_four_segments(&o, &r);
        cr_assert_eq(wal_truncate_suffix(w, from), 0, "%s", ctx);
        cr_assert_eq(wal_last_index(w), from - 1);
        expect_terms(w);
        append_at_ok(w, from, 3, 24, 1, 9);
        expect_terms(w);
        expect_read_all(w);
        wal_close(w);

        w = open_ok(&o, 0, &r, &info);
        expect_records(&r, 1, from + 2);
        cr_assert_eq(info.torn_bytes, 0, "%s", ctx);
        expect_terms(w);
        expect_read_all(w);
        wal_close(w);
        replay_free(&r);
    }
}

Test(wal, truncate_at_a_term_boundary_allows_a_lower_term_after_it)
{
    /* A follower's uncommitted 6-10 at term 3 are replaced by a leader whose
     * entries from 6 have term 2 (Raft's Figure 7): after the cut the last
     * record's term is 1, so term 2 must be accepted. */
    struct wal_options o = opts_of(200, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    append_at_ok(w, 1, 5, 24, 0, 1);
    append_at_ok(w, 6, 5, 24, 0, 3);
    cr_assert_eq(wal_truncate_suffix(w, 6), 0);
    append_at_ok(w, 6, 2, 24, 1, 2);
    expect_terms(w);
    cr_assert_eq(wal_truncate_suffix(w, 7), 0);
    struct batch b;
    batch_make(&b, 7, 1, 24, 2, 1);
    cr_assert_eq(batch_append_at(w, &b), LKV_EINVAL, "term 1 after a record of term 2");
    batch_free(&b);
    append_at_ok(w, 7, 1, 24, 2, 2);
    expect_terms(w);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 7);
    expect_terms(w);
    wal_close(w);
    replay_free(&r);
}

Test(wal, truncate_from_the_first_index_empties_the_log_and_keeps_the_next_index)
{
    struct wal_options o = opts_of(200, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = ten_in_four_segments(&o, &r);
    snprintf(ctx, sizeof ctx, "whole log from 1");
    cr_assert_eq(wal_truncate_suffix(w, 1), 0);
    cr_assert_eq(wal_last_index(w), 0);
    cr_assert_eq(wal_first_index(w), 1);
    cr_assert_eq(wal_size_bytes(w), WAL_SEG_HDR_SIZE);
    cr_assert_eq(seg_size(1), WAL_SEG_HDR_SIZE);
    cr_assert_eq(count_segments(), 1);
    expect_terms(w);
    expect_read(w, 1, 2, SIZE_MAX, LKV_EUNAVAILABLE);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(wal_last_index(w), 0);
    append_at_ok(w, 1, 2, 24, 1, 5);
    wal_close(w);
    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 2);
    expect_terms(w);
    wal_close(w);

    /* A log whose first record is 7 (a snapshot at 6 dropped the rest). */
    snprintf(ctx, sizeof ctx, "whole log from 7");
    clear_dir();
    memset(model, 0, sizeof model);
    w = ten_in_four_segments(&o, &r);
    cr_assert_eq(wal_rotate(w), 0);
    cr_assert_eq(wal_drop_prefix(w, 6), 0);
    cr_assert_eq(wal_first_index(w), 7);
    char before[4096], after[4096];
    listing(before, sizeof before);
    cr_assert_eq(wal_truncate_suffix(w, 6), LKV_ECOMPACTED, "6 is before the first record");
    cr_assert_eq(wal_truncate_suffix(w, 1), LKV_ECOMPACTED);
    listing(after, sizeof after);
    cr_assert_str_eq(after, before);
    cr_assert_eq(wal_last_index(w), 10);
    cr_assert_eq(wal_truncate_suffix(w, 7), 0);
    cr_assert_eq(wal_last_index(w), 6);
    cr_assert_eq(wal_first_index(w), 7);
    cr_assert_eq(seg_size(10), -1);
    cr_assert_eq(seg_size(7), WAL_SEG_HDR_SIZE);
    expect_terms(w);
    wal_close(w);
    w = open_ok(&o, 6, &r, &info);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(wal_last_index(w), 6);
    cr_assert_eq(wal_first_index(w), 7);
    append_at_ok(w, 7, 4, 24, 1, 8);
    wal_close(w);
    w = open_ok(&o, 6, &r, &info);
    expect_records(&r, 7, 4);
    expect_terms(w);
    wal_close(w);
    replay_free(&r);
}

Test(wal, reset_drops_every_record_and_the_next_append_gets_next_index)
{
    struct wal_options o = opts_of(200, false, &fio);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = ten_in_four_segments(&o, &r);

    cr_assert_eq(wal_reset(w, 0), LKV_EINVAL);
    cr_assert_eq(count_segments(), 4);
    cr_assert_eq(wal_last_index(w), 10);

    /* ahead of the log: a snapshot at 99 from the leader */
    int dir_syncs = faults[OP_FSYNC].calls;
    cr_assert_eq(wal_reset(w, 100), 0);
    cr_assert_gt(faults[OP_FSYNC].calls, dir_syncs, "the deletions were not made durable");
    cr_assert_eq(count_segments(), 0);
    cr_assert_eq(wal_first_index(w), 100);
    cr_assert_eq(wal_last_index(w), 99);
    cr_assert_eq(wal_size_bytes(w), 0);
    snprintf(ctx, sizeof ctx, "reset to 100");
    expect_terms(w);
    expect_read(w, 10, 11, SIZE_MAX, LKV_ECOMPACTED);
    append_at_ok(w, 100, 2, 24, 0, 12);
    uint64_t first = 0;
    cr_assert_eq(try_append(w, 1, 24, 0, 1, &first), 0);
    cr_assert_eq(first, 102);
    expect_terms(w);
    wal_close(w);
    w = open_ok(&o, 99, &r, &info);
    expect_records(&r, 100, 3);
    expect_terms(w);

    /* behind the log: the records from 50 on go too */
    snprintf(ctx, sizeof ctx, "reset to 50");
    cr_assert_eq(wal_reset(w, 50), 0);
    cr_assert_eq(wal_last_index(w), 49);
    cr_assert_eq(count_segments(), 0);
    /* no record is held, so no term is too low (the old ones went up to 26) */
    append_at_ok(w, 50, 1, 24, 3, 1);
    expect_terms(w);
    wal_close(w);
    w = open_ok(&o, 49, &r, &info);
    expect_records(&r, 50, 1);
    expect_terms(w);

    /* an empty log with no segment file at all */
    cr_assert_eq(wal_reset(w, 60), 0);
    cr_assert_eq(wal_reset(w, 70), 0);
    cr_assert_eq(wal_last_index(w), 69);
    wal_close(w);
    w = open_ok(&o, 69, &r, &info);
    cr_assert_eq(wal_last_index(w), 69);
    wal_close(w);
    replay_free(&r);
}

Test(wal, retain_entries_keeps_the_window_before_the_snapshot)
{
    struct wal_options o = opts_of(200, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = ten_in_four_segments(&o, &r);
    wal_close(w);

    /* snapshot at 8, keep 3 before it: every segment holding an index > 5 */
    o.retain_entries = 3;
    snprintf(ctx, sizeof ctx, "after 8, retain 3");
    for (int again = 0; again < 2; again++) {
        w = open_ok(&o, 8, &r, &info);
        expect_records(&r, 9, 2); /* only what the snapshot lacks is replayed */
        cr_assert_eq(info.segments, 3);
        cr_assert_eq(seg_size(1), -1, "segment 1 holds nothing after 5");
        cr_assert_eq(count_segments(), 3);
        cr_assert_eq(wal_first_index(w), 4);
        expect_terms(w);
        expect_read_all(w);
        expect_read(w, 5, 9, SIZE_MAX, 4);
        wal_close(w);
    }

    /* keep 2: the window starts at 7, exactly where segment 7 does, so
     * segment 4 holds nothing in it */
    o.retain_entries = 2;
    w = open_ok(&o, 8, &r, &info);
    cr_assert_eq(seg_size(4), -1, "segment 4 ends at 6, before the window");
    cr_assert_eq(wal_first_index(w), 7);
    expect_terms(w);
    wal_close(w);
    clear_dir();
    w = ten_in_four_segments(&o, &r);
    wal_close(w);
    o.retain_entries = 3;

    /* the cut a checkpoint makes: wal_drop_prefix(snapshot - retain) */
    w = open_ok(&o, 8, &r, &info);
    cr_assert_eq(wal_drop_prefix(w, 8 - 3), 0);
    cr_assert_eq(wal_first_index(w), 4, "segment 4 still holds 6");
    cr_assert_eq(wal_drop_prefix(w, 6), 0);
    cr_assert_eq(wal_first_index(w), 7);
    expect_terms(w);
    wal_close(w);

    /* a window longer than the snapshot keeps everything there is */
    o.retain_entries = 100;
    w = open_ok(&o, 8, &r, &info);
    cr_assert_eq(wal_first_index(w), 7);
    expect_records(&r, 9, 2);
    expect_read_all(w);
    wal_close(w);

    /* no window: the segment holding 9 stays, whole */
    o.retain_entries = 0;
    w = open_ok(&o, 8, &r, &info);
    cr_assert_eq(wal_first_index(w), 7);
    expect_terms(w);
    wal_close(w);
    replay_free(&r);
}

Test(wal, retained_records_that_do_not_reach_the_snapshot_are_dropped)
{
    /* Kept records must lead up to the snapshot without a hole, or the log
     * could not serve them as one run. */
    struct wal_options o = opts_of(200, false, NULL);
    o.retain_entries = 100;
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = ten_in_four_segments(&o, &r);
    wal_close(w);

    /* The log ends at 10 but a snapshot (from a leader) is at 20. */
    snprintf(ctx, sizeof ctx, "log ends before the snapshot");
    w = open_ok(&o, 20, &r, &info);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(count_segments(), 0, "records 1-10 cannot lead up to 21");
    cr_assert_eq(info.segments, 0);
    cr_assert_eq(wal_first_index(w), 21);
    cr_assert_eq(wal_last_index(w), 20);
    expect_terms(w);
    append_at_ok(w, 21, 2, 24, 0, 30);
    wal_close(w);

    /* Segment 1 holds 1-3, then the log jumps to 21 (the snapshot covers the
     * hole): 1-3 go, 21-22 are the log. */
    snprintf(ctx, sizeof ctx, "hole before the snapshot");
    struct seg s;
    seg_begin(&s, 1);
    seg_batch(&s, 1, 3, 20, 0);
    seg_write(&s);
    w = open_ok(&o, 22, &r, &info);
    cr_assert_eq(seg_size(1), -1);
    cr_assert_eq(count_segments(), 1);
    cr_assert_eq(wal_first_index(w), 21);
    cr_assert_eq(wal_last_index(w), 22);
    expect_terms(w);
    expect_read_all(w);
    wal_close(w);
    replay_free(&r);
}

Test(wal, estimate_records_counts_only_the_blocks_of_segment_files)
{
    cr_assert_eq(wal_estimate_records(tmp_dir), 0);
    cr_assert_eq(wal_estimate_records("/nonexistent/test_wal"), 0);
    struct wal_options o = opts_of(BIG_SEGMENT, true, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    for (int i = 0; i < 20; i++)
        append_ok(w, 50, 100, 0);
    cr_assert_eq(wal_rotate(w), 0);
    append_ok(w, 1, 100, 0);
    wal_close(w);
    /* other files of the data directory do not count */
    char path[512];
    snprintf(path, sizeof path, "%s/snap-%020d.snap", tmp_dir, 5);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    for (int i = 0; i < 1000; i++)
        fputs("a snapshot is not log records................................", f);
    fclose(f);

    uint64_t blocks = 0;
    const uint64_t firsts[] = {1, 1001};
    for (size_t i = 0; i < 2; i++) {
        struct stat st;
        seg_file(firsts[i], path, sizeof path);
        cr_assert_eq(stat(path, &st), 0, "%s", path);
        blocks += (uint64_t)st.st_blocks;
    }
    cr_assert_eq(count_segments(), 2);
    cr_assert_eq(wal_estimate_records(tmp_dir), blocks * 512 / 160);
    cr_assert_geq(wal_estimate_records(tmp_dir), 1001 * 132 / 160, "fewer than were written");
    replay_free(&r);
}

Test(wal, batch_over_four_gib_is_refused)
{
    /* Record offsets are 32-bit: no segment may pass 4 GiB, so a batch that
     * could not fit in one is refused before anything is written. */
    struct wal_options o = opts_of(BIG_SEGMENT, false, &fio);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    size_t mib = 1 << 20;
    uint8_t *buf = calloc(1, mib);
    cr_assert_not_null(buf);
    struct iovec v[64]; /* 64 MiB a record, the most one may hold */
    for (size_t i = 0; i < 64; i++)
        v[i] = (struct iovec){buf, mib};
    struct wal_entry e[64];
    for (size_t i = 0; i < 64; i++)
        e[i] = (struct wal_entry){.type = WAL_REC_COMMAND, .term = 1, .iov = v, .iovcnt = 64,
                                  .index = 1 + i};
    uint64_t first = 0;
    cr_assert_eq(wal_append(w, e, 64, &first), LKV_EINVAL);
    cr_assert_eq(wal_append_at(w, e, 64), LKV_EINVAL);
    cr_assert_eq(faults[OP_PWRITEV].calls, 0);
    cr_assert_eq(count_segments(), 0);
    free(buf);
    append_ok(w, 1, 10, 0);
    wal_close(w);
    replay_free(&r);
}

/* ==== regressions: bugs that once went unnoticed ==== */

/* A broken log refuses every call that reads or changes it, and touches
 * no file while doing so. */
static void expect_broken(struct wal *w)
{
    int calls[OP_N];
    for (int i = 0; i < OP_N; i++)
        calls[i] = faults[i].calls;
    uint64_t first = 0, t = 0, last = wal_last_index(w);
    cr_assert_eq(try_append(w, 1, 10, 0, 1, &first), LKV_EFATAL, "%s: wal_append", ctx);
    struct batch b;
    batch_make(&b, last + 1, 1, 10, 0, 1000);
    cr_assert_eq(wal_append_at(w, b.e, 1), LKV_EFATAL, "%s: wal_append_at", ctx);
    batch_free(&b);
    cr_assert_eq(wal_rotate(w), LKV_EFATAL, "%s: wal_rotate", ctx);
    cr_assert_eq(wal_truncate_suffix(w, wal_first_index(w)), LKV_EFATAL, "%s: truncate", ctx);
    cr_assert_eq(wal_reset(w, last + 1), LKV_EFATAL, "%s: wal_reset", ctx);
    cr_assert_eq(wal_read(w, wal_first_index(w), last + 1, SIZE_MAX, collect_cb, NULL),
                 LKV_EFATAL, "%s: wal_read", ctx);
    cr_assert_eq(wal_term_of(w, last, &t), LKV_EFATAL, "%s: wal_term_of", ctx);
    cr_assert_eq(wal_last_index(w), last);
    const enum op writes[] = {OP_PWRITE, OP_PWRITEV, OP_FDATASYNC, OP_FALLOCATE,
                              OP_OPEN,   OP_FTRUNCATE, OP_FSYNC,   OP_UNLINK};
    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++)
        cr_assert_eq(faults[writes[i]].calls, calls[writes[i]],
                     "%s: a refused log made file-system call %d", ctx, (int)writes[i]);
}

/* Records 1-10 in segments 1, 4, 7, 10, then wal_truncate_suffix(5) with
 * call `k` (from 0) of `op` failing. Returns whether that call came. */
static bool truncate_fault_case(enum op op, int k)
{
    static const char *const names[OP_N] = {[OP_FTRUNCATE] = "ftruncate", [OP_FSYNC] = "fsync",
                                            [OP_UNLINK] = "unlink"};
    snprintf(ctx, sizeof ctx, "%s call %d of wal_truncate_suffix fails", names[op], k);
    clear_dir();
    memset(model, 0, sizeof model);
    memset(faults, 0, sizeof faults);
    struct wal_options o = opts_of(200, false, &fio);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = ten_in_four_segments(&o, &r);
    arm(op, k, 1, EIO);
    int rc = wal_truncate_suffix(w, 5);
    bool reached = faults[op].count == 0;
    disarm(op);
    if (!reached) {
        cr_assert_eq(rc, 0, "%s: returned %d", ctx, rc);
        wal_close(w);
        replay_free(&r);
        return false;
    }
    cr_assert_eq(rc, LKV_EFATAL, "%s: returned %d (%s)", ctx, rc, lkv_strerror(rc));
    expect_broken(w);
    wal_close(w);

    /* a restart finds a prefix of the old log, with no hole, at least 1-4 */
    struct wal_options plain = opts_of(200, false, NULL);
    w = open_ok(&plain, 0, &r, &info);
    cr_assert_geq(r.n, 4, "%s: %zu records survived", ctx, r.n);
    expect_records(&r, 1, r.n);
    cr_assert_eq(info.torn_bytes, 0, "%s", ctx);
    wal_close(w);
    replay_free(&r);
    return true;
}

Test(wal, failed_ftruncate_fsync_or_unlink_in_truncate_suffix_is_fatal)
{
    /* Regression: a truncation whose cut or sync failed went on as if it
     * had worked. Durability is unknown after a failed fsync, so the log
     * must report LKV_EFATAL and refuse everything after it. */
    const enum op ops[] = {OP_FTRUNCATE, OP_FSYNC, OP_UNLINK};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        int reached = 0;
        while (truncate_fault_case(ops[i], reached))
            reached++;
        cr_assert_gt(reached, 0, "call %d was never made", (int)ops[i]);
    }
}

Test(wal, more_than_sixteen_segments_round_trip)
{
    /* Regression: the segment array's growth past its first 16 entries was
     * never exercised. 60 appends of 3 records a segment make 20 segments,
     * 40 rotations 40 more. */
    struct wal_options o = opts_of(200, false, NULL);
    struct replay r = {0};
    struct wal_recovery info;
    struct wal *w = open_ok(&o, 0, &r, &info);
    for (int i = 0; i < 60; i++)
        append_ok(w, 1, 24, 0);
    for (int i = 0; i < 40; i++) {
        cr_assert_eq(wal_rotate(w), 0);
        append_ok(w, 1, 24, (uint32_t)i % 3);
    }
    cr_assert_eq(count_segments(), 60);
    expect_terms(w);
    expect_read_all(w);
    wal_close(w);

    w = open_ok(&o, 0, &r, &info);
    expect_records(&r, 1, 100);
    cr_assert_eq(info.segments, 60);
    expect_terms(w);
    expect_read_all(w);

    cr_assert_eq(wal_drop_prefix(w, 50), 0);
    cr_assert_eq(wal_first_index(w), 49, "segment 49 holds 49-51");
    cr_assert_eq(wal_truncate_suffix(w, 70), 0);
    cr_assert_eq(count_segments(), 4 + 9);
    for (int i = 0; i < 40; i++) {
        cr_assert_eq(wal_rotate(w), 0);
        append_ok(w, 1, 24, 1);
    }
    expect_terms(w);
    expect_read_all(w);
    wal_close(w);
    w = open_ok(&o, 48, &r, &info);
    expect_records(&r, 49, 61);
    cr_assert_eq(info.segments, 53);
    expect_terms(w);
    wal_close(w);
    replay_free(&r);
}

Test(wal, segment_creation_failing_with_enospc_or_edquot_is_recoverable)
{
    /* Regression: open() of a new segment failing for lack of space (or
     * quota) must be LKV_ENOSPC with the log as before, not a fatal error. */
    const int errs[] = {ENOSPC, EDQUOT};
    for (size_t e = 0; e < 2; e++) {
        for (int rotated = 0; rotated < 2; rotated++) {
            snprintf(ctx, sizeof ctx, "%s creating segment %d", strerror(errs[e]), rotated + 1);
            clear_dir();
            memset(model, 0, sizeof model);
            memset(faults, 0, sizeof faults);
            struct wal_options o = opts_of(BIG_SEGMENT, false, &fio);
            struct replay r = {0};
            struct wal_recovery info;
            struct wal *w = open_ok(&o, 0, &r, &info);
            if (rotated) {
                append_ok(w, 2, 10, 0);
                cr_assert_eq(wal_rotate(w), 0);
            }
            uint64_t last = wal_last_index(w), first = 0;
            arm(OP_OPEN, 0, -1, errs[e]);
            cr_assert_eq(try_append(w, 1, 10, 1, 1, &first), LKV_ENOSPC, "%s", ctx);
            cr_assert_eq(try_append(w, 2, 10, 1, 1, &first), LKV_ENOSPC, "%s: still full", ctx);
            cr_assert_gt(faults[OP_OPEN].calls, 0, "%s: no segment was created", ctx);
            cr_assert_eq(wal_last_index(w), last, "%s", ctx);
            cr_assert_eq(count_segments(), (size_t)rotated, "%s", ctx);
            disarm(OP_OPEN);

            append_ok(w, 1, 10, 2);
            cr_assert_eq(wal_last_index(w), last + 1);
            expect_terms(w);
            wal_close(w);
            w = open_ok(&o, 0, &r, &info);
            expect_records(&r, 1, last + 1);
            wal_close(w);
            replay_free(&r);
        }
    }
}

Test(wal, segment_creation_failing_otherwise_is_fatal)
{
    /* Any other open() failure leaves the log's state unknown to us: fatal. */
    const int errs[] = {EIO, EACCES, EMFILE, EROFS};
    for (size_t e = 0; e < sizeof errs / sizeof errs[0]; e++) {
        snprintf(ctx, sizeof ctx, "%s creating a segment", strerror(errs[e]));
        clear_dir();
        memset(model, 0, sizeof model);
        memset(faults, 0, sizeof faults);
        struct wal_options o = opts_of(BIG_SEGMENT, false, &fio);
        struct replay r = {0};
        struct wal_recovery info;
        struct wal *w = open_ok(&o, 0, &r, &info);
        append_ok(w, 2, 10, 0);
        cr_assert_eq(wal_rotate(w), 0);
        arm(OP_OPEN, 0, 1, errs[e]);
        uint64_t first = 0;
        cr_assert_eq(try_append(w, 1, 10, 1, 1, &first), LKV_EFATAL, "%s", ctx);
        cr_assert_eq(faults[OP_OPEN].count, 0, "%s: the failure was not reached", ctx);
        disarm(OP_OPEN);
        expect_broken(w);
        wal_close(w);
        replay_free(&r);
    }
}

Test(wal, fallocate_unsupported_is_tolerated)
{
    /* Regression: a file system without fallocate (EOPNOTSUPP) must not
     * stop the log, whether creating a segment (every call fails) or
     * extending one for a batch larger than it (only later calls fail). */
    for (int skip = 0; skip < 2; skip++) {
        snprintf(ctx, sizeof ctx, "fallocate unsupported after %d calls", skip);
        clear_dir();
        memset(model, 0, sizeof model);
        memset(faults, 0, sizeof faults);
        struct wal_options o = opts_of(232, true, &fio);
        struct replay r = {0};
        struct wal_recovery info;
        arm(OP_FALLOCATE, skip, -1, EOPNOTSUPP);
        struct wal *w = open_ok(&o, 0, &r, &info);
        append_ok(w, 10, 24, 0); /* 592 bytes: more than the 232 preallocated */
        for (int i = 0; i < 7; i++)
            append_ok(w, 1, 24, 0);
        cr_assert_gt(faults[OP_FALLOCATE].calls, skip, "%s: no fallocate failed", ctx);
        cr_assert_eq(seg_size(1), 32 + 10 * 56, "%s", ctx);
        expect_read_all(w);
        wal_close(w);
        disarm(OP_FALLOCATE);

        w = open_ok(&o, 0, &r, &info);
        expect_records(&r, 1, 17);
        cr_assert_eq(info.torn_bytes, 0, "%s", ctx);
        append_ok(w, 1, 24, 1);
        wal_close(w);
        w = open_ok(&o, 0, &r, &info);
        expect_records(&r, 1, 18);
        wal_close(w);
        replay_free(&r);
    }
}

Test(wal, segment_header_encoding_sets_every_byte)
{
    /* Regression: wal_seg_hdr_encode left reserved bytes as it found them,
     * and the log encodes into an uninitialised stack buffer. */
    const uint8_t fills[] = {0xFF, 0xA5, 0x00};
    for (size_t f = 0; f < sizeof fills; f++) {
        uint8_t buf[WAL_SEG_HDR_SIZE];
        memset(buf, fills[f], sizeof buf);
        wal_seg_hdr_encode(buf, 0x0102030405060708ull);
        uint8_t want[WAL_SEG_HDR_SIZE] = {'L', 'K', 'V', 'L', 'O', 'G', 0, 1,   /* magic */
                                          1,   0,   0,   0,                     /* version */
                                          0,   0,   0,   0,                     /* reserved */
                                          8,   7,   6,   5,   4,   3,   2, 1}; /* first index */
        put_le32(want + 28, crc32c(want, 28));
        cr_assert_arr_eq(buf, want, sizeof want, "encoded over 0x%02x", fills[f]);
        uint64_t first = 0;
        cr_assert_eq(wal_seg_hdr_decode(buf, sizeof buf, &first), WAL_SEG_OK);
        cr_assert_eq(first, 0x0102030405060708ull);
    }
}

/* ==== random operation sequences against a model ==== */

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: every seed gives a good sequence */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return rng_next(s) % n;
}

/* How many records wal_read(lo, hi, max_bytes) must hand over. */
static int model_read_count(uint64_t lo, uint64_t hi, size_t max_bytes)
{
    uint64_t payload = model[lo].len;
    int n = 1;
    while (lo + (uint64_t)n < hi && payload + model[lo + (uint64_t)n].len <= max_bytes)
        payload += model[lo + (uint64_t)n++].len;
    return n;
}

/* A batch of n records from last + 1, with terms from *term, rising now and
 * then; the model learns it only when the append succeeds. */
static void random_append(struct wal *w, uint64_t *rs, uint64_t *term, bool legacy, uint32_t salt)
{
    uint64_t last = wal_last_index(w);
    size_t n = 1 + (size_t)rng_below(rs, 8), len = (size_t)rng_below(rs, 60);
    struct batch b;
    batch_make(&b, last + 1, n, len, salt, *term);
    for (size_t i = 0; i < n; i++) {
        if (rng_below(rs, 6) == 0)
            *term += 1 + rng_below(rs, 3);
        b.e[i].term = *term;
    }
    uint64_t first = 0;
    int rc = legacy ? wal_append(w, b.e, n, &first) : wal_append_at(w, b.e, n);
    cr_assert_eq(rc, 0, "%s: append returned %d (%s)", ctx, rc, lkv_strerror(rc));
    cr_assert(!legacy || first == last + 1, "%s: first index %" PRIu64, ctx, first);
    for (size_t i = 0; i < n; i++)
        model_set_term(last + 1 + i, len, salt, b.e[i].term);
    batch_free(&b);
}

/* One seeded run of `steps` random operations. After each, the log's last
 * index must be the model's and its first must lie where the operation
 * allows (segments go whole, so a drop or a restart may keep more than it
 * had to), and every record held must have the model's term; every few
 * steps all of them are read back. */
static void random_run(uint64_t seed, int steps)
{
    uint64_t rs = seed;
    clear_dir();
    memset(model, 0, sizeof model);
    const uint64_t sizes[] = {150, 300, 1000, 4096};
    struct wal_options o = opts_of(sizes[rng_below(&rs, 4)], rng_below(&rs, 2), NULL);
    struct replay r = {0};
    struct wal_recovery info;
    snprintf(ctx, sizeof ctx, "seed %" PRIu64 " open", seed);
    struct wal *w = open_ok(&o, 0, &r, &info);
    uint64_t last = 0, term = 1;
    for (int step = 0; step < steps; step++) {
        uint64_t first = wal_first_index(w), lo = first, hi = first;
        uint64_t op = rng_below(&rs, 100), arg = 0;
        if (last + 16 >= MAX_INDEX)
            op = 90; /* a reset keeps the indexes within the model */
        if (op < 40) {
            snprintf(ctx, sizeof ctx, "seed %" PRIu64 " step %d: append_at", seed, step);
            random_append(w, &rs, &term, false, (uint32_t)step);
            last = wal_last_index(w);
        } else if (op < 52) {
            snprintf(ctx, sizeof ctx, "seed %" PRIu64 " step %d: append", seed, step);
            random_append(w, &rs, &term, true, (uint32_t)step);
            last = wal_last_index(w);
        } else if (op < 64) {
            arg = first - 1 + rng_below(&rs, last - first + 4);
            snprintf(ctx, sizeof ctx, "seed %" PRIu64 " step %d: truncate_suffix(%" PRIu64 ")",
                     seed, step, arg);
            int rc = wal_truncate_suffix(w, arg);
            cr_assert_eq(rc, arg < first ? LKV_ECOMPACTED : 0, "%s: returned %d", ctx, rc);
            if (rc == 0 && arg <= last)
                last = arg - 1;
            /* a new leader's entries may have a lower term than those cut */
            if (rc == 0 && last >= first && rng_below(&rs, 2))
                term = model[last].term;
        } else if (op < 70) {
            snprintf(ctx, sizeof ctx, "seed %" PRIu64 " step %d: rotate", seed, step);
            cr_assert_eq(wal_rotate(w), 0, "%s", ctx);
        } else if (op < 78) {
            arg = first - 1 + rng_below(&rs, last - first + 2);
            snprintf(ctx, sizeof ctx, "seed %" PRIu64 " step %d: drop_prefix(%" PRIu64 ")", seed,
                     step, arg);
            cr_assert_eq(wal_drop_prefix(w, arg), 0, "%s", ctx);
            hi = arg + 1 > first ? arg + 1 : first;
        } else if (op < 86) {
            /* a restart from a snapshot anywhere from just before the first
             * record held to the last one, with or without a window */
            arg = first - 1 + rng_below(&rs, last - first + 2);
            o.retain_entries = rng_below(&rs, 2) ? rng_below(&rs, 20) : 0;
            snprintf(ctx, sizeof ctx, "seed %" PRIu64 " step %d: reopen after %" PRIu64
                     " retaining %" PRIu64, seed, step, arg, o.retain_entries);
            wal_close(w);
            w = open_ok(&o, arg, &r, &info);
            expect_records(&r, arg + 1, (size_t)(last - arg));
            uint64_t keep_from = arg >= o.retain_entries ? arg - o.retain_entries + 1 : 1;
            hi = keep_from > first ? keep_from : first;
        } else if (op < 92) {
            arg = first + rng_below(&rs, last - first + 10);
            if (last + 16 >= MAX_INDEX)
                arg = 1 + rng_below(&rs, 100);
            snprintf(ctx, sizeof ctx, "seed %" PRIu64 " step %d: reset(%" PRIu64 ")", seed, step,
                     arg);
            cr_assert_eq(wal_reset(w, arg), 0, "%s", ctx);
            last = arg - 1;
            if (rng_below(&rs, 2))
                term = 1 + rng_below(&rs, term);
            lo = hi = arg;
        } else if (last >= first) {
            uint64_t a = first + rng_below(&rs, last - first + 1);
            uint64_t b = a + 1 + rng_below(&rs, last - a + 1);
            size_t max = (size_t)rng_below(&rs, 400);
            snprintf(ctx, sizeof ctx, "seed %" PRIu64 " step %d: read(%" PRIu64 ", %" PRIu64
                     ", %zu)", seed, step, a, b, max);
            expect_read(w, a, b, max, model_read_count(a, b, max));
        }
        cr_assert_eq(wal_last_index(w), last, "%s: last index %" PRIu64 ", want %" PRIu64, ctx,
                     wal_last_index(w), last);
        uint64_t now = wal_first_index(w);
        if (last < lo)
            lo = hi = last + 1; /* the log was emptied */
        cr_assert(now >= lo && now <= (hi > last + 1 ? last + 1 : hi),
                  "%s: first index %" PRIu64 ", want %" PRIu64 "..%" PRIu64, ctx, now, lo, hi);
        expect_terms(w);
        if (step % 16 == 0)
            expect_read_all(w);
    }
    wal_close(w);
    o.retain_entries = 0;
    snprintf(ctx, sizeof ctx, "seed %" PRIu64 " final reopen", seed);
    uint64_t first = wal_first_index(w = open_ok(&o, last, &r, &info));
    cr_assert_eq(r.n, 0, "%s", ctx);
    cr_assert_eq(wal_last_index(w), last, "%s", ctx);
    cr_assert_leq(first, last + 1, "%s", ctx);
    wal_close(w);
    replay_free(&r);
}

Test(wal, random_operations_keep_the_index_right, .timeout = 120)
{
    /* WAL_RANDOM_SEED=n replays one seed (the failure message names it). */
    const char *one = getenv("WAL_RANDOM_SEED");
    if (one != NULL) {
        random_run(strtoull(one, NULL, 10), 1500);
        return;
    }
    for (uint64_t seed = 1; seed <= 6; seed++)
        random_run(seed, 500);
}
