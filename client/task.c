/* task.c — what a hospital does with a Task (DESIGN §4, §6):
 *   phase 1  head statistics g, D of its training data at θ_t (alignment targets);
 *   phase 2  H_k[ḡ] for the HGP variant;
 *   phase 0  score θ_t on its validation (and test) split, score the FedCE minus model,
 *            train locally (PCN-SGD, per-class components, alignment penalty as asked)
 *            and return the signed update Δ = θ_local − θ_t (or its per-class parts).
 * Training depends only on (θ_t, the data, the seed, the round, the client id and the
 * targets), never on the process's history, so a restarted client produces the same update
 * for the same task (that is what makes a resumed run bit-identical). */
#include <cblas.h>
#include <math.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "fedce.h"
#include "head_stats.h"
#include "log.h"
#include "metrics.h"
#include "msg.h"
#include "snapshot.h"
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

/* ---- the task's tensors, by name ------------------------------------------------------ */

typedef struct {
    const float *params, *std_mean, *std_std, *align_g, *align_D, *align_Hg, *minus;
    float *copies[8];
    int n_copies;
} s_tensors_t;

static void s_tensors_free(s_tensors_t *t) {
    for (int i = 0; i < t->n_copies; i++) free(t->copies[i]);
}

/* The floats of part i (copied when not 4-byte aligned: ZeroMQ places data anywhere). */
static const float *s_frame(transport_msg_t *msg, size_t i, s_tensors_t *t) {
    void *p = zmq_msg_data(&msg->parts[1 + i]);
    if (((uintptr_t)p & 3u) == 0) return p;
    float *copy = cc_xmalloc(zmq_msg_size(&msg->parts[1 + i]));
    memcpy(copy, p, zmq_msg_size(&msg->parts[1 + i]));
    t->copies[t->n_copies++] = copy;
    return copy;
}

