/* fuzz_fann.c — libFuzzer target for dataset_load_fann (common/dataset.h): a FANN training
 * file from a hospital's disk.
 *
 * Input: the whole file. On success the loader's invariants (dataset.h) are checked: every
 * value finite, every label in [0, n_classes), the shape consistent. No crash, hang or
 * leak on any input. */
#include "fuzz_common.h"

#include <math.h>

#include "dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The invariants every loader promises (abort: libFuzzer reports it as a crash). */
static void s_check(const dataset_t *ds) {
    if (!ds->x || !ds->y || ds->n == 0 || ds->d == 0 || ds->n_classes < 1) abort();
    for (size_t i = 0; i < ds->n * ds->d; i++)
        if (!isfinite(ds->x[i])) abort();
    for (size_t i = 0; i < ds->n; i++)
        if (ds->y[i] < 0 || ds->y[i] >= ds->n_classes) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dataset_t *ds = NULL;
    cc_err_t err = {0};
    int rc = dataset_load_fann(fuzz_memfile(0, data, size), &ds, &err);
    fuzz_report("dataset_load_fann", rc, err.msg);
    if (rc == 0) {
        s_check(ds);
        dataset_destroy(&ds);
    } else if (ds) {
        abort(); /* on failure *out is NULL */
    }
    return 0;
}
