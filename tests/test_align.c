/* test_align.c — the §6.2 head statistics and penalty gradients, checked two ways:
 *   1. central finite differences of quantities recomputed from scratch in double
 *      (the CE loss for g, the gradient for H[V], each penalty for its gradient);
 *   2. independent double implementations written naively here: A_i formed explicitly,
 *      and the full C(d+1) x C(d+1) Hessian sum_i kron(A_i, x~_i x~_i^T) / n.
 * Every check prints its largest difference next to its tolerance. Differences are
 * relative to the largest reference entry (see s_report_floor for the one exception):
 * the implementation works in float, so 1e-3
 * leaves two orders of margin over float rounding and the O(eps^2) FD truncation. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "align.h"
#include "rng.h"
#include "util.h"

#define FD_EPS 1e-3
#define REL_TOL 1e-3
#define EXACT_TOL 1e-5 /* float implementation vs a double reference, no FD */

typedef struct {
    size_t n, C, d;
} shape_t;

/* The brute-force case of the brief first, then C = 2, C = 10, n = 1 and a few others. */
static const shape_t s_shapes[] = {
    {7, 3, 4}, {25, 2, 5}, {30, 10, 6}, {1, 3, 4}, {1, 2, 1}, {12, 4, 3}, {40, 5, 8},
};
#define N_SHAPES (sizeof s_shapes / sizeof s_shapes[0])

/* One random head and batch. */
typedef struct {
    size_t n, C, d, D;
    float *X;   // (n, d)
    int32_t *y; // (n)
    float *Wt;  // (C, D)
    float *P;   // (n, C), from align_softmax_probs at Wt
} batch_t;

/* absent >= 0 keeps that class out of y (C must be >= 2). */
static batch_t s_batch_new(shape_t sh, uint64_t seed, int absent) {
    batch_t b = {sh.n, sh.C, sh.d, sh.d + 1, NULL, NULL, NULL, NULL};
    cc_rng_t rng;
    cc_rng_seed(&rng, seed);
    b.X = cc_xmalloc((b.n * b.d + 1) * sizeof *b.X);
    b.y = cc_xmalloc((b.n + 1) * sizeof *b.y);
    b.Wt = cc_xmalloc(b.C * b.D * sizeof *b.Wt);
    b.P = cc_xmalloc((b.n * b.C + 1) * sizeof *b.P);
    for (size_t k = 0; k < b.n * b.d; k++) b.X[k] = (float)cc_rng_normal(&rng);
    for (size_t k = 0; k < b.C * b.D; k++) b.Wt[k] = (float)(0.7 * cc_rng_normal(&rng));
    for (size_t i = 0; i < b.n; i++) {
        int32_t c;
        do c = (int32_t)cc_rng_below(&rng, b.C);
        while (c == absent);
        b.y[i] = c;
    }
    align_softmax_probs(b.P, b.X, b.Wt, b.n, b.C, b.d);
    return b;
}

static void s_batch_free(batch_t *b) {
    free(b->X);
    free(b->y);
    free(b->Wt);
    free(b->P);
}

static float *s_random_floats(size_t len, double scale, uint64_t seed) {
    cc_rng_t rng;
    cc_rng_seed(&rng, seed);
    float *v = cc_xmalloc((len + 1) * sizeof *v);
    for (size_t k = 0; k < len; k++) v[k] = (float)(scale * cc_rng_normal(&rng));
    return v;
}

static double *s_to_double(const float *v, size_t len) {
    double *w = cc_xmalloc((len + 1) * sizeof *w);
    for (size_t k = 0; k < len; k++) w[k] = v[k];
    return w;
}

/* Prints and returns max |got - want| / max(max |want|, floor). floor is the magnitude of
 * the terms that were summed into want when it comes out small by cancellation (float
 * rounding is relative to those terms, not to their sum); 1e-6 otherwise. */
static double s_report_floor(const char *what, const batch_t *b, const float *got,
                             const double *want, size_t len, double tol, double floor) {
    double diff = 0.0, scale = floor > 1e-6 ? floor : 1e-6;
    for (size_t k = 0; k < len; k++) {
        diff = fmax(diff, fabs(got[k] - want[k]));
        scale = fmax(scale, fabs(want[k]));
    }
    double rel = diff / scale;
    printf("%-34s n=%-3zu C=%-2zu d=%-2zu  max|diff| %.3e  rel %.3e  (tol %.0e)\n", what,
           b ? b->n : 0, b ? b->C : 0, b ? b->d : 0, diff, rel, tol);
    cr_expect(rel <= tol, "%s: relative difference %.3e exceeds %.0e", what, rel, tol);
    return rel;
}

