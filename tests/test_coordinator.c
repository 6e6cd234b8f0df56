/* test_coordinator.c — a real concord-coordinator process on loopback, driven by two test
 * clients built from the library. Every tampered or out-of-protocol message is rejected
 * with a Nack naming the reason and counted on the metrics endpoint, and the round still
 * completes with the honest updates; unenrolled keys and a wrong pinned coordinator key
 * get nowhere. With an upload window of one update, uploads wait for their grant in
 * request order; a grant its silent client never uses expires after upload_grant_s, and
 * one whose client's connection closes goes to the next client at once. */
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
#include "identity.h"
#include "msg.h"
#include "transport.h"
#include "wire.h"

#define P 15 /* softmax, 4 inputs, 3 classes: 4*3 + 3 */

static char s_dir[256];
static int s_port, s_http;
static pid_t s_coord;
static identity_t s_coord_id, s_alice, s_bob, s_mallory;
static void *s_ctx;

static void s_keys(void) {
    cc_err_t err = {0};
    const char *ids[] = {"coordinator", "alice", "bob", "mallory"};
    identity_t *out[] = {&s_coord_id, &s_alice, &s_bob, &s_mallory};
    char path[512];
    snprintf(path, sizeof path, "%s/enrolment.txt", s_dir);
    FILE *fp = fopen(path, "w");
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(identity_generate(out[i], ids[i], &err), 0, "%s", err.msg);
        cr_assert_eq(identity_save(out[i], s_dir, 1, &err), 0, "%s", err.msg);
        if (i == 1 || i == 2) { /* mallory is not enrolled */
            char hex[65];
            identity_public_hex(hex, out[i]->pk);
            fprintf(fp, "%s %s\n", ids[i], hex);
        }
    }
    fclose(fp);
}

static const char *s_extra_ini = ""; /* more keys, appended to the [federation] section */

static void s_start_coordinator(void) {
    char ini[512];
    snprintf(ini, sizeof ini, "%s/coordinator.ini", s_dir);
    FILE *fp = fopen(ini, "w");
    fprintf(fp, "[federation]\nrounds = 1\nmin_clients = 2\nround_deadline_s = 30\nbind = tcp://127.0.0.1:%d\n"
                "enrolment = enrolment.txt\n%s[model]\narch = softmax\ninputs = 4\nclasses = 3\nstandardize = none\n"
                "[aggregation]\nmax_update_norm = 10\n[security]\nidentity = coordinator.key\n"
                "[storage]\nstate_dir = state\nexport = final\nledger = ledger.jsonl\n[metrics]\nhttp_bind = 127.0.0.1:%d\n"
                "history = history.jsonl\n", s_port, s_extra_ini, s_http);
    fclose(fp);
    char log[512];
    snprintf(log, sizeof log, "%s/coordinator.log", s_dir);
    s_coord = harness_start_coordinator(ini, log);
}

static void setup(void) {
    snprintf(s_dir, sizeof s_dir, "/tmp/concord-coord-test-XXXXXX");
    cr_assert_not_null(mkdtemp(s_dir));
    s_port = harness_free_port();
    s_http = harness_free_port();
    s_keys();
    s_start_coordinator();
    s_ctx = zmq_ctx_new();
    usleep(300 * 1000);
}

static void teardown(void) {
    if (s_coord > 0) kill(s_coord, SIGKILL), waitpid(s_coord, NULL, 0);
    zmq_ctx_term(s_ctx);
    harness_remove_dir(s_dir);
}

static harness_client_t s_connect(identity_t *id, const char *server_curve) {
    return harness_client(s_ctx, id, server_curve, s_port);
}

/* Receives one verified message within ms; returns its type (0 if none) and body copy. */
static uint32_t s_recv(harness_client_t *c, int ms, uint8_t **body, size_t *len, float *params) {
    transport_msg_t msg;
    wire_in_t in;
    uint32_t type = harness_recv(c, &s_coord_id, ms, &msg, &in);
    if (!type) return 0;
    if (body) {
        *body = malloc(in.body_len + 1);
        memcpy(*body, in.body, in.body_len);
        *len = in.body_len;
    }
    if (params && msg.n_parts > 1) memcpy(params, zmq_msg_data(&msg.parts[1]), P * sizeof(float));
    harness_recv_done(&msg, &in);
    return type;
}

