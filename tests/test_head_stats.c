/* test_head_stats.c — §6.2 at the model level: the federated targets (Σ_k π_k g_k,
 * Σ_k π_k D_k, Σ_k π_k H_k[v]) equal the same statistics on the pooled data of all
 * hospitals, and the training regulariser's gradient matches central finite differences
 * of its value through the whole model. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "align.h"
#include "head_stats.h"
#include "layers.h"
#include "train.h"

static model_t *s_model(void) {
    model_spec_t spec = {.n_inputs = 5, .n_classes = 3, .act = ACT_TANH};
    cc_err_t err = {0};
    cr_assert_eq(model_spec_parse("mlp:6", &spec, &err), 0);
    model_t *m = model_new(&spec, &err);
    model_init(m, 5);
    return m;
}

static dataset_t *s_data(size_t n, uint64_t seed) {
    dataset_t *ds = dataset_new(n, 5, 3);
    cc_rng_t rng;
    cc_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        ds->y[i] = (int32_t)cc_rng_below(&rng, 3);
        for (int j = 0; j < 5; j++) ds->x[i * 5 + j] = (float)cc_rng_normal(&rng) + (j == ds->y[i]);
    }
    return ds;
}

Test(head_stats, federated_targets_equal_pooled_statistics) {
    model_t *m = s_model();
    dataset_t *pooled = s_data(700, 1); /* > one 256-row chunk per shard */
    size_t cuts[4] = {0, 300, 390, 700}, len = head_stats_len(m);
    float *g = malloc(len * 4), *D = malloc(len * 4), *Hv = malloc(len * 4), *v = malloc(len * 4);
    float *gk[3], *Dk[3], *Hk[3];
    double pi[3];
    for (size_t i = 0; i < len; i++) v[i] = (float)sin((double)i);
    for (int k = 0; k < 3; k++) {
        uint32_t *idx = malloc((cuts[k + 1] - cuts[k]) * sizeof *idx);
        for (size_t r = cuts[k]; r < cuts[k + 1]; r++) idx[r - cuts[k]] = (uint32_t)r;
        dataset_t *shard = dataset_subset(pooled, idx, cuts[k + 1] - cuts[k]);
        gk[k] = malloc(len * 4), Dk[k] = malloc(len * 4), Hk[k] = malloc(len * 4);
        head_stats_compute(m, shard, gk[k], Dk[k]);
        head_stats_hvp(m, shard, v, Hk[k]);
        pi[k] = (double)shard->n / (double)pooled->n;
        dataset_destroy(&shard);
        free(idx);
    }
    float *tg = malloc(len * 4), *tD = malloc(len * 4), *tH = malloc(len * 4);
    align_targets_combine(tg, (const float *const *)gk, pi, 3, len);
    align_targets_combine(tD, (const float *const *)Dk, pi, 3, len);
    align_targets_combine(tH, (const float *const *)Hk, pi, 3, len);
    head_stats_compute(m, pooled, g, D);
    head_stats_hvp(m, pooled, v, Hv);
    double eg = align_gap(tg, g, len), eD = align_gap(tD, D, len), eH = align_gap(tH, Hv, len);
    cr_log_info("federated vs pooled: |g| gap %.2e, |D| gap %.2e, |Hv| gap %.2e (tol 1e-5)", eg, eD, eH);
    cr_expect_lt(eg, 1e-5);
    cr_expect_lt(eD, 1e-5);
    cr_expect_lt(eH, 1e-5);
    cr_expect_gt(align_gap(gk[0], g, len), 1e-3, "a single hospital's gradient differs from the pooled one");
    for (int k = 0; k < 3; k++) free(gk[k]), free(Dk[k]), free(Hk[k]);
    free(g), free(D), free(Hv), free(v), free(tg), free(tD), free(tH);
    dataset_destroy(&pooled);
    model_destroy(&m);
}

