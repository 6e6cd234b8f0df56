/* model.c — building, running and differentiating the layer stack of model.h. */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"

/* Appends a layer to m (capacity is precomputed by s_count_layers). */
static layer_t *s_push(model_t *m, layer_kind_t kind, int in_size, int out_size) {
    layer_t *l = &m->layers[m->n_layers++];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    l->in_size = in_size;
    l->out_size = out_size;
    return l;
}

static int s_count_layers(const model_spec_t *s) {
    int per_hidden = 2 + (s->dropout > 0.0f);
    return s->n_conv * 3 + s->n_hidden * per_hidden + 1;
}

static void s_push_dense(model_t *m, int in, int out) {
    layer_t *l = s_push(m, LAYER_DENSE, in, out);
    l->w_off = m->n_params;
    l->b_off = l->w_off + (size_t)in * out;
    m->n_params = l->b_off + (size_t)out;
}

static void s_build(model_t *m) {
    const model_spec_t *s = &m->spec;
    int size = s->n_inputs;
    int c = s->in_c, h = s->in_h, w = s->in_w;
    for (int i = 0; i < s->n_conv; i++) {
        int oc = s->conv[i];
        layer_t *l = s_push(m, LAYER_CONV, c * h * w, oc * h * w);
        l->c = c, l->h = h, l->w = w, l->oc = oc;
        l->w_off = m->n_params;
        l->b_off = l->w_off + (size_t)oc * c * 9;
        m->n_params = l->b_off + (size_t)oc;
        l = s_push(m, LAYER_ACT, oc * h * w, oc * h * w);
        l->act = s->act;
        l = s_push(m, LAYER_MAXPOOL, oc * h * w, oc * (h / 2) * (w / 2));
        l->c = oc, l->h = h, l->w = w;
        c = oc, h /= 2, w /= 2;
        size = c * h * w;
    }
    for (int i = 0; i < s->n_hidden; i++) {
        s_push_dense(m, size, s->hidden[i]);
        size = s->hidden[i];
        s_push(m, LAYER_ACT, size, size)->act = s->act;
        if (s->dropout > 0.0f) s_push(m, LAYER_DROPOUT, size, size)->p = s->dropout;
    }
    s_push_dense(m, size, s->n_classes);
}

model_t *model_new(const model_spec_t *spec, cc_err_t *err) {
    if (model_spec_validate(spec, err) != 0) return NULL;
    model_t *m = cc_xcalloc(1, sizeof *m);
    m->spec = *spec;
    m->layers = cc_xcalloc((size_t)s_count_layers(spec), sizeof(layer_t));
    s_build(m);
    m->params = cc_xalloc_floats(m->n_params);
    m->grads = cc_xalloc_floats(m->n_params);
    memset(m->params, 0, m->n_params * sizeof(float));
    memset(m->grads, 0, m->n_params * sizeof(float));
    int max_col = 0;
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].kind == LAYER_CONV && m->layers[i].c * 9 * m->layers[i].h * m->layers[i].w > max_col)
            max_col = m->layers[i].c * 9 * m->layers[i].h * m->layers[i].w;
    if (max_col) m->dcol = cc_xalloc_floats((size_t)max_col);
    cc_rng_seed(&m->rng, 0);
    return m;
}

static void s_free_activations(model_t *m) {
    for (int i = 0; i < m->n_layers; i++) {
        free(m->layers[i].out);
        free(m->layers[i].mask);
        free(m->layers[i].argmax);
        free(m->layers[i].col);
        m->layers[i].col = NULL;
        m->layers[i].out = NULL;
        m->layers[i].mask = NULL;
        m->layers[i].argmax = NULL;
    }
    free(m->dbuf[0]);
    free(m->dbuf[1]);
    m->dbuf[0] = m->dbuf[1] = NULL;
}

void model_destroy(model_t **pm) {
    if (!pm || !*pm) return;
    model_t *m = *pm;
    s_free_activations(m);
    free(m->layers);
    free(m->params);
    free(m->grads);
    free(m->dcol);
    free(m);
    *pm = NULL;
}

void model_init(model_t *m, uint64_t seed) {
    cc_rng_t rng;
    cc_rng_seed(&rng, seed);
    for (int i = 0; i < m->n_layers; i++) {
        const layer_t *l = &m->layers[i];
        if (l->kind != LAYER_DENSE && l->kind != LAYER_CONV) continue;
        size_t fan_in = l->kind == LAYER_DENSE ? (size_t)l->in_size : (size_t)l->c * 9;
        size_t n_out = l->kind == LAYER_DENSE ? (size_t)l->out_size : (size_t)l->oc;
        float bound = 1.0f / sqrtf((float)fan_in);
        for (size_t k = l->w_off; k < l->b_off + n_out; k++)
            m->params[k] = (float)((2.0 * cc_rng_uniform(&rng) - 1.0) * bound);
    }
    cc_rng_seed(&m->rng, seed ^ 0xd1b54a32d192ed03ULL);
}

