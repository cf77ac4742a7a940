/* fuzz_addr.c - libFuzzer target: addr_parse, addr_parse_list and addr_format.
 *
 * The input, cut at its first NUL, is parsed as one address and as a list. Checked: no
 * crash or sanitizer report; an error message is set; what parses formats to text that
 * parses back to the same socket address (IPv4-mapped IPv6 addresses format, and so come
 * back, as IPv4), and formatting is then a fixed point; a list has one address per item.
 * Names are never resolved: fuzz.h's getaddrinfo fails them all without a DNS query. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "addr.h"
#include "fuzz.h"

/* a as addr_format shows it: IPv4-mapped IPv6 as IPv4, the rest as is. */
static void normalize(const addr *a, struct sockaddr_storage *out, socklen_t *len)
{
    memset(out, 0, sizeof *out);
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
    if (a->ss.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)out;
        s4->sin_family = AF_INET;
        s4->sin_port = s6->sin6_port;
        memcpy(&s4->sin_addr, &s6->sin6_addr.s6_addr[12], 4);
        *len = sizeof *s4;
        return;
    }
    memcpy(out, &a->ss, a->len);
    *len = a->len;
}

static void check_same(const addr *a, const addr *b)
{
    struct sockaddr_storage x, y;
    socklen_t xl, yl;
    normalize(a, &x, &xl);
    normalize(b, &y, &yl);
    FUZZ_CHECK(xl == yl);
    FUZZ_CHECK(memcmp(&x, &y, xl) == 0);
}

/* Formats a, parses the text back, and checks both agree. The text goes to out. */
static void round_trip(const addr *a, char *out, size_t outlen)
{
    char err[256] = "";
    FUZZ_CHECK(a->len > 0 && a->len <= sizeof a->ss);
    addr_format((const struct sockaddr *)&a->ss, a->len, out, outlen);
    FUZZ_CHECK(memchr(out, '\0', outlen) != NULL);
    addr back;
    if (addr_parse(out, &back, err, sizeof err) != 0) {
        fprintf(stderr, "'%s' does not parse back: %s\n", out, err);
        abort();
    }
    check_same(a, &back);
    char again[ADDR_TEXT_MAX];
    addr_format((const struct sockaddr *)&back.ss, back.len, again, sizeof again);
    FUZZ_CHECK(strcmp(out, again) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1024)
        return 0;
    char *text = malloc(size + 1);
    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';

    char err[512] = "";
    addr a;
    if (addr_parse(text, &a, err, sizeof err) == 0) {
        char shown[ADDR_TEXT_MAX];
        round_trip(&a, shown, sizeof shown);
    } else {
        FUZZ_CHECK(err[0] != '\0');
    }

    err[0] = '\0';
    addr *list = NULL;
    size_t n = 0;
    if (addr_parse_list(text, &list, &n, err, sizeof err) == 0) {
        size_t items = 1;
        for (const char *p = text; *p != '\0'; p++)
            items += *p == ',';
        FUZZ_CHECK(n == items);
        char joined[ADDR_TEXT_MAX * 64] = "";
        size_t jl = 0;
        for (size_t i = 0; i < n; i++) {
            char shown[ADDR_TEXT_MAX];
            round_trip(&list[i], shown, sizeof shown);
            if (strchr(shown, ',') != NULL || jl + strlen(shown) + 2 >= sizeof joined)
                continue; /* a unix path with a comma has no list form */
            jl += (size_t)snprintf(joined + jl, sizeof joined - jl, "%s%s", jl ? ", " : "",
                                   shown);
        }
        if (jl > 0) {
            addr *again = NULL;
            size_t m = 0;
            FUZZ_CHECK(addr_parse_list(joined, &again, &m, err, sizeof err) == 0);
            free(again);
        }
        free(list);
    } else {
        FUZZ_CHECK(err[0] != '\0');
    }
    free(text);
    return 0;
}
