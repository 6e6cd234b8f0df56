/* head_stats.c — see head_stats.h. */
#include "head_stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "align.h"
#include "layers.h"

int align_variants_parse(const char *text, unsigned *mask) {
    *mask = 0;
    if (strcmp(text, "none") == 0 || !text[0]) return 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", text);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        if (strcmp(tok, "gradient") == 0) *mask |= ALIGN_GRADIENT;
        else if (strcmp(tok, "hessian_diag") == 0) *mask |= ALIGN_HESS_DIAG;
        else if (strcmp(tok, "hgp") == 0) *mask |= ALIGN_HGP;
        else return -1;
    }
    return 0;
}

size_t head_stats_len(const model_t *m) {
    model_head_t h;
    model_head(m, &h);
    return (size_t)h.C * (size_t)(h.d + 1);
}

/* Calls fn(ctx, X, P, y, n) for each chunk of ds after an evaluation forward pass. */
typedef void (*s_chunk_fn)(void *ctx, const float *X, const float *P, const int32_t *y, size_t n, double share);

static void s_for_chunks(model_t *m, const dataset_t *ds, s_chunk_fn fn, void *ctx) {
    const size_t chunk = 256;
    int C = m->spec.n_classes;
    float *P = cc_xalloc_floats(chunk * (size_t)C);
    for (size_t r = 0; r < ds->n; r += chunk) {
        size_t n = ds->n - r < chunk ? ds->n - r : chunk;
        const float *logits = model_forward(m, ds->x + r * ds->d, (int)n, 0);
        softmax_forward(P, logits, (int)n, C);
        model_head_t h;
        model_head(m, &h);
        fn(ctx, h.input, P, ds->y + r, n, (double)n / (double)ds->n);
    }
    free(P);
}

typedef struct {
    float *g, *D, *tmp;
    const float *V;
    size_t C, d, len;
} s_acc_t;

static void s_add_scaled(float *acc, const float *v, size_t len, double share) {
    for (size_t i = 0; i < len; i++) acc[i] += (float)(share * v[i]);
}

static void s_stats_chunk(void *ctx, const float *X, const float *P, const int32_t *y, size_t n, double share) {
    s_acc_t *a = ctx;
    if (a->g) {
        align_head_grad(a->tmp, X, P, y, n, a->C, a->d);
        s_add_scaled(a->g, a->tmp, a->len, share);
    }
    if (a->D) {
        align_hess_diag(a->tmp, X, P, n, a->C, a->d);
        s_add_scaled(a->D, a->tmp, a->len, share);
    }
}

static void s_hvp_chunk(void *ctx, const float *X, const float *P, const int32_t *y, size_t n, double share) {
    (void)y;
    s_acc_t *a = ctx;
    align_hvp(a->tmp, a->V, X, P, n, a->C, a->d);
    s_add_scaled(a->g, a->tmp, a->len, share);
}

static s_acc_t s_acc(model_t *m, float *g, float *D, const float *V) {
    model_head_t h;
    model_head(m, &h);
    s_acc_t a = {.g = g, .D = D, .V = V, .C = (size_t)h.C, .d = (size_t)h.d, .len = head_stats_len(m)};
    a.tmp = cc_xalloc_floats(a.len);
    if (g) memset(g, 0, a.len * sizeof(float));
    if (D) memset(D, 0, a.len * sizeof(float));
    return a;
}

void head_stats_compute(model_t *m, const dataset_t *ds, float *g, float *D) {
    s_acc_t a = s_acc(m, g, D, NULL);
    s_for_chunks(m, ds, s_stats_chunk, &a);
    free(a.tmp);
}

void head_stats_hvp(model_t *m, const dataset_t *ds, const float *V, float *out) {
    s_acc_t a = s_acc(m, out, NULL, V);
    s_for_chunks(m, ds, s_hvp_chunk, &a);
    free(a.tmp);
}

/* ---- propagation of R_g into the feature layers (see head_stats.h) ---------------------- */

/* u (C, d+1) = g − ḡ on the batch; returns ‖u‖. */
static double s_grad_gap(float *u, const model_head_t *h, const float *probs, const int32_t *y, size_t n,
                         const float *g_target) {
    size_t len = (size_t)h->C * (size_t)(h->d + 1);
    align_head_grad(u, h->input, probs, y, n, (size_t)h->C, (size_t)h->d);
    double s = 0.0;
    for (size_t k = 0; k < len; k++) {
        u[k] -= g_target[k];
        s += (double)u[k] * u[k];
    }
    return sqrt(s);
}

/* Copies the head's weight (C*d) then bias (C) entries of a parameter-layout vector v into
 * out (C*d + C); s_head_restore copies them back. */
static void s_head_save(float *out, const float *v, const model_head_t *h) {
    size_t Cd = (size_t)h->C * (size_t)h->d;
    memcpy(out, v + h->w_off, Cd * sizeof(float));
    memcpy(out + Cd, v + h->b_off, (size_t)h->C * sizeof(float));
}

