/* test_metrics.c - integration tests: the [admin] listener's /metrics against known traffic, its HTTP handling, echocli info. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
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
#define IO_MS 5000
#define WAIT_MS 5000            /* bound for a counter to reach its value */
#define TEST_BUDGET_S 60
#define BODY_MAX (1 << 20)

static struct hs_ctx *begin(void **state, const char *name)
{
    return hs_ctx_begin(state, TEST_BUDGET_S, name);
}

/* ---- the exposition format ---- */

#define MAX_SAMPLES 512
#define MAX_LABELS 4

/* One sample: name, up to MAX_LABELS label pairs, value. */
struct sample {
    char name[96];
    int nlabels;
    char key[MAX_LABELS][32];
    char val[MAX_LABELS][96];
    double value;
};

struct expo {
    int n;
    struct sample s[MAX_SAMPLES];
};

/* Parses TEXT (Prometheus text format 0.0.4) into E, checking what the format requires of
 * us: a # TYPE line before each family's samples, counters named *_total, label values
 * quoted, a number after each sample. Returns 0, or -1 after a '# ' diagnostic. */
static int expo_parse(const char *text, struct expo *e)
{
    char types[64][96];
    char kinds[64][16];
    int ntypes = 0;
    e->n = 0;
    for (const char *line = text; *line != '\0';) {
        const char *eol = strchr(line, '\n');
        if (eol == NULL) {
            fprintf(stderr, "# exposition does not end with a newline\n");
            return -1;
        }
        char l[512];
        size_t len = (size_t)(eol - line);
        if (len >= sizeof l)
            return -1;
        memcpy(l, line, len);
        l[len] = '\0';
        line = eol + 1;
        if (strncmp(l, "# TYPE ", 7) == 0) {
            if (ntypes == 64 || sscanf(l + 7, "%95s %15s", types[ntypes], kinds[ntypes]) != 2)
                return -1;
            ntypes++;
            continue;
        }
        if (l[0] == '#' || l[0] == '\0')
            continue;
        if (e->n == MAX_SAMPLES)
            return -1;
        struct sample *s = &e->s[e->n];
        memset(s, 0, sizeof *s);
        char *p = l + strcspn(l, "{ ");
        if ((size_t)(p - l) >= sizeof s->name)
            return -1;
        memcpy(s->name, l, (size_t)(p - l));
        if (*p == '{') {
            p++;
            while (*p != '}') {
                char *eq = strchr(p, '=');
                if (eq == NULL || eq[1] != '"' || s->nlabels == MAX_LABELS) {
                    fprintf(stderr, "# bad labels in '%s'\n", l);
                    return -1;
                }
                snprintf(s->key[s->nlabels], sizeof s->key[0], "%.*s", (int)(eq - p), p);
                char *q = eq + 2;
                size_t j = 0;
                for (; *q != '"' && *q != '\0'; q++) {
                    if (*q == '\\')
                        q++;
                    if (j + 1 < sizeof s->val[0])
                        s->val[s->nlabels][j++] = *q;
                }
                if (*q != '"')
                    return -1;
                s->nlabels++;
                p = q + 1;
                if (*p == ',')
                    p++;
            }
            p++;
        }
        char *end;
        s->value = strtod(p, &end);
        if (end == p || *p != ' ') {
            fprintf(stderr, "# no value in '%s'\n", l);
            return -1;
        }
        int t;
        for (t = 0; t < ntypes && strcmp(types[t], s->name) != 0; t++)
            ;
        if (t == ntypes) {
            fprintf(stderr, "# sample '%s' without a # TYPE line before it\n", s->name);
            return -1;
        }
        size_t nl = strlen(s->name);
        bool total = nl > 6 && strcmp(s->name + nl - 6, "_total") == 0;
        if ((strcmp(kinds[t], "counter") == 0) != total) {
            fprintf(stderr, "# %s is a %s: counters, and only they, end in _total\n", s->name,
                    kinds[t]);
            return -1;
        }
        e->n++;
    }
    return 0;
}

/* The sum of the samples named NAME whose labels include every "key=value" of the
 * comma-separated LABELS (NULL or "": all). -1 if no sample matches. */
