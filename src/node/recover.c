#include "node/recover.h"

#include "node/ident.h"
#include "snap/snap.h"
#include "stats/stats.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEGMENT_BYTES (64u << 20)

/* The replay of the log after the snapshot. */
struct replay {
    struct apply *apply;
    raft_id self;
    bool may_adopt;
    /* Still in the stretch written while this node was the only voter:
     * those entries are committed as soon as they are durable, so they go
     * into the map now. Past it, entries wait for a leader to commit them. */
    bool applying;
    uint64_t applied;
    struct raft_membership applied_conf;
    struct raft_conf_at *confs;
    size_t n, cap;
};

static int push_conf(struct replay *rp, uint64_t index, const struct raft_membership *c)
{
    if (rp->n == rp->cap) {
        size_t cap = rp->cap ? rp->cap * 2 : 4;
        struct raft_conf_at *p = realloc(rp->confs, cap * sizeof *p);
        if (!p)
            return LKV_ENOMEM;
        rp->confs = p;
        rp->cap = cap;
    }
    rp->confs[rp->n].index = index;
    rp->confs[rp->n].conf = *c;
    rp->n++;
    return 0;
}

/* A cluster whose only voter is this node, or a one-member cluster this
 * node is about to adopt (the same data directory started under another
 * address; see settle_conf). */
static bool lone(const struct replay *rp, const struct raft_membership *c)
{
    return ident_lone_voter(c, rp->self) ||
           (rp->may_adopt && c->n == 1 && (c->m[0].flags & RAFT_VOTER_IN));
}

static int replay_cb(const struct wal_rec_hdr *h, const uint8_t *payload, void *arg)
{
    struct replay *rp = arg;
    if (h->type == WAL_REC_CONFIG) {
        struct raft_membership c;
        if (raft_membership_decode(payload, h->len, &c) != 0)
            return LKV_ECORRUPT;
        int rc = push_conf(rp, h->index, &c);
        if (rc != 0)
            return rc;
        rp->applying = rp->applying && lone(rp, &c);
        if (rp->applying)
            rp->applied_conf = c;
    } else if (rp->applying && h->type == WAL_REC_COMMAND) {
        int rc = apply_load_command_locked(rp->apply, payload, h->len);
        if (rc != 0)
            return rc;
    }
    if (rp->applying)
        rp->applied = h->index;
    return 0;
}

static int load_cb(const char *key, size_t klen, const char *value, size_t vlen, void *arg)
{
    return apply_load_put_locked(arg, key, klen, value, vlen);
}

/* Loads the newest snapshot, if any, under the map's write lock (held by
 * the caller). */
static int load_snapshot_locked(const struct recover_config *cfg, struct snap_info *info,
                                char *err, size_t errlen)
{
    char path[4200];
    uint64_t index = 0;
    memset(info, 0, sizeof *info);
    int found = snap_find_latest(cfg->dir, path, sizeof path, &index);
    if (found < 0) {
        snprintf(err, errlen, "cannot read directory %s", cfg->dir);
        return found;
    }
    /* One table sized up front beats a dozen resizes while a million keys
     * load. A damaged header is reported by snap_load below. */
    struct snap_info peek = {0};
    if (found && snap_peek(path, cfg->io, &peek) != 0)
        peek.records = 0;
    kv_map_reserve_locked(cfg->map, peek.records + wal_estimate_records(cfg->dir));
    if (!found)
        return 0;
    int rc = snap_load(path, cfg->io, load_cb, cfg->apply, info, err, errlen);
    apply_load_flush_locked(cfg->apply);
    if (rc != 0)
        return rc;
    if (info->index != index) {
        snprintf(err, errlen, "%s: header says index %" PRIu64, path, info->index);
        return LKV_ECORRUPT;
    }
    return 0;
}

static uint64_t last_term(const struct recover_result *r)
{
    uint64_t last = wal_last_index(r->wal), t = 0;
    if (last == r->snap_index)
        return r->snap_term;
    return wal_term_of(r->wal, last, &t) == 0 ? t : 0;
}

