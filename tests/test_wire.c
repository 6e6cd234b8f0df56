/* test_wire.c — the signed envelope.
 *
 * Acceptance: seal -> open round trips with 0, 1 and several frames (bodies are real packed
 * Concord__Update messages); the signature equals one computed here over an independently
 * built canonical string (wire.h's layout); unaligned frames, empty frames and extreme
 * finite floats are accepted. Known answers: BLAKE2b-256 of "abc", of "" and of a float
 * vector, computed with python3 hashlib.blake2b(..., digest_size=32).
 * Rejection: every single-bit flip of an envelope (classified by the protobuf field it
 * lands in), of every tensor frame; dropped, extra, resized and ragged frames; unknown
 * sender; another enrolled key's signature; wrong version; NaN/Inf under a valid signature;
 * oversized and malformed fields in correctly signed envelopes; unknown and non-canonical
 * fields; every truncation; random garbage and random mutations (run under ASan). */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "concord.pb-c.h"
#include "wire.h"

/* ---- keys: a tiny enrolment independent of identity.c ---- */

typedef struct {
    const char *id;
    uint8_t pk[WIRE_PK_BYTES], sk[WIRE_SK_BYTES];
} s_key_t;

static s_key_t s_keys[3] = {{.id = "hospital-a"}, {.id = "coordinator"}, {.id = "zeta.7"}};
#define S_A (&s_keys[0])
#define S_B (&s_keys[1])
#define S_C (&s_keys[2])
static uint8_t s_stranger_sk[WIRE_SK_BYTES]; /* a key nobody enrolled */

static int s_lookup(void *ctx, const char *id, uint8_t pk[WIRE_PK_BYTES]) {
    (void)ctx;
    for (size_t i = 0; i < 3; i++)
        if (strcmp(s_keys[i].id, id) == 0) {
            memcpy(pk, s_keys[i].pk, WIRE_PK_BYTES);
            return 0;
        }
    return -1;
}

static void s_setup(void) {
    cr_assert_geq(sodium_init(), 0);
    for (size_t i = 0; i < 3; i++) crypto_sign_keypair(s_keys[i].pk, s_keys[i].sk);
    uint8_t pk[WIRE_PK_BYTES];
    crypto_sign_keypair(pk, s_stranger_sk);
}

TestSuite(wire, .init = s_setup);

/* ---- fixtures ---- */

/* A packed Concord__Update (caller frees). */
static uint8_t *s_update_body(size_t *len) {
    Concord__Update u = CONCORD__UPDATE__INIT;
    Concord__TensorInfo t = CONCORD__TENSOR_INFO__INIT;
    Concord__Metrics m = CONCORD__METRICS__INIT;
    uint8_t digest[32];
    uint64_t counts[3] = {120, 7, 31};
    uint32_t shape[2] = {5, 3};
    Concord__TensorInfo *tp = &t;
    for (int i = 0; i < 32; i++) digest[i] = (uint8_t)(i * 7 + 1);
    t.name = "delta";
    t.n_shape = 2, t.shape = shape;
    m.n = 158, m.loss = 0.25, m.accuracy = 0.9, m.balanced_accuracy = 0.75, m.macro_f1 = 0.7;
    u.round = 3;
    u.base_digest.data = digest, u.base_digest.len = 32;
    u.n_samples = 158;
    u.n_class_counts = 3, u.class_counts = counts;
    u.n_tensors = 1, u.tensors = &tp;
    u.data_score = 0.125;
    u.val_metrics = &m;
    u.train_seconds = 1.5;
    *len = concord__update__get_packed_size(&u);
    uint8_t *buf = malloc(*len);
    cr_assert_eq(concord__update__pack(&u, buf), *len);
    return buf;
}

typedef struct {
    float *data[4];
    size_t n[4];
    wire_frame_t frames[4];
    const void *ptr[4];
    size_t bytes[4];
    size_t count;
} s_frames_t;

static void s_frames_init(s_frames_t *f, size_t count, const size_t *sizes) {
    memset(f, 0, sizeof *f);
    f->count = count;
    for (size_t i = 0; i < count; i++) {
        f->n[i] = sizes[i];
        f->data[i] = malloc((sizes[i] ? sizes[i] : 1) * sizeof(float));
        for (size_t j = 0; j < sizes[i]; j++) f->data[i][j] = (float)(i + 1) * 0.5f - (float)j * 0.25f;
        f->frames[i].data = f->data[i], f->frames[i].n = sizes[i];
        f->ptr[i] = f->data[i], f->bytes[i] = sizes[i] * sizeof(float);
    }
}

static void s_frames_free(s_frames_t *f) {
    for (size_t i = 0; i < f->count; i++) free(f->data[i]);
}

static uint8_t *s_seal(const char *id, const uint8_t *sk, const uint8_t *body, size_t body_len,
                       const s_frames_t *f, size_t *env_len) {
    wire_out_t out = {.type = CONCORD__MSG_TYPE__MSG_UPDATE, .sender_id = id, .seq = 300,
                      .round = 3, .body = body, .body_len = body_len,
                      .frames = f ? f->frames : NULL, .n_frames = f ? f->count : 0};
    uint8_t *env = NULL;
    cc_err_t err = {0};
    int rc = wire_seal(&out, sk, &env, env_len, &err);
    cr_assert_eq(rc, 0, "wire_seal: %s", err.msg);
    return env;
}

