/* train.h — local training of a model on a dataset: seeded shuffling, mini-batches,
 * SGD/Adam or PCN-SGD, early stopping on a validation split, progress per epoch.
 *
 * Deterministic: for a given seed, data and OpenBLAS thread count, two runs produce the
 * same parameters bit for bit. */
#ifndef CONCORD_TRAIN_H
#define CONCORD_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "loss.h"
#include "model.h"
#include "optim.h"
#include "pcn.h"

typedef enum {
    TRAIN_PCN_OFF = 0,     /* plain optimiser steps on the mean loss */
    TRAIN_PCN_CLIENT,      /* PCN-SGD steps (§6.3 client mode) */
    TRAIN_PCN_COMPONENTS,  /* plain SGD, update kept per class (§6.3 server mode) */
} train_pcn_t;

typedef struct {
    int epoch;            /* 1-based */
    int epochs;
    double train_loss;    /* mean over the epoch's batches */
    double val_loss;      /* NAN without a validation set */
    double val_accuracy;  /* NAN without a validation set */
    double seconds;       /* wall time of this epoch's training steps */
    int improved;         /* validation loss improved (best so far) */
} train_epoch_t;

/* Adds a regulariser's gradient for the current batch into reg_grad (n_params), using the
 * forward state of m (head inputs via model_head) and the batch's probabilities and labels
 * (class-sorted when pcn is on). Returns the regulariser's value. It is called after the
 * batch's own backward passes, so it may run backward passes of its own (the alignment
 * penalty's propagation does), as long as it leaves m's parameters as it found them. Its
 * gradient joins the step un-normalised in PCN-SGD and goes to Δ_reg in components mode. */
typedef double (*train_penalty_fn)(void *ctx, model_t *m, const float *probs, const int32_t *y,
                                   int B, float *reg_grad);

typedef struct {
    int epochs;
    int batch;
    optim_config_t optim;
    uint64_t seed;
    int patience;          /* early stopping: epochs without val-loss improvement; 0 = off */
    loss_opts_t loss;
    train_pcn_t pcn;
    train_penalty_fn penalty;   /* optional */
    void *penalty_ctx;
    void (*on_epoch)(const train_epoch_t *ep, void *ctx); /* optional progress callback */
    void *on_epoch_ctx;
} train_config_t;

train_config_t train_config_default(void);

typedef struct {
    int epochs_run;
    int best_epoch;        /* epoch whose parameters were kept (early stopping), else last */
    size_t samples;        /* training samples processed */
    double train_seconds;  /* time in training steps only (no evaluation) */
    double samples_per_sec;
    double final_train_loss;
    double best_val_loss;
} train_report_t;

/* Trains m in place on `train`; `val` may be NULL (no early stopping). With
 * TRAIN_PCN_COMPONENTS, decomp (sgd_decomp_new(C, n_params, lr, momentum)) receives the
 * per-class decomposition of the update, and the optimiser must be SGD. */
int train_run(model_t *m, const dataset_t *train, const dataset_t *val, const train_config_t *cfg,
              sgd_decomp_t *decomp, train_report_t *rep, cc_err_t *err) CC_WUR;

/* Mean loss and accuracy of m on ds (evaluation mode). probs_out (n, C) optional. */
void train_evaluate(model_t *m, const dataset_t *ds, double *loss, double *accuracy, float *probs_out);

#endif
