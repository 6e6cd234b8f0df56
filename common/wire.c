/* wire.c — the signed envelope (contracts in wire.h).
 *
 * Invariants
 *  WIRE-1  The signature covers the canonical byte string of wire.h, never protobuf bytes:
 *          s_canonical is the only place that builds it, for both seal and open.
 *  WIRE-2  wire_open reads at most env_len bytes of env and frame_bytes[i] bytes of
 *          frames[i]; it allocates only after the envelope size is bounded
 *          (WIRE_MAX_ENVELOPE), so arbitrary input cannot make it over-read or balloon.
 *  WIRE-3  An envelope with bytes the signature does not cover is refused: unknown
 *          protobuf fields, and any encoding whose re-packed size differs from env_len
 *          (repeated scalar fields, over-long varints, a NUL inside sender_id), so the
 *          envelope is not malleable beyond field order.
 *
 * wire_open check order (first failure wins; cheap checks first, the signature last but
 * one because it costs a hash of the whole canonical string, finiteness last because it
 * is only meaningful for authenticated data):
 *   1. size        env_len in 1..WIRE_MAX_ENVELOPE, n_frames <= WIRE_MAX_TENSORS   DECODE / FRAMES
 *   2. decode      protobuf unpack; no unknown fields; canonical size (WIRE-3)      DECODE
 *   3. version     == WIRE_VERSION (before field shapes: another version may
 *                  shape its fields differently)                                  VERSION
 *   4. shapes      body <= WIRE_MAX_BODY                                           DECODE
 *                  digests: count <= WIRE_MAX_TENSORS, each 32 bytes               FRAMES / DIGEST
 *                  signature: exactly 64 bytes                                     SIGNATURE
 *                  sender_id: wire_id_valid                                        SENDER
 *   5. sender      the caller's lookup knows sender_id                             SENDER
 *   6. frames      n_frames == digest count, every frame's bytes a multiple of 4   FRAMES
 *   7. digests     BLAKE2b-256 of each frame equals its digest                     DIGEST
 *   8. signature   Ed25519 over the canonical string with the sender's key        SIGNATURE
 *   9. finite      every float of every frame is finite                            NONFINITE
 *
 * Frames handed to wire_open may be unaligned (ZeroMQ's zero-copy receive places frame
 * data at arbitrary offsets in its buffer), so they are read as bytes: the finiteness scan
 * loads words with memcpy, which compiles to plain (vectorised) unaligned loads. */
#include "wire.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "blake2b.h"
#include "concord.pb-c.h"
#include "le.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "Concord's wire format (raw float32 frames) assumes a little-endian host"
#endif

/* Largest envelope wire_open will decode: the body limit plus room for the other fields
 * (64 digests of 34 bytes, a 66-byte signature, an id and a few varints). */
#define WIRE_MAX_ENVELOPE (WIRE_MAX_BODY + 65536u)

static const char s_domain[] = "concord-envelope-v1"; /* signed with its NUL: 20 bytes */

static int s_sodium_ready(void) {
    /* sodium_init is idempotent and thread-safe; 1 means "already initialised". */
    return sodium_init() < 0 ? -1 : 0;
}

/* ---- canonical byte string (WIRE-1) ---- */

/* le_put_* that return the cursor past what they wrote. */
static uint8_t *s_put_u32(uint8_t *p, uint32_t v) {
    le_put_u32(p, v);
    return p + 4;
}

static uint8_t *s_put_u64(uint8_t *p, uint64_t v) {
    le_put_u64(p, v);
    return p + 8;
}

/* Builds the canonical string into a new buffer (caller frees) of *len bytes. The inputs
 * are already bounded (id <= WIRE_MAX_ID, body <= WIRE_MAX_BODY, n <= WIRE_MAX_TENSORS). */