static int s_tensors(client_t *c, const Concord__Task *task, transport_msg_t *msg, s_tensors_t *t) {
    size_t P = c->model->n_params, d = (size_t)c->model->spec.n_inputs, L = head_stats_len(c->model);
    memset(t, 0, sizeof *t);
    if (task->n_tensors != msg->n_parts - 1 || task->n_tensors > 7) return -1;
    for (size_t i = 0; i < task->n_tensors; i++) {
        const Concord__TensorInfo *ti = task->tensors[i];
        const float **slot = NULL;
        if (msg_tensor_is(ti, "params", P)) slot = &t->params;
        else if (msg_tensor_is(ti, "std_mean", d)) slot = &t->std_mean;
        else if (msg_tensor_is(ti, "std_std", d)) slot = &t->std_std;
        else if (msg_tensor_is(ti, "align_g", L)) slot = &t->align_g;
        else if (msg_tensor_is(ti, "align_D", L)) slot = &t->align_D;
        else if (msg_tensor_is(ti, "align_Hg", L)) slot = &t->align_Hg;
        else if (msg_tensor_is(ti, "minus_params", P)) slot = &t->minus;
        if (!slot || *slot) return -1;
        *slot = s_frame(msg, i, t);
    }
    return t->params && !t->std_mean == !t->std_std ? 0 : -1;
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

/* ---- evaluation -------------------------------------------------------------------------- */

static void s_evaluate(model_t *m, const dataset_t *ds, Concord__Metrics *out) {
    concord__metrics__init(out);
    if (!ds || ds->n == 0) return;
    float *probs = cc_xalloc_floats(ds->n * (size_t)m->spec.n_classes);
    cc_err_t err = {0};
    metrics_t mt = {0};
    model_predict(m, ds->x, ds->n, probs);
    if (metrics_compute(&mt, probs, ds->y, ds->n, m->spec.n_classes, &err) == 0) msg_metrics_to_proto(&mt, out);
    metrics_free(&mt);
    free(probs);
}

static double s_metric_value(const Concord__Metrics *m, const char *name) {
    if (name && strcmp(name, "accuracy") == 0) return m->accuracy;
    if (name && strcmp(name, "macro_f1") == 0) return m->macro_f1;
    if (name && strcmp(name, "loss") == 0) return -m->loss; /* higher is better */
    return m->balanced_accuracy;
}

/* ---- FedCE memory: θ_{t−1}, Δ̃_k and the score history, persisted ---------------------- */

static void s_fedce_path(const client_t *c, char *buf, size_t len) {
    snprintf(buf, len, "%s/fedce.snap", c->state_dir);
}

static void s_fedce_alloc(client_t *c) {
    if (c->prev_params) return;
    c->prev_params = cc_xalloc_floats(c->model->n_params);
    c->prev_delta = cc_xalloc_floats(c->model->n_params);
}

static void s_fedce_save(client_t *c) {
    char path[4096];
    s_fedce_path(c, path, sizeof path);
    snapshot_t *s = snapshot_new();
    json_t *meta = json_pack("{s:I, s:f, s:I}", "prev_round", (json_int_t)c->prev_round, "score_sum", c->score_sum,
                             "score_n", (json_int_t)c->score_n);
    char *text = json_dumps(meta, JSON_COMPACT | JSON_REAL_PRECISION(17));
    snapshot_put(s, "meta", text, strlen(text));
    snapshot_put(s, "prev_params", c->prev_params, c->model->n_params * sizeof(float));
    snapshot_put(s, "prev_delta", c->prev_delta, c->model->n_params * sizeof(float));
    cc_err_t err = {0};
    if (snapshot_write(s, path, &err)) cc_log_error("fedce_state_save_failed", "reason=\"%s\"", err.msg);
    free(text);
    json_decref(meta);
    snapshot_destroy(&s);
}

int client_fedce_load(client_t *c) {
    char path[4096];
    s_fedce_path(c, path, sizeof path);
    snapshot_t *s = NULL;
    cc_err_t err = {0};
    c->prev_round = -1;
    if (snapshot_read(path, &s, &err) != 0) return 1; /* none yet, or unreadable: start afresh */
    size_t mlen, plen, dlen, P = c->model->n_params;
    const char *meta = snapshot_get(s, "meta", &mlen);
    const void *pp = snapshot_get(s, "prev_params", &plen), *pd = snapshot_get(s, "prev_delta", &dlen);
    json_t *j = meta ? json_loadb(meta, mlen, 0, NULL) : NULL;
    if (j && pp && pd && plen == P * sizeof(float) && dlen == plen) {
        s_fedce_alloc(c);
        memcpy(c->prev_params, pp, plen);
        memcpy(c->prev_delta, pd, dlen);
        c->prev_round = (int64_t)json_integer_value(json_object_get(j, "prev_round"));
        c->score_sum = json_real_value(json_object_get(j, "score_sum"));
        c->score_n = (uint64_t)json_integer_value(json_object_get(j, "score_n"));
    }
    json_decref(j);
    snapshot_destroy(&s);
    return 0;
}

/* b_k of this round: score the minus model θ⁻_k (the federation's last step without this
 * client) on the validation split, when the coordinator used our update last round: the
 * θ⁻_k the task carries ([fedce] minus_model = coordinator), or else the one rebuilt from
 * our own θ_{t−1} and Δ̃_k of that round. */
static double s_data_score(client_t *c, const Concord__Task *t, const s_tensors_t *tt, Concord__Metrics *minus) {
    const Concord__TrainSettings *s = t->training;
    size_t P = c->model->n_params;
    int scored = 0;
    double score = 0.0;
    concord__metrics__init(minus);
    int own_prev = c->prev_round >= 0 && (uint64_t)c->prev_round == t->prev_round;
    /* A task of a round we already trained for (sent again after a reconnect or a restart of
     * either side) was scored then: its score is in the mean already and must not count twice. */
    int repeat = c->prev_round >= 0 && (uint64_t)c->prev_round == t->round;
    int have_prev = !repeat && (tt->minus || own_prev) && t->fedce_coef > 0.0 && t->fedce_coef < 1.0 && c->val &&
                    c->val->n;
    if (have_prev) {
        float *saved = cc_xalloc_floats(P);
        cc_err_t err = {0};
        memcpy(saved, c->model->params, P * sizeof(float));
        int rc = tt->minus ? (memcpy(c->model->params, tt->minus, P * sizeof(float)), 0)
                           : fedce_minus_model(c->model->params, c->prev_params, saved, c->prev_delta,
                                               t->fedce_coef, s->server_lr, P, &err);
        if (rc == 0) {
            s_evaluate(c->model, c->val, minus);
            score = s_metric_value(minus, s->fedce_metric);
            scored = 1;
        } else {
            cc_log_warn("fedce_minus_failed", "reason=\"%s\"", err.msg);
        }
        memcpy(c->model->params, saved, P * sizeof(float));
        free(saved);
    }
    fedce_mean_t hist = {.sum = c->score_sum, .n = c->score_n};
    double b = 1.0;
    cc_err_t err = {0};
    if (fedce_client_score(&b, &hist, scored, score, &err) == 0) c->score_sum = hist.sum, c->score_n = hist.n;
    cc_log_info("fedce_score", "round=%llu scored=%d minus_from=%s score=%.4f b=%.4f", (unsigned long long)t->round,
                scored, !scored ? "none" : tt->minus ? "coordinator" : "client", score, b);
    return b;
}

/* ---- phases 1 and 2: head statistics --------------------------------------------------- */

static int s_send_stats(client_t *c, const Concord__Task *t, const char *const *names, const float *const *data,
                        size_t n) {
    Concord__Stats st = CONCORD__STATS__INIT;
    Concord__TensorInfo ti[2] = {CONCORD__TENSOR_INFO__INIT, CONCORD__TENSOR_INFO__INIT};
    Concord__TensorInfo *tp[2] = {&ti[0], &ti[1]};
    uint32_t len = (uint32_t)head_stats_len(c->model);
    wire_frame_t frames[2];
    for (size_t i = 0; i < n; i++) {
        ti[i].name = (char *)names[i], ti[i].n_shape = 1, ti[i].shape = &len;
        frames[i] = (wire_frame_t){data[i], len};
    }
    st.round = t->round, st.phase = t->phase, st.n_samples = c->train->n, st.n_tensors = n, st.tensors = tp;
    return client_send(c, CONCORD__MSG_TYPE__MSG_STATS, t->round, &st.base, frames, n);
}

/* Returns 0 when the statistics were sent. */
static int s_stats_phase(client_t *c, const Concord__Task *t, const s_tensors_t *tt) {
    size_t L = head_stats_len(c->model);
    float *a = cc_xalloc_floats(L), *b = cc_xalloc_floats(L);
    int rc = -1;
    if (t->phase == 1) {
        head_stats_compute(c->model, c->train, a, b);
        const char *names[2] = {"g", "D"};
        const float *data[2] = {a, b};
        rc = s_send_stats(c, t, names, data, 2);
    } else if (tt->align_g) {
        head_stats_hvp(c->model, c->train, tt->align_g, a);
        const char *names[1] = {"Hg"};
        const float *data[1] = {a};
        rc = s_send_stats(c, t, names, data, 1);
    } else {
        cc_log_warn("task_invalid", "reason=\"HGP phase without align_g\"");
    }
    if (rc == 0) cc_log_info("stats_sent", "round=%llu phase=%u", (unsigned long long)t->round, t->phase);
    free(a), free(b);
    return rc;
}

/* ---- phase 0: local training --------------------------------------------------------------- */

/* Seed of this client's training in this round: the federation seed, the round and the id. */
static uint64_t s_task_seed(uint64_t seed, uint64_t round, const char *id) {
    uint64_t h = seed ^ 0x9e3779b97f4a7c15ULL ^ (round * 0xbf58476d1ce4e5b9ULL);
    for (const char *p = id; *p; p++) h = (h ^ (uint8_t)*p) * 0x100000001b3ULL;
    return h;
}

static train_config_t s_train_config(const client_t *c, const Concord__Task *t) {
    const Concord__TrainSettings *s = t->training;
    train_config_t cfg = train_config_default();
    if (!s) return cfg;
    cfg.epochs = (int)s->epochs;
    cfg.batch = s->batch ? (int)s->batch : 32;
    cfg.optim.kind = s->optimizer && strcmp(s->optimizer, "adam") == 0 ? OPTIM_ADAM : OPTIM_SGD;
    cfg.optim.lr = s->lr;
    cfg.optim.momentum = s->momentum;
    cfg.optim.weight_decay = s->weight_decay;
    cfg.seed = s_task_seed(s->seed, t->round, c->self.id);
    if (s->per_class && strcmp(s->per_class, "client") == 0) cfg.pcn = TRAIN_PCN_CLIENT;
    if (s->per_class && (strcmp(s->per_class, "server") == 0 || strcmp(s->per_class, "federation") == 0))
        cfg.pcn = TRAIN_PCN_COMPONENTS;
    return cfg;
}

/* Trains; on success the model holds θ_local and, in components mode, dec the per-class
 * parts. pen (may have variants 0) is the alignment regulariser. */
static int s_train(client_t *c, const Concord__Task *t, align_penalty_t *pen, sgd_decomp_t *dec, double *seconds) {
    train_config_t cfg = s_train_config(c, t);
    if (pen->variants) cfg.penalty = align_penalty_train, cfg.penalty_ctx = pen;
    cc_rng_seed(&c->model->rng, cfg.seed ^ 0xd1b54a32d192ed03ULL);
    train_report_t rep;
    cc_err_t err = {0};
    if (train_run(c->model, c->train, NULL, &cfg, dec, &rep, &err) != 0) {
        cc_log_error("training_failed", "round=%llu reason=\"%s\"", (unsigned long long)t->round, err.msg);
        return -1;
    }
    *seconds = rep.train_seconds;
    cc_log_info("trained", "round=%llu epochs=%d seconds=%.3f samples_per_s=%.0f loss=%.4f", (unsigned long long)t->round,
                rep.epochs_run, rep.train_seconds, rep.samples_per_sec, rep.final_train_loss);
    return 0;
}

typedef struct {
    Concord__Metrics val, test, minus;
    double data_score, seconds;
    int has_score;
} s_report_t;

static int s_send_update(client_t *c, const Concord__Task *t, const wire_frame_t *frames, const char *const *names,
                         size_t n_frames, s_report_t *r) {
    Concord__Update u = CONCORD__UPDATE__INIT;
    Concord__TensorInfo ti[WIRE_MAX_TENSORS], *tp[WIRE_MAX_TENSORS];
    uint32_t shape = (uint32_t)c->model->n_params;
    size_t C = (size_t)c->model->spec.n_classes;
    size_t *counts = cc_xcalloc(C, sizeof *counts);
    uint64_t *counts64 = cc_xcalloc(C, sizeof *counts64);
    dataset_class_counts(c->train, counts);
    for (size_t k = 0; k < C; k++) counts64[k] = counts[k];
    for (size_t i = 0; i < n_frames; i++) {
        concord__tensor_info__init(&ti[i]);
        ti[i].name = (char *)names[i], ti[i].n_shape = 1, ti[i].shape = &shape;
        tp[i] = &ti[i];
    }
    u.round = t->round;
    u.base_digest = t->model_digest;
    u.n_samples = c->train->n;
    u.n_class_counts = C, u.class_counts = counts64;
    u.n_tensors = n_frames, u.tensors = tp;
    u.val_metrics = r->val.n ? &r->val : NULL;
    u.test_metrics = r->test.n ? &r->test : NULL;
    u.minus_metrics = r->minus.n ? &r->minus : NULL;
    u.train_seconds = r->seconds;
    u.has_data_score = r->has_score;
    u.data_score = r->data_score;
    int rc = client_upload(c, &u, frames, n_frames, t->upload_granted);
    free(counts);
    free(counts64);
    return rc;
}

/* Test mode --test-byzantine: corrupt a vector the way a compromised hospital might, keeping
 * the message correctly signed: −v, 100·v, or Gaussian noise of v's norm. */
static void s_byzantine(const client_t *c, float *v, size_t n, uint64_t round) {
    if (c->byzantine == 1) cblas_sscal((int)n, -1.0f, v, 1);
    else if (c->byzantine == 2) cblas_sscal((int)n, 100.0f, v, 1);
    else if (c->byzantine == 3) {
        double norm = wire_l2norm(v, n);
        cc_rng_t rng;
        cc_rng_seed(&rng, round * 7919u + 17u);
        for (size_t i = 0; i < n; i++) v[i] = (float)(cc_rng_normal(&rng) * norm / sqrt((double)n));
    }
}

/* Sends the update of a finished local training: Δ, or in components mode the per-class
 * parts Δ_c and Δ_reg; keeps Δ̃_k (as the coordinator will use it) for next round's FedCE.
 * Returns 0 when the update was sent. */
static int s_finish_training(client_t *c, const Concord__Task *t, const float *theta_t, sgd_decomp_t *dec,
                              s_report_t *r) {
    size_t P = c->model->n_params;
    int C = c->model->spec.n_classes;
    s_fedce_alloc(c);
    memcpy(c->prev_params, theta_t, P * sizeof(float));
    if (!dec) {
        float *delta = c->prev_delta;
        memcpy(delta, c->model->params, P * sizeof(float));
        cblas_saxpy((int)P, -1.0f, theta_t, 1, delta, 1); /* Δ = θ_local − θ_t */
    } else {
        size_t *counts = cc_xcalloc((size_t)C, sizeof *counts);
        uint8_t *present = cc_xcalloc((size_t)C, 1);
        dataset_class_counts(c->train, counts);
        for (int k = 0; k < C; k++) present[k] = counts[k] > 0;
        pcn_server_normalize(c->prev_delta, dec->d_class, dec->d_reg, present, C, P);
        free(counts), free(present);
    }
    c->prev_round = (int64_t)t->round;
    c->last_round = t->round;
    s_fedce_save(c); /* before the send: a crash after it still finds Δ̃_k next round */
    client_state_save(c);
    wire_frame_t frames[WIRE_MAX_TENSORS];
    char names[WIRE_MAX_TENSORS][24];
    const char *np[WIRE_MAX_TENSORS];
    size_t n = 0;
    if (!dec) {
        frames[n] = (wire_frame_t){c->prev_delta, P}, snprintf(names[n], 24, "delta"), n++;
    } else {
        for (int k = 0; k < C; k++)
            frames[n] = (wire_frame_t){dec->d_class + (size_t)k * P, P}, snprintf(names[n], 24, "delta_c%d", k), n++;
        frames[n] = (wire_frame_t){dec->d_reg, P}, snprintf(names[n], 24, "delta_reg"), n++;
    }
    for (size_t i = 0; i < n; i++) np[i] = names[i];
    if (c->byzantine) {
        cc_log_warn("byzantine", "round=%llu mode=%d reason=\"--test-byzantine\"", (unsigned long long)t->round, c->byzantine);
        for (size_t i = 0; i < n; i++) s_byzantine(c, (float *)frames[i].data, P, t->round);
    }
    return s_send_update(c, t, frames, np, n, r);
}

/* Returns 0 when the update was sent. */
static int s_train_phase(client_t *c, const Concord__Task *t, const s_tensors_t *tt) {
    size_t P = c->model->n_params;
    const Concord__TrainSettings *s = t->training;
    s_report_t r;
    memset(&r, 0, sizeof r);
    s_evaluate(c->model, c->val, &r.val);
    s_evaluate(c->model, c->test, &r.test);
    if (s && s->fedce) r.data_score = s_data_score(c, t, tt, &r.minus), r.has_score = 1;
    align_penalty_t pen = {.variants = s ? s->align_variants : 0, .alpha = s ? s->align_alpha : 0,
                           .beta = s ? s->align_beta : 0, .g_target = tt->align_g, .D_target = tt->align_D,
                           .Hg_target = tt->align_Hg, .propagate = s && s->align_propagate,
                           .propagate_eps = s ? s->align_propagate_eps : 0};
    /* Without targets (the statistics phase missed its quorum) a term cannot apply. */
    if (!pen.g_target) pen.variants &= ~ALIGN_GRADIENT;
    if (!pen.D_target) pen.variants &= ~ALIGN_HESS_DIAG;
    if (!pen.Hg_target) pen.variants &= ~ALIGN_HGP;
    if (pen.variants) pen.scratch = cc_xalloc_floats(head_stats_len(c->model));
    train_config_t cfg = s_train_config(c, t);
    sgd_decomp_t *dec = cfg.pcn == TRAIN_PCN_COMPONENTS
                            ? sgd_decomp_new(c->model->spec.n_classes, P, cfg.optim.lr, cfg.optim.momentum)
                            : NULL;
    float *theta_t = cc_xalloc_floats(P);
    memcpy(theta_t, c->model->params, P * sizeof(float));
    int rc = s_train(c, t, &pen, dec, &r.seconds) == 0 ? s_finish_training(c, t, theta_t, dec, &r) : -1;
    free(theta_t);
    free(pen.scratch);
    sgd_decomp_destroy(&dec);
    return rc;
}

/* Whether t is the task answered last in this session (same round, phase and model). */
static int s_already_answered(const client_t *c, const Concord__Task *t) {
    return c->answered_valid && c->answered_round == t->round && c->answered_phase == t->phase &&
           t->model_digest.len == WIRE_DIGEST_BYTES &&
           memcmp(c->answered_digest, t->model_digest.data, WIRE_DIGEST_BYTES) == 0;
}

static void s_mark_answered(client_t *c, const Concord__Task *t) {
    c->answered_valid = 1;
    c->answered_round = t->round;
    c->answered_phase = t->phase;
    memcpy(c->answered_digest, t->model_digest.data, WIRE_DIGEST_BYTES);
}

void client_handle_task(client_t *c, const Concord__Task *t, transport_msg_t *msg) {
    s_tensors_t tt;
    size_t P = c->model->n_params;
    if (s_already_answered(c, t)) {
        /* Our answer is queued on this same connection: training again would only make a
         * duplicate the coordinator refuses, at the cost of a whole local training. */
        cc_log_info("task_duplicate", "round=%llu phase=%u action=\"already answered in this session\"",
                    (unsigned long long)t->round, t->phase);
        return;
    }
    if (client_upload_held_for(c, t)) return; /* trained already: waiting for the grant */
    if (s_tensors(c, t, msg, &tt) != 0) {
        cc_log_warn("task_invalid", "reason=\"unexpected or missing tensors\"");
        s_tensors_free(&tt);
        return;
    }
    uint8_t digest[WIRE_DIGEST_BYTES];
    wire_digest_floats(digest, tt.params, P);
    if (t->model_digest.len != WIRE_DIGEST_BYTES || memcmp(digest, t->model_digest.data, WIRE_DIGEST_BYTES) != 0) {
        cc_log_warn("task_invalid", "reason=\"model digest does not match the parameters\"");
    } else if (tt.std_mean && s_apply_standardizer(c, tt.std_mean, tt.std_std, (size_t)c->model->spec.n_inputs)) {
        cc_log_error("task_failed", "reason=\"standardisation\"");
    } else {
        cc_log_info("task", "round=%llu phase=%u params=%zu", (unsigned long long)t->round, t->phase, P);
        if (c->test_stop_at_round >= 0 && (uint64_t)c->test_stop_at_round <= t->round && t->phase == 0) {
            cc_log_warn("test_stop", "round=%llu reason=\"--test-stop-at-round\"", (unsigned long long)t->round);
            c->test_stop_at_round = -1;
            raise(SIGSTOP);
        }
        memcpy(c->model->params, tt.params, P * sizeof(float));
        int rc = t->phase == 0 ? s_train_phase(c, t, &tt) : s_stats_phase(c, t, &tt);
        if (rc == 0) s_mark_answered(c, t);
    }
    c->last_recv = cc_now(); /* time spent working is not silence from the coordinator */
    s_tensors_free(&tt);
}
