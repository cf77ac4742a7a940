/* test_client.c - integration tests of libechoclient against the real echosrv and small fake servers. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "echosrv/client.h"
#include "harness.h"

#define SEP "\r\n\r\n"
#define SEPLEN 4
#ifndef TEST_BUDGET_S
#define TEST_BUDGET_S 20        /* SIGALRM backstop per test */
#endif
#define SLOW_MS 300             /* how long the fake server sits on a "slow" message */

#define assert_contains(hay, needle) check_contains((hay), (needle))

/* Fails the test unless HAY contains NEEDLE. */
static void check_contains(const char *hay, const char *needle)
{
    if (hay == NULL || strstr(hay, needle) == NULL)
        HS_FAIL("'%s' does not contain '%s'", hay ? hay : "(null)", needle);
}

/* Arms the test's SIGALRM backstop and returns its context. */
static struct hs_ctx *begin(void **state, const char *name)
{
    return hs_ctx_begin(state, TEST_BUDGET_S, name);
}

static struct hs_proc *start_default(struct hs_ctx *c)
{
    return hs_ctx_start(c, "127.0.0.1:0", 1, 0, "");
}

/* A client for ADDR; fails the test if es_client_new does. */
static es_client *client(const char *addr, unsigned pool, int full, int request_timeout_ms)
{
    es_client_options o;
    char err[256] = "";

    es_client_options_init(&o);
    o.pool_size = pool;
    o.full_response = full;
    o.request_timeout_ms = request_timeout_ms;
    o.connect_timeout_ms = 3000;
    es_client *cl = es_client_new(addr, &o, err, sizeof err);
    if (cl == NULL)
        HS_FAIL("es_client_new(%s): %s", addr, err);
    return cl;
}

/* Calls MSG (LEN bytes) and checks the reply is MSG. Returns the response if KEEP, else NULL. */
static es_response *call_ok_n(es_client *cl, const void *msg, size_t len, bool keep)
{
    es_response *r = NULL;
    char err[256] = "";
    size_t n = 0;

    int rc = es_client_call(cl, msg, len, &r, err, sizeof err);
    if (rc != 0)
        HS_FAIL("call of a %zu-byte message failed: %d %s", len, rc, err);
    assert_non_null(r);
    const uint8_t *d = es_response_data(r, &n);
    assert_int_equal(n, len);
    assert_memory_equal(d, msg, len);
    assert_int_equal(d[len], 0);
    if (!keep) {
        es_response_free(r);
        return NULL;
    }
    return r;
}

static es_response *call_ok(es_client *cl, const char *msg, bool keep)
{
    return call_ok_n(cl, msg, strlen(msg), keep);
}

/* Checks the counters of CL. */
static void check_stats(es_client *cl, unsigned pool, unsigned in_use, unsigned available,
                        uint64_t sessions, uint64_t requests)
{
    es_client_stats st;

    es_client_get_stats(cl, &st);
    if (st.pool_size != pool || st.in_use != in_use || st.available != available ||
        st.sessions != sessions || st.requests_processed != requests)
        HS_FAIL("stats: pool_size %u in_use %u available %u sessions %llu requests %llu; "
                "expected %u %u %u %llu %llu",
                st.pool_size, st.in_use, st.available, (unsigned long long)st.sessions,
                (unsigned long long)st.requests_processed, pool, in_use, available,
                (unsigned long long)sessions, (unsigned long long)requests);
}

/* Waits for F (at most 10 s) and checks that its reply is MSG. Frees F. */
static void future_ok(es_future *f, const char *msg)
{
    es_response *r = NULL;
    char err[256] = "";
    size_t n = 0;

    assert_non_null(f);
    assert_int_equal(es_future_wait(f, 10000), 0);
    int rc = es_future_result(f, &r, err, sizeof err);
    if (rc != 0)
        HS_FAIL("future of '%s' failed: %d %s", msg, rc, err);
    const uint8_t *d = es_response_data(r, &n);
    assert_int_equal(n, strlen(msg));
    assert_memory_equal(d, msg, n);
    es_response_free(r);
    es_future_free(f);
}

/* Waits for F (at most 10 s), checks it failed with RC, and copies its message to ERR. */
static void future_err(es_future *f, int want, char *err, size_t errlen)
{
    es_response *r = NULL;

    assert_non_null(f);
    assert_int_equal(es_future_wait(f, 10000), 0);
    int rc = es_future_result(f, &r, err, errlen);
    if (rc != want)
        HS_FAIL("future: expected %d (%s), got %d (%s)", want, strerror(-want), rc,
                rc ? err : "success");
    assert_null(r);
    es_future_free(f);
}

/* "127.0.0.1:PORT" (or "[::1]:PORT") of a socket address, as the library formats it. */
static void format_in(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN];

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        snprintf(out, cap, "%s:%u", host, ntohs(s4->sin_port));
    } else {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        snprintf(out, cap, "[%s]:%u", host, ntohs(s6->sin6_port));
    }
}

/* Parses "A.B.C.D:PORT" back: true if it is an IPv4 address and a non-zero port. */
static bool parses_back(const char *text)
{
    char host[64];
    struct in_addr a;
    const char *colon = strrchr(text, ':');

    if (colon == NULL || (size_t)(colon - text) >= sizeof host)
        return false;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    long port = strtol(colon + 1, NULL, 10);
    return inet_pton(AF_INET, host, &a) == 1 && port > 0 && port < 65536;
}

/* A listening socket on 127.0.0.1 that never accepts nor reads: connections succeed (the
 * kernel completes them) and requests are never answered. Address in OUT. */
static int silent_listener(char *out, size_t cap, int backlog)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    socklen_t len = sizeof *s4;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&ss, 0, sizeof ss);
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)s4, len), 0);
    assert_int_equal(listen(fd, backlog), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    format_in(&ss, out, cap);
    return fd;
}

