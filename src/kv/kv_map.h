/* kv_map: the in-memory map from key bytes to refcounted immutable entries. */
#ifndef LKV_KV_MAP_H
#define LKV_KV_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Concurrency model
 * -----------------
 * Readers (any number of threads) call kv_map_get(), which takes the map's
 * read lock just long enough to find the entry and take a reference.
 * Exactly one writer thread at a time mutates the map: it brackets a batch of
 * *_locked calls with kv_map_write_lock()/kv_map_write_unlock(). Because the
 * writer is the only mutator, it may also read the map (kv_map_foreach) without
 * any lock between batches.
 *
 * A growing map resizes incrementally: each mutation moves a bounded number
 * of buckets to the new table, so no single write pays for a full rehash.
 * kv_map_clear_locked() detaches the whole table in O(1); the entries are
 * released later by kv_detached_free(), outside the lock.
 */

/* The longest key an entry can hold (the --max-key-bytes ceiling). A log
 * record or snapshot naming a longer key is damaged. */
#define KV_MAX_KEY_BYTES 65536

/* One key and its value in a single allocation. Immutable once it has been
 * handed to kv_map_put_locked(); shared by reference count. */
struct kv_entry;

/* Allocates an entry with a copy of `key` and room for `vlen` value bytes
 * (uninitialised: fill them through kv_entry_value_mut() before publishing).
 * Reference count starts at 1, owned by the caller. Returns NULL when out
 * of memory, or when klen is not 1..KV_MAX_KEY_BYTES or vlen > UINT32_MAX
 * (callers check those first). */
struct kv_entry *kv_entry_new(const char *key, size_t klen, size_t vlen);

/* Writable value bytes; only valid before the entry is published. */
char *kv_entry_value_mut(struct kv_entry *e);

const char *kv_entry_key(const struct kv_entry *e);
size_t kv_entry_klen(const struct kv_entry *e);
const char *kv_entry_value(const struct kv_entry *e);
size_t kv_entry_vlen(const struct kv_entry *e);

/* Reference counting, safe from any thread. The last unref frees the entry. */
void kv_entry_ref(struct kv_entry *e);
void kv_entry_unref(struct kv_entry *e);

struct kv_map;

/* Creates an empty map. Returns NULL when out of memory. */
struct kv_map *kv_map_new(void);

/* Frees the map and drops its references. No other thread may use it. */
void kv_map_free(struct kv_map *m);

/* Looks up `key`; on a hit returns the entry with a new reference the caller
 * must drop with kv_entry_unref(); returns NULL when absent. Any thread. */
struct kv_entry *kv_map_get(struct kv_map *m, const char *key, size_t klen);

/* Sizes the table for about n keys at once, rehashing every entry now
 * instead of over the next puts: meant for recovery, where the number of
 * keys about to be loaded is roughly known and nothing else is waiting.
 * Never shrinks. Returns 0, or LKV_ENOMEM with the map unchanged. */
int kv_map_reserve_locked(struct kv_map *m, uint64_t n);

/* Starts fetching the bucket where `e` will go into the cache, so that a
 * put issued a few entries later does not wait for memory. A hint only;
 * writer thread, before e is put. */
void kv_map_prefetch(const struct kv_map *m, const struct kv_entry *e);

/* Write lock around a batch of *_locked calls. Writer thread only. */
void kv_map_write_lock(struct kv_map *m);
void kv_map_write_unlock(struct kv_map *m);

/* Inserts or replaces the entry for e's key. Consumes the caller's reference
 * to `e`; the replaced entry (if any) loses the map's reference. Returns 0, or
 * LKV_ENOMEM if the table could not grow (the entry is still inserted: the
 * map only becomes slower, never wrong). */
int kv_map_put_locked(struct kv_map *m, struct kv_entry *e);

/* Removes `key`; returns true if it was present. */
bool kv_map_delete_locked(struct kv_map *m, const char *key, size_t klen);

/* The contents a clear removed, still holding the map's references. */
struct kv_detached;

/* Empties the map in O(1) and returns the old contents (NULL if the map was
 * already empty or if memory for the fresh table is lacking, in which case the
 * entries are released in place before returning). */
struct kv_detached *kv_map_clear_locked(struct kv_map *m);

/* Drops the references held by `d` and frees it. NULL is accepted. Needs no
 * lock: call it after kv_map_write_unlock(). */
void kv_detached_free(struct kv_detached *d);

/* Number of keys, and the sum of key and value lengths. Any thread; the
 * values are exact after kv_map_write_unlock() and never torn. */
uint64_t kv_map_count(const struct kv_map *m);
uint64_t kv_map_bytes(const struct kv_map *m);

/* Calls cb for every entry, in unspecified order, until cb returns non-zero
 * (which is then returned); returns 0 after a full walk. Only the writer
 * thread, between batches, may call it. */
int kv_map_foreach(const struct kv_map *m, int (*cb)(const struct kv_entry *e, void *arg),
                   void *arg);

/* A walk the writer thread advances a step at a time between batches while
 * writes go on: the source of a fuzzy snapshot. Every key that is in the
 * map for the whole walk is seen exactly once, with its value at the moment
 * its bucket group was visited; a key put or deleted during the walk may or
 * may not be seen, but never twice. The table does not grow while a walk is
 * open (chains only get longer). A clear ends the walk's validity. */
struct kv_walk {
    size_t base;     /* bucket groups: g, g + base, ... of cur, and old[g] */
    size_t next;     /* next group to visit */
    uint64_t clears; /* the map's clear count at begin */
};

/* Writer thread. Only one walk may be open at a time. */
void kv_map_walk_begin(struct kv_map *m, struct kv_walk *w);

/* Writer thread, between batches (no lock needed: it is the only mutator).
 * Visits whole bucket groups, calling cb for each entry, until the entries
 * visited this call hold at least `budget` key and value bytes or the map is
 * done. Returns 1 when groups remain, 0 when the walk is complete,
 * LKV_ERESTART when the map was cleared since begin, or cb's non-zero
 * return. */
int kv_map_walk_step(struct kv_map *m, struct kv_walk *w, size_t budget,
                     int (*cb)(const struct kv_entry *e, void *arg), void *arg);

/* Writer thread: closes the walk (the table may grow again). */
void kv_map_walk_end(struct kv_map *m, struct kv_walk *w);

#endif
