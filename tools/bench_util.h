/* bench_util.h — what the concord-bench subcommands in tools/bench_*.c share: the message
 * for a bad option value, parsing a number in a range, the median of repeated timings, and
 * printing the one-line JSON result. */
#ifndef CONCORD_BENCH_UTIL_H
#define CONCORD_BENCH_UTIL_H

#include <jansson.h>
#include <stddef.h>

/* Prints "concord-bench CMD: FLAG: invalid value ..." to stderr; returns 2 (the usage exit code). */
int bench_bad(const char *cmd, const char *flag, const char *value, const char *expected);

/* Parses text as a number in [lo, hi] into *out; -1 if it is not one. */
int bench_num(const char *text, double lo, double hi, double *out);

/* The median of v[0..n) (n >= 1); v is left as it was. */
double bench_median(const double *v, size_t n);

/* Prints j compactly with 8 significant digits on one line, and releases it. */
void bench_print_json(json_t *j);

#endif
