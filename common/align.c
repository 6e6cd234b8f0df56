/* align.c — see align.h for the formulas and the folded (C, d+1) layout.
 *
 * Everything is built from three per-batch primitives, each O(n C d) or O(n C):
 *   s_project  Z (n, C) = rows z_i = M x~_i          (one sgemm + the bias column)
 *   s_apply_A  z_i <- A_i z_i                        (in place, O(C) per row)
 *   s_outer    out (C, D) (+)= scale sum_i z_i x~_i^T  (one sgemm + a column sum)
 * so H[V] = s_outer(s_apply_A(s_project(V))) / n never forms A_i or the Hessian.
 * Products run in float through sgemm; row dot products, bias-column sums and the
 * penalty values accumulate in double. */
#include "align.h"

#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static int s_blas_int(size_t v) {
    assert(v <= INT_MAX);
    return (int)v;
}

/* BLAS leading dimensions must be >= 1 even when the matrix is empty. */
static int s_ld(size_t v) { return s_blas_int(v ? v : 1); }

/* Z (n, C) = X M^T + bias: z_ic = sum_j M[c*ldm + j] X[i*d + j] + bias[c*bstride].
 * M is (C, ldm) with its first d columns used; X (n, d). */
static void s_project(float *Z, const float *X, const float *M, size_t ldm,
                      const float *bias, size_t bstride, size_t n, size_t C, size_t d) {
    if (n == 0 || C == 0) return;
    if (d == 0) {
        memset(Z, 0, n * C * sizeof *Z);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s_blas_int(n), s_blas_int(C),
                    s_blas_int(d), 1.0f, X, s_ld(d), M, s_ld(ldm), 0.0f, Z, s_ld(C));
    }
    for (size_t i = 0; i < n; i++) {
        float *z = Z + i * C;  // (C)
        for (size_t c = 0; c < C; c++) z[c] += bias[c * bstride];
    }
}

/* Z (n, C) = rows M x~_i for a folded M (C, d+1). */
static void s_project_folded(float *Z, const float *X, const float *M, size_t n, size_t C,
                             size_t d) {
    s_project(Z, X, M, d + 1, M + d, d + 1, n, C, d);
}

/* z_i <- A_i z_i = p_i (.) (z_i - p_i . z_i), for every row of Z (n, C), P (n, C). */
static void s_apply_A(float *Z, const float *P, size_t n, size_t C) {
    for (size_t i = 0; i < n; i++) {
        float *z = Z + i * C;        // (C)
        const float *p = P + i * C;  // (C)
        double dot = 0.0;
        for (size_t c = 0; c < C; c++) dot += (double)p[c] * z[c];
        for (size_t c = 0; c < C; c++) z[c] = (float)(p[c] * (z[c] - dot));
    }
}

/* out (C, d+1) = [accumulate ? out : 0] + scale * sum_i z_i x~_i^T, Z (n, C), X (n, d).
 * With X replaced by X (.) X this gives sum_i z_i (x~_i (.) x~_i)^T, since 1^2 = 1. */
static void s_outer(float *out, const float *Z, const float *X, size_t n, size_t C,
                    size_t d, double scale, int accumulate) {
    size_t D = d + 1;
    if (d > 0 && n > 0) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s_blas_int(C), s_blas_int(d),
                    s_blas_int(n), (float)scale, Z, s_ld(C), X, s_ld(d),
                    accumulate ? 1.0f : 0.0f, out, s_blas_int(D));
    } else if (!accumulate) {
        for (size_t c = 0; c < C; c++) memset(out + c * D, 0, d * sizeof *out);
    }
    for (size_t c = 0; c < C; c++) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += Z[i * C + c];
        float prev = accumulate ? out[c * D + d] : 0.0f;
        out[c * D + d] = (float)(prev + scale * s);
    }
}

static double s_inv(size_t n) { return n ? 1.0 / (double)n : 0.0; }

/* out (C, d+1) (+)= scale * sum_i (A_i V x~_i) x~_i^T; Z (n, C) scratch. */
static void s_hvp(float *out, const float *V, const float *X, const float *P, size_t n,
                  size_t C, size_t d, double scale, int accumulate, float *Z) {
    s_project_folded(Z, X, V, n, C, d);
    s_apply_A(Z, P, n, C);
    s_outer(out, Z, X, n, C, d, scale, accumulate);
}

/* g (C, d+1) = mean CE gradient; Z (n, C) scratch. */
static void s_head_grad(float *g, const float *X, const float *P, const int32_t *y, size_t n,
                        size_t C, size_t d, float *Z) {
    for (size_t k = 0; k < n * C; k++) Z[k] = P[k];
    for (size_t i = 0; i < n; i++) {
        assert(y[i] >= 0 && (size_t)y[i] < C);
        Z[i * C + (size_t)y[i]] -= 1.0f;
    }
    s_outer(g, Z, X, n, C, d, s_inv(n), 0);
}

