/* Unit tests for transport/sender against a small libmicrohttpd receiver in
 * the test process: batches arrive decoded and in order, the secret header
 * travels, a newer heartbeat replaces a queued one, a full queue drops
 * heartbeats first, and a peer nobody listens on is reported unreachable. */
#include <criterion/criterion.h>

#include "transport/codec.h"
#include "transport/sender.h"
#include "util/clock.h"
#include "util/err.h"

#include <curl/curl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the receiver ---- */

struct rx {
    struct MHD_Daemon *d;
    uint16_t port;
    pthread_mutex_t lock;
    struct raft_msg got[512];
    size_t ngot;
    char secret[64];
    atomic_bool hold;   /* answer nothing until released */
    atomic_int holding; /* requests waiting in the handler */
    atomic_int batches;
};

static struct rx RX;

struct body {
    uint8_t *p;
    size_t len;
};

static enum MHD_Result rx_cb(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version, const char *data,
                             size_t *size, void **ctx)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    struct body *b = *ctx;
    if (!b) {
        *ctx = calloc(1, sizeof *b);
        return MHD_YES;
    }
    if (*size) {
        b->p = realloc(b->p, b->len + *size);
        memcpy(b->p + b->len, data, *size);
        b->len += *size;
        *size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&RX.holding, 1);
    while (atomic_load(&RX.hold)) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    atomic_fetch_sub(&RX.holding, 1);
    const char *s = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Cluster-Secret");
    if (s)
        snprintf(RX.secret, sizeof RX.secret, "%s", s);
    struct tp_batch batch;
    unsigned status = 400;
    if (tp_decode(b->p, b->len, &batch) == 0) {
        status = 204;
        pthread_mutex_lock(&RX.lock);
        for (size_t i = 0; i < batch.n && RX.ngot < 512; i++)
            tp_msg_copy(&RX.got[RX.ngot++], &batch.msgs[i]);
        pthread_mutex_unlock(&RX.lock);
        tp_batch_free(&batch);
        atomic_fetch_add(&RX.batches, 1);
    }
    free(b->p);
    free(b);
    *ctx = NULL;
    struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static void rx_start(void)
{
    memset(&RX, 0, sizeof RX);
    pthread_mutex_init(&RX.lock, NULL);
    RX.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, rx_cb, NULL, MHD_OPTION_END);
    cr_assert_not_null(RX.d);
    RX.port = MHD_get_daemon_info(RX.d, MHD_DAEMON_INFO_BIND_PORT)->port;
}

static void rx_stop(void)
{
    atomic_store(&RX.hold, false);
    MHD_stop_daemon(RX.d);
    for (size_t i = 0; i < RX.ngot; i++)
        tp_msg_release(&RX.got[i]);
    pthread_mutex_destroy(&RX.lock);
}

static size_t rx_count(void)
{
    pthread_mutex_lock(&RX.lock);
    size_t n = RX.ngot;
    pthread_mutex_unlock(&RX.lock);
    return n;
}

/* Polls cond for up to 10 s. */
static bool eventually(bool (*cond)(void))
{
    uint64_t deadline = clock_now_ns() + 10000000000ull;
    while (!cond() && clock_now_ns() < deadline) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return cond();
}

static size_t want;
static bool got_enough(void)
{
    return rx_count() >= want;
}

static bool wait_for(size_t n, unsigned seconds)
{
    (void)seconds;
    want = n;
    return eventually(got_enough);
}

static bool one_held(void)
{
    return atomic_load(&RX.holding) == 1;
}

/* ---- the sender under test ---- */

static atomic_int unreachable;

static void unreachable_cb(void *arg, raft_id peer)
{
    (void)arg;
    (void)peer;
    atomic_fetch_add(&unreachable, 1);
}

static bool was_unreachable(void)
{
    return atomic_load(&unreachable) > 0;
}

static struct sender *S;
static struct transport T;

static void start_sender(uint16_t port, size_t max_msgs)
{
    atomic_store(&unreachable, 0);
    struct sender_config c = {.cluster_id = 77, .self = 1, .secret = "hush",
                              .connect_timeout_ms = 500, .request_timeout_ms = 5000,
                              .max_batch_bytes = 1 << 20, .max_queue_bytes = 64 << 20,
                              .max_queue_msgs = max_msgs, .unreachable_cb = unreachable_cb};
    cr_assert_eq(sender_new(&c, &S), 0);
    T = sender_transport(S);
    struct raft_membership m = {.n = 2};
    m.m[0] = (struct raft_member){.id = 1, .flags = RAFT_VOTER_IN, .addr = "127.0.0.1:1"};
    m.m[1] = (struct raft_member){.id = 2, .flags = RAFT_VOTER_IN};
    snprintf(m.m[1].addr, sizeof m.m[1].addr, "127.0.0.1:%u", port);
    cr_assert_eq(T.set_peers(T.ctx, &m, 1), 0);
}

