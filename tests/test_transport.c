/* test_transport.c — ZeroMQ framing, CURVE and the ZAP handler on real sockets.
 *
 * Acceptance: over tcp://127.0.0.1 with CURVE and the ZAP handler served from this
 * thread's poll loop, an enrolled DEALER's sealed message with 2 tensor frames arrives
 * intact, transport_open verifies it, User-Id and the routing id equal the client id, and
 * the coordinator's signed reply reaches the client; a maximal message (64 frames) passes;
 * transport_send_zc releases every frame exactly once.
 * Rejection: a client whose key is not enrolled never gets a message through (ZAP denied
 * counter moves, accepted does not) while an enrolled one still does; a client pinning the
 * wrong coordinator key gets nothing through; too many parts, an unprintable or overlong
 * routing id and an envelope-less message are drained and refused (-2) and the next
 * message is read intact; tampered and missing frames fail transport_open; malformed ZAP
 * requests are answered 500 (never a crash), wrong mechanism/domain/key 400; a second ZAP
 * handler in one context is refused. Every socket has ZMQ_LINGER 0. */
#include <criterion/criterion.h>
#include <errno.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "concord.pb-c.h"
#include "transport.h"

static void s_setup(void) { cr_assert_geq(sodium_init(), 0); }

TestSuite(transport, .init = s_setup, .timeout = 20);

static void *s_socket(void *ctx, int type) {
    void *s = zmq_socket(ctx, type);
    cr_assert_not_null(s);
    int zero = 0;
    cr_assert_eq(zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero), 0);
    return s;
}

static void s_routing_id(void *s, const char *id) {
    cr_assert_eq(zmq_setsockopt(s, ZMQ_ROUTING_ID, id, strlen(id)), 0);
}

/* A coordinator: ROUTER with CURVE on loopback, ZAP handler over an enrolment file that
 * lists hospital-a and hospital-b (not "rogue", not the coordinator itself). */
typedef struct {
    void *ctx, *router;
    zap_handler_t *zap;
    enrolment_t *enrolment;
    identity_t server, a, b, rogue;
    char endpoint[128];
    char enrol_path[64];
} s_fed_t;

static void s_fed_init(s_fed_t *f) {
    memset(f, 0, sizeof *f);
    cc_err_t err = {0};
    cr_assert(zmq_has("curve"), "libzmq without CURVE");
    cr_assert_eq(identity_generate(&f->server, "coordinator", &err), 0);
    cr_assert_eq(identity_generate(&f->a, "hospital-a", &err), 0);
    cr_assert_eq(identity_generate(&f->b, "hospital-b", &err), 0);
    cr_assert_eq(identity_generate(&f->rogue, "rogue", &err), 0);

    snprintf(f->enrol_path, sizeof f->enrol_path, "/tmp/concord_enrol_XXXXXX");
    int fd = mkstemp(f->enrol_path);
    cr_assert_geq(fd, 0);
    char ha[65], hb[65], text[512];
    identity_public_hex(ha, f->a.pk);
    identity_public_hex(hb, f->b.pk);
    int n = snprintf(text, sizeof text, "hospital-a %s\nhospital-b %s\n", ha, hb);
    cr_assert_eq(write(fd, text, (size_t)n), n);
    close(fd);
    cr_assert_eq(enrolment_load(f->enrol_path, &f->enrolment, &err), 0, "%s", err.msg);

    f->ctx = zmq_ctx_new();
    f->zap = zap_handler_new(f->ctx, f->enrolment, &err);
    cr_assert_not_null(f->zap, "%s", err.msg);
    f->router = s_socket(f->ctx, ZMQ_ROUTER);
    cr_assert_eq(transport_curve_server(f->router, &f->server), 0);
    cr_assert_eq(zmq_bind(f->router, "tcp://127.0.0.1:*"), 0, "%s", zmq_strerror(errno));
    size_t len = sizeof f->endpoint;
    cr_assert_eq(zmq_getsockopt(f->router, ZMQ_LAST_ENDPOINT, f->endpoint, &len), 0);
}

