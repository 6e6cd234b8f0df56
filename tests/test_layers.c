/* test_layers.c — every layer kernel against a naive double-precision reference, the
 * activations and the loss against central finite differences. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "loss.h"
#include "optim.h"
#include "rng.h"

static void s_fill(float *v, size_t n, cc_rng_t *rng, double scale) {
    for (size_t i = 0; i < n; i++) v[i] = (float)((2.0 * cc_rng_uniform(rng) - 1.0) * scale);
}

static double s_maxdiff(const float *a, const double *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

Test(layers, dense_matches_naive) {
    enum { B = 5, NI = 7, NO = 4 };
    cc_rng_t rng;
    cc_rng_seed(&rng, 1);
    float in[B * NI], w[NO * NI], b[NO], out[B * NO], dout[B * NO], din[B * NI];
    float dw[NO * NI], db[NO];
    s_fill(in, B * NI, &rng, 1), s_fill(w, NO * NI, &rng, 1), s_fill(b, NO, &rng, 1);
    s_fill(dout, B * NO, &rng, 1), s_fill(dw, NO * NI, &rng, 1), s_fill(db, NO, &rng, 1);
    double ref_out[B * NO], ref_dw[NO * NI], ref_db[NO], ref_din[B * NI];
    for (int i = 0; i < NO * NI; i++) ref_dw[i] = dw[i]; /* backward accumulates */
    for (int o = 0; o < NO; o++) ref_db[o] = db[o];
    for (int r = 0; r < B; r++)
        for (int o = 0; o < NO; o++) {
            double acc = b[o];
            for (int i = 0; i < NI; i++) acc += (double)in[r * NI + i] * w[o * NI + i];
            ref_out[r * NO + o] = acc;
            ref_db[o] += dout[r * NO + o];
            for (int i = 0; i < NI; i++) ref_dw[o * NI + i] += (double)dout[r * NO + o] * in[r * NI + i];
        }
    for (int r = 0; r < B; r++)
        for (int i = 0; i < NI; i++) {
            double acc = 0;
            for (int o = 0; o < NO; o++) acc += (double)dout[r * NO + o] * w[o * NI + i];
            ref_din[r * NI + i] = acc;
        }
    dense_forward(out, in, w, b, B, NI, NO);
    dense_backward(din, dw, db, dout, in, w, B, NI, NO);
    double e1 = s_maxdiff(out, ref_out, B * NO), e2 = s_maxdiff(dw, ref_dw, NO * NI);
    double e3 = s_maxdiff(db, ref_db, NO), e4 = s_maxdiff(din, ref_din, B * NI);
    cr_log_info("dense max diff: out %.2e dw %.2e db %.2e din %.2e (tol 1e-5)", e1, e2, e3, e4);
    cr_expect_lt(e1, 1e-5);
    cr_expect_lt(e2, 1e-5);
    cr_expect_lt(e3, 1e-5);
    cr_expect_lt(e4, 1e-5);
}

/* Naive direct 3x3 convolution with zero padding, in double. */
static double s_conv_at(const float *in, const float *w, const float *b, int C, int H, int W,
                        int oc, int y, int x) {
    double acc = b[oc];
    for (int c = 0; c < C; c++)
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++) {
                int sy = y + ky - 1, sx = x + kx - 1;
                if (sy < 0 || sy >= H || sx < 0 || sx >= W) continue;
                acc += (double)in[(c * H + sy) * W + sx] * w[((oc * C + c) * 3 + ky) * 3 + kx];
            }
    return acc;
}

