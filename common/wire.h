/* wire.h — the signed envelope of DESIGN §3, independent of the transport.
 *
 * A message is an envelope (frame 0) plus n raw float32 tensor frames. wire_seal builds and
 * signs the envelope; wire_open decodes it and checks, in this order: size limits, protobuf
 * decoding, protocol version, that the sender is known (via the caller's key lookup), the
 * frame count against tensor_digests, every frame's BLAKE2b-256 digest, the Ed25519
 * signature, and that every float in every frame is finite. Checks that need protocol state
 * (seq replay, round, base digest, shapes, norm bound) belong to the daemons. Malformed
 * fields are checked right after the version, each with its field's class (too many
 * digests: FRAMES, a digest not 32 bytes: DIGEST, a signature not 64 bytes: SIGNATURE, an
 * invalid sender id: SENDER); unknown or non-canonically encoded fields are DECODE (they
 * would escape the signature). The envelope does not carry frame lengths, so a frame of
 * the wrong whole-float length is a DIGEST error; the body's TensorInfo shapes announce
 * lengths, which the daemons check. Order and reasons: the top of wire.c.
 *
 * Signature: Ed25519 (crypto_sign_detached) over the canonical byte string
 *   "concord-envelope-v1\0" || u32 version || u32 type || u32 len(sender_id) || sender_id
 *   || u64 seq || u64 round || u64 len(body) || body || u32 n || digest_1 .. digest_n
 * (integers little-endian, digests 32 bytes each) — not over protobuf bytes, so the
 * signature never depends on an encoder's choices. */
#ifndef CONCORD_WIRE_H
#define CONCORD_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define WIRE_VERSION 1
#define WIRE_DIGEST_BYTES 32
#define WIRE_PK_BYTES 32
#define WIRE_SK_BYTES 64
#define WIRE_SIG_BYTES 64
#define WIRE_MAX_ID 64          /* client ids: 1..64 chars of [A-Za-z0-9._-] */
#define WIRE_MAX_TENSORS 64
#define WIRE_MAX_BODY (1u << 20)

enum {
    WIRE_ERR_DECODE = -20,      /* not a valid envelope / body */
    WIRE_ERR_VERSION = -21,
    WIRE_ERR_SENDER = -22,      /* unknown sender id */
    WIRE_ERR_FRAMES = -23,      /* frame count or size does not match */
    WIRE_ERR_DIGEST = -24,
    WIRE_ERR_SIGNATURE = -25,
    WIRE_ERR_NONFINITE = -26,
};

/* One tensor frame (borrowed). */
typedef struct {
    const float *data;
    size_t n;                   /* floats */
} wire_frame_t;

/* What the sender fills before sealing. body is the packed typed message. */
typedef struct {
    uint32_t type;              /* Concord__MsgType value */
    const char *sender_id;
    uint64_t seq;
    uint64_t round;
    const uint8_t *body;
    size_t body_len;
    const wire_frame_t *frames;
    size_t n_frames;
    /* Optional: frame_digests[i] (32 bytes) is the BLAKE2b-256 of frame i, already known to
     * the sender (e.g. the model digest of a Task's params); NULL, or a NULL entry, makes
     * wire_seal hash the frame. Trusted: a wrong digest yields a message every receiver
     * rejects. Lets the coordinator hash θ once per round instead of once per task. */
    const uint8_t *const *frame_digests;
} wire_out_t;

/* Builds and signs the envelope for msg with the sender's Ed25519 secret key. On success
 * *env is a new buffer (caller frees) of *env_len bytes. */
int wire_seal(const wire_out_t *msg, const uint8_t sk[WIRE_SK_BYTES], uint8_t **env,
              size_t *env_len, cc_err_t *err) CC_WUR;

/* Looks up the enrolled Ed25519 public key of a sender; returns 0 and fills pk, or -1 if
 * the sender is not enrolled. */
typedef int (*wire_key_lookup_fn)(void *ctx, const char *sender_id, uint8_t pk[WIRE_PK_BYTES]);

/* A verified envelope. Points into memory owned by the wire_in_t (free with wire_in_clear). */
typedef struct {
    uint32_t version;
    uint32_t type;
    char sender_id[WIRE_MAX_ID + 1];
    uint64_t seq;
    uint64_t round;
    uint8_t *body;              /* copy of the body bytes */
    size_t body_len;
    size_t n_frames;
    void *envelope;             /* the decoded protobuf (Concord__Envelope *), internal */
} wire_in_t;

/* Decodes env and verifies it against frames (the received frames 1..n, their bytes
 * reinterpreted as float32: a frame whose byte length is not a multiple of 4 is
 * WIRE_ERR_FRAMES). Returns 0 and fills *in, or a WIRE_ERR_* / CC_ERR_* code with err
 * saying what failed (a reason fit for a Nack). Never crashes on any input. */
int wire_open(const uint8_t *env, size_t env_len, const void *const *frames,
              const size_t *frame_bytes, size_t n_frames, wire_key_lookup_fn lookup, void *ctx,
              wire_in_t *in, cc_err_t *err) CC_WUR;
void wire_in_clear(wire_in_t *in);
/* The verified BLAKE2b-256 digest of frame i (i < in->n_frames) of an opened message: the
 * receiver may reuse it instead of hashing the frame again. */
const uint8_t *wire_in_digest(const wire_in_t *in, size_t i);

/* BLAKE2b-256 of a float vector's bytes (the model digest of Task/Update). */
void wire_digest_floats(uint8_t out[WIRE_DIGEST_BYTES], const float *v, size_t n);
/* The same over raw bytes (e.g. a received frame that may not be 4-byte aligned). */
void wire_digest_bytes(uint8_t out[WIRE_DIGEST_BYTES], const void *p, size_t len);
/* Lower-case hex of a digest (65 bytes with NUL). */
void wire_digest_hex(char out[2 * WIRE_DIGEST_BYTES + 1], const uint8_t d[WIRE_DIGEST_BYTES]);
/* 1 if id is a valid client id (1..64 chars of [A-Za-z0-9._-]). */
int wire_id_valid(const char *id);
/* L2 norm (double accumulation) and finiteness of a float vector. */
double wire_l2norm(const float *v, size_t n);
/* L2 norm of n floats stored at p, which need not be aligned (read in memcpy'd chunks). */
double wire_l2norm_bytes(const void *p, size_t n);
int wire_all_finite(const float *v, size_t n);

#endif
