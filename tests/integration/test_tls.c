/* test_tls.c - integration tests: echosrv's TLS listeners, with certificates made at test time. */
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
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "harness.h"

#define SEP "\r\n\r\n"
#define SEPLEN 4
#define IO_MS 5000
#define TEST_BUDGET_S 40

/* A TLS client connection made by the tests. */
struct tls_conn {
    int fd;
    SSL *ssl;
};

/* The certificates of mkcerts.sh, in the test's directory. */
static char *pki(struct hs_ctx *c, const char *name)
{
    static char path[4][600];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", c->dir, name);
    return p;
}

/* Makes the test PKI in the test's directory; fails the test if it cannot. */
static struct hs_ctx *begin(void **state, const char *name)
{
    struct hs_ctx *c = hs_ctx_begin(state, TEST_BUDGET_S, name);
    const char *src = hs_env_path("ABS_TOP_SRCDIR");
    assert_non_null(src);
    char script[512];
    snprintf(script, sizeof script, "%s/tests/integration/mkcerts.sh", src);
    const char *const argv[] = {"sh", script, c->dir, NULL};
    struct hs_cmd r;
    hs_cmd_run(&r, "/bin/sh", argv, NULL, 0, 30000);
    if (r.status != 0)
        fprintf(stderr, "# mkcerts.sh: %s\n", r.err);
    int st = r.status;
    hs_cmd_free(&r);
    assert_int_equal(st, 0);
    return c;
}

/* A client context: verifies the server against CA (NULL: no verification),
 * presents CERT/KEY when given, speaks TLS up to MAX_VERSION (0: any). */
static SSL_CTX *client_ctx(const char *ca, const char *cert, const char *key, int max_version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    if (ca != NULL) {
        assert_int_equal(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (cert != NULL) {
        assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, cert), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM), 1);
    }
    if (max_version != 0)
        assert_int_equal(SSL_CTX_set_max_proto_version(ctx, max_version), 1);
    return ctx;
}

/* OpenSSL's queued reasons as text (cleared). */
static const char *ssl_why(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(buf, len, "no OpenSSL reason (errno: %s)", strerror(errno));
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

/* Connects to ADDR and runs the handshake (the server's name checked as
 * 127.0.0.1 when verifying). Returns 0 with *t set, or -1 with the reason in
 * why (t->fd tracked, t->ssl freed by the caller in both cases). */
static int tls_open(struct hs_ctx *c, const char *addr, SSL_CTX *ctx, struct tls_conn *t,
                    char *why, size_t whylen)
{
    t->fd = hs_ctx_connect(c, addr, IO_MS);
    t->ssl = SSL_new(ctx);
    assert_non_null(t->ssl);
    SSL_set_fd(t->ssl, t->fd);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), "127.0.0.1");
    ERR_clear_error();
    if (SSL_connect(t->ssl) == 1)
        return 0;
    ssl_why(why, whylen);
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK) {
        size_t n = strlen(why);
        snprintf(why + n, whylen - n, " [%s]", X509_verify_cert_error_string(v));
    }
    return -1;
}

static void tls_close(struct hs_ctx *c, struct tls_conn *t)
{
    SSL_free(t->ssl);
    t->ssl = NULL;
    hs_ctx_untrack_close(c, t->fd);
}

/* Sends OUT while receiving INLEN bytes into IN, both at once (the socket
 * non-blocking), within TIMEOUT_MS. Returns 0, or -1: *how says "closed"
 * (close_notify or EOF), "timeout" or OpenSSL's reason. */
