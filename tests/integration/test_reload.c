/* test_reload.c - integration tests: SIGHUP reloads under load, listeners and plugins changed, bad files, shutdown under load. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define SEP "\r\n\r\n"
#define SEPLEN 4
#define IO_MS 5000
#define TEST_BUDGET_S 60

static struct hs_ctx *begin(void **state, const char *name)
{
    return hs_ctx_begin(state, TEST_BUDGET_S, name);
}

/* The address listener NAME logged after the last occurrence of MARKER
 * (NULL: anywhere), into ADDR. Returns 0 or -1. */
static int addr_after(struct hs_proc *srv, const char *marker, const char *name, char *addr,
                      size_t cap)
{
    char *out = hs_output(srv);
    if (out == NULL)
        return -1;
    const char *s = out;
    if (marker != NULL) {
        const char *m = NULL;
        for (const char *p = out; (p = strstr(p, marker)) != NULL; p++)
            m = p;
        if (m == NULL) {
            free(out);
            return -1;
        }
        s = m;
    }
    int rc = hs_listener_addr(s, name, addr, cap);
    free(out);
    return rc;
}

/* ---- load: threads echoing over kept and fresh connections ---------------------------- */

struct load {
    const char *addr;
    atomic_bool stop;
    atomic_long ops;
    atomic_long fresh;         /* connections opened */
    atomic_long errors;
    atomic_long cut;           /* replies that stopped part-way */
    pthread_mutex_t mu;
    char first_error[256];
};

