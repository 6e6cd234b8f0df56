/* test_pcn.c — per-class gradients (§6.3): the class-sorted batch layout, the PCN-SGD
 * direction against an independent per-class computation, and the decomposition
 * Δ = Σ_c Δ_c + Δ_reg of SGD with momentum. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loss.h"
#include "model.h"
#include "pcn.h"
#include "train.h"

enum { B = 12, C = 4, D = 5 };

static model_t *s_mlp(void) {
    model_spec_t spec = {.n_inputs = D, .n_classes = C, .act = ACT_TANH};
    cc_err_t err = {0};
    cr_assert_eq(model_spec_parse("mlp:6", &spec, &err), 0);
    model_t *m = model_new(&spec, &err);
    model_init(m, 3);
    return m;
}

static void s_batch(float *x, int32_t *y, uint64_t seed) {
    cc_rng_t rng;
    cc_rng_seed(&rng, seed);
    for (int i = 0; i < B * D; i++) x[i] = (float)cc_rng_normal(&rng);
    for (int i = 0; i < B; i++) y[i] = (int32_t)cc_rng_below(&rng, 3); /* class 3 absent */
}

Test(pcn, sort_rows_is_a_stable_partition_by_class) {
    int32_t y[B] = {2, 0, 1, 2, 0, 0, 1, 2, 2, 0, 1, 1};
    uint32_t rows[B];
    int start[C], count[C];
    for (int i = 0; i < B; i++) rows[i] = (uint32_t)(B - 1 - i);
    pcn_sort_rows(rows, B, y, C, start, count);
    cr_expect_eq(count[0], 4);
    cr_expect_eq(count[1], 4);
    cr_expect_eq(count[2], 4);
    cr_expect_eq(count[3], 0);
    for (int c = 0; c < C; c++)
        for (int k = 0; k < count[c]; k++) {
            cr_expect_eq(y[rows[start[c] + k]], c);
            if (k) cr_expect_lt(rows[start[c] + k], rows[start[c] + k - 1], "stable");
        }
}

/* Gradient of the loss SUMMED over rows of class c, from a fresh forward over those rows
 * alone — independent of the row-range backward under test. */
static void s_class_grad(model_t *m, const float *x, const int32_t *y, int c, float *g) {
    float xc[B * D], probs[B * C], dl[B * C];
    int32_t yc[B];
    int n = 0;
    for (int i = 0; i < B; i++)
        if (y[i] == c) memcpy(xc + n * D, x + i * D, sizeof(float) * D), yc[n++] = c;
    memset(g, 0, m->n_params * sizeof(float));
    if (!n) return;
    const float *logits = model_forward(m, xc, n, 0);
    loss_softmax_xent(probs, dl, logits, yc, n, C, NULL, (float)n);
    model_backward(m, dl, 0, n, g);
}

Test(pcn, direction_matches_independent_per_class_gradients) {
    model_t *m = s_mlp();
    float x[B * D], xs[B * D], probs[B * C], dl[B * C];
    int32_t y[B], ys[B];
    s_batch(x, y, 1);
    uint32_t rows[B];
    int start[C], count[C];
    for (int i = 0; i < B; i++) rows[i] = (uint32_t)i;
    pcn_sort_rows(rows, B, y, C, start, count);
    for (int i = 0; i < B; i++) memcpy(xs + i * D, x + rows[i] * D, sizeof(float) * D), ys[i] = y[rows[i]];
    size_t P = m->n_params;
    float *dir = malloc(P * 4), *scratch = malloc(P * 4), *g = malloc(P * 4);
    double *ref = calloc(P, sizeof(double));
    const float *logits = model_forward(m, xs, B, 0);
    loss_softmax_xent(probs, dl, logits, ys, B, C, NULL, (float)B);
    int present = pcn_direction(m, dl, start, count, dir, scratch);
    cr_expect_eq(present, 3);
    for (int c = 0; c < C; c++) {
        s_class_grad(m, x, y, c, g);
        double norm = 0;
        for (size_t k = 0; k < P; k++) norm += (double)g[k] * g[k];
        if (norm == 0) continue;
        for (size_t k = 0; k < P; k++) ref[k] += g[k] / (sqrt(norm) + 1e-6);
    }
    double err = 0;
    for (size_t k = 0; k < P; k++) err = fmax(err, fabs(dir[k] - ref[k]));
    cr_log_info("PCN direction vs independent per-class gradients: max diff %.2e (tol 1e-5)", err);
    cr_expect_lt(err, 1e-5);
    free(dir), free(scratch), free(g), free(ref);
    model_destroy(&m);
}

