/* raft/log: the core's view of the log: the caller's durable storage, plus
 * the entries (and the snapshot) the core has accepted but not yet seen
 * persisted, plus the commit and applied indexes. Internal to src/raft. */
#ifndef LKV_RAFT_LOG_H
#define LKV_RAFT_LOG_H

#include "raft/raft.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Invariants:
 *   uoff <= storage last + 1 (storage entries at uoff and after are
 *   shadowed by the unstable ones, and are replaced when they persist);
 *   the log is storage[first..uoff-1] followed by u[0..un-1], so
 *   last = uoff + un - 1;
 *   with a snapshot pending (usnap), storage is ignored entirely and the log
 *   is the snapshot followed by u, uoff = usnap.index + 1;
 *   applied <= commit <= last.
 */
struct rlog {
    const struct raft_storage *st;
    struct raft_entry *u; /* unstable entries; u[i].index == uoff + i; one data reference each */
    size_t un, ucap;
    uint64_t uoff;
    struct raft_snapshot *usnap; /* received, not yet persisted; owns a data reference */
    uint64_t commit;
    uint64_t applied;
};

/* Sets up the view over st with nothing unstable. */
void rlog_init(struct rlog *l, const struct raft_storage *st, uint64_t commit, uint64_t applied);

/* Drops every reference held. */
void rlog_free(struct rlog *l);

uint64_t rlog_first_index(const struct rlog *l);
uint64_t rlog_last_index(const struct rlog *l);

/* Term at index (the snapshot's index included). 0 and the term; or
 * LKV_ECOMPACTED / LKV_EUNAVAILABLE / the storage's error. */
int rlog_term(const struct rlog *l, uint64_t index, uint64_t *term);

/* Term at index, or 0 when it cannot be known. */
uint64_t rlog_term_or_zero(const struct rlog *l, uint64_t index);

uint64_t rlog_last_term(const struct rlog *l);

/* True when the log holds an entry at index with this term. */
bool rlog_match_term(const struct rlog *l, uint64_t index, uint64_t term);

/* True when a log ending at (last_index, last_term) is at least as up to
 * date as this one (Raft's election restriction). */
bool rlog_is_up_to_date(const struct rlog *l, uint64_t last_index, uint64_t last_term);

/* The last index whose entry is durable in storage and still part of the
 * log (so a leader may count itself for it). */
uint64_t rlog_stable_last(const struct rlog *l);

/* Appends n entries that follow index `after` (after + 1 == e[0].index),
 * replacing whatever the log held from there on; takes a reference to each
 * entry's data. Precondition (asserted): commit <= after < last + 1. */
int rlog_append(struct rlog *l, uint64_t after, const struct raft_entry *e, size_t n);

/* The entries m.entries[] that are new to the log: the index of the first
 * one whose term differs from the log's at that index, or that is past the
 * log's end; 0 when the log already holds them all. */
uint64_t rlog_find_conflict(const struct rlog *l, const struct raft_entry *e, size_t n);

/* The largest index <= index whose term is <= term (the log's first index
 * - 1 when there is none); sets *found_term to its term (0 if unknown). */
uint64_t rlog_find_conflict_by_term(const struct rlog *l, uint64_t index, uint64_t term,
                                    uint64_t *found_term);

/* Copies entries lo..hi-1 with new references into a malloc'ed array: at
 * least one, then within max_bytes of payload. Sets *out and *n. Returns 0,
 * LKV_ECOMPACTED, LKV_ENOMEM or a storage error. */
int rlog_slice(const struct rlog *l, uint64_t lo, uint64_t hi, size_t max_bytes,
               struct raft_entry **out, size_t *n);

/* Raises commit to index (never lowers it; capped at last). Returns true
 * when it moved. */
bool rlog_commit_to(struct rlog *l, uint64_t index);

/* Replaces the whole log with snapshot s (copied, data reference taken). */
int rlog_restore(struct rlog *l, const struct raft_snapshot *s);

/* The caller persisted everything unstable: forget it. */
void rlog_stable_all(struct rlog *l);

/* Drops every unstable entry (nothing of them reached anyone). */
void rlog_drop_unstable(struct rlog *l);

/* Frees an array from rlog_slice (and its references). */
void rlog_free_entries(struct raft_entry *e, size_t n);

#endif
