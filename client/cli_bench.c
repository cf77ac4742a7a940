/* cli_bench.c - `echocli bench`: epoll loops drive pipelined connections, check every reply. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "addr.h"
#include "cli.h"
#include "frame.h"
#include "hist.h"
#include "tls.h"

#define PAT_LEN 65521u          /* pattern period: prime, so it never lines up with buffer sizes */
#define RBUF_SIZE (256u * 1024) /* one read buffer per loop */
#define MAX_IOV 64              /* iovecs per sendmsg: up to 32 whole messages */
#define MAX_EVENTS 256
#define CONNECT_WINDOW 256      /* connects in progress at once per loop */
#define MAX_DIAG 10             /* error details printed per run */
#define PROGRESS_NS 250000000u  /* progress line period */
#define SCAN_NS 100000000u      /* period of the timeout scans */
#define TBUF_SIZE 16384u        /* TLS: requests staged for one SSL_write, one record at most */

enum { B_CONNECTING, B_HANDSHAKE, B_READY, B_DEAD };
enum { E_CONNECT, E_CLOSED, E_MISMATCH, E_TIMEOUT, E_KINDS };
static const char *const error_names[E_KINDS] = { "connect", "closed", "mismatch", "timeout" };
enum { OUT_HUMAN, OUT_CSV, OUT_JSON };

struct bench_opts {
    const char *addr_text;
    addr addr;
    unsigned conns, threads, pipeline;
    size_t size;                /* message body, the separator excluded */
    size_t msglen;              /* size + sep_len: one request, and its reply */
    uint64_t requests;          /* 0: no limit (-d alone) */
    double duration;            /* 0: no limit */
    double timeout;
    uint8_t sep[FRAME_SEP_MAX];
    size_t sep_len;
    int format;
    struct cli_tls tls;
};

/*
 * One connection. Requests are numbered per connection; request k carries
 * body bytes [off(id, k), off(id, k) + size) of g_body, then the separator.
 * Requests [rseq, wseq) are written and wait for their reply; wpos > 0 bytes
 * of request wseq are written. A reply that arrived in pieces is gathered in
 * carry (one reply at most, allocated once) so frame_next sees it whole.
 */
struct bconn {
    int fd;
    uint8_t state;
    bool blocked;               /* the last send hit EAGAIN: wait for EPOLLOUT */
    bool pending_in;            /* readable before the run started */
    uint32_t id;
    uint64_t wseq, rseq;
    size_t wpos;
    uint64_t *tsend;            /* [k % pipeline]: when request k's first byte was sent */
    uint64_t t_active;          /* connect start, or last progress with requests in flight */
    frame_scan fs;
    uint8_t *carry;
    size_t carry_len;
    /* TLS: requests are copied into tbuf (TBUF_SIZE bytes, from the sent position on) and
     * written from there, as SSL_write has no gather form; the staged requests' budget is
     * taken when they are staged. */
    SSL *ssl;
    bool tls_ok;                /* no fatal TLS error: close_notify on retire */
    bool rd_wants_write;        /* SSL_read waits for EPOLLOUT */
    bool wr_wants_read;         /* SSL_write waits for EPOLLIN */
    uint8_t *tbuf;
    size_t tlen, toff;
};

/* One epoll loop and the connections it owns; everything is touched by its thread only, but
 * for pub_done/pub_errors, which the main thread reads for the progress line. */
struct bworker {
    pthread_t tid;
    int epfd;
    struct bconn *conns;
    unsigned nconns, live;
    uint8_t *rbuf;
    SSL_CTX *ssl_ctx;           /* with --tls: its own, so that no OpenSSL object (the CA
                                 * certificates' caches) is shared between the loops */
    uint64_t budget;            /* requests still to start; UINT64_MAX: no limit */
    uint64_t inflight;
    bool sending;
    uint64_t t_start, t_last_done;
    hist lat;                   /* nanoseconds, of the replies checked */
    uint64_t errors[E_KINDS];
    _Atomic uint64_t pub_done, pub_errors;
};

