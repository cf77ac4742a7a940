/* test_client_tls.c - integration tests of libechoclient's TLS against the TLS echo peer fixture. */
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
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "echosrv/client.h"
#include "harness.h"
#include "tls_peer.h"

#ifndef TEST_BUDGET_S
#define TEST_BUDGET_S 30        /* SIGALRM backstop per test */
#endif

static char g_certs[256];       /* the test PKI, made once for the group by mkcerts.sh */

/* Per-test state: the harness's, a peer and a client that teardown frees. */
struct ctx {
    struct hs_ctx hs;           /* first: the harness sees a struct hs_ctx */
    struct tls_peer *peer;
    es_client *cl;
};

/* The path of a file of the test PKI: one static buffer per name, valid for the run. */
static const char *cert(const char *name)
{
    static char paths[16][320];
    static int n;

    for (int i = 0; i < n; i++)
        if (strcmp(strrchr(paths[i], '/') + 1, name) == 0)
            return paths[i];
    assert_true(n < 16);
    snprintf(paths[n], sizeof paths[n], "%s/%s", g_certs, name);
    return paths[n++];
}

static int group_setup(void **state)
{
    const char *src = getenv("ABS_TOP_SRCDIR");
    char script[512];
    pid_t pid;
    int status;

    (void)state;
    if (src == NULL || src[0] != '/') {
        fprintf(stderr, "# ABS_TOP_SRCDIR is not set to an absolute path\n");
        return -1;
    }
    if (hs_tmpdir(g_certs, sizeof g_certs) < 0)
        return -1;
    snprintf(script, sizeof script, "%s/tests/integration/mkcerts.sh", src);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execl("/bin/sh", "sh", script, g_certs, (char *)NULL);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "# %s %s failed\n", script, g_certs);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    hs_rmtree(g_certs);
    return 0;
}

static int setup(void **state)
{
    return hs_ctx_setup_size(state, sizeof(struct ctx));
}

static int teardown(void **state)
{
    struct ctx *c = *state;

    if (c != NULL) {
        es_client_free(c->cl);
        tls_peer_stop(c->peer);
    }
    return hs_ctx_teardown(state);
}

static struct ctx *begin(void **state, const char *name)
{
    return (struct ctx *)hs_ctx_begin(state, TEST_BUDGET_S, name);
}

/* Fails the test unless HAY contains NEEDLE. */
static void expect_has(const char *hay, const char *needle)
{
    if (hay == NULL || strstr(hay, needle) == NULL)
        HS_FAIL("'%s' does not contain '%s'", hay ? hay : "(null)", needle);
}

/* The options of a peer serving the test PKI's server certificate. */
static struct tls_peer_opts peer_opts(void)
{
    struct tls_peer_opts o = { 0 };

    o.cert_file = cert("server.pem");
    o.key_file = cert("server.key");
    return o;
}

/* Starts a peer (freed at teardown). */
static struct tls_peer *peer_start(struct ctx *c, const struct tls_peer_opts *o)
{
    char err[256] = "";

    c->peer = tls_peer_start(o, err, sizeof err);
    if (c->peer == NULL)
        HS_FAIL("tls_peer_start: %s", err);
    return c->peer;
}

/* TLS options trusting the test CA, full_response on, pool of 2. */
static es_client_options tls_opts(void)
{
    es_client_options o;

    es_client_options_init(&o);
    o.pool_size = 2;
    o.full_response = 1;
    o.connect_timeout_ms = 5000;
    o.request_timeout_ms = 10000;
    o.tls = 1;
    o.tls_ca_file = cert("ca.pem");
    return o;
}

/* A client for the peer (freed at teardown); fails the test if es_client_new does. */
static es_client *client_for(struct ctx *c, const es_client_options *o)
{
    char err[512] = "";

    c->cl = es_client_new(tls_peer_addr(c->peer), o, err, sizeof err);
    if (c->cl == NULL)
        HS_FAIL("es_client_new: %s", err);
    return c->cl;
}

/* Calls MSG (LEN bytes) and checks the reply; returns the connection number. */
static uint64_t call_ok_n(es_client *cl, const void *msg, size_t len)
{
    es_response *r = NULL;
    char err[512] = "";
    size_t n = 0;

    int rc = es_client_call(cl, msg, len, &r, err, sizeof err);
    if (rc != 0)
        HS_FAIL("call of %zu bytes failed: %d %s", len, rc, err);
    const uint8_t *d = es_response_data(r, &n);
    assert_int_equal(n, len);
    assert_memory_equal(d, msg, len);
    uint64_t conn = es_response_connection(r);
    es_response_free(r);
    return conn;
}

