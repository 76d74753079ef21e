/* The scheduler: draws the seed's weather, then runs the fault phase (every
 * step one action picked at random: deliver, tick, carry out a ready,
 * propose, read, crash, restart, partition, compact, change membership,
 * transfer leadership...) and the liveness phase (network healed, every
 * node up, no faults: a leader must appear and everything acknowledged must
 * reach every member within a bounded number of ticks). Every step ends
 * with the per-node checks. */
#include "sim.h"

#include "util/err.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ULL(x) ((unsigned long long)(x))

#define DEFAULT_STEPS 3000
#define LIVENESS_TICKS 1500
#define MAX_MEMBERS_USED 9
#define MAX_VOTERS 7

void sim_trace(const struct sim *s, const char *fmt, ...)
{
    if (!s->cfg.verbose)
        return;
    printf("[%6llu t%4llu] ", ULL(s->step), ULL(s->now));
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

static void draw_weather(struct sim *s)
{
    struct rng *g = &s->rng;
    struct weather *w = &s->w;
    w->crash = rng_chance(g, 700) ? (unsigned)rng_range(g, 1, 6) : 0;
    w->crash_in_ready = w->crash ? (unsigned)rng_range(g, 0, 20) : 0;
    w->restart = 30;
    w->partition = rng_chance(g, 600) ? (unsigned)rng_range(g, 1, 6) : 0;
    w->heal = 8;
    w->compact = rng_chance(g, 700) ? (unsigned)rng_range(g, 2, 20) : 0;
    w->conf = rng_chance(g, 500) ? (unsigned)rng_range(g, 1, 6) : 0;
    if (w->conf && rng_chance(g, 200))
        w->conf = (unsigned)rng_range(g, 20, 60); /* membership churn */
    w->transfer = rng_chance(g, 400) ? (unsigned)rng_range(g, 1, 4) : 0;
    w->campaign = rng_chance(g, 300) ? 1 : 0;
    w->propose = (unsigned)rng_range(g, 20, 120);
    w->read = (unsigned)rng_range(g, 5, 60);
    if (rng_chance(g, 200))
        w->read = (unsigned)rng_range(g, 100, 300); /* reads everywhere, stale leaders too */
    if (rng_chance(g, 150)) { /* leadership storm: short-lived leaders, Figure 8 ground */
        w->crash = (unsigned)rng_range(g, 15, 40);
        w->partition = (unsigned)rng_range(g, 15, 40);
        w->campaign = (unsigned)rng_range(g, 1, 5);
    }
    w->decommission = 4;
    w->eager_ready = rng_chance(g, 300) ? 1000 : (unsigned)rng_range(g, 300, 950);
    w->disk_full = rng_chance(g, 300) ? (unsigned)rng_range(g, 1, 30) : 0;
    w->retain = rng_range(g, 0, 30);
    w->drift = rng_chance(g, 500) ? (unsigned)rng_range(g, 10, 150) : 0;
    struct net_weather nw = {
        .drop = rng_chance(g, 700) ? (unsigned)rng_range(g, 0, 150) : 0,
        .dup = rng_chance(g, 500) ? (unsigned)rng_range(g, 0, 100) : 0,
        .slow = rng_chance(g, 400) ? (unsigned)rng_range(g, 1, 30) : 0,
        .delay_max = (unsigned)rng_range(g, 0, 4),
    };
    net_init(&s->net, &nw);
}

static void draw_options(struct sim *s)
{
    struct rng *g = &s->rng;
    s->opt = (struct raft_options){
        .election_ticks = 10,
        .heartbeat_ticks = 2,
        .max_append_bytes = (size_t)rng_range(g, 48, 512),
        .max_inflight = (unsigned)rng_range(g, 1, 4),
        .pre_vote = true,
        .check_quorum = true,
        .lease_reads = rng_chance(g, 500),
    };
}

static void set_addr(struct raft_member *m)
{
    snprintf(m->addr, sizeof m->addr, "sim-%llu:7000", ULL(m->id));
}

static void make_initial(struct sim *s, unsigned n)
{
    s->initial.n = n;
    for (unsigned i = 0; i < n; i++) {
        s->initial.m[i] = (struct raft_member){.id = i + 1, .flags = RAFT_VOTER_IN};
        set_addr(&s->initial.m[i]);
    }
    s->next_id = n + 1;
}

/* ---- picking ---- */

static struct node *pick_in_state(struct sim *s, enum node_state st)
{
    size_t k = 0;
    for (raft_id id = 1; id < SIM_MAX_IDS; id++)
        k += s->nodes[id].state == st;
    if (k == 0)
        return NULL;
    size_t pick = (size_t)rng_below(&s->rng, k);
    for (raft_id id = 1; id < SIM_MAX_IDS; id++)
        if (s->nodes[id].state == st && pick-- == 0)
            return &s->nodes[id];
    return NULL;
}

/* The up node leading the highest term, if any. */
static struct node *top_leader(struct sim *s)
{
    struct node *best = NULL;
    for (raft_id id = 1; id < SIM_MAX_IDS; id++) {
        struct node *n = &s->nodes[id];
        if (n->state == NODE_UP && n->leading && (!best || n->leading > best->leading))
            best = n;
    }
    return best;
}

/* Any up node that believes it leads, the stale ones included. */
static struct node *any_leader(struct sim *s)
{
    size_t k = 0;
    for (raft_id id = 1; id < SIM_MAX_IDS; id++)
        k += s->nodes[id].state == NODE_UP && s->nodes[id].leading;
    if (k == 0)
        return NULL;
    size_t pick = (size_t)rng_below(&s->rng, k);
    for (raft_id id = 1; id < SIM_MAX_IDS; id++)
        if (s->nodes[id].state == NODE_UP && s->nodes[id].leading && pick-- == 0)
            return &s->nodes[id];
    return NULL;
}

/* Mostly the newest leader; often any node that believes it leads (a
 * deposed leader that does not know it yet is where stale reads and lost
 * writes come from); sometimes any node. */
static struct node *pick_target(struct sim *s)
{
    uint64_t r = rng_below(&s->rng, 100);
    struct node *l = r < 60 ? top_leader(s) : r < 90 ? any_leader(s) : NULL;
    return l ? l : pick_in_state(s, NODE_UP);
}

static size_t count_dirty(struct sim *s)
{
    size_t k = 0;
    for (raft_id id = 1; id < SIM_MAX_IDS; id++)
        k += s->nodes[id].state == NODE_UP && raft_has_ready(s->nodes[id].r);
    return k;
}

static struct node *pick_dirty(struct sim *s, size_t k)
{
    size_t pick = (size_t)rng_below(&s->rng, k);
    for (raft_id id = 1; id < SIM_MAX_IDS; id++) {
        struct node *n = &s->nodes[id];
        if (n->state == NODE_UP && raft_has_ready(n->r) && pick-- == 0)
            return n;
    }
    return NULL;
}

/* ---- routine actions ---- */

static void act_tick(struct sim *s)
{
    s->now++;
    sim_trace(s, "tick");
    for (raft_id id = 1; id < SIM_MAX_IDS; id++) {
        struct node *n = &s->nodes[id];
        if (n->state != NODE_UP || (n->slow && rng_chance(&s->rng, n->slow)))
            continue; /* a clock that runs slow (the core's lease allows for T/4) */
        raft_tick(n->r);
        node_after_input(s, n);
    }
}

static void act_deliver(struct sim *s)
{
    if (!net_take(&s->net, &s->rng, s->now, &s->hand))
        return;
    s->holding = true;
    node_deliver(s, &s->hand);
    s->holding = false;
    net_packet_free(&s->hand);
}

static uint64_t propose_to(struct sim *s, struct node *n, uint64_t *term)
{
    size_t len = 8 + (size_t)rng_range(&s->rng, 0, 56);
    struct lkv_blob *b = lkv_blob_new(len);
    assert(b);
    uint64_t wid = ++s->writes;
    memcpy(b->data, &wid, 8);
    for (size_t i = 8; i < len; i++)
        b->data[i] = (uint8_t)rng_next(&s->rng);
    struct raft_entry probe = {.data = b};
    uint64_t payload = sm_payload_hash(&probe);
    uint64_t index = 0;
    int rc = raft_propose(n->r, RAFT_ENTRY_COMMAND, b, &index, term);
    lkv_blob_unref(b);
    sim_trace(s, "n%llu propose w%llu (%zu bytes): %s index=%llu term=%llu", ULL(n->id), ULL(wid),
              len, rc ? lkv_strerror(rc) : "ok", ULL(index), ULL(*term));
    if (rc == 0)
        check_write(&s->chk, n->id, index, *term, payload, s->now);
    node_after_input(s, n);
    return rc == 0 ? index : 0;
}

static void act_propose(struct sim *s)
{
    struct node *n = pick_target(s);
    if (!n)
        return;
    uint64_t term;
    if (rng_chance(&s->rng, 30)) {
        uint64_t index = 0;
        int rc = raft_propose(n->r, RAFT_ENTRY_NOOP, NULL, &index, &term);
        sim_trace(s, "n%llu propose noop: %s index=%llu", ULL(n->id), rc ? lkv_strerror(rc) : "ok",
                  ULL(index));
        node_after_input(s, n);
        return;
    }
    propose_to(s, n, &term);
}

static void act_read(struct sim *s)
{
    struct node *n = pick_target(s);
    if (!n)
        return;
    uint64_t ctx = check_read_asked(&s->chk, n->id, n->inc, s->now);
    int rc = raft_read_index(n->r, ctx);
    sim_trace(s, "n%llu read ctx=%llu (committed so far %llu): %s", ULL(n->id), ULL(ctx),
              ULL(s->chk.max_commit), rc ? lkv_strerror(rc) : "asked");
    if (rc != 0)
        s->chk.r[ctx - 1].released = true; /* refused: it must never come out */
    node_after_input(s, n);
}

/* ---- faults ---- */

static void act_crash(struct sim *s)
{
    struct node *n = pick_in_state(s, NODE_UP);
    if (n)
        node_crash(s, n, "between steps");
}

static void act_restart(struct sim *s)
{
    struct node *n = pick_in_state(s, NODE_DOWN);
    if (n)
        node_start(s, n->id);
}

static void cut_both(struct sim *s, raft_id a, raft_id b)
{
    s->net.cut[a][b] = s->net.cut[b][a] = true;
}

static void act_partition(struct sim *s)
{
    net_heal(&s->net);
    raft_id live[SIM_MAX_IDS];
    size_t k = 0;
    for (raft_id id = 1; id < SIM_MAX_IDS; id++)
        if (s->nodes[id].state == NODE_UP || s->nodes[id].state == NODE_DOWN)
            live[k++] = id;
    if (k < 2)
        return;
    struct node *l = top_leader(s);
    uint64_t kind = rng_below(&s->rng, l ? 4 : 3);
    if (kind == 0) { /* a random split into two sides */
        bool side[SIM_MAX_IDS] = {0};
        for (size_t i = 0; i < k; i++)
            side[live[i]] = rng_chance(&s->rng, 500);
        for (size_t i = 0; i < k; i++)
            for (size_t j = 0; j < k; j++)
                if (side[live[i]] != side[live[j]])
                    cut_both(s, live[i], live[j]);
        sim_trace(s, "partition: random split");
    } else if (kind == 1) { /* one node alone, often the leader (deposed, it may not know) */
        raft_id a = l && rng_chance(&s->rng, 500) ? l->id : live[rng_below(&s->rng, k)];
        for (size_t i = 0; i < k; i++)
            if (live[i] != a)
                cut_both(s, a, live[i]);
        sim_trace(s, "partition: n%llu isolated", ULL(a));
    } else if (kind == 3) { /* the leader and one follower lose each other */
        raft_id b = live[rng_below(&s->rng, k)];
        if (b != l->id)
            cut_both(s, l->id, b);
        sim_trace(s, "partition: n%llu <-> n%llu cut", ULL(l->id), ULL(b));
    } else { /* some links lose everything one way */
        size_t links = (size_t)rng_range(&s->rng, 1, k);
        for (size_t i = 0; i < links; i++) {
            raft_id a = live[rng_below(&s->rng, k)], b = live[rng_below(&s->rng, k)];
            s->net.cut[a][b] = a != b;
            sim_trace(s, "partition: n%llu -> n%llu one-way loss", ULL(a), ULL(b));
        }
    }
}

static void act_heal(struct sim *s)
{
    net_heal(&s->net);
    sim_trace(s, "network healed");
}

static void act_compact(struct sim *s)
{
    struct node *n = pick_in_state(s, NODE_UP);
    if (n)
        node_compact(s, n);
}

static void act_transfer(struct sim *s)
{
    struct node *l = top_leader(s);
    if (!l)
        return;
    const struct raft_membership *c = raft_membership_current(l->r);
    raft_id to = RAFT_NONE;
    if (rng_chance(&s->rng, 800))
        to = c->m[rng_below(&s->rng, c->n)].id;
    int rc = raft_transfer_leadership(l->r, to);
    sim_trace(s, "n%llu transfer leadership to n%llu: %s", ULL(l->id), ULL(to),
              rc ? lkv_strerror(rc) : "started");
    node_after_input(s, l);
}

static void act_campaign(struct sim *s)
{
    /* A forced campaign ignores the lease other leaders read on (raft.h
     * says so): with lease reads, only the core's own timeouts campaign. */
    if (s->opt.lease_reads)
        return;
    struct node *n = pick_in_state(s, NODE_UP);
    if (!n)
        return;
    int rc = raft_campaign(n->r);
    sim_trace(s, "n%llu campaign: %s", ULL(n->id), rc ? lkv_strerror(rc) : "started");
    node_after_input(s, n);
}

/* A member whose removal committed goes away for good, disk and all. */
static void act_decommission(struct sim *s)
{
    for (raft_id id = 1; id < SIM_MAX_IDS; id++) {
        struct node *n = &s->nodes[id];
        if (s->removed[id] && (n->state == NODE_UP || n->state == NODE_DOWN)) {
            sim_trace(s, "n%llu decommissioned", ULL(id));
            node_destroy(n);
            return;
        }
    }
}

/* ---- membership ---- */

static size_t count_flag(const struct raft_membership *c, uint8_t flag, bool want)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++)
        k += ((c->m[i].flags & flag) != 0) == want;
    return k;
}

