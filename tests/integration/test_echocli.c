/* test_echocli.c - integration tests: echocli against the real echosrv and tiny fake servers. */
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
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "tls_peer.h"

#define RUN_MS 20000            /* bound for one echocli run */
#ifndef TEST_BUDGET_S
#define TEST_BUDGET_S 60        /* SIGALRM backstop per test */
#endif

/* A fake server in a thread: accepts connections one after the other and misbehaves. */
enum fake_mode {
    FAKE_HALF_REPLY,            /* at the first separator, write half the reply and close */
    FAKE_CORRUPT,               /* echo everything, but flip one bit of byte 10 */
};

struct fake {
    int fd;
    enum fake_mode mode;
    atomic_bool stop;
    pthread_t tid;
    bool started;
    char addr[64];
};

/* Per-test state: the harness's (temp dir, servers), a fake server, runs to free. */
struct ctx {
    struct hs_ctx hs;           /* first: the harness sees a struct hs_ctx */
    struct fake fake;
    struct hs_cmd runs[8];
    int nruns;
    struct tls_peer *peers[3];  /* TLS echo peers, stopped at teardown */
    char certs[320];            /* the test PKI (mkcerts.sh) in the test's directory */
};

static int setup(void **state)
{
    if (hs_env_path("ECHOCLI") == NULL || hs_ctx_setup_size(state, sizeof(struct ctx)) < 0)
        return -1;
    ((struct ctx *)*state)->fake.fd = -1;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;

    if (c != NULL) {
        if (c->fake.started) {
            atomic_store(&c->fake.stop, true);
            pthread_join(c->fake.tid, NULL);
        }
        if (c->fake.fd >= 0)
            close(c->fake.fd);
        for (int i = 0; i < c->nruns; i++)
            hs_cmd_free(&c->runs[i]);
        for (int i = 0; i < 3; i++)
            tls_peer_stop(c->peers[i]);
    }
    return hs_ctx_teardown(state);
}

/* Arms the test's SIGALRM backstop and returns its context. */
static struct ctx *begin(void **state, const char *name)
{
    return (struct ctx *)hs_ctx_begin(state, TEST_BUDGET_S, name);
}

/* A new run of C (8 per test at most) of $ECHOCLI, whose argv ($ECHOCLI, then ARGS) goes to
 * ARGV, an array of 40. */
static struct hs_cmd *run_new(struct ctx *c, const char *const args[], const char **argv)
{
    const char *bin = hs_env_path("ECHOCLI");
    int argc = 0;

    assert_non_null(bin);
    assert_true(c->nruns < (int)(sizeof c->runs / sizeof c->runs[0]));
    argv[argc++] = bin;
    for (int i = 0; args[i] != NULL && argc < 39; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    return &c->runs[c->nruns++];
}

/* Runs $ECHOCLI with ARGS (NULL-terminated, without argv[0]) as hs_cmd_run() does. The result
 * belongs to C. */
static struct hs_cmd *cli_run(struct ctx *c, const char *const args[], const void *in,
                              size_t inlen, int timeout_ms)
{
    const char *argv[40];
    struct hs_cmd *r = run_new(c, args, argv);

    hs_cmd_run(r, argv[0], argv, in, inlen, timeout_ms);
    return r;
}

/* Runs $ECHOCLI with ARGS on a pseudo-terminal (the prompt "echo> " goes to stderr) as
 * hs_cmd_run_tty() does, typing KEYS[i] at the (i+1)-th prompt. The result belongs to C. */
static struct hs_cmd *cli_run_tty(struct ctx *c, const char *const args[],
                                  const char *const keys[], int nsteps, int timeout_ms)
{
    const char *argv[40];
    struct hs_cmd *r = run_new(c, args, argv);

    hs_cmd_run_tty(r, argv[0], argv, "echo> ", keys, nsteps, timeout_ms);
    return r;
}

/* The exit code of a run, or -1 (printing the outputs) if it did not exit normally. */
static int exit_code(const struct hs_cmd *r)
{
    if (r->status >= 0 && WIFEXITED(r->status))
        return WEXITSTATUS(r->status);
    if (r->status >= 0 && WIFSIGNALED(r->status))
        fprintf(stderr, "# echocli died of signal %d\n", WTERMSIG(r->status));
    return -1;
}

/* Asserts that the run exited with CODE; prints its outputs if not. */
static void expect_exit(const struct hs_cmd *r, int code, const char *what)
{
    int got = exit_code(r);

    if (got != code) {
        hs_dump_lines("stdout", r->out, r->out_len);
        hs_dump_lines("stderr", r->err, r->err_len);
        HS_FAIL("%s: echocli exited with %d, expected %d", what, got, code);
    }
}

/* Asserts that stdout is exactly WANT (WANT_LEN bytes). */
static void expect_stdout(const struct hs_cmd *r, const void *want, size_t want_len, const char *what)
{
    if (r->out_len != want_len || memcmp(r->out, want, want_len) != 0) {
        hs_dump_lines("expected stdout", want, want_len);
        hs_dump_lines("stdout", r->out, r->out_len);
        hs_dump_lines("stderr", r->err, r->err_len);
        HS_FAIL("%s: unexpected output", what);
    }
}

/* Asserts that stderr contains every NULL-terminated needle (case-insensitive). */
static void expect_stderr_has(const struct hs_cmd *r, const char *what, ...)
{
    va_list ap;
    const char *needle;

    va_start(ap, what);
    while ((needle = va_arg(ap, const char *)) != NULL) {
        if (strcasestr(r->err, needle) == NULL) {
            hs_dump_lines("stderr", r->err, r->err_len);
            va_end(ap);
            HS_FAIL("%s: stderr does not mention '%s'", what, needle);
        }
    }
    va_end(ap);
}

/* A CLOEXEC TCP socket bound to 127.0.0.1 on a port the kernel picks; "127.0.0.1:PORT" into
 * ADDR. If LISTEN, it listens (backlog 8). Returns the fd. */
static int loopback_socket(char *addr, size_t cap, bool listening)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    if (listening)
        assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(addr, cap, "127.0.0.1:%u", ntohs(sin.sin_port));
    return fd;
}

