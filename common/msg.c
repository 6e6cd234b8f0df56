/* msg.c — see msg.h. */
#include "msg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "transport.h"

static int s_send(void *sock, const char *peer, const identity_t *self, uint64_t *seq, uint32_t type,
                  uint64_t round, const ProtobufCMessage *body, const wire_frame_t *frames, size_t n_frames,
                  const uint8_t *const *frame_digests, zmq_free_fn *release, void *hint, cc_err_t *err) {
    size_t body_len = protobuf_c_message_get_packed_size(body);
    uint8_t *packed = cc_xmalloc(body_len ? body_len : 1);
    protobuf_c_message_pack(body, packed);
    wire_out_t out = {.type = type, .sender_id = self->id, .seq = ++*seq, .round = round,
                      .body = packed, .body_len = body_len, .frames = frames, .n_frames = n_frames,
                      .frame_digests = frame_digests};
    uint8_t *env = NULL;
    size_t env_len = 0;
    int rc = wire_seal(&out, self->sk, &env, &env_len, err);
    free(packed);
    if (rc) {
        for (size_t i = 0; release && i < n_frames; i++) release((void *)frames[i].data, hint);
        return -1;
    }
    rc = release ? transport_send_zc(sock, peer, env, env_len, frames, n_frames, 0, release, hint)
                 : transport_send(sock, peer, env, env_len, frames, n_frames, 0);
    int e = errno;
    free(env);
    if (rc) {
        cc_err_set(err, CC_ERR_IO, "send to %s failed: %s", peer ? peer : "coordinator", zmq_strerror(e));
        return -1;
    }
    return 0;
}

int msg_send(void *sock, const char *peer, const identity_t *self, uint64_t *seq, uint32_t type,
             uint64_t round, const ProtobufCMessage *body, const wire_frame_t *frames,
             size_t n_frames, cc_err_t *err) {
    return s_send(sock, peer, self, seq, type, round, body, frames, n_frames, NULL, NULL, NULL, err);
}

int msg_send_zc(void *sock, const char *peer, const identity_t *self, uint64_t *seq, uint32_t type,
                uint64_t round, const ProtobufCMessage *body, const wire_frame_t *frames, size_t n_frames,
                const uint8_t *const *frame_digests, zmq_free_fn *release, void *hint, cc_err_t *err) {
    return s_send(sock, peer, self, seq, type, round, body, frames, n_frames, frame_digests, release, hint, err);
}

void msg_spec_to_proto(const model_spec_t *spec, Concord__ModelSpec *out, char *arch_buf,
                       size_t arch_len) {
    concord__model_spec__init(out);
    model_spec_arch(spec, arch_buf, arch_len);
    out->arch = arch_buf;
    out->n_inputs = (uint32_t)spec->n_inputs;
    out->n_classes = (uint32_t)spec->n_classes;
    out->in_c = (uint32_t)spec->in_c;
    out->in_h = (uint32_t)spec->in_h;
    out->in_w = (uint32_t)spec->in_w;
    out->activation = (char *)model_act_name(spec->act);
    out->dropout = spec->dropout;
}

int msg_spec_from_proto(const Concord__ModelSpec *in, model_spec_t *spec, cc_err_t *err) {
    memset(spec, 0, sizeof *spec);
    if (!in || !in->arch || !in->activation)
        return cc_err_set(err, CC_ERR_FORMAT, "model spec missing");
    if (in->n_inputs > (1u << 26) || in->n_classes > (1u << 16) || in->in_c > 4096 ||
        in->in_h > 65536 || in->in_w > 65536)
        return cc_err_set(err, CC_ERR_FORMAT, "model spec sizes out of range");
    spec->n_inputs = (int)in->n_inputs;
    spec->n_classes = (int)in->n_classes;
    spec->in_c = (int)in->in_c, spec->in_h = (int)in->in_h, spec->in_w = (int)in->in_w;
    spec->dropout = in->dropout;
    if (model_act_parse(in->activation, &spec->act))
        return cc_err_set(err, CC_ERR_FORMAT, "unknown activation \"%s\"", in->activation);
    int rc = model_spec_parse(in->arch, spec, err);
    return rc ? rc : model_spec_validate(spec, err);
}

void msg_metrics_to_proto(const metrics_t *m, Concord__Metrics *out) {
    concord__metrics__init(out);
    out->n = m->n;
    out->loss = m->loss;
    out->accuracy = m->accuracy;
    out->balanced_accuracy = m->balanced_accuracy;
    out->macro_f1 = m->macro_f1;
}

int msg_tensor_is(const Concord__TensorInfo *t, const char *name, size_t n) {
    if (!t || !t->name || strcmp(t->name, name) != 0) return 0;
    size_t total = 1;
    for (size_t i = 0; i < t->n_shape; i++) {
        if (t->shape[i] == 0 || total > SIZE_MAX / t->shape[i]) return 0;
        total *= t->shape[i];
    }
    return t->n_shape > 0 && total == n;
}
