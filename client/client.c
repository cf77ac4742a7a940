/* client.c - libechoclient: a pool of echo-protocol connections driven by one I/O thread with its own epoll loop. */
#define _GNU_SOURCE
#include "echosrv/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "addr.h"
#include "buf.h"
#include "frame.h"
#include "tls.h"

/*
 * Threads and locks.
 *
 * The I/O thread owns every socket and every connection (struct conn): only
 * it reads or changes them. Other threads talk to it through the client's
 * mutex `mu` (the FIFO queue of requests, the commands, the counters) and
 * wake it with the eventfd. A future has its own mutex and condition
 * variable, since it may outlive the client. Lock order: client_link.mu,
 * then es_client.mu; es_future.mu is never held while taking another lock.
 *
 * Counters are changed under `mu` before the future they concern is
 * completed, so a caller that sees its reply also sees the counters that
 * include it.
 *
 * The pool. Requests wait in one FIFO queue; the I/O thread hands the head
 * to an idle connection (the most recently used, checked with a
 * non-blocking peek for an EOF epoll has not reported yet) or opens new
 * connections while fewer than pool_size are open or opening. A connection
 * carries one request at a time. It is discarded, never reused, when the
 * server closed it or sent unasked-for bytes while idle (idle connections
 * stay registered for EPOLLIN|EPOLLRDHUP), after the reply to QUIT, after
 * any failure mid-request (the request fails and is not retried), and on
 * es_response_close_connection.
 *
 * Timers. Every connection attempt gets now + connect_timeout_ms and every
 * request now + request_timeout_ms, so appending to the `connecting` and
 * `busy` lists keeps them ordered by deadline: expiring is O(1) per entry
 * and epoll_wait sleeps until the earlier head.
 *
 * TLS (option tls). After the TCP connect a connection does its handshake
 * (CONN_HANDSHAKE, still in `connecting`, under the same deadline), driven
 * by SSL_connect from the epoll loop; only then does it count as a session
 * and join the pool. Every TLS read loops until SSL_read says WANT_READ, so
 * no decrypted byte waits inside OpenSSL where epoll cannot see it; either
 * direction may want the other (WANT_READ in a write, WANT_WRITE in a read,
 * remembered in want_out). An idle connection is read through SSL_read,
 * never peeked: TLS 1.3 servers send session tickets (and may send key
 * updates) after the handshake, which OpenSSL consumes; only application
 * data, close_notify, EOF or an error make it stale. A fatal alert on a
 * connection that never carried a request is its handshake failing late
 * (a TLS 1.3 server checks the client certificate after the client is
 * done) and fails the request waiting at the head of the queue. The
 * message and its separator sit in one buffer, so a request is one
 * SSL_write (partial writes enabled). Sockets go through tls.c's BIO,
 * which sends with MSG_NOSIGNAL (and the I/O thread blocks every signal).
 */

#define DEFAULT_SEPARATOR "\r\n\r\n"
#define ERR_MAX 256
#define MAX_EVENTS 64
#define READ_MIN 4096          /* smallest room offered to read() */
#define NS_PER_MS 1000000ull

/* The options of version 1.0: a caller's struct must be at least this big. */
#define OPTIONS_MIN_SIZE (offsetof(es_client_options, max_reply) + sizeof(size_t))

typedef struct conn conn;

/* Shared by a client and the full responses it made, so that
 * es_response_close_connection stays safe after es_client_free. */
typedef struct client_link {
    pthread_mutex_t mu;
    pthread_cond_t cv;  /* signalled when users drops to 0 */
    atomic_uint refs;
    es_client *client;  /* NULL once es_client_free started; under mu */
    unsigned users;     /* es_response_close_connection calls using client; under mu */
} client_link;

struct es_response {
    uint8_t *mem;         /* the allocation that holds the reply */
    const uint8_t *data;  /* the reply, separator excluded, NUL after it */
    size_t len;
    uint64_t conn_no;     /* 0 without full_response */
    es_timings t;
    client_link *link;    /* a reference; NULL without full_response */
    char local[ADDR_TEXT_MAX];
    char peer[ADDR_TEXT_MAX];
};

struct es_future {
    /* The request: set by es_client_submit, then owned by the queue (under
     * the client's mu) and then by the I/O thread until the future is done. */
    es_future *next;      /* in the client's queue */
    uint8_t *msg;         /* the copy of the message; freed once sent */
    size_t len;
    size_t sent;          /* bytes of message + separator written */
    int quit;             /* the message is QUIT: the server will close */
    es_timings t;

    atomic_int refs;      /* the caller's and the client's */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Under mu. */
    int done;
    int rc;
    es_response *resp;
    void (*cb)(es_future *f, void *arg);
    void *cb_arg;
    int cb_set;
    char err[ERR_MAX];
};

enum conn_state { CONN_CONNECTING, CONN_HANDSHAKE, CONN_IDLE, CONN_BUSY };

/* One connection; the I/O thread's alone. */
struct conn {
    conn *prev, *next;    /* in the client's list for its state */
    enum conn_state state;
    int fd;
    uint32_t events;      /* registered with epoll */
    uint64_t number;      /* the sessions counter when it opened */
    uint64_t deadline;    /* of the connect or of the request (ns); 0 = none */
    es_future *req;       /* the request it carries (CONN_BUSY) */
    buf in;               /* the reply read so far */
    frame_scan scan;
    int close_after;      /* es_response_close_connection while busy */
    SSL *ssl;             /* with tls, from the TCP connect on */
    int tls_up;           /* handshake done, no fatal error: close_notify on close */
    int want_out;         /* the last TLS operation waits for the socket to be writable */
    uint64_t served;      /* requests completed on it */
    char local[ADDR_TEXT_MAX]; /* with full_response */
    char peer[ADDR_TEXT_MAX];
};

typedef struct conn_list {
    conn *head, *tail;
    unsigned n;
} conn_list;

struct es_client {
    /* Set by es_client_new, read-only afterwards. */
    addr dest;
    char *addr_text;
    unsigned pool_size;
    int connect_timeout_ms;
    int request_timeout_ms;
    int full_response;
    uint8_t sep[FRAME_SEP_MAX];
    size_t sep_len;
    size_t max_reply;
    int epfd;
    int efd;
    pthread_t thread;
    int thread_started;
    client_link *link;    /* with full_response */
    SSL_CTX *tls_ctx;     /* with tls */
    char *tls_name;       /* the name verified (and sent as SNI); NULL: none */

    pthread_mutex_t mu;
    pthread_cond_t cmd_cv; /* signalled when cmd_done advances */
    /* Under mu. */
    es_future *q_head, *q_tail;
    es_client_stats st;   /* st.waiting is the queue length */
    int wake_pending;     /* the eventfd was written and not yet seen */
    int stopping;         /* es_client_free asked */
    int stopped;          /* the I/O thread has left its loop */
    int free_on_exit;     /* es_client_free was called on the I/O thread */
    int close_all;        /* es_client_close asked */
    uint64_t cmd_seq;     /* commands asked */
    uint64_t cmd_done;    /* commands carried out */
    uint64_t *close_nums; /* connections to close (es_response_close_connection) */
    size_t n_close, cap_close;

