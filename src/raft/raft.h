/* raft: the Raft consensus core as a pure state machine. No I/O, no
 * threads, no clock: time is counted in ticks, randomness comes from the
 * seed it is given, and everything it wants done comes out as a "ready"
 * bundle that the caller carries out (persist, send, apply) before calling
 * raft_advance(). Written from the Raft paper and Ongaro's thesis. */
#ifndef LKV_RAFT_RAFT_H
#define LKV_RAFT_RAFT_H

#include "util/blob.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Usage, one thread:
 *
 *   raft_new(&opt, &boot, &r);
 *   loop:
 *     raft_tick(r) every tick; raft_step(r, &msg) for each message received;
 *     raft_propose(r, ...) for client writes; raft_read_index(r, ctx) for reads;
 *     if (raft_has_ready(r)) {
 *       raft_ready(r, &rd);
 *       send rd.msgs                        (may go before the disk write)
 *       persist rd.hs if rd.hs_changed, install rd.snapshot if any, then
 *       truncate the log at rd.entries[0].index and append rd.entries (fdatasync)
 *       send rd.msgs_after                  (only once all of the above is durable)
 *       apply rd.committed in order; serve rd.reads once applied >= their index
 *       raft_advance(r, &rd, 0);            (or the persist error: see there)
 *     }
 *
 * The storage the core reads (raft_storage) is the caller's durable log:
 * everything the caller has persisted from earlier ready bundles. The core
 * keeps entries it has not yet seen persisted in memory itself.
 */

struct raft;

typedef uint64_t raft_id; /* a member; 0 is "nobody" */
#define RAFT_NONE ((raft_id)0)

/* The most members (voters and learners together) a configuration holds. */
#define RAFT_MAX_MEMBERS 16
/* Bytes of a member's address (host:port), NUL included. */
#define RAFT_ADDR_MAX 128

enum raft_role { RAFT_FOLLOWER, RAFT_PRE_CANDIDATE, RAFT_CANDIDATE, RAFT_LEADER };

/* Same numbers as the log's record types (wal/record.h). */
enum raft_entry_type { RAFT_ENTRY_COMMAND = 1, RAFT_ENTRY_NOOP = 2, RAFT_ENTRY_CONFIG = 3 };

/* One log entry. `data` may be NULL (empty payload, e.g. a no-op). Whoever
 * holds a struct raft_entry holds one reference to its data. */
struct raft_entry {
    uint64_t index;
    uint64_t term;
    uint8_t type;
    struct lkv_blob *data;
};

/* ---- membership ---- */

/* Member flags. A voter of a plain configuration has RAFT_VOTER_IN. In a
 * joint configuration (thesis 4.3) the new voter set has RAFT_VOTER_IN and
 * the old one RAFT_VOTER_OUT (a member in both has both). A member with
 * neither is a learner: it receives the log but never votes or counts. */
#define RAFT_VOTER_IN 0x1u
#define RAFT_VOTER_OUT 0x2u

struct raft_member {
    raft_id id;
    uint8_t flags;
    char addr[RAFT_ADDR_MAX]; /* opaque to the core; carried in config entries */
};

/* A configuration: the payload of a RAFT_ENTRY_CONFIG entry. Members are
 * kept sorted by id. */
struct raft_membership {
    size_t n;
    struct raft_member m[RAFT_MAX_MEMBERS];
};

/* True while both an old and a new voter set must agree. */
bool raft_membership_joint(const struct raft_membership *c);

/* The member with `id`, or NULL. */
const struct raft_member *raft_membership_find(const struct raft_membership *c, raft_id id);

/* True when `id` is a voter in either set. */
bool raft_membership_is_voter(const struct raft_membership *c, raft_id id);

/* Serialises c (version byte, count, then per member id, flags, address
 * length and bytes; little-endian). Returns the bytes written, or 0 when
 * cap is too small. RAFT_MEMBERSHIP_MAX_BYTES always suffices. */
#define RAFT_MEMBERSHIP_MAX_BYTES (2 + RAFT_MAX_MEMBERS * (8 + 1 + 1 + RAFT_ADDR_MAX))
size_t raft_membership_encode(const struct raft_membership *c, uint8_t *out, size_t cap);