static dataset_t *s_data(void) {
    dataset_t *ds = dataset_new(200, D, C);
    cc_rng_t rng;
    cc_rng_seed(&rng, 4);
    for (size_t i = 0; i < ds->n; i++) {
        ds->y[i] = (int32_t)(i % 7 == 0 ? 3 : i % 3); /* imbalanced: class 3 is rare */
        for (int j = 0; j < D; j++) ds->x[i * D + j] = (float)cc_rng_normal(&rng) + 2.5f * (j == ds->y[i]);
    }
    return ds;
}

Test(pcn, decomposed_sgd_sums_to_the_plain_sgd_update) {
    dataset_t *ds = s_data();
    model_t *plain = s_mlp(), *dec = s_mlp();
    train_config_t cfg = train_config_default();
    cfg.epochs = 3;
    cfg.batch = 16;
    cfg.optim.weight_decay = 1e-3f;
    train_report_t rep;
    cc_err_t err = {0};
    float *start = malloc(dec->n_params * 4);
    memcpy(start, dec->params, dec->n_params * 4);
    cr_assert_eq(train_run(plain, ds, NULL, &cfg, NULL, &rep, &err), 0, "%s", err.msg);
    sgd_decomp_t *d = sgd_decomp_new(C, dec->n_params, cfg.optim.lr, cfg.optim.momentum);
    cfg.pcn = TRAIN_PCN_COMPONENTS;
    cr_assert_eq(train_run(dec, ds, NULL, &cfg, d, &rep, &err), 0, "%s", err.msg);
    double traj = 0, sum = 0, norm = 0;
    for (size_t k = 0; k < dec->n_params; k++) {
        double total = d->d_reg[k];
        for (int c = 0; c < C; c++) total += d->d_class[(size_t)c * dec->n_params + k];
        sum = fmax(sum, fabs(total - ((double)dec->params[k] - start[k])));
        traj = fmax(traj, fabs(dec->params[k] - plain->params[k]));
        norm = fmax(norm, fabs(dec->params[k] - start[k]));
    }
    cr_log_info("Σ_c Δ_c + Δ_reg vs θ_end − θ_start: %.2e; decomposed vs plain SGD: %.2e "
                "(update scale %.2e, tol 1e-4)", sum, traj, norm);
    cr_expect_lt(sum, 1e-4);
    cr_expect_lt(traj, 1e-4, "the decomposition does not change the trajectory");
    cr_expect_gt(norm, 1e-2, "training moved the parameters");
    sgd_decomp_destroy(&d);
    model_destroy(&plain), model_destroy(&dec);
    free(start);
    dataset_destroy(&ds);
}

/* Recall of class c of m on ds. */
static double s_recall(model_t *m, const dataset_t *ds, int c) {
    float *probs = malloc(ds->n * C * sizeof(float));
    model_predict(m, ds->x, ds->n, probs);
    size_t hit = 0, total = 0;
    for (size_t i = 0; i < ds->n; i++) {
        if (ds->y[i] != c) continue;
        int best = 0;
        for (int k = 1; k < C; k++)
            if (probs[i * C + k] > probs[i * C + best]) best = k;
        total++, hit += best == c;
    }
    free(probs);
    return (double)hit / (double)total;
}

