/* Unit tests for kv_map: contents, resizing, clearing, references, readers. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Table allocations of at least this many elements fail (fault injection). */
static size_t fail_calloc_from = SIZE_MAX;

static void *test_calloc(size_t n, size_t size)
{
    if (n >= fail_calloc_from)
        return NULL;
    return calloc(n, size);
}

/* White-box: the migration tests must see which table holds an entry, and the
 * growth-failure tests need a calloc that fails on demand, so this file
 * compiles the module itself (the linker then leaves liblkv.a's copy out). */
#define calloc test_calloc
#include "kv/kv_map.c"
#undef calloc

/* ---- helpers ---- */

static struct kv_entry *entry(const char *key, size_t klen, const void *val, size_t vlen)
{
    struct kv_entry *e = kv_entry_new(key, klen, vlen);
    cr_assert_not_null(e);
    if (vlen)
        memcpy(kv_entry_value_mut(e), val, vlen);
    return e;
}

static int put(struct kv_map *m, const char *key, size_t klen, const void *val, size_t vlen)
{
    struct kv_entry *e = entry(key, klen, val, vlen);
    kv_map_write_lock(m);
    int rc = kv_map_put_locked(m, e);
    kv_map_write_unlock(m);
    return rc;
}

static bool del(struct kv_map *m, const char *key, size_t klen)
{
    kv_map_write_lock(m);
    bool found = kv_map_delete_locked(m, key, klen);
    kv_map_write_unlock(m);
    return found;
}

/* True when `key` is present with exactly the value `val`. */
static bool has_value(struct kv_map *m, const char *key, size_t klen, const void *val, size_t vlen)
{
    struct kv_entry *e = kv_map_get(m, key, klen);
    if (!e)
        return false;
    bool ok = kv_entry_klen(e) == klen && memcmp(kv_entry_key(e), key, klen) == 0 &&
              kv_entry_vlen(e) == vlen && memcmp(kv_entry_value(e), val, vlen) == 0;
    kv_entry_unref(e);
    return ok;
}

/* Numbered keys are 16 bytes and numbered values 100 bytes, the sizes the
 * memory budget is stated for. */
enum { NKLEN = 16, NVLEN = 100 };

static void num_key(char out[NKLEN + 1], size_t i)
{
    snprintf(out, NKLEN + 1, "key:%012zu", i);
}

static void num_value(char out[NVLEN], size_t i)
{
    for (size_t j = 0; j < NVLEN; j++)
        out[j] = (char)(unsigned char)(i * 131 + j * 7);
    memcpy(out, &i, sizeof i);
}

static int put_num(struct kv_map *m, size_t i)
{
    char k[NKLEN + 1], v[NVLEN];
    num_key(k, i);
    num_value(v, i);
    return put(m, k, NKLEN, v, NVLEN);
}

static bool has_num(struct kv_map *m, size_t i)
{
    char k[NKLEN + 1], v[NVLEN];
    num_key(k, i);
    num_value(v, i);
    return has_value(m, k, NKLEN, v, NVLEN);
}

static size_t entries_in(const struct table *t, size_t from)
{
    size_t n = 0;
    for (size_t i = from; t->slots && i <= t->mask; i++)
        for (const struct kv_entry *e = t->slots[i]; e; e = e->next)
            n++;
    return n;
}

static const struct kv_entry *first_in(const struct table *t, size_t from)
{
    for (size_t i = from; t->slots && i <= t->mask; i++)
        if (t->slots[i])
            return t->slots[i];
    return NULL;
}

/* Inserts numbered keys until a resize from at least `min_old` buckets is
 * under way and partly done; returns how many keys it inserted. */
static size_t fill_until_midway(struct kv_map *m, size_t min_old)
{
    size_t n = 0;
    while (!(m->old.slots && m->old.mask + 1 >= min_old && m->drained > 0))
        cr_assert_eq(put_num(m, n++), 0);
    cr_assert_lt(m->drained, m->old.mask + 1);
    return n;
}

