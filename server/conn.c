/* conn.c - one client connection: read, frame through the plugin, reply, write, close. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "log.h"
#include "proxy.h"
#include "metrics.h"
#include "server.h"
#include "sys.h"
#include "uring.h"

static int conn_start(es_conn *c);
static int conn_flush_uring(es_conn *c);

_Static_assert(READ_BUF_SIZE >= PROXY_HEADER_MAX, "a PROXY header is peeked into w->rbuf");

static const es_plugin *hooks_of(const es_conn *c)
{
    return c->l->hooks;
}

/* The worker's pool of spare buffers: a queue that empties gives its
 * allocation back here, and one that starts takes the last one given
 * (still in cache, its pages mapped) instead of growing from nothing. */
static void pool_put(worker *w, buf *b)
{
    if (b->data != NULL && b->cap >= POOL_MIN && b->cap <= POOL_MAX && w->npool < POOL_SLOTS &&
        w->pool_bytes + b->cap <= POOL_BYTES) {
        w->pool[w->npool++] = (buf){.data = b->data, .cap = b->cap};
        w->pool_bytes += b->cap;
        memset(b, 0, sizeof *b);
        return;
    }
    buf_free(b);
}

/* Before n bytes go into b: an empty b takes a spare buffer, if there is
 * one and n is worth it. */
static void pool_take(worker *w, buf *b, size_t n)
{
    if (b->cap != 0 || n < POOL_MIN || w->npool == 0)
        return;
    *b = w->pool[--w->npool];
    w->pool_bytes -= b->cap;
}

void conn_pool_free(worker *w)
{
    while (w->npool > 0)
        buf_free(&w->pool[--w->npool]);
    w->pool_bytes = 0;
}

/* Give back the places a connection of l held in both counts. */
static void conn_uncount(worker *w, listener *l)
{
    atomic_fetch_sub_explicit(&l->svc->slot->nconns, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&w->srv->nconns, 1, memory_order_relaxed);
}

/* Append c to l through its link at offset off (link or plink). */
static void list_append(conn_list *l, es_conn *c, size_t off)
{
    conn_link *k = (conn_link *)((char *)c + off);
    k->next = NULL;
    k->prev = l->tail;
    if (l->tail != NULL)
        ((conn_link *)((char *)l->tail + off))->next = c;
    else
        l->head = c;
    l->tail = c;
    l->count++;
}

/* Unlink c from l through its link at offset off. */
static void list_remove(conn_list *l, es_conn *c, size_t off)
{
    conn_link *k = (conn_link *)((char *)c + off);
    if (k->prev != NULL)
        ((conn_link *)((char *)k->prev + off))->next = k->next;
    else
        l->head = k->next;
    if (k->next != NULL)
        ((conn_link *)((char *)k->next + off))->prev = k->prev;
    else
        l->tail = k->prev;
    k->prev = k->next = NULL;
    l->count--;
}

void conn_list_append(conn_list *l, es_conn *c)
{
    list_append(l, c, offsetof(es_conn, link));
}

void conn_list_remove(conn_list *l, es_conn *c)
{
    list_remove(l, c, offsetof(es_conn, link));
}

static const char *peer_name(es_conn *c)
{
    if (c->peer_text == NULL) {
        char text[ADDR_TEXT_MAX];
        if (c->peer.sa.sa_family == AF_INET || c->peer.sa.sa_family == AF_INET6)
            addr_format(&c->peer.sa, sizeof c->peer, text, sizeof text);
        else
            snprintf(text, sizeof text, "%s", c->l->name);
        c->peer_text = strdup(text);
    }
    return c->peer_text != NULL ? c->peer_text : "?";
}

/* The list c is on: lingering, awaiting its PROXY header, in its TLS
 * handshake, or its idle list. */
static conn_list *list_of(es_conn *c)
{
    if (c->flags & CF_LINGER)
        return &c->w->linger;
    if (c->flags & CF_PROXY)
        return &c->w->proxy;
    if (c->flags & CF_HANDSHAKE)
        return &c->w->handshake;
    return &c->w->active[c->slot];
}

/* Log an event of c at level, with its peer and listener as fields. */
static void conn_logf(int level, es_conn *c, const char *fmt, ...) ES_PRINTF(3, 4);
static void conn_logf(int level, es_conn *c, const char *fmt, ...)
{
    char fields[ADDR_TEXT_MAX + 160];
    snprintf(fields, sizeof fields, "peer=%s listener=%s", peer_name(c), c->l->svc->cfg->name);
    va_list ap;
    va_start(ap, fmt);
    log_vfields(level, fields, fmt, ap);
    va_end(ap);
}

#define conn_log(level, c, ...)                                                \
    do {                                                                       \
        if ((level) <= log_threshold)                                          \
            conn_logf((level), (c), __VA_ARGS__);                              \
    } while (0)

/* Record activity: the connection moves to the young end of the idle order. */
static void conn_touch(es_conn *c)
{
    worker *w = c->w;
    if (c->flags & (CF_LINGER | CF_HANDSHAKE | CF_PROXY))
        return;
    c->last_active = w->now;
    conn_list *home = &w->active[c->slot];
    if (home->timeout_ms > 0 && home->tail != c) {
        conn_list_remove(home, c);
        conn_list_append(home, c);
    }
}

/* The partial lists (read_timeout) link connections through plink,
 * apart from the idle or linger list they are also in. */
static void partial_leave(es_conn *c)
{
    if (!(c->flags & CF_PARTIAL))
        return;
    list_remove(&c->w->partial[c->slot], c, offsetof(es_conn, plink));
    c->flags &= (uint32_t)~CF_PARTIAL;
}

/* After a read that left c->in holding the start of a message, or not:
 * keep c in its partial list, ordered by when that message began. A
 * message that began with this read (fresh: none was pending, or the
 * pending one completed) starts the clock now, at the young end; one still
 * pending keeps its place. O(1). */
