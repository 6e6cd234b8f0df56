/* dataset_idx.c — IDX files (MNIST, Fashion-MNIST): unsigned-byte images (idx3) and labels
 * (idx1), each gzipped or not.
 *
 * Layout: magic 00 00 08 NDIMS, then NDIMS big-endian uint32 sizes, then the bytes. Images
 * are (n, rows, cols) and load as n x (rows*cols) floats byte/255.0f with channels = 1;
 * labels are (n). zlib's gzread reads plain files through unchanged, so one path serves
 * both. A file shorter than its header promises is *truncated* (CC_ERR_TRUNCATED, with the
 * byte counts); a bad magic or trailing bytes is a format error. Buffers grow as bytes
 * arrive, so a header that lies about its sizes cannot make us allocate more than the
 * file holds. */
#include "dataset_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define S_IDX_UBYTE 0x08
#define S_MAX_SIDE 65535u

typedef struct {
    gzFile gz;
    const char *path;
} s_idx_t;

static int s_open(s_idx_t *f, const char *path, cc_err_t *err) {
    f->path = path;
    f->gz = gzopen(path, "rb");
    if (!f->gz)
        return cc_err_set(err, CC_ERR_IO, "%s: cannot open: %s", path,
                          errno ? strerror(errno) : "out of memory");
    gzbuffer(f->gz, 1 << 17); /* fewer, larger reads: the 60000-image file in < 0.3 s */
    return 0;
}

