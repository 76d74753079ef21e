#include "transport/codec.h"

#include "util/crc32c.h"
#include "util/endian.h"
#include "util/err.h"
#include "wal/record.h"

#include <stdlib.h>
#include <string.h>

static const uint8_t magic[4] = {'L', 'K', 'V', 'R'};

#define FLAG_REJECT 0x1u
#define FLAG_TRANSFER 0x2u

static size_t entry_len(const struct raft_entry *e)
{
    return e->data ? e->data->len : 0;
}

size_t tp_encoded_msg_size(const struct raft_msg *m)
{
    size_t n = TP_MSG_HDR;
    for (size_t i = 0; i < m->n_entries; i++)
        n += WAL_REC_HDR_SIZE + entry_len(&m->entries[i]);
    if (m->type == RAFT_MSG_SNAPSHOT)
        n += 8 + 8 + 4 + RAFT_MEMBERSHIP_MAX_BYTES + 4;
    return n;
}

static int put(struct buf *out, const void *p, size_t n)
{
    return buf_append(out, p, n);
}

static int put_u64(struct buf *out, uint64_t v)
{
    uint8_t b[8];
    le_put64(b, v);
    return put(out, b, 8);
}

static int put_u32(struct buf *out, uint32_t v)
{
    uint8_t b[4];
    le_put32(b, v);
    return put(out, b, 4);
}

static int encode_entries(const struct raft_msg *m, struct buf *out)
{
    for (size_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        size_t len = entry_len(e);
        if (len > WAL_REC_MAX_PAYLOAD)
            return LKV_EINVAL;
        struct wal_rec_hdr h = {.len = (uint32_t)len, .type = e->type, .batch_pos = (uint32_t)i,
                                .index = e->index, .term = e->term};
        uint8_t hdr[WAL_REC_HDR_SIZE];
        wal_rec_hdr_pack(hdr, &h);
        uint32_t crc = wal_rec_crc_begin(hdr);
        if (len)
            crc = crc32c_extend(crc, e->data->data, len);
        wal_rec_hdr_seal(hdr, crc);
        if (put(out, hdr, sizeof hdr) != 0 || (len && put(out, e->data->data, len) != 0))
            return LKV_ENOMEM;
    }
    return 0;
}

static int encode_snapshot(const struct raft_snapshot *s, struct buf *out)
{
    uint8_t conf[RAFT_MEMBERSHIP_MAX_BYTES];
    size_t clen = raft_membership_encode(&s->conf, conf, sizeof conf);
    if (clen == 0)
        return LKV_EINVAL;
    if (put_u64(out, s->index) || put_u64(out, s->term) || put_u32(out, (uint32_t)clen) ||
        put(out, conf, clen) || put_u32(out, 0))
        return LKV_ENOMEM;
    return 0;
}

static int encode_msg(const struct raft_msg *m, struct buf *out)
{
    uint8_t h[TP_MSG_HDR] = {0};
    h[0] = m->type;
    h[1] = (uint8_t)((m->reject ? FLAG_REJECT : 0) | (m->transfer ? FLAG_TRANSFER : 0));
    le_put32(h + 4, (uint32_t)m->n_entries);
    le_put64(h + 8, m->term);
    le_put64(h + 16, m->index);
    le_put64(h + 24, m->log_term);
    le_put64(h + 32, m->hint);
    le_put64(h + 40, m->commit);
    le_put64(h + 48, m->ctx);
    if (put(out, h, sizeof h) != 0)
        return LKV_ENOMEM;
    int rc = encode_entries(m, out);
    if (rc == 0 && m->type == RAFT_MSG_SNAPSHOT)
        rc = m->snap ? encode_snapshot(m->snap, out) : LKV_EINVAL;
    return rc;
}

int tp_encode(const struct tp_header *hdr, const struct raft_msg *msgs, size_t n,
              struct buf *out)
{
    size_t start = out->len;
    uint8_t h[TP_BATCH_HDR] = {0};
    memcpy(h, magic, sizeof magic);
    h[4] = TP_VERSION;
    le_put64(h + 8, hdr->cluster_id);
    le_put64(h + 16, hdr->from);
    le_put64(h + 24, hdr->to);
    le_put32(h + 32, (uint32_t)n);
    if (put(out, h, sizeof h) != 0)
        return LKV_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int rc = encode_msg(&msgs[i], out);
        if (rc != 0)
            return rc;
    }
    if (out->failed)
        return LKV_ENOMEM;
    uint32_t crc = crc32c(out->data + start, out->len - start);
    return put_u32(out, crc);
}

/* ---- decoding ---- */

struct rd {
    const uint8_t *p;
    size_t len, off;
};

static bool take(struct rd *r, size_t n, const uint8_t **at)
{
    if (r->len - r->off < n)
        return false;
    *at = r->p + r->off;
    r->off += n;
    return true;
}

static bool take_u32(struct rd *r, uint32_t *v)
{
    const uint8_t *at;
    if (!take(r, 4, &at))
        return false;
    *v = le_get32(at);
    return true;
}

static bool take_u64(struct rd *r, uint64_t *v)
{
    const uint8_t *at;
    if (!take(r, 8, &at))
        return false;
    *v = le_get64(at);
    return true;
}

void tp_msg_release(struct raft_msg *m)
{
    for (size_t i = 0; i < m->n_entries; i++)
        lkv_blob_unref(m->entries[i].data);
    free(m->entries);
    if (m->snap) {
        lkv_blob_unref(m->snap->data);
        free(m->snap);
    }
    memset(m, 0, sizeof *m);
}

