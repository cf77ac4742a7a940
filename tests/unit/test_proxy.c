/* test_proxy.c - unit tests of the PROXY protocol header parser (lib/proxy.c), v1 and v2. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

#define assert_contains(hay, needle)                                           \
    do {                                                                       \
        if (strstr((hay), (needle)) == NULL)                                   \
            fail_msg("'%s' does not contain '%s'", (hay), (needle));           \
    } while (0)

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* Parses len bytes of data (copied to a heap buffer of exactly len bytes, so that a read past
 * the end shows under AddressSanitizer). */
static ssize_t parse(const void *data, size_t len, proxy_header *h, char *err, size_t errlen)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);
    err[0] = '\0';
    ssize_t r = proxy_parse(copy, len, h, err, errlen);
    free(copy);
    return r;
}

/* Every proper prefix of a complete header asks for more; the whole gives its length. */
static void assert_prefixes_need_more(const void *data, size_t hlen)
{
    proxy_header h;
    char err[256];
    for (size_t k = 0; k < hlen; k++) {
        ssize_t r = parse(data, k, &h, err, sizeof err);
        if (r != 0)
            fail_msg("prefix of %zu of %zu bytes: %zd (%s), expected 0", k, hlen, r, err);
    }
    assert_int_equal(parse(data, hlen, &h, err, sizeof err), (ssize_t)hlen);
}

/* Expects an error whose text contains what. */
static void assert_refused(const void *data, size_t len, const char *what)
{
    proxy_header h;
    char err[256];
    ssize_t r = parse(data, len, &h, err, sizeof err);
    if (r != -1)
        fail_msg("%.*s: %zd, expected -1", (int)(len > 60 ? 60 : len), (const char *)data, r);
    assert_contains(err, what);
}

static void assert_v4(const proxy_addr *a, const char *ip, unsigned port)
{
    char text[INET_ADDRSTRLEN];
    assert_int_equal(a->sa.sa_family, AF_INET);
    assert_non_null(inet_ntop(AF_INET, &a->in4.sin_addr, text, sizeof text));
    assert_string_equal(text, ip);
    assert_int_equal(ntohs(a->in4.sin_port), port);
}

static void assert_v6(const proxy_addr *a, const char *ip, unsigned port)
{
    char text[INET6_ADDRSTRLEN];
    assert_int_equal(a->sa.sa_family, AF_INET6);
    assert_non_null(inet_ntop(AF_INET6, &a->in6.sin6_addr, text, sizeof text));
    assert_string_equal(text, ip);
    assert_int_equal(ntohs(a->in6.sin6_port), port);
}

static void test_v1_tcp4(void **state)
{
    (void)state;
    const char *hdr = "PROXY TCP4 192.168.0.1 10.0.0.2 56324 8060\r\n";
    char buf[128];
    snprintf(buf, sizeof buf, "%sPING\r\n\r\n", hdr);
    proxy_header h;
    char err[256];
    /* The payload after it is not taken. */
    assert_int_equal(parse(buf, strlen(buf), &h, err, sizeof err), (ssize_t)strlen(hdr));
    assert_int_equal(h.version, 1);
    assert_int_equal(h.local, 0);
    assert_v4(&h.src, "192.168.0.1", 56324);
    assert_v4(&h.dst, "10.0.0.2", 8060);
    assert_prefixes_need_more(hdr, strlen(hdr));
}

static void test_v1_tcp6(void **state)
{
    (void)state;
    const char *hdr = "PROXY TCP6 2001:db8::1 ::1 0 65535\r\n";
    proxy_header h;
    char err[256];
    assert_int_equal(parse(hdr, strlen(hdr), &h, err, sizeof err), (ssize_t)strlen(hdr));
    assert_int_equal(h.local, 0);
    assert_v6(&h.src, "2001:db8::1", 0);
    assert_v6(&h.dst, "::1", 65535);
    assert_prefixes_need_more(hdr, strlen(hdr));
    /* The longest TCP6 line, 104 bytes. */
    const char *longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(longest), 104);
    assert_prefixes_need_more(longest, strlen(longest));
}

static void test_v1_unknown(void **state)
{
    (void)state;
    proxy_header h;
    char err[256];
    const char *bare = "PROXY UNKNOWN\r\n";
    assert_int_equal(parse(bare, strlen(bare), &h, err, sizeof err), (ssize_t)strlen(bare));
    assert_int_equal(h.version, 1);
    assert_int_equal(h.local, 1);
    assert_prefixes_need_more(bare, strlen(bare));
    /* The spec's worst case: UNKNOWN with the longest addresses, 107 bytes. */
    const char *full = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(full), PROXY_V1_MAX);
    assert_prefixes_need_more(full, strlen(full));
    assert_int_equal(h.local, 1);
}