static void s_fed_fini(s_fed_t *f) {
    zmq_close(f->router);
    zap_handler_destroy(&f->zap);
    cr_assert_null(f->zap);
    zmq_ctx_term(f->ctx);
    enrolment_destroy(&f->enrolment);
    unlink(f->enrol_path);
    identity_clear(&f->server), identity_clear(&f->a), identity_clear(&f->b);
    identity_clear(&f->rogue);
}

static void *s_client(s_fed_t *f, const identity_t *self, const char *server_key) {
    void *d = s_socket(f->ctx, ZMQ_DEALER);
    s_routing_id(d, self->id);
    cr_assert_eq(transport_curve_client(d, self, server_key), 0);
    cr_assert_eq(zmq_connect(d, f->endpoint), 0);
    return d;
}

/* The coordinator's poll loop: serves ZAP and waits up to ms for one message on the
 * ROUTER. Returns transport_recv's code, or 1 on timeout. */
static int s_pump(s_fed_t *f, int ms, transport_msg_t *msg) {
    double end = cc_now() + ms / 1000.0;
    for (;;) {
        int left = (int)((end - cc_now()) * 1000);
        if (left <= 0) return 1;
        zmq_pollitem_t items[2] = {{zap_handler_socket(f->zap), 0, ZMQ_POLLIN, 0},
                                   {f->router, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(items, 2, left);
        cr_assert_geq(n, 0);
        if (items[0].revents & ZMQ_POLLIN) zap_handler_handle(f->zap);
        if (items[1].revents & ZMQ_POLLIN) return transport_recv(f->router, 1, msg, ZMQ_DONTWAIT);
    }
}

static int s_coordinator_lookup(void *ctx, const char *id, uint8_t pk[WIRE_PK_BYTES]) {
    const identity_t *server = ctx;
    if (strcmp(id, server->id) != 0) return -1;
    memcpy(pk, server->pk, WIRE_PK_BYTES);
    return 0;
}

static uint8_t *s_seal(const identity_t *who, const wire_frame_t *frames, size_t n,
                       size_t *len) {
    Concord__Heartbeat hb = CONCORD__HEARTBEAT__INIT;
    hb.round = 4;
    hb.state = "training";
    uint8_t body[64];
    size_t body_len = concord__heartbeat__pack(&hb, body);
    wire_out_t out = {.type = CONCORD__MSG_TYPE__MSG_HEARTBEAT, .sender_id = who->id, .seq = 9,
                      .round = 4, .body = body, .body_len = body_len, .frames = frames,
                      .n_frames = n};
    uint8_t *env = NULL;
    cc_err_t err = {0};
    cr_assert_eq(wire_seal(&out, who->sk, &env, len, &err), 0, "%s", err.msg);
    return env;
}

/* ---- CURVE + ZAP end to end ---- */

Test(transport, enrolled_client_message_arrives_intact) {
    s_fed_t f;
    s_fed_init(&f);
    void *dealer = s_client(&f, &f.a, f.server.curve_public);

    float t0[1000], t1[7];
    for (int i = 0; i < 1000; i++) t0[i] = (float)i * 0.001f - 0.5f;
    for (int i = 0; i < 7; i++) t1[i] = (float)(i * i);
    wire_frame_t frames[2] = {{t0, 1000}, {t1, 7}};
    size_t env_len;
    uint8_t *env = s_seal(&f.a, frames, 2, &env_len);
    cr_assert_eq(transport_send(dealer, NULL, env, env_len, frames, 2, 0), 0);

    transport_msg_t msg;
    cr_assert_eq(s_pump(&f, 3000, &msg), 0, "no message within 3 s");
    cr_assert_eq(msg.n_parts, 3);
    cr_assert_str_eq(msg.peer, "hospital-a");
    cr_assert_str_eq(msg.user_id, "hospital-a");
    cr_assert_eq(zmq_msg_size(&msg.parts[0]), env_len);
    cr_assert_eq(memcmp(zmq_msg_data(&msg.parts[0]), env, env_len), 0);
    cr_assert_eq(zmq_msg_size(&msg.parts[1]), sizeof t0);
    cr_assert_eq(memcmp(zmq_msg_data(&msg.parts[1]), t0, sizeof t0), 0);
    cr_assert_eq(zmq_msg_size(&msg.parts[2]), sizeof t1);
    cr_assert_eq(memcmp(zmq_msg_data(&msg.parts[2]), t1, sizeof t1), 0);

    wire_in_t in;
    cc_err_t err = {0};
    cr_assert_eq(transport_open(&msg, enrolment_lookup, f.enrolment, &in, &err), 0, "%s", err.msg);
    cr_assert_str_eq(in.sender_id, "hospital-a");
    cr_assert_eq(in.n_frames, 2);
    cr_assert_eq(in.type, CONCORD__MSG_TYPE__MSG_HEARTBEAT);
    Concord__Heartbeat *hb = concord__heartbeat__unpack(NULL, in.body_len, in.body);
    cr_assert_not_null(hb);
    cr_assert_str_eq(hb->state, "training");
    concord__heartbeat__free_unpacked(hb, NULL);
    wire_in_clear(&in);
    transport_msg_close(&msg);
    transport_msg_close(&msg); /* idempotent */
    cr_assert_geq(zap_handler_accepted(f.zap), 1);
    cr_assert_eq(zap_handler_denied(f.zap), 0);

    /* The coordinator's reply reaches the client and verifies against the pinned server. */
    float w[3] = {1, 2, 3};
    wire_frame_t rf[1] = {{w, 3}};
    size_t rlen;
    uint8_t *renv = s_seal(&f.server, rf, 1, &rlen);
    cr_assert_eq(transport_send(f.router, "hospital-a", renv, rlen, rf, 1, 0), 0);
    zmq_pollitem_t it = {dealer, 0, ZMQ_POLLIN, 0};
    cr_assert_eq(zmq_poll(&it, 1, 3000), 1, "no reply within 3 s");
    cr_assert_eq(transport_recv(dealer, 0, &msg, ZMQ_DONTWAIT), 0);
    cr_assert_str_eq(msg.peer, "");
    cr_assert_eq(msg.n_parts, 2);
    cr_assert_eq(transport_open(&msg, s_coordinator_lookup, &f.server, &in, &err), 0, "%s",
                 err.msg);
    cr_assert_str_eq(in.sender_id, "coordinator");
    wire_in_clear(&in);
    transport_msg_close(&msg);
    /* nothing else pending */
    cr_assert_eq(transport_recv(dealer, 0, &msg, ZMQ_DONTWAIT), -1);
    cr_assert_eq(errno, EAGAIN);

    free(renv);
    free(env);
    zmq_close(dealer);
    s_fed_fini(&f);
}

Test(transport, unenrolled_client_never_gets_through) {
    s_fed_t f;
    s_fed_init(&f);
    void *rogue = s_client(&f, &f.rogue, f.server.curve_public);
    size_t env_len;
    uint8_t *env = s_seal(&f.rogue, NULL, 0, &env_len);
    cr_assert_eq(transport_send(rogue, NULL, env, env_len, NULL, 0, 0), 0);

    transport_msg_t msg;
    cr_assert_eq(s_pump(&f, 500, &msg), 1, "a message from an unenrolled key was delivered");
    cr_assert_geq(zap_handler_denied(f.zap), 1);
    cr_assert_eq(zap_handler_accepted(f.zap), 0);

    /* the coordinator is still healthy: an enrolled client gets through */
    void *b = s_client(&f, &f.b, f.server.curve_public);
    size_t blen;
    uint8_t *benv = s_seal(&f.b, NULL, 0, &blen);
    cr_assert_eq(transport_send(b, NULL, benv, blen, NULL, 0, 0), 0);
    cr_assert_eq(s_pump(&f, 3000, &msg), 0);
    cr_assert_str_eq(msg.peer, "hospital-b");
    cr_assert_str_eq(msg.user_id, "hospital-b");
    transport_msg_close(&msg);
    /* ... and the rogue's queued message still never arrives */
    cr_assert_eq(s_pump(&f, 200, &msg), 1);

    free(benv);
    free(env);
    zmq_close(b);
    zmq_close(rogue);
    s_fed_fini(&f);
}

Test(transport, client_pinning_the_wrong_coordinator_key_cannot_talk) {
    s_fed_t f;
    s_fed_init(&f);
    identity_t impostor;
    cc_err_t err = {0};
    cr_assert_eq(identity_generate(&impostor, "impostor", &err), 0);
    /* hospital-a is enrolled, but pins a key that is not the coordinator's */
    void *d = s_client(&f, &f.a, impostor.curve_public);
    size_t env_len;
    uint8_t *env = s_seal(&f.a, NULL, 0, &env_len);
    cr_assert_eq(transport_send(d, NULL, env, env_len, NULL, 0, 0), 0);
    transport_msg_t msg;
    cr_assert_eq(s_pump(&f, 500, &msg), 1, "message delivered despite the wrong server key");
    cr_assert_eq(zap_handler_accepted(f.zap), 0);
    /* nor can the coordinator reach it (ROUTER drops messages to unknown peers) */
    cr_assert_eq(transport_send(f.router, "hospital-a", env, env_len, NULL, 0, 0), 0);
    zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
    cr_assert_eq(zmq_poll(&it, 1, 100), 0);
    free(env);
    zmq_close(d);
    identity_clear(&impostor);
    s_fed_fini(&f);
}

Test(transport, curve_client_refuses_malformed_server_key) {
    void *ctx = zmq_ctx_new();
    void *d = s_socket(ctx, ZMQ_DEALER);
    identity_t a;
    cc_err_t err = {0};
    cr_assert_eq(identity_generate(&a, "a", &err), 0);
    cr_assert_eq(transport_curve_client(d, &a, "short"), -1);
    cr_assert_eq(errno, EINVAL);
    cr_assert_eq(transport_curve_client(d, &a, NULL), -1);
    cr_assert_eq(transport_curve_client(d, &a, a.curve_public), 0);
    identity_clear(&a);
    zmq_close(d);
    zmq_ctx_term(ctx);
}

/* ---- framing over inproc (no CURVE) ---- */

typedef struct {
    void *ctx, *router, *dealer;
} s_pair_t;

static void s_pair(s_pair_t *p, const char *dealer_id) {
    static int k;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://pair-%d", k++);
    p->ctx = zmq_ctx_new();
    p->router = s_socket(p->ctx, ZMQ_ROUTER);
    cr_assert_eq(zmq_bind(p->router, ep), 0);
    p->dealer = s_socket(p->ctx, ZMQ_DEALER);
    if (dealer_id) s_routing_id(p->dealer, dealer_id);
    cr_assert_eq(zmq_connect(p->dealer, ep), 0);
}

static void s_pair_fini(s_pair_t *p) {
    zmq_close(p->dealer);
    zmq_close(p->router);
    zmq_ctx_term(p->ctx);
}

static int s_recv_wait(void *sock, int is_router, transport_msg_t *msg) {
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    cr_assert_eq(zmq_poll(&it, 1, 2000), 1, "nothing to receive");
    return transport_recv(sock, is_router, msg, ZMQ_DONTWAIT);
}

static void s_send_parts(void *sock, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)i;
        cr_assert_geq(zmq_send(sock, &v, sizeof v, i + 1 < n ? ZMQ_SNDMORE : 0), 0);
    }
}

