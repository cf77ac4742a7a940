/* activation.c - socket activation: the listening sockets the service manager passes ($LISTEN_FDS). */
#define _GNU_SOURCE
#include "activation.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

/* The protocol (sd_listen_fds(3), stable since systemd 209): the manager
 * passes N listening sockets as fds 3 .. 3+N-1 and sets LISTEN_PID to the
 * pid meant to take them (an environment survives fork, so a child must not
 * mistake them for its own), LISTEN_FDS to N and, optionally,
 * LISTEN_FDNAMES to N colon-separated names (FileDescriptorName=).
 * Implemented here rather than with libsystemd: it is a few getenv() calls. */

#define MAX_FDS 1024

/* A decimal number in 1..max, nothing else. Returns it, or -1. */
static long parse_count(const char *text, long max)
{
    if (text == NULL || *text < '0' || *text > '9')
        return -1;
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > max)
        return -1;
    return v;
}

/* How many colon-separated names names holds (0 for NULL or ""). */
static long count_names(const char *names)
{
    if (names == NULL || *names == '\0')
        return 0;
    long count = 1;
    for (const char *p = names; *p != '\0'; p++)
        count += *p == ':';
    return count;
}

/* The i-th of the colon-separated names into out ("" without names). */
static void fd_name(const char *names, long i, char *out, size_t cap)
{
    out[0] = '\0';
    if (names == NULL)
        return;
    const char *p = names;
    for (long k = 0; k < i; k++)
        p = strchr(p, ':') + 1;
    size_t len = strcspn(p, ":");
    snprintf(out, cap, "%.*s", (int)len, p);
}

/* Check that fd is a listening stream socket of a family we serve and make
 * a sock of it into s. Returns 0, or -1 with a message in err. */
static int adopt(sock *s, int fd, const char *name, char *err, size_t errlen)
{
    const char *what = name[0] != '\0' ? name : "unnamed";
    int type = 0, listening = 0, flags;
    socklen_t tl = sizeof type, ll = sizeof listening;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "socket activation: fd %d (%s) is not a socket", fd, what);
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 || type != SOCK_STREAM ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) < 0 || !listening) {
        snprintf(err, errlen, "socket activation: fd %d (%s) is not a listening stream "
                 "socket (ListenStream= in the socket unit)", fd, what);
        return -1;
    }
    memset(s, 0, sizeof *s);
    s->fd = -1;
    socklen_t len = sizeof s->a.ss;
    if (getsockname(fd, (struct sockaddr *)&s->a.ss, &len) < 0) {
        snprintf(err, errlen, "socket activation: fd %d (%s): getsockname: %s", fd, what,
                 strerror(errno));
        return -1;
    }
    int family = s->a.ss.ss_family;
    if (family != AF_INET && family != AF_INET6 && family != AF_UNIX) {
        snprintf(err, errlen, "socket activation: fd %d (%s): address family %d is not "
                 "served (only IPv4, IPv6 and unix sockets)", fd, what, family);
        return -1;
    }
    if ((flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        snprintf(err, errlen, "socket activation: fd %d (%s): cannot make it non-blocking: %s",
                 fd, what, strerror(errno));
        return -1;
    }
    s->a.len = len;
    s->want = s->a;
    s->backlog = -1;      /* the first listener's backlog is applied with listen() */
    s->mode = -1;
    s->inherited = 1;
    s->fd = fd;
    snprintf(s->fdname, sizeof s->fdname, "%s", name);
    addr_format((const struct sockaddr *)&s->a.ss, len, s->name, sizeof s->name);
    if (family == AF_UNIX && ((const struct sockaddr_un *)&s->a.ss)->sun_path[0] == '\0')
        snprintf(s->name, sizeof s->name, "unix:@%.*s",
                 (int)(len - offsetof(struct sockaddr_un, sun_path) - 1),
                 ((const struct sockaddr_un *)&s->a.ss)->sun_path + 1);
    return 0;
}

