/* libFuzzer target: arbitrary bytes as a snapshot file through snap_load
 * (and snap_peek), checked against a model of the documented format; what
 * loads is written back with snap_write and must load again as the same map.
 *
 * Input: byte 0 holds flags.
 *   bit 1 clear: the file is data[1..] as is.
 *   bit 1 set (half the inputs): the file is a forged, checksummed header
 *     (index 9, term 7) and a body of data[2..], where
 *     bit 0  records = what the model counts (else data[1])
 *     bit 2  format version 2 instead of 1
 *
 * fuzz_snap_window.c builds this file with SNAP_WINDOW_MODE: every file is
 * then forged, and its body starts with a filler record that ends
 * 3 * (bits 3..6) bytes before snap_load's read window does, or (bit 7) one
 * larger than the window, so the fuzzed records meet the window's edge.
 * Those files are 8 MiB, so that mode runs as a target of its own. */
#ifndef SNAP_WINDOW_MODE
#define SNAP_WINDOW_MODE 0
#endif

#include "kv/kv_map.h"
#include "snap/snap.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/log.h"
#include "tmpdir.h"

#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const uint8_t magic[8] = {'L', 'K', 'V', 'S', 'N', 'A', 'P', 0};

/* snap_load reads the body through a window of this many bytes (snap.c);
 * a filler record of about that size puts the fuzzed records across the
 * window's edge, or makes the window grow. */
#define SNAP_WINDOW ((size_t)8 << 20)

static char dir[FUZZ_DIR_MAX];
static char in_path[FUZZ_DIR_MAX + 16];
/* Files with a filler record are built here, in place, rather than in a
 * fresh 8 MiB allocation each time (whose page faults would dominate). */
#define BIG_FILE_CAP (SNAP_HDR_SIZE + SNAP_WINDOW + 64 + 8192)
static uint8_t *big_file;

/* Follows a load through the body it must be reading. */
struct seen {
    const uint8_t *body; /* the file's body, as written */
    size_t body_len;
    size_t used;         /* body bytes the callback has accounted for */
    uint64_t n;
    struct kv_map *map;  /* every pair also goes in here, as recovery does */
};

static int put_cb(const char *key, size_t klen, const char *value, size_t vlen, void *arg);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_threshold = LOG_LVL_ERROR;
    fuzz_make_tmpdir(dir, "snap");
    snprintf(in_path, sizeof in_path, "%s/input.snap", dir);
    if (SNAP_WINDOW_MODE) {
        big_file = malloc(BIG_FILE_CAP);
        if (big_file == NULL)
            abort();
        /* The filler's value: a pattern, so that a misplaced window shows. */
        for (size_t i = 0; i < BIG_FILE_CAP; i++)
            big_file[i] = (uint8_t)(i * 131 + i / 251);
    }
    return 0;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Splits a body into records; returns how many, or -1 if the framing is
 * broken. */
static int64_t model_walk(const uint8_t *body, size_t len)
{
    size_t off = 0;
    int64_t n = 0;
    while (off < len) {
        if (len - off < 8)
            return -1;
        uint64_t klen = le(body + off, 4), vlen = le(body + off + 4, 4);
        /* disk-format.md: no key is empty or longer than 65,536 bytes */
        if (klen == 0 || klen > 65536 || klen + vlen > len - off - 8)
            return -1;
        off += 8 + (size_t)(klen + vlen);
        n++;
    }
    return n;
}

/* What snap_load must return for this file, from docs/disk-format.md;
 * *header_ok says whether the header alone passes. */
