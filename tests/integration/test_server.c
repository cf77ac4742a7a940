/* test_server.c - integration tests: the real echosrv binary checked over loopback sockets. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define SEP "\r\n\r\n"
#define SEPLEN 4
#define IO_MS 5000              /* default bound for one socket operation */
#define STOP_MS 5000            /* bound for SIGTERM -> exit */
#ifndef TEST_BUDGET_S
#define TEST_BUDGET_S 30        /* SIGALRM backstop per test */
#endif
/* Arms the test's SIGALRM backstop and returns its context. */
static struct hs_ctx *begin(void **state, const char *name)
{
    return hs_ctx_begin(state, TEST_BUDGET_S, name);
}

static struct hs_proc *start_default(struct hs_ctx *c, const char *extra)
{
    return hs_ctx_start(c, "127.0.0.1:0", 1, 0, extra);
}

/* Connects to ADDR (failing the test if it cannot) and tracks the fd. */
static int conn(struct hs_ctx *c, const char *addr)
{
    return hs_ctx_connect(c, addr, IO_MS);
}

/* Sends a BODY-byte pattern message plus separator and checks the echo, sending and receiving
 * at the same time. */
static void echo_pattern(int fd, size_t body, unsigned seed)
{
    size_t len = body + SEPLEN;
    char *out = malloc(len);
    char *in = malloc(len);
    size_t got = 0;
    bool ok;

    assert_non_null(out);
    assert_non_null(in);
    hs_fill_pattern(out, body, seed);
    memcpy(out + body, SEP, SEPLEN);
    int rc = hs_exchange(fd, out, len, in, len, 20000, &got);
    if (rc < 0)
        fprintf(stderr, "# %zu-byte message: received %zu of %zu bytes: %s\n", body, got, len,
                strerror(errno));
    ok = rc == 0 && hs_same_bytes("echo", out, in, len);
    free(out);
    free(in);
    assert_true(ok);
}

/* 1. A single message is echoed exactly. */
static void test_ping(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "");
    int fd = conn(c, hs_addr(srv, 0));
    char buf[64];

    assert_int_equal(hs_send_all(fd, "Hello!" SEP, 10, IO_MS), 0);
    ssize_t n = hs_recv_until(fd, SEP, SEPLEN, buf, sizeof buf, IO_MS);
    if (n < 0)
        HS_FAIL("no reply: %s", strerror(errno));
    assert_int_equal(n, 10);
    assert_memory_equal(buf, "Hello!" SEP, 10);
    hs_assert_quiet(fd, 200);
}

/* 2. An 8 KiB and a 3 MiB message come back byte for byte. */
static void test_large_messages(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "");
    int fd = conn(c, hs_addr(srv, 0));

    echo_pattern(fd, 8192, 1);
    echo_pattern(fd, 3u << 20, 2);
    echo_pattern(fd, 8192, 3);
    hs_assert_quiet(fd, 100);
}

/* 3. 1000 pipelined messages in one go: 1000 replies, in order, byte-exact. */
static void test_pipelined(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "");
    int fd = conn(c, hs_addr(srv, 0));
    size_t cap = 1000 * 80;
    char *out = malloc(cap);
    char *in = malloc(cap);
    size_t len = 0;
    size_t got = 0;

    assert_non_null(out);
    assert_non_null(in);
    for (int i = 0; i < 1000; i++) {
        len += (size_t)snprintf(out + len, cap - len, "msg-%04d:", i);
        size_t extra = 1 + (size_t)(i * 7) % 50;
        hs_fill_pattern(out + len, extra, (unsigned)i);
        len += extra;
        memcpy(out + len, SEP, SEPLEN);
        len += SEPLEN;
    }
    int rc = hs_exchange(fd, out, len, in, len, 10000, &got);
    if (rc < 0)
        fprintf(stderr, "# received %zu of %zu bytes: %s\n", got, len, strerror(errno));
    bool ok = rc == 0 && hs_same_bytes("pipelined replies", out, in, len);
    free(out);
    free(in);
    assert_true(ok);
    hs_assert_quiet(fd, 100);
}

/* Sends PIECE and pauses, so that it travels in its own segment. */
static void send_piece(int fd, const void *piece, size_t len, int pause_ms)
{
    assert_int_equal(hs_send_all(fd, piece, len, IO_MS), 0);
    hs_sleep_ms(pause_ms);
}

/* 4. Messages in pieces (separator split too) are echoed once; NUL bytes pass through. */
static void test_fragmented(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "");
    int fd = conn(c, hs_addr(srv, 0));
    static const char *const pieces[] = { "Hel", "lo\r", "\n\r", "\n" };
    char buf[1024];
    ssize_t n;

    for (int i = 0; i < 3; i++)
        send_piece(fd, pieces[i], strlen(pieces[i]), 20);
    hs_assert_quiet(fd, 100);           /* "Hello\r\n\r" is not a message yet */
    send_piece(fd, pieces[3], 1, 0);
    n = hs_recv_until(fd, SEP, SEPLEN, buf, sizeof buf, IO_MS);
    assert_int_equal(n, 9);
    assert_memory_equal(buf, "Hello" SEP, 9);
    hs_assert_quiet(fd, 100);

    /* One byte per send. */
    static const char bytes[] = "one byte at a time" SEP;
    for (size_t i = 0; i < sizeof bytes - 1; i++)
        send_piece(fd, bytes + i, 1, 2);
    n = hs_recv_exact(fd, buf, sizeof bytes - 1, IO_MS);
    assert_int_equal(n, sizeof bytes - 1);
    assert_memory_equal(buf, bytes, sizeof bytes - 1);

    /* A false start of the separator: "ab\r\n\r" + "x\r\n\r\n" is one message. */
    send_piece(fd, "ab\r\n\r", 5, 20);
    hs_assert_quiet(fd, 50);
    send_piece(fd, "x" SEP, 5, 0);
    n = hs_recv_exact(fd, buf, 10, IO_MS);
    assert_int_equal(n, 10);
    assert_memory_equal(buf, "ab\r\n\rx" SEP, 10);
    hs_assert_quiet(fd, 100);

    /* Binary body with NUL bytes. */
    unsigned char bin[6 + 256 + SEPLEN];
    memcpy(bin, "\0\0NUL\0", 6);
    for (int i = 0; i < 256; i++)
        bin[6 + i] = (unsigned char)i;
    memcpy(bin + 6 + 256, SEP, SEPLEN);
    send_piece(fd, bin, 100, 10);
    send_piece(fd, bin + 100, sizeof bin - 100, 0);
    n = hs_recv_exact(fd, buf, sizeof bin, IO_MS);
    assert_int_equal(n, sizeof bin);
    assert_true(hs_same_bytes("binary echo", bin, buf, sizeof bin));
    hs_assert_quiet(fd, 100);
}

/* 5. QUIT is echoed, then the connection closes; nothing after QUIT is answered. */
static void test_quit(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "");
    int fd = conn(c, hs_addr(srv, 0));
    char buf[64];

    assert_int_equal(hs_send_all(fd, "QUIT" SEP, 8, IO_MS), 0);
    assert_int_equal(hs_recv_exact(fd, buf, 8, IO_MS), 8);
    assert_memory_equal(buf, "QUIT" SEP, 8);
    if (hs_wait_closed(fd, 2000) != 0)
        HS_FAIL("the connection was not closed within 2 s after QUIT was echoed");

    static const char seg[] = "Hi" SEP "QUIT" SEP "Hello" SEP;
    static const char want[] = "Hi" SEP "QUIT" SEP;
    fd = conn(c, hs_addr(srv, 0));
    assert_int_equal(hs_send_all(fd, seg, sizeof seg - 1, IO_MS), 0);
    assert_int_equal(hs_recv_exact(fd, buf, sizeof want - 1, IO_MS), sizeof want - 1);
    assert_memory_equal(buf, want, sizeof want - 1);
    int r = hs_wait_closed(fd, 2000);
    if (r == 1) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        HS_FAIL("the message after QUIT was answered (%zd more bytes)", n);
    }
    assert_int_equal(r, 0);
}

/* 6. 200 concurrent connections, each doing a few ping-pongs. */
static void test_concurrent(void **state)
{
    enum { N = 200, ROUNDS = 3, MSGLEN = 16 };
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "");
    int fds[N];
    char want[N][MSGLEN + 1];
    char got[N][MSGLEN];
    size_t have[N];
    struct pollfd pfd[N];

    for (int i = 0; i < N; i++)
        fds[i] = conn(c, hs_addr(srv, 0));
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < N; i++) {
            snprintf(want[i], sizeof want[i], "c%03d round %d" SEP, i, r);
            assert_int_equal(hs_send_all(fds[i], want[i], MSGLEN, IO_MS), 0);
            have[i] = 0;
        }
        long deadline = hs_now_ms() + 10000;
        int done = 0;
        while (done < N) {
            int np = 0;
            for (int i = 0; i < N; i++) {
                if (have[i] < MSGLEN) {
                    pfd[np].fd = fds[i];
                    pfd[np].events = POLLIN;
                    pfd[np].revents = 0;
                    np++;
                }
            }
            long left = deadline - hs_now_ms();
            if (left <= 0)
                HS_FAIL("round %d: only %d of %d replies within 10 s", r, done, N);
            int pr = poll(pfd, (nfds_t)np, (int)left);
            if (pr < 0 && errno != EINTR)
                HS_FAIL("poll: %s", strerror(errno));
            for (int i = 0; i < N; i++) {
                if (have[i] >= MSGLEN)
                    continue;
                ssize_t n = recv(fds[i], got[i] + have[i], MSGLEN - have[i], MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                    HS_FAIL("connection %d closed in round %d", i, r);
                if (n > 0) {
                    have[i] += (size_t)n;
                    if (have[i] == MSGLEN) {
                        done++;
                        if (memcmp(got[i], want[i], MSGLEN) != 0)
                            HS_FAIL("connection %d round %d: wrong reply", i, r);
                    }
                }
            }
        }
    }
    for (int i = 0; i < N; i++)
        hs_assert_quiet(fds[i], 0);
}

/* 7. A client that never reads cannot make the server grow; others are still served. */
static void test_backpressure(void **state)
{
    enum { MSG = 64 * 1024 };
    const size_t limit = (size_t)256 << 20;
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "");
    int b = conn(c, hs_addr(srv, 0));
    int a = conn(c, hs_addr(srv, 0));
    char *msg = malloc(MSG);
    size_t total = 0;
    size_t off = 0;
    bool stalled = false;

    assert_non_null(msg);
    assert_int_equal(hs_ping(b, "warm up" SEP, IO_MS), 0);
    long rss0 = hs_proc_rss_kb(hs_pid(srv));
    assert_true(rss0 > 0);
    hs_fill_pattern(msg, MSG - SEPLEN, 7);
    memcpy(msg + MSG - SEPLEN, SEP, SEPLEN);

    long deadline = hs_now_ms() + 15000;
    while (total < limit && hs_now_ms() < deadline) {
        ssize_t n = send(a, msg + off, MSG - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            total += (size_t)n;
            off = (off + (size_t)n) % MSG;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            free(msg);
            HS_FAIL("send failed after %zu bytes: %s (the server dropped the slow client?)",
                    total, strerror(errno));
        }
        struct pollfd pfd = { a, POLLOUT, 0 };
        int pr = poll(&pfd, 1, 2000);
        if (pr == 0) {
            stalled = true;
            break;
        }
    }
    free(msg);
    long rss1 = hs_proc_rss_kb(hs_pid(srv));
    fprintf(stderr, "# sent %zu MiB (%s); server VmRSS %ld KiB -> %ld KiB\n", total >> 20,
            stalled ? "then the kernel refused for 2 s" : "without a stall", rss0, rss1);
    assert_true(rss1 > 0);
    if (rss1 - rss0 >= 48 * 1024)
        HS_FAIL("server VmRSS grew by %ld KiB (limit 48 MiB): no backpressure", rss1 - rss0);
    assert_int_equal(hs_ping(b, "still served?" SEP, 2000), 0);
    long rss2 = hs_proc_rss_kb(hs_pid(srv));
    if (rss2 - rss0 >= 48 * 1024)
        HS_FAIL("server VmRSS grew by %ld KiB (limit 48 MiB): no backpressure", rss2 - rss0);
}

