/* test_dataset.c — loaders on the real files the Debian packages ship (thyroid, diabetes,
 * Fashion-MNIST), every malformed input we know of (each must fail with path:line or a
 * byte count, never crash), exact save -> load round trips, splits, partitions and the
 * standardiser against independent computations.
 *
 * Reference histograms, computed once with awk over the output lines (`NR>1 && NR%2==1`,
 * index of the 1):  thyroid.train 89 / 192 / 3319,  thyroid.test 77 / 176 / 3347,
 * diabetes.train 133 / 251. The thyroid test also re-parses the file independently. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "dataset.h"
#include "fileio.h"
#include "tmpdir_fixture.h"

#define FANN_DIR "/usr/share/doc/libfann-dev/examples/datasets/"
#define FMNIST_DIR "/usr/share/datasets/fashion-mnist/"

/* ---- fixtures: every test writes under its own mkdtemp directory ------------------------ */

static char s_dir[64];

static void s_setup(void) {
    tmpdir_make(s_dir, sizeof s_dir, "/tmp/test_dataset.");
}

static void s_teardown(void) { tmpdir_remove(s_dir); }

TestSuite(fann, .init = s_setup, .fini = s_teardown);
TestSuite(csv, .init = s_setup, .fini = s_teardown);
TestSuite(idx, .init = s_setup, .fini = s_teardown);
TestSuite(split, .init = s_setup, .fini = s_teardown);
TestSuite(partition, .init = s_setup, .fini = s_teardown);
TestSuite(stats, .init = s_setup, .fini = s_teardown);

/* Path of name in the test directory; a few rotating buffers so several can be live. */
static const char *s_path(const char *name) { return tmpdir_join(s_dir, name); }

static const char *s_write(const char *name, const char *text) {
    const char *p = s_path(name);
    FILE *fp = fopen(p, "wb");
    cr_assert_not_null(fp);
    fputs(text, fp);
    fclose(fp);
    return p;
}

/* Loading path must fail, leave out NULL, and say "<path><where>" (where is ":line:") and
 * frag (if not NULL). */
static void s_expect_fail(const char *path, const data_load_opts_t *o, const char *where,
                          const char *frag) {
    dataset_t *ds = (dataset_t *)0x1;
    cc_err_t err = {0};
    int rc = dataset_load(path, o, &ds, &err);
    cr_assert_lt(rc, 0, "%s should not load", path);
    cr_assert_null(ds, "out is NULL on failure");
    cr_assert_eq(err.code, rc);
    cr_assert(strstr(err.msg, path), "message names the file: %s", err.msg);
    char loc[512];
    snprintf(loc, sizeof loc, "%s%s", path, where);
    cr_assert(strstr(err.msg, loc), "message has '%s': %s", loc, err.msg);
    if (frag) cr_assert(strstr(err.msg, frag), "message has '%s': %s", frag, err.msg);
}

static dataset_t *s_load_ok(const char *path, const data_load_opts_t *o) {
    dataset_t *ds = NULL;
    cc_err_t err = {0};
    cr_assert_eq(dataset_load(path, o, &ds, &err), 0, "%s", err.msg);
    cr_assert_not_null(ds);
    return ds;
}

static void s_assert_same(const dataset_t *a, const dataset_t *b) {
    cr_assert_eq(a->n, b->n);
    cr_assert_eq(a->d, b->d);
    cr_assert_eq(a->n_classes, b->n_classes);
    for (size_t i = 0; i < a->n * a->d; i++)
        cr_assert_eq(a->x[i], b->x[i], "x[%zu]: %.9g vs %.9g", i, (double)a->x[i], (double)b->x[i]);
    for (size_t i = 0; i < a->n; i++) cr_assert_eq(a->y[i], b->y[i], "y[%zu]", i);
}

static void s_assert_counts(const dataset_t *ds, const size_t *want, int k) {
    size_t got[16];
    cr_assert_eq(ds->n_classes, k);
    dataset_class_counts(ds, got);
    for (int c = 0; c < k; c++)
        cr_assert_eq(got[c], want[c], "class %d: %zu vs %zu", c, got[c], want[c]);
}

/* ---- FANN ---------------------------------------------------------------------------------- */

/* Independent reader: fscanf, argmax of the outputs. */
static void s_fann_reference(const char *path, size_t *n, size_t *d, float **x, int **y) {
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp);
    size_t no;
    cr_assert_eq(fscanf(fp, "%zu %zu %zu", n, d, &no), 3);
    *x = malloc(*n * *d * sizeof **x);
    *y = malloc(*n * sizeof **y);
    for (size_t i = 0; i < *n; i++) {
        for (size_t j = 0; j < *d; j++) cr_assert_eq(fscanf(fp, "%f", &(*x)[i * *d + j]), 1);
        float best = -1e30f, v;
        for (size_t k = 0; k < no; k++) {
            cr_assert_eq(fscanf(fp, "%f", &v), 1);
            if (v > best) best = v, (*y)[i] = (int)k;
        }
    }
    fclose(fp);
}

Test(fann, thyroid_train_shape_classes_and_values) {
    dataset_t *ds = s_load_ok(FANN_DIR "thyroid.train", NULL);
    cr_assert_eq(ds->n, 3600);
    cr_assert_eq(ds->d, 21);
    cr_assert_eq(ds->channels + ds->height + ds->width, 0, "tabular");
    s_assert_counts(ds, (size_t[]){89, 192, 3319}, 3);
    size_t n, d;
    float *x;
    int *y;
    s_fann_reference(FANN_DIR "thyroid.train", &n, &d, &x, &y);
    cr_assert_eq(n, ds->n);
    cr_assert_eq(d, ds->d);
    for (size_t i = 0; i < n * d; i++) cr_assert_eq(ds->x[i], x[i], "x[%zu]", i);
    for (size_t i = 0; i < n; i++) cr_assert_eq(ds->y[i], y[i], "y[%zu]", i);
    free(x);
    free(y);
    dataset_destroy(&ds);
    cr_assert_null(ds);
    dataset_destroy(&ds); /* NULL is fine */
    dataset_destroy(NULL);
}

