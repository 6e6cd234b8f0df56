/* bench_util.c — helpers shared by the concord-bench subcommands (see bench_util.h). */
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int bench_bad(const char *cmd, const char *flag, const char *value, const char *expected) {
    fprintf(stderr, "concord-bench %s: %s: invalid value \"%s\" (expected %s)\n", cmd, flag, value, expected);
    return 2;
}

int bench_num(const char *text, double lo, double hi, double *out) {
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

static int s_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median(const double *v, size_t n) {
    double *t = cc_xmalloc(n * sizeof *t);
    memcpy(t, v, n * sizeof *t);
    qsort(t, n, sizeof *t, s_cmp_double);
    double m = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    free(t);
    return m;
}

void bench_print_json(json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(8));
    printf("%s\n", s);
    free(s);
    json_decref(j);
}
