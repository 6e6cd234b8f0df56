/* metrics.c — classification metrics; definitions (scikit-learn's) are in metrics.h.
 *
 * One pass builds the confusion matrix and the loss; every other number derives from the
 * matrix, except ROC-AUC, which ranks the class-1 probabilities (O(n log n)). */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_LOSS_FLOOR 1e-12

typedef struct {
    float score;  /* probability of class 1 */
    int32_t pos;  /* 1 if the true class is 1 */
} s_scored_t;

static int s_argmax(const float *row, int C) {
    int best = 0;
    for (int c = 1; c < C; c++)
        if (row[c] > row[best]) best = c;  /* strict: lowest index wins ties */
    return best;
}

static double s_safe_div(double num, double den) {
    return den > 0 ? num / den : 0.0;
}

static void s_alloc(metrics_t *m, int C) {
    size_t c = (size_t)C;
    m->n_classes = C;
    m->precision = cc_xcalloc(c, sizeof *m->precision);
    m->recall = cc_xcalloc(c, sizeof *m->recall);
    m->f1 = cc_xcalloc(c, sizeof *m->f1);
    m->confusion = cc_xcalloc(c * c, sizeof *m->confusion);
    m->support = cc_xcalloc(c, sizeof *m->support);
}

/* Confusion matrix, support, loss and accuracy in one pass. */
static void s_count(metrics_t *m, const float *probs, const int32_t *y, size_t n, int C) {
    double loss = 0;
    size_t correct = 0;
    for (size_t i = 0; i < n; i++) {
        const float *row = probs + i * (size_t)C;
        int t = y[i], p = s_argmax(row, C);
        m->confusion[(size_t)t * (size_t)C + (size_t)p]++;
        m->support[t]++;
        correct += (t == p);
        double pt = row[t];
        if (pt < S_LOSS_FLOOR) pt = S_LOSS_FLOOR;  /* NaN passes through on purpose */
        loss -= log(pt);
    }
    m->n = n;
    m->loss = loss / (double)n;
    m->accuracy = (double)correct / (double)n;
}

/* Per-class precision/recall/F1 and their sklearn averages. */
static void s_per_class(metrics_t *m) {
    size_t C = (size_t)m->n_classes;
    double sum_recall = 0, sum_f1 = 0;
    int n_present = 0, n_union = 0;
    for (size_t c = 0; c < C; c++) {
        uint64_t tp = m->confusion[c * C + c], predicted = 0;
        for (size_t r = 0; r < C; r++) predicted += m->confusion[r * C + c];
        uint64_t fp = predicted - tp, fn = m->support[c] - tp;
        m->precision[c] = s_safe_div((double)tp, (double)predicted);
        m->recall[c] = s_safe_div((double)tp, (double)m->support[c]);
        m->f1[c] = s_safe_div(2.0 * (double)tp, (double)(2 * tp + fp + fn));
        if (m->support[c] > 0) {
            sum_recall += m->recall[c];
            n_present++;
        }
        if (m->support[c] > 0 || predicted > 0) {
            sum_f1 += m->f1[c];
            n_union++;
        }
    }
    m->balanced_accuracy = n_present ? sum_recall / n_present : NAN;
    m->macro_f1 = n_union ? sum_f1 / n_union : NAN;
}

static int s_cmp_scored(const void *a, const void *b) {
    float x = ((const s_scored_t *)a)->score, y = ((const s_scored_t *)b)->score;
    return (x > y) - (x < y);
}

/* Mann–Whitney U over average ranks: AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg).
 * A tie group spanning ranks [i+1, j] gives each member the rank (i + 1 + j) / 2. */
static double s_roc_auc(const float *probs, const int32_t *y, size_t n) {
    s_scored_t *v = cc_xmalloc(n * sizeof *v);
    double n_pos = 0;
    for (size_t i = 0; i < n; i++) {
        v[i].score = probs[2 * i + 1];
        v[i].pos = (y[i] == 1);
        n_pos += v[i].pos;
        if (isnan(v[i].score)) {  /* no order exists: refuse rather than guess */
            free(v);
            return NAN;
        }
    }
    double n_neg = (double)n - n_pos, rank_sum = 0;
    if (n_pos == 0 || n_neg == 0) {
        free(v);
        return NAN;
    }
    qsort(v, n, sizeof *v, s_cmp_scored);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        double pos_in_group = 0;
        while (j < n && v[j].score == v[i].score) pos_in_group += v[j++].pos;
        rank_sum += pos_in_group * ((double)(i + 1 + j) / 2.0);
        i = j;
    }
    free(v);
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg);
}

