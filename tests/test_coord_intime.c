/* test_coord_intime.c — FedAvg's weighted sum begun as the updates arrive (intime.c). A
 * coordinator in memory (no process, no network: its ROUTER has no peer) is handed real
 * signed Update messages in every arrival order, journals them, sums what it can while idle
 * (as its poll loop does when no message waits) and closes the round. The
 * new θ must be, bit for bit, θ_t + Σ_k s_k Δ_k computed here element by element in
 * client-id order with s_k = n_k / Σ n_j, whatever the order, whether the close found the
 * prefix it could use or had to start over (a participant missing, a sample count other
 * than the announced one, an update left out by the norm bound), and with in_time off. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_fixture.h"
#include "rng.h"
#include "snapshot.h"

#define N_SITES 4
#define NP 600000 /* one whole 2 MiB block of the journal, mapped, and a tail read */

static coord_fixture_t s_f; /* site-a .. site-d: participant slots 0 .. 3 */
static const uint64_t s_n_train[N_SITES] = {120, 80, 200, 55};
static float s_delta[N_SITES][NP], s_theta0[NP];
static uint8_t s_digest0[WIRE_DIGEST_BYTES]; /* θ_0's */

/* The checkpoint of round 0 in the state directory, its params being theta (P floats). */
static void s_write_checkpoint(const float *theta) {
    cc_err_t err = {0};
    snapshot_t *snap = snapshot_new();
    snapshot_put(snap, "meta", "{}", 2);
    snapshot_put(snap, "params", theta, NP * sizeof(float));
    cr_assert_eq(snapshot_dir_save(s_f.dir, 0, snap, 1, &err), 0, "%s", err.msg);
    snapshot_destroy(&snap);
}

static void setup(void) {
    cr_redirect_stderr(); /* the coordinator's log lines */
    const char *ids[N_SITES] = {"site-a", "site-b", "site-c", "site-d"};
    coord_fixture_open(&s_f, ids, N_SITES, s_n_train, NP);
    s_f.c.server_lr = 0.75, s_f.c.in_time = 1;
    cc_rng_t rng;
    cc_rng_seed(&rng, 5);
    for (int k = 0; k < N_SITES; k++)
        for (size_t i = 0; i < NP; i++) s_delta[k][i] = (float)(1e-2 * (2.0 * cc_rng_uniform(&rng) - 1.0));
    for (size_t i = 0; i < NP; i++) s_theta0[i] = (float)(2.0 * cc_rng_uniform(&rng) - 1.0);
    wire_digest_floats(s_digest0, s_theta0, NP);
    s_write_checkpoint(s_theta0); /* where a sum in θ_t's buffer reads θ_t back from */
}

static void teardown(void) { coord_fixture_close(&s_f); }

/* A new round from θ_0: empty journal and update list, training phase begun. */
static void s_open_round(void) {
    coord_t *c = &s_f.c;
    cc_err_t err = {0};
    coord_params_free(c);
    c->params = cc_xalloc_floats(NP);
    memcpy(c->params, s_theta0, sizeof s_theta0);
    memcpy(c->digest, s_digest0, sizeof s_digest0); /* θ_0's digest, as the tasks said */
    c->n_updates = c->n_acked = 0;
    cr_assert_eq(journal_reset(c->journal, c->round, &err), 0, "%s", err.msg);
    coord_set_state(c, COORD_TRAINING);
    coord_intime_begin(c);
}

/* Site k's Update of Δ = scale·s_delta[k] claiming n_samples, handled as the poll loop would. */
static void s_deliver(int k, uint64_t n_samples, float scale) {
    static float delta[NP];
    for (size_t i = 0; i < NP; i++) delta[i] = scale * s_delta[k][i];
    coord_fixture_deliver(&s_f, k, n_samples, delta, delta);
}

/* Site k's update delivered, then the poll loop finds nothing waiting (main.c): the in-time step. */
static void s_arrive(int k, uint64_t n_samples, float scale) {
    s_deliver(k, n_samples, scale);
    coord_intime_idle(&s_f.c);
}

/* θ_0 + Σ_k s_k·Δ_k over the sites in `in` (slot order), s_k = lr·n_k/Σ n_j: each element's
 * sum in that order, plain multiply and add, as the close promises. */
