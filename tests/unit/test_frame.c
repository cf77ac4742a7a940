/* test_frame.c - unit tests of separator framing and escape decoding (lib/frame.c). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

#define CRLF2 "\r\n\r\n"

#define assert_contains(hay, needle)                                           \
    do {                                                                       \
        if (strstr((hay), (needle)) == NULL)                                   \
            fail_msg("'%s' does not contain '%s'", (hay), (needle));           \
    } while (0)

static frame_scan scanner(const char *sep, size_t sep_len)
{
    frame_scan fs = {.sep = (const uint8_t *)sep, .sep_len = sep_len, .scanned = 0};
    return fs;
}

/* Feeds msg (which holds one frame, ending with the separator, and nothing
 * else) as the server does: the growing prefix up to each cut, then all of
 * it. cuts are increasing positions in (0, len). Checks that only the last
 * call finds the frame and that scanned follows the input. */
static void feed_cuts(const char *sep, size_t sep_len, const uint8_t *msg, size_t len,
                      const size_t *cuts, size_t ncuts)
{
    frame_scan fs = scanner(sep, sep_len);
    for (size_t k = 0; k < ncuts; k++) {
        size_t r = frame_next(&fs, msg, cuts[k]);
        if (r != 0)
            fail_msg("cut %zu of %zu at %zu: got frame %zu, expected none", k, ncuts, cuts[k], r);
        assert_int_equal(fs.scanned, cuts[k]);
    }
    assert_int_equal(frame_next(&fs, msg, len), len);
    assert_int_equal(fs.scanned, 0);
}

/* Every way to cut msg into 2 and into 3 non-empty pieces. */
static void every_split(const char *sep, size_t sep_len, const uint8_t *msg, size_t len)
{
    feed_cuts(sep, sep_len, msg, len, NULL, 0);
    for (size_t i = 1; i < len; i++) {
        size_t cuts[1] = {i};
        feed_cuts(sep, sep_len, msg, len, cuts, 1);
        for (size_t j = i + 1; j < len; j++) {
            size_t cuts2[2] = {i, j};
            feed_cuts(sep, sep_len, msg, len, cuts2, 2);
        }
    }
}

static void test_one_piece(void **state)
{
    (void)state;
    frame_scan fs = scanner(CRLF2, 4);
    const uint8_t *m = (const uint8_t *)"Hello!" CRLF2;
    assert_int_equal(frame_next(&fs, m, 10), 10);
    assert_int_equal(fs.scanned, 0);

    /* Only the separator: an empty message. */
    fs = scanner(CRLF2, 4);
    assert_int_equal(frame_next(&fs, (const uint8_t *)CRLF2, 4), 4);

    /* No separator yet. */
    fs = scanner(CRLF2, 4);
    assert_int_equal(frame_next(&fs, m, 6), 0);
    assert_int_equal(fs.scanned, 6);

    /* Nothing at all. */
    fs = scanner(CRLF2, 4);
    assert_int_equal(frame_next(&fs, m, 0), 0);
    assert_int_equal(fs.scanned, 0);
}

static void test_frame_ends_at_first_separator(void **state)
{
    (void)state;
    frame_scan fs = scanner(CRLF2, 4);
    const char *m = "ab" CRLF2 CRLF2 "cd";
    assert_int_equal(frame_next(&fs, (const uint8_t *)m, strlen(m)), 6);
    /* Overlapping candidates: "\r\n\r\n\r\n" ends after the first four. */
    fs = scanner(CRLF2, 4);
    assert_int_equal(frame_next(&fs, (const uint8_t *)"x\r\n\r\n\r\n", 7), 5);
    /* A separator of repeated bytes found at its first complete place. */
    fs = scanner("aa", 2);
    assert_int_equal(frame_next(&fs, (const uint8_t *)"baaa", 4), 3);
}

static void test_every_split_short(void **state)
{
    (void)state;
    const char *m = "Hello!" CRLF2;
    every_split(CRLF2, 4, (const uint8_t *)m, strlen(m));
}

static void test_every_split_long(void **state)
{
    (void)state;
    const char *m = "The quick brown fox\r\njumps over\r\n\rthe lazy dog.\r\r\n\n" CRLF2;
    every_split(CRLF2, 4, (const uint8_t *)m, strlen(m));
}

static void test_every_split_separator_only(void **state)
{
    (void)state;
    every_split(CRLF2, 4, (const uint8_t *)CRLF2, 4);
}

