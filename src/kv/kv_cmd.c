#include "kv/kv_cmd.h"

#include "kv/kv_map.h"
#include "util/endian.h"
#include "util/err.h"

#include <assert.h>
#include <string.h>

int kv_cmd_decode(const uint8_t *p, size_t len, struct kv_cmd *out)
{
    if (len < 1)
        return LKV_ECORRUPT;
    uint8_t op = p[0];
    if (op == KV_OP_CLEAR) {
        if (len != 1)
            return LKV_ECORRUPT;
        *out = (struct kv_cmd){.op = op};
        return 0;
    }
    if (op != KV_OP_SET && op != KV_OP_DELETE)
        return LKV_ECORRUPT;
    if (len < KV_CMD_PREFIX_MAX)
        return LKV_ECORRUPT;

    size_t klen = le_get32(p + 1);
    size_t rest = len - KV_CMD_PREFIX_MAX;
    if (klen == 0 || klen > rest || klen > KV_MAX_KEY_BYTES)
        return LKV_ECORRUPT;
    if (op == KV_OP_DELETE && klen != rest)
        return LKV_ECORRUPT;

    const uint8_t *key = p + KV_CMD_PREFIX_MAX;
    *out = (struct kv_cmd){
        .op = op,
        .key = (const char *)key,
        .klen = klen,
        .value = op == KV_OP_SET ? (const char *)(key + klen) : NULL,
        .vlen = rest - klen,
    };
    return 0;
}

size_t kv_cmd_encode_prefix(uint8_t out[KV_CMD_PREFIX_MAX], uint8_t op, size_t klen)
{
    assert(op == KV_OP_SET || op == KV_OP_DELETE || op == KV_OP_CLEAR);
    out[0] = op;
    if (op == KV_OP_CLEAR) {
        assert(klen == 0);
        return 1;
    }
    assert(klen > 0 && klen <= UINT32_MAX);
    le_put32(out + 1, (uint32_t)klen);
    return KV_CMD_PREFIX_MAX;
}

size_t kv_cmd_payload_len(uint8_t op, size_t klen, size_t vlen)
{
    assert(op == KV_OP_SET || op == KV_OP_DELETE || op == KV_OP_CLEAR);
    if (op == KV_OP_CLEAR) {
        assert(klen == 0 && vlen == 0);
        return 1;
    }
    assert(klen > 0 && klen <= UINT32_MAX);
    assert(op == KV_OP_SET || vlen == 0);
    return KV_CMD_PREFIX_MAX + klen + vlen;
}

size_t kv_cmd_encode(uint8_t *out, size_t cap, uint8_t op, const void *key, size_t klen,
                     const void *value, size_t vlen)
{
    size_t total = kv_cmd_payload_len(op, klen, vlen);
    if (total > cap)
        return 0;
    size_t n = kv_cmd_encode_prefix(out, op, klen);
    if (klen > 0)
        memcpy(out + n, key, klen);
    if (vlen > 0)
        memcpy(out + n + klen, value, vlen);
    return total;
}
