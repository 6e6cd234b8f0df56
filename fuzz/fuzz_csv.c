/* fuzz_csv.c — libFuzzer target for the CSV loader (common/dataset.h:
 * dataset_load_csv_ex, which dataset_load_csv calls with no group column).
 *
 * Input: u8 options | the file. The options byte picks
 *   bits 0-1  opts.missing: error, mean, zero (3: error)
 *   bits 2-3  opts.label_column: NULL (the "label" column, else the last), "label", "y", "class"
 *   bits 4-5  group column: none, "site", "group", "label" (the label column: an error)
 *   bits 6-7  opts.n_classes: 0 (from the data), 2, 3, 10
 * On success the loader's invariants are checked (dataset.h): every value finite (after
 * imputation), every label in [0, n_classes), names for mapped labels and groups, every
 * row's group in range, per-column missing counts no larger than the row count. No crash,
 * hang or leak on any input. */
#include "fuzz_common.h"

#include <math.h>

#include "dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void s_check(const dataset_t *ds, const dataset_csv_info_t *info, int n_classes) {
    if (!ds->x || !ds->y || ds->n == 0 || ds->d == 0 || ds->n_classes < 1) abort();
    if (n_classes > 0 && ds->n_classes != n_classes) abort();
    for (size_t i = 0; i < ds->n * ds->d; i++)
        if (!isfinite(ds->x[i])) abort();
    for (size_t i = 0; i < ds->n; i++)
        if (ds->y[i] < 0 || ds->y[i] >= ds->n_classes) abort();
    if (info->n_class_names > 0) {
        if (info->n_class_names > ds->n_classes || !info->class_names) abort();
        for (int c = 0; c < info->n_class_names; c++)
            if (!info->class_names[c]) abort();
    }
    if (info->group_of_row) {
        if (info->n_groups < 1 || !info->group_names) abort();
        for (size_t i = 0; i < ds->n; i++)
            if (info->group_of_row[i] < 0 || info->group_of_row[i] >= info->n_groups) abort();
    }
    for (size_t j = 0; j < ds->d && info->missing; j++)
        if (info->missing[j] > ds->n) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *labels[] = {NULL, "label", "y", "class"};
    static const char *groups[] = {NULL, "site", "group", "label"};
    static const int classes[] = {0, 2, 3, 10};
    fuzz_reader_t r = {data, size};
    unsigned o = fuzz_u8(&r);
    data_load_opts_t opts = {.format = DATA_FORMAT_CSV,
                             .missing = (o & 3) == 3 ? DATA_MISSING_ERROR : (data_missing_t)(o & 3),
                             .label_column = labels[(o >> 2) & 3],
                             .n_classes = classes[(o >> 6) & 3]};
    const char *path = fuzz_memfile(0, r.p, r.left);
    dataset_t *ds = NULL;
    dataset_csv_info_t info;
    cc_err_t err = {0};
    int rc = dataset_load_csv_ex(path, &opts, groups[(o >> 4) & 3], &ds, &info, &err);
    fuzz_report("dataset_load_csv_ex", rc, err.msg);
    if (rc == 0) {
        s_check(ds, &info, opts.n_classes);
        dataset_csv_info_clear(&info);
        dataset_destroy(&ds);
    } else if (ds || info.class_names || info.group_names || info.missing || info.group_of_row) {
        abort(); /* on failure nothing is handed out */
    }
    return 0;
}