static int s_open(const uint8_t *env, size_t len, const s_frames_t *f, wire_in_t *in,
                  cc_err_t *err) {
    return wire_open(env, len, f ? f->ptr : NULL, f ? f->bytes : NULL, f ? f->count : 0,
                     s_lookup, NULL, in, err);
}

static int s_open_rc(const uint8_t *env, size_t len, const s_frames_t *f) {
    wire_in_t in;
    cc_err_t err = {0};
    int rc = s_open(env, len, f, &in, &err);
    wire_in_clear(&in);
    return rc;
}

/* The canonical string of wire.h, written independently of wire.c. */
static size_t s_ref_canonical(uint8_t *out, uint32_t version, uint32_t type, const char *id,
                              uint64_t seq, uint64_t round, const uint8_t *body, size_t body_len,
                              const ProtobufCBinaryData *digests, size_t n) {
    size_t k = 0;
    memcpy(out, "concord-envelope-v1", 20); /* with its NUL */
    k = 20;
#define PUT(v, bytes) for (int b_ = 0; b_ < (bytes); b_++) out[k++] = (uint8_t)((uint64_t)(v) >> (8 * b_))
    PUT(version, 4);
    PUT(type, 4);
    PUT(strlen(id), 4);
    memcpy(out + k, id, strlen(id)), k += strlen(id);
    PUT(seq, 8);
    PUT(round, 8);
    PUT(body_len, 8);
    if (body_len) memcpy(out + k, body, body_len);
    k += body_len;
    PUT(n, 4);
    for (size_t i = 0; i < n; i++) memcpy(out + k, digests[i].data, digests[i].len), k += digests[i].len;
#undef PUT
    return k;
}

/* An envelope built by hand (protobuf-c) and signed over the reference canonical string,
 * for fields wire_seal would never produce. sig_len < 0: a correct 64-byte signature. */
typedef struct {
    uint32_t version, type;
    const char *id;
    uint64_t seq, round;
    const uint8_t *body;
    size_t body_len;
    ProtobufCBinaryData *digests;
    size_t n_digests;
    const uint8_t *sk;
    int sig_len;
} s_craft_t;

static uint8_t *s_craft(const s_craft_t *c, size_t *len) {
    size_t cap = 64 + strlen(c->id) + c->body_len + 40 * c->n_digests + 64;
    uint8_t *canon = malloc(cap), sig[64 + 8];
    size_t clen = s_ref_canonical(canon, c->version, c->type, c->id, c->seq, c->round, c->body,
                                  c->body_len, c->digests, c->n_digests);
    crypto_sign_detached(sig, NULL, canon, clen, c->sk);
    free(canon);
    memset(sig + 64, 0xab, 8);
    Concord__Envelope e = CONCORD__ENVELOPE__INIT;
    e.version = c->version;
    e.type = (Concord__MsgType)c->type;
    e.sender_id = (char *)c->id;
    e.seq = c->seq, e.round = c->round;
    e.body.data = (uint8_t *)c->body, e.body.len = c->body_len;
    e.n_tensor_digests = c->n_digests, e.tensor_digests = c->digests;
    e.signature.data = sig, e.signature.len = c->sig_len < 0 ? 64 : (size_t)c->sig_len;
    *len = concord__envelope__get_packed_size(&e);
    uint8_t *buf = malloc(*len);
    cr_assert_eq(concord__envelope__pack(&e, buf), *len);
    return buf;
}

/* ---- round trips ---- */

static void s_round_trip(size_t count, const size_t *sizes) {
    s_frames_t f;
    s_frames_init(&f, count, sizes);
    size_t body_len, env_len;
    uint8_t *body = s_update_body(&body_len);
    uint8_t *env = s_seal(S_A->id, S_A->sk, body, body_len, &f, &env_len);

    wire_in_t in;
    cc_err_t err = {0};
    int rc = s_open(env, env_len, &f, &in, &err);
    cr_assert_eq(rc, 0, "wire_open: %s", err.msg);
    cr_assert_eq(in.version, WIRE_VERSION);
    cr_assert_eq(in.type, CONCORD__MSG_TYPE__MSG_UPDATE);
    cr_assert_str_eq(in.sender_id, "hospital-a");
    cr_assert_eq(in.seq, 300);
    cr_assert_eq(in.round, 3);
    cr_assert_eq(in.n_frames, count);
    cr_assert_eq(in.body_len, body_len);
    cr_assert_eq(memcmp(in.body, body, body_len), 0);

    Concord__Update *u = concord__update__unpack(NULL, in.body_len, in.body);
    cr_assert_not_null(u);
    cr_assert_eq(u->round, 3);
    cr_assert_eq(u->n_samples, 158);
    cr_assert_eq(u->n_class_counts, 3);
    cr_assert_eq(u->class_counts[1], 7);
    cr_assert_str_eq(u->tensors[0]->name, "delta");
    cr_assert_eq(u->val_metrics->balanced_accuracy, 0.75);
    concord__update__free_unpacked(u, NULL);

    /* The signature is Ed25519 over wire.h's canonical string (deterministic). */
    Concord__Envelope *e = concord__envelope__unpack(NULL, env_len, env);
    cr_assert_not_null(e);
    cr_assert_eq(e->n_tensor_digests, count);
    uint8_t *canon = malloc(256 + body_len + 32 * count), sig[64];
    size_t clen = s_ref_canonical(canon, 1, CONCORD__MSG_TYPE__MSG_UPDATE, "hospital-a", 300, 3,
                                  body, body_len, e->tensor_digests, e->n_tensor_digests);
    crypto_sign_detached(sig, NULL, canon, clen, S_A->sk);
    cr_assert_eq(e->signature.len, 64);
    cr_assert_eq(memcmp(sig, e->signature.data, 64), 0, "signature differs from the reference");
    for (size_t i = 0; i < count; i++) {
        uint8_t d[32];
        crypto_generichash(d, 32, (const uint8_t *)f.data[i], f.n[i] * 4, NULL, 0);
        cr_assert_eq(memcmp(d, e->tensor_digests[i].data, 32), 0);
        cr_assert_eq(memcmp(d, wire_in_digest(&in, i), 32), 0, "wire_in_digest(%zu)", i);
    }
    cr_assert_null(wire_in_digest(&in, count));
    free(canon);
    concord__envelope__free_unpacked(e, NULL);

    wire_in_clear(&in);
    wire_in_clear(&in); /* idempotent */
    free(env);
    free(body);
    s_frames_free(&f);
}