static void test_every_split_binary(void **state)
{
    (void)state;
    /* NUL bytes and partial separators ("\r\n\r", "\r\n", "\r") inside. */
    static const uint8_t m[] = {0, 'a', '\r', '\n', '\r', 0, '\r', '\n', '\r', 'b', 0,
                                '\r', '\r', '\n', 0xff, '\n', '\r', '\n', '\r',
                                '\r', '\n', '\r', '\n'};
    every_split(CRLF2, 4, m, sizeof m);
}

static void test_binary_one_piece(void **state)
{
    (void)state;
    static const uint8_t m[] = {'\r', '\n', '\r', 0, '\r', '\n', '\r', '\0', 'x',
                                '\r', '\n', '\r', '\n', 'y'};
    frame_scan fs = scanner(CRLF2, 4);
    assert_int_equal(frame_next(&fs, m, sizeof m), 13);
    /* A separator that contains NUL bytes. */
    static const uint8_t z[] = {'a', 0, 0, 'b', 0, 0, 0, 'c'};
    fs = scanner("\0\0\0", 3);
    assert_int_equal(frame_next(&fs, z, sizeof z), 7);
}

static void test_pipelining(void **state)
{
    (void)state;
    const char *in = "one" CRLF2 CRLF2 "three\r\n\r" CRLF2 "four" CRLF2 "tail\r\n";
    static const char *const want[] = {"one" CRLF2, CRLF2, "three\r\n\r" CRLF2, "four" CRLF2};
    const uint8_t *p = (const uint8_t *)in;
    size_t left = strlen(in);
    frame_scan fs = scanner(CRLF2, 4);
    for (size_t i = 0; i < 4; i++) {
        size_t r = frame_next(&fs, p, left);
        assert_int_equal(r, strlen(want[i]));
        assert_memory_equal(p, want[i], r);
        assert_int_equal(fs.scanned, 0);
        p += r;
        left -= r;
    }
    assert_int_equal(left, 6);
    assert_int_equal(frame_next(&fs, p, left), 0);
    assert_int_equal(fs.scanned, 6);
    /* The rest of the last message arrives. */
    char rest[16];
    memcpy(rest, p, left);
    memcpy(rest + left, "\r\n", 2);
    assert_int_equal(frame_next(&fs, (const uint8_t *)rest, left + 2), 8);
}

/* Pipelined messages split everywhere: the server's loop, with each piece
 * appended to the unconsumed input. */
static void test_pipelining_every_split(void **state)
{
    (void)state;
    const char *all = "ab" CRLF2 "\r\n\r" CRLF2 CRLF2 "xyz\r" CRLF2;
    static const char *const want[] = {"ab" CRLF2, "\r\n\r" CRLF2, CRLF2, "xyz\r" CRLF2};
    size_t len = strlen(all);
    for (size_t cut = 0; cut <= len; cut++) {
        uint8_t in[64];
        size_t have = 0, got = 0;
        frame_scan fs = scanner(CRLF2, 4);
        const size_t ends[2] = {cut, len};
        size_t pos = 0;
        for (size_t piece = 0; piece < 2; piece++) {
            memcpy(in + have, all + pos, ends[piece] - pos);
            have += ends[piece] - pos;
            pos = ends[piece];
            size_t r;
            while ((r = frame_next(&fs, in, have)) > 0) {
                assert_true(got < 4);
                assert_int_equal(r, strlen(want[got]));
                assert_memory_equal(in, want[got], r);
                got++;
                memmove(in, in + r, have - r);
                have -= r;
            }
        }
        assert_int_equal(got, 4);
        assert_int_equal(have, 0);
    }
}

static void test_one_byte_separator(void **state)
{
    (void)state;
    const char *m = "hello\n";
    every_split("\n", 1, (const uint8_t *)m, strlen(m));
    frame_scan fs = scanner("\n", 1);
    assert_int_equal(frame_next(&fs, (const uint8_t *)"\n", 1), 1);
    assert_int_equal(frame_next(&fs, (const uint8_t *)"a\nb\n", 4), 2);
    assert_int_equal(frame_next(&fs, (const uint8_t *)"abc", 3), 0);
    assert_int_equal(fs.scanned, 3);
    assert_int_equal(frame_next(&fs, (const uint8_t *)"abc\n", 4), 4);
}

