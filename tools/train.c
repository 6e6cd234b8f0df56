/* concord-train — train one model on one data file, locally (no federation).
 *
 *   concord-train --data thyroid.train --test thyroid.test --model mlp:64,32 --epochs 30 \
 *                 --batch 32 --lr 0.05 --optimizer sgd --seed 1 --threads 1 --out model.ckpt
 *
 * Progress per epoch on stderr; the test report on stdout; with --json the last stdout
 * line is one JSON object (samples_per_sec, train_seconds, test_accuracy, ...). */
#include <cblas.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "config.h"
#include "dataset.h"
#include "metrics.h"
#include "model.h"
#include "train.h"

typedef struct {
    const char *data, *labels, *test, *test_labels, *label_column;
    const char *model, *out, *export_path, *standardize, *class_weights;
    double val_frac;
    int threads, json, quiet;
    config_t *cfg;             /* --config FILE; its strings back the options above */
    train_config_t train;
    act_kind_t act;
    float dropout;
} s_opts_t;

static void s_usage(FILE *fp) {
    fprintf(fp,
        "Usage: concord-train --data FILE [options]\n"
        "Train one model on one data file (FANN, CSV or IDX) and report test metrics.\n\n"
        "Data:\n"
        "  --data FILE            training data (.csv, FANN text, or IDX images)\n"
        "  --labels FILE          IDX labels for --data\n"
        "  --test FILE            held-out test data (optional)\n"
        "  --test-labels FILE     IDX labels for --test\n"
        "  --label-column NAME    CSV label column (default: \"label\", else the last)\n"
        "  --val-frac F           stratified validation share of --data (default 0.1; 0 = none)\n"
        "  --standardize MODE     auto|local|none (default auto: local for tabular data,\n"
        "                         none for images, whose pixels are already in [0,1])\n"
        "Model:\n"
        "  --model ARCH           softmax | mlp:H1,H2,... | cnn:C1,C2[/H1,...] (default mlp:64,32)\n"
        "  --activation A         relu|gelu|tanh (default relu)\n"
        "  --dropout P            dropout after hidden dense layers (default 0)\n"
        "Training:\n"
        "  --epochs N             (default 10)      --batch N   (default 32)\n"
        "  --optimizer sgd|adam   (default sgd)     --lr F      (default 0.05)\n"
        "  --momentum F           SGD momentum (default 0.9)\n"
        "  --weight-decay F       L2 weight decay (default 0)\n"
        "  --label-smoothing F    (default 0)\n"
        "  --class-weights W      balanced | w0,w1,... (default: none)\n"
        "  --pcn off|client       per-class normalised SGD steps (DESIGN 6.3, default off)\n"
        "  --patience N           early stopping after N epochs without val-loss gain (0 = off)\n"
        "  --seed N               (default 1)       --threads N (OpenBLAS threads, default 1)\n"
        "Output:\n"
        "  --out FILE             save the model (Concord checkpoint format)\n"
        "  --export FILE          also export it as safetensors (PyTorch)\n"
        "  --json                 last stdout line: one JSON object with the results\n"
        "  --quiet                no per-epoch progress\n"
        "  --config FILE          INI file of the same settings: [data] data, labels, test, test_labels,\n"
        "                         label_column, val_frac, standardize; [model] arch, activation,\n"
        "                         dropout; [training] epochs, batch, optimizer, lr, momentum,\n"
        "                         weight_decay, label_smoothing, class_weights, pcn, patience, seed,\n"
        "                         threads; [output] out, export. Flags override the file.\n"
        "  --help, --version\n");
}

enum { OPT_LABELS = 256, OPT_TEST_LABELS, OPT_LABEL_COLUMN, OPT_VAL_FRAC, OPT_STANDARDIZE,
       OPT_ACT, OPT_DROPOUT, OPT_EPOCHS, OPT_BATCH, OPT_OPTIMIZER, OPT_LR, OPT_MOMENTUM,
       OPT_WD, OPT_SMOOTH, OPT_CW, OPT_PCN, OPT_PATIENCE, OPT_SEED, OPT_THREADS, OPT_EXPORT,
       OPT_JSON, OPT_QUIET, OPT_HELP, OPT_VERSION, OPT_CONFIG };