Test(transport, too_many_parts_drained_and_refused) {
    s_pair_t p;
    s_pair(&p, "d1");
    transport_msg_t msg;
    s_send_parts(p.dealer, WIRE_MAX_TENSORS + 2); /* envelope + 65 frames: one too many */
    cr_assert_eq(s_recv_wait(p.router, 1, &msg), -2);
    cr_assert_eq(msg.n_parts, 0);
    s_send_parts(p.dealer, WIRE_MAX_TENSORS + 200);
    cr_assert_eq(s_recv_wait(p.router, 1, &msg), -2);
    /* the next message starts at a boundary; the maximum is accepted */
    s_send_parts(p.dealer, WIRE_MAX_TENSORS + 1);
    cr_assert_eq(s_recv_wait(p.router, 1, &msg), 0);
    cr_assert_str_eq(msg.peer, "d1");
    cr_assert_str_eq(msg.user_id, "");
    cr_assert_eq(msg.n_parts, WIRE_MAX_TENSORS + 1);
    uint32_t v;
    memcpy(&v, zmq_msg_data(&msg.parts[WIRE_MAX_TENSORS]), 4);
    cr_assert_eq(v, WIRE_MAX_TENSORS);
    transport_msg_close(&msg);
    /* same on the DEALER side */
    cr_assert_eq(zmq_send(p.router, "d1", 2, ZMQ_SNDMORE), 2);
    s_send_parts(p.router, WIRE_MAX_TENSORS + 2);
    cr_assert_eq(s_recv_wait(p.dealer, 0, &msg), -2);
    cr_assert_eq(zmq_send(p.router, "d1", 2, ZMQ_SNDMORE), 2);
    s_send_parts(p.router, 3);
    cr_assert_eq(s_recv_wait(p.dealer, 0, &msg), 0);
    cr_assert_eq(msg.n_parts, 3);
    transport_msg_close(&msg);
    s_pair_fini(&p);
}

