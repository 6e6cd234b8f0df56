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

#include "concord.pb-c.h"
#include "coord.h"
#include "daemon_harness.h"
#include "rng.h"
#include "tmpdir_fixture.h"

#define N_SITES 4
#define NP 600000 /* one whole 2 MiB block of the journal, mapped, and a tail read */

static char s_dir[128];
static coord_t s_c;
static void *s_ctx;
static identity_t s_site[N_SITES]; /* their participant slots, ids sorted */
static uint64_t s_seq[N_SITES];
static const uint64_t s_n_train[N_SITES] = {120, 80, 200, 55};
static float s_delta[N_SITES][NP], s_theta0[NP];
static const uint8_t s_digest0[WIRE_DIGEST_BYTES] = {0x5a};

static void setup(void) {
    cr_redirect_stderr(); /* the coordinator's log lines */
    tmpdir_make(s_dir, sizeof s_dir, "/tmp/concord-intime-");
    cc_err_t err = {0};
    const char *ids[N_SITES] = {"site-a", "site-b", "site-c", "site-d"};
    char path[256];
    snprintf(path, sizeof path, "%s/enrolment.txt", s_dir);
    FILE *fp = fopen(path, "w");
    for (int i = 0; i < N_SITES; i++) {
        cr_assert_eq(identity_generate(&s_site[i], ids[i], &err), 0, "%s", err.msg);
        char hex[65];
        identity_public_hex(hex, s_site[i].pk);
        fprintf(fp, "%s %s\n", ids[i], hex);
        s_seq[i] = 0;
    }
    fclose(fp);
    memset(&s_c, 0, sizeof s_c);
    coord_t *c = &s_c;
    cr_assert_eq(enrolment_load(path, &c->enrolment, &err), 0, "%s", err.msg);
    cr_assert_eq(identity_generate(&c->self, "coordinator", &err), 0, "%s", err.msg);
    c->state_dir = s_dir;
    c->P = NP, c->max_norm = 1e3, c->agg_threads = 2, c->server_lr = 0.75, c->in_time = 1;
    coord_clients_init(c);
    size_t n = c->n_clients + 1;
    c->participants = cc_xcalloc(n, sizeof *c->participants);
    for (int i = 0; i < N_SITES; i++) {
        coord_client_t *cl = coord_client_find(c, ids[i]);
        cl->welcomed = 1, cl->n_train = s_n_train[i];
        snprintf(c->participants[i], sizeof c->participants[i], "%s", ids[i]);
    }
    c->n_participants = N_SITES;
    c->updates = cc_xcalloc(n, sizeof *c->updates);
    c->task_state = cc_xcalloc(n, 1), c->grant_state = cc_xcalloc(n, 1);
    snprintf(path, sizeof path, "%s/round.journal", s_dir);
    cr_assert_eq(journal_open(path, 0, &c->journal, NULL, &err), 0, "%s", err.msg);
    s_ctx = zmq_ctx_new();
    c->router = zmq_socket(s_ctx, ZMQ_ROUTER); /* no peer: the Acks and Nacks are dropped */
    int linger = 0;
    zmq_setsockopt(c->router, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_bind(c->router, "inproc://intime-test"), 0);
    cc_rng_t rng;
    cc_rng_seed(&rng, 5);
    for (int k = 0; k < N_SITES; k++)
        for (size_t i = 0; i < NP; i++) s_delta[k][i] = (float)(1e-2 * (2.0 * cc_rng_uniform(&rng) - 1.0));
    for (size_t i = 0; i < NP; i++) s_theta0[i] = (float)(2.0 * cc_rng_uniform(&rng) - 1.0);
}

static void teardown(void) {
    coord_t *c = &s_c;
    coord_intime_drop(c);
    free(c->params);
    journal_close(&c->journal);
    zmq_close(c->router);
    zmq_ctx_term(s_ctx);
    identity_clear(&c->self);
    enrolment_destroy(&c->enrolment);
    coord_clients_free(c);
    free(c->participants), free(c->updates), free(c->task_state), free(c->grant_state);
    free(c->pre_scale), free(c->pre_update);
    for (int i = 0; i < N_SITES; i++) identity_clear(&s_site[i]);
    tmpdir_remove(s_dir);
}

