/* transport.c — ZeroMQ multipart framing, CURVE set-up and the ZAP handler (contracts in
 * transport.h).
 *
 * Invariants
 *  TR-1  transport_send copies tensor frames into ZeroMQ-owned buffers, so the caller may
 *        free or change its buffers as soon as it returns. transport_send_zc sends the
 *        caller's buffers without copying and calls `release` once per frame when ZeroMQ
 *        is done with it (also when the send fails): the buffer must not change until then.
 *  TR-2  transport_recv consumes whole multipart messages only: whatever it refuses is
 *        drained to the last part first, so the next call starts at a message boundary.
 *  TR-3  Nothing received is trusted: routing ids, part counts and every ZAP request frame
 *        are checked; a malformed ZAP request is answered 500 (the REP socket must answer
 *        every request to stay usable), never asserted on.
 *
 * ZAP (RFC 27) request: version "1.0", request id, domain, address, routing id, mechanism,
 * credentials...; reply: version, request id, status code, status text, user id, metadata.
 * Only mechanism CURVE, domain "concord" and an enrolled 32-byte client key get 200. */
#include "transport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define S_ZAP_DOMAIN "concord"
#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define S_ZAP_MAX_FRAMES 8 /* CURVE requests have 7 */
#define S_ZAP_LOG_EVERY_S 5.0 /* a handshake flood must not flood the log as well */

/* ---- send ---- */

/* Hands frames[from..n) back to their owner's release function (they were never queued). */
static void s_release_rest(const wire_frame_t *frames, size_t from, size_t n, zmq_free_fn *ffn, void *hint) {
    for (size_t i = from; ffn && i < n; i++) ffn((void *)frames[i].data, hint);
}

static int s_send_frames(void *sock, const char *peer, const uint8_t *env, size_t env_len,
                         const wire_frame_t *frames, size_t n_frames, int flags,
                         zmq_free_fn *ffn, void *hint) {
    flags &= ~ZMQ_SNDMORE;
    if (n_frames > WIRE_MAX_TENSORS || (n_frames && !frames) || (!env && env_len)) {
        s_release_rest(frames, 0, frames ? n_frames : 0, ffn, hint);
        errno = EINVAL;
        return -1;
    }
    /* Only the first part of a multipart message can hit the high-water mark; once it is
     * queued the remaining parts are accepted (ZeroMQ delivers all parts or none). */
    if ((peer && zmq_send(sock, peer, strlen(peer), flags | ZMQ_SNDMORE) < 0) ||
        zmq_send(sock, env, env_len, flags | (n_frames ? ZMQ_SNDMORE : 0)) < 0) {
        int e = errno;
        s_release_rest(frames, 0, n_frames, ffn, hint);
        errno = e;
        return -1;
    }
    for (size_t i = 0; i < n_frames; i++) {
        zmq_msg_t m;
        size_t bytes = frames[i].n * sizeof(float);
        if (zmq_msg_init_data(&m, (void *)frames[i].data, bytes, ffn, hint) != 0) {
            s_release_rest(frames, i, n_frames, ffn, hint);
            return -1;
        }
        int more = i + 1 < n_frames ? ZMQ_SNDMORE : 0;
        if (zmq_msg_send(&m, sock, flags | more) < 0) {
            int e = errno;
            zmq_msg_close(&m); /* releases frame i */
            s_release_rest(frames, i + 1, n_frames, ffn, hint);
            errno = e;
            return -1;
        }
    }
    return 0;
}

/* Frames copied into ZeroMQ-owned messages: the caller may free or change its buffers as
 * soon as this returns (found the hard way: a client freeing its update right after the
 * send had the coordinator reject the frame's digest). */
static void s_free_copy(void *data, void *hint) {
    (void)hint;
    free(data);
}

int transport_send(void *sock, const char *peer, const uint8_t *env, size_t env_len,
                   const wire_frame_t *frames, size_t n_frames, int flags) {
    wire_frame_t copies[WIRE_MAX_TENSORS];
    if (n_frames > WIRE_MAX_TENSORS) {
        errno = EINVAL;
        return -1;
    }
    for (size_t i = 0; i < n_frames; i++) {
        float *p = cc_xmalloc(frames[i].n * sizeof(float) + 1);
        memcpy(p, frames[i].data, frames[i].n * sizeof(float));
        copies[i] = (wire_frame_t){p, frames[i].n};
    }
    /* Each copy is freed by ZeroMQ once sent, or by s_send_frames if never queued. */
    return s_send_frames(sock, peer, env, env_len, copies, n_frames, flags, s_free_copy, NULL);
}