static uint64_t call_ok(es_client *cl, const char *msg)
{
    return call_ok_n(cl, msg, strlen(msg));
}

/* Calls MSG expecting failure with WANT; the message in ERR. */
static void call_fails(es_client *cl, const char *msg, int want, char *err, size_t errlen)
{
    es_response *r = NULL;

    err[0] = '\0';
    int rc = es_client_call(cl, msg, strlen(msg), &r, err, errlen);
    if (rc != want)
        HS_FAIL("call: expected %d (%s), got %d (%s)", want, strerror(-want), rc,
                rc ? err : "success");
    assert_null(r);
}

static void check_stats(es_client *cl, unsigned in_use, unsigned available, uint64_t sessions,
                        uint64_t requests)
{
    es_client_stats st;

    es_client_get_stats(cl, &st);
    if (st.in_use != in_use || st.available != available || st.sessions != sessions ||
        st.requests_processed != requests)
        HS_FAIL("stats: in_use %u available %u sessions %llu requests %llu; expected %u %u %llu "
                "%llu", st.in_use, st.available, (unsigned long long)st.sessions,
                (unsigned long long)st.requests_processed, in_use, available,
                (unsigned long long)sessions, (unsigned long long)requests);
}

/* 1. A good handshake; echoes of every size (a reply over many records, a write that takes
 * many SSL_write calls); the pooled connection is reused though the TLS 1.3 peer sent its
 * session tickets after the handshake; full_response over TLS. */
static void test_echo_and_reuse(void **state)
{
    struct ctx *c = begin(state, __func__);
    struct tls_peer_opts po = peer_opts();
    peer_start(c, &po);
    es_client_options o = tls_opts();
    es_client *cl = client_for(c, &o);

    for (int i = 0; i < 5; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "hello %d", i);
        assert_int_equal(call_ok(cl, msg), 1);
    }
    check_stats(cl, 0, 1, 1, 5);

    size_t big = 3u << 20;      /* 3 MiB: ~200 records each way */
    char *m = malloc(big);
    assert_non_null(m);
    hs_fill_pattern(m, big, 7);
    assert_int_equal(call_ok_n(cl, m, big), 1);
    free(m);
    assert_int_equal(call_ok_n(cl, "", 0), 1);
    check_stats(cl, 0, 1, 1, 7);

    /* Two at once: a second session, both stay pooled. */
    es_future *f[2];
    const void *msgs[2] = { "one", "two" };
    const size_t lens[2] = { 3, 3 };
    assert_int_equal(es_client_submit_many(cl, 2, msgs, lens, f), 0);
    for (int i = 0; i < 2; i++) {
        es_response *r = NULL;
        assert_int_equal(es_future_wait(f[i], 10000), 0);
        assert_int_equal(es_future_result(f[i], &r, NULL, 0), 0);
        assert_non_null(es_response_peer(r));
        expect_has(es_response_peer(r), "127.0.0.1:");
        es_response_free(r);
        es_future_free(f[i]);
    }
    /* The first connection may carry both before the second one's handshake is done: it
     * joins the pool once it is (the library gives no signal for that; poll, bounded). */
    es_client_stats st;
    long t0 = hs_now_ms();
    for (es_client_get_stats(cl, &st); st.sessions < 2 && hs_now_ms() - t0 < 5000;
         es_client_get_stats(cl, &st))
        hs_sleep_ms(1);
    check_stats(cl, 0, 2, 2, 9);

    struct tls_peer_stats ps;
    assert_int_equal(tls_peer_wait_handshakes(c->peer, 2, 0, 5000), 0);
    tls_peer_get_stats(c->peer, &ps);
    assert_int_equal(ps.handshakes, 2);
    assert_int_equal(ps.accepted, 2);
}

/* 2. Records the client did not ask for while idle - a new session ticket and a key update
 * request after every reply - leave the connection in the pool; the key update is answered. */
static void test_idle_tickets_and_key_updates(void **state)
{
    struct ctx *c = begin(state, __func__);
    struct tls_peer_opts po = peer_opts();
    po.ticket_after_reply = 1;
    po.key_update_after_reply = 1;
    peer_start(c, &po);
    es_client_options o = tls_opts();
    o.pool_size = 1;
    es_client *cl = client_for(c, &o);

    for (int i = 0; i < 20; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "tick %d", i);
        assert_int_equal(call_ok(cl, msg), 1);
        /* Every other time, let the ticket and the key update reach the idle connection
         * before the next call; else they meet the check made when it is handed out. */
        if (i % 2 == 0 && tls_peer_wait_replies(c->peer, i + 1, 5000) < 0)
            HS_FAIL("the peer did not finish reply %d", i + 1);
    }
    check_stats(c->cl, 0, 1, 1, 20);
    struct tls_peer_stats ps;
    tls_peer_get_stats(c->peer, &ps);
    assert_int_equal(ps.handshakes, 1);
}