/* The fake server's thread: serve one connection at a time until asked to stop. */
static void *fake_main(void *arg)
{
    struct fake *f = arg;

    while (!atomic_load(&f->stop)) {
        struct pollfd pl = { f->fd, POLLIN, 0 };
        if (poll(&pl, 1, 50) <= 0)
            continue;
        int cfd = accept4(f->fd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0)
            continue;
        char buf[65536];
        size_t have = 0, total = 0;
        bool done = false;
        while (!done && !atomic_load(&f->stop)) {
            struct pollfd pc = { cfd, POLLIN, 0 };
            if (poll(&pc, 1, 50) <= 0)
                continue;
            ssize_t n = recv(cfd, buf + have, sizeof buf - have, 0);
            if (n <= 0)
                break;
            if (f->mode == FAKE_CORRUPT) {
                if (total <= 10 && total + (size_t)n > 10)
                    buf[10 - total] ^= 1;
                total += (size_t)n;
                if (send(cfd, buf, (size_t)n, MSG_NOSIGNAL) < 0)
                    break;
                continue;
            }
            have += (size_t)n;
            char *end = memmem(buf, have, "\r\n\r\n", 4);
            if (end != NULL || have == sizeof buf) {
                size_t half = (size_t)(end != NULL ? end - buf + 4 : (long)have) / 2;
                if (send(cfd, buf, half, MSG_NOSIGNAL) < 0) {
                    /* closed anyway */
                }
                done = true;
            }
        }
        close(cfd);
    }
    return NULL;
}

/* Starts the fake server of MODE on a loopback port; its address is c->fake.addr. */
static void fake_start(struct ctx *c, enum fake_mode mode)
{
    c->fake.fd = loopback_socket(c->fake.addr, sizeof c->fake.addr, true);
    c->fake.mode = mode;
    assert_int_equal(pthread_create(&c->fake.tid, NULL, fake_main, &c->fake), 0);
    c->fake.started = true;
}

/* The number after "KEY": in a JSON object, as a double. Fails the test if absent. */
static double json_number(const char *json, const char *key)
{
    char pat[64];
    const char *p;
    char *end;
    double v;

    snprintf(pat, sizeof pat, "\"%s\":", key);
    p = strstr(json, pat);
    if (p == NULL)
        HS_FAIL("no \"%s\" in the JSON output: %s", key, json);
    v = strtod(p + strlen(pat), &end);
    if (end == p + strlen(pat))
        HS_FAIL("\"%s\" is not a number in: %s", key, json);
    return v;
}

/* The field of column NAME in a CSV header line and a row (no commas inside fields). */
static double csv_number(const char *header, const char *row, const char *name)
{
    char *h = strdup(header), *w = strdup(row), *hs = NULL, *ws = NULL;
    char *hf = strtok_r(h, ",\n", &hs), *wf = strtok_r(w, ",\n", &ws);
    double v = -1;
    bool found = false;

    while (hf != NULL && wf != NULL) {
        if (strcmp(hf, name) == 0) {
            v = strtod(wf, NULL);
            found = true;
            break;
        }
        hf = strtok_r(NULL, ",\n", &hs);
        wf = strtok_r(NULL, ",\n", &ws);
    }
    free(h);
    free(w);
    if (!found)
        HS_FAIL("no column %s in the CSV output:\n%s%s", name, header, row);
    return v;
}

