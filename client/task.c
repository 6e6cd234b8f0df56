/* task.c — what a hospital does with a Task: check the model it was sent, score it on the
 * local validation (and test) split, train locally, and return the signed update
 * Δ = θ_local − θ_t. Training depends only on (θ_t, the data, the seed, the round and the
 * client id), never on the process's history, so a restarted client produces the same
 * update for the same task (that is what makes a resumed run bit-identical). */
#include <cblas.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "log.h"
#include "metrics.h"
#include "msg.h"
#include "train.h"

int client_load_data(client_t *c, cc_err_t *err) {
    dataset_destroy(&c->train), dataset_destroy(&c->val), dataset_destroy(&c->test);
    data_load_opts_t lo = {.labels_path = c->labels_path, .label_column = c->label_column};
    int rc = dataset_load(c->data_path, &lo, &c->train, err);
    if (!rc && c->val_frac > 0) rc = dataset_split_off_stratified(c->train, c->val_frac, 1, &c->val, err);
    if (!rc && c->test_path) {
        data_load_opts_t to = {.labels_path = c->test_labels_path, .label_column = c->label_column,
                               .n_classes = c->train->n_classes};
        rc = dataset_load(c->test_path, &to, &c->test, err);
        if (!rc && c->test->d != c->train->d)
            rc = cc_err_set(err, CC_ERR_FORMAT, "%s: %zu features, the training data has %zu", c->test_path,
                            c->test->d, c->train->d);
    }
    c->std_applied = 0;
    return rc;
}

/* The frame of tensor i as floats (copied when unaligned; *copy owns the copy). */
static const float *s_frame(transport_msg_t *msg, size_t i, float **copy) {
    void *p = zmq_msg_data(&msg->parts[1 + i]);
    *copy = NULL;
    if (((uintptr_t)p & 3u) == 0) return p;
    *copy = cc_xmalloc(zmq_msg_size(&msg->parts[1 + i]));
    memcpy(*copy, p, zmq_msg_size(&msg->parts[1 + i]));
    return *copy;
}

/* Applies the federation's standardiser (sent with every task) once; a different one than
 * already applied means the raw data must be read again. */
static int s_apply_standardizer(client_t *c, const float *mean, const float *sd, size_t d) {
    uint8_t digest[WIRE_DIGEST_BYTES];
    float *both = cc_xmalloc(2 * d * sizeof(float));
    memcpy(both, mean, d * sizeof(float));
    memcpy(both + d, sd, d * sizeof(float));
    wire_digest_floats(digest, both, 2 * d);
    free(both);
    if (c->std_applied == 2 && memcmp(digest, c->std_digest, sizeof digest) == 0) return 0;
    cc_err_t err = {0};
    if (c->std_applied && client_load_data(c, &err) != 0) {
        cc_log_error("data_reload_failed", "reason=\"%s\"", err.msg);
        return -1;
    }
    standardizer_t *st = standardizer_new(d);
    memcpy(st->mean, mean, d * sizeof(float));
    memcpy(st->std, sd, d * sizeof(float));
    standardizer_apply(st, c->train);
    if (c->val) standardizer_apply(st, c->val);
    if (c->test) standardizer_apply(st, c->test);
    standardizer_destroy(&st);
    memcpy(c->std_digest, digest, sizeof digest);
    c->std_applied = 2;
    return 0;
}

/* Validates the task's tensors; returns the params frame index or -1. */
static int s_check_task(client_t *c, const Concord__Task *t, transport_msg_t *msg, int *std_index) {
    size_t P = c->model->n_params, d = (size_t)c->model->spec.n_inputs;
    *std_index = -1;
    if (t->n_tensors != msg->n_parts - 1 || t->n_tensors < 1 || !msg_tensor_is(t->tensors[0], "params", P)) {
        cc_log_warn("task_invalid", "reason=\"expected params of %zu floats\"", P);
        return -1;
    }
    if (t->n_tensors == 3 && msg_tensor_is(t->tensors[1], "std_mean", d) && msg_tensor_is(t->tensors[2], "std_std", d))
        *std_index = 1;
    else if (t->n_tensors != 1) {
        cc_log_warn("task_invalid", "reason=\"unexpected tensors\"");
        return -1;
    }
    return 0;
}

static void s_evaluate(model_t *m, const dataset_t *ds, Concord__Metrics *out, metrics_t *mt) {
    concord__metrics__init(out);
    if (!ds || ds->n == 0) return;
    float *probs = cc_xalloc_floats(ds->n * (size_t)m->spec.n_classes);
    cc_err_t err = {0};
    model_predict(m, ds->x, ds->n, probs);
    if (metrics_compute(mt, probs, ds->y, ds->n, m->spec.n_classes, &err) == 0) msg_metrics_to_proto(mt, out);
    free(probs);
}

/* Seed of this client's training in this round: the federation seed, the round and the id. */
static uint64_t s_task_seed(uint64_t seed, uint64_t round, const char *id) {
    uint64_t h = seed ^ 0x9e3779b97f4a7c15ULL ^ (round * 0xbf58476d1ce4e5b9ULL);
    for (const char *p = id; *p; p++) h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
    return h;
}

