/* test_plugins.c - integration tests: the raw and resp plugins in the real echosrv, with nc, socat, redis-cli and redis-benchmark as clients. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define IO_MS 5000              /* default bound for one socket operation */
#define READY_MS 10000          /* bound for the 'listening on' line */
#define RUN_MS 20000            /* bound for one run of a client tool */
#define BENCH_MS 120000         /* bound for one redis-benchmark run */
#ifndef TEST_BUDGET_S
#define TEST_BUDGET_S 180       /* SIGALRM backstop per test */
#endif
#define MAX_FDS 64
#define MAX_RUNS 16

/* fail_msg() prints its text without the TAP '# ' prefix: print it as a diagnostic instead. */
#define FAIL(...)                                   \
    do {                                            \
        fprintf(stderr, "# ERROR: ");               \
        fprintf(stderr, __VA_ARGS__);               \
        fputc('\n', stderr);                        \
        fail();                                     \
    } while (0)

/* Length of a string literal, NUL bytes inside included. */
#define LIT(s) (s), (sizeof(s) - 1)

/* What one run of a client tool left behind. */
struct run {
    int status;                 /* wait status, or -1 if it had to be killed */
    char *out;                  /* stdout, NUL-terminated (it may hold NULs itself) */
    size_t out_len;
    char *err;                  /* stderr, NUL-terminated */
    size_t err_len;
    long ms;                    /* how long it ran */
};

/* Per-test state: a private temp dir, the server, fds and runs to release. */
struct ctx {
    char dir[256];
    char conf[512];
    char port[16];              /* the server's port, as text */
    int fds[MAX_FDS];
    int nfds;
    struct run runs[MAX_RUNS];
    int nruns;
};

static int setup(void **state)
{
    struct ctx *c = calloc(1, sizeof *c);

    if (c == NULL)
        return -1;
    if (hs_env_path("ECHOSRV") == NULL || hs_env_path("ES_PLUGIN_DIR") == NULL ||
        hs_tmpdir(c->dir, sizeof c->dir) < 0) {
        free(c);
        return -1;
    }
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;

    hs_alarm_disarm();
    hs_proc_free_all();
    if (c != NULL) {
        for (int i = 0; i < c->nfds; i++)
            if (c->fds[i] >= 0)
                close(c->fds[i]);
        for (int i = 0; i < c->nruns; i++) {
            free(c->runs[i].out);
            free(c->runs[i].err);
        }
        hs_rmtree(c->dir);
        free(c);
    }
    *state = NULL;
    return 0;
}

/* Starts the test's SIGALRM backstop and returns its context. */
static struct ctx *begin(void **state, const char *name)
{
    hs_alarm_arm(TEST_BUDGET_S, name);
    return *state;
}

/* Remembers FD for teardown. Returns FD. */
static int track(struct ctx *c, int fd)
{
    if (fd >= 0 && c->nfds < MAX_FDS)
        c->fds[c->nfds++] = fd;
    return fd;
}

/* Closes FD and forgets it. */
static void untrack_close(struct ctx *c, int fd)
{
    for (int i = 0; i < c->nfds; i++)
        if (c->fds[i] == fd)
            c->fds[i] = -1;
    close(fd);
}

/* Starts echosrv serving PLUGIN on 127.0.0.1:0 with two workers, then the formatted SECTIONS
 * (the plugin's own section, if any). Keeps the port in c->port. Fails the test if it does
 * not come up. */
static struct hs_proc *start(struct ctx *c, const char *plugin, const char *sections)
{
    const char *plugin_dir = hs_env_path("ES_PLUGIN_DIR");
    struct hs_proc *p;

    assert_non_null(plugin_dir);
    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "echosrv.ini",
                                   "[server]\n"
                                   "bind = 127.0.0.1:0\n"
                                   "threads = 2\n"
                                   "plugin = %s\n"
                                   "plugin_dir = %s\n"
                                   "log_level = info\n"
                                   "%s",
                                   plugin, plugin_dir, sections), 0);
    p = hs_server_start(c->conf, 1, 0, READY_MS);
    if (p == NULL)
        FAIL("echosrv did not start with plugin %s (%s/%s.so)", plugin, plugin_dir, plugin);
    const char *addr = hs_addr(p, 0);
    const char *colon = addr != NULL ? strrchr(addr, ':') : NULL;
    if (colon == NULL)
        FAIL("no port in the listener address '%s'", addr != NULL ? addr : "(null)");
    snprintf(c->port, sizeof c->port, "%s", colon + 1);
    return p;
}

