/* pcn.h — per-class gradient machinery of DESIGN §6.3 (Francazi et al., ICML 2023).
 *
 * A minibatch is laid out sorted by class, so class c owns rows [start[c], start[c]+count[c])
 * and its gradient is one model_backward over those rows: all C per-class gradients cost
 * one backward pass in total.
 *
 *  - PCN-SGD (client mode): direction = Σ_{c present} ∇f_c / (‖∇f_c‖ + 1e-6), f_c the loss
 *    SUMMED over the batch rows of class c, one L2 norm over all parameters.
 *  - Decomposed SGD with momentum (server mode): the local update Δ = θ_end − θ_start is
 *    kept as Σ_c Δ_c + Δ_reg. With m_c ← μ m_c + g_c, Δ_c ← Δ_c − η m_c (and the same
 *    for the regulariser part: weight decay, alignment penalties), the sum is exactly the
 *    plain SGD-with-momentum trajectory because every step is linear in the gradient. */
#ifndef CONCORD_PCN_H
#define CONCORD_PCN_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* Stable counting sort of the batch rows rows[0..B) by label y[rows[i]]: on return rows is
 * reordered and start/count (C) describe each class's block. */
void pcn_sort_rows(uint32_t *rows, int B, const int32_t *y, int C, int *start, int *count);

/* After a forward pass over a class-sorted batch: dlogits (B, C) must be the gradient of
 * the SUMMED loss. Writes dir (n_params) = Σ_c g_c/(‖g_c‖+1e-6); scratch has n_params
 * floats. Returns the number of classes present. */
int pcn_direction(model_t *m, const float *dlogits, const int *start, const int *count,
                  float *dir, float *scratch);

typedef struct {
    int C;
    size_t n;        /* parameters */
    float lr, momentum;
    float *m_class;  /* (C, n) momentum per class */
    float *d_class;  /* (C, n) accumulated update per class, Δ_c */
    float *m_reg;    /* (n) */
    float *d_reg;    /* (n) Δ_reg */
} sgd_decomp_t;

sgd_decomp_t *sgd_decomp_new(int C, size_t n, float lr, float momentum);
void sgd_decomp_destroy(sgd_decomp_t **d);
/* Zeroes momenta and accumulated updates (start of a round's local training). */
void sgd_decomp_reset(sgd_decomp_t *d);
/* One step: class_grads (C, n) are the per-class parts of the mean-loss gradient (rows
 * of absent classes are zero), reg_grad (n) the rest (weight decay, penalties; may be NULL).
 * Updates params and the per-class / regulariser accumulators. */
void sgd_decomp_step(sgd_decomp_t *d, float *params, const float *class_grads, const float *reg_grad);

/* §6.3 server mode, per client: out (n) = s·Σ_{c: present[c], ‖Δ_c‖>0} Δ_c/‖Δ_c‖ + Δ_reg,
 * with s chosen so the class part keeps the norm of Σ_c Δ_c (all classes). components is
 * (C, n), reg (n) may be NULL, present (C) may be NULL (all classes). Returns s (0 when
 * every normalised component vanishes, in which case out = Δ_reg). */
double pcn_server_normalize(float *out, const float *components, const float *reg, const uint8_t *present,
                            int C, size_t n);

#endif