static int tls_exchange(struct tls_conn *t, const void *out, size_t outlen, void *in,
                        size_t inlen, int timeout_ms, char *how, size_t howlen)
{
    int fl = fcntl(t->fd, F_GETFL);
    fcntl(t->fd, F_SETFL, fl | O_NONBLOCK);
    size_t sent = 0, got = 0;
    long deadline = hs_now_ms() + timeout_ms;
    int rc = -1;
    snprintf(how, howlen, "timeout");
    while (sent < outlen || got < inlen) {
        short ev = 0;
        bool progress = false;
        if (sent < outlen) {
            size_t n = outlen - sent > 16384 ? 16384 : outlen - sent;
            int w = SSL_write(t->ssl, (const char *)out + sent, (int)n);
            if (w > 0) {
                sent += (size_t)w;
                progress = true;
            } else {
                int e = SSL_get_error(t->ssl, w);
                if (e == SSL_ERROR_WANT_WRITE)
                    ev |= POLLOUT;
                else if (e == SSL_ERROR_WANT_READ)
                    ev |= POLLIN;
                else {
                    snprintf(how, howlen, "write: %s", e == SSL_ERROR_ZERO_RETURN ? "closed" : "");
                    ssl_why(how + strlen(how), howlen - strlen(how));
                    goto out;
                }
            }
        }
        if (got < inlen) {
            int r = SSL_read(t->ssl, (char *)in + got, (int)(inlen - got));
            if (r > 0) {
                got += (size_t)r;
                progress = true;
            } else {
                int e = SSL_get_error(t->ssl, r);
                if (e == SSL_ERROR_WANT_READ)
                    ev |= POLLIN;
                else if (e == SSL_ERROR_WANT_WRITE)
                    ev |= POLLOUT;
                else if (e == SSL_ERROR_ZERO_RETURN ||
                         (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
                    snprintf(how, howlen, "closed after %zu of %zu bytes", got, inlen);
                    ERR_clear_error();
                    goto out;
                } else {
                    ssl_why(how, howlen);
                    goto out;
                }
            }
        }
        if (progress)
            continue;
        long left = deadline - hs_now_ms();
        if (left <= 0)
            goto out;
        struct pollfd p = {.fd = t->fd, .events = ev ? ev : POLLIN};
        poll(&p, 1, (int)left);
    }
    rc = 0;
out:
    fcntl(t->fd, F_SETFL, fl);
    return rc;
}

/* Sends MSG (with its separator) and expects it back. */
static void tls_ping(struct tls_conn *t, const char *msg)
{
    size_t len = strlen(msg);
    char in[256];
    char how[256];
    assert_true(len <= sizeof in);
    if (tls_exchange(t, msg, len, in, len, IO_MS, how, sizeof how) != 0)
        HS_FAIL("no echo of %zu bytes over TLS: %s", len, how);
    if (memcmp(in, msg, len) != 0)
        HS_FAIL("the echo over TLS differs from the message");
}

/* Waits for the end of T's stream: returns "close_notify", "eof", "reset",
 * "data" or "timeout". */
static const char *tls_wait_end(struct tls_conn *t, int timeout_ms)
{
    char buf[256];
    char how[256];
    int rc = tls_exchange(t, NULL, 0, buf, sizeof buf, timeout_ms, how, sizeof how);
    if (rc == 0)
        return "data";
    if (strncmp(how, "closed after 0 ", 15) == 0)
        return (SSL_get_shutdown(t->ssl) & SSL_RECEIVED_SHUTDOWN) ? "close_notify" : "eof";
    if (strncmp(how, "closed", 6) == 0)
        return "data";
    if (strcmp(how, "timeout") == 0)
        return "timeout";
    return "reset";
}

/* Writes the standard [server] plus EXTRA and starts echosrv (NLISTEN listeners). */
static struct hs_proc *start(struct hs_ctx *c, int nlisten, const char *extra_fmt, ...)
    __attribute__((format(printf, 3, 4)));
static struct hs_proc *start(struct hs_ctx *c, int nlisten, const char *extra_fmt, ...)
{
    char extra[4096];
    va_list ap;
    va_start(ap, extra_fmt);
    vsnprintf(extra, sizeof extra, extra_fmt, ap);
    va_end(ap);
    return hs_ctx_start(c, "127.0.0.1:0", nlisten, 0, extra);
}

/* 1. The echo protocol over TLS end to end: a message, 8000 pipelined in
 * one burst, 3 MiB (records, partial writes and backpressure), then QUIT ends
 * with the server's close_notify. */
static void test_tls_echo(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start(c, 1, "tls_cert = %s\ntls_key = %s\n", pki(c, "server.pem"),
                                pki(c, "server.key"));
    if (!hs_output_has(srv, ", TLS)"))
        HS_FAIL("the 'listening on' line does not say TLS");
    SSL_CTX *ctx = client_ctx(pki(c, "ca.pem"), NULL, NULL, 0);
    struct tls_conn t;
    char why[512];
    if (tls_open(c, hs_addr(srv, 0), ctx, &t, why, sizeof why) != 0)
        HS_FAIL("handshake with a client that trusts the CA failed: %s", why);
    if (SSL_version(t.ssl) < TLS1_2_VERSION)
        HS_FAIL("negotiated %s, below TLS 1.2", SSL_get_version(t.ssl));
    tls_ping(&t, "Hello!" SEP);

    /* Pipelined: 8000 messages written at once (more TLS records than one
     * read takes), 8000 replies in order. */
    size_t n = 8000, len = 0;
    char *out = malloc(n * 16), *in = malloc(n * 16);
    assert_non_null(out);
    assert_non_null(in);
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(out + len, "m%zu" SEP, i);
    char how[256];
    if (tls_exchange(&t, out, len, in, len, 10000, how, sizeof how) != 0)
        HS_FAIL("pipelined messages over TLS: %s", how);
    assert_true(hs_same_bytes("pipelined replies", out, in, len));
    free(out);
    free(in);

    /* Four full records and a short one waiting together: the server is
     * stopped while they arrive, so its first read fills its 64 KiB buffer
     * and leaves the short record inside OpenSSL, where epoll cannot see it. */
    n = (4 * 16384 + 1000) / 8;
    out = malloc(n * 8);
    in = malloc(n * 8);
    assert_non_null(out);
    assert_non_null(in);
    for (size_t i = 0; i < n; i++) {
        char m[9];
        snprintf(m, sizeof m, "%04zx" SEP, i & 0xffff);
        memcpy(out + i * 8, m, 8);
    }
    assert_int_equal(kill(hs_pid(srv), SIGSTOP), 0);
    int sent_ok = tls_exchange(&t, out, n * 8, in, 0, IO_MS, how, sizeof how);
    /* Loopback acknowledges for the stopped process: wait for the send
     * queue to empty, i.e. for every byte to be in the server's socket. */
    int unsent = -1;
    for (long end = hs_now_ms() + IO_MS; hs_now_ms() < end;) {
        if (ioctl(t.fd, SIOCOUTQ, &unsent) < 0 || unsent == 0)
            break;
        hs_sleep_ms(1);
    }
    assert_int_equal(kill(hs_pid(srv), SIGCONT), 0);
    if (sent_ok != 0)
        HS_FAIL("burst: %s", how);
    assert_int_equal(unsent, 0);
    if (tls_exchange(&t, NULL, 0, in, n * 8, 10000, how, sizeof how) != 0)
        HS_FAIL("replies to a burst of %zu bytes over TLS: %s", n * 8, how);
    assert_true(hs_same_bytes("burst replies", out, in, n * 8));
    free(out);
    free(in);

    /* 3 MiB: many records each way, the server's output under backpressure. */
    size_t big = (size_t)3 << 20;
    out = malloc(big + SEPLEN);
    in = malloc(big + SEPLEN);
    assert_non_null(out);
    assert_non_null(in);
    hs_fill_pattern(out, big, 7);
    memcpy(out + big, SEP, SEPLEN);
    if (tls_exchange(&t, out, big + SEPLEN, in, big + SEPLEN, 30000, how, sizeof how) != 0)
        HS_FAIL("3 MiB message over TLS: %s", how);
    assert_true(hs_same_bytes("3 MiB echo", out, in, big + SEPLEN));
    free(out);
    free(in);

    tls_ping(&t, "QUIT" SEP);
    const char *end = tls_wait_end(&t, IO_MS);
    if (strcmp(end, "close_notify") != 0)
        HS_FAIL("after QUIT the server ended the TLS stream with '%s', not close_notify", end);
    tls_close(c, &t);
    SSL_CTX_free(ctx);
}

/* 2. A client that does not trust the server's CA refuses the handshake;
 * the server logs the failure and serves the next client. */
static void test_tls_wrong_ca(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start(c, 1, "tls_cert = %s\ntls_key = %s\n", pki(c, "server.pem"),
                                pki(c, "server.key"));
    SSL_CTX *wrong = client_ctx(pki(c, "other-ca.pem"), NULL, NULL, 0);
    struct tls_conn t;
    char why[512];
    if (tls_open(c, hs_addr(srv, 0), wrong, &t, why, sizeof why) == 0)
        HS_FAIL("a client trusting another CA completed the handshake");
    if (strstr(why, "certificate verify failed") == NULL)
        HS_FAIL("the client failed for another reason than verification: %s", why);
    tls_close(c, &t);
    if (hs_wait_output(srv, "TLS handshake with 127.0.0.1:", IO_MS) != 0 ||
        hs_wait_output(srv, "failed", IO_MS) != 0) {
        hs_dump_output(srv, "no handshake failure logged");
        HS_FAIL("the server did not log the failed handshake");
    }
    SSL_CTX *good = client_ctx(pki(c, "ca.pem"), NULL, NULL, 0);
    if (tls_open(c, hs_addr(srv, 0), good, &t, why, sizeof why) != 0)
        HS_FAIL("a good client after the refused one: %s", why);
    tls_ping(&t, "still serving" SEP);
    tls_close(c, &t);
    SSL_CTX_free(wrong);
    SSL_CTX_free(good);
}

/* Expects a client with ctx to get no service from addr: the handshake or
 * the first exchange fails (TLS 1.3 clients learn of a refused certificate
 * only after their side of the handshake). */
static void expect_refused(struct hs_ctx *c, const char *addr, SSL_CTX *ctx, const char *what)
{
    struct tls_conn t;
    char why[512];
    if (tls_open(c, addr, ctx, &t, why, sizeof why) == 0) {
        char in[16];
        if (tls_exchange(&t, "x" SEP, 5, in, 5, IO_MS, why, sizeof why) == 0)
            HS_FAIL("%s was served", what);
        if (strcmp(why, "timeout") == 0)
            HS_FAIL("%s: the server neither served nor closed the connection", what);
    }
    tls_close(c, &t);
}

/* 3. Mutual TLS: tls_verify_client = on requires a certificate from tls_ca;
 * optional checks one if given. */
static void test_tls_mutual(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    char extra[2048];
    snprintf(extra, sizeof extra,
             "tls_cert = %s\ntls_key = %s\ntls_ca = %s\n"
             "[listener required]\nbind = 127.0.0.1:0\ntls_verify_client = on\n"
             "[listener optional]\nbind = 127.0.0.1:0\ntls_verify_client = optional\n",
             pki(c, "server.pem"), pki(c, "server.key"), pki(c, "ca.pem"));
    /* [listener] sections own the binds: no bind in [server]. */
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    assert_non_null(pd);
    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "mtls.ini",
                                   "[server]\nthreads = 2\nplugin_dir = %s\n%s", pd, extra), 0);
    struct hs_proc *srv = hs_ctx_start_conf(c, 2, 0);
    const char *req = hs_addr(srv, 0), *opt = hs_addr(srv, 1);
    SSL_CTX *with = client_ctx(pki(c, "ca.pem"), pki(c, "client.pem"), pki(c, "client.key"), 0);
    SSL_CTX *without = client_ctx(pki(c, "ca.pem"), NULL, NULL, 0);
    SSL_CTX *stranger = client_ctx(pki(c, "ca.pem"), pki(c, "other-client.pem"),
                                   pki(c, "other-client.key"), 0);
    struct tls_conn t;
    char why[512];

    if (tls_open(c, req, with, &t, why, sizeof why) != 0)
        HS_FAIL("a client with a certificate from tls_ca: %s", why);
    tls_ping(&t, "with a certificate" SEP);
    tls_close(c, &t);
    expect_refused(c, req, without, "a client without a certificate (tls_verify_client = on)");
    if (hs_wait_output(srv, "did not return a certificate", IO_MS) != 0) {
        hs_dump_output(srv, "no reason logged");
        HS_FAIL("the server did not log that the client sent no certificate");
    }
    expect_refused(c, req, stranger, "a client whose certificate another CA signed");
    if (hs_wait_output(srv, "certificate verify failed", IO_MS) != 0) {
        hs_dump_output(srv, "no reason logged");
        HS_FAIL("the server did not log the failed verification");
    }

    if (tls_open(c, opt, without, &t, why, sizeof why) != 0)
        HS_FAIL("optional: a client without a certificate: %s", why);
    tls_ping(&t, "no certificate, optional" SEP);
    tls_close(c, &t);
    if (tls_open(c, opt, with, &t, why, sizeof why) != 0)
        HS_FAIL("optional: a client with a good certificate: %s", why);
    tls_ping(&t, "good certificate, optional" SEP);
    tls_close(c, &t);
    expect_refused(c, opt, stranger, "optional: a client with a certificate from another CA");
    SSL_CTX_free(with);
    SSL_CTX_free(without);
    SSL_CTX_free(stranger);
}

