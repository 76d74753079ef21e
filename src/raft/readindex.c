/* raft/readindex: linearizable reads on the leader (thesis 6.4). A read
 * waits until the leader has committed an entry of its own term, records
 * the commit index, and is released once a quorum has acknowledged a
 * heartbeat round sent after it arrived (one round serves every read queued
 * before it), or at once while the leader's lease holds in lease mode. */
#include "raft/core.h"

#include "util/err.h"

#include <stdlib.h>
#include <string.h>

static int push(struct readvec *v, struct read_req rq)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        struct read_req *p = realloc(v->v, cap * sizeof *p);
        if (!p)
            return LKV_ENOMEM;
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = rq;
    return 0;
}

void read_on_leader(struct raft *r)
{
    r->reads_waiting.n = 0;
    r->reads_queued.n = 0;
    memset(r->round_tick, 0, sizeof r->round_tick);
    r->read_round_needed = false;
}

void read_on_step_down(struct raft *r)
{
    /* Reads not yet confirmed cannot be any more; the caller sees the role
     * change and fails them. Confirmed ones (reads_ready) stay valid. */
    r->reads_waiting.n = 0;
    r->reads_queued.n = 0;
    r->read_round_needed = false;
}

static uint64_t ack_of(void *arg, raft_id id)
{
    struct raft *r = arg;
    if (id == r->opt.id)
        return r->read_round;
    struct progress *pr = core_progress(r, id);
    return pr ? pr->read_ack : 0;
}

/* The newest round a quorum has acknowledged. */
static uint64_t quorum_round(struct raft *r)
{
    return quorum_index(core_conf(r), ack_of, r);
}

static void release(struct raft *r)
{
    uint64_t acked = quorum_round(r);
    size_t k = 0;
    for (size_t i = 0; i < r->reads_queued.n; i++) {
        struct read_req rq = r->reads_queued.v[i];
        if (rq.round <= acked && push(&r->reads_ready, rq) == 0)
            continue;
        r->reads_queued.v[k++] = rq;
    }
    r->reads_queued.n = k;
}

bool read_lease_valid(const struct raft *r)
{
    if (!r->opt.lease_reads || !r->opt.check_quorum || r->role != RAFT_LEADER)
        return false;
    uint64_t acked = quorum_round((struct raft *)r);
    if (acked == 0 || r->read_round - acked >= READ_ROUNDS)
        return false;
    /* Followers that answered a round sent at tick t refuse to vote until
     * t + T at the earliest; keep a quarter of T as margin for clocks that
     * run at different speeds. */
    uint64_t sent = r->round_tick[acked % READ_ROUNDS];
    unsigned t = r->opt.election_ticks;
    return r->ticks - sent < (uint64_t)(t - t / 4);
}

void read_on_commit(struct raft *r)
{
    if (r->role != RAFT_LEADER || r->reads_waiting.n == 0 ||
        rlog_term_or_zero(&r->log, r->log.commit) != r->term)
        return;
    bool lease = read_lease_valid(r);
    for (size_t i = 0; i < r->reads_waiting.n; i++) {
        struct read_req rq = r->reads_waiting.v[i];
        rq.index = r->log.commit;
        rq.round = r->read_round + 1; /* a round sent after the read arrived */
        if (lease) {
            if (push(&r->reads_ready, rq) != 0)
                continue;
        } else if (push(&r->reads_queued, rq) != 0) {
            continue; /* out of memory: the read is dropped; its caller times out */
        } else {
            r->read_round_needed = true;
        }
    }
    r->reads_waiting.n = 0;
}

void read_on_round_sent(struct raft *r, uint64_t round)
{
    r->round_tick[round % READ_ROUNDS] = r->ticks;
    release(r); /* a lone voter acknowledges its own round */
}

void read_on_ack(struct raft *r, struct progress *pr, uint64_t round)
{
    if (round > r->read_round)
        return; /* never sent */
    if (round > pr->read_ack)
        pr->read_ack = round;
    release(r);
}
