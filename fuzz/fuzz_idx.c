/* fuzz_idx.c — libFuzzer target for dataset_load_idx (common/dataset.h): an IDX images
 * file (idx3 ubyte) and its labels file (idx1 ubyte), each plain or gzipped.
 *
 * Input: u8 flags | u32 images length (little-endian) | images bytes | labels bytes (the
 * rest). Flags bit 0 / bit 1: the harness gzips the images / the labels before writing
 * them (so mutations of the plain bytes also run through zlib's gzread path; the fuzzer
 * may of course also hand over gzip bytes itself). On success the loader's invariants are
 * checked: pixels in [0, 1], labels in [0, n_classes), shape = rows x cols, one channel.
 * No crash, hang or leak on any input. */
#include "fuzz_common.h"

#include <math.h>
#include <zlib.h>

#include "dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* gzip of p[0, n) in a new buffer (*out_len bytes). */
static uint8_t *s_gzip(const uint8_t *p, size_t n, size_t *out_len) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    size_t cap = deflateBound(&z, (uLong)n) + 32;
    uint8_t *out = malloc(cap);
    if (!out) abort();
    z.next_in = (Bytef *)p, z.avail_in = (uInt)n;
    z.next_out = out, z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) abort();
    *out_len = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

static const char *s_put(int slot, const uint8_t *p, size_t n, int gzip) {
    if (!gzip) return fuzz_memfile(slot, p, n);
    size_t len;
    uint8_t *z = s_gzip(p, n, &len);
    const char *path = fuzz_memfile(slot, z, len);
    free(z);
    return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_reader_t r = {data, size};
    unsigned flags = fuzz_u8(&r);
    size_t img_len;
    const uint8_t *img = fuzz_take(&r, fuzz_u32(&r), &img_len);
    const char *images = s_put(0, img, img_len, flags & 1);
    const char *labels = s_put(1, r.p, r.left, flags & 2);
    dataset_t *ds = NULL;
    cc_err_t err = {0};
    int rc = dataset_load_idx(images, labels, &ds, &err);
    fuzz_report("dataset_load_idx", rc, err.msg);
    if (rc == 0) {
        if (!ds->x || !ds->y || ds->n == 0 || ds->channels != 1 || ds->height < 1 ||
            ds->width < 1 || (size_t)ds->height * (size_t)ds->width != ds->d ||
            ds->n_classes < 1 || ds->n_classes > 256)
            abort();
        for (size_t i = 0; i < ds->n * ds->d; i++)
            if (!(ds->x[i] >= 0.0f && ds->x[i] <= 1.0f)) abort();
        for (size_t i = 0; i < ds->n; i++)
            if (ds->y[i] < 0 || ds->y[i] >= ds->n_classes) abort();
        dataset_destroy(&ds);
    } else if (ds) {
        abort();
    }
    return 0;
}
