#include "raft/progress.h"

#include "util/err.h"

#include <stdlib.h>
#include <string.h>

int progress_init(struct progress *p, raft_id id, uint64_t next, unsigned window)
{
    memset(p, 0, sizeof *p);
    p->id = id;
    p->next = next;
    p->state = RAFT_PROGRESS_PROBE;
    p->recent_active = true; /* a new member gets a full round before check-quorum counts it */
    p->in_cap = window ? window : 1;
    p->inflight = malloc(p->in_cap * sizeof *p->inflight);
    return p->inflight ? 0 : LKV_ENOMEM;
}

void progress_free(struct progress *p)
{
    free(p->inflight);
    p->inflight = NULL;
}

static void reset_state(struct progress *p, uint8_t state)
{
    p->state = state;
    p->probe_sent = false;
    p->pending_snapshot = 0;
    p->in_start = 0;
    p->in_count = 0;
}

void progress_become_probe(struct progress *p)
{
    /* Coming back from a snapshot, the follower holds at least its index. */
    uint64_t next = p->match + 1;
    if (p->state == RAFT_PROGRESS_SNAPSHOT && p->pending_snapshot + 1 > next)
        next = p->pending_snapshot + 1;
    reset_state(p, RAFT_PROGRESS_PROBE);
    p->next = next;
}

void progress_become_replicate(struct progress *p)
{
    reset_state(p, RAFT_PROGRESS_REPLICATE);
    p->next = p->match + 1;
}

void progress_become_snapshot(struct progress *p, uint64_t index)
{
    reset_state(p, RAFT_PROGRESS_SNAPSHOT);
    p->pending_snapshot = index;
}

bool progress_paused(const struct progress *p)
{
    switch (p->state) {
    case RAFT_PROGRESS_PROBE: return p->probe_sent;
    case RAFT_PROGRESS_REPLICATE: return p->in_count == p->in_cap;
    default: return true;
    }
}

bool progress_maybe_update(struct progress *p, uint64_t n)
{
    bool moved = false;
    if (p->match < n) {
        p->match = n;
        moved = true;
        p->probe_sent = false;
    }
    if (p->next < n + 1)
        p->next = n + 1;
    return moved;
}

bool progress_maybe_decr_to(struct progress *p, uint64_t rejected, uint64_t hint)
{
    if (p->state == RAFT_PROGRESS_REPLICATE) {
        /* Only a rejection of something past what is known to match means
         * the pipeline broke; older ones were overtaken. */
        if (rejected <= p->match)
            return false;
        p->next = p->match + 1;
        return true;
    }
    /* Probing sends one append at a time: only the answer to that one
     * counts. */
    if (p->next == 0 || p->next - 1 != rejected)
        return false;
    uint64_t next = rejected < hint + 1 ? rejected : hint + 1;
    if (next < p->match + 1)
        next = p->match + 1;
    if (next < 1)
        next = 1;
    p->next = next;
    p->probe_sent = false;
    return true;
}

void progress_sent(struct progress *p, uint64_t last)
{
    if (p->state == RAFT_PROGRESS_REPLICATE) {
        if (last + 1 > p->next)
            p->next = last + 1;
        if (p->in_count < p->in_cap) {
            p->inflight[(p->in_start + p->in_count) % p->in_cap] = last;
            p->in_count++;
        }
    } else if (p->state == RAFT_PROGRESS_PROBE) {
        p->probe_sent = true;
    }
}

void progress_free_to(struct progress *p, uint64_t n)
{
    while (p->in_count > 0 && p->inflight[p->in_start] <= n) {
        p->in_start = (p->in_start + 1) % p->in_cap;
        p->in_count--;
    }
}