/* ---- contents ---- */

Test(kv_map, put_get_replace_delete)
{
    struct kv_map *m = kv_map_new();
    cr_assert_not_null(m);
    cr_assert_null(kv_map_get(m, "alpha", 5));

    cr_assert_eq(put(m, "alpha", 5, "one", 3), 0);
    cr_assert(has_value(m, "alpha", 5, "one", 3));
    cr_assert_eq(kv_map_count(m), 1);
    cr_assert_eq(kv_map_bytes(m), 8);

    cr_assert_eq(put(m, "alpha", 5, "three", 5), 0);
    cr_assert(has_value(m, "alpha", 5, "three", 5));
    cr_assert_eq(kv_map_count(m), 1, "a replace must not add a key");
    cr_assert_eq(kv_map_bytes(m), 10);

    cr_assert_eq(put(m, "beta", 4, "", 0), 0);
    cr_assert(has_value(m, "beta", 4, "", 0), "empty values are values");
    cr_assert_eq(kv_map_count(m), 2);

    cr_assert(del(m, "alpha", 5));
    cr_assert_null(kv_map_get(m, "alpha", 5));
    cr_assert_not(del(m, "alpha", 5), "a second delete finds nothing");
    cr_assert(has_value(m, "beta", 4, "", 0));
    cr_assert_eq(kv_map_count(m), 1);
    cr_assert_eq(kv_map_bytes(m), 4);
    kv_map_free(m);
}

Test(kv_map, binary_values_with_nul_bytes_round_trip)
{
    struct kv_map *m = kv_map_new();
    char val[300];
    for (size_t i = 0; i < sizeof val; i++)
        val[i] = (char)(unsigned char)(i % 3 == 0 ? 0 : i);
    const char key[] = {'b', 'i', 'n', '\0', 'k'};

    cr_assert_eq(put(m, key, sizeof key, val, sizeof val), 0);
    cr_assert_eq(put(m, "bin", 3, "\0\0", 2), 0);
    cr_assert(has_value(m, key, sizeof key, val, sizeof val));
    cr_assert(has_value(m, "bin", 3, "\0\0", 2), "a key ending before a NUL is another key");
    cr_assert_null(kv_map_get(m, "bin\0", 4));
    cr_assert_eq(kv_map_bytes(m), sizeof key + sizeof val + 5);
    kv_map_free(m);
}

/* Puts every key of length 1..maxlen that differs from 'ppp...' only in its
 * last byte, then checks each one maps to its own value. */
static void check_last_byte_keys(struct kv_map *m, size_t maxlen)
{
    char key[64];
    cr_assert_leq(maxlen, sizeof key);
    memset(key, 'p', sizeof key);
    for (size_t len = 1; len <= maxlen; len++) {
        for (int b = 0; b < 256; b++) {
            key[len - 1] = (char)b;
            unsigned char v[2] = {(unsigned char)len, (unsigned char)b};
            cr_assert_eq(put(m, key, len, v, 2), 0);
        }
        key[len - 1] = 'p';
    }
    cr_assert_eq(kv_map_count(m), maxlen * 256);
    for (size_t len = 1; len <= maxlen; len++) {
        for (int b = 0; b < 256; b++) {
            key[len - 1] = (char)b;
            unsigned char v[2] = {(unsigned char)len, (unsigned char)b};
            if (!has_value(m, key, len, v, 2))
                cr_assert_fail("len=%zu last=%d maps to the wrong value", len, b);
        }
        key[len - 1] = 'p';
    }
}

Test(kv_map, keys_differing_only_in_last_byte_are_distinct)
{
    /* Lengths 1..40 cover every path through the hash's tail handling. */
    struct kv_map *m = kv_map_new();
    check_last_byte_keys(m, 40);
    kv_map_free(m);
}

