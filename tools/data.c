/* concord-data — inspect, split and convert the datasets Concord trains on.
 *
 *   concord-data inspect FILE          shape, class histogram, missing values, feature ranges
 *   concord-data split FILE ...        one shard per simulated hospital + summary.json
 *   concord-data convert IN OUT        between FANN, CSV and IDX
 *
 * Exit status: 0 success, 1 data error (a file could not be read, parsed or written, or a
 * split is impossible), 2 usage error. Every message starts with "concord-data: ". */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "dataset.h"
#include "metrics.h"
#include "model.h"
#include "fileio.h"

#ifndef CONCORD_VERSION
#define CONCORD_VERSION "unknown"
#endif

enum { S_EXIT_OK = 0, S_EXIT_DATA = 1, S_EXIT_USAGE = 2 };
enum { S_SUMMARY_FEATURES = 8, S_TABLE_MAX_CLASSES = 12 };

/* ---- usage texts ------------------------------------------------------------------ */

static const char *const s_usage_main =
    "Usage: concord-data COMMAND [OPTIONS]\n"
    "\n"
    "Inspect, split and convert the datasets Concord trains on.\n"
    "\n"
    "Commands:\n"
    "  inspect FILE     rows, features, classes, class histogram, missing values, ranges\n"
    "  split FILE       one shard per simulated hospital (iid, label skew, size skew,\n"
    "                   or by a site column), plus summary.json\n"
    "  convert IN OUT   convert between FANN, CSV and IDX\n"
    "  eval             score a saved model (concord-train --out, the federation's\n"
    "                   final-model.ckpt) on a data file\n"
    "\n"
    "Formats, chosen by file name unless --input-format / --format says otherwise:\n"
    "  *.csv            CSV with a header line and a label column\n"
    "  *idx3*[.gz]      IDX images (uint8) with an idx1 labels file beside them\n"
    "  anything else    FANN text: \"n_rows n_inputs n_outputs\", then input and output\n"
    "                   lines for each row (outputs one-hot, or one 0/1 output)\n"
    "\n"
    "Run 'concord-data COMMAND --help' for the options of a command.\n"
    "  -h, --help       show this help\n"
    "  -V, --version    show the version\n"
    "\n"
    "Exit status: 0 success, 1 data error, 2 usage error.\n";

#define S_INPUT_OPTIONS                                                                            \
    "  --labels FILE          IDX labels file (default: FILE's name with idx3 -> idx1 and\n"       \
    "                         images -> labels)\n"                                                 \
    "  --label-column NAME    CSV label column (default: \"label\", else the last column)\n"       \
    "  --input-format FMT     fann, csv or idx (default: by file name)\n"

static const char *const s_usage_inspect =
    "Usage: concord-data inspect FILE [OPTIONS]\n"
    "\n"
    "Prints rows, features, classes with their counts and shares, missing values per CSV\n"
    "column (counted here, where loading for training refuses them), and min/mean/max of\n"
    "the first features.\n"
    "\n"
    "Options:\n" S_INPUT_OPTIONS
    "  --json                 print one JSON object (all features) instead of text\n"
    "  -h, --help             show this help\n";

static const char *const s_usage_split =
    "Usage: concord-data split FILE --clients N --scheme SCHEME --seed S --out DIR [OPTIONS]\n"
    "\n"
    "Writes one shard per hospital, DIR/site1.EXT .. DIR/siteN.EXT (IDX: DIR/siteK-images-\n"
    "idx3-ubyte and DIR/siteK-labels-idx1-ubyte), and DIR/summary.json, and prints each\n"
    "shard's size and class mix. The same seed gives the same shards.\n"
    "\n"
    "Schemes:\n"
    "  iid                seeded shuffle, equal shares\n"
    "  dirichlet:ALPHA    label skew: for each class, shares ~ Dirichlet(ALPHA) over the\n"
    "                     clients (0.1: very skewed, 100: nearly iid); drawn again until\n"
    "                     every client has --min-per-client rows\n"
    "  quantity:ALPHA     size skew: client sizes ~ Dirichlet(ALPHA), rows drawn iid\n"
    "  column:NAME        CSV only: one hospital per distinct value of column NAME, which\n"
    "                     is dropped from the features (--clients, --seed not needed)\n"
    "\n"
    "Options:\n"
    "  --clients N            number of hospitals\n"
    "  --scheme SCHEME        see above\n"
    "  --seed S               random seed (unsigned 64-bit)\n"
    "  --out DIR              output directory, created if missing\n"
    "  --format FMT           fann, csv or idx (default: the input's format)\n"
    "  --min-per-client M     smallest shard allowed, >= 1 (default 10)\n"
    "  --missing MODE         CSV missing values: error (default), mean or zero\n" S_INPUT_OPTIONS
    "  -h, --help             show this help\n";