/* A 127.0.0.1 port nobody listens on (bound, then closed). */
static void closed_port(char *out, size_t cap)
{
    int fd = silent_listener(out, cap, 1);
    close(fd);
}

/* ---- a fake server, one connection at a time, on its own thread ---------------------- */

enum fake_mode {
    FAKE_ECHO,          /* echo every frame; "slow..." frames after SLOW_MS */
    FAKE_HALF_FIRST,    /* first connection: read a frame, send half the echo, close */
    FAKE_CLOSE_FIRST,   /* first connection: echo one frame, then close it */
    FAKE_LONG,          /* answer every frame with 200 bytes and no separator */
};

struct fake {
    enum fake_mode mode;
    int lfd;
    int stop;                   /* eventfd */
    pthread_t th;
    char addr[64];
    pthread_mutex_t mu;
    int naccepted;              /* under mu */
    char peers[8][64];          /* client addresses as accepted; under mu */
    atomic_int first_closed;
};

/* Waits for FD to be readable, or for the stop eventfd. Returns 1 readable, 0 stop/timeout. */
static int fake_wait(struct fake *fk, int fd, int ms)
{
    struct pollfd p[2] = { { fd, POLLIN, 0 }, { fk->stop, POLLIN, 0 } };
    int n = poll(p, 2, ms);

    return n > 0 && !(p[1].revents & POLLIN) && (p[0].revents & (POLLIN | POLLHUP | POLLERR));
}

/* Sleeps MS milliseconds unless told to stop. Returns 1 if told to stop. */
static int fake_sleep(struct fake *fk, int ms)
{
    struct pollfd p = { fk->stop, POLLIN, 0 };

    return poll(&p, 1, ms) > 0;
}

/* Reads one frame into BUF (which must be empty at first). Returns its length, or -1 on EOF,
 * error, stop or timeout. */
static ssize_t fake_frame(struct fake *fk, int fd, char *buf, size_t cap)
{
    size_t len = 0;

    for (;;) {
        char *hit = len >= SEPLEN ? memmem(buf, len, SEP, SEPLEN) : NULL;
        if (hit != NULL)
            return hit - buf + SEPLEN;
        if (len == cap || !fake_wait(fk, fd, 10000))
            return -1;
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0)
            return -1;
        len += (size_t)n;
    }
}

static void fake_send(int fd, const void *p, size_t len)
{
    (void)hs_send_all(fd, p, len, 5000);
}

static void fake_serve(struct fake *fk, int fd, int index)
{
    size_t cap = 1 << 16;
    char *buf = malloc(cap);
    ssize_t n;

    if (buf == NULL)
        return;
    bool special = index == 0 && (fk->mode == FAKE_HALF_FIRST || fk->mode == FAKE_CLOSE_FIRST);
    while ((n = fake_frame(fk, fd, buf, cap)) > 0) {
        if (fk->mode == FAKE_LONG) {
            char x[200];
            memset(x, 'x', sizeof x);
            fake_send(fd, x, sizeof x);
            continue;
        }
        if (special && fk->mode == FAKE_HALF_FIRST) {
            fake_send(fd, buf, (size_t)n / 2);
            break;
        }
        if (n >= 4 && memcmp(buf, "slow", 4) == 0 && fake_sleep(fk, SLOW_MS))
            break;
        fake_send(fd, buf, (size_t)n);
        if (special && fk->mode == FAKE_CLOSE_FIRST) {
            hs_sleep_ms(20);
            break;
        }
    }
    free(buf);
}

static void *fake_main(void *arg)
{
    struct fake *fk = arg;

    for (int index = 0;; index++) {
        if (!fake_wait(fk, fk->lfd, -1))
            break;
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(fk->lfd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&fk->mu);
        if (fk->naccepted < 8)
            format_in(&ss, fk->peers[fk->naccepted], sizeof fk->peers[0]);
        fk->naccepted++;
        pthread_mutex_unlock(&fk->mu);
        fake_serve(fk, fd, index);
        close(fd);
        if (index == 0)
            atomic_store(&fk->first_closed, 1);
    }
    return NULL;
}

static struct fake *fake_start(enum fake_mode mode)
{
    struct fake *fk = calloc(1, sizeof *fk);

    assert_non_null(fk);
    fk->mode = mode;
    fk->lfd = silent_listener(fk->addr, sizeof fk->addr, 16);
    fk->stop = eventfd(0, EFD_CLOEXEC);
    assert_true(fk->stop >= 0);
    pthread_mutex_init(&fk->mu, NULL);
    assert_int_equal(pthread_create(&fk->th, NULL, fake_main, fk), 0);
    return fk;
}

static void fake_stop(struct fake *fk)
{
    uint64_t one = 1;

    assert_int_equal(write(fk->stop, &one, sizeof one), (ssize_t)sizeof one);
    pthread_join(fk->th, NULL);
    close(fk->lfd);
    close(fk->stop);
    pthread_mutex_destroy(&fk->mu);
    free(fk);
}

/* ---- the tests ----------------------------------------------------------------------- */

