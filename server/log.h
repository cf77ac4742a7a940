/* log.h - leveled logging to stderr, one line per event. */
#ifndef ES_LOG_H
#define ES_LOG_H

#include <stdarg.h>
#include <stdatomic.h>

#include "echosrv/plugin.h"

/* The threshold: messages above it are dropped. Set by the main thread at
 * start-up and on reload; read by every thread. */
extern _Atomic int log_threshold;

/* Parse "error", "warn", "info", "debug". Returns the level or -1. */
int log_level_parse(const char *text);

/* OR'ed into a level: print whatever the threshold (start-up lines that
 * scripts wait for, like "listening on"). */
#define LOG_ALWAYS 0x100

/* Where lines go: stderr (the default) or syslog (facility daemon). */
enum { LOG_TARGET_STDERR, LOG_TARGET_SYSLOG };

/* Send the lines from now on to target. Main thread (at start-up and on
 * reload); the lines of other threads follow at once. */
void log_set_target(int target);

/* Log one event as one line: "ts=TIME level=LEVEL msg="TEXT"" followed by
 * fields (preformatted " key=value" pairs, or NULL), as one write to stderr
 * (no ts: syslog stamps its own). TEXT is quoted and escaped, so an event
 * stays one line. Any thread. */
void log_msg(int level, const char *fmt, ...) ES_PRINTF(2, 3);
void log_fields(int level, const char *fields, const char *fmt, ...) ES_PRINTF(3, 4);
void log_vfields(int level, const char *fields, const char *fmt, va_list ap);

#define log_error(...) log_msg(ES_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(ES_LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(ES_LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                         \
    do {                                                                       \
        if (log_threshold >= ES_LOG_DEBUG)                                     \
            log_msg(ES_LOG_DEBUG, __VA_ARGS__);                                \
    } while (0)

#endif