static void test_long_separator(void **state)
{
    (void)state;
    /* 64 bytes (FRAME_SEP_MAX), with a prefix that repeats inside. */
    char sep[FRAME_SEP_MAX + 1];
    for (size_t i = 0; i < FRAME_SEP_MAX; i++)
        sep[i] = (char)('A' + i % 3);
    sep[FRAME_SEP_MAX - 1] = '!';
    sep[FRAME_SEP_MAX] = '\0';
    char m[256];
    /* A body that holds every proper prefix of the separator. */
    size_t n = 0;
    memcpy(m + n, "body:", 5);
    n += 5;
    memcpy(m + n, sep, FRAME_SEP_MAX - 1);
    n += FRAME_SEP_MAX - 1;
    memcpy(m + n, sep, 10);
    n += 10;
    memcpy(m + n, sep, FRAME_SEP_MAX);
    n += FRAME_SEP_MAX;
    every_split(sep, FRAME_SEP_MAX, (const uint8_t *)m, n);
}

/* After a 0 return the bytes already searched are not searched again (only
 * sep_len - 1 of them, for a separator across the boundary). */
static void test_scans_only_new_bytes(void **state)
{
    (void)state;
    uint8_t d[32];
    memset(d, 'a', sizeof d);
    frame_scan fs = scanner(CRLF2, 4);
    assert_int_equal(frame_next(&fs, d, 10), 0);
    assert_int_equal(fs.scanned, 10);
    /* A separator planted in bytes already searched is not seen... */
    memcpy(d, CRLF2, 4);
    assert_int_equal(frame_next(&fs, d, 11), 0);
    assert_int_equal(fs.scanned, 11);
    /* ... while one across the boundary is: bytes 8..10 were searched,
     * byte 11 is new. */
    memcpy(d + 8, "\r\n\r\n", 4);
    assert_int_equal(frame_next(&fs, d, 12), 12);
    assert_int_equal(fs.scanned, 0);

    /* A call with no new bytes finds nothing and keeps scanned. */
    fs = scanner(CRLF2, 4);
    memset(d, 'a', sizeof d);
    assert_int_equal(frame_next(&fs, d, 20), 0);
    assert_int_equal(frame_next(&fs, d, 20), 0);
    assert_int_equal(fs.scanned, 20);
}

static void test_megabyte_byte_by_byte(void **state)
{
    (void)state;
    size_t body = (size_t)1 << 20;
    size_t len = body + 4;
    uint8_t *m = malloc(len);
    assert_non_null(m);
    /* Near-misses everywhere: "\r\n\r" followed by a byte that breaks it. */
    for (size_t i = 0; i < body; i++)
        m[i] = (uint8_t)"\r\n\rx"[i % 4];
    memcpy(m + body, CRLF2, 4);
    frame_scan fs = scanner(CRLF2, 4);
    size_t found = 0;
    for (size_t n = 1; n <= len; n++) {
        size_t r = frame_next(&fs, m, n);
        if (r != 0) {
            found = r;
            assert_int_equal(n, len);
            break;
        }
        if (fs.scanned != n)
            fail_msg("after %zu bytes: scanned %zu", n, fs.scanned);
    }
    assert_int_equal(found, len);
    free(m);
}

/* frame_next in one call against a plain memmem, for data of every length
 * around the short-span limit and separators around the short-separator
 * limit, over a small alphabet so that near-misses abound. */
