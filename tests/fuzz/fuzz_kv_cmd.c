/* libFuzzer target: decodes arbitrary bytes as a kv command payload and
 * checks that whatever decodes re-encodes to the same bytes. */
#include "kv/kv_cmd.h"
#include "util/err.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kv_cmd c;
    int rc = kv_cmd_decode(data, size, &c);
    assert(rc == 0 || rc == LKV_ECORRUPT);
    if (rc != 0)
        return 0;

    switch (c.op) {
    case KV_OP_SET:
        assert(c.klen > 0 && c.key == (const char *)data + KV_CMD_PREFIX_MAX);
        assert(c.value == c.key + c.klen);
        break;
    case KV_OP_DELETE:
        assert(c.klen > 0 && c.value == NULL && c.vlen == 0);
        break;
    case KV_OP_CLEAR:
        assert(c.key == NULL && c.klen == 0 && c.value == NULL && c.vlen == 0);
        break;
    default:
        abort();
    }

    size_t total = kv_cmd_payload_len(c.op, c.klen, c.vlen);
    assert(total == size);
    uint8_t *again = malloc(total);
    if (again == NULL)
        abort();
    size_t n = kv_cmd_encode_prefix(again, c.op, c.klen);
    if (c.klen > 0)
        memcpy(again + n, c.key, c.klen);
    if (c.vlen > 0)
        memcpy(again + n + c.klen, c.value, c.vlen);
    assert(memcmp(again, data, size) == 0);
    free(again);
    return 0;
}
