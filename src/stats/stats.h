/* stats: one server's counters and latency histograms, rendered as JSON
 * (/stats) and Prometheus text format 0.0.4 (/metrics). */
#ifndef LKV_STATS_H
#define LKV_STATS_H

#include "util/buf.h"

#include <stdint.h>

/* The routes requests are counted under. */
enum stats_route {
    ROUTE_KV_GET,
    ROUTE_KV_HEAD,
    ROUTE_KV_PUT,
    ROUTE_KV_DELETE,
    ROUTE_CLEAR,
    ROUTE_HEALTH,
    ROUTE_STATS,
    ROUTE_METRICS,
    ROUTE_OTHER, /* unknown paths, 405s, malformed keys before routing */
    ROUTE__COUNT
};

/* Stable lower-case name ("kv_get", "kv_head", "kv_put", "kv_delete",
 * "clear", "health", "stats", "metrics", "other"). */
const char *stats_route_name(enum stats_route r);

/* One set of counters: main makes one and hands it to the store and the
 * HTTP server, so two servers in one process (tests) count apart. */
struct stats;

/* A set with every counter at zero, owned by the caller; NULL when out of
 * memory. */
struct stats *stats_new(void);

/* Frees it (NULL is accepted); nobody may record into it any more. */
void stats_free(struct stats *st);

/* Every stats_* recording function below is lock-free and safe from any
 * thread. stats_reset() zeroes the counters (tests only: not concurrently
 * with recording). */
void stats_reset(struct stats *st);

/* One finished HTTP request: route, status code sent, and latency from the
 * first callback to the response being queued, in microseconds. */
void stats_record_request(struct stats *st, enum stats_route r, unsigned status,
                          uint64_t latency_us);

/* One group-commit batch written to the log: number of records, bytes
 * written, and the fdatasync latency in microseconds. */
void stats_record_batch(struct stats *st, uint64_t records, uint64_t bytes, uint64_t fsync_us);

/* One finished checkpoint: how long it took, the log index it covers and the
 * snapshot's size in bytes. */
void stats_record_checkpoint(struct stats *st, uint64_t duration_us, uint64_t index,
                             uint64_t bytes);

/* Start-up recovery: time taken, snapshot index loaded (0 if none), records
 * replayed from the log. Recorded once. */
void stats_record_recovery(struct stats *st, uint64_t duration_us, uint64_t snapshot_index,
                           uint64_t replayed);

/* Values owned elsewhere, passed in at render time. */
struct stats_gauges {
    uint64_t keys;          /* keys in the map */
    uint64_t bytes;         /* sum of key and value lengths */
    uint64_t log_bytes;     /* bytes of log since the last checkpoint */
    uint64_t last_index;    /* last log index applied */
    uint64_t durable_index; /* last log index written and fdatasync'ed */
    uint64_t commit_index;  /* last log index committed (single node: durable) */
    uint64_t applied_index; /* last log index whose command is in the map */
    uint64_t uptime_s;
    uint64_t connections;   /* currently open */
};

/* Appends the JSON document / Prometheus exposition of st's counters and
 * the gauges to `out`. Any thread. Returns 0 or LKV_ENOMEM (out->failed is
 * then set). */
int stats_render_json(const struct stats *st, struct buf *out, const struct stats_gauges *g);
int stats_render_prometheus(const struct stats *st, struct buf *out,
                            const struct stats_gauges *g);

/* Writes the shutdown summary of st to the log: one line per route that saw
 * requests (count, status counts, min/avg/p50/p99/max latency). */
void stats_log_summary(const struct stats *st);

#endif
