/* test_proxy.c - integration tests: listeners with proxy_protocol, fed hand-written PROXY headers. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define SEP "\r\n\r\n"
#define IO_MS 5000
#define TEST_BUDGET_S 30

static const uint8_t V2_SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static struct hs_ctx *begin(void **state, const char *name)
{
    return hs_ctx_begin(state, TEST_BUDGET_S, name);
}

/* Writes c->conf: [server] with debug logs and the echo plugin, then the formatted text
 * (more [server] keys, then sections), and starts echosrv with NLISTEN listeners. */
static struct hs_proc *start(struct hs_ctx *c, int nlisten, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static struct hs_proc *start(struct hs_ctx *c, int nlisten, const char *fmt, ...)
{
    char extra[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(extra, sizeof extra, fmt, ap);
    va_end(ap);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    assert_non_null(pd);
    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "proxy.ini",
                                   "[server]\nthreads = 2\nplugin_dir = %s\nlog_level = debug\n%s",
                                   pd, extra), 0);
    return hs_ctx_start_conf(c, nlisten, 0);
}

/* The local "IP:PORT" of fd. */
static void local_name(int fd, char *out, size_t cap)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    char ip[INET_ADDRSTRLEN];
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    assert_non_null(inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof ip));
    snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(sin.sin_port));
}

/* A v2 PROXY header over TCP/IPv4 (cmd 1) or LOCAL (cmd 0) into out; returns its length. */
static size_t v2_tcp4(uint8_t *out, int cmd, const char *src, unsigned sport, const char *dst,
                      unsigned dport)
{
    memcpy(out, V2_SIG, 12);
    out[12] = (uint8_t)(0x20 | cmd);
    out[13] = cmd ? 0x11 : 0x00;
    size_t alen = cmd ? 12 : 0;
    out[14] = 0;
    out[15] = (uint8_t)alen;
    if (cmd) {
        assert_int_equal(inet_pton(AF_INET, src, out + 16), 1);
        assert_int_equal(inet_pton(AF_INET, dst, out + 20), 1);
        out[24] = (uint8_t)(sport >> 8), out[25] = (uint8_t)sport;
        out[26] = (uint8_t)(dport >> 8), out[27] = (uint8_t)dport;
    }
    return 16 + alen;
}

/* A v2 PROXY header over TCP/IPv6 with one TLV (PP2_TYPE_NOOP) into out. */
static size_t v2_tcp6(uint8_t *out, const char *src, unsigned sport, const char *dst,
                      unsigned dport)
{
    memcpy(out, V2_SIG, 12);
    out[12] = 0x21;
    out[13] = 0x21;
    size_t alen = 36 + 3 + 4;
    out[14] = 0;
    out[15] = (uint8_t)alen;
    assert_int_equal(inet_pton(AF_INET6, src, out + 16), 1);
    assert_int_equal(inet_pton(AF_INET6, dst, out + 32), 1);
    out[48] = (uint8_t)(sport >> 8), out[49] = (uint8_t)sport;
    out[50] = (uint8_t)(dport >> 8), out[51] = (uint8_t)dport;
    memcpy(out + 52, "\x04\x00\x04PAD!", 7);
    return 16 + alen;
}

/* Sends "?" on fd and expects the peer plugin's answer WANT + "\n". */
static void expect_peer(int fd, const char *want)
{
    char buf[256];
    assert_int_equal(hs_send_all(fd, "?", 1, IO_MS), 0);
    ssize_t n = hs_recv_until(fd, "\n", 1, buf, sizeof buf - 1, IO_MS);
    if (n <= 0 || (size_t)n >= sizeof buf)
        HS_FAIL("no answer from the peer plugin (want %s): %s", want, strerror(errno));
    buf[(size_t)n - 1] = '\0';
    if (strcmp(buf, want) != 0)
        HS_FAIL("the plugin's peer is '%s', expected '%s'", buf, want);
}

/* Expects fd to be closed by the server without a reply. */
static void expect_closed(int fd, const char *what)
{
    int rc = hs_wait_closed(fd, IO_MS);
    if (rc == 1)
        HS_FAIL("%s: got a reply instead of a close", what);
    if (rc != 0)
        HS_FAIL("%s: not closed within %d ms", what, IO_MS);
}

static void expect_log(struct hs_proc *srv, const char *needle)
{
    if (hs_wait_output(srv, needle, IO_MS) != 0) {
        hs_dump_output(srv, "echosrv's output");
        HS_FAIL("no log line containing '%s'", needle);
    }
}