/* 1. One message comes back, over TCP and over a unix socket. */
static void test_one_message(void **state)
{
    struct ctx *c = begin(state, __func__);
    char bind[512];

    snprintf(bind, sizeof bind, "127.0.0.1:0, unix:%s/echo.sock", c->hs.dir);
    struct hs_proc *srv = hs_ctx_start(&c->hs, bind, 2, 0, "");
    const char *args[] = { "-a", hs_addr(srv, 0), "-t", "5", "Hello, world!", NULL };
    struct hs_cmd *r = cli_run(c, args, NULL, 0, RUN_MS);
    expect_exit(r, 0, "one message over TCP");
    expect_stdout(r, "Hello, world!\n", 14, "one message over TCP");
    if (r->err_len != 0)
        HS_FAIL("unexpected stderr: %s", r->err);

    const char *uargs[] = { "--address", hs_addr(srv, 1), "a\tb c", NULL };
    r = cli_run(c, uargs, NULL, 0, RUN_MS);
    expect_exit(r, 0, "one message over a unix socket");
    expect_stdout(r, "a\tb c\n", 6, "one message over a unix socket");
}

/* 2. Twenty messages of different sizes over a pool of 4 come back in argument order. */
static void test_argument_order(void **state)
{
    enum { N = 20 };
    struct ctx *c = begin(state, __func__);
    struct hs_proc *srv = hs_ctx_start(&c->hs, "127.0.0.1:0", 1, 0, "");
    const char *args[N + 6] = { "-a", hs_addr(srv, 0), "-p", "4", "--" };
    char *msgs[N];
    char *want = NULL;
    size_t want_len = 0;
    FILE *w = open_memstream(&want, &want_len);

    assert_non_null(w);
    for (int i = 0; i < N; i++) {
        /* The first messages are the longest: they are the last to complete. */
        size_t len = (size_t)(N - i) * 4000 + 1;
        msgs[i] = malloc(len + 1);
        assert_non_null(msgs[i]);
        hs_fill_pattern(msgs[i], len, (unsigned)i);
        memcpy(msgs[i], i == 0 ? "-first-" : "message", 7);    /* "--" lets it start with '-' */
        msgs[i][len] = '\0';
        args[5 + i] = msgs[i];
        fprintf(w, "%s\n", msgs[i]);
    }
    args[5 + N] = NULL;
    fclose(w);
    struct hs_cmd *r = cli_run(c, args, NULL, 0, RUN_MS);
    for (int i = 0; i < N; i++)
        free(msgs[i]);
    expect_exit(r, 0, "20 messages, pool 4");
    bool same = r->out_len == want_len && memcmp(r->out, want, want_len) == 0;
    if (!same) {
        size_t i = 0;
        while (i < r->out_len && i < want_len && r->out[i] == want[i])
            i++;
        fprintf(stderr, "# output of %zu bytes, expected %zu; first difference at byte %zu\n",
                r->out_len, want_len, i);
    }
    free(want);
    assert_true(same);
}

/* 3. Stdin mode: one message per line, CRLF or LF, an empty line, a NUL byte, no final LF. */
static void test_stdin(void **state)
{
    static const char in[] = "one\ntwo\r\n\nwith\0nul\nlast";
    static const char want[] = "one\ntwo\n\nwith\0nul\nlast\n";
    struct ctx *c = begin(state, __func__);
    struct hs_proc *srv = hs_ctx_start(&c->hs, "127.0.0.1:0", 1, 0, "");
    const char *args[] = { "-a", hs_addr(srv, 0), NULL };

    struct hs_cmd *r = cli_run(c, args, in, sizeof in - 1, RUN_MS);
    expect_exit(r, 0, "5 lines on stdin");
    expect_stdout(r, want, sizeof want - 1, "5 lines on stdin");
    if (strstr(r->err, "echo>") != NULL || strstr(r->out, "echo>") != NULL)
        HS_FAIL("a prompt was shown although stdin is not a terminal");

    r = cli_run(c, args, "", 0, RUN_MS);
    expect_exit(r, 0, "empty stdin");
    expect_stdout(r, "", 0, "empty stdin");
}

/* 4. QUIT is echoed; in stdin mode the next line goes over a new connection. */
static void test_quit(void **state)
{
    static const char in[] = "before\nQUIT\nafter\n";
    struct ctx *c = begin(state, __func__);
    struct hs_proc *srv = hs_ctx_start(&c->hs, "127.0.0.1:0", 1, 0, "");
    const char *args[] = { "-a", hs_addr(srv, 0), "QUIT", NULL };

    struct hs_cmd *r = cli_run(c, args, NULL, 0, RUN_MS);
    expect_exit(r, 0, "QUIT");
    expect_stdout(r, "QUIT\n", 5, "QUIT");

    const char *sargs[] = { "-a", hs_addr(srv, 0), "-p", "1", NULL };
    r = cli_run(c, sargs, in, sizeof in - 1, RUN_MS);
    expect_exit(r, 0, "QUIT on stdin, then another line");
    expect_stdout(r, in, sizeof in - 1, "QUIT on stdin, then another line");
}

/* 4b. On a terminal: a prompt, empty lines skipped, QUIT then a new connection, an error
 * reported and the session going on; end of file (^D) ends it with status 0. */
