/* recover: rebuilding the state at start: the meta file, the newest
 * snapshot, then the log after it replayed into the map. */
#ifndef LKV_NODE_RECOVER_H
#define LKV_NODE_RECOVER_H

#include "kv/kv_map.h"
#include "node/apply.h"
#include "stats/stats.h"
#include "util/io.h"
#include "wal/wal.h"

#include <stddef.h>
#include <stdint.h>

/* What recovery leaves behind. */
struct recover_result {
    struct wal *wal;     /* the open log, ready for appends; owned by the caller */
    uint64_t snap_index; /* index of the snapshot loaded (0 if none) */
    uint64_t last_index; /* last record in the log: every record up to it is in the map */
};

/* Loads the state on disk in `dir` into `map` (empty, with nobody else
 * using it yet) through `apply` (borrowed), writing a meta file first in
 * a new directory, opens the log, and records the recovery in `stats`. Returns 0 and fills *out, or a
 * negative LKV_E* code (LKV_ECORRUPT, LKV_EFORMAT, LKV_EIO, LKV_ENOMEM, ...)
 * with the file and reason in err; the map then holds part of the state
 * and must be thrown away. */
int recover_load(const char *dir, const struct io_ops *io, struct kv_map *map,
                 struct apply *apply, struct stats *stats, struct recover_result *out,
                 char *err, size_t errlen);

#endif
