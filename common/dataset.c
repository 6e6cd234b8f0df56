/* dataset.c — the dataset object, format dispatch, subsets and splits, hospital partitions,
 * and feature standardisation. The file formats live in dataset_fann.c, dataset_csv.c and
 * dataset_idx.c; helpers they share in dataset_text.c.
 *
 * Invariants of a dataset_t that every function here keeps: x holds n*d finite floats,
 * every y[i] lies in [0, n_classes), and d == channels*height*width for image data. */
#include "dataset_internal.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rng.h"

#define S_STD_FLOOR 1e-6
#define S_DEFAULT_ATTEMPTS 1000

dataset_t *dataset_new(size_t n, size_t d, int n_classes) {
    size_t total;
    if (__builtin_mul_overflow(n, d, &total) || total > SIZE_MAX / sizeof(float)) return NULL;
    dataset_t *ds = cc_xcalloc(1, sizeof *ds);
    ds->n = n;
    ds->d = d;
    ds->n_classes = n_classes;
    ds->x = cc_xalloc_floats(total);
    memset(ds->x, 0, (total ? total : 1) * sizeof *ds->x);
    ds->y = cc_xcalloc(n, sizeof *ds->y);
    return ds;
}

void dataset_destroy(dataset_t **ds) {
    if (!ds || !*ds) return;
    dataset_t *p = *ds;
    for (size_t j = 0; p->feature_names && j < p->d; j++) free(p->feature_names[j]);
    free(p->feature_names);
    free(p->label_name);
    free(p->x);
    free(p->y);
    free(p);
    *ds = NULL;
}

/* ---- formats and dispatch -------------------------------------------------------- */

static const char *s_basename(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static int s_ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

data_format_t dataset_format_from_path(const char *path, const char *labels_path) {
    if (s_ends_with(path, ".csv")) return DATA_FORMAT_CSV;
    if (labels_path || strstr(s_basename(path), "idx3")) return DATA_FORMAT_IDX;
    return DATA_FORMAT_FANN;
}

static const char *const s_format_names[] = {"auto", "fann", "csv", "idx"};

const char *dataset_format_name(data_format_t fmt) {
    return (unsigned)fmt < 4 ? s_format_names[fmt] : "unknown";
}

int dataset_format_parse(const char *name, data_format_t *out) {
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(name, s_format_names[i]) == 0) {
            *out = (data_format_t)i;
            return 0;
        }
    }
    return -1;
}

/* Replaces the last `from` in the base name by `to` (same length) in a copy of path. */
static void s_swap_in_base(char *path, const char *from, const char *to) {
    char *base = (char *)s_basename(path), *hit = NULL, *q = base;
    while ((q = strstr(q, from)) != NULL) hit = q++;
    if (hit) memcpy(hit, to, strlen(to));
}

char *dataset_idx_labels_path(const char *images_path) {
    if (!strstr(s_basename(images_path), "idx3")) return NULL;
    char *p = cc_xstrdup(images_path);
    s_swap_in_base(p, "idx3", "idx1");
    s_swap_in_base(p, "images", "labels");
    return p;
}

int dataset_load(const char *path, const data_load_opts_t *opts, dataset_t **out, cc_err_t *err) {
    static const data_load_opts_t defaults = {0};
    const data_load_opts_t *o = opts ? opts : &defaults;
    *out = NULL;
    data_format_t fmt = o->format ? o->format : dataset_format_from_path(path, o->labels_path);
    switch (fmt) {
    case DATA_FORMAT_CSV: return dataset_load_csv(path, o, out, err);
    case DATA_FORMAT_IDX: {
        char *labels = o->labels_path ? cc_xstrdup(o->labels_path) : dataset_idx_labels_path(path);
        if (!labels)
            return cc_err_set(err, CC_ERR_ARG,
                              "%s: no labels file given and none named like it (idx1)", path);
        int rc = dataset_idx_load(path, labels, o->n_classes, out, err);
        free(labels);
        return rc;
    }
    default: return dataset_fann_load(path, o->n_classes, out, err);
    }
}

