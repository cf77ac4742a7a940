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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