static void test_interactive(void **state)
{
    struct ctx *c = begin(state, __func__);
    struct hs_proc *srv = hs_ctx_start(&c->hs, "127.0.0.1:0", 1, 0, "");
    const char *args[] = { "-a", hs_addr(srv, 0), "-t", "5", NULL };
    /* Enter is '\r' on a terminal. */
    const char *const keys[] = { "hello\r", "\r", "QUIT\r", "world\r", "\x04" };

    struct hs_cmd *r = cli_run_tty(c, args, keys, 5, RUN_MS);
    expect_exit(r, 0, "interactive session");
    expect_stdout(r, "hello\nQUIT\nworld\n", 17, "interactive session");

    char addr[64];
    int fd = loopback_socket(addr, sizeof addr, false);
    close(fd);
    const char *uargs[] = { "-a", addr, NULL };
    const char *const ukeys[] = { "x\r", "\x04" };
    r = cli_run_tty(c, uargs, ukeys, 2, RUN_MS);
    expect_exit(r, 0, "interactive session, server unreachable");
    expect_stderr_has(r, "interactive session, server unreachable", "refused", NULL);
    const char *p = strstr(r->err, "refused");
    if (p == NULL || strstr(p, "echo> ") == NULL)
        HS_FAIL("interactive session: no prompt after the error: %s", r->err);
}

/* 5. A port nobody listens on: exit 1, the address and the reason on stderr. */
static void test_unreachable(void **state)
{
    struct ctx *c = begin(state, __func__);
    char addr[64];
    int fd = loopback_socket(addr, sizeof addr, false);

    close(fd);                  /* bound, then closed: nothing listens there */
    const char *args[] = { "-a", addr, "-t", "5", "hello", NULL };
    struct hs_cmd *r = cli_run(c, args, NULL, 0, RUN_MS);
    expect_exit(r, 1, "unreachable port");
    expect_stderr_has(r, "unreachable port", addr, "refused", NULL);
    expect_stdout(r, "", 0, "unreachable port");

    const char *sargs[] = { "-a", addr, NULL };
    r = cli_run(c, sargs, "hello\nagain\n", 12, RUN_MS);
    expect_exit(r, 1, "unreachable port, stdin mode");
    expect_stderr_has(r, "unreachable port, stdin mode", addr, "refused", NULL);

    const char *bargs[] = { "bench", "-a", addr, "-c", "2", "-n", "10", "--json", NULL };
    r = cli_run(c, bargs, NULL, 0, RUN_MS);
    expect_exit(r, 1, "bench against an unreachable port");
    if (json_number(r->out, "errors_connect") != 2)
        HS_FAIL("bench against an unreachable port: expected errors_connect 2 in %s", r->out);
}

/* 6. A server that accepts (in the kernel) but never answers: -t bounds the wait, exit 1. */
static void test_timeout(void **state)
{
    struct ctx *c = begin(state, __func__);
    char addr[64];
    int fd = loopback_socket(addr, sizeof addr, true);     /* listening, never accepting */
    const char *args[] = { "-a", addr, "-t", "0.3", "hello", NULL };

    struct hs_cmd *r = cli_run(c, args, NULL, 0, RUN_MS);
    close(fd);
    expect_exit(r, 1, "no reply within -t 0.3");
    expect_stderr_has(r, "no reply within -t 0.3", addr, "timed out", NULL);
    if (r->ms < 250 || r->ms > 5000)
        HS_FAIL("-t 0.3 made echocli give up after %ld ms", r->ms);
}

/* 7. Bad arguments: exit 2 with the usage, before any connection. Help and version: exit 0. */
static void test_bad_arguments(void **state)
{
    static const char *const bad[][8] = {
        { "-p", "0", "x" },
        { "-p", "many", "x" },
        { "-t", "abc", "x" },
        { "-t", "-1", "x" },
        { "-t", "0", "x" },
        { "-x", "x" },
        { "-a" },
        { "-a", "no-port", "x" },
        { "-S", "", "x" },
        { "-S", "\\q", "x" },
        { "bench", "-c", "0" },
        { "bench", "-s", "huge" },
        { "bench", "-n", "-5" },
        { "bench", "-P", "0" },
        { "bench", "-d", "soon" },
        { "bench", "stray" },
        { "bench", "--bogus" },
    };
    struct ctx *c = begin(state, __func__);
    char label[128];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[10] = { 0 };
        int n = 0;

        for (int k = 0; k < 8 && bad[i][k] != NULL; k++)
            args[n++] = bad[i][k];
        snprintf(label, sizeof label, "bad arguments #%zu (%s %s)", i, args[0],
                 args[1] ? args[1] : "");
        c->nruns = 0;
        struct hs_cmd *r = cli_run(c, args, NULL, 0, RUN_MS);
        expect_exit(r, 2, label);
        expect_stderr_has(r, label, "usage", NULL);
        expect_stdout(r, "", 0, label);
        free(r->out);
        free(r->err);
    }
    c->nruns = 0;

    const char *sep[] = { "-a", "127.0.0.1:1", "fine", "a\r\n\r\nb", NULL };
    struct hs_cmd *r = cli_run(c, sep, NULL, 0, RUN_MS);
    expect_exit(r, 2, "a message containing the separator");
    expect_stderr_has(r, "a message containing the separator", "separator", NULL);

    const char *help[] = { "--help", NULL };
    r = cli_run(c, help, NULL, 0, RUN_MS);
    expect_exit(r, 0, "--help");
    if (strstr(r->out, "usage: echocli") == NULL || strstr(r->out, "bench") == NULL)
        HS_FAIL("--help does not show the usage: %s", r->out);

    const char *bhelp[] = { "bench", "-h", NULL };
    r = cli_run(c, bhelp, NULL, 0, RUN_MS);
    expect_exit(r, 0, "bench -h");
    if (strstr(r->out, "--json") == NULL)
        HS_FAIL("bench -h does not show the usage: %s", r->out);

    const char *version[] = { "-V", NULL };
    r = cli_run(c, version, NULL, 0, RUN_MS);
    expect_exit(r, 0, "-V");
    if (strstr(r->out, "echocli " PACKAGE_VERSION) == NULL)
        HS_FAIL("-V does not print 'echocli %s': %s", PACKAGE_VERSION, r->out);
}

