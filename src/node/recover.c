#include "node/recover.h"

#include "snap/snap.h"
#include "stats/stats.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "wal/meta.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define SEGMENT_BYTES (64u << 20)

/* Applies one replayed log record to the map. */
static int replay_cb(const struct wal_rec_hdr *h, const uint8_t *payload, void *arg)
{
    if (h->type != WAL_REC_COMMAND)
        return 0;
    return apply_load_command_locked(arg, payload, h->len);
}

static int load_cb(const char *key, size_t klen, const char *value, size_t vlen, void *arg)
{
    return apply_load_put_locked(arg, key, klen, value, vlen);
}

/* A rough count of the records the log may hold (space allocated to its
 * segments over a small record's size), used only to size the map. It reads
 * the log's file names, which are the wal module's business: to be replaced
 * by wal_estimate_records(dir). */
static uint64_t log_record_estimate(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    uint64_t bytes = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        if (strncmp(de->d_name, "log-", 4) == 0 && fstatat(dirfd(d), de->d_name, &st, 0) == 0)
            bytes += (uint64_t)st.st_blocks * 512;
    }
    closedir(d);
    return bytes / 160;
}

/* A new directory gets a meta file; an existing one must have a readable one. */
static int check_meta(const char *dir, const struct io_ops *io, char *err, size_t errlen)
{
    struct meta meta;
    int rc = meta_load(dir, io, &meta, err, errlen);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        meta = (struct meta){.version = META_FORMAT_VERSION};
        if ((rc = meta_store(dir, io, &meta)) != 0) {
            snprintf(err, errlen, "cannot write %s/meta: %s", dir, lkv_strerror(rc));
            return rc;
        }
    }
    return 0;
}

/* Loads the newest snapshot, if any, under the map's write lock (held by
 * the caller) and sets *index to the index it covers. */
static int load_snapshot_locked(const char *dir, const struct io_ops *io, struct kv_map *map,
                                struct apply *apply, uint64_t *index, char *err, size_t errlen)
{
    char path[4200];
    *index = 0;
    int found = snap_find_latest(dir, path, sizeof path, index);
    if (found < 0) {
        snprintf(err, errlen, "cannot read directory %s", dir);
        return found;
    }
    /* One table sized up front beats a dozen resizes while a million keys
     * load. A damaged header is reported by snap_load below. */
    struct snap_info peek = {0};
    if (found && snap_peek(path, io, &peek) != 0)
        peek.records = 0;
    kv_map_reserve_locked(map, peek.records + log_record_estimate(dir));
    if (!found)
        return 0;
    struct snap_info info = {0};
    int rc = snap_load(path, io, load_cb, apply, &info, err, errlen);
    apply_load_flush_locked(apply);
    if (rc != 0)
        return rc;
    if (info.index != *index) {
        snprintf(err, errlen, "%s: header says index %" PRIu64, path, info.index);
        return LKV_ECORRUPT;
    }
    return 0;
}

int recover_load(const char *dir, const struct io_ops *io, struct kv_map *map,
                 struct apply *apply, struct stats *stats, struct recover_result *out,
                 char *err, size_t errlen)
{
    uint64_t t0 = clock_now_ns();
    int rc = check_meta(dir, io, err, errlen);
    if (rc != 0)
        return rc;
    uint64_t index;
    kv_map_write_lock(map);
    rc = load_snapshot_locked(dir, io, map, apply, &index, err, errlen);
    if (rc != 0) {
        kv_map_write_unlock(map);
        return rc;
    }
    struct wal_options wopt = {.dir = dir, .io = io, .segment_bytes = SEGMENT_BYTES,
                               .preallocate = true};
    struct wal_recovery rec;
    struct wal *wal;
    rc = wal_open(&wopt, index, replay_cb, apply, &wal, &rec, err, errlen);
    apply_load_flush_locked(apply);
    kv_map_write_unlock(map);
    if (rc != 0)
        return rc;
    snap_remove_older(dir, io, index); /* leftover temp files, stale snapshots */
    uint64_t took_us = (clock_now_ns() - t0) / 1000;
    stats_record_recovery(stats, took_us, index, rec.replayed);
    LOG_INFO("event=recovered snapshot_index=%" PRIu64 " replayed=%" PRIu64 " last_index=%" PRIu64
             " keys=%" PRIu64 " segments=%" PRIu64 " torn_bytes=%" PRIu64 " duration_ms=%" PRIu64,
             index, rec.replayed, rec.last_index, kv_map_count(map), rec.segments,
             rec.torn_bytes, took_us / 1000);
    *out = (struct recover_result){.wal = wal, .snap_index = index,
                                   .last_index = wal_last_index(wal)};
    return 0;
}
