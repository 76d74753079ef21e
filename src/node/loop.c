#include "node/loop.h"

#include "kv/kv_cmd.h"
#include "node/checkpoint.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/uio.h>

/* A batch stops growing past this many payload bytes, so one huge value
 * cannot hold many small writes behind a long write. */
#define BATCH_MAX_BYTES (4u << 20)
/* How often an idle loop wakes to feed a running checkpoint. */
#define CHECKPOINT_POLL_NS (1000000L)

struct loop {
    struct loop_config cfg;

    pthread_mutex_t lock; /* guards queue_head, queue_tail, stopping */
    pthread_cond_t wake;
    struct store_req *queue_head;
    struct store_req *queue_tail;
    bool stopping;

    pthread_t thread;
    atomic_int failed; /* first fatal error: loop thread writes, any thread reads */

    /* Published by the loop thread for loop_gauges (any thread reads). */
    atomic_uint_fast64_t pub_log_bytes;
    atomic_uint_fast64_t pub_last_index;
    atomic_uint_fast64_t pub_durable;
    atomic_uint_fast64_t pub_commit;
    atomic_uint_fast64_t pub_applied;

    /* Loop thread only. applied_index <= commit_index <= durable_index. */
    uint64_t durable_index; /* last record on disk (written and fdatasync'ed) */
    uint64_t commit_index;  /* last record that may be applied */
    uint64_t applied_index; /* last record in the map */
    bool enospc_logged;
    struct wal_entry *entries; /* one batch's records, */
    struct iovec *iov;         /* each one iovec: its request's command */
    size_t scratch_cap;
    struct checkpoint *ckpt;
};

static uint64_t req_bytes(const struct store_req *r)
{
    return r->cmd->len;
}

/* Takes the oldest queued writes, up to BATCH_MAX_BYTES (at least one).
 * Waits while the queue is empty; returns NULL once stopping and drained,
 * or after a poll interval when `poll` is set. */
static struct store_req *take_batch(struct loop *l, bool poll)
{
    pthread_mutex_lock(&l->lock);
    if (poll && !l->queue_head && !l->stopping) {
        struct timespec ts = clock_realtime_after(CHECKPOINT_POLL_NS);
        pthread_cond_timedwait(&l->wake, &l->lock, &ts);
    }
    while (!poll && !l->queue_head && !l->stopping)
        pthread_cond_wait(&l->wake, &l->lock);
    struct store_req *batch = l->queue_head, *last = batch;
    uint64_t bytes = batch ? req_bytes(batch) : 0;
    while (last && last->next && bytes + req_bytes(last->next) <= BATCH_MAX_BYTES) {
        last = last->next;
        bytes += req_bytes(last);
    }
    if (last) {
        l->queue_head = last->next;
        if (!l->queue_head)
            l->queue_tail = NULL;
        last->next = NULL;
    }
    pthread_mutex_unlock(&l->lock);
    return batch;
}