/* 8. A short bench run, read through --json and --csv: every request answered, no error. */
static void test_bench(void **state)
{
    struct ctx *c = begin(state, __func__);
    struct hs_proc *srv = hs_ctx_start(&c->hs, "127.0.0.1:0", 1, 0, "");
    const char *args[] = { "bench", "-a", hs_addr(srv, 0), "-c", "8", "-n", "2000", "-s", "64",
                           "--json", NULL };

    struct hs_cmd *r = cli_run(c, args, NULL, 0, RUN_MS);
    expect_exit(r, 0, "bench --json");
    if (r->out[0] != '{' || strchr(r->out, '\n') != r->out + r->out_len - 1 ||
        r->out[r->out_len - 2] != '}')
        HS_FAIL("bench --json did not print one JSON object on one line: %s", r->out);
    if (json_number(r->out, "requests") != 2000 || json_number(r->out, "errors") != 0 ||
        json_number(r->out, "connections") != 8 || json_number(r->out, "size") != 64)
        HS_FAIL("bench --json: unexpected figures: %s", r->out);
    double p50 = json_number(r->out, "p50_us"), p90 = json_number(r->out, "p90_us");
    double p99 = json_number(r->out, "p99_us"), p999 = json_number(r->out, "p999_us");
    double max = json_number(r->out, "max_us"), rate = json_number(r->out, "rate");
    if (!(p50 > 0 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max && rate > 0))
        HS_FAIL("bench --json: inconsistent latencies or rate: %s", r->out);

    args[9] = "--csv";
    r = cli_run(c, args, NULL, 0, RUN_MS);
    expect_exit(r, 0, "bench --csv");
    char *nl = strchr(r->out, '\n');
    if (nl == NULL || strchr(nl + 1, '\n') != r->out + r->out_len - 1)
        HS_FAIL("bench --csv did not print a header and one row: %s", r->out);
    *nl = '\0';
    if (csv_number(r->out, nl + 1, "requests") != 2000 || csv_number(r->out, nl + 1, "errors") != 0
        || csv_number(r->out, nl + 1, "pipeline") != 1 || csv_number(r->out, nl + 1, "rate") <= 0)
        HS_FAIL("bench --csv: unexpected figures:\n%s\n%s", r->out, nl + 1);

    /* Pipelined, and replies larger than a read: they arrive in pieces. */
    const char *big[] = { "bench", "-a", hs_addr(srv, 0), "-c", "3", "-n", "60", "-s", "300k",
                          "-P", "4", "--json", NULL };
    r = cli_run(c, big, NULL, 0, RUN_MS);
    expect_exit(r, 0, "bench -s 300k -P 4");
    if (json_number(r->out, "requests") != 60 || json_number(r->out, "errors") != 0)
        HS_FAIL("bench -s 300k -P 4: unexpected figures: %s", r->out);

    /* The default, human summary; -d with two loops. */
    const char *human[] = { "bench", "-a", hs_addr(srv, 0), "-c", "4", "-T", "2", "-d", "0.3",
                            "-P", "2", NULL };
    r = cli_run(c, human, NULL, 0, RUN_MS);
    expect_exit(r, 0, "bench -d 0.3 -T 2");
    if (strstr(r->out, "requests/s") == NULL || strstr(r->out, "p99.9") == NULL)
        HS_FAIL("bench summary lacks the rate or the percentiles: %s", r->out);
}