int dataset_check_writable(const dataset_t *ds, const char *path, cc_err_t *err) {
    if (ds->d == 0) return cc_err_set(err, CC_ERR_ARG, "%s: a dataset with no features", path);
    for (size_t i = 0; i < ds->n; i++)
        if (ds->y[i] < 0 || ds->y[i] >= ds->n_classes)
            return cc_err_set(err, CC_ERR_ARG, "%s: row %zu: label %d outside [0, %d)", path, i,
                              (int)ds->y[i], ds->n_classes);
    /* Writing NaN would produce a file our own loaders refuse. */
    for (size_t i = 0; i < ds->n * ds->d; i++)
        if (!isfinite(ds->x[i]))
            return cc_err_set(err, CC_ERR_ARG, "%s: row %zu feature %zu is not finite", path,
                              i / ds->d, i % ds->d);
    return 0;
}

int dataset_save(const dataset_t *ds, const char *path, data_format_t fmt, const char *labels_path,
                 cc_err_t *err) {
    if (fmt == DATA_FORMAT_AUTO) fmt = dataset_format_from_path(path, NULL);
    if (fmt == DATA_FORMAT_CSV) return dataset_save_csv(ds, path, err);
    if (fmt == DATA_FORMAT_FANN) return dataset_save_fann(ds, path, err);
    char *labels = labels_path ? cc_xstrdup(labels_path) : dataset_idx_labels_path(path);
    if (!labels)
        return cc_err_set(err, CC_ERR_ARG,
                          "%s: cannot name the IDX labels file (no idx3 in the name); give one",
                          path);
    int rc = dataset_save_idx(ds, path, labels, err);
    free(labels);
    return rc;
}

/* ---- subsets and splits ------------------------------------------------------------ */

dataset_t *dataset_subset(const dataset_t *src, const uint32_t *idx, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (idx[k] >= src->n) return NULL;
    dataset_t *ds = dataset_new(n, src->d, src->n_classes);
    if (!ds) return NULL;
    for (size_t k = 0; k < n; k++) {
        memcpy(ds->x + k * src->d, src->x + (size_t)idx[k] * src->d, src->d * sizeof *ds->x);
        ds->y[k] = src->y[idx[k]];
    }
    ds->channels = src->channels;
    ds->height = src->height;
    ds->width = src->width;
    if (src->feature_names) {
        ds->feature_names = cc_xcalloc(src->d, sizeof *ds->feature_names);
        for (size_t j = 0; j < src->d; j++)
            if (src->feature_names[j]) ds->feature_names[j] = cc_xstrdup(src->feature_names[j]);
    }
    if (src->label_name) ds->label_name = cc_xstrdup(src->label_name);
    return ds;
}

dataset_t *dataset_shard(const dataset_t *ds, const int32_t *shard, int32_t k) {
    uint32_t *idx = cc_xmalloc(ds->n * sizeof *idx);
    size_t m = 0;
    for (size_t i = 0; i < ds->n; i++)
        if (shard[i] == k) idx[m++] = (uint32_t)i;
    dataset_t *out = dataset_subset(ds, idx, m);
    free(idx);
    return out;
}

void dataset_class_counts(const dataset_t *ds, size_t *counts) {
    memset(counts, 0, (size_t)(ds->n_classes > 0 ? ds->n_classes : 0) * sizeof *counts);
    for (size_t i = 0; i < ds->n; i++)
        if (ds->y[i] >= 0 && ds->y[i] < ds->n_classes) counts[ds->y[i]]++;
}

static int s_check_labels(const dataset_t *ds, cc_err_t *err) {
    if (ds->n > UINT32_MAX) return cc_err_set(err, CC_ERR_ARG, "dataset: too many rows to split");
    for (size_t i = 0; i < ds->n; i++)
        if (ds->y[i] < 0 || ds->y[i] >= ds->n_classes)
            return cc_err_set(err, CC_ERR_ARG, "dataset: row %zu: label %d outside [0, %d)", i,
                              (int)ds->y[i], ds->n_classes);
    return 0;
}

/* Row indices grouped by class, each group in row order: rows of class c are
 * idx[start[c] .. start[c+1]). Counting sort, O(n + K). start has n_classes+1 entries. */
static void s_group_by_class(const dataset_t *ds, uint32_t *idx, size_t *start) {
    size_t k = (size_t)ds->n_classes;
    memset(start, 0, (k + 1) * sizeof *start);
    for (size_t i = 0; i < ds->n; i++) start[ds->y[i] + 1]++;
    for (size_t c = 0; c < k; c++) start[c + 1] += start[c];
    size_t *fill = cc_xmalloc((k + 1) * sizeof *fill);
    memcpy(fill, start, (k + 1) * sizeof *fill);
    for (size_t i = 0; i < ds->n; i++) idx[fill[ds->y[i]]++] = (uint32_t)i;
    free(fill);
}