static struct bench_opts g_opt;
static SSL_CTX *g_ssl_ctx;      /* with --tls */
static char g_tls_name[ADDR_TEXT_MAX];  /* verified and sent as SNI; "": none */
static uint8_t *g_body;         /* PAT_LEN + size bytes: the pattern, repeated */
static _Atomic uint64_t g_deadline;     /* CLOCK_MONOTONIC ns when sending stops; 0: none */
static atomic_int g_diag;
static atomic_bool g_progress_on;
static volatile sig_atomic_t g_stop;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv;     /* a loop connected or finished, or g_go was set */
static unsigned g_connected;    /* under g_mu: loops done connecting */
static unsigned g_finished;     /* under g_mu: loops done */
static bool g_go;               /* under g_mu: every loop connected, the clock runs */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: echocli bench [-a ADDR] [-c CONNECTIONS] [-n REQUESTS] [-s SIZE] [-P PIPELINE]\n"
        "                     [-d SECONDS] [-t TIMEOUT] [-T THREADS] [-S SEPARATOR] [--csv | --json]\n"
        "  -a ADDR         HOST:PORT, [IPv6]:PORT or unix:/path (default " CLI_DEFAULT_ADDR ")\n"
        "  -c CONNECTIONS  connections, all opened before the clock starts (default 8)\n"
        "  -n REQUESTS     requests in total, then stop (default 100000 unless -d is given)\n"
        "  -s SIZE         message bytes before the separator, k/m suffixes (default 64)\n"
        "  -P PIPELINE     requests in flight per connection (default 1)\n"
        "  -d SECONDS      stop starting requests after SECONDS (with -n: whichever comes first)\n"
        "  -t TIMEOUT      seconds for each connect and for a connection without progress (10)\n"
        "  -T THREADS      epoll loops, the connections split between them (default 1)\n"
        "  -S SEPARATOR    the server's separator, C escapes (default \\r\\n\\r\\n)\n"
        "  --csv, --json   print a CSV header and row, or one JSON object, instead of a summary\n"
        "TLS (the handshakes are done before the clock starts):\n"
        CLI_TLS_USAGE
        "Every reply byte is checked. Exit status: 0, 1 if any error was counted (a failed TLS\n"
        "handshake is a connect error), 2 on bad usage.\n");
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* An error detail on stderr, MAX_DIAG per run at most. Any thread. */
static void diag(const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (atomic_fetch_add(&g_diag, 1) >= MAX_DIAG)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%sechocli bench: %s\n", atomic_load(&g_progress_on) ? "\r\033[K" : "", line);
}

/* murmur3's 64-bit finaliser: a well-mixed offset for each (connection, request). */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static size_t body_offset(uint32_t id, uint64_t seq)
{
    return (size_t)(mix64(((uint64_t)id << 40) ^ seq ^ 0x6563686f) % PAT_LEN);
}

/* Build g_body from printable bytes that do not occur in the separator, so a body never holds
 * it. Returns 0 or -1. */
static int body_init(void)
{
    uint8_t alphabet[94];
    unsigned na = 0;
    uint64_t s = 0x2545f4914f6cdd1dull;

    for (unsigned b = 33; b < 127; b++)
        if (memchr(g_opt.sep, (int)b, g_opt.sep_len) == NULL)
            alphabet[na++] = (uint8_t)b;
    if (na == 0)
        return -1;
    g_body = malloc(PAT_LEN + g_opt.size);
    if (g_body == NULL)
        return -1;
    for (size_t i = 0; i < PAT_LEN; i++) {
        s ^= s >> 12;                   /* xorshift64* */
        s ^= s << 25;
        s ^= s >> 27;
        g_body[i] = alphabet[((s * 0x2545f4914f6cdd1dull) >> 32) % na];
    }
    for (size_t i = PAT_LEN; i < PAT_LEN + g_opt.size; i++)
        g_body[i] = g_body[i - PAT_LEN];
    return 0;
}

static uint64_t conn_inflight(const struct bconn *c)
{
    return c->wseq - c->rseq + (c->wpos > 0);
}

/* Free the TLS state of c: a close_notify first (one attempt) if notify and the session is
 * sound. */
static void conn_tls_free(struct bconn *c, bool notify)
{
    if (c->ssl == NULL)
        return;
    if (notify && c->tls_ok && c->state == B_READY) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
    }
    SSL_free(c->ssl);
    ERR_clear_error();
    c->ssl = NULL;
    free(c->tbuf);
    c->tbuf = NULL;
    c->tlen = c->toff = 0;
}