int transport_send_zc(void *sock, const char *peer, const uint8_t *env, size_t env_len,
                      const wire_frame_t *frames, size_t n_frames, int flags,
                      zmq_free_fn *release, void *hint) {
    return s_send_frames(sock, peer, env, env_len, frames, n_frames, flags, release, hint);
}

int transport_send_warmup(void *sock, const char *peer, int flags) {
    flags &= ~ZMQ_SNDMORE;
    if (peer && zmq_send(sock, peer, strlen(peer), flags | ZMQ_SNDMORE) < 0) return -1;
    for (int i = 1; i <= TRANSPORT_WARMUP_PARTS; i++)
        if (zmq_send(sock, NULL, 0, flags | (i < TRANSPORT_WARMUP_PARTS ? ZMQ_SNDMORE : 0)) < 0) return -1;
    return 0;
}

void transport_warmup_turn(void *sock, const char *peer, int *sent) {
    if (*sent >= TRANSPORT_WARMUPS_PER_SESSION) return;
    (*sent)++;
    if (transport_send_warmup(sock, peer, ZMQ_DONTWAIT) != 0)
        cc_log_debug("warmup_not_sent", "peer=%s reason=\"%s\"", peer ? peer : "coordinator", zmq_strerror(errno));
}

/* ---- receive ---- */

void transport_msg_close(transport_msg_t *msg) {
    if (!msg) return;
    for (size_t i = 0; i < msg->n_parts; i++) zmq_msg_close(&msg->parts[i]);
    msg->n_parts = 0;
}

uint64_t transport_msg_bytes(const transport_msg_t *msg) {
    uint64_t bytes = 0;
    for (size_t i = 0; i < msg->n_parts; i++) bytes += zmq_msg_size((zmq_msg_t *)&msg->parts[i]);
    return bytes;
}

/* Receives one part into m (initialised here). For the first part an EINTR goes back to
 * the caller (its poll loop handles signals); later parts are already queued (multipart
 * delivery is atomic), so those calls retry EINTR rather than split a message. */
static int s_recv_part(void *sock, zmq_msg_t *m, int flags, int first) {
    zmq_msg_init(m);
    for (;;) {
        if (zmq_msg_recv(m, sock, flags) >= 0) return 0;
        if (errno != EINTR || first) break;
    }
    int e = errno;
    zmq_msg_close(m);
    errno = e;
    return -1;
}

static int s_more(void *sock) {
    int more = 0;
    size_t sz = sizeof more;
    if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) != 0) return 0;
    return more;
}

/* TR-2: reads and discards the rest of the current message; returns the parts read. */
static size_t s_drain(void *sock) {
    size_t n = 0;
    while (s_more(sock)) {
        zmq_msg_t m;
        if (s_recv_part(sock, &m, 0, 0) != 0) break;
        zmq_msg_close(&m);
        n++;
    }
    return n;
}

/* Routing id: printable ASCII, 1..WIRE_MAX_ID bytes, copied as a string. */
static int s_copy_peer(char out[WIRE_MAX_ID + 1], zmq_msg_t *m) {
    size_t n = zmq_msg_size(m);
    const unsigned char *p = zmq_msg_data(m);
    if (n == 0 || n > WIRE_MAX_ID) return -1;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] > 0x7e) return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

