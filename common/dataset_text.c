/* dataset_text.c — the line reader, number parsing, error prefixes and atomic-write wrapper
 * that the FANN, CSV and IDX code share (see dataset_internal.h).
 *
 * Numbers are parsed with strtof straight from the file buffer: no fscanf per token, no
 * copies. A value that strtof cannot parse completely, or that is not finite in float32, is
 * an error — training on NaN or Inf poisons every model it reaches. */
#include "dataset_internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"

/* Refuse text files past this size: the whole file is held in memory while parsing. */
#define S_MAX_TEXT_BYTES ((size_t)8 << 30)

static int s_is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

int dataset_text_open(dataset_text_t *t, const char *path, cc_err_t *err) {
    memset(t, 0, sizeof *t);
    t->path = path;
    int rc = fileio_read_all(path, S_MAX_TEXT_BYTES, &t->buf, &t->len, err);
    if (rc) return rc;
    t->p = t->buf;
    t->end = t->buf + t->len;
    t->ends_in_newline = t->len > 0 && t->buf[t->len - 1] == '\n';
    /* Spreadsheet exports often start with a UTF-8 byte-order mark; it is not data. */
    if (t->len >= 3 && memcmp(t->buf, "\xEF\xBB\xBF", 3) == 0) t->p += 3;
    const char *q = t->p;
    while (q < t->end && (s_is_blank(*q) || *q == '\n')) q++;
    if (q == t->end) {
        dataset_text_close(t);
        return dataset_err_at(err, CC_ERR_FORMAT, path, 1, "empty file");
    }
    return 0;
}

void dataset_text_close(dataset_text_t *t) {
    free(t->buf);
    t->buf = t->p = t->end = NULL;
    t->len = 0;
}

char *dataset_text_next_line(dataset_text_t *t) {
    if (t->p >= t->end) return NULL;
    char *start = t->p;
    char *nl = memchr(start, '\n', (size_t)(t->end - start));
    char *stop = nl ? nl : t->end;
    t->p = nl ? nl + 1 : t->end;
    if (stop > start && stop[-1] == '\r') stop--;
    *stop = '\0'; /* the buffer has a NUL past its end, so this is safe at EOF too */
    t->line++;
    return start;
}

int dataset_text_cut_short(const dataset_text_t *t) {
    return t->p >= t->end && !t->ends_in_newline;
}

size_t dataset_text_lines_left(const dataset_text_t *t) {
    size_t n = 0;
    for (const char *q = t->p; q < t->end; q++) {
        q = memchr(q, '\n', (size_t)(t->end - q));
        if (!q) break;
        n++;
    }
    return n + 1;
}

int dataset_err_at(cc_err_t *err, int code, const char *path, size_t line, const char *fmt, ...) {
    if (!err) return code;
    char what[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return cc_err_set(err, code, "%s:%zu: %s", path, line, what);
}

/* strtof and classify what follows: 0 ok, -1 not a number, -2 not finite. */
static int s_strtof(const char *s, float *out, char **endp) {
    errno = 0;
    float v = strtof(s, endp);
    if (*endp == s) return -1;
    if (!isfinite(v)) return -2; /* "nan", "inf", or overflow */
    *out = v;
    return 0;
}

int dataset_parse_float(const char *s, float *out) {
    char *e;
    int rc = s_strtof(s, out, &e);
    if (rc) return rc;
    while (s_is_blank(*e)) e++;
    return *e == '\0' ? 0 : -1;
}

int dataset_parse_floats(char *s, float *out, size_t want, size_t *got, char **bad) {
    size_t n = 0;
    *bad = NULL;
    for (;;) {
        while (s_is_blank(*s)) s++;
        if (*s == '\0') break;
        char *e;
        float v = 0.0f;
        int rc = s_strtof(s, &v, &e);
        if (rc == 0 && *e != '\0' && !s_is_blank(*e)) rc = -1; /* "0.5abc" */
        if (rc) {
            e = s;
            while (*e && !s_is_blank(*e)) e++;
            *e = '\0';
            *bad = s;
            *got = n;
            return -1;
        }
        if (n < want) out[n] = v;
        n++;
        s = e;
    }
    *got = n;
    return 0;
}

void dataset_format_float(char *buf, size_t cap, float v) {
    if (v == 0.0f) {
        snprintf(buf, cap, "0");
        return;
    }
    /* 9 significant digits always round-trip a float32; fewer are tried first so that
     * 0.53 is written as "0.53" and not "0.529999971". */
    for (int prec = 6; prec < 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
    snprintf(buf, cap, "%.9g", (double)v);
}

void dataset_put_float(FILE *fp, dataset_num_cache_t *cache, float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    size_t slot = (bits ^ (bits >> 13) ^ (bits >> 23)) % DATASET_NUM_CACHE;
    if (cache->len[slot] == 0 || cache->bits[slot] != bits) {
        dataset_format_float(cache->text[slot], sizeof cache->text[slot], v);
        cache->bits[slot] = bits;
        cache->len[slot] = (uint8_t)strlen(cache->text[slot]);
    }
    fwrite(cache->text[slot], 1, cache->len[slot], fp);
}

int dataset_check_label(long y, int n_classes, const char *path, size_t line, cc_err_t *err) {
    if (y < 0) return dataset_err_at(err, CC_ERR_FORMAT, path, line, "label %ld is negative", y);
    if (n_classes > 0 && y >= n_classes)
        return dataset_err_at(err, CC_ERR_FORMAT, path, line, "label %ld out of range [0, %d)", y,
                              n_classes);
    if (y >= DATASET_MAX_CLASSES)
        return dataset_err_at(err, CC_ERR_FORMAT, path, line,
                              "label %ld exceeds the limit of %d classes", y, DATASET_MAX_CLASSES);
    return 0;
}

int dataset_write_atomic(const char *path, const dataset_t *ds, dataset_write_fn body, void *ctx,
                         cc_err_t *err) {
    fileio_atomic_t f;
    int rc = fileio_atomic_open(&f, path, err);
    if (rc) return rc;
    rc = body(f.fp, ds, ctx, err);
    if (rc == 0 && ferror(f.fp))
        rc = cc_err_set(err, CC_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    if (rc) {
        fileio_atomic_abort(&f); /* FILEIO-3: the old file, if any, is untouched */
        return rc;
    }
    return fileio_atomic_commit(&f, err);
}
