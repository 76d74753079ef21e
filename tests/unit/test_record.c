/* Unit tests for wal/record: exact byte layout, round trips, torn and
 * corrupted records, and segment headers. */
#include <criterion/criterion.h>

#include "util/crc32c.h"
#include "wal/record.h"

#include <stdlib.h>
#include <string.h>

static void le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Recomputes a record's crc after a test has edited its header on purpose,
 * so the decoder's field checks (not the crc) are what reject it. */
static void reseal(uint8_t *rec, size_t total)
{
    le32(rec, crc32c(rec + 4, total - 4));
}

static void reseal_seg(uint8_t *seg)
{
    le32(seg + 28, crc32c(seg, 28));
}

/* Heap copy of exactly n bytes so ASan flags any read past avail. */
static uint8_t *exact_copy(const uint8_t *src, size_t n)
{
    uint8_t *p = malloc(n > 0 ? n : 1);
    cr_assert_not_null(p);
    if (n > 0)
        memcpy(p, src, n);
    return p;
}

static const struct wal_rec_hdr sample = {
    .len = 20,
    .type = WAL_REC_COMMAND,
    .batch_pos = 3,
    .index = 0x0102030405060708ull,
    .term = 7,
};
static const char sample_payload[20] = "payload\0with\xff\x00nuls";

static size_t encode_sample(uint8_t *out)
{
    return wal_rec_encode(out, &sample, sample_payload);
}

Test(record, header_layout_is_little_endian)
{
    struct wal_rec_hdr h = {
        .len = 3,
        .type = WAL_REC_CONFIG,
        .batch_pos = 0x0A0B0C0Du,
        .index = 0x1122334455667788ull,
        .term = 0x99AABBCCDDEEFF01ull,
    };
    uint8_t rec[WAL_REC_HDR_SIZE + 3];
    cr_assert_eq(wal_rec_encode(rec, &h, "abc"), sizeof(rec));
    const uint8_t want[WAL_REC_HDR_SIZE - 4] = {
        0x03, 0x00, 0x00, 0x00,                         /* len */
        0x03, 0x00, 0x00, 0x00,                         /* type, flags, reserved */
        0x0D, 0x0C, 0x0B, 0x0A,                         /* batch_pos */
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* index */
        0x01, 0xFF, 0xEE, 0xDD, 0xCC, 0xBB, 0xAA, 0x99, /* term */
    };
    cr_assert_arr_eq(rec + 4, want, sizeof(want));
    cr_assert_arr_eq(rec + WAL_REC_HDR_SIZE, "abc", 3);
    uint32_t crc = crc32c(rec + 4, sizeof(rec) - 4);
    uint8_t crc_le[4];
    le32(crc_le, crc);
    cr_assert_arr_eq(rec, crc_le, 4);
}

Test(record, round_trip_every_type_and_size)
{
    static uint8_t payload[4096];
    static uint8_t rec[WAL_REC_HDR_SIZE + sizeof(payload)];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 31 + 5);
    const uint8_t types[] = {WAL_REC_COMMAND, WAL_REC_NOOP, WAL_REC_CONFIG};
    const uint32_t lens[] = {0, 1, 7, 8, 9, 31, 32, 33, 1000, sizeof(payload)};
    for (size_t t = 0; t < sizeof(types); t++) {
        for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
            struct wal_rec_hdr h = {.len = lens[l],
                                    .type = types[t],
                                    .batch_pos = (uint32_t)l,
                                    .index = UINT64_MAX - l,
                                    .term = UINT64_MAX};
            size_t n = wal_rec_encode(rec, &h, payload);
            cr_assert_eq(n, WAL_REC_HDR_SIZE + lens[l]);

            struct wal_rec_hdr got;
            const uint8_t *pl = NULL;
            enum wal_rec_status st = wal_rec_decode(rec, n, &got, &pl);
            cr_assert_eq(st, WAL_REC_OK, "type=%u len=%u: %s", types[t], lens[l],
                         wal_rec_status_str(st));
            cr_assert_eq(got.len, h.len);
            cr_assert_eq(got.type, h.type);
            cr_assert_eq(got.batch_pos, h.batch_pos);
            cr_assert_eq(got.index, h.index);
            cr_assert_eq(got.term, h.term);
            cr_assert_eq(pl, rec + WAL_REC_HDR_SIZE);
            cr_assert_arr_eq(pl, payload, lens[l]);
        }
    }
}

