/* fedce.c — see fedce.h for the formulas.
 *
 * No BLAS here: every kernel mixes float32 inputs with double accumulators (S is double),
 * and OpenBLAS has no mixed-precision routine but dsdot, whose accumulation precision is
 * kernel-dependent and whose length is an int. The sums are blocked instead (4 lanes over
 * blocks of 1024), which both pipelines well and bounds the rounding error by
 * (264 + ⌈P/1024⌉)·u — the bound fedce_cancel_tol relies on. */
#include "fedce.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { S_BLOCK = 1024 };

int fedce_mode_parse(const char *s, fedce_mode_t *mode) {
    if (!s || !mode) return CC_ERR_ARG;
    if (strcmp(s, "plus") == 0) *mode = FEDCE_PLUS;
    else if (strcmp(s, "times") == 0) *mode = FEDCE_TIMES;
    else return CC_ERR_ARG;
    return 0;
}

const char *fedce_mode_name(fedce_mode_t mode) {
    return mode == FEDCE_PLUS ? "plus" : mode == FEDCE_TIMES ? "times" : "?";
}

/* ---- running means ---------------------------------------------------------------- */

int fedce_mean_push(fedce_mean_t *m, double x, cc_err_t *err) {
    if (!isfinite(x)) return cc_err_set(err, CC_ERR_ARG, "fedce: value %g is not finite", x);
    m->sum += x;
    m->n++;
    return 0;
}

double fedce_mean_value(const fedce_mean_t *m, double if_empty) {
    return m->n ? m->sum / (double)m->n : if_empty;
}

double fedce_grad_contrib(const fedce_mean_t *cos_hist) {
    return fmax(0.0, 1.0 - fedce_mean_value(cos_hist, 0.0));
}

double fedce_data_contrib(const fedce_mean_t *score_hist) {
    return 1.0 - fedce_mean_value(score_hist, 0.0);
}

int fedce_client_score(double *b, fedce_mean_t *hist, int scored, double score, cc_err_t *err) {
    int rc = 0;
    if (scored) rc = fedce_mean_push(hist, score, err);
    else if (hist->n == 0) rc = fedce_mean_push(hist, 0.0, err); /* the reference's round 0 */
    if (rc) return rc;
    *b = fedce_data_contrib(hist);
    return 0;
}

/* ---- registry, coefficients, weights ------------------------------------------------ */

/* part: K distinct indices < n_reg. */
static int s_check_part(size_t n_reg, const size_t *part, size_t K, cc_err_t *err) {
    if (K == 0 || !part) return cc_err_set(err, CC_ERR_ARG, "fedce: no participants");
    uint8_t *hit = cc_xcalloc(n_reg, 1);
    int rc = 0;
    for (size_t k = 0; k < K; k++) {
        if (part[k] >= n_reg) {
            rc = cc_err_set(err, CC_ERR_ARG, "fedce: participant %zu: index %zu outside the registry (%zu)",
                            k, part[k], n_reg);
            goto done;
        }
        if (hit[part[k]]) {
            rc = cc_err_set(err, CC_ERR_ARG, "fedce: client %zu appears twice among the participants", part[k]);
            goto done;
        }
        hit[part[k]] = 1;
    }
done:
    free(hit);
    return rc;
}

int fedce_priors(double *c, const fedce_client_t *reg, size_t n_reg, const size_t *part,
                 size_t K, cc_err_t *err) {
    int rc = s_check_part(n_reg, part, K, err);
    if (rc) return rc;
    size_t n_new = 0;
    double known_sum = 0.0;
    for (size_t k = 0; k < K; k++) {
        const fedce_client_t *r = &reg[part[k]];
        if (!r->seen) {
            n_new++;
            continue;
        }
        if (!isfinite(r->coef) || r->coef < 0.0)
            return cc_err_set(err, CC_ERR_ARG, "fedce: client %zu has coefficient %g", part[k], r->coef);
        known_sum += r->coef;
    }
    double share_new = 1.0 / (double)K;
    double known_mass = 1.0 - (double)n_new / (double)K; /* what the known participants share */
    size_t n_known = K - n_new;
    for (size_t k = 0; k < K; k++) {
        const fedce_client_t *r = &reg[part[k]];
        if (!r->seen) c[k] = share_new;
        else if (known_sum > 0.0) c[k] = known_mass * (r->coef / known_sum);
        else c[k] = known_mass / (double)n_known; /* all previous weights 0: split evenly */
    }
    return 0;
}