/* 1. pulsar's test_connection_pool, step by step, with pool_size = 2. */
static void test_connection_pool(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c);
    es_client *cl = client(hs_addr(srv, 0), 2, 1, 30000);
    es_response *r;

    check_stats(cl, 2, 0, 0, 0, 0);

    /* One call: the reply is the message; one connection, now idle. */
    call_ok(cl, "Hello!", false);
    check_stats(cl, 2, 0, 1, 1, 1);

    /* A second call reuses it. */
    call_ok(cl, "Hello again!", false);
    check_stats(cl, 2, 0, 1, 1, 2);

    /* Three concurrent calls (queued together, as pulsar's gather() does before its loop
     * runs): a second connection opens, the third call waits. */
    es_future *f[3];
    const void *batch1[3] = {"one", "two", "three"}, *batch2[3] = {"four", "five", "six"};
    const size_t lens1[3] = {3, 3, 5}, lens2[3] = {4, 4, 3};
    assert_int_equal(es_client_submit_many(cl, 3, batch1, lens1, f), 0);
    es_response *keep = NULL;
    for (int i = 0; i < 3; i++) {
        assert_non_null(f[i]);
        assert_int_equal(es_future_wait(f[i], 10000), 0);
    }
    future_ok(f[0], "one");
    future_ok(f[1], "two");
    assert_int_equal(es_future_result(f[2], &keep, NULL, 0), 0);
    assert_non_null(keep);
    es_future_free(f[2]);
    check_stats(cl, 2, 0, 2, 2, 5);

    /* Drop one pooled connection: it is never handed out again. */
    assert_int_equal(es_response_close_connection(keep), 0);
    check_stats(cl, 2, 0, 1, 2, 5);

    /* Three concurrent calls: a new connection replaces the dropped one. */
    assert_int_equal(es_client_submit_many(cl, 3, batch2, lens2, f), 0);
    future_ok(f[0], "four");
    future_ok(f[1], "five");
    future_ok(f[2], "six");
    check_stats(cl, 2, 0, 2, 3, 8);

    /* Close empties the pool; the counters of the past stay. */
    es_client_close(cl);
    check_stats(cl, 2, 0, 0, 3, 8);

    /* The client stays usable. */
    r = call_ok(cl, "after close", true);
    assert_int_equal(es_response_connection(r), 4);
    es_response_free(r);
    check_stats(cl, 2, 0, 1, 4, 9);
    es_response_free(keep);
    es_client_free(cl);
}

/* 2. Ping, a binary message with NUL bytes, and what a response holds without full_response. */
static void test_ping(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c);
    es_client *cl = client(hs_addr(srv, 0), 10, 0, 30000);
    static const char bin[] = "a\0b\r\n\0\r";

    es_response *r = call_ok(cl, "ping", true);
    assert_int_equal(es_response_connection(r), 0);
    assert_null(es_response_local(r));
    assert_null(es_response_peer(r));
    es_timings t = es_response_timings(r);
    assert_int_equal(t.submitted, 0);
    assert_int_equal(t.sent, 0);
    assert_int_equal(t.done, 0);
    assert_int_equal(es_response_close_connection(r), -EINVAL);
    es_response_free(r);

    call_ok_n(cl, bin, sizeof bin - 1, false);
    call_ok_n(cl, "", 0, false);
    check_stats(cl, 10, 0, 1, 1, 3);

    /* NULL out drops the reply; NULL err is allowed. */
    assert_int_equal(es_client_call(cl, "x", 1, NULL, NULL, 0), 0);
    es_client_free(cl);
}

/* 3. A 3 MiB message comes back byte for byte, on the same connection as a small one. */
static void test_large_message(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c);
    es_client *cl = client(hs_addr(srv, 0), 2, 0, 30000);
    size_t len = 3u << 20;
    char *msg = malloc(len);

    assert_non_null(msg);
    hs_fill_pattern(msg, len, 7);
    call_ok(cl, "small", false);
    call_ok_n(cl, msg, len, false);
    call_ok(cl, "small again", false);
    check_stats(cl, 2, 0, 1, 1, 3);
    free(msg);
    es_client_free(cl);
}

/* 4. 100 futures at once over a pool of 4: every reply right, never more than 4 connections. */
static void test_concurrent_futures(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c);
    es_client *cl = client(hs_addr(srv, 0), 4, 0, 30000);
    es_future *f[100];
    char msg[100][64];
    es_client_stats st;

    for (int i = 0; i < 100; i++) {
        int n = snprintf(msg[i], sizeof msg[i], "message %d ", i);
        hs_fill_pattern(msg[i] + n, (size_t)(i % 40), (unsigned)i);
        msg[i][n + i % 40] = '\0';
        f[i] = es_client_submit(cl, msg[i], strlen(msg[i]));
        assert_non_null(f[i]);
    }
    es_client_get_stats(cl, &st);
    assert_true(st.in_use + st.available <= 4);
    for (int i = 0; i < 100; i++)
        future_ok(f[i], msg[i]);
    es_client_get_stats(cl, &st);
    if (st.sessions < 1 || st.sessions > 4)
        HS_FAIL("%llu sessions for a pool of 4", (unsigned long long)st.sessions);
    assert_int_equal(st.requests_processed, 100);
    assert_int_equal(st.in_use, 0);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(st.available, st.sessions);
    es_client_free(cl);
}

/* 5. Requests beyond the pool wait in submission order: with one connection, each is sent
 * after the previous reply, in order. */
static void test_fifo(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c);
    es_client *cl = client(hs_addr(srv, 0), 1, 1, 30000);
    es_future *f[20];
    es_timings t[20];

    for (int i = 0; i < 20; i++) {
        char msg[16];
        snprintf(msg, sizeof msg, "fifo %d", i);
        f[i] = es_client_submit(cl, msg, strlen(msg));
        assert_non_null(f[i]);
    }
    for (int i = 0; i < 20; i++) {
        es_response *r = NULL;
        assert_int_equal(es_future_wait(f[i], 10000), 0);
        assert_int_equal(es_future_result(f[i], &r, NULL, 0), 0);
        t[i] = es_response_timings(r);
        assert_int_equal(es_response_connection(r), 1);
        es_response_free(r);
        es_future_free(f[i]);
    }
    for (int i = 1; i < 20; i++)
        if (t[i].sent < t[i - 1].done || t[i].submitted < t[i - 1].submitted)
            HS_FAIL("request %d was sent before request %d was answered", i, i - 1);
    es_client_free(cl);
}

struct cb_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int count;
    int bad;
    int on_main;                /* callbacks run at once by es_future_on_done */
    pthread_t main;
    es_client *cl;
    es_future *chained;
};

