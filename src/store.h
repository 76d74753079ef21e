/* store: the key-value state behind one small API: submit writes, read keys,
 * recover at start. Writes complete asynchronously, in submission order. */
#ifndef LKV_STORE_H
#define LKV_STORE_H

#include "kv/kv_map.h"
#include "stats/stats.h"
#include "util/blob.h"
#include "util/io.h"

#include <stddef.h>
#include <stdint.h>

struct store;

struct store_config {
    const char *dir;             /* data directory; must exist and be locked by the caller */
    uint64_t checkpoint_bytes;   /* log growth that triggers a checkpoint */
    uint64_t max_memory;         /* key+value bytes; 0 = unlimited */
    const struct io_ops *io;     /* NULL = the real calls; tests inject faults here */
    struct stats *stats;         /* where batches, checkpoints and recovery are counted;
                                    borrowed, never NULL, must outlive the store */
    /* Called once, from the writer thread, when storage has failed for good
     * (e.g. fdatasync returned EIO): the process must stop. May be NULL. */
    void (*on_fatal)(int err);
};

/* A write request. Allocated and owned by the caller; it must stay valid from
 * store_submit() until done_cb has been called (exactly once). */
struct store_req {
    /* The command, in kv/kv_cmd.h's layout: exactly the payload its log
     * record gets. store_submit consumes this reference, on every path. */
    struct lkv_blob *cmd;
    /* Called on the store's writer thread once the write is durable and
     * visible to store_get() (status 0), or has failed (LKV_EINVAL and
     * LKV_ESHUTDOWN come from within store_submit): LKV_EINVAL (cmd is not
     * a well-formed command, nothing applied),
     * LKV_ENOSPC (disk full, nothing applied), LKV_EMEMLIMIT (--max-memory
     * reached, nothing applied), LKV_ESHUTDOWN (store closing, nothing
     * applied), LKV_EFATAL (storage failed, or the map had no memory left
     * for a write already durable: the outcome is unknown and the server
     * must stop). Must not block. */
    void (*done_cb)(struct store_req *req, int status);
    struct store_req *next; /* private to the store */
};

/* Opens the store in cfg->dir, recovering the state on disk. Returns 0 and
 * sets *out, or a negative LKV_E* code with a one-line reason in err. */
int store_open(const struct store_config *cfg, struct store **out, char *err, size_t errlen);

/* Queues a write; never waits for the disk. Thread-safe. A malformed
 * command completes at once with LKV_EINVAL. */
void store_submit(struct store *s, struct store_req *req);

/* Returns the entry for `key` with a new reference (drop it with
 * kv_entry_unref), or NULL when absent. Thread-safe; never waits for disk. */
struct kv_entry *store_get(struct store *s, const char *key, size_t klen);

/* True once a storage failure has made the store refuse all writes. */
int store_failed(const struct store *s);

/* Fills the store's part of the gauges (keys, bytes, log_bytes, last_index,
 * durable_index, commit_index, applied_index). Any thread. */
void store_gauges(struct store *s, struct stats_gauges *g);

/* Stops taking writes (later submits complete at once with LKV_ESHUTDOWN),
 * completes every queued write, writes a final checkpoint and stops the
 * writer thread. Reads keep working. Returns 0, or the first storage error
 * seen. Call once. */
int store_shutdown(struct store *s);

/* Frees the store. No other thread may use it any more. */
void store_free(struct store *s);

#endif
