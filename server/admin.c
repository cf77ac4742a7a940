/* admin.c - the [admin] listener: a thread with its own epoll loop serving /metrics and /healthz over HTTP/1.x. */
#define _GNU_SOURCE
#include "admin.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "server.h"

#define ADMIN_REQ_MAX 4096      /* bytes of a request's line and headers */
#define ADMIN_CLIENTS 64        /* admin connections at once; more are closed at accept */
#define ADMIN_BACKLOG 64
#define ADMIN_LINGER_MS 1000    /* wait for the client's FIN after the reply */
#define ADMIN_TIMEOUT_DEFAULT 5 /* seconds for a whole exchange */

/* The settings of an [admin] section. */
typedef struct admin_settings {
    int on;
    char *bind;                 /* as written */
    addr a;
    cidr *allow, *deny;
    size_t nallow, ndeny;
    long timeout;               /* seconds */
} admin_settings;

enum { CL_READ, CL_WRITE, CL_LINGER };

/* One admin connection: admin thread only. */
typedef struct client {
    int fd;
    int state;                  /* CL_* */
    int out_armed;              /* waiting for EPOLLOUT */
    uint64_t deadline;          /* ms, CLOCK_MONOTONIC */
    size_t len;
    char req[ADMIN_REQ_MAX + 1];
    buf resp;                   /* the whole reply, head and body */
} client;