static uint8_t *s_canonical(uint32_t version, uint32_t type, const char *id, uint64_t seq,
                            uint64_t round, const uint8_t *body, size_t body_len,
                            const uint8_t *const *digests, size_t n, size_t *len) {
    size_t id_len = strlen(id);
    size_t total = sizeof s_domain + 4 + 4 + 4 + id_len + 8 + 8 + 8 + body_len + 4 +
                   n * WIRE_DIGEST_BYTES;
    uint8_t *buf = cc_xmalloc(total), *p = buf;
    memcpy(p, s_domain, sizeof s_domain);
    p += sizeof s_domain;
    p = s_put_u32(p, version);
    p = s_put_u32(p, type);
    p = s_put_u32(p, (uint32_t)id_len);
    memcpy(p, id, id_len);
    p += id_len;
    p = s_put_u64(p, seq);
    p = s_put_u64(p, round);
    p = s_put_u64(p, (uint64_t)body_len);
    if (body_len) memcpy(p, body, body_len);
    p += body_len;
    p = s_put_u32(p, (uint32_t)n);
    for (size_t i = 0; i < n; i++, p += WIRE_DIGEST_BYTES) memcpy(p, digests[i], WIRE_DIGEST_BYTES);
    *len = total;
    return buf;
}

/* ---- helpers ---- */

static void s_digest_bytes(uint8_t out[WIRE_DIGEST_BYTES], const void *p, size_t n) {
    cc_blake2b(out, WIRE_DIGEST_BYTES, p, n, NULL, 0);
}

/* 1 if all n float32 values starting at p (any alignment) are finite. A float is not
 * finite iff its exponent bits are all ones; adding 1 to the exponent field of such a
 * value carries into bit 31, so OR-ing those sums and testing bit 31 checks every value
 * without a branch in the loop (which gcc then vectorises). */
static int s_bytes_finite(const uint8_t *p, size_t n) {
    const uint32_t exp = 0x7f800000u, one = 0x00800000u;
    size_t i = 0;
    while (i < n) {
        size_t end = n - i > 4096 ? i + 4096 : n; /* blocks, so a bad value exits early */
        uint32_t acc = 0;
        for (; i < end; i++) {
            uint32_t u;
            memcpy(&u, p + 4 * i, 4);
            acc |= (u & exp) + one;
        }
        if (acc & 0x80000000u) return 0;
    }
    return 1;
}

void wire_digest_bytes(uint8_t out[WIRE_DIGEST_BYTES], const void *p, size_t len) {
    if (s_sodium_ready() != 0) { /* cannot happen on a working system; never leave out unset */
        memset(out, 0, WIRE_DIGEST_BYTES);
        return;
    }
    s_digest_bytes(out, p, len);
}

void wire_digest_floats(uint8_t out[WIRE_DIGEST_BYTES], const float *v, size_t n) {
    wire_digest_bytes(out, v, n * sizeof(float));
}

#define NORM_LANES 16

/* Σ x² of a chunk into 16 double lanes: independent adds the compiler vectorises (one
 * accumulator made the sum latency-bound: 0.13 ms of every 0.4 MB update on the poll
 * loop). Both clones do the same multiplies and adds (no FMA contraction in ISO C), so
 * they give the same bits. */
__attribute__((target_clones("avx2", "default")))
static void s_sumsq_lanes(double acc[NORM_LANES], const float *x, size_t m) {
    size_t k = 0;
    for (; k + NORM_LANES <= m; k += NORM_LANES)
        for (size_t l = 0; l < NORM_LANES; l++) acc[l] += (double)x[k + l] * x[k + l];
    for (; k < m; k++) acc[k % NORM_LANES] += (double)x[k] * x[k];
}

double wire_l2norm_bytes(const void *p, size_t n) {
    float chunk[1024]; /* the frame may be unaligned: copied a chunk at a time */
    double acc[NORM_LANES] = {0};
    for (size_t i = 0; i < n; i += 1024) {
        size_t m = n - i < 1024 ? n - i : 1024;
        memcpy(chunk, (const unsigned char *)p + i * sizeof(float), m * sizeof(float));
        s_sumsq_lanes(acc, chunk, m);
    }
    double sum = 0.0;
    for (size_t l = 0; l < NORM_LANES; l++) sum += acc[l];
    return sqrt(sum);
}

