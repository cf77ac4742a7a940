/* bench/loadgen.c — epoll load generator for echo servers: checks every echoed byte, reports rate and latency percentiles;
 * also connection churn (--churn), paced messages per connection (--rate-per-conn) and idle connections (--idle). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "addr.h"
#include "common.h"
#include "hist.h"

#define SEP_LEN 4
#define PAT_LEN 65521u          /* prime, so repeats never line up with power-of-two chunks */
#define RBUF_SIZE (256 * 1024)
#define MAX_IOV 64
#define MAX_EVENTS 512
#define CONNECT_WINDOW 256      /* connects in progress at once per thread */
#define MAX_DIAG 10             /* error details printed on stderr */

enum { C_CONNECTING, C_RUNNING, C_DEAD };
enum { E_CONNECT, E_CLOSED, E_MISMATCH, E_TIMEOUT, E_KINDS };
static const char *const err_names[E_KINDS] = { "connect", "closed", "mismatch", "timeout" };

struct opts {
    addr addr;
    const char *addr_text;
    unsigned conns, threads, pipeline, idle;
    size_t size;                /* message body, without the separator */
    double duration, warmup, timeout;
    uint64_t nmsgs;             /* 0: run for duration */
    int churn;                  /* --churn: connect, one message, its echo, close; again */
    double rate;                /* --rate-per-conn: messages per second per connection; 0: unpaced */
    int sync;                   /* --sync: 'ready', wait for a line on stdin; hold until EOF after */
    int free_port;              /* --free-port: print a free loopback TCP port and exit */
};

/*
 * One client connection. Messages are numbered per connection; message k is
 * bytes [0, size) of the pattern from msg_offset(id, k), then the separator.
 * [rseq, wseq) are fully written and awaiting (part of) their echo; wseq is
 * partly written when wpos > 0. rpos bytes of message rseq have come back.
 */
struct conn {
    int fd, state;
    uint32_t id;
    uint32_t due;               /* --rate-per-conn: messages this connection may start (0 or 1) */
    uint64_t wseq, rseq;
    uint64_t cseq;              /* --churn: wseq when this connection was opened */
    size_t wpos, rpos;
    uint64_t *tsend;            /* pipeline slots: start time of message k at [k % pipeline] */
    uint64_t tconnect;
};

struct worker {
    pthread_t tid;
    int epfd, first;            /* first: the main thread's worker (prints 'ready' with --sync) */
    struct conn *conns;
    unsigned nconns, live;      /* live: connections established and not closed */
    unsigned connecting;        /* connects in progress */
    char *rbuf;
    int sending;
    uint64_t budget;            /* messages still to start; UINT64_MAX with -d */
    uint64_t inflight;          /* started and not fully echoed */
    uint64_t t_warm, t_end, t_stop, last_progress;
    uint64_t t_start, next_tick; /* --rate-per-conn: tick j is at t_start + j * tick_ns */
    double tick_ns;             /* interval / nconns: the worker's connections take turns */
    /* results */
    hist lat;                   /* microseconds, of the replies completed after the warm-up */
    uint64_t total, last_done;
    uint64_t late;              /* --rate-per-conn: ticks that found the previous message in flight */
    uint64_t errors[E_KINDS];
};