/* 4. A plaintext client on a TLS port gets a clean close (FIN, no reset,
 * no echo) and the server carries on. */
static void test_tls_plaintext_client(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start(c, 1, "tls_cert = %s\ntls_key = %s\n", pki(c, "server.pem"),
                                pki(c, "server.key"));
    for (int i = 0; i < 3; i++) {
        int fd = hs_ctx_connect(c, hs_addr(srv, 0), IO_MS);
        assert_int_equal(hs_send_all(fd, "hello" SEP, 9, IO_MS), 0);
        if (i > 0) {
            /* More than OpenSSL reads: a server that closed at once
             * would leave it unread and reset the connection. */
            static char more[64 * 1024];
            memset(more, 'x', sizeof more);
            assert_int_equal(hs_send_all(fd, more, sizeof more, IO_MS), 0);
        }
        /* Read to the end: an alert at most, then EOF, never a reset. */
        char buf[4096];
        size_t total = 0;
        long deadline = hs_now_ms() + IO_MS;
        for (;;) {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n == 0)
                break;
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if ((errno == EAGAIN || errno == EWOULDBLOCK) && hs_now_ms() < deadline)
                    continue;
                HS_FAIL("plaintext client: %s instead of a clean close",
                        errno == ECONNRESET ? "a reset" : strerror(errno));
            }
            total += (size_t)n;
            if (memmem(buf, (size_t)n, "hello", 5) != NULL)
                HS_FAIL("the server echoed plaintext on a TLS listener");
        }
        if (total > 64)
            HS_FAIL("%zu bytes answered a plaintext client (an alert is a few bytes)", total);
        hs_ctx_untrack_close(c, fd);
    }
    if (hs_wait_output(srv, "wrong version number", IO_MS) != 0 &&
        hs_wait_output(srv, "http request", 10) != 0) {
        hs_dump_output(srv, "no reason logged");
        HS_FAIL("the server did not log why the handshake failed");
    }
    SSL_CTX *good = client_ctx(pki(c, "ca.pem"), NULL, NULL, 0);
    struct tls_conn t;
    char why[512];
    if (tls_open(c, hs_addr(srv, 0), good, &t, why, sizeof why) != 0)
        HS_FAIL("a TLS client after the plaintext ones: %s", why);
    tls_ping(&t, "after plaintext" SEP);
    tls_close(c, &t);
    SSL_CTX_free(good);
}

