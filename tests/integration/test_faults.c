/* test_faults.c - integration tests of faults and abuse: descriptors exhausted, slow clients
 * (read_timeout, idle_timeout), connect floods, resets mid-reply, half-closed clients, and the
 * server's memory under thousands of clients that send without reading. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "bounds.h"             /* OUT_HIGH_WATER, READ_BUF_SIZE: the memory bound's terms */

#define SEP "\r\n\r\n"
#define SEPLEN 4
#define IO_MS 5000              /* default bound for one socket operation */
#define STOP_MS 10000           /* bound for SIGTERM -> exit */
#define SETTLE_MS 10000         /* bound for the server to give back fds after clients left */

/* Sanitizers slow the server down and multiply its memory: the tests that measure scale down
 * (the bounds they assert are computed from the same terms). */
#if defined(__SANITIZE_THREAD__)
#define SANITIZED 2
#elif defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

/* Per-test state: the harness's context, then the client fds a test opens by the thousand
 * (more than the context tracks), closed at teardown whatever happened. */
struct faults {
    struct hs_ctx ctx;
    int *fds;
    int nfds;
    int cap;
};

static int faults_setup(void **state)
{
    return hs_ctx_setup_size(state, sizeof(struct faults));
}

static int faults_teardown(void **state)
{
    struct faults *f = *state;

    if (f != NULL) {
        for (int i = 0; i < f->nfds; i++)
            if (f->fds[i] >= 0)
                close(f->fds[i]);
        free(f->fds);
        f->fds = NULL;
        f->nfds = 0;
    }
    return hs_ctx_teardown(state);
}

#define FAULTS_TEST(t) cmocka_unit_test_setup_teardown(t, faults_setup, faults_teardown)

static struct faults *begin(void **state, unsigned budget_s, const char *name)
{
    return (struct faults *)hs_ctx_begin(state, budget_s, name);
}

/* Remembers FD for teardown; returns its slot (>= 0), or -1 if FD < 0. */
static int track(struct faults *f, int fd)
{
    if (fd < 0)
        return -1;
    if (f->nfds == f->cap) {
        int cap = f->cap ? f->cap * 2 : 1024;
        int *v = realloc(f->fds, (size_t)cap * sizeof *v);
        if (v == NULL) {
            close(fd);
            HS_FAIL("out of memory tracking fds");
        }
        f->fds = v;
        f->cap = cap;
    }
    f->fds[f->nfds] = fd;
    return f->nfds++;
}

/* Closes the fd in SLOT (if still open) and forgets it. */
static void untrack_close(struct faults *f, int idx)
{
    if (idx >= 0 && idx < f->nfds && f->fds[idx] >= 0) {
        close(f->fds[idx]);
        f->fds[idx] = -1;
    }
}

/* Sets SO_LINGER {1, 0} so that close() sends RST, then closes the fd in SLOT. */
static void reset_close(struct faults *f, int idx)
{
    struct linger lg = { 1, 0 };

    if (idx >= 0 && idx < f->nfds && f->fds[idx] >= 0) {
        setsockopt(f->fds[idx], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        untrack_close(f, idx);
    }
}

/* SIGTERMs SRV and asserts a clean exit (status 0: under AddressSanitizer, no leak). */
static void stop_ok(struct hs_proc *srv, const char *what)
{
    int st = hs_stop(srv, STOP_MS);

    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        hs_dump_output(srv, "bad exit after SIGTERM");
        HS_FAIL("%s: echosrv did not exit with status 0 after SIGTERM (wait status %d)", what, st);
    }
}

/* Waits up to MS for the server's fd count to come down to WANT. Returns the last count. */
static int fds_settle(struct hs_proc *srv, int want, int ms)
{
    long deadline = hs_now_ms() + ms;
    int n;

    while ((n = hs_proc_fd_count(hs_pid(srv))) > want && hs_now_ms() < deadline)
        hs_sleep_ms(20);
    return n;
}

/* The number of times NEEDLE occurs in the server's output so far. */
static int output_count(struct hs_proc *srv, const char *needle)
{
    char *out = hs_output(srv);
    int n = 0;

    if (out == NULL)
        return -1;
    for (const char *s = out; (s = strstr(s, needle)) != NULL; s += strlen(needle))
        n++;
    free(out);
    return n;
}

/* Waits up to MS until NEEDLE occurs at least N times in the output. Returns the count. */
static int output_wait_count(struct hs_proc *srv, const char *needle, int n, int ms)
{
    long deadline = hs_now_ms() + ms;
    int got;

    while ((got = output_count(srv, needle)) < n && hs_now_ms() < deadline)
        hs_sleep_ms(50);
    return got;
}

/* A round trip of "NAME #I" on FD within MS. Returns 0 or -1. */
static int ping_n(int fd, const char *name, int i, int ms)
{
    char msg[64];

    snprintf(msg, sizeof msg, "%s #%d" SEP, name, i);
    return hs_ping(fd, msg, ms);
}

/* ---- 1. Descriptors exhausted ------------------------------------------------------------- */

/* The server at RLIMIT_NOFILE 64 with 120 clients, each of which has sent one request: those
 * it holds are answered and keep being served, the others wait in the backlog, the server does
 * not spin, and as served clients leave, every waiting client gets its answer; then a new one. */
