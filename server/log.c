/* log.c - leveled logging to stderr, one write per line so threads never interleave. */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

_Atomic int log_threshold = ES_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *text)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(text, level_names[i]) == 0)
            return i;
    return -1;
}

void log_vmsg(int level, const char *prefix, const char *fmt, va_list ap)
{
    if (level & LOG_ALWAYS)
        level &= ~LOG_ALWAYS;
    else if (level > log_threshold)
        return;
    if (level < 0)
        level = 0;
    char line[1024];
    int n = snprintf(line, sizeof line, "echosrv: %s: %s", level_names[level > 3 ? 3 : level],
                     prefix != NULL ? prefix : "");
    if (n < 0)
        return;
    if ((size_t)n < sizeof line) {
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n >= sizeof line - 1)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void log_msg(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, NULL, fmt, ap);
    va_end(ap);
}
