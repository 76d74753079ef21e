/* raft_fixture: a handful of Raft cores on in-memory disks, and a network
 * the test delivers by hand: every message a ready bundle produces is
 * queued, and nothing moves unless the test says so. */
#ifndef LKV_TESTS_UNIT_RAFT_FIXTURE_H
#define LKV_TESTS_UNIT_RAFT_FIXTURE_H

#include "raft/raft.h"
#include "sim/memstore.h"
#include "transport/codec.h"
#include "util/err.h"

#include <criterion/criterion.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FX_MAX 6
#define FX_QMAX 4096

struct fx_node {
    struct raft *r;
    struct memstore *ms;
    uint64_t applied[4096]; /* indexes applied, in order */
    size_t napplied;
    struct raft_read reads[256];
    size_t nreads;
    bool up;
};

struct fx {
    size_t n;
    struct raft_options opt;
    struct fx_node node[FX_MAX + 1]; /* 1-based: node i has id i */
    struct raft_msg q[FX_QMAX];
    size_t nq;
    bool cut[FX_MAX + 1][FX_MAX + 1]; /* cut[a][b]: a's messages to b are lost */
    bool mute_appends[FX_MAX + 1];    /* a node's appends are lost (heartbeats still go) */
    int persist_fail;                 /* the next k persists fail (disk full) */
};

static struct fx FX;

static struct raft_membership fx_conf(size_t voters, size_t learners)
{
    struct raft_membership c = {0};
    for (size_t i = 1; i <= voters + learners; i++) {
        c.m[c.n].id = i;
        c.m[c.n].flags = i <= voters ? RAFT_VOTER_IN : 0;
        snprintf(c.m[c.n].addr, sizeof c.m[c.n].addr, "10.0.0.%zu:8080", i);
        c.n++;
    }
    return c;
}

static struct raft_options fx_default_options(void)
{
    return (struct raft_options){.election_ticks = 10, .heartbeat_ticks = 2,
                                 .max_append_bytes = 1 << 20, .max_inflight = 4,
                                 .pre_vote = true, .check_quorum = true, .seed = 42};
}

static void fx_start_node(size_t i)
{
    struct fx_node *nd = &FX.node[i];
    struct raft_options o = FX.opt;
    o.id = i;
    o.seed = FX.opt.seed + i * 1000;
    o.storage = memstore_storage(nd->ms);
    struct raft_boot boot;
    memstore_boot(nd->ms, &boot);
    cr_assert_eq(raft_new(&o, &boot, &nd->r), 0, "raft_new node %zu", i);
    nd->up = true;
}

/* n nodes, all sharing configuration conf. */
static void fx_init_conf(size_t n, const struct raft_membership *conf,
                         const struct raft_options *opt)
{
    memset(&FX, 0, sizeof FX);
    FX.n = n;
    FX.opt = opt ? *opt : fx_default_options();
    for (size_t i = 1; i <= n; i++) {
        FX.node[i].ms = memstore_new(conf);
        fx_start_node(i);
    }
}

static void fx_init(size_t n)
{
    struct raft_membership c = fx_conf(n, 0);
    fx_init_conf(n, &c, NULL);
}

static void msg_copy(struct raft_msg *dst, const struct raft_msg *src)
{
    cr_assert_eq(tp_msg_copy(dst, src), 0);
}

static void msg_release(struct raft_msg *m)
{
    tp_msg_release(m);
}

static void fx_enqueue(const struct raft_msg *m)
{
    if (FX.cut[m->from][m->to])
        return;
    if (FX.mute_appends[m->from] && m->type == RAFT_MSG_APPEND)
        return;
    cr_assert_lt(FX.nq, FX_QMAX, "message queue overflow");
    msg_copy(&FX.q[FX.nq++], m);
}

/* The last ready bundle of each node, kept for inspection by tests. */
struct fx_seen {
    bool hs_changed;
    struct raft_hard_state hs;
    size_t n_entries;
    size_t n_msgs, n_msgs_after;
    uint8_t msg_types[64], after_types[64];
    enum raft_role role;
};
static struct fx_seen SEEN[FX_MAX + 1];

/* Carries out node i's ready bundle, as the real node would. Returns false
 * when there was none. */
static bool fx_ready(size_t i)
{
    struct fx_node *nd = &FX.node[i];
    if (!nd->up || !raft_has_ready(nd->r))
        return false;
    struct raft_ready rd;
    raft_ready(nd->r, &rd);
    struct fx_seen *s = &SEEN[i];
    memset(s, 0, sizeof *s);
    s->hs_changed = rd.hs_changed;
    s->hs = rd.hs;
    s->n_entries = rd.n_entries;
    s->n_msgs = rd.n_msgs;
    s->n_msgs_after = rd.n_msgs_after;
    s->role = rd.role;
    for (size_t k = 0; k < rd.n_msgs && k < 64; k++)
        s->msg_types[k] = rd.msgs[k].type;
    for (size_t k = 0; k < rd.n_msgs_after && k < 64; k++)
        s->after_types[k] = rd.msgs_after[k].type;
    for (size_t k = 0; k < rd.n_msgs; k++)
        fx_enqueue(&rd.msgs[k]);
    if (FX.persist_fail > 0) {
        FX.persist_fail--;
        raft_advance(nd->r, &rd, LKV_ENOSPC);
        return true;
    }
    memstore_persist(nd->ms, &rd, rd.n_entries);
    for (size_t k = 0; k < rd.n_msgs_after; k++)
        fx_enqueue(&rd.msgs_after[k]);
    for (size_t k = 0; k < rd.n_committed; k++) {
        uint64_t idx = rd.committed[k].index;
        if (nd->napplied)
            cr_assert_eq(idx, nd->applied[nd->napplied - 1] + 1, "node %zu applied %llu after %llu",
                         i, (unsigned long long)idx,
                         (unsigned long long)nd->applied[nd->napplied - 1]);
        if (nd->napplied < 4096)
            nd->applied[nd->napplied++] = idx;
    }
    for (size_t k = 0; k < rd.n_reads && nd->nreads < 256; k++)
        nd->reads[nd->nreads++] = rd.reads[k];
    raft_advance(nd->r, &rd, 0);
    return true;
}