Test(wire, round_trip_no_frames) { s_round_trip(0, NULL); }

/* Digests the sender already knows (the coordinator's θ digest) give the same envelope,
 * byte for byte; a wrong known digest makes a message every receiver rejects. */
Test(wire, seal_with_known_digests) {
    size_t sizes[] = {15, 0, 5000}, body_len, plain_len, known_len, bad_len;
    s_frames_t f;
    s_frames_init(&f, 3, sizes);
    uint8_t *body = s_update_body(&body_len), d0[32], d2[32];
    crypto_generichash(d0, 32, (const uint8_t *)f.data[0], sizes[0] * 4, NULL, 0);
    crypto_generichash(d2, 32, (const uint8_t *)f.data[2], sizes[2] * 4, NULL, 0);
    const uint8_t *known[3] = {d0, NULL, d2};
    uint8_t *plain = s_seal(S_A->id, S_A->sk, body, body_len, &f, &plain_len);
    wire_out_t out = {.type = CONCORD__MSG_TYPE__MSG_UPDATE, .sender_id = S_A->id, .seq = 300, .round = 3,
                      .body = body, .body_len = body_len, .frames = f.frames, .n_frames = 3,
                      .frame_digests = known};
    uint8_t *with = NULL, *bad = NULL;
    cc_err_t err = {0};
    cr_assert_eq(wire_seal(&out, S_A->sk, &with, &known_len, &err), 0, "%s", err.msg);
    cr_assert_eq(known_len, plain_len);
    cr_assert_eq(memcmp(with, plain, plain_len), 0, "known digests changed the envelope");
    d2[5] ^= 1;
    cr_assert_eq(wire_seal(&out, S_A->sk, &bad, &bad_len, &err), 0, "%s", err.msg);
    cr_assert_eq(s_open_rc(bad, bad_len, &f), WIRE_ERR_DIGEST);
    free(plain), free(with), free(bad), free(body);
    s_frames_free(&f);
}

Test(wire, round_trip_one_frame) {
    size_t sizes[] = {15};
    s_round_trip(1, sizes);
}

Test(wire, round_trip_several_frames_including_empty) {
    size_t sizes[] = {15, 1, 0, 5000};
    s_round_trip(4, sizes);
}

Test(wire, round_trip_empty_body) {
    size_t env_len;
    uint8_t *env = s_seal(S_C->id, S_C->sk, NULL, 0, NULL, &env_len);
    wire_in_t in;
    cc_err_t err = {0};
    cr_assert_eq(s_open(env, env_len, NULL, &in, &err), 0, "%s", err.msg);
    cr_assert_str_eq(in.sender_id, "zeta.7");
    cr_assert_eq(in.body_len, 0);
    wire_in_clear(&in);
    free(env);
}

Test(wire, unaligned_frames_accepted) {
    size_t sizes[] = {7, 33};
    s_frames_t f;
    s_frames_init(&f, 2, sizes);
    size_t env_len;
    uint8_t *env = s_seal(S_A->id, S_A->sk, (const uint8_t *)"b", 1, &f, &env_len);
    uint8_t *shifted[2];
    for (size_t i = 0; i < 2; i++) {
        shifted[i] = malloc(f.bytes[i] + 3);
        memcpy(shifted[i] + 3, f.data[i], f.bytes[i]);
        f.ptr[i] = shifted[i] + 3;
    }
    cr_assert_eq(s_open_rc(env, env_len, &f), 0);
    for (size_t i = 0; i < 2; i++) free(shifted[i]);
    free(env);
    s_frames_free(&f);
}

Test(wire, extreme_finite_values_accepted) {
    size_t sizes[] = {6};
    s_frames_t f;
    s_frames_init(&f, 1, sizes);
    float v[6] = {FLT_MAX, -FLT_MAX, FLT_MIN, 1e-45f /* denormal */, -0.0f, 0.0f};
    memcpy(f.data[0], v, sizeof v);
    size_t env_len;
    uint8_t *env = s_seal(S_A->id, S_A->sk, NULL, 0, &f, &env_len);
    cr_assert_eq(s_open_rc(env, env_len, &f), 0);
    free(env);
    s_frames_free(&f);
}

/* ---- single-bit flips ---- */

/* Per byte of an envelope: which field it belongs to and how (from a protobuf scan). */
enum { S_TAG, S_LEN, S_VARINT, S_PAYLOAD };
typedef struct {
    int kind, field, last; /* last: the final byte of a varint value */
} s_byte_t;