/* 5. tls_handshake_timeout closes connections that do not complete a
 * handshake (silent, or a ClientHello cut short), and only those. */
static void test_tls_handshake_timeout(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start(c, 1, "tls_cert = %s\ntls_key = %s\ntls_handshake_timeout = 1\n",
                                pki(c, "server.pem"), pki(c, "server.key"));
    SSL_CTX *good = client_ctx(pki(c, "ca.pem"), NULL, NULL, 0);
    struct tls_conn t;
    char why[512];
    if (tls_open(c, hs_addr(srv, 0), good, &t, why, sizeof why) != 0)
        HS_FAIL("handshake: %s", why);
    long t0 = hs_now_ms();
    int silent = hs_ctx_connect(c, hs_addr(srv, 0), IO_MS);
    int partial = hs_ctx_connect(c, hs_addr(srv, 0), IO_MS);
    /* The first bytes of a TLS record header: a handshake, then nothing. */
    assert_int_equal(hs_send_all(partial, "\x16\x03\x01\x02", 4, IO_MS), 0);
    if (hs_wait_closed(silent, 6000) != 0)
        HS_FAIL("a silent connection outlived tls_handshake_timeout = 1 by 5 s");
    if (hs_wait_closed(partial, 6000) != 0)
        HS_FAIL("a cut ClientHello outlived tls_handshake_timeout = 1 by 5 s");
    long took = hs_now_ms() - t0;
    if (took < 900)
        HS_FAIL("closed after %ld ms, before tls_handshake_timeout = 1 s", took);
    /* An established TLS connection is no longer subject to it. */
    tls_ping(&t, "established" SEP);
    tls_close(c, &t);
    if (hs_wait_output(srv, "no handshake within 1 s", IO_MS) != 0)
        HS_FAIL("the timeout was not logged");
    SSL_CTX_free(good);
}

