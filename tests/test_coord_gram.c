/* test_coord_gram.c — FedCE's Gram matrix when each update's row is computed while the
 * update is verified (aggregate.c, rounds.c). A coordinator in memory (no process, no
 * network: its ROUTER has no peer) is handed real signed Update messages, whose frames sit
 * at odd addresses as ZeroMQ may leave them. The matrix it builds is the serial path's (the
 * journal replay's) bit for bit; an update refused for any reason leaves no trace in it,
 * even though its bytes were copied and its dots computed before the refusal; and an update
 * that is already in is never overwritten by a later message of its sender. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "concord.pb-c.h"
#include "coord.h"
#include "daemon_harness.h"
#include "fedce.h"
#include "rng.h"
#include "tmpdir_fixture.h"

#define N_SITES 3
#define NP 70000 /* more than one 65536-float block of fedce_dots */

static char s_dir[128];
static coord_t s_c;
static void *s_ctx;
static identity_t s_site[N_SITES]; /* alice, bob, carol: also their participant slots */
static uint64_t s_seq[N_SITES];
static float s_delta[N_SITES][NP];

static void setup(void) {
    cr_redirect_stderr(); /* the coordinator's log lines */
    tmpdir_make(s_dir, sizeof s_dir, "/tmp/concord-gram-");
    cc_err_t err = {0};
    const char *ids[N_SITES] = {"alice", "bob", "carol"};
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
    c->P = NP, c->max_norm = 1e3, c->agg_threads = 2, c->fedce = 1;
    coord_clients_init(c);
    size_t n = c->n_clients + 1;
    c->participants = cc_xcalloc(n, sizeof *c->participants);
    for (int i = 0; i < N_SITES; i++) {
        c->clients[i].welcomed = 1, c->clients[i].n_train = 100;
        snprintf(c->participants[i], sizeof c->participants[i], "%s", ids[i]); /* sorted by id */
    }
    c->n_participants = N_SITES;
    c->updates = cc_xcalloc(n, sizeof *c->updates);
    c->task_state = cc_xcalloc(n, 1), c->grant_state = cc_xcalloc(n, 1);
    c->U = cc_xalloc_floats(c->n_clients * c->P);
    c->gram = cc_xcalloc(c->n_clients * c->n_clients, sizeof(float));
    memset(c->digest, 0x5a, sizeof c->digest); /* θ_t's digest, as the tasks said */
    snprintf(path, sizeof path, "%s/round.journal", s_dir);
    cr_assert_eq(journal_open(path, 0, &c->journal, NULL, &err), 0, "%s", err.msg);
    s_ctx = zmq_ctx_new();
    c->router = zmq_socket(s_ctx, ZMQ_ROUTER); /* no peer: the Nacks are dropped */
    int linger = 0;
    zmq_setsockopt(c->router, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_bind(c->router, "inproc://gram-test"), 0);
    coord_set_state(c, COORD_TRAINING);
    cc_rng_t rng;
    cc_rng_seed(&rng, 7);
    for (int k = 0; k < N_SITES; k++)
        for (size_t i = 0; i < NP; i++) s_delta[k][i] = (float)(1e-2 * (2.0 * cc_rng_uniform(&rng) - 1.0));
}

static void teardown(void) {
    coord_t *c = &s_c;
    journal_close(&c->journal);
    zmq_close(c->router);
    zmq_ctx_term(s_ctx);
    identity_clear(&c->self);
    enrolment_destroy(&c->enrolment);
    coord_clients_free(c);
    free(c->participants), free(c->updates), free(c->task_state), free(c->grant_state), free(c->U), free(c->gram);
    for (int i = 0; i < N_SITES; i++) identity_clear(&s_site[i]);
    tmpdir_remove(s_dir);
}

/* Site k sends an Update signed over `signed_delta` whose frame carries `sent` (P floats),
 * copied to an odd address; the coordinator handles it as its poll loop would. */
