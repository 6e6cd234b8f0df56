/* guard.c — a bound on the bytes one connection can make ZeroMQ hold (docs/security.md,
 * "Flooding").
 *
 * ZeroMQ bounds the messages it queues per connection (RCVHWM) and the size of each part
 * (MAXMSGSIZE), not the parts of one message: it keeps every part until the last one has
 * arrived. So one message of millions of empty parts from an enrolled hospital grew the
 * coordinator without bound before the poll loop saw any of it. The guard watches each
 * connection from outside ZeroMQ: the kernel's count of the bytes received on its socket
 * (TCP_INFO) against the bytes of the messages the poll loop took from it (each message
 * carries its descriptor, ZMQ_SRCFD). What lies between is in the socket's receive buffer,
 * in ZeroMQ's queue or being assembled. Past `bound` the guard shuts the socket down:
 * ZeroMQ then drops the connection and everything it held for it, and the sender has to
 * connect again. An honest connection holds at most queue_messages whole messages and the
 * one being assembled, which `bound` allows for. The descriptors come from ZeroMQ's socket
 * monitor (accepted, closed). Knowing which client spoke on which connection, the guard
 * also tells the coordinator when a client's connection closes (an upload grant it held
 * is then given to the next client at once: grants.c). */
#include "guard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <zmq.h>

#include "log.h"
#include "wire.h"

#define S_ENDPOINT "inproc://concord-guard"
#define S_PART_WIRE 64 /* bytes a part costs on the wire beyond its payload, at most (ZMTP + CURVE) */

typedef struct {
    int fd;
    uint64_t taken;            /* payload bytes taken by the poll loop, + S_PART_WIRE per part */
    uint64_t last;             /* when its last message was taken (the guard's message count) */
    char peer[WIRE_MAX_ID + 1];
} s_conn_t;

struct guard {
    void *monitor;             /* PAIR connected to the ROUTER's monitor */
    s_conn_t *conns;
    size_t n, cap;
    uint64_t bound, cut, messages;
    double last_check;
    guard_gone_fn *gone;
    void *gone_ctx;
};

guard_t *guard_start(void *zctx, void *router, uint64_t bound, guard_gone_fn *gone, void *ctx, cc_err_t *err) {
    if (zmq_socket_monitor(router, S_ENDPOINT, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_CLOSED | ZMQ_EVENT_DISCONNECTED) != 0) {
        cc_err_set(err, CC_ERR_IO, "connection guard: socket monitor: %s", zmq_strerror(errno));
        return NULL;
    }
    guard_t *g = cc_xcalloc(1, sizeof *g);
    g->bound = bound, g->gone = gone, g->gone_ctx = ctx;
    g->monitor = zmq_socket(zctx, ZMQ_PAIR);
    if (!g->monitor || zmq_connect(g->monitor, S_ENDPOINT) != 0) {
        cc_err_set(err, CC_ERR_IO, "connection guard: monitor connect: %s", zmq_strerror(errno));
        guard_stop(&g);
        return NULL;
    }
    return g;
}