/* Value of the penalty at m's current parameters on the batch (evaluation forward). */
static double s_value(model_t *m, align_penalty_t *p, const float *x, const int32_t *y, int B, float *grad) {
    float probs[64 * 3];
    const float *logits = model_forward(m, x, B, 0);
    softmax_forward(probs, logits, B, 3);
    memset(grad, 0, m->n_params * sizeof(float));
    return align_penalty_train(p, m, probs, y, B, grad);
}

Test(head_stats, penalty_gradient_matches_finite_differences_through_the_model) {
    model_t *m = s_model();
    dataset_t *ds = s_data(64, 2);
    size_t len = head_stats_len(m);
    float *gt = malloc(len * 4), *Dt = malloc(len * 4), *Ht = malloc(len * 4), *scratch = malloc(len * 4);
    for (size_t i = 0; i < len; i++) gt[i] = 0.05f * (float)cos((double)i), Dt[i] = 0.01f, Ht[i] = 0.0f;
    align_penalty_t pen = {.variants = ALIGN_GRADIENT | ALIGN_HESS_DIAG | ALIGN_HGP, .alpha = 0.5f, .beta = 2.0f,
                           .g_target = gt, .D_target = Dt, .Hg_target = Ht, .scratch = scratch};
    float *grad = malloc(m->n_params * 4), *tmp = malloc(m->n_params * 4);
    s_value(m, &pen, ds->x, ds->y, (int)ds->n, grad);
    model_head_t h;
    model_head(m, &h);
    double worst = 0, scale = 0;
    for (size_t k = 0; k < m->n_params; k++) {
        float saved = m->params[k];
        m->params[k] = saved + 1e-2f;
        double up = s_value(m, &pen, ds->x, ds->y, (int)ds->n, tmp);
        m->params[k] = saved - 1e-2f;
        double dn = s_value(m, &pen, ds->x, ds->y, (int)ds->n, tmp);
        m->params[k] = saved;
        double fd = (up - dn) / 2e-2;
        int in_head = k >= h.w_off;
        /* Only the head is differentiated (DESIGN §6.2): feature-layer entries get 0. */
        if (in_head) worst = fmax(worst, fabs(fd - grad[k])), scale = fmax(scale, fabs(fd));
        else cr_expect_eq(grad[k], 0.0f);
    }
    cr_log_info("penalty gradient vs FD on the head: max diff %.2e, scale %.2e (tol 2%% of scale)", worst, scale);
    cr_expect_lt(worst, 0.02 * scale + 1e-6);
    cr_expect_gt(scale, 1e-4, "the penalty is not trivially flat");
    free(gt), free(Dt), free(Ht), free(scratch), free(grad), free(tmp);
    dataset_destroy(&ds);
    model_destroy(&m);
}

/* ---- propagation of R_g into the feature layers (DESIGN §6.2, optional) ---------------- */

enum { PB = 40, PC = 3, PD = 5 };

static model_t *s_deep_model(float dropout) {
    model_spec_t spec = {.n_inputs = PD, .n_classes = PC, .act = ACT_TANH, .dropout = dropout};
    cc_err_t err = {0};
    cr_assert_eq(model_spec_parse("mlp:7,6", &spec, &err), 0);
    model_t *m = model_new(&spec, &err);
    model_init(m, 9);
    return m;
}

/* Independent double-precision R_g = β‖g(θ) − ḡ‖² of an MLP of dense and tanh layers at
 * parameters theta (n_params): forward, softmax and head gradient g recomputed from scratch. */