Test(kv_map, keys_with_equal_hashes_are_told_apart_by_their_bytes)
{
    /* A zero multiplier sends every key to hash 0 and one chain, so only the
     * key comparison can keep these keys apart. */
    struct kv_map *m = kv_map_new();
    m->mul = 0;
    check_last_byte_keys(m, 12);
    kv_map_free(m);
}

Test(kv_map, maps_get_independent_hash_seeds)
{
    struct kv_map *a = kv_map_new(), *b = kv_map_new();
    cr_assert(a->seed != b->seed || a->mul != b->mul);
    cr_assert(a->mul & 1, "the multiplier must be odd");
    kv_map_free(a);
    kv_map_free(b);
}

/* ---- resizing ---- */

Test(kv_map, million_inserts_keep_exact_counts_and_every_key_reachable, .timeout = 600)
{
    enum { N = 1000000 };
    struct kv_map *m = kv_map_new();
    size_t midway_checks = 0;
    for (size_t i = 0; i < N; i++) {
        if (put_num(m, i) != 0)
            cr_assert_fail("put %zu failed", i);
        /* Once per resize, right after its first drain step, every key so far
         * must be found in whichever of the two tables holds it. */
        if (m->old.slots && m->drained == DRAIN_BUCKETS) {
            midway_checks++;
            cr_assert_gt(entries_in(&m->old, m->drained), 0);
            cr_assert_gt(entries_in(&m->cur, 0), 0);
            for (size_t j = 0; j <= i; j++)
                if (!has_num(m, j))
                    cr_assert_fail("key %zu lost mid-resize after %zu puts", j, i + 1);
        }
    }
    cr_assert_geq(midway_checks, 10);
    cr_assert_eq(kv_map_count(m), N);
    cr_assert_eq(kv_map_bytes(m), (uint64_t)N * (NKLEN + NVLEN));
    for (size_t i = 0; i < N; i++)
        if (!has_num(m, i))
            cr_assert_fail("key %zu lost", i);
    kv_map_free(m);
}

Test(kv_map, get_finds_keys_in_both_tables_mid_migration)
{
    struct kv_map *m = kv_map_new();
    size_t n = fill_until_midway(m, 1024);
    size_t in_old = entries_in(&m->old, m->drained), in_cur = entries_in(&m->cur, 0);
    cr_assert_gt(in_old, 0);
    cr_assert_gt(in_cur, 0);
    cr_assert_eq(in_old + in_cur, n);

    const struct kv_entry *o = first_in(&m->old, m->drained), *c = first_in(&m->cur, 0);
    struct kv_entry *got = kv_map_get(m, kv_entry_key(o), kv_entry_klen(o));
    cr_assert_eq(got, o, "entry still in the old table");
    kv_entry_unref(got);
    got = kv_map_get(m, kv_entry_key(c), kv_entry_klen(c));
    cr_assert_eq(got, c, "entry already in the new table");
    kv_entry_unref(got);
    for (size_t i = 0; i < n; i++)
        cr_assert(has_num(m, i), "key %zu", i);

    /* Deleting from either table works while the drain is still going. */
    char ko[64], kc[64];
    size_t lo = kv_entry_klen(o), lc = kv_entry_klen(c);
    memcpy(ko, kv_entry_key(o), lo);
    memcpy(kc, kv_entry_key(c), lc);
    cr_assert(m->old.slots);
    cr_assert(del(m, ko, lo));
    cr_assert(del(m, kc, lc));
    cr_assert_null(kv_map_get(m, ko, lo));
    cr_assert_null(kv_map_get(m, kc, lc));
    cr_assert_eq(kv_map_count(m), n - 2);
    kv_map_free(m);
}

struct visits {
    unsigned char *seen;
    size_t cap;
    size_t total;
    size_t stop_after; /* 0: never stop */
};