static const char *const s_usage_convert =
    "Usage: concord-data convert IN OUT [OPTIONS]\n"
    "\n"
    "Reads IN and writes OUT (atomically) in the format of OUT's name or --format. IDX\n"
    "stores bytes: values must lie in [0, 1] and are rounded to k/255.\n"
    "\n"
    "Options:\n"
    "  --format FMT           output format: fann, csv or idx (default: by OUT's name)\n"
    "  --out-labels FILE      IDX labels file to write (default: OUT's name with idx3 ->\n"
    "                         idx1 and images -> labels)\n"
    "  --missing MODE         CSV missing values: error (default), mean or zero\n" S_INPUT_OPTIONS
    "  -h, --help             show this help\n";

static const char *const s_usage_eval =
    "Usage: concord-data eval --model FILE --data FILE [OPTIONS]\n"
    "\n"
    "Scores a saved model on a data file: loss, accuracy, balanced accuracy, per-class\n"
    "precision/recall/F1, macro-F1, ROC-AUC (two classes) and the confusion matrix. The\n"
    "standardisation saved with the model is applied to the data first.\n"
    "\n"
    "Options:\n"
    "  --model FILE           a Concord model file (.ckpt)\n"
    "  --data FILE            the data to score\n"
    "  --json                 one JSON object instead of the table\n" S_INPUT_OPTIONS
    "  -h, --help             show this help\n";

/* ---- arguments ----------------------------------------------------------------------- */

typedef struct {
    const char *pos[3];
    int npos;
    const char *labels, *label_column, *out_dir, *out_labels, *scheme, *model, *data;
    data_format_t in_format, out_format;
    data_missing_t missing;
    int json, have_seed;
    long clients;
    uint64_t seed;
    size_t min_per_client;
} s_args_t;

enum {
    OPT_LABELS = 256,
    OPT_LABEL_COLUMN,
    OPT_INPUT_FORMAT,
    OPT_FORMAT,
    OPT_JSON,
    OPT_CLIENTS,
    OPT_SCHEME,
    OPT_SEED,
    OPT_OUT,
    OPT_MIN,
    OPT_OUT_LABELS,
    OPT_MISSING,
    OPT_MODEL,
    OPT_DATA,
    OPT_HELP
};

static const struct option s_longopts[] = {
    {"labels", required_argument, 0, OPT_LABELS},
    {"label-column", required_argument, 0, OPT_LABEL_COLUMN},
    {"input-format", required_argument, 0, OPT_INPUT_FORMAT},
    {"format", required_argument, 0, OPT_FORMAT},
    {"json", no_argument, 0, OPT_JSON},
    {"clients", required_argument, 0, OPT_CLIENTS},
    {"scheme", required_argument, 0, OPT_SCHEME},
    {"seed", required_argument, 0, OPT_SEED},
    {"out", required_argument, 0, OPT_OUT},
    {"min-per-client", required_argument, 0, OPT_MIN},
    {"out-labels", required_argument, 0, OPT_OUT_LABELS},
    {"missing", required_argument, 0, OPT_MISSING},
    {"model", required_argument, 0, OPT_MODEL},
    {"data", required_argument, 0, OPT_DATA},
    {"help", no_argument, 0, OPT_HELP},
    {0, 0, 0, 0},
};

typedef struct {
    const char *name, *usage;
    int n_pos; /* positional arguments required */
    const int *allowed; /* options the command takes, 0-terminated */
    int (*run)(const s_args_t *a);
} s_command_t;

/* Prints "concord-data: <message>" and where to find help; returns the usage exit code.
 * cmd is "split " etc. (with the blank) or NULL for the top level. */
static int s_usage_error(const char *cmd, const char *fmt, ...) CC_PRINTF(2, 3);
static int s_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "concord-data: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'concord-data %s--help'.\n", cmd ? cmd : "");
    return S_EXIT_USAGE;
}

static int s_parse_u64(const char *s, uint64_t max, uint64_t *out) {
    if (!s[0] || s[0] == '-') return -1;
    errno = 0;
    char *e;
    unsigned long long v = strtoull(s, &e, 10);
    if (errno || *e || v > max) return -1;
    *out = v;
    return 0;
}

static int s_parse_missing(const char *s, data_missing_t *out) {
    static const char *const names[] = {"error", "mean", "zero"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) return *out = (data_missing_t)i, 0;
    return -1;
}

static int s_is_allowed(const int *allowed, int opt) {
    for (; *allowed; allowed++)
        if (*allowed == opt) return 1;
    return 0;
}

