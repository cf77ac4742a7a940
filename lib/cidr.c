/* cidr.c - parses CIDR ranges and matches socket addresses against lists of them. */
#include "cidr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CIDR_TEXT_MAX 64

static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Whether the first prefix bits of a and b are equal. */
static int prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned bytes = prefix / 8, bits = prefix % 8;
    if (memcmp(a, b, bytes) != 0)
        return 0;
    if (bits == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff00u >> bits);
    return ((a[bytes] ^ b[bytes]) & mask) == 0;
}

/* Whether any bit past prefix in the first len bytes of a is set. */
static int host_bits_set(const uint8_t *a, unsigned prefix, unsigned len)
{
    for (unsigned i = 0; i < len; i++) {
        unsigned lo = i * 8;
        uint8_t mask = prefix >= lo + 8 ? 0 : prefix <= lo ? 0xff : (uint8_t)(0xffu >> (prefix - lo));
        if (a[i] & mask)
            return 1;
    }
    return 0;
}

int cidr_parse(const char *text, cidr *out, char *err, size_t errlen)
{
    char host[CIDR_TEXT_MAX];
    const char *slash = strchr(text, '/');
    size_t hlen = slash ? (size_t)(slash - text) : strlen(text);
    if (hlen == 0 || hlen >= sizeof host) {
        snprintf(err, errlen, "'%s' is not an address or ADDRESS/PREFIX", text);
        return -1;
    }
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    memset(out, 0, sizeof *out);
    unsigned max;
    if (inet_pton(AF_INET, host, out->net) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, out->net) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        snprintf(err, errlen, "'%s' is not an IPv4 or IPv6 address", host);
        return -1;
    }
    unsigned prefix = max;
    if (slash != NULL) {
        const char *p = slash + 1;
        if (!isdigit((unsigned char)*p) || strlen(p) > 3 || p[strspn(p, "0123456789")] != '\0') {
            snprintf(err, errlen, "'%s': bad prefix length '%s'", text, p);
            return -1;
        }
        prefix = (unsigned)atoi(p);
        if (prefix > max) {
            snprintf(err, errlen, "'%s': prefix length %u is more than %u for IPv%d", text,
                     prefix, max, max == 32 ? 4 : 6);
            return -1;
        }
    }
    if (host_bits_set(out->net, prefix, max / 8)) {
        snprintf(err, errlen, "'%s': address has bits set past the /%u prefix", text, prefix);
        return -1;
    }
    out->prefix = (uint8_t)prefix;
    if (out->family == AF_INET6 && prefix >= 96 && memcmp(out->net, v4mapped, 12) == 0) {
        memmove(out->net, out->net + 12, 4);
        memset(out->net + 4, 0, 12);
        out->family = AF_INET;
        out->prefix = (uint8_t)(prefix - 96);
    }
    return 0;
}

int cidr_parse_list(const char *text, cidr **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    size_t cap = 1;
    for (const char *p = text; *p; p++)
        cap += *p == ',';
    cidr *list = NULL;
    size_t count = 0;
    const char *p = text;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0')
        return 0;
    list = calloc(cap, sizeof *list);
    if (list == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        char item[CIDR_TEXT_MAX];
        if (len == 0) {
            snprintf(err, errlen, "empty item in list");
            goto fail;
        }
        if (len >= sizeof item) {
            snprintf(err, errlen, "'%.*s' is not an address or ADDRESS/PREFIX", (int)len, p);
            goto fail;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (cidr_parse(item, &list[count], err, errlen) < 0)
            goto fail;
        count++;
        if (end == NULL)
            break;
        p = end + 1;
    }
    *out = list;
    *n = count;
    return 0;
fail:
    free(list);
    return -1;
}

int cidr_list_match(const cidr *list, size_t n, const struct sockaddr *sa)
{
    const uint8_t *a;
    int family;
    if (sa->sa_family == AF_INET) {
        family = AF_INET;
        a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        family = AF_INET6;
        if (memcmp(a, v4mapped, 12) == 0) {
            family = AF_INET;
            a += 12;
        }
    } else {
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (list[i].family == family && prefix_equal(list[i].net, a, list[i].prefix))
            return 1;
    return 0;
}
