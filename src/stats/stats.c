#include "stats/stats.h"

#include "stats/hist.h"
#include "util/err.h"
#include "util/log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RELAXED memory_order_relaxed

/* Status codes the server sends (see CONTRACT.md); anything else is "other". */
static const unsigned status_codes[] = {200, 400, 404, 405, 408, 413, 431, 500, 503, 507};
#define N_CODES (sizeof status_codes / sizeof status_codes[0])
#define SLOT_OTHER N_CODES

static const char *const route_names[ROUTE__COUNT] = {
    [ROUTE_KV_GET] = "kv_get",       [ROUTE_KV_HEAD] = "kv_head", [ROUTE_KV_PUT] = "kv_put",
    [ROUTE_KV_DELETE] = "kv_delete", [ROUTE_CLEAR] = "clear",     [ROUTE_HEALTH] = "health",
    [ROUTE_STATS] = "stats",         [ROUTE_METRICS] = "metrics", [ROUTE_OTHER] = "other",
};

/* Prometheus `le` bounds for every duration histogram: the label text and
 * the same bound in microseconds, the histograms' unit. */
static const struct {
    const char *label;
    uint64_t us;
} le_bounds[] = {
    {"0.0001", 100},  {"0.00025", 250}, {"0.0005", 500},  {"0.001", 1000},
    {"0.0025", 2500}, {"0.005", 5000},  {"0.01", 10000},  {"0.025", 25000},
    {"0.05", 50000},  {"0.1", 100000},  {"0.25", 250000}, {"0.5", 500000},
    {"1", 1000000},   {"2.5", 2500000}, {"5", 5000000},   {"10", 10000000},
};
#define N_LE (sizeof le_bounds / sizeof le_bounds[0])

struct route_stats {
    _Atomic uint64_t status[N_CODES + 1];
    struct hist latency_us;
};

/* Zeroed memory is the empty state (hist.h allows it). The "last
 * checkpoint" and recovery fields are separate atomics: a reader racing a
 * checkpoint may pair fields from two checkpoints, which is acceptable for
 * metrics. Any thread, lock-free. */
struct stats {
    struct route_stats routes[ROUTE__COUNT];
    struct hist batch_records; /* one value per batch: its record count */
    struct hist fsync_us;
    _Atomic uint64_t bytes_written;
    struct hist checkpoint_us;
    _Atomic uint64_t ckpt_last_us;
    _Atomic uint64_t ckpt_last_index;
    _Atomic uint64_t ckpt_last_bytes;
    _Atomic uint64_t recovery_us;
    _Atomic uint64_t recovery_snapshot_index;
    _Atomic uint64_t recovery_replayed;
};

struct stats *stats_new(void)
{
    return calloc(1, sizeof(struct stats));
}

void stats_free(struct stats *st)
{
    free(st);
}

const char *stats_route_name(enum stats_route r)
{
    return (unsigned)r < ROUTE__COUNT ? route_names[r] : route_names[ROUTE_OTHER];
}

static size_t status_slot(unsigned status)
{
    for (size_t i = 0; i < N_CODES; i++) {
        if (status_codes[i] == status)
            return i;
    }
    return SLOT_OTHER;
}

void stats_reset(struct stats *st)
{
    for (size_t r = 0; r < ROUTE__COUNT; r++) {
        for (size_t i = 0; i <= N_CODES; i++)
            atomic_store_explicit(&st->routes[r].status[i], 0, RELAXED);
        hist_reset(&st->routes[r].latency_us);
    }
    hist_reset(&st->batch_records);
    hist_reset(&st->fsync_us);
    hist_reset(&st->checkpoint_us);
    _Atomic uint64_t *const scalars[] = {
        &st->bytes_written,     &st->ckpt_last_us, &st->ckpt_last_index,
        &st->ckpt_last_bytes,   &st->recovery_us,  &st->recovery_snapshot_index,
        &st->recovery_replayed,
    };
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++)
        atomic_store_explicit(scalars[i], 0, RELAXED);
}

/* An out-of-range route is counted as ROUTE_OTHER rather than trusted as an
 * index. */
void stats_record_request(struct stats *st, enum stats_route r, unsigned status, uint64_t latency_us)
{
    struct route_stats *rs = &st->routes[(unsigned)r < ROUTE__COUNT ? r : ROUTE_OTHER];
    atomic_fetch_add_explicit(&rs->status[status_slot(status)], 1, RELAXED);
    hist_record(&rs->latency_us, latency_us);
}

void stats_record_batch(struct stats *st, uint64_t records, uint64_t bytes, uint64_t fsync_us)
{
    hist_record(&st->batch_records, records);
    hist_record(&st->fsync_us, fsync_us);
    atomic_fetch_add_explicit(&st->bytes_written, bytes, RELAXED);
}