static void test_emfile(void **state)
{
    enum { N = 120, NOFILE = 64 };
    struct faults *f = begin(state, 60, __func__);
    struct hs_proc *srv = hs_ctx_start(&f->ctx, "127.0.0.1:0", 1, NOFILE, "");
    const char *at = hs_addr(srv, 0);
    int idx[N];
    bool served[N];
    char want[N][32];
    int nserved = 0;

    for (int i = 0; i < N; i++) {
        idx[i] = track(f, hs_connect_nb(at));
        if (idx[i] < 0)
            HS_FAIL("connect #%d: %s", i, strerror(errno));
        served[i] = false;
    }
    /* The kernel completes the handshakes from the backlog whether or not echosrv accepts. */
    long deadline = hs_now_ms() + 5000;
    for (int i = 0; i < N; i++) {
        struct pollfd pfd = { f->fds[idx[i]], POLLOUT, 0 };
        int left = (int)(deadline - hs_now_ms());
        if (poll(&pfd, 1, left > 0 ? left : 0) != 1)
            HS_FAIL("connection #%d did not complete its handshake in 5 s", i);
        snprintf(want[i], sizeof want[i], "request %d" SEP, i);
        if (hs_send_all(f->fds[idx[i]], want[i], strlen(want[i]), IO_MS) < 0)
            HS_FAIL("cannot send request #%d: %s", i, strerror(errno));
    }

    /* Collects the replies that arrive within MS, closing each answered client if LEAVE. */
    struct pollfd pfds[N];
    int map[N];
#define COLLECT(ms, leave)                                                                 \
    do {                                                                                   \
        long until_ = hs_now_ms() + (ms);                                                  \
        for (;;) {                                                                         \
            int np_ = 0;                                                                   \
            for (int i = 0; i < N; i++)                                                    \
                if (!served[i]) {                                                          \
                    pfds[np_] = (struct pollfd){ f->fds[idx[i]], POLLIN, 0 };            \
                    map[np_++] = i;                                                        \
                }                                                                          \
            int left_ = (int)(until_ - hs_now_ms());                                       \
            if (np_ == 0 || left_ <= 0)                                                    \
                break;                                                                     \
            if (poll(pfds, (nfds_t)np_, left_) <= 0)                                       \
                continue;                                                                  \
            for (int k = 0; k < np_; k++) {                                                \
                if (!(pfds[k].revents & (POLLIN | POLLHUP | POLLERR)))                     \
                    continue;                                                              \
                int i = map[k];                                                            \
                char got_[32];                                                             \
                size_t len_ = strlen(want[i]);                                             \
                if (hs_recv_exact(f->fds[idx[i]], got_, len_, IO_MS) != (ssize_t)len_ ||  \
                    memcmp(got_, want[i], len_) != 0)                                      \
                    HS_FAIL("client #%d: no or a wrong reply", i);                         \
                served[i] = true;                                                          \
                nserved++;                                                                 \
                if (leave)                                                                 \
                    untrack_close(f, idx[i]);                                             \
            }                                                                              \
        }                                                                                  \
    } while (0)

    COLLECT(3000, false);
    int first = nserved;
    int fds_at_limit = hs_proc_fd_count(hs_pid(srv));
    fprintf(stderr, "# RLIMIT_NOFILE %d: %d of %d clients answered, the server holds %d fds\n",
            NOFILE, first, N, fds_at_limit);
    if (first < 5)
        HS_FAIL("only %d clients were answered at RLIMIT_NOFILE %d", first, NOFILE);
    if (first == N)
        HS_FAIL("all %d clients were answered: the fd limit was not reached", N);
    if (hs_wait_output(srv, "pausing accepts", 3000) != 0)
        HS_FAIL("no warning about the descriptor shortage");

    double cpu0 = hs_proc_cpu_seconds(hs_pid(srv));
    hs_sleep_ms(1500);
    double cpu1 = hs_proc_cpu_seconds(hs_pid(srv));
    assert_true(cpu0 >= 0 && cpu1 >= 0);
    fprintf(stderr, "# server CPU over 1.5 s at the fd limit: %.2f s\n", cpu1 - cpu0);
    if (cpu1 - cpu0 >= 0.4)
        HS_FAIL("echosrv used %.2f s CPU in 1.5 s at the fd limit: it spins on EMFILE",
                cpu1 - cpu0);
    int still = 0;
    for (int i = 0; i < N && still < 5; i++)
        if (served[i]) {
            if (ping_n(f->fds[idx[i]], "still here", i, IO_MS) < 0)
                HS_FAIL("client #%d stopped being served at the fd limit", i);
            still++;
        }

    /* The answered clients leave; each waiting one is then accepted and answered. */
    for (int i = 0; i < N; i++)
        if (served[i])
            untrack_close(f, idx[i]);
    long t0 = hs_now_ms();
    COLLECT(15000, true);
#undef COLLECT
    fprintf(stderr, "# the %d waiting clients were answered within %ld ms as fds freed up\n",
            N - first, hs_now_ms() - t0);
    if (nserved < N)
        HS_FAIL("%d clients waiting for a free fd were never answered", N - nserved);

    int fd = hs_ctx_connect(&f->ctx, at, IO_MS);
    if (ping_n(fd, "recovered", 0, IO_MS) < 0)
        HS_FAIL("a new client was not served after the shortage");
    stop_ok(srv, "after the fd shortage");
}

/* ---- 2. read_timeout ---------------------------------------------------------------------- */

/* Sends PIECE on FD or fails the test. */
static void send_str(int fd, const char *piece)
{
    if (hs_send_all(fd, piece, strlen(piece), IO_MS) < 0)
        HS_FAIL("cannot send '%s': %s", piece, strerror(errno));
}

