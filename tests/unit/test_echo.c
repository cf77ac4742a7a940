/* test_echo.c - unit tests of the echo plugin's hooks, driven through a fake host table. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

/* The plugin itself, for its statics (echo_plugin, echo_init, ...). */
#include "../../plugins/echo.c"

#include "buf.h"
#include "fake_host.h"

#define CRLF2 "\r\n\r\n"

static void test_descriptor(void **state)
{
    (void)state;
    const es_plugin *d = ES_PLUGIN_ENTRY();
    assert_ptr_equal(d, &echo_plugin);
    fh_check_descriptor(d, "echo", sizeof(echo_conn));
    /* The ABI constants themselves, pinned. */
    assert_int_equal(d->magic, 0x31505345u);
    assert_int_equal(d->abi_major, 1);
    /* ABI 1.1: the partial hook. */
    assert_true(d->abi_minor >= 1);
    assert_non_null(d->partial);
}

static void test_init_defaults(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&echo_plugin, NULL, 0);
    const echo_instance *inst = instance;
    assert_ptr_equal(inst->host, &fh_host);
    assert_int_equal(inst->sep_len, 4);
    assert_memory_equal(inst->sep, CRLF2, 4);

    fh_client cl;
    fh_client_open(&cl, &echo_plugin, instance);
    fh_client_feed(&cl, "hi\n\n", 4);
    assert_int_equal(cl.conn.writes, 0);
    fh_client_feed(&cl, CRLF2, 4);
    assert_int_equal(cl.conn.writes, 1);
    assert_int_equal(cl.conn.out.len, 8);
    assert_memory_equal(buf_head(&cl.conn.out), "hi\n\n" CRLF2, 8);
    fh_client_close(&cl);
    echo_plugin.fini(instance);
}

static void test_init_separator(void **state)
{
    (void)state;
    const es_config_item items[] = {{.key = "separator", .value = "\\n", .line = 7}};
    void *instance = fh_init_ok(&echo_plugin, items, 1);
    const echo_instance *inst = instance;
    assert_int_equal(inst->sep_len, 1);
    assert_int_equal(inst->sep[0], '\n');

    fh_client cl;
    fh_client_open(&cl, &echo_plugin, instance);
    fh_client_feed(&cl, "one\ntwo\r\nthr", 12);
    assert_int_equal(cl.messages, 2);
    assert_int_equal(cl.conn.out.len, 9);
    assert_memory_equal(buf_head(&cl.conn.out), "one\ntwo\r\n", 9);
    assert_int_equal(cl.in.len, 3);
    fh_client_close(&cl);
    echo_plugin.fini(instance);
}

static void test_init_long_separator(void **state)
{
    (void)state;
    char value[FRAME_SEP_MAX * 4 + 8];
    /* Exactly FRAME_SEP_MAX bytes, written as \xHH escapes. */
    for (size_t i = 0; i < FRAME_SEP_MAX; i++)
        snprintf(value + 4 * i, 5, "\\x%02x", (unsigned)(0x40 + i % 16));
    es_config_item item = {.key = "separator", .value = value, .line = 2};
    void *instance = fh_init_ok(&echo_plugin, &item, 1);
    const echo_instance *inst = instance;
    assert_int_equal(inst->sep_len, FRAME_SEP_MAX);
    assert_int_equal(inst->sep[FRAME_SEP_MAX - 1], 0x4f);
    echo_plugin.fini(instance);

    /* One byte more is refused. */
    strcat(value, "x");
    fh_init_err(&echo_plugin, &item, 1, 0, "separator");
    fh_init_err(&echo_plugin, &item, 1, 0, "too long");
}

static void test_init_unknown_key(void **state)
{
    (void)state;
    const es_config_item items[] = {
        {.key = "separator", .value = "\\n", .line = 3},
        {.key = "sparator", .value = "x", .line = 4},
    };
    fh_init_err(&echo_plugin, items, 2, 1, "unknown key 'sparator'");
    fh_init_err(&echo_plugin, items + 1, 1, 0, "sparator");
}

