#include "node/loop.h"

#include "kv/kv_cmd.h"
#include "node/checkpoint.h"
#include "node/ident.h"
#include "node/storage.h"
#include "stats/hist.h"
#include "util/err.h"
#include "util/log.h"
#include "wal/meta.h"
#include "wal/record.h"

#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

/* Proposals taken per turn stop growing past this many payload bytes, so
 * one huge value cannot hold many small writes behind a long write. */
#define TURN_MAX_BYTES (4u << 20)
/* How often an idle loop wakes to feed a running checkpoint. */
#define CHECKPOINT_POLL_NS 1000000ull
/* Ticks per election timeout: the clock is read in these steps. */
#define TICKS_PER_ELECTION 50
/* After a disk-full write, the next attempt waits this long. */
#define DISK_RETRY_NS 100000000ull
/* Messages a follower stops at per turn, so a flood cannot starve ticks. */
#define MAX_READY_ROUNDS 64

struct waiter {
    uint64_t index, term;
    uint64_t proposed_ns;
    struct store_req *req;
};

struct read_batch {
    uint64_t ctx;
    uint64_t index;    /* 0 until the core released it */
    struct store_read *reads;
};

struct inbox_msgs {
    struct tp_batch b;
    struct inbox_msgs *next;
};

/* What any thread may read: copies the loop thread publishes. */
struct view {
    enum raft_role role;
    uint64_t term;
    raft_id leader, vote;
    struct raft_status st;
    struct raft_membership members;
    bool needs_snapshot[RAFT_MAX_MEMBERS]; /* per st.peers[] */
    uint64_t recv_by_type[RAFT_MSG__COUNT];
    uint64_t sent_by_type[RAFT_MSG__COUNT];
    uint64_t elections_started, elections_won, leader_changes;
    uint64_t snapshot_index;
};

struct loop {
    struct loop_config cfg;
    raft_id self;
    uint64_t cluster_id;
    uint64_t tick_ns;

    /* ---- the inbox: any thread, under lock ---- */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct store_req *q_head, *q_tail;
    struct store_read *r_head, *r_tail;
    struct store_op *op_head;
    struct inbox_msgs *m_head, *m_tail;
    raft_id unreachable[RAFT_MAX_MEMBERS];
    size_t n_unreachable;
    bool stopping;

    pthread_t thread;
    atomic_int failed;

    /* ---- published, any thread ---- */
    pthread_mutex_t view_lock; /* guards view */
    struct view view;
    atomic_bool reads_local;
    atomic_uint_fast64_t pub_log_bytes, pub_last_index, pub_durable, pub_commit, pub_applied;
    struct hist commit_us;     /* propose to commit on this leader */
    struct hist append_us;     /* a follower's write of the entries it was sent */

    /* ---- the loop thread's ---- */
    struct raft *raft;
    struct node_storage storage;
    struct wal *wal;
    struct checkpoint *ckpt;
    uint64_t applied;
    uint64_t applied_term;
    struct snap_conf applied_conf; /* encoded configuration in force at applied */
    uint64_t next_tick_ns;
    uint64_t disk_retry_ns;        /* 0, or when a disk-full write may be tried again */
    enum raft_role role;
    raft_id leader;
    uint64_t campaign_start_ns;
    struct waiter *w;              /* proposals awaiting commit, by index */
    size_t wn, wcap, whead;
    struct read_batch *rb;         /* reads awaiting confirmation, by ctx */
    size_t rbn, rbcap;
    uint64_t read_ctx;
    struct store_op *ops;          /* transfers awaiting a new leader */
    struct wal_entry *entries;     /* scratch for persisting a bundle */
    struct iovec *iov;
    size_t scratch_cap;
    struct store_op *stop_transfer; /* non-NULL once loop_stop asked leadership away */
    uint64_t recv_by_type[RAFT_MSG__COUNT];
    uint64_t sent_by_type[RAFT_MSG__COUNT];
    bool enospc_logged;
};

static uint64_t now_ns(const struct loop *l)
{
    return l->cfg.clock ? l->cfg.clock->now_ns(l->cfg.clock->ctx) : clock_now_ns();
}

static bool has_peers(const struct loop *l)
{
    const struct raft_membership *c = raft_membership_current(l->raft);
    return c->n > 1 || (c->n == 1 && c->m[0].id != l->self);
}

static int fail_fatal(struct loop *l, int rc)
{
    if (atomic_load(&l->failed) == 0) {
        atomic_store(&l->failed, rc);
        if (l->cfg.on_fatal)
            l->cfg.on_fatal(rc);
    }
    return LKV_EFATAL;
}

/* ---- completing requests ---- */

static void complete_req(struct store_req *r, int status)
{
    lkv_blob_unref(r->cmd); /* the map holds copies of what it needs */
    r->cmd = NULL;
    r->done_cb(r, status);
}

static void complete_reqs(struct store_req *r, int status)
{
    while (r) {
        struct store_req *next = r->next;
        complete_req(r, status);
        r = next;
    }
}

static void complete_reads(struct store_read *r, int status)
{
    while (r) {
        struct store_read *next = r->next;
        r->done_cb(r, status);
        r = next;
    }
}

static void complete_ops(struct store_op *op, int status)
{
    while (op) {
        struct store_op *next = op->next;
        op->done_cb(op, status);
        op = next;
    }
}

static size_t waiting(const struct loop *l)
{
    return l->wn - l->whead;
}

static int push_waiter(struct loop *l, struct waiter w)
{
    if (l->whead > 0 && l->wn == l->wcap) {
        memmove(l->w, l->w + l->whead, waiting(l) * sizeof *l->w);
        l->wn -= l->whead;
        l->whead = 0;
    }
    if (l->wn == l->wcap) {
        size_t cap = l->wcap ? l->wcap * 2 : 256;
        struct waiter *p = realloc(l->w, cap * sizeof *p);
        if (!p)
            return LKV_ENOMEM;
        l->w = p;
        l->wcap = cap;
    }
    l->w[l->wn++] = w;
    return 0;
}

/* Every write still waiting gets `status` (leadership lost, shutdown). */
static void fail_waiters(struct loop *l, int status)
{
    for (size_t i = l->whead; i < l->wn; i++)
        complete_req(l->w[i].req, status);
    l->whead = l->wn = 0;
}

/* Writes waiting at indexes past `last` get `status` (what a full disk
 * refused on a lone node: the indexes will be reused). */
static void fail_waiters_after(struct loop *l, uint64_t last, int status)
{
    while (l->wn > l->whead && l->w[l->wn - 1].index > last) {
        l->wn--;
        complete_req(l->w[l->wn].req, status);
    }
}

static void fail_read_batches(struct loop *l, int status)
{
    for (size_t i = 0; i < l->rbn; i++)
        complete_reads(l->rb[i].reads, status);
    l->rbn = 0;
}