static void partial_update(es_conn *c, int completed)
{
    conn_list *l = &c->w->partial[c->slot];
    int holds = (c->in.len > 0 || c->msg_passed > 0) &&
                !(c->flags & (CF_CLOSING | CF_ABORT | CF_EOF | CF_LINGER));
    if ((c->flags & CF_PARTIAL) && holds && !completed)
        return;
    partial_leave(c);
    if (!holds || l->timeout_ms == 0)
        return;
    c->msg_start = c->w->now;
    list_append(l, c, offsetof(es_conn, plink));
    c->flags |= CF_PARTIAL;
}

/* w->quiet (io_uring): connections whose last read sent nothing, probed
 * once quiet for URING_QUIET_PROBE_MS (conn_probe). */
static void quiet_leave(es_conn *c)
{
    if (!(c->flags & CF_QUIET))
        return;
    list_remove(&c->w->quiet, c, offsetof(es_conn, qlink));
    c->flags &= (uint32_t)~CF_QUIET;
}

static void quiet_enter(es_conn *c)
{
    quiet_leave(c);
    list_append(&c->w->quiet, c, offsetof(es_conn, qlink));
    c->flags |= CF_QUIET;
}

/* Forget the replies gathered for the connection being handled. */
static void stage_reset(worker *w)
{
    w->cur = NULL;
    w->span_len = 0;
    w->stage.len = w->stage.off = 0;
}

void conn_destroy(es_conn *c)
{
    worker *w = c->w;
    conn_log(ES_LOG_DEBUG, c, "connection closed");
    const es_plugin *h = hooks_of(c);
    if (h->close != NULL && !(c->flags & CF_NOPLUGIN))
        h->close(c, h->conn_size ? c->state : NULL);
    if (w->cur == c)
        stage_reset(w);
    conn_list_remove(list_of(c), c);
    partial_leave(c);
    quiet_leave(c);
    SSL_free(c->ssl);
    pool_put(w, &c->in);
    pool_put(w, &c->out);
    free(c->peer_text);
    listener *l = c->l;
    metrics_closed(c->stats);
    if (c->flags & (CF_RECVING | CF_SENDING)) {
        /* io_uring operations still point at c (and a send at its bytes):
         * it waits in w->zombies for their completions, cancelled. Its
         * descriptor stays open until then (conn_uring_free): some may not
         * be submitted yet, and they name the socket by its number, which
         * another worker's accept could otherwise be given in between. */
        uring_conn_cancel(c);
        c->flags |= CF_DEAD;
        c->ssl = NULL;
        c->peer_text = NULL;
        conn_list_append(&w->zombies, c);
    } else {
        close(c->fd);
        pool_put(w, &c->sending);
        free(c);
    }
    conn_uncount(w, l);
    /* The last connection of an older generation here lets it go. */
    gen *g = l->gen;
    if (--g->wconns[w->id] == 0 && g != w->gen)
        worker_gen_drop(w, g);
}

void conn_read_expired(es_conn *c)
{
    conn_log(ES_LOG_WARN, c,
             "closing the connection from %s: a message begun %llu ms ago is incomplete "
             "(read_timeout %ld s of listener %s)",
             peer_name(c), (unsigned long long)(c->w->now - c->msg_start),
             c->l->svc->cfg->read_timeout, c->l->svc->cfg->name);
    metrics_add(&c->stats->errors[ME_READ_TIMEOUT], 1);
    conn_destroy(c);
}

/* Register the events c waits for. Returns 0, or -1 when epoll refused
 * (c is then left for the caller to destroy: it could hang otherwise). */
static int conn_set_events(es_conn *c, uint32_t want)
{
    if (want == c->events || (c->flags & CF_URING))
        return 0;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        conn_log(ES_LOG_ERROR, c, "epoll_ctl on the connection from %s: %s: closing it",
                                  peer_name(c),
                  strerror(errno));
        return -1;
    }
    c->events = want;
    return 0;
}

/* We are done: send FIN and wait (bounded) for the peer's, discarding
 * input, so that unread input never turns our close into a reset that
 * could destroy the replies the peer has not read yet. */
static void conn_linger(es_conn *c)
{
    worker *w = c->w;
    if (c->flags & CF_EOF) {
        conn_destroy(c);
        return;
    }
    if (c->ssl != NULL && !(c->flags & CF_HANDSHAKE)) {
        /* close_notify, best effort: the peer learns the replies are complete. */
        ERR_clear_error();
        SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
    shutdown(c->fd, SHUT_WR);
    conn_list_remove(list_of(c), c);
    partial_leave(c);
    c->flags |= CF_LINGER;
    c->flags &= (uint32_t)~(CF_PAUSED | CF_TLS_RWW | CF_TLS_MORE);
    c->last_active = w->now;
    conn_list_append(&w->linger, c);
    pool_put(w, &c->in);
    if (c->flags & CF_URING) {
        if (uring_recv_start(c) < 0)
            conn_destroy(c);
        return;
    }
    if (conn_set_events(c, EPOLLIN) < 0)
        conn_destroy(c);
}

/* Send up to len bytes: send(2), or SSL_write on a TLS connection (a
 * retry after EAGAIN must start with the same bytes, which the output
 * queue guarantees). Returns the bytes taken, or -1 with errno (EAGAIN:
 * try again when writable). */
static ssize_t conn_send(es_conn *c, const uint8_t *p, size_t len)
{
    if (c->ssl == NULL)
        return sys_send(c->fd, p, len, MSG_NOSIGNAL);
    ERR_clear_error();
    int n = SSL_write(c->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0)
        return n;
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        errno = EAGAIN;
        return -1;
    }
    char why[256];
    conn_log(ES_LOG_DEBUG, c, "TLS write to %s: %s", peer_name(c),
              tls_error_text(why, sizeof why, e == SSL_ERROR_SYSCALL && errno ? strerror(errno)
                                                                             : "connection lost"));
    errno = EPIPE;
    return -1;
}

/* Read into dst[0..room): recv(2), or as many whole TLS records as fit
 * (room is at least TLS_RECORD_MAX). Returns the bytes read, 0 at the end
 * of the stream (close_notify or FIN), or -1 with errno (EAGAIN: nothing
 * yet). On TLS, sets CF_TLS_MORE when OpenSSL may hold more input than
 * epoll can see, and CF_TLS_RWW when reading needs the socket writable. */