Test(fann, thyroid_test_and_diabetes) {
    dataset_t *ds = s_load_ok(FANN_DIR "thyroid.test", NULL);
    cr_assert_eq(ds->n, 3600);
    s_assert_counts(ds, (size_t[]){77, 176, 3347}, 3);
    dataset_destroy(&ds);
    ds = s_load_ok(FANN_DIR "diabetes.train", NULL);
    cr_assert_eq(ds->n, 384);
    cr_assert_eq(ds->d, 8);
    s_assert_counts(ds, (size_t[]){133, 251}, 2);
    dataset_destroy(&ds);
}

Test(fann, binary_outputs_blank_lines_and_crlf) {
    const char *p =
        s_write("bin.data", "3 2 1\r\n0.5 1\r\n1\r\n\r\n-2 3e-2\r\n-1\r\n7 8\r\n0\r\n\r\n");
    dataset_t *ds = s_load_ok(p, NULL);
    cr_assert_eq(ds->n, 3);
    cr_assert_eq(ds->n_classes, 2);
    cr_assert_eq(ds->y[0], 1);
    cr_assert_eq(ds->y[1], 0);
    cr_assert_eq(ds->y[2], 0);
    cr_assert_eq(ds->x[3], 3e-2f);
    dataset_destroy(&ds);
}

Test(fann, malformed_files_name_file_and_line) {
    s_expect_fail(s_write("trunc.data", "3 2 2\n1 2\n0 1\n3 4\n1 0\n"), NULL,
                  ":5:", "truncated: expected 3 rows, got 2");
    s_expect_fail(s_write("trunc2.data", "2 2 2\n1 2\n0 1\n3 4\n"), NULL, ":4:", "truncated");
    s_expect_fail(s_write("trunc3.data", "2 3 2\n1 2 3\n0 1\n3 4"), NULL,
                  ":4:", "truncated: file ends inside row 2 of 2");
    s_expect_fail(s_write("count.data", "2 2 2\n1 2\n0 1\n3\n1 0\n"), NULL,
                  ":4:", "expected 2 inputs, got 1");
    s_expect_fail(s_write("count2.data", "1 2 2\n1 2\n0 1 0\n"), NULL,
                  ":3:", "expected 2 outputs, got 3");
    s_expect_fail(s_write("nan.data", "1 2 2\n1 abc\n0 1\n"), NULL, ":2:", "'abc'");
    s_expect_fail(s_write("nan2.data", "1 2 2\n1 0.5x\n0 1\n"), NULL, ":2:", "'0.5x'");
    s_expect_fail(s_write("inf.data", "1 2 2\n1 inf\n0 1\n"), NULL, ":2:", "finite");
    s_expect_fail(s_write("hot.data", "1 2 3\n1 2\n1 1 0\n"), NULL, ":3:", "one-hot");
    s_expect_fail(s_write("reg.data", "1 2 2\n1 2\n0.3 0.7\n"), NULL, ":3:", "one-hot");
    s_expect_fail(s_write("bin.data", "1 2 1\n1 2\n0.5\n"), NULL, ":3:", "binary");
    s_expect_fail(s_write("extra.data", "1 2 2\n1 2\n0 1\n5 6\n"), NULL, ":4:", "past the 1 rows");
    s_expect_fail(s_write("empty.data", ""), NULL, ":1:", "empty file");
    s_expect_fail(s_write("blank.data", "  \n\n"), NULL, ":1:", "empty file");
    s_expect_fail(s_write("hdr.data", "3 2\n1 2\n"), NULL, ":1:", "header");
    s_expect_fail(s_write("hdr2.data", "x 2 2\n"), NULL, ":1:", "header");
    s_expect_fail(s_write("hdr3.data", "0 2 2\n"), NULL, ":1:", "zero");
    s_expect_fail(s_write("big.data", "999999999999 2 2\n1 2\n0 1\n"), NULL, ":3:", "truncated");
    s_expect_fail(s_path("absent.data"), NULL, ":", "cannot open");
}

Test(fann, label_out_of_range_with_n_classes) {
    const char *p = s_write("k.data", "2 1 3\n1\n1 0 0\n2\n0 0 1\n");
    data_load_opts_t o = {.n_classes = 2};
    s_expect_fail(p, &o, ":5:", "label 2 out of range [0, 2)");
}

Test(fann, save_load_round_trip_is_exact) {
    dataset_t *ds = s_load_ok(FANN_DIR "thyroid.train", NULL);
    ds->x[0] = 1.0f / 3.0f; /* needs all 9 digits */
    ds->x[1] = -1e-30f;
    cc_err_t err = {0};
    const char *p = s_path("rt.fann");
    cr_assert_eq(dataset_save_fann(ds, p, &err), 0, "%s", err.msg);
    dataset_t *back = s_load_ok(p, NULL);
    s_assert_same(ds, back);
    dataset_destroy(&back);
    dataset_destroy(&ds);
}

Test(fann, save_is_atomic_under_a_failed_fsync) {
    dataset_t *ds = dataset_new(2, 2, 2);
    const char *p = s_path("atomic.fann");
    cc_err_t err = {0};
    fileio_fault_fail_sync_after = 1;
    cr_assert_eq(dataset_save_fann(ds, p, &err), CC_ERR_IO);
    cr_assert(strstr(err.msg, p), "%s", err.msg);
    cr_assert_neq(access(p, F_OK), 0, "no file after a failed save");
    ds->y[1] = 5;
    cr_assert_eq(dataset_save_fann(ds, p, &err), CC_ERR_ARG, "label outside [0, 2) refused");
    dataset_destroy(&ds);
}

/* ---- CSV ------------------------------------------------------------------------------------ */