/* Stores one option's value; returns 0 or -1 for a malformed value. */
static int s_store_option(s_args_t *a, int c, const char *v) {
    uint64_t u = 0;
    switch (c) {
    case OPT_LABELS: a->labels = v; return 0;
    case OPT_LABEL_COLUMN: a->label_column = v; return 0;
    case OPT_OUT: a->out_dir = v; return 0;
    case OPT_OUT_LABELS: a->out_labels = v; return 0;
    case OPT_SCHEME: a->scheme = v; return 0;
    case OPT_MODEL: a->model = v; return 0;
    case OPT_DATA: a->data = v; return 0;
    case OPT_JSON: a->json = 1; return 0;
    case OPT_INPUT_FORMAT: return dataset_format_parse(v, &a->in_format);
    case OPT_FORMAT: return dataset_format_parse(v, &a->out_format);
    case OPT_MISSING: return s_parse_missing(v, &a->missing);
    case OPT_SEED: a->have_seed = 1; return s_parse_u64(v, UINT64_MAX, &a->seed);
    case OPT_CLIENTS:
        if (s_parse_u64(v, 100000, &u) || u == 0) return -1;
        a->clients = (long)u;
        return 0;
    case OPT_MIN: /* an empty shard would be a file no loader accepts */
        if (s_parse_u64(v, SIZE_MAX / 2, &u) || u == 0) return -1;
        a->min_per_client = (size_t)u;
        return 0;
    }
    return -1;
}

/* Parses a command's argv (argv[0] is the command). Returns -1 to run it, else an exit
 * code (0 after --help). */
static int s_parse_args(const s_command_t *cmd, int argc, char **argv, s_args_t *a) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s ", cmd->name);
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":h", s_longopts, NULL)) != -1) {
        if (c == 'h' || c == OPT_HELP) {
            fputs(cmd->usage, stdout);
            return S_EXIT_OK;
        }
        if (c == '?') return s_usage_error(prefix, "unknown option '%s'", argv[optind - 1]);
        if (c == ':') return s_usage_error(prefix, "option '%s' needs a value", argv[optind - 1]);
        if (!s_is_allowed(cmd->allowed, c))
            return s_usage_error(prefix, "option '%s' does not apply here", argv[optind - 1]);
        if (s_store_option(a, c, optarg) != 0)
            return s_usage_error(prefix, "bad value '%s'", optarg);
    }
    for (; optind < argc; optind++) {
        if (a->npos == cmd->n_pos)
            return s_usage_error(prefix, "unexpected argument '%s'", argv[optind]);
        a->pos[a->npos++] = argv[optind];
    }
    if (a->npos < cmd->n_pos)
        return s_usage_error(prefix, "missing %s", cmd->n_pos == 2 ? "IN or OUT" : "FILE");
    return -1;
}

/* ---- loading -------------------------------------------------------------------------- */

static int s_data_error(const cc_err_t *err) {
    fprintf(stderr, "concord-data: %s\n", err->msg);
    return S_EXIT_DATA;
}

static data_format_t s_input_format(const s_args_t *a) {
    return a->in_format ? a->in_format : dataset_format_from_path(a->pos[0], a->labels);
}

/* Loads the input; CSV goes through the _ex loader so info (may be NULL) gets class
 * names, missing counts and the group column. */
static int s_load(const s_args_t *a, data_missing_t missing, const char *group, dataset_t **ds,
                  dataset_csv_info_t *info) {
    data_load_opts_t o = {0};
    o.format = s_input_format(a);
    o.label_column = a->label_column;
    o.labels_path = a->labels;
    o.missing = missing;
    cc_err_t err = {0};
    int rc = o.format == DATA_FORMAT_CSV ? dataset_load_csv_ex(a->pos[0], &o, group, ds, info, &err)
                                         : dataset_load(a->pos[0], &o, ds, &err);
    return rc ? s_data_error(&err) : 0;
}

/* ---- inspect ---------------------------------------------------------------------------- */

typedef struct {
    float *min, *max;
    double *mean;
    float all_min, all_max;
} s_ranges_t;

static void s_ranges(const dataset_t *ds, s_ranges_t *r) {
    r->min = cc_xmalloc(ds->d * sizeof *r->min);
    r->max = cc_xmalloc(ds->d * sizeof *r->max);
    r->mean = cc_xcalloc(ds->d, sizeof *r->mean);
    for (size_t j = 0; j < ds->d; j++) r->min[j] = INFINITY, r->max[j] = -INFINITY;
    for (size_t i = 0; i < ds->n; i++) {
        const float *row = ds->x + i * ds->d;
        for (size_t j = 0; j < ds->d; j++) {
            r->min[j] = fminf(r->min[j], row[j]);
            r->max[j] = fmaxf(r->max[j], row[j]);
            r->mean[j] += row[j];
        }
    }
    r->all_min = INFINITY, r->all_max = -INFINITY;
    for (size_t j = 0; j < ds->d; j++) {
        r->mean[j] /= (double)ds->n;
        r->all_min = fminf(r->all_min, r->min[j]);
        r->all_max = fmaxf(r->all_max, r->max[j]);
    }
}

