/* test_haproxy.c - integration test: Debian's haproxy with conf/haproxy.cfg in front of three echosrv backends (PROXY v2). */
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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define SEP "\r\n\r\n"
#define IO_MS 5000
#define TEST_BUDGET_S 90
#define NBACKENDS 3
#define BENCH_CONNS 12          /* 4 per backend with leastconn */
#define BENCH_PIPELINE 4
#define BENCH_SECONDS "4"       /* the first run, during which a backend is killed */
#define KILL_AFTER_CPU 0.1      /* CPU seconds the victim spends on the bench before it is
                                 * killed: thousands of replies (haproxy counts a connection's
                                 * bytes only when it ends, the kernel not at all for send()) */
#define UP_MS 30000             /* bound for the health checks to pass */

/* Children this file starts itself (haproxy, echocli bench), stopped by PID at teardown
 * whatever happened; the echosrv backends are the harness's. */
static pid_t g_children[4];

static void child_track(pid_t pid)
{
    for (size_t i = 0; i < sizeof g_children / sizeof g_children[0]; i++) {
        if (g_children[i] == 0) {
            g_children[i] = pid;
            return;
        }
    }
    fail_msg("too many children");
}

/* SIGTERM, then SIGKILL after timeout_ms; returns the wait status (-1 if unknown). */
static int child_stop(pid_t pid, int timeout_ms)
{
    int st = -1;
    if (pid <= 0)
        return -1;
    kill(pid, SIGTERM);
    long end = hs_now_ms() + timeout_ms;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (hs_now_ms() >= end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        hs_sleep_ms(10);
    }
    for (size_t i = 0; i < sizeof g_children / sizeof g_children[0]; i++)
        if (g_children[i] == pid)
            g_children[i] = 0;
    return st;
}

/* Waits up to timeout_ms for pid to exit; returns its wait status, or -1 if still running. */
static int child_wait(pid_t pid, int timeout_ms)
{
    int st;
    long end = hs_now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            for (size_t i = 0; i < sizeof g_children / sizeof g_children[0]; i++)
                if (g_children[i] == pid)
                    g_children[i] = 0;
            return st;
        }
        if (hs_now_ms() >= end)
            return -1;
        hs_sleep_ms(20);
    }
}

static int teardown(void **state)
{
    for (size_t i = 0; i < sizeof g_children / sizeof g_children[0]; i++)
        child_stop(g_children[i], 2000);
    return hs_ctx_teardown(state);
}

/* The haproxy executable (PATH, then the sbin directories it lives in), into out. */
static int find_haproxy(char *out, size_t cap)
{
    const char *path = getenv("PATH");
    char dirs[4096];
    snprintf(dirs, sizeof dirs, "%s:/usr/sbin:/sbin:/usr/local/sbin", path ? path : "");
    for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(out, cap, "%s/haproxy", d);
        if (access(out, X_OK) == 0)
            return 0;
    }
    return -1;
}

/* Starts argv[0] (a path) with env additions ENV (NULL-terminated "NAME=VALUE"), stdout and
 * stderr to the files OUT and ERR, listen_fd (if >= 0) as descriptor 3, and SIGKILL should
 * this process die. Returns the pid. */