static ssize_t conn_recv(es_conn *c, uint8_t *dst, size_t room)
{
    if (c->ssl == NULL)
        return sys_recv(c->fd, dst, room, 0);
    c->flags &= (uint32_t)~(CF_TLS_MORE | CF_TLS_RWW);
    size_t got = 0;
    while (room - got >= TLS_RECORD_MAX) {
        size_t want = room - got;
        ERR_clear_error();
        int n = SSL_read(c->ssl, dst + got, want > INT_MAX ? INT_MAX : (int)want);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (e == SSL_ERROR_WANT_WRITE)
                c->flags |= CF_TLS_RWW;
            if (got > 0)
                return (ssize_t)got;
            errno = EAGAIN;
            return -1;
        }
        if (got > 0) {
            /* The end or the error comes again on the next read. */
            c->flags |= CF_TLS_MORE;
            return (ssize_t)got;
        }
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        char why[256];
        conn_log(ES_LOG_DEBUG, c, "TLS read from %s: %s", peer_name(c),
                  tls_error_text(why, sizeof why,
                                 e == SSL_ERROR_SYSCALL && errno ? strerror(errno)
                                                                 : "connection lost"));
        errno = ECONNRESET;
        return -1;
    }
    if (SSL_has_pending(c->ssl))
        c->flags |= CF_TLS_MORE;
    return (ssize_t)got;
}

static int conn_is_quiet(const es_conn *c)
{
    return c->in.len == 0 && c->msg_passed == 0 && c->out.len == 0 &&
           !(c->flags & CF_SENDING);
}

/* Out of memory while "doing" something for the peer: log and close.
 * Returns -1 (c was freed). */
static int conn_oom(es_conn *c, const char *doing)
{
    conn_log(ES_LOG_ERROR, c, "out of memory %s %s: closing the connection", doing,
             peer_name(c));
    conn_destroy(c);
    return -1;
}

/* After a flush, common to both back ends: close once the last reply left
 * (or when draining and nothing is pending), and pause reading above the
 * high-water mark of queued output (CF_PAUSED). Returns 0, or -1 when c was handed
 * to conn_linger(). */
static int conn_settle(es_conn *c)
{
    size_t queued = c->out.len + c->sending.len;
    if (c->flags & CF_LINGER)
        return 0;
    if (((c->flags & CF_CLOSING) && queued == 0 && !(c->flags & CF_SENDING)) ||
        (c->w->draining && conn_is_quiet(c))) {
        conn_linger(c);
        return -1;
    }
    /* Closing once its reply's completion is in (io_uring): the worker
     * must not sleep past that completion. */
    if ((c->flags & CF_CLOSING) && (c->flags & CF_SENDING))
        uring_reap_soon(c->w);
    /* A message whose start went out already (partial hook) is read to
     * its end, whatever its echo waits for: a peer that sends it whole
     * before reading would wait for us as we wait for it. Its rest is
     * held whole (conn_frame passes nothing on above the high-water
     * mark), so max_message bounds it as it bounds any message. */
    if (queued >= OUT_HIGH_WATER && c->msg_passed == 0)
        c->flags |= CF_PAUSED;
    else if (queued <= OUT_LOW_WATER)
        c->flags &= (uint32_t)~CF_PAUSED;
    return 0;
}

/* Send what is staged and queued, then settle the epoll mask and any close
 * that waited for the output. Returns 0, or -1 when c was freed. */
static int conn_flush(es_conn *c)
{
    worker *w = c->w;
    if (c->flags & CF_URING)
        return conn_flush_uring(c);
    if (c->flags & CF_ABORT) {
        conn_destroy(c);
        return -1;
    }
    int handed_over = 0;
    if (w->cur == c) {
        /* The replies are either a span of the input (sent from where
         * they lie) or staged; the rest of a partial send is queued. */
        const uint8_t *p = w->span_len ? w->span : buf_head(&w->stage);
        size_t len = w->span_len ? w->span_len : w->stage.len;
        if (len > 0) {
            ssize_t n = conn_send(c, p, len);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                conn_log(ES_LOG_DEBUG, c, "write to %s: %s", peer_name(c), strerror(errno));
                metrics_add(&c->stats->errors[ME_IO], 1);
                conn_destroy(c);
                return -1;
            }
            size_t sent = n > 0 ? (size_t)n : 0;
            if (sent > 0) {
                metrics_add(&c->stats->bytes_out, sent);
                conn_touch(c);
            }
            if (w->span_len > 0) {
                pool_take(w, &c->out, len - sent);
                if (sent < len && buf_append(&c->out, p + sent, len - sent) < 0)
                    return conn_oom(c, "queueing output for");
            } else {
                buf_consume(&w->stage, sent);
                if (w->stage.len > 0) {
                    /* Hand the staging buffer over instead of copying it. */
                    c->out = w->stage;
                    memset(&w->stage, 0, sizeof w->stage);
                }
            }
            handed_over = sent < len;
        }
        stage_reset(w);
        if (w->stage.cap > STAGE_KEEP)
            buf_free(&w->stage);
    }
    if (!handed_over && c->out.len > 0) {
        ssize_t n = conn_send(c, buf_head(&c->out), c->out.len);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            conn_log(ES_LOG_DEBUG, c, "write to %s: %s", peer_name(c), strerror(errno));
            metrics_add(&c->stats->errors[ME_IO], 1);
            conn_destroy(c);
            return -1;
        }
        if (n > 0) {
            metrics_add(&c->stats->bytes_out, (uint64_t)n);
            buf_consume(&c->out, (size_t)n);
            conn_touch(c);
        }
        if (c->out.len == 0)
            pool_put(w, &c->out);
    }

    if (conn_settle(c) < 0)
        return -1;
    uint32_t want = 0;
    if (c->out.len > 0 || (c->flags & CF_TLS_RWW))
        want |= EPOLLOUT;
    if (!(c->flags & (CF_PAUSED | CF_CLOSING | CF_EOF)))
        want |= EPOLLIN;
    if (conn_set_events(c, want) < 0) {
        conn_destroy(c);
        return -1;
    }
    return 0;
}