/* The sender has nothing queued and every POST it made was answered. */
static bool quiet(void)
{
    struct sender_peer_stats st;
    return sender_stats(S, &st, 1) == 1 && st.queued == 0 &&
           st.posts == (uint64_t)atomic_load(&RX.batches) + st.post_failures;
}

static void send_one(uint8_t type, uint64_t term, uint64_t ctx)
{
    struct raft_msg m = {.type = type, .from = 1, .to = 2, .term = term, .ctx = ctx};
    T.send(T.ctx, &m);
}

static void init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

TestSuite(sender, .init = init);

Test(sender, messages_arrive_in_order_with_the_secret_and_cluster_header)
{
    rx_start();
    start_sender(RX.port, 4096);
    struct lkv_blob *b = lkv_blob_copy("payload", 7);
    struct raft_entry e = {.index = 6, .term = 2, .type = RAFT_ENTRY_COMMAND, .data = b};
    struct raft_msg app = {.type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 2, .index = 5,
                           .log_term = 2, .entries = &e, .n_entries = 1};
    T.send(T.ctx, &app);
    for (uint64_t t = 3; t < 13; t++)
        send_one(RAFT_MSG_VOTE, t, 0);
    cr_assert(wait_for(11, 10), "only %zu messages arrived", rx_count());
    cr_assert_eq(RX.got[0].type, RAFT_MSG_APPEND);
    cr_assert_eq(RX.got[0].n_entries, 1);
    cr_assert_eq(memcmp(RX.got[0].entries[0].data->data, "payload", 7), 0);
    for (size_t i = 1; i < 11; i++)
        cr_assert_eq(RX.got[i].term, i + 2, "out of order at %zu", i);
    cr_assert_str_eq(RX.secret, "hush");
    sender_free(S);
    lkv_blob_unref(b);
    rx_stop();
}

Test(sender, newer_heartbeat_replaces_a_queued_one)
{
    rx_start();
    start_sender(RX.port, 4096);
    atomic_store(&RX.hold, true);
    send_one(RAFT_MSG_VOTE, 1, 0); /* goes out at once and is held */
    cr_assert(eventually(one_held));
    for (uint64_t r = 1; r <= 5; r++)
        send_one(RAFT_MSG_HEARTBEAT, 1, r);
    atomic_store(&RX.hold, false);
    cr_assert(wait_for(2, 10));
    cr_assert(eventually(quiet));
    cr_assert_eq(rx_count(), 2, "queued heartbeats were not replaced: %zu arrived", rx_count());
    cr_assert_eq(RX.got[1].ctx, 5, "the newest round must survive");
    sender_free(S);
    rx_stop();
}

Test(sender, full_queue_drops_heartbeats_before_anything_else)
{
    rx_start();
    start_sender(RX.port, 4);
    atomic_store(&RX.hold, true);
    send_one(RAFT_MSG_VOTE, 1, 0);
    cr_assert(eventually(one_held));
    send_one(RAFT_MSG_HEARTBEAT, 1, 9);
    for (uint64_t t = 2; t <= 5; t++)
        send_one(RAFT_MSG_VOTE, t, 0); /* the fourth of these overflows the queue */
    atomic_store(&RX.hold, false);
    cr_assert(wait_for(5, 10));
    cr_assert(eventually(quiet));
    cr_assert_eq(rx_count(), 5);
    for (size_t i = 0; i < rx_count(); i++)
        cr_assert_neq(RX.got[i].type, RAFT_MSG_HEARTBEAT, "the heartbeat should have gone first");
    struct sender_peer_stats st;
    cr_assert_eq(sender_stats(S, &st, 1), 1);
    cr_assert_eq(st.msgs_dropped, 1);
    sender_free(S);
    rx_stop();
}

Test(sender, peer_nobody_listens_on_is_reported_unreachable)
{
    rx_start();
    uint16_t port = RX.port;
    rx_stop(); /* the port is now closed */
    start_sender(port, 4096);
    send_one(RAFT_MSG_HEARTBEAT, 1, 1);
    cr_assert(eventually(was_unreachable));
    struct sender_peer_stats st;
    cr_assert_eq(sender_stats(S, &st, 1), 1);
    cr_assert_gt(st.post_failures, 0);
    sender_free(S);
}