/* Clips x (K) at ε into y and normalises y to sum 1. */
static void s_clip_normalise(double *y, const double *x, size_t K) {
    double sum = 0.0;
    for (size_t k = 0; k < K; k++) sum += fmax(x[k], FEDCE_EPS);
    for (size_t k = 0; k < K; k++) y[k] = fmax(x[k], FEDCE_EPS) / sum;
}

int fedce_combine(double *w, const double *a, const double *b, size_t K, fedce_mode_t mode,
                  cc_err_t *err) {
    if (K == 0) return cc_err_set(err, CC_ERR_ARG, "fedce: no participants");
    if (mode != FEDCE_PLUS && mode != FEDCE_TIMES)
        return cc_err_set(err, CC_ERR_ARG, "fedce: unknown combination mode %d", (int)mode);
    for (size_t k = 0; k < K; k++)
        if (!isfinite(a[k]) || !isfinite(b[k]))
            return cc_err_set(err, CC_ERR_ARG, "fedce: participant %zu: a = %g, b = %g not finite", k, a[k], b[k]);
    if (K == 1) {
        w[0] = 1.0;
        return 0;
    }
    double *ah = cc_xmalloc(3 * K * sizeof *ah), *bh = ah + K, *v = bh + K;
    s_clip_normalise(ah, a, K);
    s_clip_normalise(bh, b, K);
    for (size_t k = 0; k < K; k++) v[k] = mode == FEDCE_PLUS ? 0.5 * (ah[k] + bh[k]) : ah[k] * bh[k];
    s_clip_normalise(w, v, K);
    free(ah);
    return 0;
}

int fedce_round_weights(double *w, double *a_out, fedce_client_t *reg, size_t n_reg,
                        const size_t *part, size_t K, const double *cos, const double *b,
                        fedce_mode_t mode, cc_err_t *err) {
    int rc = s_check_part(n_reg, part, K, err);
    if (rc) return rc;
    if (K == 1) { /* FedCE needs two participants: weight 1, nothing recorded */
        w[0] = 1.0;
        if (a_out) a_out[0] = 1.0;
        return 0;
    }
    if (mode != FEDCE_PLUS && mode != FEDCE_TIMES)
        return cc_err_set(err, CC_ERR_ARG, "fedce: unknown combination mode %d", (int)mode);
    for (size_t k = 0; k < K; k++) {
        if (!isfinite(cos[k]) || !isfinite(b[k]))
            return cc_err_set(err, CC_ERR_ARG, "fedce: client %zu: cos = %g, b = %g not finite",
                              part[k], cos[k], b[k]);
    }
    double *a = cc_xmalloc(K * sizeof *a);
    for (size_t k = 0; k < K; k++) {
        fedce_mean_t m = reg[part[k]].cos;
        m.sum += cos[k];
        m.n++;
        a[k] = fedce_grad_contrib(&m);
    }
    rc = fedce_combine(w, a, b, K, mode, err); /* inputs checked above: cannot fail */
    if (rc == 0) {
        for (size_t k = 0; k < K; k++) {
            fedce_client_t *r = &reg[part[k]];
            r->cos.sum += cos[k];
            r->cos.n++;
            r->coef = w[k];
            r->seen = 1;
            if (a_out) a_out[k] = a[k];
        }
    }
    free(a);
    return rc;
}

/* ---- blocked double sums -------------------------------------------------------------- */

/* Σ x_i y_i (float·float). */
static double s_dot_ff(const float *x, const float *y, size_t n) {
    double total = 0.0;
    for (size_t i0 = 0; i0 < n; i0 += S_BLOCK) {
        size_t m = n - i0 < S_BLOCK ? n - i0 : S_BLOCK, i = 0;
        const float *xb = x + i0, *yb = y + i0;
        double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
        for (; i + 4 <= m; i += 4) {
            a0 += (double)xb[i] * yb[i];
            a1 += (double)xb[i + 1] * yb[i + 1];
            a2 += (double)xb[i + 2] * yb[i + 2];
            a3 += (double)xb[i + 3] * yb[i + 3];
        }
        for (; i < m; i++) a0 += (double)xb[i] * yb[i];
        total += (a0 + a1) + (a2 + a3);
    }
    return total;
}