/* Parses what raft_membership_encode wrote (pure; any bytes are safe).
 * Returns 0, or LKV_ECORRUPT for a bad version, truncation, trailing bytes,
 * id 0, duplicate ids, unknown flags, an address with a NUL or too long,
 * more than RAFT_MAX_MEMBERS members, or no voter at all. */
int raft_membership_decode(const uint8_t *p, size_t len, struct raft_membership *out);

/* ---- snapshots ---- */

/* What a snapshot covers. `data` is opaque to the core (the simulator puts
 * the state machine in it; the server may leave it NULL and move the file
 * itself). Whoever holds one holds a reference to data. */
struct raft_snapshot {
    uint64_t index; /* last log index whose effect it contains */
    uint64_t term;  /* term of that entry */
    struct raft_membership conf; /* configuration as of index */
    struct lkv_blob *data;
};

/* ---- the caller's durable log, read by the core ---- */

struct raft_storage {
    void *ctx;
    /* Term of the entry at `index`; the snapshot's index gives the
     * snapshot's term (index 0, before any entry, has term 0). Returns 0, LKV_ECOMPACTED (index is before that) or
     * LKV_EUNAVAILABLE (after the last entry), or LKV_EIO. */
    int (*term)(void *ctx, uint64_t index, uint64_t *term);
    /* Entries lo..hi-1 (lo <= hi-1 <= last_index), in order, into out
     * (room for max_n entries, max_n >= 1), each with a new reference to
     * its data: at least one, then as many as keep the payload total within
     * max_bytes. Sets *n. Returns 0, LKV_ECOMPACTED (lo is before
     * first_index) or LKV_EIO / LKV_ECORRUPT. */
    int (*entries)(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes, struct raft_entry *out,
                   size_t max_n, size_t *n);
    /* The first entry still held (the snapshot's index + 1, or lower while a
     * trailing window is kept), and the last (the snapshot's index when the
     * log after it is empty). */
    uint64_t (*first_index)(void *ctx);
    uint64_t (*last_index)(void *ctx);
    /* The newest snapshot, with a new reference to its data. Returns 0, or
     * LKV_EUNAVAILABLE when there is none to send yet. */
    int (*snapshot)(void *ctx, struct raft_snapshot *out);
};

/* ---- messages ---- */

enum raft_msg_type {
    RAFT_MSG_APPEND = 1,     /* entries after (index, log_term), leader's commit */
    RAFT_MSG_APPEND_RESP,    /* accept: index = last index now matching; reject: see below */
    RAFT_MSG_VOTE,           /* candidate's last (index, log_term) */
    RAFT_MSG_VOTE_RESP,
    RAFT_MSG_PREVOTE,        /* term = the term the sender would campaign in */
    RAFT_MSG_PREVOTE_RESP,
    RAFT_MSG_HEARTBEAT,      /* commit (capped at the follower's match), ctx = read round */
    RAFT_MSG_HEARTBEAT_RESP, /* ctx echoed */
    RAFT_MSG_SNAPSHOT,       /* snap */
    RAFT_MSG_TIMEOUT_NOW,    /* leadership transfer: campaign at once */
    RAFT_MSG__COUNT
};

/* Static lower-case name ("append", "append_resp", ...); "unknown" else. */
const char *raft_msg_type_name(int type);

struct raft_msg {
    uint8_t type;       /* enum raft_msg_type */
    bool reject;        /* *_RESP: refused */
    bool transfer;      /* VOTE: a campaign started by leadership transfer */
    raft_id from, to;
    uint64_t term;
    /* APPEND: index before the entries. APPEND_RESP: accepted: the last
     * index known to match the leader; rejected: the index it was asked to
     * append after. VOTE, PREVOTE: the candidate's last index. */
    uint64_t index;
    /* APPEND: term at index. VOTE, PREVOTE: the candidate's last term.
     * APPEND_RESP reject: term of the follower's entry at hint (0 if none). */
    uint64_t log_term;
    uint64_t hint;      /* APPEND_RESP reject: where the leader should probe next */
    uint64_t commit;    /* APPEND, HEARTBEAT */
    uint64_t ctx;       /* HEARTBEAT, HEARTBEAT_RESP: read round (0 = none) */
    size_t n_entries;   /* APPEND */
    struct raft_entry *entries;
    struct raft_snapshot *snap; /* SNAPSHOT */
};

/* ---- construction ---- */