static void s_expected(float *out, const int *in, const float *site_scale) {
    double total = 0.0;
    for (int k = 0; k < N_SITES; k++)
        if (in[k]) total += (double)s_n_train[k];
    float s[N_SITES];
    for (int k = 0; k < N_SITES; k++) s[k] = (float)(s_f.c.server_lr * ((double)s_n_train[k] / total));
    for (size_t i = 0; i < NP; i++) {
        float t = s_theta0[i];
        for (int k = 0; k < N_SITES; k++)
            if (in[k]) t += s[k] * (site_scale[k] * s_delta[k][i]);
        out[i] = t;
    }
}

/* Closes the round; returns whether the close continued the sum begun in time. */
static int s_close(void) {
    coord_t *c = &s_f.c;
    uint64_t before = c->in_time_rounds;
    double w[N_SITES];
    cc_err_t err = {0};
    cr_assert_eq(coord_aggregate(c, w, &err), 0, "%s", err.msg);
    cr_expect_null(c->pre_theta, "the close leaves no sum begun behind");
    return c->in_time_rounds == before + 1;
}

static void s_expect_theta(const float *want, const char *what) {
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < NP; i++)
        if (memcmp(&s_f.c.params[i], &want[i], sizeof(float)) && !bad++) first = i;
    cr_expect_eq(bad, 0, "%s: %zu elements differ, the first at %zu: %.9g, want %.9g", what, bad, first,
                 (double)s_f.c.params[first], (double)want[first]);
}

static const float s_ones[N_SITES] = {1, 1, 1, 1};
static const int s_all[N_SITES] = {1, 1, 1, 1};

Test(coord_intime, every_arrival_order_gives_the_same_bits_and_sums_the_prefix_before_the_close, .init = setup,
     .fini = teardown, .timeout = 120) {
    static float want[NP];
    s_expected(want, s_all, s_ones);
    int order[N_SITES] = {0, 1, 2, 3}, orders = 0;
    do { /* the 24 permutations, in lexicographic order */
        s_open_round();
        for (int i = 0; i + 1 < N_SITES; i++) s_arrive(order[i], s_n_train[order[i]], 1.0f);
        int last = order[N_SITES - 1];
        cr_expect_eq(s_f.c.pre_next, (size_t)last, "order %d%d%d%d: before the last update, slots 0..%d are summed, not %zu",
                     order[0], order[1], order[2], order[3], last - 1, s_f.c.pre_next);
        s_arrive(last, s_n_train[last], 1.0f);
        cr_assert_eq(s_f.c.n_updates, N_SITES);
        cr_expect_eq(s_f.c.pre_next, (size_t)last, "once all are in, the rest is the close's");
        cr_expect_eq(s_close(), last > 0, "order %d%d%d%d: the close continued a sum begun in time (%d slots)", order[0],
                     order[1], order[2], order[3], last);
        char what[64];
        snprintf(what, sizeof what, "arrival order %d%d%d%d", order[0], order[1], order[2], order[3]);
        s_expect_theta(want, what);
        orders++;
        /* next permutation */
        int i = N_SITES - 2;
        while (i >= 0 && order[i] > order[i + 1]) i--;
        if (i < 0) break;
        int j = N_SITES - 1;
        while (order[j] < order[i]) j--;
        int t = order[i];
        order[i] = order[j], order[j] = t;
        for (int a = i + 1, b = N_SITES - 1; a < b; a++, b--) t = order[a], order[a] = order[b], order[b] = t;
    } while (1);
    cr_expect_eq(orders, 24);
}

Test(coord_intime, a_missing_participant_makes_the_close_start_over_with_the_right_weights, .init = setup,
     .fini = teardown, .timeout = 60) {
    static float want[NP];
    const int in[N_SITES] = {1, 1, 0, 1}; /* site-c never answers: the round closes at quorum */
    s_expected(want, in, s_ones);
    s_open_round();
    s_arrive(1, s_n_train[1], 1.0f);
    s_arrive(0, s_n_train[0], 1.0f);
    s_arrive(3, s_n_train[3], 1.0f);
    cr_expect_eq(s_f.c.pre_next, 2, "slots 0 and 1 summed in time");
    float *buffer = s_f.c.params;
    cr_expect_not(s_close(), "the prefix had the weights of four participants: not used");
    cr_expect_eq(s_f.c.params, buffer, "θ_t read back into its buffer, and summed there");
    s_expect_theta(want, "three of four");
}