/* X2 (n, d) = X (.) X elementwise. */
static void s_square(float *X2, const float *X, size_t n, size_t d) {
    for (size_t k = 0; k < n * d; k++) X2[k] = X[k] * X[k];
}

/* D (C, d+1) = exact Hessian diagonal given X2 = X (.) X; Q (n, C) scratch. */
static void s_hess_diag(float *D, const float *X2, const float *P, size_t n, size_t C,
                        size_t d, float *Q) {
    for (size_t k = 0; k < n * C; k++) Q[k] = P[k] * (1.0f - P[k]);
    s_outer(D, Q, X2, n, C, d, s_inv(n), 0);
}

/* diff (len) <- diff - target; returns sum of squares of the result (double). */
static double s_sub_sumsq(float *diff, const float *target, size_t len) {
    double s = 0.0;
    for (size_t k = 0; k < len; k++) {
        diff[k] -= target[k];
        s += (double)diff[k] * diff[k];
    }
    return s;
}

static void s_scale(float *v, double a, size_t len) {
    for (size_t k = 0; k < len; k++) v[k] = (float)(a * v[k]);
}

/* Row-wise softmax of the logits Z (n, C), in place. */
static void s_softmax_rows(float *Z, size_t n, size_t C) {
    for (size_t i = 0; i < n; i++) {
        float *z = Z + i * C;  // (C)
        float m = -INFINITY;
        for (size_t c = 0; c < C; c++) m = z[c] > m ? z[c] : m;
        double s = 0.0;
        for (size_t c = 0; c < C; c++) {
            z[c] = expf(z[c] - m);
            s += z[c];
        }
        for (size_t c = 0; c < C; c++) z[c] = (float)(z[c] / s);
    }
}

void align_softmax_probs(float *P, const float *X, const float *Wt, size_t n, size_t C,
                         size_t d) {
    s_project_folded(P, X, Wt, n, C, d);
    s_softmax_rows(P, n, C);
}

void align_softmax_probs_wb(float *P, const float *X, const float *W, const float *b,
                            size_t n, size_t C, size_t d) {
    s_project(P, X, W, d, b, 1, n, C, d);
    s_softmax_rows(P, n, C);
}

void align_fold(float *Wt, const float *W, const float *b, size_t C, size_t d) {
    for (size_t c = 0; c < C; c++) {
        memcpy(Wt + c * (d + 1), W + c * d, d * sizeof *Wt);
        Wt[c * (d + 1) + d] = b[c];
    }
}

void align_unfold_add(float *dW, float *db, const float *dWt, size_t C, size_t d) {
    for (size_t c = 0; c < C; c++) {
        const float *row = dWt + c * (d + 1);  // (d+1)
        for (size_t j = 0; j < d; j++) dW[c * d + j] += row[j];
        db[c] += row[d];
    }
}

void align_head_grad(float *g, const float *X, const float *P, const int32_t *y, size_t n,
                     size_t C, size_t d) {
    float *Z = cc_xmalloc(n * C * sizeof *Z);  // (n, C)
    s_head_grad(g, X, P, y, n, C, d, Z);
    free(Z);
}

void align_hvp(float *out, const float *V, const float *X, const float *P, size_t n,
               size_t C, size_t d) {
    float *Z = cc_xmalloc(n * C * sizeof *Z);  // (n, C)
    s_hvp(out, V, X, P, n, C, d, s_inv(n), 0, Z);
    free(Z);
}

void align_hess_diag(float *D, const float *X, const float *P, size_t n, size_t C, size_t d) {
    float *buf = cc_xmalloc((n * d + n * C) * sizeof *buf);
    float *X2 = buf;         // (n, d)
    float *Q = buf + n * d;  // (n, C)
    s_square(X2, X, n, d);
    s_hess_diag(D, X2, P, n, C, d, Q);
    free(buf);
}

double align_penalty_grad(float *dWt, const float *X, const float *P, const int32_t *y,
                          const float *g_target, double beta, size_t n, size_t C, size_t d) {
    size_t CD = C * (d + 1);
    float *buf = cc_xmalloc((CD + n * C) * sizeof *buf);
    float *diff = buf;    // (C, d+1): g - gbar
    float *Z = buf + CD;  // (n, C)
    s_head_grad(diff, X, P, y, n, C, d, Z);
    double value = beta * s_sub_sumsq(diff, g_target, CD);
    s_hvp(dWt, diff, X, P, n, C, d, 2.0 * beta * s_inv(n), 1, Z);
    free(buf);
    return value;
}