/* Hand complete messages in data[0..len) to the plugin, and the start of
 * an unfinished one to its partial hook. Returns how many bytes were
 * consumed (*completed: whether a message ended), or -1 when the
 * connection must be closed at once. */
static ssize_t conn_frame(es_conn *c, const uint8_t *data, size_t len, int *completed)
{
    const es_plugin *h = hooks_of(c);
    void *st = h->conn_size ? c->state : NULL;
    size_t max = c->l->max_message;
    size_t off = 0;
    uint64_t handled = 0;  /* response calls, counted once per read */
    int error = -1;        /* ME_* that closes the connection, or -1 */
    while (off < len && !(c->flags & (CF_CLOSING | CF_ABORT))) {
        ssize_t m = h->data_received(c, st, data + off, len - off);
        if (m == 0) {
            /* An unfinished message: a plugin with the partial hook may
             * answer its start now instead of having it held. */
            size_t rest = len - off;
            if (h->partial == NULL || rest < ES_PARTIAL_MIN || c->msg_passed + rest >= max ||
                c->out.len + c->sending.len >= OUT_HIGH_WATER)
                break;
            ssize_t k = h->partial(c, st, data + off, rest);
            if (k < 0 || (size_t)k > rest) {
                conn_log(ES_LOG_WARN, c, "protocol error from %s: closing the connection",
                         peer_name(c));
                error = ME_PROTOCOL;
                goto done;
            }
            c->msg_passed += (size_t)k;
            off += (size_t)k;
            break;
        }
        if (m < 0 || (size_t)m > len - off) {
            conn_log(ES_LOG_WARN, c, "protocol error from %s: closing the connection",
                                     peer_name(c));
            error = ME_PROTOCOL;
            goto done;
        }
        if ((size_t)m + c->msg_passed > max) {
            conn_log(ES_LOG_WARN, c,
                     "message of %zu bytes from %s exceeds max_message (%zu): closing the "
                     "connection",
                     (size_t)m + c->msg_passed, peer_name(c), max);
            error = ME_MAX_MESSAGE;
            goto done;
        }
        handled++;
        c->msg_passed = 0;
        if (h->response(c, st, data + off, (size_t)m) != 0) {
            conn_log(ES_LOG_DEBUG, c, "plugin closed the connection from %s", peer_name(c));
            error = ME_PLUGIN;
            goto done;
        }
        off += (size_t)m;
    }
    if (!(c->flags & (CF_CLOSING | CF_ABORT)) && c->msg_passed + (len - off) >= max) {
        conn_log(ES_LOG_WARN, c,
                 "message from %s exceeds max_message (%zu bytes) without an end: closing the "
                 "connection",
                 peer_name(c), max);
        error = ME_MAX_MESSAGE;
    }
done:
    *completed = handled > 0;
    metrics_add(&c->stats->messages, handled);
    if (error >= 0) {
        metrics_add(&c->stats->errors[error], 1);
        return -1;
    }
    return (ssize_t)off;
}

/* The peer will send no more: answer what is complete, then go. Returns
 * 0, or -1 when c was freed. */
static int conn_eof(es_conn *c)
{
    c->flags |= CF_EOF | CF_CLOSING;
    partial_leave(c);
    pool_put(c->w, &c->in);
    return conn_flush(c);
}

/* Frame and answer n bytes of input: data[0..n) when direct (c->in held
 * nothing), else the n bytes just added to c->in, which is framed whole.
 * Returns 0, or -1 when c was freed. */
static int conn_input(es_conn *c, const uint8_t *data, size_t n, int direct)
{
    worker *w = c->w;
    conn_touch(c);
    metrics_add(&c->stats->bytes_in, (uint64_t)n);
    size_t len = n;
    if (!direct) {
        data = buf_head(&c->in);
        len = c->in.len;
    }
    w->cur = c;
    w->in_lo = (uintptr_t)data;
    w->in_hi = (uintptr_t)data + len;
    int completed;
    ssize_t used = conn_frame(c, data, len, &completed);
    if (used < 0) {
        stage_reset(w);
        conn_destroy(c);
        return -1;
    }
    if (direct) {
        if ((size_t)used < len && !(c->flags & CF_CLOSING))
            pool_take(w, &c->in, len - (size_t)used);
        if ((size_t)used < len && !(c->flags & CF_CLOSING) &&
            buf_append(&c->in, data + used, len - (size_t)used) < 0) {
            conn_log(ES_LOG_ERROR, c, "out of memory reading from %s: closing the connection",
                                      peer_name(c));
            c->flags |= CF_ABORT;
        }
        partial_update(c, completed);
        return conn_flush(c);
    }
    /* Consumed bytes stay in place until the replies that may point at
     * them are sent. */
    buf_consume(&c->in, (size_t)used);
    partial_update(c, completed);
    if (conn_flush(c) < 0)
        return -1;
    if (c->in.len == 0 || (c->flags & CF_CLOSING))
        pool_put(w, &c->in);
    return 0;
}

/* Read once and process. Returns 0, or -1 when c was freed. */
static int conn_read_once(es_conn *c)
{
    worker *w = c->w;
    if (c->flags & CF_LINGER) {
        ssize_t n = sys_recv(c->fd, w->rbuf, READ_BUF_SIZE, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_destroy(c);
            return -1;
        }
        return 0;
    }
    int direct = c->in.len == 0;
    uint8_t *dst = w->rbuf;
    size_t room = READ_BUF_SIZE;
    if (!direct) {
        pool_take(w, &c->in, READ_BUF_SIZE);
        if (buf_reserve(&c->in, READ_BUF_SIZE) < 0)
            return conn_oom(c, "reading from");
        dst = buf_tail(&c->in);
        room = buf_room(&c->in);
    }
    ssize_t n = conn_recv(c, dst, room);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return (c->flags & CF_TLS_RWW) ? conn_flush(c) : 0;
        conn_log(ES_LOG_DEBUG, c, "read from %s: %s", peer_name(c), strerror(errno));
        metrics_add(&c->stats->errors[ME_IO], 1);
        conn_destroy(c);
        return -1;
    }
    if (n == 0)
        return conn_eof(c);
    if (!direct)
        buf_commit(&c->in, (size_t)n);
    return conn_input(c, dst, (size_t)n, direct);
}