/* 3. TLS 1.2 works as well. */
static void test_tls12(void **state)
{
    struct ctx *c = begin(state, __func__);
    struct tls_peer_opts po = peer_opts();
    po.max_version = TLS1_2_VERSION;
    peer_start(c, &po);
    es_client_options o = tls_opts();
    es_client *cl = client_for(c, &o);

    assert_int_equal(call_ok(cl, "over 1.2"), 1);
    assert_int_equal(call_ok(cl, "again"), 1);
    check_stats(cl, 0, 1, 1, 2);
}

/* 4. A server certificate from a CA the client does not trust: -EPROTO naming the
 * verification failure, not retried; tls_insecure accepts it. */
static void test_wrong_ca_and_insecure(void **state)
{
    struct ctx *c = begin(state, __func__);
    struct tls_peer_opts po = peer_opts();
    peer_start(c, &po);
    es_client_options o = tls_opts();
    o.tls_ca_file = cert("other-ca.pem");
    es_client *cl = client_for(c, &o);
    char err[512];

    call_fails(cl, "hello", -EPROTO, err, sizeof err);
    expect_has(err, "TLS handshake with 127.0.0.1:");
    expect_has(err, "certificate verify failed");
    expect_has(err, "unable to get local issuer certificate");
    check_stats(cl, 0, 0, 0, 0);
    struct tls_peer_stats ps;
    tls_peer_get_stats(c->peer, &ps);
    assert_int_equal(ps.accepted, 1);           /* no silent retry */
    assert_int_equal(ps.handshakes, 0);
    es_client_free(cl);

    o.tls_insecure = 1;
    cl = client_for(c, &o);
    assert_int_equal(call_ok(cl, "no questions asked"), 1);
    o.tls_ca_file = NULL;                       /* insecure without any CA */
    es_client_free(cl);
    cl = client_for(c, &o);
    assert_int_equal(call_ok(cl, "still fine"), 1);
}

/* 5. The name checked: the address's IP by default; a DNS name in the certificate works; a
 * name or an IP it does not hold is refused, naming the mismatch. */
static void test_server_name(void **state)
{
    struct ctx *c = begin(state, __func__);
    struct tls_peer_opts po = peer_opts();
    peer_start(c, &po);
    es_client_options o = tls_opts();
    char err[512];

    o.tls_server_name = "localhost";
    es_client *cl = client_for(c, &o);
    assert_int_equal(call_ok(cl, "by name"), 1);
    es_client_free(cl);

    o.tls_server_name = "wrong.example";
    cl = client_for(c, &o);
    call_fails(cl, "hello", -EPROTO, err, sizeof err);
    expect_has(err, "certificate verify failed");
    expect_has(err, "hostname mismatch");
    es_client_free(cl);

    o.tls_server_name = "10.1.2.3";
    cl = client_for(c, &o);
    call_fails(cl, "hello", -EPROTO, err, sizeof err);
    expect_has(err, "IP address mismatch");
}

/* 6. Mutual TLS: with the client certificate it works; without one, or with one of another
 * CA, the request fails with the server's alert, once (no reconnection loop), over TLS 1.3
 * (the server refuses after the client has finished) and over TLS 1.2. */
