/* Unit tests for node/apply: commands reach the map in log order, a batch
 * that cannot be applied leaves the map as it was, and recovery's prefetch
 * queue never reorders a put past a delete or a clear. */
#include "kv/kv_cmd.h"
#include "kv/kv_map.h"
#include "node/apply.h"
#include "util/err.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#define MAX_CMDS 64

/* A batch of encoded commands, as the writer hands them over. */
struct batch {
    uint8_t bytes[MAX_CMDS][64];
    struct iovec iov[MAX_CMDS];
    size_t n;
};

static void add(struct batch *b, uint8_t op, const char *key, const char *val)
{
    cr_assert_lt(b->n, MAX_CMDS);
    size_t klen = key ? strlen(key) : 0, vlen = val ? strlen(val) : 0;
    size_t len = kv_cmd_encode(b->bytes[b->n], sizeof b->bytes[b->n], op, key, klen, val, vlen);
    cr_assert_gt(len, 0);
    b->iov[b->n] = (struct iovec){b->bytes[b->n], len};
    b->n++;
}

/* The value of `key` as a string ("" when absent). */
static const char *value_of(struct kv_map *m, const char *key)
{
    static char out[64];
    struct kv_entry *e = kv_map_get(m, key, strlen(key));
    if (!e)
        return "";
    cr_assert_lt(kv_entry_vlen(e), sizeof out);
    memcpy(out, kv_entry_value(e), kv_entry_vlen(e));
    out[kv_entry_vlen(e)] = '\0';
    kv_entry_unref(e);
    return out;
}

static struct kv_map *map;
static struct apply *ap;

static void setup(void)
{
    map = kv_map_new();
    cr_assert_not_null(map);
    ap = apply_new(map);
    cr_assert_not_null(ap);
}

static void teardown(void)
{
    apply_free(ap);
    kv_map_free(map);
}

TestSuite(apply, .init = setup, .fini = teardown);

Test(apply, a_batch_is_applied_in_order)
{
    struct batch b = {0};
    add(&b, KV_OP_SET, "a", "1");
    add(&b, KV_OP_SET, "b", "2");
    add(&b, KV_OP_SET, "a", "3");
    add(&b, KV_OP_DELETE, "b", NULL);
    add(&b, KV_OP_SET, "c", "4");
    cr_assert_eq(apply_commands(ap, b.iov, b.n), 0);
    cr_assert_str_eq(value_of(map, "a"), "3");
    cr_assert_str_eq(value_of(map, "b"), "");
    cr_assert_str_eq(value_of(map, "c"), "4");
    cr_assert_eq(kv_map_count(map), 2);
    cr_assert_eq(kv_map_bytes(map), 4);
}

Test(apply, a_clear_removes_only_what_came_before_it)
{
    struct batch b = {0};
    add(&b, KV_OP_SET, "a", "1");
    add(&b, KV_OP_CLEAR, NULL, NULL);
    add(&b, KV_OP_SET, "b", "2");
    add(&b, KV_OP_CLEAR, NULL, NULL);
    add(&b, KV_OP_SET, "c", "3");
    cr_assert_eq(apply_commands(ap, b.iov, b.n), 0);
    cr_assert_str_eq(value_of(map, "a"), "");
    cr_assert_str_eq(value_of(map, "b"), "");
    cr_assert_str_eq(value_of(map, "c"), "3");
    cr_assert_eq(kv_map_count(map), 1);
}

Test(apply, batches_larger_than_the_scratch_space_grow_it)
{
    for (int round = 0; round < 3; round++) {
        struct batch b = {0};
        char key[16], val[16];
        for (int i = 0; i < MAX_CMDS; i++) {
            snprintf(key, sizeof key, "k%d", i);
            snprintf(val, sizeof val, "r%d", round);
            add(&b, KV_OP_SET, key, val);
        }
        cr_assert_eq(apply_commands(ap, b.iov, b.n), 0);
    }
    cr_assert_eq(kv_map_count(map), MAX_CMDS);
    cr_assert_str_eq(value_of(map, "k63"), "r2");
}

