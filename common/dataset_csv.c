/* dataset_csv.c — CSV with a header line (RFC 4180 subset) to and from dataset_t.
 *
 * Fields are separated by commas; a field may be wrapped in double quotes, inside which
 * commas, newlines and doubled quotes ("") are literal. Blanks around unquoted fields are
 * trimmed, blank lines skipped, CRLF accepted. Every data row must have as many fields as
 * the header. A feature cell that is empty, "NA", "NaN" or "?" (any case) is missing: an
 * error naming path:line:column unless opts->missing asks for mean or zero imputation.
 * Label rules are in dataset.h (above dataset_csv_info_t).
 *
 * Records are cut in place in the file buffer, so field pointers need no copies. Line
 * numbers count physical lines; a record is reported by the line it starts on. */
#include "dataset_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* One record: pointers to its NUL-terminated fields inside the file buffer. */
typedef struct {
    char **f;
    size_t n, cap;
    size_t line; /* line the record starts on */
} s_record_t;

/* A label or group cell, for sorting distinct values. */
typedef struct {
    const char *s;
    long v; /* value when is_int */
    int is_int; /* 1: an integer (also "3.0"); 0: a name; -1: a number with a fraction */
} s_key_t;

static int s_is_space(char c) { return c == ' ' || c == '\t'; }

static void s_record_push(s_record_t *r, char *field) {
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        r->f = cc_xrealloc(r->f, r->cap * sizeof *r->f);
    }
    r->f[r->n++] = field;
}

/* Skips blank lines; t->line is the line p is on. Returns 0 at end of file. */
static int s_skip_blank_lines(dataset_text_t *t) {
    char *p = t->p;
    while (p < t->end) {
        char *q = p;
        while (q < t->end && (s_is_space(*q) || *q == '\r')) q++;
        if (q < t->end && *q == '\n') {
            p = q + 1;
            t->line++;
            continue;
        }
        t->p = q == t->end ? q : p;
        return q < t->end;
    }
    t->p = p;
    return 0;
}

/* Unquotes a quoted field starting at p (on the quote) in place; *pp ends after it. */
static int s_quoted_field(dataset_text_t *t, char **pp, size_t rec_line, cc_err_t *err) {
    char *p = *pp + 1, *w = *pp;
    for (;;) {
        if (p >= t->end)
            return dataset_err_at(err, CC_ERR_FORMAT, t->path, rec_line,
                                  "unterminated quoted field");
        if (*p == '"') {
            if (p + 1 < t->end && p[1] == '"') {
                *w++ = '"';
                p += 2;
                continue;
            }
            p++;
            break;
        }
        if (*p == '\n') t->line++;
        *w++ = *p++;
    }
    while (p < t->end && (s_is_space(*p) || *p == '\r')) p++;
    if (p < t->end && *p != ',' && *p != '\n')
        return dataset_err_at(err, CC_ERR_FORMAT, t->path, t->line,
                              "unexpected text after a closing quote");
    *w = '\0'; /* w < p: the opening quote was consumed, so the delimiter is not hit */
    *pp = p;
    return 0;
}

/* Reads the next record into r. Returns 1, 0 at end of file, or a negative error. */
static int s_next_record(dataset_text_t *t, s_record_t *r, cc_err_t *err) {
    if (!s_skip_blank_lines(t)) return 0;
    r->n = 0;
    r->line = t->line;
    char *p = t->p;
    for (;;) {
        while (p < t->end && s_is_space(*p)) p++;
        char *field = p;
        if (p < t->end && *p == '"') {
            int rc = s_quoted_field(t, &p, r->line, err);
            if (rc) return rc;
        } else {
            while (p < t->end && *p != ',' && *p != '\n') p++;
            char *e = p;
            while (e > field && (s_is_space(e[-1]) || e[-1] == '\r')) e--;
            if (e < p) *e = '\0'; /* else terminated below, after reading the delimiter */
        }
        int at_end = p >= t->end;
        char delim = at_end ? '\n' : *p;
        *p = '\0'; /* p is at the delimiter, or at the buffer's terminating NUL */
        s_record_push(r, field);
        if (at_end) break;
        p++;
        if (delim == '\n') {
            t->line++;
            break;
        }
    }
    t->p = p;
    return 1;
}

