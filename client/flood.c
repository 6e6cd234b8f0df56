/* flood.c — test mode --test-flood MODES[:RATE] (tests/flood.sh; docs/security.md,
 * "Flooding"): concord-client as a flooding hospital. It connects with its own key (CURVE,
 * its routing id = its id), never says Hello, and sends RATE messages per second (default
 * 2000) of each kind in MODES, a comma list of:
 *
 *   garbage   random bytes: a 64–511 byte envelope and a 64 KiB frame (fails decoding)
 *   replay    one Update it signed itself, with a 256 KiB frame, sent again and again: the
 *             first copy is authentic; every later one passes the digest and signature
 *             checks and fails only at the sequence number (the most expensive refusal)
 *   oversize  an 8 MiB frame on a second connection (routing id ID.oversize): over the
 *             coordinator's MAXMSGSIZE for models under ~1.8M parameters, so ZeroMQ cuts
 *             the connection, and the socket reconnects (a new CURVE handshake)
 *   connect   a new connection per message (32 kept open, never reconnected), each sending
 *             one garbage message: with a key that is not enrolled, a handshake flood
 *   parts     one message of 1,000,000 empty parts: ZeroMQ's queue limit counts messages,
 *             not parts (docs/security.md, "Flooding", finding)
 *
 * Sends never block: a message ZeroMQ will not queue (the coordinator stopped reading the
 * connection, or it is down) counts as `blocked`. Everything the coordinator answers is
 * read and discarded. One progress line per second, until SIGTERM/SIGINT. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "log.h"
#include "rng.h"

#define S_RING 32
#define S_GARBAGE_BYTES (64u << 10)
#define S_REPLAY_FLOATS (64u << 10)
#define S_OVERSIZE_FLOATS (2u << 20)
#define S_PARTS_N 1000000

enum { S_GARBAGE, S_REPLAY, S_OVERSIZE, S_CONNECT, S_PARTS, S_KINDS };
static const char *s_kind_names[S_KINDS] = {"garbage", "replay", "oversize", "connect", "parts"};

typedef struct {
    client_t *c;
    double rate;                 /* messages per second of each kind */
    void *zctx;                  /* our own: terminated before the buffers below are freed */
    void *sock, *big;            /* routing id = own id; oversize connection */
    void *ring[S_RING];          /* connect mode */
    size_t ring_next;
    cc_rng_t rng;
    uint8_t *garbage;            /* (S_GARBAGE_BYTES + 512) random bytes */
    float *replay_frame;         /* (S_REPLAY_FLOATS) */
    float *oversize;             /* (S_OVERSIZE_FLOATS) zeros */
    uint8_t *replay_env;
    size_t replay_env_len;
    uint64_t sent[S_KINDS], blocked[S_KINDS], received;
} s_flood_t;

int client_flood_parse(const char *spec, unsigned *modes, double *rate) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", spec);
    char *colon = strchr(buf, ':'), *save = NULL;
    *rate = 2000.0;
    if (colon) {
        char *end;
        *colon = '\0';
        *rate = strtod(colon + 1, &end);
        if (*end || !(*rate > 0 && *rate <= 1e6)) return -1;
    }
    *modes = 0;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = 0;
        while (k < S_KINDS && strcmp(t, s_kind_names[k]) != 0) k++;
        if (k == S_KINDS) return -1;
        *modes |= 1u << k;
    }
    return *modes ? 0 : -1;
}

/* Frames point into buffers that live as long as the flood: nothing to release. */
static void s_keep(void *data, void *hint) { (void)data, (void)hint; }