static void test_v1_errors(void **state)
{
    (void)state;
    assert_refused("GET / HTTP/1.0\r\n", 16, "not a PROXY header");
    assert_refused("PROXZ", 5, "signature");
    assert_refused("PING\r\n\r\n", 8, "signature");
    const struct { const char *line, *what; } bad[] = {
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "CRLF"},
        {"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "empty field"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "empty field"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "fields"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "5 fields"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3 4\r\n", "too many fields"},
        {"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "source"},
        {"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "source"},
        {"PROXY TCP6 ::1 5.6.7.8 1 2\r\n", "destination"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "source"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "source"},
        {"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", "destination"},
        {"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "unsupported"},
        {"PROXY \r\n", "empty field"},
        {"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", "CR"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_refused(bad[i].line, strlen(bad[i].line), bad[i].what);
    /* A NUL inside the line. */
    assert_refused("PROXY TCP4 1.2.3.4\0005.6.7.8 1 2\r\n", 33, "NUL");
    /* No end of line within 107 bytes: oversized, told as soon as byte 107 is there. */
    char big[200];
    memset(big, 'x', sizeof big);
    memcpy(big, "PROXY UNKNOWN ", 14);
    proxy_header h;
    char err[256];
    assert_int_equal(parse(big, PROXY_V1_MAX - 1, &h, err, sizeof err), 0);
    assert_refused(big, PROXY_V1_MAX, "oversized");
    assert_refused(big, sizeof big, "oversized");
    /* 108 bytes with its CRLF: one too many. */
    memcpy(big + PROXY_V1_MAX - 1, "\r\n", 2);
    assert_refused(big, PROXY_V1_MAX + 1, "oversized");
}

/* A v2 header: ver_cmd, fam, then the address block and TLVs (body). Returns its length. */
static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const void *body, size_t blen)
{
    memcpy(out, SIG, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(blen >> 8);
    out[15] = (uint8_t)blen;
    if (blen > 0)
        memcpy(out + 16, body, blen);
    return 16 + blen;
}

static void test_v2_tcp4(void **state)
{
    (void)state;
    /* 127.0.0.1:40000 -> 10.1.2.3:8060, then a NOOP TLV of 3 bytes and an empty one. */
    const uint8_t body[] = {127, 0, 0, 1, 10, 1, 2, 3, 0x9c, 0x40, 0x1f, 0x7c,
                            0x04, 0x00, 0x03, 'a', 'b', 'c', 0x05, 0x00, 0x00};
    uint8_t hdr[64];
    size_t len = v2(hdr, 0x21, 0x11, body, sizeof body);
    uint8_t with_payload[80];
    memcpy(with_payload, hdr, len);
    memcpy(with_payload + len, "PING\r\n\r\n", 8);
    proxy_header h;
    char err[256];
    assert_int_equal(parse(with_payload, len + 8, &h, err, sizeof err), (ssize_t)len);
    assert_int_equal(h.version, 2);
    assert_int_equal(h.local, 0);
    assert_v4(&h.src, "127.0.0.1", 40000);
    assert_v4(&h.dst, "10.1.2.3", 8060);
    assert_prefixes_need_more(hdr, len);
}

static void test_v2_tcp6(void **state)
{
    (void)state;
    uint8_t body[36] = {0};
    body[0] = 0x20, body[1] = 0x01, body[2] = 0x0d, body[3] = 0xb8, body[15] = 7; /* 2001:db8::7 */
    body[31] = 1;                                                                 /* ::1 */
    body[32] = 0x01, body[33] = 0xbb, body[34] = 0x00, body[35] = 0x50;            /* 443, 80 */
    uint8_t hdr[64];
    size_t len = v2(hdr, 0x21, 0x21, body, sizeof body);
    proxy_header h;
    char err[256];
    assert_int_equal(parse(hdr, len, &h, err, sizeof err), (ssize_t)len);
    assert_v6(&h.src, "2001:db8::7", 443);
    assert_v6(&h.dst, "::1", 80);
    assert_prefixes_need_more(hdr, len);
}

static void test_v2_local_unspec(void **state)
{
    (void)state;
    uint8_t hdr[64];
    proxy_header h;
    char err[256];
    /* LOCAL (a health check): no address, whatever the family says. */
    size_t len = v2(hdr, 0x20, 0x00, NULL, 0);
    assert_prefixes_need_more(hdr, len);
    assert_int_equal(parse(hdr, len, &h, err, sizeof err), 16);
    assert_int_equal(h.local, 1);
    const uint8_t junk[5] = {1, 2, 3, 4, 5};
    len = v2(hdr, 0x20, 0x11, junk, sizeof junk);
    assert_int_equal(parse(hdr, len, &h, err, sizeof err), (ssize_t)len);
    assert_int_equal(h.local, 1);
    /* PROXY over UNSPEC: the addresses are ignored, as for LOCAL. */
    len = v2(hdr, 0x21, 0x00, junk, sizeof junk);
    assert_prefixes_need_more(hdr, len);
    memset(&h, 0, sizeof h);
    assert_int_equal(parse(hdr, len, &h, err, sizeof err), (ssize_t)len);
    assert_int_equal(h.local, 1);
}

static void test_v2_errors(void **state)
{
    (void)state;
    uint8_t hdr[PROXY_HEADER_MAX + 64];
    const uint8_t body[12] = {127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2};
    size_t len = v2(hdr, 0x21, 0x11, body, sizeof body);
    /* Each byte of the signature wrong: refused as soon as it is there. */
    for (size_t i = 1; i < 12; i++) {
        uint8_t bad[64];
        memcpy(bad, hdr, len);
        bad[i] ^= 0x20;
        assert_refused(bad, i + 1, "signature");
        assert_refused(bad, len, "signature");
    }
    hdr[12] = 0x11;
    assert_refused(hdr, len, "version");
    hdr[12] = 0x22;
    assert_refused(hdr, len, "command");
    hdr[12] = 0x21;
    hdr[13] = 0x12; /* UDP over IPv4 */
    assert_refused(hdr, 16, "unsupported");
    hdr[13] = 0x31; /* unix stream */
    assert_refused(hdr, len, "unsupported");
    /* An address block too short for its family. */
    len = v2(hdr, 0x21, 0x11, body, 11);
    assert_refused(hdr, 16, "malformed");
    len = v2(hdr, 0x21, 0x21, body, 12);
    assert_refused(hdr, len, "malformed");
    /* TLVs that run past the end, or are cut inside their type and length. */
    const uint8_t over[15] = {127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2, 0x04, 0x00, 0x05};
    len = v2(hdr, 0x21, 0x11, over, sizeof over);
    assert_refused(hdr, len, "TLV");
    len = v2(hdr, 0x21, 0x11, over, 14);
    assert_refused(hdr, len, "TLV");
    /* Oversized: told from the 16 fixed bytes alone; the largest allowed parses. */
    uint8_t pad[PROXY_HEADER_MAX];
    memset(pad, 0, sizeof pad);
    memcpy(pad, body, sizeof body);
    size_t room = PROXY_HEADER_MAX - 16 - sizeof body - 3;
    pad[12] = 0x04, pad[13] = (uint8_t)(room >> 8), pad[14] = (uint8_t)room;
    len = v2(hdr, 0x21, 0x11, pad, PROXY_HEADER_MAX - 16);
    assert_int_equal(len, PROXY_HEADER_MAX);
    assert_prefixes_need_more(hdr, len);
    hdr[14] = (uint8_t)((PROXY_HEADER_MAX - 15) >> 8);
    hdr[15] = (uint8_t)(PROXY_HEADER_MAX - 15);
    assert_refused(hdr, 16, "oversized");
    hdr[14] = hdr[15] = 0xff;
    assert_refused(hdr, 16, "oversized");
}

static void test_other(void **state)
{
    (void)state;
    proxy_header h;
    char err[256];
    assert_int_equal(proxy_parse((const uint8_t *)"", 0, &h, err, sizeof err), 0);
    assert_refused("\x16\x03\x01", 3, "not a PROXY header"); /* a TLS ClientHello */
    assert_refused("\r\n\r\n\r", 5, "signature");
    assert_refused("\0", 1, "not a PROXY header");
    /* A zero-sized error buffer is never written. */
    assert_int_equal(proxy_parse((const uint8_t *)"x", 1, &h, NULL, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_unknown),
        cmocka_unit_test(test_v1_errors),
        cmocka_unit_test(test_v2_tcp4),
        cmocka_unit_test(test_v2_tcp6),
        cmocka_unit_test(test_v2_local_unspec),
        cmocka_unit_test(test_v2_errors),
        cmocka_unit_test(test_other),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
