/* dataset_fann.c — FANN training-file format (libfann's fann_read_train_from_file):
 *
 *     n_rows n_inputs n_outputs
 *     x_1 ... x_{n_inputs}          one line of inputs per row
 *     o_1 ... o_{n_outputs}         then one line of outputs
 *
 * Outputs become a class label: with n_outputs >= 2 they must be one-hot (exactly one 1, the
 * rest 0, or the rest -1), label = index of the 1, n_classes = n_outputs; with n_outputs == 1
 * the value is a binary label (0 or -1 -> 0, 1 -> 1), n_classes = 2. Regression targets are
 * refused instead of being rounded into classes. Blank lines between rows are skipped. */
#include "dataset_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_EPS 1e-6f

/* Next line holding something other than blanks, or NULL at end of file. */
static char *s_next_nonblank(dataset_text_t *t) {
    char *line;
    while ((line = dataset_text_next_line(t)) != NULL)
        if (line[strspn(line, " \t\r\v\f")] != '\0') return line;
    return NULL;
}

static int s_parse_size(char **s, size_t *out) {
    while (**s == ' ' || **s == '\t') (*s)++;
    if (**s < '0' || **s > '9') return -1;
    errno = 0;
    char *e;
    unsigned long long v = strtoull(*s, &e, 10);
    if (errno || (*e != '\0' && *e != ' ' && *e != '\t')) return -1;
    *out = (size_t)v;
    *s = e;
    return 0;
}

static int s_read_header(dataset_text_t *t, size_t dims[3], cc_err_t *err) {
    char *line = s_next_nonblank(t);
    char *s = line;
    for (int i = 0; i < 3; i++)
        if (!s || s_parse_size(&s, &dims[i]) != 0) goto bad;
    if (s[strspn(s, " \t\r\v\f")] != '\0') goto bad;
    if (dims[0] == 0 || dims[1] == 0 || dims[2] == 0)
        return dataset_err_at(err, CC_ERR_FORMAT, t->path, t->line,
                              "header has a zero count (%zu rows, %zu inputs, %zu outputs)",
                              dims[0], dims[1], dims[2]);
    if (dims[2] > DATASET_MAX_CLASSES || dims[1] > t->len)
        return dataset_err_at(err, CC_ERR_FORMAT, t->path, t->line,
                              "header counts are implausible for a %zu-byte file", t->len);
    return 0;
bad:
    return dataset_err_at(err, CC_ERR_FORMAT, t->path, t->line ? t->line : 1,
                          "expected a header \"n_rows n_inputs n_outputs\"");
}

/* Reads the next line into vals, which must hold exactly `want` numbers. */
static int s_read_numbers(dataset_text_t *t, float *vals, size_t want, const char *what, size_t row,
                          size_t n_rows, cc_err_t *err) {
    char *line = s_next_nonblank(t);
    if (!line)
        return dataset_err_at(err, CC_ERR_TRUNCATED, t->path, t->line,
                              "truncated: expected %zu rows, got %zu", n_rows, row);
    size_t got;
    char *bad;
    if (dataset_parse_floats(line, vals, want, &got, &bad) != 0)
        return dataset_err_at(err, CC_ERR_FORMAT, t->path, t->line,
                              "'%.40s' is not a finite number", bad);
    if (got < want && dataset_text_cut_short(t))
        return dataset_err_at(err, CC_ERR_TRUNCATED, t->path, t->line,
                              "truncated: file ends inside row %zu of %zu", row + 1, n_rows);
    if (got != want)
        return dataset_err_at(err, CC_ERR_FORMAT, t->path, t->line, "expected %zu %s, got %zu",
                              want, what, got);
    return 0;
}

static int s_near(float v, float target) { return fabsf(v - target) <= S_EPS; }

/* Label from one output line (see the top of the file); -1 if it is not a class code. */
static long s_outputs_to_label(const float *o, size_t n) {
    if (n == 1)
        return s_near(o[0], 1.0f) ? 1 : (s_near(o[0], 0.0f) || s_near(o[0], -1.0f)) ? 0 : -1;
    long hot = -1;
    size_t zeros = 0, minus = 0;
    for (size_t k = 0; k < n; k++) {
        if (s_near(o[k], 1.0f)) {
            if (hot >= 0) return -1;
            hot = (long)k;
        } else if (s_near(o[k], 0.0f)) {
            zeros++;
        } else if (s_near(o[k], -1.0f)) {
            minus++;
        }
    }
    return (hot >= 0 && (zeros == n - 1 || minus == n - 1)) ? hot : -1;
}