Test(layers, conv_matches_naive_and_adjoint) {
    enum { B = 2, C = 3, H = 5, W = 6, OC = 4 };
    cc_rng_t rng;
    cc_rng_seed(&rng, 2);
    static float in[B * C * H * W], w[OC * C * 9], b[OC], out[B * OC * H * W], col[B * C * 9 * H * W];
    static float dcol[C * 9 * H * W];
    static float dout[B * OC * H * W], din[B * C * H * W], dw[OC * C * 9], db[OC];
    s_fill(in, sizeof in / 4, &rng, 1), s_fill(w, sizeof w / 4, &rng, 1), s_fill(b, OC, &rng, 1);
    s_fill(dout, sizeof dout / 4, &rng, 1);
    conv_forward(out, col, in, w, b, B, C, H, W, OC);
    double err = 0;
    for (int s = 0; s < B; s++)
        for (int oc = 0; oc < OC; oc++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    double ref = s_conv_at(in + s * C * H * W, w, b, C, H, W, oc, y, x);
                    err = fmax(err, fabs(ref - out[((s * OC + oc) * H + y) * W + x]));
                }
    cr_log_info("conv forward max diff %.2e (tol 1e-5)", err);
    cr_expect_lt(err, 1e-5);
    /* Backward is the adjoint: <dout, conv(in)> differentiated w.r.t. in, w and b. With the
     * forward linear in each, d/dw_k <dout, out> = <dout, out(e_k)> − <dout, out(0)>. */
    memset(dw, 0, sizeof dw), memset(db, 0, sizeof db);
    conv_backward(din, dw, db, dout, col, w, dcol, B, C, H, W, OC);
    double errw = 0, errb = 0, erri = 0;
    for (int oc = 0; oc < OC; oc++) {
        double refb = 0;
        for (int s = 0; s < B; s++)
            for (int i = 0; i < H * W; i++) refb += dout[(s * OC + oc) * H * W + i];
        errb = fmax(errb, fabs(refb - db[oc]));
        for (int c = 0; c < C; c++)
            for (int k = 0; k < 9; k++) {
                double ref = 0;
                int ky = k / 3, kx = k % 3;
                for (int s = 0; s < B; s++)
                    for (int y = 0; y < H; y++)
                        for (int x = 0; x < W; x++) {
                            int sy = y + ky - 1, sx = x + kx - 1;
                            if (sy < 0 || sy >= H || sx < 0 || sx >= W) continue;
                            ref += (double)dout[((s * OC + oc) * H + y) * W + x] *
                                   in[((s * C + c) * H + sy) * W + sx];
                        }
                errw = fmax(errw, fabs(ref - dw[(oc * C + c) * 9 + k]));
            }
    }
    for (int s = 0; s < B; s++)
        for (int c = 0; c < C; c++)
            for (int sy = 0; sy < H; sy++)
                for (int sx = 0; sx < W; sx++) {
                    double ref = 0;
                    for (int oc = 0; oc < OC; oc++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                int y = sy - ky + 1, x = sx - kx + 1;
                                if (y < 0 || y >= H || x < 0 || x >= W) continue;
                                ref += (double)dout[((s * OC + oc) * H + y) * W + x] *
                                       w[((oc * C + c) * 3 + ky) * 3 + kx];
                            }
                    erri = fmax(erri, fabs(ref - din[((s * C + c) * H + sy) * W + sx]));
                }
    cr_log_info("conv backward max diff dw %.2e db %.2e din %.2e (tol 1e-4)", errw, errb, erri);
    cr_expect_lt(errw, 1e-4);
    cr_expect_lt(errb, 1e-4);
    cr_expect_lt(erri, 1e-4);
}

Test(layers, maxpool_matches_naive) {
    enum { B = 2, C = 2, H = 5, W = 4 }; /* odd height: the last row is dropped (floor) */
    cc_rng_t rng;
    cc_rng_seed(&rng, 3);
    float in[B * C * H * W], out[B * C * 2 * 2], dout[B * C * 2 * 2], din[B * C * H * W];
    int32_t am[B * C * 2 * 2];
    s_fill(in, sizeof in / 4, &rng, 1), s_fill(dout, sizeof dout / 4, &rng, 1);
    maxpool_forward(out, am, in, B, C, H, W);
    maxpool_backward(din, dout, am, B, C, H, W);
    for (int s = 0; s < B; s++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < 2; y++)
                for (int x = 0; x < 2; x++) {
                    const float *p = in + (s * C + c) * H * W;
                    int best = 2 * y * W + 2 * x;
                    int cands[4] = {best, best + 1, best + W, best + W + 1};
                    for (int k = 1; k < 4; k++)
                        if (p[cands[k]] > p[best]) best = cands[k];
                    int o = ((s * C + c) * 2 + y) * 2 + x;
                    cr_expect_eq(out[o], p[best]);
                    cr_expect_eq(din[(s * C + c) * H * W + best], dout[o]);
                }
    double sum_in = 0, sum_out = 0;
    for (size_t i = 0; i < sizeof din / 4; i++) sum_in += din[i];
    for (size_t i = 0; i < sizeof dout / 4; i++) sum_out += dout[i];
    cr_expect_lt(fabs(sum_in - sum_out), 1e-5, "gradient mass is routed, not lost");
}

static double s_act_scalar(double x, act_kind_t act) {
    switch (act) {
    case ACT_RELU: return x > 0 ? x : 0;
    case ACT_TANH: return tanh(x);
    case ACT_GELU: return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    }
    return 0;
}

Test(layers, activations_match_finite_differences) {
    enum { N = 64 };
    cc_rng_t rng;
    cc_rng_seed(&rng, 4);
    float in[N], out[N], dout[N], din[N];
    s_fill(in, N, &rng, 3);
    for (int i = 0; i < N; i++) dout[i] = 1.0f;
    for (int a = ACT_RELU; a <= ACT_TANH; a++) {
        act_forward(out, in, N, (act_kind_t)a);
        act_backward(din, dout, in, out, N, (act_kind_t)a);
        double err = 0, h = 1e-5;
        for (int i = 0; i < N; i++) {
            if (a == ACT_RELU && fabs(in[i]) < 1e-3) continue; /* the kink */
            double fd = (s_act_scalar(in[i] + h, a) - s_act_scalar(in[i] - h, a)) / (2 * h);
            err = fmax(err, fabs(fd - din[i]));
            cr_expect_lt(fabs(out[i] - s_act_scalar(in[i], a)), 1e-5);
        }
        cr_log_info("act %s derivative max diff %.2e (tol 1e-4)", model_act_name(a), err);
        cr_expect_lt(err, 1e-4, "activation %d", a);
    }
}