/* ---- the inbox ---- */

static void signal_loop(struct loop *l)
{
    pthread_cond_signal(&l->wake);
}

void loop_submit(struct loop *l, struct store_req *req)
{
    req->next = NULL;
    struct kv_cmd c;
    if (kv_cmd_decode(req->cmd->data, req->cmd->len, &c) != 0) {
        complete_req(req, LKV_EINVAL);
        return;
    }
    pthread_mutex_lock(&l->lock);
    if (l->stopping) {
        pthread_mutex_unlock(&l->lock);
        complete_req(req, LKV_ESHUTDOWN);
        return;
    }
    bool was_empty = l->q_head == NULL;
    if (l->q_tail)
        l->q_tail->next = req;
    else
        l->q_head = req;
    l->q_tail = req;
    pthread_mutex_unlock(&l->lock);
    if (was_empty)
        signal_loop(l);
}

void loop_read(struct loop *l, struct store_read *r)
{
    r->next = NULL;
    pthread_mutex_lock(&l->lock);
    if (l->stopping) {
        pthread_mutex_unlock(&l->lock);
        r->done_cb(r, LKV_ESHUTDOWN);
        return;
    }
    if (l->r_tail)
        l->r_tail->next = r;
    else
        l->r_head = r;
    l->r_tail = r;
    pthread_mutex_unlock(&l->lock);
    signal_loop(l);
}

void loop_transfer(struct loop *l, struct store_op *op)
{
    pthread_mutex_lock(&l->lock);
    if (l->stopping) {
        pthread_mutex_unlock(&l->lock);
        op->done_cb(op, LKV_ESHUTDOWN);
        return;
    }
    op->next = l->op_head;
    l->op_head = op;
    pthread_mutex_unlock(&l->lock);
    signal_loop(l);
}

void loop_deliver(struct loop *l, struct tp_batch *b)
{
    struct inbox_msgs *m = malloc(sizeof *m);
    if (!m) {
        tp_batch_free(b); /* lost: Raft recovers from that */
        return;
    }
    m->b = *b;
    memset(b, 0, sizeof *b);
    m->next = NULL;
    pthread_mutex_lock(&l->lock);
    if (l->m_tail)
        l->m_tail->next = m;
    else
        l->m_head = m;
    l->m_tail = m;
    pthread_mutex_unlock(&l->lock);
    signal_loop(l);
}

void loop_report_unreachable(struct loop *l, raft_id peer)
{
    pthread_mutex_lock(&l->lock);
    bool known = false;
    for (size_t i = 0; i < l->n_unreachable; i++)
        known = known || l->unreachable[i] == peer;
    if (!known && l->n_unreachable < RAFT_MAX_MEMBERS)
        l->unreachable[l->n_unreachable++] = peer;
    pthread_mutex_unlock(&l->lock);
    signal_loop(l);
}

/* Everything that arrived since the last turn. */
struct turn {
    struct store_req *reqs;
    struct store_read *reads;
    struct store_op *ops;
    struct inbox_msgs *msgs;
    raft_id unreachable[RAFT_MAX_MEMBERS];
    size_t n_unreachable;
    bool stopping;
};

static bool inbox_empty_locked(const struct loop *l)
{
    return !l->q_head && !l->r_head && !l->op_head && !l->m_head && l->n_unreachable == 0;
}

/* Takes the inbox, waiting until something is there or `deadline_ns`
 * (UINT64_MAX: no deadline). Proposals are taken up to a turn's worth. */
static void take_turn(struct loop *l, uint64_t deadline_ns, struct turn *t)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_lock(&l->lock);
    while (inbox_empty_locked(l) && !l->stopping) {
        if (deadline_ns == UINT64_MAX) {
            pthread_cond_wait(&l->wake, &l->lock);
            continue;
        }
        uint64_t now = now_ns(l);
        if (now >= deadline_ns)
            break;
        uint64_t left = deadline_ns - now;
        struct timespec ts = clock_realtime_after((long)(left < 999999999 ? left : 999999999));
        pthread_cond_timedwait(&l->wake, &l->lock, &ts);
    }
    struct store_req *last = l->q_head;
    uint64_t bytes = last ? last->cmd->len : 0;
    while (last && last->next && bytes + last->next->cmd->len <= TURN_MAX_BYTES) {
        last = last->next;
        bytes += last->cmd->len;
    }
    if (last) {
        t->reqs = l->q_head;
        l->q_head = last->next;
        if (!l->q_head)
            l->q_tail = NULL;
        last->next = NULL;
    }
    t->reads = l->r_head;
    l->r_head = l->r_tail = NULL;
    t->ops = l->op_head;
    l->op_head = NULL;
    t->msgs = l->m_head;
    l->m_head = l->m_tail = NULL;
    memcpy(t->unreachable, l->unreachable, l->n_unreachable * sizeof *l->unreachable);
    t->n_unreachable = l->n_unreachable;
    l->n_unreachable = 0;
    t->stopping = l->stopping;
    pthread_mutex_unlock(&l->lock);
}

/* ---- feeding the core ---- */

static void step_messages(struct loop *l, struct inbox_msgs *m)
{
    while (m) {
        struct inbox_msgs *next = m->next;
        for (size_t i = 0; i < m->b.n; i++) {
            const struct raft_msg *msg = &m->b.msgs[i];
            l->recv_by_type[msg->type]++;
            if (raft_step(l->raft, msg) != 0)
                LOG_DEBUG("event=message_refused from=%016" PRIx64 " type=%s", msg->from,
                          raft_msg_type_name(msg->type));
        }
        tp_batch_free(&m->b);
        free(m);
        m = next;
    }
}

static void tick(struct loop *l, uint64_t now)
{
    if (now < l->next_tick_ns)
        return;
    uint64_t due = (now - l->next_tick_ns) / l->tick_ns + 1;
    /* After a long stall the core must still see the time pass (so that a
     * leader that could not reach anyone steps down before serving a lease
     * read), but a few election timeouts' worth is plenty. */
    if (due > 4 * TICKS_PER_ELECTION)
        due = 4 * TICKS_PER_ELECTION;
    for (uint64_t i = 0; i < due; i++)
        raft_tick(l->raft);
    l->next_tick_ns = now - (now - l->next_tick_ns) % l->tick_ns + l->tick_ns;
}

/* The growth a set would add to the map (replacing a value frees the old). */
static uint64_t set_growth(struct loop *l, const struct store_req *r)
{
    struct kv_cmd c;
    if (kv_cmd_decode(r->cmd->data, r->cmd->len, &c) != 0 || c.op != KV_OP_SET)
        return 0;
    struct kv_entry *old = kv_map_get(l->cfg.map, c.key, c.klen);
    uint64_t was = old ? kv_entry_klen(old) + kv_entry_vlen(old) : 0;
    if (old)
        kv_entry_unref(old);
    uint64_t size = c.klen + c.vlen;
    return size > was ? size - was : 0;
}

