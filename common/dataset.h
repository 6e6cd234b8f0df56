/* dataset.h — in-memory labelled datasets, their loaders and writers, splits and
 * feature standardisation.
 *
 * A dataset is n rows of d float32 features, row-major, plus an int32 class label per row.
 * Image data (IDX) keeps its shape in channels/height/width (d = c*h*w); tabular data has
 * channels = height = width = 0. Loaders never guess: malformed input is an error naming
 * the file, the line (or byte offset for binary files) and what was expected. */
#ifndef CONCORD_DATASET_H
#define CONCORD_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct {
    size_t n;              /* rows */
    size_t d;              /* features per row */
    int n_classes;         /* labels are in [0, n_classes) */
    int channels, height, width; /* image shape, all 0 for tabular data */
    float *x;              /* (n, d), owned */
    int32_t *y;            /* (n), owned */
    char **feature_names;  /* d names (CSV header) or NULL; owned */
    char *label_name;      /* CSV label column name or NULL; owned */
} dataset_t;

typedef enum {
    DATA_FORMAT_AUTO = 0, /* by extension: .csv -> CSV, *-idx*-ubyte[.gz] -> IDX, else FANN */
    DATA_FORMAT_FANN,
    DATA_FORMAT_CSV,
    DATA_FORMAT_IDX,
} data_format_t;

typedef enum {
    DATA_MISSING_ERROR = 0, /* a missing value is an error (default) */
    DATA_MISSING_MEAN,      /* replace by the column mean of the present values */
    DATA_MISSING_ZERO,
} data_missing_t;

typedef struct {
    data_format_t format;
    const char *label_column;   /* CSV: name of the label column (default "label", else last) */
    const char *labels_path;    /* IDX: the labels file beside the images file */
    data_missing_t missing;     /* CSV: what to do with empty / NA / NaN cells */
    int n_classes;              /* if > 0, labels must lie in [0, n_classes) */
} data_load_opts_t;

/* Allocates an n x d dataset with zeroed x and y; caller owns it (dataset_destroy).
 * NULL only when n * d floats cannot be addressed. */
dataset_t *dataset_new(size_t n, size_t d, int n_classes);
/* Frees *ds and its buffers, sets *ds = NULL; accepts NULL and *ds == NULL. */
void dataset_destroy(dataset_t **ds);

/* Loads a file; opts may be NULL for defaults. On success *out is a new dataset the
 * caller owns; on failure *out is NULL and err names file, line and problem. */
int dataset_load(const char *path, const data_load_opts_t *opts, dataset_t **out,
                 cc_err_t *err) CC_WUR;
int dataset_load_fann(const char *path, dataset_t **out, cc_err_t *err) CC_WUR;
int dataset_load_csv(const char *path, const data_load_opts_t *opts, dataset_t **out,
                     cc_err_t *err) CC_WUR;
/* IDX images (idx3, uint8, optionally gzipped) + labels (idx1); pixels scaled to [0, 1]. */
int dataset_load_idx(const char *images_path, const char *labels_path, dataset_t **out,
                     cc_err_t *err) CC_WUR;

/* Writers (FANN: one-hot outputs; CSV: header with feature names or f0..f{d-1} and
 * a "label" column; IDX: images must have values in [0,1], written as uint8 plus a labels
 * file). Write to a temp file and rename, so a crash never leaves half a file. */
int dataset_save_fann(const dataset_t *ds, const char *path, cc_err_t *err) CC_WUR;
int dataset_save_csv(const dataset_t *ds, const char *path, cc_err_t *err) CC_WUR;
int dataset_save_idx(const dataset_t *ds, const char *images_path, const char *labels_path,
                     cc_err_t *err) CC_WUR;

/* New dataset holding rows idx[0..n) of src, in that order (shape and names copied);
 * NULL if an index is >= src->n. */
dataset_t *dataset_subset(const dataset_t *src, const uint32_t *idx, size_t n);
/* counts[c] = rows of class c, for c < ds->n_classes. */
void dataset_class_counts(const dataset_t *ds, size_t *counts);
/* Stratified split: within each class, a seeded shuffle then round(val_frac * n_c) rows
 * go to *val (at least one when the class has >= 2 rows and val_frac > 0). */
int dataset_split_stratified(const dataset_t *ds, double val_frac, uint64_t seed,
                             dataset_t **train, dataset_t **val, cc_err_t *err) CC_WUR;

/* The same split without a second copy of the data: *val receives the validation rows and
 * ds itself shrinks, in place and in original order, to the training rows — bit for bit the
 * *train of dataset_split_stratified. Peak memory is the data plus the validation part. */
int dataset_split_off_stratified(dataset_t *ds, double val_frac, uint64_t seed, dataset_t **val,
                                 cc_err_t *err) CC_WUR;

/* Per-feature standardisation x' = (x - mean) / std, std floored at 1e-6 (so constant
 * features map to 0). Saved with the model so evaluation uses the training statistics. */
typedef struct {
    size_t d;
    float *mean; /* (d) */
    float *std;  /* (d) */
} standardizer_t;

