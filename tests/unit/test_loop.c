/* Unit tests for node/loop: three loop threads in one process, each with its
 * own data directory, map and Raft core, joined by an in-process network
 * behind the transport interface (messages handed straight to the other
 * loop's inbox; links can be cut). They elect a leader, replicate writes
 * into every map, refuse writes and reads on followers, and move on when the
 * leader is cut off. */
#include <criterion/criterion.h>

#include "kv/kv_cmd.h"
#include "node/ident.h"
#include "node/loop.h"
#include "transport/codec.h"
#include "util/clock.h"
#include "util/err.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N 3

struct node {
    char dir[64];
    char addr[32];
    struct kv_map *map;
    struct apply *apply;
    struct recover_result rec;
    struct stats *stats;
    struct loop *loop;
};

static struct node nodes[N];

/* A clock the test moves: the loops' time (ticks, timeouts) comes only
 * from it. Starts at 1 s; frozen until a test advances it. */
static atomic_uint_fast64_t fake_now = 1000000000u;
static atomic_bool use_fake_clock;
static atomic_bool fake_released; /* from then on it runs, far ahead, with real time */

static uint64_t fake_now_ns(void *ctx)
{
    (void)ctx;
    if (atomic_load(&fake_released))
        return clock_now_ns() + 1000000000000ull;
    return atomic_load(&fake_now);
}

static const struct clock_src fake_clock = {.now_ns = fake_now_ns};
static atomic_bool cut[N][N]; /* cut[a][b]: a's messages to b are lost */

static int index_of(raft_id id)
{
    for (int i = 0; i < N; i++) {
        if (ident_member_id(nodes[i].addr) == id)
            return i;
    }
    return -1;
}

/* The fake network: a message goes straight into the recipient's inbox,
 * as a batch of one, unless the link is cut. */
static void fake_send(void *ctx, const struct raft_msg *m)
{
    int from = (int)(intptr_t)ctx, to = index_of(m->to);
    if (to < 0 || atomic_load(&cut[from][to]) || !nodes[to].loop)
        return;
    struct tp_batch b = {.hdr = {.from = m->from, .to = m->to}, .n = 1};
    b.msgs = calloc(1, sizeof *b.msgs);
    cr_assert_not_null(b.msgs);
    cr_assert_eq(tp_msg_copy(&b.msgs[0], m), 0);
    loop_deliver(nodes[to].loop, &b);
}

static int fake_set_peers(void *ctx, const struct raft_membership *c, raft_id self)
{
    (void)ctx;
    (void)c;
    (void)self;
    return 0;
}