static double ref_rg(const model_t *m, const double *theta, const float *x, const int32_t *y, int B,
                     const float *g_target, double beta) {
    enum { MAXW = 16 };
    int C = m->spec.n_classes, last = m->n_layers - 1, d = m->layers[last].in_size;
    double *g = calloc((size_t)C * (d + 1), sizeof *g);
    for (int i = 0; i < B; i++) {
        double a[MAXW], z[MAXW], p[MAXW];
        int width = m->spec.n_inputs;
        for (int j = 0; j < width; j++) a[j] = x[i * width + j];
        for (int li = 0; li < last; li++) {
            const layer_t *l = &m->layers[li];
            cr_assert(l->kind == LAYER_DENSE || l->kind == LAYER_ACT, "reference knows dense and tanh only");
            cr_assert_leq(l->out_size, MAXW);
            for (int o = 0; o < l->out_size; o++) {
                double s = 0.0;
                if (l->kind == LAYER_ACT) s = tanh(a[o]);
                else {
                    s = theta[l->b_off + (size_t)o];
                    for (int k = 0; k < l->in_size; k++) s += theta[l->w_off + (size_t)o * l->in_size + k] * a[k];
                }
                z[o] = s;
            }
            width = l->out_size;
            memcpy(a, z, (size_t)width * sizeof *a);
        }
        const layer_t *hd = &m->layers[last];
        double mx = -INFINITY, sum = 0.0;
        for (int c = 0; c < C; c++) {
            double s = theta[hd->b_off + (size_t)c];
            for (int k = 0; k < d; k++) s += theta[hd->w_off + (size_t)c * d + k] * a[k];
            p[c] = s, mx = fmax(mx, s);
        }
        for (int c = 0; c < C; c++) p[c] = exp(p[c] - mx), sum += p[c];
        for (int c = 0; c < C; c++) {
            double r = (p[c] / sum - (c == y[i])) / B;
            for (int k = 0; k < d; k++) g[c * (d + 1) + k] += r * a[k];
            g[c * (d + 1) + d] += r;
        }
    }
    double v = 0.0;
    for (int k = 0; k < C * (d + 1); k++) v += (g[k] - g_target[k]) * (g[k] - g_target[k]);
    free(g);
    return beta * v;
}

/* The product's penalty gradient (gradient variant) at m's parameters, into grad. */
static void s_rg_grad(model_t *m, int propagate, float eps, const float *gt, const dataset_t *ds, float *grad) {
    size_t len = head_stats_len(m);
    float *scratch = malloc(len * 4);
    align_penalty_t pen = {.variants = ALIGN_GRADIENT, .beta = 0.7f, .g_target = gt, .scratch = scratch,
                           .propagate = propagate, .propagate_eps = eps};
    s_value(m, &pen, ds->x, ds->y, (int)ds->n, grad);
    free(scratch);
}

static float *s_gtarget(const model_t *m) {
    size_t len = head_stats_len(m);
    float *gt = malloc(len * 4);
    for (size_t i = 0; i < len; i++) gt[i] = 0.05f * (float)cos((double)i);
    return gt;
}

/* Largest |got − ref| over the parameters [from, to), and the largest |ref| there. */
static void s_worst(const float *got, const double *ref, size_t from, size_t to, double *worst, double *scale) {
    *worst = 0.0, *scale = 0.0;
    for (size_t k = from; k < to; k++) *worst = fmax(*worst, fabs(got[k] - ref[k])), *scale = fmax(*scale, fabs(ref[k]));
}

/* The propagated gradient against central differences of R_g in double through every
 * parameter (h = 1e-6: truncation ~1e-12, rounding ~1e-10 relative), at m's parameters
 * times param_scale (larger weights: sharper softmax, larger truncation error). What the
 * product's own difference costs: truncation O(ε_rel²·|z|²) in the logits z, and float
 * rounding of the two gradients, ≈ 6e-8/ε_rel ≈ 6e-5 of their size, a few times over
 * through the layers. At the default ε_rel = 1e-3 both stay near 1e-4 of the gradient's
 * scale (measured: 1e-4 at scale 1, 5e-5 at scale 6; ε_rel = 1e-4 gives 1e-3, rounding,
 * ε_rel = 1e-1 at scale 6 gives 3e-2, truncation), so the tolerance is 1e-3 of the scale.
 * The head's entries are the exact analytic gradient (float only: 1e-4). */
