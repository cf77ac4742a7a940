/* notify.c - the service manager's notification protocol ($NOTIFY_SOCKET): readiness, reloads, stopping. */
#define _GNU_SOURCE
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* The protocol (sd_notify(3), "the notify socket protocol", stable since
 * systemd 209): one datagram of newline-separated VAR=VALUE assignments to
 * the AF_UNIX socket named by $NOTIFY_SOCKET; systemd learns the sender's pid
 * from the credentials the kernel attaches. Implemented here rather than
 * linking libsystemd: a send of a few lines needs no library.
 *
 * Main thread only: the state below is touched by no other thread. */
static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_len;
static int sent_pid;     /* MAINPID= went out with the first READY=1 */

#define SEND_TIMEOUT_S 5 /* a manager that does not read cannot block the main thread for longer */

int notify_parse(const char *text, struct sockaddr_un *sun, socklen_t *len)
{
    size_t n = text != NULL ? strlen(text) : 0;
    if (n < 2 || (text[0] != '/' && text[0] != '@') || n >= sizeof sun->sun_path)
        return -1;
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, text, n);
    if (text[0] == '@') {
        /* Abstract: the name is exactly the bytes after the NUL, no terminator. */
        sun->sun_path[0] = '\0';
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
}

/* A datagram socket connected to notify_addr. Returns the fd or -errno. */
static int notify_connect(void)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = {.tv_sec = SEND_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (const struct sockaddr *)&notify_addr, notify_len) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

void notify_init(void)
{
    const char *text = getenv("NOTIFY_SOCKET");
    if (text == NULL)
        return;
    char *copy = strdup(text);
    /* Not passed on to anything this process might start. */
    unsetenv("NOTIFY_SOCKET");
    if (copy == NULL || notify_parse(copy, &notify_addr, &notify_len) < 0) {
        log_warn("NOTIFY_SOCKET=%s: not an absolute path or @abstract name: the service "
                 "manager gets no notifications", copy != NULL ? copy : "?");
        free(copy);
        return;
    }
    int fd = notify_connect();
    if (fd < 0)
        log_warn("NOTIFY_SOCKET=%s: cannot connect: %s: the service manager gets no "
                 "notifications", copy, strerror(-fd));
    else
        notify_fd = fd;
    free(copy);
}

int notify_enabled(void)
{
    return notify_fd >= 0;
}

/* Send the first len bytes of msg; a manager that re-created its socket
 * (daemon-reexec) gets one reconnect, which needs the path to be reachable
 * by the user we run as now. Returns 0 or -errno (logged). */
static int notify_write(const char *msg, size_t len)
{
    for (int attempt = 0;; attempt++) {
        ssize_t n = send(notify_fd, msg, len, MSG_NOSIGNAL);
        if (n == (ssize_t)len)
            return 0;
        int e = n < 0 ? errno : EMSGSIZE;
        if (e == EINTR)
            continue;
        if (attempt == 0 && (e == ECONNREFUSED || e == ENOTCONN)) {
            int fd = notify_connect();
            if (fd >= 0) {
                close(notify_fd);
                notify_fd = fd;
                continue;
            }
            e = -fd;
        }
        log_warn("cannot notify the service manager: %s", strerror(e));
        return -e;
    }
}

/* Send head, then "STATUS=" with the formatted text on one line (newlines
 * in it become spaces: each line is an assignment), then tail. */
static int notify_vsend(const char *head, const char *tail, const char *fmt, va_list ap)
{
    if (notify_fd < 0)
        return 0;
    char msg[2048];
    int n = snprintf(msg, sizeof msg, "%sSTATUS=", head);
    if (n < 0 || (size_t)n >= sizeof msg)
        return -EMSGSIZE;
    size_t pos = (size_t)n;
    /* Room for the tail: the status text is cut rather than the tail. */
    size_t tail_len = strlen(tail);
    if (pos + tail_len + 2 >= sizeof msg)
        return -EMSGSIZE;
    vsnprintf(msg + pos, sizeof msg - pos - tail_len - 1, fmt, ap);
    for (char *p = msg + pos; *p != '\0'; p++)
        if (*p == '\n')
            *p = ' ';
    pos += strlen(msg + pos);
    msg[pos++] = '\n';
    memcpy(msg + pos, tail, tail_len);
    pos += tail_len;
    return notify_write(msg, pos);
}

int notify_ready(const char *fmt, ...)
{
    char tail[64] = "";
    if (!sent_pid)
        snprintf(tail, sizeof tail, "MAINPID=%ld\n", (long)getpid());
    va_list ap;
    va_start(ap, fmt);
    int rc = notify_vsend("READY=1\n", tail, fmt, ap);
    va_end(ap);
    if (rc == 0 && notify_fd >= 0)
        sent_pid = 1;
    return rc;
}

int notify_reloading(const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char tail[64];
    snprintf(tail, sizeof tail, "MONOTONIC_USEC=%llu\n",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    va_list ap;
    va_start(ap, fmt);
    int rc = notify_vsend("RELOADING=1\n", tail, fmt, ap);
    va_end(ap);
    return rc;
}

int notify_stopping(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = notify_vsend("STOPPING=1\n", "", fmt, ap);
    va_end(ap);
    return rc;
}

void notify_close(void)
{
    if (notify_fd >= 0)
        close(notify_fd);
    notify_fd = -1;
}
