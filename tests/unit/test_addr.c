/* test_addr.c - unit tests of address parsing and formatting (lib/addr.c). */
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
#include <sys/un.h>

#include "addr.h"

#define assert_contains(hay, needle)                                           \
    do {                                                                       \
        if (strstr((hay), (needle)) == NULL)                                   \
            fail_msg("'%s' does not contain '%s'", (hay), (needle));           \
    } while (0)

/* Parses text, which must succeed, and returns the address. */
static addr parse_ok(const char *text)
{
    addr a;
    char err[256] = "";
    if (addr_parse(text, &a, err, sizeof err) != 0)
        fail_msg("addr_parse('%s') failed: %s", text, err);
    return a;
}

/* Parses text, which must fail with a message containing each of the
 * non-NULL needles. */
static void parse_err(const char *text, const char *needle1, const char *needle2)
{
    addr a;
    char err[1024] = "";
    if (addr_parse(text, &a, err, sizeof err) != -1)
        fail_msg("addr_parse('%s') succeeded", text);
    assert_contains(err, needle1);
    if (needle2 != NULL)
        assert_contains(err, needle2);
}

/* Formats a into a string and compares it to want. */
static void check_format(const addr *a, const char *want)
{
    char out[ADDR_TEXT_MAX];
    memset(out, 'Z', sizeof out);
    char *r = addr_format((const struct sockaddr *)&a->ss, a->len, out, sizeof out);
    assert_ptr_equal(r, out);
    assert_string_equal(out, want);
}

static void test_ipv4(void **state)
{
    (void)state;
    addr a = parse_ok("127.0.0.1:8060");
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a.ss;
    assert_int_equal(s4->sin_family, AF_INET);
    assert_int_equal(a.len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(s4->sin_port), 8060);
    assert_int_equal(ntohl(s4->sin_addr.s_addr), 0x7f000001);
    assert_int_equal(a.any, 0);

    a = parse_ok("10.1.2.3:65535");
    assert_int_equal(ntohs(s4->sin_port), 65535);
    assert_int_equal(ntohl(s4->sin_addr.s_addr), 0x0a010203);

    a = parse_ok("0.0.0.0:1");
    assert_int_equal(s4->sin_addr.s_addr, 0);
    assert_int_equal(a.any, 0);
}

static void test_localhost_resolves(void **state)
{
    (void)state;
    addr a = parse_ok("localhost:80");
    if (a.ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a.ss;
        assert_int_equal(a.len, sizeof *s4);
        assert_int_equal(ntohs(s4->sin_port), 80);
        assert_int_equal(ntohl(s4->sin_addr.s_addr) >> 24, 127);
    } else {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a.ss;
        assert_int_equal(a.ss.ss_family, AF_INET6);
        assert_int_equal(a.len, sizeof *s6);
        assert_int_equal(ntohs(s6->sin6_port), 80);
        assert_true(IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr));
    }
    assert_int_equal(a.any, 0);
}

static void test_any_port(void **state)
{
    (void)state;
    addr a = parse_ok(":9000");
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a.ss;
    assert_int_equal(s6->sin6_family, AF_INET6);
    assert_int_equal(a.len, sizeof *s6);
    assert_true(IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr));
    assert_int_equal(ntohs(s6->sin6_port), 9000);
    assert_int_equal(a.any, 1);
}

static void test_ipv6(void **state)
{
    (void)state;
    addr a = parse_ok("[::1]:443");
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a.ss;
    assert_int_equal(s6->sin6_family, AF_INET6);
    assert_int_equal(a.len, sizeof *s6);
    assert_true(IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr));
    assert_int_equal(ntohs(s6->sin6_port), 443);
    assert_int_equal(a.any, 0);

    a = parse_ok("[2001:db8::5]:7");
    struct in6_addr want;
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::5", &want), 1);
    assert_memory_equal(&s6->sin6_addr, &want, sizeof want);
    assert_int_equal(ntohs(s6->sin6_port), 7);

    /* The wildcard written out is not the ":PORT" form. */
    a = parse_ok("[::]:5");
    assert_int_equal(a.any, 0);
}

