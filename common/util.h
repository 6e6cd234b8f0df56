/* util.h — error reporting, checked allocation and small helpers shared by every module.
 *
 * Errors: fallible functions return 0 or a negative code and, when the caller passes a
 * cc_err_t, fill it with one human sentence naming file, line and problem. The layer that
 * decides what to do about an error logs it; lower layers only fill cc_err_t. */
#ifndef CONCORD_UTIL_H
#define CONCORD_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define CC_WUR __attribute__((warn_unused_result))
#define CC_PRINTF(a, b) __attribute__((format(printf, a, b)))

enum {
    CC_OK = 0,
    CC_ERR_IO = -1,      /* open/read/write failed (errno is in the message) */
    CC_ERR_FORMAT = -2,  /* input is malformed */
    CC_ERR_ARG = -3,     /* caller passed something invalid */
    CC_ERR_NOMEM = -4,
    CC_ERR_CORRUPT = -5, /* checksum or magic mismatch */
    CC_ERR_TRUNCATED = -6,
};

typedef struct {
    int code;
    char msg[512];
} cc_err_t;

/* Fills err (if not NULL) with a formatted message and returns code, so callers can
 * write `return cc_err_set(err, CC_ERR_FORMAT, "%s:%zu: ...", path, line);`. */
int cc_err_set(cc_err_t *err, int code, const char *fmt, ...) CC_PRINTF(3, 4);

/* Allocation that aborts on out-of-memory: used only for sizes the program itself
 * computed (never sizes read from untrusted input without a bound check first). */
void *cc_xmalloc(size_t n);
void *cc_xcalloc(size_t count, size_t size);
void *cc_xrealloc(void *p, size_t n);
char *cc_xstrdup(const char *s);
/* 64-byte aligned allocation for float buffers fed to BLAS; free with free(). */
float *cc_xalloc_floats(size_t n);

/* For the daemons, before their first allocation: buffers up to 1 MiB (messages, updates
 * and θ of up to 256k parameters) come from the heap, and a heap gives memory back only
 * past 8 MiB free at its top. glibc's adaptive default mapped such buffers afresh each
 * round, and the zero-filled pages were about a quarter of the coordinator's system time
 * per round at P = 100k. Larger buffers are still mapped and unmapped each time: with
 * 16 MiB / 32 MiB the heaps of the three threads kept so much that the coordinator's peak
 * RSS at P = 1M went over its budget (docs/benchmarks.md). */
void cc_malloc_tune(void);

/* Monotonic clock in seconds. */
double cc_now(void);

/* Peak resident set size of this process in bytes (VmHWM), or 0 if unknown. */
size_t cc_peak_rss(void);
/* Current resident set size in bytes (VmRSS), or 0 if unknown. */
size_t cc_current_rss(void);
/* Resets the peak to the current RSS (Linux: "5" into /proc/self/clear_refs), so a
 * later cc_peak_rss() measures one phase of the run. Returns 0 on success. */
int cc_peak_rss_reset(void);

#endif