static size_t s_varint(const uint8_t *p, size_t len, size_t k, uint64_t *v) {
    *v = 0;
    for (int s = 0; k < len; s += 7) {
        uint8_t b = p[k++];
        *v |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80)) break;
    }
    return k;
}

static void s_classify(const uint8_t *env, size_t len, s_byte_t *cls) {
    size_t k = 0;
    while (k < len) {
        uint64_t tag, v;
        size_t start = k;
        k = s_varint(env, len, k, &tag);
        int field = (int)(tag >> 3), wt = (int)(tag & 7);
        for (size_t i = start; i < k; i++) cls[i] = (s_byte_t){S_TAG, field, 0};
        start = k;
        k = s_varint(env, len, k, &v);
        if (wt == 0) {
            for (size_t i = start; i < k; i++) cls[i] = (s_byte_t){S_VARINT, field, i + 1 == k};
        } else {
            cr_assert_eq(wt, 2);
            for (size_t i = start; i < k; i++) cls[i] = (s_byte_t){S_LEN, field, 0};
            for (size_t i = k; i < k + v; i++) cls[i] = (s_byte_t){S_PAYLOAD, field, 0};
            k += v;
        }
    }
    cr_assert_eq(k, len);
}

static int s_in(int rc, int a, int b) { return rc == a || rc == b; }

static int s_is_wire_err(int rc) { return rc <= WIRE_ERR_DECODE && rc >= WIRE_ERR_NONFINITE; }

Test(wire, every_envelope_bit_flip_is_rejected_with_its_class) {
    size_t sizes[] = {5, 3, 2};
    s_frames_t f;
    s_frames_init(&f, 3, sizes);
    size_t body_len, env_len;
    uint8_t *body = s_update_body(&body_len);
    uint8_t *env = s_seal(S_A->id, S_A->sk, body, body_len, &f, &env_len);
    s_byte_t *cls = calloc(env_len, sizeof *cls);
    s_classify(env, env_len, cls);
    int count[8] = {0};

    for (size_t i = 0; i < env_len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            env[i] ^= (uint8_t)(1u << bit);
            int rc = s_open_rc(env, env_len, &f);
            env[i] ^= (uint8_t)(1u << bit);
            s_byte_t c = cls[i];
            cr_assert(s_is_wire_err(rc), "byte %zu bit %d: rc %d", i, bit, rc);
            count[-rc - 20]++;
            if (c.kind == S_PAYLOAD) {
                int want = c.field == 3 ? WIRE_ERR_SENDER
                         : c.field == 6 ? WIRE_ERR_SIGNATURE
                         : c.field == 7 ? WIRE_ERR_DIGEST
                         : c.field == 8 ? WIRE_ERR_SIGNATURE : 0;
                cr_assert_eq(rc, want, "byte %zu bit %d (field %d payload): rc %d", i, bit,
                             c.field, rc);
            } else if (c.kind == S_VARINT && bit < 7) {
                /* A changed value fails its own check, or the canonical-size check when it
                 * became 0 (proto3 omits zeros) or lost its last significant byte. */
                int want = c.field == 1 ? WIRE_ERR_VERSION : WIRE_ERR_SIGNATURE;
                cr_assert(s_in(rc, want, WIRE_ERR_DECODE), "byte %zu bit %d (field %d): rc %d",
                          i, bit, c.field, rc);
            }
        }
    }
    /* Every class a flip should reach was reached. */
    cr_assert_gt(count[-WIRE_ERR_DECODE - 20], 0);
    cr_assert_gt(count[-WIRE_ERR_VERSION - 20], 0);
    cr_assert_gt(count[-WIRE_ERR_SENDER - 20], 0);
    cr_assert_geq(count[-WIRE_ERR_DIGEST - 20], 3 * 32 * 8);
    cr_assert_geq(count[-WIRE_ERR_SIGNATURE - 20], 64 * 8 + (int)body_len * 8);
    cr_assert_eq(s_open_rc(env, env_len, &f), 0); /* intact again */
    free(cls);
    free(env);
    free(body);
    s_frames_free(&f);
}

Test(wire, every_frame_bit_flip_is_digest_error) {
    size_t sizes[] = {5, 1, 9};
    s_frames_t f;
    s_frames_init(&f, 3, sizes);
    size_t env_len;
    uint8_t *env = s_seal(S_A->id, S_A->sk, (const uint8_t *)"xy", 2, &f, &env_len);
    for (size_t fr = 0; fr < f.count; fr++) {
        uint8_t *p = (uint8_t *)f.data[fr];
        for (size_t i = 0; i < f.bytes[fr]; i++)
            for (int bit = 0; bit < 8; bit++) {
                p[i] ^= (uint8_t)(1u << bit);
                int rc = s_open_rc(env, env_len, &f);
                p[i] ^= (uint8_t)(1u << bit);
                cr_assert_eq(rc, WIRE_ERR_DIGEST, "frame %zu byte %zu bit %d: rc %d", fr, i, bit, rc);
            }
    }
    cr_assert_eq(s_open_rc(env, env_len, &f), 0);
    free(env);
    s_frames_free(&f);
}

/* ---- frames ---- */