static double expo_get(const struct expo *e, const char *name, const char *labels)
{
    double sum = 0;
    bool any = false;
    for (int i = 0; i < e->n; i++) {
        const struct sample *s = &e->s[i];
        if (strcmp(s->name, name) != 0)
            continue;
        bool ok = true;
        char want[256];
        snprintf(want, sizeof want, "%s", labels ? labels : "");
        for (char *save = NULL, *kv = strtok_r(want, ",", &save); kv && ok;
             kv = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(kv, '=');
            bool found = false;
            for (int k = 0; eq && k < s->nlabels; k++)
                if ((size_t)(eq - kv) == strlen(s->key[k]) &&
                    strncmp(kv, s->key[k], (size_t)(eq - kv)) == 0 && strcmp(eq + 1, s->val[k]) == 0)
                    found = true;
            ok = found;
        }
        if (ok) {
            sum += s->value;
            any = true;
        }
    }
    return any ? sum : -1;
}

/* ---- HTTP ---- */

/* Sends REQ to the admin listener at ADDR and reads the reply to the end into OUT (CAP
 * bytes, NUL-terminated). Returns the status code, or -1. */
static int http_raw(const char *addr, const char *req, char *out, size_t cap)
{
    int fd = hs_connect(addr, IO_MS);
    if (fd < 0)
        return -1;
    int status = -1;
    if (hs_send_all(fd, req, strlen(req), IO_MS) == 0) {
        ssize_t n = hs_recv_exact(fd, out, cap - 1, IO_MS);
        if (n >= 0) {
            out[n] = '\0';
            if (sscanf(out, "HTTP/1.1 %d ", &status) != 1)
                status = -1;
        }
    }
    close(fd);
    return status;
}

static int http_get(const char *addr, const char *path, char *out, size_t cap)
{
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);
    return http_raw(addr, req, out, cap);
}

/* GET /metrics from ADDR into E; fails the test on anything but a well-formed 200. */
static void scrape(const char *addr, struct expo *e)
{
    char *buf = malloc(BODY_MAX);
    assert_non_null(buf);
    int st = http_get(addr, "/metrics", buf, BODY_MAX);
    if (st != 200) {
        free(buf);
        HS_FAIL("GET /metrics from %s: status %d", addr, st);
    }
    if (strstr(buf, "Content-Type: text/plain; version=0.0.4") == NULL) {
        free(buf);
        HS_FAIL("/metrics is not served as text/plain; version=0.0.4");
    }
    char *body = strstr(buf, "\r\n\r\n");
    int rc = body ? expo_parse(body + 4, e) : -1;
    free(buf);
    if (rc != 0)
        HS_FAIL("/metrics is not in the exposition format");
}

/* One expected value: NAME{LABELS} == VALUE. */
struct want {
    const char *name;
    const char *labels;
    double value;
};

/* Scrapes ADDR until every one of the N wants holds (bounded by WAIT_MS: counters move
 * when the server has handled the traffic, which the client sees first), then asserts them
 * all. */
static void expect(const char *addr, const struct want *w, int n, struct expo *e)
{
    long deadline = hs_now_ms() + WAIT_MS;
    for (;;) {
        scrape(addr, e);
        int bad = 0;
        for (int i = 0; i < n; i++)
            if (expo_get(e, w[i].name, w[i].labels) != w[i].value)
                bad++;
        if (bad == 0)
            return;
        if (hs_now_ms() >= deadline) {
            for (int i = 0; i < n; i++) {
                double got = expo_get(e, w[i].name, w[i].labels);
                if (got != w[i].value)
                    fprintf(stderr, "# %s{%s}: want %.0f, got %.0f\n", w[i].name,
                            w[i].labels ? w[i].labels : "", w[i].value, got);
            }
            HS_FAIL("%d metric(s) differ from the traffic sent", bad);
        }
        hs_sleep_ms(20);
    }
}

