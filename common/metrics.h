/* metrics.h — classification metrics from predicted class probabilities.
 *
 * Every definition matches scikit-learn, so numbers can be compared with published
 * results:
 *   loss               mean of -log(max(p_true, 1e-12))                     (log_loss)
 *   accuracy           fraction of rows whose argmax equals the label       (accuracy_score)
 *   balanced_accuracy  mean recall over the classes present in y; classes with support 0
 *                      are left out                              (balanced_accuracy_score)
 *   precision[c]       tp / (tp + fp), 0 when c is never predicted          (zero_division=0)
 *   recall[c]          tp / (tp + fn), 0 when c never occurs in y
 *   f1[c]              2 tp / (2 tp + fp + fn), 0 when c is neither in y nor predicted
 *   macro_f1           mean f1 over the classes in y or in the predictions  (labels = union)
 *   roc_auc            C == 2 only: AUC of the class-1 probability, ties counted as 1/2
 *                      (average ranks, Mann–Whitney); NaN if y holds a single class,
 *                      if C != 2, or if a probability is NaN
 * The prediction of a row is the argmax of its probabilities, the lowest index on ties. */
#ifndef CONCORD_METRICS_H
#define CONCORD_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "util.h"

typedef struct {
    int n_classes;            /* C */
    size_t n;                 /* rows evaluated */
    double loss;
    double accuracy;
    double balanced_accuracy;
    double macro_f1;
    double roc_auc;           /* NAN unless C == 2 and both classes present */
    double *precision;        /* (C) */
    double *recall;           /* (C) */
    double *f1;               /* (C) */
    uint64_t *confusion;      /* (C, C): rows = true class, columns = predicted class */
    size_t *support;          /* (C): rows of each true class */
} metrics_t;

/* Computes all metrics of n rows: probs (n, C) row-major, labels y (n) in [0, C).
 * On success fills *out (its arrays are owned by *out: release with metrics_free) and
 * returns 0. On failure (n == 0, C < 1, a label out of range) returns CC_ERR_ARG, fills
 * err, and leaves *out zeroed so metrics_free(out) is still safe. */
int metrics_compute(metrics_t *out, const float *probs, const int32_t *y, size_t n, int C,
                    cc_err_t *err) CC_WUR;

/* Frees the arrays of m and zeroes it; accepts NULL and an already freed m. */
void metrics_free(metrics_t *m);

/* New JSON object (caller owns the reference):
 *   {"loss", "accuracy", "balanced_accuracy", "macro_f1", "roc_auc" (null when NaN),
 *    "per_class": {"precision": [..], "recall": [..], "f1": [..], "support": [..]},
 *    "confusion": [[..], ..]}   (rows = true class)
 * Any non-finite number is written as null (JSON has no NaN). */
json_t *metrics_to_json(const metrics_t *m);

/* Writes a readable report: the summary numbers, a per-class table and the confusion
 * matrix. */
void metrics_print(FILE *fp, const metrics_t *m);

#endif