static const char g_sep[SEP_LEN + 1] = "\r\n\r\n";
static struct opts g_opt;
static char g_pat[2 * PAT_LEN];
static pthread_barrier_t g_barrier;
static atomic_int g_diag;
static volatile sig_atomic_t g_stop;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: loadgen -a ADDRESS [-c CONNS] [-s SIZE] [-P PIPELINE] [-d SECS | -n MSGS]\n"
        "               [-w SECS] [-T THREADS] [-t SECS] [--churn | --rate-per-conn R] [--sync]\n"
        "       loadgen -a ADDRESS --idle N\n"
        "       loadgen --free-port\n"
        "  -a ADDRESS   HOST:PORT, [IPv6]:PORT or unix:/path\n"
        "  -c CONNS     connections (default 1)\n"
        "  -s SIZE      message body bytes, k/m suffix allowed; the separator \\r\\n\\r\\n is added (default 64)\n"
        "  -P PIPELINE  messages in flight per connection (default 1: ping-pong)\n"
        "  -d SECS      measure for SECS seconds (default 5)\n"
        "  -n MSGS      send MSGS messages in total (warm-up included), then stop\n"
        "  -w SECS      warm-up: replies completed in the first SECS are not counted (default 0)\n"
        "  -T THREADS   epoll threads, connections split between them (default 1)\n"
        "  -t SECS      connect timeout, and longest wait without progress (default 10)\n"
        "  --churn      CONNS slots, each in a loop: connect, send one message, read its echo,\n"
        "               close with SO_LINGER 0 (RST: no TIME_WAIT); reports cycles per second\n"
        "  --rate-per-conn R  each connection starts R messages per second (connections take\n"
        "               turns, evenly spread); a message is not started before the previous\n"
        "               one is echoed ('late' counts the ticks that found one in flight)\n"
        "  --sync       print 'ready' once connected and start on a line (or EOF) on stdin; after\n"
        "               the report hold the connections until stdin reaches EOF\n"
        "  --idle N     open N connections, print 'ready', send nothing; hold them until\n"
        "               stdin reaches EOF or SIGTERM/SIGINT, then print a status line\n"
        "  --free-port  print a TCP port of 127.0.0.1 the kernel picks (then frees), and exit\n"
        "Prints one line: msgs= secs= rate= p50_us= p90_us= p99_us= p999_us= max_us= errors= ...\n"
        "(with --churn: cycles= secs= rate= ... total_cycles= ...).\n"
        "Every echoed byte is checked; exits 1 if errors > 0.\n");
}

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print an error detail on stderr, at most MAX_DIAG times per run. Any thread. */
static void diag(const char *fmt, ...)
{
    va_list ap;
    char line[512];

    if (atomic_fetch_add(&g_diag, 1) >= MAX_DIAG)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "loadgen: %s\n", line);
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Printable bytes (no \r, \n or space), so a body can never contain the separator. */
static void pattern_init(void)
{
    uint64_t s = 0x5eed;

    for (size_t i = 0; i < PAT_LEN; i++) {
        s = splitmix64(s);
        g_pat[i] = (char)(33 + s % 94);
    }
    memcpy(g_pat + PAT_LEN, g_pat, PAT_LEN);
}

static size_t msg_offset(uint32_t id, uint64_t seq)
{
    return (size_t)(splitmix64(((uint64_t)id << 40) ^ seq) % PAT_LEN);
}

static uint64_t conn_inflight(const struct conn *c)
{
    return c->wseq - c->rseq + (c->wpos > 0);
}

/* Close with SO_LINGER 0: an RST instead of a FIN, so that the client's port is not left in
 * TIME_WAIT for a minute (--churn opens thousands of connections a second; --idle and
 * --rate-per-conn close thousands at once). Only where no echo is still expected. */
