#include "kv/kv_map.h"

#include "util/err.h"
#include "util/log.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/*
 * Layout and invariants
 * ---------------------
 * Buckets are singly linked chains. While the map grows it has two tables:
 * `old` is drained bucket by bucket into `cur`, which is twice as large. An
 * entry with hash h lives in old.slots[h & old.mask] when a drain is in
 * progress and that index is >= drained; otherwise it lives in
 * cur.slots[h & cur.mask]. New entries follow the same rule, so every lookup
 * walks exactly one chain, and a walk of old[drained..] plus all of cur sees
 * each entry once.
 */

/* Fresh maps and cleared maps start here; must be a power of two. */
#define INIT_BUCKETS 16
/* Old buckets moved per mutation: bounds the work any single put or delete does. */
#define DRAIN_BUCKETS 64
/* Bucket indexes use 32 bits of the hash, so more buckets than this would stay empty. */
#define MAX_BUCKETS ((uint64_t)1 << 32)

/* A 20-byte header followed by the key and value bytes, allocated as one
 * block of ENTRY_HDR + klen + vlen. Every byte counts: with 16-byte keys and
 * 100-byte values a 24-byte header costs a 160-byte malloc chunk, 20 bytes
 * a 144-byte one. So the key length is stored minus one in 16 bits (keys are
 * 1..65536 bytes), and instead of the full hash the entry keeps a 16-bit tag
 * that rules out most mismatches before memcmp; bucket indexes are
 * recomputed from the key when the table grows. */
struct kv_entry {
    struct kv_entry *next; /* chain link; written only under the write lock */
    _Atomic uint32_t refs;
    uint32_t vlen;
    uint16_t klen_m1; /* klen - 1 */
    uint16_t tag;     /* top 16 bits of the map's hash, set by kv_map_put_locked */
    char data[];
};

#define ENTRY_HDR offsetof(struct kv_entry, data)
_Static_assert(offsetof(struct kv_entry, data) == 20, "entry header grew; check the memory budget");
#define KLEN(e) ((size_t)(e)->klen_m1 + 1)

struct table {
    struct kv_entry **slots; /* NULL for `old` when no drain is in progress */
    size_t mask;             /* bucket count - 1 */
};

struct kv_map {
    pthread_rwlock_t lock;
    struct table cur;
    struct table old;
    size_t drained;         /* old buckets below this index are empty */
    uint64_t seed;          /* hash key: fixed after kv_map_new, so hashing needs no lock */
    uint64_t mul;           /* second hash key, always odd */
    _Atomic uint64_t count; /* stored only by the writer; atomic so readers never see a tear */
    _Atomic uint64_t bytes;
    uint64_t clears;        /* writer only: clears so far, to invalidate walks */
    bool walking;           /* writer only: a walk is open, so no growth */
};

struct kv_detached {
    struct table cur;
    struct table old;
    size_t drained;
};

/* ---- entries ---- */

struct kv_entry *kv_entry_new(const char *key, size_t klen, size_t vlen)
{
    if (klen == 0 || klen > KV_MAX_KEY_BYTES || vlen > UINT32_MAX)
        return NULL;
    struct kv_entry *e = malloc(ENTRY_HDR + klen + vlen);
    if (!e)
        return NULL;
    e->next = NULL;
    atomic_init(&e->refs, 1);
    e->tag = 0;
    e->klen_m1 = (uint16_t)(klen - 1);
    e->vlen = (uint32_t)vlen;
    memcpy(e->data, key, klen);
    return e;
}

char *kv_entry_value_mut(struct kv_entry *e)
{
    return e->data + KLEN(e);
}

const char *kv_entry_key(const struct kv_entry *e)
{
    return e->data;
}

size_t kv_entry_klen(const struct kv_entry *e)
{
    return KLEN(e);
}

const char *kv_entry_value(const struct kv_entry *e)
{
    return e->data + KLEN(e);
}

size_t kv_entry_vlen(const struct kv_entry *e)
{
    return e->vlen;
}