static void s_head_restore(float *v, const float *saved, const model_head_t *h) {
    size_t Cd = (size_t)h->C * (size_t)h->d;
    memcpy(v + h->w_off, saved, Cd * sizeof(float));
    memcpy(v + h->b_off, saved + Cd, (size_t)h->C * sizeof(float));
}

/* ‖[W | b]‖ of a head saved by s_head_save. */
static double s_head_norm(const float *saved, const model_head_t *h) {
    double s = 0.0;
    for (size_t k = 0; k < (size_t)h->C * (size_t)(h->d + 1); k++) s += (double)saved[k] * saved[k];
    return sqrt(s);
}

/* One point of the central difference: sets m's head to head0 + step·u (head0 as saved by
 * s_head_save, u folded), then ADDS scale × the parameter gradient of the batch's mean CE
 * there into grad, by one backward pass over the forward state of the batch. dl (n, C) is
 * scratch. */
static void s_fd_point(model_t *m, const model_head_t *h, const int32_t *y, size_t n, const float *head0,
                       const float *u, double step, double scale, float *dl, float *grad) {
    size_t C = (size_t)h->C, d = (size_t)h->d;
    float *W = m->params + h->w_off, *b = m->params + h->b_off;
    for (size_t c = 0; c < C; c++) {
        for (size_t j = 0; j < d; j++) W[c * d + j] = (float)(head0[c * d + j] + step * u[c * (d + 1) + j]);
        b[c] = (float)(head0[C * d + c] + step * u[c * (d + 1) + d]);
    }
    align_softmax_probs_wb(dl, h->input, W, b, n, C, d);
    for (size_t i = 0; i < n; i++) dl[i * C + (size_t)y[i]] -= 1.0f;
    for (size_t k = 0; k < n * C; k++) dl[k] = (float)(scale / (double)n * dl[k]);
    model_backward(m, dl, 0, (int)n, grad);
}

/* Adds 2β·[∇_θL(W + εu) − ∇_θL(W − εu)]/2ε into the feature-layer entries of reg_grad. Both
 * points are backpropagated straight into reg_grad with weights ±β/ε; the head's entries,
 * which the passes also touch, are put back to the analytic gradient afterwards. */
static void s_propagate(const align_penalty_t *p, model_t *m, const float *probs, const int32_t *y, int B,
                        float *reg_grad) {
    model_head_t h;
    model_head(m, &h);
    size_t C = (size_t)h.C, len = head_stats_len(m), n = (size_t)B;
    if (h.w_off == 0 || n == 0) return; /* no feature layers (softmax model), or no rows */
    float *buf = cc_xalloc_floats(3 * len + n * C);
    float *u = buf;                  // (C, d+1) g − ḡ
    float *head0 = buf + len;        // (C*d + C) the head's parameters
    float *reg_head = buf + 2 * len; // (C*d + C) reg_grad's head entries (analytic)
    float *dl = buf + 3 * len;       // (n, C)
    double u_norm = s_grad_gap(u, &h, probs, y, n, p->g_target);
    if (u_norm > 0.0 && isfinite(u_norm)) {
        s_head_save(head0, m->params, &h);
        s_head_save(reg_head, reg_grad, &h);
        double rel = p->propagate_eps > 0.0f ? p->propagate_eps : ALIGN_PROPAGATE_EPS;
        double eps = rel * fmax(1.0, s_head_norm(head0, &h)) / u_norm;
        s_fd_point(m, &h, y, n, head0, u, eps, p->beta / eps, dl, reg_grad);
        s_fd_point(m, &h, y, n, head0, u, -eps, -p->beta / eps, dl, reg_grad);
        s_head_restore(m->params, head0, &h);
        s_head_restore(reg_grad, reg_head, &h);
    }
    free(buf);
}

double align_penalty_train(void *ctx, model_t *m, const float *probs, const int32_t *y, int B, float *reg_grad) {
    const align_penalty_t *p = ctx;
    model_head_t h;
    model_head(m, &h);
    size_t C = (size_t)h.C, d = (size_t)h.d, n = (size_t)B;
    float *dWt = p->scratch;
    memset(dWt, 0, C * (d + 1) * sizeof(float));
    double value = 0.0;
    if (p->variants & ALIGN_GRADIENT) value += align_penalty_grad(dWt, h.input, probs, y, p->g_target, p->beta, n, C, d);
    if (p->variants & ALIGN_HESS_DIAG) value += align_penalty_hess_diag(dWt, h.input, probs, p->D_target, p->alpha, n, C, d);
    if (p->variants & ALIGN_HGP) value += align_penalty_hgp(dWt, h.input, probs, y, p->Hg_target, p->alpha, n, C, d);
    align_unfold_add(reg_grad + h.w_off, reg_grad + h.b_off, dWt, C, d);
    if (p->propagate && (p->variants & ALIGN_GRADIENT)) s_propagate(p, m, probs, y, B, reg_grad);
    return value;
}
