/* log.c — see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>

static cc_log_level_t s_level = CC_LOG_INFO;
static const char *s_component = "concord";

void cc_log_set_level(cc_log_level_t level) { s_level = level; }
void cc_log_set_component(const char *comp) { s_component = comp; }

void cc_log(cc_log_level_t level, const char *event, const char *fmt, ...) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < s_level) return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One fprintf so concurrent writers do not interleave within a line. */
    fprintf(stderr, "%s.%03dZ level=%s comp=%s event=%s%s%s\n", ts, (int)(tv.tv_usec / 1000),
            names[level], s_component, event, msg[0] ? " " : "", msg);
}
