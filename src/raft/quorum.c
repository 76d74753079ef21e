#include "raft/quorum.h"

#include <stdbool.h>
#include <stddef.h>

/* Sorts a handful of values descending (insertion sort: n <= 16). */
static void sort_desc(uint64_t *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        uint64_t x = v[i];
        size_t j = i;
        while (j > 0 && v[j - 1] < x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

/* The value a majority of the voters carrying `flag` have reached;
 * UINT64_MAX when the set is empty (no constraint). */
static uint64_t set_index(const struct raft_membership *c, uint8_t flag, quorum_value_fn fn,
                          void *arg)
{
    uint64_t v[RAFT_MAX_MEMBERS];
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (c->m[i].flags & flag)
            v[n++] = fn(arg, c->m[i].id);
    }
    if (n == 0)
        return UINT64_MAX;
    sort_desc(v, n);
    return v[n / 2]; /* the (n/2 + 1)-th largest: held by a majority */
}

uint64_t quorum_index(const struct raft_membership *c, quorum_value_fn fn, void *arg)
{
    uint64_t in = set_index(c, RAFT_VOTER_IN, fn, arg);
    uint64_t out = set_index(c, RAFT_VOTER_OUT, fn, arg);
    uint64_t v = in < out ? in : out;
    return v == UINT64_MAX ? 0 : v;
}

static enum quorum_vote set_vote(const struct raft_membership *c, uint8_t flag,
                                 quorum_vote_fn fn, void *arg)
{
    size_t n = 0, yes = 0, no = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (!(c->m[i].flags & flag))
            continue;
        n++;
        int v = fn(arg, c->m[i].id);
        yes += v == 1;
        no += v == 0;
    }
    if (n == 0)
        return QUORUM_WON;
    size_t q = n / 2 + 1;
    if (yes >= q)
        return QUORUM_WON;
    if (n - no < q)
        return QUORUM_LOST;
    return QUORUM_PENDING;
}

enum quorum_vote quorum_vote_result(const struct raft_membership *c, quorum_vote_fn fn,
                                    void *arg)
{
    enum quorum_vote in = set_vote(c, RAFT_VOTER_IN, fn, arg);
    enum quorum_vote out = set_vote(c, RAFT_VOTER_OUT, fn, arg);
    if (in == QUORUM_LOST || out == QUORUM_LOST)
        return QUORUM_LOST;
    if (in == QUORUM_WON && out == QUORUM_WON)
        return QUORUM_WON;
    return QUORUM_PENDING;
}