/* The admin address from the last "admin listening on ADDR" line of SRV into OUT. */
static void admin_addr(struct hs_proc *srv, char *out, size_t cap)
{
    if (hs_wait_output(srv, "admin listening on ", HS_READY_MS) != 0)
        HS_FAIL("no 'admin listening on' line");
    char *text = hs_output(srv);
    assert_non_null(text);
    const char *last = NULL;
    for (const char *p = text; (p = strstr(p, "admin listening on ")) != NULL; p++)
        last = p;
    last += strlen("admin listening on ");
    size_t n = strcspn(last, " \n\"");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), last);
    free(text);
}

/* Sends a BODY-byte message and checks its echo. */
static void ping_size(int fd, size_t body, unsigned seed)
{
    char msg[512], in[512];
    assert_true(body + SEPLEN <= sizeof msg);
    hs_fill_pattern(msg, body, seed);
    memcpy(msg + body, SEP, SEPLEN);
    size_t got = 0;
    assert_int_equal(hs_exchange(fd, msg, body + SEPLEN, in, body + SEPLEN, IO_MS, &got), 0);
    assert_true(hs_same_bytes("echo", msg, in, body + SEPLEN));
}

/* The configuration of test_exact_counters: listener main (echo, max_connections 4,
 * max_message 64), listener strict (its framing refuses lines starting with '!'), admin. */
static void write_counting_conf(struct hs_ctx *c, const char *broken)
{
    hs_ctx_write_conf(c, "metrics.ini",
               "[server]\nthreads = 2\nplugin_dir = %s\nlog_level = info\n%s\n"
               "[listener main]\nbind = 127.0.0.1:0\nmax_connections = 4\nmax_message = 64\n\n"
               "[listener strict]\nbind = 127.0.0.1:0\nplugin = %s/strict.so\n\n"
               "[admin]\nbind = 127.0.0.1:0\n",
               hs_env_path("ES_PLUGIN_DIR"), broken, hs_env_path("ES_TEST_PLUGIN_DIR"));
}

/* 1. Known traffic gives exact counters: 4 connections of 3 messages each, one refused by
 * max_connections, one closed for max_message, a protocol error, a reload that keeps them,
 * one refused reload; per listener, worker and plugin. Scrapes run during the traffic. */
