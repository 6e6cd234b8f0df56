/* model_spec.c — parsing, printing and validating model architecture strings:
 *   "softmax"            linear softmax regression
 *   "mlp:64,32"          dense hidden layers of 64 and 32 units, then the head
 *   "cnn:16,32/128"      conv3x3(16)+act+pool2, conv3x3(32)+act+pool2, dense 128, head */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static int s_parse_list(const char *text, int *out, int max, int *count, const char *what,
                        cc_err_t *err) {
    *count = 0;
    const char *p = text;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0 || v > 1 << 20)
            return cc_err_set(err, CC_ERR_ARG, "model: %s sizes must be positive integers, got \"%s\"",
                              what, text);
        if (*count == max)
            return cc_err_set(err, CC_ERR_ARG, "model: at most %d %s layers", max, what);
        out[(*count)++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return cc_err_set(err, CC_ERR_ARG, "model: unexpected \"%s\" in %s sizes", end, what);
        p = end;
    }
    return 0;
}

int model_spec_parse(const char *text, model_spec_t *spec, cc_err_t *err) {
    spec->n_hidden = spec->n_conv = 0;
    if (strcmp(text, "softmax") == 0) {
        spec->kind = MODEL_SOFTMAX;
        return 0;
    }
    if (strncmp(text, "softmax:", 8) == 0) /* hidden sizes belong to an mlp: say so */
        return cc_err_set(err, CC_ERR_ARG, "model: arch softmax takes no hidden layers; use %s%s",
                          text[8] ? "mlp:" : "softmax", text + 8);
    if (strncmp(text, "mlp:", 4) == 0) {
        spec->kind = MODEL_MLP;
        return s_parse_list(text + 4, spec->hidden, MODEL_MAX_HIDDEN, &spec->n_hidden, "hidden", err);
    }
    if (strncmp(text, "cnn:", 4) == 0) {
        spec->kind = MODEL_CNN;
        char buf[256];
        snprintf(buf, sizeof buf, "%s", text + 4);
        char *slash = strchr(buf, '/');
        if (slash) *slash = '\0';
        int rc = s_parse_list(buf, spec->conv, MODEL_MAX_CONV, &spec->n_conv, "conv", err);
        if (rc) return rc;
        if (spec->n_conv == 0) return cc_err_set(err, CC_ERR_ARG, "model: cnn needs at least one conv layer");
        return slash ? s_parse_list(slash + 1, spec->hidden, MODEL_MAX_HIDDEN, &spec->n_hidden, "hidden", err) : 0;
    }
    return cc_err_set(err, CC_ERR_ARG,
                      "model: unknown architecture \"%s\" (expected softmax, mlp:H1,H2,... or cnn:C1,C2[/H1,...])",
                      text);
}

static size_t s_append_list(char *buf, size_t len, size_t pos, const int *v, int n) {
    for (int i = 0; i < n && pos < len; i++)
        pos += (size_t)snprintf(buf + pos, len - pos, "%s%d", i ? "," : "", v[i]);
    return pos;
}

void model_spec_arch(const model_spec_t *spec, char *buf, size_t len) {
    size_t pos;
    switch (spec->kind) {
    case MODEL_SOFTMAX: snprintf(buf, len, "softmax"); break;
    case MODEL_MLP:
        pos = (size_t)snprintf(buf, len, "mlp:");
        s_append_list(buf, len, pos, spec->hidden, spec->n_hidden);
        break;
    case MODEL_CNN:
        pos = (size_t)snprintf(buf, len, "cnn:");
        pos = s_append_list(buf, len, pos, spec->conv, spec->n_conv);
        if (spec->n_hidden && pos < len) {
            pos += (size_t)snprintf(buf + pos, len - pos, "/");
            s_append_list(buf, len, pos, spec->hidden, spec->n_hidden);
        }
        break;
    }
}

const char *model_act_name(act_kind_t act) {
    switch (act) {
    case ACT_RELU: return "relu";
    case ACT_GELU: return "gelu";
    case ACT_TANH: return "tanh";
    }
    return "?";
}

int model_act_parse(const char *text, act_kind_t *act) {
    if (strcmp(text, "relu") == 0) *act = ACT_RELU;
    else if (strcmp(text, "gelu") == 0) *act = ACT_GELU;
    else if (strcmp(text, "tanh") == 0) *act = ACT_TANH;
    else return CC_ERR_ARG;
    return 0;
}