static void test_matches_memmem(void **state)
{
    (void)state;
    uint8_t data[600], sep[24];
    unsigned x = 7;
    for (size_t sep_len = 1; sep_len <= sizeof sep; sep_len++) {
        for (size_t len = 0; len <= sizeof data; len += 1 + len / 64) {
            for (int trial = 0; trial < 4; trial++) {
                for (size_t i = 0; i < sep_len; i++) {
                    x = x * 1103515245u + 12345u;
                    sep[i] = (uint8_t)"ab\r\n"[(x >> 16) % (trial < 2 ? 2 : 4)];
                }
                for (size_t i = 0; i < len; i++) {
                    x = x * 1103515245u + 12345u;
                    data[i] = (uint8_t)"ab\r\n"[(x >> 16) % (trial < 2 ? 2 : 4)];
                }
                const uint8_t *hit = memmem(data, len, sep, sep_len);
                size_t want = hit == NULL ? 0 : (size_t)(hit - data) + sep_len;
                frame_scan fs = {.sep = sep, .sep_len = sep_len, .scanned = 0};
                size_t got = frame_next(&fs, data, len);
                if (got != want)
                    fail_msg("sep_len %zu len %zu trial %d: frame %zu, memmem says %zu", sep_len,
                             len, trial, got, want);
            }
        }
    }
    /* A separator at every place around the 128-byte strides of the vector
     * scan, in a long span. */
    for (size_t sep_len = 1; sep_len <= 20; sep_len += 3) {
        memset(sep, '\r', sep_len);
        sep[sep_len - 1] = '\n';
        for (size_t pos = 230; pos < 280; pos++) {
            memset(data, '\r', sizeof data);
            memcpy(data + pos, sep, sep_len);
            frame_scan fs = {.sep = sep, .sep_len = sep_len, .scanned = 0};
            size_t got = frame_next(&fs, data, sizeof data);
            if (got != pos + sep_len)
                fail_msg("sep_len %zu at %zu: frame %zu", sep_len, pos, got);
        }
    }
    /* Near misses everywhere: the data repeats the separator with one middle
     * byte changed, so its first and last bytes are found at the same
     * distance over and over and only the full compare tells; the real
     * separator then goes at every place of the first blocks, and nowhere. */
    for (size_t sep_len = 3; sep_len <= 16; sep_len++) {
        for (size_t i = 0; i < sep_len; i++)
            sep[i] = (uint8_t)('A' + i);
        for (size_t pos = 0; pos <= 100; pos++) {
            for (size_t i = 0; i < sizeof data; i++)
                data[i] = sep[i % sep_len];
            for (size_t i = sep_len / 2; i < sizeof data; i += sep_len)
                data[i] = '?';
            if (pos < 100)
                memcpy(data + pos, sep, sep_len);
            const uint8_t *hit = memmem(data, sizeof data, sep, sep_len);
            size_t want = hit == NULL ? 0 : (size_t)(hit - data) + sep_len;
            frame_scan fs = {.sep = sep, .sep_len = sep_len, .scanned = 0};
            size_t got = frame_next(&fs, data, sizeof data);
            if (got != want || (pos < 100 && want == 0))
                fail_msg("near misses, sep_len %zu at %zu: frame %zu, memmem says %zu", sep_len,
                         pos, got, want);
        }
    }
}

/* frame_pass on DATA (as a string) with separator SEP: passes WANT_PASS
 * bytes and keeps the rest as already scanned. */
static void pass_case(const char *sep, const char *data, size_t want_pass)
{
    frame_scan fs = scanner(sep, strlen(sep));
    size_t len = strlen(data);
    assert_int_equal(frame_next(&fs, (const uint8_t *)data, len), 0);
    size_t n = frame_pass(&fs, (const uint8_t *)data, len);
    if (n != want_pass)
        fail_msg("frame_pass('%s', sep '%s') passed %zu, want %zu", data, sep, n, want_pass);
    assert_int_equal(fs.scanned, len - n);
}

static void test_pass_keeps_separator_start(void **state)
{
    (void)state;
    pass_case(CRLF2, "abcdef", 6);
    pass_case(CRLF2, "abc\r", 3);
    pass_case(CRLF2, "abc\r\n", 3);
    pass_case(CRLF2, "abc\r\n\r", 3);
    pass_case(CRLF2, "abc\n\r", 4);
    pass_case(CRLF2, "abc\r\r", 4);
    pass_case(CRLF2, "abc\r\n\n", 6);
    pass_case(CRLF2, "\r\n", 0);
    pass_case(CRLF2, "\r", 0);
    pass_case(CRLF2, "", 0);
    /* A separator that overlaps itself: the longest start is kept. */
    pass_case("aab", "xaa", 1);
    pass_case("aab", "xa", 1);
    pass_case("aab", "aaa", 1);
    pass_case("abab", "xxaba", 2);
    /* A one-byte separator: nothing can start it, everything goes. */
    pass_case("\n", "abc", 3);
}

/* The server's loop over a stream with passes: frame what is complete, and
 * pass on the start of an unfinished message once MIN bytes of it wait.
 * The messages end where a plain scan of the whole stream ends them, and
 * what was passed plus the messages plus what waits is the stream. */