struct admin {
    server *srv;
    admin_settings cur;         /* the running settings: read by the thread while it runs,
                                 * changed by the main thread only while it does not */
    admin_settings next;        /* prepared */
    int prepared;
    sock s;                     /* the running socket, fd -1 when none */
    sock ns;                    /* a socket admin_prepare() opened, fd -1 when none */
    pthread_t thread;
    int running;
    int stopfd;                 /* eventfd: the main thread asks the thread to end */
    /* The thread's own state. */
    int epfd;
    client *clients[ADMIN_CLIENTS];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void settings_free(admin_settings *st)
{
    free(st->bind);
    free(st->allow);
    free(st->deny);
    memset(st, 0, sizeof *st);
}

/* Whether the thread must restart to apply next over cur (the socket aside). */
static int settings_differ(const admin_settings *x, const admin_settings *y)
{
    return x->on != y->on || x->timeout != y->timeout || x->nallow != y->nallow ||
           x->ndeny != y->ndeny ||
           (x->nallow && memcmp(x->allow, y->allow, x->nallow * sizeof *x->allow) != 0) ||
           (x->ndeny && memcmp(x->deny, y->deny, x->ndeny * sizeof *x->deny) != 0);
}

/* The [admin] section of cfg into st (zeroed first; off without the
 * section). Returns 0, or -1 with "FILE:LINE: message" in err. */
static int settings_parse(const config *cfg, admin_settings *st, char *err, size_t errlen)
{
    char msg[512];
    memset(st, 0, sizeof *st);
    st->timeout = ADMIN_TIMEOUT_DEFAULT;
    const config_section *sec = config_section_find(cfg, "admin");
    if (sec == NULL)
        return 0;
    int line = sec->line;
    for (size_t i = 0; i < sec->count; i++) {
        const es_config_item *it = &sec->items[i];
        line = it->line;
        if (strcmp(it->key, "bind") == 0) {
            char e[256];
            if (addr_parse(it->value, &st->a, e, sizeof e) < 0) {
                snprintf(msg, sizeof msg, "bind: %s", e);
                goto fail;
            }
            if (config_resolve_unix(cfg->dir, &st->a, 1, e, sizeof e) < 0) {
                snprintf(msg, sizeof msg, "bind: %s", e);
                goto fail;
            }
            free(st->bind);
            st->bind = strdup(it->value);
            if (st->bind == NULL) {
                snprintf(msg, sizeof msg, "out of memory");
                goto fail;
            }
        } else if (strcmp(it->key, "allow") == 0 || strcmp(it->key, "deny") == 0) {
            int allow = it->key[0] == 'a';
            char e[256];
            cidr *list;
            size_t n;
            if (cidr_parse_list(it->value, &list, &n, e, sizeof e) < 0) {
                snprintf(msg, sizeof msg, "%s: %s", it->key, e);
                goto fail;
            }
            free(allow ? st->allow : st->deny);
            *(allow ? &st->allow : &st->deny) = list;
            *(allow ? &st->nallow : &st->ndeny) = n;
        } else if (strcmp(it->key, "timeout") == 0) {
            char *end;
            errno = 0;
            long v = strtol(it->value, &end, 10);
            if (errno != 0 || end == it->value || *end != '\0' || v < 1 || v > 3600) {
                snprintf(msg, sizeof msg, "timeout: '%s' is not a number of seconds from 1 to "
                         "3600", it->value);
                goto fail;
            }
            st->timeout = v;
        } else {
            snprintf(msg, sizeof msg, "unknown key '%s' in [admin] (expected bind, allow, deny "
                     "or timeout)", it->key);
            goto fail;
        }
    }
    if (st->bind == NULL) {
        line = sec->line;
        snprintf(msg, sizeof msg, "[admin] has no bind (required)");
        goto fail;
    }
    st->on = 1;
    return 0;
fail:
    snprintf(err, errlen, "%s:%d: %s", cfg->path, line, msg);
    settings_free(st);
    return -1;
}

admin *admin_new(server *srv)
{
    admin *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->srv = srv;
    a->s.fd = a->ns.fd = -1;
    a->stopfd = a->epfd = -1;
    return a;
}

int admin_prepare(admin *a, const config *cfg, int bind_it, char *err, size_t errlen)
{
    admin_abort(a);
    if (settings_parse(cfg, &a->next, err, errlen) < 0)
        return -1;
    if (!bind_it)
        return 0;
    if (a->next.on && !(a->s.fd >= 0 && addr_equal(&a->s.want, &a->next.a))) {
        char msg[512];
        if (sock_open(&a->ns, &a->next.a, ADMIN_BACKLOG, -1, msg, sizeof msg) < 0) {
            snprintf(err, errlen, "%s: [admin]: %s", cfg->path, msg);
            a->ns.fd = -1;
            settings_free(&a->next);
            return -1;
        }
    }
    a->prepared = 1;
    return 0;
}

void admin_abort(admin *a)
{
    if (a->ns.fd >= 0)
        sock_close(&a->ns);
    a->ns.fd = -1;
    settings_free(&a->next);
    a->prepared = 0;
}

/* The admin thread. */

static void client_close(admin *a, int i)
{
    client *cl = a->clients[i];
    close(cl->fd); /* leaves the epoll set with it */
    buf_free(&cl->resp);
    free(cl);
    a->clients[i] = NULL;
}

static const char *reason_of(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

/* The reply into cl->resp: status line, headers, and body unless head. */
static int reply(client *cl, int status, const char *ctype, const void *body, size_t len,
                 int head)
{
    char h[512];
    int n = snprintf(h, sizeof h,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                     status, reason_of(status), ctype, len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "");
    cl->resp.len = cl->resp.off = 0;
    if (buf_append(&cl->resp, h, (size_t)n) < 0)
        return -1;
    if (!head && len > 0 && buf_append(&cl->resp, body, len) < 0)
        return -1;
    return 0;
}

static int reply_text(client *cl, int status, const char *text, int head)
{
    return reply(cl, status, "text/plain; charset=utf-8", text, strlen(text), head);
}

/* Answer the request in cl->req[0..len), whose head is complete (or
 * too large when complete is 0). Returns 0, or -1 when out of memory. */
static int handle(admin *a, client *cl, int complete)
{
    if (!complete)
        return reply_text(cl, 431, "request too large\n", 0);
    char *line = cl->req;
    char *eol = memchr(line, '\n', cl->len);
    size_t ll = (size_t)(eol - line);
    if (ll > 0 && line[ll - 1] == '\r')
        ll--;
    line[ll] = '\0';
    /* METHOD SP TARGET SP HTTP/1.x */
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL || sp1 == line || sp1 - line > 16 || sp1[1] != '/' ||
        (strcmp(sp2 + 1, "HTTP/1.1") != 0 && strcmp(sp2 + 1, "HTTP/1.0") != 0))
        return reply_text(cl, 400, "bad request\n", 0);
    for (char *p = line; p < sp1; p++)
        if (*p < 'A' || *p > 'Z')
            return reply_text(cl, 400, "bad request\n", 0);
    *sp1 = *sp2 = '\0';
    char *target = sp1 + 1;
    target[strcspn(target, "?")] = '\0';
    int head = strcmp(line, "HEAD") == 0;
    if (!head && strcmp(line, "GET") != 0)
        return reply_text(cl, 405, "method not allowed: GET or HEAD\n", 0);
    if (strcmp(target, "/healthz") == 0) {
        if (atomic_load(&a->srv->stopping) != 0)
            return reply_text(cl, 503, "shutting down\n", head);
        return reply_text(cl, 200, "ok\n", head);
    }
    if (strcmp(target, "/metrics") == 0) {
        buf body = {0};
        if (metrics_render(a->srv->metrics, &body) < 0) {
            buf_free(&body);
            return reply_text(cl, 500, "out of memory\n", head);
        }
        int rc = reply(cl, 200, "text/plain; version=0.0.4; charset=utf-8", buf_head(&body),
                       body.len, head);
        buf_free(&body);
        return rc;
    }
    return reply_text(cl, 404, "not found: try /metrics or /healthz\n", head);
}

static int set_events(admin *a, client *cl, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = cl};
    return epoll_ctl(a->epfd, EPOLL_CTL_MOD, cl->fd, &e);
}