/* in_val[i] = 1 for the rows a stratified split sends to validation: within each class,
 * a seeded shuffle, then round(val_frac * n_c) rows (at least one when n_c >= 2). */
static int s_stratified_val_mask(const dataset_t *ds, double val_frac, uint64_t seed,
                                 unsigned char *in_val, cc_err_t *err) {
    if (!(val_frac >= 0.0 && val_frac <= 1.0))
        return cc_err_set(err, CC_ERR_ARG, "dataset: validation fraction %g not in [0, 1]",
                          val_frac);
    int rc = s_check_labels(ds, err);
    if (rc) return rc;
    cc_rng_t rng;
    cc_rng_seed(&rng, seed);
    uint32_t *idx = cc_xmalloc(ds->n * sizeof *idx);
    size_t *start = cc_xmalloc(((size_t)ds->n_classes + 1) * sizeof *start);
    s_group_by_class(ds, idx, start);
    for (int c = 0; c < ds->n_classes; c++) {
        size_t m = start[c + 1] - start[c], k = (size_t)llround(val_frac * (double)m);
        if (k == 0 && m >= 2 && val_frac > 0.0) k = 1;
        cc_rng_shuffle(&rng, idx + start[c], m);
        for (size_t i = 0; i < k; i++) in_val[idx[start[c] + i]] = 1;
    }
    free(idx);
    free(start);
    return 0;
}

/* Rows i with mask[i] == want, in original order (so a split never sorts by class). */
static size_t s_rows_where(const unsigned char *mask, size_t n, unsigned char want, uint32_t *rows) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (mask[i] == want) rows[k++] = (uint32_t)i;
    return k;
}

int dataset_split_stratified(const dataset_t *ds, double val_frac, uint64_t seed, dataset_t **train,
                             dataset_t **val, cc_err_t *err) {
    *train = *val = NULL;
    unsigned char *in_val = cc_xcalloc(ds->n, 1);
    int rc = s_stratified_val_mask(ds, val_frac, seed, in_val, err);
    if (rc == 0) {
        uint32_t *rows = cc_xmalloc(ds->n * sizeof *rows);
        *train = dataset_subset(ds, rows, s_rows_where(in_val, ds->n, 0, rows));
        *val = dataset_subset(ds, rows, s_rows_where(in_val, ds->n, 1, rows));
        free(rows);
    }
    free(in_val);
    return rc;
}

int dataset_split_off_stratified(dataset_t *ds, double val_frac, uint64_t seed, dataset_t **val,
                                 cc_err_t *err) {
    *val = NULL;
    unsigned char *in_val = cc_xcalloc(ds->n, 1);
    int rc = s_stratified_val_mask(ds, val_frac, seed, in_val, err);
    if (rc == 0) {
        uint32_t *rows = cc_xmalloc(ds->n * sizeof *rows);
        *val = dataset_subset(ds, rows, s_rows_where(in_val, ds->n, 1, rows));
        size_t kept = s_rows_where(in_val, ds->n, 0, rows);
        /* rows[] is ascending, so moving row rows[k] down to k never overwrites a row
         * still to be moved. */
        for (size_t k = 0; k < kept; k++) {
            if (rows[k] == k) continue;
            memcpy(ds->x + k * ds->d, ds->x + (size_t)rows[k] * ds->d, ds->d * sizeof(float));
            ds->y[k] = ds->y[rows[k]];
        }
        ds->n = kept;
        ds->x = cc_xrealloc(ds->x, (kept ? kept : 1) * ds->d * sizeof(float));
        ds->y = cc_xrealloc(ds->y, (kept ? kept : 1) * sizeof(int32_t));
        free(rows);
    }
    free(in_val);
    return rc;
}

/* ---- hospital partitions ------------------------------------------------------------ */

/* p ~ Dirichlet(alpha, ..., alpha) of dimension k via normalised Gamma draws. Returns -1
 * when every draw underflowed to 0 (possible for tiny alpha); the caller draws again. */
