/* libFuzzer target: the recovery scan (wal_open) over one or two segment
 * files made from the input, in a fresh directory under /dev/shm.
 *
 * Input:
 *   byte 0  bits 0..3 after_index (the snapshot's index, 0..15)
 *           bit 4     append a batch of 2 records instead of 1 afterwards
 *           bits 5..6 segment_bytes = 64 << n
 *           bit 7     name the files from byte 1 even when the header has a
 *                     plausible first index (reaches the name/header check)
 *   byte 1  fallback first index of file k: 1 + (byte1 >> 4k & 15)
 *   rest    the first file; if MARKER occurs, what follows it is the second
 *
 * Checks: wal_open returns 0, LKV_ECORRUPT or LKV_EFORMAT (the directory is
 * on tmpfs, so I/O does not fail), with a one-line reason; a refused log is
 * left as it was found; an accepted one replays consecutive indexes from
 * after_index + 1 with sane lengths, only ever shortens or removes files,
 * replays the same records again from a second open without changing
 * anything, and takes an append that a third open replays after them. */
#include "util/crc32c.h"
#include "util/err.h"
#include "util/log.h"
#include "wal/wal.h"
#include "tmpdir.h"

#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MARKER "=SEG="
#define MARKER_LEN (sizeof MARKER - 1)
#define MAX_NAME_INDEX ((uint64_t)1 << 20)
#define MAX_RECS 1024
#define MAX_FILES 8

static char dir[FUZZ_DIR_MAX];

struct rec {
    uint64_t index, term;
    uint32_t len, batch_pos, crc;
    uint8_t type;
};

struct replay {
    uint64_t next;        /* index the next record must have */
    uint64_t after;
    size_t max_len;       /* no payload can be longer than the files */
    size_t n;
    struct rec recs[MAX_RECS];
};

struct file {
    char name[64];
    uint8_t *data;
    size_t len;
};

/* The directory's files, sorted by name. */
struct dir_state {
    struct file f[MAX_FILES];
    size_t n;
};

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int replay_cb(const struct wal_rec_hdr *h, const uint8_t *payload, void *arg)
{
    struct replay *r = arg;
    assert(h->index == r->next && h->index > r->after);
    assert(h->len <= WAL_REC_MAX_PAYLOAD && h->len <= r->max_len);
    assert(h->type >= WAL_REC_COMMAND && h->type <= WAL_REC_CONFIG);
    assert(r->n < MAX_RECS);
    r->recs[r->n++] = (struct rec){.index = h->index, .term = h->term, .len = h->len,
                                   .batch_pos = h->batch_pos, .type = h->type,
                                   .crc = crc32c(payload, h->len)};
    r->next++;
    return 0;
}

static void replay_init(struct replay *r, uint64_t after, size_t max_len)
{
    r->next = after + 1;
    r->after = after;
    r->max_len = max_len;
    r->n = 0;
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const struct file *)a)->name, ((const struct file *)b)->name);
}

static void path_of(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

static void read_dir(struct dir_state *s)
{
    s->n = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        abort();
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        assert(s->n < MAX_FILES && strlen(de->d_name) < sizeof s->f[0].name);
        struct file *f = &s->f[s->n++];
        snprintf(f->name, sizeof f->name, "%s", de->d_name);
        char p[FUZZ_DIR_MAX + 64];
        path_of(p, sizeof p, f->name);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0)
            abort();
        f->len = (size_t)st.st_size;
        f->data = malloc(f->len ? f->len : 1);
        if (f->data == NULL || read(fd, f->data, f->len) != (ssize_t)f->len)
            abort();
        close(fd);
    }
    closedir(d);
    qsort(s->f, s->n, sizeof s->f[0], cmp_file);
}

static void free_dir_state(struct dir_state *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->f[i].data);
    s->n = 0;
}

static bool same_dir(const struct dir_state *a, const struct dir_state *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->f[i].name, b->f[i].name) != 0 || a->f[i].len != b->f[i].len ||
            memcmp(a->f[i].data, b->f[i].data, a->f[i].len) != 0)
            return false;
    }
    return true;
}

