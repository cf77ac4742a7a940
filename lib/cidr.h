/* cidr.h - CIDR ranges (IPv4 and IPv6): parsing of allow/deny lists and matching of peers. */
#ifndef ES_CIDR_H
#define ES_CIDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* One range: the network with its host bits zero. IPv4 uses net[0..4).
 * An IPv4-mapped IPv6 range (::ffff:a.b.c.d/96+) is stored as IPv4. */
typedef struct cidr {
    uint8_t family;   /* AF_INET or AF_INET6 */
    uint8_t prefix;   /* 0..32 or 0..128 */
    uint8_t net[16];
} cidr;

/* Parse "ADDR/PREFIX" or a bare ADDR (/32, /128). Host bits past the prefix
 * must be zero. Returns 0, or -1 with a message in err. Any thread. */
int cidr_parse(const char *text, cidr *out, char *err, size_t errlen);

/* Parse a comma-separated list (spaces around items allowed; an empty or
 * blank text is an empty list: *out NULL, *n 0). On success the caller
 * frees *out with free(). Returns 0, or -1 with a message in err. */
int cidr_parse_list(const char *text, cidr **out, size_t *n, char *err, size_t errlen);

/* Whether the address of sa (AF_INET or AF_INET6; an IPv4-mapped IPv6
 * address is matched as IPv4) lies in one of list[0..n). Other families
 * never match. No allocation; any thread. Returns 1 or 0. */
int cidr_list_match(const cidr *list, size_t n, const struct sockaddr *sa);

#endif