static int model_load(const uint8_t *f, size_t len, bool *header_ok)
{
    *header_ok = false;
    if (len < SNAP_HDR_SIZE || memcmp(f, magic, sizeof magic) != 0)
        return LKV_ECORRUPT;
    if (le(f + 60, 4) != crc32c(f, 60))
        return LKV_ECORRUPT;
    uint64_t version = le(f + 8, 4);
    if (version != 1 && version != 2)
        return LKV_EFORMAT;
    /* version 2: a configuration block of le(52) bytes opens the body */
    uint64_t conf = version == 2 ? le(f + 52, 4) : 0;
    if (conf > SNAP_CONF_MAX || conf > len - SNAP_HDR_SIZE)
        return LKV_ECORRUPT;
    if (le(f + 40, 8) != len - SNAP_HDR_SIZE)
        return LKV_ECORRUPT;
    *header_ok = true;
    if (le(f + 48, 4) != crc32c(f + SNAP_HDR_SIZE, len - SNAP_HDR_SIZE))
        return LKV_ECORRUPT;
    int64_t n = model_walk(f + SNAP_HDR_SIZE + conf, len - SNAP_HDR_SIZE - conf);
    if (n < 0 || (uint64_t)n != le(f + 32, 8))
        return LKV_ECORRUPT;
    return 0;
}

/* Each pair handed over must be the next record of the body, byte for
 * byte (compared in place: bodies can be larger than the read window). */
static int record_cb(const char *key, size_t klen, const char *value, size_t vlen, void *arg)
{
    struct seen *s = arg;
    assert(key != NULL && klen > 0);
    assert(vlen == 0 || value != NULL);
    assert(klen + vlen + 8 <= s->body_len - s->used);
    const uint8_t *at = s->body + s->used;
    assert(le(at, 4) == klen && le(at + 4, 4) == vlen);
    assert(memcmp(at + 8, key, klen) == 0);
    assert(vlen == 0 || memcmp(at + 8 + klen, value, vlen) == 0);
    s->used += 8 + klen + vlen;
    s->n++;
    return put_cb(key, klen, value, vlen, s->map);
}

static void write_file(const char *path, const uint8_t *a, size_t alen, const uint8_t *b,
                       size_t blen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        abort();
    if ((alen > 0 && write(fd, a, alen) != (ssize_t)alen) ||
        (blen > 0 && write(fd, b, blen) != (ssize_t)blen))
        abort();
    close(fd);
}

static int put_cb(const char *key, size_t klen, const char *value, size_t vlen, void *arg)
{
    struct kv_map *m = arg;
    if (m == NULL)
        return 0;
    struct kv_entry *e = kv_entry_new(key, klen, vlen);
    if (e == NULL)
        abort();
    if (vlen > 0)
        memcpy(kv_entry_value_mut(e), value, vlen);
    kv_map_put_locked(m, e);
    return 0;
}

static int match_cb(const char *key, size_t klen, const char *value, size_t vlen, void *arg)
{
    struct kv_map *m = arg;
    struct kv_entry *e = kv_map_get(m, key, klen);
    assert(e != NULL);
    assert(kv_entry_vlen(e) == vlen && memcmp(kv_entry_value(e), value, vlen) == 0);
    kv_entry_unref(e);
    return 0;
}

/* What loaded, put in a map (later duplicates win, as recovery has it),
 * must survive snap_write and a second snap_load unchanged. */
static void check_rewrite(struct kv_map *m, const struct snap_info *info)
{
    char err[512] = "";
    struct snap_info wrote;
    int rc = snap_write(dir, NULL, m, info->index, info->term, &info->conf, &wrote, err,
                        sizeof err);
    assert(rc == 0);
    assert(wrote.records == kv_map_count(m) && wrote.index == info->index);
    char path[FUZZ_DIR_MAX + 64];
    uint64_t idx = 0;
    assert(snap_find_latest(dir, path, sizeof path, &idx) == 1 && idx == info->index);

    struct snap_info back;
    rc = snap_load(path, NULL, match_cb, m, &back, err, sizeof err);
    assert(rc == 0);
    assert(back.records == kv_map_count(m) && back.bytes == wrote.bytes);
    assert(back.index == info->index && back.term == info->term);
    assert(back.conf.len == info->conf.len &&
           memcmp(back.conf.bytes, info->conf.bytes, info->conf.len) == 0);
    unlink(path);
}

/* Builds the snapshot file the input describes (see the top of the file);
 * the caller frees it unless it is big_file. */
