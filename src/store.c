#include "store.h"

#include "kv/kv_cmd.h"
#include "node/apply.h"
#include "snap/snap.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "wal/meta.h"
#include "wal/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* A batch stops growing past this many payload bytes, so one huge value
 * cannot hold many small writes behind a long write. */
#define BATCH_MAX_BYTES (4u << 20)
#define SEGMENT_BYTES (64u << 20)
/* How often an idle writer wakes to feed a running checkpoint. */
#define CHECKPOINT_POLL_NS (1000000L)
/* Pieces (about 256 KiB each) fed to a checkpoint after each batch: small,
 * so a busy writer delays the next batch by well under a millisecond. */
#define FEED_PER_BATCH 1
#define FEED_WHEN_IDLE 4

struct store {
    struct store_config cfg;
    const struct io_ops *io;
    struct kv_map *map;
    struct wal *wal;

    pthread_mutex_t lock; /* guards queue_head/queue_tail/stopping */
    pthread_cond_t wake;
    struct store_req *queue_head;
    struct store_req *queue_tail;
    bool stopping;

    pthread_t writer;
    int failed; /* first fatal error; the writer's, read by others after join */
    atomic_uint_fast64_t log_bytes;  /* copies of the writer's view, for /stats */
    atomic_uint_fast64_t last_index;
    bool enospc_logged;

    /* writer-thread state */
    struct wal_entry *entries;
    struct iovec *iov; /* one per request: its command */
    size_t scratch_cap;
    struct apply *apply;
    struct snap_job *job;
    uint64_t snap_index;         /* index of the newest durable snapshot */
    uint64_t checkpoint_at;      /* log size that triggers the next checkpoint */
};

static uint64_t req_bytes(const struct store_req *r)
{
    return r->cmd->len;
}

/* Takes the oldest queued writes, up to BATCH_MAX_BYTES (at least one).
 * Waits while the queue is empty; returns NULL once stopping and drained,
 * or after a poll interval when `poll` is set. */