int transport_recv(void *sock, int is_router, transport_msg_t *msg, int flags) {
    memset(msg->peer, 0, sizeof msg->peer);
    memset(msg->user_id, 0, sizeof msg->user_id);
    msg->n_parts = 0;
    msg->warmup_parts = 0;
    flags &= ZMQ_DONTWAIT;
    zmq_msg_t first;
    if (s_recv_part(sock, &first, flags, 1) != 0) return -1;

    if (is_router) {
        int ok = s_copy_peer(msg->peer, &first) == 0;
        zmq_msg_close(&first);
        if (!ok || !s_more(sock)) { /* unprintable routing id, or no envelope after it */
            s_drain(sock);
            memset(msg->peer, 0, sizeof msg->peer);
            errno = EPROTO;
            return -2;
        }
        if (s_recv_part(sock, &first, 0, 0) != 0) {
            s_drain(sock);
            return -1;
        }
    }
    msg->parts[0] = first;
    msg->n_parts = 1;
    const char *uid = zmq_msg_gets(&msg->parts[0], "User-Id");
    if (uid && strlen(uid) <= WIRE_MAX_ID) snprintf(msg->user_id, sizeof msg->user_id, "%s", uid);
    if (zmq_msg_size(&first) == 0) { /* a queue warm-up: nothing in it is read */
        msg->warmup_parts = 1 + s_drain(sock);
        return 0;
    }

    while (s_more(sock)) {
        if (msg->n_parts == WIRE_MAX_TENSORS + 1) { /* one more part would be too many */
            s_drain(sock);
            transport_msg_close(msg);
            errno = EPROTO;
            return -2;
        }
        if (s_recv_part(sock, &msg->parts[msg->n_parts], 0, 0) != 0) {
            int e = errno;
            s_drain(sock);
            transport_msg_close(msg);
            errno = e;
            return -1;
        }
        msg->n_parts++;
    }
    return 0;
}

int transport_open(const transport_msg_t *msg, wire_key_lookup_fn lookup, void *ctx,
                   wire_in_t *in, cc_err_t *err) {
    const void *frames[WIRE_MAX_TENSORS + 1];
    size_t bytes[WIRE_MAX_TENSORS + 1];
    if (msg->n_parts == 0 || msg->n_parts > WIRE_MAX_TENSORS + 1) {
        memset(in, 0, sizeof *in);
        return cc_err_set(err, WIRE_ERR_FRAMES, "message has %zu parts", msg->n_parts);
    }
    /* zmq_msg_data/size take non-const messages but do not modify them. */
    zmq_msg_t *parts = (zmq_msg_t *)msg->parts;
    size_t n = msg->n_parts - 1;
    for (size_t i = 0; i < n; i++) {
        frames[i] = zmq_msg_data(&parts[i + 1]);
        bytes[i] = zmq_msg_size(&parts[i + 1]);
    }
    return wire_open(zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]), frames, bytes, n,
                     lookup, ctx, in, err);
}

/* ---- CURVE ---- */

int transport_curve_server(void *sock, const identity_t *self) {
    int one = 1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0) return -1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, self->curve_secret, 40) != 0) return -1;
    if (zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, S_ZAP_DOMAIN, strlen(S_ZAP_DOMAIN)) != 0) return -1;
    return 0;
}

int transport_curve_client(void *sock, const identity_t *self, const char *server_curve_public) {
    if (!server_curve_public || strlen(server_curve_public) != 40) {
        errno = EINVAL;
        return -1;
    }
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server_curve_public, 40) != 0) return -1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, self->curve_public, 40) != 0) return -1;
    if (zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, self->curve_secret, 40) != 0) return -1;
    return 0;
}

/* ---- ZAP handler ---- */

struct zap_handler {
    void *sock;                   /* REP bound to inproc://zeromq.zap.01 */
    const enrolment_t *enrolment; /* borrowed */
    uint64_t accepted, denied;
    uint64_t denied_unlogged;     /* denials since the last zap_denied line */
    double denied_logged_at;      /* monotonic time of that line, 0: never */
};

