/* session.c — the client's connection to the coordinator: connect with a pinned CURVE key,
 * Hello, heartbeats, reconnect with exponential backoff, verification of every message
 * (signature by the pinned coordinator key, strictly increasing seq), and the persisted
 * sequence-number block that keeps seq increasing across restarts. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "fileio.h"
#include "log.h"
#include "msg.h"

#define SEQ_BLOCK 1000000ULL

static const char *s_state_names[] = {"disconnected", "hello_sent", "ready", "finished"};

void client_set_state(client_t *c, client_state_t s) {
    if (c->state != s) cc_log_info("session", "from=%s to=%s", s_state_names[c->state], s_state_names[s]);
    c->state = s;
}

/* ---- persisted state: seq block and last round ---------------------------------------- */

static void s_state_path(const client_t *c, char *buf, size_t len) {
    snprintf(buf, len, "%s/client.state", c->state_dir);
}

int client_state_save(client_t *c) {
    char path[4096];
    s_state_path(c, path, sizeof path);
    json_t *j = json_pack("{s:s, s:I, s:I}", "id", c->self.id, "seq_reserved", (json_int_t)c->seq_reserved,
                          "last_round", (json_int_t)c->last_round);
    char *text = json_dumps(j, JSON_COMPACT);
    cc_err_t err = {0};
    int rc = fileio_write_atomic(path, text, strlen(text), &err);
    if (rc) cc_log_error("state_save_failed", "reason=\"%s\"", err.msg);
    free(text);
    json_decref(j);
    return rc;
}

int client_state_load(client_t *c) {
    char path[4096], *text = NULL;
    size_t len;
    cc_err_t err = {0};
    s_state_path(c, path, sizeof path);
    if (fileio_read_all(path, 1 << 20, &text, &len, &err) != 0) return 1; /* fresh */
    json_t *j = json_loadb(text, len, 0, NULL);
    free(text);
    if (!j) {
        cc_log_error("state_corrupt", "path=%s action=\"refusing to start: seq numbers could repeat\"", path);
        return -1;
    }
    c->seq_reserved = (uint64_t)json_integer_value(json_object_get(j, "seq_reserved"));
    c->last_round = (uint64_t)json_integer_value(json_object_get(j, "last_round"));
    json_decref(j);
    c->seq = c->seq_reserved; /* everything below may have been used before the restart */
    cc_log_info("state_loaded", "seq=%llu last_round=%llu", (unsigned long long)c->seq, (unsigned long long)c->last_round);
    return 0;
}

/* Reserves the next block of sequence numbers on disk before any is used. */
static int s_reserve_seq(client_t *c) {
    if (c->seq + 1 < c->seq_reserved) return 0;
    c->seq_reserved = c->seq + SEQ_BLOCK;
    return client_state_save(c);
}

int client_send(client_t *c, uint32_t type, uint64_t round, const ProtobufCMessage *body,
                const wire_frame_t *frames, size_t n_frames) {
    cc_err_t err = {0};
    if (s_reserve_seq(c)) return -1;
    if (msg_send(c->dealer, NULL, &c->self, &c->seq, type, round, body, frames, n_frames, &err)) {
        cc_log_warn("send_failed", "reason=\"%s\"", err.msg);
        return -1;
    }
    return 0;
}

/* ---- connection ------------------------------------------------------------------------ */

static void s_send_hello(client_t *c) {
    Concord__Hello h = CONCORD__HELLO__INIT;
    Concord__FeatureStats fs = CONCORD__FEATURE_STATS__INIT;
    size_t C = (size_t)c->train->n_classes;
    uint64_t *counts = cc_xcalloc(C + 1, sizeof *counts);
    size_t *tmp = cc_xcalloc(C + 1, sizeof *tmp);
    dataset_class_counts(c->train, tmp);
    for (size_t k = 0; k < C; k++) counts[k] = tmp[k];
    feature_stats_t *st = feature_stats_new(c->train->d);
    feature_stats_add(st, c->train);
    fs.n = st->n;
    fs.n_sum = fs.n_sumsq = c->train->d;
    fs.sum = st->sum;
    fs.sumsq = st->sumsq;
    h.protocol_version = WIRE_VERSION;
    h.n_train = c->train->n;
    h.n_val = c->val ? c->val->n : 0;
    h.n_test = c->test ? c->test->n : 0;
    h.n_class_counts = C;
    h.class_counts = counts;
    h.n_features = (uint32_t)c->train->d;
    h.stats = c->std_applied ? NULL : &fs; /* raw statistics only */
    /* A new session (or a restarted coordinator) may have lost our answers: redo them. */
    c->answered_valid = 0;
    client_send(c, CONCORD__MSG_TYPE__MSG_HELLO, 0, &h.base, NULL, 0);
    feature_stats_destroy(&st);
    free(counts);
    free(tmp);
}

