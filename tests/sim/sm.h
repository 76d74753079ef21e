/* sm: the simulated state machine. It holds no data, only a hash chain over
 * every applied entry (index, term, type, payload), so two replicas agree on
 * their whole history exactly when they agree on (applied, chain). The chain
 * is what a snapshot's data blob carries. */
#ifndef LKV_TESTS_SIM_SM_H
#define LKV_TESTS_SIM_SM_H

#include "raft/raft.h"

#include <stdbool.h>
#include <stdint.h>

struct sm {
    uint64_t applied; /* last index applied (or restored from a snapshot) */
    uint64_t term;    /* its term */
    uint64_t chain;   /* hash chain through applied */
    uint64_t n_cmds;  /* COMMAND entries applied, for the trace */
    struct raft_membership conf; /* configuration in force at applied */
};

/* Hash of an entry's payload (0 for none). */
uint64_t sm_payload_hash(const struct raft_entry *e);

/* The chain after `prev` extended by e. */
uint64_t sm_chain_next(uint64_t prev, const struct raft_entry *e);

/* The state a snapshot restores. A snapshot at index 0 (none yet) gives the
 * empty state with the snapshot's (initial) configuration. Returns false
 * when the data blob is not one sm_encode made. */
bool sm_from_snapshot(struct sm *sm, const struct raft_snapshot *snap);

/* Applies e, which must be at applied + 1 (the caller checks). */
void sm_apply(struct sm *sm, const struct raft_entry *e);

/* A new blob (one reference, the caller's) holding applied, term, chain. */
struct lkv_blob *sm_encode(const struct sm *sm);

/* Decodes a blob sm_encode made. */
bool sm_decode(const struct lkv_blob *b, uint64_t *applied, uint64_t *term, uint64_t *chain);

#endif