static void start_node(int i)
{
    struct node *n = &nodes[i];
    snprintf(n->dir, sizeof n->dir, "/tmp/test_loop.XXXXXX");
    cr_assert_not_null(mkdtemp(n->dir));
    snprintf(n->addr, sizeof n->addr, "node-%d:7000", i);
    char peers[N - 1][128];
    int k = 0;
    for (int j = 0; j < N; j++) {
        if (j != i)
            snprintf(peers[k++], sizeof peers[0], "node-%d:7000", j);
    }
    n->map = kv_map_new();
    n->apply = apply_new(n->map);
    n->stats = stats_new();
    char err[512];
    struct recover_config rc = {.dir = n->dir, .io = &io_libc, .map = n->map, .apply = n->apply,
                                .stats = n->stats, .self = n->addr,
                                .peers = (const char(*)[128])peers, .npeers = N - 1,
                                .retain_entries = 100, .segment_bytes = 1u << 20};
    cr_assert_eq(recover_load(&rc, &n->rec, err, sizeof err), 0, "%s", err);
    struct loop_config lc = {.dir = n->dir, .io = &io_libc, .map = n->map, .apply = n->apply,
                             .rec = &n->rec, .self = n->addr, .checkpoint_bytes = 64u << 20,
                             .election_timeout_ms = 60, .heartbeat_ms = 10,
                             .transport = {.ctx = (void *)(intptr_t)i, .send = fake_send,
                                           .set_peers = fake_set_peers},
                             .clock = atomic_load(&use_fake_clock) ? &fake_clock : NULL,
                             .stats = n->stats};
    cr_assert_eq(loop_start(&lc, &n->loop), 0);
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        if (de->d_name[0] != '.')
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void stop_all(void)
{
    atomic_store(&fake_released, true); /* a failed test must not leave time frozen */
    /* every loop stops before any is freed: they deliver to each other */
    for (int i = 0; i < N; i++)
        loop_stop(nodes[i].loop);
    for (int i = 0; i < N; i++) {
        struct loop *l = nodes[i].loop;
        nodes[i].loop = NULL;
        loop_free(l);
        wal_close(nodes[i].rec.wal);
        recover_result_free(&nodes[i].rec);
        apply_free(nodes[i].apply);
        kv_map_free(nodes[i].map);
        stats_free(nodes[i].stats);
        rm_dir(nodes[i].dir);
    }
}

static void start_nodes(bool fake)
{
    /* every flag set afresh: under TSan all tests share one process */
    atomic_store(&use_fake_clock, fake);
    atomic_store(&fake_released, false);
    atomic_store(&fake_now, 1000000000u);
    memset(cut, 0, sizeof cut);
    for (int i = 0; i < N; i++)
        start_node(i);
}

static void start_all(void)
{
    start_nodes(false);
}

TestSuite(loop, .init = start_all, .fini = stop_all);

static void start_all_on_fake_clock(void)
{
    start_nodes(true);
}

static void pause_ms(unsigned ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* The node that says it leads, waited for (bounded); -1 on timeout. */
static int wait_leader(int not)
{
    for (int k = 0; k < 1000; k++) {
        for (int i = 0; i < N; i++) {
            char a[128];
            if (i != not && loop_leader(nodes[i].loop, a, sizeof a) == RAFT_LEADER)
                return i;
        }
        pause_ms(5);
    }
    return -1;
}

struct waitreq {
    struct store_req req;
    struct store_read rd;
    atomic_int status; /* 1 = pending */
};

static void write_done(struct store_req *r, int status)
{
    struct waitreq *w = (struct waitreq *)((char *)r - offsetof(struct waitreq, req));
    atomic_store(&w->status, status);
}

static void read_done(struct store_read *r, int status)
{
    struct waitreq *w = (struct waitreq *)((char *)r - offsetof(struct waitreq, rd));
    atomic_store(&w->status, status);
}

static int wait_status(struct waitreq *w)
{
    for (int k = 0; k < 2000 && atomic_load(&w->status) == 1; k++)
        pause_ms(5);
    return atomic_load(&w->status);
}

/* The request lives on the heap: one still pending when the wait gives up
 * (status 1, the test fails) is left to the loop rather than freed under it. */
static struct waitreq *new_waitreq(void)
{
    struct waitreq *w = calloc(1, sizeof *w);
    cr_assert_not_null(w);
    w->req.done_cb = write_done;
    w->rd.done_cb = read_done;
    atomic_init(&w->status, 1);
    return w;
}

static int finish(struct waitreq *w)
{
    int st = wait_status(w);
    if (st != 1)
        free(w);
    return st;
}

static int put(int i, const char *key, const char *value)
{
    struct waitreq *w = new_waitreq();
    size_t klen = strlen(key), vlen = strlen(value);
    w->req.cmd = lkv_blob_new(kv_cmd_payload_len(KV_OP_SET, klen, vlen));
    kv_cmd_encode(w->req.cmd->data, w->req.cmd->len, KV_OP_SET, key, klen, value, vlen);
    loop_submit(nodes[i].loop, &w->req);
    return finish(w);
}

static int read_on(int i)
{
    struct waitreq *w = new_waitreq();
    loop_read(nodes[i].loop, &w->rd);
    return finish(w);
}

static bool has(int i, const char *key, const char *value)
{
    struct kv_entry *e = kv_map_get(nodes[i].map, key, strlen(key));
    bool ok = e && kv_entry_vlen(e) == strlen(value) &&
              memcmp(kv_entry_value(e), value, strlen(value)) == 0;
    if (e)
        kv_entry_unref(e);
    return ok;
}

static bool eventually_everywhere(const char *key, const char *value)
{
    for (int k = 0; k < 1000; k++) {
        bool all = true;
        for (int i = 0; i < N; i++)
            all = all && has(i, key, value);
        if (all)
            return true;
        pause_ms(5);
    }
    return false;
}

Test(loop, three_nodes_elect_one_leader_and_replicate_a_write_to_every_map)
{
    int ld = wait_leader(-1);
    cr_assert_geq(ld, 0, "no leader");
    cr_assert_eq(put(ld, "k", "v1"), 0);
    cr_assert(has(ld, "k", "v1"), "acknowledged but not applied on the leader");
    cr_assert(eventually_everywhere("k", "v1"));
    char a[128];
    int followers = 0;
    for (int i = 0; i < N; i++) {
        enum raft_role r = loop_leader(nodes[i].loop, a, sizeof a);
        followers += r == RAFT_FOLLOWER && strcmp(a, nodes[ld].addr) == 0;
    }
    cr_assert_eq(followers, N - 1, "not every follower names the leader");
}

Test(loop, followers_refuse_writes_and_reads_the_leader_confirms_them)
{
    int ld = wait_leader(-1);
    cr_assert_geq(ld, 0);
    int f = (ld + 1) % N;
    cr_assert_eq(put(f, "x", "y"), LKV_ENOTLEADER);
    cr_assert_eq(read_on(f), LKV_ENOTLEADER);
    cr_assert_eq(read_on(ld), 0);
}

Test(loop, leader_cut_off_is_replaced_and_its_writes_do_not_succeed)
{
    int ld = wait_leader(-1);
    cr_assert_geq(ld, 0);
    cr_assert_eq(put(ld, "a", "1"), 0);
    for (int j = 0; j < N; j++) {
        atomic_store(&cut[ld][j], true);
        atomic_store(&cut[j][ld], true);
    }
    int st = put(ld, "b", "2"); /* no majority: never a success */
    cr_assert(st == LKV_ELEADERLOST || st == LKV_ENOTLEADER, "status %d", st);
    int nl = wait_leader(ld);
    cr_assert_geq(nl, 0, "the majority did not elect a new leader");
    cr_assert_eq(put(nl, "c", "3"), 0);
    cr_assert(has(nl, "a", "1"), "an acknowledged write was lost in the failover");
}

/* Time reaches the loop only through its clock: with the clock frozen no
 * election timeout ever passes, however long the test waits; moving the
 * clock on is what makes one node campaign and win. */
/* Its own suite: Criterion runs a suite's .init before a test's own, so a
 * test-level .init would start a second set of loops over the first. */
TestSuite(loop_clock, .init = start_all_on_fake_clock, .fini = stop_all);

Test(loop_clock, elections_follow_the_clock_the_loop_is_given)
{
    for (int k = 0; k < 40; k++) {
        pause_ms(5);
        for (int i = 0; i < N; i++) {
            char a[128];
            cr_assert_neq(loop_leader(nodes[i].loop, a, sizeof a), RAFT_LEADER,
                          "a leader was elected while no time passed");
        }
    }
    int ld = -1;
    for (int k = 0; k < 2000 && ld < 0; k++) {
        atomic_fetch_add(&fake_now, 2000000u); /* 2 ms of fake time per step */
        pause_ms(1);
        for (int i = 0; i < N && ld < 0; i++) {
            char a[128];
            if (loop_leader(nodes[i].loop, a, sizeof a) == RAFT_LEADER)
                ld = i;
        }
    }
    cr_assert_geq(ld, 0, "no leader once time moved");
    atomic_store(&fake_released, true); /* so that stopping (timeouts) can proceed */
}
