/* test_systemd.c - integration tests: readiness notifications ($NOTIFY_SOCKET) and socket activation ($LISTEN_FDS), as systemd drives them. */
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
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define SEP "\r\n\r\n"
#define IO_MS 5000
#define NOTIFY_MS 10000
#define TEST_BUDGET_S 60

static struct hs_ctx *begin(void **state, const char *name)
{
    return hs_ctx_begin(state, TEST_BUDGET_S, name);
}

/* Starts `echosrv --allow-root -c c->conf` with OPTS and waits for NLISTEN listeners. */
static struct hs_proc *start(struct hs_ctx *c, const struct hs_spawn_opts *opts, int nlisten)
{
    const char *args[] = { "--allow-root", "-c", c->conf, NULL };
    struct hs_proc *p = hs_spawn_with(args, 0, opts);
    if (p == NULL)
        HS_FAIL("cannot start echosrv");
    if (hs_wait_listening(p, nlisten, HS_READY_MS) < 0) {
        hs_dump_output(p, "not listening");
        HS_FAIL("echosrv did not log %d 'listening on' lines", nlisten);
    }
    return p;
}

/* ---- the notify socket: what a service manager receives ---------------------------------- */

/* A datagram socket bound to ADDR (LEN bytes), with SO_PASSCRED so that every message comes
 * with its sender's pid, as systemd's has. Tracked. */
static int notify_bind(struct hs_ctx *c, const struct sockaddr_un *addr, socklen_t len)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int one = 1;
    assert_true(fd >= 0);
    hs_ctx_track(c, fd);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one), 0);
    if (bind(fd, (const struct sockaddr *)addr, len) < 0)
        HS_FAIL("bind of the notify socket: %s", strerror(errno));
    return fd;
}

/* A notify socket in the test's directory; its path (the NOTIFY_SOCKET value) into PATH. */
static int notify_socket(struct hs_ctx *c, char *path, size_t cap)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int n = snprintf(path, cap, "%s/notify.sock", c->dir);
    assert_true(n > 0 && (size_t)n < cap && (size_t)n < sizeof sun.sun_path);
    memcpy(sun.sun_path, path, (size_t)n + 1);
    return notify_bind(c, &sun, sizeof sun);
}

/* Receives one message within NOTIFY_MS into BUF (NUL-terminated) and checks that PID sent
 * it. */
static void notify_recv(int fd, char *buf, size_t cap, pid_t pid)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(struct ucred))];
    } ctl;
    struct iovec iov = { .iov_base = buf, .iov_len = cap - 1 };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl,
                         .msg_controllen = sizeof ctl };
    int r;
    while ((r = poll(&pfd, 1, NOTIFY_MS)) < 0 && errno == EINTR)
        ;
    if (r <= 0)
        HS_FAIL("no notification within %d ms", NOTIFY_MS);
    ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);
    assert_true(n >= 0);
    buf[n] = '\0';
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    if (cm == NULL || cm->cmsg_type != SCM_CREDENTIALS)
        HS_FAIL("a notification without credentials: '%s'", buf);
    struct ucred uc;
    memcpy(&uc, CMSG_DATA(cm), sizeof uc);
    if (uc.pid != pid)
        HS_FAIL("a notification from pid %d, not echosrv's %d: '%s'", (int)uc.pid, (int)pid, buf);
}

/* The value of the line VAR=... of MSG (up to the newline) into OUT, or NULL when MSG has no
 * such line. */
static const char *value(const char *msg, const char *var, char *out, size_t cap)
{
    size_t vl = strlen(var);
    for (const char *p = msg; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p) {
        if (strncmp(p, var, vl) == 0 && p[vl] == '=') {
            size_t n = strcspn(p + vl + 1, "\n");
            snprintf(out, cap, "%.*s", (int)n, p + vl + 1);
            return out;
        }
    }
    return NULL;
}

/* Fails unless MSG sets VAR to WANT. */
static void expect_var(const char *msg, const char *var, const char *want)
{
    char v[512];
    if (value(msg, var, v, sizeof v) == NULL || strcmp(v, want) != 0)
        HS_FAIL("expected %s=%s in the notification '%s'", var, want, msg);
}

/* Fails unless MSG has a STATUS= line containing NEEDLE. */
static void expect_status(const char *msg, const char *needle)
{
    char v[1024];
    if (value(msg, "STATUS", v, sizeof v) == NULL || strstr(v, needle) == NULL)
        HS_FAIL("expected a STATUS= with '%s' in the notification '%s'", needle, msg);
}