static double s_report(const char *what, const batch_t *b, const float *got,
                       const double *want, size_t len, double tol) {
    return s_report_floor(what, b, got, want, len, tol, 0.0);
}

/* ---- Independent double-precision references (naive loops, A_i formed explicitly) ---- */

static double s_xt(const float *X, size_t i, size_t j, size_t d) {
    return j == d ? 1.0 : (double)X[i * d + j];
}

static void ref_probs(double *P, const float *X, const double *Wt, size_t n, size_t C,
                      size_t d) {
    for (size_t i = 0; i < n; i++) {
        double m = -INFINITY, s = 0.0;
        for (size_t c = 0; c < C; c++) {
            double z = 0.0;
            for (size_t j = 0; j <= d; j++) z += Wt[c * (d + 1) + j] * s_xt(X, i, j, d);
            P[i * C + c] = z;
            m = fmax(m, z);
        }
        for (size_t c = 0; c < C; c++) s += (P[i * C + c] = exp(P[i * C + c] - m));
        for (size_t c = 0; c < C; c++) P[i * C + c] /= s;
    }
}

static double ref_loss(const float *X, const int32_t *y, const double *Wt, size_t n,
                       size_t C, size_t d) {
    double *P = cc_xmalloc((n * C + 1) * sizeof *P);
    ref_probs(P, X, Wt, n, C, d);
    double L = 0.0;
    for (size_t i = 0; i < n; i++) L -= log(P[i * C + (size_t)y[i]]);
    free(P);
    return L / (double)n;
}

static void ref_grad(double *g, const float *X, const double *P, const int32_t *y, size_t n,
                     size_t C, size_t d) {
    for (size_t c = 0; c < C; c++)
        for (size_t j = 0; j <= d; j++) {
            double s = 0.0;
            for (size_t i = 0; i < n; i++)
                s += (P[i * C + c] - (y[i] == (int32_t)c)) * s_xt(X, i, j, d);
            g[c * (d + 1) + j] = s / (double)n;
        }
}

/* A (C, C) = diag(p) - p p^T. */
static void ref_A(double *A, const double *p, size_t C) {
    for (size_t c = 0; c < C; c++)
        for (size_t e = 0; e < C; e++) A[c * C + e] = (c == e) * p[c] - p[c] * p[e];
}

static void ref_hvp(double *out, const double *V, const float *X, const double *P, size_t n,
                    size_t C, size_t d) {
    size_t D = d + 1;
    double *A = cc_xmalloc(C * C * sizeof *A), *v = cc_xmalloc(C * sizeof *v);
    memset(out, 0, C * D * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        ref_A(A, P + i * C, C);
        for (size_t c = 0; c < C; c++) {
            v[c] = 0.0;
            for (size_t j = 0; j < D; j++) v[c] += V[c * D + j] * s_xt(X, i, j, d);
        }
        for (size_t c = 0; c < C; c++) {
            double av = 0.0;
            for (size_t e = 0; e < C; e++) av += A[c * C + e] * v[e];
            for (size_t j = 0; j < D; j++) out[c * D + j] += av * s_xt(X, i, j, d) / (double)n;
        }
    }
    free(A);
    free(v);
}

static void ref_hess_diag(double *Dg, const float *X, const double *P, size_t n, size_t C,
                          size_t d) {
    for (size_t c = 0; c < C; c++)
        for (size_t j = 0; j <= d; j++) {
            double s = 0.0;
            for (size_t i = 0; i < n; i++) {
                double p = P[i * C + c], x = s_xt(X, i, j, d);
                s += p * (1.0 - p) * x * x;
            }
            Dg[c * (d + 1) + j] = s / (double)n;
        }
}

