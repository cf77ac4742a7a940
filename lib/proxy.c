/* proxy.c - parses HAProxy's PROXY protocol header, v1 (text) and v2 (binary), from a buffer. */
#include "proxy.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v2_sig[PROXY_V2_SIG_LEN] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_sig[] = "PROXY ";

static ssize_t fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static ssize_t fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* A decimal port: "0" or 1 to 5 digits without a leading zero, at most 65535. */
static int parse_port(const char *s, uint16_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5 || s[strspn(s, "0123456789")] != '\0' || (n > 1 && s[0] == '0'))
        return -1;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned long)(s[i] - '0');
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

/* One address of a v1 line into a. Returns 0 or -1. */
static int v1_addr(int family, const char *ip, const char *port, proxy_addr *a)
{
    uint16_t p;
    memset(a, 0, sizeof *a);
    if (parse_port(port, &p) < 0)
        return -1;
    if (family == AF_INET) {
        a->in4.sin_family = AF_INET;
        a->in4.sin_port = htons(p);
        return inet_pton(AF_INET, ip, &a->in4.sin_addr) == 1 ? 0 : -1;
    }
    a->in6.sin6_family = AF_INET6;
    a->in6.sin6_port = htons(p);
    return inet_pton(AF_INET6, ip, &a->in6.sin6_addr) == 1 ? 0 : -1;
}

/* "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN[ anything]\r\n". */
static ssize_t parse_v1(const uint8_t *data, size_t len, proxy_header *out, char *err,
                        size_t errlen)
{
    size_t n = len < PROXY_V1_MAX ? len : PROXY_V1_MAX;
    size_t sig = sizeof v1_sig - 1;
    if (memcmp(data, v1_sig, n < sig ? n : sig) != 0)
        return fail(err, errlen, "not a PROXY header (v1 signature expected)");
    const uint8_t *lf = memchr(data, '\n', n);
    if (lf == NULL) {
        if (len >= PROXY_V1_MAX)
            return fail(err, errlen, "oversized v1 header: no end of line within %d bytes",
                        PROXY_V1_MAX);
        return 0;
    }
    size_t end = (size_t)(lf - data); /* index of '\n' */
    if (end < sig + 1 || data[end - 1] != '\r')
        return fail(err, errlen, "malformed v1 header: the line does not end with CRLF");
    char line[PROXY_V1_MAX + 1];
    size_t ll = end - 1 - sig;
    memcpy(line, data + sig, ll);
    line[ll] = '\0';
    if (strlen(line) != ll || strchr(line, '\r') != NULL)
        return fail(err, errlen, "malformed v1 header: NUL or CR inside the line");

    /* Single spaces between fields: an empty field is an error. */
    char *field[6];
    int nf = 0;
    char *p = line;
    for (;;) {
        if (nf == 6)
            return fail(err, errlen, "malformed v1 header: too many fields");
        field[nf++] = p;
        char *sp = strchr(p, ' ');
        if (sp == NULL)
            break;
        *sp = '\0';
        p = sp + 1;
        if (strcmp(field[0], "UNKNOWN") == 0)
            break; /* the rest is ignored */
    }
    for (int i = 0; i < nf; i++)
        if (field[i][0] == '\0')
            return fail(err, errlen, "malformed v1 header: empty field (two spaces?)");
    memset(out, 0, sizeof *out);
    out->version = 1;
    if (strcmp(field[0], "UNKNOWN") == 0) {
        out->local = 1;
        return (ssize_t)end + 1;
    }
    int family;
    if (strcmp(field[0], "TCP4") == 0)
        family = AF_INET;
    else if (strcmp(field[0], "TCP6") == 0)
        family = AF_INET6;
    else
        return fail(err, errlen, "unsupported v1 protocol '%.16s' (TCP4, TCP6 or UNKNOWN)",
                    field[0]);
    if (nf != 5)
        return fail(err, errlen, "malformed v1 header: %d fields after %s, expected 4", nf - 1,
                    field[0]);
    if (v1_addr(family, field[1], field[3], &out->src) < 0)
        return fail(err, errlen, "malformed v1 header: bad source address '%.46s' port '%.8s'",
                    field[1], field[3]);
    if (v1_addr(family, field[2], field[4], &out->dst) < 0)
        return fail(err, errlen,
                    "malformed v1 header: bad destination address '%.46s' port '%.8s'",
                    field[2], field[4]);
    return (ssize_t)end + 1;
}