static struct store_req *take_batch(struct store *s, bool poll)
{
    pthread_mutex_lock(&s->lock);
    if (poll && !s->queue_head && !s->stopping) {
        struct timespec ts = clock_realtime_after(CHECKPOINT_POLL_NS);
        pthread_cond_timedwait(&s->wake, &s->lock, &ts);
    }
    while (!poll && !s->queue_head && !s->stopping)
        pthread_cond_wait(&s->wake, &s->lock);
    struct store_req *batch = s->queue_head, *last = batch;
    uint64_t bytes = batch ? req_bytes(batch) : 0;
    while (last && last->next && bytes + req_bytes(last->next) <= BATCH_MAX_BYTES) {
        last = last->next;
        bytes += req_bytes(last);
    }
    if (last) {
        s->queue_head = last->next;
        if (!s->queue_head)
            s->queue_tail = NULL;
        last->next = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    return batch;
}

static void complete_one(struct store_req *r, int status)
{
    lkv_blob_unref(r->cmd); /* the map holds copies of what it needs */
    r->cmd = NULL;
    r->done_cb(r, status);
}

static void complete_batch(struct store_req *batch, int status)
{
    while (batch) {
        struct store_req *next = batch->next;
        complete_one(batch, status);
        batch = next;
    }
}

/* Refuses (507) the puts that would take the map past --max-memory. */
static struct store_req *refuse_over_limit(struct store *s, struct store_req *batch)
{
    if (s->cfg.max_memory == 0)
        return batch;
    uint64_t used = kv_map_bytes(s->map);
    struct store_req *keep = NULL, **tail = &keep;
    while (batch) {
        struct store_req *next = batch->next;
        batch->next = NULL;
        uint64_t add = 0;
        struct kv_cmd c;
        /* store_submit let only commands that decode in */
        if (kv_cmd_decode(batch->cmd->data, batch->cmd->len, &c) == 0 && c.op == KV_OP_SET) {
            /* replacing a value frees the old one: count only the growth */
            struct kv_entry *old = kv_map_get(s->map, c.key, c.klen);
            uint64_t was = old ? kv_entry_klen(old) + kv_entry_vlen(old) : 0;
            if (old)
                kv_entry_unref(old);
            uint64_t size = c.klen + c.vlen;
            add = size > was ? size - was : 0;
        }
        if (add && used + add > s->cfg.max_memory) {
            complete_one(batch, LKV_EMEMLIMIT);
        } else {
            used += add;
            *tail = batch;
            tail = &batch->next;
        }
        batch = next;
    }
    return keep;
}

static int grow_scratch(struct store *s, size_t n)
{
    if (n <= s->scratch_cap)
        return 0;
    size_t cap = s->scratch_cap ? s->scratch_cap : 64;
    while (cap < n)
        cap *= 2;
    struct wal_entry *e = realloc(s->entries, cap * sizeof *e);
    if (e)
        s->entries = e;
    struct iovec *iov = realloc(s->iov, cap * sizeof *iov);
    if (iov)
        s->iov = iov;
    if (!e || !iov)
        return LKV_ENOMEM;
    s->scratch_cap = cap;
    return 0;
}

/* Describes each request as a log record whose payload is its command, one
 * iovec pointing at the request's own bytes (no copy). Returns the count. */
static size_t frame_requests(struct store *s, struct store_req *batch, uint64_t *bytes)
{
    size_t n = 0;
    *bytes = 0;
    for (struct store_req *r = batch; r; r = r->next, n++) {
        s->iov[n] = (struct iovec){r->cmd->data, r->cmd->len};
        s->entries[n] = (struct wal_entry){.type = WAL_REC_COMMAND, .term = 0, .iov = &s->iov[n],
                                           .iovcnt = 1};
        *bytes += WAL_REC_HDR_SIZE + r->cmd->len;
    }
    return n;
}

static void fail_fatal(struct store *s, int rc)
{
    if (s->failed)
        return;
    s->failed = rc == LKV_EFATAL ? LKV_EFATAL : rc;
    if (s->cfg.on_fatal)
        s->cfg.on_fatal(s->failed);
}

/* The durability order, top to bottom: write, fdatasync, publish, reply. */
static void commit_batch(struct store *s, struct store_req *batch)
{
    batch = refuse_over_limit(s, batch);
    if (!batch)
        return;
    if (s->failed) {
        complete_batch(batch, LKV_EFATAL);
        return;
    }
    size_t n = 0;
    for (struct store_req *r = batch; r; r = r->next)
        n++;
    if (grow_scratch(s, n) != 0) {
        complete_batch(batch, LKV_ENOMEM);
        return;
    }
    uint64_t bytes;
    frame_requests(s, batch, &bytes);
    uint64_t first;
    int rc = wal_append(s->wal, s->entries, n, &first);
    if (rc == 0) {
        stats_record_batch(n, bytes, wal_last_sync_ns(s->wal) / 1000);
        s->enospc_logged = false;
        if ((rc = apply_commands(s->apply, s->iov, n)) != 0) {
            /* Durable but not in the map: only a restart, which replays
             * the log, brings the two together again. */
            LOG_ERROR("event=apply_failed error=\"%s\" records=%zu", lkv_strerror(rc), n);
            complete_batch(batch, LKV_EFATAL);
            fail_fatal(s, rc);
            return;
        }
        complete_batch(batch, 0);
        return;
    }
    if (rc == LKV_ENOSPC) {
        if (!s->enospc_logged)
            LOG_WARN("event=disk_full action=refusing_writes records=%zu", n);
        s->enospc_logged = true;
        complete_batch(batch, LKV_ENOSPC);
        return;
    }
    LOG_ERROR("event=log_write_failed error=\"%s\" records=%zu", lkv_strerror(rc), n);
    complete_batch(batch, LKV_EFATAL);
    fail_fatal(s, rc);
}

/* The snapshot `info` describes is durable: older snapshots and the log it
 * covers can go. */
static void checkpoint_done(struct store *s, const struct snap_info *info, uint64_t started_ns)
{
    uint64_t index = info->index, size = info->bytes;
    s->snap_index = index;
    snap_remove_older(s->cfg.dir, s->io, index);
    wal_drop_prefix(s->wal, index);
    s->checkpoint_at = wal_size_bytes(s->wal) + s->cfg.checkpoint_bytes;
    uint64_t took_us = (clock_now_ns() - started_ns) / 1000;
    stats_record_checkpoint(took_us, index, size);
    LOG_INFO("event=checkpoint_done index=%" PRIu64 " keys=%" PRIu64 " bytes=%" PRIu64
             " duration_ms=%" PRIu64 " log_bytes=%" PRIu64,
             index, kv_map_count(s->map), size, took_us / 1000, wal_size_bytes(s->wal));
}

static void reap_checkpoint(struct store *s, bool wait)
{
    int result;
    struct snap_info info;
    if (!s->job || !snap_poll(s->job, wait, &result, &info))
        return;
    if (result == 0) {
        checkpoint_done(s, &info, snap_job_started_ns(s->job));
    } else {
        /* The old snapshot and the whole log are still there; try again
         * after the log has grown some more (at once after a clear). */
        s->checkpoint_at = wal_size_bytes(s->wal) +
                           (result == LKV_ERESTART ? 0 : s->cfg.checkpoint_bytes);
        LOG_WARN("event=checkpoint_failed index=%" PRIu64 " error=\"%s\"",
                 snap_job_index(s->job), lkv_strerror(result));
    }
    snap_job_free(s->job);
    s->job = NULL;
}

static void maybe_checkpoint(struct store *s)
{
    reap_checkpoint(s, false);
    uint64_t last = wal_last_index(s->wal);
    if (s->job || s->failed || wal_size_bytes(s->wal) < s->checkpoint_at || last <= s->snap_index)
        return;
    /* New records go to a fresh segment, so that every segment before it is
     * covered by this snapshot and can be deleted whole. */
    if (wal_rotate(s->wal) != 0)
        return;
    uint64_t t0 = clock_now_ns();
    int rc = snap_start(s->cfg.dir, s->io, s->map, last, 0, &s->job);
    if (rc != 0) {
        LOG_WARN("event=checkpoint_start_failed error=\"%s\"", lkv_strerror(rc));
        s->checkpoint_at = wal_size_bytes(s->wal) + s->cfg.checkpoint_bytes;
        return;
    }
    LOG_INFO("event=checkpoint_start index=%" PRIu64 " keys=%" PRIu64 " start_us=%" PRIu64, last,
             kv_map_count(s->map), (clock_now_ns() - t0) / 1000);
}

/* At shutdown the map is quiet, so the last checkpoint is written in
 * process, and the next start loads it instead of replaying the log. */
static void final_checkpoint(struct store *s)
{
    reap_checkpoint(s, true);
    uint64_t last = wal_last_index(s->wal);
    if (s->failed || last <= s->snap_index)
        return;
    uint64_t t0 = clock_now_ns();
    struct snap_info info;
    char err[512];
    if (wal_rotate(s->wal) != 0 ||
        snap_write(s->cfg.dir, s->io, s->map, last, 0, &info, err, sizeof err) != 0) {
        LOG_WARN("event=checkpoint_failed index=%" PRIu64 " error=\"%s\"", last, err);
        return;
    }
    checkpoint_done(s, &info, t0);
}

static void publish_gauges(struct store *s)
{
    atomic_store(&s->log_bytes, wal_size_bytes(s->wal));
    atomic_store(&s->last_index, wal_last_index(s->wal));
}

static void *writer_main(void *arg)
{
    struct store *s = arg;
    for (;;) {
        struct store_req *batch = take_batch(s, s->job != NULL);
        if (batch) {
            commit_batch(s, batch);
            publish_gauges(s);
        } else {
            pthread_mutex_lock(&s->lock);
            bool done = s->stopping && !s->queue_head;
            pthread_mutex_unlock(&s->lock);
            if (done)
                break;
        }
        maybe_checkpoint(s);
        if (s->job)
            snap_feed(s->job, batch ? FEED_PER_BATCH : FEED_WHEN_IDLE);
    }
    final_checkpoint(s);
    publish_gauges(s);
    return NULL;
}

/* Recovery: applies one log record to the map. */
static int replay_cb(const struct wal_rec_hdr *h, const uint8_t *payload, void *arg)
{
    if (h->type != WAL_REC_COMMAND)
        return 0;
    return apply_load_command_locked(arg, payload, h->len);
}

static int load_cb(const char *key, size_t klen, const char *value, size_t vlen, void *arg)
{
    return apply_load_put_locked(arg, key, klen, value, vlen);
}

/* A rough count of the records the log may hold (space allocated to its
 * segments over a small record's size), used only to size the map. It reads
 * the log's file names, which are the wal module's business: to be replaced
 * by wal_estimate_records(dir). */
static uint64_t log_record_estimate(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    uint64_t bytes = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (strncmp(de->d_name, "log-", 4) == 0 && fstatat(dirfd(d), de->d_name, &st, 0) == 0)
            bytes += (uint64_t)st.st_blocks * 512;
    }
    closedir(d);
    return bytes / 160;
}

