/* util.c — see util.h. */
#include "util.h"

#include <stdarg.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int cc_err_set(cc_err_t *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

static void s_oom(size_t n) {
    fprintf(stderr, "concord: out of memory allocating %zu bytes\n", n);
    abort();
}

void *cc_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) s_oom(n);
    return p;
}

void *cc_xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) s_oom(count * size);
    return p;
}

void *cc_xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) s_oom(n);
    return q;
}

char *cc_xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = cc_xmalloc(n);
    memcpy(p, s, n);
    return p;
}

float *cc_xalloc_floats(size_t n) {
    void *p = NULL;
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, bytes) != 0) s_oom(bytes);
    return p;
}

double cc_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Value in bytes of a "Key:   N kB" line of /proc/self/status. */
static size_t s_status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0, klen = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0) {
            kb = strtoull(line + klen, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb * 1024;
}

size_t cc_peak_rss(void) { return s_status_kb("VmHWM:"); }

size_t cc_current_rss(void) { return s_status_kb("VmRSS:"); }

int cc_peak_rss_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return -1;
    int ok = fputs("5", f) >= 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

void cc_malloc_tune(void) {
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
#endif
}
