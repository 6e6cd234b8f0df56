/* test_metrics.c — metrics against values computed by hand (scikit-learn's definitions),
 * and ROC-AUC against an independent O(n^2) pairwise count. scikit-learn is not
 * installed on the build machines, so the reference values are written out below with the
 * arithmetic that produced them. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

#define EPS 1e-12

/* probs (n, C) with 0.7 on pred[i] and the rest spread evenly: argmax = pred[i]. */
static float *s_probs_from_preds(const int *pred, size_t n, int C) {
    float *p = cc_xmalloc(n * (size_t)C * sizeof *p);
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < C; c++)
            p[i * (size_t)C + (size_t)c] = c == pred[i] ? 0.7f : 0.3f / (float)(C - 1);
    return p;
}

Test(metrics, three_classes_with_ties_and_floor) {
    /* Row 3 ties classes 0 and 1 (argmax takes 0); row 5 gives the true class 0, so the
     * loss uses the floor 1e-12. Predictions: 0 1 1 0 2 0. */
    const float probs[] = {
        0.7f, 0.2f, 0.1f,  /* y 0 -> 0 */
        0.3f, 0.6f, 0.1f,  /* y 0 -> 1 */
        0.2f, 0.5f, 0.3f,  /* y 1 -> 1 */
        0.4f, 0.4f, 0.2f,  /* y 1 -> 0 (tie) */
        0.1f, 0.1f, 0.8f,  /* y 2 -> 2 */
        0.6f, 0.4f, 0.0f,  /* y 2 -> 0, p_true = 0 */
    };
    const int32_t y[] = {0, 0, 1, 1, 2, 2};
    metrics_t m;
    cc_err_t err = {0};
    cr_assert_eq(metrics_compute(&m, probs, y, 6, 3, &err), 0, "%s", err.msg);
    /* confusion: [[1,1,0],[1,1,0],[1,0,1]]; column sums 3 2 1 */
    const uint64_t conf[] = {1, 1, 0, 1, 1, 0, 1, 0, 1};
    for (int i = 0; i < 9; i++) cr_assert_eq(m.confusion[i], conf[i], "confusion[%d]", i);
    for (int c = 0; c < 3; c++) cr_assert_eq(m.support[c], 2);
    cr_assert_float_eq(m.accuracy, 0.5, EPS);
    const double prec[] = {1.0 / 3, 1.0 / 2, 1.0}, rec[] = {0.5, 0.5, 0.5};
    const double f1[] = {2.0 / 5, 2.0 / 4, 2.0 / 3};  /* 2tp / (2tp + fp + fn) */
    for (int c = 0; c < 3; c++) {
        cr_assert_float_eq(m.precision[c], prec[c], EPS, "precision[%d]", c);
        cr_assert_float_eq(m.recall[c], rec[c], EPS, "recall[%d]", c);
        cr_assert_float_eq(m.f1[c], f1[c], EPS, "f1[%d]", c);
    }
    cr_assert_float_eq(m.balanced_accuracy, 0.5, EPS);
    cr_assert_float_eq(m.macro_f1, (2.0 / 5 + 0.5 + 2.0 / 3) / 3, EPS);
    double loss = -(log((double)0.7f) + log((double)0.3f) + log((double)0.5f) +
                    log((double)0.4f) + log((double)0.8f) + log(1e-12)) / 6;
    cr_assert_float_eq(m.loss, loss, 1e-12, "loss %.15g vs %.15g", m.loss, loss);
    cr_assert(isnan(m.roc_auc), "roc_auc is NaN for 3 classes");
    metrics_free(&m);
    metrics_free(&m);  /* idempotent */
    metrics_free(NULL);
}

