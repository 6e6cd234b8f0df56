/* layers.c — see layers.h. */
#include "layers.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void dense_forward(float *out, const float *in, const float *w, const float *b, int B, int n_in, int n_out) {
    for (int r = 0; r < B; r++) memcpy(out + (size_t)r * n_out, b, (size_t)n_out * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, n_out, n_in, 1.0f, in, n_in, w, n_in, 1.0f, out, n_out);
}

void dense_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                    const float *w, int B, int n_in, int n_out) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, B, 1.0f, dout, n_out, in, n_in, 1.0f, dw, n_in);
    for (int r = 0; r < B; r++) {
        const float *row = dout + (size_t)r * n_out;
        for (int o = 0; o < n_out; o++) db[o] += row[o];
    }
    if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, n_in, n_out, 1.0f, dout, n_out, w, n_in, 0.0f, din, n_in);
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_C 0.044715f

void act_forward(float *restrict out, const float *restrict in, size_t n, act_kind_t act) {
    switch (act) {
    case ACT_RELU:
        for (size_t i = 0; i < n; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
        break;
    case ACT_TANH:
        for (size_t i = 0; i < n; i++) out[i] = tanhf(in[i]);
        break;
    case ACT_GELU:
        for (size_t i = 0; i < n; i++) {
            float x = in[i];
            out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + GELU_C * x * x * x)));
        }
        break;
    }
}

void act_backward(float *restrict din, const float *restrict dout, const float *restrict in,
                  const float *restrict out, size_t n, act_kind_t act) {
    switch (act) {
    case ACT_RELU:
        /* Both loads unconditional, then a select: the form gcc vectorises. */
        for (size_t i = 0; i < n; i++) {
            float g = dout[i], o = out[i];
            din[i] = o > 0.0f ? g : 0.0f;
        }
        break;
    case ACT_TANH:
        for (size_t i = 0; i < n; i++) din[i] = dout[i] * (1.0f - out[i] * out[i]);
        break;
    case ACT_GELU:
        for (size_t i = 0; i < n; i++) {
            float x = in[i];
            float u = GELU_K * (x + GELU_C * x * x * x);
            float t = tanhf(u);
            float du = GELU_K * (1.0f + 3.0f * GELU_C * x * x);
            din[i] = dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
        }
        break;
    }
}

void dropout_forward(float *out, uint8_t *mask, const float *in, size_t n, float p, cc_rng_t *rng) {
    float scale = 1.0f / (1.0f - p);
    /* One 64-bit draw gives four 16-bit uniforms. */
    uint32_t threshold = (uint32_t)(p * 65536.0f);
    for (size_t i = 0; i < n; i += 4) {
        uint64_t r = cc_rng_u64(rng);
        for (size_t k = i; k < n && k < i + 4; k++, r >>= 16) {
            mask[k] = (uint32_t)(r & 0xffff) >= threshold;
            out[k] = mask[k] ? in[k] * scale : 0.0f;
        }
    }
}

void dropout_backward(float *din, const float *dout, const uint8_t *mask, size_t n, float p) {
    float scale = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) din[i] = mask[i] ? dout[i] * scale : 0.0f;
}

/* Output columns x whose source column x + kx − 1 lies inside the image: [x0, x1). */
static void s_valid_cols(int kx, int W, int *x0, int *x1) {
    *x0 = kx == 0 ? 1 : 0;
    *x1 = kx == 2 ? W - 1 : W;
}

/* col (C*9, H*W): row (c, ky, kx) holds in[c, y+ky-1, x+kx-1] (0 outside). */
static void s_im2col(float *col, const float *in, int C, int H, int W) {
    for (int c = 0; c < C; c++)
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                float *row = col + (size_t)((c * 3 + ky) * 3 + kx) * H * W;
                int x0, x1;
                s_valid_cols(kx, W, &x0, &x1);
                for (int y = 0; y < H; y++) {
                    int sy = y + ky - 1;
                    float *dst = row + (size_t)y * W;
                    if (sy < 0 || sy >= H) {
                        memset(dst, 0, (size_t)W * sizeof(float));
                        continue;
                    }
                    const float *src = in + ((size_t)c * H + sy) * W + kx - 1;
                    if (x0 > 0) dst[0] = 0.0f;
                    if (x1 > x0) memcpy(dst + x0, src + x0, (size_t)(x1 - x0) * sizeof(float));
                    if (x1 < W) dst[W - 1] = 0.0f;
                }
            }
}