void kv_entry_ref(struct kv_entry *e)
{
    /* The caller already holds a reference, so nothing can free e meanwhile. */
    uint32_t prev = atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    assert(prev > 0 && prev < UINT32_MAX);
    (void)prev;
}

void kv_entry_unref(struct kv_entry *e)
{
    /* acq_rel rather than release plus a fence: TSan understands this form. */
    uint32_t prev = atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel);
    assert(prev > 0);
    if (prev == 1)
        free(e);
}

/* ---- hashing ---- */

#define HASH_LEN_MUL 0x9e3779b97f4a7c15ULL
#define HASH_FINAL_MUL 0xd6e8feb86659fd93ULL

/* 64x64->128 multiply folded back to 64 bits: every input bit reaches the
 * middle of the product, and xoring the halves brings it to both ends. */
static inline uint64_t fold_mul(uint64_t a, uint64_t b)
{
#ifdef __SIZEOF_INT128__
    __extension__ typedef unsigned __int128 u128;
    u128 p = (u128)a * b;
    return (uint64_t)p ^ (uint64_t)(p >> 64);
#else
    uint64_t al = (uint32_t)a, ah = a >> 32, bl = (uint32_t)b, bh = b >> 32;
    uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
    uint64_t lo = (mid << 32) | (uint32_t)ll;
    uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return lo ^ hi;
#endif
}

static inline uint64_t load64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint64_t load32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Keyed with per-map secrets so that colliding keys cannot be computed
 * offline. For a fixed length the sequence of words is a one-to-one function
 * of the key (the last word may overlap bytes already taken), and the length
 * itself is folded into the starting state. */
static uint64_t hash_key(const struct kv_map *m, const char *p, size_t n)
{
    uint64_t h = m->seed ^ ((uint64_t)n * HASH_LEN_MUL);
    size_t left = n;
    while (left > 8) {
        h = fold_mul(h ^ load64(p), m->mul);
        p += 8;
        left -= 8;
    }
    uint64_t w;
    if (n >= 8)
        w = load64(p + left - 8);
    else if (n >= 4)
        w = load32(p) | load32(p + n - 4) << 32;
    else if (n > 0)
        w = (uint64_t)(unsigned char)p[0] | (uint64_t)(unsigned char)p[n / 2] << 8 |
            (uint64_t)(unsigned char)p[n - 1] << 16;
    else
        w = 0;
    h = fold_mul(h ^ w, m->mul);
    return fold_mul(h, HASH_FINAL_MUL);
}

/* The entry's tag: bits the bucket index (the low 32) does not use. */
static inline uint16_t tag_of(uint64_t h)
{
    return (uint16_t)(h >> 48);
}

static inline uint64_t entry_hash(const struct kv_map *m, const struct kv_entry *e)
{
    return hash_key(m, e->data, KLEN(e));
}

static void seed_hash(struct kv_map *m)
{
    uint64_t r[2];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom((char *)r + got, sizeof r - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < sizeof r) {
        /* Still a working map; only collision resistance is weaker. */
        LOG_WARN("event=kv_map_seed_fallback errno=%d", errno);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r[0] = fold_mul((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30), HASH_LEN_MUL) ^
               (uint64_t)(uintptr_t)m;
        r[1] = fold_mul(r[0] ^ (uint64_t)getpid(), HASH_FINAL_MUL);
    }
    m->seed = r[0];
    m->mul = r[1] | 1;
}

/* ---- tables ---- */

/* The head of the chain where an entry with hash h lives (see the invariant above). */
static inline struct kv_entry **bucket(const struct kv_map *m, uint64_t h)
{
    uint32_t b = (uint32_t)h;
    if (m->old.slots) {
        size_t i = b & m->old.mask;
        if (i >= m->drained)
            return &m->old.slots[i];
    }
    return &m->cur.slots[b & m->cur.mask];
}

static inline bool matches(const struct kv_entry *e, uint16_t tag, const char *key, size_t klen)
{
    return e->tag == tag && KLEN(e) == klen && memcmp(e->data, key, klen) == 0;
}