Test(coord_intime, a_sample_count_other_than_announced_stops_the_sum_in_time, .init = setup, .fini = teardown,
     .timeout = 60) {
    static float want[NP];
    s_open_round();
    s_arrive(0, s_n_train[0], 1.0f);
    cr_expect_eq(s_f.c.pre_next, 1);
    s_arrive(1, s_n_train[1] - 1, 1.0f); /* trained on one sample fewer than it announced */
    cr_expect_eq(s_f.c.pre_on, 0, "summing in time stops");
    cr_expect_null(s_f.c.pre_theta, "the sum begun is dropped");
    cr_expect_not(s_f.c.params_in_time, "θ_t is back in its buffer");
    s_expect_theta(s_theta0, "θ_0 read back from the checkpoint");
    s_arrive(2, s_n_train[2], 1.0f);
    s_arrive(3, s_n_train[3], 1.0f);
    cr_expect_not(s_close());
    /* the expected sum with site-b's actual count */
    double total = 0.0;
    uint64_t n[N_SITES] = {s_n_train[0], s_n_train[1] - 1, s_n_train[2], s_n_train[3]};
    for (int k = 0; k < N_SITES; k++) total += (double)n[k];
    for (size_t i = 0; i < NP; i++) {
        float t = s_theta0[i];
        for (int k = 0; k < N_SITES; k++) t += (float)(s_f.c.server_lr * ((double)n[k] / total)) * s_delta[k][i];
        want[i] = t;
    }
    s_expect_theta(want, "one count off");
}

Test(coord_intime, an_update_left_out_by_the_norm_bound_is_not_in_the_result, .init = setup, .fini = teardown,
     .timeout = 60) {
    static float want[NP];
    const int in[N_SITES] = {1, 0, 1, 1};
    const float site_scale[N_SITES] = {1, 20, 1, 1}; /* site-b's update 20 times the others' norm */
    s_expected(want, in, site_scale);
    s_f.c.norm_ratio = 3.0;
    s_open_round();
    for (int k = 0; k < N_SITES; k++) s_arrive(k, s_n_train[k], site_scale[k]);
    cr_expect_eq(s_f.c.pre_next, N_SITES - 1, "three summed in time, site-b included");
    cr_expect_not(s_close(), "site-b is left out at the close: the prefix is not used");
    s_expect_theta(want, "site-b left out");
}

Test(coord_intime, a_burst_is_summed_at_the_close_in_one_pass, .init = setup, .fini = teardown, .timeout = 60) {
    static float want[NP];
    s_expected(want, s_all, s_ones);
    s_open_round();
    float *buffer = s_f.c.params;
    for (int k = 0; k < N_SITES; k++) s_deliver(k, s_n_train[k], 1.0f); /* all waiting at once: no idle */
    cr_expect_eq(s_f.c.pre_next, 0, "nothing summed while messages were waiting");
    coord_intime_idle(&s_f.c);
    cr_expect_eq(s_f.c.pre_next, 0, "nor once every update is in: that is the close's");
    cr_expect_not(s_close());
    cr_expect_eq(s_f.c.params, buffer, "summed at the close in θ_t's buffer too");
    s_expect_theta(want, "a burst");
}

Test(coord_intime, off_and_auto, .init = setup, .fini = teardown, .timeout = 60) {
    static float want[NP];
    s_expected(want, s_all, s_ones);
    s_f.c.in_time = 0;
    s_open_round();
    float *buffer = s_f.c.params;
    for (int k = 0; k < N_SITES; k++) s_arrive(k, s_n_train[k], 1.0f);
    cr_expect_eq(s_f.c.pre_next, 0, "off: nothing summed before the close");
    cr_expect_not(s_close());
    cr_expect_neq(s_f.c.params, buffer, "off: θ_{t+1} in a new buffer, as before");
    s_expect_theta(want, "in_time = off");
    s_f.c.in_time = 2;
    cr_expect(coord_intime_wanted(&s_f.c), "auto: on for a model of 2.4 MB");
    s_f.c.P = 10000000;
    cr_expect(coord_intime_wanted(&s_f.c), "auto: on for a model of 40 MB (the sum takes no second buffer)");
    s_f.c.P = NP, s_f.c.fedce = 1;
    cr_expect_not(coord_intime_wanted(&s_f.c), "FedCE's weights are known only at the close");
    s_f.c.fedce = 0, s_f.c.robust = 1;
    cr_expect_not(coord_intime_wanted(&s_f.c), "a robust aggregate is no weighted sum");
}