static void test_mutual_tls(void **state)
{
    struct ctx *c = begin(state, __func__);
    struct tls_peer_opts po = peer_opts();
    po.client_ca_file = cert("ca.pem");
    peer_start(c, &po);
    es_client_options o = tls_opts();
    char err[512];
    struct tls_peer_stats ps;

    o.tls_cert_file = cert("client.pem");
    o.tls_key_file = cert("client.key");
    es_client *cl = client_for(c, &o);
    assert_int_equal(call_ok(cl, "mutual"), 1);
    assert_int_equal(call_ok(cl, "mutual again"), 1);
    check_stats(cl, 0, 1, 1, 2);
    es_client_free(cl);

    o.tls_cert_file = o.tls_key_file = NULL;
    cl = client_for(c, &o);
    call_fails(cl, "no certificate", -EPROTO, err, sizeof err);
    expect_has(err, "TLS handshake with");
    expect_has(err, "certificate required");
    assert_int_equal(tls_peer_wait_handshakes(c->peer, 1, 1, 5000), 0);
    tls_peer_get_stats(c->peer, &ps);
    assert_int_equal(ps.accepted, 2);
    assert_int_equal(ps.failed, 1);
    es_client_free(cl);

    o.tls_cert_file = cert("other-client.pem");
    o.tls_key_file = cert("other-client.key");
    cl = client_for(c, &o);
    call_fails(cl, "a stranger", -EPROTO, err, sizeof err);
    expect_has(err, "unknown ca");
    tls_peer_get_stats(c->peer, &ps);
    assert_int_equal(ps.accepted, 3);
    es_client_free(cl);
    c->cl = NULL;

    tls_peer_stop(c->peer);
    po.max_version = TLS1_2_VERSION;
    peer_start(c, &po);
    o.tls_cert_file = o.tls_key_file = NULL;
    cl = client_for(c, &o);
    call_fails(cl, "no certificate, 1.2", -EPROTO, err, sizeof err);
    expect_has(err, "TLS handshake with");
    expect_has(err, "handshake failure");
    check_stats(cl, 0, 0, 0, 0);
}

/* 7. The peer closes idle connections with close_notify: they are not handed out again and
 * the next call opens a new session, whether the peer closes after its reply or later. */
static void test_close_notify_idle(void **state)
{
    struct ctx *c = begin(state, __func__);
    struct tls_peer_opts po = peer_opts();
    peer_start(c, &po);
    es_client_options o = tls_opts();
    o.pool_size = 1;
    es_client *cl = client_for(c, &o);

    assert_int_equal(call_ok(cl, "first"), 1);
    tls_peer_close_all(c->peer);
    assert_int_equal(call_ok(cl, "second"), 2);
    assert_int_equal(call_ok(cl, "third"), 2);
    check_stats(cl, 0, 1, 2, 3);
    es_client_free(cl);
    c->cl = NULL;

    tls_peer_stop(c->peer);
    po.close_after = 1;
    peer_start(c, &po);
    cl = client_for(c, &o);
    for (int i = 1; i <= 4; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "one-shot %d", i);
        assert_int_equal(call_ok(cl, msg), (uint64_t)i);
        if (tls_peer_wait_closed(c->peer, i, 5000) < 0)
            HS_FAIL("the peer did not close connection %d", i);
    }
    es_client_stats st;
    es_client_get_stats(cl, &st);
    assert_int_equal(st.sessions, 4);
    assert_int_equal(st.requests_processed, 4);
}

/* 8. A server that does not speak TLS: a plaintext echo answers the ClientHello with itself
 * (a clean -EPROTO at once); the real plaintext echosrv waits for a separator that never
 * comes (-ETIMEDOUT within connect_timeout_ms). Neither hangs. */
static void test_plaintext_server(void **state)
{
    struct ctx *c = begin(state, __func__);
    struct tls_peer_opts po = { .plain = 1 };
    peer_start(c, &po);
    es_client_options o = tls_opts();
    o.connect_timeout_ms = 5000;
    es_client *cl = client_for(c, &o);
    char err[512];
    long t0 = hs_now_ms();

    call_fails(cl, "hello", -EPROTO, err, sizeof err);
    expect_has(err, "TLS handshake with");
    if (hs_now_ms() - t0 > 3000)
        HS_FAIL("the handshake with a plaintext echo took %ld ms", hs_now_ms() - t0);
    es_client_free(cl);
    c->cl = NULL;

    struct hs_proc *srv = hs_ctx_start(&c->hs, "127.0.0.1:0", 1, 0, "");
    o.connect_timeout_ms = 300;
    c->cl = cl = es_client_new(hs_addr(srv, 0), &o, err, sizeof err);
    assert_non_null(cl);
    t0 = hs_now_ms();
    call_fails(cl, "hello", -ETIMEDOUT, err, sizeof err);
    long ms = hs_now_ms() - t0;
    expect_has(err, "TLS handshake with");
    expect_has(err, "not done within 300 ms");
    if (ms < 250 || ms > 3000)
        HS_FAIL("a 300 ms connect timeout took %ld ms", ms);
    check_stats(cl, 0, 0, 0, 0);
}

/* 9. The peer resets the connection in the middle of a large request: the request fails
 * cleanly (-EPIPE or -ECONNRESET) and the process lives, with SIGPIPE's default action.
 * (Linux reports the first write after a reset as ECONNRESET without a signal, so this
 * cannot catch a BIO that writes without MSG_NOSIGNAL; tls.c's BIO is the guarantee.) */