void wire_digest_hex(char out[2 * WIRE_DIGEST_BYTES + 1], const uint8_t d[WIRE_DIGEST_BYTES]) {
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < WIRE_DIGEST_BYTES; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * WIRE_DIGEST_BYTES] = '\0';
}

int wire_id_valid(const char *id) {
    if (!id) return 0;
    size_t n = 0;
    for (; id[n]; n++) {
        if (n >= WIRE_MAX_ID) return 0;
        unsigned char c = (unsigned char)id[n];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        if (!ok) return 0;
    }
    return n > 0;
}

double wire_l2norm(const float *v, size_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += (double)v[i] * v[i];
        s1 += (double)v[i + 1] * v[i + 1];
        s2 += (double)v[i + 2] * v[i + 2];
        s3 += (double)v[i + 3] * v[i + 3];
    }
    for (; i < n; i++) s0 += (double)v[i] * v[i];
    return sqrt((s0 + s1) + (s2 + s3));
}

int wire_all_finite(const float *v, size_t n) { return s_bytes_finite((const uint8_t *)v, n); }

/* ---- seal ---- */

int wire_seal(const wire_out_t *msg, const uint8_t sk[WIRE_SK_BYTES], uint8_t **env,
              size_t *env_len, cc_err_t *err) {
    *env = NULL;
    *env_len = 0;
    uint8_t *digests = NULL, *canon = NULL, *out = NULL;
    const uint8_t **dptr = NULL;
    ProtobufCBinaryData *bins = NULL;
    uint8_t sig[WIRE_SIG_BYTES];
    int rc = CC_ERR_ARG;

    if (s_sodium_ready() != 0) return cc_err_set(err, CC_ERR_ARG, "wire: sodium_init failed");
    if (!wire_id_valid(msg->sender_id)) {
        cc_err_set(err, CC_ERR_ARG, "wire: invalid sender id (1..%d chars of [A-Za-z0-9._-])",
                   WIRE_MAX_ID);
        goto fail;
    }
    if (msg->body_len > WIRE_MAX_BODY || (msg->body_len && !msg->body)) {
        cc_err_set(err, CC_ERR_ARG, "wire: body of %zu bytes (limit %u)", msg->body_len,
                   WIRE_MAX_BODY);
        goto fail;
    }
    if (msg->n_frames > WIRE_MAX_TENSORS || (msg->n_frames && !msg->frames)) {
        cc_err_set(err, CC_ERR_ARG, "wire: %zu tensor frames (limit %d)", msg->n_frames,
                   WIRE_MAX_TENSORS);
        goto fail;
    }
    size_t n = msg->n_frames;
    digests = cc_xmalloc(n * WIRE_DIGEST_BYTES + 1);
    dptr = cc_xmalloc((n + 1) * sizeof *dptr);
    bins = cc_xmalloc((n + 1) * sizeof *bins);
    for (size_t i = 0; i < n; i++) {
        const wire_frame_t *f = &msg->frames[i];
        if (f->n > SIZE_MAX / sizeof(float) || (f->n && !f->data)) {
            cc_err_set(err, CC_ERR_ARG, "wire: tensor frame %zu is invalid", i);
            goto fail;
        }
        if (msg->frame_digests && msg->frame_digests[i])
            memcpy(digests + i * WIRE_DIGEST_BYTES, msg->frame_digests[i], WIRE_DIGEST_BYTES);
        else
            s_digest_bytes(digests + i * WIRE_DIGEST_BYTES, f->data, f->n * sizeof(float));
        dptr[i] = digests + i * WIRE_DIGEST_BYTES;
        bins[i].data = digests + i * WIRE_DIGEST_BYTES;
        bins[i].len = WIRE_DIGEST_BYTES;
    }

    size_t canon_len;
    canon = s_canonical(WIRE_VERSION, msg->type, msg->sender_id, msg->seq, msg->round,
                        msg->body, msg->body_len, dptr, n, &canon_len);
    crypto_sign_detached(sig, NULL, canon, canon_len, sk);

    Concord__Envelope e = CONCORD__ENVELOPE__INIT;
    e.version = WIRE_VERSION;
    e.type = (Concord__MsgType)msg->type;
    e.sender_id = (char *)msg->sender_id;
    e.seq = msg->seq;
    e.round = msg->round;
    e.body.data = (uint8_t *)msg->body;
    e.body.len = msg->body_len;
    e.n_tensor_digests = n;
    e.tensor_digests = bins;
    e.signature.data = sig;
    e.signature.len = WIRE_SIG_BYTES;
    size_t len = concord__envelope__get_packed_size(&e);
    out = cc_xmalloc(len);
    if (concord__envelope__pack(&e, out) != len) {
        cc_err_set(err, CC_ERR_ARG, "wire: envelope packing produced an unexpected size");
        goto fail;
    }
    *env = out;
    *env_len = len;
    out = NULL;
    rc = 0;
fail:
    free(out);
    free(canon);
    free(bins);
    free(dptr);
    free(digests);
    return rc;
}