static void test_unix(void **state)
{
    (void)state;
    addr a = parse_ok("unix:/tmp/echosrv.sock");
    const struct sockaddr_un *su = (const struct sockaddr_un *)&a.ss;
    assert_int_equal(su->sun_family, AF_UNIX);
    assert_string_equal(su->sun_path, "/tmp/echosrv.sock");
    assert_int_equal(a.len,
                     offsetof(struct sockaddr_un, sun_path) + strlen("/tmp/echosrv.sock") + 1);
    assert_int_equal(a.any, 0);

    /* The longest path that fits, with its terminating NUL. */
    char text[5 + sizeof su->sun_path];
    memcpy(text, "unix:", 5);
    memset(text + 5, 'p', sizeof su->sun_path - 1);
    text[5 + sizeof su->sun_path - 1] = '\0';
    a = parse_ok(text);
    assert_int_equal(strlen(su->sun_path), sizeof su->sun_path - 1);
    assert_int_equal(a.len, sizeof(struct sockaddr_un));
}

static void test_port_zero_and_bounds(void **state)
{
    (void)state;
    addr a = parse_ok("127.0.0.1:0");
    assert_int_equal(ntohs(((const struct sockaddr_in *)&a.ss)->sin_port), 0);
    a = parse_ok(":0");
    assert_int_equal(ntohs(((const struct sockaddr_in6 *)&a.ss)->sin6_port), 0);
    assert_int_equal(a.any, 1);
    a = parse_ok("[::1]:0");
    assert_int_equal(ntohs(((const struct sockaddr_in6 *)&a.ss)->sin6_port), 0);
    a = parse_ok("127.0.0.1:00080");
    assert_int_equal(ntohs(((const struct sockaddr_in *)&a.ss)->sin_port), 80);
}

static void test_errors(void **state)
{
    (void)state;
    parse_err("127.0.0.1:", "missing port", "'127.0.0.1:'");
    parse_err("[::1]:", "missing port", NULL);
    parse_err(":", "missing port", NULL);
    parse_err("127.0.0.1", "expected HOST:PORT", "'127.0.0.1'");
    parse_err("", "expected HOST:PORT", NULL);
    parse_err("127.0.0.1:65536", "65536", "out of range");
    parse_err("127.0.0.1:99999999999999999999", "bad port", NULL);
    parse_err("127.0.0.1:8o", "bad port '8o'", NULL);
    parse_err("127.0.0.1:-1", "bad port", NULL);
    parse_err("127.0.0.1: 80", "bad port", NULL);
    parse_err("127.0.0.1:+80", "bad port", NULL);
    parse_err("::1:80", "[ADDRESS]:PORT", "'::1:80'");
    parse_err("[::1:80", "missing ']'", NULL);
    parse_err("[::1]80", "expected ':PORT'", NULL);
    parse_err("[]:80", "bad IPv6 address", NULL);
    parse_err("[127.0.0.1]:80", "not an IPv6 address", NULL);
    parse_err("unix:", "empty unix socket path", NULL);
}

static void test_unix_too_long(void **state)
{
    (void)state;
    struct sockaddr_un su;
    char text[5 + sizeof su.sun_path + 1];
    memcpy(text, "unix:", 5);
    memset(text + 5, 'p', sizeof su.sun_path);
    text[5 + sizeof su.sun_path] = '\0';
    char limit[32];
    snprintf(limit, sizeof limit, "longer than %zu bytes", sizeof su.sun_path - 1);
    parse_err(text, limit, NULL);
}

static void test_host_too_long(void **state)
{
    (void)state;
    char text[400];
    memset(text, 'h', 300);
    strcpy(text + 300, ":80");
    parse_err(text, "host name too long", NULL);
}

static void test_list(void **state)
{
    (void)state;
    addr *v = NULL;
    size_t n = 0;
    char err[256] = "";
    assert_int_equal(addr_parse_list(" 127.0.0.1:1 ,[::1]:2,  :3,unix:/tmp/s  ", &v, &n, err,
                                     sizeof err), 0);
    assert_int_equal(n, 4);
    assert_int_equal(v[0].ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((const struct sockaddr_in *)&v[0].ss)->sin_port), 1);
    assert_int_equal(v[1].ss.ss_family, AF_INET6);
    assert_int_equal(ntohs(((const struct sockaddr_in6 *)&v[1].ss)->sin6_port), 2);
    assert_int_equal(v[1].any, 0);
    assert_int_equal(v[2].any, 1);
    assert_int_equal(ntohs(((const struct sockaddr_in6 *)&v[2].ss)->sin6_port), 3);
    assert_int_equal(v[3].ss.ss_family, AF_UNIX);
    /* Trailing spaces are not part of the path. */
    assert_string_equal(((const struct sockaddr_un *)&v[3].ss)->sun_path, "/tmp/s");
    free(v);

    v = NULL;
    assert_int_equal(addr_parse_list("127.0.0.1:5", &v, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ntohs(((const struct sockaddr_in *)&v[0].ss)->sin_port), 5);
    free(v);
}