static void close_abort(int fd)
{
    static const struct linger lg = { .l_onoff = 1, .l_linger = 0 };

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* Count one error against the connection and close it. Owning worker only. */
static void conn_fail(struct worker *w, struct conn *c, int kind)
{
    if (c->state == C_RUNNING) {
        w->inflight -= conn_inflight(c);
        w->live--;
    } else if (c->state == C_CONNECTING) {
        w->connecting--;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = C_DEAD;
    w->errors[kind]++;
}

static void record(struct worker *w, uint64_t lat_ns, uint64_t t)
{
    w->total++;
    if (t < w->t_warm || t >= w->t_end)
        return;
    hist_add(&w->lat, lat_ns / 1000);
    w->last_done = t;
}

static void escape_byte(char *out, unsigned char b)
{
    if (b >= 33 && b < 127)
        sprintf(out, "'%c'", b);
    else
        sprintf(out, "0x%02x", b);
}

/* Compare k echoed bytes at position pos of message seq. Returns 0, or -1 (after a diagnostic). */
static int msg_compare(const struct conn *c, uint64_t seq, size_t pos, const char *p, size_t k)
{
    size_t size = g_opt.size, off = msg_offset(c->id, seq);

    while (k > 0) {
        const char *want;
        size_t m;

        if (pos < size) {
            m = size - pos < PAT_LEN ? size - pos : PAT_LEN;
            want = g_pat + (off + pos) % PAT_LEN;
        } else {
            m = SEP_LEN - (pos - size);
            want = &g_sep[pos - size];
        }
        if (m > k)
            m = k;
        if (memcmp(p, want, m) != 0) {
            size_t j = 0;
            char e[8], g[8];

            while (p[j] == want[j])
                j++;
            escape_byte(e, (unsigned char)want[j]);
            escape_byte(g, (unsigned char)p[j]);
            diag("mismatch: connection %u message %" PRIu64 " byte %zu of %zu: expected %s, got %s",
                 c->id, seq, pos + j, size + SEP_LEN, e, g);
            return -1;
        }
        pos += m;
        p += m;
        k -= m;
    }
    return 0;
}

/* Check n echoed bytes against what was sent; record completed messages. Returns 0 or -1 (closed). */
static int conn_verify(struct worker *w, struct conn *c, const char *p, size_t n)
{
    size_t msglen = g_opt.size + SEP_LEN;
    uint64_t t = 0;

    while (n > 0) {
        size_t avail = c->rseq < c->wseq ? msglen - c->rpos : c->wpos - c->rpos;
        size_t k = n < avail ? n : avail;

        if (avail == 0) {
            diag("mismatch: connection %u: %zu bytes more than were sent", c->id, n);
            conn_fail(w, c, E_MISMATCH);
            return -1;
        }
        if (msg_compare(c, c->rseq, c->rpos, p, k) < 0) {
            conn_fail(w, c, E_MISMATCH);
            return -1;
        }
        c->rpos += k;
        p += k;
        n -= k;
        if (c->rpos == msglen) {
            if (t == 0)
                t = bench_now_ns();
            /* --churn: the whole cycle, from socket() to the echo checked */
            record(w, t - (g_opt.churn ? c->tconnect : c->tsend[c->rseq % g_opt.pipeline]), t);
            c->rseq++;
            c->rpos = 0;
            w->inflight--;
        }
    }
    w->last_progress = t ? t : bench_now_ns();
    return 0;
}

/* Read until the socket is drained (edge-triggered): a short read says so, unless the event
 * also reported the peer's close (hup), which only a read of 0 shows, since no new edge will
 * come for it. Returns 0 or -1 (connection gone). */
static int conn_read(struct worker *w, struct conn *c, int hup)
{
    for (;;) {
        ssize_t n = read(c->fd, w->rbuf, RBUF_SIZE);

        if (n > 0) {
            if (conn_verify(w, c, w->rbuf, (size_t)n) < 0)
                return -1;
            if (n < RBUF_SIZE && !hup)
                return 0;       /* drained: a later arrival raises a new edge */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        diag("connection %u: %s with %" PRIu64 " message(s) in flight", c->id,
             n == 0 ? "closed by peer" : strerror(errno), conn_inflight(c));
        conn_fail(w, c, E_CLOSED);
        return -1;
    }
}

/* Account for r bytes written at time t: start slots, budget, in-flight count. */
static void conn_advance(struct worker *w, struct conn *c, size_t r, uint64_t t)
{
    size_t msglen = g_opt.size + SEP_LEN;

    while (r > 0) {
        size_t rem = msglen - c->wpos;

        if (c->wpos == 0) {
            c->tsend[c->wseq % g_opt.pipeline] = t;
            if (g_opt.rate > 0)
                c->due--;
            if (w->budget != UINT64_MAX)
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

/* Write the rest of the current message and start new ones while the pipeline allows. */
static void conn_write(struct worker *w, struct conn *c)
{
    size_t size = g_opt.size;

    while (c->state == C_RUNNING) {
        struct iovec iov[MAX_IOV];
        int cnt = 0;
        size_t pos = c->wpos;
        uint64_t seq = c->wseq, fresh = 0, t;
        ssize_t r;

        while (cnt < MAX_IOV) {
            size_t off;

            if (pos == 0) {
                if (!w->sending || seq - c->rseq >= g_opt.pipeline || fresh >= w->budget ||
                    (g_opt.rate > 0 && fresh >= c->due))
                    break;
                fresh++;
            }
            off = msg_offset(c->id, seq);
            while (pos < size && cnt < MAX_IOV) {
                size_t m = size - pos < PAT_LEN ? size - pos : PAT_LEN;

                iov[cnt].iov_base = g_pat + (off + pos) % PAT_LEN;
                iov[cnt].iov_len = m;
                cnt++;
                pos += m;
            }
            if (cnt == MAX_IOV)
                break;
            iov[cnt].iov_base = (char *)&g_sep[pos - size];
            iov[cnt].iov_len = SEP_LEN - (pos - size);
            cnt++;
            seq++;
            pos = 0;
        }
        if (cnt == 0)
            return;
        t = bench_now_ns();
        r = writev(c->fd, iov, cnt);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return;         /* EPOLLOUT edge will come */
            diag("connection %u: write: %s", c->id, strerror(errno));
            conn_fail(w, c, E_CLOSED);
            return;
        }
        conn_advance(w, c, (size_t)r, t);
        w->last_progress = t;
    }
}

static void conn_established(struct worker *w, struct conn *c)
{
    c->state = C_RUNNING;
    w->connecting--;
    w->live++;
}

/* A connect in progress reported writable or failed: find out which. Returns 0 (established)
 * or -1 (error counted). */
static int conn_connect_done(struct worker *w, struct conn *c)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr != 0) {
        diag("connect %s: %s", g_opt.addr_text, strerror(soerr));
        conn_fail(w, c, E_CONNECT);
        return -1;
    }
    conn_established(w, c);
    return 0;
}

static int conn_connect(struct worker *w, struct conn *c);

/* --churn: open the slot's next connection (its message goes out once connected). */
static void churn_open(struct worker *w, struct conn *c)
{
    c->cseq = c->wseq;
    if (conn_connect(w, c) == 0 && c->state == C_RUNNING)
        conn_write(w, c);       /* AF_UNIX connects at once */
}

/* --churn: the slot's message is echoed: close (RST, see close_abort), count, open the next. */
static void churn_cycle_done(struct worker *w, struct conn *c)
{
    close_abort(c->fd);
    c->fd = -1;
    c->state = C_DEAD;
    w->live--;
    if (w->sending)
        churn_open(w, c);
}

static void conn_event(struct worker *w, struct conn *c, uint32_t ev)
{
    if (c->state == C_CONNECTING && g_opt.churn) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) || conn_connect_done(w, c) < 0)
            return;
    }
    if (c->state != C_RUNNING)
        return;
    if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) &&
        conn_read(w, c, (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) < 0)
        return;
    if (g_opt.churn && c->rseq > c->cseq) {
        churn_cycle_done(w, c);
        return;
    }
    conn_write(w, c);
}

