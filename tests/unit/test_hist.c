/* Unit tests for stats/hist: exact counts and extremes, bounded percentile
 * error, hist_count_le at bucket edges, concurrent recording. */
#include "stats/hist.h"

#include <criterion/criterion.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The promise in hist.h is 1/64; allow a hair more for rounding. */
#define MAX_REL_ERR 0.016

static struct hist *hist_new(void)
{
    struct hist *h = calloc(1, sizeof *h);
    cr_assert_not_null(h);
    return h;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The nearest-rank percentile of sorted values, the reference. */
static uint64_t true_percentile(const uint64_t *sorted, size_t n, double q)
{
    double r = q * (double)n;
    size_t rank = (size_t)r;
    if ((double)rank < r)
        rank++;
    if (rank == 0)
        rank = 1;
    return sorted[rank - 1];
}

static void assert_close(uint64_t got, uint64_t want, const char *what)
{
    double diff = got > want ? (double)(got - want) : (double)(want - got);
    double allowed = MAX_REL_ERR * (double)want;
    cr_assert(diff <= allowed + 0.5, "%s: got %llu, want %llu (+-%.1f)", what,
              (unsigned long long)got, (unsigned long long)want, allowed);
}

/* Records `vals`, then checks every summary field against the sorted truth. */
static void check_distribution(uint64_t *vals, size_t n)
{
    struct hist *h = hist_new();
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        hist_record(h, vals[i]);
        sum += vals[i];
    }
    qsort(vals, n, sizeof vals[0], cmp_u64);
    struct hist_summary s;
    hist_summarize(h, &s);
    cr_assert_eq(s.count, n);
    cr_assert_eq(s.sum, sum);
    cr_assert_eq(s.min, vals[0]);
    cr_assert_eq(s.max, vals[n - 1]);
    cr_assert_float_eq(s.avg, (double)sum / (double)n, 1e-6 * s.avg);
    assert_close(s.p50, true_percentile(vals, n, 0.50), "p50");
    assert_close(s.p90, true_percentile(vals, n, 0.90), "p90");
    assert_close(s.p99, true_percentile(vals, n, 0.99), "p99");
    assert_close(s.p999, true_percentile(vals, n, 0.999), "p999");
    free(h);
}

/* A small deterministic generator so failures reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

Test(hist, zero_initialised_is_empty)
{
    static struct hist h; /* static storage: the way stats.c holds them */
    struct hist_summary s;
    memset(&s, 0xff, sizeof s);
    hist_summarize(&h, &s);
    cr_assert_eq(s.count, 0);
    cr_assert_eq(s.min, 0);
    cr_assert_eq(s.max, 0);
    cr_assert_eq(s.sum, 0);
    cr_assert_eq(s.p50, 0);
    cr_assert_eq(s.p999, 0);
    cr_assert_float_eq(s.avg, 0.0, 1e-12);
    cr_assert_eq(hist_count_le(&h, UINT64_MAX), 0);
}

Test(hist, single_value_is_reported_exactly)
{
    struct hist *h = hist_new();
    hist_record(h, 123457);
    struct hist_summary s;
    hist_summarize(h, &s);
    cr_assert_eq(s.count, 1);
    cr_assert_eq(s.min, 123457);
    cr_assert_eq(s.max, 123457);
    cr_assert_eq(s.sum, 123457);
    /* Clamping to [min, max] makes every percentile exact here. */
    cr_assert_eq(s.p50, 123457);
    cr_assert_eq(s.p90, 123457);
    cr_assert_eq(s.p99, 123457);
    cr_assert_eq(s.p999, 123457);
    free(h);
}

Test(hist, small_values_are_exact)
{
    uint64_t vals[1000];
    for (size_t i = 0; i < 1000; i++)
        vals[i] = i % 64;
    struct hist *h = hist_new();
    for (size_t i = 0; i < 1000; i++)
        hist_record(h, vals[i]);
    qsort(vals, 1000, sizeof vals[0], cmp_u64);
    struct hist_summary s;
    hist_summarize(h, &s);
    cr_assert_eq(s.p50, true_percentile(vals, 1000, 0.50));
    cr_assert_eq(s.p90, true_percentile(vals, 1000, 0.90));
    cr_assert_eq(s.p99, true_percentile(vals, 1000, 0.99));
    cr_assert_eq(s.min, 0);
    cr_assert_eq(s.max, 63);
    free(h);
}

Test(hist, uniform_percentiles_within_error_bound)
{
    size_t n = 100000;
    uint64_t *vals = malloc(n * sizeof *vals);
    cr_assert_not_null(vals);
    for (size_t i = 0; i < n; i++)
        vals[i] = i + 1;
    check_distribution(vals, n);
    free(vals);
}

Test(hist, long_tailed_percentiles_within_error_bound)
{
    /* Mostly fast requests around 200 us with a tail reaching 100 s. */
    size_t n = 200000;
    uint64_t *vals = malloc(n * sizeof *vals);
    cr_assert_not_null(vals);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rng_next();
        unsigned octave = (unsigned)(r % 100) < 90 ? 7 : 7 + (unsigned)(r >> 8) % 20;
        uint64_t base = (uint64_t)1 << octave;
        vals[i] = base + (r >> 32) % base;
        if (vals[i] > 100000000)
            vals[i] = 100000000;
    }
    check_distribution(vals, n);
    free(vals);
}

