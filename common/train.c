/* train.c — see train.h. */
#include "train.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

train_config_t train_config_default(void) {
    train_config_t c;
    memset(&c, 0, sizeof c);
    c.epochs = 10;
    c.batch = 32;
    c.optim = optim_config_default();
    c.seed = 1;
    return c;
}

/* Scratch buffers of one training run. */
typedef struct {
    float *xb;          /* (B, n_inputs) gathered batch */
    int32_t *yb;        /* (B) */
    float *probs;       /* (B, C) */
    float *dlogits;     /* (B, C) */
    float *reg;         /* (n_params) regulariser gradient, or NULL */
    float *class_grads; /* (C, n_params) for TRAIN_PCN_COMPONENTS, or NULL */
    float *scratch;     /* (n_params) for PCN */
    int *start, *count; /* (C) class blocks of the batch */
    uint32_t *order;    /* (n) epoch order */
    uint32_t *rows;     /* (B) class-sorted copy of a batch's rows */
} s_work_t;

static void s_work_init(s_work_t *w, const model_t *m, const train_config_t *cfg, size_t n) {
    int B = cfg->batch, C = m->spec.n_classes;
    size_t P = m->n_params;
    memset(w, 0, sizeof *w);
    w->xb = cc_xalloc_floats((size_t)B * m->spec.n_inputs);
    w->yb = cc_xmalloc((size_t)B * sizeof(int32_t));
    w->probs = cc_xalloc_floats((size_t)B * C);
    w->dlogits = cc_xalloc_floats((size_t)B * C);
    if (cfg->penalty || cfg->pcn != TRAIN_PCN_OFF) w->reg = cc_xalloc_floats(P);
    if (cfg->pcn == TRAIN_PCN_COMPONENTS) w->class_grads = cc_xalloc_floats((size_t)C * P);
    if (cfg->pcn != TRAIN_PCN_OFF) w->scratch = cc_xalloc_floats(P);
    w->start = cc_xmalloc((size_t)C * sizeof(int));
    w->count = cc_xmalloc((size_t)C * sizeof(int));
    w->order = cc_xmalloc(n * sizeof(uint32_t));
    w->rows = cc_xmalloc((size_t)B * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) w->order[i] = (uint32_t)i;
}

static void s_work_free(s_work_t *w) {
    free(w->xb), free(w->yb), free(w->probs), free(w->dlogits), free(w->reg);
    free(w->class_grads), free(w->scratch), free(w->start), free(w->count), free(w->order);
    free(w->rows);
}

/* Copies rows[0..B) of ds into the batch buffers. */
static void s_gather(s_work_t *w, const dataset_t *ds, const uint32_t *rows, int B) {
    for (int i = 0; i < B; i++) {
        memcpy(w->xb + (size_t)i * ds->d, ds->x + (size_t)rows[i] * ds->d, ds->d * sizeof(float));
        w->yb[i] = ds->y[rows[i]];
    }
}

/* Regulariser gradient of this batch into w->reg (zeroed first); returns its value. */
static double s_penalty(model_t *m, const train_config_t *cfg, s_work_t *w, int B) {
    if (!w->reg) return 0.0;
    memset(w->reg, 0, m->n_params * sizeof(float));
    if (!cfg->penalty) return 0.0;
    return cfg->penalty(cfg->penalty_ctx, m, w->probs, w->yb, B, w->reg);
}

/* Adds λθ into g (SGD-style L2), used where the optimiser does not apply it itself. */
static void s_add_weight_decay(float *g, const float *p, size_t n, float wd) {
    if (wd == 0.0f) return;
    for (size_t i = 0; i < n; i++) g[i] += wd * p[i];
}

/* One plain step: mean loss, backward over the whole batch, optimiser. SGD without a
 * regulariser takes the fused path (backward straight into the momentum buffer). */
