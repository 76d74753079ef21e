/* libFuzzer target: the meta record (version 2, 64 bytes; version 1, 40
 * bytes, is still read). Checks meta_decode against the documented layout,
 * round-trips decode -> encode -> decode, and checks that meta_load on a
 * file agrees with meta_decode on the same bytes.
 *
 * Input: byte 0 holds flags; bit 0 set makes the rest a forged record
 * (zero-padded to 64 bytes, or 40 with bit 3) with the magic (unless bit 1)
 * and a correct CRC, so the fuzzer spends its time past the checksum half
 * of the time. */
#include "util/crc32c.h"
#include "util/err.h"
#include "wal/meta.h"
#include "tmpdir.h"

#include <assert.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const uint8_t magic[8] = {'L', 'K', 'V', 'M', 'E', 'T', 'A', 0};

static char dir[FUZZ_DIR_MAX];
static char path[FUZZ_DIR_MAX + 16];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_make_tmpdir(dir, "meta");
    snprintf(path, sizeof path, "%s/" META_FILE, dir);
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

/* What meta_decode must answer, from docs/disk-format.md: every version
 * ends in a CRC of the bytes before it; versions 1 and 2 have fixed sizes. */
static int model_decode(const uint8_t *buf, size_t len)
{
    if (len < 16 || memcmp(buf, magic, sizeof magic) != 0 ||
        le(buf + len - 4, 4) != crc32c(buf, len - 4))
        return LKV_ECORRUPT;
    uint64_t v = le(buf + 8, 4);
    if (v == 1)
        return len == META_SIZE_V1 ? 0 : LKV_ECORRUPT;
    if (v == 2)
        return len == META_SIZE ? 0 : LKV_ECORRUPT;
    return LKV_EFORMAT;
}

/* Reserved bytes of a version-2 record. */
static bool reserved_zero(const uint8_t *buf)
{
    for (size_t i = 40; i < 60; i++) {
        if (buf[i])
            return false;
    }
    return le(buf + 12, 4) == 0;
}

static void write_file(const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        abort();
    if (size > 0 && write(fd, data, size) != (ssize_t)size)
        abort();
    close(fd);
}

/* meta_load must agree with meta_decode: 1 for an intact record, the same
 * error otherwise, with a reason in err. */
static void check_load(const uint8_t *buf, size_t len, int decode_rc, const struct meta *dm)
{
    write_file(buf, len);
    struct meta m;
    char err[256] = "";
    int rc = meta_load(dir, NULL, &m, err, sizeof err);
    if (decode_rc == 0) {
        assert(rc == 1);
        assert(m.version == dm->version && m.term == dm->term && m.vote == dm->vote &&
               m.cluster_id == dm->cluster_id);
    } else {
        assert(rc == decode_rc);
        assert(err[0] != '\0' && memchr(err, '\n', strlen(err)) == NULL);
    }
}

/* Encoding any struct and decoding it gives its fields back as version 2,
 * with zero reserved bytes. */
static void check_encode(const struct meta *m)
{
    uint8_t buf[META_SIZE];
    meta_encode(buf, m);
    assert(memcmp(buf, magic, sizeof magic) == 0 && reserved_zero(buf));
    struct meta back;
    memset(&back, 0xa5, sizeof back);
    assert(meta_decode(buf, sizeof buf, &back) == 0);
    assert(back.version == META_FORMAT_VERSION && back.term == m->term &&
           back.vote == m->vote && back.cluster_id == m->cluster_id);
}