/* 9. A reply with one wrong byte is caught by bench. */
static void test_bench_corrupt(void **state)
{
    struct ctx *c = begin(state, __func__);

    fake_start(c, FAKE_CORRUPT);
    const char *args[] = { "bench", "-a", c->fake.addr, "-c", "1", "-n", "5", "-t", "5", "--json",
                           NULL };
    struct hs_cmd *r = cli_run(c, args, NULL, 0, RUN_MS);
    expect_exit(r, 1, "bench against a corrupting server");
    if (json_number(r->out, "errors_mismatch") != 1 || json_number(r->out, "requests") != 0)
        HS_FAIL("bench against a corrupting server: expected one mismatch: %s", r->out);
    expect_stderr_has(r, "bench against a corrupting server", "byte 10", NULL);
}

/* 10. The server closes the connection in the middle of a reply: exit 1, a clear message. */
static void test_mid_reply_close(void **state)
{
    struct ctx *c = begin(state, __func__);

    fake_start(c, FAKE_HALF_REPLY);
    const char *args[] = { "-a", c->fake.addr, "-t", "5", "hello there", NULL };
    struct hs_cmd *r = cli_run(c, args, NULL, 0, RUN_MS);
    expect_exit(r, 1, "server closing mid-reply");
    expect_stdout(r, "", 0, "server closing mid-reply");
    expect_stderr_has(r, "server closing mid-reply", c->fake.addr, NULL);
    if (r->ms > 4000)
        HS_FAIL("echocli took %ld ms to notice the closed connection", r->ms);

    const char *sargs[] = { "-a", c->fake.addr, "-t", "5", NULL };
    r = cli_run(c, sargs, "hello\n", 6, RUN_MS);
    expect_exit(r, 1, "server closing mid-reply, stdin mode");
    expect_stderr_has(r, "server closing mid-reply, stdin mode", c->fake.addr, NULL);

    const char *bargs[] = { "bench", "-a", c->fake.addr, "-c", "1", "-n", "3", "--json", NULL };
    r = cli_run(c, bargs, NULL, 0, RUN_MS);
    expect_exit(r, 1, "bench against a server closing mid-reply");
    if (json_number(r->out, "errors_closed") != 1)
        HS_FAIL("bench: expected one 'closed' error: %s", r->out);
}

/* ---- TLS ------------------------------------------------------------------------------- */

/* Makes the test PKI in the test's directory with mkcerts.sh (c->certs). */
static void make_certs(struct ctx *c)
{
    const char *src = hs_env_path("ABS_TOP_SRCDIR");
    char script[512];
    struct hs_cmd r;

    assert_non_null(src);
    snprintf(script, sizeof script, "%s/tests/integration/mkcerts.sh", src);
    snprintf(c->certs, sizeof c->certs, "%s/pki", c->hs.dir);
    const char *argv[] = { "/bin/sh", script, c->certs, NULL };
    memset(&r, 0, sizeof r);
    hs_cmd_run(&r, "/bin/sh", argv, NULL, 0, RUN_MS);
    if (exit_code(&r) != 0) {
        hs_dump_lines("mkcerts.sh stderr", r.err, r.err_len);
        hs_cmd_free(&r);
        HS_FAIL("mkcerts.sh failed");
    }
    hs_cmd_free(&r);
}

/* The path of NAME in the test PKI, in one of 8 static buffers used in turn. */
static const char *pki(struct ctx *c, const char *name)
{
    static char bufs[8][400];
    static int next;
    char *b = bufs[next++ % 8];

    snprintf(b, sizeof bufs[0], "%s/%s", c->certs, name);
    return b;
}

/* Starts TLS echo peer I (0 to 2) serving the test PKI's server certificate, or a plaintext
 * echo with PLAIN; requiring a client certificate with MUTUAL; with CHATTY a ticket and a key
 * update after every reply; with RESET a reset as soon as data arrives. Returns its address. */
static const char *peer_start_x(struct ctx *c, int i, bool plain, bool mutual, bool chatty,
                                bool reset)
{
    struct tls_peer_opts o = { 0 };
    char cert[400], key[400], ca[400], err[256];

    snprintf(cert, sizeof cert, "%s/server.pem", c->certs);
    snprintf(key, sizeof key, "%s/server.key", c->certs);
    snprintf(ca, sizeof ca, "%s/ca.pem", c->certs);
    o.plain = plain;
    o.cert_file = cert;
    o.key_file = key;
    o.client_ca_file = mutual ? ca : NULL;
    o.ticket_after_reply = o.key_update_after_reply = chatty;
    o.reset_on_data = reset;
    c->peers[i] = tls_peer_start(&o, err, sizeof err);
    if (c->peers[i] == NULL)
        HS_FAIL("tls_peer_start: %s", err);
    return tls_peer_addr(c->peers[i]);
}

static const char *peer_start(struct ctx *c, int i, bool plain, bool mutual, bool chatty)
{
    return peer_start_x(c, i, plain, mutual, chatty, false);
}

/* 11. TLS in message and stdin modes: verified against --cacert, or --insecure; refused with
 * the verification failure named (exit 1) for another CA and for a wrong --servername. */