int tp_msg_copy(struct raft_msg *dst, const struct raft_msg *src)
{
    *dst = *src;
    dst->entries = NULL;
    dst->snap = NULL;
    if (src->n_entries) {
        dst->entries = malloc(src->n_entries * sizeof *dst->entries);
        if (!dst->entries)
            goto err_nomem;
        for (size_t i = 0; i < src->n_entries; i++) {
            dst->entries[i] = src->entries[i];
            lkv_blob_ref(dst->entries[i].data);
        }
    }
    if (src->snap) {
        dst->snap = malloc(sizeof *dst->snap);
        if (!dst->snap)
            goto err_nomem;
        *dst->snap = *src->snap;
        lkv_blob_ref(dst->snap->data);
    }
    return 0;

err_nomem:
    tp_msg_release(dst);
    return LKV_ENOMEM;
}

static int decode_entries(struct rd *r, struct raft_msg *m, uint32_t count)
{
    /* Every entry takes at least a record header: a count the remaining
     * bytes cannot hold is damage, not a reason to allocate. */
    if (count > (r->len - r->off) / WAL_REC_HDR_SIZE)
        return LKV_ECORRUPT;
    if (count == 0)
        return 0;
    m->entries = calloc(count, sizeof *m->entries);
    if (!m->entries)
        return LKV_ENOMEM;
    for (uint32_t i = 0; i < count; i++) {
        struct wal_rec_hdr h;
        const uint8_t *payload;
        if (wal_rec_decode(r->p + r->off, r->len - r->off, &h, &payload) != WAL_REC_OK ||
            h.batch_pos != i || h.index != m->index + 1 + i)
            return LKV_ECORRUPT;
        r->off += WAL_REC_HDR_SIZE + h.len;
        struct raft_entry *e = &m->entries[m->n_entries];
        *e = (struct raft_entry){.index = h.index, .term = h.term, .type = h.type};
        if (h.len && !(e->data = lkv_blob_copy(payload, h.len)))
            return LKV_ENOMEM;
        m->n_entries++;
    }
    return 0;
}

static int decode_snapshot(struct rd *r, struct raft_msg *m)
{
    struct raft_snapshot *s = calloc(1, sizeof *s);
    if (!s)
        return LKV_ENOMEM;
    m->snap = s;
    uint32_t clen, dlen;
    const uint8_t *conf;
    if (!take_u64(r, &s->index) || !take_u64(r, &s->term) || !take_u32(r, &clen) ||
        !take(r, clen, &conf) || raft_membership_decode(conf, clen, &s->conf) != 0 ||
        !take_u32(r, &dlen) || dlen != 0)
        return LKV_ECORRUPT;
    return 0;
}

static int decode_msg(struct rd *r, struct raft_msg *m)
{
    const uint8_t *h;
    if (!take(r, TP_MSG_HDR, &h))
        return LKV_ECORRUPT;
    if (h[0] < RAFT_MSG_APPEND || h[0] >= RAFT_MSG__COUNT ||
        (h[1] & ~(FLAG_REJECT | FLAG_TRANSFER)) || h[2] || h[3])
        return LKV_ECORRUPT;
    m->type = h[0];
    m->reject = h[1] & FLAG_REJECT;
    m->transfer = h[1] & FLAG_TRANSFER;
    uint32_t count = le_get32(h + 4);
    m->term = le_get64(h + 8);
    m->index = le_get64(h + 16);
    m->log_term = le_get64(h + 24);
    m->hint = le_get64(h + 32);
    m->commit = le_get64(h + 40);
    m->ctx = le_get64(h + 48);
    if (count && m->type != RAFT_MSG_APPEND)
        return LKV_ECORRUPT;
    int rc = decode_entries(r, m, count);
    if (rc == 0 && m->type == RAFT_MSG_SNAPSHOT)
        rc = decode_snapshot(r, m);
    return rc;
}

void tp_batch_free(struct tp_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        tp_msg_release(&b->msgs[i]);
    free(b->msgs);
    memset(b, 0, sizeof *b);
}

int tp_decode(const uint8_t *p, size_t len, struct tp_batch *out)
{
    memset(out, 0, sizeof *out);
    if (len < TP_BATCH_HDR + 4 || memcmp(p, magic, sizeof magic) != 0)
        return LKV_ECORRUPT;
    if (p[4] != TP_VERSION)
        return LKV_EFORMAT;
    if (le_get32(p + len - 4) != crc32c(p, len - 4) || p[5] || p[6] || p[7] ||
        le_get32(p + 36) != 0)
        return LKV_ECORRUPT;
    struct tp_batch b = {.hdr = {le_get64(p + 8), le_get64(p + 16), le_get64(p + 24)}};
    uint32_t count = le_get32(p + 32);
    struct rd r = {.p = p, .len = len - 4, .off = TP_BATCH_HDR};
    if (count > (r.len - r.off) / TP_MSG_HDR)
        return LKV_ECORRUPT;
    int rc = 0;
    if (count && !(b.msgs = calloc(count, sizeof *b.msgs)))
        return LKV_ENOMEM;
    for (uint32_t i = 0; i < count && rc == 0; i++) {
        struct raft_msg *m = &b.msgs[b.n++];
        rc = decode_msg(&r, m);
        m->from = b.hdr.from;
        m->to = b.hdr.to;
    }
    if (rc == 0 && r.off != r.len)
        rc = LKV_ECORRUPT; /* trailing bytes */
    if (rc != 0) {
        tp_batch_free(&b);
        return rc;
    }
    *out = b;
    return 0;
}