/* ---- open ---- */

void wire_in_clear(wire_in_t *in) {
    if (!in) return;
    if (in->envelope) concord__envelope__free_unpacked(in->envelope, NULL);
    memset(in, 0, sizeof *in);
}

const uint8_t *wire_in_digest(const wire_in_t *in, size_t i) {
    const Concord__Envelope *e = in->envelope;
    return e && i < in->n_frames ? e->tensor_digests[i].data : NULL;
}

int wire_open(const uint8_t *env, size_t env_len, const void *const *frames,
              const size_t *frame_bytes, size_t n_frames, wire_key_lookup_fn lookup, void *ctx,
              wire_in_t *in, cc_err_t *err) {
    memset(in, 0, sizeof *in);
    Concord__Envelope *e = NULL;
    uint8_t *canon = NULL;
    const uint8_t *dptr[WIRE_MAX_TENSORS];
    uint8_t pk[WIRE_PK_BYTES];
    int rc;

    if (s_sodium_ready() != 0) return cc_err_set(err, CC_ERR_ARG, "wire: sodium_init failed");
    /* 1. size */
    if (!env || env_len == 0 || env_len > WIRE_MAX_ENVELOPE) {
        rc = cc_err_set(err, WIRE_ERR_DECODE, "envelope of %zu bytes (limit %u)", env_len,
                        WIRE_MAX_ENVELOPE);
        goto fail;
    }
    if (n_frames && (!frames || !frame_bytes)) {
        rc = cc_err_set(err, CC_ERR_ARG, "wire_open: %zu frames but no frame array", n_frames);
        goto fail;
    }
    if (n_frames > WIRE_MAX_TENSORS) {
        rc = cc_err_set(err, WIRE_ERR_FRAMES, "%zu tensor frames (limit %d)", n_frames,
                        WIRE_MAX_TENSORS);
        goto fail;
    }
    /* 2. decode */
    e = concord__envelope__unpack(NULL, env_len, env);
    if (!e) {
        rc = cc_err_set(err, WIRE_ERR_DECODE, "envelope is not a valid protobuf Envelope");
        goto fail;
    }
    if (e->base.n_unknown_fields) { /* WIRE-3 */
        rc = cc_err_set(err, WIRE_ERR_DECODE, "envelope has %u unsigned unknown field(s)",
                        e->base.n_unknown_fields);
        goto fail;
    }
    if (concord__envelope__get_packed_size(e) != env_len) { /* WIRE-3 */
        rc = cc_err_set(err, WIRE_ERR_DECODE, "envelope is not canonically encoded");
        goto fail;
    }
    /* 3. version */
    if (e->version != WIRE_VERSION) {
        rc = cc_err_set(err, WIRE_ERR_VERSION, "protocol version %u (this build speaks %d)",
                        e->version, WIRE_VERSION);
        goto fail;
    }
    /* 4. field shapes */
    if (e->body.len > WIRE_MAX_BODY) {
        rc = cc_err_set(err, WIRE_ERR_DECODE, "body of %zu bytes (limit %u)", e->body.len,
                        WIRE_MAX_BODY);
        goto fail;
    }
    if (e->n_tensor_digests > WIRE_MAX_TENSORS) {
        rc = cc_err_set(err, WIRE_ERR_FRAMES, "%zu tensor digests (limit %d)",
                        e->n_tensor_digests, WIRE_MAX_TENSORS);
        goto fail;
    }
    for (size_t i = 0; i < e->n_tensor_digests; i++) {
        if (e->tensor_digests[i].len != WIRE_DIGEST_BYTES) {
            rc = cc_err_set(err, WIRE_ERR_DIGEST, "tensor digest %zu has %zu bytes (want %d)", i,
                            e->tensor_digests[i].len, WIRE_DIGEST_BYTES);
            goto fail;
        }
        dptr[i] = e->tensor_digests[i].data;
    }
    if (e->signature.len != WIRE_SIG_BYTES) {
        rc = cc_err_set(err, WIRE_ERR_SIGNATURE, "signature has %zu bytes (want %d)",
                        e->signature.len, WIRE_SIG_BYTES);
        goto fail;
    }
    if (!wire_id_valid(e->sender_id)) {
        rc = cc_err_set(err, WIRE_ERR_SENDER, "sender id is not a valid client id");
        goto fail;
    }
    /* 5. sender */
    if (!lookup || lookup(ctx, e->sender_id, pk) != 0) {
        rc = cc_err_set(err, WIRE_ERR_SENDER, "unknown sender '%s'", e->sender_id);
        goto fail;
    }
    /* 6. frames */
    if (n_frames != e->n_tensor_digests) {
        rc = cc_err_set(err, WIRE_ERR_FRAMES, "%zu tensor frame(s) received, %zu announced",
                        n_frames, e->n_tensor_digests);
        goto fail;
    }
    for (size_t i = 0; i < n_frames; i++) {
        if (frame_bytes[i] % sizeof(float) != 0 || (frame_bytes[i] && !frames[i])) {
            rc = cc_err_set(err, WIRE_ERR_FRAMES,
                            "tensor frame %zu has %zu bytes, not a whole number of float32", i,
                            frame_bytes[i]);
            goto fail;
        }
    }
    /* 7. digests */
    for (size_t i = 0; i < n_frames; i++) {
        uint8_t d[WIRE_DIGEST_BYTES];
        s_digest_bytes(d, frame_bytes[i] ? frames[i] : (const void *)"", frame_bytes[i]);
        if (sodium_memcmp(d, dptr[i], WIRE_DIGEST_BYTES) != 0) {
            rc = cc_err_set(err, WIRE_ERR_DIGEST, "tensor frame %zu does not match its digest", i);
            goto fail;
        }
    }
    /* 8. signature */
    size_t canon_len;
    canon = s_canonical(e->version, (uint32_t)e->type, e->sender_id, e->seq, e->round,
                        e->body.data, e->body.len, dptr, e->n_tensor_digests, &canon_len);
    if (crypto_sign_verify_detached(e->signature.data, canon, canon_len, pk) != 0) {
        rc = cc_err_set(err, WIRE_ERR_SIGNATURE, "bad signature from '%s'", e->sender_id);
        goto fail;
    }
    /* 9. finite */
    for (size_t i = 0; i < n_frames; i++) {
        if (!s_bytes_finite(frames[i], frame_bytes[i] / sizeof(float))) {
            rc = cc_err_set(err, WIRE_ERR_NONFINITE, "tensor frame %zu holds NaN or Inf", i);
            goto fail;
        }
    }

    in->version = e->version;
    in->type = (uint32_t)e->type;
    memcpy(in->sender_id, e->sender_id, strlen(e->sender_id) + 1);
    in->seq = e->seq;
    in->round = e->round;
    in->body = e->body.data; /* owned by the decoded envelope, i.e. by *in */
    in->body_len = e->body.len;
    in->n_frames = n_frames;
    in->envelope = e;
    free(canon);
    return 0;
fail:
    free(canon);
    if (e) concord__envelope__free_unpacked(e, NULL);
    memset(in, 0, sizeof *in);
    return rc;
}