static void pass_stream(const char *sep, const char *alphabet, size_t min, unsigned seed)
{
    size_t sep_len = strlen(sep), len = 6000, na = strlen(alphabet);
    uint8_t *in = malloc(len), *out = malloc(len);
    size_t *ends = malloc(len * sizeof *ends);
    assert_non_null(in);
    assert_non_null(out);
    assert_non_null(ends);
    unsigned x = seed;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        in[i] = (uint8_t)alphabet[(x >> 16) % na];
    }
    size_t nends = 0;
    for (size_t pos = 0;;) {
        const uint8_t *hit = memmem(in + pos, len - pos, sep, sep_len);
        if (hit == NULL)
            break;
        pos = (size_t)(hit - in) + sep_len;
        ends[nends++] = pos;
    }
    frame_scan fs = scanner(sep, sep_len);
    size_t start = 0, have = 0, nout = 0, found = 0, passed_any = 0;
    while (have < len) {
        x = x * 1103515245u + 12345u;
        size_t piece = 1 + (x >> 16) % 97;
        have = have + piece < len ? have + piece : len;
        for (;;) {
            size_t r = frame_next(&fs, in + start, have - start);
            if (r == 0) {
                if (have - start >= min) {
                    size_t k = frame_pass(&fs, in + start, have - start);
                    memcpy(out + nout, in + start, k);
                    nout += k;
                    start += k;
                    passed_any += k > 0;
                }
                break;
            }
            memcpy(out + nout, in + start, r);
            nout += r;
            start += r;
            if (found == nends || ends[found] != start)
                fail_msg("sep '%s' seed %u: a message ended at %zu, want %zu", sep, seed, start,
                         found < nends ? ends[found] : 0);
            found++;
        }
    }
    assert_int_equal(found, nends);
    assert_true(passed_any > 0);
    assert_int_equal(nout, start);
    assert_memory_equal(out, in, nout);
    free(in);
    free(out);
    free(ends);
}

static void test_pass_stream(void **state)
{
    (void)state;
    for (unsigned seed = 1; seed <= 20; seed++) {
        pass_stream(CRLF2, "\r\n\r\nx", 8, seed);
        pass_stream(CRLF2, "\r\nab", 1, seed);
        pass_stream("aab", "aab", 4, seed);
        pass_stream("abab", "abx", 5, seed);
        pass_stream("\n", "ab\nccccccc", 3, seed);
    }
}

/* Decodes text into a fresh buffer, which must succeed with want. */
static void unescape_ok(const char *text, const void *want, size_t want_len)
{
    uint8_t out[256];
    char err[128] = "";
    memset(out, 0xAA, sizeof out);
    ssize_t n = unescape(text, out, sizeof out, err, sizeof err);
    if (n < 0)
        fail_msg("unescape('%s') failed: %s", text, err);
    assert_int_equal(n, (ssize_t)want_len);
    assert_memory_equal(out, want, want_len);
}

static void unescape_err(const char *text, size_t cap, const char *needle)
{
    uint8_t out[256];
    char err[128] = "";
    assert_true(cap <= sizeof out);
    assert_int_equal(unescape(text, out, cap, err, sizeof err), -1);
    assert_contains(err, needle);
}

static void test_unescape_plain(void **state)
{
    (void)state;
    unescape_ok("", "", 0);
    unescape_ok("abc XYZ", "abc XYZ", 7);
    unescape_ok("\xc3\xa9", "\xc3\xa9", 2);
}

static void test_unescape_simple_escapes(void **state)
{
    (void)state;
    unescape_ok("\\r", "\r", 1);
    unescape_ok("\\n", "\n", 1);
    unescape_ok("\\t", "\t", 1);
    unescape_ok("\\a", "\a", 1);
    unescape_ok("\\b", "\b", 1);
    unescape_ok("\\f", "\f", 1);
    unescape_ok("\\v", "\v", 1);
    unescape_ok("\\e", "\x1b", 1);
    unescape_ok("\\\\", "\\", 1);
    unescape_ok("\\\"", "\"", 1);
    unescape_ok("\\'", "'", 1);
    unescape_ok("\\r\\n\\r\\n", CRLF2, 4);
    unescape_ok("a\\tb\\\\n", "a\tb\\n", 5);
}