/* Index of a random member whose voter-in bit equals want, or c->n. */
static size_t pick_member(struct sim *s, const struct raft_membership *c, bool voter)
{
    size_t k = count_flag(c, RAFT_VOTER_IN, voter);
    if (k == 0)
        return c->n;
    size_t pick = (size_t)rng_below(&s->rng, k);
    for (size_t i = 0; i < c->n; i++)
        if (((c->m[i].flags & RAFT_VOTER_IN) != 0) == voter && pick-- == 0)
            return i;
    return c->n;
}

/* A new voter set drawn from the members, different from the old one. */
static bool draw_joint(struct sim *s, struct raft_membership *next)
{
    size_t n = next->n;
    bool in[RAFT_MAX_MEMBERS] = {0}, differs = false;
    size_t voters = 0;
    for (size_t i = 0; i < n; i++) {
        in[i] = rng_chance(&s->rng, 600);
        voters += in[i];
        differs |= in[i] != ((next->m[i].flags & RAFT_VOTER_IN) != 0);
    }
    if (voters == 0 || voters > MAX_VOTERS || !differs)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t f = next->m[i].flags & RAFT_VOTER_IN ? RAFT_VOTER_OUT : 0;
        next->m[i].flags = (uint8_t)(f | (in[i] ? RAFT_VOTER_IN : 0));
    }
    return true;
}

