/* addr.c - parsing and formatting of socket addresses. */
#define _GNU_SOURCE
#include "addr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static int parse_port(const char *p, const char *text, int *port, char *err, size_t errlen)
{
    if (*p == '\0') {
        snprintf(err, errlen, "address '%s': missing port", text);
        return -1;
    }
    long v = 0;
    for (const char *q = p; *q != '\0'; q++) {
        if (!isdigit((unsigned char)*q) || v > 65535) {
            snprintf(err, errlen, "address '%s': bad port '%s'", text, p);
            return -1;
        }
        v = v * 10 + (*q - '0');
    }
    if (v > 65535) {
        snprintf(err, errlen, "address '%s': port %ld out of range 0-65535", text, v);
        return -1;
    }
    *port = (int)v;
    return 0;
}

static int parse_unix(const char *text, addr *out, char *err, size_t errlen)
{
    const char *path = text + 5;
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
    size_t n = strlen(path);
    if (n == 0) {
        snprintf(err, errlen, "address '%s': empty unix socket path", text);
        return -1;
    }
    if (n >= sizeof(sun->sun_path)) {
        snprintf(err, errlen, "address '%s': unix socket path longer than %zu bytes",
                 text, sizeof(sun->sun_path) - 1);
        return -1;
    }
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n + 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

int addr_parse(const char *text, addr *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (strncmp(text, "unix:", 5) == 0)
        return parse_unix(text, out, err, errlen);

    char host[256];
    const char *portp;
    int port;
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (end == NULL) {
            snprintf(err, errlen, "address '%s': missing ']'", text);
            return -1;
        }
        if (end[1] != ':') {
            snprintf(err, errlen, "address '%s': expected ':PORT' after ']'", text);
            return -1;
        }
        size_t hl = (size_t)(end - text - 1);
        if (hl == 0 || hl >= sizeof host) {
            snprintf(err, errlen, "address '%s': bad IPv6 address", text);
            return -1;
        }
        memcpy(host, text + 1, hl);
        host[hl] = '\0';
        portp = end + 2;
        if (parse_port(portp, text, &port, err, errlen) < 0)
            return -1;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
            snprintf(err, errlen, "address '%s': '%s' is not an IPv6 address", text, host);
            return -1;
        }
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        out->len = sizeof *s6;
        return 0;
    }

    const char *colon = strrchr(text, ':');
    if (colon == NULL) {
        snprintf(err, errlen, "address '%s': expected HOST:PORT, :PORT, [IPv6]:PORT or unix:/path",
                 text);
        return -1;
    }
    if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
        snprintf(err, errlen, "address '%s': write IPv6 addresses as [ADDRESS]:PORT", text);
        return -1;
    }
    size_t hl = (size_t)(colon - text);
    if (hl >= sizeof host) {
        snprintf(err, errlen, "address '%s': host name too long", text);
        return -1;
    }
    memcpy(host, text, hl);
    host[hl] = '\0';
    if (parse_port(colon + 1, text, &port, err, errlen) < 0)
        return -1;

    if (hl == 0) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_any;
        s6->sin6_port = htons((uint16_t)port);
        out->len = sizeof *s6;
        out->any = 1;
        return 0;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        out->len = sizeof *s4;
        return 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, errlen, "address '%s': cannot resolve '%s': %s", text, host,
                 rc != 0 ? gai_strerror(rc) : "no address");
        return -1;
    }
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    if (res->ai_family == AF_INET)
        ((struct sockaddr_in *)&out->ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&out->ss)->sin6_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

int addr_parse_list(const char *text, addr **out, size_t *n, char *err, size_t errlen)
{
    /* Count the items and refuse empty ones before resolving any name. */
    size_t count = 1;
    int blank = 1;
    for (const char *p = text;; p++) {
        if (*p == ',' || *p == '\0') {
            if (blank) {
                snprintf(err, errlen, "empty address in list '%s'", text);
                return -1;
            }
            if (*p == '\0')
                break;
            count++;
            blank = 1;
        } else if (!isspace((unsigned char)*p)) {
            blank = 0;
        }
    }
    addr *v = calloc(count, sizeof *v);
    char *copy = strdup(text);
    if (v == NULL || copy == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    size_t k = 0;
    char *cursor = copy, *tok;
    while ((tok = strsep(&cursor, ",")) != NULL) {
        while (isspace((unsigned char)*tok))
            tok++;
        char *end = tok + strlen(tok);
        while (end > tok && isspace((unsigned char)end[-1]))
            *--end = '\0';
        if (addr_parse(tok, &v[k], err, errlen) < 0)
            goto fail;
        k++;
    }
    free(copy);
    *out = v;
    *n = k;
    return 0;
fail:
    free(copy);
    free(v);
    return -1;
}

char *addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN];
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        snprintf(out, outlen, "%s:%u", host, ntohs(s4->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], host, sizeof host);
            snprintf(out, outlen, "%s:%u", host, ntohs(s6->sin6_port));
        } else {
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
            snprintf(out, outlen, "[%s]:%u", host, ntohs(s6->sin6_port));
        }
        break;
    }
    case AF_UNIX: {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;
        size_t plen = len > offsetof(struct sockaddr_un, sun_path)
                          ? len - offsetof(struct sockaddr_un, sun_path)
                          : 0;
        if (plen == 0 || sun->sun_path[0] == '\0')
            snprintf(out, outlen, "unix:");
        else
            snprintf(out, outlen, "unix:%.*s", (int)strnlen(sun->sun_path, plen), sun->sun_path);
        break;
    }
    default:
        snprintf(out, outlen, "(family %d)", sa->sa_family);
    }
    return out;
}

int addr_equal(const addr *x, const addr *y)
{
    return x->len == y->len && x->any == y->any && memcmp(&x->ss, &y->ss, x->len) == 0;
}