static void test_init_bad_escape(void **state)
{
    (void)state;
    const es_config_item items[] = {{.key = "separator", .value = "\\r\\q", .line = 5}};
    fh_init_err(&echo_plugin, items, 1, 0, "separator");
    fh_init_err(&echo_plugin, items, 1, 0, "bad escape '\\q'");
    const es_config_item trailing[] = {{.key = "separator", .value = "ab\\", .line = 5}};
    fh_init_err(&echo_plugin, trailing, 1, 0, "at end");
}

static void test_init_empty_separator(void **state)
{
    (void)state;
    const es_config_item items[] = {{.key = "separator", .value = "", .line = 9}};
    fh_init_err(&echo_plugin, items, 1, 0, "must not be empty");
}

/* Feeds msg to a fresh connection in the pieces given by cuts and checks
 * the reply is msg, written once, with no close. */
static void echo_in_pieces(void *instance, const char *msg, size_t len, const size_t *cuts,
                           size_t ncuts)
{
    fh_client cl;
    fh_client_open(&cl, &echo_plugin, instance);
    size_t pos = 0;
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        fh_client_feed(&cl, msg + pos, end - pos);
        if (k < ncuts && cl.conn.writes != 0)
            fail_msg("reply after %zu of %zu bytes", end, len);
        pos = end;
    }
    assert_int_equal(cl.conn.writes, 1);
    assert_int_equal(cl.conn.out.len, len);
    assert_memory_equal(buf_head(&cl.conn.out), msg, len);
    assert_int_equal(cl.conn.closes, 0);
    assert_int_equal(cl.in.len, 0);
    fh_client_close(&cl);
}

static void every_split(void *instance, const char *msg, size_t len)
{
    echo_in_pieces(instance, msg, len, NULL, 0);
    for (size_t i = 1; i < len; i++) {
        size_t c1[1] = {i};
        echo_in_pieces(instance, msg, len, c1, 1);
        for (size_t j = i + 1; j < len; j++) {
            size_t c2[2] = {i, j};
            echo_in_pieces(instance, msg, len, c2, 2);
        }
    }
}

static void test_every_split(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&echo_plugin, NULL, 0);
    const char *m1 = "Hello!" CRLF2;
    every_split(instance, m1, strlen(m1));
    const char *m2 = "GET / HTTP/1.0\r\nHost: x\r\n\r" CRLF2;
    every_split(instance, m2, strlen(m2));
    every_split(instance, CRLF2, 4);
    echo_plugin.fini(instance);
}

static void test_pipelined(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&echo_plugin, NULL, 0);
    const char *all = "a" CRLF2 "bb\r\n\r" CRLF2 CRLF2 "QUITS" CRLF2 "tail\r\n";
    size_t len = strlen(all);
    /* All at once, and cut at every place into two pieces. */
    for (size_t cut = 0; cut <= len; cut++) {
        fh_client cl;
        fh_client_open(&cl, &echo_plugin, instance);
        fh_client_feed(&cl, all, cut);
        fh_client_feed(&cl, all + cut, len - cut);
        assert_int_equal(cl.messages, 4);
        assert_int_equal(cl.conn.writes, 4);
        assert_int_equal(cl.conn.out.len, len - 6);
        assert_memory_equal(buf_head(&cl.conn.out), all, len - 6);
        assert_int_equal(cl.in.len, 6);
        assert_memory_equal(buf_head(&cl.in), "tail\r\n", 6);
        assert_int_equal(cl.conn.closes, 0);
        fh_client_close(&cl);
    }
    echo_plugin.fini(instance);
}