/* 8. A message past max_message closes that connection only; exactly max_message is fine. */
static void test_max_message(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "max_message = 1024\n");
    int b = conn(c, hs_addr(srv, 0));
    int a = conn(c, hs_addr(srv, 0));
    char big[4096];
    char reply[1024];

    assert_int_equal(hs_ping(b, "before" SEP, IO_MS), 0);
    memset(big, 'x', sizeof big);
    hs_send_all(a, big, sizeof big, IO_MS);     /* may fail once the server resets */
    int r = hs_wait_closed(a, 3000);
    if (r < 0)
        HS_FAIL("a 4 KiB message without separator (max_message = 1024) did not close "
                "the connection within 3 s");
    assert_int_equal(r, 0);
    assert_int_equal(hs_ping(b, "after" SEP, IO_MS), 0);

    /* body + separator == max_message exactly: still a message. */
    int d = conn(c, hs_addr(srv, 0));
    char exact[1024];
    hs_fill_pattern(exact, 1024 - SEPLEN, 8);
    memcpy(exact + 1024 - SEPLEN, SEP, SEPLEN);
    size_t got = 0;
    int rc = hs_exchange(d, exact, sizeof exact, reply, sizeof reply, IO_MS, &got);
    if (rc < 0)
        HS_FAIL("a 1024-byte frame (max_message = 1024) was not echoed: got %zu bytes, %s",
                got, strerror(errno));
    assert_true(hs_same_bytes("1024-byte frame", exact, reply, sizeof exact));
    hs_assert_quiet(d, 100);
}

/* 9. idle_timeout closes idle connections, not active ones. */
static void test_idle_timeout(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "idle_timeout = 1\n");
    int a = conn(c, hs_addr(srv, 0));
    long t0 = hs_now_ms();
    int b = conn(c, hs_addr(srv, 0));
    long a_closed = -1;
    long next_ping = hs_now_ms();
    int pings = 0;

    while (hs_now_ms() < t0 + 2500) {
        if (hs_now_ms() >= next_ping) {
            if (hs_ping(b, "keepalive" SEP, 1000) < 0)
                HS_FAIL("the active connection was not served after %ld ms",
                        hs_now_ms() - t0);
            pings++;
            next_ping += 300;
        }
        int wait = (int)(next_ping - hs_now_ms());
        if (wait < 0)
            wait = 0;
        if (a_closed < 0) {
            int r = hs_wait_closed(a, wait);
            if (r == 1)
                HS_FAIL("unexpected data on the idle connection");
            if (r == 0)
                a_closed = hs_now_ms() - t0;
        } else if (wait > 0) {
            hs_sleep_ms(wait);
        }
    }
    if (hs_ping(b, "still open" SEP, 1000) < 0)
        HS_FAIL("the connection pinging every 300 ms was closed (idle_timeout = 1)");
    if (a_closed < 0) {
        int r = hs_wait_closed(a, (int)(t0 + 4000 - hs_now_ms()));
        if (r == 0)
            a_closed = hs_now_ms() - t0;
    }
    fprintf(stderr, "# idle connection closed after %ld ms; %d pings on the active one\n",
            a_closed, pings);
    if (a_closed < 0)
        HS_FAIL("the idle connection was not closed within 4 s (idle_timeout = 1)");
    if (a_closed < 950)
        HS_FAIL("the idle connection was closed after %ld ms, before idle_timeout = 1 s",
                a_closed);
}

/* 10. max_connections: the next connection is refused promptly; a freed slot is reusable. */
static void test_max_connections(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "max_connections = 5\n");
    const char *addr = hs_addr(srv, 0);
    int fds[5];

    for (int i = 0; i < 5; i++) {
        fds[i] = conn(c, addr);
        assert_int_equal(hs_ping(fds[i], "in" SEP, IO_MS), 0);
    }
    int sixth = conn(c, addr);
    int r = hs_wait_closed(sixth, 2000);
    if (r == 1)
        HS_FAIL("the 6th connection (max_connections = 5) got data instead of a close");
    if (r < 0)
        HS_FAIL("the 6th connection (max_connections = 5) was not closed within 2 s");
    for (int i = 0; i < 5; i++)
        assert_int_equal(hs_ping(fds[i], "still in" SEP, IO_MS), 0);

    hs_ctx_untrack_close(c, fds[0]);
    long deadline = hs_now_ms() + 3000;
    bool served = false;
    int attempts = 0;
    while (!served && hs_now_ms() < deadline) {
        int fd = conn(c, addr);
        char buf[16];
        attempts++;
        if (hs_send_all(fd, "again" SEP, 9, 1000) == 0 &&
            hs_recv_exact(fd, buf, 9, (int)(deadline - hs_now_ms()) + 1) == 9 &&
            memcmp(buf, "again" SEP, 9) == 0)
            served = true;
        else
            hs_sleep_ms(50);
        if (!served)
            hs_ctx_untrack_close(c, fd);
    }
    if (!served)
        HS_FAIL("after closing one of 5 connections, no new connection was served within 3 s "
                "(%d attempts)", attempts);
}

/* Runs echosrv with ARGS; asserts exit status WANT and returns the output (caller frees). */
static char *run_expect(const char *const args[], int want)
{
    char *out = NULL;
    int st = hs_run(args, 5000, &out);
    char cmd[512];
    size_t pos = 0;

    cmd[0] = '\0';
    for (int i = 0; args[i] != NULL && pos < sizeof cmd; i++)
        pos += (size_t)snprintf(cmd + pos, sizeof cmd - pos, " %s", args[i]);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != want) {
        fprintf(stderr, "# output of echosrv%s:\n# %s\n", cmd, out ? out : "");
        free(out);
        if (st < 0)
            HS_FAIL("echosrv%s did not exit within 5 s", cmd);
        if (WIFSIGNALED(st))
            HS_FAIL("echosrv%s was killed by signal %d", cmd, WTERMSIG(st));
        HS_FAIL("echosrv%s exited with %d, expected %d", cmd, WEXITSTATUS(st), want);
    }
    return out;
}

/* Checks one bad configuration: both -t and a real start exit 1 naming FILE:LINE and, if not
 * NULL, WORD. */
static void check_bad_config(struct hs_ctx *c, const char *name, int line, const char *word,
                             const char *text)
{
    char path[512];
    char want[600];

    assert_int_equal(hs_write_file(path, sizeof path, c->dir, name, "%s", text), 0);
    snprintf(want, sizeof want, "%s:%d:", path, line);
    for (int mode = 0; mode < 2; mode++) {
        const char *check[] = { "-t", "-c", path, NULL };
        const char *run[] = { "-c", path, NULL };
        char *out = run_expect(mode == 0 ? check : run, 1);
        bool ok = strstr(out, want) != NULL;
        bool has_word = word == NULL || strstr(out, word) != NULL;
        bool served = strstr(out, "listening on") != NULL;
        if (!ok || !has_word || served)
            fprintf(stderr, "# echosrv %s-c %s printed:\n# %s\n", mode == 0 ? "-t " : "", name,
                    out);
        free(out);
        if (!ok)
            HS_FAIL("%s (%s): expected '%s' in the output", name, mode == 0 ? "-t" : "run", want);
        if (!has_word)
            HS_FAIL("%s (%s): expected the message to name '%s'", name,
                    mode == 0 ? "-t" : "run", word);
        if (served)
            HS_FAIL("%s: echosrv started listening despite the error", name);
    }
}

/* 11. Configuration errors name FILE:LINE and exit 1; the command line behaves. */
static void test_config_and_cli(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    char text[2048];
    char good[512];

    assert_non_null(pd);
    snprintf(text, sizeof text,
             "[server]\nbind = 127.0.0.1:0\nno_such_key = 1\nthreads = 2\nplugin = echo\n"
             "plugin_dir = %s\n", pd);
    check_bad_config(c, "unknown_key.ini", 3, NULL, text);

    snprintf(text, sizeof text,
             "[server]\nbind = 127.0.0.1:0\nthreads = abc\nplugin = echo\nplugin_dir = %s\n", pd);
    check_bad_config(c, "bad_number.ini", 3, NULL, text);

    /* Reported at the section header (line 7), not at its first key. */
    snprintf(text, sizeof text,
             "[server]\nbind = 127.0.0.1:0\nthreads = 2\nplugin = echo\nplugin_dir = %s\n\n"
             "[nosuch]\nkey = 1\n", pd);
    check_bad_config(c, "unknown_section.ini", 7, NULL, text);

    snprintf(text, sizeof text,
             "[server]\nbind = 127.0.0.1:0\nthreads = 2\nplugin = nosuch\nplugin_dir = %s\n", pd);
    check_bad_config(c, "missing_plugin.ini", 4, "nosuch", text);

    snprintf(text, sizeof text,
             "[server]\nbind = 127.0.0.1:0\nthreads = 2\nplugin = echo\nthreads = 3\n"
             "plugin_dir = %s\n", pd);
    check_bad_config(c, "duplicate_key.ini", 5, NULL, text);

    /* The plugin's own section rejects unknown keys too, with the server's FILE:LINE. */
    snprintf(text, sizeof text,
             "[server]\nbind = 127.0.0.1:0\nthreads = 2\nplugin = echo\nplugin_dir = %s\n\n"
             "[echo]\nbogus = 1\n", pd);
    check_bad_config(c, "plugin_key.ini", 8, NULL, text);

    assert_int_equal(hs_write_config(good, sizeof good, c->dir, "good.ini", "127.0.0.1:0",
                                     "\n[echo]\nseparator = \\r\\n\\r\\n\n"), 0);
    const char *check_good[] = { "-t", "-c", good, NULL };
    free(run_expect(check_good, 0));

    static const char *const help_opts[] = { "-h", "--help" };
    for (int i = 0; i < 2; i++) {
        const char *args[] = { help_opts[i], NULL };
        char *out = run_expect(args, 0);
        bool ok = strstr(out, "-c") != NULL;
        free(out);
        if (!ok)
            HS_FAIL("echosrv %s: the usage does not mention -c", help_opts[i]);
    }
    static const char *const version_opts[] = { "-V", "--version" };
    for (int i = 0; i < 2; i++) {
        const char *args[] = { version_opts[i], NULL };
        char *out = run_expect(args, 0);
        bool ok = strpbrk(out, "0123456789") != NULL;
        free(out);
        if (!ok)
            HS_FAIL("echosrv %s: no version number printed", version_opts[i]);
    }
    const char *bad_opt[] = { "-Z", NULL };
    free(run_expect(bad_opt, 2));
    const char *bad_long[] = { "--no-such-option", NULL };
    free(run_expect(bad_long, 2));
}

/* One client of test_sigterm: ping-pongs 512 KiB messages until the server closes; a reply
 * that size is still being written when SIGTERM comes, so a server that drops connections
 * at once instead of finishing their replies shows up as a cut reply. */
struct pp_client {
    const char *addr;
    int id;
    int fd;
    atomic_int rounds;          /* complete, verified replies */
    int violation;              /* 0, or what went wrong (see pp_main) */
    size_t partial;             /* bytes of the reply received when it went wrong */
    int err;
};

enum { PP_OK, PP_PARTIAL, PP_MISMATCH, PP_TIMEOUT, PP_CONNECT };

static void *pp_main(void *arg)
{
    enum { BODY = 512 * 1024, LEN = BODY + SEPLEN };
    struct pp_client *cl = arg;
    char *out = malloc(LEN);
    char *in = malloc(LEN);

    if (out == NULL || in == NULL)
        goto done;
    for (int r = 0;; r++) {
        size_t got = 0;
        hs_fill_pattern(out, BODY, (unsigned)(cl->id * 100000 + r));
        memcpy(out + BODY, SEP, SEPLEN);
        if (hs_exchange(cl->fd, out, LEN, in, LEN, IO_MS, &got) == 0) {
            if (memcmp(in, out, LEN) != 0) {
                cl->violation = PP_MISMATCH;
                break;
            }
            atomic_fetch_add(&cl->rounds, 1);
            continue;
        }
        cl->err = errno;
        cl->partial = got;
        if (errno == ETIMEDOUT)
            cl->violation = PP_TIMEOUT;
        else if (got != 0)
            cl->violation = PP_PARTIAL;
        break;                  /* closed between replies: fine */
    }
    shutdown(cl->fd, SHUT_WR);  /* answer the server's FIN like a polite client */
done:
    free(out);
    free(in);
    return NULL;
}

