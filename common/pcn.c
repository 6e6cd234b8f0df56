/* pcn.c — see pcn.h. */
#include "pcn.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void pcn_sort_rows(uint32_t *rows, int B, const int32_t *y, int C, int *start, int *count) {
    memset(count, 0, (size_t)C * sizeof(int));
    for (int i = 0; i < B; i++) count[y[rows[i]]]++;
    for (int c = 0, s = 0; c < C; c++) start[c] = s, s += count[c];
    uint32_t *sorted = cc_xmalloc((size_t)B * sizeof *sorted);
    int *fill = cc_xmalloc((size_t)C * sizeof *fill);
    memcpy(fill, start, (size_t)C * sizeof(int));
    for (int i = 0; i < B; i++) sorted[fill[y[rows[i]]]++] = rows[i];
    memcpy(rows, sorted, (size_t)B * sizeof *rows);
    free(sorted);
    free(fill);
}

static double s_norm(const float *v, size_t n) {
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) acc += (double)v[i] * v[i];
    return sqrt(acc);
}

int pcn_direction(model_t *m, const float *dlogits, const int *start, const int *count,
                  float *dir, float *scratch) {
    size_t n = m->n_params;
    int C = m->spec.n_classes, present = 0;
    memset(dir, 0, n * sizeof(float));
    for (int c = 0; c < C; c++) {
        if (count[c] == 0) continue; /* classes absent from the batch are skipped */
        memset(scratch, 0, n * sizeof(float));
        model_backward(m, dlogits + (size_t)start[c] * C, start[c], count[c], scratch);
        float k = (float)(1.0 / (s_norm(scratch, n) + 1e-6));
        cblas_saxpy((int)n, k, scratch, 1, dir, 1);
        present++;
    }
    return present;
}

sgd_decomp_t *sgd_decomp_new(int C, size_t n, float lr, float momentum) {
    sgd_decomp_t *d = cc_xcalloc(1, sizeof *d);
    d->C = C;
    d->n = n;
    d->lr = lr;
    d->momentum = momentum;
    d->m_class = cc_xalloc_floats((size_t)C * n);
    d->d_class = cc_xalloc_floats((size_t)C * n);
    d->m_reg = cc_xalloc_floats(n);
    d->d_reg = cc_xalloc_floats(n);
    sgd_decomp_reset(d);
    return d;
}

void sgd_decomp_destroy(sgd_decomp_t **pd) {
    if (!pd || !*pd) return;
    sgd_decomp_t *d = *pd;
    free(d->m_class);
    free(d->d_class);
    free(d->m_reg);
    free(d->d_reg);
    free(d);
    *pd = NULL;
}

void sgd_decomp_reset(sgd_decomp_t *d) {
    memset(d->m_class, 0, (size_t)d->C * d->n * sizeof(float));
    memset(d->d_class, 0, (size_t)d->C * d->n * sizeof(float));
    memset(d->m_reg, 0, d->n * sizeof(float));
    memset(d->d_reg, 0, d->n * sizeof(float));
}

/* m ← μm + g;  Δ ← Δ − ηm;  θ ← θ − ηm (g may be NULL: a zero gradient). */
static void s_component_step(float *restrict m, float *restrict delta, float *restrict p,
                             const float *restrict g, size_t n, float lr, float mu) {
    for (size_t i = 0; i < n; i++) {
        m[i] = mu * m[i] + (g ? g[i] : 0.0f);
        delta[i] -= lr * m[i];
        p[i] -= lr * m[i];
    }
}

void sgd_decomp_step(sgd_decomp_t *d, float *params, const float *class_grads, const float *reg_grad) {
    for (int c = 0; c < d->C; c++)
        s_component_step(d->m_class + (size_t)c * d->n, d->d_class + (size_t)c * d->n, params,
                         class_grads + (size_t)c * d->n, d->n, d->lr, d->momentum);
    s_component_step(d->m_reg, d->d_reg, params, reg_grad, d->n, d->lr, d->momentum);
}

double pcn_server_normalize(float *out, const float *components, const float *reg, const uint8_t *present,
                            int C, size_t n) {
    float *sum = cc_xalloc_floats(n);
    memset(sum, 0, n * sizeof(float));
    memset(out, 0, n * sizeof(float));
    for (int c = 0; c < C; c++) {
        const float *dc = components + (size_t)c * n;
        cblas_saxpy((int)n, 1.0f, dc, 1, sum, 1);
        double norm = s_norm(dc, n);
        if ((present && !present[c]) || norm == 0.0) continue;
        cblas_saxpy((int)n, (float)(1.0 / norm), dc, 1, out, 1);
    }
    double target = s_norm(sum, n), unit = s_norm(out, n);
    double scale = unit > 0.0 ? target / unit : 0.0;
    cblas_sscal((int)n, (float)scale, out, 1);
    if (reg) cblas_saxpy((int)n, 1.0f, reg, 1, out, 1);
    free(sum);
    return scale;
}