static void cb_count(es_future *f, void *arg)
{
    struct cb_state *s = arg;
    es_response *r = NULL;
    size_t n = 0;

    int rc = es_future_result(f, &r, NULL, 0);
    pthread_mutex_lock(&s->mu);
    if (pthread_equal(pthread_self(), s->main))
        s->on_main++;
    if (rc != 0 || r == NULL)
        s->bad++;
    else {
        const uint8_t *d = es_response_data(r, &n);
        if (n < 3 || memcmp(d, "cb-", 3) != 0)
            s->bad++;
    }
    s->count++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    es_response_free(r);
    es_future_free(f);      /* a callback may free its own future */
}

/* Submits a follow-up request from the I/O thread, with a callback of its own. */
static void cb_chain(es_future *f, void *arg)
{
    struct cb_state *s = arg;
    es_future *g = es_client_submit(s->cl, "cb-chained", 10);

    es_future_free(f);
    if (g == NULL || es_future_on_done(g, cb_count, s) != 0) {
        pthread_mutex_lock(&s->mu);
        s->bad++;
        pthread_mutex_unlock(&s->mu);
    }
}

static void cb_never(es_future *f, void *arg)
{
    (void)f;
    atomic_fetch_add((atomic_int *)arg, 1);
}

/* Frees the client from its own I/O thread. */
/* For cb_free_client: the client to free, and the I/O thread's id once it ran. */
struct free_from_cb {
    es_client *cl;
    atomic_int tid;
};

static void cb_free_client(es_future *f, void *arg)
{
    struct free_from_cb *x = arg;
    (void)f;
    atomic_store(&x->tid, (int)syscall(SYS_gettid));
    es_client_free(x->cl);
}

static void cb_here(es_future *f, void *arg)
{
    (void)f;
    *(pthread_t *)arg = pthread_self();
}

/* Waits until S counts WANT callbacks (at most 10 s). */
static void wait_count(struct cb_state *s, int want)
{
    long deadline = hs_now_ms() + 10000;

    pthread_mutex_lock(&s->mu);
    while (s->count < want && hs_now_ms() < deadline) {
        pthread_mutex_unlock(&s->mu);
        hs_sleep_ms(5);
        pthread_mutex_lock(&s->mu);
    }
    int count = s->count, bad = s->bad;
    pthread_mutex_unlock(&s->mu);
    if (count != want || bad != 0)
        HS_FAIL("%d callbacks (expected %d), %d wrong", count, want, bad);
}

/* 6. Callbacks: run on the I/O thread, or at once if done; one per future; chained requests;
 * none after es_future_free. */
static void test_callbacks(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c);
    es_client *cl = client(hs_addr(srv, 0), 2, 0, 30000);
    struct cb_state s = { .main = pthread_self(), .cl = cl };

    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    for (int i = 0; i < 50; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "cb-%d", i);
        es_future *f = es_client_submit(cl, msg, strlen(msg));
        assert_non_null(f);
        assert_int_equal(es_future_on_done(f, cb_count, &s), 0);
    }
    wait_count(&s, 50);
    if (s.on_main > 10)
        HS_FAIL("%d of 50 callbacks ran on the submitting thread, not on the I/O thread",
                s.on_main);

    /* A callback that submits another request. */
    es_future *f = es_client_submit(cl, "cb-first", 8);
    assert_int_equal(es_future_on_done(f, cb_chain, &s), 0);
    wait_count(&s, 51);

    /* Done already: the callback runs at once, here; a second one is refused. */
    f = es_client_submit(cl, "cb-done", 7);
    assert_int_equal(es_future_wait(f, 10000), 0);
    assert_true(es_future_done(f));
    pthread_t where;
    memset(&where, 0, sizeof where);
    assert_int_equal(es_future_on_done(f, cb_here, &where), 0);
    assert_true(pthread_equal(where, pthread_self()));
    assert_int_equal(es_future_on_done(f, cb_here, &where), -EBUSY);
    future_ok(f, "cb-done");
    es_client_free(cl);

    /* Freed before done: its callback never runs (the request is cancelled later). */
    char silent_addr[64];
    atomic_int never = 0;
    int sfd = silent_listener(silent_addr, sizeof silent_addr, 16);
    cl = client(silent_addr, 1, 0, 30000);
    f = es_client_submit(cl, "never answered", 14);
    assert_int_equal(es_future_on_done(f, cb_never, &never), 0);
    es_future_free(f);
    es_client_free(cl);
    assert_int_equal(atomic_load(&never), 0);
    close(sfd);

    /* A callback may free the client: the I/O thread ends once the callback returns. The
     * request times out on the I/O thread, well after the callback is set. */
    sfd = silent_listener(silent_addr, sizeof silent_addr, 16);
    cl = client(silent_addr, 1, 0, 200);
    struct free_from_cb x = {.cl = cl};
    f = es_client_submit(cl, "free from a callback", 20);
    assert_int_equal(es_future_on_done(f, cb_free_client, &x), 0);
    assert_int_equal(es_future_wait(f, 10000), 0);
    assert_int_equal(es_future_result(f, NULL, NULL, 0), -ETIMEDOUT);
    /* The I/O thread itself must end: wait for its /proc entry to go (a thread count would
     * also see unrelated threads that are still being reaped). */
    long deadline = hs_now_ms() + 5000;
    while (atomic_load(&x.tid) == 0 && hs_now_ms() < deadline)
        hs_sleep_ms(2);
    assert_true(atomic_load(&x.tid) != 0);
    char task[64];
    snprintf(task, sizeof task, "/proc/self/task/%d", atomic_load(&x.tid));
    while (access(task, F_OK) == 0 && hs_now_ms() < deadline)
        hs_sleep_ms(2);
    if (access(task, F_OK) == 0)
        HS_FAIL("the client's I/O thread %d still runs 5 s after a callback freed the client",
                atomic_load(&x.tid));
    close(sfd);
    es_future_free(f);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
}