Test(coord_intime, the_sum_runs_in_theta_t_own_buffer, .init = setup, .fini = teardown, .timeout = 60) {
    static float want[NP];
    s_expected(want, s_all, s_ones);
    s_open_round();
    coord_t *c = &s_f.c;
    float *buffer = c->params;
    s_arrive(0, s_n_train[0], 1.0f);
    cr_expect_eq(c->pre_next, 1);
    cr_expect(c->params_in_time, "θ_t's buffer holds the sum now");
    cr_expect_eq(c->pre_theta, buffer);
    for (int k = 1; k < N_SITES; k++) s_arrive(k, s_n_train[k], 1.0f);
    cr_expect(s_close());
    cr_expect_eq(c->params, buffer, "θ_{t+1} is in θ_t's buffer: no second P floats");
    cr_expect_not(c->params_in_time);
    s_expect_theta(want, "summed in place");
}

Test(coord_intime, nothing_is_summed_while_a_task_may_still_be_sent, .init = setup, .fini = teardown, .timeout = 60) {
    static float want[NP];
    s_expected(want, s_all, s_ones);
    s_open_round();
    coord_t *c = &s_f.c;
    coord_queue_task(c, 3); /* site-d's task waits for the send window: it will carry θ_t */
    s_arrive(0, s_n_train[0], 1.0f);
    cr_expect_eq(c->pre_next, 0, "θ_t may still be sent: not summed in yet");
    cr_expect_not(c->params_in_time);
    cr_expect(coord_intime_waiting(c), "the poll loop is told to look again soon");
    memset(c->task_state, 0, c->n_participants); /* TASK_NONE: sent, and ZeroMQ let go of it */
    s_arrive(1, s_n_train[1], 1.0f);
    cr_expect_eq(c->pre_next, 2, "now both are summed");
    cr_expect_not(coord_intime_waiting(c));
    s_arrive(2, s_n_train[2], 1.0f);
    s_arrive(3, s_n_train[3], 1.0f);
    cr_expect(s_close());
    s_expect_theta(want, "after waiting for the task");
}

Test(coord_intime, a_task_sent_again_reads_theta_t_back_from_the_checkpoint, .init = setup, .fini = teardown,
     .timeout = 60) {
    static float want[NP];
    s_expected(want, s_all, s_ones);
    s_open_round();
    coord_t *c = &s_f.c;
    s_arrive(0, s_n_train[0], 1.0f);
    cr_assert(c->params_in_time);
    coord_send_task(c, "site-b", 0); /* site-b reconnected: its task again, with θ_t */
    cr_expect_not(c->params_in_time, "θ_t is back in its buffer");
    cr_expect_not(c->pre_on, "and the sum begun is given up");
    s_expect_theta(s_theta0, "θ_0 read back for the task");
    for (int k = 1; k < N_SITES; k++) s_arrive(k, s_n_train[k], 1.0f);
    cr_expect_not(s_close(), "the close sums every update");
    s_expect_theta(want, "after a task sent again");
}

Test(coord_intime, a_checkpoint_without_theta_t_stops_the_coordinator, .init = setup, .fini = teardown, .timeout = 60) {
    s_open_round();
    coord_t *c = &s_f.c;
    s_arrive(0, s_n_train[0], 1.0f);
    cr_assert(c->params_in_time);
    static float other[NP];
    memcpy(other, s_theta0, sizeof other);
    other[NP / 2] += 1.0f; /* one float off: another model's digest */
    s_write_checkpoint(other);
    s_arrive(1, s_n_train[1] - 1, 1.0f); /* a count off: the sum begun is given up */
    cr_expect_eq(c->stop, 2, "θ_t cannot be read back: the coordinator stops");
    cr_expect(c->params_in_time, "params still holds no θ_t");
    cc_err_t err = {0};
    cr_expect_neq(coord_checkpoint_save(c, &err), 0, "nothing is committed from it");
    double w[N_SITES];
    cr_expect_neq(coord_aggregate(c, w, &err), 0, "nor aggregated");
    cr_expect(strstr(err.msg, "checkpoint") != NULL, "%s", err.msg);
}