void model_reserve(model_t *m, int B) {
    if (B <= m->max_batch) return;
    s_free_activations(m);
    size_t max_size = (size_t)m->spec.n_inputs;
    for (int i = 0; i < m->n_layers; i++) {
        layer_t *l = &m->layers[i];
        l->out = cc_xalloc_floats((size_t)B * l->out_size);
        if (l->kind == LAYER_DROPOUT) l->mask = cc_xmalloc((size_t)B * l->out_size);
        if (l->kind == LAYER_MAXPOOL) l->argmax = cc_xmalloc((size_t)B * l->out_size * sizeof(int32_t));
        if (l->kind == LAYER_CONV) l->col = cc_xalloc_floats((size_t)B * l->in_size * 9);
        if ((size_t)l->out_size > max_size) max_size = (size_t)l->out_size;
    }
    m->dbuf[0] = cc_xalloc_floats((size_t)B * max_size);
    m->dbuf[1] = cc_xalloc_floats((size_t)B * max_size);
    m->max_batch = B;
}

size_t model_activation_bytes(const model_t *m, int B) {
    size_t per_row = 0, max_size = (size_t)m->spec.n_inputs;
    for (int i = 0; i < m->n_layers; i++) {
        const layer_t *l = &m->layers[i];
        per_row += (size_t)l->out_size * sizeof(float);
        if (l->kind == LAYER_DROPOUT) per_row += (size_t)l->out_size;
        if (l->kind == LAYER_MAXPOOL) per_row += (size_t)l->out_size * sizeof(int32_t);
        if (l->kind == LAYER_CONV) per_row += (size_t)l->in_size * 9 * sizeof(float);
        if ((size_t)l->out_size > max_size) max_size = (size_t)l->out_size;
    }
    return (size_t)B * (per_row + 2 * max_size * sizeof(float));
}

const float *model_forward(model_t *m, const float *x, int B, int train) {
    model_reserve(m, B);
    m->batch = B;
    m->input = x;
    m->training = train;
    const float *in = x;
    for (int i = 0; i < m->n_layers; i++) {
        layer_t *l = &m->layers[i];
        const float *p = m->params;
        size_t n = (size_t)B * l->out_size;
        switch (l->kind) {
        case LAYER_DENSE: dense_forward(l->out, in, p + l->w_off, p + l->b_off, B, l->in_size, l->out_size); break;
        case LAYER_ACT: act_forward(l->out, in, n, l->act); break;
        case LAYER_DROPOUT:
            if (train) dropout_forward(l->out, l->mask, in, n, l->p, &m->rng);
            else memcpy(l->out, in, n * sizeof(float));
            break;
        case LAYER_CONV: conv_forward(l->out, l->col, in, p + l->w_off, p + l->b_off, B, l->c, l->h, l->w, l->oc); break;
        case LAYER_MAXPOOL: maxpool_forward(l->out, l->argmax, in, B, l->c, l->h, l->w); break;
        }
        in = l->out;
    }
    return in;
}

/* Backward of one layer over rows [row0, row0+rows); din NULL for the first layer. */
static void s_layer_backward(model_t *m, const layer_t *l, float *din, const float *dout,
                             const float *in, int row0, int rows, float *grads) {
    size_t n = (size_t)rows * l->out_size;
    size_t off = (size_t)row0 * l->out_size;
    const float *p = m->params;
    switch (l->kind) {
    case LAYER_DENSE:
        dense_backward(din, grads + l->w_off, grads + l->b_off, dout, in, p + l->w_off, rows,
                       l->in_size, l->out_size);
        break;
    case LAYER_ACT:
        if (din) act_backward(din, dout, in, l->out + off, n, l->act);
        break;
    case LAYER_DROPOUT:
        if (din) {
            if (m->training) dropout_backward(din, dout, l->mask + off, n, l->p);
            else memcpy(din, dout, n * sizeof(float));
        }
        break;
    case LAYER_CONV:
        conv_backward(din, grads + l->w_off, grads + l->b_off, dout, l->col + (size_t)row0 * l->in_size * 9,
                      p + l->w_off, m->dcol, rows, l->c, l->h, l->w, l->oc);
        break;
    case LAYER_MAXPOOL:
        if (din) maxpool_backward(din, dout, l->argmax + off, rows, l->c, l->h, l->w);
        break;
    }
}

void model_backward(model_t *m, const float *dlogits, int row0, int rows, float *grads) {
    const float *dout = dlogits;
    int flip = 0;
    for (int i = m->n_layers - 1; i >= 0; i--) {
        const layer_t *l = &m->layers[i];
        const float *in_all = i ? m->layers[i - 1].out : m->input;
        const float *in = in_all + (size_t)row0 * l->in_size;
        /* The input gradient of layer 0 is never needed; layers before the first
         * parameterised one need none either, but the stacks here start with one. */
        float *din = i ? m->dbuf[flip] : NULL;
        s_layer_backward(m, l, din, dout, in, row0, rows, grads);
        dout = din;
        flip ^= 1;
    }
}

void model_head(const model_t *m, model_head_t *head) {
    const layer_t *l = &m->layers[m->n_layers - 1];
    head->C = l->out_size;
    head->d = l->in_size;
    head->w_off = l->w_off;
    head->b_off = l->b_off;
    head->input = m->n_layers > 1 ? m->layers[m->n_layers - 2].out : m->input;
}

void model_predict(model_t *m, const float *x, size_t n, float *probs) {
    const int chunk = 256;
    int C = m->spec.n_classes;
    for (size_t r = 0; r < n; r += chunk) {
        int B = (int)(n - r < (size_t)chunk ? n - r : (size_t)chunk);
        const float *logits = model_forward(m, x + r * (size_t)m->spec.n_inputs, B, 0);
        softmax_forward(probs + r * (size_t)C, logits, B, C);
    }
}