static int s_is_missing(const char *s) {
    return s[0] == '\0' || strcasecmp(s, "na") == 0 || strcasecmp(s, "nan") == 0 ||
        strcmp(s, "?") == 0;
}

static long s_find_column(const s_record_t *hdr, const char *name) {
    for (size_t j = 0; j < hdr->n; j++)
        if (strcmp(hdr->f[j], name) == 0) return (long)j;
    return -1;
}

static int s_cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Duplicate names would make --label-column ambiguous and the written header unreadable. */
static int s_check_header(const dataset_text_t *t, const s_record_t *hdr, cc_err_t *err) {
    if (hdr->n < 2)
        return dataset_err_at(err, CC_ERR_FORMAT, t->path, hdr->line,
                              "header has %zu column; need a label and at least one feature",
                              hdr->n);
    char **sorted = cc_xmalloc(hdr->n * sizeof *sorted);
    memcpy(sorted, hdr->f, hdr->n * sizeof *sorted);
    qsort(sorted, hdr->n, sizeof *sorted, s_cmp_str);
    int rc = 0;
    for (size_t j = 1; j < hdr->n && !rc; j++)
        if (strcmp(sorted[j - 1], sorted[j]) == 0)
            rc = dataset_err_at(err, CC_ERR_FORMAT, t->path, hdr->line,
                                "duplicate column name '%s'", sorted[j]);
    free(sorted);
    return rc;
}

/* Column roles: the label, the optional group, and the features in file order. */
typedef struct {
    long label, group;
    size_t d;
} s_layout_t;

static int s_layout(const dataset_text_t *t, const s_record_t *hdr, const data_load_opts_t *o,
                    const char *group_column, s_layout_t *lay, cc_err_t *err) {
    const char *want = o->label_column;
    lay->label = want ? s_find_column(hdr, want) : s_find_column(hdr, "label");
    if (!want && lay->label < 0) lay->label = (long)hdr->n - 1;
    if (lay->label < 0)
        return dataset_err_at(err, CC_ERR_FORMAT, t->path, hdr->line, "no label column named '%s'",
                              want);
    lay->group = -1;
    if (group_column) {
        lay->group = s_find_column(hdr, group_column);
        if (lay->group < 0 || lay->group == lay->label)
            return dataset_err_at(err, CC_ERR_FORMAT, t->path, hdr->line,
                                  lay->group < 0 ? "no column named '%s'"
                                                 : "column '%s' is the label column",
                                  group_column);
    }
    lay->d = hdr->n - 1 - (lay->group >= 0);
    if (lay->d == 0)
        return dataset_err_at(err, CC_ERR_FORMAT, t->path, hdr->line, "no feature columns");
    return 0;
}

/* Per-row text of the label and group columns, kept until all rows are read. */
typedef struct {
    char **label, **group;
    size_t *line;
} s_cells_t;

