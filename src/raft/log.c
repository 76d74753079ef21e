#include "raft/log.h"

#include "util/err.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Entries per slice at most, whatever max_bytes allows: bounds the array a
 * message or a ready bundle allocates. */
#define SLICE_MAX_ENTRIES 4096

void rlog_init(struct rlog *l, const struct raft_storage *st, uint64_t commit, uint64_t applied)
{
    memset(l, 0, sizeof *l);
    l->st = st;
    l->uoff = st->last_index(st->ctx) + 1;
    l->applied = applied;
    l->commit = commit > applied ? commit : applied;
    uint64_t last = rlog_last_index(l);
    if (l->commit > last)
        l->commit = last;
    if (l->applied > l->commit)
        l->applied = l->commit;
}

static void drop_unstable_from(struct rlog *l, size_t pos)
{
    for (size_t i = pos; i < l->un; i++)
        lkv_blob_unref(l->u[i].data);
    l->un = pos;
}

static void free_usnap(struct rlog *l)
{
    if (l->usnap) {
        lkv_blob_unref(l->usnap->data);
        free(l->usnap);
        l->usnap = NULL;
    }
}

void rlog_free(struct rlog *l)
{
    drop_unstable_from(l, 0);
    free(l->u);
    l->u = NULL;
    l->ucap = 0;
    free_usnap(l);
}

uint64_t rlog_first_index(const struct rlog *l)
{
    if (l->usnap)
        return l->usnap->index + 1;
    return l->st->first_index(l->st->ctx);
}

uint64_t rlog_last_index(const struct rlog *l)
{
    return l->uoff + l->un - 1;
}

int rlog_term(const struct rlog *l, uint64_t index, uint64_t *term)
{
    if (l->un && index >= l->uoff && index < l->uoff + l->un) {
        *term = l->u[index - l->uoff].term;
        return 0;
    }
    if (index >= l->uoff)
        return LKV_EUNAVAILABLE;
    if (l->usnap) {
        if (index == l->usnap->index) {
            *term = l->usnap->term;
            return 0;
        }
        return LKV_ECOMPACTED;
    }
    return l->st->term(l->st->ctx, index, term);
}

uint64_t rlog_term_or_zero(const struct rlog *l, uint64_t index)
{
    uint64_t t = 0;
    return rlog_term(l, index, &t) == 0 ? t : 0;
}

uint64_t rlog_last_term(const struct rlog *l)
{
    return rlog_term_or_zero(l, rlog_last_index(l));
}

bool rlog_match_term(const struct rlog *l, uint64_t index, uint64_t term)
{
    uint64_t t;
    return rlog_term(l, index, &t) == 0 && t == term;
}

bool rlog_is_up_to_date(const struct rlog *l, uint64_t last_index, uint64_t last_term)
{
    uint64_t mine = rlog_last_term(l);
    return last_term > mine || (last_term == mine && last_index >= rlog_last_index(l));
}

uint64_t rlog_stable_last(const struct rlog *l)
{
    if (l->usnap)
        return 0;
    uint64_t st_last = l->st->last_index(l->st->ctx);
    return st_last < l->uoff - 1 ? st_last : l->uoff - 1;
}

static int reserve(struct rlog *l, size_t n)
{
    if (n <= l->ucap)
        return 0;
    size_t cap = l->ucap ? l->ucap : 64;
    while (cap < n)
        cap *= 2;
    struct raft_entry *p = realloc(l->u, cap * sizeof *p);
    if (!p)
        return LKV_ENOMEM;
    l->u = p;
    l->ucap = cap;
    return 0;
}