Test(apply, a_command_that_does_not_decode_leaves_the_map_untouched)
{
    struct batch b = {0};
    add(&b, KV_OP_SET, "a", "1");
    cr_assert_eq(apply_commands(ap, b.iov, b.n), 0);
    b.n = 0;
    add(&b, KV_OP_SET, "a", "2");
    add(&b, KV_OP_SET, "b", "2");
    add(&b, KV_OP_DELETE, "a", NULL);
    b.iov[2].iov_len++; /* a delete with a trailing byte */
    cr_assert_eq(apply_commands(ap, b.iov, b.n), LKV_ECORRUPT);
    cr_assert_str_eq(value_of(map, "a"), "1");
    cr_assert_str_eq(value_of(map, "b"), "");
    cr_assert_eq(kv_map_count(map), 1);
}

Test(apply, an_empty_value_is_a_value)
{
    struct batch b = {0};
    add(&b, KV_OP_SET, "a", NULL);
    cr_assert_eq(apply_commands(ap, b.iov, b.n), 0);
    struct kv_entry *e = kv_map_get(map, "a", 1);
    cr_assert_not_null(e);
    cr_assert_eq(kv_entry_vlen(e), 0);
    kv_entry_unref(e);
}

/* ---- recovery ---- */

static void load(uint8_t op, const char *key, const char *val)
{
    uint8_t buf[64];
    size_t klen = key ? strlen(key) : 0, vlen = val ? strlen(val) : 0;
    size_t len = kv_cmd_encode(buf, sizeof buf, op, key, klen, val, vlen);
    cr_assert_eq(apply_load_command_locked(ap, buf, len), 0);
}

Test(apply, replay_keeps_puts_in_order_with_deletes_and_clears)
{
    kv_map_write_lock(map);
    cr_assert_eq(apply_load_put_locked(ap, "s", 1, "snap", 4), 0);
    load(KV_OP_SET, "a", "1");
    load(KV_OP_DELETE, "a", NULL); /* the queued put of a must land first */
    load(KV_OP_SET, "b", "1");
    load(KV_OP_SET, "b", "2");
    load(KV_OP_CLEAR, NULL, NULL); /* and everything before a clear */
    char key[16];
    for (int i = 0; i < 20; i++) { /* more than the queue holds */
        snprintf(key, sizeof key, "k%d", i);
        load(KV_OP_SET, key, "v");
    }
    load(KV_OP_SET, "k3", "last");
    apply_load_flush_locked(ap);
    kv_map_write_unlock(map);
    cr_assert_str_eq(value_of(map, "s"), "");
    cr_assert_str_eq(value_of(map, "a"), "");
    cr_assert_str_eq(value_of(map, "b"), "");
    cr_assert_str_eq(value_of(map, "k0"), "v");
    cr_assert_str_eq(value_of(map, "k19"), "v");
    cr_assert_str_eq(value_of(map, "k3"), "last");
    cr_assert_eq(kv_map_count(map), 20);
}

Test(apply, replay_refuses_a_damaged_command)
{
    const uint8_t bad[] = {KV_OP_DELETE, 0, 0, 0, 0};
    kv_map_write_lock(map);
    cr_assert_eq(apply_load_command_locked(ap, bad, sizeof bad), LKV_ECORRUPT);
    apply_load_flush_locked(ap);
    kv_map_write_unlock(map);
}

/* Entries still queued when a failed recovery gives up are freed, not put
 * (ASan reports a leak otherwise). */
Test(apply, freeing_with_a_full_queue_drops_the_entries)
{
    kv_map_write_lock(map);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(apply_load_put_locked(ap, "k", 1, "v", 1), 0);
    kv_map_write_unlock(map);
    apply_free(ap);
    ap = NULL;
    cr_assert_eq(kv_map_count(map), 0);
}
