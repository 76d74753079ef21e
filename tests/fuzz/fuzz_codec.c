/* libFuzzer target: decodes arbitrary bytes as a /raft message batch; what
 * decodes must re-encode to exactly the same bytes (the format has one
 * encoding), and nothing may be read out of bounds or leaked. */
#include "transport/codec.h"
#include "util/err.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tp_batch b;
    int rc = tp_decode(data, size, &b);
    assert(rc == 0 || rc == LKV_ECORRUPT || rc == LKV_EFORMAT || rc == LKV_ENOMEM);
    if (rc != 0)
        return 0;
    struct buf out = {0};
    rc = tp_encode(&b.hdr, b.msgs, b.n, &out);
    assert(rc == 0);
    assert(out.len == size && memcmp(out.data, data, size) == 0);
    buf_free(&out);
    tp_batch_free(&b);
    return 0;
}

#ifdef MAKE_SEEDS
#include <stdio.h>

/* Seeds only the encoder can make (valid CRCs): a heartbeat, an append
 * with entries, a rejection and a snapshot announcement. */
static void emit(const char *dir, const char *name, const struct raft_msg *m, size_t n)
{
    struct tp_header h = {.cluster_id = 0x1122334455667788ull, .from = 7, .to = 9};
    struct buf out = {0};
    if (tp_encode(&h, m, n, &out) != 0)
        abort();
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(out.data, 1, out.len, f) != out.len)
        abort();
    fclose(f);
    assert(LLVMFuzzerTestOneInput((const uint8_t *)out.data, out.len) == 0);
    buf_free(&out);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    struct lkv_blob *a = lkv_blob_copy("\x01\x01\x00\x00\x00kv", 7);
    struct raft_entry e[2] = {{.index = 5, .term = 2, .type = RAFT_ENTRY_COMMAND, .data = a},
                              {.index = 6, .term = 3, .type = RAFT_ENTRY_NOOP}};
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .term = 3, .commit = 4, .ctx = 11};
    struct raft_msg app = {.type = RAFT_MSG_APPEND, .term = 3, .index = 4, .log_term = 2,
                           .commit = 4, .entries = e, .n_entries = 2};
    struct raft_msg rej = {.type = RAFT_MSG_APPEND_RESP, .term = 3, .index = 4, .reject = true,
                           .hint = 2, .log_term = 1};
    struct raft_snapshot s = {.index = 40, .term = 3};
    s.conf.n = 1;
    s.conf.m[0] = (struct raft_member){.id = 7, .flags = RAFT_VOTER_IN, .addr = "10.0.0.7:8080"};
    struct raft_msg snap = {.type = RAFT_MSG_SNAPSHOT, .term = 3, .snap = &s};
    struct raft_msg all[4] = {hb, app, rej, snap};
    emit(argv[1], "heartbeat", &hb, 1);
    emit(argv[1], "append", &app, 1);
    emit(argv[1], "mixed", all, 4);
    emit(argv[1], "empty", NULL, 0);
    lkv_blob_unref(a);
    return 0;
}
#endif