static void s_close(s_idx_t *f) {
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* Reads up to n bytes; *got may be short at end of file (or of a cut gzip stream). */
static int s_read(s_idx_t *f, void *buf, size_t n, size_t *got, cc_err_t *err) {
    *got = 0;
    while (*got < n) {
        size_t chunk = n - *got > (1u << 30) ? (1u << 30) : n - *got;
        int r = gzread(f->gz, (char *)buf + *got, (unsigned)chunk);
        if (r < 0) {
            int zerr;
            const char *msg = gzerror(f->gz, &zerr);
            return cc_err_set(err, zerr == Z_ERRNO ? CC_ERR_IO : CC_ERR_CORRUPT,
                              "%s: read failed at byte %zu: %s", f->path, *got,
                              zerr == Z_ERRNO ? strerror(errno) : msg);
        }
        if (r == 0) break;
        *got += (size_t)r;
    }
    return 0;
}

static uint32_t s_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void s_put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Reads exactly n header bytes; fewer is truncation. */
static int s_read_exact(s_idx_t *f, uint8_t *buf, size_t n, size_t before, cc_err_t *err) {
    size_t got;
    int rc = s_read(f, buf, n, &got, err);
    if (rc) return rc;
    if (got < n)
        return cc_err_set(err, CC_ERR_TRUNCATED,
                          "%s: truncated: expected %zu bytes, got %zu (the IDX header)", f->path,
                          before + n, before + got);
    return 0;
}

/* Reads the magic, then the ndims sizes (the magic first, so that a wrong kind of file
 * is named as such even when it is short). The header is 4 + 4*ndims bytes. */
static int s_read_header(s_idx_t *f, int ndims, const char *what, uint32_t *dims, cc_err_t *err) {
    uint8_t h[16];
    int rc = s_read_exact(f, h, 4, 0, err);
    if (rc) return rc;
    if (h[0] != 0 || h[1] != 0 || h[2] != S_IDX_UBYTE || h[3] != ndims)
        return cc_err_set(err, CC_ERR_FORMAT,
                          "%s: byte 0: magic 0x%02x%02x%02x%02x is not an IDX %s file "
                          "(expected 0x000008%02x)",
                          f->path, h[0], h[1], h[2], h[3], what, ndims);
    if ((rc = s_read_exact(f, h + 4, 4 * (size_t)ndims, 4, err)) != 0) return rc;
    for (int i = 0; i < ndims; i++) dims[i] = s_be32(h + 4 + 4 * i);
    return 0;
}

/* Reads exactly `want` payload bytes after a header of hdr bytes, and checks that the
 * file ends there. *out is a new buffer the caller frees. */
static int s_read_payload(s_idx_t *f, size_t hdr, size_t want, uint8_t **out, cc_err_t *err) {
    uint8_t *buf = NULL;
    size_t have = 0, cap = 0, got;
    int rc = 0;
    while (have < want) {
        if (have == cap) {
            /* One allocation for any real dataset; a lying header costs at most 64 MiB
             * before the missing bytes expose it. */
            cap = cap ? 2 * cap : (size_t)64 << 20;
            if (cap > want) cap = want;
            buf = cc_xrealloc(buf, cap);
        }
        if ((rc = s_read(f, buf + have, cap - have, &got, err)) != 0) goto fail;
        if (got == 0) break;
        have += got;
    }
    if (have < want) {
        rc = cc_err_set(err, CC_ERR_TRUNCATED, "%s: truncated: expected %zu bytes, got %zu",
                        f->path, hdr + want, hdr + have);
        goto fail;
    }
    uint8_t extra;
    if ((rc = s_read(f, &extra, 1, &got, err)) != 0) goto fail;
    if (got) {
        rc = cc_err_set(err, CC_ERR_FORMAT,
                        "%s: byte %zu: data past the end the header announces (%zu bytes)", f->path,
                        hdr + want, hdr + want);
        goto fail;
    }
    *out = buf;
    return 0;
fail:
    free(buf);
    return rc;
}

static int s_load_images(const char *path, dataset_t **out, cc_err_t *err) {
    s_idx_t f = {0};
    uint8_t *px = NULL;
    uint32_t dims[3] = {0, 0, 0};
    int rc = s_open(&f, path, err);
    if (rc) return rc;
    if ((rc = s_read_header(&f, 3, "images (idx3 ubyte)", dims, err)) != 0) goto fail;
    if (dims[0] == 0 || dims[1] == 0 || dims[2] == 0 || dims[1] > S_MAX_SIDE ||
        dims[2] > S_MAX_SIDE) {
        rc = cc_err_set(err, CC_ERR_FORMAT, "%s: byte 4: implausible sizes %u x %u x %u", path,
                        dims[0], dims[1], dims[2]);
        goto fail;
    }
    size_t d = (size_t)dims[1] * dims[2], bytes;
    if (__builtin_mul_overflow((size_t)dims[0], d, &bytes)) {
        rc = cc_err_set(err, CC_ERR_FORMAT, "%s: byte 4: sizes overflow", path);
        goto fail;
    }
    if ((rc = s_read_payload(&f, 16, bytes, &px, err)) != 0) goto fail;
    dataset_t *ds = dataset_new(dims[0], d, 0);
    for (size_t i = 0; i < bytes; i++) ds->x[i] = (float)px[i] / 255.0f;
    ds->channels = 1;
    ds->height = (int)dims[1];
    ds->width = (int)dims[2];
    *out = ds;
fail:
    free(px);
    s_close(&f);
    return rc;
}

/* Labels into ds->y; their count must equal the images'. */
static int s_load_labels(const char *path, int n_classes, dataset_t *ds, cc_err_t *err) {
    s_idx_t f = {0};
    uint8_t *lab = NULL;
    uint32_t n = 0;
    int rc = s_open(&f, path, err);
    if (rc) return rc;
    if ((rc = s_read_header(&f, 1, "labels (idx1 ubyte)", &n, err)) != 0) goto fail;
    if (n != ds->n) {
        rc = cc_err_set(err, CC_ERR_FORMAT, "%s: byte 4: %u labels for %zu images", path, n, ds->n);
        goto fail;
    }
    if ((rc = s_read_payload(&f, 8, n, &lab, err)) != 0) goto fail;
    int max = 0;
    for (size_t i = 0; i < n; i++) {
        if (n_classes > 0 && lab[i] >= n_classes) {
            rc = cc_err_set(err, CC_ERR_FORMAT, "%s: byte %zu: label %d out of range [0, %d)", path,
                            8 + i, lab[i], n_classes);
            goto fail;
        }
        ds->y[i] = lab[i];
        if (lab[i] > max) max = lab[i];
    }
    ds->n_classes = n_classes > 0 ? n_classes : max + 1;
fail:
    free(lab);
    s_close(&f);
    return rc;
}

int dataset_idx_load(const char *images_path, const char *labels_path, int n_classes,
                     dataset_t **out, cc_err_t *err) {
    *out = NULL;
    dataset_t *ds = NULL;
    int rc = s_load_images(images_path, &ds, err);
    if (rc) return rc;
    rc = s_load_labels(labels_path, n_classes, ds, err);
    if (rc) {
        dataset_destroy(&ds);
        return rc;
    }
    *out = ds;
    return 0;
}

int dataset_load_idx(const char *images_path, const char *labels_path, dataset_t **out,
                     cc_err_t *err) {
    return dataset_idx_load(images_path, labels_path, 0, out, err);
}

/* ---- writing ---------------------------------------------------------------------- */

typedef struct {
    const uint8_t *hdr, *data;
    size_t hdr_len, data_len;
    int gzip;
    const char *path;
} s_blob_t;

static int s_write_gzip(FILE *fp, const s_blob_t *b, cc_err_t *err) {
    /* gzip through a duplicate of the temp file's descriptor: the FILE has nothing
     * buffered, and fileio_atomic_commit still fsyncs and renames the same file. */
    int fd = dup(fileno(fp));
    gzFile gz = fd >= 0 ? gzdopen(fd, "wb") : NULL;
    if (!gz) {
        if (fd >= 0) close(fd);
        return cc_err_set(err, CC_ERR_IO, "%s: cannot start gzip stream", b->path);
    }
    int ok = gzwrite(gz, b->hdr, (unsigned)b->hdr_len) == (int)b->hdr_len;
    for (size_t off = 0; ok && off < b->data_len; off += 1u << 30) {
        size_t chunk = b->data_len - off > (1u << 30) ? (1u << 30) : b->data_len - off;
        ok = gzwrite(gz, b->data + off, (unsigned)chunk) == (int)chunk;
    }
    if (gzclose(gz) != Z_OK) ok = 0;
    return ok ? 0 : cc_err_set(err, CC_ERR_IO, "%s: gzip write failed", b->path);
}

static int s_write_blob(FILE *fp, const dataset_t *ds, void *ctx, cc_err_t *err) {
    (void)ds;
    const s_blob_t *b = ctx;
    if (b->gzip) return s_write_gzip(fp, b, err);
    if (fwrite(b->hdr, 1, b->hdr_len, fp) != b->hdr_len ||
        fwrite(b->data, 1, b->data_len, fp) != b->data_len)
        return cc_err_set(err, CC_ERR_IO, "%s: write failed: %s", b->path, strerror(errno));
    return 0;
}

static int s_save_blob(const char *path, const uint8_t *hdr, size_t hdr_len, const uint8_t *data,
                       size_t data_len, cc_err_t *err) {
    size_t n = strlen(path);
    s_blob_t b = {hdr, data, hdr_len, data_len, n > 3 && strcmp(path + n - 3, ".gz") == 0, path};
    return dataset_write_atomic(path, NULL, s_write_blob, &b, err);
}

/* Image shape for the idx3 header: (rows, cols); tabular data is written 1 x d. */
static int s_image_shape(const dataset_t *ds, const char *path, uint32_t *rows, uint32_t *cols,
                         cc_err_t *err) {
    if (ds->channels > 1)
        return cc_err_set(err, CC_ERR_ARG, "%s: IDX holds one channel, the data has %d", path,
                          ds->channels);
    int image = ds->height > 0 && ds->width > 0 && (size_t)ds->height * ds->width == ds->d;
    if (!image && ds->d > UINT32_MAX)
        return cc_err_set(err, CC_ERR_ARG, "%s: %zu features do not fit IDX", path, ds->d);
    *rows = image ? (uint32_t)ds->height : 1;
    *cols = image ? (uint32_t)ds->width : (uint32_t)ds->d;
    return 0;
}

static int s_save_images(const dataset_t *ds, const char *path, cc_err_t *err) {
    uint32_t rows = 0, cols = 0;
    int rc = s_image_shape(ds, path, &rows, &cols, err);
    if (rc) return rc;
    size_t total = ds->n * ds->d;
    uint8_t hdr[16] = {0, 0, S_IDX_UBYTE, 3}, *px = cc_xmalloc(total);
    s_put_be32(hdr + 4, (uint32_t)ds->n);
    s_put_be32(hdr + 8, rows);
    s_put_be32(hdr + 12, cols);
    for (size_t i = 0; i < total; i++) {
        float v = ds->x[i];
        if (!(v >= 0.0f && v <= 1.0f)) { /* also catches NaN */
            free(px);
            return cc_err_set(err, CC_ERR_ARG,
                              "%s: IDX pixels must lie in [0, 1]; row %zu feature %zu is %g", path,
                              i / ds->d, i % ds->d, (double)v);
        }
        px[i] = (uint8_t)lrintf(v * 255.0f);
    }
    rc = s_save_blob(path, hdr, sizeof hdr, px, total, err);
    free(px);
    return rc;
}

static int s_save_labels(const dataset_t *ds, const char *path, cc_err_t *err) {
    if (ds->n_classes > 256)
        return cc_err_set(err, CC_ERR_ARG, "%s: IDX labels are bytes; %d classes do not fit", path,
                          ds->n_classes);
    uint8_t hdr[8] = {0, 0, S_IDX_UBYTE, 1}, *lab = cc_xmalloc(ds->n ? ds->n : 1);
    s_put_be32(hdr + 4, (uint32_t)ds->n);
    for (size_t i = 0; i < ds->n; i++) lab[i] = (uint8_t)ds->y[i];
    int rc = s_save_blob(path, hdr, sizeof hdr, lab, ds->n, err);
    free(lab);
    return rc;
}

int dataset_save_idx(const dataset_t *ds, const char *images_path, const char *labels_path,
                     cc_err_t *err) {
    int rc = dataset_check_writable(ds, images_path, err);
    if (rc) return rc;
    if (ds->n > UINT32_MAX)
        return cc_err_set(err, CC_ERR_ARG, "%s: %zu rows do not fit IDX", images_path, ds->n);
    rc = s_save_images(ds, images_path, err);
    if (rc) return rc;
    return s_save_labels(ds, labels_path, err);
}
