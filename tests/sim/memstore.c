#include "memstore.h"

#include "util/err.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct memstore {
    struct raft_storage st;
    struct raft_hard_state hs;
    struct raft_snapshot snap; /* index 0: none yet; conf is the initial one */
    struct raft_entry *e;      /* e[i] has index first + i */
    size_t n, cap;
    uint64_t first;            /* index of e[0] */
    struct raft_conf_at *confs; /* scratch for memstore_boot */
    size_t nconfs;
};

static int ms_term(void *ctx, uint64_t index, uint64_t *term)
{
    struct memstore *s = ctx;
    if (index == s->snap.index) {
        *term = s->snap.term;
        return 0;
    }
    if (index < s->first)
        return LKV_ECOMPACTED;
    if (index >= s->first + s->n)
        return index < s->snap.index ? LKV_ECOMPACTED : LKV_EUNAVAILABLE;
    *term = s->e[index - s->first].term;
    return 0;
}

static int ms_entries(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes,
                      struct raft_entry *out, size_t max_n, size_t *n)
{
    struct memstore *s = ctx;
    if (lo < s->first)
        return LKV_ECOMPACTED;
    assert(lo < hi && hi <= s->first + s->n && max_n >= 1);
    size_t k = 0, bytes = 0;
    for (uint64_t i = lo; i < hi && k < max_n; i++) {
        const struct raft_entry *src = &s->e[i - s->first];
        size_t len = src->data ? src->data->len : 0;
        if (k > 0 && bytes + len > max_bytes)
            break;
        bytes += len;
        out[k] = *src;
        lkv_blob_ref(out[k].data);
        k++;
    }
    *n = k;
    return 0;
}

static uint64_t ms_first_index(void *ctx)
{
    struct memstore *s = ctx;
    return s->first;
}

static uint64_t ms_last_index(void *ctx)
{
    struct memstore *s = ctx;
    return s->n ? s->first + s->n - 1 : s->first - 1;
}

static int ms_snapshot(void *ctx, struct raft_snapshot *out)
{
    struct memstore *s = ctx;
    if (s->snap.index == 0)
        return LKV_EUNAVAILABLE;
    *out = s->snap;
    lkv_blob_ref(out->data);
    return 0;
}

struct memstore *memstore_new(const struct raft_membership *conf)
{
    struct memstore *s = calloc(1, sizeof *s);
    assert(s);
    s->st = (struct raft_storage){.ctx = s, .term = ms_term, .entries = ms_entries,
                                  .first_index = ms_first_index, .last_index = ms_last_index,
                                  .snapshot = ms_snapshot};
    s->snap.conf = *conf;
    s->first = 1;
    return s;
}

static void drop_from(struct memstore *s, size_t pos)
{
    for (size_t i = pos; i < s->n; i++)
        lkv_blob_unref(s->e[i].data);
    s->n = pos;
}

void memstore_free(struct memstore *s)
{
    if (!s)
        return;
    drop_from(s, 0);
    lkv_blob_unref(s->snap.data);
    free(s->e);
    free(s->confs);
    free(s);
}

const struct raft_storage *memstore_storage(struct memstore *s)
{
    return &s->st;
}

static void push(struct memstore *s, const struct raft_entry *e)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->e = realloc(s->e, s->cap * sizeof *s->e);
        assert(s->e);
    }
    assert(e->index == s->first + s->n);
    s->e[s->n] = *e;
    lkv_blob_ref(s->e[s->n].data);
    s->n++;
}

static void install(struct memstore *s, const struct raft_snapshot *snap)
{
    /* Keep the entries after the snapshot only if the log agrees at its index. */
    uint64_t t = 0;
    bool keep = ms_term(s, snap->index, &t) == 0 && t == snap->term &&
                snap->index < s->first + s->n;
    if (keep) {
        size_t cut = (size_t)(snap->index + 1 - s->first);
        for (size_t i = 0; i < cut; i++)
            lkv_blob_unref(s->e[i].data);
        memmove(s->e, s->e + cut, (s->n - cut) * sizeof *s->e);
        s->n -= cut;
    } else {
        drop_from(s, 0);
    }
    s->first = snap->index + 1;
    lkv_blob_unref(s->snap.data);
    s->snap = *snap;
    lkv_blob_ref(s->snap.data);
}

void memstore_persist(struct memstore *s, const struct raft_ready *rd, size_t keep)
{
    if (rd->hs_changed)
        s->hs = rd->hs;
    if (rd->snapshot)
        install(s, rd->snapshot);
    if (rd->n_entries == 0)
        return;
    uint64_t from = rd->entries[0].index;
    assert(from >= s->first && from <= s->first + s->n);
    drop_from(s, (size_t)(from - s->first));
    size_t n = keep < rd->n_entries ? keep : rd->n_entries;
    for (size_t i = 0; i < n; i++)
        push(s, &rd->entries[i]);
}

void memstore_compact(struct memstore *s, uint64_t index, const struct raft_membership *conf,
                      struct lkv_blob *data, uint64_t retain)
{
    assert(index >= s->first && index < s->first + s->n);
    uint64_t term = s->e[index - s->first].term;
    lkv_blob_unref(s->snap.data);
    s->snap = (struct raft_snapshot){.index = index, .term = term, .conf = *conf,
                                     .data = lkv_blob_ref(data)};
    uint64_t keep_from = index + 1 > retain ? index + 1 - retain : 1;
    if (keep_from <= s->first)
        return;
    size_t cut = (size_t)(keep_from - s->first);
    for (size_t i = 0; i < cut; i++)
        lkv_blob_unref(s->e[i].data);
    memmove(s->e, s->e + cut, (s->n - cut) * sizeof *s->e);
    s->n -= cut;
    s->first = keep_from;
}

void memstore_boot(struct memstore *s, struct raft_boot *boot)
{
    free(s->confs);
    s->confs = NULL;
    s->nconfs = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct raft_entry *e = &s->e[i];
        if (e->index <= s->snap.index || e->type != RAFT_ENTRY_CONFIG)
            continue;
        s->confs = realloc(s->confs, (s->nconfs + 1) * sizeof *s->confs);
        assert(s->confs);
        struct raft_conf_at *c = &s->confs[s->nconfs++];
        c->index = e->index;
        int rc = raft_membership_decode(e->data ? e->data->data : NULL,
                                        e->data ? e->data->len : 0, &c->conf);
        assert(rc == 0);
        (void)rc;
    }
    *boot = (struct raft_boot){.hs = s->hs, .snap = s->snap, .confs = s->confs,
                               .n_confs = s->nconfs, .applied = s->snap.index};
}

struct raft_hard_state memstore_hard_state(const struct memstore *s)
{
    return s->hs;
}

uint64_t memstore_first_index(const struct memstore *s)
{
    return s->first;
}

uint64_t memstore_last_index(const struct memstore *s)
{
    return s->n ? s->first + s->n - 1 : s->first - 1;
}

const struct raft_entry *memstore_entry(const struct memstore *s, uint64_t index)
{
    if (index < s->first || index >= s->first + s->n)
        return NULL;
    return &s->e[index - s->first];
}

uint64_t memstore_term(const struct memstore *s, uint64_t index)
{
    uint64_t t = 0;
    return ms_term((void *)s, index, &t) == 0 ? t : 0;
}

const struct raft_snapshot *memstore_snapshot(const struct memstore *s)
{
    return &s->snap;
}
