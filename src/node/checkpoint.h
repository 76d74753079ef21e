/* checkpoint: the checkpoint policy: when a snapshot is due (the log has
 * grown by checkpoint_bytes since the last one), feeding the one that runs
 * alongside writes, and what follows a durable one (older snapshots and the
 * log it covers go). */
#ifndef LKV_NODE_CHECKPOINT_H
#define LKV_NODE_CHECKPOINT_H

#include "kv/kv_map.h"
#include "stats/stats.h"
#include "util/io.h"
#include "wal/wal.h"

#include <stdbool.h>
#include <stdint.h>

/* Every call below is from one thread, the map's writer (the store's
 * writer thread), between batches. */
struct checkpoint;

struct checkpoint_config {
    const char *dir;           /* data directory; must outlive the checkpointer */
    const struct io_ops *io;   /* never NULL */
    struct kv_map *map;        /* borrowed */
    struct wal *wal;           /* borrowed; its old segments are dropped after a snapshot */
    uint64_t checkpoint_bytes; /* log growth that makes a snapshot due */
    uint64_t snap_index;       /* index of the newest durable snapshot (0 if none) */
    struct stats *stats;       /* borrowed; where finished checkpoints are counted */
};

/* Returns a new checkpointer, the first snapshot due once the log holds
 * checkpoint_bytes; NULL when out of memory. */
struct checkpoint *checkpoint_new(const struct checkpoint_config *cfg);

/* Frees it. checkpoint_final() must have been called if one ever started. */
void checkpoint_free(struct checkpoint *c);

/* True while a snapshot is being written (it then wants feeding even when
 * no writes come). */
bool checkpoint_running(const struct checkpoint *c);

/* With every record up to applied_index in the map: finishes a snapshot
 * whose file is durable (or failed), then, when may_start and one is due,
 * starts a new one covering applied_index on a fresh log segment. Failures
 * are logged and retried later; none is fatal. */
void checkpoint_maybe_start(struct checkpoint *c, uint64_t applied_index, bool may_start);

/* Serialises a few more pieces of the map for the running snapshot: one
 * right after a batch, so the next batch waits well under a millisecond,
 * more when idle. */
void checkpoint_feed(struct checkpoint *c, bool after_batch);

/* At shutdown, with the map quiet: ends a running snapshot (abandoning it
 * if it is still being fed), then, when may_write and the newest snapshot
 * is older than applied_index, writes one in this thread so that the next
 * start loads it instead of replaying the log. */
void checkpoint_final(struct checkpoint *c, uint64_t applied_index, bool may_write);

#endif