Test(hist, hundred_seconds_and_beyond_keep_exact_extremes)
{
    struct hist *h = hist_new();
    hist_record(h, 100000000); /* 100 s in microseconds */
    hist_record(h, 5);
    hist_record(h, UINT64_MAX);
    struct hist_summary s;
    hist_summarize(h, &s);
    cr_assert_eq(s.count, 3);
    cr_assert_eq(s.min, 5);
    cr_assert_eq(s.max, UINT64_MAX);
    assert_close(s.p50, 100000000, "p50 of {5, 1e8, max}");
    cr_assert_eq(s.p99, UINT64_MAX);
    cr_assert_eq(hist_count_le(h, 99999999), 1);
    cr_assert_eq(hist_count_le(h, UINT64_MAX), 3);
    free(h);
}

Test(hist, only_the_largest_value_sets_min)
{
    /* ~UINT64_MAX is 0, the "empty" encoding of the minimum. */
    struct hist *h = hist_new();
    hist_record(h, UINT64_MAX);
    struct hist_summary s;
    hist_summarize(h, &s);
    cr_assert_eq(s.count, 1);
    cr_assert_eq(s.min, UINT64_MAX);
    cr_assert_eq(s.max, UINT64_MAX);
    free(h);
}

Test(hist, zero_is_a_value)
{
    struct hist *h = hist_new();
    hist_record(h, 0);
    hist_record(h, 0);
    struct hist_summary s;
    hist_summarize(h, &s);
    cr_assert_eq(s.count, 2);
    cr_assert_eq(s.min, 0);
    cr_assert_eq(s.max, 0);
    cr_assert_eq(hist_count_le(h, 0), 2);
    free(h);
}

Test(hist, count_le_is_exact_at_bucket_edges)
{
    struct hist *h = hist_new();
    for (uint64_t v = 0; v < 20000; v++)
        hist_record(h, v);
    /* Every value below 64 has its own bucket; 2^k - 1 always ends one. */
    for (uint64_t b = 0; b < 64; b++)
        cr_assert_eq(hist_count_le(h, b), b + 1, "bound %llu", (unsigned long long)b);
    for (unsigned k = 7; k <= 14; k++) {
        uint64_t b = ((uint64_t)1 << k) - 1;
        cr_assert_eq(hist_count_le(h, b), b + 1, "bound %llu", (unsigned long long)b);
    }
    /* In [1024, 2048) buckets are 32 wide: 1024 + 32*j - 1 is an edge. */
    for (uint64_t j = 1; j <= 32; j++) {
        uint64_t b = 1024 + 32 * j - 1;
        cr_assert_eq(hist_count_le(h, b), b + 1, "bound %llu", (unsigned long long)b);
    }
    cr_assert_eq(hist_count_le(h, UINT64_MAX), 20000);
    free(h);
}

Test(hist, count_le_between_edges_is_conservative_and_close)
{
    struct hist *h = hist_new();
    for (uint64_t v = 0; v < 200000; v++)
        hist_record(h, v);
    const uint64_t bounds[] = {100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000};
    uint64_t prev = 0;
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        uint64_t got = hist_count_le(h, bounds[i]);
        uint64_t want = bounds[i] + 1;
        cr_assert_leq(got, want, "overcounted at %llu", (unsigned long long)bounds[i]);
        cr_assert_geq((double)got, (double)want * (1.0 - 1.0 / 32) - 1, "too far under at %llu",
                      (unsigned long long)bounds[i]);
        cr_assert_geq(got, prev);
        prev = got;
    }
    free(h);
}

Test(hist, reset_empties)
{
    struct hist *h = hist_new();
    for (uint64_t v = 1; v < 1000; v++)
        hist_record(h, v * 1000);
    hist_reset(h);
    struct hist_summary s;
    hist_summarize(h, &s);
    cr_assert_eq(s.count, 0);
    cr_assert_eq(s.sum, 0);
    cr_assert_eq(s.max, 0);
    cr_assert_eq(hist_count_le(h, UINT64_MAX), 0);
    hist_record(h, 7);
    hist_summarize(h, &s);
    cr_assert_eq(s.min, 7, "a stale minimum survived the reset");
    cr_assert_eq(s.max, 7);
    free(h);
}

#define PER_THREAD 200000

struct recorder {
    struct hist *h;
    uint64_t first; /* records first, first + 1, ... */
};

static void *record_cb(void *arg)
{
    struct recorder *r = arg;
    for (uint64_t i = 0; i < PER_THREAD; i++)
        hist_record(r->h, r->first + i);
    return NULL;
}

Test(hist, concurrent_recording_sums_exactly)
{
    struct hist *h = hist_new();
    struct recorder a = {h, 1}, b = {h, 1000000};
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, record_cb, &a), 0);
    cr_assert_eq(pthread_create(&tb, NULL, record_cb, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    struct hist_summary s;
    hist_summarize(h, &s);
    uint64_t n = PER_THREAD;
    uint64_t want_sum = n * a.first + n * (n - 1) / 2 + n * b.first + n * (n - 1) / 2;
    cr_assert_eq(s.count, 2 * n);
    cr_assert_eq(s.sum, want_sum);
    cr_assert_eq(s.min, a.first);
    cr_assert_eq(s.max, b.first + n - 1);
    cr_assert_eq(hist_count_le(h, UINT64_MAX), 2 * n);
    free(h);
}