/* Send what is left of the reply; once sent, FIN and wait for the
 * client's. Returns 0, or -1 when cl is done with (to close). */
static int client_write(admin *a, client *cl, uint64_t now)
{
    while (cl->resp.len > 0) {
        ssize_t n = send(cl->fd, buf_head(&cl->resp), cl->resp.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return -1;
            if (cl->out_armed)
                return 0;
            cl->out_armed = 1;
            return set_events(a, cl, EPOLLOUT);
        }
        buf_consume(&cl->resp, (size_t)n);
    }
    buf_free(&cl->resp);
    shutdown(cl->fd, SHUT_WR);
    cl->state = CL_LINGER;
    if (cl->deadline > now + ADMIN_LINGER_MS)
        cl->deadline = now + ADMIN_LINGER_MS;
    return set_events(a, cl, EPOLLIN);
}

/* Events on cl. Returns 0, or -1 when cl is done with (to close). */
static int client_event(admin *a, client *cl, uint64_t now)
{
    if (cl->state == CL_WRITE)
        return client_write(a, cl, now);
    if (cl->state == CL_LINGER) {
        char sink[512];
        ssize_t n = recv(cl->fd, sink, sizeof sink, 0);
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) ? -1 : 0;
    }
    for (;;) {
        ssize_t n = recv(cl->fd, cl->req + cl->len, ADMIN_REQ_MAX - cl->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0)
            return -1; /* gone before a whole request: nothing to answer */
        /* Look for the end of the head from a little before the new bytes. */
        size_t from = cl->len > 3 ? cl->len - 3 : 0;
        cl->len += (size_t)n;
        cl->req[cl->len] = '\0';
        int complete = memmem(cl->req + from, cl->len - from, "\r\n\r\n", 4) != NULL ||
                       memmem(cl->req + from, cl->len - from, "\n\n", 2) != NULL;
        if (complete || cl->len == ADMIN_REQ_MAX) {
            if (handle(a, cl, complete) < 0)
                return -1;
            cl->state = CL_WRITE;
            return client_write(a, cl, now);
        }
    }
}

static void admin_accept(admin *a, uint64_t now)
{
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(a->s.fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                log_warn("admin: accept on %s: %s", a->s.name, strerror(errno));
            return;
        }
        const struct sockaddr *sa = (const struct sockaddr *)&ss;
        if ((sa->sa_family == AF_INET || sa->sa_family == AF_INET6) &&
            (cidr_list_match(a->cur.deny, a->cur.ndeny, sa) ||
             (a->cur.nallow > 0 && !cidr_list_match(a->cur.allow, a->cur.nallow, sa)))) {
            log_debug("admin: refusing a peer not allowed on %s", a->s.name);
            close(fd);
            continue;
        }
        int i = 0;
        while (i < ADMIN_CLIENTS && a->clients[i] != NULL)
            i++;
        client *cl = i < ADMIN_CLIENTS ? calloc(1, sizeof *cl) : NULL;
        if (cl == NULL) {
            log_debug("admin: %s: closing a connection", i < ADMIN_CLIENTS
                                                             ? "out of memory"
                                                             : "too many admin connections");
            close(fd);
            continue;
        }
        cl->fd = fd;
        cl->state = CL_READ;
        cl->deadline = now + (uint64_t)a->cur.timeout * 1000u;
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = cl};
        if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
            close(fd);
            free(cl);
            continue;
        }
        a->clients[i] = cl;
    }
}

/* Close the connections past their deadline (a request still unread gets
 * a 408 if the socket takes it). Returns the ms until the next deadline,
 * or -1. */
