/* Unit tests for transport/codec: every message type round-trips, and
 * damage of any kind (truncation, a flipped bit, wrong version, counts the
 * bytes cannot hold, a bad entry) is refused without reading out of bounds. */
#include <criterion/criterion.h>

#include "transport/codec.h"
#include "util/crc32c.h"
#include "util/endian.h"
#include "util/err.h"

#include <stdlib.h>
#include <string.h>

static struct lkv_blob *blob(const char *s)
{
    return lkv_blob_copy(s, strlen(s));
}

/* A batch of one of each kind of message. */
static void sample(struct buf *out, struct lkv_blob **keep)
{
    keep[0] = blob("\x01\x01\x00\x00\x00" "kvalue");
    keep[1] = blob("config-ish");
    struct raft_entry e[3] = {{.index = 11, .term = 4, .type = RAFT_ENTRY_COMMAND, .data = keep[0]},
                              {.index = 12, .term = 4, .type = RAFT_ENTRY_NOOP},
                              {.index = 13, .term = 5, .type = RAFT_ENTRY_CONFIG, .data = keep[1]}};
    struct raft_snapshot s = {.index = 99, .term = 4};
    s.conf.n = 2;
    s.conf.m[0] = (struct raft_member){.id = 3, .flags = RAFT_VOTER_IN, .addr = "a:1"};
    s.conf.m[1] = (struct raft_member){.id = 8, .flags = 0, .addr = "b:2"};
    struct raft_msg m[6] = {
        {.type = RAFT_MSG_APPEND, .term = 5, .index = 10, .log_term = 3, .commit = 9,
         .entries = e, .n_entries = 3},
        {.type = RAFT_MSG_APPEND_RESP, .term = 5, .index = 10, .reject = true, .hint = 7,
         .log_term = 2},
        {.type = RAFT_MSG_VOTE, .term = 6, .index = 13, .log_term = 5, .transfer = true},
        {.type = RAFT_MSG_HEARTBEAT, .term = 5, .commit = 12, .ctx = 77},
        {.type = RAFT_MSG_SNAPSHOT, .term = 5, .snap = &s},
        {.type = RAFT_MSG_TIMEOUT_NOW, .term = 5},
    };
    struct tp_header h = {.cluster_id = 0xABCDEF, .from = 3, .to = 8};
    cr_assert_eq(tp_encode(&h, m, 6, out), 0);
}

Test(codec, every_message_type_round_trips)
{
    struct buf b = {0};
    struct lkv_blob *keep[2];
    sample(&b, keep);
    struct tp_batch d;
    cr_assert_eq(tp_decode((const uint8_t *)b.data, b.len, &d), 0);
    cr_assert_eq(d.hdr.cluster_id, 0xABCDEF);
    cr_assert_eq(d.hdr.from, 3);
    cr_assert_eq(d.n, 6);
    struct raft_msg *a = &d.msgs[0];
    cr_assert_eq(a->type, RAFT_MSG_APPEND);
    cr_assert_eq(a->from, 3);
    cr_assert_eq(a->to, 8);
    cr_assert_eq(a->n_entries, 3);
    cr_assert_eq(a->entries[0].data->len, keep[0]->len);
    cr_assert_eq(memcmp(a->entries[0].data->data, keep[0]->data, keep[0]->len), 0);
    cr_assert_null(a->entries[1].data);
    cr_assert_eq(a->entries[2].term, 5);
    cr_assert_eq(a->entries[2].type, RAFT_ENTRY_CONFIG);
    cr_assert(d.msgs[1].reject);
    cr_assert_eq(d.msgs[1].hint, 7);
    cr_assert(d.msgs[2].transfer);
    cr_assert_eq(d.msgs[3].ctx, 77);
    cr_assert_eq(d.msgs[4].snap->index, 99);
    cr_assert_eq(d.msgs[4].snap->conf.n, 2);
    cr_assert_str_eq(d.msgs[4].snap->conf.m[1].addr, "b:2");
    cr_assert_eq(d.msgs[5].type, RAFT_MSG_TIMEOUT_NOW);
    /* the one encoding: re-encoding gives the same bytes */
    struct buf again = {0};
    cr_assert_eq(tp_encode(&d.hdr, d.msgs, d.n, &again), 0);
    cr_assert_eq(again.len, b.len);
    cr_assert_eq(memcmp(again.data, b.data, b.len), 0);
    tp_batch_free(&d);
    buf_free(&again);
    buf_free(&b);
    lkv_blob_unref(keep[0]);
    lkv_blob_unref(keep[1]);
}

