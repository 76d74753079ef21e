/* snap: checkpoints: the whole map written to a snapshot file (in a forked
 * child, so writes go on), finding and loading the newest one at start. */
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
 * must not change during the call (the caller is its only writer, or a
 * forked child). Returns 0 and fills *info, or LKV_ENOSPC / LKV_EIO with the
 * reason in err; the temp file is removed on failure and any older snapshot
 * is untouched. */
int snap_write(const char *dir, const struct io_ops *io, const struct kv_map *map,
               uint64_t index, uint64_t term, struct snap_info *info, char *err, size_t errlen);

/* A snapshot being written by a child process. */
struct snap_job;

/* Forks a child that runs snap_write and exits. Must be called by the map's
 * only writer, between batches: the child sees the map as of this moment.
 * Returns 0 and sets *out, or LKV_ENOMEM / LKV_EIO (fork failed). */
int snap_start(const char *dir, const struct io_ops *io, const struct kv_map *map,
               uint64_t index, uint64_t term, struct snap_job **out);

/* Checks on the child without blocking (or waiting for it when `wait`).
 * Returns 1 when it has finished: *result is then 0 (snapshot durable) or
 * LKV_ENOSPC / LKV_EIO; returns 0 while it runs. */
int snap_poll(struct snap_job *j, bool wait, int *result);

/* The index the job covers, and when it started (CLOCK_MONOTONIC ns). */
uint64_t snap_job_index(const struct snap_job *j);
uint64_t snap_job_started_ns(const struct snap_job *j);

/* Frees a finished job. */
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