/* Connects to the server's first listener (failing the test if it cannot) and tracks the fd. */
static int conn(struct ctx *c, struct hs_proc *srv)
{
    const char *addr = hs_addr(srv, 0);
    int fd = hs_connect(addr, IO_MS);

    if (fd < 0)
        FAIL("cannot connect to %s: %s", addr ? addr : "(null)", strerror(errno));
    return track(c, fd);
}

/* Prints BYTES with C escapes as a '# ' line, for failure messages. */
static void show(const char *what, const void *bytes, size_t len)
{
    const unsigned char *p = bytes;

    fprintf(stderr, "# %s (%zu bytes): \"", what, len);
    for (size_t i = 0; i < len && i < 300; i++) {
        if (p[i] == '\r')
            fputs("\\r", stderr);
        else if (p[i] == '\n')
            fputs("\\n", stderr);
        else if (p[i] < 0x20 || p[i] >= 0x7f)
            fprintf(stderr, "\\x%02x", p[i]);
        else
            fputc(p[i], stderr);
    }
    fputs(len > 300 ? "\"...\n" : "\"\n", stderr);
}

/* True if A and B hold the same LEN bytes; otherwise prints where they first differ. */
static bool same_bytes(const char *what, const void *a, const void *b, size_t len)
{
    const unsigned char *x = a;
    const unsigned char *y = b;

    for (size_t i = 0; i < len; i++) {
        if (x[i] != y[i]) {
            fprintf(stderr, "# %s: first difference at byte %zu of %zu: "
                    "expected 0x%02x, got 0x%02x\n", what, i, len, x[i], y[i]);
            return false;
        }
    }
    return true;
}

/* Asserts that nothing more arrives on FD within MS and that it stays open. */
static void assert_quiet(int fd, int ms)
{
    int r = hs_wait_closed(fd, ms);

    if (r == 1)
        FAIL("unexpected extra bytes from the server");
    if (r == 0)
        FAIL("the server closed the connection unexpectedly");
}

/* Sends REQ and expects exactly WANT back within IO_MS. */
static void exchange(int fd, const void *req, size_t req_len, const void *want, size_t want_len)
{
    char *got = malloc(want_len + 1);
    size_t n = 0;

    assert_non_null(got);
    if (hs_exchange(fd, req, req_len, got, want_len, IO_MS, &n) < 0) {
        show("sent", req, req_len);
        show("expected", want, want_len);
        show("received", got, n);
        free(got);
        FAIL("no complete reply: %s", strerror(errno));
    }
    if (memcmp(got, want, want_len) != 0) {
        show("sent", req, req_len);
        show("expected", want, want_len);
        show("received", got, want_len);
        free(got);
        FAIL("unexpected reply");
    }
    free(got);
}

/* The absolute path of the executable NAME found in $PATH. Fails the test, naming the Debian
 * package that provides it, when there is none: CI installs these tools, so a missing one is
 * an error of the test environment, never a reason to skip. The result is static. */
static const char *need_tool(const char *name, const char *package)
{
    static char path[1024];
    const char *env = getenv("PATH");
    char *dirs = strdup(env != NULL ? env : "/usr/bin:/bin");

    assert_non_null(dirs);
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d != NULL;
         d = strtok_r(NULL, ":", &save)) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", *d ? d : ".", name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0) {
            free(dirs);
            return path;
        }
    }
    free(dirs);
    FAIL("%s is not installed (not found in PATH=%s): install the Debian package %s "
         "(apt-get install -y %s)", name, env != NULL ? env : "", package, package);
    return NULL;
}