/* 1. The client a header names is the connection's peer: the plugin's peer service and the
 * logs show it, for v1 and v2 (IPv4, IPv6 with a TLV), in one segment with the first message
 * or byte by byte; LOCAL and UNKNOWN keep the proxy's own address. A listener with
 * proxy_protocol = off beside them takes plain clients. */
static void test_proxy_peer(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *tpd = hs_env_path("ES_TEST_PLUGIN_DIR");
    assert_non_null(tpd);
    struct hs_proc *srv = start(c, 3,
                                "proxy_protocol = on\nproxy_allow = 127.0.0.1\n"
                                "[listener peer]\nbind = 127.0.0.1:0\nplugin = %s/peer.so\n"
                                "[listener echo]\nbind = 127.0.0.1:0\n"
                                "[listener plain]\nbind = 127.0.0.1:0\nproxy_protocol = off\n",
                                tpd);
    char peer[HS_ADDR_MAX], echo[HS_ADDR_MAX], plain[HS_ADDR_MAX], me[64];
    hs_ctx_listener_addr(srv, "peer", peer, sizeof peer);
    hs_ctx_listener_addr(srv, "echo", echo, sizeof echo);
    hs_ctx_listener_addr(srv, "plain", plain, sizeof plain);

    /* v1, with the first request in the same segment. */
    int fd = hs_ctx_connect(c, peer, IO_MS);
    const char *v1 = "PROXY TCP4 203.0.113.7 127.0.0.1 4321 80\r\n?";
    assert_int_equal(hs_send_all(fd, v1, strlen(v1) - 1, IO_MS), 0);
    expect_peer(fd, "203.0.113.7:4321");
    expect_peer(fd, "203.0.113.7:4321");

    /* v2 over IPv6 with a TLV, byte by byte. */
    uint8_t h[128];
    size_t hl = v2_tcp6(h, "2001:db8::5", 999, "::1", 8060);
    fd = hs_ctx_connect(c, peer, IO_MS);
    for (size_t i = 0; i < hl; i++)
        assert_int_equal(hs_send_all(fd, h + i, 1, IO_MS), 0);
    expect_peer(fd, "[2001:db8::5]:999");

    /* v2 over IPv4. */
    hl = v2_tcp4(h, 1, "198.51.100.20", 65535, "10.0.0.1", 1);
    fd = hs_ctx_connect(c, peer, IO_MS);
    assert_int_equal(hs_send_all(fd, h, hl, IO_MS), 0);
    expect_peer(fd, "198.51.100.20:65535");

    /* LOCAL (a proxy's health check) and v1 UNKNOWN: the proxy's own address. */
    hl = v2_tcp4(h, 0, NULL, 0, NULL, 0);
    fd = hs_ctx_connect(c, peer, IO_MS);
    assert_int_equal(hs_send_all(fd, h, hl, IO_MS), 0);
    local_name(fd, me, sizeof me);
    expect_peer(fd, me);
    fd = hs_ctx_connect(c, peer, IO_MS);
    assert_int_equal(hs_send_all(fd, "PROXY UNKNOWN\r\n", 15, IO_MS), 0);
    local_name(fd, me, sizeof me);
    expect_peer(fd, me);

    /* The echo plugin behind a header; the log names the client. */
    fd = hs_ctx_connect(c, echo, IO_MS);
    const char *v1e = "PROXY TCP4 203.0.113.8 127.0.0.1 1234 80\r\n";
    assert_int_equal(hs_send_all(fd, v1e, strlen(v1e), IO_MS), 0);
    assert_int_equal(hs_ping(fd, "hello" SEP, IO_MS), 0);
    expect_log(srv, "PROXY v1 header from 127.0.0.1:");
    expect_log(srv, "client 203.0.113.8:1234");
    expect_log(srv, "connection from 203.0.113.8:1234 on ");

    /* proxy_protocol = off: no header expected. */
    fd = hs_ctx_connect(c, plain, IO_MS);
    assert_int_equal(hs_ping(fd, "plain" SEP, IO_MS), 0);
}

/* 2. Only peers in proxy_allow may speak to a proxy_protocol listener: others are refused at
 * accept. allow/deny do not apply to the proxy itself (here deny covers it). */