/* Read and process until nothing is left that epoll would not report:
 * over TLS, OpenSSL may have read ahead. Returns 0, or -1 when c was freed. */
static int conn_read(es_conn *c)
{
    for (;;) {
        if (conn_read_once(c) < 0)
            return -1;
        if (!(c->flags & CF_TLS_MORE) ||
            (c->flags & (CF_PAUSED | CF_EOF | CF_CLOSING | CF_LINGER | CF_ABORT)))
            return 0;
    }
}

/* Drive c's TLS handshake; once it is done, the plugin sees the
 * connection. Returns 0, or -1 when c was freed or is closing. */
static int conn_handshake(es_conn *c)
{
    worker *w = c->w;
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        conn_list_remove(&w->handshake, c);
        c->flags &= (uint32_t)~CF_HANDSHAKE;
        c->last_active = w->now;
        conn_list_append(&w->active[c->slot], c);
        conn_log(ES_LOG_DEBUG, c, "TLS handshake with %s done: %s, %s",
                                  peer_name(c), SSL_get_version(c->ssl),
                  SSL_get_cipher_name(c->ssl));
        if (conn_start(c) < 0)
            return -1;
        /* Input that came with the handshake's last flight may be in
         * OpenSSL already, where epoll cannot see it. */
        if (SSL_has_pending(c->ssl))
            return conn_read(c);
        return 0;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (conn_set_events(c, e == SSL_ERROR_WANT_READ ? EPOLLIN : EPOLLOUT) < 0) {
            conn_destroy(c);
            return -1;
        }
        return 0;
    }
    char why[512];
    int saved = errno;
    tls_error_text(why, sizeof why,
                   e == SSL_ERROR_SYSCALL && saved != 0 ? strerror(saved)
                                                        : "the peer closed the connection");
    long v = SSL_get_verify_result(c->ssl);
    if (v != X509_V_OK) {
        size_t len = strlen(why);
        snprintf(why + len, sizeof why - len, " (%s)", X509_verify_cert_error_string(v));
    }
    conn_log(ES_LOG_INFO, c, "TLS handshake with %s on %s failed: %s",
                             peer_name(c), c->l->name, why);
    metrics_add(&c->stats->errors[ME_TLS_HANDSHAKE], 1);
    /* FIN, then wait for the peer's: closing with its bytes unread would
     * reset the connection under the alert OpenSSL has sent. */
    conn_linger(c);
    return -1;
}

void conn_handshake_expired(es_conn *c)
{
    conn_log(ES_LOG_INFO, c,
             "TLS handshake with %s on %s: no handshake within %ld s: closing the connection",
             
             peer_name(c), c->l->name, c->w->gen->cfg.tls_handshake_timeout);
    metrics_add(&c->stats->errors[ME_TLS_HANDSHAKE_TIMEOUT], 1);
    conn_destroy(c);
}

/* Whether the real client sa (after a PROXY header) passes c's listener's
 * deny and allow lists, as a direct peer does at accept. Returns 1 or 0. */
static int client_allowed(const es_conn *c, const struct sockaddr *sa)
{
    const config_listener *lc = c->l->svc->cfg;
    if (cidr_list_match(lc->deny, lc->ndeny, sa))
        return 0;
    return lc->nallow == 0 || cidr_list_match(lc->allow, lc->nallow, sa);
}

/* Read c's PROXY header without blocking and without taking a byte past
 * it (what follows is the TLS handshake's or the plugin's): peek, parse,
 * then consume the header, or the incomplete part of it into c->in. Once
 * it is whole, its client becomes c's peer, passes allow/deny, and c goes
 * on to its TLS handshake or its plugin. A malformed, oversized or
 * truncated header, or a refused client, closes c (logged). Returns 0, or
 * -1 when c was freed or is closing. Owning worker. */
static int conn_proxy_read(es_conn *c)
{
    worker *w = c->w;
    listener *l = c->l;
    size_t have = c->in.len;
    uint8_t *p = w->rbuf; /* READ_BUF_SIZE >= PROXY_HEADER_MAX */
    if (have > 0)
        memcpy(p, buf_head(&c->in), have);
    ssize_t n = recv(c->fd, p + have, PROXY_HEADER_MAX - have, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        if (have > 0 || n < 0)
            conn_log(ES_LOG_WARN, c,
                     "PROXY header from %s on %s (listener %s): %s after %zu bytes: closing "
                     "the connection", peer_name(c), l->name, l->svc->cfg->name,
                     n < 0 ? strerror(errno) : "truncated, the peer closed", have);
        else
            conn_log(ES_LOG_DEBUG, c,
                     "%s closed the connection on %s before its PROXY header", peer_name(c),
                     l->name);
        conn_destroy(c);
        return -1;
    }
    proxy_header h;
    char why[256];
    ssize_t hlen = proxy_parse(p, have + (size_t)n, &h, why, sizeof why);
    if (hlen < 0) {
        conn_log(ES_LOG_WARN, c,
                 "PROXY header from %s on %s (listener %s): %s: closing the connection",
                 peer_name(c), l->name, l->svc->cfg->name, why);
        conn_destroy(c);
        return -1;
    }
    /* Peeked bytes are in the socket: taking them back cannot fall short. */
    size_t take = hlen == 0 ? (size_t)n : (size_t)hlen - have;
    if (recv(c->fd, p + have, take, 0) != (ssize_t)take) {
        conn_log(ES_LOG_WARN, c,
                 "PROXY header from %s on %s: read: %s: closing the connection", peer_name(c),
                 l->name, strerror(errno));
        conn_destroy(c);
        return -1;
    }
    if (hlen == 0) {
        if (buf_append(&c->in, p + have, take) < 0)
            return conn_oom(c, "reading the PROXY header from");
        return 0;
    }
    buf_free(&c->in);
    if (h.local) {
        conn_log(ES_LOG_DEBUG, c,
                 "PROXY v%d header from %s on %s: %s: serving the proxy's own connection",
                 h.version, peer_name(c), l->name, h.version == 1 ? "UNKNOWN" : "LOCAL");
    } else {
        char proxy_text[ADDR_TEXT_MAX];
        snprintf(proxy_text, sizeof proxy_text, "%s", peer_name(c));
        memcpy(&c->peer, &h.src, sizeof c->peer < sizeof h.src ? sizeof c->peer : sizeof h.src);
        free(c->peer_text);
        c->peer_text = NULL;
        if (!client_allowed(c, &c->peer.sa)) {
            conn_log(ES_LOG_DEBUG, c,
                     "refusing %s (via proxy %s) on %s: not allowed by listener %s",
                     peer_name(c), proxy_text, l->name, l->svc->cfg->name);
            conn_destroy(c);
            return -1;
        }
        conn_log(ES_LOG_DEBUG, c,
                 "PROXY v%d header from %s on %s: client %s", h.version, proxy_text, l->name,
                 peer_name(c));
    }
    conn_list_remove(&w->proxy, c);
    c->flags &= (uint32_t)~CF_PROXY;
    c->last_active = w->now;
    if (c->ssl != NULL) {
        c->flags |= CF_HANDSHAKE;
        conn_list_append(&w->handshake, c);
        return conn_handshake(c);
    }
    if (w->ring != NULL) {
        /* The header is in: io_uring serves the rest. */
        if (epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL) < 0) {
            conn_log(ES_LOG_ERROR, c, "epoll_ctl on the connection from %s: %s: closing it",
                     peer_name(c), strerror(errno));
            conn_destroy(c);
            return -1;
        }
        c->flags |= CF_URING;
        c->events = 0;
    }
    conn_list_append(&w->active[c->slot], c);
    return conn_start(c);
}

