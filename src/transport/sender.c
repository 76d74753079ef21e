#include "transport/sender.h"

#include "transport/codec.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* After a failed POST the peer's thread waits before the next one, so a
 * dead peer is not hammered; the wait doubles up to the maximum. */
#define BACKOFF_MIN_MS 20
#define BACKOFF_MAX_MS 500

struct qmsg {
    struct raft_msg m;
    size_t bytes;
};

struct peer {
    struct sender *s;
    raft_id id;
    char addr[RAFT_ADDR_MAX];
    char url[RAFT_ADDR_MAX + 16];
    pthread_t thread;
    atomic_bool stop;
    bool claimed; /* set_peers scratch; loop thread only */

    pthread_mutex_t lock; /* guards q, qn, qbytes, st */
    pthread_cond_t wake;
    struct qmsg *q;
    size_t qn, qcap, qbytes;
    struct sender_peer_stats st;
};

struct sender {
    struct sender_config cfg;
    char secret_header[300];
    pthread_mutex_t lock; /* guards peers[] against stats readers; changed by the loop thread only */
    struct peer *peers[RAFT_MAX_MEMBERS];
    size_t npeers;
    atomic_uint_fast64_t by_type[RAFT_MSG__COUNT];
};

static bool heartbeat_class(uint8_t type)
{
    return type == RAFT_MSG_HEARTBEAT || type == RAFT_MSG_HEARTBEAT_RESP;
}

static void queue_remove_at(struct peer *p, size_t i)
{
    p->qbytes -= p->q[i].bytes;
    tp_msg_release(&p->q[i].m);
    memmove(&p->q[i], &p->q[i + 1], (p->qn - i - 1) * sizeof *p->q);
    p->qn--;
}

/* Makes room for `bytes` more: the oldest heartbeat-class message goes
 * first (a newer round supersedes it), then the oldest of any kind. */
static void make_room_locked(struct peer *p, size_t bytes)
{
    const struct sender_config *c = &p->s->cfg;
    while (p->qn > 0 && (p->qn >= c->max_queue_msgs || p->qbytes + bytes > c->max_queue_bytes)) {
        size_t victim = 0;
        for (size_t i = 0; i < p->qn; i++) {
            if (heartbeat_class(p->q[i].m.type)) {
                victim = i;
                break;
            }
        }
        queue_remove_at(p, victim);
        p->st.msgs_dropped++;
    }
}

static void enqueue(struct peer *p, const struct raft_msg *m)
{
    struct qmsg qm = {.bytes = tp_encoded_msg_size(m)};
    if (tp_msg_copy(&qm.m, m) != 0)
        return;
    pthread_mutex_lock(&p->lock);
    if (heartbeat_class(m->type)) {
        /* Only the newest round matters: it confirms every older one. */
        for (size_t i = 0; i < p->qn; i++) {
            if (p->q[i].m.type == m->type) {
                queue_remove_at(p, i);
                break;
            }
        }
    }
    make_room_locked(p, qm.bytes);
    if (p->qn == p->qcap) {
        size_t cap = p->qcap ? p->qcap * 2 : 64;
        struct qmsg *nq = realloc(p->q, cap * sizeof *nq);
        if (!nq) {
            pthread_mutex_unlock(&p->lock);
            tp_msg_release(&qm.m);
            return;
        }
        p->q = nq;
        p->qcap = cap;
    }
    p->q[p->qn++] = qm;
    p->qbytes += qm.bytes;
    p->st.queued = p->qn;
    pthread_mutex_unlock(&p->lock);
    pthread_cond_signal(&p->wake);
}

static struct peer *find_peer(struct sender *s, raft_id id)
{
    for (size_t i = 0; i < s->npeers; i++) {
        if (s->peers[i]->id == id)
            return s->peers[i];
    }
    return NULL;
}

static void send_cb(void *ctx, const struct raft_msg *m)
{
    struct peer *p = find_peer(ctx, m->to);
    if (p)
        enqueue(p, m);
}

/* Takes the oldest messages, up to a batch's worth (at least one). Waits
 * while there are none; returns 0 once stopping. */