/* Parses one data record into row (d floats; a missing cell becomes NaN and is counted). */
static int s_parse_row(const dataset_text_t *t, const s_record_t *hdr, const s_record_t *r,
                       const s_layout_t *lay, data_missing_t missing, float *row, size_t *n_missing,
                       cc_err_t *err) {
    if (r->n < hdr->n && dataset_text_cut_short(t))
        return dataset_err_at(err, CC_ERR_TRUNCATED, t->path, r->line,
                              "truncated: file ends inside the record (%zu of %zu columns)", r->n,
                              hdr->n);
    if (r->n != hdr->n)
        return dataset_err_at(err, CC_ERR_FORMAT, t->path, r->line, "expected %zu columns, got %zu",
                              hdr->n, r->n);
    size_t j = 0;
    for (size_t c = 0; c < r->n; c++) {
        const char *cell = r->f[c];
        if ((long)c == lay->label || (long)c == lay->group) {
            if (s_is_missing(cell))
                return dataset_err_at(err, CC_ERR_FORMAT, t->path, r->line,
                                      "column '%s': missing value", hdr->f[c]);
            continue;
        }
        if (s_is_missing(cell)) {
            if (missing == DATA_MISSING_ERROR)
                return dataset_err_at(err, CC_ERR_FORMAT, t->path, r->line,
                                      "column '%s': missing value ('%s')", hdr->f[c], cell);
            row[j] = NAN;
            n_missing[j++]++;
            continue;
        }
        if (dataset_parse_float(cell, &row[j]) != 0)
            return dataset_err_at(err, CC_ERR_FORMAT, t->path, r->line,
                                  "column '%s': '%.40s' is not a finite number", hdr->f[c], cell);
        j++;
    }
    return 0;
}

/* Replaces the NaN markers of missing cells by the column mean (double) or zero. */
static void s_impute(dataset_t *ds, const size_t *n_missing, data_missing_t how) {
    for (size_t j = 0; j < ds->d; j++) {
        if (n_missing[j] == 0) continue;
        double sum = 0.0;
        size_t present = 0;
        for (size_t i = 0; i < ds->n && how == DATA_MISSING_MEAN; i++) {
            float v = ds->x[i * ds->d + j];
            if (!isnan(v)) sum += v, present++;
        }
        /* A column with no value at all has no mean; zero keeps it finite. */
        float fill = present ? (float)(sum / (double)present) : 0.0f;
        for (size_t i = 0; i < ds->n; i++)
            if (isnan(ds->x[i * ds->d + j])) ds->x[i * ds->d + j] = fill;
    }
}

static s_key_t s_key_of(const char *s) {
    s_key_t k = {s, 0, 0};
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (e == s || *e != '\0' || !isfinite(v) || errno) return k;
    if (v != floor(v)) {
        k.is_int = -1;
    } else if (fabs(v) < 1e15) {
        k.is_int = 1;
        k.v = (long)v;
    }
    return k;
}

/* Integers numerically, before names in byte order: a total order, so qsort is sound. */
static int s_cmp_key(const void *a, const void *b) {
    const s_key_t *x = a, *y = b;
    if (x->is_int == 1 && y->is_int == 1) return (x->v > y->v) - (x->v < y->v);
    if (x->is_int == 1 || y->is_int == 1) return x->is_int == 1 ? -1 : 1;
    return strcmp(x->s, y->s);
}

/* Distinct values of cells[0..n) in sorted order: ids[i] of each cell, names owned. */
static void s_distinct(char *const *cells, size_t n, int32_t *ids, char ***names, int *n_names) {
    s_key_t *keys = cc_xmalloc(n * sizeof *keys), *uniq = cc_xmalloc(n * sizeof *uniq);
    for (size_t i = 0; i < n; i++) keys[i] = s_key_of(cells[i]);
    memcpy(uniq, keys, n * sizeof *keys);
    qsort(uniq, n, sizeof *uniq, s_cmp_key);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || s_cmp_key(&uniq[u - 1], &uniq[i]) != 0) uniq[u++] = uniq[i];
    for (size_t i = 0; i < n; i++) {
        const s_key_t *hit = bsearch(&keys[i], uniq, u, sizeof *uniq, s_cmp_key);
        ids[i] = (int32_t)(hit - uniq);
    }
    *names = cc_xmalloc(u * sizeof **names);
    for (size_t k = 0; k < u; k++) (*names)[k] = cc_xstrdup(uniq[k].s);
    *n_names = (int)u;
    free(keys);
    free(uniq);
}

