/* log.h — structured log lines on stderr: one event per line,
 *   2026-11-27T10:00:00.123Z level=info comp=train event=epoch epoch=3 loss=0.12
 * The message part is logfmt key=value pairs written by the caller. */
#ifndef CONCORD_LOG_H
#define CONCORD_LOG_H

#include "util.h"

typedef enum { CC_LOG_DEBUG, CC_LOG_INFO, CC_LOG_WARN, CC_LOG_ERROR } cc_log_level_t;

void cc_log_set_level(cc_log_level_t level);
void cc_log_set_component(const char *comp);
void cc_log(cc_log_level_t level, const char *event, const char *fmt, ...) CC_PRINTF(3, 4);

#define cc_log_info(ev, ...) cc_log(CC_LOG_INFO, ev, __VA_ARGS__)
#define cc_log_warn(ev, ...) cc_log(CC_LOG_WARN, ev, __VA_ARGS__)
#define cc_log_error(ev, ...) cc_log(CC_LOG_ERROR, ev, __VA_ARGS__)
#define cc_log_debug(ev, ...) cc_log(CC_LOG_DEBUG, ev, __VA_ARGS__)

#endif