static int s_dirichlet(cc_rng_t *rng, double alpha, int k, double *p) {
    double sum = 0.0;
    for (int j = 0; j < k; j++) sum += p[j] = cc_rng_gamma(rng, alpha);
    if (!(sum > 0.0) || !isfinite(sum)) return -1;
    for (int j = 0; j < k; j++) p[j] /= sum;
    return 0;
}

/* Gives rows[0..m) to clients in contiguous runs of lengths floor(cumsum(p) * m)
 * (the last client takes the rest), adding to sizes[]. */
static void s_cut(const uint32_t *rows, size_t m, const double *p, int k, int32_t *shard,
                  size_t *sizes) {
    double cum = 0.0;
    size_t from = 0;
    for (int j = 0; j < k; j++) {
        cum += p[j];
        size_t to = j == k - 1 ? m : (size_t)(cum * (double)m);
        if (to > m) to = m;
        if (to < from) to = from;
        for (size_t i = from; i < to; i++) shard[rows[i]] = j;
        sizes[j] += to - from;
        from = to;
    }
}

static size_t s_min(const size_t *v, int k) {
    size_t m = SIZE_MAX;
    for (int j = 0; j < k; j++) m = v[j] < m ? v[j] : m;
    return m;
}

/* One draw of the scheme into shard; sizes[] receives the client sizes. rows is the
 * shuffled row list (IID, QUANTITY) or the rows grouped by class (DIRICHLET). */
static int s_draw(const dataset_t *ds, const data_partition_opts_t *o, cc_rng_t *rng,
                  uint32_t *rows, const size_t *start, double *p, int32_t *shard, size_t *sizes) {
    int k = o->n_clients;
    memset(sizes, 0, (size_t)k * sizeof *sizes);
    if (o->scheme == DATA_PARTITION_IID) {
        for (int j = 0; j < k; j++) p[j] = 1.0 / k;
        s_cut(rows, ds->n, p, k, shard, sizes);
        return 0;
    }
    if (o->scheme == DATA_PARTITION_QUANTITY) {
        if (s_dirichlet(rng, o->alpha, k, p)) return -1;
        s_cut(rows, ds->n, p, k, shard, sizes);
        return 0;
    }
    for (int c = 0; c < ds->n_classes; c++) {
        if (s_dirichlet(rng, o->alpha, k, p)) return -1;
        cc_rng_shuffle(rng, rows + start[c], start[c + 1] - start[c]);
        s_cut(rows + start[c], start[c + 1] - start[c], p, k, shard, sizes);
    }
    return 0;
}

static int s_check_partition_opts(const dataset_t *ds, const data_partition_opts_t *o,
                                  cc_err_t *err) {
    if (o->n_clients < 1)
        return cc_err_set(err, CC_ERR_ARG, "partition: need at least one client, got %d",
                          o->n_clients);
    if (o->scheme != DATA_PARTITION_IID && !(o->alpha > 0.0 && isfinite(o->alpha)))
        return cc_err_set(err, CC_ERR_ARG, "partition: alpha must be > 0, got %g", o->alpha);
    if (o->scheme > DATA_PARTITION_QUANTITY)
        return cc_err_set(err, CC_ERR_ARG, "partition: unknown scheme %d", (int)o->scheme);
    size_t need = (size_t)o->n_clients * (o->min_per_client ? o->min_per_client : 1);
    if (need > ds->n)
        return cc_err_set(err, CC_ERR_ARG,
                          "partition: %zu rows cannot give %d clients %zu rows each", ds->n,
                          o->n_clients, o->min_per_client ? o->min_per_client : 1);
    return s_check_labels(ds, err);
}