/* Sufficient statistics n, sum x, sum x^2 (double) so hospitals can pool them. */
typedef struct {
    size_t d;
    double n;
    double *sum;   /* (d) */
    double *sumsq; /* (d) */
} feature_stats_t;

feature_stats_t *feature_stats_new(size_t d);
void feature_stats_destroy(feature_stats_t **st);
void feature_stats_add(feature_stats_t *st, const dataset_t *ds);
/* acc += other (same d). */
void feature_stats_merge(feature_stats_t *acc, const feature_stats_t *other);

standardizer_t *standardizer_new(size_t d); /* mean 0, std 1: the identity */
void standardizer_destroy(standardizer_t **st);
standardizer_t *standardizer_from_stats(const feature_stats_t *st);
standardizer_t *standardizer_fit(const dataset_t *ds);
void standardizer_apply(const standardizer_t *st, dataset_t *ds);

/* ---- Additions beyond the original interface ------------------------------------------ */

/* Format by file name (the DATA_FORMAT_AUTO rule): ".csv" -> CSV; a name containing "idx3",
 * or any file when labels_path is given -> IDX; anything else -> FANN. */
data_format_t dataset_format_from_path(const char *path, const char *labels_path);
/* "fann", "csv", "idx" (and "auto"); parse returns -1 for an unknown name. */
const char *dataset_format_name(data_format_t fmt);
int dataset_format_parse(const char *name, data_format_t *out) CC_WUR;
/* The labels file beside an IDX images file by the MNIST naming convention
 * ("x-images-idx3-ubyte.gz" -> "x-labels-idx1-ubyte.gz"): a new string the caller frees,
 * or NULL when the name has no "idx3" in it. */
char *dataset_idx_labels_path(const char *images_path);

/* Writes ds in fmt (AUTO: by path as above); labels_path is the IDX labels file (NULL:
 * dataset_idx_labels_path(path)). */
int dataset_save(const dataset_t *ds, const char *path, data_format_t fmt,
                 const char *labels_path, cc_err_t *err) CC_WUR;

/* CSV labels: a label column whose values are all non-negative integers is used as is
 * (n_classes = max + 1). Any other label column (names such as "yes"/"no", negative
 * integers such as -1/1) is mapped to class ids 0..K-1 in sorted order — integers
 * numerically first, then the remaining strings in byte order — and the original text is
 * reported in dataset_csv_info_t.class_names. A number with a fractional part ("0.5") is
 * refused as a label: it looks like a regression target, not a class. */

/* What a CSV load learns beyond the dataset itself. Owned; release with _clear. */
typedef struct {
    int n_class_names;     /* > 0 when labels were mapped from names, see above */
    char **class_names;    /* (n_class_names) the label text of class id c */
    size_t *missing;       /* (d) missing cells per feature column (imputed per opts) */
    int n_groups;          /* distinct values of the group column (0 without one) */
    char **group_names;    /* (n_groups), sorted like mapped labels */
    int32_t *group_of_row; /* (n) group id of each row, or NULL */
} dataset_csv_info_t;

void dataset_csv_info_clear(dataset_csv_info_t *info);
/* dataset_load_csv, plus: when group_column is not NULL that column (any text, never
 * missing) is not a feature but a group id per row — the hospital of a row, for splitting
 * by natural site; info (may be NULL) receives the extra results above. */
int dataset_load_csv_ex(const char *path, const data_load_opts_t *opts,
                        const char *group_column, dataset_t **out, dataset_csv_info_t *info,
                        cc_err_t *err) CC_WUR;

/* Hospital shards for simulation (concord-data split, concord-sim). */
typedef enum {
    DATA_PARTITION_IID = 0,   /* seeded shuffle, equal shares (sizes differ by at most 1) */
    DATA_PARTITION_DIRICHLET, /* label skew: per class, shares ~ Dirichlet(alpha) over clients */
    DATA_PARTITION_QUANTITY,  /* size skew: client sizes ~ Dirichlet(alpha), rows drawn iid */
} data_partition_t;

typedef struct {
    data_partition_t scheme;
    int n_clients;         /* >= 1 */
    double alpha;          /* > 0 for DIRICHLET and QUANTITY; small = more skew */
    size_t min_per_client; /* re-draw until every client has at least this many rows */
    int max_attempts;      /* re-draws before giving up (0: 1000) */
    uint64_t seed;
} data_partition_opts_t;

/* Assigns each row of ds to a client: shard[i] in [0, n_clients) for i < ds->n (the caller
 * provides shard, ds->n entries). Deterministic in the seed. Fails (CC_ERR_ARG) when no
 * draw within max_attempts gives every client min_per_client rows. */
int dataset_partition(const dataset_t *ds, const data_partition_opts_t *opts, int32_t *shard,
                      cc_err_t *err) CC_WUR;
/* Rows of ds whose shard is k, in their original order: a new dataset the caller owns. */
dataset_t *dataset_shard(const dataset_t *ds, const int32_t *shard, int32_t k);

/* Invariant of every loader: a loaded dataset never holds NaN or Inf ("NaN" in a CSV cell
 * is a missing value; in FANN or as any non-finite number it is an error). */

#endif
