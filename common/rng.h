/* rng.h — xoshiro256** pseudo-random generator: seeded, portable, reproducible bit for bit.
 * Every random choice in Concord (initial weights, shuffling, dropout, splits) draws from an
 * explicitly seeded cc_rng_t so that a run is reproducible from its seed. */
#ifndef CONCORD_RNG_H
#define CONCORD_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} cc_rng_t;

void cc_rng_seed(cc_rng_t *rng, uint64_t seed);
uint64_t cc_rng_u64(cc_rng_t *rng);
/* Uniform in [0, 1). */
double cc_rng_uniform(cc_rng_t *rng);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint64_t cc_rng_below(cc_rng_t *rng, uint64_t n);
/* Standard normal (Box–Muller). */
double cc_rng_normal(cc_rng_t *rng);
/* Gamma(shape, 1) (Marsaglia–Tsang), shape > 0. */
double cc_rng_gamma(cc_rng_t *rng, double shape);
/* Fisher–Yates shuffle of idx[0..n). */
void cc_rng_shuffle(cc_rng_t *rng, uint32_t *idx, size_t n);

#endif