Test(wire, frame_count_and_size_mismatches) {
    size_t sizes[] = {4, 4, 4};
    s_frames_t f;
    s_frames_init(&f, 3, sizes);
    size_t env_len;
    uint8_t *env = s_seal(S_A->id, S_A->sk, NULL, 0, &f, &env_len);
    wire_in_t in;
    cc_err_t err = {0};

    /* dropped frame */
    cr_assert_eq(wire_open(env, env_len, f.ptr, f.bytes, 2, s_lookup, NULL, &in, &err),
                 WIRE_ERR_FRAMES);
    cr_assert(strstr(err.msg, "2 tensor frame(s) received, 3 announced"), "%s", err.msg);
    /* no frames at all */
    cr_assert_eq(wire_open(env, env_len, NULL, NULL, 0, s_lookup, NULL, &in, &err), WIRE_ERR_FRAMES);
    /* extra frame */
    const void *ptr4[4] = {f.ptr[0], f.ptr[1], f.ptr[2], f.ptr[0]};
    size_t bytes4[4] = {16, 16, 16, 16};
    cr_assert_eq(wire_open(env, env_len, ptr4, bytes4, 4, s_lookup, NULL, &in, &err),
                 WIRE_ERR_FRAMES);
    /* a frame whose byte length is not a multiple of 4 (one byte short, one byte long) */
    size_t ragged[3] = {16, 15, 16};
    cr_assert_eq(wire_open(env, env_len, f.ptr, ragged, 3, s_lookup, NULL, &in, &err),
                 WIRE_ERR_FRAMES);
    cr_assert(strstr(err.msg, "frame 1"), "%s", err.msg);
    float big[5] = {0};
    const void *ptrb[3] = {f.ptr[0], f.ptr[1], big};
    size_t longer[3] = {16, 16, 17};
    cr_assert_eq(wire_open(env, env_len, ptrb, longer, 3, s_lookup, NULL, &in, &err),
                 WIRE_ERR_FRAMES);
    /* a frame of the wrong whole-float length: the envelope carries no lengths (the body's
     * TensorInfo shapes do, checked by the daemons), so the digest catches it. */
    size_t shorter[3] = {16, 12, 16};
    cr_assert_eq(wire_open(env, env_len, f.ptr, shorter, 3, s_lookup, NULL, &in, &err),
                 WIRE_ERR_DIGEST);
    /* swapped frames */
    f.data[1][0] = 42.0f;
    free(env);
    env = s_seal(S_A->id, S_A->sk, NULL, 0, &f, &env_len);
    const void *swapped[3] = {f.ptr[1], f.ptr[0], f.ptr[2]};
    cr_assert_eq(wire_open(env, env_len, swapped, f.bytes, 3, s_lookup, NULL, &in, &err),
                 WIRE_ERR_DIGEST);
    /* more frames than the protocol allows */
    const void *many[WIRE_MAX_TENSORS + 1];
    size_t many_bytes[WIRE_MAX_TENSORS + 1];
    for (size_t i = 0; i <= WIRE_MAX_TENSORS; i++) many[i] = big, many_bytes[i] = 4;
    cr_assert_eq(wire_open(env, env_len, many, many_bytes, WIRE_MAX_TENSORS + 1, s_lookup, NULL,
                           &in, &err), WIRE_ERR_FRAMES);
    cr_assert_eq(s_open_rc(env, env_len, &f), 0);
    free(env);
    s_frames_free(&f);
}

/* ---- senders and signatures ---- */

Test(wire, unknown_sender) {
    size_t env_len;
    uint8_t *env = s_seal("stranger", s_stranger_sk, (const uint8_t *)"x", 1, NULL, &env_len);
    wire_in_t in;
    cc_err_t err = {0};
    cr_assert_eq(s_open(env, env_len, NULL, &in, &err), WIRE_ERR_SENDER);
    cr_assert(strstr(err.msg, "stranger"), "%s", err.msg);
    cr_assert_eq(in.envelope, NULL);
    /* no lookup function at all: nobody is known */
    cr_assert_eq(wire_open(env, env_len, NULL, NULL, 0, NULL, NULL, &in, &err), WIRE_ERR_SENDER);
    free(env);
}

Test(wire, signature_by_another_enrolled_key) {
    size_t sizes[] = {3};
    s_frames_t f;
    s_frames_init(&f, 1, sizes);
    size_t env_len;
    /* claims to be hospital-a, signed with the coordinator's (enrolled) key */
    uint8_t *env = s_seal(S_A->id, S_B->sk, (const uint8_t *)"x", 1, &f, &env_len);
    cr_assert_eq(s_open_rc(env, env_len, &f), WIRE_ERR_SIGNATURE);
    free(env);
    /* a stranger's key under an enrolled name */
    env = s_seal(S_C->id, s_stranger_sk, NULL, 0, &f, &env_len);
    cr_assert_eq(s_open_rc(env, env_len, &f), WIRE_ERR_SIGNATURE);
    free(env);
    s_frames_free(&f);
}

Test(wire, crafted_envelope_accepted_when_correct) {
    /* sanity check of the crafting helper: a hand-built envelope passes */
    s_craft_t c = {.version = 1, .type = 9, .id = "hospital-a", .seq = 1, .round = 0,
                   .body = (const uint8_t *)"hb", .body_len = 2, .sk = S_A->sk, .sig_len = -1};
    size_t len;
    uint8_t *env = s_craft(&c, &len);
    cr_assert_eq(s_open_rc(env, len, NULL), 0);
    free(env);
}

