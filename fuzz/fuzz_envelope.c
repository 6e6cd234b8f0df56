/* fuzz_envelope.c — libFuzzer target for wire_open (common/wire.h): the signed envelope
 * and its tensor frames, as a peer on the network would send them.
 *
 * Input (all lengths little-endian):
 *   u8 mode | u8 nf | nf x u16 frame length | u32 envelope length | envelope |
 *   frame 0 .. frame nf-1
 * nf is taken modulo 67 (so up to 66 frames: over WIRE_MAX_TENSORS too); every length is
 * cut to what the input still holds. The envelope comes before the frames and has its own
 * length, so a mutated frame length never shifts the envelope. The envelope and each frame
 * get a heap buffer of exactly their size (frames, with mode bit 2, starting at an odd
 * address, as ZeroMQ may hand them over), so a read past one is an ASan report.
 *
 * mode & 3 says what the harness repairs before calling wire_open, so that mutations are
 * not all stopped by the digest and signature checks:
 *   0  nothing: the bytes as they are (every decode and shape check);
 *   1  the envelope's tensor digests are replaced by those of the frames, re-packed;
 *   2  the decoded fields are sealed again (wire_seal) with the sender's key when the
 *      sender is enrolled: a valid envelope, so the checks after the signature run (the
 *      finiteness scan) and the body is decoded as its type says, as the daemons do;
 *   3  as 2, signed with the other enrolled key: everything valid but the signature.
 * Modes 2 and 3 cut each frame to whole floats (wire_seal takes floats).
 *
 * The enrolment is fixed (fuzz_common.h keys, loaded by enrolment_load from a file). The
 * point is no crash, hang or leak on any input; what wire_open accepts is not checked,
 * except that it returns 0 only with every output field filled. */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

#include "concord.pb-c.h"
#include "identity.h"
#include "msg.h"
#include "wire.h"

#define S_MAX_FRAMES 66

static enrolment_t *s_enrolment;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char text[512], hex[2 * WIRE_PK_BYTES + 1];
    size_t n = 0;
    for (int i = 0; i < FUZZ_N_KEYS; i++) {
        const fuzz_key_t *k = fuzz_key(i);
        sodium_bin2hex(hex, sizeof hex, k->pk, WIRE_PK_BYTES);
        n += (size_t)snprintf(text + n, sizeof text - n, "%s %s\n", k->id, hex);
    }
    cc_err_t err = {0};
    if (enrolment_load(fuzz_memfile(0, text, n), &s_enrolment, &err) != 0) {
        fprintf(stderr, "fuzz_envelope: enrolment: %s\n", err.msg);
        abort();
    }
    return 0;
}

/* Decodes the body by its type, as the daemons do after wire_open (the common parts). */
static void s_decode_body(const wire_in_t *in, const size_t *frame_bytes) {
    switch (in->type) {
    case CONCORD__MSG_TYPE__MSG_HELLO: {
        Concord__Hello *m = concord__hello__unpack(NULL, in->body_len, in->body);
        if (m) concord__hello__free_unpacked(m, NULL);
        break;
    }
    case CONCORD__MSG_TYPE__MSG_WELCOME: {
        Concord__Welcome *m = concord__welcome__unpack(NULL, in->body_len, in->body);
        if (!m) break;
        model_spec_t spec;
        cc_err_t err = {0};
        if (m->model) (void)!msg_spec_from_proto(m->model, &spec, &err);
        concord__welcome__free_unpacked(m, NULL);
        break;
    }
    case CONCORD__MSG_TYPE__MSG_TASK: {
        Concord__Task *m = concord__task__unpack(NULL, in->body_len, in->body);
        if (!m) break;
        for (size_t i = 0; i < m->n_tensors && i < in->n_frames; i++)
            (void)msg_tensor_is(m->tensors[i], "params", frame_bytes[i] / sizeof(float));
        concord__task__free_unpacked(m, NULL);
        break;
    }
    case CONCORD__MSG_TYPE__MSG_UPDATE: {
        Concord__Update *m = concord__update__unpack(NULL, in->body_len, in->body);
        if (!m) break;
        for (size_t i = 0; i < m->n_tensors && i < in->n_frames; i++)
            (void)msg_tensor_is(m->tensors[i], "delta", frame_bytes[i] / sizeof(float));
        concord__update__free_unpacked(m, NULL);
        break;
    }
    case CONCORD__MSG_TYPE__MSG_STATS: {
        Concord__Stats *m = concord__stats__unpack(NULL, in->body_len, in->body);
        if (!m) break;
        for (size_t i = 0; i < m->n_tensors && i < in->n_frames; i++)
            (void)msg_tensor_is(m->tensors[i], "align_g", frame_bytes[i] / sizeof(float));
        concord__stats__free_unpacked(m, NULL);
        break;
    }
    case CONCORD__MSG_TYPE__MSG_NACK: {
        Concord__Nack *m = concord__nack__unpack(NULL, in->body_len, in->body);
        if (m) concord__nack__free_unpacked(m, NULL);
        break;
    }
    default: {
        Concord__Heartbeat *m = concord__heartbeat__unpack(NULL, in->body_len, in->body);
        if (m) concord__heartbeat__free_unpacked(m, NULL);
        break;
    }
    }
}