/* Start a non-blocking connect. Returns 0 (connected or in progress) or -1 (error counted). */
static int conn_connect(struct worker *w, struct conn *c)
{
    static const int one = 1;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c };
    int unix_sock = g_opt.addr.ss.ss_family == AF_UNIX;
    int rc;

    c->tconnect = bench_now_ns();
    c->state = C_CONNECTING;
    w->connecting++;
    /* A non-blocking AF_UNIX connect fails with EAGAIN when the backlog is full: block instead. */
    c->fd = socket(g_opt.addr.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | (unix_sock ? 0 : SOCK_NONBLOCK), 0);
    if (c->fd < 0) {
        diag("socket: %s", strerror(errno));
        conn_fail(w, c, E_CONNECT);
        return -1;
    }
    if (!unix_sock)
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    do
        rc = connect(c->fd, (struct sockaddr *)&g_opt.addr.ss, g_opt.addr.len);
    while (rc < 0 && errno == EINTR && unix_sock);
    if (rc < 0 && errno != EINPROGRESS) {
        diag("connect %s: %s", g_opt.addr_text, strerror(errno));
        conn_fail(w, c, E_CONNECT);
        return -1;
    }
    if (unix_sock && fcntl(c->fd, F_SETFL, O_NONBLOCK) < 0) {
        conn_fail(w, c, E_CONNECT);
        return -1;
    }
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        diag("epoll_ctl: %s", strerror(errno));
        conn_fail(w, c, E_CONNECT);
        return -1;
    }
    if (rc == 0)
        conn_established(w, c);
    return 0;
}