/* Parses a list that must fail; the output is untouched and nothing leaks. */
static void list_err(const char *text, const char *needle1, const char *needle2)
{
    addr *v = (addr *)(uintptr_t)0x1;
    size_t n = 77;
    char err[256] = "";
    assert_int_equal(addr_parse_list(text, &v, &n, err, sizeof err), -1);
    assert_ptr_equal(v, (addr *)(uintptr_t)0x1);
    assert_int_equal(n, 77);
    assert_contains(err, needle1);
    if (needle2 != NULL)
        assert_contains(err, needle2);
}

static void test_list_errors(void **state)
{
    (void)state;
    list_err("127.0.0.1:1,,127.0.0.1:2", "empty address in list",
             "'127.0.0.1:1,,127.0.0.1:2'");
    list_err("localhost:1,,localhost:2", "empty address in list", NULL);
    list_err("127.0.0.1:1,", "empty address in list", NULL);
    list_err(",127.0.0.1:1", "empty address in list", NULL);
    list_err("127.0.0.1:1,  ,127.0.0.1:2", "empty address in list", NULL);
    list_err("", "empty address in list", NULL);
    list_err("127.0.0.1:1, 127.0.0.1:70000", "70000", "out of range");
    list_err("127.0.0.1:1,::1:80", "[ADDRESS]:PORT", NULL);
}

static void test_format_round_trip(void **state)
{
    (void)state;
    static const char *const forms[] = {
        "127.0.0.1:8060", "10.0.0.255:0", "[::1]:80", "[2001:db8::1]:65535",
        "[fe80::1:2]:9", "unix:/tmp/echosrv.sock", "unix:relative/path",
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        addr a = parse_ok(forms[i]);
        check_format(&a, forms[i]);
    }
    addr a = parse_ok(":8060");
    check_format(&a, "[::]:8060");
}

static void test_format_v4_mapped(void **state)
{
    (void)state;
    addr a = parse_ok("[::ffff:192.0.2.7]:1234");
    assert_int_equal(a.ss.ss_family, AF_INET6);
    check_format(&a, "192.0.2.7:1234");
}

static void test_format_unix_edge(void **state)
{
    (void)state;
    struct sockaddr_un su;
    memset(&su, 0, sizeof su);
    su.sun_family = AF_UNIX;
    char out[ADDR_TEXT_MAX];
    /* Unnamed (as returned for an unbound peer): only the family. */
    addr_format((const struct sockaddr *)&su, (socklen_t)offsetof(struct sockaddr_un, sun_path),
                out, sizeof out);
    assert_string_equal(out, "unix:");
    /* Abstract: a leading NUL. */
    memcpy(su.sun_path, "\0abstract", 9);
    addr_format((const struct sockaddr *)&su,
                (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 9), out, sizeof out);
    assert_string_equal(out, "unix:");
    /* The path is read no further than the given length. */
    memcpy(su.sun_path, "/tmp/abcdef", 12);
    addr_format((const struct sockaddr *)&su,
                (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 4), out, sizeof out);
    assert_string_equal(out, "unix:/tmp");
}

static void test_format_truncates(void **state)
{
    (void)state;
    addr a = parse_ok("127.0.0.1:8060");
    char out[8];
    memset(out, 'Z', sizeof out);
    addr_format((const struct sockaddr *)&a.ss, a.len, out, 6);
    assert_string_equal(out, "127.0");
    assert_int_equal(out[6], 'Z');

    struct sockaddr sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_family = 12345;
    char big[64];
    addr_format(&sa, sizeof sa, big, sizeof big);
    assert_string_equal(big, "(family 12345)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4),
        cmocka_unit_test(test_localhost_resolves),
        cmocka_unit_test(test_any_port),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_unix),
        cmocka_unit_test(test_port_zero_and_bounds),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_unix_too_long),
        cmocka_unit_test(test_host_too_long),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_list_errors),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_format_v4_mapped),
        cmocka_unit_test(test_format_unix_edge),
        cmocka_unit_test(test_format_truncates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