/* Receives exactly the string WANT on FD or fails the test. */
static void expect_str(int fd, const char *want)
{
    char got[256];
    size_t len = strlen(want);

    assert_true(len < sizeof got);
    ssize_t n = hs_recv_exact(fd, got, len, IO_MS);
    if (n != (ssize_t)len || memcmp(got, want, len) != 0)
        HS_FAIL("expected the reply '%.*s': got %zd bytes (%s)", (int)(len - SEPLEN), want, n,
                n < 0 ? strerror(errno) : "different or short");
}

/* read_timeout = 2: a message trickling in a byte at a time is cut about 2 s after its first
 * byte (idle_timeout could never catch it); messages that each take less (the connection
 * holding some partial message for longer in all) and idle connections are left alone. */
static void test_read_timeout(void **state)
{
    struct faults *f = begin(state, 30, __func__);
    struct hs_proc *srv = hs_ctx_start(&f->ctx, "127.0.0.1:0", 1, 0,
                                       "read_timeout = 2\nidle_timeout = 30\n");
    const char *at = hs_addr(srv, 0);
    int idle = hs_ctx_connect(&f->ctx, at, IO_MS);
    int pipe_fd = hs_ctx_connect(&f->ctx, at, IO_MS);
    int slow = hs_ctx_connect(&f->ctx, at, IO_MS);

    /* Three pipelined messages, each completed 1.2 s after it began. */
    send_str(pipe_fd, "m1" SEP "m2 begins");
    expect_str(pipe_fd, "m1" SEP);
    long t_first = hs_now_ms();
    send_str(slow, "s");
    hs_sleep_ms(1200);
    send_str(pipe_fd, ", m2 ends" SEP "m3 begins");
    expect_str(pipe_fd, "m2 begins, m2 ends" SEP);
    long closed = -1;
    /* The trickle: a byte every 300 ms until the server closes. */
    while (closed < 0 && hs_now_ms() < t_first + 6000) {
        if (send(slow, "s", 1, MSG_NOSIGNAL) < 0 && errno != EAGAIN)
            closed = hs_now_ms() - t_first;
        else if (hs_wait_closed(slow, 300) == 0)
            closed = hs_now_ms() - t_first;
    }
    send_str(pipe_fd, ", m3 ends" SEP);
    expect_str(pipe_fd, "m3 begins, m3 ends" SEP);
    fprintf(stderr, "# the trickling message was cut %ld ms after its first byte\n", closed);
    if (closed < 0)
        HS_FAIL("a message trickling in for 6 s was not cut (read_timeout = 2)");
    if (closed < 1900)
        HS_FAIL("the trickling message was cut after %ld ms, before read_timeout = 2 s", closed);
    if (hs_wait_output(srv, "a message begun", 2000) != 0 ||
        !hs_output_has(srv, "(read_timeout 2 s of listener default)") ||
        !hs_output_has(srv, "closing the connection from 127.0.0.1:"))
        HS_FAIL("the read_timeout close was not logged with the peer");
    hs_assert_quiet(pipe_fd, 0);
    hs_assert_quiet(idle, 0);
    if (ping_n(idle, "idle but whole", 0, IO_MS) < 0 || ping_n(pipe_fd, "after", 0, IO_MS) < 0)
        HS_FAIL("a connection without a late message was not served");
    stop_ok(srv, "read_timeout");
}

/* ---- 3. Slowloris ------------------------------------------------------------------------- */

/* Normal clients doing round trips in a thread of their own while an attack runs. */
struct pinger {
    const char *at;
    atomic_int stop;
    int pings;
    int fails;
    long max_ms;
    char why[160];
};

static void *pinger_main(void *arg)
{
    enum { K = 4 };
    struct pinger *p = arg;
    int fds[K];

    for (int k = 0; k < K; k++)
        fds[k] = hs_connect(p->at, IO_MS);
    for (int r = 0; !atomic_load(&p->stop); r++) {
        for (int k = 0; k < K; k++) {
            long t = hs_now_ms();
            if (fds[k] < 0 || ping_n(fds[k], "normal client", r, 2000) < 0) {
                if (p->fails++ == 0)
                    snprintf(p->why, sizeof p->why, "client %d, round trip %d: %s", k, r,
                             fds[k] < 0 ? "cannot connect" : "no reply within 2 s");
                continue;
            }
            p->pings++;
            if (hs_now_ms() - t > p->max_ms)
                p->max_ms = hs_now_ms() - t;
        }
        hs_sleep_ms(20);
    }
    for (int k = 0; k < K; k++)
        if (fds[k] >= 0)
            close(fds[k]);
    return NULL;
}

/* A client of the attack: its slot, when it sent its first and last byte, when the server
 * closed it. */
struct attacker {
    int slot;
    long first, last, closed;
};

/* Thousands of connections on listener 'trickle' (read_timeout = 3, idle_timeout = 2) send
 * one byte of a message every 500 ms: never idle, they are cut by read_timeout; hundreds on
 * listener 'stall' (idle_timeout = 2, no read_timeout) send one byte and stop: idle_timeout
 * cuts them. Normal clients on 'trickle' get their round trips all along. */