/* Count an error of KIND against the connection and close it. Owning loop only. */
static void conn_fail(struct bworker *w, struct bconn *c, int kind)
{
    conn_tls_free(c, false);
    if (c->state == B_READY) {
        w->inflight -= conn_inflight(c);
        w->live--;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = B_DEAD;
    w->errors[kind]++;
    atomic_fetch_add_explicit(&w->pub_errors, 1, memory_order_relaxed);
}

/* Close a connection that is done, without an error. */
static void conn_retire(struct bworker *w, struct bconn *c)
{
    conn_tls_free(c, true);
    if (c->state == B_READY)
        w->live--;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = B_DEAD;
}

static void show_byte(char *out, size_t cap, int b)
{
    if (b < 0)
        snprintf(out, cap, "nothing");
    else if (b >= 33 && b < 127)
        snprintf(out, cap, "'%c'", b);
    else
        snprintf(out, cap, "0x%02x", (unsigned)b);
}

/* Describe how reply seq (flen bytes at frame) differs from the request. */
static void report_mismatch(const struct bconn *c, uint64_t seq, const uint8_t *frame,
                            size_t flen, bool complete)
{
    const uint8_t *body = g_body + body_offset(c->id, seq);
    size_t j = 0;
    char want[8], got[8];

    while (j < flen && j < g_opt.msglen &&
           frame[j] == (j < g_opt.size ? body[j] : g_opt.sep[j - g_opt.size]))
        j++;
    if (j == flen && complete) {
        diag("connection %u, request %" PRIu64 ": reply of %zu bytes, expected %zu", c->id, seq,
             flen, g_opt.msglen);
        return;
    }
    show_byte(want, sizeof want, j < g_opt.size ? body[j] : g_opt.sep[j - g_opt.size]);
    show_byte(got, sizeof got, j < flen ? frame[j] : -1);
    diag("connection %u, request %" PRIu64 ": reply byte %zu of %zu is %s, expected %s", c->id,
         seq, j, g_opt.msglen, got, want);
}

/* One complete, checked reply at time t. */
static void reply_done(struct bworker *w, struct bconn *c, uint64_t t)
{
    hist_add(&w->lat, t - c->tsend[c->rseq % g_opt.pipeline]);
    c->rseq++;
    c->t_active = t;
    w->inflight--;
    w->t_last_done = t;
}

/* Check n received bytes against the requests in flight. A reply that is whole in the buffer
 * and equal to its request is taken as is (the common case: two memcmp); one that arrived in
 * pieces is gathered in c->carry and ended by frame_next(), as is one that differs, so that the
 * report says where the server's reply really ended. Returns 0, or -1 once the connection
 * failed. */
static int conn_consume(struct bworker *w, struct bconn *c, const uint8_t *p, size_t n)
{
    size_t msglen = g_opt.msglen;
    uint64_t t = 0;

    while (n > 0) {
        const uint8_t *frame;
        size_t flen;

        if (c->rseq == c->wseq) {
            diag("connection %u: %zu unexpected bytes, no request in flight", c->id, n);
            conn_fail(w, c, E_MISMATCH);
            return -1;
        }
        if (c->carry_len > 0) {
            size_t take = n < msglen - c->carry_len ? n : msglen - c->carry_len;

            memcpy(c->carry + c->carry_len, p, take);
            c->carry_len += take;
            p += take;
            n -= take;
            flen = frame_next(&c->fs, c->carry, c->carry_len);
            if (flen == 0 && c->carry_len < msglen)
                return 0;               /* n is 0: the rest comes later */
            frame = c->carry;
            c->carry_len = 0;
        } else if (n >= msglen && memcmp(p + g_opt.size, g_opt.sep, g_opt.sep_len) == 0 &&
                   memcmp(p, g_body + body_offset(c->id, c->rseq), g_opt.size) == 0) {
            /* The whole reply is here and is the request, byte for byte: since no body holds
             * the separator, this is also where frame_next() would end it. */
            p += msglen;
            n -= msglen;
            if (t == 0)
                t = now_ns();
            reply_done(w, c, t);
            continue;
        } else {
            size_t look = n < msglen ? n : msglen;

            flen = frame_next(&c->fs, p, look);
            if (flen == 0 && look < msglen) {
                if (c->carry == NULL && (c->carry = malloc(msglen)) == NULL) {
                    diag("connection %u: out of memory", c->id);
                    conn_fail(w, c, E_CLOSED);
                    return -1;
                }
                memcpy(c->carry, p, n);
                c->carry_len = n;
                return 0;
            }
            frame = p;
            p += flen;
            n -= flen;
        }
        if (flen != msglen ||
            memcmp(frame, g_body + body_offset(c->id, c->rseq), g_opt.size) != 0) {
            report_mismatch(c, c->rseq, frame, flen ? flen : msglen, flen != 0);
            conn_fail(w, c, E_MISMATCH);
            return -1;
        }
        if (t == 0)
            t = now_ns();
        reply_done(w, c, t);
    }
    return 0;
}

/* Read through OpenSSL until it wants more from the socket (WANT_READ): only then is nothing
 * left that epoll could not see (decrypted bytes, a buffered record). Returns 0, or -1 once
 * the connection is gone. */
static int conn_read_tls(struct bworker *w, struct bconn *c)
{
    c->rd_wants_write = false;
    for (;;) {
        ERR_clear_error();
        int n = SSL_read(c->ssl, w->rbuf, RBUF_SIZE);

        if (n > 0) {
            if (conn_consume(w, c, w->rbuf, (size_t)n) < 0)
                return -1;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            return 0;
        if (e == SSL_ERROR_WANT_WRITE) {
            c->rd_wants_write = true;
            return 0;
        }
        char why[256];
        int rc = tls_failure(c->ssl, n, e, why, sizeof why);
        c->tls_ok = e == SSL_ERROR_ZERO_RETURN;
        if (rc == -ECONNRESET && conn_inflight(c) == 0 && !w->sending) {
            conn_retire(w, c);          /* nothing lost */
            return -1;
        }
        diag("connection %u: %s with %" PRIu64 " request(s) in flight", c->id, why,
             conn_inflight(c));
        conn_fail(w, c, E_CLOSED);
        return -1;
    }
}

/* Read until the socket is drained: a short read says so, unless the event also reported
 * the peer's close (hup), which only a read of 0 shows, since no new edge will come for it.
 * Returns 0, or -1 once the connection is gone. */
static int conn_read(struct bworker *w, struct bconn *c, bool hup)
{
    if (c->ssl != NULL)
        return conn_read_tls(w, c);
    for (;;) {
        ssize_t n = read(c->fd, w->rbuf, RBUF_SIZE);

        if (n > 0) {
            if (conn_consume(w, c, w->rbuf, (size_t)n) < 0)
                return -1;
            if ((size_t)n < RBUF_SIZE && !hup)
                return 0;               /* drained; new data raises a new edge */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (conn_inflight(c) == 0 && !w->sending) {
            conn_retire(w, c);          /* nothing lost */
            return -1;
        }
        diag("connection %u: %s with %" PRIu64 " request(s) in flight", c->id,
             n == 0 ? "closed by the server" : strerror(errno), conn_inflight(c));
        conn_fail(w, c, E_CLOSED);
        return -1;
    }
}

/* Append the iovecs of request seq from byte pos on. */
static int add_request(struct iovec *iov, int n, const struct bconn *c, uint64_t seq, size_t pos)
{
    if (pos < g_opt.size) {
        iov[n].iov_base = g_body + body_offset(c->id, seq) + pos;
        iov[n++].iov_len = g_opt.size - pos;
        pos = g_opt.size;
    }
    iov[n].iov_base = g_opt.sep + (pos - g_opt.size);
    iov[n++].iov_len = g_opt.msglen - pos;
    return n;
}

/* Account for r bytes sent at time t: start times, budget (unless taken already when the
 * requests were staged), requests in flight. */
static void conn_sent(struct bworker *w, struct bconn *c, size_t r, uint64_t t)
{
    while (r > 0) {
        size_t rem = g_opt.msglen - c->wpos;

        if (c->wpos == 0) {
            if (c->wseq == c->rseq)
                c->t_active = t;
            c->tsend[c->wseq % g_opt.pipeline] = t;
            if (w->budget != UINT64_MAX && c->ssl == NULL)
                w->budget--;
            w->inflight++;
        }
        if (r >= rem) {
            r -= rem;
            c->wseq++;
            c->wpos = 0;
        } else {
            c->wpos += r;
            r = 0;
        }
    }
}

/* Copy into c->tbuf, from the sent position on, the rest of the current request and new ones
 * while the pipeline and the budget allow, TBUF_SIZE bytes at most; the budget of the
 * requests started here is taken now. Returns the bytes staged. */
static size_t tls_stage(struct bworker *w, struct bconn *c)
{
    uint64_t seq = c->wseq, infl = conn_inflight(c);
    size_t pos = c->wpos, len = 0;

    for (;;) {
        if (pos == 0) {
            if (!w->sending || infl >= g_opt.pipeline || w->budget == 0)
                break;
            infl++;
            if (w->budget != UINT64_MAX)
                w->budget--;
        }
        while (pos < g_opt.msglen && len < TBUF_SIZE) {
            const uint8_t *src;
            size_t n;
            if (pos < g_opt.size) {
                src = g_body + body_offset(c->id, seq) + pos;
                n = g_opt.size - pos;
            } else {
                src = g_opt.sep + (pos - g_opt.size);
                n = g_opt.msglen - pos;
            }
            if (n > TBUF_SIZE - len)
                n = TBUF_SIZE - len;
            memcpy(c->tbuf + len, src, n);
            len += n;
            pos += n;
        }
        if (pos < g_opt.msglen)
            break;                      /* the buffer is full */
        seq++;
        pos = 0;
    }
    return len;
}

/* conn_write over TLS: stage requests, SSL_write them. Returns 0, or -1 once the connection
 * failed. */
static int conn_write_tls(struct bworker *w, struct bconn *c)
{
    while (c->state == B_READY && !c->blocked && !c->wr_wants_read) {
        if (c->toff == c->tlen) {
            c->toff = 0;
            c->tlen = tls_stage(w, c);
            if (c->tlen == 0)
                return 0;
        }
        uint64_t t = now_ns();
        ERR_clear_error();
        int r = SSL_write(c->ssl, c->tbuf + c->toff, (int)(c->tlen - c->toff));
        if (r > 0) {
            conn_sent(w, c, (size_t)r, t);
            c->toff += (size_t)r;
            continue;
        }
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE) {
            c->blocked = true;
            return 0;
        }
        if (e == SSL_ERROR_WANT_READ) {
            c->wr_wants_read = true;
            return 0;
        }
        char why[256];
        tls_failure(c->ssl, r, e, why, sizeof why);
        c->tls_ok = false;
        diag("connection %u: send: %s", c->id, why);
        conn_fail(w, c, E_CLOSED);
        return -1;
    }
    return 0;
}

/* Send the rest of the current request and start new ones while the pipeline and the budget
 * allow, until EAGAIN. Returns 0, or -1 once the connection failed. */
static int conn_write(struct bworker *w, struct bconn *c)
{
    struct iovec iov[MAX_IOV];

    if (c->ssl != NULL)
        return conn_write_tls(w, c);
    while (c->state == B_READY && !c->blocked) {
        uint64_t seq = c->wseq, infl = conn_inflight(c), budget = w->budget;
        struct msghdr mh = { .msg_iov = iov };
        int n = 0;

        if (c->wpos > 0)
            n = add_request(iov, n, c, seq++, c->wpos);
        while (w->sending && n + 2 <= MAX_IOV && infl < g_opt.pipeline && budget > 0) {
            n = add_request(iov, n, c, seq++, 0);
            infl++;
            if (budget != UINT64_MAX)
                budget--;
        }
        if (n == 0)
            return 0;
        mh.msg_iovlen = (size_t)n;
        uint64_t t = now_ns();
        ssize_t r = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->blocked = true;
                return 0;
            }
            diag("connection %u: send: %s", c->id, strerror(errno));
            conn_fail(w, c, E_CLOSED);
            return -1;
        }
        conn_sent(w, c, (size_t)r, t);
    }
    return 0;
}