/* The link that points at key's entry, or the NULL link ending its chain. */
static struct kv_entry **find_link(const struct kv_map *m, uint64_t h, const char *key, size_t klen)
{
    struct kv_entry **link = bucket(m, h);
    uint16_t tag = tag_of(h);
    while (*link && !matches(*link, tag, key, klen))
        link = &(*link)->next;
    return link;
}

/* Moves up to DRAIN_BUCKETS old buckets into cur; frees old when empty. */
static void drain_step(struct kv_map *m)
{
    size_t old_size = m->old.mask + 1;
    size_t end = m->drained + DRAIN_BUCKETS < old_size ? m->drained + DRAIN_BUCKETS : old_size;
    for (size_t i = m->drained; i < end; i++) {
        struct kv_entry *e = m->old.slots[i];
        m->old.slots[i] = NULL;
        while (e) {
            struct kv_entry *next = e->next;
            struct kv_entry **head = &m->cur.slots[(uint32_t)entry_hash(m, e) & m->cur.mask];
            e->next = *head;
            *head = e;
            e = next;
        }
    }
    m->drained = end;
    if (end == old_size) {
        free(m->old.slots);
        m->old = (struct table){NULL, 0};
        m->drained = 0;
    }
}

/* Starts a drain into a table twice the size. On failure the map keeps its
 * one table and stays correct, with longer chains. */
static int grow(struct kv_map *m)
{
    size_t size = m->cur.mask + 1;
    if ((uint64_t)size * 2 > MAX_BUCKETS)
        return 0;
    struct kv_entry **slots = calloc(size * 2, sizeof *slots);
    if (!slots)
        return LKV_ENOMEM;
    m->old = m->cur;
    m->cur = (struct table){slots, size * 2 - 1};
    m->drained = 0;
    return 0;
}

/* Drops the reference of every entry in buckets from `from` up, and frees t. */
static void release_table(struct table *t, size_t from)
{
    if (!t->slots)
        return;
    for (size_t i = from; i <= t->mask; i++) {
        struct kv_entry *e = t->slots[i];
        while (e) {
            struct kv_entry *next = e->next; /* read before the unref may free e */
            kv_entry_unref(e);
            e = next;
        }
    }
    free(t->slots);
    t->slots = NULL;
}

