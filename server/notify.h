/* notify.h - the service manager's notification protocol ($NOTIFY_SOCKET): readiness, reloads, stopping. */
#ifndef ES_NOTIFY_H
#define ES_NOTIFY_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "echosrv/plugin.h"

/* Parse the value of $NOTIFY_SOCKET: an absolute path, or "@name" for an
 * abstract socket (the '@' becomes a NUL byte). Fills *sun and *len (the
 * address length to pass to connect()). Returns 0, or -1 for an empty,
 * relative or too long value (other schemes, such as systemd 254's
 * "vsock:", are not supported). Any thread; no side effect. */
int notify_parse(const char *text, struct sockaddr_un *sun, socklen_t *len);

/* Read $NOTIFY_SOCKET, remove it from the environment and connect a
 * datagram socket (CLOEXEC) to it, so that later messages need no access to
 * the path: call it before dropping privileges. Nothing happens when the
 * variable is unset. A value that cannot be used is logged (warn) and the
 * notifications are off. Main thread, once, before any other thread runs
 * (it changes the environment). */
void notify_init(void);

/* Whether notify_init() connected a socket. Main thread. */
int notify_enabled(void);

/* Send "READY=1" with "STATUS=" and the formatted text; the first one also
 * carries "MAINPID=" (our pid). Returns 0 (also when notifications are
 * off), or a negative errno after logging it (warn). Main thread. */
int notify_ready(const char *fmt, ...) ES_PRINTF(1, 2);

/* Send "RELOADING=1", "STATUS=" with the formatted text and
 * "MONOTONIC_USEC=" (CLOCK_MONOTONIC now, which systemd's notify-reload
 * expects). Returns as notify_ready(). Main thread. */
int notify_reloading(const char *fmt, ...) ES_PRINTF(1, 2);

/* Send "STOPPING=1" and "STATUS=" with the formatted text. Returns as
 * notify_ready(). Main thread. */
int notify_stopping(const char *fmt, ...) ES_PRINTF(1, 2);

/* Close the socket; later calls send nothing. Main thread, at exit. */
void notify_close(void);

#endif