static void check_decoded(const uint8_t *buf, size_t len, const struct meta *m)
{
    assert(m->version == le(buf + 8, 4));
    assert(m->term == le(buf + 16, 8) && m->vote == le(buf + 24, 8));
    assert(m->cluster_id == (m->version >= 2 ? le(buf + 32, 8) : 0));
    uint8_t again[META_SIZE];
    meta_encode(again, m);
    /* Reserved bytes are not checked by the reader, so only the fields
     * survive; a version-2 record with zero reserved bytes comes back bit
     * for bit. */
    if (m->version == 2 && reserved_zero(buf))
        assert(memcmp(again, buf, META_SIZE) == 0);
    /* A record cut short or followed by anything is what the model says. */
    uint8_t longer[META_SIZE + 1];
    memcpy(longer, buf, len);
    longer[len] = 0;
    struct meta other;
    assert(meta_decode(longer, len + 1, &other) == model_decode(longer, len + 1));
    assert(meta_decode(buf, len - 1, &other) == model_decode(buf, len - 1));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    uint8_t forged[META_SIZE];
    if (flags & 1) {
        size_t flen = (flags & 8) ? META_SIZE_V1 : META_SIZE;
        memset(forged, 0, sizeof forged);
        memcpy(forged, in, len < flen ? len : flen);
        if (!(flags & 2))
            memcpy(forged, magic, sizeof magic);
        put(forged + flen - 4, crc32c(forged, flen - 4), 4);
        in = forged;
        len = flen;
    }

    struct meta m;
    memset(&m, 0, sizeof m);
    int rc = meta_decode(in, len, &m);
    assert(rc == 0 || rc == LKV_ECORRUPT || rc == LKV_EFORMAT);
    assert(rc == model_decode(in, len));
    if (rc == LKV_EFORMAT)
        assert(m.version == le(in + 8, 4));
    if (rc == 0)
        check_decoded(in, len, &m);
    check_load(in, len, rc, &m);

    if (len >= 28) {
        struct meta any = {.term = le(in + 4, 8), .vote = le(in + 12, 8),
                           .cluster_id = le(in + 20, 8)};
        check_encode(&any);
        assert(meta_store(dir, NULL, &any) == 0);
        struct meta back;
        char err[256] = "";
        assert(meta_load(dir, NULL, &back, err, sizeof err) == 1);
        assert(back.term == any.term && back.vote == any.vote &&
               back.cluster_id == any.cluster_id);
    }
    return 0;
}

#ifdef MAKE_SEEDS
/* Seed generator (run.sh builds this file with -DMAKE_SEEDS and without
 * libFuzzer): records from meta_encode itself. Usage: fuzz_meta-seeds OUTDIR */
static void emit(const char *outdir, const char *name, uint8_t flags, const struct meta *m)
{
    uint8_t buf[1 + META_SIZE];
    buf[0] = flags;
    meta_encode(buf + 1, m);
    char p[512];
    snprintf(p, sizeof p, "%s/%s", outdir, name);
    FILE *f = fopen(p, "wb");
    if (f == NULL || fwrite(buf, 1, sizeof buf, f) != sizeof buf)
        abort();
    fclose(f);
    assert(LLVMFuzzerTestOneInput(buf, sizeof buf) == 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    LLVMFuzzerInitialize(&argc, &argv);
    emit(argv[1], "fresh", 0, &(struct meta){0});
    emit(argv[1], "term-vote-cluster", 0,
         &(struct meta){.term = 7, .vote = 3, .cluster_id = 0x1234abcd});
    emit(argv[1], "forged", 1, &(struct meta){.term = 9});
    emit(argv[1], "forged-v1", 1 | 8, &(struct meta){.term = 9});
    /* a version-1 record as the previous release wrote it */
    uint8_t v1[1 + META_SIZE_V1] = {0};
    memcpy(v1 + 1, magic, sizeof magic);
    put(v1 + 1 + 8, 1, 4);
    put(v1 + 1 + 16, 5, 8);
    put(v1 + 1 + 36, crc32c(v1 + 1, 36), 4);
    char p[512];
    snprintf(p, sizeof p, "%s/version-1", argv[1]);
    FILE *f = fopen(p, "wb");
    if (f == NULL || fwrite(v1, 1, sizeof v1, f) != sizeof v1)
        abort();
    fclose(f);
    assert(LLVMFuzzerTestOneInput(v1, sizeof v1) == 0);
    return 0;
}
#endif
