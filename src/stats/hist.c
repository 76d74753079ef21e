#include "stats/hist.h"

#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#define RELAXED memory_order_relaxed

/* Values below this have one bucket each. */
#define EXACT_LIMIT (2u * HIST_SUB_COUNT)

static unsigned bucket_of(uint64_t v)
{
    if (v < EXACT_LIMIT)
        return (unsigned)v;
    unsigned k = 63u - (unsigned)__builtin_clzll(v); /* v in [2^k, 2^(k+1)) */
    unsigned shift = k - HIST_SUB_BITS;
    unsigned sub = (unsigned)(v >> shift) - HIST_SUB_COUNT;
    return (shift + 1) * HIST_SUB_COUNT + sub;
}

static uint64_t bucket_lower(unsigned i)
{
    unsigned group = i / HIST_SUB_COUNT;
    unsigned sub = i % HIST_SUB_COUNT;
    if (group == 0)
        return sub;
    return (uint64_t)(HIST_SUB_COUNT + sub) << (group - 1);
}

/* Inclusive, so the last bucket's edge (2^64 - 1) is representable. */
static uint64_t bucket_upper(unsigned i)
{
    unsigned group = i / HIST_SUB_COUNT;
    uint64_t width = group == 0 ? 1 : (uint64_t)1 << (group - 1);
    return bucket_lower(i) + (width - 1);
}

void hist_record(struct hist *h, uint64_t v)
{
    atomic_fetch_add_explicit(&h->buckets[bucket_of(v)], 1, RELAXED);
    atomic_fetch_add_explicit(&h->sum, v, RELAXED);

    uint64_t inv = ~v;
    uint64_t cur = atomic_load_explicit(&h->min_inv, RELAXED);
    while (inv > cur &&
           !atomic_compare_exchange_weak_explicit(&h->min_inv, &cur, inv, RELAXED, RELAXED))
        ;
    cur = atomic_load_explicit(&h->max, RELAXED);
    while (v > cur && !atomic_compare_exchange_weak_explicit(&h->max, &cur, v, RELAXED, RELAXED))
        ;
}

void hist_reset(struct hist *h)
{
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        atomic_store_explicit(&h->buckets[i], 0, RELAXED);
    atomic_store_explicit(&h->sum, 0, RELAXED);
    atomic_store_explicit(&h->min_inv, 0, RELAXED);
    atomic_store_explicit(&h->max, 0, RELAXED);
}

uint64_t hist_count_le(const struct hist *h, uint64_t bound)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < HIST_BUCKETS && bucket_upper(i) <= bound; i++)
        n += atomic_load_explicit(&h->buckets[i], RELAXED);
    return n;
}

/* Smallest rank r with r >= count * permille / 1000, at least 1; written to
 * avoid overflowing count * permille. */
static uint64_t rank_of(uint64_t count, uint64_t permille)
{
    uint64_t r = count / 1000 * permille + ((count % 1000) * permille + 999) / 1000;
    return r == 0 ? 1 : r;
}

static uint64_t clamp(uint64_t v, uint64_t lo, uint64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The buckets are re-read here, so `count` (from an earlier pass) can be
 * smaller than what is now recorded; every rank is then still reached. */
static void fill_percentiles(const struct hist *h, struct hist_summary *s)
{
    static const uint64_t permille[4] = {500, 900, 990, 999};
    uint64_t *dst[4] = {&s->p50, &s->p90, &s->p99, &s->p999};
    uint64_t rank[4];
    for (int q = 0; q < 4; q++) {
        rank[q] = rank_of(s->count, permille[q]);
        *dst[q] = s->max;
    }
    uint64_t seen = 0;
    int q = 0;
    for (unsigned i = 0; i < HIST_BUCKETS && q < 4; i++) {
        seen += atomic_load_explicit(&h->buckets[i], RELAXED);
        uint64_t lo = bucket_lower(i);
        uint64_t mid = lo + (bucket_upper(i) - lo) / 2;
        for (; q < 4 && seen >= rank[q]; q++) {
            /* The top rank is the maximum itself, which is known exactly. */
            *dst[q] = rank[q] >= s->count ? s->max : clamp(mid, s->min, s->max);
        }
    }
}

void hist_summarize(const struct hist *h, struct hist_summary *out)
{
    memset(out, 0, sizeof *out);
    uint64_t count = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        count += atomic_load_explicit(&h->buckets[i], RELAXED);
    if (count == 0)
        return;
    out->count = count;
    out->sum = atomic_load_explicit(&h->sum, RELAXED);
    out->min = ~atomic_load_explicit(&h->min_inv, RELAXED);
    out->max = atomic_load_explicit(&h->max, RELAXED);
    if (out->min > out->max) {
        /* A racing first record has bumped its bucket but not yet min/max. */
        out->min = out->max;
    }
    out->avg = (double)out->sum / (double)count;
    fill_percentiles(h, out);
}