/* Hm (CD, CD) = (1/n) sum_i kron(A_i, x~_i x~_i^T), index (c, j) -> c*D + j. */
static void ref_full_hessian(double *Hm, const float *X, const double *P, size_t n, size_t C,
                             size_t d) {
    size_t D = d + 1, N = C * D;
    double *A = cc_xmalloc(C * C * sizeof *A);
    memset(Hm, 0, N * N * sizeof *Hm);
    for (size_t i = 0; i < n; i++) {
        ref_A(A, P + i * C, C);
        for (size_t c = 0; c < C; c++)
            for (size_t j = 0; j < D; j++)
                for (size_t e = 0; e < C; e++)
                    for (size_t k = 0; k < D; k++)
                        Hm[(c * D + j) * N + e * D + k] += A[c * C + e] * s_xt(X, i, j, d) *
                                                           s_xt(X, i, k, d) / (double)n;
    }
    free(A);
}

/* ---- Penalties recomputed from scratch in double at a given Wt ---- */

typedef enum { PEN_GRAD, PEN_HESS_DIAG, PEN_HGP } pen_kind_t;
static const char *const s_pen_name[] = {"R_g", "R_D", "R_H"};

static double ref_penalty(pen_kind_t kind, const batch_t *b, const double *Wt,
                          const float *target, double coef) {
    size_t n = b->n, C = b->C, d = b->d, CD = C * b->D;
    double *P = cc_xmalloc((n * C + 1) * sizeof *P);
    double *s = cc_xmalloc(CD * sizeof *s), *t = cc_xmalloc(CD * sizeof *t);
    ref_probs(P, b->X, Wt, n, C, d);
    if (kind == PEN_HESS_DIAG) {
        ref_hess_diag(s, b->X, P, n, C, d);
    } else {
        ref_grad(t, b->X, P, b->y, n, C, d);
        if (kind == PEN_HGP) ref_hvp(s, t, b->X, P, n, C, d);
        else memcpy(s, t, CD * sizeof *s);
    }
    double R = 0.0;
    for (size_t k = 0; k < CD; k++) R += (s[k] - target[k]) * (s[k] - target[k]);
    free(P);
    free(s);
    free(t);
    return coef * R;
}

static double s_penalty_impl(pen_kind_t kind, float *dWt, const batch_t *b,
                             const float *target, double coef) {
    switch (kind) {
    case PEN_GRAD:
        return align_penalty_grad(dWt, b->X, b->P, b->y, target, coef, b->n, b->C, b->d);
    case PEN_HESS_DIAG:
        return align_penalty_hess_diag(dWt, b->X, b->P, target, coef, b->n, b->C, b->d);
    case PEN_HGP:
        return align_penalty_hgp(dWt, b->X, b->P, b->y, target, coef, b->n, b->C, b->d);
    }
    return NAN;
}

/* ---- The checks, each run over several shapes ---- */

static void s_check_grad_fd(const batch_t *b) {
    size_t CD = b->C * b->D;
    float *g = cc_xmalloc(CD * sizeof *g);
    double *W = s_to_double(b->Wt, CD), *fd = cc_xmalloc(CD * sizeof *fd);
    align_head_grad(g, b->X, b->P, b->y, b->n, b->C, b->d);
    for (size_t k = 0; k < CD; k++) {
        double w = W[k];
        W[k] = w + FD_EPS;
        double Lp = ref_loss(b->X, b->y, W, b->n, b->C, b->d);
        W[k] = w - FD_EPS;
        double Lm = ref_loss(b->X, b->y, W, b->n, b->C, b->d);
        W[k] = w;
        fd[k] = (Lp - Lm) / (2.0 * FD_EPS);
    }
    s_report("g vs FD of CE loss", b, g, fd, CD, REL_TOL);
    free(g);
    free(W);
    free(fd);
}