static void s_check_propagation(float param_scale) {
    model_t *m = s_deep_model(0.0f);
    for (size_t k = 0; k < m->n_params; k++) m->params[k] *= param_scale;
    dataset_t *ds = s_data(PB, 4);
    float *gt = s_gtarget(m), *grad = malloc(m->n_params * 4);
    double *theta = malloc(m->n_params * sizeof *theta), *ref = malloc(m->n_params * sizeof *ref);
    for (size_t k = 0; k < m->n_params; k++) theta[k] = m->params[k];
    for (size_t k = 0; k < m->n_params; k++) {
        double saved = theta[k], h = 1e-6;
        theta[k] = saved + h;
        double up = ref_rg(m, theta, ds->x, ds->y, PB, gt, 0.7);
        theta[k] = saved - h;
        double dn = ref_rg(m, theta, ds->x, ds->y, PB, gt, 0.7);
        theta[k] = saved;
        ref[k] = (up - dn) / (2 * h);
    }
    model_head_t hd;
    model_head(m, &hd);
    double worst, scale, hw, hs;
    const float eps_list[] = {1e-1f, 1e-2f, 1e-4f};
    for (int e = 0; e < 3; e++) {
        s_rg_grad(m, 1, eps_list[e], gt, ds, grad);
        s_worst(grad, ref, 0, hd.w_off, &worst, &scale);
        cr_log_info("param scale %g, eps_rel %.0e: feature layers max diff %.1e of scale", param_scale, eps_list[e],
                    worst / scale);
    }
    s_rg_grad(m, 1, 0.0f, gt, ds, grad); /* 0: the default step */
    s_worst(grad, ref, 0, hd.w_off, &worst, &scale);
    s_worst(grad, ref, hd.w_off, m->n_params, &hw, &hs);
    cr_log_info("param scale %g, default eps_rel: feature layers max diff %.2e, scale %.2e (tol 1e-3 of scale); "
                "head %.2e of %.2e (tol 1e-4)", param_scale, worst, scale, hw, hs);
    cr_expect_gt(scale, 1e-3, "R_g depends on the feature layers");
    cr_expect_lt(worst, 1e-3 * scale);
    cr_expect_lt(hw, 1e-4 * hs);
    free(gt), free(grad), free(theta), free(ref);
    dataset_destroy(&ds);
    model_destroy(&m);
}

Test(head_stats, propagated_feature_gradient_matches_fd_of_rg) { s_check_propagation(1.0f); }

Test(head_stats, propagated_feature_gradient_matches_fd_of_rg_with_a_sharp_softmax) { s_check_propagation(6.0f); }

/* Off: no feature-layer gradient at all. On: the head's entries are bitwise those of off
 * (analytic), and the head parameters are back bit for bit after the two extra passes. */
Test(head_stats, propagation_touches_only_feature_entries_and_restores_the_head) {
    model_t *m = s_deep_model(0.0f);
    dataset_t *ds = s_data(PB, 5);
    float *gt = s_gtarget(m), *off = malloc(m->n_params * 4), *on = malloc(m->n_params * 4);
    float *before = malloc(m->n_params * 4);
    memcpy(before, m->params, m->n_params * 4);
    model_head_t hd;
    model_head(m, &hd);
    s_rg_grad(m, 0, 0.0f, gt, ds, off);
    s_rg_grad(m, 1, 0.0f, gt, ds, on);
    size_t nonzero = 0;
    for (size_t k = 0; k < hd.w_off; k++) {
        cr_expect_eq(off[k], 0.0f, "propagate off: feature entry %zu is %g", k, off[k]);
        nonzero += on[k] != 0.0f;
    }
    cr_expect_gt(nonzero, hd.w_off / 2, "propagate on: the feature layers get a gradient");
    cr_expect_eq(memcmp(on + hd.w_off, off + hd.w_off, (m->n_params - hd.w_off) * 4), 0, "head entries bitwise");
    cr_expect_eq(memcmp(before, m->params, m->n_params * 4), 0, "parameters restored bit for bit");
    free(gt), free(off), free(on), free(before);
    dataset_destroy(&ds);
    model_destroy(&m);
}

