/* test_echocli.c - integration tests: echocli against the real echosrv and tiny fake servers. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define RUN_MS 20000            /* bound for one echocli run */
#ifndef TEST_BUDGET_S
#define TEST_BUDGET_S 60        /* SIGALRM backstop per test */
#endif

/* What one echocli run left behind. */
struct run {
    int status;                 /* wait status, or -1 if it had to be killed */
    char *out;                  /* stdout, NUL-terminated (it may hold NULs itself) */
    size_t out_len;
    char *err;                  /* stderr, NUL-terminated */
    size_t err_len;
    long ms;                    /* how long it ran */
};

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
    struct run runs[8];
    int nruns;
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
        for (int i = 0; i < c->nruns; i++) {
            free(c->runs[i].out);
            free(c->runs[i].err);
        }
    }
    return hs_ctx_teardown(state);
}

/* Arms the test's SIGALRM backstop and returns its context. */
static struct ctx *begin(void **state, const char *name)
{
    return (struct ctx *)hs_ctx_begin(state, TEST_BUDGET_S, name);
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

/* Waits for PID until START + TIMEOUT_MS, then SIGKILLs it; fills the status, the time and
 * empty outputs in R. */
static void reap(pid_t pid, long start, int timeout_ms, struct run *r)
{
    for (;;) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            r->status = st;
            break;
        }
        if (hs_now_ms() >= start + timeout_ms) {
            fprintf(stderr, "# echocli (pid %d) still running after %d ms; killing it\n",
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
}

/* A new run of C (8 per test at most) for BIN, whose argv (BIN, then ARGS) goes to ARGV, an
 * array of 40. */
static struct run *run_new(struct ctx *c, const char *bin, const char *const args[], char **argv)
{
    struct run *r;
    int argc = 0;

    assert_non_null(bin);
    assert_true(c->nruns < (int)(sizeof c->runs / sizeof c->runs[0]));
    r = &c->runs[c->nruns++];
    memset(r, 0, sizeof *r);
    argv[argc++] = (char *)bin;
    for (int i = 0; args[i] != NULL && argc < 39; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    return r;
}

/* In the forked child: no blocked signal, SIGPIPE's default action, SIGKILL when the parent
 * dies. */
static void child_reset(void)
{
    sigset_t none;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* In the forked child, once stdin, stdout and stderr are set: closes every other fd and runs
 * ARGV. Never returns. */
static void child_exec(char **argv) __attribute__((noreturn));

static void child_exec(char **argv)
{
    if (close_range(3, ~0u, 0) < 0)
        for (int fd = 3; fd < 4096; fd++)
            close(fd);
    execv(argv[0], argv);
    _exit(127);
}

/*
 * Runs $ECHOCLI with ARGS (NULL-terminated, without argv[0]), feeding IN (INLEN bytes; stdin is
 * /dev/null when IN is NULL) and capturing stdout and stderr apart. The child is SIGKILLed by
 * its PID after TIMEOUT_MS (and if this process dies). The result belongs to C.
 */
static struct run *cli_run(struct ctx *c, const char *const args[], const void *in, size_t inlen,
                           int timeout_ms)
{
    char *argv[40];
    int pin[2] = { -1, -1 }, pout[2], perr[2];
    size_t out_cap = 0, err_cap = 0, sent = 0;
    long start = hs_now_ms();
    struct run *r = run_new(c, hs_env_path("ECHOCLI"), args, argv);
    pid_t pid;

    if (in != NULL)
        assert_int_equal(pipe2(pin, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
    assert_int_equal(pipe2(perr, O_CLOEXEC), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);

        child_reset();
        if (dup2(in != NULL ? pin[0] : devnull, 0) < 0 || dup2(pout[1], 1) < 0 ||
            dup2(perr[1], 2) < 0)
            _exit(127);
        child_exec(argv);
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
    reap(pid, start, timeout_ms, r);
    return r;
}

/* Occurrences of NEEDLE in TEXT. */
static int count_of(const char *text, const char *needle)
{
    int n = 0;

    while (text != NULL && (text = strstr(text, needle)) != NULL) {
        n++;
        text++;
    }
    return n;
}

/*
 * Runs $ECHOCLI with ARGS and a pseudo-terminal as stdin (stdout and stderr are pipes: the
 * prompt goes to stderr), as a user would: types KEYS[i] once the (i+1)-th prompt "echo> " is
 * shown, for NSTEPS steps, then waits for the exit. Bounded by TIMEOUT_MS.
 */
static struct run *cli_run_tty(struct ctx *c, const char *const args[], const char *const keys[],
                               int nsteps, int timeout_ms)
{
    char *argv[40];
    int pout[2], perr[2], master, step = 0;
    size_t out_cap = 0, err_cap = 0;
    long start = hs_now_ms();
    struct run *r = run_new(c, hs_env_path("ECHOCLI"), args, argv);
    char *slave;
    pid_t pid;

    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    slave = ptsname(master);
    assert_non_null(slave);
    assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
    assert_int_equal(pipe2(perr, O_CLOEXEC), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        child_reset();
        setsid();
        int sfd = open(slave, O_RDWR | O_CLOEXEC);      /* the controlling terminal */
        if (sfd < 0 || dup2(sfd, 0) < 0 || dup2(pout[1], 1) < 0 || dup2(perr[1], 2) < 0)
            _exit(127);
        child_exec(argv);
    }
    close(pout[1]);
    close(perr[1]);

    bool out_open = true, err_open = true;
    r->status = -1;
    while (out_open || err_open) {
        if (step < nsteps && count_of(r->err, "echo> ") > step) {
            if (write(master, keys[step], strlen(keys[step])) < 0)
                break;
            step++;
            continue;
        }
        struct pollfd pfd[3] = {
            { out_open ? pout[0] : -1, POLLIN, 0 },
            { err_open ? perr[0] : -1, POLLIN, 0 },
            { master, POLLIN, 0 },
        };
        int left = (int)(start + timeout_ms - hs_now_ms());

        if (left <= 0)
            break;
        if (poll(pfd, 3, left < 50 ? left : 50) < 0 && errno != EINTR)
            break;
        if (pfd[0].revents && drain_into(pout[0], &r->out, &r->out_len, &out_cap) == 0)
            out_open = false;
        if (pfd[1].revents && drain_into(perr[0], &r->err, &r->err_len, &err_cap) == 0)
            err_open = false;
        if (pfd[2].revents & POLLIN) {
            char junk[4096];            /* what the terminal echoes: not checked */
            if (read(master, junk, sizeof junk) < 0) {
                /* the slave side is gone */
            }
        }
    }
    if (step < nsteps)
        fprintf(stderr, "# the interactive session stopped at step %d of %d\n", step, nsteps);
    close(pout[0]);
    close(perr[0]);
    reap(pid, start, timeout_ms, r);
    close(master);
    return r;
}

/* The exit code of a run, or -1 (printing the outputs) if it did not exit normally. */
static int exit_code(const struct run *r)
{
    if (r->status >= 0 && WIFEXITED(r->status))
        return WEXITSTATUS(r->status);
    if (r->status >= 0 && WIFSIGNALED(r->status))
        fprintf(stderr, "# echocli died of signal %d\n", WTERMSIG(r->status));
    return -1;
}

/* Asserts that the run exited with CODE; prints its outputs if not. */
static void expect_exit(const struct run *r, int code, const char *what)
{
    int got = exit_code(r);

    if (got != code) {
        dump("stdout", r->out, r->out_len);
        dump("stderr", r->err, r->err_len);
        HS_FAIL("%s: echocli exited with %d, expected %d", what, got, code);
    }
}

/* Asserts that stdout is exactly WANT (WANT_LEN bytes). */
static void expect_stdout(const struct run *r, const void *want, size_t want_len, const char *what)
{
    if (r->out_len != want_len || memcmp(r->out, want, want_len) != 0) {
        dump("expected stdout", want, want_len);
        dump("stdout", r->out, r->out_len);
        dump("stderr", r->err, r->err_len);
        HS_FAIL("%s: unexpected output", what);
    }
}

/* Asserts that stderr contains every NULL-terminated needle (case-insensitive). */
static void expect_stderr_has(const struct run *r, const char *what, ...)
{
    va_list ap;
    const char *needle;

    va_start(ap, what);
    while ((needle = va_arg(ap, const char *)) != NULL) {
        if (strcasestr(r->err, needle) == NULL) {
            dump("stderr", r->err, r->err_len);
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
    struct run *r = cli_run(c, args, NULL, 0, RUN_MS);
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
    struct run *r = cli_run(c, args, NULL, 0, RUN_MS);
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

    struct run *r = cli_run(c, args, in, sizeof in - 1, RUN_MS);
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

    struct run *r = cli_run(c, args, NULL, 0, RUN_MS);
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

    struct run *r = cli_run_tty(c, args, keys, 5, RUN_MS);
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
    struct run *r = cli_run(c, args, NULL, 0, RUN_MS);
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

    struct run *r = cli_run(c, args, NULL, 0, RUN_MS);
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
        struct run *r = cli_run(c, args, NULL, 0, RUN_MS);
        expect_exit(r, 2, label);
        expect_stderr_has(r, label, "usage", NULL);
        expect_stdout(r, "", 0, label);
        free(r->out);
        free(r->err);
    }
    c->nruns = 0;

    const char *sep[] = { "-a", "127.0.0.1:1", "fine", "a\r\n\r\nb", NULL };
    struct run *r = cli_run(c, sep, NULL, 0, RUN_MS);
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

    struct run *r = cli_run(c, args, NULL, 0, RUN_MS);
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
    struct run *r = cli_run(c, args, NULL, 0, RUN_MS);
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
    struct run *r = cli_run(c, args, NULL, 0, RUN_MS);
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
    };

    if (hs_process_init() < 0)
        fprintf(stderr, "# could not raise RLIMIT_NOFILE or ignore SIGPIPE\n");
    return cmocka_run_group_tests_name("echocli_integration", tests, NULL, NULL);
}