static const struct option s_longopts[] = {
    {"data", required_argument, 0, 'd'}, {"labels", required_argument, 0, OPT_LABELS},
    {"test", required_argument, 0, 't'}, {"test-labels", required_argument, 0, OPT_TEST_LABELS},
    {"label-column", required_argument, 0, OPT_LABEL_COLUMN},
    {"val-frac", required_argument, 0, OPT_VAL_FRAC},
    {"standardize", required_argument, 0, OPT_STANDARDIZE},
    {"model", required_argument, 0, 'm'}, {"activation", required_argument, 0, OPT_ACT},
    {"dropout", required_argument, 0, OPT_DROPOUT}, {"epochs", required_argument, 0, OPT_EPOCHS},
    {"batch", required_argument, 0, OPT_BATCH}, {"optimizer", required_argument, 0, OPT_OPTIMIZER},
    {"lr", required_argument, 0, OPT_LR}, {"momentum", required_argument, 0, OPT_MOMENTUM},
    {"weight-decay", required_argument, 0, OPT_WD},
    {"label-smoothing", required_argument, 0, OPT_SMOOTH},
    {"class-weights", required_argument, 0, OPT_CW}, {"pcn", required_argument, 0, OPT_PCN},
    {"patience", required_argument, 0, OPT_PATIENCE}, {"seed", required_argument, 0, OPT_SEED},
    {"threads", required_argument, 0, OPT_THREADS}, {"out", required_argument, 0, 'o'},
    {"export", required_argument, 0, OPT_EXPORT}, {"json", no_argument, 0, OPT_JSON},
    {"quiet", no_argument, 0, OPT_QUIET}, {"help", no_argument, 0, OPT_HELP},
    {"version", no_argument, 0, OPT_VERSION}, {"config", required_argument, 0, OPT_CONFIG}, {0, 0, 0, 0}};

static int s_bad(const char *flag, const char *value, const char *expected) {
    fprintf(stderr, "concord-train: %s: invalid value \"%s\" (expected %s)\n", flag, value, expected);
    return 2;
}