static int visit_cb(const struct kv_entry *e, void *arg)
{
    struct visits *v = arg;
    char digits[NKLEN + 1];
    memcpy(digits, kv_entry_key(e), NKLEN);
    digits[NKLEN] = '\0';
    size_t i = (size_t)strtoull(digits + 4, NULL, 10);
    if (i < v->cap && v->seen[i] < 255)
        v->seen[i]++;
    v->total++;
    return v->stop_after && v->total == v->stop_after ? 7 : 0;
}

Test(kv_map, foreach_visits_each_entry_once_during_migration)
{
    struct kv_map *m = kv_map_new();
    size_t n = fill_until_midway(m, 1024);
    struct visits v = {.cap = 4 * n};
    v.seen = calloc(v.cap, 1);
    cr_assert_not_null(v.seen);
    size_t walks = 0;
    /* Walk after every drain step, with each step's put landing in one table or the other. */
    while (m->old.slots) {
        memset(v.seen, 0, v.cap);
        v.total = 0;
        cr_assert_eq(kv_map_foreach(m, visit_cb, &v), 0);
        cr_assert_eq(v.total, n);
        cr_assert_eq(v.total, kv_map_count(m));
        for (size_t i = 0; i < n; i++)
            if (v.seen[i] != 1)
                cr_assert_fail("key %zu visited %d times after %zu walks", i, v.seen[i], walks);
        cr_assert_eq(put_num(m, n++), 0);
        walks++;
    }
    cr_assert_geq(walks, 8);
    free(v.seen);
    kv_map_free(m);
}

Test(kv_map, foreach_stops_at_first_nonzero_return)
{
    struct kv_map *m = kv_map_new();
    for (size_t i = 0; i < 100; i++)
        put_num(m, i);
    struct visits v = {.cap = 100, .stop_after = 3};
    v.seen = calloc(v.cap, 1);
    cr_assert_eq(kv_map_foreach(m, visit_cb, &v), 7);
    cr_assert_eq(v.total, 3);
    free(v.seen);
    kv_map_free(m);
}

Test(kv_map, failed_growth_still_inserts_and_reports_enomem)
{
    struct kv_map *m = kv_map_new();
    fail_calloc_from = INIT_BUCKETS * 2;
    for (size_t i = 0; i < 1000; i++) {
        int want = i < INIT_BUCKETS ? 0 : LKV_ENOMEM;
        cr_assert_eq(put_num(m, i), want, "put %zu", i);
    }
    cr_assert_eq(m->cur.mask + 1, INIT_BUCKETS, "the map keeps its only table");
    cr_assert_eq(kv_map_count(m), 1000);
    for (size_t i = 0; i < 1000; i++)
        cr_assert(has_num(m, i), "key %zu", i);

    /* With memory back, growth resumes from the next put. */
    fail_calloc_from = SIZE_MAX;
    for (size_t i = 1000; i < 1100; i++)
        cr_assert_eq(put_num(m, i), 0);
    cr_assert_gt(m->cur.mask + 1, INIT_BUCKETS);
    for (size_t i = 0; i < 1100; i++)
        cr_assert(has_num(m, i), "key %zu", i);
    kv_map_free(m);
}

/* ---- clearing ---- */

Test(kv_map, clear_large_map_mid_migration_then_reuse)
{
    struct kv_map *m = kv_map_new();
    size_t n = fill_until_midway(m, 1 << 17);
    struct kv_entry *held = kv_map_get(m, "key:000000000005", NKLEN);
    cr_assert_not_null(held);

    kv_map_write_lock(m);
    struct kv_detached *d = kv_map_clear_locked(m);
    kv_map_write_unlock(m);
    cr_assert_not_null(d);
    cr_assert_eq(m->cur.mask + 1, INIT_BUCKETS, "clear swaps in a small table");
    cr_assert_null(m->old.slots);
    cr_assert_eq(kv_map_count(m), 0);
    cr_assert_eq(kv_map_bytes(m), 0);
    cr_assert_null(kv_map_get(m, "key:000000000000", NKLEN));
    kv_detached_free(d);

    char v[NVLEN];
    num_value(v, 5);
    cr_assert_eq(kv_entry_vlen(held), NVLEN);
    cr_assert_eq(memcmp(kv_entry_value(held), v, NVLEN), 0, "a held entry outlives the clear");
    kv_entry_unref(held);

    for (size_t i = 0; i < n; i += 2)
        cr_assert_eq(put_num(m, i), 0);
    cr_assert_eq(kv_map_count(m), (n + 1) / 2);
    cr_assert_eq(kv_map_bytes(m), (n + 1) / 2 * (NKLEN + NVLEN));
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(has_num(m, i), i % 2 == 0, "key %zu", i);
    kv_map_free(m);
}