/* Seals an Update for round `round` from base digest `digest` with Δ = delta. */
static void s_seal_update(harness_client_t *c, uint64_t round, const uint8_t *digest, const float *delta, uint8_t **env,
                          size_t *env_len, uint8_t **body, size_t *body_len) {
    harness_update_t u;
    harness_update_init(&u, round, digest, P);
    *body_len = concord__update__get_packed_size(&u.u);
    *body = malloc(*body_len);
    concord__update__pack(&u.u, *body);
    wire_frame_t frame = {delta, P};
    wire_out_t out = {.type = CONCORD__MSG_TYPE__MSG_UPDATE, .sender_id = c->id->id, .seq = ++c->seq,
                      .round = round, .body = *body, .body_len = *body_len, .frames = &frame, .n_frames = 1};
    cc_err_t err = {0};
    cr_assert_eq(wire_seal(&out, c->id->sk, env, env_len, &err), 0, "%s", err.msg);
}

/* Sends a raw envelope + one frame and expects a Nack whose reason contains `want`. */
static void s_expect_nack(harness_client_t *c, const uint8_t *env, size_t env_len, const float *frame, const char *want) {
    zmq_send(c->sock, env, env_len, ZMQ_SNDMORE);
    zmq_send(c->sock, frame, P * sizeof(float), 0);
    uint8_t *body = NULL;
    size_t len = 0;
    uint32_t type = s_recv(c, 3000, &body, &len, NULL);
    cr_assert_eq(type, CONCORD__MSG_TYPE__MSG_NACK, "expected a Nack for: %s", want);
    Concord__Nack *n = concord__nack__unpack(NULL, len, body);
    cr_assert_not_null(n);
    cr_expect(strstr(n->reason, want) != NULL, "Nack reason \"%s\" should mention \"%s\"", n->reason, want);
    cr_log_info("rejected as expected: %s", n->reason);
    concord__nack__free_unpacked(n, NULL);
    free(body);
}

/* Re-encodes env with one field changed by `edit` and WITHOUT re-signing. */
static uint8_t *s_tamper(const uint8_t *env, size_t len, void (*edit)(Concord__Envelope *), size_t *out_len) {
    Concord__Envelope *e = concord__envelope__unpack(NULL, len, env);
    cr_assert_not_null(e);
    edit(e);
    *out_len = concord__envelope__get_packed_size(e);
    uint8_t *out = malloc(*out_len);
    concord__envelope__pack(e, out);
    concord__envelope__free_unpacked(e, NULL);
    return out;
}
static void s_edit_body(Concord__Envelope *e) { e->body.data[e->body.len / 2] ^= 1; }
static void s_edit_sender(Concord__Envelope *e) { e->sender_id[0] = 'b'; e->sender_id[1] = 'o'; e->sender_id[2] = 'b'; e->sender_id[3] = 0; }
static void s_edit_seq(Concord__Envelope *e) { e->seq += 1000; }
static void s_edit_round(Concord__Envelope *e) { e->round += 1; }
static void s_edit_digest(Concord__Envelope *e) { e->tensor_digests[0].data[0] ^= 0x80; }

