/* log.c - leveled logging, one key=value line per event, to stderr (one write per line, so
 * threads never interleave) or to syslog. */
#define _GNU_SOURCE
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

_Atomic int log_threshold = ES_LOG_INFO;
static _Atomic int log_to_syslog;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const int syslog_prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

int log_level_parse(const char *text)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(text, level_names[i]) == 0)
            return i;
    return -1;
}

void log_set_target(int target)
{
    if (target == LOG_TARGET_SYSLOG && !log_to_syslog)
        openlog("echosrv", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    log_to_syslog = target == LOG_TARGET_SYSLOG;
}

/* Append text to out[*n..cap) as a quoted value: quotes and backslashes
 * escaped, control bytes as \n, \r, \t or \xHH, so that one event stays one
 * line whatever a message carries. */
static void put_quoted(char *out, size_t *n, size_t cap, const char *text)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = *n;
    if (i < cap)
        out[i++] = '"';
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0' && i + 5 < cap; p++) {
        unsigned char ch = *p;
        if (ch == '"' || ch == '\\') {
            out[i++] = '\\';
            out[i++] = (char)ch;
        } else if (ch == '\n' || ch == '\r' || ch == '\t') {
            out[i++] = '\\';
            out[i++] = ch == '\n' ? 'n' : ch == '\r' ? 'r' : 't';
        } else if (ch < 0x20 || ch == 0x7f) {
            out[i++] = '\\';
            out[i++] = 'x';
            out[i++] = hex[ch >> 4];
            out[i++] = hex[ch & 15];
        } else {
            out[i++] = (char)ch;
        }
    }
    if (i < cap)
        out[i++] = '"';
    *n = i;
}

void log_vfields(int level, const char *fields, const char *fmt, va_list ap)
{
    if (level & LOG_ALWAYS)
        level &= ~LOG_ALWAYS;
    else if (level > log_threshold)
        return;
    if (level < 0)
        level = 0;
    if (level > 3)
        level = 3;
    char text[1024];
    vsnprintf(text, sizeof text, fmt, ap);
    char line[2048];
    size_t n = 0;
    int to_syslog = log_to_syslog;
    if (!to_syslog) {
        /* syslog stamps its own time. */
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n += strftime(line, sizeof line, "ts=%Y-%m-%dT%H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ ", ts.tv_nsec / 1000000);
    }
    n += (size_t)snprintf(line + n, sizeof line - n, "level=%s msg=", level_names[level]);
    put_quoted(line, &n, sizeof line - 2, text);
    if (fields != NULL && *fields != '\0' && n + 2 < sizeof line - 2)
        n += (size_t)snprintf(line + n, sizeof line - 2 - n, " %s", fields);
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    if (to_syslog) {
        line[n] = '\0';
        syslog(syslog_prio[level], "%s", line);
        return;
    }
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

void log_fields(int level, const char *fields, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vfields(level, fields, fmt, ap);
    va_end(ap);
}

void log_msg(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vfields(level, NULL, fmt, ap);
    va_end(ap);
}
