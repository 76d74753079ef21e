#include "check.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void check_init(struct check *c, jmp_buf *out)
{
    *c = (struct check){.out = out};
}

void check_free(struct check *c)
{
    free(c->leader_of);
    free(c->c);
    free(c->lm);
    free(c->w);
    free(c->r);
    jmp_buf *out = c->out;
    *c = (struct check){.out = out};
}

void check_fail(struct check *c, const char *invariant, const char *fmt, ...)
{
    snprintf(c->invariant, sizeof c->invariant, "%s", invariant);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof c->detail, fmt, ap);
    va_end(ap);
    longjmp(*c->out, 1);
}

/* Grows an array of elem-sized items to hold at least n, zeroing new room. */
static void *grow(void *p, size_t *have, size_t n, size_t elem)
{
    if (n <= *have)
        return p;
    size_t cap = *have ? *have : 64;
    while (cap < n)
        cap *= 2;
    p = realloc(p, cap * elem);
    assert(p);
    memset((char *)p + *have * elem, 0, (cap - *have) * elem);
    *have = cap;
    return p;
}

void check_leader(struct check *c, uint64_t term, raft_id id)
{
    c->leader_of = grow(c->leader_of, &c->n_terms, (size_t)term + 1, sizeof *c->leader_of);
    raft_id *l = &c->leader_of[term];
    if (*l == RAFT_NONE)
        *l = id;
    else if (*l != id)
        check_fail(c, "election safety", "n%llu and n%llu are both leader of term %llu",
                   (unsigned long long)*l, (unsigned long long)id, (unsigned long long)term);
}

static size_t lm_hash(uint64_t index, uint64_t term, size_t cap)
{
    uint64_t h = index * 0x9e3779b97f4a7c15ull ^ term * 0xc2b2ae3d27d4eb4full;
    h ^= h >> 29;
    return (size_t)(h & (cap - 1));
}

static void lm_rehash(struct check *c)
{
    size_t old_cap = c->lm_cap;
    struct lm_slot *old = c->lm;
    c->lm_cap = old_cap ? old_cap * 2 : 1024;
    c->lm = calloc(c->lm_cap, sizeof *c->lm);
    assert(c->lm);
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].index == 0)
            continue;
        size_t h = lm_hash(old[i].index, old[i].term, c->lm_cap);
        while (c->lm[h].index != 0)
            h = (h + 1) & (c->lm_cap - 1);
        c->lm[h] = old[i];
    }
    free(old);
}

void check_log_entry(struct check *c, raft_id node, uint64_t index, uint64_t term, uint64_t chain)
{
    if (index == 0)
        return;
    if (2 * (c->lm_n + 1) > c->lm_cap)
        lm_rehash(c);
    size_t h = lm_hash(index, term, c->lm_cap);
    for (;; h = (h + 1) & (c->lm_cap - 1)) {
        struct lm_slot *s = &c->lm[h];
        if (s->index == 0) {
            *s = (struct lm_slot){.index = index, .term = term, .chain = chain, .node = node};
            c->lm_n++;
            return;
        }
        if (s->index == index && s->term == term) {
            if (s->chain != chain)
                check_fail(c, "log matching",
                           "n%llu holds (index %llu, term %llu) after a different history "
                           "than n%llu did",
                           (unsigned long long)node, (unsigned long long)index,
                           (unsigned long long)term, (unsigned long long)s->node);
            return;
        }
    }
}

