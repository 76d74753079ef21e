/* kv_cmd: the payload of a command record for the key-value state machine (pure codec). */
#ifndef LKV_KV_CMD_H
#define LKV_KV_CMD_H

#include <stddef.h>
#include <stdint.h>

/*
 * Layout (integers little-endian):
 *   u8 op
 *   set:    u32 klen, key bytes, value bytes (the rest of the payload)
 *   delete: u32 klen, key bytes, nothing after
 *   clear:  nothing after the op byte
 * The value carries no length of its own; the record's length and crc are
 * what make a truncated set detectable.
 */

enum kv_op {
    KV_OP_SET = 1,
    KV_OP_DELETE = 2,
    KV_OP_CLEAR = 3,
};

/* Bytes of the longest prefix (op + klen). */
#define KV_CMD_PREFIX_MAX 5

/* A decoded command. key and value point into the payload passed to
 * kv_cmd_decode() and are valid as long as it is. */
struct kv_cmd {
    uint8_t op;      /* enum kv_op */
    const char *key; /* set/delete: klen > 0 bytes; clear: NULL */
    size_t klen;
    /* set: vlen bytes, vlen may be 0 (value then points at the end of the
     * payload); delete/clear: NULL with vlen 0 */
    const char *value;
    size_t vlen;
};

/* Decodes `len` bytes at p (p may be NULL only if len is 0). Returns 0 and
 * fills *out, or LKV_ECORRUPT (out untouched) for: an empty payload, an
 * unknown op, a klen field cut short, klen 0, a key running past the end,
 * or any bytes after a delete's key or a clear's op. Borrows p. */
int kv_cmd_decode(const uint8_t *p, size_t len, struct kv_cmd *out);

/* Writes the op byte and, for set/delete, the klen field; returns the number
 * of bytes written (5 for set/delete, 1 for clear). The writer then emits
 * [prefix][key][value] as separate iovecs. Preconditions (asserted): op is
 * an enum kv_op; for set/delete 0 < klen <= UINT32_MAX; for clear klen == 0. */
size_t kv_cmd_encode_prefix(uint8_t out[KV_CMD_PREFIX_MAX], uint8_t op, size_t klen);

/* Writes a whole command, [prefix][key][value], into out: the bytes a write
 * request carries and the log stores. Returns kv_cmd_payload_len(op, klen,
 * vlen), or 0 with nothing written when that is more than cap. key is
 * borrowed (klen bytes; NULL for clear), value likewise (vlen bytes; NULL
 * allowed when vlen is 0). A set whose value arrives later is encoded with
 * vlen 0: the return value is then where the value bytes go. Same
 * preconditions as kv_cmd_encode_prefix(), and vlen is 0 unless op is set. */
size_t kv_cmd_encode(uint8_t *out, size_t cap, uint8_t op, const void *key, size_t klen,
                     const void *value, size_t vlen);

/* Total payload bytes of a command: prefix + klen + vlen (vlen must be 0 for
 * delete and clear, klen 0 for clear). Same preconditions as
 * kv_cmd_encode_prefix(); the caller keeps klen + vlen far below SIZE_MAX
 * (in practice below WAL_REC_MAX_PAYLOAD). */
size_t kv_cmd_payload_len(uint8_t op, size_t klen, size_t vlen);

#endif