/* Appends what is readable on FD to *BUF. Returns 0 at EOF, 1 if more may come. */
static int drain_into(int fd, char **buf, size_t *len, size_t *cap)
{
    char chunk[65536];
    ssize_t n = read(fd, chunk, sizeof chunk);

    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : 0;
    if (n == 0)
        return 0;
    if (*len + (size_t)n + 1 > *cap) {
        size_t ncap = *cap ? *cap : 4096;
        while (ncap < *len + (size_t)n + 1)
            ncap *= 2;
        char *nb = realloc(*buf, ncap);
        if (nb == NULL)
            return 0;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, chunk, (size_t)n);
    *len += (size_t)n;
    (*buf)[*len] = '\0';
    return 1;
}

/* Prints TEXT as '# ' lines on stderr under the heading WHAT. */
static void dump(const char *what, const char *text, size_t len)
{
    fprintf(stderr, "# %s (%zu bytes):\n", what, len);
    while (len > 0) {
        const char *nl = memchr(text, '\n', len);
        size_t n = nl ? (size_t)(nl - text) : len;
        fprintf(stderr, "#   | %.*s\n", (int)n, text);
        n += nl != NULL;
        text += n;
        len -= n;
    }
}

/*
 * Runs the program at PATH with ARGV (NULL-terminated, argv[0] included), feeding IN (INLEN
 * bytes; stdin is /dev/null when IN is NULL) and capturing stdout and stderr apart. The child
 * is SIGKILLed by its PID after TIMEOUT_MS (and if this process dies). The result belongs
 * to C.
 */