static void test_reset_mid_request(void **state)
{
    struct ctx *c = begin(state, __func__);
    struct tls_peer_opts po = peer_opts();
    po.reset_on_data = 1;
    peer_start(c, &po);
    es_client_options o = tls_opts();
    es_client *cl = client_for(c, &o);
    size_t big = 8u << 20;
    char *m = malloc(big);
    es_response *r = NULL;
    char err[512] = "";

    assert_non_null(m);
    hs_fill_pattern(m, big, 3);
    assert_true(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    int rc = es_client_call(cl, m, big, &r, err, sizeof err);
    free(m);
    signal(SIGPIPE, SIG_IGN);
    if (rc != -EPIPE && rc != -ECONNRESET)
        HS_FAIL("expected -EPIPE or -ECONNRESET, got %d (%s)", rc, err);
    expect_has(err, "closed the connection");
    check_stats(cl, 0, 0, 1, 0);
}

/* 10. Files that cannot be used, and option mistakes, fail es_client_new with a clear
 * message naming the file and OpenSSL's reason; a caller built against 1.0 (a smaller
 * struct) keeps working without TLS. */
static void test_bad_files_and_options(void **state)
{
    struct ctx *c = begin(state, __func__);
    char err[512], junk[512], missing[512];
    es_client_options o = tls_opts();

    snprintf(missing, sizeof missing, "%s/no-such.pem", c->hs.dir);
    assert_int_equal(hs_write_file(junk, sizeof junk, c->hs.dir, "junk.pem", "not a PEM\n"), 0);

    o.tls_ca_file = missing;
    assert_null(es_client_new("127.0.0.1:1", &o, err, sizeof err));
    expect_has(err, missing);
    expect_has(err, "No such file or directory");

    o.tls_ca_file = junk;
    assert_null(es_client_new("127.0.0.1:1", &o, err, sizeof err));
    expect_has(err, "cannot load the CA file");
    expect_has(err, junk);

    o = tls_opts();
    o.tls_cert_file = cert("client.pem");
    o.tls_key_file = missing;
    assert_null(es_client_new("127.0.0.1:1", &o, err, sizeof err));
    expect_has(err, "key file");
    expect_has(err, missing);

    o.tls_cert_file = junk;
    o.tls_key_file = cert("client.key");
    assert_null(es_client_new("127.0.0.1:1", &o, err, sizeof err));
    expect_has(err, "cannot load the certificate file");
    expect_has(err, junk);

    o.tls_cert_file = cert("client.pem");
    o.tls_key_file = junk;
    assert_null(es_client_new("127.0.0.1:1", &o, err, sizeof err));
    expect_has(err, "cannot load the key file");

    o.tls_key_file = cert("other-client.key");
    assert_null(es_client_new("127.0.0.1:1", &o, err, sizeof err));
    expect_has(err, "does not match");
    expect_has(err, "key values mismatch");

    o.tls_key_file = NULL;
    assert_null(es_client_new("127.0.0.1:1", &o, err, sizeof err));
    expect_has(err, "tls_cert_file and tls_key_file");

    o = tls_opts();
    o.tls = 0;
    assert_null(es_client_new("127.0.0.1:1", &o, err, sizeof err));
    expect_has(err, "tls is 0");

    /* A 1.0 caller: the struct ends at max_reply; what lies beyond is not read. */
    struct {
        es_client_options o;
        char pad[64];
    } old;
    memset(&old, 0xff, sizeof old);
    es_client_options_init(&old.o);
    old.o.size = offsetof(es_client_options, max_reply) + sizeof(size_t);
    memset((char *)&old.o + old.o.size, 0xff, sizeof old.o - old.o.size);
    struct hs_proc *srv = hs_ctx_start(&c->hs, "127.0.0.1:0", 1, 0, "");
    c->cl = es_client_new(hs_addr(srv, 0), &old.o, err, sizeof err);
    if (c->cl == NULL)
        HS_FAIL("a 1.0-sized options struct: %s", err);
    assert_int_equal(call_ok(c->cl, "plain as before"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_and_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_tickets_and_key_updates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls12, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_ca_and_insecure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mutual_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_notify_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plaintext_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_mid_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files_and_options, setup, teardown),
    };

    if (hs_process_init() < 0)
        fprintf(stderr, "# could not raise RLIMIT_NOFILE or ignore SIGPIPE\n");
    return cmocka_run_group_tests_name("client_tls_integration", tests, group_setup,
                                       group_teardown);
}