static void s_free_names(char **names, int n) {
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

/* Labels per the rules in dataset.h; fills ds->y, ds->n_classes and the info names. */
static int s_resolve_labels(const dataset_text_t *t, const s_cells_t *cells, int n_classes,
                            dataset_t *ds, dataset_csv_info_t *info, cc_err_t *err) {
    int as_given = 1;
    for (size_t i = 0; i < ds->n; i++) {
        s_key_t k = s_key_of(cells->label[i]);
        if (k.is_int < 0)
            return dataset_err_at(err, CC_ERR_FORMAT, t->path, cells->line[i],
                                  "label '%.40s' is not an integer or a class name",
                                  cells->label[i]);
        if (k.is_int == 0 || k.v < 0) as_given = 0;
    }
    long max = -1;
    if (!as_given) s_distinct(cells->label, ds->n, ds->y, &info->class_names, &info->n_class_names);
    for (size_t i = 0; i < ds->n; i++) {
        long y = as_given ? s_key_of(cells->label[i]).v : ds->y[i];
        int rc = dataset_check_label(y, n_classes, t->path, cells->line[i], err);
        if (rc) return rc;
        ds->y[i] = (int32_t)y;
        if (y > max) max = y;
    }
    ds->n_classes = n_classes > 0 ? n_classes : (int)max + 1;
    return 0;
}

static void s_copy_names(dataset_t *ds, const s_record_t *hdr, const s_layout_t *lay) {
    ds->feature_names = cc_xcalloc(ds->d, sizeof *ds->feature_names);
    size_t j = 0;
    for (size_t c = 0; c < hdr->n; c++)
        if ((long)c != lay->label && (long)c != lay->group)
            ds->feature_names[j++] = cc_xstrdup(hdr->f[c]);
    ds->label_name = cc_xstrdup(hdr->f[lay->label]);
}

/* Reads every data record into ds (rows allocated for the most the file can hold). */
static int s_read_rows(dataset_text_t *t, const s_record_t *hdr, const s_layout_t *lay,
                       data_missing_t missing, dataset_t *ds, s_cells_t *cells, size_t *n_missing,
                       cc_err_t *err) {
    s_record_t r = {0};
    size_t cap = ds->n, n = 0;
    int rc;
    while ((rc = s_next_record(t, &r, err)) == 1) {
        if (n == cap) { /* unreachable: cap bounds the records the file can hold */
            rc = dataset_err_at(err, CC_ERR_FORMAT, t->path, r.line, "too many rows");
            break;
        }
        rc = s_parse_row(t, hdr, &r, lay, missing, ds->x + n * ds->d, n_missing, err);
        if (rc) break;
        cells->label[n] = r.f[lay->label];
        if (lay->group >= 0) cells->group[n] = r.f[lay->group];
        cells->line[n++] = r.line;
    }
    free(r.f);
    ds->n = n;
    if (rc == 0 && n == 0)
        rc = dataset_err_at(err, CC_ERR_FORMAT, t->path, hdr->line + 1,
                            "no data rows after the header");
    return rc;
}

void dataset_csv_info_clear(dataset_csv_info_t *info) {
    if (!info) return;
    s_free_names(info->class_names, info->n_class_names);
    s_free_names(info->group_names, info->n_groups);
    free(info->missing);
    free(info->group_of_row);
    memset(info, 0, sizeof *info);
}

int dataset_load_csv_ex(const char *path, const data_load_opts_t *opts, const char *group_column,
                        dataset_t **out, dataset_csv_info_t *info, cc_err_t *err) {
    static const data_load_opts_t defaults = {0};
    const data_load_opts_t *o = opts ? opts : &defaults;
    dataset_csv_info_t local = {0}, *inf = info ? info : &local;
    memset(inf, 0, sizeof *inf);
    *out = NULL;
    dataset_t *ds = NULL;
    s_record_t hdr = {0};
    s_cells_t cells = {0};
    dataset_text_t t;
    int rc = dataset_text_open(&t, path, err);
    if (rc) return rc;
    t.line = 1;
    if ((rc = s_next_record(&t, &hdr, err)) < 0) goto fail;
    s_layout_t lay = {-1, -1, 0};
    if ((rc = s_check_header(&t, &hdr, err)) != 0) goto fail;
    if ((rc = s_layout(&t, &hdr, o, group_column, &lay, err)) != 0) goto fail;
    /* Every record has n-1 commas: bounds the rows without trusting anything else. */
    size_t cap = dataset_text_lines_left(&t), by_bytes = t.len / (hdr.n - 1) + 1;
    ds = dataset_new(cap < by_bytes ? cap : by_bytes, lay.d, 0);
    cells.label = cc_xmalloc(ds->n * sizeof *cells.label);
    cells.group = cc_xmalloc(ds->n * sizeof *cells.group);
    cells.line = cc_xmalloc(ds->n * sizeof *cells.line);
    inf->missing = cc_xcalloc(lay.d, sizeof *inf->missing);
    rc = s_read_rows(&t, &hdr, &lay, o->missing, ds, &cells, inf->missing, err);
    if (rc) goto fail;
    s_impute(ds, inf->missing, o->missing);
    if ((rc = s_resolve_labels(&t, &cells, o->n_classes, ds, inf, err)) != 0) goto fail;
    if (lay.group >= 0) {
        inf->group_of_row = cc_xmalloc(ds->n * sizeof *inf->group_of_row);
        s_distinct(cells.group, ds->n, inf->group_of_row, &inf->group_names, &inf->n_groups);
    }
    s_copy_names(ds, &hdr, &lay);
    *out = ds;
    ds = NULL;
fail:
    if (rc || !info) dataset_csv_info_clear(inf);
    dataset_destroy(&ds);
    free(cells.label);
    free(cells.group);
    free(cells.line);
    free(hdr.f);
    dataset_text_close(&t);
    return rc;
}

int dataset_load_csv(const char *path, const data_load_opts_t *opts, dataset_t **out,
                     cc_err_t *err) {
    return dataset_load_csv_ex(path, opts, NULL, out, NULL, err);
}

/* Writes s as one CSV field, quoted when it holds a delimiter, quote or edge blank. */
static void s_put_field(FILE *fp, const char *s) {
    size_t n = strlen(s);
    int quote = strpbrk(s, ",\"\r\n") != NULL || (n && (s_is_space(s[0]) || s_is_space(s[n - 1])));
    if (!quote) {
        fputs(s, fp);
        return;
    }
    fputc('"', fp);
    for (; *s; s++) {
        if (*s == '"') fputc('"', fp);
        fputc(*s, fp);
    }
    fputc('"', fp);
}

static int s_write_csv(FILE *fp, const dataset_t *ds, void *ctx, cc_err_t *err) {
    dataset_num_cache_t *cache = ctx;
    (void)err;
    for (size_t j = 0; j < ds->d; j++) {
        if (ds->feature_names && ds->feature_names[j]) {
            s_put_field(fp, ds->feature_names[j]);
        } else {
            fprintf(fp, "f%zu", j);
        }
        fputc(',', fp);
    }
    s_put_field(fp, ds->label_name ? ds->label_name : "label");
    fputc('\n', fp);
    for (size_t i = 0; i < ds->n; i++) {
        const float *row = ds->x + i * ds->d;
        for (size_t j = 0; j < ds->d; j++) {
            dataset_put_float(fp, cache, row[j]);
            fputc(',', fp);
        }
        fprintf(fp, "%d\n", (int)ds->y[i]);
    }
    return 0;
}

int dataset_save_csv(const dataset_t *ds, const char *path, cc_err_t *err) {
    int rc = dataset_check_writable(ds, path, err);
    if (rc) return rc;
    dataset_num_cache_t *cache = cc_xcalloc(1, sizeof *cache);
    rc = dataset_write_atomic(path, ds, s_write_csv, cache, err);
    free(cache);
    return rc;
}