static void test_tls_messages(void **state)
{
    struct ctx *c = begin(state, __func__);
    make_certs(c);
    const char *addr = peer_start(c, 0, false, false, false);

    const char *args[] = { "-a", addr, "--cacert", pki(c, "ca.pem"), "Hello, TLS!", "again",
                           NULL };
    struct hs_cmd *r = cli_run(c, args, NULL, 0, RUN_MS);
    expect_exit(r, 0, "two messages over TLS");
    expect_stdout(r, "Hello, TLS!\nagain\n", 18, "two messages over TLS");

    const char *sargs[] = { "-a", addr, "--cacert", pki(c, "ca.pem"), "-p", "1", NULL };
    r = cli_run(c, sargs, "one\ntwo\nthree\n", 14, RUN_MS);
    expect_exit(r, 0, "stdin over TLS");
    expect_stdout(r, "one\ntwo\nthree\n", 14, "stdin over TLS");

    const char *iargs[] = { "-a", addr, "--insecure", "unverified", NULL };
    r = cli_run(c, iargs, NULL, 0, RUN_MS);
    expect_exit(r, 0, "--insecure");
    expect_stdout(r, "unverified\n", 11, "--insecure");

    const char *wargs[] = { "-a", addr, "--cacert", pki(c, "other-ca.pem"), "hello", NULL };
    r = cli_run(c, wargs, NULL, 0, RUN_MS);
    expect_exit(r, 1, "a CA that did not sign the server's certificate");
    expect_stderr_has(r, "another CA", addr, "certificate verify failed",
                      "unable to get local issuer certificate", NULL);
    expect_stdout(r, "", 0, "another CA");

    const char *nargs[] = { "-a", addr, "--cacert", pki(c, "ca.pem"), "--servername",
                            "wrong.example", "hello", NULL };
    r = cli_run(c, nargs, NULL, 0, RUN_MS);
    expect_exit(r, 1, "a wrong --servername");
    expect_stderr_has(r, "a wrong --servername", "hostname mismatch", NULL);

    const char *pargs[] = { "-a", peer_start(c, 1, true, false, false), "--tls", "-t", "3",
                            "hello", NULL };
    r = cli_run(c, pargs, NULL, 0, RUN_MS);
    expect_exit(r, 1, "--tls against a plaintext server");
    expect_stderr_has(r, "--tls against a plaintext server", "TLS handshake", NULL);
}

/* 12. Mutual TLS: --cert and --key work; without them the server's refusal is reported. */
static void test_tls_mutual(void **state)
{
    struct ctx *c = begin(state, __func__);
    make_certs(c);
    const char *addr = peer_start(c, 0, false, true, false);

    const char *args[] = { "-a", addr, "--cacert", pki(c, "ca.pem"), "--cert",
                           pki(c, "client.pem"), "--key", pki(c, "client.key"), "mutual", NULL };
    struct hs_cmd *r = cli_run(c, args, NULL, 0, RUN_MS);
    expect_exit(r, 0, "mutual TLS");
    expect_stdout(r, "mutual\n", 7, "mutual TLS");

    const char *nargs[] = { "-a", addr, "--cacert", pki(c, "ca.pem"), "anonymous", NULL };
    r = cli_run(c, nargs, NULL, 0, RUN_MS);
    expect_exit(r, 1, "no client certificate");
    expect_stderr_has(r, "no client certificate", "TLS handshake", "certificate required", NULL);

    const char *bargs[] = { "bench", "-a", addr, "--cacert", pki(c, "ca.pem"), "--cert",
                            pki(c, "client.pem"), "--key", pki(c, "client.key"), "-c", "2",
                            "-n", "200", "--json", NULL };
    r = cli_run(c, bargs, NULL, 0, RUN_MS);
    expect_exit(r, 0, "bench with mutual TLS");
    if (json_number(r->out, "requests") != 200 || json_number(r->out, "errors") != 0)
        HS_FAIL("bench with mutual TLS: unexpected figures: %s", r->out);
}

/* 13. bench over TLS: every reply checked, pipelined, replies of many records, a peer that
 * sends tickets and key updates after every reply; a wrong CA counts connect errors. */