/* A new round from θ_0: empty journal and update list, training phase begun. */
static void s_open_round(void) {
    coord_t *c = &s_c;
    cc_err_t err = {0};
    free(c->params);
    c->params = cc_xalloc_floats(NP);
    memcpy(c->params, s_theta0, sizeof s_theta0);
    memcpy(c->digest, s_digest0, sizeof c->digest);
    c->n_updates = c->n_acked = 0;
    cr_assert_eq(journal_reset(c->journal, c->round, &err), 0, "%s", err.msg);
    coord_set_state(c, COORD_TRAINING);
    coord_intime_begin(c);
}

/* Site k's update delivered, then the poll loop finds nothing waiting (main.c): the in-time step. */
static void s_arrive(int k, uint64_t n_samples, float scale);

/* Site k's signed Update of Δ = scale·s_delta[k] claiming n_samples, its frame at an odd
 * address as ZeroMQ may leave it; handled as the poll loop would. */
static void s_deliver(int k, uint64_t n_samples, float scale) {
    static float delta[NP];
    for (size_t i = 0; i < NP; i++) delta[i] = scale * s_delta[k][i];
    harness_update_t u;
    harness_update_init(&u, 0, s_c.digest, NP);
    u.u.n_samples = n_samples;
    size_t body_len = concord__update__get_packed_size(&u.u);
    uint8_t *body = malloc(body_len), *env = NULL;
    concord__update__pack(&u.u, body);
    wire_frame_t frame = {delta, NP};
    wire_out_t out = {.type = CONCORD__MSG_TYPE__MSG_UPDATE, .sender_id = s_site[k].id, .seq = ++s_seq[k],
                      .round = 0, .body = body, .body_len = body_len, .frames = &frame, .n_frames = 1};
    size_t env_len;
    cc_err_t err = {0};
    cr_assert_eq(wire_seal(&out, s_site[k].sk, &env, &env_len, &err), 0, "%s", err.msg);
    uint8_t *buf = malloc(NP * sizeof(float) + 3);
    memcpy(buf + 3, delta, NP * sizeof(float));
    transport_msg_t msg;
    memset(&msg, 0, sizeof msg);
    snprintf(msg.peer, sizeof msg.peer, "%s", s_site[k].id);
    zmq_msg_init_size(&msg.parts[0], env_len);
    memcpy(zmq_msg_data(&msg.parts[0]), env, env_len);
    zmq_msg_init_data(&msg.parts[1], buf + 3, NP * sizeof(float), NULL, NULL);
    msg.n_parts = 2;
    coord_handle_message(&s_c, &msg);
    transport_msg_close(&msg);
    free(buf), free(env), free(body);
}

static void s_arrive(int k, uint64_t n_samples, float scale) {
    s_deliver(k, n_samples, scale);
    coord_intime_idle(&s_c);
}

/* θ_0 + Σ_k s_k·Δ_k over the sites in `in` (slot order), s_k = lr·n_k/Σ n_j: each element's
 * sum in that order, plain multiply and add, as the close promises. */
static void s_expected(float *out, const int *in, const float *site_scale) {
    double total = 0.0;
    for (int k = 0; k < N_SITES; k++)
        if (in[k]) total += (double)s_n_train[k];
    float s[N_SITES];
    for (int k = 0; k < N_SITES; k++) s[k] = (float)(s_c.server_lr * ((double)s_n_train[k] / total));
    for (size_t i = 0; i < NP; i++) {
        float t = s_theta0[i];
        for (int k = 0; k < N_SITES; k++)
            if (in[k]) t += s[k] * (site_scale[k] * s_delta[k][i]);
        out[i] = t;
    }
}

