/* bench/common.h — static inline helpers shared by loadgen and baseline (address parsing, clock). */
#ifndef ECHOSRV_BENCH_COMMON_H
#define ECHOSRV_BENCH_COMMON_H

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

/* Monotonic clock in nanoseconds. Any thread. */
static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Parse "HOST:PORT", "[IPv6]:PORT", ":PORT" or "unix:/path" into *ss / *len.
 * An empty host is the wildcard address when passive is set, loopback otherwise.
 * Returns 0, or -1 with a message in err.
 */
static inline int bench_addr_parse(const char *s, int passive, struct sockaddr_storage *ss,
                                   socklen_t *len, char *err, size_t errlen)
{
    char host[256];
    const char *hstart, *port;
    size_t hlen;
    struct addrinfo hints, *res = NULL;
    int rc;

    memset(ss, 0, sizeof(*ss));
    if (strncmp(s, "unix:", 5) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)ss;
        size_t plen = strlen(s + 5);

        if (plen == 0 || plen >= sizeof(sun->sun_path)) {
            snprintf(err, errlen, "%s: bad unix socket path", s);
            return -1;
        }
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, s + 5, plen + 1);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
        return 0;
    }
    if (s[0] == '[') {
        const char *end = strchr(s, ']');

        if (end == NULL || end[1] != ':') {
            snprintf(err, errlen, "%s: expected [IPv6]:PORT", s);
            return -1;
        }
        hstart = s + 1;
        hlen = (size_t)(end - hstart);
        port = end + 2;
    } else {
        const char *colon = strrchr(s, ':');

        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL) {
            snprintf(err, errlen, "%s: expected HOST:PORT, [IPv6]:PORT or unix:/path", s);
            return -1;
        }
        hstart = s;
        hlen = (size_t)(colon - s);
        port = colon + 1;
    }
    if (hlen >= sizeof(host) || *port == '\0') {
        snprintf(err, errlen, "%s: bad host or port", s);
        return -1;
    }
    memcpy(host, hstart, hlen);
    host[hlen] = '\0';

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    rc = getaddrinfo(hlen ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s", s, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* Format a socket address as "HOST:PORT", "[IPv6]:PORT" or "unix:/path" into buf. */
static inline const char *bench_addr_format(const struct sockaddr_storage *ss, char *buf,
                                            size_t buflen)
{
    char host[INET6_ADDRSTRLEN];

    switch (ss->ss_family) {
    case AF_INET: {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

        inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        snprintf(buf, buflen, "%s:%u", host, ntohs(sin->sin_port));
        break;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

        inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        snprintf(buf, buflen, "[%s]:%u", host, ntohs(sin6->sin6_port));
        break;
    }
    case AF_UNIX:
        snprintf(buf, buflen, "unix:%s", ((const struct sockaddr_un *)ss)->sun_path);
        break;
    default:
        snprintf(buf, buflen, "?");
    }
    return buf;
}

#endif
