/* loss.c — see loss.h. */
#include "loss.h"

#include <math.h>
#include <stddef.h>

#include "layers.h"

double loss_softmax_xent(float *probs, float *dlogits, const float *logits, const int32_t *y,
                         int B, int C, const loss_opts_t *opts, float scale) {
    const float *w = opts ? opts->class_weights : NULL;
    float s = opts ? opts->label_smoothing : 0.0f;
    softmax_forward(probs, logits, B, C);
    double total = 0.0, norm = 0.0;
    for (int i = 0; i < B; i++) {
        const float *p = probs + (size_t)i * C;
        int yi = y[i];
        norm += w ? w[yi] : 1.0f;
        for (int c = 0; c < C; c++) {
            float q = (c == yi ? 1.0f - s : 0.0f) + s / (float)C;
            if (q == 0.0f) continue;
            float wc = w ? w[c] : 1.0f;
            total -= (double)wc * q * log(fmax((double)p[c], 1e-30));
        }
    }
    double loss = norm > 0 ? total / norm : 0.0;
    if (!dlogits) return loss;
    /* dℓ_i/dz_i = (Σ_c w_c q_ic)·p_i − w ⊙ q_i. */
    float k = norm > 0 ? scale / (float)norm : 0.0f;
    for (int i = 0; i < B; i++) {
        const float *p = probs + (size_t)i * C;
        float *d = dlogits + (size_t)i * C;
        int yi = y[i];
        if (!w && s == 0.0f) {
            for (int c = 0; c < C; c++) d[c] = k * p[c];
            d[yi] -= k;
            continue;
        }
        float wq = 0.0f;
        for (int c = 0; c < C; c++) {
            float q = (c == yi ? 1.0f - s : 0.0f) + s / (float)C;
            wq += (w ? w[c] : 1.0f) * q;
        }
        for (int c = 0; c < C; c++) {
            float q = (c == yi ? 1.0f - s : 0.0f) + s / (float)C;
            d[c] = k * (wq * p[c] - (w ? w[c] : 1.0f) * q);
        }
    }
    return loss;
}