static uint8_t *build_file(const uint8_t *data, size_t size, size_t *flen)
{
    uint8_t flags = data[0];
    if (SNAP_WINDOW_MODE)
        flags |= 2;
    if (!(flags & 2)) {
        *flen = size - 1;
        uint8_t *f = malloc(*flen ? *flen : 1);
        if (f == NULL)
            abort();
        memcpy(f, data + 1, *flen);
        return f;
    }
    const uint8_t *tail = data + 2;
    size_t tlen = size - 2;
    size_t fill = 0;
    if (SNAP_WINDOW_MODE) {
        size_t d = 3 * (size_t)(flags >> 3 & 15);
        fill = flags & 128 ? SNAP_WINDOW + 8 + d : SNAP_WINDOW - d;
    }
    *flen = SNAP_HDR_SIZE + fill + tlen;
    uint8_t *f = fill > 0 ? big_file : malloc(*flen);
    if (f == NULL || *flen > BIG_FILE_CAP)
        abort();
    uint8_t *body = f + SNAP_HDR_SIZE;
    if (fill > 0) {
        /* key "f"; the value keeps big_file's pattern bytes */
        put(body, 1, 4);
        put(body + 4, fill - 9, 4);
        body[8] = 'f';
    }
    memcpy(body + fill, tail, tlen);
    int64_t counted = model_walk(tail, tlen);
    uint64_t records = (flags & 1) && counted >= 0 ? (uint64_t)counted + (fill > 0) : data[1];
    memset(f, 0, SNAP_HDR_SIZE);
    memcpy(f, magic, sizeof magic);
    put(f + 8, (flags & 4) ? 3 : SNAP_FORMAT_VERSION, 4);
    put(f + 16, 9, 8);
    put(f + 24, 7, 8);
    put(f + 32, records, 8);
    put(f + 40, fill + tlen, 8);
    put(f + 48, crc32c(body, fill + tlen), 4);
    put(f + 60, crc32c(f, 60), 4);
    return f;
}