static double s_step_plain(model_t *m, const train_config_t *cfg, optim_t *opt, s_work_t *w, int B) {
    int C = m->spec.n_classes;
    const float *logits = model_forward(m, w->xb, B, 1);
    double loss = loss_softmax_xent(w->probs, w->dlogits, logits, w->yb, B, C, &cfg->loss, 1.0f);
    if (cfg->optim.kind == OPTIM_SGD && !cfg->penalty) {
        model_backward(m, w->dlogits, 0, B, optim_fused_begin(opt));
        optim_fused_finish(opt, m->params);
        return loss;
    }
    memset(m->grads, 0, m->n_params * sizeof(float));
    model_backward(m, w->dlogits, 0, B, m->grads);
    if (cfg->penalty) {
        loss += s_penalty(m, cfg, w, B);
        cblas_saxpy((int)m->n_params, 1.0f, w->reg, 1, m->grads, 1);
    }
    optim_step(opt, m->params, m->grads);
    return loss;
}

/* PCN-SGD step (client mode): the optimiser follows Σ_c ∇f_c/‖∇f_c‖ plus the regulariser. */
static double s_step_pcn(model_t *m, const train_config_t *cfg, optim_t *opt, s_work_t *w, int B) {
    int C = m->spec.n_classes;
    const float *logits = model_forward(m, w->xb, B, 1);
    /* scale B: dlogits of the summed loss f = Σ_i ℓ_i, as PCNGD defines f_c. */
    double loss = loss_softmax_xent(w->probs, w->dlogits, logits, w->yb, B, C, &cfg->loss, (float)B);
    pcn_direction(m, w->dlogits, w->start, w->count, m->grads, w->scratch);
    loss += s_penalty(m, cfg, w, B);
    cblas_saxpy((int)m->n_params, 1.0f, w->reg, 1, m->grads, 1);
    optim_step(opt, m->params, m->grads);
    return loss;
}

/* Decomposed SGD step (server mode): per-class parts of the mean-loss gradient. */
static double s_step_components(model_t *m, const train_config_t *cfg, sgd_decomp_t *dec,
                                s_work_t *w, int B) {
    int C = m->spec.n_classes;
    size_t P = m->n_params;
    const float *logits = model_forward(m, w->xb, B, 1);
    double loss = loss_softmax_xent(w->probs, w->dlogits, logits, w->yb, B, C, &cfg->loss, 1.0f);
    memset(w->class_grads, 0, (size_t)C * P * sizeof(float));
    for (int c = 0; c < C; c++)
        if (w->count[c])
            model_backward(m, w->dlogits + (size_t)w->start[c] * C, w->start[c], w->count[c],
                           w->class_grads + (size_t)c * P);
    loss += s_penalty(m, cfg, w, B);
    s_add_weight_decay(w->reg, m->params, P, cfg->optim.weight_decay);
    sgd_decomp_step(dec, m->params, w->class_grads, w->reg);
    return loss;
}

void train_evaluate(model_t *m, const dataset_t *ds, double *loss, double *accuracy, float *probs_out) {
    int C = m->spec.n_classes;
    float *probs = probs_out ? probs_out : cc_xalloc_floats(ds->n * (size_t)C);
    model_predict(m, ds->x, ds->n, probs);
    double total = 0.0;
    size_t correct = 0;
    for (size_t i = 0; i < ds->n; i++) {
        const float *p = probs + i * (size_t)C;
        int best = 0;
        for (int c = 1; c < C; c++)
            if (p[c] > p[best]) best = c;
        correct += best == ds->y[i];
        total -= log(fmax((double)p[ds->y[i]], 1e-12));
    }
    if (loss) *loss = ds->n ? total / (double)ds->n : NAN;
    if (accuracy) *accuracy = ds->n ? (double)correct / (double)ds->n : NAN;
    if (!probs_out) free(probs);
}