Test(wire, wrong_version) {
    uint32_t versions[] = {0, 2, 0xffffffffu};
    for (size_t i = 0; i < 3; i++) {
        s_craft_t c = {.version = versions[i], .type = 9, .id = "hospital-a", .seq = 1,
                       .sk = S_A->sk, .sig_len = -1};
        size_t len;
        uint8_t *env = s_craft(&c, &len);
        wire_in_t in;
        cc_err_t err = {0};
        cr_assert_eq(s_open(env, len, NULL, &in, &err), WIRE_ERR_VERSION, "version %u",
                     versions[i]);
        cr_assert(strstr(err.msg, "version"), "%s", err.msg);
        free(env);
    }
}

Test(wire, malformed_fields_under_a_valid_signature) {
    size_t len;
    uint8_t *env;
    uint8_t store[WIRE_MAX_TENSORS + 1][32];
    ProtobufCBinaryData bins[WIRE_MAX_TENSORS + 1];
    for (size_t i = 0; i <= WIRE_MAX_TENSORS; i++) {
        memset(store[i], (int)i, 32);
        bins[i].data = store[i], bins[i].len = 32;
    }
    s_craft_t base = {.version = 1, .type = 6, .id = "hospital-a", .seq = 2, .round = 1,
                      .sk = S_A->sk, .sig_len = -1};

    /* too many digests */
    s_craft_t c = base;
    c.digests = bins, c.n_digests = WIRE_MAX_TENSORS + 1;
    env = s_craft(&c, &len);
    cr_assert_eq(s_open_rc(env, len, NULL), WIRE_ERR_FRAMES);
    free(env);
    /* a digest of 31 bytes */
    bins[0].len = 31;
    c = base, c.digests = bins, c.n_digests = 1;
    env = s_craft(&c, &len);
    cr_assert_eq(s_open_rc(env, len, NULL), WIRE_ERR_DIGEST);
    free(env);
    bins[0].len = 33;
    env = s_craft(&c, &len);
    cr_assert_eq(s_open_rc(env, len, NULL), WIRE_ERR_DIGEST);
    free(env);
    bins[0].len = 32;
    /* signature missing, short, long */
    int sig_lens[] = {0, 63, 65};
    for (size_t i = 0; i < 3; i++) {
        c = base, c.sig_len = sig_lens[i];
        env = s_craft(&c, &len);
        cr_assert_eq(s_open_rc(env, len, NULL), WIRE_ERR_SIGNATURE, "sig len %d", sig_lens[i]);
        free(env);
    }
    /* invalid sender ids: empty, a space, 65 characters */
    char long_id[WIRE_MAX_ID + 2];
    memset(long_id, 'a', WIRE_MAX_ID + 1);
    long_id[WIRE_MAX_ID + 1] = '\0';
    const char *ids[] = {"", "hospital a", long_id, "h\xc3\xa9"};
    for (size_t i = 0; i < 4; i++) {
        c = base, c.id = ids[i];
        env = s_craft(&c, &len);
        cr_assert_eq(s_open_rc(env, len, NULL), WIRE_ERR_SENDER, "id '%s'", ids[i]);
        free(env);
    }
    /* a body over the limit (but an envelope under its own) */
    uint8_t *big = calloc(WIRE_MAX_BODY + 1, 1);
    c = base, c.body = big, c.body_len = WIRE_MAX_BODY + 1;
    env = s_craft(&c, &len);
    cr_assert_eq(s_open_rc(env, len, NULL), WIRE_ERR_DECODE);
    free(env);
    /* exactly at the limit is fine */
    c.body_len = WIRE_MAX_BODY;
    env = s_craft(&c, &len);
    cr_assert_eq(s_open_rc(env, len, NULL), 0);
    free(env);
    free(big);
}

Test(wire, nonfinite_frames_rejected_under_a_valid_signature) {
    float specials[] = {NAN, -NAN, INFINITY, -INFINITY};
    for (size_t s = 0; s < 4; s++) {
        for (size_t pos = 0; pos < 3; pos++) {
            size_t sizes[] = {4, 10000};
            s_frames_t f;
            s_frames_init(&f, 2, sizes);
            size_t where = pos == 0 ? 0 : pos == 1 ? 4097 : 9999; /* first, second block, last */
            f.data[1][where] = specials[s];
            size_t env_len;
            uint8_t *env = s_seal(S_A->id, S_A->sk, NULL, 0, &f, &env_len);
            wire_in_t in;
            cc_err_t err = {0};
            cr_assert_eq(s_open(env, env_len, &f, &in, &err), WIRE_ERR_NONFINITE,
                         "special %zu at %zu", s, where);
            cr_assert(strstr(err.msg, "frame 1"), "%s", err.msg);
            free(env);
            s_frames_free(&f);
        }
    }
}

/* ---- hostile bytes ---- */

Test(wire, unknown_and_noncanonical_fields_rejected) {
    size_t len;
    uint8_t *env = s_seal(S_A->id, S_A->sk, (const uint8_t *)"body", 4, NULL, &len);
    cr_assert_eq(s_open_rc(env, len, NULL), 0);
    uint8_t *more = malloc(len + 16);
    memcpy(more, env, len);
    /* an unknown field 9 (varint 1): not covered by the signature */
    more[len] = (9 << 3) | 0, more[len + 1] = 1;
    cr_assert_eq(s_open_rc(more, len + 2, NULL), WIRE_ERR_DECODE);
    /* seq given twice (protobuf keeps the last): same values, extra unsigned bytes */
    more[len] = (4 << 3) | 0, more[len + 1] = 0xac, more[len + 2] = 0x02; /* 300 */
    cr_assert_eq(s_open_rc(more, len + 3, NULL), WIRE_ERR_DECODE);
    /* a NUL inside sender_id: "hospital-a\0zz" decodes as "hospital-a" */
    char id_nul[] = "hospital-a\0zz";
    size_t k = 0;
    uint8_t *p = malloc(len + 16);
    /* rebuild: copy env but replace field 3 (tag 0x1a, len 10) with len 13 */
    for (size_t i = 0; i < len;) {
        if (env[i] == 0x1a && env[i + 1] == 10 && memcmp(env + i + 2, "hospital-a", 10) == 0) {
            p[k++] = 0x1a, p[k++] = 13;
            memcpy(p + k, id_nul, 13), k += 13;
            i += 12;
        } else {
            p[k++] = env[i++];
        }
    }
    cr_assert_eq(k, len + 3);
    cr_assert_eq(s_open_rc(p, k, NULL), WIRE_ERR_DECODE);
    free(p);
    free(more);
    free(env);
}