static int admin_timers(admin *a, uint64_t now)
{
    uint64_t next = UINT64_MAX;
    for (int i = 0; i < ADMIN_CLIENTS; i++) {
        client *cl = a->clients[i];
        if (cl == NULL)
            continue;
        if (now >= cl->deadline) {
            if (cl->state == CL_READ && reply_text(cl, 408, "request timeout\n", 0) == 0) {
                ssize_t n = send(cl->fd, buf_head(&cl->resp), cl->resp.len,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                (void)n;
            }
            client_close(a, i);
        } else if (cl->deadline < next) {
            next = cl->deadline;
        }
    }
    if (next == UINT64_MAX)
        return -1;
    return next - now > INT_MAX ? INT_MAX : (int)(next - now);
}

static void *admin_main(void *arg)
{
    admin *a = arg;
    static const uint8_t listen_mark = 1, stop_mark = 2;
    struct epoll_event ev[32];
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = (void *)&listen_mark};
    if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->s.fd, &e) < 0) {
        log_error("admin: epoll_ctl: %s: the admin listener stops", strerror(errno));
        return NULL;
    }
    e.data.ptr = (void *)&stop_mark;
    if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, a->stopfd, &e) < 0) {
        log_error("admin: epoll_ctl: %s: the admin listener stops", strerror(errno));
        goto out;
    }
    for (;;) {
        int timeout = admin_timers(a, now_ms());
        int n = epoll_wait(a->epfd, ev, 32, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            log_error("admin: epoll_wait: %s: the admin listener stops", strerror(errno));
            break;
        }
        uint64_t now = now_ms();
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &stop_mark)
                goto out;
            if (ev[i].data.ptr == &listen_mark) {
                admin_accept(a, now);
                continue;
            }
            client *cl = ev[i].data.ptr;
            if (client_event(a, cl, now) < 0) {
                for (int j = 0; j < ADMIN_CLIENTS; j++)
                    if (a->clients[j] == cl)
                        client_close(a, j);
            }
        }
    }
out:
    for (int i = 0; i < ADMIN_CLIENTS; i++)
        if (a->clients[i] != NULL)
            client_close(a, i);
    epoll_ctl(a->epfd, EPOLL_CTL_DEL, a->s.fd, NULL);
    return NULL;
}

/* Stop the thread, if running, and wait for it. Main thread. */
static void admin_stop(admin *a)
{
    if (a->running) {
        uint64_t one = 1;
        ssize_t r = write(a->stopfd, &one, sizeof one);
        (void)r;
        pthread_join(a->thread, NULL);
        a->running = 0;
    }
    if (a->epfd >= 0)
        close(a->epfd);
    if (a->stopfd >= 0)
        close(a->stopfd);
    a->epfd = a->stopfd = -1;
}

int admin_commit(admin *a)
{
    if (!a->prepared)
        return 0;
    int new_sock = a->ns.fd >= 0;
    int restart = new_sock || settings_differ(&a->cur, &a->next) || (a->next.on && !a->running);
    if (restart)
        admin_stop(a);
    if (new_sock || !a->next.on) {
        if (a->s.fd >= 0)
            sock_close(&a->s);
        a->s.fd = -1;
    }
    if (new_sock) {
        a->s = a->ns;
        a->ns.fd = -1;
    }
    if (restart || !a->next.on) {
        /* The thread (if any) is stopped: its settings may change. */
        settings_free(&a->cur);
        a->cur = a->next;
        memset(&a->next, 0, sizeof a->next);
    } else {
        /* Equal settings: the running thread keeps reading its own. */
        settings_free(&a->next);
    }
    a->prepared = 0;
    if (!a->cur.on)
        return 0;
    if (restart) {
        a->epfd = epoll_create1(EPOLL_CLOEXEC);
        a->stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        int rc = a->epfd < 0 || a->stopfd < 0 ? errno : 0;
        if (rc == 0)
            rc = pthread_create(&a->thread, NULL, admin_main, a);
        if (rc != 0) {
            log_error("admin: cannot start its thread: %s: the admin listener is off",
                      strerror(rc));
            admin_stop(a);
            return -1;
        }
        a->running = 1;
    }
    log_msg(ES_LOG_INFO | LOG_ALWAYS, "admin listening on %s", a->s.name);
    return 0;
}

void admin_free(admin *a)
{
    if (a == NULL)
        return;
    admin_stop(a);
    admin_abort(a);
    if (a->s.fd >= 0)
        sock_close(&a->s);
    settings_free(&a->cur);
    free(a);
}