static int s_check_inputs(const model_t *m, const dataset_t *train, const dataset_t *val,
                          const train_config_t *cfg, const sgd_decomp_t *decomp, cc_err_t *err) {
    if (train->n == 0) return cc_err_set(err, CC_ERR_ARG, "train: the training set is empty");
    if ((int)train->d != m->spec.n_inputs || (val && (int)val->d != m->spec.n_inputs))
        return cc_err_set(err, CC_ERR_ARG, "train: data has %zu features, the model expects %d",
                          train->d, m->spec.n_inputs);
    if (train->n_classes > m->spec.n_classes || (val && val->n_classes > m->spec.n_classes))
        return cc_err_set(err, CC_ERR_ARG, "train: data has %d classes, the model %d",
                          train->n_classes, m->spec.n_classes);
    if (cfg->batch <= 0 || cfg->epochs < 0)
        return cc_err_set(err, CC_ERR_ARG, "train: batch must be positive and epochs non-negative");
    if (cfg->pcn == TRAIN_PCN_COMPONENTS && (!decomp || cfg->optim.kind != OPTIM_SGD))
        return cc_err_set(err, CC_ERR_ARG, "train: per-class components need SGD and a decomposition buffer");
    if (cfg->pcn == TRAIN_PCN_COMPONENTS && cfg->patience > 0)
        return cc_err_set(err, CC_ERR_ARG,
                          "train: early stopping would rewind parameters behind the per-class components");
    return 0;
}

int train_run(model_t *m, const dataset_t *train, const dataset_t *val, const train_config_t *cfg,
              sgd_decomp_t *decomp, train_report_t *rep, cc_err_t *err) {
    int rc = s_check_inputs(m, train, val, cfg, decomp, err);
    if (rc) return rc;
    memset(rep, 0, sizeof *rep);
    rep->best_val_loss = INFINITY;
    s_work_t w;
    s_work_init(&w, m, cfg, train->n);
    optim_t *opt = optim_new(&cfg->optim, m->n_params);
    float *best = val && cfg->patience > 0 ? cc_xalloc_floats(m->n_params) : NULL;
    cc_rng_t rng;
    cc_rng_seed(&rng, cfg->seed);
    int C = m->spec.n_classes, since_best = 0;
    for (int e = 1; e <= cfg->epochs; e++) {
        cc_rng_shuffle(&rng, w.order, train->n);
        double t0 = cc_now(), loss_sum = 0.0;
        int batches = 0;
        for (size_t r = 0; r < train->n; r += (size_t)cfg->batch) {
            int B = (int)(train->n - r < (size_t)cfg->batch ? train->n - r : (size_t)cfg->batch);
            uint32_t *rows = w.order + r;
            if (cfg->pcn != TRAIN_PCN_OFF) {
                /* Sort a copy: the epoch order itself must not depend on the mode. */
                memcpy(w.rows, rows, (size_t)B * sizeof *rows);
                rows = w.rows;
                pcn_sort_rows(rows, B, train->y, C, w.start, w.count);
            }
            s_gather(&w, train, rows, B);
            double l;
            if (cfg->pcn == TRAIN_PCN_CLIENT) l = s_step_pcn(m, cfg, opt, &w, B);
            else if (cfg->pcn == TRAIN_PCN_COMPONENTS) l = s_step_components(m, cfg, decomp, &w, B);
            else l = s_step_plain(m, cfg, opt, &w, B);
            loss_sum += l;
            batches++;
        }
        train_epoch_t ep = {.epoch = e, .epochs = cfg->epochs, .seconds = cc_now() - t0,
                            .train_loss = loss_sum / batches, .val_loss = NAN, .val_accuracy = NAN};
        rep->train_seconds += ep.seconds;
        rep->samples += train->n;
        rep->epochs_run = e;
        rep->final_train_loss = ep.train_loss;
        rep->best_epoch = e;
        if (val && val->n) {
            train_evaluate(m, val, &ep.val_loss, &ep.val_accuracy, NULL);
            ep.improved = ep.val_loss < rep->best_val_loss;
            if (ep.improved) {
                rep->best_val_loss = ep.val_loss;
                since_best = 0;
                if (best) memcpy(best, m->params, m->n_params * sizeof(float));
            } else {
                since_best++;
            }
        }
        if (cfg->on_epoch) cfg->on_epoch(&ep, cfg->on_epoch_ctx);
        if (best && since_best >= cfg->patience) break;
    }
    if (best && since_best > 0) {
        memcpy(m->params, best, m->n_params * sizeof(float));
        rep->best_epoch = rep->epochs_run - since_best;
    }
    rep->samples_per_sec = rep->train_seconds > 0 ? (double)rep->samples / rep->train_seconds : 0.0;
    free(best);
    optim_destroy(&opt);
    s_work_free(&w);
    return 0;
}