/* 12. SIGTERM: replies in flight complete, connections close between replies, exit 0. */
static void test_sigterm(void **state)
{
    enum { N = 20 };
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "shutdown_timeout = 3\n");
    static struct pp_client cl[N];
    pthread_t th[N];
    int started = 0;

    memset(cl, 0, sizeof cl);
    for (int i = 0; i < N; i++) {
        cl[i].addr = hs_addr(srv, 0);
        cl[i].id = i;
        cl[i].fd = conn(c, cl[i].addr);
    }
    for (int i = 0; i < N; i++) {
        if (pthread_create(&th[i], NULL, pp_main, &cl[i]) != 0)
            break;
        started++;
    }
    /* Let every client get going (bounded), then pull the plug mid-conversation. */
    long deadline = hs_now_ms() + 10000;
    for (;;) {
        int ready = 0;
        for (int i = 0; i < started; i++)
            ready += atomic_load(&cl[i].rounds) >= 2 || cl[i].violation != PP_OK;
        if (ready == started || hs_now_ms() >= deadline)
            break;
        hs_sleep_ms(10);
    }
    int before = 0;
    for (int i = 0; i < started; i++)
        before += atomic_load(&cl[i].rounds);

    /* Two exchanges that are certainly in flight when the signal comes: half of a message
     * received (the server must wait for the rest and answer it), and a whole message whose
     * reply the client has not read yet (the server must send all of it). A server that
     * just closes its connections fails both. */
    enum { BIG = 2 * 1024 * 1024, BIGLEN = BIG + SEPLEN };
    char *half = malloc(BIGLEN), *whole = malloc(BIGLEN), *back = malloc(BIGLEN);
    assert_non_null(half);
    assert_non_null(whole);
    assert_non_null(back);
    hs_fill_pattern(half, BIG, 7001);
    memcpy(half + BIG, SEP, SEPLEN);
    hs_fill_pattern(whole, BIG, 7002);
    memcpy(whole + BIG, SEP, SEPLEN);
    int fa = conn(c, hs_addr(srv, 0)), fb = conn(c, hs_addr(srv, 0));
    if (hs_send_all(fa, half, BIG / 2, IO_MS) < 0 || hs_send_all(fb, whole, BIGLEN, IO_MS) < 0)
        HS_FAIL("cannot send the in-flight messages: %s", strerror(errno));

    long t0 = hs_now_ms();
    kill(hs_pid(srv), SIGTERM);
    if (hs_send_all(fa, half + BIG / 2, BIGLEN - BIG / 2, IO_MS) < 0)
        HS_FAIL("the rest of a message begun before SIGTERM was refused: %s", strerror(errno));
    ssize_t na = hs_recv_exact(fa, back, BIGLEN, IO_MS);
    if (na != BIGLEN || !hs_same_bytes("reply to a message finished after SIGTERM", back, half,
                                       BIGLEN))
        HS_FAIL("message begun before SIGTERM: %zd of %d reply bytes", na, (int)BIGLEN);
    ssize_t nb = hs_recv_exact(fb, back, BIGLEN, IO_MS);
    if (nb != BIGLEN || !hs_same_bytes("reply in flight at SIGTERM", back, whole, BIGLEN))
        HS_FAIL("reply in flight at SIGTERM: %zd of %d bytes", nb, (int)BIGLEN);
    if (hs_wait_closed(fa, IO_MS) < 0 || hs_wait_closed(fb, IO_MS) < 0)
        HS_FAIL("connections not closed after their replies during shutdown");
    free(half);
    free(whole);
    free(back);
    int st = hs_wait_exit(srv, 3000 + 1500);
    long took = hs_now_ms() - t0;
    if (st < 0) {
        hs_dump_output(srv, "no exit after SIGTERM");
        hs_stop(srv, 0);        /* SIGKILL, so that the clients see their connections close */
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(started, N);

    int total = 0;
    for (int i = 0; i < N; i++) {
        total += atomic_load(&cl[i].rounds);
        if (cl[i].violation == PP_PARTIAL)
            HS_FAIL("client %d: connection closed mid-reply after %zu of %d bytes (%s)", i,
                    cl[i].partial, 512 * 1024 + SEPLEN, strerror(cl[i].err));
        if (cl[i].violation == PP_MISMATCH)
            HS_FAIL("client %d: reply differs from the request", i);
        if (cl[i].violation == PP_TIMEOUT)
            HS_FAIL("client %d: no reply and no close within %d ms (%zu bytes received)", i,
                    IO_MS, cl[i].partial);
        if (atomic_load(&cl[i].rounds) < 2)
            HS_FAIL("client %d: only %d complete replies before SIGTERM", i,
                    atomic_load(&cl[i].rounds));
    }
    fprintf(stderr, "# %d complete replies (%d before SIGTERM); exit %ld ms after SIGTERM\n",
            total, before, took);
    if (st < 0)
        HS_FAIL("echosrv did not exit within shutdown_timeout (3 s) + 1.5 s of SIGTERM");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        hs_dump_output(srv, "bad exit status");
        if (WIFSIGNALED(st))
            HS_FAIL("echosrv died of signal %d after SIGTERM", WTERMSIG(st));
        HS_FAIL("echosrv exited with %d after SIGTERM, expected 0", WEXITSTATUS(st));
    }
}

/* 13. Several listeners (TCP, Unix, IPv6 when available) each serve. */
static void test_listeners(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    bool v6 = hs_have_ipv6_loopback();
    char bind[400];
    char unix_addr[300];
    bool seen_v4 = false;
    bool seen_unix = false;
    bool seen_v6 = false;

    snprintf(unix_addr, sizeof unix_addr, "unix:%s/s.sock", c->dir);
    snprintf(bind, sizeof bind, "127.0.0.1:0, %s%s", unix_addr, v6 ? ", [::1]:0" : "");
    int n = v6 ? 3 : 2;
    if (!v6)
        fprintf(stderr, "# no ::1 in /proc/net/if_inet6: IPv6 part left out\n");
    struct hs_proc *srv = hs_ctx_start(c, bind, n, 0, "");
    for (int i = 0; i < n; i++) {
        const char *addr = hs_addr(srv, i);
        assert_non_null(addr);
        if (strncmp(addr, "127.0.0.1:", 10) == 0) {
            if (strcmp(addr, "127.0.0.1:0") == 0)
                HS_FAIL("listener logged as %s, not with its actual port", addr);
            seen_v4 = true;
        } else if (strncmp(addr, "[::1]:", 6) == 0) {
            if (strcmp(addr, "[::1]:0") == 0)
                HS_FAIL("listener logged as %s, not with its actual port", addr);
            seen_v6 = true;
        } else if (strcmp(addr, unix_addr) == 0) {
            seen_unix = true;
        } else {
            HS_FAIL("unexpected listener address '%s'", addr);
        }
        int fd = conn(c, addr);
        char msg[256];
        snprintf(msg, sizeof msg, "via %s" SEP, addr);
        if (hs_ping(fd, msg, IO_MS) < 0)
            HS_FAIL("no echo through %s", addr);
    }
    assert_true(seen_v4);
    assert_true(seen_unix);
    assert_true(seen_v6 == v6);
}

/* 14. Out of file descriptors: moved to test_faults.c (test_emfile), with the other faults. */

/* Writes the whole INI file NAME in the test's directory from FMT (c->conf gets its path) and
 * starts echosrv on it, expecting one listener. Fails the test if it does not come up. */
static struct hs_proc *start_ini(struct hs_ctx *c, const char *name, long nofile, const char *fmt,
                                 ...) __attribute__((format(printf, 4, 5)));

static struct hs_proc *start_ini(struct hs_ctx *c, const char *name, long nofile, const char *fmt,
                                 ...)
{
    va_list ap;
    char *text = NULL;

    va_start(ap, fmt);
    int rc = vasprintf(&text, fmt, ap);
    va_end(ap);
    assert_true(rc >= 0);
    rc = hs_write_file(c->conf, sizeof c->conf, c->dir, name, "%s", text);
    free(text);
    assert_int_equal(rc, 0);
    return hs_ctx_start_conf(c, 1, nofile);
}

/* SIGTERMs SRV and asserts that it exits with status 0 within STOP_MS. */
static void stop_ok(struct hs_proc *srv, const char *what)
{
    int st = hs_stop(srv, STOP_MS);

    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        hs_dump_output(srv, "bad exit after SIGTERM");
        HS_FAIL("%s: echosrv did not exit with status 0 after SIGTERM (wait status %d)", what, st);
    }
}

/* ThreadSanitizer's runtime adds a background thread of its own to a process that
 * starts threads; echosrv is built like this test. */
#if defined(__SANITIZE_THREAD__)
#define SANITIZER_THREADS 1
#else
#define SANITIZER_THREADS 0
#endif

/* 15. threads: the process has exactly that many workers plus the main thread. */
static void test_threads(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    static const char *const values[] = { "1", "3", "0" };

    assert_non_null(pd);
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        long workers = strcmp(values[i], "0") == 0 ? (ncpu < 1 ? 1 : ncpu > 1024 ? 1024 : ncpu)
                                                   : strtol(values[i], NULL, 10);
        struct hs_proc *srv = start_ini(c, "threads.ini", 0,
                                        "[server]\nbind = 127.0.0.1:0\nthreads = %s\n"
                                        "plugin = echo\nplugin_dir = %s\n", values[i], pd);
        /* The workers exist before 'listening on' is logged. */
        int tasks = hs_proc_task_count(hs_pid(srv));
        int fd = conn(c, hs_addr(srv, 0));
        assert_int_equal(hs_ping(fd, "threads" SEP, IO_MS), 0);
        hs_ctx_untrack_close(c, fd);
        if (tasks != workers + 1 + SANITIZER_THREADS)
            HS_FAIL("threads = %s: %d threads in /proc/%d/task, expected %ld workers + main"
                    " (+ %d of the sanitizer) = %ld", values[i], tasks, (int)hs_pid(srv), workers,
                    SANITIZER_THREADS, workers + 1 + SANITIZER_THREADS);
        hs_proc_free(srv);
    }
}

/* True if LINE (one line of echosrv's output) carries a level more verbose than MAX, the
 * 'listening on' lines excepted (they are printed whatever the log_level). */
static bool too_verbose(const char *line, size_t len, int max)
{
    static const char *const tags[] = { " level=error ", " level=warn ", " level=info ",
                                        " level=debug " };

    for (int lv = max + 1; lv < 4; lv++) {
        if (memmem(line, len, tags[lv], strlen(tags[lv])) != NULL)
            return memmem(line, len, "listening on ", 13) == NULL;
    }
    return false;
}

/* 16. log_level: each level prints its own messages and the more severe ones, nothing more
 * verbose; 'listening on' is printed at every level. */
static void test_log_level(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    static const char *const levels[] = { "error", "warn", "info", "debug" };
    char big[100];

    assert_non_null(pd);
    memset(big, 'x', sizeof big);
    for (int lv = 0; lv < 4; lv++) {
        struct hs_proc *srv = start_ini(c, "log.ini", 0,
                                        "[server]\nbind = 127.0.0.1:0\nthreads = 1\n"
                                        "plugin = echo\nplugin_dir = %s\nmax_message = 64\n"
                                        "log_level = %s\n", pd, levels[lv]);
        /* debug: the connection is logged before its first reply. */
        int a = conn(c, hs_addr(srv, 0));
        assert_int_equal(hs_ping(a, "log me" SEP, IO_MS), 0);
        /* warn: a message past max_message is logged before the connection closes. */
        int b = conn(c, hs_addr(srv, 0));
        hs_send_all(b, big, sizeof big, IO_MS);
        if (hs_wait_closed(b, 3000) != 0)
            HS_FAIL("log_level = %s: a 100-byte message (max_message = 64) did not close the "
                    "connection", levels[lv]);
        hs_ctx_untrack_close(c, a);
        hs_ctx_untrack_close(c, b);
        stop_ok(srv, levels[lv]);       /* afterwards the output is complete */

        char *out = hs_output(srv);
        assert_non_null(out);
        bool listening = strstr(out, "listening on ") != NULL;
        bool warned = strstr(out, "exceeds max_message") != NULL;
        bool informed = strstr(out, "worker threads") != NULL;
        bool debugged = strstr(out, "connection from") != NULL;
        const char *bad = NULL;
        size_t badlen = 0;
        for (const char *s = out; *s != '\0' && bad == NULL;) {
            size_t n = strcspn(s, "\n");
            if (too_verbose(s, n, lv)) {
                bad = s;
                badlen = n;
            }
            s += n;
            if (*s == '\n')
                s++;
        }
        char badline[256];
        snprintf(badline, sizeof badline, "%.*s", (int)(badlen < 200 ? badlen : 200),
                 bad ? bad : "");
        free(out);
        if (!listening || warned != (lv >= 1) || informed != (lv >= 2) ||
            debugged != (lv >= 3) || bad != NULL)
            hs_dump_output(srv, "unexpected log");
        hs_proc_free(srv);
        if (!listening)
            HS_FAIL("log_level = %s: no 'listening on' line", levels[lv]);
        if (warned != (lv >= 1))
            HS_FAIL("log_level = %s: the max_message warning was %s", levels[lv],
                    warned ? "printed" : "not printed");
        if (informed != (lv >= 2))
            HS_FAIL("log_level = %s: the start-up info line ('... worker threads') was %s",
                    levels[lv], informed ? "printed" : "not printed");
        if (debugged != (lv >= 3))
            HS_FAIL("log_level = %s: 'connection from' was %s", levels[lv],
                    debugged ? "printed" : "not printed");
        if (bad != NULL)
            HS_FAIL("log_level = %s: a more verbose line was printed: %s", levels[lv], badline);
    }
}

