/* test_model.c — whole-model gradients against central finite differences, row-range
 * backward, initialisation, determinism of training. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loss.h"
#include "model.h"
#include "train.h"

static model_t *s_model(const char *arch, int n_inputs, int C, act_kind_t act, float dropout,
                        int img) {
    model_spec_t spec = {.n_inputs = n_inputs, .n_classes = C, .act = act, .dropout = dropout};
    if (img) spec.in_c = 1, spec.in_h = img, spec.in_w = n_inputs / img;
    cc_err_t err = {0};
    cr_assert_eq(model_spec_parse(arch, &spec, &err), 0, "%s", err.msg);
    model_t *m = model_new(&spec, &err);
    cr_assert_not_null(m, "%s", err.msg);
    model_init(m, 7);
    return m;
}

/* Mean cross-entropy of the batch in the model's current state; the dropout stream is
 * re-seeded so every evaluation draws the same mask. */
static double s_loss(model_t *m, const float *x, const int32_t *y, int B, float *probs) {
    cc_rng_seed(&m->rng, 99);
    const float *logits = model_forward(m, x, B, 1);
    return loss_softmax_xent(probs, NULL, logits, y, B, m->spec.n_classes, NULL, 1.0f);
}

/* Checks dL/dθ from backward against central differences on every parameter; returns the
 * worst error relative to max(1e-2, |grad|), and in *n_bad (if given) how many exceed 2e-2. */
static double s_gradcheck(model_t *m, const float *x, const int32_t *y, int B, float h, size_t *n_bad) {
    int C = m->spec.n_classes;
    float *probs = malloc(sizeof(float) * B * C), *dl = malloc(sizeof(float) * B * C);
    cc_rng_seed(&m->rng, 99);
    const float *logits = model_forward(m, x, B, 1);
    loss_softmax_xent(probs, dl, logits, y, B, C, NULL, 1.0f);
    memset(m->grads, 0, m->n_params * sizeof(float));
    model_backward(m, dl, 0, B, m->grads);
    double worst = 0;
    for (size_t k = 0; k < m->n_params; k++) {
        float saved = m->params[k];
        m->params[k] = saved + h;
        double lp = s_loss(m, x, y, B, probs);
        m->params[k] = saved - h;
        double lm = s_loss(m, x, y, B, probs);
        m->params[k] = saved;
        double fd = (lp - lm) / (2.0 * h);
        double rel = fabs(fd - m->grads[k]) / fmax(1e-2, fabs(fd));
        worst = fmax(worst, rel);
        if (n_bad && rel > 2e-2) (*n_bad)++;
    }
    free(probs);
    free(dl);
    return worst;
}

static void s_random_batch(float *x, int32_t *y, int B, int d, int C, uint64_t seed) {
    cc_rng_t rng;
    cc_rng_seed(&rng, seed);
    for (int i = 0; i < B * d; i++) x[i] = (float)cc_rng_normal(&rng);
    for (int i = 0; i < B; i++) y[i] = (int32_t)cc_rng_below(&rng, (uint64_t)C);
}

Test(model, gradients_match_finite_differences) {
    struct { const char *arch; act_kind_t act; float dropout; int img; int d; } cases[] = {
        {"softmax", ACT_RELU, 0, 0, 6},
        {"mlp:5,4", ACT_TANH, 0, 0, 6},
        {"mlp:5,4", ACT_GELU, 0, 0, 6},
        {"mlp:7", ACT_TANH, 0.3f, 0, 6},
        {"cnn:2,3/4", ACT_TANH, 0, 6, 36},
        {"cnn:2", ACT_GELU, 0, 4, 16},
    };
    enum { B = 5, C = 3 };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        model_t *m = s_model(cases[i].arch, cases[i].d, C, cases[i].act, cases[i].dropout, cases[i].img);
        float x[B * 36];
        int32_t y[B];
        s_random_batch(x, y, B, cases[i].d, C, 11 + i);
        /* Max-pooling is piecewise: a step of 1e-2 can change which input wins a window
         * (seen here on near-ties), so CNNs take tiny steps and pay float noise instead. */
        float h = cases[i].img ? 1e-4f : 1e-2f;
        double tol = cases[i].img ? 1e-1 : 2e-2;
        double worst = s_gradcheck(m, x, y, B, h, NULL);
        cr_log_info("%s %s dropout %.1f: %zu params, worst relative FD error %.2e (h %.0e, tol %.0e)",
                    cases[i].arch, model_act_name(cases[i].act), cases[i].dropout, m->n_params,
                    worst, h, tol);
        cr_expect_lt(worst, tol, "%s", cases[i].arch);
        model_destroy(&m);
    }
}

