/* transport/codec: the binary batch of Raft messages that one node POSTs to
 * another on /raft: versioned, checksummed, log entries in their on-disk
 * record framing (so the receiver checks each entry's CRC before it is
 * persisted). Pure: bytes in, structs out, fuzzed. */
#ifndef LKV_TRANSPORT_CODEC_H
#define LKV_TRANSPORT_CODEC_H

#include "raft/raft.h"
#include "util/buf.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Batch (integers little-endian):
 *   0   4  magic "LKVR"
 *   4   1  version (TP_VERSION)
 *   5   3  reserved, 0
 *   8   8  cluster id
 *   16  8  sender's member id
 *   24  8  recipient's member id
 *   32  4  message count
 *   36  4  reserved, 0
 *   40  .. messages
 *   end-4  CRC-32C of every byte before it
 * Message: 56-byte header, then its entries, then (SNAPSHOT only) the
 * snapshot's metadata:
 *   0  1 type, 1 flags (bit 0 reject, bit 1 transfer), 2 2 reserved,
 *   4  4 entry count, 8 term, 16 index, 24 log_term, 32 hint, 40 commit,
 *   48 ctx (u64 each)
 *   entries: one log record each (wal/record.h: 32-byte header with its own
 *   CRC, then the payload); batch_pos counts from 0 within the message, and
 *   the record's index and term are the entry's
 *   snapshot: index u64, term u64, configuration length u32 and bytes
 *   (raft_membership_encode), data length u32 (0: the data moves apart)
 */

#define TP_VERSION 1
#define TP_BATCH_HDR 40
#define TP_MSG_HDR 56

struct tp_header {
    uint64_t cluster_id;
    raft_id from;
    raft_id to;
};

/* A decoded batch. Owns msgs, their entries arrays, entry data and
 * snapshots; free with tp_batch_free. */
struct tp_batch {
    struct tp_header hdr;
    struct raft_msg *msgs;
    size_t n;
};

/* Appends the encoding of msgs[0..n) (all from hdr->from to hdr->to) to
 * out. Borrows everything. Returns 0, LKV_ENOMEM, or LKV_EINVAL for an
 * entry payload over the log's record limit. */
int tp_encode(const struct tp_header *hdr, const struct raft_msg *msgs, size_t n,
              struct buf *out);

/* Bytes tp_encode would add for one message (to size batches). */
size_t tp_encoded_msg_size(const struct raft_msg *m);

/* Decodes a batch of len bytes (any bytes are safe). Checks magic, version,
 * the batch CRC, every length against what remains, each entry's own CRC
 * and framing, index/term agreement, reserved fields, message types and
 * snapshot configurations. Returns 0 and fills *out, LKV_EFORMAT for
 * another version, LKV_ECORRUPT for anything else wrong, LKV_ENOMEM. On
 * error *out is left empty. */
int tp_decode(const uint8_t *p, size_t len, struct tp_batch *out);

void tp_batch_free(struct tp_batch *b);

/* Frees what a struct raft_msg owns (entries array and references, the
 * snapshot), as tp_decode allocates them; leaves m zeroed. */
void tp_msg_release(struct raft_msg *m);

/* A deep copy of m: the entries array and snapshot are new, the entries'
 * data shared by reference. Returns 0 or LKV_ENOMEM (dst zeroed). */
int tp_msg_copy(struct raft_msg *dst, const struct raft_msg *src);

#endif