/* H[V] against (g(W + eps V) - g(W - eps V)) / 2 eps, g and P in double. */
static void s_check_hvp_fd(const batch_t *b, uint64_t seed) {
    size_t n = b->n, C = b->C, CD = C * b->D;
    float *V = s_random_floats(CD, 1.0, seed), *hv = cc_xmalloc(CD * sizeof *hv);
    double *W = cc_xmalloc(CD * sizeof *W), *P = cc_xmalloc((n * C + 1) * sizeof *P);
    double *gp = cc_xmalloc(CD * sizeof *gp), *gm = cc_xmalloc(CD * sizeof *gm);
    align_hvp(hv, V, b->X, b->P, n, C, b->d);
    for (int sgn = 1; sgn >= -1; sgn -= 2) {
        for (size_t k = 0; k < CD; k++) W[k] = b->Wt[k] + sgn * FD_EPS * V[k];
        ref_probs(P, b->X, W, n, C, b->d);
        ref_grad(sgn > 0 ? gp : gm, b->X, P, b->y, n, C, b->d);
    }
    for (size_t k = 0; k < CD; k++) gp[k] = (gp[k] - gm[k]) / (2.0 * FD_EPS);
    s_report("H[V] vs FD of g along V", b, hv, gp, CD, REL_TOL);
    free(V), free(hv), free(W), free(P), free(gp), free(gm);
}

/* H[V] against the explicit Hessian times vec(V), D against its diagonal. */
static void s_check_bruteforce(const batch_t *b, uint64_t seed) {
    size_t n = b->n, C = b->C, N = C * b->D;
    float *V = s_random_floats(N, 1.0, seed);
    float *hv = cc_xmalloc(N * sizeof *hv), *dg = cc_xmalloc(N * sizeof *dg);
    double *W = s_to_double(b->Wt, N), *P = cc_xmalloc(n * C * sizeof *P);
    double *Hm = cc_xmalloc(N * N * sizeof *Hm), *want = cc_xmalloc(N * sizeof *want);
    ref_probs(P, b->X, W, n, C, b->d);
    ref_full_hessian(Hm, b->X, P, n, C, b->d);
    align_hvp(hv, V, b->X, b->P, n, C, b->d);
    align_hess_diag(dg, b->X, b->P, n, C, b->d);
    double terms = 0.0;  // max_r sum_k |H_rk V_k|: H[V] can be far smaller (C = 2, n = 1)
    for (size_t r = 0; r < N; r++) {
        double abs_sum = 0.0;
        want[r] = 0.0;
        for (size_t k = 0; k < N; k++) {
            want[r] += Hm[r * N + k] * V[k];
            abs_sum += fabs(Hm[r * N + k] * V[k]);
        }
        terms = fmax(terms, abs_sum);
    }
    s_report_floor("H[V] vs full Hessian * vec(V)", b, hv, want, N, EXACT_TOL, terms);
    for (size_t r = 0; r < N; r++) want[r] = Hm[r * N + r];
    s_report("D vs diag(full Hessian)", b, dg, want, N, EXACT_TOL);
    free(V), free(hv), free(dg), free(W), free(P), free(Hm), free(want);
}

/* The penalty value against the double recomputation, its gradient against central FD
 * of that recomputation over every entry of Wt. Targets are random (C, D) constants. */
static void s_check_penalty(pen_kind_t kind, const batch_t *b, uint64_t seed) {
    size_t CD = b->C * b->D;
    double coef = 0.75;
    float *target = s_random_floats(CD, 0.1, seed);
    float *dW = cc_xmalloc(CD * sizeof *dW);
    double *W = s_to_double(b->Wt, CD), *fd = cc_xmalloc(CD * sizeof *fd);
    memset(dW, 0, CD * sizeof *dW);
    double value = s_penalty_impl(kind, dW, b, target, coef);
    double want = ref_penalty(kind, b, W, target, coef);
    for (size_t k = 0; k < CD; k++) {
        double w = W[k];
        W[k] = w + FD_EPS;
        double Rp = ref_penalty(kind, b, W, target, coef);
        W[k] = w - FD_EPS;
        double Rm = ref_penalty(kind, b, W, target, coef);
        W[k] = w;
        fd[k] = (Rp - Rm) / (2.0 * FD_EPS);
    }
    char what[64];
    snprintf(what, sizeof what, "%s gradient vs FD of %s", s_pen_name[kind], s_pen_name[kind]);
    s_report(what, b, dW, fd, CD, REL_TOL);
    float v = (float)value;
    snprintf(what, sizeof what, "%s value vs double", s_pen_name[kind]);
    s_report(what, b, &v, &want, 1, EXACT_TOL);
    free(target), free(dW), free(W), free(fd);
}

