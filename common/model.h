/* model.h — feed-forward classifiers over one contiguous parameter buffer.
 *
 * A model is a stack of layers (dense, activation, dropout, 3x3 conv, 2x2 max-pool) that
 * always ends in a linear softmax head (the last dense layer). All parameters live in one
 * float buffer `params` (n_params), gradients in `grads` of the same layout, so an update,
 * a checkpoint or a signature works on one vector. Layout per dense layer: weight (out, in)
 * row-major then bias (out) — the layout of torch.nn.Linear; per conv layer: weight
 * (oc, ic, 3, 3) then bias (oc) — the layout of torch.nn.Conv2d.
 *
 * Activations of the last forward pass are kept (one buffer per layer, sized for
 * max_batch rows) so backward can run over any contiguous row range of that batch:
 * that is what makes per-class gradients cost one backward pass in total (sort the
 * batch by class, then backward each class's rows). */
#ifndef CONCORD_MODEL_H
#define CONCORD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "rng.h"
#include "util.h"

typedef enum { MODEL_SOFTMAX = 0, MODEL_MLP = 1, MODEL_CNN = 2 } model_kind_t;
typedef enum { ACT_RELU = 0, ACT_GELU = 1, ACT_TANH = 2 } act_kind_t;

#define MODEL_MAX_HIDDEN 8
#define MODEL_MAX_CONV 4

typedef struct {
    model_kind_t kind;
    int n_inputs;                  /* features per sample (c*h*w for images) */
    int n_classes;
    int in_c, in_h, in_w;          /* image shape, CNN only */
    int n_hidden;                  /* dense hidden layers (MLP, and CNN after the convs) */
    int hidden[MODEL_MAX_HIDDEN];
    int n_conv;                    /* CNN: conv3x3(pad 1) + act + maxpool2 blocks */
    int conv[MODEL_MAX_CONV];      /* their output channels */
    act_kind_t act;
    float dropout;                 /* dropout after each hidden dense activation, 0 = off */
} model_spec_t;

/* Parses "softmax", "mlp:H1,H2,...", "cnn:C1,C2[/H1,...]" into the architecture fields of
 * spec (kind, hidden, conv); n_inputs, n_classes, image shape, act and dropout are left as
 * they are, so a caller sets them from the data and flags. */
int model_spec_parse(const char *text, model_spec_t *spec, cc_err_t *err) CC_WUR;
/* Writes the canonical architecture string ("mlp:64,32") into buf. */
void model_spec_arch(const model_spec_t *spec, char *buf, size_t len);
const char *model_act_name(act_kind_t act);
int model_act_parse(const char *text, act_kind_t *act) CC_WUR;
/* Checks that sizes are positive and in range; err says which field is wrong. */
int model_spec_validate(const model_spec_t *spec, cc_err_t *err) CC_WUR;

typedef enum {
    LAYER_DENSE,
    LAYER_ACT,
    LAYER_DROPOUT,
    LAYER_CONV,
    LAYER_MAXPOOL,
} layer_kind_t;

typedef struct {
    layer_kind_t kind;
    int in_size, out_size;   /* per-sample sizes */
    int c, h, w;             /* input image shape (conv, pool) */
    int oc;                  /* conv output channels */
    act_kind_t act;
    float p;                 /* dropout probability */
    size_t w_off, b_off;     /* offsets into params/grads (dense, conv) */
    float *out;              /* (max_batch, out_size): output of the last forward */
    uint8_t *mask;           /* dropout keep mask (max_batch, out_size) */
    int32_t *argmax;         /* maxpool winners (max_batch, out_size) */
    float *col;              /* conv: im2col of the last forward (max_batch, c*9, h*w) */
} layer_t;

typedef struct {
    model_spec_t spec;
    int n_layers;
    layer_t *layers;
    size_t n_params;
    float *params;           /* (n_params), owned */
    float *grads;            /* (n_params), owned; backward accumulates here */
    int max_batch;           /* activation buffers hold this many rows */
    int batch;               /* rows of the last forward */
    const float *input;      /* input of the last forward (borrowed) */
    int training;            /* last forward ran in training mode (dropout active) */
    float *dcol;             /* conv backward scratch, one sample's (c*9, h*w) */
    float *dbuf[2];          /* ping-pong backward scratch (max_batch, max layer size) */
    cc_rng_t rng;            /* dropout stream */
} model_t;

/* New model with all parameters zero; NULL if the spec is invalid (err says why). */
model_t *model_new(const model_spec_t *spec, cc_err_t *err);
void model_destroy(model_t **m);
/* PyTorch's default init: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the
 * dropout stream, all from seed. */
void model_init(model_t *m, uint64_t seed);
/* Grows activation buffers to hold B rows (no-op if already large enough). */
void model_reserve(model_t *m, int B);

/* Forward pass of B rows of x (B, n_inputs); returns the logits (B, n_classes), valid
 * until the next forward. train != 0 enables dropout. */
const float *model_forward(model_t *m, const float *x, int B, int train);
/* Backward over rows [row0, row0 + rows) of the last forward, given dlogits for those rows
 * (rows, n_classes). ACCUMULATES into grads (n_params), which may be m->grads or any other
 * buffer of the same layout. */
void model_backward(model_t *m, const float *dlogits, int row0, int rows, float *grads);

/* The head: weight (C, d) + bias (C) at params + head_w_off; its input activations of the
 * last forward are (batch, d). */
typedef struct {
    int C, d;
    size_t w_off, b_off;
    const float *input;      /* (batch, d) head inputs of the last forward */
} model_head_t;
void model_head(const model_t *m, model_head_t *head);

/* Bytes of activation state for a batch of B rows: layer outputs, dropout masks, pooling
 * winners, im2col caches and the backward scratch buffers. */
size_t model_activation_bytes(const model_t *m, int B);

/* Class probabilities of every row of x (n, n_inputs) into probs (n, n_classes),
 * evaluation mode, in batches. */
void model_predict(model_t *m, const float *x, size_t n, float *probs);

#endif