static int walk_table(const struct table *t, size_t from,
                      int (*cb)(const struct kv_entry *e, void *arg), void *arg)
{
    if (!t->slots)
        return 0;
    for (size_t i = from; i <= t->mask; i++) {
        for (const struct kv_entry *e = t->slots[i]; e; e = e->next) {
            int rc = cb(e, arg);
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Only the writer stores, so load-then-store needs no read-modify-write. */
static void add_stats(struct kv_map *m, uint64_t dcount, uint64_t dbytes)
{
    uint64_t c = atomic_load_explicit(&m->count, memory_order_relaxed);
    uint64_t b = atomic_load_explicit(&m->bytes, memory_order_relaxed);
    /* Unsigned wrap-around makes "add (uint64_t)-x" a subtraction. */
    atomic_store_explicit(&m->count, c + dcount, memory_order_release);
    atomic_store_explicit(&m->bytes, b + dbytes, memory_order_release);
}

/* ---- map ---- */

struct kv_map *kv_map_new(void)
{
    struct kv_map *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cur.slots = calloc(INIT_BUCKETS, sizeof *m->cur.slots);
    if (!m->cur.slots)
        goto err_after_map;
    m->cur.mask = INIT_BUCKETS - 1;

    pthread_rwlockattr_t attr;
    if (pthread_rwlockattr_init(&attr) != 0)
        goto err_after_slots;
    /* A steady stream of readers must not starve the single writer. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int rc = pthread_rwlock_init(&m->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (rc != 0)
        goto err_after_slots;

    seed_hash(m);
    atomic_init(&m->count, 0);
    atomic_init(&m->bytes, 0);
    return m;

err_after_slots:
    free(m->cur.slots);
err_after_map:
    free(m);
    return NULL;
}

void kv_map_free(struct kv_map *m)
{
    if (!m)
        return;
    release_table(&m->old, m->drained);
    release_table(&m->cur, 0);
    pthread_rwlock_destroy(&m->lock);
    free(m);
}

struct kv_entry *kv_map_get(struct kv_map *m, const char *key, size_t klen)
{
    uint64_t h = hash_key(m, key, klen);
    pthread_rwlock_rdlock(&m->lock);
    struct kv_entry *e = *find_link(m, h, key, klen);
    if (e)
        kv_entry_ref(e);
    pthread_rwlock_unlock(&m->lock);
    return e;
}

void kv_map_write_lock(struct kv_map *m)
{
    pthread_rwlock_wrlock(&m->lock);
}

void kv_map_write_unlock(struct kv_map *m)
{
    pthread_rwlock_unlock(&m->lock);
}

void kv_map_prefetch(const struct kv_map *m, const struct kv_entry *e)
{
    __builtin_prefetch(bucket(m, entry_hash(m, e)), 1);
}

int kv_map_reserve_locked(struct kv_map *m, uint64_t n)
{
    uint64_t size = m->cur.mask + 1;
    if (n <= size)
        return 0;
    while (size < n && size < MAX_BUCKETS)
        size *= 2;
    struct kv_entry **slots = calloc((size_t)size, sizeof *slots);
    if (!slots)
        return LKV_ENOMEM;
    while (m->old.slots)
        drain_step(m);
    for (size_t i = 0; i <= m->cur.mask; i++) {
        struct kv_entry *e = m->cur.slots[i];
        while (e) {
            struct kv_entry *next = e->next;
            struct kv_entry **head = &slots[(uint32_t)entry_hash(m, e) & (size - 1)];
            e->next = *head;
            *head = e;
            e = next;
        }
    }
    free(m->cur.slots);
    m->cur = (struct table){slots, (size_t)size - 1};
    return 0;
}

int kv_map_put_locked(struct kv_map *m, struct kv_entry *e)
{
    uint64_t h = entry_hash(m, e);
    e->tag = tag_of(h);
    if (m->old.slots)
        drain_step(m);
    struct kv_entry **link = find_link(m, h, e->data, KLEN(e));
    struct kv_entry *prev = *link;
    if (prev == e) {
        /* Re-putting the published entry: the map already holds a reference. */
        kv_entry_unref(e);
        return 0;
    }
    uint64_t added = (uint64_t)KLEN(e) + e->vlen;
    if (prev) {
        e->next = prev->next;
        *link = e;
        add_stats(m, 0, added - ((uint64_t)KLEN(prev) + prev->vlen));
        kv_entry_unref(prev); /* readers holding it keep it alive */
        return 0;
    }
    e->next = NULL;
    *link = e;
    add_stats(m, 1, added);
    if (!m->old.slots && !m->walking &&
        atomic_load_explicit(&m->count, memory_order_relaxed) > m->cur.mask + 1)
        return grow(m);
    return 0;
}

bool kv_map_delete_locked(struct kv_map *m, const char *key, size_t klen)
{
    uint64_t h = hash_key(m, key, klen);
    if (m->old.slots)
        drain_step(m);
    struct kv_entry **link = find_link(m, h, key, klen);
    struct kv_entry *e = *link;
    if (!e)
        return false;
    *link = e->next;
    add_stats(m, (uint64_t)-1, (uint64_t)0 - ((uint64_t)KLEN(e) + e->vlen));
    kv_entry_unref(e);
    return true;
}

/* The out-of-memory path of a clear: O(n) under the lock, but the map ends
 * up empty as promised. */
static void release_in_place(struct kv_map *m)
{
    release_table(&m->old, m->drained);
    m->old = (struct table){NULL, 0};
    m->drained = 0;
    struct kv_entry **slots = m->cur.slots;
    for (size_t i = 0; i <= m->cur.mask; i++) {
        struct kv_entry *e = slots[i];
        slots[i] = NULL;
        while (e) {
            struct kv_entry *next = e->next;
            kv_entry_unref(e);
            e = next;
        }
    }
}

struct kv_detached *kv_map_clear_locked(struct kv_map *m)
{
    m->clears++;
    if (atomic_load_explicit(&m->count, memory_order_relaxed) == 0)
        return NULL;
    struct kv_detached *d = malloc(sizeof *d);
    struct kv_entry **fresh = calloc(INIT_BUCKETS, sizeof *fresh);
    if (!d || !fresh) {
        free(d);
        free(fresh);
        release_in_place(m);
        atomic_store_explicit(&m->count, 0, memory_order_release);
        atomic_store_explicit(&m->bytes, 0, memory_order_release);
        return NULL;
    }
    /* Ownership of both tables and the map's references moves to d. */
    d->cur = m->cur;
    d->old = m->old;
    d->drained = m->drained;
    m->cur = (struct table){fresh, INIT_BUCKETS - 1};
    m->old = (struct table){NULL, 0};
    m->drained = 0;
    atomic_store_explicit(&m->count, 0, memory_order_release);
    atomic_store_explicit(&m->bytes, 0, memory_order_release);
    return d;
}

void kv_detached_free(struct kv_detached *d)
{
    if (!d)
        return;
    release_table(&d->old, d->drained);
    release_table(&d->cur, 0);
    free(d);
}

uint64_t kv_map_count(const struct kv_map *m)
{
    return atomic_load_explicit(&m->count, memory_order_acquire);
}

uint64_t kv_map_bytes(const struct kv_map *m)
{
    return atomic_load_explicit(&m->bytes, memory_order_acquire);
}

int kv_map_foreach(const struct kv_map *m, int (*cb)(const struct kv_entry *e, void *arg),
                   void *arg)
{
    int rc = walk_table(&m->old, m->drained, cb, arg);
    if (rc)
        return rc;
    return walk_table(&m->cur, 0, cb, arg);
}

/* ---- walks ----
 *
 * While a drain is in progress, cur has twice old's buckets and an entry of
 * old bucket g moves to cur bucket g or g + base. So "old[g] (if not yet
 * drained), cur[g], cur[g + base]" is a group no entry ever leaves: visiting
 * it in one go, between mutations, sees each of its entries exactly once.
 * Without a drain a group is the single cur bucket g. Growth is held off
 * while the walk is open, so the groups stay fixed; a drain already under
 * way may finish meanwhile, which moves entries only within their group. */

void kv_map_walk_begin(struct kv_map *m, struct kv_walk *w)
{
    m->walking = true;
    *w = (struct kv_walk){.base = m->old.slots ? m->old.mask + 1 : m->cur.mask + 1,
                          .next = 0,
                          .clears = m->clears};
}

static int visit_chain(const struct kv_entry *e, size_t *seen,
                       int (*cb)(const struct kv_entry *e, void *arg), void *arg)
{
    for (; e; e = e->next) {
        int rc = cb(e, arg);
        if (rc)
            return rc;
        *seen += KLEN(e) + e->vlen;
    }
    return 0;
}

int kv_map_walk_step(struct kv_map *m, struct kv_walk *w, size_t budget,
                     int (*cb)(const struct kv_entry *e, void *arg), void *arg)
{
    if (m->clears != w->clears)
        return LKV_ERESTART;
    size_t seen = 0;
    while (w->next < w->base && seen < budget) {
        size_t g = w->next++;
        int rc = 0;
        if (m->old.slots && g >= m->drained)
            rc = visit_chain(m->old.slots[g], &seen, cb, arg);
        for (size_t b = g; rc == 0 && b <= m->cur.mask; b += w->base)
            rc = visit_chain(m->cur.slots[b], &seen, cb, arg);
        if (rc)
            return rc;
    }
    return w->next < w->base ? 1 : 0;
}

void kv_map_walk_end(struct kv_map *m, struct kv_walk *w)
{
    (void)w;
    m->walking = false;
}