static struct run *tool_run(struct ctx *c, const char *path, const char *const argv[],
                            const void *in, size_t inlen, int timeout_ms)
{
    struct run *r;
    int pin[2] = { -1, -1 }, pout[2], perr[2];
    size_t out_cap = 0, err_cap = 0, sent = 0;
    long start = hs_now_ms();
    pid_t pid;

    assert_true(c->nruns < MAX_RUNS);
    r = &c->runs[c->nruns++];
    memset(r, 0, sizeof *r);
    if (in != NULL)
        assert_int_equal(pipe2(pin, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
    assert_int_equal(pipe2(perr, O_CLOEXEC), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        sigset_t none;

        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (dup2(in != NULL ? pin[0] : devnull, 0) < 0 || dup2(pout[1], 1) < 0 ||
            dup2(perr[1], 2) < 0)
            _exit(127);
        if (close_range(3, ~0u, 0) < 0)
            for (int fd = 3; fd < 4096; fd++)
                close(fd);
        execv(path, (char *const *)argv);
        _exit(127);
    }
    close(pout[1]);
    close(perr[1]);
    if (in != NULL) {
        close(pin[0]);
        fcntl(pin[1], F_SETFL, O_NONBLOCK);
        if (inlen == 0) {
            close(pin[1]);
            pin[1] = -1;
        }
    }

    bool out_open = true, err_open = true;
    r->status = -1;
    while (out_open || err_open || pin[1] >= 0) {
        struct pollfd pfd[3] = {
            { out_open ? pout[0] : -1, POLLIN, 0 },
            { err_open ? perr[0] : -1, POLLIN, 0 },
            { pin[1], POLLOUT, 0 },
        };
        int left = (int)(start + timeout_ms - hs_now_ms());

        if (left <= 0)
            break;
        if (poll(pfd, 3, left) < 0 && errno != EINTR)
            break;
        if (pfd[0].revents && drain_into(pout[0], &r->out, &r->out_len, &out_cap) == 0)
            out_open = false;
        if (pfd[1].revents && drain_into(perr[0], &r->err, &r->err_len, &err_cap) == 0)
            err_open = false;
        if (pfd[2].revents) {
            ssize_t n = write(pin[1], (const char *)in + sent, inlen - sent);
            if (n > 0)
                sent += (size_t)n;
            if ((n < 0 && errno != EAGAIN && errno != EINTR) || sent == inlen) {
                close(pin[1]);
                pin[1] = -1;
            }
        }
    }
    if (pin[1] >= 0)
        close(pin[1]);
    close(pout[0]);
    close(perr[0]);
    for (;;) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            r->status = st;
            break;
        }
        if (hs_now_ms() >= start + timeout_ms) {
            fprintf(stderr, "# %s (pid %d) still running after %d ms; killing it\n", argv[0],
                    (int)pid, timeout_ms);
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        hs_sleep_ms(2);
    }
    r->ms = hs_now_ms() - start;
    if (r->out == NULL)
        r->out = calloc(1, 1);
    if (r->err == NULL)
        r->err = calloc(1, 1);
    assert_non_null(r->out);
    assert_non_null(r->err);
    return r;
}

/* Asserts that the run exited with status 0; prints its outputs if not. */
static void expect_success(const struct run *r, const char *what)
{
    if (r->status >= 0 && WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0)
        return;
    dump("stdout", r->out, r->out_len);
    dump("stderr", r->err, r->err_len);
    if (r->status < 0)
        FAIL("%s: did not finish within its time limit", what);
    if (WIFSIGNALED(r->status))
        FAIL("%s: died of signal %d", what, WTERMSIG(r->status));
    FAIL("%s: exit status %d, expected 0", what, WEXITSTATUS(r->status));
}

/* Asserts that stdout is exactly WANT (WANT_LEN bytes). */
static void expect_stdout(const struct run *r, const void *want, size_t want_len, const char *what)
{
    if (r->out_len == want_len && memcmp(r->out, want, want_len) == 0)
        return;
    show("expected stdout", want, want_len);
    show("stdout", r->out, r->out_len);
    dump("stderr", r->err, r->err_len);
    if (r->out_len == want_len)
        same_bytes(what, want, r->out, want_len);
    FAIL("%s: unexpected output", what);
}

/* Fills BUF with LEN bytes of every value, NUL, CR and LF included, derived from SEED. */
static void fill_binary(unsigned char *buf, size_t len, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;

    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
}

/* ---- raw ---- */

/* 1. Every byte comes back on its own, before the next is sent: no framing, no waiting. */
static void test_raw_byte_at_a_time(void **state)
{
    struct ctx *c = begin(state, __func__);
    struct hs_proc *srv = start(c, "raw", "");
    int fd = conn(c, srv);
    static const unsigned char bytes[] = "hello\0\r\n\r\n\xff\x80QUIT\r\n\r\n";

    for (size_t i = 0; i < sizeof bytes; i++) {
        unsigned char got = 0;
        assert_int_equal(hs_send_all(fd, bytes + i, 1, IO_MS), 0);
        if (hs_recv_exact(fd, &got, 1, IO_MS) != 1)
            FAIL("byte %zu (0x%02x) did not come back on its own: %s", i, bytes[i],
                 strerror(errno));
        if (got != bytes[i])
            FAIL("byte %zu: sent 0x%02x, got 0x%02x", i, bytes[i], got);
    }
    assert_quiet(fd, 100);
}

/* 2. Binary data (every byte value) in pieces, and 1 MiB sent while it is read back. */
static void test_raw_binary(void **state)
{
    enum { BIG = 1 << 20 };
    struct ctx *c = begin(state, __func__);
    struct hs_proc *srv = start(c, "raw", "");
    int fd = conn(c, srv);
    unsigned char all[256 * 3];

    for (size_t i = 0; i < sizeof all; i++)
        all[i] = (unsigned char)(i % 256 ^ i / 256);
    exchange(fd, all, 100, all, 100);
    exchange(fd, all + 100, sizeof all - 100, all + 100, sizeof all - 100);

    unsigned char *out = malloc(BIG), *in = malloc(BIG);
    size_t got = 0;
    assert_non_null(out);
    assert_non_null(in);
    fill_binary(out, BIG, 1);
    int rc = hs_exchange(fd, out, BIG, in, BIG, 20000, &got);
    if (rc < 0)
        fprintf(stderr, "# 1 MiB through raw: received %zu of %d bytes: %s\n", got, BIG,
                strerror(errno));
    bool ok = rc == 0 && same_bytes("1 MiB through raw", out, in, BIG);
    free(out);
    free(in);
    assert_true(ok);
    assert_quiet(fd, 100);

    /* Other connections are served meanwhile, and a closed one harms nobody. */
    int other = conn(c, srv);
    exchange(other, LIT("x"), LIT("x"));
    untrack_close(c, other);
    exchange(fd, LIT("still here\n"), LIT("still here\n"));
}

/* 3. nc (netcat-openbsd) as the client: `printf ... | nc -q1 127.0.0.1 PORT`. */
static void test_raw_nc(void **state)
{
    struct ctx *c = begin(state, __func__);
    const char *nc = need_tool("nc", "netcat-openbsd");
    struct hs_proc *srv = start(c, "raw", "");
    static const char text[] = "hello, RFC 862\r\nsecond line\n\0binary\xff\xfe tail";
    const char *const argv[] = { "nc", "-q1", "127.0.0.1", c->port, NULL };

    struct run *r = tool_run(c, nc, argv, text, sizeof text - 1, RUN_MS);
    expect_success(r, "nc -q1 127.0.0.1 PORT");
    expect_stdout(r, text, sizeof text - 1, "nc through raw");

    /* 256 KiB of binary data. */
    enum { SIZE = 256 * 1024 };
    unsigned char *data = malloc(SIZE);
    assert_non_null(data);
    fill_binary(data, SIZE, 3);
    r = tool_run(c, nc, argv, data, SIZE, RUN_MS);
    expect_success(r, "nc -q1 with 256 KiB");
    expect_stdout(r, data, SIZE, "256 KiB through nc and raw");
    free(data);
    assert_non_null(srv);
}

/* 4. socat as the client: `socat - TCP:127.0.0.1:PORT`. */
static void test_raw_socat(void **state)
{
    struct ctx *c = begin(state, __func__);
    const char *socat = need_tool("socat", "socat");
    struct hs_proc *srv = start(c, "raw", "");
    char target[64];
    static const char text[] = "socat says hi\n\r\n\0\x01\x02\xff";

    snprintf(target, sizeof target, "TCP:127.0.0.1:%s", c->port);
    const char *const argv[] = { "socat", "-", target, NULL };
    struct run *r = tool_run(c, socat, argv, text, sizeof text - 1, RUN_MS);
    expect_success(r, "socat - TCP:127.0.0.1:PORT");
    expect_stdout(r, text, sizeof text - 1, "socat through raw");

    enum { SIZE = 64 * 1024 };
    unsigned char *data = malloc(SIZE);
    assert_non_null(data);
    fill_binary(data, SIZE, 4);
    r = tool_run(c, socat, argv, data, SIZE, RUN_MS);
    expect_success(r, "socat with 64 KiB");
    expect_stdout(r, data, SIZE, "64 KiB through socat and raw");
    free(data);
    assert_non_null(srv);
}

/* 5. echosrv -t accepts raw, and refuses a key in [raw] with FILE:LINE. */
static void test_raw_config(void **state)
{
    struct ctx *c = begin(state, __func__);
    const char *plugin_dir = hs_env_path("ES_PLUGIN_DIR");
    char *out = NULL;

    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "raw.ini",
                                   "[server]\nbind = 127.0.0.1:0\nplugin = raw\n"
                                   "plugin_dir = %s\n", plugin_dir), 0);
    const char *const check[] = { "-t", "-c", c->conf, NULL };
    int st = hs_run(check, RUN_MS, &out);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        dump("output", out ? out : "", out ? strlen(out) : 0);
        free(out);
        FAIL("echosrv -t refused a configuration serving raw");
    }
    free(out);

    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "rawbad.ini",
                                   "[server]\nbind = 127.0.0.1:0\nplugin = raw\n"
                                   "plugin_dir = %s\n\n[raw]\nseparator = x\n", plugin_dir), 0);
    st = hs_run(check, RUN_MS, &out);
    char where[600];
    snprintf(where, sizeof where, "rawbad.ini:7:");
    bool ok = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) != 0 && out != NULL &&
              strstr(out, where) != NULL && strstr(out, "separator") != NULL;
    if (!ok)
        dump("output", out ? out : "", out ? strlen(out) : 0);
    free(out);
    if (!ok)
        FAIL("a key in [raw] was not refused with rawbad.ini:7: and its name");
}