static void test_proxy_allow(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start(c, 1,
                                "bind = 127.0.0.1:0\nproxy_protocol = on\n"
                                "proxy_allow = 127.0.0.2\ndeny = 127.0.0.0/8\n");
    const char *addr = hs_addr(srv, 0);
    const char *v1 = "PROXY TCP4 198.51.100.1 127.0.0.1 1000 80\r\n";

    int fd = hs_ctx_connect_from(c, "127.0.0.1", addr, IO_MS);
    hs_send_all(fd, v1, strlen(v1), IO_MS); /* may fail: the server closes at accept */
    hs_send_all(fd, "x" SEP, 5, IO_MS);
    expect_closed(fd, "a proxy outside proxy_allow");
    expect_log(srv, "not allowed by listener default (proxy_allow)");
    expect_log(srv, "refusing 127.0.0.1:");

    fd = hs_ctx_connect_from(c, "127.0.0.2", addr, IO_MS);
    assert_int_equal(hs_send_all(fd, v1, strlen(v1), IO_MS), 0);
    assert_int_equal(hs_ping(fd, "via .2" SEP, IO_MS), 0);
    expect_log(srv, "connection from 198.51.100.1:1000 on ");
}

/* 3. allow and deny apply to the client the header names, once it is read. */
static void test_proxy_deny_real_client(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start(c, 1,
                                "bind = 127.0.0.1:0\nproxy_protocol = on\n"
                                "proxy_allow = 127.0.0.1\ndeny = 198.51.100.66\n"
                                "allow = 198.51.100.0/24, 2001:db8::/32\n");
    const char *addr = hs_addr(srv, 0);
    const struct { const char *hdr; int ok; } cases[] = {
        {"PROXY TCP4 198.51.100.1 127.0.0.1 1001 80\r\n", 1},
        {"PROXY TCP4 198.51.100.66 127.0.0.1 1002 80\r\n", 0},   /* denied */
        {"PROXY TCP4 192.0.2.1 127.0.0.1 1003 80\r\n", 0},       /* not allowed */
        {"PROXY TCP6 2001:db8::1 ::1 1004 80\r\n", 1},
        {"PROXY TCP6 2001:db9::1 ::1 1005 80\r\n", 0},
        {"PROXY UNKNOWN\r\n", 1},                                /* the proxy's own */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fd = hs_ctx_connect(c, addr, IO_MS);
        assert_int_equal(hs_send_all(fd, cases[i].hdr, strlen(cases[i].hdr), IO_MS), 0);
        if (cases[i].ok) {
            if (hs_ping(fd, "in" SEP, IO_MS) != 0)
                HS_FAIL("%s: not served", cases[i].hdr);
        } else {
            hs_send_all(fd, "out" SEP, 7, IO_MS);
            expect_closed(fd, cases[i].hdr);
        }
    }
    expect_log(srv, "refusing 198.51.100.66:1002 (via proxy 127.0.0.1:");
    expect_log(srv, "refusing 192.0.2.1:1003 (via proxy 127.0.0.1:");
    expect_log(srv, "refusing [2001:db9::1]:1005 (via proxy 127.0.0.1:");
}

/* 4. A malformed, oversized or truncated header closes that connection, with a log line;
 * a connection already served and new ones carry on. */