/* Mode 1: the envelope with its digests replaced by the frames' (new buffer, or NULL). */
static uint8_t *s_fix_digests(const uint8_t *env, size_t env_len, const uint8_t *const *frames,
                              const size_t *frame_bytes, size_t nf, size_t *out_len) {
    Concord__Envelope *e = concord__envelope__unpack(NULL, env_len, env);
    if (!e) return NULL;
    static uint8_t digests[S_MAX_FRAMES][WIRE_DIGEST_BYTES];
    ProtobufCBinaryData bins[S_MAX_FRAMES];
    for (size_t i = 0; i < nf; i++) {
        wire_digest_bytes(digests[i], frames[i], frame_bytes[i]);
        bins[i].data = digests[i], bins[i].len = WIRE_DIGEST_BYTES;
    }
    size_t saved_n = e->n_tensor_digests;
    ProtobufCBinaryData *saved = e->tensor_digests;
    e->n_tensor_digests = nf, e->tensor_digests = bins;
    *out_len = concord__envelope__get_packed_size(e);
    uint8_t *out = malloc(*out_len ? *out_len : 1);
    if (!out) abort();
    concord__envelope__pack(e, out);
    e->n_tensor_digests = saved_n, e->tensor_digests = saved; /* freed with e */
    concord__envelope__free_unpacked(e, NULL);
    return out;
}

/* Modes 2 and 3: the decoded fields sealed again (new buffer, or NULL). */
static uint8_t *s_reseal(const uint8_t *env, size_t env_len, const uint8_t *const *frames,
                         const size_t *frame_bytes, size_t nf, int other_key, size_t *out_len) {
    Concord__Envelope *e = concord__envelope__unpack(NULL, env_len, env);
    if (!e) return NULL;
    wire_frame_t wf[S_MAX_FRAMES];
    float *copies[S_MAX_FRAMES] = {0};
    uint8_t *out = NULL;
    for (size_t i = 0; i < nf; i++) { /* wire_seal wants aligned floats */
        size_t n = frame_bytes[i] / sizeof(float);
        copies[i] = malloc(n * sizeof(float) + 1);
        if (!copies[i]) abort();
        if (n) memcpy(copies[i], frames[i], n * sizeof(float));
        wf[i].data = copies[i], wf[i].n = n;
    }
    int signer = FUZZ_KEY_HOSPITAL;
    for (int k = 0; k < FUZZ_N_KEYS; k++)
        if (e->sender_id && strcmp(e->sender_id, fuzz_key(k)->id) == 0) signer = k;
    if (other_key) signer = (signer + 1) % FUZZ_N_KEYS;
    wire_out_t msg = {.type = (uint32_t)e->type, .sender_id = e->sender_id, .seq = e->seq,
                      .round = e->round, .body = e->body.data, .body_len = e->body.len,
                      .frames = wf, .n_frames = nf};
    cc_err_t err = {0};
    if (wire_seal(&msg, fuzz_key(signer)->sk, &out, out_len, &err) != 0) out = NULL;
    for (size_t i = 0; i < nf; i++) free(copies[i]);
    concord__envelope__free_unpacked(e, NULL);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reader_t r = {data, size};
    unsigned mode = fuzz_u8(&r);
    size_t nf = fuzz_u8(&r) % (S_MAX_FRAMES + 1);
    size_t want[S_MAX_FRAMES], frame_bytes[S_MAX_FRAMES];
    uint8_t *blocks[S_MAX_FRAMES];
    const uint8_t *frames[S_MAX_FRAMES];
    for (size_t i = 0; i < nf; i++) want[i] = fuzz_u16(&r);
    size_t env_len;
    const uint8_t *env_in = fuzz_take(&r, fuzz_u32(&r), &env_len);
    size_t off = (mode & 4) ? 1 : 0;
    for (size_t i = 0; i < nf; i++) {
        const uint8_t *p = fuzz_take(&r, want[i], &frame_bytes[i]);
        if ((mode & 3) >= 2) frame_bytes[i] -= frame_bytes[i] % sizeof(float);
        blocks[i] = malloc(off + frame_bytes[i] + (frame_bytes[i] || off ? 0 : 1));
        if (!blocks[i]) abort();
        if (frame_bytes[i]) memcpy(blocks[i] + off, p, frame_bytes[i]);
        frames[i] = blocks[i] + off;
    }
    uint8_t *env = fuzz_dup(env_in, env_len), *fixed = NULL;
    size_t fixed_len = 0;
    if ((mode & 3) == 1) fixed = s_fix_digests(env, env_len, frames, frame_bytes, nf, &fixed_len);
    else if ((mode & 3) >= 2)
        fixed = s_reseal(env, env_len, frames, frame_bytes, nf, (mode & 3) == 3, &fixed_len);
    if (fixed) {
        free(env);
        env = fixed, env_len = fixed_len;
    }

    wire_in_t in;
    cc_err_t err = {0};
    int rc = wire_open(env, env_len, (const void *const *)frames, frame_bytes, nf,
                       enrolment_lookup, s_enrolment, &in, &err);
    fuzz_report("wire_open", rc, err.msg);
    if (rc == 0) {
        /* a verified envelope has a valid sender and exactly the frames it announced */
        if (!wire_id_valid(in.sender_id) || in.n_frames != nf || !in.envelope ||
            (in.body_len && !in.body))
            abort();
        for (size_t i = 0; i < nf; i++) (void)wire_l2norm_bytes(frames[i], frame_bytes[i] / 4);
        s_decode_body(&in, frame_bytes);
        wire_in_clear(&in);
    } else if (err.msg[0] == '\0' || in.envelope) {
        abort(); /* a failure always says why, and leaves nothing behind */
    }
    free(env);
    for (size_t i = 0; i < nf; i++) free(blocks[i]);
    return 0;
}