/* 6. tls_min_version = 1.3 refuses a TLS 1.2 client; the default (1.2)
 * accepts it. */
static void test_tls_min_version(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    assert_non_null(pd);
    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "ver.ini",
                                   "[server]\nthreads = 1\nplugin_dir = %s\n"
                                   "tls_cert = server.pem\ntls_key = server.key\n"
                                   "[listener modern]\nbind = 127.0.0.1:0\ntls_min_version = 1.3\n"
                                   "[listener default]\nbind = 127.0.0.1:0\n", pd), 0);
    struct hs_proc *srv = hs_ctx_start_conf(c, 2, 0);
    SSL_CTX *old = client_ctx(pki(c, "ca.pem"), NULL, NULL, TLS1_2_VERSION);
    struct tls_conn t;
    char why[512];
    if (tls_open(c, hs_addr(srv, 0), old, &t, why, sizeof why) == 0)
        HS_FAIL("a TLS 1.2 client got through tls_min_version = 1.3");
    tls_close(c, &t);
    if (hs_wait_output(srv, "unsupported protocol", IO_MS) != 0) {
        hs_dump_output(srv, "no reason logged");
        HS_FAIL("the refused version was not logged");
    }
    if (tls_open(c, hs_addr(srv, 1), old, &t, why, sizeof why) != 0)
        HS_FAIL("a TLS 1.2 client on the default listener: %s", why);
    if (SSL_version(t.ssl) != TLS1_2_VERSION)
        HS_FAIL("negotiated %s with a TLS 1.2 client", SSL_get_version(t.ssl));
    tls_ping(&t, "TLS 1.2" SEP);
    tls_close(c, &t);
    SSL_CTX_free(old);
}

/* 7. [server]'s TLS settings are the listeners' defaults; `tls_cert =`
 * (empty) makes a listener plain TCP. */
static void test_tls_mixed_listeners(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    assert_non_null(pd);
    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "mixed.ini",
                                   "[server]\nthreads = 2\nplugin_dir = %s\n"
                                   "tls_cert = server.pem\ntls_key = server.key\n"
                                   "[listener secure]\nbind = 127.0.0.1:0\n"
                                   "[listener plain]\nbind = 127.0.0.1:0\ntls_cert =\n"
                                   "[listener raw]\nbind = 127.0.0.1:0\nplugin = raw\n"
                                   "max_message = 64K\n", pd), 0);
    struct hs_proc *srv = hs_ctx_start_conf(c, 3, 0);
    SSL_CTX *good = client_ctx(pki(c, "ca.pem"), NULL, NULL, 0);
    struct tls_conn t;
    char why[512];
    if (tls_open(c, hs_addr(srv, 0), good, &t, why, sizeof why) != 0)
        HS_FAIL("listener secure: %s", why);
    tls_ping(&t, "secure" SEP);
    tls_close(c, &t);
    int fd = hs_ctx_connect(c, hs_addr(srv, 1), IO_MS);
    assert_int_equal(hs_ping(fd, "plain" SEP, IO_MS), 0);
    /* The raw plugin over TLS: every byte back as it comes. */
    if (tls_open(c, hs_addr(srv, 2), good, &t, why, sizeof why) != 0)
        HS_FAIL("listener raw: %s", why);
    char in[8], how[128];
    if (tls_exchange(&t, "abc", 3, in, 3, IO_MS, how, sizeof how) != 0 || memcmp(in, "abc", 3))
        HS_FAIL("raw over TLS: %s", how);
    tls_close(c, &t);
    SSL_CTX_free(good);
}