static void conn_event(struct bworker *w, struct bconn *c, uint32_t ev)
{
    bool in = (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;

    if (c->state != B_READY)
        return;
    if ((in || (c->rd_wants_write && (ev & EPOLLOUT))) &&
        conn_read(w, c, (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) < 0)
        return;
    if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
        c->blocked = false;
    if (in)
        c->wr_wants_read = false;
    conn_write(w, c);
}

/* One step of c's TLS handshake. Returns 1 once done (c is ready), 0 while it waits for the
 * socket, -1 if it failed (c is dead, counted as a connect error). */
static int conn_handshake(struct bworker *w, struct bconn *c, const char *text)
{
    ERR_clear_error();
    int r = SSL_connect(c->ssl);

    if (r == 1) {
        c->state = B_READY;
        c->tls_ok = true;
        c->pending_in = true;           /* what OpenSSL may hold is read before the run */
        w->live++;
        return 1;
    }
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    char why[256];
    tls_failure(c->ssl, r, e, why, sizeof why);
    diag("TLS handshake with %s failed: %s", text, why);
    conn_fail(w, c, E_CONNECT);
    return -1;
}

/* The TCP connection of c is up: ready, or with TLS its handshake begins. Returns as
 * conn_handshake() does. */
static int conn_tcp_up(struct bworker *w, struct bconn *c, const char *text)
{
    char err[256];

    if (g_ssl_ctx == NULL) {
        c->state = B_READY;
        w->live++;
        return 1;
    }
    c->tbuf = malloc(TBUF_SIZE);
    c->ssl = c->tbuf ? tls_conn_new(w->ssl_ctx, c->fd, g_tls_name[0] ? g_tls_name : NULL, err,
                                    sizeof err) : NULL;
    if (c->ssl == NULL) {
        diag("TLS with %s: %s", text, c->tbuf ? err : "out of memory");
        conn_fail(w, c, E_CONNECT);
        return -1;
    }
    c->state = B_HANDSHAKE;
    return conn_handshake(w, c, text);
}

/* Start a connection: non-blocking for TCP, blocking (bounded by SO_SNDTIMEO) for unix
 * sockets, whose connect says EAGAIN, not EINPROGRESS, on a full backlog. */
static void conn_open(struct bworker *w, struct bconn *c)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c };
    int family = g_opt.addr.ss.ss_family, one = 1, rc;
    bool is_unix = family == AF_UNIX;
    char text[ADDR_TEXT_MAX];

    c->t_active = now_ns();
    c->fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | (is_unix ? 0 : SOCK_NONBLOCK), 0);
    if (c->fd < 0) {
        diag("socket: %s", strerror(errno));
        conn_fail(w, c, E_CONNECT);
        return;
    }
    if (is_unix) {
        int ms = (int)(g_opt.timeout * 1000);
        struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    } else {
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    do
        rc = connect(c->fd, (struct sockaddr *)&g_opt.addr.ss, g_opt.addr.len);
    while (rc < 0 && errno == EINTR && is_unix);
    if (rc < 0 && errno != EINPROGRESS) {
        diag("cannot connect to %s: %s",
             addr_format((struct sockaddr *)&g_opt.addr.ss, g_opt.addr.len, text, sizeof text),
             errno == EAGAIN ? "timed out" : strerror(errno));
        conn_fail(w, c, E_CONNECT);
        return;
    }
    if (is_unix && fcntl(c->fd, F_SETFL, O_NONBLOCK) < 0) {
        conn_fail(w, c, E_CONNECT);
        return;
    }
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        diag("epoll_ctl: %s", strerror(errno));
        conn_fail(w, c, E_CONNECT);
        return;
    }
    c->state = B_CONNECTING;
    if (rc == 0)
        conn_tcp_up(w, c, addr_format((struct sockaddr *)&g_opt.addr.ss, g_opt.addr.len, text,
                                      sizeof text));
}