/* Builds a change of `cur`; sets *added to a new member's id, if any. */
static const char *draw_change(struct sim *s, struct raft_membership *next, raft_id *added)
{
    size_t voters = count_flag(next, RAFT_VOTER_IN, true);
    size_t i;
    switch (rng_below(&s->rng, 5)) {
    case 0:
        if (next->n >= MAX_MEMBERS_USED || s->next_id >= SIM_MAX_IDS)
            return NULL;
        *added = s->next_id;
        next->m[next->n] = (struct raft_member){.id = *added};
        set_addr(&next->m[next->n++]);
        return "add learner";
    case 1:
        if (voters >= MAX_VOTERS || (i = pick_member(s, next, false)) == next->n)
            return NULL;
        next->m[i].flags = RAFT_VOTER_IN;
        return "promote learner";
    case 2:
        if (voters <= 1 || (i = pick_member(s, next, true)) == next->n)
            return NULL;
        next->m[i].flags = 0;
        return "demote voter";
    case 3:
        i = (size_t)rng_below(&s->rng, next->n);
        if (voters <= 1 && next->m[i].flags)
            return NULL;
        memmove(&next->m[i], &next->m[i + 1], (next->n - i - 1) * sizeof next->m[0]);
        next->n--;
        return "remove member";
    default:
        return draw_joint(s, next) ? "enter joint" : NULL;
    }
}