Test(model, relu_gradients_match_away_from_kinks) {
    enum { B = 4, C = 3, D = 5 };
    model_t *m = s_model("mlp:6", D, C, ACT_RELU, 0, 0);
    float x[B * D];
    int32_t y[B];
    s_random_batch(x, y, B, D, C, 3);
    /* With h = 1e-2 a pre-activation may cross the kink at 0, where central differences
     * are wrong by construction: at most 5% of the parameters may be off. */
    size_t bad = 0;
    double worst = s_gradcheck(m, x, y, B, 1e-2f, &bad);
    cr_log_info("relu mlp: %zu of %zu parameters off by > 2e-2 (worst %.2e)", bad, m->n_params, worst);
    cr_expect_leq(bad, m->n_params / 20);
    model_destroy(&m);
}

Test(model, backward_over_row_ranges_adds_up_to_the_full_batch) {
    enum { B = 9, C = 4, D = 36 };
    model_t *m = s_model("cnn:2/5", D, C, ACT_RELU, 0, 6);
    float x[B * D], dl[B * C], full[1024], parts[1024];
    int32_t y[B];
    s_random_batch(x, y, B, D, C, 5);
    cr_assert_lt(m->n_params, 1024);
    model_forward(m, x, B, 1);
    for (int i = 0; i < B * C; i++) dl[i] = (float)((i % 7) - 3) * 0.1f;
    memset(full, 0, sizeof full), memset(parts, 0, sizeof parts);
    model_backward(m, dl, 0, B, full);
    model_backward(m, dl, 0, 2, parts);
    model_backward(m, dl + 2 * C, 2, 4, parts);
    model_backward(m, dl + 6 * C, 6, 3, parts);
    double err = 0;
    for (size_t k = 0; k < m->n_params; k++) err = fmax(err, fabs(full[k] - parts[k]));
    cr_log_info("row-range backward vs full: max diff %.2e (tol 1e-5)", err);
    cr_expect_lt(err, 1e-5);
    model_destroy(&m);
}

Test(model, init_follows_pytorch_bounds_and_is_seeded) {
    model_t *a = s_model("mlp:50", 20, 3, ACT_RELU, 0, 0), *b = s_model("mlp:50", 20, 3, ACT_RELU, 0, 0);
    cr_expect_eq(a->n_params, 20 * 50 + 50 + 50 * 3 + 3);
    cr_expect_eq(memcmp(a->params, b->params, a->n_params * sizeof(float)), 0);
    float bound = 1.0f / sqrtf(20.0f);
    for (size_t k = 0; k < 20 * 50 + 50; k++) cr_expect_leq(fabsf(a->params[k]), bound);
    model_init(b, 8);
    cr_expect_neq(memcmp(a->params, b->params, a->n_params * sizeof(float)), 0);
    model_destroy(&a);
    model_destroy(&b);
}

Test(model, spec_parse_and_errors) {
    model_spec_t s = {0};
    cc_err_t err = {0};
    char buf[64];
    cr_expect_eq(model_spec_parse("cnn:16,32/128", &s, &err), 0);
    model_spec_arch(&s, buf, sizeof buf);
    cr_expect_str_eq(buf, "cnn:16,32/128");
    cr_expect_eq(model_spec_parse("mlp:64,32", &s, &err), 0);
    model_spec_arch(&s, buf, sizeof buf);
    cr_expect_str_eq(buf, "mlp:64,32");
    cr_expect_neq(model_spec_parse("mlp:64,x", &s, &err), 0);
    cr_expect_neq(model_spec_parse("mlp:0", &s, &err), 0);
    cr_expect_neq(model_spec_parse("resnet", &s, &err), 0);
    cr_expect(strstr(err.msg, "resnet") != NULL);
    model_spec_t bad = {.kind = MODEL_CNN, .n_inputs = 10, .n_classes = 3, .n_conv = 1, .conv = {4}};
    cr_expect_null(model_new(&bad, &err), "a CNN needs an image shape");
}