/* GET /metrics from the coordinator; returns the value of the line starting with key. */
static double s_metric(const char *key) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s_http),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "metrics endpoint reachable");
    const char *req = "GET /metrics HTTP/1.0\r\n\r\n";
    cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    static char buf[16384];
    size_t n = 0;
    ssize_t got;
    while ((got = read(fd, buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)got;
    close(fd);
    buf[n] = 0;
    char line_key[256];
    snprintf(line_key, sizeof line_key, "\n%s", key); /* a sample line, not the # TYPE line */
    const char *p = strstr(buf, line_key);
    return p ? atof(p + strlen(line_key)) : -1;
}

/* Sends a message without frames from c; asserts it left. */
static void s_send(harness_client_t *c, uint32_t type, uint64_t round, const ProtobufCMessage *body) {
    cc_err_t err = {0};
    cr_assert_eq(msg_send(c->sock, NULL, c->id, &c->seq, type, round, body, NULL, 0, &err), 0, "%s", err.msg);
}

static void s_upload_ready(harness_client_t *c, uint64_t round) {
    Concord__UploadReady r = CONCORD__UPLOAD_READY__INIT;
    r.round = round;
    s_send(c, CONCORD__MSG_TYPE__MSG_UPLOAD_READY, round, &r.base);
}

/* Receives the round-0 task; returns whether it lets the update go at once, and its digest. */
static int s_task_granted(harness_client_t *c, uint8_t digest[WIRE_DIGEST_BYTES]) {
    uint8_t *body = NULL;
    size_t len = 0;
    cr_assert_eq(s_recv(c, 3000, &body, &len, NULL), CONCORD__MSG_TYPE__MSG_TASK, "%s: round 0 task", c->id->id);
    Concord__Task *t = concord__task__unpack(NULL, len, body);
    cr_assert_not_null(t);
    memcpy(digest, t->model_digest.data, WIRE_DIGEST_BYTES);
    int granted = t->upload_granted;
    concord__task__free_unpacked(t, NULL);
    free(body);
    return granted;
}

static void s_send_update(harness_client_t *c, const uint8_t *digest, const float *delta) {
    uint8_t *env, *b;
    size_t env_len, blen;
    s_seal_update(c, 0, digest, delta, &env, &env_len, &b, &blen);
    zmq_send(c->sock, env, env_len, ZMQ_SNDMORE);
    zmq_send(c->sock, delta, P * sizeof(float), 0);
    free(env), free(b);
}

/* last's update is the round's last: it is acknowledged, the federation (one round)
 * finishes, and the coordinator exits with status 0. Closes both clients. */
static void s_finish_round(harness_client_t *last, harness_client_t *other, const uint8_t *digest, const float *delta) {
    s_send_update(last, digest, delta);
    cr_assert_eq(s_recv(last, 3000, NULL, NULL, NULL), CONCORD__MSG_TYPE__MSG_ACK);
    cr_assert_eq(s_recv(last, 3000, NULL, NULL, NULL), CONCORD__MSG_TYPE__MSG_DONE, "the federation finishes");
    int status = 0;
    cr_assert_eq(waitpid(s_coord, &status, 0), s_coord);
    s_coord = 0;
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "coordinator exits cleanly");
    zmq_close(last->sock);
    zmq_close(other->sock);
}

/* Does the file at path have a line containing text? */
static int s_log_has(const char *path, const char *text) {
    FILE *fp = fopen(path, "r");
    char line[4096];
    int found = 0;
    while (fp && !found && fgets(line, sizeof line, fp)) found = strstr(line, text) != NULL;
    if (fp) fclose(fp);
    return found;
}