static void s_ranges_free(s_ranges_t *r) {
    free(r->min);
    free(r->max);
    free(r->mean);
}

static const char *s_feature_name(const dataset_t *ds, size_t j, char *buf, size_t cap) {
    if (ds->feature_names && ds->feature_names[j]) return ds->feature_names[j];
    snprintf(buf, cap, "f%zu", j);
    return buf;
}

static const char *s_class_name(const dataset_csv_info_t *info, int c, char *buf, size_t cap) {
    if (info && c < info->n_class_names) return info->class_names[c];
    snprintf(buf, cap, "%d", c);
    return buf;
}

static void s_print_missing(const dataset_t *ds, const dataset_csv_info_t *info) {
    size_t total = 0;
    char nb[32];
    for (size_t j = 0; j < ds->d; j++) total += info->missing[j];
    printf("missing:   %zu cell%s\n", total, total == 1 ? "" : "s");
    for (size_t j = 0; j < ds->d; j++)
        if (info->missing[j])
            printf("  %-24s %8zu  (%.1f%% of rows)\n", s_feature_name(ds, j, nb, sizeof nb),
                   info->missing[j], 100.0 * (double)info->missing[j] / (double)ds->n);
}

static void s_inspect_text(const s_args_t *a, const dataset_t *ds, const dataset_csv_info_t *info,
                           const size_t *counts, const s_ranges_t *r) {
    char nb[32];
    printf("file:      %s\n", a->pos[0]);
    printf("format:    %s\n", dataset_format_name(s_input_format(a)));
    printf("rows:      %zu\n", ds->n);
    printf("features:  %zu", ds->d);
    if (ds->height > 0) printf("  (image %dx%dx%d)", ds->channels, ds->height, ds->width);
    printf("\nclasses:   %d", ds->n_classes);
    if (ds->label_name) printf("  (label column '%s')", ds->label_name);
    printf("\n\n  %-16s %10s %8s\n", "class", "count", "share");
    for (int c = 0; c < ds->n_classes; c++)
        printf("  %-16s %10zu %7.2f%%\n", s_class_name(info, c, nb, sizeof nb), counts[c],
               100.0 * (double)counts[c] / (double)ds->n);
    printf("\n");
    if (info) s_print_missing(ds, info), printf("\n");
    size_t shown = ds->d < S_SUMMARY_FEATURES ? ds->d : S_SUMMARY_FEATURES;
    printf("  %-24s %12s %12s %12s\n", "feature", "min", "mean", "max");
    for (size_t j = 0; j < shown; j++)
        printf("  %-24s %12.6g %12.6g %12.6g\n", s_feature_name(ds, j, nb, sizeof nb),
               (double)r->min[j], r->mean[j], (double)r->max[j]);
    if (shown < ds->d) printf("  ... %zu more (--json lists all)\n", ds->d - shown);
    printf("  all features: min %g, max %g\n", (double)r->all_min, (double)r->all_max);
}

static json_t *s_inspect_json(const s_args_t *a, const dataset_t *ds,
                              const dataset_csv_info_t *info, const size_t *counts,
                              const s_ranges_t *r) {
    char nb[32];
    json_t *o = json_object(), *cls = json_array(), *feats = json_array();
    json_object_set_new(o, "file", json_string(a->pos[0]));
    json_object_set_new(o, "format", json_string(dataset_format_name(s_input_format(a))));
    json_object_set_new(o, "rows", json_integer((json_int_t)ds->n));
    json_object_set_new(o, "features", json_integer((json_int_t)ds->d));
    json_object_set_new(o, "classes", json_integer(ds->n_classes));
    if (ds->height > 0)
        json_object_set_new(o, "shape", json_pack("[iii]", ds->channels, ds->height, ds->width));
    if (ds->label_name) json_object_set_new(o, "label_column", json_string(ds->label_name));
    for (int c = 0; c < ds->n_classes; c++)
        json_array_append_new(
            cls,
            json_pack("{s:s, s:I, s:f}", "class", s_class_name(info, c, nb, sizeof nb), "count",
                      (json_int_t)counts[c], "share", (double)counts[c] / (double)ds->n));
    json_object_set_new(o, "class_counts", cls);
    for (size_t j = 0; j < ds->d; j++) {
        json_t *f =
            json_pack("{s:s, s:f, s:f, s:f}", "name", s_feature_name(ds, j, nb, sizeof nb), "min",
                      (double)r->min[j], "mean", r->mean[j], "max", (double)r->max[j]);
        if (info) json_object_set_new(f, "missing", json_integer((json_int_t)info->missing[j]));
        json_array_append_new(feats, f);
    }
    json_object_set_new(o, "feature_summary", feats);
    return o;
}