static void *s_socket(s_flood_t *f, const char *routing_id, int reconnect) {
    client_t *c = f->c;
    void *s = zmq_socket(f->zctx, ZMQ_DEALER);
    int linger = 0, hwm = 1000, ivl = reconnect ? 100 : -1;
    zmq_setsockopt(s, ZMQ_ROUTING_ID, routing_id, strlen(routing_id));
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    if ((c->curve && transport_curve_client(s, &c->self, c->coordinator.curve_public) != 0) ||
        zmq_connect(s, c->endpoint) != 0) {
        cc_log_error("flood_socket_failed", "reason=\"%s\"", zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

/* The Update every replay repeats, signed once with a fresh sequence number. */
static int s_seal_replay(s_flood_t *f) {
    client_t *c = f->c;
    for (size_t i = 0; i < S_REPLAY_FLOATS; i++) f->replay_frame[i] = (float)cc_rng_normal(&f->rng);
    Concord__Update u = CONCORD__UPDATE__INIT;
    uint8_t body[64];
    size_t body_len = concord__update__pack(&u, body);
    c->seq_reserved = ++c->seq + 1;
    if (client_state_save(c)) return -1; /* seq never reused, as for an honest client */
    wire_frame_t frame = {f->replay_frame, S_REPLAY_FLOATS};
    wire_out_t out = {.type = CONCORD__MSG_TYPE__MSG_UPDATE, .sender_id = c->self.id, .seq = c->seq,
                      .body = body, .body_len = body_len, .frames = &frame, .n_frames = 1};
    cc_err_t err = {0};
    if (wire_seal(&out, c->self.sk, &f->replay_env, &f->replay_env_len, &err)) {
        cc_log_error("flood_seal_failed", "reason=\"%s\"", err.msg);
        return -1;
    }
    return 0;
}

static const uint8_t *s_random_bytes(s_flood_t *f, size_t len) {
    return f->garbage + cc_rng_below(&f->rng, S_GARBAGE_BYTES + 512 - len);
}

/* Sends one garbage message on sock; 0 or -1 (errno, EAGAIN when ZeroMQ will not queue). */
static int s_send_garbage(s_flood_t *f, void *sock) {
    size_t env_len = 64 + cc_rng_below(&f->rng, 448);
    wire_frame_t frame = {(const float *)f->garbage, S_GARBAGE_BYTES / sizeof(float)};
    return transport_send_zc(sock, NULL, s_random_bytes(f, env_len), env_len, &frame, 1, ZMQ_DONTWAIT, s_keep, NULL);
}

/* connect mode: replaces the oldest of S_RING connections by a new one. */
static int s_send_connect(s_flood_t *f) {
    char rid[WIRE_MAX_ID + 1];
    if (f->ring[f->ring_next]) zmq_close(f->ring[f->ring_next]);
    snprintf(rid, sizeof rid, "%.40s.c%zu", f->c->self.id, f->ring_next);
    f->ring[f->ring_next] = s_socket(f, rid, 0);
    void *s = f->ring[f->ring_next];
    f->ring_next = (f->ring_next + 1) % S_RING;
    return s ? s_send_garbage(f, s) : -1;
}

static int s_send_one(s_flood_t *f, int kind) {
    if (kind == S_GARBAGE) return s_send_garbage(f, f->sock);
    if (kind == S_CONNECT) return s_send_connect(f);
    if (kind == S_PARTS) {
        if (zmq_send(f->sock, f->garbage, 64, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0) return -1;
        for (int i = 0; i < S_PARTS_N - 1; i++) zmq_send(f->sock, "", 0, ZMQ_SNDMORE);
        return zmq_send(f->sock, "", 0, 0) < 0 ? -1 : 0;
    }
    if (kind == S_REPLAY) {
        wire_frame_t frame = {f->replay_frame, S_REPLAY_FLOATS};
        return transport_send_zc(f->sock, NULL, f->replay_env, f->replay_env_len, &frame, 1, ZMQ_DONTWAIT, s_keep, NULL);
    }
    wire_frame_t frame = {f->oversize, S_OVERSIZE_FLOATS};
    return transport_send_zc(f->big, NULL, f->garbage, 128, &frame, 1, ZMQ_DONTWAIT, s_keep, NULL);
}

static void s_drain(s_flood_t *f, void *sock) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (sock && zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) >= 0) f->received++;
    zmq_msg_close(&m);
}

static void s_progress(const s_flood_t *f, const char *event, unsigned modes) {
    char line[512];
    size_t n = 0;
    for (int k = 0; k < S_KINDS; k++)
        if (modes & (1u << k))
            n += (size_t)snprintf(line + n, sizeof line - n, "%s%s_sent=%llu %s_blocked=%llu", n ? " " : "",
                                  s_kind_names[k], (unsigned long long)f->sent[k], s_kind_names[k],
                                  (unsigned long long)f->blocked[k]);
    cc_log_info(event, "%s received=%llu", line, (unsigned long long)f->received);
}

static int s_setup(s_flood_t *f, unsigned modes) {
    f->zctx = zmq_ctx_new();
    f->garbage = cc_xmalloc(S_GARBAGE_BYTES + 512);
    for (size_t i = 0; i < S_GARBAGE_BYTES + 512; i++) f->garbage[i] = (uint8_t)cc_rng_u64(&f->rng);
    f->replay_frame = cc_xalloc_floats(S_REPLAY_FLOATS);
    f->oversize = cc_xcalloc(S_OVERSIZE_FLOATS, sizeof(float));
    if ((modes & (1u << S_REPLAY)) && s_seal_replay(f)) return -1;
    char rid[WIRE_MAX_ID + 1];
    snprintf(rid, sizeof rid, "%.50s.oversize", f->c->self.id);
    if ((modes & ((1u << S_GARBAGE) | (1u << S_REPLAY) | (1u << S_PARTS))) && !(f->sock = s_socket(f, f->c->self.id, 1))) return -1;
    if ((modes & (1u << S_OVERSIZE)) && !(f->big = s_socket(f, rid, 1))) return -1;
    return 0;
}

static void s_teardown(s_flood_t *f) {
    if (f->sock) zmq_close(f->sock);
    if (f->big) zmq_close(f->big);
    for (size_t i = 0; i < S_RING; i++)
        if (f->ring[i]) zmq_close(f->ring[i]);
    /* Frames are sent without copying: ZeroMQ's I/O thread may still read them until the
     * context is gone (found by ASan: zmq_close alone is asynchronous). */
    zmq_ctx_term(f->zctx);
    free(f->garbage), free(f->replay_frame), free(f->oversize), free(f->replay_env);
}

int client_flood_run(client_t *c, unsigned modes, double rate, volatile sig_atomic_t *signalled) {
    s_flood_t f = {.c = c, .rate = rate};
    cc_rng_seed(&f.rng, 0x600d5eed ^ (uint64_t)getpid());
    int rc = s_setup(&f, modes);
    cc_log_warn("flood_start", "modes=0x%x rate=%g reason=\"--test-flood\"", modes, rate);
    double start = cc_now(), next_log = start + 1.0;
    while (rc == 0 && !*signalled) {
        double now = cc_now(), due = (now - start) * rate;
        for (int k = 0; k < S_KINDS; k++) {
            if (!(modes & (1u << k))) continue;
            /* Catch up with the schedule; a refused send waits for the next tick. */
            while ((double)(f.sent[k] + f.blocked[k]) < due) {
                if (s_send_one(&f, k) == 0) f.sent[k]++;
                else {
                    f.blocked[k]++;
                    if (errno == EAGAIN) break;
                }
            }
        }
        s_drain(&f, f.sock), s_drain(&f, f.big);
        if (now >= next_log) s_progress(&f, "flood", modes), next_log += 1.0;
        zmq_pollitem_t items[2] = {{f.sock, 0, ZMQ_POLLIN, 0}, {f.big, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items + (f.sock ? 0 : 1), (f.sock ? 1 : 0) + (f.big ? 1 : 0), 5);
    }
    s_progress(&f, "flood_end", modes);
    s_teardown(&f);
    return rc ? 1 : 0;
}