    /* The I/O thread's alone. */
    conn_list connecting; /* ordered by deadline */
    conn_list idle;       /* the most recently used last */
    conn_list busy;       /* ordered by deadline */
};

/* ---- small helpers ---------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static const char *errstr(int e, char *out, size_t len)
{
    return strerror_r(e, out, len);
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void list_append(conn_list *l, conn *k)
{
    k->next = NULL;
    k->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = k;
    else
        l->head = k;
    l->tail = k;
    l->n++;
}

static void list_remove(conn_list *l, conn *k)
{
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        l->head = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    else
        l->tail = k->prev;
    k->prev = k->next = NULL;
    l->n--;
}

static conn_list *list_of(es_client *c, conn *k)
{
    switch (k->state) {
    case CONN_CONNECTING:
    case CONN_HANDSHAKE:
        return &c->connecting;
    case CONN_IDLE:
        return &c->idle;
    default:
        return &c->busy;
    }
}

static int on_io_thread(es_client *c)
{
    return c->thread_started && pthread_equal(pthread_self(), c->thread);
}

/* Marks that the I/O thread must look at the queue and commands. Returns 1
 * if the caller must write the eventfd once it has released mu. Call with
 * mu held. */
static int wake_locked(es_client *c)
{
    if (c->wake_pending)
        return 0;
    c->wake_pending = 1;
    return 1;
}