static pid_t spawn(const char *const argv[], const char *const env[], const char *out,
                   const char *err, int listen_fd)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int n = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (o < 0 || e < 0 || n < 0 || dup2(n, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
            _exit(126);
        if (listen_fd >= 0) {
            if (listen_fd == 3) {
                fcntl(3, F_SETFD, 0);
            } else if (dup2(listen_fd, 3) < 0) {
                _exit(126);
            }
        }
        for (size_t i = 0; env != NULL && env[i] != NULL; i++)
            putenv((char *)env[i]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    child_track(pid);
    return pid;
}

/* The whole of file PATH (NUL-terminated), or an empty string. Caller frees. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "re");
    char *text = NULL;
    size_t len = 0;
    if (f != NULL) {
        FILE *m = open_memstream(&text, &len);
        assert_non_null(m);
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0)
            fwrite(buf, 1, n, m);
        fclose(m);
        fclose(f);
    }
    return text != NULL ? text : strdup("");
}

/* One backend's line of haproxy's "show stat". */
struct srv_stat {
    char status[32];        /* UP, DOWN, "UP 1/2", MAINT, ... */
    char check[32];         /* check_status: L7OK, L4CON, ... */
    long scur, stot;
    long long bout;         /* counted when a connection ends */
};

/* Runs "show stat" on the stats socket SOCK and fills st[i] for server echo<i+1> of backend
 * echosrv. Returns 0, or -1 when the socket does not answer (yet) or a server is missing. */
static int show_stat(const char *sock, struct srv_stat st[NBACKENDS])
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", sock);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0 ||
        send(fd, "show stat\n", 10, MSG_NOSIGNAL) != 10) {
        close(fd);
        return -1;
    }
    static char csv[256 * 1024];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof csv - 1 && (n = recv(fd, csv + len, sizeof csv - 1 - len, 0)) > 0)
        len += (size_t)n;
    close(fd);
    csv[len] = '\0';
    /* The header names the columns: "# pxname,svname,...". */
    enum { PX, SV, SCUR, STOT, BOUT, STATUS, CHECK, NCOL };
    static const char *const names[NCOL] = {"pxname", "svname", "scur", "stot",
                                             "bout", "status", "check_status"};
    int col[NCOL];
    for (int k = 0; k < NCOL; k++)
        col[k] = -1;
    char *save = NULL;
    char *line = strtok_r(csv, "\n", &save);
    if (line == NULL || strncmp(line, "# ", 2) != 0)
        return -1;
    {
        int i = 0;
        char *p = line + 2;
        for (;;) {
            char *comma = strchr(p, ',');
            size_t l = comma ? (size_t)(comma - p) : strlen(p);
            for (int k = 0; k < NCOL; k++)
                if (strlen(names[k]) == l && strncmp(p, names[k], l) == 0)
                    col[k] = i;
            if (comma == NULL)
                break;
            p = comma + 1;
            i++;
        }
    }
    for (int k = 0; k < NCOL; k++)
        if (col[k] < 0)
            return -1;
    int found = 0;
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        char *f[128];
        int nf = 0;
        for (char *p = line; nf < 128;) {
            f[nf++] = p;
            char *comma = strchr(p, ',');
            if (comma == NULL)
                break;
            *comma = '\0';
            p = comma + 1;
        }
        if (col[CHECK] >= nf || strcmp(f[col[PX]], "echosrv") != 0 ||
            strncmp(f[col[SV]], "echo", 4) != 0)
            continue;
        int i = atoi(f[col[SV]] + 4) - 1;
        if (i < 0 || i >= NBACKENDS)
            continue;
        snprintf(st[i].status, sizeof st[i].status, "%s", f[col[STATUS]]);
        snprintf(st[i].check, sizeof st[i].check, "%s", f[col[CHECK]]);
        st[i].scur = atol(f[col[SCUR]]);
        st[i].stot = atol(f[col[STOT]]);
        st[i].bout = atoll(f[col[BOUT]]);
        found |= 1 << i;
    }
    return found == (1 << NBACKENDS) - 1 ? 0 : -1;
}

/* A number field "NAME":N of a one-line JSON object, or -1. */
static long long json_num(const char *json, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", name);
    const char *p = strstr(json, key);
    return p ? atoll(p + strlen(key)) : -1;
}

/* Runs echocli bench through ADDR: -c BENCH_CONNS -P BENCH_PIPELINE, 64-byte messages, for
 * -n REQUESTS or -d SECONDS (NULL: none); JSON to c->dir/NAME.json, messages to NAME.err.
 * Returns its pid. */
static pid_t bench_start(struct hs_ctx *c, const char *addr, const char *requests,
                         const char *seconds, const char *name, char *json, char *err,
                         size_t cap)
{
    const char *cli = hs_env_path("ECHOCLI");
    assert_non_null(cli);
    snprintf(json, cap, "%s/%s.json", c->dir, name);
    snprintf(err, cap, "%s/%s.err", c->dir, name);
    char conns[16], pipe_[16];
    snprintf(conns, sizeof conns, "%d", BENCH_CONNS);
    snprintf(pipe_, sizeof pipe_, "%d", BENCH_PIPELINE);
    const char *argv[20] = {cli, "bench", "-a", addr, "-c", conns, "-P", pipe_, "-s", "64",
                            "-t", "10", "--json", "-n", requests};
    int n = 15;
    if (seconds != NULL) {
        argv[n++] = "-d";
        argv[n++] = seconds;
    }
    argv[n] = NULL;
    return spawn(argv, NULL, json, err, -1);
}

