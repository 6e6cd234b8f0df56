/* head_stats.h — DESIGN §6.2 on a whole model and dataset: the head statistics a client
 * reports in the stats phase (g, D, H[V] over its training data at θ_t), and the alignment
 * penalty as a training regulariser (train_penalty_fn) that adds its gradient into the
 * head's part of the parameter vector.
 *
 * All statistics use the folded head layout of align.h: (C, d+1), bias in column d. Over a
 * dataset they are the exact means over all rows (computed in chunks, each chunk's mean
 * weighted by its share), in evaluation mode (no dropout), so Σ_k π_k g_k over hospitals
 * equals g on the pooled data. */
#ifndef CONCORD_HEAD_STATS_H
#define CONCORD_HEAD_STATS_H

#include <stddef.h>

#include "dataset.h"
#include "model.h"

enum { ALIGN_GRADIENT = 1u, ALIGN_HESS_DIAG = 2u, ALIGN_HGP = 4u };

/* "none" or a comma list of gradient, hessian_diag, hgp -> bit mask. Returns 0 or -1. */
int align_variants_parse(const char *text, unsigned *mask);

/* C * (d + 1) for m's head. */
size_t head_stats_len(const model_t *m);

/* g and D (each head_stats_len floats) of the mean loss over ds at m's parameters. Either
 * output may be NULL. */
void head_stats_compute(model_t *m, const dataset_t *ds, float *g, float *D);

/* out = H[V] of the mean loss over ds (V and out head_stats_len floats). */
void head_stats_hvp(model_t *m, const dataset_t *ds, const float *V, float *out);

/* Default relative step of the feature-layer propagation (align_penalty_t.propagate_eps). */
#define ALIGN_PROPAGATE_EPS 1e-3f

/* The alignment penalty of one round: targets fixed, weights α (Hessian terms) and β
 * (gradient term). Targets for variants not selected may be NULL.
 *
 * propagate (optional, DESIGN §6.2): the gradient term R_g = β‖g − ḡ‖² also reaches the
 * feature layers θ. With u = g − ḡ held fixed, ∇_θ R_g = 2β ∇_θ⟨g, u⟩, taken by central
 * differences of the batch's mean-CE parameter gradient along the head direction u:
 *   ∇_θ⟨g, u⟩ ≈ [∇_θL(W + εu) − ∇_θL(W − εu)] / 2ε,
 * with ε = propagate_eps·max(1, ‖W̃‖)/‖u‖ (W̃ the folded head): the head moves by a fixed
 * share of its norm whatever the size of u, so the difference stays well above float
 * rounding. L is the plain mean cross-entropy, the loss whose head gradient g is. */
typedef struct {
    unsigned variants;
    float alpha, beta;
    const float *g_target, *D_target, *Hg_target;   /* (C, d+1) each */
    float *scratch;                                  /* (C, d+1), owned by the caller */
    int propagate;                                   /* R_g reaches the feature layers */
    float propagate_eps;                             /* relative step; <= 0: ALIGN_PROPAGATE_EPS */
} align_penalty_t;

/* train_penalty_fn over an align_penalty_t: value of Σ selected penalties on the batch,
 * gradient added into reg_grad at the head's weight and bias offsets — and, with propagate
 * and the gradient variant on, R_g's feature-layer gradient at every offset before the head.
 *
 * The propagation costs two extra backward passes and two head softmaxes, no forward: only
 * the head moves, so the feature activations (and dropout masks) of the batch's forward pass
 * hold at both points. It must therefore run after the batch's own backward passes (it
 * overwrites the model's backward scratch, not its forward state). m's head parameters are
 * moved and put back bit for bit; the head's entries of reg_grad keep the exact analytic
 * gradient (the finite difference is used for θ only). */
double align_penalty_train(void *ctx, model_t *m, const float *probs, const int32_t *y, int B,
                           float *reg_grad);

#endif
