/* coord_fixture.h — a coordinator in memory for the tests of its modules (test_coord_gram.c,
 * test_coord_intime.c): no process and no network (its ROUTER is bound to an inproc
 * endpoint nobody dials, so Acks and Nacks are dropped), a fresh directory with the
 * enrolment of the test's sites and the round's journal, every site welcomed and a
 * participant, and real signed Update messages handed to coord_handle_message with their
 * frame at an odd address, as ZeroMQ may leave it. Header-only: each test is its own
 * executable. */
#ifndef CONCORD_COORD_FIXTURE_H
#define CONCORD_COORD_FIXTURE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "concord.pb-c.h"
#include "coord.h"
#include "daemon_harness.h"
#include "tmpdir_fixture.h"

#define COORD_FIXTURE_MAX_SITES 8

typedef struct {
    coord_t c;
    void *ctx;
    char dir[128];
    int n_sites;
    identity_t site[COORD_FIXTURE_MAX_SITES]; /* in the order of ids: their participant slots */
    uint64_t seq[COORD_FIXTURE_MAX_SITES];
} coord_fixture_t;

/* Sets up f for n sites named ids (sorted, so site k is slot k), models of P floats, each
 * site having announced n_train[k] training samples; the round (0) is open, in training. */
static inline void coord_fixture_open(coord_fixture_t *f, const char *const *ids, int n, const uint64_t *n_train,
                                      size_t P) {
    cc_err_t err = {0};
    memset(f, 0, sizeof *f);
    cr_assert(n <= COORD_FIXTURE_MAX_SITES);
    f->n_sites = n;
    tmpdir_make(f->dir, sizeof f->dir, "/tmp/concord-coord-");
    char path[256];
    snprintf(path, sizeof path, "%s/enrolment.txt", f->dir);
    FILE *fp = fopen(path, "w");
    for (int i = 0; i < n; i++) {
        cr_assert_eq(identity_generate(&f->site[i], ids[i], &err), 0, "%s", err.msg);
        char hex[65];
        identity_public_hex(hex, f->site[i].pk);
        fprintf(fp, "%s %s\n", ids[i], hex);
    }
    fclose(fp);
    coord_t *c = &f->c;
    cr_assert_eq(enrolment_load(path, &c->enrolment, &err), 0, "%s", err.msg);
    cr_assert_eq(identity_generate(&c->self, "coordinator", &err), 0, "%s", err.msg);
    c->state_dir = f->dir;
    c->P = P, c->max_norm = 1e3, c->agg_threads = 2, c->server_lr = 1.0;
    coord_clients_init(c);
    size_t slots = c->n_clients + 1;
    c->participants = cc_xcalloc(slots, sizeof *c->participants);
    for (int i = 0; i < n; i++) {
        coord_client_t *cl = coord_client_find(c, ids[i]);
        cl->welcomed = 1, cl->n_train = n_train[i];
        snprintf(c->participants[i], sizeof c->participants[i], "%s", ids[i]);
    }
    c->n_participants = (size_t)n;
    c->updates = cc_xcalloc(slots, sizeof *c->updates);
    c->task_state = cc_xcalloc(slots, 1), c->grant_state = cc_xcalloc(slots, 1);
    concord__train_settings__init(&c->training); /* what a Task carries */
    memset(c->digest, 0x5a, sizeof c->digest); /* θ_t's digest, as the tasks said */
    snprintf(path, sizeof path, "%s/round.journal", f->dir);
    cr_assert_eq(journal_open(path, 0, &c->journal, NULL, &err), 0, "%s", err.msg);
    f->ctx = zmq_ctx_new();
    c->router = zmq_socket(f->ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(c->router, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_bind(c->router, "inproc://coord-fixture"), 0);
    coord_set_state(c, COORD_TRAINING);
}

/* Frees what coord_fixture_open made (and U, gram, θ and the in-time state if the test
 * made them) and removes the directory. */
static inline void coord_fixture_close(coord_fixture_t *f) {
    coord_t *c = &f->c;
    coord_params_free(c); /* and the task snapshot, if a test sent a task; a sum begun in time is in θ */
    journal_close(&c->journal);
    zmq_close(c->router);
    zmq_ctx_term(f->ctx);
    identity_clear(&c->self);
    enrolment_destroy(&c->enrolment);
    coord_clients_free(c);
    free(c->participants), free(c->updates), free(c->task_state), free(c->grant_state), free(c->U), free(c->gram);
    free(c->pre_scale), free(c->pre_update);
    for (int i = 0; i < f->n_sites; i++) identity_clear(&f->site[i]);
    tmpdir_remove(f->dir);
}

/* Site k sends an Update of round 0 claiming n_samples, signed over signed_delta, whose
 * frame carries sent (P floats, copied to an odd address); the coordinator handles it as
 * its poll loop would. */
static inline void coord_fixture_deliver(coord_fixture_t *f, int k, uint64_t n_samples, const float *signed_delta,
                                         const float *sent) {
    size_t P = f->c.P;
    harness_update_t u;
    harness_update_init(&u, 0, f->c.digest, (uint32_t)P);
    u.u.n_samples = n_samples;
    size_t body_len = concord__update__get_packed_size(&u.u);
    uint8_t *body = malloc(body_len), *env = NULL;
    concord__update__pack(&u.u, body);
    wire_frame_t frame = {signed_delta, P};
    wire_out_t out = {.type = CONCORD__MSG_TYPE__MSG_UPDATE, .sender_id = f->site[k].id, .seq = ++f->seq[k],
                      .round = 0, .body = body, .body_len = body_len, .frames = &frame, .n_frames = 1};
    size_t env_len;
    cc_err_t err = {0};
    cr_assert_eq(wire_seal(&out, f->site[k].sk, &env, &env_len, &err), 0, "%s", err.msg);
    uint8_t *buf = malloc(P * sizeof(float) + 3); /* frame data at base + 3: not 4-byte aligned */
    memcpy(buf + 3, sent, P * sizeof(float));
    transport_msg_t msg;
    memset(&msg, 0, sizeof msg);
    snprintf(msg.peer, sizeof msg.peer, "%s", f->site[k].id);
    zmq_msg_init_size(&msg.parts[0], env_len);
    memcpy(zmq_msg_data(&msg.parts[0]), env, env_len);
    zmq_msg_init_data(&msg.parts[1], buf + 3, P * sizeof(float), NULL, NULL);
    msg.n_parts = 2;
    coord_handle_message(&f->c, &msg);
    transport_msg_close(&msg);
    free(buf), free(env), free(body);
}

#endif
