/* daemon_harness.h — what the Criterion tests that drive a real concord-coordinator on
 * loopback share (test_coordinator.c, test_fedce_minus.c): a free port, the daemon started
 * with its stderr in a log file, a CURVE DEALER that pins the coordinator's key, the key
 * lookup that verifies the coordinator's messages, a test client's Hello, Update body and
 * verified receive, and removing the test's directory (kept with KEEP=1). Header-only:
 * each test is its own executable. */
#ifndef CONCORD_DAEMON_HARNESS_H
#define CONCORD_DAEMON_HARNESS_H

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include "concord.pb-c.h"
#include "identity.h"
#include "msg.h"
#include "transport.h"
#include "wire.h"

/* A loopback TCP port free right now (the kernel's choice). */
static inline int harness_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* Starts concord-coordinator --config ini with stderr appended to log; returns its pid. */
static inline pid_t harness_start_coordinator(const char *ini, const char *log) {
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(log, "a", stderr)) _exit(126);
        execl(CONCORD_BINARY_DIR "/concord-coordinator", "concord-coordinator", "--config", ini, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* A DEALER for identity id that dials the coordinator on port, pinning server_curve. */
static inline void *harness_dealer(void *ctx, const identity_t *id, const char *server_curve, int port) {
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_ROUTING_ID, id->id, strlen(id->id));
    cr_assert_eq(transport_curve_client(sock, id, server_curve), 0);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    cr_assert_eq(zmq_connect(sock, ep), 0);
    return sock;
}

/* wire_key_lookup_fn for messages from the coordinator; ctx is its identity_t. */
static inline int harness_lookup_coordinator(void *ctx, const char *id, uint8_t pk[WIRE_PK_BYTES]) {
    const identity_t *coord = ctx;
    if (strcmp(id, "coordinator")) return -1;
    memcpy(pk, coord->pk, WIRE_PK_BYTES);
    return 0;
}

/* A test client: a DEALER with its identity and the last sequence number it sent. */
typedef struct {
    void *sock;
    identity_t *id;
    uint64_t seq;
    int warmups; /* queue warm-ups received (and skipped) */
} harness_client_t;

static inline harness_client_t harness_client(void *ctx, identity_t *id, const char *server_curve, int port) {
    return (harness_client_t){.sock = harness_dealer(ctx, id, server_curve, port), .id = id};
}

/* Receives one message within ms and verifies it came from coord. Returns its type, with
 * msg and in filled for the caller to read and then release with harness_recv_done; 0 if
 * nothing came (then there is nothing to release). */
static inline uint32_t harness_recv(harness_client_t *c, const identity_t *coord, int ms, transport_msg_t *msg,
                                    wire_in_t *in) {
    zmq_pollitem_t it = {c->sock, 0, ZMQ_POLLIN, 0};
    for (;;) { /* queue warm-ups are counted and skipped, as a client drops them */
        if (zmq_poll(&it, 1, ms) <= 0) return 0;
        cr_assert_eq(transport_recv(c->sock, 0, msg, 0), 0);
        if (!msg->warmup_parts) break;
        c->warmups++;
        transport_msg_close(msg);
    }
    cc_err_t err = {0};
    memset(in, 0, sizeof *in);
    cr_assert_eq(transport_open(msg, harness_lookup_coordinator, (void *)coord, in, &err), 0, "%s", err.msg);
    return in->type;
}

static inline void harness_recv_done(transport_msg_t *msg, wire_in_t *in) {
    wire_in_clear(in);
    transport_msg_close(msg);
}

/* Receives one message within ms and returns only its type (0 if none). */
static inline uint32_t harness_recv_type(harness_client_t *c, const identity_t *coord, int ms) {
    transport_msg_t msg;
    wire_in_t in;
    uint32_t type = harness_recv(c, coord, ms, &msg, &in);
    if (type) harness_recv_done(&msg, &in);
    return type;
}

/* Says Hello as a client of 100 samples, 4 features and 3 classes; asserts the Welcome. */
static inline void harness_hello(harness_client_t *c, const identity_t *coord) {
    Concord__Hello h = CONCORD__HELLO__INIT;
    uint64_t counts[3] = {30, 30, 40};
    h.protocol_version = WIRE_VERSION;
    h.n_train = 100, h.n_features = 4, h.n_class_counts = 3, h.class_counts = counts;
    cc_err_t err = {0};
    cr_assert_eq(msg_send(c->sock, NULL, c->id, &c->seq, CONCORD__MSG_TYPE__MSG_HELLO, 0, &h.base, NULL, 0, &err), 0);
    cr_assert_eq(harness_recv_type(c, coord, 10000), CONCORD__MSG_TYPE__MSG_WELCOME, "%s is welcomed", c->id->id);
}

/* An Update body of 100 samples announcing one "delta" tensor of n floats, trained in round
 * from the model of the given digest. It points into itself: fill it in place, don't copy. */
typedef struct {
    Concord__Update u;
    Concord__TensorInfo ti, *tp;
    uint32_t shape;
} harness_update_t;

static inline void harness_update_init(harness_update_t *h, uint64_t round, const uint8_t *digest, uint32_t n) {
    concord__update__init(&h->u);
    concord__tensor_info__init(&h->ti);
    h->tp = &h->ti, h->shape = n;
    h->ti.name = "delta", h->ti.n_shape = 1, h->ti.shape = &h->shape;
    h->u.round = round, h->u.n_samples = 100, h->u.n_tensors = 1, h->u.tensors = &h->tp;
    h->u.base_digest.data = (uint8_t *)digest, h->u.base_digest.len = WIRE_DIGEST_BYTES;
}

/* Removes the test's directory, unless KEEP is set (to read the daemon's log). */
static inline void harness_remove_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, getenv("KEEP") ? "true %s" : "rm -rf %s", dir);
    if (system(cmd) != 0) cr_log_warn("cleanup of %s failed", dir);
}

#endif
