/* test_cidr.c - unit tests of CIDR parsing and peer matching (lib/cidr.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"

#define assert_contains(hay, needle)                                           \
    do {                                                                       \
        if (strstr((hay), (needle)) == NULL)                                   \
            fail_msg("'%s' does not contain '%s'", (hay), (needle));           \
    } while (0)

/* A socket address for a textual IPv4 or IPv6 address. */
static struct sockaddr_storage sa_of(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
        s6->sin6_family = AF_INET6;
    }
    return ss;
}

/* Whether the peer text matches the list text. */
static int matches(const char *list_text, const char *peer)
{
    char err[256] = "";
    cidr *list;
    size_t n;
    if (cidr_parse_list(list_text, &list, &n, err, sizeof err) < 0)
        fail_msg("'%s': %s", list_text, err);
    struct sockaddr_storage ss = sa_of(peer);
    int m = cidr_list_match(list, n, (struct sockaddr *)&ss);
    free(list);
    return m;
}

static void parse_fails(const char *text, const char *want)
{
    char err[256] = "";
    cidr *list = NULL;
    size_t n = 99;
    if (cidr_parse_list(text, &list, &n, err, sizeof err) == 0)
        fail_msg("'%s' was accepted", text);
    assert_null(list);
    assert_contains(err, want);
}

static void test_parse_v4(void **state)
{
    (void)state;
    char err[256];
    cidr c;
    assert_int_equal(cidr_parse("10.0.0.0/8", &c, err, sizeof err), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_int_equal(c.net[0], 10);
    assert_int_equal(cidr_parse("10.1.2.3", &c, err, sizeof err), 0);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(cidr_parse("0.0.0.0/0", &c, err, sizeof err), 0);
    assert_int_equal(c.prefix, 0);
}

static void test_parse_v6(void **state)
{
    (void)state;
    char err[256];
    cidr c;
    assert_int_equal(cidr_parse("::1", &c, err, sizeof err), 0);
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 128);
    assert_int_equal(c.net[15], 1);
    assert_int_equal(cidr_parse("2001:db8::/32", &c, err, sizeof err), 0);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(cidr_parse("::/0", &c, err, sizeof err), 0);
    /* An IPv4-mapped range is kept as IPv4. */
    assert_int_equal(cidr_parse("::ffff:10.0.0.0/104", &c, err, sizeof err), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_int_equal(c.net[0], 10);
}

static void test_parse_errors(void **state)
{
    (void)state;
    parse_fails("10.0.0.0/33", "more than 32");
    parse_fails("::/129", "more than 128");
    parse_fails("10.0.0.0/", "bad prefix");
    parse_fails("10.0.0.0/x", "bad prefix");
    parse_fails("10.0.0.0/-1", "bad prefix");
    parse_fails("10.0.0.0/8/8", "bad prefix");
    parse_fails("10.0.0.0/ 8", "bad prefix");
    parse_fails("10.0.0.0/0008", "bad prefix");
    parse_fails("garbage", "not an IPv4 or IPv6 address");
    parse_fails("10.0.0", "not an IPv4 or IPv6 address");
    parse_fails("256.0.0.0/8", "not an IPv4 or IPv6 address");
    parse_fails("/8", "not an address");
    parse_fails("10.1.2.3/8", "bits set past the /8 prefix");
    parse_fails("2001:db8::1/32", "bits set past the /32 prefix");
    parse_fails("10.0.0.0/8,,::1", "empty item");
    parse_fails("10.0.0.0/8,", "empty item");
    parse_fails("127.0.0.1, bogus", "'bogus'");
}

static void test_parse_list(void **state)
{
    (void)state;
    char err[256];
    cidr *list;
    size_t n;
    assert_int_equal(cidr_parse_list(" 127.0.0.0/8, ::1/128 ,10.1.2.3 ", &list, &n, err,
                                     sizeof err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(list[0].prefix, 8);
    assert_int_equal(list[1].family, AF_INET6);
    assert_int_equal(list[2].prefix, 32);
    free(list);
    assert_int_equal(cidr_parse_list("  ", &list, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_null(list);
}

static void test_match_v4(void **state)
{
    (void)state;
    assert_true(matches("127.0.0.0/8", "127.0.0.1"));
    assert_true(matches("127.0.0.0/8", "127.255.255.255"));
    assert_false(matches("127.0.0.0/8", "128.0.0.1"));
    assert_true(matches("10.1.2.3", "10.1.2.3"));
    assert_false(matches("10.1.2.3", "10.1.2.4"));
    assert_true(matches("192.168.0.0/23", "192.168.1.200"));
    assert_false(matches("192.168.0.0/23", "192.168.2.1"));
    assert_true(matches("10.0.0.0/8, 192.168.0.0/16", "192.168.7.7"));
    assert_true(matches("0.0.0.0/0", "8.8.8.8"));
    assert_false(matches("0.0.0.0/0", "::1"));
    assert_false(matches("", "127.0.0.1"));
}

static void test_match_v6(void **state)
{
    (void)state;
    assert_true(matches("::1/128", "::1"));
    assert_false(matches("::1/128", "::2"));
    assert_true(matches("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(matches("2001:db8::/32", "2001:db9::1"));
    assert_true(matches("fe80::/10", "febf::1"));
    assert_false(matches("fe80::/10", "fec0::1"));
    assert_true(matches("::/0", "2001:db8::1"));
    assert_false(matches("::/0", "10.0.0.1"));
}

static void test_match_v4_mapped(void **state)
{
    (void)state;
    /* A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d. */
    assert_true(matches("127.0.0.0/8", "::ffff:127.0.0.1"));
    assert_false(matches("10.0.0.0/8", "::ffff:127.0.0.1"));
    assert_true(matches("::ffff:127.0.0.0/104", "127.0.0.9"));
    assert_false(matches("::/0", "::ffff:127.0.0.1"));
}

static void test_match_other_family(void **state)
{
    (void)state;
    cidr all[2];
    char err[256];
    assert_int_equal(cidr_parse("0.0.0.0/0", &all[0], err, sizeof err), 0);
    assert_int_equal(cidr_parse("::/0", &all[1], err, sizeof err), 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_family = AF_UNIX;
    assert_false(cidr_list_match(all, 2, (struct sockaddr *)&ss));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_v4),
        cmocka_unit_test(test_parse_v6),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_list),
        cmocka_unit_test(test_match_v4),
        cmocka_unit_test(test_match_v6),
        cmocka_unit_test(test_match_v4_mapped),
        cmocka_unit_test(test_match_other_family),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