Test(wire, oversized_envelope_rejected_before_decoding) {
    size_t n = WIRE_MAX_BODY + 65536 + 1;
    uint8_t *big = calloc(n, 1);
    wire_in_t in;
    cc_err_t err = {0};
    cr_assert_eq(wire_open(big, n, NULL, NULL, 0, s_lookup, NULL, &in, &err), WIRE_ERR_DECODE);
    cr_assert(strstr(err.msg, "limit"), "%s", err.msg);
    cr_assert_eq(wire_open(big, 0, NULL, NULL, 0, s_lookup, NULL, &in, &err), WIRE_ERR_DECODE);
    cr_assert_eq(wire_open(NULL, 10, NULL, NULL, 0, s_lookup, NULL, &in, &err), WIRE_ERR_DECODE);
    free(big);
}

Test(wire, every_truncation_rejected) {
    size_t sizes[] = {3, 2};
    s_frames_t f;
    s_frames_init(&f, 2, sizes);
    size_t body_len, env_len;
    uint8_t *body = s_update_body(&body_len);
    uint8_t *env = s_seal(S_A->id, S_A->sk, body, body_len, &f, &env_len);
    for (size_t cut = 0; cut < env_len; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any over-read */
        memcpy(copy, env, cut);
        int rc = s_open_rc(copy, cut, &f);
        cr_assert(s_is_wire_err(rc), "cut at %zu: rc %d", cut, rc);
        free(copy);
    }
    free(env);
    free(body);
    s_frames_free(&f);
}

Test(wire, random_garbage_and_mutations_never_accepted) {
    uint8_t buf[600];
    for (int it = 0; it < 20000; it++) {
        size_t n = 1 + randombytes_uniform(sizeof buf);
        randombytes_buf(buf, n);
        uint8_t *copy = malloc(n);
        memcpy(copy, buf, n);
        int rc = s_open_rc(copy, n, NULL);
        cr_assert_neq(rc, 0);
        free(copy);
    }
    size_t sizes[] = {2};
    s_frames_t f;
    s_frames_init(&f, 1, sizes);
    size_t body_len, env_len;
    uint8_t *body = s_update_body(&body_len);
    uint8_t *env = s_seal(S_A->id, S_A->sk, body, body_len, &f, &env_len);
    for (int it = 0; it < 20000; it++) {
        uint8_t *copy = malloc(env_len);
        memcpy(copy, env, env_len);
        int changes = 1 + (int)randombytes_uniform(4);
        for (int c = 0; c < changes; c++)
            copy[randombytes_uniform((uint32_t)env_len)] = (uint8_t)randombytes_uniform(256);
        /* Two mutations can hit one byte and put it back: only a copy that differs counts
         * (a per-mutation flag failed about one run in ten on an unchanged envelope). */
        int changed = memcmp(copy, env, env_len) != 0;
        int rc = s_open_rc(copy, env_len, &f);
        if (changed) cr_assert(s_is_wire_err(rc), "mutation %d accepted (rc %d)", it, rc);
        free(copy);
    }
    free(env);
    free(body);
    s_frames_free(&f);
}

/* ---- seal's own argument checks ---- */