static void test_proxy_malformed(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start(c, 1,
                                "bind = 127.0.0.1:0\nproxy_protocol = on\n"
                                "proxy_allow = 127.0.0.0/8\n");
    const char *addr = hs_addr(srv, 0);
    const char *good = "PROXY TCP4 198.51.100.1 127.0.0.1 1001 80\r\n";
    int keep = hs_ctx_connect(c, addr, IO_MS);
    assert_int_equal(hs_send_all(keep, good, strlen(good), IO_MS), 0);
    assert_int_equal(hs_ping(keep, "before" SEP, IO_MS), 0);

    char big[160];
    memset(big, 'x', sizeof big);
    memcpy(big, "PROXY UNKNOWN ", 14);
    uint8_t v2[32];
    size_t v2len = v2_tcp4(v2, 1, "198.51.100.2", 1, "127.0.0.1", 2);
    uint8_t v2huge[16];
    memcpy(v2huge, v2, 16);
    v2huge[14] = v2huge[15] = 0xff;
    uint8_t v2ver[32];
    memcpy(v2ver, v2, v2len);
    v2ver[12] = 0x11;
    const struct { const void *data; size_t len; const char *log; } bad[] = {
        {"hello" SEP, 9, "not a PROXY header (first byte 0x68)"},
        {big, sizeof big, "oversized v1 header"},
        {v2huge, sizeof v2huge, "oversized v2 header"},
        {v2ver, v2len, "unsupported v2 version 1"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", 36, "bad destination address"},
        {"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", 33, "empty field"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = hs_ctx_connect(c, addr, IO_MS);
        hs_send_all(fd, bad[i].data, bad[i].len, IO_MS);
        expect_closed(fd, bad[i].log);
        expect_log(srv, bad[i].log);
    }
    /* Truncated: the peer ends its stream inside the header. */
    int fd = hs_ctx_connect(c, addr, IO_MS);
    assert_int_equal(hs_send_all(fd, "PROXY TCP4 1.2.3.", 17, IO_MS), 0);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    expect_closed(fd, "a truncated header");
    expect_log(srv, "truncated, the peer closed after 17 bytes");
    if (!hs_output_has(srv, "PROXY header from 127.0.0.1:"))
        HS_FAIL("the log lines do not name the proxy");

    assert_int_equal(hs_ping(keep, "after" SEP, IO_MS), 0);
    fd = hs_ctx_connect(c, addr, IO_MS);
    assert_int_equal(hs_send_all(fd, good, strlen(good), IO_MS), 0);
    assert_int_equal(hs_ping(fd, "new" SEP, IO_MS), 0);
}

/* 5. A header that does not arrive within proxy_timeout closes the connection. */
static void test_proxy_timeout(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    struct hs_proc *srv = start(c, 1,
                                "bind = 127.0.0.1:0\nproxy_protocol = on\n"
                                "proxy_allow = 127.0.0.1\nproxy_timeout = 1\n");
    const char *addr = hs_addr(srv, 0);
    long t0 = hs_now_ms();
    int part = hs_ctx_connect(c, addr, IO_MS);
    int none = hs_ctx_connect(c, addr, IO_MS);
    assert_int_equal(hs_send_all(part, "PROXY TCP4 ", 11, IO_MS), 0);
    expect_closed(part, "half a header");
    expect_closed(none, "no header");
    long took = hs_now_ms() - t0;
    if (took < 900)
        HS_FAIL("closed after %ld ms, before proxy_timeout (1 s)", took);
    expect_log(srv, "within 1 s (proxy_timeout): closing the connection");
    /* The timeout runs from the connection's start, not from its last byte: and a prompt
     * header is served. */
    int fd = hs_ctx_connect(c, addr, IO_MS);
    const char *good = "PROXY TCP4 198.51.100.1 127.0.0.1 1001 80\r\n";
    assert_int_equal(hs_send_all(fd, good, strlen(good), IO_MS), 0);
    assert_int_equal(hs_ping(fd, "prompt" SEP, IO_MS), 0);
}

/* 6. Configuration errors: proxy_protocol = on needs proxy_allow; echosrv -t says where. */
static void test_proxy_config_errors(void **state)
{
    struct hs_ctx *c = begin(state, __func__);
    const char *pd = hs_env_path("ES_PLUGIN_DIR");
    assert_non_null(pd);
    assert_int_equal(hs_write_file(c->conf, sizeof c->conf, c->dir, "bad.ini",
                                   "[server]\nplugin_dir = %s\n[listener lb]\n"
                                   "bind = 127.0.0.1:0\nproxy_protocol = on\n", pd), 0);
    const char *const args[] = {"-t", "-c", c->conf, NULL};
    char *out = NULL;
    int st = hs_run(args, IO_MS, &out);
    assert_non_null(out);
    char want[700];
    snprintf(want, sizeof want, "%s:5: listener lb: proxy_protocol = on needs proxy_allow",
             c->conf);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 1 && strstr(out, want) != NULL;
    if (!ok)
        fprintf(stderr, "# status %d, output:\n# %s\n", st, out);
    free(out);
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        HS_CTX_TEST(test_proxy_peer),
        HS_CTX_TEST(test_proxy_allow),
        HS_CTX_TEST(test_proxy_deny_real_client),
        HS_CTX_TEST(test_proxy_malformed),
        HS_CTX_TEST(test_proxy_timeout),
        HS_CTX_TEST(test_proxy_config_errors),
    };
    if (hs_process_init() < 0)
        fprintf(stderr, "# could not raise RLIMIT_NOFILE or ignore SIGPIPE\n");
    return cmocka_run_group_tests_name("echosrv_proxy", tests, NULL, NULL);
}