/* 7. full_response: connection numbers, addresses that match the server's view, timings,
 * and es_response_close_connection on an idle and on a busy connection. */
static void test_full_response(void **state)
{
    (void)begin(state, __func__);
    struct fake *fk = fake_start(FAKE_ECHO);
    es_client *cl = client(fk->addr, 2, 1, 30000);

    es_response *r1 = call_ok(cl, "one", true);
    assert_int_equal(es_response_connection(r1), 1);
    assert_string_equal(es_response_peer(r1), fk->addr);
    assert_true(parses_back(es_response_local(r1)));
    pthread_mutex_lock(&fk->mu);
    assert_int_equal(fk->naccepted, 1);
    assert_string_equal(es_response_local(r1), fk->peers[0]);
    pthread_mutex_unlock(&fk->mu);
    es_timings t = es_response_timings(r1);
    assert_true(t.submitted > 0);
    assert_true(t.submitted <= t.sent);
    assert_true(t.sent <= t.done);

    es_response *r2 = call_ok(cl, "two", true);
    assert_int_equal(es_response_connection(r2), 1);
    assert_string_equal(es_response_local(r2), es_response_local(r1));

    /* Closing the idle connection: the next call opens connection 2. */
    assert_int_equal(es_response_close_connection(r1), 0);
    check_stats(cl, 2, 0, 0, 1, 2);
    assert_int_equal(es_response_close_connection(r2), 0);  /* gone already: nothing */
    es_response *r3 = call_ok(cl, "three", true);
    assert_int_equal(es_response_connection(r3), 2);
    assert_string_not_equal(es_response_local(r3), es_response_local(r1));
    pthread_mutex_lock(&fk->mu);
    assert_int_equal(fk->naccepted, 2);
    assert_string_equal(es_response_local(r3), fk->peers[1]);
    pthread_mutex_unlock(&fk->mu);

    /* Closing a busy connection: it finishes its request, then closes. */
    es_future *f = es_client_submit(cl, "slow busy", 9);
    es_client_stats st;
    long deadline = hs_now_ms() + 5000;
    do {
        es_client_get_stats(cl, &st);
    } while (st.in_use != 1 && hs_now_ms() < deadline);
    assert_int_equal(st.in_use, 1);
    assert_int_equal(es_response_close_connection(r3), 0);
    future_ok(f, "slow busy");
    check_stats(cl, 2, 0, 0, 2, 4);
    es_response *r4 = call_ok(cl, "four", true);
    assert_int_equal(es_response_connection(r4), 3);

    /* After es_client_free, responses stay valid and closing does nothing. */
    es_client_free(cl);
    assert_int_equal(es_response_close_connection(r4), 0);
    assert_string_equal(es_response_peer(r4), fk->addr);
    es_response_free(r1);
    es_response_free(r2);
    es_response_free(r3);
    es_response_free(r4);
    fake_stop(fk);
}

/* 8. A server that never answers: -ETIMEDOUT within the bound, the connection discarded. */
static void test_request_timeout(void **state)
{
    (void)begin(state, __func__);
    char addr[64];
    char err[256] = "";
    int sfd = silent_listener(addr, sizeof addr, 16);
    es_client *cl = client(addr, 2, 0, 300);
    es_response *r = NULL;

    long t0 = hs_now_ms();
    int rc = es_client_call(cl, "hello", 5, &r, err, sizeof err);
    long took = hs_now_ms() - t0;
    assert_int_equal(rc, -ETIMEDOUT);
    assert_null(r);
    assert_contains(err, addr);
    assert_contains(err, "no reply within 300 ms");
    if (took < 280 || took > 3000)
        HS_FAIL("timed out after %ld ms (timeout 300 ms)", took);
    check_stats(cl, 2, 0, 0, 1, 0);
    es_client_free(cl);
    close(sfd);
}

/* 9. Connecting to a closed port: -ECONNREFUSED naming the address, for every request. */
static void test_connect_refused(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    char addr[64];
    char err[256] = "";
    char unix_addr[300];
    es_future *f[5];

    closed_port(addr, sizeof addr);
    es_client *cl = client(addr, 2, 0, 30000);
    assert_int_equal(es_client_call(cl, "hello", 5, NULL, err, sizeof err), -ECONNREFUSED);
    assert_contains(err, "cannot connect to");
    assert_contains(err, addr);
    for (int i = 0; i < 5; i++)
        f[i] = es_client_submit(cl, "hello", 5);
    for (int i = 0; i < 5; i++) {
        future_err(f[i], -ECONNREFUSED, err, sizeof err);
        assert_contains(err, addr);
    }
    check_stats(cl, 2, 0, 0, 0, 0);
    es_client_free(cl);

    /* A unix socket path nobody listens on. */
    snprintf(unix_addr, sizeof unix_addr, "unix:%s/nobody.sock", c->dir);
    cl = client(unix_addr, 1, 0, 30000);
    int rc = es_client_call(cl, "hello", 5, NULL, err, sizeof err);
    if (rc != -ENOENT && rc != -ECONNREFUSED)
        HS_FAIL("unix connect to nothing: %d %s", rc, err);
    assert_contains(err, unix_addr);
    es_client_free(cl);
}