static void test_slowloris(void **state)
{
    enum { NT = SANITIZED ? 1000 : 2500, NS = SANITIZED ? 200 : 500, N = NT + NS,
           TICK_MS = 500 };
    struct faults *f = begin(state, 90, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    assert_non_null(pd);
    assert_int_equal(hs_write_file(f->ctx.conf, sizeof f->ctx.conf, f->ctx.dir, "slow.ini",
                                   "[server]\nthreads = 2\nplugin_dir = %s\nlog_level = info\n"
                                   "backlog = 4096\n"
                                   "[listener trickle]\nbind = 127.0.0.1:0\n"
                                   "read_timeout = 3\nidle_timeout = 2\n"
                                   "[listener stall]\nbind = 127.0.0.1:0\nidle_timeout = 2\n",
                                   pd), 0);
    struct hs_proc *srv = hs_ctx_start_conf(&f->ctx, 2, 0);
    char trickle[HS_ADDR_MAX], stall[HS_ADDR_MAX];
    hs_ctx_listener_addr(srv, "trickle", trickle, sizeof trickle);
    hs_ctx_listener_addr(srv, "stall", stall, sizeof stall);

    struct pinger pg = { .at = trickle };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, pinger_main, &pg), 0);

    struct attacker *a = calloc(N, sizeof *a);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    assert_non_null(a);
    assert_true(ep >= 0);
    track(f, ep);
    for (int i = 0; i < N; i++) {
        a[i].slot = track(f, hs_connect(i < NT ? trickle : stall, IO_MS));
        if (a[i].slot < 0) {
            atomic_store(&pg.stop, 1);
            pthread_join(th, NULL);
            free(a);
            HS_FAIL("attacker #%d cannot connect: %s", i, strerror(errno));
        }
        int fd = f->fds[a[i].slot];
        struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0 || send(fd, "x", 1, MSG_NOSIGNAL) != 1) {
            atomic_store(&pg.stop, 1);
            pthread_join(th, NULL);
            free(a);
            HS_FAIL("attacker #%d: %s", i, strerror(errno));
        }
        a[i].first = a[i].last = hs_now_ms();
        a[i].closed = -1;
    }
    long t_attack = hs_now_ms();
    fprintf(stderr, "# %d trickling + %d stalled connections opened in %ld ms\n", NT, NS,
            t_attack - a[0].first);

    int open = N;
    bool data = false;
    long next_tick = hs_now_ms() + TICK_MS;
    long deadline = t_attack + 20000;
    struct epoll_event evs[256];
    while (open > 0 && hs_now_ms() < deadline) {
        if (hs_now_ms() >= next_tick) {
            for (int i = 0; i < NT; i++) {
                if (a[i].closed >= 0)
                    continue;
                if (send(f->fds[a[i].slot], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1)
                    a[i].last = hs_now_ms();
            }
            next_tick += TICK_MS;
        }
        int left = (int)(next_tick - hs_now_ms());
        int n = epoll_wait(ep, evs, 256, left > 0 ? left : 0);
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            char bytes[16];
            ssize_t r = recv(f->fds[a[i].slot], bytes, sizeof bytes, MSG_DONTWAIT);
            if (r > 0)
                data = true;
            if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EINTR)))
                continue;
            a[i].closed = hs_now_ms();
            epoll_ctl(ep, EPOLL_CTL_DEL, f->fds[a[i].slot], NULL);
            untrack_close(f, a[i].slot);
            open--;
        }
    }
    atomic_store(&pg.stop, 1);
    pthread_join(th, NULL);

    int t_open = 0, s_open = 0, t_early = 0, s_early = 0;
    long t_min = -1, t_max = 0, s_min = -1, s_max = 0;
    for (int i = 0; i < N; i++) {
        if (a[i].closed < 0) {
            *(i < NT ? &t_open : &s_open) += 1;
            continue;
        }
        if (i < NT) {
            long d = a[i].closed - a[i].first;
            t_min = t_min < 0 || d < t_min ? d : t_min;
            t_max = d > t_max ? d : t_max;
            t_early += d < 2900;
        } else {
            long d = a[i].closed - a[i].last;
            s_min = s_min < 0 || d < s_min ? d : s_min;
            s_max = d > s_max ? d : s_max;
            s_early += d < 1900;
        }
    }
    free(a);
    int logged = output_wait_count(srv, "(read_timeout 3 s of listener trickle)", NT - t_open,
                                   5000);
    fprintf(stderr, "# trickling: cut %ld..%ld ms after their first byte (%d logged); stalled: "
            "cut %ld..%ld ms after their last byte\n", t_min, t_max, logged, s_min, s_max);
    fprintf(stderr, "# normal clients: %d round trips during the attack, slowest %ld ms, "
            "%d failed\n", pg.pings, pg.max_ms, pg.fails);
    if (data)
        HS_FAIL("the server answered an incomplete message");
    if (t_open > 0)
        HS_FAIL("%d of %d trickling connections were still open 20 s into the attack "
                "(read_timeout = 3)", t_open, NT);
    if (s_open > 0)
        HS_FAIL("%d of %d stalled connections were still open 20 s into the attack "
                "(idle_timeout = 2)", s_open, NS);
    if (t_early > 0 || s_early > 0)
        HS_FAIL("%d trickling connections cut before read_timeout, %d stalled ones before "
                "idle_timeout", t_early, s_early);
    if (logged < NT)
        HS_FAIL("%d read_timeout closes logged for %d trickling connections", logged, NT);
    if (pg.fails > 0)
        HS_FAIL("%d round trips of normal clients failed during the attack; first: %s",
                pg.fails, pg.why);
    if (pg.pings == 0)
        HS_FAIL("no round trip of a normal client completed during the attack");
    stop_ok(srv, "after the slowloris attack");
}

/* ---- 4. Connect flood --------------------------------------------------------------------- */

struct flooder {
    const char *at;
    int n, id;
    int mode;              /* as below, or -1: each in turn */
    int failed;
    int err;
};

/* Connects and at once closes, N times, four ways: FIN; RST (SO_LINGER 0); half a message then
 * RST; a whole message then RST. */