static void s_deliver(int k, const float *signed_delta, const float *sent) {
    harness_update_t u;
    harness_update_init(&u, 0, s_c.digest, NP);
    size_t body_len = concord__update__get_packed_size(&u.u);
    uint8_t *body = malloc(body_len), *env = NULL;
    concord__update__pack(&u.u, body);
    wire_frame_t frame = {signed_delta, NP};
    wire_out_t out = {.type = CONCORD__MSG_TYPE__MSG_UPDATE, .sender_id = s_site[k].id, .seq = ++s_seq[k],
                      .round = 0, .body = body, .body_len = body_len, .frames = &frame, .n_frames = 1};
    size_t env_len;
    cc_err_t err = {0};
    cr_assert_eq(wire_seal(&out, s_site[k].sk, &env, &env_len, &err), 0, "%s", err.msg);
    uint8_t *buf = malloc(NP * sizeof(float) + 3); /* frame data at base + 3: not 4-byte aligned */
    memcpy(buf + 3, sent, NP * sizeof(float));
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

/* The serial path (what a journal replay does) over the same rows of U, in arrival order. */
static void s_serial_gram(float *G) {
    coord_t *c = &s_c;
    size_t n = c->n_updates, bytes = c->n_clients * c->n_clients * sizeof(float);
    float *early = malloc(bytes);
    memcpy(early, c->gram, bytes);
    memset(c->gram, 0, bytes);
    for (c->n_updates = 1; c->n_updates <= n; c->n_updates++) coord_gram_add(c, c->updates[c->n_updates - 1].slot);
    c->n_updates = n;
    memcpy(G, c->gram, bytes);
    memcpy(c->gram, early, bytes);
    free(early);
}

/* G holds ⟨Δ_i, Δ_j⟩ of the given deltas (all N_SITES in), as fedce_dots computes them. */
static void s_expect_gram_of(const float *G, float deltas[N_SITES][NP]) {
    for (int i = 0; i < N_SITES; i++) {
        const float *rows[N_SITES];
        double dots[N_SITES];
        for (int j = 0; j < N_SITES; j++) rows[j] = deltas[j];
        fedce_dots(dots, rows, N_SITES, deltas[i], NP);
        for (int j = 0; j < N_SITES; j++)
            cr_expect_eq(G[i * N_SITES + j], (float)dots[j], "G[%d][%d] = %.9g, want %.9g", i, j, G[i * N_SITES + j],
                         (float)dots[j]);
    }
}

/* Accepted updates whose Gram row was computed while they were verified, from the log. */
static size_t s_early_rows_logged(void) {
    fflush(stderr);
    FILE *fp = cr_get_redirected_stderr();
    char line[1024];
    size_t n = 0;
    while (fgets(line, sizeof line, fp)) n += strstr(line, "event=update_accepted") && strstr(line, "gram_row=early");
    return n;
}

static void s_expect_same_bits(const float *a, const float *b, const char *what) {
    cr_expect_eq(memcmp(a, b, N_SITES * N_SITES * sizeof(float)), 0, "%s", what);
}

Test(coord_gram, rows_computed_during_verification_are_the_serial_paths_bit_for_bit, .init = setup,
     .fini = teardown) {
    int order[N_SITES] = {2, 0, 1}; /* carol, alice, bob: not slot order */
    for (int i = 0; i < N_SITES; i++) s_deliver(order[i], s_delta[order[i]], s_delta[order[i]]);
    cr_assert_eq(s_c.n_updates, N_SITES, "every update accepted");
    cr_expect_eq(s_early_rows_logged(), N_SITES, "every row was computed while its update was verified");
    for (int k = 0; k < N_SITES; k++)
        cr_expect_eq(memcmp(s_c.U + (size_t)k * NP, s_delta[k], sizeof s_delta[k]), 0, "U's row %d is its update", k);
    float serial[N_SITES * N_SITES];
    s_serial_gram(serial);
    s_expect_same_bits(s_c.gram, serial, "the Gram matrix differs from the serial path's");
    s_expect_gram_of(s_c.gram, s_delta);
}

Test(coord_gram, a_refused_update_leaves_no_trace_and_an_accepted_one_is_never_overwritten, .init = setup,
     .fini = teardown) {
    static float forged[NP], big[NP], again[NP];
    for (size_t i = 0; i < NP; i++) {
        forged[i] = s_delta[1][i] + 0.5f; /* not what bob signed */
        big[i] = 10.0f;                   /* signed, but over max_norm */
        again[i] = -s_delta[0][i];        /* alice's second update of the round */
    }
    s_deliver(0, s_delta[0], s_delta[0]);
    cr_assert_eq(s_c.n_updates, 1);
    s_deliver(1, s_delta[1], forged);
    cr_expect_eq(s_c.rejected[REJ_SIGNATURE], 1, "a frame that is not what was signed is refused");
    s_deliver(1, big, big);
    cr_expect_eq(s_c.rejected[REJ_NORM], 1, "an update over the norm bound is refused");
    cr_expect_eq(s_c.n_updates, 1);
    for (int i = 0; i < N_SITES * N_SITES; i++)
        if (i != 0) cr_expect_eq(s_c.gram[i], 0.0f, "G[%d] of a refused update: %g", i, s_c.gram[i]);
    s_deliver(0, again, again);
    cr_expect_eq(s_c.rejected[REJ_DUPLICATE], 1, "alice's second update is refused");
    cr_expect_eq(memcmp(s_c.U, s_delta[0], sizeof s_delta[0]), 0, "alice's accepted update was overwritten");
    s_deliver(2, s_delta[2], s_delta[2]);
    s_deliver(1, s_delta[1], s_delta[1]);
    cr_assert_eq(s_c.n_updates, N_SITES);
    cr_expect_eq(s_early_rows_logged(), N_SITES, "every accepted row was computed while its update was verified");
    float serial[N_SITES * N_SITES];
    s_serial_gram(serial);
    s_expect_same_bits(s_c.gram, serial, "the Gram matrix differs from the serial path's");
    s_expect_gram_of(s_c.gram, s_delta);
}