static dataset_t *s_blobs(size_t n, int d, int C, uint64_t seed) {
    dataset_t *ds = dataset_new(n, (size_t)d, C);
    cc_rng_t rng;
    cc_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        ds->y[i] = (int32_t)(i % (size_t)C);
        for (int j = 0; j < d; j++)
            ds->x[i * d + j] = (float)(cc_rng_normal(&rng) + (j % C == ds->y[i] ? 2.0 : 0.0));
    }
    return ds;
}

Test(train, learns_and_is_bit_for_bit_deterministic) {
    dataset_t *ds = s_blobs(600, 8, 3, 1);
    train_config_t cfg = train_config_default();
    cfg.epochs = 5;
    float *first = NULL;
    for (int run = 0; run < 2; run++) {
        model_t *m = s_model("mlp:16", 8, 3, ACT_RELU, 0.1f, 0);
        train_report_t rep;
        cc_err_t err = {0};
        cr_assert_eq(train_run(m, ds, NULL, &cfg, NULL, &rep, &err), 0, "%s", err.msg);
        double loss, acc;
        train_evaluate(m, ds, &loss, &acc, NULL);
        cr_expect_gt(acc, 0.9, "separable blobs are learnt (acc %.3f)", acc);
        if (!first) {
            first = malloc(m->n_params * sizeof(float));
            memcpy(first, m->params, m->n_params * sizeof(float));
        } else {
            cr_expect_eq(memcmp(first, m->params, m->n_params * sizeof(float)), 0);
        }
        model_destroy(&m);
    }
    free(first);
    dataset_destroy(&ds);
}

Test(train, early_stopping_restores_the_best_epoch) {
    dataset_t *tr = s_blobs(300, 8, 3, 2), *va = s_blobs(90, 8, 3, 3);
    train_config_t cfg = train_config_default();
    cfg.epochs = 40;
    cfg.patience = 2;
    cfg.optim.lr = 0.5f; /* large steps: validation loss soon stops improving */
    model_t *m = s_model("mlp:32", 8, 3, ACT_RELU, 0, 0);
    train_report_t rep;
    cc_err_t err = {0};
    cr_assert_eq(train_run(m, tr, va, &cfg, NULL, &rep, &err), 0, "%s", err.msg);
    double loss;
    train_evaluate(m, va, &loss, NULL, NULL);
    cr_expect_lt(fabs(loss - rep.best_val_loss), 1e-9, "the kept parameters are the best epoch's");
    cr_expect_leq(rep.best_epoch, rep.epochs_run);
    model_destroy(&m);
    dataset_destroy(&tr);
    dataset_destroy(&va);
}

Test(train, rejects_mismatched_data) {
    dataset_t *ds = s_blobs(10, 5, 3, 1);
    model_t *m = s_model("softmax", 6, 3, ACT_RELU, 0, 0);
    train_config_t cfg = train_config_default();
    train_report_t rep;
    cc_err_t err = {0};
    cr_expect_neq(train_run(m, ds, NULL, &cfg, NULL, &rep, &err), 0);
    cr_expect(strstr(err.msg, "features") != NULL, "%s", err.msg);
    model_destroy(&m);
    dataset_destroy(&ds);
}

/* A conv layer's output (channels x h x w per sample) is an int in model.c: a spec whose
 * product would overflow it is refused before any layer is built. */
Test(model, conv_output_too_large_is_refused) {
    model_spec_t s = {0};
    s.kind = MODEL_CNN, s.n_classes = 2, s.act = ACT_RELU, s.in_c = 1, s.in_h = 8192, s.in_w = 8192;
    s.n_inputs = 8192 * 8192, s.n_conv = 1, s.conv[0] = 4096;
    cc_err_t err = {0};
    cr_assert_eq(model_spec_validate(&s, &err), CC_ERR_ARG);
    cr_expect(strstr(err.msg, "values per sample"), "%s", err.msg);
    cr_assert_null(model_new(&s, &err));
    s.conv[0] = 4; /* 4 x 2^26 = 2^28: at the limit, accepted */
    cr_assert_eq(model_spec_validate(&s, &err), 0, "%s", err.msg);
}