static void test_tls_bench(void **state)
{
    struct ctx *c = begin(state, __func__);
    make_certs(c);
    const char *addr = peer_start(c, 0, false, false, false);

    const char *args[] = { "bench", "-a", addr, "--cacert", pki(c, "ca.pem"), "-c", "4", "-n",
                           "4000", "-P", "8", "-T", "2", "--json", NULL };
    struct hs_cmd *r = cli_run(c, args, NULL, 0, RUN_MS);
    expect_exit(r, 0, "bench over TLS");
    if (json_number(r->out, "requests") != 4000 || json_number(r->out, "errors") != 0 ||
        strstr(r->out, "\"tls\":true") == NULL)
        HS_FAIL("bench over TLS: unexpected figures: %s", r->out);

    const char *big[] = { "bench", "-a", addr, "--cacert", pki(c, "ca.pem"), "-c", "2", "-n",
                          "40", "-s", "100k", "-P", "3", "--json", NULL };
    r = cli_run(c, big, NULL, 0, RUN_MS);
    expect_exit(r, 0, "bench over TLS, -s 100k -P 3");
    if (json_number(r->out, "requests") != 40 || json_number(r->out, "errors") != 0)
        HS_FAIL("bench over TLS, -s 100k: unexpected figures: %s", r->out);

    const char *chatty[] = { "bench", "-a", peer_start(c, 1, false, false, true), "--cacert",
                             pki(c, "ca.pem"), "-c", "2", "-n", "400", "-P", "2", "--json", NULL };
    r = cli_run(c, chatty, NULL, 0, RUN_MS);
    expect_exit(r, 0, "bench against a peer sending tickets and key updates");
    if (json_number(r->out, "requests") != 400 || json_number(r->out, "errors") != 0)
        HS_FAIL("bench, tickets and key updates: unexpected figures: %s", r->out);

    const char *wrong[] = { "bench", "-a", addr, "--cacert", pki(c, "other-ca.pem"), "-c", "2",
                            "-n", "10", "--json", NULL };
    r = cli_run(c, wrong, NULL, 0, RUN_MS);
    expect_exit(r, 1, "bench with a wrong CA");
    if (json_number(r->out, "errors_connect") != 2)
        HS_FAIL("bench with a wrong CA: expected errors_connect 2: %s", r->out);
    expect_stderr_has(r, "bench with a wrong CA", "certificate verify failed", NULL);

    /* A peer that resets mid-request: bench (which leaves SIGPIPE's default action alone)
     * counts the connection as closed and lives on. */
    const char *reset[] = { "bench", "-a", peer_start_x(c, 2, false, false, false, true),
                            "--cacert", pki(c, "ca.pem"), "-c", "1", "-n", "50", "-s", "1m",
                            "-P", "4", "--json", NULL };
    r = cli_run(c, reset, NULL, 0, RUN_MS);
    expect_exit(r, 1, "bench against a peer that resets");
    if (json_number(r->out, "errors_closed") != 1)
        HS_FAIL("bench against a peer that resets: expected errors_closed 1: %s", r->out);
}

/* 14. TLS arguments: --cert without --key and the reverse are bad arguments (exit 2 with
 * the usage), in both modes; a CA, certificate or key file that cannot be read is reported
 * by name (exit 2). */
static void test_tls_bad_arguments(void **state)
{
    static const char *const bad[][6] = {
        { "--cert", "c.pem", "x" },
        { "--key", "k.pem", "x" },
        { "--servername", "", "x" },
        { "bench", "--cert", "c.pem" },
        { "bench", "--key", "k.pem" },
        { "bench", "--tls", "--bogus" },
    };
    struct ctx *c = begin(state, __func__);
    char label[128], missing[400];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[8] = { 0 };
        int n = 0;

        for (int k = 0; k < 6 && bad[i][k] != NULL; k++)
            args[n++] = bad[i][k];
        snprintf(label, sizeof label, "bad TLS arguments #%zu (%s %s)", i, args[0], args[1]);
        c->nruns = 0;
        struct hs_cmd *r = cli_run(c, args, NULL, 0, RUN_MS);
        expect_exit(r, 2, label);
        expect_stderr_has(r, label, "usage", NULL);
        free(r->out);
        free(r->err);
    }
    c->nruns = 0;
    make_certs(c);
    snprintf(missing, sizeof missing, "%s/missing.pem", c->hs.dir);

    const char *ca[] = { "-a", "127.0.0.1:1", "--cacert", missing, "x", NULL };
    struct hs_cmd *r = cli_run(c, ca, NULL, 0, RUN_MS);
    expect_exit(r, 2, "a missing --cacert");
    expect_stderr_has(r, "a missing --cacert", missing, "No such file", NULL);

    const char *key[] = { "-a", "127.0.0.1:1", "--cert", pki(c, "client.pem"), "--key", missing,
                          "x", NULL };
    r = cli_run(c, key, NULL, 0, RUN_MS);
    expect_exit(r, 2, "a missing --key");
    expect_stderr_has(r, "a missing --key", missing, NULL);

    const char *mismatch[] = { "bench", "-a", "127.0.0.1:1", "--cert", pki(c, "client.pem"),
                               "--key", pki(c, "other-client.key"), NULL };
    r = cli_run(c, mismatch, NULL, 0, RUN_MS);
    expect_exit(r, 2, "bench with a key of another certificate");
    expect_stderr_has(r, "bench with a key of another certificate", "does not match", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_argument_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interactive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bench, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bench_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mid_reply_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_mutual, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_bench, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_bad_arguments, setup, teardown),
    };

    if (hs_process_init() < 0)
        fprintf(stderr, "# could not raise RLIMIT_NOFILE or ignore SIGPIPE\n");
    return cmocka_run_group_tests_name("echocli_integration", tests, NULL, NULL);
}
