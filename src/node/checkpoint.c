#include "node/checkpoint.h"

#include "snap/snap.h"
#include "stats/stats.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* Pieces (about 256 KiB each) fed to a checkpoint after each batch: small,
 * so a busy writer delays the next batch by well under a millisecond. */
#define FEED_PER_BATCH 1
#define FEED_WHEN_IDLE 4

/* All of it the writer thread's. */
struct checkpoint {
    struct checkpoint_config cfg;
    struct snap_job *job;    /* the snapshot being written, or NULL */
    uint64_t snap_index;     /* index of the newest durable snapshot */
    uint64_t checkpoint_at;  /* log size that makes the next one due */
};

struct checkpoint *checkpoint_new(const struct checkpoint_config *cfg)
{
    struct checkpoint *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cfg = *cfg;
    c->snap_index = cfg->snap_index;
    c->checkpoint_at = cfg->checkpoint_bytes;
    return c;
}

void checkpoint_free(struct checkpoint *c)
{
    if (!c)
        return;
    snap_job_free(c->job);
    free(c);
}

bool checkpoint_running(const struct checkpoint *c)
{
    return c->job != NULL;
}

/* The snapshot `info` describes is durable: older snapshots and the log it
 * covers can go. */
static void snapshot_done(struct checkpoint *c, const struct snap_info *info, uint64_t started_ns)
{
    uint64_t index = info->index, size = info->bytes;
    struct wal *wal = c->cfg.wal;
    c->snap_index = index;
    snap_remove_older(c->cfg.dir, c->cfg.io, index);
    wal_drop_prefix(wal, index);
    c->checkpoint_at = wal_size_bytes(wal) + c->cfg.checkpoint_bytes;
    uint64_t took_us = (clock_now_ns() - started_ns) / 1000;
    stats_record_checkpoint(c->cfg.stats, took_us, index, size);
    LOG_INFO("event=checkpoint_done index=%" PRIu64 " keys=%" PRIu64 " bytes=%" PRIu64
             " duration_ms=%" PRIu64 " log_bytes=%" PRIu64,
             index, kv_map_count(c->cfg.map), size, took_us / 1000, wal_size_bytes(wal));
}

static void reap(struct checkpoint *c, bool wait)
{
    int result;
    struct snap_info info;
    if (!c->job || !snap_poll(c->job, wait, &result, &info))
        return;
    if (result == 0) {
        snapshot_done(c, &info, snap_job_started_ns(c->job));
    } else {
        /* The old snapshot and the whole log are still there; try again
         * after the log has grown some more (at once after a clear). */
        c->checkpoint_at = wal_size_bytes(c->cfg.wal) +
                           (result == LKV_ERESTART ? 0 : c->cfg.checkpoint_bytes);
        LOG_WARN("event=checkpoint_failed index=%" PRIu64 " error=\"%s\"",
                 snap_job_index(c->job), lkv_strerror(result));
    }
    snap_job_free(c->job);
    c->job = NULL;
}

void checkpoint_maybe_start(struct checkpoint *c, uint64_t applied_index, bool may_start)
{
    reap(c, false);
    struct wal *wal = c->cfg.wal;
    if (c->job || !may_start || wal_size_bytes(wal) < c->checkpoint_at ||
        applied_index <= c->snap_index)
        return;
    /* New records go to a fresh segment, so that every segment before it is
     * covered by this snapshot and can be deleted whole. */
    if (wal_rotate(wal) != 0)
        return;
    uint64_t t0 = clock_now_ns();
    int rc = snap_start(c->cfg.dir, c->cfg.io, c->cfg.map, applied_index, 0, &c->job);
    if (rc != 0) {
        LOG_WARN("event=checkpoint_start_failed error=\"%s\"", lkv_strerror(rc));
        c->checkpoint_at = wal_size_bytes(wal) + c->cfg.checkpoint_bytes;
        return;
    }
    LOG_INFO("event=checkpoint_start index=%" PRIu64 " keys=%" PRIu64 " start_us=%" PRIu64,
             applied_index, kv_map_count(c->cfg.map), (clock_now_ns() - t0) / 1000);
}

void checkpoint_feed(struct checkpoint *c, bool after_batch)
{
    if (c->job)
        snap_feed(c->job, after_batch ? FEED_PER_BATCH : FEED_WHEN_IDLE);
}

void checkpoint_final(struct checkpoint *c, uint64_t applied_index, bool may_write)
{
    reap(c, true);
    if (!may_write || applied_index <= c->snap_index)
        return;
    uint64_t t0 = clock_now_ns();
    struct snap_info info;
    char err[512];
    int rc = wal_rotate(c->cfg.wal);
    if (rc != 0)
        snprintf(err, sizeof err, "cannot start a new log segment: %s", lkv_strerror(rc));
    else
        rc = snap_write(c->cfg.dir, c->cfg.io, c->cfg.map, applied_index, 0, &info, err,
                        sizeof err);
    if (rc != 0) {
        LOG_WARN("event=checkpoint_failed index=%" PRIu64 " error=\"%s\"", applied_index, err);
        return;
    }
    snapshot_done(c, &info, t0);
}