bool check_commit(struct check *c, raft_id node, uint64_t term, uint64_t index,
                  uint64_t entry_term, uint64_t chain, bool payload_known, uint64_t payload)
{
    if (index == 0)
        return false;
    c->c = grow(c->c, &c->n_c, (size_t)index + 1, sizeof *c->c);
    struct committed *k = &c->c[index];
    if (!k->set) {
        *k = (struct committed){.set = true, .payload_known = payload_known, .term = entry_term,
                                .chain = chain, .payload = payload, .commit_term = term,
                                .by = node};
        return true;
    }
    if (k->term != entry_term || k->chain != chain || (payload_known && k->payload_known &&
                                                       k->payload != payload))
        check_fail(c, "state machine safety",
                   "n%llu has index %llu committed with term %llu, n%llu had it with term %llu "
                   "(%s)",
                   (unsigned long long)node, (unsigned long long)index,
                   (unsigned long long)entry_term, (unsigned long long)k->by,
                   (unsigned long long)k->term,
                   k->term != entry_term ? "different entries" : "different histories before it");
    if (payload_known && !k->payload_known) {
        k->payload_known = true;
        k->payload = payload;
    }
    if (term < k->commit_term) {
        k->commit_term = term;
        return true;
    }
    return false;
}

const struct committed *check_committed(const struct check *c, uint64_t index)
{
    if (index >= c->n_c || !c->c[index].set)
        return NULL;
    return &c->c[index];
}

uint64_t check_committed_before(const struct check *c, uint64_t term)
{
    for (size_t i = c->n_c; i-- > 1;)
        if (c->c[i].set && c->c[i].commit_term < term)
            return i;
    return 0;
}

void check_note_commit_index(struct check *c, uint64_t commit)
{
    if (commit > c->max_commit)
        c->max_commit = commit;
}

void check_write(struct check *c, raft_id node, uint64_t index, uint64_t term, uint64_t payload,
                 uint64_t now)
{
    c->w = grow(c->w, &c->cap_w, c->n_w + 1, sizeof *c->w);
    c->w[c->n_w++] = (struct write_rec){.node = node, .index = index, .term = term,
                                        .payload = payload, .at = now};
}

uint64_t check_acked_max(struct check *c, size_t *n_acked)
{
    uint64_t max = 0;
    size_t n = 0;
    for (size_t i = 0; i < c->n_w; i++) {
        const struct write_rec *w = &c->w[i];
        const struct committed *k = check_committed(c, w->index);
        if (!k || k->term != w->term)
            continue;
        if (k->payload_known && k->payload != w->payload)
            check_fail(c, "durability",
                       "the write proposed to n%llu at (index %llu, term %llu) committed "
                       "with another payload",
                       (unsigned long long)w->node, (unsigned long long)w->index,
                       (unsigned long long)w->term);
        n++;
        if (w->index > max)
            max = w->index;
    }
    *n_acked = n;
    return max;
}

uint64_t check_read_asked(struct check *c, raft_id node, unsigned inc, uint64_t now)
{
    c->r = grow(c->r, &c->cap_r, c->n_r + 1, sizeof *c->r);
    c->r[c->n_r++] = (struct read_rec){.node = node, .inc = inc, .watermark = c->max_commit,
                                       .at = now};
    return c->n_r;
}

void check_read_released(struct check *c, raft_id node, unsigned inc, uint64_t ctx,
                         uint64_t index)
{
    if (ctx == 0 || ctx > c->n_r)
        check_fail(c, "read index", "n%llu released read ctx %llu that nobody asked for",
                   (unsigned long long)node, (unsigned long long)ctx);
    struct read_rec *r = &c->r[ctx - 1];
    if (r->node != node || r->inc != inc)
        check_fail(c, "read index", "n%llu released read ctx %llu asked of another core",
                   (unsigned long long)node, (unsigned long long)ctx);
    if (r->released)
        check_fail(c, "read index", "n%llu released read ctx %llu twice",
                   (unsigned long long)node, (unsigned long long)ctx);
    r->released = true;
    if (index < r->watermark)
        check_fail(c, "linearizable read",
                   "n%llu released read ctx %llu (asked at tick %llu) at index %llu, but "
                   "index %llu was already committed when it was asked: a stale read",
                   (unsigned long long)node, (unsigned long long)ctx,
                   (unsigned long long)r->at, (unsigned long long)index,
                   (unsigned long long)r->watermark);
    c->reads_served++;
}