/* Recovery may cut a file or remove it, never add to one or create one. */
static void check_only_shrunk(const struct dir_state *before, const struct dir_state *after)
{
    for (size_t i = 0; i < after->n; i++) {
        const struct file *a = &after->f[i];
        const struct file *b = NULL;
        for (size_t j = 0; j < before->n; j++) {
            if (strcmp(before->f[j].name, a->name) == 0)
                b = &before->f[j];
        }
        assert(b != NULL);
        assert(a->len <= b->len && memcmp(a->data, b->data, a->len) == 0);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_threshold = LOG_LVL_ERROR; /* torn tails are expected here */
    fuzz_make_tmpdir(dir, "wal");
    return 0;
}

static void write_segment(uint64_t first_index, const uint8_t *p, size_t n)
{
    char name[64], path[FUZZ_DIR_MAX + 64];
    snprintf(name, sizeof name, "log-%020" PRIu64 ".seg", first_index);
    path_of(path, sizeof path, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || (n > 0 && write(fd, p, n) != (ssize_t)n))
        abort();
    close(fd);
}

/* The header's first index when it is plausible, so that most files carry
 * the name recovery expects; otherwise the fallback from byte 1. */
static uint64_t name_for(const uint8_t *p, size_t n, bool forced, uint64_t fallback)
{
    if (!forced && n >= 24) {
        uint64_t idx = le64(p + 16);
        if (idx >= 1 && idx <= MAX_NAME_INDEX)
            return idx;
    }
    return fallback;
}

static void check_same_records(const struct replay *a, const struct replay *b, size_t n)
{
    assert(a->n >= n && b->n >= n);
    for (size_t i = 0; i < n; i++) {
        const struct rec *x = &a->recs[i], *y = &b->recs[i];
        assert(x->index == y->index && x->term == y->term && x->len == y->len);
        assert(x->batch_pos == y->batch_pos && x->crc == y->crc && x->type == y->type);
    }
}

static int open_log(const struct wal_options *opt, uint64_t after, struct replay *r,
                    struct wal **w, struct wal_recovery *info)
{
    char err[512] = "";
    int rc = wal_open(opt, after, replay_cb, r, w, info, err, sizeof err);
    if (rc != 0) {
        assert(rc == LKV_ECORRUPT || rc == LKV_EFORMAT);
        assert(err[0] != '\0' && strchr(err, '\n') == NULL);
        return rc;
    }
    assert(info->replayed == r->n);
    assert(info->last_index == (r->n ? r->recs[r->n - 1].index : after));
    assert(wal_last_index(*w) == info->last_index);
    return 0;
}

/* Appends a batch to an accepted log; a third open must replay it after
 * what was there. */
static void check_append(const struct wal_options *opt, struct wal *w, uint64_t after,
                         const struct replay *before, const uint8_t *data, size_t size,
                         size_t nappend)
{
    struct iovec iov[2] = {{(void *)data, size < 7 ? size : 7}, {(void *)"x", 1}};
    struct wal_entry e[2] = {{.type = WAL_REC_COMMAND, .term = 3, .iov = iov, .iovcnt = 2},
                             {.type = WAL_REC_NOOP, .term = 4, .iov = NULL, .iovcnt = 0}};
    uint64_t first = 0;
    uint64_t last = wal_last_index(w);
    int rc = wal_append(w, e, nappend, &first);
    assert(rc == 0);
    assert(first == last + 1 && wal_last_index(w) == last + nappend);
    wal_close(w);

    static struct replay r3;
    replay_init(&r3, after, size + 8);
    struct wal_recovery info;
    rc = open_log(opt, after, &r3, &w, &info);
    assert(rc == 0);
    assert(info.torn_bytes == 0);
    assert(r3.n == before->n + nappend);
    check_same_records(before, &r3, before->n);
    for (size_t i = 0; i < nappend; i++) {
        const struct rec *got = &r3.recs[before->n + i];
        size_t len = i == 0 ? iov[0].iov_len + 1 : 0;
        uint32_t crc = i == 0 ? crc32c_extend(crc32c(data, iov[0].iov_len), "x", 1) : 0;
        assert(got->index == first + i && got->batch_pos == i);
        assert(got->type == e[i].type && got->term == e[i].term);
        assert(got->len == len && got->crc == crc);
    }
    wal_close(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint64_t after = data[0] & 15;
    size_t nappend = data[0] & 16 ? 2 : 1;
    struct wal_options opt = {.dir = dir, .io = NULL,
                              .segment_bytes = (uint64_t)64 << (data[0] >> 5 & 3),
                              .preallocate = false};
    bool forced = data[0] & 128;
    const uint8_t *part[2] = {data + 2, NULL};
    size_t plen[2] = {size - 2, 0};
    const uint8_t *m = memmem(part[0], plen[0], MARKER, MARKER_LEN);
    if (m != NULL) {
        part[1] = m + MARKER_LEN;
        plen[1] = (size_t)(part[0] + plen[0] - part[1]);
        plen[0] = (size_t)(m - part[0]);
    }
    uint64_t name0 = name_for(part[0], plen[0], forced, 1 + (data[1] & 15));
    write_segment(name0, part[0], plen[0]);
    if (part[1] != NULL) {
        uint64_t name1 = name_for(part[1], plen[1], forced, 1 + (data[1] >> 4));
        write_segment(name1 == name0 ? name0 + 1 : name1, part[1], plen[1]);
    }

    static struct dir_state before, mid, later;
    static struct replay r1, r2;
    read_dir(&before);
    replay_init(&r1, after, size);
    struct wal *w = NULL;
    struct wal_recovery info1, info2;
    int rc = open_log(&opt, after, &r1, &w, &info1);
    read_dir(&mid);
    if (rc != 0) {
        /* A refused start leaves the directory as it found it. */
        assert(same_dir(&before, &mid));
        goto done;
    }
    check_only_shrunk(&before, &mid);
    assert(info1.segments <= mid.n);
    wal_close(w);

    replay_init(&r2, after, size);
    rc = open_log(&opt, after, &r2, &w, &info2);
    assert(rc == 0);
    read_dir(&later);
    assert(same_dir(&mid, &later));
    assert(info2.torn_bytes == 0 && info2.segments == info1.segments);
    assert(info2.last_index == info1.last_index && r2.n == r1.n);
    check_same_records(&r1, &r2, r1.n);
    check_append(&opt, w, after, &r1, data, size, nappend);

done:
    free_dir_state(&before);
    free_dir_state(&mid);
    free_dir_state(&later);
    fuzz_clear_dir(dir);
    return 0;
}

#ifdef MAKE_SEEDS
/* Seed generator (run.sh builds this file with -DMAKE_SEEDS and without
 * libFuzzer): segments written by wal_append itself, whole, torn, followed
 * by zeros, and in pairs. Usage: fuzz_wal_scan-seeds OUTDIR */
static void emit(const char *outdir, const char *name, uint8_t f0, const struct file *a,
                 size_t alen, const struct file *b, const uint8_t *tail, size_t tlen)
{
    size_t n = 2 + alen + (b ? MARKER_LEN + b->len : 0) + tlen;
    uint8_t *buf = malloc(n);
    if (buf == NULL)
        abort();
    size_t k = 0;
    buf[k++] = f0;
    buf[k++] = 0;
    memcpy(buf + k, a->data, alen);
    k += alen;
    if (b != NULL) {
        memcpy(buf + k, MARKER, MARKER_LEN);
        memcpy(buf + k + MARKER_LEN, b->data, b->len);
        k += MARKER_LEN + b->len;
    }
    if (tlen > 0)
        memcpy(buf + k, tail, tlen);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", outdir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(buf, 1, n, f) != n)
        abort();
    fclose(f);
    assert(LLVMFuzzerTestOneInput(buf, n) == 0);
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    LLVMFuzzerInitialize(&argc, &argv);
    /* Write a log of three batches into the fuzzing directory, then keep
     * its files in memory: every emitted seed replaces them. */
    struct wal_options opt = {.dir = dir, .segment_bytes = 128, .preallocate = false};
    struct replay r;
    replay_init(&r, 0, 1 << 20);
    struct wal *w;
    struct wal_recovery info;
    char err[512];
    if (wal_open(&opt, 0, replay_cb, &r, &w, &info, err, sizeof err) != 0) {
        fprintf(stderr, "wal_open: %s\n", err);
        return 1;
    }
    static const uint8_t set_a[] = {1, 1, 0, 0, 0, 'a', '1'};
    static const uint8_t del_a[] = {2, 1, 0, 0, 0, 'a'};
    static const uint8_t clear[] = {3};
    struct iovec iv[3] = {{(void *)set_a, sizeof set_a}, {(void *)del_a, sizeof del_a},
                          {(void *)clear, sizeof clear}};
    struct wal_entry e[3] = {{.type = WAL_REC_COMMAND, .term = 1, .iov = &iv[0], .iovcnt = 1},
                             {.type = WAL_REC_COMMAND, .term = 1, .iov = &iv[1], .iovcnt = 1},
                             {.type = WAL_REC_COMMAND, .term = 2, .iov = &iv[2], .iovcnt = 1}};
    uint64_t first;
    if (wal_append(w, e, 2, &first) != 0 || wal_append(w, e + 2, 1, &first) != 0 ||
        wal_append(w, e, 3, &first) != 0) {
        fprintf(stderr, "wal_append failed\n");
        return 1;
    }
    wal_close(w);
    static struct dir_state s;
    read_dir(&s);
    fuzz_clear_dir(dir);
    if (s.n < 2) {
        fprintf(stderr, "expected at least two segments, got %zu\n", s.n);
        return 1;
    }
    static const uint8_t zeros[64];
    const struct file *a = &s.f[0], *b = &s.f[1];
    emit(argv[1], "one-segment", 0, a, a->len, NULL, NULL, 0);
    emit(argv[1], "one-segment-after-1", 1, a, a->len, NULL, NULL, 0);
    emit(argv[1], "two-segments", 0, a, a->len, b, NULL, 0);
    emit(argv[1], "two-segments-after-3", 3 | 16, a, a->len, b, NULL, 0);
    emit(argv[1], "torn-tail", 0, a, a->len - 5, NULL, NULL, 0);
    emit(argv[1], "zero-tail", 32, a, a->len, NULL, zeros, sizeof zeros);
    emit(argv[1], "torn-second-header", 0, a, a->len, &(struct file){"", b->data, 20}, NULL,
         0);
    free_dir_state(&s);
    return 0;
}
#endif
