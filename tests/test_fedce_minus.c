/* test_fedce_minus.c — `[fedce] minus_model = coordinator` (DESIGN §6.1) against a real
 * concord-coordinator on loopback, driven by three test clients built from the library:
 *  - round 0's tasks carry no minus model; each of round 1's carries θ⁻_k, which equals the
 *    model aggregated without client k, θ_0 + η_s Σ_{j≠k} c_j/(1 − c_k) Δ_j (computed here
 *    in double), and is bit for bit the θ⁻_k the client route rebuilds (fedce_minus_model
 *    on θ_0, θ_1 and Δ_k), so both routes give the clients the same scores;
 *  - after a kill -9 mid-round and a restart, a client still owing its update gets the same
 *    θ⁻_k bits and the same c_k again (they come from the checkpoint);
 *  - with minus_model = client (the default) no task carries one;
 *  - a client aggregated alone (w = 1) gets no minus model next round, and no coefficient
 *    its own saved update would match (regression: the task named the lone round with the
 *    older coefficient, and the client route scored a wrong minus model). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "concord.pb-c.h"
#include "daemon_harness.h"
#include "fedce.h"
#include "identity.h"
#include "msg.h"
#include "transport.h"
#include "wire.h"

#define P 15 /* softmax, 4 inputs, 3 classes: 4*3 + 3 */
#define K 3

static char s_dir[256], s_ini[512];
static int s_port;
static pid_t s_coord;
static identity_t s_coord_id, s_ids[K];
static const char *s_names[K] = {"alice", "bob", "carol"};
static void *s_ctx;
static void *s_socks[K]; /* closed at teardown, also after a failed assertion */

static void s_keys(void) {
    cc_err_t err = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/enrolment.txt", s_dir);
    FILE *fp = fopen(path, "w");
    cr_assert_eq(identity_generate(&s_coord_id, "coordinator", &err), 0, "%s", err.msg);
    cr_assert_eq(identity_save(&s_coord_id, s_dir, 1, &err), 0, "%s", err.msg);
    for (int k = 0; k < K; k++) {
        char hex[65];
        cr_assert_eq(identity_generate(&s_ids[k], s_names[k], &err), 0, "%s", err.msg);
        identity_public_hex(hex, s_ids[k].pk);
        fprintf(fp, "%s %s\n", s_names[k], hex);
    }
    fclose(fp);
}

static void s_write_config(const char *minus_model, double deadline_s) {
    snprintf(s_ini, sizeof s_ini, "%s/coordinator.ini", s_dir);
    FILE *fp = fopen(s_ini, "w");
    fprintf(fp, "[federation]\nrounds = 3\nmin_clients = %d\nround_deadline_s = %g\nquorum = 0.3\n"
                "bind = tcp://127.0.0.1:%d\nenrolment = enrolment.txt\n[model]\narch = softmax\ninputs = 4\nclasses = 3\nstandardize = none\n"
                "[aggregation]\nmax_update_norm = 10\nweighting = fedce\n[fedce]\nminus_model = %s\n"
                "[security]\nidentity = coordinator.key\n[storage]\nstate_dir = state\nexport = final\n"
                "[metrics]\nhistory = history.jsonl\n", K, deadline_s, s_port, minus_model);
    fclose(fp);
}

static void s_start_coordinator(void) {
    char log[512];
    snprintf(log, sizeof log, "%s/coordinator.log", s_dir);
    s_coord = harness_start_coordinator(s_ini, log);
    usleep(300 * 1000);
}

static void s_setup(const char *minus_model, double deadline_s) {
    snprintf(s_dir, sizeof s_dir, "/tmp/concord-minus-test-XXXXXX");
    cr_assert_not_null(mkdtemp(s_dir));
    s_port = harness_free_port();
    s_keys();
    s_write_config(minus_model, deadline_s);
    s_start_coordinator();
    s_ctx = zmq_ctx_new();
}
static void setup_coordinator(void) { s_setup("coordinator", 30); }
static void setup_client(void) { s_setup("client", 30); }
/* Rounds close 3 s after they start with whoever answered (quorum 0.3: one of three). */
static void setup_coordinator_short(void) { s_setup("coordinator", 3); }
static void setup_client_short(void) { s_setup("client", 3); }

static void teardown(void) {
    if (s_coord > 0) kill(s_coord, SIGKILL), waitpid(s_coord, NULL, 0);
    for (int k = 0; k < K; k++)
        if (s_socks[k]) zmq_close(s_socks[k]), s_socks[k] = NULL;
    zmq_ctx_term(s_ctx);
    harness_remove_dir(s_dir);
}

/* ---- a test client -------------------------------------------------------------------------- */

/* What a Task carried. */
typedef struct {
    uint64_t round, prev_round;
    double coef;
    uint8_t digest[WIRE_DIGEST_BYTES];
    float params[P], minus[P];
    int has_minus;
} s_task_t;