static int s_cmd_inspect(const s_args_t *a) {
    dataset_t *ds = NULL;
    dataset_csv_info_t info = {0};
    int csv = s_input_format(a) == DATA_FORMAT_CSV;
    /* Mean imputation leaves min/mean/max as they are and lets us count every missing
     * cell instead of stopping at the first. */
    int rc = s_load(a, DATA_MISSING_MEAN, NULL, &ds, csv ? &info : NULL);
    if (rc) return rc;
    size_t *counts = cc_xcalloc((size_t)ds->n_classes, sizeof *counts);
    dataset_class_counts(ds, counts);
    s_ranges_t r;
    s_ranges(ds, &r);
    if (a->json) {
        json_t *o = s_inspect_json(a, ds, csv ? &info : NULL, counts, &r);
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
        printf("\n");
        json_decref(o);
    } else {
        s_inspect_text(a, ds, csv ? &info : NULL, counts, &r);
    }
    s_ranges_free(&r);
    free(counts);
    dataset_csv_info_clear(&info);
    dataset_destroy(&ds);
    return S_EXIT_OK;
}

/* ---- shared by split and convert ---------------------------------------------------------- */

/* Largest change the k/255 rounding of IDX makes to any value of ds. */
static double s_idx_rounding(const dataset_t *ds) {
    double worst = 0.0;
    for (size_t i = 0; i < ds->n * ds->d; i++) {
        double v = ds->x[i], q = nearbyint(v * 255.0) / 255.0;
        if (fabs(v - q) > worst) worst = fabs(v - q);
    }
    return worst;
}

/* IDX stores bytes: say so when writing it moved any value. */
static void s_warn_rounding(data_format_t fmt, const dataset_t *ds) {
    double q = fmt == DATA_FORMAT_IDX ? s_idx_rounding(ds) : 0.0;
    if (q > 1e-6)
        fprintf(stderr, "concord-data: warning: IDX stores k/255: values moved by up to %.4g\n", q);
}

/* ---- split -------------------------------------------------------------------------------- */

typedef struct {
    data_partition_opts_t part;
    const char *column; /* column:NAME */
    const char *name; /* scheme name for summary.json */
} s_scheme_t;

static int s_parse_scheme(const char *s, s_scheme_t *out) {
    memset(out, 0, sizeof *out);
    const char *colon = strchr(s, ':');
    size_t head = colon ? (size_t)(colon - s) : strlen(s);
    if (!colon && strcmp(s, "iid") == 0) return out->name = "iid", 0;
    if (!colon || !colon[1]) return -1;
    if (head == 6 && strncmp(s, "column", 6) == 0)
        return out->name = "column", out->column = colon + 1, 0;
    int dir = head == 9 && strncmp(s, "dirichlet", 9) == 0;
    if (!dir && !(head == 8 && strncmp(s, "quantity", 8) == 0)) return -1;
    char *e;
    errno = 0;
    out->part.alpha = strtod(colon + 1, &e);
    if (errno || *e || !(out->part.alpha > 0.0) || !isfinite(out->part.alpha)) return -1;
    out->part.scheme = dir ? DATA_PARTITION_DIRICHLET : DATA_PARTITION_QUANTITY;
    out->name = dir ? "dirichlet" : "quantity";
    return 0;
}

/* mkdir -p: creates dir and its missing parents. */
static int s_make_dirs(const char *dir) {
    char *p = cc_xstrdup(dir);
    int rc = 0;
    for (char *q = p;; q++) {
        if (q != p && (*q == '/' || *q == '\0')) {
            char keep = *q;
            *q = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) rc = -1;
            *q = keep;
        }
        if (*q == '\0' || rc) break;
    }
    if (rc)
        fprintf(stderr, "concord-data: %s: cannot create directory: %s\n", dir, strerror(errno));
    free(p);
    return rc;
}

/* File names of shard k: main file (and IDX labels file), relative to DIR. */
static void s_shard_names(data_format_t fmt, int k, char *file, char *labels, size_t cap) {
    labels[0] = '\0';
    if (fmt == DATA_FORMAT_IDX) {
        snprintf(file, cap, "site%d-images-idx3-ubyte", k + 1);
        snprintf(labels, cap, "site%d-labels-idx1-ubyte", k + 1);
    } else {
        snprintf(file, cap, "site%d.%s", k + 1, fmt == DATA_FORMAT_CSV ? "csv" : "fann");
    }
}