struct raft_options {
    raft_id id;                 /* this member, != RAFT_NONE */
    unsigned election_ticks;    /* T: each election timeout is drawn from [T, 2T) */
    unsigned heartbeat_ticks;   /* 1 <= heartbeat_ticks < election_ticks */
    size_t max_append_bytes;    /* payload bytes per APPEND (at least one entry) */
    unsigned max_inflight;      /* APPENDs in flight per follower, >= 1 */
    bool pre_vote;              /* thesis 9.6 */
    bool check_quorum;          /* step down without a quorum; lease on votes */
    bool lease_reads;           /* serve reads on the leader lease (needs check_quorum) */
    uint64_t seed;              /* the only source of randomness */
    const struct raft_storage *storage; /* borrowed; must outlive the core */
};

struct raft_hard_state {
    uint64_t term;
    raft_id vote;
    uint64_t commit; /* not needed for safety; may be persisted for speed */
};

/* A configuration entry found in the log after the snapshot. */
struct raft_conf_at {
    uint64_t index;
    struct raft_membership conf;
};

/* The state recovered from disk. */
struct raft_boot {
    struct raft_hard_state hs;
    struct raft_snapshot snap;        /* index 0 = none; conf is then the initial
                                         configuration unless confs are given */
    const struct raft_conf_at *confs; /* config entries in the log after snap.index,
                                         ascending by index; borrowed for the call */
    size_t n_confs;
    uint64_t applied;                 /* last index the state machine already holds
                                         (>= snap.index; the caller applied it at start) */
};

/* Creates a core. `opt` and `boot` are borrowed for the call (the storage
 * for the core's life). A lone voter that is this member campaigns at once,
 * so it is leader once its first ready bundle (the new term and its vote)
 * has been persisted and advanced. With lease_reads, a core that starts
 * grants no vote and starts no campaign for one election timeout (it
 * forgot whom it last heard from), a lone voter included. Returns 0 and sets *out,
 * LKV_EINVAL for bad options or state, LKV_ENOMEM. */
int raft_new(const struct raft_options *opt, const struct raft_boot *boot, struct raft **out);

/* Frees the core, and every reference it holds. NULL is accepted. */
void raft_free(struct raft *r);

/* ---- inputs ---- */

/* One unit of time. */
void raft_tick(struct raft *r);

/* Hands the core a message addressed to it (borrowed; the core takes
 * references to what it keeps). Returns 0, or LKV_EINVAL for a message
 * that is malformed or not for this member (it is then ignored). Messages
 * from older terms, duplicates and reordering are all handled. */
int raft_step(struct raft *r, const struct raft_msg *m);

/* Leader: appends an entry of `type` (COMMAND or NOOP) carrying `data`
 * (borrowed; the core takes a reference; may be NULL). Sets *index and
 * *term to where it went: the caller's write is done when that index is
 * committed with that term. LKV_ENOTLEADER, LKV_ETRANSFER (a leadership
 * transfer is under way), LKV_ENOMEM, LKV_EINVAL. */
int raft_propose(struct raft *r, uint8_t type, struct lkv_blob *data, uint64_t *index,
                 uint64_t *term);

/* Leader: appends a configuration entry for `next`, which takes effect at
 * once. Allowed: a change of one member (add a learner, promote a learner,
 * demote or remove one member) from a plain configuration; entering a joint
 * configuration (old voters RAFT_VOTER_OUT, new ones RAFT_VOTER_IN) from the
 * plain one the old set matches. Leaving a joint configuration is proposed
 * by the leader itself once the joint one commits. LKV_EBUSY while a
 * configuration entry is not yet committed, LKV_EINVAL for any other
 * change, LKV_ENOTLEADER, LKV_ETRANSFER. */
int raft_propose_conf(struct raft *r, const struct raft_membership *next, uint64_t *index);

/* Leader: asks for a linearizable read. Once the leader has confirmed it
 * still leads (a quorum acknowledged a heartbeat sent after this call, or a
 * valid lease in lease mode), a struct raft_read {ctx, index} comes out of
 * raft_ready: the read may be served once the applied index reaches index.
 * Reads asked for before the leader committed an entry of its own term
 * wait for that. LKV_ENOTLEADER. */
int raft_read_index(struct raft *r, uint64_t ctx);

