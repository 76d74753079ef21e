#include "store.h"

#include "node/apply.h"
#include "node/ident.h"
#include "node/loop.h"
#include "node/recover.h"
#include "transport/codec.h"
#include "transport/sender.h"
#include "util/err.h"
#include "wal/wal.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The parts, each with its own owner thread: the map is read by any thread
 * and written by the loop thread only (recovery's, before it starts); apply
 * and the log belong to the loop thread once it runs; the sender has a
 * thread per peer. The store owns them all and frees them after the loop
 * has stopped. */
struct store {
    struct store_config cfg;
    char self[128];
    char secret[256];
    struct kv_map *map;
    struct apply *apply;
    struct recover_result rec;
    struct sender *sender;
    _Atomic(struct loop *) loop; /* set once started; the sender's callback may come first */
};

static void unreachable_cb(void *arg, raft_id peer)
{
    struct store *s = arg;
    struct loop *l = atomic_load(&s->loop);
    if (l)
        loop_report_unreachable(l, peer);
}

static int start_sender(struct store *s, char *err, size_t errlen)
{
    unsigned et = s->cfg.election_timeout_ms ? s->cfg.election_timeout_ms : 500;
    struct sender_config sc = {.cluster_id = s->rec.meta.cluster_id,
                               .self = ident_member_id(s->self),
                               .secret = s->secret,
                               .connect_timeout_ms = et / 2,
                               .request_timeout_ms = et * 2 / 5 > 50 ? et * 2 / 5 : 50,
                               .max_batch_bytes = 4u << 20,
                               .max_queue_bytes = 64u << 20,
                               .max_queue_msgs = 4096,
                               .unreachable_cb = unreachable_cb,
                               .cb_arg = s};
    int rc = sender_new(&sc, &s->sender);
    if (rc != 0)
        snprintf(err, errlen, "cannot start the peer sender: %s", lkv_strerror(rc));
    return rc;
}

int store_open(const struct store_config *cfg, struct store **out, char *err, size_t errlen)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "cannot start the store: %s", lkv_strerror(LKV_ENOMEM));
        return LKV_ENOMEM;
    }
    s->cfg = *cfg;
    snprintf(s->self, sizeof s->self, "%s", cfg->self ? cfg->self : "127.0.0.1:0");
    snprintf(s->secret, sizeof s->secret, "%s", cfg->cluster_secret ? cfg->cluster_secret : "");
    s->cfg.self = s->self;
    const struct io_ops *io = cfg->io ? cfg->io : &io_libc;
    s->map = kv_map_new();
    s->apply = s->map ? apply_new(s->map) : NULL;
    int rc = LKV_ENOMEM;
    if (!s->apply) {
        snprintf(err, errlen, "cannot start the store: %s", lkv_strerror(rc));
        goto err_after_map;
    }
    struct recover_config rcfg = {.dir = cfg->dir, .io = io, .map = s->map, .apply = s->apply,
                                  .stats = cfg->stats, .self = s->self, .peers = cfg->peers,
                                  .npeers = cfg->npeers, .join = cfg->join,
                                  .retain_entries = cfg->retain_entries};
    if ((rc = recover_load(&rcfg, &s->rec, err, errlen)) != 0)
        goto err_after_map;
    if ((rc = start_sender(s, err, errlen)) != 0)
        goto err_after_wal;
    struct loop_config lcfg = {.dir = cfg->dir, .io = io, .map = s->map, .apply = s->apply,
                               .rec = &s->rec, .self = s->self,
                               .checkpoint_bytes = cfg->checkpoint_bytes,
                               .max_memory = cfg->max_memory,
                               .retain_entries = cfg->retain_entries,
                               .election_timeout_ms = cfg->election_timeout_ms,
                               .heartbeat_ms = cfg->heartbeat_ms,
                               .lease_reads = cfg->lease_reads,
                               .transport = sender_transport(s->sender),
                               .on_fatal = cfg->on_fatal, .stats = cfg->stats};
    struct loop *l;
    if ((rc = loop_start(&lcfg, &l)) != 0) {
        snprintf(err, errlen, "cannot start the node in %s: %s", cfg->dir, lkv_strerror(rc));
        goto err_after_sender;
    }
    atomic_store(&s->loop, l);
    recover_result_free(&s->rec); /* the loop took what it needed */
    *out = s;
    return 0;

err_after_sender:
    sender_free(s->sender);
err_after_wal:
    wal_close(s->rec.wal);
    recover_result_free(&s->rec);
err_after_map:
    apply_free(s->apply);
    kv_map_free(s->map);
    free(s);
    return rc;
}

static struct loop *loop_of(const struct store *s)
{
    return atomic_load(&((struct store *)s)->loop);
}

void store_submit(struct store *s, struct store_req *req)
{
    loop_submit(loop_of(s), req);
}

void store_read(struct store *s, struct store_read *r)
{
    loop_read(loop_of(s), r);
}

bool store_reads_local(const struct store *s)
{
    return loop_reads_local(loop_of(s));
}

enum raft_role store_leader(const struct store *s, char *addr, size_t len)
{
    return loop_leader(loop_of(s), addr, len);
}

void store_transfer(struct store *s, struct store_op *op)
{
    loop_transfer(loop_of(s), op);
}

/* Constant-time, so the secret cannot be guessed a byte at a time. */
static bool same_secret(const char *want, const char *got)
{
    size_t wn = strlen(want), gn = got ? strlen(got) : 0;
    unsigned char diff = (unsigned char)(wn != gn);
    for (size_t i = 0; i < wn; i++)
        diff |= (unsigned char)(want[i] ^ (i < gn ? got[i] : 0));
    return diff == 0;
}

int store_deliver(struct store *s, const uint8_t *body, size_t len, const char *secret)
{
    if (s->secret[0] && !same_secret(s->secret, secret))
        return LKV_EPERM;
    struct tp_batch b;
    int rc = tp_decode(body, len, &b);
    if (rc != 0)
        return rc;
    if (!loop_accepts(loop_of(s), &b.hdr)) {
        tp_batch_free(&b);
        return LKV_EPERM;
    }
    loop_deliver(loop_of(s), &b);
    return 0;
}

int store_render_info(const struct store *s, struct buf *out)
{
    return loop_render_info(loop_of(s), out);
}

int store_render_members(const struct store *s, struct buf *out)
{
    return loop_render_members(loop_of(s), out);
}

int store_render_stats(const struct store *s, struct buf *json, struct buf *prom)
{
    int rc = json ? loop_render_stats_json(loop_of(s), json) : 0;
    if (rc == 0 && prom)
        rc = loop_render_stats_prom(loop_of(s), prom);
    return rc;
}

struct kv_entry *store_get(struct store *s, const char *key, size_t klen)
{
    return kv_map_get(s->map, key, klen);
}

int store_failed(const struct store *s)
{
    return loop_failed(loop_of(s));
}

void store_gauges(struct store *s, struct stats_gauges *g)
{
    g->keys = kv_map_count(s->map);
    g->bytes = kv_map_bytes(s->map);
    loop_gauges(loop_of(s), g);
}

int store_shutdown(struct store *s)
{
    int rc = loop_stop(loop_of(s));
    sender_free(s->sender); /* after the loop: it sends until the end */
    s->sender = NULL;
    return rc;
}

void store_free(struct store *s)
{
    struct loop *l = loop_of(s);
    loop_free(l);
    wal_close(s->rec.wal);
    sender_free(s->sender);
    apply_free(s->apply);
    kv_map_free(s->map);
    free(s);
}