static size_t take_batch(struct peer *p, struct qmsg **out)
{
    pthread_mutex_lock(&p->lock);
    while (p->qn == 0 && !atomic_load(&p->stop))
        pthread_cond_wait(&p->wake, &p->lock);
    size_t k = 0, bytes = 0;
    if (!atomic_load(&p->stop)) {
        while (k < p->qn && (k == 0 || bytes + p->q[k].bytes <= p->s->cfg.max_batch_bytes))
            bytes += p->q[k++].bytes;
    }
    struct qmsg *b = k ? malloc(k * sizeof *b) : NULL;
    if (b) {
        memcpy(b, p->q, k * sizeof *b);
        memmove(p->q, p->q + k, (p->qn - k) * sizeof *p->q);
        p->qn -= k;
        p->qbytes -= bytes;
        p->st.queued = p->qn;
    } else {
        k = 0;
    }
    pthread_mutex_unlock(&p->lock);
    *out = b;
    return k;
}

static size_t discard_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
    (void)ptr;
    (void)arg;
    return size * nmemb;
}

/* Lets sender_free abandon a POST in flight at once. */
static int progress_cb(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a;
    (void)b;
    (void)c;
    (void)d;
    struct peer *p = arg;
    return atomic_load(&p->stop) ? 1 : 0;
}

static CURL *make_handle(struct peer *p, struct curl_slist **headers)
{
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    const struct sender_config *c = &p->s->cfg;
    *headers = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    /* curl would wait for a 100-continue on larger bodies: one round trip lost */
    *headers = curl_slist_append(*headers, "Expect:");
    if (p->s->secret_header[0])
        *headers = curl_slist_append(*headers, p->s->secret_header);
    curl_easy_setopt(h, CURLOPT_URL, p->url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, *headers);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never through an http_proxy from the environment */
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->request_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_cb);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_cb);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, p);
    return h;
}

static void wait_backoff(struct peer *p, unsigned ms)
{
    uint64_t deadline = clock_now_ns() + (uint64_t)ms * 1000000u;
    pthread_mutex_lock(&p->lock);
    for (uint64_t now = clock_now_ns(); !atomic_load(&p->stop) && now < deadline;
         now = clock_now_ns()) {
        uint64_t left = deadline - now;
        struct timespec ts = clock_realtime_after((long)(left < 999999999u ? left : 999999999u));
        pthread_cond_timedwait(&p->wake, &p->lock, &ts);
    }
    pthread_mutex_unlock(&p->lock);
}

/* One POST of the batch; true when the peer took it (204). */
static bool post(struct peer *p, CURL *h, struct buf *body, const char **why)
{
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->data);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    /* A large entry gets the time to cross a slowish link (10 MB/s); the
     * short base timeout is for the heartbeats that queue behind it. */
    long ms = (long)p->s->cfg.request_timeout_ms + (long)(body->len / 10000);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, ms);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (rc != CURLE_OK) {
        *why = curl_easy_strerror(rc);
        return false;
    }
    if (code != 204) {
        *why = code == 403 ? "refused: not a member of that cluster (403)" : "unexpected status";
        return false;
    }
    return true;
}

static void *peer_main(void *arg)
{
    struct peer *p = arg;
    struct sender *s = p->s;
    struct curl_slist *headers = NULL;
    CURL *h = make_handle(p, &headers);
    struct buf body = {0};
    unsigned backoff = 0;
    struct tp_header hdr = {.cluster_id = s->cfg.cluster_id, .from = s->cfg.self, .to = p->id};
    for (;;) {
        struct qmsg *batch;
        size_t k = take_batch(p, &batch);
        if (k == 0) {
            if (atomic_load(&p->stop))
                break;
            continue;
        }
        body.len = 0;
        body.failed = 0;
        int rc;
        struct raft_msg *msgs = malloc(k * sizeof *msgs);
        if (msgs) {
            for (size_t i = 0; i < k; i++)
                msgs[i] = batch[i].m;
            rc = tp_encode(&hdr, msgs, k, &body);
            free(msgs);
        } else {
            rc = LKV_ENOMEM;
        }
        const char *why = lkv_strerror(rc);
        bool ok = rc == 0 && h && post(p, h, &body, &why);
        pthread_mutex_lock(&p->lock);
        p->st.posts++;
        if (ok) {
            p->st.msgs_sent += k;
            p->st.bytes_sent += body.len;
        } else {
            p->st.post_failures++;
        }
        pthread_mutex_unlock(&p->lock);
        for (size_t i = 0; i < k; i++) {
            if (ok)
                atomic_fetch_add(&s->by_type[batch[i].m.type], 1);
            tp_msg_release(&batch[i].m);
        }
        free(batch);
        if (ok) {
            if (backoff)
                LOG_INFO("event=peer_reachable peer=%s", p->addr);
            backoff = 0;
            continue;
        }
        if (atomic_load(&p->stop))
            break;
        if (!backoff)
            LOG_WARN("event=peer_unreachable peer=%s error=\"%s\"", p->addr, why);
        if (s->cfg.unreachable_cb)
            s->cfg.unreachable_cb(s->cfg.cb_arg, p->id);
        backoff = backoff ? (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2)
                          : BACKOFF_MIN_MS;
        wait_backoff(p, backoff);
    }
    buf_free(&body);
    if (h)
        curl_easy_cleanup(h);
    curl_slist_free_all(headers);
    return NULL;
}