/* Is in_c x in_h x in_w exactly n_inputs (already checked to be in (0, 2^26])? The sizes
 * come from files and messages (any int), so the product is formed in steps that cannot
 * overflow: each factor is at most n_inputs, and so is every partial product before the
 * next multiplication (so none exceeds 2^52). */
static int s_image_matches_inputs(const model_spec_t *spec) {
    int64_t n = spec->n_inputs, c = spec->in_c, h = spec->in_h, w = spec->in_w;
    if (c <= 0 || h <= 0 || w <= 0 || c > n || h > n || w > n) return 0;
    if (c * h > n) return 0;
    return c * h * w == n;
}

int model_spec_validate(const model_spec_t *spec, cc_err_t *err) {
    if (spec->kind != MODEL_SOFTMAX && spec->kind != MODEL_MLP && spec->kind != MODEL_CNN)
        return cc_err_set(err, CC_ERR_ARG, "model: unknown kind %d", (int)spec->kind);
    if (spec->n_inputs <= 0 || spec->n_inputs > 1 << 26)
        return cc_err_set(err, CC_ERR_ARG, "model: n_inputs %d out of range", spec->n_inputs);
    if (spec->n_classes < 2 || spec->n_classes > 1 << 16)
        return cc_err_set(err, CC_ERR_ARG, "model: needs 2 to 65536 classes, got %d", spec->n_classes);
    if (spec->n_hidden < 0 || spec->n_hidden > MODEL_MAX_HIDDEN || spec->n_conv < 0 ||
        spec->n_conv > MODEL_MAX_CONV)
        return cc_err_set(err, CC_ERR_ARG, "model: too many layers");
    if (spec->kind != MODEL_CNN && spec->n_conv != 0) /* model_new would build them anyway */
        return cc_err_set(err, CC_ERR_ARG, "model: only a cnn has conv layers, got %d in a %s",
                          spec->n_conv, spec->kind == MODEL_MLP ? "mlp" : "softmax");
    if (spec->kind == MODEL_SOFTMAX && spec->n_hidden != 0) { /* model_new would build them, the arch string not */
        char mlp[128];
        size_t pos = (size_t)snprintf(mlp, sizeof mlp, "mlp:");
        s_append_list(mlp, sizeof mlp, pos, spec->hidden, spec->n_hidden);
        return cc_err_set(err, CC_ERR_ARG, "model: arch softmax takes no hidden layers (got %d); use %s",
                          spec->n_hidden, mlp);
    }
    for (int i = 0; i < spec->n_hidden; i++)
        if (spec->hidden[i] <= 0 || spec->hidden[i] > 1 << 20)
            return cc_err_set(err, CC_ERR_ARG, "model: hidden size %d out of range", spec->hidden[i]);
    if ((unsigned)spec->act > ACT_TANH) return cc_err_set(err, CC_ERR_ARG, "model: unknown activation");
    if (!(spec->dropout >= 0.0f && spec->dropout < 1.0f))
        return cc_err_set(err, CC_ERR_ARG, "model: dropout must be in [0, 1), got %g", spec->dropout);
    if (spec->kind == MODEL_CNN) {
        if (spec->n_conv < 1) return cc_err_set(err, CC_ERR_ARG, "model: cnn needs a conv layer");
        if (!s_image_matches_inputs(spec))
            return cc_err_set(err, CC_ERR_ARG,
                              "model: cnn needs image data (channels x height x width = n_inputs), "
                              "got %d x %d x %d for %d inputs", spec->in_c, spec->in_h, spec->in_w,
                              spec->n_inputs);
        int h = spec->in_h, w = spec->in_w;
        for (int i = 0; i < spec->n_conv; i++) {
            if (spec->conv[i] <= 0 || spec->conv[i] > 4096)
                return cc_err_set(err, CC_ERR_ARG, "model: conv channels %d out of range", spec->conv[i]);
            /* The layer's output, channels x h x w floats per sample, is an int in model.c:
             * bounded like n_inputs' own limit times 4 (64-bit product: 4096 x 2^26 fits). */
            if ((int64_t)spec->conv[i] * h * w > (int64_t)1 << 28)
                return cc_err_set(err, CC_ERR_ARG, "model: conv layer %d would hold %d x %d x %d values per sample "
                                  "(limit 2^28)", i + 1, spec->conv[i], h, w);
            h /= 2, w /= 2;
        }
        if (h < 1 || w < 1)
            return cc_err_set(err, CC_ERR_ARG, "model: %d pooling layers shrink a %dx%d image to nothing",
                              spec->n_conv, spec->in_h, spec->in_w);
    }
    return 0;
}
