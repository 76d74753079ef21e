/* loop: the node's one loop thread, the only one that touches the Raft
 * core, the log and (as writer) the map. Each turn it takes what arrived
 * (client writes and reads, peer messages, unreachable reports, leadership
 * transfers), ticks the core by the clock, then carries out every ready
 * bundle in the order durability needs: send what may go early, persist
 * (one pwritev + one fdatasync for everything the turn produced), send the
 * acknowledgements, apply committed entries to the map, answer the waiting
 * requests, advance. Between turns it runs the checkpoint policy. */
#ifndef LKV_NODE_LOOP_H
#define LKV_NODE_LOOP_H

#include "kv/kv_map.h"
#include "node/apply.h"
#include "node/recover.h"
#include "raft/raft.h"
#include "stats/stats.h"
#include "store.h"
#include "transport/codec.h"
#include "transport/transport.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/io.h"

#include <stdbool.h>
#include <stdint.h>

struct loop;

/* What the loop works on. Pointers are borrowed and must outlive it. */
struct loop_config {
    const char *dir;
    const struct io_ops *io;      /* never NULL */
    struct kv_map *map;           /* the loop thread becomes its only writer */
    struct apply *apply;          /* the loop thread's from now on */
    struct recover_result *rec;   /* what recovery found; read during loop_start only,
                                     except rec->wal, which the loop then owns the use of */
    const char *self;             /* this node's host:port */
    uint64_t checkpoint_bytes;    /* log growth that makes a checkpoint due */
    uint64_t max_memory;          /* key+value bytes; 0 = unlimited */
    uint64_t retain_entries;      /* log kept before a snapshot's index */
    unsigned election_timeout_ms; /* T; timeouts are drawn from [T, 2T) */
    unsigned heartbeat_ms;
    bool lease_reads;             /* serve reads on the leader lease */
    struct transport transport;   /* to the peers; .send NULL = no peers can be reached */
    const struct clock_src *clock; /* NULL = the monotonic clock */
    void (*on_fatal)(int err);    /* as in struct store_config; may be NULL */
    struct stats *stats;          /* batches and checkpoints are counted here */
};

/* Builds the Raft core from cfg->rec and starts the thread. A lone voter is
 * leader by the time this returns. Returns 0 and sets *out, LKV_ENOMEM,
 * LKV_EINVAL, or a storage error (the first bundle could not be made
 * durable). */
int loop_start(const struct loop_config *cfg, struct loop **out);

/* Queues a write (store_submit's contract, which it implements). Any thread. */
void loop_submit(struct loop *l, struct store_req *req);

/* Queues a linearizable read (store_read's contract). Any thread. */
void loop_read(struct loop *l, struct store_read *r);

/* Queues a leadership transfer (store_transfer's contract). Any thread. */
void loop_transfer(struct loop *l, struct store_op *op);

/* Hands over a decoded batch from a peer (consumed). Never blocks. Any thread. */
void loop_deliver(struct loop *l, struct tp_batch *b);

/* A POST to `peer` failed. Any thread; never blocks. */
void loop_report_unreachable(struct loop *l, raft_id peer);

/* Hands leadership away first when this node leads others, then refuses
 * later submits (LKV_ESHUTDOWN), completes what is queued, writes a final
 * checkpoint and joins the thread. Returns 0 or the first fatal error. Call
 * once, from any thread but the loop's. */
int loop_stop(struct loop *l);

/* Frees the loop and the core; loop_stop must have returned. */
void loop_free(struct loop *l);

/* The first fatal error (0 if none). Any thread. */
int loop_failed(const struct loop *l);

/* Fills the log and index gauges. Any thread. */
void loop_gauges(const struct loop *l, struct stats_gauges *g);

/* True when this node is leader and the only voter: its map then reflects
 * every acknowledged write, and reads need no round. Any thread. */
bool loop_reads_local(const struct loop *l);

/* The role, and the leader's address ("" when none is known). Any thread. */
enum raft_role loop_leader(const struct loop *l, char *addr, size_t len);

/* Whether a batch header may be let in: this cluster, addressed to this
 * node, from a member of its configuration (any sender while it has none).
 * Any thread. */
bool loop_accepts(const struct loop *l, const struct tp_header *h);

/* The member id of host:port in the configuration, 0 when not a member. */
raft_id loop_member_id(const struct loop *l, const char *addr);

/* /cluster/info, /cluster/members, and the cluster's part of /stats and
 * /metrics (members for the JSON object, families for the text format).
 * Append to out; 0 or LKV_ENOMEM. Any thread. */
int loop_render_info(const struct loop *l, struct buf *out);
int loop_render_members(const struct loop *l, struct buf *out);
int loop_render_stats_json(const struct loop *l, struct buf *out);
int loop_render_stats_prom(const struct loop *l, struct buf *out);

#endif