/* A softmax model has no feature layers: propagation changes nothing, bit for bit. */
Test(head_stats, propagation_on_a_softmax_model_is_a_no_op) {
    model_spec_t spec = {.n_inputs = PD, .n_classes = PC};
    cc_err_t err = {0};
    cr_assert_eq(model_spec_parse("softmax", &spec, &err), 0);
    model_t *m = model_new(&spec, &err);
    model_init(m, 2);
    dataset_t *ds = s_data(PB, 7);
    float *gt = s_gtarget(m), *off = malloc(m->n_params * 4), *on = malloc(m->n_params * 4);
    s_rg_grad(m, 0, 0.0f, gt, ds, off);
    s_rg_grad(m, 1, 0.0f, gt, ds, on);
    cr_expect_eq(memcmp(off, on, m->n_params * 4), 0);
    free(gt), free(off), free(on);
    dataset_destroy(&ds);
    model_destroy(&m);
}

/* ---- the propagation inside train_run: every step kind (DESIGN §6.2 with §6.3) ---------- */

typedef struct {
    float *params;   /* (n_params) after training */
    float *d_class;  /* (C, n_params) Δ_c, components mode only */
    float *d_reg;    /* (n_params) Δ_reg, components mode only */
} s_trained_t;

static void s_trained_free(s_trained_t *t) { free(t->params), free(t->d_class), free(t->d_reg); }

/* Two epochs from the same start with dropout, momentum and weight decay; the gradient
 * penalty with weight beta, propagated or not. */
static s_trained_t s_train_with(train_pcn_t mode, int propagate, float beta, float weight_decay) {
    model_t *m = s_deep_model(0.2f);
    dataset_t *ds = s_data(96, 6);
    float *gt = s_gtarget(m), *scratch = malloc(head_stats_len(m) * 4);
    align_penalty_t pen = {.variants = ALIGN_GRADIENT, .beta = beta, .g_target = gt, .scratch = scratch,
                           .propagate = propagate};
    train_config_t cfg = train_config_default();
    cfg.epochs = 2, cfg.batch = 16, cfg.pcn = mode, cfg.seed = 3;
    cfg.optim.lr = 0.05f, cfg.optim.momentum = 0.9f, cfg.optim.weight_decay = weight_decay;
    cfg.penalty = align_penalty_train, cfg.penalty_ctx = &pen;
    sgd_decomp_t *dec = mode == TRAIN_PCN_COMPONENTS ? sgd_decomp_new(PC, m->n_params, 0.05f, 0.9f) : NULL;
    train_report_t rep;
    cc_err_t err = {0};
    cr_assert_eq(train_run(m, ds, NULL, &cfg, dec, &rep, &err), 0, "%s", err.msg);
    s_trained_t t = {.params = malloc(m->n_params * 4)};
    memcpy(t.params, m->params, m->n_params * 4);
    if (dec) {
        t.d_class = malloc((size_t)PC * m->n_params * 4), t.d_reg = malloc(m->n_params * 4);
        memcpy(t.d_class, dec->d_class, (size_t)PC * m->n_params * 4);
        memcpy(t.d_reg, dec->d_reg, m->n_params * 4);
    }
    sgd_decomp_destroy(&dec);
    free(gt), free(scratch);
    dataset_destroy(&ds);
    model_destroy(&m);
    return t;
}

static const train_pcn_t s_modes[] = {TRAIN_PCN_OFF, TRAIN_PCN_CLIENT, TRAIN_PCN_COMPONENTS};