static void test_response_writes_message(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&echo_plugin, NULL, 0);
    fh_client cl;
    fh_client_open(&cl, &echo_plugin, instance);
    /* response on a frame writes exactly that frame, once. */
    const char *m = "xyz" CRLF2;
    assert_int_equal(echo_plugin.data_received(&cl.conn, cl.state, (const uint8_t *)m, 7), 7);
    assert_int_equal(echo_plugin.response(&cl.conn, cl.state, (const uint8_t *)m, 7), 0);
    assert_int_equal(cl.conn.writes, 1);
    assert_int_equal(cl.conn.out.len, 7);
    assert_memory_equal(buf_head(&cl.conn.out), m, 7);
    assert_int_equal(cl.conn.nevents, 1);
    fh_client_close(&cl);
    echo_plugin.fini(instance);
}

static void test_write_failure(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&echo_plugin, NULL, 0);
    fh_client cl;
    fh_client_open(&cl, &echo_plugin, instance);
    cl.conn.fail_write = 1;
    const char *m = "QUIT" CRLF2;
    assert_int_equal(echo_plugin.data_received(&cl.conn, cl.state, (const uint8_t *)m, 8), 8);
    assert_int_equal(echo_plugin.response(&cl.conn, cl.state, (const uint8_t *)m, 8), -1);
    assert_int_equal(cl.conn.writes, 1);
    fh_client_close(&cl);
    echo_plugin.fini(instance);
}

/* Sends input to a fresh connection and returns the number of closes,
 * checking the reply is want. */
static size_t closes_after(void *instance, const char *input, size_t len, const char *want,
                           size_t want_len)
{
    fh_client cl;
    fh_client_open(&cl, &echo_plugin, instance);
    fh_client_feed(&cl, input, len);
    assert_int_equal(cl.conn.out.len, want_len);
    assert_memory_equal(buf_head(&cl.conn.out), want, want_len);
    size_t closes = cl.conn.closes;
    if (closes != 0) {
        /* The reply is queued before the close, which comes last. */
        assert_true(cl.conn.nevents >= 2);
        assert_memory_equal(cl.conn.events + cl.conn.nevents - 2, "wc", 2);
        assert_null(memchr(cl.conn.events, 'c', cl.conn.nevents - 1));
    }
    fh_client_close(&cl);
    return closes;
}

static void test_quit(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&echo_plugin, NULL, 0);
    assert_int_equal(closes_after(instance, "QUIT" CRLF2, 8, "QUIT" CRLF2, 8), 1);
    /* Messages after QUIT are not answered. */
    assert_int_equal(closes_after(instance, "QUIT" CRLF2 "more" CRLF2, 16, "QUIT" CRLF2, 8), 1);
    assert_int_equal(closes_after(instance, "a" CRLF2 "QUIT" CRLF2, 13, "a" CRLF2 "QUIT" CRLF2,
                                  13), 1);
    echo_plugin.fini(instance);
}

static void test_not_quit(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&echo_plugin, NULL, 0);
    static const char *const bodies[] = {"QUITX", "quit", "Quit", "QUI", "XQUIT", " QUIT",
                                         "QUIT ", "QUIT\r", "\nQUIT", ""};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char m[32];
        int n = snprintf(m, sizeof m, "%s" CRLF2, bodies[i]);
        if (closes_after(instance, m, (size_t)n, m, (size_t)n) != 0)
            fail_msg("'%s' closed the connection", bodies[i]);
    }
    echo_plugin.fini(instance);
}

static void test_quit_custom_separator(void **state)
{
    (void)state;
    const es_config_item items[] = {{.key = "separator", .value = "\\0", .line = 2}};
    void *instance = fh_init_ok(&echo_plugin, items, 1);
    assert_int_equal(closes_after(instance, "QUIT\0", 5, "QUIT\0", 5), 1);
    assert_int_equal(closes_after(instance, "QUIT\r\n\r\n\0", 9, "QUIT\r\n\r\n\0", 9), 0);
    echo_plugin.fini(instance);
}

