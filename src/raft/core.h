/* raft/core: the core's state and the helpers its files share. Internal to
 * src/raft; callers use raft.h. */
#ifndef LKV_RAFT_CORE_H
#define LKV_RAFT_CORE_H

#include "raft/log.h"
#include "raft/progress.h"
#include "raft/quorum.h"
#include "raft/raft.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Read rounds remembered for the lease (the tick each was sent at). */
#define READ_ROUNDS 64

struct msgvec {
    struct raft_msg *v;
    size_t n, cap;
};

/* Configurations from the newest one at or before the commit index to the
 * newest in the log: v[n-1] is the one in force. */
struct conf_hist {
    struct raft_conf_at *v;
    size_t n, cap;
};

struct read_req {
    uint64_t ctx;
    uint64_t index; /* commit index when it became eligible */
    uint64_t round; /* the read round that must be acknowledged */
};

struct readvec {
    struct read_req *v;
    size_t n, cap;
};

struct raft {
    struct raft_options opt;
    struct rlog log;
    uint64_t term;
    raft_id vote;
    raft_id leader;
    enum raft_role role;
    struct conf_hist confs;

    struct progress prs[RAFT_MAX_MEMBERS]; /* one per member of the configuration */
    size_t nprs;

    unsigned election_elapsed;  /* ticks since the last reset (leader: since check-quorum) */
    unsigned heartbeat_elapsed;
    unsigned timeout;           /* this round's randomised election timeout */
    uint64_t ticks;             /* total, for the lease */
    uint64_t rng;

    int8_t votes[RAFT_MAX_MEMBERS]; /* candidate: per configuration slot, -1 unknown */

    raft_id transferee;
    unsigned transfer_elapsed;
    uint64_t pending_conf_index; /* no configuration change until commit reaches it */
    bool bcast_pending;          /* new entries to send at the next ready */

    /* reads: waiting for the term's first commit, then for their round */
    struct readvec reads_waiting;
    struct readvec reads_queued;
    struct readvec reads_ready;
    uint64_t read_round;          /* last round sent */
    bool read_round_needed;       /* a queued read needs a new round */
    uint64_t round_tick[READ_ROUNDS];

    /* the bundle being built, and what the last one reported */
    struct msgvec out;
    struct msgvec out_after;
    struct raft_hard_state prev_hs;
    enum raft_role prev_role;
    raft_id prev_leader;
    bool soft_reported;
    struct raft_entry *committed;  /* handed out in the current bundle */
    size_t n_committed;
    struct raft_read *reads_out;
    size_t n_reads_out;
    bool in_ready;

    uint64_t elections, elections_won, leader_changes;
};

/* ---- raft.c ---- */
void core_become_follower(struct raft *r, uint64_t term, raft_id leader);
const struct raft_membership *core_conf(const struct raft *r);
bool core_promotable(const struct raft *r);
struct progress *core_progress(struct raft *r, raft_id id);
void core_reset_timeout(struct raft *r);

/* Queues a message; `after` when it may only leave once this bundle is
 * durable. Consumes m's entries and snapshot (ownership moves). */
void core_send(struct raft *r, struct raft_msg *m, bool after);

/* ---- replicate.c ---- */
/* Leader: sends what pr can take now. Returns true when it sent a message. */
bool repl_send_append(struct raft *r, struct progress *pr, bool send_if_empty);
void repl_bcast_append(struct raft *r);
void repl_bcast_heartbeat(struct raft *r, uint64_t round);
/* Leader: moves the commit index to what a quorum has durably. Returns true when it moved. */
bool repl_maybe_commit(struct raft *r);
void repl_step_leader(struct raft *r, const struct raft_msg *m);
void repl_handle_append(struct raft *r, const struct raft_msg *m);
void repl_handle_heartbeat(struct raft *r, const struct raft_msg *m);
void repl_handle_snapshot(struct raft *r, const struct raft_msg *m);
/* Leader: appends entries to its own log and marks them for sending. */
int repl_append_local(struct raft *r, uint8_t type, struct lkv_blob *data, uint64_t *index);

/* ---- conf.c ---- */
/* The configuration entries among e[0..n) take effect (they were just
 * appended); the history drops those at or after e[0].index first. */
int conf_on_append(struct raft *r, const struct raft_entry *e, size_t n);
/* The log was cut back to before `from`: configurations from there go. */
void conf_on_truncate(struct raft *r, uint64_t from);
/* The commit index moved: old history goes, a committed joint
 * configuration is left, a leader no longer a voter steps down. */
void conf_on_commit(struct raft *r);
/* The whole history becomes the snapshot's configuration. */
void conf_on_restore(struct raft *r, const struct raft_snapshot *s);
/* Makes the progress table match the configuration in force. */
int conf_sync_progress(struct raft *r);

/* ---- readindex.c ---- */
void read_on_leader(struct raft *r);        /* a new term begins on this leader */
void read_on_step_down(struct raft *r);     /* leadership lost: pending reads are dropped */
void read_on_commit(struct raft *r);        /* commit moved: waiting reads may become eligible */
void read_on_ack(struct raft *r, struct progress *pr, uint64_t round);
void read_on_round_sent(struct raft *r, uint64_t round);
bool read_lease_valid(const struct raft *r);

#endif