Test(coordinator, rejects_every_bad_message_counts_it_and_finishes_the_round, .init = setup, .fini = teardown,
     .timeout = 60) {
    harness_client_t alice = s_connect(&s_alice, s_coord_id.curve_public);
    harness_client_t bob = s_connect(&s_bob, s_coord_id.curve_public);
    harness_hello(&alice, &s_coord_id);
    harness_hello(&bob, &s_coord_id);
    float params[P], delta[P], zero[P] = {0};
    uint8_t *body = NULL;
    size_t len;
    cr_assert_eq(s_recv(&alice, 3000, &body, &len, params), CONCORD__MSG_TYPE__MSG_TASK, "round 0 task");
    cr_assert_eq(alice.warmups, 1, "one queue warm-up follows the Welcome");
    Concord__Task *task = concord__task__unpack(NULL, len, body);
    uint8_t digest[WIRE_DIGEST_BYTES], wrong[WIRE_DIGEST_BYTES];
    memcpy(digest, task->model_digest.data, WIRE_DIGEST_BYTES);
    memcpy(wrong, digest, WIRE_DIGEST_BYTES);
    wrong[0] ^= 1;
    concord__task__free_unpacked(task, NULL);
    free(body);
    for (int i = 0; i < P; i++) delta[i] = 0.01f * (float)(i - 7);

    uint8_t *env, *bad;
    size_t env_len, bad_len, blen;
    uint8_t *b;
    s_seal_update(&alice, 0, digest, delta, &env, &env_len, &b, &blen);
    /* Every signed field tampered after signing. */
    void (*edits[])(Concord__Envelope *) = {s_edit_body, s_edit_sender, s_edit_seq, s_edit_round, s_edit_digest};
    const char *wants[] = {"signature", "signature", "signature", "signature", "digest"};
    for (size_t i = 0; i < 5; i++) {
        bad = s_tamper(env, env_len, edits[i], &bad_len);
        s_expect_nack(&alice, bad, bad_len, delta, wants[i]);
        free(bad);
    }
    /* A tensor frame changed in flight, and a raw byte of the envelope. */
    float flipped[P];
    memcpy(flipped, delta, sizeof flipped);
    flipped[3] = 0.5f;
    s_expect_nack(&alice, env, env_len, flipped, "does not match its digest");
    free(env), free(b);

    /* Correctly signed but out of protocol. */
    s_seal_update(&alice, 5, digest, delta, &env, &env_len, &b, &blen);
    s_expect_nack(&alice, env, env_len, delta, "round");
    free(env), free(b);
    s_seal_update(&alice, 0, wrong, delta, &env, &env_len, &b, &blen);
    s_expect_nack(&alice, env, env_len, delta, "another model");
    free(env), free(b);
    float nan_delta[P];
    memcpy(nan_delta, delta, sizeof nan_delta);
    nan_delta[2] = NAN;
    s_seal_update(&alice, 0, digest, nan_delta, &env, &env_len, &b, &blen);
    s_expect_nack(&alice, env, env_len, nan_delta, "NaN");
    free(env), free(b);
    float big[P];
    for (int i = 0; i < P; i++) big[i] = 100.0f;
    s_seal_update(&alice, 0, digest, big, &env, &env_len, &b, &blen);
    s_expect_nack(&alice, env, env_len, big, "norm");
    free(env), free(b);

    /* The honest update is accepted; sent again, it is a replay. */
    s_seal_update(&alice, 0, digest, delta, &env, &env_len, &b, &blen);
    zmq_send(alice.sock, env, env_len, ZMQ_SNDMORE);
    zmq_send(alice.sock, delta, sizeof delta, 0);
    cr_assert_eq(s_recv(&alice, 3000, NULL, NULL, NULL), CONCORD__MSG_TYPE__MSG_ACK, "honest update accepted");
    s_expect_nack(&alice, env, env_len, delta, "replay");
    free(env), free(b);

    /* A client's queue warm-up is answered with the coordinator's second and last warm-up of
     * the session, never with a Nack, and is not counted as a bad message. */
    double undecodable = s_metric("concord_messages_rejected_total{reason=\"decode\"} ");
    cr_assert_geq(undecodable, 0, "the decode counter is exported");
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(transport_send_warmup(alice.sock, NULL, 0), 0);
        cr_expect_eq(s_recv(&alice, 500, NULL, NULL, NULL), 0, "a warm-up gets nothing but a warm-up back");
        cr_expect_eq(alice.warmups, 2, "the coordinator's second warm-up, and no third");
    }
    cr_expect_eq(s_metric("concord_messages_rejected_total{reason=\"decode\"} "), undecodable);

    /* An unenrolled key, and a client pinning the wrong coordinator key, get no answer. */
    harness_client_t mallory = s_connect(&s_mallory, s_coord_id.curve_public);
    harness_client_t fooled = s_connect(&s_alice, s_bob.curve_public);
    Concord__Hello h = CONCORD__HELLO__INIT;
    cc_err_t err = {0};
    h.protocol_version = WIRE_VERSION;
    cr_assert_eq(msg_send(mallory.sock, NULL, &s_mallory, &mallory.seq, CONCORD__MSG_TYPE__MSG_HELLO, 0, &h.base, NULL, 0, &err), 0);
    cr_assert_eq(msg_send(fooled.sock, NULL, &s_alice, &fooled.seq, CONCORD__MSG_TYPE__MSG_HELLO, 0, &h.base, NULL, 0, &err), 0);
    cr_expect_eq(s_recv(&mallory, 700, NULL, NULL, NULL), 0, "unenrolled key: no answer");
    cr_expect_eq(s_recv(&fooled, 700, NULL, NULL, NULL), 0, "wrong coordinator key: no answer");
    zmq_close(mallory.sock);
    zmq_close(fooled.sock);

    /* Counted, per reason. */
    cr_expect_geq(s_metric("concord_messages_rejected_total{reason=\"signature\"} "), 6);
    cr_expect_geq(s_metric("concord_messages_rejected_total{reason=\"round\"} "), 1);
    cr_expect_geq(s_metric("concord_messages_rejected_total{reason=\"digest\"} "), 1);
    cr_expect_geq(s_metric("concord_messages_rejected_total{reason=\"nonfinite\"} "), 1);
    cr_expect_geq(s_metric("concord_messages_rejected_total{reason=\"norm\"} "), 1);
    cr_expect_geq(s_metric("concord_messages_rejected_total{reason=\"replay\"} "), 1);
    cr_expect_geq(s_metric("concord_zap_denied_total "), 1);

    /* The run goes on: bob's update closes the round, the federation finishes. */
    cr_assert_eq(s_recv(&bob, 3000, NULL, NULL, params), CONCORD__MSG_TYPE__MSG_TASK);
    s_finish_round(&bob, &alice, digest, zero);
    /* θ_1 = θ_0 + (Δ_alice + Δ_bob)/2: the final model holds alice's honest update only. */
    char path[512];
    snprintf(path, sizeof path, "%s/final.ckpt", s_dir);
    cr_expect_eq(access(path, R_OK), 0, "final model exported");
    /* FedAvg summed in time: alice (slot 0) was added while the coordinator waited for bob,
     * whose update the close then summed alone. */
    snprintf(path, sizeof path, "%s/coordinator.log", s_dir);
    cr_expect(s_log_has(path, "event=in_time_summed round=0 slots=0-0 summed=1 of=2"), "alice summed while waiting");
    cr_expect(s_log_has(path, "event=in_time_close round=0 summed_before=1 summed_at_close=1"),
              "the close summed bob's update only");
}