void stats_record_checkpoint(struct stats *st, uint64_t duration_us, uint64_t index, uint64_t bytes)
{
    hist_record(&st->checkpoint_us, duration_us);
    atomic_store_explicit(&st->ckpt_last_us, duration_us, RELAXED);
    atomic_store_explicit(&st->ckpt_last_index, index, RELAXED);
    atomic_store_explicit(&st->ckpt_last_bytes, bytes, RELAXED);
}

void stats_record_recovery(struct stats *st, uint64_t duration_us, uint64_t snapshot_index, uint64_t replayed)
{
    atomic_store_explicit(&st->recovery_us, duration_us, RELAXED);
    atomic_store_explicit(&st->recovery_snapshot_index, snapshot_index, RELAXED);
    atomic_store_explicit(&st->recovery_replayed, replayed, RELAXED);
}

static uint64_t load(const _Atomic uint64_t *p)
{
    return atomic_load_explicit(p, RELAXED);
}

static uint64_t route_count(const struct route_stats *rs)
{
    uint64_t n = 0;
    for (size_t i = 0; i <= N_CODES; i++)
        n += load(&rs->status[i]);
    return n;
}

/* ---- JSON ---- */

static void json_summary(struct buf *out, const char *key, const struct hist_summary *s)
{
    buf_printf(out,
               "\"%s\":{\"min\":%" PRIu64 ",\"avg\":%.2f,\"p50\":%" PRIu64 ",\"p90\":%" PRIu64
               ",\"p99\":%" PRIu64 ",\"p999\":%" PRIu64 ",\"max\":%" PRIu64 "}",
               key, s->min, s->avg, s->p50, s->p90, s->p99, s->p999, s->max);
}

static void json_route(struct buf *out, const struct stats *st, enum stats_route r)
{
    const struct route_stats *rs = &st->routes[r];
    struct hist_summary s;
    hist_summarize(&rs->latency_us, &s);
    buf_printf(out, "\"%s\":{\"count\":%" PRIu64 ",\"status\":{", route_names[r], route_count(rs));
    for (size_t i = 0; i < N_CODES; i++)
        buf_printf(out, "\"%u\":%" PRIu64 ",", status_codes[i], load(&rs->status[i]));
    buf_printf(out, "\"other\":%" PRIu64 "},", load(&rs->status[SLOT_OTHER]));
    json_summary(out, "latency_us", &s);
    buf_printf(out, "}");
}

static void json_log(struct buf *out, const struct stats *st, const struct stats_gauges *g)
{
    struct hist_summary batches, fsync;
    hist_summarize(&st->batch_records, &batches);
    hist_summarize(&st->fsync_us, &fsync);
    buf_printf(out, "\"log\":{\"batches\":%" PRIu64 ",\"records\":%" PRIu64 ",", batches.count,
               batches.sum);
    json_summary(out, "records_per_batch", &batches);
    buf_printf(out, ",\"bytes_written\":%" PRIu64 ",", load(&st->bytes_written));
    json_summary(out, "fsync_us", &fsync);
    buf_printf(out,
               ",\"log_bytes\":%" PRIu64 ",\"last_index\":%" PRIu64 ",\"durable_index\":%" PRIu64
               ",\"commit_index\":%" PRIu64 ",\"applied_index\":%" PRIu64 "}",
               g->log_bytes, g->last_index, g->durable_index, g->commit_index, g->applied_index);
}

static void json_checkpoints(struct buf *out, const struct stats *st)
{
    struct hist_summary s;
    hist_summarize(&st->checkpoint_us, &s);
    buf_printf(out,
               "\"checkpoints\":{\"count\":%" PRIu64 ",\"total_duration_us\":%" PRIu64
               ",\"last_duration_us\":%" PRIu64 ",\"last_index\":%" PRIu64
               ",\"last_bytes\":%" PRIu64 ",",
               s.count, s.sum, load(&st->ckpt_last_us), load(&st->ckpt_last_index),
               load(&st->ckpt_last_bytes));
    json_summary(out, "duration_us", &s);
    buf_printf(out, "}");
}