static void s_check_all(shape_t sh, uint64_t seed, int absent) {
    batch_t b = s_batch_new(sh, seed, absent);
    s_check_grad_fd(&b);
    s_check_hvp_fd(&b, seed + 1);
    s_check_bruteforce(&b, seed + 2);
    for (int k = PEN_GRAD; k <= PEN_HGP; k++) s_check_penalty((pen_kind_t)k, &b, seed + 3);
    s_batch_free(&b);
}

/* ---- Tests ---- */

Test(align, head_grad_matches_fd_of_loss) {
    for (size_t s = 0; s < N_SHAPES; s++) {
        batch_t b = s_batch_new(s_shapes[s], 100 + s, -1);
        s_check_grad_fd(&b);
        s_batch_free(&b);
    }
}

Test(align, hvp_matches_fd_of_grad) {
    for (size_t s = 0; s < N_SHAPES; s++) {
        batch_t b = s_batch_new(s_shapes[s], 200 + s, -1);
        s_check_hvp_fd(&b, 250 + s);
        s_batch_free(&b);
    }
}

Test(align, hvp_and_diag_match_bruteforce_hessian) {
    for (size_t s = 0; s < N_SHAPES; s++) {
        batch_t b = s_batch_new(s_shapes[s], 300 + s, -1);
        s_check_bruteforce(&b, 350 + s);
        s_batch_free(&b);
    }
}

/* <U, H[V]> = <H[U], V>: the symmetry the R_g and R_H gradients rely on. */
Test(align, hvp_is_symmetric) {
    for (size_t s = 0; s < N_SHAPES; s++) {
        batch_t b = s_batch_new(s_shapes[s], 400 + s, -1);
        size_t CD = b.C * b.D;
        float *U = s_random_floats(CD, 1.0, 401), *V = s_random_floats(CD, 1.0, 402);
        float *HU = cc_xmalloc(CD * sizeof *HU), *HV = cc_xmalloc(CD * sizeof *HV);
        align_hvp(HU, U, b.X, b.P, b.n, b.C, b.d);
        align_hvp(HV, V, b.X, b.P, b.n, b.C, b.d);
        double uhv = 0.0, vhu = 0.0;
        for (size_t k = 0; k < CD; k++) uhv += (double)U[k] * HV[k], vhu += (double)V[k] * HU[k];
        float got = (float)uhv;
        s_report("<U,H[V]> vs <H[U],V>", &b, &got, &vhu, 1, EXACT_TOL);
        free(U), free(V), free(HU), free(HV);
        s_batch_free(&b);
    }
}

Test(align, penalty_grad_matches_fd) {
    for (size_t s = 0; s < N_SHAPES; s++) {
        batch_t b = s_batch_new(s_shapes[s], 500 + s, -1);
        s_check_penalty(PEN_GRAD, &b, 550 + s);
        s_batch_free(&b);
    }
}

Test(align, penalty_hess_diag_matches_fd) {
    for (size_t s = 0; s < N_SHAPES; s++) {
        batch_t b = s_batch_new(s_shapes[s], 600 + s, -1);
        s_check_penalty(PEN_HESS_DIAG, &b, 650 + s);
        s_batch_free(&b);
    }
}

Test(align, penalty_hgp_matches_fd) {
    for (size_t s = 0; s < N_SHAPES; s++) {
        batch_t b = s_batch_new(s_shapes[s], 700 + s, -1);
        s_check_penalty(PEN_HGP, &b, 750 + s);
        s_batch_free(&b);
    }
}

/* The reference defaults (HGP alpha = 1e-4, beta = 5e-3) on targets near the statistics:
 * small penalties must still get accurate gradients. */
Test(align, penalties_at_reference_coefficients) {
    shape_t sh = {20, 10, 6};
    batch_t b = s_batch_new(sh, 800, -1);
    size_t CD = b.C * b.D;
    double coef[] = {5e-3, 1e-4, 1e-4};
    for (int k = PEN_GRAD; k <= PEN_HGP; k++) {
        float *target = s_random_floats(CD, 0.02, 801 + k), *dW = cc_xmalloc(CD * sizeof *dW);
        double *W = s_to_double(b.Wt, CD), *fd = cc_xmalloc(CD * sizeof *fd);
        memset(dW, 0, CD * sizeof *dW);
        (void)s_penalty_impl((pen_kind_t)k, dW, &b, target, coef[k]);
        for (size_t j = 0; j < CD; j++) {
            double w = W[j];
            W[j] = w + FD_EPS;
            double Rp = ref_penalty((pen_kind_t)k, &b, W, target, coef[k]);
            W[j] = w - FD_EPS;
            double Rm = ref_penalty((pen_kind_t)k, &b, W, target, coef[k]);
            W[j] = w;
            fd[j] = (Rp - Rm) / (2.0 * FD_EPS);
        }
        s_report(s_pen_name[k], &b, dW, fd, CD, REL_TOL);
        free(target), free(dW), free(W), free(fd);
    }
    s_batch_free(&b);
}