/* Expects `echosrv -t` on TEXT to fail with exit 1 and output holding
 * "NAME.ini:LINE:" and NEEDLE. */
static void check_bad(struct hs_ctx *c, const char *name, int line, const char *needle,
                      const char *text)
{
    char path[600], want[700];
    assert_int_equal(hs_write_file(path, sizeof path, c->dir, name, "%s", text), 0);
    const char *args[] = {"-t", "-c", path, NULL};
    char *out = NULL;
    int st = hs_run(args, 10000, &out);
    snprintf(want, sizeof want, "%s:%d:", path, line);
    bool ok = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 1 && out != NULL &&
              strstr(out, want) != NULL && strstr(out, needle) != NULL;
    if (!ok) {
        fprintf(stderr, "# %s: want exit 1 with '%s' and '%s'; got status %d and:\n", name, want,
                needle, st);
        hs_dump_lines("output", out ? out : "", out ? strlen(out) : 0);
    }
    free(out);
    assert_true(ok);
}

/* 8. TLS configuration errors are refused before serving, at their line. */
static void test_tls_config_errors(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    char text[2048];
    assert_non_null(pd);
#define HEAD "[server]\nbind = 127.0.0.1:0\nplugin_dir = %s\n"
    snprintf(text, sizeof text, HEAD "tls_cert = nosuch.pem\ntls_key = server.key\n", pd);
    check_bad(c, "missing_cert.ini", 4, "cannot load the certificate", text);
    snprintf(text, sizeof text, HEAD "tls_cert = server.pem\ntls_key = client.key\n", pd);
    check_bad(c, "mismatch.ini", 5, "does not match the certificate", text);
    snprintf(text, sizeof text, HEAD "tls_cert = server.pem\ntls_key = ca.pem\n", pd);
    check_bad(c, "not_a_key.ini", 5, "cannot load the private key", text);
    snprintf(text, sizeof text, HEAD "tls_cert = server.pem\n", pd);
    check_bad(c, "no_key.ini", 4, "tls_cert needs tls_key", text);
    snprintf(text, sizeof text, HEAD "tls_key = server.key\n", pd);
    check_bad(c, "no_cert.ini", 4, "no tls_cert", text);
    snprintf(text, sizeof text,
             HEAD "tls_cert = server.pem\ntls_key = server.key\ntls_verify_client = on\n", pd);
    check_bad(c, "no_ca.ini", 6, "tls_verify_client needs tls_ca", text);
    snprintf(text, sizeof text, HEAD "tls_cert = server.pem\ntls_key = server.key\ntls_ca = ca.pem\n",
             pd);
    check_bad(c, "ca_unused.ini", 6, "tls_verify_client is off", text);
    snprintf(text, sizeof text,
             HEAD "tls_cert = server.pem\ntls_key = server.key\ntls_ca = nosuch.pem\n"
                  "tls_verify_client = optional\n", pd);
    check_bad(c, "missing_ca.ini", 6, "cannot load a CA certificate", text);
    snprintf(text, sizeof text, HEAD "tls_verify_client = maybe\n", pd);
    check_bad(c, "bad_verify.ini", 4, "not one of off, optional, on", text);
    snprintf(text, sizeof text, HEAD "tls_min_version = 1.1\n", pd);
    check_bad(c, "old_version.ini", 4, "is not 1.2 or 1.3", text);
    snprintf(text, sizeof text,
             HEAD "tls_cert = server.pem\ntls_key = server.key\ntls_ciphers = NOPE-NOTHING\n", pd);
    check_bad(c, "bad_ciphers.ini", 6, "selects no cipher", text);
    snprintf(text, sizeof text, HEAD "tls_handshake_timeout = 0\n", pd);
    check_bad(c, "bad_timeout.ini", 4, "tls_handshake_timeout", text);
    snprintf(text, sizeof text, HEAD "tls_cert = server.pem\ntls_cert = server.pem\n", pd);
    check_bad(c, "dup.ini", 5, "duplicate key 'tls_cert'", text);
#undef HEAD
    /* A listener's own key without a certificate anywhere. */
    snprintf(text, sizeof text,
             "[server]\nplugin_dir = %s\n[listener a]\nbind = 127.0.0.1:0\n"
             "tls_verify_client = on\n", pd);
    check_bad(c, "listener_no_cert.ini", 5, "listener a: tls_verify_client is set", text);

    /* -t names the TLS listeners in its summary. */
    char path[600];
    assert_int_equal(hs_write_file(path, sizeof path, c->dir, "good.ini",
                                   "[server]\nbind = 127.0.0.1:0\nplugin_dir = %s\n"
                                   "tls_cert = server.pem\ntls_key = server.key\n"
                                   "tls_ca = ca.pem\ntls_verify_client = on\n", pd), 0);
    const char *args[] = {"-t", "-c", path, NULL};
    char *out = NULL;
    int st = hs_run(args, 10000, &out);
    bool ok = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && out != NULL &&
              strstr(out, "; TLS ") != NULL && strstr(out, "client certificates required");
    if (!ok)
        hs_dump_lines("echosrv -t", out ? out : "", out ? strlen(out) : 0);
    free(out);
    assert_true(ok);
}

