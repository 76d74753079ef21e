/* transport: how the node loop reaches its peers. The loop sees only this
 * small interface, so tests can put an in-process network behind it; the
 * server's implementation is transport/sender.c (HTTP POST /raft through
 * libcurl). */
#ifndef LKV_TRANSPORT_TRANSPORT_H
#define LKV_TRANSPORT_TRANSPORT_H

#include "raft/raft.h"

struct transport {
    void *ctx;
    /* Queues m for member m->to. Copies what it keeps (entry data shared by
     * reference). Never blocks; may drop (Raft tolerates loss). Loop thread. */
    void (*send)(void *ctx, const struct raft_msg *m);
    /* The members to reach (everyone in conf but self) and their addresses;
     * connections to members no longer listed are closed. Loop thread.
     * Returns 0 or LKV_ENOMEM. */
    int (*set_peers)(void *ctx, const struct raft_membership *conf, raft_id self);
};

#endif