Test(record, scattered_payload_crc_matches_contiguous_encode)
{
    uint8_t whole[WAL_REC_HDR_SIZE + 20];
    encode_sample(whole);

    uint8_t hdr[WAL_REC_HDR_SIZE];
    wal_rec_hdr_pack(hdr, &sample);
    uint32_t crc = wal_rec_crc_begin(hdr);
    crc = crc32c_extend(crc, sample_payload, 5);
    crc = crc32c_extend(crc, sample_payload + 5, 0);
    crc = crc32c_extend(crc, sample_payload + 5, 15);
    wal_rec_hdr_seal(hdr, crc);
    cr_assert_arr_eq(hdr, whole, WAL_REC_HDR_SIZE);
}

Test(record, trailing_bytes_after_record_are_ignored)
{
    uint8_t buf[WAL_REC_HDR_SIZE + 20 + 50];
    memset(buf, 0xAB, sizeof(buf));
    encode_sample(buf);
    struct wal_rec_hdr got;
    cr_assert_eq(wal_rec_decode(buf, sizeof(buf), &got, NULL), WAL_REC_OK);
    cr_assert_eq(got.len, 20);
}

Test(record, walk_several_records_back_to_back)
{
    uint8_t buf[512] = {0};
    size_t off = 0;
    for (uint32_t i = 0; i < 5; i++) {
        struct wal_rec_hdr h = {
            .len = i * 3, .type = WAL_REC_COMMAND, .batch_pos = i, .index = 10 + i, .term = 2};
        off += wal_rec_encode(buf + off, &h, "abcdefghijklmnopqrstuvwxyz");
    }
    size_t pos = 0;
    uint64_t want_index = 10;
    for (;;) {
        struct wal_rec_hdr got;
        enum wal_rec_status st = wal_rec_decode(buf + pos, sizeof(buf) - pos, &got, NULL);
        if (st != WAL_REC_OK) {
            /* The rest of the buffer is zero: the scan ends on preallocated space. */
            cr_assert_eq(st, WAL_REC_ZERO, "pos=%zu: %s", pos, wal_rec_status_str(st));
            break;
        }
        cr_assert_eq(got.index, want_index++);
        pos += WAL_REC_HDR_SIZE + got.len;
    }
    cr_assert_eq(pos, off);
    cr_assert_eq(want_index, 15);
}

/* A record cut at any byte is SHORT, never ZERO (a valid header has a
 * nonzero type and index, so no prefix of 32+ bytes is all zero) and never
 * BAD (the header is intact once 32 bytes are there). */
Test(record, torn_record_is_short_at_every_length)
{
    uint8_t rec[WAL_REC_HDR_SIZE + 20];
    size_t total = encode_sample(rec);
    for (size_t n = 0; n < total; n++) {
        uint8_t *cut = exact_copy(rec, n);
        struct wal_rec_hdr got = {0};
        enum wal_rec_status st = wal_rec_decode(cut, n, &got, NULL);
        cr_assert_eq(st, WAL_REC_SHORT, "avail=%zu: %s", n, wal_rec_status_str(st));
        if (n >= WAL_REC_HDR_SIZE)
            cr_assert_eq(got.len, sample.len, "SHORT must report the needed length");
        free(cut);
    }
}

/* A write torn inside preallocated space leaves zeros where the rest of the
 * record should be: the full length is readable, so it is BAD, not SHORT. */
Test(record, torn_record_over_zeroed_space_is_bad)
{
    uint8_t rec[WAL_REC_HDR_SIZE + 20];
    size_t total = encode_sample(rec);
    for (size_t n = WAL_REC_HDR_SIZE; n < total; n++) {
        uint8_t buf[WAL_REC_HDR_SIZE + 20] = {0};
        memcpy(buf, rec, n);
        if (memcmp(buf, rec, total) == 0)
            continue; /* the lost tail happened to be zeros already */
        struct wal_rec_hdr got;
        cr_assert_eq(wal_rec_decode(buf, total, &got, NULL), WAL_REC_BAD, "kept=%zu", n);
    }
}