typedef struct {
    const s_args_t *a;
    const dataset_t *ds;
    const dataset_csv_info_t *info;
    const s_scheme_t *scheme;
    data_format_t fmt;
    int n_shards;
} s_split_t;

static void s_print_table_head(const s_split_t *sp) {
    char nb[32];
    printf("%-8s %10s %7s", "site", "rows", "share");
    if (sp->scheme->column) printf("  %-16s", sp->scheme->column);
    if (sp->ds->n_classes <= S_TABLE_MAX_CLASSES) {
        for (int c = 0; c < sp->ds->n_classes; c++) {
            int named = sp->info && c < sp->info->n_class_names;
            if (!named) snprintf(nb, sizeof nb, "class %d", c);
            printf(" %9.9s", named ? sp->info->class_names[c] : nb);
        }
    } else {
        printf(" %9s", "classes");
    }
    printf("\n");
}

static void s_print_table_row(const s_split_t *sp, const char *site, const char *value, size_t rows,
                              const size_t *counts) {
    printf("%-8s %10zu %6.1f%%", site, rows, 100.0 * (double)rows / (double)sp->ds->n);
    if (sp->scheme->column) printf("  %-16.16s", value ? value : "");
    if (sp->ds->n_classes <= S_TABLE_MAX_CLASSES) {
        for (int c = 0; c < sp->ds->n_classes; c++) printf(" %9zu", counts[c]);
    } else {
        int present = 0;
        for (int c = 0; c < sp->ds->n_classes; c++) present += counts[c] > 0;
        printf(" %9d", present);
    }
    printf("\n");
}

static json_t *s_counts_json(const size_t *counts, int k) {
    json_t *arr = json_array();
    for (int c = 0; c < k; c++) json_array_append_new(arr, json_integer((json_int_t)counts[c]));
    return arr;
}

/* Writes shard k and returns its summary entry, or NULL after printing the error. */
static json_t *s_write_shard(const s_split_t *sp, const int32_t *shard, int k) {
    char file[64], labels[64], nb[32];
    s_shard_names(sp->fmt, k, file, labels, sizeof file);
    size_t plen = strlen(sp->a->out_dir) + 2 + sizeof file;
    char *path = cc_xmalloc(plen), *lpath = cc_xmalloc(plen);
    snprintf(path, plen, "%s/%s", sp->a->out_dir, file);
    snprintf(lpath, plen, "%s/%s", sp->a->out_dir, labels);
    dataset_t *sub = dataset_shard(sp->ds, shard, k);
    cc_err_t err = {0};
    json_t *entry = NULL;
    if (dataset_save(sub, path, sp->fmt, labels[0] ? lpath : NULL, &err) != 0) {
        s_data_error(&err);
        goto done;
    }
    size_t *counts = cc_xcalloc((size_t)sub->n_classes, sizeof *counts);
    dataset_class_counts(sub, counts);
    const char *value = sp->scheme->column ? sp->info->group_names[k] : NULL;
    snprintf(nb, sizeof nb, "site%d", k + 1);
    s_print_table_row(sp, nb, value, sub->n, counts);
    entry = json_pack("{s:s, s:s, s:I, s:o}", "name", nb, "file", file, "rows", (json_int_t)sub->n,
                      "class_counts", s_counts_json(counts, sub->n_classes));
    if (labels[0]) json_object_set_new(entry, "labels_file", json_string(labels));
    if (value) json_object_set_new(entry, "value", json_string(value));
    free(counts);
done:
    dataset_destroy(&sub);
    free(path);
    free(lpath);
    return entry;
}

static json_t *s_summary_head(const s_split_t *sp) {
    const s_args_t *a = sp->a;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:i}", "source", a->pos[0],
                          "input_format", dataset_format_name(s_input_format(a)), "format",
                          dataset_format_name(sp->fmt), "scheme", sp->scheme->name, "clients",
                          sp->n_shards, "rows", (json_int_t)sp->ds->n, "features",
                          (json_int_t)sp->ds->d, "classes", sp->ds->n_classes);
    if (sp->scheme->column) {
        json_object_set_new(o, "column", json_string(sp->scheme->column));
    } else {
        json_object_set_new(o, "seed", json_integer((json_int_t)a->seed));
        json_object_set_new(o, "min_per_client", json_integer((json_int_t)a->min_per_client));
    }
    if (sp->scheme->part.scheme != DATA_PARTITION_IID)
        json_object_set_new(o, "alpha", json_real(sp->scheme->part.alpha));
    if (sp->info && sp->info->n_class_names) {
        json_t *names = json_array();
        for (int c = 0; c < sp->info->n_class_names; c++)
            json_array_append_new(names, json_string(sp->info->class_names[c]));
        json_object_set_new(o, "class_names", names);
    }
    return o;
}