/* Open the loop's connections, CONNECT_WINDOW at a time; return once none is pending. */
static void worker_connect(struct bworker *w)
{
    struct epoll_event evs[MAX_EVENTS];
    uint64_t timeout_ns = (uint64_t)(g_opt.timeout * 1e9), last_scan = now_ns();
    unsigned next = 0, pending = 0;
    char text[ADDR_TEXT_MAX];

    addr_format((struct sockaddr *)&g_opt.addr.ss, g_opt.addr.len, text, sizeof text);
    for (;;) {
        while (next < w->nconns && pending < CONNECT_WINDOW && !g_stop) {
            struct bconn *c = &w->conns[next++];

            conn_open(w, c);
            pending += c->state == B_CONNECTING || c->state == B_HANDSHAKE;
        }
        if (pending == 0 && (next == w->nconns || g_stop))
            return;
        int n = epoll_wait(w->epfd, evs, MAX_EVENTS, 100);
        for (int i = 0; i < n; i++) {
            struct bconn *c = evs[i].data.ptr;
            int soerr = 0;
            socklen_t len = sizeof soerr;

            if (c->state == B_READY && (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)))
                c->pending_in = true;
            if (c->state == B_HANDSHAKE) {
                if (conn_handshake(w, c, text) != 0)
                    pending--;
                continue;
            }
            if (c->state != B_CONNECTING ||
                !(evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                continue;
            pending--;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
                soerr = errno;
            if (soerr != 0) {
                diag("cannot connect to %s: %s", text, strerror(soerr));
                conn_fail(w, c, E_CONNECT);
                continue;
            }
            int up = conn_tcp_up(w, c, text);
            if (up == 0)
                pending++;              /* still pending: its handshake goes on */
            else if (up > 0 && (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)))
                c->pending_in = true;
        }
        uint64_t now = now_ns();
        if (now - last_scan >= SCAN_NS || g_stop) {
            last_scan = now;
            for (unsigned i = 0; i < next; i++) {
                struct bconn *c = &w->conns[i];

                if ((c->state == B_CONNECTING || c->state == B_HANDSHAKE) &&
                    (g_stop || now - c->t_active > timeout_ns)) {
                    if (!g_stop && c->state == B_HANDSHAKE)
                        diag("TLS handshake with %s: timed out after %g s (is it a TLS server?)",
                             text, g_opt.timeout);
                    else if (!g_stop)
                        diag("cannot connect to %s: timed out after %g s", text, g_opt.timeout);
                    conn_fail(w, c, E_CONNECT);
                    pending--;
                }
            }
        }
    }
}

/* Fail the connections whose requests made no progress for the timeout. */
static void worker_scan_timeouts(struct bworker *w, uint64_t now)
{
    uint64_t timeout_ns = (uint64_t)(g_opt.timeout * 1e9);

    for (unsigned i = 0; i < w->nconns; i++) {
        struct bconn *c = &w->conns[i];

        if (c->state == B_READY && conn_inflight(c) > 0 && now - c->t_active > timeout_ns) {
            diag("connection %u: no reply for %g s, %" PRIu64 " request(s) in flight", c->id,
                 g_opt.timeout, conn_inflight(c));
            conn_fail(w, c, E_TIMEOUT);
        }
    }
}

/* Drive requests until the budget or the time is spent and every reply is in. */
static void worker_run(struct bworker *w)
{
    struct epoll_event evs[MAX_EVENTS];
    uint64_t last_scan;

    w->t_start = now_ns();
    w->sending = !g_stop;
    last_scan = w->t_start;
    for (unsigned i = 0; i < w->nconns; i++) {
        struct bconn *c = &w->conns[i];

        if (c->state == B_READY && c->pending_in && conn_read(w, c, true) < 0)
            continue;
        conn_write(w, c);
    }
    for (;;) {
        uint64_t now = now_ns(), deadline = atomic_load_explicit(&g_deadline, memory_order_relaxed);
        int wait_ms = 100;

        atomic_store_explicit(&w->pub_done, w->lat.count, memory_order_relaxed);
        if (w->sending && (g_stop || w->budget == 0 || (deadline && now >= deadline)))
            w->sending = false;
        if (w->live == 0 || (!w->sending && w->inflight == 0))
            break;
        if (now - last_scan >= SCAN_NS) {
            last_scan = now;
            worker_scan_timeouts(w, now);
            continue;
        }
        if (w->sending && deadline && deadline - now < 100000000u)
            wait_ms = (int)((deadline - now) / 1000000) + 1;
        int n = epoll_wait(w->epfd, evs, MAX_EVENTS, wait_ms);
        for (int i = 0; i < n; i++)
            conn_event(w, evs[i].data.ptr, evs[i].events);
    }
    for (unsigned i = 0; i < w->nconns; i++)
        if (w->conns[i].state != B_DEAD)
            conn_retire(w, &w->conns[i]);
}