static int refusal(struct loop *l, uint64_t now)
{
    if (atomic_load(&l->failed))
        return LKV_EFATAL;
    if (l->role != RAFT_LEADER)
        return LKV_ENOTLEADER;
    if (l->disk_retry_ns && now < l->disk_retry_ns)
        return LKV_ENOSPC;
    return 0;
}

static void propose(struct loop *l, struct store_req *reqs, uint64_t now)
{
    int refuse = refusal(l, now);
    uint64_t used = l->cfg.max_memory ? kv_map_bytes(l->cfg.map) : 0;
    while (reqs) {
        struct store_req *r = reqs;
        reqs = r->next;
        r->next = NULL;
        if (refuse) {
            complete_req(r, refuse);
            continue;
        }
        uint64_t add = l->cfg.max_memory ? set_growth(l, r) : 0;
        if (add && used + add > l->cfg.max_memory) {
            complete_req(r, LKV_EMEMLIMIT);
            continue;
        }
        uint64_t index, term;
        int rc = raft_propose(l->raft, RAFT_ENTRY_COMMAND, r->cmd, &index, &term);
        if (rc == 0)
            rc = push_waiter(l, (struct waiter){index, term, now, r});
        if (rc != 0) {
            complete_req(r, rc == LKV_ETRANSFER ? LKV_ENOTLEADER : rc);
            continue;
        }
        used += add;
    }
}

static int push_read_batch(struct loop *l, struct read_batch b)
{
    if (l->rbn == l->rbcap) {
        size_t cap = l->rbcap ? l->rbcap * 2 : 16;
        struct read_batch *p = realloc(l->rb, cap * sizeof *p);
        if (!p)
            return LKV_ENOMEM;
        l->rb = p;
        l->rbcap = cap;
    }
    l->rb[l->rbn++] = b;
    return 0;
}

/* All reads of a turn share one ReadIndex request: one heartbeat round
 * confirms them together. */
static void ask_reads(struct loop *l, struct store_read *reads)
{
    if (!reads)
        return;
    if (l->role != RAFT_LEADER) {
        complete_reads(reads, LKV_ENOTLEADER);
        return;
    }
    uint64_t ctx = ++l->read_ctx;
    int rc = raft_read_index(l->raft, ctx);
    if (rc == 0)
        rc = push_read_batch(l, (struct read_batch){.ctx = ctx, .reads = reads});
    if (rc != 0)
        complete_reads(reads, rc == LKV_ENOMEM ? LKV_ENOMEM : LKV_ENOTLEADER);
}

static void start_transfers(struct loop *l, struct store_op *ops, uint64_t now)
{
    while (ops) {
        struct store_op *op = ops;
        ops = op->next;
        int rc = LKV_ENOTLEADER;
        raft_id to = op->target[0] ? ident_member_id(op->target) : RAFT_NONE;
        if (l->role == RAFT_LEADER && to == l->self) {
            op->done_cb(op, 0); /* it is already there */
            continue;
        }
        if (l->role == RAFT_LEADER)
            rc = raft_transfer_leadership(l->raft, to);
        if (rc != 0) {
            op->done_cb(op, rc);
            continue;
        }
        op->deadline_ns = now + (uint64_t)(op->timeout_ms ? op->timeout_ms : 5000) * 1000000u;
        op->next = l->ops;
        l->ops = op;
    }
}

/* Transfers finish when this node no longer leads, or give up. */
static void settle_transfers(struct loop *l, uint64_t now)
{
    struct store_op **p = &l->ops;
    while (*p) {
        struct store_op *op = *p;
        if (l->role == RAFT_LEADER && now < op->deadline_ns) {
            p = &op->next;
            continue;
        }
        *p = op->next;
        op->done_cb(op, l->role == RAFT_LEADER ? LKV_ETIMEDOUT : 0);
    }
}

/* ---- carrying out a ready bundle ---- */

static void send_all(struct loop *l, const struct raft_msg *m, size_t n)
{
    if (!l->cfg.transport.send)
        return;
    for (size_t i = 0; i < n; i++) {
        l->sent_by_type[m[i].type]++;
        l->cfg.transport.send(l->cfg.transport.ctx, &m[i]);
    }
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

static void publish_log(struct loop *l)
{
    atomic_store(&l->pub_log_bytes, wal_size_bytes(l->wal));
    atomic_store(&l->pub_last_index, wal_last_index(l->wal));
    atomic_store(&l->pub_durable, wal_last_index(l->wal));
}

static int persist_hard_state(struct loop *l, const struct raft_hard_state *hs)
{
    struct meta m = {.version = META_FORMAT_VERSION, .term = hs->term, .vote = hs->vote,
                     .cluster_id = l->cluster_id};
    int rc = meta_store(l->cfg.dir, l->cfg.io, &m);
    if (rc == 0 || rc == LKV_ENOSPC)
        return rc;
    LOG_ERROR("event=meta_write_failed error=\"%s\"", lkv_strerror(rc));
    return fail_fatal(l, rc);
}

/* The bundle's entries: what they replace is cut first, then one pwritev
 * and one fdatasync. Returns 0, LKV_ENOSPC (nothing new written) or
 * LKV_EFATAL. */
static int persist_entries(struct loop *l, const struct raft_entry *e, size_t n)
{
    if (n == 0)
        return 0;
    if (e[0].index <= wal_last_index(l->wal)) {
        int rc = wal_truncate_suffix(l->wal, e[0].index);
        if (rc != 0) {
            LOG_ERROR("event=log_truncate_failed from=%" PRIu64 " error=\"%s\"", e[0].index,
                      lkv_strerror(rc));
            return fail_fatal(l, rc);
        }
    }
    if (grow_scratch(l, n) != 0)
        return LKV_ENOSPC; /* out of memory: the core retries as for a full disk */
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = e[i].data ? e[i].data->len : 0;
        l->iov[i] = (struct iovec){e[i].data ? e[i].data->data : NULL, len};
        l->entries[i] = (struct wal_entry){.type = e[i].type, .term = e[i].term,
                                           .iov = &l->iov[i], .iovcnt = len ? 1 : 0,
                                           .index = e[i].index};
        bytes += WAL_REC_HDR_SIZE + len;
    }
    int rc = wal_append_at(l->wal, l->entries, n);
    if (rc == LKV_ENOSPC) {
        if (!l->enospc_logged)
            LOG_WARN("event=disk_full action=refusing_writes records=%zu", n);
        l->enospc_logged = true;
        return rc;
    }
    if (rc != 0) {
        LOG_ERROR("event=log_write_failed error=\"%s\" records=%zu", lkv_strerror(rc), n);
        return fail_fatal(l, rc);
    }
    l->enospc_logged = false;
    stats_record_batch(l->cfg.stats, n, bytes, wal_last_sync_ns(l->wal) / 1000);
    if (l->role != RAFT_LEADER)
        hist_record(&l->append_us, wal_last_sync_ns(l->wal) / 1000);
    publish_log(l);
    return 0;
}