/* Penalties ADD into dWt: two calls on the same buffer give twice one call. */
Test(align, penalties_accumulate) {
    shape_t sh = {9, 4, 3};
    batch_t b = s_batch_new(sh, 900, -1);
    size_t CD = b.C * b.D;
    float *target = s_random_floats(CD, 0.1, 901);
    float *once = cc_xmalloc(CD * sizeof *once), *twice = cc_xmalloc(CD * sizeof *twice);
    for (int k = PEN_GRAD; k <= PEN_HGP; k++) {
        memset(once, 0, CD * sizeof *once);
        memset(twice, 0, CD * sizeof *twice);
        double v1 = s_penalty_impl((pen_kind_t)k, once, &b, target, 1.0);
        double v2 = s_penalty_impl((pen_kind_t)k, twice, &b, target, 1.0);
        v2 = s_penalty_impl((pen_kind_t)k, twice, &b, target, 1.0);
        cr_expect_eq(v1, v2, "%s value changed between calls", s_pen_name[k]);
        double *want = cc_xmalloc(CD * sizeof *want);
        for (size_t j = 0; j < CD; j++) want[j] = 2.0 * once[j];
        s_report("second call adds", &b, twice, want, CD, EXACT_TOL);
        free(want);
    }
    free(target), free(once), free(twice);
    s_batch_free(&b);
}

/* gbar = sum_k pi_k g_k, Dbar = sum_k pi_k D_k and sum_k pi_k H_k[v] with pi_k = n_k / N
 * equal the same statistics computed on the concatenated shards. */
Test(align, pooled_targets_equal_pooled_data) {
    const size_t nk[] = {5, 11, 1, 8};
    const size_t K = 4, C = 4, d = 5, D = d + 1, CD = C * D;
    size_t N = 0;
    for (size_t k = 0; k < K; k++) N += nk[k];
    shape_t sh = {N, C, d};
    batch_t all = s_batch_new(sh, 1000, -1);
    float *V = s_random_floats(CD, 1.0, 1001);
    float *stat[3][4];  // [g, D, H[V]][shard] (C, D)
    double pi[4];
    for (size_t k = 0, row = 0; k < K; row += nk[k], k++) {
        const float *X = all.X + row * d, *P = all.P + row * C;
        for (int s = 0; s < 3; s++) stat[s][k] = cc_xmalloc(CD * sizeof(float));
        align_head_grad(stat[0][k], X, P, all.y + row, nk[k], C, d);
        align_hess_diag(stat[1][k], X, P, nk[k], C, d);
        align_hvp(stat[2][k], V, X, P, nk[k], C, d);
        pi[k] = (double)nk[k] / (double)N;
    }
    float *pooled = cc_xmalloc(CD * sizeof *pooled), *direct = cc_xmalloc(CD * sizeof *direct);
    const char *names[] = {"gbar vs g on pooled data", "Dbar vs D on pooled data",
                           "sum pi_k H_k[v] vs pooled H[v]"};
    for (int s = 0; s < 3; s++) {
        align_targets_combine(pooled, (const float *const *)stat[s], pi, K, CD);
        if (s == 0) align_head_grad(direct, all.X, all.P, all.y, N, C, d);
        if (s == 1) align_hess_diag(direct, all.X, all.P, N, C, d);
        if (s == 2) align_hvp(direct, V, all.X, all.P, N, C, d);
        double *want = s_to_double(direct, CD);
        s_report(names[s], &all, pooled, want, CD, EXACT_TOL);
        free(want);
        for (size_t k = 0; k < K; k++) free(stat[s][k]);
    }
    free(V), free(pooled), free(direct);
    s_batch_free(&all);
}