Test(codec, every_truncation_and_every_flipped_bit_is_refused)
{
    struct buf b = {0};
    struct lkv_blob *keep[2];
    sample(&b, keep);
    uint8_t *p = (uint8_t *)b.data;
    struct tp_batch d;
    for (size_t cut = 0; cut < b.len; cut++)
        cr_assert_neq(tp_decode(p, cut, &d), 0, "decoded a batch cut at %zu", cut);
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            p[i] ^= (uint8_t)(1u << bit);
            int rc = tp_decode(p, b.len, &d);
            cr_assert(rc == LKV_ECORRUPT || (i == 4 && rc == LKV_EFORMAT),
                      "byte %zu bit %d: %d", i, bit, rc);
            p[i] ^= (uint8_t)(1u << bit);
        }
    }
    buf_free(&b);
    lkv_blob_unref(keep[0]);
    lkv_blob_unref(keep[1]);
}

/* Rewrites the batch CRC after a test edits the bytes on purpose. */
static void reseal(uint8_t *p, size_t len)
{
    le_put32(p + len - 4, crc32c(p, len - 4));
}

Test(codec, damage_behind_a_valid_crc_is_still_refused)
{
    struct buf b = {0};
    struct lkv_blob *keep[2];
    sample(&b, keep);
    uint8_t *p = (uint8_t *)b.data;
    struct tp_batch d;
    /* another version: recognised as such */
    p[4] = 2;
    reseal(p, b.len);
    cr_assert_eq(tp_decode(p, b.len, &d), LKV_EFORMAT);
    p[4] = TP_VERSION;
    /* a message count the bytes cannot hold */
    le_put32(p + 32, 0xFFFFFFFFu);
    reseal(p, b.len);
    cr_assert_eq(tp_decode(p, b.len, &d), LKV_ECORRUPT);
    le_put32(p + 32, 6);
    /* an entry count the bytes cannot hold */
    le_put32(p + TP_BATCH_HDR + 4, 0x7FFFFFFFu);
    reseal(p, b.len);
    cr_assert_eq(tp_decode(p, b.len, &d), LKV_ECORRUPT);
    le_put32(p + TP_BATCH_HDR + 4, 3);
    /* an entry whose index does not follow the message's */
    le_put64(p + TP_BATCH_HDR + 16, 11);
    reseal(p, b.len);
    cr_assert_eq(tp_decode(p, b.len, &d), LKV_ECORRUPT);
    le_put64(p + TP_BATCH_HDR + 16, 10);
    /* a flipped payload byte with the batch CRC fixed: the entry's own CRC */
    p[TP_BATCH_HDR + TP_MSG_HDR + 32] ^= 1;
    reseal(p, b.len);
    cr_assert_eq(tp_decode(p, b.len, &d), LKV_ECORRUPT);
    p[TP_BATCH_HDR + TP_MSG_HDR + 32] ^= 1;
    /* an unknown message type */
    p[TP_BATCH_HDR] = 42;
    reseal(p, b.len);
    cr_assert_eq(tp_decode(p, b.len, &d), LKV_ECORRUPT);
    p[TP_BATCH_HDR] = RAFT_MSG_APPEND;
    reseal(p, b.len);
    cr_assert_eq(tp_decode(p, b.len, &d), 0);
    tp_batch_free(&d);
    buf_free(&b);
    lkv_blob_unref(keep[0]);
    lkv_blob_unref(keep[1]);
}

Test(codec, copies_share_entry_data_and_release_it)
{
    struct lkv_blob *x = blob("payload");
    struct raft_entry e = {.index = 2, .term = 1, .type = RAFT_ENTRY_COMMAND, .data = x};
    struct raft_msg m = {.type = RAFT_MSG_APPEND, .index = 1, .entries = &e, .n_entries = 1};
    struct raft_msg c;
    cr_assert_eq(tp_msg_copy(&c, &m), 0);
    cr_assert_eq(c.entries[0].data, x);
    cr_assert_eq(atomic_load(&x->refs), 2);
    tp_msg_release(&c);
    cr_assert_eq(atomic_load(&x->refs), 1);
    cr_assert_null(c.entries);
    lkv_blob_unref(x);
}
