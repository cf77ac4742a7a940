/* listener.c - opens the listening sockets: TCP over IPv4/IPv6 and unix sockets. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "server.h"

/* A unix socket file left by a dead server is removed; a live one is not. */
static int unix_prepare(const struct sockaddr_un *sun, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(sun->sun_path, &st) < 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "cannot bind unix:%s: file exists and is not a socket",
                 sun->sun_path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int live = connect(fd, (const struct sockaddr *)sun, sizeof *sun) == 0;
    close(fd);
    if (live) {
        snprintf(err, errlen, "cannot bind unix:%s: another server is listening there",
                 sun->sun_path);
        return -1;
    }
    unlink(sun->sun_path);
    return 0;
}

int sock_open(sock *l, const addr *a, int backlog, long mode, char *err, size_t errlen)
{
    char text[ADDR_TEXT_MAX];
    memset(l, 0, sizeof *l);
    l->fd = -1;
    l->want = *a;
    l->a = *a;
    l->backlog = backlog;
    l->mode = mode;
    addr_format((const struct sockaddr *)&a->ss, a->len, text, sizeof text);

    int family = a->ss.ss_family;
    if (family == AF_UNIX && unix_prepare((const struct sockaddr_un *)&a->ss, err, errlen) < 0)
        return -1;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && a->any && (errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT)) {
        /* No IPv6 here: the wildcard falls back to IPv4 only. */
        struct sockaddr_in *s4 = (struct sockaddr_in *)&l->a.ss;
        uint16_t port = ((const struct sockaddr_in6 *)&a->ss)->sin6_port;
        memset(&l->a.ss, 0, sizeof l->a.ss);
        s4->sin_family = AF_INET;
        s4->sin_port = port;
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
        l->a.len = sizeof *s4;
        family = AF_INET;
        fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a socket for %s: %s", text, strerror(errno));
        return -1;
    }
    int one = 1, zero = 0;
    if (family != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, a->any ? &zero : &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&l->a.ss, l->a.len) < 0) {
        snprintf(err, errlen, "cannot bind %s: %s", text, strerror(errno));
        goto fail;
    }
    /* Before listen(): no client can connect while the file still has the
     * umask's mode. */
    if (family == AF_UNIX && mode >= 0 &&
        chmod(((const struct sockaddr_un *)&l->a.ss)->sun_path, (mode_t)mode) < 0) {
        snprintf(err, errlen, "cannot set socket_mode %04lo on %s: %s", mode, text,
                 strerror(errno));
        unlink(((const struct sockaddr_un *)&l->a.ss)->sun_path);
        goto fail;
    }
    if (listen(fd, backlog) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", text, strerror(errno));
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (family != AF_UNIX && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        addr_format((struct sockaddr *)&ss, sl, l->name, sizeof l->name);
        /* The port the kernel chose, for a reload that names it. */
        memcpy(&l->a.ss, &ss, sl);
        l->a.len = sl;
    } else {
        snprintf(l->name, sizeof l->name, "%s", text);
    }
    l->fd = fd;
    return 0;
fail:
    close(fd);
    return -1;
}

int sock_update(sock *s, int backlog, long mode, char *err, size_t errlen)
{
    if (backlog != s->backlog) {
        /* listen() again only changes the backlog of a listening socket. */
        if (listen(s->fd, backlog) < 0) {
            snprintf(err, errlen, "cannot change the backlog of %s to %d: %s", s->name, backlog,
                     strerror(errno));
            return -1;
        }
        s->backlog = backlog;
    }
    /* An inherited socket file's mode is the socket unit's (SocketMode=). */
    if (mode != s->mode && mode >= 0 && s->a.ss.ss_family == AF_UNIX && !s->inherited) {
        const char *path = ((const struct sockaddr_un *)&s->a.ss)->sun_path;
        if (chmod(path, (mode_t)mode) < 0) {
            snprintf(err, errlen, "cannot set socket_mode %04lo on %s: %s", mode, s->name,
                     strerror(errno));
            return -1;
        }
    }
    s->mode = mode;
    return 0;
}

void sock_close(sock *l)
{
    if (l->fd < 0)
        return;
    close(l->fd);
    l->fd = -1;
    /* An inherited socket's file belongs to the service manager, which keeps
     * the socket open for the next start. */
    if (l->a.ss.ss_family == AF_UNIX && !l->inherited)
        unlink(((struct sockaddr_un *)&l->a.ss)->sun_path);
}