/* 9. SIGTERM with TLS connections: a handshake in progress is dropped, a
 * message being received is answered, then close_notify, exit 0. */
static void test_tls_sigterm(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start(c, 1, "tls_cert = %s\ntls_key = %s\n", pki(c, "server.pem"),
                                pki(c, "server.key"));
    SSL_CTX *good = client_ctx(pki(c, "ca.pem"), NULL, NULL, 0);
    struct tls_conn t;
    char why[512], how[256], in[64];
    if (tls_open(c, hs_addr(srv, 0), good, &t, why, sizeof why) != 0)
        HS_FAIL("handshake: %s", why);
    tls_ping(&t, "first" SEP);
    int pending = hs_ctx_connect(c, hs_addr(srv, 0), IO_MS);
    /* Half a message, then the signal, then the rest. */
    if (tls_exchange(&t, "half a ", 7, in, 0, IO_MS, how, sizeof how) != 0)
        HS_FAIL("send: %s", how);
    assert_int_equal(kill(hs_pid(srv), SIGTERM), 0);
    assert_int_equal(hs_wait_output(srv, "shutting down", IO_MS), 0);
    if (tls_exchange(&t, "message" SEP, 11, in, 18, IO_MS, how, sizeof how) != 0)
        HS_FAIL("the message in flight at SIGTERM was not answered: %s", how);
    assert_memory_equal(in, "half a message" SEP, 18);
    const char *end = tls_wait_end(&t, IO_MS);
    if (strcmp(end, "close_notify") != 0)
        HS_FAIL("the server ended the TLS stream with '%s', not close_notify", end);
    if (hs_wait_closed(pending, IO_MS) != 0)
        HS_FAIL("a connection still in its handshake was not closed at shutdown");
    int st = hs_wait_exit(srv, 10000);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        HS_FAIL("echosrv did not exit 0 after SIGTERM (status %d)", st);
    tls_close(c, &t);
    SSL_CTX_free(good);
}

/* 10. The project's own client over TLS end to end: echocli verifies
 * echosrv's certificate, presents its own under mutual TLS, and its bench
 * drives a TLS listener without errors. */
static void test_tls_echocli(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *cli = hs_env_path("ECHOCLI");
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    assert_non_null(cli);
    assert_non_null(pd);
    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "cli.ini",
                                   "[server]\nthreads = 2\nplugin_dir = %s\n"
                                   "tls_cert = server.pem\ntls_key = server.key\n"
                                   "[listener tls]\nbind = 127.0.0.1:0\n"
                                   "[listener mutual]\nbind = 127.0.0.1:0\ntls_ca = ca.pem\n"
                                   "tls_verify_client = on\n", pd), 0);
    struct hs_proc *srv = hs_ctx_start_conf(c, 2, 0);
    char tls_addr[HS_ADDR_MAX], mutual[HS_ADDR_MAX];
    snprintf(tls_addr, sizeof tls_addr, "%s", hs_addr(srv, 0));
    snprintf(mutual, sizeof mutual, "%s", hs_addr(srv, 1));
    struct hs_cmd r;

    const char *const ok[] = {"echocli", "-a", tls_addr, "--cacert", pki(c, "ca.pem"),
                              "hello", "over TLS", NULL};
    hs_cmd_run(&r, cli, ok, NULL, 0, 20000);
    if (r.status != 0 || strcmp(r.out, "hello\nover TLS\n") != 0)
        HS_FAIL("echocli --cacert: status %d, out '%s', err '%s'", r.status, r.out, r.err);
    hs_cmd_free(&r);

    const char *const wrong[] = {"echocli", "-a", tls_addr, "--cacert", pki(c, "other-ca.pem"),
                                 "hello", NULL};
    hs_cmd_run(&r, cli, wrong, NULL, 0, 20000);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 1 ||
        strstr(r.err, "certificate verify failed") == NULL)
        HS_FAIL("echocli with another CA: status %d, err '%s'", r.status, r.err);
    hs_cmd_free(&r);

    const char *const mtls[] = {"echocli", "-a", mutual, "--cacert", pki(c, "ca.pem"),
                                "--cert", pki(c, "client.pem"), "--key", pki(c, "client.key"),
                                "mutual", NULL};
    hs_cmd_run(&r, cli, mtls, NULL, 0, 20000);
    if (r.status != 0 || strcmp(r.out, "mutual\n") != 0)
        HS_FAIL("echocli --cert/--key under mutual TLS: status %d, out '%s', err '%s'", r.status,
                r.out, r.err);
    hs_cmd_free(&r);

    const char *const nocert[] = {"echocli", "-a", mutual, "--cacert", pki(c, "ca.pem"),
                                  "no certificate", NULL};
    hs_cmd_run(&r, cli, nocert, NULL, 0, 20000);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 1)
        HS_FAIL("echocli without a certificate under mutual TLS: status %d, out '%s'", r.status,
                r.out);
    hs_cmd_free(&r);

    const char *const bench[] = {"echocli", "bench", "-a", tls_addr, "--cacert",
                                 pki(c, "ca.pem"), "-c", "8", "-n", "4000", "-s", "100",
                                 "-P", "4", "--json", NULL};
    hs_cmd_run(&r, cli, bench, NULL, 0, 60000);
    if (r.status != 0 || strstr(r.out, "\"errors\":0") == NULL ||
        strstr(r.out, "\"tls\":true") == NULL)
        HS_FAIL("echocli bench over TLS: status %d, out '%s', err '%s'", r.status, r.out, r.err);
    hs_cmd_free(&r);

    /* Both workers verifying client certificates at once. */
    const char *const mbench[] = {"echocli", "bench", "-a", mutual, "--cacert", pki(c, "ca.pem"),
                                  "--cert", pki(c, "client.pem"), "--key", pki(c, "client.key"),
                                  "-c", "16", "-T", "2", "-n", "2000", "-s", "64", "--json", NULL};
    hs_cmd_run(&r, cli, mbench, NULL, 0, 60000);
    if (r.status != 0 || strstr(r.out, "\"errors\":0") == NULL)
        HS_FAIL("echocli bench over mutual TLS: status %d, out '%s', err '%s'", r.status, r.out,
                r.err);
    hs_cmd_free(&r);
}