int stats_render_json(const struct stats *st, struct buf *out, const struct stats_gauges *g)
{
    buf_printf(out,
               "{\"uptime_s\":%" PRIu64 ",\"keys\":%" PRIu64 ",\"bytes\":%" PRIu64
               ",\"connections\":%" PRIu64 ",\"requests\":{",
               g->uptime_s, g->keys, g->bytes, g->connections);
    for (int r = 0; r < ROUTE__COUNT; r++) {
        if (r > 0)
            buf_printf(out, ",");
        json_route(out, st, (enum stats_route)r);
    }
    buf_printf(out, "},");
    json_log(out, st, g);
    buf_printf(out, ",");
    json_checkpoints(out, st);
    buf_printf(out,
               ",\"recovery\":{\"duration_us\":%" PRIu64 ",\"snapshot_index\":%" PRIu64
               ",\"replayed\":%" PRIu64 "}}\n",
               load(&st->recovery_us), load(&st->recovery_snapshot_index),
               load(&st->recovery_replayed));
    return out->failed ? LKV_ENOMEM : 0;
}

/* ---- Prometheus text format 0.0.4 ---- */

/* Microseconds as decimal seconds, exactly, without going through double. */
static void prom_seconds(char *dst, size_t size, uint64_t us)
{
    snprintf(dst, size, "%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);
}

static void prom_family(struct buf *out, const char *name, const char *type, const char *help)
{
    buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_scalar(struct buf *out, const char *name, const char *type, const char *help,
                        uint64_t v)
{
    prom_family(out, name, type, help);
    buf_printf(out, "%s %" PRIu64 "\n", name, v);
}

static void prom_scalar_seconds(struct buf *out, const char *name, const char *help, uint64_t us)
{
    char s[48];
    prom_seconds(s, sizeof s, us);
    prom_family(out, name, "gauge", help);
    buf_printf(out, "%s %s\n", name, s);
}

/* One histogram series of a family whose HELP/TYPE is already written.
 * `labels` is "" or `key="value",` (trailing comma included). The buckets
 * are read before the count, and counts only grow, so the output is
 * cumulative and ends at _count even while requests are being recorded. */
static void prom_hist_series(struct buf *out, const char *name, const char *labels,
                             const struct hist *h)
{
    for (size_t i = 0; i < N_LE; i++) {
        buf_printf(out, "%s_bucket{%sle=\"%s\"} %" PRIu64 "\n", name, labels, le_bounds[i].label,
                   hist_count_le(h, le_bounds[i].us));
    }
    struct hist_summary s;
    hist_summarize(h, &s);
    char sum[48];
    prom_seconds(sum, sizeof sum, s.sum);
    buf_printf(out, "%s_bucket{%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, s.count);
    /* Drop the trailing comma for the _sum and _count label sets. */
    int n = (int)strlen(labels);
    if (n > 0) {
        buf_printf(out, "%s_sum{%.*s} %s\n%s_count{%.*s} %" PRIu64 "\n", name, n - 1, labels, sum,
                   name, n - 1, labels, s.count);
    } else {
        buf_printf(out, "%s_sum %s\n%s_count %" PRIu64 "\n", name, sum, name, s.count);
    }
}

static void prom_requests(struct buf *out, const struct stats *st)
{
    const char *name = "lkv_http_requests_total";
    prom_family(out, name, "counter", "HTTP requests finished, by route and status code.");
    for (int r = 0; r < ROUTE__COUNT; r++) {
        const struct route_stats *rs = &st->routes[r];
        for (size_t i = 0; i < N_CODES; i++) {
            buf_printf(out, "%s{route=\"%s\",code=\"%u\"} %" PRIu64 "\n", name, route_names[r],
                       status_codes[i], load(&rs->status[i]));
        }
        buf_printf(out, "%s{route=\"%s\",code=\"other\"} %" PRIu64 "\n", name, route_names[r],
                   load(&rs->status[SLOT_OTHER]));
    }

    name = "lkv_http_request_duration_seconds";
    prom_family(out, name, "histogram",
                "Time from a request's arrival to its response being queued.");
    for (int r = 0; r < ROUTE__COUNT; r++) {
        char labels[64];
        snprintf(labels, sizeof labels, "route=\"%s\",", route_names[r]);
        prom_hist_series(out, name, labels, &st->routes[r].latency_us);
    }
}

static void prom_log(struct buf *out, const struct stats *st, const struct stats_gauges *g)
{
    struct hist_summary b;
    hist_summarize(&st->batch_records, &b);
    prom_scalar(out, "lkv_log_batches_total", "counter",
                "Group-commit batches written and fdatasync'ed.", b.count);
    prom_scalar(out, "lkv_log_records_total", "counter", "Records written to the log.", b.sum);
    prom_scalar(out, "lkv_log_bytes_written_total", "counter", "Bytes written to the log.",
                load(&st->bytes_written));
    prom_family(out, "lkv_log_fsync_duration_seconds", "histogram",
                "Time one fdatasync of the log took.");
    prom_hist_series(out, "lkv_log_fsync_duration_seconds", "", &st->fsync_us);
    prom_scalar(out, "lkv_log_bytes", "gauge", "Bytes of log since the last checkpoint.",
                g->log_bytes);
    prom_scalar(out, "lkv_log_last_index", "gauge", "Index of the last log record applied.",
                g->last_index);
    prom_scalar(out, "lkv_log_durable_index", "gauge",
                "Index of the last log record written and fdatasync'ed.", g->durable_index);
    prom_scalar(out, "lkv_log_commit_index", "gauge",
                "Index of the last log record committed (on a single node: durable).",
                g->commit_index);
    prom_scalar(out, "lkv_log_applied_index", "gauge",
                "Index of the last log record whose command is in the map.", g->applied_index);
}

static void prom_checkpoints(struct buf *out, const struct stats *st)
{
    struct hist_summary s;
    hist_summarize(&st->checkpoint_us, &s);
    prom_scalar(out, "lkv_checkpoints_total", "counter", "Checkpoints completed.", s.count);
    prom_family(out, "lkv_checkpoint_duration_seconds", "histogram", "Time one checkpoint took.");
    prom_hist_series(out, "lkv_checkpoint_duration_seconds", "", &st->checkpoint_us);
    prom_scalar_seconds(out, "lkv_checkpoint_last_duration_seconds",
                        "Duration of the most recent checkpoint.", load(&st->ckpt_last_us));
    prom_scalar(out, "lkv_checkpoint_last_index", "gauge",
                "Log index covered by the most recent checkpoint.",
                load(&st->ckpt_last_index));
    prom_scalar(out, "lkv_checkpoint_last_bytes", "gauge",
                "Size of the most recent snapshot file in bytes.", load(&st->ckpt_last_bytes));
}

static void prom_recovery(struct buf *out, const struct stats *st)
{
    prom_scalar_seconds(out, "lkv_recovery_duration_seconds", "Time start-up recovery took.",
                        load(&st->recovery_us));
    prom_scalar(out, "lkv_recovery_snapshot_index", "gauge",
                "Log index of the snapshot loaded at start-up (0 if none).",
                load(&st->recovery_snapshot_index));
    prom_scalar(out, "lkv_recovery_replayed_records", "gauge", "Log records replayed at start-up.",
                load(&st->recovery_replayed));
}

int stats_render_prometheus(const struct stats *st, struct buf *out,
                            const struct stats_gauges *g)
{
    prom_scalar(out, "lkv_uptime_seconds", "gauge", "Seconds since the server started.",
                g->uptime_s);
    prom_scalar(out, "lkv_keys", "gauge", "Keys currently stored.", g->keys);
    prom_scalar(out, "lkv_data_bytes", "gauge", "Sum of the lengths of all keys and values.",
                g->bytes);
    prom_scalar(out, "lkv_open_connections", "gauge", "HTTP connections currently open.",
                g->connections);
    prom_requests(out, st);
    prom_log(out, st, g);
    prom_checkpoints(out, st);
    prom_recovery(out, st);
    return out->failed ? LKV_ENOMEM : 0;
}

/* ---- shutdown summary ---- */

struct line {
    char text[768];
    size_t len;
};

/* Appends to a fixed line; text past the end is dropped (the log truncates
 * long lines anyway). */
static void line_printf(struct line *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line_printf(struct line *l, const char *fmt, ...)
{
    if (l->len >= sizeof l->text - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->text + l->len, sizeof l->text - l->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        l->len += (size_t)n < sizeof l->text - l->len ? (size_t)n : sizeof l->text - 1 - l->len;
}

void stats_log_summary(const struct stats *st)
{
    for (int r = 0; r < ROUTE__COUNT; r++) {
        const struct route_stats *rs = &st->routes[r];
        uint64_t count = route_count(rs);
        if (count == 0)
            continue;
        struct line l = {.len = 0};
        line_printf(&l, "event=request_summary route=%s count=%" PRIu64, route_names[r], count);
        for (size_t i = 0; i <= N_CODES; i++) {
            uint64_t n = load(&rs->status[i]);
            if (n == 0)
                continue;
            if (i == SLOT_OTHER)
                line_printf(&l, " other=%" PRIu64, n);
            else
                line_printf(&l, " %u=%" PRIu64, status_codes[i], n);
        }
        struct hist_summary s;
        hist_summarize(&rs->latency_us, &s);
        line_printf(&l,
                    " min_us=%" PRIu64 " avg_us=%.1f p50_us=%" PRIu64 " p90_us=%" PRIu64
                    " p99_us=%" PRIu64 " p999_us=%" PRIu64 " max_us=%" PRIu64,
                    s.min, s.avg, s.p50, s.p90, s.p99, s.p999, s.max);
        LOG_INFO("%s", l.text);
    }
}
