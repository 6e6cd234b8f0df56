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

#include "coord_fixture.h"
#include "fedce.h"
#include "rng.h"

#define N_SITES 3
#define NP 70000 /* more than one 65536-float block of fedce_dots */

static coord_fixture_t s_f; /* alice, bob, carol: sites and participant slots 0, 1, 2 */
static float s_delta[N_SITES][NP];

static void setup(void) {
    cr_redirect_stderr(); /* the coordinator's log lines */
    const char *ids[N_SITES] = {"alice", "bob", "carol"};
    const uint64_t n_train[N_SITES] = {100, 100, 100};
    coord_fixture_open(&s_f, ids, N_SITES, n_train, NP);
    coord_t *c = &s_f.c;
    c->fedce = 1;
    c->U = cc_xalloc_floats(c->n_clients * c->P);
    c->gram = cc_xcalloc(c->n_clients * c->n_clients, sizeof(float));
    cc_rng_t rng;
    cc_rng_seed(&rng, 7);
    for (int k = 0; k < N_SITES; k++)
        for (size_t i = 0; i < NP; i++) s_delta[k][i] = (float)(1e-2 * (2.0 * cc_rng_uniform(&rng) - 1.0));
}

static void teardown(void) { coord_fixture_close(&s_f); }

/* Site k sends an Update signed over `signed_delta` whose frame carries `sent`. */
static void s_deliver(int k, const float *signed_delta, const float *sent) {
    coord_fixture_deliver(&s_f, k, 100, signed_delta, sent);
}

/* The serial path (what a journal replay does) over the same rows of U, in arrival order. */
static void s_serial_gram(float *G) {
    coord_t *c = &s_f.c;
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
    cr_assert_eq(s_f.c.n_updates, N_SITES, "every update accepted");
    cr_expect_eq(s_early_rows_logged(), N_SITES, "every row was computed while its update was verified");
    for (int k = 0; k < N_SITES; k++)
        cr_expect_eq(memcmp(s_f.c.U + (size_t)k * NP, s_delta[k], sizeof s_delta[k]), 0, "U's row %d is its update", k);
    float serial[N_SITES * N_SITES];
    s_serial_gram(serial);
    s_expect_same_bits(s_f.c.gram, serial, "the Gram matrix differs from the serial path's");
    s_expect_gram_of(s_f.c.gram, s_delta);
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
    cr_assert_eq(s_f.c.n_updates, 1);
    s_deliver(1, s_delta[1], forged);
    cr_expect_eq(s_f.c.rejected[REJ_SIGNATURE], 1, "a frame that is not what was signed is refused");
    s_deliver(1, big, big);
    cr_expect_eq(s_f.c.rejected[REJ_NORM], 1, "an update over the norm bound is refused");
    cr_expect_eq(s_f.c.n_updates, 1);
    for (int i = 0; i < N_SITES * N_SITES; i++)
        if (i != 0) cr_expect_eq(s_f.c.gram[i], 0.0f, "G[%d] of a refused update: %g", i, s_f.c.gram[i]);
    s_deliver(0, again, again);
    cr_expect_eq(s_f.c.rejected[REJ_DUPLICATE], 1, "alice's second update is refused");
    cr_expect_eq(memcmp(s_f.c.U, s_delta[0], sizeof s_delta[0]), 0, "alice's accepted update was overwritten");
    s_deliver(2, s_delta[2], s_delta[2]);
    s_deliver(1, s_delta[1], s_delta[1]);
    cr_assert_eq(s_f.c.n_updates, N_SITES);
    cr_expect_eq(s_early_rows_logged(), N_SITES, "every accepted row was computed while its update was verified");
    float serial[N_SITES * N_SITES];
    s_serial_gram(serial);
    s_expect_same_bits(s_f.c.gram, serial, "the Gram matrix differs from the serial path's");
    s_expect_gram_of(s_f.c.gram, s_delta);
}