static void load_fail(struct load *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void load_fail(struct load *ld, const char *fmt, ...)
{
    pthread_mutex_lock(&ld->mu);
    if (ld->first_error[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ld->first_error, sizeof ld->first_error, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&ld->mu);
    atomic_fetch_add(&ld->errors, 1);
}

/* One round trip of a pattern message of BODY bytes; 0 or -1 (recorded). */
static int load_echo(struct load *ld, int fd, size_t body, unsigned seed, char *out, char *in)
{
    hs_fill_pattern(out, body, seed);
    memcpy(out + body, SEP, SEPLEN);
    size_t got = 0;
    if (hs_exchange(fd, out, body + SEPLEN, in, body + SEPLEN, IO_MS, &got) != 0) {
        if (got > 0)
            atomic_fetch_add(&ld->cut, 1);
        load_fail(ld, "%zu-byte message: %zu bytes back: %s", body + SEPLEN, got,
                  strerror(errno));
        return -1;
    }
    if (memcmp(out, in, body + SEPLEN) != 0) {
        load_fail(ld, "%zu-byte message: the reply differs", body + SEPLEN);
        return -1;
    }
    atomic_fetch_add(&ld->ops, 1);
    return 0;
}

/* Even threads keep one connection; odd ones open a new one per message. */
struct load_arg {
    struct load *ld;
    int id;
};

static void *load_main(void *arg)
{
    struct load *ld = ((struct load_arg *)arg)->ld;
    int id = ((struct load_arg *)arg)->id;
    size_t cap = 70000;
    char *out = malloc(cap), *in = malloc(cap);
    int fd = -1;
    unsigned seed = (unsigned)id * 7919u;
    while (out != NULL && in != NULL && !atomic_load(&ld->stop)) {
        if (fd < 0) {
            fd = hs_connect(ld->addr, IO_MS);
            if (fd < 0) {
                load_fail(ld, "connect to %s: %s", ld->addr, strerror(errno));
                break;
            }
            atomic_fetch_add(&ld->fresh, 1);
        }
        seed = seed * 1103515245u + 12345u;
        size_t body = (seed >> 8) % 4 == 0 ? 1 + (seed >> 12) % 65000 : 1 + (seed >> 12) % 200;
        if (load_echo(ld, fd, body, seed, out, in) < 0)
            break;
        if (id % 2 == 1) {
            close(fd);
            fd = -1;
        }
    }
    if (fd >= 0)
        close(fd);
    free(out);
    free(in);
    return NULL;
}

#define NLOAD 6

struct load_run {
    struct load ld;
    pthread_t th[NLOAD];
    struct load_arg args[NLOAD];
};

static void load_start(struct load_run *r, const char *addr)
{
    memset(r, 0, sizeof *r);
    r->ld.addr = addr;
    pthread_mutex_init(&r->ld.mu, NULL);
    for (int i = 0; i < NLOAD; i++) {
        r->args[i].ld = &r->ld;
        r->args[i].id = i;
        assert_int_equal(pthread_create(&r->th[i], NULL, load_main, &r->args[i]), 0);
    }
}

/* Waits until the load made N more round trips (or failed). */
static void load_progress(struct load_run *r, long n)
{
    long want = atomic_load(&r->ld.ops) + n;
    long deadline = hs_now_ms() + 20000;
    while (atomic_load(&r->ld.ops) < want && atomic_load(&r->ld.errors) == 0 &&
           hs_now_ms() < deadline)
        hs_sleep_ms(5);
}

static void load_stop(struct load_run *r)
{
    atomic_store(&r->ld.stop, true);
    for (int i = 0; i < NLOAD; i++)
        pthread_join(r->th[i], NULL);
    pthread_mutex_destroy(&r->ld.mu);
}

/* 1. Reloads while a load runs: listeners added and removed beside the one
 * under load, limits and log level changed, a plugin's section changed. No
 * connection is refused or reset, no reply is cut or altered; generations
 * whose connections are gone are unloaded. */
static void test_reload_under_load(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    assert_non_null(pd);
    static const char *const variants[] = {
        "",
        "[listener extra]\nbind = 127.0.0.1:0\nplugin = raw\nmax_message = 64K\n",
        "[listener extra]\nbind = 127.0.0.1:0\n[listener more]\nbind = 127.0.0.1:0\n",
        "",
    };
    static const char *const server_keys[] = {
        "", "idle_timeout = 60\nlog_level = debug\n", "max_connections = 500\n",
        "shutdown_timeout = 3\nlog_level = warn\n",
    };
    hs_ctx_write_conf(c, "reload.ini",
                      "[server]\nthreads = 2\nplugin_dir = %s\n[listener main]\nbind = 127.0.0.1:0\n",
               pd);
    struct hs_proc *srv = hs_ctx_start_conf(c, 1, 0);
    char main_addr[HS_ADDR_MAX];
    snprintf(main_addr, sizeof main_addr, "%s", hs_addr(srv, 0));
    struct load_run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    load_start(r, main_addr);
    load_progress(r, 200);
    for (unsigned gen = 1; gen <= 8; gen++) {
        size_t v = gen % 4;
        hs_ctx_write_conf(c, "reload.ini",
                   "[server]\nthreads = 2\nplugin_dir = %s\n%s[listener main]\nbind = 127.0.0.1:0\n"
                   "max_message = %uM\n%s[echo]\nseparator = \\r\\n\\r\\n\n",
                   pd, server_keys[v], 1 + gen, variants[v]);
        hs_reload(srv, gen);
        char now[HS_ADDR_MAX];
        if (addr_after(srv, "SIGHUP: reloading", "main", now, sizeof now) != 0 ||
            strcmp(now, main_addr) != 0)
            HS_FAIL("after reload %u, listener main is not on %s any more", gen, main_addr);
        load_progress(r, 100);
        if (atomic_load(&r->ld.errors) != 0)
            break;
    }
    load_progress(r, 200);
    load_stop(r);
    long ops = atomic_load(&r->ld.ops), fresh = atomic_load(&r->ld.fresh);
    long errors = atomic_load(&r->ld.errors);
    fprintf(stderr, "# %ld round trips, %ld connections opened, 8 reloads, %ld errors\n", ops,
            fresh, errors);
    if (errors != 0) {
        hs_dump_output(srv, "load failed");
        HS_FAIL("%ld errors during reloads; first: %s", errors, r->ld.first_error);
    }
    assert_true(ops >= 1000);
    free(r);
    /* Every connection closed: the old generations go, the current stays. */
    if (hs_wait_output(srv, "generation 7: its last connection closed: unloaded", IO_MS) != 0) {
        hs_dump_output(srv, "old generation kept");
        HS_FAIL("generation 7 was not unloaded after its connections closed");
    }
    if (hs_output_has(srv, "generation 8: its last"))
        HS_FAIL("the current generation was unloaded");
    int st = hs_stop(srv, 10000);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        HS_FAIL("echosrv did not exit 0 after the reloads (status %d)", st);
}

/* Expects NAME's reload to be refused with NEEDLE, and the server to keep
 * serving FD and new connections to ADDR. */
static void expect_refused_reload(struct hs_ctx *c, struct hs_proc *srv, int fd, const char *addr,
                                  int nth, const char *needle)
{
    assert_int_equal(kill(hs_pid(srv), SIGHUP), 0);
    /* The nth refusal: wait for that many lines. */
    long deadline = hs_now_ms() + 10000;
    for (;;) {
        char *out = hs_output(srv);
        int n = 0;
        for (const char *p = out; p && (p = strstr(p, "reload refused: ")) != NULL; p++)
            n++;
        free(out);
        if (n >= nth)
            break;
        if (hs_now_ms() > deadline) {
            hs_dump_output(srv, "no refusal");
            HS_FAIL("reload %d was not refused", nth);
        }
        hs_sleep_ms(5);
    }
    if (!hs_output_has(srv, needle)) {
        hs_dump_output(srv, "refusal without its reason");
        HS_FAIL("the refusal does not say '%s'", needle);
    }
    assert_int_equal(hs_ping(fd, "kept" SEP, IO_MS), 0);
    int fresh = hs_ctx_connect(c, addr, IO_MS);
    assert_int_equal(hs_ping(fresh, "new" SEP, IO_MS), 0);
    hs_ctx_untrack_close(c, fresh);
}

/* 2. A bad configuration is refused with its FILE:LINE (syntax, plugin
 * init, bind, TLS) and the running one keeps serving; a good one then loads. */
static void test_reload_bad_config(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    assert_non_null(pd);
    hs_ctx_write_conf(c, "reload.ini",
                      "[server]\nthreads = 2\nplugin_dir = %s\nbind = 127.0.0.1:0\n", pd);
    struct hs_proc *srv = hs_ctx_start_conf(c, 1, 0);
    char addr[HS_ADDR_MAX];
    snprintf(addr, sizeof addr, "%s", hs_addr(srv, 0));
    int fd = hs_ctx_connect(c, addr, IO_MS);
    assert_int_equal(hs_ping(fd, "before" SEP, IO_MS), 0);

    char want[700];
    hs_ctx_write_conf(c, "reload.ini",
                      "[server]\nthreads = 2\nplugin_dir = %s\nno_such_key = 1\nbind = 127.0.0.1:0\n", pd);
    snprintf(want, sizeof want, "reload refused: %s:4: unknown key 'no_such_key'", c->conf);
    expect_refused_reload(c, srv, fd, addr, 1, want);

    hs_ctx_write_conf(c, "reload.ini",
                      "[server]\nthreads = 2\nplugin_dir = %s\nbind = 127.0.0.1:0\n[echo]\n"
                  "separator =\n", pd);
    snprintf(want, sizeof want, "reload refused: %s:6: plugin echo", c->conf);
    expect_refused_reload(c, srv, fd, addr, 2, want);

    /* An address another socket holds: the bind fails, nothing changes. */
    int holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    assert_int_equal(bind(holder, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(listen(holder, 1), 0);
    socklen_t sl = sizeof sin;
    assert_int_equal(getsockname(holder, (struct sockaddr *)&sin, &sl), 0);
    hs_ctx_track(c, holder);
    hs_ctx_write_conf(c, "reload.ini",
                      "[server]\nthreads = 2\nplugin_dir = %s\n[listener a]\nbind = 127.0.0.1:0\n"
                  "[listener b]\nbind = 127.0.0.1:%u\n", pd, ntohs(sin.sin_port));
    expect_refused_reload(c, srv, fd, addr, 3, "reload refused: listener b: cannot bind");

    hs_ctx_write_conf(c, "reload.ini",
                      "[server]\nthreads = 2\nplugin_dir = %s\nbind = 127.0.0.1:0\n"
                  "tls_cert = nosuch.pem\ntls_key = nosuch.key\n", pd);
    expect_refused_reload(c, srv, fd, addr, 4, "cannot load the certificate");

    hs_ctx_write_conf(c, "reload.ini",
                      "[server]\nthreads = 2\nplugin_dir = %s\nbind = 127.0.0.1:0\n", pd);
    hs_reload(srv, 1);
    assert_int_equal(hs_ping(fd, "after" SEP, IO_MS), 0);
}

/* Sends TEXT and expects it back at once (the raw plugin). */
static void expect_raw(int fd, const char *text)
{
    char in[64];
    size_t n = strlen(text);
    size_t got = 0;
    if (hs_exchange(fd, text, n, in, n, IO_MS, &got) != 0 || memcmp(in, text, n) != 0)
        HS_FAIL("no raw echo of '%s' (%zu bytes back)", text, got);
}

/* Expects the echo protocol on fd: a message without its separator gets no
 * reply, with it the whole message comes back. */
static void expect_echo_framing(int fd)
{
    assert_int_equal(hs_send_all(fd, "ab", 2, IO_MS), 0);
    hs_assert_quiet(fd, 200);
    char in[16];
    size_t got = 0;
    if (hs_exchange(fd, SEP, SEPLEN, in, 2 + SEPLEN, IO_MS, &got) != 0 ||
        memcmp(in, "ab" SEP, 2 + SEPLEN) != 0)
        HS_FAIL("the echo protocol did not answer 'ab' + separator (%zu bytes back)", got);
}

/* 3. Listeners across a reload: one changes plugin on the same port (new
 * connections get the new protocol, open ones keep the old), one is removed
 * (its port refuses, its open connection is still served), one is added. */
static void test_reload_listeners(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    assert_non_null(pd);
    hs_ctx_write_conf(c, "reload.ini",
                      "[server]\nthreads = 2\nplugin_dir = %s\n[listener a]\nbind = 127.0.0.1:0\n"
                  "[listener b]\nbind = 127.0.0.1:0\n", pd);
    struct hs_proc *srv = hs_ctx_start_conf(c, 2, 0);
    char a[HS_ADDR_MAX], b[HS_ADDR_MAX], nc[HS_ADDR_MAX], na[HS_ADDR_MAX];
    snprintf(a, sizeof a, "%s", hs_addr(srv, 0));
    snprintf(b, sizeof b, "%s", hs_addr(srv, 1));
    int old_a = hs_ctx_connect(c, a, IO_MS);
    int old_b = hs_ctx_connect(c, b, IO_MS);
    assert_int_equal(hs_ping(old_a, "a" SEP, IO_MS), 0);
    assert_int_equal(hs_ping(old_b, "b" SEP, IO_MS), 0);

    hs_ctx_write_conf(c, "reload.ini",
                      "[server]\nthreads = 2\nplugin_dir = %s\n[listener a]\nbind = 127.0.0.1:0\n"
                  "plugin = raw\nmax_message = 64K\n[listener c]\nbind = 127.0.0.1:0\n", pd);
    hs_reload(srv, 1);
    assert_int_equal(addr_after(srv, "SIGHUP: reloading", "a", na, sizeof na), 0);
    assert_int_equal(addr_after(srv, "SIGHUP: reloading", "c", nc, sizeof nc), 0);
    if (strcmp(na, a) != 0)
        HS_FAIL("listener a moved from %s to %s", a, na);
    if (strcmp(nc, b) == 0)
        HS_FAIL("the new listener c took removed listener b's socket %s", b);

    int new_a = hs_ctx_connect(c, a, IO_MS);
    expect_raw(new_a, "raw now");
    expect_echo_framing(old_a);
    int gone = hs_connect(b, IO_MS);
    if (gone >= 0) {
        close(gone);
        HS_FAIL("removed listener b still accepts connections on %s", b);
    }
    if (errno != ECONNREFUSED)
        HS_FAIL("connecting to removed listener b: %s, not refused", strerror(errno));
    assert_int_equal(hs_ping(old_b, "b still served" SEP, IO_MS), 0);
    int new_c = hs_ctx_connect(c, nc, IO_MS);
    assert_int_equal(hs_ping(new_c, "c" SEP, IO_MS), 0);

    if (hs_output_has(srv, "generation 0: its last connection closed"))
        HS_FAIL("generation 0 was unloaded while two of its connections were open");
    hs_ctx_untrack_close(c, old_a);
    assert_int_equal(hs_ping(old_b, "last one" SEP, IO_MS), 0);
    hs_ctx_untrack_close(c, old_b);
    if (hs_wait_output(srv, "generation 0: its last connection closed: unloaded", IO_MS) != 0)
        HS_FAIL("generation 0 was not unloaded after its last connection closed");
}

/* Copies the file SRC to DST through a new inode (write, then rename over). */
static void replace_file(const char *src, const char *dst)
{
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.new", dst);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    assert_true(in >= 0 && out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    close(in);
    assert_int_equal(fchmod(out, 0755), 0);
    assert_int_equal(close(out), 0);
    assert_int_equal(rename(tmp, dst), 0);
}

/* 4. A plugin file replaced on disk: the reload loads the new code (from a
 * private copy: the dynamic loader would return the old code for the same
 * path), connections opened before keep the old code, which is unloaded
 * after the last of them; replaced again, the next reload follows. */
static void test_reload_plugin_changed(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    assert_non_null(pd);
    char echo_so[600], raw_so[600], proto[600];
    snprintf(echo_so, sizeof echo_so, "%s/echo.so", pd);
    snprintf(raw_so, sizeof raw_so, "%s/raw.so", pd);
    snprintf(proto, sizeof proto, "%s/proto.so", c->dir);
    replace_file(echo_so, proto);
    hs_ctx_write_conf(c, "reload.ini",
                      "[server]\nthreads = 2\nbind = 127.0.0.1:0\nplugin = ./proto.so\n"
                  "max_message = 64K\n");
    struct hs_proc *srv = hs_ctx_start_conf(c, 1, 0);
    char addr[HS_ADDR_MAX];
    snprintf(addr, sizeof addr, "%s", hs_addr(srv, 0));
    int v1 = hs_ctx_connect(c, addr, IO_MS);
    expect_echo_framing(v1);

    replace_file(raw_so, proto);
    hs_reload(srv, 1);
    if (!hs_output_has(srv, "changed since it was first loaded"))
        HS_FAIL("the reload did not notice that the plugin file changed");
    int v2 = hs_ctx_connect(c, addr, IO_MS);
    expect_raw(v2, "new code");
    expect_echo_framing(v1);

    /* Unchanged since: still the new code. */
    hs_reload(srv, 2);
    int v3 = hs_ctx_connect(c, addr, IO_MS);
    expect_raw(v3, "still new");

    /* Back to the first plugin, through yet another file. */
    replace_file(echo_so, proto);
    hs_reload(srv, 3);
    int v4 = hs_ctx_connect(c, addr, IO_MS);
    expect_echo_framing(v4);
    expect_raw(v2, "v2 keeps raw");
    expect_echo_framing(v1);

    hs_ctx_untrack_close(c, v1);
    if (hs_wait_output(srv, "generation 0: its last connection closed: unloaded", IO_MS) != 0)
        HS_FAIL("the first plugin's generation was not unloaded after its last connection");
    hs_ctx_untrack_close(c, v2);
    if (hs_wait_output(srv, "generation 1: its last connection closed: unloaded", IO_MS) != 0)
        HS_FAIL("generation 1 was not unloaded after its last connection");
    assert_int_equal(hs_ping(v4, "current" SEP, IO_MS), 0);
    int st = hs_stop(srv, 10000);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        HS_FAIL("echosrv did not exit 0 (status %d)", st);
}

/* 5. SIGTERM under load is bounded by shutdown_timeout: clients that read
 * get complete replies, a client that never reads its large reply does not
 * hold the server past shutdown_timeout, exit status 0. */
static void test_shutdown_under_load(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = hs_ctx_start(c, "127.0.0.1:0", 1, 0, "shutdown_timeout = 2\n");
    char addr[HS_ADDR_MAX];
    snprintf(addr, sizeof addr, "%s", hs_addr(srv, 0));
    /* A client that sends 4 MiB of messages and reads nothing: the server
     * holds unsent replies for it. */
    int stuck = hs_ctx_connect(c, addr, IO_MS);
    int rcv = 4096;
    setsockopt(stuck, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    size_t big = 64 * 1024;
    char *msg = malloc(big + SEPLEN);
    assert_non_null(msg);
    hs_fill_pattern(msg, big, 3);
    memcpy(msg + big, SEP, SEPLEN);
    for (int i = 0; i < 64; i++)
        if (hs_send_all(stuck, msg, big + SEPLEN, 200) != 0)
            break; /* the server stopped reading: backpressure */
    free(msg);
    struct load_run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    load_start(r, addr);
    load_progress(r, 200);
    long t0 = hs_now_ms();
    assert_int_equal(kill(hs_pid(srv), SIGTERM), 0);
    int st = hs_wait_exit(srv, 10000);
    long took = hs_now_ms() - t0;
    load_stop(r);
    /* Clients of the load see refusals once the listener is closed: that is
     * the point of shutting down. What must not happen is a cut reply. */
    if (strstr(r->ld.first_error, "the reply differs") != NULL)
        HS_FAIL("a reply was altered during shutdown: %s", r->ld.first_error);
    if (atomic_load(&r->ld.cut) != 0)
        HS_FAIL("%ld replies were cut during shutdown", atomic_load(&r->ld.cut));
    free(r);
    if (st < 0)
        HS_FAIL("echosrv still runs %ld ms after SIGTERM with shutdown_timeout = 2", took);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        HS_FAIL("echosrv exited with status %d after SIGTERM", st);
    if (took > 2000 + 3000)
        HS_FAIL("shutdown took %ld ms with shutdown_timeout = 2", took);
    if (!hs_output_has(srv, "shutdown_timeout reached"))
        HS_FAIL("the stuck client did not make the server wait for shutdown_timeout");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        HS_CTX_TEST(test_reload_under_load),
        HS_CTX_TEST(test_reload_bad_config),
        HS_CTX_TEST(test_reload_listeners),
        HS_CTX_TEST(test_reload_plugin_changed),
        HS_CTX_TEST(test_shutdown_under_load),
    };

    if (hs_process_init() < 0)
        fprintf(stderr, "# could not raise RLIMIT_NOFILE or ignore SIGPIPE\n");
    return cmocka_run_group_tests_name("echosrv_reload", tests, NULL, NULL);
}
