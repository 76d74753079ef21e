/* ident: how members and clusters are named: a member's id comes from its
 * host:port, a cluster's from its initial member set, so every node derives
 * the same numbers from the same addresses. Pure. */
#ifndef LKV_NODE_IDENT_H
#define LKV_NODE_IDENT_H

#include "raft/raft.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 64-bit FNV-1a of the address (never 0). */
raft_id ident_member_id(const char *addr);

/* A hash of the members' addresses in sorted order (never 0). */
uint64_t ident_cluster_id(const struct raft_membership *c);

/* The initial configuration: self and every peer as voters, sorted by id.
 * Returns 0, or LKV_EINVAL when two addresses hash to one id or there are
 * more than RAFT_MAX_MEMBERS. */
int ident_initial_conf(const char *self, const char (*peers)[128], size_t npeers,
                       struct raft_membership *out);

/* True when `self` is the only voter (learners aside): a cluster of one,
 * whose durable entries are committed as they are written. */
bool ident_lone_voter(const struct raft_membership *c, raft_id self);

#endif