static bool drained(struct loop *l)
{
    pthread_mutex_lock(&l->lock);
    bool done = l->stopping && !l->queue_head;
    pthread_mutex_unlock(&l->lock);
    return done;
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
static struct store_req *refuse_over_limit(struct loop *l, struct store_req *batch)
{
    if (l->cfg.max_memory == 0)
        return batch;
    uint64_t used = kv_map_bytes(l->cfg.map);
    struct store_req *keep = NULL, **tail = &keep;
    while (batch) {
        struct store_req *next = batch->next;
        batch->next = NULL;
        uint64_t add = 0;
        struct kv_cmd c;
        /* loop_submit let only commands that decode in */
        if (kv_cmd_decode(batch->cmd->data, batch->cmd->len, &c) == 0 && c.op == KV_OP_SET) {
            /* replacing a value frees the old one: count only the growth */
            struct kv_entry *old = kv_map_get(l->cfg.map, c.key, c.klen);
            uint64_t was = old ? kv_entry_klen(old) + kv_entry_vlen(old) : 0;
            if (old)
                kv_entry_unref(old);
            uint64_t size = c.klen + c.vlen;
            add = size > was ? size - was : 0;
        }
        if (add && used + add > l->cfg.max_memory) {
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

static int grow_scratch(struct loop *l, size_t n)
{
    if (n <= l->scratch_cap)
        return 0;
    size_t cap = l->scratch_cap ? l->scratch_cap : 64;
    while (cap < n)
        cap *= 2;
    struct wal_entry *e = realloc(l->entries, cap * sizeof *e);
    if (e)
        l->entries = e;
    struct iovec *iov = realloc(l->iov, cap * sizeof *iov);
    if (iov)
        l->iov = iov;
    if (!e || !iov)
        return LKV_ENOMEM;
    l->scratch_cap = cap;
    return 0;
}

/* Describes each request as a log record whose payload is its command, one
 * iovec pointing at the request's own bytes (no copy). Returns the count. */
static size_t frame_requests(struct loop *l, struct store_req *batch, uint64_t *bytes)
{
    size_t n = 0;
    *bytes = 0;
    for (struct store_req *r = batch; r; r = r->next, n++) {
        l->iov[n] = (struct iovec){r->cmd->data, r->cmd->len};
        l->entries[n] = (struct wal_entry){.type = WAL_REC_COMMAND, .term = 0, .iov = &l->iov[n],
                                           .iovcnt = 1};
        *bytes += WAL_REC_HDR_SIZE + r->cmd->len;
    }
    return n;
}

/* Records the first fatal error, tells the owner, and returns LKV_EFATAL,
 * the status every request of the batch gets. */
static int fail_fatal(struct loop *l, int rc)
{
    if (atomic_load(&l->failed) == 0) {
        atomic_store(&l->failed, rc);
        if (l->cfg.on_fatal)
            l->cfg.on_fatal(rc);
    }
    return LKV_EFATAL;
}

static void publish_log_gauges(struct loop *l)
{
    atomic_store(&l->pub_log_bytes, wal_size_bytes(l->cfg.wal));
    atomic_store(&l->pub_last_index, wal_last_index(l->cfg.wal));
}

/* Step 1: the batch's records are written and fdatasync'ed. Sets *n to the
 * record count. Returns 0, LKV_ENOSPC or LKV_ENOMEM (nothing written), or
 * LKV_EFATAL. */
static int persist(struct loop *l, struct store_req *batch, size_t *n)
{
    *n = 0;
    for (struct store_req *r = batch; r; r = r->next)
        (*n)++;
    if (grow_scratch(l, *n) != 0)
        return LKV_ENOMEM;
    uint64_t bytes, first;
    frame_requests(l, batch, &bytes);
    int rc = wal_append(l->cfg.wal, l->entries, *n, &first);
    if (rc == LKV_ENOSPC) {
        if (!l->enospc_logged)
            LOG_WARN("event=disk_full action=refusing_writes records=%zu", *n);
        l->enospc_logged = true;
        return rc;
    }
    if (rc != 0) {
        LOG_ERROR("event=log_write_failed error=\"%s\" records=%zu", lkv_strerror(rc), *n);
        return fail_fatal(l, rc);
    }
    stats_record_batch(l->cfg.stats, *n, bytes, wal_last_sync_ns(l->cfg.wal) / 1000);
    l->enospc_logged = false;
    l->durable_index = first + *n - 1;
    publish_log_gauges(l);
    atomic_store_explicit(&l->pub_durable, l->durable_index, memory_order_release);
    return 0;
}

/* Step 2: a single node's durable records are committed. (With Raft, the
 * commit index will come from a quorum instead.) */
static void commit(struct loop *l)
{
    l->commit_index = l->durable_index;
    atomic_store_explicit(&l->pub_commit, l->commit_index, memory_order_release);
}

/* Step 3: the committed records, this batch's n, go into the map. Returns 0
 * or LKV_EFATAL. */
static int apply(struct loop *l, size_t n)
{
    assert(l->commit_index - l->applied_index == n);
    int rc = apply_commands(l->cfg.apply, l->iov, n);
    if (rc != 0) {
        /* Durable but not in the map: only a restart, which replays the
         * log, brings the two together again. */
        LOG_ERROR("event=apply_failed error=\"%s\" records=%zu", lkv_strerror(rc), n);
        return fail_fatal(l, rc);
    }
    l->applied_index = l->commit_index;
    atomic_store_explicit(&l->pub_applied, l->applied_index, memory_order_release);
    return 0;
}

/* One batch, in the order durability needs, top to bottom: persist,
 * commit, apply, answer. */
static void process_batch(struct loop *l, struct store_req *batch)
{
    batch = refuse_over_limit(l, batch);
    if (!batch)
        return;
    size_t n = 0;
    int rc = atomic_load(&l->failed) ? LKV_EFATAL : persist(l, batch, &n);
    if (rc == 0)
        commit(l);
    if (rc == 0)
        rc = apply(l, n);
    complete_batch(batch, rc);
}

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    for (;;) {
        struct store_req *batch = take_batch(l, checkpoint_running(l->ckpt));
        if (batch)
            process_batch(l, batch);
        else if (drained(l))
            break;
        checkpoint_maybe_start(l->ckpt, l->applied_index, atomic_load(&l->failed) == 0);
        checkpoint_feed(l->ckpt, batch != NULL);
    }
    checkpoint_final(l->ckpt, l->applied_index, atomic_load(&l->failed) == 0);
    publish_log_gauges(l);
    return NULL;
}

int loop_start(const struct loop_config *cfg, struct loop **out)
{
    struct loop *l = calloc(1, sizeof *l);
    if (!l)
        return LKV_ENOMEM;
    l->cfg = *cfg;
    struct checkpoint_config ccfg = {.dir = cfg->dir, .io = cfg->io, .map = cfg->map,
                                     .wal = cfg->wal, .checkpoint_bytes = cfg->checkpoint_bytes,
                                     .snap_index = cfg->snap_index, .stats = cfg->stats};
    l->ckpt = checkpoint_new(&ccfg);
    if (!l->ckpt)
        goto err_after_alloc;
    /* Recovery put every record of the log into the map. */
    l->durable_index = l->commit_index = l->applied_index = wal_last_index(cfg->wal);
    atomic_init(&l->pub_durable, l->durable_index);
    atomic_init(&l->pub_commit, l->commit_index);
    atomic_init(&l->pub_applied, l->applied_index);
    publish_log_gauges(l);
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->wake, NULL);
    if (pthread_create(&l->thread, NULL, loop_main, l) != 0)
        goto err_after_sync;
    *out = l;
    return 0;

err_after_sync:
    pthread_cond_destroy(&l->wake);
    pthread_mutex_destroy(&l->lock);
    checkpoint_free(l->ckpt);
err_after_alloc:
    free(l);
    return LKV_ENOMEM;
}

void loop_submit(struct loop *l, struct store_req *req)
{
    req->next = NULL;
    struct kv_cmd c;
    if (kv_cmd_decode(req->cmd->data, req->cmd->len, &c) != 0) {
        complete_one(req, LKV_EINVAL);
        return;
    }
    pthread_mutex_lock(&l->lock);
    if (l->stopping) {
        pthread_mutex_unlock(&l->lock);
        complete_one(req, LKV_ESHUTDOWN);
        return;
    }
    bool was_empty = l->queue_head == NULL;
    if (l->queue_tail)
        l->queue_tail->next = req;
    else
        l->queue_head = req;
    l->queue_tail = req;
    pthread_mutex_unlock(&l->lock);
    if (was_empty)
        pthread_cond_signal(&l->wake);
}

int loop_stop(struct loop *l)
{
    pthread_mutex_lock(&l->lock);
    l->stopping = true;
    pthread_mutex_unlock(&l->lock);
    pthread_cond_signal(&l->wake);
    pthread_join(l->thread, NULL);
    return atomic_load(&l->failed);
}

void loop_free(struct loop *l)
{
    checkpoint_free(l->ckpt);
    pthread_cond_destroy(&l->wake);
    pthread_mutex_destroy(&l->lock);
    free(l->entries);
    free(l->iov);
    free(l);
}

int loop_failed(const struct loop *l)
{
    return atomic_load(&l->failed);
}

void loop_gauges(const struct loop *l, struct stats_gauges *g)
{
    g->log_bytes = atomic_load(&l->pub_log_bytes);
    g->last_index = atomic_load(&l->pub_last_index);
    /* applied first: a reader racing a batch then never sees applied ahead
     * of commit or commit ahead of durable */
    g->applied_index = atomic_load(&l->pub_applied);
    g->commit_index = atomic_load(&l->pub_commit);
    g->durable_index = atomic_load(&l->pub_durable);
}