static uint64_t monotonic_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void ping(struct hs_ctx *c, const char *addr)
{
    int fd = hs_ctx_connect(c, addr, IO_MS);
    assert_int_equal(hs_ping(fd, "ping" SEP, IO_MS), 0);
    hs_ctx_untrack_close(c, fd);
}

/* READY=1 (with MAINPID and STATUS) once listening; RELOADING=1 (with MONOTONIC_USEC) then
 * READY=1 around a reload, a refused one included; STOPPING=1 at SIGTERM. Every message from
 * echosrv's own pid. */
static void test_notify_sequence(void **state)
{
    struct hs_ctx *c = begin(state, "test_notify_sequence");
    char path[256], env[300], msg[4096], pidtext[32];
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    int nfd = notify_socket(c, path, sizeof path);
    snprintf(env, sizeof env, "NOTIFY_SOCKET=%s", path);
    const char *envv[] = { env, NULL };
    struct hs_spawn_opts o = { .env = envv };

    hs_ctx_write_conf(c, "systemd.ini",
                      "[server]\nthreads = 2\nplugin_dir = %s\nbind = 127.0.0.1:0\n", pd);
    struct hs_proc *srv = start(c, &o, 1);
    pid_t pid = hs_pid(srv);
    snprintf(pidtext, sizeof pidtext, "%d", (int)pid);

    notify_recv(nfd, msg, sizeof msg, pid);
    expect_var(msg, "READY", "1");
    expect_var(msg, "MAINPID", pidtext);
    expect_status(msg, "generation 0");
    ping(c, hs_addr(srv, 0));

    /* A good reload. */
    uint64_t before = monotonic_usec();
    assert_int_equal(kill(pid, SIGHUP), 0);
    notify_recv(nfd, msg, sizeof msg, pid);
    expect_var(msg, "RELOADING", "1");
    char usec[64];
    if (value(msg, "MONOTONIC_USEC", usec, sizeof usec) == NULL)
        HS_FAIL("RELOADING=1 without MONOTONIC_USEC=: '%s'", msg);
    uint64_t t = strtoull(usec, NULL, 10);
    if (t < before || t > monotonic_usec())
        HS_FAIL("MONOTONIC_USEC=%s is not CLOCK_MONOTONIC now (between %llu and %llu)", usec,
                (unsigned long long)before, (unsigned long long)monotonic_usec());
    notify_recv(nfd, msg, sizeof msg, pid);
    expect_var(msg, "READY", "1");
    expect_status(msg, "generation 1");
    assert_null(value(msg, "MAINPID", usec, sizeof usec));
    assert_int_equal(hs_wait_output(srv, "configuration reloaded (generation 1", IO_MS), 0);

    /* A refused one: still ready, and the status says why. */
    hs_ctx_write_conf(c, "systemd.ini",
                      "[server]\nthreads = 2\nplugin_dir = %s\nbind = 127.0.0.1:0\nno_such_key = 1\n",
               pd);
    assert_int_equal(kill(pid, SIGHUP), 0);
    notify_recv(nfd, msg, sizeof msg, pid);
    expect_var(msg, "RELOADING", "1");
    notify_recv(nfd, msg, sizeof msg, pid);
    expect_var(msg, "READY", "1");
    expect_status(msg, "reload refused");
    expect_status(msg, "no_such_key");
    expect_status(msg, "serving generation 1");
    ping(c, hs_addr(srv, 0));

    /* Stopping. */
    assert_int_equal(kill(pid, SIGTERM), 0);
    notify_recv(nfd, msg, sizeof msg, pid);
    expect_var(msg, "STOPPING", "1");
    int st = hs_wait_exit(srv, 15000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* Nothing after STOPPING=1. */
    struct pollfd pfd = { .fd = nfd, .events = POLLIN };
    assert_int_equal(poll(&pfd, 1, 0), 0);
}

/* An abstract socket ("@name") works too; a value that is neither absolute nor abstract is
 * reported and the server serves as usual. */
static void test_notify_abstract_and_bad(void **state)
{
    struct hs_ctx *c = begin(state, "test_notify_abstract_and_bad");
    char name[108], env[160], msg[4096];
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(name, sizeof name, "@echosrv-test-%d-%ld", (int)getpid(), hs_now_ms());
    memcpy(sun.sun_path, name, strlen(name));
    sun.sun_path[0] = '\0';
    int nfd = notify_bind(c, &sun, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name)));
    snprintf(env, sizeof env, "NOTIFY_SOCKET=%s", name);
    const char *envv[] = { env, NULL };
    struct hs_spawn_opts o = { .env = envv };

    hs_ctx_write_conf(c, "systemd.ini",
                      "[server]\nthreads = 1\nplugin_dir = %s\nbind = 127.0.0.1:0\n", pd);
    struct hs_proc *srv = start(c, &o, 1);
    notify_recv(nfd, msg, sizeof msg, hs_pid(srv));
    expect_var(msg, "READY", "1");
    assert_int_equal(kill(hs_pid(srv), SIGTERM), 0);
    notify_recv(nfd, msg, sizeof msg, hs_pid(srv));
    expect_var(msg, "STOPPING", "1");
    int st = hs_wait_exit(srv, 15000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    hs_proc_free(srv);

    const char *bad[] = { "NOTIFY_SOCKET=relative/notify.sock", NULL };
    o.env = bad;
    srv = start(c, &o, 1);
    assert_int_equal(hs_wait_output(srv, "the service manager gets no notifications", IO_MS), 0);
    ping(c, hs_addr(srv, 0));
    st = hs_stop(srv, 15000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- socket activation -------------------------------------------------------------------- */

/* A listening TCP socket on 127.0.0.1, port chosen by the kernel, as systemd makes for a
 * ListenStream=; its "127.0.0.1:PORT" into ADDR. Tracked. */
static int listen_socket(struct hs_ctx *c, char *addr, size_t cap)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    hs_ctx_track(c, fd);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(fd, 64), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    snprintf(addr, cap, "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    return fd;
}

/* A connection to ADDR that the kernel completes from the listen queue (no server needs to
 * run), with MSG already sent. Tracked. */
static int queued_client(struct hs_ctx *c, const char *addr, const char *msg)
{
    int fd = hs_ctx_connect(c, addr, IO_MS);
    assert_int_equal(hs_send_all(fd, msg, strlen(msg), IO_MS), 0);
    return fd;
}

/* Expects MSG back on FD. */
static void expect_echo(int fd, const char *msg)
{
    char buf[256];
    ssize_t n = hs_recv_until(fd, SEP, 4, buf, sizeof buf, IO_MS);
    if (n != (ssize_t)strlen(msg) || memcmp(buf, msg, (size_t)n) != 0)
        HS_FAIL("expected the echo of '%.*s', got %zd bytes", (int)strlen(msg) - 4, msg, n);
}

/* The flags of fd FD of process PID (/proc/PID/fdinfo/FD, octal), or -1. */
static long fd_flags(pid_t pid, int fd)
{
    char path[64], text[512];
    snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", (int)pid, fd);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *p = strstr(text, "flags:");
    return p != NULL ? strtol(p + 6, NULL, 8) : -1;
}

/* echosrv takes fd 3 instead of binding, serves the connection that waited in its queue from
 * before echosrv started, and sets CLOEXEC and O_NONBLOCK on it. A restart (the queue keeps
 * the connections made while no echosrv runs) loses none. */
static void test_activation_serves_and_restarts(void **state)
{
    struct hs_ctx *c = begin(state, "test_activation_serves_and_restarts");
    char addr[64];
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    int lfd = listen_socket(c, addr, sizeof addr);
    const char *envv[] = { "LISTEN_FDS=1", "LISTEN_FDNAMES=echo", "NOTIFY_SOCKET", NULL };
    struct hs_spawn_opts o = { .env = envv, .fds = &lfd, .nfds = 1, .listen_pid = true };

    hs_ctx_write_conf(c, "systemd.ini",
                      "[server]\nthreads = 2\nplugin_dir = %s\nbind = %s\n", pd, addr);
    int early = queued_client(c, addr, "before the start" SEP);
    struct hs_proc *srv = start(c, &o, 1);
    if (strcmp(hs_addr(srv, 0), addr) != 0)
        HS_FAIL("listening on %s, not on the inherited %s", hs_addr(srv, 0), addr);
    if (!hs_output_has(srv, "socket inherited from the service manager (fd 3, echo), not bound")) {
        hs_dump_output(srv, "no inherited line");
        HS_FAIL("echosrv did not say it inherited fd 3");
    }
    expect_echo(early, "before the start" SEP);
    long flags = fd_flags(hs_pid(srv), 3);
    if (flags < 0 || !(flags & O_CLOEXEC) || !(flags & O_NONBLOCK))
        HS_FAIL("fd 3 of echosrv has flags 0%lo: want O_CLOEXEC and O_NONBLOCK", flags);
    ping(c, addr);

    /* Restart: connections made while no server runs wait in the queue we hold. */
    int st = hs_stop(srv, 15000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    hs_proc_free(srv);
    int between[3];
    for (int i = 0; i < 3; i++)
        between[i] = queued_client(c, addr, "while stopped" SEP);
    srv = start(c, &o, 1);
    for (int i = 0; i < 3; i++)
        expect_echo(between[i], "while stopped" SEP);
    ping(c, addr);
    st = hs_stop(srv, 15000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* Our socket still listens: echosrv closed its copy only. */
    int after = queued_client(c, addr, "x" SEP);
    assert_true(after >= 0);
}

/* LISTEN_PID of another process: the fds are not for us; echosrv binds as usual. */
static void test_activation_wrong_pid(void **state)
{
    struct hs_ctx *c = begin(state, "test_activation_wrong_pid");
    char addr[64], pidenv[64];
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    int lfd = listen_socket(c, addr, sizeof addr);
    snprintf(pidenv, sizeof pidenv, "LISTEN_PID=%d", (int)getpid());
    const char *envv[] = { "LISTEN_FDS=1", pidenv, NULL };
    struct hs_spawn_opts o = { .env = envv, .fds = &lfd, .nfds = 1 };

    hs_ctx_write_conf(c, "systemd.ini",
                      "[server]\nthreads = 1\nplugin_dir = %s\nbind = 127.0.0.1:0\n", pd);
    struct hs_proc *srv = start(c, &o, 1);
    if (strcmp(hs_addr(srv, 0), addr) == 0 || hs_output_has(srv, "inherited"))
        HS_FAIL("echosrv took a socket meant for pid %d", (int)getpid());
    assert_true(hs_output_has(srv, "not this process"));
    ping(c, hs_addr(srv, 0));
    /* Not ours: left as it came (no CLOEXEC set on it). */
    long flags = fd_flags(hs_pid(srv), 3);
    if (flags < 0 || (flags & O_CLOEXEC))
        HS_FAIL("fd 3 of echosrv has flags 0%lo: it should not have been touched", flags);
    int st = hs_stop(srv, 15000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A passed socket no listener binds stops the start-up; a passed fd that is not a listening
 * stream socket too. */
static void test_activation_unclaimed(void **state)
{
    struct hs_ctx *c = begin(state, "test_activation_unclaimed");
    char addr[64];
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    const char *args[] = { "--allow-root", "-c", c->conf, NULL };
    int lfd = listen_socket(c, addr, sizeof addr);
    const char *envv[] = { "LISTEN_FDS=1", NULL };
    struct hs_spawn_opts o = { .env = envv, .fds = &lfd, .nfds = 1, .listen_pid = true };

    hs_ctx_write_conf(c, "systemd.ini",
                      "[server]\nthreads = 1\nplugin_dir = %s\nbind = 127.0.0.1:0\n", pd);
    struct hs_proc *p = hs_spawn_with(args, 0, &o);
    assert_non_null(p);
    int st = hs_wait_exit(p, 15000);
    char *out = hs_output(p);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 1 || strstr(out, addr) == NULL ||
        strstr(out, "no listener binds it") == NULL) {
        hs_dump_output(p, "expected a refusal");
        HS_FAIL("echosrv did not refuse an unclaimed inherited socket");
    }
    free(out);
    hs_proc_free(p);

    /* A datagram socket is no listening socket. */
    int dfd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    hs_ctx_track(c, dfd);
    o.fds = &dfd;
    p = hs_spawn_with(args, 0, &o);
    assert_non_null(p);
    st = hs_wait_exit(p, 15000);
    out = hs_output(p);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 1 ||
        strstr(out, "fd 3 (unnamed) is not a listening stream socket") == NULL) {
        hs_dump_output(p, "expected a refusal");
        HS_FAIL("echosrv did not refuse a datagram socket");
    }
    free(out);
}

/* Two passed sockets and an address bound as usual, in three listeners; reloads keep the
 * passed sockets (a reload that moves one to another listener included) and one that drops a
 * passed address is refused. */
static void test_activation_reload(void **state)
{
    struct hs_ctx *c = begin(state, "test_activation_reload");
    char a1[64], a2[64], bound[64];
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    int fds[2];
    fds[0] = listen_socket(c, a1, sizeof a1);
    fds[1] = listen_socket(c, a2, sizeof a2);
    const char *envv[] = { "LISTEN_FDS=2", "LISTEN_FDNAMES=one:two", NULL };
    struct hs_spawn_opts o = { .env = envv, .fds = fds, .nfds = 2, .listen_pid = true };

    hs_ctx_write_conf(c, "systemd.ini", "[server]\nthreads = 2\nplugin_dir = %s\n"
               "[listener a]\nbind = %s\n[listener b]\nbind = %s\nplugin = raw\n"
               "[listener c]\nbind = 127.0.0.1:0\n", pd, a1, a2);
    struct hs_proc *srv = start(c, &o, 3);
    char *out = hs_output(srv);
    assert_int_equal(hs_listener_addr(out, "c", bound, sizeof bound), 0);
    free(out);
    assert_true(hs_output_has(srv, "(fd 3, one), not bound"));
    assert_true(hs_output_has(srv, "(fd 4, two), not bound"));
    ping(c, a1);
    ping(c, bound);
    int raw = hs_ctx_connect(c, a2, IO_MS);
    assert_int_equal(hs_ping(raw, "r", IO_MS), 0);

    /* The same addresses, a1 now served by the raw plugin of listener b and a2 by a. */
    hs_ctx_write_conf(c, "systemd.ini", "[server]\nthreads = 2\nplugin_dir = %s\n"
               "[listener a]\nbind = %s\n[listener b]\nbind = %s\nplugin = raw\n", pd, a2, a1);
    assert_int_equal(kill(hs_pid(srv), SIGHUP), 0);
    if (hs_wait_output(srv, "configuration reloaded (generation 1", IO_MS) != 0) {
        hs_dump_output(srv, "no reload");
        HS_FAIL("the reload failed");
    }
    ping(c, a2);
    int raw2 = hs_ctx_connect(c, a1, IO_MS);
    assert_int_equal(hs_ping(raw2, "r", IO_MS), 0);
    assert_int_equal(hs_ping(raw, "still", IO_MS), 0);

    /* Dropping a passed address: refused, everything still served. */
    hs_ctx_write_conf(c, "systemd.ini",
                      "[server]\nthreads = 2\nplugin_dir = %s\n[listener a]\nbind = %s\n", pd, a2);
    assert_int_equal(kill(hs_pid(srv), SIGHUP), 0);
    if (hs_wait_output(srv, "reload refused", IO_MS) != 0) {
        hs_dump_output(srv, "no refusal");
        HS_FAIL("a reload that drops an inherited socket was not refused");
    }
    assert_true(hs_output_has(srv, "no listener binds it"));
    ping(c, a2);
    int raw3 = hs_ctx_connect(c, a1, IO_MS);
    assert_int_equal(hs_ping(raw3, "r", IO_MS), 0);
    int st = hs_stop(srv, 15000);
    assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* A passed unix socket: served, its file's mode is the socket unit's (socket_mode is not
 * applied), and the file stays at exit (it belongs to the service manager). */
static void test_activation_unix(void **state)
{
    struct hs_ctx *c = begin(state, "test_activation_unix");
    char path[200], addr[220];
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    int n = snprintf(path, sizeof path, "%s/act.sock", c->dir);
    assert_true(n > 0 && (size_t)n < sizeof sun.sun_path);
    memcpy(sun.sun_path, path, (size_t)n + 1);
    snprintf(addr, sizeof addr, "unix:%s", path);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    hs_ctx_track(c, lfd);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof sun), 0);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(listen(lfd, 16), 0);
    const char *envv[] = { "LISTEN_FDS=1", NULL };
    struct hs_spawn_opts o = { .env = envv, .fds = &lfd, .nfds = 1, .listen_pid = true };

    hs_ctx_write_conf(c, "systemd.ini",
                      "[server]\nthreads = 1\nplugin_dir = %s\nbind = %s\nsocket_mode = 0666\n", pd,
               addr);
    struct hs_proc *srv = start(c, &o, 1);
    assert_true(hs_output_has(srv, "socket inherited from the service manager (fd 3)"));
    ping(c, addr);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    int rc = hs_stop(srv, 15000);
    assert_true(rc >= 0 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
    if (stat(path, &st) != 0)
        HS_FAIL("echosrv removed the passed socket's file %s", path);
    int fd = hs_ctx_connect(c, addr, IO_MS);   /* still listening: the queue waits */
    assert_true(fd >= 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        HS_CTX_TEST(test_notify_sequence),
        HS_CTX_TEST(test_notify_abstract_and_bad),
        HS_CTX_TEST(test_activation_serves_and_restarts),
        HS_CTX_TEST(test_activation_wrong_pid),
        HS_CTX_TEST(test_activation_unclaimed),
        HS_CTX_TEST(test_activation_reload),
        HS_CTX_TEST(test_activation_unix),
    };

    if (hs_process_init() < 0)
        fprintf(stderr, "# could not raise RLIMIT_NOFILE or ignore SIGPIPE\n");
    return cmocka_run_group_tests_name("echosrv_systemd", tests, NULL, NULL);
}