static void test_binary_body(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&echo_plugin, NULL, 0);
    uint8_t m[300];
    for (size_t i = 0; i < 296; i++)
        m[i] = (uint8_t)(i * 37);
    m[0] = 0;
    memcpy(m + 100, "\r\n\r\0", 4);
    memcpy(m + 200, "\r\n\r", 3);
    memcpy(m + 296, CRLF2, 4);
    /* No separator inside by construction. */
    assert_null(memmem(m, 299, CRLF2, 4));
    static const uint8_t small[] = {0, '\r', '\n', '\r', 0, '\r', '\n', 0xff, '\r', '\r',
                                    '\n', '\r', '\n'};
    every_split(instance, (const char *)small, sizeof small);
    fh_client cl;
    fh_client_open(&cl, &echo_plugin, instance);
    for (size_t i = 0; i < sizeof m; i += 7)
        fh_client_feed(&cl, m + i, sizeof m - i < 7 ? sizeof m - i : 7);
    assert_int_equal(cl.conn.writes, 1);
    assert_int_equal(cl.conn.out.len, sizeof m);
    assert_memory_equal(buf_head(&cl.conn.out), m, sizeof m);
    fh_client_close(&cl);
    echo_plugin.fini(instance);
}

static void test_state_isolation(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&echo_plugin, NULL, 0);
    fh_client a, b;
    fh_client_open(&a, &echo_plugin, instance);
    fh_client_open(&b, &echo_plugin, instance);
    /* Interleaved partial input: each connection keeps its own scan. */
    fh_client_feed(&a, "aaaaaaaa\r\n", 10);
    fh_client_feed(&b, "b\r", 2);
    fh_client_feed(&a, "\r", 1);
    fh_client_feed(&b, "\n\r\n", 3);
    assert_int_equal(a.conn.writes, 0);
    assert_int_equal(b.conn.writes, 1);
    assert_memory_equal(buf_head(&b.conn.out), "b" CRLF2, 5);
    fh_client_feed(&b, "QUIT" CRLF2, 8);
    assert_int_equal(b.conn.closes, 1);
    fh_client_feed(&a, "\n", 1);
    assert_int_equal(a.conn.writes, 1);
    assert_int_equal(a.conn.closes, 0);
    assert_memory_equal(buf_head(&a.conn.out), "aaaaaaaa" CRLF2, 12);
    fh_client_close(&a);
    fh_client_close(&b);

    /* Two instances with different separators share nothing. */
    const es_config_item items[] = {{.key = "separator", .value = "|", .line = 2}};
    void *other = fh_init_ok(&echo_plugin, items, 1);
    fh_client_open(&a, &echo_plugin, instance);
    fh_client_open(&b, &echo_plugin, other);
    fh_client_feed(&a, "x|y" CRLF2, 7);
    fh_client_feed(&b, "x|y" CRLF2, 7);
    assert_int_equal(a.messages, 1);
    assert_int_equal(a.conn.out.len, 7);
    assert_int_equal(b.messages, 1);
    assert_int_equal(b.conn.out.len, 2);
    assert_memory_equal(buf_head(&b.conn.out), "x|", 2);
    fh_client_close(&a);
    fh_client_close(&b);
    echo_plugin.fini(other);
    echo_plugin.fini(instance);
}

/* Appends N bytes of pattern (no '\r' or '\n') to the connection's input, in
 * pieces of PIECE bytes. */
static void feed_pattern(fh_client *cl, size_t n, size_t piece, uint8_t *copy)
{
    uint8_t chunk[4096];
    assert_true(piece <= sizeof chunk);
    for (size_t off = 0; off < n; off += piece) {
        size_t k = n - off < piece ? n - off : piece;
        for (size_t i = 0; i < k; i++)
            chunk[i] = (uint8_t)('a' + (off + i) % 26);
        if (copy != NULL)
            memcpy(copy + off, chunk, k);
        fh_client_feed(cl, chunk, k);
    }
}