static void *worker_main(void *arg)
{
    struct bworker *w = arg;

    worker_connect(w);
    pthread_mutex_lock(&g_mu);
    g_connected++;
    pthread_cond_broadcast(&g_cv);
    while (!g_go)
        pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
    worker_run(w);
    atomic_store_explicit(&w->pub_done, w->lat.count, memory_order_relaxed);
    pthread_mutex_lock(&g_mu);
    g_finished++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    return NULL;
}

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int parse_opts(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "csv", no_argument, NULL, 'C' },
        { "json", no_argument, NULL, 'J' },
        { "separator", required_argument, NULL, 'S' },
        { "help", no_argument, NULL, 'h' },
        CLI_TLS_LONGOPTS,
        { NULL, 0, NULL, 0 },
    };
    char err[256];
    uint64_t v;
    int opt, ms, have_n = 0;
    int sep_len;

    g_opt.addr_text = CLI_DEFAULT_ADDR;
    g_opt.conns = 8;
    g_opt.threads = 1;
    g_opt.pipeline = 1;
    g_opt.size = 64;
    g_opt.timeout = 10;
    memcpy(g_opt.sep, "\r\n\r\n", 4);
    g_opt.sep_len = 4;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "+a:c:n:s:P:d:t:T:S:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'a':
            g_opt.addr_text = optarg;
            break;
        case 'c': case 'P': case 'T': {
            uint64_t max = opt == 'c' ? 1000000 : opt == 'P' ? 65536 : 256;
            if (cli_parse_count(optarg, 1, max, &v) < 0) {
                fprintf(stderr, "echocli bench: -%c %s: expected a number from 1 to %" PRIu64 "\n",
                        opt, optarg, max);
                goto usage;
            }
            *(opt == 'c' ? &g_opt.conns : opt == 'P' ? &g_opt.pipeline : &g_opt.threads) =
                (unsigned)v;
            break;
        }
        case 'n':
            if (cli_parse_count(optarg, 1, UINT64_MAX - 1, &g_opt.requests) < 0) {
                fprintf(stderr, "echocli bench: -n %s: expected a positive number\n", optarg);
                goto usage;
            }
            have_n = 1;
            break;
        case 's':
            if (cli_parse_count(optarg, 0, 1u << 30, &v) < 0) {
                fprintf(stderr, "echocli bench: -s %s: expected a size from 0 to 1g\n", optarg);
                goto usage;
            }
            g_opt.size = (size_t)v;
            break;
        case 'd': case 't':
            if (cli_parse_seconds(optarg, opt == 'd' ? &g_opt.duration : &g_opt.timeout, &ms) < 0) {
                fprintf(stderr, "echocli bench: -%c %s: expected a positive number of seconds\n",
                        opt, optarg);
                goto usage;
            }
            break;
        case 'S':
            sep_len = cli_parse_separator(optarg, g_opt.sep);
            if (sep_len < 0)
                goto usage;
            g_opt.sep_len = (size_t)sep_len;
            break;
        case 'C':
            g_opt.format = OUT_CSV;
            break;
        case 'J':
            g_opt.format = OUT_JSON;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            if (cli_tls_opt(&g_opt.tls, opt, optarg))
                break;
            goto usage;
        }
    }
    if (cli_tls_check(&g_opt.tls, "echocli bench") < 0)
        goto usage;
    if (optind != argc) {
        fprintf(stderr, "echocli bench: unexpected argument '%s'\n", argv[optind]);
        goto usage;
    }
    if (addr_parse(g_opt.addr_text, &g_opt.addr, err, sizeof err) < 0) {
        fprintf(stderr, "echocli bench: -a %s: %s\n", g_opt.addr_text, err);
        goto usage;
    }
    if (!have_n && g_opt.duration == 0)
        g_opt.requests = 100000;
    if (g_opt.threads > g_opt.conns)
        g_opt.threads = g_opt.conns;
    g_opt.msglen = g_opt.size + g_opt.sep_len;
    return 0;

usage:
    usage(stderr);
    return -1;
}

/* Make room for the connections in RLIMIT_NOFILE. Returns 0 or -1. */
static int raise_nofile(unsigned need)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)need + 32 > rl.rlim_cur) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)need + 32 ?
                      (rlim_t)need + 32 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
            (rlim_t)need + 32 > rl.rlim_cur) {
            fprintf(stderr, "echocli bench: %u connections need more file descriptors than the "
                    "limit of %llu (ulimit -n)\n", need, (unsigned long long)rl.rlim_cur);
            return -1;
        }
    }
    return 0;
}

/* Everything the run measured, summed over the loops. */
struct bench_result {
    hist lat;                   /* nanoseconds */
    uint64_t count, errors, kinds[E_KINDS];
    double secs, rate, mean_us, p_us[4], max_us;
    double cpu_user, cpu_sys, cpu_us_per_req;
};

static const double percentiles[4] = { 50, 90, 99, 99.9 };

static void collect(const struct bworker *ws, unsigned nw, struct bench_result *r)
{
    uint64_t t0 = UINT64_MAX, t1 = 0;
    struct rusage ru;

    memset(r, 0, sizeof *r);
    for (unsigned t = 0; t < nw; t++) {
        const struct bworker *w = &ws[t];

        hist_merge(&r->lat, &w->lat);
        for (int k = 0; k < E_KINDS; k++) {
            r->kinds[k] += w->errors[k];
            r->errors += w->errors[k];
        }
        if (w->t_start && w->t_start < t0)
            t0 = w->t_start;
        if (w->t_last_done > t1)
            t1 = w->t_last_done;
    }
    r->count = r->lat.count;
    r->secs = t1 > t0 ? (double)(t1 - t0) / 1e9 : 0;
    r->rate = r->secs > 0 ? (double)r->count / r->secs : 0;
    r->mean_us = r->count ? (double)r->lat.sum / (double)r->count / 1e3 : 0;
    for (int i = 0; i < 4; i++)
        r->p_us[i] = (double)hist_percentile(&r->lat, percentiles[i]) / 1e3;
    r->max_us = (double)r->lat.max / 1e3;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        r->cpu_user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
        r->cpu_sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    }
    r->cpu_us_per_req = r->count ? (r->cpu_user + r->cpu_sys) * 1e6 / (double)r->count : 0;
}