/* Appends a configuration entry after the log's end, with the meta file
 * (term, cluster id) made durable first: a crash in between leaves a
 * directory that bootstraps the same way again. */
static int append_conf(const struct recover_config *cfg, struct recover_result *r,
                       struct replay *rp, const struct raft_membership *c, char *err,
                       size_t errlen)
{
    uint64_t term = last_term(r);
    if (term == 0)
        term = 1;
    if (r->meta.term < term) {
        r->meta.term = term;
        r->meta.vote = RAFT_NONE;
    }
    if (r->meta.cluster_id == 0)
        r->meta.cluster_id = ident_cluster_id(c);
    int rc = meta_store(cfg->dir, cfg->io, &r->meta);
    uint8_t buf[RAFT_MEMBERSHIP_MAX_BYTES];
    size_t len = raft_membership_encode(c, buf, sizeof buf);
    struct iovec iov = {buf, len};
    struct wal_entry e = {.type = WAL_REC_CONFIG, .term = term, .iov = &iov, .iovcnt = 1,
                          .index = wal_last_index(r->wal) + 1};
    if (rc == 0)
        rc = len ? wal_append_at(r->wal, &e, 1) : LKV_EINVAL;
    if (rc != 0) {
        snprintf(err, errlen, "cannot write the initial configuration in %s: %s", cfg->dir,
                 lkv_strerror(rc));
        return rc;
    }
    struct wal_rec_hdr h = {.len = (uint32_t)len, .type = WAL_REC_CONFIG, .index = e.index,
                            .term = term};
    return replay_cb(&h, buf, rp);
}

static const struct raft_membership *newest_conf(const struct recover_result *r,
                                                 const struct replay *rp)
{
    if (rp->n)
        return &rp->confs[rp->n - 1].conf;
    return r->snap_conf.n ? &r->snap_conf : NULL;
}

/* A directory with no configuration yet gets one; a cluster of one whose
 * member was renamed (started on another port) adopts this address. */
static int settle_conf(const struct recover_config *cfg, struct recover_result *r,
                       struct replay *rp, char *err, size_t errlen)
{
    raft_id self = ident_member_id(cfg->self);
    const struct raft_membership *cur = newest_conf(r, rp);
    if (cfg->join && !cur)
        return 0; /* waits to be added */
    bool fresh = r->snap_index == 0 && wal_last_index(r->wal) == 0;
    if (cfg->npeers && !fresh)
        LOG_WARN("event=peers_ignored reason=\"the data directory already holds a cluster "
                 "state; the membership comes from its log\"");
    struct raft_membership want;
    if (!cur && (!fresh || cfg->npeers == 0)) {
        /* A cluster of one needs no configuration on disk: it is whoever
         * runs on the directory, so nothing is written (a full disk does not
         * stop it starting) and it may be started under another address. */
        ident_initial_conf(cfg->self, NULL, 0, &r->snap_conf);
        r->implicit_conf = true;
        return 0;
    }
    if (!cur) {
        int rc = ident_initial_conf(cfg->self, cfg->peers, cfg->npeers, &want);
        if (rc != 0) {
            snprintf(err, errlen, "--peers: two members' addresses give the same id");
            return rc;
        }
        LOG_INFO("event=bootstrap members=%zu cluster_id=%016" PRIx64, want.n,
                 ident_cluster_id(&want));
        return append_conf(cfg, r, rp, &want, err, errlen);
    }
    if (rp->may_adopt && cur->n == 1 && cur->m[0].id != self) {
        LOG_WARN("event=address_changed old=%s new=%s action=adopted", cur->m[0].addr, cfg->self);
        ident_initial_conf(cfg->self, NULL, 0, &want);
        return append_conf(cfg, r, rp, &want, err, errlen);
    }
    return 0;
}