int rlog_append(struct rlog *l, uint64_t after, const struct raft_entry *e, size_t n)
{
    assert(after >= l->commit && after <= rlog_last_index(l));
    if (n == 0)
        return 0;
    assert(e[0].index == after + 1);
    if (after + 1 < l->uoff) {
        /* The new entries replace part of what storage holds: everything
         * unstable goes, and the caller truncates storage when persisting. */
        drop_unstable_from(l, 0);
        l->uoff = after + 1;
    } else {
        drop_unstable_from(l, (size_t)(after + 1 - l->uoff));
    }
    if (reserve(l, l->un + n) != 0)
        return LKV_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        assert(e[i].index == l->uoff + l->un);
        l->u[l->un] = e[i];
        lkv_blob_ref(e[i].data);
        l->un++;
    }
    return 0;
}

uint64_t rlog_find_conflict(const struct rlog *l, const struct raft_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!rlog_match_term(l, e[i].index, e[i].term))
            return e[i].index;
    }
    return 0;
}

uint64_t rlog_find_conflict_by_term(const struct rlog *l, uint64_t index, uint64_t term,
                                    uint64_t *found_term)
{
    /* Index 0 always has term 0, so the walk ends there at the latest; an
     * index before the log (compacted) ends it too, with the term unknown. */
    for (uint64_t i = index;; i--) {
        uint64_t t;
        if (rlog_term(l, i, &t) != 0) {
            *found_term = 0;
            return i;
        }
        if (t <= term || i == 0) {
            *found_term = t;
            return i;
        }
    }
}

void rlog_free_entries(struct raft_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        lkv_blob_unref(e[i].data);
    free(e);
}

static size_t entry_bytes(const struct raft_entry *e)
{
    return e->data ? e->data->len : 0;
}

int rlog_slice(const struct rlog *l, uint64_t lo, uint64_t hi, size_t max_bytes,
               struct raft_entry **out, size_t *n)
{
    assert(lo < hi && hi <= rlog_last_index(l) + 1);
    if (lo < rlog_first_index(l))
        return LKV_ECOMPACTED;
    size_t want = (size_t)(hi - lo) < SLICE_MAX_ENTRIES ? (size_t)(hi - lo) : SLICE_MAX_ENTRIES;
    struct raft_entry *v = malloc(want * sizeof *v);
    if (!v)
        return LKV_ENOMEM;
    size_t k = 0, bytes = 0;
    if (lo < l->uoff) {
        uint64_t st_hi = hi < l->uoff ? hi : l->uoff;
        int rc = l->st->entries(l->st->ctx, lo, st_hi, max_bytes, v, want, &k);
        if (rc != 0) {
            free(v);
            return rc;
        }
        for (size_t i = 0; i < k; i++)
            bytes += entry_bytes(&v[i]);
        if (k < (size_t)(st_hi - lo)) {
            *out = v;
            *n = k;
            return 0; /* storage stopped at the byte limit */
        }
    }
    for (uint64_t i = lo + k; i < hi && k < want; i++) {
        const struct raft_entry *src = &l->u[i - l->uoff];
        if (k > 0 && bytes + entry_bytes(src) > max_bytes)
            break;
        bytes += entry_bytes(src);
        v[k] = *src;
        lkv_blob_ref(v[k].data);
        k++;
    }
    *out = v;
    *n = k;
    return 0;
}

bool rlog_commit_to(struct rlog *l, uint64_t index)
{
    uint64_t last = rlog_last_index(l);
    if (index > last)
        index = last;
    if (index <= l->commit)
        return false;
    l->commit = index;
    return true;
}

int rlog_restore(struct rlog *l, const struct raft_snapshot *s)
{
    struct raft_snapshot *copy = malloc(sizeof *copy);
    if (!copy)
        return LKV_ENOMEM;
    *copy = *s;
    lkv_blob_ref(copy->data);
    drop_unstable_from(l, 0);
    free_usnap(l);
    l->usnap = copy;
    l->uoff = s->index + 1;
    l->commit = s->index;
    return 0;
}

void rlog_stable_all(struct rlog *l)
{
    free_usnap(l);
    l->uoff += l->un;
    drop_unstable_from(l, 0);
}

void rlog_drop_unstable(struct rlog *l)
{
    drop_unstable_from(l, 0);
}