/* Write s as a JSON string (quotes included). */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* Write s as a CSV field, always quoted. */
static void csv_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void print_result(FILE *f, const struct bench_result *r)
{
    static const char *const p_names[4] = { "p50_us", "p90_us", "p99_us", "p999_us" };
    const struct bench_opts *o = &g_opt;

    if (o->format == OUT_JSON) {
        fputs("{\"address\":", f);
        json_string(f, o->addr_text);
        fprintf(f, ",\"tls\":%s,\"connections\":%u,\"threads\":%u,\"size\":%zu,"
                "\"pipeline\":%u,\"requests\":%" PRIu64 ",\"errors\":%" PRIu64,
                o->tls.on ? "true" : "false", o->conns, o->threads, o->size, o->pipeline,
                r->count, r->errors);
        for (int k = 0; k < E_KINDS; k++)
            fprintf(f, ",\"errors_%s\":%" PRIu64, error_names[k], r->kinds[k]);
        fprintf(f, ",\"seconds\":%.6f,\"rate\":%.1f,\"mean_us\":%.1f", r->secs, r->rate,
                r->mean_us);
        for (int i = 0; i < 4; i++)
            fprintf(f, ",\"%s\":%.1f", p_names[i], r->p_us[i]);
        fprintf(f, ",\"max_us\":%.1f,\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,"
                "\"cpu_us_per_request\":%.3f}\n", r->max_us, r->cpu_user, r->cpu_sys,
                r->cpu_us_per_req);
    } else if (o->format == OUT_CSV) {
        fputs("address,connections,threads,size,pipeline,requests,errors", f);
        for (int k = 0; k < E_KINDS; k++)
            fprintf(f, ",errors_%s", error_names[k]);
        fputs(",seconds,rate,mean_us", f);
        for (int i = 0; i < 4; i++)
            fprintf(f, ",%s", p_names[i]);
        fputs(",max_us,cpu_user_s,cpu_sys_s,cpu_us_per_request,tls\n", f);
        csv_string(f, o->addr_text);
        fprintf(f, ",%u,%u,%zu,%u,%" PRIu64 ",%" PRIu64, o->conns, o->threads, o->size,
                o->pipeline, r->count, r->errors);
        for (int k = 0; k < E_KINDS; k++)
            fprintf(f, ",%" PRIu64, r->kinds[k]);
        fprintf(f, ",%.6f,%.1f,%.1f", r->secs, r->rate, r->mean_us);
        for (int i = 0; i < 4; i++)
            fprintf(f, ",%.1f", r->p_us[i]);
        fprintf(f, ",%.1f,%.3f,%.3f,%.3f,%d\n", r->max_us, r->cpu_user, r->cpu_sys,
                r->cpu_us_per_req, o->tls.on ? 1 : 0);
    } else {
        fprintf(f, "echocli bench: %s%s, %u connection%s (%u loop%s), %zu-byte messages, "
                "pipeline %u\n", o->addr_text, o->tls.on ? " (TLS)" : "", o->conns,
                o->conns == 1 ? "" : "s", o->threads, o->threads == 1 ? "" : "s", o->size,
                o->pipeline);
        fprintf(f, "  requests  %" PRIu64 " in %.3f s: %.0f requests/s, %.1f MB/s each way\n",
                r->count, r->secs, r->rate, r->rate * (double)o->msglen / 1e6);
        fprintf(f, "  latency   p50 %.1f us, p90 %.1f us, p99 %.1f us, p99.9 %.1f us, "
                "max %.1f us (mean %.1f us)\n", r->p_us[0], r->p_us[1], r->p_us[2], r->p_us[3],
                r->max_us, r->mean_us);
        fprintf(f, "  errors    %" PRIu64, r->errors);
        if (r->errors) {
            for (int k = 0; k < E_KINDS; k++)
                fprintf(f, "%s%s %" PRIu64, k ? ", " : " (", error_names[k], r->kinds[k]);
            fputc(')', f);
        }
        fprintf(f, "\n  cpu       %.3f s user + %.3f s system: %.2f us per request\n",
                r->cpu_user, r->cpu_sys, r->cpu_us_per_req);
    }
}

/* Print the live progress line (stderr is a terminal). */
static void print_progress(const struct bworker *ws, unsigned nw, uint64_t t0, uint64_t *last_n,
                           uint64_t *last_t)
{
    uint64_t done = 0, errs = 0, now = now_ns();

    for (unsigned t = 0; t < nw; t++) {
        done += atomic_load_explicit(&ws[t].pub_done, memory_order_relaxed);
        errs += atomic_load_explicit(&ws[t].pub_errors, memory_order_relaxed);
    }
    double dt = now > *last_t ? (double)(now - *last_t) / 1e9 : 1;
    fprintf(stderr,
            "\r%6.1f s  %12" PRIu64 " requests  %10.0f requests/s  %" PRIu64 " errors\033[K",
            (double)(now - t0) / 1e9, done, (double)(done - *last_n) / dt, errs);
    fflush(stderr);
    *last_n = done;
    *last_t = now;
}