/* The extra passes move nothing but the gradient: with β = 0 a propagated run is bit for
 * bit the run without propagation (same dropout stream, head restored, forward state kept),
 * in plain, PCN-SGD and per-class-component training. */
Test(head_stats, propagation_with_zero_weight_changes_no_bit_of_training) {
    model_t *m = s_deep_model(0.2f);
    size_t P = m->n_params;
    model_destroy(&m);
    for (int i = 0; i < 3; i++) {
        s_trained_t off = s_train_with(s_modes[i], 0, 0.0f, 1e-3f), on = s_train_with(s_modes[i], 1, 0.0f, 1e-3f);
        cr_expect_eq(memcmp(off.params, on.params, P * 4), 0, "mode %d: parameters bitwise", (int)s_modes[i]);
        if (off.d_reg) cr_expect_eq(memcmp(off.d_reg, on.d_reg, P * 4), 0, "Δ_reg bitwise");
        s_trained_free(&off), s_trained_free(&on);
    }
}

/* With β > 0 the propagated gradient changes the feature layers in every step kind; in
 * per-class-component mode it belongs to Δ_reg (weight decay 0: Δ_reg has no feature-layer
 * part without propagation, one with it) and Σ_c Δ_c + Δ_reg is still the whole update. */
Test(head_stats, propagation_reaches_the_feature_layers_in_every_step_kind) {
    model_t *m = s_deep_model(0.2f);
    size_t P = m->n_params;
    model_head_t hd;
    model_head(m, &hd);
    float *theta0 = malloc(P * 4);
    memcpy(theta0, m->params, P * 4);
    model_destroy(&m);
    for (int i = 0; i < 3; i++) {
        s_trained_t off = s_train_with(s_modes[i], 0, 0.5f, 0.0f), on = s_train_with(s_modes[i], 1, 0.5f, 0.0f);
        double diff = 0.0;
        for (size_t k = 0; k < hd.w_off; k++) {
            cr_assert(isfinite(on.params[k]));
            diff = fmax(diff, fabs(on.params[k] - off.params[k]));
        }
        cr_log_info("mode %d: feature layers moved by up to %.2e with propagation", (int)s_modes[i], diff);
        cr_expect_gt(diff, 1e-5, "mode %d: the feature layers feel the propagated penalty", (int)s_modes[i]);
        if (on.d_reg) {
            double reg_off = 0.0, reg_on = 0.0, worst = 0.0;
            for (size_t k = 0; k < hd.w_off; k++) reg_off = fmax(reg_off, fabs(off.d_reg[k])), reg_on = fmax(reg_on, fabs(on.d_reg[k]));
            for (size_t k = 0; k < P; k++) {
                double sum = on.d_reg[k];
                for (int c = 0; c < PC; c++) sum += on.d_class[(size_t)c * P + k];
                worst = fmax(worst, fabs(sum - ((double)on.params[k] - theta0[k])));
            }
            cr_log_info("components: Δ_reg feature part %.2e off, %.2e on; |Σ_c Δ_c + Δ_reg − Δ| %.2e (tol 1e-5)", reg_off,
                        reg_on, worst);
            cr_expect_eq(reg_off, 0.0);
            cr_expect_gt(reg_on, 1e-5);
            cr_expect_lt(worst, 1e-5);
        }
        s_trained_free(&off), s_trained_free(&on);
    }
    free(theta0);
}

Test(head_stats, variants_parse) {
    unsigned mask;
    cr_expect_eq(align_variants_parse("gradient,hessian_diag", &mask), 0);
    cr_expect_eq(mask, ALIGN_GRADIENT | ALIGN_HESS_DIAG);
    cr_expect_eq(align_variants_parse("none", &mask), 0);
    cr_expect_eq(mask, 0u);
    cr_expect_eq(align_variants_parse("hgp", &mask), 0);
    cr_expect_eq(mask, ALIGN_HGP);
    cr_expect_neq(align_variants_parse("gradient,curvature", &mask), 0);
}