/* A long message goes back as it comes, with nothing held but what could
 * start the separator; the whole echo is the message, byte for byte. */
static void test_partial_long_message(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&echo_plugin, NULL, 0);
    fh_client cl;
    fh_client_open(&cl, &echo_plugin, instance);
    size_t body = 100000;
    uint8_t *want = malloc(body + 4);
    assert_non_null(want);
    /* Below ES_PARTIAL_MIN: held. */
    feed_pattern(&cl, ES_PARTIAL_MIN - 1, 4096, want);
    assert_int_equal(cl.conn.writes, 0);
    assert_int_equal(cl.in.len, ES_PARTIAL_MIN - 1);
    /* From ES_PARTIAL_MIN on: passed on, none of it held. */
    feed_pattern(&cl, 1, 1, NULL);
    want[ES_PARTIAL_MIN - 1] = 'a';
    assert_int_equal(cl.conn.writes, 1);
    assert_int_equal(cl.passed, ES_PARTIAL_MIN);
    assert_int_equal(cl.in.len, 0);
    /* A pattern restarted at 'a': regenerate what feed_pattern sends. */
    for (size_t i = 0; i < body - ES_PARTIAL_MIN; i++)
        want[ES_PARTIAL_MIN + i] = (uint8_t)('a' + i % 26);
    size_t rest = body - ES_PARTIAL_MIN;
    size_t held_max = 0;
    for (size_t off = 0; off < rest; off += 3000) {
        size_t k = rest - off < 3000 ? rest - off : 3000;
        fh_client_feed(&cl, want + ES_PARTIAL_MIN + off, k);
        if (cl.in.len > held_max)
            held_max = cl.in.len;
    }
    /* Pieces below ES_PARTIAL_MIN wait until enough is there. */
    assert_true(held_max < ES_PARTIAL_MIN);
    assert_int_equal(cl.messages, 0);
    memcpy(want + body, CRLF2, 4);
    fh_client_feed(&cl, CRLF2, 4);
    assert_int_equal(cl.messages, 1);
    assert_int_equal(cl.passed, 0);
    assert_int_equal(cl.in.len, 0);
    assert_int_equal(cl.conn.out.len, body + 4);
    assert_memory_equal(buf_head(&cl.conn.out), want, body + 4);
    assert_int_equal(cl.conn.closes, 0);
    free(want);
    fh_client_close(&cl);
    echo_plugin.fini(instance);
}

/* The separator split across a pass: its start is kept back, never passed
 * on as if it were body, and the message ends where it should. */
static void test_partial_separator_split(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&echo_plugin, NULL, 0);
    static const char *const tails[] = {"\r", "\r\n", "\r\n\r"};
    for (size_t t = 0; t < 3; t++) {
        size_t tl = strlen(tails[t]);
        fh_client cl;
        fh_client_open(&cl, &echo_plugin, instance);
        uint8_t m[ES_PARTIAL_MIN + 8];
        memset(m, 'x', ES_PARTIAL_MIN);
        memcpy(m + ES_PARTIAL_MIN, tails[t], tl);
        fh_client_feed(&cl, m, ES_PARTIAL_MIN + tl);
        /* What may start the separator stays. */
        assert_int_equal(cl.passed, ES_PARTIAL_MIN);
        assert_int_equal(cl.in.len, tl);
        assert_int_equal(cl.conn.out.len, ES_PARTIAL_MIN);
        /* The separator's end: one message, ending right there; then a
         * short one after it. */
        fh_client_feed(&cl, CRLF2 + tl, 4 - tl);
        assert_int_equal(cl.messages, 1);
        assert_int_equal(cl.conn.out.len, ES_PARTIAL_MIN + 4);
        assert_memory_equal(buf_head(&cl.conn.out) + ES_PARTIAL_MIN, CRLF2, 4);
        fh_client_feed(&cl, "ok" CRLF2, 6);
        assert_int_equal(cl.messages, 2);
        assert_memory_equal(buf_head(&cl.conn.out) + ES_PARTIAL_MIN + 4, "ok" CRLF2, 6);
        fh_client_close(&cl);
    }
    /* A tail that only looks like a separator start ("\r\r"): the first
     * '\r' cannot start it and goes out. */
    fh_client cl;
    fh_client_open(&cl, &echo_plugin, instance);
    uint8_t m[ES_PARTIAL_MIN + 2];
    memset(m, 'x', ES_PARTIAL_MIN);
    memcpy(m + ES_PARTIAL_MIN, "\r\r", 2);
    fh_client_feed(&cl, m, sizeof m);
    assert_int_equal(cl.passed, ES_PARTIAL_MIN + 1);
    assert_int_equal(cl.in.len, 1);
    fh_client_feed(&cl, "\n\r\n", 3);
    assert_int_equal(cl.messages, 1);
    assert_int_equal(cl.conn.out.len, ES_PARTIAL_MIN + 5);
    fh_client_close(&cl);
    echo_plugin.fini(instance);
}