int dataset_partition(const dataset_t *ds, const data_partition_opts_t *opts, int32_t *shard,
                      cc_err_t *err) {
    int rc = s_check_partition_opts(ds, opts, err);
    if (rc) return rc;
    int k = opts->n_clients,
        attempts = opts->max_attempts > 0 ? opts->max_attempts : S_DEFAULT_ATTEMPTS;
    cc_rng_t rng;
    cc_rng_seed(&rng, opts->seed);
    uint32_t *rows = cc_xmalloc(ds->n * sizeof *rows);
    size_t *start = cc_xmalloc(((size_t)ds->n_classes + 1) * sizeof *start);
    size_t *sizes = cc_xmalloc((size_t)k * sizeof *sizes);
    double *p = cc_xmalloc((size_t)k * sizeof *p);
    if (opts->scheme == DATA_PARTITION_DIRICHLET) {
        s_group_by_class(ds, rows, start);
    } else {
        for (size_t i = 0; i < ds->n; i++) rows[i] = (uint32_t)i;
        cc_rng_shuffle(&rng, rows, ds->n);
    }
    rc = CC_ERR_ARG;
    for (int a = 0; a < attempts && rc; a++)
        if (s_draw(ds, opts, &rng, rows, start, p, shard, sizes) == 0 &&
            s_min(sizes, k) >= opts->min_per_client)
            rc = 0;
    if (rc)
        cc_err_set(err, CC_ERR_ARG,
                   "partition: no draw in %d gave each of %d clients at least %zu rows "
                   "(alpha %g); raise alpha, or lower the clients or the minimum",
                   attempts, k, opts->min_per_client, opts->alpha);
    free(rows);
    free(start);
    free(sizes);
    free(p);
    return rc;
}

/* ---- feature statistics and standardisation ------------------------------------------ */

feature_stats_t *feature_stats_new(size_t d) {
    feature_stats_t *st = cc_xcalloc(1, sizeof *st);
    st->d = d;
    st->sum = cc_xcalloc(d, sizeof *st->sum);
    st->sumsq = cc_xcalloc(d, sizeof *st->sumsq);
    return st;
}

void feature_stats_destroy(feature_stats_t **st) {
    if (!st || !*st) return;
    free((*st)->sum);
    free((*st)->sumsq);
    free(*st);
    *st = NULL;
}

void feature_stats_add(feature_stats_t *st, const dataset_t *ds) {
    assert(st->d == ds->d);
    for (size_t i = 0; i < ds->n; i++) {
        const float *row = ds->x + i * ds->d;
        for (size_t j = 0; j < ds->d; j++) {
            double v = row[j];
            st->sum[j] += v;
            st->sumsq[j] += v * v;
        }
    }
    st->n += (double)ds->n;
}

void feature_stats_merge(feature_stats_t *acc, const feature_stats_t *other) {
    /* Statistics received from a hospital are checked for d before they get here. */
    assert(acc->d == other->d);
    for (size_t j = 0; j < acc->d; j++) {
        acc->sum[j] += other->sum[j];
        acc->sumsq[j] += other->sumsq[j];
    }
    acc->n += other->n;
}

standardizer_t *standardizer_new(size_t d) {
    standardizer_t *st = cc_xcalloc(1, sizeof *st);
    st->d = d;
    st->mean = cc_xcalloc(d, sizeof *st->mean);
    st->std = cc_xmalloc((d ? d : 1) * sizeof *st->std);
    for (size_t j = 0; j < d; j++) st->std[j] = 1.0f;
    return st;
}

void standardizer_destroy(standardizer_t **st) {
    if (!st || !*st) return;
    free((*st)->mean);
    free((*st)->std);
    free(*st);
    *st = NULL;
}

standardizer_t *standardizer_from_stats(const feature_stats_t *fs) {
    standardizer_t *st = standardizer_new(fs->d);
    if (!(fs->n > 0.0)) return st; /* no data: the identity */
    for (size_t j = 0; j < fs->d; j++) {
        double mean = fs->sum[j] / fs->n;
        /* E[x^2] - E[x]^2 can come out slightly negative by cancellation. */
        double var = fs->sumsq[j] / fs->n - mean * mean;
        double sd = sqrt(var > 0.0 ? var : 0.0);
        st->mean[j] = (float)mean;
        st->std[j] = (float)(sd > S_STD_FLOOR ? sd : S_STD_FLOOR);
    }
    return st;
}

standardizer_t *standardizer_fit(const dataset_t *ds) {
    feature_stats_t *fs = feature_stats_new(ds->d);
    feature_stats_add(fs, ds);
    standardizer_t *st = standardizer_from_stats(fs);
    feature_stats_destroy(&fs);
    return st;
}

void standardizer_apply(const standardizer_t *st, dataset_t *ds) {
    assert(st->d == ds->d);
    for (size_t i = 0; i < ds->n; i++) {
        float *row = ds->x + i * ds->d;
        for (size_t j = 0; j < ds->d; j++) row[j] = (row[j] - st->mean[j]) / st->std[j];
    }
}
