/* bench/baseline.c — minimal single-threaded level-triggered epoll echo server, the reference echosrv is benchmarked against. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "addr.h"
#include "common.h"

#define BUF_SIZE (64 * 1024)
#define BACKLOG 1024            /* same as echosrv's default */
#define MAX_EVENTS 256
#define ACCEPT_PAUSE_MS 100     /* on EMFILE/ENFILE stop accepting this long */

/* Unsent output of one connection, indexed by fd; data == NULL when nothing is pending. */
struct pending {
    char *data;
    size_t off, len;
    int open;
};

static char g_buf[BUF_SIZE];
static struct pending *g_pend;
static size_t g_npend;
static int g_epfd = -1;

static void usage(FILE *f)
{
    fprintf(f, "usage: baseline -a HOST:PORT | -a [IPv6]:PORT | -a unix:/path\n"
               "Minimal epoll echo server (every byte back as it comes); port 0 picks a free port.\n"
               "Prints 'listening on ADDRESS' on stderr once accepting; exits on SIGTERM/SIGINT.\n");
}

/* Make g_pend hold index fd. Returns 0 or -1. */
static int pend_reserve(int fd)
{
    size_t n = g_npend ? g_npend : 1024;
    struct pending *p;

    if ((size_t)fd < g_npend)
        return 0;
    while (n <= (size_t)fd)
        n *= 2;
    p = realloc(g_pend, n * sizeof(*p));
    if (p == NULL)
        return -1;
    memset(p + g_npend, 0, (n - g_npend) * sizeof(*p));
    g_pend = p;
    g_npend = n;
    return 0;
}

static void conn_close(int fd)
{
    free(g_pend[fd].data);
    memset(&g_pend[fd], 0, sizeof(g_pend[fd]));
    close(fd);                  /* also removes it from the epoll set */
}

static int conn_interest(int fd, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };

    return epoll_ctl(g_epfd, EPOLL_CTL_MOD, fd, &ev);
}

/* Write what is pending; once empty, go back to reading. */
static void conn_flush(int fd)
{
    struct pending *p = &g_pend[fd];
    ssize_t w = send(fd, p->data + p->off, p->len - p->off, MSG_NOSIGNAL);

    if (w < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        conn_close(fd);
        return;
    }
    p->off += (size_t)w;
    if (p->off < p->len)
        return;
    free(p->data);
    p->data = NULL;
    p->off = p->len = 0;
    if (conn_interest(fd, EPOLLIN) < 0)
        conn_close(fd);
}

/* One read per readiness event, then write back what was read. */
static void conn_read(int fd)
{
    struct pending *p = &g_pend[fd];
    ssize_t n = read(fd, g_buf, sizeof(g_buf));
    ssize_t w;

    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(fd);
        return;
    }
    w = send(fd, g_buf, (size_t)n, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            conn_close(fd);
            return;
        }
        w = 0;
    }
    if (w == n)
        return;
    /* Partial write: keep the rest and stop reading until it is flushed. */
    p->len = (size_t)(n - w);
    p->off = 0;
    p->data = malloc(p->len);
    if (p->data == NULL) {
        conn_close(fd);
        return;
    }
    memcpy(p->data, g_buf + w, p->len);
    if (conn_interest(fd, EPOLLOUT) < 0)
        conn_close(fd);
}

/* Accept what is pending. Returns 0, or -1 when out of descriptors (caller pauses accepting). */
static int listener_accept(int lfd)
{
    static const int one = 1;

    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct epoll_event ev = { .events = EPOLLIN };

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                return -1;
            return 0;           /* EAGAIN, or an error of that one connection */
        }
        /* Replies are written as soon as they are read: do not let Nagle hold them. */
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        ev.data.fd = fd;
        if (pend_reserve(fd) < 0 || epoll_ctl(g_epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            continue;
        }
        g_pend[fd].open = 1;
    }
}

/* Bind and listen on spec; the actual address goes to name. Returns the fd, or -1 with err set. */
static int listener_open(const char *spec, char *name, size_t namelen, char *err, size_t errlen)
{
    addr a;
    int fd;
    static const int one = 1, zero = 0;

    if (addr_parse(spec, &a, err, errlen) < 0)
        return -1;
    fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (a.ss.ss_family != AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a.any)                  /* ":PORT": dual-stack, as echosrv does */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (bind(fd, (struct sockaddr *)&a.ss, a.len) < 0 || listen(fd, BACKLOG) < 0) {
        snprintf(err, errlen, "%s: %s", spec, strerror(errno));
        close(fd);
        return -1;
    }
    a.len = sizeof(a.ss);
    if (a.ss.ss_family != AF_UNIX)
        getsockname(fd, (struct sockaddr *)&a.ss, &a.len);
    addr_format((struct sockaddr *)&a.ss, a.len, name, namelen);
    return fd;
}

int main(int argc, char **argv)
{
    const char *addr_text = NULL;
    char err[512], name[300];
    struct epoll_event evs[MAX_EVENTS], ev;
    sigset_t mask;
    int lfd, sfd, opt, running = 1, paused = 0;
    uint64_t resume_at = 0;

    while ((opt = getopt(argc, argv, "a:h")) != -1) {
        switch (opt) {
        case 'a':
            addr_text = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (addr_text == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    g_epfd = epoll_create1(EPOLL_CLOEXEC);
    if (sfd < 0 || g_epfd < 0) {
        fprintf(stderr, "baseline: %s\n", strerror(errno));
        return 1;
    }
    ev.events = EPOLLIN;
    ev.data.fd = sfd;
    epoll_ctl(g_epfd, EPOLL_CTL_ADD, sfd, &ev);

    lfd = listener_open(addr_text, name, sizeof(name), err, sizeof(err));
    if (lfd < 0) {
        fprintf(stderr, "baseline: %s\n", err);
        return 1;
    }
    ev.events = EPOLLIN;
    ev.data.fd = lfd;
    epoll_ctl(g_epfd, EPOLL_CTL_ADD, lfd, &ev);
    fprintf(stderr, "baseline: listening on %s\n", name);

    while (running) {
        int timeout = -1, n, i;

        if (paused) {
            uint64_t now = bench_now_ns();

            if (now >= resume_at) {
                ev.events = EPOLLIN;
                ev.data.fd = lfd;
                epoll_ctl(g_epfd, EPOLL_CTL_ADD, lfd, &ev);
                paused = 0;
            } else {
                timeout = (int)((resume_at - now) / 1000000) + 1;
            }
        }
        n = epoll_wait(g_epfd, evs, MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "baseline: epoll_wait: %s\n", strerror(errno));
            return 1;
        }
        for (i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            uint32_t e = evs[i].events;

            if (fd == sfd) {
                running = 0;
            } else if (fd == lfd) {
                if (listener_accept(lfd) < 0) {
                    epoll_ctl(g_epfd, EPOLL_CTL_DEL, lfd, NULL);
                    paused = 1;
                    resume_at = bench_now_ns() + ACCEPT_PAUSE_MS * 1000000ull;
                }
            } else if (!g_pend[fd].open) {
                continue;       /* closed earlier in this batch */
            } else if (g_pend[fd].data != NULL) {
                conn_flush(fd);
            } else if (e & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                conn_read(fd);
            }
        }
    }

    for (size_t fd = 0; fd < g_npend; fd++)
        if (g_pend[fd].open)
            conn_close((int)fd);
    close(lfd);
    if (strncmp(addr_text, "unix:", 5) == 0)
        unlink(addr_text + 5);
    free(g_pend);
    return 0;
}