Test(align, edge_single_sample) {
    shape_t a = {1, 3, 4}, b = {1, 10, 2}, c = {1, 2, 1};
    s_check_all(a, 1100, -1);
    s_check_all(b, 1110, -1);
    s_check_all(c, 1120, -1);
}

Test(align, edge_class_absent_from_batch) {
    shape_t a = {9, 4, 3}, b = {15, 10, 4};
    s_check_all(a, 1200, 2);
    s_check_all(b, 1210, 0);
}

Test(align, edge_two_classes) {
    shape_t a = {17, 2, 6}, b = {3, 2, 2};
    s_check_all(a, 1300, -1);
    s_check_all(b, 1310, 1);  // only class 0 present
}

Test(align, edge_no_features_bias_only) {
    shape_t a = {6, 3, 0};
    s_check_all(a, 1350, -1);
}

/* n = 0: every statistic is zero, the penalties are the targets' squared norms with zero
 * gradient, and nothing reads X, P or y. */
Test(align, edge_empty_batch) {
    size_t C = 3, d = 4, CD = C * (d + 1);
    float *t = s_random_floats(CD, 1.0, 1400), *s = cc_xmalloc(CD * sizeof *s);
    float *dW = cc_xcalloc(CD, sizeof *dW);
    double sq = 0.0;
    for (size_t k = 0; k < CD; k++) sq += (double)t[k] * t[k];
    align_head_grad(s, NULL, NULL, NULL, 0, C, d);
    for (size_t k = 0; k < CD; k++) cr_expect_eq(s[k], 0.0f);
    align_hess_diag(s, NULL, NULL, 0, C, d);
    for (size_t k = 0; k < CD; k++) cr_expect_eq(s[k], 0.0f);
    align_hvp(s, t, NULL, NULL, 0, C, d);
    for (size_t k = 0; k < CD; k++) cr_expect_eq(s[k], 0.0f);
    cr_expect_float_eq(align_penalty_grad(dW, NULL, NULL, NULL, t, 2.0, 0, C, d), 2 * sq, 1e-5);
    cr_expect_float_eq(align_penalty_hess_diag(dW, NULL, NULL, t, 2.0, 0, C, d), 2 * sq, 1e-5);
    cr_expect_float_eq(align_penalty_hgp(dW, NULL, NULL, NULL, t, 2.0, 0, C, d), 2 * sq, 1e-5);
    for (size_t k = 0; k < CD; k++) cr_expect_eq(dW[k], 0.0f);
    free(t), free(s), free(dW);
}

/* Big enough for OpenBLAS's blocked kernels; no FD, the double references directly. */
Test(align, large_batch_matches_double_reference) {
    shape_t sh = {700, 10, 64};
    batch_t b = s_batch_new(sh, 1500, -1);
    size_t n = b.n, C = b.C, d = b.d, CD = C * b.D;
    float *V = s_random_floats(CD, 1.0, 1501), *got = cc_xmalloc(CD * sizeof *got);
    double *W = s_to_double(b.Wt, CD), *P = cc_xmalloc(n * C * sizeof *P);
    double *want = cc_xmalloc(CD * sizeof *want), *Vd = s_to_double(V, CD);
    ref_probs(P, b.X, W, n, C, d);
    align_head_grad(got, b.X, b.P, b.y, n, C, d);
    ref_grad(want, b.X, P, b.y, n, C, d);
    s_report("g vs double (large)", &b, got, want, CD, EXACT_TOL);
    align_hvp(got, V, b.X, b.P, n, C, d);
    ref_hvp(want, Vd, b.X, P, n, C, d);
    s_report("H[V] vs double (large)", &b, got, want, CD, EXACT_TOL);
    align_hess_diag(got, b.X, b.P, n, C, d);
    ref_hess_diag(want, b.X, P, n, C, d);
    s_report("D vs double (large)", &b, got, want, CD, EXACT_TOL);
    free(V), free(got), free(W), free(P), free(want), free(Vd);
    s_batch_free(&b);
}