/* 17. shutdown_timeout = 1: a half-received message holds the shutdown for about 1 s, then
 * the connection is closed and the server exits 0. */
static void test_shutdown_timeout(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "shutdown_timeout = 1\n");
    int fd = conn(c, hs_addr(srv, 0));

    assert_int_equal(hs_ping(fd, "before" SEP, IO_MS), 0);
    assert_int_equal(hs_send_all(fd, "half a mess", 11, IO_MS), 0);
    long t0 = hs_now_ms();
    kill(hs_pid(srv), SIGTERM);
    int r = hs_wait_closed(fd, 5000);
    long closed = hs_now_ms() - t0;
    int st = hs_wait_exit(srv, (int)(t0 + 5000 - hs_now_ms()));
    long exited = hs_now_ms() - t0;
    fprintf(stderr, "# shutdown_timeout = 1: connection closed after %ld ms, exit after %ld ms\n",
            closed, exited);
    if (r == 1)
        HS_FAIL("the server sent data to a client with half a message during shutdown");
    if (r < 0)
        HS_FAIL("the connection holding half a message was not closed within 5 s of SIGTERM");
    if (closed < 800)
        HS_FAIL("the connection holding half a message was closed %ld ms after SIGTERM, before "
                "shutdown_timeout = 1 s", closed);
    if (st < 0) {
        hs_dump_output(srv, "no exit");
        HS_FAIL("echosrv did not exit within 5 s of SIGTERM (shutdown_timeout = 1)");
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        hs_dump_output(srv, "bad exit status");
        HS_FAIL("echosrv exited with wait status %d after SIGTERM, expected exit 0", st);
    }
    if (exited < 800 || exited >= 3000)
        HS_FAIL("echosrv exited %ld ms after SIGTERM; shutdown_timeout = 1 wants 800 to 3000 ms",
                exited);
}

/* 18. shutdown_timeout = 10 is a bound, not a delay: idle connections get a FIN at once and
 * the server exits within ~2 s even if a client never closes its side. */
static void test_shutdown_idle(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "shutdown_timeout = 10\n");
    int polite = conn(c, hs_addr(srv, 0));
    int silent = conn(c, hs_addr(srv, 0));

    assert_int_equal(hs_ping(polite, "polite" SEP, IO_MS), 0);
    assert_int_equal(hs_ping(silent, "silent" SEP, IO_MS), 0);
    long t0 = hs_now_ms();
    kill(hs_pid(srv), SIGTERM);
    if (hs_wait_closed(polite, 1500) != 0)
        HS_FAIL("an idle connection got no FIN within 1.5 s of SIGTERM");
    hs_ctx_untrack_close(c, polite);    /* answers the FIN, as a real client does */
    if (hs_wait_closed(silent, 1500) != 0)
        HS_FAIL("an idle connection got no FIN within 1.5 s of SIGTERM");
    int st = hs_wait_exit(srv, (int)(t0 + 8000 - hs_now_ms()));
    long exited = hs_now_ms() - t0;
    fprintf(stderr, "# idle clients, shutdown_timeout = 10: exit %ld ms after SIGTERM\n", exited);
    if (st < 0) {
        hs_dump_output(srv, "no exit");
        HS_FAIL("echosrv did not exit within 8 s of SIGTERM with only idle clients");
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        hs_dump_output(srv, "bad exit status");
        HS_FAIL("echosrv exited with wait status %d after SIGTERM, expected exit 0", st);
    }
    if (exited >= 3000)
        HS_FAIL("with only idle clients echosrv took %ld ms to exit after SIGTERM (want < 3000 ms; "
                "shutdown_timeout = 10 must not be waited out)", exited);
}

/* Opens N non-blocking connections to ADDR and returns how many completed the handshake
 * (writable, SO_ERROR 0) within MS; closes them all. */
static int count_handshakes(struct hs_ctx *c, const char *addr, int n, int ms)
{
    int fds[64];
    int ok = 0;

    assert_true(n <= 64);
    for (int i = 0; i < n; i++) {
        fds[i] = hs_ctx_track(c, hs_connect_nb(addr));
        if (fds[i] < 0)
            HS_FAIL("connect #%d to %s: %s", i, addr, strerror(errno));
    }
    long deadline = hs_now_ms() + ms;
    for (int i = 0; i < n; i++) {
        struct pollfd pfd = { fds[i], POLLOUT, 0 };
        int left = (int)(deadline - hs_now_ms());
        int err = -1;
        socklen_t el = sizeof err;
        if (poll(&pfd, 1, left > 0 ? left : 0) == 1 &&
            getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &el) == 0 && err == 0)
            ok++;
    }
    for (int i = 0; i < n; i++)
        hs_ctx_untrack_close(c, fds[i]);
    return ok;
}

/* Starts echosrv with EXTRA such that it cannot accept a single connection: RLIMIT_NOFILE is
 * the number of fds the same configuration holds when idle (measured on a first run). */
static struct hs_proc *start_unable_to_accept(struct hs_ctx *c, const char *extra)
{
    struct hs_proc *probe = start_default(c, extra);
    int nfd = hs_proc_fd_count(hs_pid(probe));

    hs_proc_free(probe);
    assert_true(nfd > 3);
    return hs_ctx_start(c, "127.0.0.1:0", 1, nfd, extra);
}

/* 19. backlog: with the accept queue never drained, backlog = 4 lets only a few handshakes
 * complete; the default (1024) lets all of them. */
static void test_backlog(void **state)
{
    enum { N = 40 };
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_unable_to_accept(c, "backlog = 4\n");
    int small = count_handshakes(c, hs_addr(srv, 0), N, 1000);
    hs_proc_free(srv);

    srv = start_unable_to_accept(c, "");
    int dflt = count_handshakes(c, hs_addr(srv, 0), N, 1000);
    hs_proc_free(srv);
    fprintf(stderr, "# handshakes completed out of %d with nothing accepted: backlog = 4: %d; "
            "default backlog: %d\n", N, small, dflt);
    if (dflt != N)
        HS_FAIL("default backlog (1024): only %d of %d handshakes completed", dflt, N);
    if (small > 12)
        HS_FAIL("backlog = 4: %d of %d handshakes completed (expected at most about 5; at most 12 "
                "allowed)", small, N);
    if (small < 1)
        HS_FAIL("backlog = 4: no handshake completed at all");
}

/* Pings through ADDR; fails the test naming WHAT if it does not work. */
static void ping_via(struct hs_ctx *c, const char *addr, const char *what)
{
    int fd = hs_connect(addr, IO_MS);
    char msg[200];

    if (fd < 0)
        HS_FAIL("bind = :0: cannot connect to %s (%s): %s", addr, what, strerror(errno));
    hs_ctx_track(c, fd);
    snprintf(msg, sizeof msg, "via %s" SEP, addr);
    if (hs_ping(fd, msg, IO_MS) < 0)
        HS_FAIL("bind = :0: no echo through %s (%s)", addr, what);
    hs_ctx_untrack_close(c, fd);
}

/* 20. bind = :0 listens on every interface, IPv4 and IPv6. */
static void test_bind_any(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    bool v6 = hs_have_ipv6_loopback();
    struct hs_proc *srv = hs_ctx_start(c, ":0", 1, 0, "");
    const char *addr = hs_addr(srv, 0);
    const char *colon;
    char target[HS_ADDR_MAX];

    assert_non_null(addr);
    fprintf(stderr, "# bind = :0 logged as %s\n", addr);
    if (strncmp(addr, "[::]:", 5) != 0 && (v6 || strncmp(addr, "0.0.0.0:", 8) != 0))
        HS_FAIL("bind = :0 was logged as '%s', expected [::]:PORT%s", addr,
                v6 ? "" : " or 0.0.0.0:PORT");
    colon = strrchr(addr, ':');
    long port = strtol(colon + 1, NULL, 10);
    if (port <= 0 || port > 65535)
        HS_FAIL("bind = :0 was logged as '%s': no port", addr);

    snprintf(target, sizeof target, "127.0.0.1:%ld", port);
    ping_via(c, target, "IPv4 loopback");
    if (v6) {
        snprintf(target, sizeof target, "[::1]:%ld", port);
        ping_via(c, target, "IPv6 loopback");
    } else {
        fprintf(stderr, "# no ::1 in /proc/net/if_inet6: IPv6 part left out\n");
    }
}

/* 21. plugin_dir and a plugin path are relative to the INI file's directory. */
static void test_plugin_relative(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    char link[512];
    struct hs_proc *srv;
    int fd;

    assert_non_null(pd);
    snprintf(link, sizeof link, "%s/rel", c->dir);
    if (symlink(pd, link) < 0)
        HS_FAIL("symlink %s -> %s: %s", link, pd, strerror(errno));
    if (access("rel", F_OK) == 0)
        fprintf(stderr, "# note: ./rel exists in the working directory too\n");

    srv = start_ini(c, "reldir.ini", 0,
                    "[server]\nbind = 127.0.0.1:0\nthreads = 1\nplugin = echo\n"
                    "plugin_dir = rel\n");
    fd = conn(c, hs_addr(srv, 0));
    if (hs_ping(fd, "plugin_dir = rel" SEP, IO_MS) < 0)
        HS_FAIL("plugin_dir = rel: no echo");
    hs_ctx_untrack_close(c, fd);
    hs_proc_free(srv);

    srv = start_ini(c, "relpath.ini", 0,
                    "[server]\nbind = 127.0.0.1:0\nthreads = 1\nplugin = ./rel/echo.so\n");
    fd = conn(c, hs_addr(srv, 0));
    if (hs_ping(fd, "plugin = ./rel/echo.so" SEP, IO_MS) < 0)
        HS_FAIL("plugin = ./rel/echo.so: no echo");
    hs_ctx_untrack_close(c, fd);
    hs_proc_free(srv);
}

/* 23. A connection that closes (QUIT) while paused for backpressure, with input still coming,
 * lingers without spinning the worker. */
