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