/* QUIT ends a message whose start was passed on: that message is not QUIT,
 * however its rest reads; the next QUIT is. */
static void test_partial_then_quit(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&echo_plugin, NULL, 0);
    fh_client cl;
    fh_client_open(&cl, &echo_plugin, instance);
    feed_pattern(&cl, 20000, 4096, NULL);
    assert_true(cl.passed > 0);
    fh_client_feed(&cl, "QUIT" CRLF2, 8);
    assert_int_equal(cl.messages, 1);
    assert_int_equal(cl.conn.closes, 0);
    assert_int_equal(cl.conn.out.len, 20008);
    fh_client_feed(&cl, "QUIT" CRLF2, 8);
    assert_int_equal(cl.messages, 2);
    assert_int_equal(cl.conn.closes, 1);
    fh_client_close(&cl);
    echo_plugin.fini(instance);
}

/* A write the host refuses makes partial fail (the server closes). */
static void test_partial_write_failure(void **state)
{
    (void)state;
    void *instance = fh_init_ok(&echo_plugin, NULL, 0);
    fh_client cl;
    fh_client_open(&cl, &echo_plugin, instance);
    uint8_t m[ES_PARTIAL_MIN];
    memset(m, 'y', sizeof m);
    assert_int_equal(echo_plugin.data_received(&cl.conn, cl.state, m, sizeof m), 0);
    cl.conn.fail_write = 1;
    assert_int_equal(echo_plugin.partial(&cl.conn, cl.state, m, sizeof m), -1);
    /* Nothing to pass on (all of it may start the separator): nothing written. */
    cl.conn.fail_write = 0;
    size_t writes = cl.conn.writes;
    assert_int_equal(echo_plugin.partial(&cl.conn, cl.state, (const uint8_t *)"\r\n\r", 3), 0);
    assert_int_equal(cl.conn.writes, writes);
    fh_client_close(&cl);
    echo_plugin.fini(instance);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_init_defaults),
        cmocka_unit_test(test_init_separator),
        cmocka_unit_test(test_init_long_separator),
        cmocka_unit_test(test_init_unknown_key),
        cmocka_unit_test(test_init_bad_escape),
        cmocka_unit_test(test_init_empty_separator),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_response_writes_message),
        cmocka_unit_test(test_write_failure),
        cmocka_unit_test(test_quit),
        cmocka_unit_test(test_not_quit),
        cmocka_unit_test(test_quit_custom_separator),
        cmocka_unit_test(test_binary_body),
        cmocka_unit_test(test_state_isolation),
        cmocka_unit_test(test_partial_long_message),
        cmocka_unit_test(test_partial_separator_split),
        cmocka_unit_test(test_partial_then_quit),
        cmocka_unit_test(test_partial_write_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
