/* upload.c — sending an update under the coordinator's flow control (coordinator/grants.c).
 *
 * A task with upload_granted lets the update go as soon as it is ready. Otherwise the client
 * keeps the update, sends UploadReady, and sends the Update on the UploadGrant. The held
 * update is sealed only then: sealing takes the next sequence number, and the heartbeats
 * sent while waiting have taken higher ones than a message sealed earlier would carry. */
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "log.h"
#include "util.h"

struct client_upload {
    uint64_t round;
    uint8_t model_digest[WIRE_DIGEST_BYTES]; /* of the task it answers */
    uint8_t *body;                           /* the packed Update */
    size_t body_len;
    float *data;                             /* the frames, one after the other */
    wire_frame_t frames[WIRE_MAX_TENSORS];
    size_t n_frames;
};

void client_upload_drop(client_t *c) {
    if (!c->upload) return;
    free(c->upload->body);
    free(c->upload->data);
    free(c->upload);
    c->upload = NULL;
}

static int s_send_ready(client_t *c) {
    Concord__UploadReady r = CONCORD__UPLOAD_READY__INIT;
    r.round = c->upload->round;
    int rc = client_send(c, CONCORD__MSG_TYPE__MSG_UPLOAD_READY, r.round, &r.base, NULL, 0);
    if (rc == 0)
        cc_log_info("upload_ready", "round=%llu action=\"waiting for the coordinator's grant\"", (unsigned long long)r.round);
    return rc;
}

static int s_send_update(client_t *c, uint64_t round, const ProtobufCMessage *u, const wire_frame_t *frames, size_t n) {
    int rc = client_send(c, CONCORD__MSG_TYPE__MSG_UPDATE, round, u, frames, n);
    /* One line per update sent: with update_acked / nack it accounts for every update. */
    if (rc == 0) cc_log_info("update_sent", "round=%llu tensors=%zu", (unsigned long long)round, n);
    return rc;
}

/* Keeps a copy of the update until the grant. */
static void s_hold(client_t *c, const Concord__Update *u, const wire_frame_t *frames, size_t n) {
    client_upload_drop(c);
    struct client_upload *h = cc_xcalloc(1, sizeof *h);
    size_t floats = 0;
    for (size_t i = 0; i < n; i++) floats += frames[i].n;
    h->round = u->round;
    memcpy(h->model_digest, u->base_digest.data, WIRE_DIGEST_BYTES);
    h->body_len = protobuf_c_message_get_packed_size(&u->base);
    h->body = cc_xmalloc(h->body_len ? h->body_len : 1);
    protobuf_c_message_pack(&u->base, h->body);
    h->data = cc_xalloc_floats(floats ? floats : 1);
    float *at = h->data;
    for (size_t i = 0; i < n; i++) {
        memcpy(at, frames[i].data, frames[i].n * sizeof(float));
        h->frames[i] = (wire_frame_t){at, frames[i].n};
        at += frames[i].n;
    }
    h->n_frames = n;
    c->upload = h;
}

int client_upload(client_t *c, const Concord__Update *u, const wire_frame_t *frames, size_t n, int granted) {
    if (granted) return s_send_update(c, u->round, &u->base, frames, n);
    s_hold(c, u, frames, n);
    return s_send_ready(c);
}

void client_upload_granted(client_t *c, uint64_t round) {
    if (!c->upload || c->upload->round != round) {
        cc_log_warn("upload_grant_unexpected", "round=%llu reason=\"no update held for this round\"",
                    (unsigned long long)round);
        return;
    }
    Concord__Update *u = concord__update__unpack(NULL, c->upload->body_len, c->upload->body);
    if (u) s_send_update(c, round, &u->base, c->upload->frames, c->upload->n_frames);
    else cc_log_error("upload_failed", "round=%llu reason=\"held update does not decode\"", (unsigned long long)round);
    concord__update__free_unpacked(u, NULL);
    client_upload_drop(c);
}

int client_upload_held_for(client_t *c, const Concord__Task *t) {
    if (!c->upload) return 0;
    if (t->phase == 0 && t->round == c->upload->round && t->model_digest.len == WIRE_DIGEST_BYTES &&
        memcmp(t->model_digest.data, c->upload->model_digest, WIRE_DIGEST_BYTES) == 0) {
        s_send_ready(c); /* the coordinator sent the task again: it no longer has our request */
        return 1;
    }
    client_upload_drop(c); /* a newer task: that update is stale */
    return 0;
}