static void test_exact_counters(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct expo *e = malloc(sizeof *e);
    assert_non_null(e);
    write_counting_conf(c, "");
    struct hs_proc *srv = hs_ctx_start_conf(c, 3, 0); /* two listeners and the admin */
    char main_addr[HS_ADDR_MAX], strict_addr[HS_ADDR_MAX], adm[HS_ADDR_MAX];
    hs_ctx_listener_addr(srv, "main", main_addr, sizeof main_addr);
    hs_ctx_listener_addr(srv, "strict", strict_addr, sizeof strict_addr);
    admin_addr(srv, adm, sizeof adm);

    struct want zero[] = {
        {"echosrv_connections_total", NULL, 0}, {"echosrv_messages_total", NULL, 0},
        {"echosrv_connections_open", NULL, 0}, {"echosrv_errors_total", NULL, 0},
        {"echosrv_build_info", NULL, 1},
    };
    expect(adm, zero, 5, e);

    /* 4 connections x 3 messages of 10, 20 and 30 bytes (+ separator): 72 bytes each way
     * per connection. */
    int fds[4];
    for (int i = 0; i < 4; i++)
        fds[i] = hs_ctx_connect(c, main_addr, IO_MS);
    for (int m = 0; m < 3; m++) {
        for (int i = 0; i < 4; i++)
            ping_size(fds[i], (size_t)(10 * (m + 1)), (unsigned)(i * 3 + m));
        scrape(adm, e); /* readers and writers at once, for ThreadSanitizer */
    }
    struct want open4[] = {
        {"echosrv_connections_open", "listener=main", 4},
        {"echosrv_worker_connections", NULL, 4},
        {"echosrv_messages_total", "listener=main", 12},
    };
    expect(adm, open4, 3, e);

    /* The fifth: refused by max_connections = 4. */
    int fifth = hs_ctx_connect(c, main_addr, IO_MS);
    if (hs_wait_closed(fifth, IO_MS) != 0)
        HS_FAIL("the 5th connection (max_connections = 4) was not closed");
    for (int i = 0; i < 4; i++)
        hs_ctx_untrack_close(c, fds[i]);
    hs_ctx_untrack_close(c, fifth);
    /* The server sees the closes after the client: wait for them, or the next connection
     * could still find the listener full. */
    struct want closed[] = {
        {"echosrv_connections_open", "listener=main", 0},
        {"echosrv_connections_refused_total", "listener=main,reason=max_connections", 1},
    };
    expect(adm, closed, 2, e);

    /* 64 bytes without a separator reach max_message = 64. */
    int big = hs_ctx_connect(c, main_addr, IO_MS);
    char pat[64];
    hs_fill_pattern(pat, sizeof pat, 7);
    assert_int_equal(hs_send_all(big, pat, sizeof pat, IO_MS), 0);
    if (hs_wait_closed(big, IO_MS) != 0)
        HS_FAIL("a 64-byte message without end (max_message = 64) was not closed");
    hs_ctx_untrack_close(c, big);

    /* A protocol error on strict, after one good line. */
    int sfd = hs_ctx_connect(c, strict_addr, IO_MS);
    char line[8];
    assert_int_equal(hs_send_all(sfd, "hi\n", 3, IO_MS), 0);
    assert_int_equal(hs_recv_exact(sfd, line, 3, IO_MS), 3);
    assert_int_equal(hs_send_all(sfd, "!x\n", 3, IO_MS), 0);
    if (hs_wait_closed(sfd, IO_MS) != 0)
        HS_FAIL("a protocol error did not close the connection");
    hs_ctx_untrack_close(c, sfd);

    struct want after[] = {
        {"echosrv_connections_open", NULL, 0},
        {"echosrv_connections_total", "listener=main", 5},
        {"echosrv_connections_total", "listener=strict", 1},
        {"echosrv_connections_refused_total", "listener=main,reason=max_connections", 1},
        {"echosrv_connections_refused_total", "reason=access", 0},
        {"echosrv_connections_refused_total", "listener=strict", 0},
        {"echosrv_messages_total", "listener=main", 12},
        {"echosrv_messages_total", "listener=strict", 1},
        {"echosrv_bytes_received_total", "listener=main", 4 * 72 + 64},
        {"echosrv_bytes_sent_total", "listener=main", 4 * 72},
        {"echosrv_bytes_received_total", "listener=strict", 6},
        {"echosrv_bytes_sent_total", "listener=strict", 3},
        {"echosrv_errors_total", "listener=main,kind=max_message", 1},
        {"echosrv_errors_total", "listener=strict,kind=protocol", 1},
        {"echosrv_errors_total", NULL, 2},
        {"echosrv_plugin_messages_total", "plugin=echo", 12},
        {"echosrv_plugin_messages_total", "plugin=strict", 1},
        {"echosrv_worker_messages_total", NULL, 13},
        {"echosrv_worker_connections", NULL, 0},
        {"echosrv_reloads_total", NULL, 0},
    };
    int nafter = (int)(sizeof after / sizeof after[0]);
    expect(adm, after, nafter, e);
    if (expo_get(e, "echosrv_worker_messages_total", "worker=0") < 0 ||
        expo_get(e, "echosrv_worker_messages_total", "worker=1") < 0 ||
        expo_get(e, "echosrv_worker_messages_total", "worker=2") >= 0)
        HS_FAIL("echosrv_worker_messages_total is not per worker 0 and 1 (threads = 2)");
    if (expo_get(e, "echosrv_uptime_seconds", NULL) < 0)
        HS_FAIL("no echosrv_uptime_seconds");

    /* A reload keeps every counter and the admin socket; traffic after it adds up. */
    hs_reload(srv, 1);
    char adm2[HS_ADDR_MAX];
    admin_addr(srv, adm2, sizeof adm2);
    if (strcmp(adm, adm2) != 0)
        HS_FAIL("an unchanged [admin] bind moved from %s to %s on reload", adm, adm2);
    after[nafter - 1] = (struct want){"echosrv_reloads_total", "result=ok", 1};
    expect(adm, after, nafter, e);
    int fd = hs_ctx_connect(c, main_addr, IO_MS);
    ping_size(fd, 20, 99);
    hs_ctx_untrack_close(c, fd);
    after[0].value = 0;
    after[1].value = 6;  /* connections_total{main} */
    after[6].value = 13; /* messages_total{main} */
    after[8].value += 24;
    after[9].value += 24;
    after[15].value = 13;
    after[17].value = 14;
    expect(adm, after, nafter, e);

    /* A refused reload is counted, and changes nothing else. */
    write_counting_conf(c, "no_such_key = 1\n");
    assert_int_equal(kill(hs_pid(srv), SIGHUP), 0);
    if (hs_wait_output(srv, "reload refused", 10000) != 0)
        HS_FAIL("a bad file was not refused");
    struct want failed[] = {
        {"echosrv_reloads_total", "result=failed", 1},
        {"echosrv_reloads_total", "result=ok", 1},
        {"echosrv_messages_total", NULL, 14},
    };
    expect(adm, failed, 3, e);
    free(e);
    assert_int_equal(hs_stop(srv, IO_MS), 0);
}

