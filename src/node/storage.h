/* node/storage: the Raft core's read-only view of this node's durable log:
 * the write-ahead log's records (those after the newest snapshot, and the
 * trailing window kept before it) plus the snapshot's own index and term.
 * Loop thread only, like the log itself. */
#ifndef LKV_NODE_STORAGE_H
#define LKV_NODE_STORAGE_H

#include "raft/raft.h"
#include "wal/wal.h"

struct node_storage {
    struct raft_storage st; /* what the core reads; st.ctx is this struct */
    struct wal *wal;        /* borrowed */
    uint64_t snap_index;    /* newest durable snapshot (0: none) */
    uint64_t snap_term;
};

/* Sets up the view over wal (borrowed, must outlive it). */
void node_storage_init(struct node_storage *s, struct wal *wal, uint64_t snap_index,
                       uint64_t snap_term);

/* A newer snapshot is durable. */
void node_storage_set_snapshot(struct node_storage *s, uint64_t index, uint64_t term);

#endif