/* Flipping any one bit is detected: BAD, or SHORT only when the flip raised
 * the length field past what is available. */
Test(record, every_single_bit_flip_is_detected)
{
    uint8_t rec[WAL_REC_HDR_SIZE + 20];
    size_t total = encode_sample(rec);
    for (size_t bit = 0; bit < total * 8; bit++) {
        uint8_t *bad = exact_copy(rec, total);
        bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        struct wal_rec_hdr got;
        enum wal_rec_status st = wal_rec_decode(bad, total, &got, NULL);
        bool len_raised = bit / 8 >= 4 && bit / 8 < 8 && (rec[bit / 8] & (1u << (bit % 8))) == 0;
        if (len_raised && st == WAL_REC_SHORT)
            cr_assert_gt(got.len, sample.len);
        else
            cr_assert_eq(st, WAL_REC_BAD, "bit %zu: %s", bit, wal_rec_status_str(st));
        free(bad);
    }
}

Test(record, nonzero_flags_or_reserved_is_bad_even_with_good_crc)
{
    const size_t offs[] = {9, 10, 11};
    for (size_t i = 0; i < 3; i++) {
        uint8_t rec[WAL_REC_HDR_SIZE + 20];
        size_t total = encode_sample(rec);
        rec[offs[i]] = 0x01;
        reseal(rec, total);
        struct wal_rec_hdr got;
        cr_assert_eq(wal_rec_decode(rec, total, &got, NULL), WAL_REC_BAD, "byte %zu", offs[i]);
    }
}

Test(record, unknown_type_is_bad)
{
    const uint8_t types[] = {0, 4, 0x81, 0xFF};
    for (size_t i = 0; i < sizeof(types); i++) {
        uint8_t rec[WAL_REC_HDR_SIZE + 20];
        size_t total = encode_sample(rec);
        rec[8] = types[i];
        reseal(rec, total);
        struct wal_rec_hdr got;
        cr_assert_eq(wal_rec_decode(rec, total, &got, NULL), WAL_REC_BAD, "type %u", types[i]);
    }
}

Test(record, index_zero_is_bad)
{
    uint8_t rec[WAL_REC_HDR_SIZE + 20];
    size_t total = encode_sample(rec);
    memset(rec + 16, 0, 8);
    reseal(rec, total);
    struct wal_rec_hdr got;
    cr_assert_eq(wal_rec_decode(rec, total, &got, NULL), WAL_REC_BAD);
}

/* An oversized length must be rejected from the header alone, so recovery
 * never waits for or allocates a huge payload. */
Test(record, length_over_max_is_bad_not_short)
{
    uint8_t hdr[WAL_REC_HDR_SIZE];
    struct wal_rec_hdr h = sample;
    h.len = 0;
    wal_rec_hdr_pack(hdr, &h);
    le32(hdr + 4, WAL_REC_MAX_PAYLOAD + 1);
    wal_rec_hdr_seal(hdr, wal_rec_crc_begin(hdr));
    struct wal_rec_hdr got;
    cr_assert_eq(wal_rec_decode(hdr, sizeof(hdr), &got, NULL), WAL_REC_BAD);
    le32(hdr + 4, UINT32_MAX);
    cr_assert_eq(wal_rec_decode(hdr, sizeof(hdr), &got, NULL), WAL_REC_BAD);

    le32(hdr + 4, WAL_REC_MAX_PAYLOAD);
    cr_assert_eq(wal_rec_decode(hdr, sizeof(hdr), &got, NULL), WAL_REC_SHORT);
    cr_assert_eq(got.len, WAL_REC_MAX_PAYLOAD);
}