Test(pcn, client_mode_trains_and_does_not_drown_the_rare_class) {
    dataset_t *ds = s_data();
    double acc[2], rare[2];
    for (int mode = 0; mode < 2; mode++) {
        model_t *m = s_mlp();
        train_config_t cfg = train_config_default();
        cfg.epochs = 20;
        cfg.pcn = mode ? TRAIN_PCN_CLIENT : TRAIN_PCN_OFF;
        cfg.optim.lr = 0.05f;
        cfg.optim.momentum = 0.0f;
        train_report_t rep;
        cc_err_t err = {0};
        cr_assert_eq(train_run(m, ds, NULL, &cfg, NULL, &rep, &err), 0, "%s", err.msg);
        train_evaluate(m, ds, NULL, &acc[mode], NULL);
        rare[mode] = s_recall(m, ds, 3);
        model_destroy(&m);
    }
    cr_log_info("plain SGD: acc %.3f rare-class recall %.3f; PCN-SGD: acc %.3f rare recall %.3f",
                acc[0], rare[0], acc[1], rare[1]);
    cr_expect_gt(acc[1], 0.8, "PCN-SGD learns");
    cr_expect_geq(rare[1], rare[0], "per-class normalisation favours the rare class");
    dataset_destroy(&ds);
}

Test(pcn, server_normalisation_keeps_the_class_part_norm) {
    enum { N = 50, K = 3 };
    float comps[K * N], reg[N], out[N], sum[N] = {0};
    cc_rng_t rng;
    cc_rng_seed(&rng, 9);
    for (int i = 0; i < K * N; i++) comps[i] = (float)cc_rng_normal(&rng) * (float)(1 + i / N * 10);
    for (int i = 0; i < N; i++) reg[i] = 0.01f * (float)i;
    for (int c = 0; c < K; c++)
        for (int i = 0; i < N; i++) sum[i] += comps[c * N + i];
    uint8_t present[K] = {1, 1, 1};
    double s = pcn_server_normalize(out, comps, reg, present, K, N);
    /* Independent computation: s·Σ_c Δ_c/‖Δ_c‖ must have the norm of Σ_c Δ_c. */
    double norm_sum = 0, norm_class = 0, unit[N] = {0};
    for (int c = 0; c < K; c++) {
        double nc = 0;
        for (int i = 0; i < N; i++) nc += (double)comps[c * N + i] * comps[c * N + i];
        for (int i = 0; i < N; i++) unit[i] += comps[c * N + i] / sqrt(nc);
    }
    double err = 0;
    for (int i = 0; i < N; i++) {
        norm_sum += (double)sum[i] * sum[i];
        double class_part = out[i] - reg[i];
        norm_class += class_part * class_part;
        err = fmax(err, fabs(class_part - s * unit[i]));
    }
    cr_log_info("class-part norm %.6f vs |sum of components| %.6f; direction max diff %.2e",
                sqrt(norm_class), sqrt(norm_sum), err);
    cr_expect_lt(fabs(sqrt(norm_class) - sqrt(norm_sum)) / sqrt(norm_sum), 1e-5);
    cr_expect_lt(err, 1e-4);
    /* A class the client does not hold is left out of the normalised part. */
    present[1] = 0;
    pcn_server_normalize(out, comps, NULL, present, K, N);
    double nc0 = 0, nc2 = 0;
    for (int i = 0; i < N; i++) nc0 += (double)comps[i] * comps[i], nc2 += (double)comps[2 * N + i] * comps[2 * N + i];
    double resid = 0, scale2 = 0;
    for (int i = 0; i < N; i++) {
        double u = comps[i] / sqrt(nc0) + comps[2 * N + i] / sqrt(nc2);
        scale2 += u * u;
    }
    double s2 = sqrt(norm_sum) / sqrt(scale2);
    for (int i = 0; i < N; i++)
        resid = fmax(resid, fabs(out[i] - s2 * (comps[i] / sqrt(nc0) + comps[2 * N + i] / sqrt(nc2))));
    cr_expect_lt(resid, 1e-4, "absent class excluded (max diff %.2e)", resid);
}
