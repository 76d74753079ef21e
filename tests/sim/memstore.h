/* memstore: an in-memory durable log for driving the Raft core in unit tests
 * and the simulator: what raft_ready asked to persist, kept as the disk
 * would keep it, and the raft_boot a restart would read back. */
#ifndef LKV_TESTS_SIM_MEMSTORE_H
#define LKV_TESTS_SIM_MEMSTORE_H

#include "raft/raft.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct memstore;

/* An empty disk whose initial configuration is `conf` (copied): what a new
 * data directory with PEERS set starts from. */
struct memstore *memstore_new(const struct raft_membership *conf);
void memstore_free(struct memstore *s);

/* The raft_storage view (valid as long as s). */
const struct raft_storage *memstore_storage(struct memstore *s);

/* Makes the persistent part of rd durable: hard state, snapshot, entries
 * (truncating what they replace). With keep < rd->n_entries only the first
 * `keep` entries are written, as a crash in the middle of the write would
 * leave them (hard state and snapshot are written first, whole). */
void memstore_persist(struct memstore *s, const struct raft_ready *rd, size_t keep);

/* Compacts: the snapshot becomes {index, term of index, conf in force at
 * index, data (borrowed: a reference is taken)} and entries up to
 * index - retain are dropped. index must be in the log and <= commit. */
void memstore_compact(struct memstore *s, uint64_t index, const struct raft_membership *conf,
                      struct lkv_blob *data, uint64_t retain);

/* What a restart reads: hard state, snapshot, config entries after it.
 * boot->confs points into s and is valid until s changes; applied is set
 * to the snapshot index. */
void memstore_boot(struct memstore *s, struct raft_boot *boot);

/* Read access for invariant checks. */
struct raft_hard_state memstore_hard_state(const struct memstore *s);
uint64_t memstore_first_index(const struct memstore *s);
uint64_t memstore_last_index(const struct memstore *s);
/* The entry at index (first <= index <= last), or NULL. */
const struct raft_entry *memstore_entry(const struct memstore *s, uint64_t index);
/* Term at index, including the snapshot's index; 0 when not held. */
uint64_t memstore_term(const struct memstore *s, uint64_t index);
const struct raft_snapshot *memstore_snapshot(const struct memstore *s);

#endif
