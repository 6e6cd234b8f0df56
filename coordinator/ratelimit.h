/* ratelimit.h — per-sender token buckets: the coordinator drops a flooding client's excess
 * messages before it pays for verifying them (docs/security.md, "Flooding").
 *
 * One bucket per key; the coordinator's keys are the registry index of the identity the
 * connection authenticated as (the ZAP user id with CURVE, the routing id without), and one
 * shared key for everything else. A message costs one token, whatever its size; tokens
 * come back at `rate` per second up to `burst`. A message the coordinator accepted as the
 * answer to one of its tasks gets its token back (ratelimit_refund): answers are bounded by
 * the tasks the coordinator sends, so a well-behaved client only pays for its Hellos and
 * heartbeats and its bucket never runs dry — its updates are never dropped, however large
 * or frequent the rounds.
 *
 * rate 0 turns the limiter off: every message passes and nothing is counted.
 * One thread (the poll loop) calls everything but ratelimit_dropped, which the metrics
 * thread may read at any time. */
#ifndef CONCORD_RATELIMIT_H
#define CONCORD_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ratelimit ratelimit_t;

/* n_keys buckets, all full. log_every_s: how often ratelimit_log_due says yes per key.
 * Returns NULL only if rate or burst is negative, or burst < 1 with rate > 0. */
ratelimit_t *ratelimit_new(size_t n_keys, double rate, double burst, double log_every_s);
void ratelimit_destroy(ratelimit_t **rl);   /* accepts NULL; nulls *rl */

/* Takes one token from key's bucket at time now (monotonic seconds). Returns 1 when the
 * message may be handled, 0 when it must be dropped (counted). A NULL or disabled limiter,
 * or a key out of range, always says 1. */
int ratelimit_take(ratelimit_t *rl, size_t key, double now);
/* Gives back the token of a message that turned out to be an accepted answer. */
void ratelimit_refund(ratelimit_t *rl, size_t key);
/* After a drop: 1 at most once per log_every_s per key, with the drops since the last time
 * it said 1 in *dropped (so one log line stands for many dropped messages). */
int ratelimit_log_due(ratelimit_t *rl, size_t key, double now, uint64_t *dropped);

/* Messages dropped since creation (all keys); 0 for NULL. Safe from another thread. */
uint64_t ratelimit_dropped(const ratelimit_t *rl);
int ratelimit_enabled(const ratelimit_t *rl);

#endif