static int s_parse_num(const char *text, double lo, double hi, double *out) {
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

/* Applies one option (from a flag or the config file) to o; label names where the value
 * came from in error messages. Returns -1 when applied, else an exit code. */
static int s_apply(s_opts_t *o, int c, const char *v, const char *label) {
    double num;
    switch (c) {
    case 'd': o->data = v; break;
    case OPT_LABELS: o->labels = v; break;
    case 't': o->test = v; break;
    case OPT_TEST_LABELS: o->test_labels = v; break;
    case OPT_LABEL_COLUMN: o->label_column = v; break;
    case OPT_STANDARDIZE:
        if (strcmp(v, "auto") && strcmp(v, "local") && strcmp(v, "none"))
            return s_bad(label, v, "auto, local or none");
        o->standardize = v;
        break;
    case 'm': o->model = v; break;
    case 'o': o->out = v; break;
    case OPT_EXPORT: o->export_path = v; break;
    case OPT_CW: o->class_weights = v; break;
    case OPT_ACT:
        if (model_act_parse(v, &o->act)) return s_bad(label, v, "relu, gelu or tanh");
        break;
    case OPT_OPTIMIZER:
        if (optim_kind_parse(v, &o->train.optim.kind)) return s_bad(label, v, "sgd or adam");
        break;
    case OPT_PCN:
        if (strcmp(v, "off") == 0) o->train.pcn = TRAIN_PCN_OFF;
        else if (strcmp(v, "client") == 0) o->train.pcn = TRAIN_PCN_CLIENT;
        else return s_bad(label, v, "off or client");
        break;
    case OPT_VAL_FRAC:
        if (s_parse_num(v, 0, 0.9, &num)) return s_bad(label, v, "a number in [0, 0.9]");
        o->val_frac = num;
        break;
    case OPT_DROPOUT:
        if (s_parse_num(v, 0, 0.99, &num)) return s_bad(label, v, "a number in [0, 0.99]");
        o->dropout = (float)num;
        break;
    case OPT_EPOCHS:
        if (s_parse_num(v, 0, 1e6, &num)) return s_bad(label, v, "an integer >= 0");
        o->train.epochs = (int)num;
        break;
    case OPT_BATCH:
        if (s_parse_num(v, 1, 1 << 20, &num)) return s_bad(label, v, "an integer >= 1");
        o->train.batch = (int)num;
        break;
    case OPT_LR:
        if (s_parse_num(v, 0, 1e3, &num)) return s_bad(label, v, "a positive number");
        o->train.optim.lr = (float)num;
        break;
    case OPT_MOMENTUM:
        if (s_parse_num(v, 0, 0.9999, &num)) return s_bad(label, v, "a number in [0, 1)");
        o->train.optim.momentum = (float)num;
        break;
    case OPT_WD:
        if (s_parse_num(v, 0, 1, &num)) return s_bad(label, v, "a number in [0, 1]");
        o->train.optim.weight_decay = (float)num;
        break;
    case OPT_SMOOTH:
        if (s_parse_num(v, 0, 0.99, &num)) return s_bad(label, v, "a number in [0, 1)");
        o->train.loss.label_smoothing = (float)num;
        break;
    case OPT_PATIENCE:
        if (s_parse_num(v, 0, 1e6, &num)) return s_bad(label, v, "an integer >= 0");
        o->train.patience = (int)num;
        break;
    case OPT_SEED:
        if (s_parse_num(v, 0, 1.8e19, &num)) return s_bad(label, v, "a non-negative integer");
        o->train.seed = strtoull(v, NULL, 10);
        break;
    case OPT_THREADS:
        if (s_parse_num(v, 1, 256, &num)) return s_bad(label, v, "an integer in [1, 256]");
        o->threads = (int)num;
        break;
    default: return 2;
    }
    return -1;
}

/* Config keys are the long options, grouped: [data] data = FILE is --data FILE. */
static const struct { const char *key; int code; } s_config_keys[] = {
    {"data.data", 'd'}, {"data.labels", OPT_LABELS}, {"data.test", 't'}, {"data.test_labels", OPT_TEST_LABELS},
    {"data.label_column", OPT_LABEL_COLUMN}, {"data.val_frac", OPT_VAL_FRAC}, {"data.standardize", OPT_STANDARDIZE},
    {"model.arch", 'm'}, {"model.activation", OPT_ACT}, {"model.dropout", OPT_DROPOUT},
    {"training.epochs", OPT_EPOCHS}, {"training.batch", OPT_BATCH}, {"training.optimizer", OPT_OPTIMIZER},
    {"training.lr", OPT_LR}, {"training.momentum", OPT_MOMENTUM}, {"training.weight_decay", OPT_WD},
    {"training.label_smoothing", OPT_SMOOTH}, {"training.class_weights", OPT_CW}, {"training.pcn", OPT_PCN},
    {"training.patience", OPT_PATIENCE}, {"training.seed", OPT_SEED}, {"training.threads", OPT_THREADS},
    {"output.out", 'o'}, {"output.export", OPT_EXPORT},
};

/* Loads --config FILE (if given) into o before the flags, which override it. */
static int s_apply_config(s_opts_t *o, const char *path) {
    cc_err_t err = {0};
    o->cfg = config_new();
    for (size_t i = 0; i < sizeof s_config_keys / sizeof *s_config_keys; i++)
        config_declare(o->cfg, s_config_keys[i].key, NULL, "");
    if (config_load_file(o->cfg, path, &err)) {
        fprintf(stderr, "concord-train: %s\n", err.msg);
        return 2;
    }
    for (size_t i = 0; i < sizeof s_config_keys / sizeof *s_config_keys; i++) {
        const char *v = config_get(o->cfg, s_config_keys[i].key);
        if (!v || !config_is_set(o->cfg, s_config_keys[i].key)) continue;
        char label[512];
        snprintf(label, sizeof label, "%s: %s", config_origin(o->cfg, s_config_keys[i].key), s_config_keys[i].key);
        int rc = s_apply(o, s_config_keys[i].code, v, label);
        if (rc >= 0) return rc;
    }
    return -1;
}

/* Parses argv into o; returns -1 to continue, or an exit code. */
static int s_parse_args(int argc, char **argv, s_opts_t *o) {
    int c, rc;
    while ((c = getopt_long(argc, argv, "d:t:m:o:", s_longopts, NULL)) != -1)
        if (c == OPT_CONFIG && (rc = s_apply_config(o, optarg)) >= 0) return rc;
    optind = 0;
    while ((c = getopt_long(argc, argv, "d:t:m:o:", s_longopts, NULL)) != -1) {
        char label[64];
        const struct option *lo = NULL;
        for (const struct option *p = s_longopts; p->name; p++)
            if (p->val == c) lo = p;
        snprintf(label, sizeof label, "--%s", lo ? lo->name : "?");
        switch (c) {
        case OPT_CONFIG: break;
        case OPT_JSON: o->json = 1; break;
        case OPT_QUIET: o->quiet = 1; break;
        case OPT_HELP: s_usage(stdout); return 0;
        case OPT_VERSION: printf("concord-train %s\n", CONCORD_VERSION); return 0;
        case '?': s_usage(stderr); return 2;
        default:
            if ((rc = s_apply(o, c, optarg, label)) >= 0) return rc;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "concord-train: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (!o->data) {
        fprintf(stderr, "concord-train: --data FILE (or [data] data = FILE) is required (see --help)\n");
        return 2;
    }
    return -1;
}

static int s_load(const char *path, const char *labels, const s_opts_t *o, int n_classes,
                  dataset_t **out) {
    data_load_opts_t lo = {.labels_path = labels, .label_column = o->label_column, .n_classes = n_classes};
    cc_err_t err = {0};
    if (dataset_load(path, &lo, out, &err) != 0) {
        fprintf(stderr, "concord-train: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* Class weights from --class-weights: "balanced" (n / (C·n_c), as scikit-learn) or a list. */
static int s_class_weights(const char *text, const dataset_t *ds, int C, float *w) {
    if (strcmp(text, "balanced") == 0) {
        size_t *counts = cc_xcalloc((size_t)C, sizeof *counts);
        dataset_class_counts(ds, counts);
        for (int c = 0; c < C; c++)
            w[c] = counts[c] ? (float)((double)ds->n / ((double)C * (double)counts[c])) : 0.0f;
        free(counts);
        return 0;
    }
    const char *p = text;
    for (int c = 0; c < C; c++) {
        char *end;
        w[c] = strtof(p, &end);
        if (end == p || !(w[c] >= 0.0f) || (c < C - 1 && *end != ',') || (c == C - 1 && *end))
            return s_bad("--class-weights", text, "\"balanced\" or one non-negative weight per class");
        p = end + 1;
    }
    return 0;
}

static void s_on_epoch(const train_epoch_t *ep, void *ctx) {
    const s_opts_t *o = ctx;
    if (o->quiet) return;
    fprintf(stderr, "epoch %3d/%d  train_loss %.4f", ep->epoch, ep->epochs, ep->train_loss);
    if (!isnan(ep->val_loss))
        fprintf(stderr, "  val_loss %.4f  val_acc %.4f%s", ep->val_loss, ep->val_accuracy,
                ep->improved ? " *" : "");
    fprintf(stderr, "  %.2fs\n", ep->seconds);
}

typedef struct {
    dataset_t *train, *val, *test;
    standardizer_t *st;
    model_t *model;
    float *class_w;
    size_t baseline_rss;   /* before any data was loaded: libraries, OpenBLAS buffers */
    size_t train_peak_rss; /* peak RSS while train_run ran (0 if it cannot be measured) */
} s_run_t;

static void s_run_free(s_run_t *r) {
    dataset_destroy(&r->train);
    dataset_destroy(&r->val);
    dataset_destroy(&r->test);
    standardizer_destroy(&r->st);
    model_destroy(&r->model);
    free(r->class_w);
}

/* Loads and prepares the data: split, standardisation. */
static int s_prepare_data(s_run_t *r, const s_opts_t *o) {
    cc_err_t err = {0};
    if (s_load(o->data, o->labels, o, 0, &r->train)) return 1;
    /* In place: no second copy of the data just to carve off validation rows. */
    if (o->val_frac > 0 &&
        dataset_split_off_stratified(r->train, o->val_frac, o->train.seed, &r->val, &err)) {
        fprintf(stderr, "concord-train: %s\n", err.msg);
        return 1;
    }
    if (o->test && s_load(o->test, o->test_labels, o, r->train->n_classes, &r->test)) return 1;
    int image = r->train->channels > 0;
    if (strcmp(o->standardize, "local") == 0 || (strcmp(o->standardize, "auto") == 0 && !image)) {
        r->st = standardizer_fit(r->train);
        standardizer_apply(r->st, r->train);
        if (r->val) standardizer_apply(r->st, r->val);
        if (r->test) standardizer_apply(r->st, r->test);
    }
    return 0;
}

static int s_build_model(s_run_t *r, const s_opts_t *o) {
    model_spec_t spec = {0};
    cc_err_t err = {0};
    const dataset_t *ds = r->train;
    spec.n_inputs = (int)ds->d;
    spec.n_classes = ds->n_classes < 2 ? 2 : ds->n_classes;
    if (r->test && r->test->n_classes > spec.n_classes) spec.n_classes = r->test->n_classes;
    spec.in_c = ds->channels, spec.in_h = ds->height, spec.in_w = ds->width;
    spec.act = o->act;
    spec.dropout = o->dropout;
    if (model_spec_parse(o->model, &spec, &err) || !(r->model = model_new(&spec, &err))) {
        fprintf(stderr, "concord-train: %s\n", err.msg);
        return 2;
    }
    model_init(r->model, o->train.seed);
    return 0;
}

/* Training memory against its budget: baseline + data + 4 x model (parameters, gradients
 * or momentum, optimiser state, early-stopping copy) + one batch of activations. */
static json_t *s_memory_json(const s_run_t *r, const s_opts_t *o) {
    size_t row = r->train->d * sizeof(float) + sizeof(int32_t);
    size_t data = (r->train->n + (r->val ? r->val->n : 0) + (r->test ? r->test->n : 0)) * row;
    size_t model = r->model->n_params * sizeof(float);
    size_t act = model_activation_bytes(r->model, o->train.batch);
    size_t budget = r->baseline_rss + data + 4 * model + act;
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "baseline_rss_bytes", (json_int_t)r->baseline_rss,
                     "data_bytes", (json_int_t)data, "model_bytes", (json_int_t)model,
                     "activation_bytes", (json_int_t)act, "budget_bytes", (json_int_t)budget,
                     "train_peak_rss_bytes", (json_int_t)r->train_peak_rss);
}

static json_t *s_result_json(const s_run_t *r, const s_opts_t *o, const train_report_t *rep,
                             const metrics_t *tm) {
    char arch[128];
    model_spec_arch(&r->model->spec, arch, sizeof arch);
    json_t *j = json_pack("{s:s, s:I, s:i, s:i, s:f, s:f, s:I, s:f, s:i, s:I}",
        "model", arch, "n_params", (json_int_t)r->model->n_params, "epochs_run", rep->epochs_run,
        "best_epoch", rep->best_epoch, "train_seconds", rep->train_seconds,
        "samples_per_sec", rep->samples_per_sec, "train_samples", (json_int_t)r->train->n,
        "final_train_loss", rep->final_train_loss, "threads", o->threads,
        "peak_rss_bytes", (json_int_t)cc_peak_rss());
    json_object_set_new(j, "memory", s_memory_json(r, o));
    if (tm) {
        json_object_set_new(j, "test_accuracy", json_real(tm->accuracy));
        json_object_set_new(j, "test_balanced_accuracy", json_real(tm->balanced_accuracy));
        json_object_set_new(j, "test_macro_f1", json_real(tm->macro_f1));
        json_object_set_new(j, "test_loss", json_real(tm->loss));
        json_object_set_new(j, "test", metrics_to_json(tm));
    }
    return j;
}

static int s_save(const s_run_t *r, const s_opts_t *o, const train_report_t *rep) {
    cc_err_t err = {0};
    json_t *meta = json_pack("{s:s, s:i, s:i, s:f, s:s}", "trained_on", o->data,
                             "epochs_run", rep->epochs_run, "batch", o->train.batch,
                             "lr", o->train.optim.lr, "optimizer", optim_kind_name(o->train.optim.kind));
    int rc = 0;
    if (o->out && checkpoint_save(o->out, r->model, r->st, meta, &err)) rc = 1;
    if (!rc && o->export_path && checkpoint_export_safetensors(o->export_path, r->model, r->st, &err)) rc = 1;
    if (rc) fprintf(stderr, "concord-train: %s\n", err.msg);
    json_decref(meta);
    return rc;
}

static int s_train_and_report(s_run_t *r, s_opts_t *o) {
    int C = r->model->spec.n_classes;
    if (o->class_weights) {
        r->class_w = cc_xcalloc((size_t)C, sizeof(float));
        if (s_class_weights(o->class_weights, r->train, C, r->class_w)) return 2;
        o->train.loss.class_weights = r->class_w;
    }
    o->train.on_epoch = s_on_epoch;
    o->train.on_epoch_ctx = o;
    train_report_t rep;
    cc_err_t err = {0};
    if (!o->quiet)
        fprintf(stderr, "training %s (%zu parameters) on %zu rows, %zu validation, %d threads\n",
                o->model, r->model->n_params, r->train->n, r->val ? r->val->n : 0, o->threads);
    int measured = cc_peak_rss_reset() == 0;
    int failed = train_run(r->model, r->train, r->val, &o->train, NULL, &rep, &err);
    r->train_peak_rss = measured ? cc_peak_rss() : 0;
    if (failed) {
        fprintf(stderr, "concord-train: %s\n", err.msg);
        return 1;
    }
    metrics_t tm = {0};
    int have_test = 0;
    if (r->test) {
        float *probs = cc_xalloc_floats(r->test->n * (size_t)C);
        model_predict(r->model, r->test->x, r->test->n, probs);
        have_test = metrics_compute(&tm, probs, r->test->y, r->test->n, C, &err) == 0;
        free(probs);
        if (!have_test) fprintf(stderr, "concord-train: %s\n", err.msg);
    }
    printf("trained %d epochs in %.2fs: %.0f samples/s\n", rep.epochs_run, rep.train_seconds, rep.samples_per_sec);
    if (have_test) metrics_print(stdout, &tm);
    int rc = s_save(r, o, &rep);
    if (o->json) {
        json_t *j = s_result_json(r, o, &rep, have_test ? &tm : NULL);
        char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(8));
        printf("%s\n", s);
        free(s);
        json_decref(j);
    }
    metrics_free(&tm);
    return rc;
}

int main(int argc, char **argv) {
    s_opts_t o = {.model = "mlp:64,32", .standardize = "auto", .val_frac = 0.1, .threads = 1,
                  .train = train_config_default(), .act = ACT_RELU};
    int rc = s_parse_args(argc, argv, &o);
    if (rc >= 0) {
        config_destroy(&o.cfg);
        return rc;
    }
    openblas_set_num_threads(o.threads);
    s_run_t r = {.baseline_rss = cc_current_rss()};
    rc = s_prepare_data(&r, &o);
    if (!rc) rc = s_build_model(&r, &o);
    if (!rc) rc = s_train_and_report(&r, &o);
    s_run_free(&r);
    config_destroy(&o.cfg);
    return rc;
}