/* Σ x_i y_i (float·double). */
static double s_dot_fd(const float *x, const double *y, size_t n) {
    double total = 0.0;
    for (size_t i0 = 0; i0 < n; i0 += S_BLOCK) {
        size_t m = n - i0 < S_BLOCK ? n - i0 : S_BLOCK, i = 0;
        const float *xb = x + i0;
        const double *yb = y + i0;
        double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
        for (; i + 4 <= m; i += 4) {
            a0 += xb[i] * yb[i];
            a1 += xb[i + 1] * yb[i + 1];
            a2 += xb[i + 2] * yb[i + 2];
            a3 += xb[i + 3] * yb[i + 3];
        }
        for (; i < m; i++) a0 += xb[i] * yb[i];
        total += (a0 + a1) + (a2 + a3);
    }
    return total;
}

/* Σ y_i² (double). */
static double s_sq_d(const double *y, size_t n) {
    double total = 0.0;
    for (size_t i0 = 0; i0 < n; i0 += S_BLOCK) {
        size_t m = n - i0 < S_BLOCK ? n - i0 : S_BLOCK, i = 0;
        const double *yb = y + i0;
        double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
        for (; i + 4 <= m; i += 4) {
            a0 += yb[i] * yb[i];
            a1 += yb[i + 1] * yb[i + 1];
            a2 += yb[i + 2] * yb[i + 2];
            a3 += yb[i + 3] * yb[i + 3];
        }
        for (; i < m; i++) a0 += yb[i] * yb[i];
        total += (a0 + a1) + (a2 + a3);
    }
    return total;
}

double fedce_cancel_tol(size_t P) {
    return 8.0 * (264.0 + (double)((P + S_BLOCK - 1) / S_BLOCK)) * DBL_EPSILON;
}

/* ---- gradient-space cosines ----------------------------------------------------------- */

fedce_cos_t *fedce_cos_new(size_t K, size_t P) {
    if (K == 0) return NULL;
    fedce_cos_t *s = cc_xcalloc(1, sizeof *s);
    s->K = K;
    s->P = P;
    s->state = FEDCE_COS_ACCUM;
    s->S = cc_xcalloc(P, sizeof *s->S);
    s->c = cc_xcalloc(3 * K, sizeof *s->c);
    s->sq = s->c + K;
    s->dot = s->sq + K;
    s->added = cc_xcalloc(2 * K, 1);
    s->dotted = s->added + K;
    return s;
}

void fedce_cos_destroy(fedce_cos_t **ps) {
    if (!ps || !*ps) return;
    fedce_cos_t *s = *ps;
    free(s->S);
    free(s->c);
    free(s->added);
    free(s);
    *ps = NULL;
}

int fedce_cos_add(fedce_cos_t *s, size_t k, const float *delta, double c_k, cc_err_t *err) {
    if (!s) return cc_err_set(err, CC_ERR_ARG, "fedce_cos_add: no accumulator");
    if (s->state != FEDCE_COS_ACCUM)
        return cc_err_set(err, CC_ERR_ARG, "fedce_cos_add: update %zu after pass 1 ended%s", k,
                          s->state == FEDCE_COS_FAILED ? " (accumulator failed)" : "");
    if (k >= s->K) return cc_err_set(err, CC_ERR_ARG, "fedce_cos_add: update %zu of %zu", k, s->K);
    if (s->added[k]) return cc_err_set(err, CC_ERR_ARG, "fedce_cos_add: update %zu added twice", k);
    if (!isfinite(c_k) || c_k < 0.0)
        return cc_err_set(err, CC_ERR_ARG, "fedce_cos_add: update %zu: coefficient %g", k, c_k);
    if (!delta && s->P) return cc_err_set(err, CC_ERR_ARG, "fedce_cos_add: update %zu is NULL", k);
    double *S = s->S;
    for (size_t i = 0; i < s->P; i++) S[i] += c_k * delta[i];
    double sq = s_dot_ff(delta, delta, s->P);
    if (!isfinite(sq)) {
        s->state = FEDCE_COS_FAILED; /* S holds non-finite values now */
        return cc_err_set(err, CC_ERR_ARG, "fedce_cos_add: update %zu is not finite", k);
    }
    s->c[k] = c_k;
    s->sq[k] = sq;
    s->added[k] = 1;
    s->n_added++;
    return 0;
}

