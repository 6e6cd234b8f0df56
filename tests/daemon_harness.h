/* daemon_harness.h — what the Criterion tests that drive a real concord-coordinator on
 * loopback share (test_coordinator.c, test_fedce_minus.c): a free port, the daemon started
 * with its stderr in a log file, a CURVE DEALER that pins the coordinator's key, the key
 * lookup that verifies the coordinator's messages, and removing the test's directory
 * (kept with KEEP=1). Header-only: each test is its own executable. */
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

#include "identity.h"
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

/* Removes the test's directory, unless KEEP is set (to read the daemon's log). */
static inline void harness_remove_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, getenv("KEEP") ? "true %s" : "rm -rf %s", dir);
    if (system(cmd) != 0) cr_log_warn("cleanup of %s failed", dir);
}

#endif