Test(metrics, absent_and_never_predicted_classes) {
    /* C = 5. Class 2 is predicted but absent from y; class 3 is in y but never
     * predicted; class 4 is neither (excluded from every average).
     *   y    0 0 1 1 1 3
     *   pred 0 2 0 0 1 0
     * confusion rows: t0 {p0 1, p2 1}, t1 {p0 2, p1 1}, t3 {p0 1}; column sums 4 1 1 0 0
     *   precision 1/4 1 0 0 0   recall 1/2 1/3 0 0 0
     *   f1  c0 2/(2+3+1) = 1/3, c1 2/(2+0+2) = 1/2, c2 0, c3 0, c4 0
     *   balanced accuracy = mean recall over {0,1,3} = (1/2 + 1/3 + 0) / 3 = 5/18
     *   macro F1 over the union {0,1,2,3} = (1/3 + 1/2) / 4 = 5/24 */
    const int pred[] = {0, 2, 0, 0, 1, 0};
    const int32_t y[] = {0, 0, 1, 1, 1, 3};
    float *probs = s_probs_from_preds(pred, 6, 5);
    metrics_t m;
    cc_err_t err = {0};
    cr_assert_eq(metrics_compute(&m, probs, y, 6, 5, &err), 0, "%s", err.msg);
    const double prec[] = {0.25, 1, 0, 0, 0}, rec[] = {0.5, 1.0 / 3, 0, 0, 0};
    const double f1[] = {1.0 / 3, 0.5, 0, 0, 0};
    const size_t sup[] = {2, 3, 0, 1, 0};
    for (int c = 0; c < 5; c++) {
        cr_assert_float_eq(m.precision[c], prec[c], EPS, "precision[%d]", c);
        cr_assert_float_eq(m.recall[c], rec[c], EPS, "recall[%d]", c);
        cr_assert_float_eq(m.f1[c], f1[c], EPS, "f1[%d]", c);
        cr_assert_eq(m.support[c], sup[c], "support[%d]", c);
    }
    cr_assert_float_eq(m.accuracy, 2.0 / 6, EPS);
    cr_assert_float_eq(m.balanced_accuracy, 5.0 / 18, EPS);
    cr_assert_float_eq(m.macro_f1, 5.0 / 24, EPS);
    cr_assert_float_eq(m.loss, -log((double)0.7f) * 2 / 6 - log((double)(0.3f / 4)) * 4 / 6,
                       1e-12);
    metrics_free(&m);
    free(probs);
}

Test(metrics, single_class) {
    const float probs[] = {1.0f};
    const int32_t y[] = {0};
    metrics_t m;
    cr_assert_eq(metrics_compute(&m, probs, y, 1, 1, NULL), 0);
    cr_assert_float_eq(m.accuracy, 1, EPS);
    cr_assert_float_eq(m.balanced_accuracy, 1, EPS);
    cr_assert_float_eq(m.macro_f1, 1, EPS);
    cr_assert_float_eq(m.loss, 0, EPS);
    metrics_free(&m);
}

/* Two classes: probs[i] = (1 - s, s). */
static float *s_binary_probs(const float *s, size_t n) {
    float *p = cc_xmalloc(2 * n * sizeof *p);
    for (size_t i = 0; i < n; i++) {
        p[2 * i] = 1.0f - s[i];
        p[2 * i + 1] = s[i];
    }
    return p;
}

/* Independent reference: the fraction of (positive, negative) pairs ranked correctly,
 * ties counting one half. */
static double s_auc_pairwise(const float *s, const int32_t *y, size_t n) {
    double good = 0, pairs = 0;
    for (size_t i = 0; i < n; i++) {
        if (y[i] != 1) continue;
        for (size_t j = 0; j < n; j++) {
            if (y[j] != 0) continue;
            pairs += 1;
            good += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
        }
    }
    return good / pairs;
}

static double s_auc_of(const float *s, const int32_t *y, size_t n) {
    float *p = s_binary_probs(s, n);
    metrics_t m;
    cc_err_t err = {0};
    cr_assert_eq(metrics_compute(&m, p, y, n, 2, &err), 0, "%s", err.msg);
    double auc = m.roc_auc;
    metrics_free(&m);
    free(p);
    return auc;
}

Test(metrics, auc_hand_computed_with_ties) {
    /* positives 0.35 0.8 0.4, negatives 0.1 0.4 0.4:
     *   0.35 beats 0.1 -> 1;  0.8 beats all -> 3;  0.4 beats 0.1, ties twice -> 2
     *   AUC = 6 / 9 */
    const float s[] = {0.1f, 0.4f, 0.35f, 0.8f, 0.4f, 0.4f};
    const int32_t y[] = {0, 0, 1, 1, 0, 1};
    cr_assert_float_eq(s_auc_of(s, y, 6), 6.0 / 9, EPS);
    const float all_tied[] = {0.5f, 0.5f, 0.5f, 0.5f};
    const int32_t y4[] = {0, 1, 0, 1};
    cr_assert_float_eq(s_auc_of(all_tied, y4, 4), 0.5, EPS);
    const float perfect[] = {0.1f, 0.9f, 0.2f, 0.8f};
    cr_assert_float_eq(s_auc_of(perfect, y4, 4), 1.0, EPS);
    const float reversed[] = {0.9f, 0.1f, 0.8f, 0.2f};
    cr_assert_float_eq(s_auc_of(reversed, y4, 4), 0.0, EPS);
}