int fedce_cos_dot(fedce_cos_t *s, size_t k, const float *delta, cc_err_t *err) {
    if (!s) return cc_err_set(err, CC_ERR_ARG, "fedce_cos_dot: no accumulator");
    if (s->state == FEDCE_COS_FAILED)
        return cc_err_set(err, CC_ERR_ARG, "fedce_cos_dot: accumulator failed");
    if (k >= s->K) return cc_err_set(err, CC_ERR_ARG, "fedce_cos_dot: update %zu of %zu", k, s->K);
    if (s->state == FEDCE_COS_ACCUM) {
        if (s->n_added != s->K)
            return cc_err_set(err, CC_ERR_ARG, "fedce_cos_dot: pass 1 has %zu of %zu updates",
                              s->n_added, s->K);
        s->S_sq = s_sq_d(s->S, s->P);
        if (!isfinite(s->S_sq)) { /* finite updates, but c_k·Δ_k overflowed */
            s->state = FEDCE_COS_FAILED;
            return cc_err_set(err, CC_ERR_ARG, "fedce_cos_dot: the weighted sum S is not finite");
        }
        s->state = FEDCE_COS_DOT;
    }
    if (s->dotted[k]) return cc_err_set(err, CC_ERR_ARG, "fedce_cos_dot: update %zu dotted twice", k);
    if (!delta && s->P) return cc_err_set(err, CC_ERR_ARG, "fedce_cos_dot: update %zu is NULL", k);
    double d = s_dot_fd(delta, s->S, s->P);
    if (!isfinite(d)) {
        s->state = FEDCE_COS_FAILED;
        return cc_err_set(err, CC_ERR_ARG, "fedce_cos_dot: update %zu is not finite", k);
    }
    s->dot[k] = d;
    s->dotted[k] = 1;
    s->n_dotted++;
    return 0;
}

int fedce_cos_result(const fedce_cos_t *s, double *cos, cc_err_t *err) {
    if (!s) return cc_err_set(err, CC_ERR_ARG, "fedce_cos_result: no accumulator");
    if (s->state != FEDCE_COS_DOT || s->n_dotted != s->K)
        return cc_err_set(err, CC_ERR_ARG, "fedce_cos_result: pass 2 has %zu of %zu updates%s",
                          s->n_dotted, s->K, s->state == FEDCE_COS_FAILED ? " (accumulator failed)" : "");
    double tol = fedce_cancel_tol(s->P), norm_S = sqrt(s->S_sq);
    for (size_t k = 0; k < s->K; k++) {
        double c = s->c[k], n = s->sq[k], d = s->dot[k];
        double m = s->S_sq - 2.0 * c * d + c * c * n;         /* ‖S − cΔ‖² */
        double scale = norm_S + c * sqrt(n);                  /* ≥ ‖S‖ + ‖cΔ‖ */
        if (n <= 0.0 || m <= tol * scale * scale) {           /* also clamps m < 0 */
            cos[k] = 0.0;
            continue;
        }
        double v = (d - c * n) / sqrt(n * m);
        cos[k] = v > 1.0 ? 1.0 : v < -1.0 ? -1.0 : v;
    }
    return 0;
}

int fedce_cos_all(double *cos, const float *const *deltas, const double *c, size_t K, size_t P,
                  cc_err_t *err) {
    fedce_cos_t *s = fedce_cos_new(K, P);
    if (!s) return cc_err_set(err, CC_ERR_ARG, "fedce_cos_all: no updates");
    int rc = 0;
    for (size_t k = 0; k < K && !rc; k++) rc = fedce_cos_add(s, k, deltas[k], c[k], err);
    for (size_t k = 0; k < K && !rc; k++) rc = fedce_cos_dot(s, k, deltas[k], err);
    if (!rc) rc = fedce_cos_result(s, cos, err);
    fedce_cos_destroy(&s);
    return rc;
}

/* ---- minus model ----------------------------------------------------------------------- */

static int s_check_c(const char *what, double c_k, double server_lr, cc_err_t *err) {
    if (!isfinite(c_k) || c_k < 0.0)
        return cc_err_set(err, CC_ERR_ARG, "%s: coefficient %g", what, c_k);
    if (c_k >= 1.0)
        return cc_err_set(err, CC_ERR_ARG, "%s: coefficient %g: the client was alone, no minus model",
                          what, c_k);
    if (!isfinite(server_lr)) return cc_err_set(err, CC_ERR_ARG, "%s: server lr %g", what, server_lr);
    return 0;
}