/* Loads the newest snapshot and replays the log after it. */
static int recover(struct store *s, char *err, size_t errlen)
{
    uint64_t t0 = clock_now_ns();
    struct meta meta;
    int rc = meta_load(s->cfg.dir, s->io, &meta, err, errlen);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        meta = (struct meta){.version = META_FORMAT_VERSION};
        if ((rc = meta_store(s->cfg.dir, s->io, &meta)) != 0) {
            snprintf(err, errlen, "cannot write %s/meta: %s", s->cfg.dir, lkv_strerror(rc));
            return rc;
        }
    }
    char path[4200];
    uint64_t index = 0;
    rc = snap_find_latest(s->cfg.dir, path, sizeof path, &index);
    if (rc < 0) {
        snprintf(err, errlen, "cannot read directory %s", s->cfg.dir);
        return rc;
    }
    struct snap_info info = {0};
    kv_map_write_lock(s->map);
    /* One table sized up front beats a dozen resizes while a million keys
     * load. A damaged header is reported by snap_load below. */
    struct snap_info peek = {0};
    if (rc == 1 && snap_peek(path, s->io, &peek) != 0)
        peek.records = 0;
    kv_map_reserve_locked(s->map, peek.records + log_record_estimate(s->cfg.dir));
    if (rc == 1 && (rc = snap_load(path, s->io, load_cb, s->apply, &info, err, errlen)) != 0) {
        apply_load_flush_locked(s->apply);
        kv_map_write_unlock(s->map);
        return rc;
    }
    apply_load_flush_locked(s->apply);
    if (info.index != index) {
        kv_map_write_unlock(s->map);
        snprintf(err, errlen, "%s: header says index %" PRIu64, path, info.index);
        return LKV_ECORRUPT;
    }
    s->snap_index = index;
    struct wal_options wopt = {.dir = s->cfg.dir, .io = s->io, .segment_bytes = SEGMENT_BYTES,
                               .preallocate = true};
    struct wal_recovery rec;
    rc = wal_open(&wopt, index, replay_cb, s->apply, &s->wal, &rec, err, errlen);
    apply_load_flush_locked(s->apply);
    kv_map_write_unlock(s->map);
    if (rc != 0)
        return rc;
    snap_remove_older(s->cfg.dir, s->io, index); /* leftover temp files, stale snapshots */
    uint64_t took_us = (clock_now_ns() - t0) / 1000;
    stats_record_recovery(took_us, index, rec.replayed);
    LOG_INFO("event=recovered snapshot_index=%" PRIu64 " replayed=%" PRIu64 " last_index=%" PRIu64
             " keys=%" PRIu64 " segments=%" PRIu64 " torn_bytes=%" PRIu64 " duration_ms=%" PRIu64,
             index, rec.replayed, rec.last_index, kv_map_count(s->map), rec.segments,
             rec.torn_bytes, took_us / 1000);
    return 0;
}