static void describe_conf(const struct raft_membership *c, char *buf, size_t cap)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < c->n && off < cap; i++) {
        const char *f = c->m[i].flags == (RAFT_VOTER_IN | RAFT_VOTER_OUT) ? "io"
                        : c->m[i].flags == RAFT_VOTER_IN                  ? "v"
                        : c->m[i].flags == RAFT_VOTER_OUT                 ? "o"
                                                                          : "l";
        int k = snprintf(buf + off, cap - off, "%s%llu%s", i ? " " : "", ULL(c->m[i].id), f);
        if (k < 0)
            return;
        off += (size_t)k;
    }
}

static void act_conf(struct sim *s)
{
    struct node *l = top_leader(s);
    if (!l)
        return;
    const struct raft_membership *cur = raft_membership_current(l->r);
    if (raft_membership_joint(cur))
        return;
    struct raft_membership next = *cur;
    raft_id added = RAFT_NONE;
    const char *what = draw_change(s, &next, &added);
    if (!what)
        return;
    uint64_t index = 0;
    int rc = raft_propose_conf(l->r, &next, &index);
    char d[256];
    describe_conf(&next, d, sizeof d);
    sim_trace(s, "n%llu propose conf (%s) [%s]: %s index=%llu", ULL(l->id), what, d,
              rc ? lkv_strerror(rc) : "ok", ULL(index));
    if (rc == 0) {
        s->res->conf_changes++;
        if (added) {
            s->next_id++;
            node_start(s, added);
        }
    }
    node_after_input(s, l);
}

