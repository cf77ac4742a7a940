/* frame.c - separator framing and C-style escape decoding. */
#define _GNU_SOURCE
#include "frame.h"

#include <stdio.h>
#include <string.h>

/* A separator of at most SHORT_SEP_MAX bytes is first looked for in the
 * next SHORT_SPAN bytes with memchr on its last byte and a compare of the
 * rest: a small message, alone or among pipelined ones, costs a few
 * instructions, where memmem first clears a 256-byte shift table. That
 * window costs at most SHORT_SEP_MAX - 1 compares per byte; past it, memmem
 * (Two-Way) keeps a long message's scan linear whatever its bytes. */
#define SHORT_SPAN 256
#define SHORT_SEP_MAX 16

static const uint8_t *find_short(const uint8_t *hay, size_t n, const uint8_t *sep, size_t m)
{
    const uint8_t *p = hay + m - 1, *end = hay + n;
    uint8_t last = sep[m - 1];
    while (p < end && (p = memchr(p, last, (size_t)(end - p))) != NULL) {
        const uint8_t *start = p - (m - 1);
        size_t k = 0;
        while (k < m - 1 && start[k] == sep[k]) /* a few bytes: no call */
            k++;
        if (k == m - 1)
            return start;
        p++;
    }
    return NULL;
}

static const uint8_t *find_sep(const uint8_t *hay, size_t n, const uint8_t *sep, size_t m)
{
    if (m > SHORT_SEP_MAX)
        return memmem(hay, n, sep, m);
    if (n <= SHORT_SPAN)
        return find_short(hay, n, sep, m);
    const uint8_t *hit = find_short(hay, SHORT_SPAN, sep, m);
    if (hit != NULL)
        return hit;
    /* The rest, from the last position the window could not finish. */
    size_t from = SHORT_SPAN - (m - 1);
    return memmem(hay + from, n - from, sep, m);
}

size_t frame_next(frame_scan *fs, const uint8_t *data, size_t len)
{
    size_t from = fs->scanned >= fs->sep_len ? fs->scanned - (fs->sep_len - 1) : 0;
    if (len < fs->sep_len || from > len - fs->sep_len) {
        fs->scanned = len;
        return 0;
    }
    const uint8_t *hit = find_sep(data + from, len - from, fs->sep, fs->sep_len);
    if (hit == NULL) {
        fs->scanned = len;
        return 0;
    }
    fs->scanned = 0;
    return (size_t)(hit - data) + fs->sep_len;
}

size_t frame_pass(frame_scan *fs, const uint8_t *data, size_t len)
{
    size_t keep = fs->sep_len - 1 < len ? fs->sep_len - 1 : len;
    while (keep > 0 && memcmp(data + len - keep, fs->sep, keep) != 0)
        keep--;
    fs->scanned = keep;
    return len - keep;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

ssize_t unescape(const char *text, uint8_t *out, size_t cap, char *err, size_t errlen)
{
    size_t n = 0;
    for (const char *p = text; *p != '\0'; p++) {
        int c = (unsigned char)*p;
        if (c == '\\') {
            p++;
            switch (*p) {
            case 'r': c = '\r'; break;
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'a': c = '\a'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'v': c = '\v'; break;
            case 'e': c = 0x1b; break;
            case '\\': c = '\\'; break;
            case '"': c = '"'; break;
            case '\'': c = '\''; break;
            case 'x': {
                int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
                if (hi < 0) {
                    snprintf(err, errlen, "bad escape '\\x': expected hex digits");
                    return -1;
                }
                if (lo < 0) {
                    c = hi;
                    p += 1;
                } else {
                    c = hi * 16 + lo;
                    p += 2;
                }
                break;
            }
            case '0': case '1': case '2': case '3':
            case '4': case '5': case '6': case '7': {
                c = 0;
                int k = 0;
                while (k < 3 && *p >= '0' && *p <= '7') {
                    c = c * 8 + (*p - '0');
                    p++;
                    k++;
                }
                p--;
                if (c > 255) {
                    snprintf(err, errlen, "bad escape: octal value above \\377");
                    return -1;
                }
                break;
            }
            case '\0':
                snprintf(err, errlen, "bad escape: '\\' at end of value");
                return -1;
            default:
                snprintf(err, errlen, "bad escape '\\%c'", *p);
                return -1;
            }
        }
        if (n == cap) {
            snprintf(err, errlen, "value too long (more than %zu bytes)", cap);
            return -1;
        }
        out[n++] = (uint8_t)c;
    }
    return (ssize_t)n;
}