int fedce_minus_model(float *out, const float *theta_prev, const float *theta_now,
                      const float *delta_k, double c_k, double server_lr, size_t P, cc_err_t *err) {
    int rc = s_check_c("fedce_minus_model", c_k, server_lr, err);
    if (rc) return rc;
    double inv = 1.0 / (1.0 - c_k), ec = server_lr * c_k;
    for (size_t i = 0; i < P; i++) {
        double p = theta_prev[i];
        out[i] = (float)(p + ((double)theta_now[i] - p - ec * delta_k[i]) * inv);
    }
    return 0;
}

int fedce_minus_model_coord(float *out, const float *theta_prev, const float *agg,
                            const float *delta_k, double c_k, double server_lr, size_t P,
                            cc_err_t *err) {
    int rc = s_check_c("fedce_minus_model_coord", c_k, server_lr, err);
    if (rc) return rc;
    double f = server_lr / (1.0 - c_k);
    for (size_t i = 0; i < P; i++)
        out[i] = (float)(theta_prev[i] + f * ((double)agg[i] - c_k * delta_k[i]));
    return 0;
}

int fedce_minus_aggregate(float *out, const float *agg, const float *delta_k, double c_k,
                          size_t P, cc_err_t *err) {
    int rc = s_check_c("fedce_minus_aggregate", c_k, 1.0, err);
    if (rc) return rc;
    double inv = 1.0 / (1.0 - c_k);
    for (size_t i = 0; i < P; i++) out[i] = (float)(((double)agg[i] - c_k * delta_k[i]) * inv);
    return 0;
}

void fedce_cos_gram(double *cos, const float *G, size_t n, const size_t *rows, const double *c, size_t K) {
#define GRAM(i, j) ((double)((i) <= (j) ? G[(i) * n + (j)] : G[(j) * n + (i)]))
    double S2 = 0.0;
    for (size_t a = 0; a < K; a++)
        for (size_t b = 0; b < K; b++) S2 += c[a] * c[b] * GRAM(rows[a], rows[b]);
    for (size_t k = 0; k < K; k++) {
        double dS = 0.0, dd = GRAM(rows[k], rows[k]);
        for (size_t j = 0; j < K; j++) dS += c[j] * GRAM(rows[k], rows[j]);
        double num = dS - c[k] * dd, rest = S2 - 2.0 * c[k] * dS + c[k] * c[k] * dd;
        double scale = S2 + c[k] * c[k] * dd;
        cos[k] = (dd > 0.0 && rest > 1e-5 * scale) ? num / sqrt(dd * rest) : 0.0;
        if (cos[k] > 1.0) cos[k] = 1.0;
        if (cos[k] < -1.0) cos[k] = -1.0;
    }
#undef GRAM
}

#define DOTS_BLOCK 65536 /* floats: x's block (256 KiB) stays in L2 while every row streams */
#define DOTS_LANES 32

/* ⟨a, b⟩ over n ≤ DOTS_BLOCK floats: 32 independent lanes (vectorised), then the lanes in
 * order, then the tail. Symmetric in a, b bit for bit. Compiled for AVX2 and for the
 * baseline, picked at load time: the lanes do the same float multiply and add either way
 * (no FMA contraction in ISO C mode), so both give the same bits. */
__attribute__((target_clones("avx2", "default")))
static double s_block_dot(const float *a, const float *b, size_t n) {
    float acc[DOTS_LANES] = {0};
    size_t i = 0;
    for (; i + DOTS_LANES <= n; i += DOTS_LANES)
        for (size_t l = 0; l < DOTS_LANES; l++) acc[l] += a[i + l] * b[i + l];
    double sum = 0.0;
    for (size_t l = 0; l < DOTS_LANES; l++) sum += acc[l];
    for (; i < n; i++) sum += (double)(a[i] * b[i]);
    return sum;
}

/* s_block_dot of four rows against one x: each row's lanes do exactly s_block_dot's
 * operations (the same bits), but x's block is read once for the four and four rows stream
 * from memory at once, which keeps more of them in flight than one row at a time. */