static int s_check_args(const float *probs, const int32_t *y, size_t n, int C,
                        cc_err_t *err) {
    if (C < 1)
        return cc_err_set(err, CC_ERR_ARG, "metrics: need at least 1 class, got %d", C);
    if (n == 0) return cc_err_set(err, CC_ERR_ARG, "metrics: no rows to evaluate");
    if (!probs || !y) return cc_err_set(err, CC_ERR_ARG, "metrics: NULL probs or labels");
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= C)
            return cc_err_set(err, CC_ERR_ARG,
                              "metrics: label %d of row %zu is outside [0, %d)",
                              (int)y[i], i, C);
    return 0;
}

int metrics_compute(metrics_t *out, const float *probs, const int32_t *y, size_t n, int C,
                    cc_err_t *err) {
    memset(out, 0, sizeof *out);
    out->roc_auc = NAN;
    int rc = s_check_args(probs, y, n, C, err);
    if (rc) return rc;
    s_alloc(out, C);
    s_count(out, probs, y, n, C);
    s_per_class(out);
    if (C == 2) out->roc_auc = s_roc_auc(probs, y, n);
    return 0;
}

void metrics_free(metrics_t *m) {
    if (!m) return;
    free(m->precision);
    free(m->recall);
    free(m->f1);
    free(m->confusion);
    free(m->support);
    memset(m, 0, sizeof *m);
    m->roc_auc = NAN;
}

static json_t *s_json_num(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *s_json_doubles(const double *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, s_json_num(v[i]));
    return a;
}

static json_t *s_json_per_class(const metrics_t *m) {
    int C = m->n_classes;
    json_t *support = json_array();
    for (int c = 0; c < C; c++)
        json_array_append_new(support, json_integer((json_int_t)m->support[c]));
    json_t *o = json_object();
    json_object_set_new(o, "precision", s_json_doubles(m->precision, C));
    json_object_set_new(o, "recall", s_json_doubles(m->recall, C));
    json_object_set_new(o, "f1", s_json_doubles(m->f1, C));
    json_object_set_new(o, "support", support);
    return o;
}

static json_t *s_json_confusion(const metrics_t *m) {
    size_t C = (size_t)m->n_classes;
    json_t *rows = json_array();
    for (size_t t = 0; t < C; t++) {
        json_t *row = json_array();
        for (size_t p = 0; p < C; p++)
            json_array_append_new(row, json_integer((json_int_t)m->confusion[t * C + p]));
        json_array_append_new(rows, row);
    }
    return rows;
}

json_t *metrics_to_json(const metrics_t *m) {
    json_t *o = json_object();
    json_object_set_new(o, "loss", s_json_num(m->loss));
    json_object_set_new(o, "accuracy", s_json_num(m->accuracy));
    json_object_set_new(o, "balanced_accuracy", s_json_num(m->balanced_accuracy));
    json_object_set_new(o, "macro_f1", s_json_num(m->macro_f1));
    json_object_set_new(o, "roc_auc", s_json_num(m->roc_auc));
    json_object_set_new(o, "per_class", s_json_per_class(m));
    json_object_set_new(o, "confusion", s_json_confusion(m));
    return o;
}

static void s_print_summary(FILE *fp, const metrics_t *m) {
    fprintf(fp, "rows %zu, classes %d\n", m->n, m->n_classes);
    fprintf(fp, "  loss               %.6f\n", m->loss);
    fprintf(fp, "  accuracy           %.4f\n", m->accuracy);
    fprintf(fp, "  balanced accuracy  %.4f\n", m->balanced_accuracy);
    fprintf(fp, "  macro F1           %.4f\n", m->macro_f1);
    if (isnan(m->roc_auc)) fprintf(fp, "  ROC-AUC            n/a\n");
    else fprintf(fp, "  ROC-AUC            %.4f\n", m->roc_auc);
}

static void s_print_table(FILE *fp, const metrics_t *m) {
    fprintf(fp, "\n  class  precision  recall      f1  support\n");
    for (int c = 0; c < m->n_classes; c++)
        fprintf(fp, "  %5d  %9.4f  %6.4f  %6.4f  %7zu\n", c, m->precision[c], m->recall[c],
                m->f1[c], m->support[c]);
}

static void s_print_confusion(FILE *fp, const metrics_t *m) {
    size_t C = (size_t)m->n_classes;
    fprintf(fp, "\n  confusion (rows = true, columns = predicted)\n  %6s", "");
    for (size_t p = 0; p < C; p++) fprintf(fp, " %8zu", p);
    fputc('\n', fp);
    for (size_t t = 0; t < C; t++) {
        fprintf(fp, "  %6zu", t);
        for (size_t p = 0; p < C; p++)
            fprintf(fp, " %8llu", (unsigned long long)m->confusion[t * C + p]);
        fputc('\n', fp);
    }
}

void metrics_print(FILE *fp, const metrics_t *m) {
    s_print_summary(fp, m);
    s_print_table(fp, m);
    s_print_confusion(fp, m);
}