/* A queue warm-up arrives whole in both directions, flagged and with its parts counted, and
 * the message after it starts at its own boundary. */
Test(transport, queue_warmup_is_read_whole_and_flagged_both_ways) {
    s_pair_t p;
    s_pair(&p, "d1");
    transport_msg_t msg;
    cr_assert_eq(transport_send_warmup(p.dealer, NULL, 0), 0);
    s_send_parts(p.dealer, 2);
    cr_assert_eq(s_recv_wait(p.router, 1, &msg), 0);
    cr_assert_str_eq(msg.peer, "d1");
    cr_assert_eq(msg.warmup_parts, TRANSPORT_WARMUP_PARTS);
    cr_assert_eq(msg.n_parts, 1);
    transport_msg_close(&msg);
    cr_assert_eq(s_recv_wait(p.router, 1, &msg), 0);
    cr_assert_eq(msg.warmup_parts, 0);
    cr_assert_eq(msg.n_parts, 2);
    transport_msg_close(&msg);

    cr_assert_eq(transport_send_warmup(p.router, "d1", 0), 0);
    cr_assert_eq(zmq_send(p.router, "d1", 2, ZMQ_SNDMORE), 2);
    s_send_parts(p.router, 3);
    cr_assert_eq(s_recv_wait(p.dealer, 0, &msg), 0);
    cr_assert_eq(msg.warmup_parts, TRANSPORT_WARMUP_PARTS);
    transport_msg_close(&msg);
    cr_assert_eq(s_recv_wait(p.dealer, 0, &msg), 0);
    cr_assert_eq(msg.warmup_parts, 0);
    cr_assert_eq(msg.n_parts, 3);
    transport_msg_close(&msg);
    s_pair_fini(&p);
}