static void test_close_while_paused(void **state)
{
    enum { BIG = 8 * 1024 * 1024 };
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "");
    int fd = conn(c, hs_addr(srv, 0));
    char *big = malloc(BIG);
    assert_non_null(big);
    hs_fill_pattern(big, BIG, 2301);
    /* The 8 MiB reply is queued unread (the server stops reading this connection), QUIT
     * arrives with the end of the message, and one more request behind them. */
    if (hs_send_all(fd, big, BIG, IO_MS) < 0)
        HS_FAIL("cannot send 8 MiB: %s", strerror(errno));
    static const char tail[] = "\r\n\r\nQUIT\r\n\r\n";
    if (hs_send_all(fd, tail, sizeof tail - 1, IO_MS) < 0)
        HS_FAIL("cannot send QUIT: %s", strerror(errno));
    if (hs_recv_exact(fd, big, 1, IO_MS) != 1) /* the reply has begun: both were handled */
        HS_FAIL("no reply to the 8 MiB message: %s", strerror(errno));
    if (hs_send_all(fd, "more\r\n\r\n", 8, IO_MS) < 0)
        HS_FAIL("cannot send the last request: %s", strerror(errno));
    /* Read the reply and QUIT's until the server closes its side. */
    size_t want = BIG + 2 * SEPLEN + 4 - 1, got = 0;
    for (;;) {
        ssize_t n = hs_recv_exact(fd, big, BIG, IO_MS);
        if (n < 0)
            HS_FAIL("reading the replies: %s", strerror(errno));
        got += (size_t)n;
        if ((size_t)n < BIG)
            break;
    }
    if (got != want)
        HS_FAIL("got %zu reply bytes before the close, expected %zu", got, want);
    free(big);
    /* The server now waits for our FIN (up to 2 s): that wait must cost nothing. */
    double cpu0 = hs_proc_cpu_seconds(hs_pid(srv));
    hs_sleep_ms(1000);
    double cpu1 = hs_proc_cpu_seconds(hs_pid(srv));
    fprintf(stderr, "# server CPU in the second after the close: %.2f s\n", cpu1 - cpu0);
    if (cpu1 - cpu0 > 0.3)
        HS_FAIL("the server used %.2f s of CPU in 1 s while the connection lingered", cpu1 - cpu0);
}

/* 22. max_message = 1K means 1024 bytes, separator included. */
static void test_max_message_suffix(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "max_message = 1K\n");
    int b = conn(c, hs_addr(srv, 0));
    int a = conn(c, hs_addr(srv, 0));
    char frame[1025];
    char reply[1024];
    size_t got = 0;

    assert_int_equal(hs_ping(b, "before" SEP, IO_MS), 0);
    hs_fill_pattern(frame, 1024 - SEPLEN, 9);
    memcpy(frame + 1024 - SEPLEN, SEP, SEPLEN);
    if (hs_exchange(a, frame, 1024, reply, 1024, IO_MS, &got) < 0)
        HS_FAIL("a 1024-byte frame (max_message = 1K) was not echoed: got %zu bytes, %s", got,
                strerror(errno));
    assert_true(hs_same_bytes("1024-byte frame", frame, reply, 1024));
    hs_assert_quiet(a, 100);

    int d = conn(c, hs_addr(srv, 0));
    hs_fill_pattern(frame, 1025 - SEPLEN, 10);
    memcpy(frame + 1025 - SEPLEN, SEP, SEPLEN);
    hs_send_all(d, frame, sizeof frame, IO_MS);     /* may fail once the server resets */
    int r = hs_wait_closed(d, 3000);
    if (r == 1)
        HS_FAIL("a 1025-byte frame (max_message = 1K) was answered instead of refused");
    if (r < 0)
        HS_FAIL("a 1025-byte frame (max_message = 1K) did not close the connection within 3 s");
    assert_int_equal(hs_ping(b, "after" SEP, IO_MS), 0);
    assert_int_equal(hs_ping(a, "after" SEP, IO_MS), 0);
}

/* Counts the occurrences of NEEDLE in HAY. */
static int count_of(const char *hay, const char *needle)
{
    int n = 0;

    for (const char *s = hay; (s = strstr(s, needle)) != NULL; s += strlen(needle))
        n++;
    return n;
}

/* 24. [listener NAME] sections: one process serves echo (with the separator of its [echo]
 * section), raw and resp, each on its own port; -t describes every listener. */
static void test_multi_protocol(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    static const char *const names[] = { "pulsar", "rfc862", "redis" };
    static const char *const plugins[] = { "echo", "raw", "resp" };
    char addr[3][HS_ADDR_MAX];
    char buf[256];

    assert_non_null(pd);
    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "multi.ini",
                                   "[server]\nthreads = 2\nplugin_dir = %s\nlog_level = info\n\n"
                                   "[listener pulsar]\nbind = 127.0.0.1:0\n\n"
                                   "[listener rfc862]\nbind = 127.0.0.1:0\nplugin = raw\n"
                                   "max_message = 64K\n\n"
                                   "[listener redis]\nbind = 127.0.0.1:0\nplugin = resp\n\n"
                                   "[echo]\nseparator = \\n\n\n[resp]\nmax_args = 8\n", pd), 0);
    const char *check[] = { "-t", "-c", c->conf, NULL };
    char *summary = run_expect(check, 0);
    for (int i = 0; i < 3; i++) {
        char want[128];
        snprintf(want, sizeof want, "listener %s: bind 127.0.0.1:0; plugin %s ", names[i],
                 plugins[i]);
        if (strstr(summary, want) == NULL) {
            fprintf(stderr, "# echosrv -t printed:\n# %s\n", summary);
            free(summary);
            HS_FAIL("echosrv -t does not describe listener %s ('%s')", names[i], want);
        }
    }
    free(summary);

    struct hs_proc *srv = hs_ctx_start_conf(c, 3, 0);
    char *out = hs_output(srv);
    assert_non_null(out);
    for (int i = 0; i < 3; i++) {
        if (hs_listener_addr(out, names[i], addr[i], sizeof addr[i]) < 0) {
            hs_dump_output(srv, "no listening line");
            free(out);
            HS_FAIL("no 'listening on ADDR (listener %s, plugin ...)' line", names[i]);
        }
        if (strncmp(addr[i], "127.0.0.1:", 10) != 0 || strcmp(addr[i], "127.0.0.1:0") == 0) {
            free(out);
            HS_FAIL("listener %s logged as '%s', not with its actual port", names[i],
                    addr[i]);
        }
    }
    free(out);

    /* echo: the separator is [echo]'s "\n", not the default "\r\n\r\n". */
    int fd = conn(c, addr[0]);
    if (hs_ping(fd, "ping\n", IO_MS) < 0)
        HS_FAIL("listener pulsar (echo, separator \\n) did not echo 'ping\\n'");

    /* raw: every byte back, whatever it is. */
    fd = conn(c, addr[1]);
    static const char bytes[] = "no separator at all\r\n\0\xff";
    assert_int_equal(hs_send_all(fd, bytes, sizeof bytes, IO_MS), 0);
    assert_int_equal(hs_recv_exact(fd, buf, sizeof bytes, IO_MS), (ssize_t)sizeof bytes);
    assert_memory_equal(buf, bytes, sizeof bytes);

    /* resp: PING as an inline command and as an array. */
    fd = conn(c, addr[2]);
    assert_int_equal(hs_send_all(fd, "PING\r\n", 6, IO_MS), 0);
    assert_int_equal(hs_recv_exact(fd, buf, 7, IO_MS), 7);
    assert_memory_equal(buf, "+PONG\r\n", 7);
    assert_int_equal(hs_send_all(fd, "*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n", 22, IO_MS), 0);
    assert_int_equal(hs_recv_exact(fd, buf, 8, IO_MS), 8);
    assert_memory_equal(buf, "$2\r\nhi\r\n", 8);

    /* Each port speaks only its own protocol: echo's port does not answer a RESP PING. */
    fd = conn(c, addr[0]);
    assert_int_equal(hs_send_all(fd, "PING\r", 5, IO_MS), 0);
    hs_assert_quiet(fd, 200);
}

/* 25. Two listeners of one plugin (named once by name, once by path): the plugin is loaded and
 * initialised once; each listener enforces its own max_message and idle_timeout. */
static void test_listeners_share_plugin(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    char strict[HS_ADDR_MAX];
    char lax[HS_ADDR_MAX];
    char msg[200];

    assert_non_null(pd);
    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "shared.ini",
                                   "[server]\nthreads = 2\nplugin_dir = %s\n\n"
                                   "[listener strict]\nbind = 127.0.0.1:0\nplugin = echo\n"
                                   "max_message = 64\nidle_timeout = 1\n\n"
                                   "[listener lax]\nbind = 127.0.0.1:0\nplugin = %s/./echo.so\n",
                                   pd, pd), 0);
    struct hs_proc *srv = hs_ctx_start_conf(c, 2, 0);
    char *out = hs_output(srv);
    assert_non_null(out);
    int loads = count_of(out, " loaded from "); /* one line per plugin init */
    bool both = strstr(out, "for listeners strict, lax") != NULL;
    int ok = hs_listener_addr(out, "strict", strict, sizeof strict) == 0 &&
             hs_listener_addr(out, "lax", lax, sizeof lax) == 0;
    if (loads != 1 || !both || !ok)
        hs_dump_output(srv, "start-up");
    free(out);
    if (loads != 1)
        HS_FAIL("plugin echo was loaded (initialised) %d times for two listeners, expected once",
                loads);
    if (!both)
        HS_FAIL("the plugin's load line does not name both listeners");
    if (!ok)
        HS_FAIL("missing 'listening on' lines for listeners strict and lax");

    /* max_message: 100 bytes without a separator close the strict listener's connection
     * only; the lax one echoes 100 bytes plus separator. */
    int s1 = conn(c, strict);
    int l1 = conn(c, lax);
    long t0 = hs_now_ms();
    int s2 = conn(c, strict);
    int l2 = conn(c, lax);
    memset(msg, 'm', 100);
    assert_int_equal(hs_send_all(s1, msg, 100, IO_MS), 0);
    if (hs_wait_closed(s1, 2000) != 0)
        HS_FAIL("100 bytes on the listener with max_message = 64 did not close it");
    memcpy(msg + 100, SEP, SEPLEN);
    msg[100 + SEPLEN] = '\0';
    if (hs_ping(l1, msg, IO_MS) < 0)
        HS_FAIL("the listener with the default max_message refused a 104-byte message");

    /* idle_timeout = 1 on strict only: its idle connection closes, the lax one stays. */
    int r = hs_wait_closed(s2, 4000);
    long closed_ms = hs_now_ms() - t0;
    if (r != 0)
        HS_FAIL("the idle connection of the listener with idle_timeout = 1 was not closed "
                "within 4 s");
    if (closed_ms < 950)
        HS_FAIL("closed after %ld ms, before idle_timeout = 1 s", closed_ms);
    long left = t0 + 2500 - hs_now_ms();
    if (left > 0)
        hs_sleep_ms((int)left);
    hs_assert_quiet(l2, 100);
    if (hs_ping(l2, "still here" SEP, IO_MS) < 0)
        HS_FAIL("the idle connection of the listener without idle_timeout was closed");
    if (hs_ping(l1, "again" SEP, IO_MS) < 0)
        HS_FAIL("the lax listener's first connection was closed");
}

/* 26. Listener configuration errors name FILE:LINE, with -t and without. */
static void test_listener_config_errors(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    char text[2048];

    assert_non_null(pd);
    snprintf(text, sizeof text,
             "[server]\nplugin_dir = %s\nbind = 127.0.0.1:0\n\n[listener a]\nbind = 127.0.0.1:0\n",
             pd);
    check_bad_config(c, "server_bind.ini", 3, "[listener NAME]", text);
    snprintf(text, sizeof text, "[server]\nplugin_dir = %s\n\n[listener a]\nplugin = raw\n", pd);
    check_bad_config(c, "no_bind.ini", 4, "bind", text);
    snprintf(text, sizeof text, "[server]\nplugin_dir = %s\n[listener a/b]\nbind = 127.0.0.1:0\n",
             pd);
    check_bad_config(c, "bad_name.ini", 3, "a/b", text);
    snprintf(text, sizeof text,
             "[server]\nplugin_dir = %s\n[listener a]\nbind = 127.0.0.1:0\nseparator = x\n", pd);
    check_bad_config(c, "listener_key.ini", 5, "separator", text);
    /* [raw] is not the section of a loaded plugin here. */
    snprintf(text, sizeof text,
             "[server]\nplugin_dir = %s\n[listener a]\nbind = 127.0.0.1:0\n[listener b]\n"
             "bind = 127.0.0.1:0\nplugin = resp\n\n[raw]\n", pd);
    check_bad_config(c, "unknown_section.ini", 9, "[raw]", text);
    /* A missing plugin is reported at the listener's plugin line. */
    snprintf(text, sizeof text,
             "[server]\nplugin_dir = %s\n[listener a]\nbind = 127.0.0.1:0\n[listener b]\n"
             "bind = 127.0.0.1:0\nplugin = nosuch\n", pd);
    check_bad_config(c, "missing_plugin.ini", 7, "nosuch", text);
}

/* 27. A listener's own max_connections refuses its extra connections only; [server]'s cap
 * counts every listener. */
