/* fuzz_proxy.c - libFuzzer target: proxy_parse, the PROXY protocol header parser (v1 and v2).
 *
 * Checked: no crash, no read past the input (libFuzzer's buffer is exactly its size), an error
 * message on refusal; a complete header's length is within the input and the bounds; the
 * header alone parses to the same result and its last proper prefix asks for more; a refusal
 * or a header stays so whatever bytes follow; "need more" never outlasts the bounds; a v1
 * header with addresses prints back to a line that parses to the same addresses. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proxy.h"

static int same_addr(const proxy_addr *a, const proxy_addr *b)
{
    if (a->sa.sa_family != b->sa.sa_family)
        return 0;
    if (a->sa.sa_family == AF_INET)
        return a->in4.sin_port == b->in4.sin_port &&
               memcmp(&a->in4.sin_addr, &b->in4.sin_addr, 4) == 0;
    return a->in6.sin6_port == b->in6.sin6_port &&
           memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, 16) == 0;
}

static void same_header(const proxy_header *a, const proxy_header *b)
{
    FUZZ_CHECK(a->version == b->version && a->local == b->local);
    if (!a->local)
        FUZZ_CHECK(same_addr(&a->src, &b->src) && same_addr(&a->dst, &b->dst));
}

/* Parses an exact-sized heap copy of data[0..len). */
static ssize_t parse_copy(const uint8_t *data, size_t len, proxy_header *h, char *err,
                          size_t errlen)
{
    uint8_t *copy = malloc(len ? len : 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, len);
    err[0] = '\0';
    ssize_t r = proxy_parse(copy, len, h, err, errlen);
    free(copy);
    return r;
}

static void v1_round_trip(const proxy_header *h)
{
    char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN], line[PROXY_V1_MAX + 1];
    int v4 = h->src.sa.sa_family == AF_INET;
    FUZZ_CHECK(h->dst.sa.sa_family == h->src.sa.sa_family);
    const void *s = v4 ? (const void *)&h->src.in4.sin_addr : (const void *)&h->src.in6.sin6_addr;
    const void *d = v4 ? (const void *)&h->dst.in4.sin_addr : (const void *)&h->dst.in6.sin6_addr;
    FUZZ_CHECK(inet_ntop(h->src.sa.sa_family, s, src, sizeof src) != NULL);
    FUZZ_CHECK(inet_ntop(h->dst.sa.sa_family, d, dst, sizeof dst) != NULL);
    unsigned sp = ntohs(v4 ? h->src.in4.sin_port : h->src.in6.sin6_port);
    unsigned dp = ntohs(v4 ? h->dst.in4.sin_port : h->dst.in6.sin6_port);
    int n = snprintf(line, sizeof line, "PROXY %s %s %s %u %u\r\n", v4 ? "TCP4" : "TCP6", src,
                     dst, sp, dp);
    FUZZ_CHECK(n > 0 && n <= PROXY_V1_MAX);
    proxy_header back;
    char err[256];
    FUZZ_CHECK(parse_copy((const uint8_t *)line, (size_t)n, &back, err, sizeof err) == n);
    same_header(h, &back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * PROXY_HEADER_MAX)
        return 0;
    proxy_header h;
    char err[256] = "";
    ssize_t r = proxy_parse(data, size, &h, err, sizeof err);
    if (r < 0) {
        FUZZ_CHECK(r == -1 && err[0] != '\0');
        return 0;
    }
    if (r == 0) {
        /* Incomplete: only while the bounds leave room. */
        FUZZ_CHECK(size < PROXY_HEADER_MAX);
        if (size > 0 && data[0] == 'P')
            FUZZ_CHECK(size < PROXY_V1_MAX);
        return 0;
    }
    size_t len = (size_t)r;
    FUZZ_CHECK(len <= size && len <= PROXY_HEADER_MAX);
    FUZZ_CHECK(h.version == 1 || h.version == 2);
    if (h.version == 1)
        FUZZ_CHECK(len <= PROXY_V1_MAX && data[len - 1] == '\n');
    if (!h.local)
        FUZZ_CHECK(h.src.sa.sa_family == AF_INET || h.src.sa.sa_family == AF_INET6);
    proxy_header alone;
    char err2[256];
    FUZZ_CHECK(parse_copy(data, len, &alone, err2, sizeof err2) == r);
    same_header(&h, &alone);
    FUZZ_CHECK(parse_copy(data, len - 1, &alone, err2, sizeof err2) == 0);
    if (h.version == 1 && !h.local)
        v1_round_trip(&h);
    return 0;
}