static int load_meta(const struct recover_config *cfg, struct meta *m, char *err, size_t errlen)
{
    int rc = meta_load(cfg->dir, cfg->io, m, err, errlen);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        *m = (struct meta){.version = META_FORMAT_VERSION};
        if ((rc = meta_store(cfg->dir, cfg->io, m)) != 0) {
            snprintf(err, errlen, "cannot write %s/meta: %s", cfg->dir, lkv_strerror(rc));
            return rc;
        }
    }
    return 0;
}

int recover_load(const struct recover_config *cfg, struct recover_result *out, char *err,
                 size_t errlen)
{
    uint64_t t0 = clock_now_ns();
    memset(out, 0, sizeof *out);
    int rc = load_meta(cfg, &out->meta, err, errlen);
    if (rc != 0)
        return rc;
    struct snap_info info;
    kv_map_write_lock(cfg->map);
    rc = load_snapshot_locked(cfg, &info, err, errlen);
    if (rc == 0 && info.conf.len &&
        raft_membership_decode(info.conf.bytes, info.conf.len, &out->snap_conf) != 0) {
        snprintf(err, errlen, "snapshot %" PRIu64 ": damaged configuration", info.index);
        rc = LKV_ECORRUPT;
    }
    if (rc != 0) {
        kv_map_write_unlock(cfg->map);
        return rc;
    }
    out->snap_index = info.index;
    out->snap_term = info.term;
    raft_id self = ident_member_id(cfg->self);
    /* A snapshot without a configuration is a single node's, as written
     * before clusters existed. */
    struct replay rp = {.apply = cfg->apply, .self = self, .may_adopt = !cfg->join,
                        .applied = info.index, .applied_conf = out->snap_conf};
    rp.applying = out->snap_conf.n == 0 || lone(&rp, &out->snap_conf);
    uint64_t seg = cfg->segment_bytes ? cfg->segment_bytes : SEGMENT_BYTES;
    struct wal_options wopt = {.dir = cfg->dir, .io = cfg->io, .segment_bytes = seg,
                               .preallocate = true, .retain_entries = cfg->retain_entries};
    struct wal_recovery rec;
    rc = wal_open(&wopt, info.index, replay_cb, &rp, &out->wal, &rec, err, errlen);
    if (rc == 0)
        rc = settle_conf(cfg, out, &rp, err, errlen);
    apply_load_flush_locked(cfg->apply);
    kv_map_write_unlock(cfg->map);
    out->confs = rp.confs;
    out->n_confs = rp.n;
    out->applied = rp.applied;
    out->applied_conf = rp.applied_conf;
    if (rc != 0) {
        wal_close(out->wal);
        recover_result_free(out);
        return rc;
    }
    if (out->meta.cluster_id == 0 && !out->implicit_conf && newest_conf(out, &rp)) {
        /* a directory from before cluster ids: the first configuration names it */
        out->meta.cluster_id = ident_cluster_id(rp.n ? &rp.confs[0].conf : &out->snap_conf);
        if ((rc = meta_store(cfg->dir, cfg->io, &out->meta)) != 0) {
            snprintf(err, errlen, "cannot write %s/meta: %s", cfg->dir, lkv_strerror(rc));
            wal_close(out->wal);
            recover_result_free(out);
            return rc;
        }
    }
    snap_remove_older(cfg->dir, cfg->io, info.index); /* leftover temp files, stale snapshots */
    uint64_t took_us = (clock_now_ns() - t0) / 1000;
    stats_record_recovery(cfg->stats, took_us, info.index, rec.replayed);
    LOG_INFO("event=recovered snapshot_index=%" PRIu64 " replayed=%" PRIu64 " applied=%" PRIu64
             " last_index=%" PRIu64 " keys=%" PRIu64 " segments=%" PRIu64 " torn_bytes=%" PRIu64
             " term=%" PRIu64 " duration_ms=%" PRIu64,
             info.index, rec.replayed, out->applied, wal_last_index(out->wal),
             kv_map_count(cfg->map), rec.segments, rec.torn_bytes, out->meta.term,
             took_us / 1000);
    return 0;
}

void recover_result_free(struct recover_result *r)
{
    free(r->confs);
    r->confs = NULL;
    r->n_confs = 0;
}
