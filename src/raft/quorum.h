/* raft/quorum: every majority question asked of a configuration, answered
 * in one place: how far a quorum has got (commit index, read rounds,
 * activity), and whether an election is won. A joint configuration needs a
 * majority of each voter set. Internal to src/raft. */
#ifndef LKV_RAFT_QUORUM_H
#define LKV_RAFT_QUORUM_H

#include "raft/raft.h"

#include <stdint.h>

/* A value per member (a match index, an acknowledged read round, ...). */
typedef uint64_t (*quorum_value_fn)(void *arg, raft_id id);

/* The largest v such that a majority of every voter set has a value >= v
 * (in a joint configuration the smaller of the two sets' answers). */
uint64_t quorum_index(const struct raft_membership *c, quorum_value_fn fn, void *arg);

enum quorum_vote { QUORUM_PENDING, QUORUM_WON, QUORUM_LOST };

/* A member's vote: 1 granted, 0 refused, -1 not heard from. */
typedef int (*quorum_vote_fn)(void *arg, raft_id id);

/* Won once every voter set has a granting majority; lost once some set
 * can no longer reach one. */
enum quorum_vote quorum_vote_result(const struct raft_membership *c, quorum_vote_fn fn,
                                    void *arg);

#endif