static int persist(struct loop *l, const struct raft_ready *rd)
{
    if (atomic_load(&l->failed))
        return LKV_EFATAL;
    if (rd->snapshot) {
        /* Nobody sends snapshots yet (see node/storage.c). */
        LOG_ERROR("event=snapshot_install_unsupported index=%" PRIu64, rd->snapshot->index);
        return fail_fatal(l, LKV_EINVAL);
    }
    int rc = rd->hs_changed ? persist_hard_state(l, &rd->hs) : 0;
    if (rc == 0)
        rc = persist_entries(l, rd->entries, rd->n_entries);
    return rc;
}

static void note_applied_conf(struct loop *l, const struct raft_entry *e)
{
    size_t len = e->data ? e->data->len : 0;
    if (len == 0 || len > SNAP_CONF_MAX)
        return;
    memcpy(l->applied_conf.bytes, e->data->data, len);
    l->applied_conf.len = len;
}

/* Answers the writes whose entries are now in the map. */
static void answer_writes(struct loop *l, const struct raft_entry *e, uint64_t now)
{
    while (waiting(l) && l->w[l->whead].index <= e->index) {
        struct waiter *w = &l->w[l->whead++];
        /* Another entry at that index: the write was overwritten by a new
         * leader's log, its outcome unknown to this node. */
        bool ours = w->index == e->index && w->term == e->term;
        if (ours)
            hist_record(&l->commit_us, (now - w->proposed_ns) / 1000);
        complete_req(w->req, ours ? 0 : LKV_ELEADERLOST);
    }
    if (l->whead == l->wn)
        l->whead = l->wn = 0;
}

/* Committed entries into the map, in order, then their writes answered. */
static int apply_committed(struct loop *l, const struct raft_entry *e, size_t n, uint64_t now)
{
    if (n == 0)
        return 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].type == RAFT_ENTRY_COMMAND && e[i].data)
            l->iov[k++] = (struct iovec){e[i].data->data, e[i].data->len};
    }
    int rc = k ? apply_commands(l->cfg.apply, l->iov, k) : 0;
    if (rc != 0) {
        /* Committed but not in the map: only a restart, which replays the
         * log, brings the two together again. */
        LOG_ERROR("event=apply_failed error=\"%s\" records=%zu", lkv_strerror(rc), k);
        return fail_fatal(l, rc);
    }
    l->applied = e[n - 1].index;
    l->applied_term = e[n - 1].term;
    /* Published before any write is answered: a client that got its 200
     * and then reads /stats sees its entry committed and applied. */
    if (atomic_load(&l->pub_commit) < l->applied)
        atomic_store(&l->pub_commit, l->applied);
    atomic_store_explicit(&l->pub_applied, l->applied, memory_order_release);
    for (size_t i = 0; i < n; i++) {
        if (e[i].type == RAFT_ENTRY_CONFIG)
            note_applied_conf(l, &e[i]);
        answer_writes(l, &e[i], now);
    }
    return 0;
}

/* Reads the core confirmed, served once the map has caught up. */
static void release_reads(struct loop *l, const struct raft_read *rr, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < l->rbn; j++) {
            if (l->rb[j].ctx == rr[i].ctx)
                l->rb[j].index = rr[i].index ? rr[i].index : 1;
        }
    }
    size_t k = 0;
    for (size_t j = 0; j < l->rbn; j++) {
        if (l->rb[j].index && l->rb[j].index <= l->applied)
            complete_reads(l->rb[j].reads, 0);
        else
            l->rb[k++] = l->rb[j];
    }
    l->rbn = k;
}

static const char *addr_of(const struct loop *l, raft_id id)
{
    const struct raft_member *m = raft_membership_find(raft_membership_current(l->raft), id);
    return m ? m->addr : "none";
}

static void on_role_change(struct loop *l, const struct raft_ready *rd, uint64_t now)
{
    enum raft_role was = l->role;
    if (rd->role == RAFT_PRE_CANDIDATE || rd->role == RAFT_CANDIDATE) {
        if (was == RAFT_FOLLOWER || was == RAFT_LEADER)
            l->campaign_start_ns = now;
        if (rd->role != was)
            LOG_INFO("event=election_started term=%" PRIu64 " pre_vote=%s", rd->term,
                     rd->role == RAFT_PRE_CANDIDATE ? "true" : "false");
    }
    if (rd->role == RAFT_LEADER && was != RAFT_LEADER) {
        uint64_t took = l->campaign_start_ns ? (now - l->campaign_start_ns) / 1000000 : 0;
        LOG_INFO("event=election_won term=%" PRIu64 " voters=%zu duration_ms=%" PRIu64, rd->term,
                 raft_membership_current(l->raft)->n, took);
        l->campaign_start_ns = 0;
    }
    if (rd->role != was || rd->leader != l->leader)
        LOG_INFO("event=role_change from=%s to=%s term=%" PRIu64 " leader=%s",
                 raft_role_name(was), raft_role_name(rd->role), rd->term,
                 rd->leader ? addr_of(l, rd->leader) : "none");
    l->role = rd->role;
    l->leader = rd->leader;
    if (was == RAFT_LEADER && rd->role != RAFT_LEADER) {
        fail_waiters(l, LKV_ELEADERLOST);
        fail_read_batches(l, LKV_ENOTLEADER);
    }
}

/* One bundle, in the order durability needs, top to bottom. Returns false
 * when the disk refused it (the same work comes back later). */
static bool carry_out(struct loop *l, uint64_t now)
{
    struct raft_ready rd;
    raft_ready(l->raft, &rd);
    if (rd.soft_changed)
        on_role_change(l, &rd, now);
    /* The leader's appends may leave before its own write (thesis
     * 10.2.1); it counts itself only once the write is durable. */
    send_all(l, rd.msgs, rd.n_msgs);
    int rc = persist(l, &rd);
    if (rc != 0) {
        raft_advance(l->raft, &rd, rc);
        if (rc == LKV_ENOSPC) {
            l->disk_retry_ns = now + DISK_RETRY_NS;
            /* A lone leader drops what did not fit: those writes failed and
             * their indexes are reused. With peers they stay and retry. */
            if (raft_drop_unstable(l->raft) == 0) {
                struct raft_status st;
                raft_status(l->raft, &st);
                fail_waiters_after(l, st.last_index, LKV_ENOSPC);
                l->disk_retry_ns = 0; /* nothing waits: the next write just tries */
            }
        } else {
            fail_waiters(l, LKV_EFATAL);
        }
        return false;
    }
    l->disk_retry_ns = 0;
    send_all(l, rd.msgs_after, rd.n_msgs_after);
    if (grow_scratch(l, rd.n_committed) != 0 ||
        apply_committed(l, rd.committed, rd.n_committed, now) != 0) {
        raft_advance(l->raft, &rd, LKV_EFATAL);
        fail_waiters(l, LKV_EFATAL);
        return false;
    }
    release_reads(l, rd.reads, rd.n_reads);
    raft_advance(l->raft, &rd, 0);
    return true;
}

