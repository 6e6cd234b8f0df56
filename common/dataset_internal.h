/* dataset_internal.h — helpers shared by the dataset loaders and writers (dataset*.c only;
 * not part of the public interface).
 *
 * The text loaders (FANN, CSV) read the whole file into one NUL-terminated buffer and walk
 * it with a dataset_text_t that knows the current line, so every error names path:line.
 * Lines are cut in place (the newline becomes a NUL), so parsed fields point into the
 * buffer and stay valid until dataset_text_close. */
#ifndef CONCORD_DATASET_INTERNAL_H
#define CONCORD_DATASET_INTERNAL_H

#include <stdio.h>

#include "dataset.h"

/* Largest class count a loader accepts: labels come from files, and n_classes sizes
 * per-class arrays everywhere downstream. */
#define DATASET_MAX_CLASSES 65536

typedef struct {
    const char *path; /* for messages; not owned */
    char *buf; /* whole file, NUL-terminated; owned */
    size_t len;
    char *p; /* next unread byte */
    char *end; /* buf + len */
    size_t line; /* 1-based number of the line last returned (0 before the first) */
    int ends_in_newline; /* as read, before lines were cut in place */
} dataset_text_t;

/* Reads path into t. An empty (or whitespace-only) file is an error "path:1: empty file". */
int dataset_text_open(dataset_text_t *t, const char *path, cc_err_t *err) CC_WUR;
void dataset_text_close(dataset_text_t *t);
/* Next line with the newline (and a CR before it) cut off, or NULL at end of file. */
char *dataset_text_next_line(dataset_text_t *t);
/* 1 when everything has been read and the file does not end with a newline: a short last
 * line is then a cut-off file (truncated), not a malformed one. */
int dataset_text_cut_short(const dataset_text_t *t);
/* Newlines from t->p to the end: a bound on the lines still to come. */
size_t dataset_text_lines_left(const dataset_text_t *t);

/* cc_err_set with a "path:line: " prefix. */
int dataset_err_at(cc_err_t *err, int code, const char *path, size_t line, const char *fmt, ...)
    CC_PRINTF(5, 6);

/* Parses one number from a NUL-terminated field that must hold nothing else (surrounding
 * blanks allowed). 0 on success; -1 if it is not a number; -2 if not finite in float. */
int dataset_parse_float(const char *s, float *out);

/* Parses up to `want` blank-separated numbers of line s into out. On success *got is how
 * many the line holds (all of them counted, even past want). On a bad token returns -1
 * and points *bad at it (NUL-terminated in place). */
int dataset_parse_floats(char *s, float *out, size_t want, size_t *got, char **bad);

/* Shortest decimal that reads back as exactly v ("%.6g" .. "%.9g"); buf holds >= 32. */
void dataset_format_float(char *buf, size_t cap, float v);

/* Writers format tens of millions of numbers, and datasets repeat values (pixels take 256,
 * one-hot and binary features 2): a direct-mapped cache of formatted values saves the
 * snprintf/strtof round trips. Owned by one writer call. */
#define DATASET_NUM_CACHE 4096
typedef struct {
    uint32_t bits[DATASET_NUM_CACHE];
    char text[DATASET_NUM_CACHE][24];
    uint8_t len[DATASET_NUM_CACHE]; /* 0: empty slot */
} dataset_num_cache_t;

/* Writes the shortest text of v to fp through the cache. */
void dataset_put_float(FILE *fp, dataset_num_cache_t *cache, float v);

/* Checks label y against the caller's n_classes (ignored when <= 0) and the hard limit. */
int dataset_check_label(long y, int n_classes, const char *path, size_t line, cc_err_t *err) CC_WUR;

/* Loaders with the options the public wrappers lack (n_classes > 0 constrains labels). */
int dataset_fann_load(const char *path, int n_classes, dataset_t **out, cc_err_t *err) CC_WUR;
int dataset_idx_load(const char *images_path, const char *labels_path, int n_classes,
                     dataset_t **out, cc_err_t *err) CC_WUR;

/* Refuses to write a dataset with no features or a label outside [0, n_classes). */
int dataset_check_writable(const dataset_t *ds, const char *path, cc_err_t *err) CC_WUR;

/* Writes ds with fileio_atomic_* by calling body(fp, ds, ctx); shared by the writers. */
typedef int (*dataset_write_fn)(FILE *fp, const dataset_t *ds, void *ctx, cc_err_t *err);
int dataset_write_atomic(const char *path, const dataset_t *ds, dataset_write_fn body, void *ctx,
                         cc_err_t *err) CC_WUR;

#endif