Test(align, softmax_probs_match_double_and_unfolded) {
    shape_t sh = {13, 5, 7};
    batch_t b = s_batch_new(sh, 1600, -1);
    size_t n = b.n, C = b.C, d = b.d;
    double *W = s_to_double(b.Wt, C * b.D), *P = cc_xmalloc(n * C * sizeof *P);
    ref_probs(P, b.X, W, n, C, d);
    s_report("P vs double softmax", &b, b.P, P, n * C, EXACT_TOL);
    float *Wu = cc_xmalloc(C * d * sizeof *Wu), *bu = cc_xmalloc(C * sizeof *bu);
    float *P2 = cc_xmalloc(n * C * sizeof *P2);
    for (size_t c = 0; c < C; c++) {
        memcpy(Wu + c * d, b.Wt + c * b.D, d * sizeof *Wu);
        bu[c] = b.Wt[c * b.D + d];
    }
    align_softmax_probs_wb(P2, b.X, Wu, bu, n, C, d);
    cr_expect_arr_eq(P2, b.P, n * C * sizeof *P2, "folded and unfolded softmax differ");
    // Logits of +-1e4 must not overflow: the row max is subtracted first.
    for (size_t k = 0; k < C * b.D; k++) b.Wt[k] *= 1e4f;
    align_softmax_probs(P2, b.X, b.Wt, n, C, d);
    for (size_t i = 0; i < n; i++) {
        double s = 0.0;
        for (size_t c = 0; c < C; c++) {
            cr_expect(isfinite(P2[i * C + c]) && P2[i * C + c] >= 0.0f);
            s += P2[i * C + c];
        }
        cr_expect(fabs(s - 1.0) < 1e-6, "row %zu sums to %.9f", i, s);
    }
    free(W), free(P), free(Wu), free(bu), free(P2);
    s_batch_free(&b);
}

Test(align, fold_and_unfold_add) {
    const size_t C = 3, d = 2;
    const float W[] = {1, 2, 3, 4, 5, 6}, b[] = {7, 8, 9};
    const float want_t[] = {1, 2, 7, 3, 4, 8, 5, 6, 9};
    float Wt[9], dW[6] = {1, 1, 1, 1, 1, 1}, db[3] = {-1, -1, -1};
    align_fold(Wt, W, b, C, d);
    cr_expect_arr_eq(Wt, want_t, sizeof Wt);
    align_unfold_add(dW, db, Wt, C, d);
    for (size_t k = 0; k < 6; k++) cr_expect_eq(dW[k], W[k] + 1.0f, "dW[%zu]", k);
    for (size_t c = 0; c < 3; c++) cr_expect_eq(db[c], b[c] - 1.0f, "db[%zu]", c);
}

Test(align, gap_and_combine_in_double) {
    const float a[] = {3.0f, 0.0f, 1e-20f}, b[] = {0.0f, 4.0f, 0.0f};
    cr_expect_float_eq(align_gap(a, b, 3), 5.0, 1e-12);
    cr_expect_eq(align_gap(a, a, 3), 0.0);
    // 1e8 + 1 - 1e8 loses the 1 in float; the double accumulation keeps it.
    const float s0[] = {1e8f, 1.0f}, s1[] = {1.0f, 2.0f}, s2[] = {-1e8f, 3.0f};
    const float *const stats[] = {s0, s1, s2};
    const double w[] = {1.0, 1.0, 1.0};
    float out[2];
    align_targets_combine(out, stats, w, 3, 2);
    cr_expect_eq(out[0], 1.0f, "got %g", (double)out[0]);
    cr_expect_eq(out[1], 6.0f, "got %g", (double)out[1]);
}

/* sum_c g_cj = 0, since sum_c (p_ic - y_ic) = 0 for every sample. */
Test(align, grad_columns_sum_to_zero) {
    shape_t sh = {31, 6, 5};
    batch_t b = s_batch_new(sh, 1700, -1);
    float *g = cc_xmalloc(b.C * b.D * sizeof *g);
    align_head_grad(g, b.X, b.P, b.y, b.n, b.C, b.d);
    double worst = 0.0;
    for (size_t j = 0; j < b.D; j++) {
        double s = 0.0;
        for (size_t c = 0; c < b.C; c++) s += g[c * b.D + j];
        worst = fmax(worst, fabs(s));
    }
    printf("%-34s max |sum_c g_cj| %.3e  (tol 1e-6)\n", "grad columns sum", worst);
    cr_expect(worst < 1e-6);
    free(g);
    s_batch_free(&b);
}
