/* optim.c — see optim.h. */
#include "optim.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

optim_config_t optim_config_default(void) {
    optim_config_t c = {.kind = OPTIM_SGD, .lr = 0.05f, .momentum = 0.9f, .weight_decay = 0.0f,
                        .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    return c;
}

int optim_kind_parse(const char *text, optim_kind_t *kind) {
    if (strcmp(text, "sgd") == 0) *kind = OPTIM_SGD;
    else if (strcmp(text, "adam") == 0) *kind = OPTIM_ADAM;
    else return CC_ERR_ARG;
    return 0;
}

const char *optim_kind_name(optim_kind_t kind) { return kind == OPTIM_ADAM ? "adam" : "sgd"; }

optim_t *optim_new(const optim_config_t *cfg, size_t n) {
    optim_t *o = cc_xcalloc(1, sizeof *o);
    o->cfg = *cfg;
    o->n = n;
    o->m = cc_xalloc_floats(n);
    if (cfg->kind == OPTIM_ADAM) o->v = cc_xalloc_floats(n);
    optim_reset(o);
    return o;
}

void optim_destroy(optim_t **po) {
    if (!po || !*po) return;
    free((*po)->m);
    free((*po)->v);
    free(*po);
    *po = NULL;
}

void optim_reset(optim_t *o) {
    memset(o->m, 0, o->n * sizeof(float));
    if (o->v) memset(o->v, 0, o->n * sizeof(float));
    o->t = 0;
}

static void s_sgd(optim_t *o, float *restrict p, const float *restrict g) {
    const float lr = o->cfg.lr, mu = o->cfg.momentum, wd = o->cfg.weight_decay;
    float *restrict m = o->m;
    if (mu == 0.0f) {
        for (size_t i = 0; i < o->n; i++) p[i] -= lr * (g[i] + wd * p[i]);
        return;
    }
    for (size_t i = 0; i < o->n; i++) {
        m[i] = mu * m[i] + g[i] + wd * p[i];
        p[i] -= lr * m[i];
    }
}

static void s_adam(optim_t *o, float *restrict p, const float *restrict g) {
    const optim_config_t *c = &o->cfg;
    float *restrict m = o->m, *restrict v = o->v;
    double bc1 = 1.0 - pow(c->beta1, (double)o->t), bc2 = 1.0 - pow(c->beta2, (double)o->t);
    float step = (float)(c->lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    for (size_t i = 0; i < o->n; i++) {
        float gi = g[i] + c->weight_decay * p[i];
        m[i] = c->beta1 * m[i] + (1.0f - c->beta1) * gi;
        v[i] = c->beta2 * v[i] + (1.0f - c->beta2) * gi * gi;
        p[i] -= step * m[i] / (sqrtf(v[i]) * inv_sqrt_bc2 + c->eps);
    }
}

void optim_step(optim_t *o, float *params, float *grads) {
    o->t++;
    if (o->cfg.kind == OPTIM_ADAM) s_adam(o, params, grads);
    else s_sgd(o, params, grads);
}

float *optim_fused_begin(optim_t *o) {
    if (o->cfg.momentum == 0.0f) memset(o->m, 0, o->n * sizeof(float));
    else cblas_sscal((int)o->n, o->cfg.momentum, o->m, 1);
    return o->m;
}

void optim_fused_finish(optim_t *o, float *restrict p) {
    const float lr = o->cfg.lr, wd = o->cfg.weight_decay;
    float *restrict m = o->m;
    o->t++;
    if (wd == 0.0f) {
        cblas_saxpy((int)o->n, -lr, m, 1, p, 1);
        return;
    }
    for (size_t i = 0; i < o->n; i++) {
        m[i] += wd * p[i];
        p[i] -= lr * m[i];
    }
}