static struct peer *peer_start(struct sender *s, const struct raft_member *m)
{
    struct peer *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->s = s;
    p->id = m->id;
    snprintf(p->addr, sizeof p->addr, "%s", m->addr);
    snprintf(p->url, sizeof p->url, "http://%s/raft", m->addr);
    p->st.id = m->id;
    snprintf(p->st.addr, sizeof p->st.addr, "%s", m->addr);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (pthread_create(&p->thread, NULL, peer_main, p) != 0) {
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        free(p);
        return NULL;
    }
    return p;
}

static void peer_stop(struct peer *p)
{
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, true);
    pthread_mutex_unlock(&p->lock);
    pthread_cond_broadcast(&p->wake);
    pthread_join(p->thread, NULL);
    while (p->qn > 0)
        queue_remove_at(p, p->qn - 1);
    free(p->q);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static int set_peers_cb(void *ctx, const struct raft_membership *conf, raft_id self)
{
    struct sender *s = ctx;
    struct peer *keep[RAFT_MAX_MEMBERS];
    size_t n = 0;
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < conf->n; i++) {
        const struct raft_member *m = &conf->m[i];
        if (m->id == self)
            continue;
        struct peer *p = find_peer(s, m->id);
        if (p && strcmp(p->addr, m->addr) == 0) {
            keep[n++] = p;
            p->claimed = true; /* kept: not stopped below */
            continue;
        }
        struct peer *np = peer_start(s, m);
        if (np)
            keep[n++] = np;
        else
            rc = LKV_ENOMEM;
    }
    for (size_t i = 0; i < s->npeers; i++) {
        if (!s->peers[i]->claimed)
            peer_stop(s->peers[i]);
    }
    for (size_t i = 0; i < n; i++)
        keep[i]->claimed = false;
    memcpy(s->peers, keep, n * sizeof *keep);
    s->npeers = n;
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int sender_new(const struct sender_config *cfg, struct sender **out)
{
    struct sender *s = calloc(1, sizeof *s);
    if (!s)
        return LKV_ENOMEM;
    s->cfg = *cfg;
    s->cfg.secret = NULL;
    if (cfg->secret && cfg->secret[0])
        snprintf(s->secret_header, sizeof s->secret_header, "X-Cluster-Secret: %s", cfg->secret);
    pthread_mutex_init(&s->lock, NULL);
    *out = s;
    return 0;
}

struct transport sender_transport(struct sender *s)
{
    return (struct transport){.ctx = s, .send = send_cb, .set_peers = set_peers_cb};
}

size_t sender_stats(struct sender *s, struct sender_peer_stats *out, size_t max)
{
    pthread_mutex_lock(&s->lock);
    size_t n = 0;
    for (size_t i = 0; i < s->npeers && n < max; i++) {
        struct peer *p = s->peers[i];
        pthread_mutex_lock(&p->lock);
        out[n++] = p->st;
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

void sender_msgs_by_type(struct sender *s, uint64_t out[RAFT_MSG__COUNT])
{
    for (int i = 0; i < RAFT_MSG__COUNT; i++)
        out[i] = atomic_load(&s->by_type[i]);
}

void sender_free(struct sender *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->npeers; i++)
        peer_stop(s->peers[i]);
    s->npeers = 0;
    pthread_mutex_unlock(&s->lock);
    pthread_mutex_destroy(&s->lock);
    free(s);
}