static harness_client_t s_connect(identity_t *id) {
    return harness_client(s_ctx, id, s_coord_id.curve_public, s_port);
}

/* Receives one verified message within ms; returns its type (0 if none). A Task is
 * decoded into *task (may be NULL). */
static uint32_t s_recv(harness_client_t *c, int ms, s_task_t *task) {
    transport_msg_t msg;
    wire_in_t in;
    uint32_t type = harness_recv(c, &s_coord_id, ms, &msg, &in);
    if (!type) return 0;
    if (type == CONCORD__MSG_TYPE__MSG_TASK && task) {
        Concord__Task *t = concord__task__unpack(NULL, in.body_len, in.body);
        cr_assert_not_null(t);
        memset(task, 0, sizeof *task);
        task->round = t->round, task->prev_round = t->prev_round, task->coef = t->fedce_coef;
        memcpy(task->digest, t->model_digest.data, WIRE_DIGEST_BYTES);
        for (size_t i = 0; i < t->n_tensors; i++) {
            float *dst = msg_tensor_is(t->tensors[i], "params", P) ? task->params
                         : msg_tensor_is(t->tensors[i], "minus_params", P) ? task->minus : NULL;
            cr_assert_not_null(dst, "unexpected task tensor \"%s\"", t->tensors[i]->name);
            memcpy(dst, zmq_msg_data(&msg.parts[1 + i]), P * sizeof(float));
            task->has_minus |= dst == task->minus;
        }
        concord__task__free_unpacked(t, NULL);
    }
    harness_recv_done(&msg, &in);
    return type;
}

static void s_expect_task(harness_client_t *c, uint64_t round, s_task_t *task) {
    cr_assert_eq(s_recv(c, 10000, task), CONCORD__MSG_TYPE__MSG_TASK, "%s gets a task", c->id->id);
    cr_assert_eq(task->round, round);
}

/* Sends Δ for the task's round, reporting data score b, and expects the Ack. */
static void s_update(harness_client_t *c, const s_task_t *task, const float *delta, double b) {
    harness_update_t u;
    harness_update_init(&u, task->round, task->digest, P);
    u.u.has_data_score = 1, u.u.data_score = b;
    wire_frame_t frame = {delta, P};
    cc_err_t err = {0};
    cr_assert_eq(msg_send(c->sock, NULL, c->id, &c->seq, CONCORD__MSG_TYPE__MSG_UPDATE, task->round, &u.u.base, &frame,
                          1, &err), 0, "%s", err.msg);
    cr_assert_eq(s_recv(c, 10000, NULL), CONCORD__MSG_TYPE__MSG_ACK, "%s's update accepted", c->id->id);
}

/* Three updates that point in different directions, and different data scores, so the
 * FedCE weights differ from 1/3. */
static void s_deltas(float delta[K][P]) {
    for (int i = 0; i < P; i++) {
        delta[0][i] = 0.01f * (float)(i - 7);
        delta[1][i] = 0.02f * sinf((float)i);
        delta[2][i] = 0.015f * cosf(2.0f * (float)i) + 0.005f;
    }
}
static const double s_b[K] = {0.2, 0.5, 0.9};

/* Round 0 for every client; returns round 1's tasks and round 0's θ. */
static void s_round0(harness_client_t *cl, float delta[K][P], float theta0[P], s_task_t *next) {
    s_task_t t0[K];
    for (int k = 0; k < K; k++) cl[k] = s_connect(&s_ids[k]), s_socks[k] = cl[k].sock, harness_hello(&cl[k], &s_coord_id);
    for (int k = 0; k < K; k++) {
        s_expect_task(&cl[k], 0, &t0[k]);
        cr_expect(!t0[k].has_minus && t0[k].coef == 0.0, "round 0: no minus model, no coefficient");
    }
    memcpy(theta0, t0[0].params, P * sizeof(float));
    s_deltas(delta);
    for (int k = 0; k < K; k++) s_update(&cl[k], &t0[k], delta[k], s_b[k]);
    for (int k = 0; k < K; k++) s_expect_task(&cl[k], 1, &next[k]);
}

