/* net: the simulated network. Every message a core sends is deep-copied into
 * a packet with a delivery time; the scheduler delivers any packet whose
 * time has come, in random order. Loss, duplication and delay are drawn at
 * send time; cut links (partitions, one-way loss) are checked at delivery. */
#ifndef LKV_TESTS_SIM_NET_H
#define LKV_TESTS_SIM_NET_H

#include "raft/raft.h"
#include "rng.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_MAX_IDS 32 /* member ids 1 .. NET_MAX_IDS - 1 */

struct packet {
    uint64_t at;       /* deliverable from this tick on */
    uint64_t seq;      /* send order, for the trace */
    unsigned from_inc; /* sender's incarnation when sent */
    bool original;     /* false for a duplicate */
    struct raft_msg m; /* owns its entries array, the references in it and snap */
};

struct net_weather {
    unsigned drop;      /* per mille of messages lost */
    unsigned dup;       /* per mille delivered twice */
    unsigned slow;      /* per mille held back 10..40 ticks */
    unsigned delay_max; /* ticks; a delay is drawn from 0..delay_max */
};

struct net {
    struct packet *p;
    size_t n, cap;
    uint64_t seq;
    bool cut[NET_MAX_IDS][NET_MAX_IDS]; /* cut[from][to]: from -> to loses everything */
    struct net_weather w;
    uint64_t sent, dropped, duplicated, delivered;
};

void net_init(struct net *net, const struct net_weather *w);
/* Frees every packet in flight. */
void net_free(struct net *net);

/* Queues copies of m (borrowed) as the weather decides, at tick now. */
void net_send(struct net *net, struct rng *g, uint64_t now, unsigned from_inc,
              const struct raft_msg *m);

/* Number of packets deliverable at now. */
size_t net_ready_count(const struct net *net, uint64_t now);

/* Removes a random deliverable packet into *out (the caller then owns it
 * and frees it with net_packet_free). False when none is deliverable. */
bool net_take(struct net *net, struct rng *g, uint64_t now, struct packet *out);

void net_packet_free(struct packet *p);

bool net_link_up(const struct net *net, raft_id from, raft_id to);
/* True when a packet in flight to `to` comes over a link that is up. */
bool net_reaches(const struct net *net, raft_id to);
void net_heal(struct net *net);

/* Deep copy of a message: entries array, references to the payloads, the
 * snapshot and a reference to its data. */
void net_msg_copy(struct raft_msg *dst, const struct raft_msg *src);
void net_msg_free(struct raft_msg *m);



/* One line describing m, for the trace. */
void net_msg_describe(const struct raft_msg *m, char *buf, size_t cap);

#endif