static void test_unescape_hex(void **state)
{
    (void)state;
    unescape_ok("\\x41", "A", 1);
    unescape_ok("\\x7e\\x7E", "~~", 2);
    unescape_ok("\\xff", "\xff", 1);
    unescape_ok("\\x00", "\0", 1);
    unescape_ok("\\xaB", "\xab", 1);
    /* At most two digits; one is enough. */
    unescape_ok("\\x414", "A4", 2);
    unescape_ok("\\x4g", "\x04g", 2);
    unescape_ok("\\xA", "\x0a", 1);
    unescape_err("\\x", 16, "\\x");
    unescape_err("\\xg1", 16, "hex");
}

static void test_unescape_octal(void **state)
{
    (void)state;
    unescape_ok("\\0", "\0", 1);
    unescape_ok("a\\0b", "a\0b", 3);
    unescape_ok("\\7", "\a", 1);
    unescape_ok("\\101", "A", 1);
    unescape_ok("\\377", "\xff", 1);
    unescape_ok("\\12", "\n", 1);
    /* At most three digits. */
    unescape_ok("\\1234", "S4", 2);
    unescape_ok("\\08", "\0" "8", 2);
    unescape_err("\\400", 16, "\\377");
    unescape_err("\\777", 16, "octal");
}

static void test_unescape_errors(void **state)
{
    (void)state;
    unescape_err("\\q", 16, "bad escape '\\q'");
    unescape_err("ab\\8", 16, "bad escape '\\8'");
    unescape_err("\\ ", 16, "bad escape");
    unescape_err("abc\\", 16, "at end");
    unescape_err("\\", 16, "at end");
}

static void test_unescape_capacity(void **state)
{
    (void)state;
    uint8_t out[8];
    char err[128] = "";
    assert_int_equal(unescape("abcd", out, 4, err, sizeof err), 4);
    assert_memory_equal(out, "abcd", 4);
    /* An escape is one byte. */
    assert_int_equal(unescape("\\r\\n\\x41\\101", out, 4, err, sizeof err), 4);
    assert_memory_equal(out, "\r\nAA", 4);
    /* One byte too many, plain or escaped, and no write past cap. */
    memset(out, 0x55, sizeof out);
    unescape_err("abcde", 4, "more than 4 bytes");
    memset(out, 0x55, sizeof out);
    assert_int_equal(unescape("abcd\\n", out, 4, err, sizeof err), -1);
    assert_contains(err, "too long");
    assert_int_equal(out[4], 0x55);
    unescape_err("a", 0, "more than 0 bytes");
    assert_int_equal(unescape("", out, 0, err, sizeof err), 0);
}

static void test_unescape_err_truncated(void **state)
{
    (void)state;
    uint8_t out[8];
    char err[8];
    memset(err, 'Z', sizeof err);
    assert_int_equal(unescape("\\q", out, sizeof out, err, sizeof err), -1);
    /* The message is cut to the buffer and terminated. */
    assert_int_equal(strlen(err), sizeof err - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_piece),
        cmocka_unit_test(test_frame_ends_at_first_separator),
        cmocka_unit_test(test_every_split_short),
        cmocka_unit_test(test_every_split_long),
        cmocka_unit_test(test_every_split_separator_only),
        cmocka_unit_test(test_every_split_binary),
        cmocka_unit_test(test_binary_one_piece),
        cmocka_unit_test(test_pipelining),
        cmocka_unit_test(test_pipelining_every_split),
        cmocka_unit_test(test_one_byte_separator),
        cmocka_unit_test(test_long_separator),
        cmocka_unit_test(test_scans_only_new_bytes),
        cmocka_unit_test(test_megabyte_byte_by_byte),
        cmocka_unit_test(test_matches_memmem),
        cmocka_unit_test(test_pass_keeps_separator_start),
        cmocka_unit_test(test_pass_stream),
        cmocka_unit_test(test_unescape_plain),
        cmocka_unit_test(test_unescape_simple_escapes),
        cmocka_unit_test(test_unescape_hex),
        cmocka_unit_test(test_unescape_octal),
        cmocka_unit_test(test_unescape_errors),
        cmocka_unit_test(test_unescape_capacity),
        cmocka_unit_test(test_unescape_err_truncated),
    };
#ifdef __AVX2__
    /* test_frame_avx2: frame.c built for AVX2, as -march=x86-64-v3 builds it. */
    if (!__builtin_cpu_supports("avx2")) {
        printf("1..0 # SKIP built for AVX2, and this CPU has none\n");
        return 0;
    }
#endif
    return cmocka_run_group_tests(tests, NULL, NULL);
}
