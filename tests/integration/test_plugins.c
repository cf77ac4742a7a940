/* test_plugins.c - integration tests: the raw and resp plugins in the real echosrv, with nc, socat, redis-cli and redis-benchmark as clients. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define IO_MS 5000              /* default bound for one socket operation */
#define RUN_MS 20000            /* bound for one run of a client tool */
#define BENCH_MS 120000         /* bound for one redis-benchmark run */
#ifndef TEST_BUDGET_S
#define TEST_BUDGET_S 180       /* SIGALRM backstop per test */
#endif
#define MAX_RUNS 16

/* Length of a string literal, NUL bytes inside included. */
#define LIT(s) (s), (sizeof(s) - 1)

/* Per-test state: the harness's (temp dir, configuration, fds), the server's port, runs to
 * free. */
struct ctx {
    struct hs_ctx hs;           /* first: the harness sees a struct hs_ctx */
    char port[16];              /* the server's port, as text */
    struct hs_cmd runs[MAX_RUNS];
    int nruns;
};

static int setup(void **state)
{
    return hs_ctx_setup_size(state, sizeof(struct ctx));
}

static int teardown(void **state)
{
    struct ctx *c = *state;

    if (c != NULL)
        for (int i = 0; i < c->nruns; i++)
            hs_cmd_free(&c->runs[i]);
    return hs_ctx_teardown(state);
}

/* Arms the test's SIGALRM backstop and returns its context. */
static struct ctx *begin(void **state, const char *name)
{
    return (struct ctx *)hs_ctx_begin(state, TEST_BUDGET_S, name);
}

/* Starts echosrv serving PLUGIN on 127.0.0.1:0 with two workers, then the formatted SECTIONS
 * (the plugin's own section, if any). Keeps the port in c->port. Fails the test if it does
 * not come up. */
static struct hs_proc *start(struct ctx *c, const char *plugin, const char *sections)
{
    struct hs_proc *p;

    assert_int_equal(hs_write_plugin_config(c->hs.conf, sizeof c->hs.conf, c->hs.dir,
                                            "echosrv.ini", "127.0.0.1:0", plugin, "%s",
                                            sections), 0);
    p = hs_server_start(c->hs.conf, 1, 0, HS_READY_MS);
    if (p == NULL)
        HS_FAIL("echosrv did not start with plugin %s (%s/%s.so)", plugin,
                hs_env_path("ES_PLUGIN_DIR"), plugin);
    const char *addr = hs_addr(p, 0);
    const char *colon = addr != NULL ? strrchr(addr, ':') : NULL;
    if (colon == NULL)
        HS_FAIL("no port in the listener address '%s'", addr != NULL ? addr : "(null)");
    snprintf(c->port, sizeof c->port, "%s", colon + 1);
    return p;
}

/* Connects to the server's first listener (failing the test if it cannot) and tracks the fd. */
static int conn(struct ctx *c, struct hs_proc *srv)
{
    return hs_ctx_connect(&c->hs, hs_addr(srv, 0), IO_MS);
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
        HS_FAIL("no complete reply: %s", strerror(errno));
    }
    if (memcmp(got, want, want_len) != 0) {
        show("sent", req, req_len);
        show("expected", want, want_len);
        show("received", got, want_len);
        free(got);
        HS_FAIL("unexpected reply");
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
    HS_FAIL("%s is not installed (not found in PATH=%s): install the Debian package %s "
         "(apt-get install -y %s)", name, env != NULL ? env : "", package, package);
    return NULL;
}

/* Runs the program at PATH with ARGV as hs_cmd_run() does. The result belongs to C. */
static struct hs_cmd *tool_run(struct ctx *c, const char *path, const char *const argv[],
                               const void *in, size_t inlen, int timeout_ms)
{
    struct hs_cmd *r;

    assert_true(c->nruns < MAX_RUNS);
    r = &c->runs[c->nruns++];
    hs_cmd_run(r, path, argv, in, inlen, timeout_ms);
    return r;
}

/* Asserts that the run exited with status 0; prints its outputs if not. */
static void expect_success(const struct hs_cmd *r, const char *what)
{
    if (r->status >= 0 && WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0)
        return;
    hs_dump_lines("stdout", r->out, r->out_len);
    hs_dump_lines("stderr", r->err, r->err_len);
    if (r->status < 0)
        HS_FAIL("%s: did not finish within its time limit", what);
    if (WIFSIGNALED(r->status))
        HS_FAIL("%s: died of signal %d", what, WTERMSIG(r->status));
    HS_FAIL("%s: exit status %d, expected 0", what, WEXITSTATUS(r->status));
}