__attribute__((target_clones("avx2", "default")))
static void s_block_dot4(double out[4], const float *r0, const float *r1, const float *r2, const float *r3,
                         const float *x, size_t n) {
    float a0[DOTS_LANES] = {0}, a1[DOTS_LANES] = {0}, a2[DOTS_LANES] = {0}, a3[DOTS_LANES] = {0};
    size_t i = 0;
    for (; i + DOTS_LANES <= n; i += DOTS_LANES)
        for (size_t l = 0; l < DOTS_LANES; l++) {
            float v = x[i + l];
            a0[l] += r0[i + l] * v;
            a1[l] += r1[i + l] * v;
            a2[l] += r2[i + l] * v;
            a3[l] += r3[i + l] * v;
        }
    const float *r[4] = {r0, r1, r2, r3}, *acc[4] = {a0, a1, a2, a3};
    for (int k = 0; k < 4; k++) {
        double sum = 0.0;
        for (size_t l = 0; l < DOTS_LANES; l++) sum += acc[k][l];
        for (size_t j = i; j < n; j++) sum += (double)(r[k][j] * x[j]);
        out[k] = sum;
    }
}

/* dots[i] = ⟨rows[i] + s0, x + s0⟩ over len floats for every i < n, four rows at a time. */
static void s_block_dots(double *dots, const float *const *rows, size_t n, const float *x, size_t s0, size_t len) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        s_block_dot4(dots + i, rows[i] + s0, rows[i + 1] + s0, rows[i + 2] + s0, rows[i + 3] + s0, x + s0, len);
    for (; i < n; i++) dots[i] = s_block_dot(rows[i] + s0, x + s0, len);
}

void fedce_dots(double *out, const float *const *rows, size_t n, const float *x, size_t P) {
    double *part = cc_xcalloc(n + 1, sizeof *part);
    for (size_t i = 0; i < n; i++) out[i] = 0.0;
    for (size_t s0 = 0; s0 < P; s0 += DOTS_BLOCK) {
        size_t len = P - s0 < DOTS_BLOCK ? P - s0 : DOTS_BLOCK;
        s_block_dots(part, rows, n, x, s0, len);
        for (size_t i = 0; i < n; i++) out[i] += part[i];
    }
    free(part);
}

void fedce_dots_share_start(fedce_dots_share_t *s, const float *const *rows, size_t n, const float *x, size_t P) {
    s->rows = rows, s->n = n, s->x = x, s->P = P;
    s->n_blocks = (P + DOTS_BLOCK - 1) / DOTS_BLOCK;
    s->partial = cc_xcalloc(s->n_blocks * n + 1, sizeof *s->partial);
    atomic_init(&s->next, 0);
}

void fedce_dots_share_work(fedce_dots_share_t *s) {
    for (size_t b; (b = atomic_fetch_add(&s->next, 1)) < s->n_blocks;) {
        size_t s0 = b * DOTS_BLOCK, len = s->P - s0 < DOTS_BLOCK ? s->P - s0 : DOTS_BLOCK;
        s_block_dots(s->partial + b * s->n, s->rows, s->n, s->x, s0, len);
    }
}

void fedce_dots_share_cancel(fedce_dots_share_t *s) { atomic_store(&s->next, s->n_blocks); }

void fedce_dots_share_end(fedce_dots_share_t *s, double *out) {
    for (size_t i = 0; out && i < s->n; i++) {
        out[i] = 0.0;
        for (size_t b = 0; b < s->n_blocks; b++) out[i] += s->partial[b * s->n + i]; /* fedce_dots's order */
    }
    free(s->partial);
    s->partial = NULL;
}

static void *s_dots_share_run(void *arg) {
    fedce_dots_share_work(arg);
    return NULL;
}

void fedce_dots_mt(double *out, const float *const *rows, size_t n, const float *x, size_t P, int threads) {
    if (threads > 8) threads = 8;
    if (threads < 2 || P <= DOTS_BLOCK) {
        fedce_dots(out, rows, n, x, P);
        return;
    }
    fedce_dots_share_t share;
    fedce_dots_share_start(&share, rows, n, x, P);
    pthread_t tid[8];
    int started[8] = {0};
    for (int t = 1; t < threads; t++) started[t] = pthread_create(&tid[t], NULL, s_dots_share_run, &share) == 0;
    fedce_dots_share_work(&share); /* a thread that did not start: the others take its blocks */
    for (int t = 1; t < threads; t++)
        if (started[t]) pthread_join(tid[t], NULL);
    fedce_dots_share_end(&share, out);
}