Test(fedce_minus, coordinator_sends_the_model_aggregated_without_each_client_and_again_after_a_crash,
     .init = setup_coordinator, .fini = teardown, .timeout = 90) {
    harness_client_t cl[K];
    float delta[K][P], theta0[P];
    s_task_t t1[K];
    s_round0(cl, delta, theta0, t1);

    /* The weights c_k of round 0, as the tasks report them; θ_1 = θ_0 + Σ c_j Δ_j. */
    double sum_c = 0.0, worst_theta = 0.0;
    for (int k = 0; k < K; k++) {
        cr_assert(t1[k].has_minus, "%s's round-1 task carries its minus model", s_names[k]);
        cr_assert(t1[k].coef > 0.0 && t1[k].coef < 1.0, "c_%d = %g", k, t1[k].coef);
        cr_expect_eq(t1[k].prev_round, 0);
        sum_c += t1[k].coef;
    }
    cr_expect(fabs(sum_c - 1.0) < 1e-12, "Σ c_k = %.17g", sum_c);
    cr_expect(fabs(t1[0].coef - 1.0 / K) > 1e-3, "the weights are not all 1/K (c_0 = %g)", t1[0].coef);
    for (int i = 0; i < P; i++) {
        double want = theta0[i];
        for (int j = 0; j < K; j++) want += t1[j].coef * delta[j][i];
        worst_theta = fmax(worst_theta, fabs(want - t1[0].params[i]));
    }
    cr_assert_lt(worst_theta, 1e-6, "θ_1 is the weighted aggregate (largest difference %g)", worst_theta);

    /* θ⁻_k against the aggregate without k (double, here), and against the client route. */
    double worst = 0.0;
    for (int k = 0; k < K; k++) {
        float own[P];
        cc_err_t err = {0};
        cr_assert_eq(fedce_minus_model(own, theta0, t1[k].params, delta[k], t1[k].coef, 1.0, P, &err), 0, "%s", err.msg);
        cr_expect_eq(memcmp(own, t1[k].minus, sizeof own), 0, "%s: θ⁻_k is bit for bit the client route's", s_names[k]);
        for (int i = 0; i < P; i++) {
            double without = theta0[i];
            for (int j = 0; j < K; j++)
                if (j != k) without += t1[j].coef / (1.0 - t1[k].coef) * delta[j][i];
            worst = fmax(worst, fabs(without - t1[k].minus[i]) / fmax(1.0, fabs(without)));
        }
    }
    cr_log_info("minus model (coordinator) vs aggregation without k: largest rel. difference %.3g (tolerance 1e-5)", worst);
    cr_expect_lt(worst, 1e-5);

    /* Two updates of round 1 are journaled; the coordinator dies; carol still owes hers. */
    for (int k = 0; k < 2; k++) s_update(&cl[k], &t1[k], delta[(k + 1) % K], s_b[k]);
    kill(s_coord, SIGKILL), waitpid(s_coord, NULL, 0);
    s_start_coordinator();
    s_task_t again;
    harness_hello(&cl[2], &s_coord_id);
    s_expect_task(&cl[2], 1, &again);
    cr_assert(again.has_minus, "after the restart carol's task still carries her minus model");
    cr_expect_eq(memcmp(again.minus, t1[2].minus, sizeof again.minus), 0, "the same θ⁻_k bits after the restart");
    cr_expect_eq(memcmp(again.params, t1[2].params, sizeof again.params), 0, "the same θ_1");
    cr_expect(again.coef == t1[2].coef && again.prev_round == t1[2].prev_round, "the same c_k (%.17g, %.17g)",
              again.coef, t1[2].coef);
}

Test(fedce_minus, client_mode_sends_no_minus_model, .init = setup_client, .fini = teardown, .timeout = 60) {
    harness_client_t cl[K];
    float delta[K][P], theta0[P];
    s_task_t t1[K];
    s_round0(cl, delta, theta0, t1);
    for (int k = 0; k < K; k++) {
        cr_expect(!t1[k].has_minus, "minus_model = client: no minus model in %s's task", s_names[k]);
        cr_expect(t1[k].coef > 0.0 && t1[k].coef < 1.0 && t1[k].prev_round == 0,
                  "but c_k and its round, to rebuild it (c = %g)", t1[k].coef);
    }
}

/* Round 1 closes at its deadline with alice's update alone (w = 1); returns her round-2 task. */
static void s_alone_in_round1(s_task_t *t2) {
    harness_client_t cl[K];
    float delta[K][P], theta0[P];
    s_task_t t1[K];
    s_round0(cl, delta, theta0, t1);
    s_update(&cl[0], &t1[0], delta[1], s_b[0]);
    s_expect_task(&cl[0], 2, t2);
}

Test(fedce_minus, coordinator_mode_a_client_aggregated_alone_gets_no_minus_model, .init = setup_coordinator_short,
     .fini = teardown, .timeout = 60) {
    s_task_t t2;
    s_alone_in_round1(&t2);
    cr_expect(!t2.has_minus, "alone in round 1: no minus model in round 2");
    cr_expect_eq(t2.coef, 0.0, "and c_k = 0, so the client skips scoring");
}

Test(fedce_minus, client_mode_a_client_aggregated_alone_gets_no_coefficient_for_that_round,
     .init = setup_client_short, .fini = teardown, .timeout = 60) {
    s_task_t t2;
    s_alone_in_round1(&t2);
    cr_expect(!t2.has_minus);
    /* The client trained in round 1: a coefficient said to be round 1's would make it rebuild
     * a minus model from its round-1 update with a weight that update never had. */
    cr_expect_neq(t2.prev_round, 1, "the coefficient (%g) is not presented as round 1's", t2.coef);
}
