/* frame.c - separator framing and C-style escape decoding. */
#define _GNU_SOURCE
#include "frame.h"

#include <stdio.h>
#include <string.h>

/* A separator of 2 to SHORT_SEP_MAX bytes is looked for STRIDE positions at
 * a time, in vectors of BLOCK bytes: one compare finds where its first byte
 * is, another where its last byte is (m - 1 further on), and only a stride
 * with a position that has both is searched in full (find_tail). Bodies that
 * hold neither byte (text, most binary data) stream through at vector
 * speed, so a long message's scan costs little beside its copies, and no
 * set-up is paid per message. Any input costs at most SHORT_SEP_MAX - 1
 * compares per byte. A longer separator goes to memmem (Two-Way, linear
 * whatever its bytes). The vectors are GCC's generic ones (frame_scan.h):
 * 16 bytes (SSE2 on any x86-64, NEON on arm64; 30 to 36 GB/s on one core
 * here), or 32 bytes on x86-64 with AVX2 (45 to 48 GB/s): in a build for
 * AVX2 (-march=x86-64-v3) always, in any other x86-64 build when the CPU
 * has it, chosen at each call (a flag libgcc set at start; no ifunc).
 * Vectors wider than the code's target would be split into scalar code
 * (0.5 GB/s): each width is compiled for a target that has it. */
#define SHORT_SEP_MAX 16
#define STRIDE 128 /* positions tested at once */

#if defined(__x86_64__) && !defined(__AVX2__) && !defined(FRAME_NO_DISPATCH) && \
    (defined(__GNUC__) || defined(__clang__))
#define AVX2_AT_RUN_TIME 1
#else
#define AVX2_AT_RUN_TIME 0
#endif

/* Positions [0, n - m] of hay, by memchr on the separator's last byte and a
 * compare of the rest: what is left after the strides (less than
 * STRIDE + m - 1 bytes), or a stride in which the vector test found a
 * candidate. */
static const uint8_t *find_tail(const uint8_t *hay, size_t n, const uint8_t *sep, size_t m)
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

/* find_native: the widest vectors the build's target has. */
#ifdef __AVX2__
#define SCAN_BLOCK 32
#else
#define SCAN_BLOCK 16
#endif
#define SCAN_NAME(x) x##_native
#define SCAN_ATTR
#include "frame_scan.h"
#undef SCAN_BLOCK
#undef SCAN_NAME
#undef SCAN_ATTR

#if AVX2_AT_RUN_TIME
/* find_avx2: 32-byte vectors, compiled for AVX2, called where the CPU has it. */
#define SCAN_BLOCK 32
#define SCAN_NAME(x) x##_avx2
#define SCAN_ATTR __attribute__((target("avx2")))
#include "frame_scan.h"
#undef SCAN_BLOCK
#undef SCAN_NAME
#undef SCAN_ATTR
#endif

static const uint8_t *find_short(const uint8_t *hay, size_t n, const uint8_t *sep, size_t m)
{
#if AVX2_AT_RUN_TIME
    if (__builtin_cpu_supports("avx2"))
        return find_avx2(hay, n, sep, m);
#endif
    return find_native(hay, n, sep, m);
}

static const uint8_t *find_sep(const uint8_t *hay, size_t n, const uint8_t *sep, size_t m)
{
    if (m == 1)
        return memchr(hay, sep[0], n);
    if (m > SHORT_SEP_MAX)
        return memmem(hay, n, sep, m);
    return find_short(hay, n, sep, m);
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