int dataset_fann_load(const char *path, int n_classes, dataset_t **out, cc_err_t *err) {
    *out = NULL;
    dataset_t *ds = NULL;
    float *o = NULL;
    dataset_text_t t;
    int rc = dataset_text_open(&t, path, err);
    if (rc) return rc;
    size_t dims[3];
    if ((rc = s_read_header(&t, dims, err)) != 0) goto fail;
    size_t n = dims[0], ni = dims[1], no = dims[2];
    /* A row takes at least two bytes per number, so a header promising more rows than
     * that is truncated for sure: allocate by what the file can hold, not by its claim. */
    size_t cap = t.len / (ni + no) + 1;
    ds = dataset_new(n < cap ? n : cap, ni, 0);
    o = cc_xmalloc(no * sizeof *o);
    for (size_t i = 0; i < n; i++) {
        if (i >= ds->n) {
            rc = dataset_err_at(err, CC_ERR_TRUNCATED, path, t.line,
                                "truncated: expected %zu rows, got %zu", n, i);
            goto fail;
        }
        if ((rc = s_read_numbers(&t, ds->x + i * ni, ni, "inputs", i, n, err)) != 0) goto fail;
        if ((rc = s_read_numbers(&t, o, no, "outputs", i, n, err)) != 0) goto fail;
        long y = s_outputs_to_label(o, no);
        if (y < 0) {
            rc = dataset_err_at(err, CC_ERR_FORMAT, path, t.line,
                                no == 1 ? "output is not a binary label (0/1 or -1/1)"
                                        : "outputs are not one-hot (one 1, the rest 0 or -1)");
            goto fail;
        }
        if ((rc = dataset_check_label(y, n_classes, path, t.line, err)) != 0) goto fail;
        ds->y[i] = (int32_t)y;
    }
    if (s_next_nonblank(&t)) {
        rc = dataset_err_at(err, CC_ERR_FORMAT, path, t.line,
                            "data past the %zu rows the header announces", n);
        goto fail;
    }
    ds->n = n;
    ds->n_classes = n_classes > 0 ? n_classes : (no == 1 ? 2 : (int)no);
    free(o);
    dataset_text_close(&t);
    *out = ds;
    return 0;
fail:
    free(o);
    dataset_destroy(&ds);
    dataset_text_close(&t);
    return rc;
}

int dataset_load_fann(const char *path, dataset_t **out, cc_err_t *err) {
    return dataset_fann_load(path, 0, out, err);
}

static int s_write_fann(FILE *fp, const dataset_t *ds, void *ctx, cc_err_t *err) {
    dataset_num_cache_t *cache = ctx;
    (void)err;
    /* Always one-hot, with at least two outputs: one output would read back as binary
     * and a one-class dataset would lose its class count. */
    int k = ds->n_classes < 2 ? 2 : ds->n_classes;
    fprintf(fp, "%zu %zu %d\n", ds->n, ds->d, k);
    for (size_t i = 0; i < ds->n; i++) {
        const float *row = ds->x + i * ds->d;
        for (size_t j = 0; j < ds->d; j++) {
            dataset_put_float(fp, cache, row[j]);
            fputc(j + 1 < ds->d ? ' ' : '\n', fp);
        }
        for (int c = 0; c < k; c++) {
            fputc(c == ds->y[i] ? '1' : '0', fp);
            fputc(c + 1 < k ? ' ' : '\n', fp);
        }
    }
    return 0;
}

int dataset_save_fann(const dataset_t *ds, const char *path, cc_err_t *err) {
    int rc = dataset_check_writable(ds, path, err);
    if (rc) return rc;
    dataset_num_cache_t *cache = cc_xcalloc(1, sizeof *cache);
    rc = dataset_write_atomic(path, ds, s_write_fann, cache, err);
    free(cache);
    return rc;
}