/* Configurations are copied and compared member by member: the struct has
 * room for RAFT_MAX_MEMBERS (2 KB and more), and this runs every turn. */
static void membership_copy(struct raft_membership *to, const struct raft_membership *from)
{
    to->n = from->n;
    memcpy(to->m, from->m, from->n * sizeof from->m[0]);
}

static bool membership_same(const struct raft_membership *a, const struct raft_membership *b)
{
    return a->n == b->n && memcmp(a->m, b->m, a->n * sizeof a->m[0]) == 0;
}

static void sync_peers(struct loop *l, const struct raft_membership *before)
{
    const struct raft_membership *now = raft_membership_current(l->raft);
    if (membership_same(before, now))
        return;
    if (l->cfg.transport.set_peers)
        l->cfg.transport.set_peers(l->cfg.transport.ctx, now, l->self);
}

static void carry_out_all(struct loop *l, uint64_t now)
{
    struct raft_membership before;
    membership_copy(&before, raft_membership_current(l->raft));
    for (int i = 0; i < MAX_READY_ROUNDS && raft_has_ready(l->raft); i++) {
        if (l->disk_retry_ns && now < l->disk_retry_ns)
            break;
        if (!carry_out(l, now))
            break;
    }
    sync_peers(l, &before);
}

/* ---- publishing ---- */

static void publish_view(struct loop *l)
{
    struct raft_status st;
    raft_status(l->raft, &st);
    const struct raft_membership *c = raft_membership_current(l->raft);
    uint64_t first = wal_first_index(l->wal);
    pthread_mutex_lock(&l->view_lock);
    struct view *v = &l->view;
    v->role = st.role;
    v->term = st.term;
    v->leader = st.leader;
    v->vote = st.vote;
    memcpy(&v->st, &st, offsetof(struct raft_status, peers) + st.n_peers * sizeof st.peers[0]);
    membership_copy(&v->members, c);
    for (size_t i = 0; i < st.n_peers; i++)
        v->needs_snapshot[i] = st.peers[i].next < first;
    memcpy(v->recv_by_type, l->recv_by_type, sizeof v->recv_by_type);
    memcpy(v->sent_by_type, l->sent_by_type, sizeof v->sent_by_type);
    v->elections_started = st.elections;
    v->elections_won = st.elections_won;
    v->leader_changes = st.leader_changes;
    uint64_t si, stt;
    checkpoint_latest(l->ckpt, &si, &stt);
    v->snapshot_index = si;
    pthread_mutex_unlock(&l->view_lock);
    atomic_store(&l->reads_local, st.role == RAFT_LEADER && ident_lone_voter(c, l->self));
    atomic_store(&l->pub_commit, st.commit);
}

/* A member the leader can no longer feed from its log: reported once. */
static void report_snapshot_needs(struct loop *l)
{
    if (l->role != RAFT_LEADER)
        return;
    struct raft_status st;
    raft_status(l->raft, &st);
    uint64_t first = wal_first_index(l->wal);
    for (size_t i = 0; i < st.n_peers; i++) {
        bool needs = st.peers[i].next < first;
        if (needs && !l->view.needs_snapshot[i])
            LOG_WARN("event=follower_needs_snapshot peer=%s next=%" PRIu64
                     " first_index=%" PRIu64 " action=waiting",
                     addr_of(l, st.peers[i].id), st.peers[i].next, first);
    }
}

/* ---- the thread ---- */

/* Only followers use the trailing window: a cluster of one keeps none. */
static uint64_t retain_for(const struct loop *l)
{
    return has_peers(l) ? l->cfg.retain_entries : 0;
}

static void checkpoint_step(struct loop *l, bool fed_after_work)
{
    uint64_t si, stt;
    checkpoint_latest(l->ckpt, &si, &stt);
    struct checkpoint_point at = {.index = l->applied, .term = l->applied_term,
                                  .conf = &l->applied_conf, .retain = retain_for(l)};
    checkpoint_maybe_start(l->ckpt, &at, atomic_load(&l->failed) == 0);
    checkpoint_feed(l->ckpt, fed_after_work);
    uint64_t ni, nt;
    checkpoint_latest(l->ckpt, &ni, &nt);
    if (ni != si)
        node_storage_set_snapshot(&l->storage, ni, nt);
}

static uint64_t wait_deadline(struct loop *l, uint64_t now)
{
    uint64_t d = UINT64_MAX;
    if (has_peers(l))
        d = l->next_tick_ns;
    if (checkpoint_running(l->ckpt) && now + CHECKPOINT_POLL_NS < d)
        d = now + CHECKPOINT_POLL_NS;
    if (l->disk_retry_ns && l->disk_retry_ns < d)
        d = l->disk_retry_ns;
    if (l->ops && d > now + l->tick_ns)
        d = now + l->tick_ns;
    return d;
}

/* On the way out: a leader of others hands over first (the cluster need not
 * wait an election timeout), for at most two election timeouts. */
static bool handing_over(struct loop *l, uint64_t now, uint64_t *until)
{
    if (l->role != RAFT_LEADER || !has_peers(l) || atomic_load(&l->failed))
        return false;
    if (*until == 0) {
        if (raft_transfer_leadership(l->raft, RAFT_NONE) != 0)
            return false;
        LOG_INFO("event=leadership_handover reason=shutdown");
        *until = now + 4ull * l->cfg.election_timeout_ms * 1000000u;
    }
    return now < *until;
}

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    uint64_t handover_until = 0;
    for (;;) {
        uint64_t now = now_ns(l);
        struct turn t;
        bool stopping;
        pthread_mutex_lock(&l->lock);
        stopping = l->stopping;
        pthread_mutex_unlock(&l->lock);
        take_turn(l, stopping ? now + l->tick_ns : wait_deadline(l, now), &t);
        now = now_ns(l);
        step_messages(l, t.msgs);
        for (size_t i = 0; i < t.n_unreachable; i++)
            raft_report_unreachable(l->raft, t.unreachable[i]);
        tick(l, now);
        propose(l, t.reqs, now);
        ask_reads(l, t.reads);
        start_transfers(l, t.ops, now);
        carry_out_all(l, now);
        settle_transfers(l, now);
        report_snapshot_needs(l);
        publish_view(l);
        bool worked = t.reqs || t.msgs;
        if (t.stopping && !handing_over(l, now, &handover_until)) {
            pthread_mutex_lock(&l->lock);
            bool drained = !l->q_head;
            pthread_mutex_unlock(&l->lock);
            if (drained && waiting(l) == 0)
                break;
            if (drained && l->role != RAFT_LEADER)
                break;
        }
        checkpoint_step(l, worked);
    }
    /* Whatever could not finish: the client may retry. */
    fail_waiters(l, LKV_ELEADERLOST);
    fail_read_batches(l, LKV_ESHUTDOWN);
    complete_ops(l->ops, l->role == RAFT_LEADER ? LKV_ESHUTDOWN : 0);
    l->ops = NULL;
    struct checkpoint_point at = {.index = l->applied, .term = l->applied_term,
                                  .conf = &l->applied_conf, .retain = retain_for(l)};
    checkpoint_final(l->ckpt, &at, atomic_load(&l->failed) == 0);
    publish_log(l);
    return NULL;
}