int activation_take(server *srv, char *err, size_t errlen)
{
    const char *pid_text = getenv("LISTEN_PID");
    const char *fds_text = getenv("LISTEN_FDS");
    const char *names_text = getenv("LISTEN_FDNAMES");
    char *names = names_text != NULL ? strdup(names_text) : NULL;
    long pid = parse_count(pid_text, LONG_MAX);
    long n = parse_count(fds_text, MAX_FDS);
    int rc = -1;
    if (fds_text != NULL && pid != (long)getpid())
        log_info("socket activation: LISTEN_FDS=%s is for pid %s, not this process (%ld): "
                 "ignored", fds_text, pid_text != NULL ? pid_text : "(unset)", (long)getpid());
    else if (fds_text != NULL && n < 0)
        log_warn("socket activation: LISTEN_FDS=%s is not a number of sockets (1..%d): "
                 "ignored", fds_text, MAX_FDS);
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    if (pid != (long)getpid() || n < 0) {
        free(names);
        return 0;
    }
    if (count_names(names) != 0 && count_names(names) != n) {
        log_warn("socket activation: LISTEN_FDNAMES=%s does not name %ld socket%s: names "
                 "ignored", names, n, n == 1 ? "" : "s");
        free(names);
        names = NULL;
    }
    /* Nothing of ours may leak into a program a plugin might run. */
    for (long i = 0; i < n; i++)
        fcntl(ACTIVATION_FD_START + (int)i, F_SETFD, FD_CLOEXEC);
    for (long i = 0; i < n; i++) {
        int fd = ACTIVATION_FD_START + (int)i;
        char name[sizeof ((sock *)0)->fdname];
        fd_name(names, i, name, sizeof name);
        sock **v = realloc(srv->socks, (srv->nsocks + 1) * sizeof *v);
        sock *s = v != NULL ? calloc(1, sizeof *s) : NULL;
        if (v != NULL)
            srv->socks = v;
        if (s == NULL) {
            snprintf(err, errlen, "socket activation: out of memory");
            goto out;
        }
        if (adopt(s, fd, name, err, errlen) < 0) {
            free(s);
            goto out;
        }
        srv->socks[srv->nsocks++] = s;
        log_info("socket activation: fd %d%s%s%s is %s", fd, name[0] ? " (" : "", name,
                 name[0] ? ")" : "", s->name);
    }
    rc = (int)n;
out:
    free(names);
    return rc;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ((const struct sockaddr_in *)ss)->sin_port;
    return ((const struct sockaddr_in6 *)ss)->sin6_port;
}

int activation_fits(const sock *s, const addr *a)
{
    const struct sockaddr_storage *h = &s->a.ss, *w = &a->ss;
    if (!s->inherited)
        return 0;
    if (a->any) {
        if (h->ss_family == AF_INET6)
            return port_of(h) == port_of(w) &&
                   IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)h)->sin6_addr);
        if (h->ss_family == AF_INET)
            return port_of(h) == port_of(w) &&
                   ((const struct sockaddr_in *)h)->sin_addr.s_addr == htonl(INADDR_ANY);
        return 0;
    }
    if (h->ss_family != w->ss_family)
        return 0;
    switch (h->ss_family) {
    case AF_INET:
        return port_of(h) == port_of(w) &&
               ((const struct sockaddr_in *)h)->sin_addr.s_addr ==
                   ((const struct sockaddr_in *)w)->sin_addr.s_addr;
    case AF_INET6: {
        const struct sockaddr_in6 *h6 = (const void *)h, *w6 = (const void *)w;
        return h6->sin6_port == w6->sin6_port && h6->sin6_scope_id == w6->sin6_scope_id &&
               memcmp(&h6->sin6_addr, &w6->sin6_addr, sizeof h6->sin6_addr) == 0;
    }
    case AF_UNIX: {
        const struct sockaddr_un *hu = (const void *)h, *wu = (const void *)w;
        return hu->sun_path[0] != '\0' &&
               strncmp(hu->sun_path, wu->sun_path, sizeof hu->sun_path) == 0;
    }
    }
    return 0;
}

int activation_check_claimed(const server *srv, const char *path, char *err, size_t errlen)
{
    for (size_t i = 0; i < srv->nsocks; i++) {
        const sock *s = srv->socks[i];
        if (!s->inherited || s->used != 0)
            continue;
        snprintf(err, errlen, "%s: socket activation: the service manager passed %s (fd %d%s%s) "
                 "and no listener binds it; its connections would wait unserved, so add it to "
                 "a listener's bind (or remove it from the socket unit and restart)", path,
                 s->name, s->fd, s->fdname[0] ? ", " : "", s->fdname);
        return -1;
    }
    return 0;
}