/* 11. proxy_protocol on a TLS listener: the PROXY header comes first, in clear, then the
 * handshake; the client it names is the one the TLS log lines show. A ClientHello without
 * a header is refused as not a PROXY header. */
static void test_tls_proxy_protocol(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start(c, 1, "tls_cert = %s\ntls_key = %s\nproxy_protocol = on\n"
                                "proxy_allow = 127.0.0.1\n",
                                pki(c, "server.pem"), pki(c, "server.key"));
    SSL_CTX *ctx = client_ctx(pki(c, "ca.pem"), NULL, NULL, 0);
    const char *hdr = "PROXY TCP4 198.51.100.9 127.0.0.1 4443 443\r\n";

    /* The header, then the handshake over the same connection. */
    struct tls_conn t;
    t.fd = hs_ctx_connect(c, hs_addr(srv, 0), IO_MS);
    assert_int_equal(hs_send_all(t.fd, hdr, strlen(hdr), IO_MS), 0);
    t.ssl = SSL_new(ctx);
    assert_non_null(t.ssl);
    SSL_set_fd(t.ssl, t.fd);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t.ssl), "127.0.0.1");
    char why[512];
    if (SSL_connect(t.ssl) != 1)
        HS_FAIL("handshake after a PROXY header failed: %s", ssl_why(why, sizeof why));
    tls_ping(&t, "behind a proxy" SEP);
    tls_close(c, &t);

    /* Plaintext after the header: the failed handshake is logged with the real client. */
    int fd = hs_ctx_connect(c, hs_addr(srv, 0), IO_MS);
    const char *hdr2 = "PROXY TCP4 198.51.100.10 127.0.0.1 5555 443\r\nhello" SEP;
    assert_int_equal(hs_send_all(fd, hdr2, strlen(hdr2), IO_MS), 0);
    if (hs_wait_closed(fd, IO_MS) != 0)
        HS_FAIL("plaintext after the header: not closed");
    if (hs_wait_output(srv, "TLS handshake with 198.51.100.10:5555 on ", IO_MS) != 0) {
        hs_dump_output(srv, "echosrv's output");
        HS_FAIL("the failed handshake is not logged with the client the header names");
    }

    /* A ClientHello where the header should be. */
    t.fd = hs_ctx_connect(c, hs_addr(srv, 0), IO_MS);
    t.ssl = SSL_new(ctx);
    assert_non_null(t.ssl);
    SSL_set_fd(t.ssl, t.fd);
    if (SSL_connect(t.ssl) == 1)
        HS_FAIL("a handshake without a PROXY header succeeded");
    ERR_clear_error();
    tls_close(c, &t);
    if (hs_wait_output(srv, "not a PROXY header (first byte 0x16)", IO_MS) != 0)
        HS_FAIL("no log line about the ClientHello without a header");
    SSL_CTX_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        HS_CTX_TEST(test_tls_echo),
        HS_CTX_TEST(test_tls_wrong_ca),
        HS_CTX_TEST(test_tls_mutual),
        HS_CTX_TEST(test_tls_plaintext_client),
        HS_CTX_TEST(test_tls_handshake_timeout),
        HS_CTX_TEST(test_tls_min_version),
        HS_CTX_TEST(test_tls_mixed_listeners),
        HS_CTX_TEST(test_tls_config_errors),
        HS_CTX_TEST(test_tls_sigterm),
        HS_CTX_TEST(test_tls_echocli),
        HS_CTX_TEST(test_tls_proxy_protocol),
    };

    if (hs_process_init() < 0)
        fprintf(stderr, "# could not raise RLIMIT_NOFILE or ignore SIGPIPE\n");
    return cmocka_run_group_tests_name("echosrv_tls", tests, NULL, NULL);
}