/* 10. A connection attempt that gets no answer: -ETIMEDOUT after connect_timeout_ms. */
static void test_connect_timeout(void **state)
{
    (void)begin(state, __func__);
    char addr[64];
    char err[256] = "";
    es_client_options o;
    int fill[4];
    int nfill = 0;
    int sfd = silent_listener(addr, sizeof addr, 0);

    /* Fill the accept queue: the kernel then drops further SYNs. */
    for (int i = 0; i < 4; i++) {
        fill[nfill] = hs_connect_nb(addr);
        if (fill[nfill] >= 0)
            nfill++;
    }
    hs_sleep_ms(50);
    es_client_options_init(&o);
    o.pool_size = 1;
    o.connect_timeout_ms = 300;
    es_client *cl = es_client_new(addr, &o, err, sizeof err);
    assert_non_null(cl);
    long t0 = hs_now_ms();
    int rc = es_client_call(cl, "hello", 5, NULL, err, sizeof err);
    long took = hs_now_ms() - t0;
    assert_int_equal(rc, -ETIMEDOUT);
    assert_contains(err, "cannot connect to");
    assert_contains(err, addr);
    if (took < 280 || took > 3000)
        HS_FAIL("connect timed out after %ld ms (timeout 300 ms)", took);
    check_stats(cl, 1, 0, 0, 0, 0);
    es_client_free(cl);
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    close(sfd);
}

/* 11. The server closes mid-reply: an error, not retried; the next call opens a new session. */
static void test_mid_reply(void **state)
{
    (void)begin(state, __func__);
    struct fake *fk = fake_start(FAKE_HALF_FIRST);
    es_client *cl = client(fk->addr, 1, 0, 30000);
    char err[256] = "";

    int rc = es_client_call(cl, "a message cut in half", 21, NULL, err, sizeof err);
    if (rc != -ECONNRESET && rc != -EPIPE)
        HS_FAIL("expected -ECONNRESET or -EPIPE, got %d (%s)", rc, err);
    assert_contains(err, "closed the connection mid-reply");
    assert_contains(err, fk->addr);
    check_stats(cl, 1, 0, 0, 1, 0);
    call_ok(cl, "next", false);
    check_stats(cl, 1, 0, 1, 2, 1);
    pthread_mutex_lock(&fk->mu);
    assert_int_equal(fk->naccepted, 2);     /* the failed request was not sent again */
    pthread_mutex_unlock(&fk->mu);
    es_client_free(cl);
    fake_stop(fk);
}

/* 12. QUIT is echoed; its connection is discarded (even by a server that keeps it open); the
 * next call opens a new one. */
static void test_quit(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c);
    es_client *cl = client(hs_addr(srv, 0), 2, 1, 30000);

    es_response *r = call_ok(cl, "QUIT", true);
    assert_int_equal(es_response_connection(r), 1);
    es_response_free(r);
    check_stats(cl, 2, 0, 0, 1, 1);
    r = call_ok(cl, "after QUIT", true);
    assert_int_equal(es_response_connection(r), 2);
    es_response_free(r);
    check_stats(cl, 2, 0, 1, 2, 2);
    es_client_free(cl);

    /* The client does not wait for the server's close to drop the connection. */
    struct fake *fk = fake_start(FAKE_ECHO);
    cl = client(fk->addr, 1, 1, 30000);
    call_ok(cl, "QUIT", false);
    check_stats(cl, 1, 0, 0, 1, 1);
    r = call_ok(cl, "after QUIT", true);
    assert_int_equal(es_response_connection(r), 2);
    es_response_free(r);
    pthread_mutex_lock(&fk->mu);
    assert_int_equal(fk->naccepted, 2);
    pthread_mutex_unlock(&fk->mu);
    es_client_free(cl);
    fake_stop(fk);
}

struct stale_state {
    struct fake *fk;
    es_client *cl;
    atomic_int ready;
    es_future *second;
};

/* Runs on the I/O thread once the first reply is in: waits until the server has closed that
 * (now idle) connection and submits the next request before the loop can see the close. */
static void cb_submit_after_close(es_future *f, void *arg)
{
    struct stale_state *s = arg;
    long deadline = hs_now_ms() + 5000;

    while (!atomic_load(&s->fk->first_closed) && hs_now_ms() < deadline)
        hs_sleep_ms(1);
    hs_sleep_ms(20);            /* let the FIN arrive */
    s->second = es_client_submit(s->cl, "second", 6);
    atomic_store(&s->ready, 1);
    (void)f;
}

/* 13. The server closes an idle pooled connection: it is never handed out again, whether the
 * I/O thread has seen the close (EPOLLRDHUP) or not yet (checked before handing it out). */
static void test_server_closed_idle(void **state)
{
    (void)begin(state, __func__);
    struct fake *fk = fake_start(FAKE_CLOSE_FIRST);
    es_client *cl = client(fk->addr, 1, 1, 30000);

    call_ok(cl, "first", false);
    long deadline = hs_now_ms() + 5000;
    while (!atomic_load(&fk->first_closed) && hs_now_ms() < deadline)
        hs_sleep_ms(1);
    assert_true(atomic_load(&fk->first_closed));
    hs_sleep_ms(20);
    es_response *r = call_ok(cl, "second", true);
    assert_int_equal(es_response_connection(r), 2);
    es_response_free(r);
    check_stats(cl, 1, 0, 1, 2, 2);
    es_client_free(cl);
    fake_stop(fk);

    /* The close arrives while the I/O thread is busy (in a callback): the next request is
     * dispatched before epoll reports the close. */
    struct stale_state s = { .fk = fake_start(FAKE_CLOSE_FIRST) };
    s.cl = cl = client(s.fk->addr, 1, 1, 30000);
    es_future *f = es_client_submit(cl, "first", 5);
    assert_int_equal(es_future_on_done(f, cb_submit_after_close, &s), 0);
    deadline = hs_now_ms() + 10000;
    while (!atomic_load(&s.ready) && hs_now_ms() < deadline)
        hs_sleep_ms(1);
    assert_true(atomic_load(&s.ready));
    future_ok(f, "first");
    assert_non_null(s.second);
    assert_int_equal(es_future_wait(s.second, 10000), 0);
    char err[256] = "";
    if (es_future_result(s.second, &r, err, sizeof err) != 0)
        HS_FAIL("the request after the server closed the idle connection failed: %s", err);
    assert_int_equal(es_response_connection(r), 2);
    es_response_free(r);
    es_future_free(s.second);
    es_client_free(cl);
    fake_stop(s.fk);
}