static int s_train(client_t *c, const Concord__Task *t, double *seconds) {
    const Concord__TrainSettings *s = t->training;
    train_config_t cfg = train_config_default();
    if (s) {
        cfg.epochs = (int)s->epochs;
        cfg.batch = s->batch ? (int)s->batch : 32;
        cfg.optim.kind = s->optimizer && strcmp(s->optimizer, "adam") == 0 ? OPTIM_ADAM : OPTIM_SGD;
        cfg.optim.lr = s->lr;
        cfg.optim.momentum = s->momentum;
        cfg.optim.weight_decay = s->weight_decay;
        cfg.seed = s_task_seed(s->seed, t->round, c->self.id);
    }
    cc_rng_seed(&c->model->rng, cfg.seed ^ 0xd1b54a32d192ed03ULL);
    train_report_t rep;
    cc_err_t err = {0};
    if (train_run(c->model, c->train, NULL, &cfg, NULL, &rep, &err) != 0) {
        cc_log_error("training_failed", "round=%llu reason=\"%s\"", (unsigned long long)t->round, err.msg);
        return -1;
    }
    *seconds = rep.train_seconds;
    cc_log_info("trained", "round=%llu epochs=%d seconds=%.3f samples_per_s=%.0f loss=%.4f", (unsigned long long)t->round,
                rep.epochs_run, rep.train_seconds, rep.samples_per_sec, rep.final_train_loss);
    return 0;
}

static void s_send_update(client_t *c, const Concord__Task *t, const float *delta, Concord__Metrics *val,
                          Concord__Metrics *test, double seconds) {
    Concord__Update u = CONCORD__UPDATE__INIT;
    Concord__TensorInfo ti = CONCORD__TENSOR_INFO__INIT;
    Concord__TensorInfo *tp = &ti;
    uint32_t shape = (uint32_t)c->model->n_params;
    size_t C = (size_t)c->model->spec.n_classes;
    size_t *counts = cc_xcalloc(C, sizeof *counts);
    uint64_t *counts64 = cc_xcalloc(C, sizeof *counts64);
    dataset_class_counts(c->train, counts);
    for (size_t k = 0; k < C; k++) counts64[k] = counts[k];
    ti.name = "delta", ti.n_shape = 1, ti.shape = &shape;
    u.round = t->round;
    u.base_digest = t->model_digest;
    u.n_samples = c->train->n;
    u.n_class_counts = C, u.class_counts = counts64;
    u.n_tensors = 1, u.tensors = &tp;
    u.val_metrics = val->n ? val : NULL;
    u.test_metrics = test->n ? test : NULL;
    u.train_seconds = seconds;
    wire_frame_t frame = {delta, c->model->n_params};
    client_send(c, CONCORD__MSG_TYPE__MSG_UPDATE, t->round, &u.base, &frame, 1);
    free(counts);
    free(counts64);
}

void client_handle_task(client_t *c, const Concord__Task *t, transport_msg_t *msg) {
    int std_index;
    if (s_check_task(c, t, msg, &std_index)) return;
    size_t P = c->model->n_params, d = (size_t)c->model->spec.n_inputs;
    float *pcopy = NULL, *mcopy = NULL, *scopy = NULL;
    const float *params = s_frame(msg, 0, &pcopy);
    uint8_t digest[WIRE_DIGEST_BYTES];
    wire_digest_floats(digest, params, P);
    if (t->model_digest.len != WIRE_DIGEST_BYTES || memcmp(digest, t->model_digest.data, WIRE_DIGEST_BYTES) != 0) {
        cc_log_warn("task_invalid", "reason=\"model digest does not match the parameters\"");
        free(pcopy);
        return;
    }
    if (std_index > 0 && s_apply_standardizer(c, s_frame(msg, 1, &mcopy), s_frame(msg, 2, &scopy), d) != 0) {
        free(pcopy), free(mcopy), free(scopy);
        return;
    }
    cc_log_info("task", "round=%llu params=%zu", (unsigned long long)t->round, P);
    if (c->test_stop_at_round >= 0 && (uint64_t)c->test_stop_at_round == t->round) {
        cc_log_warn("test_stop", "round=%llu reason=\"--test-stop-at-round\"", (unsigned long long)t->round);
        c->test_stop_at_round = -1;
        raise(SIGSTOP);
    }
    memcpy(c->model->params, params, P * sizeof(float));
    metrics_t mv = {0}, mt = {0};
    Concord__Metrics val, test;
    s_evaluate(c->model, c->val, &val, &mv);
    s_evaluate(c->model, c->test, &test, &mt);
    double seconds = 0;
    if (s_train(c, t, &seconds) == 0) {
        float *delta = cc_xalloc_floats(P);
        memcpy(delta, c->model->params, P * sizeof(float));
        cblas_saxpy((int)P, -1.0f, params, 1, delta, 1); /* Δ = θ_local − θ_t */
        s_send_update(c, t, delta, &val, &test, seconds);
        free(delta);
        c->last_round = t->round;
        client_state_save(c);
    }
    c->last_recv = cc_now(); /* time spent training is not silence from the coordinator */
    metrics_free(&mv), metrics_free(&mt);
    free(pcopy), free(mcopy), free(scopy);
}