/* ---- the step ---- */

#define MAX_IN_FLIGHT 100000

static void check_step(struct sim *s)
{
    if (s->net.n > MAX_IN_FLIGHT)
        check_fail(&s->chk, "message storm", "%zu messages in flight", s->net.n);
    for (raft_id id = 1; id < SIM_MAX_IDS; id++)
        if (s->nodes[id].state == NODE_UP)
            node_check(s, &s->nodes[id]);
}

enum action {
    A_DELIVER, A_READY, A_TICK, A_PROPOSE, A_READ, A_CRASH, A_RESTART, A_PARTITION, A_HEAL,
    A_COMPACT, A_CONF, A_TRANSFER, A_CAMPAIGN, A_DECOMMISSION, A__COUNT
};

static void fault_step(struct sim *s)
{
    size_t deliverable = net_ready_count(&s->net, s->now), dirty = count_dirty(s);
    const struct weather *w = &s->w;
    uint64_t weight[A__COUNT] = {
        [A_DELIVER] = 60 * (deliverable < 50 ? deliverable : 50),
        [A_READY] = 150 * dirty,
        [A_TICK] = 100,
        [A_PROPOSE] = w->propose, [A_READ] = w->read, [A_CRASH] = w->crash,
        [A_RESTART] = w->restart, [A_PARTITION] = w->partition, [A_HEAL] = w->heal,
        [A_COMPACT] = w->compact, [A_CONF] = w->conf, [A_TRANSFER] = w->transfer,
        [A_CAMPAIGN] = w->campaign, [A_DECOMMISSION] = w->decommission,
    };
    uint64_t total = 0;
    for (int a = 0; a < A__COUNT; a++)
        total += weight[a];
    uint64_t r = rng_below(&s->rng, total);
    int a = 0;
    while (r >= weight[a])
        r -= weight[a++];
    switch ((enum action)a) {
    case A_DELIVER: act_deliver(s); break;
    case A_READY: node_drain(s, pick_dirty(s, dirty)); break;
    case A_TICK: act_tick(s); break;
    case A_PROPOSE: act_propose(s); break;
    case A_READ: act_read(s); break;
    case A_CRASH: act_crash(s); break;
    case A_RESTART: act_restart(s); break;
    case A_PARTITION: act_partition(s); break;
    case A_HEAL: act_heal(s); break;
    case A_COMPACT: act_compact(s); break;
    case A_CONF: act_conf(s); break;
    case A_TRANSFER: act_transfer(s); break;
    case A_CAMPAIGN: act_campaign(s); break;
    case A_DECOMMISSION: act_decommission(s); break;
    case A__COUNT: break;
    }
}

