/* checkpoint.h — the Concord model file (versioned, checksummed, written atomically) and
 * export to safetensors for PyTorch.
 *
 * A checkpoint holds a model's spec and parameters, optionally the standardizer its inputs
 * need and free-form JSON metadata (training settings, round, ...). Saving then loading
 * gives back the same bits. The byte layout is documented at the top of checkpoint.c.
 *
 * Load errors (the code tells the caller what happened to the file):
 *   CC_ERR_IO         the file cannot be opened or read
 *   CC_ERR_TRUNCATED  the file ends before its header or its announced lengths say it
 *                     should (an interrupted copy); the message says "truncated: expected
 *                     N bytes, got M"
 *   CC_ERR_CORRUPT    wrong magic ("not a Concord model file"), a checksum mismatch,
 *                     trailing bytes, or contents that are inconsistent or absurd
 *   CC_ERR_FORMAT     an intact file of a format version this build cannot read
 *   CC_ERR_NOMEM      the file is larger than CHECKPOINT_MAX_BYTES */
#ifndef CONCORD_CHECKPOINT_H
#define CONCORD_CHECKPOINT_H

#include <jansson.h>

#include "dataset.h"
#include "model.h"
#include "util.h"

#define CHECKPOINT_VERSION 1u
/* Refuse to read model files larger than this (8 GiB). */
#define CHECKPOINT_MAX_BYTES ((size_t)1 << 33)

/* Writes m (spec and params), st (may be NULL; if given, st->d must equal
 * m->spec.n_inputs) and meta (may be NULL; any JSON value) to path, atomically (FILEIO-1..3):
 * on failure the previous file at path is untouched. Nothing is taken over from the caller. */
int checkpoint_save(const char *path, const model_t *m, const standardizer_t *st,
                    const json_t *meta, cc_err_t *err) CC_WUR;

/* Reads and fully validates path. On success: *m is a new model the caller owns
 * (model_destroy), its params restored and its grads zero; if st is not NULL, *st is a
 * new standardizer the caller owns (standardizer_destroy), or NULL if the file has none;
 * if meta is not NULL, *meta is a new JSON reference (json_decref), or NULL if the file
 * has none. On failure every out-parameter is NULL and err says what is wrong. */
int checkpoint_load(const char *path, model_t **m, standardizer_t **st, json_t **meta,
                    cc_err_t *err) CC_WUR;

/* Writes m (and st, may be NULL) to path in the safetensors format, atomically.
 * Tensor names are those of the PyTorch twin, a torch.nn.Sequential of the model's layers
 * in order, with a torch.nn.Flatten() inserted after the last MaxPool2d of a CNN (model.c
 * flattens implicitly, in NCHW order, between the last pool and the first dense layer):
 *   "{k}.weight" [out, in] and "{k}.bias" [out]       for a dense layer at Sequential index k
 *   "{k}.weight" [oc, c, 3, 3] and "{k}.bias" [oc]    for a conv layer (Conv2d(padding=1))
 *   "standardizer.mean" [d], "standardizer.std" [d]   if st is given
 * k equals the index in m->layers, plus one for the layers after the flatten. The
 * "__metadata__" strings describe the architecture: "arch" (model_spec_arch), "kind",
 * "activation" (and "activation_torch"), "dropout", "n_inputs", "n_classes",
 * "input_shape", "torch_sequential" (the twin, module by module) and "standardizer". */
int checkpoint_export_safetensors(const char *path, const model_t *m, const standardizer_t *st,
                                  cc_err_t *err) CC_WUR;

#endif
