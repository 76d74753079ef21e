/* loop: the store's writer thread. It takes queued writes in batches and
 * carries each batch through four steps in order: persist (one log append
 * and fdatasync: the durable index), commit (the commit index; on a single
 * node whatever is durable is committed), apply (the map: the applied
 * index), answer (each request's done_cb). Between batches it runs the
 * checkpoint policy. */
#ifndef LKV_NODE_LOOP_H
#define LKV_NODE_LOOP_H

#include "kv/kv_map.h"
#include "node/apply.h"
#include "stats/stats.h"
#include "store.h"
#include "util/io.h"
#include "wal/wal.h"

#include <stdint.h>

struct loop;

/* What the loop works on. Pointers are borrowed and must outlive it. */
struct loop_config {
    const char *dir;
    const struct io_ops *io;   /* never NULL */
    struct kv_map *map;        /* the loop thread becomes its only writer */
    struct apply *apply;       /* used by the loop thread only from now on */
    struct wal *wal;           /* recovered: every record in it is in the map */
    uint64_t snap_index;       /* index of the newest durable snapshot (0 if none) */
    uint64_t checkpoint_bytes; /* log growth that makes a checkpoint due */
    uint64_t max_memory;       /* key+value bytes; 0 = unlimited */
    void (*on_fatal)(int err); /* as in struct store_config; may be NULL */
    struct stats *stats;       /* batches and checkpoints are counted here */
};

/* Starts the thread. Returns 0 and sets *out, or LKV_ENOMEM. */
int loop_start(const struct loop_config *cfg, struct loop **out);

/* Queues a write for the next batch (store_submit's contract, which it
 * implements). Any thread. */
void loop_submit(struct loop *l, struct store_req *req);

/* Refuses later submits (LKV_ESHUTDOWN), completes every queued write,
 * writes a final checkpoint and joins the thread. Returns 0 or the first
 * fatal error. Call once, from any thread but the loop's. */
int loop_stop(struct loop *l);

/* Frees the loop; loop_stop must have returned. The borrowed parts are
 * untouched. */
void loop_free(struct loop *l);

/* The first fatal error (0 if none): from then on every write fails. Any
 * thread; exact once loop_stop has returned. */
int loop_failed(const struct loop *l);

/* Fills log_bytes, last_index, durable_index, commit_index and
 * applied_index. Any thread; each value is one the loop thread published,
 * and applied <= commit <= durable holds in what it fills. */
void loop_gauges(const struct loop *l, struct stats_gauges *g);

#endif
