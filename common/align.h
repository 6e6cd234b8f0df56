/* align.h — Hessian and gradient alignment of the softmax classifier head (DESIGN §6.2).
 *
 * Pure functions over flat float arrays; nothing here allocates memory the caller owns.
 *
 * Conventions
 *   W (C, d) row-major and b (C) are the head, laid out as torch.nn.Linear. The bias is
 *   folded in as a constant-1 feature: Wt = [W | b] is (C, D) with D = d + 1, and
 *   x~_i = [x_i, 1]. Every statistic (g, D, H[V], penalty targets, penalty gradients) is a
 *   (C, D) array in that folded layout: entry (c, j) at [c*D + j], column d is the bias.
 *   X (n, d) are the head inputs WITHOUT the 1 column (the bias column is implicit);
 *   P (n, C) the softmax probabilities at the current Wt; y (n) labels, 0 <= y_i < C
 *   (the data layer validates labels against the model spec; here it is an invariant).
 *   A_i = diag(p_i) - p_i p_i^T, applied as A_i v = p_i (.) v - p_i (p_i . v).
 *
 * Statistics over the n samples of a batch (n = 0 gives zeros):
 *   g      = (1/n) sum_i (p_i - e_{y_i}) x~_i^T                 mean softmax-CE gradient
 *   H[V]   = (1/n) sum_i (A_i V x~_i) x~_i^T                    Hessian of that loss times V
 *   D_cj   = (1/n) sum_i p_ic (1 - p_ic) x~_ij^2                exact Hessian diagonal
 *
 * Penalties (targets fixed for the round) and their exact gradients w.r.t. Wt, where g, D
 * and H are recomputed on the same batch and so depend on Wt through P:
 *   R_g = beta  |g - gbar|^2      grad = 2 beta H[g - gbar]
 *   R_D = alpha |D - Dbar|^2      U = 2 alpha (D - Dbar), a_ic = sum_j U_cj x~_ij^2,
 *                                 b_ic = a_ic (1 - 2 p_ic) p_ic,
 *                                 grad = (1/n) sum_i (b_i - p_i sum_c b_ic) x~_i^T
 *   R_H = alpha |H[g] - Hgbar|^2  U = 2 alpha (H[g] - Hgbar), s_i = g x~_i, u_i = U x~_i,
 *                                 r_i = u_i (.) (s_i - (p_i . s_i) 1) - (u_i . p_i) s_i,
 *                                 grad = (1/n) sum_i (A_i r_i) x~_i^T + H[H[U]]
 * (each verified against central finite differences of the penalty in tests/test_align.c).
 * Only the head is differentiated: the inputs X are constants here.
 *
 * Cost: every function is O(n C d) (two sgemm of that size plus O(nC + Cd) loops);
 * align_penalty_hgp is O(n C d) plus two H[.] calls. Each call makes at most one internal
 * scratch allocation (freed before it returns), none per sample. */
#ifndef CONCORD_ALIGN_H
#define CONCORD_ALIGN_H

#include <stddef.h>
#include <stdint.h>

/* P (n, C) = row-wise softmax of the logits X W^T + b, with Wt (C, d+1) folded. */
void align_softmax_probs(float *P, const float *X, const float *Wt, size_t n, size_t C,
                         size_t d);
/* Same with the head given unfolded: W (C, d), b (C). */
void align_softmax_probs_wb(float *P, const float *X, const float *W, const float *b,
                            size_t n, size_t C, size_t d);

/* Wt (C, d+1) = [W | b]; W (C, d), b (C). Overwrites Wt. */
void align_fold(float *Wt, const float *W, const float *b, size_t C, size_t d);
/* dW (C, d) += dWt[:, :d] and db (C) += dWt[:, d]: scatters a folded gradient into a
 * model's separate weight and bias gradients (ADDS, like every backward). */
void align_unfold_add(float *dW, float *db, const float *dWt, size_t C, size_t d);

/* g (C, d+1) = mean softmax-CE gradient of the head (overwrites g). */
void align_head_grad(float *g, const float *X, const float *P, const int32_t *y, size_t n,
                     size_t C, size_t d);
/* out (C, d+1) = H[V] for V (C, d+1) (overwrites out; out must not alias V). */
void align_hvp(float *out, const float *V, const float *X, const float *P, size_t n,
               size_t C, size_t d);
/* D (C, d+1) = exact diagonal of the head Hessian (overwrites D). */
void align_hess_diag(float *D, const float *X, const float *P, size_t n, size_t C, size_t d);

/* Penalties: each returns its value and ADDS its gradient w.r.t. Wt into dWt (C, d+1).
 * Targets are (C, d+1) constants owned by the caller. dWt must not alias any input. */
double align_penalty_grad(float *dWt, const float *X, const float *P, const int32_t *y,
                          const float *g_target, double beta, size_t n, size_t C, size_t d);
double align_penalty_hess_diag(float *dWt, const float *X, const float *P,
                               const float *D_target, double alpha, size_t n, size_t C,
                               size_t d);
double align_penalty_hgp(float *dWt, const float *X, const float *P, const int32_t *y,
                         const float *Hg_target, double alpha, size_t n, size_t C, size_t d);

/* ||a - b||_2 over len floats, accumulated in double (the reported gaps ||g_k - gbar||,
 * ||D_k - Dbar||). */
double align_gap(const float *a, const float *b, size_t len);
/* out (len) = sum_k weights[k] * stats[k] (len), accumulated in double: the pooled targets
 * gbar = sum_k pi_k g_k, Dbar = sum_k pi_k D_k, Hgbar = sum_k pi_k H_k[gbar] with
 * pi_k = n_k / N. out may alias none of stats[k]. */
void align_targets_combine(float *out, const float *const *stats, const double *weights,
                           size_t K, size_t len);

#endif