/* ---- resp ---- */

/* 6. redis-cli: PING, PING msg, ECHO, case, an unknown command, wrong arity, stdin mode. */
static void test_resp_redis_cli(void **state)
{
    struct ctx *c = begin(state, __func__);
    const char *cli = need_tool("redis-cli", "redis-tools");
    struct hs_proc *srv = start(c, "resp", "");

    const char *const ping[] = { "redis-cli", "-h", "127.0.0.1", "-p", c->port, "PING", NULL };
    struct run *r = tool_run(c, cli, ping, NULL, 0, RUN_MS);
    expect_success(r, "redis-cli PING");
    expect_stdout(r, LIT("PONG\n"), "redis-cli PING");

    const char *const echo[] = { "redis-cli", "-p", c->port, "ECHO", "hello", NULL };
    r = tool_run(c, cli, echo, NULL, 0, RUN_MS);
    expect_success(r, "redis-cli ECHO hello");
    expect_stdout(r, LIT("hello\n"), "redis-cli ECHO hello");

    const char *const ping_msg[] = { "redis-cli", "-p", c->port, "ping", "a b\tc", NULL };
    r = tool_run(c, cli, ping_msg, NULL, 0, RUN_MS);
    expect_success(r, "redis-cli ping 'a b\\tc'");
    expect_stdout(r, LIT("a b\tc\n"), "redis-cli ping 'a b\\tc'");

    const char *const unknown[] = { "redis-cli", "-p", c->port, "FOO", "bar", NULL };
    r = tool_run(c, cli, unknown, NULL, 0, RUN_MS);
    expect_success(r, "redis-cli FOO bar");
    if (strstr(r->out, "ERR unknown command 'FOO', with args beginning with: 'bar' ") == NULL) {
        dump("stdout", r->out, r->out_len);
        FAIL("redis-cli FOO bar did not show the unknown command error");
    }

    const char *const arity[] = { "redis-cli", "-p", c->port, "ECHO", NULL };
    r = tool_run(c, cli, arity, NULL, 0, RUN_MS);
    expect_success(r, "redis-cli ECHO");
    if (strstr(r->out, "ERR wrong number of arguments for 'echo' command") == NULL) {
        dump("stdout", r->out, r->out_len);
        FAIL("redis-cli ECHO did not show the wrong number of arguments error");
    }

    /* Commands from stdin, one per line, on one connection. */
    static const char script[] = "PING\necho \"two words\"\nEcHo 42\nnope\nPING last\n";
    const char *const piped[] = { "redis-cli", "-p", c->port, NULL };
    r = tool_run(c, cli, piped, LIT(script), RUN_MS);
    expect_success(r, "redis-cli < script");
    static const char want[] = "PONG\ntwo words\n42\n"
                               "ERR unknown command 'nope', with args beginning with: \n\n"
                               "last\n";
    expect_stdout(r, LIT(want), "redis-cli < script");
    assert_non_null(srv);
}

