/* rng.c — see rng.h. */
#include "rng.h"

#include <math.h>

static uint64_t s_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t s_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void cc_rng_seed(cc_rng_t *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++) rng->s[i] = s_splitmix64(&seed);
}

uint64_t cc_rng_u64(cc_rng_t *rng) {
    uint64_t *s = rng->s;
    uint64_t result = s_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s_rotl(s[3], 45);
    return result;
}

double cc_rng_uniform(cc_rng_t *rng) { return (double)(cc_rng_u64(rng) >> 11) * 0x1.0p-53; }

uint64_t cc_rng_below(cc_rng_t *rng, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = cc_rng_u64(rng);
    while (r >= limit);
    return r % n;
}

double cc_rng_normal(cc_rng_t *rng) {
    double u1 = cc_rng_uniform(rng), u2 = cc_rng_uniform(rng);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double cc_rng_gamma(cc_rng_t *rng, double shape) {
    if (shape < 1.0) {
        /* Boost: Gamma(a) = Gamma(a+1) * U^(1/a). */
        double u = cc_rng_uniform(rng);
        if (u < 1e-300) u = 1e-300;
        return cc_rng_gamma(rng, shape + 1.0) * pow(u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = cc_rng_normal(rng), v = 1.0 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = cc_rng_uniform(rng);
        if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
        if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
    }
}

void cc_rng_shuffle(cc_rng_t *rng, uint32_t *idx, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)cc_rng_below(rng, i);
        uint32_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