/* Connect all of the worker's connections, CONNECT_WINDOW at a time. Returns when none is pending. */
static void worker_connect_all(struct worker *w)
{
    struct epoll_event evs[MAX_EVENTS];
    unsigned next = 0, pending = 0;
    uint64_t timeout_ns = (uint64_t)(g_opt.timeout * 1e9), last_scan = bench_now_ns();

    for (;;) {
        uint64_t now;
        int n;

        while (next < w->nconns && pending < CONNECT_WINDOW) {
            struct conn *c = &w->conns[next++];

            if (conn_connect(w, c) == 0 && c->state == C_CONNECTING)
                pending++;
        }
        if (pending == 0 && next == w->nconns)
            return;
        n = epoll_wait(w->epfd, evs, MAX_EVENTS, 100);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;

            if (c->state != C_CONNECTING || !(evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                continue;
            pending--;
            conn_connect_done(w, c);
        }
        now = bench_now_ns();
        if (now - last_scan >= 100000000u) {
            last_scan = now;
            for (unsigned i = 0; i < next; i++) {
                struct conn *c = &w->conns[i];

                if (c->state == C_CONNECTING && now - c->tconnect > timeout_ns) {
                    diag("connect %s: timed out", g_opt.addr_text);
                    conn_fail(w, c, E_CONNECT);
                    pending--;
                }
            }
        }
    }
}

/* --rate-per-conn: give every connection whose tick has come one message to start. Tick j is
 * connection j % nconns's turn: each connection's ticks are 1/rate apart and the worker's
 * connections are evenly spread over that interval. A connection whose previous message is still
 * in flight (or not even started) counts as late; it starts the next one as soon as it can, and
 * the ticks it misses meanwhile are not made up for. Returns the time of the next tick. */
static uint64_t worker_pace(struct worker *w, uint64_t now)
{
    for (;;) {
        uint64_t t = w->t_start + (uint64_t)((double)w->next_tick * w->tick_ns);
        struct conn *c;

        if (t > now)
            return t;
        c = &w->conns[w->next_tick++ % w->nconns];
        if (c->state != C_RUNNING)
            continue;
        if (c->due > 0 || conn_inflight(c) > 0)
            w->late++;
        c->due = 1;
        conn_write(w, c);
    }
}

/* Drive traffic until the duration or message budget is spent and every reply is in. */
static void worker_run(struct worker *w)
{
    struct epoll_event evs[MAX_EVENTS];
    uint64_t now = bench_now_ns(), timeout_ns = (uint64_t)(g_opt.timeout * 1e9), last_scan = now;
    uint64_t next_tick = UINT64_MAX;

    w->t_start = now;
    w->t_warm = now + (uint64_t)(g_opt.warmup * 1e9);
    w->t_end = g_opt.nmsgs ? UINT64_MAX : w->t_warm + (uint64_t)(g_opt.duration * 1e9);
    w->t_stop = 0;
    w->sending = 1;
    w->last_progress = now;
    if (g_opt.rate > 0)
        w->tick_ns = 1e9 / g_opt.rate / w->nconns;
    for (unsigned i = 0; i < w->nconns; i++) {
        if (g_opt.churn)
            churn_open(w, &w->conns[i]);
        else if (g_opt.rate == 0)
            conn_write(w, &w->conns[i]);
    }

    for (;;) {
        int n, wait_ms = 100;

        now = bench_now_ns();
        if (w->sending && (now >= w->t_end || g_stop || w->budget == 0)) {
            w->sending = 0;
            w->t_stop = now;
        }
        if (w->sending && g_opt.rate > 0)
            next_tick = worker_pace(w, now);
        if ((w->live == 0 && w->connecting == 0) || (!w->sending && w->inflight == 0))
            break;
        /* (worker_pace may have moved last_progress past now) */
        if (w->inflight > 0 && now > w->last_progress && now - w->last_progress > timeout_ns) {
            for (unsigned i = 0; i < w->nconns; i++) {
                struct conn *c = &w->conns[i];

                if (c->state == C_RUNNING && conn_inflight(c) > 0) {
                    diag("connection %u: no reply for %.1f s, %" PRIu64 " message(s) in flight",
                         c->id, g_opt.timeout, conn_inflight(c));
                    conn_fail(w, c, E_TIMEOUT);
                }
            }
            break;
        }
        if (g_opt.churn && now - last_scan >= 100000000u) {
            last_scan = now;
            for (unsigned i = 0; i < w->nconns; i++) {
                struct conn *c = &w->conns[i];

                if (c->state == C_CONNECTING && now - c->tconnect > timeout_ns) {
                    diag("connect %s: timed out", g_opt.addr_text);
                    conn_fail(w, c, E_CONNECT);
                }
            }
        }
        if (w->sending && w->t_end - now < 100000000u)
            wait_ms = (int)((w->t_end - now) / 1000000) + 1;
        if (w->sending && g_opt.rate > 0 && next_tick - now < (uint64_t)wait_ms * 1000000u)
            wait_ms = (int)((next_tick - now + 999999) / 1000000);
        n = epoll_wait(w->epfd, evs, MAX_EVENTS, wait_ms);
        for (int i = 0; i < n; i++)
            conn_event(w, evs[i].data.ptr, evs[i].events);
    }
    if (w->t_stop == 0)
        w->t_stop = bench_now_ns();
    if (g_opt.sync)
        return;                 /* held until stdin's EOF: main() closes them */
    for (unsigned i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];

        if (c->fd < 0)
            continue;
        /* Every echo is in: an RST is harmless, and spares thousands of TIME_WAIT ports. */
        if (g_opt.churn || g_opt.rate > 0)
            close_abort(c->fd);
        else
            close(c->fd);
        c->fd = -1;
    }
}