/* 7. redis-benchmark -t ping (PING_INLINE and PING_MBULK) completes, then pipelined (-P 16). */
static void test_resp_redis_benchmark(void **state)
{
    struct ctx *c = begin(state, __func__);
    const char *bench = need_tool("redis-benchmark", "redis-tools");
    struct hs_proc *srv = start(c, "resp", "");
    static const char *const pipelines[] = { "1", "16" };

    for (size_t i = 0; i < sizeof pipelines / sizeof pipelines[0]; i++) {
        const char *const argv[] = { "redis-benchmark", "-h", "127.0.0.1", "-p", c->port,
                                     "-t", "ping", "-n", "20000", "-P", pipelines[i], "-q",
                                     NULL };
        struct run *r = tool_run(c, bench, argv, NULL, 0, BENCH_MS);
        char what[96];
        snprintf(what, sizeof what, "redis-benchmark -t ping -n 20000 -P %s -q", pipelines[i]);
        expect_success(r, what);
        const char *inl = strstr(r->out, "PING_INLINE: ");
        const char *mbulk = strstr(r->out, "PING_MBULK: ");
        if (inl == NULL || mbulk == NULL || strstr(inl, "requests per second") == NULL ||
            strstr(mbulk, "requests per second") == NULL) {
            dump("stdout", r->out, r->out_len);
            dump("stderr", r->err, r->err_len);
            FAIL("%s: no 'requests per second' for PING_INLINE and PING_MBULK", what);
        }
        /* With -q, progress lines end in '\r'; the results are the text after the last. */
        for (const char *t = r->out; *t != '\0';) {
            const char *nl = strchr(t, '\n');
            const char *end = nl != NULL ? nl : t + strlen(t);
            const char *cr = memrchr(t, '\r', (size_t)(end - t));
            const char *line = cr != NULL ? cr + 1 : t;
            if (end > line)
                fprintf(stderr, "# -P %s: %.*s\n", pipelines[i], (int)(end - line), line);
            t = nl != NULL ? nl + 1 : end;
        }
    }
    /* The server is still well. */
    int fd = conn(c, srv);
    exchange(fd, LIT("PING\r\n"), LIT("+PONG\r\n"));
}