zap_handler_t *zap_handler_new(void *zmq_ctx, const enrolment_t *enrolment, cc_err_t *err) {
    zap_handler_t *z = cc_xcalloc(1, sizeof *z);
    z->enrolment = enrolment;
    z->sock = zmq_socket(zmq_ctx, ZMQ_REP);
    if (!z->sock) {
        cc_err_set(err, CC_ERR_IO, "zap: cannot create socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    int linger = 0;
    zmq_setsockopt(z->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(z->sock, S_ZAP_ENDPOINT) != 0) {
        cc_err_set(err, CC_ERR_IO, "zap: cannot bind %s: %s (one ZAP handler per context)",
                   S_ZAP_ENDPOINT, zmq_strerror(zmq_errno()));
        goto fail;
    }
    return z;
fail:
    zap_handler_destroy(&z);
    return NULL;
}

void zap_handler_destroy(zap_handler_t **z) {
    if (!z || !*z) return;
    if ((*z)->sock) zmq_close((*z)->sock);
    free(*z);
    *z = NULL;
}

void *zap_handler_socket(zap_handler_t *z) { return z->sock; }

void zap_handler_set_enrolment(zap_handler_t *z, const enrolment_t *enrolment) {
    z->enrolment = enrolment;
}

uint64_t zap_handler_accepted(const zap_handler_t *z) { return z->accepted; }
uint64_t zap_handler_denied(const zap_handler_t *z) { return z->denied; }

static int s_frame_is(zmq_msg_t *m, const char *s) {
    size_t n = strlen(s);
    return zmq_msg_size(m) == n && memcmp(zmq_msg_data(m), s, n) == 0;
}

/* Copies a frame as a printable string for log lines ('?' for other bytes). */
static void s_frame_text(char *out, size_t cap, zmq_msg_t *m) {
    size_t n = zmq_msg_size(m);
    const unsigned char *p = zmq_msg_data(m);
    if (n >= cap) n = cap - 1;
    for (size_t i = 0; i < n; i++) out[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
    out[n] = '\0';
}

static void s_zap_reply(zap_handler_t *z, zmq_msg_t *request_id, const char *code,
                        const char *text, const char *user_id) {
    zmq_send(z->sock, "1.0", 3, ZMQ_SNDMORE);
    if (request_id) {
        zmq_msg_t copy;
        zmq_msg_init(&copy);
        zmq_msg_copy(&copy, request_id);
        if (zmq_msg_send(&copy, z->sock, ZMQ_SNDMORE) < 0) zmq_msg_close(&copy);
    } else {
        zmq_send(z->sock, "", 0, ZMQ_SNDMORE);
    }
    zmq_send(z->sock, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(z->sock, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(z->sock, user_id, strlen(user_id), ZMQ_SNDMORE);
    zmq_send(z->sock, "", 0, 0); /* metadata: none */
    if (code[0] == '2')
        z->accepted++;
    else
        z->denied++;
}

void zap_handler_handle(zap_handler_t *z) {
    zmq_msg_t f[S_ZAP_MAX_FRAMES];
    size_t n = 0;
    int truncated = 0;
    if (s_recv_part(z->sock, &f[0], ZMQ_DONTWAIT, 1) != 0) return; /* nothing pending */
    n = 1;
    while (s_more(z->sock)) {
        if (n == S_ZAP_MAX_FRAMES) {
            truncated = 1;
            s_drain(z->sock);
            break;
        }
        if (s_recv_part(z->sock, &f[n], 0, 0) != 0) break;
        n++;
    }
    char address[64] = "", why[96] = "";
    /* TR-3: frames 0..5 are version, request id, domain, address, routing id, mechanism. */
    if (truncated || n < 6 || !s_frame_is(&f[0], "1.0")) {
        cc_log_warn("zap_malformed", "frames=%zu%s", n, truncated ? "+" : "");
        s_zap_reply(z, n >= 2 ? &f[1] : NULL, "500", "malformed ZAP request", "");
        goto done;
    }
    s_frame_text(address, sizeof address, &f[3]);
    if (!s_frame_is(&f[2], S_ZAP_DOMAIN)) {
        snprintf(why, sizeof why, "wrong domain");
    } else if (!s_frame_is(&f[5], "CURVE")) {
        snprintf(why, sizeof why, "mechanism is not CURVE");
    } else if (n != 7 || zmq_msg_size(&f[6]) != 32) {
        cc_log_warn("zap_malformed", "address=%s frames=%zu", address, n);
        s_zap_reply(z, &f[1], "500", "malformed CURVE credentials", "");
        goto done;
    } else {
        char z85[41];
        const identity_public_t *who = NULL;
        if (zmq_z85_encode(z85, zmq_msg_data(&f[6]), 32))
            who = enrolment_find_curve(z->enrolment, z85);
        if (who) {
            cc_log_debug("zap_accepted", "address=%s id=%s", address, who->id);
            s_zap_reply(z, &f[1], "200", "OK", who->id);
            goto done;
        }
        snprintf(why, sizeof why, "key %s not enrolled", z85);
    }
    s_zap_reply(z, &f[1], "400", why, "");
    z->denied_unlogged++;
    double now = cc_now();
    if (z->denied_logged_at == 0 || now - z->denied_logged_at >= S_ZAP_LOG_EVERY_S) {
        cc_log_warn("zap_denied", "address=%s reason=\"%s\" denied=%llu", address, why,
                    (unsigned long long)z->denied_unlogged);
        z->denied_unlogged = 0, z->denied_logged_at = now;
    }
done:
    for (size_t i = 0; i < n; i++) zmq_msg_close(&f[i]);
}