Test(wire, seal_refuses_bad_arguments) {
    uint8_t *env = NULL;
    size_t len = 0;
    cc_err_t err = {0};
    wire_out_t out = {.type = 1, .sender_id = "bad id"};
    cr_assert_eq(wire_seal(&out, S_A->sk, &env, &len, &err), CC_ERR_ARG);
    cr_assert_null(env);
    out.sender_id = "hospital-a";
    out.body_len = WIRE_MAX_BODY + 1;
    out.body = (const uint8_t *)"";
    cr_assert_eq(wire_seal(&out, S_A->sk, &env, &len, &err), CC_ERR_ARG);
    out.body_len = 0;
    wire_frame_t frames[WIRE_MAX_TENSORS + 1];
    float x = 1;
    for (size_t i = 0; i <= WIRE_MAX_TENSORS; i++) frames[i].data = &x, frames[i].n = 1;
    out.frames = frames, out.n_frames = WIRE_MAX_TENSORS + 1;
    cr_assert_eq(wire_seal(&out, S_A->sk, &env, &len, &err), CC_ERR_ARG);
    out.n_frames = WIRE_MAX_TENSORS; /* the maximum itself is fine */
    cr_assert_eq(wire_seal(&out, S_A->sk, &env, &len, &err), 0, "%s", err.msg);
    const void *ptr[WIRE_MAX_TENSORS];
    size_t bytes[WIRE_MAX_TENSORS];
    for (size_t i = 0; i < WIRE_MAX_TENSORS; i++) ptr[i] = &x, bytes[i] = 4;
    wire_in_t in;
    cr_assert_eq(wire_open(env, len, ptr, bytes, WIRE_MAX_TENSORS, s_lookup, NULL, &in, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(in.n_frames, WIRE_MAX_TENSORS);
    wire_in_clear(&in);
    free(env);
}

/* ---- digests and helpers ---- */

static void s_hex(char *out, const uint8_t *d, size_t n) {
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

Test(wire, blake2b_known_answers) {
    /* python3 -c "import hashlib; print(hashlib.blake2b(b'abc', digest_size=32).hexdigest())" */
    uint8_t d[32];
    char hex[65];
    crypto_generichash(d, 32, (const uint8_t *)"abc", 3, NULL, 0);
    s_hex(hex, d, 32);
    cr_assert_str_eq(hex, "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
    /* hashlib.blake2b(b'', digest_size=32) */
    wire_digest_floats(d, NULL, 0);
    wire_digest_hex(hex, d);
    cr_assert_str_eq(hex, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
    /* hashlib.blake2b(struct.pack('<5f', 1.0, -2.5, 3.25, 0.0, 1e-3), digest_size=32) */
    float v[5] = {1.0f, -2.5f, 3.25f, 0.0f, 1e-3f};
    wire_digest_floats(d, v, 5);
    wire_digest_hex(hex, d);
    cr_assert_str_eq(hex, "c14da69b6193fd20cc6740e8332f76eaae23c9f300ef982f262fa14d65425750");
}

Test(wire, id_validity) {
    char id64[WIRE_MAX_ID + 1], id65[WIRE_MAX_ID + 2];
    memset(id64, 'x', WIRE_MAX_ID), id64[WIRE_MAX_ID] = '\0';
    memset(id65, 'x', WIRE_MAX_ID + 1), id65[WIRE_MAX_ID + 1] = '\0';
    cr_assert(wire_id_valid("hospital-a"));
    cr_assert(wire_id_valid("A.b_c-9"));
    cr_assert(wire_id_valid(id64));
    cr_assert_not(wire_id_valid(id65));
    cr_assert_not(wire_id_valid(""));
    cr_assert_not(wire_id_valid(NULL));
    cr_assert_not(wire_id_valid("a b"));
    cr_assert_not(wire_id_valid("a/b"));
    cr_assert_not(wire_id_valid("caf\xc3\xa9"));
}

Test(wire, all_finite_matches_isfinite) {
    /* random bit patterns (many NaN/Inf when the exponent is forced), every length and
     * alignment up to 40, against the naive isfinite loop */
    uint32_t words[64];
    for (int it = 0; it < 2000; it++) {
        randombytes_buf(words, sizeof words);
        for (size_t i = 0; i < 64; i++)
            if (randombytes_uniform(8) == 0) words[i] |= 0x7f800000u;
            else if (randombytes_uniform(2)) words[i] &= ~0x40000000u; /* surely finite */
        size_t off = randombytes_uniform(4), n = randombytes_uniform(41);
        uint8_t raw[64 * 4 + 4];
        memcpy(raw + off, words, n * 4);
        int naive = 1;
        for (size_t i = 0; i < n; i++) {
            float x;
            memcpy(&x, raw + off + 4 * i, 4);
            naive &= isfinite(x) != 0;
        }
        float aligned[64];
        memcpy(aligned, raw + off, n * 4);
        cr_assert_eq(wire_all_finite(aligned, n), naive, "it %d", it);
    }
    cr_assert(wire_all_finite(NULL, 0));
}

Test(wire, l2norm) {
    float v[7] = {3, 4, 0, 0, 0, 0, 12};
    cr_assert_float_eq(wire_l2norm(v, 2), 5.0, 1e-12);
    cr_assert_float_eq(wire_l2norm(v, 7), 13.0, 1e-12);
    cr_assert_eq(wire_l2norm(v, 0), 0.0);
    float big[1000];
    double ref = 0;
    for (size_t i = 0; i < 1000; i++) big[i] = (float)i * 1e-3f - 0.4f, ref += (double)big[i] * big[i];
    cr_assert_float_eq(wire_l2norm(big, 1000), sqrt(ref), 1e-9);
}

/* The norm of a received frame (any alignment, any length, across the 1024-float chunks and
 * the 16 lanes) against a long-double reference. */
Test(wire, l2norm_bytes_matches_a_reference_at_any_offset) {
    enum { N = 3001 };
    static float v[N];
    static unsigned char raw[N * 4 + 8];
    uint32_t x = 12345;
    for (size_t i = 0; i < N; i++) {
        x = x * 1664525u + 1013904223u;
        v[i] = (float)((double)x / 4294967296.0 - 0.5) * (i % 7 == 0 ? 1e3f : 1e-2f);
    }
    size_t lens[] = {0, 1, 15, 16, 17, 1023, 1024, 1025, 2048 + 33, N};
    for (size_t off = 0; off < 4; off++)
        for (size_t t = 0; t < sizeof lens / sizeof *lens; t++) {
            size_t n = lens[t];
            memcpy(raw + off, v, n * 4);
            long double ref = 0;
            for (size_t i = 0; i < n; i++) ref += (long double)v[i] * v[i];
            double got = wire_l2norm_bytes(raw + off, n);
            cr_assert_float_eq(got, (double)sqrtl(ref), 1e-12 * (double)sqrtl(ref) + 1e-300, "n %zu off %zu", n, off);
        }
}
