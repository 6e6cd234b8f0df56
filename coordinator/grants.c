/* grants.c — upload flow control: at most upload_window updates in flight.
 *
 * ZeroMQ reads every connection as fast as the network allows and keeps whole messages in
 * memory until the poll loop takes them, so K hospitals answering at once would put K
 * updates in the coordinator's memory at the same time (with CURVE off, K = 50, P = 10M:
 * 9.7 times its memory budget; docs/benchmarks.md). When [federation] upload_window_mb cannot
 * hold every participant's update, tasks say so (upload_granted = false): a client sends
 * UploadReady when its update is ready and the Update only on an UploadGrant. Grants go in
 * request order while fewer than upload_window are outstanding. A grant ends when the
 * client's Update has been handled (accepted or refused), when the client says Hello again,
 * when its connection closes (guard.c sees it), or upload_grant_s after it was given (a
 * late update is still taken). The next grant goes
 * out only once the handled Update's frames are freed (the poll loop pumps after each
 * message), or one more update would be in memory. Flow control is for honest clients: an
 * update sent without a grant is handled like any other, and what a misbehaving client can
 * send is bounded by [limits] (ratelimit.c). */
#include <string.h>

#include "coord.h"
#include "log.h"
#include "util.h"

enum { GRANT_NONE, GRANT_WAITING, GRANT_GIVEN };

/* The counters are also read by the metrics thread (http.c). */
#define COUNT(x) __atomic_fetch_add(&(x), 1, __ATOMIC_RELAXED)
static void s_waiting_add(coord_t *c, long delta) {
    __atomic_fetch_add(&c->grants_waiting, (size_t)delta, __ATOMIC_RELAXED);
}

int coord_uploads_pregranted(const coord_t *c) { return c->upload_window >= c->n_participants; }

void coord_grants_reset(coord_t *c) {
    memset(c->grant_state, GRANT_NONE, c->n_clients + 1);
    __atomic_store_n(&c->grants_waiting, 0, __ATOMIC_RELAXED);
}

/* Grants outstanding; those older than upload_grant_s end here. */
static size_t s_outstanding(coord_t *c, double now) {
    size_t n = 0;
    for (size_t i = 0; i < c->n_participants; i++) {
        if (c->grant_state[i] != GRANT_GIVEN) continue;
        if (now - c->grant_at[i] <= c->upload_grant_s) {
            n++;
            continue;
        }
        c->grant_state[i] = GRANT_NONE;
        COUNT(c->grants_expired);
        cc_log_warn("upload_grant_expired", "client=%s round=%llu after_s=%.1f", c->participants[i],
                    (unsigned long long)c->round, now - c->grant_at[i]);
    }
    return n;
}

static size_t s_first_waiting(const coord_t *c) {
    size_t next = SIZE_MAX;
    for (size_t i = 0; i < c->n_participants; i++)
        if (c->grant_state[i] == GRANT_WAITING && (next == SIZE_MAX || c->grant_order[i] < c->grant_order[next]))
            next = i;
    return next;
}

static void s_send_grant(coord_t *c, size_t slot) {
    Concord__UploadGrant g = CONCORD__UPLOAD_GRANT__INIT;
    g.round = c->round;
    coord_send(c, c->participants[slot], c->round, CONCORD__MSG_TYPE__MSG_UPLOAD_GRANT, &g.base);
}

void coord_pump_grants(coord_t *c) {
    if (!c->grants_waiting || (c->state != COORD_TRAINING && c->state != COORD_EXTENDED)) return;
    double now = cc_now();
    size_t outstanding = s_outstanding(c, now), next;
    while (outstanding < c->upload_window && (next = s_first_waiting(c)) != SIZE_MAX) {
        c->grant_state[next] = GRANT_GIVEN, c->grant_at[next] = now, outstanding++, s_waiting_add(c, -1);
        COUNT(c->grants_given);
        cc_log_info("upload_granted", "client=%s round=%llu outstanding=%zu window=%zu", c->participants[next],
                    (unsigned long long)c->round, outstanding, c->upload_window);
        s_send_grant(c, next);
    }
}

void coord_upload_request(coord_t *c, size_t slot) {
    if (c->grant_state[slot] == GRANT_GIVEN) { /* asked twice: the same grant, once more */
        s_send_grant(c, slot);
        return;
    }
    if (c->grant_state[slot] == GRANT_NONE) {
        c->grant_state[slot] = GRANT_WAITING, c->grant_order[slot] = ++c->grant_requests;
        s_waiting_add(c, 1);
    }
    coord_pump_grants(c);
}

int coord_upload_done(coord_t *c, const char *id) {
    size_t slot = coord_slot(c, id);
    if (slot == SIZE_MAX || c->grant_state[slot] == GRANT_NONE) return 0;
    if (c->grant_state[slot] == GRANT_WAITING) s_waiting_add(c, -1);
    c->grant_state[slot] = GRANT_NONE; /* the next grant: coord_pump_grants, once the frames are freed */
    return 1;
}
