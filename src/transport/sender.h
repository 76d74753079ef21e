/* transport/sender: outbound node-to-node traffic over HTTP with libcurl:
 * one thread and one kept-alive connection per peer, at most one POST in
 * flight each; what is queued meanwhile goes in the next POST. Queues are
 * bounded: newer heartbeats replace older ones, and when a queue is full the
 * oldest heartbeat-class message goes first, then the oldest of any kind. */
#ifndef LKV_TRANSPORT_SENDER_H
#define LKV_TRANSPORT_SENDER_H

#include "transport/transport.h"

#include <stddef.h>
#include <stdint.h>

struct sender;

struct sender_config {
    uint64_t cluster_id;
    raft_id self;
    const char *secret;          /* sent as X-Cluster-Secret when non-empty; copied */
    unsigned connect_timeout_ms; /* well under the election timeout */
    unsigned request_timeout_ms;
    size_t max_batch_bytes;      /* one POST carries at most this (at least one message) */
    size_t max_queue_bytes;      /* per peer */
    size_t max_queue_msgs;       /* per peer */
    /* Called on a peer's thread when a POST to it failed (its messages were
     * lost). Must not block. May be NULL. */
    void (*unreachable_cb)(void *arg, raft_id peer);
    void *cb_arg;
};

/* Per-peer counters, for /stats. */
struct sender_peer_stats {
    raft_id id;
    char addr[RAFT_ADDR_MAX];
    uint64_t posts, post_failures, msgs_sent, bytes_sent, msgs_dropped;
    uint64_t queued; /* messages waiting now */
};

/* Creates the sender (no peers yet). curl_global_init must have been
 * called. Returns 0 and sets *out, or LKV_ENOMEM. */
int sender_new(const struct sender_config *cfg, struct sender **out);

/* The transport interface backed by s (valid as long as s). */
struct transport sender_transport(struct sender *s);

/* Copies up to max peers' counters into out; returns how many. Any thread. */
size_t sender_stats(struct sender *s, struct sender_peer_stats *out, size_t max);

/* Messages sent by type, over all peers (index: enum raft_msg_type). */
void sender_msgs_by_type(struct sender *s, uint64_t out[RAFT_MSG__COUNT]);

/* Stops every peer thread (a POST in flight is abandoned within its
 * timeout) and frees everything. */
void sender_free(struct sender *s);

#endif
