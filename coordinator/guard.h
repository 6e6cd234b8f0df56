/* guard.h — a bound on the bytes one connection can make ZeroMQ hold (guard.c). */
#ifndef CONCORD_GUARD_H
#define CONCORD_GUARD_H

#include <stdint.h>

#include "util.h"

typedef struct guard guard_t;

/* Called from guard_events when the connection a client's last message came from has
 * closed (and none of its messages came on a newer one). */
typedef void guard_gone_fn(void *ctx, const char *peer);

/* Watches the connections of `router` (call before it binds): past `bound` bytes received
 * on a connection and not yet taken by the poll loop, the connection is cut. gone (may be
 * NULL) hears of clients whose connection closed. NULL on error. */
guard_t *guard_start(void *zctx, void *router, uint64_t bound, guard_gone_fn *gone, void *ctx, cc_err_t *err);
void guard_stop(guard_t **g);
/* The monitor socket, to poll for ZMQ_POLLIN; guard_events reads what it says. */
void *guard_socket(guard_t *g);
void guard_events(guard_t *g);
/* The poll loop took a message of `parts` parts and `bytes` bytes from descriptor fd, sent
 * by `peer` (its routing id: named in the log if the connection is cut). */
void guard_taken(guard_t *g, int fd, const char *peer, uint64_t bytes, uint64_t parts);
/* Checks every connection (at most every 0.1 s), cutting those over the bound. */
void guard_check(guard_t *g, double now);
uint64_t guard_cut_total(const guard_t *g);

#endif