Test(transport, bad_routing_ids_refused) {
    transport_msg_t msg;
    /* no routing id: ROUTER makes up a binary one (leading 0 byte) */
    s_pair_t p;
    s_pair(&p, NULL);
    s_send_parts(p.dealer, 3);
    cr_assert_eq(s_recv_wait(p.router, 1, &msg), -2);
    cr_assert_str_eq(msg.peer, "");
    s_pair_fini(&p);
    /* longer than an id can be */
    char longid[WIRE_MAX_ID + 2];
    memset(longid, 'x', sizeof longid - 1), longid[sizeof longid - 1] = '\0';
    s_pair(&p, longid);
    s_send_parts(p.dealer, 2);
    cr_assert_eq(s_recv_wait(p.router, 1, &msg), -2);
    s_pair_fini(&p);
    /* control characters */
    s_pair(&p, "bad\nid");
    s_send_parts(p.dealer, 2);
    cr_assert_eq(s_recv_wait(p.router, 1, &msg), -2);
    s_pair_fini(&p);
    /* exactly 64 printable characters is fine */
    longid[WIRE_MAX_ID] = '\0';
    s_pair(&p, longid);
    s_send_parts(p.dealer, 2);
    cr_assert_eq(s_recv_wait(p.router, 1, &msg), 0);
    cr_assert_str_eq(msg.peer, longid);
    cr_assert_eq(msg.n_parts, 2);
    transport_msg_close(&msg);
    s_pair_fini(&p);
}