/* snap_peek answers from the header alone. */
static void check_peek(const uint8_t *f, size_t flen)
{
    struct snap_info info;
    int rc = snap_peek(in_path, NULL, &info);
    if (flen < SNAP_HDR_SIZE) {
        assert(rc == LKV_ECORRUPT || rc == LKV_EIO);
        return;
    }
    int want = memcmp(f, magic, sizeof magic) != 0 || le(f + 60, 4) != crc32c(f, 60)
                   ? LKV_ECORRUPT
                   : (le(f + 8, 4) != 1 && le(f + 8, 4) != 2) ? LKV_EFORMAT : 0;
    assert(rc == want);
    if (rc == 0) {
        assert(info.index == le(f + 16, 8) && info.term == le(f + 24, 8));
        assert(info.records == le(f + 32, 8));
        assert(info.bytes == SNAP_HDR_SIZE + le(f + 40, 8));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t flen;
    uint8_t *file = build_file(data, size, &flen);
    write_file(in_path, file, flen, NULL, 0);

    size_t body_len = flen > SNAP_HDR_SIZE ? flen - SNAP_HDR_SIZE : 0;
    /* the records follow a version-2 file's configuration block */
    size_t conf = flen >= SNAP_HDR_SIZE && le(file + 8, 4) == 2 ? (size_t)le(file + 52, 4) : 0;
    if (conf > body_len)
        conf = body_len;
    /* Big files skip the rewrite check, and so need no map. */
    bool rewrite = flen < SNAP_WINDOW / 2;
    struct seen s = {.body = file + SNAP_HDR_SIZE + conf, .body_len = body_len - conf,
                     .map = rewrite ? kv_map_new() : NULL};
    if (rewrite && s.map == NULL)
        abort();
    struct snap_info info;
    memset(&info, 0, sizeof info);
    char err[512] = "";
    if (s.map != NULL)
        kv_map_write_lock(s.map);
    int rc = snap_load(in_path, NULL, record_cb, &s, &info, err, sizeof err);
    if (s.map != NULL)
        kv_map_write_unlock(s.map);
    bool header_ok;
    int want = model_load(file, flen, &header_ok);
    assert(rc == want);
    /* Whatever reached the callback was the body itself, record by record
     * (record_cb checked): all of it on success, a prefix of it (to be
     * thrown away) on error. */
    if (rc != 0) {
        assert(rc == LKV_ECORRUPT || rc == LKV_EFORMAT);
        assert(err[0] != '\0' && strchr(err, '\n') == NULL);
        /* A file whose header is bad gets no key through. */
        if (!header_ok)
            assert(s.n == 0);
    } else {
        assert(s.n == info.records && s.used == body_len - conf);
        assert(info.bytes == flen);
        assert(info.index == le(file + 16, 8) && info.term == le(file + 24, 8));
        if (info.index > 0 && rewrite)
            check_rewrite(s.map, &info);
    }
    check_peek(file, flen);
    if (s.map != NULL)
        kv_map_free(s.map);
    if (file != big_file)
        free(file);
    unlink(in_path);
    return 0;
}

#ifdef MAKE_SEEDS
/* Seed generator (run.sh builds this file with -DMAKE_SEEDS and without
 * libFuzzer): snapshots written by snap_write itself, as raw files and as
 * bodies behind a forged header. Usage: fuzz_snap_load-seeds OUTDIR */
static void emit(const char *outdir, const char *name, uint8_t flags, uint8_t count,
                 const uint8_t *p, size_t n)
{
    size_t pre = flags & 2 || SNAP_WINDOW_MODE ? 2 : 1;
    uint8_t *buf = malloc(pre + n);
    if (buf == NULL)
        abort();
    buf[0] = flags;
    if (pre == 2)
        buf[1] = count;
    memcpy(buf + pre, p, n);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", outdir, name);
    write_file(path, buf, pre + n, NULL, 0);
    assert(LLVMFuzzerTestOneInput(buf, pre + n) == 0);
    free(buf);
}

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        abort();
    static uint8_t buf[1 << 16];
    *n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    LLVMFuzzerInitialize(&argc, &argv);
    static const char *const keys[] = {"a", "user:42", "k.e_y-9", "zz"};
    static const char *const values[] = {"1", "{\"n\":1}", "", "value"};
    for (size_t nkeys = 0; nkeys <= 4; nkeys += 2) {
        struct kv_map *m = kv_map_new();
        kv_map_write_lock(m);
        for (size_t i = 0; i < nkeys; i++)
            put_cb(keys[i], strlen(keys[i]), values[i], strlen(values[i]), m);
        kv_map_write_unlock(m);
        struct snap_info info;
        char err[512];
        struct snap_conf conf = {.len = 3, .bytes = {1, 2, 3}};
        if (snap_write(dir, NULL, m, 5, 1, nkeys == 2 ? &conf : NULL, &info, err,
                       sizeof err) != 0) {
            fprintf(stderr, "snap_write: %s\n", err);
            return 1;
        }
        kv_map_free(m);
        char path[FUZZ_DIR_MAX + 64];
        uint64_t idx;
        assert(snap_find_latest(dir, path, sizeof path, &idx) == 1);
        size_t n;
        const uint8_t *f = read_all(path, &n);
        unlink(path);
        char name[64];
        const uint8_t *body = f + SNAP_HDR_SIZE;
        size_t blen = n - SNAP_HDR_SIZE;
        if (SNAP_WINDOW_MODE) {
            /* the next record header across the edge, a record just past
             * it, and the window grown by the filler */
            snprintf(name, sizeof name, "edge-header-%zu-keys", nkeys);
            emit(argv[1], name, 3 | 1 << 3, 0, body, blen);
            snprintf(name, sizeof name, "edge-record-%zu-keys", nkeys);
            emit(argv[1], name, 3 | 5 << 3, 0, body, blen);
            snprintf(name, sizeof name, "grown-%zu-keys", nkeys);
            emit(argv[1], name, 3 | 128, 0, body, blen);
            continue;
        }
        snprintf(name, sizeof name, "raw-%zu-keys", nkeys);
        emit(argv[1], name, 0, 0, f, n);
        snprintf(name, sizeof name, "body-%zu-keys", nkeys);
        emit(argv[1], name, 3, (uint8_t)nkeys, body, blen);
    }
    return 0;
}
#endif
