/* addr.h - parsing and formatting of the address forms echosrv and its client accept. */
#ifndef ES_ADDR_H
#define ES_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

#define ADDR_TEXT_MAX 128

/* One socket address: HOST:PORT, :PORT (every interface), [IPv6]:PORT or
 * unix:/path. */
typedef struct addr {
    struct sockaddr_storage ss;
    socklen_t len;
    int any; /* ":PORT": the IPv6 wildcard, dual-stack where possible */
} addr;

/* Parse one address. Host names are resolved (first result); ports are
 * decimal 0..65535. Returns 0, or -1 with a message in err. Any thread
 * (it may block in name resolution). */
int addr_parse(const char *text, addr *out, char *err, size_t errlen);

/* Parse a comma-separated list (spaces around items allowed). On success
 * *out is a new array of *n >= 1 addresses that the caller frees with
 * free(). Returns 0, or -1 with a message in err. */
int addr_parse_list(const char *text, addr **out, size_t *n, char *err, size_t errlen);

/* Whether x and y are the same address, as parsed (the :PORT wildcard flag
 * included). */
int addr_equal(const addr *x, const addr *y);

/* Format a socket address as text in the forms addr_parse reads:
 * "127.0.0.1:80", "[::1]:80", "unix:/path". Always NUL-terminates. Returns
 * out. */
char *addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen);

#endif