Test(transport, transport_open_rejects_tampered_and_missing_frames) {
    s_pair_t p;
    s_pair(&p, "hospital-a");
    identity_t a;
    cc_err_t err = {0};
    cr_assert_eq(identity_generate(&a, "hospital-a", &err), 0);
    identity_public_t one;
    memset(&one, 0, sizeof one);
    enrolment_t enr = {.n = 1, .keys = &one};
    snprintf(enr.keys[0].id, sizeof enr.keys[0].id, "hospital-a");
    memcpy(enr.keys[0].pk, a.pk, 32);

    float x[4] = {1, 2, 3, 4}, y[4] = {1, 2, 3, 5};
    wire_frame_t fx[2] = {{x, 4}, {x, 2}}, fy[2] = {{y, 4}, {x, 2}};
    size_t len;
    uint8_t *env = s_seal(&a, fx, 2, &len);
    transport_msg_t msg;
    wire_in_t in;

    cr_assert_eq(transport_send(p.dealer, NULL, env, len, fx, 2, 0), 0);
    cr_assert_eq(s_recv_wait(p.router, 1, &msg), 0);
    cr_assert_eq(transport_open(&msg, enrolment_lookup, &enr, &in, &err), 0, "%s", err.msg);
    wire_in_clear(&in);
    transport_msg_close(&msg);

    cr_assert_eq(transport_send(p.dealer, NULL, env, len, fy, 2, 0), 0); /* tampered frame */
    cr_assert_eq(s_recv_wait(p.router, 1, &msg), 0);
    cr_assert_eq(transport_open(&msg, enrolment_lookup, &enr, &in, &err), WIRE_ERR_DIGEST);
    transport_msg_close(&msg);

    cr_assert_eq(transport_send(p.dealer, NULL, env, len, fx, 1, 0), 0); /* frame missing */
    cr_assert_eq(s_recv_wait(p.router, 1, &msg), 0);
    cr_assert_eq(transport_open(&msg, enrolment_lookup, &enr, &in, &err), WIRE_ERR_FRAMES);
    transport_msg_close(&msg);

    cr_assert_eq(transport_send(p.dealer, NULL, env, len - 1, fx, 2, 0), 0); /* cut envelope */
    cr_assert_eq(s_recv_wait(p.router, 1, &msg), 0);
    cr_assert_neq(transport_open(&msg, enrolment_lookup, &enr, &in, &err), 0);
    transport_msg_close(&msg);

    enr.n = 0; /* sender no longer enrolled */
    cr_assert_eq(transport_send(p.dealer, NULL, env, len, fx, 2, 0), 0);
    cr_assert_eq(s_recv_wait(p.router, 1, &msg), 0);
    cr_assert_eq(transport_open(&msg, enrolment_lookup, &enr, &in, &err), WIRE_ERR_SENDER);
    transport_msg_close(&msg);

    transport_msg_t empty;
    empty.n_parts = 0;
    cr_assert_eq(transport_open(&empty, enrolment_lookup, &enr, &in, &err), WIRE_ERR_FRAMES);

    /* too many frames for a send */
    wire_frame_t many[WIRE_MAX_TENSORS + 1];
    for (size_t i = 0; i <= WIRE_MAX_TENSORS; i++) many[i] = fx[0];
    cr_assert_eq(transport_send(p.dealer, NULL, env, len, many, WIRE_MAX_TENSORS + 1, 0), -1);
    cr_assert_eq(errno, EINVAL);

    free(env);
    identity_clear(&a);
    s_pair_fini(&p);
}