/* ---- start and stop ---- */

static int make_core(struct loop *l, const struct recover_result *rec)
{
    uint64_t et = l->cfg.election_timeout_ms ? l->cfg.election_timeout_ms : 500;
    uint64_t hb = l->cfg.heartbeat_ms ? l->cfg.heartbeat_ms : 100;
    l->cfg.election_timeout_ms = (unsigned)et;
    l->tick_ns = et * 1000000u / TICKS_PER_ELECTION;
    unsigned hb_ticks = (unsigned)((hb * 1000000u + l->tick_ns / 2) / l->tick_ns);
    if (hb_ticks < 1)
        hb_ticks = 1;
    if (hb_ticks >= TICKS_PER_ELECTION)
        hb_ticks = TICKS_PER_ELECTION - 1;
    node_storage_init(&l->storage, rec->wal, rec->snap_index, rec->snap_term);
    struct raft_options o = {.id = l->self, .election_ticks = TICKS_PER_ELECTION,
                             .heartbeat_ticks = hb_ticks, .max_append_bytes = 1u << 20,
                             .max_inflight = 64, .pre_vote = true, .check_quorum = true,
                             .lease_reads = l->cfg.lease_reads,
                             .seed = now_ns(l) ^ l->self, .storage = &l->storage.st};
    struct raft_boot boot = {.hs = {.term = rec->meta.term, .vote = rec->meta.vote},
                             .snap = {.index = rec->snap_index, .term = rec->snap_term,
                                      .conf = rec->snap_conf},
                             .confs = rec->confs, .n_confs = rec->n_confs,
                             .applied = rec->applied};
    return raft_new(&o, &boot, &l->raft);
}

/* A lone voter leads before the port opens: its first bundles (the term,
 * the no-op, and whatever its log holds that recovery did not apply yet)
 * are carried out here, on the caller's thread, so that the first request
 * sees the whole state. */
static int settle_start(struct loop *l)
{
    uint64_t now = now_ns(l);
    while (raft_has_ready(l->raft)) {
        if (carry_out(l, now))
            continue;
        if (atomic_load(&l->failed))
            return atomic_load(&l->failed);
        /* A full disk: start anyway; writes get 507 until there is room. */
        LOG_WARN("event=disk_full_at_start action=serving_reads");
        return 0;
    }
    /* In lease mode the core waits out an election timeout before it
     * campaigns, even alone: a lone voter still leads before listening. */
    const struct raft_membership *c = raft_membership_current(l->raft);
    for (int i = 0; i < 4 * TICKS_PER_ELECTION && l->role != RAFT_LEADER &&
                    ident_lone_voter(c, l->self);
         i++) {
        struct timespec ts = {0, (long)l->tick_ns};
        nanosleep(&ts, NULL);
        raft_tick(l->raft);
        while (raft_has_ready(l->raft) && carry_out(l, now_ns(l)))
            ;
    }
    return 0;
}

int loop_start(const struct loop_config *cfg, struct loop **out)
{
    struct loop *l = calloc(1, sizeof *l);
    if (!l)
        return LKV_ENOMEM;
    l->cfg = *cfg;
    const struct recover_result *rec = cfg->rec;
    l->self = ident_member_id(cfg->self);
    l->cluster_id = rec->meta.cluster_id;
    l->wal = rec->wal;
    l->applied = rec->applied;
    l->applied_term = rec->applied == rec->snap_index ? rec->snap_term : 0;
    if (rec->applied > rec->snap_index)
        wal_term_of(l->wal, rec->applied, &l->applied_term);
    if (rec->applied_conf.n)
        l->applied_conf.len = raft_membership_encode(&rec->applied_conf, l->applied_conf.bytes,
                                                     sizeof l->applied_conf.bytes);
    int rc = make_core(l, rec);
    if (rc != 0)
        goto err_after_alloc;
    struct checkpoint_config ccfg = {.dir = cfg->dir, .io = cfg->io, .map = cfg->map,
                                     .wal = l->wal, .checkpoint_bytes = cfg->checkpoint_bytes,
                                     .snap_index = rec->snap_index, .snap_term = rec->snap_term,
                                     .stats = cfg->stats};
    rc = LKV_ENOMEM;
    l->ckpt = checkpoint_new(&ccfg);
    if (!l->ckpt)
        goto err_after_core;
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->wake, NULL);
    pthread_mutex_init(&l->view_lock, NULL);
    atomic_init(&l->pub_applied, l->applied);
    publish_log(l);
    if (l->cfg.transport.set_peers)
        l->cfg.transport.set_peers(l->cfg.transport.ctx, raft_membership_current(l->raft),
                                   l->self);
    if ((rc = settle_start(l)) != 0)
        goto err_after_sync;
    publish_view(l);
    l->next_tick_ns = now_ns(l) + l->tick_ns;
    rc = LKV_ENOMEM;
    if (pthread_create(&l->thread, NULL, loop_main, l) != 0)
        goto err_after_sync;
    *out = l;
    return 0;

err_after_sync:
    pthread_mutex_destroy(&l->view_lock);
    pthread_cond_destroy(&l->wake);
    pthread_mutex_destroy(&l->lock);
    checkpoint_free(l->ckpt);
err_after_core:
    raft_free(l->raft);
err_after_alloc:
    free(l);
    return rc;
}

int loop_stop(struct loop *l)
{
    pthread_mutex_lock(&l->lock);
    l->stopping = true;
    struct store_read *reads = l->r_head;
    struct store_op *ops = l->op_head;
    l->r_head = l->r_tail = NULL;
    l->op_head = NULL;
    pthread_mutex_unlock(&l->lock);
    complete_reads(reads, LKV_ESHUTDOWN);
    complete_ops(ops, LKV_ESHUTDOWN);
    signal_loop(l);
    pthread_join(l->thread, NULL);
    /* writes still queued (taken after the last turn) never reached the core */
    pthread_mutex_lock(&l->lock);
    struct store_req *reqs = l->q_head;
    l->q_head = l->q_tail = NULL;
    struct inbox_msgs *m = l->m_head;
    l->m_head = l->m_tail = NULL;
    pthread_mutex_unlock(&l->lock);
    complete_reqs(reqs, LKV_ESHUTDOWN);
    while (m) {
        struct inbox_msgs *next = m->next;
        tp_batch_free(&m->b);
        free(m);
        m = next;
    }
    return atomic_load(&l->failed);
}