/* 8. Over a socket: a command a byte at a time, pipelined commands in one write, a 1 MiB bulk
 * string with NUL and CRLF inside. */
static void test_resp_framing(void **state)
{
    enum { BIG = 1 << 20 };
    struct ctx *c = begin(state, __func__);
    struct hs_proc *srv = start(c, "resp", "");
    int fd = conn(c, srv);
    static const char req[] = "*2\r\n$4\r\nECHO\r\n$7\r\na\r\n\0b\r\n\r\n";

    for (size_t i = 0; i + 1 < sizeof req - 1; i++) {
        assert_int_equal(hs_send_all(fd, req + i, 1, IO_MS), 0);
        hs_sleep_ms(1);
    }
    assert_quiet(fd, 50);
    exchange(fd, req + sizeof req - 2, 1, LIT("$7\r\na\r\n\0b\r\n\r\n"));

    /* 500 pipelined commands of both forms in one write. */
    size_t cap = 500 * 64, rl = 0, wl = 0;
    char *pipe_req = malloc(cap), *pipe_want = malloc(cap);
    assert_non_null(pipe_req);
    assert_non_null(pipe_want);
    for (int i = 0; i < 500; i++) {
        char num[16];
        int nl = snprintf(num, sizeof num, "%d", i);
        if (i % 2 == 0)
            rl += (size_t)snprintf(pipe_req + rl, cap - rl, "ECHO %s\r\n", num);
        else
            rl += (size_t)snprintf(pipe_req + rl, cap - rl, "*2\r\n$4\r\necho\r\n$%d\r\n%s\r\n",
                                   nl, num);
        wl += (size_t)snprintf(pipe_want + wl, cap - wl, "$%d\r\n%s\r\n", nl, num);
    }
    exchange(fd, pipe_req, rl, pipe_want, wl);
    free(pipe_req);
    free(pipe_want);

    /* A 1 MiB bulk string, sent while its reply comes back. */
    char head[64];
    int hl = snprintf(head, sizeof head, "*2\r\n$4\r\nECHO\r\n$%d\r\n", BIG);
    size_t big_len = (size_t)hl + BIG + 2;
    unsigned char *big = malloc(big_len);
    assert_non_null(big);
    memcpy(big, head, (size_t)hl);
    fill_binary(big + hl, BIG, 8);
    memcpy(big + hl + BIG, "\r\n", 2);
    /* The reply is the bulk string itself: the request without its first 14 bytes. */
    exchange(fd, big, big_len, big + 14, big_len - 14);
    free(big);
    assert_quiet(fd, 100);
}

/* 9. Errors: an unknown command keeps the connection; malformed input is answered with a
 * protocol error, then closed; everyone else is served as before. QUIT answers +OK and closes. */
