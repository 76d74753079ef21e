/* raft/conf: membership changes. A configuration takes effect as soon as
 * its entry is in the log (thesis 4.1), so the history of configurations
 * since the last committed one is kept, to fall back on when a conflicting
 * suffix is cut. One change at a time; joint configurations are left by the
 * leader once they commit. */
#include "raft/core.h"

#include "util/err.h"

#include <stdlib.h>
#include <string.h>

static int hist_push(struct raft *r, uint64_t index, const struct raft_membership *c)
{
    struct conf_hist *h = &r->confs;
    if (h->n == h->cap) {
        size_t cap = h->cap * 2;
        struct raft_conf_at *p = realloc(h->v, cap * sizeof *p);
        if (!p)
            return LKV_ENOMEM;
        h->v = p;
        h->cap = cap;
    }
    h->v[h->n].index = index;
    h->v[h->n].conf = *c;
    h->n++;
    return 0;
}

int conf_sync_progress(struct raft *r)
{
    if (r->role != RAFT_LEADER)
        return 0;
    const struct raft_membership *c = core_conf(r);
    struct progress next[RAFT_MAX_MEMBERS];
    size_t n = 0;
    uint64_t last = rlog_last_index(&r->log);
    int rc = 0;
    for (size_t i = 0; i < c->n; i++) {
        struct progress *old = core_progress(r, c->m[i].id);
        if (old) {
            next[n++] = *old;
            old->id = RAFT_NONE; /* moved: not freed below */
            continue;
        }
        if ((rc = progress_init(&next[n], c->m[i].id, last + 1, r->opt.max_inflight)) != 0)
            break;
        if (c->m[i].id == r->opt.id)
            progress_maybe_update(&next[n], rlog_stable_last(&r->log));
        n++;
    }
    for (size_t i = 0; i < r->nprs; i++) {
        if (r->prs[i].id != RAFT_NONE)
            progress_free(&r->prs[i]);
    }
    memcpy(r->prs, next, n * sizeof *next);
    r->nprs = n;
    return rc;
}

static void confs_changed(struct raft *r)
{
    conf_sync_progress(r);
    /* candidates' vote slots follow the configuration's order */
    if (r->role == RAFT_CANDIDATE || r->role == RAFT_PRE_CANDIDATE)
        memset(r->votes, -1, sizeof r->votes);
}

void conf_on_truncate(struct raft *r, uint64_t from)
{
    size_t n = r->confs.n;
    /* the first one is at or before the commit index, so never cut */
    while (r->confs.n > 1 && r->confs.v[r->confs.n - 1].index >= from)
        r->confs.n--;
    if (r->confs.n != n)
        confs_changed(r);
}

int conf_on_append(struct raft *r, const struct raft_entry *e, size_t n)
{
    if (n == 0)
        return 0;
    conf_on_truncate(r, e[0].index);
    bool changed = false;
    for (size_t i = 0; i < n; i++) {
        if (e[i].type != RAFT_ENTRY_CONFIG)
            continue;
        struct raft_membership c;
        const uint8_t *p = e[i].data ? e[i].data->data : NULL;
        size_t len = e[i].data ? e[i].data->len : 0;
        /* Entries are checksummed end to end: one that does not decode was
         * written by a broken leader, and every member ignores it alike. */
        if (raft_membership_decode(p, len, &c) != 0)
            continue;
        int rc = hist_push(r, e[i].index, &c);
        if (rc != 0)
            return rc;
        changed = true;
    }
    if (changed)
        confs_changed(r);
    return 0;
}

void conf_on_restore(struct raft *r, const struct raft_snapshot *s)
{
    r->confs.v[0] = (struct raft_conf_at){s->index, s->conf};
    r->confs.n = 1;
    confs_changed(r);
}

/* Leaving a joint configuration: the new voter set alone; those only in
 * the old set go, learners stay. */
static void leave_joint(struct raft *r)
{
    const struct raft_membership *cur = core_conf(r);
    struct raft_membership next = {0};
    for (size_t i = 0; i < cur->n; i++) {
        struct raft_member m = cur->m[i];
        if (m.flags == RAFT_VOTER_OUT)
            continue;
        m.flags &= (uint8_t)~RAFT_VOTER_OUT;
        next.m[next.n++] = m;
    }
    uint8_t buf[RAFT_MEMBERSHIP_MAX_BYTES];
    size_t len = raft_membership_encode(&next, buf, sizeof buf);
    struct lkv_blob *b = len ? lkv_blob_copy(buf, len) : NULL;
    uint64_t index;
    if (b && repl_append_local(r, RAFT_ENTRY_CONFIG, b, &index) == 0)
        r->pending_conf_index = index;
    lkv_blob_unref(b); /* the log holds its own reference */
}

