/* hist: a lock-free log-linear histogram of uint64 values (latencies in
 * microseconds, records per batch) with percentile summaries. */
#ifndef LKV_STATS_HIST_H
#define LKV_STATS_HIST_H

#include <stdint.h>

/*
 * Buckets
 * -------
 * Values below 64 each have their own bucket. Above that, every range
 * [2^k, 2^(k+1)) is split into 32 equal sub-buckets, so a bucket is never
 * wider than 1/32 of its lower edge. A percentile is reported as the middle
 * of its bucket (clamped to the recorded min and max), which keeps the
 * relative error at or below 1/64 (~1.6%). The whole uint64 range is covered;
 * nothing is clamped.
 */
#define HIST_SUB_BITS 5
#define HIST_SUB_COUNT (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 1) * HIST_SUB_COUNT)

/*
 * The struct is public, unlike most of the project's types, so that stats.c
 * can hold its histograms as static objects without an init step or an
 * allocation that could fail. Touch the fields only through the functions
 * below. An all-zero struct (static storage, or memset to 0) is a valid,
 * empty histogram: that is why the minimum is stored inverted.
 *
 * Counters use relaxed atomics: recording is wait-free apart from the short
 * CAS loops on min and max, and a reader running alongside writers sees
 * each counter at some recent value but no cross-counter snapshot.
 */
struct hist {
    _Atomic uint64_t buckets[HIST_BUCKETS];
    _Atomic uint64_t sum;     /* wraps after 2^64; ~584,000 years of microseconds */
    _Atomic uint64_t min_inv; /* ~min; 0 when empty, so zero-init works */
    _Atomic uint64_t max;
};

/* A point-in-time summary. All zero when the histogram is empty. */
struct hist_summary {
    uint64_t count;
    uint64_t min;                 /* exact */
    uint64_t max;                 /* exact */
    uint64_t sum;                 /* exact (modulo 2^64) */
    double avg;                   /* sum / count */
    uint64_t p50, p90, p99, p999; /* within ~1.6% of the true value */
};

/* Records one value. Lock-free; safe from any number of threads at once. */
void hist_record(struct hist *h, uint64_t v);

/* Empties the histogram. Must not run concurrently with hist_record() on the
 * same histogram: values recorded meanwhile may be partly kept. */
void hist_reset(struct hist *h);

/* Fills `out` (caller-owned). Percentiles use the nearest-rank rule.
 * Safe to call while other threads record: values recorded meanwhile may or
 * may not show, and sum, min and max may be out of step with count by those
 * in-flight values. */
void hist_summarize(const struct hist *h, struct hist_summary *out);

/* Number of recorded values <= bound. Exact when bound is the upper edge of a
 * bucket (any bound below 64, any 2^k - 1, and in general any value whose
 * successor starts a bucket); otherwise it counts only whole buckets below
 * bound, so it never overcounts and is short by at most one bucket. Safe
 * while others record; since counts only grow, later calls with a larger
 * bound never return less than earlier calls with a smaller one. */
uint64_t hist_count_le(const struct hist *h, uint64_t bound);

#endif
