/* recover: rebuilding the state at start: the meta file (term, vote,
 * cluster id), the newest snapshot, then the log after it. Entries known to
 * be committed (those written while this node was the only voter) are
 * replayed into the map; the rest wait for Raft to commit them. A new data
 * directory gets its initial configuration as the log's first entry. */
#ifndef LKV_NODE_RECOVER_H
#define LKV_NODE_RECOVER_H

#include "kv/kv_map.h"
#include "node/apply.h"
#include "raft/raft.h"
#include "stats/stats.h"
#include "util/io.h"
#include "wal/meta.h"
#include "wal/wal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct recover_config {
    const char *dir;
    const struct io_ops *io;       /* never NULL */
    struct kv_map *map;            /* empty, nobody else using it yet */
    struct apply *apply;           /* borrowed */
    struct stats *stats;           /* borrowed */
    const char *self;              /* this node's host:port */
    const char (*peers)[128];      /* the other initial members (a new directory only) */
    size_t npeers;
    bool join;                     /* start with no configuration */
    uint64_t retain_entries;       /* trailing window kept before the snapshot */
    uint64_t segment_bytes;        /* log segment size; 0: 64 MiB (tests use less) */
};

/* What recovery leaves behind. Owned by the caller: recover_result_free. */
struct recover_result {
    struct wal *wal;                 /* the open log, ready for appends */
    struct meta meta;                /* term, vote, cluster id as on disk */
    uint64_t snap_index, snap_term;  /* the snapshot loaded (0: none) */
    struct raft_membership snap_conf; /* its configuration (n = 0: none recorded) */
    bool implicit_conf;              /* none anywhere: snap_conf is this node alone */
    struct raft_conf_at *confs;      /* configuration entries after snap_index, ascending */
    size_t n_confs;
    uint64_t applied;                /* every entry up to it is in the map */
    struct raft_membership applied_conf; /* the configuration in force at applied */
};

/* Loads the state on disk into cfg->map, opens the log, bootstraps a new
 * directory's configuration, and records the recovery in stats. Returns 0
 * and fills *out, or a negative LKV_E* code (LKV_ECORRUPT, LKV_EFORMAT,
 * LKV_EIO, LKV_ENOMEM, LKV_EINVAL for an impossible member set, ...) with
 * the file and reason in err; the map then holds part of the state and
 * must be thrown away. */
int recover_load(const struct recover_config *cfg, struct recover_result *out, char *err,
                 size_t errlen);

/* Frees what recover_load allocated, except the log (closed by its owner). */
void recover_result_free(struct recover_result *r);

#endif