static void test_listener_max_connections(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    char one[HS_ADDR_MAX];
    char other[HS_ADDR_MAX];

    assert_non_null(pd);
    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "maxconn.ini",
                                   "[server]\nthreads = 2\nplugin_dir = %s\nmax_connections = 3\n"
                                   "[listener one]\nbind = 127.0.0.1:0\nmax_connections = 1\n"
                                   "[listener other]\nbind = 127.0.0.1:0\n", pd), 0);
    struct hs_proc *srv = hs_ctx_start_conf(c, 2, 0);
    char *out = hs_output(srv);
    assert_non_null(out);
    int ok = hs_listener_addr(out, "one", one, sizeof one) == 0 &&
             hs_listener_addr(out, "other", other, sizeof other) == 0;
    free(out);
    if (!ok)
        HS_FAIL("missing 'listening on' lines for listeners one and other");

    int a = conn(c, one);
    assert_int_equal(hs_ping(a, "first" SEP, IO_MS), 0);
    int b = conn(c, one);
    if (hs_wait_closed(b, 2000) != 0)
        HS_FAIL("a 2nd connection to the listener with max_connections = 1 was not refused");
    /* The other listener still has room: 2 more reach [server]'s cap of 3. */
    int d = conn(c, other);
    int e = conn(c, other);
    assert_int_equal(hs_ping(d, "d" SEP, IO_MS), 0);
    assert_int_equal(hs_ping(e, "e" SEP, IO_MS), 0);
    int f = conn(c, other);
    if (hs_wait_closed(f, 2000) != 0)
        HS_FAIL("a 4th connection in all was not refused ([server] max_connections = 3)");
    assert_int_equal(hs_ping(a, "still" SEP, IO_MS), 0);
    /* The server logs after it closes the refused socket: wait for the line. */
    if (hs_wait_output(srv, "max_connections (1) of listener one reached", IO_MS) != 0)
        HS_FAIL("no warning naming listener one's max_connections");
}

/* Asserts that the server closes FD without a reply to a message. */
static void assert_refused(int fd, const char *what)
{
    ssize_t r = send(fd, "hello" SEP, 5 + SEPLEN, MSG_NOSIGNAL);
    (void)r;
    int rc = hs_wait_closed(fd, IO_MS);
    if (rc == 1)
        HS_FAIL("%s: got a reply instead of a close", what);
    if (rc != 0)
        HS_FAIL("%s: not closed within %d ms", what, IO_MS);
}

/* allow/deny lists per listener (and [server]'s default), checked at accept; socket_mode on a
 * unix listener, whose peers CIDR lists do not apply to. */
static void test_access_control(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    static const char *const names[] = {"denied", "allowed", "ten", "other"};
    char addrs[4][HS_ADDR_MAX];
    char sock[300];
    char unix_addr[320];

    assert_non_null(pd);
    snprintf(sock, sizeof sock, "%s/acl.sock", c->dir);
    snprintf(unix_addr, sizeof unix_addr, "unix:%s", sock);
    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "acl.ini",
                                   "[server]\nthreads = 2\nplugin_dir = %s\nlog_level = debug\n"
                                   "deny = 127.0.0.1\n"
                                   "[listener denied]\nbind = 127.0.0.1:0\n"
                                   "[listener allowed]\nbind = 127.0.0.1:0\ndeny =\n"
                                   "allow = 127.0.0.0/8, ::1/128\n"
                                   "[listener ten]\nbind = 127.0.0.1:0\ndeny =\n"
                                   "allow = 10.0.0.0/8\n"
                                   "[listener other]\nbind = 127.0.0.1:0, %s\n"
                                   "deny = 127.0.0.2\nallow = 127.0.0.0/8\nsocket_mode = 0600\n",
                                   pd, unix_addr), 0);
    struct hs_proc *srv = hs_ctx_start_conf(c, 5, 0);
    char *out = hs_output(srv);
    assert_non_null(out);
    int ok = 1;
    for (int i = 0; i < 4; i++)
        ok = ok && hs_listener_addr(out, names[i], addrs[i], sizeof addrs[i]) == 0 &&
             strncmp(addrs[i], "127.0.0.1:", 10) == 0;
    free(out);
    if (!ok)
        HS_FAIL("missing 'listening on 127.0.0.1:PORT' lines for the four listeners");

    /* [server]'s deny = 127.0.0.1 is the default. */
    assert_refused(conn(c, addrs[0]), "deny = 127.0.0.1 (from [server])");
    assert_int_equal(hs_ping(conn(c, addrs[1]), "allowed" SEP, IO_MS), 0);
    assert_refused(conn(c, addrs[2]), "allow = 10.0.0.0/8");
    /* deny = 127.0.0.2: 127.0.0.1 is served, 127.0.0.2 is not. */
    assert_int_equal(hs_ping(hs_ctx_connect_from(c, "127.0.0.1", addrs[3], IO_MS), "from .1" SEP, IO_MS), 0);
    assert_refused(hs_ctx_connect_from(c, "127.0.0.2", addrs[3], IO_MS), "deny = 127.0.0.2");
    assert_int_equal(hs_ping(hs_ctx_connect_from(c, "127.0.0.3", addrs[3], IO_MS), "from .3" SEP, IO_MS), 0);
    /* The unix socket of the same listener: mode 0600, its peers served (the allow list is
     * for IP peers only). */
    struct stat st;
    assert_int_equal(stat(sock, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    if ((st.st_mode & 07777) != 0600)
        HS_FAIL("socket_mode = 0600 gave mode %04o", (unsigned)(st.st_mode & 07777));
    assert_int_equal(hs_ping(conn(c, unix_addr), "unix" SEP, IO_MS), 0);
    if (hs_wait_output(srv, "refusing 127.0.0.2:", 2000) != 0)
        HS_FAIL("no debug line about the refused peer 127.0.0.2");
}

/* ---- the I/O back end: [server] io and --io ---------------------------------------------- */

/* io_uring instances PID holds (anon_inode:[io_uring] in /proc/PID/fd), or -1. */
static int uring_fd_count(pid_t pid)
{
    char dir[64];
    DIR *d;
    int n = 0;

    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    d = opendir(dir);
    if (d == NULL)
        return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char path[sizeof dir + sizeof e->d_name];
        char target[64];
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t len = readlink(path, target, sizeof target - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        n += strcmp(target, "anon_inode:[io_uring]") == 0;
    }
    closedir(d);
    return n;
}

/* Starts echosrv with exactly ARGS: the --io the harness adds for ECHOSRV_TEST_IO (to every
 * spawn, hs_spawn_exact() included) is set aside for this one, so that the back end is what
 * ARGS and the INI file ask for. Returns the server once it listens; or NULL once it exited,
 * with its wait status in *STATUS and its output in *OUT (the caller frees it). Fails the test
 * if neither happens within HS_READY_MS. */
static struct hs_proc *io_start(const char *const args[], int *status, char **out)
{
    const char *v = getenv("ECHOSRV_TEST_IO");
    char *saved = v != NULL ? strdup(v) : NULL;
    struct hs_proc *p;

    assert_true(v == NULL || saved != NULL);
    unsetenv("ECHOSRV_TEST_IO");
    p = hs_spawn_exact(args, 0);
    if (saved != NULL) {
        setenv("ECHOSRV_TEST_IO", saved, 1);
        free(saved);
    }
    assert_non_null(p);
    if (hs_wait_listening(p, 1, HS_READY_MS) == 0)
        return p;
    *status = hs_wait_exit(p, STOP_MS);
    if (*status < 0) {
        hs_dump_output(p, "neither listening nor gone");
        HS_FAIL("echosrv neither listened nor exited within %d ms", HS_READY_MS + STOP_MS);
    }
    *out = hs_output(p);
    assert_non_null(*out);
    hs_proc_free(p);
    return NULL;
}

/* Asserts that SRV (started for WHAT) logged exactly one 'io: ' line, the one that begins
 * with LOGGED (the message with its opening quote: msg="io: ...), that it holds an io_uring
 * instance if and only if URING says so, and that it echoes. */
static void assert_running(struct hs_ctx *c, struct hs_proc *srv, const char *what,
                           const char *logged, bool uring)
{
    char *out = hs_output(srv);
    char msg[200];

    assert_non_null(out);
    int lines = count_of(out, "msg=\"io: ");
    bool found = strstr(out, logged) != NULL;
    int rings = uring_fd_count(hs_pid(srv));
    free(out);
    if (lines != 1 || !found) {
        hs_dump_output(srv, "start-up");
        HS_FAIL("%s: expected the line %s...; found %d 'io: ' line(s), %s", what, logged, lines,
                found ? "that one among them" : "none of them that one");
    }
    if (rings < 0)
        HS_FAIL("%s: cannot read /proc/%d/fd: %s", what, (int)hs_pid(srv), strerror(errno));
    /* The log must not lie: io_uring workers hold their rings, epoll ones none. */
    if (uring ? rings < 1 : rings != 0)
        HS_FAIL("%s: logged %s...\" but the process holds %d io_uring instance(s)", what, logged,
                rings);
    int fd = conn(c, hs_addr(srv, 0));
    snprintf(msg, sizeof msg, "%s" SEP, what);
    if (hs_ping(fd, msg, IO_MS) < 0)
        HS_FAIL("%s: no echo", what);
    echo_pattern(fd, 256 * 1024, 2801);
    hs_ctx_untrack_close(c, fd);
}

/* assert_running(), then SRV must stop cleanly on SIGTERM. Frees SRV. */
static void assert_backend(struct hs_ctx *c, struct hs_proc *srv, const char *what,
                           const char *logged, bool uring)
{
    assert_running(c, srv, what, logged, uring);
    stop_ok(srv, what);
    hs_proc_free(srv);
}

/* Whether echosrv runs io_uring here (1) or refuses it (0), as echosrv itself found when first
 * asked (expect_io()); -1 until then. */
static int uring_ok = -1;

enum io_want { WANT_EPOLL, WANT_URING, WANT_AUTO };

static void expect_io(struct hs_ctx *c, const char *const args[], enum io_want want,
                      const char *what);

/* Sets uring_ok, asking echosrv (--io io_uring on CONF) if nobody has yet. */
static void learn_uring(struct hs_ctx *c, const char *conf)
{
    if (uring_ok < 0) {
        const char *args[] = { "--allow-root", "-c", conf, "--io", "io_uring", NULL };
        expect_io(c, args, WANT_URING, "probe: --io io_uring");
    }
}

/* Starts echosrv with exactly ARGS (io_start()), which ask (as WHAT says) for the back end
 * WANT, and asserts the outcome. epoll: it serves with epoll. io_uring: either it serves with
 * io_uring, or (a kernel without it) it exits 1 with an error naming io_uring and never
 * listens; the first answer is kept in uring_ok and later ones must agree. auto: it serves,
 * with io_uring exactly when io_uring is usable, else with epoll, saying why. The serving
 * cases are checked by assert_backend(). */
static void expect_io(struct hs_ctx *c, const char *const args[], enum io_want want,
                      const char *what)
{
    int status = -1;
    char *out = NULL;
    struct hs_proc *srv = io_start(args, &status, &out);

    if (want == WANT_URING) {
        int ok = srv != NULL;
        if (uring_ok >= 0 && ok != uring_ok) {
            if (out != NULL)
                hs_dump_lines(what, out, strlen(out));
            free(out);
            HS_FAIL("%s: echosrv %s io_uring now, but %s it before", what,
                    ok ? "runs" : "refuses", uring_ok ? "ran" : "refused");
        }
        uring_ok = ok;
        if (srv != NULL) {
            assert_backend(c, srv, what, "msg=\"io: io_uring\"", true);
            return;
        }
        bool named = strstr(out, "echosrv: ") != NULL && strstr(out, "io_uring: ") != NULL;
        bool listened = strstr(out, "listening on") != NULL;
        fprintf(stderr, "# %s: echosrv refuses io_uring here\n", what);
        hs_dump_lines("its output", out, strlen(out));
        free(out);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 1)
            HS_FAIL("%s: refused to start with wait status %d, expected exit 1", what, status);
        if (!named)
            HS_FAIL("%s: the refusal does not say why io_uring cannot be used", what);
        if (listened)
            HS_FAIL("%s: listened before refusing io_uring", what);
        return;
    }
    if (srv == NULL) {
        hs_dump_lines(what, out, strlen(out));
        free(out);
        HS_FAIL("%s: echosrv did not start (wait status %d)", what, status);
    }
    if (want == WANT_EPOLL) {
        assert_backend(c, srv, what, "msg=\"io: epoll\"", false);
        return;
    }
    /* auto: uring_ok is known by now (learn_uring() before any auto). */
    assert_true(uring_ok >= 0);
    if (uring_ok)
        assert_backend(c, srv, what, "msg=\"io: io_uring\"", true);
    else
        assert_backend(c, srv, what, "msg=\"io: epoll (io_uring not available: ", false);
}