/* ---- liveness ---- */

struct probe {
    uint64_t index, term;
};

static void describe_cluster(struct sim *s, char *buf, size_t cap)
{
    size_t off = 0;
    for (raft_id id = 1; id < SIM_MAX_IDS && off < cap; id++) {
        struct node *n = &s->nodes[id];
        if (n->state != NODE_UP)
            continue;
        struct raft_status st;
        raft_status(n->r, &st);
        int k = snprintf(buf + off, cap - off, " n%llu:%s/t%llu/c%llu/a%llu/l%llu", ULL(id),
                         raft_role_name(st.role), ULL(st.term), ULL(st.commit),
                         ULL(n->sm.applied), ULL(st.last_index));
        if (k < 0)
            return;
        off += (size_t)k;
    }
}

/* True once a leader leads, a probe proposed to it committed, and every
 * member of its configuration applied the probe and every acknowledged
 * write. Otherwise says why not in `why`. */
static bool converged(struct sim *s, struct probe *p, char *why, size_t cap)
{
    struct node *l = top_leader(s);
    if (!l) {
        snprintf(why, cap, "no leader");
        return false;
    }
    const struct committed *k = p->index ? check_committed(&s->chk, p->index) : NULL;
    if (!k || k->term != p->term) {
        if (!p->index || l->leading != p->term || k) {
            uint64_t term = 0, index = propose_to(s, l, &term);
            if (index)
                *p = (struct probe){index, term};
        }
        snprintf(why, cap, "n%llu leads term %llu; probe (%llu,%llu) not committed", ULL(l->id),
                 ULL(l->leading), ULL(p->index), ULL(p->term));
        return false;
    }
    size_t n_acked;
    uint64_t need = check_acked_max(&s->chk, &n_acked);
    if (p->index > need)
        need = p->index;
    const struct raft_membership *c = raft_membership_current(l->r);
    for (size_t i = 0; i < c->n; i++) {
        struct node *m = &s->nodes[c->m[i].id];
        if (m->state != NODE_UP || m->sm.applied < need) {
            snprintf(why, cap, "member n%llu has applied %llu of %llu (%zu writes acknowledged)",
                     ULL(m->id), ULL(m->sm.applied), ULL(need), n_acked);
            return false;
        }
    }
    return true;
}