static atomic_int s_released;

static void s_release(void *data, void *hint) {
    (void)data;
    cr_assert_eq(hint, (void *)&s_released);
    atomic_fetch_add(&s_released, 1);
}

Test(transport, send_zc_releases_each_frame_once) {
    s_pair_t p;
    s_pair(&p, "z");
    float *buf = malloc(3 * 256 * sizeof(float));
    for (int i = 0; i < 3 * 256; i++) buf[i] = (float)i;
    wire_frame_t frames[3] = {{buf, 256}, {buf + 256, 256}, {buf + 512, 256}};
    atomic_store(&s_released, 0);
    cr_assert_eq(transport_send_zc(p.dealer, NULL, (const uint8_t *)"e", 1, frames, 3, 0,
                                   s_release, &s_released), 0);
    transport_msg_t msg;
    cr_assert_eq(s_recv_wait(p.router, 1, &msg), 0);
    cr_assert_eq(msg.n_parts, 4);
    /* over inproc the receiver holds the sender's very buffer until it closes its parts */
    cr_assert_eq(zmq_msg_data(&msg.parts[2]), (void *)(buf + 256));
    transport_msg_close(&msg);
    for (int i = 0; i < 100 && atomic_load(&s_released) < 3; i++) usleep(1000);
    cr_assert_eq(atomic_load(&s_released), 3);
    free(buf);
    s_pair_fini(&p);
}

/* ---- the ZAP handler on hand-made requests ---- */

typedef struct {
    char frame[6][128];
    size_t n;
} s_reply_t;

