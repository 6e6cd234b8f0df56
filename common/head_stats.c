/* head_stats.c — see head_stats.h. */
#include "head_stats.h"

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
    return value;
}