/* Writes every shard, prints the table, writes summary.json. */
static int s_write_split(const s_split_t *sp, const int32_t *shard) {
    json_t *summary = s_summary_head(sp), *shards = json_array();
    int rc = s_make_dirs(sp->a->out_dir) ? S_EXIT_DATA : S_EXIT_OK;
    if (!rc) s_print_table_head(sp);
    for (int k = 0; k < sp->n_shards && !rc; k++) {
        json_t *e = s_write_shard(sp, shard, k);
        if (!e)
            rc = S_EXIT_DATA;
        else
            json_array_append_new(shards, e);
    }
    json_object_set_new(summary, "shards", shards);
    if (!rc) {
        size_t *counts = cc_xcalloc((size_t)sp->ds->n_classes, sizeof *counts);
        dataset_class_counts(sp->ds, counts);
        s_print_table_row(sp, "total", NULL, sp->ds->n, counts);
        free(counts);
        char *text = json_dumps(summary, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
        size_t plen = strlen(sp->a->out_dir) + 16;
        char *path = cc_xmalloc(plen);
        snprintf(path, plen, "%s/summary.json", sp->a->out_dir);
        cc_err_t err = {0};
        if (fileio_write_atomic(path, text, strlen(text), &err) != 0) rc = s_data_error(&err);
        free(path);
        free(text);
    }
    json_decref(summary);
    return rc;
}

static int s_check_split_args(const s_args_t *a, const s_scheme_t *sc) {
    if (!a->out_dir || !a->out_dir[0]) return s_usage_error("split ", "missing --out DIR");
    if (sc->column) {
        if (s_input_format(a) != DATA_FORMAT_CSV)
            return s_usage_error("split ", "scheme column:NAME needs a CSV input");
        return 0;
    }
    if (!a->clients) return s_usage_error("split ", "missing --clients N");
    if (!a->have_seed) return s_usage_error("split ", "missing --seed S");
    return 0;
}

static int s_cmd_split(const s_args_t *a) {
    s_scheme_t sc;
    if (!a->scheme) return s_usage_error("split ", "missing --scheme SCHEME");
    if (s_parse_scheme(a->scheme, &sc) != 0)
        return s_usage_error("split ", "bad scheme '%s'", a->scheme);
    int rc = s_check_split_args(a, &sc);
    if (rc) return rc;
    dataset_t *ds = NULL;
    dataset_csv_info_t info = {0};
    int csv = s_input_format(a) == DATA_FORMAT_CSV;
    if ((rc = s_load(a, a->missing, sc.column, &ds, csv ? &info : NULL)) != 0) return rc;
    s_split_t sp = {a,
                    ds,
                    csv ? &info : NULL,
                    &sc,
                    a->out_format ? a->out_format : s_input_format(a),
                    sc.column ? info.n_groups : (int)a->clients};
    int32_t *shard = cc_xmalloc((ds->n ? ds->n : 1) * sizeof *shard);
    cc_err_t err = {0};
    if (sc.column) {
        memcpy(shard, info.group_of_row, ds->n * sizeof *shard);
        if (a->clients && a->clients != sp.n_shards) {
            fprintf(stderr,
                    "concord-data: %s: column '%s' has %d distinct values, not --clients %ld\n",
                    a->pos[0], sc.column, sp.n_shards, a->clients);
            rc = S_EXIT_DATA;
        }
    } else {
        sc.part.n_clients = (int)a->clients;
        sc.part.min_per_client = a->min_per_client;
        sc.part.seed = a->seed;
        if (dataset_partition(ds, &sc.part, shard, &err) != 0) rc = s_data_error(&err);
    }
    if (!rc) rc = s_write_split(&sp, shard);
    s_warn_rounding(sp.fmt, ds);
    free(shard);
    dataset_csv_info_clear(&info);
    dataset_destroy(&ds);
    return rc;
}

/* ---- convert ----------------------------------------------------------------------------- */

static int s_cmd_convert(const s_args_t *a) {
    const char *out = a->pos[1];
    data_format_t fmt =
        a->out_format ? a->out_format : dataset_format_from_path(out, a->out_labels);
    char *labels = a->out_labels ? cc_xstrdup(a->out_labels) : NULL;
    if (fmt == DATA_FORMAT_IDX && !labels && !(labels = dataset_idx_labels_path(out)))
        return s_usage_error("convert ",
                             "--out-labels FILE is needed: OUT has no idx3 in its name");
    dataset_t *ds = NULL;
    int rc = s_load(a, a->missing, NULL, &ds, NULL);
    cc_err_t err = {0};
    if (!rc && dataset_save(ds, out, fmt, labels, &err) != 0) rc = s_data_error(&err);
    if (!rc) {
        printf("wrote %s%s%s (%s): %zu rows x %zu features, %d classes\n", out, labels ? " + " : "",
               labels ? labels : "", dataset_format_name(fmt), ds->n, ds->d, ds->n_classes);
        s_warn_rounding(fmt, ds);
    }
    free(labels);
    dataset_destroy(&ds);
    return rc;
}

/* ---- eval ------------------------------------------------------------------------------ */

static int s_cmd_eval(const s_args_t *a) {
    if (!a->model || !a->data) return s_usage_error("eval ", "--model FILE and --data FILE are required");
    model_t *m = NULL;
    standardizer_t *st = NULL;
    dataset_t *ds = NULL;
    cc_err_t err = {0};
    int rc = checkpoint_load(a->model, &m, &st, NULL, &err);
    if (rc) return s_data_error(&err);
    data_load_opts_t lo = {.format = a->in_format, .labels_path = a->labels, .label_column = a->label_column,
                           .n_classes = m->spec.n_classes};
    rc = dataset_load(a->data, &lo, &ds, &err);
    if (!rc && (int)ds->d != m->spec.n_inputs)
        rc = cc_err_set(&err, CC_ERR_FORMAT, "%s: %zu features, the model expects %d", a->data, ds->d,
                        m->spec.n_inputs);
    metrics_t mt = {0};
    if (!rc) {
        if (st) standardizer_apply(st, ds);
        float *probs = cc_xalloc_floats(ds->n * (size_t)m->spec.n_classes);
        model_predict(m, ds->x, ds->n, probs);
        rc = metrics_compute(&mt, probs, ds->y, ds->n, m->spec.n_classes, &err);
        free(probs);
    }
    if (!rc && a->json) {
        json_t *j = metrics_to_json(&mt);
        char *text = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(8));
        printf("%s\n", text);
        free(text);
        json_decref(j);
    } else if (!rc) {
        char arch[128];
        model_spec_arch(&m->spec, arch, sizeof arch);
        printf("model %s (%s, %zu parameters) on %s\n", a->model, arch, m->n_params, a->data);
        metrics_print(stdout, &mt);
    }
    metrics_free(&mt);
    dataset_destroy(&ds);
    standardizer_destroy(&st);
    model_destroy(&m);
    return rc ? s_data_error(&err) : S_EXIT_OK;
}

