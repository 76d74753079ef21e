/* apply: carrying out commands (kv/kv_cmd.h's layout) on the map, in log
 * order: a committed batch while the server runs, the snapshot's keys and
 * the replayed log at recovery. */
#ifndef LKV_NODE_APPLY_H
#define LKV_NODE_APPLY_H

#include "kv/kv_map.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Scratch space reused from batch to batch, and recovery's prefetch queue.
 * Used by one thread at a time, the map's only writer: recovery, then the
 * store's writer thread. */
struct apply;

/* A new applier for `map` (borrowed: it must outlive the applier). Returns
 * NULL when out of memory. */
struct apply *apply_new(struct kv_map *map);

/* Frees it; entries still in the prefetch queue are dropped, not put. */
void apply_free(struct apply *a);

/* Applies n commands in order; cmds[i] points at one command's bytes
 * (borrowed for the call). The map's write lock is taken once for all of
 * them, after every value has been copied into its map entry, so readers
 * wait only for the puts. Returns 0, or, with the map untouched,
 * LKV_ECORRUPT when a command does not decode or LKV_ENOMEM when there is
 * no memory for the entries. */
int apply_commands(struct apply *a, const struct iovec *cmds, size_t n);

/* Recovery. The caller holds the map's write lock from the first of these
 * calls until after apply_load_flush_locked(), on every path. */

/* One key of a snapshot being loaded; bytes borrowed for the call. Returns
 * 0 or LKV_ENOMEM. */
int apply_load_put_locked(struct apply *a, const char *key, size_t klen, const char *value,
                          size_t vlen);

/* One replayed log record's command (len bytes at p, borrowed). Returns 0,
 * LKV_ECORRUPT (it does not decode) or LKV_ENOMEM. */
int apply_load_command_locked(struct apply *a, const uint8_t *p, size_t len);

/* Puts whatever the prefetch queue still holds. */
void apply_load_flush_locked(struct apply *a);

#endif