struct worker {
    es_client *cl;
    int id;
    int bad;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    for (int i = 0; i < 200; i++) {
        char msg[64];
        es_response *r = NULL;
        size_t n = 0;
        int len = snprintf(msg, sizeof msg, "thread %d call %d", w->id, i);
        if (es_client_call(w->cl, msg, (size_t)len, &r, NULL, 0) != 0) {
            w->bad++;
            continue;
        }
        const uint8_t *d = es_response_data(r, &n);
        if (n != (size_t)len || memcmp(d, msg, n) != 0)
            w->bad++;
        es_response_free(r);
    }
    return NULL;
}

/* 14. 8 threads x 200 blocking calls over a pool of 4. */
static void test_threads(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c);
    es_client *cl = client(hs_addr(srv, 0), 4, 0, 30000);
    pthread_t th[8];
    struct worker w[8];
    es_client_stats st;

    for (int i = 0; i < 8; i++) {
        w[i] = (struct worker){ .cl = cl, .id = i };
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        if (w[i].bad != 0)
            HS_FAIL("thread %d: %d wrong replies", i, w[i].bad);
    }
    es_client_get_stats(cl, &st);
    assert_int_equal(st.requests_processed, 1600);
    if (st.sessions < 1 || st.sessions > 4)
        HS_FAIL("%llu sessions for a pool of 4", (unsigned long long)st.sessions);
    assert_int_equal(st.in_use, 0);
    assert_int_equal(st.waiting, 0);
    es_client_free(cl);
}

/* 15. A unix socket address, with full_response. */
static void test_unix_socket(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    char bind[300];
    es_future *f[10];
    char msg[10][16];

    snprintf(bind, sizeof bind, "unix:%s/echo.sock", c->dir);
    struct hs_proc *srv = hs_ctx_start(c, bind, 1, 0, "");
    assert_string_equal(hs_addr(srv, 0), bind);
    es_client *cl = client(bind, 3, 1, 30000);
    es_response *r = call_ok(cl, "over a unix socket", true);
    assert_string_equal(es_response_peer(r), bind);
    assert_contains(es_response_local(r), "unix:");
    assert_int_equal(es_response_connection(r), 1);
    es_response_free(r);
    for (int i = 0; i < 10; i++) {
        snprintf(msg[i], sizeof msg[i], "unix %d", i);
        f[i] = es_client_submit(cl, msg[i], strlen(msg[i]));
    }
    for (int i = 0; i < 10; i++)
        future_ok(f[i], msg[i]);
    es_client_stats st;
    es_client_get_stats(cl, &st);
    assert_true(st.sessions >= 1 && st.sessions <= 3);
    assert_int_equal(st.requests_processed, 11);
    es_client_free(cl);
}

/* 16. es_future_wait with a timeout on a slow request: -ETIMEDOUT, and the request goes on. */
static void test_future_wait_timeout(void **state)
{
    (void)begin(state, __func__);
    struct fake *fk = fake_start(FAKE_ECHO);
    es_client *cl = client(fk->addr, 1, 0, 30000);
    char err[256] = "";
    es_response *r = NULL;

    es_future *f = es_client_submit(cl, "slow request", 12);
    long t0 = hs_now_ms();
    assert_int_equal(es_future_wait(f, 50), -ETIMEDOUT);
    long took = hs_now_ms() - t0;
    if (took < 45 || took >= SLOW_MS)
        HS_FAIL("es_future_wait(50) returned after %ld ms", took);
    assert_false(es_future_done(f));
    assert_int_equal(es_future_result(f, &r, err, sizeof err), -EAGAIN);
    assert_null(r);
    assert_int_equal(es_future_wait(f, 0), -ETIMEDOUT);
    future_ok(f, "slow request");
    es_client_free(cl);
    fake_stop(fk);
}

/* 17. es_client_close cancels what is queued and in flight; the client stays usable. */
static void test_close_cancels(void **state)
{
    (void)begin(state, __func__);
    char addr[64];
    char err[256] = "";
    int sfd = silent_listener(addr, sizeof addr, 16);
    es_client *cl = client(addr, 2, 0, 30000);
    es_future *f[5];
    es_client_stats st;

    for (int i = 0; i < 5; i++)
        f[i] = es_client_submit(cl, "never answered", 14);
    long deadline = hs_now_ms() + 5000;
    do {
        es_client_get_stats(cl, &st);
    } while ((st.in_use != 2 || st.waiting != 3) && hs_now_ms() < deadline);
    assert_int_equal(st.in_use, 2);
    assert_int_equal(st.waiting, 3);
    es_client_close(cl);
    for (int i = 0; i < 5; i++) {
        assert_true(es_future_done(f[i]));      /* done by the time close returns */
        future_err(f[i], -ECANCELED, err, sizeof err);
        assert_contains(err, "cancelled");
    }
    es_client_get_stats(cl, &st);
    assert_int_equal(st.in_use, 0);
    assert_int_equal(st.available, 0);
    assert_int_equal(st.waiting, 0);
    assert_int_equal(st.sessions, 2);

    /* Usable: a new request opens a new connection. */
    es_future *g = es_client_submit(cl, "again", 5);
    deadline = hs_now_ms() + 5000;
    do {
        es_client_get_stats(cl, &st);
    } while (st.in_use != 1 && hs_now_ms() < deadline);
    assert_int_equal(st.in_use, 1);
    assert_int_equal(st.sessions, 3);
    es_client_free(cl);
    future_err(g, -ECANCELED, err, sizeof err);
    close(sfd);
}