/* Leader: hands leadership to `to` (RAFT_NONE: the voter with the longest
 * log), once it has caught up; gives up after an election timeout.
 * Proposals are refused meanwhile. LKV_ENOTLEADER, LKV_EINVAL (not a voter,
 * or self with RAFT_NONE having no other voter). */
int raft_transfer_leadership(struct raft *r, raft_id to);

/* Starts an election now (pre-vote first if enabled). For tests and
 * tooling; a follower campaigns on its own after an election timeout.
 * A forced campaign ignores the lease other members' leaders rely on, so
 * it voids lease reads: do not use it on a cluster in lease mode. */
int raft_campaign(struct raft *r);

/* The caller could not deliver to `peer`: replication to it goes back to
 * probing. */
void raft_report_unreachable(struct raft *r, raft_id peer);

/* The snapshot sent to `peer` was installed (ok) or not. */
void raft_report_snapshot(struct raft *r, raft_id peer, bool ok);

/* Lone leader only (no other member in the configuration): drops the
 * entries it has not yet seen persisted, so that the writes in them can be
 * failed (disk full) and the indexes reused. LKV_EINVAL elsewhere. */
int raft_drop_unstable(struct raft *r);

/* ---- outputs ---- */

struct raft_read {
    uint64_t ctx;
    uint64_t index;
};

/* What the caller must do next. Every pointer stays valid until
 * raft_advance(); the caller takes its own references to what it keeps. */
struct raft_ready {
    bool hs_changed;
    struct raft_hard_state hs;
    const struct raft_snapshot *snapshot; /* install: replaces the log through its index */
    const struct raft_entry *entries;     /* append; the log from entries[0].index on is replaced */
    size_t n_entries;
    const struct raft_msg *msgs;          /* may be sent before persisting */
    size_t n_msgs;
    const struct raft_msg *msgs_after;    /* only once everything above is durable */
    size_t n_msgs_after;
    const struct raft_entry *committed;   /* apply in order, after persisting */
    size_t n_committed;
    const struct raft_read *reads;        /* serve once applied >= index */
    size_t n_reads;
    bool soft_changed;                    /* role or leader differ from the last bundle */
    enum raft_role role;
    raft_id leader;
    uint64_t term;
};

/* True when raft_ready would return anything. */
bool raft_has_ready(const struct raft *r);

/* Fills rd. Call raft_advance before the next raft_ready. No input may be
 * given to the core between the two. */
void raft_ready(struct raft *r, struct raft_ready *rd);

/* The caller has carried out rd. persist_status 0: the hard state,
 * snapshot and entries are durable, msgs_after were handed for sending,
 * committed entries were applied. Non-zero (the disk is full): nothing of
 * this bundle was persisted beyond a truncation, msgs_after were dropped and
 * nothing was applied; the same work comes back in the next bundle. */
void raft_advance(struct raft *r, const struct raft_ready *rd, int persist_status);

/* ---- status ---- */

enum raft_progress_state { RAFT_PROGRESS_PROBE, RAFT_PROGRESS_REPLICATE, RAFT_PROGRESS_SNAPSHOT };

struct raft_peer_status {
    raft_id id;
    uint64_t match, next;
    uint8_t state;         /* enum raft_progress_state */
    bool recent_active;    /* heard from within the current election timeout */
    unsigned inflight;     /* APPENDs unacknowledged */
    uint64_t snapshot_index; /* SNAPSHOT: the index it is being sent; 0 otherwise */
};

struct raft_status {
    raft_id id;
    enum raft_role role;
    uint64_t term;
    raft_id vote;
    raft_id leader;
    uint64_t commit;
    uint64_t applied;
    uint64_t first_index;   /* of the log, stable and not */
    uint64_t last_index;
    uint64_t last_term;
    raft_id transferee;     /* leadership being handed to, or RAFT_NONE */
    uint64_t elections;     /* campaigns started (pre-vote rounds included) */
    uint64_t elections_won;
    uint64_t leader_changes;
    size_t n_peers;         /* leader only: every other member */
    struct raft_peer_status peers[RAFT_MAX_MEMBERS];
};

void raft_status(const struct raft *r, struct raft_status *st);

/* The configuration in force (the newest in the log, committed or not). */
const struct raft_membership *raft_membership_current(const struct raft *r);

/* Static name ("follower", "pre-candidate", "candidate", "leader"). */
const char *raft_role_name(enum raft_role role);

#endif