/* 28. --io epoll|io_uring|auto chooses the back end (logged as 'io: ...', and really run);
 * io_uring where the kernel refuses it is a clear start-up error; a bad value is refused. */
static void test_io_cli(void **state)
{
    struct hs_ctx *c = begin(state, __func__);

    assert_int_equal(hs_write_config(c->conf, sizeof c->conf, c->dir, "io.ini", "127.0.0.1:0",
                                     "%s", ""), 0);
    const char *epoll[] = { "--allow-root", "-c", c->conf, "--io", "epoll", NULL };
    expect_io(c, epoll, WANT_EPOLL, "--io epoll");
    const char *uring[] = { "--allow-root", "-c", c->conf, "--io", "io_uring", NULL };
    expect_io(c, uring, WANT_URING, "--io io_uring");
    const char *autom[] = { "--allow-root", "-c", c->conf, "--io", "auto", NULL };
    expect_io(c, autom, WANT_AUTO, "--io auto");
    /* The last --io counts (the harness puts its own first, for ECHOSRV_TEST_IO). */
    const char *twice[] = { "--allow-root", "-c", c->conf, "--io", "io_uring", "--io", "epoll",
                            NULL };
    expect_io(c, twice, WANT_EPOLL, "--io io_uring --io epoll");

    /* A bad value: exit 2 naming it, before anything else. */
    const char *bad[] = { "-c", c->conf, "--io", "bad", NULL };
    char *out = run_expect(bad, 2);
    bool named = strstr(out, "--io: 'bad' is not epoll, io_uring or auto") != NULL;
    bool listened = strstr(out, "listening on") != NULL;
    if (!named || listened)
        hs_dump_lines("echosrv --io bad", out, strlen(out));
    free(out);
    if (!named)
        HS_FAIL("echosrv --io bad: no \"--io: 'bad' is not epoll, io_uring or auto\"");
    if (listened)
        HS_FAIL("echosrv --io bad started listening");
    const char *bad_t[] = { "-t", "-c", c->conf, "--io", "EPOLL", NULL };
    out = run_expect(bad_t, 2);
    named = strstr(out, "'EPOLL'") != NULL;
    free(out);
    if (!named)
        HS_FAIL("echosrv -t --io EPOLL: the message does not name 'EPOLL'");
    const char *missing[] = { "-c", c->conf, "--io", NULL };
    free(run_expect(missing, 2));
}

/* 29. [server] io: used when no --io is given (auto by default); --io wins over it; a bad
 * value is FILE:LINE: io: 'bad' ..., with -t and without, whatever --io says. */
static void test_io_config(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    static const char *const values[] = { "epoll", "io_uring", "auto", NULL };  /* NULL: no key */
    static const enum io_want wants[] = { WANT_EPOLL, WANT_URING, WANT_AUTO, WANT_AUTO };
    char text[1024];
    char want[700];

    assert_non_null(pd);
    /* io = bad on line 6. */
    snprintf(text, sizeof text, "[server]\nbind = 127.0.0.1:0\nthreads = 2\nplugin = echo\n"
             "plugin_dir = %s\nio = bad\n", pd);
    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "bad_io.ini", "%s", text),
                     0);
    snprintf(want, sizeof want, "%s:6: io: 'bad' is not epoll, io_uring or auto", c->conf);
    const char *check[] = { "-t", "-c", c->conf, NULL };
    const char *run[] = { "-c", c->conf, NULL };
    const char *run_io[] = { "-c", c->conf, "--io", "epoll", NULL };
    const char *const *modes[] = { check, run, run_io };
    static const char *const mode_names[] = { "-t -c", "-c", "-c ... --io epoll" };
    for (int i = 0; i < 3; i++) {
        char *out = run_expect(modes[i], 1);
        bool ok = strstr(out, want) != NULL;
        bool listened = strstr(out, "listening on") != NULL;
        if (!ok || listened)
            hs_dump_lines(mode_names[i], out, strlen(out));
        free(out);
        if (!ok)
            HS_FAIL("echosrv %s bad_io.ini: expected '%s'", mode_names[i], want);
        if (listened)
            HS_FAIL("echosrv %s bad_io.ini: started listening", mode_names[i]);
    }

    /* The INI alone (no --io at all), then with --io naming the other back end. */
    for (int i = 0; i < 4; i++) {
        char what[96];
        char name[32];
        char conf[512];
        if (values[i] != NULL)
            snprintf(text, sizeof text, "[server]\nbind = 127.0.0.1:0\nthreads = 2\n"
                     "plugin = echo\nplugin_dir = %s\nio = %s\n", pd, values[i]);
        else
            snprintf(text, sizeof text, "[server]\nbind = 127.0.0.1:0\nthreads = 2\n"
                     "plugin = echo\nplugin_dir = %s\n", pd);
        snprintf(name, sizeof name, "io%d.ini", i);
        assert_int_equal(hs_write_file(conf, sizeof conf, c->dir, name, "%s", text), 0);
        if (wants[i] != WANT_EPOLL)
            learn_uring(c, conf);
        snprintf(what, sizeof what, "io = %s", values[i] != NULL ? values[i] : "(none: auto)");
        const char *alone[] = { "--allow-root", "-c", conf, NULL };
        expect_io(c, alone, wants[i], what);
        if (wants[i] == WANT_AUTO)
            continue;
        /* --io wins: io = epoll with --io io_uring, io = io_uring with --io epoll. */
        bool to_uring = wants[i] == WANT_EPOLL;
        snprintf(what, sizeof what, "io = %s, --io %s", values[i], to_uring ? "io_uring" : "epoll");
        const char *over[] = { "--allow-root", "-c", conf, "--io", to_uring ? "io_uring" : "epoll",
                               NULL };
        expect_io(c, over, to_uring ? WANT_URING : WANT_EPOLL, what);
    }
}

/* Writes c->conf (reload_io.ini): the standard [server] section with io = VALUE on line 6. */
static void write_io_conf(struct hs_ctx *c, const char *value)
{
    const char *pd = hs_env_path("ES_PLUGIN_DIR");

    assert_non_null(pd);
    hs_ctx_write_conf(c, "reload_io.ini", "[server]\nbind = 127.0.0.1:0\nthreads = 2\n"
                      "plugin = echo\nplugin_dir = %s\nio = %s\n", pd, value);
}

/* 30. A reload does not change the back end: io = epoll -> io_uring on SIGHUP logs that it
 * waits for a restart (not when --io fixed it), the workers keep epoll and serve on; io = bad
 * is refused, FILE:LINE named, like any bad file. */
static void test_io_reload(void **state)
{
    static const char warn[] =
        "reload: io takes effect at the next start; the workers keep using epoll";
    struct hs_ctx *c = begin(state, __func__);
    char want[700];

    for (int cli = 0; cli < 2; cli++) {
        const char *what = cli ? "io = epoll, --io epoll" : "io = epoll";
        const char *plain[] = { "--allow-root", "-c", c->conf, NULL };
        const char *fixed[] = { "--allow-root", "-c", c->conf, "--io", "epoll", NULL };
        int status = -1;
        char *out = NULL;

        write_io_conf(c, "epoll");
        struct hs_proc *srv = io_start(cli ? fixed : plain, &status, &out);
        if (srv == NULL) {
            hs_dump_lines(what, out, strlen(out));
            free(out);
            HS_FAIL("%s: echosrv did not start (wait status %d)", what, status);
        }
        assert_running(c, srv, what, "msg=\"io: epoll\"", false);
        int fd = conn(c, hs_addr(srv, 0));
        assert_int_equal(hs_ping(fd, "before" SEP, IO_MS), 0);

        write_io_conf(c, "io_uring");
        hs_reload(srv, 1);              /* the warning comes before the 'reloaded' line */
        bool warned = hs_output_has(srv, warn);
        int rings = uring_fd_count(hs_pid(srv));
        if (warned != !cli)
            hs_dump_output(srv, "reload");
        if (!cli && !warned)
            HS_FAIL("%s, reloaded with io = io_uring: no '%s'", what, warn);
        if (cli && warned)
            HS_FAIL("%s, reloaded with io = io_uring: a warning about io, which --io fixes", what);
        if (rings != 0)
            HS_FAIL("%s, reloaded with io = io_uring: %d io_uring instance(s) now", what, rings);
        if (hs_ping(fd, "after" SEP, IO_MS) < 0)
            HS_FAIL("%s: a connection from before the reload is not served after it", what);
        int fresh = conn(c, hs_addr(srv, 0));
        assert_int_equal(hs_ping(fresh, "new" SEP, IO_MS), 0);
        hs_ctx_untrack_close(c, fresh);

        write_io_conf(c, "bad");
        snprintf(want, sizeof want,
                 "reload refused: %s:6: io: 'bad' is not epoll, io_uring or auto", c->conf);
        assert_int_equal(kill(hs_pid(srv), SIGHUP), 0);
        if (hs_wait_output(srv, want, IO_MS) != 0) {
            hs_dump_output(srv, "bad reload");
            HS_FAIL("%s, reloaded with io = bad: no '%s'", what, want);
        }
        if (hs_ping(fd, "still" SEP, IO_MS) < 0)
            HS_FAIL("%s: not served after a refused reload", what);
        hs_ctx_untrack_close(c, fd);
        stop_ok(srv, what);
        hs_proc_free(srv);
    }
}

/* ---- cut-through of long messages (the echo plugin's partial hook) -------------------------- */

/* Reads what FD still brings until the peer closes (EOF or reset) or MS pass: the bytes go to
 * BUF (CAP at most; more are counted, not kept), their number to *GOT. Returns 0 once closed,
 * -1 on timeout or another error. */
static int drain_until_closed(int fd, char *buf, size_t cap, int ms, size_t *got)
{
    long deadline = hs_now_ms() + ms;
    char scratch[4096];

    *got = 0;
    for (;;) {
        int left = (int)(deadline - hs_now_ms());
        struct pollfd pfd = { fd, POLLIN, 0 };
        if (left <= 0)
            return -1;
        int pr = poll(&pfd, 1, left);
        if (pr < 0 && errno != EINTR)
            return -1;
        if (pr <= 0)
            continue;
        bool keep = *got < cap;
        ssize_t n = recv(fd, keep ? buf + *got : scratch, keep ? cap - *got : sizeof scratch,
                         MSG_DONTWAIT);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return errno == ECONNRESET ? 0 : -1;
        }
        *got += (size_t)n;
    }
}

/* 31. A long message comes back as it comes: most of 64 KiB without a separator is echoed
 * before the separator is sent, the rest after it, byte for byte; a tail that may be the
 * start of the separator is held, so a separator split across sends still ends the message. */
