/* transport.h — ZeroMQ plumbing for Concord messages: multipart send/receive of an
 * envelope plus tensor frames without copying the bulk data, CURVE set-up from an
 * identity, and the coordinator's ZAP handler admitting only enrolled keys.
 *
 * One context per process. Sockets are used from the one poll loop of each daemon. */
#ifndef CONCORD_TRANSPORT_H
#define CONCORD_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "identity.h"
#include "util.h"
#include "wire.h"

/* A received multipart message: [routing id (ROUTER only)] envelope, frames... */
typedef struct {
    char peer[WIRE_MAX_ID + 1];       /* ROUTER: the sender's routing identity; "" otherwise */
    char user_id[WIRE_MAX_ID + 1];    /* ZAP User-Id of the connection (enrolled id) or "" */
    zmq_msg_t parts[WIRE_MAX_TENSORS + 2];
    size_t n_parts;                   /* envelope + frames (routing frame not counted) */
    size_t warmup_parts;              /* a queue warm-up: its parts, read and dropped; else 0 */
} transport_msg_t;

/* A queue warm-up is a message whose first part is empty (every Concord message starts with
 * a non-empty envelope) followed by empty parts, TRANSPORT_WARMUP_PARTS in all. ZeroMQ queues
 * a connection's message parts in chunks of 256 parts (16 KiB, whose pages become resident
 * as parts are written into them) and keeps one spare chunk once the first has been read
 * through. At about 12 parts per round, a connection's queues would take some 40 rounds to
 * reach that steady size and have every page of it touched. Instead, when a session opens,
 * coordinator and client exchange warm-ups: the coordinator sends one after its Welcome and
 * each side answers a warm-up it receives with one of its own until it has sent two. Each is
 * sent only after the peer has read the previous one, so a queue is written through both of
 * its chunks at the reader's pace (a burst would have ZeroMQ allocate a third, fresh chunk).
 * A daemon's memory is then flat from its first rounds: growth after that is a real leak,
 * which the soak test can see. */
#define TRANSPORT_WARMUP_PARTS 300
#define TRANSPORT_WARMUPS_PER_SESSION 2
/* Sends a queue warm-up to peer (NULL for DEALER). Returns 0 or -1 (errno). */
int transport_send_warmup(void *sock, const char *peer, int flags) CC_WUR;
/* One side's turn in the exchange: sends a warm-up (without blocking) unless *sent (this
 * session's count, reset when the session opens) has reached TRANSPORT_WARMUPS_PER_SESSION.
 * Best effort: only the pace at which memory reaches its steady size depends on it. */
void transport_warmup_turn(void *sock, const char *peer, int *sent);

/* Sends [peer] envelope frames...; peer NULL for DEALER. The envelope and the tensor frames
 * are copied, so the caller may free or change its buffers as soon as this returns (the
 * call blocks only as ZMQ's high-water mark dictates). Returns 0 or -1 (errno). */
int transport_send(void *sock, const char *peer, const uint8_t *env, size_t env_len,
                   const wire_frame_t *frames, size_t n_frames, int flags) CC_WUR;
/* Same, for buffers whose lifetime the caller cannot bound otherwise: ZeroMQ reads the
 * tensor frames from its I/O thread after this returns (and a message to a slow peer may
 * sit in its queue), and release(frame data, hint) is called once per tensor frame when
 * ZeroMQ no longer needs it — from an arbitrary ZeroMQ thread, so it must be thread-safe
 * (e.g. an atomic reference count on the buffer). Over inproc the receiver reads the
 * sender's buffer directly, so it must not change until released either. */
int transport_send_zc(void *sock, const char *peer, const uint8_t *env, size_t env_len,
                      const wire_frame_t *frames, size_t n_frames, int flags,
                      zmq_free_fn *release, void *hint) CC_WUR;

/* Receives one whole multipart message (ZMQ_DONTWAIT if flags say so). A message with more
 * parts than WIRE_MAX_TENSORS + 1 is drained and refused (returns -2). A queue warm-up is
 * drained and returned with n_parts 1 (its empty first part) and warmup_parts set: the caller
 * drops it. Returns 0, -1 (no message / errno), or -2 (refused). Release with
 * transport_msg_close. */
int transport_recv(void *sock, int is_router, transport_msg_t *msg, int flags) CC_WUR;
void transport_msg_close(transport_msg_t *msg);
/* Bytes of the message's parts (the routing frame not counted). */
uint64_t transport_msg_bytes(const transport_msg_t *msg);
/* Receive a message and verify it with wire_open (frames = parts 1..n). The frame data
 * (zmq_msg_data of parts 1..n) is not necessarily 4-byte aligned: ZeroMQ's zero-copy
 * receive leaves it at arbitrary offsets of its buffer, so copy it (or memcpy-load) before
 * using it as float *. */
int transport_open(const transport_msg_t *msg, wire_key_lookup_fn lookup, void *ctx,
                   wire_in_t *in, cc_err_t *err) CC_WUR;

/* CURVE server side (coordinator ROUTER): ZMQ_CURVE_SERVER + its secret key, ZAP domain
 * "concord". Must be called before bind. */
int transport_curve_server(void *sock, const identity_t *self) CC_WUR;
/* CURVE client side (client DEALER): own keys + the pinned coordinator public key (Z85).
 * Must be called before connect. */
int transport_curve_client(void *sock, const identity_t *self, const char *server_curve_public) CC_WUR;

/* ZAP handler (RFC 27) on inproc://zeromq.zap.01, served from the owner's poll loop:
 * answers 200 with User-Id = the enrolled id for an enrolled CURVE key, 400 otherwise,
 * and counts both. */
typedef struct zap_handler zap_handler_t;
zap_handler_t *zap_handler_new(void *zmq_ctx, const enrolment_t *enrolment, cc_err_t *err);
void zap_handler_destroy(zap_handler_t **z);
/* The REP socket to poll for ZMQ_POLLIN. */
void *zap_handler_socket(zap_handler_t *z);
/* Answers one pending request (call when the socket is readable). */
void zap_handler_handle(zap_handler_t *z);
/* Replaces the enrolment (borrowed; e.g. after SIGHUP). */
void zap_handler_set_enrolment(zap_handler_t *z, const enrolment_t *enrolment);
uint64_t zap_handler_accepted(const zap_handler_t *z);
uint64_t zap_handler_denied(const zap_handler_t *z);

#endif