void conf_on_commit(struct raft *r)
{
    struct conf_hist *h = &r->confs;
    size_t k = 0;
    for (size_t i = 1; i < h->n; i++) {
        if (h->v[i].index <= r->log.commit)
            k = i;
    }
    if (k > 0) {
        memmove(h->v, h->v + k, (h->n - k) * sizeof *h->v);
        h->n -= k;
    }
    if (r->role != RAFT_LEADER || h->n != 1)
        return; /* the configuration in force is not committed yet */
    const struct raft_membership *cur = core_conf(r);
    if (raft_membership_joint(cur) && r->pending_conf_index <= r->log.commit) {
        leave_joint(r);
        return;
    }
    const struct raft_member *self = raft_membership_find(cur, r->opt.id);
    if (!self || !(self->flags & RAFT_VOTER_IN)) {
        /* Removed (or demoted) and that is committed: stop leading
         * (thesis 4.2.2). */
        core_become_follower(r, r->term, RAFT_NONE);
    }
}

/* Members whose presence, flags or address differ between a and b. */
static size_t count_changes(const struct raft_membership *a, const struct raft_membership *b)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++) {
        const struct raft_member *m = raft_membership_find(a, b->m[i].id);
        n += !m || m->flags != b->m[i].flags || strcmp(m->addr, b->m[i].addr) != 0;
    }
    for (size_t i = 0; i < a->n; i++)
        n += raft_membership_find(b, a->m[i].id) == NULL;
    return n;
}

/* Entering joint consensus: the old set (VOTER_OUT) must be exactly the
 * voters in force now. */
static bool valid_joint(const struct raft_membership *cur, const struct raft_membership *next)
{
    for (size_t i = 0; i < next->n; i++) {
        bool out = next->m[i].flags & RAFT_VOTER_OUT;
        if (out != raft_membership_is_voter(cur, next->m[i].id))
            return false;
    }
    for (size_t i = 0; i < cur->n; i++) {
        const struct raft_member *m = raft_membership_find(next, cur->m[i].id);
        if ((cur->m[i].flags & RAFT_VOTER_IN) && (!m || !(m->flags & RAFT_VOTER_OUT)))
            return false;
    }
    return true;
}

static void sort_members(struct raft_membership *c)
{
    for (size_t i = 1; i < c->n; i++) {
        struct raft_member m = c->m[i];
        size_t j = i;
        while (j > 0 && c->m[j - 1].id > m.id) {
            c->m[j] = c->m[j - 1];
            j--;
        }
        c->m[j] = m;
    }
}

int raft_propose_conf(struct raft *r, const struct raft_membership *proposed, uint64_t *index)
{
    if (r->role != RAFT_LEADER)
        return LKV_ENOTLEADER;
    if (r->transferee != RAFT_NONE)
        return LKV_ETRANSFER;
    const struct raft_membership *cur = core_conf(r);
    if (r->pending_conf_index > r->log.commit || r->confs.n > 1 || raft_membership_joint(cur))
        return LKV_EBUSY;
    if (proposed->n > RAFT_MAX_MEMBERS)
        return LKV_EINVAL;
    struct raft_membership next = *proposed;
    sort_members(&next);
    uint8_t buf[RAFT_MEMBERSHIP_MAX_BYTES];
    size_t len = raft_membership_encode(&next, buf, sizeof buf);
    struct raft_membership check;
    if (len == 0 || raft_membership_decode(buf, len, &check) != 0)
        return LKV_EINVAL; /* duplicate ids, bad flags, no voter... */
    if (raft_membership_joint(&next) ? !valid_joint(cur, &next) : count_changes(cur, &next) != 1)
        return LKV_EINVAL;
    struct lkv_blob *b = lkv_blob_copy(buf, len);
    if (!b)
        return LKV_ENOMEM;
    int rc = repl_append_local(r, RAFT_ENTRY_CONFIG, b, index);
    lkv_blob_unref(b);
    if (rc == 0)
        r->pending_conf_index = *index;
    return rc;
}