/* Loss in double, straight from the definition in loss.h. */
static double s_ref_loss(const double *z, const int32_t *y, int B, int C, const float *w, double s) {
    double total = 0, norm = 0;
    for (int i = 0; i < B; i++) {
        double mx = z[i * C], sum = 0;
        for (int c = 1; c < C; c++) mx = fmax(mx, z[i * C + c]);
        for (int c = 0; c < C; c++) sum += exp(z[i * C + c] - mx);
        norm += w ? w[y[i]] : 1;
        for (int c = 0; c < C; c++) {
            double q = (c == y[i] ? 1 - s : 0) + s / C;
            double logp = z[i * C + c] - mx - log(sum);
            total -= (w ? w[c] : 1) * q * logp;
        }
    }
    return total / norm;
}

Test(loss, gradient_matches_finite_differences) {
    enum { B = 6, C = 4 };
    cc_rng_t rng;
    cc_rng_seed(&rng, 5);
    float logits[B * C], probs[B * C], dl[B * C], w[C] = {0.5f, 2.0f, 1.0f, 3.0f};
    int32_t y[B] = {0, 1, 2, 3, 1, 1};
    s_fill(logits, B * C, &rng, 3);
    const float *weights[2] = {NULL, w};
    for (int wi = 0; wi < 2; wi++)
        for (int si = 0; si < 2; si++) {
            loss_opts_t o = {.class_weights = weights[wi], .label_smoothing = si ? 0.1f : 0.0f};
            double L = loss_softmax_xent(probs, dl, logits, y, B, C, &o, 1.0f);
            double z[B * C];
            for (int i = 0; i < B * C; i++) z[i] = logits[i];
            cr_expect_lt(fabs(L - s_ref_loss(z, y, B, C, o.class_weights, o.label_smoothing)), 1e-5);
            double err = 0, h = 1e-5;
            for (int i = 0; i < B * C; i++) {
                z[i] += h;
                double lp = s_ref_loss(z, y, B, C, o.class_weights, o.label_smoothing);
                z[i] -= 2 * h;
                double lm = s_ref_loss(z, y, B, C, o.class_weights, o.label_smoothing);
                z[i] += h;
                err = fmax(err, fabs((lp - lm) / (2 * h) - dl[i]));
            }
            cr_log_info("loss weights=%d smoothing=%d: dlogits max diff %.2e (tol 1e-5)", wi, si, err);
            cr_expect_lt(err, 1e-5);
        }
}

Test(optim, sgd_and_adam_follow_pytorch_rules) {
    enum { N = 5, STEPS = 4 };
    cc_rng_t rng;
    cc_rng_seed(&rng, 6);
    for (int kind = OPTIM_SGD; kind <= OPTIM_ADAM; kind++) {
        optim_config_t cfg = optim_config_default();
        cfg.kind = (optim_kind_t)kind;
        cfg.lr = 0.1f, cfg.weight_decay = 0.01f;
        optim_t *o = optim_new(&cfg, N);
        float p[N], g[N];
        double rp[N], rm[N] = {0}, rv[N] = {0};
        s_fill(p, N, &rng, 1);
        for (int i = 0; i < N; i++) rp[i] = p[i];
        for (int t = 1; t <= STEPS; t++) {
            s_fill(g, N, &rng, 1);
            for (int i = 0; i < N; i++) {
                double gi = g[i] + cfg.weight_decay * rp[i];
                if (kind == OPTIM_SGD) {
                    rm[i] = cfg.momentum * rm[i] + gi;
                    rp[i] -= cfg.lr * rm[i];
                } else {
                    rm[i] = cfg.beta1 * rm[i] + (1 - cfg.beta1) * gi;
                    rv[i] = cfg.beta2 * rv[i] + (1 - cfg.beta2) * gi * gi;
                    double mh = rm[i] / (1 - pow(cfg.beta1, t)), vh = rv[i] / (1 - pow(cfg.beta2, t));
                    rp[i] -= cfg.lr * mh / (sqrt(vh) + cfg.eps);
                }
            }
            optim_step(o, p, g);
        }
        double err = s_maxdiff(p, rp, N);
        cr_log_info("%s after %d steps: max diff %.2e (tol 1e-5)", optim_kind_name(cfg.kind), STEPS, err);
        cr_expect_lt(err, 1e-5);
        optim_destroy(&o);
        cr_expect_null(o);
    }
}
