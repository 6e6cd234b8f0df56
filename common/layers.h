/* layers.h — the layer kernels behind model.c, as plain functions over flat buffers
 * (llm.c style): forward writes its output, backward ACCUMULATES into weight gradients
 * and writes (overwrites) the input gradient. Dense algebra goes through cblas_sgemm;
 * each kernel has a naive reference in tests/test_layers.c. Shapes are per batch of B rows. */
#ifndef CONCORD_LAYERS_H
#define CONCORD_LAYERS_H

#include <stdint.h>

#include "model.h"

/* out (B, n_out) = in (B, n_in) · Wᵀ + b, W (n_out, n_in), b (n_out). */
void dense_forward(float *out, const float *in, const float *w, const float *b, int B, int n_in, int n_out);
/* dw (n_out, n_in) += doutᵀ·in; db (n_out) += Σ rows of dout; din (B, n_in) = dout·W unless din is NULL. */
void dense_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                    const float *w, int B, int n_in, int n_out);

/* Elementwise activation of n values. GELU is the tanh approximation
 * (torch.nn.GELU(approximate='tanh')). */
void act_forward(float *restrict out, const float *restrict in, size_t n, act_kind_t act);
/* din = dout ⊙ act'(in); `out` is the forward output (used by relu and tanh). */
void act_backward(float *restrict din, const float *restrict dout, const float *restrict in,
                  const float *restrict out, size_t n, act_kind_t act);

/* Inverted dropout: out = in ⊙ mask / (1 − p); mask drawn from rng. */
void dropout_forward(float *out, uint8_t *mask, const float *in, size_t n, float p, cc_rng_t *rng);
void dropout_backward(float *din, const float *dout, const uint8_t *mask, size_t n, float p);

/* 3x3 convolution, padding 1, stride 1, NCHW: in (B, C, H, W) -> out (B, OC, H, W);
 * w (OC, C, 3, 3), b (OC). col (B, C*9, H*W) receives the im2col of every sample and is
 * kept for backward, which then needs no second unfolding. */
void conv_forward(float *out, float *col, const float *in, const float *w, const float *b,
                  int B, int C, int H, int W, int OC);
/* dw += , db += ; din (B, C, H, W) overwritten unless NULL. col is the forward's unfolding
 * of these B samples; dcol is scratch of (C*9, H*W) floats. */
void conv_backward(float *din, float *dw, float *db, const float *dout, const float *col,
                   const float *w, float *dcol, int B, int C, int H, int W, int OC);

/* 2x2 max-pool, stride 2 (floor): in (B, C, H, W) -> out (B, C, H/2, W/2);
 * argmax records the winning input index within each sample. */
void maxpool_forward(float *out, int32_t *argmax, const float *in, int B, int C, int H, int W);
/* din (B, C, H, W) overwritten: zero except the winners, which receive dout. */
void maxpool_backward(float *din, const float *dout, const int32_t *argmax, int B, int C, int H,
                      int W);

/* Row-wise softmax: probs (B, C) from logits (B, C), max-subtracted for stability. */
void softmax_forward(float *probs, const float *logits, int B, int C);

#endif