/* 18. es_client_free with requests in flight: no crash, no leak, every fd and thread gone. */
static void test_free_in_flight(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c);
    char addr[64];
    int sfd = silent_listener(addr, sizeof addr, 16);
    int fds0 = hs_proc_fd_count(getpid());
    int tasks0 = hs_proc_task_count(getpid());
    size_t len = 1u << 20;
    char *big = malloc(len);
    es_future *f[24];
    int n = 0;

    assert_non_null(big);
    hs_fill_pattern(big, len, 3);
    es_client *a = client(hs_addr(srv, 0), 4, 1, 30000);
    es_client *b = client(addr, 2, 0, 30000);
    for (int i = 0; i < 20; i++)
        f[n++] = es_client_submit(a, big, len);
    for (int i = 0; i < 4; i++)
        f[n++] = es_client_submit(b, "never answered", 14);
    free(big);
    hs_sleep_ms(5);
    es_client_free(a);
    es_client_free(b);
    int cancelled = 0;
    for (int i = 0; i < n; i++) {
        es_response *r = NULL;
        assert_true(es_future_done(f[i]));
        int rc = es_future_result(f[i], &r, NULL, 0);
        if (rc == -ECANCELED)
            cancelled++;
        else if (rc != 0)
            HS_FAIL("future %d: %d", i, rc);
        es_response_free(r);
        es_future_free(f[i]);
    }
    assert_true(cancelled >= 4);
    assert_int_equal(hs_proc_fd_count(getpid()), fds0);
    /* A joined thread can stay listed in /proc for a moment after pthread_join returns (and
     * one of the previous test's may still have been listed when tasks0 was read): no more
     * threads than before, once the kernel has reaped them. */
    long deadline = hs_now_ms() + 5000;
    while (hs_proc_task_count(getpid()) > tasks0 && hs_now_ms() < deadline)
        hs_sleep_ms(2);
    if (hs_proc_task_count(getpid()) > tasks0)
        HS_FAIL("%d threads after es_client_free, %d before", hs_proc_task_count(getpid()),
                tasks0);
    close(sfd);
}

/* 19. Bad options and messages, an over-long reply, and a custom separator. */
static void test_bad_input(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    char err[256] = "";
    es_client_options o;

    assert_null(es_client_new("no-port-here", NULL, err, sizeof err));
    assert_contains(err, "no-port-here");
    es_client_options_init(&o);
    o.pool_size = 0;
    assert_null(es_client_new("127.0.0.1:1", &o, err, sizeof err));
    assert_contains(err, "pool_size");
    es_client_options_init(&o);
    o.separator = (const uint8_t *)"";
    o.separator_len = 0;
    assert_null(es_client_new("127.0.0.1:1", &o, err, sizeof err));
    assert_contains(err, "separator");
    es_client_options_init(&o);
    o.size = 8;
    assert_null(es_client_new("127.0.0.1:1", &o, err, sizeof err));

    /* Messages the protocol cannot carry fail at once, without a connection. */
    es_client_options_init(&o);
    o.max_reply = 64;
    es_client *cl = es_client_new("127.0.0.1:1", &o, err, sizeof err);
    assert_non_null(cl);
    assert_int_equal(es_client_call(cl, "a" SEP "b", 6, NULL, err, sizeof err), -EINVAL);
    assert_contains(err, "separator");
    assert_int_equal(es_client_call(cl, "ends\r\n", 6, NULL, err, sizeof err), -EINVAL);
    char big[100];
    memset(big, 'b', sizeof big);
    assert_int_equal(es_client_call(cl, big, sizeof big, NULL, err, sizeof err), -EMSGSIZE);
    assert_contains(err, "max_reply");
    check_stats(cl, 10, 0, 0, 0, 0);
    es_client_free(cl);

    /* A reply that grows past max_reply. */
    struct fake *fk = fake_start(FAKE_LONG);
    cl = es_client_new(fk->addr, &o, err, sizeof err);
    assert_non_null(cl);
    assert_int_equal(es_client_call(cl, "x", 1, NULL, err, sizeof err), -EMSGSIZE);
    assert_contains(err, "max_reply");
    check_stats(cl, 10, 0, 0, 1, 0);
    es_client_free(cl);
    fake_stop(fk);

    /* A custom separator, as the server is configured. */
    struct hs_proc *srv = hs_ctx_start(c, "127.0.0.1:0", 1, 0, "[echo]\nseparator = \\n\n");
    es_client_options_init(&o);
    o.separator = (const uint8_t *)"\n";
    o.separator_len = 1;
    cl = es_client_new(hs_addr(srv, 0), &o, err, sizeof err);
    assert_non_null(cl);
    call_ok(cl, "line one", false);
    call_ok(cl, "with\r\r CRs", false);
    check_stats(cl, 10, 0, 1, 1, 2);
    es_client_free(cl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        HS_CTX_TEST(test_connection_pool),
        HS_CTX_TEST(test_ping),
        HS_CTX_TEST(test_large_message),
        HS_CTX_TEST(test_concurrent_futures),
        HS_CTX_TEST(test_fifo),
        HS_CTX_TEST(test_callbacks),
        HS_CTX_TEST(test_full_response),
        HS_CTX_TEST(test_request_timeout),
        HS_CTX_TEST(test_connect_refused),
        HS_CTX_TEST(test_connect_timeout),
        HS_CTX_TEST(test_mid_reply),
        HS_CTX_TEST(test_quit),
        HS_CTX_TEST(test_server_closed_idle),
        HS_CTX_TEST(test_threads),
        HS_CTX_TEST(test_unix_socket),
        HS_CTX_TEST(test_future_wait_timeout),
        HS_CTX_TEST(test_close_cancels),
        HS_CTX_TEST(test_free_in_flight),
        HS_CTX_TEST(test_bad_input),
    };

    if (hs_process_init() < 0)
        fprintf(stderr, "# could not raise RLIMIT_NOFILE or ignore SIGPIPE\n");
    return cmocka_run_group_tests_name("echoclient", tests, NULL, NULL);
}