void loop_free(struct loop *l)
{
    while (l->m_head) { /* batches delivered after the loop stopped */
        struct inbox_msgs *next = l->m_head->next;
        tp_batch_free(&l->m_head->b);
        free(l->m_head);
        l->m_head = next;
    }
    checkpoint_free(l->ckpt);
    raft_free(l->raft);
    pthread_mutex_destroy(&l->view_lock);
    pthread_cond_destroy(&l->wake);
    pthread_mutex_destroy(&l->lock);
    free(l->w);
    free(l->rb);
    free(l->entries);
    free(l->iov);
    free(l);
}

/* ---- queries from any thread ---- */

int loop_failed(const struct loop *l)
{
    return atomic_load(&l->failed);
}

void loop_gauges(const struct loop *l, struct stats_gauges *g)
{
    g->log_bytes = atomic_load(&l->pub_log_bytes);
    g->last_index = atomic_load(&l->pub_last_index);
    g->applied_index = atomic_load(&l->pub_applied);
    g->commit_index = atomic_load(&l->pub_commit);
    g->durable_index = atomic_load(&l->pub_durable);
    if (g->commit_index < g->applied_index)
        g->commit_index = g->applied_index;
}

bool loop_reads_local(const struct loop *l)
{
    return atomic_load(&l->reads_local);
}

static struct view snapshot_view(const struct loop *l)
{
    struct loop *m = (struct loop *)l; /* the lock, not the state, changes */
    pthread_mutex_lock(&m->view_lock);
    struct view v = l->view;
    pthread_mutex_unlock(&m->view_lock);
    /* The indexes as of the last write answered (the view may be a turn
     * older); applied first: commit is stored before it, so never below. */
    v.st.applied = atomic_load(&l->pub_applied);
    uint64_t commit = atomic_load(&l->pub_commit);
    if (commit > v.st.commit)
        v.st.commit = commit;
    return v;
}

enum raft_role loop_leader(const struct loop *l, char *addr, size_t len)
{
    struct loop *m = (struct loop *)l;
    pthread_mutex_lock(&m->view_lock);
    enum raft_role role = l->view.role;
    const struct raft_member *ld = l->view.leader
                                       ? raft_membership_find(&l->view.members, l->view.leader)
                                       : NULL;
    snprintf(addr, len, "%s", ld ? ld->addr : "");
    pthread_mutex_unlock(&m->view_lock);
    return role;
}

bool loop_accepts(const struct loop *l, const struct tp_header *h)
{
    if (h->to != l->self || (l->cluster_id && h->cluster_id != l->cluster_id))
        return false;
    struct loop *m = (struct loop *)l;
    pthread_mutex_lock(&m->view_lock);
    bool ok = l->view.members.n == 0 || raft_membership_find(&l->view.members, h->from);
    pthread_mutex_unlock(&m->view_lock);
    return ok;
}

raft_id loop_member_id(const struct loop *l, const char *addr)
{
    raft_id id = ident_member_id(addr);
    struct loop *m = (struct loop *)l;
    pthread_mutex_lock(&m->view_lock);
    bool member = raft_membership_find(&l->view.members, id) != NULL;
    pthread_mutex_unlock(&m->view_lock);
    return member ? id : RAFT_NONE;
}

/* ---- rendering ---- */

static void json_addr(struct buf *out, const struct view *v, raft_id id)
{
    const struct raft_member *m = id ? raft_membership_find(&v->members, id) : NULL;
    if (m)
        buf_printf(out, "\"%s\"", m->addr);
    else
        buf_printf(out, "null");
}

static const char *progress_state_name(uint8_t s)
{
    switch (s) {
    case RAFT_PROGRESS_PROBE: return "probe";
    case RAFT_PROGRESS_REPLICATE: return "replicate";
    default: return "snapshot";
    }
}

int loop_render_info(const struct loop *l, struct buf *out)
{
    struct view v = snapshot_view(l);
    buf_printf(out, "{\"id\":\"%s\",\"role\":\"%s\",\"term\":%" PRIu64 ",\"leader\":", l->cfg.self,
               v.role == RAFT_PRE_CANDIDATE ? "candidate" : raft_role_name(v.role), v.term);
    json_addr(out, &v, v.leader);
    buf_printf(out, ",\"votedFor\":");
    json_addr(out, &v, v.vote);
    buf_printf(out, ",\"peers\":[");
    bool first = true;
    for (size_t i = 0; i < v.members.n; i++) {
        if (v.members.m[i].id == l->self)
            continue;
        buf_printf(out, "%s\"%s\"", first ? "" : ",", v.members.m[i].addr);
        first = false;
    }
    buf_printf(out, "],\"commitIndex\":%" PRIu64 ",\"appliedIndex\":%" PRIu64
                    ",\"lastIndex\":%" PRIu64 ",\"snapshotIndex\":%" PRIu64,
               v.st.commit, v.st.applied, v.st.last_index, v.snapshot_index);
    if (v.role == RAFT_LEADER) {
        buf_printf(out, ",\"followers\":[");
        for (size_t i = 0; i < v.st.n_peers; i++) {
            const struct raft_peer_status *p = &v.st.peers[i];
            buf_printf(out, "%s{\"id\":", i ? "," : "");
            json_addr(out, &v, p->id);
            buf_printf(out, ",\"matchIndex\":%" PRIu64 ",\"nextIndex\":%" PRIu64
                            ",\"lag\":%" PRIu64 ",\"state\":\"%s\",\"active\":%s"
                            ",\"needsSnapshot\":%s}",
                       p->match, p->next, v.st.last_index - p->match,
                       progress_state_name(p->state), p->recent_active ? "true" : "false",
                       v.needs_snapshot[i] ? "true" : "false");
        }
        buf_printf(out, "]");
    }
    buf_printf(out, "}\n");
    return out->failed ? LKV_ENOMEM : 0;
}

int loop_render_members(const struct loop *l, struct buf *out)
{
    struct view v = snapshot_view(l);
    buf_printf(out, "{\"members\":[");
    for (size_t i = 0; i < v.members.n; i++) {
        const struct raft_member *m = &v.members.m[i];
        buf_printf(out, "%s{\"id\":\"%s\",\"voter\":%s}", i ? "," : "", m->addr,
                   (m->flags & (RAFT_VOTER_IN | RAFT_VOTER_OUT)) ? "true" : "false");
    }
    buf_printf(out, "],\"leader\":");
    json_addr(out, &v, v.leader);
    buf_printf(out, ",\"joint\":%s}\n", raft_membership_joint(&v.members) ? "true" : "false");
    return out->failed ? LKV_ENOMEM : 0;
}