static void setup_one_upload(void) {
    s_extra_ini = "upload_window_mb = 0\n"; /* room for one update: at least one always fits */
    setup();
}

/* Alice and bob connect and get their round-0 tasks, which (one update fits) ask them to
 * send UploadReady first; *digest is the task's model digest. */
static void s_two_asked_to_wait(harness_client_t *alice, harness_client_t *bob, uint8_t digest[WIRE_DIGEST_BYTES]) {
    *alice = s_connect(&s_alice, s_coord_id.curve_public);
    *bob = s_connect(&s_bob, s_coord_id.curve_public);
    harness_hello(alice, &s_coord_id);
    harness_hello(bob, &s_coord_id);
    cr_assert_not(s_task_granted(alice, digest), "two updates do not fit: the task asks for UploadReady");
    cr_assert_not(s_task_granted(bob, digest));
}

/* Bob gets the grant alice held, within ms (why: how it came free), uploads and is
 * acknowledged; `expired` grants have expired by then. Closes bob. */
static void s_bob_takes_over(harness_client_t *bob, const uint8_t *digest, int ms, int expired, const char *why) {
    cr_assert_eq(s_recv(bob, ms, NULL, NULL, NULL), CONCORD__MSG_TYPE__MSG_UPLOAD_GRANT, "%s", why);
    cr_expect_eq(s_metric("concord_upload_grants_expired_total "), expired, "%s", why);
    float zero[P] = {0};
    s_send_update(bob, digest, zero);
    cr_assert_eq(s_recv(bob, 3000, NULL, NULL, NULL), CONCORD__MSG_TYPE__MSG_ACK);
    zmq_close(bob->sock);
}

/* Alice asks and gets the only grant; bob asks and waits. */
static void s_alice_granted_bob_waits(harness_client_t *alice, harness_client_t *bob) {
    s_upload_ready(alice, 0);
    cr_assert_eq(s_recv(alice, 3000, NULL, NULL, NULL), CONCORD__MSG_TYPE__MSG_UPLOAD_GRANT, "alice's grant");
    s_upload_ready(bob, 0);
    cr_assert_eq(s_recv(bob, 300, NULL, NULL, NULL), 0, "bob waits while alice holds the grant");
}