/* 2. /healthz, 404, 405, 400, 431, HEAD, HTTP/1.0; a client that sends half a request
 * holds up neither other admin requests nor the echo traffic, and is closed at timeout;
 * /healthz answers 503 once shutting down. */
static void test_http(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    char extra[256];
    snprintf(extra, sizeof extra, "shutdown_timeout = 20\n\n[admin]\nbind = 127.0.0.1:0\ntimeout = 2\n");
    struct hs_proc *srv = hs_ctx_start(c, "127.0.0.1:0", 2, 0, extra);
    char adm[HS_ADDR_MAX], echo_addr[HS_ADDR_MAX];
    admin_addr(srv, adm, sizeof adm);
    hs_ctx_listener_addr(srv, "default", echo_addr, sizeof echo_addr);
    char buf[8192];

    assert_int_equal(http_get(adm, "/healthz", buf, sizeof buf), 200);
    if (strstr(buf, "\r\n\r\nok\n") == NULL || strstr(buf, "Connection: close\r\n") == NULL)
        HS_FAIL("/healthz: '%s'", buf);
    assert_int_equal(http_get(adm, "/nothing", buf, sizeof buf), 404);
    assert_int_equal(http_raw(adm, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", buf,
                              sizeof buf), 405);
    if (strstr(buf, "Allow: GET, HEAD\r\n") == NULL)
        HS_FAIL("405 without Allow: '%s'", buf);
    assert_int_equal(http_raw(adm, "garbage\r\n\r\n", buf, sizeof buf), 400);
    assert_int_equal(http_raw(adm, "GET /metrics HTTP/9.9\r\n\r\n", buf, sizeof buf), 400);
    assert_int_equal(http_raw(adm, "GET metrics HTTP/1.1\r\n\r\n", buf, sizeof buf), 400);
    assert_int_equal(http_raw(adm, "GET /healthz HTTP/1.0\n\n", buf, sizeof buf), 200);
    assert_int_equal(http_raw(adm, "HEAD /healthz HTTP/1.1\r\n\r\n", buf, sizeof buf), 200);
    if (strstr(buf, "Content-Length: 3\r\n") == NULL || strstr(buf, "\r\n\r\n")[4] != '\0')
        HS_FAIL("HEAD: a body or no length: '%s'", buf);
    /* A head larger than the 4096-byte bound. */
    char *huge = malloc(6000);
    assert_non_null(huge);
    memset(huge, 'a', 6000);
    memcpy(huge, "GET /metrics HTTP/1.1\r\nX: ", 26);
    memcpy(huge + 5996, "\r\n\r\n", 4);
    huge[5999] = '\0';
    huge[5998] = '\n';
    assert_int_equal(http_raw(adm, huge, buf, sizeof buf), 431);
    free(huge);

    /* Half a request: it must not block anyone. */
    int slow = hs_ctx_connect(c, adm, IO_MS);
    assert_int_equal(hs_send_all(slow, "GET /metr", 9, IO_MS), 0);
    long t0 = hs_now_ms();
    struct expo *e = malloc(sizeof *e);
    assert_non_null(e);
    scrape(adm, e);
    int fd = hs_ctx_connect(c, echo_addr, IO_MS);
    assert_int_equal(hs_ping(fd, "while a slow admin client waits" SEP, IO_MS), 0);
    assert_int_equal(http_get(adm, "/healthz", buf, sizeof buf), 200);
    if (hs_now_ms() - t0 > 1500)
        HS_FAIL("requests beside a half-sent one took %ld ms", hs_now_ms() - t0);
    /* timeout = 2: a 408, then the close. */
    ssize_t n = hs_recv_exact(slow, buf, sizeof buf - 1, 6000);
    if (n <= 0)
        HS_FAIL("the half-sent request was not answered and closed within its timeout");
    buf[n] = '\0';
    if (strncmp(buf, "HTTP/1.1 408 ", 13) != 0)
        HS_FAIL("the half-sent request got '%.40s', not 408", buf);
    hs_ctx_untrack_close(c, slow);

    /* Shutting down: a connection with half a message keeps the server draining, while
     * /healthz says 503. */
    assert_int_equal(hs_send_all(fd, "half", 4, IO_MS), 0);
    assert_int_equal(kill(hs_pid(srv), SIGTERM), 0);
    assert_int_equal(hs_wait_output(srv, "shutting down", IO_MS), 0);
    assert_int_equal(http_get(adm, "/healthz", buf, sizeof buf), 503);
    scrape(adm, e); /* /metrics still served while draining */
    free(e);
    hs_ctx_untrack_close(c, fd);
    int st = hs_wait_exit(srv, IO_MS);
    if (st != 0)
        HS_FAIL("echosrv did not exit 0 after its last connection (status %d)", st);
}