static void json_hist(struct buf *out, const char *name, const struct hist *h)
{
    struct hist_summary s;
    hist_summarize(h, &s);
    buf_printf(out, "\"%s\":{\"count\":%" PRIu64 ",\"p50_us\":%" PRIu64 ",\"p99_us\":%" PRIu64
                    ",\"max_us\":%" PRIu64 "}",
               name, s.count, s.p50, s.p99, s.max);
}

int loop_render_stats_json(const struct loop *l, struct buf *out)
{
    struct view v = snapshot_view(l);
    buf_printf(out, "\"raft\":{\"role\":\"%s\",\"term\":%" PRIu64 ",\"leader\":",
               raft_role_name(v.role), v.term);
    json_addr(out, &v, v.leader);
    buf_printf(out, ",\"commit_index\":%" PRIu64 ",\"applied_index\":%" PRIu64
                    ",\"elections_started\":%" PRIu64 ",\"elections_won\":%" PRIu64
                    ",\"leader_changes\":%" PRIu64 ",",
               v.st.commit, v.st.applied, v.elections_started, v.elections_won,
               v.leader_changes);
    json_hist(out, "commit_latency", &l->commit_us);
    buf_printf(out, ",");
    json_hist(out, "append_latency", &l->append_us);
    for (int dir = 0; dir < 2; dir++) {
        buf_printf(out, ",\"messages_%s\":{", dir ? "received" : "sent");
        for (int t = 1; t < RAFT_MSG__COUNT; t++)
            buf_printf(out, "%s\"%s\":%" PRIu64, t > 1 ? "," : "", raft_msg_type_name(t),
                       dir ? v.recv_by_type[t] : v.sent_by_type[t]);
        buf_printf(out, "}");
    }
    buf_printf(out, ",\"followers\":[");
    for (size_t i = 0; v.role == RAFT_LEADER && i < v.st.n_peers; i++) {
        const struct raft_peer_status *p = &v.st.peers[i];
        buf_printf(out, "%s{\"id\":", i ? "," : "");
        json_addr(out, &v, p->id);
        buf_printf(out, ",\"match_index\":%" PRIu64 ",\"lag\":%" PRIu64 "}", p->match,
                   v.st.last_index - p->match);
    }
    buf_printf(out, "]}");
    return out->failed ? LKV_ENOMEM : 0;
}

int loop_render_stats_prom(const struct loop *l, struct buf *out)
{
    struct view v = snapshot_view(l);
    buf_printf(out, "# HELP lkv_raft_role 1 for the role this node has.\n# TYPE lkv_raft_role gauge\n");
    for (int r = RAFT_FOLLOWER; r <= RAFT_LEADER; r++)
        buf_printf(out, "lkv_raft_role{role=\"%s\"} %d\n", raft_role_name((enum raft_role)r),
                   v.role == (enum raft_role)r);
    buf_printf(out,
               "# HELP lkv_raft_term Current term.\n# TYPE lkv_raft_term gauge\nlkv_raft_term %" PRIu64
               "\n# HELP lkv_raft_commit_index Last committed log index.\n# TYPE lkv_raft_commit_index "
               "gauge\nlkv_raft_commit_index %" PRIu64
               "\n# HELP lkv_raft_applied_index Last log index applied to the map.\n# TYPE "
               "lkv_raft_applied_index gauge\nlkv_raft_applied_index %" PRIu64
               "\n# HELP lkv_raft_elections_started_total Campaigns started (pre-votes "
               "included).\n# TYPE lkv_raft_elections_started_total counter\n"
               "lkv_raft_elections_started_total %" PRIu64
               "\n# HELP lkv_raft_elections_won_total Elections won.\n# TYPE "
               "lkv_raft_elections_won_total counter\nlkv_raft_elections_won_total %" PRIu64
               "\n# HELP lkv_raft_leader_changes_total Times a different leader became known.\n"
               "# TYPE lkv_raft_leader_changes_total counter\nlkv_raft_leader_changes_total %" PRIu64
               "\n",
               v.term, v.st.commit, v.st.applied, v.elections_started,
               v.elections_won, v.leader_changes);
    for (int dir = 0; dir < 2; dir++) {
        const char *name = dir ? "lkv_raft_messages_received_total" : "lkv_raft_messages_sent_total";
        buf_printf(out, "# HELP %s Raft messages by type.\n# TYPE %s counter\n", name, name);
        for (int t = 1; t < RAFT_MSG__COUNT; t++)
            buf_printf(out, "%s{type=\"%s\"} %" PRIu64 "\n", name, raft_msg_type_name(t),
                       dir ? v.recv_by_type[t] : v.sent_by_type[t]);
    }
    buf_printf(out, "# HELP lkv_raft_follower_lag Entries the follower is behind the leader's "
                    "log.\n# TYPE lkv_raft_follower_lag gauge\n");
    for (size_t i = 0; v.role == RAFT_LEADER && i < v.st.n_peers; i++) {
        const struct raft_member *m = raft_membership_find(&v.members, v.st.peers[i].id);
        buf_printf(out, "lkv_raft_follower_lag{follower=\"%s\"} %" PRIu64 "\n",
                   m ? m->addr : "?", v.st.last_index - v.st.peers[i].match);
    }
    buf_printf(out, "# HELP lkv_raft_follower_match_index Last index known to match on the "
                    "follower.\n# TYPE lkv_raft_follower_match_index gauge\n");
    for (size_t i = 0; v.role == RAFT_LEADER && i < v.st.n_peers; i++) {
        const struct raft_member *m = raft_membership_find(&v.members, v.st.peers[i].id);
        buf_printf(out, "lkv_raft_follower_match_index{follower=\"%s\"} %" PRIu64 "\n",
                   m ? m->addr : "?", v.st.peers[i].match);
    }
    struct hist_summary s;
    hist_summarize(&l->commit_us, &s);
    buf_printf(out, "# HELP lkv_raft_commit_latency_seconds Proposal to commit on the leader "
                    "(p50, p99).\n# TYPE lkv_raft_commit_latency_seconds gauge\n"
                    "lkv_raft_commit_latency_seconds{quantile=\"0.5\"} %" PRIu64 ".%06" PRIu64
                    "\nlkv_raft_commit_latency_seconds{quantile=\"0.99\"} %" PRIu64 ".%06" PRIu64
                    "\n",
               s.p50 / 1000000, s.p50 % 1000000, s.p99 / 1000000, s.p99 % 1000000);
    return out->failed ? LKV_ENOMEM : 0;
}
