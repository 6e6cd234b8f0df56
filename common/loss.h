/* loss.h — softmax cross-entropy with optional class weights and label smoothing.
 *
 * Matches torch.nn.CrossEntropyLoss(weight=w, label_smoothing=s, reduction='mean'):
 *   q_i = (1 − s)·onehot(y_i) + s/C,   ℓ_i = −Σ_c w_c q_ic log p_ic,
 *   L = Σ_i ℓ_i / Σ_i w_{y_i}         (with w = 1: the plain mean over the batch). */
#ifndef CONCORD_LOSS_H
#define CONCORD_LOSS_H

#include <stdint.h>

typedef struct {
    const float *class_weights; /* (C) or NULL for all ones */
    float label_smoothing;      /* in [0, 1) */
} loss_opts_t;

/* From logits (B, C) and labels y (B): writes probs (B, C), and dlogits (B, C) = dL/dlogits
 * scaled by `scale` (1 for the mean loss; use a different normaliser to get e.g. the
 * per-class sums of §6.3). dlogits may be NULL. Returns L (the mean loss, unscaled). */
double loss_softmax_xent(float *probs, float *dlogits, const float *logits, const int32_t *y,
                         int B, int C, const loss_opts_t *opts, float scale);

#endif