/* Closes the round; returns whether the close continued the sum begun in time. */
static int s_close(void) {
    coord_t *c = &s_c;
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
        if (memcmp(&s_c.params[i], &want[i], sizeof(float)) && !bad++) first = i;
    cr_expect_eq(bad, 0, "%s: %zu elements differ, the first at %zu: %.9g, want %.9g", what, bad, first,
                 (double)s_c.params[first], (double)want[first]);
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
        cr_expect_eq(s_c.pre_next, (size_t)last, "order %d%d%d%d: before the last update, slots 0..%d are summed, not %zu",
                     order[0], order[1], order[2], order[3], last - 1, s_c.pre_next);
        s_arrive(last, s_n_train[last], 1.0f);
        cr_assert_eq(s_c.n_updates, N_SITES);
        cr_expect_eq(s_c.pre_next, (size_t)last, "once all are in, the rest is the close's");
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
    cr_expect_eq(s_c.pre_next, 2, "slots 0 and 1 summed in time");
    cr_expect_not(s_close(), "the prefix had the weights of four participants: not used");
    s_expect_theta(want, "three of four");
}

Test(coord_intime, a_sample_count_other_than_announced_stops_the_sum_in_time, .init = setup, .fini = teardown,
     .timeout = 60) {
    static float want[NP];
    s_open_round();
    s_arrive(0, s_n_train[0], 1.0f);
    cr_expect_eq(s_c.pre_next, 1);
    s_arrive(1, s_n_train[1] - 1, 1.0f); /* trained on one sample fewer than it announced */
    cr_expect_eq(s_c.pre_on, 0, "summing in time stops");
    cr_expect_null(s_c.pre_theta, "its buffer is given back");
    s_arrive(2, s_n_train[2], 1.0f);
    s_arrive(3, s_n_train[3], 1.0f);
    cr_expect_not(s_close());
    /* the expected sum with site-b's actual count */
    double total = 0.0;
    uint64_t n[N_SITES] = {s_n_train[0], s_n_train[1] - 1, s_n_train[2], s_n_train[3]};
    for (int k = 0; k < N_SITES; k++) total += (double)n[k];
    for (size_t i = 0; i < NP; i++) {
        float t = s_theta0[i];
        for (int k = 0; k < N_SITES; k++) t += (float)(s_c.server_lr * ((double)n[k] / total)) * s_delta[k][i];
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
    s_c.norm_ratio = 3.0;
    s_open_round();
    for (int k = 0; k < N_SITES; k++) s_arrive(k, s_n_train[k], site_scale[k]);
    cr_expect_eq(s_c.pre_next, N_SITES - 1, "three summed in time, site-b included");
    cr_expect_not(s_close(), "site-b is left out at the close: the prefix is not used");
    s_expect_theta(want, "site-b left out");
}

Test(coord_intime, a_burst_is_summed_at_the_close_in_one_pass, .init = setup, .fini = teardown, .timeout = 60) {
    static float want[NP];
    s_expected(want, s_all, s_ones);
    s_open_round();
    for (int k = 0; k < N_SITES; k++) s_deliver(k, s_n_train[k], 1.0f); /* all waiting at once: no idle */
    cr_expect_eq(s_c.pre_next, 0, "nothing summed while messages were waiting");
    coord_intime_idle(&s_c);
    cr_expect_eq(s_c.pre_next, 0, "nor once every update is in: that is the close's");
    cr_expect_not(s_close());
    s_expect_theta(want, "a burst");
}

Test(coord_intime, off_and_auto, .init = setup, .fini = teardown, .timeout = 60) {
    static float want[NP];
    s_expected(want, s_all, s_ones);
    s_c.in_time = 0;
    s_open_round();
    for (int k = 0; k < N_SITES; k++) s_arrive(k, s_n_train[k], 1.0f);
    cr_expect_eq(s_c.pre_next, 0, "off: nothing summed before the close");
    cr_expect_not(s_close());
    s_expect_theta(want, "in_time = off");
    s_c.in_time = 2;
    cr_expect(coord_intime_wanted(&s_c), "auto: on for a model of 2.4 MB");
    s_c.P = 10000000;
    cr_expect_not(coord_intime_wanted(&s_c), "auto: off for a model of 40 MB");
    s_c.P = NP, s_c.fedce = 1;
    cr_expect_not(coord_intime_wanted(&s_c), "FedCE's weights are known only at the close");
    s_c.fedce = 0, s_c.robust = 1;
    cr_expect_not(coord_intime_wanted(&s_c), "a robust aggregate is no weighted sum");
}
