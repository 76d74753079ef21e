#include "node/apply.h"

#include "kv/kv_cmd.h"
#include "util/err.h"

#include <stdlib.h>
#include <string.h>

/* Recovery puts go through a short queue: each entry's bucket is
 * prefetched when it joins, and it is put when it leaves, by which time the
 * bucket is in cache. Order is kept: deletes and clears flush it first. */
#define LOAD_AHEAD 8

/* One command of a batch, decoded. */
struct step {
    struct kv_cmd cmd;      /* points into the caller's command bytes */
    struct kv_entry *entry; /* set: built before the lock; ours until put */
};

struct apply {
    struct kv_map *map;
    struct step *steps; /* one batch's worth */
    size_t cap;
    struct kv_entry *q[LOAD_AHEAD]; /* recovery prefetch queue; ours until put */
    size_t head, n;
};

struct apply *apply_new(struct kv_map *map)
{
    struct apply *a = calloc(1, sizeof *a);
    if (a)
        a->map = map;
    return a;
}

void apply_free(struct apply *a)
{
    if (!a)
        return;
    for (; a->n > 0; a->n--, a->head = (a->head + 1) % LOAD_AHEAD)
        kv_entry_unref(a->q[a->head]);
    free(a->steps);
    free(a);
}

static struct kv_entry *entry_for(const char *key, size_t klen, const char *value, size_t vlen)
{
    struct kv_entry *e = kv_entry_new(key, klen, vlen);
    if (e && vlen > 0)
        memcpy(kv_entry_value_mut(e), value, vlen);
    return e;
}

static int reserve(struct apply *a, size_t n)
{
    if (n <= a->cap)
        return 0;
    size_t cap = a->cap ? a->cap : 64;
    while (cap < n)
        cap *= 2;
    struct step *p = realloc(a->steps, cap * sizeof *p);
    if (!p)
        return LKV_ENOMEM;
    a->steps = p;
    a->cap = cap;
    return 0;
}

/* Decodes every command and builds the entries the sets will put. On
 * failure nothing is left allocated. */
static int prepare(struct apply *a, const struct iovec *cmds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct step *st = &a->steps[i];
        st->entry = NULL;
        int rc = kv_cmd_decode(cmds[i].iov_base, cmds[i].iov_len, &st->cmd);
        if (rc == 0 && st->cmd.op == KV_OP_SET) {
            st->entry = entry_for(st->cmd.key, st->cmd.klen, st->cmd.value, st->cmd.vlen);
            rc = st->entry ? 0 : LKV_ENOMEM;
        }
        if (rc != 0) {
            while (i-- > 0)
                if (a->steps[i].entry)
                    kv_entry_unref(a->steps[i].entry);
            return rc;
        }
    }
    return 0;
}

int apply_commands(struct apply *a, const struct iovec *cmds, size_t n)
{
    int rc = reserve(a, n);
    if (rc == 0)
        rc = prepare(a, cmds, n);
    if (rc != 0)
        return rc;
    struct kv_detached *cleared = NULL;
    kv_map_write_lock(a->map);
    for (size_t i = 0; i < n; i++) {
        struct step *st = &a->steps[i];
        switch (st->cmd.op) {
        case KV_OP_SET:
            kv_map_put_locked(a->map, st->entry); /* ENOMEM only slows the map down */
            break;
        case KV_OP_DELETE:
            kv_map_delete_locked(a->map, st->cmd.key, st->cmd.klen);
            break;
        case KV_OP_CLEAR:
            /* a later clear in the same batch supersedes the earlier one */
            kv_map_write_unlock(a->map);
            kv_detached_free(cleared);
            kv_map_write_lock(a->map);
            cleared = kv_map_clear_locked(a->map);
            break;
        }
    }
    kv_map_write_unlock(a->map);
    kv_detached_free(cleared);
    return 0;
}

static void put_oldest_locked(struct apply *a)
{
    kv_map_put_locked(a->map, a->q[a->head]);
    a->head = (a->head + 1) % LOAD_AHEAD;
    a->n--;
}

void apply_load_flush_locked(struct apply *a)
{
    while (a->n > 0)
        put_oldest_locked(a);
}

int apply_load_put_locked(struct apply *a, const char *key, size_t klen, const char *value,
                          size_t vlen)
{
    struct kv_entry *e = entry_for(key, klen, value, vlen);
    if (!e)
        return LKV_ENOMEM;
    kv_map_prefetch(a->map, e);
    if (a->n == LOAD_AHEAD)
        put_oldest_locked(a);
    a->q[(a->head + a->n) % LOAD_AHEAD] = e;
    a->n++;
    return 0;
}

int apply_load_command_locked(struct apply *a, const uint8_t *p, size_t len)
{
    struct kv_cmd c;
    if (kv_cmd_decode(p, len, &c) != 0)
        return LKV_ECORRUPT;
    switch (c.op) {
    case KV_OP_SET:
        return apply_load_put_locked(a, c.key, c.klen, c.value, c.vlen);
    case KV_OP_DELETE:
        apply_load_flush_locked(a);
        kv_map_delete_locked(a->map, c.key, c.klen);
        break;
    case KV_OP_CLEAR:
        apply_load_flush_locked(a);
        kv_detached_free(kv_map_clear_locked(a->map));
        break;
    }
    return 0;
}