static void fx_ready_all(void)
{
    for (int round = 0; round < 100; round++) {
        bool any = false;
        for (size_t i = 1; i <= FX.n; i++)
            any |= fx_ready(i);
        if (!any)
            return;
    }
}

/* Hands queued message k to its recipient (removing it). */
static void fx_deliver_at(size_t k)
{
    struct raft_msg m = FX.q[k];
    memmove(&FX.q[k], &FX.q[k + 1], (FX.nq - k - 1) * sizeof *FX.q);
    FX.nq--;
    if (FX.node[m.to].up && !FX.cut[m.from][m.to])
        raft_step(FX.node[m.to].r, &m);
    msg_release(&m);
}

/* Delivers everything until the network is quiet (bounded). */
static void fx_settle(void)
{
    for (int round = 0; round < 1000; round++) {
        fx_ready_all();
        if (FX.nq == 0)
            return;
        while (FX.nq > 0)
            fx_deliver_at(0);
    }
    cr_assert_fail("the cluster did not settle");
}

static void fx_drop_queue(void)
{
    while (FX.nq > 0) {
        msg_release(&FX.q[FX.nq - 1]);
        FX.nq--;
    }
}

static void fx_tick(size_t i, unsigned k)
{
    for (unsigned t = 0; t < k; t++)
        raft_tick(FX.node[i].r);
}

static void fx_tick_all(unsigned k)
{
    for (unsigned t = 0; t < k; t++) {
        for (size_t i = 1; i <= FX.n; i++) {
            if (FX.node[i].up)
                raft_tick(FX.node[i].r);
        }
        fx_settle();
    }
}

static struct raft_status fx_status(size_t i)
{
    struct raft_status st;
    raft_status(FX.node[i].r, &st);
    return st;
}

static void fx_elect(size_t i)
{
    cr_assert_eq(raft_campaign(FX.node[i].r), 0);
    fx_settle();
    cr_assert_eq(fx_status(i).role, RAFT_LEADER, "node %zu did not win", i);
}

static void fx_isolate(size_t i, bool on)
{
    for (size_t j = 1; j <= FX_MAX; j++) {
        FX.cut[i][j] = on;
        FX.cut[j][i] = on;
    }
}

static void fx_crash(size_t i)
{
    raft_free(FX.node[i].r);
    FX.node[i].r = NULL;
    FX.node[i].up = false;
    FX.node[i].napplied = 0;
}

static void fx_restart(size_t i)
{
    fx_start_node(i);
}

static uint64_t fx_propose(size_t i, const char *text)
{
    struct lkv_blob *b = lkv_blob_copy(text, strlen(text));
    uint64_t index = 0, term = 0;
    int rc = raft_propose(FX.node[i].r, RAFT_ENTRY_COMMAND, b, &index, &term);
    lkv_blob_unref(b);
    cr_assert_eq(rc, 0, "propose on %zu: %d", i, rc);
    return index;
}

static void fx_free(void)
{
    fx_drop_queue();
    for (size_t i = 1; i <= FX.n; i++) {
        raft_free(FX.node[i].r);
        memstore_free(FX.node[i].ms);
    }
    memset(&FX, 0, sizeof FX);
}

/* Puts entries of the given terms (one per index from `from`) on node i's
 * disk directly, as an earlier life would have left them. */
static void fx_disk_log(size_t i, uint64_t from, const uint64_t *terms, size_t n)
{
    struct raft_entry e[64];
    cr_assert_leq(n, 64);
    for (size_t k = 0; k < n; k++)
        e[k] = (struct raft_entry){.index = from + k, .term = terms[k], .type = RAFT_ENTRY_NOOP};
    struct raft_ready rd = {.entries = e, .n_entries = n};
    memstore_persist(FX.node[i].ms, &rd, n);
}

static void fx_disk_term(size_t i, uint64_t term, raft_id vote)
{
    struct raft_ready rd = {.hs_changed = true, .hs = {.term = term, .vote = vote}};
    memstore_persist(FX.node[i].ms, &rd, 0);
}

static bool seen_type(const uint8_t *types, size_t n, uint8_t t)
{
    for (size_t k = 0; k < n && k < 64; k++) {
        if (types[k] == t)
            return true;
    }
    return false;
}

#endif