static void v2_addr4(const uint8_t *ip, const uint8_t *port, proxy_addr *a)
{
    memset(a, 0, sizeof *a);
    a->in4.sin_family = AF_INET;
    memcpy(&a->in4.sin_addr, ip, 4);
    memcpy(&a->in4.sin_port, port, 2); /* both in network order */
}

static void v2_addr6(const uint8_t *ip, const uint8_t *port, proxy_addr *a)
{
    memset(a, 0, sizeof *a);
    a->in6.sin6_family = AF_INET6;
    memcpy(&a->in6.sin6_addr, ip, 16);
    memcpy(&a->in6.sin6_port, port, 2);
}

/* The 16 fixed bytes, the addresses, then TLVs (type, 16-bit length, value). */
static ssize_t parse_v2(const uint8_t *data, size_t len, proxy_header *out, char *err,
                        size_t errlen)
{
    if (memcmp(data, v2_sig, len < PROXY_V2_SIG_LEN ? len : PROXY_V2_SIG_LEN) != 0)
        return fail(err, errlen, "not a PROXY header (bad v2 signature)");
    if (len < PROXY_V2_FIXED)
        return 0;
    unsigned ver = data[12] >> 4, cmd = data[12] & 0x0F, fam = data[13];
    size_t alen = (size_t)data[14] << 8 | data[15];
    size_t total = PROXY_V2_FIXED + alen;
    if (ver != 2)
        return fail(err, errlen, "unsupported v2 version %u", ver);
    if (cmd > 1)
        return fail(err, errlen, "unknown v2 command %u (LOCAL or PROXY expected)", cmd);
    if (total > PROXY_HEADER_MAX)
        return fail(err, errlen, "oversized v2 header: %zu bytes, at most %d", total,
                    PROXY_HEADER_MAX);
    size_t need = 0;
    if (cmd == 1) {
        switch (fam) {
        case 0x00: break;             /* UNSPEC: no addresses */
        case 0x11: need = 12; break;  /* TCP over IPv4 */
        case 0x21: need = 36; break;  /* TCP over IPv6 */
        default:
            return fail(err, errlen,
                        "unsupported v2 address family/protocol 0x%02x (TCP over IPv4 or IPv6 "
                        "expected)", fam);
        }
        if (alen < need)
            return fail(err, errlen, "malformed v2 header: %zu address bytes, %zu needed",
                        alen, need);
    }
    if (len < total)
        return 0;
    memset(out, 0, sizeof *out);
    out->version = 2;
    if (cmd == 0 || fam == 0x00) {
        out->local = 1;
        return (ssize_t)total; /* the address block and TLVs are ignored */
    }
    const uint8_t *a = data + PROXY_V2_FIXED;
    if (fam == 0x11) {
        v2_addr4(a, a + 8, &out->src);
        v2_addr4(a + 4, a + 10, &out->dst);
    } else {
        v2_addr6(a, a + 32, &out->src);
        v2_addr6(a + 16, a + 34, &out->dst);
    }
    for (size_t p = PROXY_V2_FIXED + need; p < total;) {
        if (total - p < 3)
            return fail(err, errlen, "malformed v2 header: truncated TLV at byte %zu", p);
        size_t tlen = (size_t)data[p + 1] << 8 | data[p + 2];
        if (tlen > total - p - 3)
            return fail(err, errlen, "malformed v2 header: TLV at byte %zu runs past the end", p);
        p += 3 + tlen;
    }
    return (ssize_t)total;
}

ssize_t proxy_parse(const uint8_t *data, size_t len, proxy_header *out, char *err,
                    size_t errlen)
{
    if (len == 0)
        return 0;
    if (data[0] == 'P')
        return parse_v1(data, len, out, err, errlen);
    if (data[0] == v2_sig[0])
        return parse_v2(data, len, out, err, errlen);
    return fail(err, errlen, "not a PROXY header (first byte 0x%02x)", data[0]);
}