/* Asserts that stdout is exactly WANT (WANT_LEN bytes). */
static void expect_stdout(const struct hs_cmd *r, const void *want, size_t want_len, const char *what)
{
    if (r->out_len == want_len && memcmp(r->out, want, want_len) == 0)
        return;
    show("expected stdout", want, want_len);
    show("stdout", r->out, r->out_len);
    hs_dump_lines("stderr", r->err, r->err_len);
    if (r->out_len == want_len)
        hs_same_bytes(what, want, r->out, want_len);
    HS_FAIL("%s: unexpected output", what);
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
            HS_FAIL("byte %zu (0x%02x) did not come back on its own: %s", i, bytes[i],
                    strerror(errno));
        if (got != bytes[i])
            HS_FAIL("byte %zu: sent 0x%02x, got 0x%02x", i, bytes[i], got);
    }
    hs_assert_quiet(fd, 100);
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
    bool ok = rc == 0 && hs_same_bytes("1 MiB through raw", out, in, BIG);
    free(out);
    free(in);
    assert_true(ok);
    hs_assert_quiet(fd, 100);

    /* Other connections are served meanwhile, and a closed one harms nobody. */
    int other = conn(c, srv);
    exchange(other, LIT("x"), LIT("x"));
    hs_ctx_untrack_close(&c->hs, other);
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

    struct hs_cmd *r = tool_run(c, nc, argv, text, sizeof text - 1, RUN_MS);
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
    struct hs_cmd *r = tool_run(c, socat, argv, text, sizeof text - 1, RUN_MS);
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

    assert_int_equal(hs_write_file(c->hs.conf, sizeof c->hs.conf, c->hs.dir, "raw.ini",
                                   "[server]\nbind = 127.0.0.1:0\nplugin = raw\n"
                                   "plugin_dir = %s\n", plugin_dir), 0);
    const char *const check[] = { "-t", "-c", c->hs.conf, NULL };
    int st = hs_run(check, RUN_MS, &out);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        hs_dump_lines("output", out ? out : "", out ? strlen(out) : 0);
        free(out);
        HS_FAIL("echosrv -t refused a configuration serving raw");
    }
    free(out);

    assert_int_equal(hs_write_file(c->hs.conf, sizeof c->hs.conf, c->hs.dir, "rawbad.ini",
                                   "[server]\nbind = 127.0.0.1:0\nplugin = raw\n"
                                   "plugin_dir = %s\n\n[raw]\nseparator = x\n", plugin_dir), 0);
    st = hs_run(check, RUN_MS, &out);
    char where[600];
    snprintf(where, sizeof where, "rawbad.ini:7:");
    bool ok = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) != 0 && out != NULL &&
              strstr(out, where) != NULL && strstr(out, "separator") != NULL;
    if (!ok)
        hs_dump_lines("output", out ? out : "", out ? strlen(out) : 0);
    free(out);
    if (!ok)
        HS_FAIL("a key in [raw] was not refused with rawbad.ini:7: and its name");
}

/* ---- resp ---- */