void conn_proxy_expired(es_conn *c)
{
    conn_log(ES_LOG_INFO, c,
             "no PROXY header from %s on %s within %ld s (proxy_timeout): closing the "
             "connection", peer_name(c), c->l->name, c->w->gen->cfg.proxy_timeout);
    conn_destroy(c);
}

void conn_event(es_conn *c, uint32_t events)
{
    if (c->flags & CF_LINGER) {
        /* Only the peer's FIN (or an error) is awaited: consume input. */
        conn_read_once(c);
        return;
    }
    if (c->flags & CF_PROXY) {
        conn_proxy_read(c);
        return;
    }
    if (c->flags & CF_HANDSHAKE) {
        conn_handshake(c);
        return;
    }
    if (events & EPOLLOUT) {
        if (c->flags & CF_TLS_RWW) {
            /* A read stopped for the socket to be writable: resume it. */
            c->flags &= (uint32_t)~CF_TLS_RWW;
            if (conn_read(c) < 0)
                return;
        }
        if (conn_flush(c) < 0)
            return;
        /* Resumed below the low-water mark with input waiting in OpenSSL. */
        if ((c->flags & CF_TLS_MORE) && !(c->flags & (CF_PAUSED | CF_EOF | CF_CLOSING))) {
            if (conn_read(c) < 0)
                return;
        }
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (c->flags & (CF_PAUSED | CF_EOF)) {
            /* Not reading: only a dead peer matters now. */
            if (events & (EPOLLERR | EPOLLHUP))
                conn_destroy(c);
            return;
        }
        conn_read(c);
    }
}

void conn_drain(es_conn *c)
{
    /* io_uring: whatever came in has been handled already. */
    if (!(c->flags & (CF_PAUSED | CF_EOF | CF_LINGER | CF_CLOSING | CF_URING))) {
        if (conn_read(c) < 0)
            return;
    }
    if (!(c->flags & CF_LINGER) && conn_is_quiet(c))
        conn_linger(c);
}

/* The plugin's open hook, then whatever it wrote. Returns 0, or -1 when c
 * was freed (the plugin refused it) or is closing. */
static int conn_start(es_conn *c)
{
    listener *l = c->l;
    const es_plugin *h = l->hooks;
    if (h->open != NULL && h->open(c, l->instance, h->conn_size ? c->state : NULL) != 0) {
        conn_log(ES_LOG_DEBUG, c, "plugin refused the connection from %s", peer_name(c));
        metrics_add(&c->stats->errors[ME_PLUGIN], 1);
        conn_destroy(c);
        return -1;
    }
    c->flags &= (uint32_t)~CF_NOPLUGIN;
    conn_log(ES_LOG_DEBUG, c, "connection from %s on %s (listener %s%s)", peer_name(c), l->name,
              l->svc->cfg->name, c->ssl != NULL ? ", TLS" : "");
    return conn_flush(c);
}

int conn_open(worker *w, listener *l, int fd, const struct sockaddr *sa, socklen_t salen)
{
    const es_plugin *h = l->hooks;
    metrics_block *stats = &l->svc->stats->w[w->id];
    es_conn *c = calloc(1, sizeof *c + h->conn_size);
    if (c == NULL) {
        log_error("out of memory: refusing a connection on %s", l->name);
        metrics_add(&stats->refused[MR_RESOURCES], 1);
        close(fd);
        conn_uncount(w, l);
        return -1;
    }
    c->kind = SRC_CONN;
    c->flags = CF_NOPLUGIN;
    c->fd = fd;
    c->w = w;
    c->l = l;
    c->stats = stats;
    c->slot = (uint32_t)l->svc->slot->index;
    c->last_active = w->now;
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        memcpy(&c->peer, sa, salen < sizeof c->peer ? salen : sizeof c->peer);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (l->tls != NULL) {
        ERR_clear_error();
        c->ssl = SSL_new(l->tls);
        if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
            char why[256];
            log_error("TLS: cannot set up a connection on %s: %s: refusing it", l->name,
                      tls_error_text(why, sizeof why, "out of memory"));
            metrics_add(&stats->refused[MR_RESOURCES], 1);
            SSL_free(c->ssl);
            close(fd);
            free(c);
            conn_uncount(w, l);
            return -1;
        }
        SSL_set_accept_state(c->ssl);
    }
    int proxy = l->svc->cfg->proxy.on;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (w->ring != NULL && c->ssl == NULL && !proxy) {
        c->flags |= CF_URING; /* its receive is armed once the plugin has it */
    } else if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        log_error("epoll_ctl: %s: refusing a connection on %s", strerror(errno), l->name);
        metrics_add(&stats->refused[MR_RESOURCES], 1);
        SSL_free(c->ssl);
        close(fd);
        free(c);
        conn_uncount(w, l);
        return -1;
    }
    c->events = (c->flags & CF_URING) ? 0 : EPOLLIN;
    l->gen->wconns[w->id]++;
    metrics_add(&stats->opened, 1);
    if (proxy) {
        /* Nothing runs before its PROXY header: within proxy_timeout. */
        c->flags |= CF_PROXY;
        conn_list_append(&w->proxy, c);
        return 0;
    }
    if (c->ssl != NULL) {
        /* The plugin sees it once the handshake is done: wait for the
         * ClientHello, within tls_handshake_timeout. */
        c->flags |= CF_HANDSHAKE;
        conn_list_append(&w->handshake, c);
        return 0;
    }
    conn_list_append(&w->active[c->slot], c);
    return conn_start(c);
}