static void wake_write(es_client *c)
{
    uint64_t one = 1;
    while (write(c->efd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

/* ---- futures and responses --------------------------------------------- */

static void future_unref(es_future *f)
{
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    es_response_free(f->resp);
    free(f->msg);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}

/* Completes f with rc (and resp, whose ownership passes to f, or the
 * message err), runs its callback and drops the client's reference. I/O
 * thread (or the submitting thread for a request refused at once). */
static void future_finish(es_future *f, int rc, es_response *resp, const char *err)
{
    free(f->msg);
    f->msg = NULL;
    pthread_mutex_lock(&f->mu);
    f->done = 1;
    f->rc = rc;
    f->resp = resp;
    if (err != NULL)
        snprintf(f->err, sizeof f->err, "%s", err);
    void (*cb)(es_future *, void *) = f->cb;
    void *arg = f->cb_arg;
    f->cb = NULL;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    if (cb != NULL)
        cb(f, arg);
    future_unref(f);
}

static void link_unref(client_link *l)
{
    if (l == NULL || atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* Cuts the link from c's responses to c and waits until no
 * es_response_close_connection uses c any more (unless wait is 0). */
static void link_detach(client_link *l, int wait)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    l->client = NULL;
    while (wait && l->users > 0)
        pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

/* ---- the queue (under mu) ---------------------------------------------- */

static es_future *queue_pop_locked(es_client *c)
{
    es_future *f = c->q_head;
    if (f == NULL)
        return NULL;
    c->q_head = f->next;
    if (c->q_head == NULL)
        c->q_tail = NULL;
    f->next = NULL;
    c->st.waiting--;
    return f;
}

/* Fails the request at the head of the queue, if any, with rc and msg. I/O
 * thread, mu not held. */
static void queue_fail_head(es_client *c, int rc, const char *msg)
{
    pthread_mutex_lock(&c->mu);
    es_future *f = queue_pop_locked(c);
    pthread_mutex_unlock(&c->mu);
    if (f != NULL)
        future_finish(f, rc, NULL, msg);
}

/* ---- connections (I/O thread) ------------------------------------------ */

static void conn_set_events(es_client *c, conn *k, uint32_t events)
{
    if (k->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = k};
    if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, k->fd, &ev) == 0)
        k->events = events;
}

/* The events k waits for in its state (TLS: also what OpenSSL waits for). */
static void conn_update_events(es_client *c, conn *k)
{
    uint32_t ev;

    switch (k->state) {
    case CONN_CONNECTING:
        ev = EPOLLOUT;
        break;
    case CONN_HANDSHAKE:
        ev = k->want_out ? EPOLLOUT : EPOLLIN;
        break;
    default:
        ev = EPOLLIN | EPOLLRDHUP;
        if (k->want_out || (k->ssl == NULL && k->req != NULL && k->req->msg != NULL))
            ev |= EPOLLOUT;
        break;
    }
    conn_set_events(c, k, ev);
}

/* Closes k (a close_notify first if its TLS session is sound: one
 * non-blocking attempt) and frees it. k must be out of every list. */
static void conn_free(conn *k)
{
    if (k->ssl != NULL) {
        if (k->tls_up) {
            ERR_clear_error();
            SSL_shutdown(k->ssl);
        }
        SSL_free(k->ssl);
        ERR_clear_error();
    }
    close(k->fd); /* also takes it out of the epoll set */
    buf_free(&k->in);
    free(k);
}

/* Closes k and frees it, taking it out of its list and out of the counters.
 * A request it carries is the caller's to complete (k->req is left alone). */
static void conn_discard(es_client *c, conn *k)
{
    list_remove(list_of(c, k), k);
    if (k->state == CONN_IDLE || k->state == CONN_BUSY) {
        pthread_mutex_lock(&c->mu);
        if (k->state == CONN_IDLE)
            c->st.available--;
        else
            c->st.in_use--;
        pthread_mutex_unlock(&c->mu);
    }
    conn_free(k);
}

/* Fails the request that busy connection k carries with rc and the
 * formatted message, and discards k. */
static void conn_fail(es_client *c, conn *k, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void conn_fail(es_client *c, conn *k, int rc, const char *fmt, ...)
{
    char msg[ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    es_future *f = k->req;
    k->req = NULL;
    conn_discard(c, k);
    future_finish(f, rc, NULL, msg);
}

/* A connection attempt failed: close k and fail the request at the head of
 * the queue, which was waiting for it. */
static void connect_failed(es_client *c, conn *k, int rc, const char *msg)
{
    conn_discard(c, k);
    queue_fail_head(c, rc, msg);
}

/* k is connected (and its TLS handshake done): it joins the pool, idle, as
 * session number sessions+1. */
static void conn_connected(es_client *c, conn *k)
{
    if (k->state == CONN_CONNECTING || k->state == CONN_HANDSHAKE)
        list_remove(&c->connecting, k);
    if (c->full_response) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        if (getsockname(k->fd, (struct sockaddr *)&ss, &len) == 0)
            addr_format((struct sockaddr *)&ss, len, k->local, sizeof k->local);
        len = sizeof ss;
        if (getpeername(k->fd, (struct sockaddr *)&ss, &len) == 0)
            addr_format((struct sockaddr *)&ss, len, k->peer, sizeof k->peer);
        else
            addr_format((const struct sockaddr *)&c->dest.ss, c->dest.len, k->peer,
                        sizeof k->peer);
    }
    k->state = CONN_IDLE;
    k->deadline = 0;
    k->want_out = 0;
    conn_set_events(c, k, EPOLLIN | EPOLLRDHUP);
    pthread_mutex_lock(&c->mu);
    k->number = ++c->st.sessions;
    c->st.available++;
    pthread_mutex_unlock(&c->mu);
    list_append(&c->idle, k);
}

/* Drives the TLS handshake of k one step. Returns 1 if it ended (k joined
 * the pool, or failed with the head request), 0 if it waits for the socket. */
static int conn_handshake(es_client *c, conn *k)
{
    char why[ERR_MAX - 64], msg[ERR_MAX];

    ERR_clear_error();
    int r = SSL_connect(k->ssl);
    if (r == 1) {
        k->tls_up = 1;
        conn_connected(c, k);
        return 1;
    }
    int e = SSL_get_error(k->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        k->want_out = e == SSL_ERROR_WANT_WRITE;
        conn_update_events(c, k);
        return 0;
    }
    int rc = tls_failure(k->ssl, r, e, why, sizeof why);
    snprintf(msg, sizeof msg, "TLS handshake with %s failed: %s", c->addr_text, why);
    connect_failed(c, k, rc, msg);
    return 1;
}

/* The TCP connection of k is up: with TLS its handshake starts, else it
 * joins the pool. Returns 1 if something changed that the dispatcher must
 * look at, 0 if the handshake waits for the socket. */
static int conn_tcp_up(es_client *c, conn *k)
{
    char why[ERR_MAX - 64], msg[ERR_MAX];

    if (c->tls_ctx == NULL) {
        conn_connected(c, k);
        return 1;
    }
    k->ssl = tls_conn_new(c->tls_ctx, k->fd, c->tls_name, why, sizeof why);
    if (k->ssl == NULL) {
        snprintf(msg, sizeof msg, "TLS with %s: %s", c->addr_text, why);
        connect_failed(c, k, -ENOMEM, msg);
        return 1;
    }
    k->state = CONN_HANDSHAKE;
    return conn_handshake(c, k);
}

/* Starts one connection. Returns 1 if something changed that the
 * dispatcher must look at (connected at once, or the head request failed),
 * 0 if the connection is in progress. */
static int conn_open(es_client *c)
{
    char msg[ERR_MAX], eb[64];
    conn *k = calloc(1, sizeof *k);
    if (k == NULL) {
        queue_fail_head(c, -ENOMEM, "out of memory");
        return 1;
    }
    int family = c->dest.ss.ss_family;
    k->fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (k->fd < 0) {
        int e = errno;
        snprintf(msg, sizeof msg, "cannot open a socket for %s: %s", c->addr_text,
                 errstr(e, eb, sizeof eb));
        free(k);
        queue_fail_head(c, -e, msg);
        return 1;
    }
    if (family != AF_UNIX) {
        int one = 1;
        setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    k->state = CONN_CONNECTING;
    k->events = EPOLLOUT;
    struct epoll_event ev = {.events = k->events, .data.ptr = k};
    if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, k->fd, &ev) < 0) {
        int e = errno;
        snprintf(msg, sizeof msg, "cannot watch a socket for %s: %s", c->addr_text,
                 errstr(e, eb, sizeof eb));
        close(k->fd);
        free(k);
        queue_fail_head(c, -e, msg);
        return 1;
    }
    list_append(&c->connecting, k);
    if (c->connect_timeout_ms > 0)
        k->deadline = now_ns() + (uint64_t)c->connect_timeout_ms * NS_PER_MS;
    int r = connect(k->fd, (const struct sockaddr *)&c->dest.ss, c->dest.len);
    if (r == 0)
        return conn_tcp_up(c, k);
    if (errno == EINPROGRESS || errno == EINTR)
        return 0;
    int e = errno;
    snprintf(msg, sizeof msg, "cannot connect to %s: %s", c->addr_text,
             errstr(e, eb, sizeof eb));
    connect_failed(c, k, -e, msg);
    return 1;
}

/* The request of k is all written: its buffer goes, k waits for the reply. */
static void conn_sent(es_client *c, conn *k)
{
    es_future *f = k->req;

    f->t.sent = now_ns();
    free(f->msg);
    f->msg = NULL;
    conn_update_events(c, k);
}

/* Writes what is left of the request of TLS connection k (message and
 * separator, one buffer) with SSL_write, partial writes allowed. Returns 0,
 * or -1 if k failed (and was freed). */
static int conn_write_tls(es_client *c, conn *k)
{
    es_future *f = k->req;
    size_t total = f->len + c->sep_len;

    while (f->sent < total) {
        size_t left = total - f->sent;
        ERR_clear_error();
        int w = SSL_write(k->ssl, f->msg + f->sent, left > INT_MAX ? INT_MAX : (int)left);
        if (w > 0) {
            f->sent += (size_t)w;
            continue;
        }
        int e = SSL_get_error(k->ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            k->want_out = e == SSL_ERROR_WANT_WRITE;
            conn_update_events(c, k);
            return 0;
        }
        char why[ERR_MAX - 96];
        int rc = tls_failure(k->ssl, w, e, why, sizeof why);
        k->tls_up = 0;
        if (rc == -EPIPE || rc == -ECONNRESET)
            conn_fail(c, k, rc,
                      "%s: the server closed the connection mid-request "
                      "(%zu of %zu bytes sent): %s",
                      c->addr_text, f->sent, total, why);
        else
            conn_fail(c, k, rc, "%s: cannot send over TLS: %s", c->addr_text, why);
        return -1;
    }
    k->want_out = 0;
    conn_sent(c, k);
    return 0;
}

/* Writes what is left of the request of k: message and separator in one
 * gather write, straight from the request's copy. sendmsg rather than
 * writev, for MSG_NOSIGNAL: a library must not raise SIGPIPE in its host.
 * Returns 0, or -1 if k failed (and was freed). */
static int conn_write(es_client *c, conn *k)
{
    if (k->ssl != NULL)
        return conn_write_tls(c, k);
    es_future *f = k->req;
    size_t total = f->len + c->sep_len;
    while (f->sent < total) {
        struct iovec iov[2];
        int n = 0;
        if (f->sent < f->len) {
            iov[n].iov_base = f->msg + f->sent;
            iov[n++].iov_len = f->len - f->sent;
            iov[n].iov_base = c->sep;
            iov[n++].iov_len = c->sep_len;
        } else {
            iov[n].iov_base = c->sep + (f->sent - f->len);
            iov[n++].iov_len = total - f->sent;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(k->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                conn_set_events(c, k, EPOLLIN | EPOLLRDHUP | EPOLLOUT);
                return 0;
            }
            int e = errno;
            char eb[64];
            if (e == EPIPE || e == ECONNRESET)
                conn_fail(c, k, -e,
                          "%s: the server closed the connection mid-request "
                          "(%zu of %zu bytes sent)",
                          c->addr_text, f->sent, total);
            else
                conn_fail(c, k, -e, "%s: cannot send: %s", c->addr_text,
                          errstr(e, eb, sizeof eb));
            return -1;
        }
        f->sent += (size_t)w;
    }
    conn_sent(c, k);
    return 0;
}

/* Gives idle connection k the request f (already out of the queue and
 * counted in use) and starts sending it. */
static void conn_start(es_client *c, conn *k, es_future *f)
{
    list_remove(&c->idle, k);
    k->state = CONN_BUSY;
    k->req = f;
    k->scan.sep = c->sep;
    k->scan.sep_len = c->sep_len;
    k->scan.scanned = 0;
    uint64_t now = now_ns();
    k->deadline = c->request_timeout_ms > 0
                      ? now + (uint64_t)c->request_timeout_ms * NS_PER_MS
                      : 0;
    list_append(&c->busy, k);
    conn_write(c, k);
}

/* The reply of k's request is the first frame_len bytes of k->in: hand it
 * over and put k back in the pool, or discard it if it must not be reused. */
static void conn_reply(es_client *c, conn *k, size_t frame_len)
{
    es_future *f = k->req;
    int reuse = k->in.len == frame_len             /* nothing unasked for after it */
                && f->sent == f->len + c->sep_len  /* the whole request went out */
                && !f->quit && !k->close_after
                && (k->ssl == NULL || SSL_pending(k->ssl) == 0); /* nor inside OpenSSL */
    es_response *r = calloc(1, sizeof *r);
    if (r == NULL) {
        conn_fail(c, k, -ENOMEM, "out of memory");
        return;
    }
    r->mem = k->in.data;
    r->data = buf_head(&k->in);
    r->len = frame_len - c->sep_len;
    r->mem[k->in.off + r->len] = '\0'; /* over the separator's first byte */
    memset(&k->in, 0, sizeof k->in);
    f->t.done = now_ns();
    if (c->full_response) {
        r->conn_no = k->number;
        r->t = f->t;
        memcpy(r->local, k->local, sizeof r->local);
        memcpy(r->peer, k->peer, sizeof r->peer);
        r->link = c->link;
        atomic_fetch_add_explicit(&c->link->refs, 1, memory_order_relaxed);
    }
    k->req = NULL;
    k->served++;
    pthread_mutex_lock(&c->mu);
    c->st.requests_processed++;
    if (reuse) {
        c->st.in_use--;
        c->st.available++;
    }
    pthread_mutex_unlock(&c->mu);
    if (reuse) {
        list_remove(&c->busy, k);
        k->state = CONN_IDLE;
        k->deadline = 0;
        conn_update_events(c, k);
        list_append(&c->idle, k);
    } else {
        conn_discard(c, k);
    }
    future_finish(f, 0, r, NULL);
}

/* SSL_read on busy connection k returned r <= 0: wait for the socket, or
 * fail the request with OpenSSL's reason. */
static void conn_read_tls_failed(es_client *c, conn *k, int r)
{
    int e = SSL_get_error(k->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        /* A write still pending keeps its own wish for EPOLLOUT. */
        if (k->req->msg == NULL || e == SSL_ERROR_WANT_WRITE)
            k->want_out = e == SSL_ERROR_WANT_WRITE;
        conn_update_events(c, k);
        return;
    }
    char why[ERR_MAX - 96];
    int rc = tls_failure(k->ssl, r, e, why, sizeof why);
    k->tls_up = e == SSL_ERROR_ZERO_RETURN;
    if (rc == -EPROTO && k->served == 0 && k->in.len == 0)
        conn_fail(c, k, rc, "TLS handshake with %s failed: %s", c->addr_text, why);
    else if (rc == -EPROTO)
        conn_fail(c, k, rc, "%s: TLS error mid-reply (%zu bytes of the reply received): %s",
                  c->addr_text, k->in.len, why);
    else
        conn_fail(c, k, rc,
                  "%s: the server closed the connection mid-reply "
                  "(%zu bytes of the reply received): %s",
                  c->addr_text, k->in.len, why);
}

/* Reads what the server sent on busy connection k. */
static void conn_read(es_client *c, conn *k)
{
    es_future *f = k->req;
    size_t expected = f->len + c->sep_len;
    for (;;) {
        size_t want = expected > k->in.len ? expected - k->in.len : 0;
        if (want < READ_MIN)
            want = READ_MIN;
        if (k->in.len < c->max_reply && want > c->max_reply - k->in.len + 1)
            want = c->max_reply - k->in.len + 1;
        if (buf_reserve(&k->in, want) < 0) {
            conn_fail(c, k, -ENOMEM, "out of memory for a reply of %zu bytes", k->in.len + want);
            return;
        }
        ssize_t n;
        if (k->ssl != NULL) {
            size_t room = buf_room(&k->in);
            ERR_clear_error();
            int r = SSL_read(k->ssl, buf_tail(&k->in), room > INT_MAX ? INT_MAX : (int)room);
            if (r <= 0) {
                conn_read_tls_failed(c, k, r);
                return;
            }
            n = r;
        } else {
            n = read(k->fd, buf_tail(&k->in), buf_room(&k->in));
        }
        if (n > 0) {
            buf_commit(&k->in, (size_t)n);
            size_t fl = frame_next(&k->scan, buf_head(&k->in), k->in.len);
            if (fl > c->max_reply || (fl == 0 && k->in.len >= c->max_reply)) {
                conn_fail(c, k, -EMSGSIZE, "%s: reply longer than max_reply (%zu bytes)",
                          c->addr_text, c->max_reply);
                return;
            }
            if (fl > 0) {
                conn_reply(c, k, fl);
                return;
            }
            continue;
        }
        if (n == 0) {
            conn_fail(c, k, -ECONNRESET,
                      "%s: the server closed the connection mid-reply "
                      "(%zu bytes of the reply received)",
                      c->addr_text, k->in.len);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        int e = errno;
        char eb[64];
        if (e == ECONNRESET || e == EPIPE)
            conn_fail(c, k, -e,
                      "%s: the server closed the connection mid-reply "
                      "(reset after %zu bytes of the reply)",
                      c->addr_text, k->in.len);
        else
            conn_fail(c, k, -e, "%s: cannot receive: %s", c->addr_text,
                      errstr(e, eb, sizeof eb));
        return;
    }
}

/* Reads what arrived on idle TLS connection k. Records OpenSSL consumes
 * itself (session tickets, key updates) leave k in the pool; application
 * data, close_notify, EOF or an error make it stale, and it is discarded. A
 * protocol error (an alert) on a connection that never carried a request
 * is its handshake failing late (a TLS 1.3 server checks the client
 * certificate after the client has finished): the request at the head of
 * the queue fails with it, so a refused client does not reconnect forever.
 * Returns 0 if k stays, -1 if it was discarded. */
static int conn_idle_tls(es_client *c, conn *k)
{
    unsigned char scratch[64];

    ERR_clear_error();
    int r = SSL_read(k->ssl, scratch, sizeof scratch);
    if (r > 0) {
        conn_discard(c, k);
        return -1;
    }
    int e = SSL_get_error(k->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        k->want_out = e == SSL_ERROR_WANT_WRITE;
        conn_update_events(c, k);
        return 0;
    }
    char why[ERR_MAX - 64], msg[ERR_MAX];
    int rc = tls_failure(k->ssl, r, e, why, sizeof why);
    k->tls_up = e == SSL_ERROR_ZERO_RETURN;
    if (rc == -EPROTO && k->served == 0) {
        snprintf(msg, sizeof msg, "TLS handshake with %s failed: %s", c->addr_text, why);
        connect_failed(c, k, rc, msg);
    } else {
        conn_discard(c, k);
    }
    return -1;
}

static void conn_event(es_client *c, conn *k, uint32_t events)
{
    switch (k->state) {
    case CONN_CONNECTING: {
        int e = 0;
        socklen_t len = sizeof e;
        if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
            e = errno;
        if (e == 0 && !(events & (EPOLLERR | EPOLLHUP))) {
            conn_tcp_up(c, k);
        } else {
            char msg[ERR_MAX], eb[64];
            if (e == 0)
                e = ECONNREFUSED;
            snprintf(msg, sizeof msg, "cannot connect to %s: %s", c->addr_text,
                     errstr(e, eb, sizeof eb));
            connect_failed(c, k, -e, msg);
        }
        return;
    }
    case CONN_HANDSHAKE:
        conn_handshake(c, k);
        return;
    case CONN_IDLE:
        /* The server closed it, or sent what nobody asked for: it is stale.
         * Over TLS, what came may be a session ticket: OpenSSL decides. */
        if (k->ssl != NULL)
            conn_idle_tls(c, k);
        else
            conn_discard(c, k);
        return;
    case CONN_BUSY:
        /* Over TLS a write may wait for a read as well as for EPOLLOUT. */
        if ((k->ssl != NULL || (events & EPOLLOUT)) && k->req->msg != NULL &&
            conn_write(c, k) < 0)
            return;
        if (k->ssl != NULL || (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
            conn_read(c, k);
        return;
    }
}

/* Is idle connection k stale (the server closed it, or sent unasked-for
 * bytes) though epoll has not said so yet? One non-blocking peek, or over
 * TLS one SSL_read (see conn_idle_tls). A stale k is discarded. Returns 0
 * if k may carry a request, -1 if it is gone. Call without mu. */
static int conn_check_idle(es_client *c, conn *k)
{
    if (k->ssl != NULL)
        return conn_idle_tls(c, k);
    char b;
    ssize_t n;
    do
        n = recv(k->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    conn_discard(c, k);
    return -1;
}

/* Expires connection attempts and requests whose deadline has passed. Both
 * lists are ordered by deadline (every entry gets now + a fixed timeout). */
static void timers_expire(es_client *c, uint64_t now)
{
    while (c->connecting.head != NULL && c->connecting.head->deadline != 0 &&
           c->connecting.head->deadline <= now) {
        char msg[ERR_MAX];
        if (c->connecting.head->state == CONN_HANDSHAKE)
            snprintf(msg, sizeof msg,
                     "TLS handshake with %s timed out: not done within %d ms "
                     "(is it a TLS server?)",
                     c->addr_text, c->connect_timeout_ms);
        else
            snprintf(msg, sizeof msg, "cannot connect to %s: no answer within %d ms",
                     c->addr_text, c->connect_timeout_ms);
        connect_failed(c, c->connecting.head, -ETIMEDOUT, msg);
    }
    while (c->busy.head != NULL && c->busy.head->deadline != 0 &&
           c->busy.head->deadline <= now) {
        conn_fail(c, c->busy.head, -ETIMEDOUT, "%s: no reply within %d ms", c->addr_text,
                  c->request_timeout_ms);
    }
}

/* Milliseconds epoll_wait may sleep before the next deadline, or -1. */
static int timers_next_ms(es_client *c, uint64_t now)
{
    uint64_t next = 0;
    if (c->connecting.head != NULL && c->connecting.head->deadline != 0)
        next = c->connecting.head->deadline;
    if (c->busy.head != NULL && c->busy.head->deadline != 0 &&
        (next == 0 || c->busy.head->deadline < next))
        next = c->busy.head->deadline;
    if (next == 0)
        return -1;
    if (next <= now)
        return 0;
    uint64_t ms = (next - now + NS_PER_MS - 1) / NS_PER_MS;
    return ms > 60000 ? 60000 : (int)ms;
}

/* Hands queued requests to idle connections, in order, and opens new
 * connections while fewer than pool_size are open and requests wait. */
static void dispatch(es_client *c)
{
    for (;;) {
        pthread_mutex_lock(&c->mu);
        int waiting = c->q_head != NULL;
        pthread_mutex_unlock(&c->mu);
        if (!waiting)
            return;
        /* Only this thread takes requests off the queue or connections out
         * of the pool; checking one may fail the head request (TLS). */
        conn *k = NULL;
        while (k == NULL && c->idle.tail != NULL) {
            k = c->idle.tail;
            if (conn_check_idle(c, k) < 0)
                k = NULL;
        }
        pthread_mutex_lock(&c->mu);
        if (c->q_head == NULL) {
            pthread_mutex_unlock(&c->mu);
            return;
        }
        if (k == NULL) {
            unsigned open = c->connecting.n + c->idle.n + c->busy.n;
            unsigned want = c->st.waiting > c->connecting.n ? c->st.waiting - c->connecting.n : 0;
            unsigned room = c->pool_size > open ? c->pool_size - open : 0;
            unsigned n = want < room ? want : room;
            pthread_mutex_unlock(&c->mu);
            int changed = 0;
            for (unsigned i = 0; i < n && !changed; i++)
                changed = conn_open(c);
            if (!changed)
                return;
            continue;
        }
        es_future *f = queue_pop_locked(c);
        c->st.available--;
        c->st.in_use++;
        pthread_mutex_unlock(&c->mu);
        conn_start(c, k, f);
    }
}

/* Closes every connection and fails every request queued or in flight with
 * -ECANCELED and why. */
static void close_everything(es_client *c, const char *why)
{
    pthread_mutex_lock(&c->mu);
    es_future *q = c->q_head;
    c->q_head = c->q_tail = NULL;
    c->st.waiting = 0;
    pthread_mutex_unlock(&c->mu);
    while (q != NULL) {
        es_future *next = q->next;
        q->next = NULL;
        future_finish(q, -ECANCELED, NULL, why);
        q = next;
    }
    while (c->connecting.head != NULL)
        conn_discard(c, c->connecting.head);
    while (c->idle.head != NULL)
        conn_discard(c, c->idle.head);
    while (c->busy.head != NULL)
        conn_fail(c, c->busy.head, -ECANCELED, "%s", why);
}

/* Closes the connection numbered num: at once if idle, after its request if
 * busy; nothing if it is gone already. */
static void close_number(es_client *c, uint64_t num)
{
    for (conn *k = c->idle.head; k != NULL; k = k->next) {
        if (k->number == num) {
            conn_discard(c, k);
            return;
        }
    }
    for (conn *k = c->busy.head; k != NULL; k = k->next) {
        if (k->number == num) {
            k->close_after = 1;
            return;
        }
    }
}

/* Carries out what other threads asked. Returns 1 when the client stops. */
static int commands_run(es_client *c)
{
    pthread_mutex_lock(&c->mu);
    c->wake_pending = 0;
    int stopping = c->stopping;
    int all = c->close_all;
    c->close_all = 0;
    uint64_t seq = c->cmd_seq;
    uint64_t *nums = c->close_nums;
    size_t n = c->n_close;
    c->close_nums = NULL;
    c->n_close = c->cap_close = 0;
    pthread_mutex_unlock(&c->mu);

    for (size_t i = 0; i < n; i++)
        close_number(c, nums[i]);
    free(nums);
    if (all || stopping)
        close_everything(c, stopping ? "request cancelled: the client is being freed"
                                     : "request cancelled: the client was closed");
    if (seq != 0 || stopping) {
        pthread_mutex_lock(&c->mu);
        if (c->cmd_done != seq) {
            c->cmd_done = seq;
            pthread_cond_broadcast(&c->cmd_cv);
        }
        pthread_mutex_unlock(&c->mu);
    }
    return stopping;
}

/* Frees c and everything it still owns, once its I/O thread is done. */
static void client_destroy(es_client *c)
{
    SSL_CTX_free(c->tls_ctx);
    free(c->tls_name);
    close(c->epfd);
    close(c->efd);
    free(c->close_nums);
    link_unref(c->link);
    pthread_cond_destroy(&c->cmd_cv);
    pthread_mutex_destroy(&c->mu);
    free(c->addr_text);
    free(c);
}

static void *io_main(void *arg)
{
    es_client *c = arg;
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int timeout = timers_next_ms(c, now_ns());
        int n = epoll_wait(c->epfd, evs, MAX_EVENTS, timeout);
        if (n < 0)
            n = 0; /* EINTR */
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                uint64_t v;
                while (read(c->efd, &v, sizeof v) < 0 && errno == EINTR)
                    ;
            } else {
                conn_event(c, evs[i].data.ptr, evs[i].events);
            }
        }
        timers_expire(c, now_ns());
        if (commands_run(c))
            break;
        dispatch(c);
    }
    /* Release whoever waits for a command: there will be no more. */
    pthread_mutex_lock(&c->mu);
    c->stopped = 1;
    int self_free = c->free_on_exit;
    pthread_cond_broadcast(&c->cmd_cv);
    pthread_mutex_unlock(&c->mu);
    if (self_free) {
        link_detach(c->link, 1);
        client_destroy(c);
    }
    return NULL;
}

/* Is msg + separator one frame that ends at the end of the separator, as
 * the server will cut it? Not if the separator occurs in msg, or if the end
 * of msg and the start of the separator form one. */
static int message_ok(const es_client *c, const uint8_t *msg, size_t len)
{
    frame_scan fs = {.sep = c->sep, .sep_len = c->sep_len, .scanned = 0};
    if (len > 0 && frame_next(&fs, msg, len) != 0)
        return 0;
    uint8_t win[2 * FRAME_SEP_MAX];
    size_t tail = len < c->sep_len - 1 ? len : c->sep_len - 1;
    if (tail > 0)
        memcpy(win, msg + len - tail, tail);
    memcpy(win + tail, c->sep, c->sep_len);
    fs.scanned = 0;
    return frame_next(&fs, win, tail + c->sep_len) == tail + c->sep_len;
}

/* ---- the public API ---------------------------------------------------- */

/* Fills o with the defaults (size set). Any thread; o is the caller's. */
void es_client_options_init(es_client_options *o)
{
    memset(o, 0, sizeof *o);
    o->size = sizeof *o;
    o->pool_size = 10;
    o->connect_timeout_ms = 5000;
    o->request_timeout_ms = 30000;
    o->full_response = 0;
    o->separator = NULL;
    o->separator_len = 0;
    o->max_reply = 16u << 20;
    o->tls = 0;
    o->tls_insecure = 0;
    o->tls_ca_file = NULL;
    o->tls_cert_file = NULL;
    o->tls_key_file = NULL;
    o->tls_server_name = NULL;
}

/* Returns a client that the caller frees with es_client_free, or NULL with
 * a message in err. Any thread (blocks in name resolution). The options
 * and the separator are copied; ":PORT" connects to 127.0.0.1:PORT. */
es_client *es_client_new(const char *address, const es_client_options *o, char *err,
                         size_t errlen)
{
    es_client_options opt;
    es_client_options_init(&opt);
    if (o != NULL) {
        if (o->size < OPTIONS_MIN_SIZE) {
            set_err(err, errlen, "options: not initialised with es_client_options_init");
            return NULL;
        }
        memcpy(&opt, o, o->size < sizeof opt ? o->size : sizeof opt);
    }
    if (address == NULL) {
        set_err(err, errlen, "no address");
        return NULL;
    }
    if (opt.pool_size < 1) {
        set_err(err, errlen, "pool_size must be at least 1");
        return NULL;
    }
    if (opt.connect_timeout_ms < 0 || opt.request_timeout_ms < 0) {
        set_err(err, errlen, "timeouts must be 0 (none) or positive");
        return NULL;
    }
    if (opt.separator != NULL && (opt.separator_len < 1 || opt.separator_len > FRAME_SEP_MAX)) {
        set_err(err, errlen, "separator must be 1 to %d bytes long", FRAME_SEP_MAX);
        return NULL;
    }
    if (!opt.tls && (opt.tls_insecure || opt.tls_ca_file != NULL || opt.tls_cert_file != NULL ||
                     opt.tls_key_file != NULL || opt.tls_server_name != NULL)) {
        set_err(err, errlen, "TLS options are set but tls is 0");
        return NULL;
    }
    if (opt.tls && (opt.tls_cert_file == NULL) != (opt.tls_key_file == NULL)) {
        set_err(err, errlen, "tls_cert_file and tls_key_file go together (mutual TLS)");
        return NULL;
    }

    es_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    c->epfd = c->efd = -1;
    char why[ERR_MAX];
    if (addr_parse(address, &c->dest, why, sizeof why) < 0) {
        set_err(err, errlen, "%s", why);
        free(c);
        return NULL;
    }
    if (c->dest.any) {
        /* ":PORT" names this host: connect over IPv4 loopback, which a
         * wildcard listener accepts whether it is dual-stack or IPv4 only. */
        uint16_t port = ((const struct sockaddr_in6 *)&c->dest.ss)->sin6_port;
        struct sockaddr_in *s4 = (struct sockaddr_in *)&c->dest.ss;
        memset(&c->dest.ss, 0, sizeof c->dest.ss);
        s4->sin_family = AF_INET;
        s4->sin_port = port;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        c->dest.len = sizeof *s4;
    }
    if (opt.separator != NULL) {
        memcpy(c->sep, opt.separator, opt.separator_len);
        c->sep_len = opt.separator_len;
    } else {
        memcpy(c->sep, DEFAULT_SEPARATOR, sizeof DEFAULT_SEPARATOR - 1);
        c->sep_len = sizeof DEFAULT_SEPARATOR - 1;
    }
    if (opt.max_reply < c->sep_len) {
        set_err(err, errlen, "max_reply must be at least the separator's length");
        free(c);
        return NULL;
    }
    c->pool_size = opt.pool_size;
    c->connect_timeout_ms = opt.connect_timeout_ms;
    c->request_timeout_ms = opt.request_timeout_ms;
    c->full_response = opt.full_response != 0;
    c->max_reply = opt.max_reply;
    c->st.pool_size = c->pool_size;

    int mu_ok = 0, cv_ok = 0;
    c->addr_text = strdup(address);
    if (c->addr_text == NULL)
        goto nomem;
    if (opt.tls) {
        /* The files are read now, once: a bad one is an error of es_client_new. */
        tls_config tc = {.ca_file = opt.tls_ca_file, .cert_file = opt.tls_cert_file,
                         .key_file = opt.tls_key_file, .insecure = opt.tls_insecure};
        char tls_err[512];
        c->tls_ctx = tls_ctx_new(&tc, tls_err, sizeof tls_err);
        if (c->tls_ctx == NULL) {
            set_err(err, errlen, "%s", tls_err);
            goto fail;
        }
        /* Unix sockets have no host: only the chain is verified, unless a
         * name is given. */
        char host[ADDR_TEXT_MAX];
        const char *name = opt.tls_server_name;
        if (name == NULL && tls_host_of(address, host, sizeof host) == 0)
            name = host;
        if (name != NULL && (c->tls_name = strdup(name)) == NULL)
            goto nomem;
    }
    if (pthread_mutex_init(&c->mu, NULL) != 0)
        goto nomem;
    mu_ok = 1;
    if (pthread_cond_init(&c->cmd_cv, NULL) != 0)
        goto nomem;
    cv_ok = 1;
    if (c->full_response) {
        c->link = calloc(1, sizeof *c->link);
        if (c->link == NULL)
            goto nomem;
        if (pthread_mutex_init(&c->link->mu, NULL) != 0) {
            free(c->link);
            c->link = NULL;
            goto nomem;
        }
        if (pthread_cond_init(&c->link->cv, NULL) != 0) {
            pthread_mutex_destroy(&c->link->mu);
            free(c->link);
            c->link = NULL;
            goto nomem;
        }
        atomic_init(&c->link->refs, 1);
        c->link->client = c;
    }
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (c->epfd < 0) {
        set_err(err, errlen, "epoll_create1: %s", errstr(errno, why, sizeof why));
        goto fail;
    }
    c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->efd < 0) {
        set_err(err, errlen, "eventfd: %s", errstr(errno, why, sizeof why));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->efd, &ev) < 0) {
        set_err(err, errlen, "epoll_ctl: %s", errstr(errno, why, sizeof why));
        goto fail;
    }
    /* The I/O thread takes no signals: they stay with the application's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&c->thread, NULL, io_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        set_err(err, errlen, "cannot start the I/O thread: %s", errstr(rc, why, sizeof why));
        goto fail;
    }
    c->thread_started = 1;
    return c;

nomem:
    set_err(err, errlen, "out of memory");
fail:
    if (c->epfd >= 0)
        close(c->epfd);
    if (c->efd >= 0)
        close(c->efd);
    link_unref(c->link);
    if (cv_ok)
        pthread_cond_destroy(&c->cmd_cv);
    if (mu_ok)
        pthread_mutex_destroy(&c->mu);
    SSL_CTX_free(c->tls_ctx);
    free(c->tls_name);
    free(c->addr_text);
    free(c);
    return NULL;
}

/* Returns once the pool is empty and every request queued or in flight
 * has failed with -ECANCELED. Any thread; from a callback (on the I/O
 * thread) it does not wait and takes effect when the callback returns. */
void es_client_close(es_client *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->close_all = 1;
    uint64_t seq = ++c->cmd_seq;
    int wake = wake_locked(c);
    pthread_mutex_unlock(&c->mu);
    if (wake)
        wake_write(c);
    if (on_io_thread(c))
        return;
    pthread_mutex_lock(&c->mu);
    while (c->cmd_done < seq && !c->stopped)
        pthread_cond_wait(&c->cmd_cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

/* Frees c and everything it owns (connections, fds, the I/O thread after
 * joining it); futures and responses the caller holds stay valid. Any
 * thread, once, and not concurrently with other calls on c; from a
 * callback (on the I/O thread) c is freed when the callback returns. */
void es_client_free(es_client *c)
{
    if (c == NULL)
        return;
    int self = on_io_thread(c);
    link_detach(c->link, !self);
    pthread_mutex_lock(&c->mu);
    c->stopping = 1;
    c->free_on_exit = self;
    int wake = wake_locked(c);
    pthread_mutex_unlock(&c->mu);
    if (self) {
        pthread_detach(c->thread);
        return;
    }
    if (wake)
        wake_write(c);
    /* The I/O thread fails everything queued and closes every connection
     * before it returns; requests submitted since are refused at once. */
    pthread_join(c->thread, NULL);
    client_destroy(c);
}

/* Copies a consistent snapshot of the counters into out (the caller's).
 * Any thread. */
void es_client_get_stats(es_client *c, es_client_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
}

/* Any thread. Returns a future holding two references (the caller's, freed
 * with es_future_free, and the client's, dropped when it completes), or
 * NULL when out of memory. */
/* A new future for msg, or NULL when out of memory. A bad message gives a
 * future that has already failed; otherwise the future is ready to queue
 * (f->msg != NULL). */
static es_future *future_new(es_client *c, const void *msg, size_t len)
{
    es_future *f = calloc(1, sizeof *f);
    if (f == NULL)
        return NULL;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        free(f);
        return NULL;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int cv_rc = pthread_cond_init(&f->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (cv_rc != 0) {
        free(f);
        return NULL;
    }
    if (pthread_mutex_init(&f->mu, NULL) != 0) {
        pthread_cond_destroy(&f->cv);
        free(f);
        return NULL;
    }
    atomic_init(&f->refs, 2);
    f->t.submitted = now_ns();
    f->len = len;

    char msg_err[ERR_MAX];
    if (len > c->max_reply - c->sep_len) {
        snprintf(msg_err, sizeof msg_err,
                 "message of %zu bytes and its separator exceed max_reply (%zu bytes)", len,
                 c->max_reply);
        future_finish(f, -EMSGSIZE, NULL, msg_err);
        return f;
    }
    if (!message_ok(c, msg, len)) {
        future_finish(f, -EINVAL, NULL,
                      "the message contains the separator (or ends with its beginning)");
        return f;
    }
    /* The separator follows the message in the same buffer: one write. */
    f->msg = malloc(len + c->sep_len);
    if (f->msg == NULL) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
        free(f);
        return NULL;
    }
    if (len > 0)
        memcpy(f->msg, msg, len);
    memcpy(f->msg + len, c->sep, c->sep_len);
    f->quit = len == 4 && memcmp(msg, "QUIT", 4) == 0;
    return f;
}

/* Queue the ready futures of fs[0..n) in order, under one lock, so the I/O
 * thread sees all of them or none. */
static void queue_push(es_client *c, es_future *const fs[], size_t n)
{
    pthread_mutex_lock(&c->mu);
    int stopping = c->stopping, wake = 0;
    for (size_t i = 0; i < n && !stopping; i++) {
        es_future *f = fs[i];
        if (f->msg == NULL)
            continue;
        if (c->q_tail != NULL)
            c->q_tail->next = f;
        else
            c->q_head = f;
        c->q_tail = f;
        c->st.waiting++;
        wake = 1;
    }
    if (wake)
        wake = wake_locked(c);
    pthread_mutex_unlock(&c->mu);
    if (wake)
        wake_write(c);
    for (size_t i = 0; i < n && stopping; i++)
        if (fs[i]->msg != NULL)
            future_finish(fs[i], -ECANCELED, NULL, "request cancelled: the client is being freed");
}

es_future *es_client_submit(es_client *c, const void *msg, size_t len)
{
    es_future *f = future_new(c, msg, len);
    if (f != NULL)
        queue_push(c, &f, 1);
    return f;
}

int es_client_submit_many(es_client *c, size_t n, const void *const msgs[], const size_t lens[],
                          es_future *out[])
{
    for (size_t i = 0; i < n; i++) {
        out[i] = future_new(c, msgs[i], lens[i]);
        if (out[i] == NULL) {
            while (i-- > 0) {
                if (out[i]->msg != NULL) /* never queued: drop the client's reference too */
                    future_unref(out[i]);
                future_unref(out[i]);
                out[i] = NULL;
            }
            return -ENOMEM;
        }
    }
    queue_push(c, out, n);
    return 0;
}

int es_client_call(es_client *c, const void *msg, size_t len, es_response **out, char *err,
                   size_t errlen)
{
    if (out != NULL)
        *out = NULL;
    es_future *f = es_client_submit(c, msg, len);
    if (f == NULL) {
        set_err(err, errlen, "out of memory");
        return -ENOMEM;
    }
    es_future_wait(f, -1);
    es_response *r = NULL;
    int rc = es_future_result(f, &r, err, errlen);
    es_future_free(f);
    if (out != NULL)
        *out = r;
    else
        es_response_free(r);
    return rc;
}

/* Returns 0 once f is done, -ETIMEDOUT if timeout_ms passed first. Any
 * thread; from a callback (on the I/O thread) only with timeout_ms 0. */
int es_future_wait(es_future *f, int timeout_ms)
{
    struct timespec dl;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&f->mu);
    while (!f->done) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&f->cv, &f->mu);
        } else if (pthread_cond_timedwait(&f->cv, &f->mu, &dl) == ETIMEDOUT) {
            break;
        }
    }
    int done = f->done;
    pthread_mutex_unlock(&f->mu);
    return done ? 0 : -ETIMEDOUT;
}

/* Returns non-zero once f is done. Any thread. */
int es_future_done(es_future *f)
{
    pthread_mutex_lock(&f->mu);
    int done = f->done;
    pthread_mutex_unlock(&f->mu);
    return done;
}

/* Returns 0, or -EBUSY if a callback was set already. cb runs at once on
 * this thread if f is done, else on the client's I/O thread when f
 * completes; it may free f. Any thread. */
int es_future_on_done(es_future *f, void (*cb)(es_future *f, void *arg), void *arg)
{
    pthread_mutex_lock(&f->mu);
    if (f->cb_set) {
        pthread_mutex_unlock(&f->mu);
        return -EBUSY;
    }
    f->cb_set = 1;
    int done = f->done;
    if (!done) {
        f->cb = cb;
        f->cb_arg = arg;
    }
    pthread_mutex_unlock(&f->mu);
    if (done && cb != NULL)
        cb(f, arg);
    return 0;
}

/* Returns 0, the request's negative errno (message in err), or -EAGAIN if
 * not done. On 0 the caller owns *out (NULL if taken already). Any thread. */
int es_future_result(es_future *f, es_response **out, char *err, size_t errlen)
{
    pthread_mutex_lock(&f->mu);
    if (!f->done) {
        pthread_mutex_unlock(&f->mu);
        set_err(err, errlen, "the request is not done yet");
        return -EAGAIN;
    }
    int rc = f->rc;
    if (rc == 0) {
        if (out != NULL) {
            *out = f->resp;
            f->resp = NULL;
        }
    } else {
        set_err(err, errlen, "%s", f->err);
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

/* Drops the caller's reference to f (NULL is ignored); a callback not yet
 * run never runs. The client drops its own when the request ends. Any
 * thread. */
void es_future_free(es_future *f)
{
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->mu);
    f->cb = NULL;
    pthread_mutex_unlock(&f->mu);
    future_unref(f);
}

/* Returns the reply (owned by r, NUL-terminated for convenience) and its
 * length in *len. Any thread. */
const uint8_t *es_response_data(const es_response *r, size_t *len)
{
    if (len != NULL)
        *len = r->len;
    return r->data;
}

/* Returns the connection's number, 0 without full_response. Any thread. */
uint64_t es_response_connection(const es_response *r)
{
    return r->conn_no;
}

/* Returns the local address text (owned by r), NULL without
 * full_response. Any thread. */
const char *es_response_local(const es_response *r)
{
    return r->link != NULL ? r->local : NULL;
}

/* Returns the peer address text (owned by r), NULL without full_response.
 * Any thread. */
const char *es_response_peer(const es_response *r)
{
    return r->link != NULL ? r->peer : NULL;
}

/* Returns the timings (zero without full_response). Any thread. */
es_timings es_response_timings(const es_response *r)
{
    return r->t;
}

/* Returns 0 (also when the connection or the client is gone already),
 * -EINVAL without full_response, -ENOMEM. Any thread; waits until the I/O
 * thread has acted (closed the idle connection, or marked the busy one to
 * close after its request), except on the I/O thread itself. */
int es_response_close_connection(es_response *r)
{
    client_link *l = r->link;
    if (l == NULL)
        return -EINVAL;
    pthread_mutex_lock(&l->mu);
    es_client *c = l->client;
    if (c != NULL)
        l->users++;
    pthread_mutex_unlock(&l->mu);
    if (c == NULL)
        return 0;

    int rc = 0;
    pthread_mutex_lock(&c->mu);
    if (c->n_close == c->cap_close) {
        size_t cap = c->cap_close ? c->cap_close * 2 : 4;
        uint64_t *v = realloc(c->close_nums, cap * sizeof *v);
        if (v == NULL) {
            rc = -ENOMEM;
            pthread_mutex_unlock(&c->mu);
            goto out;
        }
        c->close_nums = v;
        c->cap_close = cap;
    }
    c->close_nums[c->n_close++] = r->conn_no;
    uint64_t seq = ++c->cmd_seq;
    int wake = wake_locked(c);
    pthread_mutex_unlock(&c->mu);
    if (wake)
        wake_write(c);
    if (!on_io_thread(c)) {
        pthread_mutex_lock(&c->mu);
        while (c->cmd_done < seq && !c->stopped)
            pthread_cond_wait(&c->cmd_cv, &c->mu);
        pthread_mutex_unlock(&c->mu);
    }
out:
    pthread_mutex_lock(&l->mu);
    if (--l->users == 0)
        pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

/* Frees r and its reply (NULL is ignored). Any thread. */
void es_response_free(es_response *r)
{
    if (r == NULL)
        return;
    link_unref(r->link);
    free(r->mem);
    free(r);
}
