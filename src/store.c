#include "store.h"

#include "node/apply.h"
#include "node/loop.h"
#include "node/recover.h"
#include "util/err.h"
#include "wal/wal.h"

#include <stdio.h>
#include <stdlib.h>

/* The parts, each with its own owner thread: the map is read by any thread
 * and written by the loop thread only (recovery's, before it starts); apply
 * and the log belong to the loop thread once it runs. The store owns them
 * all and frees them after the loop has stopped. */
struct store {
    struct store_config cfg;
    struct kv_map *map;
    struct apply *apply;
    struct wal *wal;
    struct loop *loop;
};

int store_open(const struct store_config *cfg, struct store **out, char *err, size_t errlen)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "cannot start the store: %s", lkv_strerror(LKV_ENOMEM));
        return LKV_ENOMEM;
    }
    s->cfg = *cfg;
    const struct io_ops *io = cfg->io ? cfg->io : &io_libc;
    s->map = kv_map_new();
    s->apply = s->map ? apply_new(s->map) : NULL;
    int rc = LKV_ENOMEM;
    if (!s->apply) {
        snprintf(err, errlen, "cannot start the store: %s", lkv_strerror(rc));
        goto err_after_map;
    }
    struct recover_result rec;
    if ((rc = recover_load(cfg->dir, io, s->map, s->apply, cfg->stats, &rec, err, errlen)) != 0)
        goto err_after_map;
    s->wal = rec.wal;
    struct loop_config lcfg = {.dir = cfg->dir, .io = io, .map = s->map, .apply = s->apply,
                               .wal = s->wal, .snap_index = rec.snap_index,
                               .checkpoint_bytes = cfg->checkpoint_bytes,
                               .max_memory = cfg->max_memory, .on_fatal = cfg->on_fatal,
                               .stats = cfg->stats};
    if ((rc = loop_start(&lcfg, &s->loop)) != 0) {
        snprintf(err, errlen, "cannot start the log writer thread");
        goto err_after_wal;
    }
    *out = s;
    return 0;

err_after_wal:
    wal_close(s->wal);
err_after_map:
    apply_free(s->apply);
    kv_map_free(s->map);
    free(s);
    return rc;
}

void store_submit(struct store *s, struct store_req *req)
{
    loop_submit(s->loop, req);
}

struct kv_entry *store_get(struct store *s, const char *key, size_t klen)
{
    return kv_map_get(s->map, key, klen);
}

int store_failed(const struct store *s)
{
    return loop_failed(s->loop);
}

void store_gauges(struct store *s, struct stats_gauges *g)
{
    g->keys = kv_map_count(s->map);
    g->bytes = kv_map_bytes(s->map);
    loop_gauges(s->loop, g);
}

int store_shutdown(struct store *s)
{
    return loop_stop(s->loop);
}

void store_free(struct store *s)
{
    loop_free(s->loop);
    wal_close(s->wal);
    apply_free(s->apply);
    kv_map_free(s->map);
    free(s);
}