/* 6. redis-cli: PING, PING msg, ECHO, case, an unknown command, wrong arity, stdin mode. */
static void test_resp_redis_cli(void **state)
{
    struct ctx *c = begin(state, __func__);
    const char *cli = need_tool("redis-cli", "redis-tools");
    struct hs_proc *srv = start(c, "resp", "");

    const char *const ping[] = { "redis-cli", "-h", "127.0.0.1", "-p", c->port, "PING", NULL };
    struct hs_cmd *r = tool_run(c, cli, ping, NULL, 0, RUN_MS);
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
        hs_dump_lines("stdout", r->out, r->out_len);
        HS_FAIL("redis-cli FOO bar did not show the unknown command error");
    }

    const char *const arity[] = { "redis-cli", "-p", c->port, "ECHO", NULL };
    r = tool_run(c, cli, arity, NULL, 0, RUN_MS);
    expect_success(r, "redis-cli ECHO");
    if (strstr(r->out, "ERR wrong number of arguments for 'echo' command") == NULL) {
        hs_dump_lines("stdout", r->out, r->out_len);
        HS_FAIL("redis-cli ECHO did not show the wrong number of arguments error");
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
        struct hs_cmd *r = tool_run(c, bench, argv, NULL, 0, BENCH_MS);
        char what[96];
        snprintf(what, sizeof what, "redis-benchmark -t ping -n 20000 -P %s -q", pipelines[i]);
        expect_success(r, what);
        const char *inl = strstr(r->out, "PING_INLINE: ");
        const char *mbulk = strstr(r->out, "PING_MBULK: ");
        if (inl == NULL || mbulk == NULL || strstr(inl, "requests per second") == NULL ||
            strstr(mbulk, "requests per second") == NULL) {
            hs_dump_lines("stdout", r->out, r->out_len);
            hs_dump_lines("stderr", r->err, r->err_len);
            HS_FAIL("%s: no 'requests per second' for PING_INLINE and PING_MBULK", what);
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
    hs_assert_quiet(fd, 50);
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
    hs_assert_quiet(fd, 100);
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
            HS_FAIL("%s: more bytes came", msg);
        if (r < 0)
            HS_FAIL("%s: the connection was not closed within 3 s", msg);
        hs_ctx_untrack_close(&c->hs, fd);
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
    hs_ctx_untrack_close(&c->hs, fd);

    exchange(keep, LIT("QUIT\r\nPING\r\n"), LIT("+OK\r\n"));
    if (hs_wait_closed(keep, 3000) != 0)
        HS_FAIL("the connection was not closed after QUIT's +OK");
    if (hs_wait_output(srv, "protocol error: invalid multibulk length", 3000) != 0) {
        hs_dump_output(srv, "no protocol error logged");
        HS_FAIL("the protocol errors were not logged (log_level = info)");
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
        assert_int_equal(hs_write_file(c->hs.conf, sizeof c->hs.conf, c->hs.dir, "resp.ini",
                                       "[server]\nbind = 127.0.0.1:0\nplugin = resp\n"
                                       "plugin_dir = %s\n\n%s", plugin_dir,
                                       cases[i].section), 0);
        const char *const check[] = { "-t", "-c", c->hs.conf, NULL };
        int st = hs_run(check, RUN_MS, &out);
        bool passed = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
        bool ok = cases[i].ok ? passed
                              : !passed && st >= 0 && WIFEXITED(st) && out != NULL &&
                                    strstr(out, cases[i].needle) != NULL;
        if (!ok)
            hs_dump_lines("output", out ? out : "", out ? strlen(out) : 0);
        free(out);
        if (!ok)
            HS_FAIL("echosrv -t with %s: expected %s", cases[i].section,
                    cases[i].ok ? "success" : cases[i].needle);
    }
}

/* 11. Every connection's state goes through its plugin's close hook, shutdown included: the
 * counting test plugin reports its opens and closes at fini (and leaks if a close is missed). */
static void test_close_hook_on_shutdown(void **state)
{
    enum { N = 10 };
    struct ctx *c = begin(state, __func__);
    assert_int_equal(hs_write_file(c->hs.conf, sizeof c->hs.conf, c->hs.dir, "counting.ini",
                                   "[server]\nbind = 127.0.0.1:0\nthreads = 2\n"
                                   "plugin = %s/counting.so\nshutdown_timeout = 1\n",
                                   hs_env_path("ES_TEST_PLUGIN_DIR")), 0);
    struct hs_proc *srv = hs_server_start(c->hs.conf, 1, 0, HS_READY_MS);
    if (srv == NULL)
        HS_FAIL("echosrv did not start with the counting plugin from %s",
                hs_env_path("ES_TEST_PLUGIN_DIR"));
    int fd[N];
    for (int i = 0; i < N; i++) {
        fd[i] = conn(c, srv);
        exchange(fd[i], LIT("x"), LIT("x")); /* opened for sure */
    }
    /* Two go away by themselves; the rest are still open at shutdown. */
    hs_ctx_untrack_close(&c->hs, fd[0]);
    hs_ctx_untrack_close(&c->hs, fd[1]);
    if (hs_send_all(fd[2], "partial", 7, IO_MS) < 0)
        HS_FAIL("send: %s", strerror(errno));
    kill(hs_pid(srv), SIGTERM);
    int st = hs_wait_exit(srv, 10000);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        hs_dump_output(srv, "shutdown");
        HS_FAIL("echosrv did not exit 0 after SIGTERM (status %d)", st);
    }
    char want[64], *out = hs_output(srv);
    snprintf(want, sizeof want, "counting: opens=%d closes=%d", N, N);
    bool ok = out != NULL && strstr(out, want) != NULL;
    free(out);
    if (!ok) {
        hs_dump_output(srv, "shutdown");
        HS_FAIL("expected '%s' in the server's log", want);
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
        cmocka_unit_test_setup_teardown(test_close_hook_on_shutdown, setup, teardown),
    };

    if (hs_process_init() < 0)
        fprintf(stderr, "# could not raise RLIMIT_NOFILE or ignore SIGPIPE\n");
    return cmocka_run_group_tests_name("plugins_integration", tests, NULL, NULL);
}
