/* raft/progress: what the leader knows of each member's log, and how it
 * replicates to it: probing one message at a time, replicating with a
 * window of messages in flight, or waiting for a snapshot. Internal. */
#ifndef LKV_RAFT_PROGRESS_H
#define LKV_RAFT_PROGRESS_H

#include "raft/raft.h"

#include <stdbool.h>
#include <stdint.h>

struct progress {
    raft_id id;
    uint64_t match;           /* highest index known to match the leader's log */
    uint64_t next;            /* next index to send */
    uint8_t state;            /* enum raft_progress_state */
    bool probe_sent;          /* PROBE: one append is out; wait for its answer */
    bool recent_active;       /* heard from since the last check-quorum round */
    uint64_t pending_snapshot; /* SNAPSHOT: the snapshot's index */
    uint64_t read_ack;        /* highest read round it acknowledged this term */
    uint64_t *inflight;       /* REPLICATE: last index of each unacknowledged append (ring) */
    unsigned in_start, in_count, in_cap;
};

/* A fresh progress (PROBE at next, match 0). Returns 0 or LKV_ENOMEM. */
int progress_init(struct progress *p, raft_id id, uint64_t next, unsigned window);
void progress_free(struct progress *p);

void progress_become_probe(struct progress *p);
void progress_become_replicate(struct progress *p);
void progress_become_snapshot(struct progress *p, uint64_t index);

/* True when nothing more may be sent now. */
bool progress_paused(const struct progress *p);

/* An acknowledgement that the log matches through n: raises match (never
 * lowers it) and next. Returns true when match moved. */
bool progress_maybe_update(struct progress *p, uint64_t n);

/* A rejection of the append after `rejected`, with the follower's hint of
 * where to try (already mapped onto the leader's log). Returns false when
 * the rejection is stale (it answers something older than what is being
 * sent now) and changes nothing. */
bool progress_maybe_decr_to(struct progress *p, uint64_t rejected, uint64_t hint);

/* An append through `last` was sent. */
void progress_sent(struct progress *p, uint64_t last);

/* Acknowledged through n: frees the window slots of appends up to n. */
void progress_free_to(struct progress *p, uint64_t n);

#endif
