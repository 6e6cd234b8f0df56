/* optim.h — optimisers over one flat parameter vector, with PyTorch's update rules:
 *   SGD:  g ← g + λθ;  m ← μm + g;  θ ← θ − η·m            (torch.optim.SGD, dampening 0)
 *   Adam: g ← g + λθ;  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;
 *         θ ← θ − η · m̂ / (√v̂ + ε),  m̂ = m/(1−β1^t), v̂ = v/(1−β2^t)   (torch.optim.Adam) */
#ifndef CONCORD_OPTIM_H
#define CONCORD_OPTIM_H

#include <stddef.h>

#include "util.h"

typedef enum { OPTIM_SGD = 0, OPTIM_ADAM = 1 } optim_kind_t;

typedef struct {
    optim_kind_t kind;
    float lr;
    float momentum;     /* SGD */
    float weight_decay; /* L2 added to the gradient, both kinds */
    float beta1, beta2, eps; /* Adam */
} optim_config_t;

/* Defaults: SGD, lr 0.05, momentum 0.9, no weight decay; Adam betas (0.9, 0.999), eps 1e-8. */
optim_config_t optim_config_default(void);
int optim_kind_parse(const char *text, optim_kind_t *kind) CC_WUR;
const char *optim_kind_name(optim_kind_t kind);

typedef struct {
    optim_config_t cfg;
    size_t n;
    float *m;  /* (n) momentum / first moment */
    float *v;  /* (n) Adam second moment, NULL for SGD */
    long t;    /* steps taken */
} optim_t;

optim_t *optim_new(const optim_config_t *cfg, size_t n);
void optim_destroy(optim_t **opt);
/* Zeroes the optimiser state (moments, step count). */
void optim_reset(optim_t *opt);
/* One step: params (n) updated in place from grads (n), which is only read. */
void optim_step(optim_t *opt, float *params, float *grads);

/* Fused SGD (the hot path of plain training): instead of zeroing a gradient buffer,
 * running backward into it and then reading it again, backward accumulates straight into
 * the momentum buffer. optim_fused_begin scales m by μ (zeroes it for μ = 0) and returns it
 * for backward to add g into; optim_fused_finish adds λθ and applies θ ← θ − η·m. Together
 * they compute exactly the SGD rule above. Only for OPTIM_SGD. */
float *optim_fused_begin(optim_t *opt);
void optim_fused_finish(optim_t *opt, float *params);

#endif