static void calm_down(struct sim *s)
{
    s->calm = true;
    net_heal(&s->net);
    unsigned d = s->net.w.delay_max < 2 ? s->net.w.delay_max : 2;
    s->net.w = (struct net_weather){.delay_max = d};
    sim_trace(s, "=== liveness phase: network healed, faults off, every node up");
    for (raft_id id = 1; id < SIM_MAX_IDS; id++)
        if (s->nodes[id].state == NODE_DOWN)
            node_start(s, id);
    for (raft_id id = 1; id < SIM_MAX_IDS; id++)
        if (s->nodes[id].state == NODE_UP)
            node_drain(s, &s->nodes[id]);
    check_step(s);
}

static void liveness(struct sim *s)
{
    calm_down(s);
    struct probe p = {0};
    char why[200] = "";
    uint64_t start = s->now;
    while (s->now - start < LIVENESS_TICKS) {
        for (int i = 0; i < 100000 && net_ready_count(&s->net, s->now); i++) {
            s->step++;
            act_deliver(s);
            check_step(s);
        }
        s->step++;
        if (converged(s, &p, why, sizeof why)) {
            s->res->liveness_ticks = s->now - start;
            return;
        }
        check_step(s);
        act_tick(s);
        check_step(s);
    }
    char c[400];
    describe_cluster(s, c, sizeof c);
    check_fail(&s->chk, "liveness", "%u ticks after healing: %s;%s", LIVENESS_TICKS, why, c);
}

/* ---- one run ---- */

static void setup(struct sim *s, const struct sim_config *cfg, struct sim_result *res)
{
    static const unsigned sizes[3] = {3, 5, 7};
    s->cfg = *cfg;
    s->res = res;
    rng_seed(&s->rng, cfg->seed);
    unsigned n = cfg->nodes ? cfg->nodes : sizes[rng_below(&s->rng, 3)];
    res->nodes = n;
    draw_weather(s);
    draw_options(s);
    make_initial(s, n);
    check_init(&s->chk, &s->fail);
    sim_trace(s,
              "seed %llu: %u nodes, lease_reads=%d max_inflight=%u max_append_bytes=%zu | "
              "drift<=%u crash=%u in_ready=%u disk_full=%u partition=%u compact=%u retain=%llu conf=%u "
              "transfer=%u eager=%u | drop=%u dup=%u slow=%u delay<=%u",
              ULL(cfg->seed), n, s->opt.lease_reads, s->opt.max_inflight, s->opt.max_append_bytes,
              s->w.drift, s->w.crash, s->w.crash_in_ready, s->w.disk_full, s->w.partition, s->w.compact,
              ULL(s->w.retain), s->w.conf, s->w.transfer, s->w.eager_ready, s->net.w.drop,
              s->net.w.dup, s->net.w.slow, s->net.w.delay_max);
}

static void teardown(struct sim *s)
{
    for (raft_id id = 1; id < SIM_MAX_IDS; id++)
        node_destroy(&s->nodes[id]);
    if (s->holding)
        net_packet_free(&s->hand);
    net_free(&s->net);
    check_free(&s->chk);
}

static void run_phases(struct sim *s)
{
    for (raft_id id = 1; id <= s->initial.n; id++)
        node_start(s, id);
    uint64_t steps = s->cfg.steps ? s->cfg.steps : DEFAULT_STEPS;
    while (s->step < steps) {
        s->step++;
        fault_step(s);
        check_step(s);
    }
    liveness(s);
}

int sim_run(const struct sim_config *cfg, struct sim_result *res)
{
    struct sim *s = calloc(1, sizeof *s);
    assert(s);
    *res = (struct sim_result){0};
    setup(s, cfg, res);
    if (setjmp(s->fail) == 0) {
        run_phases(s);
    } else {
        res->failed = true;
        snprintf(res->invariant, sizeof res->invariant, "%s", s->chk.invariant);
        snprintf(res->detail, sizeof res->detail, "%s", s->chk.detail);
    }
    res->step = s->step;
    res->tick = s->now;
    res->reads = s->chk.reads_served;
    res->commits = check_committed_before(&s->chk, UINT64_MAX);
    res->elections = s->chk.leaders_checked;
    teardown(s);
    free(s);
    return res->failed ? 1 : 0;
}