int client_connect(client_t *c) {
    c->dealer = zmq_socket(c->zctx, ZMQ_DEALER);
    int linger = 0, hwm = 100;
    zmq_setsockopt(c->dealer, ZMQ_ROUTING_ID, c->self.id, strlen(c->self.id));
    zmq_setsockopt(c->dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->dealer, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (c->curve && transport_curve_client(c->dealer, &c->self, c->coordinator.curve_public)) {
        cc_log_error("curve_failed", "reason=\"%s\"", zmq_strerror(zmq_errno()));
        return -1;
    }
    if (zmq_connect(c->dealer, c->endpoint) != 0) {
        cc_log_error("connect_failed", "endpoint=%s reason=\"%s\"", c->endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    c->coord_seq = 0;
    c->warmups_sent = 0;
    c->last_recv = c->last_heartbeat = cc_now();
    s_send_hello(c);
    client_set_state(c, CLIENT_HELLO_SENT);
    cc_log_info("connecting", "endpoint=%s", c->endpoint);
    return 0;
}

void client_disconnect(client_t *c, const char *why) {
    if (c->dealer) zmq_close(c->dealer);
    c->dealer = NULL;
    c->next_connect = cc_now() + c->backoff;
    cc_log_warn("disconnected", "reason=\"%s\" retry_in_s=%.2f", why, c->backoff);
    c->backoff = fmin(c->backoff * 2.0, c->reconnect_max_s);
    client_set_state(c, CLIENT_DISCONNECTED);
}

void client_tick(client_t *c) {
    double now = cc_now();
    if (c->state == CLIENT_DISCONNECTED) {
        if (now >= c->next_connect && client_connect(c) != 0) client_disconnect(c, "connect failed");
        return;
    }
    if (c->state == CLIENT_FINISHED) return;
    /* Also the only retry of a Hello without Welcome: a fresh socket, never a second Hello on
     * this one. ZeroMQ keeps a Hello queued until the connection is up, so Hellos repeated
     * during an outage would all arrive together when the link returns, and each would fetch
     * the round's task again (tests/netem_slow.sh). Closing the socket drops what it queued. */
    if (now - c->last_recv > 3.0 * c->heartbeat_s) {
        client_disconnect(c, "no answer from the coordinator for 3 heartbeats");
        return;
    }
    if (c->state == CLIENT_READY && now - c->last_heartbeat >= c->heartbeat_s) {
        Concord__Heartbeat hb = CONCORD__HEARTBEAT__INIT;
        hb.round = c->last_round;
        hb.state = "ready";
        client_send(c, CONCORD__MSG_TYPE__MSG_HEARTBEAT, c->last_round, &hb.base, NULL, 0);
        c->last_heartbeat = now;
    }
}

/* ---- incoming messages ----------------------------------------------------------------- */

static int s_lookup_coordinator(void *ctx, const char *sender_id, uint8_t pk[WIRE_PK_BYTES]) {
    const client_t *c = ctx;
    if (strcmp(sender_id, c->coordinator.id) != 0) return -1;
    memcpy(pk, c->coordinator.pk, WIRE_PK_BYTES);
    return 0;
}

static void s_handle_welcome(client_t *c, const wire_in_t *in) {
    Concord__Welcome *w = concord__welcome__unpack(NULL, in->body_len, in->body);
    model_spec_t spec;
    cc_err_t err = {0};
    if (!w || msg_spec_from_proto(w->model, &spec, &err) != 0) {
        cc_log_error("welcome_invalid", "reason=\"%s\"", w ? err.msg : "does not decode");
        if (w) concord__welcome__free_unpacked(w, NULL);
        return;
    }
    snprintf(c->standardize, sizeof c->standardize, "%s", w->standardize ? w->standardize : "none");
    concord__welcome__free_unpacked(w, NULL);
    if (!c->model || memcmp(&c->model->spec, &spec, sizeof spec) != 0) {
        model_destroy(&c->model);
        c->model = model_new(&spec, &err);
        if (!c->model) {
            cc_log_error("model_invalid", "reason=\"%s\"", err.msg);
            return;
        }
        free(c->prev_params), free(c->prev_delta);
        c->prev_params = c->prev_delta = NULL;
        client_fedce_load(c); /* FedCE memory of a previous run of this client, if any */
    }
    if (strcmp(c->standardize, "local") == 0 && !c->std_applied) {
        standardizer_t *st = standardizer_fit(c->train);
        standardizer_apply(st, c->train);
        if (c->val) standardizer_apply(st, c->val);
        if (c->test) standardizer_apply(st, c->test);
        standardizer_destroy(&st);
        c->std_applied = 1;
    }
    c->backoff = c->reconnect_min_s;
    client_set_state(c, CLIENT_READY);
}

static void s_handle_reject(client_t *c, const wire_in_t *in) {
    Concord__Reject *r = concord__reject__unpack(NULL, in->body_len, in->body);
    cc_log_error("rejected_by_coordinator", "reason=\"%s\" action=\"fix the data or the model, then restart\"",
                 r && r->reason ? r->reason : "?");
    fprintf(stderr, "concord-client: the coordinator refused this hospital: %s\n", r && r->reason ? r->reason : "?");
    if (r) concord__reject__free_unpacked(r, NULL);
    c->exit_code = 1;
    c->stop = 1;
}

static void s_handle_nack(client_t *c, const wire_in_t *in) {
    Concord__Nack *n = concord__nack__unpack(NULL, in->body_len, in->body);
    const char *reason = n && n->reason ? n->reason : "?";
    cc_log_warn("nack", "round=%llu reason=\"%s\"", (unsigned long long)(n ? n->round : 0), reason);
    if (strstr(reason, "unknown sender")) { /* our key is not (or no longer) enrolled */
        cc_log_error("revoked", "reason=\"%s\" action=\"stopping: ask the federation operator to enrol this "
                     "hospital's public key\"", reason);
        c->exit_code = 1;
        c->stop = 1;
    } else if (strstr(reason, "unknown session")) { /* the coordinator restarted: introduce ourselves */
        s_send_hello(c);
        client_set_state(c, CLIENT_HELLO_SENT);
    }
    if (n) concord__nack__free_unpacked(n, NULL);
}

/* Tells the coordinator the task arrived, before the (long) local work: it paces task sends
 * on these confirmations (coordinator/phases.c). */
static void s_confirm_task(client_t *c, uint64_t round) {
    Concord__Heartbeat hb = CONCORD__HEARTBEAT__INIT;
    hb.round = round;
    hb.state = "task_received";
    client_send(c, CONCORD__MSG_TYPE__MSG_HEARTBEAT, round, &hb.base, NULL, 0);
}

static void s_dispatch(client_t *c, const wire_in_t *in, transport_msg_t *msg) {
    switch (in->type) {
    case CONCORD__MSG_TYPE__MSG_WELCOME: s_handle_welcome(c, in); break;
    case CONCORD__MSG_TYPE__MSG_REJECT: s_handle_reject(c, in); break;
    case CONCORD__MSG_TYPE__MSG_NACK: s_handle_nack(c, in); break;
    case CONCORD__MSG_TYPE__MSG_ACK: cc_log_info("update_acked", "round=%llu", (unsigned long long)in->round); break;
    case CONCORD__MSG_TYPE__MSG_HEARTBEAT: break;
    case CONCORD__MSG_TYPE__MSG_UPLOAD_GRANT: client_upload_granted(c, in->round); break;
    case CONCORD__MSG_TYPE__MSG_TASK: {
        Concord__Task *t = concord__task__unpack(NULL, in->body_len, in->body);
        if (!t) cc_log_warn("task_invalid", "reason=\"does not decode\"");
        else if (c->state != CLIENT_READY || !c->model) cc_log_warn("task_ignored", "reason=\"no Welcome yet\"");
        else s_confirm_task(c, t->round), client_handle_task(c, t, msg);
        if (t) concord__task__free_unpacked(t, NULL);
        break;
    }
    case CONCORD__MSG_TYPE__MSG_DONE:
        cc_log_info("federation_done", "last_round=%llu", (unsigned long long)c->last_round);
        client_set_state(c, CLIENT_FINISHED);
        c->stop = 1;
        break;
    default: cc_log_warn("unexpected_message", "type=%u", in->type); break;
    }
}

void client_handle_message(client_t *c, transport_msg_t *msg) {
    if (msg->warmup_parts) { /* a queue warm-up: it did its work; answer it (common/transport.h) */
        transport_warmup_turn(c->dealer, NULL, &c->warmups_sent);
        return;
    }
    wire_in_t in;
    cc_err_t err = {0};
    memset(&in, 0, sizeof in);
    if (transport_open(msg, s_lookup_coordinator, c, &in, &err) != 0) {
        cc_log_warn("message_refused", "reason=\"%s\"", err.msg);
        wire_in_clear(&in);
        return;
    }
    if (in.seq <= c->coord_seq) {
        cc_log_warn("message_refused", "reason=\"replayed coordinator message (seq %llu <= %llu)\"",
                    (unsigned long long)in.seq, (unsigned long long)c->coord_seq);
        wire_in_clear(&in);
        return;
    }
    c->coord_seq = in.seq;
    c->last_recv = cc_now();
    s_dispatch(c, &in, msg);
    wire_in_clear(&in);
}