static void test_cut_through(void **state)
{
    enum { LONG = 64 * 1024, SOON = 32 * 1024 };
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "");
    int fd = conn(c, hs_addr(srv, 0));
    char *out = malloc(LONG + SEPLEN);
    char *in = malloc(LONG + SEPLEN);

    assert_non_null(out);
    assert_non_null(in);
    hs_fill_pattern(out, LONG, 3001);
    memcpy(out + LONG, SEP, SEPLEN);
    assert_int_equal(hs_send_all(fd, out, LONG, IO_MS), 0);
    if (hs_recv_exact(fd, in, SOON, IO_MS) != SOON)
        HS_FAIL("the first 32 KiB of a 64 KiB message without its separator did not come back "
                "within %d ms (no cut-through): %s", IO_MS, strerror(errno));
    assert_int_equal(hs_send_all(fd, SEP, SEPLEN, IO_MS), 0);
    if (hs_recv_exact(fd, in + SOON, LONG + SEPLEN - SOON, IO_MS) != LONG + SEPLEN - SOON)
        HS_FAIL("the rest of the 64 KiB message did not come back after its separator: %s",
                strerror(errno));
    assert_true(hs_same_bytes("64 KiB message echoed in two parts", out, in, LONG + SEPLEN));
    hs_assert_quiet(fd, 100);

    /* The message ends in "\r\n\r": that tail must wait for the last "\n". */
    hs_fill_pattern(out, LONG - 3, 3002);
    memcpy(out + LONG - 3, SEP, SEPLEN);
    assert_int_equal(hs_send_all(fd, out, LONG, IO_MS), 0);
    if (hs_recv_exact(fd, in, SOON, IO_MS) != SOON)
        HS_FAIL("the second long message: its first 32 KiB did not come back before its end: %s",
                strerror(errno));
    assert_int_equal(hs_send_all(fd, "\n", 1, IO_MS), 0);
    if (hs_recv_exact(fd, in + SOON, LONG + 1 - SOON, IO_MS) != LONG + 1 - SOON)
        HS_FAIL("a separator split as \"\\r\\n\\r\" + \"\\n\" after a long message did not end "
                "it: %s", strerror(errno));
    assert_true(hs_same_bytes("long message with a split separator", out, in, LONG + 1));
    hs_assert_quiet(fd, 100);
    free(out);
    free(in);
    assert_int_equal(hs_ping(fd, "after two long messages" SEP, IO_MS), 0);
}

/* 32. A client may write a whole 16 MiB message (max_message = 32M) before it reads a byte:
 * the server, which echoes its start as it comes, keeps reading; then the whole echo comes. */
static void test_cut_through_writer(void **state)
{
    enum { BODY = 16 * 1024 * 1024, LEN = BODY + SEPLEN };
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "max_message = 32M\n");
    int fd = conn(c, hs_addr(srv, 0));
    char *out = malloc(LEN);
    char *in = malloc(LEN);
    size_t sent = 0;

    assert_non_null(out);
    assert_non_null(in);
    hs_fill_pattern(out, BODY, 3101);
    memcpy(out + BODY, SEP, SEPLEN);
    /* Small buffers on our side, so that a server that stops reading is found out well
     * before 16 MiB, whatever the kernel's autotuning allows. */
    int small = 64 * 1024;
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    long t0 = hs_now_ms();
    long deadline = t0 + 10000;
    while (sent < LEN) {
        int left = (int)(deadline - hs_now_ms());
        if (left <= 0)
            HS_FAIL("writing a 16 MiB message without reading stalled after %zu bytes for 10 s: "
                    "the server stopped reading a message whose start it had echoed", sent);
        ssize_t n = send(fd, out + sent, LEN - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            HS_FAIL("send failed after %zu bytes: %s", sent, strerror(errno));
        struct pollfd pfd = { fd, POLLOUT, 0 };
        poll(&pfd, 1, left);
    }
    long t1 = hs_now_ms();
    ssize_t got = hs_recv_exact(fd, in, LEN, 10000);
    long t2 = hs_now_ms();
    fprintf(stderr, "# 16 MiB written in %ld ms without reading; its echo read in %ld ms\n",
            t1 - t0, t2 - t1);
    if (got != LEN)
        HS_FAIL("the echo of the 16 MiB message: %zd of %d bytes: %s", got, (int)LEN,
                got < 0 ? strerror(errno) : "closed");
    bool same = hs_same_bytes("16 MiB echo", out, in, LEN);
    free(out);
    free(in);
    assert_true(same);
    hs_assert_quiet(fd, 100);
    assert_int_equal(hs_ping(fd, "after 16 MiB" SEP, IO_MS), 0);
}

/* The rest of a message past max_message (MAX): sends OUT[FROM..LEN) to FD, which has echoed
 * the first ECHOED bytes already (in IN, LEN bytes of room), and asserts that the server closes
 * the connection with no more than MAX bytes of the message echoed in all, each the one sent
 * (so a separator at its end never comes back). WHAT names the message. */
static void finish_past_max(int fd, const char *out, size_t from, size_t len, char *in,
                            size_t echoed, size_t max, const char *what)
{
    size_t more = 0;

    hs_send_all(fd, out + from, len - from, IO_MS);    /* may fail once the server resets */
    int r = drain_until_closed(fd, in + echoed, len - echoed, 3000, &more);
    size_t got = echoed + more;
    if (r != 0)
        HS_FAIL("%s (max_message = %zu) did not close the connection within 3 s (%zu bytes "
                "came back)", what, max, got);
    if (got > max)
        HS_FAIL("%s (max_message = %zu): %zu bytes of it came back", what, max, got);
    assert_true(hs_same_bytes(what, out, in, got < len ? got : len));
}

/* 33. max_message bounds a message whose start was echoed already: with max_message = 64K,
 * 100 KiB without a separator, or 70 KiB with one, close the connection after their first
 * 32 KiB came back, and no more than 64 KiB of them come back; messages up to 64 KiB,
 * separator included, are still echoed whole, 64 KiB + 1 is not. */
static void test_cut_through_max_message(void **state)
{
    enum { MAX = 64 * 1024, FIRST = 40 * 1024, SOON = 32 * 1024, TOTAL = 100 * 1024,
           ENDED = 70 * 1024 };
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "max_message = 64K\n");
    int b = conn(c, hs_addr(srv, 0));
    char *out = malloc(TOTAL);
    char *in = malloc(TOTAL);

    assert_non_null(out);
    assert_non_null(in);
    assert_int_equal(hs_ping(b, "before" SEP, IO_MS), 0);
    for (int ended = 0; ended < 2; ended++) {
        size_t len = ended ? ENDED : TOTAL;
        const char *what = ended ? "a 70 KiB message" : "100 KiB without a separator";
        int a = conn(c, hs_addr(srv, 0));
        hs_fill_pattern(out, len, 3301 + (unsigned)ended);
        if (ended)
            memcpy(out + len - SEPLEN, SEP, SEPLEN);
        assert_int_equal(hs_send_all(a, out, FIRST, IO_MS), 0);
        if (hs_recv_exact(a, in, SOON, IO_MS) != SOON)
            HS_FAIL("%s: its first 32 KiB did not come back before the rest was sent: %s", what,
                    strerror(errno));
        finish_past_max(a, out, FIRST, len, in, SOON, MAX, what);
        hs_ctx_untrack_close(c, a);
    }
    if (hs_wait_output(srv, "exceeds max_message (65536 bytes) without an end", IO_MS) != 0) {
        hs_dump_output(srv, "no max_message warning");
        HS_FAIL("no warning 'exceeds max_message (65536 bytes) without an end'");
    }
    assert_int_equal(hs_ping(b, "after" SEP, IO_MS), 0);

    /* 60 KiB and exactly 64 KiB (separator included) are echoed whole; 64 KiB + 1 is not. */
    echo_pattern(b, 60 * 1024, 3303);
    echo_pattern(b, MAX - SEPLEN, 3304);
    hs_assert_quiet(b, 100);
    int d = conn(c, hs_addr(srv, 0));
    hs_fill_pattern(out, MAX + 1 - SEPLEN, 3305);
    memcpy(out + MAX + 1 - SEPLEN, SEP, SEPLEN);
    finish_past_max(d, out, 0, MAX + 1, in, 0, MAX, "a 65537-byte message");
    free(out);
    free(in);
    assert_int_equal(hs_ping(b, "still served" SEP, IO_MS), 0);
}

/* Asserts that FD stays open after WHAT was echoed: nothing more within 100 ms, then a ping. */
static void assert_open_after(int fd, const char *what)
{
    int r = hs_wait_closed(fd, 100);

    if (r == 0)
        HS_FAIL("the connection was closed after %s", what);
    if (r == 1)
        HS_FAIL("unexpected bytes after the echo of %s", what);
    if (hs_ping(fd, "still open" SEP, IO_MS) < 0)
        HS_FAIL("no echo after %s", what);
}

/* 34. QUIT ends a connection only as a whole message: "QUIT" after a long start that went
 * back already is the end of that message (echoed, the connection stays); QUIT alone closes. */
static void test_cut_through_quit(void **state)
{
    enum { LONG = 20000, WHOLE = 12 * 1024, SOON = 8192 };
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start_default(c, "");
    int fd = conn(c, hs_addr(srv, 0));
    char want[LONG + 8];
    char got[LONG + 8];

    memset(want, 'x', LONG);
    memcpy(want + LONG, "QUIT" SEP, 8);
    assert_int_equal(hs_send_all(fd, want, LONG, IO_MS), 0);
    if (hs_recv_exact(fd, got, SOON, IO_MS) != SOON)
        HS_FAIL("no 8 KiB of 20000 'x' (no separator) came back: %s", strerror(errno));
    assert_int_equal(hs_send_all(fd, "QUIT" SEP, 8, IO_MS), 0);
    if (hs_recv_exact(fd, got + SOON, LONG + 8 - SOON, IO_MS) != LONG + 8 - SOON)
        HS_FAIL("20000 'x' + QUIT: the echo did not complete: %s", strerror(errno));
    assert_true(hs_same_bytes("20000 'x' + QUIT", want, got, LONG + 8));
    assert_open_after(fd, "a 20004-byte message ending in QUIT");

    /* All 12 KiB (one read) go back before QUIT comes: the plugin's response gets just
     * "QUIT" + separator, and must know it ends a longer message. */
    assert_int_equal(hs_send_all(fd, want, WHOLE, IO_MS), 0);
    if (hs_recv_exact(fd, got, WHOLE, IO_MS) != WHOLE)
        HS_FAIL("12 KiB of 'x' (no separator) did not all come back: %s", strerror(errno));
    assert_true(hs_same_bytes("12 KiB of 'x'", want, got, WHOLE));
    assert_int_equal(hs_send_all(fd, "QUIT" SEP, 8, IO_MS), 0);
    assert_int_equal(hs_recv_exact(fd, got, 8, IO_MS), 8);
    assert_memory_equal(got, "QUIT" SEP, 8);
    assert_open_after(fd, "a 12292-byte message whose last part was QUIT");

    /* QUIT alone still closes. */
    assert_int_equal(hs_send_all(fd, "QUIT" SEP, 8, IO_MS), 0);
    assert_int_equal(hs_recv_exact(fd, got, 8, IO_MS), 8);
    assert_memory_equal(got, "QUIT" SEP, 8);
    if (hs_wait_closed(fd, 2000) != 0)
        HS_FAIL("QUIT after long messages did not close the connection within 2 s");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        HS_CTX_TEST(test_ping),
        HS_CTX_TEST(test_large_messages),
        HS_CTX_TEST(test_pipelined),
        HS_CTX_TEST(test_fragmented),
        HS_CTX_TEST(test_quit),
        HS_CTX_TEST(test_concurrent),
        HS_CTX_TEST(test_backpressure),
        HS_CTX_TEST(test_max_message),
        HS_CTX_TEST(test_idle_timeout),
        HS_CTX_TEST(test_max_connections),
        HS_CTX_TEST(test_config_and_cli),
        HS_CTX_TEST(test_sigterm),
        HS_CTX_TEST(test_listeners),
        HS_CTX_TEST(test_threads),
        HS_CTX_TEST(test_log_level),
        HS_CTX_TEST(test_shutdown_timeout),
        HS_CTX_TEST(test_shutdown_idle),
        HS_CTX_TEST(test_backlog),
        HS_CTX_TEST(test_bind_any),
        HS_CTX_TEST(test_plugin_relative),
        HS_CTX_TEST(test_max_message_suffix),
        HS_CTX_TEST(test_close_while_paused),
        HS_CTX_TEST(test_multi_protocol),
        HS_CTX_TEST(test_listeners_share_plugin),
        HS_CTX_TEST(test_listener_config_errors),
        HS_CTX_TEST(test_listener_max_connections),
        HS_CTX_TEST(test_access_control),
        HS_CTX_TEST(test_io_cli),
        HS_CTX_TEST(test_io_config),
        HS_CTX_TEST(test_io_reload),
        HS_CTX_TEST(test_cut_through),
        HS_CTX_TEST(test_cut_through_writer),
        HS_CTX_TEST(test_cut_through_max_message),
        HS_CTX_TEST(test_cut_through_quit),
    };

    if (hs_process_init() < 0)
        fprintf(stderr, "# could not raise RLIMIT_NOFILE or ignore SIGPIPE\n");
    return cmocka_run_group_tests_name("echosrv_integration", tests, NULL, NULL);
}
