/* ratelimit.c — token buckets per sender (contract in ratelimit.h).
 *
 * Invariants
 *  RL-1  0 <= tokens <= burst in every bucket; a refund never lifts it over burst, so no
 *        sequence of accepted answers lets a client bank more than `burst` messages.
 *  RL-2  Deciding costs no allocation, no hashing and no system call beyond the caller's
 *        clock: a dropped message costs the coordinator O(1) (docs/security.md). */
#include "ratelimit.h"

#include <stdlib.h>

#include "util.h"

typedef struct {
    double tokens;
    double last;             /* time of the last refill; < 0: never used */
    double last_log;         /* time ratelimit_log_due last said 1; < 0: never */
    uint64_t unlogged;       /* drops since then */
} s_bucket_t;

struct ratelimit {
    double rate, burst, log_every_s;
    size_t n;
    s_bucket_t *buckets;     /* (n) */
    uint64_t dropped;        /* read by the metrics thread: relaxed atomics */
};

ratelimit_t *ratelimit_new(size_t n_keys, double rate, double burst, double log_every_s) {
    if (rate < 0 || burst < 0 || (rate > 0 && burst < 1)) return NULL;
    ratelimit_t *rl = cc_xcalloc(1, sizeof *rl);
    rl->rate = rate, rl->burst = burst, rl->log_every_s = log_every_s;
    rl->n = n_keys;
    rl->buckets = cc_xcalloc(n_keys ? n_keys : 1, sizeof *rl->buckets);
    for (size_t i = 0; i < n_keys; i++)
        rl->buckets[i] = (s_bucket_t){.tokens = burst, .last = -1.0, .last_log = -1.0};
    return rl;
}

void ratelimit_destroy(ratelimit_t **rl) {
    if (!rl || !*rl) return;
    free((*rl)->buckets);
    free(*rl);
    *rl = NULL;
}

int ratelimit_enabled(const ratelimit_t *rl) { return rl && rl->rate > 0; }

static void s_refill(const ratelimit_t *rl, s_bucket_t *b, double now) {
    if (b->last >= 0 && now > b->last) {
        b->tokens += (now - b->last) * rl->rate;
        if (b->tokens > rl->burst) b->tokens = rl->burst; /* RL-1 */
    }
    if (b->last < 0 || now > b->last) b->last = now;
}

int ratelimit_take(ratelimit_t *rl, size_t key, double now) {
    if (!ratelimit_enabled(rl) || key >= rl->n) return 1;
    s_bucket_t *b = &rl->buckets[key];
    s_refill(rl, b, now);
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 1;
    }
    b->unlogged++;
    __atomic_fetch_add(&rl->dropped, 1, __ATOMIC_RELAXED);
    return 0;
}

void ratelimit_refund(ratelimit_t *rl, size_t key) {
    if (!ratelimit_enabled(rl) || key >= rl->n) return;
    s_bucket_t *b = &rl->buckets[key];
    b->tokens += 1.0;
    if (b->tokens > rl->burst) b->tokens = rl->burst; /* RL-1 */
}

int ratelimit_log_due(ratelimit_t *rl, size_t key, double now, uint64_t *dropped) {
    if (!ratelimit_enabled(rl) || key >= rl->n) return 0;
    s_bucket_t *b = &rl->buckets[key];
    if (b->unlogged == 0 || (b->last_log >= 0 && now - b->last_log < rl->log_every_s)) return 0;
    *dropped = b->unlogged;
    b->unlogged = 0;
    b->last_log = now;
    return 1;
}

uint64_t ratelimit_dropped(const ratelimit_t *rl) {
    return rl ? __atomic_load_n(&rl->dropped, __ATOMIC_RELAXED) : 0;
}