/* Wait for every loop to finish, printing progress on a terminal. */
static void wait_workers(const struct bworker *ws, unsigned nw, bool progress)
{
    uint64_t t0 = now_ns(), last_n = 0, last_t = t0;

    pthread_mutex_lock(&g_mu);
    while (g_finished < nw) {
        if (!progress) {
            pthread_cond_wait(&g_cv, &g_mu);
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += PROGRESS_NS;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        if (pthread_cond_timedwait(&g_cv, &g_mu, &ts) == ETIMEDOUT && g_finished < nw) {
            pthread_mutex_unlock(&g_mu);
            print_progress(ws, nw, t0, &last_n, &last_t);
            pthread_mutex_lock(&g_mu);
        }
    }
    pthread_mutex_unlock(&g_mu);
    if (progress) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
}

/* See cli.h: the whole `echocli bench` run, on the main thread. */
int cli_bench_main(int argc, char **argv)
{
    struct bworker *ws = NULL;
    struct bconn *conns = NULL;
    uint64_t *slots = NULL;
    struct bench_result *res = NULL;
    struct sigaction sa;
    pthread_condattr_t ca;
    unsigned started = 0;
    int status = CLI_EXIT_FAIL, rc;

    rc = parse_opts(argc, argv);
    if (rc != 0)
        return rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    if (g_opt.tls.on) {
        tls_config tc = { .ca_file = g_opt.tls.cafile, .cert_file = g_opt.tls.cert,
                          .key_file = g_opt.tls.key, .insecure = g_opt.tls.insecure };
        char err[512];

        g_ssl_ctx = tls_ctx_new(&tc, err, sizeof err);
        if (g_ssl_ctx == NULL) {
            fprintf(stderr, "echocli bench: %s\n", err);
            return CLI_EXIT_USAGE;
        }
        if (g_opt.tls.servername != NULL)
            snprintf(g_tls_name, sizeof g_tls_name, "%s", g_opt.tls.servername);
        else if (tls_host_of(g_opt.addr_text, g_tls_name, sizeof g_tls_name) < 0)
            g_tls_name[0] = '\0';
    }
    if (raise_nofile(g_opt.conns) < 0)
        return CLI_EXIT_FAIL;
    if (body_init() < 0) {
        fprintf(stderr, "echocli bench: out of memory\n");
        return CLI_EXIT_FAIL;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;         /* a second ^C kills */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g_cv, &ca);
    pthread_condattr_destroy(&ca);

    ws = calloc(g_opt.threads, sizeof *ws);
    conns = calloc(g_opt.conns, sizeof *conns);
    slots = calloc((size_t)g_opt.conns * g_opt.pipeline, sizeof *slots);
    res = malloc(sizeof *res);
    if (ws == NULL || conns == NULL || slots == NULL || res == NULL) {
        fprintf(stderr, "echocli bench: out of memory\n");
        goto done;
    }
    for (unsigned t = 0; t < g_opt.threads; t++)
        ws[t].epfd = -1;
    for (unsigned i = 0; i < g_opt.conns; i++) {
        conns[i].fd = -1;
        conns[i].id = i;
        conns[i].tsend = slots + (size_t)i * g_opt.pipeline;
        conns[i].fs.sep = g_opt.sep;
        conns[i].fs.sep_len = g_opt.sep_len;
    }
    for (unsigned t = 0; t < g_opt.threads; t++) {
        struct bworker *w = &ws[t];
        unsigned lo = (unsigned)((uint64_t)g_opt.conns * t / g_opt.threads);
        unsigned hi = (unsigned)((uint64_t)g_opt.conns * (t + 1) / g_opt.threads);

        w->conns = conns + lo;
        w->nconns = hi - lo;
        w->budget = g_opt.requests == 0 ? UINT64_MAX :
                    g_opt.requests / g_opt.threads + (t < g_opt.requests % g_opt.threads);
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->rbuf = malloc(RBUF_SIZE);
        if (g_ssl_ctx != NULL) {
            tls_config tc = { .ca_file = g_opt.tls.cafile, .cert_file = g_opt.tls.cert,
                              .key_file = g_opt.tls.key, .insecure = g_opt.tls.insecure };
            char err[512];

            w->ssl_ctx = tls_ctx_new(&tc, err, sizeof err);
            if (w->ssl_ctx == NULL) {
                fprintf(stderr, "echocli bench: %s\n", err);
                goto done;
            }
        }
        if (w->epfd < 0 || w->rbuf == NULL) {
            fprintf(stderr, "echocli bench: %s\n", w->epfd < 0 ? strerror(errno) : "out of memory");
            goto done;
        }
    }
    /* Every loop has a thread of its own; the main thread starts the clock once all of them
     * are connected, then only waits and prints progress. */
    for (; started < g_opt.threads; started++) {
        if (pthread_create(&ws[started].tid, NULL, worker_main, &ws[started]) != 0) {
            fprintf(stderr, "echocli bench: cannot start a thread\n");
            g_stop = 1;
            break;
        }
    }
    pthread_mutex_lock(&g_mu);
    while (g_connected < started)
        pthread_cond_wait(&g_cv, &g_mu);
    if (g_opt.duration > 0)
        atomic_store(&g_deadline, now_ns() + (uint64_t)(g_opt.duration * 1e9));
    g_go = true;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    bool progress = isatty(STDERR_FILENO) == 1;
    atomic_store(&g_progress_on, progress);
    wait_workers(ws, started, progress);
    atomic_store(&g_progress_on, false);
    for (unsigned t = 0; t < started; t++)
        pthread_join(ws[t].tid, NULL);

    collect(ws, g_opt.threads, res);
    print_result(stdout, res);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "echocli bench: stdout: %s\n", strerror(errno));
        goto done;
    }
    status = res->errors == 0 && started == g_opt.threads ? CLI_EXIT_OK : CLI_EXIT_FAIL;

done:
    for (unsigned t = 0; ws != NULL && t < g_opt.threads; t++) {
        if (ws[t].epfd >= 0)
            close(ws[t].epfd);
        free(ws[t].rbuf);
    }
    for (unsigned i = 0; conns != NULL && i < g_opt.conns; i++) {
        conn_tls_free(&conns[i], false);
        free(conns[i].carry);
    }
    for (unsigned t = 0; ws != NULL && t < g_opt.threads; t++)
        SSL_CTX_free(ws[t].ssl_ctx);
    free(ws);
    free(conns);
    free(slots);
    free(res);
    free(g_body);
    g_body = NULL;
    SSL_CTX_free(g_ssl_ctx);
    g_ssl_ctx = NULL;
    return status;
}