static void s_zap_call(void *req, zap_handler_t *zap, const char *const *frames,
                       const size_t *lens, size_t n, s_reply_t *r) {
    for (size_t i = 0; i < n; i++)
        cr_assert_geq(zmq_send(req, frames[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0), 0);
    zmq_pollitem_t it = {zap_handler_socket(zap), 0, ZMQ_POLLIN, 0};
    cr_assert_eq(zmq_poll(&it, 1, 2000), 1);
    zap_handler_handle(zap);
    memset(r, 0, sizeof *r);
    int more = 1;
    while (more) {
        cr_assert_lt(r->n, 6, "reply has more than 6 frames");
        int got = zmq_recv(req, r->frame[r->n], sizeof r->frame[0] - 1, 0);
        cr_assert_geq(got, 0);
        r->n++;
        size_t sz = sizeof more;
        zmq_getsockopt(req, ZMQ_RCVMORE, &more, &sz);
    }
    cr_assert_eq(r->n, 6);
    cr_assert_str_eq(r->frame[0], "1.0");
}

Test(transport, zap_handler_answers_malformed_requests) {
    s_fed_t f;
    s_fed_init(&f);
    void *req = s_socket(f.ctx, ZMQ_REQ);
    cr_assert_eq(zmq_connect(req, "inproc://zeromq.zap.01"), 0);
    uint8_t key_a[32], key_rogue[32];
    cr_assert_not_null(zmq_z85_decode(key_a, f.a.curve_public));
    cr_assert_not_null(zmq_z85_decode(key_rogue, f.rogue.curve_public));
    s_reply_t r;

    /* nothing pending: returns at once */
    zap_handler_handle(f.zap);

    const char *good[7] = {"1.0", "req-1", "concord", "127.0.0.1", "", "CURVE", (char *)key_a};
    size_t good_len[7] = {3, 5, 7, 9, 0, 5, 32};
    s_zap_call(req, f.zap, good, good_len, 7, &r);
    cr_assert_str_eq(r.frame[1], "req-1");
    cr_assert_str_eq(r.frame[2], "200");
    cr_assert_str_eq(r.frame[4], "hospital-a");

    const char *f7[7];
    size_t l7[7];
    memcpy(f7, good, sizeof f7), memcpy(l7, good_len, sizeof l7);
    f7[6] = (char *)key_rogue;
    s_zap_call(req, f.zap, f7, l7, 7, &r);
    cr_assert_str_eq(r.frame[2], "400");
    cr_assert_str_eq(r.frame[4], "");

    memcpy(f7, good, sizeof f7);
    f7[2] = "other", l7[2] = 5; /* wrong domain */
    s_zap_call(req, f.zap, f7, l7, 7, &r);
    cr_assert_str_eq(r.frame[2], "400");
    l7[2] = 7;

    memcpy(f7, good, sizeof f7);
    f7[5] = "PLAIN"; /* wrong mechanism */
    s_zap_call(req, f.zap, f7, l7, 7, &r);
    cr_assert_str_eq(r.frame[2], "400");

    memcpy(f7, good, sizeof f7);
    l7[6] = 31; /* short key */
    s_zap_call(req, f.zap, f7, l7, 7, &r);
    cr_assert_str_eq(r.frame[2], "500");
    cr_assert_str_eq(r.frame[1], "req-1");
    l7[6] = 32;

    memcpy(f7, good, sizeof f7);
    f7[0] = "2.0"; /* unknown ZAP version */
    s_zap_call(req, f.zap, f7, l7, 7, &r);
    cr_assert_str_eq(r.frame[2], "500");

    s_zap_call(req, f.zap, good, good_len, 3, &r); /* too few frames */
    cr_assert_str_eq(r.frame[2], "500");
    cr_assert_str_eq(r.frame[1], "req-1");
    s_zap_call(req, f.zap, good, good_len, 1, &r); /* no request id at all */
    cr_assert_str_eq(r.frame[2], "500");
    cr_assert_str_eq(r.frame[1], "");

    const char *f12[12];
    size_t l12[12];
    for (int i = 0; i < 12; i++) f12[i] = i < 7 ? good[i] : "x", l12[i] = i < 7 ? good_len[i] : 1;
    s_zap_call(req, f.zap, f12, l12, 12, &r); /* too many frames */
    cr_assert_str_eq(r.frame[2], "500");
    s_zap_call(req, f.zap, f12, l12, 8, &r); /* CURVE with an extra credential */
    cr_assert_str_eq(r.frame[2], "500");

    /* still serving, and an enrolment swap takes effect */
    s_zap_call(req, f.zap, good, good_len, 7, &r);
    cr_assert_str_eq(r.frame[2], "200");
    zap_handler_set_enrolment(f.zap, NULL);
    s_zap_call(req, f.zap, good, good_len, 7, &r);
    cr_assert_str_eq(r.frame[2], "400");
    zap_handler_set_enrolment(f.zap, f.enrolment);

    cr_assert_eq(zap_handler_accepted(f.zap), 2);
    cr_assert_eq(zap_handler_denied(f.zap), 10);

    /* one ZAP handler per context */
    cc_err_t err = {0};
    zap_handler_t *second = zap_handler_new(f.ctx, f.enrolment, &err);
    cr_assert_null(second);
    cr_assert_not_null(strstr(err.msg, "one ZAP handler per context"), "%s", err.msg);

    zmq_close(req);
    s_fed_fini(&f);
}