/* --sync: 'ready' on stdout, then wait for a line or EOF on stdin (or SIGTERM/SIGINT). */
static void sync_wait_go(void)
{
    char b;

    printf("ready\n");
    fflush(stdout);
    while (!g_stop) {
        ssize_t r = read(0, &b, 1);

        if (r <= 0 ? !(r < 0 && errno == EINTR) : b == '\n')
            break;
    }
}

/* --sync: after the report, hold the connections until stdin's EOF (or SIGTERM/SIGINT). */
static void sync_hold(struct conn *conns, unsigned n)
{
    char buf[256];

    while (!g_stop) {
        ssize_t r = read(0, buf, sizeof(buf));

        if (r == 0 || (r < 0 && errno != EINTR))
            break;
    }
    for (unsigned i = 0; i < n; i++)
        if (conns[i].fd >= 0) {
            close_abort(conns[i].fd);
            conns[i].fd = -1;
        }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    if (!g_opt.churn)
        worker_connect_all(w);
    pthread_barrier_wait(&g_barrier);
    if (g_opt.sync) {
        if (w->first)
            sync_wait_go();
        pthread_barrier_wait(&g_barrier);
    }
    worker_run(w);
    return NULL;
}

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-')
        return -1;
    if (*end == 'k' || *end == 'K')
        v <<= 10, end++;
    else if (*end == 'm' || *end == 'M')
        v <<= 20, end++;
    if (*end != '\0' || v > (1ull << 40))
        return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;

    errno = 0;
    *out = strtod(s, &end);
    return errno || end == s || *end != '\0' || *out < 0 ? -1 : 0;
}