Test(metrics, auc_matches_pairwise_count) {
    uint64_t state = 12345;
    double worst = 0;
    for (int trial = 0; trial < 50; trial++) {
        size_t n = 2 + (size_t)trial * 7;
        float *s = cc_xmalloc(n * sizeof *s);
        int32_t *y = cc_xmalloc(n * sizeof *y);
        for (size_t i = 0; i < n; i++) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            y[i] = (int32_t)((state >> 33) & 1);
            s[i] = (float)((state >> 40) % 11) / 10.0f;  /* 11 levels: many ties */
        }
        y[0] = 0, y[1] = 1;  /* both classes present */
        double d = fabs(s_auc_of(s, y, n) - s_auc_pairwise(s, y, n));
        if (d > worst) worst = d;
        free(s);
        free(y);
    }
    printf("metrics/auc_matches_pairwise_count: largest difference %.3g (tolerance 1e-12)\n",
           worst);
    cr_assert_leq(worst, 1e-12);
}

Test(metrics, auc_nan_when_one_class_present) {
    const float s[] = {0.2f, 0.7f, 0.4f};
    const int32_t y[] = {1, 1, 1};
    cr_assert(isnan(s_auc_of(s, y, 3)));
    const int32_t y0[] = {0, 0, 0};
    cr_assert(isnan(s_auc_of(s, y0, 3)));
}

Test(metrics, rejects_bad_arguments) {
    const float probs[] = {0.5f, 0.5f, 0.5f, 0.5f};
    const int32_t bad[] = {0, 2}, neg[] = {-1, 0};
    metrics_t m;
    cc_err_t err = {0};
    cr_assert_eq(metrics_compute(&m, probs, bad, 2, 2, &err), CC_ERR_ARG);
    cr_assert(strstr(err.msg, "row 1"), "message names the row: %s", err.msg);
    metrics_free(&m);
    cr_assert_eq(metrics_compute(&m, probs, neg, 2, 2, &err), CC_ERR_ARG);
    cr_assert_eq(metrics_compute(&m, probs, bad, 0, 2, &err), CC_ERR_ARG);
    cr_assert(strstr(err.msg, "no rows"), "%s", err.msg);
    cr_assert_eq(metrics_compute(&m, probs, bad, 2, 0, &err), CC_ERR_ARG);
    metrics_free(&m);
}

Test(metrics, json_layout) {
    const float s[] = {0.1f, 0.4f, 0.35f, 0.8f};
    const int32_t y[] = {0, 0, 1, 1};
    float *p = s_binary_probs(s, 4);
    metrics_t m;
    cr_assert_eq(metrics_compute(&m, p, y, 4, 2, NULL), 0);
    json_t *j = metrics_to_json(&m);
    cr_assert_float_eq(json_real_value(json_object_get(j, "accuracy")), 0.75, EPS);
    cr_assert_float_eq(json_real_value(json_object_get(j, "roc_auc")), 0.75, EPS);
    cr_assert(json_is_real(json_object_get(j, "loss")));
    cr_assert(json_is_real(json_object_get(j, "balanced_accuracy")));
    cr_assert(json_is_real(json_object_get(j, "macro_f1")));
    json_t *pc = json_object_get(j, "per_class");
    cr_assert_eq(json_array_size(json_object_get(pc, "precision")), 2);
    cr_assert_eq(json_array_size(json_object_get(pc, "recall")), 2);
    cr_assert_eq(json_array_size(json_object_get(pc, "f1")), 2);
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(pc, "support"), 1)), 2);
    json_t *conf = json_object_get(j, "confusion");
    /* predictions 0 0 0 1: [[2,0],[1,1]] */
    cr_assert_eq(json_integer_value(json_array_get(json_array_get(conf, 1), 0)), 1);
    cr_assert_eq(json_integer_value(json_array_get(json_array_get(conf, 0), 0)), 2);
    json_decref(j);
    metrics_free(&m);
    /* roc_auc is null (not a number JSON cannot hold) when undefined */
    const int32_t y1[] = {1, 1, 1, 1};
    cr_assert_eq(metrics_compute(&m, p, y1, 4, 2, NULL), 0);
    j = metrics_to_json(&m);
    cr_assert(json_is_null(json_object_get(j, "roc_auc")));
    char *text = json_dumps(j, 0);
    cr_assert_not_null(text, "serialisable");
    free(text);
    json_decref(j);
    metrics_free(&m);
    free(p);
}

Test(metrics, print_table) {
    const int pred[] = {0, 1, 2, 2};
    const int32_t y[] = {0, 1, 2, 1};
    float *probs = s_probs_from_preds(pred, 4, 3);
    metrics_t m;
    cr_assert_eq(metrics_compute(&m, probs, y, 4, 3, NULL), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    metrics_print(fp, &m);
    fclose(fp);
    cr_assert(strstr(buf, "balanced accuracy  0.8333"), "%s", buf);
    cr_assert(strstr(buf, "ROC-AUC            n/a"), "%s", buf);
    cr_assert(strstr(buf, "confusion"), "%s", buf);
    free(buf);
    metrics_free(&m);
    free(probs);
}
