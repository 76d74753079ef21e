/* rng: the simulator's one source of randomness, xoshiro256** seeded through
 * splitmix64, so that a 64-bit seed replays a whole run. */
#ifndef LKV_TESTS_SIM_RNG_H
#define LKV_TESTS_SIM_RNG_H

#include <stdbool.h>
#include <stdint.h>

struct rng {
    uint64_t s[4];
};

/* Advances *x and returns the next splitmix64 output (also a good mixer). */
uint64_t splitmix64(uint64_t *x);

void rng_seed(struct rng *g, uint64_t seed);
uint64_t rng_next(struct rng *g);

/* Uniform in [0, n); n >= 1. */
uint64_t rng_below(struct rng *g, uint64_t n);

/* Uniform in [lo, hi]; lo <= hi. */
uint64_t rng_range(struct rng *g, uint64_t lo, uint64_t hi);

/* True with probability per_mille / 1000. */
bool rng_chance(struct rng *g, unsigned per_mille);

#endif