/* 3. echocli info prints the figures for humans and as JSON; an unreachable admin
 * listener is exit status 1. */
static void test_echocli_info(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *cli = hs_env_path("ECHOCLI");
    assert_non_null(cli);
    struct hs_proc *srv = hs_ctx_start(c, "127.0.0.1:0", 2, 0,
                                       "\n[admin]\nbind = 127.0.0.1:0\n");
    char adm[HS_ADDR_MAX], echo_addr[HS_ADDR_MAX];
    admin_addr(srv, adm, sizeof adm);
    hs_ctx_listener_addr(srv, "default", echo_addr, sizeof echo_addr);
    int fd = hs_ctx_connect(c, echo_addr, IO_MS);
    assert_int_equal(hs_ping(fd, "one" SEP, IO_MS), 0);
    assert_int_equal(hs_ping(fd, "two!" SEP, IO_MS), 0);
    struct expo *e = malloc(sizeof *e);
    assert_non_null(e);
    struct want w[] = {{"echosrv_messages_total", NULL, 2}, {"echosrv_connections_open", NULL, 1}};
    expect(adm, w, 2, e);
    free(e);

    struct hs_cmd r;
    const char *argv[] = {cli, "info", "-a", adm, NULL};
    hs_cmd_run(&r, cli, argv, NULL, 0, IO_MS);
    if (r.status != 0 || strstr(r.out, "messages:     2\n") == NULL ||
        strstr(r.out, "bytes:        15 received, 15 sent\n") == NULL ||
        strstr(r.out, "connections:  1 open, 1 total, 0 refused\n") == NULL ||
        strstr(r.out, "\ndefault ") == NULL || strstr(r.out, "\necho ") == NULL ||
        strstr(r.out, "uptime:") == NULL) {
        hs_dump_lines("stdout", r.out, r.out_len);
        hs_dump_lines("stderr", r.err, r.err_len);
        HS_FAIL("echocli info: status %d or unexpected output", r.status);
    }
    hs_cmd_free(&r);
    const char *jargv[] = {cli, "info", "--json", "-a", adm, NULL};
    hs_cmd_run(&r, cli, jargv, NULL, 0, IO_MS);
    if (r.status != 0 || strstr(r.out, "\"messages\":2,") == NULL ||
        strstr(r.out, "\"bytes\":{\"received\":15,\"sent\":15}") == NULL ||
        strstr(r.out, "{\"name\":\"default\",\"open\":1,\"total\":1,") == NULL) {
        hs_dump_lines("stdout", r.out, r.out_len);
        HS_FAIL("echocli info --json: status %d or unexpected output", r.status);
    }
    hs_cmd_free(&r);
    /* The echo listener speaks no HTTP: not an admin listener. */
    const char *bad[] = {cli, "info", "-t", "1", "-a", echo_addr, NULL};
    hs_cmd_run(&r, cli, bad, NULL, 0, IO_MS);
    if (r.status == 0 || !WIFEXITED(r.status) || WEXITSTATUS(r.status) != 1)
        HS_FAIL("echocli info against a non-admin address: status %d", r.status);
    hs_cmd_free(&r);
    assert_int_equal(hs_stop(srv, IO_MS), 0);
    const char *gone[] = {cli, "info", "-a", adm, NULL};
    hs_cmd_run(&r, cli, gone, NULL, 0, IO_MS);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 1 || r.err_len == 0)
        HS_FAIL("echocli info against a stopped server: status %d", r.status);
    hs_cmd_free(&r);
}