Test(csv, quoting_names_and_string_labels) {
    const char *p = s_write("q.csv",
                            "\xEF\xBB\xBF\"weight, kg\",\"say \"\"hi\"\"\",outcome\r\n"
                            "1.5, 2 ,\"yes, really\"\r\n"
                            "\"3\",4,no\n"
                            "5,\"6\",\"multi\nline\"\n"
                            "7,8,no\n");
    data_load_opts_t o = {.label_column = "outcome"};
    dataset_t *ds = NULL;
    dataset_csv_info_t info;
    cc_err_t err = {0};
    cr_assert_eq(dataset_load_csv_ex(p, &o, NULL, &ds, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(ds->n, 4);
    cr_assert_eq(ds->d, 2);
    cr_assert_str_eq(ds->feature_names[0], "weight, kg");
    cr_assert_str_eq(ds->feature_names[1], "say \"hi\"");
    cr_assert_str_eq(ds->label_name, "outcome");
    const float want[] = {1.5f, 2, 3, 4, 5, 6, 7, 8};
    for (int i = 0; i < 8; i++) cr_assert_eq(ds->x[i], want[i], "x[%d]", i);
    /* Sorted byte order: "multi\nline" < "no" < "yes, really". */
    cr_assert_eq(ds->n_classes, 3);
    cr_assert_eq(info.n_class_names, 3);
    cr_assert_str_eq(info.class_names[0], "multi\nline");
    cr_assert_str_eq(info.class_names[2], "yes, really");
    const int32_t y[] = {2, 1, 0, 1};
    for (int i = 0; i < 4; i++) cr_assert_eq(ds->y[i], y[i], "y[%d]", i);
    dataset_csv_info_clear(&info);
    dataset_destroy(&ds);
    /* A quoted newline counts as a line: the record after it starts on line 5. */
    s_expect_fail(s_write("q2.csv", "a,b,label\n1,2,0\n3,4,\"x\ny\"\n5,6\n"), NULL,
                  ":5:", "expected 3 columns, got 2");
}

Test(csv, label_column_defaults_and_mapping) {
    dataset_t *ds = s_load_ok(s_write("mid.csv", "a,label,b\n1,1,2\n3,0,4\n"), NULL);
    cr_assert_eq(ds->d, 2);
    cr_assert_eq(ds->x[1], 2.0f);
    cr_assert_eq(ds->y[0], 1);
    cr_assert_str_eq(ds->feature_names[1], "b");
    dataset_destroy(&ds);
    ds = s_load_ok(s_write("last.csv", "a,b,y\n1,2,-1\n3,4,1\n5,6,-1\n"), NULL);
    cr_assert_str_eq(ds->label_name, "y");
    cr_assert_eq(ds->n_classes, 2, "-1/1 mapped to 0/1");
    cr_assert_eq(ds->y[0], 0);
    cr_assert_eq(ds->y[1], 1);
    dataset_destroy(&ds);
    /* Non-negative integers are used as given: class 0 may be empty. */
    ds = s_load_ok(s_write("given.csv", "a,label\n1,2\n3,1\n"), NULL);
    cr_assert_eq(ds->n_classes, 3);
    cr_assert_eq(ds->y[0], 2);
    dataset_destroy(&ds);
}

Test(csv, malformed_files_name_file_line_and_column) {
    s_expect_fail(s_write("cols.csv", "a,b,label\n1,2,0\n1,2\n"), NULL,
                  ":3:", "expected 3 columns, got 2");
    s_expect_fail(s_write("cut.csv", "a,b,label\n1,2,0\n1,2"), NULL, ":3:", "truncated");
    s_expect_fail(s_write("cols2.csv", "a,b,label\n1,2,0,9\n"), NULL,
                  ":2:", "expected 3 columns, got 4");
    s_expect_fail(s_write("num.csv", "a,b,label\n1,2,0\n\n1,x2,1\n"), NULL,
                  ":4:", "column 'b': 'x2' is not a finite number");
    const char *missing[] = {"", "NA", "NaN", "?", "na", " "};
    for (size_t i = 0; i < sizeof missing / sizeof *missing; i++) {
        char text[64], name[32];
        snprintf(text, sizeof text, "a,b,label\n1,2,0\n%s,2,1\n", missing[i]);
        snprintf(name, sizeof name, "miss%zu.csv", i);
        s_expect_fail(s_write(name, text), NULL, ":3:", "column 'a': missing value");
    }
    s_expect_fail(s_write("misslab.csv", "a,label\n1,\n"), NULL, ":2:", "column 'label'");
    data_load_opts_t k2 = {.n_classes = 2};
    s_expect_fail(s_write("range.csv", "a,label\n1,0\n2,1\n3,5\n"), &k2,
                  ":4:", "label 5 out of range [0, 2)");
    s_expect_fail(s_write("frac.csv", "a,label\n1,0\n2,0.5\n"), NULL, ":3:", "'0.5'");
    s_expect_fail(s_write("hdr.csv", "a,b,label\n"), NULL, ":2:", "no data rows");
    s_expect_fail(s_write("hdr2.csv", "a,b,label\n\n  \n"), NULL, ":2:", "no data rows");
    s_expect_fail(s_write("empty.csv", ""), NULL, ":1:", "empty file");
    s_expect_fail(s_write("one.csv", "label\n1\n"), NULL, ":1:", "need a label");
    s_expect_fail(s_write("dup.csv", "a,a,label\n1,2,0\n"), NULL,
                  ":1:", "duplicate column name 'a'");
    s_expect_fail(s_write("quote.csv", "a,label\n1,0\n\"2,1\n"), NULL, ":3:", "unterminated");
    s_expect_fail(s_write("after.csv", "a,label\n\"2\"x,1\n"), NULL, ":2:", "closing quote");
    data_load_opts_t lc = {.label_column = "outcome"};
    s_expect_fail(s_write("nolab.csv", "a,label\n1,0\n"), &lc, ":1:", "'outcome'");
}

Test(csv, imputation_mean_and_zero) {
    const char *p = s_write("imp.csv", "a,b,label\n1,NA,0\n,4,1\n3,?,0\n5,8,1\n");
    data_load_opts_t o = {.missing = DATA_MISSING_MEAN};
    dataset_t *ds = NULL;
    dataset_csv_info_t info;
    cc_err_t err = {0};
    cr_assert_eq(dataset_load_csv_ex(p, &o, NULL, &ds, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(info.missing[0], 1);
    cr_assert_eq(info.missing[1], 2);
    cr_assert_eq(ds->x[2], 3.0f, "mean of 1, 3, 5");
    cr_assert_eq(ds->x[1], 6.0f, "mean of 4, 8");
    cr_assert_eq(ds->x[5], 6.0f);
    cr_assert_eq(info.n_class_names, 0, "integer labels are not mapped");
    dataset_csv_info_clear(&info);
    dataset_destroy(&ds);
    o.missing = DATA_MISSING_ZERO;
    ds = s_load_ok(p, &o);
    cr_assert_eq(ds->x[1], 0.0f);
    cr_assert_eq(ds->x[2], 0.0f);
    cr_assert_eq(ds->x[6], 5.0f);
    dataset_destroy(&ds);
}

Test(csv, group_column_is_not_a_feature) {
    const char *p = s_write("g.csv", "site,a,label\n10,1,0\n2,2,1\nB,3,0\n2,4,1\n");
    dataset_t *ds = NULL;
    dataset_csv_info_t info;
    cc_err_t err = {0};
    cr_assert_eq(dataset_load_csv_ex(p, NULL, "site", &ds, &info, &err), 0, "%s", err.msg);
    cr_assert_eq(ds->d, 1);
    cr_assert_str_eq(ds->feature_names[0], "a");
    cr_assert_eq(info.n_groups, 3);
    /* integers numerically, then names */
    cr_assert_str_eq(info.group_names[0], "2");
    cr_assert_str_eq(info.group_names[1], "10");
    cr_assert_str_eq(info.group_names[2], "B");
    const int32_t g[] = {1, 0, 2, 0};
    for (int i = 0; i < 4; i++) cr_assert_eq(info.group_of_row[i], g[i]);
    dataset_csv_info_clear(&info);
    dataset_destroy(&ds);
    cr_assert_neq(dataset_load_csv_ex(p, NULL, "hospital", &ds, NULL, &err), 0);
    cr_assert(strstr(err.msg, "'hospital'"), "%s", err.msg);
}

Test(csv, save_load_round_trip_is_exact) {
    dataset_t *ds = s_load_ok(FANN_DIR "diabetes.train", NULL);
    const char *names[] = {"pregnancies", "glucose", "a, \"b\"", " pad ",
                           "line\nbreak", "insulin", "bmi",      "age"};
    ds->feature_names = cc_xcalloc(ds->d, sizeof *ds->feature_names);
    for (size_t j = 0; j < ds->d; j++) ds->feature_names[j] = cc_xstrdup(names[j]);
    ds->label_name = cc_xstrdup("diabetic");
    ds->x[0] = 0.1f + 0.2f;
    cc_err_t err = {0};
    const char *p = s_path("rt.csv");
    cr_assert_eq(dataset_save_csv(ds, p, &err), 0, "%s", err.msg);
    data_load_opts_t o = {.label_column = "diabetic"};
    dataset_t *back = s_load_ok(p, &o);
    s_assert_same(ds, back);
    cr_assert_str_eq(back->feature_names[2], "a, \"b\"");
    cr_assert_str_eq(back->feature_names[3], " pad ");
    cr_assert_str_eq(back->feature_names[4], "line\nbreak");
    dataset_destroy(&back);
    dataset_destroy(&ds);
}

/* ---- IDX -------------------------------------------------------------------------------------- */

Test(idx, fashion_mnist_t10k) {
    data_load_opts_t o = {.labels_path = FMNIST_DIR "t10k-labels-idx1-ubyte.gz"};
    dataset_t *ds = s_load_ok(FMNIST_DIR "t10k-images-idx3-ubyte.gz", &o);
    cr_assert_eq(ds->n, 10000);
    cr_assert_eq(ds->d, 784);
    cr_assert_eq(ds->channels, 1);
    cr_assert_eq(ds->height, 28);
    cr_assert_eq(ds->width, 28);
    size_t want[10];
    for (int c = 0; c < 10; c++) want[c] = 1000;
    s_assert_counts(ds, want, 10);
    /* Independent read of the first image and label through zlib. */
    gzFile g = gzopen(FMNIST_DIR "t10k-images-idx3-ubyte.gz", "rb");
    unsigned char raw[16 + 784];
    cr_assert_eq(gzread(g, raw, sizeof raw), (int)sizeof raw);
    gzclose(g);
    for (int j = 0; j < 784; j++) cr_assert_eq(ds->x[j], raw[16 + j] / 255.0f, "pixel %d", j);
    g = gzopen(FMNIST_DIR "t10k-labels-idx1-ubyte.gz", "rb");
    cr_assert_eq(gzread(g, raw, 9), 9);
    gzclose(g);
    cr_assert_eq(ds->y[0], raw[8]);
    dataset_destroy(&ds);
    /* Without labels_path, the labels file is found by its name. */
    ds = s_load_ok(FMNIST_DIR "t10k-images-idx3-ubyte.gz", NULL);
    cr_assert_eq(ds->n, 10000);
    dataset_destroy(&ds);
}

Test(idx, fashion_mnist_train_loads_fast) {
    double t0 = cc_now();
    dataset_t *ds = s_load_ok(FMNIST_DIR "train-images-idx3-ubyte.gz", NULL);
    double dt = cc_now() - t0;
    cr_log_info("60000 gzipped images in %.3f s", dt);
    cr_assert_eq(ds->n, 60000);
    cr_assert_lt(dt, 10.0, "%.3f s (under a second without sanitizers)", dt);
    dataset_destroy(&ds);
}

static dataset_t *s_tiny_images(void) {
    dataset_t *ds = dataset_new(5, 6, 4);
    ds->channels = 1, ds->height = 2, ds->width = 3;
    for (size_t i = 0; i < 30; i++) ds->x[i] = (float)((i * 37) % 256) / 255.0f;
    for (size_t i = 0; i < 5; i++) ds->y[i] = (int32_t)(i % 4);
    return ds;
}

Test(idx, save_load_round_trip_is_exact_plain_and_gzip) {
    dataset_t *ds = s_tiny_images();
    const char *names[][2] = {{"a-images-idx3-ubyte", "a-labels-idx1-ubyte"},
                              {"b-images-idx3-ubyte.gz", "b-labels-idx1-ubyte.gz"}};
    for (int k = 0; k < 2; k++) {
        cc_err_t err = {0};
        const char *im = s_path(names[k][0]), *lb = s_path(names[k][1]);
        cr_assert_eq(dataset_save_idx(ds, im, lb, &err), 0, "%s", err.msg);
        FILE *fp = fopen(im, "rb");
        unsigned char magic[2];
        cr_assert_eq(fread(magic, 1, 2, fp), 2);
        fclose(fp);
        cr_assert_eq(magic[0] == 0x1f && magic[1] == 0x8b, k == 1, "gzip only for .gz");
        dataset_t *back = NULL;
        cr_assert_eq(dataset_load_idx(im, lb, &back, &err), 0, "%s", err.msg);
        back->n_classes = ds->n_classes;
        s_assert_same(ds, back);
        cr_assert_eq(back->height, 2);
        cr_assert_eq(back->width, 3);
        dataset_destroy(&back);
    }
    ds->x[4] = 1.5f;
    cc_err_t err = {0};
    cr_assert_eq(dataset_save_idx(ds, s_path("c-images-idx3-ubyte"), s_path("c-labels"), &err),
                 CC_ERR_ARG);
    cr_assert(strstr(err.msg, "[0, 1]"), "%s", err.msg);
    dataset_destroy(&ds);
}

/* Writes an IDX file from raw bytes. */
static const char *s_write_bytes(const char *name, const void *buf, size_t n) {
    const char *p = s_path(name);
    FILE *fp = fopen(p, "wb");
    fwrite(buf, 1, n, fp);
    fclose(fp);
    return p;
}

static int s_load_idx_err(const char *im, const char *lb, cc_err_t *err) {
    dataset_t *ds = (dataset_t *)0x1;
    int rc = dataset_load_idx(im, lb, &ds, err);
    cr_assert_null(ds);
    return rc;
}

Test(idx, truncated_mismatched_and_bad_files) {
    dataset_t *ds = s_tiny_images();
    const char *im = s_path("t-images-idx3-ubyte"), *lb = s_path("t-labels-idx1-ubyte");
    cc_err_t err = {0};
    cr_assert_eq(dataset_save_idx(ds, im, lb, &err), 0, "%s", err.msg);
    dataset_destroy(&ds);
    unsigned char buf[64];
    FILE *fp = fopen(im, "rb");
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    cr_assert_eq(n, 16 + 30);
    /* Cut 3 bytes off the pixels. */
    const char *cut = s_write_bytes("cut-images-idx3-ubyte", buf, n - 3);
    cr_assert_eq(s_load_idx_err(cut, lb, &err), CC_ERR_TRUNCATED);
    cr_assert(strstr(err.msg, cut), "%s", err.msg);
    cr_assert(strstr(err.msg, "truncated: expected 46 bytes, got 43"), "%s", err.msg);
    /* Cut inside the header; an empty file. */
    cr_assert_eq(s_load_idx_err(s_write_bytes("h-images-idx3-ubyte", buf, 10), lb, &err),
                 CC_ERR_TRUNCATED);
    cr_assert(strstr(err.msg, "expected 16 bytes, got 10"), "%s", err.msg);
    cr_assert_eq(s_load_idx_err(s_write_bytes("e-images-idx3-ubyte", buf, 0), lb, &err),
                 CC_ERR_TRUNCATED);
    /* Trailing garbage and a bad magic are format errors, not truncation. */
    unsigned char more[64];
    memcpy(more, buf, n);
    more[n] = 7;
    cr_assert_eq(s_load_idx_err(s_write_bytes("x-images-idx3-ubyte", more, n + 1), lb, &err),
                 CC_ERR_FORMAT);
    cr_assert(strstr(err.msg, "past the end"), "%s", err.msg);
    more[2] = 0x0d;
    cr_assert_eq(s_load_idx_err(s_write_bytes("m-images-idx3-ubyte", more, n), lb, &err),
                 CC_ERR_FORMAT);
    cr_assert(strstr(err.msg, "magic"), "%s", err.msg);
    /* Images and labels swapped. */
    cr_assert_eq(s_load_idx_err(lb, im, &err), CC_ERR_FORMAT);
    /* Four labels for five images. */
    unsigned char lab[] = {0, 0, 8, 1, 0, 0, 0, 4, 0, 1, 2, 3};
    const char *short_lb = s_write_bytes("four-labels-idx1-ubyte", lab, sizeof lab);
    cr_assert_eq(s_load_idx_err(im, short_lb, &err), CC_ERR_FORMAT);
    cr_assert(strstr(err.msg, "4 labels for 5 images"), "%s", err.msg);
    cr_assert(strstr(err.msg, short_lb), "%s", err.msg);
    /* Label out of the caller's range, through dataset_load. */
    data_load_opts_t o = {.labels_path = lb, .n_classes = 3};
    dataset_t *none = NULL;
    cr_assert_eq(dataset_load(im, &o, &none, &err), CC_ERR_FORMAT);
    cr_assert(strstr(err.msg, lb) && strstr(err.msg, "byte 11: label 3 out of range [0, 3)"), "%s",
              err.msg);
    cr_assert_eq(s_load_idx_err(s_path("none-images-idx3-ubyte"), lb, &err), CC_ERR_IO);
}

Test(idx, truncated_gzip_is_reported_not_crashed) {
    const char *src = FMNIST_DIR "t10k-labels-idx1-ubyte.gz";
    FILE *fp = fopen(src, "rb");
    unsigned char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    const char *cut = s_write_bytes("cut-labels-idx1-ubyte.gz", buf, n / 2);
    dataset_t *ds = s_load_ok(FMNIST_DIR "t10k-images-idx3-ubyte.gz", NULL);
    dataset_destroy(&ds);
    cc_err_t err = {0};
    int rc = s_load_idx_err(FMNIST_DIR "t10k-images-idx3-ubyte.gz", cut, &err);
    cr_assert(rc == CC_ERR_TRUNCATED || rc == CC_ERR_CORRUPT, "rc %d: %s", rc, err.msg);
    cr_assert(strstr(err.msg, cut), "%s", err.msg);
    cr_log_info("cut gzip: %s", err.msg);
}

/* ---- dispatch ---------------------------------------------------------------------------------- */

Test(split, format_names_and_dispatch) {
    cr_assert_eq(dataset_format_from_path("a/b.CSV", NULL), DATA_FORMAT_CSV);
    cr_assert_eq(dataset_format_from_path("x-images-idx3-ubyte.gz", NULL), DATA_FORMAT_IDX);
    cr_assert_eq(dataset_format_from_path("imgs.bin", "labels.bin"), DATA_FORMAT_IDX);
    cr_assert_eq(dataset_format_from_path("idx3/thyroid.train", NULL), DATA_FORMAT_FANN);
    char *l = dataset_idx_labels_path("d/idx3/train-images-idx3-ubyte.gz");
    cr_assert_str_eq(l, "d/idx3/train-labels-idx1-ubyte.gz");
    free(l);
    cr_assert_null(dataset_idx_labels_path("thyroid.train"));
    data_format_t f;
    cr_assert_eq(dataset_format_parse("idx", &f), 0);
    cr_assert_eq(f, DATA_FORMAT_IDX);
    cr_assert_lt(dataset_format_parse("parquet", &f), 0);
    /* dataset_save picks the writer by name, and an explicit format wins over it. */
    dataset_t *ds = s_tiny_images();
    cc_err_t err = {0};
    cr_assert_eq(dataset_save(ds, s_path("s.csv"), DATA_FORMAT_AUTO, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(dataset_save(ds, s_path("s.txt"), DATA_FORMAT_CSV, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(dataset_save(ds, s_path("s-images-idx3-ubyte"), DATA_FORMAT_AUTO, NULL, &err), 0);
    data_load_opts_t o = {.format = DATA_FORMAT_CSV};
    dataset_t *a = s_load_ok(s_path("s.csv"), NULL), *b = s_load_ok(s_path("s.txt"), &o);
    dataset_t *c = s_load_ok(s_path("s-images-idx3-ubyte"), NULL);
    s_assert_same(a, b);
    c->n_classes = a->n_classes;
    s_assert_same(a, c);
    dataset_destroy(&a);
    dataset_destroy(&b);
    dataset_destroy(&c);
    dataset_destroy(&ds);
}

/* ---- subsets and stratified split -------------------------------------------------------------- */

Test(split, subset_copies_rows_names_and_shape) {
    dataset_t *ds = s_tiny_images();
    ds->feature_names = cc_xcalloc(6, sizeof *ds->feature_names);
    ds->feature_names[1] = cc_xstrdup("p1");
    uint32_t idx[] = {4, 0, 4};
    dataset_t *s = dataset_subset(ds, idx, 3);
    cr_assert_eq(s->n, 3);
    cr_assert_eq(s->height, 2);
    cr_assert_str_eq(s->feature_names[1], "p1");
    cr_assert_null(s->feature_names[0]);
    cr_assert_eq(memcmp(s->x, ds->x + 24, 6 * sizeof(float)), 0);
    cr_assert_eq(s->y[1], ds->y[0]);
    dataset_destroy(&s);
    idx[1] = 5;
    cr_assert_null(dataset_subset(ds, idx, 3), "out-of-range index refused");
    dataset_destroy(&ds);
}

/* Sorts rows (label, then features) so row multisets can be compared. */
static const dataset_t *s_sort_ds;
static int s_cmp_rows(const void *a, const void *b) {
    uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    if (s_sort_ds->y[i] != s_sort_ds->y[j]) return s_sort_ds->y[i] < s_sort_ds->y[j] ? -1 : 1;
    return memcmp(s_sort_ds->x + i * s_sort_ds->d, s_sort_ds->x + j * s_sort_ds->d,
                  s_sort_ds->d * sizeof(float));
}

static dataset_t *s_sorted(const dataset_t *ds) {
    uint32_t *idx = malloc(ds->n * sizeof *idx);
    for (size_t i = 0; i < ds->n; i++) idx[i] = (uint32_t)i;
    s_sort_ds = ds;
    qsort(idx, ds->n, sizeof *idx, s_cmp_rows);
    dataset_t *s = dataset_subset(ds, idx, ds->n);
    free(idx);
    return s;
}

/* parts[0..k) concatenated equal ds as a multiset of rows. */
static void s_assert_union(const dataset_t *ds, dataset_t **parts, int k) {
    size_t n = 0;
    for (int p = 0; p < k; p++) n += parts[p]->n;
    cr_assert_eq(n, ds->n, "every row in exactly one part");
    dataset_t *all = dataset_new(n, ds->d, ds->n_classes);
    size_t at = 0;
    for (int p = 0; p < k; p++) {
        memcpy(all->x + at * ds->d, parts[p]->x, parts[p]->n * ds->d * sizeof(float));
        memcpy(all->y + at, parts[p]->y, parts[p]->n * sizeof(int32_t));
        at += parts[p]->n;
    }
    dataset_t *a = s_sorted(ds), *b = s_sorted(all);
    s_assert_same(a, b);
    dataset_destroy(&a);
    dataset_destroy(&b);
    dataset_destroy(&all);
}

Test(split, stratified_keeps_proportions_and_is_seeded) {
    dataset_t *ds = s_load_ok(FANN_DIR "thyroid.train", NULL);
    dataset_t *tr, *va, *tr2, *va2, *tr3, *va3;
    cc_err_t err = {0};
    cr_assert_eq(dataset_split_stratified(ds, 0.2, 7, &tr, &va, &err), 0, "%s", err.msg);
    size_t all[3], v[3], t[3];
    dataset_class_counts(ds, all);
    dataset_class_counts(va, v);
    dataset_class_counts(tr, t);
    for (int c = 0; c < 3; c++) {
        double want = 0.2 * (double)all[c];
        cr_assert_leq(fabs((double)v[c] - want), 1.0, "class %d: %zu in val, want %.1f", c, v[c],
                      want);
        cr_assert_eq(v[c] + t[c], all[c]);
    }
    s_assert_union(ds, (dataset_t *[]){tr, va}, 2);
    cr_assert_eq(dataset_split_stratified(ds, 0.2, 7, &tr2, &va2, &err), 0);
    s_assert_same(va, va2);
    s_assert_same(tr, tr2);
    cr_assert_eq(dataset_split_stratified(ds, 0.2, 8, &tr3, &va3, &err), 0);
    cr_assert_neq(memcmp(va->x, va3->x, va->n * va->d * sizeof(float)), 0, "seed matters");
    dataset_t *bad1, *bad2;
    cr_assert_eq(dataset_split_stratified(ds, 1.5, 7, &bad1, &bad2, &err), CC_ERR_ARG);
    for (dataset_t **p = (dataset_t *[]){tr, va, tr2, va2, tr3, va3, ds}, **e = p + 7; p < e; p++)
        dataset_destroy(p);
}

Test(split, in_place_split_equals_the_copying_split) {
    dataset_t *ds = s_load_ok(FANN_DIR "thyroid.train", NULL);
    dataset_t *tr, *va, *va_inplace;
    cc_err_t err = {0};
    cr_assert_eq(dataset_split_stratified(ds, 0.1, 3, &tr, &va, &err), 0, "%s", err.msg);
    cr_assert_eq(dataset_split_off_stratified(ds, 0.1, 3, &va_inplace, &err), 0, "%s", err.msg);
    s_assert_same(ds, tr);
    s_assert_same(va_inplace, va);
    for (dataset_t **p = (dataset_t *[]){tr, va, va_inplace, ds}, **e = p + 4; p < e; p++)
        dataset_destroy(p);
}

Test(split, stratified_gives_small_classes_one_val_row) {
    dataset_t *ds = dataset_new(12, 1, 2);
    for (size_t i = 0; i < 12; i++) ds->x[i] = (float)i, ds->y[i] = i < 2;
    dataset_t *tr, *va;
    cc_err_t err = {0};
    cr_assert_eq(dataset_split_stratified(ds, 0.1, 1, &tr, &va, &err), 0);
    size_t v[2];
    dataset_class_counts(va, v);
    cr_assert_eq(v[1], 1, "class of 2 rows gives one to val");
    cr_assert_eq(v[0], 1, "round(0.1 * 10)");
    for (size_t i = 1; i < tr->n; i++) cr_assert_lt(tr->x[i - 1], tr->x[i], "original order kept");
    dataset_destroy(&tr);
    dataset_destroy(&va);
    dataset_destroy(&ds);
}

/* ---- partitions ---------------------------------------------------------------------------------- */

/* 10 classes x 100 rows; x[0] is the row's original index, so rows are distinct. */
static dataset_t *s_ten_classes(void) {
    dataset_t *ds = dataset_new(1000, 2, 10);
    for (size_t i = 0; i < 1000; i++)
        ds->x[2 * i] = (float)i, ds->x[2 * i + 1] = 1, ds->y[i] = (int32_t)(i % 10);
    return ds;
}

/* Mean over shards of the largest class share. */
static double s_mean_max_share(const dataset_t *ds, const int32_t *shard, int k) {
    double sum = 0;
    for (int j = 0; j < k; j++) {
        dataset_t *s = dataset_shard(ds, shard, j);
        size_t c[10], best = 0;
        dataset_class_counts(s, c);
        for (int q = 0; q < 10; q++) best = c[q] > best ? c[q] : best;
        sum += (double)best / (double)s->n;
        dataset_destroy(&s);
    }
    return sum / k;
}

static void s_partition_union(const dataset_t *ds, const int32_t *shard, int k) {
    dataset_t *parts[64];
    for (int j = 0; j < k; j++) parts[j] = dataset_shard(ds, shard, j);
    s_assert_union(ds, parts, k);
    for (int j = 0; j < k; j++) dataset_destroy(&parts[j]);
}

Test(partition, dirichlet_small_alpha_is_skewed_and_covers_every_row) {
    dataset_t *ds = s_ten_classes();
    int32_t shard[1000], again[1000];
    cc_err_t err = {0};
    data_partition_opts_t o = {.scheme = DATA_PARTITION_DIRICHLET,
                               .n_clients = 5,
                               .alpha = 0.1,
                               .min_per_client = 10,
                               .seed = 3};
    cr_assert_eq(dataset_partition(ds, &o, shard, &err), 0, "%s", err.msg);
    for (int i = 0; i < 1000; i++) cr_assert(shard[i] >= 0 && shard[i] < 5);
    s_partition_union(ds, shard, 5);
    double skew = s_mean_max_share(ds, shard, 5);
    cr_assert_eq(dataset_partition(ds, &o, again, &err), 0);
    cr_assert_eq(memcmp(shard, again, sizeof shard), 0, "seed-deterministic");
    o.scheme = DATA_PARTITION_IID;
    cr_assert_eq(dataset_partition(ds, &o, shard, &err), 0);
    double flat = s_mean_max_share(ds, shard, 5);
    cr_log_info("mean largest class share: dirichlet(0.1) %.2f, iid %.2f", skew, flat);
    cr_assert_gt(skew, 0.35, "alpha 0.1 concentrates classes (%.2f)", skew);
    cr_assert_lt(flat, 0.2, "iid stays near 0.1 (%.2f)", flat);
    o.scheme = DATA_PARTITION_DIRICHLET;
    o.alpha = 1000;
    cr_assert_eq(dataset_partition(ds, &o, shard, &err), 0);
    cr_assert_lt(s_mean_max_share(ds, shard, 5), 0.2, "large alpha is nearly iid");
    dataset_destroy(&ds);
}

Test(partition, iid_and_quantity_sizes) {
    dataset_t *ds = s_ten_classes();
    int32_t shard[1000];
    size_t sz[7];
    cc_err_t err = {0};
    data_partition_opts_t o = {.scheme = DATA_PARTITION_IID, .n_clients = 7, .seed = 1};
    cr_assert_eq(dataset_partition(ds, &o, shard, &err), 0);
    memset(sz, 0, sizeof sz);
    for (int i = 0; i < 1000; i++) sz[shard[i]]++;
    for (int j = 0; j < 7; j++) cr_assert(sz[j] == 142 || sz[j] == 143, "iid size %zu", sz[j]);
    s_partition_union(ds, shard, 7);
    o.scheme = DATA_PARTITION_QUANTITY;
    o.alpha = 0.5;
    o.min_per_client = 20;
    cr_assert_eq(dataset_partition(ds, &o, shard, &err), 0, "%s", err.msg);
    memset(sz, 0, sizeof sz);
    for (int i = 0; i < 1000; i++) sz[shard[i]]++;
    size_t lo = 1000, hi = 0;
    for (int j = 0; j < 7; j++) lo = sz[j] < lo ? sz[j] : lo, hi = sz[j] > hi ? sz[j] : hi;
    cr_assert_geq(lo, 20);
    cr_assert_gt(hi, 2 * lo, "sizes are skewed: %zu .. %zu", lo, hi);
    s_partition_union(ds, shard, 7);
    dataset_destroy(&ds);
}

Test(partition, impossible_requests_fail_clearly) {
    dataset_t *ds = s_load_ok(FANN_DIR "thyroid.train", NULL);
    int32_t *shard = malloc(ds->n * sizeof *shard);
    cc_err_t err = {0};
    /* 3 classes over 10 clients at alpha 0.01: most clients get nothing. */
    data_partition_opts_t o = {.scheme = DATA_PARTITION_DIRICHLET,
                               .n_clients = 10,
                               .alpha = 0.01,
                               .min_per_client = 10,
                               .max_attempts = 50};
    cr_assert_eq(dataset_partition(ds, &o, shard, &err), CC_ERR_ARG);
    cr_assert(strstr(err.msg, "raise alpha"), "%s", err.msg);
    o.n_clients = 400;
    cr_assert_eq(dataset_partition(ds, &o, shard, &err), CC_ERR_ARG);
    cr_assert(strstr(err.msg, "3600 rows cannot give 400 clients 10 rows"), "%s", err.msg);
    o.n_clients = 2, o.alpha = 0;
    cr_assert_eq(dataset_partition(ds, &o, shard, &err), CC_ERR_ARG);
    free(shard);
    dataset_destroy(&ds);
}

/* ---- statistics and standardisation ------------------------------------------------------------ */

Test(stats, pooled_stats_equal_a_fit_on_the_whole) {
    dataset_t *ds = s_load_ok(FANN_DIR "thyroid.train", NULL);
    uint32_t *a = malloc(ds->n * sizeof *a), *b = malloc(ds->n * sizeof *b);
    size_t na = 0, nb = 0;
    for (size_t i = 0; i < ds->n; i++) {
        if (i % 3 == 0)
            a[na++] = (uint32_t)i;
        else
            b[nb++] = (uint32_t)i;
    }
    dataset_t *da = dataset_subset(ds, a, na), *db = dataset_subset(ds, b, nb);
    feature_stats_t *sa = feature_stats_new(ds->d), *sb = feature_stats_new(ds->d);
    feature_stats_add(sa, da);
    feature_stats_add(sb, db);
    feature_stats_merge(sa, sb);
    standardizer_t *pooled = standardizer_from_stats(sa), *whole = standardizer_fit(ds);
    double worst = 0;
    for (size_t j = 0; j < ds->d; j++) {
        worst = fmax(worst, fabs(pooled->mean[j] - whole->mean[j]));
        worst = fmax(worst, fabs(pooled->std[j] - whole->std[j]));
    }
    cr_log_info("pooled vs whole: largest difference %.3g (tolerance 1e-5)", worst);
    cr_assert_leq(worst, 1e-5);
    /* Independent two-pass mean and (population) deviation in double. */
    for (size_t j = 0; j < ds->d; j++) {
        double m = 0, v = 0;
        for (size_t i = 0; i < ds->n; i++) m += ds->x[i * ds->d + j];
        m /= (double)ds->n;
        for (size_t i = 0; i < ds->n; i++) v += pow(ds->x[i * ds->d + j] - m, 2);
        double sd = fmax(sqrt(v / (double)ds->n), 1e-6);
        cr_assert_float_eq(whole->mean[j], m, 1e-6, "mean[%zu]", j);
        cr_assert_float_eq(whole->std[j], sd, 1e-5 * fmax(1.0, sd), "std[%zu]", j);
    }
    for (dataset_t **p = (dataset_t *[]){ds, da, db}, **e = p + 3; p < e; p++) dataset_destroy(p);
    feature_stats_destroy(&sa);
    feature_stats_destroy(&sb);
    standardizer_destroy(&pooled);
    standardizer_destroy(&whole);
    cr_assert_null(whole);
    free(a);
    free(b);
}

Test(stats, apply_centres_scales_and_floors_constant_columns) {
    dataset_t *ds = dataset_new(4, 2, 1);
    const float x[] = {1, 5, 2, 5, 3, 5, 4, 5};
    memcpy(ds->x, x, sizeof x);
    standardizer_t *st = standardizer_fit(ds);
    cr_assert_float_eq(st->mean[0], 2.5f, 1e-6);
    cr_assert_float_eq(st->std[0], sqrtf(1.25f), 1e-6);
    cr_assert_eq(st->std[1], 1e-6f, "constant column floored");
    standardizer_apply(st, ds);
    double m = 0, v = 0;
    for (int i = 0; i < 4; i++) m += ds->x[2 * i], v += ds->x[2 * i] * ds->x[2 * i];
    cr_assert_float_eq(m / 4, 0.0, 1e-6);
    cr_assert_float_eq(v / 4, 1.0, 1e-5);
    for (int i = 0; i < 4; i++) cr_assert_eq(ds->x[2 * i + 1], 0.0f, "constant maps to 0");
    standardizer_destroy(&st);
    st = standardizer_new(2);
    cr_assert_eq(st->std[1], 1.0f, "new is the identity");
    standardizer_destroy(&st);
    feature_stats_t *empty = feature_stats_new(2);
    st = standardizer_from_stats(empty);
    cr_assert_eq(st->mean[0], 0.0f);
    cr_assert_eq(st->std[0], 1.0f, "no data: identity");
    standardizer_destroy(&st);
    feature_stats_destroy(&empty);
    dataset_destroy(&ds);
}