Test(record, max_payload_round_trips)
{
    size_t total = WAL_REC_HDR_SIZE + (size_t)WAL_REC_MAX_PAYLOAD;
    uint8_t *payload = calloc(1, WAL_REC_MAX_PAYLOAD);
    uint8_t *rec = malloc(total);
    cr_assert(payload && rec);
    payload[WAL_REC_MAX_PAYLOAD - 1] = 0x5A;
    struct wal_rec_hdr h = sample;
    h.len = WAL_REC_MAX_PAYLOAD;
    cr_assert_eq(wal_rec_encode(rec, &h, payload), total);
    struct wal_rec_hdr got;
    const uint8_t *pl;
    cr_assert_eq(wal_rec_decode(rec, total, &got, &pl), WAL_REC_OK);
    cr_assert_eq(pl[WAL_REC_MAX_PAYLOAD - 1], 0x5A);
    free(payload);
    free(rec);
}

Test(record, all_zero_header_is_zero)
{
    uint8_t buf[4096] = {0};
    struct wal_rec_hdr got;
    cr_assert_eq(wal_rec_decode(buf, WAL_REC_HDR_SIZE, &got, NULL), WAL_REC_ZERO);
    cr_assert_eq(wal_rec_decode(buf, sizeof(buf), &got, NULL), WAL_REC_ZERO);
    /* Too few bytes to tell preallocation from a torn header. */
    cr_assert_eq(wal_rec_decode(buf, WAL_REC_HDR_SIZE - 1, &got, NULL), WAL_REC_SHORT);
    /* One nonzero byte anywhere in the header makes it a (bad) record. */
    for (size_t i = 0; i < WAL_REC_HDR_SIZE; i++) {
        buf[i] = 1;
        cr_assert_eq(wal_rec_decode(buf, sizeof(buf), &got, NULL), WAL_REC_BAD, "byte %zu", i);
        buf[i] = 0;
    }
}

Test(record, failed_decode_leaves_outputs_untouched)
{
    uint8_t rec[WAL_REC_HDR_SIZE + 20];
    size_t total = encode_sample(rec);
    rec[total - 1] ^= 0x10;
    struct wal_rec_hdr got = {.len = 0xDEAD};
    const uint8_t *pl = (const uint8_t *)"sentinel";
    cr_assert_eq(wal_rec_decode(rec, total, &got, &pl), WAL_REC_BAD);
    cr_assert_eq(got.len, 0xDEAD);
    cr_assert_str_eq((const char *)pl, "sentinel");
}

Test(record, status_strings_are_distinct)
{
    const enum wal_rec_status all[] = {WAL_REC_OK, WAL_REC_ZERO, WAL_REC_SHORT, WAL_REC_BAD};
    for (size_t i = 0; i < 4; i++)
        for (size_t j = i + 1; j < 4; j++)
            cr_expect_str_neq(wal_rec_status_str(all[i]), wal_rec_status_str(all[j]));
    cr_expect_str_eq(wal_rec_status_str(WAL_REC_SHORT), "short");
}

/* Segment headers. */

Test(segment, layout_and_round_trip)
{
    uint8_t seg[WAL_SEG_HDR_SIZE];
    wal_seg_hdr_encode(seg, 0x0102030405060708ull);
    const uint8_t want[28] = {
        'L',  'K',  'V',  'L',  'O',  'G',  0x00, 0x01, /* magic */
        0x01, 0x00, 0x00, 0x00,                         /* version */
        0x00, 0x00, 0x00, 0x00,                         /* reserved */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* first index */
        0x00, 0x00, 0x00, 0x00,                         /* reserved */
    };
    cr_assert_arr_eq(seg, want, sizeof(want));
    uint8_t crc_le[4];
    le32(crc_le, crc32c(seg, 28));
    cr_assert_arr_eq(seg + 28, crc_le, 4);

    uint64_t first = 0;
    cr_assert_eq(wal_seg_hdr_decode(seg, sizeof(seg), &first), WAL_SEG_OK);
    cr_assert_eq(first, 0x0102030405060708ull);

    wal_seg_hdr_encode(seg, 1);
    cr_assert_eq(wal_seg_hdr_decode(seg, sizeof(seg), &first), WAL_SEG_OK);
    cr_assert_eq(first, 1);
}

