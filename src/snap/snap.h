/* snap: checkpoints: the whole map written to a snapshot file (by a
 * background thread fed by the writer, so writes go on), finding and
 * loading the newest one at start. */
#ifndef LKV_SNAP_SNAP_H
#define LKV_SNAP_SNAP_H

#include "kv/kv_map.h"
#include "util/io.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SNAP_HDR_SIZE 64
#define SNAP_FORMAT_VERSION 1

/* What a snapshot file says about itself. */
struct snap_info {
    uint64_t index;   /* last log index whose effect it contains */
    uint64_t term;
    uint64_t records; /* keys */
    uint64_t bytes;   /* file size */
};

/* Writes the contents of `map` as the snapshot for `index` into dir:
 * snap-<index>.tmp, fsync, rename to snap-<index>.snap, fsync dir. The map
 * must not change during the call (used at shutdown, and by tests).
 * Returns 0 and fills *info, or LKV_ENOSPC / LKV_EIO with the reason in err;
 * the temp file is removed on failure and any older snapshot is untouched. */
int snap_write(const char *dir, const struct io_ops *io, const struct kv_map *map,
               uint64_t index, uint64_t term, struct snap_info *info, char *err, size_t errlen);

/* A checkpoint taken while writes go on: the map's writer thread feeds it a
 * step at a time, a background thread at idle priority writes the file. */
struct snap_job;

/* Writer thread, between batches, with every record up to `index` applied.
 * Opens a walk of the map (which holds off table growth until the job
 * ends) and starts the background thread. `dir` must outlive the job.
 * Returns 0 and sets *out, or LKV_ENOMEM. */
int snap_start(const char *dir, const struct io_ops *io, struct kv_map *map, uint64_t index,
               uint64_t term, struct snap_job **out);

/* Writer thread, between batches: serialises up to max_steps more pieces
 * of the map (about 256 KiB each) for the background thread, as far as its
 * buffers allow. Returns the pieces handed over (0 when it is busy or the
 * walk is complete), or LKV_ERESTART when the map was cleared since the
 * start: the job then fails with that code and a new one must be started. */
int snap_feed(struct snap_job *j, int max_steps);

/* Writer thread. Returns 1 when the job has finished: *result is then 0
 * (snapshot durable), LKV_ENOSPC / LKV_EIO, or LKV_ERESTART (abandoned);
 * returns 0 while it runs. On success *info (which may be NULL) describes
 * the file written, its size included, so callers never look at snapshot
 * files themselves. With `wait`, a job still being fed is abandoned and the
 * call returns once its thread is gone. */
int snap_poll(struct snap_job *j, bool wait, int *result, struct snap_info *info);

/* The index the job covers, and when it started (CLOCK_MONOTONIC ns). */
uint64_t snap_job_index(const struct snap_job *j);
uint64_t snap_job_started_ns(const struct snap_job *j);

/* Frees a job (waiting for it first, as snap_poll with wait). */
void snap_job_free(struct snap_job *j);

/* Finds the newest snap-*.snap in dir by index. Returns 1 and fills path
 * (pathlen bytes) and *index when one exists, 0 when none, LKV_EIO when the
 * directory cannot be read. */
int snap_find_latest(const char *dir, char *path, size_t pathlen, uint64_t *index);

/* Reads only the header of the snapshot at path, unverified beyond its own
 * checksum (enough to size the map before loading). Returns 0 or
 * LKV_ECORRUPT / LKV_EFORMAT / LKV_EIO. */
int snap_peek(const char *path, const struct io_ops *io, struct snap_info *info);

/* Called for each key of a snapshot being loaded; bytes valid during the
 * call only. Non-zero stops loading and is returned by snap_load. */
typedef int (*snap_load_cb)(const char *key, size_t klen, const char *value, size_t vlen,
                            void *arg);

/* Reads the snapshot at path in one streaming pass, handing each key to cb
 * as it is read, and checks magic, version, header and body checksums,
 * framing and record count. Returns 0 and fills *info, or LKV_ECORRUPT /
 * LKV_EFORMAT / LKV_EIO / LKV_ENOMEM (or cb's non-zero return) with the file
 * and reason in err: the keys cb received must then be thrown away. */
int snap_load(const char *path, const struct io_ops *io, snap_load_cb cb, void *arg,
              struct snap_info *info, char *err, size_t errlen);

/* Deletes snapshots older than keep_index and leftover *.tmp files. Returns
 * 0 or LKV_EIO (what could not be deleted is only logged). */
int snap_remove_older(const char *dir, const struct io_ops *io, uint64_t keep_index);

#endif