static int parse_opts(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "idle", required_argument, NULL, 'I' },
        { "churn", no_argument, NULL, 'C' },
        { "rate-per-conn", required_argument, NULL, 'R' },
        { "sync", no_argument, NULL, 'S' },
        { "free-port", no_argument, NULL, 'F' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    char err[512];
    size_t v;
    int opt, have_d = 0;

    g_opt.conns = 1;
    g_opt.threads = 1;
    g_opt.pipeline = 1;
    g_opt.size = 64;
    g_opt.duration = 5;
    g_opt.timeout = 10;
    while ((opt = getopt_long(argc, argv, "a:c:s:P:d:n:w:T:t:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'a':
            g_opt.addr_text = optarg;
            if (addr_parse(optarg, &g_opt.addr, err, sizeof(err)) < 0) {
                fprintf(stderr, "loadgen: %s\n", err);
                return -1;
            }
            break;
        case 'c': case 'P': case 'T': case 'I': case 'n':
            if (parse_size(optarg, &v) < 0 || v == 0 || (opt != 'n' && v > UINT_MAX)) {
                fprintf(stderr, "loadgen: -%c %s: expected a positive number\n", opt, optarg);
                return -1;
            }
            if (opt == 'c')
                g_opt.conns = (unsigned)v;
            else if (opt == 'P')
                g_opt.pipeline = (unsigned)v;
            else if (opt == 'T')
                g_opt.threads = (unsigned)v;
            else if (opt == 'I')
                g_opt.idle = (unsigned)v;
            else
                g_opt.nmsgs = v;
            break;
        case 's':
            if (parse_size(optarg, &g_opt.size) < 0) {
                fprintf(stderr, "loadgen: -s %s: expected a size in bytes\n", optarg);
                return -1;
            }
            break;
        case 'd': case 'w': case 't': {
            double *d = opt == 'd' ? &g_opt.duration : opt == 'w' ? &g_opt.warmup : &g_opt.timeout;

            if (parse_double(optarg, d) < 0 || (opt != 'w' && *d == 0)) {
                fprintf(stderr, "loadgen: -%c %s: expected a number of seconds\n", opt, optarg);
                return -1;
            }
            have_d |= opt == 'd';
            break;
        }
        case 'C':
            g_opt.churn = 1;
            break;
        case 'R':
            if (parse_double(optarg, &g_opt.rate) < 0 || g_opt.rate == 0) {
                fprintf(stderr, "loadgen: --rate-per-conn %s: expected a positive number\n", optarg);
                return -1;
            }
            break;
        case 'S':
            g_opt.sync = 1;
            break;
        case 'F':
            g_opt.free_port = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (g_opt.free_port && optind == argc)
        return 0;
    if (optind != argc || g_opt.addr_text == NULL) {
        usage(stderr);
        return -1;
    }
    if (g_opt.churn + (g_opt.rate > 0) + (g_opt.idle > 0) > 1) {
        fprintf(stderr, "loadgen: --churn, --rate-per-conn and --idle are exclusive\n");
        return -1;
    }
    if ((g_opt.churn || g_opt.rate > 0) && g_opt.pipeline != 1) {
        fprintf(stderr, "loadgen: --churn and --rate-per-conn send one message at a time: -P must be 1\n");
        return -1;
    }
    if (g_opt.sync && g_opt.idle) {
        fprintf(stderr, "loadgen: --idle already waits on stdin: no --sync\n");
        return -1;
    }
    if (have_d && g_opt.nmsgs) {
        fprintf(stderr, "loadgen: -d and -n are exclusive\n");
        return -1;
    }
    if (g_opt.threads > g_opt.conns)
        g_opt.threads = g_opt.conns;
    return 0;
}

/* Raise the soft descriptor limit to the hard one; check that need descriptors fit. */
static int raise_nofile(unsigned need)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)need + 32 > rl.rlim_cur) {
        fprintf(stderr, "loadgen: %u connections need more descriptors than RLIMIT_NOFILE (%llu)\n",
                need, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

static int worker_init(struct worker *w, struct conn *conns, unsigned n)
{
    w->conns = conns;
    w->nconns = n;
    w->budget = UINT64_MAX;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->rbuf = malloc(RBUF_SIZE);
    if (w->epfd < 0 || w->rbuf == NULL) {
        fprintf(stderr, "loadgen: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static void worker_fini(struct worker *w)
{
    if (w->epfd >= 0)
        close(w->epfd);
    free(w->rbuf);
}

/* --idle: open connections, say "ready", hold them until stdin EOF or SIGTERM/SIGINT. */
static int run_idle(void)
{
    struct conn *conns = calloc(g_opt.idle, sizeof(*conns));
    struct worker *w = calloc(1, sizeof(*w));
    unsigned closed = 0;
    uint64_t errors;
    sigset_t mask;
    int sfd;

    if (conns == NULL || w == NULL || worker_init(w, conns, g_opt.idle) < 0)
        return 1;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    for (unsigned i = 0; i < g_opt.idle; i++) {
        conns[i].id = i;
        conns[i].fd = -1;
    }
    worker_connect_all(w);
    printf("ready\n");
    fflush(stdout);

    for (;;) {
        struct pollfd pf[2] = { { .fd = 0, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
        char buf[4096];

        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pf[1].revents)
            break;
        if (pf[0].revents & POLLNVAL)
            break;
        if (pf[0].revents && read(0, buf, sizeof(buf)) <= 0)
            break;
    }

    /* A connection the server closed (or wrote to) meanwhile makes the figure wrong: count it. */
    for (unsigned i = 0; i < g_opt.idle; i++) {
        char b;
        ssize_t r;

        if (conns[i].state != C_RUNNING)
            continue;
        r = recv(conns[i].fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r >= 0 || (errno != EAGAIN && errno != EINTR)) {
            diag("idle connection %u: %s", i, r > 0 ? "unexpected data" : "closed by peer");
            closed++;
        }
        close_abort(conns[i].fd);   /* no TIME_WAIT: the next run may need the ports */
    }
    w->errors[E_CLOSED] += closed;
    errors = w->errors[E_CONNECT] + w->errors[E_CLOSED];
    printf("idle_conns=%u connected=%u closed=%u errors=%" PRIu64 "\n", g_opt.idle, w->live,
           closed, errors);
    worker_fini(w);
    free(w);
    free(conns);
    if (sfd >= 0)
        close(sfd);
    return errors ? 1 : 0;
}

/* --free-port: bind 127.0.0.1:0, print the port the kernel chose, close. For a program that
 * cannot take port 0 itself (iperf3 -s): the caller retries if someone takes it meanwhile. */
static int print_free_port(void)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        fprintf(stderr, "loadgen: --free-port: %s\n", strerror(errno));
        return 1;
    }
    printf("%u\n", ntohs(sin.sin_port));
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    struct worker *workers;
    struct conn *conns;
    uint64_t *slots, total = 0, errors = 0, late = 0, kinds[E_KINDS] = { 0 };
    hist *lat;
    double secs = 0;
    struct sigaction sa;

    if (parse_opts(argc, argv) < 0)
        return 2;
    if (g_opt.free_port)
        return print_free_port();
    signal(SIGPIPE, SIG_IGN);
    if (raise_nofile(g_opt.idle ? g_opt.idle : g_opt.conns) < 0)
        return 2;
    if (g_opt.idle)
        return run_idle();

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pattern_init();

    workers = calloc(g_opt.threads, sizeof(*workers));
    conns = calloc(g_opt.conns, sizeof(*conns));
    slots = calloc((size_t)g_opt.conns * g_opt.pipeline, sizeof(*slots));
    lat = calloc(1, sizeof(*lat));
    if (workers == NULL || conns == NULL || slots == NULL || lat == NULL) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 2;
    }
    for (unsigned i = 0; i < g_opt.conns; i++) {
        conns[i].id = i;
        conns[i].fd = -1;
        conns[i].tsend = slots + (size_t)i * g_opt.pipeline;
    }
    pthread_barrier_init(&g_barrier, NULL, g_opt.threads);
    for (unsigned t = 0; t < g_opt.threads; t++) {
        unsigned lo = (unsigned)((uint64_t)g_opt.conns * t / g_opt.threads);
        unsigned hi = (unsigned)((uint64_t)g_opt.conns * (t + 1) / g_opt.threads);
        struct worker *w = &workers[t];

        if (worker_init(w, conns + lo, hi - lo) < 0)
            return 2;
        w->first = t == 0;
        if (g_opt.nmsgs)
            w->budget = g_opt.nmsgs / g_opt.threads + (t < g_opt.nmsgs % g_opt.threads);
        if (t > 0 && pthread_create(&w->tid, NULL, worker_main, w) != 0) {
            fprintf(stderr, "loadgen: pthread_create failed\n");
            return 2;
        }
    }
    worker_main(&workers[0]);
    for (unsigned t = 1; t < g_opt.threads; t++)
        pthread_join(workers[t].tid, NULL);

    for (unsigned t = 0; t < g_opt.threads; t++) {
        struct worker *w = &workers[t];
        uint64_t until = g_opt.nmsgs ? w->last_done : (w->t_stop < w->t_end ? w->t_stop : w->t_end);
        double s = until > w->t_warm ? (double)(until - w->t_warm) / 1e9 : 0;

        hist_merge(lat, &w->lat);
        total += w->total;
        late += w->late;
        for (int k = 0; k < E_KINDS; k++) {
            kinds[k] += w->errors[k];
            errors += w->errors[k];
        }
        if (s > secs)
            secs = s;
    }
    if (errors) {
        fprintf(stderr, "loadgen: errors:");
        for (int k = 0; k < E_KINDS; k++)
            fprintf(stderr, " %s=%" PRIu64, err_names[k], kinds[k]);
        fprintf(stderr, "\n");
    }
    printf("%s=%" PRIu64 " secs=%.2f rate=%.0f p50_us=%" PRIu64 " p90_us=%" PRIu64
           " p99_us=%" PRIu64 " p999_us=%" PRIu64 " max_us=%" PRIu64 " errors=%" PRIu64
           " %s=%" PRIu64 " conns=%u size=%zu",
           g_opt.churn ? "cycles" : "msgs", lat->count, secs,
           secs > 0 ? (double)lat->count / secs : 0.0,
           hist_percentile(lat, 50), hist_percentile(lat, 90), hist_percentile(lat, 99),
           hist_percentile(lat, 99.9), lat->max, errors,
           g_opt.churn ? "total_cycles" : "total_msgs", total, g_opt.conns, g_opt.size);
    if (g_opt.rate > 0)
        printf(" rate_per_conn=%g late=%" PRIu64, g_opt.rate, late);
    else if (!g_opt.churn)
        printf(" pipeline=%u", g_opt.pipeline);
    printf("\n");
    fflush(stdout);
    if (g_opt.sync)
        sync_hold(conns, g_opt.conns);
    for (unsigned t = 0; t < g_opt.threads; t++)
        worker_fini(&workers[t]);
    pthread_barrier_destroy(&g_barrier);
    free(workers);
    free(conns);
    free(slots);
    free(lat);
    return errors ? 1 : 0;
}
