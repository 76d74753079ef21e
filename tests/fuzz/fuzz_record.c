/* libFuzzer target: scans arbitrary bytes as a segment (header, then records)
 * the way recovery does, checking the decoder's invariants on every step. */
#include "util/crc32c.h"
#include "wal/record.h"

#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

static void check_seg_hdr(const uint8_t *data, size_t size)
{
    uint64_t first = 0;
    enum wal_seg_status st = wal_seg_hdr_decode(data, size, &first);
    assert(wal_seg_status_str(st) != NULL);
    if (st == WAL_SEG_SHORT)
        assert(size < WAL_SEG_HDR_SIZE);
    if (st == WAL_SEG_ZERO)
        assert(all_zero(data, WAL_SEG_HDR_SIZE));
    if (st == WAL_SEG_OK) {
        uint8_t again[WAL_SEG_HDR_SIZE];
        assert(first > 0);
        wal_seg_hdr_encode(again, first);
        assert(memcmp(again, data, WAL_SEG_HDR_SIZE) == 0);
    }
}

/* A record that decodes OK must re-encode, through both the contiguous and
 * the scattered-payload paths, to exactly the bytes it came from. */
static void check_reencode(const uint8_t *rec, const struct wal_rec_hdr *h, const uint8_t *pl)
{
    size_t total = WAL_REC_HDR_SIZE + (size_t)h->len;
    uint8_t *again = malloc(total);
    if (again == NULL)
        abort();
    assert(wal_rec_encode(again, h, pl) == total);
    assert(memcmp(again, rec, total) == 0);
    free(again);

    uint8_t hdr[WAL_REC_HDR_SIZE];
    wal_rec_hdr_pack(hdr, h);
    uint32_t crc = wal_rec_crc_begin(hdr);
    size_t half = h->len / 2;
    crc = crc32c_extend(crc, pl, half);
    crc = crc32c_extend(crc, pl + half, h->len - half);
    wal_rec_hdr_seal(hdr, crc);
    assert(memcmp(hdr, rec, WAL_REC_HDR_SIZE) == 0);
}

static void scan_records(const uint8_t *data, size_t size)
{
    size_t pos = 0;
    for (;;) {
        size_t avail = size - pos;
        struct wal_rec_hdr h;
        const uint8_t *pl = NULL;
        enum wal_rec_status st = wal_rec_decode(data + pos, avail, &h, &pl);
        assert(wal_rec_status_str(st) != NULL);
        switch (st) {
        case WAL_REC_OK:
            assert(pl == data + pos + WAL_REC_HDR_SIZE);
            assert(h.len <= WAL_REC_MAX_PAYLOAD && h.index > 0);
            assert(h.len <= avail - WAL_REC_HDR_SIZE);
            check_reencode(data + pos, &h, pl);
            pos += WAL_REC_HDR_SIZE + h.len;
            continue;
        case WAL_REC_ZERO:
            assert(avail >= WAL_REC_HDR_SIZE && all_zero(data + pos, WAL_REC_HDR_SIZE));
            return;
        case WAL_REC_SHORT:
            assert(avail < WAL_REC_HDR_SIZE ||
                   (h.len <= WAL_REC_MAX_PAYLOAD && h.len > avail - WAL_REC_HDR_SIZE));
            return;
        case WAL_REC_BAD:
            assert(avail >= WAL_REC_HDR_SIZE && !all_zero(data + pos, WAL_REC_HDR_SIZE));
            return;
        }
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_seg_hdr(data, size);
    /* Records start after the segment header in a real file, but scanning
     * from 0 too lets the fuzzer reach record decoding without first
     * forging a valid segment header. */
    scan_records(data, size);
    if (size >= WAL_SEG_HDR_SIZE)
        scan_records(data + WAL_SEG_HDR_SIZE, size - WAL_SEG_HDR_SIZE);

    assert(crc32c(data, size) == crc32c_extend_sw(0, data, size));
    return 0;
}