Test(segment, short_and_zero)
{
    uint8_t seg[WAL_SEG_HDR_SIZE];
    wal_seg_hdr_encode(seg, 5);
    uint64_t first = 99;
    for (size_t n = 0; n < WAL_SEG_HDR_SIZE; n++) {
        uint8_t *cut = exact_copy(seg, n);
        cr_assert_eq(wal_seg_hdr_decode(cut, n, &first), WAL_SEG_SHORT, "avail=%zu", n);
        free(cut);
    }
    uint8_t zero[WAL_SEG_HDR_SIZE] = {0};
    cr_assert_eq(wal_seg_hdr_decode(zero, sizeof(zero), &first), WAL_SEG_ZERO);
    cr_assert_eq(first, 99);
}

Test(segment, bad_magic)
{
    for (size_t i = 0; i < 8; i++) {
        uint8_t seg[WAL_SEG_HDR_SIZE];
        wal_seg_hdr_encode(seg, 5);
        seg[i] ^= 0x20;
        reseal_seg(seg);
        uint64_t first;
        cr_assert_eq(wal_seg_hdr_decode(seg, sizeof(seg), &first), WAL_SEG_BAD_MAGIC, "byte %zu",
                     i);
    }
}

/* A newer program's intact header is "unsupported version"; the same
 * version bytes with a broken crc are damage. */
Test(segment, unsupported_version_vs_damaged_version)
{
    const uint32_t versions[] = {0, 2, 0x100, UINT32_MAX};
    for (size_t i = 0; i < 4; i++) {
        uint8_t seg[WAL_SEG_HDR_SIZE];
        wal_seg_hdr_encode(seg, 5);
        le32(seg + 8, versions[i]);
        uint64_t first = 0;
        cr_assert_eq(wal_seg_hdr_decode(seg, sizeof(seg), &first), WAL_SEG_BAD_CRC, "v=%u",
                     versions[i]);
        reseal_seg(seg);
        cr_assert_eq(wal_seg_hdr_decode(seg, sizeof(seg), &first), WAL_SEG_BAD_VERSION, "v=%u",
                     versions[i]);
        cr_assert_eq(first, 0);
    }
}

Test(segment, every_bit_flip_outside_magic_is_bad_crc)
{
    uint8_t good[WAL_SEG_HDR_SIZE];
    wal_seg_hdr_encode(good, 1234);
    for (size_t bit = 0; bit < WAL_SEG_HDR_SIZE * 8; bit++) {
        uint8_t seg[WAL_SEG_HDR_SIZE];
        memcpy(seg, good, sizeof(seg));
        seg[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        uint64_t first;
        enum wal_seg_status want = bit / 8 < 8 ? WAL_SEG_BAD_MAGIC : WAL_SEG_BAD_CRC;
        enum wal_seg_status st = wal_seg_hdr_decode(seg, sizeof(seg), &first);
        cr_assert_eq(st, want, "bit %zu: %s", bit, wal_seg_status_str(st));
    }
}

Test(segment, reserved_or_zero_first_index_is_bad_field)
{
    const size_t offs[] = {12, 15, 24, 27};
    for (size_t i = 0; i < 4; i++) {
        uint8_t seg[WAL_SEG_HDR_SIZE];
        wal_seg_hdr_encode(seg, 5);
        seg[offs[i]] = 1;
        reseal_seg(seg);
        uint64_t first;
        cr_assert_eq(wal_seg_hdr_decode(seg, sizeof(seg), &first), WAL_SEG_BAD_FIELD, "byte %zu",
                     offs[i]);
    }
    uint8_t seg[WAL_SEG_HDR_SIZE];
    wal_seg_hdr_encode(seg, 5);
    memset(seg + 16, 0, 8);
    reseal_seg(seg);
    uint64_t first;
    cr_assert_eq(wal_seg_hdr_decode(seg, sizeof(seg), &first), WAL_SEG_BAD_FIELD);
}

Test(segment, status_strings_are_distinct)
{
    for (int i = WAL_SEG_OK; i <= WAL_SEG_BAD_FIELD; i++)
        for (int j = i + 1; j <= WAL_SEG_BAD_FIELD; j++)
            cr_expect_str_neq(wal_seg_status_str((enum wal_seg_status)i),
                              wal_seg_status_str((enum wal_seg_status)j));
    cr_expect_str_eq(wal_seg_status_str(WAL_SEG_BAD_VERSION), "unsupported version");
}