/* 4. [admin] on reload: a changed bind rebinds (here to a unix socket), deny refuses,
 * removing the section stops it; bad sections are refused at their line. */
static void test_admin_config(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    hs_ctx_write_conf(c, "metrics.ini",
                      "[server]\nbind = 127.0.0.1:0\nplugin_dir = %s\n\n[admin]\nbind = 127.0.0.1:0\n",
               pd);
    struct hs_proc *srv = hs_ctx_start_conf(c, 2, 0);
    char adm[HS_ADDR_MAX], adm2[HS_ADDR_MAX], buf[4096];
    admin_addr(srv, adm, sizeof adm);
    assert_int_equal(http_get(adm, "/healthz", buf, sizeof buf), 200);

    /* To a unix socket, relative to the INI file. */
    hs_ctx_write_conf(c, "metrics.ini",
                      "[server]\nbind = 127.0.0.1:0\nplugin_dir = %s\n\n[admin]\nbind = unix:admin.sock\n",
               pd);
    hs_reload(srv, 1);
    admin_addr(srv, adm2, sizeof adm2);
    char want[300];
    snprintf(want, sizeof want, "unix:%s/admin.sock", c->dir);
    if (strcmp(adm2, want) != 0)
        HS_FAIL("admin rebound to '%s', not '%s'", adm2, want);
    assert_int_equal(http_get(adm2, "/healthz", buf, sizeof buf), 200);
    int old = hs_connect(adm, 1000);
    if (old >= 0) {
        close(old);
        HS_FAIL("the old admin address %s still accepts connections", adm);
    }

    /* deny: TCP peers refused without a reply. */
    hs_ctx_write_conf(c, "metrics.ini",
                      "[server]\nbind = 127.0.0.1:0\nplugin_dir = %s\n\n[admin]\nbind = 127.0.0.1:0\n"
                  "deny = 127.0.0.0/8\n", pd);
    hs_reload(srv, 2);
    admin_addr(srv, adm, sizeof adm);
    int fd = hs_ctx_connect(c, adm, IO_MS);
    hs_send_all(fd, "GET /healthz HTTP/1.1\r\n\r\n", 25, IO_MS);
    if (hs_wait_closed(fd, IO_MS) != 0)
        HS_FAIL("a denied peer was answered instead of closed");
    hs_ctx_untrack_close(c, fd);

    /* No [admin]: the listener goes. */
    hs_ctx_write_conf(c, "metrics.ini", "[server]\nbind = 127.0.0.1:0\nplugin_dir = %s\n", pd);
    hs_reload(srv, 3);
    old = hs_connect(adm, 1000);
    if (old >= 0) {
        close(old);
        HS_FAIL("the admin listener %s outlived its section", adm);
    }
    struct stat st;
    if (stat(want + 5, &st) == 0)
        HS_FAIL("the unix admin socket %s was left behind", want + 5);
    assert_int_equal(hs_stop(srv, IO_MS), 0);

    /* Errors at their line, by echosrv -t. */
    static const struct {
        const char *text;
        int line;
        const char *what;
    } bad[] = {
        {"[admin]\nallow = 127.0.0.1\n", 5, "[admin] has no bind"},
        {"[admin]\nbind = 127.0.0.1:0\ncolour = red\n", 7, "unknown key 'colour' in [admin]"},
        {"[admin]\nbind = 127.0.0.1:0\ntimeout = 0\n", 7, "timeout"},
        {"[admin]\nbind = 127.0.0.1:0\ndeny = 10.0.0.0/33\n", 7, "deny"},
        {"[admin]\nbind = nowhere:port\n", 6, "bind"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hs_ctx_write_conf(c, "metrics.ini",
                          "[server]\nbind = 127.0.0.1:0\nplugin_dir = %s\n\n%s", pd, bad[i].text);
        const char *args[] = {"-t", "-c", c->conf, NULL};
        char *out = NULL;
        int status = hs_run(args, IO_MS, &out);
        char at[600];
        snprintf(at, sizeof at, "%s:%d: ", c->conf, bad[i].line);
        if (status == 0 || out == NULL || strstr(out, at) == NULL ||
            strstr(out, bad[i].what) == NULL) {
            fprintf(stderr, "# output: %s\n", out ? out : "(none)");
            free(out);
            HS_FAIL("bad [admin] #%zu: not refused at '%s' with '%s'", i, at, bad[i].what);
        }
        free(out);
    }
}

/* 5. The workers share the connections. With io_uring a multishot accept keeps its place at the
 * head of the listening socket's queue, so without taking turns the worker that armed first
 * would get them all: 64 clients, connected one after another and each served before the
 * next, must land on both workers of threads = 2. epoll wakes whichever worker waits first
 * (an idle one may take them all, which is fine): there, only the total is checked. */
static void test_workers_share(void **state)
{
    enum { N = 64 };
    struct hs_ctx *c = begin(state, __func__);
    struct expo *e = malloc(sizeof *e);
    assert_non_null(e);
    hs_ctx_write_conf(c, "metrics.ini",
                      "[server]\nbind = 127.0.0.1:0\nthreads = 2\nplugin_dir = %s\n\n"
                      "[admin]\nbind = 127.0.0.1:0\n", hs_env_path("ES_PLUGIN_DIR"));
    struct hs_proc *srv = hs_ctx_start_conf(c, 2, 0);
    char adm[HS_ADDR_MAX];
    admin_addr(srv, adm, sizeof adm);
    const char *at = hs_addr(srv, 0);
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = hs_ctx_connect(c, at, IO_MS);
        ping_size(fds[i], 16, (unsigned)i);
    }
    struct want all[] = {{"echosrv_worker_connections", NULL, N}};
    expect(adm, all, 1, e);
    double w0 = expo_get(e, "echosrv_worker_connections", "worker=0");
    double w1 = expo_get(e, "echosrv_worker_connections", "worker=1");
    bool uring = hs_output_has(srv, "io: io_uring");
    fprintf(stderr, "# %s: worker 0 has %.0f connections, worker 1 %.0f\n",
            uring ? "io_uring" : "epoll", w0, w1);
    if (uring && (w0 < N / 4 || w1 < N / 4))
        HS_FAIL("io_uring: %d connections were shared %.0f / %.0f between the two workers",
                N, w0, w1);
    for (int i = 0; i < N; i++)
        hs_ctx_untrack_close(c, fds[i]);
    free(e);
    assert_int_equal(hs_stop(srv, IO_MS), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        HS_CTX_TEST(test_exact_counters),
        HS_CTX_TEST(test_http),
        HS_CTX_TEST(test_echocli_info),
        HS_CTX_TEST(test_admin_config),
        HS_CTX_TEST(test_workers_share),
    };

    if (hs_process_init() < 0)
        fprintf(stderr, "# could not raise RLIMIT_NOFILE or ignore SIGPIPE\n");
    return cmocka_run_group_tests_name("echosrv_metrics", tests, NULL, NULL);
}