void guard_stop(guard_t **g) {
    if (!*g) return;
    if ((*g)->monitor) {
        int linger = 0;
        zmq_setsockopt((*g)->monitor, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close((*g)->monitor);
    }
    free((*g)->conns);
    free(*g);
    *g = NULL;
}

void *guard_socket(guard_t *g) { return g->monitor; }

static s_conn_t *s_find(guard_t *g, int fd) {
    for (size_t i = 0; i < g->n; i++)
        if (g->conns[i].fd == fd) return &g->conns[i];
    return NULL;
}

static void s_forget(guard_t *g, int fd) {
    s_conn_t *c = s_find(g, fd);
    if (c) *c = g->conns[--g->n];
}

/* fd closed: if it was the connection its client last spoke on, tell g->gone. A client
 * that reconnected and spoke on the new connection first is not gone. */
static void s_closed(guard_t *g, int fd) {
    s_conn_t *c = s_find(g, fd);
    if (!c) return;
    char peer[WIRE_MAX_ID + 1];
    snprintf(peer, sizeof peer, "%s", c->peer);
    int newer = 0;
    for (size_t i = 0; i < g->n && peer[0]; i++)
        newer |= g->conns[i].fd != fd && strcmp(g->conns[i].peer, peer) == 0 && g->conns[i].last > c->last;
    s_forget(g, fd);
    if (peer[0] && !newer && g->gone) g->gone(g->gone_ctx, peer);
}

static void s_add(guard_t *g, int fd) {
    s_forget(g, fd); /* a descriptor number ZeroMQ reuses starts afresh */
    if (g->n == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 64;
        g->conns = cc_xrealloc(g->conns, g->cap * sizeof *g->conns);
    }
    g->conns[g->n++] = (s_conn_t){.fd = fd};
}

/* A monitor event: two frames, [u16 event, u32 value (the descriptor here)] and the endpoint. */
void guard_events(guard_t *g) {
    for (;;) {
        zmq_msg_t head, addr;
        zmq_msg_init(&head);
        if (zmq_msg_recv(&head, g->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&head);
            return;
        }
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size(&head) >= 6) {
            memcpy(&event, zmq_msg_data(&head), 2);
            memcpy(&value, (const uint8_t *)zmq_msg_data(&head) + 2, 4);
        }
        int more = zmq_msg_more(&head);
        zmq_msg_close(&head);
        if (more) {
            zmq_msg_init(&addr);
            zmq_msg_recv(&addr, g->monitor, 0);
            zmq_msg_close(&addr);
        }
        if (event == ZMQ_EVENT_ACCEPTED) s_add(g, (int)value);
        else if (event == ZMQ_EVENT_CLOSED || event == ZMQ_EVENT_DISCONNECTED) s_closed(g, (int)value);
    }
}

void guard_taken(guard_t *g, int fd, const char *peer, uint64_t bytes, uint64_t parts) {
    s_conn_t *c = fd >= 0 ? s_find(g, fd) : NULL;
    if (!c) return;
    c->taken += bytes + parts * S_PART_WIRE;
    c->last = ++g->messages;
    if (peer && peer[0]) snprintf(c->peer, sizeof c->peer, "%s", peer);
}

/* Bytes the kernel received on fd so far; 0 if it cannot say (not TCP). */
static uint64_t s_received(int fd) {
    struct tcp_info info;
    socklen_t len = sizeof info;
    memset(&info, 0, sizeof info);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return 0;
    if (len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof info.tcpi_bytes_received) return 0;
    return info.tcpi_bytes_received;
}

/* "IP:port" of fd's remote end, for the operator's firewall; "-" if unknown. */
static void s_peer_address(int fd, char *out, size_t len) {
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    char ip[INET6_ADDRSTRLEN] = "-";
    unsigned port = 0;
    snprintf(out, len, "-");
    if (getpeername(fd, (struct sockaddr *)&sa, &sl) != 0) return;
    if (sa.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip), port = ntohs(a->sin_port);
    } else if (sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&sa;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip), port = ntohs(a->sin6_port);
    }
    snprintf(out, len, "%s:%u", ip, port);
}

void guard_check(guard_t *g, double now) {
    if (now - g->last_check < 0.1) return;
    g->last_check = now;
    for (size_t i = 0; i < g->n; i++) {
        s_conn_t *c = &g->conns[i];
        uint64_t received = s_received(c->fd);
        if (received <= c->taken || received - c->taken <= g->bound) continue;
        char addr[64];
        s_peer_address(c->fd, addr, sizeof addr);
        cc_log_warn("connection_cut", "client=%s peer_addr=%s held_bytes=%llu bound=%llu action=\"connection closed: "
                    "more bytes held than whole messages explain (e.g. one message of very many parts)\"",
                    c->peer[0] ? c->peer : "-", addr, (unsigned long long)(received - c->taken),
                    (unsigned long long)g->bound);
        shutdown(c->fd, SHUT_RDWR); /* ZeroMQ sees the connection end and frees what it held */
        c->taken = received;        /* cut once; the closed event forgets it */
        __atomic_fetch_add(&g->cut, 1, __ATOMIC_RELAXED);
    }
}

uint64_t guard_cut_total(const guard_t *g) { return __atomic_load_n(&g->cut, __ATOMIC_RELAXED); }