static void *flood_main(void *arg)
{
    struct flooder *fl = arg;
    struct linger lg = { 1, 0 };

    for (int i = 0; i < fl->n; i++) {
        int fd = hs_connect(fl->at, IO_MS);
        if (fd < 0) {
            fl->failed++;
            fl->err = errno;
            continue;
        }
        int mode = fl->mode >= 0 ? fl->mode : (i + fl->id) % 4;
        if (mode == 2)
            (void)!send(fd, "half a mess", 11, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (mode == 3)
            (void)!send(fd, "whole" SEP, 9, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (mode != 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
    }
    return NULL;
}

/* Thousands of connect + instant close from several threads: afterwards the server holds as
 * many fds as before, its connection count is back to 0 (max_connections clients fit again,
 * one more does not), and it serves normally. */
static void test_connect_flood(void **state)
{
    enum { THREADS = 4, PER = SANITIZED ? 1000 : 3000, MAXC = 200 };
    struct faults *f = begin(state, 120, __func__);
    char extra[128];
    snprintf(extra, sizeof extra, "backlog = 4096\nmax_connections = %d\n", MAXC);
    struct hs_proc *srv = hs_ctx_start(&f->ctx, "127.0.0.1:0", 1, 0, extra);
    const char *at = hs_addr(srv, 0);
    int warm = hs_ctx_connect(&f->ctx, at, IO_MS);
    assert_int_equal(ping_n(warm, "warm up", 0, IO_MS), 0);
    hs_ctx_untrack_close(&f->ctx, warm);
    int base = fds_settle(srv, 0, 300);
    long rss0 = hs_proc_rss_kb(hs_pid(srv));

    struct flooder fl[THREADS];
    pthread_t th[THREADS];
    long t0 = hs_now_ms();
    for (int t = 0; t < THREADS; t++) {
        fl[t] = (struct flooder){ .at = at, .n = PER, .id = t, .mode = -1 };
        assert_int_equal(pthread_create(&th[t], NULL, flood_main, &fl[t]), 0);
    }
    int failed = 0, err = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        failed += fl[t].failed;
        if (fl[t].err)
            err = fl[t].err;
    }
    long t_flood = hs_now_ms() - t0;
    int during = hs_proc_fd_count(hs_pid(srv));
    int after = fds_settle(srv, base, SETTLE_MS);
    long rss1 = hs_proc_rss_kb(hs_pid(srv));
    fprintf(stderr, "# %d connect+close in %ld ms (%d failed); server fds %d before, %d at "
            "the end of the flood, %d after; VmRSS %ld -> %ld KiB\n", THREADS * PER, t_flood,
            failed, base, during, after, rss0, rss1);
    if (failed > 0)
        HS_FAIL("%d of %d connects failed (last: %s)", failed, THREADS * PER, strerror(err));
    if (after != base)
        HS_FAIL("the server holds %d fds %d s after the flood, %d before: it leaks", after,
                SETTLE_MS / 1000, base);

    /* Exactly max_connections clients are served at once: none of the flood is counted. */
    int idx[MAXC];
    for (int i = 0; i < MAXC; i++) {
        idx[i] = track(f, hs_connect(at, IO_MS));
        if (idx[i] < 0)
            HS_FAIL("client #%d cannot connect after the flood: %s", i, strerror(errno));
    }
    for (int i = 0; i < MAXC; i++)
        if (ping_n(f->fds[idx[i]], "after the flood", i, IO_MS) < 0)
            HS_FAIL("client #%d of max_connections = %d not served after the flood: the "
                    "connection count leaked", i, MAXC);
    int extra_fd = track(f, hs_connect(at, IO_MS));
    if (extra_fd < 0 || hs_wait_closed(f->fds[extra_fd], IO_MS) != 0)
        HS_FAIL("client #%d, past max_connections = %d, was not refused", MAXC + 1, MAXC);
    for (int i = 0; i < MAXC; i++)
        untrack_close(f, idx[i]);
    after = fds_settle(srv, base, SETTLE_MS);
    if (after != base)
        HS_FAIL("the server holds %d fds after its clients left, %d before", after, base);
    stop_ok(srv, "after the connect flood");
}

/* Thousands of clients that send half a message and reset, from several threads, three
 * rounds: the server sees every reset, though a multishot receive may deliver the bytes and
 * never report the reset that came with them (Linux 6.18, two workers, io_uring); it holds as
 * many fds as before each time. */
static void test_reset_after_data(void **state)
{
    enum { THREADS = 4, PER = SANITIZED ? 700 : 2000, ROUNDS = 3 };
    struct faults *f = begin(state, 120, __func__);
    struct hs_proc *srv = hs_ctx_start(&f->ctx, "127.0.0.1:0", 1, 0, "backlog = 4096\n");
    const char *at = hs_addr(srv, 0);
    int warm = hs_ctx_connect(&f->ctx, at, IO_MS);
    assert_int_equal(ping_n(warm, "warm up", 0, IO_MS), 0);
    hs_ctx_untrack_close(&f->ctx, warm);
    int base = fds_settle(srv, 0, 300);
    for (int r = 0; r < ROUNDS; r++) {
        struct flooder fl[THREADS];
        pthread_t th[THREADS];
        for (int t = 0; t < THREADS; t++) {
            fl[t] = (struct flooder){ .at = at, .n = PER, .id = t, .mode = 2 };
            assert_int_equal(pthread_create(&th[t], NULL, flood_main, &fl[t]), 0);
        }
        int failed = 0;
        for (int t = 0; t < THREADS; t++) {
            pthread_join(th[t], NULL);
            failed += fl[t].failed;
        }
        int after = fds_settle(srv, base, SETTLE_MS);
        fprintf(stderr, "# round %d: %d clients sent half a message and reset (%d failed to "
                "connect); server fds %d before, %d after\n", r + 1, THREADS * PER, failed,
                base, after);
        if (after != base)
            HS_FAIL("round %d: the server holds %d fds %d s after the resets, %d before: "
                    "connections whose reset it missed", r + 1, after, SETTLE_MS / 1000, base);
    }
    int fd = hs_ctx_connect(&f->ctx, at, IO_MS);
    assert_int_equal(ping_n(fd, "after the resets", 0, IO_MS), 0);
    stop_ok(srv, "after the resets");
}

/* ---- 5. RST mid-reply --------------------------------------------------------------------- */

/* Clients send a 4 MiB message, read READ[i] bytes of its echo (0 included: the server is in
 * the middle of writing it) and reset the connection, one after another and then eight at
 * once: the server survives, gives back every fd, and serves a bystander throughout. */
static void test_rst_mid_reply(void **state)
{
    enum { BIG = 4 << 20, PAR = 8 };
    static const size_t reads[] = { 0, 1, 4096, 65536, 1 << 20, 3 << 20 };
    enum { NSEQ = sizeof reads / sizeof reads[0] };
    struct faults *f = begin(state, 90, __func__);
    struct hs_proc *srv = hs_ctx_start(&f->ctx, "127.0.0.1:0", 1, 0, "");
    const char *at = hs_addr(srv, 0);
    int by = hs_ctx_connect(&f->ctx, at, IO_MS);
    assert_int_equal(ping_n(by, "bystander", 0, IO_MS), 0);
    int base = hs_proc_fd_count(hs_pid(srv));
    long rss0 = hs_proc_rss_kb(hs_pid(srv));
    char *big = malloc(BIG + SEPLEN);
    char *sink = malloc(BIG);
    assert_non_null(big);
    assert_non_null(sink);
    hs_fill_pattern(big, BIG, 5);
    memcpy(big + BIG, SEP, SEPLEN);

    for (int i = 0; i < NSEQ + PAR; i++) {
        bool par = i >= NSEQ;
        int n = par ? PAR : 1;
        int idx[PAR];
        for (int k = 0; k < n; k++) {
            idx[k] = track(f, hs_connect(at, 20000));
            if (idx[k] < 0 ||
                hs_send_all(f->fds[idx[k]], big, BIG + SEPLEN, 20000) < 0) {
                free(big);
                free(sink);
                HS_FAIL("cannot send the 4 MiB message (round %d): %s", i, strerror(errno));
            }
        }
        for (int k = 0; k < n; k++) {
            size_t want = par ? (size_t)k * 4096 : reads[i];
            if (want > 0 && hs_recv_exact(f->fds[idx[k]], sink, want, 20000) !=
                                (ssize_t)want) {
                free(big);
                free(sink);
                HS_FAIL("round %d: the echo did not begin: %s", i, strerror(errno));
            }
            reset_close(f, idx[k]);
        }
        if (ping_n(by, "bystander", i + 1, IO_MS) < 0) {
            free(big);
            free(sink);
            HS_FAIL("the bystander was not served after reset #%d", i);
        }
        if (par)
            break;
    }
    free(big);
    free(sink);
    int after = fds_settle(srv, base, SETTLE_MS);
    long rss1 = hs_proc_rss_kb(hs_pid(srv));
    fprintf(stderr, "# %d resets mid-reply: server fds %d before, %d after; VmRSS %ld -> %ld "
            "KiB\n", NSEQ + PAR, base, after, rss0, rss1);
    if (after != base)
        HS_FAIL("the server holds %d fds after the resets, %d before: it leaks", after, base);
    hs_assert_quiet(by, 0);
    stop_ok(srv, "after resets mid-reply");
}

/* ---- 6. Half-closed clients --------------------------------------------------------------- */

/* Reads from FD until EOF (at most CAP bytes) within MS. Returns the length, or -1 on error,
 * timeout or overflow. */
static ssize_t recv_to_eof(int fd, char *bytes, size_t cap, int ms)
{
    size_t got = 0;

    for (;;) {
        ssize_t n = hs_recv_exact(fd, bytes + got, cap - got, ms);
        if (n < 0)
            return -1;
        got += (size_t)n;
        if (got < cap)
            return (ssize_t)got;
        char c;
        n = hs_recv_exact(fd, &c, 1, ms);
        return n == 0 ? (ssize_t)got : -1;
    }
}

/* Clients that send complete messages, one with an 8 MiB reply the server must queue under
 * backpressure, then shutdown(SHUT_WR) at once: every reply arrives whole, then the close.
 * One with an incomplete message at the end gets its complete replies, then the close. */
static void test_half_closed(void **state)
{
    enum { BIG = 8 << 20 };
    struct faults *f = begin(state, 60, __func__);
    struct hs_proc *srv = hs_ctx_start(&f->ctx, "127.0.0.1:0", 1, 0, "");
    const char *at = hs_addr(srv, 0);
    int base = -1;
    size_t req_len = 6 + BIG + SEPLEN + 5 + 4;
    char *req = malloc(req_len + 16);
    char *got = malloc(req_len + 16);
    assert_non_null(req);
    assert_non_null(got);
    /* "first" SEP, BIG bytes SEP, "last" SEP, then (client 1 only) "incom". */
    size_t off = 0;
    memcpy(req + off, "first" SEP, 9), off += 9;
    hs_fill_pattern(req + off, BIG, 6), off += BIG;
    memcpy(req + off, SEP, SEPLEN), off += SEPLEN;
    memcpy(req + off, "last" SEP, 8), off += 8;
    size_t replies = off;
    memcpy(req + off, "incom", 5);

    for (int v = 0; v < 2; v++) {
        int fd = hs_ctx_connect(&f->ctx, at, IO_MS);
        if (base < 0) {
            assert_int_equal(ping_n(fd, "warm up", 0, IO_MS), 0);
            base = hs_proc_fd_count(hs_pid(srv));
        }
        size_t len = replies + (v == 1 ? 5 : 0);
        if (hs_send_all(fd, req, len, 20000) < 0 || shutdown(fd, SHUT_WR) < 0) {
            free(req);
            free(got);
            HS_FAIL("client %d: cannot send %zu bytes and half-close: %s", v, len,
                    strerror(errno));
        }
        ssize_t n = recv_to_eof(fd, got, req_len + 16, 20000);
        bool same = n == (ssize_t)replies && memcmp(got, req, replies) == 0;
        if (!same) {
            free(req);
            free(got);
            HS_FAIL("client %d (%s): %zd bytes before the close (%s), expected the %zu bytes "
                    "of the complete replies", v, v ? "incomplete tail" : "complete messages",
                    n, n < 0 ? strerror(errno) : "then EOF", replies);
        }
        hs_ctx_untrack_close(&f->ctx, fd);
    }
    free(req);
    free(got);
    int after = fds_settle(srv, base - 1, SETTLE_MS);
    if (after != base - 1)
        HS_FAIL("the server holds %d fds after the half-closed clients left, %d before", after,
                base - 1);
    stop_ok(srv, "after half-closed clients");
}

/* ---- 7. Memory under 10,000 non-reading senders ------------------------------------------- */

/* The documented bound (README, echosrv(8)) of the memory a client that sends messages of at
 * most READ_BUF_SIZE bytes and never reads can make the server hold: the server stops reading
 * it once OUT_HIGH_WATER bytes are queued, so its output queue holds at most OUT_HIGH_WATER
 * plus the replies of the one read that crossed the mark, and its input buffer a partial
 * message plus one read; each is one allocation grown by doubling (at most twice what it
 * holds); plus the connection itself, its plugin state and the allocator's overhead. */
#define CONN_OVERHEAD (16 * 1024)
#define PER_CONN_BOUND (2L * (OUT_HIGH_WATER + READ_BUF_SIZE) + 2L * READ_BUF_SIZE + CONN_OVERHEAD)

/* 10,000 clients (fewer under sanitizers) each send 8 KiB messages as fast as the server takes
 * them and never read. They connect over a unix socket: the kernel then holds at most the
 * server's send buffer on the way back and the client's (small) send buffer on the way in, so
 * the server's own output queues fill after some 500 KiB per client, without the TCP buffers
 * of 10,000 loopback connections (which autotune to hundreds of KiB each and would press on
 * the machine-wide tcp_mem limit). Each client stops at CAP bytes, which only a server without
 * backpressure would take. At rest, every client must have bytes the server will not read
 * (SIOCOUTQ > 0 and unchanged: it stopped reading all of them), and the server's VmRSS must
 * stay under base + N * PER_CONN_BOUND all along. */
static void test_memory_nonreaders(void **state)
{
    enum { N = SANITIZED == 2 ? 500 : SANITIZED ? 2000 : 10000, MSG = 8192,
           CAP = 1 << 20 };
    struct faults *f = begin(state, 150, __func__);
    char sock_path[600], bind[620], extra[160];
    snprintf(sock_path, sizeof sock_path, "%s/mem.sock_path", f->ctx.dir);
    snprintf(bind, sizeof bind, "unix:%s", sock_path);
    snprintf(extra, sizeof extra, "backlog = 4096\nmax_connections = %d\n", N + 100);
    struct hs_proc *srv = hs_ctx_start(&f->ctx, bind, 1, N + 200, extra);
    const char *at = hs_addr(srv, 0);
    int warm = hs_ctx_connect(&f->ctx, at, IO_MS);
    assert_int_equal(ping_n(warm, "warm up", 0, IO_MS), 0);
    long rss0 = hs_proc_rss_kb(hs_pid(srv));
    assert_true(rss0 > 0);

    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    assert_true(strlen(sock_path) < sizeof sun.sun_path);
    strcpy(sun.sun_path, sock_path);
    char *msg = malloc(MSG);
    size_t *sent = calloc(N, sizeof *sent);
    int *idx = calloc(N, sizeof *idx);
    int *outq = calloc(N, sizeof *outq);
    if (msg == NULL || sent == NULL || idx == NULL || outq == NULL) {
        free(msg), free(sent), free(idx), free(outq);
        HS_FAIL("out of memory");
    }
    hs_fill_pattern(msg, MSG - SEPLEN, 77);
    memcpy(msg + MSG - SEPLEN, SEP, SEPLEN);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    assert_true(ep >= 0);
    track(f, ep);

    long t0 = hs_now_ms();
    char why[160] = "";
    int pending = 0;    /* connects refused for a full backlog, retried below */
    for (int i = 0; i < N && !why[0]; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int snd = 16384;
        idx[i] = track(f, fd);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd) < 0) {
            snprintf(why, sizeof why, "client #%d: %s", i, strerror(errno));
            break;
        }
        /* A unix connect fails with EAGAIN while the backlog is full: wait for accepts. */
        long until = hs_now_ms() + IO_MS;
        while (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
            if (errno != EAGAIN || hs_now_ms() > until) {
                snprintf(why, sizeof why, "client #%d: connect: %s", i, strerror(errno));
                break;
            }
            pending++;
            hs_sleep_ms(1);
        }
        struct epoll_event ev = { .events = EPOLLOUT | EPOLLET, .data.u32 = (uint32_t)i };
        if (!why[0] && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            snprintf(why, sizeof why, "epoll_ctl: %s", strerror(errno));
    }
    long t_conn = hs_now_ms() - t0;

    /* Send until every client is stopped (or reaches CAP); sample the server's RSS. Then the
     * clients are at rest when two readings of their unread bytes 500 ms apart agree. */
    size_t total = 0;
    long deadline = t0 + 100000;
    long rss_peak = rss0, next_sample = 0, last_progress = hs_now_ms();
    int capped = 0, paused = 0;
    bool rest = false;
    struct epoll_event evs[512];
    while (!why[0] && !rest && hs_now_ms() < deadline) {
        long now = hs_now_ms();
        if (now >= next_sample) {
            long r = hs_proc_rss_kb(hs_pid(srv));
            rss_peak = r > rss_peak ? r : rss_peak;
            next_sample = now + 250;
        }
        if (now - last_progress >= 500) {
            rest = true;
            paused = 0;
            for (int i = 0; i < N; i++) {
                int q = -1;
                ioctl(f->fds[idx[i]], SIOCOUTQ, &q);
                rest = rest && q == outq[i];
                paused += q > 0;
                outq[i] = q;
            }
            last_progress = hs_now_ms();
            continue;
        }
        int n = epoll_wait(ep, evs, 512, 100);
        for (int k = 0; k < n && !why[0]; k++) {
            int i = (int)evs[k].data.u32;
            int fd = f->fds[idx[i]];
            if (evs[k].events & (EPOLLERR | EPOLLHUP)) {
                snprintf(why, sizeof why, "client #%d: the server dropped it", i);
                break;
            }
            while (sent[i] < CAP) {
                size_t off = sent[i] % MSG;
                ssize_t w = send(fd, msg + off, MSG - off, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w <= 0) {
                    if (w < 0 && errno != EAGAIN && errno != EINTR)
                        snprintf(why, sizeof why, "client #%d: send: %s", i, strerror(errno));
                    break;
                }
                sent[i] += (size_t)w;
                total += (size_t)w;
                capped += sent[i] == CAP;
                last_progress = hs_now_ms();
                rest = false;
            }
        }
    }
    long t_rest = hs_now_ms() - t0;
    long rss1 = hs_proc_rss_kb(hs_pid(srv));
    rss_peak = rss1 > rss_peak ? rss1 : rss_peak;
    size_t smin = SIZE_MAX, smax = 0;
    for (int i = 0; i < N; i++) {
        smin = sent[i] < smin ? sent[i] : smin;
        smax = sent[i] > smax ? sent[i] : smax;
    }
    free(msg), free(sent), free(idx), free(outq);

    long bound = rss0 + (long)N * PER_CONN_BOUND / 1024;
    if (SANITIZED == 1)
        bound += 512 * 1024;    /* AddressSanitizer's quarantine of freed blocks and shadow */
    else if (SANITIZED == 2)
        bound += 4L * N * PER_CONN_BOUND / 1024; /* ThreadSanitizer's shadow: 4x */
    fprintf(stderr, "# %d clients connected in %ld ms (%d backlog waits); %zu MiB sent, "
            "%zu..%zu KiB each; at rest after %ld ms: the server stopped reading %d of them\n",
            N, t_conn, pending, total >> 20, smin >> 10, smax >> 10, t_rest, paused);
    fprintf(stderr, "# server VmRSS %ld KiB before, %ld KiB at rest, peak %ld KiB (%ld KiB per "
            "client); bound %ld KiB (%ld KiB per client)\n", rss0, rss1, rss_peak,
            (rss_peak - rss0) / N, bound, PER_CONN_BOUND / 1024);
    if (why[0])
        HS_FAIL("%s", why);
    if (!rest)
        HS_FAIL("the clients did not come to rest within 100 s");
    if (capped > 0 || paused < N)
        HS_FAIL("the server read everything from %d of %d clients that never read (%d sent "
                "%d KiB): it queued their replies past OUT_HIGH_WATER", N - paused, N, capped,
                CAP >> 10);
    if (rss_peak > bound)
        HS_FAIL("server VmRSS peaked at %ld KiB, over the bound %ld KiB", rss_peak, bound);
    /* All of them leave at once; the server gives everything back and serves again. */
    for (int i = 0; i < f->nfds; i++)
        if (f->fds[i] != ep)
            untrack_close(f, i);
    if (ping_n(warm, "after the non-readers", 0, 20000) < 0)
        HS_FAIL("the warm-up client was not served after the non-readers left");
    stop_ok(srv, "after the non-reading clients");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        FAULTS_TEST(test_emfile),
        FAULTS_TEST(test_read_timeout),
        FAULTS_TEST(test_slowloris),
        FAULTS_TEST(test_connect_flood),
        FAULTS_TEST(test_reset_after_data),
        FAULTS_TEST(test_rst_mid_reply),
        FAULTS_TEST(test_half_closed),
        FAULTS_TEST(test_memory_nonreaders),
    };

    if (hs_process_init() < 0)
        fprintf(stderr, "# could not raise RLIMIT_NOFILE or ignore SIGPIPE\n");
    return cmocka_run_group_tests_name("echosrv_faults", tests, NULL, NULL);
}