/* Q (n, C) <- A_i (a_i (.) (1 - 2 p_i)) per row, where Q holds a_ic on entry. */
static void s_hess_diag_adjoint(float *Q, const float *P, size_t n, size_t C) {
    for (size_t k = 0; k < n * C; k++) Q[k] *= 1.0f - 2.0f * P[k];
    s_apply_A(Q, P, n, C);
}

double align_penalty_hess_diag(float *dWt, const float *X, const float *P,
                               const float *D_target, double alpha, size_t n, size_t C,
                               size_t d) {
    size_t CD = C * (d + 1);
    float *buf = cc_xmalloc((CD + n * d + n * C) * sizeof *buf);
    float *U = buf;                // (C, d+1): D, then D - Dbar, then 2 alpha (D - Dbar)
    float *X2 = buf + CD;          // (n, d)
    float *Q = buf + CD + n * d;   // (n, C)
    s_square(X2, X, n, d);
    s_hess_diag(U, X2, P, n, C, d, Q);
    double value = alpha * s_sub_sumsq(U, D_target, CD);
    s_scale(U, 2.0 * alpha, CD);
    s_project_folded(Q, X2, U, n, C, d);  // a_i = U (x~_i (.) x~_i)
    s_hess_diag_adjoint(Q, P, n, C);
    s_outer(dWt, Q, X, n, C, d, s_inv(n), 1);
    free(buf);
    return value;
}

/* R (n, C) <- r_i = u_i (.) (s_i - p_i . s_i) - (u_i . p_i) s_i, where R holds u_i on
 * entry and S (n, C) holds s_i. */
static void s_hgp_adjoint(float *R, const float *S, const float *P, size_t n, size_t C) {
    for (size_t i = 0; i < n; i++) {
        float *u = R + i * C;        // (C)
        const float *s = S + i * C;  // (C)
        const float *p = P + i * C;  // (C)
        double ps = 0.0, up = 0.0;
        for (size_t c = 0; c < C; c++) {
            ps += (double)p[c] * s[c];
            up += (double)u[c] * p[c];
        }
        for (size_t c = 0; c < C; c++) u[c] = (float)(u[c] * (s[c] - ps) - up * s[c]);
    }
}

double align_penalty_hgp(float *dWt, const float *X, const float *P, const int32_t *y,
                         const float *Hg_target, double alpha, size_t n, size_t C, size_t d) {
    size_t CD = C * (d + 1), nC = n * C;
    float *buf = cc_xmalloc((3 * CD + 2 * nC) * sizeof *buf);
    float *g = buf;                 // (C, d+1)
    float *U = buf + CD;            // (C, d+1): H[g], then 2 alpha (H[g] - Hgbar)
    float *HU = buf + 2 * CD;       // (C, d+1): H[U]
    float *S = buf + 3 * CD;        // (n, C): s_i = g x~_i
    float *Z = buf + 3 * CD + nC;   // (n, C)
    double inv_n = s_inv(n);

    s_head_grad(g, X, P, y, n, C, d, Z);
    s_project_folded(S, X, g, n, C, d);
    memcpy(Z, S, nC * sizeof *Z);
    s_apply_A(Z, P, n, C);
    s_outer(U, Z, X, n, C, d, inv_n, 0);  // H[g]
    double value = alpha * s_sub_sumsq(U, Hg_target, CD);
    s_scale(U, 2.0 * alpha, CD);

    // Through A_i(W): (1/n) sum_i (A_i r_i) x~_i^T.
    s_project_folded(Z, X, U, n, C, d);  // u_i
    s_hgp_adjoint(Z, S, P, n, C);
    s_apply_A(Z, P, n, C);
    s_outer(dWt, Z, X, n, C, d, inv_n, 1);
    // Through g(W): H is symmetric, so <U, H[H[dW]]> = <H[H[U]], dW>.
    s_hvp(HU, U, X, P, n, C, d, inv_n, 0, Z);
    s_hvp(dWt, HU, X, P, n, C, d, inv_n, 1, Z);
    free(buf);
    return value;
}

double align_gap(const float *a, const float *b, size_t len) {
    double s = 0.0;
    for (size_t k = 0; k < len; k++) {
        double t = (double)a[k] - b[k];
        s += t * t;
    }
    return sqrt(s);
}

void align_targets_combine(float *out, const float *const *stats, const double *weights,
                           size_t K, size_t len) {
    for (size_t j = 0; j < len; j++) {
        double s = 0.0;
        for (size_t k = 0; k < K; k++) s += weights[k] * stats[k][j];
        out[j] = (float)s;
    }
}