Test(coordinator, upload_grants_let_one_update_in_flight_in_request_order, .init = setup_one_upload,
     .fini = teardown, .timeout = 60) {
    harness_client_t alice, bob;
    uint8_t digest[WIRE_DIGEST_BYTES];
    s_two_asked_to_wait(&alice, &bob, digest);
    float delta[P], zero[P] = {0};
    for (int i = 0; i < P; i++) delta[i] = 0.01f * (float)(i - 7);

    /* Out of protocol: another round. */
    s_upload_ready(&bob, 3);
    cr_assert_eq(s_recv(&bob, 3000, NULL, NULL, NULL), CONCORD__MSG_TYPE__MSG_NACK, "UploadReady for round 3");
    /* Bob asks first and gets the only grant; alice, asking next, waits; asking again gives
     * bob the same grant, not a second one. */
    s_upload_ready(&bob, 0);
    cr_assert_eq(s_recv(&bob, 3000, NULL, NULL, NULL), CONCORD__MSG_TYPE__MSG_UPLOAD_GRANT, "bob's grant");
    s_upload_ready(&alice, 0);
    s_upload_ready(&bob, 0);
    cr_assert_eq(s_recv(&bob, 3000, NULL, NULL, NULL), CONCORD__MSG_TYPE__MSG_UPLOAD_GRANT, "bob's grant again");
    cr_assert_eq(s_recv(&alice, 700, NULL, NULL, NULL), 0, "alice waits while bob's update is outstanding");
    cr_expect_eq(s_metric("concord_uploads_waiting "), 1, "one client waits for a grant");
    /* Bob's update ends his grant: alice gets hers. */
    s_send_update(&bob, digest, zero);
    cr_assert_eq(s_recv(&bob, 3000, NULL, NULL, NULL), CONCORD__MSG_TYPE__MSG_ACK);
    cr_assert_eq(s_recv(&alice, 3000, NULL, NULL, NULL), CONCORD__MSG_TYPE__MSG_UPLOAD_GRANT, "alice's grant");
    /* Once received, an update cannot be asked for again. */
    s_upload_ready(&bob, 0);
    cr_assert_eq(s_recv(&bob, 3000, NULL, NULL, NULL), CONCORD__MSG_TYPE__MSG_NACK, "bob's update is in");
    cr_expect_eq(s_metric("concord_upload_grants_total "), 2, "bob's grant (given once) and alice's");
    cr_expect_eq(s_metric("concord_uploads_waiting "), 0);
    s_finish_round(&alice, &bob, digest, delta);
}

static void setup_one_upload_short_grant(void) {
    s_extra_ini = "upload_window_mb = 0\nupload_grant_s = 1\n";
    setup();
}

Test(coordinator, an_upload_grant_its_client_never_uses_expires_and_the_next_client_is_granted,
     .init = setup_one_upload_short_grant, .fini = teardown, .timeout = 60) {
    harness_client_t alice, bob;
    uint8_t digest[WIRE_DIGEST_BYTES];
    s_two_asked_to_wait(&alice, &bob, digest);
    /* Alice is granted the only slot, then goes silent (still connected) without sending. */
    s_alice_granted_bob_waits(&alice, &bob);
    s_bob_takes_over(&bob, digest, 5000, 1, "alice's grant expires after upload_grant_s and bob is granted");
    zmq_close(alice.sock);
}

static void setup_one_upload_long_grant(void) {
    s_extra_ini = "upload_window_mb = 0\nupload_grant_s = 100\n";
    setup();
}

Test(coordinator, the_upload_grant_of_a_client_whose_connection_closes_goes_to_the_next_at_once,
     .init = setup_one_upload_long_grant, .fini = teardown, .timeout = 60) {
    harness_client_t alice, bob;
    uint8_t digest[WIRE_DIGEST_BYTES];
    s_two_asked_to_wait(&alice, &bob, digest);
    s_alice_granted_bob_waits(&alice, &bob);
    /* Alice's process dies: her connection closes, and her grant with it, long before the
     * 100 s of upload_grant_s. */
    zmq_close(alice.sock);
    s_bob_takes_over(&bob, digest, 3000, 0, "bob is granted as soon as alice's connection is gone, not by expiry");
}