int store_open(const struct store_config *cfg, struct store **out, char *err, size_t errlen)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "cannot start the store: %s", lkv_strerror(LKV_ENOMEM));
        return LKV_ENOMEM;
    }
    s->cfg = *cfg;
    s->io = cfg->io ? cfg->io : &io_libc;
    s->map = kv_map_new();
    s->apply = s->map ? apply_new(s->map) : NULL;
    int rc = LKV_ENOMEM;
    if (!s->apply) {
        snprintf(err, errlen, "cannot start the store: %s", lkv_strerror(rc));
        goto err_after_map;
    }
    if ((rc = recover(s, err, errlen)) != 0)
        goto err_after_map;
    s->checkpoint_at = s->cfg.checkpoint_bytes;
    publish_gauges(s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
        rc = LKV_ENOMEM;
        snprintf(err, errlen, "cannot start the log writer thread");
        goto err_after_sync;
    }
    *out = s;
    return 0;

err_after_sync:
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    wal_close(s->wal);
err_after_map:
    apply_free(s->apply);
    kv_map_free(s->map);
    free(s);
    return rc;
}

void store_submit(struct store *s, struct store_req *req)
{
    req->next = NULL;
    struct kv_cmd c;
    if (kv_cmd_decode(req->cmd->data, req->cmd->len, &c) != 0) {
        complete_one(req, LKV_EINVAL);
        return;
    }
    pthread_mutex_lock(&s->lock);
    if (s->stopping) {
        pthread_mutex_unlock(&s->lock);
        complete_one(req, LKV_ESHUTDOWN);
        return;
    }
    bool was_empty = s->queue_head == NULL;
    if (s->queue_tail)
        s->queue_tail->next = req;
    else
        s->queue_head = req;
    s->queue_tail = req;
    pthread_mutex_unlock(&s->lock);
    if (was_empty)
        pthread_cond_signal(&s->wake);
}

struct kv_entry *store_get(struct store *s, const char *key, size_t klen)
{
    return kv_map_get(s->map, key, klen);
}

int store_failed(const struct store *s)
{
    return s->failed;
}

void store_gauges(struct store *s, struct stats_gauges *g)
{
    g->keys = kv_map_count(s->map);
    g->bytes = kv_map_bytes(s->map);
    g->log_bytes = atomic_load(&s->log_bytes);
    g->last_index = atomic_load(&s->last_index);
}

int store_shutdown(struct store *s)
{
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_mutex_unlock(&s->lock);
    pthread_cond_signal(&s->wake);
    pthread_join(s->writer, NULL);
    return s->failed;
}

void store_free(struct store *s)
{
    wal_close(s->wal);
    kv_map_free(s->map);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->lock);
    apply_free(s->apply);
    free(s->entries);
    free(s->iov);
    free(s);
}
