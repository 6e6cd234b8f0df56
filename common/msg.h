/* msg.h — typed Concord messages on top of wire + transport, shared by both daemons:
 * pack a body, seal it with the sender's identity and the next sequence number, send it;
 * convert model specs and metrics between the engine's structs and their protobufs. */
#ifndef CONCORD_MSG_H
#define CONCORD_MSG_H

#include <stddef.h>
#include <stdint.h>

#include <zmq.h>

#include "concord.pb-c.h"
#include "identity.h"
#include "metrics.h"
#include "model.h"
#include "wire.h"

/* Packs body, seals (seq = ++*seq), sends [peer] envelope frames... on sock.
 * Returns 0, or -1 with err set (send failures leave errno). */
int msg_send(void *sock, const char *peer, const identity_t *self, uint64_t *seq, uint32_t type,
             uint64_t round, const ProtobufCMessage *body, const wire_frame_t *frames,
             size_t n_frames, cc_err_t *err) CC_WUR;

/* Same, with the tensor frames sent without copying: release(data, hint) is called once per
 * frame when ZeroMQ is done with it (also on failure), see transport_send_zc.
 * frame_digests (may be NULL) gives frames' known digests, see wire_out_t. */
int msg_send_zc(void *sock, const char *peer, const identity_t *self, uint64_t *seq, uint32_t type,
                uint64_t round, const ProtobufCMessage *body, const wire_frame_t *frames, size_t n_frames,
                const uint8_t *const *frame_digests, zmq_free_fn *release, void *hint, cc_err_t *err) CC_WUR;

/* ModelSpec <-> model_spec_t. to_proto fills a caller-owned struct whose strings point into
 * arch_buf (at least 128 bytes). from_proto validates (err says what is wrong). */
void msg_spec_to_proto(const model_spec_t *spec, Concord__ModelSpec *out, char *arch_buf,
                       size_t arch_len);
int msg_spec_from_proto(const Concord__ModelSpec *in, model_spec_t *spec, cc_err_t *err) CC_WUR;

/* Metrics summary (n, loss, accuracy, balanced accuracy, macro-F1) <-> protobuf. */
void msg_metrics_to_proto(const metrics_t *m, Concord__Metrics *out);

/* A tensor announced in a body: checks name and element count. */
int msg_tensor_is(const Concord__TensorInfo *t, const char *name, size_t n);

#endif
