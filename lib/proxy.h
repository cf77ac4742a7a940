/* proxy.h - the PROXY protocol header (HAProxy's, versions 1 and 2): a pure, bounded parser. */
#ifndef ES_PROXY_H
#define ES_PROXY_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define PROXY_V1_MAX 107      /* the longest v1 line, "\r\n" included (the spec's bound) */
#define PROXY_V2_SIG_LEN 12
#define PROXY_V2_FIXED 16     /* signature, version/command, family, length */
#define PROXY_HEADER_MAX 4096 /* a longer v2 header (its TLVs) is refused as oversized */

/* An address from a header: IPv4 or IPv6 with its port. */
typedef union proxy_addr {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
} proxy_addr;

/* What a complete header says. */
typedef struct proxy_header {
    int version;      /* 1 or 2 */
    int local;        /* 1: v1 UNKNOWN, v2 LOCAL or an UNSPEC family: no addresses, the
                       * connection's own endpoints stand (a proxy's health check) */
    proxy_addr src;   /* the client (unless local) */
    proxy_addr dst;   /* the address the client connected to (unless local) */
} proxy_header;

/* Parse the PROXY header at the start of data[0..len): v1 ("PROXY TCP4|TCP6|UNKNOWN ...\r\n",
 * at most PROXY_V1_MAX bytes) or v2 (the 12-byte signature, PROXY over TCP/IPv4 or TCP/IPv6,
 * or LOCAL; TLVs skipped after a bounds check; at most PROXY_HEADER_MAX bytes in all).
 * Reads no byte past the header. Returns the header's length (> 0) with *out filled; 0 when
 * data is a proper prefix of a header that may still be valid (read more); or -1 with a
 * one-line reason in err (malformed, unsupported, oversized). Pure: no allocation, any
 * thread. */
ssize_t proxy_parse(const uint8_t *data, size_t len, proxy_header *out, char *err,
                    size_t errlen);

#endif