/* Inverse of s_im2col: din (C, H, W) = Σ of col entries that read each pixel. */
static void s_col2im(float *restrict din, const float *restrict col, int C, int H, int W) {
    memset(din, 0, (size_t)C * H * W * sizeof(float));
    for (int c = 0; c < C; c++)
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                const float *row = col + (size_t)((c * 3 + ky) * 3 + kx) * H * W;
                int x0, x1;
                s_valid_cols(kx, W, &x0, &x1);
                for (int y = 0; y < H; y++) {
                    int sy = y + ky - 1;
                    if (sy < 0 || sy >= H) continue;
                    float *dst = din + ((size_t)c * H + sy) * W + kx - 1;
                    const float *src = row + (size_t)y * W;
                    for (int x = x0; x < x1; x++) dst[x] += src[x];
                }
            }
}

void conv_forward(float *out, float *col, const float *in, const float *w, const float *b,
                  int B, int C, int H, int W, int OC) {
    int HW = H * W, K = C * 9;
    for (int s = 0; s < B; s++) {
        float *o = out + (size_t)s * OC * HW;
        float *c = col + (size_t)s * K * HW;
        s_im2col(c, in + (size_t)s * C * HW, C, H, W);
        for (int oc = 0; oc < OC; oc++)
            for (int i = 0; i < HW; i++) o[(size_t)oc * HW + i] = b[oc];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OC, HW, K, 1.0f, w, K, c, HW, 1.0f, o, HW);
    }
}

void conv_backward(float *din, float *dw, float *db, const float *dout, const float *col,
                   const float *w, float *dcol, int B, int C, int H, int W, int OC) {
    int HW = H * W, K = C * 9;
    for (int s = 0; s < B; s++) {
        const float *g = dout + (size_t)s * OC * HW;
        const float *c = col + (size_t)s * K * HW;
        /* dw (OC, K) += g (OC, HW) · colᵀ (HW, K) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OC, K, HW, 1.0f, g, HW, c, HW, 1.0f, dw, K);
        for (int oc = 0; oc < OC; oc++) {
            float acc = 0.0f;
            for (int i = 0; i < HW; i++) acc += g[(size_t)oc * HW + i];
            db[oc] += acc;
        }
        if (!din) continue;
        /* dcol (K, HW) = wᵀ (K, OC) · g (OC, HW) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, HW, OC, 1.0f, w, K, g, HW, 0.0f, dcol, HW);
        s_col2im(din + (size_t)s * C * HW, dcol, C, H, W);
    }
}

void maxpool_forward(float *out, int32_t *argmax, const float *in, int B, int C, int H, int W) {
    int OH = H / 2, OW = W / 2;
    for (int s = 0; s < B; s++)
        for (int c = 0; c < C; c++) {
            const float *src = in + ((size_t)s * C + c) * H * W;
            float *o = out + ((size_t)s * C + c) * OH * OW;
            int32_t *am = argmax + ((size_t)s * C + c) * OH * OW;
            for (int y = 0; y < OH; y++)
                for (int x = 0; x < OW; x++) {
                    int best = (2 * y) * W + 2 * x;
                    int cand[3] = {best + 1, best + W, best + W + 1};
                    for (int k = 0; k < 3; k++)
                        if (src[cand[k]] > src[best]) best = cand[k];
                    o[y * OW + x] = src[best];
                    am[y * OW + x] = c * H * W + best;
                }
        }
}

void maxpool_backward(float *din, const float *dout, const int32_t *argmax, int B, int C, int H,
                      int W) {
    size_t in_size = (size_t)C * H * W, out_size = (size_t)C * (H / 2) * (W / 2);
    memset(din, 0, (size_t)B * in_size * sizeof(float));
    for (int s = 0; s < B; s++)
        for (size_t i = 0; i < out_size; i++)
            din[s * in_size + argmax[s * out_size + i]] += dout[s * out_size + i];
}

void softmax_forward(float *probs, const float *logits, int B, int C) {
    for (int i = 0; i < B; i++) {
        const float *z = logits + (size_t)i * C;
        float *p = probs + (size_t)i * C;
        float mx = z[0], sum = 0.0f;
        for (int c = 1; c < C; c++) mx = z[c] > mx ? z[c] : mx;
        for (int c = 0; c < C; c++) sum += (p[c] = expf(z[c] - mx));
        float inv = 1.0f / sum;
        for (int c = 0; c < C; c++) p[c] *= inv;
    }
}
