/* intime.c — FedAvg's weighted sum begun while the updates arrive ([aggregation] in_time).
 *
 * The close computes θ_{t+1} = θ_t + Σ_k s_k Δ̃_k in client-id order (participant slots),
 * every element's sum in that order (wsum.h), with s_k = η_s · n_k / Σ_j n_j. The scales
 * are known before the round if every participant answers with the sample count it
 * announced at Hello (a client trains on all of its training split). So as updates arrive,
 * the slots 0 .. next − 1 that are all in are summed, with those scales: the same
 * operations, in the same order, as the close would make first. At the close
 * coord_intime_take hands the sum over only if the updates the close sums first are those
 * slots and their scales are the same floats; the close then sums the rest, and the result
 * is the same bits as a close from θ_t. Otherwise (a participant missing, a sample count
 * that differs, an update left out by the norm bound) the prefix is dropped and the close
 * sums everything, as without this.
 *
 * The steps run on the poll loop when no message is waiting (coord_intime_idle), so they use
 * the time between arrivals and never delay one: a burst of updates, all waiting at once, is
 * summed at the close, in one pass over θ, as without this (summed one at a time, each update
 * would cost a read and a write of θ besides its own read). The floats come from the journal's
 * page cache, as at the close.
 *
 * The sum runs in θ_t's own buffer, so it costs no memory: the FedAvg budget is 3·P·4 B +
 * 64 MiB, and receiving one update through CURVE already holds three P-sized buffers at
 * once (libzmq decrypts into a copy, then copies into a new message) besides θ_t. θ_t is
 * still in the round's checkpoint, the commit point of the round before (persist.c). So the
 * first step waits until θ_t is out of ZeroMQ's hands (no task queued, no task frame still
 * being sent: coord_params_claim), and whatever needs θ_t again before the close (a task
 * sent again to a client that reconnected, the prefix given up, the round aborted) first
 * reads it back from the checkpoint, checked against the model digest. */
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "coord.h"
#include "log.h"

int coord_intime_wanted(const coord_t *c) {
    return !c->fedce && !c->robust && c->per_class != 3 && c->in_time != 0; /* on and auto alike */
}

int coord_intime_restore(coord_t *c, cc_err_t *err) {
    if (!c->params_in_time) return 0;
    double t0 = cc_now();
    int rc = coord_checkpoint_params(c, c->params, err);
    if (rc) return rc;
    c->params_in_time = 0;
    cc_log_info("theta_restored", "round=%llu from=checkpoint ms=%.1f", (unsigned long long)c->round,
                (cc_now() - t0) * 1e3);
    return 0;
}

void coord_intime_drop(coord_t *c) {
    cc_err_t err = {0};
    c->pre_theta = NULL;
    c->pre_on = 0;
    c->pre_next = 0;
    if (coord_intime_restore(c, &err) == 0) return;
    /* θ_t is in no buffer: nothing may be sent, committed or exported. The checkpoint and
     * the journal are the round's state; a restart resumes from them. */
    cc_log_error("theta_restore_failed", "round=%llu reason=\"%s\" action=\"stopping; a restart resumes from the last good checkpoint\"",
                 (unsigned long long)c->round, err.msg);
    c->stop = 2;
}

void coord_intime_begin(coord_t *c) {
    coord_intime_drop(c);
    if (!coord_intime_wanted(c) || c->n_participants == 0 || c->n_updates > 0) return;
    if (!c->pre_scale) {
        c->pre_scale = cc_xcalloc(c->n_clients + 1, sizeof *c->pre_scale);
        c->pre_update = cc_xcalloc(c->n_clients + 1, sizeof *c->pre_update);
    }
    /* The close's weights and scales (aggregate.c) from the announced counts. */
    size_t K = c->n_participants;
    uint64_t *n = cc_xcalloc(K, sizeof *n);
    double *w = cc_xcalloc(K, sizeof *w);
    int known = 1;
    for (size_t s = 0; s < K && known; s++) {
        coord_client_t *cl = coord_client_find(c, c->participants[s]);
        known = cl && cl->n_train > 0;
        if (known) n[s] = cl->n_train;
    }
    if (known) coord_fedavg_weights(w, n, K);
    for (size_t s = 0; known && s < K; s++) c->pre_scale[s] = coord_step_scale(c, w[s]), c->pre_update[s] = SIZE_MAX;
    c->pre_on = known;
    free(n), free(w);
}

void coord_intime_give_up(coord_t *c, const char *why) {
    if (!c->pre_on) return;
    cc_log_warn("in_time_dropped", "round=%llu summed=%zu reason=\"%s\" action=\"the close sums every update\"",
                (unsigned long long)c->round, c->pre_next, why);
    coord_intime_drop(c);
}

void coord_intime_add(coord_t *c, size_t k) {
    if (!c->pre_on || k >= c->n_updates) return;
    const coord_update_t *u = &c->updates[k];
    if (u->slot >= c->n_participants || u->n_samples != coord_client_find(c, u->id)->n_train) {
        coord_intime_give_up(c, "an update's sample count is not the one announced at Hello");
        return;
    }
    c->pre_update[u->slot] = k;
}

void coord_intime_idle(coord_t *c) {
    if (!c->pre_on || c->n_updates == c->n_participants) return; /* the close is next: it sums the rest */
    int events = 0;
    size_t len = sizeof events;
    if (zmq_getsockopt(c->router, ZMQ_EVENTS, &events, &len) != 0 || (events & ZMQ_POLLIN)) return; /* a message waits */
    size_t end = c->pre_next;
    while (end < c->n_participants && c->pre_update[end] != SIZE_MAX) end++;
    if (end == c->pre_next) return; /* the next slot is still missing */
    if (!c->pre_theta) {
        if (!coord_params_claim(c)) return; /* θ_t may still be sent: later */
        c->pre_theta = c->params, c->params_in_time = 1;
    }
    size_t n = end - c->pre_next;
    const coord_update_t **run = cc_xcalloc(n, sizeof *run);
    for (size_t i = 0; i < n; i++) run[i] = &c->updates[c->pre_update[c->pre_next + i]];
    cc_err_t err = {0};
    int rc = coord_sum_updates(c, run, n, c->pre_scale + c->pre_next, c->pre_theta, &err);
    free(run);
    if (rc) { /* the buffer is partly updated: useless */
        coord_intime_give_up(c, err.msg);
        return;
    }
    cc_log_info("in_time_summed", "round=%llu slots=%zu-%zu summed=%zu of=%zu", (unsigned long long)c->round, c->pre_next,
                end - 1, end, c->n_participants);
    c->pre_next = end;
}

int coord_intime_waiting(const coord_t *c) {
    return c->pre_on && !c->pre_theta && c->n_updates < c->n_participants && c->pre_update[0] != SIZE_MAX;
}

float *coord_intime_take(coord_t *c, const float *scale, size_t K, size_t *first) {
    *first = 0;
    if (!c->pre_theta) return NULL;
    size_t n = c->pre_next;
    int same = n <= K;
    for (size_t k = 0; same && k < n; k++)
        same = c->updates[k].slot == k && memcmp(&scale[k], &c->pre_scale[k], sizeof(float)) == 0;
    if (!same) {
        coord_intime_give_up(c, n > K ? "fewer updates to aggregate than were summed" : "the close's weights are not those announced");
        return NULL;
    }
    float *theta = c->pre_theta; /* params: params_in_time until the close replaces it */
    c->pre_theta = NULL;
    c->pre_on = 0;
    *first = n;
    __atomic_fetch_add(&c->in_time_rounds, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&c->in_time_updates, n, __ATOMIC_RELAXED);
    return theta;
}
