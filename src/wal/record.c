#include "wal/record.h"

#include "util/crc32c.h"
#include "util/endian.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>

static const uint8_t seg_magic[8] = {'L', 'K', 'V', 'L', 'O', 'G', 0x00, 0x01};

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

static bool type_known(uint8_t type)
{
    return type == WAL_REC_COMMAND || type == WAL_REC_NOOP || type == WAL_REC_CONFIG;
}

void wal_rec_hdr_pack(uint8_t out[WAL_REC_HDR_SIZE], const struct wal_rec_hdr *h)
{
    assert(h->len <= WAL_REC_MAX_PAYLOAD);
    assert(type_known(h->type));
    assert(h->index > 0);
    le_put32(out + 0, 0);
    le_put32(out + 4, h->len);
    out[8] = h->type;
    out[9] = 0;
    le_put16(out + 10, 0);
    le_put32(out + 12, h->batch_pos);
    le_put64(out + 16, h->index);
    le_put64(out + 24, h->term);
}

uint32_t wal_rec_crc_begin(const uint8_t hdr[WAL_REC_HDR_SIZE])
{
    return crc32c(hdr + 4, WAL_REC_HDR_SIZE - 4);
}

void wal_rec_hdr_seal(uint8_t hdr[WAL_REC_HDR_SIZE], uint32_t crc)
{
    le_put32(hdr, crc);
}

size_t wal_rec_encode(uint8_t *out, const struct wal_rec_hdr *h, const void *payload)
{
    wal_rec_hdr_pack(out, h);
    if (h->len > 0)
        memcpy(out + WAL_REC_HDR_SIZE, payload, h->len);
    wal_rec_hdr_seal(out, crc32c(out + 4, WAL_REC_HDR_SIZE - 4 + (size_t)h->len));
    return WAL_REC_HDR_SIZE + (size_t)h->len;
}

enum wal_rec_status wal_rec_decode(const uint8_t *buf, size_t avail, struct wal_rec_hdr *out,
                                   const uint8_t **payload)
{
    if (avail < WAL_REC_HDR_SIZE)
        return WAL_REC_SHORT;
    if (all_zero(buf, WAL_REC_HDR_SIZE))
        return WAL_REC_ZERO;

    struct wal_rec_hdr h = {
        .len = le_get32(buf + 4),
        .type = buf[8],
        .batch_pos = le_get32(buf + 12),
        .index = le_get64(buf + 16),
        .term = le_get64(buf + 24),
    };
    if (buf[9] != 0 || le_get16(buf + 10) != 0 || !type_known(h.type) || h.index == 0 ||
        h.len > WAL_REC_MAX_PAYLOAD)
        return WAL_REC_BAD;
    if (avail - WAL_REC_HDR_SIZE < h.len) {
        *out = h;
        return WAL_REC_SHORT;
    }
    if (crc32c(buf + 4, WAL_REC_HDR_SIZE - 4 + (size_t)h.len) != le_get32(buf))
        return WAL_REC_BAD;

    *out = h;
    if (payload != NULL)
        *payload = buf + WAL_REC_HDR_SIZE;
    return WAL_REC_OK;
}

const char *wal_rec_status_str(enum wal_rec_status s)
{
    switch (s) {
    case WAL_REC_OK:
        return "ok";
    case WAL_REC_ZERO:
        return "zero";
    case WAL_REC_SHORT:
        return "short";
    case WAL_REC_BAD:
        return "bad";
    }
    return "unknown";
}

void wal_seg_hdr_encode(uint8_t out[WAL_SEG_HDR_SIZE], uint64_t first_index)
{
    assert(first_index > 0);
    memcpy(out, seg_magic, sizeof(seg_magic));
    le_put32(out + 8, WAL_FORMAT_VERSION);
    le_put32(out + 12, 0);
    le_put64(out + 16, first_index);
    le_put32(out + 24, 0);
    le_put32(out + 28, crc32c(out, 28));
}

enum wal_seg_status wal_seg_hdr_decode(const uint8_t *buf, size_t avail, uint64_t *first_index)
{
    if (avail < WAL_SEG_HDR_SIZE)
        return WAL_SEG_SHORT;
    if (all_zero(buf, WAL_SEG_HDR_SIZE))
        return WAL_SEG_ZERO;
    if (memcmp(buf, seg_magic, sizeof(seg_magic)) != 0)
        return WAL_SEG_BAD_MAGIC;
    /* crc before version: see the layout comment in record.h. */
    if (crc32c(buf, 28) != le_get32(buf + 28))
        return WAL_SEG_BAD_CRC;
    if (le_get32(buf + 8) != WAL_FORMAT_VERSION)
        return WAL_SEG_BAD_VERSION;
    uint64_t first = le_get64(buf + 16);
    if (le_get32(buf + 12) != 0 || le_get32(buf + 24) != 0 || first == 0)
        return WAL_SEG_BAD_FIELD;
    *first_index = first;
    return WAL_SEG_OK;
}

const char *wal_seg_status_str(enum wal_seg_status s)
{
    switch (s) {
    case WAL_SEG_OK:
        return "ok";
    case WAL_SEG_SHORT:
        return "short";
    case WAL_SEG_ZERO:
        return "zero";
    case WAL_SEG_BAD_MAGIC:
        return "bad magic";
    case WAL_SEG_BAD_CRC:
        return "bad crc";
    case WAL_SEG_BAD_VERSION:
        return "unsupported version";
    case WAL_SEG_BAD_FIELD:
        return "bad field";
    }
    return "unknown";
}