/* The io_uring back end (uring.c) serves plain TCP connections once the
 * plugin has them: input comes in provided buffers (multishot receive),
 * output leaves through one send in flight at a time, submitted with the
 * rest of the worker's at the end of its loop turn. TLS connections, and
 * connections awaiting their PROXY header, stay on the epoll set. */

/* Whether c's receive should be armed. */
static int uring_wants_read(const es_conn *c)
{
    if (c->flags & (CF_DEAD | CF_EOF | CF_ABORT))
        return 0;
    if (c->flags & CF_LINGER)
        return 1;
    return !(c->flags & (CF_PAUSED | CF_CLOSING));
}

/* Send the queued output, unless a send is in flight: c->out becomes the
 * bytes in flight. Returns 0, or -1 when the ring is broken. */
static int uring_send_queued(es_conn *c)
{
    if ((c->flags & CF_SENDING) || c->out.len == 0)
        return 0;
    pool_put(c->w, &c->sending);
    c->sending = c->out;
    memset(&c->out, 0, sizeof c->out);
    return uring_send(c, buf_head(&c->sending), c->sending.len);
}

/* conn_flush() of the io_uring back end: start sending the replies of the
 * input just handled (from the provided buffer they lie in, when they are
 * an echo of it and nothing is queued before them), then settle closing,
 * backpressure and the receive. Returns 0, or -1 when c was freed. */
static int conn_flush_uring(es_conn *c)
{
    worker *w = c->w;
    if (c->flags & CF_ABORT) {
        conn_destroy(c);
        return -1;
    }
    if (c->flags & CF_LINGER) {
        if (uring_recv_start(c) < 0) {
            conn_destroy(c);
            return -1;
        }
        return 0;
    }
    if (w->cur == c) {
        const uint8_t *p = w->span_len ? w->span : buf_head(&w->stage);
        size_t len = w->span_len ? w->span_len : w->stage.len;
        int idle = !(c->flags & CF_SENDING) && c->out.len == 0;
        int rc = 0;
        if (len == 0 && c->out.len == 0)
            quiet_enter(c);
        else
            quiet_leave(c);
        if (len == 0) {
            /* nothing to send */
        } else if (w->span_len > 0 && w->cur_bid >= 0 && c->out.len == 0 &&
                   (rc = uring_send_span(c, p, len, w->cur_bid)) != 0) {
            /* Sent from the receive buffer, kept until the send is done. */
            if (rc > 0) {
                w->cur_bid_held = 1;
                rc = 0;
            }
        } else if (idle && w->span_len == 0) {
            /* Hand the staging buffer over instead of copying it. */
            buf_free(&c->sending);
            c->sending = w->stage;
            memset(&w->stage, 0, sizeof w->stage);
            rc = uring_send(c, buf_head(&c->sending), c->sending.len);
        } else if (pool_take(w, &c->out, len), buf_append(&c->out, p, len) < 0) {
            stage_reset(w);
            return conn_oom(c, "queueing output for");
        }
        stage_reset(w);
        if (w->stage.cap > STAGE_KEEP)
            buf_free(&w->stage);
        if (rc < 0) {
            conn_destroy(c);
            return -1;
        }
    }
    if (uring_send_queued(c) < 0) {
        conn_destroy(c);
        return -1;
    }
    uint32_t was_paused = c->flags & CF_PAUSED;
    if (conn_settle(c) < 0)
        return -1;
    if ((c->flags & CF_PAUSED) && !was_paused)
        uring_recv_stop(c);
    if (uring_wants_read(c) && uring_recv_start(c) < 0) {
        conn_destroy(c);
        return -1;
    }
    return 0;
}

void conn_probe(es_conn *c)
{
    quiet_leave(c);
    uint8_t b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                            errno == ENOMEM)))
        return; /* there: its receive reports what comes */
    if (c->flags & CF_LINGER) {
        conn_destroy(c); /* the peer's end, or its reset: what lingering waits for */
        return;
    }
    if (n == 0) {
        if (c->flags & CF_EOF)
            return;
        conn_log(ES_LOG_DEBUG, c, "end of input from %s, found by a probe", peer_name(c));
        uring_recv_stop(c);
        conn_eof(c);
        return;
    }
    conn_log(ES_LOG_DEBUG, c, "read from %s: %s (found by a probe)", peer_name(c),
             strerror(errno));
    metrics_add(&c->stats->errors[ME_IO], 1);
    conn_destroy(c);
}

void conn_uring_free(es_conn *c)
{
    conn_list_remove(&c->w->zombies, c);
    close(c->fd);
    pool_put(c->w, &c->sending);
    free(c);
}

void conn_uring_kick(es_conn *c)
{
    if (c->flags & CF_DEAD) {
        if (!(c->flags & (CF_RECVING | CF_SENDING)))
            conn_uring_free(c);
        return;
    }
    conn_flush_uring(c);
}