/* ---- main ------------------------------------------------------------------------------------ */

static const int s_inspect_opts[] = {OPT_LABELS, OPT_LABEL_COLUMN, OPT_INPUT_FORMAT, OPT_JSON, 0};
static const int s_split_opts[] = {
    OPT_LABELS, OPT_LABEL_COLUMN, OPT_INPUT_FORMAT, OPT_FORMAT, OPT_CLIENTS, OPT_SCHEME, OPT_SEED,
    OPT_OUT,    OPT_MIN,          OPT_MISSING,      0};
static const int s_convert_opts[] = {
    OPT_LABELS, OPT_LABEL_COLUMN, OPT_INPUT_FORMAT, OPT_FORMAT, OPT_OUT_LABELS, OPT_MISSING, 0};

static const int s_eval_opts[] = {OPT_MODEL, OPT_DATA, OPT_LABELS, OPT_LABEL_COLUMN, OPT_INPUT_FORMAT, OPT_JSON, 0};

static const s_command_t s_commands[] = {
    {"inspect", s_usage_inspect, 1, s_inspect_opts, s_cmd_inspect},
    {"split", s_usage_split, 1, s_split_opts, s_cmd_split},
    {"convert", s_usage_convert, 2, s_convert_opts, s_cmd_convert},
    {"eval", s_usage_eval, 0, s_eval_opts, s_cmd_eval},
};

int main(int argc, char **argv) {
    if (argc < 2) return s_usage_error(NULL, "missing COMMAND");
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(s_usage_main, stdout);
        return S_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("concord-data %s\n", CONCORD_VERSION);
        return S_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof s_commands / sizeof *s_commands; i++) {
        if (strcmp(cmd, s_commands[i].name) != 0) continue;
        s_args_t a = {0};
        a.min_per_client = 10;
        int rc = s_parse_args(&s_commands[i], argc - 1, argv + 1, &a);
        return rc >= 0 ? rc : s_commands[i].run(&a);
    }
    return s_usage_error(NULL, "unknown command '%s'", cmd);
}