static void test_resp_errors(void **state)
{
    struct ctx *c = begin(state, __func__);
    struct hs_proc *srv = start(c, "resp", "[resp]\nmax_bulk = 1K\nmax_args = 8\n");
    int keep = conn(c, srv);
    static const struct {
        const char *req, *want;
    } bad[] = {
        { "*x\r\n", "-ERR Protocol error: invalid multibulk length\r\n" },
        { "*9\r\n", "-ERR Protocol error: invalid multibulk length\r\n" },
        { "*1\r\n$1025\r\n", "-ERR Protocol error: invalid bulk length\r\n" },
        { "*1\r\n:1\r\n", "-ERR Protocol error: expected '$', got ':'\r\n" },
        { "*1\r\n$4\r\nPINGPONG\r\n", "-ERR Protocol error: expected CRLF after a bulk string\r\n" },
        { "ECHO \"open\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n" },
    };

    exchange(keep, LIT("FOO bar\r\n"),
             LIT("-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n"));
    exchange(keep, LIT("*1\r\n$4\r\necho\r\n"),
             LIT("-ERR wrong number of arguments for 'echo' command\r\n"));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = conn(c, srv);
        char msg[128];
        exchange(fd, LIT("PING\r\n"), LIT("+PONG\r\n"));
        exchange(fd, bad[i].req, strlen(bad[i].req), bad[i].want, strlen(bad[i].want));
        int r = hs_wait_closed(fd, 3000);
        snprintf(msg, sizeof msg, "after the reply to a malformed request #%zu", i);
        if (r == 1)
            FAIL("%s: more bytes came", msg);
        if (r < 0)
            FAIL("%s: the connection was not closed within 3 s", msg);
        untrack_close(c, fd);
        exchange(keep, LIT("PING still\r\n"), LIT("$5\r\nstill\r\n"));
    }
    /* Inline lines beyond 64 KiB are refused, like redis does. */
    int fd = conn(c, srv);
    size_t big = 70000;
    char *line = malloc(big);
    assert_non_null(line);
    memset(line, 'x', big);
    exchange(fd, line, big, LIT("-ERR Protocol error: too big inline request\r\n"));
    free(line);
    assert_int_equal(hs_wait_closed(fd, 3000), 0);
    untrack_close(c, fd);

    exchange(keep, LIT("QUIT\r\nPING\r\n"), LIT("+OK\r\n"));
    if (hs_wait_closed(keep, 3000) != 0)
        FAIL("the connection was not closed after QUIT's +OK");
    if (!hs_output_has(srv, "protocol error: invalid multibulk length")) {
        hs_dump_output(srv, "no protocol error logged");
        FAIL("the protocol errors were not logged (log_level = info)");
    }
}

/* 10. [resp] is checked by echosrv -t: known keys pass, an unknown key or bad value is refused
 * with FILE:LINE. */
static void test_resp_config(void **state)
{
    struct ctx *c = begin(state, __func__);
    const char *plugin_dir = hs_env_path("ES_PLUGIN_DIR");
    static const struct {
        const char *section;
        int ok;
        const char *needle;
    } cases[] = {
        { "[resp]\nmax_bulk = 512M\nmax_args = 4096\n", 1, NULL },
        { "[resp]\nmax_bulk = 1M\nmax_bulks = 2\n", 0, "resp.ini:8:" },
        { "[resp]\nmax_args = 0\n", 0, "resp.ini:7:" },
        { "[resp]\nmax_bulk = lots\n", 0, "max_bulk" },
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out = NULL;
        assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "resp.ini",
                                       "[server]\nbind = 127.0.0.1:0\nplugin = resp\n"
                                       "plugin_dir = %s\n\n%s", plugin_dir,
                                       cases[i].section), 0);
        const char *const check[] = { "-t", "-c", c->conf, NULL };
        int st = hs_run(check, RUN_MS, &out);
        bool passed = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
        bool ok = cases[i].ok ? passed
                              : !passed && st >= 0 && WIFEXITED(st) && out != NULL &&
                                    strstr(out, cases[i].needle) != NULL;
        if (!ok)
            dump("output", out ? out : "", out ? strlen(out) : 0);
        free(out);
        if (!ok)
            FAIL("echosrv -t with %s: expected %s", cases[i].section,
                 cases[i].ok ? "success" : cases[i].needle);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_raw_byte_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_nc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_socat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resp_redis_cli, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resp_redis_benchmark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resp_framing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resp_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resp_config, setup, teardown),
    };

    if (hs_process_init() < 0)
        fprintf(stderr, "# could not raise RLIMIT_NOFILE or ignore SIGPIPE\n");
    return cmocka_run_group_tests_name("plugins_integration", tests, NULL, NULL);
}