/* The requests lost in flight that echocli bench reported, summed from its lines
 * "... with N request(s) in flight"; *lines gets how many such lines there were (a
 * connection that failed on a send is reported without its count: at most the pipeline). */
static long inflight_lost(const char *err_text, int *lines)
{
    long sum = 0;
    *lines = 0;
    for (const char *p = err_text; (p = strstr(p, " request(s) in flight")) != NULL; p++) {
        const char *q = p;
        while (q > err_text && q[-1] >= '0' && q[-1] <= '9')
            q--;
        sum += atol(q);
        (*lines)++;
    }
    return sum;
}

/* 1. Three echosrv backends with proxy_protocol behind haproxy (conf/haproxy.cfg as is,
 * its addresses from the environment): health checks speak the echo protocol and mark
 * them up; a client's address reaches the backend; echocli bench runs through haproxy while
 * one backend is killed: only the requests in flight on that backend's connections fail,
 * and a second run on new connections has no error at all. */
static void test_haproxy_failover(void **state)
{
    struct hs_ctx *c = hs_ctx_begin(state, TEST_BUDGET_S, __func__);
    char haproxy[512];
    if (find_haproxy(haproxy, sizeof haproxy) != 0)
        HS_FAIL("haproxy is not installed: install the Debian package 'haproxy' "
                "(./quickstart installs it with the other test dependencies)");
    const char *src = hs_env_path("ABS_TOP_SRCDIR");
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    assert_non_null(src);
    assert_non_null(pd);

    /* The backends: as conf/backend.ini, on kernel-chosen ports, logging each connection. */
    struct hs_proc *be[NBACKENDS];
    char be_addr[NBACKENDS][HS_ADDR_MAX];
    for (int i = 0; i < NBACKENDS; i++) {
        char conf[512], name[32];
        snprintf(name, sizeof name, "backend%d.ini", i + 1);
        assert_int_equal(hs_write_file(conf, sizeof conf, c->dir, name,
                                       "[server]\nthreads = 1\nplugin_dir = %s\n"
                                       "log_level = debug\nproxy_timeout = 5\n"
                                       "[listener lb]\nbind = 127.0.0.1:0\n"
                                       "proxy_protocol = on\nproxy_allow = 127.0.0.1, ::1\n",
                                       pd), 0);
        be[i] = hs_server_start(conf, 1, 0, HS_READY_MS);
        if (be[i] == NULL)
            HS_FAIL("backend %d did not start", i + 1);
        snprintf(be_addr[i], sizeof be_addr[i], "%s", hs_addr(be[i], 0));
    }

    /* The frontend: a socket bound here on a kernel-chosen port and handed to haproxy as
     * descriptor 3 (bind fd@3), so no other process can take the port in between. */
    int lfd = hs_ctx_track(c, socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    assert_true(lfd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof sin;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(lfd, 1024), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &slen), 0);
    char front[64];
    snprintf(front, sizeof front, "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));

    char cfg[600], stats[300], hlog[300], hout[300];
    snprintf(cfg, sizeof cfg, "%s/conf/haproxy.cfg", src);
    snprintf(stats, sizeof stats, "%s/haproxy.sock", c->dir);
    snprintf(hlog, sizeof hlog, "%s/haproxy.log", c->dir);
    snprintf(hout, sizeof hout, "%s/haproxy.out", c->dir);
    static char env[5][400];
    snprintf(env[0], sizeof env[0], "ECHO_FRONTEND=fd@3");
    snprintf(env[1], sizeof env[1], "ECHO_BACKEND1=%s", be_addr[0]);
    snprintf(env[2], sizeof env[2], "ECHO_BACKEND2=%s", be_addr[1]);
    snprintf(env[3], sizeof env[3], "ECHO_BACKEND3=%s", be_addr[2]);
    snprintf(env[4], sizeof env[4], "ECHO_STATS=%s", stats);
    const char *const envp[] = {env[0], env[1], env[2], env[3], env[4], NULL};
    const char *const hargv[] = {haproxy, "-f", cfg, "-db", NULL};
    pid_t hp = spawn(hargv, envp, hout, hlog, lfd);
    hs_ctx_untrack_close(c, lfd); /* haproxy has it now */

    /* Ready when every backend passed a health check (PROXY v2 LOCAL, PING, its echo). */
    struct srv_stat st[NBACKENDS];
    long deadline = hs_now_ms() + UP_MS;
    for (;;) {
        memset(st, 0, sizeof st);
        int up = show_stat(stats, st) == 0;
        for (int i = 0; up && i < NBACKENDS; i++)
            up = strcmp(st[i].status, "UP") == 0 && strcmp(st[i].check, "L7OK") == 0;
        if (up)
            break;
        int hst;
        if (waitpid(hp, &hst, WNOHANG) == hp || hs_now_ms() >= deadline) {
            char *t = slurp(hlog);
            hs_dump_lines("haproxy's output", t, strlen(t));
            free(t);
            HS_FAIL("haproxy %s: backends not all UP with L7OK (echo1 %s %s, echo2 %s %s, "
                    "echo3 %s %s)", hs_now_ms() >= deadline ? "within the bound" : "exited",
                    st[0].status, st[0].check, st[1].status, st[1].check, st[2].status,
                    st[2].check);
        }
        hs_sleep_ms(50);
    }
    if (!hs_output_has(be[0], "LOCAL: serving the proxy's own connection"))
        HS_FAIL("backend 1 logged no health check with a LOCAL header");

    /* A client's own address and port reach the backend that serves it. */
    int fd = hs_ctx_connect(c, front, IO_MS);
    struct sockaddr_in me;
    socklen_t mlen = sizeof me;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &mlen), 0);
    char want[128];
    snprintf(want, sizeof want, "connection from 127.0.0.1:%u on ", (unsigned)ntohs(me.sin_port));
    assert_int_equal(hs_ping(fd, "who am I" SEP, IO_MS), 0);
    int seen = -1;
    for (long end = hs_now_ms() + IO_MS; seen < 0 && hs_now_ms() < end;) {
        for (int i = 0; i < NBACKENDS && seen < 0; i++)
            if (hs_output_has(be[i], want))
                seen = i;
        if (seen < 0)
            hs_sleep_ms(20);
    }
    if (seen < 0)
        HS_FAIL("no backend logged '%s'", want);
    fprintf(stderr, "# the client 127.0.0.1:%u was served by backend %d, which logged it\n",
            (unsigned)ntohs(me.sin_port), seen + 1);
    hs_ctx_untrack_close(c, fd);

    /* The bench, with a backend killed once it has served a good share. */
    char json[400], err[400];
    int victim = 1; /* echo2 */
    double base = hs_proc_cpu_seconds(hs_pid(be[victim]));
    assert_true(base >= 0);
    pid_t bp = bench_start(c, front, "100000000", BENCH_SECONDS, "bench1", json, err,
                           sizeof json);
    long victim_conns = -1;
    double victim_cpu = 0;
    for (deadline = hs_now_ms() + 30000;;) {
        double cpu = hs_proc_cpu_seconds(hs_pid(be[victim])) - base;
        if (show_stat(stats, st) == 0 && cpu >= KILL_AFTER_CPU && st[victim].scur > 0) {
            victim_conns = st[victim].scur;
            victim_cpu = cpu;
            break;
        }
        int bst;
        if (waitpid(bp, &bst, WNOHANG) == bp || hs_now_ms() >= deadline) {
            char *t = slurp(err);
            hs_dump_lines("echocli bench's stderr", t, strlen(t));
            free(t);
            HS_FAIL("the victim backend did not spend %.2f s of CPU on the bench (%s: %ld "
                    "connections, %.2f s)", KILL_AFTER_CPU, st[victim].status, st[victim].scur,
                    cpu);
        }
        hs_sleep_ms(20);
    }
    assert_int_equal(kill(hs_pid(be[victim]), SIGKILL), 0);
    int vst = hs_wait_exit(be[victim], IO_MS);
    assert_true(vst != -1 && WIFSIGNALED(vst));
    int bst = child_wait(bp, 60000);
    if (bst == -1)
        HS_FAIL("echocli bench did not finish");
    char *out1 = slurp(json), *err1 = slurp(err);
    long long req = json_num(out1, "requests"), errors = json_num(out1, "errors");
    long long e_closed = json_num(out1, "errors_closed");
    long long e_connect = json_num(out1, "errors_connect");
    long long e_mismatch = json_num(out1, "errors_mismatch");
    long long e_timeout = json_num(out1, "errors_timeout");
    int lost_lines;
    long lost = inflight_lost(err1, &lost_lines);
    fprintf(stderr,
            "# bench 1 (%d connections, pipeline %d, %s s): %lld requests, %lld errors "
            "(closed %lld, connect %lld, mismatch %lld, timeout %lld); backend 2 killed with "
            "%ld connections after %.2f s of CPU on the bench; %ld requests were in flight on them\n",
            BENCH_CONNS, BENCH_PIPELINE, BENCH_SECONDS, req, errors, e_closed, e_connect,
            e_mismatch, e_timeout, victim_conns, victim_cpu, lost);
    int ok = req > 0 && WIFEXITED(bst) && e_connect == 0 && e_mismatch == 0 &&
             e_timeout == 0 && e_closed >= 1 && e_closed <= victim_conns &&
             errors == e_closed && lost_lines <= e_closed &&
             lost + (e_closed - lost_lines) * BENCH_PIPELINE <= victim_conns * BENCH_PIPELINE;
    if (!ok) {
        hs_dump_lines("bench 1 JSON", out1, strlen(out1));
        hs_dump_lines("bench 1 stderr", err1, strlen(err1));
    }
    free(out1);
    free(err1);
    if (!ok)
        HS_FAIL("bench 1: errors beyond the connections of the killed backend");

    /* New connections: haproxy routes around the dead backend; not one error. */
    struct srv_stat before[NBACKENDS];
    assert_int_equal(show_stat(stats, before), 0);
    bp = bench_start(c, front, "20000", NULL, "bench2", json, err, sizeof json);
    bst = child_wait(bp, 60000);
    if (bst == -1)
        HS_FAIL("the second echocli bench did not finish");
    char *out2 = slurp(json), *err2 = slurp(err);
    long long req2 = json_num(out2, "requests"), errors2 = json_num(out2, "errors");
    fprintf(stderr, "# bench 2 (new connections after the kill): %lld requests, %lld errors\n",
            req2, errors2);
    ok = WIFEXITED(bst) && WEXITSTATUS(bst) == 0 && req2 == 20000 && errors2 == 0;
    if (!ok) {
        hs_dump_lines("bench 2 JSON", out2, strlen(out2));
        hs_dump_lines("bench 2 stderr", err2, strlen(err2));
    }
    free(out2);
    free(err2);
    if (!ok)
        HS_FAIL("bench 2 on new connections had errors");

    /* haproxy marks the backend down, and the two others served the second run. */
    for (deadline = hs_now_ms() + 15000;;) {
        if (show_stat(stats, st) == 0 && strncmp(st[victim].status, "DOWN", 4) == 0)
            break;
        if (hs_now_ms() >= deadline)
            HS_FAIL("backend 2 is still '%s' in haproxy's stats", st[victim].status);
        hs_sleep_ms(50);
    }
    for (int i = 0; i < NBACKENDS; i++) {
        if (i == victim)
            continue;
        if (st[i].stot <= before[i].stot || strcmp(st[i].status, "UP") != 0)
            HS_FAIL("backend %d: %s, %ld connections before the second run, %ld after", i + 1,
                    st[i].status, before[i].stot, st[i].stot);
    }
    fprintf(stderr, "# haproxy: echo1 %s (%ld connections), echo2 %s, echo3 %s (%ld)\n",
            st[0].status, st[0].stot, st[victim].status, st[2].status, st[2].stot);

    int hst = child_stop(hp, IO_MS);
    if (!(WIFEXITED(hst) || WIFSIGNALED(hst)))
        HS_FAIL("haproxy did not stop");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_haproxy_failover, hs_ctx_setup, teardown),
    };
    if (hs_process_init() < 0)
        fprintf(stderr, "# could not raise RLIMIT_NOFILE or ignore SIGPIPE\n");
    return cmocka_run_group_tests_name("echosrv_haproxy", tests, NULL, NULL);
}