void conn_uring_recv(es_conn *c, int res, int bid, int more)
{
    worker *w = c->w;
    if (!more)
        c->flags &= (uint32_t)~CF_RECVING;
    if (c->flags & CF_DEAD) {
        if (bid >= 0)
            uring_buf_release(w, bid);
        conn_uring_kick(c);
        return;
    }
    if (res > 0 && bid >= 0) {
        if (c->flags & (CF_LINGER | CF_CLOSING | CF_EOF | CF_ABORT)) {
            /* Past the end of the conversation: discarded, as epoll's
             * reader would leave it unread. */
            uring_buf_release(w, bid);
        } else {
            const uint8_t *data = uring_buf_addr(w, bid);
            int rc;
            if (c->in.len > 0) {
                /* The rest of a message: joins its start. */
                pool_take(w, &c->in, (size_t)res);
                if (buf_append(&c->in, data, (size_t)res) < 0) {
                    uring_buf_release(w, bid);
                    conn_oom(c, "reading from");
                    return;
                }
                uring_buf_release(w, bid);
                rc = conn_input(c, NULL, (size_t)res, 0);
            } else {
                /* Framed where it lies: an echo is sent from this buffer,
                 * which is then given back once the send is done. */
                w->cur_bid = bid;
                w->cur_bid_held = 0;
                rc = conn_input(c, data, (size_t)res, 1);
                if (!w->cur_bid_held)
                    uring_buf_release(w, bid);
                w->cur_bid = -1;
            }
            if (rc < 0)
                return;
        }
    } else if (res == 0) {
        if (bid >= 0)
            uring_buf_release(w, bid);
        if (c->flags & CF_LINGER) {
            conn_destroy(c);
            return;
        }
        if (!(c->flags & CF_EOF))
            conn_eof(c);
        return;
    } else if (res == -ENOBUFS) {
        /* Every buffer is in use: receive again once some are back. */
        if (!(c->flags & CF_RECVING))
            uring_recv_later(c);
        return;
    } else if (res != -ECANCELED) {
        if (bid >= 0)
            uring_buf_release(w, bid);
        if (!(c->flags & CF_LINGER)) {
            conn_log(ES_LOG_DEBUG, c, "read from %s: %s", peer_name(c), strerror(-res));
            metrics_add(&c->stats->errors[ME_IO], 1);
        }
        conn_destroy(c);
        return;
    }
    if (!more && !(c->flags & CF_RECVING) && uring_wants_read(c) && uring_recv_start(c) < 0)
        conn_destroy(c);
}

void conn_uring_sent(es_conn *c, int res)
{
    c->flags &= (uint32_t)~CF_SENDING;
    if (c->flags & CF_DEAD) {
        if (c->tx != NULL)
            uring_tx_finish(c, 0, NULL);
        conn_uring_kick(c);
        return;
    }
    if (res == -EAGAIN || res == -EINTR)
        res = 0;
    if (res < 0) {
        if (c->tx != NULL)
            uring_tx_finish(c, 0, NULL);
        conn_log(ES_LOG_DEBUG, c, "write to %s: %s", peer_name(c), strerror(-res));
        metrics_add(&c->stats->errors[ME_IO], 1);
        conn_destroy(c);
        return;
    }
    if (res > 0) {
        metrics_add(&c->stats->bytes_out, (uint64_t)res);
        conn_touch(c);
    }
    if (c->tx != NULL) {
        /* From provided buffers. A peer too slow for all of it: the rest
         * moves out of them (they go back to the kernel at once) and
         * waits for room in a send of its own. */
        if (uring_tx_finish(c, (size_t)res, &c->sending) < 0) {
            conn_oom(c, "queueing output for");
            return;
        }
    } else {
        buf_consume(&c->sending, (size_t)res);
    }
    if (c->sending.len > 0) {
        if (uring_send(c, buf_head(&c->sending), c->sending.len) < 0) {
            conn_destroy(c);
            return;
        }
    } else {
        pool_put(c->w, &c->sending);
    }
    conn_flush_uring(c);
}

/* Services for plugins. */

static int host_write(es_conn *c, const void *data, size_t len)
{
    if (c->flags & (CF_CLOSING | CF_ABORT | CF_LINGER))
        return -1;
    worker *w = c->w;
    buf *b = &c->out;
    if (w->cur == c && c->out.len == 0) {
        /* A reply made of input bytes (an echo) is sent from the input
         * itself: consecutive ones extend one span. */
        uintptr_t p = (uintptr_t)data;
        if (w->stage.len == 0 && p >= w->in_lo && p + len <= w->in_hi) {
            if (w->span_len == 0)
                w->span = data;
            if (w->span + w->span_len == data) {
                w->span_len += len;
                return 0;
            }
        }
        b = &w->stage;
        if (w->span_len > 0) {
            if (buf_append(b, w->span, w->span_len) < 0)
                goto oom;
            w->span_len = 0;
        }
    }
    pool_take(w, b, len);
    if (buf_append(b, data, len) < 0)
        goto oom;
    return 0;
oom:
    conn_log(ES_LOG_ERROR, c, "out of memory queueing %zu bytes for %s: closing the connection",
                              len,
              peer_name(c));
    c->flags |= CF_ABORT;
    return -1;
}

static void host_close(es_conn *c)
{
    c->flags |= CF_CLOSING;
}

static void host_log(const es_conn *c, enum es_log_level level, const char *fmt, ...)
{
    if ((int)level > log_threshold)
        return;
    char fields[ADDR_TEXT_MAX + 160];
    if (c != NULL)
        snprintf(fields, sizeof fields, "plugin=%s peer=%s listener=%s", c->l->hooks->name,
                 peer_name((es_conn *)c), c->l->svc->cfg->name);
    else
        fields[0] = '\0';
    va_list ap;
    va_start(ap, fmt);
    log_vfields((int)level, fields, fmt, ap);
    va_end(ap);
}

static const char *host_peer(const es_conn *c)
{
    return peer_name((es_conn *)c);
}

static void *host_instance(const es_conn *c)
{
    return c->l->instance;
}

void conn_host_init(es_host *host)
{
    memset(host, 0, sizeof *host);
    host->size = sizeof *host;
    host->abi_major = ES_PLUGIN_ABI_MAJOR;
    host->abi_minor = ES_PLUGIN_ABI_MINOR;
    host->write = host_write;
    host->close = host_close;
    host->log = host_log;
    host->peer = host_peer;
    host->instance = host_instance;
}