Test(kv_map, clear_of_empty_map_returns_null)
{
    struct kv_map *m = kv_map_new();
    kv_map_write_lock(m);
    cr_assert_null(kv_map_clear_locked(m));
    kv_map_write_unlock(m);
    cr_assert_eq(put(m, "a", 1, "b", 1), 0);
    cr_assert(has_value(m, "a", 1, "b", 1));
    kv_map_free(m);
}

Test(kv_map, clear_without_memory_empties_map_in_place)
{
    struct kv_map *m = kv_map_new();
    size_t n = fill_until_midway(m, 256);
    fail_calloc_from = 1;
    kv_map_write_lock(m);
    struct kv_detached *d = kv_map_clear_locked(m);
    kv_map_write_unlock(m);
    fail_calloc_from = SIZE_MAX;
    cr_assert_null(d);
    cr_assert_eq(kv_map_count(m), 0);
    cr_assert_eq(kv_map_bytes(m), 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_not(has_num(m, i), "key %zu survived the clear", i);
    cr_assert_eq(put_num(m, 1), 0);
    cr_assert(has_num(m, 1));
    kv_map_free(m);
}

/* ---- references ---- */

/* Allocates and scribbles on entries the size of `like`, so memory freed too
 * early would very likely be overwritten even without ASan. */
static void recycle_memory(size_t vlen)
{
    struct kv_entry *junk[16];
    for (size_t i = 0; i < 16; i++) {
        junk[i] = kv_entry_new("k", 1, vlen);
        memset(kv_entry_value_mut(junk[i]), 'z', vlen);
    }
    for (size_t i = 0; i < 16; i++)
        kv_entry_unref(junk[i]);
}

Test(kv_map, held_entry_survives_replace_and_delete)
{
    struct kv_map *m = kv_map_new();
    char a[64], b[64];
    memset(a, 'a', sizeof a);
    memset(b, 'b', sizeof b);
    cr_assert_eq(put(m, "k", 1, a, sizeof a), 0);

    struct kv_entry *first = kv_map_get(m, "k", 1);
    cr_assert_eq(put(m, "k", 1, b, sizeof b), 0);
    recycle_memory(sizeof a);
    cr_assert_eq(memcmp(kv_entry_value(first), a, sizeof a), 0, "replaced entry was freed");
    cr_assert(has_value(m, "k", 1, b, sizeof b));

    struct kv_entry *second = kv_map_get(m, "k", 1);
    cr_assert(del(m, "k", 1));
    recycle_memory(sizeof b);
    cr_assert_eq(memcmp(kv_entry_value(second), b, sizeof b), 0, "deleted entry was freed");
    cr_assert_eq(kv_entry_klen(second), 1);
    kv_entry_unref(first);
    kv_entry_unref(second);
    kv_map_free(m);
}

Test(kv_map, putting_the_published_entry_again_changes_nothing)
{
    struct kv_map *m = kv_map_new();
    cr_assert_eq(put(m, "k", 1, "v", 1), 0);
    struct kv_entry *e = kv_map_get(m, "k", 1);
    kv_map_write_lock(m);
    cr_assert_eq(kv_map_put_locked(m, e), 0); /* consumes the reference from get */
    kv_map_write_unlock(m);
    cr_assert_eq(kv_map_count(m), 1);
    cr_assert_eq(kv_map_bytes(m), 2);
    cr_assert(has_value(m, "k", 1, "v", 1));
    kv_map_free(m);
}

/* ---- concurrency ---- */

enum { CKEYS = 4096, COPS = 300000, CLEAR_EVERY = 100000 };

/* A value names its key and version, and every byte follows from the two,
 * so a reader can tell a torn or misplaced value from a good one. */
static size_t cvlen(uint32_t version)
{
    return 8 + (version % 61) * 5;
}

static unsigned char cbyte(uint32_t key, uint32_t version, size_t j)
{
    return (unsigned char)(key * 7 + version * 13 + j);
}

static size_t ckey(char out[16], uint32_t i)
{
    return (size_t)snprintf(out, 16, "ck-%08u", i);
}

static bool cvalue_ok(const struct kv_entry *e, uint32_t want_key)
{
    size_t vlen = kv_entry_vlen(e);
    const char *v = kv_entry_value(e);
    uint32_t key, version;
    if (vlen < 8)
        return false;
    memcpy(&key, v, 4);
    memcpy(&version, v + 4, 4);
    if (key != want_key || vlen != cvlen(version))
        return false;
    for (size_t j = 8; j < vlen; j++)
        if ((unsigned char)v[j] != cbyte(key, version, j))
            return false;
    return true;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

struct reader {
    struct kv_map *m;
    atomic_bool *stop;
    atomic_int *ready;
    uint64_t rng;
    size_t hits, misses, bad;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    atomic_fetch_add(r->ready, 1);
    while (!atomic_load_explicit(r->stop, memory_order_relaxed)) {
        uint32_t i = (uint32_t)(xorshift(&r->rng) % CKEYS);
        char k[16];
        size_t klen = ckey(k, i);
        struct kv_entry *e = kv_map_get(r->m, k, klen);
        if (!e) {
            r->misses++;
            continue;
        }
        r->hits++;
        if (kv_entry_klen(e) != klen || memcmp(kv_entry_key(e), k, klen) != 0 || !cvalue_ok(e, i))
            r->bad++;
        kv_entry_unref(e);
    }
    return NULL;
}

static void cput_locked(struct kv_map *m, uint32_t i, uint32_t version)
{
    char k[16];
    size_t klen = ckey(k, i), vlen = cvlen(version);
    struct kv_entry *e = kv_entry_new(k, klen, vlen);
    cr_assert_not_null(e);
    char *v = kv_entry_value_mut(e);
    memcpy(v, &i, 4);
    memcpy(v + 4, &version, 4);
    for (size_t j = 8; j < vlen; j++)
        v[j] = (char)cbyte(i, version, j);
    cr_assert_eq(kv_map_put_locked(m, e), 0);
}

Test(kv_map, readers_never_see_torn_values_while_writer_mutates, .timeout = 600)
{
    struct kv_map *m = kv_map_new();
    atomic_bool stop = false;
    atomic_int ready = 0;
    struct reader r[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        r[i] = (struct reader){
            .m = m, .stop = &stop, .ready = &ready, .rng = 0x1234567u + 77u * (uint64_t)i};
        cr_assert_eq(pthread_create(&t[i], NULL, reader_main, &r[i]), 0);
    }
    while (atomic_load(&ready) < 2)
        ;

    /* The writer mirrors the map so the totals can be checked at the end. */
    static uint64_t present[CKEYS]; /* 0 when absent, else vlen + klen */
    uint64_t rng = 42, count = 0, bytes = 0;
    uint32_t version = 0;
    for (size_t op = 0; op < COPS;) {
        size_t batch = 1 + xorshift(&rng) % 32;
        kv_map_write_lock(m);
        for (size_t b = 0; b < batch; b++, op++) {
            uint32_t i = (uint32_t)(xorshift(&rng) % CKEYS);
            char k[16];
            size_t klen = ckey(k, i);
            if (xorshift(&rng) % 4 == 0) {
                cr_assert_eq(kv_map_delete_locked(m, k, klen), present[i] != 0);
                count -= present[i] != 0;
                bytes -= present[i];
                present[i] = 0;
            } else {
                version++;
                cput_locked(m, i, version);
                count += present[i] == 0;
                bytes += klen + cvlen(version) - present[i];
                present[i] = klen + cvlen(version);
            }
        }
        struct kv_detached *d = NULL;
        if (op % CLEAR_EVERY < batch) {
            d = kv_map_clear_locked(m);
            memset(present, 0, sizeof present);
            count = bytes = 0;
        }
        kv_map_write_unlock(m);
        kv_detached_free(d);
        cr_assert_eq(kv_map_count(m), count);
        cr_assert_eq(kv_map_bytes(m), bytes);
    }

    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(r[i].bad, 0, "reader %d saw %zu bad values", i, r[i].bad);
        cr_assert_gt(r[i].hits, 0);
    }
    kv_map_free(m);
}

/* The entry stores the key length minus one in 16 bits: both ends of the
 * allowed range must come back intact, and one byte more is refused. */
Test(kv_map, key_length_limits)
{
    struct kv_map *m = kv_map_new();
    cr_assert_not_null(m);
    char *big = malloc(KV_MAX_KEY_BYTES + 1);
    cr_assert_not_null(big);
    memset(big, 'k', KV_MAX_KEY_BYTES + 1);
    big[KV_MAX_KEY_BYTES - 1] = 'z';
    cr_assert_eq(put(m, "a", 1, "one", 3), 0);
    cr_assert_eq(put(m, big, KV_MAX_KEY_BYTES, "max", 3), 0);
    cr_assert_eq(put(m, big, KV_MAX_KEY_BYTES - 1, "less", 4), 0);
    cr_assert(has_value(m, "a", 1, "one", 3));
    cr_assert(has_value(m, big, KV_MAX_KEY_BYTES, "max", 3));
    cr_assert(has_value(m, big, KV_MAX_KEY_BYTES - 1, "less", 4));
    cr_assert_eq(kv_map_bytes(m), 1 + 3 + KV_MAX_KEY_BYTES + 3 + KV_MAX_KEY_BYTES - 1 + 4);
    cr_assert_null(kv_entry_new(big, KV_MAX_KEY_BYTES + 1, 1));
    cr_assert_null(kv_entry_new(big, 0, 1));
    free(big);
    kv_map_free(m);
}

/* ---- walks (the source of fuzzy snapshots) ---- */

#define WALK_STABLE 5000
#define WALK_VOLATILE 6000

struct walk_seen {
    int stable[WALK_STABLE];
    int volatile_[WALK_VOLATILE];
    int other;
};

static int walk_count_cb(const struct kv_entry *e, void *arg)
{
    struct walk_seen *s = arg;
    char k[32];
    size_t n = kv_entry_klen(e);
    cr_assert(n < sizeof k);
    memcpy(k, kv_entry_key(e), n);
    k[n] = '\0';
    int i = atoi(k + 1);
    if (k[0] == 's' && i >= 0 && i < WALK_STABLE)
        s->stable[i]++;
    else if (k[0] == 'v' && i >= 0 && i < WALK_VOLATILE)
        s->volatile_[i]++;
    else
        s->other++;
    return 0;
}

static void walk_key(char *k, char kind, int i)
{
    snprintf(k, 17, "%c%015d", kind, i);
}

/* Keys present throughout are seen exactly once and nothing is seen twice,
 * while puts, overwrites and deletes run between steps and a table drain
 * that was under way at the start finishes during the walk. */
Test(kv_map, walk_sees_every_stable_key_once_under_churn)
{
    struct kv_map *m = kv_map_new();
    cr_assert_not_null(m);
    char k[17];
    int i = 0;
    for (; i < WALK_STABLE; i++) {
        walk_key(k, 's', i);
        cr_assert_eq(put(m, k, 16, "stable", 6), 0);
    }
    /* More keys until a drain is in progress, so the walk starts mid-drain. */
    int v = 0;
    while (!m->old.slots && v < WALK_VOLATILE) {
        walk_key(k, 'v', v++);
        cr_assert_eq(put(m, k, 16, "vol", 3), 0);
    }
    cr_assert_not_null(m->old.slots, "no drain in progress to walk across");
    size_t buckets = m->cur.mask + 1;

    struct walk_seen seen = {0};
    struct kv_walk w;
    kv_map_walk_begin(m, &w);
    unsigned rnd = 12345;
    int rc, steps = 0;
    while ((rc = kv_map_walk_step(m, &w, 200, walk_count_cb, &seen)) == 1) {
        steps++;
        for (int n = 0; n < 20; n++) {
            rnd = rnd * 1103515245u + 12345u;
            int x = (int)((rnd >> 8) % WALK_VOLATILE);
            walk_key(k, 'v', x);
            switch ((rnd >> 4) % 3) {
            case 0: put(m, k, 16, "new", 3); break;
            case 1: del(m, k, 16); break;
            default:
                walk_key(k, 's', (int)((rnd >> 6) % WALK_STABLE));
                put(m, k, 16, "overwritten", 11); /* still present: seen once */
            }
        }
        cr_assert_eq(m->cur.mask + 1, buckets, "the table grew during a walk");
    }
    cr_assert_eq(rc, 0);
    cr_assert(steps > 10, "the walk took only %d steps: the churn never ran", steps);
    cr_assert_null(m->old.slots, "the drain did not finish during the walk");
    for (i = 0; i < WALK_STABLE; i++)
        cr_assert_eq(seen.stable[i], 1, "stable key %d seen %d times", i, seen.stable[i]);
    for (i = 0; i < WALK_VOLATILE; i++)
        cr_assert_leq(seen.volatile_[i], 1, "key v%d seen %d times", i, seen.volatile_[i]);
    cr_assert_eq(seen.other, 0);
    kv_map_walk_end(m, &w);
    kv_map_free(m);
}

Test(kv_map, walk_reports_a_clear_and_growth_resumes_after_end)
{
    struct kv_map *m = kv_map_new();
    cr_assert_not_null(m);
    char k[17];
    for (int i = 0; i < 100; i++) {
        walk_key(k, 's', i);
        put(m, k, 16, "x", 1);
    }
    while (m->old.slots) { /* finish any drain */
        walk_key(k, 's', 0);
        put(m, k, 16, "x", 1);
    }
    struct walk_seen seen = {0};
    struct kv_walk w;
    kv_map_walk_begin(m, &w);
    size_t buckets = m->cur.mask + 1;
    /* Far more keys than buckets: no growth while the walk is open. */
    for (int i = 0; i < (int)buckets * 3; i++) {
        walk_key(k, 'v', i % WALK_VOLATILE);
        put(m, k, 16, "y", 1);
    }
    cr_assert_eq(m->cur.mask + 1, buckets);
    cr_assert_null(m->old.slots);
    cr_assert_eq(kv_map_walk_step(m, &w, 1, walk_count_cb, &seen), 1);
    kv_map_write_lock(m);
    struct kv_detached *d = kv_map_clear_locked(m);
    kv_map_write_unlock(m);
    kv_detached_free(d);
    cr_assert_eq(kv_map_walk_step(m, &w, 1 << 20, walk_count_cb, &seen), LKV_ERESTART);
    kv_map_walk_end(m, &w);
    for (int i = 0; i < 100; i++) {
        walk_key(k, 's', i);
        put(m, k, 16, "z", 1);
    }
    cr_assert(m->old.slots || m->cur.mask + 1 > INIT_BUCKETS,
              "the table did not grow once the walk ended");
    kv_map_free(m);
}
