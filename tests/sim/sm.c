#include "sm.h"

#include "util/endian.h"

#include <assert.h>
#include <string.h>

#define SM_MAGIC 0x314e53534d49534bull /* "KSIMSSN1" */
#define SM_BLOB_LEN 32

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t x = a ^ (b + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2));
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t sm_payload_hash(const struct raft_entry *e)
{
    if (!e->data)
        return 0;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < e->data->len; i++)
        h = (h ^ e->data->data[i]) * 0x100000001b3ull;
    return mix(h, e->data->len) | 1;
}

uint64_t sm_chain_next(uint64_t prev, const struct raft_entry *e)
{
    uint64_t h = mix(prev, e->index);
    h = mix(h, e->term);
    h = mix(h, e->type);
    return mix(h, sm_payload_hash(e));
}

bool sm_from_snapshot(struct sm *sm, const struct raft_snapshot *snap)
{
    *sm = (struct sm){.conf = snap->conf};
    if (snap->index == 0)
        return true;
    uint64_t applied, term, chain;
    if (!sm_decode(snap->data, &applied, &term, &chain) || applied != snap->index ||
        term != snap->term)
        return false;
    sm->applied = applied;
    sm->term = term;
    sm->chain = chain;
    return true;
}

void sm_apply(struct sm *sm, const struct raft_entry *e)
{
    assert(e->index == sm->applied + 1);
    sm->chain = sm_chain_next(sm->chain, e);
    sm->applied = e->index;
    sm->term = e->term;
    if (e->type == RAFT_ENTRY_COMMAND)
        sm->n_cmds++;
    if (e->type == RAFT_ENTRY_CONFIG) {
        struct raft_membership c;
        if (raft_membership_decode(e->data ? e->data->data : NULL, e->data ? e->data->len : 0,
                                   &c) == 0)
            sm->conf = c;
    }
}

struct lkv_blob *sm_encode(const struct sm *sm)
{
    struct lkv_blob *b = lkv_blob_new(SM_BLOB_LEN);
    assert(b);
    le_put64(b->data, SM_MAGIC);
    le_put64(b->data + 8, sm->applied);
    le_put64(b->data + 16, sm->term);
    le_put64(b->data + 24, sm->chain);
    return b;
}

bool sm_decode(const struct lkv_blob *b, uint64_t *applied, uint64_t *term, uint64_t *chain)
{
    if (!b || b->len != SM_BLOB_LEN || le_get64(b->data) != SM_MAGIC)
        return false;
    *applied = le_get64(b->data + 8);
    *term = le_get64(b->data + 16);
    *chain = le_get64(b->data + 24);
    return true;
}
